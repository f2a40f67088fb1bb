"""The change log the replication session reads: the Protocol the daemon provides, the
replication cursor, and RingLog, a bounded in-memory implementation of it.

Pure: data structures only, no files, no clock.

What the session needs from the daemon's lease data is small (docs/sync-protocol.md
§ChangeLog):

- `epoch`: a 64-bit id of this device's lease database, random when the database is
  created empty and kept across restarts (stored in node/state_dir). A peer's cursor
  from another epoch is meaningless, so it gets a snapshot.
- `last_seq`: the newest change this device made (LeaseTable.commit's seq).
- `changes_since(seq, limit)`: the changes this device made after `seq`, oldest first,
  at most `limit`; [] when there are none; None when the log no longer reaches back to
  `seq` (the peer then gets a snapshot). Only this device's own changes go in the log:
  leases applied from the peer are not sent back to it.
- `snapshot_pages(page_size)`: every lease of the table (all origins), in pages. The
  session reads `last_seq` and takes the first page in one synchronous step; leases that
  change while the pages are sent are caught by the UPDATES that follow the pages, so the
  pages may show either version of them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from appliance.leases.model import Lease, LeaseState


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far this device holds the peer's log: durable up to `seq` of database `epoch`.
    Cursor(0, 0) means nothing (a fresh device)."""

    epoch: int = 0
    seq: int = 0


class ChangeLog(Protocol):
    @property
    def epoch(self) -> int: ...

    @property
    def last_seq(self) -> int: ...

    @property
    def lease_count(self) -> int: ...

    def changes_since(self, seq: int, limit: int) -> list[Lease] | None: ...

    def snapshot_pages(self, page_size: int) -> Iterator[list[Lease]]: ...


class LeaseSource(Protocol):
    """What RingLog needs of the lease table (appliance.leases.table.LeaseTable fits)."""

    def leases(self) -> Iterator[Lease]: ...

    def __len__(self) -> int: ...


class RingLog:
    """The last `capacity` changes made here, plus the table for snapshots.

    The daemon calls `append(lease)` for each lease it commits itself (seq increasing),
    as soon as the change is in the table. `base` is the seq up to which the ring has
    forgotten: a peer that holds at least `base` gets a delta, an older one a snapshot.
    After a restart pass base=table.own_seq: what came before is not in the ring.
    """

    __slots__ = ("_items", "_start", "base", "capacity", "epoch", "source")

    def __init__(self, epoch: int, source: LeaseSource | Iterable[Lease] | None = None,
                 capacity: int = 1 << 17, base: int = 0) -> None:
        self.epoch = epoch
        self.source = source
        self.capacity = capacity
        self.base = base
        self._items: list[Lease] = []
        self._start = 0

    @property
    def last_seq(self) -> int:
        items = self._items
        return items[-1].seq if len(items) > self._start else self.base

    @property
    def lease_count(self) -> int:
        """Leases a snapshot would carry: offers held in memory are never replicated.
        O(table) — it is read at a handshake and a snapshot, not per update."""
        src = self.source
        if src is None:
            return 0
        rows = src.leases() if hasattr(src, "leases") else iter(src)  # type: ignore[union-attr]
        return sum(1 for lease in rows if lease.state != LeaseState.OFFERED)

    def __len__(self) -> int:
        return len(self._items) - self._start

    def append(self, lease: Lease) -> None:
        if lease.seq <= self.last_seq:
            raise ValueError(f"change log seq {lease.seq} after {self.last_seq}")
        self._items.append(lease)
        if len(self._items) - self._start > self.capacity:
            self.base = self._items[self._start].seq
            self._start += 1
            if self._start >= self.capacity:
                del self._items[: self._start]
                self._start = 0

    def changes_since(self, seq: int, limit: int) -> list[Lease] | None:
        if seq < self.base:
            return None
        items = self._items
        i = bisect_right(items, seq, lo=self._start, key=_seq)
        return items[i : i + limit]

    def snapshot_pages(self, page_size: int) -> Iterator[list[Lease]]:
        # Copy now, not when the iterator is first advanced: the snapshot is the table
        # as of this call, which the session makes together with reading last_seq.
        # One pass, one list: an OFFER lives only in the offering device's memory (never
        # journaled, never replicated), and the peer's decoder refuses one.
        src = self.source
        if src is None:
            rows: list[Lease] = []
        else:
            it = src.leases() if hasattr(src, "leases") else iter(src)  # type: ignore[union-attr]
            offered = LeaseState.OFFERED
            rows = [lease for lease in it if lease.state != offered]
        return (rows[i : i + page_size] for i in range(0, len(rows), page_size))


def _seq(lease: Lease) -> int:
    return lease.seq
