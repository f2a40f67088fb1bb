"""The in-memory lease table: indexes by address, by client and by expiry.

Pure. It is the view the RFC 2131 logic reads and the one place lease changes are
applied, whether they come from our own server, from the journal on start-up or from
the peer. Reclamation is driven by `now`, passed in.

Theory of operation: `by_ip` holds the latest lease for each address whatever its
state; `by_key` the latest lease of each client (RFC 2131 §4.3.1 prefers giving a
client its previous address). Freed addresses are reported to the allocator through
`on_free` so it never scans a pool. Expiry uses a wheel of one-second buckets (address
lists keyed by the second a lease ends; lighter than a heap of tuples at a million
leases) with lazy deletion: an entry is acted on only if the current lease of that
address is still due.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from appliance.leases.model import HOLDING_STATES, Lease, LeaseState


class LeaseTable:
    def __init__(self, origin: str = "") -> None:
        self.origin = origin
        self.by_ip: dict[int, Lease] = {}
        self.by_key: dict[bytes, Lease] = {}
        self._wheel: dict[int, list[int]] = {}
        self._cursor: int | None = None  # first second not yet reclaimed
        self.last_seq = 0
        self.own_seq = 0
        self.on_free: Callable[[int], None] = lambda ip: None
        # A local commit takes an address whose record belongs to another client: that
        # client's last version is about to be forgotten (the sync merge remembers it).
        self.on_displace: Callable[[Lease], None] = lambda lease: None
        self.bound = 0  # count of BOUND leases (expired ones included until reclaimed)

    # -- queries ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.by_ip)

    def get(self, ip: int) -> Lease | None:
        return self.by_ip.get(ip)

    def of_client(self, key: bytes) -> Lease | None:
        return self.by_key.get(key)

    def holder(self, ip: int, now: float) -> Lease | None:
        """The lease that keeps `ip` from being given to anyone else, if any."""
        lease = self.by_ip.get(ip)
        if lease is not None and lease.state in HOLDING_STATES and lease.expires > now:
            return lease
        return None

    def active_count(self, now: float) -> int:
        return sum(1 for lease in self.by_ip.values() if lease.active(now))

    def leases(self) -> Iterator[Lease]:
        return iter(self.by_ip.values())

    # -- changes ------------------------------------------------------------------------
    def offer(self, lease: Lease) -> None:
        """Hold an address for an OFFER: in memory only, no sequence number."""
        self._put(lease)

    def commit(self, lease: Lease) -> Lease:
        """A durable change made here: give it the next sequence number and our name."""
        self.last_seq += 1
        self.own_seq = self.last_seq
        lease = replace(lease, seq=self.last_seq, origin=self.origin)
        old = self.by_ip.get(lease.ip)
        if old is not None and old.key != lease.key and old.state != LeaseState.OFFERED:
            self.on_displace(old)
        self._put(lease)
        return lease

    def load(self, lease: Lease) -> None:
        """A change replayed from the journal or received from the peer, kept as is.
        `last_seq` moves past every number seen (a Lamport clock: a change made here
        after seeing the peer's is numbered after it, which the merge rules rely on);
        `own_seq` is the last change made here, where this device's change log ends."""
        if lease.seq > self.last_seq:
            self.last_seq = lease.seq
        if lease.origin == self.origin and lease.seq > self.own_seq:
            self.own_seq = lease.seq
        self._put(lease)

    def _put(self, lease: Lease) -> None:
        old = self.by_ip.get(lease.ip)
        if old is not None:
            if old.state == LeaseState.BOUND:
                self.bound -= 1
            if old.key != lease.key:
                # The address moves to another client: the old client's record goes.
                if self.by_key.get(old.key) is old:
                    del self.by_key[old.key]
        if lease.state == LeaseState.DELETED:
            self.by_ip.pop(lease.ip, None)
            if self.by_key.get(lease.key) is old and old is not None:
                del self.by_key[lease.key]
            self.on_free(lease.ip)
            return
        self.by_ip[lease.ip] = lease
        if lease.mac or lease.client_id:
            prev = self.by_key.get(lease.key)
            if prev is not None and prev.ip != lease.ip and self.by_ip.get(prev.ip) is prev:
                # The client moved to another address: its old one is no longer its own.
                if prev.state in HOLDING_STATES and prev.state != LeaseState.DECLINED:
                    self.by_ip[prev.ip] = replace(prev, state=LeaseState.RELEASED)
                    if prev.state == LeaseState.BOUND:
                        self.bound -= 1
                    self.on_free(prev.ip)
            self.by_key[lease.key] = lease
        if lease.state == LeaseState.BOUND:
            self.bound += 1
        if lease.state in HOLDING_STATES:
            sec = int(lease.expires) if lease.expires < 1e15 else 10**15
            if self._cursor is not None and sec < self._cursor:
                sec = self._cursor
            bucket = self._wheel.get(sec)
            if bucket is None:
                self._wheel[sec] = [lease.ip]
            else:
                bucket.append(lease.ip)
        else:
            self.on_free(lease.ip)

    def reclaim(self, now: float, limit: int = 10000) -> list[Lease]:
        """Expire what is due (at most `limit`, to bound the work per call). Returns the
        EXPIRED leases that must be journaled; lapsed offers are dropped silently.
        A lease is reclaimed within a second after it ends."""
        out: list[Lease] = []
        wheel = self._wheel
        end = int(now)
        if self._cursor is None:
            self._cursor = min(wheel, default=end)
        if end - self._cursor > len(wheel):
            due = sorted(k for k in wheel if k < end)  # a long gap: jump, don't walk it
        else:
            due = [k for k in range(self._cursor, end) if k in wheel]
        for sec in due:
            bucket = wheel.pop(sec)
            while bucket:
                if len(out) >= limit:
                    wheel[sec] = bucket
                    self._cursor = sec
                    return out
                self._expire(bucket.pop(), now, out)
        self._cursor = max(self._cursor, end)
        return out

    def _expire(self, ip: int, now: float, out: list[Lease]) -> None:
        lease = self.by_ip.get(ip)
        if lease is None or lease.state not in HOLDING_STATES or lease.expires > now:
            return  # stale entry: the address was renewed, released or reused
        if lease.state == LeaseState.OFFERED:
            # An offer nobody took: forget it (RFC 2131 §4.3.1 lets the server reuse it).
            del self.by_ip[ip]
            if self.by_key.get(lease.key) is lease:
                del self.by_key[lease.key]
            self.on_free(ip)
            return
        out.append(self.commit(replace(lease, state=LeaseState.EXPIRED)))
