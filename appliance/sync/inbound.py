"""The inbound stream: the peer's changes arriving on one connection, as a phase enum,
a transition table and the stream that walks it (events in: the peer's BULK_BEGIN,
BULK_PAGE, UPDATES and BULK_END, and the daemon's Persisted reports; actions out: the
batches to apply and what their durability means).

Rules for this file: pure (no sockets, no clock). Every trigger comes from the peer: a
move the table lacks, or a sequence number that goes backwards, is FrameError(
UNEXPECTED) and nothing here changes (the session refuses it and closes).

Theory of operation (docs/sync-protocol.md §Replication model): after authentication
the peer answers our SYNC_REQ with BULK_BEGIN: DELTA when its change log still reaches
back to our cursor (then UPDATES), else SNAPSHOT (BULK_PAGEs of its whole table, then
UPDATES since the snapshot). BULK_END closes the catch-up and carries the seq our cursor
moves to; live UPDATES follow. The peer may start a snapshot over at any time (its log
no longer reaches back to what it sent us). Every batch is staged (session: Apply) and
its ACK waits for the daemon's Persisted report. Inside a catch-up the cursor moves only
at BULK_END, so a device that stops halfway gets the whole catch-up again, never a
hole; address conflicts wait for the end too (settle=False).

    phase  trigger   next   what happens
    WAIT   snapshot  PAGES  pages follow
    WAIT   delta     TAIL   changes follow
    PAGES  page      PAGES  staged, no cursor, no settling
    PAGES  updates   TAIL   changes since the snapshot, no cursor, no settling
    TAIL   updates   TAIL   as above
    PAGES  end       LIVE   cursor to BULK_END's seq, conflicts settled; caught up
    TAIL   end       LIVE   once this is durable
    LIVE   updates   LIVE   staged with the cursor, settled
    PAGES, TAIL, LIVE  snapshot  PAGES  the peer starts over

Every other pair is refused `refused_unexpected`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from appliance.leases.model import Lease
from appliance.sync.changelog import Cursor
from appliance.sync.frames import (
    BulkBegin,
    BulkEnd,
    BulkKind,
    BulkPage,
    FrameError,
    Reason,
    Updates,
)
from appliance.sync.phases import Move, Table


class Inbound(Enum):
    """What the peer may send next on its stream."""

    WAIT = "wait"  # BULK_BEGIN (the answer to our SYNC_REQ)
    PAGES = "pages"  # BULK_PAGE, UPDATES or BULK_END (a snapshot)
    TAIL = "tail"  # UPDATES or BULK_END (no more pages)
    LIVE = "live"  # UPDATES, or BULK_BEGIN(SNAPSHOT) if the peer must start over


class Trigger(Enum):
    """The peer's frames as the inbound stream sees them."""

    SNAPSHOT = "snapshot"  # BULK_BEGIN(SNAPSHOT)
    DELTA = "delta"  # BULK_BEGIN(DELTA)
    PAGE = "page"  # BULK_PAGE
    UPDATES = "updates"  # UPDATES
    END = "end"  # BULK_END


_W, _P, _T, _L = Inbound.WAIT, Inbound.PAGES, Inbound.TAIL, Inbound.LIVE
_REFUSED = "{t} from the peer in inbound phase {{phase}}"

INBOUND: Table[Inbound, Trigger] = Table("inbound", Inbound, Trigger, [
    Move(_W, Trigger.SNAPSHOT, _P, "the answer to our SYNC_REQ: a snapshot, pages follow"),
    Move(_W, Trigger.DELTA, _T, "the answer to our SYNC_REQ: changes since our cursor"),
    Move(_P, Trigger.PAGE, _P, "applied, no cursor, conflicts held for the end"),
    Move(_P, Trigger.UPDATES, _T, "the changes since the snapshot begin: applied, no cursor"),
    Move(_T, Trigger.UPDATES, _T, "applied, no cursor, conflicts held for the end"),
    Move(_P, Trigger.END, _L, "applied with the cursor at its seq, conflicts settled; "
                              "caught up once durable"),
    Move(_T, Trigger.END, _L, "as from PAGES"),
    Move(_L, Trigger.UPDATES, _L, "live changes: applied with the cursor, settled"),
    Move(_P, Trigger.SNAPSHOT, _P, "the peer starts over (its log no longer reaches back)"),
    Move(_T, Trigger.SNAPSHOT, _P, "as from PAGES"),
    Move(_L, Trigger.SNAPSHOT, _P, "as from PAGES; the session leaves IN_SYNC"),
], peer={t: _REFUSED.format(t=t.name) for t in Trigger})


class Batch(Enum):
    """What a staged batch was, for what its durability means."""

    UPDATES = "updates"
    PAGE = "page"  # counts in the ACK's page window
    END = "end"  # BULK_END: the catch-up is over once durable


@dataclass(frozen=True, slots=True)
class Stage:
    """Action: hand these leases to the daemon (the session's Apply, with a batch number
    the stream then `track`s). `cursor` is stored after the leases; `settle` is False
    inside a catch-up."""

    leases: tuple[Lease, ...]
    cursor: Cursor | None
    kind: Batch
    settle: bool


@dataclass(frozen=True, slots=True)
class Began:
    """Action: a catch-up began (stats, log); `restarted`: the stream had caught up
    before, so the session leaves IN_SYNC."""

    kind: BulkKind
    total: int
    restarted: bool


@dataclass(frozen=True, slots=True)
class Durable:
    """Action: batches up to here are durable. ACK (`seq`, `pages`) while connected;
    `cursor`: the new held cursor, if one moved; `end`: a BULK_END was among them."""

    seq: int
    pages: int
    cursor: Cursor | None
    end: bool


@dataclass(slots=True)
class _Pending:
    batch: int
    kind: Batch
    cursor: Cursor | None
    done: bool = False


@dataclass(slots=True)
class InStream:
    """The peer's stream on one connection."""

    peer_epoch: int = 0  # the peer's log epoch (its HELLO): cursors are in it
    phase: Inbound = Inbound.WAIT
    kind: BulkKind | None = None
    total: int = 0
    received: int = 0  # leases received since the catch-up began
    started: float | None = None
    seq: int = 0  # newest seq received in UPDATES / BULK_END
    caught_up: bool = False
    ack_seq: int = 0  # what our ACKs report: newest durable cursor seq on this connection
    pages_durable: int = 0
    pending: deque[_Pending] = field(default_factory=deque)

    def on_begin(self, f: BulkBegin, now: float) -> Began:
        # A delta answers our SYNC_REQ only; a snapshot may also start over at any time.
        nxt = INBOUND.next(self.phase, Trigger.SNAPSHOT if f.kind is BulkKind.SNAPSHOT
                           else Trigger.DELTA)
        if f.from_seq < self.seq:
            raise FrameError(Reason.UNEXPECTED,
                             f"BULK_BEGIN from seq {f.from_seq} before {self.seq}")
        self.phase = nxt
        self.kind = f.kind
        self.total = f.total
        self.received = 0
        self.started = now
        self.seq = f.from_seq
        restarted = self.caught_up
        self.caught_up = False
        return Began(f.kind, f.total, restarted)

    def on_page(self, f: BulkPage) -> Stage:
        self.phase = INBOUND.next(self.phase, Trigger.PAGE)  # only inside a snapshot
        self.received += len(f.leases)
        return Stage(f.leases, None, Batch.PAGE, False)

    def on_updates(self, f: Updates) -> Stage | None:
        nxt = INBOUND.next(self.phase, Trigger.UPDATES)  # not before BULK_BEGIN
        leases = f.leases
        last = self.seq
        for lease in leases:
            if lease.seq <= last:
                raise FrameError(Reason.UNEXPECTED, f"update seq {lease.seq} not after {last}")
            last = lease.seq
        self.phase = nxt
        self.seq = last
        if nxt is Inbound.TAIL:
            self.received += len(leases)
        if not leases:
            return None
        # Inside a catch-up the cursor moves only at BULK_END: if we stop halfway (a
        # restart), the whole catch-up comes again, including what the Merger held back
        # for its end.
        live = nxt is Inbound.LIVE
        return Stage(leases, Cursor(self.peer_epoch, last) if live else None, Batch.UPDATES,
                     live)

    def on_end(self, f: BulkEnd) -> Stage:
        nxt = INBOUND.next(self.phase, Trigger.END)  # only inside a catch-up
        if f.seq < self.seq:
            raise FrameError(Reason.UNEXPECTED, f"BULK_END seq {f.seq} before {self.seq}")
        self.seq = f.seq
        self.phase = nxt
        return Stage((), Cursor(self.peer_epoch, f.seq), Batch.END, True)

    def track(self, batch: int, stage: Stage) -> None:
        """The session handed `stage` to the daemon as Apply number `batch`."""
        self.pending.append(_Pending(batch, stage.kind, stage.cursor))

    def on_persisted(self, batch: int) -> Durable | None:
        """The daemon made Apply `batch` durable. ACKs go in order: only what is durable
        up to the first batch still pending counts. None: nothing new is durable (a batch
        of an earlier connection, reported twice, or behind one still pending)."""
        pending = self.pending
        for p in pending:
            if p.batch == batch:
                p.done = True
                break
        else:
            return None
        changed = False
        end = False
        cursor = None
        while pending and pending[0].done:
            p = pending.popleft()
            changed = True
            if p.kind is Batch.PAGE:
                self.pages_durable += 1
            if p.cursor is not None:
                cursor = p.cursor
                self.ack_seq = p.cursor.seq
            if p.kind is Batch.END:
                end = True
        if not changed:
            return None
        return Durable(self.ack_seq, self.pages_durable, cursor, end)

    def finish(self) -> bool:
        """A BULK_END is durable: True when that ends the catch-up (the stream is LIVE
        and had not caught up yet)."""
        if self.phase is Inbound.LIVE and not self.caught_up:
            self.caught_up = True
            return True
        return False
