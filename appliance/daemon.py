"""The composition root: one asyncio loop that owns config, leases, sockets and timers.

The per-packet path is dhcp/service.DhcpService: the daemon builds it, gives it the
client interfaces, the groups this device serves and the lease store (`_PacketStore`:
journal, sync link, fdatasync and the store-failure rules, which stay here).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from appliance import __version__
from appliance.clock import SYSTEM, Clock
from appliance.config import tree as config_tree
from appliance.config.model import Config, GroupConfig, ReloadPlan, plan, stable_indexes
from appliance.datapath import Datapath, DatapathError
from appliance.datapath import cleanup_all as datapath_cleanup
from appliance.datapath.plan import Binding
from appliance.dhcp import service as dhcp_service
from appliance.dhcp.leasequery import Leasequery
from appliance.dhcp.server import DhcpServer, Ingress
from appliance.dhcp.service import DhcpService, client_interface
from appliance.leases.allocator import Allocator
from appliance.leases.journal import Journal, StoreLocked
from appliance.leases.model import HOLDING_STATES, Lease, LeaseState
from appliance.leases.pool import Pools
from appliance.leases.syncstate import CursorFile, load_epoch
from appliance.leases.table import LeaseTable
from appliance.metrics import snapshot as ms
from appliance.metrics.alarms import Alarms, Observed, Raise
from appliance.metrics.histogram import DelayLog
from appliance.pair import policy as pp
from appliance.ratelog import RateLimitedLog
from appliance.runtime import view
from appliance.runtime.tree import RuntimeTree
from appliance.sync.changelog import Cursor, RingLog
from appliance.sync.frames import NoticeCode
from appliance.sync.merge import Merger, node_index
from appliance.sync.session import Evidence, Loss
from appliance.sync.session import State as SyncState
from appliance.sync.transport import SyncHandler, SyncLink, config_summary
from appliance.vrrp import netlink as nl
from appliance.vrrp.packet import Reject
from appliance.vrrp.service import GroupSpec, VrrpService, VrrpStartError
from appliance.vrrp.service import cleanup as vrrp_cleanup
from appliance.vrrp.timers import master_down_interval_s, ms_to_cs, skew_time_s

if TYPE_CHECKING:
    from appliance.dhcp.tcp import BulkListener
    from appliance.metrics.exporter import Exporter

log = logging.getLogger("dhcp-hotbackup")

PUBLISH_INTERVAL_S = 1.0
# A sync state change shows in the runtime tree within this; not at once, since it
# often comes with a takeover, whose first replies must not wait behind file writes.
PUBLISH_SOON_S = 0.05

_REJECTS = frozenset(r.value for r in Reject)  # VRRP rejects: the metrics' own family
# The packet path's (received and sent by type, every DHCP refusal reason and note:
# dhcp/service.py), then the store's.
STAT_NAMES = (
    *dhcp_service.STAT_NAMES,
    # The lease store (docs/operations.md): write/fdatasync failures; recoveries; damaged
    # files found (replies withheld for it: Reason.STORE_FAILED).
    "store_failures", "store_recoveries", "store_damaged_files",
    # Expiry sweeps of the lease table (one a second while the store works).
    "expiry_sweeps",
)


class _Replication(SyncHandler):
    """The daemon's side of the sync link: merge the peer's leases into the table, make
    them and the cursor durable, and react to the link's state."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.merger = Merger()
        # Replication delay of live updates: the peer's commit time (lease.start, wall
        # clock: the devices are NTP-synchronised) to durable here, last 10k, in ms.
        self.delays: deque[float] = DelayLog(maxlen=10000)  # also the metrics' histogram
        self._live: list[float] = []
        self._waiting: list[asyncio.Future[None]] = []
        self._cursor: Cursor | None = None

    def apply(self, leases, cursor, settle):  # type: ignore[no-untyped-def]
        """Merge now, in stream order; make durable once per loop iteration: every frame
        that arrived together shares one fdatasync of the journal and of the cursor."""
        d = self.d
        assert d.loop is not None
        if d.store_error is not None:
            # Nothing can be made durable here, so nothing is ACKed: the future never
            # completes. The link is closing (the peer was told); the next one starts
            # from the durable cursor once the store writes again.
            return d.loop.create_future()
        # Our own wall clock: a peer's expiry of a binding still live by it is not taken.
        report = self.merger.apply(leases, d.table, settle, now=d.clock.wall())
        if report.writes and not d._store_write(report.writes):
            return d.loop.create_future()
        if cursor is not None:
            self._cursor = cursor
        for name, n in report.counts.items():
            d.stats[f"sync_{name}"] += n
        for loser in report.losers:
            d._ratelog.warning(d.clock.mono(), "D041", "split brain: %s lost address %s to "
                               "the peer's binding (its next request gets a NAK)",
                               loser.mac.hex(":"), loser.address)
        if settle and cursor is not None and leases:
            self._live.extend(x.start for x in leases if x.state == LeaseState.BOUND)
        fut = d.loop.create_future()
        self._waiting.append(fut)
        if len(self._waiting) == 1:
            d.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        d = self.d
        waiting, self._waiting = self._waiting, []
        try:
            d.journal.sync()
            if self._cursor is not None:
                d.cursor_file.store(self._cursor.epoch, self._cursor.seq)
                self._cursor = None
        except OSError as e:
            # Not durable: these batches are never ACKed (their futures stay pending);
            # the peer sends them again from our durable cursor after the store recovers.
            self._cursor = None
            self._live.clear()
            d._store_failed(e)
            return
        now = d.clock.wall()
        self.delays.extend((now - start) * 1000 for start in self._live)
        self._live.clear()
        for f in waiting:
            if not f.done():
                f.set_result(None)

    def on_state(self, state: SyncState) -> None:
        d = self.d
        link = d.link
        assert link is not None
        # The pool split, the ACK wait and the VRRP gate follow (the pair policy).
        d._policy(pp.SyncChanged(_SYNC[state], link.ready_to_serve))
        if d.store_damage_pending and link.ready_to_serve:
            d.store_damage_pending = False
            d.store_damage += "; the peer's snapshot is in"
            log.warning("D064 lease store rebuilt: the peer's full snapshot is durable here "
                        "(%d leases); this device may serve again", len(d.table))
        log.info("D040 sync %s (ready to serve: %s, allocating from %s)", state.tree_value,
                 link.ready_to_serve, "the whole pool" if d.allocator.owner is None else
                 f"our half (parity {d.allocator.owner})")
        d._publish_soon()

        # Renewals of addresses we have no binding for are NAKed only while no binding
        # can be missing from our table (dhcp/server.py, RENEWING / REBINDING).
        d.server.table_complete = link.in_sync

    def on_drift(self, paths: tuple[str, ...]) -> None:
        if paths:
            log.warning("D042 config differs from the peer's: %s", " ".join(paths))

    def on_clock(self, skew_ms: float, delay_ms: float, alarm: bool,
                 alarm_changed: bool | None) -> None:
        # The link logs the alarm (SYNC040/SYNC041); the runtime tree shows it at once.
        if alarm_changed is not None:
            self.d._publish_soon()

    # -- the second path between the devices (docs/failover.md) ---------------------------
    def on_notice(self, code: int, detail: str) -> None:
        """The peer's word: which groups it serves (ROLE), or "take these now"
        (HAND_OVER; CLIENT_LINK_DOWN and STORE_FAILED from a single-group peer)."""
        d = self.d
        if code == NoticeCode.ROLE_ACTIVE:
            d._policy(pp.PeerRoles(d._peer_groups(detail)))
        elif code == NoticeCode.ROLE_STANDBY:
            d._policy(pp.PeerRoles(frozenset()))
        elif code == NoticeCode.HAND_OVER:
            groups, _, why = detail.partition("|")
            d._policy(pp.PeerHandsOver(d._peer_groups(groups), why or "no reason given"))
        elif code == NoticeCode.CLIENT_LINK_DOWN:
            d._policy(pp.PeerHandsOver(d._peer_groups(""), f"its client link {detail} is "
                                       "down"))
        elif code == NoticeCode.STORE_FAILED:
            d._policy(pp.PeerHandsOver(d._peer_groups(""), f"its lease store failed "
                                       f"({detail})"))

    def on_peer_lost(self, how: Loss, detail: str, evidence: Evidence) -> None:
        # Closed or reset without a BYE, and the peer's sync port refuses connections:
        # its daemon is gone, so it serves nobody. A reset while the port still answers
        # (injected) and silence (TIMEOUT) prove nothing: VRRP decides.
        why = f"sync connection {how.value}" + (f": {detail}" if detail else "")
        self.d._policy(pp.PeerGone(why) if evidence is Evidence.DIED else pp.PeerLost(why))


# The sync link's state as the pair policy sees it.
_SYNC = {SyncState.DISCONNECTED: pp.Sync.DOWN, SyncState.HANDSHAKE: pp.Sync.DOWN,
         SyncState.SYNCING: pp.Sync.SYNCING, SyncState.IN_SYNC: pp.Sync.IN_SYNC}


class _PacketStore:
    """The lease store and the sync link as the packet path sees them
    (dhcp/service.Store): the daemon's store-failure rules apply to its batches."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @property
    def error(self) -> str | None:
        return self.d.store_error

    def write(self, leases: list[Lease]) -> bool:
        return self.d._store_write(leases)

    def replicate(self, leases: list[Lease]) -> asyncio.Future[bool] | None:
        waiter = self.d._committed(leases)
        if self.d.link is not None:
            self.d.link.flush()
        return waiter

    def sync(self) -> bool:
        return self.d._store_sync()


class Daemon:
    def __init__(self, cfg: Config, clock: Clock = SYSTEM) -> None:
        self.cfg = cfg
        # Every time the daemon reads comes from here (tests step a FakeClock); the
        # loop's own timers run on its monotonic clock.
        self.clock = clock
        self.stats: dict[str, int] = defaultdict(int)
        for name in STAT_NAMES:
            self.stats[name] = 0
        # Every device starts standby: only the pair policy's Serve makes it active, and
        # the datapath is flipped before anything else (appliance/pair/policy.py).
        self.active = False
        self.serving: frozenset[str] = frozenset()
        self.policy = pp.PairPolicy(_layout(cfg))
        # Each group's index in the datapath's group -> role map (the standalone
        # interfaces' group too); kept across reloads (config.model.stable_indexes).
        self.indexes = stable_indexes({}, _group_names(cfg))
        self._events: deque[pp.Event] = deque()
        self._in_policy = False
        self._taking_over: str | None = None  # the group a TakeOver is moving now
        self._gate = True  # the last SetGate, for a VRRP instance started later
        self.datapath: Datapath | None = None
        # One VRRP instance per group (vrrp/<group>/), by group name.
        self.vrrps: dict[str, VrrpService] = {}
        self._links: nl.LinkMonitor | None = None
        self.link: SyncLink | None = None
        # The lease store (journal, snapshot, cursor): the error while writes fail (None:
        # they work); the damage replay found at start, if any (runtime store/damage).
        self.store_error: str | None = None
        self.store_damage = ""
        self.store_damage_pending = False  # waiting for the peer's snapshot after damage
        self._store_task: asyncio.Task[None] | None = None
        self._store_job: asyncio.Future[None] | None = None
        self._link_closing: asyncio.Task[None] | None = None
        self._link_task: asyncio.Task[None] | None = None
        self.changelog: RingLog | None = None
        self._last_transition: dict[str, object] = {}
        self.runtime = RuntimeTree(cfg.node.run_dir)
        self._stop = asyncio.Event()
        self._publish_handle: asyncio.TimerHandle | None = None
        self._ratelog = RateLimitedLog(log)
        self._notify = _notifier()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dhcp: DhcpService | None = None
        self.bulk_lq: BulkListener | None = None  # RFC 6926 over TCP (dhcp/tcp.py)
        # Metrics and alarms (docs/metrics.md): a snapshot per publish feeds both.
        self.alarms = Alarms()
        self.exporter: Exporter | None = None
        self._started = clock.wall()
        self._takeovers: dict[tuple[str, str], int] = {}
        self._last_takeover: dict[str, ms.Takeover] = {}
        self._evidence: tuple[float, str] | None = None  # (mono, why) of sync-link evidence
        self._takeover_start: dict[str, float] = {}  # group -> mono: taken over, not served yet
        self._last_transition_of: dict[str, dict[str, object]] = {}  # group -> its last
        self._client_ifs: list[Ingress] = []
        self._if_pools: dict[str, tuple[str, ...]] = {}  # interface -> pools on its subnets
        self._lease_counts: dict[str, int] = {}  # interface -> bound leases (per publish)

    # -- start-up ----------------------------------------------------------------------
    def _open_store(self) -> None:
        cfg = self.cfg
        self.table = LeaseTable(origin=cfg.node.name)
        self.pools = Pools.from_config(cfg.pools, cfg.host_addresses())
        self.allocator = Allocator(self.pools, self.table)
        self.journal = Journal(cfg.node.state_dir)
        t0 = self.clock.mono()
        n = self.journal.replay(self.table.load)
        now = self.clock.wall()
        log.info("D001 lease store %s: %d records replayed in %.2fs, %d leases, %d active",
                 cfg.node.state_dir, n, self.clock.mono() - t0, len(self.table),
                 self.table.active_count(now))
        if cfg.sync is not None:
            self.cursor_file = CursorFile(cfg.node.state_dir)
        if self.journal.damage:
            self._store_damaged()
        elif self.journal.records_since_snapshot:
            self.journal.compact(list(self.table.leases()), background=True)
        if cfg.sync is not None:
            # A store without a change of our own (new, or node/name changed) starts a new
            # epoch: the peer then takes a snapshot instead of trusting old numbers.
            self.epoch = load_epoch(cfg.node.state_dir, empty=self.table.own_seq == 0)
            # Our own changes from now on. A peer that held our log up to our last own
            # change before this start gets a delta; an older one a snapshot.
            self.changelog = RingLog(self.epoch, self.table, base=self.table.own_seq)

    def _interfaces(self) -> list[Ingress]:
        """The client interfaces for the packet path, each with its groups and their
        server identifiers (its virtual IP for each group; its own address when bound to
        none). A group's other virtual IPs on the interface it advertises on name the
        interface's subnet too."""
        cfg = self.cfg
        out = []
        for i in cfg.interfaces:
            also = [v.ip for g in i.groups if (gc := cfg.group(g)) is not None
                    and gc.interface == i.name for v in gc.vrrp.virtual_ips]
            out.append(client_interface(i.name, i.groups, [v.ip for v in i.virtual_ips],
                                        also))
        return out

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        cfg = self.cfg
        self._open_store()
        self._client_ifs = self._interfaces()
        self._map_pools()
        # Complete from the start only when no peer can have bound clients we have not
        # seen: standalone. With sync/, the link's state sets it (_Replication.on_state).
        self.server = DhcpServer(self.pools, self.table, self.allocator,
                                 table_complete=cfg.standalone and cfg.sync is None,
                                 cfg=cfg)
        # The datapath exists before anything can make this device active; a program
        # left by a crashed daemon is replaced and the fresh role map says standby.
        names = _names([i.name for i in cfg.interfaces])
        try:
            self.datapath = Datapath.open(self._bindings(), cfg.datapath)
        except DatapathError as e:
            raise RuntimeError(f"datapath/mode xdp on {names}: {e} (set datapath/mode to "
                               "off on machines without BPF)") from e
        log.info("D004 datapath %s on %s", self.datapath.attach_mode, names)
        self.dhcp = DhcpService(self.server, self.table, _PacketStore(self), self.stats,
                                self.clock, self._ratelog, self.loop)
        missing = self.dhcp.set_interfaces(self._client_ifs)
        if missing:
            raise RuntimeError(f"client interface {', '.join(missing)} does not exist")
        self.dhcp.start()
        await self._start_leasequery()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._stop.set)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        if cfg.sync is not None:
            await self._start_sync()
        # The policy's first word: the pool split, the ACK wait, the gate (closed: not in
        # sync yet, so never preempt a healthy master with stale sessions), and the
        # interfaces of no group served at once.
        for action in self.policy.start(self.clock.mono()):
            self._execute(action)
        if self.store_error is not None:
            self._policy(pp.StoreChanged(False, self.store_error))
        self._watch_links()
        if cfg.groups:
            if cfg.sync is None:
                log.warning("D005 vrrp/ without sync/: sessions are not replicated; the peer "
                            "(keepalived or another device) starts from its own store")
            for g in cfg.groups:
                await self._start_vrrp(g)
        self._start_metrics()
        # A previous run's interfaces and groups are not this one's (the tree may have
        # changed between runs): their folders go before the first publish.
        self.runtime.remove("interfaces")
        self.runtime.remove("groups")
        self._publish()
        tasks = [asyncio.create_task(self._housekeeping(), name="housekeeping")]
        sids = sorted({socket.inet_ntoa(s) for i in self._client_ifs for s in i.server_ids})
        log.info("D002 serving DHCP on %s as %s, server identifier %s, role %s%s", names,
                 cfg.node.name, _names(sids), self.role,
                 f", groups {_names(g.name for g in cfg.groups)}" if cfg.groups else "")
        self._notify("READY=1\nSTATUS=" + self._status_line())
        try:
            await self._stop.wait()
        finally:
            log.info("D003 stopping")
            self._notify("STOPPING=1")
            for t in (*tasks, self._link_task, self._store_task):
                if t is not None:
                    t.cancel()
            # Standby first (no more answers), then priority 0 so the peer takes over
            # at once (RFC 5798 §6.4.3), then the program leaves the interfaces.
            for g in sorted(self.serving):
                self._set_serving(g, False, "stopping")
            if self._links is not None:
                self._links.close()
            await asyncio.gather(*(v.stop() for v in self.vrrps.values()))
            if self._link_closing is not None:
                await self._link_closing
            if self.link is not None:
                await self.link.close()
            self.dhcp.stop()
            if self.bulk_lq is not None:
                await self.bulk_lq.stop()
            if self._publish_handle is not None:
                self._publish_handle.cancel()
            self._publish()  # the last figures, while the maps still exist
            if self.exporter is not None:
                self.exporter.stop()
            self.dhcp.close()
            self.datapath.close()
            self.datapath = None
            if self._store_job is not None:
                await asyncio.wait({self._store_job})  # a rebuild in its thread
            self.journal.close()
            if cfg.sync is not None:
                self.cursor_file.close()
            self.runtime.set("pid", 0)
        return 0

    async def _start_leasequery(self) -> None:
        """RFC 4388 on the packet path, and the RFC 6926 TCP listener if configured
        (dhcp/leasequery.py, dhcp/tcp.py): answered from the table while serving."""
        assert self.dhcp is not None
        lq = Leasequery(self.table, requesters=self.cfg.leasequery.requesters,
                        node=self.cfg.node.name, server=self.server)
        self.dhcp.leasequery = lq
        if self.cfg.leasequery.bulk_listen:
            from appliance.dhcp.tcp import BulkListener
            self.bulk_lq = BulkListener(lq, self.cfg.leasequery, self._lq_server_id,
                                        self.stats, self.clock, self._ratelog)
            await self.bulk_lq.start()

    def _lq_server_id(self) -> bytes | None:
        """Our server identifier while we serve a group (its first interface's), None
        while standby: a bulk leasequery is answered by the active device only."""
        for ing in self._client_ifs:
            for sid, g in zip(ing.server_ids, ing.groups, strict=True):
                if g in self.serving:
                    return sid
        return None

    def _bindings(self) -> list[Binding]:
        """Every client interface with the datapath index of each of its groups (the
        standalone group's for an interface bound to none)."""
        idx = self.indexes
        return [Binding(i.name, tuple(idx[g] for g in i.groups or (pp.STANDALONE,)))
                for i in self.cfg.interfaces]

    async def _start_sync(self) -> None:
        cfg = self.cfg
        assert cfg.sync is not None and self.changelog is not None
        self.replication = _Replication(self)
        self.table.on_displace = self.replication.merger.remember
        if self.store_error is None:  # else the link opens when the store recovers
            await self._open_link()

    async def _open_link(self) -> None:
        cfg = self.cfg
        assert cfg.sync is not None and self.changelog is not None
        epoch, seq = self.cursor_file.load()
        self.link = SyncLink(node=cfg.node.name, sync=cfg.sync, log=self.changelog,
                             handler=self.replication, held=Cursor(epoch, seq),
                             summary=config_summary(cfg), wall=self.clock.wall)
        # sync/local may not be up yet (interface still coming up): retry, keep serving.
        for attempt in range(50):
            try:
                await self.link.start()
                break
            except OSError as e:
                if attempt == 0:
                    log.warning("D043 sync/local %s:%d not usable yet (%s); retrying",
                                cfg.sync.local[0], cfg.sync.local[1], e)
                await asyncio.sleep(0.2)
        else:
            raise RuntimeError(f"sync/local {cfg.sync.local[0]}:{cfg.sync.local[1]}: cannot "
                               "listen (is the address on sync/interface?)")
        log.info("D044 sync link to %s:%d (%s mode), holding the peer's log up to %d",
                 cfg.sync.peer[0], cfg.sync.peer[1], cfg.sync.mode, seq)

    def _committed(self, leases: list[Lease]) -> asyncio.Future[bool] | None:
        """Local changes are written (durable, or about to be before any reply): hand
        them to the peer. Returns what the clients' replies wait on in `sync` mode
        (None: nothing to wait for)."""
        if self.link is None or self.changelog is None:
            return None
        append = self.changelog.append
        for lease in leases:
            append(lease)
        # One call for the batch: the link sends every logged change up to this seq in
        # one frame, and the peer's acks are cumulative.
        return self.link.commit(leases[-1].seq)

    # -- who serves: the pair policy (appliance/pair/policy.py) --------------------------
    def _policy(self, event: pp.Event, now: bool = False) -> None:
        """Hand an event to the pair policy and execute its actions, in order. An action
        that makes VRRP move (TakeOver) calls back with the transition while the list
        runs; that event waits in the queue until the list is done, so one event's
        actions never interleave with another's -- except the transition a TakeOver
        causes (`now`): it is handled at once, inside the TakeOver, so the group is
        served (one role-word write) before VRRP adds its VIPs and sends its ARPs (a
        hundred service VIPs and their announcements took ~50 ms), and before the next
        group's TakeOver. Nothing runs on the loop in between either way."""
        if now and self._in_policy:
            for action in self.policy.handle(event, self.clock.mono()):
                self._execute(action)
            return
        self._events.append(event)
        if self._in_policy:
            return
        self._in_policy = True
        try:
            while self._events:
                ev = self._events.popleft()
                for action in self.policy.handle(ev, self.clock.mono()):
                    self._execute(action)
        finally:
            self._in_policy = False

    def _execute(self, a: pp.Action) -> None:
        if isinstance(a, pp.Serve):
            self._set_serving(a.group, a.on, a.why)
        elif isinstance(a, pp.Announce):
            if self.link is not None:
                # The peer takes over on evidence only the groups we said we served. A
                # NOTICE holds 255 bytes: a longer list goes as "" (every group, as a
                # single-group peer says it), which a dead peer's survivor may take.
                names = ",".join(sorted(a.groups))
                self.link.notice(NoticeCode.ROLE_ACTIVE if a.groups else
                                 NoticeCode.ROLE_STANDBY,
                                 names if len(names.encode()) <= NOTICE_MAX else "")
        elif isinstance(a, pp.HandOver):
            sent = False
            if self.link is not None:
                # One NOTICE per chunk of names that fits (each is taken on its own).
                for chunk in _notice_chunks(sorted(a.groups), a.why):
                    sent = self.link.notice(NoticeCode.HAND_OVER, chunk) or sent
            log.warning("D046 group %s cannot be served here (%s): %s",
                        ", ".join(sorted(a.groups)), a.why,
                        "the peer was told to take over now" if sent else
                        "no sync connection: the peer's VRRP timers decide")
        elif isinstance(a, pp.TakeOver):
            log.warning("D049 %s: taking over group %s now", a.why, a.group)
            vrrp = self.vrrps.get(a.group)
            if vrrp is not None:
                self._evidence = (self.clock.mono(), a.why)  # the takeover's duration
                self._taking_over = a.group
                try:
                    vrrp.takeover(a.why)
                finally:
                    self._evidence = None
                    self._taking_over = None
        elif isinstance(a, pp.SetHealth):
            vrrp = self.vrrps.get(a.group)
            if vrrp is not None:
                vrrp.set_health(a.healthy)
        elif isinstance(a, pp.SetGate):
            self._gate = a.ready
            for vrrp in self.vrrps.values():
                vrrp.set_gate(a.ready)
        elif isinstance(a, pp.SetSplit):
            self.allocator.owner = a.half
        elif isinstance(a, pp.SetAckWait):
            if self.link is not None:
                self.link.ack_wait = a.on
        elif isinstance(a, pp.SuspectPeer):
            if self.link is not None:
                self.link.suspect_peer()
        elif isinstance(a, pp.Note):
            (log.warning if a.warning else log.info)("%s %s", a.msg_id, a.text)

    def _set_serving(self, group: str, on: bool, why: str) -> None:
        """Start or stop serving a group. The datapath's role word is written first:
        from that instant the kernel passes (or drops) DHCP; the rest is bookkeeping."""
        t0 = self.clock.mono()
        was_serving = self.serving
        self.serving = self.serving | {group} if on else self.serving - {group}
        index = self.indexes.get(group)
        if self.datapath is not None and index is not None:
            self.datapath.set_group_role(index, on)  # one map write, however many VLANs
        self.active = bool(self.serving)
        ts = self._takeover_start.pop(group, None) if on else None
        if ts is not None:  # the takeover ends here (metrics)
            self._last_takeover[group] = replace(self._last_takeover[group],
                                                 duration_s=self.clock.mono() - ts)
        if self.dhcp is not None:
            self.dhcp.serving(self.serving)
        if was_serving == self.serving:
            return
        flip_us = (self.clock.mono() - t0) * 1e6
        if self.cfg.groups and len(self.policy.layout.groups) > 1:
            log.info("D030 group %s %s (%s): datapath flipped in %.0f us; role %s, serving "
                     "%d of %d groups", group or "(standalone)",
                     "active" if on else "standby", why, flip_us, self.role,
                     len(self.serving), len(self.policy.layout.groups))
        else:
            log.info("D030 role %s (%s): datapath flipped in %.0f us", self.role, why,
                     flip_us)
        if self.loop is not None and not self._stop.is_set():
            # Just the role and VRRP files, after the current callbacks (the first
            # requests to the new master come first); the rest waits for housekeeping.
            # (When stopping, the stop path publishes last itself: no late rewrite.)
            self.loop.call_soon(self._publish_role)

    @property
    def role(self) -> str:
        """The runtime tree's `role`: active while this device serves any group."""
        return "active" if self.active else "standby"

    def _peer_groups(self, detail: str) -> frozenset[str]:
        """The groups a notice names; none named: every group (a single-group peer)."""
        named = frozenset(g for g in detail.split(",") if g)
        return named or frozenset(self.policy.layout.groups)

    def _watch_links(self) -> None:
        """One link monitor for the interfaces bound to a group other than those a group
        advertises on: a link down makes its groups unhealthy here (the pair policy
        hands them over). A group's own interface (and its tracked ones) are reported by
        its VRRP instance, before its state machine hears of it: the policy must see the
        link go down while the group is still ACTIVE, to hand it over at once rather
        than leave it to VRRP's timers. Called again by a reload that changed the
        interfaces; a link seen down is told to the policy."""
        own = {g.interface for g in self.cfg.groups}
        names = sorted({i.name for i in self.cfg.interfaces if i.groups} - own)
        if self._links is not None:
            if sorted(self._links.states()) == names:
                return
            self._links.close()
            self._links = None
        if not names:
            return
        assert self.loop is not None
        self._links = nl.LinkMonitor(names, self._on_link, self.loop)
        probe = nl.Netlink()
        try:
            states = self._links.start(probe.link_up)
        finally:
            probe.close()
        for ifname, up in sorted(states.items()):
            if not up:
                self._policy(pp.LinkChanged(ifname, False))

    def _group_spec(self, g: GroupConfig) -> GroupSpec:
        # A one-interface tree's group stays unnamed in VRRP's log lines, as before.
        return GroupSpec("" if self.cfg.legacy else g.name, g.vrrp, g.interface,
                         self.cfg.service_vips(g.name))

    async def _start_vrrp(self, g: GroupConfig) -> None:
        assert self.loop is not None
        name = g.name
        vrrp = VrrpService.for_group(
            self._group_spec(g), lambda state, info: self._on_vrrp(name, state, info),
            self.loop, on_link=self._on_link)
        vrrp.set_gate(self._gate)
        if not self.policy.healthy(name):
            vrrp.set_health(False)
        self.vrrps[name] = vrrp
        try:
            await vrrp.start()
        except BaseException:
            del self.vrrps[name]
            raise
        for ifname, up in vrrp.links().items():
            if not up:
                self._policy(pp.LinkChanged(ifname, False))

    def _on_vrrp(self, group: str, state: str, info: dict[str, object]) -> None:
        """VRRP transition: called synchronously, before VIPs and gratuitous ARPs."""
        t0 = self.clock.mono()
        self._policy(pp.VrrpChanged(group, pp.Vrrp(state), str(info.get("reason", ""))),
                     now=group == self._taking_over)
        log.info("D031 vrrp %s%s (priority %s, master %s)",
                 f"group {group} " if not self.cfg.legacy else "", state,
                 info.get("priority"), info.get("master"))
        self._last_transition = {"state": state, "time": self.clock.wall(),
                                 **{k: v if isinstance(v, (int, float, str, bool)) or v is None
                                    else str(v) for k, v in info.items()}}
        self._last_transition_of[group] = self._last_transition
        if state == "master" and info.get("previous") == "backup":
            self._count_takeover(group, str(info.get("reason", "")),
                                 int(info.get("priority", 100)), t0)  # type: ignore[call-overload]

    def _on_link(self, ifname: str, up: bool) -> None:
        log.info("D032 client interface %s is %s", ifname, "up" if up else "down")
        self._policy(pp.LinkChanged(ifname, up))

    def _status_line(self) -> str:
        parts = [self.role]
        if len(self.vrrps) == 1:
            v = next(iter(self.vrrps.values()))
            parts.append(f"vrrp {v.state} prio {v.priority}")
        elif self.vrrps:
            parts.append(f"serving {len(self.serving - {pp.STANDALONE})} of "
                         f"{len(self.vrrps)} groups")
        parts.append(f"{self.table.bound} leases")
        return ", ".join(parts)

    # -- the lease store: failure, recovery, damage (docs/operations.md) ---------------
    def _store_write(self, leases: list[Lease]) -> bool:
        """Append to the journal; False (and the store failed) if that did not work."""
        if self.store_error is not None:
            return False
        try:
            self.journal.append(leases)
        except OSError as e:
            self._store_failed(e)
            return False
        return True

    def _store_sync(self) -> bool:
        """fdatasync the journal; False (and the store failed) if that did not work."""
        if self.store_error is not None:
            return False
        try:
            self.journal.sync()
        except OSError as e:
            self._store_failed(e)
            return False
        return True

    def _store_failed(self, e: OSError) -> None:
        """A write or fdatasync of the store failed: nothing more is ACKed until the disk
        takes writes again (housekeeping probes every second). In a pair the role goes
        to the peer at once: standby here, the peer told over the sync link, the lowest
        VRRP priority advertised, the link closed until the store is back."""
        if self.store_error is not None:
            return
        self.store_error = str(e)
        self.stats["store_failures"] += 1
        pair = not self.cfg.standalone
        log.error("D060 lease store failed: %s; %s", e,
                  "this device stops serving and hands over to its peer" if pair else
                  "answering only what can be made durable, retrying every second")
        # The policy: standby first, then the notice (as for a client link down:
        # docs/failover.md), then the lowest VRRP priority, which keeps the peer master
        # when the link is down too; then the link closes until the store is back.
        self._policy(pp.StoreChanged(False, self.store_error))
        link = self.link
        if link is not None and self._link_closing is None:
            log.warning("D066 sync link closed until the store writes again")
            assert self.loop is not None
            self._link_closing = self.loop.create_task(link.close(), name="sync-close")
        self._publish_soon()

    async def _store_retry(self) -> None:
        """Housekeeping while the store is failed: a probe write, and if the disk takes
        it, the whole table rewritten (snapshot + empty journal: what the failed writes
        left behind is not trusted) and the cursor made durable again (reset instead,
        if damage is still waiting for the peer's snapshot)."""
        assert self.loop is not None
        # The thread keeps running if the daemon stops meanwhile: run() waits for it.
        try:
            self._store_job = asyncio.ensure_future(asyncio.to_thread(self.journal.probe))
            await asyncio.shield(self._store_job)
            leases = list(self.table.leases())
            self._store_job = asyncio.ensure_future(asyncio.to_thread(
                self.journal.rebuild, leases, self.clock.wall()))
            await asyncio.shield(self._store_job)
            self._store_job = None
            if self.cfg.sync is not None:
                if self.store_damage_pending:
                    self.cursor_file.reset()
                else:
                    self.cursor_file.store(*self.cursor_file.load())
        except Exception as e:  # OSError: the disk still fails; anything else: logged too
            self._store_job = None
            self._ratelog.warning(self.clock.mono(), "D063", "lease store still failing: %s",
                                  e)
            return
        was, self.store_error = self.store_error, None
        self.stats["store_recoveries"] += 1
        pair = self.cfg.sync is not None
        log.warning("D061 lease store writes again (it failed with: %s); %d leases rewritten; "
                    "%s", was, len(leases), "syncing with the peer before this device may "
                    "serve again" if pair else "serving")
        if pair:
            self._link_task = self.loop.create_task(self._reopen_link(), name="sync-reopen")
        self._policy(pp.StoreChanged(True))
        self._publish_soon()

    async def _reopen_link(self) -> None:
        """A new sync link after the store recovered: the peer sends what we missed from
        our durable cursor; VRRP may preempt again once that catch-up is done."""
        if self._link_closing is not None:
            await self._link_closing
            self._link_closing = None
        if self.store_error is not None:
            return  # failed again meanwhile: the next recovery reopens it
        await self._open_link()
        if self.link is not None:  # a new link holds nothing yet: the gate closes
            self._policy(pp.SyncChanged(pp.Sync.DOWN, self.link.ready_to_serve))

    def _store_damaged(self) -> None:
        """Replay found damage (journal.py): keep the damaged files aside and rewrite
        the store from what was recovered. In a pair the sync cursor is reset first, so
        the peer answers with a full snapshot (also after a restart in between), and the
        VRRP gate stays closed until it is durable here (SyncLink.ready_to_serve)."""
        what = "; ".join(s.describe() for s in self.journal.damage)
        self.stats["store_damaged_files"] += len(self.journal.damage)
        pair = self.cfg.sync is not None
        log.error("D067 lease store damaged: %s; %d leases recovered; %s", what,
                  len(self.table), "a full snapshot is pulled from the peer before this "
                  "device may serve" if pair else "no sync/ peer to rebuild from: serving what "
                  "was recovered (addresses of the lost records may be handed out again)")
        self.store_damage = what + ("; waiting for the peer's snapshot" if pair else "")
        try:
            if pair:
                self.store_damage_pending = True
                self.cursor_file.reset()
            kept = self.journal.rebuild(list(self.table.leases()), self.clock.wall())
        except OSError as e:
            self._store_failed(e)
            return
        self.store_damage += f" (kept as {', '.join(p.name for p in kept)})"

    # -- timers ------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        wd = _watchdog_interval()
        last_wd = 0.0
        while True:
            now = self.clock.wall()
            if self.store_error is None:
                expired = self.table.reclaim(now)
                self.stats["expiry_sweeps"] += 1
                if expired:
                    if self._store_write(expired):
                        self._store_sync()
                    self._committed(expired)
                if self.journal.error is not None:  # the compaction thread's write failed
                    self._store_failed(self.journal.error)
                elif self.journal.needs_compaction(len(self.table)):
                    try:
                        self.journal.compact(list(self.table.leases()))
                    except OSError as e:
                        self._store_failed(e)
            elif self._store_task is None or self._store_task.done():
                # Not awaited: a rebuild of a big table, or a disk that hangs, must not
                # hold up the runtime tree and the watchdog.
                self._store_task = asyncio.create_task(self._store_retry(), name="store-retry")
            self._publish()
            mono = self.clock.mono()
            if wd and mono - last_wd >= wd:
                self._notify("WATCHDOG=1")
                last_wd = mono
            await asyncio.sleep(min(PUBLISH_INTERVAL_S, wd or PUBLISH_INTERVAL_S))

    def _publish_role(self) -> None:
        rt = self.runtime
        rt.set("role", self.role)
        if self._single_view() and self.vrrps:
            # The one-interface tree's files (tools and tests read them).
            v = next(iter(self.vrrps.values()))
            rt.set("vrrp/state", v.state)
            rt.set("vrrp/priority", v.priority)
            rt.set("vrrp/master", v.master or "")
            if self._last_transition:
                rt.set_json("vrrp/last_transition", self._last_transition)
        # groups/ and interfaces/ (runtime/view.py): the roles at once, the lease counts
        # with the rest; the counters follow with the next _publish: a takeover's first
        # replies first.
        rt.update(view.values(self._group_facts(), self._interface_facts(), self.serving))

    def _single_view(self) -> bool:
        """One interface, at most one group: the runtime tree's vrrp/ files too."""
        return len(self.cfg.interfaces) == 1 and len(self.cfg.groups) <= 1

    def _group_facts(self) -> list[view.GroupFacts]:
        out = []
        for g in self.cfg.groups:
            v = self.vrrps.get(g.name)
            try:
                state = self.policy.state(g.name).value
            except KeyError:
                state = "init"
            out.append(view.GroupFacts(
                g.name, g.name in self.serving, state,
                v.state if v is not None else "initialize",
                v.priority if v is not None else g.vrrp.priority, g.vrrp.priority,
                (v.master or "") if v is not None else "", g.vrrp.vrid, g.interface,
                len(self.cfg.bound(g.name)),
                sum(n for (grp, _c), n in self._takeovers.items() if grp == g.name),
                self._last_transition_of.get(g.name, {})))
        return out

    def _interface_facts(self) -> list[view.InterfaceFacts]:
        leases = self._lease_counts
        return [view.InterfaceFacts(i.name, tuple(g for g in i.groups if g),
                                    tuple(socket.inet_ntoa(s) for s in i.server_ids),
                                    leases.get(i.name, 0))
                for i in self._client_ifs]

    def _count_leases(self) -> None:
        """Bound leases per client interface (interfaces/<if>/leases), from the table's
        per-pool counts: once per _publish, not per packet."""
        if not hasattr(self, "table"):
            return
        counts = self.table.counts
        self._lease_counts = {
            ifname: sum(counts.get((p, LeaseState.BOUND), 0) for p in pools)
            for ifname, pools in self._if_pools.items()}

    def _map_pools(self) -> None:
        """Which pools each client interface serves from (on start and reload)."""
        pools = [(p.name, int(p.subnet.network_address), int(p.subnet.netmask))
                 for p in self.cfg.pools]
        self._if_pools = view.pools_by_interface(
            {i.name: i.local_ips for i in self._client_ifs}, pools)

    def _publish_soon(self) -> None:
        """One _publish within PUBLISH_SOON_S (coalesced; none once stopping)."""
        if self._publish_handle is None and self.loop is not None and \
                not self._stop.is_set():
            self._publish_handle = self.loop.call_later(PUBLISH_SOON_S, self._publish_later)

    def _publish_later(self) -> None:
        self._publish_handle = None
        if not self._stop.is_set():
            self._publish()

    def _publish(self) -> None:
        rt = self.runtime
        # pid before role: a reader that finds `role` may read who wrote it at once.
        rt.set("pid", os.getpid())
        rt.set("node", self.cfg.node.name)
        rt.set("role", self.role)
        self._count_leases()
        rt.set("leases/active", self.table.bound if hasattr(self, "table") else 0)
        rt.set("store/state", "ok" if self.store_error is None else "failed")
        rt.set("store/error", self.store_error or "")
        rt.set("store/damage", self.store_damage)
        stats = dict(self.stats)
        dp: dict[str, int] = {}
        rv: dict[str, object] = {}
        if self.datapath is not None:
            rt.set("datapath/attach_mode", self.datapath.attach_mode)
            pps, burst = self.datapath.rate_limit
            rt.set("datapath/rate_limit_pps", pps)
            rt.set("datapath/rate_limit_burst", burst)
            pps, burst = self.datapath.new_client_budget
            rt.set("datapath/new_client_pps", pps)
            rt.set("datapath/new_client_burst", burst)
            dp = self.datapath.counters()
            if dp:
                # Drops in the kernel and in user space are one figure for the operator.
                stats["dropped_standby"] += dp.get("dropped_standby", 0)
                stats["dropped_ratelimit"] += dp.get("dropped_ratelimit", 0)
                stats["dropped_new_client"] = dp.get("dropped_new_client", 0)
                stats["dropped_malformed"] += dp.get("malformed", 0)
                stats["xdp_seen"] = dp.get("seen", 0)
                stats["xdp_passed"] = dp.get("passed", 0)
                stats["dropped_other_bucket"] = dp.get("dropped_other_bucket", 0)
                stats["xdp_unbound"] = dp.get("unbound", 0)
                self.datapath.log_drops(dp, self.clock.mono())
                if self.cfg.groups:
                    # Each group's share of the kernel's counters (groups/<g>/stats/).
                    by = self.datapath.counters_by_group()
                    for name, idx in self.indexes.items():
                        for k, v in by.get(idx, {}).items() if name else ():
                            if k != "unbound":
                                rt.set(f"groups/{name}/stats/xdp_{k}", v)
        if self.link is not None:
            delays = sorted(self.replication.delays)
            if delays:
                rt.set("sync/delay_p50_ms", f"{delays[len(delays) // 2]:.3f}")
                rt.set("sync/delay_p99_ms", f"{delays[int(len(delays) * 0.99)]:.3f}")
            # A catch-up in progress, as an operator wants to watch it: kind, count, rate.
            prog = self.link.progress()
            catchup = []
            if prog.in_kind is not None:
                catchup.append(f"receiving {prog.in_kind.name.lower()} {prog.in_received}/"
                               f"{prog.in_total} ({prog.in_rate(self.loop.time()):.0f}/s)")
            if prog.out_kind is not None:
                catchup.append(f"sending {prog.out_kind.name.lower()} {prog.out_sent}/"
                               f"{prog.out_total}")
            rt.set("sync/catchup", "; ".join(catchup))
            rv = self.link.runtime_values()
            for k, v in rv.items():
                if k.startswith("stats/sync/"):
                    stats["sync_" + k[len("stats/sync/"):]] = v  # type: ignore[assignment]
                else:
                    rt.set(k, v)
        if self.dhcp is not None:
            for name, counts in self.dhcp.interface_counters().items():
                for k, v in counts.items():
                    rt.set(f"interfaces/{name}/stats/{k}", v)
        self._publish_role()  # vrrp/* (role is written above, before anything else)
        # VRRP's counters: the device's total over its groups (each group's are in the
        # metrics, labelled by group).
        for vrrp in self.vrrps.values():
            for k, v in vrrp.counters().items():
                stats[f"vrrp_{k}"] = stats.get(f"vrrp_{k}", 0) + v
        for k, v in stats.items():
            rt.set(f"stats/{k}", v)
        self._observe(stats, dp, rv)

    # -- metrics and alarms (docs/metrics.md) ------------------------------------------
    def _start_metrics(self) -> None:
        """The Prometheus endpoint on metrics/listen (again after a reload changed it)."""
        if self.exporter is not None:
            self.exporter.stop()
            self.exporter = None
        if self.cfg.metrics.listen:
            # Imported only when on: prometheus_client adds ~2.3 MB of RSS, and every MB
            # costs a kill -9 ~0.12 ms before the peer hears of it (docs/failover.md).
            from appliance.metrics.exporter import Exporter

            self.exporter = Exporter(self.cfg.metrics.listen, self.loop)
            self.exporter.start()

    def _observe(self, stats: dict[str, int], dp: dict[str, int],
                 rv: dict[str, object]) -> None:
        """One snapshot per publish: alarms raised and cleared on it (log, runtime tree),
        then handed to the exporter, whose thread serves it until the next one."""
        snap = self._snapshot(stats, dp, rv)
        for act in self.alarms.handle(Observed(snap), self.clock.mono()):
            if isinstance(act, Raise):
                log.warning("%s %s", act.msg_id, act.text)
            else:
                log.info("%s %s", act.msg_id, act.text)
            self.runtime.set(act.alarm.path, act.alarm.message)  # also a forgotten one's
        states = self.alarms.states()
        for a in states:
            self.runtime.set(a.path, a.message)
        if self.exporter is not None:
            self.exporter.update(replace(snap, alarms=states))

    def _snapshot(self, stats: dict[str, int], dp: dict[str, int],
                  rv: dict[str, object]) -> ms.Snapshot:
        """What the metrics and the alarms need, as plain values (metrics/snapshot.py)."""
        cfg = self.cfg
        dhcp = {k: v for k, v in stats.items() if not k.startswith(("sync_", "vrrp_", "xdp_"))}
        # The server's counters by type and reason, and the kernel's, are the device's:
        # one interface shows them as its own; with several they go once, unlabelled
        # (ms.Snapshot.device_dhcp), beside each interface's own packet counts.
        one = len(cfg.interfaces) == 1
        per_if = self.dhcp.interface_counters() if self.dhcp is not None else {}
        ifs = tuple(
            ms.Interface(i.name, any(g in self.serving for g in i.groups or (pp.STANDALONE,)),
                         ",".join(i.groups) or None,
                         self.datapath.attach_mode if self.datapath else "off",
                         dhcp if one else {}, dp if one else {}, per_if.get(i.name, {}))
            for i in cfg.interfaces)
        groups = []
        for g in cfg.groups:
            vrrp = self.vrrps.get(g.name)
            if vrrp is None:
                continue
            c = vrrp.counters()
            groups.append(ms.Group(g.name, g.vrrp.vrid, vrrp.state, vrrp.priority,
                                   g.vrrp.priority, vrrp.master or "",
                                   {k: v for k, v in c.items() if k not in _REJECTS},
                                   {k: v for k, v in c.items() if k in _REJECTS}))
        counts = self.table.counts if hasattr(self, "table") else {}
        pools = tuple(
            ms.Pool(p.name, p.size + sum(not p.in_range(ip) for ip in p.reserved_ips),
                    {s.name.lower(): counts.get((p.name, s), 0) for s in LeaseState
                     if s is not LeaseState.DELETED},
                    p.config.alarm_percent, p.config.alarm_clear)
            for p in (self.pools.pools if hasattr(self, "pools") else ()))
        sync = None
        if self.link is not None:
            skew = rv.get("sync/clock_skew_ms")
            sync = ms.Sync(
                peer=str(rv.get("sync/peer", "disconnected")), ready=bool(rv.get("sync/ready")),
                lag=int(rv.get("sync/lag", 0)), last_seq=int(rv.get("sync/last_seq", 0)),  # type: ignore[call-overload]
                drift=tuple(str(rv.get("sync/config_drift", "")).split()),
                clock_skew_s=float(skew) / 1000 if skew not in (None, "") else None,  # type: ignore[arg-type]
                clock_skew_alarm=bool(int(rv.get("sync/clock_skew_alarm") or 0)),  # type: ignore[call-overload]
                delay=self.replication.delays.buckets.snapshot(),  # type: ignore[attr-defined]
                events={k[5:]: v for k, v in stats.items()
                        if k.startswith("sync_") and not k.startswith("sync_refused_")},
                refused={k[5:]: v for k, v in stats.items() if k.startswith("sync_refused_")})
        return ms.Snapshot(cfg.node.name, self.clock.wall(), self._started, __version__, ifs,
                           tuple(groups), pools, sync, dict(self._takeovers),
                           dict(self._last_takeover),
                           store_error=self.store_error or "",
                           device_dhcp={} if one else dhcp, device_xdp={} if one else dp)

    def _count_takeover(self, group: str, cause: str, priority: int, t0: float) -> None:
        """This device became master of `group` from backup: count it by cause (VRRP's
        reason) and keep its duration: the wait for the failure's evidence
        (Master_Down_Interval or Skew_Time, RFC 5798 §6.1, from the group's interval and
        our priority; none for the sync link's evidence, which comes within
        milliseconds) plus our own time from the trigger (the timer, or the evidence
        arriving) to the datapath serving."""
        why = ""
        if cause == "peer_down" and self._evidence is not None:
            t0, why = self._evidence
        g = self.cfg.group(group)
        adv_cs = ms_to_cs(g.vrrp.advert_interval_ms) if g is not None else 100
        wait = (master_down_interval_s(priority, adv_cs) if cause == "master_down" else
                skew_time_s(priority, adv_cs) if cause == "master_stopped" else 0.0)
        key = (group, cause)
        self._takeovers[key] = self._takeovers.get(key, 0) + 1
        self._last_takeover[group] = ms.Takeover(
            group, cause, self.clock.wall(), wait + self.clock.mono() - t0, why)
        # The policy may serve the group only once this transition's event is handled
        # (a takeover on evidence runs inside the policy's own action list): the
        # duration then ends at that flip (_set_serving).
        if group in self.serving:
            self._takeover_start.pop(group, None)
        else:
            self._takeover_start[group] = t0 - wait

    # -- reload ------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: re-read the tree and apply the difference live (config.model.plan):
        pools, ranges, reservations and options at once without touching a lease; a new
        priority advertised at once; a group whose other vrrp/ settings changed restarts
        alone; interfaces and groups added, removed or re-bound without disturbing the
        others (_apply_membership); new XDP limits written to the map. Settings that
        only a restart can change (node/, sync/, datapath/mode) are kept and named. An
        invalid tree, or one naming an interface the box lacks, is refused whole and
        the running config stays."""
        now = self.clock.wall()
        try:
            new = config_tree.load(self.cfg.source)
            missing = config_tree.missing_interfaces(new)
            if missing:
                raise config_tree.ConfigError([
                    f"interface(s) not on this box: {', '.join(missing)}"])
        except config_tree.ConfigError as e:
            log.error("D020 reload refused, the running config stays:\n%s", e)
            self.runtime.set_json("config/last_reload", {
                "time": now, "result": "refused", "problems": [str(p) for p in e.problems]})
            return
        old = self.cfg
        # The plan says what changed and how each change applies (config/schema.py's
        # Key.reload); only restart-class keys keep their running value.
        p = plan(old, new)
        live, restart = list(p.applied), list(p.restart_needed)
        if restart:
            log.warning("D023 reload: %s take effect only after a restart; the running "
                        "values stay", ", ".join(restart))
        new = p.config
        self.cfg = new
        if p.pools_changed:
            self.pools = Pools.from_config(new.pools, new.host_addresses())
            owner = self.allocator.owner
            self.allocator = Allocator(self.pools, self.table)
            self.allocator.owner = owner
            for lease in self.table.leases():
                if not (lease.state in HOLDING_STATES and lease.expires > now):
                    self.allocator.release(lease.ip)
            self.server.alloc = self.allocator
            self.server.set_pools(self.pools, new)
        if p.metrics is not None:
            self._start_metrics()
        if p.leasequery is not None and self.dhcp is not None and self.dhcp.leasequery:
            self.dhcp.leasequery.requesters = p.leasequery.requesters
        if p.datapath_limits is not None and self.datapath:
            d = p.datapath_limits
            self.datapath.set_limits((d.rate_limit_pps, d.rate_limit_burst),
                                     (d.new_client_pps, d.new_client_burst))
        assert self.loop is not None
        membership = bool(p.interfaces_added or p.interfaces_removed or p.groups_added
                          or p.groups_removed)
        if membership or p.groups_restarted:
            self.loop.create_task(self._apply_membership(old, p), name="reload-membership")
        for name, prio in p.priorities:
            vrrp = self.vrrps.get(name)
            if vrrp is not None:
                # While unhealthy VRRP keeps advertising the lowest priority (SetHealth).
                vrrp.set_priority(prio)
        if p.pools_changed:
            self._map_pools()
        if self.link is not None:
            self.link.set_summary(config_summary(new))
        log.info("D022 reload: %s", ", ".join(live) if live else "nothing changed")
        self.runtime.set_json("config/last_reload", {
            "time": now, "result": "applied" if live else "unchanged", "changed": live,
            "restart_needed": restart})
        self._publish()

    async def _apply_membership(self, old: Config, p: ReloadPlan) -> None:
        """Interfaces and groups added, removed or re-bound, and groups restarted, in an
        order that never answers for a group nobody elects: the removed and restarted
        groups' VRRP stop first (priority 0: the peer takes them now), then the pair
        policy, the datapath keys, the packet path's interfaces and the link monitor
        take the new layout (the groups that stay keep their state and their role map
        entry), then the new and restarted groups' VRRP start. A group whose service
        interfaces changed gets its new service VIPs (added and announced if master)."""
        new = self.cfg
        stopping = [*p.groups_removed, *p.groups_restarted]
        for g in stopping:
            vrrp = self.vrrps.pop(g.name, None)
            if vrrp is None:
                continue
            log.warning("D024 reload: %s group %s (vrid %d)", "removing" if g in
                        p.groups_removed else "restarting with new settings", g.name,
                        g.vrrp.vrid)
            await vrrp.stop()
            if g.name in self.policy.layout.groups:
                self._policy(pp.VrrpChanged(g.name, pp.Vrrp.INITIALIZE, "vrrp restart"))
        for action in self.policy.relayout(_layout(new), self.clock.mono()):
            self._execute(action)
        self.indexes = stable_indexes(self.indexes, _group_names(new))
        self._client_ifs = self._interfaces()
        if self.datapath is not None:
            try:
                self.datapath.set_interfaces(self._bindings())
            except (DatapathError, ValueError) as e:
                log.error("D025 reload: the datapath could not take the new interfaces "
                          "(%s): it keeps steering the old ones", e)
        if self.dhcp is not None:
            self.dhcp.set_interfaces(self._client_ifs)
            self.dhcp.serving(self.serving)
        self._watch_links()
        self._map_pools()
        for i in p.interfaces_removed:
            if new.interface(i.name) is None:
                self.runtime.remove(f"interfaces/{i.name}")
        for g in p.groups_removed:
            self.runtime.remove(f"groups/{g.name}")
        for g in new.groups:
            vrrp = self.vrrps.get(g.name)
            if vrrp is not None:
                vips = new.service_vips(g.name)
                if vips != old.service_vips(g.name):
                    try:
                        vrrp.set_service_vips(vips)
                    except VrrpStartError as e:
                        log.error("D025 reload: group %s: %s", g.name, e)
        for g in new.groups:
            if g.name not in self.vrrps:
                try:
                    await self._start_vrrp(g)
                except (VrrpStartError, OSError) as e:
                    log.error("D025 reload: group %s cannot start: %s; it is not served "
                              "here until the next reload", g.name, e)
        added = sorted(i.name for i in p.interfaces_added)
        removed = sorted(i.name for i in p.interfaces_removed)
        log.info("D026 reload: interfaces added %s, removed %s; groups added %s, removed %s"
                 ", restarted %s", _names(added) or "none", _names(removed) or "none",
                 _names(g.name for g in p.groups_added) or "none",
                 _names(g.name for g in p.groups_removed) or "none",
                 _names(g.name for g in p.groups_restarted) or "none")
        self._publish()


NOTICE_MAX = 255  # bytes of a NOTICE's detail (sync/frames.py: one length octet)


def _notice_chunks(groups: list[str], why: str) -> list[str]:
    """HAND_OVER details "<g>,<g>|<why>", each within NOTICE_MAX bytes: the names split
    over as many as needed, the reason cut to what is left beside them."""
    out: list[str] = []
    room = NOTICE_MAX - 1 - min(len(why.encode()), 64)
    cur: list[str] = []
    for g in groups:
        if cur and len(",".join([*cur, g]).encode()) > room:
            out.append(",".join(cur))
            cur = []
        cur.append(g)
    out.append(",".join(cur))
    return [f"{names}|{why}".encode()[:NOTICE_MAX].decode(errors="ignore") for names in out]


def _layout(cfg: Config) -> pp.Layout:
    """The pair policy's view of the config: each group with the interfaces bound to
    it; the interfaces bound to none under STANDALONE."""
    groups: dict[str, tuple[str, ...]] = {g.name: tuple(i.name for i in cfg.bound(g.name))
                                           for g in cfg.groups}
    alone = tuple(i.name for i in cfg.interfaces if i.standalone)
    if alone or not cfg.groups:
        groups[pp.STANDALONE] = alone
    return pp.Layout(groups=groups,
                     sync_mode=cfg.sync.mode if cfg.sync is not None else None,
                     half=node_index(cfg.sync.local, cfg.sync.peer) if cfg.sync else 0)


def _group_names(cfg: Config) -> list[str]:
    """The groups that need a datapath index: every group, and STANDALONE when an
    interface is bound to none."""
    names = [g.name for g in cfg.groups]
    if any(i.standalone for i in cfg.interfaces):
        names.append(pp.STANDALONE)
    return names


def _names(names: Iterable[str], most: int = 4) -> str:
    """"eth1.100, eth1.101" or, past `most`, "eth1.100, ... eth1.299 (200)": log lines
    stay short with hundreds of VLANs."""
    items = list(names)
    if len(items) <= most:
        return ", ".join(items)
    return f"{', '.join(items[:most - 1])}, ... {items[-1]} ({len(items)})"


def _watchdog_interval() -> float:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return 0.0
    try:
        return int(usec) / 2e6
    except ValueError:
        return 0.0


def _notifier():
    """sd_notify through sdnotify when systemd gave us a socket; a no-op otherwise."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return lambda msg: None
    try:
        import sdnotify

        n = sdnotify.SystemdNotifier()
        return n.notify
    except ImportError:  # pragma: no cover - Debian's python3-sdnotify is a dependency
        return lambda msg: None


def run(cfg: Config) -> int:
    missing = config_tree.missing_interfaces(cfg)
    if missing:
        raise RuntimeError(f"interface(s) not on this box: {', '.join(missing)} (named in "
                           f"{cfg.source or 'the config tree'})")
    return asyncio.run(Daemon(cfg).run())


def cleanup(cfg: Config) -> list[str]:
    """What a crashed daemon may have left on the LAN, removed: the XDP program (so no
    stale role steers DHCP) and the virtual IPs of every group (so no stale address
    answers ARP). Safe to run when nothing is left. Returns what was removed, for the
    log. Does nothing while a daemon holds this tree's state dir: it is not left over."""
    try:
        lock = Journal(cfg.node.state_dir)
    except StoreLocked:
        return [f"a daemon is running on {cfg.node.state_dir}: nothing to clean up"]
    try:
        return _cleanup(cfg)
    finally:
        lock.close()


def _cleanup(cfg: Config) -> list[str]:
    # Every port under the client interfaces the config names (a VLAN's parent port).
    done = [f"xdp program ({mode}) detached from {port}"
            for port, mode in datapath_cleanup([i.name for i in cfg.interfaces])]
    done += vrrp_cleanup([GroupSpec("" if cfg.legacy else g.name, g.vrrp, g.interface,
                                    cfg.service_vips(g.name)) for g in cfg.groups])
    return done
