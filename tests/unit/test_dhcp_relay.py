"""Relays (dhcp/relay.py and its use in dhcp/server.py): link selection (RFC 3527), server
identifier override (RFC 5107), relay source port (RFC 8357), shared networks, and the
binding keeping its Option 82 across renewals that come without it. Pure: no sockets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given
from hypothesis import strategies as st

from appliance.config.model import PoolConfig
from appliance.dhcp.enums import MessageType, Note, Opt, Reason
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.relay import MALFORMED, NONE, Links, RelayInfo, relay_info, subopts
from appliance.dhcp.server import Dest, DhcpServer, Ingress
from appliance.leases.allocator import Allocator
from appliance.leases.model import LeaseState
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable

SID = IPv4Address("192.0.2.1").packed
ZERO = b"\x00" * 4
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
T0 = 1_700_000_000.0
INGRESS = Ingress(local_ips=(int(IPv4Address("192.0.2.2")),), server_ids=(SID,))
# A BNG reached at its loopback 198.51.100.7 relays for subscribers on 203.0.113.0/24.
LOOPBACK = IPv4Address("198.51.100.7").packed
RELAY_IF = IPv4Address("203.0.113.1").packed
OVERRIDE = IPv4Address("203.0.113.1").packed


def ip(s: str) -> bytes:
    return IPv4Address(s).packed


def sub(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def pool(name: str, net: str, first: str, last: str, shared: str = "") -> PoolConfig:
    return PoolConfig(name=name, subnet=IPv4Network(net),
                      ranges=((IPv4Address(first), IPv4Address(last)),), lease_time=600,
                      shared_network=shared)


def make_server(*pools: PoolConfig) -> DhcpServer:
    if not pools:
        pools = (pool("lan", "192.0.2.0/24", "192.0.2.100", "192.0.2.110"),
                 pool("subs", "203.0.113.0/24", "203.0.113.100", "203.0.113.110"),
                 pool("loop", "198.51.100.0/24", "198.51.100.100", "198.51.100.110"))
    ps = Pools.from_config(pools)
    table = LeaseTable(origin="A")
    return DhcpServer(ps, table, Allocator(ps, table))


def msg(mtype: int, mac: bytes = MAC1, *, ciaddr: bytes = ZERO, giaddr: bytes = ZERO,
        **opts: bytes) -> DhcpMessage:
    o: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes([mtype])}
    for k, v in opts.items():
        o[Opt[k.upper()]] = v
    return DhcpMessage(op=1, htype=1, hlen=6, hops=1, xid=7, secs=0, flags=0,
                       ciaddr=ciaddr, yiaddr=ZERO, siaddr=ZERO, giaddr=giaddr,
                       chaddr=mac + bytes(10), sname=bytes(64), file=bytes(128), options=o)


def dora(s: DhcpServer, giaddr: bytes, rai: bytes, mac: bytes = MAC1,
         src: tuple[str, int] = ("198.51.100.7", 67)) -> tuple[bytes, DhcpMessage]:
    off = s.handle(msg(MessageType.DISCOVER, mac, giaddr=giaddr, relay_agent_info=rai),
                   INGRESS, T0, src)
    assert off.sent == "offer", off
    sid = off.reply.options[Opt.SERVER_ID]
    ack = s.handle(msg(MessageType.REQUEST, mac, giaddr=giaddr, relay_agent_info=rai,
                       requested_ip=off.reply.yiaddr, server_id=sid), INGRESS, T0, src)
    assert ack.sent == "ack", ack
    return off.reply.yiaddr, ack.reply


class TestRelayInfo:
    def test_reads_the_three_suboptions(self):
        raw = sub(1, b"eth0") + sub(5, ip("203.0.113.0")) + sub(11, OVERRIDE) + sub(19, b"")
        assert relay_info(raw) == RelayInfo(int(IPv4Address("203.0.113.0")), OVERRIDE, True)

    def test_nothing_to_act_on(self):
        assert relay_info(None) is NONE
        assert relay_info(sub(1, b"eth0") + sub(2, b"cpe")) is NONE

    def test_malformed(self):
        assert relay_info(sub(1, b"eth0")[:-1]) is MALFORMED  # runs past the end
        assert relay_info(b"\x01") is MALFORMED  # no length byte
        assert relay_info(sub(5, b"\x01\x02\x03")) is MALFORMED  # RFC 3527: 4 bytes
        assert relay_info(sub(11, b"\x01" * 5)) is MALFORMED  # RFC 5107: 4 bytes

    @given(st.binary(max_size=300))
    def test_never_raises(self, raw):
        r = relay_info(raw)
        assert isinstance(r, RelayInfo)
        s = subopts(raw)
        assert s is None or all(len(v) <= 255 for v in s.values())


class TestLinkSelection:
    def test_link_selection_picks_the_pool_and_the_reply_goes_to_giaddr(self):
        # RFC 3527: giaddr is the BNG's loopback (in pool "loop"'s subnet); the
        # sub-option names the subscribers' link.
        s = make_server()
        rai = sub(1, b"port7") + sub(5, ip("203.0.113.0"))
        d = s.handle(msg(MessageType.DISCOVER, giaddr=LOOPBACK, relay_agent_info=rai),
                     INGRESS, T0)
        assert IPv4Address(d.reply.yiaddr) in IPv4Network("203.0.113.0/24")
        assert d.dest is Dest.RELAY and d.dest_ip == LOOPBACK
        assert d.reply.options[Opt.RELAY_AGENT_INFO] == rai  # echoed whole
        assert d.reply.options[Opt.SUBNET_MASK] == ip("255.255.255.0")

    def test_without_it_giaddr_picks_the_pool(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, giaddr=LOOPBACK,
                         relay_agent_info=sub(1, b"port7")), INGRESS, T0)
        assert IPv4Address(d.reply.yiaddr) in IPv4Network("198.51.100.0/24")

    def test_renewal_through_the_relay_is_on_the_selected_link(self):
        s = make_server()
        rai = sub(1, b"port7") + sub(5, ip("203.0.113.0"))
        a, _ = dora(s, LOOPBACK, rai)
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a, giaddr=LOOPBACK, relay_agent_info=rai),
                     INGRESS, T0 + 300)
        assert d.sent == "ack" and d.reply.yiaddr == a
        # The same renewal without the sub-option is from the loopback's link: NAK
        # (not leasable there), not an ACK for the wrong network.
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a, giaddr=LOOPBACK,
                         relay_agent_info=sub(1, b"port7")), INGRESS, T0 + 300)
        assert d.reason is Reason.NO_SUBNET or d.sent == "nak"

    def test_unknown_link_is_no_subnet(self):
        s = make_server()
        rai = sub(5, ip("100.64.0.0"))
        d = s.handle(msg(MessageType.DISCOVER, giaddr=LOOPBACK, relay_agent_info=rai),
                     INGRESS, T0)
        assert d.reason is Reason.NO_SUBNET

    def test_malformed_option82_is_noted_and_giaddr_used(self):
        s = make_server()
        rai = sub(5, b"\x01\x02")
        d = s.handle(msg(MessageType.DISCOVER, giaddr=LOOPBACK, relay_agent_info=rai),
                     INGRESS, T0)
        assert IPv4Address(d.reply.yiaddr) in IPv4Network("198.51.100.0/24")
        assert Note.RELAY_INFO_MALFORMED in d.notes
        assert d.reply.options[Opt.RELAY_AGENT_INFO] == rai

    def test_a_client_on_our_link_cannot_select_a_link(self):
        # Option 82 from a client (giaddr 0) is its own claim (RFC 3046 §2.1).
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, relay_agent_info=sub(5, ip("203.0.113.0"))),
                     INGRESS, T0)
        assert IPv4Address(d.reply.yiaddr) in IPv4Network("192.0.2.0/24")


class TestServerIdOverride:
    def test_option54_is_the_override_and_requests_naming_it_are_for_us(self):
        s = make_server()
        rai = sub(1, b"port7") + sub(11, OVERRIDE)
        a, ack = dora(s, RELAY_IF, rai)
        assert ack.options[Opt.SERVER_ID] == OVERRIDE
        # RFC 5107: the renewal goes to the relay (the override address), which
        # relays it to us with Option 82 again.
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a, giaddr=RELAY_IF, relay_agent_info=rai),
                     INGRESS, T0 + 300)
        assert d.sent == "ack" and d.reply.options[Opt.SERVER_ID] == OVERRIDE
        d = s.handle(msg(MessageType.RELEASE, ciaddr=a, giaddr=RELAY_IF, server_id=OVERRIDE,
                         relay_agent_info=rai), INGRESS, T0 + 400)
        assert d.reason is None and d.commits[-1].state is LeaseState.RELEASED

    def test_a_request_naming_our_own_identifier_is_still_for_us(self):
        s = make_server()
        rai = sub(1, b"port7") + sub(11, OVERRIDE)
        off = s.handle(msg(MessageType.DISCOVER, giaddr=RELAY_IF, relay_agent_info=rai),
                       INGRESS, T0)
        d = s.handle(msg(MessageType.REQUEST, giaddr=RELAY_IF, relay_agent_info=rai,
                         requested_ip=off.reply.yiaddr, server_id=SID), INGRESS, T0)
        assert d.sent == "ack"

    def test_another_server_is_another_server(self):
        s = make_server()
        rai = sub(11, OVERRIDE)
        off = s.handle(msg(MessageType.DISCOVER, giaddr=RELAY_IF, relay_agent_info=rai),
                       INGRESS, T0)
        d = s.handle(msg(MessageType.REQUEST, giaddr=RELAY_IF, relay_agent_info=rai,
                         requested_ip=off.reply.yiaddr, server_id=ip("192.0.2.99")),
                     INGRESS, T0)
        assert d.reason is Reason.OTHER_SERVER

    def test_nak_carries_the_override(self):
        s = make_server()
        rai = sub(11, OVERRIDE)
        d = s.handle(msg(MessageType.REQUEST, giaddr=RELAY_IF, relay_agent_info=rai,
                         requested_ip=ip("203.0.113.5"), server_id=OVERRIDE), INGRESS, T0)
        assert d.sent == "nak" and d.reply.options[Opt.SERVER_ID] == OVERRIDE


class TestRelayPort:
    def test_reply_goes_to_the_relay_source_port(self):
        s = make_server()
        rai = sub(1, b"port7") + sub(19, b"")
        d = s.handle(msg(MessageType.DISCOVER, giaddr=RELAY_IF, relay_agent_info=rai),
                     INGRESS, T0, ("203.0.113.1", 6767))
        assert d.dest is Dest.RELAY and d.dest_port == 6767
        assert d.reply.options[Opt.RELAY_AGENT_INFO] == rai  # RFC 8357: echoed

    def test_without_it_port_67(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, giaddr=RELAY_IF,
                         relay_agent_info=sub(1, b"port7")), INGRESS, T0, ("203.0.113.1", 6767))
        assert d.dest is Dest.RELAY and d.dest_port == 0  # the transport's 67


class TestSharedNetwork:
    POOLS = (pool("a", "203.0.113.0/25", "203.0.113.10", "203.0.113.11", "vlan7"),
             pool("b", "203.0.113.128/25", "203.0.113.130", "203.0.113.131", "vlan7"),
             pool("other", "198.51.100.0/24", "198.51.100.10", "198.51.100.20"))

    def test_links(self):
        ps = Pools.from_config(self.POOLS)
        links = Links(ps)
        a, b, other = (ps.by_name[n] for n in ("a", "b", "other"))
        assert links.pools(a) == (a, b) and links.pools(b) == (b, a)
        assert links.pools(other) == (other,)
        assert links.same(a, b) and not links.same(a, other)

    def test_next_pool_when_the_first_is_full_and_renewal_through_the_first(self):
        s = make_server(*self.POOLS)
        got = []
        for n in range(4):
            a, _ = dora(s, RELAY_IF, sub(1, b"p%d" % n), mac=bytes([2, 0, 0, 0, 1, n]))
            got.append(str(IPv4Address(a)))
        assert got == ["203.0.113.10", "203.0.113.11", "203.0.113.130", "203.0.113.131"]
        d = s.handle(msg(MessageType.DISCOVER, bytes(5) + b"\x09", giaddr=RELAY_IF),
                     INGRESS, T0)
        assert d.reason is Reason.POOL_EXHAUSTED
        # A client of pool b renews through the relay whose giaddr is in pool a's subnet.
        d = s.handle(msg(MessageType.REQUEST, bytes([2, 0, 0, 0, 1, 2]), ciaddr=ip(got[2]),
                         giaddr=RELAY_IF, relay_agent_info=sub(1, b"p2")), INGRESS, T0 + 60)
        assert d.sent == "ack"
        assert d.reply.options[Opt.SUBNET_MASK] == ip("255.255.255.128")
        # INIT-REBOOT for it through the same relay: its own, ACKed (same link).
        d = s.handle(msg(MessageType.REQUEST, bytes([2, 0, 0, 0, 1, 2]), giaddr=RELAY_IF,
                         requested_ip=ip(got[2]), relay_agent_info=sub(1, b"p2")),
                     INGRESS, T0 + 60)
        assert d.sent == "ack"

    def test_a_client_keeps_its_address_in_the_second_pool(self):
        s = make_server(*self.POOLS)
        for n in range(2):
            dora(s, RELAY_IF, b"", mac=bytes([2, 0, 0, 0, 1, n]))
        a, _ = dora(s, RELAY_IF, b"", mac=MAC2)
        assert IPv4Address(a) == IPv4Address("203.0.113.130")
        # pool a gets room again; MAC2 still gets its address in b back
        s.handle(msg(MessageType.RELEASE, bytes([2, 0, 0, 0, 1, 0]), ciaddr=ip("203.0.113.10"),
                     giaddr=RELAY_IF), INGRESS, T0 + 1)
        d = s.handle(msg(MessageType.DISCOVER, MAC2, giaddr=RELAY_IF), INGRESS, T0 + 2)
        assert d.reply.yiaddr == a

    def test_other_network_is_still_wrong(self):
        s = make_server(*self.POOLS)
        d = s.handle(msg(MessageType.REQUEST, giaddr=RELAY_IF, requested_ip=ip("198.51.100.10")),
                     INGRESS, T0)
        assert d.sent == "nak" and d.reason is Reason.NAK_WRONG_NETWORK


class TestOption82KeptByTheBinding:
    def test_unicast_renewal_keeps_option82_and_release_checks_it(self):
        # dhclient behind `dhcrelay -a` renews by unicast to option 54 (RFC 2131 §4.4.5),
        # bypassing the relay: no giaddr, no Option 82. The binding keeps what it was
        # made with, so leasequery and the RELEASE check still see the circuit.
        s = make_server()
        rai = sub(1, b"eth-sub7")
        a, _ = dora(s, RELAY_IF, rai)
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a), INGRESS, T0 + 300,
                     (str(IPv4Address(a)), 68))
        assert d.sent == "ack"
        assert d.commits[-1].relay_info == rai and d.commits[-1].relay == int(
            IPv4Address(RELAY_IF))
        assert Opt.RELAY_AGENT_INFO not in d.reply.options  # nothing to echo
        assert s.table.get(int(IPv4Address(a))).relay_info == rai
        # A RELEASE through another circuit of the relay is refused.
        d = s.handle(msg(MessageType.RELEASE, ciaddr=a, giaddr=RELAY_IF,
                         relay_agent_info=sub(1, b"eth-sub8")), INGRESS, T0 + 400)
        assert d.reason is Reason.RELEASE_MISMATCH


def test_shared_network_on_an_interface():
    """Several subnets on one interface (not relayed): the interface's address names the
    first pool, the shared network the rest."""
    s = make_server(*TestSharedNetwork.POOLS)
    ing = Ingress(local_ips=(int(IPv4Address("203.0.113.1")),), server_ids=(SID,))
    got = []
    for n in range(3):
        mac = bytes([2, 0, 0, 0, 2, n])
        off = s.handle(msg(MessageType.DISCOVER, mac), ing, T0)
        ack = s.handle(msg(MessageType.REQUEST, mac, requested_ip=off.reply.yiaddr,
                           server_id=SID), ing, T0)
        assert ack.sent == "ack"
        got.append(str(IPv4Address(ack.reply.yiaddr)))
    assert got == ["203.0.113.10", "203.0.113.11", "203.0.113.130"]
    # INIT-REBOOT for the second subnet's address on this link: its own, ACKed.
    d = s.handle(msg(MessageType.REQUEST, bytes([2, 0, 0, 0, 2, 2]),
                     requested_ip=ip("203.0.113.130")), ing, T0 + 5)
    assert d.sent == "ack" and d.dest is not Dest.RELAY
