"""Fuzzing the DHCP decoders: whatever the bytes, DhcpMessage.decode returns a message or
raises DecodeError, and the option helpers raise OptionError or nothing (STYLE.md §3.5:
"never crash" is asserted, not hoped for).

Inputs: random buffers, random option areas behind a valid header, random overloaded
sname/file fields, every truncation and many single-byte mutations of the golden packets
from real clients (tests/unit/golden/).
"""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.dhcp import options as o
from appliance.dhcp.enums import MAGIC_COOKIE
from appliance.dhcp.message import MAX_MESSAGE_LEN, DecodeError, DecodeReason, DhcpMessage

GOLDEN = Path(__file__).parent / "golden"
REASONS = {r.value for r in DecodeReason}
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _golden_payloads() -> list[bytes]:
    out = []
    for path in sorted(GOLDEN.glob("*.pcap")):
        data = path.read_bytes()
        endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
        off = 24
        while off < len(data):
            _, _, incl, _ = struct.unpack_from(endian + "IIII", data, off)
            out.append(data[off + 16 + 42 : off + 16 + incl])  # Ethernet + IPv4 + UDP
            off += 16 + incl
    return out


PAYLOADS = _golden_payloads()


def check(data: bytes) -> DhcpMessage | None:
    """The property: a DhcpMessage or a DecodeError with a known reason, nothing else.
    What decodes must also re-encode, and the re-encoding must decode to the same message.
    """
    try:
        msg = DhcpMessage.decode(data)
    except DecodeError as e:
        assert e.reason in REASONS
        return None
    assert isinstance(msg, DhcpMessage)
    assert all(0 < c < 255 and type(v) is bytes for c, v in msg.options.items())
    again = msg.encode()
    if len(again) <= MAX_MESSAGE_LEN:
        assert DhcpMessage.decode(again) == msg
    return msg


def test_golden_payloads_present() -> None:
    assert len(PAYLOADS) >= 16
    assert all(check(p) is not None for p in PAYLOADS)


@FUZZ
@given(st.binary(max_size=700))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(
    st.sampled_from([0, 1, 2, 3]),
    st.integers(0, 20),
    st.binary(min_size=236 - 4, max_size=236 - 4),
    st.binary(max_size=400),
)
def test_random_options_behind_a_valid_header(op: int, hlen: int, rest: bytes, tail: bytes) -> None:
    check(bytes((op, 1, hlen, 0)) + rest + MAGIC_COOKIE + tail)


# Option bytes biased towards what breaks parsers: PAD, END, overload, long lengths.
option_bytes = st.lists(
    st.one_of(st.sampled_from([0, 1, 2, 3, 52, 53, 255, 254, 128]), st.integers(0, 255)),
    max_size=128,
).map(bytes)


@FUZZ
@given(option_bytes, st.sampled_from([b"", b"\x01", b"\x02", b"\x03", b"\x04", b"\x01\x02"]),
       option_bytes, option_bytes)  # fmt: skip
def test_random_overload(head: bytes, overload: bytes, file: bytes, sname: bytes) -> None:
    opts = b"\x34" + bytes((len(overload),)) + overload + head
    data = (
        bytes((1, 1, 6, 0)) + bytes(24) + bytes(16)
        + sname[:64].ljust(64, b"\0") + file[:128].ljust(128, b"\0")
        + MAGIC_COOKIE + opts
    )  # fmt: skip
    check(data)


def test_every_truncation_of_every_golden_packet() -> None:
    for payload in PAYLOADS:
        for n in range(len(payload) + 1):
            check(payload[:n])


def test_every_byte_of_one_packet_per_client_mutated() -> None:
    # One DISCOVER per client (first packet of each capture), every position, values that
    # turn a byte into PAD, END, OVERLOAD, a small or maximal length.
    for payload in PAYLOADS[::4]:
        for i in range(len(payload)):
            for v in (0x00, 0x01, 0x03, 0x34, 0x80, 0xFF):
                check(payload[:i] + bytes((v,)) + payload[i + 1 :])


@FUZZ
@given(st.sampled_from(PAYLOADS), st.lists(st.tuples(st.integers(0, 299), st.integers(0, 255)),
       min_size=1, max_size=4), st.integers(0, 400))  # fmt: skip
def test_mutations_and_truncations(payload: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(payload)
    for i, v in edits:
        data[i % len(data)] = v
    check(bytes(data))
    check(bytes(data[:cut]))
    check(bytes(data) + bytes(data[240:cut]))  # options spliced onto themselves


@FUZZ
@given(st.sampled_from(PAYLOADS), st.integers(236, 240), st.binary(min_size=1, max_size=8))
def test_cookie_region_mutations(payload: bytes, i: int, junk: bytes) -> None:
    check(payload[:i] + junk + payload[i + len(junk) :])


# -- option helpers ------------------------------------------------------------------------

all_codes = st.one_of(st.sampled_from(sorted(o.STD_OPTION_DEFS)), st.integers(0, 255))


@FUZZ
@given(all_codes, st.binary(max_size=300))
def test_option_helpers_never_crash(code: int, raw: bytes) -> None:
    line = o.format_option(code, raw)
    assert line.startswith(f"({code}) ")
    try:
        o.decode_option(code, raw)
    except o.OptionError:
        pass
    d = o.describe_client_id(raw)
    assert d["raw"] == raw.hex() and d["kind"] in {"rfc4361", "hwaddr", "opaque", "invalid"}
    try:
        subs = o.parse_relay_info(raw)
    except o.OptionError:
        assert o.circuit_id(raw) is None
    else:
        assert o.encode_relay_info(subs) == raw
    for fn in (o.decode_domain_list, o.decode_classless_routes, o.decode_fqdn):
        try:
            fn(raw)
        except o.OptionError:
            pass


@FUZZ
@given(st.lists(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x3F, 0x40, 0xC0, 0xC1, 0x61]),
                max_size=40).map(bytes))  # fmt: skip
def test_domain_names_with_pointers_terminate(raw: bytes) -> None:
    # Compression pointers must always move backwards: no input can loop the reader.
    try:
        o.decode_domain_list(raw)
    except o.OptionError:
        pass
