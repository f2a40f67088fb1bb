"""The RFC 6926 listener (dhcp/tcp.py) on loopback: real TCP, its limits and refusals.
The answers themselves are tests/unit/test_leasequery.py's."""

from __future__ import annotations

import asyncio
import logging
import struct
from ipaddress import IPv4Address, IPv4Network

from appliance.config.model import LeasequeryConfig
from appliance.dhcp.enums import MessageType, Opt
from appliance.dhcp.leasequery import Leasequery, Status
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.tcp import STEP, BulkListener
from appliance.leases.model import Lease, LeaseState
from appliance.leases.table import LeaseTable
from appliance.ratelog import RateLimitedLog
from appliance.testing.clock import FakeClock

SID = IPv4Address("192.0.2.1").packed
T0 = 1_700_000_000.0
LOOP = IPv4Network("127.0.0.0/8")


def query(xid: int = 1, mtype: int = MessageType.BULKLEASEQUERY) -> bytes:
    m = DhcpMessage(op=1, htype=0, hlen=0, hops=0, xid=xid, secs=0, flags=0,
                    ciaddr=bytes(4), yiaddr=bytes(4), siaddr=bytes(4), giaddr=bytes(4),
                    chaddr=bytes(16), sname=bytes(64), file=bytes(128),
                    options={Opt.MESSAGE_TYPE: bytes([mtype])})
    raw = m.encode(0)
    return struct.pack("!H", len(raw)) + raw


def table(n: int) -> LeaseTable:
    t = LeaseTable(origin="A")
    for i in range(n):
        t.load(Lease(ip=int(IPv4Address("203.0.113.0")) + i, mac=i.to_bytes(6, "big"),
                     client_id=None, state=LeaseState.BOUND, start=T0, expires=T0 + 600,
                     pool="p", seq=i + 1, origin="A"))
    return t


async def closed(reader: asyncio.StreamReader) -> bool:
    """The listener closed the connection (a FIN, or a reset when our query was unread)."""
    try:
        return await asyncio.wait_for(reader.read(10), 10) == b""
    except ConnectionResetError:
        return True


async def read_answers(reader: asyncio.StreamReader) -> list[DhcpMessage]:
    out = []
    while True:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
        m = DhcpMessage.decode(await reader.readexactly(n))
        out.append(m)
        if m.message_type == MessageType.LEASEQUERYDONE:
            return out


def run(coro_fn, n_leases: int = 3, sid=lambda: SID, **cfg):
    async def main():
        stats: dict[str, int] = {}
        lq = Leasequery(table(n_leases), requesters=cfg.pop("requesters", (LOOP,)), node="A")
        lst = BulkListener(lq, LeasequeryConfig(bulk_listen="127.0.0.1:0", **cfg), sid,
                           stats, FakeClock(wall=T0), RateLimitedLog(logging.getLogger("t")))
        await lst.start()
        try:
            await coro_fn(lst, stats)
        finally:
            await lst.stop()
        return stats
    return asyncio.run(main())


def test_two_queries_on_one_connection_answered_in_order():
    async def go(lst, stats):
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        w.write(query(7) + query(8))  # both at once
        a = await read_answers(r)
        b = await read_answers(r)
        assert [m.xid for m in a] == [7] * 4 and [m.xid for m in b] == [8] * 4
        assert [m.message_type for m in a[:3]] == [MessageType.LEASEACTIVE] * 3
        w.close()
    stats = run(go)
    assert stats["bulkleasequery"] == 2 and stats["bulk_replies"] == 6
    assert stats["leasequerydone"] == 2


def test_too_many_connections():
    async def go(lst, stats):
        r1, w1 = await asyncio.open_connection("127.0.0.1", lst.port)
        w1.write(query())
        await read_answers(r1)  # the first is being served
        r2, w2 = await asyncio.open_connection("127.0.0.1", lst.port)
        assert await closed(r2)  # closed at accept
        w1.close()
        w2.close()
    stats = run(go, bulk_max_connections=1)
    assert stats["bulk_refused_connections"] == 1


def test_requester_not_allowed():
    async def go(lst, stats):
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        w.write(query())
        assert await closed(r)
        w.close()
    stats = run(go, requesters=(IPv4Network("198.51.100.0/24"),))
    assert stats["bulk_refused_not_allowed"] == 1 and stats["bulkleasequery"] == 0


def test_bad_frame_and_wrong_type_close():
    async def go(lst, stats):
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        w.write(struct.pack("!H", 5000) + b"x" * 10)
        assert await closed(r)
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        w.write(query(mtype=MessageType.DISCOVER))
        assert await closed(r)
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        w.write(struct.pack("!H", 4) + b"junk")
        assert await closed(r)
        w.close()
    stats = run(go)
    assert stats["bulk_refused_frame"] == 2 and stats["bulk_refused_not_query"] == 1


def test_idle_connection_closed():
    async def go(lst, stats):
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        assert await closed(r)  # after 1 s
        w.close()
    stats = run(go, bulk_idle_timeout_s=1)
    assert stats["bulk_closed_idle"] == 1


def test_standby_is_not_allowed():
    async def go(lst, stats):
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        w.write(query())
        out = await read_answers(r)
        assert len(out) == 1 and out[0].options[Opt.STATUS_CODE][0] == Status.NOT_ALLOWED
        w.close()
    stats = run(go, sid=lambda: None)
    assert stats["bulk_refused_standby"] == 1


def test_stopping_to_serve_mid_query_terminates_it():
    calls = []

    def sid():
        calls.append(1)
        return SID if len(calls) == 1 else None  # standby after the first step

    async def go(lst, stats):
        r, w = await asyncio.open_connection("127.0.0.1", lst.port)
        w.write(query())
        out = await read_answers(r)
        assert len(out) == STEP + 1
        assert out[-1].options[Opt.STATUS_CODE][0] == Status.QUERY_TERMINATED
        w.close()
    stats = run(go, n_leases=STEP * 3, sid=sid)
    assert stats["bulk_query_terminated"] == 1 and stats["bulk_replies"] == STEP
