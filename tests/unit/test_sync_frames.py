"""Sync frame codec (wire version 2): round trips (hypothesis), sealing (HMAC for the
HELLO, AEAD with the counter as nonce and the header as associated data for every other
frame), and each kind of bad input refused with its own reason: forged MAC or tag,
replay, reordering, truncation, oversize (after and before authentication), an older
or unknown version, unknown type, malformed bodies."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.leases.model import Lease, LeaseState
from appliance.sync.frames import (
    DEFAULT_MAX_BODY,
    HEADER,
    HEADER_LEN,
    HELLO_MAC_LEN,
    PREAUTH_MAX_BODY,
    TAG_LEN,
    VERSION,
    Ack,
    AeadSeal,
    Auth,
    BulkBegin,
    BulkEnd,
    BulkKind,
    BulkPage,
    Bye,
    ConfigSummary,
    FrameCodec,
    FrameError,
    FrameMac,
    FrameType,
    Heartbeat,
    Hello,
    HelloSeal,
    Notice,
    Reason,
    SyncReq,
    Updates,
    auth_proof,
    check_header,
    decode_frame,
    direction_key,
    encode_body,
    encode_frame,
    frame_size,
    hello_key,
    setting_digest,
)

K = b"k" * 32
u64 = st.integers(0, 2**64 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
short_bytes = st.binary(max_size=255)
text255 = st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255)
times = st.floats(allow_nan=False, allow_infinity=False, width=64)

leases = st.builds(
    Lease,
    ip=u32,
    mac=short_bytes,
    client_id=st.none() | short_bytes,
    state=st.sampled_from([s for s in LeaseState if s is not LeaseState.OFFERED]),
    start=times,
    expires=times,
    pool=text255,
    hostname=st.none() | st.text(max_size=60).filter(
        lambda s: len(s.encode("utf-8", "surrogateescape")) <= 255),
    relay_info=st.none() | short_bytes,
    seq=u64,
    origin=text255,
)

hellos = st.builds(
    Hello,
    node=text255,
    nonce=st.binary(min_size=32, max_size=32),
    boot_id=u64,
    epoch=u64,
    last_seq=u64,
    lease_count=u64,
    wall_us=i64,
    max_version=st.integers(0, 255),
)
configs = st.builds(
    ConfigSummary,
    digest=st.binary(min_size=32, max_size=32),
    summary=st.lists(st.tuples(st.text(max_size=80), st.binary(min_size=8, max_size=8)),
                     max_size=20).map(tuple),
)

frames = st.one_of(
    hellos,
    configs,
    st.builds(Auth, st.binary(min_size=32, max_size=32)),
    st.builds(SyncReq, u64, u64),
    st.builds(Updates, st.lists(leases, max_size=8).map(tuple)),
    st.builds(Ack, u64, u32),
    st.builds(BulkBegin, st.sampled_from(BulkKind), u64, u64),
    st.builds(BulkPage, st.lists(leases, max_size=8).map(tuple)),
    st.builds(BulkEnd, u64),
    st.builds(Heartbeat, u64, i64, i64, u32),
    st.builds(Notice, st.integers(0, 65535), text255),
    st.builds(Bye, st.integers(0, 65535)),
)


def same(a: object, b: object) -> bool:
    # -0.0 == 0.0 and inf == inf: compare the encodings, which are exact.
    return encode_body(a) == encode_body(b)  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(f=frames, counter=u64)
def test_round_trip(f, counter) -> None:
    data = encode_frame(f, K, counter)
    back = decode_frame(data, K, counter)
    assert type(back) is type(f)
    assert same(back, f)
    assert encode_frame(back, K, counter) == data  # canonical


@settings(max_examples=100, deadline=None)
@given(fs=st.lists(frames, min_size=1, max_size=10), cut=st.integers(1, 50))
def test_stream_round_trip_any_split(fs, cut) -> None:
    tx, rx = FrameCodec(K), FrameCodec(K)
    first = tx.encode(fs[0])  # frame 0, HMAC-sealed, as a HELLO is
    tx.set_session_keys(b"s" * 32, b"r" * 32)
    rx.max_body = DEFAULT_MAX_BODY
    data = first + b"".join(tx.encode(f) for f in fs[1:])
    got = []
    for i in range(0, len(data), cut):
        rx.feed(data[i : i + cut])
        while (f := rx.next_frame()) is not None:
            got.append(f)
            if len(got) == 1:
                rx.set_session_keys(b"r" * 32, b"s" * 32)  # the session switches here
    assert len(got) == len(fs) and all(same(a, b) for a, b in zip(got, fs, strict=True))
    rx.eof()  # nothing left over


@settings(max_examples=50, deadline=None)
@given(ls=st.lists(leases, min_size=1, max_size=40), budget=st.integers(1, 3000))
def test_encode_leases_splits_by_budget(ls, budget) -> None:
    tx, rx = FrameCodec(K), FrameCodec(K)
    tx.set_session_keys(K, K)
    rx.set_session_keys(K, K)
    rx.max_body = DEFAULT_MAX_BODY
    out = tx.encode_leases(FrameType.UPDATES, ls, budget)
    assert sum(n for _, n in out) == len(ls)
    got = []
    for data, n in out:
        rx.feed(data)
        f = rx.next_frame()
        assert isinstance(f, Updates) and len(f.leases) == n
        assert n == 1 or len(data) - HEADER_LEN - TAG_LEN <= budget
        got.extend(f.leases)
    assert [encode_body(Updates((x,))) for x in got] == \
        [encode_body(Updates((x,))) for x in ls]


# -- refusals, each with its reason ------------------------------------------------------

GOOD = Updates((Lease(ip=1, mac=b"\x02" * 6, client_id=None, state=LeaseState.BOUND,
                      start=1.0, expires=2.0, pool="lan", relay_info=b"\x01\x02ab",
                      seq=5, origin="a"),))


def refused(fn, *args) -> Reason:
    with pytest.raises(FrameError) as ei:
        fn(*args)
    return ei.value.reason


def test_forged_mac() -> None:
    data = bytearray(encode_frame(GOOD, K, 0))
    data[-1] ^= 1
    assert refused(decode_frame, bytes(data), K, 0) is Reason.BAD_MAC
    data = bytearray(encode_frame(GOOD, K, 0))
    data[HEADER_LEN + 3] ^= 0x40  # a body bit: the MAC covers it
    assert refused(decode_frame, bytes(data), K, 0) is Reason.BAD_MAC
    assert refused(decode_frame, encode_frame(GOOD, b"o" * 32, 0), K, 0) is Reason.BAD_MAC
    hello = HelloSeal(hello_key(K))
    data = bytearray(encode_frame(GOOD, hello, 0))
    data[-1] ^= 1
    assert refused(decode_frame, bytes(data), hello, 0) is Reason.BAD_MAC


def test_counter_tampering_breaks_the_mac() -> None:
    data = bytearray(encode_frame(GOOD, K, 3))
    struct.pack_into("!Q", data, 8, 4)  # the nonce and the associated data both change
    assert refused(decode_frame, bytes(data), K, 4) is Reason.BAD_MAC
    data = bytearray(encode_frame(GOOD, K, 3))
    data[1] = FrameType.BULK_PAGE  # the header is associated data: its type too
    assert refused(decode_frame, bytes(data), K, 3) is Reason.BAD_MAC


def test_subscriber_data_never_crosses_in_clear() -> None:
    """MACs, hostnames and Option 82 are encrypted; a HELLO carries none of them."""
    lease = Lease(ip=0xC0000264, mac=bytes.fromhex("02aabbccddee"), client_id=b"\x01cid-42",
                  state=LeaseState.BOUND, start=1.0, expires=2.0, pool="lan",
                  hostname="alice-laptop", relay_info=b"\x01\x0ccircuit-7/1\x02\x04cust",
                  seq=9, origin="deviceA")
    for f in (Updates((lease,)), BulkPage((lease,))):
        data = encode_frame(f, K, 1)
        plain = encode_body(f)
        for secret in (lease.mac, b"alice-laptop", b"circuit-7/1", b"cid-42"):
            assert secret in plain and secret not in data
        assert decode_frame(data, K, 1) == f
    # Same body, next counter: another nonce, another ciphertext.
    assert encode_frame(GOOD, K, 1)[HEADER_LEN:] != encode_frame(GOOD, K, 2)[HEADER_LEN:]


def test_hello_is_authenticated_in_clear_and_sized_by_its_trailer() -> None:
    h = Hello("deviceA", b"n" * 32, 1, 2, 3, 4, 1_700_000_000_000_000)
    seal = HelloSeal(hello_key(K))
    data = encode_frame(h, seal, 0)
    assert encode_body(h) in data and len(data) == frame_size(data, hello=True)
    assert len(data) == HEADER_LEN + len(encode_body(h)) + HELLO_MAC_LEN
    assert decode_frame(data, seal, 0) == h
    later = encode_frame(GOOD, K, 1)
    assert len(later) == frame_size(later, hello=False)
    assert len(later) == HEADER_LEN + len(encode_body(GOOD)) + TAG_LEN
    # Before the keys, the codec takes only HMAC-sealed frames: an AEAD frame fails.
    rx = FrameCodec(K)
    rx.feed(encode_frame(GOOD, K, 0))
    assert rx.next_frame() is None  # 16 bytes short of an HMAC trailer
    rx.feed(bytes(16))
    assert refused(rx.next_frame) is Reason.BAD_MAC


def test_replayed_and_reordered() -> None:
    tx, rx = FrameCodec(K), FrameCodec(K)
    f0, f1, f2 = tx.encode(Heartbeat(1)), tx.encode(Heartbeat(2)), tx.encode(Heartbeat(3))
    rx.feed(f0)
    assert rx.next_frame() == Heartbeat(1)
    rx.feed(f0)
    assert refused(rx.next_frame) is Reason.REPLAY
    rx2 = FrameCodec(K)
    rx2.feed(f0)
    rx2.next_frame()
    rx2.feed(f2 + f1)
    assert refused(rx2.next_frame) is Reason.REORDERED
    assert refused(rx2.next_frame) is Reason.REORDERED  # the codec stays refused


def test_truncated() -> None:
    data = encode_frame(GOOD, K, 0)
    for n in (0, 5, HEADER_LEN, len(data) - 1):
        assert refused(decode_frame, data[:n], K, 0) is Reason.TRUNCATED
    rx = FrameCodec(K)
    rx.feed(data[:-3])
    assert rx.next_frame() is None
    assert refused(rx.eof) is Reason.TRUNCATED


def test_oversized_refused_from_the_header_alone() -> None:
    header = HEADER.pack(VERSION, FrameType.UPDATES, 0, 5_000_000, 0)
    assert refused(check_header, header) is Reason.OVERSIZED
    rx = FrameCodec(K, max_body=1000)
    rx.feed(HEADER.pack(VERSION, FrameType.UPDATES, 0, 1001, 0))  # no body sent at all
    assert refused(rx.next_frame) is Reason.OVERSIZED
    assert rx.buffered == HEADER_LEN
    tx = FrameCodec(K)
    with pytest.raises(ValueError):
        tx.encode(BulkPage((GOOD.leases[0],) * 100_000))  # over 4 MiB


def test_before_authentication_frames_are_small() -> None:
    """An unauthenticated peer never makes us buffer or MAC more than a few KiB: a HELLO
    announcing 1 MiB (well under the 4 MiB limit after AUTH) is refused from its header."""
    rx = FrameCodec(K)
    assert rx.max_body == PREAUTH_MAX_BODY <= 4096
    rx.feed(HEADER.pack(VERSION, FrameType.HELLO, 0, 1 << 20, 0) + bytes(1000))
    assert refused(rx.next_frame) is Reason.OVERSIZED
    ok = FrameCodec(K)
    ok.max_body = DEFAULT_MAX_BODY  # what the session sets once the peer's AUTH verifies
    ok.feed(HEADER.pack(VERSION, FrameType.HELLO, 0, 1 << 20, 0))
    assert ok.next_frame() is None  # waits for the body


def test_wrong_version() -> None:
    data = bytearray(encode_frame(GOOD, K, 0))
    data[0] = 1  # an earlier release: refused with its own reason (upgrade both)
    assert refused(decode_frame, bytes(data), K, 0) is Reason.OLD_VERSION
    for v in (0, 3, 255):
        data[0] = v
        assert refused(decode_frame, bytes(data), K, 0) is Reason.BAD_VERSION
    assert VERSION == 2


def _raw(ftype: int, body: bytes, key: bytes = K, counter: int = 0, flags: int = 0) -> bytes:
    return AeadSeal(key).seal(HEADER.pack(VERSION, ftype, flags, len(body), counter), body)


def test_unknown_type() -> None:
    for t in (0, 13, 200, 255):
        assert refused(decode_frame, _raw(t, b""), K, 0) is Reason.BAD_TYPE


def test_flags_must_be_zero() -> None:
    assert refused(decode_frame, _raw(FrameType.HEARTBEAT, bytes(8), flags=1), K, 0) \
        is Reason.MALFORMED


@pytest.mark.parametrize("ftype,body", [
    (FrameType.ACK, bytes(11)),
    (FrameType.HEARTBEAT, bytes(9)),
    (FrameType.SYNC_REQ, bytes(15)),
    (FrameType.BULK_END, b""),
    (FrameType.BULK_BEGIN, b"\x09" + bytes(16)),  # unknown bulk kind
    (FrameType.AUTH, bytes(31)),
    (FrameType.BYE, bytes(3)),
    (FrameType.NOTICE, b"\x00\x01\x05ab"),  # detail length says 5, has 2
    (FrameType.NOTICE, b"\x00\x01\x01\xff"),  # not UTF-8
    (FrameType.UPDATES, b"\x00\x00"),  # count truncated
    (FrameType.UPDATES, b"\xff\xff\xff\xff" + bytes(40)),  # count cannot fit
    (FrameType.UPDATES, b"\x00\x00\x00\x01\x00\x05abcde"),  # lease record bad
    (FrameType.UPDATES, b"\x00\x00\x00\x00x"),  # trailing byte
    (FrameType.HELLO, bytes(10)),
    (FrameType.HELLO, bytes(41) + b"\x01a" + bytes(33)),  # one byte after the nonce
    (FrameType.CONFIG, bytes(35)),
    (FrameType.CONFIG, bytes(32) + b"\xff\xff\xff\xff"),  # count cannot fit
    (FrameType.HEARTBEAT, bytes(8)),  # a version-1 heartbeat
])
def test_malformed_bodies(ftype, body) -> None:
    assert refused(decode_frame, _raw(ftype, body), K, 0) is Reason.MALFORMED


def test_offered_lease_never_crosses_the_wire() -> None:
    offered = Updates((Lease(ip=1, mac=b"m", client_id=None, state=LeaseState.OFFERED,
                             start=0.0, expires=1.0, pool="p"),))
    assert refused(decode_frame, _raw(FrameType.UPDATES, encode_body(offered)), K, 0) \
        is Reason.MALFORMED


def test_trailing_bytes_after_frame() -> None:
    assert refused(decode_frame, encode_frame(GOOD, K, 0) + b"x", K, 0) is Reason.MALFORMED


# -- keys ---------------------------------------------------------------------------------


def test_keys_are_directional_and_bound_to_nonces() -> None:
    na, nb = b"a" * 32, b"b" * 32
    assert direction_key(K, na, nb) != direction_key(K, nb, na)
    assert direction_key(K, na, nb) != direction_key(K, na, b"c" * 32)
    assert direction_key(K, na, nb) != direction_key(b"other", na, nb)
    assert hello_key(K) != hello_key(b"other")
    ha = Hello("a", na, 1, 1, 1, 1)
    hb = Hello("b", nb, 1, 1, 1, 1)
    assert auth_proof(K, ha, hb) != auth_proof(K, hb, ha)  # no reflecting a proof back
    assert setting_digest(K, "pools/lan/lease_time", "3600") != \
        setting_digest(K, "pools/lan/lease_time", "7200")
    assert len(setting_digest(K, "p", "v")) == 8


@settings(max_examples=100, deadline=None)
@given(key=st.binary(max_size=200), msg=st.binary(max_size=300))
def test_frame_mac_is_hmac_sha256(key, msg) -> None:
    import hmac

    assert FrameMac(key).digest(msg) == hmac.digest(key, msg, "sha256")


def test_reason_values_are_counter_names() -> None:
    values = [r.value for r in Reason]
    assert len(values) == len(set(values))
    assert all(v.startswith("refused_") for v in values)
