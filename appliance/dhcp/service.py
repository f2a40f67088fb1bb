"""The packet path: DHCP in on every client interface, decided, made durable, answered.

A facade like vrrp/service.VrrpService and datapath.Datapath: it glues dhcp/'s pure
parts (intake, server) to its transport and to the lease store, which the daemon
provides (`Store`: journal append, hand to the sync link, fdatasync). The daemon builds
it, tells it the client interfaces (`set_interfaces`) and which VRRP groups this device
serves (`serving`, from the pair policy's Serve actions), and sets the server's
`table_complete` and the allocator's split; every packet decision is made here.

Per readable event (docs/architecture.md, "The packet path"):

1. drain up to DRAIN datagrams (dhcp/transport.py: each with its kernel receive time
   and the client interface it came in on; others are dropped there, `foreign`);
2. the user-space role check, per (interface, group): a datagram for a group this
   device does not serve is `dropped_standby` (the XDP program drops most of them in
   the kernel; with datapath/mode off this is the only check). On an interface two
   groups share, the client's group is its RFC 3074 bucket's (dhcp/loadbalance.py);
3. shed what waited more than MAX_QUEUE_DELAY_S in the socket queue, decode, and queue
   in the intake (dhcp/intake.py: known clients first, the oldest shed when full);
4. take a batch, decide each (dhcp/server.py), then one journal write for the batch,
   handed to the sync link, one fdatasync (group commit);
5. send the replies; in `sync` mode the ACKs wait for the peer's durable copy (the
   waiter the store returns). A reply is never sent before its lease is durable, and a
   lease is never committed for a request that will not be answered: shedding happens
   before any decision. A batch the store could not make durable is withheld whole.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Collection, Iterable, MutableMapping, Sequence
from ipaddress import IPv4Address
from typing import Protocol

from appliance.clock import Clock
from appliance.dhcp.enums import LOG as DHCP_LOG
from appliance.dhcp.enums import MessageType, Note, Opt, Reason
from appliance.dhcp.intake import Intake, QueueDelay
from appliance.dhcp.leasequery import COUNTERS as LQ_COUNTERS
from appliance.dhcp.leasequery import LOG as LQ_LOG
from appliance.dhcp.leasequery import Leasequery, LqReason
from appliance.dhcp.message import DecodeError, DhcpMessage
from appliance.dhcp.relay import relay_info
from appliance.dhcp.server import Decision, Dest, DhcpServer, Ingress
from appliance.dhcp.transport import DhcpTransport, Port, interface_address
from appliance.leases.model import Lease, client_key
from appliance.leases.table import LeaseTable
from appliance.ratelog import RateLimitedLog

log = logging.getLogger("dhcp-hotbackup")

BATCH = 256  # requests decided per group commit
DRAIN = 1024  # datagrams read from the socket per readable event
# A request that waited longer than this in the socket queue is shed unanswered: its
# client has retransmitted or given up, and answering it would only delay fresh ones.
MAX_QUEUE_DELAY_S = 0.5

_RECEIVED = {
    MessageType.DISCOVER: "discover",
    MessageType.REQUEST: "request",
    MessageType.RELEASE: "release",
    MessageType.DECLINE: "decline",
    MessageType.INFORM: "inform",
}
# Received by type, replies by type, then every DHCP refusal reason and note (their
# values are the counter names, dhcp/enums.py).
STAT_NAMES = (
    "discover", "offer", "request", "ack", "nak", "release", "decline", "inform",
    "send_errors", *(r.value for r in Reason), *(n.value for n in Note),
    *LQ_COUNTERS, *(r.value for r in LqReason),  # leasequery (dhcp/leasequery.py)
)
_LEASEQUERY = int(MessageType.LEASEQUERY)
_STANDBY = Reason.STANDBY.value
_FOREIGN = Reason.FOREIGN_INTERFACE.value
_CLIENT_ID = int(Opt.CLIENT_ID)
_DISCOVER = int(MessageType.DISCOVER)
# Per interface, which of its groups this device serves: (mode, per group index)
_NONE, _ALL, _SOME = 0, 1, 2
_NOT_SERVED = (_NONE, (False, False))

# One queued request: the message, its IP source, the interface it came in on and its
# client's group index there.
Entry = tuple[DhcpMessage, tuple[str, int], Port, int]
Reply = tuple[Decision, DhcpMessage, Port, int]


class Store(Protocol):
    """What the packet path needs of the lease store and the sync link; the daemon
    provides it (the store-failure rules stay the daemon's: docs/operations.md)."""

    @property
    def error(self) -> str | None:
        """Why the store cannot make anything durable now; None while it works."""

    def write(self, leases: list[Lease]) -> bool:
        """Append to the journal (not yet durable); False: the store failed."""

    def replicate(self, leases: list[Lease]) -> asyncio.Future[bool] | None:
        """Hand the batch to the peer (sent now, its fdatasync runs while ours does).
        Returns what the ACKs wait on in `sync` mode: True once the peer holds them,
        False if it will not (timeout, link gone); None: nothing to wait for."""

    def sync(self) -> bool:
        """fdatasync the journal; False: the store failed (nothing since is durable)."""


def _served(served: dict[int, tuple[int, tuple[bool, ...]]], ifindex: int,
            group: int) -> bool:
    per = served.get(ifindex, _NOT_SERVED)[1]
    return group < len(per) and per[group]


def client_interface(name: str, groups: Sequence[str] = (),
                     virtual_ips: Sequence[IPv4Address] = (),
                     also: Iterable[IPv4Address] = ()) -> Ingress:
    """Interface `name` as the packet path serves it: bound to `groups` (one or two; none
    = standalone) with `virtual_ips[i]` the server identifier of group i's clients there
    (RFC 2131 §4.3.1 option 54: the address a unicast renewal reaches the master at);
    standalone, the interface's own address is. Its own address is read now; `also` are
    further addresses of it (a group's other virtual IPs) that name its subnet."""
    if len(virtual_ips) != len(groups):
        raise ValueError(f"interface {name}: {len(groups)} group(s), {len(virtual_ips)} "
                         "virtual IP(s): one each")
    addr = interface_address(name)
    if groups:
        sids = tuple(v.packed for v in virtual_ips)
        names = tuple(groups)
    elif addr is None:
        raise RuntimeError(f"client interface {name} has no IPv4 address: a standalone "
                           "server uses it as its server identifier (option 54)")
    else:
        sids, names = (addr,), ("",)
    local = [*sids, *([addr] if addr is not None else []), *(a.packed for a in also)]
    return Ingress(local_ips=tuple(dict.fromkeys(int.from_bytes(a, "big") for a in local)),
                   server_ids=sids, groups=names, name=name)


class DhcpService:
    """The packet path for every client interface; see the module docstring."""

    def __init__(self, server: DhcpServer, table: LeaseTable, store: Store,
                 stats: MutableMapping[str, int], clock: Clock, ratelog: RateLimitedLog,
                 loop: asyncio.AbstractEventLoop, transport: DhcpTransport | None = None
                 ) -> None:
        self.server = server
        self.table = table
        self.store = store
        # The daemon's counters (stats/<name> in the runtime tree), shared: the names
        # in STAT_NAMES plus the store's and the sync link's.
        self.stats = stats
        for name in STAT_NAMES:
            stats.setdefault(name, 0)
        self.clock = clock
        self._ratelog = ratelog
        self.loop = loop
        self.transport = transport if transport is not None else DhcpTransport()
        # (message, its IP source, port, group): the source checks a RELEASE that
        # bypassed its relay; port and group say where and as whom to answer.
        self.intake: Intake[Entry] = Intake()
        self._queue_delay = QueueDelay()
        self._serve_handle: asyncio.Handle | None = None
        self._serving: frozenset[str] = frozenset()
        self._served: dict[int, tuple[int, tuple[bool, ...]]] = {}
        self._foreign_seen = 0
        self._names: dict[int, str] = {}  # ifindex -> name, for D013
        # Per client interface (ifindex): [requests taken, replies sent, dropped_standby]
        # (runtime interfaces/<if>/stats/); kept across set_interfaces for those that stay.
        self._counts: dict[int, list[int]] = {}
        self._reading = False
        # Answers DHCPLEASEQUERY (RFC 4388) when set (the daemon does); None: dropped as
        # an unknown message type.
        self.leasequery: Leasequery | None = None

    # -- what the daemon tells it ----------------------------------------------------
    def set_interfaces(self, interfaces: Iterable[Ingress]) -> list[str]:
        """Serve these client interfaces from now on, live: each with its groups and
        their server identifiers. Returns the names missing on the box (not served,
        logged); requests already queued from an interface no longer served are
        dropped."""
        missing = self.transport.set_interfaces(interfaces)
        self._names.clear()
        for name in missing:
            log.warning("D014 client interface %s does not exist: not served until it does "
                        "and the config is reloaded", name)
        self._refresh()
        return missing

    def serving(self, groups: Collection[str]) -> None:
        """Answer clients of these VRRP groups only ("" = the interfaces bound to no
        group); everything else is dropped_standby, including what is queued now."""
        self._serving = frozenset(groups)
        self._refresh()

    @property
    def groups_served(self) -> frozenset[str]:
        return self._serving

    def interface_counters(self) -> dict[str, dict[str, int]]:
        """Per client interface: requests taken (received), replies sent, and requests
        dropped as another group's (dropped_standby)."""
        return {p.ifname: dict(zip(("received", "sent", "dropped_standby"),
                                   self._counts.get(p.ifindex, (0, 0, 0)), strict=True))
                for p in self.transport.ports}

    def _refresh(self) -> None:
        served: dict[int, tuple[int, tuple[bool, ...]]] = {}
        on = self._serving
        for port in self.transport.ports:
            per = tuple(g in on for g in port.ingress.groups)
            mode = _ALL if all(per) else _SOME if any(per) else _NONE
            served[port.ifindex] = (mode, per)
        self._served = served
        self._counts = {i: self._counts.get(i) or [0, 0, 0] for i in served}
        # Queued requests whose (interface, group) is not served any more are dropped
        # as the kernel would have dropped them: nothing was decided for them yet.
        gone = self.intake.drop(lambda e: not _served(served, e[2].ifindex, e[3]))
        if gone:
            self.stats[_STANDBY] += gone

    # -- life --------------------------------------------------------------------------
    def start(self) -> None:
        self.loop.add_reader(self.transport.fileno(), self._on_readable)
        self._reading = True

    def stop(self) -> None:
        """No more reading or answering (the daemon is stopping)."""
        if self._reading:
            self.loop.remove_reader(self.transport.fileno())
            self._reading = False
        if self._serve_handle is not None:
            self._serve_handle.cancel()
            self._serve_handle = None

    def close(self) -> None:
        self.stop()
        self.transport.close()

    # -- the packet path ---------------------------------------------------------------
    def _on_readable(self) -> None:
        """Drain the socket into the intake queues (dhcp/intake.py), decoded and counted,
        then serve. Draining it all keeps the kernel from choosing what to drop (a full
        socket buffer drops the newest); the intake serves known clients first and
        sheds the oldest."""
        batch = self.transport.recv_batch(DRAIN)
        if self.transport.foreign != self._foreign_seen:
            self._count_foreign()
        if not batch:
            return
        stats = self.stats
        if not self._serving:
            stats[_STANDBY] += len(batch)
            return
        mono = self.clock.mono()
        waited = self._queue_delay.waited([b[2] for b in batch], self.clock.wall())
        decode = DhcpMessage.decode
        of_client = self.table.of_client
        push = self.intake.push
        served_of = self._served
        counts_of = self._counts
        received = _RECEIVED
        for (data, addr, _ts, port), w in zip(batch, waited, strict=True):
            mode, per = served_of.get(port.ifindex, _NOT_SERVED)
            if mode == _NONE:
                stats[_STANDBY] += 1
                if port.ifindex in counts_of:
                    counts_of[port.ifindex][2] += 1
                continue
            if w > MAX_QUEUE_DELAY_S:
                # Shed before any work: its client has retransmitted or given up.
                stats["dropped_overload"] += 1
                continue
            try:
                msg = decode(data)
            except DecodeError as e:
                stats["dropped_malformed"] += 1
                self._ratelog.warning(mono, "D010", "malformed DHCP packet dropped: %s",
                                      e.reason)
                continue
            mtype = msg.message_type
            mt = received.get(mtype)  # type: ignore[call-overload]
            if mt is None:
                if mtype == _LEASEQUERY and self.leasequery is not None:
                    self._leasequery(msg, addr, port, mode, per)
                    continue
                stats["dropped_malformed"] += 1
                continue
            group = port.ingress.group_of(msg)
            if mode == _SOME and not per[group]:
                # The other group's client on a shared interface: the peer answers it.
                stats[_STANDBY] += 1
                counts_of[port.ifindex][2] += 1
                continue
            stats[mt] += 1
            counts_of[port.ifindex][0] += 1
            known = mtype != _DISCOVER or of_client(
                client_key(msg.mac, msg.options.get(_CLIENT_ID))) is not None
            push((msg, addr, port, group), known, mono - w + MAX_QUEUE_DELAY_S)
        self._serve()

    def _leasequery(self, msg: DhcpMessage, addr: tuple[str, int], port: Port, mode: int,
                    per: tuple[bool, ...]) -> None:
        """RFC 4388: answered at once (it changes nothing, so nothing waits for the
        store), by the device serving the interface's group (its client's group on an
        interface two groups share: the bucket of chaddr, as for any request)."""
        stats = self.stats
        group = port.ingress.group_of(msg)
        if mode == _SOME and not per[group]:
            stats[_STANDBY] += 1
            return
        stats["leasequery"] += 1
        lq = self.leasequery
        assert lq is not None
        try:
            src = int(IPv4Address(addr[0]))
        except ValueError:
            src = 0
        a = lq.answer(msg, src, port.ingress.server_ids[group], self.clock.wall())
        if a.reason is not None:
            stats[a.reason.value] += 1
            lg = LQ_LOG[a.reason]
            self._ratelog.warning(self.clock.mono(), lg[0], "%s (%s)", lg[1], a.detail)
            return
        assert a.reply is not None
        stats[a.sent] += 1
        # To giaddr, port 67 (RFC 4388, as to a relay); a relay port (RFC 8357) in
        # the query's Option 82 gets it at its source port.
        rai = msg.options.get(int(Opt.RELAY_AGENT_INFO))
        udp_port = addr[1] if rai is not None and relay_info(rai).source_port else 0
        try:
            self.transport.send(a.reply.encode(), Dest.RELAY, msg.giaddr, msg.mac, port,
                                group, udp_port)
        except OSError as e:
            stats["send_errors"] += 1
            self._ratelog.warning(self.clock.mono(), "D012", "reply to %s on %s not "
                                  "sent: %s", IPv4Address(msg.giaddr), port.ifname, e)

    def _count_foreign(self) -> None:
        t = self.transport
        n = t.foreign - self._foreign_seen
        self._foreign_seen = t.foreign
        self.stats[_FOREIGN] += n
        name = self._names.get(t.foreign_ifindex)
        if name is None:  # once per interface, not per flood
            try:
                name = socket.if_indextoname(t.foreign_ifindex)
            except OSError:
                name = f"ifindex {t.foreign_ifindex}"
            self._names[t.foreign_ifindex] = name
        self._ratelog.warning(self.clock.mono(), "D013", "DHCP on %s, not a client "
                              "interface: %d datagram(s) dropped", name, n)

    def _serve(self) -> None:
        """Answer up to BATCH queued requests, known clients first; more wait for the next
        loop iteration (the sync link and timers get their turn in between)."""
        if self._serve_handle is not None:
            self._serve_handle.cancel()
            self._serve_handle = None
        intake = self.intake
        shed = intake.shed_late + intake.shed_full
        entries = intake.take(BATCH, self.clock.mono())
        self.stats["dropped_overload"] += intake.shed_late + intake.shed_full - shed
        if entries:
            self._decide(entries)
        if intake:
            self._serve_handle = self.loop.call_soon(self._serve)

    def _decide(self, entries: list[Entry]) -> None:
        """Decide, make durable (group commit), reply: nothing leaves before its lease is
        durable here and, in `sync` mode, at the peer."""
        now = self.clock.wall()
        stats = self.stats
        handle = self.server.handle
        replies: list[Reply] = []
        commits: list[Lease] = []
        for msg, src, port, group in entries:
            d = handle(msg, port.ingress, now, src, group)
            if d.sent:
                stats[d.sent] += 1
            if d.reason is not None or d.notes:
                self._count_refusal(d, msg)
            if d.commits:
                commits.extend(d.commits)
            if d.reply is not None:
                replies.append((d, msg, port, group))
        if commits:
            # Group commit: one write and one fdatasync for the whole batch. The batch
            # goes to the peer first, so that its fdatasync runs while ours does; no
            # reply leaves before both (below: after ours; the waiter: after the peer's).
            store = self.store
            stored = store.write(commits)
            waiter = store.replicate(commits)
            if not (stored and store.sync()):
                self._withhold(replies)
                return
            if waiter is not None:
                # `sync` mode: an ACK leaves once the peer holds its lease too (or after
                # sync/ack_timeout_ms, serving alone). OFFERs and NAKs need not wait.
                parked = [r for r in replies if r[0].commits]
                self._send([r for r in replies if not r[0].commits])
                waiter.add_done_callback(lambda f, r=parked: self._send_parked(f, r))
                return
        self._send(replies)

    def _count_refusal(self, d: Decision, msg: DhcpMessage) -> None:
        """A refusal's counter, and its rate-limited log line when the operator should
        hear about it (dhcp/enums.LOG); the same for what the server noticed."""
        for why in (d.reason, *d.notes) if d.reason is not None else d.notes:
            self.stats[why.value] += 1
            lg = DHCP_LOG.get(why)
            if lg is not None:
                mt = msg.message_type
                self._ratelog.warning(self.clock.mono(), lg[0], "%s: %s from %s%s", lg[1],
                                      MessageType(mt).name if mt in _RECEIVED else mt,
                                      msg.mac.hex(":"), f" ({d.detail})" if d.detail else "")

    def _send(self, replies: list[Reply]) -> None:
        send = self.transport.send
        counts_of = self._counts
        for d, msg, port, group in replies:
            try:
                send(d.reply.encode(), d.dest, d.dest_ip, msg.mac, port, group,  # type: ignore[union-attr]
                     d.dest_port)
                c = counts_of.get(port.ifindex)
                if c is not None:
                    c[1] += 1
            except OSError as e:
                self.stats["send_errors"] += 1
                self._ratelog.warning(self.clock.mono(), "D012", "reply to %s on %s not "
                                      "sent: %s", msg.mac.hex(":"), port.ifname, e)

    def _send_parked(self, acked: asyncio.Future[bool], replies: list[Reply]) -> None:
        """`sync` mode: the peer confirmed (True) or did not (False: timeout, link gone).
        Unconfirmed ACKs go out alone, as usual, unless our store failed meanwhile: then
        the peer serves our clients next and may not hold those leases, so they are
        withheld and the clients ask the peer."""
        confirmed = not acked.cancelled() and acked.result()
        if self.store.error is not None and not confirmed:
            self._withhold(replies)
            return
        self._send(replies)

    def _withhold(self, replies: list[Reply]) -> None:
        """A batch whose leases are not durable: none of its replies leaves. The clients
        retransmit; in a pair the peer, which serves by then, answers them."""
        if replies:
            self.stats[Reason.STORE_FAILED.value] += len(replies)
            self._ratelog.warning(self.clock.mono(), "D062", "%d replies withheld: their "
                                  "leases could not be made durable (%s)", len(replies),
                                  self.store.error)
