"""Sync performance figures (docs/sync-protocol.md §Measured).

    .venv/bin/python tests/unit/test_sync_perf.py [bulk_leases]

prints the per-frame cost of sealing and opening (HMAC-SHA256 as in wire version 1,
ChaCha20-Poly1305 and AES-256-GCM: the measurement behind frames.AEAD), the per-lease
cost of encode+seal+open+decode, two sessions back to back in memory (snapshot and
live, with and without the merge into a LeaseTable), and two SyncLinks over loopback
TCP (snapshot, sync-mode commit -> peer ACK rate and latency).
Under pytest it only runs each measurement at a tiny size, so the script cannot rot;
no timing is asserted (a shared CI machine is no place for that).
"""

from __future__ import annotations

import asyncio
import bisect
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # when run as a script

from appliance.leases.model import Lease, LeaseState
from appliance.leases.table import LeaseTable
from appliance.sync.frames import (
    AEADS,
    DEFAULT_MAX_BODY,
    HEADER,
    AeadSeal,
    FrameCodec,
    FrameType,
    HelloSeal,
)
from appliance.sync.merge import Merger
from appliance.sync.session import (
    Apply,
    Connected,
    DataReceived,
    LocalCommitted,
    Params,
    Persisted,
    Send,
    Session,
    State,
)

K = b"k" * 32


def lease(i: int, start: float = 1.7e9) -> Lease:
    return Lease(ip=0x0A000000 + i, mac=(0x020000000000 + i).to_bytes(6, "big"),
                 client_id=None, state=LeaseState.BOUND, start=start + i,
                 expires=start + i + 3600, pool="lan", hostname=f"host-{i}",
                 relay_info=b"\x01\x06eth1/1\x02\x08remote01", seq=i + 1, origin="deviceA")


def seal_open_us(seal: HelloSeal | AeadSeal, size: int, n: int = 2000) -> float:
    """us to seal and open one frame of `size` body bytes (best of 3 runs)."""
    header = HEADER.pack(2, FrameType.UPDATES, 0, size, 7)
    body = bytes(size)
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            seal.open(seal.seal(header, body))
        best = min(best, (time.perf_counter() - t0) / n)
    return best * 1e6


def seals() -> dict[str, HelloSeal | AeadSeal]:
    out: dict[str, HelloSeal | AeadSeal] = {"hmac-sha256 (v1)": HelloSeal(K)}
    for name in AEADS:
        out[name] = AeadSeal(K, name)
    return out


def codec_us_per_lease(batch: int, leases_total: int = 20_000) -> tuple[float, float]:
    """(us per lease for encode+seal+open+decode, bytes per lease on the wire)."""
    ls = [lease(i) for i in range(batch)]
    rounds = max(leases_total // batch, 2)
    tx, rx = FrameCodec(K), FrameCodec(K)
    tx.set_session_keys(K, K)  # the frames after HELLO: AEAD-sealed
    rx.set_session_keys(K, K)
    rx.max_body = DEFAULT_MAX_BODY
    size = 0
    t0 = time.perf_counter()
    for _ in range(rounds):
        for data, _n in tx.encode_leases(FrameType.UPDATES, ls, 256 * 1024):
            size = len(data)
            rx.feed(data)
            rx.next_frame()
    return (time.perf_counter() - t0) / (rounds * batch) * 1e6, size / batch


class _ListLog:
    def __init__(self, leases: list[Lease]) -> None:
        self.items = leases
        self.epoch = 7

    @property
    def last_seq(self) -> int:
        return self.items[-1].seq if self.items else 0

    @property
    def lease_count(self) -> int:
        return len(self.items)

    def changes_since(self, seq: int, limit: int) -> list[Lease] | None:
        i = bisect.bisect_right(self.items, seq, key=lambda x: x.seq)
        return self.items[i : i + limit]

    def snapshot_pages(self, page_size: int):
        rows = list(self.items)
        return (rows[i : i + page_size] for i in range(0, len(rows), page_size))


class _Pair:
    """Two sessions back to back; B's applies are durable at once."""

    def __init__(self, leases: list[Lease], merge: bool) -> None:
        self.la, self.lb = _ListLog(leases), _ListLog([])
        self.a = Session("deviceA", K, self.la, params=Params())
        self.b = Session("deviceB", K, self.lb, params=Params())
        self.table = LeaseTable("deviceB")
        self.merger = Merger() if merge else None
        self.qa: list[bytes] = []
        self.qb: list[bytes] = []

    def run(self, s: Session, ev, out: list[bytes]) -> None:
        for act in s.handle(ev, 0.0):
            if type(act) is Send:
                out.append(act.data)
            elif type(act) is Apply:
                if self.merger is not None:
                    self.merger.apply(act.leases, self.table, act.settle)
                self.run(s, Persisted(act.batch), out)

    def pump(self) -> None:
        while self.qa or self.qb:
            if self.qa:
                data = b"".join(self.qa)
                self.qa.clear()
                self.run(self.b, DataReceived(data), self.qb)
            if self.qb:
                data = b"".join(self.qb)
                self.qb.clear()
                self.run(self.a, DataReceived(data), self.qa)

    def connect(self) -> None:
        self.run(self.a, Connected(b"a" * 32, True), self.qa)
        self.run(self.b, Connected(b"b" * 32, False), self.qb)
        self.pump()
        assert self.a.state is State.IN_SYNC and self.b.state is State.IN_SYNC


def bulk_in_memory_s(n: int, merge: bool) -> float:
    p = _Pair([lease(i) for i in range(n)], merge)
    t0 = time.perf_counter()
    p.connect()
    return time.perf_counter() - t0


def live_us_per_lease(batch: int, merge: bool, total: int = 50_000) -> float:
    p = _Pair([], merge)
    p.connect()
    leases = [lease(i) for i in range(total)]
    t0 = time.perf_counter()
    for i in range(0, total, batch):
        p.la.items.extend(leases[i : i + batch])
        p.run(p.a, LocalCommitted(p.la.last_seq), p.qa)
        p.pump()
    return (time.perf_counter() - t0) / total * 1e6


async def loopback(n: int, inflights: tuple[int, ...], commits: int) -> list[str]:
    from test_sync_transport import Node, until

    from appliance.sync.transport import free_port_pair

    out = []
    pa, pb = free_port_pair()
    a, b = Node("deviceA", pa, pb), Node("deviceB", pb, pa)
    for i in range(n):
        a.commit(lease(i))
    await a.link.start()
    t0 = time.perf_counter()
    await b.link.start()
    await until(lambda: a.link.in_sync and b.link.in_sync, 600)
    dt = time.perf_counter() - t0
    assert len(b.h.table) == n
    out.append(f"loopback TCP, snapshot of {n} leases: {dt:.2f}s ({n / dt:,.0f} leases/s)")
    base = n
    for inflight in inflights:
        lat: list[float] = []

        async def client(j: int, base: int = base, lat: list[float] = lat,
                         inflight: int = inflight) -> None:
            for k in range(commits // inflight):
                t = time.perf_counter()
                fut = a.commit(lease(base + j * 100_000 + k, 1.8e9))
                assert fut is not None and await fut
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(client(j) for j in range(inflight)))
        dt = time.perf_counter() - t0
        lat.sort()
        out.append(f"sync mode, {inflight:2d} in flight: {len(lat) / dt:,.0f} acked commits/s,"
                   f" p50 {lat[len(lat) // 2] * 1e6:.0f} us, "
                   f"p99 {lat[int(len(lat) * 0.99)] * 1e6:.0f} us")
        base += inflight * 100_000 + commits
    await a.link.close()
    await b.link.close()
    return out


def test_perf_smoke() -> None:
    assert all(seal_open_us(x, 100, 10) > 0 for x in seals().values())
    assert codec_us_per_lease(10, 100)[1] > 0
    assert bulk_in_memory_s(300, True) > 0
    assert live_us_per_lease(4, True, 40) > 0
    assert len(asyncio.run(loopback(200, (1, 4), 8))) == 3


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print("seal + open one frame, us (body bytes: ACK 12, HEARTBEAT 28, a 1-lease UPDATES "
          "~130, pages up to 256 KiB)")
    sizes = (12, 130, 1200, 16384, 262144)
    print("  " + " " * 20 + "".join(f"{sz:>10}" for sz in sizes))
    for name, seal in seals().items():
        cells = [seal_open_us(seal, sz, 2000 if sz < 20000 else 200) for sz in sizes]
        print(f"  {name:20}" + "".join(f"{us:10.2f}" for us in cells))
    print("codec: encode + seal + open + decode")
    for batch in (1, 10, 100, 1000):
        us, size = codec_us_per_lease(batch)
        print(f"  {batch:4d} leases/frame: {us:6.2f} us/lease, {size:.0f} B/lease")
    print("two sessions back to back, in memory (ACKs included)")
    for merge in (False, True):
        dt = bulk_in_memory_s(n, merge)
        print(f"  snapshot of {n}{' + merge' if merge else ''}: {dt:.2f}s "
              f"({n / dt:,.0f} leases/s)")
    for merge in (False, True):
        for batch in (1, 16, 256):
            us = live_us_per_lease(batch, merge)
            print(f"  live, {batch:3d}/frame{' + merge' if merge else ''}: {us:6.2f} us/lease")
    for line in asyncio.run(loopback(n, (1, 8, 64), 4000)):
        print(" ", line)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:.0f} MB")


if __name__ == "__main__":
    main()
