"""Relays against the real daemon (issue 13): link selection (RFC 3527), server identifier
override (RFC 5107), relay source port (RFC 8357) and shared networks, with relayed
packets built by scapy and sent from a relay's address through a plain UDP socket.

    lan bridge ─┬─ srv    eth1 192.0.2.2/24, `dhcp-hotbackup run` (standalone)
                └─ relay  eth0 192.0.2.3/24 + 198.51.100.1/25: plays the relay agent
                          (a BNG whose giaddr is not on the subscribers' subnet)

Pools: lan 192.0.2.0/24 (the relay's own link), relayed 203.0.113.0/24 (named by link
selection), and a shared network `sn` of two /25s with two addresses each.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv4Network

import pytest

from appliance.testing.netns import Topology, inside, wait_for
from appliance.testing.require import require_root
from tests.integration.conftest import RELAYED_POOL, DhcpNet

pytestmark = [pytest.mark.netns]

RELAY_IP = "192.0.2.3"
RELAY_IP2 = "198.51.100.1"  # the relay's address in the shared network's first subnet
SHARED = {
    "pools/sn-a/subnet": "198.51.100.0/25", "pools/sn-a/range": "198.51.100.10-198.51.100.11",
    "pools/sn-a/shared_network": "sn",
    "pools/sn-b/subnet": "198.51.100.128/25",
    "pools/sn-b/range": "198.51.100.130-198.51.100.131", "pools/sn-b/shared_network": "sn",
}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_root()
    with Topology("rl") as t:
        n = DhcpNet(t, tmp_path_factory.mktemp("relays"), lease_time=600,
                    extra={**RELAYED_POOL, **SHARED})
        relay = t.host("relay")
        t.attach(relay, n.lan, "eth0", f"{RELAY_IP}/24")
        t.addr(relay, "eth0", f"{RELAY_IP2}/25")
        n.relay = relay
        yield n
        n.stop()


def sub(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def packet(mtype: str, mac: str, giaddr: str, rai: bytes, xid: int, **opts) -> bytes:
    """A relayed BOOTREQUEST built by scapy (an independent encoder)."""
    from scapy.layers.dhcp import BOOTP, DHCP

    ciaddr = opts.pop("ciaddr", "0.0.0.0")
    o = [("message-type", mtype), *opts.items(), ("relay_agent_information", rai), "end"]
    return bytes(BOOTP(op=1, hops=1, xid=xid, giaddr=giaddr, ciaddr=ciaddr,
                       chaddr=bytes.fromhex(mac.replace(":", "")) + bytes(10)) / DHCP(options=o))


class Relay:
    """A UDP socket in the relay's namespace, bound to `port`, as a relay agent's."""

    def __init__(self, net: DhcpNet, port: int = 67) -> None:
        with inside(net.relay):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.settimeout(5)

    def ask(self, payload: bytes, xid: int) -> dict:
        """Send to the server; the reply with `xid`, decoded by scapy."""
        from scapy.layers.dhcp import BOOTP, DHCP

        self.sock.sendto(payload, ("192.0.2.2", 67))
        while True:
            data = self.sock.recv(4096)
            p = BOOTP(data)
            if p.xid != xid:
                continue
            opts = {o[0]: o[1] for o in p[DHCP].options if isinstance(o, tuple)}
            return {"yiaddr": p.yiaddr, "giaddr": p.giaddr, **opts}

    def close(self) -> None:
        self.sock.close()


def dora(relay: Relay, mac: str, giaddr: str, rai: bytes, xid: int) -> tuple[dict, dict]:
    off = relay.ask(packet("discover", mac, giaddr, rai, xid), xid)
    assert off["message-type"] == 2, off
    ack = relay.ask(packet("request", mac, giaddr, rai, xid + 1, requested_addr=off["yiaddr"],
                           server_id=off["server_id"]), xid + 1)
    return off, ack


def test_link_selection_picks_the_subscribers_subnet(net):
    r = Relay(net)
    try:
        rai = sub(1, b"port1") + sub(5, IPv4Address("203.0.113.0").packed)
        off, ack = dora(r, "02:aa:00:00:00:01", RELAY_IP, rai, 0x100)
        # giaddr is on the LAN (pool lan), the sub-option names 203.0.113.0/24
        assert IPv4Address(off["yiaddr"]) in IPv4Network("203.0.113.0/24")
        assert off["subnet_mask"] == "255.255.255.0" and off["giaddr"] == RELAY_IP
        assert ack["message-type"] == 5 and ack["yiaddr"] == off["yiaddr"]
        assert ack["relay_agent_information"] == rai  # echoed whole (RFC 3046 §2.2)
        lease = net.lease_of("02:aa:00:00:00:01")
        assert lease["ip"] == off["yiaddr"] and lease["option82"]["circuit_id"] == b"port1".hex()
    finally:
        r.close()


def test_server_id_override_is_option54_and_renewals_through_it_are_ours(net):
    r = Relay(net)
    try:
        rai = sub(1, b"port2") + sub(11, IPv4Address(RELAY_IP).packed)
        off, ack = dora(r, "02:aa:00:00:00:02", RELAY_IP, rai, 0x200)
        assert off["server_id"] == RELAY_IP and ack["server_id"] == RELAY_IP
        assert ack["message-type"] == 5
        # The client renews to the override address (the relay), which relays it.
        ren = r.ask(packet("request", "02:aa:00:00:00:02", RELAY_IP, rai, 0x202,
                           ciaddr=ack["yiaddr"]), 0x202)
        assert ren["message-type"] == 5 and ren["server_id"] == RELAY_IP
        # The RELEASE names the override: it is ours.
        r.sock.sendto(packet("release", "02:aa:00:00:00:02", RELAY_IP, rai, 0x203,
                             ciaddr=ack["yiaddr"], server_id=RELAY_IP), ("192.0.2.2", 67))
        net.wait_stat("release", 1)
        wait_for(lambda: net.lease_of("02:aa:00:00:00:02") is None, 10,
                 what="the released lease gone from the bound ones")
    finally:
        r.close()


def test_relay_port(net):
    r = Relay(net, port=6767)
    try:
        rai = sub(1, b"port3") + sub(19, b"")
        off = r.ask(packet("discover", "02:aa:00:00:00:03", RELAY_IP, rai, 0x300), 0x300)
        assert off["message-type"] == 2  # it came back to port 6767
    finally:
        r.close()


def test_shared_network_next_pool_when_full(net):
    r = Relay(net)
    try:
        got = []
        for n in range(4):
            _off, ack = dora(r, f"02:bb:00:00:00:0{n}", RELAY_IP2, sub(1, f"p{n}".encode()),
                             0x400 + 16 * n)
            assert ack["message-type"] == 5
            got.append((ack["yiaddr"], ack["subnet_mask"]))
        assert got == [("198.51.100.10", "255.255.255.128"),
                       ("198.51.100.11", "255.255.255.128"),
                       ("198.51.100.130", "255.255.255.128"),
                       ("198.51.100.131", "255.255.255.128")]
        # A client of the second subnet renews through the relay's first-subnet address.
        ren = r.ask(packet("request", "02:bb:00:00:00:02", RELAY_IP2, sub(1, b"p2"), 0x480,
                           ciaddr="198.51.100.130"), 0x480)
        assert ren["message-type"] == 5 and ren["yiaddr"] == "198.51.100.130"
    finally:
        r.close()


def test_malformed_option82_is_counted_and_served_by_giaddr(net):
    r = Relay(net)
    try:
        before = net.stat("relay_info_malformed")
        off = r.ask(packet("discover", "02:aa:00:00:00:05", RELAY_IP, sub(5, b"\x01\x02"),
                           0x500), 0x500)
        assert IPv4Address(off["yiaddr"]) in IPv4Network("192.0.2.0/24")
        net.wait_stat("relay_info_malformed", before + 1)
    finally:
        r.close()


def test_leasequery_off_until_a_requester_is_configured_then_live_on_reload(net):
    """No leasequery/requesters: refused, counted, logged (LQ001). Configured and
    reloaded (SIGHUP through `dhcp-hotbackup reload`): answered, with the relay's
    Option 82, to giaddr port 67."""
    import subprocess

    from appliance.config.tree import write_tree
    from appliance.dhcp.enums import MessageType, Opt
    from appliance.dhcp.message import DhcpMessage
    from appliance.testing.daemonfiles import CLI

    r = Relay(net)
    try:
        rai = sub(1, b"port9")
        _off, ack = dora(r, "02:aa:00:00:00:09", RELAY_IP, rai, 0x900)

        def query(xid: int) -> bytes:
            from scapy.layers.dhcp import BOOTP, DHCP
            return bytes(BOOTP(op=1, xid=xid, ciaddr=ack["yiaddr"], giaddr=RELAY_IP) /
                         DHCP(options=[("message-type", 10), "end"]))

        before = net.stat("dropped_leasequery_not_allowed")
        r.sock.sendto(query(0x910), ("192.0.2.2", 67))
        net.wait_stat("dropped_leasequery_not_allowed", before + 1)
        assert "LQ001 leasequery from a requester not in leasequery/requesters" in \
            net.log_text()

        write_tree(net.etc, {"leasequery/requesters": "192.0.2.0/24"})
        out = subprocess.run([CLI, "reload", "--config", str(net.etc)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and "leasequery/requesters" in out.stdout, out
        r.sock.sendto(query(0x911), ("192.0.2.2", 67))
        while True:
            m = DhcpMessage.decode(r.sock.recv(4096))
            if m.xid == 0x911:
                break
        assert m.message_type == MessageType.LEASEACTIVE
        assert m.mac == bytes.fromhex("02aa00000009")
        assert m.options[Opt.RELAY_AGENT_INFO] == rai
    finally:
        r.close()
