"""Run ISC Kea (kea-dhcp4, memfile) in a namespace as the peer our benchmarks compare with:
alone, as an HA hot-standby pair, or as an HA load-balancing pair."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

from appliance.testing.netns import Netns, Topology


def kea_config(workdir: Path, interface: str | Sequence[str], subnets: list[tuple[str, str]],
               lease_time: int = 3600, multi_threading: bool = False) -> dict:
    """A kea-dhcp4 config like the reference hot-standby one without HA: memfile with
    persistence, raw sockets, one subnet per (subnet, pool), on one interface or several."""
    interfaces = [interface] if isinstance(interface, str) else list(interface)
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": interfaces, "dhcp-socket-type": "raw"},
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


HOOKS = "/usr/lib/x86_64-linux-gnu/kea/hooks"


def _ha(workdir: Path, interface: str | Sequence[str], subnets: list[tuple[str, str]],
        lease_time: int, mode: str, this: str, peers: list[dict], timers: dict) -> dict:
    """Kea HA with its fastest transport, the multi-threaded dedicated HTTP listener (no
    control agent), as ../shared/reference/kea-ha measured it: the part hot-standby and
    load-balancing share."""
    cfg = kea_config(workdir, interface, subnets, lease_time, multi_threading=True)
    d = cfg["Dhcp4"]
    d["multi-threading"] = {"enable-multi-threading": True, "thread-pool-size": 2,
                            "packet-queue-size": 64}
    d["hooks-libraries"] = [
        {"library": f"{HOOKS}/libdhcp_lease_cmds.so"},
        {"library": f"{HOOKS}/libdhcp_ha.so", "parameters": {"high-availability": [{
            "this-server-name": this, "mode": mode, **timers, "sync-page-limit": 10000,
            "multi-threading": {"enable-multi-threading": True, "http-dedicated-listener": True,
                                "http-listener-threads": 2, "http-client-threads": 2},
            "peers": [{**p, "auto-failover": True} for p in peers]}]}},
    ]
    return cfg


def _timers(heartbeat_ms: int, max_response_ms: int, max_ack_ms: int,
            max_unacked: int) -> dict:
    return {"heartbeat-delay": heartbeat_ms, "max-response-delay": max_response_ms,
            "max-ack-delay": max_ack_ms, "max-unacked-clients": max_unacked}


def kea_ha_config(workdir: Path, interface: str | Sequence[str], subnets: list[tuple[str, str]], *,
                  this: str, primary_url: str, standby_url: str, lease_time: int = 3600,
                  heartbeat_ms: int = 10000, max_response_ms: int = 60000,
                  max_ack_ms: int = 10000, max_unacked: int = 10) -> dict:
    """Kea HA hot-standby (the primary answers, the standby waits)."""
    return _ha(workdir, interface, subnets, lease_time, "hot-standby", this,
               [{"name": "primary", "url": primary_url, "role": "primary"},
                {"name": "standby", "url": standby_url, "role": "standby"}],
               _timers(heartbeat_ms, max_response_ms, max_ack_ms, max_unacked))


def split_pool(pool: str) -> tuple[str, str]:
    """'a - b' as two halves ('a - m', 'm+1 - b'): Kea's load-balancing mode needs each
    pool cut in two by hand, one half per server's HA_<name> client class (Kea ARM
    §16.14.2.4, "Load-Balancing Configuration")."""
    lo, hi = (int(IPv4Address(x.strip())) for x in pool.split("-"))
    mid = (lo + hi) // 2
    return (f"{IPv4Address(lo)} - {IPv4Address(mid)}",
            f"{IPv4Address(mid + 1)} - {IPv4Address(hi)}")


def kea_ha_lb_config(workdir: Path, interface: str | Sequence[str],
                     subnets: list[tuple[str, str]], *, this: str, server1_url: str,
                     server2_url: str, lease_time: int = 3600, heartbeat_ms: int = 10000,
                     max_response_ms: int = 60000, max_ack_ms: int = 10000,
                     max_unacked: int = 10) -> dict:
    """Kea HA load-balancing: both servers answer, each the clients whose RFC 3074 hash
    falls in its half (classes HA_server1 / HA_server2), each pool split in two between
    those classes; lease updates go to the partner before the ACK, as in hot-standby.
    Same transport as kea_ha_config (the MT dedicated HTTP listener). `this` is
    "server1" (the primary) or "server2" (the secondary)."""
    cfg = _ha(workdir, interface, subnets, lease_time, "load-balancing", this,
              [{"name": "server1", "url": server1_url, "role": "primary"},
               {"name": "server2", "url": server2_url, "role": "secondary"}],
              _timers(heartbeat_ms, max_response_ms, max_ack_ms, max_unacked))
    for sub in cfg["Dhcp4"]["subnet4"]:
        halves = split_pool(sub["pools"][0]["pool"])
        sub["pools"] = [{"pool": halves[0], "client-class": "HA_server1"},
                        {"pool": halves[1], "client-class": "HA_server2"}]
    return cfg
