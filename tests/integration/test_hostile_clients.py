"""Hostile clients against the real daemon, in network namespaces (issue 11: Input, Abuse).

Hostile packets are written by hand (BOOTP header with struct, option TLVs byte by byte,
so that a doubled option 61 is really two instances on the wire) and sent with scapy's
Ether/IP/UDP from a namespace on the client LAN; replies are read with scapy, not with
the product's codec. Real clients (udhcpc, dhclient, dhcrelay -a) run beside them.
What a user would check: the hostile requests are refused and counted (stats/*), the
real client is served, the daemon keeps running, and what is stored survives a restart
and matches the peer's copy. The datapath is off (DhcpNet and lab.pair default): these
hold without the XDP program.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from appliance.testing.daemonfiles import CLI, session
from appliance.testing.netns import Netns, Topology, inside, wait_for
from lab.clients import Capture, Dhclient, Dhcrelay, Udhcpc, ipv4_addrs, link_macs
from lab.pair import Pair

# Root for the namespaces: the marker skips without it, and fails under CI=true
# (appliance/testing/require.py).
pytestmark = [pytest.mark.netns]

SERVER_IP = "192.0.2.2"  # the standalone server's identifier (its interface address)
DISCOVER, REQUEST, DECLINE, RELEASE = 1, 3, 4, 7
OFFER, ACK, NAK = 2, 5, 6
MAGIC = bytes((99, 130, 83, 99))
BROADCAST = 0x8000
ETH_P_IP = 0x0800


def ip4(s: str) -> bytes:
    return socket.inet_aton(s)


def random_mac(rng: random.Random) -> bytes:
    return bytes((0x02, *rng.randbytes(5)))  # locally administered, unicast


def bootp(mtype: int, mac: bytes, options: list[tuple[int, bytes]], *, xid: int,
          ciaddr: str = "0.0.0.0", giaddr: str = "0.0.0.0", flags: int = BROADCAST) -> bytes:
    """A BOOTREQUEST (RFC 2131 §2) with the options exactly as listed: one TLV per
    entry, so a code listed twice is sent twice (RFC 3396)."""
    head = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, flags, ip4(ciaddr),
                       bytes(4), bytes(4), ip4(giaddr), mac + bytes(10), bytes(64), bytes(128))
    opts = bytes((53, 1, mtype))
    for code, value in options:
        assert len(value) <= 255
        opts += bytes((code, len(value))) + value
    body = head + MAGIC + opts + b"\xff"
    return body + bytes(max(0, 300 - len(body)))  # RFC 1542 §2.1: at least 300 bytes


def frame(payload: bytes, mac: bytes, src: str = "0.0.0.0", dst: str = "255.255.255.255",
          dst_mac: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    return bytes(Ether(src=mac.hex(":"), dst=dst_mac) / IP(src=src, dst=dst) /
                 UDP(sport=68, dport=67) / Raw(payload))


class Wire:
    """Raw frames on one interface of a namespace, sent and received from this process
    (an AF_PACKET socket opened inside the namespace). `replies()` are the DHCP replies
    seen so far, parsed with scapy: {xid: [(message type, yiaddr)]}."""

    def __init__(self, ns: Netns, ifname: str = "eth0") -> None:
        with inside(ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            s.bind((ifname, ETH_P_IP))
        s.setblocking(False)
        self.sock = s
        self.lock = threading.Lock()
        self.seen: dict[int, list[tuple[int, str]]] = {}

    def send(self, frames: list[bytes]) -> None:
        with self.lock:
            for f in frames:
                self.sock.send(f)

    def replies(self) -> dict[int, list[tuple[int, str]]]:
        from scapy.layers.dhcp import BOOTP, DHCP
        from scapy.layers.inet import UDP
        from scapy.layers.l2 import Ether

        while True:
            try:
                with self.lock:
                    data = self.sock.recv(65536)
            except BlockingIOError:
                return self.seen
            p = Ether(data)
            if UDP not in p or p[UDP].sport != 67 or BOOTP not in p or p[BOOTP].op != 2:
                continue
            opts = dict(o for o in p[DHCP].options if isinstance(o, tuple)) \
                if DHCP in p else {}
            self.seen.setdefault(p[BOOTP].xid, []).append(
                (opts.get("message-type", 0), p[BOOTP].yiaddr))

    def wait(self, xids: list[int], mtype: int, timeout: float = 20) -> dict[int, str]:
        """xid -> yiaddr of a reply of type `mtype` to each of `xids`."""
        def got() -> dict[int, str] | None:
            seen = self.replies()
            out = {x: y for x in xids for t, y in seen.get(x, ()) if t == mtype}
            return out if len(out) == len(xids) else None
        return wait_for(got, timeout, what=f"{len(xids)} replies of type {mtype}")

    def close(self) -> None:
        self.sock.close()


class Flood:
    """Frames from `make(i)` sent in a background thread, `pps` a second, until stop()."""

    def __init__(self, wire: Wire, make, pps: int = 1000) -> None:
        self.wire, self.make, self.pps = wire, make, pps
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            self.wire.send([self.make(self.sent)])
            self.sent += 1
            ahead = self.sent / self.pps - (time.monotonic() - t0)
            if ahead > 0:
                self._stop.wait(ahead)  # pacing the sender, not waiting for a result

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def restart(net) -> None:
    """SIGTERM (exit 0 required), then the same daemon again on the same store."""
    net.stop()
    with open(net.log, "ab") as log:
        net.proc = net.t.popen(net.srv, [CLI, "run", "--config", str(net.etc)], stdout=log,
                               stderr=subprocess.STDOUT)
    wait_for(lambda: net.value("pid") == str(net.proc.pid) and net.value("role") == "active",
             30, what="daemon serving again")


def sessions(leases: list[dict]) -> set[tuple]:
    return {session(x) for x in leases}


def assert_clean_log(text: str) -> None:
    for bad in ("Traceback", "ValueError", "Exception in callback", "J001"):
        assert bad not in text, f"daemon log shows {bad!r}:\n{text[-3000:]}"


# -- hostile REQUESTs in the batches of a real client's DORA -------------------------------
EVIL_HOSTNAME = bytes.fromhex("02eeee000001")
EVIL_CLIENT_ID = bytes.fromhex("02eeee000002")
EVIL_OPTION82 = bytes.fromhex("02eeee000003")
DOUBLED_61 = [(61, b"\x01" + b"\xaa" * 254), (61, b"\xaa\xaa")]  # 257 bytes joined


def hostile(i: int, server_id: str, base: str = "192.0.2.") -> bytes:
    """The issue's two REQUESTs, and a forged Option 82, in turn. Each hostile client
    keeps one MAC and one address: they flood the batches, not the pool."""
    sid = (54, ip4(server_id))
    kind = i % 3
    if kind == 0:
        mac, opts = EVIL_HOSTNAME, [(12, b"\xff" * 255), (50, ip4(base + "150")), sid]
    elif kind == 1:
        mac, opts = EVIL_CLIENT_ID, [*DOUBLED_61, (50, ip4(base + "151")), sid]
    else:
        mac, opts = EVIL_OPTION82, [(82, b"\x01\x06forged"), (50, ip4(base + "152")), sid]
    return frame(bootp(REQUEST, mac, opts, xid=0x0E000000 + i), mac)


def rx_queued(pid: int, port: int = 67) -> int:
    """Bytes waiting in the receive queue of `pid`'s UDP socket on `port`, as its kernel
    sees them (/proc/<pid>/net/udp is the process's own namespace's table)."""
    for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(f":{port:04X}"):
            return int(f[4].split(":")[1], 16)
    return 0


def dora_in_one_batch(device, wire: Wire, frames: list[bytes], start_client):
    """The real client's DISCOVER and the hostile `frames` read by the daemon as one
    batch: the daemon is frozen (SIGSTOP) while they queue in its socket, each seen
    arriving there, then let go (SIGCONT): one recv loop drains them all. Returns
    (client, address) once the client is bound; asserts that its first DISCOVER was
    answered, i.e. that the batch's OFFER was not lost. The DISCOVER is queued first:
    if the frozen batch waited over 0.5 s (a busy test machine) it is the one shed
    (dropped_overload), and the attempt is made again."""
    pid = device.proc.pid
    for attempt in range(3):
        shed = device.stat("dropped_overload")
        os.kill(pid, signal.SIGSTOP)
        try:
            queued = rx_queued(pid)
            c = start_client(attempt)
            for f in (None, *frames):
                if f is not None:
                    wire.send([f])
                queued = wait_for(lambda q=queued: (n if (n := rx_queued(pid)) > q else None),
                                  10, interval=0.001, what="a datagram in the daemon's queue")
        finally:
            os.kill(pid, signal.SIGCONT)
        ip = c.wait_event("bound", timeout=30)[1]
        before_select = c.log_text().split("broadcasting select")[0]
        if before_select.count("broadcasting discover") == 1:
            return c, ip
        try:
            device.wait_stat("dropped_overload", shed + 1, timeout=3)
        except AssertionError:
            raise AssertionError("the real client's first DISCOVER went unanswered: the "
                                 "batch it shared with the hostile requests lost its "
                                 "replies\n" + c.log_text()) from None
        c.stop()
    raise AssertionError("the frozen batch was shed three times (machine too busy)")


def test_hostile_requests_in_a_real_clients_batch_are_refused_and_it_is_served(
        short_lease_net, tmp_path, need):
    """Issue 11: a REQUEST with a 255-byte 0xff hostname was bound in memory, then
    journal.append raised in _on_readable: every reply of its batch was lost (here the
    real client's OFFER), the binding lived in memory only, and its expiry later killed
    the housekeeping task. The doubled option 61 did the same. Then, a flood of them
    while the client finishes its DORA, renews, and another client binds."""
    need("udhcpc")
    net = short_lease_net  # 10 s leases: the hostile binding expires within the test
    t = net.t
    evil, _ = net.client("evil")
    wire = Wire(evil)
    real, real_mac = net.client("real")
    try:
        c, ip = dora_in_one_batch(
            net, wire, [hostile(i, SERVER_IP) for i in range(3)],
            lambda n: Udhcpc(t, real, "eth0", tmp_path / f"udhcpc{n}").start())
        assert ip in ipv4_addrs(t, real, "eth0")
        with Flood(wire, lambda i: hostile(i, SERVER_IP), pps=1000) as flood:
            net.wait_stat("dropped_client_id_too_long", 20)
            c.renew()
            c.wait_event("renew", timeout=30)
            late, _ = net.client("late")
            c2 = Udhcpc(t, late, "eth0", tmp_path / "late").start()
            c2.wait_event("bound", timeout=30)
        sent = flood.sent + 3

        # Refused and counted; bounded and counted; the daemon is still there. Each kind
        # was a third (stats are published file by file about once a second: wait on each).
        net.assert_serving()
        for name in ("dropped_client_id_too_long", "hostname_ignored", "option82_unrelayed"):
            net.wait_stat(name, sent // 3)
        assert "D052 client identifier longer than 255 bytes" in net.log_text()
        by_mac = {x["mac"]: x for x in net.leases(all=True)}
        assert by_mac[real_mac]["ip"] == ip
        assert EVIL_CLIENT_ID.hex(":") not in by_mac  # nothing held for it
        assert by_mac[EVIL_HOSTNAME.hex(":")]["hostname"] is None  # bound, not stored
        assert by_mac[EVIL_OPTION82.hex(":")].get("option82") is None  # not stored

        # The hostile binding expires (housekeeping writes the expiry) and the daemon
        # goes on serving: the real client renews after that.
        wait_for(lambda: next((x["state"] for x in net.leases(all=True)
                               if x["mac"] == EVIL_HOSTNAME.hex(":")), "") == "expired",
                 30, what="the hostile binding expired and journaled")
        renewed = net.stat("ack")
        c.renew()
        net.wait_stat("ack", renewed + 1)
        net.assert_serving()
        c.stop()
        c2.stop()

        # The journal is whole: the same table from the stopped store and after restart.
        before = sessions(net.leases(all=True))
        restart(net)
        assert sessions(net.leases(all=True)) == before
        assert_clean_log(net.log_text())
    finally:
        wire.close()


# -- the same burst against the pair: the peer's copy stays whole --------------------------
def test_hostile_batch_on_the_pair_leaves_both_copies_whole(tmp_path, need):
    need("udhcpc")
    with Topology() as t:
        pair = Pair(t, tmp_path)
        pair.start()
        evil = t.host("evil")
        t.attach(evil, pair.lan, "eth0")
        real = t.host("real")
        t.attach(real, pair.lan, "eth0")
        wire = Wire(evil)
        try:
            c, ip = dora_in_one_batch(
                pair.a, wire, [hostile(i, SERVER_IP) for i in range(3)],
                lambda n: Udhcpc(t, real, "eth0", tmp_path / f"udhcpc{n}").start())
            with Flood(wire, lambda i: hostile(i, SERVER_IP), pps=500) as flood:
                pair.a.wait_stat("dropped_client_id_too_long", 20)
                c.renew()
                c.wait_event("renew", timeout=30)
            c.stop()
            sent = flood.sent + 3
            pair.a.wait_stat("dropped_client_id_too_long", sent // 3)
            pair.a.wait_stat("hostname_ignored", sent // 3)
            real_mac = link_macs(t, real)["eth0"]
            a = pair.a.leases(all=True)
            assert {x["mac"]: x["ip"] for x in a}[real_mac] == ip

            def same() -> bool:
                return sessions(pair.b.leases(all=True)) == sessions(pair.a.leases(all=True))

            wait_for(same, 20, what="B holds A's table")
            assert not pair.a.refused() and not pair.b.refused()
            # Both restarted on their stores: the same sessions, and in sync again.
            before = sessions(pair.a.leases(all=True))
            for d in (pair.b, pair.a):
                d.stop()
                d.start()
            pair.wait_in_sync()
            assert sessions(pair.a.leases(all=True)) == before
            assert sessions(pair.b.leases(all=True)) == before
            for d in (pair.a, pair.b):
                assert_clean_log(d.log_text())
        finally:
            wire.close()
            pair.stop()


# -- DECLINE -------------------------------------------------------------------------------
def dora(wire: Wire, macs: list[bytes], xid0: int, giaddr: str = "0.0.0.0",
         server_id: str = SERVER_IP) -> dict[bytes, str]:
    """DISCOVER and REQUEST for each MAC (broadcast flag: the replies come back to us);
    returns mac -> bound address."""
    xids = [xid0 + i for i in range(len(macs))]
    wire.send([frame(bootp(DISCOVER, m, [], xid=x, giaddr=giaddr), m)
               for m, x in zip(macs, xids, strict=True)])
    offered = wire.wait(xids, OFFER)
    wire.send([frame(bootp(REQUEST, m, [(50, ip4(offered[x])), (54, ip4(server_id))], xid=x,
                           giaddr=giaddr), m) for m, x in zip(macs, xids, strict=True)])
    acked = wire.wait(xids, ACK)
    return {m: acked[x] for m, x in zip(macs, xids, strict=True)}


def declined(net) -> list[dict]:
    return [x for x in net.leases(all=True) if x["state"] == "declined"]


def test_decline_flood_from_random_macs_quarantines_nothing(dhcp_net):
    """On main ~500 DECLINEs from random MACs quarantined a /24 for a day. A DECLINE
    needs the binding (RFC 2131 §4.3.3): an address only OFFERED, or someone else's,
    is not declinable."""
    net = dhcp_net
    evil, _ = net.client("decliner")
    wire = Wire(evil)
    rng = random.Random(11)
    try:
        base = net.stat("dropped_decline_unknown")
        # DECLINEs of every address of the pool, from random MACs that hold nothing.
        flood = [frame(bootp(DECLINE, random_mac(rng), [(50, ip4(f"192.0.2.{100 + i % 100}")),
                                                        (54, ip4(SERVER_IP))], xid=i), b"\x02" * 6)
                 for i in range(500)]
        wire.send(flood)
        # DECLINEs of the addresses just OFFERED to them.
        macs = [random_mac(rng) for _ in range(20)]
        xids = [0x0D000000 + i for i in range(20)]
        wire.send([frame(bootp(DISCOVER, m, [], xid=x), m) for m, x in zip(macs, xids,
                                                                            strict=True)])
        offered = wire.wait(xids, OFFER)
        wire.send([frame(bootp(DECLINE, m, [(50, ip4(offered[x])), (54, ip4(SERVER_IP))],
                               xid=x), m) for m, x in zip(macs, xids, strict=True)])
        net.wait_stat("dropped_decline_unknown", base + 520)
        assert declined(net) == []
        assert "D054 DECLINE of an address the client is not bound to" in net.log_text()
    finally:
        wire.close()


def test_bind_and_decline_flood_stops_at_the_quarantine_cap(dhcp_net):
    """Clients that really hold their address may decline it, over and over: the pool's
    quarantine stops at pools/lan/max_declined_percent (default 10 % of 100 addresses)."""
    net = dhcp_net
    evil, _ = net.client("binder")
    wire = Wire(evil)
    rng = random.Random(12)
    try:
        macs = [random_mac(rng) for _ in range(30)]
        bound = dora(wire, macs, 0x0B000000)
        assert len(set(bound.values())) == 30
        wire.send([frame(bootp(DECLINE, m, [(50, ip4(a)), (54, ip4(SERVER_IP))],
                               xid=0x0B100000 + i), m) for i, (m, a) in enumerate(bound.items())])
        net.wait_stat("decline_evicted", 20)
        q = declined(net)
        assert len(q) == 10
        assert {x["ip"] for x in q} <= set(bound.values())
        assert "D071 quarantine full" in net.log_text()
        # None of the 30 is bound any more, and the pool still serves others.
        held = {x["mac"] for x in net.leases()}
        assert not held & {m.hex(":") for m in macs}
        more = dora(wire, [random_mac(rng) for _ in range(5)], 0x0B200000)
        assert not set(more.values()) & {x["ip"] for x in q}
    finally:
        wire.close()


def test_a_real_client_is_served_during_a_discover_and_decline_flood(dhcp_net, tmp_path,
                                                                      need):
    """DISCOVERs from random MACs (a few hundred distinct, so that their offers do not
    hold the whole pool) and DECLINEs of every address, while a real client binds, then
    binds again. Holds with the XDP program off."""
    need("udhcpc")
    net = dhcp_net
    t = net.t
    evil, _ = net.client("flooder")
    wire = Wire(evil)
    real, real_mac = net.client("steady")
    rng = random.Random(13)
    macs = [random_mac(rng) for _ in range(40)]

    def noise(i: int) -> bytes:
        m = macs[i % len(macs)]
        if i % 2:
            return frame(bootp(DISCOVER, m, [], xid=0x0F000000 + i), m)
        return frame(bootp(DECLINE, m, [(50, ip4(f"192.0.2.{100 + i % 100}")),
                                        (54, ip4(SERVER_IP))], xid=0x0F000000 + i), m)

    try:
        with Flood(wire, noise, pps=2000) as flood:
            net.wait_stat("dropped_decline_unknown", 50)
            start = flood.sent
            c = Udhcpc(t, real, "eth0", tmp_path / "u1").start()
            ip = c.wait_event("bound", timeout=30)[1]
            for n in range(1, 4):
                c.renew()
                c.wait_event("renew", n, timeout=30)
            c.stop()
            c = Udhcpc(t, real, "eth0", tmp_path / "u2").start()
            assert c.wait_event("bound", timeout=30)[1] == ip  # its own address again
            c.stop()
            during = flood.sent - start
        assert during >= 20, f"only {during} flood packets while the client worked"
        net.assert_serving()
        lease = net.lease_of(real_mac)
        assert lease is not None and lease["ip"] == ip and lease["state"] == "bound"
        assert ip not in {x["ip"] for x in declined(net)}
    finally:
        wire.close()


# -- RELEASE against the binding's relay -----------------------------------------------
def release_packets(cap: Capture) -> list[tuple[str, str, str]]:
    """(IP source, giaddr, ciaddr) of each DHCPRELEASE captured."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP

    out = []
    for p in cap.packets():
        if BOOTP in p and DHCP in p and p[BOOTP].op == 1 and \
                ("message-type", RELEASE) in p[DHCP].options:
            out.append((p[IP].src, p[BOOTP].giaddr, p[BOOTP].ciaddr))
    return out


RELAY_UP = "192.0.2.3/24"
RELAY_DOWN_IF = "cust7"
RELAY_DOWN = "203.0.113.1/24"


def test_release_is_checked_against_the_relay_and_a_real_relayed_client_still_releases(
        dhcp_net, tmp_path, need):
    """dhclient behind ISC `dhcrelay -a` sends its RELEASE unicast to the server
    identifier, not through the relay (no giaddr, no Option 82): it must still free its
    binding. A RELEASE forged from elsewhere (a relayed one from another circuit, or a
    direct one from another address) must not."""
    need("dhcrelay", "dhclient", "tcpdump")
    net = dhcp_net
    t = net.t
    relay = t.host("rly")
    t.attach(relay, net.lan, "up0", RELAY_UP)
    rcli = t.host("rcl")
    t.veth(relay, RELAY_DOWN_IF, rcli, "eth0")
    t.addr(relay, RELAY_DOWN_IF, RELAY_DOWN)
    t.run(relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    mac = link_macs(t, rcli)["eth0"]
    spoofer, _ = net.client("spoofer")
    t.addr(spoofer, "eth0", "192.0.2.66/24")
    with Dhcrelay(t, relay, "up0", RELAY_DOWN_IF, SERVER_IP, tmp_path / "relay").start(), \
            Dhclient(t, rcli, "eth0", tmp_path / "dhclient").start() as c:
        ip = c.wait_event("BOUND", timeout=40)[1]
        wait_for(lambda: ip in ipv4_addrs(t, rcli, "eth0"), 10, what="the address set")
        # Its way to the server identifier: through the relay's router (dhclient-script
        # here sets the address only).
        t.run(rcli, ["ip", "route", "replace", "default", "via", RELAY_DOWN.split("/")[0]])
        lease = net.lease_of(mac)
        assert lease["state"] == "bound" and lease["option82"]["circuit_id"] == \
            RELAY_DOWN_IF.encode().hex()

        base = net.stat("dropped_release_mismatch")
        raw_mac = bytes.fromhex(mac.replace(":", ""))
        forged = [
            # Relayed, as if by the same relay but from another subscriber line.
            bootp(RELEASE, raw_mac, [(54, ip4(SERVER_IP)), (82, b"\x01\x05cust8")], xid=1,
                  ciaddr=ip, giaddr=RELAY_DOWN.split("/")[0], flags=0),
            # Straight to the server, from an address that is not the released one.
            bootp(RELEASE, raw_mac, [(54, ip4(SERVER_IP))], xid=2, ciaddr=ip, flags=0),
        ]
        with inside(spoofer):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("192.0.2.66", 68))
        try:
            for p in forged:
                s.sendto(p, (SERVER_IP, 67))
        finally:
            s.close()
        net.wait_stat("dropped_release_mismatch", base + 2)
        assert net.lease_of(mac)["state"] == "bound"
        assert "D056 RELEASE from elsewhere than the binding's relay" in net.log_text()

        released = net.stat("release")
        cap = Capture(t, net.srv, "eth1", tmp_path / "cap").start()
        c.release()  # dhclient -r: unicast to the server identifier, from its address
        net.wait_stat("release", released + 1)
        wait_for(lambda: (net.lease_of(mac, all=True) or {}).get("state") == "released", 15,
                 what="the relayed client's binding released")
        # What reached the server: dhclient's own RELEASE, unicast from its address with
        # no giaddr, and (ISC dhcrelay's packet socket sees it go by) a relayed copy.
        # Neither is refused as coming from elsewhere; whichever came second found the
        # binding already released.
        releases = wait_for(lambda: [r for r in release_packets(cap) if r[2] == ip] or None,
                            10, what="the RELEASE on the server's link")
        assert ("0.0.0.0", ip) in {(gi, src) for src, gi, _ in releases}
        cap.stop()
        assert net.stat("dropped_release_mismatch") == base + 2


# -- renewals of addresses nobody holds ------------------------------------------------------
def test_forged_renewal_of_a_free_address_gets_a_nak(dhcp_net):
    """Standalone, the table is complete: a RENEWING request for an address with no
    binding is NAKed (before: any free ciaddr made a durable binding in one packet)."""
    net = dhcp_net
    evil, _ = net.client("renewer")
    t = net.t
    taken = {x["ip"] for x in net.leases(all=True)}
    free = next(a for a in (f"192.0.2.{n}" for n in range(199, 99, -1)) if a not in taken)
    t.addr(evil, "eth0", f"{free}/24")
    wire = Wire(evil)
    mac = bytes.fromhex("02eeee0000aa")
    try:
        naks = net.stat("nak_no_binding")
        wire.send([frame(bootp(REQUEST, mac, [], xid=0x0A0A0A0A, ciaddr=free), mac,
                         src=free, dst=SERVER_IP, dst_mac=link_macs(t, net.srv)["eth1"])])
        wire.wait([0x0A0A0A0A], NAK)
        net.wait_stat("nak_no_binding", naks + 1)
        assert net.lease_of(mac.hex(":"), all=True) is None
    finally:
        wire.close()


def test_pair_naks_unknown_renewals_in_sync_and_recreates_them_when_split(tmp_path):
    """In sync, every binding either device made is in both tables: a renewal of an
    unknown address is NAKed. With the sync link down, the peer may hold bindings we have
    not seen: the renewal re-creates the binding (in our half of the pool)."""
    with Topology() as t:
        pair = Pair(t, tmp_path)
        pair.start()
        try:
            unknown = {"02:ee:ee:00:00:b0": "198.18.1.10", "02:ee:ee:00:00:b1": "198.18.1.12"}
            acks, summary = pair.a.renew(unknown, "--timeout", "1", "--retries", "2")
            assert acks == {} and summary["naks"] >= 2
            pair.a.wait_stat("nak_no_binding", 2)
            assert not set(unknown) & set(pair.a.bindings())
            pair.cut()
            pair.a.wait_peer("disconnected")
            acks, _ = pair.a.renew(unknown, "--timeout", "1", "--retries", "2")
            assert acks == unknown  # both even: device A's half of the split pool
            assert set(unknown) <= set(pair.a.bindings())
        finally:
            pair.restore()
            pair.stop()

