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

Under `State` run three machines, each in its own module with its phase enum and
transition table as data (h11's per-side tables; tests/unit/test_sync_phases.py walks
each as a matrix, docs/sync-protocol.md renders them): handshake.py (AWAIT_HELLO ->
AWAIT_AUTH -> AUTHENTICATED), inbound.py (the peer's stream: WAIT, PAGES, TAIL, LIVE)
and outbound.py (ours: WAIT, PAGES, TAIL, LIVE). A move a table lacks is refused
UNEXPECTED when the peer's frame asked for it, and is SessionError when our own side
made it. This class is their composition: it routes each frame to its machine and turns
what the machine reports into actions, counters and log lines.

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
from collections.abc import Callable, Sequence
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
    config_digest,
    setting_digest,
    setting_key,
)

# The three machines' phase enums and tables, and SessionError, are re-exported: they
# are part of this module's interface.
from appliance.sync.handshake import HANDSHAKE as HANDSHAKE
from appliance.sync.handshake import Handshake as Handshake
from appliance.sync.handshake import HandshakeSide
from appliance.sync.inbound import INBOUND as INBOUND
from appliance.sync.inbound import Inbound as Inbound
from appliance.sync.inbound import InStream, Stage
from appliance.sync.outbound import OUTBOUND as OUTBOUND
from appliance.sync.outbound import Fact as OutFact
from appliance.sync.outbound import Outbound as Outbound
from appliance.sync.outbound import OutStream, Released, Started
from appliance.sync.phases import SessionError as SessionError
from appliance.sync.phases import Wire
from appliance.sync.skew import SkewTracker, sample


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

# A connection's real machine is three machines side by side (h11's per-side tables),
# each in its own module with its phase enum and transition table: the handshake
# (handshake.py), the inbound stream, the peer's changes (inbound.py), and the outbound
# stream, ours (outbound.py). `State` above is their summary for the daemon; Session
# composes them: it routes each frame to the machine it belongs to and turns what the
# machine reports into actions, counters and log lines.


@dataclass(slots=True)
class _Conn:
    """Everything that lives as long as one connection."""

    codec: FrameCodec
    wire: Wire
    outbound: bool
    hs: HandshakeSide
    inb: InStream
    out: OutStream
    last_rx: float = 0.0
    peer_last_seq: int = 0
    # time exchange: our stamps sent (wall us -> monotonic s), the peer's newest stamp
    sent_stamps: dict[int, float] = field(default_factory=dict)
    peer_stamp_us: int = 0
    peer_stamp_at: float = 0.0

    @property
    def authenticated(self) -> bool:
        return self.hs.phase is Handshake.AUTHENTICATED

    @property
    def peer(self) -> Hello | None:
        return self.hs.peer

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
        self._tx: list[bytes] = []  # one buffer for the life of the session (Wire.tx)
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
        i, o = c.inb, c.out
        return Progress(
            self.state, self.peer_name, self.ready_to_serve, self.held, c.peer_last_seq,
            i.kind if not i.caught_up else None, i.total, i.received, i.started,
            o.kind if not o.caught_up else None, o.total, o.sent, o.started, o.sent_seq,
            o.acked_seq, o.lag)

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
        tx = self._tx
        if tx:
            out.insert(0, Send(b"".join(tx)))
            tx.clear()
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
        c.wire.send(frame)

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
            c.out.release()
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
        if self.state is State.SYNCING and c.inb.caught_up and c.out.caught_up:
            self._goto("caught_up")
            self._out.append(Log("SYNC011", f"in sync with {self.peer_name}: we hold its log "
                                            f"to seq {self.held.seq}, it holds ours to "
                                            f"{c.out.acked_seq}"))

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
        p = self.params
        stamp = self._stamp()
        hello = Hello(node=self.node, nonce=ev.nonce, boot_id=self.boot_id, epoch=log.epoch,
                      last_seq=log.last_seq, lease_count=log.lease_count, wall_us=stamp)
        codec = FrameCodec(self._key, p.preauth_max_body,
                           **({"aead": self._aead} if self._aead is not None else {}))
        wire = Wire(codec, self._tx, self.stats)
        self._c = _Conn(
            codec=codec, wire=wire, outbound=ev.outbound,
            hs=HandshakeSide(self.node, self._key, self._auth_key, ev.nonce, hello),
            inb=InStream(),
            out=OutStream(wire, log, p.page_size, p.page_window, p.batch_max,
                          p.inflight_max, p.frame_budget),
            last_rx=now)
        if stamp:
            self._c.sent_stamps[stamp] = now
        self.ready_to_serve = False
        self.peer_name = None
        self.peer_boot_id = None
        self._goto("connected")
        self._send(hello, now)
        self._out.append(StartTimer(Timer.HANDSHAKE, now + p.handshake_timeout_s))

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
        if c is not None and c.authenticated and self.state is not State.DISCONNECTED:
            self._outbound(c.out.on_committed(now), now)

    def _on_persisted(self, ev: Persisted, now: float) -> None:
        c = self._c
        if c is None:
            return
        d = c.inb.on_persisted(ev.batch)
        if d is None:
            return  # from an earlier connection, reported twice, or behind a pending one
        if d.cursor is not None:
            self.held = d.cursor
        if self.state is State.DISCONNECTED:
            return
        self._send(Ack(d.seq, d.pages), now)
        self.stats.bump("acks_sent")
        if d.end and c.inb.finish():
            i = c.inb
            self.ready_to_serve = True
            if i.kind is BulkKind.SNAPSHOT or i.received:
                took = max(now - (i.started or now), 1e-9)
                self._out.append(Log(
                    "SYNC003", f"{i.kind.name.lower() if i.kind else 'catch-up'} from "
                               f"{self.peer_name} done: {i.received} leases in {took:.2f}s "
                               f"({i.received / took:.0f} leases/s), now at seq "
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

    # -- frames: handshake (handshake.py) ----------------------------------------------
    def _rx_hello(self, f: Hello, now: float) -> None:
        c = self._c
        assert c is not None
        keys = c.hs.on_hello(f)
        c.inb.peer_epoch = f.epoch
        c.peer_last_seq = f.last_seq
        c.peer_stamp_us, c.peer_stamp_at = f.wall_us, now
        # Names from an unauthenticated HELLO are for log lines only, until AUTH.
        self.peer_name = f.node
        self.peer_boot_id = f.boot_id
        c.codec.set_session_keys(keys.send, keys.recv)
        self._send(keys.auth, now)
        self._send(SyncReq(self.held.epoch, self.held.seq), now)
        # The drift summary goes only under encryption, and is read only from a peer
        # that authenticated (a replayed HELLO carries none and cannot rewrite it).
        self._send(ConfigSummary(self._config_digest, self._summary), now)

    def _rx_auth(self, f: Auth, now: float) -> None:
        c = self._c
        assert c is not None
        peer = c.hs.on_auth(f)
        p = self.params
        c.codec.max_body = p.max_body  # only now may frames be large (snapshot pages)
        self.stats.bump("handshakes")
        self._goto("authenticated")
        # The first time sample at once (it echoes the peer's HELLO stamp).
        self._heartbeat(c, now)
        self._out.append(CancelTimer(Timer.HANDSHAKE))
        self._out.append(StartTimer(Timer.HEARTBEAT, now + p.heartbeat_s))
        self._out.append(StartTimer(Timer.PEER_DEAD, now + p.dead_after_s))
        self._out.append(Log("SYNC001", f"peer {peer.node} authenticated "
                                        f"({'outbound' if c.outbound else 'inbound'}); its log "
                                        f"epoch {peer.epoch:x} at seq {peer.last_seq}, "
                                        f"{peer.lease_count} leases; we hold seq "
                                        f"{self.held.seq} of epoch {self.held.epoch:x}"))

    def _authed(self) -> _Conn:
        c = self._c
        assert c is not None
        c.hs.on_stream()
        return c

    def _rx_bye(self, f: Bye, now: float) -> None:
        c = self._c
        assert c is not None
        c.hs.on_bye()
        try:
            why = ByeReason(f.reason).name.lower()
        except ValueError:
            why = str(f.reason)
        self._end(Loss.BYE, f"peer said bye ({why})", close=True)

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

    # -- frames: inbound stream (inbound.py) ---------------------------------------------
    def _stage(self, c: _Conn, stage: Stage | None) -> None:
        if stage is None:
            return
        self._batch += 1
        c.inb.track(self._batch, stage)
        self._out.append(Apply(stage.leases, stage.cursor, self._batch, stage.settle))

    def _rx_begin(self, f: BulkBegin, now: float) -> None:
        c = self._authed()
        began = c.inb.on_begin(f, now)
        if began.restarted:
            self._resync()
        snapshot = began.kind is BulkKind.SNAPSHOT
        self.stats.bump("snapshots_received" if snapshot else "deltas_received")
        if snapshot:
            self._out.append(Log("SYNC002", f"receiving a snapshot of {began.total} leases "
                                            f"from {self.peer_name}"))

    def _rx_page(self, f: BulkPage, now: float) -> None:
        c = self._authed()
        stage = c.inb.on_page(f)
        self.stats.bump("leases_received", len(f.leases))
        self._stage(c, stage)

    def _rx_updates(self, f: Updates, now: float) -> None:
        c = self._authed()
        stage = c.inb.on_updates(f)
        self.stats.bump("leases_received", len(f.leases))
        self._stage(c, stage)

    def _rx_end(self, f: BulkEnd, now: float) -> None:
        c = self._authed()
        self._stage(c, c.inb.on_end(f))

    # -- frames: outbound stream (outbound.py) -------------------------------------------
    def _rx_sync_req(self, f: SyncReq, now: float) -> None:
        c = self._authed()
        self._outbound(c.out.on_sync_req(f, now), now)

    def _rx_ack(self, f: Ack, now: float) -> None:
        c = self._authed()
        facts = c.out.on_ack(f, now)
        self.stats.bump("acks_received")
        self._outbound(facts, now)
        self._outbound(c.out.pump(now), now)

    def _outbound(self, facts: list[OutFact], now: float) -> None:
        """What the outbound stream reports, in order: actions, counters, log lines."""
        for fact in facts:
            if isinstance(fact, Released):
                self._out.append(ReleaseAcked(fact.seq))
            elif isinstance(fact, Started):
                if fact.resync:
                    self._resync()
                if fact.kind is BulkKind.DELTA:
                    self.stats.bump("deltas_sent")
                    continue
                self.stats.bump("snapshots_sent")
                if fact.restart:
                    self.stats.bump("snapshot_restarts")
                    self._out.append(Log("SYNC009", f"{self.peer_name} fell behind our change "
                                                    "log; sending a snapshot", True))
                self._out.append(Log("SYNC004", f"sending a snapshot of {fact.total} leases "
                                                f"to {self.peer_name}"))
            else:  # CaughtUp
                if fact.kind is BulkKind.SNAPSHOT or fact.sent:
                    took = max(now - (fact.started or now), 1e-9)
                    self._out.append(Log(
                        "SYNC005", f"{self.peer_name} caught up with our log at seq "
                                   f"{fact.end_seq}: {fact.sent} leases in {took:.2f}s "
                                   f"({fact.sent / took:.0f} leases/s)"))
                self._check_in_sync(now)
