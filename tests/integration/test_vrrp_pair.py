"""Two of our daemons on one bridge (namespaces, root): link tracking moving mastership
and the XDP datapath, the virtual MAC, forged adverts from a third namespace; and the
sync gate, on the stand-alone VrrpService node.

    lan bridge ── a   (eth1 192.0.2.10, MAC 02:00:00:00:00:0a)  [eth2 <-> eth2p: tracked]
               ├─ b   (eth1 192.0.2.11, MAC 02:00:00:00:00:0b)
               └─ obs (eth1 192.0.2.250) tcpdump, scapy

The daemons (`dhcp-hotbackup run` with a vrrp/ folder and no sync/) are read from their
runtime trees; every wait on a VRRP state also requires the daemon's `role` to be the
one that state implies (active exactly when master).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.testing.netns import Topology, wait_for
from appliance.testing.require import require_tools
from appliance.vrrp.timers import master_down_interval_s
from lab.vrrp_node import VrrpLab

pytestmark = pytest.mark.netns

ADVERT_MS = 100
START_S = 30  # a daemon start on a loaded machine
START_XDP_S = 60  # bcc compiles the XDP program at start (about 2 s each when idle)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    require_tools("tcpdump")  # root: the netns marker
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


# -- link tracking, with the XDP datapath following the role ------------------------------

DISCOVER = r"""
import sys
from scapy.all import BOOTP, DHCP, IP, UDP, Ether, sendp

n, first = int(sys.argv[1]), int(sys.argv[2])
frames = []
for i in range(first, first + n):
    mac = f"02:d0:00:00:00:{i:02x}"
    frames.append(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
                  / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                  / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=i, flags=0x8000)
                  / DHCP(options=[("message-type", "discover"), "end"]))
sendp(frames, iface="eth1", verbose=False)
"""


class Probe:
    """Broadcast DHCP DISCOVERs from the observer; each probe uses new client MACs."""

    def __init__(self, lab: VrrpLab) -> None:
        self.lab = lab
        self.first = 1

    def __call__(self, active: str, standby: str, n: int = 5) -> None:
        """The XDP program on `active` passes the DISCOVERs to its server, which
        counts them; the one on `standby` drops them in the kernel, so its server never
        sees one (stats/ are published once a second)."""
        lab = self.lab
        before = {x: lab.state(x)["stats"] for x in (active, standby)}
        lab.t.run(lab.obs, [sys.executable, "-c", DISCOVER, str(n), str(self.first)])
        self.first += n

        def rise(name: str, stat: str) -> int:
            return lab.state(name)["stats"][stat] - before[name][stat]

        wait_for(lambda: rise(active, "xdp_passed") >= n and rise(active, "discover") >= n
                 and rise(standby, "xdp_seen") >= n, 15,
                 what=f"{n} DISCOVERs through {active}'s XDP and seen by {standby}'s")
        wait_for(lambda: rise(standby, "dropped_standby") >= n, 5,
                 what=f"{standby}'s XDP counts its drops")
        assert rise(standby, "xdp_passed") == 0, f"{standby}'s XDP passed a DISCOVER"
        assert rise(standby, "discover") == 0, f"{standby}'s server saw a DISCOVER"


def test_link_tracking_moves_mastership_and_the_xdp_datapath(lab: VrrpLab) -> None:
    a = lab.hosts["a"]
    lab.t.veth(a, "eth2", a, "eth2p")  # no dummy driver here: a veth pair, both ends in a
    arp = lab.arp_watch()
    da = lab.start_daemon("a", 150, track={"eth2": 60}, datapath="xdp")
    lab.start_daemon("b", 120, datapath="xdp")
    lab.wait_state("a", "master", START_XDP_S, priority=150)
    lab.wait_state("b", "backup", START_XDP_S, master=lab.ip["a"])
    for name in ("a", "b"):
        assert lab.state(name)["attach_mode"] in ("native", "generic")
    probe = Probe(lab)
    probe("a", "b")

    # admin down on the master's tracked link: 150 - 60 = 90 < 120, advertised at once,
    # so b preempts without waiting for a Master_Down_Interval
    t0 = time.time()
    lab.t.link(a, "eth2", False)
    took = arp.wait(lab.mac["b"], t0) - t0
    assert took < master_down_interval_s(120, 10) / 2, f"took {took:.3f}s"
    lab.wait_state("b", "master", 5)
    s = lab.wait_state("a", "backup", 5, priority=90, master=lab.ip["b"])
    # counters are published about once a second, like every stats/ file
    wait_for(lambda: lab.state("a").get("counters", {}).get("link_events") == 1, 5,
             what="a's link event counted")
    assert s["last_transition"]["reason"] == "higher_priority"
    probe("b", "a")

    # link back: a is 150 again and preempts on b's next advert
    t0 = time.time()
    lab.t.link(a, "eth2", True)
    arp.wait(lab.mac["a"], t0)
    s = lab.wait_state("a", "master", 5, priority=150)
    assert s["last_transition"]["reason"] == "preempt"
    lab.wait_state("b", "backup", 5, master=lab.ip["a"])
    probe("a", "b")

    # carrier loss (the far end goes down) counts as down too
    lab.t.link(a, "eth2p", False)
    lab.wait_state("b", "master", 5)
    lab.wait_state("a", "backup", 5, priority=90)
    lab.t.link(a, "eth2p", True)
    lab.wait_state("a", "master", 5, priority=150)
    lab.wait_state("b", "backup", 5)

    # a crash leaves a's XDP program and VIP behind; `cleanup` removes both
    lab.t.kill9(da)
    lab.wait_state("b", "master", 5)
    show = ["ip", "link", "show", "dev", "eth1"]
    assert "xdp" in lab.t.run(a, show).stdout
    assert lab.has_vip("a")
    out = lab.cleanup("a")
    assert "xdp program" in out and "stale virtual IP 192.0.2.100/24" in out, out
    assert "xdp" not in lab.t.run(a, show).stdout
    assert not lab.has_vip("a")


# -- the virtual MAC ---------------------------------------------------------------------

def test_virtual_mac(lab: VrrpLab) -> None:
    """use_vmac: adverts and gratuitous ARPs from 00:00:5e:00:01:33 (RFC 5798 §7.3), the
    VIP answers ARP with it, and the macvlan goes away on stop."""
    vmac = "00:00:5e:00:01:33"
    arp = lab.arp_watch()
    t0 = time.time()
    a = lab.start_daemon("a", 150, use_vmac=True)
    lab.start_daemon("b", 100)
    arp.wait(vmac, t0, timeout=START_S)
    lab.wait_state("a", "master", START_S)
    lab.wait_state("b", "backup", START_S, master=lab.ip["a"])
    ns = lab.hosts["a"]
    assert lab.has_vip("a", dev="vrrp.51") and not lab.has_vip("a")
    conf = "/proc/sys/net/ipv4/conf/eth1/"
    assert lab.t.run(ns, ["cat", conf + "arp_ignore", conf + "arp_announce"]).stdout == "1\n2\n"
    lab.t.run(lab.obs, ["ping", "-c", "1", "-W", "2", "192.0.2.100"])
    neigh = lab.t.run(lab.obs, ["ip", "neigh", "show", "192.0.2.100"]).stdout
    assert vmac in neigh, neigh
    src = lab.t.run(lab.obs, ["timeout", "3", "tcpdump", "-i", "eth1", "-c", "1", "-n", "-e",
                              "ip proto 112 and ip src 192.0.2.10"], check=False).stdout
    assert src.split()[1] == vmac, src

    assert lab.t.stop(a, timeout=15) == 0
    assert lab.t.run(ns, ["ip", "link", "show", "vrrp.51"], check=False).returncode != 0
    assert lab.t.run(ns, ["cat", conf + "arp_ignore", conf + "arp_announce"]).stdout == "0\n0\n"
    lab.wait_state("b", "master", 5)


# -- forged adverts from a third namespace -----------------------------------------------

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
    lab.start_daemon("a", 150)
    lab.start_daemon("b", 120)
    lab.wait_state("a", "master", START_S)
    lab.wait_state("b", "backup", START_S, master=lab.ip["a"])
    # counters are published about once a second: a baseline taken after the election's
    wait_for(lambda: lab.state("a").get("counters", {}).get("became_master", 0) >= 1
             and lab.state("b").get("counters", {}).get("became_backup", 0) >= 1, 5,
             what="the election counted")
    before = {x: lab.state(x) for x in ("a", "b")}
    n = 20
    lab.t.run(lab.obs, [sys.executable, "-c", FORGE, str(n), "ttl", "checksum", "vrid",
                        "version", "truncated", "addresses", "interval"])
    expect = {"rx_bad_ttl": n, "rx_bad_checksum": n, "rx_other_vrid": n,
              "rx_bad_version": n, "rx_truncated": n, "rx_addr_mismatch": n,
              "rx_bad_interval": n}

    def counted(name: str) -> bool:
        c, c0 = lab.state(name)["counters"], before[name]["counters"]
        return all(c[k] - c0[k] >= v for k, v in expect.items())

    # stats/ are published once a second
    wait_for(lambda: counted("a"), 10, what=f"a's counters {sorted(expect)} up by {n}")
    wait_for(lambda: counted("b"), 10, what=f"b's counters {sorted(expect)} up by {n}")
    after = {x: lab.state(x) for x in ("a", "b")}
    assert lab.in_state("a", "master", master=lab.ip["a"]) and lab.has_vip("a")
    assert lab.in_state("b", "backup", master=lab.ip["a"]) and not lab.has_vip("b")
    for name in ("a", "b"):
        for k in ("became_master", "became_backup"):
            assert after[name]["counters"][k] == before[name]["counters"][k], (name, k)
        assert after[name]["last_transition"] == before[name]["last_transition"]
    # b is silent as backup, so a has heard no advert at all
    assert after["a"]["counters"]["rx_adverts"] == before["a"]["counters"]["rx_adverts"]

    # the control: the same advert, valid, does move the master (so the forged ones
    # above reached the daemons and were refused for the reason counted). Sent for 3 s,
    # as a master would, so that the state it causes lasts long enough to be seen.
    forger = lab.t.popen(lab.obs, [sys.executable, "-c", FORGE.replace(
        "inter=0.002", "inter=0.1"), "30", "valid"])
    lab.wait_state("a", "backup", 10, master="192.0.2.250")
    lab.wait_state("b", "backup", 5, master="192.0.2.250")
    assert forger.wait(30) == 0
    # once the forger is silent, a (150) is master again and b (120) follows it
    lab.wait_state("a", "master", 5)
    lab.wait_state("b", "backup", 5, master=lab.ip["a"])


# -- the daemon's runtime tree after a clean stop -----------------------------------------

def test_clean_stop_publishes_pid_zero(lab: VrrpLab) -> None:
    a = lab.start_daemon("a", 150)
    s = lab.wait_state("a", "master", START_S)
    assert s["pid"] == a.pid
    assert lab.t.stop(a, timeout=15) == 0
    s = lab.state("a")
    assert (s["state"], s["role"]) == ("initialize", "standby")
    assert not lab.has_vip("a")
    assert s["pid"] == 0


# -- the sync gate (stand-alone node) -----------------------------------------------------

def test_sync_gate_holds_preemption_until_open(lab: VrrpLab) -> None:
    """VrrpService's sync gate, driven by signals on the stand-alone node. The daemon
    opens and closes it from its sync link's state, which a test cannot hold and release
    on demand, so the gate's rules are checked here."""
    lab.start_ours("b", 100)
    lab.wait_state("b", "master", START_S)
    a = lab.start_ours("a", 150, "--gate", "0")
    # a hears ten adverts from a lower-priority master and still does not preempt
    wait_for(lambda: lab.state("a").get("counters", {}).get("rx_adverts", 0) >= 10, START_S,
             what="a hears b")
    assert lab.in_state("a", "backup", master=lab.ip["b"]) and lab.in_state("b", "master")

    os.kill(a.pid, signal.SIGUSR1)  # in sync: gate open
    lab.wait_state("a", "master", 5)
    lab.wait_state("b", "backup", 5)

    # closing the gate never demotes a master
    os.kill(a.pid, signal.SIGUSR2)
    wait_for(lambda: lab.state("a").get("gate") is False, 5, what="gate closed")
    sent = lab.state("a")["counters"]["tx_adverts"]
    wait_for(lambda: lab.state("a")["counters"]["tx_adverts"] >= sent + 10, 10,
             what="ten more adverts")
    assert lab.in_state("a", "master") and lab.in_state("b", "backup")
