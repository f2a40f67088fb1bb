"""The pair policy: who serves each group, which half of a pool this device allocates
from, when a client's ACK waits for the peer, and when evidence from the sync link moves
a group. Events in, actions out: `PairPolicy.handle(event, now) -> list[Action]`.

Rules for this file: pure (no sockets, no clock, no logging); the caller passes `now`,
executes the returned actions in order and feeds back what happens. It is the only
place these decisions are made: the daemon executes, VRRP elects, the sync link
carries, the DHCP server answers for the groups it is told to serve.

Theory of operation
-------------------
A *group* is one VRRP instance (`vrrp/<group>/`) and the client interfaces bound to
it. Each group has its own state here, on VRRP's state and the device's health:

    state    meaning                                       serves its interfaces
    INIT     VRRP initialize (not started, or its link is down)      no
    BACKUP   VRRP backup: the peer (or nobody) is master             no
    ACTIVE   VRRP master and healthy                                  yes
    FAULT    VRRP master but not healthy (an interface of the group   no
             is down, or the lease store cannot write): handed to the peer

Interfaces without a group (a standalone device, or a standalone interface of a pair)
belong to the group STANDALONE (""), always VRRP "master": served while their link is up,
through a store failure too (nobody to hand them to; the packet path withholds every
reply whose lease is not durable).

A group is *healthy* on this device while every interface bound to it has its link and
the lease store writes. Health is told to VRRP (`SetHealth`: an unhealthy master must
not stay the preferred one, or the peer would yield the group straight back), and a
master that turns unhealthy hands the group over at once (`HandOver`: a NOTICE on the
sync link; the peer takes over without waiting for VRRP's timers).

Evidence from the sync link (docs/failover.md):
- the peer hands groups over (its interface or store failed): a BACKUP group that is
  healthy here and ready to serve (holds the peer's sessions) is taken over at once;
- the peer's daemon is gone (the connection closed without BYE and nothing listens on
  its port): every group the peer last said it served is taken over at once, without
  waiting for readiness: there is nobody to sync from;
- silence proves nothing: VRRP's master-down interval decides.

Addresses (docs/sync-protocol.md, pool split): while not in sync with a live peer, new
addresses come only from this device's half of each pool (`SetSplit(half)`), so two
devices that both serve never hand out the same free address; in sync, or with the
peer proven gone, the whole pool (`SetSplit(None)`). In `sync` mode a client's ACK
waits for the peer only while in sync (`SetAckWait`); when VRRP's master-down timer
fired (the peer went silent on the LAN too), waiting ACKs are released at once
(`SuspectPeer`).

Transition table (`TRANSITIONS`: the states each trigger may lead to; a pair not in the
table is a bug of the caller, PolicyError):

    state    trigger                next            what happens
    INIT     vrrp_backup            BACKUP
             vrrp_master            ACTIVE | FAULT  Serve(on) when healthy, else HandOver
             vrrp_init, health, peer_*, sync    INIT (facts remembered)
    BACKUP   vrrp_master            ACTIVE | FAULT  as above
             vrrp_init              INIT
             peer_hands_over        BACKUP          TakeOver if healthy and ready
             peer_gone              BACKUP          TakeOver if healthy and the peer served it
             health, sync, peer_roles, peer_lost    BACKUP
    ACTIVE   vrrp_backup/vrrp_init  BACKUP/INIT     Serve(off)
             health (unhealthy)     FAULT           Serve(off), HandOver
             others                 ACTIVE
    FAULT    health (healthy)       ACTIVE          Serve(on)
             vrrp_backup/vrrp_init  BACKUP/INIT     (the peer took it)
             others                 FAULT
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class PolicyError(RuntimeError):
    """An event the policy cannot receive now: a bug in the caller, not bad input."""


class GroupState(enum.Enum):
    INIT = "init"
    BACKUP = "backup"
    ACTIVE = "active"
    FAULT = "fault"


class Vrrp(enum.Enum):
    """VRRP's state as the policy sees it (vrrp/fsm.State values)."""

    INITIALIZE = "initialize"
    BACKUP = "backup"
    MASTER = "master"


class Sync(enum.Enum):
    """The sync link as the policy sees it (sync/session.State, collapsed)."""

    NONE = "none"  # no sync/ configured: nothing to wait for, nobody to split with
    DOWN = "down"  # configured, no authenticated connection
    SYNCING = "syncing"  # authenticated, a catch-up runs
    IN_SYNC = "in_sync"


class Trigger(enum.Enum):
    VRRP_INIT = "vrrp_init"
    VRRP_BACKUP = "vrrp_backup"
    VRRP_MASTER = "vrrp_master"
    HEALTH = "health"  # an interface link or the store changed
    SYNC = "sync"
    PEER_ROLES = "peer_roles"
    PEER_HANDS_OVER = "peer_hands_over"
    PEER_GONE = "peer_gone"
    PEER_LOST = "peer_lost"


# -- events: past-tense facts --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VrrpChanged:
    group: str
    state: Vrrp
    reason: str = ""  # vrrp/fsm.Reason value ("master_down", "peer_down", ...)


@dataclass(frozen=True, slots=True)
class LinkChanged:
    ifname: str
    up: bool


@dataclass(frozen=True, slots=True)
class StoreChanged:
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class SyncChanged:
    sync: Sync
    ready: bool  # sync link's ready_to_serve: we hold what the peer had


@dataclass(frozen=True, slots=True)
class PeerRoles:
    """The peer's last word on what it serves (a ROLE notice)."""

    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class PeerHandsOver:
    """The peer asks us to take these groups now (its interface or store failed)."""

    groups: frozenset[str]
    why: str


@dataclass(frozen=True, slots=True)
class PeerGone:
    """The sync link proved the peer's daemon gone (EOF/RST without BYE, and a fresh
    connection to its port refused)."""

    why: str


@dataclass(frozen=True, slots=True)
class PeerLost:
    """The connection ended without evidence of the peer's death (BYE, timeout)."""

    why: str


Event = (VrrpChanged | LinkChanged | StoreChanged | SyncChanged | PeerRoles | PeerHandsOver
         | PeerGone | PeerLost)


# -- actions: imperatives ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Serve:
    """Start or stop answering DHCP on the group's interfaces: the datapath's role for
    the group first, then bookkeeping."""

    group: str
    on: bool
    why: str


@dataclass(frozen=True, slots=True)
class Announce:
    """Tell the peer which groups we serve now (ROLE notice)."""

    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class HandOver:
    """Ask the peer to take these groups now."""

    groups: frozenset[str]
    why: str


@dataclass(frozen=True, slots=True)
class TakeOver:
    """VRRP of `group`: become master now (vrrp/fsm.PeerDown)."""

    group: str
    why: str


@dataclass(frozen=True, slots=True)
class SetHealth:
    """VRRP of `group`: advertise a priority low enough to lose the election while
    unhealthy, the configured one when healthy again."""

    group: str
    healthy: bool


@dataclass(frozen=True, slots=True)
class SetGate:
    """VRRP (every group): may preempt / take over voluntarily only when ready."""

    ready: bool


@dataclass(frozen=True, slots=True)
class SetSplit:
    """Allocator: new addresses only from this device's half of each pool (its index),
    or from the whole pool (None)."""

    half: int | None


@dataclass(frozen=True, slots=True)
class SetAckWait:
    """`sync` mode: a client's ACK waits for the peer's durable copy (on) or not."""

    on: bool


@dataclass(frozen=True, slots=True)
class SuspectPeer:
    """Release every ACK that waits for the peer now: it went silent on the LAN too."""


@dataclass(frozen=True, slots=True)
class Note:
    """A line for the log: `msg_id` is stable (docs/failover.md)."""

    msg_id: str
    text: str
    warning: bool = False


Action = (Serve | Announce | HandOver | TakeOver | SetHealth | SetGate | SetSplit | SetAckWait
          | SuspectPeer | Note)


_S = GroupState
TRANSITIONS: dict[tuple[GroupState, Trigger], frozenset[GroupState]] = {
    **{(_S.INIT, t): frozenset({_S.INIT}) for t in Trigger},
    (_S.INIT, Trigger.VRRP_BACKUP): frozenset({_S.BACKUP}),
    (_S.INIT, Trigger.VRRP_MASTER): frozenset({_S.ACTIVE, _S.FAULT}),
    **{(_S.BACKUP, t): frozenset({_S.BACKUP}) for t in Trigger},
    (_S.BACKUP, Trigger.VRRP_MASTER): frozenset({_S.ACTIVE, _S.FAULT}),
    (_S.BACKUP, Trigger.VRRP_INIT): frozenset({_S.INIT}),
    **{(_S.ACTIVE, t): frozenset({_S.ACTIVE}) for t in Trigger},
    (_S.ACTIVE, Trigger.VRRP_BACKUP): frozenset({_S.BACKUP}),
    (_S.ACTIVE, Trigger.VRRP_INIT): frozenset({_S.INIT}),
    (_S.ACTIVE, Trigger.HEALTH): frozenset({_S.ACTIVE, _S.FAULT}),
    **{(_S.FAULT, t): frozenset({_S.FAULT}) for t in Trigger},
    (_S.FAULT, Trigger.VRRP_BACKUP): frozenset({_S.BACKUP}),
    (_S.FAULT, Trigger.VRRP_INIT): frozenset({_S.INIT}),
    (_S.FAULT, Trigger.HEALTH): frozenset({_S.FAULT, _S.ACTIVE}),
}

_VRRP_TRIGGER = {Vrrp.INITIALIZE: Trigger.VRRP_INIT, Vrrp.BACKUP: Trigger.VRRP_BACKUP,
                 Vrrp.MASTER: Trigger.VRRP_MASTER}
_EVENT_TRIGGER: dict[type, Trigger] = {
    LinkChanged: Trigger.HEALTH, StoreChanged: Trigger.HEALTH, SyncChanged: Trigger.SYNC,
    PeerRoles: Trigger.PEER_ROLES, PeerHandsOver: Trigger.PEER_HANDS_OVER,
    PeerGone: Trigger.PEER_GONE, PeerLost: Trigger.PEER_LOST,
}


def trigger_of(event: Event) -> Trigger:
    if isinstance(event, VrrpChanged):
        return _VRRP_TRIGGER[event.state]
    return _EVENT_TRIGGER[type(event)]


# The interfaces bound to no group: always VRRP "master", served while healthy.
STANDALONE = ""


@dataclass(frozen=True, slots=True)
class Layout:
    """What the policy is configured with (built from config.model by the daemon)."""

    # group -> the interfaces bound to it; STANDALONE ("") for those bound to none
    groups: Mapping[str, tuple[str, ...]]
    sync_mode: str | None = None  # "sync" | "async" | None: no sync/ folder
    half: int = 0  # this device's half of each pool while split (sync's node index)

    def interfaces_of(self, group: str) -> tuple[str, ...]:
        return self.groups.get(group, ())


@dataclass
class _Facts:
    """What the policy knows besides each group's state."""

    links_down: set[str] = field(default_factory=set)
    store_ok: bool = True
    sync: Sync = Sync.NONE
    ready: bool = False
    peer_groups: frozenset[str] = frozenset()
    peer_dead: bool = False


class PairPolicy:
    """Who serves, for one device. See the module docstring."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self._state: dict[str, GroupState] = dict.fromkeys(layout.groups, GroupState.INIT)
        self._f = _Facts(sync=Sync.NONE if layout.sync_mode is None else Sync.DOWN)
        self._healthy: dict[str, bool] = {g: True for g in layout.groups}
        self._outputs: tuple[int | None, bool] | None = None  # (split, ack wait) last told

    # -- observation ----------------------------------------------------------------
    def state(self, group: str) -> GroupState:
        return self._state[group]

    @property
    def serving(self) -> frozenset[str]:
        """The groups this device serves now."""
        return frozenset(g for g, s in self._state.items() if s is GroupState.ACTIVE)

    def healthy(self, group: str) -> bool:
        return self._healthy[group]

    @property
    def peer_groups(self) -> frozenset[str]:
        return self._f.peer_groups

    @property
    def peer_dead(self) -> bool:
        return self._f.peer_dead

    @property
    def store_ok(self) -> bool:
        return self._f.store_ok

    def start(self, now: float) -> list[Action]:
        """The actions that set the outputs before any event: the split, the ACK wait,
        the gate, and the standalone interfaces served (they have no election)."""
        actions: list[Action] = []
        self._outputs_changed(actions, force=True)
        if self.layout.sync_mode is not None:
            actions.append(SetGate(self._f.ready))
        if STANDALONE in self._state:
            actions += self.handle(VrrpChanged(STANDALONE, Vrrp.MASTER, "standalone"), now)
        return actions

    def relayout(self, layout: Layout, now: float) -> list[Action]:
        """A reload added or removed groups or interfaces (config.model.ReloadPlan's
        membership). A group removed stops being served (`Serve(off)` first); a group
        added starts INIT, its VRRP instance not started yet (the standalone group is
        served at once, as at start); every group's health is taken again, since its
        interfaces may have changed. The groups that stay keep their state: a reload
        that adds a VLAN moves nothing else."""
        actions: list[Action] = []
        served = self.serving
        for g in [g for g in self._state if g not in layout.groups]:
            if self._state[g] is GroupState.ACTIVE:
                actions.append(Serve(g, False, "removed from the config"))
            del self._state[g], self._healthy[g]
        self.layout = layout
        added = [g for g in layout.groups if g not in self._state]
        for g in added:
            self._state[g] = GroupState.INIT
            self._healthy[g] = True
        known = {i for ifs in layout.groups.values() for i in ifs}
        self._f.links_down &= known
        if self.serving != served and self._f.sync in (Sync.SYNCING, Sync.IN_SYNC):
            actions.append(self._announce())
        # Health again, for every group (a StoreChanged with the same fact: HEALTH).
        actions += self.handle(StoreChanged(self._f.store_ok), now)
        if STANDALONE in added:
            actions += self.handle(VrrpChanged(STANDALONE, Vrrp.MASTER, "standalone"), now)
        return actions

    # -- the one entry point --------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Action]:
        """`now` is unused today (every rule is on facts, none on time) and kept so the
        caller's contract matches the other machines'."""
        del now
        trigger = trigger_of(event)
        f = self._f
        actions: list[Action] = []
        # Facts first: every group's handler sees the device as it is now.
        if isinstance(event, LinkChanged):
            (f.links_down.discard if event.up else f.links_down.add)(event.ifname)
        elif isinstance(event, StoreChanged):
            f.store_ok = event.ok
        elif isinstance(event, SyncChanged):
            was_connected = f.sync in (Sync.SYNCING, Sync.IN_SYNC)
            f.sync, f.ready = event.sync, event.ready
            connected = f.sync in (Sync.SYNCING, Sync.IN_SYNC)
            if connected:
                f.peer_dead = False
            if connected and not was_connected:
                actions.append(self._announce())  # the peer learns at (re)connect
            actions.append(SetGate(f.ready))
        elif isinstance(event, PeerRoles):
            f.peer_groups = event.groups
        elif isinstance(event, PeerGone):
            f.peer_dead = True
        if isinstance(event, VrrpChanged):
            if event.group not in self._state:
                raise PolicyError(f"VRRP group {event.group!r} is not configured")
            groups: Iterable[str] = (event.group,)
            if event.state is Vrrp.MASTER and event.reason == "master_down" and \
                    f.sync is not Sync.NONE:
                actions.append(SuspectPeer())
        else:
            groups = list(self._state)
        served = self.serving
        for g in groups:
            self._group(g, trigger, event, actions)
        if isinstance(event, PeerGone):
            # Its last word no longer holds: it serves nothing now.
            gone, f.peer_groups = f.peer_groups, frozenset()
            actions.append(Note("D049", f"the peer's daemon is gone ({event.why}); it "
                                f"served {', '.join(sorted(gone)) or 'nothing'}", True))
        elif isinstance(event, PeerLost):
            actions.append(Note("D045", f"sync peer lost ({event.why}): VRRP's timers "
                                "decide"))
        if self.serving != served and f.sync in (Sync.SYNCING, Sync.IN_SYNC):
            actions.append(self._announce())
        self._outputs_changed(actions)
        return actions

    # -- per group ------------------------------------------------------------------
    def _group(self, g: str, trigger: Trigger, event: Event, out: list[Action]) -> None:
        old = self._state[g]
        allowed = TRANSITIONS.get((old, trigger))
        if allowed is None:  # pragma: no cover - the table covers every pair
            raise PolicyError(f"{trigger.value} cannot happen in {old.value} ({g})")
        healthy = self._is_healthy(g)
        if healthy != self._healthy[g]:
            self._healthy[g] = healthy
            if g != STANDALONE:
                out.append(SetHealth(g, healthy))
        new = self._next(g, old, trigger, event, healthy, out)
        if new not in allowed:  # pragma: no cover - guards the handlers
            raise PolicyError(f"{old.value} -> {new.value} on {trigger.value} ({g})")
        self._state[g] = new

    def _next(self, g: str, old: GroupState, trigger: Trigger, event: Event, healthy: bool,
              out: list[Action]) -> GroupState:
        if trigger is Trigger.VRRP_INIT or trigger is Trigger.VRRP_BACKUP:
            new = GroupState.INIT if trigger is Trigger.VRRP_INIT else GroupState.BACKUP
            if old is GroupState.ACTIVE:
                out.insert(0, Serve(g, False, f"vrrp {new.value}"))
            return new
        if trigger is Trigger.VRRP_MASTER:
            if old in (GroupState.ACTIVE, GroupState.FAULT):
                return old
            return self._master(g, healthy, out)
        if old is GroupState.BACKUP:
            return self._backup(g, trigger, event, healthy, out)
        if trigger is Trigger.PEER_HANDS_OVER and g in event.groups:  # type: ignore[union-attr]
            out.append(Note("D047", f"the peer hands group {g} over: {event.why}; "  # type: ignore[union-attr]
                                    f"not taking it over: it is {old.value} here"))
        elif trigger is Trigger.PEER_GONE and g in self._f.peer_groups:
            out.append(Note("D047", f"the peer's daemon is gone ({event.why}); not taking "  # type: ignore[union-attr]
                                    f"group {g} over: it is {old.value} here"))
        if old is GroupState.ACTIVE and trigger is Trigger.HEALTH and not healthy:
            out.insert(0, Serve(g, False, self._why_unhealthy(g)))
            self._hand_over(g, out)
            return GroupState.FAULT
        if old is GroupState.FAULT and trigger is Trigger.HEALTH and healthy:
            out.insert(0, Serve(g, True, "healthy again"))
            return GroupState.ACTIVE
        return old

    def _master(self, g: str, healthy: bool, out: list[Action]) -> GroupState:
        if healthy:
            out.insert(0, Serve(g, True, "vrrp master"))
            return GroupState.ACTIVE
        # Master while it cannot serve: stay out of the way and hand the group over.
        self._hand_over(g, out)
        return GroupState.FAULT

    def _hand_over(self, g: str, out: list[Action]) -> None:
        why = self._why_unhealthy(g)
        if g == STANDALONE:
            out.append(Note("D046", f"cannot serve ({why}): answering nobody until it "
                                    "recovers", True))
            return
        out.append(HandOver(frozenset({g}), why))  # the caller logs it (D046), told or not

    def _backup(self, g: str, trigger: Trigger, event: Event, healthy: bool,
                out: list[Action]) -> GroupState:
        f = self._f
        if trigger is Trigger.PEER_HANDS_OVER and g in event.groups:  # type: ignore[union-attr]
            why = f"the peer hands group {g} over: {event.why}"  # type: ignore[union-attr]
            if not healthy:
                out.append(self._cannot_take(g, why))
            elif not f.ready:
                out.append(Note("D048", f"{why}; not taking it: not in sync yet (VRRP's "
                                        "timers decide)", True))
            else:
                out.append(Note("D049", f"{why}: taking over now", True))
                out.append(TakeOver(g, why))
        elif trigger is Trigger.PEER_GONE and g in f.peer_groups:
            why = f"the peer's daemon is gone ({event.why})"  # type: ignore[union-attr]
            if healthy:
                out.append(TakeOver(g, why))
            else:
                out.append(self._cannot_take(g, why))
        return GroupState.BACKUP

    def _cannot_take(self, g: str, why: str) -> Note:
        """D065 when only our store keeps us from taking the group, D048 otherwise."""
        only_store = not self._f.store_ok and not any(
            i in self._f.links_down for i in self.layout.interfaces_of(g))
        return Note("D065" if only_store else "D048",
                    f"{why}; not taking group {g}: {self._why_unhealthy(g)}", True)

    # -- health and outputs ---------------------------------------------------------
    def _announce(self) -> Announce:
        return Announce(frozenset(g for g in self.serving if g != STANDALONE))

    def _is_healthy(self, g: str) -> bool:
        """Every interface of the group has its link, and (a group with a peer to take
        it) the store writes. Interfaces of no group stay served through a store
        failure: there is nobody to hand them to, and the packet path withholds every
        reply whose lease could not be made durable."""
        f = self._f
        if any(i in f.links_down for i in self.layout.interfaces_of(g)):
            return False
        return f.store_ok or g == STANDALONE

    def _why_unhealthy(self, g: str) -> str:
        f = self._f
        down = [i for i in self.layout.interfaces_of(g) if i in f.links_down]
        parts = [f"interface {', '.join(down)} down"] if down else []
        if not f.store_ok and g != STANDALONE:
            parts.append("the lease store cannot write")
        return "; ".join(parts) or "healthy"

    def _outputs_changed(self, out: list[Action], force: bool = False) -> None:
        f = self._f
        if f.sync is Sync.NONE:
            split: int | None = None
        elif f.sync is Sync.IN_SYNC or (f.peer_dead and f.sync is Sync.DOWN):
            split = None
        else:
            split = self.layout.half
        wait = self.layout.sync_mode == "sync" and f.sync is Sync.IN_SYNC
        now = (split, wait)
        if force or now != self._outputs:
            old = self._outputs
            self._outputs = now
            if force or old is None or old[0] != split:
                out.append(SetSplit(split))
            if force or old is None or old[1] != wait:
                out.append(SetAckWait(wait))
