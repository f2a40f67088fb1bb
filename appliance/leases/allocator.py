"""Chooses a free address in a pool in amortised O(1), without scanning the pool.

Pure. Each pool has, per address class (an address's two low bits), a cursor over
never-used addresses and a FIFO of freed ones (released, expired, lapsed offers), so a
recently used address is reused last. Queue entries are checked against the table when
taken (lazy deletion), so an address freed and taken again never needs removing.

Which classes one allocation may take is a `Share`: the halves of a pool
(docs/architecture.md, "Decisions worth knowing"). Two rules, combined:

- *group half*: an interface bound to two VRRP groups (load sharing on one LAN, its
  clients split by the RFC 3074 hash) gives its first group the addresses whose bit 0
  is 0 and its second group those whose bit 0 is 1. Each device is master of one group,
  so the two never hand out the same free address while both serve the LAN;
- *device half* (`Allocator.owner`, the pair policy's SetSplit): while this device is
  not in sync with its peer, it takes only addresses whose next bit equals its half:
  bit 0 on an interface of one group (or none), bit 1 on a shared one. Two devices that
  both serve a group, cut off from each other, never hand out the same address.

So a shared interface's pool is cut in quarters while split, halves otherwise; an
unshared one in halves while split (by parity, as the sync protocol's pool split has
always been, docs/sync-protocol.md), whole otherwise.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from appliance.leases.pool import Pool, Pools
from appliance.leases.table import LeaseTable

_CLASSES = 4  # address classes: ip & 3


@dataclass(frozen=True, slots=True)
class Share:
    """The addresses one allocation may take: those with `ip & mask == value` (the two
    low bits), i.e. the address classes in `classes`."""

    mask: int
    value: int
    classes: tuple[int, ...]

    def allows(self, ip: int) -> bool:
        return ip & self.mask == self.value


def _share(shared: bool, group: int, half: int | None) -> Share:
    mask = value = 0
    if shared:
        mask, value = 1, group
    if half is not None:
        bit = 2 if shared else 1  # the lowest bit the group half leaves free
        mask |= bit
        value |= bit * half
    return Share(mask, value, tuple(c for c in range(_CLASSES) if c & mask == value))


WHOLE = _share(False, 0, None)
# _SHARES[shared][group][half, or 2 for None]: every rule made once, looked up per packet.
_SHARES = tuple(tuple(tuple(_share(bool(s), g, h) for h in (0, 1, None)) for g in (0, 1))
                for s in (0, 1))


class _PoolFree:
    __slots__ = ("cursors", "freed", "pool", "queued")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # cursors[class] = [range index, next address] over never-used addresses
        self.cursors: list[list[int]] = [[0, _first(pool.ranges[0][0], c)]
                                         for c in range(_CLASSES)]
        # freed[class]: (order, ip), oldest first; order is global to the allocator so
        # that the oldest freed address of several classes can be picked
        self.freed: tuple[deque[tuple[int, int]], ...] = tuple(
            deque() for _ in range(_CLASSES))
        self.queued: set[int] = set()


def _first(start: int, cls: int) -> int:
    """The first address >= start of class `cls`."""
    return start + ((cls - start) & 3)


class Allocator:
    def __init__(self, pools: Pools, table: LeaseTable) -> None:
        self.pools = pools
        self.table = table
        self._free = {p.name: _PoolFree(p) for p in pools.pools}
        self._order = 0
        table.on_free = self.release
        # owner: this device's half while split from its peer (0 or 1), None = no split
        self.owner: int | None = None

    def share(self, shared: bool = False, group: int = 0) -> Share:
        """The rule for a client of group index `group` (0, or 1 on an interface that
        two groups share) under this device's current split."""
        owner = self.owner
        return _SHARES[shared][group][2 if owner is None else owner]

    def release(self, ip: int) -> None:
        """The table says `ip` is free again: queue it for reuse (oldest first)."""
        pool = self.pools.leasable(ip)
        if pool is None or ip in pool.reserved_ips:
            return
        pf = self._free.get(pool.name)
        if pf is None or ip in pf.queued:
            return
        pf.queued.add(ip)
        self._order += 1
        pf.freed[ip & 3].append((self._order, ip))

    def allocate(self, pool: Pool, now: float, share: Share | None = None) -> int | None:
        """A free range address of `pool` that `share` allows (default: this device's
        split alone), or None when that part of the pool is full."""
        pf = self._free[pool.name]
        classes = (share if share is not None else self.share()).classes
        # Prefer never-used addresses: a client coming back later still finds its old one.
        for c in classes:
            ip = self._fresh(pf, c)
            if ip is not None:
                return ip
        freed = pf.freed
        reserved = pool.reserved_ips
        holder = self.table.holder
        while True:
            best = None
            for c in classes:  # the oldest head among the allowed classes
                q = freed[c]
                if q and (best is None or q[0][0] < best[0][0]):
                    best = q
            if best is None:
                return None
            ip = best.popleft()[1]
            pf.queued.discard(ip)
            if ip in reserved or not pool.in_range(ip):
                continue
            if holder(ip, now) is None:
                return ip

    def _fresh(self, pf: _PoolFree, cls: int) -> int | None:
        cur = pf.cursors[cls]
        ranges = pf.pool.ranges
        reserved = pf.pool.reserved_ips
        by_ip = self.table.by_ip
        while cur[0] < len(ranges):
            _lo, hi = ranges[cur[0]]
            ip = cur[1]
            while ip <= hi:
                if ip not in reserved and ip not in by_ip:
                    cur[1] = ip + 4
                    return ip
                ip += 4
            cur[0] += 1
            if cur[0] < len(ranges):
                cur[1] = _first(ranges[cur[0]][0], cls)
        return None
