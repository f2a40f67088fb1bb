"""Two of our VRRPv3 nodes on one bridge (namespaces, root): link tracking, the sync gate,
the virtual MAC, and forged adverts from a third namespace.

    lan bridge ── a   (eth1 192.0.2.10, MAC 02:00:00:00:00:0a)  [eth2 <-> eth2p: tracked]
               ├─ b   (eth1 192.0.2.11, MAC 02:00:00:00:00:0b)
               └─ obs (eth1 192.0.2.250) tcpdump, scapy
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.testing.netns import Topology, wait_for
from appliance.testing.vrrp_node import VrrpLab
from appliance.vrrp.timers import master_down_interval_s

pytestmark = pytest.mark.netns

ADVERT_MS = 100


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump not installed")
    with Topology(prefix="vp") as t:
        lab = VrrpLab(t, str(tmp_path), advert_ms=ADVERT_MS)
        lab.host("a")
        lab.host("b")
        try:
            yield lab
        finally:
            for log in sorted(tmp_path.glob("*.log")):  # shown by pytest on failure
                print(f"==== {log.name}\n" + "\n".join(log.read_text(
                    errors="replace").splitlines()[-40:]))


def _is(lab: VrrpLab, name: str, state: str, **fields: object) -> bool:
    s = lab.state(name)
    return s.get("state") == state and all(s.get(k) == v for k, v in fields.items())


def test_link_tracking_moves_mastership_and_back(lab: VrrpLab) -> None:
    a = lab.hosts["a"]
    lab.t.veth(a, "eth2", a, "eth2p")  # no dummy driver here: a veth pair, both ends in a
    arp = lab.arp_watch()
    lab.start_ours("a", 150, "--track", "eth2=60")
    lab.start_ours("b", 120)
    wait_for(lambda: _is(lab, "a", "master", priority=150)
             and _is(lab, "b", "backup", master=lab.ip["a"]), 10, what="a master")

    # admin down on the master's tracked link: 150 - 60 = 90 < 120, advertised at once,
    # so b preempts without waiting for a Master_Down_Interval
    t0 = time.time()
    lab.t.link(a, "eth2", False)
    took = arp.wait(lab.mac["b"], t0) - t0
    assert took < master_down_interval_s(120, 10) / 2, f"took {took:.3f}s"
    wait_for(lambda: _is(lab, "a", "backup", priority=90, master=lab.ip["b"])
             and _is(lab, "b", "master"), 5, what="b master, a backup at 90")
    assert lab.state("a")["counters"]["link_events"] == 1

    # link back: a is 150 again and preempts on b's next advert
    t0 = time.time()
    lab.t.link(a, "eth2", True)
    arp.wait(lab.mac["a"], t0)
    wait_for(lambda: _is(lab, "a", "master", priority=150) and _is(lab, "b", "backup"),
             5, what="a master again")

    # carrier loss (the far end goes down) counts as down too
    lab.t.link(a, "eth2p", False)
    wait_for(lambda: _is(lab, "a", "backup", priority=90) and _is(lab, "b", "master"), 5,
             what="b master after carrier loss on a's tracked link")
    lab.t.link(a, "eth2p", True)
    wait_for(lambda: _is(lab, "a", "master", priority=150) and _is(lab, "b", "backup"),
             5, what="a master after carrier is back")


def test_sync_gate_holds_preemption_until_open(lab: VrrpLab) -> None:
    lab.start_ours("b", 100)
    wait_for(lambda: _is(lab, "b", "master"), 10, what="b master")
    a = lab.start_ours("a", 150, "--gate", "0")
    # a hears ten adverts from a lower-priority master and still does not preempt
    wait_for(lambda: lab.state("a").get("counters", {}).get("rx_adverts", 0) >= 10, 10,
             what="a hears b")
    assert _is(lab, "a", "backup", master=lab.ip["b"]) and _is(lab, "b", "master")

    os.kill(a.pid, signal.SIGUSR1)  # in sync: gate open
    wait_for(lambda: _is(lab, "a", "master") and _is(lab, "b", "backup"), 5,
             what="a preempts once the gate opens")

    # closing the gate never demotes a master
    os.kill(a.pid, signal.SIGUSR2)
    wait_for(lambda: lab.state("a").get("gate") is False, 5, what="gate closed")
    sent = lab.state("a")["counters"]["tx_adverts"]
    wait_for(lambda: lab.state("a")["counters"]["tx_adverts"] >= sent + 10, 10,
             what="ten more adverts")
    assert _is(lab, "a", "master") and _is(lab, "b", "backup")


def test_virtual_mac(lab: VrrpLab) -> None:
    """use_vmac: adverts and gratuitous ARPs from 00:00:5e:00:01:33 (RFC 5798 §7.3), the
    VIP answers ARP with it, and the macvlan goes away on stop."""
    vmac = "00:00:5e:00:01:33"
    arp = lab.arp_watch()
    t0 = time.time()
    a = lab.start_ours("a", 150, "--vmac", "1")
    lab.start_ours("b", 100)
    arp.wait(vmac, t0)
    wait_for(lambda: _is(lab, "a", "master") and _is(lab, "b", "backup", master=lab.ip["a"]),
             10, what="a master with a VMAC")
    ns = lab.hosts["a"]
    out = lab.t.run(ns, ["ip", "-4", "-o", "addr", "show", "dev", "vrrp.51"]).stdout
    assert " 192.0.2.100/24 " in out
    conf = "/proc/sys/net/ipv4/conf/eth1/"
    assert lab.t.run(ns, ["cat", conf + "arp_ignore", conf + "arp_announce"]).stdout == "1\n2\n"
    lab.t.run(lab.obs, ["ping", "-c", "1", "-W", "2", "192.0.2.100"])
    neigh = lab.t.run(lab.obs, ["ip", "neigh", "show", "192.0.2.100"]).stdout
    assert vmac in neigh, neigh
    src = lab.t.run(lab.obs, ["timeout", "3", "tcpdump", "-i", "eth1", "-c", "1", "-n", "-e",
                              "ip proto 112 and ip src 192.0.2.10"], check=False).stdout
    assert src.split()[1] == vmac, src

    assert lab.t.stop(a) == 0
    assert lab.t.run(ns, ["ip", "link", "show", "vrrp.51"], check=False).returncode != 0
    assert lab.t.run(ns, ["cat", conf + "arp_ignore", conf + "arp_announce"]).stdout == "0\n0\n"
    wait_for(lambda: _is(lab, "b", "master"), 5, what="b master")


FORGE = r"""
import sys
from scapy.all import Ether, IP, Raw, sendp
from scapy.layers.vrrp import VRRP, VRRPv3

n = int(sys.argv[1])
eth = Ether(dst="01:00:5e:00:00:12", src="02:00:00:00:00:fa")
def ip(ttl=255):
    # a higher address than either node: a valid advert from it at priority 254 would
    # take mastership, so "no state change" means the packet was really refused
    return IP(src="192.0.2.250", dst="224.0.0.18", ttl=ttl, tos=0xC0, proto=112)
good = dict(vrid=51, priority=254, adv=10, addrlist=["192.0.2.100"])
kinds = {
    "ttl": eth / ip(64) / VRRPv3(**good),
    "checksum": eth / ip() / VRRPv3(chksum=0x1234, **good),
    "vrid": eth / ip() / VRRPv3(**{**good, "vrid": 52}),
    "version": eth / ip() / VRRP(vrid=51, priority=254, addrlist=["192.0.2.100"]),
    "truncated": eth / ip() / Raw(b"\x31\x33\xfe\x01\x00"),
    "addresses": eth / ip() / VRRPv3(**{**good, "addrlist": ["192.0.2.99"]}),
    "interval": eth / ip() / VRRPv3(**{**good, "adv": 0}),
    "valid": eth / ip() / VRRPv3(**good),
}
which = sys.argv[2:]
for k in which:
    sendp(kinds[k], iface="eth1", count=n, inter=0.002, verbose=False)
"""


def test_forged_adverts_are_counted_and_change_nothing(lab: VrrpLab) -> None:
    lab.start_ours("a", 100)
    wait_for(lambda: _is(lab, "a", "master"), 10, what="a master")
    before = lab.state("a")
    n = 20
    lab.t.run(lab.obs, [sys.executable, "-c", FORGE, str(n), "ttl", "checksum", "vrid",
                        "version", "truncated", "addresses", "interval"])
    expect = {"rx_bad_ttl": n, "rx_bad_checksum": n, "rx_other_vrid": n,
              "rx_bad_version": n, "rx_truncated": n, "rx_addr_mismatch": n,
              "rx_bad_interval": n}

    def counted() -> bool:
        c = lab.state("a")["counters"]
        return all(c[k] - before["counters"][k] >= v for k, v in expect.items())

    wait_for(counted, 10, what=f"counters {sorted(expect)} up by {n}")
    after = lab.state("a")
    assert after["state"] == "master" and lab.has_vip("a")
    assert after["transitions"] == before["transitions"]
    assert after["counters"]["rx_adverts"] == before["counters"]["rx_adverts"]

    # the control: the same advert, valid, does move the master (so the forged ones
    # above reached the node and were refused for the reason counted)
    lab.t.run(lab.obs, [sys.executable, "-c", FORGE, "1", "valid"])
    wait_for(lambda: _is(lab, "a", "backup", master="192.0.2.250"), 5,
             what="a backs off for a valid priority-254 advert")
    wait_for(lambda: _is(lab, "a", "master"), 5,
             what="a master again once the forger is silent")
