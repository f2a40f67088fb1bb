"""Whatever a client sends, what the server decides can be stored and replicated.

The property (issue 11, "Input"): for any message the DHCP codec accepts, every lease
change `DhcpServer.handle()` returns, and every expiry the table makes of them later,
encodes as a journal record (leases/journal.frame, read back by the journal's reader)
and as a sync UPDATES frame (sync/frames.py, decoded by the peer's decoder). Before,
a 255-byte hostname of 0xff or a doubled option 61 made a binding in memory that the
lease encoder then refused (ValueError from journal.append: the batch's replies lost).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from appliance.config.model import PoolConfig
from appliance.dhcp.enums import Opt
from appliance.dhcp.message import DecodeError, DhcpMessage
from appliance.dhcp.server import DhcpServer, Ingress
from appliance.leases.allocator import Allocator
from appliance.leases.journal import frame, read_records
from appliance.leases.model import Lease
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable
from appliance.sync.frames import Updates, decode_frame, encode_frame

KEY = b"k" * 32
SID = IPv4Address("192.0.2.1").packed
T0 = 1_700_000_000.0
INGRESS = Ingress(local_ips=(int(IPv4Address("192.0.2.2")),), server_ids=(SID,))
ADDRS = [IPv4Address(a).packed for a in (
    "0.0.0.0", "192.0.2.100", "192.0.2.101", "192.0.2.102", "192.0.2.50", "192.0.2.7",
    "203.0.113.1", "203.0.113.100", "203.0.113.101", "198.51.100.9")]


def server(table_complete: bool, per_circuit: int, per_relay: int) -> DhcpServer:
    limits = {"max_leases_per_circuit": per_circuit, "max_leases_per_relay": per_relay,
              "max_declined_percent": 34}
    pools = Pools.from_config((
        PoolConfig(name="lan", subnet=IPv4Network("192.0.2.0/24"),
                   ranges=((IPv4Address("192.0.2.100"), IPv4Address("192.0.2.102")),),
                   lease_time=60, reservations=((b"\x02" * 6, IPv4Address("192.0.2.50")),),
                   **limits),
        PoolConfig(name="relayed", subnet=IPv4Network("203.0.113.0/24"),
                   ranges=((IPv4Address("203.0.113.100"), IPv4Address("203.0.113.101")),),
                   lease_time=60, **limits),
    ))
    table = LeaseTable(origin="deviceA")
    return DhcpServer(pools, table, Allocator(pools, table), table_complete)


# A value that is sometimes short and tidy, sometimes as long as RFC 3396 lets a client
# make it (several instances of one option, joined), sometimes nasty bytes.
value = st.one_of(st.binary(max_size=8), st.binary(min_size=250, max_size=600),
                  st.builds(lambda n, b: b * n, st.integers(1, 520), st.sampled_from(
                      [b"\xff", b"\x00", b"a", "é".encode()])))
relay_info = st.one_of(value, st.builds(
    lambda c, r: bytes((1, len(c))) + c + (bytes((2, len(r))) + r if r else b""),
    st.sampled_from([b"p1", b"p2", b"cust7"]), st.sampled_from([b"", b"r1"])))

message = st.builds(
    lambda mt, who, hlen, ci, gi, opts, flags: (mt, who, hlen, ci, gi, opts, flags),
    st.sampled_from([1, 3, 3, 3, 4, 7, 8, 0, 2, 5, 17]),
    st.integers(0, 5), st.sampled_from([6, 6, 6, 0, 16]),
    st.sampled_from(ADDRS), st.sampled_from(ADDRS[:1] * 3 + ADDRS[6:8]),
    st.fixed_dictionaries({}, optional={
        Opt.CLIENT_ID: value, Opt.HOSTNAME: value, Opt.RELAY_AGENT_INFO: relay_info,
        Opt.REQUESTED_IP: st.sampled_from([*ADDRS[1:], b"\x01\x02"]),
        Opt.SERVER_ID: st.sampled_from([SID, ADDRS[5]]),
    }),
    st.sampled_from([0, 0x8000]))


def build(mt: int, who: int, hlen: int, ci: bytes, gi: bytes, opts: dict[int, bytes],
          flags: int) -> bytes:
    o = {Opt.MESSAGE_TYPE: bytes((mt,)), **opts}
    m = DhcpMessage(op=1, htype=1, hlen=hlen, hops=0, xid=who, secs=0, flags=flags,
                    ciaddr=ci, yiaddr=bytes(4), siaddr=bytes(4), giaddr=gi,
                    chaddr=bytes((2, 0, 0, 0, 0, who)) + bytes(10), sname=bytes(64),
                    file=bytes(128), options=o)
    return m.encode()  # values over 255 bytes go out as several instances (RFC 3396)


def storable(lease: Lease, tmp: Path) -> None:
    """The lease as a journal record and as a sync frame, read back by the real readers."""
    f = tmp / "journal"
    f.write_bytes(frame(lease))
    back, good, total = read_records(f)
    assert back == [lease] and good == total
    sent = Updates((lease,))
    assert decode_frame(encode_frame(sent, KEY, 7), KEY, 7) == sent


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(message, min_size=1, max_size=25), st.booleans(), st.integers(0, 2),
       st.integers(0, 2), st.lists(st.binary(min_size=240, max_size=700), max_size=3))
def test_every_decision_on_an_accepted_message_is_storable(tmp_path, msgs, complete,
                                                           per_circuit, per_relay, raw):
    s = server(complete, per_circuit, per_relay)
    datagrams = [build(*m) for m in msgs] + raw
    now = T0
    seen = 0
    for data in datagrams:
        try:
            msg = DhcpMessage.decode(data)
        except DecodeError:
            continue  # the codec refused it: counted as malformed, never decided on
        seen += 1
        d = s.handle(msg, INGRESS, now, ("192.0.2.100", 68))
        for lease in d.commits:
            storable(lease, tmp_path)
        if d.reply is not None:
            d.reply.encode()  # and the reply itself can be sent
        now += 1
    assume(seen)
    # Later, the housekeeping task expires them: those changes are stored too.
    for lease in s.table.reclaim(now + 10 * 86400):
        storable(lease, tmp_path)
    # And a snapshot of the table (compaction, a catch-up) holds every lease.
    for lease in s.table.leases():
        if lease.state.name != "OFFERED":
            storable(lease, tmp_path)


def test_the_two_messages_of_the_issue_are_refused_or_bounded(tmp_path):
    """The two reproductions of issue 11, as a client sends them on the wire."""
    s = server(True, 0, 0)
    hostile = {Opt.HOSTNAME: b"\xff" * 255}
    for mt, opts in ((1, hostile), (3, {**hostile, Opt.REQUESTED_IP: ADDRS[1],
                                         Opt.SERVER_ID: SID})):
        d = s.handle(DhcpMessage.decode(build(mt, 1, 6, ADDRS[0], ADDRS[0], opts, 0)),
                     INGRESS, T0)
        for lease in d.commits:
            storable(lease, tmp_path)
    assert d.sent == "ack"
    doubled = DhcpMessage.decode(build(3, 2, 6, ADDRS[0], ADDRS[0], {
        Opt.CLIENT_ID: b"\x01" + b"\x02" * 256, Opt.REQUESTED_IP: ADDRS[2],
        Opt.SERVER_ID: SID}, 0))
    assert len(doubled.options[Opt.CLIENT_ID]) == 257
    d = s.handle(doubled, INGRESS, T0)
    assert d.commits == () and d.reply is None and d.reason is not None
