"""Test helpers for the sync tests: lease factories, an in-memory node (LeaseTable +
RingLog + Session + merge rules), ConnectionPair (two sessions back to back, h11-style)
and FakePeer (appliance.testing.peers.FakeSyncPeer: a scripted peer that speaks the real
wire format, ExaBGP-style).

Pure and fast: no sockets, no clock. Imported by the other test_sync_* modules; it holds
one self-test so that pytest collecting it is not an empty module.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from appliance.leases.model import Lease, LeaseState
from appliance.leases.table import LeaseTable
from appliance.sync.changelog import Cursor, RingLog
from appliance.sync.merge import Merger
from appliance.sync.session import (
    Action,
    Apply,
    Close,
    Connected,
    ConnectionLost,
    DataReceived,
    DeliverNotice,
    Event,
    Log,
    Loss,
    Params,
    Persisted,
    Refuse,
    ReleaseAcked,
    ReportClock,
    ReportDrift,
    ReportLoss,
    Send,
    Session,
    StartTimer,
    State,
    Stats,
)
from appliance.sync.skew import SkewTracker
from appliance.testing.peers import FakeSyncPeer, nonce

NOTHING = Cursor()
KEY = b"correct horse battery staple, 32b"
WALL0 = 1_700_000_000.0  # a node's wall clock is WALL0 + now + its clock_offset
BASE_IP = 0xC0000200  # 192.0.2.0
SUMMARY = (("pools/lan/lease_time", "3600"), ("pools/lan/range", "192.0.2.100-192.0.2.199"),
           ("vrrp/virtual_ip", "192.0.2.1/24"))


def mk(n: int, *, start: float = 1000.0, lease_time: float = 3600.0,
       state: LeaseState = LeaseState.BOUND, mac: bytes | None = None, seq: int = 0,
       origin: str = "", hostname: str | None = None, relay: bytes | None = None,
       client_id: bytes | None = None) -> Lease:
    """Lease for 192.0.2.<n>, client MAC 02:00:00:00:<n> unless given."""
    return Lease(ip=BASE_IP + n, mac=mac if mac is not None else b"\x02\x00\x00\x00" +
                 n.to_bytes(2, "big"), client_id=client_id, state=state, start=start,
                 expires=start + lease_time, pool="lan", hostname=hostname, relay_info=relay,
                 seq=seq, origin=origin)


class MemoryNode:
    """One device: table, change log, session, and a durable store that is only
    updated when a Persisted is due (auto_persist) or when the test says so."""

    _epochs = 0

    def __init__(self, name: str, *, key: bytes = KEY, epoch: int | None = None,
                 params: Params | None = None, capacity: int = 1 << 16,
                 summary: tuple[tuple[str, str], ...] = SUMMARY,
                 auto_persist: bool = True, held: Cursor = NOTHING, boot_id: int = 1,
                 clock_offset: float | None = None, max_skew_s: float = 1.0) -> None:
        MemoryNode._epochs += 1
        self.name = name
        self.table = LeaseTable(origin=name)
        self.log = RingLog(epoch if epoch is not None else 0xE000 + MemoryNode._epochs,
                           self.table, capacity=capacity)
        self.stats = Stats()
        self.skew = SkewTracker(max_skew_s)
        self.session = Session(name, key, self.log, held=held, summary=summary,
                               boot_id=boot_id, params=params or Params(), stats=self.stats,
                               skew=self.skew)
        # None: no wall clock (no time stamps); else how far this node's clock is off
        self.clock_offset = clock_offset
        self.auto_persist = auto_persist
        self.outbox: list[bytes] = []
        self.closed = False
        self.unpersisted: list[Apply] = []
        self.durable_cursor = held
        self.applied: list[Lease] = []  # every lease received, in order
        self.merge_counts: Counter[str] = Counter()
        self.merger = Merger()
        self.losers: list[Lease] = []
        self.actions: list[Action] = []
        self.refused: list[Refuse] = []
        self.losses: list[ReportLoss] = []
        self.drift: tuple[str, ...] | None = None
        self.notices: list[DeliverNotice] = []
        self.released: list[int] = []
        self.timers: dict[object, float] = {}
        self.logs: list[Log] = []
        self.clocks: list[ReportClock] = []
        self._nonces = 0

    # -- the daemon side -------------------------------------------------------------
    def commit(self, lease: Lease) -> Lease:
        cur = self.table.get(lease.ip)
        if cur is not None and cur.key != lease.key and self.table.of_client(cur.key) is cur:
            self.merger.remember(cur)  # what the daemon does when it reuses an address
        out = self.table.commit(lease)
        self.log.append(out)
        return out

    def commit_many(self, leases: list[Lease]) -> list[Lease]:
        return [self.commit(lease) for lease in leases]

    def store_apply(self, a: Apply) -> None:
        self.applied.extend(a.leases)
        report = self.merger.apply(a.leases, self.table, a.settle)
        self.merge_counts.update(report.counts)
        self.losers.extend(report.losers)
        if a.cursor is not None:
            self.durable_cursor = a.cursor

    def persist(self, now: float = 0.0, limit: int | None = None) -> None:
        """Report the oldest unpersisted applies durable."""
        todo = self.unpersisted[:limit] if limit is not None else list(self.unpersisted)
        del self.unpersisted[: len(todo)]
        for a in todo:
            self.store_apply(a)
            self.handle(Persisted(a.batch), now)

    def view(self) -> dict[int, tuple]:
        """What clients see: address -> (client key, state, expires) for holding leases."""
        return {ip: (lease.key, lease.state, lease.expires)
                for ip, lease in self.table.by_ip.items()}

    # -- the transport side ----------------------------------------------------------
    def next_nonce(self) -> bytes:
        self._nonces += 1
        return nonce(f"{self.name}/{self._nonces}")

    def handle(self, event: Event, now: float = 0.0, wall: float | None = None,
               ) -> list[Action]:
        if wall is None and self.clock_offset is not None:
            wall = WALL0 + now + self.clock_offset
        actions = self.session.handle(event, now, wall)
        self.actions.extend(actions)
        persisted = []
        for a in actions:
            if isinstance(a, Send):
                self.outbox.append(a.data)
            elif isinstance(a, Apply):
                if self.auto_persist:
                    self.store_apply(a)
                    persisted.append(a.batch)
                else:
                    self.unpersisted.append(a)
            elif isinstance(a, Close):
                self.closed = True
            elif isinstance(a, Refuse):
                self.refused.append(a)
            elif isinstance(a, ReportLoss):
                self.losses.append(a)
            elif isinstance(a, ReportDrift):
                self.drift = a.paths
            elif isinstance(a, DeliverNotice):
                self.notices.append(a)
            elif isinstance(a, ReleaseAcked):
                self.released.append(a.seq)
            elif isinstance(a, StartTimer):
                self.timers[a.timer] = a.deadline
            elif isinstance(a, Log):
                self.logs.append(a)
            elif isinstance(a, ReportClock):
                self.clocks.append(a)
        for b in persisted:
            self.handle(Persisted(b), now, wall)
        return actions

    @property
    def state(self) -> State:
        return self.session.state


class ConnectionPair:
    """Two nodes wired back to back: bytes one sends are fed to the other."""

    def __init__(self, a: MemoryNode, b: MemoryNode) -> None:
        self.a, self.b = a, b

    def connect(self, now: float = 0.0) -> None:
        for n in (self.a, self.b):
            n.outbox.clear()
            n.closed = False
        self.a.handle(Connected(self.a.next_nonce(), outbound=True), now)
        self.b.handle(Connected(self.b.next_nonce(), outbound=False), now)
        self.run(now)

    def run(self, now: float = 0.0, max_rounds: int = 100_000, chunk: int | None = None,
            ) -> None:
        """Deliver bytes both ways until nothing moves. `chunk` splits deliveries into
        pieces of that many bytes (TCP may cut anywhere)."""
        for _ in range(max_rounds):
            moved = False
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                if src.outbox:
                    data = b"".join(src.outbox)
                    src.outbox.clear()
                    moved = True
                    if dst.state is State.DISCONNECTED:
                        continue
                    if chunk:
                        for i in range(0, len(data), chunk):
                            dst.handle(DataReceived(data[i : i + chunk]), now)
                    else:
                        dst.handle(DataReceived(data), now)
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                if src.closed and not src.outbox and dst.state is not State.DISCONNECTED:
                    dst.handle(ConnectionLost(Loss.EOF), now)
                    moved = True
            if not moved:
                return
        raise AssertionError("pair did not settle")

    def drop(self, how: Loss = Loss.RESET, now: float = 0.0) -> None:
        """The link breaks: both sides see the loss, bytes in flight are lost."""
        for n in (self.a, self.b):
            n.outbox.clear()
            if n.state is not State.DISCONNECTED:
                n.handle(ConnectionLost(how), now)


class FakePeer(FakeSyncPeer):
    """The shipped fake peer (appliance/testing/peers.py) with the tests' key."""

    def __init__(self, name: str = "peer", key: bytes = KEY, *, epoch: int = 0xFEED,
                 last_seq: int = 0, tag: str = "fake") -> None:
        super().__init__(name, key, epoch=epoch, last_seq=last_seq, tag=tag)


def fresh_pair(**kw) -> tuple[MemoryNode, MemoryNode, ConnectionPair]:
    a = MemoryNode("deviceA", **kw)
    b = MemoryNode("deviceB", **kw)
    return a, b, ConnectionPair(a, b)


def test_support_pair_settles() -> None:
    a, b, pair = fresh_pair()
    pair.connect()
    assert a.state is State.IN_SYNC and b.state is State.IN_SYNC
    assert replace(mk(1), seq=3).seq == 3
