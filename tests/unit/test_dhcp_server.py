"""RFC 2131 server decisions, table by table (pure: no sockets, time passed in)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from appliance.config.model import PoolConfig
from appliance.dhcp.enums import BROADCAST_FLAG, MessageType, Opt, Reason
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.server import DECLINE_PROBATION_S, OFFER_HOLD_S, Dest, DhcpServer, Ingress
from appliance.leases.allocator import Allocator
from appliance.leases.model import LeaseState
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable

SID = IPv4Address("192.0.2.1").packed
ZERO = b"\x00" * 4
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
RESERVED_MAC = bytes.fromhex("02000000aaaa")
T0 = 1_700_000_000.0
INGRESS = Ingress(local_ips=(int(IPv4Address("192.0.2.2")),), server_ids=(SID,))


def ip(s: str) -> bytes:
    return IPv4Address(s).packed


def make_server(first: str = "192.0.2.100", last: str = "192.0.2.103") -> DhcpServer:
    pools = Pools.from_config((
        PoolConfig(name="lan", subnet=IPv4Network("192.0.2.0/24"),
                   ranges=((IPv4Address(first), IPv4Address(last)),),
                   router=(IPv4Address("192.0.2.1"),), dns=(IPv4Address("192.0.2.53"),),
                   domain="example.net", lease_time=600,
                   reservations=((RESERVED_MAC, IPv4Address("192.0.2.50")),)),
        PoolConfig(name="relayed", subnet=IPv4Network("203.0.113.0/24"),
                   ranges=((IPv4Address("203.0.113.100"), IPv4Address("203.0.113.110")),)),
    ))
    table = LeaseTable(origin="A")
    return DhcpServer(pools, table, Allocator(pools, table))


def msg(mtype: int, mac: bytes = MAC1, *, xid: int = 0x1234, ciaddr: bytes = ZERO,
        giaddr: bytes = ZERO, flags: int = 0, **opts: bytes) -> DhcpMessage:
    o: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes([mtype])}
    for k, v in opts.items():
        o[Opt[k.upper()]] = v
    return DhcpMessage(op=1, htype=1, hlen=6, hops=0, xid=xid, secs=0, flags=flags,
                       ciaddr=ciaddr, yiaddr=ZERO, siaddr=ZERO, giaddr=giaddr,
                       chaddr=mac + bytes(10), sname=bytes(64), file=bytes(128), options=o)


def dora(s: DhcpServer, mac: bytes = MAC1, now: float = T0, **opts: bytes) -> bytes:
    off = s.handle(msg(MessageType.DISCOVER, mac, **opts), INGRESS, now)
    assert off.sent == "offer"
    yi = off.reply.yiaddr
    ack = s.handle(msg(MessageType.REQUEST, mac, requested_ip=yi, server_id=SID, **opts),
                   INGRESS, now)
    assert ack.sent == "ack", ack
    assert ack.commits and ack.commits[-1].state == LeaseState.BOUND
    return yi


class TestDiscover:
    def test_offer_carries_address_times_and_requested_options(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, param_request_list=bytes([1, 3, 6, 15])),
                     INGRESS, T0)
        r = d.reply
        assert d.sent == "offer" and r.message_type == MessageType.OFFER
        assert IPv4Address(r.yiaddr) in IPv4Network("192.0.2.100/30")
        assert r.options[Opt.SERVER_ID] == SID
        assert int.from_bytes(r.options[Opt.LEASE_TIME], "big") == 600
        assert int.from_bytes(r.options[Opt.RENEWAL_TIME], "big") == 300  # T1 = 0.5
        assert int.from_bytes(r.options[Opt.REBINDING_TIME], "big") == 525  # T2 = 0.875
        assert r.options[Opt.ROUTER] == ip("192.0.2.1")
        assert r.options[Opt.DNS] == ip("192.0.2.53")
        assert r.options[Opt.DOMAIN_NAME] == b"example.net"
        assert r.options[Opt.SUBNET_MASK] == ip("255.255.255.0")
        # The offer is not durable: nothing to commit before sending it.
        assert d.commits == ()

    def test_parameter_request_list_order_is_kept(self):
        s = make_server()
        r = s.handle(msg(MessageType.DISCOVER, param_request_list=bytes([15, 6, 3, 1])),
                     INGRESS, T0).reply
        codes = [c for c in r.options if c in (1, 3, 6, 15)]
        assert codes == [15, 6, 3, 1]

    def test_two_discovers_from_one_client_get_one_address(self):
        s = make_server()
        a = s.handle(msg(MessageType.DISCOVER), INGRESS, T0).reply.yiaddr
        b = s.handle(msg(MessageType.DISCOVER, xid=2), INGRESS, T0 + 1).reply.yiaddr
        assert a == b

    def test_offered_address_is_held_from_other_clients(self):
        s = make_server()
        a = s.handle(msg(MessageType.DISCOVER, MAC1), INGRESS, T0).reply.yiaddr
        b = s.handle(msg(MessageType.DISCOVER, MAC2), INGRESS, T0).reply.yiaddr
        assert a != b

    def test_offer_hold_lapses(self):
        s = make_server("192.0.2.100", "192.0.2.100")
        s.handle(msg(MessageType.DISCOVER, MAC1), INGRESS, T0)
        assert s.handle(msg(MessageType.DISCOVER, MAC2), INGRESS, T0 + 1).reason is \
            Reason.POOL_EXHAUSTED
        s.table.reclaim(T0 + OFFER_HOLD_S + 1)
        d = s.handle(msg(MessageType.DISCOVER, MAC2), INGRESS, T0 + OFFER_HOLD_S + 2)
        assert d.reply.yiaddr == ip("192.0.2.100")

    def test_requested_address_is_offered_when_free(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, requested_ip=ip("192.0.2.102")), INGRESS, T0)
        assert d.reply.yiaddr == ip("192.0.2.102")

    def test_requested_address_outside_pool_is_ignored(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, requested_ip=ip("192.0.2.7")), INGRESS, T0)
        assert IPv4Address(d.reply.yiaddr) in IPv4Network("192.0.2.100/30")

    def test_reservation_wins(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, RESERVED_MAC), INGRESS, T0)
        assert d.reply.yiaddr == ip("192.0.2.50")

    def test_client_gets_its_previous_address_back(self):
        s = make_server()
        a = dora(s, MAC1)
        s.handle(msg(MessageType.RELEASE, MAC1, ciaddr=a), INGRESS, T0 + 5)
        d = s.handle(msg(MessageType.DISCOVER, MAC1), INGRESS, T0 + 10)
        assert d.reply.yiaddr == a

    def test_pool_exhausted_is_silent(self):
        s = make_server("192.0.2.100", "192.0.2.101")
        dora(s, MAC1)
        dora(s, MAC2)
        d = s.handle(msg(MessageType.DISCOVER, bytes.fromhex("020000000003")), INGRESS, T0)
        assert d.reply is None and d.reason is Reason.POOL_EXHAUSTED

    def test_no_subnet_for_relay_is_silent(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, giaddr=ip("198.51.100.1")), INGRESS, T0)
        assert d.reply is None and d.reason is Reason.NO_SUBNET


class TestDestination:
    """RFC 2131 §4.1: where replies go."""

    def test_no_address_no_broadcast_flag_goes_to_the_link(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER), INGRESS, T0)
        assert d.dest is Dest.LINK and d.dest_ip == d.reply.yiaddr

    def test_broadcast_flag(self):
        s = make_server()
        d = s.handle(msg(MessageType.DISCOVER, flags=BROADCAST_FLAG), INGRESS, T0)
        assert d.dest is Dest.BROADCAST and d.dest_ip == b"\xff" * 4

    def test_relay_gets_reply_and_option82_echoed(self):
        s = make_server()
        rai = bytes([1, 5]) + b"veth0"
        d = s.handle(msg(MessageType.DISCOVER, giaddr=ip("203.0.113.1"),
                         relay_agent_info=rai), INGRESS, T0)
        assert d.dest is Dest.RELAY and d.dest_ip == ip("203.0.113.1")
        assert IPv4Address(d.reply.yiaddr) in IPv4Network("203.0.113.0/24")
        assert d.reply.options[Opt.RELAY_AGENT_INFO] == rai
        assert list(d.reply.options)[-1] == Opt.RELAY_AGENT_INFO  # RFC 3046 §2.2: last
        assert d.reply.giaddr == ip("203.0.113.1")

    def test_renewal_goes_to_ciaddr(self):
        s = make_server()
        a = dora(s)
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a), INGRESS, T0 + 300)
        assert d.sent == "ack" and d.dest is Dest.UNICAST and d.dest_ip == a

    def test_renewal_from_behind_a_router_is_routed_to_ciaddr(self):
        """A relayed client renews by unicast straight to us (RFC 2131 §4.4.5, no giaddr):
        its chaddr is not on our link, so the ACK goes through the IP stack."""
        s = make_server()
        rai = bytes([1, 5]) + b"cust7"
        off = s.handle(msg(MessageType.DISCOVER, giaddr=ip("203.0.113.1"),
                           relay_agent_info=rai), INGRESS, T0)
        a = off.reply.yiaddr
        s.handle(msg(MessageType.REQUEST, giaddr=ip("203.0.113.1"), requested_ip=a,
                     server_id=SID, relay_agent_info=rai), INGRESS, T0)
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a), INGRESS, T0 + 300)
        assert d.sent == "ack" and d.dest is Dest.ROUTED and d.dest_ip == a
        d = s.handle(msg(MessageType.INFORM, ciaddr=ip("203.0.113.50")), INGRESS, T0)
        assert d.dest is Dest.ROUTED

    def test_nak_is_broadcast_or_via_relay_with_broadcast_bit(self):
        s = make_server()
        a = dora(s, MAC1)
        d = s.handle(msg(MessageType.REQUEST, MAC2, requested_ip=a), INGRESS, T0)
        assert d.sent == "nak" and d.dest is Dest.BROADCAST
        d = s.handle(msg(MessageType.REQUEST, MAC2, requested_ip=ip("198.51.100.7"),
                         giaddr=ip("203.0.113.1")), INGRESS, T0)
        assert d.sent == "nak" and d.dest is Dest.RELAY and d.reply.flags & BROADCAST_FLAG

    def test_client_id_echoed(self):
        s = make_server()
        cid = b"\x01" + MAC1
        d = s.handle(msg(MessageType.DISCOVER, client_id=cid), INGRESS, T0)
        assert d.reply.options[Opt.CLIENT_ID] == cid  # RFC 6842


class TestRequest:
    def test_selecting_commits_the_offer(self):
        s = make_server()
        a = dora(s, MAC1, hostname=b"laptop")
        lease = s.table.get(int(IPv4Address(a)))
        assert lease.state == LeaseState.BOUND and lease.mac == MAC1
        assert lease.hostname == "laptop" and lease.expires == T0 + 600 and lease.seq == 1

    def test_selecting_another_server_is_silent_and_frees_offer(self):
        s = make_server("192.0.2.100", "192.0.2.100")
        a = s.handle(msg(MessageType.DISCOVER, MAC1), INGRESS, T0).reply.yiaddr
        d = s.handle(msg(MessageType.REQUEST, MAC1, requested_ip=a,
                         server_id=ip("192.0.2.9")), INGRESS, T0)
        assert d.reply is None and d.commits == () and d.reason is Reason.OTHER_SERVER
        s.table.reclaim(T0 + 1.5)  # reclaimed within a second of lapsing
        assert s.handle(msg(MessageType.DISCOVER, MAC2), INGRESS, T0 + 2).reply.yiaddr == a

    def test_selecting_an_address_someone_else_holds_is_naked(self):
        s = make_server()
        a = dora(s, MAC1)
        d = s.handle(msg(MessageType.REQUEST, MAC2, requested_ip=a, server_id=SID),
                     INGRESS, T0)
        assert d.sent == "nak" and d.commits == ()

    def test_init_reboot_own_binding_acked(self):
        s = make_server()
        a = dora(s)
        d = s.handle(msg(MessageType.REQUEST, requested_ip=a), INGRESS, T0 + 100)
        assert d.sent == "ack" and d.reply.yiaddr == a
        assert d.commits[-1].expires == T0 + 100 + 600

    def test_init_reboot_wrong_network_naked(self):
        s = make_server()
        d = s.handle(msg(MessageType.REQUEST, requested_ip=ip("198.51.100.5")), INGRESS, T0)
        assert d.sent == "nak"

    def test_init_reboot_someone_elses_address_naked(self):
        s = make_server()
        a = dora(s, MAC1)
        d = s.handle(msg(MessageType.REQUEST, MAC2, requested_ip=a), INGRESS, T0)
        assert d.sent == "nak"

    def test_init_reboot_unknown_client_silent(self):
        s = make_server()
        d = s.handle(msg(MessageType.REQUEST, requested_ip=ip("192.0.2.101")), INGRESS, T0)
        assert d.reply is None and d.reason is Reason.UNKNOWN_CLIENT  # §4.3.2

    def test_renewing_extends(self):
        s = make_server()
        a = dora(s)
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a), INGRESS, T0 + 300)
        assert d.sent == "ack" and d.commits[-1].expires == T0 + 900
        assert "requested_ip" not in d.reply.options

    def test_rebinding_after_expiry_reinstates_if_free(self):
        s = make_server()
        a = dora(s)
        s.table.reclaim(T0 + 700)
        assert s.table.get(int(IPv4Address(a))).state == LeaseState.EXPIRED
        d = s.handle(msg(MessageType.REQUEST, ciaddr=a, flags=BROADCAST_FLAG), INGRESS,
                     T0 + 701)
        assert d.sent == "ack" and d.reply.yiaddr == a

    def test_renewing_an_address_held_by_another_is_naked(self):
        s = make_server()
        a = dora(s, MAC1)
        d = s.handle(msg(MessageType.REQUEST, MAC2, ciaddr=a), INGRESS, T0)
        assert d.sent == "nak"

    def test_reserved_address_for_another_mac_is_naked(self):
        s = make_server()
        d = s.handle(msg(MessageType.REQUEST, MAC1, ciaddr=ip("192.0.2.50")), INGRESS, T0)
        assert d.sent == "nak"

    def test_option82_stored_with_the_lease(self):
        s = make_server()
        rai = bytes([1, 4]) + b"eth9" + bytes([2, 3]) + b"abc"
        off = s.handle(msg(MessageType.DISCOVER, giaddr=ip("203.0.113.1"),
                           relay_agent_info=rai), INGRESS, T0)
        d = s.handle(msg(MessageType.REQUEST, giaddr=ip("203.0.113.1"),
                         requested_ip=off.reply.yiaddr, server_id=SID,
                         relay_agent_info=rai), INGRESS, T0)
        assert d.commits[-1].relay_info == rai
        assert d.reply.options[Opt.RELAY_AGENT_INFO] == rai


class TestReleaseDeclineInform:
    def test_release_frees(self):
        s = make_server("192.0.2.100", "192.0.2.100")
        a = dora(s, MAC1)
        d = s.handle(msg(MessageType.RELEASE, MAC1, ciaddr=a), INGRESS, T0 + 1)
        assert d.reply is None and d.commits[-1].state == LeaseState.RELEASED
        assert s.handle(msg(MessageType.DISCOVER, MAC2), INGRESS, T0 + 2).reply.yiaddr == a

    def test_release_by_someone_else_ignored(self):
        s = make_server()
        a = dora(s, MAC1)
        d = s.handle(msg(MessageType.RELEASE, MAC2, ciaddr=a), INGRESS, T0 + 1)
        assert d.commits == ()
        assert s.table.get(int(IPv4Address(a))).state == LeaseState.BOUND

    def test_decline_quarantines(self):
        s = make_server("192.0.2.100", "192.0.2.101")
        a = dora(s, MAC1)
        d = s.handle(msg(MessageType.DECLINE, MAC1, requested_ip=a, server_id=SID), INGRESS,
                     T0 + 1)
        assert d.commits[-1].state == LeaseState.DECLINED
        assert d.commits[-1].expires == T0 + 1 + DECLINE_PROBATION_S
        b = s.handle(msg(MessageType.DISCOVER, MAC1), INGRESS, T0 + 2).reply.yiaddr
        assert b != a
        c = s.handle(msg(MessageType.DISCOVER, MAC2), INGRESS, T0 + 2)
        assert c.reply is None or c.reply.yiaddr != a

    def test_inform_gets_options_without_lease(self):
        s = make_server()
        d = s.handle(msg(MessageType.INFORM, ciaddr=ip("192.0.2.20")), INGRESS, T0)
        assert d.reply.message_type == MessageType.ACK
        assert d.reply.yiaddr == ZERO and Opt.LEASE_TIME not in d.reply.options
        assert d.dest is Dest.UNICAST and d.dest_ip == ip("192.0.2.20")
        assert d.commits == ()


@pytest.mark.parametrize("mtype", [2, 5, 6, 9, 0, 200])
def test_server_messages_and_unknown_types_are_ignored(mtype):
    s = make_server()
    d = s.handle(msg(mtype), INGRESS, T0)
    assert d.reply is None and d.commits == ()


def test_reply_op_is_rejected():
    s = make_server()
    m = msg(MessageType.DISCOVER)
    m.op = 2
    assert s.handle(m, INGRESS, T0).reply is None


def test_pool_split_limits_new_addresses_to_our_half():
    s = make_server("192.0.2.100", "192.0.2.103")
    s.alloc.owner = 1
    got = set()
    for i in range(4):
        d = s.handle(msg(MessageType.DISCOVER, bytes([2, 0, 0, 0, 1, i])), INGRESS, T0)
        if d.reply is not None:
            got.add(IPv4Address(d.reply.yiaddr))
    assert got == {IPv4Address("192.0.2.101"), IPv4Address("192.0.2.103")}


def test_a_renewal_stamped_by_a_clock_behind_the_binding_is_still_the_newer_version():
    """The peer (clock a minute ahead) made the binding; our clock renews it: the renewal
    must win the merge's per-client order (sync/merge.version_key), or the peer drops it."""
    from appliance.sync.merge import version_key

    s = make_server()
    ip = dora(s, now=T0)
    made = s.table.get(int.from_bytes(ip, "big"))
    assert made is not None
    ahead = replace(made, start=T0 + 60, seq=made.seq + 5, origin="peer")
    s.table.load(ahead)  # the peer's version, stamped a minute "later" than our clock
    d = s.handle(msg(MessageType.REQUEST, ciaddr=ip), INGRESS, T0 + 1)
    assert d.commits and d.commits[0].start == ahead.start
    assert d.commits[0].expires == T0 + 1 + (made.expires - made.start)  # by our clock
    assert version_key(d.commits[0]) > version_key(ahead)
