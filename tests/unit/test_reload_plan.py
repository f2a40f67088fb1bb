"""Reload as a plan computed from the schema: every key says how a change applies
(Key.reload) and whether the two devices must agree (Key.agree), and a test changes
each key, in a tree where every key is set, and checks what plan() and the drift
summary make of it. A key added to schema.py without a case here fails
test_every_key_has_a_class_and_a_case."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from appliance.config.model import (
    ALL_LIVE,
    Config,
    canonical,
    diff,
    drift_summary,
    plan,
    settings,
)
from appliance.config.schema import KEY_BY_PATH, KEYS, Reload
from appliance.config.tree import load, write_tree

KEY = "0123456789abcdef" * 3

# Every key of the interfaces/ layout set, none at its default.
FULL = {
    "node/name": "deviceA", "node/state_dir": "/var/lib/a", "node/run_dir": "/run/a",
    "interfaces/eth1.100/group": "ga", "interfaces/eth1.100/virtual_ip": "192.0.2.1/24",
    "interfaces/eth1.200/group": "ga\ngb",
    "interfaces/eth1.200/virtual_ip": "198.51.100.1/24\n198.51.100.2/24",
    "vrrp/ga/interface": "eth1.100", "vrrp/ga/vrid": "10", "vrrp/ga/priority": "200",
    "vrrp/ga/advert_interval_ms": "200", "vrrp/ga/preempt": "0",
    "vrrp/ga/preempt_delay_ms": "1000", "vrrp/ga/virtual_ip": "203.0.113.1/24",
    "vrrp/ga/use_vmac": "1", "vrrp/ga/accept": "0", "vrrp/ga/garp_count": "3",
    "vrrp/ga/garp_interval_ms": "10", "vrrp/ga/garp_repeat_s": "0",
    "vrrp/ga/peer": "192.0.2.3", "vrrp/ga/track/eth9": "30",
    "vrrp/gb/vrid": "20", "vrrp/gb/priority": "100",
    "sync/interface": "eth2", "sync/local": "198.51.100.11:6470",
    "sync/peer": "198.51.100.12:6470", "sync/key": KEY, "sync/mode": "async",
    "sync/ack_timeout_ms": "80", "sync/max_clock_skew_ms": "2000",
    "pools/v100/max_declined_percent": "20", "pools/v100/max_leases_per_relay": "100",
    "pools/v100/max_leases_per_circuit": "4",
    "pools/v100/subnet": "192.0.2.0/24", "pools/v100/range": "192.0.2.100-192.0.2.199",
    "pools/v100/router": "192.0.2.1", "pools/v100/dns": "192.0.2.53",
    "pools/v100/domain": "example.net", "pools/v100/lease_time": "600",
    "pools/v100/reservations/02:00:00:00:00:01": "192.0.2.50",
    "pools/v200/subnet": "198.51.100.0/24", "pools/v200/range": "198.51.100.100-198.51.100.199",
    "datapath/mode": "off", "datapath/rate_limit_pps": "60", "datapath/rate_limit_burst": "90",
    "datapath/new_client_pps": "300", "datapath/new_client_burst": "400",
    "pools/v100/alarm_percent": "80", "pools/v100/alarm_clear_percent": "60",
    "metrics/listen": "192.0.2.2:9467",
    "pools/v100/shared_network": "lan", "pools/v200/shared_network": "lan",
    "leasequery/requesters": "198.51.100.0/24", "leasequery/bulk_listen": "0.0.0.0:67",
    "leasequery/bulk_max_connections": "4", "leasequery/bulk_idle_timeout_s": "30",
    # options at each level, classes, hosts (docs/dhcp-options.md)
    "options/ntp-servers": "192.0.2.123",
    "pools/v100/min_lease_time": "30", "pools/v100/max_lease_time": "7200",
    "pools/v100/renew_time": "10", "pools/v100/rebind_time": "20",
    "pools/v100/allow_classes": "c1", "pools/v100/deny_classes": "c2",
    "pools/v100/options/tftp-server-name": "tftp.example.net",
    "classes/c1/vendor_class": "MSFT*", "classes/c1/user_class": "iPXE",
    "classes/c1/circuit_id": "eth0/1", "classes/c1/remote_id": "0x0011*",
    "classes/c1/mac_prefix": "00:1a:2b", "classes/c1/relay": "198.51.100.0/24",
    "classes/c1/options/boot-file-name": "pxe.0", "classes/c2/vendor_class": "udhcp*",
    "hosts/h1/mac": "02:00:00:00:00:10", "hosts/h1/address": "192.0.2.60",
    "hosts/h1/hostname": "cpe-1", "hosts/h1/options/domain-name": "h1.example.net",
    "hosts/h2/circuit_id": "eth0/1/5", "hosts/h2/relay": "198.51.100.1",
    "hosts/h3/client_id": "01:02:00:00:00:00:11", "hosts/h4/remote_id": "0x001122334455",
}

# The one-interface layout with every key set.
FULL_LEGACY = {
    **{k: v for k, v in FULL.items() if not k.startswith(("interfaces/", "vrrp/"))},
    "client/interface": "eth1",
    **{"vrrp/" + k[len("vrrp/ga/"):]: v for k, v in FULL.items()
       if k.startswith("vrrp/ga/") and k != "vrrp/ga/interface"},
    "vrrp/virtual_ip": "192.0.2.1/24\n192.0.2.254/24",
}

# schema key -> (the file changed, its new value)
CASES = {
    "node/name": ("node/name", "deviceZ"),
    "node/state_dir": ("node/state_dir", "/var/lib/z"),
    "node/run_dir": ("node/run_dir", "/run/z"),
    # the load-sharing order swapped: the addresses change groups
    "interfaces/<ifname>/group": ("interfaces/eth1.200/group", "gb\nga"),
    "interfaces/<ifname>/virtual_ip": ("interfaces/eth1.200/virtual_ip",
                                       "198.51.100.1/24\n198.51.100.3/24"),
    "vrrp/<group>/interface": ("vrrp/ga/interface", "eth1.200"),
    "vrrp/<group>/vrid": ("vrrp/ga/vrid", "11"),
    "vrrp/<group>/priority": ("vrrp/ga/priority", "90"),
    "vrrp/<group>/advert_interval_ms": ("vrrp/ga/advert_interval_ms", "100"),
    "vrrp/<group>/preempt": ("vrrp/ga/preempt", "1"),
    "vrrp/<group>/preempt_delay_ms": ("vrrp/ga/preempt_delay_ms", "0"),
    "vrrp/<group>/virtual_ip": ("vrrp/ga/virtual_ip", "203.0.113.2/24"),
    "vrrp/<group>/use_vmac": ("vrrp/ga/use_vmac", "0"),
    "vrrp/<group>/accept": ("vrrp/ga/accept", "1"),
    "vrrp/<group>/garp_count": ("vrrp/ga/garp_count", "5"),
    "vrrp/<group>/garp_interval_ms": ("vrrp/ga/garp_interval_ms", "0"),
    "vrrp/<group>/garp_repeat_s": ("vrrp/ga/garp_repeat_s", "5"),
    "vrrp/<group>/peer": ("vrrp/ga/peer", "192.0.2.4"),
    "vrrp/<group>/track/<ifname>": ("vrrp/ga/track/eth9", "40"),
    "sync/interface": ("sync/interface", "eth3"),
    "sync/local": ("sync/local", "198.51.100.11:6471"),
    "sync/peer": ("sync/peer", "198.51.100.12:6471"),
    "sync/key": ("sync/key", "f" * 48),
    "sync/mode": ("sync/mode", "sync"),
    "sync/ack_timeout_ms": ("sync/ack_timeout_ms", "50"),
    "sync/max_clock_skew_ms": ("sync/max_clock_skew_ms", "1000"),
    "pools/<name>/max_declined_percent": ("pools/v100/max_declined_percent", "10"),
    "pools/<name>/max_leases_per_relay": ("pools/v100/max_leases_per_relay", "0"),
    "pools/<name>/max_leases_per_circuit": ("pools/v100/max_leases_per_circuit", "8"),
    "pools/<name>/subnet": ("pools/v200/subnet", "198.51.100.0/23"),
    "pools/<name>/range": ("pools/v100/range", "192.0.2.100-192.0.2.249"),
    "pools/<name>/router": ("pools/v100/router", "192.0.2.2"),
    "pools/<name>/dns": ("pools/v100/dns", "192.0.2.53\n192.0.2.54"),
    "pools/<name>/domain": ("pools/v100/domain", "example.org"),
    "pools/<name>/lease_time": ("pools/v100/lease_time", "3600"),
    "pools/<name>/reservations/<mac>": ("pools/v100/reservations/02:00:00:00:00:01",
                                        "192.0.2.51"),
    "datapath/mode": ("datapath/mode", "xdp"),
    "datapath/rate_limit_pps": ("datapath/rate_limit_pps", "61"),
    "datapath/rate_limit_burst": ("datapath/rate_limit_burst", "91"),
    "datapath/new_client_pps": ("datapath/new_client_pps", "301"),
    "datapath/new_client_burst": ("datapath/new_client_burst", "401"),
    "pools/<name>/alarm_percent": ("pools/v100/alarm_percent", "85"),
    "pools/<name>/alarm_clear_percent": ("pools/v100/alarm_clear_percent", "70"),
    "metrics/listen": ("metrics/listen", "192.0.2.2:9468"),
    "pools/<name>/shared_network": ("pools/v200/shared_network", "other"),
    "leasequery/requesters": ("leasequery/requesters", "198.51.100.0/24\n203.0.113.7"),
    "leasequery/bulk_listen": ("leasequery/bulk_listen", "0.0.0.0:6767"),
    "leasequery/bulk_max_connections": ("leasequery/bulk_max_connections", "5"),
    "leasequery/bulk_idle_timeout_s": ("leasequery/bulk_idle_timeout_s", "31"),
    "options/<option>": ("options/ntp-servers", "192.0.2.124"),
    "pools/<name>/min_lease_time": ("pools/v100/min_lease_time", "40"),
    "pools/<name>/max_lease_time": ("pools/v100/max_lease_time", "3600"),
    "pools/<name>/renew_time": ("pools/v100/renew_time", "15"),
    "pools/<name>/rebind_time": ("pools/v100/rebind_time", "25"),
    "pools/<name>/allow_classes": ("pools/v100/allow_classes", "c2"),
    "pools/<name>/deny_classes": ("pools/v100/deny_classes", "c1"),
    "pools/<name>/options/<option>": ("pools/v100/options/tftp-server-name", "tftp2.example.net"),
    "classes/<class>/vendor_class": ("classes/c1/vendor_class", "MSFT 5.0"),
    "classes/<class>/user_class": ("classes/c1/user_class", "gPXE"),
    "classes/<class>/circuit_id": ("classes/c1/circuit_id", "eth0/2"),
    "classes/<class>/remote_id": ("classes/c1/remote_id", "0x0012*"),
    "classes/<class>/mac_prefix": ("classes/c1/mac_prefix", "00:1a:2c"),
    "classes/<class>/relay": ("classes/c1/relay", "198.51.100.0/25"),
    "classes/<class>/options/<option>": ("classes/c1/options/boot-file-name", "pxe.1"),
    "hosts/<host>/mac": ("hosts/h1/mac", "02:00:00:00:00:12"),
    "hosts/<host>/address": ("hosts/h1/address", "192.0.2.61"),
    "hosts/<host>/hostname": ("hosts/h1/hostname", "cpe-2"),
    "hosts/<host>/options/<option>": ("hosts/h1/options/domain-name", "h2.example.net"),
    "hosts/<host>/circuit_id": ("hosts/h2/circuit_id", "eth0/1/6"),
    "hosts/<host>/relay": ("hosts/h2/relay", "198.51.100.2"),
    "hosts/<host>/client_id": ("hosts/h3/client_id", "01:02:00:00:00:00:12"),
    "hosts/<host>/remote_id": ("hosts/h4/remote_id", "0x001122334466"),
}
LEGACY_CASES = {
    "client/interface": ("client/interface", "eth3"),
    # a second line: the server identifier (the first) stays; the interface is the same
    "vrrp/virtual_ip": ("vrrp/virtual_ip", "192.0.2.1/24\n192.0.2.253/24"),
    **{"vrrp/" + k[len("vrrp/<group>/"):]: ("vrrp/" + rel[len("vrrp/ga/"):], v)
       for k, (rel, v) in CASES.items()
       if k.startswith("vrrp/<group>/") and k not in ("vrrp/<group>/interface",
                                                      "vrrp/<group>/virtual_ip")},
}
ALL_CASES = {**CASES, **LEGACY_CASES}


def tree(tmp_path: Path, name: str, values: dict[str, str]) -> Config:
    write_tree(tmp_path / name, values)
    return load(tmp_path / name)


def test_every_key_has_a_class_and_a_case():
    unclassified = [k.path for k in KEYS if k.reload is None or k.agree is None]
    assert not unclassified, (
        "give these keys reload=Reload.<class> and agree=True|False in "
        f"config/schema.py (docs/config.md lists the classes): {unclassified}")
    assert set(ALL_CASES) == set(KEY_BY_PATH), \
        "add a case to CASES (or LEGACY_CASES) for: " + \
        ", ".join(sorted(set(KEY_BY_PATH) - set(ALL_CASES)))


@pytest.mark.parametrize("values", [FULL, FULL_LEGACY], ids=["interfaces", "one-interface"])
def test_every_key_is_in_the_flat_view_and_nothing_else(tmp_path, values):
    # settings() walks the model; every value it yields is a key of the schema, and a
    # tree with every key set yields every key of its layout.
    cfg = tree(tmp_path, "t", values)
    seen = {s.key for s in settings(cfg)}
    assert seen <= set(KEY_BY_PATH), seen - set(KEY_BY_PATH)
    legacy = values is FULL_LEGACY
    assert seen == {k.path for k in KEYS if k.legacy == legacy
                    or (k.path.split("/")[0] in ("node", "sync", "pools", "datapath",
                                                 "metrics", "leasequery", "options",
                                                 "classes", "hosts"))}


@pytest.mark.parametrize("key", sorted(ALL_CASES))
def test_changing_each_key(tmp_path, key):
    k = KEY_BY_PATH[key]
    base = FULL_LEGACY if k.legacy else FULL
    rel, value = ALL_CASES[key]
    old = tree(tmp_path, "old", base)
    new = tree(tmp_path, "new", {**base, rel: value})
    p = plan(old, new)
    assert rel in p.changed and diff(old, new) == list(p.changed)
    touched = [s.path for s in settings(old) if s.key == key]
    assert rel in touched

    cls = k.reload
    if cls is Reload.RESTART:
        assert p.restart_needed == (rel,) and p.applied == ()
        # the running value stays in force
        assert {s.path: s.value for s in settings(p.config)} == \
            {s.path: s.value for s in settings(old)}
    else:
        assert p.applied == (rel,) and p.restart_needed == ()
        assert replace(p.config, source="") == replace(new, source="")
    groups_restarted = {g.name for g in p.groups_restarted}
    interfaces = {i.name for i in p.interfaces_removed} | {i.name for i in p.interfaces_added}
    effects = {
        Reload.POOLS: bool(p.pools_changed),
        Reload.PRIORITY: bool(p.priorities),
        Reload.GROUP: bool(groups_restarted),
        Reload.MEMBERSHIP: bool(interfaces),
        Reload.DATAPATH: p.datapath_limits is not None,
        Reload.METRICS: p.metrics is not None,
        Reload.LEASEQUERY: p.leasequery is not None,
    }
    assert [c for c, on in effects.items() if on] == ([] if cls is Reload.RESTART else [cls]) \
        or cls is Reload.MEMBERSHIP  # a re-bound interface may restart its group too
    if cls is Reload.POOLS and rel.startswith("pools/"):
        assert p.pools_changed == (rel.split("/")[1],)
    elif cls is Reload.POOLS:
        # options, classes and hosts are every pool's: all are rebuilt
        assert p.pools_changed == tuple(sorted(x.name for x in new.pools))
    elif cls is Reload.PRIORITY:
        assert p.priorities == ((new.groups[0].name, int(value)),)
    elif cls is Reload.GROUP:
        assert groups_restarted == {new.groups[0].name}
        assert [g.vrrp for g in p.groups_restarted] == [new.groups[0].vrrp]
    elif cls is Reload.MEMBERSHIP:
        assert interfaces and not (p.groups_added or p.groups_removed)
    elif cls is Reload.DATAPATH:
        assert p.datapath_limits == new.datapath
    elif cls is Reload.METRICS:
        assert p.metrics == new.metrics

    # Nothing live (an executor that applies nothing): all of it waits, old in force.
    held = plan(old, new, live=frozenset())
    assert held.restart_needed == p.changed and held.applied == ()
    assert {s.path: s.value for s in settings(held.config)} == \
        {s.path: s.value for s in settings(old)}

    # The drift check compares it iff the schema says the devices must agree.
    before, after = dict(drift_summary(old)), dict(drift_summary(new))
    assert (before != after) == bool(k.agree), (before, after)
    if k.agree:
        assert {p for p in before.keys() | after.keys()
                if before.get(p) != after.get(p)} == {rel}


def test_only_classified_keys_in_the_drift_summary(tmp_path):
    for name, values in (("new", FULL), ("legacy", FULL_LEGACY)):
        cfg = tree(tmp_path, name, values)
        agree = {s.path for s in settings(cfg) if KEY_BY_PATH[s.key].agree}
        assert {p for p, _ in drift_summary(cfg)} == agree
        assert not any(p.endswith(("/priority", "/peer", "sync/key")) for p in agree)


# -- items added and removed, and today's daemon (no membership changes live) ---------
TODAY = frozenset({Reload.POOLS, Reload.PRIORITY, Reload.GROUP, Reload.DATAPATH,
                   Reload.METRICS})


def _without(values: dict[str, str], *prefixes: str) -> dict[str, str]:
    return {k: v for k, v in values.items() if not k.startswith(prefixes)}


def test_interface_and_group_added_and_removed_leave_the_others_alone(tmp_path):
    old = tree(tmp_path, "old", FULL)
    grown = tree(tmp_path, "grown", {
        **FULL, "interfaces/eth1.300/group": "gc",
        "interfaces/eth1.300/virtual_ip": "203.0.113.10/24", "vrrp/gc/vrid": "30",
        "pools/v300/subnet": "203.0.113.0/25", "pools/v300/range": "203.0.113.100-203.0.113.120"})
    p = plan(old, grown)
    assert p.applied == ("interfaces/eth1.300", "pools/v300", "vrrp/gc")
    assert [i.name for i in p.interfaces_added] == ["eth1.300"] and not p.interfaces_removed
    assert [g.name for g in p.groups_added] == ["gc"]
    assert not (p.groups_removed or p.groups_restarted or p.priorities)
    assert p.pools_changed == ("v300",)

    back = plan(grown, old)
    assert [i.name for i in back.interfaces_removed] == ["eth1.300"]
    assert [g.name for g in back.groups_removed] == ["gc"] and not back.interfaces_added

    # today's daemon serves one interface: the membership waits for a restart, the pool
    # is applied
    today = plan(old, grown, live=TODAY)
    assert today.restart_needed == ("interfaces/eth1.300", "vrrp/gc")
    assert today.applied == ("pools/v300",)
    assert today.config.interfaces == old.interfaces and today.config.groups == old.groups
    # a priority in the same reload still moves the master
    grown = tree(tmp_path, "grown2", {**FULL, "interfaces/eth1.300/group": "ga",
                                      "interfaces/eth1.300/virtual_ip": "203.0.113.10/24",
                                      "pools/v300/subnet": "203.0.113.0/25",
                                      "pools/v300/range": "203.0.113.100-203.0.113.120",
                                      "vrrp/gb/priority": "250"})
    today = plan(old, grown, live=TODAY)
    assert today.restart_needed == ("interfaces/eth1.300",)
    assert today.priorities == (("gb", 250),) and not today.groups_restarted


def test_standalone_interface_added(tmp_path):
    old = tree(tmp_path, "old", FULL)
    write_tree(tmp_path / "new", FULL)
    (tmp_path / "new/interfaces/eth3").mkdir()
    p = plan(old, load(tmp_path / "new"))
    assert p.applied == ("interfaces/eth3",) and [i.name for i in p.interfaces_added] == ["eth3"]


def test_a_group_whose_first_interface_changes_moves_its_adverts(tmp_path):
    # gb names no interface: it advertises on the first that names it, now eth1.100
    old = tree(tmp_path, "old", FULL)
    new = tree(tmp_path, "new", {**FULL, "interfaces/eth1.100/group": "gb"})
    p = plan(old, new)
    assert p.applied == ("interfaces/eth1.100/group", "vrrp/gb/interface")
    assert new.group("gb").interface == "eth1.100"
    assert {g.name for g in p.groups_restarted} == {"ga", "gb"}  # ga lost its address there


def test_rebinding_the_advert_interface_restarts_its_group(tmp_path):
    old = tree(tmp_path, "old", FULL)
    new = tree(tmp_path, "new", {**FULL, "interfaces/eth1.100/virtual_ip": "192.0.2.5/24"})
    p = plan(old, new)
    assert [i.name for i in p.interfaces_added] == ["eth1.100"]
    assert [g.name for g in p.groups_restarted] == ["ga"]  # its adverts carry the address
    # a service interface's address does not restart the group
    new = tree(tmp_path, "new2", {**FULL, "interfaces/eth1.200/virtual_ip":
                                  "198.51.100.5/24\n198.51.100.2/24"})
    p = plan(old, new)
    assert [i.name for i in p.interfaces_added] == ["eth1.200"] and not p.groups_restarted


@pytest.mark.parametrize("change,applied,restart", [
    # today's reload, as before the interfaces/ layout (tests/integration/test_reload.py)
    ({"vrrp/priority": "90"}, ["vrrp/priority"], []),
    ({"vrrp/advert_interval_ms": "100", "vrrp/priority": "90"},
     ["vrrp/advert_interval_ms", "vrrp/priority"], []),
    ({"client/interface": "eth3", "pools/v100/lease_time": "60"},
     ["pools/v100/lease_time"], ["client/interface"]),
    ({"client/interface": "eth3", "vrrp/priority": "90"}, ["vrrp/priority"],
     ["client/interface"]),
    ({"sync/mode": "sync", "datapath/mode": "xdp", "datapath/rate_limit_pps": "1"},
     ["datapath/rate_limit_pps"], ["datapath/mode", "sync/mode"]),
    ({"node/name": "x"}, [], ["node/name"]),
])
def test_one_interface_reload_as_before(tmp_path, change, applied, restart):
    old = tree(tmp_path, "old", FULL_LEGACY)
    new = tree(tmp_path, "new", {**FULL_LEGACY, **change})
    p = plan(old, new, live=TODAY)
    assert list(p.applied) == applied and list(p.restart_needed) == restart
    if "vrrp/advert_interval_ms" in change:
        assert p.groups_restarted and not p.priorities
        assert p.config.vrrp.priority == 90  # the restarted instance has it
    elif "vrrp/priority" in change:
        assert p.priorities == (("vrrp", 90),) and not p.groups_restarted
    assert p.config.client_interface == "eth1" and p.config.node == old.node


@pytest.mark.parametrize("folder", ["vrrp", "sync"])
def test_one_interface_pair_turned_standalone_waits_for_a_restart(tmp_path, folder):
    old = tree(tmp_path, "old", FULL_LEGACY)
    new = tree(tmp_path, "new", _without(FULL_LEGACY, folder + "/"))
    p = plan(old, new, live=TODAY)
    assert p.restart_needed == (folder,) and p.applied == ()
    assert p.config.vrrp == old.vrrp and p.config.sync == old.sync
    if folder == "vrrp":  # the plan a multi-interface daemon gets: the group goes
        full = plan(old, new)
        assert [g.name for g in full.groups_removed] == ["vrrp"]
        assert full.config.standalone


def test_first_virtual_ip_of_a_one_interface_tree_is_the_server_identifier(tmp_path):
    old = tree(tmp_path, "old", FULL_LEGACY)
    new = tree(tmp_path, "new", {**FULL_LEGACY, "vrrp/virtual_ip": "192.0.2.2/24"})
    p = plan(old, new, live=TODAY)
    assert p.applied == ("vrrp/virtual_ip",) and p.groups_restarted
    assert p.config.interfaces[0].virtual_ips == (IPv4Interface("192.0.2.2/24"),)


def test_switching_layouts_with_the_same_meaning_changes_nothing(tmp_path):
    old = tree(tmp_path, "old", FULL_LEGACY)
    same = {**_without(FULL_LEGACY, "client/", "vrrp/"),
            "interfaces/eth1/group": "vrrp", "interfaces/eth1/virtual_ip": "192.0.2.1/24",
            **{"vrrp/vrrp/" + k[len("vrrp/"):]: v for k, v in FULL_LEGACY.items()
               if k.startswith("vrrp/")},
            "vrrp/vrrp/virtual_ip": "192.0.2.254/24"}
    new = tree(tmp_path, "new", same)
    p = plan(old, new)
    assert p.changed == () and not (p.groups_restarted or p.interfaces_added)


def test_range_order_is_no_change(tmp_path):
    a = tree(tmp_path, "a", {**FULL, "pools/v100/range": "192.0.2.100-192.0.2.109\n"
                                                        "192.0.2.150-192.0.2.159"})
    b = tree(tmp_path, "b", {**FULL, "pools/v100/range": "192.0.2.150-192.0.2.159\n"
                                                        "192.0.2.100-192.0.2.109"})
    assert diff(a, b) == [] and drift_summary(a) == drift_summary(b)


def test_canonical_values():
    a, b = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")
    assert canonical((a, b)) == "192.0.2.1 192.0.2.2"  # two routers, not a range
    assert canonical(((a, b),)) == "192.0.2.1-192.0.2.2"
    assert canonical((a, 6470)) == "192.0.2.1:6470"
    assert canonical((IPv4Interface("192.0.2.1/24"), IPv4Interface("192.0.2.2/24"))) == \
        "192.0.2.1/24 192.0.2.2/24"
    assert canonical(True) == "1" and canonical(None) == "" and canonical(("ga", "gb")) == "ga gb"


def test_all_live_is_every_class_but_restart():
    assert ALL_LIVE == frozenset(Reload) - {Reload.RESTART}
