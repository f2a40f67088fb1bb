"""The interfaces/ layout (many client interfaces, several VRRP groups) and the
one-interface layout read onto the same model: what each tree means, and every mistake
refused naming the file and the value (docs/config.md, "The shape")."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.config.model import (
    LEGACY_GROUP,
    Config,
    InterfaceConfig,
    Unsupported,
    drift_summary,
    stable_indexes,
)
from appliance.config.tree import ConfigError, load, missing_interfaces, write_tree
from appliance.testing.trees import interfaces_tree, standalone_tree

TWO_VLANS = {"eth1.100": [("ga", "192.0.2.1/24")], "eth1.200": [("gb", "198.51.100.1/24")]}
GROUPS = {"ga": {"vrid": "10", "priority": "200"}, "gb": {"vrid": "20", "priority": "100"}}
SYNC = {"sync/interface": "eth2", "sync/local": "198.51.100.1:6470",
        "sync/peer": "198.51.100.2:6470", "sync/key": "0123456789abcdef" * 3}


def problems(etc: Path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(etc)
    return [str(p) for p in e.value.problems]


def one(msgs: list[str], path: Path, *words: str) -> str:
    found = [m for m in msgs if m.startswith(f"{path}: ") and all(w in m for w in words)]
    assert found, f"no problem for {path} saying {words}: {msgs}"
    return found[0]


# -- what trees mean ------------------------------------------------------------------
def test_two_vlans_in_load_sharing_by_vlan(tmp_path):
    cfg = load(interfaces_tree(tmp_path, interfaces=TWO_VLANS, groups=GROUPS, extra=SYNC))
    assert [(i.name, i.groups, i.virtual_ips) for i in cfg.interfaces] == [
        ("eth1.100", ("ga",), (IPv4Interface("192.0.2.1/24"),)),
        ("eth1.200", ("gb",), (IPv4Interface("198.51.100.1/24"),))]
    ga, gb = cfg.groups
    assert (ga.name, ga.interface, ga.vrrp.vrid, ga.vrrp.priority) == ("ga", "eth1.100", 10, 200)
    assert (gb.name, gb.interface, gb.vrrp.vrid, gb.vrrp.priority) == ("gb", "eth1.200", 20, 100)
    # the advert carries the interface's virtual IP: the server identifier of its clients
    assert ga.vrrp.virtual_ips == (IPv4Interface("192.0.2.1/24"),)
    assert [i.name for i in cfg.bound("ga")] == ["eth1.100"]
    assert cfg.service_vips("ga") == ()  # its one interface is the one it advertises on
    assert cfg.group_index() == {"ga": 0, "gb": 1}
    assert not cfg.standalone and not cfg.legacy


def test_one_lan_shared_by_two_groups(tmp_path):
    cfg = load(interfaces_tree(tmp_path, interfaces={
        "eth1": [("odd", "192.0.2.1/24"), ("even", "192.0.2.2/24")]},
        groups={"odd": {"vrid": "1"}, "even": {"vrid": "2"}}))
    (i,) = cfg.interfaces
    assert i.groups == ("odd", "even") and i.virtual_ip("even") == IPv4Interface("192.0.2.2/24")
    assert {g.name: (g.interface, g.vrrp.virtual_ips[0].ip) for g in cfg.groups} == {
        "odd": ("eth1", IPv4Address("192.0.2.1")), "even": ("eth1", IPv4Address("192.0.2.2"))}


def test_admin_group_moves_many_service_interfaces(tmp_path):
    # Huawei's mVRRP: one election on eth1.10 decides for eth1.100 and eth1.200 too.
    cfg = load(interfaces_tree(tmp_path, interfaces={
        "eth1.10": [("admin", "203.0.113.1/24")], "eth1.100": [("admin", "192.0.2.1/24")],
        "eth1.200": [("admin", "198.51.100.1/24")]},
        groups={"admin": {"vrid": "5", "interface": "eth1.10"}}))
    (g,) = cfg.groups
    assert g.interface == "eth1.10" and g.vrrp.virtual_ips == (IPv4Interface("203.0.113.1/24"),)
    assert cfg.service_vips("admin") == (("eth1.100", IPv4Interface("192.0.2.1/24")),
                                         ("eth1.200", IPv4Interface("198.51.100.1/24")))


def test_advert_interface_defaults_to_the_first_interface_naming_the_group(tmp_path):
    cfg = load(interfaces_tree(tmp_path, interfaces={
        "eth1.200": [("g", "198.51.100.1/24")], "eth1.100": [("g", "192.0.2.1/24")]},
        groups={"g": {"vrid": "7"}}))
    assert cfg.groups[0].interface == "eth1.100"  # in name order, not the order written


def test_group_advertising_where_no_dhcp_is_served_has_its_own_virtual_ip(tmp_path):
    cfg = load(interfaces_tree(tmp_path, interfaces={"eth1.100": [("g", "192.0.2.1/24")]},
                               groups={"g": {"vrid": "7", "interface": "mgmt0",
                                             "virtual_ip": "203.0.113.1/24"}}))
    g = cfg.groups[0]
    assert g.interface == "mgmt0" and g.vrrp.virtual_ips == (IPv4Interface("203.0.113.1/24"),)
    assert cfg.service_vips("g") == (("eth1.100", IPv4Interface("192.0.2.1/24")),)


def test_extra_advert_addresses_follow_the_interface_one(tmp_path):
    cfg = load(interfaces_tree(tmp_path, interfaces={"eth1": [("g", "192.0.2.1/24")]},
                               groups={"g": {"vrid": "7", "virtual_ip": "192.0.2.254/24"}}))
    assert cfg.vrrp.virtual_ips == (IPv4Interface("192.0.2.1/24"),
                                    IPv4Interface("192.0.2.254/24"))


def test_standalone_interface_is_an_empty_folder(tmp_path):
    cfg = load(interfaces_tree(tmp_path, interfaces={"eth1": []}))
    assert cfg.interfaces == (InterfaceConfig("eth1"),) and cfg.standalone
    assert cfg.client_interface == "eth1" and cfg.vrrp is None


# -- the one-interface layout, read unchanged -----------------------------------------
LEGACY_PAIR = {"vrrp/vrid": "10", "vrrp/priority": "120",
               "vrrp/virtual_ip": "192.0.2.1/24\n192.0.2.254/24", "vrrp/track/eth3": "30"}


def test_one_interface_tree_is_one_interface_bound_to_one_group(tmp_path):
    cfg = load(standalone_tree(tmp_path, extra=LEGACY_PAIR))
    assert cfg.legacy
    assert cfg.interfaces == (InterfaceConfig("eth1", (LEGACY_GROUP,),
                                              (IPv4Interface("192.0.2.1/24"),)),)
    (g,) = cfg.groups
    assert (g.name, g.interface, g.vrrp.vrid, g.vrrp.track) == ("vrrp", "eth1", 10,
                                                                (("eth3", 30),))
    assert g.vrrp.virtual_ips == (IPv4Interface("192.0.2.1/24"), IPv4Interface("192.0.2.254/24"))
    # the view code written for one interface reads
    assert cfg.client_interface == "eth1" and cfg.vrrp is g.vrrp


def test_client_interface_alone_is_one_standalone_interface(tmp_path):
    cfg = load(standalone_tree(tmp_path))
    assert cfg.legacy and cfg.interfaces == (InterfaceConfig("eth1"),) and cfg.groups == ()


def test_the_same_pair_written_in_either_layout_is_the_same_config(tmp_path):
    old = load(standalone_tree(tmp_path / "old", extra=LEGACY_PAIR))
    new = load(interfaces_tree(tmp_path / "new", interfaces={
        "eth1": [(LEGACY_GROUP, "192.0.2.1/24")]}, groups={LEGACY_GROUP: {
            "vrid": "10", "priority": "120", "virtual_ip": "192.0.2.254/24",
            "track/eth3": "30"}}, pools={}, extra={
        k: v for k, v in ((k, (tmp_path / "old/etc" / k).read_text().strip())
                          for k in ("pools/lan/subnet", "pools/lan/range", "pools/lan/router",
                                    "pools/lan/dns", "pools/lan/domain",
                                    "pools/lan/lease_time"))}))
    assert replace(new, source="", legacy=True, node=old.node) == replace(old, source="")


# The drift summary a device sent before the interfaces/ layout (sync/transport.py's
# config_summary until then): a peer not yet upgraded still sends exactly this.
def _summary_before(cfg: Config) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for p in cfg.pools:
        base = f"pools/{p.name}"
        out.append((f"{base}/subnet", str(p.subnet)))
        out.append((f"{base}/range", " ".join(f"{a}-{b}" for a, b in sorted(p.ranges))))
        out.append((f"{base}/router", " ".join(map(str, p.router))))
        out.append((f"{base}/dns", " ".join(map(str, p.dns))))
        out.append((f"{base}/domain", p.domain or ""))
        out.append((f"{base}/lease_time", str(p.lease_time)))
        for mac, ip in p.reservations:
            out.append((f"{base}/reservations/{mac.hex(':')}", str(ip)))
    if cfg.vrrp is not None:
        out.append(("vrrp/vrid", str(cfg.vrrp.vrid)))
        out.append(("vrrp/virtual_ip", " ".join(map(str, cfg.vrrp.virtual_ips))))
    return out


@pytest.mark.parametrize("extra", [{}, LEGACY_PAIR, {
    **LEGACY_PAIR, "vrrp/peer": "192.0.2.3", "pools/lan/range":
    "192.0.2.150-192.0.2.199\n192.0.2.100-192.0.2.120",
    "pools/lan/reservations/02:00:00:00:00:01": "192.0.2.50",
    "pools/guest/subnet": "198.51.100.0/24", "pools/guest/range": "198.51.100.9-198.51.100.9"}])
def test_one_interface_tree_sends_the_drift_summary_of_before(tmp_path, extra):
    # A pair upgraded one device at a time: the upgraded one sees no drift in what both
    # compared before; the pool settings added since are compared too (the schema marks
    # them agree), and an older peer lacks them: drift it is right to name.
    cfg = load(standalone_tree(tmp_path, extra=extra))
    now, before = dict(drift_summary(cfg)), dict(_summary_before(cfg))
    assert {p: now.get(p) for p in before} == before
    assert {p.rsplit("/", 1)[1] for p in now.keys() - before.keys()} == set(SINCE)


SINCE = ("max_declined_percent", "max_leases_per_relay", "max_leases_per_circuit",
         "shared_network", "requesters")


def test_drift_summary_of_the_new_layout(tmp_path):
    a = load(interfaces_tree(tmp_path / "a", interfaces=TWO_VLANS, groups=GROUPS,
                             extra={"vrrp/ga/peer": "192.0.2.3"}))
    s = dict(drift_summary(a))
    assert s["interfaces/eth1.100/group"] == "ga"
    assert s["interfaces/eth1.200/virtual_ip"] == "198.51.100.1/24"
    assert s["vrrp/gb/vrid"] == "20" and s["vrrp/ga/interface"] == "eth1.100"
    assert not any(p.endswith(("/priority", "/peer")) for p in s)
    # device B: the priorities swapped, the other device as peer: no drift
    b = load(interfaces_tree(tmp_path / "b", interfaces=TWO_VLANS, groups={
        "ga": {"vrid": "10", "priority": "100"}, "gb": {"vrid": "20", "priority": "200"}},
        extra={"vrrp/ga/peer": "192.0.2.2"}))
    assert drift_summary(a) == drift_summary(b)


# -- mistakes, each named by file and value -------------------------------------------
def test_layouts_mixed_are_refused_naming_both(tmp_path):
    etc = interfaces_tree(tmp_path, interfaces=TWO_VLANS, groups=GROUPS)
    write_tree(etc, {"client/interface": "eth1"})
    one(problems(etc), etc / "interfaces", "mixes two layouts", "client/interface",
        "interfaces/<ifname>/")


def test_a_setting_directly_in_vrrp_beside_groups_is_refused(tmp_path):
    etc = interfaces_tree(tmp_path, interfaces=TWO_VLANS, groups=GROUPS)
    write_tree(etc, {"vrrp/priority": "120", "vrrp/track/eth3": "10"})
    msgs = problems(etc)
    one(msgs, etc / "vrrp/priority", "mixes two layouts", "move it into vrrp/<group>/")
    one(msgs, etc / "vrrp/track", "mixes two layouts")


def test_a_group_folder_in_a_one_interface_tree_is_refused(tmp_path):
    etc = standalone_tree(tmp_path, extra={**LEGACY_PAIR, "vrrp/ga/vrid": "11"})
    msgs = problems(etc)
    one(msgs, etc / "vrrp/ga", "mixes two layouts", "client/interface")
    assert len(msgs) == 1, msgs


def test_no_interface_at_all(tmp_path):
    etc = standalone_tree(tmp_path)
    shutil.rmtree(etc / "client")
    one(problems(etc), etc / "client/interface", "missing", "interfaces/<ifname>/")
    (etc / "interfaces").mkdir()
    one(problems(etc), etc / "interfaces", "holds no interface")


def _tree(tmp_path: Path, interfaces=None, groups=None, **extra: str) -> Path:
    return interfaces_tree(tmp_path, interfaces=interfaces or TWO_VLANS,
                           groups=GROUPS if groups is None else groups, extra=extra)


def test_interface_bound_to_a_group_that_does_not_exist(tmp_path):
    etc = _tree(tmp_path, **{"interfaces/eth1.200/group": "gc"})
    one(problems(etc), etc / "interfaces/eth1.200/group", "'gc'", "no group 'gc'",
        "vrrp/gc/", "groups: ga, gb")


def test_group_no_interface_names(tmp_path):
    etc = _tree(tmp_path, groups={**GROUPS, "gc": {"vrid": "30"}})
    one(problems(etc), etc / "vrrp/gc", "no interface names this group", "vrrp/gc/interface")
    # with an interface and virtual IP of its own it is a group (that serves nothing)
    write_tree(etc, {"vrrp/gc/interface": "eth9", "vrrp/gc/virtual_ip": "203.0.113.1/24"})
    assert load(etc).group("gc").interface == "eth9"


def test_group_on_an_interface_serving_no_dhcp_needs_a_virtual_ip(tmp_path):
    etc = _tree(tmp_path, **{"vrrp/ga/interface": "mgmt0"})
    one(problems(etc), etc / "vrrp/ga/virtual_ip", "missing", "advertises on mgmt0")


@pytest.mark.parametrize("groups,vips,rule", [
    ("ga\ngb\ngc", "192.0.2.1/24\n192.0.2.2/24\n192.0.2.3/24", "3 groups: one line"),
    ("ga\nga", "192.0.2.1/24\n192.0.2.2/24", "names group 'ga' twice"),
    ("# nothing", "192.0.2.1/24", "names no group"),
    ("g/a", "192.0.2.1/24", "group name 'g/a'"),
    ("track", "192.0.2.1/24", "a setting of the one-interface layout"),
])
def test_bad_group_file(tmp_path, groups, vips, rule):
    etc = _tree(tmp_path, **{"interfaces/eth1.100/group": groups,
                             "interfaces/eth1.100/virtual_ip": vips})
    one(problems(etc), etc / "interfaces/eth1.100/group", rule)


@pytest.mark.parametrize("groups,vips,rule", [
    ("ga\ngb", "192.0.2.1/24", "1 lines for 2 in"),
    ("ga", "192.0.2.1/24\n192.0.2.2/24", "2 lines for 1 in"),
    ("ga", None, "missing: one virtual IP/prefix per line"),
    (None, "192.0.2.1/24", "a standalone interface (no group file)"),
    ("ga", "192.0.2.1", "not an IPv4 address with prefix"),
])
def test_virtual_ip_lines_not_matching_group_lines(tmp_path, groups, vips, rule):
    etc = _tree(tmp_path, groups={"ga": {"vrid": "10"}, "gb": {"vrid": "20", "interface":
                                                                "eth9", "virtual_ip":
                                                                "203.0.113.1/24"}},
                **{"interfaces/eth1.200/group": "gb",
                   "interfaces/eth1.200/virtual_ip": "198.51.100.1/24"})
    rel = etc / "interfaces/eth1.100"
    for name, v in (("group", groups), ("virtual_ip", vips)):
        if v is None:
            os.unlink(rel / name)
        else:
            write_tree(etc, {f"interfaces/eth1.100/{name}": v})
    msg = one(problems(etc), rel / "virtual_ip", rule)
    if vips is not None:
        assert vips.split("\n")[0] in msg


@pytest.mark.parametrize("rel,value,rule", [
    ("interfaces/eth1.200/virtual_ip", "192.0.2.1/24", "used twice: "),
    ("interfaces/eth1.200/virtual_ip", "203.0.113.1/24", "outside every pool's subnet"),
    ("interfaces/eth1.200/virtual_ip", "198.51.100.0/24", "is the network address"),
    ("interfaces/eth1.200/virtual_ip", "198.51.100.255/24", "is the broadcast address"),
    ("vrrp/gb/virtual_ip", "192.0.2.1/24", "used twice: "),
    ("vrrp/gb/vrid", "10", "advertises vrid 10 on eth1.100 too"),
    ("vrrp/gb/peer", "198.51.100.1", "not a virtual IP"),
    ("vrrp/gb/priority", "0", "1..255"),
])
def test_bad_addresses_and_vrids(tmp_path, rel, value, rule):
    extra = {rel: value}
    if "vrid" in rel:
        # two groups advertising on one interface
        extra.update({"vrrp/gb/interface": "eth1.100", "vrrp/gb/virtual_ip": "192.0.2.9/24"})
    etc = _tree(tmp_path, **extra)
    msg = one(problems(etc), etc / rel, rule)
    assert value in msg
    if "used twice" in rule:
        assert "interfaces/eth1.100/virtual_ip holds 192.0.2.1" in msg


def test_same_vrid_on_different_interfaces_is_fine(tmp_path):
    cfg = load(_tree(tmp_path, groups={"ga": {"vrid": "10"}, "gb": {"vrid": "10"}}))
    assert [g.vrrp.vrid for g in cfg.groups] == [10, 10]


@pytest.mark.parametrize("name,rule", [
    ("this-name-is-too-long", "interface name"),
    ("eth0:1", "interface name"),
    ("-eth0", "interface name"),
])
def test_interface_folder_that_is_not_a_linux_name(tmp_path, name, rule):
    etc = interfaces_tree(tmp_path, interfaces={"eth1": [], name: []})
    one(problems(etc), etc / "interfaces" / name, f"'{name}'", rule)


def test_track_may_name_any_interface(tmp_path):
    cfg = load(_tree(tmp_path, **{"vrrp/ga/track/uplink0": "50"}))
    assert cfg.group("ga").vrrp.track == (("uplink0", 50),)


@pytest.mark.parametrize("rel,rule", [
    ("interfaces/eth1.100/typo", "unknown setting"),
    ("vrrp/ga/typo", "unknown setting"),
])
def test_unknown_files(tmp_path, rel, rule):
    etc = _tree(tmp_path, **{rel: "1"})
    one(problems(etc), etc / rel, rule)


def test_group_folder_problems(tmp_path):
    etc = _tree(tmp_path)
    os.unlink(etc / "vrrp/gb/vrid")
    os.unlink(etc / "vrrp/gb/priority")
    one(problems(etc), etc / "vrrp/gb", "the folder holds no setting", "its vrid")
    write_tree(etc, {"vrrp/gb/priority": "100"})
    one(problems(etc), etc / "vrrp/gb/vrid", "missing", "remove vrrp/gb/ if the group is gone")
    shutil.rmtree(etc / "vrrp")
    msgs = problems(etc)
    one(msgs, etc / "interfaces/eth1.100/group", "no group 'ga'", "groups: none")


def test_empty_vrrp_folder_in_the_new_layout(tmp_path):
    etc = interfaces_tree(tmp_path, interfaces={"eth1": []})
    (etc / "vrrp").mkdir()
    one(problems(etc), etc / "vrrp", "the folder holds no setting", "vrrp/<group>/")


def test_every_problem_in_one_round(tmp_path):
    etc = _tree(tmp_path, **{"interfaces/eth1.100/group": "gx",
                             "vrrp/gb/advert_interval_ms": "15",
                             "interfaces/eth1.200/virtual_ip": "203.0.113.1/24"})
    msgs = problems(etc)
    one(msgs, etc / "interfaces/eth1.100/group", "no group 'gx'")
    one(msgs, etc / "vrrp/gb/advert_interval_ms", "multiple of 10")
    one(msgs, etc / "interfaces/eth1.200/virtual_ip", "outside every pool")
    one(msgs, etc / "vrrp/ga", "no interface names this group")


def test_check_config_on_the_new_layout(tmp_path, capsys):
    etc = _tree(tmp_path)
    assert main(["check-config", str(etc)]) == 0
    out = capsys.readouterr().out
    assert "2 interfaces (eth1.100, eth1.200)" in out
    assert "ga (vrid 10 on eth1.100, 1 interface(s))" in out
    write_tree(etc, {"interfaces/eth1.100/group": "gc"})
    with pytest.raises(SystemExit):
        main(["check-config", str(etc)])
    assert f"{etc}/interfaces/eth1.100/group: 'gc': no group 'gc'" in capsys.readouterr().err


def test_list_keys_says_how_each_key_reloads(capsys):
    assert main(["check-config", "--list-keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    prio = next(ln for ln in lines if ln.startswith("vrrp/<group>/priority "))
    vrid = next(ln for ln in lines if ln.startswith("vrrp/<group>/vrid "))
    assert " priority " in prio and "group,same" in vrid
    assert any(ln.startswith("client/interface ") and "one-interface layout" in ln
               for ln in lines)


# -- the view for one interface, and what the daemon checks at start -----------------
def test_one_interface_view_refuses_more(tmp_path):
    cfg = load(_tree(tmp_path))
    with pytest.raises(Unsupported, match="2 interface"):
        _ = cfg.client_interface
    with pytest.raises(RuntimeError):
        _ = cfg.vrrp
    # one interface under a group that advertises elsewhere is not the one-interface shape
    cfg = load(interfaces_tree(tmp_path / "m", interfaces={"eth1": [("g", "192.0.2.1/24")]},
                               groups={"g": {"vrid": "1", "interface": "eth0",
                                             "virtual_ip": "203.0.113.1/24"}}))
    with pytest.raises(Unsupported):
        _ = cfg.vrrp


def test_missing_interfaces_names_what_the_box_lacks(tmp_path):
    lo = socket.if_nameindex()[0][1]  # an interface this namespace has
    cfg = load(interfaces_tree(tmp_path, interfaces={
        lo: [], "nosuch100": [("g", "192.0.2.1/24")]},
        groups={"g": {"vrid": "1", "interface": "nosuch0", "virtual_ip": "203.0.113.1/24"}}))
    assert missing_interfaces(cfg) == ["nosuch0", "nosuch100"]


def test_daemon_names_missing_interface_at_start(tmp_path):
    from appliance import daemon

    etc = interfaces_tree(tmp_path, interfaces={"nosuch100": [], "lo": []})
    # `run` logs it as D099 cannot run: ... and exits 1
    with pytest.raises(RuntimeError, match=r"interface\(s\) not on this box: nosuch100 "):
        daemon.run(load(etc))


def test_stable_indexes_keep_running_groups_in_place():
    assert stable_indexes({}, ["gb", "ga"]) == {"ga": 0, "gb": 1}
    assert stable_indexes({"ga": 0, "gb": 1}, ["gb", "gc"]) == {"gb": 1, "gc": 0}
    assert stable_indexes({"gb": 1, "gc": 0}, ["ga", "gb", "gc"]) == {"ga": 2, "gb": 1, "gc": 0}
