"""Fuzzing the sync input path (h11's fuzz/ idea): random bytes and mutated genuine frames
(v2: AEAD-sealed, and the HMAC-sealed HELLO) into the frame decoder, the body parsers and
a live session. Asserted, not hoped for: only FrameError comes out of the decoder; a
session never raises on network input, refused input changes nothing but the connection
(no Apply, no cursor move, no drift), and before authentication no header makes the
session wait for more than PREAUTH_MAX_BODY bytes."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sync_support import FakePeer, MemoryNode, mk

from appliance.sync.frames import (
    HEADER,
    PREAUTH_MAX_BODY,
    VERSION,
    Ack,
    BulkPage,
    ConfigSummary,
    FrameCodec,
    FrameError,
    FrameType,
    Heartbeat,
    Hello,
    HelloSeal,
    Notice,
    Updates,
    decode_body,
    decode_frame,
    encode_body,
    encode_frame,
    hello_key,
)
from appliance.sync.session import Apply, Connected, DataReceived, State

K = b"k" * 32
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300), st.integers(0, 5))
def test_random_bytes_into_decode_frame(data, counter) -> None:
    try:
        decode_frame(data, K, counter)
    except FrameError:
        pass


@FAST
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_random_bytes_with_a_valid_header_into_the_codec(body, tail) -> None:
    rx = FrameCodec(K)
    rx.feed(HEADER.pack(VERSION, FrameType.UPDATES, 0, len(body), 0) + body + tail)
    try:
        while rx.next_frame() is not None:
            pass
        rx.eof()
    except FrameError:
        pass


@FAST
@given(st.sampled_from([int(t) for t in FrameType] + [0, 12, 255]), st.binary(max_size=400))
def test_random_bodies_into_every_parser(ftype, body) -> None:
    # The MAC keeps random bytes away from the parsers on the wire; a peer that holds
    # the key must still not be able to crash us.
    try:
        decode_body(ftype, body)
    except FrameError:
        pass


SAMPLES = [
    Updates(tuple(mk(i, seq=i, hostname="h", relay=b"\x01\x02ab") for i in range(1, 4))),
    BulkPage((mk(9, seq=9),)),
    Ack(3, 1),
    Heartbeat(5, 1_700_000_000_000_000, 1_699_999_999_999_000, 250),
    Notice(1, "x"),
    ConfigSummary(bytes(range(32)), (("pools/lan/lease_time", b"\x01" * 8),
                                     ("vrrp/vrid", b"\x02" * 8))),
    Hello("deviceB", bytes(range(32)), 7, 9, 3, 10, 1_700_000_000_000_000),
]


@FAST
@given(st.sampled_from(SAMPLES), st.integers(0, 10**6), st.integers(1, 4))
def test_mutated_bodies_parse_or_refuse(frame, seed, flips) -> None:
    body = bytearray(encode_body(frame))
    rnd = random.Random(seed)
    for _ in range(flips):
        if body:
            body[rnd.randrange(len(body))] = rnd.randrange(256)
    try:
        decode_body(frame.TYPE, bytes(body))
    except FrameError:
        pass


@FAST
@given(st.sampled_from(SAMPLES), st.integers(0, 10**6))
def test_mutated_frames_refused(frame, seed) -> None:
    seal = HelloSeal(hello_key(K)) if isinstance(frame, Hello) else K
    data = bytearray(encode_frame(frame, seal, 0))
    rnd = random.Random(seed)
    op = rnd.randrange(3)
    if op == 0:
        data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    elif op == 1:
        del data[rnd.randrange(len(data)) :]
    else:
        data.insert(rnd.randrange(len(data)), rnd.randrange(256))
    try:
        decode_frame(bytes(data), seal, 0)
    except FrameError:
        return
    raise AssertionError("a changed frame was accepted")


def _synced_node() -> tuple[MemoryNode, FakePeer]:
    node = MemoryNode("deviceA")
    node.commit(mk(1))
    peer = FakePeer()
    peer.handshake(node)
    return node, peer


@FAST
@given(st.binary(min_size=1, max_size=300), st.integers(1, 64))
def test_random_bytes_into_a_session(data, cut) -> None:
    for connected in (False, True):
        if connected:
            node, _ = _synced_node()
        else:
            node = MemoryNode("deviceA")
            node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
        held, n_apply = node.session.held, len(node.actions)
        for i in range(0, len(data), cut):
            node.handle(DataReceived(data[i : i + cut]), 1.0)  # never raises
        assert not any(isinstance(a, Apply) for a in node.actions[n_apply:])
        assert node.session.held == held
        assert node.state in (State.DISCONNECTED, State.HANDSHAKE, State.SYNCING)
        if node.state is State.DISCONNECTED:
            assert len(node.refused) == 1


@FAST
@given(st.sampled_from(SAMPLES[:2]), st.integers(0, 10**6))
def test_mutated_genuine_frame_into_a_session(frame, seed) -> None:
    node, peer = _synced_node()
    data = bytearray(peer.frame(frame))
    rnd = random.Random(seed)
    data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    held, n_apply, table = node.session.held, len(node.actions), dict(node.table.by_ip)
    node.handle(DataReceived(bytes(data)), 1.0)
    node.handle(DataReceived(b""), 1.0)
    # Either refused (and nothing changed) or still waiting for the rest of a frame
    # whose length field grew: never accepted.
    assert not any(isinstance(a, Apply) for a in node.actions[n_apply:])
    assert node.session.held == held and node.table.by_ip == table
    assert node.state is State.DISCONNECTED or not node.refused


@FAST
@given(st.integers(0, 2**32 - 1), st.sampled_from([int(t) for t in FrameType] + [0, 99]),
       st.binary(max_size=300), st.sampled_from([1, 2, 3]))
def test_no_header_makes_an_unauthenticated_session_wait_for_much(length, ftype, tail,
                                                                    version) -> None:
    node = MemoryNode("deviceA")
    node.handle(Connected(node.next_nonce(), outbound=False), 0.0)
    node.handle(DataReceived(HEADER.pack(version, ftype, 0, length, 0) + tail), 0.0)
    if node.state is State.HANDSHAKE:  # still waiting for the rest of a frame
        assert version == VERSION and length <= PREAUTH_MAX_BODY
        codec = node.session._c.codec  # type: ignore[union-attr]
        assert codec.buffered <= 16 + PREAUTH_MAX_BODY + 32
    else:
        assert len(node.refused) == 1 and node.drift is None
