"""The replication session: the state machine of one peer connection, events in, actions
out (`Session.handle(event, now) -> list[Action]`).

Pure: no sockets, no clock, no randomness. The transport feeds bytes, connection
events, timer expiries and the daemon's durability reports, and executes the actions
(send bytes, apply leases, start timers, close). Nonces come in with `Connected`.

Theory of operation (docs/sync-protocol.md has the full protocol):

Replication is symmetric. Each device streams the changes it makes itself (its
ChangeLog) to the other, which makes them durable and acknowledges them; so whichever
device serves, the other one follows, and after a split brain both streams run at once
and merge.rules reconcile them. A connection goes:

    DISCONNECTED --Connected--> HANDSHAKE   both send HELLO (in clear: nothing secret);
                                            on the peer's HELLO, derive the direction keys
                                            and send AUTH + SYNC_REQ + CONFIG (encrypted)
    HANDSHAKE --peer AUTH verified--> SYNCING
        outbound: answer the peer's SYNC_REQ with BULK_BEGIN(DELTA) + UPDATES when the
                  change log still reaches back to its cursor, else BULK_BEGIN(SNAPSHOT)
                  + BULK_PAGEs (windowed by ACKed pages) + UPDATES since the snapshot;
                  then BULK_END(seq), then live UPDATES as the daemon commits changes.
        inbound:  the mirror image; every batch becomes an Apply action and is ACKed
                  only when the daemon reports it durable (Persisted).
    SYNCING --both directions caught up--> IN_SYNC   (BULK_END durable here, and the
                                            peer's ACK covers our BULK_END)
    IN_SYNC --a new snapshot in either direction--> SYNCING
    any connected state --refused input, timeout, BYE, reset, shutdown--> DISCONNECTED

Under `State` run three machines, each with its phase enum and transition table
(h11's per-side tables; tests/unit/test_sync_session.py walks each as a matrix):
HANDSHAKE (AWAIT_HELLO -> AWAIT_AUTH -> AUTHENTICATED), INBOUND (the peer's stream:
WAIT, PAGES, TAIL, LIVE; a move it lacks is the peer's fault: refused UNEXPECTED) and
OUTBOUND (ours: WAIT, PAGES, TAIL, LIVE; a move it lacks is our bug: SessionError).

`ready_to_serve` is the gate for VRRP: True once this device holds everything the peer
had when they (re)connected (our side's BULK_END is durable). It turns False when a
new connection starts and stays True after a disconnect: the last thing we knew was
complete. `in_sync` (state IN_SYNC) is what `sync` mode waits on.

Rules for this module: input from the network never raises out of handle(); it is
refused with a Reason (counter), the connection is closed, and nothing else changes:
no Apply, no cursor move. A call the protocol does not allow from our side (Connected
twice, a nonce of the wrong size) is our bug and raises SessionError.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum

from appliance.leases.model import Lease
from appliance.sync.changelog import ChangeLog, Cursor
from appliance.sync.frames import (
    DEFAULT_MAX_BODY,
    NONCE_LEN,
    PREAUTH_MAX_BODY,
    Ack,
    Auth,
    BulkBegin,
    BulkEnd,
    BulkKind,
    BulkPage,
    Bye,
    ByeReason,
    ConfigSummary,
    Frame,
    FrameCodec,
    FrameError,
    FrameType,
    Heartbeat,
    Hello,
    Notice,
    Reason,
    SyncReq,
    Updates,
    auth_key,
    auth_proof,
    config_digest,
    direction_key,
    setting_digest,
    setting_key,
)
from appliance.sync.merge import coalesce
from appliance.sync.skew import SkewTracker, sample


class SessionError(RuntimeError):
    """An event our own side had no business sending (a bug in the caller)."""


class State(Enum):
    # No connection; late bytes, timers and Persisted are ignored (Persisted still moves
    # the cursor). Left by Connected.
    DISCONNECTED = "disconnected"
    # HELLO sent; only the peer's HELLO, then its AUTH, are accepted. Left by a verified
    # AUTH (SYNCING), or by any failure or the handshake timeout (DISCONNECTED).
    HANDSHAKE = "handshake"
    # Authenticated; a catch-up runs in at least one direction. Left when both are done
    # (IN_SYNC) or on failure.
    SYNCING = "syncing"
    # Both streams live: what `sync` mode waits on. Left by a new snapshot in either
    # direction (SYNCING) or on failure.
    IN_SYNC = "in_sync"

    @property
    def tree_value(self) -> str:
        """The runtime tree's sync/peer value: connected | disconnected | syncing."""
        return _TREE[self]


_TREE = {
    State.DISCONNECTED: "disconnected",
    State.HANDSHAKE: "disconnected",  # not a peer until it proved the key
    State.SYNCING: "syncing",
    State.IN_SYNC: "connected",
}

# (state, trigger) -> next state. Anything else is a bug (SessionError).
TRANSITIONS: dict[tuple[State, str], State] = {
    (State.DISCONNECTED, "connected"): State.HANDSHAKE,
    (State.HANDSHAKE, "authenticated"): State.SYNCING,
    (State.SYNCING, "caught_up"): State.IN_SYNC,
    (State.IN_SYNC, "resync"): State.SYNCING,
    (State.HANDSHAKE, "lost"): State.DISCONNECTED,
    (State.SYNCING, "lost"): State.DISCONNECTED,
    (State.IN_SYNC, "lost"): State.DISCONNECTED,
}


class Timer(Enum):
    HANDSHAKE = "handshake"  # HELLO/AUTH must be done by then
    HEARTBEAT = "heartbeat"  # time to send a HEARTBEAT if nothing else went out
    PEER_DEAD = "peer_dead"  # time to check whether the peer went silent


class Loss(Enum):
    """How a connection ended; the value is the counter suffix (lost_<value>).
    EOF and RESET without a BYE are the peer's death only if a probe confirms it
    (`evidence`)."""

    BYE = "bye"  # the peer said goodbye (clean, on purpose)
    EOF = "eof"  # closed without BYE: the peer process went away
    RESET = "reset"  # TCP RST: the peer's kernel has no such connection any more
    TIMEOUT = "timeout"  # silence longer than dead_after_s (or handshake too slow)
    REFUSED = "refused"  # we refused its input
    LOCAL = "local"  # we closed it (shutdown, duplicate connection)
    ERROR = "error"  # any other socket error


class Probe(Enum):
    """What a fresh TCP connection to the peer's sync port got, right after the
    connection ended by EOF or RESET; the value is the counter suffix (probe_<value>)."""

    REFUSED = "refused"  # ECONNREFUSED: the peer's kernel says nothing listens there
    ANSWERED = "answered"  # it connected: the peer's daemon still listens
    SILENT = "silent"  # no answer within probe_timeout_s, or the path is down


class Evidence(Enum):
    """What the end of a connection proves about the peer's daemon
    (docs/failover.md)."""

    DIED = "died"  # closed or reset without BYE, and its port refuses connections
    ALIVE = "alive"  # closed or reset without BYE, yet its port answers: an injected
    #                  reset, a refusal of our input, a daemon already restarted
    NONE = "none"  # BYE, silence, a refusal, our own close: VRRP's timers decide


def needs_probe(how: Loss) -> bool:
    """An EOF or a reset without BYE may be the peer's death: it takes a probe to tell."""
    return how is Loss.EOF or how is Loss.RESET


def evidence(how: Loss, probe: Probe | None) -> Evidence:
    """The one rule: an EOF or RESET without BYE is the peer daemon's death only when a
    fresh connection to its sync port is refused (the kernel's answer when nothing
    listens; a spoofed RST cannot make a live listener refuse). A probe that connects
    proves it alive; one that times out proves nothing (silence: VRRP decides)."""
    if not needs_probe(how) or probe is None:
        return Evidence.NONE
    if probe is Probe.REFUSED:
        return Evidence.DIED
    if probe is Probe.ANSWERED:
        return Evidence.ALIVE
    return Evidence.NONE


# -- events (past-tense facts) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    nonce: bytes  # NONCE_LEN fresh random bytes (os.urandom in the transport)
    outbound: bool  # we dialled


@dataclass(frozen=True, slots=True)
class DataReceived:
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    how: Loss
    detail: str = ""


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class Persisted:
    """The daemon made the Apply with this batch number durable."""

    batch: int


@dataclass(frozen=True, slots=True)
class LocalCommitted:
    """The change log grew (the daemon committed changes up to `seq`)."""

    seq: int = 0


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    reason: ByeReason = ByeReason.SHUTDOWN


@dataclass(frozen=True, slots=True)
class NoticeRequested:
    code: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SummaryChanged:
    """A reload changed the drift-relevant settings: tell the peer (CONFIG) now."""

    summary: tuple[tuple[str, str], ...]


Event = (Connected | DataReceived | ConnectionLost | TimerFired | Persisted | LocalCommitted
         | ShutdownRequested | NoticeRequested | SummaryChanged)


# -- actions (imperatives) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Apply:
    """Merge these peer leases into the table (merge.Merger.apply(leases, table, settle))
    and make the result durable, then (and only then) report Persisted(batch). With a
    cursor, also store it, after the leases: it is how far this device now holds the
    peer's log. Leases may be empty. `settle` is False inside a catch-up (address
    conflicts wait for its end) and True for live updates and at BULK_END."""

    leases: tuple[Lease, ...]
    cursor: Cursor | None
    batch: int
    settle: bool = True


@dataclass(frozen=True, slots=True)
class ReleaseAcked:
    """The peer made our changes up to `seq` durable: release what waits on them."""

    seq: int


@dataclass(frozen=True, slots=True)
class StartTimer:
    timer: Timer
    deadline: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class ReportState:
    state: State


@dataclass(frozen=True, slots=True)
class Refuse:
    """Count reason.value and log (rate-limited). A Close follows."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class ReportDrift:
    """Settings that differ from the peer's (runtime tree sync/config_drift); empty: none."""

    paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReportClock:
    """A new clock-skew estimate (skew.SkewTracker): runtime tree sync/clock_skew_ms,
    sync/clock_delay_ms, sync/clock_skew_alarm. `alarm_changed` is True when this
    estimate raised the alarm, False when it cleared it, None otherwise."""

    skew_ms: float
    delay_ms: float
    alarm: bool
    alarm_changed: bool | None = None


@dataclass(frozen=True, slots=True)
class DeliverNotice:
    code: int
    detail: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection (after sending what came before)."""


@dataclass(frozen=True, slots=True)
class ReportLoss:
    """The connection is over; `how` says why (stats lost_<how>, later issues' evidence)."""

    how: Loss
    detail: str


@dataclass(frozen=True, slots=True)
class Log:
    msg_id: str  # stable, listed in docs/sync-protocol.md
    text: str
    warning: bool = False


Action = (Send | Apply | ReleaseAcked | StartTimer | CancelTimer | ReportState | Refuse
          | ReportDrift | ReportClock | DeliverNotice | Close | ReportLoss | Log)


# -- configuration, counters, progress -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Params:
    heartbeat_s: float = 1.0  # send a HEARTBEAT this often, busy or not (time samples)
    dead_after_s: float = 3.0  # no frame from the peer for this long: connection dead
    # HELLO and AUTH must be done by then: an unauthenticated connection is short-lived.
    handshake_timeout_s: float = 2.0
    probe_timeout_s: float = 0.5  # how long the probe of the peer's port may take
    page_size: int = 1000  # leases asked of ChangeLog.snapshot_pages per page
    page_window: int = 8  # BULK_PAGE frames sent ahead of the peer's ACKs
    batch_max: int = 2000  # leases pulled from the change log per UPDATES
    inflight_max: int = 50_000  # leases sent and not yet ACKed before the stream pauses
    frame_budget: int = 256 * 1024  # body bytes per UPDATES / BULK_PAGE frame
    max_body: int = DEFAULT_MAX_BODY  # after authentication
    preauth_max_body: int = PREAUTH_MAX_BODY  # before it


DEFAULT_PARAMS = Params()
NOTHING = Cursor()  # a device that holds none of the peer's log
ALL = 1 << 62  # changes_since limit for a whole catch-up delta

COUNTERS = (
    "frames_sent", "frames_received", "leases_sent", "leases_received", "acks_sent",
    "acks_received", "snapshots_sent", "snapshots_received", "deltas_sent",
    "deltas_received", "snapshot_restarts", "handshakes", "notices_sent",
    "notices_received", "clock_samples", *(f"lost_{h.value}" for h in Loss),
    *(f"probe_{p.value}" for p in Probe),
    *(r.value for r in Reason),
)


class Stats:
    """Counters that outlive connections (runtime tree stats/sync/<name>)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)

    def bump(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of where replication stands, for the runtime tree and the log."""

    state: State
    peer: str | None
    ready_to_serve: bool
    held: Cursor  # how far we hold the peer's log (runtime tree sync/last_seq)
    peer_last_seq: int  # the peer's newest change as last announced
    in_kind: BulkKind | None  # the catch-up being received, if any
    in_total: int
    in_received: int  # leases received since it began
    in_started: float | None
    out_kind: BulkKind | None  # the catch-up being sent, if any
    out_total: int
    out_sent: int
    out_started: float | None
    sent_seq: int  # newest of our changes sent on this connection
    acked_seq: int  # newest of our changes the peer made durable
    lag: int  # leases sent and not acknowledged (runtime tree sync/lag)

    def in_rate(self, now: float) -> float:
        """Leases per second received in the current catch-up."""
        if self.in_started is None or now <= self.in_started:
            return 0.0
        return self.in_received / (now - self.in_started)


# -- the machine ---------------------------------------------------------------------

# A connection's real machine is three machines side by side (h11's per-side tables):
# the handshake, the inbound stream (the peer's changes) and the outbound stream (ours).
# `State` above is their summary for the daemon. Each has its phase enum and its table;
# a move the table does not have is refused when the peer asked for it (inbound and
# handshake: Reason.UNEXPECTED) and is our bug when we made it (outbound: SessionError).


class Handshake(Enum):
    AWAIT_HELLO = "await_hello"  # connected, our HELLO sent
    AWAIT_AUTH = "await_auth"  # the peer's HELLO in, keys derived, our AUTH sent
    AUTHENTICATED = "authenticated"  # the peer's AUTH verified


HANDSHAKE: dict[tuple[Handshake, str], Handshake] = {
    (Handshake.AWAIT_HELLO, "hello"): Handshake.AWAIT_AUTH,
    (Handshake.AWAIT_AUTH, "auth"): Handshake.AUTHENTICATED,
}


class Inbound(Enum):
    """What the peer may send next on its stream."""

    WAIT = "wait"  # BULK_BEGIN (the answer to our SYNC_REQ)
    PAGES = "pages"  # BULK_PAGE, UPDATES or BULK_END (a snapshot)
    TAIL = "tail"  # UPDATES or BULK_END (no more pages)
    LIVE = "live"  # UPDATES, or BULK_BEGIN(SNAPSHOT) if the peer must start over


# Triggers are the frames: snapshot/delta (BULK_BEGIN of that kind), page, updates, end.
INBOUND: dict[tuple[Inbound, str], Inbound] = {
    (Inbound.WAIT, "snapshot"): Inbound.PAGES,
    (Inbound.WAIT, "delta"): Inbound.TAIL,
    (Inbound.PAGES, "page"): Inbound.PAGES,
    (Inbound.PAGES, "updates"): Inbound.TAIL,
    (Inbound.TAIL, "updates"): Inbound.TAIL,
    (Inbound.LIVE, "updates"): Inbound.LIVE,
    (Inbound.PAGES, "end"): Inbound.LIVE,
    (Inbound.TAIL, "end"): Inbound.LIVE,
    # A snapshot may start over at any time (the sender's log no longer reaches back).
    (Inbound.PAGES, "snapshot"): Inbound.PAGES,
    (Inbound.TAIL, "snapshot"): Inbound.PAGES,
    (Inbound.LIVE, "snapshot"): Inbound.PAGES,
}


class Outbound(Enum):
    """Where our stream to the peer is."""

    WAIT = "wait"  # no SYNC_REQ from the peer yet
    PAGES = "pages"  # sending snapshot pages
    TAIL = "tail"  # sending changes up to the catch-up target, then BULK_END
    LIVE = "live"  # BULK_END sent, streaming changes as they come


OUTBOUND: dict[tuple[Outbound, str], Outbound] = {
    (Outbound.WAIT, "delta"): Outbound.TAIL,  # the peer's cursor is in our log
    (Outbound.WAIT, "snapshot"): Outbound.PAGES,  # it is not
    (Outbound.PAGES, "pages_sent"): Outbound.TAIL,
    (Outbound.TAIL, "end_sent"): Outbound.LIVE,
    # The log moved past what the peer needs: start the snapshot over.
    (Outbound.PAGES, "snapshot"): Outbound.PAGES,
    (Outbound.LIVE, "snapshot"): Outbound.PAGES,
}


def _in_next(c: _Conn, trigger: str) -> Inbound:
    nxt = INBOUND.get((c.in_phase, trigger))
    if nxt is None:
        raise FrameError(Reason.UNEXPECTED, f"{trigger.upper()} from the peer in inbound "
                                            f"phase {c.in_phase.value}")
    return nxt


def _out_move(c: _Conn, trigger: str) -> None:
    nxt = OUTBOUND.get((c.out_phase, trigger))
    if nxt is None:
        raise SessionError(f"no outbound move from {c.out_phase.name} on {trigger}")
    c.out_phase = nxt

_B_UPDATES = 0
_B_PAGE = 1
_B_END = 2


@dataclass(slots=True)
class _Pending:
    batch: int
    kind: int
    cursor: Cursor | None
    leases: int
    done: bool = False


@dataclass(slots=True)
class _Conn:
    """Everything that lives as long as one connection."""

    codec: FrameCodec
    nonce: bytes
    outbound: bool
    my_hello: Hello
    peer: Hello | None = None
    hs: Handshake = Handshake.AWAIT_HELLO
    last_rx: float = 0.0
    last_tx: float = 0.0
    peer_last_seq: int = 0
    # time exchange: our stamps sent (wall us -> monotonic s), the peer's newest stamp
    sent_stamps: dict[int, float] = field(default_factory=dict)
    peer_stamp_us: int = 0
    peer_stamp_at: float = 0.0
    # inbound
    in_phase: Inbound = Inbound.WAIT
    in_kind: BulkKind | None = None
    in_total: int = 0
    in_received: int = 0
    in_started: float | None = None
    in_seq: int = 0  # newest seq received in UPDATES / BULK_END
    in_caught_up: bool = False
    ack_seq: int = 0  # what our ACKs report: newest durable cursor seq on this connection
    pages_durable: int = 0
    pending: deque[_Pending] = field(default_factory=deque)
    # outbound
    out_phase: Outbound = Outbound.WAIT
    out_kind: BulkKind | None = None
    out_total: int = 0
    out_sent: int = 0
    out_started: float | None = None
    pages: Iterator[list[Lease]] | None = None
    tail: list[Lease] | None = None  # the catch-up delta, coalesced, being sent
    tail_pos: int = 0
    pages_sent: int = 0
    pages_acked: int = 0
    sent_seq: int = 0
    acked_seq: int = 0
    target: int = 0
    end_seq: int = -1
    out_caught_up: bool = False
    unacked: deque[tuple[int, int]] = field(default_factory=deque)  # (last seq, leases)
    lag: int = 0

    @property
    def authenticated(self) -> bool:
        return self.hs is Handshake.AUTHENTICATED

    def hs_move(self, trigger: str, what: str) -> None:
        nxt = HANDSHAKE.get((self.hs, trigger))
        if nxt is None:
            raise FrameError(Reason.UNEXPECTED, f"{what} in handshake phase {self.hs.value}")
        self.hs = nxt


class Session:
    """One peer, one connection at a time. See the module docstring."""

    def __init__(self, node: str, key: bytes, log: ChangeLog, *, held: Cursor = NOTHING,
                 summary: Sequence[tuple[str, str]] = (), boot_id: int = 0,
                 params: Params = DEFAULT_PARAMS, stats: Stats | None = None,
                 skew: SkewTracker | None = None, aead: str | None = None) -> None:
        if not key:
            raise ValueError("sync/key is empty")
        if not node or len(node.encode()) > 255:
            raise ValueError("node name must be 1..255 bytes")
        self.node = node
        self._key = key
        self.log = log
        self.held = held
        self.boot_id = boot_id
        self.params = params
        self.stats = stats if stats is not None else Stats()
        self.skew = skew if skew is not None else SkewTracker(1.0)
        self._aead = aead
        self._auth_key = auth_key(key)
        self._setting_key = setting_key(key)
        self._wall: float | None = None
        self.state = State.DISCONNECTED
        self.ready_to_serve = False
        self.peer_name: str | None = None
        self.peer_boot_id: int | None = None
        self._batch = 0
        self._c: _Conn | None = None
        self._out: list[Action] = []
        self._tx: list[bytes] = []
        self.set_summary(summary)
        self._handlers: dict[type, Callable[..., None]] = {
            DataReceived: self._on_data,
            Persisted: self._on_persisted,
            LocalCommitted: self._on_committed,
            TimerFired: self._on_timer,
            Connected: self._on_connected,
            ConnectionLost: self._on_lost,
            ShutdownRequested: self._on_shutdown,
            NoticeRequested: self._on_notice_requested,
            SummaryChanged: self._on_summary_changed,
        }
        self._frame_handlers: dict[FrameType, Callable[..., None]] = {
            FrameType.UPDATES: self._rx_updates,
            FrameType.ACK: self._rx_ack,
            FrameType.HEARTBEAT: self._rx_heartbeat,
            FrameType.BULK_PAGE: self._rx_page,
            FrameType.BULK_BEGIN: self._rx_begin,
            FrameType.BULK_END: self._rx_end,
            FrameType.SYNC_REQ: self._rx_sync_req,
            FrameType.NOTICE: self._rx_notice,
            FrameType.BYE: self._rx_bye,
            FrameType.HELLO: self._rx_hello,
            FrameType.AUTH: self._rx_auth,
            FrameType.CONFIG: self._rx_config,
        }

    # -- public --------------------------------------------------------------------------
    def set_summary(self, summary: Sequence[tuple[str, str]]) -> None:
        """The drift-relevant settings as (config path, canonical value), sent in CONFIG
        after authentication (SummaryChanged sends them on a live connection)."""
        key = self._setting_key
        items = sorted({p: setting_digest(self._key, p, v, key=key) for p, v in summary}.items())
        self._summary = tuple(items)
        self._config_digest = config_digest(key, items)

    @property
    def in_sync(self) -> bool:
        return self.state is State.IN_SYNC

    @property
    def authenticated(self) -> bool:
        """Connected to a peer that proved the key (False again once disconnected)."""
        return self._c is not None and self._c.authenticated and \
            self.state is not State.DISCONNECTED

    @property
    def outbound(self) -> bool | None:
        return None if self._c is None else self._c.outbound

    def progress(self) -> Progress:
        c = self._c
        if c is None:
            return Progress(self.state, self.peer_name, self.ready_to_serve, self.held, 0,
                            None, 0, 0, None, None, 0, 0, None, 0, 0, 0)
        return Progress(
            self.state, self.peer_name, self.ready_to_serve, self.held, c.peer_last_seq,
            c.in_kind if not c.in_caught_up else None, c.in_total, c.in_received,
            c.in_started, c.out_kind if not c.out_caught_up else None, c.out_total,
            c.out_sent, c.out_started, c.sent_seq, c.acked_seq, c.lag)

    def handle(self, event: Event, now: float, wall: float | None = None) -> list[Action]:
        """`now` is the monotonic clock (timers, round trips); `wall` the wall clock
        (seconds since 1970) for the time exchange, None where the caller has none
        (then no stamp goes out and no sample is taken)."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise SessionError(f"not an event: {event!r}")
        self._wall = wall
        handler(event, now)
        out = self._out
        self._out = []
        if self._tx:
            out.insert(0, Send(b"".join(self._tx)))
            self._tx = []
        return out

    # -- plumbing ------------------------------------------------------------------------
    def _goto(self, trigger: str) -> None:
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            raise SessionError(f"no transition from {self.state.name} on {trigger}")
        self.state = new
        self._out.append(ReportState(new))

    def _send(self, frame: Frame, now: float) -> None:
        c = self._c
        assert c is not None
        self._tx.append(c.codec.encode(frame))
        c.last_tx = now
        self.stats.bump("frames_sent")

    def _refuse(self, reason: Reason, detail: str) -> None:
        self.stats.bump(reason.value)
        peer = self.peer_name or "peer"
        self._out.append(Refuse(reason, detail))
        if reason is Reason.OLD_VERSION:
            self._out.append(Log("SYNC012", f"the peer speaks sync wire {detail}: it runs an "
                                            "older dhcp-hotbackup. Upgrade both devices; "
                                            "until then they do not replicate "
                                            "(docs/sync-protocol.md §Versioning)", True))
        self._out.append(Log("SYNC007", f"frame from {peer} refused: {reason.value}"
                                        f"{': ' + detail if detail else ''}", True))
        self._end(Loss.REFUSED, f"{reason.value}: {detail}", close=True)

    def _end(self, how: Loss, detail: str, close: bool) -> None:
        """Leave for DISCONNECTED; the per-connection state goes, the cursor stays."""
        c = self._c
        if close:
            self._out.append(Close())
        for t in Timer:
            self._out.append(CancelTimer(t))
        self.stats.bump(f"lost_{how.value}")
        if c is not None:
            # Release the snapshot iterator; keep pending applies so that late Persisted
            # reports still advance `held` (no ACK goes out).
            c.pages = None
        self._goto("lost")
        self._out.append(ReportLoss(how, detail))
        # A connection that never authenticated is not news (junk, a probe, a peer
        # without the key: its refusal has a line of its own).
        authed = c is not None and c.authenticated
        self._out.append(Log("SYNC008", f"connection to {self.peer_name or 'peer'} "
                                        f"ended: {how.value}{': ' + detail if detail else ''}",
                             authed and how not in (Loss.LOCAL, Loss.BYE)))

    def _check_in_sync(self, now: float) -> None:
        c = self._c
        if c is None:
            return
        if self.state is State.SYNCING and c.in_caught_up and c.out_caught_up:
            self._goto("caught_up")
            self._out.append(Log("SYNC011", f"in sync with {self.peer_name}: we hold its log "
                                            f"to seq {self.held.seq}, it holds ours to "
                                            f"{c.acked_seq}"))

    def _resync(self) -> None:
        if self.state is State.IN_SYNC:
            self._goto("resync")

    # -- events ------------------------------------------------------------------------
    def _on_connected(self, ev: Connected, now: float) -> None:
        if self.state is not State.DISCONNECTED:
            raise SessionError(f"Connected while {self.state.name}")
        if len(ev.nonce) != NONCE_LEN:
            raise SessionError(f"nonce must be {NONCE_LEN} bytes")
        log = self.log
        stamp = self._stamp()
        hello = Hello(node=self.node, nonce=ev.nonce, boot_id=self.boot_id, epoch=log.epoch,
                      last_seq=log.last_seq, lease_count=log.lease_count, wall_us=stamp)
        codec = FrameCodec(self._key, self.params.preauth_max_body,
                           **({"aead": self._aead} if self._aead is not None else {}))
        self._c = _Conn(codec=codec, nonce=ev.nonce, outbound=ev.outbound, my_hello=hello,
                        last_rx=now)
        if stamp:
            self._c.sent_stamps[stamp] = now
        self.ready_to_serve = False
        self.peer_name = None
        self.peer_boot_id = None
        self._goto("connected")
        self._send(hello, now)
        self._out.append(StartTimer(Timer.HANDSHAKE, now + self.params.handshake_timeout_s))

    def _on_lost(self, ev: ConnectionLost, now: float) -> None:
        if self.state is State.DISCONNECTED:
            return  # we closed it ourselves: already accounted for
        c = self._c
        how = ev.how
        if how is Loss.EOF and c is not None:
            try:
                c.codec.eof()
            except FrameError as e:
                self.stats.bump(e.reason.value)
                self._out.append(Refuse(e.reason, e.detail))
        self._end(how, ev.detail, close=False)

    def _on_shutdown(self, ev: ShutdownRequested, now: float) -> None:
        if self.state is State.DISCONNECTED:
            return
        self._send(Bye(ev.reason), now)
        self._end(Loss.LOCAL, f"bye {ev.reason.name.lower()}", close=True)

    def _on_notice_requested(self, ev: NoticeRequested, now: float) -> None:
        if not self.authenticated or self.state is State.DISCONNECTED:
            return
        self._send(Notice(ev.code, ev.detail), now)
        self.stats.bump("notices_sent")

    def _on_summary_changed(self, ev: SummaryChanged, now: float) -> None:
        self.set_summary(ev.summary)
        if self.authenticated:
            self._send(ConfigSummary(self._config_digest, self._summary), now)

    def _on_timer(self, ev: TimerFired, now: float) -> None:
        c = self._c
        if self.state is State.DISCONNECTED or c is None:
            return  # a timer that raced with the end of the connection
        p = self.params
        t = ev.timer
        if t is Timer.HANDSHAKE:
            if self.state is State.HANDSHAKE:
                self._end(Loss.TIMEOUT, "handshake not completed", close=True)
        elif not c.authenticated:
            return
        elif t is Timer.PEER_DEAD:
            if now - c.last_rx >= p.dead_after_s:
                self._end(Loss.TIMEOUT, f"nothing from the peer for {now - c.last_rx:.1f}s",
                          close=True)
            else:
                self._out.append(StartTimer(Timer.PEER_DEAD, c.last_rx + p.dead_after_s))
        elif t is Timer.HEARTBEAT:
            # Every heartbeat_s, busy or idle: each one is a time sample, and under load
            # the skew must stay current too.
            self._heartbeat(c, now)
            self._out.append(StartTimer(Timer.HEARTBEAT, now + p.heartbeat_s))

    def _on_committed(self, ev: LocalCommitted, now: float) -> None:
        c = self._c
        if c is not None and c.authenticated and self.state is not State.DISCONNECTED \
                and c.out_phase is not Outbound.WAIT:
            self._pump(now)

    def _on_persisted(self, ev: Persisted, now: float) -> None:
        c = self._c
        if c is None:
            return
        pending = c.pending
        for p in pending:
            if p.batch == ev.batch:
                p.done = True
                break
        else:
            return  # from an earlier connection, or reported twice
        changed = False
        caught_up = False
        while pending and pending[0].done:
            p = pending.popleft()
            changed = True
            if p.kind == _B_PAGE:
                c.pages_durable += 1
            if p.cursor is not None:
                self.held = p.cursor
                c.ack_seq = p.cursor.seq
            if p.kind == _B_END:
                caught_up = True
        if not changed or self.state is State.DISCONNECTED:
            return
        self._send(Ack(c.ack_seq, c.pages_durable), now)
        self.stats.bump("acks_sent")
        if caught_up and c.in_phase is Inbound.LIVE and not c.in_caught_up:
            c.in_caught_up = True
            self.ready_to_serve = True
            if c.in_kind is BulkKind.SNAPSHOT or c.in_received:
                took = max(now - (c.in_started or now), 1e-9)
                self._out.append(Log(
                    "SYNC003", f"{c.in_kind.name.lower() if c.in_kind else 'catch-up'} from "
                               f"{self.peer_name} done: {c.in_received} leases in {took:.2f}s "
                               f"({c.in_received / took:.0f} leases/s), now at seq "
                               f"{self.held.seq}"))
            self._check_in_sync(now)

    def _on_data(self, ev: DataReceived, now: float) -> None:
        c = self._c
        if self.state is State.DISCONNECTED or c is None:
            return  # bytes that arrived after we closed
        codec = c.codec
        codec.feed(ev.data)
        stats = self.stats
        handlers = self._frame_handlers
        while self.state is not State.DISCONNECTED:
            try:
                frame = codec.next_frame()
            except FrameError as e:
                reason = e.reason
                if reason is Reason.BAD_MAC and c.peer is None:
                    # Frame 0 is under the hello key: a bad MAC there means the peer
                    # does not hold our sync/key (or is no peer at all).
                    reason = Reason.BAD_AUTH
                self._refuse(reason, e.detail)
                return
            if frame is None:
                return
            c.last_rx = now
            stats.bump("frames_received")
            try:
                handlers[frame.TYPE](frame, now)
            except FrameError as e:
                self._refuse(e.reason, e.detail)
                return

    # -- frames: handshake -------------------------------------------------------------
    def _rx_hello(self, f: Hello, now: float) -> None:
        c = self._c
        assert c is not None
        if c.hs is not Handshake.AWAIT_HELLO:
            raise FrameError(Reason.UNEXPECTED, "second HELLO")
        if f.node == self.node:
            raise FrameError(Reason.NAME_CLASH, f"peer calls itself {f.node!r} too")
        if f.nonce == c.nonce:
            raise FrameError(Reason.BAD_AUTH, "peer echoed our nonce")
        if f.max_version < 1:
            raise FrameError(Reason.BAD_VERSION, f"peer max version {f.max_version}")
        c.hs_move("hello", "HELLO")
        c.peer = f
        c.peer_last_seq = f.last_seq
        c.peer_stamp_us, c.peer_stamp_at = f.wall_us, now
        # Names from an unauthenticated HELLO are for log lines only, until AUTH.
        self.peer_name = f.node
        self.peer_boot_id = f.boot_id
        c.codec.set_session_keys(direction_key(self._key, c.nonce, f.nonce),
                                 direction_key(self._key, f.nonce, c.nonce))
        self._send(Auth(auth_proof(self._key, c.my_hello, f, key=self._auth_key)), now)
        self._send(SyncReq(self.held.epoch, self.held.seq), now)
        # The drift summary goes only under encryption, and is read only from a peer
        # that authenticated (a replayed HELLO carries none and cannot rewrite it).
        self._send(ConfigSummary(self._config_digest, self._summary), now)

    def _rx_config(self, f: ConfigSummary, now: float) -> None:
        self._authed()
        paths = self._drift(f)
        self._out.append(ReportDrift(paths))
        if paths:
            self._out.append(Log("SYNC006", f"config differs from peer {self.peer_name}: "
                                            + ", ".join(paths), True))

    def _drift(self, peer: ConfigSummary) -> tuple[str, ...]:
        if hmac.compare_digest(peer.digest, self._config_digest):
            return ()
        mine = dict(self._summary)
        theirs = dict(peer.summary)
        return tuple(sorted(p for p in mine.keys() | theirs.keys()
                            if mine.get(p) != theirs.get(p))) or ("(summary digest)",)

    def _rx_auth(self, f: Auth, now: float) -> None:
        c = self._c
        assert c is not None
        if c.hs is not Handshake.AWAIT_AUTH or c.peer is None:
            raise FrameError(Reason.UNEXPECTED, "AUTH out of turn")
        if not hmac.compare_digest(f.proof, auth_proof(self._key, c.peer, c.my_hello,
                                                       key=self._auth_key)):
            raise FrameError(Reason.BAD_AUTH, "AUTH proof does not verify")
        c.hs_move("auth", "AUTH")
        p = self.params
        c.codec.max_body = p.max_body  # only now may frames be large (snapshot pages)
        self.stats.bump("handshakes")
        self._goto("authenticated")
        # The first time sample at once (it echoes the peer's HELLO stamp).
        self._heartbeat(c, now)
        self._out.append(CancelTimer(Timer.HANDSHAKE))
        self._out.append(StartTimer(Timer.HEARTBEAT, now + p.heartbeat_s))
        self._out.append(StartTimer(Timer.PEER_DEAD, now + p.dead_after_s))
        self._out.append(Log("SYNC001", f"peer {c.peer.node} authenticated "
                                        f"({'outbound' if c.outbound else 'inbound'}); its log "
                                        f"epoch {c.peer.epoch:x} at seq {c.peer.last_seq}, "
                                        f"{c.peer.lease_count} leases; we hold seq "
                                        f"{self.held.seq} of epoch {self.held.epoch:x}"))

    def _authed(self) -> _Conn:
        c = self._c
        assert c is not None
        if not c.authenticated:
            raise FrameError(Reason.UNEXPECTED, "frame before authentication")
        return c

    def _rx_bye(self, f: Bye, now: float) -> None:
        try:
            why = ByeReason(f.reason).name.lower()
        except ValueError:
            why = str(f.reason)
        self._end(Loss.BYE, f"peer said bye ({why})", close=True)

    def _rx_heartbeat(self, f: Heartbeat, now: float) -> None:
        c = self._authed()
        c.peer_last_seq = f.last_seq
        sent_at = c.sent_stamps.get(f.echo_us) if f.echo_us else None
        wall = self._wall
        if sent_at is not None and f.tx_us and wall is not None:
            s = sample(f.echo_us / 1e6, f.tx_us / 1e6, f.dwell_us / 1e6, wall, now - sent_at)
            changed = self.skew.add(s)
            self.stats.bump("clock_samples")
            est = self.skew.estimate
            assert est is not None
            skew_ms, delay_ms = est.offset_s * 1000, est.delay_s * 1000
            self._out.append(ReportClock(skew_ms, delay_ms, self.skew.alarm, changed))
            bound_ms = self.skew.bound_s * 1000
            if changed is True:
                self._out.append(Log(
                    "SYNC040", f"clock skew alarm: {self.peer_name}'s clock is {skew_ms:+.0f} ms "
                               f"from ours (round trip {delay_ms:.1f} ms), beyond "
                               f"sync/max_clock_skew_ms {bound_ms:.0f}: check NTP on both "
                               "devices", True))
            elif changed is False:
                self._out.append(Log(
                    "SYNC041", f"clock skew alarm cleared: {self.peer_name}'s clock is "
                               f"{skew_ms:+.0f} ms from ours (round trip {delay_ms:.1f} ms), "
                               f"within sync/max_clock_skew_ms {bound_ms:.0f}"))
        if f.tx_us:
            c.peer_stamp_us, c.peer_stamp_at = f.tx_us, now

    def _stamp(self) -> int:
        """Our wall clock now, in us (0: no wall clock given)."""
        wall = self._wall
        return 0 if wall is None else max(round(wall * 1e6), 1)

    def _heartbeat(self, c: _Conn, now: float) -> None:
        stamp = self._stamp()
        dwell = 0
        if c.peer_stamp_us:
            dwell = min(max(int((now - c.peer_stamp_at) * 1e6), 0), 0xFFFFFFFF)
        self._send(Heartbeat(self.log.last_seq, stamp, c.peer_stamp_us, dwell), now)
        if stamp:
            stamps = c.sent_stamps
            stamps[stamp] = now
            while len(stamps) > 8:
                del stamps[next(iter(stamps))]

    def _rx_notice(self, f: Notice, now: float) -> None:
        self._authed()
        self.stats.bump("notices_received")
        self._out.append(DeliverNotice(f.code, f.detail))

    # -- frames: inbound stream (the peer's changes) ------------------------------------
    def _apply(self, c: _Conn, leases: tuple[Lease, ...], cursor: Cursor | None,
               kind: int, settle: bool) -> None:
        self._batch += 1
        c.pending.append(_Pending(self._batch, kind, cursor, len(leases)))
        self._out.append(Apply(leases, cursor, self._batch, settle))

    def _rx_begin(self, f: BulkBegin, now: float) -> None:
        c = self._authed()
        # A delta answers our SYNC_REQ only; a snapshot may also start over at any time
        # (the sender's change log no longer reaches back to what it sent us): INBOUND.
        nxt = _in_next(c, "snapshot" if f.kind is BulkKind.SNAPSHOT else "delta")
        if f.from_seq < c.in_seq:
            raise FrameError(Reason.UNEXPECTED,
                             f"BULK_BEGIN from seq {f.from_seq} before {c.in_seq}")
        c.in_phase = nxt
        c.in_kind = f.kind
        c.in_total = f.total
        c.in_received = 0
        c.in_started = now
        c.in_seq = f.from_seq
        if c.in_caught_up:
            c.in_caught_up = False
            self._resync()
        self.stats.bump("snapshots_received" if f.kind is BulkKind.SNAPSHOT
                        else "deltas_received")
        if f.kind is BulkKind.SNAPSHOT:
            self._out.append(Log("SYNC002", f"receiving a snapshot of {f.total} leases from "
                                            f"{self.peer_name}"))

    def _rx_page(self, f: BulkPage, now: float) -> None:
        c = self._authed()
        c.in_phase = _in_next(c, "page")  # only inside a snapshot
        c.in_received += len(f.leases)
        self.stats.bump("leases_received", len(f.leases))
        self._apply(c, f.leases, None, _B_PAGE, False)

    def _rx_updates(self, f: Updates, now: float) -> None:
        c = self._authed()
        nxt = _in_next(c, "updates")  # not before BULK_BEGIN
        leases = f.leases
        last = c.in_seq
        for lease in leases:
            if lease.seq <= last:
                raise FrameError(Reason.UNEXPECTED,
                                 f"update seq {lease.seq} not after {last}")
            last = lease.seq
        c.in_phase = nxt
        c.in_seq = last
        if nxt is Inbound.TAIL:
            c.in_received += len(leases)
        self.stats.bump("leases_received", len(leases))
        if leases:
            # Inside a catch-up the cursor moves only at BULK_END: if we stop halfway (a
            # restart), the whole catch-up comes again, including what the Merger held
            # back for its end.
            live = nxt is Inbound.LIVE
            cursor = Cursor(c.peer.epoch, last) if live else None  # type: ignore[union-attr]
            self._apply(c, leases, cursor, _B_UPDATES, live)

    def _rx_end(self, f: BulkEnd, now: float) -> None:
        c = self._authed()
        nxt = _in_next(c, "end")  # only inside a catch-up
        if f.seq < c.in_seq:
            raise FrameError(Reason.UNEXPECTED, f"BULK_END seq {f.seq} before {c.in_seq}")
        c.in_seq = f.seq
        c.in_phase = nxt
        self._apply(c, (), Cursor(c.peer.epoch, f.seq), _B_END, True)  # type: ignore[union-attr]

    # -- frames: outbound stream (our changes) ------------------------------------------
    def _rx_sync_req(self, f: SyncReq, now: float) -> None:
        c = self._authed()
        if c.out_phase is not Outbound.WAIT:
            raise FrameError(Reason.UNEXPECTED, "second SYNC_REQ")
        log = self.log
        changes: list[Lease] | None = None
        if f.epoch == log.epoch and f.seq <= log.last_seq:
            changes = log.changes_since(f.seq, ALL)
        c.out_started = now
        if changes is not None:
            c.out_kind = BulkKind.DELTA
            c.sent_seq = c.acked_seq = f.seq
            self._start_tail(c, changes)
            c.out_total = len(c.tail)  # type: ignore[arg-type]
            self._send(BulkBegin(BulkKind.DELTA, c.out_total, f.seq), now)
            self.stats.bump("deltas_sent")
            self._pump(now)
        else:
            self._start_snapshot(c, now, restart=False)

    def _start_tail(self, c: _Conn, changes: list[Lease]) -> None:
        """The catch-up delta: each client's last change only, in seq order. The peer
        never needs our intermediate history, and merging against it would make the
        outcome depend on arrival order (merge.coalesce)."""
        _out_move(c, "delta" if c.out_phase is Outbound.WAIT else "pages_sent")
        c.tail = coalesce(changes)
        c.tail_pos = 0
        c.target = max(c.sent_seq, self.log.last_seq, changes[-1].seq if changes else 0)

    def _start_snapshot(self, c: _Conn, now: float, restart: bool) -> None:
        log = self.log
        # last_seq and the first page in one step: the snapshot is at least this new.
        snap_seq = log.last_seq
        c.pages = iter(log.snapshot_pages(self.params.page_size))
        c.out_kind = BulkKind.SNAPSHOT
        c.out_total = log.lease_count
        c.out_sent = 0
        c.out_started = now
        c.sent_seq = snap_seq
        _out_move(c, "snapshot")
        c.tail = None
        c.end_seq = -1
        if c.out_caught_up:
            c.out_caught_up = False
            self._resync()
        self._send(BulkBegin(BulkKind.SNAPSHOT, c.out_total, snap_seq), now)
        self.stats.bump("snapshots_sent")
        if restart:
            self.stats.bump("snapshot_restarts")
            self._out.append(Log("SYNC009", f"{self.peer_name} fell behind our change log; "
                                            "sending a snapshot", True))
        self._out.append(Log("SYNC004", f"sending a snapshot of {c.out_total} leases to "
                                        f"{self.peer_name}"))
        self._pump(now)

    def _send_updates(self, c: _Conn, leases: list[Lease], now: float) -> None:
        frames = c.codec.encode_leases(FrameType.UPDATES, leases, self.params.frame_budget)
        i = 0
        tx = self._tx
        for data, n in frames:
            tx.append(data)
            i += n
            c.unacked.append((leases[i - 1].seq, n))
        c.lag += len(leases)
        c.sent_seq = leases[-1].seq
        c.last_tx = now
        if c.out_phase is Outbound.TAIL:
            c.out_sent += len(leases)
        self.stats.bump("frames_sent", len(frames))
        self.stats.bump("leases_sent", len(leases))

    def _pump(self, now: float) -> None:
        """Send what the windows allow: snapshot pages, then changes, then BULK_END."""
        c = self._c
        assert c is not None
        p = self.params
        log = self.log
        if c.out_phase is Outbound.PAGES:
            assert c.pages is not None
            while c.pages_sent - c.pages_acked < p.page_window:
                page = next(c.pages, None)
                if page is None:
                    c.pages = None
                    changes = log.changes_since(c.sent_seq, ALL)
                    if changes is None:  # the log moved on while the pages went out
                        self._start_snapshot(c, now, restart=True)
                        return
                    self._start_tail(c, changes)
                    break
                if not page:
                    continue
                frames = c.codec.encode_leases(FrameType.BULK_PAGE, page, p.frame_budget)
                self._tx.extend(data for data, _n in frames)
                c.pages_sent += len(frames)
                c.out_sent += len(page)
                c.last_tx = now
                self.stats.bump("frames_sent", len(frames))
                self.stats.bump("leases_sent", len(page))
        if c.out_phase is Outbound.TAIL:
            tail = c.tail
            assert tail is not None
            while c.tail_pos < len(tail) and c.lag < p.inflight_max:
                chunk = tail[c.tail_pos : c.tail_pos + p.batch_max]
                c.tail_pos += len(chunk)
                self._send_updates(c, chunk, now)
            if c.tail_pos >= len(tail):
                c.tail = None
                c.sent_seq = max(c.sent_seq, c.target)
                _out_move(c, "end_sent")
                c.end_seq = c.sent_seq
                self._send(BulkEnd(c.sent_seq), now)
        if c.out_phase is Outbound.LIVE:
            while c.lag < p.inflight_max:
                changes = log.changes_since(c.sent_seq, p.batch_max)
                if changes is None:
                    self._start_snapshot(c, now, restart=True)
                    return
                if not changes:
                    break
                self._send_updates(c, changes, now)
                if len(changes) < p.batch_max:
                    break

    def _rx_ack(self, f: Ack, now: float) -> None:
        c = self._authed()
        if c.out_phase is Outbound.WAIT:
            raise FrameError(Reason.UNEXPECTED, "ACK before SYNC_REQ")
        if f.seq > c.sent_seq or f.pages > c.pages_sent:
            raise FrameError(Reason.UNEXPECTED,
                             f"ACK of seq {f.seq} / page {f.pages} never sent "
                             f"(sent {c.sent_seq} / {c.pages_sent})")
        self.stats.bump("acks_received")
        if f.pages > c.pages_acked:
            c.pages_acked = f.pages
        if f.seq > c.acked_seq:
            c.acked_seq = f.seq
            q = c.unacked
            while q and q[0][0] <= f.seq:
                c.lag -= q.popleft()[1]
            self._out.append(ReleaseAcked(f.seq))
        if not c.out_caught_up and c.end_seq >= 0 and c.acked_seq >= c.end_seq:
            c.out_caught_up = True
            if c.out_kind is BulkKind.SNAPSHOT or c.out_sent:
                took = max(now - (c.out_started or now), 1e-9)
                self._out.append(Log(
                    "SYNC005", f"{self.peer_name} caught up with our log at seq {c.end_seq}: "
                               f"{c.out_sent} leases in {took:.2f}s "
                               f"({c.out_sent / took:.0f} leases/s)"))
            self._check_in_sync(now)
        self._pump(now)
