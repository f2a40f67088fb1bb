"""VrrpService: one VRRPv3 instance on an asyncio loop, the glue a daemon uses.

Adapter. It owns the sockets (transport.py), the kernel side (netlink.py) and one
VrrpMachine (fsm.py); it turns packets, link events, timer expiries and the sync gate
into events, and executes the actions that come back, in order:

    StartTimer/CancelTimer   loop.call_at / Handle.cancel (deadlines are loop.time())
    SendAdvert               transport.send
    AddVips/DelVips          netlink (on the VMAC macvlan when use_vmac)
    SendGarp                 garp_count rounds, garp_interval_ms apart
    BecomeMaster/Backup/Initialize   on_transition(state, info), synchronously
    Discard                  counters[reason.value] += 1, rate-limited VRRP_RX_REJECT
    IntervalMismatch         counters["rx_interval_mismatch"] += 1, rate-limited log

With vrrp/peer set, adverts from any other source are counted (rx_not_peer) and dropped
here, before the state machine (packet.check_source).

The state machine puts the transition first in every list, so `on_transition` runs
before the advert, the VIPs and the gratuitous ARPs when becoming master, and before
anything else when leaving it: the daemon flips its datapath role there.

    svc = VrrpService(cfg.vrrp, cfg.client_interface, on_transition, loop)
    svc.set_gate(False)        # optional, before start: not in sync yet
    await svc.start()
    ...
    svc.set_gate(True)         # in sync: may preempt
    await svc.stop()           # priority-0 advert, VIPs removed
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

from appliance.config.model import VrrpConfig
from appliance.vrrp import netlink as nl
from appliance.vrrp.fsm import (
    Action,
    AddVips,
    AdvertReceived,
    BecomeBackup,
    BecomeInitialize,
    BecomeMaster,
    CancelTimer,
    DelVips,
    Discard,
    Event,
    GateChanged,
    InterfaceChanged,
    IntervalMismatch,
    LinkChanged,
    Params,
    PeerDown,
    PriorityChanged,
    PriorityConfigured,
    SendAdvert,
    SendGarp,
    Shutdown,
    StartTimer,
    Startup,
    State,
    Timer,
    TimerFired,
    VrrpMachine,
)
from appliance.vrrp.packet import Received, Reject, check_source
from appliance.vrrp.timers import ms_to_cs
from appliance.vrrp.transport import VrrpTransport

log = logging.getLogger("appliance.vrrp")

# Counters besides one per Reject reason (their names are Reject values).
COUNTERS = (
    "rx_packets",  # every datagram read from the VRRP socket
    "rx_adverts",  # adverts for our group that reached the state machine unrejected
    "rx_interval_mismatch",  # accepted adverts whose interval is not ours (fsm.py)
    "tx_adverts",
    "tx_errors",  # adverts the kernel refused to send
    "tx_garps",  # gratuitous ARP frames sent
    "became_master",
    "became_backup",
    "priority_changes",
    "link_events",  # tracked links going up or down
    "netlink_errors",  # VIP add/remove failures
)

_REJECT_LOG_S = 10.0

# asyncio wakes up to ~1 ms late (the epoll selector rounds its timeout up to whole
# milliseconds), and for the Master_Down_Timer that lateness is failover time: it is
# armed this much early and the rest is slept, blocking the loop at most this long,
# once per takeover. Other timers are not worth blocking for.
_EARLY_S = {Timer.MASTER_DOWN: 0.0015}

TransitionCallback = Callable[[str, dict[str, Any]], None]


class VrrpStartError(RuntimeError):
    """The instance cannot start (missing interface, no address to send from, ...)."""


def params_from_config(cfg: VrrpConfig, primary: IPv4Address) -> Params:
    return Params(
        vrid=cfg.vrid,
        priority=cfg.priority,
        advert_interval_cs=ms_to_cs(cfg.advert_interval_ms),
        addresses=tuple(v.ip for v in cfg.virtual_ips),
        primary_address=primary,
        preempt=cfg.preempt,
        preempt_delay_s=cfg.preempt_delay_ms / 1000,
        accept=cfg.accept,
        track=tuple(cfg.track),
        garp_repeat_s=float(cfg.garp_repeat_s),
        peer=cfg.peer,
    )


class VrrpService:
    """One virtual router on `interface`, driven by `loop`."""

    def __init__(self, cfg: VrrpConfig, interface: str, on_transition: TransitionCallback,
                 loop: asyncio.AbstractEventLoop | None = None, *,
                 on_link: Callable[[str, bool], None] | None = None,
                 watch: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.interface = interface
        self._on_transition = on_transition
        # Interfaces whose up/down the caller wants to hear about (on_link), besides the
        # tracked ones; only tracked ones change the priority.
        self._on_link = on_link
        self._watch = watch
        self._loop = loop
        self._gate = True
        self._machine: VrrpMachine | None = None
        self._primary: IPv4Address | None = None
        self._vips: dict[IPv4Address, IPv4Interface] = {v.ip: v for v in cfg.virtual_ips}
        self._counters = dict.fromkeys((*(r.value for r in Reject), *COUNTERS), 0)
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._garp_handles: list[asyncio.TimerHandle] = []
        self._netlink: nl.Netlink | None = None
        self._monitor: nl.LinkMonitor | None = None
        self._transport: VrrpTransport | None = None
        self._garp: nl.GarpSender | None = None
        self._vip_index: int | None = None
        self._vmac_index: int | None = None
        self._sysctl_restore: dict[str, int] = {}
        self._stopping = False
        self._before = State.INITIALIZE  # the state the event being handled found
        self._busy = False
        self._pending: deque[Event] = deque()
        self._rate_log: dict[object, tuple[float, int]] = {}

    # -- observation ----------------------------------------------------------------
    @property
    def state(self) -> str:
        """initialize | backup | master (the runtime tree's vrrp/state)."""
        return self._machine.state.value if self._machine else State.INITIALIZE.value

    @property
    def priority(self) -> int:
        """Effective priority, after tracking decrements (vrrp/priority)."""
        return self._machine.priority if self._machine else self.cfg.priority

    @property
    def master(self) -> str | None:
        """Address of the current master as seen from here (vrrp/master)."""
        m = self._machine.master if self._machine else None
        return str(m) if m is not None else None

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    # -- control --------------------------------------------------------------------
    async def start(self) -> None:
        if self._machine is not None:
            raise RuntimeError("VrrpService already started")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if not self.cfg.accept:
            log.warning("VRRP_ACCEPT_OFF accept=0 is not enforced: packets to the VIPs "
                        "are accepted as with keepalived without vrrp_strict")
        try:
            self._open()
        except BaseException:
            self._close()
            self._machine = None
            raise
        if not self._gate:
            self._feed(GateChanged(False))
        self._feed(Startup())

    def set_gate(self, ready: bool) -> None:
        """Open (in sync with the peer) or close the sync gate; see docs/vrrp.md."""
        self._gate = ready
        if self._machine is not None and not self._stopping:
            self._feed(GateChanged(ready))

    def set_priority(self, priority: int) -> None:
        """vrrp/priority changed on reload: applied live (a master advertises it now)."""
        if self._machine is not None and not self._stopping:
            self._feed(PriorityConfigured(priority))

    def takeover(self, why: str) -> None:
        """The sync link proved the master gone: a Backup becomes Master now instead of
        waiting for the Master_Down_Timer (docs/failover.md says why this is safe)."""
        if self._machine is not None and not self._stopping:
            self._feed(PeerDown(why))

    async def stop(self) -> None:
        """Shutdown event: a Master sends priority 0 and removes its VIPs (§6.4.3)."""
        if self._machine is None or self._stopping:
            return
        self._stopping = True
        try:
            self._feed(Shutdown())
        finally:
            self._close()

    # -- set-up and tear-down -------------------------------------------------------
    def _open(self) -> None:
        assert self._loop is not None
        self._netlink = netlink = nl.Netlink()
        index = netlink.link_index(self.interface)
        if index is None:
            raise VrrpStartError(f"interface {self.interface} does not exist")
        stale = netlink.remove_stale(index, self.cfg.virtual_ips)
        if stale:
            log.info("VRRP_STALE_VIPS removed %s left on %s by an earlier run",
                     ", ".join(map(str, stale)), self.interface)
        self._primary = netlink.primary_address(index, self._vips)
        if self._primary is None:
            raise VrrpStartError(
                f"{self.interface} has no IPv4 address (other than the VIPs) to send "
                "VRRP adverts from")
        if self.cfg.peer is not None and self.cfg.peer == self._primary:
            # Our own adverts are never heard (rx_own), so every other advert would be
            # dropped: a device that names itself would never follow its real peer.
            raise VrrpStartError(
                f"vrrp/peer {self.cfg.peer} is this device's own address on "
                f"{self.interface}: name the other device's")
        send_ifname = self.interface
        mac = netlink.link_mac(index)
        self._vip_index = index
        if self.cfg.use_vmac:
            self._vmac_index = netlink.create_vmac(index, self.cfg.vrid)
            self._vip_index = self._vmac_index
            send_ifname = nl.vmac_ifname(self.cfg.vrid)
            mac = nl.vmac_address(self.cfg.vrid)
            for key, value in (("arp_ignore", 1), ("arp_announce", 2)):
                old = nl.set_ipv4_conf(self.interface, key, value)
                if old is not None:
                    self._sysctl_restore[key] = old
        self._machine = VrrpMachine(params_from_config(self.cfg, self._primary))
        names = list(dict.fromkeys([*(name for name, _ in self.cfg.track), *self._watch,
                                    self.interface]))
        self._monitor = nl.LinkMonitor(names, self._link_changed, self._loop)
        for name, up in self._monitor.start(netlink.link_up).items():
            if not up:
                self._feed(LinkChanged(name, False))
                if name == self.interface:
                    self._feed(InterfaceChanged(False))
        self._garp = nl.GarpSender(send_ifname, mac)
        self._transport = VrrpTransport(self._loop, self.interface, self._datagram,
                                        send_ifname)
        self._transport.open()

    def _close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._cancel_garps()
        if self._transport is not None:
            self._transport.close()
        if self._monitor is not None:
            self._monitor.close()
        if self._garp is not None:
            self._garp.close()
        if self._netlink is not None:
            if self._vmac_index is not None:
                self._safe(self._netlink.delete_link, self._vmac_index)
                self._vmac_index = None
            for key, value in self._sysctl_restore.items():
                nl.set_ipv4_conf(self.interface, key, value)
            self._sysctl_restore.clear()
            self._netlink.close()
        self._transport = self._monitor = self._garp = self._netlink = None

    # -- inputs ---------------------------------------------------------------------
    def _datagram(self, result: Received | Reject, now: float) -> None:
        self._counters["rx_packets"] += 1
        if isinstance(result, Reject):
            self._count_reject(result, None, now)
            return
        # our own advert looping back is the state machine's rx_own, not rx_not_peer
        refused = None if result.src == self._primary else check_source(result.src,
                                                                          self.cfg.peer)
        if refused is not None:
            self._count_reject(refused, result.src, now)
            return
        actions = self._feed(AdvertReceived(result.src, result.advert), now)
        if not any(isinstance(a, Discard) for a in actions):
            self._counters["rx_adverts"] += 1

    def _link_changed(self, ifname: str, up: bool) -> None:
        self._counters["link_events"] += 1
        log.info("VRRP_LINK interface %s is %s", ifname, "up" if up else "down")
        if not self._stopping:
            if self._on_link is not None:
                self._on_link(ifname, up)
            self._feed(LinkChanged(ifname, up))
            if ifname == self.interface:
                self._feed(InterfaceChanged(up))

    def _timer_fired(self, timer: Timer, deadline: float) -> None:
        assert self._loop is not None
        self._timers.pop(timer, None)
        early = deadline - self._loop.time()
        if early > 0:  # armed early on purpose (_EARLY_S): finish the wait precisely
            time.sleep(early)
        self._feed(TimerFired(timer))

    def _feed(self, event: Event, now: float | None = None) -> list[Action]:
        """Hand one event to the machine and execute its actions, in order.

        on_transition may call back into us (set_gate) while a list is being executed;
        such an event waits until the current list is done, so that one event's actions
        never interleave with another's. Returns the actions of `event` when it ran now.
        """
        assert self._machine is not None and self._loop is not None
        if self._busy:
            self._pending.append(event)
            return []
        self._busy = True
        try:
            actions = self._run(event, now)
            while self._pending:
                self._run(self._pending.popleft(), None)
        finally:
            self._busy = False
            self._pending.clear()
        return actions

    def _run(self, event: Event, now: float | None) -> list[Action]:
        assert self._machine is not None and self._loop is not None
        self._before = self._machine.state
        actions = self._machine.handle(event, self._loop.time() if now is None else now)
        for action in actions:
            self._execute(action)
        return actions

    # -- outputs --------------------------------------------------------------------
    def _execute(self, action: Action) -> None:
        assert self._loop is not None and self._machine is not None
        if isinstance(action, StartTimer):
            old = self._timers.pop(action.timer, None)
            if old is not None:
                old.cancel()
            self._timers[action.timer] = self._loop.call_at(
                action.deadline - _EARLY_S.get(action.timer, 0.0), self._timer_fired,
                action.timer, action.deadline)
        elif isinstance(action, CancelTimer):
            old = self._timers.pop(action.timer, None)
            if old is not None:
                old.cancel()
        elif isinstance(action, SendAdvert):
            self._send_advert(action)
        elif isinstance(action, AddVips):
            self._vip_op("add", action.addresses)
        elif isinstance(action, DelVips):
            self._vip_op("del", action.addresses)
        elif isinstance(action, SendGarp):
            self._start_garps(action.addresses)
        elif isinstance(action, BecomeMaster):
            self._counters["became_master"] += 1
            self._transition("master", action.reason.value, accept=action.accept)
        elif isinstance(action, BecomeBackup):
            self._counters["became_backup"] += 1
            self._cancel_garps()
            self._transition("backup", action.reason.value)
        elif isinstance(action, BecomeInitialize):
            self._cancel_garps()
            self._transition("initialize", action.reason.value)
        elif isinstance(action, PriorityChanged):
            self._counters["priority_changes"] += 1
            log.info("VRRP_PRIORITY effective priority %d -> %d", action.old, action.new)
        elif isinstance(action, Discard):
            self._count_reject(action.reason, action.src)
        elif isinstance(action, IntervalMismatch):
            self._interval_mismatch(action)

    def _transition(self, state: str, reason: str, **extra: Any) -> None:
        assert self._machine is not None
        info: dict[str, Any] = {
            "reason": reason,
            "priority": self._machine.priority,
            "master": self.master,
            "previous": self._before.value,
            "vrid": self.cfg.vrid,
            "interface": self.interface,
        }
        info.update(extra)
        log.info("VRRP_TRANSITION vrid %d -> %s (%s), priority %d, master %s",
                 self.cfg.vrid, state, reason, info["priority"], info["master"])
        try:
            self._on_transition(state, info)
        except Exception:
            # The state machine has moved on; a failing callback must not stop VRRP.
            log.exception("VRRP_CALLBACK_ERROR on_transition(%s) raised", state)

    def _send_advert(self, action: SendAdvert) -> None:
        assert self._transport is not None and self._primary is not None
        try:
            self._transport.send(action.advert, self._primary)
            self._counters["tx_adverts"] += 1
        except OSError as e:
            self._counters["tx_errors"] += 1
            n = self._counters["tx_errors"]
            if n <= 5 or n % 1000 == 0:  # one per advert would flood the log
                log.warning("VRRP_TX_ERROR advert not sent (%d so far): %s", n, e)

    def _vip_op(self, op: str, addresses: tuple[IPv4Address, ...]) -> None:
        assert self._netlink is not None and self._vip_index is not None
        vips = [self._vips[a] for a in addresses]
        try:
            if op == "add":
                self._netlink.add_addresses(self._vip_index, vips)
            else:
                self._netlink.del_addresses(self._vip_index, vips)
        except nl.NetlinkFailure as e:
            self._counters["netlink_errors"] += 1
            log.error("VRRP_VIP_ERROR %s", e)

    def _start_garps(self, addresses: tuple[IPv4Address, ...]) -> None:
        assert self._loop is not None
        self._cancel_garps()
        count = self.cfg.garp_count
        spacing = self.cfg.garp_interval_ms / 1000
        if count <= 0:
            return
        if spacing <= 0:
            for _ in range(count):
                self._send_garp(addresses)
            return
        self._send_garp(addresses)
        now = self._loop.time()
        self._garp_handles = [
            self._loop.call_at(now + i * spacing, self._send_garp, addresses)
            for i in range(1, count)
        ]

    def _send_garp(self, addresses: tuple[IPv4Address, ...]) -> None:
        if self._garp is not None:
            self._counters["tx_garps"] += self._garp.send(addresses)

    def _cancel_garps(self) -> None:
        for handle in self._garp_handles:
            handle.cancel()
        self._garp_handles = []

    def _count_reject(self, reason: Reject, src: IPv4Address | None,
                      now: float | None = None) -> None:
        self._counters[reason.value] += 1
        suppressed = self._may_log(reason, now)
        if suppressed is not None:
            log.warning("VRRP_RX_REJECT dropped an advert on %s%s: %s (%d more since "
                        "last report)", self.interface, f" from {src}" if src else "",
                        reason.value, suppressed)

    def _interval_mismatch(self, m: IntervalMismatch) -> None:
        self._counters["rx_interval_mismatch"] += 1
        suppressed = self._may_log("interval", None)
        if suppressed is not None:
            log.warning("VRRP_INTERVAL_MISMATCH advert from %s on %s says %d cs, ours is "
                        "%d cs; Master_Down_Interval from %d cs (%d more since last report)"
                        ": set the same vrrp/advert_interval_ms on both devices",
                        m.src, self.interface, m.advertised_cs,
                        ms_to_cs(self.cfg.advert_interval_ms), m.used_cs, suppressed)

    def _may_log(self, key: object, now: float | None) -> int | None:
        """Rate limit for repeated lines (keepalived logs every bogus packet; a flood
        would fill the log): the first of each kind, then one per _REJECT_LOG_S. Returns
        how many were suppressed since the last line when one is due, else None."""
        assert self._loop is not None
        now = self._loop.time() if now is None else now
        last, suppressed = self._rate_log.get(key, (-_REJECT_LOG_S, 0))
        if now - last >= _REJECT_LOG_S:
            self._rate_log[key] = (now, 0)
            return suppressed
        self._rate_log[key] = (last, suppressed + 1)
        return None

    @staticmethod
    def _safe(fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except (nl.NetlinkFailure, OSError) as e:
            log.warning("VRRP_CLEANUP %s", e)
