"""Hostile and broken clients against the server's decisions (pure: no sockets, time
passed in): lengths bounded when deciding, DECLINE and RELEASE only from the binding's
client and path, the quarantine cap, limits per relay and circuit, renewals of unknown
addresses, Option 82 from a client that was not relayed, and N declined addresses
replicated as N through the sync session's catch-up."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from test_sync_support import fresh_pair

from appliance.config.model import PoolConfig
from appliance.dhcp.enums import MessageType, Note, Opt, Reason
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.server import DECLINE_PROBATION_S, Decision, DhcpServer, Ingress
from appliance.leases.allocator import Allocator
from appliance.leases.codec import decode_lease, encode_lease
from appliance.leases.model import Lease, LeaseState, address_key
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable
from appliance.sync.session import Loss
from appliance.testing.dhcpreq import request

SID = "192.0.2.1"
OTHER_SID = "192.0.2.9"
T0 = 1_700_000_000.0
INGRESS = Ingress(local_ips=(int(IPv4Address("192.0.2.2")),),
                  server_ids=(IPv4Address(SID).packed,))
RELAY = "203.0.113.1"
OTHER_RELAY = "203.0.113.2"
DISCOVER, REQUEST, DECLINE, RELEASE = (MessageType.DISCOVER, MessageType.REQUEST,
                                       MessageType.DECLINE, MessageType.RELEASE)


def rai(circuit: bytes, remote: bytes | None = None) -> bytes:
    """Option 82 as a relay agent writes it (RFC 3046 §2.0): circuit-id, remote-id."""
    out = bytes((1, len(circuit))) + circuit
    if remote is not None:
        out += bytes((2, len(remote))) + remote
    return out


def mac(i: int) -> str:
    return f"02:00:00:00:{i // 256:02x}:{i % 256:02x}"


def make_server(table: LeaseTable | None = None, lan: tuple[str, str] = (
        "192.0.2.100", "192.0.2.119"), **limits: int) -> DhcpServer:
    pools = Pools.from_config((
        PoolConfig(name="lan", subnet=IPv4Network("192.0.2.0/24"),
                   ranges=((IPv4Address(lan[0]), IPv4Address(lan[1])),), lease_time=600,
                   **limits),
        PoolConfig(name="relayed", subnet=IPv4Network("203.0.113.0/24"),
                   ranges=((IPv4Address("203.0.113.100"), IPv4Address("203.0.113.199")),),
                   lease_time=600, **limits),
    ))
    table = table if table is not None else LeaseTable(origin="A")
    return DhcpServer(pools, table, Allocator(pools, table))


def wire(m: DhcpMessage) -> DhcpMessage:
    """Through the codec: what the daemon decodes from the socket (long options are
    split on encode and joined on decode, RFC 3396)."""
    return DhcpMessage.decode(m.encode())


def dora(s: DhcpServer, who: str, now: float = T0, giaddr: str = "0.0.0.0",
         options: dict[int, bytes] | None = None) -> Decision:
    """DISCOVER then SELECTING REQUEST; returns the REQUEST's decision."""
    off = s.handle(wire(request(DISCOVER, who, giaddr=giaddr, options=options)), INGRESS,
                   now)
    assert off.sent == "offer", off
    return s.handle(wire(request(REQUEST, who, giaddr=giaddr, requested=off.reply.yiaddr,
                                 server_id=SID, options=options)), INGRESS, now)


def bound_ip(d: Decision) -> str:
    assert d.sent == "ack", d
    return str(IPv4Address(d.reply.yiaddr))


def encodes(d: Decision) -> None:
    for lease in d.commits:
        assert decode_lease(encode_lease(lease)) == lease


# -- bounds when deciding -------------------------------------------------------------


def test_hostname_of_255_bytes_0xff_is_not_stored_and_the_binding_encodes():
    """Issue 11: decoded with replacement it became 765 bytes and the lease encoder
    refused the whole batch after the binding was made in memory."""
    s = make_server()
    d = dora(s, mac(1), options={Opt.HOSTNAME: b"\xff" * 255})
    assert d.sent == "ack" and d.commits[-1].hostname is None
    assert Note.HOSTNAME_IGNORED in d.notes
    encodes(d)


def test_hostnames_are_kept_exactly_as_sent_within_255_bytes():
    s = make_server()
    for i, (raw, kept) in enumerate([
            ("café-ü".encode(), "café-ü"),
            (b"laptop\x00", "laptop"),  # RFC 2132 §2: trailing NULs deleted
            (b"a" * 255, "a" * 255),
            (b"a" * 256, None),  # longer than a DNS name (RFC 1035 §2.3.4)
            (b"\x00", None)]):
        d = dora(s, mac(i), options={Opt.HOSTNAME: raw})
        assert d.commits[-1].hostname == kept, raw
        encodes(d)


def test_client_identifier_repeated_to_257_bytes_is_refused_before_anything_is_held():
    """Option 61 twice, joined to 257 bytes (RFC 3396): the client's identity cannot be
    stored, and shortening it could make two clients one."""
    s = make_server()
    cid = b"\x01" + b"\xaa" * 256
    m = request(REQUEST, mac(1), requested="192.0.2.100", server_id=SID, client_id=cid)
    m = wire(m)
    assert len(m.options[Opt.CLIENT_ID]) == 257  # two instances on the wire, joined
    d = s.handle(m, INGRESS, T0)
    assert d.reason is Reason.CLIENT_ID_TOO_LONG and d.reply is None and d.commits == ()
    d = s.handle(wire(request(DISCOVER, mac(1), client_id=cid)), INGRESS, T0)
    assert d.reason is Reason.CLIENT_ID_TOO_LONG and len(s.table) == 0
    ok = dora(s, mac(2), options={Opt.CLIENT_ID: b"\x01" + b"\xbb" * 254})
    assert ok.sent == "ack"
    encodes(ok)


def test_relay_option82_longer_than_a_lease_field_is_refused():
    s = make_server()
    long82 = rai(b"c" * 200) + rai(b"d" * 100)
    d = s.handle(wire(request(DISCOVER, mac(1), giaddr=RELAY,
                              options={Opt.RELAY_AGENT_INFO: long82})), INGRESS, T0)
    assert d.reason is Reason.RELAY_INFO_TOO_LONG and len(s.table) == 0


def test_option82_from_a_client_on_our_link_is_echoed_but_not_stored():
    """RFC 3046 §2.1: a relay agent adds Option 82; giaddr 0 means none did."""
    s = make_server()
    forged = rai(b"somebody-else") + rai(b"x" * 250)  # longer than a field: harmless here
    d = dora(s, mac(1), options={Opt.RELAY_AGENT_INFO: forged})
    assert d.sent == "ack" and d.commits[-1].relay_info is None and d.commits[-1].relay == 0
    assert Note.OPTION82_UNRELAYED in d.notes
    assert d.reply.options[Opt.RELAY_AGENT_INFO] == forged  # RFC 3046 §2.2: echoed
    encodes(d)


def test_no_client_identifier_and_no_hardware_address_is_refused():
    s = make_server()
    m = request(DISCOVER, mac(1))
    m.hlen = 0
    d = s.handle(m, INGRESS, T0)
    assert d.reason is Reason.NO_CLIENT_ID and len(s.table) == 0


def test_unicast_renewal_keeps_the_relay_and_option82_of_the_binding():
    """dhclient behind dhcrelay -a renews by unicast to the server identifier: no giaddr,
    no Option 82. The binding keeps what its relay gave it."""
    s = make_server()
    o82 = rai(b"cust7")
    ip = bound_ip(dora(s, mac(1), giaddr=RELAY, options={Opt.RELAY_AGENT_INFO: o82}))
    d = s.handle(wire(request(REQUEST, mac(1), ciaddr=ip)), INGRESS, T0 + 300)
    assert d.sent == "ack"
    assert d.commits[-1].relay_info == o82
    assert d.commits[-1].relay == int(IPv4Address(RELAY))


# -- DECLINE ----------------------------------------------------------------------------


def test_decline_of_an_address_only_offered_is_refused():
    """RFC 2131 §4.3.3: a client declines what it was ACKed. Before: ~500 DECLINEs from
    random MACs quarantined a /24 for a day."""
    s = make_server()
    off = s.handle(request(DISCOVER, mac(1)), INGRESS, T0)
    ip = str(IPv4Address(off.reply.yiaddr))
    d = s.handle(request(DECLINE, mac(1), requested=ip, server_id=SID), INGRESS, T0)
    assert d.reason is Reason.DECLINE_UNKNOWN and d.commits == ()
    assert s.table.get(int(IPv4Address(ip))).state is LeaseState.OFFERED


def test_decline_of_someone_elses_binding_is_refused():
    s = make_server()
    ip = bound_ip(dora(s, mac(1)))
    d = s.handle(request(DECLINE, mac(2), requested=ip, server_id=SID), INGRESS, T0 + 1)
    assert d.reason is Reason.DECLINE_UNKNOWN and d.commits == ()
    assert s.table.get(int(IPv4Address(ip))).state is LeaseState.BOUND


def test_decline_by_the_holder_ends_its_binding_and_quarantines_the_address():
    s = make_server()
    ip = bound_ip(dora(s, mac(1)))
    d = s.handle(request(DECLINE, mac(1), requested=ip, server_id=SID), INGRESS, T0 + 1)
    assert d.reason is None and [x.state for x in d.commits] == \
        [LeaseState.RELEASED, LeaseState.DECLINED]
    q = d.commits[-1]
    assert q.key == address_key(int(IPv4Address(ip))) and q.mac == b""
    assert q.expires == T0 + 1 + DECLINE_PROBATION_S
    encodes(d)
    # The client gets another address; nobody gets the declined one.
    again = bound_ip(dora(s, mac(1), T0 + 2))
    assert again != ip
    assert s.handle(request(REQUEST, mac(3), ciaddr=ip), INGRESS, T0 + 3).reason is \
        Reason.NAK_DECLINED


def test_decline_for_another_server_is_not_ours():
    s = make_server()
    ip = bound_ip(dora(s, mac(1)))
    d = s.handle(request(DECLINE, mac(1), requested=ip, server_id=OTHER_SID), INGRESS, T0)
    assert d.reason is Reason.OTHER_SERVER and d.commits == ()


def test_quarantine_stops_at_its_cap_and_the_pool_stays_usable():
    """A client that binds and declines over and over takes at most the cap out of the
    pool: 20 addresses, 10% -> 2 quarantined at most."""
    s = make_server(max_declined_percent=10)
    evicted = 0
    for i in range(12):
        ip = bound_ip(dora(s, mac(i), T0 + i))
        d = s.handle(request(DECLINE, mac(i), requested=ip, server_id=SID), INGRESS, T0 + i)
        assert d.reason is None
        evicted += Note.DECLINE_EVICTED in d.notes
        encodes(d)
        assert s.table.declined_in("lan") <= 2
    assert s.table.declined_in("lan") == 2 and evicted == 10
    # 18 of 20 addresses can still be bound (12 clients above moved on, released).
    got = {bound_ip(dora(s, mac(100 + i), T0 + 20)) for i in range(18)}
    assert len(got) == 18


def test_relayed_decline_from_another_circuit_is_refused():
    s = make_server()
    ip = bound_ip(dora(s, mac(1), giaddr=RELAY, options={Opt.RELAY_AGENT_INFO: rai(b"p1")}))
    d = s.handle(request(DECLINE, mac(1), giaddr=RELAY, requested=ip, server_id=SID,
                         options={Opt.RELAY_AGENT_INFO: rai(b"p2")}), INGRESS, T0 + 1)
    assert d.reason is Reason.DECLINE_MISMATCH and d.commits == ()
    d = s.handle(request(DECLINE, mac(1), requested=ip, server_id=SID), INGRESS, T0 + 1)
    assert d.reason is Reason.DECLINE_MISMATCH  # not relayed: not from its relay
    d = s.handle(request(DECLINE, mac(1), giaddr=RELAY, requested=ip, server_id=SID,
                         options={Opt.RELAY_AGENT_INFO: rai(b"p1")}), INGRESS, T0 + 1)
    assert d.reason is None and d.commits[-1].state is LeaseState.DECLINED


# -- RELEASE ----------------------------------------------------------------------------


def relayed_binding(s: DhcpServer, who: str, circuit: bytes = b"p1") -> str:
    return bound_ip(dora(s, who, giaddr=RELAY, options={Opt.RELAY_AGENT_INFO: rai(circuit)}))


def test_release_through_the_same_relay_and_circuit_frees():
    s = make_server()
    ip = relayed_binding(s, mac(1))
    d = s.handle(request(RELEASE, mac(1), ciaddr=ip, giaddr=RELAY, server_id=SID,
                         options={Opt.RELAY_AGENT_INFO: rai(b"p1")}), INGRESS, T0 + 1)
    assert d.reason is None and d.commits[-1].state is LeaseState.RELEASED


def test_release_through_another_circuit_or_relay_is_refused():
    s = make_server()
    ip = relayed_binding(s, mac(1))
    for giaddr, o82 in ((RELAY, rai(b"p2")), (RELAY, None), (OTHER_RELAY, rai(b"p1"))):
        d = s.handle(request(RELEASE, mac(1), ciaddr=ip, giaddr=giaddr, server_id=SID,
                             options={Opt.RELAY_AGENT_INFO: o82} if o82 else None),
                     INGRESS, T0 + 1, (giaddr, 67))
        assert d.reason is Reason.RELEASE_MISMATCH and d.commits == (), (giaddr, o82)
    assert s.table.get(int(IPv4Address(ip))).state is LeaseState.BOUND


def test_release_straight_from_a_relayed_client_is_taken_from_its_own_address():
    """dhclient behind `dhcrelay -a` sends its RELEASE unicast to the server identifier
    (RFC 2131 §4.4.6), not through the relay: giaddr 0, no Option 82, source = ciaddr."""
    s = make_server()
    ip = relayed_binding(s, mac(1))
    m = request(RELEASE, mac(1), ciaddr=ip, server_id=SID)
    assert s.handle(m, INGRESS, T0 + 1, ("203.0.113.150", 68)).reason is \
        Reason.RELEASE_MISMATCH
    assert s.handle(m, INGRESS, T0 + 1, None).reason is Reason.RELEASE_MISMATCH
    d = s.handle(m, INGRESS, T0 + 1, (ip, 68))
    assert d.reason is None and d.commits[-1].state is LeaseState.RELEASED


def test_release_of_a_binding_on_our_link_must_not_come_through_a_relay():
    s = make_server()
    ip = bound_ip(dora(s, mac(1)))
    d = s.handle(request(RELEASE, mac(1), ciaddr=ip, giaddr=RELAY, server_id=SID),
                 INGRESS, T0 + 1, (RELAY, 67))
    assert d.reason is Reason.RELEASE_MISMATCH
    d = s.handle(request(RELEASE, mac(1), ciaddr=ip, server_id=SID), INGRESS, T0 + 1,
                 ("192.0.2.77", 68))
    assert d.reason is None  # on our link: the MAC is all there is to check


def test_release_of_a_binding_stored_before_the_relay_field_checks_option82():
    """A lease journaled before Lease.relay existed has relay 0 and its Option 82."""
    s = make_server()
    ip = int(IPv4Address("203.0.113.150"))
    s.table.load(Lease(ip=ip, mac=bytes.fromhex("020000000001"), client_id=None,
                       state=LeaseState.BOUND, start=T0, expires=T0 + 600, pool="relayed",
                       relay_info=rai(b"p1"), seq=3, origin="A"))
    for o82, ok in ((rai(b"p2"), False), (rai(b"p1"), True)):
        d = s.handle(request(RELEASE, mac(1), ciaddr=str(IPv4Address(ip)), giaddr=RELAY,
                             server_id=SID, options={Opt.RELAY_AGENT_INFO: o82}),
                     INGRESS, T0 + 1)
        assert (d.reason is None) is ok


# -- limits per relay and circuit ----------------------------------------------------------


def test_bindings_per_circuit_are_limited_and_counted():
    s = make_server(max_leases_per_circuit=2)
    p1 = {Opt.RELAY_AGENT_INFO: rai(b"p1")}
    ips = [relayed_binding(s, mac(i)) for i in range(2)]
    d = s.handle(request(DISCOVER, mac(2), giaddr=RELAY, options=p1), INGRESS, T0)
    assert d.reason is Reason.CIRCUIT_LIMIT and d.reply is None
    # Straight to a REQUEST (no DISCOVER): refused too, nothing committed.
    d = s.handle(request(REQUEST, mac(2), giaddr=RELAY, requested="203.0.113.180",
                         server_id=SID, options=p1), INGRESS, T0)
    assert d.reason is Reason.CIRCUIT_LIMIT and d.commits == ()
    # Another circuit of the same relay is not affected.
    assert relayed_binding(s, mac(3), b"p2")
    # The clients already bound keep renewing (rebinding through the relay too).
    d = s.handle(request(REQUEST, mac(0), ciaddr=ips[0], giaddr=RELAY, options=p1),
                 INGRESS, T0 + 300)
    assert d.sent == "ack"
    # One leaves: the next one gets in.
    s.handle(request(RELEASE, mac(1), ciaddr=ips[1], giaddr=RELAY, server_id=SID,
                     options=p1), INGRESS, T0 + 301)
    assert relayed_binding(s, mac(2))


def test_bindings_per_relay_are_limited_across_its_circuits():
    s = make_server(max_leases_per_relay=3)
    for i in range(3):
        relayed_binding(s, mac(i), b"p%d" % i)
    d = s.handle(request(DISCOVER, mac(9), giaddr=RELAY,
                         options={Opt.RELAY_AGENT_INFO: rai(b"p9")}), INGRESS, T0)
    assert d.reason is Reason.RELAY_LIMIT
    assert bound_ip(dora(s, mac(9)))  # clients on our link are not behind that relay


# -- RENEWING / REBINDING an address we have no binding for --------------------------------


def test_renewal_of_an_unknown_address_is_naked_when_the_table_is_complete():
    """Before: any free ciaddr made a durable binding in one packet."""
    s = make_server()
    d = s.handle(request(REQUEST, mac(1), ciaddr="192.0.2.105"), INGRESS, T0)
    assert d.reason is Reason.NAK_NO_BINDING and d.sent == "nak" and d.commits == ()
    assert s.table.get(int(IPv4Address("192.0.2.105"))) is None


def test_renewal_of_an_unknown_address_is_recreated_while_the_peer_may_hold_it():
    s = make_server()
    s.table_complete = False  # not in sync: the peer may have bound it unseen by us
    d = s.handle(request(REQUEST, mac(1), ciaddr="192.0.2.105"), INGRESS, T0)
    assert d.sent == "ack" and d.commits[-1].state is LeaseState.BOUND
    # ... within the pool split (peer unreachable: only our half) ...
    s.alloc.owner = 0
    d = s.handle(request(REQUEST, mac(2), ciaddr="192.0.2.107"), INGRESS, T0)
    assert d.reason is Reason.NAK_OTHER_HALF
    # ... and within the relay limits.
    s = make_server(max_leases_per_circuit=1)
    s.table_complete = False
    relayed_binding(s, mac(1))
    d = s.handle(request(REQUEST, mac(2), ciaddr="203.0.113.150", giaddr=RELAY,
                         options={Opt.RELAY_AGENT_INFO: rai(b"p1")}), INGRESS, T0)
    assert d.reason is Reason.CIRCUIT_LIMIT and d.commits == ()


def test_renewal_of_the_clients_own_lapsed_binding_is_still_acked():
    s = make_server()
    ip = bound_ip(dora(s, mac(1)))
    s.table.reclaim(T0 + 700)
    d = s.handle(request(REQUEST, mac(1), ciaddr=ip), INGRESS, T0 + 701)
    assert d.sent == "ack"


# -- every declined address reaches the peer ---------------------------------------------


def test_n_declined_addresses_arrive_as_n_through_the_catch_up():
    """Declined leases used to share one client key (no MAC, no client id), and a
    catch-up delta carries each client's last change only (merge.coalesce): the peer got
    one of N. Through the real session, its delta and the merge rules."""
    a, b, pair = fresh_pair()
    a.table.on_displace = a.merger.remember  # as the daemon wires it
    s = make_server(a.table, max_declined_percent=50)
    pair.connect()
    pair.drop(Loss.RESET)
    n = 6
    declined = []
    for i in range(n):
        ack = dora(s, mac(i), T0 + i)
        ip = bound_ip(ack)
        dec = s.handle(request(DECLINE, mac(i), requested=ip, server_id=SID), INGRESS,
                       T0 + i)
        for lease in (*ack.commits, *dec.commits):
            a.log.append(lease)  # what the daemon's _committed does
        declined.append(int(IPv4Address(ip)))
    pair.connect()
    assert b.stats["deltas_received"] == 1
    got = sorted(x.ip for x in b.table.leases() if x.state is LeaseState.DECLINED)
    assert got == sorted(declined)
    assert b.view() == a.view()
    assert not b.losers  # a decline is no address conflict at the peer


def test_renewing_form_request_for_the_address_offered_to_the_client_is_acked():
    """Not one packet: the DISCOVER came first (lab.pair completes a DORA this way)."""
    s = make_server()
    off = s.handle(request(DISCOVER, mac(1)), INGRESS, T0)
    ip = str(IPv4Address(off.reply.yiaddr))
    assert s.handle(request(REQUEST, mac(2), ciaddr=ip), INGRESS, T0).reason is \
        Reason.NAK_IN_USE  # offered to someone else
    d = s.handle(request(REQUEST, mac(1), ciaddr=ip), INGRESS, T0)
    assert d.sent == "ack" and d.commits[-1].state is LeaseState.BOUND
