"""Run ISC Kea (kea-dhcp4, memfile) in a namespace as the peer our benchmarks compare with."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from appliance.testing.netns import Netns, Topology


def kea_config(workdir: Path, interface: str, subnets: list[tuple[str, str]],
               lease_time: int = 3600, multi_threading: bool = False) -> dict:
    """A kea-dhcp4 config like the reference hot-standby one without HA: memfile with
    persistence, raw sockets, one subnet per (subnet, pool)."""
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": [interface], "dhcp-socket-type": "raw"},
        "lease-database": {"type": "memfile", "persist": True,
                           "name": str(workdir / "leases4.csv"), "lfc-interval": 0},
        "multi-threading": {"enable-multi-threading": multi_threading},
        "valid-lifetime": lease_time,
        "renew-timer": lease_time // 2,
        "rebind-timer": lease_time * 7 // 8,
        "subnet4": [
            {"id": i + 1, "subnet": net, "pools": [{"pool": pool}],
             "option-data": [{"name": "routers", "data": net.split("/")[0][:-1] + "1"}]}
            for i, (net, pool) in enumerate(subnets)
        ],
        "loggers": [{"name": "kea-dhcp4",
                     "output_options": [{"output": str(workdir / "kea.log")}],
                     "severity": "WARN"}],
    }}


def start_kea(t: Topology, ns: Netns, workdir: Path, config: dict) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "kea-dhcp4.conf"
    conf.write_text(json.dumps(config, indent=1))
    env = dict(os.environ, KEA_PIDFILE_DIR=str(workdir), KEA_LOCKFILE_DIR=str(workdir))
    out = open(workdir / "kea.stdout", "wb")
    return t.popen(ns, ["kea-dhcp4", "-c", str(conf)], env=env, stdout=out, stderr=out)
