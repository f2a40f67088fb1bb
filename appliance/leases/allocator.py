"""Chooses a free address in a pool in amortised O(1), without scanning the pool.

Pure. Each pool has, per address parity, a cursor over never-used addresses and a FIFO
of freed ones (released, expired, lapsed offers), oldest first, so a recently used
address is reused last. Queue entries are checked against the table when taken (lazy
deletion), so an address freed and taken again never needs removing from the queue.

Parity is the pool split for a device cut off from its peer (docs/sync-protocol.md):
`owner` limits allocation to the addresses whose parity this device owns, so that two
isolated actives never hand out the same address.
"""

from __future__ import annotations

from collections import deque

from appliance.leases.pool import Pool, Pools
from appliance.leases.table import LeaseTable


class _PoolFree:
    __slots__ = ("cursors", "freed", "pool", "queued")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        # cursors[parity] = [range index, next address] over never-used addresses
        self.cursors: list[list[int]] = []
        for parity in (0, 1):
            self.cursors.append([0, self._first(0, pool.ranges[0][0], parity)])
        self.freed: tuple[deque[int], deque[int]] = (deque(), deque())
        self.queued: set[int] = set()

    def _first(self, ri: int, start: int, parity: int) -> int:
        return start if start & 1 == parity else start + 1


class Allocator:
    def __init__(self, pools: Pools, table: LeaseTable) -> None:
        self.pools = pools
        self.table = table
        self._free = {p.name: _PoolFree(p) for p in pools.pools}
        table.on_free = self.release
        # owner: None = any address; 0 or 1 = only addresses of that parity
        self.owner: int | None = None

    def release(self, ip: int) -> None:
        """The table says `ip` is free again: queue it for reuse (oldest first)."""
        pool = self.pools.leasable(ip)
        if pool is None or ip in pool.reserved_ips:
            return
        pf = self._free.get(pool.name)
        if pf is None or ip in pf.queued:
            return
        pf.queued.add(ip)
        pf.freed[ip & 1].append(ip)

    def allocate(self, pool: Pool, now: float) -> int | None:
        """A free range address of `pool`, or None when the pool (or our half) is full."""
        pf = self._free[pool.name]
        parities = (0, 1) if self.owner is None else (self.owner,)
        # Prefer never-used addresses: a client coming back later still finds its old one.
        for parity in parities:
            ip = self._fresh(pf, parity, now)
            if ip is not None:
                return ip
        for parity in parities:
            q = pf.freed[parity]
            while q:
                ip = q.popleft()
                pf.queued.discard(ip)
                if ip in pool.reserved_ips or not pool.in_range(ip):
                    continue
                if self.table.holder(ip, now) is None:
                    return ip
        return None

    def _fresh(self, pf: _PoolFree, parity: int, now: float) -> int | None:
        cur = pf.cursors[parity]
        ranges = pf.pool.ranges
        reserved = pf.pool.reserved_ips
        by_ip = self.table.by_ip
        while cur[0] < len(ranges):
            _lo, hi = ranges[cur[0]]
            ip = cur[1]
            while ip <= hi:
                if ip not in reserved and ip not in by_ip:
                    cur[1] = ip + 2
                    return ip
                ip += 2
            cur[0] += 1
            if cur[0] < len(ranges):
                cur[1] = pf._first(cur[0], ranges[cur[0]][0], parity)
        return None
