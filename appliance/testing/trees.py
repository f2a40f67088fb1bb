"""Config trees for tests and the demo, written with the same writer tools use."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.config.tree import write_tree


def standalone_tree(root: str | os.PathLike[str], *, name: str = "deviceA",
                    interface: str = "eth1", subnet: str = "192.0.2.0/24",
                    ranges: str = "192.0.2.100-192.0.2.199", lease_time: int = 3600,
                    extra: dict[str, str] | None = None, datapath: str = "off") -> Path:
    root = Path(root)
    values = {
        "node/name": name,
        "node/state_dir": str(root / "state"),
        "node/run_dir": str(root / "run"),
        "client/interface": interface,
        "pools/lan/subnet": subnet,
        "pools/lan/range": ranges,
        "pools/lan/router": "192.0.2.1",
        "pools/lan/dns": "192.0.2.53",
        "pools/lan/domain": "example.net",
        "pools/lan/lease_time": str(lease_time),
        "datapath/mode": datapath,
    }
    values.update(extra or {})
    write_tree(root / "etc", values)
    return root / "etc"
