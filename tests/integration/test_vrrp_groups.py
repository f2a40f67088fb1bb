"""Several VRRP groups per device (issue 12): our VrrpServices, two groups per host, in
namespaces (root). The stand-alone node (`python -m lab.vrrp_node --groups`) runs one
VrrpService per group on one loop, as the daemon will; with `--policy 1` it runs the
real pair policy (appliance/pair/policy.py) over them.

    segment 100 (198.51.100.0/26)  ── a eth1.100 ─ b eth1.100 ─ obs o100   group ga
    segment 300 (203.0.113.0/24)   ── a eth1.300 ─ b eth1.300 ─ obs o300   ga's service
    segment 200 (198.51.100.64/26) ── a eth1.200 ─ b eth1.200 ─ obs o200   group gb
    segment 400 (198.51.100.128/26)── a eth1.400 ─ b eth1.400 ─ obs o400   gb's service
    lan (192.0.2.0/24)             ── a eth1 ─ b eth1 ─ obs eth1   two groups on one LAN

Load-sharing by priority: a is ga's master (200 against 100) and b is gb's. Each
segment is a bridge (this kernel has no 802.1Q), its ports named like VLAN
sub-interfaces. What a user checks: `ip addr` in each namespace (the VIPs and service
VIPs are on the right interfaces of the right host), the gratuitous ARPs an observer
captures on each segment, the state each node publishes. No test sleeps for a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from appliance.config.model import VrrpConfig
from appliance.testing.netns import Topology, inside, wait_for
from appliance.testing.require import require_tools
from appliance.vrrp.service import VrrpService, cleanup
from appliance.vrrp.timers import master_down_interval_s
from lab.vrrp_node import VrrpLab, group_from_json

GARP = {"garp_count": 5, "garp_interval_ms": 0, "garp_repeat_s": 5}

pytestmark = pytest.mark.netns

ADVERT_MS = 100
SLACK_S = 0.15  # process wake-up and capture on a shared 2-core machine
START_S = 20


def mdi(priority: int) -> float:
    return master_down_interval_s(priority, ADVERT_MS // 10)


GA_VIP, GA_SVC = "198.51.100.1/26", "203.0.113.1/24"
GB_VIP, GB_SVC = "198.51.100.65/26", "198.51.100.129/26"


def vlan_groups(prio_ga: int, prio_gb: int) -> list[dict[str, Any]]:
    """ga elects on eth1.100 and decides for eth1.300; gb on eth1.200 for eth1.400."""
    return [
        {"name": "ga", "interface": "eth1.100", "vrid": 100, "priority": prio_ga,
         "vips": [GA_VIP], "service_vips": [["eth1.300", GA_SVC]], "advert_ms": ADVERT_MS},
        {"name": "gb", "interface": "eth1.200", "vrid": 200, "priority": prio_gb,
         "vips": [GB_VIP], "service_vips": [["eth1.400", GB_SVC]], "advert_ms": ADVERT_MS},
    ]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    require_tools("tcpdump")  # root: the netns marker
    with Topology(prefix="vg") as t:
        lab = VrrpLab(t, str(tmp_path), advert_ms=ADVERT_MS)
        lab.host("a")
        lab.host("b")
        try:
            yield lab
        finally:
            for log in sorted(tmp_path.glob("*.log")):  # shown by pytest on failure
                print(f"==== {log.name}\n" + "\n".join(log.read_text(
                    errors="replace").splitlines()[-40:]))


def vlans(lab: VrrpLab) -> dict[tuple[str, str], str]:
    """The four segments, both hosts on each; (host, ifname) -> its address there."""
    addr = {}
    for seg, net in (("100", "198.51.100.0/26"), ("200", "198.51.100.64/26"),
                     ("300", "203.0.113.0/24"), ("400", "198.51.100.128/26")):
        lab.segment(seg, net)
        for host in ("a", "b"):
            addr[(host, f"eth1.{seg}")] = lab.join(host, seg, f"eth1.{seg}")
    return addr


def owns(lab: VrrpLab, host: str, dev: str, vip: str) -> bool:
    return vip in lab.addrs(host, dev)


def garp_from(watch: Any, mac: str, address: str, after: float, timeout: float = 5) -> float:
    """Capture time of the first gratuitous ARP for `address` from `mac` after `after`."""
    return watch._wait(
        lambda: next((t for t, m, a in watch.garps if m == mac and a == address
                      and t > after), None), f"gratuitous ARP for {address} from {mac}",
        timeout)


def moves(lab: VrrpLab, host: str, group: str) -> tuple[int, int]:
    c = lab.group_state(host, group)["counters"]
    return c["became_master"], c["became_backup"]


def test_load_sharing_and_one_groups_interface_down_moves_only_that_group(
        lab: VrrpLab) -> None:
    """a masters ga, b masters gb; the service VIPs sit on the service interfaces of
    the group's master only, announced there. a's eth1.100 (ga's VRRP interface) goes
    down: ga moves to b within its Master_Down_Interval, with its service VIP on b's
    eth1.300 and b's gratuitous ARP there; gb does not move. The link comes back: a
    preempts ga back. kill -9: the VIPs stay; cleanup(groups) removes them."""
    addr = vlans(lab)
    w300 = lab.seg_watch("300")
    t0 = time.time()
    node_a = lab.start_groups("a", vlan_groups(200, 100))
    lab.start_groups("b", vlan_groups(100, 200))
    lab.wait_group("a", "ga", "master", START_S)
    lab.wait_group("b", "gb", "master", START_S)
    lab.wait_group("b", "ga", "backup", 5, master=addr[("a", "eth1.100")])
    lab.wait_group("a", "gb", "backup", 5, master=addr[("b", "eth1.200")])

    # the right interfaces of the right host
    assert owns(lab, "a", "eth1.100", GA_VIP) and owns(lab, "a", "eth1.300", GA_SVC)
    assert not owns(lab, "a", "eth1.200", GB_VIP) and not owns(lab, "a", "eth1.400", GB_SVC)
    assert owns(lab, "b", "eth1.200", GB_VIP) and owns(lab, "b", "eth1.400", GB_SVC)
    assert not owns(lab, "b", "eth1.100", GA_VIP) and not owns(lab, "b", "eth1.300", GA_SVC)
    # (b may have held ga for a moment at start, when it started first: not asserted)
    garp_from(w300, lab.seg_mac[("a", "eth1.300")], GA_SVC.split("/")[0], t0)
    gb_before = {h: moves(lab, h, "gb") for h in ("a", "b")}

    # ga's interface on a goes down: only ga moves
    t_down = time.time()
    lab.t.link(lab.hosts["a"], "eth1.100", False)
    took = garp_from(w300, lab.seg_mac[("b", "eth1.300")], GA_SVC.split("/")[0],
                     t_down) - t_down
    print(f"\nga to b after a's eth1.100 went down: {took * 1000:.0f} ms to b's gratuitous "
          f"ARP for the service VIP (ga's Master_Down_Interval {mdi(100) * 1000:.0f} ms)")
    assert took <= mdi(100) + SLACK_S
    s = lab.wait_group("b", "ga", "master", 2)
    assert s["transitions"][-1]["reason"] == "master_down"
    lab.wait_group("a", "ga", "initialize", 2)
    assert owns(lab, "b", "eth1.100", GA_VIP) and owns(lab, "b", "eth1.300", GA_SVC)
    assert not owns(lab, "a", "eth1.300", GA_SVC)
    assert {h: moves(lab, h, "gb") for h in ("a", "b")} == gb_before
    assert lab.group_state("b", "gb")["state"] == "master"
    assert owns(lab, "b", "eth1.400", GB_SVC) and not owns(lab, "a", "eth1.400", GB_SVC)

    # back: a preempts ga (trusted: it follows nobody after its link returns)
    t_up = time.time()
    lab.t.link(lab.hosts["a"], "eth1.100", True)
    lab.wait_group("a", "ga", "master", 5)
    lab.wait_group("b", "ga", "backup", 2)
    garp_from(w300, lab.seg_mac[("a", "eth1.300")], GA_SVC.split("/")[0], t_up)
    assert owns(lab, "a", "eth1.300", GA_SVC) and not owns(lab, "b", "eth1.300", GA_SVC)
    assert {h: moves(lab, h, "gb") for h in ("a", "b")} == gb_before

    # kill -9 leaves ga's VIP and service VIP on a; cleanup(groups) removes what every
    # group left (`dhcp-hotbackup cleanup` runs it)
    lab.t.kill9(node_a)
    assert owns(lab, "a", "eth1.100", GA_VIP) and owns(lab, "a", "eth1.300", GA_SVC)
    specs = [group_from_json(g, GARP) for g in vlan_groups(200, 100)]
    with inside(lab.hosts["a"]):
        done = cleanup(specs)
    assert done == [f"stale virtual IP {GA_VIP} removed from eth1.100 (group ga)",
                    f"stale virtual IP {GA_SVC} removed from eth1.300 (group ga)"]
    assert not owns(lab, "a", "eth1.100", GA_VIP) and not owns(lab, "a", "eth1.300", GA_SVC)
    with inside(lab.hosts["a"]):
        assert cleanup(specs) == []


def test_a_failed_service_interface_hands_its_group_over_at_once(lab: VrrpLab) -> None:
    """With the pair policy: a's eth1.300 (bound to ga, not its VRRP interface) loses
    its link; the policy says ga is unhealthy here (SetHealth), a advertises priority
    1, and b preempts at once -- not after a Master_Down_Interval. gb stays. The link
    returns: healthy, a preempts ga back."""
    vlans(lab)
    w100 = lab.seg_watch("100")
    lab.start_groups("a", vlan_groups(200, 100), policy=True)
    lab.start_groups("b", vlan_groups(100, 200), policy=True)
    lab.wait_group("a", "ga", "master", START_S)
    lab.wait_group("b", "gb", "master", START_S)
    lab.wait_group("b", "ga", "backup", 5)
    wait_for(lambda: lab.state("a").get("serving") == ["ga"]
             and lab.state("b").get("serving") == ["gb"], 5, what="each serves its group")
    gb_before = {h: moves(lab, h, "gb") for h in ("a", "b")}

    t_down = time.time()
    lab.t.link(lab.hosts["a"], "eth1.300", False)
    took = garp_from(w100, lab.seg_mac[("b", "eth1.100")], GA_VIP.split("/")[0],
                     t_down) - t_down
    print(f"\nga to b after a's service interface eth1.300 went down: {took * 1000:.0f} ms "
          f"(Master_Down_Interval {mdi(100) * 1000:.0f} ms)")
    assert took < mdi(100) / 2, f"{took:.3f}s: not at once"
    s = lab.wait_group("b", "ga", "master", 2)
    assert s["transitions"][-1]["reason"] == "preempt"
    s = lab.wait_group("a", "ga", "backup", 2, healthy=False, priority=1)
    assert s["counters"]["health_changes"] == 1
    assert owns(lab, "b", "eth1.300", GA_SVC) and owns(lab, "b", "eth1.100", GA_VIP)
    assert not owns(lab, "a", "eth1.100", GA_VIP)
    wait_for(lambda: lab.state("a").get("serving") == [] and
             lab.state("b").get("serving") == ["ga", "gb"], 5, what="b serves both")
    assert {h: moves(lab, h, "gb") for h in ("a", "b")} == gb_before

    lab.t.link(lab.hosts["a"], "eth1.300", True)
    lab.wait_group("a", "ga", "master", 5, healthy=True, priority=200)
    lab.wait_group("b", "ga", "backup", 2)
    assert owns(lab, "a", "eth1.300", GA_SVC) and not owns(lab, "b", "eth1.300", GA_SVC)
    wait_for(lambda: lab.state("a").get("serving") == ["ga"], 5, what="a serves ga again")


LAN_GROUPS = [
    {"name": "ga", "interface": "eth1", "vrid": 51, "vips": ["192.0.2.100/24"],
     "advert_ms": ADVERT_MS},
    {"name": "gb", "interface": "eth1", "vrid": 52, "vips": ["192.0.2.200/24"],
     "advert_ms": ADVERT_MS},
]


def lan_groups(prio_ga: int, prio_gb: int) -> list[dict[str, Any]]:
    return [{**LAN_GROUPS[0], "priority": prio_ga}, {**LAN_GROUPS[1], "priority": prio_gb}]


def raw_vrrp_sockets(lab: VrrpLab, host: str) -> int:
    """Raw sockets of protocol 112 (0x70) in the namespace (/proc/net/raw)."""
    out = lab.t.run(lab.hosts[host], ["cat", "/proc/net/raw"]).stdout
    return sum(1 for line in out.splitlines()[1:] if line.split()[1].endswith(":0070"))


def test_two_groups_on_one_lan_share_one_socket_and_count_honestly(lab: VrrpLab) -> None:
    """Load-sharing on one LAN: ga (VRID 51) and gb (VRID 52) on eth1 of both hosts.
    One receive socket per host; each group hears the other host's adverts for itself
    only, so no group counts the other group's as rx_other_vrid. A VRID used twice on
    one interface is refused at start, naming the group that has it."""
    arp = lab.arp_watch()
    lab.start_groups("a", lan_groups(200, 100))
    lab.start_groups("b", lan_groups(100, 200))
    lab.wait_group("a", "ga", "master", START_S)
    lab.wait_group("b", "gb", "master", START_S)
    lab.wait_group("a", "gb", "backup", 5, master=lab.ip["b"])
    lab.wait_group("b", "ga", "backup", 5, master=lab.ip["a"])
    assert owns(lab, "a", "eth1", "192.0.2.100/24") and owns(lab, "b", "eth1", "192.0.2.200/24")
    assert not owns(lab, "a", "eth1", "192.0.2.200/24")
    assert not owns(lab, "b", "eth1", "192.0.2.100/24")
    assert raw_vrrp_sockets(lab, "a") == 1 and raw_vrrp_sockets(lab, "b") == 1

    wait_for(lambda: all(lab.group_state(h, g)["counters"]["rx_adverts"] >= 10
                         for h, g in (("a", "gb"), ("b", "ga"))), 10,
             what="ten adverts heard by each backup group")
    seen = {src: arp.count_adverts(src, 0) for src in (lab.ip["a"], lab.ip["b"])}
    for host in ("a", "b"):
        for group in ("ga", "gb"):
            c = lab.group_state(host, group)["counters"]
            assert c["rx_other_vrid"] == 0, (host, group, c)
            assert sum(v for k, v in c.items() if k.startswith("rx_bad")) == 0
            # every datagram the group read was an advert for it, and it took it
            assert c["rx_packets"] == c["rx_adverts"], (host, group, c)
    assert all(seen.values()), seen

    # a VRID used twice on one interface (here on the observer: no election is touched)
    dup = [{**LAN_GROUPS[0], "vrid": 61, "priority": 50},
           {**LAN_GROUPS[1], "vrid": 61, "priority": 50}]
    lab.hosts["obs"] = lab.obs  # a host for start_groups and addrs
    p = lab.start_groups("obs", dup)
    assert p.wait(15) == 2
    with open(lab.logs["obs"]) as f:
        text = f.read()
    assert "cannot start group gb: VRID 61 on eth1 is already used by group ga" in text, text
    assert not owns(lab, "obs", "eth1", "192.0.2.100/24")


def test_keepalived_peer_of_one_group_while_the_other_has_none(lab: VrrpLab) -> None:
    """On one LAN, ours runs ga (VRID 51) and gb (VRID 52); keepalived on b runs only
    VRID 51, with the higher priority. ga follows keepalived; gb, with no peer, is
    master alone; keepalived's adverts are ga's and never gb's rx_other_vrid. kill -9
    keepalived: ga takes the VIP within its Master_Down_Interval, gb does not move;
    keepalived back: it preempts ga."""
    require_tools("keepalived")
    arp = lab.arp_watch()
    ka = lab.start_keepalived("b", 150, vrid=51, vips=["192.0.2.100/24"])
    wait_for(lambda: owns(lab, "b", "eth1", "192.0.2.100/24"), START_S,
             what="keepalived master of VRID 51")
    lab.start_groups("a", lan_groups(100, 100))
    lab.wait_group("a", "ga", "backup", START_S, master=lab.ip["b"])
    lab.wait_group("a", "gb", "master", START_S)
    assert owns(lab, "a", "eth1", "192.0.2.200/24")
    assert not owns(lab, "a", "eth1", "192.0.2.100/24")
    wait_for(lambda: lab.group_state("a", "ga")["counters"]["rx_adverts"] >= 10, 10,
             what="ten keepalived adverts followed by ga")
    ga, gb = (lab.group_state("a", g)["counters"] for g in ("ga", "gb"))
    assert sum(v for k, v in ga.items() if k.startswith("rx_bad")) == 0
    assert gb["rx_other_vrid"] == 0 and gb["rx_packets"] == 0
    gb_moves = moves(lab, "a", "gb")

    t_kill = time.time()
    lab.t.stop(ka, sig=9)
    took = garp_from(arp, lab.mac["a"], "192.0.2.100", t_kill) - t_kill
    print(f"\nga after keepalived's kill -9: {took * 1000:.0f} ms "
          f"(Master_Down_Interval {mdi(100) * 1000:.0f} ms)")
    assert took <= mdi(100) + SLACK_S
    s = lab.wait_group("a", "ga", "master", 2)
    assert s["transitions"][-1]["reason"] == "master_down"
    assert owns(lab, "a", "eth1", "192.0.2.100/24") and owns(lab, "a", "eth1", "192.0.2.200/24")
    assert moves(lab, "a", "gb") == gb_moves

    lab.start_keepalived("b", 150, vrid=51, vips=["192.0.2.100/24"])
    s = lab.wait_group("a", "ga", "backup", 10, master=lab.ip["b"])
    assert s["transitions"][-1]["reason"] == "higher_priority"
    wait_for(lambda: not owns(lab, "a", "eth1", "192.0.2.100/24"), 2, what="ga's VIP gone")
    assert owns(lab, "a", "eth1", "192.0.2.200/24") and moves(lab, "a", "gb") == gb_moves


# -- 200 service interfaces: the flip first, then the VIPs and their announcements --------

N_SERVICE = 200


class ArpCapture:
    """Gratuitous ARPs on every interface of a namespace: one AF_PACKET socket (opened
    inside the namespace), read by a thread; `seen` is (time, ifname, sender MAC,
    address) with the receive time."""

    def __init__(self, ns: Any) -> None:
        with inside(ns):
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                       socket.htons(0x0806))
        self._sock.settimeout(0.2)
        self.seen: list[tuple[float, str, str, str]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                frame, addr = self._sock.recvfrom(128)
            except TimeoutError:
                continue
            except OSError:
                return
            arp = frame[14:42]
            if len(arp) < 28 or arp[6:8] != b"\x00\x01" or arp[14:18] != arp[24:28]:
                continue  # not a request, or not gratuitous (spa != tpa)
            self.seen.append((time.time(), addr[0], arp[8:14].hex(":"),
                              str(IPv4Address(arp[14:18]))))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self._sock.close()


def test_200_service_interfaces_flip_first_then_vips_and_announcements(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """One group with 200 service interfaces, VrrpService in this process (inside the
    host's namespace): the transition callback runs before any VIP work; then every
    service VIP is on its own interface (`ip addr`) and an observer on the other end
    of each interface captures its gratuitous ARP from that interface's MAC. Prints
    the time from the callback to the end of the VIP and GARP work. Reload removes
    half and adds them back while master; stop removes them all."""
    require_tools("ip")
    caplog.set_level(logging.INFO, logger="appliance.vrrp")
    with Topology(prefix="v2") as t:
        h, o = t.host("h"), t.host("o")
        t.veth(h, "eth1", o, "eth1")
        t.addr(h, "eth1", "192.0.2.10/24")
        names = [f"eth1.{100 + i}" for i in range(N_SERVICE)]
        batch = "\n".join(f"link add {n} type veth peer name o{i} netns {o.name}\n"
                          f"link set {n} up" for i, n in enumerate(names))
        subprocess.run(["ip", "-n", h.name, "-batch", "-"], input=batch, text=True,
                       check=True, capture_output=True)
        subprocess.run(["ip", "-n", o.name, "-batch", "-"], text=True, check=True,
                       input="\n".join(f"link set o{i} up" for i in range(N_SERVICE)),
                       capture_output=True)
        pairs = [(n, IPv4Interface(f"10.{i // 256}.{i % 256}.1/24"))
                 for i, n in enumerate(names)]
        macs = {r.split()[1].split("@")[0]: r.split("link/ether ")[1].split()[0] for r in
                t.run(h, ["ip", "-o", "link", "show"]).stdout.splitlines()
                if "link/ether" in r}
        cfg = VrrpConfig(vrid=51, priority=255, advert_interval_ms=ADVERT_MS, preempt=True,
                         virtual_ips=(IPv4Interface("192.0.2.100/24"),), garp_count=2,
                         garp_repeat_s=0)
        capture = ArpCapture(o)
        marks: dict[str, float] = {}
        try:
            async def run() -> VrrpService:
                loop = asyncio.get_running_loop()

                def on_transition(state: str, info: dict[str, Any]) -> None:
                    if state == "master":
                        assert not any(owns_h(v) for v in pairs[:1])  # nothing added yet
                        marks["flip"] = time.perf_counter()
                        loop.call_soon(lambda: marks.setdefault("done", time.perf_counter()))

                def owns_h(pair: tuple[str, IPv4Interface]) -> bool:
                    return str(pair[1]) in t.run(h, ["ip", "-4", "-o", "addr", "show", "dev",
                                                     pair[0]]).stdout

                svc = VrrpService(cfg, "eth1", on_transition, loop, group="ga",
                                  service_vips=pairs)
                await svc.start()  # the owner: master at once
                await asyncio.sleep(0)
                return svc

            with inside(h):
                loop = asyncio.new_event_loop()
                try:
                    svc = loop.run_until_complete(run())
                    took_ms = (marks["done"] - marks["flip"]) * 1000
                    shown = t.run(h, ["ip", "-4", "-o", "addr", "show"]).stdout
                    on = {(line.split()[1], line.split()[3]) for line in shown.splitlines()}
                    assert {(n, str(v)) for n, v in pairs} <= on
                    wait_for(lambda: len({a for *_, a in capture.seen}) >= N_SERVICE + 1, 5,
                             what="a gratuitous ARP for every VIP and service VIP")
                    by_vip = {a: (i, m) for _, i, m, a in capture.seen}
                    assert by_vip["192.0.2.100"] == ("eth1", macs["eth1"])
                    for i, (n, v) in enumerate(pairs):
                        assert by_vip[str(v.ip)] == (f"o{i}", macs[n]), (n, v)
                    first: dict[str, float] = {}
                    for when, _, _, a in capture.seen:
                        first.setdefault(a, when)
                    spread = (max(first.values()) - min(first.values())) * 1000
                    adds = [r.getMessage() for r in caplog.records
                            if "VRRP_SERVICE_VIPS group ga added" in r.getMessage()]
                    print(f"\n{N_SERVICE} service interfaces: transition callback -> "
                          f"{N_SERVICE} VIPs added and {cfg.garp_count} rounds of "
                          f"{N_SERVICE + 1} gratuitous ARPs sent: {took_ms:.1f} ms "
                          f"({adds[0].split(' in ')[-1]} of it adding the VIPs); the "
                          f"observer saw the first round within {spread:.1f} ms")
                    assert svc.counters()["tx_garps"] == cfg.garp_count * (N_SERVICE + 1)

                    # reload: half go, then come back, while master
                    capture.seen.clear()
                    svc.set_service_vips(pairs[::2])
                    shown = t.run(h, ["ip", "-4", "-o", "addr", "show"]).stdout
                    assert sum(1 for n, v in pairs if f" {v} " in shown) == N_SERVICE // 2
                    svc.set_service_vips(pairs)
                    shown = t.run(h, ["ip", "-4", "-o", "addr", "show"]).stdout
                    assert all(f" {v} " in shown for _, v in pairs)
                    wait_for(lambda: {a for *_, a in capture.seen} ==
                             {str(v.ip) for _, v in pairs[1::2]}, 5,
                             what="gratuitous ARPs for the re-added half only")

                    loop.run_until_complete(svc.stop())
                    shown = t.run(h, ["ip", "-4", "-o", "addr", "show"]).stdout
                    assert not any(f" {v} " in shown for _, v in pairs)
                    assert "192.0.2.100/24" not in shown
                finally:
                    with contextlib.suppress(Exception):
                        loop.close()
        finally:
            capture.close()
