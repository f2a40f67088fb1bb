"""The sync session's three machines, one matrix per transition table (Kea's
testTransition): the handshake (sync/handshake.py), the inbound stream (sync/inbound.py)
and the outbound stream (sync/outbound.py).

For every (phase, trigger) pair of each table:
- at the machine: an allowed move lands where the table says; any other pair raises the
  table's refusal (FrameError UNEXPECTED for the peer's frames, SessionError for our own
  moves) and changes nothing;
- through a real Session fed by a fake peer, for the peer's triggers: an allowed frame
  is not refused; any other is refused with its named reason, counted
  (refused_unexpected), logged as a warning (SYNC007, rate-limited by the transport),
  the connection closed, and nothing applied.

And docs/sync-protocol.md shows each table as the code has it (regenerate with
DHCP_HOTBACKUP_REGEN=1 .venv/bin/python -m pytest tests/unit/test_sync_phases.py).
"""

from __future__ import annotations

import os
import re
from enum import Enum
from pathlib import Path

import pytest
from test_sync_support import KEY, FakePeer, MemoryNode, mk, nonce

from appliance.sync.frames import (
    Ack,
    Auth,
    BulkBegin,
    BulkEnd,
    BulkKind,
    BulkPage,
    Bye,
    ByeReason,
    Frame,
    FrameCodec,
    FrameError,
    Heartbeat,
    Hello,
    Reason,
    SyncReq,
    Updates,
    auth_key,
    auth_proof,
)
from appliance.sync.handshake import HANDSHAKE, Handshake, HandshakeSide
from appliance.sync.handshake import Trigger as Hs
from appliance.sync.inbound import INBOUND, Inbound, InStream
from appliance.sync.inbound import Trigger as In
from appliance.sync.outbound import OUTBOUND, Outbound, OutStream
from appliance.sync.outbound import Trigger as Out
from appliance.sync.phases import Move, SessionError, Table, Wire
from appliance.sync.session import (
    Apply,
    Connected,
    DataReceived,
    Loss,
    Params,
    State,
    Stats,
)

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "sync-protocol.md"
TABLES: dict[str, Table] = {"HANDSHAKE": HANDSHAKE, "INBOUND": INBOUND, "OUTBOUND": OUTBOUND}


def pairs(table: Table) -> list[tuple[Enum, Enum]]:
    return [(p, t) for p in table.phases for t in table.triggers]


def ids(pair: tuple[Enum, Enum]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


# -- the table type --------------------------------------------------------------------


class _P(Enum):
    A = "a"
    B = "b"


class _T(Enum):
    GO = "go"  # the peer's
    MINE = "mine"  # ours


def test_a_table_refuses_every_pair_it_lacks_by_whose_trigger_it_is() -> None:
    t = Table("demo", _P, _T, [Move(_P.A, _T.GO, _P.B, "go")], peer={_T.GO: "GO in {phase}"})
    assert dict(t) == {(_P.A, _T.GO): _P.B}
    assert t.next(_P.A, _T.GO) is _P.B and t.refusal(_P.A, _T.GO) is None
    with pytest.raises(FrameError) as e:
        t.next(_P.B, _T.GO)
    assert e.value.reason is Reason.UNEXPECTED and e.value.detail == "GO in b"
    for p in _P:
        with pytest.raises(SessionError):
            t.next(p, _T.MINE)


def test_a_table_has_one_row_per_pair() -> None:
    with pytest.raises(ValueError):
        Table("demo", _P, _T, [Move(_P.A, _T.GO, _P.B, "x"), Move(_P.A, _T.GO, _P.A, "y")],
              peer={})


@pytest.mark.parametrize("name", list(TABLES))
def test_every_pair_is_a_move_or_a_named_refusal(name: str) -> None:
    table = TABLES[name]
    for p, t in pairs(table):
        r = table.refusal(p, t)
        assert ((p, t) in table) == (r is None), (p, t)
        if r is not None:
            assert (r.reason is Reason.UNEXPECTED) == (t in table.peer), (p, t)
            assert r.detail


def test_every_phase_is_reached_and_left() -> None:
    for table in TABLES.values():
        start = next(iter(table.phases))
        assert set(table.values()) | {start} == set(table.phases)
        assert {p for p, _t in table} == set(table.phases)


# -- the handshake -------------------------------------------------------------------

PEER_HELLO = Hello("peer", nonce("peer"), 7, 0xFEED, 0, 0)


def hs_side(phase: Handshake) -> HandshakeSide:
    mine = Hello("deviceA", nonce("mine"), 1, 0xE001, 0, 0)
    side = HandshakeSide("deviceA", KEY, auth_key(KEY), mine.nonce, mine)
    if phase is not Handshake.AWAIT_HELLO:
        side.on_hello(PEER_HELLO)
    if phase is Handshake.AUTHENTICATED:
        side.on_auth(Auth(auth_proof(KEY, PEER_HELLO, mine)))
    assert side.phase is phase
    return side


@pytest.mark.parametrize("pair", pairs(HANDSHAKE), ids=ids)
def test_handshake_machine(pair: tuple[Handshake, Hs]) -> None:
    phase, trigger = pair
    side = hs_side(phase)
    before = repr(side)
    if trigger is Hs.HELLO:
        def call() -> object:
            return side.on_hello(Hello("peer", nonce("again"), 7, 0xFEED, 0, 0))
    elif trigger is Hs.AUTH:
        def call() -> object:
            return side.on_auth(Auth(auth_proof(KEY, PEER_HELLO, side.my_hello)))
    elif trigger is Hs.STREAM:
        call = side.on_stream
    else:
        call = side.on_bye
    expected = HANDSHAKE.get(pair)
    if expected is None:
        with pytest.raises(FrameError) as e:
            call()
        assert e.value.reason is Reason.UNEXPECTED
        assert repr(side) == before
    else:
        call()
        assert side.phase is expected


def hs_node(phase: Handshake) -> tuple[MemoryNode, FakePeer]:
    node = MemoryNode("deviceA")
    peer = FakePeer()
    node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
    peer.read(b"".join(node.outbox))
    node.outbox.clear()
    if phase is not Handshake.AWAIT_HELLO:
        node.handle(DataReceived(peer.send_hello()), 0.0)
        peer.read(b"".join(node.outbox))
        node.outbox.clear()
    if phase is Handshake.AUTHENTICATED:
        node.handle(DataReceived(peer.frame(peer.auth())), 0.0)
    c = node.session._c
    assert c is not None and c.hs.phase is phase
    return node, peer


def hs_frame(phase: Handshake, trigger: Hs, peer: FakePeer) -> bytes:
    frame: Frame = {
        Hs.HELLO: Hello("peer", nonce("again"), 7, 0xFEED, 0, 0),
        Hs.AUTH: Auth(bytes(32)),
        Hs.STREAM: Heartbeat(0),
        Hs.BYE: Bye(ByeReason.SHUTDOWN),
    }[trigger]
    if phase is Handshake.AWAIT_HELLO:
        # Before the peer's HELLO only frames under the hello key can be read.
        return peer.send_hello() if trigger is Hs.HELLO else \
            FakePeer(tag="unkeyed").frame(frame)
    if trigger is Hs.AUTH and phase is Handshake.AWAIT_AUTH:
        frame = peer.auth()
    return peer.frame(frame)


# -- through the session: refused with its name, counted, logged, closed -----------------


def assert_refused(node: MemoryNode, applies_before: int) -> None:
    assert node.state is State.DISCONNECTED and node.closed
    assert [r.reason for r in node.refused] == [Reason.UNEXPECTED]
    assert node.stats["refused_unexpected"] == 1
    warned = [g for g in node.logs if g.msg_id == "SYNC007"]
    # warning=True: the transport logs it through its RateLimitedLog
    assert len(warned) == 1 and warned[0].warning and "refused_unexpected" in warned[0].text
    assert [x.how for x in node.losses] == [Loss.REFUSED]
    assert sum(isinstance(a, Apply) for a in node.actions) == applies_before


@pytest.mark.parametrize("pair", pairs(HANDSHAKE), ids=ids)
def test_handshake_through_the_session(pair: tuple[Handshake, Hs]) -> None:
    phase, trigger = pair
    node, peer = hs_node(phase)
    c = node.session._c
    assert c is not None
    applies = sum(isinstance(a, Apply) for a in node.actions)
    node.handle(DataReceived(hs_frame(phase, trigger, peer)), 1.0)
    expected = HANDSHAKE.get(pair)
    if expected is None:
        assert_refused(node, applies)
        assert c.hs.phase is phase
        return
    assert node.refused == [] and node.stats["refused_unexpected"] == 0
    assert c.hs.phase is expected
    if trigger is Hs.BYE:
        assert node.state is State.DISCONNECTED and [x.how for x in node.losses] == [Loss.BYE]
    else:
        assert node.state is not State.DISCONNECTED


# -- the inbound stream ----------------------------------------------------------------

IN_SETUP: dict[Inbound, list[Frame]] = {
    Inbound.WAIT: [],
    Inbound.PAGES: [BulkBegin(BulkKind.SNAPSHOT, 1, 0)],
    Inbound.TAIL: [BulkBegin(BulkKind.DELTA, 0, 0)],
    Inbound.LIVE: [BulkBegin(BulkKind.DELTA, 0, 0), BulkEnd(0)],
}
IN_FRAME: dict[In, Frame] = {
    In.SNAPSHOT: BulkBegin(BulkKind.SNAPSHOT, 1, 0),
    In.DELTA: BulkBegin(BulkKind.DELTA, 0, 0),
    In.PAGE: BulkPage((mk(6, seq=1, origin="peer"),)),
    In.UPDATES: Updates((mk(5, seq=1, origin="peer"),)),
    In.END: BulkEnd(0),
}


def feed_in(s: InStream, f: Frame) -> object:
    if isinstance(f, BulkBegin):
        return s.on_begin(f, 1.0)
    if isinstance(f, BulkPage):
        return s.on_page(f)
    if isinstance(f, Updates):
        return s.on_updates(f)
    assert isinstance(f, BulkEnd)
    return s.on_end(f)


@pytest.mark.parametrize("pair", pairs(INBOUND), ids=ids)
def test_inbound_machine(pair: tuple[Inbound, In]) -> None:
    phase, trigger = pair
    s = InStream(peer_epoch=0xFEED)
    for f in IN_SETUP[phase]:
        feed_in(s, f)
    assert s.phase is phase
    before = repr(s)
    expected = INBOUND.get(pair)
    if expected is None:
        with pytest.raises(FrameError) as e:
            feed_in(s, IN_FRAME[trigger])
        assert e.value.reason is Reason.UNEXPECTED
        assert repr(s) == before
    else:
        feed_in(s, IN_FRAME[trigger])
        assert s.phase is expected


def test_inbound_catch_up_ends_when_bulk_end_is_durable() -> None:
    s = InStream(peer_epoch=0xFEED)
    s.on_begin(BulkBegin(BulkKind.DELTA, 1, 0), 1.0)
    u = s.on_updates(Updates((mk(5, seq=1, origin="peer"),)))
    assert u is not None and u.cursor is None and not u.settle  # inside the catch-up
    s.track(1, u)
    end = s.on_end(BulkEnd(1))
    s.track(2, end)
    assert s.on_persisted(2) is None  # behind batch 1: no ACK may cover it yet
    d = s.on_persisted(1)
    assert d is not None and d.end and d.seq == 1 and d.cursor is not None
    assert s.finish() and s.caught_up and not s.finish()


@pytest.mark.parametrize("pair", pairs(INBOUND), ids=ids)
def test_inbound_through_the_session(pair: tuple[Inbound, In]) -> None:
    phase, trigger = pair
    node = MemoryNode("deviceA")
    peer = FakePeer()
    peer.handshake(node)
    for f in IN_SETUP[phase]:
        peer.send(node, f)
    c = node.session._c
    assert c is not None and c.inb.phase is phase
    applies = sum(isinstance(a, Apply) for a in node.actions)
    held = node.session.held
    peer.send(node, IN_FRAME[trigger], 1.0)
    expected = INBOUND.get(pair)
    if expected is None:
        assert_refused(node, applies)
        assert node.session.held == held and c.inb.phase is phase
    else:
        assert node.refused == [] and node.state is not State.DISCONNECTED
        assert c.inb.phase is expected


# -- the outbound stream -----------------------------------------------------------------

# Small windows, so that each phase holds after the event that enters it.
SMALL = {"page_size": 1, "page_window": 1, "batch_max": 1, "inflight_max": 1}


def out_log_node() -> MemoryNode:
    node = MemoryNode("deviceA", params=Params(**SMALL))  # type: ignore[arg-type]
    for i in range(1, 4):
        node.commit(mk(i))
    return node


def out_req(node: MemoryNode, kind: Out | Outbound) -> SyncReq:
    """The SYNC_REQ that answers with `kind` (a trigger) or leads to `kind` (a phase)."""
    log = node.log
    if kind in (Out.SNAPSHOT, Outbound.PAGES):
        return SyncReq(0, 0)  # another epoch: a snapshot
    if kind in (Out.DELTA, Outbound.TAIL):
        return SyncReq(log.epoch, 0)  # three changes, one at a time
    return SyncReq(log.epoch, log.last_seq)  # nothing to send: BULK_END at once


def out_stream(phase: Outbound, node: MemoryNode | None = None) -> OutStream:
    node = node or out_log_node()
    wire = Wire(FrameCodec(KEY), [], Stats())
    s = OutStream(wire, node.log, frame_budget=256 * 1024, **SMALL)
    if phase is not Outbound.WAIT:
        s.on_sync_req(out_req(node, phase), 0.0)
    assert s.phase is phase
    return s


@pytest.mark.parametrize("pair", pairs(OUTBOUND), ids=ids)
def test_outbound_machine(pair: tuple[Outbound, Out]) -> None:
    phase, trigger = pair
    s = out_stream(phase)
    before = repr(s)
    expected = OUTBOUND.get(pair)
    if trigger is Out.ACK:
        def call() -> object:
            return s.on_ack(Ack(0, 0), 1.0)
    elif trigger in (Out.DELTA, Out.SNAPSHOT):
        req = SyncReq(0, 0) if trigger is Out.SNAPSHOT else SyncReq(s.log.epoch, 0)

        def call() -> object:
            return s.on_sync_req(req, 1.0)
    else:
        # Our own moves happen inside pump(); here the table's guard on the stream.
        def call() -> object:
            return s._move(trigger)
    if expected is None:
        err = FrameError if trigger in OUTBOUND.peer else SessionError
        with pytest.raises(err) as e:
            call()
        if err is FrameError:
            assert e.value.reason is Reason.UNEXPECTED  # type: ignore[attr-defined]
        assert repr(s) == before
    else:
        call()
        assert s.phase is expected


def test_outbound_pages_then_tail_then_live_by_acks() -> None:
    node = out_log_node()
    s = out_stream(Outbound.PAGES, node)
    node.commit(mk(1, hostname="renewed"))  # changes after the snapshot: a tail
    node.commit(mk(9))
    seen = [s.phase]
    for _ in range(20):
        s.on_ack(Ack(s.sent_seq, s.pages_sent), 1.0)
        s.pump(1.0)
        if s.phase is not seen[-1]:
            seen.append(s.phase)
    assert seen == [Outbound.PAGES, Outbound.TAIL, Outbound.LIVE]
    assert s.caught_up


def out_node(phase: Outbound) -> tuple[MemoryNode, FakePeer]:
    """A session authenticated to the fake peer, its outbound stream in `phase`."""
    node = out_log_node()
    peer = FakePeer()
    node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
    peer.read(b"".join(node.outbox))
    node.outbox.clear()
    node.handle(DataReceived(peer.send_hello()), 0.0)
    peer.read(b"".join(node.outbox))
    node.outbox.clear()
    node.handle(DataReceived(peer.frame(peer.auth())), 0.0)
    if phase is not Outbound.WAIT:
        peer.send(node, out_req(node, phase))
    c = node.session._c
    assert c is not None and c.out.phase is phase and node.refused == []
    return node, peer


@pytest.mark.parametrize("pair", [(p, t) for p, t in pairs(OUTBOUND) if t in OUTBOUND.peer],
                         ids=ids)
def test_outbound_through_the_session(pair: tuple[Outbound, Out]) -> None:
    phase, trigger = pair
    node, peer = out_node(phase)
    c = node.session._c
    assert c is not None
    applies = sum(isinstance(a, Apply) for a in node.actions)
    frame: Frame = Ack(0, 0) if trigger is Out.ACK else out_req(node, trigger)
    peer.send(node, frame, 1.0)
    expected = OUTBOUND.get(pair)
    if expected is None:
        assert_refused(node, applies)
        assert c.out.phase is phase
    else:
        assert node.refused == [] and node.state is not State.DISCONNECTED
        assert c.out.phase is expected


# -- the docs show the tables as the code has them ----------------------------------------

MODULES = {"HANDSHAKE": "handshake", "INBOUND": "inbound", "OUTBOUND": "outbound"}


@pytest.mark.parametrize("name", list(TABLES))
def test_module_docstring_names_every_move(name: str) -> None:
    """Each machine's module states its table in its docstring (STYLE.md 3.6), in
    short form ("any", lists of phases): every row must be there."""
    import importlib

    doc = importlib.import_module(f"appliance.sync.{MODULES[name]}").__doc__ or ""
    lines = [f" {ln.strip()} " for ln in doc.splitlines()]
    for m in TABLES[name].rows:
        assert any(f" {m.trigger.value} " in ln and
                   (f" {m.to.name} " in ln or (m.to is m.phase and " (same) " in ln)) and
                   (f" {m.phase.name} " in ln or f" {m.phase.name}," in ln or " any " in ln)
                   for ln in lines), f"{name}: {m.phase.name} --{m.trigger.value}--> " \
            f"{m.to.name} is not in the docstring of sync/{MODULES[name]}.py"


BEGIN = "<!-- {name}: generated from appliance/sync/phases.py Table.markdown() -->"
END = "<!-- end {name} -->"


def _block(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(BEGIN.format(name=name)) + r"\n(.*?)" +
                      re.escape(END.format(name=name)), re.S)


def test_doc_shows_each_table_as_the_code_has_it() -> None:
    text = DOC.read_text()
    if os.environ.get("DHCP_HOTBACKUP_REGEN"):
        for name, table in TABLES.items():
            text = _block(name).sub(lambda _m, n=name, t=table: "\n".join(
                [BEGIN.format(name=n), t.markdown(), END.format(name=n)]), text, count=1)
        DOC.write_text(text)
    for name, table in TABLES.items():
        m = _block(name).search(text)
        assert m, f"docs/sync-protocol.md lost its {name} table markers"
        assert m.group(1) == table.markdown() + "\n", \
            f"docs/sync-protocol.md's {name} table differs from the code: regenerate " \
            "(DHCP_HOTBACKUP_REGEN=1 .venv/bin/python -m pytest tests/unit/test_sync_phases.py)"
