"""The composition root: one asyncio loop that owns config, leases, sockets and timers.

The per-packet path (`_on_readable`) is: drain a batch from the socket, shed what waited
too long (overload), decode, decide (pure server), then one journal write and one
fdatasync for the whole batch (group commit), then send the replies. A reply is never
sent before its lease is durable, and a lease is never committed for a packet that will
not be answered: shedding happens before any decision.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections import defaultdict
from ipaddress import IPv4Address

from appliance.config import tree as config_tree
from appliance.config.model import Config, diff
from appliance.dhcp.enums import MessageType
from appliance.dhcp.message import DecodeError, DhcpMessage
from appliance.dhcp.server import DhcpServer, Ingress
from appliance.dhcp.transport import DhcpTransport, interface_address
from appliance.leases.allocator import Allocator
from appliance.leases.journal import Journal
from appliance.leases.model import HOLDING_STATES
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable
from appliance.runtime.tree import RuntimeTree

log = logging.getLogger("dhcp-hotbackup")

BATCH = 256
# A request that waited longer than this in the socket queue is shed unanswered: its
# client has retransmitted or given up, and answering it would only delay fresh ones.
MAX_QUEUE_DELAY_S = 0.5
PUBLISH_INTERVAL_S = 1.0

_RECEIVED = {
    MessageType.DISCOVER: "discover",
    MessageType.REQUEST: "request",
    MessageType.RELEASE: "release",
    MessageType.DECLINE: "decline",
    MessageType.INFORM: "inform",
}
STAT_NAMES = (
    "discover", "offer", "request", "ack", "nak", "release", "decline", "inform",
    "dropped_malformed", "dropped_standby", "dropped_ratelimit", "dropped_overload",
    "dropped_pool_exhausted", "send_errors",
)


class _RateLimitedLog:
    """At most `burst` lines per `period` per message id (keepalived-style)."""

    def __init__(self, burst: int = 5, period: float = 60.0) -> None:
        self.burst, self.period = burst, period
        self._seen: dict[str, tuple[float, int]] = {}

    def __call__(self, now: float, msgid: str, fmt: str, *args: object) -> None:
        start, n = self._seen.get(msgid, (now, 0))
        if now - start > self.period:
            start, n = now, 0
        n += 1
        self._seen[msgid] = (start, n)
        if n <= self.burst:
            log.warning(msgid + " " + fmt, *args)
        elif n == self.burst + 1:
            log.warning("%s repeated; further messages suppressed for %.0fs", msgid,
                        self.period)


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stats: dict[str, int] = defaultdict(int)
        for name in STAT_NAMES:
            self.stats[name] = 0
        self.active = cfg.standalone
        self.runtime = RuntimeTree(cfg.node.run_dir)
        self._stop = asyncio.Event()
        self._ratelog = _RateLimitedLog()
        self._notify = _notifier()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- start-up ----------------------------------------------------------------------
    def _open_store(self) -> None:
        cfg = self.cfg
        self.table = LeaseTable(origin=cfg.node.name)
        self.pools = Pools.from_config(cfg.pools)
        self.allocator = Allocator(self.pools, self.table)
        self.journal = Journal(cfg.node.state_dir)
        t0 = time.monotonic()
        n = self.journal.replay(self.table.load)
        now = time.time()
        log.info("D001 lease store %s: %d records replayed in %.2fs, %d leases, %d active",
                 cfg.node.state_dir, n, time.monotonic() - t0, len(self.table),
                 self.table.active_count(now))
        if self.journal.records_since_snapshot:
            self.journal.compact(list(self.table.leases()), background=True)

    def _server_id(self) -> bytes:
        cfg = self.cfg
        if cfg.vrrp is not None:
            return cfg.vrrp.virtual_ips[0].ip.packed
        addr = interface_address(cfg.client_interface)
        if addr is None:
            raise RuntimeError(
                f"client/interface {cfg.client_interface} has no IPv4 address: a standalone "
                "server uses it as its server identifier (option 54)")
        return addr

    def _ingress(self) -> Ingress:
        ips = [int(IPv4Address(self.server_id))]
        addr = interface_address(self.cfg.client_interface)
        if addr is not None:
            ips.append(int(IPv4Address(addr)))
        if self.cfg.vrrp is not None:
            ips.extend(int(v.ip) for v in self.cfg.vrrp.virtual_ips)
        return Ingress(local_ips=tuple(dict.fromkeys(ips)))

    async def run(self) -> int:
        self.loop = asyncio.get_running_loop()
        cfg = self.cfg
        self._open_store()
        self.server_id = self._server_id()
        self.server = DhcpServer(self.pools, self.table, self.allocator, self.server_id)
        self.ingress = self._ingress()
        self.transport = DhcpTransport(cfg.client_interface)
        self.transport.set_source(self.server_id)
        self.loop.add_reader(self.transport.fileno(), self._on_readable)
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._stop.set)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        self._publish()
        tasks = [asyncio.create_task(self._housekeeping(), name="housekeeping")]
        log.info("D002 serving DHCP on %s as %s, server identifier %s, role %s",
                 cfg.client_interface, cfg.node.name, socket.inet_ntoa(self.server_id),
                 "active" if self.active else "standby")
        self._notify("READY=1\nSTATUS=serving on " + cfg.client_interface)
        try:
            await self._stop.wait()
        finally:
            log.info("D003 stopping")
            self._notify("STOPPING=1")
            for t in tasks:
                t.cancel()
            self.loop.remove_reader(self.transport.fileno())
            self.transport.close()
            self.journal.close()
            self.active = False
            self._publish()
        return 0

    # -- the packet path ---------------------------------------------------------------
    def _on_readable(self) -> None:
        batch = self.transport.recv_batch(BATCH)
        if not batch:
            return
        now = time.time()
        stats = self.stats
        if not self.active:
            stats["dropped_standby"] += len(batch)
            return
        decode = DhcpMessage.decode
        handle = self.server.handle
        ingress = self.ingress
        replies = []
        commits = []
        for data, _addr, ts in batch:
            if ts and now - ts > MAX_QUEUE_DELAY_S:
                stats["dropped_overload"] += 1
                continue
            try:
                msg = decode(data)
            except DecodeError as e:
                stats["dropped_malformed"] += 1
                self._ratelog(now, "D010", "malformed DHCP packet dropped: %s", e.reason)
                continue
            mt = _RECEIVED.get(msg.message_type)  # type: ignore[arg-type]
            if mt is None:
                stats["dropped_malformed"] += 1
                continue
            stats[mt] += 1
            d = handle(msg, ingress, now)
            if d.counter.startswith("dropped_") or d.reply is not None:
                stats[d.counter] += 1
            if d.counter == "dropped_pool_exhausted":
                self._ratelog(now, "D011", "pool exhausted: no address for %s",
                              msg.mac.hex(":"))
            if d.commit is not None:
                commits.append(d.commit)
            if d.reply is not None:
                replies.append((d, msg))
        if commits:
            # Group commit: one write and one fdatasync for the whole batch.
            self.journal.append(commits)
            self.journal.sync()
        send = self.transport.send
        for d, msg in replies:
            try:
                send(d.reply.encode(), d.dest, d.dest_ip, msg.mac)  # type: ignore[union-attr]
            except OSError as e:
                stats["send_errors"] += 1
                self._ratelog(now, "D012", "reply to %s not sent: %s", msg.mac.hex(":"), e)

    # -- timers ------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        wd = _watchdog_interval()
        last_wd = 0.0
        while True:
            now = time.time()
            expired = self.table.reclaim(now)
            if expired:
                self.journal.append(expired)
                self.journal.sync()
            if self.journal.needs_compaction(len(self.table)):
                self.journal.compact(list(self.table.leases()))
            self._publish()
            mono = time.monotonic()
            if wd and mono - last_wd >= wd:
                self._notify("WATCHDOG=1")
                last_wd = mono
            await asyncio.sleep(min(PUBLISH_INTERVAL_S, wd or PUBLISH_INTERVAL_S))

    def _publish(self) -> None:
        rt = self.runtime
        rt.set("role", "active" if self.active else "standby")
        rt.set("node", self.cfg.node.name)
        rt.set("pid", os.getpid())
        rt.set("leases/active", self.table.bound if hasattr(self, "table") else 0)
        for k, v in self.stats.items():
            rt.set(f"stats/{k}", v)

    # -- reload ------------------------------------------------------------------------
    def reload(self) -> None:
        try:
            new = config_tree.load(self.cfg.source)
        except config_tree.ConfigError as e:
            log.error("D020 reload refused, the running config stays:\n%s", e)
            return
        changed = diff(self.cfg, new)
        if not changed:
            log.info("D021 reload: nothing changed")
            return
        log.info("D022 reload: applying %s", ", ".join(changed))
        if any(c.startswith("pools/") for c in changed):
            self.pools = Pools.from_config(new.pools)
            self.allocator = Allocator(self.pools, self.table)
            now = time.time()
            for lease in self.table.leases():
                if not (lease.state in HOLDING_STATES and lease.expires > now):
                    self.allocator.release(lease.ip)
            self.server.alloc = self.allocator
            self.server.set_pools(self.pools)
        self.cfg = new


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
    return asyncio.run(Daemon(cfg).run())
