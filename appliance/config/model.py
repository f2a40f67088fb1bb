"""Frozen configuration values built from the config tree, and diff(old, new) for reload.

Pure: no file access here. `config/tree.py` reads the directory, `config/schema.py`
parses each file; this module only holds the result and compares two results.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    state_dir: str
    run_dir: str


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """One pools/<name>/ folder: a subnet, its ranges, options and reservations."""

    name: str
    subnet: IPv4Network
    ranges: tuple[tuple[IPv4Address, IPv4Address], ...]
    router: tuple[IPv4Address, ...] = ()
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None
    lease_time: int = 3600
    # MAC (6 raw bytes) -> fixed address
    reservations: tuple[tuple[bytes, IPv4Address], ...] = ()
    # Abuse limits (docs/operations.md, "Hostile clients").
    max_declined_percent: int = 10
    max_leases_per_relay: int = 0  # 0: no limit
    max_leases_per_circuit: int = 0  # 0: no limit


@dataclass(frozen=True, slots=True)
class VrrpConfig:
    vrid: int
    priority: int
    advert_interval_ms: int
    preempt: bool
    virtual_ips: tuple[IPv4Interface, ...]
    preempt_delay_ms: int = 0
    # tracked interface name -> priority decrement while it is down
    track: tuple[tuple[str, int], ...] = ()
    use_vmac: bool = False
    accept: bool = True
    garp_count: int = 5
    garp_interval_ms: int = 0
    garp_repeat_s: int = 5
    # vrrp/peer: adverts from any other source are dropped (None: any source). Each
    # device names the other, so it is not in the sync drift summary.
    peer: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class SyncConfig:
    interface: str
    local: tuple[IPv4Address, int]
    peer: tuple[IPv4Address, int]
    key: bytes = field(repr=False)
    mode: str = "sync"  # "sync" | "async"
    ack_timeout_ms: int = 50
    max_clock_skew_ms: int = 1000


@dataclass(frozen=True, slots=True)
class DatapathConfig:
    mode: str = "xdp"  # "xdp" | "off"
    rate_limit_pps: int = 50
    rate_limit_burst: int = 0  # 0: twice rate_limit_pps
    new_client_pps: int = 200  # clients without a bucket, all MACs; 0: off
    new_client_burst: int = 0  # 0: twice new_client_pps


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig
    client_interface: str
    pools: tuple[PoolConfig, ...]
    vrrp: VrrpConfig | None = None
    sync: SyncConfig | None = None
    datapath: DatapathConfig = DatapathConfig()
    # the directory it was read from, for messages
    source: str = ""

    @property
    def standalone(self) -> bool:
        """No VRRP group: the device is always active."""
        return self.vrrp is None

    def pool(self, name: str) -> PoolConfig | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None


def diff(old: Config, new: Config) -> list[str]:
    """Names of the settings that differ, as config-tree paths (e.g. 'vrrp/priority',
    'pools/lan/range'). Used for reload and for the sync handshake's drift check."""
    out: list[str] = []

    def walk(prefix: str, a: object, b: object) -> None:
        if a == b:
            return
        if a is None or b is None or type(a) is not type(b) or not is_dataclass(a):
            out.append(prefix)
            return
        for f in fields(a):  # type: ignore[arg-type]
            walk(f"{prefix}/{f.name}", getattr(a, f.name), getattr(b, f.name))

    walk("node", old.node, new.node)
    if old.client_interface != new.client_interface:
        out.append("client/interface")
    old_pools = {p.name: p for p in old.pools}
    new_pools = {p.name: p for p in new.pools}
    for name in sorted(old_pools.keys() | new_pools.keys()):
        walk(f"pools/{name}", old_pools.get(name), new_pools.get(name))
    walk("vrrp", old.vrrp, new.vrrp)
    walk("sync", old.sync, new.sync)
    walk("datapath", old.datapath, new.datapath)
    return out
