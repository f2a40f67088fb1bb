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

The wall clock may step (NTP, an operator's `date`). Forward, the reclaim jumps the gap
and expires whatever is due. Back, the cursor follows it back (`_rewind`): leases still
end at their `expires` by the clock now in force, and an offer made by the clock that was
ahead lapses at once instead of holding its address until that clock's time comes round.

Besides the indexes, the table keeps the figures the server's abuse limits read, for
leases from any source (our commits, the journal, the peer): bound leases per relay
(giaddr) and per relay circuit (Option 82 circuit-id), and the quarantined addresses of
each pool, oldest first; and the records by (pool, state), which the metrics and the
pool-use alarm read every second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

from appliance.leases.model import HOLDING_STATES, Lease, LeaseState, circuit_id


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
        # BOUND leases made through a relay, per giaddr and per (giaddr, circuit-id).
        self.per_relay: dict[int, int] = {}
        self.per_circuit: dict[tuple[int, bytes], int] = {}
        # DECLINED addresses per pool name, oldest first (dicts keep insertion order).
        self.declined: dict[str, dict[int, None]] = {}
        self._offer_horizon = 0.0  # latest `expires` of any offer made
        # Records by (pool, state), kept as they change (the metrics read it each second;
        # counting 100k leases there would stall the loop for ~40 ms).
        self.counts: dict[tuple[str, LeaseState], int] = {}

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

    def relay_count(self, relay: int) -> int:
        """Bound leases made through the relay agent at `relay` (giaddr)."""
        return self.per_relay.get(relay, 0)

    def circuit_count(self, relay: int, circuit: bytes) -> int:
        """Bound leases made through circuit `circuit` of the relay agent at `relay`."""
        return self.per_circuit.get((relay, circuit), 0)

    def declined_in(self, pool: str) -> int:
        return len(self.declined.get(pool, ()))

    def oldest_declined(self, pool: str) -> Lease | None:
        """The pool's quarantined address that was declined first."""
        for ip in self.declined.get(pool, ()):
            return self.by_ip[ip]
        return None

    def active_count(self, now: float) -> int:
        return sum(1 for lease in self.by_ip.values() if lease.active(now))

    def leases(self) -> Iterator[Lease]:
        return iter(self.by_ip.values())

    # -- changes ------------------------------------------------------------------------
    def offer(self, lease: Lease) -> None:
        """Hold an address for an OFFER: in memory only, no sequence number."""
        if lease.expires > self._offer_horizon:
            self._offer_horizon = lease.expires
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
        key = lease.key
        by_key = self.by_key
        old = self.by_ip.get(lease.ip)
        # A renewal counts as what it renews: the per-relay and per-circuit counts (and
        # the quarantine order) stay as they are, and Option 82 is not parsed again.
        recount = old is None or old.state is not lease.state or old.relay != lease.relay \
            or old.relay_info != lease.relay_info or old.pool != lease.pool
        if old is not None:
            if recount:
                self._leaving(old)
            old_key = old.key
            if old_key != key:
                # The address moves to another client: the old client's record goes.
                if by_key.get(old_key) is old:
                    del by_key[old_key]
        if lease.state == LeaseState.DELETED:
            self.by_ip.pop(lease.ip, None)
            if old is not None and by_key.get(key) is old:
                del by_key[key]
            self.on_free(lease.ip)
            return
        self.by_ip[lease.ip] = lease
        prev = by_key.get(key)
        if prev is not None and prev.ip != lease.ip and self.by_ip.get(prev.ip) is prev:
            # The client moved to another address: its old one is no longer its own.
            if prev.state in HOLDING_STATES and prev.state != LeaseState.DECLINED:
                moved = replace(prev, state=LeaseState.RELEASED)
                self._leaving(prev)
                self.by_ip[prev.ip] = moved
                self._entering(moved)
                self.on_free(prev.ip)
        by_key[key] = lease
        if recount:
            self._entering(lease)
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

    def _entering(self, lease: Lease) -> None:
        """`lease` is now the record of its address: count it."""
        state = lease.state
        k = (lease.pool, state)
        self.counts[k] = self.counts.get(k, 0) + 1
        if state == LeaseState.BOUND:
            self.bound += 1
            if lease.relay:
                self._relay_delta(lease, 1)
        elif state == LeaseState.DECLINED:
            self.declined.setdefault(lease.pool, {})[lease.ip] = None

    def _leaving(self, lease: Lease) -> None:
        """`lease` stops being the record of its address: uncount it."""
        state = lease.state
        k = (lease.pool, state)
        self.counts[k] = self.counts.get(k, 0) - 1
        if state == LeaseState.BOUND:
            self.bound -= 1
            if lease.relay:
                self._relay_delta(lease, -1)
        elif state == LeaseState.DECLINED:
            d = self.declined.get(lease.pool)
            if d is not None:
                d.pop(lease.ip, None)

    def _relay_delta(self, lease: Lease, delta: int) -> None:
        counts = self.per_relay
        n = counts.get(lease.relay, 0) + delta
        if n:
            counts[lease.relay] = n
        else:
            del counts[lease.relay]
        cid = circuit_id(lease.relay_info)
        if cid is not None:
            ck = (lease.relay, cid)
            circuits = self.per_circuit
            n = circuits.get(ck, 0) + delta
            if n:
                circuits[ck] = n
            else:
                del circuits[ck]

    def reclaim(self, now: float, limit: int = 10000) -> list[Lease]:
        """Expire what is due (at most `limit`, to bound the work per call). Returns the
        EXPIRED leases that must be journaled; lapsed offers are dropped silently.
        A lease is reclaimed within a second after it ends."""
        out: list[Lease] = []
        wheel = self._wheel
        end = int(now)
        if self._cursor is None:
            self._cursor = min(wheel, default=end)
        elif end < self._cursor - 1:
            self._rewind(now, end)
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

    def _rewind(self, now: float, end: int) -> None:
        """The wall clock went back: before this, the cursor only moved forward, so
        nothing (offers included) lapsed until the old time came round again, and the
        pool froze. Every wheel entry sits at or after the old cursor, at its lease's
        own second, except those put at the cursor because their second had passed (the
        clamp in _put): those go back to their own second, by the clock now in force."""
        wheel = self._wheel
        old = self._cursor
        assert old is not None
        self._cursor = end
        clamped = wheel.pop(old, None)
        if clamped:
            for ip in clamped:
                lease = self.by_ip.get(ip)
                if lease is None or lease.state not in HOLDING_STATES:
                    continue
                sec = max(end, int(lease.expires) if lease.expires < 1e15 else 10**15)
                wheel.setdefault(sec, []).append(ip)
        # An offer is a few seconds' promise (RFC 2131 §4.3.1: the server may reuse an
        # address it offered). One made by the clock that was ahead (start > now) would
        # hold its address until that clock's time comes round: it lapses now. Offers
        # sit in the buckets from the old cursor up to the latest offer's end.
        for sec in range(old, int(min(self._offer_horizon, 1e15)) + 1):
            for ip in wheel.get(sec, ()):
                lease = self.by_ip.get(ip)
                if lease is not None and lease.state == LeaseState.OFFERED and \
                        lease.start > now:
                    self._lapse(ip, lease)

    def _lapse(self, ip: int, lease: Lease) -> None:
        """An offer nobody took: forget it (RFC 2131 §4.3.1 lets the server reuse it)."""
        del self.by_ip[ip]
        self._leaving(lease)
        if self.by_key.get(lease.key) is lease:
            del self.by_key[lease.key]
        self.on_free(ip)

    def _expire(self, ip: int, now: float, out: list[Lease]) -> None:
        lease = self.by_ip.get(ip)
        if lease is None or lease.state not in HOLDING_STATES or lease.expires > now:
            return  # stale entry: the address was renewed, released or reused
        if lease.state == LeaseState.OFFERED:
            self._lapse(ip, lease)
            return
        out.append(self.commit(replace(lease, state=LeaseState.EXPIRED)))
