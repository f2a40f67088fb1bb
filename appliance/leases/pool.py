"""Pools as integers: subnet, ranges and reservations from config, for fast membership tests."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config.model import PoolConfig


@dataclass(slots=True)
class Pool:
    name: str
    net: int  # network address
    mask: int
    ranges: tuple[tuple[int, int], ...]  # inclusive
    lease_time: int
    reserved_by_mac: dict[bytes, int]
    reserved_ips: dict[int, bytes]  # ip -> mac (b"": a host's, dhcp/hosts.py)
    config: PoolConfig
    # Abuse limits from config: quarantined addresses at most (DHCPDECLINE), bound
    # leases per relay agent and per relay circuit (0: no limit).
    max_declined: int = 1
    max_per_relay: int = 0
    max_per_circuit: int = 0

    @classmethod
    def from_config(cls, pc: PoolConfig, fixed: tuple[int, ...] = ()) -> Pool:
        """`fixed`: the config's hosts' addresses (any pool's: those in this subnet are
        kept out of allocation here, as reservations are)."""
        by_mac = {mac: int(ip) for mac, ip in pc.reservations}
        net, mask = int(pc.subnet.network_address), int(pc.subnet.netmask)
        hosts = {ip: b"" for ip in fixed if ip & mask == net and ip not in by_mac.values()}
        ranges = tuple((int(lo), int(hi)) for lo, hi in pc.ranges)
        size = sum(hi - lo + 1 for lo, hi in ranges)
        return cls(
            name=pc.name,
            net=int(pc.subnet.network_address),
            mask=int(pc.subnet.netmask),
            ranges=ranges,
            lease_time=pc.lease_time,
            reserved_by_mac=by_mac,
            reserved_ips={**hosts, **{ip: mac for mac, ip in by_mac.items()}},
            config=pc,
            max_declined=max(1, size * pc.max_declined_percent // 100),
            max_per_relay=pc.max_leases_per_relay,
            max_per_circuit=pc.max_leases_per_circuit,
        )

    def in_subnet(self, ip: int) -> bool:
        return ip & self.mask == self.net

    def in_range(self, ip: int) -> bool:
        for lo, hi in self.ranges:
            if lo <= ip <= hi:
                return True
        return False

    def may_lease(self, ip: int) -> bool:
        """An address this pool hands out: a range address or a reservation."""
        return self.in_range(ip) or ip in self.reserved_ips

    @property
    def size(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)


class Pools:
    """All pools; finds the one serving a subnet (giaddr, ciaddr or interface address).

    Looked up on every packet, with hundreds of pools on a box with hundreds of VLANs:
    an index by prefix (mask -> network -> pool) makes a lookup cost one dict probe per
    distinct prefix length instead of a walk over every pool. config/tree.py refuses
    overlapping subnets and ranges or reservations outside their subnet, so at most one
    pool matches an address, and the pool that may lease it is the one whose subnet
    holds it."""

    def __init__(self, pools: list[Pool]) -> None:
        self.pools = pools
        self.by_name = {p.name: p for p in pools}
        by_mask: dict[int, dict[int, Pool]] = {}
        for p in pools:
            by_mask.setdefault(p.mask, {}).setdefault(p.net, p)
        # Longest prefix first: the most specific pool wins if a tree ever overlapped.
        self._by_mask = tuple(sorted(by_mask.items(), reverse=True))

    @classmethod
    def from_config(cls, configs: tuple[PoolConfig, ...], fixed: tuple = ()) -> Pools:
        """`fixed`: the hosts' addresses (Config.host_addresses()), never allocated."""
        ips = tuple(int(ip) for ip in fixed)
        return cls([Pool.from_config(pc, ips) for pc in configs])

    def for_address(self, ip: int) -> Pool | None:
        for mask, nets in self._by_mask:
            p = nets.get(ip & mask)
            if p is not None:
                return p
        return None

    def leasable(self, ip: int) -> Pool | None:
        p = self.for_address(ip)
        if p is not None and p.may_lease(ip):
            return p
        return None
