"""Alarms raised and cleared on snapshots (appliance/metrics/alarms.py), `now` stepped
by hand: what the operator reads in the log, the runtime tree and the metrics."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.metrics.alarms import (
    IDS,
    PEER_LOST_AFTER_S,
    TAKEOVER_HOLD_S,
    Alarms,
    Clear,
    Observed,
    Raise,
)
from appliance.metrics.snapshot import Group, Pool, Snapshot, Sync, Takeover

REPO = Path(__file__).resolve().parents[2]


def snap(t: float = 1000.0, used: int = 0, state: str = "master", peer: str = "connected",
         drift: tuple[str, ...] = (), skew: bool = False, takeover: Takeover | None = None,
         pools: tuple[Pool, ...] | None = None) -> Snapshot:
    if pools is None:
        pools = (Pool("lan", 10, {"bound": used}, 80, 50),)
    return Snapshot(
        node="b", time=t, started=0.0, pools=pools,
        groups=(Group("vrrp", 10, state, 100, 100),),
        sync=Sync(peer, True, 0, 0, drift, 0.002 if skew else None, skew),
        last_takeover={"vrrp": takeover} if takeover else {})


def run(a: Alarms, s: Snapshot, now: float) -> list[tuple[str, str]]:
    return [(type(x).__name__, x.msg_id) for x in a.handle(Observed(s), now)]


def active(a: Alarms) -> set[str]:
    return {x.path for x in a.active()}


def test_pool_use_alarm_raises_at_the_threshold_and_clears_below_the_lower_one():
    a = Alarms()
    assert run(a, snap(used=7), 0) == []
    acts = a.handle(Observed(snap(used=8)), 1)  # 80%: at the threshold
    assert [(type(x), x.msg_id) for x in acts] == [(Raise, "M010")]
    assert acts[0].alarm.path == "alarms/pool_use/lan"
    assert "pool lan 80% used (8 of 10 addresses)" in acts[0].text
    assert "clears below 50%" in acts[0].text
    # Hysteresis: back to 70%, 60%, 50% stays raised; 40% clears.
    for used in (7, 6, 5):
        assert run(a, snap(used=used), 2) == []
        assert active(a) == {"alarms/pool_use/lan"}
    assert run(a, snap(used=4), 3) == [("Clear", "M011")]
    assert active(a) == set()
    # Offered and declined addresses are used too.
    p = (Pool("lan", 10, {"bound": 6, "offered": 1, "declined": 1}, 80, 50),)
    assert run(a, snap(pools=p), 4) == [("Raise", "M010")]


def test_removing_a_pool_or_its_alarm_clears_and_forgets_it():
    a = Alarms()
    run(a, snap(used=9), 0)
    off = (Pool("lan", 10, {"bound": 9}, 0, 0),)
    acts = a.handle(Observed(snap(pools=off)), 1)
    assert [(type(x), x.msg_id) for x in acts] == [(Clear, "M011")]
    assert "alarms/pool_use/lan" not in {x.path for x in a.states()}


def test_every_takeover_raises_and_the_alarm_clears_when_the_group_moves_on():
    a = Alarms()
    assert run(a, snap(state="backup"), 0) == []
    t1 = Takeover("vrrp", "peer_down", 1001.0, 0.0042, "the peer's daemon is gone")
    acts = a.handle(Observed(snap(takeover=t1)), 1)
    assert [x.msg_id for x in acts] == ["M020"]
    assert acts[0].text == ("alarm takeover/vrrp raised: took over group vrrp (peer_down: "
                            "the peer's daemon is gone) in 4.2 ms")
    assert run(a, snap(takeover=t1), 2) == []  # the same takeover: once
    # A second takeover while raised is logged again (a journal match finds each one).
    t2 = replace(t1, at=1005.0, cause="master_down", why="")
    assert run(a, snap(takeover=t2), 3) == [("Raise", "M020")]
    assert {x.raised for x in a.states() if x.kind == "takeover"} == {2}
    assert run(a, snap(state="backup", takeover=t2), 4) == [("Clear", "M021")]


def test_takeover_alarm_clears_itself_after_the_hold():
    a = Alarms()
    run(a, snap(state="backup"), 0)
    t = Takeover("vrrp", "master_down", 1001.0, 0.36)
    assert run(a, snap(takeover=t), 10) == [("Raise", "M020")]
    assert run(a, snap(takeover=t), 10 + TAKEOVER_HOLD_S - 0.1) == []
    assert run(a, snap(takeover=t), 10 + TAKEOVER_HOLD_S) == [("Clear", "M021")]


def test_peer_lost_only_after_it_stayed_away():
    a = Alarms()
    assert run(a, snap(peer="disconnected"), 100) == []
    assert run(a, snap(peer="syncing"), 101) == []  # a reconnect: no alarm
    assert run(a, snap(peer="disconnected"), 102) == []
    assert run(a, snap(peer="disconnected"), 102 + PEER_LOST_AFTER_S - 0.01) == []
    assert run(a, snap(peer="disconnected"), 102 + PEER_LOST_AFTER_S) == [("Raise", "M030")]
    assert run(a, snap(peer="disconnected"), 200) == []  # raised once
    assert run(a, snap(peer="syncing"), 201) == [("Clear", "M031")]


def test_config_drift_follows_the_differing_settings():
    a = Alarms()
    acts = a.handle(Observed(snap(drift=("pools/lan/range",))), 0)
    assert [x.msg_id for x in acts] == ["M040"] and "pools/lan/range" in acts[0].text
    assert run(a, snap(drift=("pools/lan/range", "vrrp/vrid")), 1) == []
    assert [x.message for x in a.active()] == [
        "config differs from the peer's: pools/lan/range vrrp/vrid"]
    assert run(a, snap(), 2) == [("Clear", "M041")]


def test_clock_skew_mirrors_the_links_alarm():
    a = Alarms()
    acts = a.handle(Observed(snap(skew=True)), 0)
    assert [x.msg_id for x in acts] == ["M050"] and "+2 ms" in acts[0].text
    assert run(a, snap(skew=True), 1) == []
    assert run(a, snap(), 2) == [("Clear", "M051")]


def test_a_failed_store_is_an_alarm_until_it_writes_again():
    a = Alarms()
    assert run(a, snap(), 0) == []
    failed = replace(snap(), store_error="[Errno 28] No space left on device")
    acts = a.handle(Observed(failed), 1)
    assert [x.msg_id for x in acts] == ["M060"] and "No space left" in acts[0].text
    assert run(a, failed, 2) == []
    assert run(a, snap(), 3) == [("Clear", "M061")]


def test_known_alarms_are_listed_clear_so_their_files_and_series_exist():
    a = Alarms()
    run(a, snap(), 0)
    assert [x.path for x in a.states()] == [
        "alarms/pool_use/lan", "alarms/takeover/vrrp", "alarms/peer_lost",
        "alarms/config_drift", "alarms/clock_skew", "alarms/store_failed"]
    assert not any(x.active or x.message for x in a.states())
    # A standalone device: pools only.
    b = Alarms()
    run(b, Snapshot("a", 0.0, 0.0, pools=(Pool("lan", 10, {}, 90, 80),)), 0)
    assert [x.path for x in b.states()] == ["alarms/pool_use/lan", "alarms/store_failed"]


def test_every_alarm_id_is_documented():
    text = (REPO / "docs" / "metrics.md").read_text()
    log_table = text.split("## Log messages", 1)[1]
    rows = {i for row in log_table.splitlines() if row.startswith("| M")
            for i in re.findall(r"M0\d\d", row.split("|")[1])}
    ids = {i for pair in IDS.values() for i in pair}
    assert ids <= rows, sorted(ids - rows)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.integers(0, 10),  # used addresses of 10
    st.sampled_from(["master", "backup", "initialize"]),
    st.sampled_from(["connected", "syncing", "disconnected"]),
    st.booleans(),  # drift
    st.booleans(),  # skew alarm
    st.booleans(),  # a new takeover
    st.floats(0, 400),  # seconds since the last snapshot
), max_size=40))
def test_raise_and_clear_alternate_and_the_state_follows_them(steps):
    """Whatever the snapshots: a clear only for a raised alarm, a raise only for a clear
    one (a takeover may raise again), and states() agrees with the actions."""
    a = Alarms()
    now, t, raised = 0.0, 1000.0, {}
    for used, state, peer, drift, skew, new_takeover, dt in steps:
        now += dt
        t += dt
        tk = Takeover("vrrp", "master_down", t, 0.3) if new_takeover else None
        s = snap(t, used, state, peer, ("x",) if drift else (), skew, tk)
        for act in a.handle(Observed(s), now):
            key = act.alarm.path
            if isinstance(act, Raise):
                assert not raised.get(key) or act.alarm.kind == "takeover", key
                raised[key] = True
                assert act.msg_id == IDS[act.alarm.kind][0] and act.alarm.message
            else:
                assert raised.get(key), key
                raised[key] = False
                assert act.msg_id == IDS[act.alarm.kind][1] and not act.alarm.message
        assert {p for p, on in raised.items() if on} == active(a)
