"""Config trees for tests and the demo, written with the same writer tools use."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Interface, IPv4Network
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


def interfaces_tree(root: str | os.PathLike[str], *, name: str = "deviceA",
                    interfaces: Mapping[str, Sequence[tuple[str, str]]],
                    groups: Mapping[str, Mapping[str, str]] | None = None,
                    pools: Mapping[str, tuple[str, str]] | None = None,
                    lease_time: int = 3600, extra: dict[str, str] | None = None,
                    datapath: str = "off") -> Path:
    """A tree in the interfaces/ layout (docs/config.md), beside standalone_tree.

    interfaces: ifname -> [(group, virtual IP/prefix), ...]: [] is a standalone interface
    (an empty folder), one pair binds it to that group, two share it (RFC 3074 split).
    groups: group -> its settings as in vrrp/<group>/ ({"vrid": "10", "priority": "200"});
    pools: name -> (subnet, range); by default one pool per virtual IP's network with
    .100-.199 of it (192.0.2.0/24 when no interface has a virtual IP). extra: more files.

        interfaces_tree(tmp, interfaces={"eth1.100": [("ga", "192.0.2.1/24")],
                                         "eth1.200": [("gb", "198.51.100.1/24")]},
                        groups={"ga": {"vrid": "10", "priority": "200"},
                                "gb": {"vrid": "20", "priority": "100"}})
    """
    root = Path(root)
    etc = root / "etc"
    values = {
        "node/name": name,
        "node/state_dir": str(root / "state"),
        "node/run_dir": str(root / "run"),
        "datapath/mode": datapath,
    }
    nets: dict[IPv4Network, None] = {}
    for ifname, bound in interfaces.items():
        (etc / "interfaces" / ifname).mkdir(parents=True, exist_ok=True)
        if bound:
            values[f"interfaces/{ifname}/group"] = "\n".join(g for g, _ in bound)
            values[f"interfaces/{ifname}/virtual_ip"] = "\n".join(v for _, v in bound)
            nets.update((IPv4Interface(v).network, None) for _, v in bound)
    for group, settings in (groups or {}).items():
        for rel, v in settings.items():
            values[f"vrrp/{group}/{rel}"] = v
    if pools is None:
        pools = {f"p{n}": (str(net), f"{net[100]}-{net[199]}")
                 for n, net in enumerate(nets)} or {"lan": ("192.0.2.0/24",
                                                           "192.0.2.100-192.0.2.199")}
    for pool, (subnet, ranges) in pools.items():
        values[f"pools/{pool}/subnet"] = subnet
        values[f"pools/{pool}/range"] = ranges
        values[f"pools/{pool}/lease_time"] = str(lease_time)
    values.update(extra or {})
    write_tree(etc, values)
    return etc
