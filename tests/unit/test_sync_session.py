"""Tests of the replication state machine: the transition matrix (every state x every
event kind, and every frame type in every connected state), the delta/snapshot choice,
ACK-after-durable, reconnects, and two sessions back to back (ConnectionPair)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sync_support import (
    KEY,
    ConnectionPair,
    FakePeer,
    MemoryNode,
    fresh_pair,
    mk,
    nonce,
)

from appliance.leases.model import LeaseState
from appliance.sync.changelog import Cursor
from appliance.sync.frames import (
    DEFAULT_MAX_BODY,
    HEADER,
    PREAUTH_MAX_BODY,
    Ack,
    Auth,
    BulkBegin,
    BulkEnd,
    BulkKind,
    BulkPage,
    Bye,
    ByeReason,
    ConfigSummary,
    FrameType,
    Heartbeat,
    Hello,
    Notice,
    NoticeCode,
    Reason,
    SyncReq,
    Updates,
)
from appliance.sync.handshake import Trigger as HsTrigger
from appliance.sync.inbound import Trigger as InTrigger
from appliance.sync.outbound import Trigger as OutTrigger
from appliance.sync.session import (
    HANDSHAKE,
    INBOUND,
    OUTBOUND,
    TRANSITIONS,
    Apply,
    Connected,
    ConnectionLost,
    DataReceived,
    Evidence,
    Handshake,
    Inbound,
    LocalCommitted,
    Loss,
    NoticeRequested,
    Outbound,
    Params,
    Persisted,
    Probe,
    ReportState,
    Session,
    SessionError,
    ShutdownRequested,
    State,
    SummaryChanged,
    Timer,
    TimerFired,
    evidence,
    needs_probe,
)

# -- putting a session in each state ---------------------------------------------------


def in_state(state: State) -> tuple[MemoryNode, FakePeer]:
    node = MemoryNode("deviceA")
    node.commit(mk(1))
    peer = FakePeer()
    if state is State.DISCONNECTED:
        return node, peer
    if state is State.HANDSHAKE:
        node.handle(Connected(node.next_nonce(), outbound=True), 0.0)
        node.outbox.clear()
        return node, peer
    peer.handshake(node)  # the node answers our SYNC_REQ(0, 0) with a snapshot
    if state is State.SYNCING:
        assert node.state is State.SYNCING
        return node, peer
    peer.send(node, BulkBegin(BulkKind.DELTA, 0, 0))
    peer.send(node, BulkEnd(0))
    peer.send(node, Ack(node.log.last_seq, 0))
    assert node.state is State.IN_SYNC
    return node, peer


EVENTS = {
    "connected": Connected(nonce("again"), outbound=True),
    "garbage": DataReceived(b"\x07" * 64),
    "lost_eof": ConnectionLost(Loss.EOF),
    "lost_reset": ConnectionLost(Loss.RESET),
    "lost_timeout": ConnectionLost(Loss.TIMEOUT),
    "lost_error": ConnectionLost(Loss.ERROR),
    "timer_handshake": TimerFired(Timer.HANDSHAKE),
    "timer_heartbeat": TimerFired(Timer.HEARTBEAT),
    "timer_peer_dead": TimerFired(Timer.PEER_DEAD),
    "persisted_unknown": Persisted(10**9),
    "committed": LocalCommitted(99),
    "shutdown": ShutdownRequested(),
    "notice": NoticeRequested(NoticeCode.CLIENT_LINK_DOWN),
}

D, H, S, IS = State.DISCONNECTED, State.HANDSHAKE, State.SYNCING, State.IN_SYNC
E = SessionError
# Expected state after each event (at now=10 s: past the peer-dead interval, within the
# handshake timeout's reach). E: a bug on our side, raises.
MATRIX: dict[str, dict[State, State | type]] = {
    "connected": {D: H, H: E, S: E, IS: E},
    "garbage": {D: D, H: D, S: D, IS: D},
    "lost_eof": {D: D, H: D, S: D, IS: D},
    "lost_reset": {D: D, H: D, S: D, IS: D},
    "lost_timeout": {D: D, H: D, S: D, IS: D},
    "lost_error": {D: D, H: D, S: D, IS: D},
    "timer_handshake": {D: D, H: D, S: S, IS: IS},
    "timer_heartbeat": {D: D, H: H, S: S, IS: IS},
    "timer_peer_dead": {D: D, H: H, S: D, IS: D},
    "persisted_unknown": {D: D, H: H, S: S, IS: IS},
    "committed": {D: D, H: H, S: S, IS: IS},
    "shutdown": {D: D, H: D, S: D, IS: D},
    "notice": {D: D, H: H, S: S, IS: IS},
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(EVENTS))
def test_transition_matrix(state: State, event: str) -> None:
    node, _ = in_state(state)
    expected = MATRIX[event][state]
    before = node.state
    if expected is SessionError:
        with pytest.raises(SessionError):
            node.handle(EVENTS[event], 10.0)
        assert node.state is before
        return
    actions = node.handle(EVENTS[event], 10.0)
    assert node.state is expected
    # Every move the session reports is in the TRANSITIONS table.
    prev = before
    for a in actions:
        if isinstance(a, ReportState):
            assert any(TRANSITIONS.get((prev, t)) is a.state for t in
                       ("connected", "authenticated", "caught_up", "resync", "lost"))
            prev = a.state
    assert prev is node.state


def test_matrix_covers_every_state_and_transition() -> None:
    assert all(set(row) == set(State) for row in MATRIX.values())
    targets = {(s, t) for (s, t) in TRANSITIONS}
    assert all(s in State for s, _ in targets)
    assert set(TRANSITIONS.values()) == set(State)


# Every frame type from a genuine peer in each connected state: accepted (next state)
# or refused (reason), never anything else.
def _frames(node: MemoryNode) -> dict[str, object]:
    return {
        "HELLO": Hello("other", nonce("h2"), 1, 1, 0, 0),
        "AUTH": Auth(bytes(32)),
        "SYNC_REQ": SyncReq(0, 0),
        "UPDATES": Updates((mk(5, seq=1, origin="peer"),)),
        "ACK_UNSENT": Ack(10**6, 0),
        "BULK_BEGIN_DELTA": BulkBegin(BulkKind.DELTA, 0, 0),
        "BULK_BEGIN_SNAPSHOT": BulkBegin(BulkKind.SNAPSHOT, 1, 5),
        "BULK_PAGE": BulkPage((mk(6, seq=2, origin="peer"),)),
        "BULK_END": BulkEnd(0),
        "HEARTBEAT": Heartbeat(3),
        "NOTICE": Notice(NoticeCode.CLIENT_LINK_DOWN, "eth1 down"),
        "BYE": Bye(ByeReason.SHUTDOWN),
        "CONFIG": ConfigSummary(bytes(32), (("pools/lan/lease_time", bytes(8)),)),
    }


U = Reason.UNEXPECTED
FRAME_MATRIX: dict[str, dict[State, State | Reason]] = {
    # HANDSHAKE here is "connected, peer HELLO not yet received": only HELLO and BYE fit.
    "HELLO": {H: H, S: U, IS: U},
    "AUTH": {H: U, S: U, IS: U},
    "SYNC_REQ": {H: U, S: U, IS: U},
    "UPDATES": {H: U, S: U, IS: IS},
    "ACK_UNSENT": {H: U, S: U, IS: U},
    "BULK_BEGIN_DELTA": {H: U, S: S, IS: U},
    "BULK_BEGIN_SNAPSHOT": {H: U, S: S, IS: S},
    "BULK_PAGE": {H: U, S: U, IS: U},
    "BULK_END": {H: U, S: U, IS: U},
    "HEARTBEAT": {H: U, S: S, IS: IS},
    "NOTICE": {H: U, S: S, IS: IS},
    "BYE": {H: D, S: D, IS: D},
    "CONFIG": {H: U, S: S, IS: IS},  # drift only from a peer that authenticated
}


@pytest.mark.parametrize("state", [H, S, IS])
@pytest.mark.parametrize("ftype", list(FRAME_MATRIX))
def test_frame_matrix(state: State, ftype: str) -> None:
    node, peer = in_state(state)
    if state is H:
        peer = FakePeer()  # speaks first, under the hello key
    held_before = node.session.held
    applies_before = sum(isinstance(a, Apply) for a in node.actions)
    node.handle(DataReceived(peer.frame(_frames(node)[ftype])), 1.0)  # type: ignore[arg-type]
    expected = FRAME_MATRIX[ftype][state]
    if isinstance(expected, Reason):
        assert node.state is D
        assert [r.reason for r in node.refused] == [expected]
        assert node.stats[expected.value] == 1
        # Refused input changes nothing but the connection: no Apply, no cursor move.
        assert sum(isinstance(a, Apply) for a in node.actions) == applies_before
        assert node.session.held == held_before
    else:
        assert node.state is expected
        assert node.refused == []


# -- catch-up --------------------------------------------------------------------------


def test_empty_receiver_catches_up_by_snapshot() -> None:
    a, b, pair = fresh_pair(params=Params(page_size=300))
    a.commit_many([mk(i, relay=b"\x01\x04eth1", hostname=f"h{i}") for i in range(1, 2501)])
    pair.connect()
    assert a.state is State.IN_SYNC and b.state is State.IN_SYNC
    assert b.table.by_ip == a.table.by_ip
    assert b.stats["snapshots_received"] == 1 and a.stats["snapshots_sent"] == 1
    assert b.durable_cursor == Cursor(a.log.epoch, a.log.last_seq)
    assert b.session.held == b.durable_cursor
    assert b.session.ready_to_serve
    assert any(lg.msg_id == "SYNC003" and "leases/s" in lg.text for lg in b.logs)
    # a fresh A holds nothing of B's (empty) log either: it got an empty snapshot.
    assert a.session.ready_to_serve


def test_behind_receiver_gets_exactly_the_delta() -> None:
    a, b, pair = fresh_pair()
    a.commit_many([mk(i) for i in range(1, 101)])
    pair.connect()
    pair.drop(Loss.RESET)
    assert b.state is State.DISCONNECTED and b.losses[-1].how is Loss.RESET
    missed = a.commit_many([mk(i, start=2000.0) for i in range(50, 351)])
    n = len(b.applied)
    pair.connect()
    assert b.applied[n:] == missed  # nothing more, nothing less, in order
    assert b.stats["deltas_received"] == 1 and b.stats["snapshots_received"] == 1
    assert b.table.by_ip == a.table.by_ip
    assert a.state is State.IN_SYNC


def test_restarted_receiver_asks_from_its_durable_cursor() -> None:
    a, b, pair = fresh_pair()
    a.commit_many([mk(i) for i in range(1, 201)])
    pair.connect()
    pair.drop(Loss.EOF)
    missed = a.commit_many([mk(i, start=5000.0) for i in range(1, 11)])
    # B's daemon restarts: a new session, the cursor it had made durable.
    b.session = Session("deviceB", KEY, b.log, held=b.durable_cursor, stats=b.stats)
    n = len(b.applied)
    pair.connect()
    assert b.applied[n:] == missed
    assert b.stats["snapshots_received"] == 1  # only the first time


def test_snapshot_when_log_no_longer_reaches_back() -> None:
    a, b, pair = fresh_pair(capacity=50)
    a.commit_many([mk(i) for i in range(1, 11)])
    pair.connect()
    pair.drop()
    a.commit_many([mk(i, start=3000.0) for i in range(1, 201)])  # 200 > capacity
    pair.connect()
    assert b.stats["snapshots_received"] == 2 and b.stats["deltas_received"] == 0
    assert b.table.by_ip == a.table.by_ip


def test_other_epoch_gets_snapshot() -> None:
    a, b, pair = fresh_pair()
    a.commit_many([mk(i) for i in range(1, 11)])
    pair.connect()
    pair.drop()
    a.log.epoch = 0xBAD  # A's database was recreated
    pair.connect()
    assert b.stats["snapshots_received"] == 2


def test_snapshot_pages_are_windowed_by_acks() -> None:
    a, b, pair = fresh_pair(params=Params(page_size=100, page_window=4), auto_persist=False)
    a.commit_many([mk(i) for i in range(1, 1001)])
    pair.connect()
    pages = [x for x in b.unpersisted if x.cursor is None]
    assert len(pages) == 4  # the window, then A waits for ACKs
    assert b.state is State.SYNCING and not b.session.ready_to_serve
    b.persist(limit=1)
    pair.run()
    assert len([x for x in b.unpersisted if x.cursor is None]) == 4  # one acked, one more
    for _ in range(20):
        b.persist()
        a.persist()
        pair.run()
    assert b.state is State.IN_SYNC and b.table.by_ip == a.table.by_ip


def test_snapshot_restart_when_peer_falls_behind_the_log() -> None:
    a, b, pair = fresh_pair(params=Params(inflight_max=50, batch_max=50), capacity=100,
                            auto_persist=False)
    pair.connect()
    for _ in range(5):
        a.persist()
        b.persist()
        pair.run()
    assert a.state is State.IN_SYNC
    a.commit_many([mk(i) for i in range(1, 61)])
    a.handle(LocalCommitted(), 1.0)
    pair.run()
    assert len(b.unpersisted) == 1 and len(b.unpersisted[0].leases) == 50  # window full
    a.commit_many([mk(i) for i in range(61, 301)])  # the log forgets what B still needs
    a.handle(LocalCommitted(), 1.0)
    assert a.stats["snapshot_restarts"] == 0
    for _ in range(30):
        b.persist()
        a.persist()
        pair.run()
    assert a.stats["snapshot_restarts"] == 1
    assert any(lg.msg_id == "SYNC009" for lg in a.logs)
    assert a.state is State.IN_SYNC and b.table.by_ip == a.table.by_ip


# -- live replication and acks ---------------------------------------------------------


def test_live_updates_acked_only_after_persisted() -> None:
    a, b, pair = fresh_pair(auto_persist=False)
    pair.connect()
    for _ in range(3):
        a.persist()
        b.persist()
        pair.run()
    assert a.state is State.IN_SYNC and b.state is State.IN_SYNC
    acks_before = b.stats["acks_sent"]
    lease = a.commit(mk(7, relay=b"\x01\x04eth1\x02\x02ab"))
    a.handle(LocalCommitted(lease.seq), 2.0)
    pair.run(2.0)
    assert [x.leases for x in b.unpersisted] == [(lease,)]
    assert a.released == [] and b.stats["acks_sent"] == acks_before
    assert a.session.progress().lag == 1
    b.persist(2.0)
    pair.run(2.0)
    assert a.released == [lease.seq]
    assert a.session.progress().lag == 0
    assert b.table.get(lease.ip) == lease  # Option 82 bytes and all


def test_live_updates_are_batched() -> None:
    a, b, pair = fresh_pair()
    pair.connect()
    frames_before = a.stats["frames_sent"]
    leases = a.commit_many([mk(i) for i in range(1, 501)])
    a.handle(LocalCommitted(leases[-1].seq), 1.0)
    assert a.stats["frames_sent"] - frames_before == 1  # one UPDATES for 500 changes
    pair.run(1.0)
    assert b.applied[-500:] == leases
    assert a.released[-1] == leases[-1].seq


def test_either_side_streams_after_switchover() -> None:
    a, b, pair = fresh_pair()
    a.commit_many([mk(i) for i in range(1, 21)])
    pair.connect()
    pair.drop()
    # A dies; B becomes active and serves; A returns and must catch up from B first.
    new = b.commit_many([mk(i, start=4000.0) for i in range(30, 41)])
    pair.connect()
    assert a.applied[-len(new):] == new
    assert a.session.ready_to_serve and a.state is State.IN_SYNC
    assert a.table.by_ip == b.table.by_ip


def test_ready_to_serve_gate() -> None:
    a, b, pair = fresh_pair(auto_persist=False)
    a.commit_many([mk(i) for i in range(1, 11)])
    assert not b.session.ready_to_serve  # fresh start: stale until synced
    pair.connect()
    assert not b.session.ready_to_serve  # received, not yet durable
    b.persist()
    pair.run()
    b.persist()
    pair.run()
    assert b.session.ready_to_serve
    pair.drop()
    assert b.session.ready_to_serve  # still holds everything it last knew of
    pair.connect()
    assert not b.session.ready_to_serve  # reconnected: the peer may have moved on


# -- split brain -----------------------------------------------------------------------


def test_split_brain_merge_with_address_conflict() -> None:
    a, b, pair = fresh_pair()
    z = a.commit(mk(20, mac=b"\x02\xaa\x00\x00\x00\x20", start=1000.0))
    pair.connect()
    pair.drop(Loss.TIMEOUT)
    # Both serve while the link is down.
    x = a.commit(mk(10, mac=b"\x02\xaa\x00\x00\x00\x0a", start=2000.0))  # X gets .10 on A
    y = b.commit(mk(10, mac=b"\x02\xbb\x00\x00\x00\x0b", start=2100.0))  # Y gets .10 on B
    z2 = a.commit(replace(z, start=3000.0, expires=6600.0))  # Z renews on A
    b.commit(replace(z, state=LeaseState.RELEASED, expires=1500.0))  # and releases on B
    pair.connect()
    assert a.state is State.IN_SYNC and b.state is State.IN_SYNC
    # Both converge on the same table.
    assert a.view() == b.view()
    # .10: Y's binding expires later, so Y keeps it; X is tombstoned on both.
    assert a.table.get(y.ip).key == y.key
    assert a.table.of_client(x.key) is None and b.table.of_client(x.key) is None
    assert a.merge_counts["conflict_local_lost"] == 1
    assert b.merge_counts["conflict_remote_lost"] == 1
    assert [lost.key for lost in a.losers] == [x.key]
    # Z: the renewal at 3000 is newer than the release of the binding from 1000.
    assert a.table.of_client(z.key) == z2 and b.table.of_client(z.key) == z2


# -- authentication and refusals -------------------------------------------------------


def test_wrong_key_refused_on_both_sides() -> None:
    a = MemoryNode("deviceA", key=b"key one")
    b = MemoryNode("deviceB", key=b"key two")
    a.commit(mk(1))
    pair = ConnectionPair(a, b)
    pair.connect()
    for n in (a, b):
        assert n.state is State.DISCONNECTED
        assert [r.reason for r in n.refused] == [Reason.BAD_AUTH]
        assert n.stats["refused_bad_auth"] == 1
        assert n.losses[-1].how is Loss.REFUSED
        assert not any(isinstance(x, Apply) for x in n.actions)
    assert len(b.table) == 0


def test_name_clash_refused() -> None:
    a = MemoryNode("deviceA")
    b = MemoryNode("deviceA")
    ConnectionPair(a, b).connect()
    assert a.refused[0].reason is Reason.NAME_CLASH


def test_replayed_frame_refused() -> None:
    node, peer = in_state(State.IN_SYNC)
    data = peer.frame(Heartbeat(1))
    node.handle(DataReceived(data), 1.0)
    assert node.state is State.IN_SYNC
    node.handle(DataReceived(data), 1.0)
    assert node.state is State.DISCONNECTED
    assert node.refused[-1].reason is Reason.REPLAY and node.stats["refused_replay"] == 1


def test_frame_from_another_connection_refused() -> None:
    node, peer = in_state(State.IN_SYNC)
    captured = peer.frame(Updates((mk(9, seq=1, origin="peer"),)))
    node.handle(ConnectionLost(Loss.RESET), 1.0)
    node2 = node  # same session, new connection, new nonces
    peer2 = FakePeer(tag="fake2")
    peer2.handshake(node2, 2.0)
    applied = len(node.applied)
    # The frame is genuine but was made under the old connection's keys.
    node2.handle(DataReceived(captured), 2.0)
    assert node2.refused[-1].reason is Reason.BAD_MAC
    assert len(node.applied) == applied


def test_out_of_order_update_seq_refused() -> None:
    node, peer = in_state(State.IN_SYNC)
    peer.send(node, Updates((mk(5, seq=10, origin="peer"),)))
    peer.send(node, Updates((mk(6, seq=9, origin="peer"),)))
    assert node.refused[-1].reason is Reason.UNEXPECTED


def test_bad_auth_proof_refused() -> None:
    node = MemoryNode("deviceA")
    peer = FakePeer()
    node.handle(Connected(node.next_nonce(), outbound=True), 0.0)
    peer.read(b"".join(node.outbox))
    node.outbox.clear()
    node.handle(DataReceived(peer.send_hello()), 0.0)
    peer.read(b"".join(node.outbox))
    node.handle(DataReceived(peer.frame(Auth(b"\x00" * 32))), 0.0)
    assert node.refused[-1].reason is Reason.BAD_AUTH


# -- timers, notices, drift, shutdown --------------------------------------------------


def test_heartbeat_and_peer_dead_timeout() -> None:
    a, b, pair = fresh_pair(params=Params(heartbeat_s=1.0, dead_after_s=3.0))
    pair.connect(0.0)
    assert a.timers[Timer.HEARTBEAT] == 1.0 and a.timers[Timer.PEER_DEAD] == 3.0
    a.handle(TimerFired(Timer.HEARTBEAT), 1.0)
    assert a.outbox  # a HEARTBEAT
    pair.run(1.0)
    b.handle(TimerFired(Timer.PEER_DEAD), 3.0)  # heard from A at 1.0: not dead yet
    assert b.state is State.IN_SYNC and b.timers[Timer.PEER_DEAD] == 4.0
    b.handle(TimerFired(Timer.PEER_DEAD), 4.0)
    assert b.state is State.DISCONNECTED and b.losses[-1].how is Loss.TIMEOUT
    assert b.stats["lost_timeout"] == 1


def test_handshake_timeout() -> None:
    node = MemoryNode("deviceA")
    node.handle(Connected(node.next_nonce(), True), 0.0)
    assert node.timers[Timer.HANDSHAKE] == 2.0  # an unauthenticated connection is short
    node.handle(TimerFired(Timer.HANDSHAKE), 2.0)
    assert node.state is State.DISCONNECTED and node.losses[-1].how is Loss.TIMEOUT


def test_notice_is_delivered() -> None:
    a, b, pair = fresh_pair()
    pair.connect()
    a.handle(NoticeRequested(NoticeCode.CLIENT_LINK_DOWN, "eth1 carrier lost"), 1.0)
    pair.run(1.0)
    assert [(n.code, n.detail) for n in b.notices] == [(1, "eth1 carrier lost")]


def test_config_drift_names_settings() -> None:
    a = MemoryNode("deviceA", summary=(("pools/lan/lease_time", "3600"),
                                       ("pools/lan/range", "192.0.2.100-192.0.2.199")))
    b = MemoryNode("deviceB", summary=(("pools/lan/lease_time", "7200"),
                                       ("pools/lan/range", "192.0.2.100-192.0.2.199"),
                                       ("pools/lan/reservations/02:00:00:00:00:01",
                                        "192.0.2.50")))
    ConnectionPair(a, b).connect()
    expected = ("pools/lan/lease_time", "pools/lan/reservations/02:00:00:00:00:01")
    assert a.drift == expected and b.drift == expected
    assert a.state is State.IN_SYNC  # drift is reported, not fatal
    c, d, pair = fresh_pair()
    pair.connect()
    assert c.drift == () and d.drift == ()


def test_shutdown_says_bye() -> None:
    a, b, pair = fresh_pair()
    pair.connect()
    a.handle(ShutdownRequested(), 1.0)
    pair.run(1.0)
    assert a.losses[-1].how is Loss.LOCAL
    assert b.losses[-1].how is Loss.BYE and b.state is State.DISCONNECTED


def test_eof_without_bye_is_distinguished() -> None:
    _, b, pair = fresh_pair()
    pair.connect()
    b.handle(ConnectionLost(Loss.EOF), 1.0)
    assert b.losses[-1].how is Loss.EOF and b.stats["lost_eof"] == 1


def test_tcp_may_cut_anywhere() -> None:
    a2, b2, pair2 = fresh_pair(params=Params(page_size=64))
    a2.commit_many([mk(i, hostname="x" * (i % 40)) for i in range(1, 600)])
    for n in (a2, b2):
        n.handle(Connected(n.next_nonce(), n is a2), 0.0)
    pair2.run(chunk=7)
    assert b2.table.by_ip == a2.table.by_ip and b2.state is State.IN_SYNC


def test_session_refuses_own_bugs() -> None:
    node = MemoryNode("deviceA")
    with pytest.raises(SessionError):
        node.handle(Connected(b"short", True), 0.0)
    with pytest.raises(SessionError):
        node.handle("not an event", 0.0)  # type: ignore[arg-type]
    assert node.state is State.DISCONNECTED


def test_progress_counts() -> None:
    a, b, pair = fresh_pair(auto_persist=False, params=Params(page_size=10))
    a.commit_many([mk(i) for i in range(1, 101)])
    pair.connect(0.0)
    p = b.session.progress()
    assert p.state is State.SYNCING and p.in_kind is BulkKind.SNAPSHOT
    assert p.in_total == 100 and p.in_received == 80  # 8 pages in the window
    assert a.session.progress().out_sent == 80
    for _ in range(10):
        b.persist(2.0)
        a.persist(2.0)
        pair.run(2.0)
    p = b.session.progress()
    assert p.state is State.IN_SYNC and p.in_kind is None and p.held.seq == a.log.last_seq
    assert p.in_rate(2.0) == pytest.approx(50.0)


# -- split brain through the whole protocol (property) ---------------------------------

_split_ops = st.lists(st.tuples(st.sampled_from(["bind", "bind", "release"]),
                                st.integers(0, 4), st.integers(0, 3), st.integers(0, 20)),
                      max_size=15)


def _serve(node: MemoryNode, ops, clock: float) -> None:
    for op, c, a, dt in ops:
        clock += dt
        mac = b"\x02\xcc\x00\x00\x00" + bytes([c])
        cur = node.table.of_client(mac)
        held = node.table.get(mk(a).ip)
        if op == "bind":
            if held is not None and held.key != mac and held.state in (
                    LeaseState.BOUND, LeaseState.DECLINED):
                continue  # the server never hands out an address it shows held
            node.commit(mk(a, mac=mac, start=clock, lease_time=120.0))
        elif cur is not None and cur.state == LeaseState.BOUND:
            node.commit(replace(cur, state=LeaseState.RELEASED, expires=clock))


@settings(max_examples=150, deadline=None)
@given(before=_split_ops, on_a=_split_ops, on_b=_split_ops,
       page=st.sampled_from([1, 2, 1000]))
def test_split_brain_heals_to_one_table(before, on_a, on_b, page) -> None:
    a, b, pair = fresh_pair(params=Params(page_size=page, batch_max=page))
    _serve(a, before, 1000.0)
    pair.connect()
    pair.drop(Loss.TIMEOUT)
    _serve(a, on_a, 2000.0)  # both serve while the link is down
    _serve(b, on_b, 2000.0)
    pair.connect()
    assert a.state is State.IN_SYNC and b.state is State.IN_SYNC
    bound_a = {k: v for k, v in a.view().items() if v[1] == LeaseState.BOUND}
    bound_b = {k: v for k, v in b.view().items() if v[1] == LeaseState.BOUND}
    assert bound_a == bound_b
    clients = [v[0] for v in bound_a.values()]
    assert len(clients) == len(set(clients))  # no client on two addresses


# -- version 2: drift after authentication, limits before it, old peers -------------------


def test_a_replayed_hello_never_touches_drift() -> None:
    """HELLO carries no config (it is sent in clear, before any key): drift comes from
    CONFIG, which is only read from a peer that authenticated."""
    node = MemoryNode("deviceA")
    peer = FakePeer()
    node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
    peer.read(b"".join(node.outbox))  # the peer derives the keys from our HELLO
    node.handle(DataReceived(peer.send_hello()), 0.0)
    assert node.drift is None and node.state is State.HANDSHAKE
    # A genuine, encrypted CONFIG, but before AUTH: refused, drift untouched.
    node.handle(DataReceived(peer.frame(ConfigSummary(bytes(32), (("x", bytes(8)),)))), 0.0)
    assert node.drift is None and node.refused[-1].reason is Reason.UNEXPECTED
    # A whole HELLO replayed on a new connection: the peer cannot answer the challenge.
    node.handle(Connected(node.next_nonce(), outbound=False), 1.0)
    node.handle(DataReceived(peer.send_hello()), 1.0)
    node.handle(TimerFired(Timer.HANDSHAKE), 3.0)
    assert node.drift is None and node.losses[-1].how is Loss.TIMEOUT
    assert not [x for x in node.logs if x.msg_id == "SYNC006"]


def test_frames_are_small_until_the_peer_authenticates() -> None:
    node = MemoryNode("deviceA")
    node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
    node.handle(DataReceived(HEADER.pack(2, FrameType.HELLO, 0, PREAUTH_MAX_BODY + 1, 0)), 0.0)
    assert node.refused[-1].reason is Reason.OVERSIZED and node.state is State.DISCONNECTED
    a, b, pair = fresh_pair()
    pair.a.handle(Connected(a.next_nonce(), outbound=True), 0.0)
    assert a.session._c.codec.max_body == PREAUTH_MAX_BODY  # type: ignore[union-attr]
    pair.b.handle(Connected(b.next_nonce(), outbound=False), 0.0)
    pair.run()
    assert a.session._c.codec.max_body == DEFAULT_MAX_BODY  # type: ignore[union-attr]


def test_a_version_1_peer_is_refused_with_its_own_reason() -> None:
    node = MemoryNode("deviceA")
    node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
    v1_hello = HEADER.pack(1, FrameType.HELLO, 0, 200, 0) + bytes(232)
    node.handle(DataReceived(v1_hello), 0.0)
    assert node.refused[-1].reason is Reason.OLD_VERSION
    assert node.stats["refused_old_version"] == 1
    line = next(x for x in node.logs if x.msg_id == "SYNC012")
    assert "Upgrade both devices" in line.text and line.warning


def test_reload_sends_the_new_summary_on_the_live_connection() -> None:
    a, b, pair = fresh_pair()
    pair.connect()
    assert a.drift == () and b.drift == ()
    a.handle(SummaryChanged((("pools/lan/lease_time", "7200"),
                             ("pools/lan/range", "192.0.2.100-192.0.2.199"),
                             ("vrrp/virtual_ip", "192.0.2.1/24"))), 1.0)
    pair.run(1.0)
    assert b.drift == ("pools/lan/lease_time",)
    assert a.state is State.IN_SYNC and b.state is State.IN_SYNC


# -- the time exchange ---------------------------------------------------------------------


def test_skew_is_measured_and_alarms_past_the_bound() -> None:
    a = MemoryNode("deviceA", clock_offset=0.0, max_skew_s=1.0)
    b = MemoryNode("deviceB", clock_offset=86_400.0, max_skew_s=1.0)  # a day ahead
    pair = ConnectionPair(a, b)
    pair.connect()
    # The heartbeat each side sends on authentication is the first sample.
    assert a.skew.skew_ms == pytest.approx(86_400_000, abs=1)
    assert b.skew.skew_ms == pytest.approx(-86_400_000, abs=1)
    assert a.skew.alarm and b.skew.alarm
    assert a.clocks[-1].alarm_changed is True
    raised = next(x for x in a.logs if x.msg_id == "SYNC040")
    assert raised.warning and "+86400000 ms" in raised.text
    # B's NTP steps its clock back: the next heartbeats clear the alarm, once.
    b.clock_offset = 0.2
    for t in (1.0, 2.0, 3.0):
        for n in (a, b):
            n.handle(TimerFired(Timer.HEARTBEAT), t)
        pair.run(t)
    # A keeps the sample with the smallest round trip: here all are 0, the newest wins.
    assert a.skew.skew_ms == pytest.approx(200, abs=1) and not a.skew.alarm
    assert [x.msg_id for x in a.logs if x.msg_id in ("SYNC040", "SYNC041")] == \
        ["SYNC040", "SYNC041"]
    assert a.stats["clock_samples"] >= 3


def test_heartbeats_keep_flowing_under_load() -> None:
    """A HEARTBEAT goes out every heartbeat_s even while UPDATES stream: the skew
    stays current under load."""
    a, _b, pair = fresh_pair()
    pair.connect()
    for t in range(1, 6):
        a.commit(mk(100 + t))
        a.handle(LocalCommitted(), float(t) - 0.01)  # traffic just before the timer
        a.outbox.clear()
        a.handle(TimerFired(Timer.HEARTBEAT), float(t))
        sent = b"".join(a.outbox)
        assert sent[1] == FrameType.HEARTBEAT, t
        a.outbox.clear()
        assert a.timers[Timer.HEARTBEAT] == float(t) + 1.0


def test_no_wall_clock_no_stamps() -> None:
    a, _b, pair = fresh_pair()  # MemoryNode without clock_offset: wall None
    pair.connect()
    assert a.skew.skew_ms is None and not a.clocks


# -- evidence of the peer's death ---------------------------------------------------------


@pytest.mark.parametrize("how", list(Loss))
@pytest.mark.parametrize("probe", [None, *Probe])
def test_evidence_rule(how: Loss, probe: Probe | None) -> None:
    got = evidence(how, probe)
    if how in (Loss.EOF, Loss.RESET):
        assert needs_probe(how)
        want = {Probe.REFUSED: Evidence.DIED, Probe.ANSWERED: Evidence.ALIVE,
                Probe.SILENT: Evidence.NONE, None: Evidence.NONE}[probe]
    else:
        # BYE, silence, a refusal, our own close: never evidence, whatever a probe says.
        assert not needs_probe(how)
        want = Evidence.NONE
    assert got is want


# -- the three machines of a connection: handshake, inbound stream, outbound stream -------

IN_PHASE_SETUP: dict[Inbound, list] = {
    Inbound.WAIT: [],
    Inbound.PAGES: [BulkBegin(BulkKind.SNAPSHOT, 1, 0)],
    Inbound.TAIL: [BulkBegin(BulkKind.DELTA, 0, 0)],
    Inbound.LIVE: [BulkBegin(BulkKind.DELTA, 0, 0), BulkEnd(0)],
}
IN_TRIGGER_FRAME = {
    InTrigger.SNAPSHOT: BulkBegin(BulkKind.SNAPSHOT, 1, 0),
    InTrigger.DELTA: BulkBegin(BulkKind.DELTA, 0, 0),
    InTrigger.PAGE: BulkPage((mk(6, seq=1, origin="peer"),)),
    InTrigger.UPDATES: Updates((mk(5, seq=1, origin="peer"),)),
    InTrigger.END: BulkEnd(0),
}


@pytest.mark.parametrize("phase", list(Inbound))
@pytest.mark.parametrize("trigger", list(InTrigger))
def test_inbound_matrix(phase: Inbound, trigger: InTrigger) -> None:
    """Every frame of the peer's stream in every inbound phase: the move INBOUND names,
    or refused (UNEXPECTED) and the connection closed, with nothing applied."""
    node = MemoryNode("deviceA")
    peer = FakePeer()
    peer.handshake(node)
    for f in IN_PHASE_SETUP[phase]:
        peer.send(node, f)
    c = node.session._c
    assert c is not None and c.inb.phase is phase
    applies = sum(isinstance(a, Apply) for a in node.actions)
    peer.send(node, IN_TRIGGER_FRAME[trigger], 1.0)
    expected = INBOUND.get((phase, trigger))
    if expected is None:
        assert node.refused[-1].reason is Reason.UNEXPECTED
        assert node.state is State.DISCONNECTED
        assert sum(isinstance(a, Apply) for a in node.actions) == applies
    else:
        assert not node.refused and c.inb.phase is expected


def test_inbound_table_reaches_every_phase_and_live_only_by_end() -> None:
    assert {to for to in INBOUND.values()} == set(Inbound) - {Inbound.WAIT}
    assert {(f, t) for (f, t), to in INBOUND.items() if to is Inbound.LIVE} == \
        {(Inbound.PAGES, InTrigger.END), (Inbound.TAIL, InTrigger.END),
         (Inbound.LIVE, InTrigger.UPDATES)}


@pytest.mark.parametrize("phase", list(Handshake))
@pytest.mark.parametrize("trigger", [HsTrigger.HELLO, HsTrigger.AUTH])
def test_handshake_matrix(phase: Handshake, trigger: HsTrigger) -> None:
    node = MemoryNode("deviceA")
    peer = FakePeer()
    node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
    peer.read(b"".join(node.outbox))
    node.outbox.clear()
    if phase is not Handshake.AWAIT_HELLO:
        node.handle(DataReceived(peer.send_hello()), 0.0)
    if phase is Handshake.AUTHENTICATED:
        node.handle(DataReceived(peer.frame(peer.auth())), 0.0)
    c = node.session._c
    assert c is not None and c.hs.phase is phase
    hello = trigger is HsTrigger.HELLO
    frame = Hello("peer", nonce("again"), 1, 1, 0, 0) if hello else peer.auth()
    if phase is Handshake.AWAIT_HELLO:
        # Before the peer's HELLO only HMAC-sealed frames can be read: a peer that has
        # not derived keys yet sends them.
        data = peer.send_hello() if hello else \
            FakePeer(tag="unkeyed").frame(Auth(bytes(32)))
    else:
        data = peer.frame(frame)
    node.handle(DataReceived(data), 1.0)
    expected = HANDSHAKE.get((phase, trigger))
    if expected is None:
        assert node.refused[-1].reason is Reason.UNEXPECTED
    else:
        assert not node.refused and c.hs.phase is expected


@pytest.mark.parametrize("phase", list(Outbound))
@pytest.mark.parametrize("trigger", [OutTrigger.RESTART, OutTrigger.PAGES_SENT,
                                     OutTrigger.END_SENT])
def test_outbound_table(phase: Outbound, trigger: OutTrigger) -> None:
    """Our own stream's moves: one the table lacks is our bug (SessionError)."""
    expected = OUTBOUND.get((phase, trigger))
    if expected is None:
        with pytest.raises(SessionError):
            OUTBOUND.next(phase, trigger)
    else:
        assert OUTBOUND.next(phase, trigger) is expected


def test_a_snapshot_restart_moves_through_the_outbound_table() -> None:
    """The log overruns a live peer: LIVE -> PAGES -> TAIL -> LIVE, each a table move."""
    a = MemoryNode("deviceA", capacity=4)
    b = MemoryNode("deviceB", capacity=4)
    pair = ConnectionPair(a, b)
    pair.connect()
    c = a.session._c
    assert c is not None and c.out.phase is Outbound.LIVE
    b.auto_persist = False  # B stops acknowledging: A's log runs past it
    for i in range(10):
        a.commit(mk(20 + i))
    a.handle(LocalCommitted(), 1.0)
    pair.run(1.0)
    b.auto_persist = True
    b.persist(1.0)
    pair.run(1.0)
    assert a.stats["snapshot_restarts"] + a.stats["snapshots_sent"] >= 1
    assert c.out.phase is Outbound.LIVE
