"""The facade on several real ports: groups flip only their own interfaces, a shared
interface splits its clients, a reload adds and removes interfaces without touching
the others, a crash is cleaned up on every port, and a takeover is one bpf(2) call
whatever number of interfaces follow the group.

This kernel has no 802.1Q devices and no VLAN-filtering bridge, so each "VLAN
interface" is a veth port named like one (eth1.100), into a bridge of its own (one
namespace per segment) with one client behind it:

    cli100 ── br0 (lan100) ── eth1.100 ┐
    cli200 ── br0 (lan200) ── eth1.200 ├ srv: Datapath on all of them, UDP :67 socket
    cli300 ── br0 (lan300) ── eth1.300 │
    cli2   ── br0 (lan2)   ── eth2     ┘  (eth2 shared by groups 0 and 1)

Each port is its own physical port to the datapath (its own ifindex, untagged). The
server's one UDP socket on :67 reports the ingress interface of each datagram
(IP_PKTINFO). After each burst of DHCP frames every client sends a plain UDP sentinel
through the same bridge; once all sentinels are in, every frame sent before them has
been through XDP (same path, in order), so a missing DHCP frame is proven dropped
without sleeping.
"""

from __future__ import annotations

import re
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import dhcp_frames as f
import pytest

from appliance.config.model import DatapathConfig
from appliance.datapath import Datapath, cleanup_all, layout, loader
from appliance.datapath.plan import Binding
from appliance.dhcp import loadbalance
from appliance.testing.netns import Netns, Topology, inside
from appliance.testing.require import require_tools

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow]

CFG = DatapathConfig(mode="xdp", rate_limit_pps=0, new_client_pps=0)
SENTINEL_PORT = 6767
SO_RCVBUFFORCE = 33  # include/uapi/asm-generic/socket.h
IP_PKTINFO = 8  # include/uapi/linux/in.h; not exported by Python 3.11's socket
S = layout.Stat


@dataclass
class Segment:
    """One client LAN: its bridge namespace, the client, the server's port into it."""

    port: str
    srv_ip: str
    cli: Netns
    raw: socket.socket
    udp: socket.socket
    lan: Netns
    bridge_port: str  # the bridge's port towards the server


class Site:
    def __init__(self, t: Topology) -> None:
        self.t = t
        self.srv = t.host("srv")
        self.segments: dict[str, Segment] = {}
        with inside(self.srv):
            self.dhcp = _listener(67)
            self.dhcp.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            self.sentinel = _listener(SENTINEL_PORT)
        self._seq = 0

    def add(self, port: str, net: int) -> Segment:
        """A segment 192.0.2.<32*net>/27: server .1, client .2, on a bridge of its own."""
        lan = self.t.lan(f"lan{net}")
        cli = self.t.host(f"cli{net}")
        srv_ip, cli_ip = f"192.0.2.{32 * net + 1}", f"192.0.2.{32 * net + 2}"
        bridge_port = self.t.attach(self.srv, lan, port, f"{srv_ip}/27")
        self.t.attach(cli, lan, "eth0", f"{cli_ip}/27")
        with inside(cli):
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            raw.bind(("eth0", 0))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        seg = Segment(port, srv_ip, cli, raw, udp, lan, bridge_port)
        self.segments[port] = seg
        return seg

    def close(self) -> None:
        for s in self.segments.values():
            s.raw.close()
            s.udp.close()
        self.dhcp.close()
        self.sentinel.close()

    def open(self, bindings: list[Binding]) -> Datapath:
        with inside(self.srv):
            return Datapath.open(bindings, CFG)

    def close_dp(self, dp: Datapath) -> None:
        with inside(self.srv):
            dp.close()

    def exchange(self, sends: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Send a DISCOVER from chaddr `mac` into segment `port` for each (port, mac),
        then sentinels on every segment; returns the (port, chaddr) pairs the :67 socket
        received."""
        for port, mac in sends:
            self.segments[port].raw.send(bytes(f.discover(mac)))
        self._seq += 1
        tokens = {}
        for port, seg in self.segments.items():
            token = f"sentinel {self._seq} {port}".encode()
            tokens[token] = port
            seg.udp.sendto(token, (seg.srv_ip, SENTINEL_PORT))
        while tokens:
            ready, _, _ = select.select([self.sentinel], [], [], 5)
            assert ready, f"sentinels from {sorted(tokens.values())} did not arrive"
            tokens.pop(self.sentinel.recv(512), None)
        got = set()
        names = self.ifnames()
        while select.select([self.dhcp], [], [], 0)[0]:
            data, anc, _flags, _addr = self.dhcp.recvmsg(2048, socket.CMSG_SPACE(12))
            ifindex = next(struct.unpack("i", d[:4])[0] for lvl, typ, d in anc
                           if lvl == socket.IPPROTO_IP and typ == IP_PKTINFO)
            got.add((names[ifindex], data[28:34].hex(":")))
        return got

    def ifnames(self) -> dict[int, str]:
        with inside(self.srv):
            return {i: n for i, n in socket.if_nameindex()}

    def query(self, port: str) -> loader.Attachment:
        with inside(self.srv):
            return loader.query(port)


def _listener(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
    s.bind(("", port))
    return s


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Topology("dm") as t:
        s = Site(t)
        try:
            for net, port in enumerate(("eth1.100", "eth1.200", "eth1.300", "eth2",
                                        "eth1.400")):
                s.add(port, net)
            yield s
        finally:
            s.close()


# Two clients of the shared LAN, one in each group's half (bucket % 2).
_MACS = f.random_macs(64, seed=12)
EVEN = next(m for m in _MACS if loadbalance.group_of(f.mac_bytes(m), 6) == 0)
ODD = next(m for m in _MACS if loadbalance.group_of(f.mac_bytes(m), 6) == 1)
C100, C200, C300, C400 = (f"02:00:00:00:{n:02x}:01" for n in (1, 2, 3, 4))
SENDS = [("eth1.100", C100), ("eth1.200", C200), ("eth1.300", C300), ("eth2", EVEN),
         ("eth2", ODD)]
BINDINGS = [Binding("eth1.100", (0,)), Binding("eth1.200", (0,)), Binding("eth1.300", (1,)),
            Binding("eth2", (0, 1))]


def test_each_group_flips_only_its_interfaces_and_its_half_of_a_shared_lan(site: Site):
    dp = site.open(BINDINGS)
    try:
        assert set(dp.attach_modes) == {"eth1.100", "eth1.200", "eth1.300", "eth2"}
        assert dp.attach_mode == "native"
        assert {p.port for p in dp.placements} == set(dp.attach_modes)
        prog_id = dp.program.prog_id
        for port in dp.attach_modes:
            assert site.query(port).prog_id == prog_id  # one program on every port

        assert site.exchange(SENDS) == set()  # every group standby
        dp.set_group_role(0, True)
        assert site.exchange(SENDS) == {("eth1.100", C100), ("eth1.200", C200),
                                        ("eth2", EVEN)}
        dp.set_group_role(1, True)
        assert site.exchange(SENDS) == set(SENDS)
        dp.set_group_role(0, False)
        assert site.exchange(SENDS) == {("eth1.300", C300), ("eth2", ODD)}
        # What the kernel did is what verdict() (mode "off"'s check) says.
        for port, mac in SENDS:
            want = (port, mac) in {("eth1.300", C300), ("eth2", ODD)}
            assert dp.serves(port, f.mac_bytes(mac), 6) is want

        by_group = dp.counters_by_group()
        total = dp.counters()
        # Passed: group 0 in rounds 2 and 3 (3 each), group 1 in rounds 3 and 4 (2 each).
        assert by_group[0]["passed"] == 6 and by_group[1]["passed"] == 4
        assert by_group[1]["dropped_other_bucket"] == 1  # ODD while only 0 served eth2
        assert by_group[0]["dropped_other_bucket"] == 1  # EVEN while only 1 serves it
        assert total["seen"] == 4 * len(SENDS) == sum(
            total[s.counter_name] for s in layout.OUTCOMES)
    finally:
        site.close_dp(dp)
    for port in ("eth1.100", "eth1.200", "eth1.300", "eth2"):
        assert site.query(port).prog_id == 0
    assert site.exchange(SENDS) == set(SENDS)  # no program: the stack delivers all


def test_a_reload_adds_and_removes_interfaces_without_touching_the_others(site: Site):
    from appliance.datapath import DatapathError

    dp = site.open(BINDINGS)
    try:
        dp.set_group_role(0, True)
        dp.set_group_role(1, True)
        prog_id = dp.program.prog_id
        kept = {k: g for k, g in dp.program.read_ifaces().items()}
        idx = {p.name: p.key for p in dp.placements}

        # eth1.200 leaves, eth1.400 (a new port) joins group 1, eth2 is no longer shared.
        new = [Binding("eth1.100", (0,)), Binding("eth1.300", (1,)), Binding("eth2", (1,)),
               Binding("eth1.400", (1,))]
        with pytest.raises(DatapathError, match="another network namespace"):
            dp.set_interfaces(new)  # from the test's namespace: refused, nothing done
        with inside(site.srv):
            change = dp.set_interfaces(new)
        assert [n for _i, n in change.attach] == ["eth1.400"]
        assert [n for _i, n in change.detach] == ["eth1.200"]
        assert change.release == frozenset()
        assert site.query("eth1.200").prog_id == 0
        assert site.query("eth1.400").prog_id == prog_id
        assert site.query("eth1.100").prog_id == prog_id  # not re-attached
        now = dp.program.read_ifaces()
        for name in ("eth1.100", "eth1.300"):
            assert now[idx[name]] == kept[idx[name]]
        assert now[idx["eth2"]] == (1,)
        assert dp.group_role(0) and dp.group_role(1)  # roles untouched

        # eth1.200 has no program now: its DHCP reaches the stack, not ours any more.
        sends = [*SENDS, ("eth1.400", C400)]
        assert site.exchange(sends) == set(sends)
        dp.set_group_role(1, False)
        assert site.exchange(sends) == {("eth1.100", C100), ("eth1.200", C200)}

        # Group 0 loses its last interface: it goes back to standby.
        with inside(site.srv):
            change = dp.set_interfaces([Binding("eth1.300", (1,))])
        assert change.release == frozenset({0})
        assert not dp.group_role(0)
        assert set(dp.attach_modes) == {"eth1.300"}
        # 5 bound interfaces' frames in each of the two exchanges; group 0's count
        # although no interface is bound to it any more.
        assert dp.counters()["seen"] == 10
    finally:
        site.close_dp(dp)


def test_a_reload_onto_a_missing_interface_changes_nothing(site: Site):
    from appliance.datapath import DatapathError

    dp = site.open(BINDINGS[:2])
    try:
        before = dp.program.read_ifaces()
        with inside(site.srv), pytest.raises(DatapathError, match=r"eth1\.999: no such"):
            dp.set_interfaces([*BINDINGS[:2], Binding("eth1.999", (3,))])
        assert dp.program.read_ifaces() == before
        assert [b.name for b in dp.bindings] == ["eth1.100", "eth1.200"]
    finally:
        site.close_dp(dp)


CRASHING_DAEMON = """
import sys, time
from appliance.config.model import DatapathConfig
from appliance.datapath import Datapath
from appliance.datapath.plan import Binding
dp = Datapath.open([Binding(n, (0,)) for n in sys.argv[1:]],
                   DatapathConfig(rate_limit_pps=0), attach="generic")
dp.set_group_role(0, True)
print(dp.program.prog_id, flush=True)
time.sleep(600)
"""


def test_cleanup_after_a_crash_detaches_from_every_port(site: Site):
    """kill -9 leaves the program on every port; cleanup_all, given the interface
    names, removes it from each (and from nothing else)."""
    names = ["eth1.100", "eth1.200", "eth2"]
    p = site.t.popen(site.srv, [sys.executable, "-c", CRASHING_DAEMON, *names],
                     stdout=subprocess.PIPE)
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], 60)
    assert ready, "the crashing daemon did not start"
    stale = int(p.stdout.readline())
    site.t.kill9(p)
    for port in names:
        assert site.query(port) == loader.Attachment(stale, "generic", 0, stale)
    with inside(site.srv):
        done = cleanup_all([*names, "eth1.300", "nosuch0"])
        assert sorted(done) == [(n, "generic") for n in sorted(names)]
        assert cleanup_all(names) == []
    for port in names:
        assert site.query(port).prog_id == 0


# -- the takeover is one bpf(2) call --------------------------------------------------------
FLIPPER = """
import os, sys
from appliance.config.model import DatapathConfig
from appliance.datapath import Datapath
from appliance.datapath.plan import Binding
n, flips = int(sys.argv[1]), int(sys.argv[2])
dp = Datapath.open([Binding(f"eth1.{100 + i}", (7,)) for i in range(n)]
                   + [Binding("other0", (8,))], DatapathConfig(rate_limit_pps=0))
assert len(dp.attach_modes) == n + 1
os.write(1, b"FLIPS-BEGIN\\n")
for i in range(flips):
    dp.set_group_role(7, i % 2 == 0)
os.write(1, b"FLIPS-END\\n")
dp.close()
"""


def _bpf_calls_per_flip(t: Topology, n: int, flips: int = 10) -> list[str]:
    """Run FLIPPER under strace in a namespace of its own with n + 1 veth ports; the
    bpf(2) calls it made between its two markers."""
    ns = t.host(f"flip{n}")
    batch = "".join(f"link add eth1.{100 + i} type veth peer name q{i}\n"
                    f"link set eth1.{100 + i} up\nlink set q{i} up\n" for i in range(n))
    batch += "link add other0 type veth peer name qo\nlink set other0 up\nlink set qo up\n"
    t.run(ns, ["ip", "-batch", "-"], input=batch, timeout=120)
    r = t.run(ns, ["strace", "-f", "-qq", "-e", "trace=bpf,write", "-e", "signal=none",
                   "-s", "32", sys.executable, "-c", FLIPPER, str(n), str(flips)],
              timeout=300)
    lines = r.stderr.splitlines()
    begin = next(i for i, ln in enumerate(lines) if "FLIPS-BEGIN" in ln)
    end = next(i for i, ln in enumerate(lines) if i > begin and "FLIPS-END" in ln)
    return [ln for ln in lines[begin + 1:end] if re.search(r"\bbpf\(", ln)]


@pytest.mark.parametrize("n", [1, 200])
def test_a_takeover_is_one_map_write_whatever_the_number_of_interfaces(n: int):
    """strace counts the bpf(2) calls of set_group_role: exactly one
    BPF_MAP_UPDATE_ELEM per flip, with 1 interface bound to the group and with 200
    (each a port of its own, so 200 attachments)."""
    require_tools("strace")
    flips = 10
    with Topology("df") as t:
        calls = _bpf_calls_per_flip(t, n, flips)
    assert len(calls) == flips, calls
    assert all("BPF_MAP_UPDATE_ELEM" in c for c in calls), calls


def test_tagged_frames_on_a_real_port_and_its_rx_vlan_offload(site: Site):
    """A tagged interface on a real port: the kernel here has no 802.1Q devices, so the
    link table the facade reads is the namespace's own plus one VLAN device "vlan7"
    (VLAN 7 on eth1.300) that only the table knows. The facade turns the port's rx VLAN
    offload off (veth has it on), real 802.1Q frames from cli300 cross the bridge and
    reach native XDP on eth1.300 with their tag, and group 0 decides them; closing
    turns the offload back on.

    The bridge's own port towards the server gets tx-vlan-hw-insert off, as a switch's
    wire carries the tag in the frame: the bridge takes a tag out on receive
    (skb_vlan_untag), and a veth with the transmit offload on hands it to its peer
    beside the data, where XDP cannot see it (docs/datapath.md, "VLAN tags and
    offloads")."""
    from pyroute2.ethtool import Ethtool

    from appliance.datapath import links, offload
    from appliance.datapath.plan import Link

    seg = site.segments["eth1.300"]
    with inside(seg.lan):
        eth = Ethtool()
        feats = eth.get_features(seg.bridge_port)
        feats.features["tx-vlan-hw-insert"].enable = False
        eth.set_features(seg.bridge_port, feats)
        eth.close()

    with inside(site.srv):
        table = links.dump()
        port = table["eth1.300"]
        assert offload.rx_vlan_offload("eth1.300") is True
    table["vlan7"] = Link(port.index + 1000, "vlan7", "vlan", link=port.index, vlan_id=7)
    with inside(site.srv):
        dp = Datapath.open([Binding("vlan7", (0,)), Binding("eth2", (1,))], CFG,
                           read_links=lambda: table)
    try:
        assert {(p.name, p.port, p.vlans) for p in dp.placements} == {
            ("vlan7", "eth1.300", (7, 0)), ("eth2", "eth2", (0, 0))}
        with inside(site.srv):
            assert offload.rx_vlan_offload("eth1.300") is False
            assert offload.rx_vlan_offload("eth2") is True  # untagged: left alone
        tagged = bytes(f.tagged(f.discover(C300), 7))
        for active in (False, True):
            dp.set_group_role(0, active)
            before = dp.counters()
            seg.raw.send(tagged)
            seg.raw.send(bytes(f.tagged(f.discover(C300), 8)))  # VLAN 8: not ours
            site.exchange([])
            delta = {k: v - before[k] for k, v in dp.counters().items() if v != before[k]}
            assert delta == ({"seen": 1, "passed": 1, "unbound": 1} if active else
                             {"seen": 1, "dropped_standby": 1, "unbound": 1})
    finally:
        site.close_dp(dp)
    with inside(site.srv):
        assert offload.rx_vlan_offload("eth1.300") is True
