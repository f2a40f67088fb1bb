"""The pair policy (appliance/pair/policy.py): the transition matrix (every group state x
every event), and the rules it owns: who serves, hand-over and take-over on sync-link
evidence, the pool split, when ACKs wait for the peer."""

from __future__ import annotations

import pytest

from appliance.pair.policy import (
    STANDALONE,
    TRANSITIONS,
    Action,
    Announce,
    Event,
    GroupState,
    HandOver,
    Layout,
    LinkChanged,
    PairPolicy,
    PeerGone,
    PeerHandsOver,
    PeerLost,
    PeerRoles,
    PolicyError,
    Serve,
    SetAckWait,
    SetGate,
    SetHealth,
    SetSplit,
    StoreChanged,
    SuspectPeer,
    Sync,
    SyncChanged,
    TakeOver,
    Trigger,
    Vrrp,
    VrrpChanged,
    trigger_of,
)

G, H = "ga", "gb"
LAYOUT = Layout(groups={G: ("eth1.100", "eth1.101"), H: ("eth1.200",)}, sync_mode="sync",
                half=1)


def policy(layout: Layout = LAYOUT) -> PairPolicy:
    p = PairPolicy(layout)
    p.start(0.0)
    return p


def into(p: PairPolicy, state: GroupState, g: str = G) -> None:
    """Drive group `g` into `state` the way the daemon would."""
    if state is GroupState.INIT:
        return
    if state is GroupState.BACKUP:
        p.handle(VrrpChanged(g, Vrrp.BACKUP), 0.0)
    elif state is GroupState.ACTIVE:
        p.handle(VrrpChanged(g, Vrrp.MASTER), 0.0)
    elif state is GroupState.FAULT:
        p.handle(VrrpChanged(g, Vrrp.MASTER), 0.0)
        p.handle(LinkChanged(LAYOUT.groups[g][0], False), 0.0)
    assert p.state(g) is state


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


EVENTS: dict[str, Event] = {
    "vrrp_init": VrrpChanged(G, Vrrp.INITIALIZE),
    "vrrp_backup": VrrpChanged(G, Vrrp.BACKUP),
    "vrrp_master": VrrpChanged(G, Vrrp.MASTER),
    "link_down": LinkChanged("eth1.101", False),
    "link_up": LinkChanged("eth1.100", True),
    "store_failed": StoreChanged(False, "ENOSPC"),
    "sync_in": SyncChanged(Sync.IN_SYNC, True),
    "sync_down": SyncChanged(Sync.DOWN, True),
    "peer_roles": PeerRoles(frozenset({G})),
    "peer_hands_over": PeerHandsOver(frozenset({G}), "its interface eth1.100 is down"),
    "peer_gone": PeerGone("eof, port refused"),
    "peer_lost": PeerLost("bye"),
}


def test_every_trigger_has_an_entry_for_every_state():
    for s in GroupState:
        for t in Trigger:
            assert (s, t) in TRANSITIONS, (s, t)


@pytest.mark.parametrize("state", list(GroupState), ids=lambda s: s.value)
@pytest.mark.parametrize("name", list(EVENTS))
def test_matrix(state: GroupState, name: str):
    p = policy()
    if name == "peer_gone":
        p.handle(PeerRoles(frozenset({G})), 0.0)  # the peer said it served G
    if name == "peer_hands_over":
        p.handle(SyncChanged(Sync.IN_SYNC, True), 0.0)  # ready: holds the peer's sessions
    into(p, state)
    event = EVENTS[name]
    before = p.state(G)
    actions = p.handle(event, 0.0)
    after = p.state(G)
    assert after in TRANSITIONS[(before, trigger_of(event))]
    serve = [a for a in actions if isinstance(a, Serve) and a.group == G]
    # Serving starts or stops exactly when the state enters or leaves ACTIVE, and it is
    # the first action (the datapath flips before anything else is done).
    if (before is GroupState.ACTIVE) != (after is GroupState.ACTIVE):
        assert serve == [Serve(G, after is GroupState.ACTIVE, serve[0].why)]
        assert actions[0] == serve[0]
    else:
        assert serve == []
    takeovers = [a for a in actions if isinstance(a, TakeOver)]
    expect_takeover = before is GroupState.BACKUP and name in ("peer_gone", "peer_hands_over")
    assert bool(takeovers) == expect_takeover
    handovers = [a for a in actions if isinstance(a, HandOver)]
    assert bool(handovers) == (before is GroupState.ACTIVE and
                               name in ("link_down", "store_failed"))


def test_an_unhealthy_group_that_becomes_master_is_handed_over_not_served():
    p = policy()
    p.handle(StoreChanged(False, "EIO"), 0.0)
    actions = p.handle(VrrpChanged(G, Vrrp.MASTER), 0.0)
    assert p.state(G) is GroupState.FAULT
    assert not any(isinstance(a, Serve) for a in actions)
    assert HandOver(frozenset({G}), "the lease store cannot write") in actions
    # Healthy again: it serves (it is still VRRP's master).
    actions = p.handle(StoreChanged(True), 0.0)
    assert actions[0] == Serve(G, True, "healthy again")
    assert SetHealth(G, True) in actions


def test_health_is_told_to_vrrp_for_the_groups_it_concerns_only():
    p = policy()
    actions = p.handle(LinkChanged("eth1.200", False), 0.0)
    assert SetHealth(H, False) in actions and SetHealth(G, False) not in actions
    assert p.healthy(G) and not p.healthy(H)
    actions = p.handle(LinkChanged("eth1.200", True), 0.0)
    assert SetHealth(H, True) in actions


def test_a_link_down_on_one_group_leaves_the_other_served():
    p = policy()
    p.handle(VrrpChanged(G, Vrrp.MASTER), 0.0)
    p.handle(VrrpChanged(H, Vrrp.MASTER), 0.0)
    actions = p.handle(LinkChanged("eth1.200", False), 0.0)
    assert p.serving == frozenset({G})
    assert Serve(H, False, "interface eth1.200 down") in actions
    assert HandOver(frozenset({H}), "interface eth1.200 down") in actions


def test_the_peer_handing_over_is_taken_only_when_ready_and_healthy():
    p = policy()
    into(p, GroupState.BACKUP)
    ask = PeerHandsOver(frozenset({G}), "its link is down")
    assert not any(isinstance(a, TakeOver) for a in p.handle(ask, 0.0))  # not ready yet
    p.handle(SyncChanged(Sync.IN_SYNC, True), 0.0)
    p.handle(LinkChanged("eth1.100", False), 0.0)
    assert not any(isinstance(a, TakeOver) for a in p.handle(ask, 0.0))  # our link is down
    p.handle(LinkChanged("eth1.100", True), 0.0)
    assert TakeOver(G, f"the peer hands group {G} over: its link is down") in \
        p.handle(ask, 0.0)


def test_a_dead_peer_s_groups_are_taken_without_waiting_for_readiness():
    p = policy()
    into(p, GroupState.BACKUP)
    into(p, GroupState.BACKUP, H)
    p.handle(PeerRoles(frozenset({G})), 0.0)
    actions = p.handle(PeerGone("reset"), 0.0)
    assert [a.group for a in actions if isinstance(a, TakeOver)] == [G]
    assert p.peer_groups == frozenset() and p.peer_dead


def test_silence_is_no_evidence():
    p = policy()
    into(p, GroupState.BACKUP)
    p.handle(PeerRoles(frozenset({G})), 0.0)
    actions = p.handle(PeerLost("timeout"), 0.0)
    assert not any(isinstance(a, TakeOver) for a in actions)
    assert p.peer_groups == frozenset({G})


def test_pool_split_and_ack_wait_follow_the_sync_link():
    p = PairPolicy(LAYOUT)
    assert p.start(0.0) == [SetSplit(1), SetAckWait(False), SetGate(False)]
    actions = p.handle(SyncChanged(Sync.SYNCING, False), 0.0)
    assert not any(isinstance(a, SetSplit | SetAckWait) for a in actions)
    actions = p.handle(SyncChanged(Sync.IN_SYNC, True), 0.0)
    assert SetSplit(None) in actions and SetAckWait(True) in actions
    assert SetGate(True) in actions
    actions = p.handle(SyncChanged(Sync.DOWN, True), 0.0)
    assert SetSplit(1) in actions and SetAckWait(False) in actions
    # The peer proven gone: the whole pool is ours until it comes back.
    assert SetSplit(None) in p.handle(PeerGone("eof"), 0.0)
    assert SetSplit(1) in p.handle(SyncChanged(Sync.SYNCING, False), 0.0)


def test_async_mode_never_waits_and_no_sync_never_splits():
    p = PairPolicy(Layout(groups={G: ("eth1",)}, sync_mode="async"))
    p.start(0.0)
    assert SetAckWait(True) not in p.handle(SyncChanged(Sync.IN_SYNC, True), 0.0)
    alone = PairPolicy(Layout(groups={G: ("eth1",)}, sync_mode=None))
    assert alone.start(0.0) == [SetSplit(None), SetAckWait(False)]


def test_master_down_suspects_the_peer():
    p = policy()
    into(p, GroupState.BACKUP)
    assert SuspectPeer() in p.handle(VrrpChanged(G, Vrrp.MASTER, "master_down"), 0.0)
    p2 = policy()
    into(p2, GroupState.BACKUP)
    assert SuspectPeer() not in p2.handle(VrrpChanged(G, Vrrp.MASTER, "preempt"), 0.0)


def test_the_peer_learns_what_we_serve_at_connect_and_on_every_change():
    p = policy()
    p.handle(VrrpChanged(G, Vrrp.MASTER), 0.0)
    actions = p.handle(SyncChanged(Sync.SYNCING, False), 0.0)
    assert Announce(frozenset({G})) in actions
    actions = p.handle(VrrpChanged(H, Vrrp.MASTER), 0.0)
    assert Announce(frozenset({G, H})) in actions
    actions = p.handle(VrrpChanged(G, Vrrp.BACKUP), 0.0)
    assert Announce(frozenset({H})) in actions


def test_standalone_interfaces_are_served_from_the_start_and_through_a_store_failure():
    p = PairPolicy(Layout(groups={STANDALONE: ("eth1",)}))
    actions = p.start(0.0)
    assert Serve(STANDALONE, True, "vrrp master") in actions
    assert p.serving == frozenset({STANDALONE})
    # Nobody to hand them to: still served (the packet path withholds what it cannot
    # make durable).
    assert p.handle(StoreChanged(False, "ENOSPC"), 0.0) == []
    assert p.serving == frozenset({STANDALONE})
    actions = p.handle(LinkChanged("eth1", False), 0.0)
    assert actions[0] == Serve(STANDALONE, False, "interface eth1 down")
    assert not any(isinstance(a, HandOver | SetHealth | Announce) for a in actions)
    assert p.handle(LinkChanged("eth1", True), 0.0)[0] == \
        Serve(STANDALONE, True, "healthy again")


def test_an_unknown_group_is_a_bug_of_the_caller():
    with pytest.raises(PolicyError):
        policy().handle(VrrpChanged("nope", Vrrp.MASTER), 0.0)


def test_a_reload_adds_and_removes_groups_without_touching_the_others():
    p = policy()
    p.handle(VrrpChanged(G, Vrrp.MASTER), 0.0)
    p.handle(VrrpChanged(H, Vrrp.MASTER), 0.0)
    p.handle(SyncChanged(Sync.IN_SYNC, True), 0.0)
    assert p.serving == {G, H}
    # H removed, a group K and a standalone interface added; G keeps its state
    acts = p.relayout(Layout(groups={G: ("eth1.100",), "gk": ("eth1.300",),
                                     STANDALONE: ("eth9",)}, sync_mode="sync", half=1), 0.0)
    assert acts[0] == Serve(H, False, "removed from the config")
    assert Announce(frozenset({G})) in acts
    assert Serve(STANDALONE, True, "vrrp master") in acts
    assert not any(isinstance(a, Serve) and a.group == G for a in acts)
    assert p.serving == {G, STANDALONE}
    assert p.state("gk") is GroupState.INIT
    # the new group follows its VRRP instance like any other
    assert Serve("gk", True, "vrrp master") in p.handle(VrrpChanged("gk", Vrrp.MASTER), 0.0)
    with pytest.raises(PolicyError):
        p.handle(VrrpChanged(H, Vrrp.BACKUP), 0.0)


def test_a_reload_forgets_the_links_of_interfaces_it_removed():
    p = policy()
    p.handle(VrrpChanged(G, Vrrp.MASTER), 0.0)
    p.handle(LinkChanged("eth1.101", False), 0.0)
    assert p.state(G) is GroupState.FAULT
    # eth1.101 leaves G: G is healthy again and served
    acts = p.relayout(Layout(groups={G: ("eth1.100",), H: ("eth1.200",)}, sync_mode="sync",
                             half=1), 0.0)
    assert Serve(G, True, "healthy again") in acts and SetHealth(G, True) in acts
    assert p.state(G) is GroupState.ACTIVE
