"""The XDP datapath inside the real daemon (issue 5 at the daemon level): real processes,
real XDP on veth, real clients, VRRP between two daemons.

    lan bridge ── a  (eth1 192.0.2.10, 02:00:00:00:00:0a)  dhcp-hotbackup run, prio 120
               ├─ b  (eth1 192.0.2.11, 02:00:00:00:00:0b)  dhcp-hotbackup run, prio 100
               └─ one namespace per client (dhclient, udhcpc, tcpdump on its eth0)

The pair shares VIP 192.0.2.1 (the server identifier) and has no sync/ folder, so each
device hands out its own range (A .100-.149, B .150-.199): the client's address says
which device answered, and the Ethernet source of every OFFER/ACK captured on the
client's side says it again. A standalone device (one per test) takes the rate-limit
flood, the random-MAC flood against the new-client budget and the kill -9 / stale
program cases.

Every daemon is started once per scenario (bcc compiles for about 2 s) and stopped
with SIGTERM (exit status 0 required) or kill -9 where that is the point.
"""

from __future__ import annotations

import json
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.config.tree import write_tree
from appliance.testing.daemonfiles import CLI, DaemonFiles
from appliance.testing.netns import Netns, Topology, inside, wait_for
from appliance.testing.require import require_tools
from appliance.testing.trees import standalone_tree
from lab.clients import Capture, Dhclient, Udhcpc, ipv4_addrs

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow]


VIP = "192.0.2.1"
A_IP, A_MAC, A_RANGE = "192.0.2.10", "02:00:00:00:00:0a", ("192.0.2.100", "192.0.2.149")
B_IP, B_MAC, B_RANGE = "192.0.2.11", "02:00:00:00:00:0b", ("192.0.2.150", "192.0.2.199")
SOLO_IP, SOLO_MAC = "192.0.2.2", "02:00:00:00:00:02"
ADVERT_MS = 100
ECHO_PORT = 7007
START_TIMEOUT = 60  # bcc compile (~2 s) on a 2-core box shared with other test runs


@pytest.fixture(scope="module", autouse=True)
def _requirements() -> None:
    # root and bcc: the netns and bpf markers (tests/conftest.py)
    require_tools("tcpdump", "dhclient", "udhcpc")


# -- a device: one daemon's namespace, config tree, runtime tree and process ---------------
class Device(DaemonFiles):
    def __init__(self, t: Topology, lan: Netns, root: Path, name: str, ip: str, mac: str,
                 ranges: tuple[str, str] = ("192.0.2.100", "192.0.2.199"),
                 extra: dict[str, str] | None = None) -> None:
        self.t, self.name, self.ip, self.mac = t, name, ip, mac
        self.ns = t.host(name)
        t.attach(self.ns, lan, "eth1", f"{ip}/24", mac=mac)
        self.root = root / name
        self.etc = standalone_tree(self.root, name=name, interface="eth1", datapath="xdp",
                                   ranges="-".join(ranges), extra=extra)
        self.run_dir = self.root / "run"
        self.log = self.root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # process
    def start(self) -> Device:
        with open(self.log, "ab") as log:
            self.proc = self.t.popen(self.ns, [CLI, "run", "--config", str(self.etc)],
                                     stdout=log, stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        """SIGTERM, as systemd would: the daemon must exit 0."""
        assert self.proc is not None
        rc = self.t.stop(self.proc, signal.SIGTERM, timeout=20)
        assert rc == 0, f"{self.name}: exit status {rc} after SIGTERM\n{self.log_tail()}"

    def kill9(self) -> None:
        assert self.proc is not None
        self.alive()
        self.t.kill9(self.proc)

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, \
            f"{self.name}: daemon exited ({self.proc and self.proc.returncode})\n" \
            + self.log_tail()

    # runtime tree: value(), stat() (DaemonFiles)
    def pid(self) -> int:
        try:
            return int(self.value("pid") or 0)
        except ValueError:
            return 0

    def is_(self, role: str, vrrp: str | None = None) -> bool:
        """The current process published `role` (and vrrp/state `vrrp`)."""
        self.alive()
        assert self.proc is not None
        return (self.pid() == self.proc.pid and self.value("role") == role
                and (vrrp is None or self.value("vrrp/state") == vrrp))

    def transition(self) -> str | None:
        """The reason of the last VRRP transition (runtime vrrp/last_transition)."""
        try:
            return json.loads(self.value("vrrp/last_transition") or "{}").get("reason")
        except ValueError:
            return None

    def wait(self, pred, what: str, timeout: float = 20) -> None:
        try:
            wait_for(pred, timeout, what=f"{self.name}: {what}")
        except TimeoutError as e:
            raise AssertionError(f"{e}\nruntime: role={self.value('role')} "
                                 f"vrrp={self.value('vrrp/state')}\n{self.log_tail()}") from None

    # the interface, as `ip link` shows it
    def xdp_prog_id(self) -> int | None:
        out = self.t.run(self.ns, ["ip", "-j", "-d", "link", "show", "dev", "eth1"]).stdout
        xdp = json.loads(out)[0].get("xdp")
        return xdp["prog"]["id"] if xdp and "prog" in xdp else None

    def ip_link_shows_xdp(self) -> bool:
        return "prog/xdp" in self.t.run(self.ns, ["ip", "link", "show", "dev", "eth1"]).stdout


def _pair_extra(priority: int) -> dict[str, str]:
    return {"vrrp/vrid": "51", "vrrp/priority": str(priority),
            "vrrp/advert_interval_ms": str(ADVERT_MS), "vrrp/virtual_ip": f"{VIP}/24",
            "vrrp/preempt": "1", "datapath/rate_limit_pps": "50"}


# -- clients and what they saw ----------------------------------------------------------
class Clients:
    def __init__(self, t: Topology, lan: Netns, workdir: Path) -> None:
        self.t, self.lan, self.dir = t, lan, workdir
        self._n = 0

    def new(self, name: str) -> tuple[Netns, str, Capture]:
        """A fresh namespace on the LAN (eth0, no address) with tcpdump already
        listening on it; returns (ns, mac, capture)."""
        self._n += 1
        mac = f"02:c0:00:00:00:{self._n:02x}"
        ns = self.t.host(name)
        self.t.attach(ns, self.lan, "eth0", mac=mac)
        cap = Capture(self.t, ns, "eth0", self.dir / f"{name}-pcap").start()
        return ns, mac, cap


_MSG = {1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak",
        7: "release", 8: "inform"}


def server_replies(cap: Capture) -> list[dict[str, str]]:
    """Every DHCP reply captured: Ethernet source, message type, server identifier,
    yiaddr."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether

    out = []
    for p in cap.packets():
        if not (UDP in p and p[UDP].sport == 67 and BOOTP in p and p[BOOTP].op == 2):
            continue
        opts = {o[0]: o[1] for o in p[DHCP].options if isinstance(o, tuple)} \
            if DHCP in p else {}
        out.append({"src": p[Ether].src.lower(), "type": _MSG.get(opts.get("message-type"), "?"),
                    "server_id": str(opts.get("server_id")), "yiaddr": p[BOOTP].yiaddr})
    return out


def wait_answered(cap: Capture, timeout: float = 15) -> list[dict[str, str]]:
    """The replies captured, once an OFFER and an ACK are among them (tcpdump writes
    each packet as it comes, -U)."""
    def both() -> list[dict[str, str]] | None:
        r = server_replies(cap)
        types = {x["type"] for x in r}
        return r if {"offer", "ack"} <= types else None

    try:
        return wait_for(both, timeout, what=f"{cap.ns}: OFFER and ACK captured")
    except TimeoutError as e:
        raise AssertionError(f"{e}: {server_replies(cap)}") from None


def assert_only(dev: Device, replies: list[dict[str, str]], server_id: str) -> None:
    wrong = [r for r in replies if r["src"] != dev.mac or r["server_id"] != server_id]
    assert not wrong, f"replies not from {dev.name} ({dev.mac}, {server_id}): {wrong}"


def in_range(addr: str, rng: tuple[str, str]) -> bool:
    return IPv4Address(rng[0]) <= IPv4Address(addr) <= IPv4Address(rng[1])


def lease_addr(t: Topology, ns: Netns) -> str:
    addrs = ipv4_addrs(t, ns, "eth0")
    assert len(addrs) == 1, f"{ns}: addresses {addrs}"
    return addrs[0]


def _recv(s: socket.socket, timeout: float) -> tuple[bytes, tuple[str, int]] | None:
    ready, _, _ = select.select([s], [], [], timeout)
    return s.recvfrom(2048) if ready else None


def udp_echo_through(srv: Netns, srv_ip: str, cli: Netns) -> None:
    """A UDP echo service in `srv` on ECHO_PORT; one datagram from `cli` and its echo."""
    with inside(srv):
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind((srv_ip, ECHO_PORT))
    with inside(cli):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        c.sendto(b"ping over udp", (srv_ip, ECHO_PORT))
        got = _recv(echo, 10)
        assert got is not None, f"UDP to {srv_ip}:{ECHO_PORT} did not arrive"
        echo.sendto(got[0], got[1])
        back = _recv(c, 10)
        assert back is not None and back[0] == b"ping over udp", "UDP echo not received"
    finally:
        echo.close()
        c.close()


# -- the pair -----------------------------------------------------------------------------
class Pair:
    def __init__(self, t: Topology, root: Path) -> None:
        self.t = t
        self.lan = t.lan()
        self.a = Device(t, self.lan, root, "a", A_IP, A_MAC, A_RANGE, _pair_extra(120))
        self.b = Device(t, self.lan, root, "b", B_IP, B_MAC, B_RANGE, _pair_extra(100))
        self.clients = Clients(t, self.lan, root / "clients")

    def steady(self, master: Device, backup: Device, timeout: float = START_TIMEOUT) -> None:
        master.wait(lambda: master.is_("active", "master"), "active and VRRP master", timeout)
        backup.wait(lambda: backup.is_("standby", "backup"), "standby and VRRP backup", timeout)


@pytest.fixture(scope="class")
def pair(tmp_path_factory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("dp-pair")
    with Topology("dpd") as t:
        p = Pair(t, root)
        # A first, then B: B joins a LAN with a master and must come up (and stay)
        # standby from its very first packet, its datapath never having been active.
        p.a.start()
        try:
            p.a.wait(lambda: p.a.is_("active", "master"), "active and VRRP master",
                     START_TIMEOUT)
            p.b.start()
            p.steady(p.a, p.b)
            yield p
            for d in (p.a, p.b):
                if d.proc is not None and d.proc.poll() is None:
                    d.stop()
        finally:
            for d in (p.a, p.b):
                print(f"==== {d.name} daemon log\n{d.log_tail(60)}")


class TestPair:
    def test_only_the_active_device_answers(self, pair: Pair):
        a, b, t = pair.a, pair.b, pair.t
        assert b.value("datapath/attach_mode") in ("native", "generic")
        assert b.xdp_prog_id() is not None
        dropped0 = b.stat("dropped_standby")

        c1, _, cap1 = pair.clients.new("c1")
        c2, _, cap2 = pair.clients.new("c2")
        dh = Dhclient(t, c1, "eth0", cap1.dir.parent / "c1-dhclient").start()
        ud = Udhcpc(t, c2, "eth0", cap2.dir.parent / "c2-udhcpc").start()
        dh.wait_event("BOUND", timeout=45)
        ud.wait_event("bound", timeout=45)

        # The clients' view: leases from A's range; every OFFER/ACK from A's MAC, with the VIP
        # as server identifier.
        for ns, cap in ((c1, cap1), (c2, cap2)):
            assert in_range(lease_addr(t, ns), A_RANGE)
            assert_only(a, wait_answered(cap), VIP)

        # B's kernel dropped what it heard (each client broadcast a DISCOVER and a REQUEST);
        # nothing reached B's server.
        b.wait_stat("dropped_standby", dropped0 + 4)
        assert b.stat("xdp_seen") >= b.stat("dropped_standby")
        for k in ("xdp_passed", "discover", "request", "offer", "ack"):
            assert b.stat(k) == 0, f"b: stats/{k} = {b.stat(k)}"
        a.wait_stat("ack", 2)

        # The standby is still a host on the LAN: ping and plain UDP reach it.
        t.run(c1, ["ping", "-c", "1", "-W", "5", B_IP])
        udp_echo_through(b.ns, B_IP, c1)
        assert b.is_("standby", "backup") and a.is_("active", "master")

    def test_vrrp_transition_flips_the_datapath(self, pair: Pair):
        a, b, t = pair.a, pair.b, pair.t
        pair.steady(a, b)

        # SIGTERM A: standby, priority-0 advert, detach; B becomes master and active at once.
        t0 = time.monotonic()
        a.stop()
        assert a.value("role") == "standby"
        assert not a.ip_link_shows_xdp(), "A left its XDP program attached after SIGTERM"
        # "master_stopped": B heard A's priority-0 advert (no Master_Down_Interval wait).
        b.wait(lambda: b.is_("active", "master") and b.transition() == "master_stopped",
               "active after A's priority-0 advert", 10)
        took = time.monotonic() - t0
        assert b.value("datapath/attach_mode") in ("native", "generic")

        # The next DISCOVER (a fresh client) is answered by B.
        c3, _, cap3 = pair.clients.new("c3")
        ud = Udhcpc(t, c3, "eth0", cap3.dir.parent / "c3-udhcpc").start()
        ud.wait_event("bound", timeout=45)
        assert in_range(lease_addr(t, c3), B_RANGE)
        assert_only(b, wait_answered(cap3), VIP)
        b.wait_stat("ack", 1)

        # A comes back with the higher priority and preempts: A answers again, B is standby.
        a.start()
        pair.steady(a, b)
        a.wait(lambda: a.transition() == "preempt", "master by preemption")
        b.wait(lambda: b.transition() == "higher_priority", "backup for A's priority")
        assert a.value("datapath/attach_mode") in ("native", "generic")
        b_offers = b.stat("offer")
        b_seen, b_passed = b.stat("xdp_seen"), b.stat("xdp_passed")
        c4, _, cap4 = pair.clients.new("c4")
        dh = Dhclient(t, c4, "eth0", cap4.dir.parent / "c4-dhclient").start()
        dh.wait_event("BOUND", timeout=45)
        assert in_range(lease_addr(t, c4), A_RANGE)
        assert_only(a, wait_answered(cap4), VIP)
        # B's kernel drops again (not only its server): c4's DISCOVER and REQUEST were
        # seen by B's XDP program and none passed.
        b.wait_stat("xdp_seen", b_seen + 2)
        assert b.stat("xdp_passed") == b_passed
        assert b.stat("offer") == b_offers
        print(f"SIGTERM on A -> B active: {took * 1000:.0f} ms")


# -- the rate limit -------------------------------------------------------------------------
def _discover_frame(mac: str) -> bytes:
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
                 / IP(src="0.0.0.0", dst="255.255.255.255")
                 / UDP(sport=68, dport=67)
                 / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=0x0F100D)
                 / DHCP(options=[("message-type", "discover"), "end"]))


def _random_mac_frames(n: int, seed: int, decline_every: int = 3) -> list[bytes]:
    """`n` frames from `n` distinct random MACs (Ethernet source = chaddr, as a
    starvation tool sends them): DISCOVERs, every `decline_every`-th a DECLINE. One
    scapy template per type with UDP checksum 0 ("none", RFC 768), MACs patched in."""
    import random

    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    def template(kind: str) -> bytes:
        return bytes(Ether(src="02:00:00:00:00:00", dst="ff:ff:ff:ff:ff:ff")
                     / IP(src="0.0.0.0", dst="255.255.255.255")
                     / UDP(sport=68, dport=67, chksum=0)
                     / BOOTP(xid=0x0F100D, chaddr=bytes(6))
                     / DHCP(options=[("message-type", kind), "end"]))

    kinds = (template("discover"), template("decline"))
    chaddr = 14 + 20 + 8 + 28  # Ethernet, IPv4, UDP, BOOTP chaddr (RFC 2131 §2)
    rng = random.Random(seed)
    macs: dict[bytes, None] = {}
    while len(macs) < n:
        macs[b"\x02" + rng.getrandbits(40).to_bytes(5, "big")] = None
    out = []
    for i, mac in enumerate(macs):
        raw = bytearray(kinds[i % decline_every == decline_every - 1])
        raw[6:12] = raw[chaddr:chaddr + 6] = mac
        out.append(bytes(raw))
    return out


class Flood(threading.Thread):
    """`rate` frames a second for `seconds`, paced, through an AF_PACKET socket opened
    in `ns`: `frames` in turn (one DISCOVER repeated, or one frame per random MAC)."""

    def __init__(self, ns: Netns, frames: list[bytes], rate: int, seconds: float) -> None:
        super().__init__(daemon=True)
        with inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.sock.bind(("eth0", 0))
        self.frames = frames
        self.rate, self.total = rate, int(rate * seconds)
        self.sent, self.elapsed = 0, 0.0
        self.started = threading.Event()

    def run(self) -> None:
        try:
            start = time.monotonic()
            for i in range(self.total):
                self.sock.send(self.frames[i % len(self.frames)])
                self.sent += 1
                if i == 20:
                    self.started.set()
                delay = start + (i + 1) / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the flood, not waiting for a timer
            self.elapsed = time.monotonic() - start
        finally:
            self.started.set()
            self.sock.close()


def test_flood_from_one_mac_is_limited_in_the_kernel(tmp_path: Path):
    pps, burst, factor, seconds = 20, 20, 10, 3.0
    with Topology("dpf") as t:
        lan = t.lan()
        srv = Device(t, lan, tmp_path, "srv", SOLO_IP, SOLO_MAC, extra={
            "datapath/rate_limit_pps": str(pps), "datapath/rate_limit_burst": str(burst)})
        srv.start()
        try:
            # attach_mode is written a moment after role and pid (one _publish).
            srv.wait(lambda: srv.is_("active") and srv.value("datapath/attach_mode"),
                     "active (standalone), datapath published", START_TIMEOUT)
            assert srv.value("datapath/attach_mode") in ("native", "generic")
            clients = Clients(t, lan, tmp_path / "clients")
            flooder, flood_mac, _ = clients.new("flooder")
            good, _, good_cap = clients.new("good")

            flood = Flood(flooder, [_discover_frame(flood_mac)], pps * factor, seconds)
            flood.start()
            assert flood.started.wait(15)
            ud = Udhcpc(t, good, "eth0", tmp_path / "good-udhcpc").start()
            ud.wait_event("bound", timeout=30)
            during = flood.is_alive()
            flood.join(seconds + 30)
            assert not flood.is_alive()
            assert during, "the lease came after the flood ended: nothing was proven"
            assert in_range(lease_addr(t, good), ("192.0.2.100", "192.0.2.199"))
            assert_only(srv, wait_answered(good_cap), SOLO_IP)

            # Every flood frame went through XDP; wait until the server has processed
            # (and the runtime tree shows) every frame XDP passed.
            srv.wait_stat("xdp_seen", flood.sent + 2)  # + the good client's DISCOVER, REQUEST
            srv.wait(lambda: srv.stat("discover") + srv.stat("request")
                     >= srv.stat("xdp_passed") > 0, "server caught up with xdp_passed")
            discover = srv.stat("discover")
            limited = srv.stat("dropped_ratelimit")
            allowed = burst + pps * flood.elapsed  # the token bucket's most
            good_discovers = 2  # udhcpc's own (one, maybe a retransmit)
            assert burst <= discover <= allowed + good_discovers + 2, \
                f"server saw {discover} DISCOVERs of {flood.sent}, allowed {allowed:.0f}"
            assert limited >= flood.sent - allowed - 2, (limited, flood.sent, allowed)
            assert srv.stat("xdp_seen") == srv.stat("xdp_passed") + limited \
                + srv.stat("dropped_standby") + srv.stat("dropped_malformed")
            print(f"flood: {flood.sent} DISCOVERs in {flood.elapsed:.2f}s; server saw "
                  f"{discover}, XDP dropped {limited}")
            srv.stop()
        finally:
            print(f"==== daemon log\n{srv.log_tail(60)}")


def test_random_mac_flood_spends_the_new_client_budget_while_a_client_renews(
        tmp_path: Path):
    """A DISCOVER/DECLINE flood from random MACs (a new chaddr and Ethernet source in
    every frame) meets the global new-client budget in the kernel: the server sees at
    most burst + rate x elapsed of it, the rest is stats/dropped_new_client (DP014 in
    the log). udhcpc, bound before the flood (so the kernel knows its MAC), renews
    twice during it (SIGUSR1: busybox stretches leases under 30 s, so a short lease
    would not renew in time) and keeps its address. Then a reload turns the budget
    off and new MACs pass again."""
    new_pps, new_burst, rate, seconds = 20, 20, 800, 8.0
    with Topology("dpn") as t:
        lan = t.lan()
        srv = Device(t, lan, tmp_path, "srv", SOLO_IP, SOLO_MAC, extra={
            "datapath/rate_limit_pps": "20", "datapath/rate_limit_burst": "20",
            "datapath/new_client_pps": str(new_pps),
            "datapath/new_client_burst": str(new_burst)})
        srv.start()
        try:
            srv.wait(lambda: srv.is_("active") and srv.value("datapath/new_client_pps"),
                     "active (standalone), datapath published", START_TIMEOUT)
            assert srv.value("datapath/new_client_pps") == str(new_pps)
            flooder = t.host("flooder")
            t.attach(flooder, lan, "eth0", mac="02:f1:00:00:00:01")
            good, _, good_cap = Clients(t, lan, tmp_path / "clients").new("good")
            ud = Udhcpc(t, good, "eth0", tmp_path / "good-udhcpc").start()
            ud.wait_event("bound", timeout=30)
            address = lease_addr(t, good)
            srv.wait_stat("ack", 1)
            names = ("xdp_seen", "xdp_passed", "dropped_new_client", "dropped_ratelimit",
                     "discover", "decline", "request", "dropped_malformed",
                     "dropped_overload")
            before = {k: srv.stat(k) for k in names}

            flood = Flood(flooder, _random_mac_frames(int(rate * seconds), seed=11), rate,
                          seconds)
            flood.start()
            assert flood.started.wait(15)
            for n in (1, 2):
                ud.renew()
                ud.wait_event("renew", count=n, timeout=seconds)  # ACKed
            during = flood.is_alive()
            flood.join(seconds + 30)
            assert not flood.is_alive()
            assert during, "the renewals came after the flood ended: nothing was proven"
            assert lease_addr(t, good) == address
            assert address in {r["yiaddr"] for r in server_replies(good_cap)
                               if r["type"] == "ack"}

            # Every flood frame went through XDP, and the server has processed every
            # frame XDP passed (received by type, or dropped as malformed / overload).
            srv.wait_stat("xdp_seen", before["xdp_seen"] + flood.sent)
            handled = ("discover", "decline", "request", "dropped_malformed",
                       "dropped_overload")
            srv.wait(lambda: sum(srv.stat(k) for k in handled) >= srv.stat("xdp_passed"),
                     "server caught up with xdp_passed")
            d = {k: srv.stat(k) - before[k] for k in names}
            allowed = new_burst + new_pps * flood.elapsed
            flood_passed = d["discover"] + d["decline"]  # the client only sent REQUESTs
            assert new_burst <= flood_passed <= allowed + 1, (flood_passed, allowed)
            assert d["dropped_new_client"] == flood.sent - flood_passed
            assert d["xdp_seen"] == d["xdp_passed"] + d["dropped_new_client"] \
                + d["dropped_ratelimit"]
            assert "DP014" in srv.log_tail(400), "no log line for the kernel's drops"
            print(f"flood: {flood.sent} frames from as many MACs in {flood.elapsed:.2f}s; "
                  f"server saw {flood_passed} (allowed {allowed:.0f}), XDP dropped "
                  f"{d['dropped_new_client']}; udhcpc renewed twice during it")

            # Reload with the budget off: unseen MACs pass again, none is counted.
            write_tree(srv.etc, {"datapath/new_client_pps": "0"})
            r = t.run(srv.ns, [CLI, "reload", "--config", str(srv.etc)], timeout=60)
            assert "datapath/new_client_pps" in r.stdout, r
            srv.wait(lambda: srv.value("datapath/new_client_pps") == "0", "budget off")
            seen, dropped = srv.stat("xdp_seen"), srv.stat("dropped_new_client")
            passed = srv.stat("xdp_passed")
            more = Flood(flooder, _random_mac_frames(100, seed=12), 1000, 0.1)
            more.run()  # in this thread: 100 frames, 100 new MACs
            srv.wait_stat("xdp_seen", seen + 100)
            assert srv.stat("dropped_new_client") == dropped
            assert srv.stat("xdp_passed") == passed + 100
            srv.stop()
        finally:
            print(f"==== daemon log\n{srv.log_tail(60)}")


# -- kill -9 and the stale program ------------------------------------------------------------
def test_stale_program_after_kill9_restart_and_cleanup(tmp_path: Path):
    with Topology("dps") as t:
        lan = t.lan()
        srv = Device(t, lan, tmp_path, "srv", SOLO_IP, SOLO_MAC)
        clients = Clients(t, lan, tmp_path / "clients")
        try:
            # 1. kill -9 leaves the program on the interface.
            srv.start()
            srv.wait(lambda: srv.is_("active"), "active (standalone)", START_TIMEOUT)
            first = srv.xdp_prog_id()
            assert first is not None
            srv.kill9()
            assert srv.ip_link_shows_xdp(), "XDP program gone after kill -9?"
            assert srv.xdp_prog_id() == first

            # 2. A restart replaces the stale program, and serves.
            srv.start()
            srv.wait(lambda: srv.is_("active"), "active after restart", START_TIMEOUT)
            second = srv.xdp_prog_id()
            assert second is not None and second != first
            assert "DP003" in srv.log_tail(200), "no log line for the replaced stale program"
            c1, _, cap1 = clients.new("c1")
            Udhcpc(t, c1, "eth0", tmp_path / "c1-udhcpc").start().wait_event("bound", timeout=45)
            assert_only(srv, wait_answered(cap1), SOLO_IP)

            # 3. kill -9 again; `dhcp-hotbackup cleanup` removes the stale program.
            srv.kill9()
            assert srv.xdp_prog_id() == second
            r = t.run(srv.ns, [CLI, "cleanup", "--config", str(srv.etc)], timeout=60)
            assert "detached" in r.stdout, r
            assert not srv.ip_link_shows_xdp()
            assert srv.xdp_prog_id() is None
            r = t.run(srv.ns, [CLI, "cleanup", "--config", str(srv.etc)], timeout=60)
            assert "nothing left behind" in r.stdout, r
        finally:
            print(f"==== daemon log\n{srv.log_tail(60)}")
