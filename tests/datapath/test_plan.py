"""Pure parts of the datapath: plan (limits, interfaces placed on their ports, reload,
the decision), the link table decoder, stats summing, the facade in mode "off", and
importability without bcc. No root needed."""

from __future__ import annotations

import logging
import re
import struct
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config.model import DatapathConfig
from appliance.datapath import layout, links, plan, stats
from appliance.datapath.plan import (
    Binding,
    BudgetReset,
    ConfigWrite,
    Link,
    MapState,
    PlanError,
)
from appliance.dhcp import loadbalance


def test_unchanged_limits_write_nothing():
    """A takeover never goes through here: it is one group_role write (GroupSwitch)."""
    state = plan.desired(50, 0, 200, 0)
    assert plan.diff(state, state) == []
    assert plan.diff(plan.INITIAL, plan.desired(0, 0)) == []


def test_config_then_budget_reset():
    assert plan.diff(plan.INITIAL, plan.desired(10, 5)) == [ConfigWrite(10, 5)]
    assert plan.diff(plan.INITIAL, plan.desired(10, 5, 200, 0)) == [
        ConfigWrite(10, 5, 200, 400), BudgetReset()]


def test_budget_reset_only_when_the_budget_changes():
    """The per-client limit keeps its buckets; a new budget starts full."""
    base = plan.desired(50, 0, 200, 0)
    assert plan.diff(base, plan.desired(80, 0, 200, 0)) == [
        ConfigWrite(80, 160, 200, 400)]
    assert plan.diff(base, plan.desired(50, 0, 100, 0)) == [
        ConfigWrite(50, 100, 100, 200), BudgetReset()]
    assert plan.diff(base, plan.desired(50, 0, 200, 400)) == []  # same effective burst
    assert plan.diff(base, plan.desired(50, 0, 0, 0)) == [
        ConfigWrite(50, 100, 0, 0), BudgetReset()]


def test_initial_state_is_without_limit():
    assert plan.INITIAL == MapState(0, 0)


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
        plan.desired(pps, burst)
    with pytest.raises(ValueError, match="new_client"):
        plan.desired(0, 0, pps, burst)


_limits = st.tuples(st.integers(0, 1000), st.integers(0, 1000))


@given(_limits, _limits, _limits, _limits)
def test_diff_reaches_desired(r1, n1, r2, n2):
    cur, want = plan.desired(*r1, *n1), plan.desired(*r2, *n2)
    state = cur
    writes = plan.diff(cur, want)
    for w in writes:
        state = plan.apply_write(state, w)
        assert plan.apply_write(plan.apply_write(cur, w), w) == plan.apply_write(cur, w)
    assert state == want
    resets = [i for i, w in enumerate(writes) if isinstance(w, BudgetReset)]
    budget_changed = (cur.new_client_pps, cur.new_client_burst) != \
        (want.new_client_pps, want.new_client_burst)
    assert len(resets) == (1 if budget_changed else 0)
    if resets:  # after the config that carries the new budget
        assert isinstance(writes[resets[0] - 1], ConfigWrite)


# -- interfaces on their ports -------------------------------------------------------------
# A box: eth1 (a NIC port) with VLANs 100 and 200 and QinQ 10.100 (eth1.10 is 802.1ad),
# eth2 with a macvlan, a veth, a bond with a VLAN, a bridge with a VLAN.
LINKS = {link.name: link for link in (
    Link(2, "eth1"),
    Link(3, "eth2"),
    Link(10, "eth1.100", "vlan", link=2, vlan_id=100),
    Link(11, "eth1.200", "vlan", link=2, vlan_id=200),
    Link(12, "eth1.10", "vlan", link=2, vlan_id=10),
    Link(13, "eth1.10.100", "vlan", link=12, vlan_id=100),
    Link(14, "mv0", "macvlan", link=3),
    Link(15, "mv1", "macvlan", link=10),
    Link(16, "veth0", "veth", link=17),
    Link(18, "bond0", "bond"),
    Link(19, "bond0.5", "vlan", link=18, vlan_id=5),
    Link(20, "br0", "bridge"),
    Link(21, "br0.7", "vlan", link=20, vlan_id=7),
    Link(22, "eth1.10.100.5", "vlan", link=13, vlan_id=5),
    Link(23, "far0", "macvlan", link=2, link_other_netns=True),
    Link(24, "eth1.0", "vlan", link=2, vlan_id=0),
)}


def placed(*bindings: tuple[str, tuple[int, ...]]) -> list[tuple[str, int, tuple, tuple]]:
    return [(p.port, p.port_index, p.vlans, p.groups)
            for p in plan.place([Binding(n, g) for n, g in bindings], LINKS)]


def test_each_kind_of_interface_lands_on_its_port():
    assert placed(("eth1", (0,)), ("eth1.100", (1,)), ("eth1.200", (2, 3)),
                  ("eth1.10.100", (4,)), ("mv0", (5,)), ("veth0", (6,))) == [
        ("eth1", 2, (0, 0), (0,)),  # a port, untagged
        ("eth1", 2, (100, 0), (1,)),  # a VLAN: its parent port, its VLAN id
        ("eth1", 2, (200, 0), (2, 3)),  # shared by two groups
        ("eth1", 2, (10, 100), (4,)),  # QinQ: outer VLAN first
        ("eth2", 3, (0, 0), (5,)),  # a macvlan shares its parent's wire, untagged
        ("veth0", 16, (0, 0), (6,)),  # a veth is a port (IFLA_LINK is its peer)
    ]


def test_a_macvlan_on_a_vlan_carries_the_vlans_tag():
    assert placed(("mv1", (0,))) == [("eth1", 2, (100, 0), (0,))]


@pytest.mark.parametrize(("name", "groups", "message"), [
    ("eth9.100", (0,), "interface eth9.100: no such device"),
    ("eth1.10.100.5", (0,), "3 VLAN tags on eth1; the datapath parses 2"),
    ("bond0.5", (0,), "sits on bond0, a bond"),
    ("bond0", (0,), "sits on bond0, a bond"),
    ("br0.7", (0,), "a VLAN on the bridge br0"),
    ("far0", (0,), "in another network namespace"),
    ("eth1.0", (0,), "VLAN id 0"),
    ("eth1", (), "0 groups"),
    ("eth1", (1, 2, 3), "3 groups"),
    ("eth1", (4, 4), "group 4 twice"),
    ("eth1", (layout.MAX_GROUPS,), f"group index {layout.MAX_GROUPS} outside"),
    ("eth1", (-1,), "group index -1 outside"),
])
def test_what_cannot_be_placed_is_refused_by_name(name, groups, message):
    with pytest.raises(PlanError, match=re.escape(message)) as e:
        plan.place([Binding("eth1.100", (0,)), Binding(name, groups)], LINKS)
    assert name in str(e.value)


def test_an_interface_bound_twice_is_refused():
    with pytest.raises(PlanError, match="interface eth2: bound twice"):
        plan.place([Binding("eth2", (0,)), Binding("eth2", (1,))], LINKS)


def test_two_interfaces_on_the_same_wire_are_refused():
    """eth2 and its macvlan receive the same frames: which group would serve them?"""
    with pytest.raises(PlanError, match="interfaces eth2 and mv0 both receive eth2 untagged"):
        plan.place([Binding("eth2", (0,)), Binding("mv0", (1,))], LINKS)
    with pytest.raises(PlanError, match=r"eth1\.100 and mv1 both receive eth1 VLAN 100"):
        plan.place([Binding("eth1.100", (0,)), Binding("mv1", (0,))], LINKS)


def _placements(*bindings: tuple[str, tuple[int, ...]]) -> tuple[plan.Placement, ...]:
    return plan.place([Binding(n, g) for n, g in bindings], LINKS)


def test_reload_touches_only_what_changed():
    old = _placements(("eth1.100", (0,)), ("eth1.200", (1,)), ("mv0", (2,)))
    new = _placements(("eth1.100", (0,)), ("eth1.200", (1, 3)), ("veth0", (4,)))
    r = plan.reload(old, new)
    assert r.upsert == (((2, (200, 0)), (1, 3)), ((16, (0, 0)), (4,)))
    assert r.attach == ((16, "veth0"),)
    assert r.detach == ((3, "eth2"),)  # mv0 was eth2's only interface
    assert r.delete == ((3, (0, 0)),)
    assert r.release == frozenset({2})
    assert plan.reload(new, new).empty


def test_reload_keeps_a_port_that_still_carries_an_interface():
    old = _placements(("eth1.100", (0,)), ("eth1.200", (0,)))
    new = _placements(("eth1.100", (0,)))
    r = plan.reload(old, new)
    assert (r.attach, r.detach, r.delete, r.release) == ((), (), ((2, (200, 0)),),
                                                         frozenset())


@given(st.lists(st.sampled_from(["eth1", "eth1.100", "eth1.200", "eth1.10.100", "mv0",
                                 "veth0"]), unique=True),
       st.lists(st.sampled_from(["eth1", "eth1.100", "eth1.200", "eth1.10.100", "mv0",
                                 "veth0"]), unique=True),
       st.integers(0, 3))
def test_reload_applied_to_the_old_table_gives_the_new_one(a, b, shift):
    old = _placements(*((n, (i,)) for i, n in enumerate(a)))
    new = _placements(*((n, ((i + shift) % 4,)) for i, n in enumerate(b)))
    r = plan.reload(old, new)
    t = plan.table(old)
    t.update(dict(r.upsert))
    for k in r.delete:
        del t[k]
    assert t == plan.table(new)
    ports = plan.ports(old)
    ports.update(dict(r.attach))
    for i, _ in r.detach:
        del ports[i]
    assert ports == plan.ports(new)
    assert r.release == plan.groups_of(old) - plan.groups_of(new)


# -- the decision ----------------------------------------------------------------------------
def test_decide_one_group():
    on: set[int] = set()
    mac = bytes(6)
    assert plan.decide((3,), on.__contains__, mac, 6) == (3, layout.Stat.DROPPED_STANDBY)
    on.add(3)
    assert plan.decide((3,), on.__contains__, mac, 6) == (3, layout.Stat.PASSED)
    assert plan.decide(None, on.__contains__, mac, 6) == (None, layout.Stat.UNBOUND)


@given(st.binary(min_size=16, max_size=16), st.integers(0, 20), st.booleans(),
       st.booleans())
def test_decide_shared_interface(chaddr, hlen, a_on, b_on):
    on = {g for g, flag in ((7, a_on), (9, b_on)) if flag}
    group, outcome = plan.decide((7, 9), on.__contains__, chaddr, hlen)
    assert group == (7, 9)[loadbalance.group_of(chaddr, hlen)]
    if group in on:
        assert outcome is layout.Stat.PASSED
    elif on:
        assert outcome is layout.Stat.DROPPED_OTHER_BUCKET  # the other group is ours
    else:
        assert outcome is layout.Stat.DROPPED_STANDBY


# -- the link table decoder -------------------------------------------------------------------
def _nlmsg(kind: int, body: bytes, seq: int = 1) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), kind, 2, seq, 0) + body


def _rta(kind: int, data: bytes) -> bytes:
    n = 4 + len(data)
    return struct.pack("=HH", n, kind) + data + b"\0" * ((n + 3 & ~3) - n)


def _newlink(index: int, name: str, kind: str = "", parent: int = 0, vid: int = 0) -> bytes:
    body = struct.pack("=BxHiII", 0, 1, index, 0, 0) + _rta(links.IFLA_IFNAME,
                                                          name.encode() + b"\0")
    if parent:
        body += _rta(links.IFLA_LINK, struct.pack("=I", parent))
    if kind:
        info = _rta(links.IFLA_INFO_KIND, kind.encode() + b"\0")
        if kind == "vlan":
            info += _rta(links.IFLA_INFO_DATA | 0x8000,
                         _rta(links.IFLA_VLAN_ID, struct.pack("=H", vid)))
        body += _rta(links.IFLA_LINKINFO | 0x8000, info)
    return _nlmsg(links.RTM_NEWLINK, body)


def test_decode_reads_names_kinds_parents_and_vlan_ids():
    buf = (_newlink(2, "eth1") + _newlink(10, "eth1.100", "vlan", 2, 100)
           + _newlink(14, "mv0", "macvlan", 2) + _nlmsg(links.NLMSG_DONE, b"\0" * 4))
    got = [body for _k, _s, body in links.decode(buf)]
    assert got == [Link(2, "eth1"), Link(10, "eth1.100", "vlan", 2, False, 100),
                   Link(14, "mv0", "macvlan", 2), None]


@given(st.binary(max_size=400))
def test_decode_refuses_garbage_with_link_error_only(buf):
    try:
        list(links.decode(buf))
    except links.LinkError:
        pass


@given(st.integers(0, 200), st.binary(min_size=1, max_size=8))
def test_decode_survives_damage_to_a_real_message(at, junk):
    good = _newlink(10, "eth1.100", "vlan", 2, 100)
    bad = good[:at] + junk + good[at + len(junk):]
    try:
        list(links.decode(bad))
    except links.LinkError:
        pass


def test_compile_flags_only_name_what_differs():
    assert plan.compile_flags() == []
    assert plan.compile_flags(1024) == ["-DRATE_LIMIT_ENTRIES=1024"]
    assert plan.compile_flags(max_groups=8, iface_entries=16) == [
        "-DMAX_GROUPS=8", "-DIFACE_ENTRIES=16"]
    with pytest.raises(ValueError):
        plan.compile_flags(0)


def test_sum_percpu_names_every_counter():
    cpu0 = [3, 1, 0, 5, 0, 7, 2, 0]
    cpu1 = [2, 2, 0, 5, 1, 0, 0, 4]
    assert stats.sum_percpu([cpu0, cpu1]) == {
        "seen": 5, "passed": 3, "dropped_standby": 0, "dropped_ratelimit": 10,
        "malformed": 1, "dropped_new_client": 7, "dropped_other_bucket": 2, "unbound": 4}
    with pytest.raises(ValueError):
        stats.sum_percpu([cpu0[:6]])
    assert stats.delta({"seen": 1}, {"seen": 4, "passed": 2}) == {"seen": 3, "passed": 2}


def test_totals_add_every_group_and_the_unbound_slot():
    slots = {0: [[1, 1, 0, 0, 0, 0, 0, 0]], 5: [[2, 0, 2, 0, 0, 0, 0, 0]],
             layout.STATS_SLOT_UNBOUND: [[0, 0, 0, 0, 0, 0, 0, 9]]}
    c = stats.Counters(lambda slot: slots.get(slot, [[0] * layout.STAT_MAX]))
    total = c.read([0, 5, 5])
    assert (total["seen"], total["passed"], total["dropped_standby"], total["unbound"]) == (
        3, 1, 2, 9)
    assert c.group(5)["seen"] == 2 and c.unbound() == 9


def test_counter_names_are_the_runtime_tree_names():
    assert [s.counter_name for s in layout.Stat] == [
        "seen", "passed", "dropped_standby", "dropped_ratelimit", "malformed",
        "dropped_new_client", "dropped_other_bucket", "unbound"]
    assert layout.STAT_MAX == 8
    assert layout.Stat.UNBOUND not in layout.OUTCOMES  # not ours: outside seen
    assert set(layout.OUTCOMES) == set(layout.Stat) - {layout.Stat.SEEN, layout.Stat.UNBOUND}


def test_mode_off_keeps_the_role_in_python(caplog):
    from appliance.datapath import Datapath

    caplog.set_level(logging.INFO)
    dp = Datapath.open("eth-nonexistent", DatapathConfig(mode="off", rate_limit_pps=5,
                                                         new_client_pps=0))
    assert (dp.attach_mode, dp.role, dp.counters(), dp.program) == ("off", False, {}, None)
    dp.set_role(True)
    assert dp.role is True and dp.group_role(0) is True
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


def test_mode_off_decides_per_group_and_bucket_in_user_space(caplog):
    """Mode "off": every group starts standby; verdict() is the kernel's rule, so the
    server drops what the kernel would have dropped; a reload rebinds, and a group no
    interface is bound to any more goes back to standby."""
    from appliance.datapath import Datapath

    caplog.set_level(logging.INFO)
    dp = Datapath.open([Binding("eth1.100", (0,)), Binding("eth1.200", (1,)),
                        Binding("eth2", (0, 1))], DatapathConfig(mode="off"))
    macs = [bytes([2, 0, 0, 0, 0, i]) for i in range(40)]
    even = [m for m in macs if loadbalance.group_of(m, 6) == 0]
    odd = [m for m in macs if loadbalance.group_of(m, 6) == 1]
    assert even and odd
    S = layout.Stat
    assert dp.verdict("eth1.100", even[0], 6) is S.DROPPED_STANDBY
    assert dp.verdict("eth9", even[0], 6) is S.UNBOUND and dp.serves("eth9", even[0], 6)
    dp.set_group_role(0, True)
    assert dp.active_groups == {0}
    assert dp.verdict("eth1.100", odd[0], 6) is S.PASSED
    assert dp.verdict("eth1.200", odd[0], 6) is S.DROPPED_STANDBY
    assert {dp.verdict("eth2", m, 6) for m in even} == {S.PASSED}
    assert {dp.verdict("eth2", m, 6) for m in odd} == {S.DROPPED_OTHER_BUCKET}
    dp.set_group_role(1, True)
    assert {dp.verdict("eth2", m, 6) for m in macs} == {S.PASSED}
    assert any("DP009 group 1 active (2 interfaces)" in r.getMessage()
               for r in caplog.records)

    change = dp.set_interfaces([Binding("eth1.100", (0,)), Binding("eth1.300", (2,))])
    assert change.release == {1}
    assert dp.group_role(1) is False and dp.group_role(0) is True
    assert dp.verdict("eth1.200", odd[0], 6) is S.UNBOUND
    assert dp.verdict("eth1.300", odd[0], 6) is S.DROPPED_STANDBY
    with pytest.raises(IndexError):
        dp.set_group_role(layout.MAX_GROUPS, True)
    with pytest.raises(PlanError):
        dp.set_interfaces([Binding("eth1", (0, 0))])
    assert [b.name for b in dp.bindings] == ["eth1.100", "eth1.300"]  # unchanged
    dp.close()
    assert dp.active_groups == frozenset()


def test_xdp_open_names_the_missing_interface_before_compiling():
    """A VLAN interface missing on the box is reported at start, by name, and nothing
    is compiled or attached (no root needed: the link table is the test's)."""
    from appliance.datapath import Datapath, DatapathError

    with pytest.raises(DatapathError, match=r"interface eth1\.300: no such device"):
        Datapath.open([Binding("eth1.100", (0,)), Binding("eth1.300", (1,))],
                      DatapathConfig(mode="xdp"), read_links=lambda: LINKS)
