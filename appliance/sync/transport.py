"""Sync transport: the asyncio TCP adapter that carries the replication Session between
the two devices, and SyncLink, the one object the daemon talks to.

Adapter: the only sync module with sockets, a clock and randomness. It feeds bytes,
connection events, timer expiries and durability reports into Session.handle() and
executes the actions that come back; every decision is in session.py. Stdlib only.

Theory of operation:
- Both devices listen on sync/local and dial sync/peer (with backoff, from the sync/local
  address) whenever they have no authenticated connection; every socket is bound to
  sync/interface (SO_BINDTODEVICE). When both dial at once, the two connections are
  resolved when the second one authenticates: the one dialled by the node of rank 0 is
  kept; if the peer's boot id changed, the newer connection replaces the older one (the
  peer restarted and the old one is a ghost).
- Before authentication a connection is cheap and short: a connection from an address
  other than sync/peer is refused at accept, so are inbound connections beyond
  MAX_PREAUTH_INBOUND unauthenticated ones; its frames are limited to
  PREAUTH_MAX_BODY and it must authenticate within handshake_timeout_s. Junk never
  holds back the dialer: only an authenticated connection does.
- The daemon's `apply()` merges and writes a batch synchronously (in stream order) and
  returns an awaitable that resolves when it is durable; only then does the session
  ACK it. Too many batches waiting for durability pause reading (TCP backpressure).
- `commit(seq)` hands a change to the link: the session pulls it from the ChangeLog at
  the end of the loop iteration, so every change committed in one iteration goes out in
  one UPDATES frame. In `sync` mode, while in sync, it returns a future that resolves
  when the peer has made it durable (True) or when sync/ack_timeout_ms passed or the
  peer left (False): the client's ACK never waits longer than that.
- How a connection ended is reported as session.Loss: BYE (peer stopping on purpose),
  EOF (closed without BYE), RESET (TCP RST), TIMEOUT (heartbeats stopped, or the kernel
  gave up on unacknowledged data). EOF and RESET are the peer daemon's death only if a
  fresh connection to its sync port is then refused (session.evidence): one round
  trip, so a kill -9 still moves the service in milliseconds, while an RST injected by
  a third host (the port still answers) moves nothing.
"""

from __future__ import annotations

import array
import asyncio
import errno
import fcntl
import logging
import os
import random
import resource
import select
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import IPv4Address

# The AEAD's library, imported now rather than at the first connection (frames.py, a
# pure module, imports it on first use: its OpenSSL backend pulls in socket).
import cryptography.hazmat.primitives.ciphers.aead
import cryptography.hazmat.primitives.kdf.hkdf  # noqa: F401

from appliance.config.model import Config, SyncConfig
from appliance.leases.model import Lease
from appliance.ratelog import RateLimitedLog
from appliance.sync.backlog import Backlog
from appliance.sync.changelog import ChangeLog, Cursor
from appliance.sync.frames import NONCE_LEN, ByeReason, Reason
from appliance.sync.merge import node_index
from appliance.sync.session import (
    NOTHING,
    Action,
    Apply,
    CancelTimer,
    Close,
    Connected,
    ConnectionLost,
    DataReceived,
    DeliverNotice,
    Event,
    Evidence,
    LocalCommitted,
    Log,
    Loss,
    NoticeRequested,
    Params,
    Persisted,
    Probe,
    Progress,
    Refuse,
    ReleaseAcked,
    ReportClock,
    ReportDrift,
    ReportLoss,
    ReportState,
    Send,
    Session,
    ShutdownRequested,
    StartTimer,
    State,
    Stats,
    SummaryChanged,
    Timer,
    TimerFired,
    evidence,
    needs_probe,
)
from appliance.sync.skew import SkewTracker

log = logging.getLogger("dhcp-hotbackup.sync")
_logger = log  # SyncLink.__init__ has a parameter named `log` (the ChangeLog)

DIAL_BACKOFF_MIN_S = 0.05
DIAL_BACKOFF_MAX_S = 2.0
# Both devices dial. When both connect at once, each drops the connection dialled by
# rank 1 (_resolve), and a catch-up already started on it is wasted and sent again.
# Rank 1 therefore dials only after rank 0 had this long to do it.
DIAL_DEFER_S = 0.15
MAX_PENDING_APPLIES = 64  # batches waiting for durability before we stop reading
# Unauthenticated inbound connections at once; more are closed at accept (counted). The
# real peer needs one; a few more cover a restart racing its ghost.
MAX_PREAUTH_INBOUND = 4
LISTEN_BACKLOG = 16
_RANK = {State.DISCONNECTED: 0, State.HANDSHAKE: 1, State.SYNCING: 2, State.IN_SYNC: 3}


class SyncHandler:
    """What the daemon provides to the link. Subclass and override; only apply() is
    required. Every method is called from the event loop, never concurrently."""

    def apply(self, leases: Sequence[Lease], cursor: Cursor | None, settle: bool,
              ) -> Awaitable[object] | None:
        """Merge the peer's leases into the table now (merge.Merger.apply(leases, table,
        settle)), in call order, and start making the result and `cursor` durable (the
        cursor after the leases). Return an awaitable that completes when they are
        durable, or None if they already are. An exception closes the connection."""
        raise NotImplementedError

    def on_state(self, state: State) -> None:
        """Runtime tree sync/peer = state.tree_value; VRRP reads link.ready_to_serve."""

    def on_drift(self, paths: tuple[str, ...]) -> None:
        """Runtime tree sync/config_drift: the settings that differ (empty: none)."""

    def on_notice(self, code: int, detail: str) -> None:
        """A NOTICE from the peer (e.g. NoticeCode.CLIENT_LINK_DOWN)."""

    def on_peer_lost(self, how: Loss, detail: str, evidence: Evidence) -> None:
        """The connection to the peer ended and no other is up. `evidence` says what it
        proves: DIED (EOF/RESET without BYE and its sync port refuses connections: the
        peer's daemon is gone), ALIVE (its port answers: not its death) or NONE."""

    def on_clock(self, skew_ms: float, delay_ms: float, alarm: bool,
                 alarm_changed: bool | None) -> None:
        """A new clock-skew estimate (the peer's clock minus ours) and the alarm state
        (sync/max_clock_skew_ms); `alarm_changed` True: just raised, False: just cleared."""


def config_summary(cfg: Config) -> list[tuple[str, str]]:
    """The settings that must match on both devices, as (config path, canonical value):
    config.model.drift_summary (the keys the schema marks `agree`). The session sends
    keyed digests of these in HELLO and names the paths that differ."""
    from appliance.config.model import drift_summary

    return drift_summary(cfg)


def _tune(sock: socket.socket | None, params: Params) -> None:
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Backstops under the HEARTBEAT: keepalive for an idle dead path, and a bound on
        # how long sent data may stay unacknowledged before the kernel gives up.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE,
                        max(1, int(params.dead_after_s)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                        int(params.dead_after_s * 1000))
    except OSError as e:  # pragma: no cover - all of these exist on Linux
        log.debug("sync socket option: %s", e)


def _close_first_on_exit(sock: socket.socket | None, above: int = 0) -> int:
    """A duplicate of the connection's descriptor above every other one; -1 if none.

    When the process dies (kill -9), the kernel closes its descriptors in fd order but
    runs the final release of each file last-in first-out: the highest-numbered file
    is released first. Each AF_PACKET socket's release waits for an RCU grace period
    (packet_release -> synchronize_net, about 10 ms here), so a sync connection with
    packet sockets above it sent its FIN only after theirs. Holding its last
    reference at the top makes it go first: the peer learns of the death in about
    2 ms instead of 5-50 (docs/failover.md). Closed in connection_lost, before the
    transport's own close, so an orderly close is unchanged.

    The listening socket goes `above` the connections (24): it is released before
    them, so when the peer sees our FIN and probes our sync port, nothing listens any
    more and the kernel refuses the probe: the evidence of our death (session.evidence)."""
    if sock is None:
        return -1
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    floor = max(min(soft, 1024) - 32 + above, 3)
    try:
        return fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor)
    except OSError:
        return -1


class SyncSetupError(RuntimeError):
    """The sync settings cannot work on this host (a config error, not a transient one)."""


_SIOCGIFCONF = 0x8912
_IFREQ = 40  # struct ifreq on 64-bit Linux: 16 bytes of name, 24 of union


def interface_addresses() -> dict[str, set[IPv4Address]]:
    """Every IPv4 address of this namespace by interface (SIOCGIFCONF lists each address
    under its label: "eth2", or "eth2:1" for a labelled alias)."""
    n = 256
    buf = array.array("B", bytes(n * _IFREQ))
    addr, _ = buf.buffer_info()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s.fileno(), _SIOCGIFCONF, struct.pack("iL", n * _IFREQ, addr))
    length = struct.unpack("iL", res)[0]
    data = buf.tobytes()[:length]
    out: dict[str, set[IPv4Address]] = {}
    for i in range(0, length - _IFREQ + 1, _IFREQ):
        label = data[i : i + 16].split(b"\0", 1)[0].decode(errors="replace")
        ip = IPv4Address(data[i + 20 : i + 24])
        out.setdefault(label.split(":", 1)[0], set()).add(ip)
    return out


def check_local_address(cfg: SyncConfig) -> None:
    """sync/local must be an address of sync/interface: SyncSetupError naming both when
    it is on another interface; OSError when it is on none (yet: the daemon retries)."""
    addrs = interface_addresses()
    ip = cfg.local[0]
    if ip in addrs.get(cfg.interface, set()):
        return
    elsewhere = sorted(name for name, ips in addrs.items() if ip in ips)
    if elsewhere:
        raise SyncSetupError(f"sync/local {ip} is an address of {', '.join(elsewhere)}, not "
                             f"of sync/interface {cfg.interface}: the sync link is bound to "
                             "sync/interface; fix one of the two")
    raise OSError(errno.EADDRNOTAVAIL, f"sync/local {ip} is not an address of "
                                       f"sync/interface {cfg.interface} (nor of any interface)")


def _bound_socket(cfg: SyncConfig) -> socket.socket:
    """A TCP socket bound to sync/interface (SO_BINDTODEVICE): the link's traffic never
    takes another path, and nothing from another interface reaches the listener."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, cfg.interface.encode())
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


def _loss_of(exc: BaseException | None) -> Loss:
    if exc is None:
        return Loss.EOF
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return Loss.RESET
    if isinstance(exc, TimeoutError) or getattr(exc, "errno", None) == errno.ETIMEDOUT:
        return Loss.TIMEOUT
    return Loss.ERROR


class _Connection(asyncio.Protocol):
    """One TCP connection and its Session."""

    def __init__(self, link: SyncLink, outbound: bool) -> None:
        self.link = link
        self.outbound = outbound
        self.session = link._new_session()
        self.transport: asyncio.Transport | None = None
        self.timers: dict[Timer, asyncio.TimerHandle] = {}
        self.pending_applies = 0
        self.paused = False
        self.closed = asyncio.get_running_loop().create_future()
        self.authed = False  # it got as far as an authenticated peer
        self._exit_fd = -1  # see _close_first_on_exit

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        link = self.link
        peer = transport.get_extra_info("peername")
        if not self.outbound and (peer is None or peer[0] != str(link.peer[0])):
            link.stats.bump(Reason.UNKNOWN_PEER.value)
            link._ratelog.warning(link.loop.time(), "SYNC023", "%s",
                                  f"connection from {peer} refused: not sync/peer "
                                  f"{link.peer[0]}")
            transport.abort()
            return
        if not self.outbound and link._preauth_inbound() >= MAX_PREAUTH_INBOUND:
            link.stats.bump(Reason.PREAUTH_LIMIT.value)
            link._ratelog.warning(link.loop.time(), "SYNC025", "%s",
                                  f"connection from {peer[0]}:{peer[1]} refused: already "
                                  f"{MAX_PREAUTH_INBOUND} unauthenticated connections")
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        _tune(sock, link.params)
        self._exit_fd = _close_first_on_exit(sock)
        link._conns.add(self)
        link.stats.bump("connections_out" if self.outbound else "connections_in")
        self._run(Connected(os.urandom(NONCE_LEN), self.outbound))

    def data_received(self, data: bytes) -> None:
        self.link.stats.bump("bytes_received", len(data))
        self.link._suspect = False  # the peer speaks: its acks can be waited for again
        self._run(DataReceived(data))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost(None) follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self._exit_fd >= 0:
            os.close(self._exit_fd)  # the transport closes the socket right after
            self._exit_fd = -1
        for h in self.timers.values():
            h.cancel()
        self.timers.clear()
        if self in self.link._conns:
            self._run(ConnectionLost(_loss_of(exc), str(exc) if exc else ""))
            self.link._forget(self)
        if not self.closed.done():
            self.closed.set_result(None)

    # -- session plumbing --------------------------------------------------------------
    def _run(self, event: Event) -> None:
        link = self.link
        actions = self.session.handle(event, link.loop.time(), link.wall())
        if actions:
            self._execute(actions)

    def _execute(self, actions: list[Action]) -> None:
        link = self.link
        t = self.transport
        for a in actions:
            kind = type(a)
            if kind is Send:
                if t is not None and not t.is_closing():
                    t.write(a.data)  # type: ignore[union-attr]
                    link.stats.bump("bytes_sent", len(a.data))  # type: ignore[union-attr]
            elif kind is Apply:
                self._apply(a)  # type: ignore[arg-type]
            elif kind is ReleaseAcked:
                link._release(a.seq)  # type: ignore[union-attr]
            elif kind is StartTimer:
                old = self.timers.pop(a.timer, None)  # type: ignore[union-attr]
                if old is not None:
                    old.cancel()
                self.timers[a.timer] = link.loop.call_at(  # type: ignore[union-attr]
                    a.deadline, self._timer, a.timer)  # type: ignore[union-attr]
            elif kind is CancelTimer:
                h = self.timers.pop(a.timer, None)  # type: ignore[union-attr]
                if h is not None:
                    h.cancel()
            elif kind is ReportState:
                link._on_state(self, a.state)  # type: ignore[union-attr]
            elif kind is Close:
                if t is not None:
                    t.close()
            elif kind is ReportLoss:
                link._on_loss(self, a.how, a.detail)  # type: ignore[union-attr]
            elif kind is ReportDrift:
                link.drift = a.paths  # type: ignore[union-attr]
                link.handler.on_drift(a.paths)  # type: ignore[union-attr]
            elif kind is ReportClock:
                link.handler.on_clock(a.skew_ms, a.delay_ms, a.alarm,  # type: ignore[union-attr]
                                      a.alarm_changed)  # type: ignore[union-attr]
            elif kind is DeliverNotice:
                link.handler.on_notice(a.code, a.detail)  # type: ignore[union-attr]
            elif kind is Log:
                link._log(a)  # type: ignore[arg-type]
            elif kind is Refuse:
                pass  # counted by the session; its Log action carries the text

    def _timer(self, timer: Timer) -> None:
        self.timers.pop(timer, None)
        self._run(TimerFired(timer))

    def _apply(self, a: Apply) -> None:
        link = self.link
        try:
            aw = link.handler.apply(a.leases, a.cursor, a.settle)
        except Exception as e:  # the daemon could not take them: drop the link, not us
            log.exception("SYNC030 applying %d leases from the peer failed", len(a.leases))
            self._fail(f"apply failed: {e}")
            return
        if aw is None:
            self._persisted(a.batch)
            return
        self.pending_applies += 1
        if self.pending_applies >= MAX_PENDING_APPLIES and not self.paused \
                and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        fut = asyncio.ensure_future(aw)
        fut.add_done_callback(lambda f, b=a.batch: self._durable(b, f))

    def _durable(self, batch: int, fut: asyncio.Future[object]) -> None:
        self.pending_applies -= 1
        if self.paused and self.pending_applies <= MAX_PENDING_APPLIES // 2 \
                and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.transport.resume_reading()
        if fut.cancelled() or fut.exception() is not None:
            log.error("SYNC031 making leases from the peer durable failed: %s",
                      "cancelled" if fut.cancelled() else fut.exception())
            self._fail("durability failed")
            return
        self._persisted(batch)

    def _persisted(self, batch: int) -> None:
        self._run(Persisted(batch))
        self.link._held_from(self.session)

    def _fail(self, detail: str) -> None:
        self.link.stats.bump("apply_failures")
        if self.transport is not None:
            self.transport.abort()


class SyncLink:
    """The replication link to the peer: listener, dialer, connections, ACK gating.

    The daemon's side of the contract (docs/sync-protocol.md §Daemon interface):
        link = SyncLink(node=cfg.node.name, sync=cfg.sync, log=changelog, handler=h,
                        held=stored_cursor, summary=config_summary(cfg))
        await link.start()
        ... after each local commit:  w = link.commit(lease.seq)
            reply after the journal fsync and, if w is not None, after `await w`
        allocator.owner = link.pool_owner   (None when in sync)
        VRRP: may preempt / take over voluntarily only if link.ready_to_serve
        await link.close()
    """

    def __init__(self, *, node: str, sync: SyncConfig, log: ChangeLog, handler: SyncHandler,
                 held: Cursor = NOTHING, summary: Sequence[tuple[str, str]] = (),
                 params: Params | None = None, boot_id: int | None = None,
                 dial: bool = True, listen: bool = True,
                 wall: Callable[[], float] = time.time, aead: str | None = None) -> None:
        self.node = node
        self.cfg = sync
        self.local = (sync.local[0], sync.local[1])
        self.peer = (sync.peer[0], sync.peer[1])
        self.log = log
        self.handler = handler
        self.held = held
        self.summary = list(summary)
        self.params = params or Params()
        self.boot_id = boot_id if boot_id is not None else int.from_bytes(os.urandom(8), "big")
        self.dial = dial
        self.listen = listen
        self.sync_mode = sync.mode == "sync"
        # Whether a commit's reply waits for the peer: the daemon's pair policy says so
        # (SetAckWait: `sync` mode while in sync); None, for a link used alone: the same
        # rule, decided here.
        self.ack_wait: bool | None = None
        self.ack_timeout_s = sync.ack_timeout_ms / 1000.0
        self.stats = Stats()
        self.wall = wall  # the wall clock of the time exchange (the daemon's Clock.wall)
        self.aead = aead  # None: frames.AEAD (a benchmark may pick the other one)
        self.skew = SkewTracker(sync.max_clock_skew_ms / 1000.0)
        self.backlog: Backlog[asyncio.Future[bool]] = Backlog()
        self.drift: tuple[str, ...] = ()
        self.state = State.DISCONNECTED
        self.primary: _Connection | None = None
        self._ready = False
        self._conns: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._dialer: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._commit_seq = 0
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ratelog = RateLimitedLog(_logger)
        self._closing = False
        self._suspect = False
        self._listen_fd = -1  # see _close_first_on_exit
        self._probe_socks: set[socket.socket] = set()
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.pool_index = node_index(self.local, self.peer)

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        if self.listen:
            check_local_address(self.cfg)
            sock = _bound_socket(self.cfg)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((str(self.local[0]), self.local[1]))
                sock.listen(LISTEN_BACKLOG)
                self._server = await self.loop.create_server(
                    lambda: _Connection(self, outbound=False), sock=sock)
            except BaseException:
                sock.close()
                raise
            self._listen_fd = _close_first_on_exit(sock, above=24)
            log.info("SYNC020 listening on %s:%d (%s) for %s", self.local[0], self.local[1],
                     self.cfg.interface, self.peer[0])
        if self.dial:
            self._dialer = asyncio.create_task(self._dial_loop(), name="sync-dialer")

    async def close(self) -> None:
        """Say BYE to the peer and stop. Waiters are released (served alone)."""
        self._closing = True
        if self._dialer is not None:
            self._dialer.cancel()
            try:
                await self._dialer
            except asyncio.CancelledError:
                pass
        for sock in list(self._probe_socks):
            self.loop.remove_writer(sock.fileno())
            sock.close()
        self._probe_socks.clear()
        if self._server is not None:
            self._server.close()
        if self._listen_fd >= 0:
            os.close(self._listen_fd)
            self._listen_fd = -1
        for c in list(self._conns):
            c._run(ShutdownRequested(ByeReason.SHUTDOWN))
        for c in list(self._conns):
            try:
                await asyncio.wait_for(asyncio.shield(c.closed), 1.0)
            except TimeoutError:
                if c.transport is not None:
                    c.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
        self._release_all()

    async def _dial_loop(self) -> None:
        backoff = DIAL_BACKOFF_MIN_S
        assert self._idle is not None
        while not self._closing:
            await self._idle.wait()
            if self.pool_index == 1:
                await asyncio.sleep(DIAL_DEFER_S * (0.5 + random.random()))
                if not self._idle.is_set():
                    continue  # rank 0 got through first: nothing to do
            try:
                conn = await asyncio.wait_for(self._connect(),
                                              timeout=self.params.handshake_timeout_s)
            except (OSError, TimeoutError) as e:
                self.stats.bump("connect_failures")
                self._ratelog.warning(self.loop.time(), "SYNC021", "%s",
                                      f"cannot reach peer {self.peer[0]}:{self.peer[1]}: {e}")
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, DIAL_BACKOFF_MAX_S)
                continue
            await conn.closed
            backoff = DIAL_BACKOFF_MIN_S if conn.authed else \
                min(backoff * 2, DIAL_BACKOFF_MAX_S)
            # Never redial in a tight loop, even after a good connection.
            await asyncio.sleep(backoff * (0.5 + random.random()))

    async def _connect(self) -> _Connection:
        sock = _bound_socket(self.cfg)
        try:
            sock.bind((str(self.local[0]), 0))
            await self.loop.sock_connect(sock, (str(self.peer[0]), self.peer[1]))
            _, conn = await self.loop.create_connection(
                lambda: _Connection(self, outbound=True), sock=sock)
        except BaseException:
            sock.close()
            raise
        return conn

    def _probe(self, done: Callable[[Probe], None]) -> None:
        """A fresh TCP connection to the peer's sync port, closed at once: refused means
        nothing listens there (its daemon is gone), connected means it still does.
        `done(probe)` is called once, possibly before this returns: on a link the
        kernel often has the peer's answer (SYN -> RST) by the time connect() returns,
        and a kill -9 must move the service without waiting for loop iterations."""
        try:
            sock = _bound_socket(self.cfg)
        except OSError:
            done(Probe.SILENT)
            return
        loop = self.loop
        fd = sock.fileno()
        state: dict[str, object] = {}

        def finish(result: Probe) -> None:
            if state.get("done"):
                return
            state["done"] = True
            t = state.get("timer")
            if t is not None:
                t.cancel()  # type: ignore[attr-defined]
            if state.get("watching"):
                loop.remove_writer(fd)
            self._probe_socks.discard(sock)
            sock.close()
            done(result)

        def outcome() -> Probe | None:
            """None while the connect is in progress."""
            if not select.select([], [fd], [], 0)[1]:
                return None
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                return Probe.ANSWERED
            return Probe.REFUSED if err == errno.ECONNREFUSED else Probe.SILENT

        try:
            sock.bind((str(self.local[0]), 0))
            err = sock.connect_ex((str(self.peer[0]), self.peer[1]))
        except OSError:
            finish(Probe.SILENT)
            return
        if err == errno.ECONNREFUSED:
            finish(Probe.REFUSED)
            return
        if err == 0:
            finish(Probe.ANSWERED)
            return
        if err != errno.EINPROGRESS:
            finish(Probe.SILENT)
            return
        now = outcome()
        if now is not None:
            finish(now)
            return
        self._probe_socks.add(sock)
        state["watching"] = True
        loop.add_writer(fd, lambda: finish(outcome() or Probe.SILENT))
        state["timer"] = loop.call_later(self.params.probe_timeout_s, finish, Probe.SILENT)

    # -- the daemon's calls ------------------------------------------------------------
    def commit(self, seq: int) -> asyncio.Future[bool] | None:
        """Change `seq` is in the ChangeLog (durable locally or about to be). It goes to
        the peer at the end of this loop iteration, batched with the others, or at
        flush(). Returns a future to await before the client's reply in `sync` mode
        while in sync (True: the peer holds it; False: timed out or the peer left),
        else None."""
        if seq > self._commit_seq:
            self._commit_seq = seq
        if self.loop is None:
            return None  # not started: the change is in the log, it goes at connect
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)
        wait = self.ack_wait if self.ack_wait is not None else \
            self.sync_mode and self.state is State.IN_SYNC
        if not wait or self._suspect:
            return None
        fut: asyncio.Future[bool] = self.loop.create_future()
        self.backlog.add(seq, self.loop.time(), fut)
        if self._ack_timer is None:
            self._arm_ack_timer()
        return fut

    def suspect_peer(self) -> None:
        """The peer went silent on the client LAN too (VRRP's Master_Down_Interval ran
        out): likely a whole-box failure, which the sync link notices only after
        dead_after_s. Until the peer sends anything, no client's ACK waits for its ack
        (waiting ones are released now): the device serves alone at once."""
        self._suspect = True
        self._release_all()

    def notice(self, code: int, detail: str = "") -> bool:
        """Send a NOTICE to the peer; False if no authenticated connection carries it."""
        p = self.primary
        if p is None or not p.session.authenticated:
            return False
        p._run(NoticeRequested(code, detail))
        return True

    def set_summary(self, summary: Sequence[tuple[str, str]]) -> None:
        """After a reload: the peer gets the new summary now (CONFIG) and on every
        connection from now on."""
        self.summary = list(summary)
        for c in list(self._conns):
            if c.session.authenticated:
                c._run(SummaryChanged(tuple(self.summary)))

    @property
    def in_sync(self) -> bool:
        return self.state is State.IN_SYNC

    @property
    def ready_to_serve(self) -> bool:
        """VRRP gate: this device holds everything the peer had when they last
        connected. False from start-up until the first catch-up, and during a catch-up."""
        p = self.primary
        if p is not None and p.session.authenticated:
            self._ready = p.session.ready_to_serve
        return self._ready

    @property
    def pool_owner(self) -> int | None:
        """Allocator.owner: None (whole pool) while in sync, else this node's parity."""
        return None if self.in_sync else self.pool_index

    @property
    def lag(self) -> int:
        p = self.primary
        return p.session.progress().lag if p is not None else 0

    def progress(self) -> Progress:
        p = self.primary
        if p is not None:
            return p.session.progress()
        return Progress(self.state, None, self._ready, self.held, 0, None, 0, 0, None, None,
                        0, 0, None, 0, 0, 0)

    def runtime_values(self) -> dict[str, object]:
        """The runtime tree's sync/ files and stats/sync/ counters."""
        out: dict[str, object] = {
            "sync/peer": self.state.tree_value,
            "sync/lag": self.lag,
            "sync/last_seq": self.held.seq,
            "sync/config_drift": " ".join(self.drift),
            "sync/ready": int(self.ready_to_serve),
            # Empty until the first sample; the last estimate stays after a disconnect.
            "sync/clock_skew_ms": "" if self.skew.skew_ms is None else
            f"{self.skew.skew_ms:.1f}",
            "sync/clock_delay_ms": "" if self.skew.delay_ms is None else
            f"{self.skew.delay_ms:.3f}",
            "sync/clock_skew_alarm": int(self.skew.alarm),
        }
        for k, v in self.stats.counts.items():
            out[f"stats/sync/{k}"] = v
        return out

    # -- internals ---------------------------------------------------------------------
    def _new_session(self) -> Session:
        return Session(self.node, self.cfg.key, self.log, held=self.held,
                       summary=self.summary, boot_id=self.boot_id, params=self.params,
                       stats=self.stats, skew=self.skew, aead=self.aead)

    def _preauth_inbound(self) -> int:
        return sum(1 for c in self._conns if not c.outbound and not c.authed)

    @property
    def clock_skew_ms(self) -> float | None:
        """The peer's wall clock minus ours, as last measured (None: not yet)."""
        return self.skew.skew_ms

    @property
    def clock_skew_alarm(self) -> bool:
        return self.skew.alarm

    def _held_from(self, session: Session) -> None:
        self.held = session.held

    def flush(self) -> None:
        """Send what commit() queued now, not at the end of the loop iteration. The
        daemon calls it just before its own fdatasync, so that the peer's write and
        ours overlap: a `sync` mode reply waits for the slower of the two, not both."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush()

    def _flush(self) -> None:
        self._flush_handle = None
        p = self.primary
        if p is not None and p.session.authenticated:
            p._run(LocalCommitted(self._commit_seq))

    def _release(self, seq: int) -> None:
        for fut in self.backlog.ack(seq):
            if not fut.done():
                fut.set_result(True)

    def _release_all(self) -> None:
        for fut in self.backlog.release_all():
            if not fut.done():
                fut.set_result(False)

    def _arm_ack_timer(self) -> None:
        deadline = self.backlog.next_deadline(self.ack_timeout_s)
        self._ack_timer = None if deadline is None else \
            self.loop.call_at(deadline, self._ack_timeout)

    def _ack_timeout(self) -> None:
        self._ack_timer = None
        late = self.backlog.expired(self.loop.time(), self.ack_timeout_s)
        if late:
            self.stats.bump("ack_timeouts", len(late))
            self._ratelog.warning(self.loop.time(), "SYNC024", "%s",
                                  f"{len(late)} replies served without the peer's ack "
                                  f"after {self.ack_timeout_s * 1000:.0f} ms")
            for fut in late:
                if not fut.done():
                    fut.set_result(False)
        self._arm_ack_timer()

    def _initiator(self, c: _Connection) -> int:
        """The rank (node_index) of the device that dialled `c`: both devices agree."""
        return self.pool_index if c.outbound else 1 - self.pool_index

    def _on_state(self, conn: _Connection, state: State) -> None:
        if state is State.DISCONNECTED:
            return  # ReportLoss follows: another connection may take over first
        if state is State.SYNCING and not conn.authed:
            conn.authed = True
            self._resolve(conn)
        self._update_state()

    def _resolve(self, conn: _Connection) -> None:
        """A connection just authenticated: keep one connection to the peer."""
        for other in list(self._conns):
            if other is conn or not other.authed or not other.session.authenticated:
                continue
            if other.session.peer_boot_id != conn.session.peer_boot_id:
                keep, drop, why = conn, other, ByeReason.REPLACED  # the peer restarted
            elif self._initiator(conn) <= self._initiator(other):
                keep, drop, why = conn, other, ByeReason.DUPLICATE
            else:
                keep, drop, why = other, conn, ByeReason.DUPLICATE
            log.info("SYNC022 two connections to %s: keeping the %s one (%s)",
                     conn.session.peer_name, "outbound" if keep.outbound else "inbound",
                     why.name.lower())
            if drop is self.primary:
                self.primary = None
            drop._run(ShutdownRequested(why))
            if drop is conn:
                return
        self.primary = conn

    def _update_state(self) -> None:
        p = self.primary
        # Unauthenticated connections do not count: not for the state the daemon sees,
        # and not for the dialer, which only an authenticated connection holds back
        # (junk on the port never keeps us from dialling the real peer).
        if p is not None and p in self._conns and p.session.authenticated:
            new = p.session.state
        else:
            new = State.DISCONNECTED
        if self._idle is not None:
            if any(c.authed and c.session.authenticated for c in self._conns):
                self._idle.clear()
            else:
                self._idle.set()
        if p is not None and p.session.authenticated:
            self._ready = p.session.ready_to_serve
        if new is self.state:
            return
        was = self.state
        self.state = new
        if was is State.IN_SYNC:
            self._release_all()  # sync mode waits only while in sync
        self.handler.on_state(new)

    def _on_loss(self, conn: _Connection, how: Loss, detail: str) -> None:
        if conn is self.primary:
            self.primary = None
            self._conns.discard(conn)
            others = [c for c in self._conns if c.session.authenticated]
            if others:
                self.primary = max(others, key=lambda c: _RANK[c.session.state])
            elif needs_probe(how) and not self._closing:
                t0 = self.loop.time()
                self._probe(lambda probe: self._judge(how, detail, probe, t0))
            elif how is not Loss.LOCAL or not self._closing:
                self.handler.on_peer_lost(how, detail, Evidence.NONE)
        else:
            self._conns.discard(conn)
        self._update_state()

    def _judge(self, how: Loss, detail: str, probe: Probe, t0: float) -> None:
        """EOF or RESET without BYE, and the probe of the peer's sync port answered:
        tell the daemon what the loss proves (session.evidence)."""
        took_ms = (self.loop.time() - t0) * 1000
        self.stats.bump(f"probe_{probe.value}")
        ev = evidence(how, probe)
        what = f"connection to {self.peer[0]} ended ({how.value}, no BYE)"
        if ev is Evidence.DIED:
            log.warning("SYNC026 %s and its sync port refuses connections (probe %.1f ms): "
                        "the peer's daemon is gone", what, took_ms)
        elif ev is Evidence.ALIVE:
            self._ratelog.warning(self.loop.time(), "SYNC027", "%s",
                                  f"{what}, but its sync port still answers (probe "
                                  f"{took_ms:.1f} ms): not the peer's death (a reset injected "
                                  "on the link, a refusal, or a daemon that restarted); "
                                  "reconnecting")
        else:
            log.info("SYNC028 %s and the probe of its sync port got no answer in %.0f ms: "
                     "silence proves nothing, VRRP's timers decide", what, took_ms)
        if self.primary is None and not self._closing:
            self.handler.on_peer_lost(how, detail, ev)

    def _forget(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        if conn is self.primary:
            self.primary = None
        self._update_state()

    def _log(self, a: Log) -> None:
        if a.warning:
            self._ratelog.warning(self.loop.time(), a.msg_id, "%s", a.text)
        else:
            log.info("%s %s", a.msg_id, a.text)


def free_port_pair(host: str = "127.0.0.1") -> tuple[int, int]:
    """Two currently free TCP ports on `host` (for tests and tools)."""
    socks = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return socks[0].getsockname()[1], socks[1].getsockname()[1]
    finally:
        for s in socks:
            s.close()


def loopback_config(key: bytes, local_port: int, peer_port: int, mode: str = "sync",
                    ack_timeout_ms: int = 50) -> SyncConfig:
    """A SyncConfig for two links on 127.0.0.1 (tests, benchmarks)."""
    lo = IPv4Address("127.0.0.1")
    return SyncConfig(interface="lo", local=(lo, local_port), peer=(lo, peer_port), key=key,
                      mode=mode, ack_timeout_ms=ack_timeout_ms)

