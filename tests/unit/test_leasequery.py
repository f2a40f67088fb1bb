"""Leasequery decisions (dhcp/leasequery.py): RFC 4388 answers, RFC 6926 bulk answers and
framing, refusals, and hypothesis fuzz of every decoder. Pure: no sockets."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.config.model import PoolConfig
from appliance.dhcp.enums import MessageType, Opt
from appliance.dhcp.leasequery import (
    LOG,
    FrameError,
    Framer,
    Kind,
    Leasequery,
    LqReason,
    Status,
    frame,
    parse_query,
    read_bulk_query,
)
from appliance.dhcp.message import DecodeError, DhcpMessage
from appliance.leases.model import Lease, LeaseState
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable

ZERO = b"\x00" * 4
SID = IPv4Address("192.0.2.1").packed
BNG = IPv4Address("198.51.100.7")
T0 = 1_700_000_000.0
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
RAI1 = b"\x01\x04eth7\x02\x03cpe\x0c\x04bng1"  # circuit-id, remote-id, relay-id
RAI2 = b"\x01\x04eth8\x0c\x04bng1"
U32 = struct.Struct("!I")
DOC = Path(__file__).resolve().parents[2] / "docs" / "leasequery.md"


def ip(s: str) -> int:
    return int(IPv4Address(s))


def make(node: str = "A") -> Leasequery:
    pools = Pools.from_config((PoolConfig(
        name="subs", subnet=IPv4Network("203.0.113.0/24"),
        ranges=((IPv4Address("203.0.113.100"), IPv4Address("203.0.113.199")),)),))
    table = LeaseTable(origin=node)
    for n, (mac, cid, rai, state, origin) in enumerate((
            (MAC1, None, RAI1, LeaseState.BOUND, "A"),
            (MAC2, b"\x01" + MAC2, RAI2, LeaseState.BOUND, "B"),
            (bytes.fromhex("020000000003"), None, RAI1, LeaseState.RELEASED, "A"))):
        table.load(Lease(ip=ip("203.0.113.100") + n, mac=mac, client_id=cid, state=state,
                         start=T0 - 100, expires=T0 + 500 if state == LeaseState.BOUND
                         else T0 - 50, pool="subs", relay_info=rai, seq=n + 1,
                         origin=origin, relay=ip("203.0.113.1"), hostname=f"host{n}"))
    return Leasequery(table, pools, requesters=(IPv4Network("198.51.100.0/24"),), node=node)


def query(mtype: int = MessageType.LEASEQUERY, *, ciaddr: bytes = ZERO, mac: bytes = b"",
          giaddr: bytes = BNG.packed, **opts: bytes) -> DhcpMessage:
    o: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes([mtype])}
    for k, v in opts.items():
        o[Opt[k.upper()]] = v
    return DhcpMessage(op=1, htype=1 if mac else 0, hlen=len(mac), hops=0, xid=0x42, secs=0,
                       flags=0, ciaddr=ciaddr, yiaddr=ZERO, siaddr=ZERO, giaddr=giaddr,
                       chaddr=mac + bytes(16 - len(mac)), sname=bytes(64), file=bytes(128),
                       options=o)


def ask(lq: Leasequery, m: DhcpMessage, src: IPv4Address = BNG):
    return lq.answer(m, int(src), SID, T0)


class TestRfc4388:
    def test_by_address_active_with_the_stored_option82(self):
        a = ask(make(), query(ciaddr=IPv4Address("203.0.113.100").packed,
                              param_request_list=bytes([12, 82])))
        r = a.reply
        assert a.sent == "leaseactive" and r.message_type == MessageType.LEASEACTIVE
        assert r.xid == 0x42 and r.giaddr == BNG.packed and r.op == 2
        assert r.ciaddr == IPv4Address("203.0.113.100").packed
        assert r.mac == MAC1 and r.htype == 1
        o = r.options
        assert U32.unpack(o[Opt.LEASE_TIME])[0] == 500
        assert U32.unpack(o[Opt.CLIENT_LAST_TRANSACTION_TIME])[0] == 100
        assert o[Opt.RELAY_AGENT_INFO] == RAI1
        assert o[Opt.SERVER_ID] == SID
        assert o[Opt.HOSTNAME] == b"host0"
        assert list(o)[-1] == Opt.RELAY_AGENT_INFO  # RFC 3046 §2.1: last
        DhcpMessage.decode(r.encode())  # it encodes

    def test_by_address_unassigned_and_unknown(self):
        lq = make()
        a = ask(lq, query(ciaddr=IPv4Address("203.0.113.102").packed))  # released
        assert a.sent == "leaseunassigned"
        assert a.reply.ciaddr == IPv4Address("203.0.113.102").packed
        a = ask(lq, query(ciaddr=IPv4Address("203.0.113.150").packed))  # free, ours
        assert a.sent == "leaseunassigned"
        a = ask(lq, query(ciaddr=IPv4Address("192.0.2.77").packed))  # not ours
        assert a.sent == "leaseunknown"

    def test_expired_binding_is_unassigned(self):
        lq = make()
        a = lq.answer(query(ciaddr=IPv4Address("203.0.113.100").packed), int(BNG), SID,
                      T0 + 600)
        assert a.sent == "leaseunassigned"

    def test_by_mac(self):
        a = ask(make(), query(mac=MAC2))
        assert a.sent == "leaseactive"
        assert a.reply.ciaddr == IPv4Address("203.0.113.101").packed
        assert a.reply.options[Opt.CLIENT_ID] == b"\x01" + MAC2
        assert ask(make(), query(mac=bytes.fromhex("020000000003"))).sent == "leaseunknown"

    def test_by_mac_several_addresses(self):
        lq = make()
        lq.table.load(Lease(ip=ip("203.0.113.150"), mac=MAC1, client_id=b"other-os",
                            state=LeaseState.BOUND, start=T0 - 10, expires=T0 + 100,
                            pool="subs", seq=9, origin="A"))
        r = ask(lq, query(mac=MAC1)).reply
        assert r.ciaddr == IPv4Address("203.0.113.150").packed  # the most recent
        assert r.options[Opt.ASSOCIATED_IP] == IPv4Address("203.0.113.100").packed

    def test_by_client_id(self):
        a = ask(make(), query(client_id=b"\x01" + MAC2))
        assert a.sent == "leaseactive" and a.reply.mac == MAC2
        assert ask(make(), query(client_id=b"nobody")).sent == "leaseunknown"

    def test_refusals(self):
        lq = make()
        assert ask(lq, query(ciaddr=b"\xcb\x00\x71\x64"), src=IPv4Address("192.0.2.9")
                   ).reason is LqReason.NOT_ALLOWED
        assert ask(lq, query(ciaddr=b"\xcb\x00\x71\x64", giaddr=ZERO)).reason is \
            LqReason.NO_GIADDR
        assert ask(lq, query()).reason is LqReason.MALFORMED  # nothing to query by
        lq.requesters = ()  # none configured: leasequery is off
        assert ask(lq, query(mac=MAC1)).reason is LqReason.NOT_ALLOWED

    def test_precedence(self):
        # RFC 4388: ciaddr, then client identifier, then chaddr.
        q = parse_query(query(ciaddr=b"\x01\x02\x03\x04", mac=MAC1, client_id=b"x"))
        assert q.kind is Kind.ADDRESS
        assert parse_query(query(mac=MAC1, client_id=b"x")).kind is Kind.CLIENT_ID
        assert parse_query(query(mac=MAC1)).kind is Kind.MAC
        assert parse_query(query(mac=bytes(6))) is None


def bulk(lq: Leasequery, **kw) -> list[DhcpMessage]:
    return list(lq.bulk(query(MessageType.BULKLEASEQUERY, **kw), SID, T0))


class TestRfc6926:
    def test_all(self):
        out = bulk(make())
        assert [r.message_type for r in out] == [MessageType.LEASEACTIVE,
                                                 MessageType.LEASEACTIVE,
                                                 MessageType.LEASEUNASSIGNED,
                                                 MessageType.LEASEQUERYDONE]
        first = out[0].options
        assert U32.unpack(first[Opt.BASE_TIME])[0] == int(T0)
        assert U32.unpack(first[Opt.START_TIME_OF_STATE])[0] == 100
        assert first[Opt.DHCP_STATE] == b"\x02"  # ACTIVE
        assert first[Opt.DATA_SOURCE] == b"\x00"
        assert out[1].options[Opt.DATA_SOURCE] == b"\x01"  # made by the peer: REMOTE
        assert out[2].options[Opt.DHCP_STATE] == b"\x04"  # RELEASED
        assert U32.unpack(out[2].options[Opt.START_TIME_OF_STATE])[0] == 50
        assert Opt.STATUS_CODE not in out[-1].options
        assert all(r.xid == 0x42 for r in out)

    @pytest.mark.parametrize("rai, want", [
        (b"\x0c\x04bng1", ["203.0.113.100", "203.0.113.101"]),  # relay-id (RFC 6925)
        (b"\x02\x03cpe", ["203.0.113.100"]),  # remote-id
        (b"\x01\x04eth8", ["203.0.113.101"]),  # circuit-id (our extension)
        (b"\x01\x04eth8\x0c\x04bng2", []),  # all must match
    ])
    def test_by_relay_suboptions_active_only(self, rai, want):
        out = bulk(make(), relay_agent_info=rai)
        assert [str(IPv4Address(r.ciaddr)) for r in out[:-1]] == want
        assert out[-1].message_type == MessageType.LEASEQUERYDONE

    def test_single_kinds_end_with_done(self):
        out = bulk(make(), ciaddr=IPv4Address("203.0.113.101").packed)
        assert [r.message_type for r in out] == [MessageType.LEASEACTIVE,
                                                 MessageType.LEASEQUERYDONE]
        out = bulk(make(), client_id=b"nobody")
        assert [r.message_type for r in out] == [MessageType.LEASEQUERYDONE]

    def test_time_window(self):
        out = bulk(make(), query_start_time=U32.pack(int(T0 - 60)))
        assert [str(IPv4Address(r.ciaddr)) for r in out[:-1]] == ["203.0.113.102"]
        out = bulk(make(), query_end_time=U32.pack(int(T0 - 60)))
        assert len(out) == 3

    def test_malformed(self):
        out = bulk(make(), relay_agent_info=b"\x01\x09short")
        assert len(out) == 1 and out[0].message_type == MessageType.LEASEQUERYDONE
        assert out[0].options[Opt.STATUS_CODE][0] == Status.MALFORMED_QUERY
        out = bulk(make(), query_start_time=b"\x01")
        assert out[0].options[Opt.STATUS_CODE][0] == Status.MALFORMED_QUERY

    def test_a_binding_changed_while_streaming_is_sent_as_it_is_now(self):
        lq = make()
        it = lq.bulk(query(MessageType.BULKLEASEQUERY), SID, T0)
        next(it)
        lq.table.load(Lease(ip=ip("203.0.113.101"), mac=MAC2, client_id=b"\x01" + MAC2,
                            state=LeaseState.DELETED, start=T0, expires=T0, pool="subs",
                            seq=10, origin="B"))
        rest = list(it)
        assert [r.message_type for r in rest] == [MessageType.LEASEUNASSIGNED,
                                                  MessageType.LEASEQUERYDONE]


class TestFraming:
    def test_split_and_joined(self):
        a, b = query(MessageType.BULKLEASEQUERY).encode(0), query(mac=MAC1).encode(0)
        stream = frame(a) + frame(b)
        f = Framer()
        got = []
        for i in range(0, len(stream), 7):
            got += f.feed(stream[i:i + 7])
        assert got == [a, b] and f.pending == 0

    @pytest.mark.parametrize("n", [0, 4097, 65535])
    def test_bad_length(self, n):
        with pytest.raises(FrameError):
            Framer().feed(struct.pack("!H", n) + b"x" * 10)

    def test_read_bulk_query(self):
        assert read_bulk_query(b"junk") is LqReason.BULK_FRAME
        assert read_bulk_query(query(MessageType.LEASEQUERY).encode()) is \
            LqReason.BULK_NOT_QUERY
        assert isinstance(read_bulk_query(query(MessageType.BULKLEASEQUERY).encode()),
                          DhcpMessage)


# -- fuzz: every decoder refuses with a reason, never with a crash ------------------------
@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=600), max_size=8))
def test_framer_never_raises_anything_but_frame_error(chunks):
    f = Framer()
    try:
        for c in chunks:
            for m in f.feed(c):
                assert 0 < len(m) <= f.max_len
    except FrameError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=700))
def test_read_bulk_query_never_raises(data):
    r = read_bulk_query(data)
    assert isinstance(r, (DhcpMessage, LqReason))


_opts = st.dictionaries(st.sampled_from([61, 82, 55, 154, 155, 12, 53]),
                        st.binary(max_size=40), max_size=6)


@settings(max_examples=400, deadline=None)
@given(ciaddr=st.binary(min_size=4, max_size=4), giaddr=st.binary(min_size=4, max_size=4),
       hlen=st.integers(0, 16), chaddr=st.binary(min_size=16, max_size=16), opts=_opts,
       src=st.integers(0, 2**32 - 1))
def test_answers_never_raise_and_always_encode(ciaddr, giaddr, hlen, chaddr, opts, src):
    lq = make()
    lq.requesters = (IPv4Network("0.0.0.0/0"),)
    for mtype in (MessageType.LEASEQUERY, MessageType.BULKLEASEQUERY):
        o = {**opts, 53: bytes([mtype])}
        m = DhcpMessage(op=1, htype=1, hlen=hlen, hops=0, xid=1, secs=0, flags=0,
                        ciaddr=ciaddr, yiaddr=ZERO, siaddr=ZERO, giaddr=giaddr,
                        chaddr=chaddr, sname=bytes(64), file=bytes(128), options=o)
        try:
            m = DhcpMessage.decode(m.encode())  # as it would arrive
        except (DecodeError, ValueError):
            continue
        if mtype == MessageType.LEASEQUERY:
            a = lq.answer(m, src, SID, T0)
            assert (a.reason is None) == (a.reply is not None)
            if a.reply is not None:
                DhcpMessage.decode(a.reply.encode())
        else:
            out = list(lq.bulk(m, SID, T0))
            assert out[-1].message_type == MessageType.LEASEQUERYDONE
            for r in out:
                assert len(frame(r.encode(0))) <= 4098


def test_every_reason_is_documented_with_its_log_id():
    text = DOC.read_text()
    for why in LqReason:
        lid = LOG[why][0]
        assert f"`stats/{why.value}` | {lid} |" in text, why
        assert f"| {lid} |" in text.split("## Log messages", 1)[1], lid
