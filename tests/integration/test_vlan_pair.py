"""The real daemon pair on several VLANs and groups (lab/vlanpair.py): load-sharing by
VLAN and on one LAN, with real clients, kill -9, a client link down, and the return.

What a user checks: both devices work (each serves the groups it is master of, each
holds every session); after a failure the survivor serves every VLAN and every bucket,
no client changes its address and renewals keep working; the returning device takes
its groups back; `status` shows every interface and group on a line.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from appliance.dhcp.loadbalance import group_of
from appliance.testing.daemonfiles import CLI
from appliance.testing.netns import Topology, wait_for
from appliance.testing.require import require_bcc, require_root, require_tools
from lab.clients import Dhclient, Udhcpc
from lab.vlanpair import VlanPair

pytestmark = [pytest.mark.netns]


def addresses(events: list[list[str]]) -> set[str]:
    """Every address a client's event script was given (bound, renewed, rebound)."""
    return {e[1] for e in events
            if e and e[0] in ("BOUND", "RENEW", "REBIND", "REBOOT", "bound", "renew")}


def lease_of(d, mac: str) -> dict:
    return next((x for x in d.leases() if x["mac"] == mac), {})


def test_load_sharing_by_vlan_survives_kill9_and_a_link_down_and_gives_back(tmp_path):
    require_root()
    require_bcc()
    require_tools("dhclient", "udhcpc")
    with Topology("vl") as t:
        # 10 s leases: dhclient renews by itself every 5 s (T1), unicast to the VIP
        vp = VlanPair(t, tmp_path, {100: "g100", 200: "g200"}, lease_time=10)
        a, b = vp.a, vp.b
        vp.start()  # A masters g100 (VLAN 100), B g200 (VLAN 200), in sync
        c100, mac100 = vp.client(100, "c100")
        c200, mac200 = vp.client(200, "c200")
        with Dhclient(t, c100, "eth0", tmp_path / "dhclient").start() as dc, \
                Udhcpc(t, c200, "eth0", tmp_path / "udhcpc").start() as uc:
            ip100 = dc.wait_event("BOUND")[1]
            ip200 = uc.wait_event("bound")[1]
            assert ip100.startswith("192.0.2.") and ip200.startswith("198.51.100.")
            # both devices work: each VLAN's session was made by its group's master...
            assert lease_of(a, mac100).get("origin") == "deviceA"
            assert lease_of(b, mac200).get("origin") == "deviceB"
            # ...and both devices hold both sessions
            for d in (a, b):
                d_ = d
                wait_for(lambda d_=d_: {mac100, mac200} <= d_.bindings().keys(), 10,
                         what=f"{d.name} holds both sessions")
            # `leases` names each session's interface and group
            rows = {x["mac"]: (x["interface"], x["group"]) for x in b.leases()}
            assert rows[mac100] == ("eth1.100", "g100") and rows[mac200] == ("eth1.200", "g200")
            assert a.value("interfaces/eth1.100/role") == "active"
            assert a.value("interfaces/eth1.200/role") == "standby"
            assert b.value("interfaces/eth1.200/role") == "active"
            assert a.value("interfaces/eth1.100/server_id") == "192.0.2.1"

            # kill -9 of A: B serves both VLANs, from the sessions it holds
            a.kill9()
            vp.wait_served({"g100": b, "g200": b}, sync=False)
            n = len([e for e in dc.events() if e[0] == "RENEW"])
            dc.wait_event("RENEW", n + 1, timeout=30)  # renewed at B
            uc.renew()
            uc.wait_event("renew", timeout=30)
            assert lease_of(b, mac100).get("origin") == "deviceB"

            # A returns, resyncs, and takes g100 back (preempt); g200 stays with B
            a.launch()
            vp.wait_served({"g100": a, "g200": b}, timeout=90)
            n = len([e for e in dc.events() if e[0] == "RENEW"])
            dc.wait_event("RENEW", n + 1, timeout=30)
            assert lease_of(a, mac100).get("origin") == "deviceA"

            # A's client link of VLAN 100 down instead: B takes g100 at once, g200 stays
            a.link("eth1.100", False)
            vp.wait_served({"g100": b, "g200": b})
            assert a.group_role("g100") == "standby" and a.value("groups/g100/state") \
                in ("fault", "backup", "init")  # init: g100 advertises on eth1.100
            n = len([e for e in dc.events() if e[0] == "RENEW"])
            dc.wait_event("RENEW", n + 1, timeout=30)
            uc.renew()
            uc.wait_event("renew", 2, timeout=30)
            # the link back: A preempts g100 again
            a.link("eth1.100", True)
            vp.wait_served({"g100": a, "g200": b}, timeout=60)
            n = len([e for e in dc.events() if e[0] == "RENEW"])
            dc.wait_event("RENEW", n + 1, timeout=30)

            # no client changed its address at any point
            assert addresses(dc.events()) == {ip100}, dc.events()
            assert addresses(uc.events()) == {ip200}, uc.events()

            # status: one line per interface and per group
            out = b.status()
            lines = out.splitlines()
            assert any(x.split()[:2] == ["eth1.100", "standby"] for x in lines), out
            assert any(x.split()[:2] == ["eth1.200", "active"] for x in lines), out
            assert any(x.split()[:3] == ["g200", "active", "master"] for x in lines), out
            st = json.loads(b.status("--json"))
            assert st["groups"]["g100"]["role"] == "standby"
            assert st["interfaces"]["eth1.200"]["leases"] >= 1
            assert st["groups"]["g100"]["takeovers"] >= 2  # the kill, the link down
        vp.stop()


def mac_in_bucket(index: int, start: int) -> str:
    """A MAC whose RFC 3074 bucket belongs to the interface's group `index` (0: ga)."""
    for i in range(start, start + 256):
        m = bytes([2, 0x5e, 0x20, 0, i >> 8, i & 0xFF])
        if group_of(m, 6) == index:
            return m.hex(":")
    raise AssertionError("no MAC found")


def test_two_groups_on_one_lan_answer_their_buckets_and_the_survivor_all(tmp_path):
    require_root()
    require_bcc()
    require_tools("udhcpc")
    with Topology("sh") as t:
        vp = VlanPair(t, tmp_path, shared=True)
        a, b = vp.a, vp.b
        vp.start()  # ga: A, gb: B, both on eth1
        ns_a, mac_a = vp.client(0, "ca", mac_in_bucket(0, 0x100))
        ns_b, mac_b = vp.client(0, "cb", mac_in_bucket(1, 0x100))
        with Udhcpc(t, ns_a, "eth0", tmp_path / "ua").start() as ua, \
                Udhcpc(t, ns_b, "eth0", tmp_path / "ub").start() as ub:
            ip_a = ua.wait_event("bound")[1]
            ip_b = ub.wait_event("bound")[1]
            # each device answered only its bucket: the other's was dropped in its kernel
            assert lease_of(a, mac_a)["origin"] == "deviceA"
            assert lease_of(b, mac_b)["origin"] == "deviceB"
            wait_for(lambda: a.stat("dropped_other_bucket") >= 1
                     and b.stat("dropped_other_bucket") >= 1, 10,
                     what="each device drops the other's bucket")
            assert a.value("interfaces/eth1/role") == "shared"
            assert a.value("interfaces/eth1/server_id") == "192.0.2.1\n192.0.2.254"
            wait_for(lambda: {mac_a, mac_b} <= b.bindings().keys(), 10,
                     what="B holds both sessions")

            # kill -9 of A: B serves both buckets; ga's client renews at B, unchanged,
            # and a new client of ga's bucket gets an address from B
            a.kill9()
            vp.wait_served({"ga": b, "gb": b}, sync=False)
            assert b.value("interfaces/eth1/role") == "active"
            ua.renew()
            ua.wait_event("renew", timeout=30)
            assert addresses(ua.events()) == {ip_a} and addresses(ub.events()) == {ip_b}
            ns_n, mac_n = vp.client(0, "cn", mac_in_bucket(0, 0x300))
            with Udhcpc(t, ns_n, "eth0", tmp_path / "un").start() as un:
                un.wait_event("bound")
            assert lease_of(b, mac_n)["origin"] == "deviceB"
        vp.stop()


def addrs_of(t, ns, ifname: str) -> list[str]:
    r = t.run(ns, ["ip", "-4", "-o", "addr", "show", "dev", ifname])
    return [w.split("/")[0] for line in r.stdout.splitlines() for w in line.split()
            if "/" in w]


def reload(d) -> str:
    r = subprocess.run([CLI, "reload", "--config", str(d.etc)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def add_vlan300(t, a, b, group: str) -> object:
    """VLAN 300 (its bridge, a port eth1.300 on each device) bound to `group` in both
    trees with its VIP and pool (not reloaded yet); returns the bridge."""
    lan = t.lan("v300")
    t.attach(a.ns, lan, "eth1.300", "203.0.113.130/25")
    t.attach(b.ns, lan, "eth1.300", "203.0.113.131/25")
    for d in (a, b):
        (d.etc / "interfaces/eth1.300").mkdir()
        (d.etc / "interfaces/eth1.300/group").write_text(f"{group}\n")
        (d.etc / "interfaces/eth1.300/virtual_ip").write_text("203.0.113.129/25\n")
        (d.etc / "pools/v300").mkdir()
        (d.etc / "pools/v300/subnet").write_text("203.0.113.128/25\n")
        (d.etc / "pools/v300/range").write_text("203.0.113.200-203.0.113.250\n")
    return lan


def remove_vlan300(d) -> None:
    for f in ("group", "virtual_ip"):
        (d.etc / f"interfaces/eth1.300/{f}").unlink()
    (d.etc / "interfaces/eth1.300").rmdir()


def transitions(*devices) -> dict[str, tuple[str | None, str | None]]:
    """Each device's last VRRP transition of g100 and g200 (unchanged: neither moved)."""
    return {d.name: (d.value("groups/g100/last_transition"),
                     d.value("groups/g200/last_transition")) for d in devices}


def test_a_reload_adds_and_removes_a_vlan_without_disturbing_the_others(tmp_path):
    require_root()
    require_bcc()
    require_tools("udhcpc")
    with Topology("rl") as t:
        vp = VlanPair(t, tmp_path, {100: "g100", 200: "g200"})
        a, b = vp.a, vp.b
        vp.start()
        before = transitions(a, b)
        # VLAN 300 added to g200 (B master) on both devices, its port first
        lan = add_vlan300(t, a, b, "g200")
        for d in (a, b):
            assert "changed: interfaces/eth1.300" in reload(d)
        wait_for(lambda: b.value("interfaces/eth1.300/role") == "active"
                 and a.value("interfaces/eth1.300/role") == "standby", 10,
                 what="eth1.300 served by g200's master, B")
        # g200's master added the new VLAN's VIP (a service VIP), the backup did not
        assert "203.0.113.129" in addrs_of(t, b.ns, "eth1.300")
        assert "203.0.113.129" not in addrs_of(t, a.ns, "eth1.300")
        ns = t.host("c300")
        t.attach(ns, lan, "eth0", mac="02:c3:00:00:03:00")
        with Udhcpc(t, ns, "eth0", tmp_path / "u300").start() as u:
            ip = u.wait_event("bound")[1]
            assert ip.startswith("203.0.113.2"), ip
            assert lease_of(b, "02:c3:00:00:03:00")["origin"] == "deviceB"
            # removed again: B stops answering there and takes its VIP away
            for d in (a, b):
                remove_vlan300(d)
                assert "changed: interfaces/eth1.300" in reload(d)
            wait_for(lambda: "203.0.113.129" not in addrs_of(t, b.ns, "eth1.300"), 10,
                     what="the VIP of the removed VLAN gone from B")
            assert b.value("interfaces/eth1.300/role") is None  # its runtime folder too
        # no group moved: no VRRP transition on either device, the same masters
        vp.wait_served({"g100": a, "g200": b})
        assert transitions(a, b) == before
        vp.stop()


def test_a_reload_adds_and_removes_a_group_without_disturbing_the_others(tmp_path):
    """A new group (g300, VRID 30, A's priority the higher) with a new VLAN, added by
    reload on both devices: A becomes its master and serves the VLAN, B stands by; then
    removed: A's VIP and the group's runtime folder go. g100 and g200 never move."""
    require_root()
    require_bcc()
    require_tools("udhcpc")
    with Topology("rg") as t:
        vp = VlanPair(t, tmp_path, {100: "g100", 200: "g200"})
        a, b = vp.a, vp.b
        vp.start()
        before = transitions(a, b)
        lan = add_vlan300(t, a, b, "g300")
        for d, prio in ((a, "200"), (b, "100")):
            g = d.etc / "vrrp/g300"
            g.mkdir()
            for f, v in (("vrid", "30"), ("priority", prio), ("preempt", "1"),
                         ("advert_interval_ms", str(vp.advert_ms))):
                (g / f).write_text(v + "\n")
            out = reload(d)
            assert "vrrp/g300" in out and "interfaces/eth1.300" in out, out
        wait_for(lambda: a.value("groups/g300/vrrp_state") == "master"
                 and b.value("groups/g300/vrrp_state") == "backup"
                 and a.value("interfaces/eth1.300/role") == "active"
                 and b.value("interfaces/eth1.300/role") == "standby", 15,
                 what="g300 mastered by A, B its backup")
        assert "203.0.113.129" in addrs_of(t, a.ns, "eth1.300")
        assert "203.0.113.129" not in addrs_of(t, b.ns, "eth1.300")
        ns = t.host("c300")
        t.attach(ns, lan, "eth0", mac="02:c3:00:00:03:01")
        with Udhcpc(t, ns, "eth0", tmp_path / "u300").start() as u:
            assert u.wait_event("bound")[1].startswith("203.0.113.2")
        wait_for(lambda: lease_of(b, "02:c3:00:00:03:01").get("origin") == "deviceA", 10,
                 what="g300's session made by A, held by B")
        # removed again, the group and its VLAN, on both devices
        for d in (a, b):
            remove_vlan300(d)
            for f in (d.etc / "vrrp/g300").iterdir():
                f.unlink()
            (d.etc / "vrrp/g300").rmdir()
            assert "vrrp/g300" in reload(d)
        wait_for(lambda: "203.0.113.129" not in addrs_of(t, a.ns, "eth1.300")
                 and a.value("groups/g300/vrrp_state") is None
                 and b.value("groups/g300/vrrp_state") is None, 10,
                 what="g300 gone from both devices, its VIP from A")
        vp.wait_served({"g100": a, "g200": b})
        assert transitions(a, b) == before
        a.assert_running()
        b.assert_running()
        vp.stop()
