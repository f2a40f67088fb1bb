"""The outbound stream: our changes going to the peer on one connection, as a phase
enum, a transition table and the stream that walks it (events in: the peer's SYNC_REQ
and ACKs, our change log growing; actions out: frames on the wire and what happened).

Rules for this file: pure (no sockets, no clock). Two kinds of trigger: the peer's
frames (a SYNC_REQ, an ACK), refused FrameError(UNEXPECTED) when the table lacks the
move or the ACK covers what was never sent, with nothing changed; and our own moves (a
restart, the pages or the tail done), which the table lacking is our bug: SessionError.

Theory of operation (docs/sync-protocol.md §Replication model): the peer's SYNC_REQ
carries its cursor in our log. While our change log still reaches back to it we answer
BULK_BEGIN(DELTA) and the changes since, each client's last change only (merge.coalesce);
else BULK_BEGIN(SNAPSHOT) and pages of the whole table (at most page_window ahead of the
peer's page ACKs), then the changes since the snapshot. BULK_END(seq) closes the
catch-up; live UPDATES follow as the daemon commits changes, at most inflight_max leases
ahead of the peer's ACKs. When the log moves past what the peer needs (pages took too
long, or the peer fell behind while live) the snapshot starts over. The peer has caught
up when its ACK covers our BULK_END.

    phase  trigger     next   what happens
    WAIT   delta       TAIL   BULK_BEGIN(DELTA), the coalesced changes since its cursor
    WAIT   snapshot    PAGES  BULK_BEGIN(SNAPSHOT), pages
    PAGES  ack         PAGES  the page window opens
    PAGES  pages_sent  TAIL   the changes since the snapshot
    PAGES  restart     PAGES  the log moved on while the pages went out
    TAIL   ack         TAIL   the inflight window opens
    TAIL   end_sent    LIVE   BULK_END; caught up once the peer ACKs it
    LIVE   ack         LIVE   the inflight window opens
    LIVE   restart     PAGES  the peer fell behind our log

Every other pair: a second SYNC_REQ or an ACK before SYNC_REQ is refused
`refused_unexpected`; another own move is SessionError.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from appliance.leases.model import Lease
from appliance.sync.changelog import ChangeLog
from appliance.sync.frames import (
    Ack,
    BulkBegin,
    BulkEnd,
    BulkKind,
    FrameError,
    FrameType,
    Reason,
    SyncReq,
)
from appliance.sync.merge import coalesce
from appliance.sync.phases import Move, Table, Wire

ALL = 1 << 62  # changes_since limit for a whole catch-up delta


class Outbound(Enum):
    """Where our stream to the peer is."""

    WAIT = "wait"  # no SYNC_REQ from the peer yet
    PAGES = "pages"  # sending snapshot pages
    TAIL = "tail"  # sending changes up to the catch-up target, then BULK_END
    LIVE = "live"  # BULK_END sent, streaming changes as they come


class Trigger(Enum):
    # the peer's
    DELTA = "delta"  # SYNC_REQ whose cursor our change log still reaches back to
    SNAPSHOT = "snapshot"  # SYNC_REQ whose cursor it does not
    ACK = "ack"
    # ours
    RESTART = "restart"  # the log moved past what the peer needs: snapshot again
    PAGES_SENT = "pages_sent"  # the last page went out
    END_SENT = "end_sent"  # the catch-up's last change went out: BULK_END


_W, _P, _T, _L = Outbound.WAIT, Outbound.PAGES, Outbound.TAIL, Outbound.LIVE

OUTBOUND: Table[Outbound, Trigger] = Table("outbound", Outbound, Trigger, [
    Move(_W, Trigger.DELTA, _T, "BULK_BEGIN(DELTA), then each client's last change since "
                                "the peer's cursor"),
    Move(_W, Trigger.SNAPSHOT, _P, "BULK_BEGIN(SNAPSHOT), then pages of the whole table"),
    Move(_P, Trigger.ACK, _P, "the page window opens: more pages"),
    Move(_P, Trigger.PAGES_SENT, _T, "the changes since the snapshot"),
    Move(_P, Trigger.RESTART, _P, "the log moved on while the pages went out: snapshot "
                                  "again"),
    Move(_T, Trigger.ACK, _T, "the inflight window opens: more changes"),
    Move(_T, Trigger.END_SENT, _L, "BULK_END; the peer has caught up once it ACKs it"),
    Move(_L, Trigger.ACK, _L, "the inflight window opens: more changes"),
    Move(_L, Trigger.RESTART, _P, "the peer fell behind our log: snapshot again; the "
                                  "session leaves IN_SYNC"),
], peer={
    Trigger.DELTA: "second SYNC_REQ",
    Trigger.SNAPSHOT: "second SYNC_REQ",
    Trigger.ACK: "ACK before SYNC_REQ",
})


# -- actions: what the session reports of the stream ---------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """A catch-up began (BULK_BEGIN sent): stats and log. `restart`: the log overran the
    peer; `resync`: the stream had caught up before, so the session leaves IN_SYNC."""

    kind: BulkKind
    total: int
    restart: bool
    resync: bool


@dataclass(frozen=True, slots=True)
class Released:
    """The peer made our changes up to `seq` durable (session: ReleaseAcked)."""

    seq: int


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The peer's ACK covers our BULK_END: `sent` leases since `started`."""

    end_seq: int
    kind: BulkKind | None
    sent: int
    started: float | None


Fact = Started | Released | CaughtUp


@dataclass(slots=True)
class OutStream:
    """Our stream on one connection. `page_size`..`inflight_max`: session.Params."""

    wire: Wire
    log: ChangeLog
    page_size: int
    page_window: int
    batch_max: int
    inflight_max: int
    frame_budget: int
    phase: Outbound = Outbound.WAIT
    kind: BulkKind | None = None
    total: int = 0
    sent: int = 0
    started: float | None = None
    pages: Iterator[list[Lease]] | None = None
    tail: list[Lease] | None = None  # the catch-up delta, coalesced, being sent
    tail_pos: int = 0
    pages_sent: int = 0
    pages_acked: int = 0
    sent_seq: int = 0
    acked_seq: int = 0
    target: int = 0
    end_seq: int = -1
    caught_up: bool = False
    unacked: deque[tuple[int, int]] = field(default_factory=deque)  # (last seq, leases)
    lag: int = 0

    def _move(self, trigger: Trigger) -> None:
        self.phase = OUTBOUND.next(self.phase, trigger)

    # -- events ----------------------------------------------------------------------
    def on_sync_req(self, f: SyncReq, now: float) -> list[Fact]:
        if OUTBOUND.refusal(self.phase, Trigger.DELTA) and \
                OUTBOUND.refusal(self.phase, Trigger.SNAPSHOT):
            # Neither answer fits (a second SYNC_REQ): refused before reading the log.
            OUTBOUND.next(self.phase, Trigger.DELTA)
        log = self.log
        changes: list[Lease] | None = None
        if f.epoch == log.epoch and f.seq <= log.last_seq:
            changes = log.changes_since(f.seq, ALL)
        self.started = now
        if changes is None:
            return self._start_snapshot(now, restart=False)
        self.kind = BulkKind.DELTA
        self.sent_seq = self.acked_seq = f.seq
        self._start_tail(changes, Trigger.DELTA)
        self.total = len(self.tail)  # type: ignore[arg-type]
        self.wire.send(BulkBegin(BulkKind.DELTA, self.total, f.seq))
        out: list[Fact] = [Started(BulkKind.DELTA, self.total, False, False)]
        out += self.pump(now)
        return out

    def on_ack(self, f: Ack, now: float) -> list[Fact]:
        OUTBOUND.next(self.phase, Trigger.ACK)  # refused before SYNC_REQ
        if f.seq > self.sent_seq or f.pages > self.pages_sent:
            raise FrameError(Reason.UNEXPECTED,
                             f"ACK of seq {f.seq} / page {f.pages} never sent "
                             f"(sent {self.sent_seq} / {self.pages_sent})")
        out: list[Fact] = []
        if f.pages > self.pages_acked:
            self.pages_acked = f.pages
        if f.seq > self.acked_seq:
            self.acked_seq = f.seq
            q = self.unacked
            while q and q[0][0] <= f.seq:
                self.lag -= q.popleft()[1]
            out.append(Released(f.seq))
        if not self.caught_up and self.end_seq >= 0 and self.acked_seq >= self.end_seq:
            self.caught_up = True
            out.append(CaughtUp(self.end_seq, self.kind, self.sent, self.started))
        return out

    def on_committed(self, now: float) -> list[Fact]:
        """The change log grew: send what the windows allow (nothing before SYNC_REQ)."""
        if self.phase is Outbound.WAIT:
            return []
        return self.pump(now)

    def release(self) -> None:
        """The connection ended: let the snapshot iterator go."""
        self.pages = None

    # -- sending ---------------------------------------------------------------------
    def _start_tail(self, changes: list[Lease], trigger: Trigger) -> None:
        """The catch-up delta: each client's last change only, in seq order. The peer
        never needs our intermediate history, and merging against it would make the
        outcome depend on arrival order (merge.coalesce)."""
        self._move(trigger)
        self.tail = coalesce(changes)
        self.tail_pos = 0
        self.target = max(self.sent_seq, self.log.last_seq, changes[-1].seq if changes else 0)

    def _start_snapshot(self, now: float, restart: bool) -> list[Fact]:
        log = self.log
        # last_seq and the first page in one step: the snapshot is at least this new.
        snap_seq = log.last_seq
        self._move(Trigger.RESTART if restart else Trigger.SNAPSHOT)
        self.pages = iter(log.snapshot_pages(self.page_size))
        self.kind = BulkKind.SNAPSHOT
        self.total = log.lease_count
        self.sent = 0
        self.started = now
        self.sent_seq = snap_seq
        self.tail = None
        self.end_seq = -1
        resync = self.caught_up
        self.caught_up = False
        self.wire.send(BulkBegin(BulkKind.SNAPSHOT, self.total, snap_seq))
        out: list[Fact] = [Started(BulkKind.SNAPSHOT, self.total, restart, resync)]
        out += self.pump(now)
        return out

    def _send_updates(self, leases: list[Lease]) -> None:
        counts = self.wire.send_leases(FrameType.UPDATES, leases, self.frame_budget)
        i = 0
        for n in counts:
            i += n
            self.unacked.append((leases[i - 1].seq, n))
        self.lag += len(leases)
        self.sent_seq = leases[-1].seq
        if self.phase is Outbound.TAIL:
            self.sent += len(leases)

    def pump(self, now: float) -> list[Fact]:
        """Send what the windows allow: snapshot pages, then changes, then BULK_END."""
        log = self.log
        if self.phase is Outbound.PAGES:
            assert self.pages is not None
            while self.pages_sent - self.pages_acked < self.page_window:
                page = next(self.pages, None)
                if page is None:
                    self.pages = None
                    changes = log.changes_since(self.sent_seq, ALL)
                    if changes is None:  # the log moved on while the pages went out
                        return self._start_snapshot(now, restart=True)
                    self._start_tail(changes, Trigger.PAGES_SENT)
                    break
                if not page:
                    continue
                self.pages_sent += len(self.wire.send_leases(FrameType.BULK_PAGE, page,
                                                             self.frame_budget))
                self.sent += len(page)
        if self.phase is Outbound.TAIL:
            tail = self.tail
            assert tail is not None
            while self.tail_pos < len(tail) and self.lag < self.inflight_max:
                chunk = tail[self.tail_pos : self.tail_pos + self.batch_max]
                self.tail_pos += len(chunk)
                self._send_updates(chunk)
            if self.tail_pos >= len(tail):
                self.tail = None
                self.sent_seq = max(self.sent_seq, self.target)
                self._move(Trigger.END_SENT)
                self.end_seq = self.sent_seq
                self.wire.send(BulkEnd(self.sent_seq))
        if self.phase is Outbound.LIVE:
            while self.lag < self.inflight_max:
                changes = log.changes_since(self.sent_seq, self.batch_max)
                if changes is None:
                    return self._start_snapshot(now, restart=True)
                if not changes:
                    break
                self._send_updates(changes)
                if len(changes) < self.batch_max:
                    break
        return []
