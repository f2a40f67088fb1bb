"""Sync transport: the asyncio TCP adapter that carries the replication Session between
the two devices, and SyncLink, the one object the daemon talks to.

Adapter: the only sync module with sockets, a clock and randomness. It feeds bytes,
connection events, timer expiries and durability reports into Session.handle() and
executes the actions that come back; every decision is in session.py. Stdlib only.

Theory of operation:
- Both devices listen on sync/local and dial sync/peer (with backoff, from the sync/local
  address) whenever they have no connection. When both dial at once, the two
  connections are resolved when the second one authenticates: the one dialled by the
  node whose name sorts first is kept; if the peer's boot id changed, the newer
  connection replaces the older one (the peer restarted and the old one is a ghost).
- Bytes are framed by FrameCodec, which refuses an oversized frame from its header,
  before buffering the body. A connection from an address other than sync/peer is
  refused at accept.
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
  gave up on unacknowledged data), so a later stage can treat EOF/RESET as proof that
  the peer's daemon is gone.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import random
import resource
import socket
from collections.abc import Awaitable, Sequence
from ipaddress import IPv4Address

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
    LocalCommitted,
    Log,
    Loss,
    NoticeRequested,
    Params,
    Persisted,
    Progress,
    Refuse,
    ReleaseAcked,
    ReportDrift,
    ReportLoss,
    ReportState,
    Send,
    Session,
    ShutdownRequested,
    StartTimer,
    State,
    Stats,
    Timer,
    TimerFired,
)

log = logging.getLogger("dhcp-hotbackup.sync")
_logger = log  # SyncLink.__init__ has a parameter named `log` (the ChangeLog)

DIAL_BACKOFF_MIN_S = 0.05
DIAL_BACKOFF_MAX_S = 2.0
# Both devices dial. When both connect at once, each drops the connection dialled by
# rank 1 (_resolve), and a catch-up already started on it is wasted and sent again.
# Rank 1 therefore dials only after rank 0 had this long to do it.
DIAL_DEFER_S = 0.15
MAX_PENDING_APPLIES = 64  # batches waiting for durability before we stop reading
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

    def on_peer_lost(self, how: Loss, detail: str) -> None:
        """The connection to the peer ended and no other is up."""


def config_summary(cfg: Config) -> list[tuple[str, str]]:
    """The settings that must match on both devices, as (config path, canonical value):
    pools (subnet, ranges, options, lease time, each reservation) and the VRRP group.
    The session sends keyed digests of these in HELLO and names the paths that differ."""
    out: list[tuple[str, str]] = []
    for p in cfg.pools:
        base = f"pools/{p.name}"
        out.append((f"{base}/subnet", str(p.subnet)))
        out.append((f"{base}/range", " ".join(f"{a}-{b}" for a, b in sorted(p.ranges))))
        out.append((f"{base}/router", " ".join(map(str, p.router))))
        out.append((f"{base}/dns", " ".join(map(str, p.dns))))
        out.append((f"{base}/domain", p.domain or ""))
        out.append((f"{base}/lease_time", str(p.lease_time)))
        for mac, ip in p.reservations:
            out.append((f"{base}/reservations/{mac.hex(':')}", str(ip)))
    if cfg.vrrp is not None:
        out.append(("vrrp/vrid", str(cfg.vrrp.vrid)))
        out.append(("vrrp/virtual_ip", " ".join(map(str, cfg.vrrp.virtual_ips))))
    return out


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


def _close_first_on_exit(sock: socket.socket | None) -> int:
    """A duplicate of the connection's descriptor above every other one; -1 if none.

    When the process dies (kill -9), the kernel closes its descriptors in fd order but
    runs the final release of each file last-in first-out: the highest-numbered file
    is released first. Each AF_PACKET socket's release waits for an RCU grace period
    (packet_release -> synchronize_net, about 10 ms here), so a sync connection with
    packet sockets above it sent its FIN only after theirs. Holding its last
    reference at the top makes it go first: the peer learns of the death in about
    2 ms instead of 5-50 (docs/failover.md). Closed in connection_lost, before the
    transport's own close, so an orderly close is unchanged."""
    if sock is None:
        return -1
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    floor = max(min(soft, 1024) - 32, 3)
    try:
        return fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, floor)
    except OSError:
        return -1


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
            transport.close()
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
        actions = self.session.handle(event, link.loop.time())
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
                 dial: bool = True, listen: bool = True) -> None:
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
        self.ack_timeout_s = sync.ack_timeout_ms / 1000.0
        self.stats = Stats()
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
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.pool_index = node_index(self.local, self.peer)

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        if self.listen:
            self._server = await self.loop.create_server(
                lambda: _Connection(self, outbound=False), host=str(self.local[0]),
                port=self.local[1], reuse_address=True)
            log.info("SYNC020 listening on %s:%d for %s", self.local[0], self.local[1],
                     self.peer[0])
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
        if self._server is not None:
            self._server.close()
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
                _, conn = await asyncio.wait_for(self.loop.create_connection(
                    lambda: _Connection(self, outbound=True), host=str(self.peer[0]),
                    port=self.peer[1], local_addr=(str(self.local[0]), 0)),
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
        if not (self.sync_mode and self.state is State.IN_SYNC) or self._suspect:
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
        """After a reload: the drift check uses it from the next connection on."""
        self.summary = list(summary)

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
        }
        for k, v in self.stats.counts.items():
            out[f"stats/sync/{k}"] = v
        return out

    # -- internals ---------------------------------------------------------------------
    def _new_session(self) -> Session:
        return Session(self.node, self.cfg.key, self.log, held=self.held,
                       summary=self.summary, boot_id=self.boot_id, params=self.params,
                       stats=self.stats)

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
        if p is not None and p in self._conns:
            new = p.session.state
        elif self._conns:
            new = State.HANDSHAKE
        else:
            new = State.DISCONNECTED
        if self._idle is not None:
            if self._conns:
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
            elif how is not Loss.LOCAL or not self._closing:
                self.handler.on_peer_lost(how, detail)
        else:
            self._conns.discard(conn)
        self._update_state()

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

