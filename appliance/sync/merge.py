"""Merge rules for leases received from the peer, address-conflict resolution after a
split brain, and the pool split that prevents conflicts in the first place.

Pure functions of lease fields (no clock is read): both devices, given the same two
leases in any order, reach the same outcome without telling each other, which is what
lets a split brain heal without a coordinator (docs/sync-protocol.md §Merge rules).
One rule also takes `now`, this device's own wall clock, passed in: a device never
ends a binding because of its peer's clock. An EXPIRED version from the peer whose
binding has not ended by our clock (the peer's clock is ahead, or ours behind) is
applied as the binding it ends (BOUND, with the expiry's seq: newer than what we held,
older than the expiry) and counted (`merge_early_expiry`); our own expiry sweep ends it
when our clock gets there, with a higher seq, and the peer takes that version: the two
tables converge on the same record.

Per client (same Lease.key), the newer version wins. Versions are ordered by
`version_key`: (start, seq, state rank, origin). `start` first because both servers
stamp it from their clocks when a client binds or renews (so the devices' clocks must
agree: NTP). `seq` orders changes that keep `start` (a RELEASE or an expiry after the
BOUND it ends): it grows per origin, and since LeaseTable.load advances last_seq past
every seq it has seen, a change made after seeing another has the higher seq. The state
rank only separates a version from its own tombstone (same start and seq), so a
tombstone sits just above the binding it kills and below any newer version of that
client. The origin name breaks exact ties.

Per address, two clients holding the same address (both in a holding state) is a
conflict: the binding that `expires` later wins, then the later `start`, then origin,
then client key. Ordering by `expires` first means a lapsed binding never beats a live
one, whatever the clock of the device that merges. The loser is written as a DELETED
tombstone of itself, so its client has no binding and gets a NAK on its next REQUEST
(RFC 2131 §4.3.2: the requested address is not valid for it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

from appliance.leases.model import HOLDING_STATES, Lease, LeaseState

# Separates a version from its tombstone (equal start and seq); ending states last.
_RANK = {
    LeaseState.OFFERED: 0,
    LeaseState.BOUND: 1,
    LeaseState.EXPIRED: 2,
    LeaseState.RELEASED: 3,
    LeaseState.DECLINED: 4,
    LeaseState.DELETED: 5,
}


EARLY_EXPIRY = "merge_early_expiry"  # counter: a peer's expiry of a binding still live here


class Merge(Enum):
    """Outcome for the client of a received lease; the value is the counter name."""

    ACCEPTED = "merge_accepted"  # newer than ours: store it
    STALE = "merge_stale"  # ours is newer: ignore it
    DUPLICATE = "merge_duplicate"  # the version we have


class Conflict(Enum):
    """Outcome of an address held by two clients; the value is the counter name."""

    LOCAL_LOST = "conflict_local_lost"  # our binding loses: tombstoned, its client NAKed
    REMOTE_LOST = "conflict_remote_lost"  # the received binding loses: not stored


def version_key(lease: Lease) -> tuple[float, int, int, str]:
    return (lease.start, lease.seq, _RANK[lease.state], lease.origin)


def conflict_key(lease: Lease) -> tuple[float, float, str, bytes]:
    return (lease.expires, lease.start, lease.origin, lease.key)


def merge(local: Lease | None, remote: Lease) -> Merge:
    """Which version of one client's binding to keep: `local` is ours for remote.key."""
    if local is None:
        return Merge.ACCEPTED
    kr, kl = version_key(remote), version_key(local)
    if kr > kl:
        return Merge.ACCEPTED
    if kr == kl:
        return Merge.DUPLICATE
    return Merge.STALE


def resolve_address(a: Lease, b: Lease) -> tuple[Lease, Lease]:
    """(winner, loser) of two clients' bindings of one address. Symmetric."""
    return (a, b) if conflict_key(a) >= conflict_key(b) else (b, a)


def tombstone(lease: Lease) -> Lease:
    """The DELETED version of `lease`: newer than it (state rank) and older than any
    later change of its client; same seq and origin, so both devices write the identical
    tombstone for the same loser."""
    return replace(lease, state=LeaseState.DELETED)


def _holds(lease: Lease) -> bool:
    return lease.state in HOLDING_STATES


@dataclass(frozen=True, slots=True)
class MergePlan:
    """What to do with one received lease. `store` is applied in order (LeaseTable.load
    each, and journal them): a tombstone comes before the lease that takes its address."""

    merge: Merge
    conflict: Conflict | None = None
    store: tuple[Lease, ...] = ()
    loser: Lease | None = None  # the binding that lost an address conflict

    @property
    def counters(self) -> tuple[str, ...]:
        if self.conflict is None:
            return (self.merge.value,)
        return (self.merge.value, self.conflict.value)


def plan(remote: Lease, for_client: Lease | None, at_address: Lease | None) -> MergePlan:
    """Merge one received lease. `for_client` is our lease for remote.key (table.of_client),
    `at_address` our lease at remote.ip (table.get), whatever their states."""
    m = merge(for_client, remote)
    if m is not Merge.ACCEPTED:
        return MergePlan(m)
    if (at_address is not None and at_address.key != remote.key and _holds(at_address)
            and _holds(remote)):
        winner, _ = resolve_address(at_address, remote)
        if winner is remote:
            return MergePlan(m, Conflict.LOCAL_LOST, (tombstone(at_address), remote),
                             at_address)
        # The received binding loses. Its client's older record elsewhere is superseded
        # all the same (the peer moved that client away from it): drop it too, so both
        # devices end with no binding for this client.
        store: tuple[Lease, ...] = ()
        if for_client is not None and for_client.ip != remote.ip:
            store = (tombstone(for_client),)
        return MergePlan(m, Conflict.REMOTE_LOST, store, remote)
    return MergePlan(m, None, (remote,))


def node_index(local: tuple[object, int], peer: tuple[object, int]) -> int:
    """0 or 1: this device's rank in the pair, from sync/local and sync/peer (ip, port).
    Addresses rather than node names: both are in each device's config, so the split
    holds from the first second, even if the two have never talked."""
    a = (int(local[0]), local[1])  # type: ignore[call-overload]
    b = (int(peer[0]), peer[1])  # type: ignore[call-overload]
    if a == b:
        raise ValueError("sync/local and sync/peer are the same address")
    return 0 if a < b else 1


def owns_address(ip: int, node_index: int) -> bool:
    """Pool split while the peer is unreachable: node 0 allocates new addresses only
    from the even ones, node 1 from the odd ones (Allocator.owner = node_index).
    Renewals of existing bindings are not limited."""
    return ip & 1 == node_index


def coalesce(changes: Sequence[Lease]) -> list[Lease]:
    """The latest change of each client, in seq order: what a catch-up delta carries.
    A client's intermediate versions are history the peer no longer holds; resolving an
    address conflict against one of them would tombstone a binding the sender never
    contradicted (found by test_sync_merge's convergence property)."""
    last: dict[bytes, Lease] = {}
    for lease in changes:
        key = lease.key
        last.pop(key, None)  # re-insert: dict order is then the order of last versions
        last[key] = lease
    return list(last.values())


class Table(Protocol):
    """What Merger needs of the lease table (appliance.leases.table.LeaseTable fits)."""

    def of_client(self, key: bytes) -> Lease | None: ...

    def get(self, ip: int) -> Lease | None: ...

    def load(self, lease: Lease) -> None: ...


@dataclass(slots=True)
class MergeReport:
    """What one Merger.apply() did: `writes` went into the table, in this order, and must
    be journaled in this order; `counts` are merge_*/conflict_* counter increments;
    `losers` are the bindings that lost an address (log them; their clients get NAKs)."""

    writes: list[Lease] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    losers: list[Lease] = field(default_factory=list)

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class Merger:
    """Applies the peer's leases to the table by the rules above, so that both devices
    end with the same table whatever order the changes arrive in
    (test_sync_merge's convergence property checks exactly that).

    The table holds one lease per address; the rules are per client. Two consequences:

    - A client version the table cannot hold (a tombstone, a release recorded at an
      address another client now holds, a record pushed out of its address) is kept
      here as a "ghost", so an older version of that client arriving later is still
      recognised as older. Ghosts are few (conflicts, split brains) and bounded.
    - A received binding that loses an address conflict is held back until the catch-up
      it belongs to ends (`settle`): a later change in the same catch-up may move our
      holder away, and then the received binding takes the address.

    One Merger per peer, living as long as the daemon.
    """

    __slots__ = ("_deferred", "_ghosts", "max_ghosts")

    def __init__(self, max_ghosts: int = 65536) -> None:
        self._deferred: dict[bytes, Lease] = {}  # client key -> losing received binding
        self._ghosts: dict[bytes, Lease] = {}  # client key -> newest version not in table
        self.max_ghosts = max_ghosts

    @property
    def deferred(self) -> int:
        return len(self._deferred)

    def remember(self, lease: Lease) -> None:
        """The daemon's own commit pushed `lease` (another client's current record) out
        of its address, and the table forgets that client: keep its version, or an older
        one received later would revive it. (LeaseTable: the "address moves to another
        client" case of _put.)"""
        self._ghost(lease)

    def apply(self, leases: Iterable[Lease], table: Table, settle: bool = True,
              now: float | None = None) -> MergeReport:
        """Merge `leases` (one Apply action's) into `table`. `settle` is Apply.settle:
        True for live updates and at the end of a catch-up. `now` is this device's wall
        clock (None: the early-expiry rule is off, for tests of the ordering alone)."""
        report = MergeReport()
        deferred = self._deferred
        for lease in leases:
            self._one(lease, table, report, first=True, now=now)
        while deferred:
            # Retry what lost, until nothing moves: its rival may have moved since.
            before = len(deferred)
            for lease in list(deferred.values()):
                del deferred[lease.key]
                self._one(lease, table, report, first=False)
            if len(deferred) == before:
                break
        if deferred:
            if settle:
                for lease in deferred.values():
                    report._count(Conflict.REMOTE_LOST.value)
                    report.losers.append(lease)
                    self._supersede(lease, tombstone(lease), table, report)
                deferred.clear()
        return report

    def _local(self, key: bytes, table: Table) -> Lease | None:
        local = table.of_client(key)
        ghost = self._ghosts.get(key)
        if ghost is not None and (local is None or version_key(ghost) > version_key(local)):
            return ghost
        return local

    def _one(self, lease: Lease, table: Table, report: MergeReport, first: bool,
             now: float | None = None) -> None:
        local = self._local(lease.key, table)
        m = merge(local, lease)
        if first:
            report._count(m.value)
            self._deferred.pop(lease.key, None)  # superseded by this newer change
        if m is not Merge.ACCEPTED:
            return
        if now is not None and lease.state is LeaseState.EXPIRED and lease.expires > now:
            # The peer's sweep ended a binding our clock says is live (DESIGN.md: never
            # expire, free or re-allocate because of the peer's clock).
            report._count(EARLY_EXPIRY)
            if local is not None and local.state is LeaseState.DECLINED and \
                    local.ip == lease.ip and local.expires == lease.expires:
                return  # a quarantine ends by our own sweep; ours is that very record
            lease = replace(lease, state=LeaseState.BOUND)
        holder = table.get(lease.ip)
        if holder is not None and holder.key != lease.key and _holds(holder):
            if not _holds(lease):
                # A release or expiry recorded where someone else now holds the address:
                # nothing to take there; the client's own older record goes.
                self._supersede(lease, lease, table, report)
                return
            rival = holder
            moving = self._deferred.get(holder.key)
            if moving is not None and version_key(moving) > version_key(holder):
                # The holder's client has a newer version waiting: it is leaving this
                # address (no rival at all) or renewing it (the newer one is the rival).
                rival = moving if moving.ip == holder.ip else None
            if rival is not None:
                winner, _ = resolve_address(rival, lease)
                if winner is not lease:
                    self._deferred[lease.key] = lease
                    return
            if rival is holder:
                report._count(Conflict.LOCAL_LOST.value)
                report.losers.append(holder)
                self._write(tombstone(holder), table, report)
        self._write(lease, table, report)

    def _supersede(self, lease: Lease, newest: Lease, table: Table,
                   report: MergeReport) -> None:
        """`lease`'s client is not stored at lease.ip; `newest` is its version now. Its
        record elsewhere (older) must stop holding that address."""
        old = table.of_client(lease.key)
        if old is not None and old.ip != lease.ip:
            self._write(tombstone(old), table, report)
        self._ghost(newest)

    def _write(self, w: Lease, table: Table, report: MergeReport) -> None:
        cur = table.get(w.ip)
        if w.state is LeaseState.DELETED:
            self._ghost(w)
            if cur is None or cur.key != w.key:
                # Not (or no longer) this client's address: loading it would drop whoever
                # is there now. The ghost is enough.
                return
        else:
            self._ghosts.pop(w.key, None)
            if cur is not None and cur.key != w.key and table.of_client(cur.key) is cur:
                self._ghost(cur)  # pushed out of its address: remember its version
        table.load(w)
        report.writes.append(w)

    def _ghost(self, lease: Lease) -> None:
        ghosts = self._ghosts
        old = ghosts.pop(lease.key, None)
        if old is not None and version_key(old) > version_key(lease):
            lease = old
        ghosts[lease.key] = lease
        if len(ghosts) > self.max_ghosts:
            del ghosts[next(iter(ghosts))]
