"""Real DHCP clients against the real server process, in network namespaces.

What a user checks: the client gets an address from the pool and configures it, renews
it and keeps it, releases it and the server's lease table says so (`dhcp-hotbackup
leases --json`); a relayed client's Option 82 is stored and echoed; 50 clients at once
get 50 distinct addresses; junk on port 67 is counted and never answered.

Clients as measured in /work/shared/reference: ISC dhclient keys on chaddr (no option
61) and renews by unicast at T1; busybox udhcpc sends 01+MAC and renews by unicast on
SIGUSR1; dhcpcd sends ff+IAID+DUID (RFC 4361). Tests wait on observable state (events
from the clients' scripts, the address on the interface, stats/*, the lease table,
captured packets), never on a sleep.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from appliance.testing.netns import wait_for
from lab.clients import (
    Capture,
    Dhclient,
    Dhcpcd,
    Dhcrelay,
    Udhcpc,
    ipv4_addrs,
    link_macs,
    record_script,
    scapy_exchange,
    udhcpc_oneshot,
)

# Root: network namespaces and real DHCP clients (tests/conftest.py applies the marker).
pytestmark = [pytest.mark.netns]

SERVER_IP = "192.0.2.2"
LAN_RANGE = ("192.0.2.100", "192.0.2.199")
RELAYED_RANGE = ("203.0.113.100", "203.0.113.199")
RELAY_UP = "192.0.2.3/24"
RELAY_DOWN_IF = "cust7"  # dhcrelay -a puts this name in the circuit-id
RELAY_DOWN = "203.0.113.1/24"
MAGIC = bytes((99, 130, 83, 99))
DISCOVER, OFFER, REQUEST, ACK, NAK = 1, 2, 3, 5, 6


def in_range(ip: str, rng: tuple[str, str]) -> bool:
    return IPv4Address(rng[0]) <= IPv4Address(ip) <= IPv4Address(rng[1])


# -- reading packets: scapy for Ether/IP/UDP, a small TLV walk for the DHCP options, so
#    that the product's own codec is not the oracle -----------------------------------
def dhcp_options(bootp: bytes) -> dict[int, bytes]:
    opts: dict[int, bytes] = {}
    if len(bootp) < 240 or bootp[236:240] != MAGIC:
        return opts
    i = 240
    while i < len(bootp) and bootp[i] != 255:
        if bootp[i] == 0:
            i += 1
            continue
        if i + 1 >= len(bootp):
            break
        n = bootp[i + 1]
        opts[bootp[i]] = opts.get(bootp[i], b"") + bootp[i + 2 : i + 2 + n]
        i += 2 + n
    return opts


class Dhcp:
    """One captured DHCP packet as the fields the tests look at."""

    def __init__(self, pkt) -> None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether

        self.eth_dst = pkt[Ether].dst
        self.ip_src, self.ip_dst = pkt[IP].src, pkt[IP].dst
        self.sport, self.dport = pkt[UDP].sport, pkt[UDP].dport
        raw = bytes(pkt[UDP].payload)
        self.op = raw[0]
        self.xid = int.from_bytes(raw[4:8], "big")
        self.ciaddr, self.yiaddr, self.giaddr = (str(IPv4Address(raw[o : o + 4]))
                                                 for o in (12, 16, 24))
        self.options = dhcp_options(raw)
        mt = self.options.get(53, b"")
        self.type = mt[0] if len(mt) == 1 else None

    @classmethod
    def parse(cls, pkt) -> Dhcp | None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether

        if isinstance(pkt, bytes):
            pkt = Ether(pkt)
        if IP not in pkt or UDP not in pkt or {pkt[UDP].sport, pkt[UDP].dport} - {67, 68}:
            return None
        if len(bytes(pkt[UDP].payload)) < 240:
            return None
        return cls(pkt)

    def __repr__(self) -> str:
        return (f"<DHCP type {self.type} xid {self.xid:#x} {self.ip_src}->{self.ip_dst} "
                f"ciaddr {self.ciaddr} yiaddr {self.yiaddr}>")


def parsed(pkts) -> list[Dhcp]:
    return [d for d in (Dhcp.parse(p) for p in pkts) if d is not None]


def unicast_renewal(cap: Capture, ip: str) -> tuple[Dhcp, Dhcp] | None:
    """A REQUEST from `ip` with ciaddr `ip`, unicast (IP and Ethernet) to the server, and
    the server's ACK for it back to `ip`: RFC 2131 RENEWING as seen on the wire."""
    msgs = parsed(cap.packets())
    for req in msgs:
        if (req.op == 1 and req.type == REQUEST and req.ciaddr == ip and req.ip_src == ip
                and req.ip_dst == SERVER_IP and req.eth_dst != "ff:ff:ff:ff:ff:ff"):
            for ack in msgs:
                if ack.op == 2 and ack.xid == req.xid and ack.type == ACK \
                        and ack.yiaddr == ip and ack.ip_dst == ip:
                    return req, ack
    return None


def wait_released(net, mac: str, ip: str) -> dict:
    def released():
        lease = net.lease_of(mac, all=True)
        return lease if lease and lease["state"] == "released" else None

    lease = wait_for(released, 20, what=f"lease of {mac} released")
    assert lease["ip"] == ip
    assert net.lease_of(mac) is None, "a released lease is still listed as active"
    return lease


# -- 1. ISC dhclient ---------------------------------------------------------------------
def test_dhclient_gets_renews_and_releases(short_lease_net, tmp_path, need):
    need("dhclient", "tcpdump")
    net = short_lease_net  # 10 s leases: dhclient renews at T1 = 5 s by itself
    t = net.t
    ns, mac = net.client("dhc")
    with Capture(t, ns, "eth0", tmp_path / "cap").start() as cap, \
            Dhclient(t, ns, "eth0", tmp_path / "dhclient").start() as c:
        ip = c.wait_event("BOUND")[1]
        assert in_range(ip, LAN_RANGE)
        assert ip in ipv4_addrs(t, ns, "eth0")
        lease = net.lease_of(mac)
        assert lease is not None and lease["ip"] == ip and lease["state"] == "bound"
        assert lease["client_id"] is None  # dhclient sends no option 61: keyed on chaddr
        assert lease["hostname"] == "itest-dhclient"
        first_start = lease["start"]
        # This daemon serves only this client: once its DORA's ACK is published, the
        # counters hold every REQUEST of the DORA (retransmissions included).
        net.wait_stat("ack", 1)
        requests, acks = net.stat("request"), net.stat("ack")

        renew = c.wait_event("RENEW", timeout=30)
        assert renew[1] == ip, f"renewal changed the address: {renew}"
        net.wait_stat("request", requests + 1)
        net.wait_stat("ack", acks + 1)
        wire = wait_for(lambda: unicast_renewal(cap, ip), 10,
                        what="unicast RENEW and its ACK in the capture")
        assert wire[0].options.get(54) is None  # RENEWING: no server id (RFC 2131 4.3.2)
        assert ip in ipv4_addrs(t, ns, "eth0")
        lease = net.lease_of(mac)
        assert lease["ip"] == ip and lease["start"] > first_start  # extended

        r = c.release()
        assert f"DHCPRELEASE of {ip}" in r.stderr, r.stderr
        c.wait_exit()
        wait_released(net, mac, ip)
        assert ip not in ipv4_addrs(t, ns, "eth0")


# -- 2. busybox udhcpc -------------------------------------------------------------------
def test_udhcpc_gets_renews_and_releases(dhcp_net, tmp_path, need):
    need("udhcpc", "tcpdump")
    net = dhcp_net
    t = net.t
    ns, mac = net.client("udh")
    with Capture(t, ns, "eth0", tmp_path / "cap").start() as cap, \
            Udhcpc(t, ns, "eth0", tmp_path / "udhcpc").start() as c:
        ip = c.wait_event("bound")[1]
        assert in_range(ip, LAN_RANGE)
        assert ip in ipv4_addrs(t, ns, "eth0")
        lease = net.lease_of(mac)
        assert lease is not None and lease["ip"] == ip and lease["state"] == "bound"
        assert lease["client_id"] == "01" + mac.replace(":", "")  # 01 + MAC

        requests, acks = net.stat("request"), net.stat("ack")
        c.renew()  # SIGUSR1
        assert c.wait_event("renew")[1] == ip
        net.wait_stat("request", requests + 1)
        net.wait_stat("ack", acks + 1)
        wait_for(lambda: unicast_renewal(cap, ip), 10,
                 what="unicast REQUEST with ciaddr and its ACK in the capture")
        renewed = net.lease_of(mac)
        assert renewed["ip"] == ip and renewed["start"] > lease["start"]  # extended

        releases = net.stat("release")
        c.release()  # SIGUSR2
        c.wait_event("deconfig", count=2)  # the first one is at start-up
        net.wait_stat("release", releases + 1)
        wait_released(net, mac, ip)
        assert ip not in ipv4_addrs(t, ns, "eth0")


def test_renewal_is_answered_without_arp(dhcp_net, tmp_path, need):
    """A renewal is answered at the client's hardware address, not through an ARP
    lookup: a server that never learnt the client's MAC (a backup right after a
    takeover: the clients ARPed for the master) answers at once. Here the server's
    neighbour table is flushed and the client answers no ARP at all."""
    need("udhcpc")
    net = dhcp_net
    t = net.t
    ns, _mac = net.client("noarp")
    with Udhcpc(t, ns, "eth0", tmp_path / "udhcpc").start() as c:
        ip = c.wait_event("bound")[1]
        srv_mac = link_macs(t, net.srv)["eth1"]
        t.run(ns, ["ip", "neigh", "replace", SERVER_IP, "lladdr", srv_mac, "dev", "eth0",
                   "nud", "permanent"])
        t.run(ns, ["sysctl", "-qw", "net.ipv4.conf.eth0.arp_ignore=8"])  # never answer
        t.run(net.srv, ["ip", "neigh", "flush", "dev", "eth1"])
        acks = net.stat("ack")
        c.renew()  # SIGUSR1: a unicast REQUEST with ciaddr
        assert c.wait_event("renew")[1] == ip
        net.wait_stat("ack", acks + 1)
        neigh = t.run(net.srv, ["ip", "neigh", "show", "dev", "eth1"]).stdout
        assert ip not in neigh, neigh  # the reply did not go through ARP


# -- 3. dhcpcd ---------------------------------------------------------------------------
def test_dhcpcd_gets_renews_and_releases(dhcp_net, tmp_path, need):
    need("dhcpcd", "nsenter", "unshare")
    net = dhcp_net
    t = net.t
    ns, mac = net.client("dcd")
    with Dhcpcd(t, ns, "eth0", tmp_path / "dhcpcd").start() as c:
        def leased() -> str | None:
            if not c.running():
                raise AssertionError(f"dhcpcd exited:\n{c.log_text()}")
            addrs = ipv4_addrs(t, ns, "eth0")
            return addrs[0] if addrs else None

        ip = wait_for(leased, 40, what="dhcpcd configured an address")
        assert in_range(ip, LAN_RANGE)
        lease = net.lease_of(mac)
        assert lease is not None and lease["ip"] == ip and lease["state"] == "bound"
        assert lease["hostname"] == "itest-dhcpcd"
        # RFC 4361: 0xff, IAID (dhcpcd: the last 4 bytes of the MAC), then the DUID.
        cid = bytes.fromhex(lease["client_id"])
        iaid = bytes.fromhex(mac.replace(":", ""))[-4:]
        assert cid == b"\xff" + iaid + c.duid(), (cid.hex(), c.duid().hex())

        requests, acks = net.stat("request"), net.stat("ack")
        acked = c.count(f"acknowledged {ip} from {SERVER_IP}")
        c.renew()  # dhcpcd -N eth0
        wait_for(lambda: c.count(f"acknowledged {ip} from {SERVER_IP}") > acked, 30,
                 what="dhcpcd renewal acknowledged")
        assert f"renewing lease of {ip}" in c.log_text()
        net.wait_stat("request", requests + 1)
        net.wait_stat("ack", acks + 1)
        assert ipv4_addrs(t, ns, "eth0") == [ip]
        renewed = net.lease_of(mac)
        assert renewed["ip"] == ip and renewed["start"] > lease["start"]  # extended

        c.release()  # dhcpcd -k eth0: releases, and exits with no interface left
        assert c.wait_exit() == 0, c.log_text()
        wait_released(net, mac, ip)
        assert ip not in ipv4_addrs(t, ns, "eth0")


# -- 4. a client behind ISC dhcrelay -a --------------------------------------------------
def test_relayed_client_option82_stored_and_echoed(dhcp_net, tmp_path, need):
    need("dhcrelay", "dhclient", "tcpdump")
    net = dhcp_net
    t = net.t
    relay = t.host("rly")
    t.attach(relay, net.lan, "up0", RELAY_UP)
    rcli = t.host("rcl")
    t.veth(relay, RELAY_DOWN_IF, rcli, "eth0")
    t.addr(relay, RELAY_DOWN_IF, RELAY_DOWN)
    mac = link_macs(t, rcli)["eth0"]
    with Capture(t, relay, "up0", tmp_path / "cap").start() as cap, \
            Dhcrelay(t, relay, "up0", RELAY_DOWN_IF, SERVER_IP, tmp_path / "relay").start(), \
            Dhclient(t, rcli, "eth0", tmp_path / "dhclient").start() as c:
        ip = c.wait_event("BOUND", timeout=40)[1]
        assert in_range(ip, RELAYED_RANGE)
        assert ip in ipv4_addrs(t, rcli, "eth0")

        lease = net.lease_of(mac)
        assert lease is not None and lease["ip"] == ip and lease["pool"] == "relayed"
        o82 = lease.get("option82")
        assert o82 is not None, f"Option 82 not stored: {lease}"
        assert o82["circuit_id"] == RELAY_DOWN_IF.encode().hex()
        assert o82["remote_id"] is None  # dhcrelay -a sends no remote-id
        raw = bytes.fromhex(o82["raw"])
        assert raw == bytes((1, len(RELAY_DOWN_IF))) + RELAY_DOWN_IF.encode()

        def ack_to_relay() -> Dhcp | None:
            for d in parsed(cap.packets()):
                if d.op == 2 and d.type == ACK and d.yiaddr == ip and d.ip_src == SERVER_IP:
                    return d
            return None

        ack = wait_for(ack_to_relay, 10, what="the server's ACK on the relay's uplink")
        giaddr = RELAY_DOWN.split("/")[0]
        assert ack.giaddr == giaddr
        # To the relay: giaddr port 67, routed through the relay's uplink (RFC 2131 4.1).
        assert (ack.ip_dst, ack.dport) == (giaddr, 67)
        assert ack.eth_dst == link_macs(t, relay)["up0"]
        assert ack.options.get(82) == raw, f"Option 82 not echoed: {ack.options.get(82)!r}"


# -- 5. 50 clients at once ---------------------------------------------------------------
def test_fifty_clients_at_once_get_fifty_distinct_addresses(dhcp_net, tmp_path, need):
    need("udhcpc")
    net = dhcp_net
    t = net.t
    n = 50
    ns, _ = net.client("many")
    batch = tmp_path / "macvlans"
    batch.write_text("".join(f"link add mv{i} link eth0 type macvlan mode bridge\n"
                             f"link set mv{i} up\n" for i in range(n)))
    t.run(ns, ["ip", "-batch", str(batch)])
    macs = link_macs(t, ns)
    got = tmp_path / "got"
    script = record_script(tmp_path / "record.sh", got)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = {f"mv{i}": udhcpc_oneshot(t, ns, f"mv{i}", script, logs / f"mv{i}.log")
             for i in range(n)}
    try:
        wait_for(lambda: all(p.poll() is not None for p in procs.values()), 90,
                 what=f"{n} udhcpc -q to finish")
    finally:
        for p in procs.values():
            t.stop(p)
    failed = {name: p.returncode for name, p in procs.items() if p.returncode != 0}
    assert not failed, "udhcpc failed: " + "; ".join(
        f"{name} rc {rc}: {(logs / f'{name}.log').read_text()[-300:]}"
        for name, rc in failed.items())

    addrs = {name: (got / name).read_text().strip() for name in procs}
    assert len(set(addrs.values())) == n, f"duplicate addresses: {sorted(addrs.values())}"
    assert all(in_range(ip, LAN_RANGE) for ip in addrs.values()), addrs
    table = {x["mac"]: x["ip"] for x in net.leases()}
    assert {macs[name]: table.get(macs[name]) for name in procs} == \
        {macs[name]: ip for name, ip in addrs.items()}


# -- 6. bad input ------------------------------------------------------------------------
def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _bootp(mac: str, xid: int, msg_type: int, *options: tuple[int, bytes]) -> bytes:
    """A client message built by hand: BOOTP header, cookie, 53 first, END."""
    hdr = bytearray(236)
    hdr[0], hdr[1], hdr[2] = 1, 1, 6  # BOOTREQUEST, Ethernet, hlen 6
    hdr[4:8] = xid.to_bytes(4, "big")
    hdr[28:34] = _mac_bytes(mac)
    opts = bytes((53, 1, msg_type)) + b"".join(bytes((c, len(v))) + v for c, v in options)
    return bytes(hdr) + MAGIC + opts + b"\xff"


def _frames(src_mac: str, payload: bytes) -> list[bytes]:
    """Ether/IP/UDP 68->67 broadcast around `payload`, checksums computed; fragmented
    when it does not fit one 1500-byte frame."""
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    ip = IP(bytes(IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                  / Raw(payload)))
    parts = fragment(ip, fragsize=1400) if len(ip) > 1500 else [ip]
    return [bytes(Ether(src=src_mac, dst="ff:ff:ff:ff:ff:ff") / p) for p in parts]


FORGED = "02:7e:ba:d0:00:01"  # chaddr and source MAC of the forged packets


def _junk_exchange(net, ns, junk: dict[str, bytes]) -> list[Dhcp]:
    """Send `junk` then one valid DISCOVER (the sentinel) from FORGED; return every reply
    seen until the sentinel's OFFER. The server takes packets in order, so by then any
    reply to the junk would have arrived too."""
    sentinel = 0x0BAD0001
    frames = [f for payload in junk.values() for f in _frames(FORGED, payload)]
    frames += _frames(FORGED, _bootp(FORGED, sentinel, DISCOVER))
    replies = [Dhcp.parse(r) for r in scapy_exchange(net.t, ns, "eth0", frames, [sentinel])]
    replies = [r for r in replies if r is not None]
    assert sentinel in [r.xid for r in replies], "no OFFER to the valid DISCOVER"
    return [r for r in replies if r.xid != sentinel]


def _assert_dropped_unanswered(net, ns, junk: dict[str, bytes]) -> None:
    malformed = net.stat("dropped_malformed")
    answered = _junk_exchange(net, ns, junk)
    assert answered == [], f"bad input was answered: {answered}"
    net.wait_stat("dropped_malformed", malformed + len(junk))
    assert net.stat("dropped_malformed") == malformed + len(junk), \
        f"{list(junk)}: dropped_malformed {malformed} -> {net.stat('dropped_malformed')}"
    net.assert_serving()


def test_malformed_packets_counted_never_answered(dhcp_net, tmp_path, need):
    need("udhcpc")
    net = dhcp_net
    t = net.t
    ns, mac = net.client("bad")
    good = _bootp(FORGED, 0x0BAD0002, DISCOVER)
    garbage = bytearray(random.Random(4242).randbytes(400))
    if garbage[236:240] == MAGIC:
        garbage[236] ^= 0xFF
    _assert_dropped_unanswered(net, ns, {
        "truncated": good[:200],
        "wrong magic": good[:236] + bytes((99, 130, 83, 100)) + good[240:],
        "option overrun": good[:-1] + bytes((12, 200)) + b"x" * 10,
        "garbage": bytes(garbage),
    })

    # ... and a real client is served afterwards.
    script = record_script(tmp_path / "record.sh", tmp_path / "got")
    p = udhcpc_oneshot(t, ns, "eth0", script, tmp_path / "udhcpc.log")
    wait_for(lambda: p.poll() is not None, 40, what="udhcpc -q")
    assert p.returncode == 0, (tmp_path / "udhcpc.log").read_text()
    ip = (tmp_path / "got" / "eth0").read_text().strip()
    assert in_range(ip, LAN_RANGE)
    assert net.lease_of(mac)["ip"] == ip


def test_oversized_packet_counted_never_answered(dhcp_net):
    """A DISCOVER that would be valid but for its size: 5000 bytes (END, then padding),
    more than the 4096 the server accepts; sent as IP fragments, reassembled by the
    server's kernel."""
    net = dhcp_net
    ns, _ = net.client("big")
    big = _bootp(FORGED, 0x0BAD0003, DISCOVER).ljust(5000, b"\x00")
    _assert_dropped_unanswered(net, ns, {"oversized": big})


def test_request_for_anothers_address_is_naked(dhcp_net, tmp_path, need):
    need("udhcpc")
    net = dhcp_net
    t = net.t
    ns, mac = net.client("nak")
    script = record_script(tmp_path / "record.sh", tmp_path / "got")
    p = udhcpc_oneshot(t, ns, "eth0", script, tmp_path / "udhcpc.log")
    wait_for(lambda: p.poll() is not None, 40, what="udhcpc -q")
    assert p.returncode == 0, (tmp_path / "udhcpc.log").read_text()
    held = (tmp_path / "got" / "eth0").read_text().strip()
    assert net.lease_of(mac)["ip"] == held

    # INIT-REBOOT REQUEST (option 50, no server id, ciaddr 0) for that address from
    # another client: NAK (RFC 2131 4.3.2), and the holder keeps it.
    naks = net.stat("nak")
    xid = 0x0BAD0005
    req = _bootp(FORGED, xid, REQUEST, (50, IPv4Address(held).packed))
    replies = [Dhcp.parse(r) for r in scapy_exchange(t, ns, "eth0", _frames(FORGED, req),
                                                     [xid])]
    nak = [r for r in replies if r is not None and r.xid == xid]
    assert [r.type for r in nak] == [NAK], f"expected one NAK, got {replies}"
    assert nak[0].yiaddr == "0.0.0.0"
    assert nak[0].options.get(54) == IPv4Address(SERVER_IP).packed
    net.wait_stat("nak", naks + 1)
    assert net.lease_of(mac)["ip"] == held
    assert net.lease_of(FORGED) is None
