"""The datapath attached for real: a veth pair between a "server" and a "client"
namespace, native and generic XDP, real frames and real sockets.

    cli netns: eth0 192.0.2.2/24 ──veth── eth1 192.0.2.1/24 :srv netns (XDP here)

The server namespace holds a UDP socket on :67 (what the DHCP server binds) and a
"sentinel" socket on another port. Frames are sent from the client namespace with
an AF_PACKET socket, then one sentinel datagram through the normal stack; when the
sentinel arrives, every frame sent before it has been through XDP (same path, in
order), so a missing DHCP frame is proven dropped without sleeping.
"""

from __future__ import annotations

import select
import socket
import sys
import threading
import time
from collections.abc import Iterator

import dhcp_frames as f
import pytest

from appliance.config.model import DatapathConfig
from appliance.datapath import Datapath, cleanup, loader
from appliance.testing.netns import Netns, Topology, inside, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow]

SRV_IP, CLI_IP = "192.0.2.1", "192.0.2.2"
SENTINEL_PORT = 6767
NO_LIMIT = DatapathConfig(mode="xdp", rate_limit_pps=0)
SO_RCVBUFFORCE = 33  # include/uapi/asm-generic/socket.h; not exported by Python 3.11


class Lan:
    def __init__(self, t: Topology, srv: Netns, cli: Netns) -> None:
        self.t, self.srv, self.cli = t, srv, cli
        with inside(srv):
            self.dhcp = _udp_listener(67)
            self.sentinel = _udp_listener(SENTINEL_PORT)
        with inside(cli):
            self.raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.raw.bind(("eth0", 0))
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._seq = 0

    def close(self) -> None:
        for s in (self.dhcp, self.sentinel, self.raw, self.udp):
            s.close()

    def open(self, cfg: DatapathConfig = NO_LIMIT, attach: str = "auto") -> Datapath:
        with inside(self.srv):
            return Datapath.open("eth1", cfg, attach=attach)

    def close_dp(self, dp: Datapath) -> None:
        with inside(self.srv):
            dp.close()

    def send(self, frame: bytes) -> None:
        self.raw.send(frame)

    def sync(self) -> None:
        """Send a sentinel through the stack and wait until the server side has it."""
        self._seq += 1
        token = f"sentinel {self._seq}".encode()
        self.udp.sendto(token, (SRV_IP, SENTINEL_PORT))
        while True:
            data = _recv(self.sentinel, timeout=5)
            assert data is not None, "the sentinel (plain UDP) did not arrive"
            if data == token:
                return

    def received_dhcp(self) -> list[bytes]:
        """Every DHCP payload queued on the :67 socket (call after sync)."""
        out = []
        while (data := _recv(self.dhcp, timeout=0)) is not None:
            out.append(data)
        return out

    def xdp_in_ip_link(self) -> bool:
        out = self.t.run(self.srv, ["ip", "-d", "link", "show", "eth1"]).stdout
        return "xdp" in out

    def query(self) -> loader.Attachment:
        with inside(self.srv):
            return loader.query("eth1")


def _udp_listener(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    s.bind(("", port))
    return s


def _recv(s: socket.socket, timeout: float) -> bytes | None:
    ready, _, _ = select.select([s], [], [], timeout)
    return s.recv(65535) if ready else None


@pytest.fixture
def lan() -> Iterator[Lan]:
    with Topology("dp") as t:
        srv, cli = t.host("srv"), t.host("cli")
        t.veth(srv, "eth1", cli, "eth0")
        t.addr(srv, "eth1", f"{SRV_IP}/24")
        t.addr(cli, "eth0", f"{CLI_IP}/24")
        net = Lan(t, srv, cli)
        try:
            yield net
        finally:
            net.close()


DISCOVER = bytes(f.discover())


@pytest.mark.parametrize("mode", ["native", "generic"])
def test_dhcp_reaches_the_server_only_when_active(lan: Lan, mode: str):
    dp = lan.open(attach=mode)
    try:
        assert dp.attach_mode == mode
        assert lan.query().mode == mode and lan.xdp_in_ip_link()

        # Standby: DHCP dropped in the kernel; plain UDP (the sentinel) and ping work.
        lan.send(DISCOVER)
        lan.send(bytes(f.renew()))
        lan.sync()
        assert lan.received_dhcp() == []
        assert dp.counters()["dropped_standby"] == 2
        lan.t.run(lan.cli, ["ping", "-c", "1", "-W", "2", SRV_IP])

        # Active: the server's socket gets it.
        dp.set_role(True)
        lan.send(DISCOVER)
        lan.sync()
        assert lan.received_dhcp() == [bytes(f.discover()[f.UDP].payload)]
        assert dp.counters()["passed"] == 1

        # Back to standby.
        dp.set_role(False)
        lan.send(DISCOVER)
        lan.sync()
        assert lan.received_dhcp() == []
        assert dp.counters()["dropped_standby"] == 3
        lan.t.run(lan.cli, ["ping", "-c", "1", "-W", "2", SRV_IP])
    finally:
        lan.close_dp(dp)

    # Closed: detached, and DHCP reaches the socket with no program in the way.
    assert not lan.xdp_in_ip_link()
    assert lan.query().prog_id == 0
    lan.send(DISCOVER)
    lan.sync()
    assert len(lan.received_dhcp()) == 1


CRASHING_DAEMON = """
import sys, time
from appliance.config.model import DatapathConfig
from appliance.datapath import Datapath
dp = Datapath.open("eth1", DatapathConfig(rate_limit_pps=0), attach=sys.argv[1])
dp.set_role(True)
print(dp.program.prog_id, flush=True)
time.sleep(600)
"""


def test_stale_program_of_a_crashed_daemon_is_replaced(lan: Lan):
    """kill -9 leaves the program attached (XDP outlives its process) in role active;
    the next open replaces it, even across modes (stale generic, new native)."""
    import subprocess

    p = lan.t.popen(lan.srv, [sys.executable, "-c", CRASHING_DAEMON, "generic"],
                    stdout=subprocess.PIPE)
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], 30)
    assert ready, "the crashing daemon did not start"
    stale_id = int(p.stdout.readline())
    lan.t.kill9(p)

    assert lan.query() == loader.Attachment(stale_id, "generic", 0, stale_id)
    lan.send(DISCOVER)  # the stale program still passes DHCP (its role was active)
    lan.sync()
    assert len(lan.received_dhcp()) == 1

    dp = lan.open()
    try:
        assert dp.attach_mode == "native"
        now = lan.query()
        assert now.prog_id == dp.program.prog_id != stale_id
        assert now.skb_prog_id == 0
        lan.send(DISCOVER)  # the new program starts standby
        lan.sync()
        assert lan.received_dhcp() == []
    finally:
        lan.close_dp(dp)
    assert lan.query().prog_id == 0


def test_reopen_in_same_mode_replaces_and_old_close_leaves_new_alone(lan: Lan):
    old = lan.open(attach="native")
    new = lan.open(attach="native")
    try:
        assert lan.query().prog_id == new.program.prog_id
        lan.close_dp(old)  # must not detach the newer program
        assert lan.query().prog_id == new.program.prog_id
        new.set_role(True)
        lan.send(DISCOVER)
        lan.sync()
        assert len(lan.received_dhcp()) == 1
    finally:
        lan.close_dp(new)
    assert lan.query().prog_id == 0


def test_cleanup_detaches_any_program(lan: Lan):
    dp = lan.open(attach="generic")
    with inside(lan.srv):
        assert cleanup("eth1") == ["generic"]
        assert cleanup("eth1") == []
    assert not lan.xdp_in_ip_link()
    lan.close_dp(dp)  # closing after a cleanup is harmless


def test_flood_from_one_mac_is_rate_limited(lan: Lan):
    pps, seconds, factor = 50, 2.0, 10
    burst = 2 * pps  # datapath/rate_limit_burst 0
    cfg = DatapathConfig(mode="xdp", rate_limit_pps=pps, rate_limit_burst=0)
    dp = lan.open(cfg)
    received: list[bytes] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            data = _recv(lan.dhcp, timeout=0.05)
            if data is not None:
                received.append(data)

    thread = threading.Thread(target=reader, daemon=True)
    try:
        dp.set_role(True)
        thread.start()
        flood = bytes(f.discover(f.CLIENT))
        polite = bytes(f.discover(f.OTHER_CLIENT))
        total = int(pps * factor * seconds)
        start = time.monotonic()
        for i in range(total):
            lan.send(flood)
            if i % 100 == 50:
                lan.send(polite)  # a well-behaved client: one DISCOVER per 0.2 s
            if i % 10 == 9:  # pace to factor x pps
                delay = start + (i + 1) / (pps * factor) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        elapsed = time.monotonic() - start
        lan.sync()
        wait_for(lambda: len(received) >= dp.counters()["passed"], timeout=5,
                 what="the reader to catch up with the passed counter")
        counters = dp.counters()
    finally:
        stop.set()
        thread.join(5)
        lan.close_dp(dp)

    chaddr = {f.mac_bytes(f.CLIENT): 0, f.mac_bytes(f.OTHER_CLIENT): 0}
    for data in received:
        chaddr[data[28:34]] += 1
    flooder, polite_seen = chaddr[f.mac_bytes(f.CLIENT)], chaddr[f.mac_bytes(f.OTHER_CLIENT)]
    allowed = burst + pps * elapsed
    assert burst <= flooder <= allowed + 2, (flooder, allowed)
    assert polite_seen == total // 100, "the well-behaved client must get through"
    assert flooder + polite_seen == len(received) == counters["passed"]
    assert counters["dropped_ratelimit"] == total - flooder
    assert counters["dropped_ratelimit"] >= total - allowed - 2


def test_flood_counters(lan: Lan):
    """dropped_ratelimit rises by what the socket did not get."""
    cfg = DatapathConfig(mode="xdp", rate_limit_pps=10, rate_limit_burst=5)
    dp = lan.open(cfg)
    try:
        dp.set_role(True)
        frame = bytes(f.discover(f.CLIENT))
        for _ in range(200):
            lan.send(frame)
        lan.send(bytes(f.discover(f.OTHER_CLIENT)))
        lan.sync()
        got = lan.received_dhcp()
        c = dp.counters()
        assert c["seen"] == 201
        assert c["passed"] == len(got)
        assert 6 <= len(got) <= 5 + 1 + 3  # burst + the other MAC (+ refill during send)
        assert c["dropped_ratelimit"] == 201 - len(got)
    finally:
        lan.close_dp(dp)


def test_open_on_a_missing_interface_fails_cleanly(lan: Lan):
    from appliance.datapath import DatapathError

    with inside(lan.srv), pytest.raises(DatapathError, match="nosuch0: no such device"):
        Datapath.open("nosuch0", NO_LIMIT)
    assert lan.query().prog_id == 0
