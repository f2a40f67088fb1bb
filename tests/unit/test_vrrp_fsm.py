"""VRRPv3 state machine and timers against RFC 5798 §6: the transition matrix (every state
x every event), the advert rules (state x priority x sender), timer arithmetic,
preemption, priority 0, tracking, the sync gate, forged adverts (the interval bound,
trusted routers), and two-router elections run on a simulated clock."""

from __future__ import annotations

import heapq
from dataclasses import replace
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vrrp.fsm import (
    TRANSITIONS,
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
    Reason,
    SendAdvert,
    SendGarp,
    Shutdown,
    StartTimer,
    Startup,
    State,
    Timer,
    TimerFired,
    Trigger,
    VrrpMachine,
    VrrpStateError,
    trigger_of,
)
from appliance.vrrp.packet import Advert, Reject
from appliance.vrrp.timers import (
    master_down_interval_cs,
    master_down_interval_s,
    ms_to_cs,
    skew_time_cs,
    skew_time_s,
)

ME = IPv4Address("192.0.2.2")
LOWER_IP = IPv4Address("192.0.2.1")
HIGHER_IP = IPv4Address("192.0.2.3")
STRANGER = IPv4Address("192.0.2.250")  # a third host on the LAN: never heard before
VIP = IPv4Address("192.0.2.100")
VIPS = (VIP,)


def params(**kw: object) -> Params:
    base = Params(vrid=51, priority=100, advert_interval_cs=100, addresses=VIPS,
                  primary_address=ME, preempt=True, garp_repeat_s=5.0,
                  track=(("eth2", 30), ("eth3", 90)))
    return replace(base, **kw)  # type: ignore[arg-type]


def advert(priority: int, interval_cs: int = 100, vrid: int = 51,
           addresses: tuple[IPv4Address, ...] = VIPS) -> Advert:
    return Advert(vrid=vrid, priority=priority, max_adver_int_cs=interval_cs,
                  addresses=addresses)


def rx(priority: int, src: IPv4Address = LOWER_IP, **kw: object) -> AdvertReceived:
    return AdvertReceived(src, advert(priority, **kw))  # type: ignore[arg-type]


def backup(now: float = 0.0, **kw: object) -> VrrpMachine:
    m = VrrpMachine(params(**kw))
    m.handle(Startup(), now)
    assert m.state is State.BACKUP
    return m


def following(master: IPv4Address = LOWER_IP, prio: int = 200, now: float = 0.0,
              **kw: object) -> VrrpMachine:
    """A Backup that has accepted one advert (at its own interval) from `master`."""
    m = backup(now, **kw)
    m.handle(AdvertReceived(master, advert(prio, interval_cs=m.params.advert_interval_cs)),
             now)
    assert m.master == master
    return m


def master(now: float = 0.0, **kw: object) -> VrrpMachine:
    m = backup(now, **kw)
    m.handle(TimerFired(Timer.MASTER_DOWN), now + m.master_down_interval_s)
    assert m.state is State.MASTER
    return m


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


def sent_priorities(actions: list[Action]) -> list[int]:
    return [a.advert.priority for a in actions if isinstance(a, SendAdvert)]


# -- timers (RFC 5798 §6.1) ------------------------------------------------------------


def test_skew_and_master_down_interval() -> None:
    # Skew_Time = ((256 - Priority) * Master_Adver_Interval) / 256
    assert skew_time_cs(100, 100) == 156 * 100 / 256 == 60.9375
    assert skew_time_cs(255, 100) == 100 / 256
    assert skew_time_cs(1, 1) == 255 / 256
    # Master_Down_Interval = (3 * Master_Adver_Interval) + Skew_Time
    assert master_down_interval_cs(100, 100) == 360.9375
    assert master_down_interval_s(100, 100) == pytest.approx(3.609375)
    assert skew_time_s(150, 10) == pytest.approx(0.0414, abs=1e-4)
    assert master_down_interval_s(150, 1) == pytest.approx(0.0341, abs=1e-4)


def test_higher_priority_times_out_first() -> None:
    for interval in (1, 10, 100, 4095):
        downs = [master_down_interval_cs(p, interval) for p in range(1, 256)]
        assert downs == sorted(downs, reverse=True)
        assert all(3 * interval < d < 4 * interval for d in downs)


def test_ms_to_cs() -> None:
    assert ms_to_cs(10) == 1 and ms_to_cs(100) == 10 and ms_to_cs(1000) == 100
    assert ms_to_cs(40950) == 4095 and ms_to_cs(5) == 1


# -- the transition matrix: every state x every event ----------------------------------


def _in_state(state: State) -> VrrpMachine:
    if state is State.INITIALIZE:
        return VrrpMachine(params())
    return backup() if state is State.BACKUP else master()


SAMPLE_EVENTS: list[Event] = [
    Startup(),
    Shutdown(),
    rx(0), rx(50), rx(100, LOWER_IP), rx(100, HIGHER_IP), rx(200),
    rx(0, STRANGER), rx(50, STRANGER), rx(255, STRANGER, interval_cs=4095),
    rx(255, STRANGER, interval_cs=1), rx(200, interval_cs=50),
    rx(200, vrid=52), rx(200, addresses=(HIGHER_IP,)), rx(200, src=ME),
    TimerFired(Timer.MASTER_DOWN), TimerFired(Timer.ADVER), TimerFired(Timer.GARP),
    LinkChanged("eth2", False), LinkChanged("eth2", True), LinkChanged("other", False),
    HealthChanged(False), HealthChanged(True),
    GateChanged(False), GateChanged(True),
    PeerDown("peer reset"),
    PriorityConfigured(90), PriorityConfigured(200),
    InterfaceChanged(False), InterfaceChanged(True),
]


def test_sample_events_cover_every_trigger() -> None:
    assert {trigger_of(e) for e in SAMPLE_EVENTS} == set(Trigger)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
@pytest.mark.parametrize("event", SAMPLE_EVENTS, ids=repr)
def test_transition_matrix(state: State, event: Event) -> None:
    m = _in_state(state)
    trigger = trigger_of(event)
    allowed = TRANSITIONS.get((state, trigger))
    if isinstance(event, TimerFired) and event.timer not in m.timers:
        # a timer that is not armed (cancelled after the loop queued it) is a no-op
        assert m.handle(event, 1.0) == []
        assert m.state is state
        return
    if allowed is None:
        with pytest.raises(VrrpStateError):
            m.handle(event, 1.0)
        assert m.state is state
        return
    actions = m.handle(event, 1.0)
    assert m.state in allowed
    if m.state is not state:
        # the transition is announced first, so the daemon flips its datapath first
        assert isinstance(actions[0], BecomeMaster | BecomeBackup | BecomeInitialize)
    else:
        assert not any(isinstance(a, BecomeMaster | BecomeBackup | BecomeInitialize)
                       for a in actions)


@pytest.mark.parametrize("event", [e for e in SAMPLE_EVENTS if isinstance(e, AdvertReceived)],
                         ids=repr)
def test_transition_matrix_backup_following_a_master(event: AdvertReceived) -> None:
    """The adverts again, for a Backup that already follows LOWER_IP (trusted)."""
    m = following(LOWER_IP)
    actions = m.handle(event, 1.0)
    assert m.state in TRANSITIONS[(State.BACKUP, Trigger.ADVERT)]
    if m.state is State.MASTER:
        assert isinstance(actions[0], BecomeMaster)


def test_table_matches_armed_timers() -> None:
    """Whatever a state can arm, the table lets it fire there."""
    assert _in_state(State.INITIALIZE).timers == {}
    assert set(_in_state(State.BACKUP).timers) == {Timer.MASTER_DOWN}
    assert set(_in_state(State.MASTER).timers) == {Timer.ADVER, Timer.GARP}
    for state, timers in ((State.BACKUP, [Timer.MASTER_DOWN]),
                          (State.MASTER, [Timer.ADVER, Timer.GARP])):
        for t in timers:
            assert (state, trigger_of(TimerFired(t))) in TRANSITIONS


def test_second_startup_is_our_bug() -> None:
    with pytest.raises(VrrpStateError):
        backup().handle(Startup(), 1.0)


events = st.one_of(
    st.just(Shutdown()),
    st.builds(rx, st.sampled_from([0, 1, 99, 100, 101, 254, 255]),
              st.sampled_from([LOWER_IP, ME, HIGHER_IP, STRANGER]),
              interval_cs=st.sampled_from([1, 10, 100, 4095]),
              vrid=st.sampled_from([51, 51, 51, 52])),
    st.builds(LinkChanged, st.sampled_from(["eth2", "eth3", "eth9"]), st.booleans()),
    st.builds(GateChanged, st.booleans()),
    st.builds(HealthChanged, st.booleans()),
    st.builds(PeerDown, st.just("sync evidence")),
)


def _check_invariants(m: VrrpMachine, now: float) -> None:
    # timers armed match the state (§6.4: Backup runs the Master_Down_Timer, Master
    # runs the Adver_Timer)
    if m.state is State.BACKUP:
        assert set(m.timers) == {Timer.MASTER_DOWN}
    elif m.state is State.MASTER:
        assert Timer.ADVER in m.timers and Timer.MASTER_DOWN not in m.timers
    else:
        assert m.timers == {}
    assert all(d >= now for d in m.timers.values())  # never armed in the past
    assert 1 <= m.priority <= 255
    if not m.healthy:
        assert m.priority == 1  # an unhealthy device loses every election it can


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(events, st.floats(0, 5)), max_size=40),
       st.integers(1, 255), st.booleans(), st.floats(0, 3),
       st.sampled_from([None, LOWER_IP]))
def test_random_event_sequences_keep_invariants(
        seq: list[tuple[Event, float]], prio: int, preempt: bool, delay: float,
        peer: IPv4Address | None) -> None:
    """Random traffic, link and gate changes, with timers firing as an event loop would."""
    m = VrrpMachine(params(priority=prio, preempt=preempt, preempt_delay_s=delay,
                           peer=peer))
    now = 0.0
    m.handle(Startup(), now)
    for event, dt in seq:
        target = now + dt
        while m.timers and min(m.timers.values()) <= target:
            timer, deadline = min(m.timers.items(), key=lambda kv: kv[1])
            now = deadline
            m.handle(TimerFired(timer), now)
            _check_invariants(m, now)
        now = target
        before = m.state
        actions = m.handle(event, now)
        _check_invariants(m, now)
        # a discarded advert changes nothing
        if any(isinstance(a, Discard) for a in actions):
            assert actions == [a for a in actions if isinstance(a, Discard)]
            assert m.state is before
        if isinstance(event, Shutdown):
            assert m.state is State.INITIALIZE
            m.handle(Startup(), now)


# -- Initialize (§6.4.1) ---------------------------------------------------------------


def test_startup_non_owner_goes_backup_with_master_down_timer() -> None:
    m = VrrpMachine(params(priority=100))
    actions = m.handle(Startup(), 10.0)
    assert actions == [BecomeBackup(Reason.STARTUP, None),
                       StartTimer(Timer.MASTER_DOWN, 10.0 + 3.609375)]
    assert m.master is None


def test_startup_owner_goes_master_at_once() -> None:
    m = VrrpMachine(params(priority=255))
    actions = m.handle(Startup(), 10.0)
    assert m.state is State.MASTER
    assert actions == [
        BecomeMaster(Reason.OWNER, 255, True),
        SendAdvert(advert(255)),
        AddVips(VIPS),
        SendGarp(VIPS),
        StartTimer(Timer.ADVER, 11.0),
        StartTimer(Timer.GARP, 15.0),
    ]


def test_initialize_ignores_adverts_and_remembers_links() -> None:
    m = VrrpMachine(params(priority=100))
    assert m.handle(rx(200), 0.0) == []
    assert m.handle(LinkChanged("eth2", False), 0.0) == [PriorityChanged(100, 70)]
    m.handle(Startup(), 0.0)
    assert m.priority == 70


# -- Backup (§6.4.2) -------------------------------------------------------------------


def test_master_down_timer_makes_master() -> None:
    m = backup(0.0)
    actions = m.handle(TimerFired(Timer.MASTER_DOWN), 3.5)
    assert actions == [
        BecomeMaster(Reason.MASTER_DOWN, 100, True),
        SendAdvert(advert(100)),
        AddVips(VIPS),
        SendGarp(VIPS),
        StartTimer(Timer.ADVER, 4.5),
        StartTimer(Timer.GARP, 8.5),
    ]
    assert m.master == ME


def test_backup_learns_master_adver_interval_from_the_second_advert() -> None:
    """§6.4.2: Master_Adver_Interval comes from the advert and Master_Down_Interval
    follows -- once the same master has said it twice in a row; the first advert arms the
    timer from our own interval (the bound against forged adverts)."""
    m = backup(0.0, advert_interval_cs=100)
    actions = m.handle(rx(200, interval_cs=10), 1.0)
    assert m.master_adver_interval_cs == 100
    assert actions == [StartTimer(Timer.MASTER_DOWN, 1.0 + 3.609375),
                       IntervalMismatch(LOWER_IP, 10, 100)]
    assert m.master == LOWER_IP
    actions = m.handle(rx(200, interval_cs=10), 1.1)
    assert m.master_adver_interval_cs == 10
    assert actions == [StartTimer(Timer.MASTER_DOWN, pytest.approx(1.1 + 0.3609375)),
                       IntervalMismatch(LOWER_IP, 10, 10)]
    # the same interval as ours: nothing to report
    assert m.handle(rx(200, interval_cs=100), 1.2) == [
        StartTimer(Timer.MASTER_DOWN, 1.2 + 3.609375)]


def test_backup_resets_master_down_on_each_advert() -> None:
    m = backup(0.0)
    for t in (1.0, 2.0, 3.0):
        assert m.handle(rx(200), t) == [StartTimer(Timer.MASTER_DOWN, t + 3.609375)]
    assert m.state is State.BACKUP


def test_backup_priority_zero_sets_master_down_to_skew() -> None:
    m = backup(0.0)
    m.handle(rx(200), 1.0)
    actions = m.handle(rx(0), 2.0)
    assert actions == [StartTimer(Timer.MASTER_DOWN, 2.0 + 0.609375)]
    assert m.master is None
    actions = m.handle(TimerFired(Timer.MASTER_DOWN), 2.61)
    assert actions[0] == BecomeMaster(Reason.MASTER_STOPPED, 100, True)


def test_priority_zero_from_a_router_we_do_not_follow_is_discarded() -> None:
    """A stray or forged "master stops" must not make us take over after Skew_Time
    while the master we follow is alive."""
    m = following(LOWER_IP)
    timers = m.timers
    assert m.handle(rx(0, STRANGER), 1.0) == [Discard(Reject.STOP_NOT_MASTER, STRANGER)]
    assert m.timers == timers and m.master == LOWER_IP
    m = backup(0.0)  # nobody followed yet: we are waiting for a master anyway
    assert m.handle(rx(0), 1.0) == [StartTimer(Timer.MASTER_DOWN, 1.0 + 0.609375)]


def test_backup_equal_priority_never_preempts() -> None:
    m = backup(0.0)
    assert m.handle(rx(100, LOWER_IP), 1.0) == [StartTimer(Timer.MASTER_DOWN, 4.609375)]
    assert m.state is State.BACKUP


def test_preempt_lower_priority_master_we_follow_at_once() -> None:
    """The master we follow advertises a priority below ours (its tracked link went
    down, or ours came back): we take over at once."""
    m = following(LOWER_IP, 200, priority=150)
    actions = m.handle(rx(100), 1.0)
    assert m.state is State.MASTER
    assert actions[0] == BecomeMaster(Reason.PREEMPT, 150, True)
    assert CancelTimer(Timer.MASTER_DOWN) in actions
    assert sent_priorities(actions) == [150]


def test_lower_priority_from_a_router_we_do_not_follow_waits_for_the_timer() -> None:
    """§6.4.2: "Otherwise: Discard the ADVERTISEMENT" -- the Master_Down_Timer runs on,
    and when it expires (the master we followed said nothing more) we take over as a
    preemption of the lower one."""
    m = following(LOWER_IP, 200, priority=150)
    deadline = m.timers[Timer.MASTER_DOWN]
    assert m.handle(rx(100, STRANGER), 1.0) == [Discard(Reject.LOWER_PRIORITY, STRANGER)]
    assert m.handle(rx(100, STRANGER), 2.0) == [Discard(Reject.LOWER_PRIORITY, STRANGER)]
    assert m.state is State.BACKUP and m.timers == {Timer.MASTER_DOWN: deadline}
    assert m.master == LOWER_IP
    actions = m.handle(TimerFired(Timer.MASTER_DOWN), deadline)
    assert actions[0] == BecomeMaster(Reason.PREEMPT, 150, True)


def test_a_backup_that_follows_nobody_preempts_the_first_lower_master_it_hears() -> None:
    """Just started (or its master said it stops): nobody is followed, so a lower
    priority is a master worse than us, and we take the role at once."""
    m = backup(0.0, priority=150)
    assert m.handle(rx(100, STRANGER), 1.0)[0] == BecomeMaster(Reason.PREEMPT, 150, True)


def test_forged_lower_priority_does_not_move_a_backup() -> None:
    m = following(LOWER_IP, 200, priority=150)
    timers = m.timers
    assert m.handle(rx(1, STRANGER), 1.0) == [Discard(Reject.LOWER_PRIORITY, STRANGER)]
    assert m.state is State.BACKUP and m.timers == timers and m.master == LOWER_IP
    # the real master's next advert: followed as before, and the timer means master down
    m.handle(rx(200), 1.5)
    assert m.handle(TimerFired(Timer.MASTER_DOWN), m.timers[Timer.MASTER_DOWN])[0] == \
        BecomeMaster(Reason.MASTER_DOWN, 150, True)


def test_configured_peer_is_trusted_while_another_router_is_followed() -> None:
    """vrrp/peer: the peer's lower priority preempts at once and its priority 0 cuts the
    wait to Skew_Time, though we follow another master (a third router, or the peer
    behind a spoofed address); anyone else is not trusted (the service drops them
    before the machine sees them; this is the rule behind it)."""
    m = following(HIGHER_IP, 200, priority=150, peer=LOWER_IP)
    assert m.handle(rx(100), 1.0)[0] == BecomeMaster(Reason.PREEMPT, 150, True)
    m = following(HIGHER_IP, 200, priority=100, peer=LOWER_IP)
    assert m.handle(rx(0), 1.0) == [StartTimer(Timer.MASTER_DOWN, 1.0 + 0.609375)]
    m = following(HIGHER_IP, 200, priority=150, peer=LOWER_IP)
    assert m.handle(rx(100, STRANGER), 1.0) == [Discard(Reject.LOWER_PRIORITY, STRANGER)]


def test_no_preempt_follows_lower_priority_master() -> None:
    m = backup(0.0, priority=150, preempt=False)
    assert m.handle(rx(100), 1.0) == [
        StartTimer(Timer.MASTER_DOWN, pytest.approx(1.0 + 3 + 106 / 256))]
    assert m.state is State.BACKUP and m.master == LOWER_IP


def test_preempt_delay_holds_preemption_after_startup() -> None:
    m = backup(0.0, priority=150, preempt_delay_s=2.0)
    for t in (0.5, 1.0, 1.999):
        m.handle(rx(100), t)
        assert m.state is State.BACKUP
    m.handle(rx(100), 2.0)
    assert m.state is State.MASTER


def test_preempt_delay_does_not_hold_master_down() -> None:
    m = backup(0.0, priority=150, preempt_delay_s=60.0)
    m.handle(TimerFired(Timer.MASTER_DOWN), 3.5)
    assert m.state is State.MASTER


@pytest.mark.parametrize("bad,reason", [
    (rx(200, vrid=52), Reject.OTHER_VRID),
    (rx(200, addresses=(HIGHER_IP,)), Reject.ADDR_MISMATCH),
    (rx(200, addresses=()), Reject.ADDR_MISMATCH),
    (rx(200, src=ME), Reject.OWN),
])
@pytest.mark.parametrize("state", [State.BACKUP, State.MASTER], ids=lambda s: s.value)
def test_bad_adverts_are_discarded_without_state_change(
        bad: AdvertReceived, reason: Reject, state: State) -> None:
    m = _in_state(state)
    timers, prio, mst = m.timers, m.priority, m.master
    assert m.handle(bad, 1.0) == [Discard(reason, bad.src)]
    assert (m.state, m.timers, m.priority, m.master) == (state, timers, prio, mst)


# -- the advert rules: state x sender x priority x preemption -----------------------------

PEER_IP = IPv4Address("192.0.2.4")  # vrrp/peer in this table

# (state, sender, advert priority (ours is 150), preemption allowed, expected outcome)
# sender: "followed" = the master this Backup follows (LOWER_IP, heard at 200 first),
# "peer" = vrrp/peer, "stranger" = a third host, "first" = a third host heard by a
# Backup that follows nobody yet (just started). Outcomes: "skew" (Master_Down_Timer =
# Skew_Time), "preempt" (Master at once), "follow" (sender becomes our master, timer
# re-armed), "advert" (a Master answers at once), "ignore" (nothing), "step down"
# (Master -> Backup), or the Reject of the Discard.
ADVERT_RULES = [
    (State.BACKUP, "followed", 0, True, "skew"),
    (State.BACKUP, "peer", 0, True, "skew"),
    (State.BACKUP, "stranger", 0, True, Reject.STOP_NOT_MASTER),
    (State.BACKUP, "first", 0, True, "skew"),
    (State.BACKUP, "followed", 100, True, "preempt"),
    (State.BACKUP, "peer", 100, True, "preempt"),
    (State.BACKUP, "stranger", 100, True, Reject.LOWER_PRIORITY),
    (State.BACKUP, "first", 100, True, "preempt"),
    (State.BACKUP, "followed", 100, False, "follow"),
    (State.BACKUP, "stranger", 100, False, "follow"),
    (State.BACKUP, "stranger", 150, True, "follow"),
    (State.BACKUP, "stranger", 255, True, "follow"),
    (State.BACKUP, "followed", 255, True, "follow"),
    (State.MASTER, "stranger", 0, True, "advert"),
    (State.MASTER, "stranger", 100, True, "ignore"),
    (State.MASTER, "peer", 100, True, "ignore"),
    (State.MASTER, "stranger", 255, True, "step down"),
    (State.MASTER, "peer", 255, True, "step down"),
]


@pytest.mark.parametrize("state,sender,prio,preempt,expect", ADVERT_RULES, ids=str)
def test_advert_rules(state: State, sender: str, prio: int, preempt: bool,
                      expect: object) -> None:
    kw = dict(priority=150, preempt=preempt, peer=PEER_IP)
    if state is State.MASTER:
        m = master(**kw)
    else:
        m = backup(**kw) if sender == "first" else following(LOWER_IP, 200, **kw)
    src = {"followed": LOWER_IP, "peer": PEER_IP, "stranger": STRANGER,
           "first": STRANGER}[sender]
    timers = m.timers
    actions = m.handle(rx(prio, src), 1.0)
    if isinstance(expect, Reject):
        assert actions == [Discard(expect, src)]
        assert m.state is state and m.timers == timers
    elif expect == "skew":
        assert actions == [StartTimer(Timer.MASTER_DOWN, 1.0 + skew_time_s(150, 100))]
    elif expect == "preempt":
        assert actions[0] == BecomeMaster(Reason.PREEMPT, 150, True)
    elif expect == "follow":
        assert actions == [StartTimer(Timer.MASTER_DOWN,
                                      1.0 + master_down_interval_s(150, 100))]
        assert m.state is State.BACKUP and m.master == src
    elif expect == "advert":
        assert actions == [SendAdvert(advert(150)), StartTimer(Timer.ADVER, 2.0)]
    elif expect == "ignore":
        assert actions == [] and m.state is State.MASTER and m.timers == timers
    else:
        assert actions[0] == BecomeBackup(Reason.HIGHER_PRIORITY, src)
        assert m.timers[Timer.MASTER_DOWN] == 1.0 + master_down_interval_s(150, 100)


def test_advert_rules_cover_every_backup_branch() -> None:
    outcomes = {e for st, _, _, _, e in ADVERT_RULES if st is State.BACKUP}
    assert outcomes == {"skew", "preempt", "follow", Reject.STOP_NOT_MASTER,
                        Reject.LOWER_PRIORITY}


# -- forged adverts: the interval bound ---------------------------------------------------


def test_one_forged_max_interval_advert_holds_a_backup_one_master_down_interval() -> None:
    """The attack of issue 11: priority 255, Max Adver Int 40.95 s. RFC 5798 §6.4.2 would
    hold this Backup for 3 x 40.95 s + skew; the bound holds it for its own
    Master_Down_Interval."""
    m = following(LOWER_IP)
    actions = m.handle(rx(255, STRANGER, interval_cs=4095), 1.0)
    assert actions == [StartTimer(Timer.MASTER_DOWN, 1.0 + master_down_interval_s(100, 100)),
                       IntervalMismatch(STRANGER, 4095, 100)]
    assert m.master == STRANGER and m.master_adver_interval_cs == 100


def test_one_forged_tiny_interval_advert_does_not_make_a_backup_time_out_early() -> None:
    m = following(LOWER_IP)
    m.handle(rx(255, STRANGER, interval_cs=1), 1.0)
    assert m.timers[Timer.MASTER_DOWN] == 1.0 + master_down_interval_s(100, 100)


def test_interval_confirmation_needs_two_in_a_row_from_the_same_router() -> None:
    m = backup(0.0)
    m.handle(rx(200, LOWER_IP, interval_cs=50), 1.0)
    m.handle(rx(200, STRANGER, interval_cs=50), 1.1)  # another router in between
    m.handle(rx(200, LOWER_IP, interval_cs=50), 1.2)
    assert m.master_adver_interval_cs == 100
    m.handle(rx(200, LOWER_IP, interval_cs=60), 1.3)  # the same router, a new interval
    assert m.master_adver_interval_cs == 100
    m.handle(rx(200, LOWER_IP, interval_cs=60), 1.4)
    assert m.master_adver_interval_cs == 60
    # a restart forgets what was confirmed
    m.handle(Shutdown(), 2.0)
    m.handle(Startup(), 2.0)
    m.handle(rx(200, LOWER_IP, interval_cs=60), 2.1)
    assert m.master_adver_interval_cs == 100


forged = st.builds(lambda p, i: AdvertReceived(STRANGER, advert(p, interval_cs=i)),
                   st.integers(0, 255), st.integers(1, 4095))


@settings(max_examples=300, deadline=None)
@given(forged, st.floats(0.0, 0.999), st.integers(100, 255), st.integers(1, 254),
       st.booleans())
def test_one_forged_advert_never_moves_a_backup_whose_master_is_alive(
        fake: AdvertReceived, phase: float, master_prio: int, prio: int,
        preempt: bool) -> None:
    """A Backup follows a live master that advertises every second (our interval); one
    forged advert of any priority and interval, at any point of the cycle, never makes
    it Master. (RFC 5798 as written fails this: a forged interval of 10 ms makes the
    Backup time out before the real master's next advert.)"""
    master_prio = max(master_prio, prio)  # a master we follow, not one we preempt
    m = following(LOWER_IP, master_prio, priority=prio, preempt=preempt)
    t = 0.0
    for k in range(1, 6):
        if k == 2:
            t_fake = k - 1 + phase
            _fire_until(m, t_fake)
            m.handle(fake, t_fake)
        _fire_until(m, float(k))
        assert m.state is State.BACKUP
        m.handle(rx(master_prio, LOWER_IP), float(k))
        t = float(k)
    _fire_until(m, t + 0.999)
    assert m.state is State.BACKUP


@settings(max_examples=300, deadline=None)
@given(forged.filter(lambda e: e.advert.priority > 0), st.integers(1, 254),
       st.sampled_from([State.BACKUP, State.MASTER]), st.sampled_from([1, 10, 100, 4095]))
def test_one_forged_advert_silences_for_at_most_the_master_down_interval(
        fake: AdvertReceived, prio: int, state: State, ours_cs: int) -> None:
    """After one forged advert and silence, the device is Master within its configured
    Master_Down_Interval (3 x its own interval + skew), whatever the advert said."""
    m = following(LOWER_IP, 255, priority=prio, advert_interval_cs=ours_cs) \
        if state is State.BACKUP else master(priority=prio, advert_interval_cs=ours_cs)
    t = 50.0
    m.handle(fake, t)  # the real master (if any) is dead: nothing more is heard
    _fire_until(m, t + master_down_interval_s(prio, ours_cs))
    assert m.state is State.MASTER


def _fire_until(m: VrrpMachine, t: float) -> None:
    """Fire the machine's timers due by `t`, in order, as the event loop would."""
    while m.timers and min(m.timers.values()) <= t:
        timer, deadline = min(m.timers.items(), key=lambda kv: kv[1])
        m.handle(TimerFired(timer), deadline)


# -- Master (§6.4.3) -------------------------------------------------------------------


def test_adver_timer_sends_and_rearms_without_drift() -> None:
    m = master(0.0)  # became master at 3.609375, ADVER at 4.609375
    deadline = m.timers[Timer.ADVER]
    actions = m.handle(TimerFired(Timer.ADVER), deadline + 0.004)  # loop was 4 ms late
    assert actions == [SendAdvert(advert(100)), StartTimer(Timer.ADVER, deadline + 1.0)]
    # after a stall longer than an interval: restart from now, no burst
    actions = m.handle(TimerFired(Timer.ADVER), deadline + 5.0)
    assert actions[1] == StartTimer(Timer.ADVER, deadline + 6.0)


def test_garp_timer_repeats_gratuitous_arp() -> None:
    m = master(0.0)
    assert m.handle(TimerFired(Timer.GARP), 9.0) == [SendGarp(VIPS)]
    assert Timer.GARP not in m.timers


def test_no_garp_repeat_when_disabled() -> None:
    m = master(0.0, garp_repeat_s=0.0)
    assert Timer.GARP not in m.timers


def test_master_answers_priority_zero_with_an_advert() -> None:
    m = master(0.0)
    assert m.handle(rx(0), 5.0) == [SendAdvert(advert(100)), StartTimer(Timer.ADVER, 6.0)]
    assert m.state is State.MASTER


def test_master_steps_down_for_higher_priority() -> None:
    m = master(0.0)
    actions = m.handle(rx(200, interval_cs=100), 5.0)
    assert m.state is State.BACKUP and m.master == LOWER_IP
    assert actions == [
        BecomeBackup(Reason.HIGHER_PRIORITY, LOWER_IP),
        CancelTimer(Timer.ADVER),
        CancelTimer(Timer.GARP),
        DelVips(VIPS),
        StartTimer(Timer.MASTER_DOWN, 5.0 + 3.609375),
    ]


def test_master_steps_down_with_the_interval_bounded() -> None:
    """§6.4.3 learns the new master's interval; one advert does not make it ours: the
    Master_Down_Interval stays our own until the same master says it again."""
    m = master(0.0)
    actions = m.handle(rx(200, interval_cs=4095), 5.0)
    assert m.state is State.BACKUP and m.master_adver_interval_cs == 100
    assert actions[-2:] == [StartTimer(Timer.MASTER_DOWN, 5.0 + 3.609375),
                            IntervalMismatch(LOWER_IP, 4095, 100)]
    m.handle(rx(200, interval_cs=4095), 45.0)  # a real slow master's second advert
    assert m.master_adver_interval_cs == 4095
    assert m.timers[Timer.MASTER_DOWN] == pytest.approx(
        45.0 + master_down_interval_s(100, 4095))


def test_master_equal_priority_tie_break_on_primary_address() -> None:
    """§6.4.3: equal priority and a greater primary address wins."""
    m = master(0.0)
    assert m.handle(rx(100, LOWER_IP), 5.0) == []
    assert m.state is State.MASTER
    m.handle(rx(100, HIGHER_IP), 5.1)
    assert m.state is State.BACKUP and m.master == HIGHER_IP


def test_master_discards_lower_priority() -> None:
    m = master(0.0)
    assert m.handle(rx(50), 5.0) == []
    assert m.state is State.MASTER


def test_shutdown_master_sends_priority_zero_and_removes_vips() -> None:
    m = master(0.0)
    actions = m.handle(Shutdown(), 5.0)
    assert actions == [
        BecomeInitialize(Reason.SHUTDOWN),
        CancelTimer(Timer.ADVER),
        CancelTimer(Timer.GARP),
        SendAdvert(advert(0)),
        DelVips(VIPS),
    ]
    assert m.state is State.INITIALIZE and m.timers == {}


def test_shutdown_backup_cancels_master_down() -> None:
    m = backup(0.0)
    assert m.handle(Shutdown(), 1.0) == [BecomeInitialize(Reason.SHUTDOWN),
                                         CancelTimer(Timer.MASTER_DOWN)]
    assert m.handle(Shutdown(), 1.0) == []  # stopping twice is harmless


def test_restart_after_shutdown() -> None:
    m = master(0.0)
    m.handle(Shutdown(), 5.0)
    m.handle(Startup(), 6.0)
    assert m.state is State.BACKUP


def test_stale_timer_is_ignored() -> None:
    m = master(0.0)
    m.handle(rx(200), 5.0)  # back to Backup: ADVER cancelled
    assert m.handle(TimerFired(Timer.ADVER), 5.5) == []
    assert m.state is State.BACKUP


def test_accept_mode_is_reported() -> None:
    m = backup(0.0, accept=False)
    assert m.handle(TimerFired(Timer.MASTER_DOWN), 4.0)[0] == BecomeMaster(
        Reason.MASTER_DOWN, 100, False)


# -- tracking --------------------------------------------------------------------------


def test_tracking_decrements_and_restores() -> None:
    m = backup(0.0, priority=100)
    assert m.handle(LinkChanged("eth2", False), 1.0) == [PriorityChanged(100, 70)]
    assert m.handle(LinkChanged("eth2", False), 1.1) == []  # no change, no action
    assert m.handle(LinkChanged("eth3", False), 1.2) == [PriorityChanged(70, 1)]  # floor
    assert m.priority == 1
    assert m.handle(LinkChanged("eth2", True), 1.3) == [PriorityChanged(1, 10)]
    assert m.handle(LinkChanged("eth3", True), 1.4) == [PriorityChanged(10, 100)]
    assert m.handle(LinkChanged("eth9", False), 1.5) == []  # not tracked


def test_tracking_master_advertises_new_priority_at_once() -> None:
    m = master(0.0, priority=100)
    actions = m.handle(LinkChanged("eth2", False), 5.0)
    assert actions == [PriorityChanged(100, 70), SendAdvert(advert(70)),
                       StartTimer(Timer.ADVER, 6.0)]
    actions = m.handle(LinkChanged("eth2", True), 5.5)
    assert sent_priorities(actions) == [100]


def test_tracking_owner_loses_owner_priority() -> None:
    m = VrrpMachine(params(priority=255))
    m.handle(LinkChanged("eth2", False), 0.0)
    m.handle(Startup(), 0.0)
    assert m.state is State.BACKUP and m.priority == 225


def test_tracking_lowers_the_backup_below_master_no_preempt() -> None:
    m = backup(0.0, priority=150)
    m.handle(LinkChanged("eth2", False), 0.5)  # 120
    m.handle(rx(130), 1.0)
    assert m.state is State.BACKUP
    m.handle(LinkChanged("eth2", True), 1.5)  # 150 again: preempts on the next advert
    assert m.state is State.BACKUP
    m.handle(rx(130), 2.0)
    assert m.state is State.MASTER


def test_skew_uses_effective_priority() -> None:
    m = backup(0.0, priority=150)
    m.handle(LinkChanged("eth2", False), 0.5)
    assert m.skew_time_s == pytest.approx(skew_time_s(120, 100))


# -- health (the pair policy's SetHealth) -----------------------------------------------


def test_unhealthy_master_advertises_priority_one_at_once_and_stays_master() -> None:
    m = master(0.0, priority=200)
    actions = m.handle(HealthChanged(False), 5.0)
    assert actions == [PriorityChanged(200, 1), SendAdvert(advert(1)),
                       StartTimer(Timer.ADVER, 6.0)]
    assert m.state is State.MASTER and m.priority == 1 and not m.healthy
    assert m.handle(HealthChanged(False), 5.1) == []  # no change, no action
    m.handle(TimerFired(Timer.ADVER), 6.0)
    actions = m.handle(HealthChanged(True), 6.5)
    assert actions == [PriorityChanged(1, 200), SendAdvert(advert(200)),
                       StartTimer(Timer.ADVER, 7.5)]


def test_health_restores_the_tracked_priority_not_the_configured_one() -> None:
    m = backup(0.0, priority=100)
    m.handle(LinkChanged("eth2", False), 1.0)  # 70
    assert m.handle(HealthChanged(False), 1.1) == [PriorityChanged(70, 1)]
    assert m.handle(LinkChanged("eth2", True), 1.2) == []  # still 1 while unhealthy
    assert m.handle(LinkChanged("eth3", False), 1.3) == []
    assert m.handle(HealthChanged(True), 1.4) == [PriorityChanged(1, 10)]
    assert m.handle(LinkChanged("eth3", True), 1.5) == [PriorityChanged(10, 100)]


def test_unhealthy_owner_starts_as_backup_and_reconfigure_waits_for_health() -> None:
    m = VrrpMachine(params(priority=255))
    assert m.handle(HealthChanged(False), 0.0) == [PriorityChanged(255, 1)]
    assert m.handle(Startup(), 0.0)[0] == BecomeBackup(Reason.STARTUP, None)
    b = backup(0.0, priority=100)
    b.handle(HealthChanged(False), 0.5)
    assert b.handle(PriorityConfigured(150), 1.0) == []  # effective stays 1
    assert b.handle(HealthChanged(True), 1.5) == [PriorityChanged(1, 150)]


def test_unhealthy_backup_never_preempts_and_still_takes_an_abandoned_group() -> None:
    """Priority 1 preempts nobody; when no master is heard at all it still becomes
    Master (the pair policy then keeps the group unserved: FAULT)."""
    m = backup(0.0, priority=200)
    m.handle(HealthChanged(False), 0.5)
    m.handle(rx(50), 1.0)
    assert m.state is State.BACKUP and m.master == LOWER_IP
    actions = m.handle(TimerFired(Timer.MASTER_DOWN), 1.0 + m.master_down_interval_s)
    assert actions[0] == BecomeMaster(Reason.MASTER_DOWN, 1, True)


def test_health_moves_mastership_at_once_and_back() -> None:
    """Health is tracking by another name: the unhealthy master advertises 1, the
    healthy backup preempts at once; healthy again, it preempts back at the next
    advert it hears."""
    lan, a, b = _pair(200, 100)
    assert a.state is State.MASTER
    t0 = lan.now
    lan.feed(a, HealthChanged(False))
    assert b.state is State.MASTER and a.state is State.BACKUP
    assert [(who, s) for _, who, s in lan.transitions_after(t0)] == [
        (HIGHER_IP, "master"), (LOWER_IP, "backup")]
    lan.run_until(15.0)
    lan.feed(a, HealthChanged(True))
    assert a.state is State.BACKUP  # waits for b's next advert
    lan.run_until(16.01)
    assert a.state is State.MASTER and b.state is State.BACKUP


# -- the sync gate ---------------------------------------------------------------------


def test_gate_closed_never_preempts() -> None:
    m = VrrpMachine(params(priority=150))
    m.handle(GateChanged(False), 0.0)
    m.handle(Startup(), 0.0)
    for t in (1.0, 2.0, 3.0):
        assert m.handle(rx(100), t) == [StartTimer(Timer.MASTER_DOWN, pytest.approx(
            t + 3 + 106 / 256))]
    assert m.state is State.BACKUP and m.master == LOWER_IP
    m.handle(GateChanged(True), 3.5)
    assert m.state is State.BACKUP  # waits for the next advert, fresh information
    m.handle(rx(100), 4.0)
    assert m.state is State.MASTER
    assert m.gate_ready


def test_gate_closed_owner_starts_as_backup() -> None:
    m = VrrpMachine(params(priority=255))
    m.handle(GateChanged(False), 0.0)
    assert m.handle(Startup(), 0.0)[0] == BecomeBackup(Reason.STARTUP, None)


def test_gate_closed_still_takes_over_when_no_master_is_heard() -> None:
    m = VrrpMachine(params(priority=150))
    m.handle(GateChanged(False), 0.0)
    m.handle(Startup(), 0.0)
    m.handle(rx(100), 1.0)
    actions = m.handle(TimerFired(Timer.MASTER_DOWN), 5.0)
    assert actions[0] == BecomeMaster(Reason.MASTER_DOWN, 150, True)


def test_gate_closing_never_demotes_a_master() -> None:
    m = master(0.0)
    assert m.handle(GateChanged(False), 5.0) == []
    assert m.state is State.MASTER
    m.handle(TimerFired(Timer.ADVER), m.timers[Timer.ADVER])
    assert m.state is State.MASTER


def test_gate_closed_master_still_yields_to_higher_priority() -> None:
    m = master(0.0)
    m.handle(GateChanged(False), 5.0)
    m.handle(rx(200), 5.5)
    assert m.state is State.BACKUP


# -- two routers on a simulated clock --------------------------------------------------


class Lan:
    """Machines exchanging adverts instantly, timers on one virtual clock."""

    def __init__(self, *machines: VrrpMachine) -> None:
        self.machines = list(machines)
        self.alive = {id(m): True for m in machines}
        self.now = 0.0
        self.queue: list[tuple[float, int, int, Timer]] = []
        self.seq = 0
        self.log: list[tuple[float, IPv4Address, str]] = []
        self.sent: list[tuple[float, IPv4Address, int]] = []  # adverts: (t, src, prio)

    def start(self, m: VrrpMachine) -> None:
        self.alive[id(m)] = True
        self.apply(m, m.handle(Startup(), self.now))

    def kill(self, m: VrrpMachine) -> None:
        """kill -9: the machine says nothing more."""
        self.alive[id(m)] = False

    def feed(self, m: VrrpMachine, event: Event) -> None:
        self.apply(m, m.handle(event, self.now))

    def apply(self, m: VrrpMachine, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, StartTimer):
                self.seq += 1
                heapq.heappush(self.queue, (a.deadline, self.seq, id(m), a.timer))
            elif isinstance(a, SendAdvert):
                self.sent.append((self.now, m.params.primary_address, a.advert.priority))
                for other in self.machines:
                    if other is not m and self.alive[id(other)]:
                        self.feed(other, AdvertReceived(m.params.primary_address, a.advert))
            elif isinstance(a, BecomeMaster | BecomeBackup | BecomeInitialize):
                self.log.append((self.now, m.params.primary_address, m.state.value))

    def forge(self, src: IPv4Address, adv: Advert) -> None:
        """A third host's advert, heard by every live machine."""
        for m in self.machines:
            if self.alive[id(m)]:
                self.feed(m, AdvertReceived(src, adv))

    def transitions_after(self, t: float) -> list[tuple[float, IPv4Address, str]]:
        return [x for x in self.log if x[0] >= t]

    def run_until(self, t: float) -> None:
        by_id = {id(m): m for m in self.machines}
        while self.queue and self.queue[0][0] <= t:
            deadline, _, mid, timer = heapq.heappop(self.queue)
            m = by_id[mid]
            if not self.alive[mid] or m.timers.get(timer) != deadline:
                continue  # cancelled or re-armed: the loop's handle was cancelled
            self.now = deadline
            self.feed(m, TimerFired(timer))
        self.now = t


def _pair(prio_a: int, prio_b: int, **kw: object) -> tuple[Lan, VrrpMachine, VrrpMachine]:
    a = VrrpMachine(params(priority=prio_a, primary_address=LOWER_IP, **kw))
    b = VrrpMachine(params(priority=prio_b, primary_address=HIGHER_IP, **kw))
    lan = Lan(a, b)
    lan.start(a)
    lan.start(b)
    lan.run_until(10.0)
    return lan, a, b


def test_election_higher_priority_wins_either_side() -> None:
    for pa, pb in ((150, 100), (100, 150)):
        _, a, b = _pair(pa, pb)
        winner, loser = (a, b) if pa > pb else (b, a)
        assert winner.state is State.MASTER and loser.state is State.BACKUP
        assert loser.master == winner.params.primary_address


def test_election_equal_priority_first_to_time_out_keeps_it() -> None:
    """§6.4.2: a Backup accepts an equal-priority master whatever its address; the
    address tie-break is for two Masters (§6.4.3, test_master_equal_priority_...)."""
    _, a, b = _pair(100, 100)
    assert a.state is State.MASTER and b.state is State.BACKUP


def test_split_brain_heals_by_priority_then_address() -> None:
    a = master(0.0, priority=100, primary_address=LOWER_IP)
    b = master(0.0, priority=100, primary_address=HIGHER_IP)
    a.handle(AdvertReceived(HIGHER_IP, advert(100)), 5.0)
    b.handle(AdvertReceived(LOWER_IP, advert(100)), 5.0)
    assert a.state is State.BACKUP and b.state is State.MASTER


def test_killed_master_is_replaced_within_master_down_interval() -> None:
    lan, a, b = _pair(150, 100)
    lan.kill(a)
    killed_at = lan.now
    lan.run_until(20.0)
    t_master = next(t for t, who, s in lan.log if who == b.params.primary_address
                    and s == "master" and t > killed_at)
    # the last advert left at most one interval before the kill
    assert t_master - killed_at <= master_down_interval_s(100, 100)
    assert t_master - killed_at >= master_down_interval_s(100, 100) - 1.0


def test_priority_zero_hands_over_after_skew_time() -> None:
    lan, a, b = _pair(150, 100)
    lan.now = 10.3
    lan.feed(a, Shutdown())
    lan.run_until(20.0)
    t_master = next(t for t, who, s in lan.log if who == b.params.primary_address
                    and s == "master" and t > 10.3)
    assert t_master - 10.3 == pytest.approx(skew_time_s(100, 100))


def test_preemption_back_after_restart() -> None:
    lan, a, b = _pair(150, 100)
    lan.kill(a)
    lan.run_until(20.0)
    assert b.state is State.MASTER
    a.handle(Shutdown(), lan.now)  # reset the dead one's memory, as a fresh process
    lan.start(a)
    lan.run_until(20.0 + 1.01)  # b's next advert triggers a's preemption
    assert a.state is State.MASTER and b.state is State.BACKUP


def test_tracking_moves_mastership_and_back() -> None:
    lan, a, b = _pair(150, 130)
    assert a.state is State.MASTER
    lan.feed(a, LinkChanged("eth2", False))  # 150 - 30 = 120 < 130: b preempts at once
    assert b.state is State.MASTER and a.state is State.BACKUP
    lan.run_until(15.0)
    lan.feed(a, LinkChanged("eth2", True))
    lan.run_until(16.01)
    assert a.state is State.MASTER and b.state is State.BACKUP


def test_forged_advert_silences_a_pair_for_at_most_the_master_down_interval() -> None:
    """Issue 11: one advert of priority 255 and interval 40.95 s from a third host. The
    master steps down (§6.4.3), the backup follows the forger; with the RFC's
    Master_Down_Interval from the advert both would wait 3 x 40.95 s + skew (~140 s).
    Bounded, the master is back after its own Master_Down_Interval."""
    lan, a, b = _pair(150, 120)
    assert a.state is State.MASTER
    lan.run_until(10.05)
    t0 = lan.now
    lan.forge(STRANGER, advert(255, interval_cs=4095))
    assert a.state is State.BACKUP and b.state is State.BACKUP
    lan.run_until(t0 + 200)
    first = min(t for t, src, _ in lan.sent if t > t0)
    assert first - t0 == pytest.approx(master_down_interval_s(150, 100))
    assert first - t0 <= master_down_interval_s(120, 100)  # the pair's longest
    assert a.state is State.MASTER and b.state is State.BACKUP and b.master == LOWER_IP
    # the one takeover, and b never moved
    assert [(who, s) for _, who, s in lan.transitions_after(t0)] == [
        (LOWER_IP, "backup"), (LOWER_IP, "master")]


def test_forged_lower_priority_and_stop_adverts_move_nobody() -> None:
    lan, a, b = _pair(150, 120)
    lan.run_until(10.05)
    t0 = lan.now
    lan.forge(STRANGER, advert(1))
    lan.forge(STRANGER, advert(0))
    lan.run_until(t0 + 30)
    assert lan.transitions_after(t0) == []
    assert a.state is State.MASTER and b.master == LOWER_IP


def _lan(*specs: tuple[int, int, IPv4Address]) -> tuple[Lan, list[VrrpMachine]]:
    ms = [VrrpMachine(params(priority=p, advert_interval_cs=cs, primary_address=ip))
          for p, cs, ip in specs]
    lan = Lan(*ms)
    for m in ms:
        lan.start(m)
    return lan, ms


def test_a_master_with_a_longer_interval_is_followed_without_flapping() -> None:
    """A legitimate peer advertising every second while we advertise every 100 ms (a
    keepalived with advert_int 1). Its first advert is not believed (it could be a
    forged one); from its second on we follow its interval and never time out between
    its adverts. The cost: at most one takeover when it is first heard."""
    lan, (slow, fast) = _lan((200, 100, LOWER_IP), (100, 10, HIGHER_IP))
    lan.run_until(10.0)
    assert slow.state is State.MASTER and fast.state is State.BACKUP
    assert fast.master_adver_interval_cs == 100
    spurious = [x for x in lan.log if x[1] == HIGHER_IP and x[2] == "master" and x[0] > 0.5]
    assert len(spurious) <= 1, lan.log
    t = lan.now
    lan.run_until(t + 120.0)
    assert lan.transitions_after(t + 1e-9) == []
    # and when it dies, we take over within its (confirmed) Master_Down_Interval
    lan.kill(slow)
    t_kill = lan.now
    lan.run_until(t_kill + 10)
    took = next(x[0] for x in lan.transitions_after(t_kill)) - t_kill
    assert took <= master_down_interval_s(100, 100)


def test_a_master_with_a_shorter_interval_is_followed_from_its_second_advert() -> None:
    lan, (quick, slow) = _lan((200, 10, LOWER_IP), (100, 100, HIGHER_IP))
    lan.run_until(10.0)
    assert quick.state is State.MASTER and slow.state is State.BACKUP
    assert slow.master_adver_interval_cs == 10
    assert [x for x in lan.log if x[1] == HIGHER_IP and x[2] == "master"] == []
    lan.kill(quick)
    t_kill = lan.now
    lan.run_until(t_kill + 10)
    took = next(x[0] for x in lan.transitions_after(t_kill)) - t_kill
    assert took <= master_down_interval_s(100, 10)  # fast, as the RFC means it


def test_peer_down_makes_a_backup_master_at_once() -> None:
    """Evidence from the sync link: no waiting for the Master_Down_Timer."""
    m = backup()
    actions = m.handle(PeerDown("peer daemon gone (reset)"), 1.0)
    assert m.state is State.MASTER
    assert isinstance(actions[0], BecomeMaster) and actions[0].reason.value == "peer_down"


def test_an_advert_sent_before_the_evidence_does_not_undo_the_takeover() -> None:
    """The old master's advert already on its way when the sync link's evidence came
    (its client link went down just after it advertised) is discarded once, within one
    of its intervals; a later one, or one from another router, is §6.4.3 as ever."""
    m = following(LOWER_IP, prio=200, now=0.0)
    m.handle(PeerDown("the peer hands group g over: interface eth1 down"), 0.50)
    assert m.state is State.MASTER
    assert m.handle(rx(200, LOWER_IP), 0.51) == [Discard(Reject.STALE_AFTER_EVIDENCE,
                                                         LOWER_IP)]
    assert m.state is State.MASTER
    # once only: the next advert from it (its link back, its priority again) preempts
    m.handle(rx(200, LOWER_IP), 0.52)
    assert m.state is State.BACKUP
    # and after one interval the guard has lapsed anyway
    m = following(LOWER_IP, prio=200, now=0.0)
    m.handle(PeerDown("x"), 0.50)
    m.handle(rx(200, LOWER_IP), 0.50 + m.master_adver_interval_cs / 100 + 0.01)
    assert m.state is State.BACKUP
    # another router's better advert is not covered by the evidence
    m = following(LOWER_IP, prio=200, now=0.0)
    m.handle(PeerDown("x"), 0.50)
    m.handle(rx(250, HIGHER_IP), 0.51)
    assert m.state is State.BACKUP


def test_peer_down_changes_nothing_in_master_or_initialize() -> None:
    m = master()
    assert m.handle(PeerDown("x"), 1.0) == [] and m.state is State.MASTER
    i = VrrpMachine(params())
    assert i.handle(PeerDown("x"), 1.0) == [] and i.state is State.INITIALIZE


def test_priority_configured_master_advertises_at_once() -> None:
    m = master()
    actions = m.handle(PriorityConfigured(90), 2.0)
    assert m.priority == 90 and m.state is State.MASTER
    assert isinstance(actions[0], PriorityChanged)
    assert any(isinstance(a, SendAdvert) and a.advert.priority == 90 for a in actions)


def test_priority_configured_backup_keeps_state_and_owner_refused() -> None:
    b = backup()
    b.handle(PriorityConfigured(200), 2.0)
    assert b.priority == 200 and b.state is State.BACKUP
    with pytest.raises(VrrpStateError):
        b.handle(PriorityConfigured(255), 2.0)


def test_own_interface_down_leaves_master_and_its_return_is_an_election() -> None:
    """A master whose link dies must not keep the role (nor claim it from Backup on a
    dead link); when the link returns it starts as Backup, and becomes master again only
    through an election, which re-announces the VIPs (gratuitous ARPs)."""
    m = master()
    acts = m.handle(InterfaceChanged(False), 2.0)
    assert m.state is State.INITIALIZE and m.timers == {}
    assert isinstance(acts[0], BecomeInitialize) and any(isinstance(a, DelVips) for a in acts)
    assert not any(isinstance(a, SendAdvert) for a in acts)
    acts = m.handle(InterfaceChanged(True), 3.0)
    assert m.state is State.BACKUP and Timer.MASTER_DOWN in m.timers
    acts = m.handle(TimerFired(Timer.MASTER_DOWN), 5.0)
    assert m.state is State.MASTER
    assert any(isinstance(a, SendGarp) for a in acts) and any(isinstance(a, AddVips)
                                                              for a in acts)


def test_backup_with_dead_link_waits_in_initialize() -> None:
    b = backup()
    b.handle(InterfaceChanged(False), 2.0)
    assert b.state is State.INITIALIZE and b.timers == {}
