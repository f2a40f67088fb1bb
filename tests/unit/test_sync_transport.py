"""The asyncio transport over 127.0.0.1: two SyncLinks in one process with in-memory
change logs (10k leases bulk-synced, live updates gated on the peer's ACK, both sides
dialling), and a raw socket speaking the wire format by hand (a replayed frame is
refused and counted; reset, EOF and BYE are told apart). No root, no namespaces."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence

import pytest
from test_sync_support import KEY, mk

from appliance.leases.model import Lease
from appliance.leases.table import LeaseTable
from appliance.sync.changelog import Cursor, RingLog
from appliance.sync.frames import (
    BulkBegin,
    BulkEnd,
    BulkKind,
    Bye,
    ByeReason,
    Frame,
    FrameCodec,
    FrameError,
    Notice,
    NoticeCode,
    Updates,
)
from appliance.sync.merge import Merger
from appliance.sync.session import Evidence, Loss, Params, State
from appliance.sync.transport import SyncHandler, SyncLink, free_port_pair, loopback_config
from appliance.testing.peers import SocketSyncPeer

PARAMS = Params(heartbeat_s=0.2, dead_after_s=1.0, handshake_timeout_s=2.0)


class MemoryHandler(SyncHandler):
    """The daemon's side, in memory: a LeaseTable, a Merger and a cursor."""

    def __init__(self, name: str, durable_after: float | None = 0.0) -> None:
        self.table = LeaseTable(origin=name)
        self.merger = Merger()
        self.cursor = Cursor()
        self.durable_after = durable_after  # None: never durable (a stuck disk)
        self.states: list[State] = []
        self.lost: list[Loss] = []
        self.evidence: list[Evidence] = []
        self.clock: list[tuple[float, float, bool, bool | None]] = []
        self.notices: list[tuple[int, str]] = []
        self.drift: tuple[str, ...] | None = None
        self.received = 0

    def apply(self, leases: Sequence[Lease], cursor: Cursor | None, settle: bool):
        self.merger.apply(leases, self.table, settle)
        self.received += len(leases)
        if cursor is not None:
            self.cursor = cursor
        if self.durable_after == 0.0:
            return None
        fut = asyncio.get_running_loop().create_future()
        if self.durable_after is not None:
            asyncio.get_running_loop().call_later(self.durable_after, fut.set_result, None)
        return fut

    def on_state(self, state: State) -> None:
        self.states.append(state)

    def on_peer_lost(self, how: Loss, detail: str, evidence: Evidence) -> None:
        self.lost.append(how)
        self.evidence.append(evidence)

    def on_clock(self, skew_ms: float, delay_ms: float, alarm: bool,
                 alarm_changed: bool | None) -> None:
        self.clock.append((skew_ms, delay_ms, alarm, alarm_changed))

    def on_notice(self, code: int, detail: str) -> None:
        self.notices.append((code, detail))

    def on_drift(self, paths: tuple[str, ...]) -> None:
        self.drift = paths


class Node:
    def __init__(self, name: str, local: int, peer: int, *, key: bytes = KEY,
                 mode: str = "sync", dial: bool = True, listen: bool = True,
                 durable_after: float | None = 0.0, ack_timeout_ms: int = 500,
                 params: Params = PARAMS, clock_offset: float = 0.0) -> None:
        self.h = MemoryHandler(name, durable_after)
        self.log = RingLog(int.from_bytes(os.urandom(8), "big"), self.h.table)
        self.link = SyncLink(node=name, sync=loopback_config(key, local, peer, mode,
                                                             ack_timeout_ms),
                             log=self.log, handler=self.h, params=params, dial=dial,
                             listen=listen, wall=lambda: time.time() + clock_offset)

    def commit(self, lease: Lease) -> asyncio.Future[bool] | None:
        lease = self.h.table.commit(lease)
        self.log.append(lease)
        return self.link.commit(lease.seq)


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for a condition the event loop brings about (polls; no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 25))


# -- two links ---------------------------------------------------------------------------


def test_bulk_10k_then_live_updates_acked() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb)
        b = Node("deviceB", pb, pa)
        for i in range(10_000):
            a.commit(mk(i % 60000, mac=i.to_bytes(6, "big"), relay=b"\x01\x04eth1",
                        hostname=f"host{i}"))
        await a.link.start()
        t0 = time.monotonic()
        await b.link.start()
        await until(lambda: a.link.in_sync and b.link.in_sync)
        took = time.monotonic() - t0
        assert b.h.table.by_ip == a.h.table.by_ip and len(b.h.table) == 10_000
        assert b.link.ready_to_serve and a.link.ready_to_serve
        assert b.h.cursor == Cursor(a.log.epoch, a.log.last_seq)
        assert b.link.runtime_values()["sync/peer"] == "connected"
        assert b.link.pool_owner is None
        print(f"\n10k leases bulk-synced over loopback in {took:.2f}s")
        # Live: each reply waits for the peer's durable ACK (sync mode, in sync).
        futs = [a.commit(mk(i, mac=b"\x0a" + i.to_bytes(5, "big"), start=5000.0))
                for i in range(200)]
        assert all(f is not None for f in futs)
        assert all(await asyncio.gather(*futs))  # type: ignore[arg-type]
        assert b.h.table.by_ip == a.h.table.by_ip
        assert a.link.lag == 0 and a.link.stats["ack_timeouts"] == 0
        # The other direction too: B serves (after a switchover) and A follows.
        fut = b.commit(mk(60001, mac=b"\x0b" * 6, start=6000.0))
        assert await fut  # type: ignore[misc]
        assert a.h.table.get(mk(60001).ip) == b.h.table.get(mk(60001).ip)
        assert a.link.notice(NoticeCode.CLIENT_LINK_DOWN, "eth1 down")
        await until(lambda: b.h.notices == [(1, "eth1 down")])
        assert len(a.link._conns) == 1 and len(b.link._conns) == 1
        await b.link.close()
        await until(lambda: a.h.lost == [Loss.BYE])
        assert a.link.state is State.DISCONNECTED and a.link.pool_owner is not None
        await a.link.close()

    run(main())


def _fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the listing's own descriptor
    return out


def test_the_connection_is_released_first_when_the_process_dies() -> None:
    """On kill -9 the kernel releases the highest-numbered descriptor first, and each
    AF_PACKET socket's release waits for an RCU grace period: a sync connection
    below them told the peer late. Each connection holds a duplicate of its socket
    above every other descriptor, and gives it back when the connection ends; the
    listener's duplicate sits above those, so it is gone before the FIN leaves."""

    async def main() -> None:
        before = _fds()
        # Holes under other open descriptors: the connections' sockets land low, as
        # on a daemon whose sync connection came back after its packet sockets.
        pipes = [os.pipe() for _ in range(8)]
        for r, w in pipes[:4]:
            os.close(r)
            os.close(w)
        pa, pb = free_port_pair()
        a, b = Node("deviceA", pa, pb), Node("deviceB", pb, pa)
        await a.link.start()
        await b.link.start()
        await until(lambda: a.link.in_sync and b.link.in_sync)
        await until(lambda: len(a.link._conns) == len(b.link._conns) == 1)
        live = {f"socket:[{os.fstat(c.transport.get_extra_info('socket').fileno()).st_ino}]"
                for link in (a.link, b.link) for c in link._conns}
        listeners = {f"socket:[{os.fstat(sock.fileno()).st_ino}]"
                     for link in (a.link, b.link) for sock in link._server.sockets}
        fds = _fds()
        top = sorted(fds)[-len(live) - len(listeners):]
        # Highest first: the listeners (so that a probe of our port is refused once the
        # peer sees our connection end), then the connections.
        assert {fds[fd] for fd in top[len(live):]} == listeners, (top, fds)
        assert {fds[fd] for fd in top[: len(live)]} == live, (top, fds)
        await b.link.close()
        await until(lambda: a.h.lost == [Loss.BYE])
        await a.link.close()
        for r, w in pipes[4:]:
            os.close(r)
            os.close(w)
        assert _fds().keys() == before.keys()  # nothing left open

    run(main())


def test_started_together_they_make_one_connection() -> None:
    """Both devices dial when they have no connection. Started at the same instant,
    both would connect, and a catch-up begun on the connection then dropped as a
    duplicate was sent again (counted twice). Rank 1 lets rank 0 dial first: one
    connection, one handshake and one catch-up on each side."""

    async def main() -> None:
        for i in range(8):
            pa, pb = free_port_pair()
            a, b = Node("deviceA", pa, pb), Node("deviceB", pb, pa)
            a.commit(mk(i, mac=b"\x0c" * 5 + bytes([i])))
            await asyncio.gather(a.link.start(), b.link.start())
            await until(lambda a=a, b=b: a.link.in_sync and b.link.in_sync)
            await asyncio.sleep(0.4)  # longer than rank 1's deferral: a late dial shows
            for n in (a, b):
                assert n.link.stats["handshakes"] == 1, (i, n.link.stats)
                assert len(n.link._conns) == 1
            assert b.link.stats["deltas_received"] + b.link.stats["snapshots_received"] == 1
            await b.link.close()
            await a.link.close()

    run(main())


def test_ack_timeout_serves_alone_and_async_mode_never_waits() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb, ack_timeout_ms=50)
        b = Node("deviceB", pb, pa, durable_after=0.0)
        await a.link.start()
        await b.link.start()
        await until(lambda: a.link.in_sync and b.link.in_sync)
        b.h.durable_after = None  # B's disk hangs: nothing becomes durable any more
        t0 = time.monotonic()
        fut = a.commit(mk(5))
        assert fut is not None and await fut is False  # served alone after 50 ms
        assert 0.04 < time.monotonic() - t0 < 1.0
        assert a.link.stats["ack_timeouts"] == 1
        await a.link.close()
        await b.link.close()

        pa, pb = free_port_pair()
        c = Node("deviceC", pa, pb, mode="async")
        d = Node("deviceD", pb, pa, mode="async")
        await c.link.start()
        await d.link.start()
        await until(lambda: c.link.in_sync and d.link.in_sync)
        assert c.commit(mk(6)) is None
        await until(lambda: d.h.table.get(mk(6).ip) is not None)
        await c.link.close()
        await d.link.close()

    run(main())


def test_wrong_key_refused_by_both_links() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb)
        b = Node("deviceB", pb, pa, key=b"not the same key")
        await a.link.start()
        await b.link.start()
        await until(lambda: a.link.stats["refused_bad_auth"] >= 1
                    and b.link.stats["refused_bad_auth"] >= 1)
        assert not a.link.in_sync and not b.link.in_sync
        assert b.h.received == 0 and a.h.received == 0
        await a.link.close()
        await b.link.close()

    run(main())


# -- a raw socket speaking the protocol by hand -------------------------------------------


class RawPeer(SocketSyncPeer):
    """The shipped socket peer (appliance/testing/peers.py) on 127.0.0.1."""

    def __init__(self, key: bytes = KEY, name: str = "rawpeer") -> None:
        super().__init__(key, name)

    async def connect(self, port: int) -> None:  # type: ignore[override]
        await super().connect("127.0.0.1", port)

    def send(self, f: Frame) -> bytes:  # type: ignore[override]
        return self.send_frame(f)

    async def handshake(self) -> None:  # type: ignore[override]
        await self.handshake_over_tcp()


def test_replayed_frame_on_a_raw_socket_is_refused_and_counted() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb, dial=False)
        await a.link.start()
        peer = RawPeer()
        await peer.connect(pa)
        await peer.handshake()
        peer.send(BulkBegin(BulkKind.DELTA, 1, 0))
        data = peer.send(Updates((mk(7, seq=1, origin="rawpeer"),)))
        peer.send(BulkEnd(1))
        await until(lambda: a.h.received == 1 and a.h.cursor.seq == 1)
        peer.w.write(data)  # the same bytes again
        assert await peer.closed()
        await until(lambda: a.link.stats["refused_replay"] == 1)
        assert a.h.received == 1 and len(a.h.table) == 1
        # A frame from that connection replayed on a new one fails its MAC.
        peer2 = RawPeer()
        await peer2.connect(pa)
        await peer2.handshake()
        peer2.send(BulkBegin(BulkKind.DELTA, 0, 0))
        peer2.w.write(data)
        assert await peer2.closed()
        await until(lambda: a.link.stats["refused_bad_mac"] == 1)
        assert a.h.received == 1
        await a.link.close()

    run(main())


def test_random_bytes_and_unknown_address_refused() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb, dial=False)
        await a.link.start()
        r, w = await asyncio.open_connection("127.0.0.1", pa)
        w.write(os.urandom(4096))
        try:
            while await asyncio.wait_for(r.read(65536), 5):
                pass  # its HELLO, then EOF
        except ConnectionResetError:
            pass
        refused = sum(v for k, v in a.link.stats.counts.items() if k.startswith("refused_"))
        assert refused == 1 and a.h.received == 0
        # An oversized length is refused from the header: nothing else need arrive.
        r, w = await asyncio.open_connection("127.0.0.1", pa)
        w.write(struct.pack("!BBHIQ", 2, 1, 0, 1 << 30, 0))
        try:
            while await asyncio.wait_for(r.read(65536), 5):
                pass
        except ConnectionResetError:
            pass
        await until(lambda: a.link.stats["refused_oversized"] == 1)
        await a.link.close()

        # A link whose peer is 127.0.0.2 refuses a connection from 127.0.0.1.
        pa, pb = free_port_pair()
        cfg = loopback_config(KEY, pa, pb)
        from dataclasses import replace
        from ipaddress import IPv4Address
        h = MemoryHandler("deviceA")
        link = SyncLink(node="deviceA", sync=replace(cfg, peer=(IPv4Address("127.0.0.2"), pb)),
                        log=RingLog(1, h.table), handler=h, params=PARAMS, dial=False)
        await link.start()
        r, w = await asyncio.open_connection("127.0.0.1", pa)
        assert await r.read(65536) == b""
        assert link.stats["refused_unknown_peer"] == 1
        await link.close()

    run(main())


@pytest.mark.parametrize("ending", ["reset", "eof", "bye"])
def test_reset_eof_and_bye_are_told_apart(ending: str) -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb, dial=False)
        await a.link.start()
        peer = RawPeer()
        await peer.connect(pa)
        await peer.handshake()
        peer.send(BulkBegin(BulkKind.DELTA, 0, 0))
        peer.send(BulkEnd(0))
        await until(lambda: a.link.state is State.IN_SYNC)
        if ending == "reset":
            sock = peer.w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.w.transport.abort()  # the kernel answers with RST: a dead process
        elif ending == "eof":
            peer.w.close()
        else:
            peer.send(Bye(ByeReason.SHUTDOWN))
            peer.send(Notice(0, ""))  # after BYE: never read
        await until(lambda: a.h.lost)
        expected = {"reset": Loss.RESET, "eof": Loss.EOF, "bye": Loss.BYE}[ending]
        assert a.h.lost == [expected]
        assert a.link.stats[f"lost_{expected.value}"] == 1
        # Nothing listens on the raw peer's sync/peer port: the probe is refused, so a
        # reset or EOF without BYE is its death; a BYE is never evidence (no probe).
        if ending == "bye":
            assert a.h.evidence == [Evidence.NONE] and a.link.stats["probe_refused"] == 0
        else:
            assert a.h.evidence == [Evidence.DIED] and a.link.stats["probe_refused"] == 1
        await a.link.close()

    run(main())


def test_peer_silence_times_out() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb, dial=False)
        await a.link.start()
        peer = RawPeer()
        await peer.connect(pa)
        await peer.handshake()
        t0 = time.monotonic()
        await until(lambda: a.h.lost, timeout=5)  # we never send a HEARTBEAT
        assert a.h.lost == [Loss.TIMEOUT]
        assert 0.8 < time.monotonic() - t0 < 3.0
        await a.link.close()

    run(main())


def test_frame_error_never_escapes_codec() -> None:
    # the raw peer's codec is the product codec: a sanity check of the helper itself
    c = FrameCodec(KEY)
    c.feed(b"\x03" + bytes(15))
    with pytest.raises(FrameError):
        c.next_frame()


# -- before authentication, the probe, the interface, the clock -----------------------------


def _read_quietly(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    out = b""
    try:
        while data := sock.recv(65536):
            out += data
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def test_unauthenticated_connections_are_few_and_short() -> None:
    """At most MAX_PREAUTH_INBOUND at once (the rest are closed at accept and counted),
    and each is closed after handshake_timeout_s."""
    from appliance.sync.transport import MAX_PREAUTH_INBOUND

    async def main() -> None:
        pa, pb = free_port_pair()
        params = Params(heartbeat_s=0.2, dead_after_s=1.0, handshake_timeout_s=0.5)
        a = Node("deviceA", pa, pb, dial=False, params=params)
        await a.link.start()
        socks = []
        for _ in range(MAX_PREAUTH_INBOUND + 3):
            s = socket.create_connection(("127.0.0.1", pa))
            socks.append(s)
        await until(lambda: a.link.stats["refused_preauth_limit"] == 3)
        assert a.link._preauth_inbound() == MAX_PREAUTH_INBOUND
        t0 = time.monotonic()
        await until(lambda: a.link.stats["lost_timeout"] == MAX_PREAUTH_INBOUND, 5)
        assert time.monotonic() - t0 < 2.0 and a.link._preauth_inbound() == 0
        loop = asyncio.get_running_loop()
        for s in socks:  # each one got our HELLO at most, then the close
            await loop.run_in_executor(None, _read_quietly, s)
            s.close()
        assert a.link.state is State.DISCONNECTED and not a.h.states
        await a.link.close()

    run(main())


def test_junk_on_the_port_never_holds_back_the_dialer() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        slow = Params(heartbeat_s=0.2, dead_after_s=1.0, handshake_timeout_s=20.0)
        a = Node("deviceA", pa, pb, params=slow)
        await a.link.start()
        junk = [socket.create_connection(("127.0.0.1", pa)) for _ in range(3)]
        await until(lambda: a.link._preauth_inbound() == 3)
        b = Node("deviceB", pb, pa, dial=False)  # B only listens: A must dial it
        await b.link.start()
        t0 = time.monotonic()
        await until(lambda: a.link.in_sync and b.link.in_sync, 10)
        assert time.monotonic() - t0 < 5 and a.link._preauth_inbound() == 3
        for s in junk:
            s.close()
        await a.link.close()
        await b.link.close()

    run(main())


def test_a_reset_while_the_peer_still_listens_is_not_its_death() -> None:
    """An RST injected by a third host looks like a dead peer; the peer's listener
    still answers the probe, so it proves nothing: counted, no evidence."""

    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb, dial=False)
        await a.link.start()
        listener = socket.create_server(("127.0.0.1", pb))  # the peer's sync port
        peer = RawPeer()
        await peer.connect(pa)
        await peer.handshake()
        peer.send(BulkBegin(BulkKind.DELTA, 0, 0))
        peer.send(BulkEnd(0))
        await until(lambda: a.link.state is State.IN_SYNC)
        sock = peer.w.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.w.transport.abort()
        await until(lambda: a.h.evidence)
        assert a.h.lost == [Loss.RESET] and a.h.evidence == [Evidence.ALIVE]
        assert a.link.stats["probe_answered"] == 1 and a.link.stats["probe_refused"] == 0
        listener.close()
        await a.link.close()

    run(main())


def test_sockets_are_bound_to_sync_interface() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a, b = Node("deviceA", pa, pb), Node("deviceB", pb, pa)
        await a.link.start()
        await b.link.start()
        await until(lambda: a.link.in_sync and b.link.in_sync)
        socks = [sock for link in (a.link, b.link) for sock in link._server.sockets]
        socks += [c.transport.get_extra_info("socket") for link in (a.link, b.link)
                  for c in link._conns]
        assert len(socks) == 4
        for sock in socks:
            dev = sock.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16)
            assert dev.rstrip(b"\0") == b"lo"
        await a.link.close()
        await b.link.close()

    run(main())


def test_sync_local_must_be_on_sync_interface() -> None:
    from dataclasses import replace
    from ipaddress import IPv4Address

    from appliance.sync.transport import SyncSetupError, check_local_address

    cfg = loopback_config(KEY, 1, 2)
    check_local_address(cfg)  # 127.0.0.1 is on lo
    with pytest.raises(SyncSetupError) as e:
        check_local_address(replace(cfg, interface="eth9"))
    assert "sync/local 127.0.0.1" in str(e.value) and "sync/interface eth9" in str(e.value)
    assert "is an address of lo" in str(e.value)
    with pytest.raises(OSError) as e2:  # on no interface yet: the daemon retries
        check_local_address(replace(cfg, local=(IPv4Address("192.0.2.77"), 1)))
    assert "192.0.2.77" in str(e2.value) and "sync/interface lo" in str(e2.value)

    async def main() -> None:
        h = MemoryHandler("deviceA")
        link = SyncLink(node="deviceA", sync=replace(cfg, interface="eth9"),
                        log=RingLog(1, h.table), handler=h, params=PARAMS, dial=False)
        with pytest.raises(SyncSetupError):
            await link.start()

    run(main())


def test_clock_skew_is_measured_over_the_link() -> None:
    async def main() -> None:
        pa, pb = free_port_pair()
        a = Node("deviceA", pa, pb)
        b = Node("deviceB", pb, pa, clock_offset=3.0)  # B's clock 3 s ahead
        await a.link.start()
        await b.link.start()
        await until(lambda: a.link.clock_skew_ms is not None
                    and b.link.clock_skew_ms is not None)
        assert abs(a.link.clock_skew_ms - 3000) < 50  # type: ignore[operator]
        assert abs(b.link.clock_skew_ms + 3000) < 50  # type: ignore[operator]
        assert a.link.clock_skew_alarm and b.link.clock_skew_alarm  # bound: 1000 ms
        assert a.h.clock[0][2] is True and a.h.clock[0][3] is True
        rv = a.link.runtime_values()
        assert rv["sync/clock_skew_alarm"] == 1
        assert abs(float(rv["sync/clock_skew_ms"]) - 3000) < 50  # type: ignore[arg-type]
        # Samples keep coming with the heartbeats (every heartbeat_s, 0.2 s here).
        n = a.link.stats["clock_samples"]
        await until(lambda: a.link.stats["clock_samples"] >= n + 3)
        await a.link.close()
        await b.link.close()

    run(main())


def test_status_shows_the_clock_skew_and_its_alarm(tmp_path, capsys) -> None:
    """What `dhcp-hotbackup status` prints from the runtime tree the daemon publishes
    (SyncLink.runtime_values)."""
    from appliance.cli import main
    from appliance.runtime.tree import RuntimeTree
    from appliance.testing.trees import standalone_tree

    etc = standalone_tree(tmp_path, extra={
        "sync/interface": "lo", "sync/local": "127.0.0.1:6470",
        "sync/peer": "127.0.0.2:6470", "sync/key": KEY.decode()})
    rt = RuntimeTree(tmp_path / "run")
    rt.set("pid", os.getpid())
    rt.set("role", "standby")
    values = {"sync/peer": "connected", "sync/clock_skew_ms": "+86400012.5",
              "sync/clock_delay_ms": "0.412", "sync/clock_skew_alarm": 1}
    for k, v in values.items():
        rt.set(k, v)
    assert main(["status", "--config", str(etc)]) == 0
    out = capsys.readouterr().out
    assert "clock     peer +86400012.5 ms from ours (round trip 0.412 ms)" in out
    assert "ALARM" in out
    rt.set("sync/clock_skew_alarm", 0)
    rt.set("sync/clock_skew_ms", "-3.1")
    main(["status", "--config", str(etc)])
    out = capsys.readouterr().out
    assert "peer -3.1 ms from ours" in out and "ALARM" not in out
