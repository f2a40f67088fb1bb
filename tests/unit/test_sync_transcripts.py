"""Frame transcripts (ExaBGP's .msg idea): recorded conversations between a session and a
scripted peer, byte for byte, in tests/unit/sync_transcripts/*.msg.

Two checks per transcript:
- the recording is regenerated and must equal the file: the wire format (layout, key
  derivation, MACs) cannot change by accident;
- the file is replayed against a fresh session, the peer's lines fed in, ours compared:
  the fake peer is driven from the transcript, not from code.

Line format: `> hex` a frame the session under test sends, `< hex` a frame the peer
sends, `! event` an event given to the session (persisted N | commit IP | replay), `=`
the session's state after the previous line, `#` comments (the decoded frame follows
each frame line as a comment). Every event is given at wall clock WALL + 1 s, so the
time stamps of HELLO and HEARTBEAT are fixed too. Regenerate after a deliberate wire
change (and say so in the commit) with
    DHCP_HOTBACKUP_REGEN=1 .venv/bin/python -m pytest tests/unit/test_sync_transcripts.py
Wire version 2 (encrypted frames) was recorded that way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_sync_support import MemoryNode, mk

from appliance.leases.model import LeaseState
from appliance.sync.changelog import Cursor
from appliance.sync.frames import (
    DEFAULT_MAX_BODY,
    HEADER_LEN,
    Ack,
    Auth,
    BulkBegin,
    BulkEnd,
    BulkKind,
    ConfigSummary,
    Frame,
    Heartbeat,
    Hello,
    SyncReq,
    auth_proof,
    direction_key,
    frame_size,
)
from appliance.sync.session import (
    Connected,
    DataReceived,
    LocalCommitted,
    Params,
    Persisted,
    State,
)
from appliance.testing.peers import FakeSyncPeer

DIR = Path(__file__).parent / "sync_transcripts"
KEY = b"transcript key, not a secret: 32"
EPOCH_A, EPOCH_B = 0xA0A0A0A0, 0xB0B0B0B0
WALL = 1_700_000_000.0  # the wall clock of every event, plus `now` (1 s)


def split_frames(data: bytes, hello_first: bool = False) -> list[bytes]:
    """Cut a byte stream into frames; `hello_first`: it begins with a side's HELLO (the
    one frame with an HMAC trailer instead of an AEAD tag)."""
    out = []
    pos = 0
    while pos < len(data):
        end = pos + frame_size(data[pos : pos + HEADER_LEN], hello_first and not out)
        out.append(data[pos:end])
        pos = end
    return out


def describe(f: Frame) -> str:
    name = type(f).__name__.upper()
    if hasattr(f, "leases"):
        seqs = [x.seq for x in f.leases]  # type: ignore[union-attr]
        return f"{name} {len(seqs)} leases seq {seqs}"
    if isinstance(f, Hello):
        return f"HELLO node={f.node} epoch={f.epoch:#x} last_seq={f.last_seq} wall_us={f.wall_us}"
    if isinstance(f, Auth):
        return "AUTH"
    if isinstance(f, ConfigSummary):
        return f"CONFIG {[p for p, _d in f.summary]}"
    return repr(f)


def node_under_test(held: Cursor) -> MemoryNode:
    n = MemoryNode("deviceA", key=KEY, epoch=EPOCH_A, params=Params(), auto_persist=False,
                   held=held, summary=(("pools/lan/lease_time", "3600"),))
    for i in (1, 2, 3):
        n.commit(mk(i, start=1000.0 + i, relay=b"\x01\x04eth1", hostname=f"pc{i}"))
    return n


class ScriptPeer(FakeSyncPeer):
    """deviceB (the shipped fake peer, appliance.testing.peers), with a fixed nonce:
    records what it sends and what it reads."""

    def __init__(self) -> None:
        super().__init__("deviceB", KEY, epoch=EPOCH_B, tag="transcript/deviceB", boot_id=2,
                         wall_us=int((WALL + 1) * 1e6))
        self.lines: list[str] = []
        self.last_sent = b""
        self.read_hello = False

    def read(self, data: bytes) -> list[Frame]:
        frames = []
        first = not self.read_hello
        self.read_hello = True
        for raw in split_frames(data, first):
            self.codec.feed(raw)
            f = self.codec.next_frame()
            assert f is not None
            if isinstance(f, Hello):
                self.peer_hello = f
            frames.append(f)
            self.lines.append(f"> {raw.hex()}")
            self.lines.append(f"#   {describe(f)}")
        return frames

    def keys(self) -> None:
        p = self.peer_hello
        self.codec.set_session_keys(direction_key(KEY, self.hello.nonce, p.nonce),
                                    direction_key(KEY, p.nonce, self.hello.nonce))
        self.codec.max_body = DEFAULT_MAX_BODY

    def frame(self, f: Frame) -> bytes:
        raw = self.codec.encode(f)
        self.last_sent = raw
        self.lines.append(f"< {raw.hex()}")
        self.lines.append(f"#   {describe(f)}")
        return raw


def _step(n: MemoryNode, peer: ScriptPeer, event, line: str | None = None) -> None:
    if line:
        peer.lines.append(line)
    n.handle(event, 1.0, WALL + 1.0)
    out = b"".join(n.outbox)
    n.outbox.clear()
    peer.read(out)
    peer.lines.append(f"= {n.state.value}")


def record(name: str) -> list[str]:
    held = Cursor(EPOCH_B, 0)
    n = node_under_test(held)
    peer = ScriptPeer()
    peer.lines += [f"# transcript {name}: deviceA (under test) and deviceB (scripted)",
                   "# provenance: tests/unit/test_sync_transcripts.py record(); key "
                   f"{KEY!r}, nonces sha256('deviceA/1') and sha256('transcript/deviceB')"]
    _step(n, peer, Connected(n.next_nonce(), outbound=True), "! connected")
    peer_hello = peer.frame(peer.hello)
    peer.keys()
    _step(n, peer, DataReceived(peer_hello))
    if name == "snapshot_then_live":
        req = SyncReq(0, 0)  # B holds nothing of A's: a snapshot
    else:
        req = SyncReq(EPOCH_A, 2)  # B holds A's log up to 2: a delta of one change
    data = peer.frame(Auth(auth_proof(KEY, peer.hello, peer.peer_hello))) + peer.frame(req)
    _step(n, peer, DataReceived(data))
    # B's first heartbeat: it echoes A's HELLO stamp (a time sample for A), held 0.5 ms.
    hb = Heartbeat(0, int((WALL + 1.0015) * 1e6), peer.peer_hello.wall_us, 500)
    _step(n, peer, DataReceived(peer.frame(hb)))
    # B's own log is empty: an empty delta from A's cursor (EPOCH_B, 0).
    data = peer.frame(BulkBegin(BulkKind.DELTA, 0, 0)) + peer.frame(BulkEnd(0))
    _step(n, peer, DataReceived(data))
    for a in list(n.unpersisted):
        n.unpersisted.remove(a)
        n.store_apply(a)
        _step(n, peer, Persisted(a.batch), f"! persisted {a.batch}")
    last = n.log.last_seq
    pages = 1 if name == "snapshot_then_live" else 0
    _step(n, peer, DataReceived(peer.frame(Ack(last, pages))))
    assert n.state is State.IN_SYNC
    # A live change on A, ACKed by B.
    lease = n.commit(mk(4, start=2000.0, relay=b"\x01\x04eth2\x02\x06remote"))
    _step(n, peer, LocalCommitted(lease.seq), f"! commit {lease.seq}")
    _step(n, peer, DataReceived(peer.frame(Ack(lease.seq, pages))))
    # A genuine frame sent twice: refused as a replay, connection closed.
    if name == "delta_then_replay":
        peer.lines.append("! replay")
        n.handle(DataReceived(peer.last_sent), 1.0, WALL + 1.0)
        assert n.refused and n.state is State.DISCONNECTED
        peer.lines.append(f"= {n.state.value} {n.refused[-1].reason.value}")
    return peer.lines


NAMES = ["snapshot_then_live", "delta_then_replay"]


@pytest.mark.parametrize("name", NAMES)
def test_transcript_matches_the_recording(name: str) -> None:
    lines = record(name)
    path = DIR / f"{name}.msg"
    text = "\n".join(lines) + "\n"
    if os.environ.get("DHCP_HOTBACKUP_REGEN"):
        DIR.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.read_text() == text, f"wire format changed: {path} (see module docstring)"


@pytest.mark.parametrize("name", NAMES)
def test_replay_transcript_against_a_fresh_session(name: str) -> None:
    n = node_under_test(Cursor(EPOCH_B, 0))
    expected_out: list[bytes] = []
    got_out: list[bytes] = []

    def drain() -> None:
        got_out.extend(split_frames(b"".join(n.outbox), not got_out))
        n.outbox.clear()

    for line in (DIR / f"{name}.msg").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        tag, _, rest = line.partition(" ")
        if tag == ">":
            expected_out.append(bytes.fromhex(rest))
        elif tag == "<":
            n.handle(DataReceived(bytes.fromhex(rest)), 1.0, WALL + 1.0)
            last_in = bytes.fromhex(rest)
        elif tag == "!":
            if rest == "connected":
                n.handle(Connected(n.next_nonce(), outbound=True), 1.0, WALL + 1.0)
            elif rest.startswith("persisted"):
                batch = int(rest.split()[1])
                a = next(x for x in n.unpersisted if x.batch == batch)
                n.unpersisted.remove(a)
                n.store_apply(a)
                n.handle(Persisted(batch), 1.0, WALL + 1.0)
            elif rest.startswith("commit"):
                lease = n.commit(mk(4, start=2000.0, relay=b"\x01\x04eth2\x02\x06remote"))
                assert lease.seq == int(rest.split()[1])
                n.handle(LocalCommitted(lease.seq), 1.0, WALL + 1.0)
            elif rest == "replay":
                n.handle(DataReceived(last_in), 1.0, WALL + 1.0)
        elif tag == "=":
            drain()
            assert got_out == expected_out[: len(got_out)]
            state, *reason = rest.split()
            assert n.state.value == state
            if reason:
                assert n.refused[-1].reason.value == reason[0]
    drain()
    assert got_out == expected_out
    assert n.table.get(mk(4).ip).state is LeaseState.BOUND
    # B's heartbeat was a time sample: its clock 1.25 ms ahead (t2 - t1 = 1 ms,
    # t3 - t4 = 1.5 ms), the round trip 0 (the replay runs at one instant).
    assert n.session.skew.skew_ms == pytest.approx(1.25, abs=0.001)  # float us
    assert n.stats["clock_samples"] == 1
