"""VrrpService: one VRRP group (one VRRPv3 instance) on an asyncio loop, the glue a
daemon uses; `cleanup` removes what crashed groups left behind.

Adapter. It owns its send socket and its share of the interface's receive socket
(transport.py), the kernel side (netlink.py) and one VrrpMachine (fsm.py); it turns
packets, link events, timer expiries, the sync gate and the health into events, and
executes the actions that come back, in order:

    StartTimer/CancelTimer   loop.call_at / Handle.cancel (deadlines are loop.time())
    SendAdvert               transport.send
    AddVips/DelVips          netlink (on the VMAC macvlan when use_vmac), then the
                             service VIPs on their own interfaces
    SendGarp                 garp_count rounds, garp_interval_ms apart, for the VIPs
                             and the service VIPs
    BecomeMaster/Backup/Initialize   on_transition(state, info), synchronously
    Discard                  counters[reason.value] += 1, rate-limited VRRP_RX_REJECT
    IntervalMismatch         counters["rx_interval_mismatch"] += 1, rate-limited log

A group (DESIGN.md, "Many interfaces, several groups") elects on one interface with
the VIPs of that interface in its adverts, and decides for other client interfaces
bound to it (Huawei's mVRRP: one admin group, many service interfaces). Their
addresses are the group's *service VIPs*, (interface, address/prefix) pairs: not in
the adverts (a peer or keepalived sees the group's own VIPs only), added and
announced with the group's own when it becomes master, removed when it leaves.
Several groups may elect on one interface (load-sharing on one LAN): they share its
receive socket (transport.RxHub), and a VRID used twice there is refused at start.

With vrrp/peer set, adverts from any other source are counted (rx_not_peer) and dropped
here, before the state machine (packet.check_source).

The state machine puts the transition first in every list, so `on_transition` runs
before the advert, the VIPs and the gratuitous ARPs when becoming master, and before
anything else when leaving it: the daemon flips its datapath role there.

    svc = VrrpService(cfg, "eth1.100", on_transition, loop, group="ga",
                      service_vips=[("eth1.300", IPv4Interface("203.0.113.1/24"))])
    svc.set_gate(False)        # optional, before start: not in sync yet
    await svc.start()
    ...
    svc.set_gate(True)         # in sync: may preempt
    svc.set_health(False)      # cannot serve the group here: advertise priority 1
    svc.set_service_vips(...)  # reload added or removed a service interface
    await svc.stop()           # priority-0 advert, VIPs and service VIPs removed
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
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
    HealthChanged,
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
from appliance.vrrp.transport import RxHub, VridInUse, VrrpTransport

log = logging.getLogger("appliance.vrrp")

# Counters besides one per Reject reason (their names are Reject values).
COUNTERS = (
    "rx_packets",  # every datagram read from the VRRP socket
    "rx_adverts",  # adverts for our group that reached the state machine unrejected
    "rx_interval_mismatch",  # accepted adverts whose interval is not ours (fsm.py)
    "tx_adverts",
    "tx_errors",  # adverts the kernel refused to send
    "tx_garps",  # gratuitous ARP frames sent (VIPs and service VIPs)
    "tx_garp_errors",  # gratuitous ARP frames the kernel refused (an interface down)
    "became_master",
    "became_backup",
    "priority_changes",
    "link_events",  # tracked links going up or down
    "netlink_errors",  # VIP and service VIP add/remove failures
    "health_changes",  # set_health changed the health (the pair policy's SetHealth)
)

_REJECT_LOG_S = 10.0

# asyncio wakes up to ~1 ms late (the epoll selector rounds its timeout up to whole
# milliseconds), and for the Master_Down_Timer that lateness is failover time: it is
# armed this much early and the rest is slept, blocking the loop at most this long,
# once per takeover. Other timers are not worth blocking for.
_EARLY_S = {Timer.MASTER_DOWN: 0.0015}

TransitionCallback = Callable[[str, dict[str, Any]], None]
ServiceVips = Iterable[tuple[str, IPv4Interface]]


class VrrpStartError(RuntimeError):
    """The instance cannot start (missing interface, no address to send from, a VRID
    used twice on one interface, ...), or set_service_vips names a missing interface."""


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One group as VRRP sees it: its name, its vrrp/<group>/ settings, the interface it
    elects on (its VIPs are cfg.virtual_ips) and its service VIPs. What `cleanup` takes;
    `VrrpService.for_group` builds a service from one."""

    name: str
    cfg: VrrpConfig
    interface: str
    service_vips: tuple[tuple[str, IPv4Interface], ...] = ()


class _Shared:
    """What the groups of one event loop share on the box besides the receive sockets
    (transport.RxHub): the VMAC interface names (vrrp.<vrid> is one name per box, so
    two groups with one VRID on different interfaces cannot both use_vmac) and the
    parent's ARP sysctls the VMAC sets, restored when the last group on it stops."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = \
        weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.vmacs: dict[str, str] = {}  # VMAC interface name -> group
        self.sysctls: dict[tuple[str, str], list[int]] = {}  # (ifname, key) -> [old, users]

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Shared:
        shared = cls._by_loop.get(loop)
        if shared is None:
            shared = cls._by_loop[loop] = cls()
        return shared

    def set_sysctl(self, ifname: str, key: str, value: int) -> bool:
        held = self.sysctls.get((ifname, key))
        if held is not None:
            held[1] += 1
            return True
        old = nl.set_ipv4_conf(ifname, key, value)
        if old is None:
            return False
        self.sysctls[(ifname, key)] = [old, 1]
        return True

    def release_sysctl(self, ifname: str, key: str) -> None:
        held = self.sysctls.get((ifname, key))
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del self.sysctls[(ifname, key)]
            nl.set_ipv4_conf(ifname, key, held[0])


def _pairs(service_vips: ServiceVips) -> tuple[tuple[str, IPv4Interface], ...]:
    """(interface, VIP) pairs in the given order, each once."""
    return tuple(dict.fromkeys((str(i), IPv4Interface(v)) for i, v in service_vips))


def cleanup(groups: Iterable[GroupSpec]) -> list[str]:
    """What crashed groups may have left on the box, removed (`dhcp-hotbackup cleanup`,
    the unit's ExecStopPost): every group's VIPs on its interface, its service VIPs on
    theirs, and its VMAC interface (the VIPs on it go with it). Reads the address table
    once whatever the number of groups and interfaces; an interface that does not exist
    is skipped. Safe to run when nothing is left. Returns one line per removal."""
    netlink = nl.Netlink()
    try:
        wanted: dict[int, list[IPv4Interface]] = {}
        names: dict[int, str] = {}
        owner: dict[tuple[int, IPv4Address], str] = {}
        vmacs: dict[str, str] = {}
        for g in groups:
            for ifname, vips in ((g.interface, g.cfg.virtual_ips),
                                 *((i, (v,)) for i, v in g.service_vips)):
                index = netlink.link_index(ifname)
                if index is None:
                    continue
                names[index] = ifname
                wanted.setdefault(index, []).extend(vips)
                for v in vips:
                    owner.setdefault((index, v.ip), g.name)
            if g.cfg.use_vmac:
                vmacs.setdefault(nl.vmac_ifname(g.cfg.vrid), g.name)
        done = []
        for index, vip in netlink.remove_stale_on(wanted):
            group = owner.get((index, vip.ip), "")
            done.append(f"stale virtual IP {vip} removed from {names[index]}"
                        + (f" (group {group})" if group else ""))
        for name, group in vmacs.items():
            index = netlink.link_index(name)
            if index is not None:
                netlink.delete_link(index)
                done.append(f"virtual MAC interface {name} removed"
                            + (f" (group {group})" if group else ""))
        return done
    finally:
        netlink.close()


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
    """One virtual router (group `group`) on `interface`, driven by `loop`."""

    def __init__(self, cfg: VrrpConfig, interface: str, on_transition: TransitionCallback,
                 loop: asyncio.AbstractEventLoop | None = None, *,
                 on_link: Callable[[str, bool], None] | None = None,
                 watch: tuple[str, ...] = (), group: str = "",
                 service_vips: ServiceVips = ()) -> None:
        self.cfg = cfg
        self.interface = interface
        # The group's name (vrrp/<group>/): in every transition's info, every log line
        # and the runtime tree's path; "" for the single group of a legacy tree.
        self.group = group
        self._who = f"group {group} " if group else ""
        self._on_transition = on_transition
        # Interfaces whose up/down the caller wants to hear about (on_link), besides the
        # tracked ones; only tracked ones change the priority.
        self._on_link = on_link
        self._watch = watch
        self._loop = loop
        self._gate = True
        self._healthy = True
        self._service_vips = _pairs(service_vips)
        self._links: dict[str, tuple[int, bytes]] = {}  # service ifname -> (index, MAC)
        self._service_frames: list[tuple[str, bytes]] = []  # prebuilt gratuitous ARPs
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
        self._vmac_name: str | None = None
        self._sysctls_held: list[str] = []
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

    @property
    def healthy(self) -> bool:
        """The last set_health (True until told otherwise)."""
        return self._healthy

    @property
    def service_vips(self) -> tuple[tuple[str, IPv4Interface], ...]:
        return self._service_vips

    def counters(self) -> dict[str, int]:
        return dict(self._counters)

    def links(self) -> dict[str, bool]:
        """The watched interfaces (tracked, `watch`, our own) and whether each is up, as
        last seen: read at start, then kept by the link events (on_link reports the
        changes only, so a caller seeds its view from here after start())."""
        return self._monitor.states() if self._monitor is not None else {}

    @classmethod
    def for_group(cls, spec: GroupSpec, on_transition: TransitionCallback,
                  loop: asyncio.AbstractEventLoop | None = None, *,
                  on_link: Callable[[str, bool], None] | None = None,
                  watch: tuple[str, ...] = ()) -> VrrpService:
        return cls(spec.cfg, spec.interface, on_transition, loop, on_link=on_link,
                   watch=watch, group=spec.name, service_vips=spec.service_vips)

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
        if not self._healthy:
            self._feed(HealthChanged(False))
        self._feed(Startup())

    def set_gate(self, ready: bool) -> None:
        """Open (in sync with the peer) or close the sync gate; see docs/vrrp.md."""
        self._gate = ready
        if self._machine is not None and not self._stopping:
            self._feed(GateChanged(ready))

    def set_health(self, healthy: bool) -> None:
        """The pair policy's SetHealth: False while this device cannot serve the group
        (an interface bound to it is down, the lease store fails) -- the group
        advertises priority 1, at once when Master, so the peer takes it; True restores
        the configured (and tracked) priority. May be called before start()."""
        if healthy != self._healthy:
            self._counters["health_changes"] += 1
            log.info("VRRP_HEALTH %s%s", self._who,
                     "healthy: configured priority again" if healthy else
                     "cannot serve here: advertising priority 1")
        self._healthy = healthy
        if self._machine is not None and not self._stopping:
            self._feed(HealthChanged(healthy))

    def set_service_vips(self, service_vips: ServiceVips) -> None:
        """Reload added or removed service interfaces: the new (interface, VIP) set.
        While Master the removed ones go and the new ones are added and announced now;
        otherwise a new one found on its interface (a crashed run) is removed. Raises
        VrrpStartError, changing nothing, when an interface does not exist."""
        new = _pairs(service_vips)
        if self._netlink is None or self._stopping:
            self._service_vips = new
            return
        links = self._resolve(new)
        old = self._service_vips
        added = [p for p in new if p not in set(old)]
        removed = [p for p in old if p not in set(new)]
        master = self._machine is not None and self._machine.state is State.MASTER
        if master:
            self._service_op("del", removed)  # with the old links: theirs may be gone
        self._service_vips, self._links = new, links
        self._service_frames = self._frames(new)
        if master:
            self._service_op("add", added)
            self._start_garps((), self._frames(added), cancel=False)
        else:
            self._service_op("del", added)
        log.info("VRRP_SERVICE_VIPS %s%d service VIPs on %d interfaces (%d added, %d "
                 "removed)%s", self._who, len(new), len(links), len(added), len(removed),
                 " while master" if master else "")

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
        # Refusals that concern other groups come before anything changes on the box: a
        # group refused for its VRID must not first remove the other group's VIPs.
        try:
            RxHub.of(self._loop).check(self.interface, self.cfg.vrid)
        except VridInUse as e:
            raise VrrpStartError(str(e)) from None
        vmac = nl.vmac_ifname(self.cfg.vrid)
        shared = _Shared.of(self._loop)
        if self.cfg.use_vmac and vmac in shared.vmacs:
            raise VrrpStartError(
                f"use_vmac: groups {shared.vmacs[vmac] or '(unnamed)'} and "
                f"{self.group or '(unnamed)'} both need the interface {vmac} (VRID "
                f"{self.cfg.vrid}): give one another VRID, or use_vmac 0")
        self._links = self._resolve(self._service_vips)
        wanted: dict[int, list[IPv4Interface]] = {index: list(self.cfg.virtual_ips)}
        for ifname, vip in self._service_vips:
            wanted.setdefault(self._links[ifname][0], []).append(vip)
        stale = netlink.remove_stale_on(wanted)
        if stale:
            names = {i: n for n, (i, _) in self._links.items()} | {index: self.interface}
            log.info("VRRP_STALE_VIPS %sremoved %s left by an earlier run", self._who,
                     ", ".join(f"{v} on {names[i]}" for i, v in stale))
        self._service_frames = self._frames(self._service_vips)
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
            shared.vmacs[vmac] = self.group
            self._vmac_name = vmac
            self._vmac_index = netlink.create_vmac(index, self.cfg.vrid)
            self._vip_index = self._vmac_index
            send_ifname = vmac
            mac = nl.vmac_address(self.cfg.vrid)
            for key, value in (("arp_ignore", 1), ("arp_announce", 2)):
                if shared.set_sysctl(self.interface, key, value):
                    self._sysctls_held.append(key)
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
                                        send_ifname, vrid=self.cfg.vrid, group=self.group)
        try:
            self._transport.open()
        except VridInUse as e:
            self._transport = None
            raise VrrpStartError(str(e)) from None

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
            assert self._loop is not None
            shared = _Shared.of(self._loop)
            for key in self._sysctls_held:
                shared.release_sysctl(self.interface, key)
            self._sysctls_held.clear()
            if self._vmac_name is not None:
                shared.vmacs.pop(self._vmac_name, None)
                self._vmac_name = None
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
            self._service_op("add", self._service_vips)
        elif isinstance(action, DelVips):
            self._vip_op("del", action.addresses)
            self._service_op("del", self._service_vips)
        elif isinstance(action, SendGarp):
            self._start_garps(action.addresses, self._service_frames)
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
            log.info("VRRP_PRIORITY %seffective priority %d -> %d", self._who, action.old,
                     action.new)
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
            "group": self.group,
        }
        info.update(extra)
        log.info("VRRP_TRANSITION %svrid %d -> %s (%s), priority %d, master %s", self._who,
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
                log.warning("VRRP_TX_ERROR %sadvert not sent (%d so far): %s", self._who,
                            n, e)

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
            log.error("VRRP_VIP_ERROR %s%s", self._who, e)

    # -- service VIPs ---------------------------------------------------------------
    def _resolve(self, pairs: Sequence[tuple[str, IPv4Interface]]
                 ) -> dict[str, tuple[int, bytes]]:
        """(index, MAC) of every service interface; VrrpStartError naming a missing one."""
        assert self._netlink is not None
        links: dict[str, tuple[int, bytes]] = {}
        missing: list[str] = []
        for ifname in dict.fromkeys(i for i, _ in pairs):
            index = self._netlink.link_index(ifname)
            if index is None:
                missing.append(ifname)
                continue
            try:
                links[ifname] = (index, self._netlink.link_mac(index))
            except nl.NetlinkFailure as e:
                raise VrrpStartError(f"{self._who}service interface {ifname}: {e}") from e
        if missing:
            raise VrrpStartError(
                f"{self._who}service interface{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} do{'' if len(missing) > 1 else 'es'} not exist")
        return links

    def _frames(self, pairs: Iterable[tuple[str, IPv4Interface]]) -> list[tuple[str, bytes]]:
        """The gratuitous ARP of each service VIP, built once (not per round)."""
        return [(ifname, nl.arp_announcement(self._links[ifname][1], vip.ip))
                for ifname, vip in pairs if ifname in self._links]

    def _service_op(self, op: str, pairs: Sequence[tuple[str, IPv4Interface]]) -> None:
        """Add or remove service VIPs on their interfaces, in a few netlink system calls
        (netlink.change_addresses). A failure is counted, and logged once per call naming
        the first few; the rest go on. An interface re-created since it was looked up (a
        VLAN deleted and added again: its index changed) is looked up again once."""
        if not pairs:
            return
        assert self._netlink is not None
        t0 = time.monotonic()
        add = op == "add"
        names = {}
        for ifname, _ in pairs:
            names[self._links[ifname][0]] = ifname
        failed = self._netlink.change_addresses(
            add, [(self._links[ifname][0], vip) for ifname, vip in pairs])
        retry: list[tuple[int, IPv4Interface]] = []
        errors: list[str] = []
        for index, vip, e in failed:
            ifname = names[index]
            again = self._netlink.link_index(ifname)
            if again is not None and again != index:
                self._links[ifname] = (again, self._links[ifname][1])
                names[again] = ifname
                retry.append((again, vip))
            else:
                errors.append(f"{vip} on {ifname}: {e.strerror}")
        if retry:
            errors += [f"{vip} on {names[i]}: {e.strerror}"
                       for i, vip, e in self._netlink.change_addresses(add, retry)]
        took_ms = (time.monotonic() - t0) * 1000
        if errors:
            self._counters["netlink_errors"] += len(errors)
            log.error("VRRP_VIP_ERROR %s%d service VIPs not %s: %s", self._who, len(errors),
                      "added" if add else "removed", "; ".join(errors[:5]) +
                      (f"; and {len(errors) - 5} more" if len(errors) > 5 else ""))
        log.info("VRRP_SERVICE_VIPS %s%s %d service VIPs in %.1f ms", self._who,
                 "added" if add else "removed", len(pairs) - len(errors), took_ms)

    # -- gratuitous ARP -------------------------------------------------------------
    def _start_garps(self, addresses: tuple[IPv4Address, ...],
                     frames: list[tuple[str, bytes]], cancel: bool = True) -> None:
        """garp_count rounds, garp_interval_ms apart, each the VIPs' and the service
        VIPs' announcements. `cancel`: the rounds of an earlier SendGarp stop (a new
        batch replaces them); False adds rounds for service VIPs added live."""
        assert self._loop is not None
        if cancel:
            self._cancel_garps()
        count = self.cfg.garp_count
        spacing = self.cfg.garp_interval_ms / 1000
        if count <= 0 or not (addresses or frames):
            return
        if spacing <= 0:
            for _ in range(count):
                self._send_garp(addresses, frames)
            return
        self._send_garp(addresses, frames)
        now = self._loop.time()
        self._garp_handles += [
            self._loop.call_at(now + i * spacing, self._send_garp, addresses, frames)
            for i in range(1, count)
        ]

    def _send_garp(self, addresses: tuple[IPv4Address, ...],
                   frames: list[tuple[str, bytes]]) -> None:
        if self._garp is None:
            return
        if addresses:
            self._counters["tx_garps"] += self._garp.send(addresses)
        if frames:
            sent, failed = self._garp.send_frames(frames)
            self._counters["tx_garps"] += sent
            if failed:
                self._counters["tx_garp_errors"] += len(failed)
                if self._may_log("garp", None) is not None:
                    log.warning("VRRP_GARP_ERROR %s%d gratuitous ARPs for service VIPs not "
                                "sent: %s", self._who, len(failed), "; ".join(
                                    f"{i}: {e}" for i, e in failed[:5]))

    def _cancel_garps(self) -> None:
        for handle in self._garp_handles:
            handle.cancel()
        self._garp_handles = []

    def _count_reject(self, reason: Reject, src: IPv4Address | None,
                      now: float | None = None) -> None:
        self._counters[reason.value] += 1
        suppressed = self._may_log(reason, now)
        if suppressed is not None:
            log.warning("VRRP_RX_REJECT %sdropped an advert on %s%s: %s (%d more since "
                        "last report)", self._who, self.interface,
                        f" from {src}" if src else "", reason.value, suppressed)

    def _interval_mismatch(self, m: IntervalMismatch) -> None:
        self._counters["rx_interval_mismatch"] += 1
        suppressed = self._may_log("interval", None)
        if suppressed is not None:
            log.warning("VRRP_INTERVAL_MISMATCH %sadvert from %s on %s says %d cs, ours is "
                        "%d cs; Master_Down_Interval from %d cs (%d more since last report)"
                        ": set the same vrrp/advert_interval_ms on both devices",
                        self._who, m.src, self.interface, m.advertised_cs,
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
