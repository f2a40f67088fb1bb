"""Pure parts of the datapath: plan (desired maps, write order), stats summing, the
facade in mode "off", and importability without bcc. No root needed."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config.model import DatapathConfig
from appliance.datapath import layout, plan, stats
from appliance.datapath.plan import BudgetReset, ConfigWrite, MapState, RoleWrite

ACTIVE, STANDBY = layout.Role.ACTIVE, layout.Role.STANDBY


def test_takeover_is_one_role_write():
    before = plan.desired(False, 50, 0)
    after = plan.desired(True, 50, 0)
    assert plan.diff(before, after) == [RoleWrite(ACTIVE)]
    assert plan.diff(after, before) == [RoleWrite(STANDBY)]
    assert plan.diff(after, after) == []


def test_write_order_role_first_when_leaving_config_first_when_taking():
    a = MapState(STANDBY, 0, 0)
    b = plan.desired(True, 10, 5)
    assert plan.diff(a, b) == [ConfigWrite(10, 5), RoleWrite(ACTIVE)]
    c = plan.desired(False, 0, 0)
    assert plan.diff(b, c) == [RoleWrite(STANDBY), ConfigWrite(0, 0)]
    d = plan.desired(True, 10, 5, 200, 0)
    assert plan.diff(a, d) == [ConfigWrite(10, 5, 200, 400), BudgetReset(), RoleWrite(ACTIVE)]


def test_budget_reset_only_when_the_budget_changes():
    """The per-client limit keeps its buckets; a new budget starts full."""
    base = plan.desired(True, 50, 0, 200, 0)
    assert plan.diff(base, plan.desired(True, 80, 0, 200, 0)) == [
        ConfigWrite(80, 160, 200, 400)]
    assert plan.diff(base, plan.desired(True, 50, 0, 100, 0)) == [
        ConfigWrite(50, 100, 100, 200), BudgetReset()]
    assert plan.diff(base, plan.desired(True, 50, 0, 200, 400)) == []  # same effective burst
    assert plan.diff(base, plan.desired(True, 50, 0, 0, 0)) == [
        ConfigWrite(50, 100, 0, 0), BudgetReset()]


def test_initial_state_is_standby_without_limit():
    assert plan.INITIAL == MapState(STANDBY, 0, 0)
    assert plan.diff(plan.INITIAL, plan.desired(False, 0, 0)) == []


@pytest.mark.parametrize(("pps", "burst", "want"), [(0, 0, 0), (0, 7, 0), (50, 0, 100),
                                                     (50, 10, 10), (1, 0, 2)])
def test_effective_burst(pps, burst, want):
    assert plan.effective_burst(pps, burst) == want


@pytest.mark.parametrize(("pps", "burst"), [(-1, 0), (layout.RATE_LIMIT_MAX_PPS + 1, 0),
                                            (10, layout.RATE_LIMIT_MAX_BURST + 1),
                                            (10, -1),
                                            (layout.RATE_LIMIT_MAX_BURST // 2 + 1, 0)])
def test_rate_limit_bounds_refused(pps, burst):
    with pytest.raises(ValueError, match="rate_limit"):
        plan.desired(True, pps, burst)
    with pytest.raises(ValueError, match="new_client"):
        plan.desired(True, 0, 0, pps, burst)


_limits = st.tuples(st.integers(0, 1000), st.integers(0, 1000))


@given(st.booleans(), st.booleans(), _limits, _limits, _limits, _limits)
def test_diff_reaches_desired(a1, a2, r1, n1, r2, n2):
    cur, want = plan.desired(a1, *r1, *n1), plan.desired(a2, *r2, *n2)
    state = cur
    for w in plan.diff(cur, want):
        if isinstance(w, RoleWrite):
            state = MapState(w.role, state.rate_limit_pps, state.rate_limit_burst,
                             state.new_client_pps, state.new_client_burst)
        elif isinstance(w, ConfigWrite):
            state = MapState(state.role, w.rate_limit_pps, w.rate_limit_burst,
                             w.new_client_pps, w.new_client_burst)
        assert plan.apply_write(plan.apply_write(cur, w), w) == plan.apply_write(cur, w)
    assert state == want
    writes = plan.diff(cur, want)
    resets = [i for i, w in enumerate(writes) if isinstance(w, BudgetReset)]
    budget_changed = (cur.new_client_pps, cur.new_client_burst) != \
        (want.new_client_pps, want.new_client_burst)
    assert len(resets) == (1 if budget_changed else 0)
    if resets:  # after the config that carries the new budget
        assert isinstance(writes[resets[0] - 1], ConfigWrite)
    roles = [i for i, w in enumerate(writes) if isinstance(w, RoleWrite)]
    if roles and want.role == ACTIVE:
        assert roles == [len(writes) - 1]  # the role goes last when taking over
    if roles and want.role == STANDBY:
        assert roles == [0]  # and first when giving up


def test_compile_flags_only_name_what_differs():
    assert plan.compile_flags() == []
    assert plan.compile_flags(1024) == ["-DRATE_LIMIT_ENTRIES=1024"]
    with pytest.raises(ValueError):
        plan.compile_flags(0)


def test_sum_percpu_names_every_counter():
    per_cpu = [[1, 2], [3, 0], [0, 0], [5, 5], [0, 1], [7, 0]]
    assert stats.sum_percpu(per_cpu) == {"seen": 3, "passed": 3, "dropped_standby": 0,
                                         "dropped_ratelimit": 10, "malformed": 1,
                                         "dropped_new_client": 7}
    with pytest.raises(ValueError):
        stats.sum_percpu(per_cpu[:2])
    assert stats.Counters(lambda: per_cpu).read()["seen"] == 3
    assert stats.delta({"seen": 1}, {"seen": 4, "passed": 2}) == {"seen": 3, "passed": 2}


def test_counter_names_are_the_runtime_tree_names():
    assert [s.counter_name for s in layout.Stat] == [
        "seen", "passed", "dropped_standby", "dropped_ratelimit", "malformed",
        "dropped_new_client"]
    assert layout.STAT_MAX == 6


def test_mode_off_keeps_the_role_in_python(caplog):
    from appliance.datapath import Datapath

    caplog.set_level(logging.INFO)
    dp = Datapath.open("eth-nonexistent", DatapathConfig(mode="off", rate_limit_pps=5,
                                                         new_client_pps=0))
    assert (dp.attach_mode, dp.role, dp.counters(), dp.program) == ("off", False, {}, None)
    dp.set_role(True)
    assert dp.role is True
    dp.set_rate_limit(10, 0)
    assert dp.rate_limit == (10, 0)
    assert not any("new_client_pps" in r.message for r in caplog.records)
    dp.set_new_client_budget(30, 0)
    assert dp.new_client_budget == (30, 0)
    dp.close()
    assert dp.role is False
    assert any("DP001" in r.message for r in caplog.records)
    assert any("DP006" in r.message and "rate_limit_pps 5" in r.message
               for r in caplog.records)
    assert any("DP006" in r.message and "new_client_pps 30" in r.message
               for r in caplog.records)


def test_bad_mode_refused():
    from appliance.datapath import Datapath

    with pytest.raises(ValueError):
        Datapath.open("eth1", DatapathConfig(mode="ebpf"))


def test_pure_modules_and_mode_off_need_no_bcc():
    """With bcc made unimportable, the pure modules import and mode "off" works."""
    code = (
        "import sys; sys.modules['bcc'] = None\n"
        "import appliance.datapath.layout, appliance.datapath.plan, appliance.datapath.stats\n"
        "from appliance.datapath import Datapath\n"
        "from appliance.config.model import DatapathConfig\n"
        "dp = Datapath.open('eth1', DatapathConfig(mode='off'))\n"
        "dp.set_role(True); assert dp.role; dp.close()\n"
        "assert 'appliance.datapath.loader' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_config_tree_reads_the_new_client_budget(tmp_path):
    from appliance.config import tree as config_tree
    from appliance.testing.trees import standalone_tree

    cfg = config_tree.load(standalone_tree(tmp_path / "a"))
    assert (cfg.datapath.new_client_pps, cfg.datapath.new_client_burst) == (200, 0)
    etc = standalone_tree(tmp_path / "b", extra={"datapath/new_client_pps": "0",
                                                  "datapath/new_client_burst": "30"})
    cfg = config_tree.load(etc)
    assert (cfg.datapath.new_client_pps, cfg.datapath.new_client_burst) == (0, 30)
    etc = standalone_tree(tmp_path / "c", extra={"datapath/new_client_pps": "-1"})
    with pytest.raises(config_tree.ConfigError, match="datapath/new_client_pps"):
        config_tree.load(etc)


def test_kernel_drops_are_logged_rate_limited(caplog):
    """The program cannot log: the facade turns counter rises into DP014 / DP015 lines,
    at most 5 a minute per id (then one 'suppressed' line)."""
    from appliance.datapath import Datapath

    caplog.set_level(logging.WARNING)
    dp = Datapath.open("eth9", DatapathConfig(mode="off", rate_limit_pps=0,
                                              new_client_pps=0))
    caplog.clear()
    dp.log_drops({"dropped_new_client": 7, "dropped_ratelimit": 3}, 0.0)
    assert caplog.records == []  # the first reading is the baseline
    dp.log_drops({"dropped_new_client": 7, "dropped_ratelimit": 3}, 1.0)
    assert caplog.records == []  # nothing new
    dp.log_drops({"dropped_new_client": 1007, "dropped_ratelimit": 5}, 2.0)
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("DP014 eth9: 1000 DHCP frames from unseen clients") for m in lines)
    assert any(m.startswith("DP015 eth9: 2 DHCP frames from clients over") for m in lines)
    caplog.clear()
    for i in range(10):
        dp.log_drops({"dropped_new_client": 2000 + i, "dropped_ratelimit": 5}, 3.0 + i)
    dp14 = [r.getMessage() for r in caplog.records if "DP014" in r.getMessage()]
    assert len(dp14) == 5 and "suppressed" in dp14[-1]  # 4 more lines, then the notice
    caplog.clear()
    dp.log_drops({"dropped_new_client": 3000, "dropped_ratelimit": 5}, 100.0)
    assert any(r.getMessage().startswith("DP014") for r in caplog.records)  # a new minute
