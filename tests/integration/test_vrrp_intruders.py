"""Forged VRRP adverts from a third namespace on the client LAN (issue 11, "VRRP
intruders"), against the real daemons (namespaces, root).

    lan bridge ── a   (eth1 192.0.2.10)  dhcp-hotbackup run, vrrp/ priority 250
               ├─ b   (eth1 192.0.2.11)  dhcp-hotbackup run, vrrp/ priority 50
               │                         (keepalived in the last test)
               ├─ obs (eth1 192.0.2.250) the intruder: scapy; tcpdump (LanWatch)
               └─ cl  (eth0, no address) udhcpc, a real DHCP client

The forged advert is the one of the issue: priority 255 and the largest interval, 40.95 s
(Max Adver Int 4095 cs), well-formed (IP protocol 112, TTL 255, checksum over the IPv4
pseudo-header, to 224.0.0.18), checked with our own decoder before it is sent. Under RFC
5798 §6.4.2/§6.4.3 alone it makes the master step down and both devices wait
3 x 40.95 s + Skew_Time (about two minutes). Times are the observer's capture timestamps:
from the forged advert on the wire to the first advert of the pair after it.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.testing.netns import Topology, wait_for
from appliance.testing.require import require_tools
from appliance.vrrp.timers import master_down_interval_s
from lab.clients import udhcpc_oneshot
from lab.vrrp_node import LanWatch, VrrpLab

pytestmark = pytest.mark.netns

ADVERT_MS = 100
PRIO_A, PRIO_B = 250, 50  # far apart: a times out 78 ms before b (the bound)
START_S = 30  # a daemon start on a loaded machine
INTRUDER = "192.0.2.250"  # the observer namespace
MAX_INTERVAL_CS = 4095  # RFC 5798 §5.2.7: 12 bits of centiseconds


def mdi(priority: int, interval_cs: int = ADVERT_MS // 10) -> float:
    return master_down_interval_s(priority, interval_cs)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    require_tools("tcpdump", "udhcpc", "keepalived")  # root: the netns marker
    with Topology(prefix="vi") as t:
        lab = VrrpLab(t, str(tmp_path), advert_ms=ADVERT_MS)
        lab.host("a")
        lab.host("b")
        try:
            yield lab
        finally:
            for log in sorted(tmp_path.glob("*.log")):  # shown by pytest on failure
                print(f"==== {log.name}\n" + "\n".join(log.read_text(
                    errors="replace").splitlines()[-40:]))


FORGE = r"""
import sys
from scapy.all import IP, Ether, sendp
from scapy.layers.vrrp import VRRPv3
from appliance.vrrp.packet import Received, decode_datagram

prio, interval_cs, count = (int(x) for x in sys.argv[1:4])
ip = IP(src="192.0.2.250", dst="224.0.0.18", ttl=255, tos=0xC0, proto=112) / VRRPv3(
    vrid=51, priority=prio, adv=interval_cs, addrlist=["192.0.2.100"])
ip = IP(bytes(ip))  # scapy fills in lengths and checksums
got = decode_datagram(bytes(ip))
assert isinstance(got, Received), f"the forged advert is not well-formed: {got}"
assert (got.advert.priority, got.advert.max_adver_int_cs) == (prio, interval_cs)
sendp(Ether(dst="01:00:5e:00:00:12", src="02:00:00:00:00:fa") / ip, iface="eth1",
      count=count, inter=0.05, verbose=False)
"""


def forge(lab: VrrpLab, priority: int, interval_cs: int, count: int = 1) -> None:
    lab.t.run(lab.obs, [sys.executable, "-c", FORGE, str(priority), str(interval_cs),
                        str(count)])


def start_pair(lab: VrrpLab, **extra: dict[str, str]) -> dict[str, dict]:
    """a (250) master, b (50) backup following it, the election counted (counters are
    published about once a second); returns each one's published state."""
    lab.start_daemon("a", PRIO_A, extra=extra.get("a"))
    lab.start_daemon("b", PRIO_B, extra=extra.get("b"))
    lab.wait_state("a", "master", START_S)
    lab.wait_state("b", "backup", START_S, master=lab.ip["a"])
    wait_for(lambda: lab.state("a").get("counters", {}).get("became_master", 0) >= 1
             and lab.state("b").get("counters", {}).get("became_backup", 0) >= 1, 5,
             what="the election counted")
    return {x: lab.state(x) for x in ("a", "b")}


def counters_rose(lab: VrrpLab, before: dict[str, dict], name: str,
                  expect: dict[str, int]) -> bool:
    c, c0 = lab.state(name)["counters"], before[name]["counters"]
    return all(c[k] - c0[k] >= v for k, v in expect.items())


def assert_nothing_moved(lab: VrrpLab, before: dict[str, dict]) -> None:
    assert lab.in_state("a", "master", master=lab.ip["a"]) and lab.has_vip("a")
    assert lab.in_state("b", "backup", master=lab.ip["a"]) and not lab.has_vip("b")
    for name in ("a", "b"):
        now = lab.state(name)
        for k in ("became_master", "became_backup"):
            assert now["counters"][k] == before[name]["counters"][k], (name, k)
        assert now["last_transition"] == before[name]["last_transition"], name


def dhcp_lease(lab: VrrpLab, tmp: Path) -> tuple[str, str]:
    """A real client (busybox udhcpc, one lease and exit) on the LAN: (address, server
    identifier) it was given."""
    cl = lab.t.host("cl")
    lab.t.attach(cl, lab.lan, "eth0", mac="02:c1:00:00:00:01")
    out = tmp / "lease"
    script = tmp / "udhcpc.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && echo "$ip $serverid" > {out}\nexit 0\n')
    script.chmod(0o755)
    p = udhcpc_oneshot(lab.t, cl, "eth0", script, tmp / "udhcpc.log")
    assert p.wait(60) == 0, (tmp / "udhcpc.log").read_text()
    ip, server = out.read_text().split()
    return ip, server


# -- (a) vrrp/peer: the forged advert never reaches the state machine ---------------------

def test_with_peer_set_a_forged_advert_is_dropped_and_counted(lab: VrrpLab) -> None:
    watch = LanWatch(lab.t, lab.obs)
    before = start_pair(lab, a={"vrrp/peer": lab.ip["b"]}, b={"vrrp/peer": lab.ip["a"]})
    t_sent = time.time()
    forge(lab, 255, MAX_INTERVAL_CS, count=3)
    t0 = watch.wait_advert(INTRUDER, t_sent)

    # the master kept advertising at its own pace: no silence at all
    t_next = watch.wait_advert(lab.ip["a"], t0, timeout=5)
    assert t_next - t0 <= ADVERT_MS / 1000 + 0.05, f"a silent for {t_next - t0:.3f}s"
    for name in ("a", "b"):
        wait_for(lambda n=name: counters_rose(lab, before, n, {"rx_not_peer": 3}), 10,
                 what=f"{name} counts 3 rx_not_peer")
    assert_nothing_moved(lab, before)
    after = {x: lab.state(x)["counters"] for x in ("a", "b")}
    for name in ("a", "b"):
        # dropped before the state machine: no interval mismatch, no other reason
        assert after[name]["rx_interval_mismatch"] == before[name]["counters"][
            "rx_interval_mismatch"]
        with open(lab.logs[name]) as f:
            assert f"from {INTRUDER}: rx_not_peer" in f.read(), name
    # the backup heard the master all along, and never spoke
    assert after["b"]["rx_adverts"] > before["b"]["counters"]["rx_adverts"]
    assert watch.count_adverts(lab.ip["b"], t0) == 0


# -- (b) no vrrp/peer: one forged advert costs at most one Master_Down_Interval ----------

def test_without_peer_one_forged_advert_silences_the_pair_at_most_one_master_down_interval(
        lab: VrrpLab, tmp_path: Path) -> None:
    watch = LanWatch(lab.t, lab.obs)
    before = start_pair(lab)

    # first, forged adverts that RFC 5798 as written would act on at once: a lower
    # priority (b would preempt) and priority 0 (b would take over after Skew_Time).
    # They do not come from the master b follows: discarded and counted.
    forge(lab, 1, ADVERT_MS // 10)
    forge(lab, 0, ADVERT_MS // 10)
    wait_for(lambda: counters_rose(lab, before, "b", {"rx_lower_priority": 1,
                                                      "rx_stop_not_master": 1}), 10,
             what="b counts the lower-priority and the priority-0 advert")
    assert_nothing_moved(lab, before)
    before = {x: lab.state(x) for x in ("a", "b")}

    # the advert of the issue, once
    t_sent = time.time()
    forge(lab, 255, MAX_INTERVAL_CS)
    t0 = watch.wait_advert(INTRUDER, t_sent)
    bound = max(mdi(PRIO_A), mdi(PRIO_B))  # the pair's configured master-down interval
    rfc = mdi(PRIO_A, MAX_INTERVAL_CS)  # what §6.4.3 would have a wait
    try:
        t1, who, prio = watch.wait_advert_any({lab.ip["a"], lab.ip["b"]}, t0, timeout=10)
    except TimeoutError:
        pytest.fail(f"the pair was silent for over 10 s after one forged advert "
                    f"(RFC 5798 alone: {rfc:.1f} s)")
    silent = t1 - t0
    print(f"\nsilent after one forged advert (priority 255, 40.95 s): {silent * 1000:.1f} ms; "
          f"configured master-down interval a {mdi(PRIO_A) * 1000:.1f} ms, "
          f"b {mdi(PRIO_B) * 1000:.1f} ms; RFC 5798 §6.4.3 alone: {rfc:.1f} s")
    assert (who, prio) == (lab.ip["a"], PRIO_A)
    assert silent <= bound, f"silent {silent:.3f}s, bound {bound:.3f}s"

    # a stepped down and came back by its Master_Down_Timer; b never moved
    s = lab.wait_state("a", "master", 5, master=lab.ip["a"])
    assert (s["last_transition"]["reason"], s["last_transition"]["previous"]) == \
        ("master_down", "backup")
    lab.wait_state("b", "backup", 5, master=lab.ip["a"])
    wait_for(lambda: counters_rose(lab, before, "a", {"became_backup": 1,
                                                      "became_master": 1,
                                                      "rx_interval_mismatch": 1})
             and counters_rose(lab, before, "b", {"rx_interval_mismatch": 1}), 10,
             what="the step-down and the mismatch counted")
    c = lab.state("b")["counters"]
    assert (c["became_master"], c["became_backup"]) == (
        before["b"]["counters"]["became_master"], before["b"]["counters"]["became_backup"])
    with open(lab.logs["a"]) as f:
        assert "VRRP_INTERVAL_MISMATCH advert from 192.0.2.250" in f.read()

    # and the pair serves DHCP: a real client gets a lease from the virtual IP
    ip, server = dhcp_lease(lab, tmp_path)
    assert server == lab.vip.split("/")[0]
    assert ip.startswith("192.0.2.1") and 150 <= int(ip.rsplit(".", 1)[1]) <= 199, ip


# -- (c) a real peer with a longer interval: counted, followed, no flapping ---------------

def test_keepalived_with_a_longer_interval_is_followed_without_flapping(
        lab: VrrpLab) -> None:
    """keepalived advertises every second, we every 100 ms. Bounding what one advert
    teaches must not make us time out between its adverts (RFC 5798 §6.4.2 follows the
    master's interval; a plain min(learned, ours) would flap every second). Its first
    advert is not believed, which may cost one takeover besides the start-up one (we
    time out after our own 361 ms, keepalived answers our lower priority at once); from
    its second advert on we follow its interval, count the mismatch, and take over only
    when it dies, after its Master_Down_Interval."""
    watch = LanWatch(lab.t, lab.obs)
    ka_ms = 1000
    ka = lab.start_keepalived("b", 200, advert_ms=ka_ms)
    wait_for(lambda: lab.has_vip("b"), START_S, what="keepalived master")
    lab.start_daemon("a", 100)
    lab.wait_state("a", "backup", START_S, master=lab.ip["b"])
    wait_for(lambda: lab.state("a").get("counters", {}).get("rx_interval_mismatch", 0) >= 2,
             10, what="two of keepalived's adverts heard (counters publish once a second)")
    lab.wait_state("a", "backup", 5, master=lab.ip["b"])
    settled = lab.state("a")
    first_masters = settled["counters"]["became_master"]
    assert first_masters <= 2, "more than one takeover at first contact besides start-up"

    # eight more of keepalived's adverts: we never time out between them
    t_from = time.time()
    t = t_from
    for _ in range(8):
        t = watch.wait_advert(lab.ip["b"], t, timeout=5)
    assert watch.count_adverts(lab.ip["a"], t_from, t) == 0, "we advertised: a takeover"
    now = lab.state("a")
    assert now["counters"]["became_master"] == first_masters
    assert lab.in_state("a", "backup", master=lab.ip["b"])
    assert now["counters"]["rx_interval_mismatch"] > settled["counters"]["rx_interval_mismatch"]
    with open(lab.logs["a"]) as f:
        assert "VRRP_INTERVAL_MISMATCH advert from 192.0.2.11 on eth1 says 100 cs, ours " \
               "is 10 cs" in f.read()

    # keepalived killed: we wait for its (learned) interval, not ours
    last = t
    lab.t.stop(ka, sig=signal.SIGKILL)  # parent and VRRP child at once: no priority 0
    t_master = watch.wait_advert(lab.ip["a"], last, timeout=10)
    last = watch.last_advert(lab.ip["b"], t_master) or last
    took = t_master - last
    print(f"\ntakeover after keepalived's last advert: {took * 1000:.0f} ms (its "
          f"Master_Down_Interval {mdi(100, ka_ms // 10) * 1000:.0f} ms, ours "
          f"{mdi(100) * 1000:.0f} ms)")
    assert mdi(100, ka_ms // 10) - 0.05 <= took <= mdi(100, ka_ms // 10) + 0.1
    lab.wait_state("a", "master", 5)
