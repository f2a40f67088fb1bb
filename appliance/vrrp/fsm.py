"""VRRPv3 state machine (RFC 5798 §6.4): Initialize, Backup, Master as events in, actions out.

Rules for this file: no sockets, no clock, no asyncio, no logging of packets. The caller
passes `now` (seconds, any monotonic origin) with every event, executes the returned
actions in order and feeds timer expiries back as `TimerFired`. Bad input from the
network comes back as a `Discard(reason, src)` action and changes nothing; an event that
cannot happen in the current state (our bug, e.g. a second `Startup`) raises
`VrrpStateError`.

Theory of operation
-------------------
One instance is one virtual router (VRID) on one interface. The RFC's variables map as:

    Priority                 -> `priority` (effective: configured minus the decrements
                                of tracked links that are down, floored at 1; 1 while
                                the device cannot serve the group, see "Health")
    Advertisement_Interval   -> Params.advert_interval_cs
    Master_Adver_Interval    -> `master_adver_interval_cs`, learned from adverts (§6.4.2)
                                within a bound (see "Forged adverts" below)
    Skew_Time, Master_Down_Interval -> timers.py, from the two above (§6.1)
    Preempt_Mode             -> Params.preempt, further held back by the preempt delay
                                after start-up and by the sync gate (see below)
    Accept_Mode              -> Params.accept, reported in BecomeMaster
    Master_Down_Timer, Adver_Timer -> Timer.MASTER_DOWN, Timer.ADVER

and a third timer, Timer.GARP, repeats the gratuitous ARPs once, garp_repeat_s after
becoming master (keepalived's garp_master_delay).

Transition table (`TRANSITIONS`: the states each trigger may lead to; a pair that is not
in the table is an illegal event for that state):

    state       trigger            next          what happens (§ of RFC 5798)
    Initialize  Startup            Master        Priority 255 and gate open (§6.4.1)
                                   Backup        otherwise: Master_Down_Timer armed (§6.4.1)
    Initialize  Shutdown/Advert/Link/Health/Gate stays; adverts are not looked at
    Backup      Advert             Backup        prio 0 from a trusted router:
                                                 Master_Down_Timer = Skew_Time (§6.4.2);
                                                 prio 0 from anyone else: discarded;
                                                 lower priority, preemption allowed, from
                                                 anyone else: discarded, the timer runs
                                                 on (§6.4.2); otherwise follow the sender:
                                                 learn its interval within the bound,
                                                 re-arm (§6.4.2)
                                   Master        lower priority, preemption allowed, from a
                                                 trusted router: take over at once (the
                                                 RFC and keepalived wait for the
                                                 Master_Down_Timer)
    Backup      Master_Down timer  Master        advert, VIPs, gratuitous ARP (§6.4.2)
    Backup      Shutdown           Initialize    cancel Master_Down_Timer (§6.4.2)
    Backup      Link/Health/Gate   Backup        priority or gate recomputed
    Master      Advert             Master        prio 0: advert at once (§6.4.3);
                                                 lower priority: discarded (§6.4.3)
                                   Backup        higher priority, or equal priority from a
                                                 greater primary address (§6.4.3)
    Master      Adver timer        Master        advert, re-arm (§6.4.3)
    Master      GARP timer         Master        repeat the gratuitous ARPs
    Master      Link/Health        Master        priority changed: advert at once, so a
                                                 backup with preemption takes over
    Master      Gate               Master        nothing: the gate only holds back preemption
    Master      Shutdown           Initialize    advert with priority 0, VIPs removed (§6.4.3)

A timer that is not armed when it fires (cancelled after the event loop queued it) is
ignored before the table is consulted.

The sync gate. `GateChanged(ready=False)` says the device is not in sync with its peer
(DESIGN.md: it "never preempts until it is"). While the gate is closed the node does not
preempt (a lower-priority master is followed like any master) and an address owner
(priority 255) starts in Backup instead of Master. It still becomes master when the
Master_Down_Timer expires -- no master is heard at all -- because a stale server beats
no server, and who actually serves is decided from the VRRP state *and* the sync state
by the daemon. A Master whose gate closes stays Master: closing the gate never causes a
switchover by itself.

Health. `HealthChanged(healthy=False)` says the device cannot serve what this group
decides for (an interface bound to the group is down, or the lease store cannot write;
the pair policy's SetHealth). It is tracking by another name: the effective priority
becomes 1, the lowest that still takes part (0 means "the master stops", §5.2.4), so
the peer wins the election and, with preemption, takes the group at the first advert it
hears -- a Master advertises the new priority at once, as for a tracked link. The
machine does not leave Master by itself: nobody else may be there to take over, and a
master that cannot serve is still the one the LAN can reach. `healthy=True` restores the
configured priority minus the tracked decrements. An owner (255) that is unhealthy
advertises 1 as well, and starts in Backup.

Forged adverts. VRRPv3 has no authentication (RFC 5798 §9): any host on the LAN can send
a well-formed advert. Three rules keep one such packet from doing more than the
configured Master_Down_Interval of harm (docs/vrrp.md has the reasoning and how this
differs from the RFC and from keepalived):

- Trusted routers. An advert that would make a Backup take over sooner -- a lower
  priority it may preempt, or priority 0 -- is acted on only when it comes from the
  master the Backup follows (the source of the last advert it accepted), from anyone
  while it follows none (just started, or its master said it stops), or from the
  configured peer (Params.peer, vrrp/peer). From anyone else a lower priority is
  discarded as §6.4.2 says (the Master_Down_Timer runs on, and when it expires the
  takeover is a preemption) and priority 0 is discarded. Either is a `Discard`.
- The interval bound. The Master_Down_Interval is computed from our own
  Advertisement_Interval unless the last two adverts accepted came from the same router
  with the same interval; then from that interval, as §6.4.2 says. One advert with the
  largest interval (40.95 s) can therefore hold a Backup, or a Master it makes step down
  (§6.4.3), for one configured Master_Down_Interval at most, not for 3 x 40.95 s; one
  advert with a tiny interval cannot make a Backup time out between the real master's
  adverts. A real master with another interval is followed from its second advert on.
  An accepted advert whose interval differs from ours comes with an `IntervalMismatch`
  action (counted and logged by the caller).
- The configured peer filter (vrrp/peer) is applied before this machine: with a peer
  configured, no advert from another source reaches it (packet.check_source).

Every state change is the first action of its list (BecomeMaster / BecomeBackup /
BecomeInitialize), so the caller can flip its datapath before the advert goes out, the
VIPs are added or removed and the gratuitous ARPs are sent.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from appliance.vrrp.packet import PRIORITY_OWNER, PRIORITY_STOP, Advert, Reject, check_group
from appliance.vrrp.timers import cs_to_s, master_down_interval_s, skew_time_s

# "Health": the lowest priority that still takes part in the election (§5.2.4: 0 means
# the master stops), so a device that cannot serve the group loses it to any peer.
PRIORITY_UNHEALTHY = 1


class VrrpStateError(RuntimeError):
    """An event the current state cannot receive: a bug in the caller, not bad input."""


class State(enum.Enum):
    """RFC 5798 §6.4; the values are what the runtime tree's vrrp/state shows."""

    INITIALIZE = "initialize"
    BACKUP = "backup"
    MASTER = "master"


class Timer(enum.Enum):
    MASTER_DOWN = "master_down"  # §6.2 Master_Down_Timer (Backup)
    ADVER = "adver"  # §6.2 Adver_Timer (Master)
    GARP = "garp"  # second batch of gratuitous ARPs (Master)


class Reason(enum.Enum):
    """Why a transition happened; carried by BecomeMaster/BecomeBackup/BecomeInitialize."""

    STARTUP = "startup"  # §6.4.1: not the owner, wait for a master
    OWNER = "owner"  # §6.4.1: priority 255 becomes master at once
    MASTER_DOWN = "master_down"  # §6.4.2: no advert within Master_Down_Interval
    MASTER_STOPPED = "master_stopped"  # §6.4.2: the master sent priority 0, Skew_Time passed
    PREEMPT = "preempt"  # a lower-priority master was heard and preemption is allowed
    # (at once from a trusted router; else when the Master_Down_Timer expires)
    HIGHER_PRIORITY = "higher_priority"  # §6.4.3: a better master was heard
    SHUTDOWN = "shutdown"  # §6.4.2/§6.4.3 Shutdown event
    PEER_DOWN = "peer_down"  # the sync link proved the master gone (not in RFC 5798)
    INTERFACE_DOWN = "interface_down"  # our own VRRP interface lost its link (fault)
    INTERFACE_UP = "interface_up"  # it came back: start again as at Startup


class Trigger(enum.Enum):
    """Event kinds as the transition table sees them (a timer event per timer)."""

    STARTUP = "startup"
    SHUTDOWN = "shutdown"
    ADVERT = "advert"
    MASTER_DOWN_TIMER = "master_down_timer"
    ADVER_TIMER = "adver_timer"
    GARP_TIMER = "garp_timer"
    LINK_CHANGED = "link_changed"
    HEALTH_CHANGED = "health_changed"
    GATE_CHANGED = "gate_changed"
    PEER_DOWN = "peer_down"
    RECONFIGURED = "reconfigured"
    INTERFACE = "interface"


# -- events: past-tense facts --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Startup:
    """§6.4.1 Startup event: the instance is configured and its socket is open."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """§6.4.2/§6.4.3 Shutdown event: the instance is being stopped."""


@dataclass(frozen=True, slots=True)
class AdvertReceived:
    """A VRRPv3 advert that passed packet-level checks (packet.decode_datagram)."""

    src: IPv4Address
    advert: Advert


@dataclass(frozen=True, slots=True)
class TimerFired:
    timer: Timer


@dataclass(frozen=True, slots=True)
class LinkChanged:
    """A tracked (or any) interface went up or down."""

    ifname: str
    up: bool


@dataclass(frozen=True, slots=True)
class GateChanged:
    """The sync gate opened (in sync with the peer) or closed."""

    ready: bool


@dataclass(frozen=True, slots=True)
class HealthChanged:
    """Whether this device can serve the group now (see "Health"): False makes the
    effective priority 1, True restores the configured (and tracked) one."""

    healthy: bool


@dataclass(frozen=True, slots=True)
class PeerDown:
    """Evidence from outside VRRP (the sync link, docs/failover.md) that the master can
    no longer serve: its daemon is gone (connection reset) or its client link is down.
    A Backup acts as if the Master_Down_Timer had fired, without waiting for it."""

    why: str


@dataclass(frozen=True, slots=True)
class PriorityConfigured:
    """The operator changed vrrp/priority and reloaded: a Master advertises the new
    priority at once (so a better backup can preempt now); a Backup uses it from the
    next advert it hears. 255 (owner) is not reachable this way: it needs a restart."""

    priority: int


@dataclass(frozen=True, slots=True)
class InterfaceChanged:
    """The VRRP interface itself lost or regained its link. Down: a Master or Backup
    goes to Initialize (keepalived's FAULT): no adverts, no timers, VIPs removed, so it
    can neither claim nor keep the role on a dead link. Up: as at Startup, Backup with
    the Master_Down_Timer; a Master comes back only through an election (advert, VIPs
    and gratuitous ARPs again, so the LAN learns where the VIP is)."""

    up: bool


Event = (Startup | Shutdown | AdvertReceived | TimerFired | LinkChanged | HealthChanged
         | GateChanged | PeerDown | PriorityConfigured | InterfaceChanged)


# -- actions: imperatives for the caller ---------------------------------------------


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)arm `timer` to fire at `deadline` (same clock as `now`); replaces any earlier."""

    timer: Timer
    deadline: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer: Timer


@dataclass(frozen=True, slots=True)
class SendAdvert:
    advert: Advert


@dataclass(frozen=True, slots=True)
class AddVips:
    addresses: tuple[IPv4Address, ...]


@dataclass(frozen=True, slots=True)
class DelVips:
    addresses: tuple[IPv4Address, ...]


@dataclass(frozen=True, slots=True)
class SendGarp:
    """Announce the VIPs with gratuitous ARP (§6.4.2 "broadcast a gratuitous ARP request");
    how many and how far apart is the caller's configuration."""

    addresses: tuple[IPv4Address, ...]


@dataclass(frozen=True, slots=True)
class BecomeMaster:
    reason: Reason
    priority: int
    accept: bool  # §6.1 Accept_Mode: whether packets to the VIPs are to be accepted


@dataclass(frozen=True, slots=True)
class BecomeBackup:
    reason: Reason
    master: IPv4Address | None  # the master that caused it, if one was heard


@dataclass(frozen=True, slots=True)
class BecomeInitialize:
    reason: Reason


@dataclass(frozen=True, slots=True)
class PriorityChanged:
    old: int
    new: int


@dataclass(frozen=True, slots=True)
class Discard:
    """Drop the received advert and count `reason` (its value is the counter name)."""

    reason: Reject
    src: IPv4Address  # who sent it, for the log line


@dataclass(frozen=True, slots=True)
class IntervalMismatch:
    """An accepted advert announced another interval than ours (keepalived logs
    "advertisement interval mismatch"): count it and log it. `used_cs` is the interval
    the Master_Down_Interval now comes from: ours until the same router has said the same
    twice in a row, then its own."""

    src: IPv4Address
    advertised_cs: int
    used_cs: int


Action = (
    StartTimer | CancelTimer | SendAdvert | AddVips | DelVips | SendGarp | BecomeMaster
    | BecomeBackup | BecomeInitialize | PriorityChanged | Discard | IntervalMismatch
)


TRANSITIONS: dict[tuple[State, Trigger], frozenset[State]] = {
    (State.INITIALIZE, Trigger.STARTUP): frozenset({State.BACKUP, State.MASTER,
                                                    State.INITIALIZE}),
    (State.INITIALIZE, Trigger.SHUTDOWN): frozenset({State.INITIALIZE}),
    (State.INITIALIZE, Trigger.ADVERT): frozenset({State.INITIALIZE}),
    (State.INITIALIZE, Trigger.LINK_CHANGED): frozenset({State.INITIALIZE}),
    (State.INITIALIZE, Trigger.HEALTH_CHANGED): frozenset({State.INITIALIZE}),
    (State.INITIALIZE, Trigger.GATE_CHANGED): frozenset({State.INITIALIZE}),
    (State.INITIALIZE, Trigger.PEER_DOWN): frozenset({State.INITIALIZE}),
    (State.INITIALIZE, Trigger.RECONFIGURED): frozenset({State.INITIALIZE}),
    (State.INITIALIZE, Trigger.INTERFACE): frozenset({State.INITIALIZE, State.BACKUP,
                                                      State.MASTER}),
    (State.BACKUP, Trigger.INTERFACE): frozenset({State.INITIALIZE, State.BACKUP}),
    (State.MASTER, Trigger.INTERFACE): frozenset({State.INITIALIZE, State.MASTER}),
    (State.BACKUP, Trigger.RECONFIGURED): frozenset({State.BACKUP}),
    (State.MASTER, Trigger.RECONFIGURED): frozenset({State.MASTER}),
    (State.BACKUP, Trigger.PEER_DOWN): frozenset({State.MASTER}),
    (State.MASTER, Trigger.PEER_DOWN): frozenset({State.MASTER}),
    (State.BACKUP, Trigger.SHUTDOWN): frozenset({State.INITIALIZE}),
    (State.BACKUP, Trigger.ADVERT): frozenset({State.BACKUP, State.MASTER}),
    (State.BACKUP, Trigger.MASTER_DOWN_TIMER): frozenset({State.MASTER}),
    (State.BACKUP, Trigger.LINK_CHANGED): frozenset({State.BACKUP}),
    (State.BACKUP, Trigger.HEALTH_CHANGED): frozenset({State.BACKUP}),
    (State.BACKUP, Trigger.GATE_CHANGED): frozenset({State.BACKUP}),
    (State.MASTER, Trigger.SHUTDOWN): frozenset({State.INITIALIZE}),
    (State.MASTER, Trigger.ADVERT): frozenset({State.MASTER, State.BACKUP}),
    (State.MASTER, Trigger.ADVER_TIMER): frozenset({State.MASTER}),
    (State.MASTER, Trigger.GARP_TIMER): frozenset({State.MASTER}),
    (State.MASTER, Trigger.LINK_CHANGED): frozenset({State.MASTER}),
    (State.MASTER, Trigger.HEALTH_CHANGED): frozenset({State.MASTER}),
    (State.MASTER, Trigger.GATE_CHANGED): frozenset({State.MASTER}),
}

_TIMER_TRIGGER = {
    Timer.MASTER_DOWN: Trigger.MASTER_DOWN_TIMER,
    Timer.ADVER: Trigger.ADVER_TIMER,
    Timer.GARP: Trigger.GARP_TIMER,
}


def trigger_of(event: Event) -> Trigger:
    if isinstance(event, TimerFired):
        return _TIMER_TRIGGER[event.timer]
    return _EVENT_TRIGGER[type(event)]


_EVENT_TRIGGER: dict[type, Trigger] = {
    Startup: Trigger.STARTUP,
    Shutdown: Trigger.SHUTDOWN,
    AdvertReceived: Trigger.ADVERT,
    LinkChanged: Trigger.LINK_CHANGED,
    HealthChanged: Trigger.HEALTH_CHANGED,
    GateChanged: Trigger.GATE_CHANGED,
    PeerDown: Trigger.PEER_DOWN,
    PriorityConfigured: Trigger.RECONFIGURED,
    InterfaceChanged: Trigger.INTERFACE,
}


@dataclass(frozen=True, slots=True)
class Params:
    """What one instance is configured with (built from config.model.VrrpConfig by the
    service; this module does not import the config package)."""

    vrid: int
    priority: int  # configured, 1..255
    advert_interval_cs: int  # §6.1 Advertisement_Interval
    addresses: tuple[IPv4Address, ...]  # the virtual addresses, in config order
    primary_address: IPv4Address  # ours on the interface: source of adverts, tie-breaker
    preempt: bool = True  # §6.1 Preempt_Mode
    preempt_delay_s: float = 0.0  # no preemption for this long after Startup (keepalived)
    accept: bool = True  # §6.1 Accept_Mode
    track: tuple[tuple[str, int], ...] = ()  # (ifname, decrement while down)
    garp_repeat_s: float = 0.0  # 0: no second batch of gratuitous ARPs
    # vrrp/peer: the other device's address. Trusted like the master we follow (see
    # "Forged adverts"); adverts from other sources never get here (the service drops them).
    peer: IPv4Address | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"VRID {self.vrid} outside 1..255")
        if not 1 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority} outside 1..255")
        if not 1 <= self.advert_interval_cs <= 4095:
            raise ValueError(f"advert interval {self.advert_interval_cs} cs outside 1..4095")
        if not self.addresses:
            raise ValueError("a virtual router needs at least one address")


@dataclass
class _Vars:
    """Mutable per-instance variables (RFC 5798 §6.1/§6.2 plus our bookkeeping)."""

    master_adver_interval_cs: int
    links_down: set[str] = field(default_factory=set)
    healthy: bool = True  # HealthChanged: False makes the effective priority 1
    gate_ready: bool = True
    preempt_after: float = 0.0  # `now` before which preemption is held back
    master: IPv4Address | None = None
    master_priority: int | None = None
    down_reason: Reason = Reason.MASTER_DOWN  # what the armed Master_Down_Timer means
    iface_down: bool = False  # our VRRP interface has no link (Initialize until it returns)
    # (source, interval) of the last advert accepted from a master: a second advert that
    # repeats both confirms the interval (the bound of "Forged adverts")
    last_heard: tuple[IPv4Address, int] | None = None
    # (old master, until): after a takeover on the sync link's evidence, that master's
    # adverts received before `until` were sent before the evidence (Reject.STALE_...)
    stale_from: tuple[IPv4Address, float] | None = None


class VrrpMachine:
    """One VRRPv3 virtual router. `handle(event, now)` returns the actions to execute."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self._state = State.INITIALIZE
        self._v = _Vars(master_adver_interval_cs=params.advert_interval_cs)
        self._timers: dict[Timer, float] = {}
        self._last_adver_deadline = 0.0

    # -- observation ----------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def priority(self) -> int:
        """Effective priority: configured minus the decrements of tracked links that are
        down, floored at 1 (0 is reserved for "master stopping", §5.2.4); 1 while
        unhealthy (see "Health")."""
        if not self._v.healthy:
            return PRIORITY_UNHEALTHY
        down = sum(dec for name, dec in self.params.track if name in self._v.links_down)
        if down == 0:
            return self.params.priority
        return max(1, self.params.priority - down)

    @property
    def master(self) -> IPv4Address | None:
        """The current master as seen from here (ourselves when Master)."""
        if self._state is State.MASTER:
            return self.params.primary_address
        return self._v.master

    @property
    def master_adver_interval_cs(self) -> int:
        return self._v.master_adver_interval_cs

    @property
    def gate_ready(self) -> bool:
        return self._v.gate_ready

    @property
    def healthy(self) -> bool:
        return self._v.healthy

    @property
    def timers(self) -> dict[Timer, float]:
        """Armed timers and their deadlines (a copy)."""
        return dict(self._timers)

    @property
    def skew_time_s(self) -> float:
        return skew_time_s(self.priority, self._v.master_adver_interval_cs)

    @property
    def master_down_interval_s(self) -> float:
        return master_down_interval_s(self.priority, self._v.master_adver_interval_cs)

    # -- the one entry point --------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Action]:
        trigger = trigger_of(event)
        if isinstance(event, TimerFired):
            if event.timer not in self._timers:
                return []  # cancelled after the loop had queued it
            del self._timers[event.timer]
        old = self._state
        allowed = TRANSITIONS.get((old, trigger))
        if allowed is None:
            raise VrrpStateError(f"{trigger.value} cannot happen in state {old.value}")
        if isinstance(event, PriorityConfigured):
            actions = self._reconfigure(event, now)
        elif isinstance(event, InterfaceChanged):
            actions = self._interface(event, now)
        else:
            handler = {
                State.INITIALIZE: self._initialize,
                State.BACKUP: self._backup,
                State.MASTER: self._master,
            }[old]
            actions = handler(event, now)
        if self._state not in allowed:  # pragma: no cover - guards the handlers
            raise VrrpStateError(
                f"{old.value} -> {self._state.value} on {trigger.value} is not in TRANSITIONS"
            )
        return actions

    # -- state handlers -------------------------------------------------------------
    def _initialize(self, event: Event, now: float) -> list[Action]:
        """Initialize: configured but not running (§6.4.1). Left by Startup, for Master
        when we own the addresses (priority 255) and the gate is open, else for Backup.
        Adverts are not looked at here; link and gate changes are remembered."""
        if isinstance(event, Startup):
            self._v.preempt_after = now + self.params.preempt_delay_s
            if self._v.iface_down:
                return []  # no link: wait in Initialize for InterfaceChanged(up)
            if self.priority == PRIORITY_OWNER and self._v.gate_ready:
                return self._to_master(Reason.OWNER, now)
            # §6.4.1: Master_Adver_Interval = Advertisement_Interval, Master_Down_Timer
            # = Master_Down_Interval, transition to Backup.
            self._v.master_adver_interval_cs = self.params.advert_interval_cs
            self._v.last_heard = None
            return self._to_backup(Reason.STARTUP, None, now)
        if isinstance(event, LinkChanged | HealthChanged):
            return self._priority_input(event)
        if isinstance(event, GateChanged):
            self._v.gate_ready = event.ready
        return []

    def _backup(self, event: Event, now: float) -> list[Action]:
        """Backup: monitoring the master (§6.4.2). Left for Master when the
        Master_Down_Timer fires or, with preemption allowed, when a trusted router (the
        master we follow, anyone while we follow none, vrrp/peer) advertises a lower
        priority; for Initialize on Shutdown."""
        if isinstance(event, AdvertReceived):
            return self._backup_advert(event, now)
        if isinstance(event, TimerFired):  # only Master_Down_Timer is armed in Backup
            return self._to_master(self._v.down_reason, now)
        if isinstance(event, PeerDown):
            # The master's adverts already sent (one interval's worth, at most) still
            # say it is better: they must not undo what the evidence decided.
            if self._v.master is not None:
                self._v.stale_from = (self._v.master,
                                      now + self._v.master_adver_interval_cs / 100)
            return self._to_master(Reason.PEER_DOWN, now)
        if isinstance(event, Shutdown):
            return self._to_initialize(Reason.SHUTDOWN)
        if isinstance(event, LinkChanged | HealthChanged):
            return self._priority_input(event)
        if isinstance(event, GateChanged):
            self._v.gate_ready = event.ready
        return []

    def _backup_advert(self, event: AdvertReceived, now: float) -> list[Action]:
        rejected = self._check(event)
        if rejected:
            return rejected
        adv = event.advert
        trusted = self._trusted(event.src)
        if adv.priority == PRIORITY_STOP:
            if not trusted:
                # Not the master we follow: a stray or forged "master stops" would make
                # us take over after Skew_Time while the real master is alive.
                return [Discard(Reject.STOP_NOT_MASTER, event.src)]
            # §6.4.2: "If the Priority in the ADVERTISEMENT is zero, then: Set the
            # Master_Down_Timer to Skew_Time".
            self._v.master = None
            self._v.master_priority = None
            self._v.down_reason = Reason.MASTER_STOPPED
            return [self._start(Timer.MASTER_DOWN, now + self.skew_time_s)]
        if adv.priority < self.priority and self._may_preempt(now):
            if trusted:
                # The master we follow (or our configured peer, or a master when we
                # follow none) is worse than us: take over at once rather than wait up
                # to a Master_Down_Interval, as §6.4.2 would (and keepalived does).
                return self._to_master(Reason.PREEMPT, now)
            # §6.4.2: "Otherwise: Discard the ADVERTISEMENT". The Master_Down_Timer runs
            # on; if it expires, no better master spoke and we preempt.
            self._v.down_reason = Reason.PREEMPT
            return [Discard(Reject.LOWER_PRIORITY, event.src)]
        # §6.4.2: "Set Master_Adver_Interval to Adver Interval contained in the
        # ADVERTISEMENT; Recompute the Master_Down_Interval; Reset the Master_Down_Timer
        # to Master_Down_Interval" -- with the interval bounded (_learn).
        noted = self._learn(event)
        self._v.master = event.src
        self._v.master_priority = adv.priority
        self._v.down_reason = Reason.MASTER_DOWN
        return [self._start(Timer.MASTER_DOWN, now + self.master_down_interval_s), *noted]

    def _master(self, event: Event, now: float) -> list[Action]:
        """Master: forwarding for the virtual router and advertising every
        Advertisement_Interval (§6.4.3). Left for Backup when a better master is heard;
        for Initialize on Shutdown (after a priority-0 advert)."""
        if isinstance(event, AdvertReceived):
            return self._master_advert(event, now)
        if isinstance(event, TimerFired):
            if event.timer is Timer.ADVER:
                # §6.4.3: "If the Adver_Timer fires, then: Send an ADVERTISEMENT; Reset
                # the Adver_Timer to Advertisement_Interval". Scheduled from the planned
                # deadline, not from `now`, so loop latency does not accumulate; after a
                # stall we restart from `now` rather than send a burst.
                return [self._advert(self.priority), self._next_adver(now)]
            return [SendGarp(self.params.addresses)]  # Timer.GARP
        if isinstance(event, Shutdown):
            # §6.4.3: "Cancel the Adver_Timer; Send an ADVERTISEMENT with Priority = 0;
            # Transition to the Initialize state".
            return [
                *self._to_initialize(Reason.SHUTDOWN),
                self._advert(PRIORITY_STOP),
                DelVips(self.params.addresses),
            ]
        if isinstance(event, LinkChanged | HealthChanged):
            actions = self._priority_input(event)
            if actions:  # the priority changed: tell the backups now, not next interval
                actions += [self._advert(self.priority), self._adver_from(now)]
            return actions
        if isinstance(event, GateChanged):
            self._v.gate_ready = event.ready
        return []

    def _master_advert(self, event: AdvertReceived, now: float) -> list[Action]:
        rejected = self._check(event)
        if rejected:
            return rejected
        adv = event.advert
        if adv.priority == PRIORITY_STOP:
            # §6.4.3: "If the Priority in the ADVERTISEMENT is zero, then: Send an
            # ADVERTISEMENT; Reset the Adver_Timer to Advertisement_Interval".
            return [self._advert(self.priority), self._adver_from(now)]
        if adv.priority > self.priority or (
            adv.priority == self.priority and event.src > self.params.primary_address
        ):
            stale = self._v.stale_from
            if stale is not None and stale[0] == event.src and now < stale[1]:
                # Taken over on the sync link's evidence against this very router: its
                # advert was sent before it (docs/failover.md). Not §6.4.3; one interval.
                self._v.stale_from = None
                return [Discard(Reject.STALE_AFTER_EVIDENCE, event.src)]
            # §6.4.3: "Cancel Adver_Timer; Set Master_Adver_Interval to Adver Interval
            # contained in the ADVERTISEMENT; Recompute the Skew_Time; Recompute the
            # Master_Down_Interval; Set Master_Down_Timer to Master_Down_Interval;
            # Transition to the Backup state" -- with the interval bounded (_learn), so
            # one forged advert cannot keep us down for 3 x 40.95 s.
            noted = self._learn(event)
            self._v.master_priority = adv.priority
            return [*self._to_backup(Reason.HIGHER_PRIORITY, event.src, now), *noted]
        # §6.4.3: "Otherwise (i.e., lower priority ...): Discard the ADVERTISEMENT".
        return []

    # -- transitions ----------------------------------------------------------------
    def _to_master(self, reason: Reason, now: float) -> list[Action]:
        # §6.4.1/§6.4.2: "Send an ADVERTISEMENT; Broadcast a gratuitous ARP request ...;
        # Set the Adver_Timer to Advertisement_Interval; Transition to the Master state".
        # The transition goes first so that the datapath serves before the world is told.
        self._state = State.MASTER
        self._v.master_priority = None
        actions: list[Action] = [BecomeMaster(reason, self.priority, self.params.accept)]
        actions += self._cancel(Timer.MASTER_DOWN)
        actions += [
            self._advert(self.priority),
            AddVips(self.params.addresses),
            SendGarp(self.params.addresses),
            self._start(Timer.ADVER, now + self._interval_s),
        ]
        if self.params.garp_repeat_s > 0:
            actions.append(self._start(Timer.GARP, now + self.params.garp_repeat_s))
        return actions

    def _to_backup(self, reason: Reason, master: IPv4Address | None, now: float) -> list[Action]:
        was_master = self._state is State.MASTER
        self._state = State.BACKUP
        self._v.master = master
        self._v.down_reason = Reason.MASTER_DOWN
        actions: list[Action] = [BecomeBackup(reason, master)]
        actions += self._cancel(Timer.ADVER) + self._cancel(Timer.GARP)
        if was_master:
            actions.append(DelVips(self.params.addresses))
        actions.append(self._start(Timer.MASTER_DOWN, now + self.master_down_interval_s))
        return actions

    def _to_initialize(self, reason: Reason) -> list[Action]:
        self._state = State.INITIALIZE
        self._v.master = None
        self._v.master_priority = None
        actions: list[Action] = [BecomeInitialize(reason)]
        for t in list(self._timers):
            actions += self._cancel(t)
        return actions

    # -- helpers --------------------------------------------------------------------
    def _check(self, event: AdvertReceived) -> list[Action]:
        """§7.1 per-instance checks; a non-empty result is the Discard to return."""
        reason = check_group(event.advert, self.params.vrid, self.params.addresses)
        if reason is None and event.src == self.params.primary_address:
            reason = Reject.OWN
        return [Discard(reason, event.src)] if reason is not None else []

    def _trusted(self, src: IPv4Address) -> bool:
        """Whose lower priority or priority 0 we act on at once (see "Forged adverts"):
        the master we follow, anyone while we follow none (just started, or our master
        said it stops: we are about to take over anyway), and the configured peer."""
        return self._v.master is None or src == self._v.master or (
            self.params.peer is not None and src == self.params.peer)

    def _learn(self, event: AdvertReceived) -> list[Action]:
        """Master_Adver_Interval from an accepted advert, within the bound: the
        advertised interval when the previous accepted advert came from the same router
        with the same interval, else our own Advertisement_Interval (see "Forged
        adverts"). Returns the IntervalMismatch to report, if any."""
        ours = self.params.advert_interval_cs
        heard = (event.src, event.advert.max_adver_int_cs)
        confirmed = heard == self._v.last_heard
        self._v.last_heard = heard
        self._v.master_adver_interval_cs = heard[1] if confirmed else ours
        if heard[1] == ours:
            return []
        return [IntervalMismatch(event.src, heard[1], self._v.master_adver_interval_cs)]

    def _may_preempt(self, now: float) -> bool:
        return self.params.preempt and self._v.gate_ready and now >= self._v.preempt_after

    def _interface(self, event: InterfaceChanged, now: float) -> list[Action]:
        if not event.up:
            self._v.iface_down = True
            if self._state is State.MASTER:
                return [*self._to_initialize(Reason.INTERFACE_DOWN),
                        DelVips(self.params.addresses)]
            if self._state is State.BACKUP:
                return self._to_initialize(Reason.INTERFACE_DOWN)
            return []
        was_down, self._v.iface_down = self._v.iface_down, False
        if self._state is State.INITIALIZE and was_down:
            if self.priority == PRIORITY_OWNER and self._v.gate_ready:
                return self._to_master(Reason.INTERFACE_UP, now)
            self._v.master_adver_interval_cs = self.params.advert_interval_cs
            self._v.last_heard = None
            return self._to_backup(Reason.INTERFACE_UP, None, now)
        return []

    def _reconfigure(self, event: PriorityConfigured, now: float) -> list[Action]:
        if not 1 <= event.priority <= 254:
            raise VrrpStateError(f"priority {event.priority} cannot be set live (1..254)")
        old = self.priority
        self.params = replace(self.params, priority=event.priority)
        new = self.priority
        if new == old:
            return []
        actions: list[Action] = [PriorityChanged(old, new)]
        if self._state is State.MASTER:
            actions += [self._advert(new), self._adver_from(now)]
        return actions

    def _priority_input(self, event: LinkChanged | HealthChanged) -> list[Action]:
        """A tracked link or the health changed: the effective priority is recomputed
        (the caller advertises it at once when Master)."""
        old = self.priority
        if isinstance(event, HealthChanged):
            self._v.healthy = event.healthy
        elif all(name != event.ifname for name, _ in self.params.track):
            return []
        elif event.up:
            self._v.links_down.discard(event.ifname)
        else:
            self._v.links_down.add(event.ifname)
        new = self.priority
        return [PriorityChanged(old, new)] if new != old else []

    @property
    def _interval_s(self) -> float:
        return cs_to_s(self.params.advert_interval_cs)

    def _advert(self, priority: int) -> SendAdvert:
        return SendAdvert(Advert(
            vrid=self.params.vrid,
            priority=priority,
            max_adver_int_cs=self.params.advert_interval_cs,
            addresses=self.params.addresses,
        ))

    def _next_adver(self, now: float) -> StartTimer:
        planned = self._last_adver_deadline + self._interval_s
        return self._start(Timer.ADVER, planned if planned > now else now + self._interval_s)

    def _adver_from(self, now: float) -> StartTimer:
        return self._start(Timer.ADVER, now + self._interval_s)

    def _start(self, timer: Timer, deadline: float) -> StartTimer:
        self._timers[timer] = deadline
        if timer is Timer.ADVER:
            self._last_adver_deadline = deadline
        return StartTimer(timer, deadline)

    def _cancel(self, timer: Timer) -> list[Action]:
        if self._timers.pop(timer, None) is None:
            return []
        return [CancelTimer(timer)]
