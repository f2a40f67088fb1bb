"""Tests for appliance.dhcp.options: the definition table, typed encoders/decoders,
Option 82 (RFC 3046), client identifiers (RFC 2132 §9.14, RFC 4361) and format_option."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.dhcp import options as o
from appliance.dhcp.enums import MessageType, Opt, RelaySubOpt
from appliance.dhcp.options import OptionError, OptType

# From tests/unit/golden/dhcpcd.pcap (dhcpcd 9.4.1, DISCOVER, option 61): type 255,
# IAID 0000c103, DUID-LLT (type 1, hwtype 1, time 0x3299cc01, MAC 02:00:00:00:c1:03).
DHCPCD_CLIENT_ID = bytes.fromhex("ff0000c103000100013299cc0102000000c103")
# From tests/unit/golden/udhcpc.pcap (busybox udhcpc 1.35.0, option 61): 01 + MAC.
UDHCPC_CLIENT_ID = bytes.fromhex("0102000000c102")
# From tests/unit/golden/dhcrelay_upstream.pcap (ISC dhcrelay 4.4.3-P1 -a, option 82).
DHCRELAY_RELAY_INFO = bytes.fromhex("0103726430")

Fn = Callable[[Any], Any]


# -- the table --------------------------------------------------------------------------


def test_table_covers_the_enum() -> None:
    framing = {Opt.PAD, Opt.END}
    assert {int(c) for c in Opt} - framing == set(o.STD_OPTION_DEFS)
    for code, d in o.STD_OPTION_DEFS.items():
        assert d.code == code and type(code) is int
        assert isinstance(d.type, OptType)
    names = [d.name for d in o.STD_OPTION_DEFS.values()]
    assert len(names) == len(set(names))
    assert o.OPTION_DEFS_BY_NAME["routers"].code == 3


def test_kea_names_for_the_options_we_serve() -> None:
    expect = {
        1: "subnet-mask", 3: "routers", 6: "domain-name-servers", 12: "host-name",
        15: "domain-name", 28: "broadcast-address", 50: "dhcp-requested-address",
        51: "dhcp-lease-time", 53: "dhcp-message-type", 54: "dhcp-server-identifier",
        55: "dhcp-parameter-request-list", 58: "dhcp-renewal-time", 59: "dhcp-rebinding-time",
        61: "dhcp-client-identifier", 82: "dhcp-agent-options",
    }  # fmt: skip
    assert {c: o.option_name(c) for c in expect} == expect
    assert o.option_name(0) == "pad" and o.option_name(255) == "end"
    assert o.option_name(224) == "option-224"


def test_relay_suboption_names_cover_the_enum() -> None:
    assert set(o.RELAY_SUBOPT_NAMES) == {int(c) for c in RelaySubOpt}


# -- integers, booleans -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("enc", "dec", "value", "raw"),
    [
        (o.encode_u8, o.decode_u8, 200, b"\xc8"),
        (o.encode_u16, o.decode_u16, 1472, b"\x05\xc0"),
        (o.encode_u32, o.decode_u32, 120, b"\x00\x00\x00\x78"),
        (o.encode_u32, o.decode_u32, 0xFFFFFFFF, b"\xff\xff\xff\xff"),  # RFC 2132 §9.2 infinity
        (o.encode_i32, o.decode_i32, -3600, b"\xff\xff\xf1\xf0"),  # RFC 2132 §3.4 time offset
    ],
)
def test_integers(enc: Fn, dec: Fn, value: int, raw: bytes) -> None:
    assert enc(value) == raw and dec(raw) == value


@pytest.mark.parametrize(
    ("dec", "raw"),
    [
        (o.decode_u8, b""),
        (o.decode_u8, b"\x01\x02"),
        (o.decode_u16, b"\x01"),
        (o.decode_u32, b"\x00\x00\x00"),
        (o.decode_u32, b"\x00\x00\x00\x00\x00"),
        (o.decode_i32, b""),
        (o.decode_bool, b"\x02"),
        (o.decode_u16_list, b"\x00\x01\x02"),
        (o.decode_u16_list, b""),
    ],
)
def test_wrong_lengths_raise_option_error(dec: Fn, raw: bytes) -> None:
    with pytest.raises(OptionError):
        dec(raw)
    assert issubclass(OptionError, ValueError)


@pytest.mark.parametrize(
    ("enc", "value"),
    [(o.encode_u8, 256), (o.encode_u16, -1), (o.encode_u32, 2**32), (o.encode_i32, 2**31)],
)
def test_out_of_range_raises_option_error(enc: Fn, value: int) -> None:
    with pytest.raises(OptionError):
        enc(value)


def test_bool_and_u16_list() -> None:
    assert o.encode_bool(True) == b"\x01" and o.decode_bool(b"\x00") is False
    assert o.decode_u16_list(o.encode_u16_list([68, 296, 1500])) == [68, 296, 1500]


# -- addresses --------------------------------------------------------------------------


def test_ip_helpers() -> None:
    want = b"\xc0\x00\x02\x01"
    assert o.encode_ip(IPv4Address("192.0.2.1")) == o.encode_ip("192.0.2.1") == want
    assert o.encode_ip(want) == want
    assert o.decode_ip(want) == IPv4Address("192.0.2.1")
    assert o.encode_ip_list([IPv4Address("192.0.2.1"), b"\x0a\x00\x00\x01"]) == want + b"\n\0\0\1"
    assert o.decode_ip_list(want * 3) == [IPv4Address("192.0.2.1")] * 3
    assert o.decode_ip_pairs(want + b"\xff\xff\xff\x00") == [
        (IPv4Address("192.0.2.1"), IPv4Address("255.255.255.0"))
    ]
    assert o.encode_ip_pairs([("192.0.2.1", "255.255.255.0")]) == want + b"\xff\xff\xff\x00"


@pytest.mark.parametrize(
    ("fn", "arg"),
    [
        (o.encode_ip, b"\x01\x02\x03"),
        (o.encode_ip, "192.0.2.256"),
        (o.encode_ip, "::1"),
        (o.encode_ip_list, []),
        (o.decode_ip, b"\x01\x02\x03\x04\x05"),
        (o.decode_ip_list, b""),
        (o.decode_ip_list, b"\x01\x02\x03\x04\x05"),
        (o.decode_ip_pairs, bytes(12)),
    ],
)
def test_ip_errors(fn: Fn, arg: Any) -> None:
    with pytest.raises(OptionError):
        fn(arg)


@given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=20))
def test_ip_list_roundtrip(ips: list[IPv4Address]) -> None:
    assert o.decode_ip_list(o.encode_ip_list(ips)) == ips


# -- strings ----------------------------------------------------------------------------


def test_strings() -> None:
    # RFC 2132 §2: receivers must be prepared to delete trailing NULs.
    assert o.decode_string(b"printer\x00\x00") == "printer"
    assert o.decode_string(b"") == ""
    raw = b"caf\xe9-\xff"  # not UTF-8: kept via surrogate escapes, nothing lost
    assert o.encode_string(o.decode_string(raw)) == raw
    assert o.encode_string("h\u00f6st") == "h\u00f6st".encode()


# -- message type, overload, parameter list -----------------------------------------------


def test_message_type_overload_param_list() -> None:
    assert o.decode_message_type(b"\x03") is MessageType.REQUEST
    assert o.decode_message_type(b"\x63") == 99
    assert o.decode_overload(b"\x03") == 3
    with pytest.raises(OptionError):
        o.decode_overload(b"\x04")
    assert o.decode_param_list(b"\x01\x03\x06") == [1, 3, 6]
    assert o.encode_param_list([1, 3, 6]) == b"\x01\x03\x06"
    with pytest.raises(OptionError):
        o.encode_param_list([256])


# -- Option 82 ------------------------------------------------------------------------------


def test_relay_info_from_dhcrelay() -> None:
    assert o.parse_relay_info(DHCRELAY_RELAY_INFO) == [(RelaySubOpt.CIRCUIT_ID, b"rd0")]
    assert o.circuit_id(DHCRELAY_RELAY_INFO) == b"rd0"
    assert o.remote_id(DHCRELAY_RELAY_INFO) is None


def test_relay_info_several_suboptions() -> None:
    subs = [
        (1, b"eth0/1/2:100"),
        (2, b"\x00\x06\x02\x00\x00\x00\x00\x09"),
        (5, b"\xc0\x00\x02\x00"),
    ]
    raw = o.encode_relay_info(subs)
    assert raw[:2] == b"\x01\x0c"
    assert o.parse_relay_info(raw) == subs
    assert o.circuit_id(raw) == b"eth0/1/2:100"
    assert o.remote_id(raw) == b"\x00\x06\x02\x00\x00\x00\x00\x09"
    assert o.relay_suboption(raw, RelaySubOpt.LINK_SELECTION) == b"\xc0\x00\x02\x00"
    assert o.parse_relay_info(b"") == []
    assert o.parse_relay_info(b"\x01\x00") == [(1, b"")]
    # The first instance wins when a sub-option repeats.
    assert o.circuit_id(b"\x01\x01a\x01\x01b") == b"a"


@pytest.mark.parametrize("raw", [b"\x01", b"\x01\x04rd0", b"\x01\x03rd0\x02", b"\x02\xffx"])
def test_relay_info_overrun(raw: bytes) -> None:
    with pytest.raises(OptionError):
        o.parse_relay_info(raw)
    # The accessors treat a malformed option 82 as carrying nothing.
    assert o.circuit_id(raw) is None and o.remote_id(raw) is None


def test_relay_info_encode_limits() -> None:
    with pytest.raises(OptionError):
        o.encode_relay_info([(1, bytes(256))])
    with pytest.raises(OptionError):
        o.encode_relay_info([(256, b"x")])


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=255)), max_size=8))
def test_relay_info_roundtrip(subs: list[tuple[int, bytes]]) -> None:
    assert o.parse_relay_info(o.encode_relay_info(subs)) == subs


# -- client identifier ----------------------------------------------------------------------


def test_client_id_dhcpcd_rfc4361() -> None:
    d = o.describe_client_id(DHCPCD_CLIENT_ID)
    assert d == {
        "raw": DHCPCD_CLIENT_ID.hex(),
        "type": 255,
        "kind": "rfc4361",
        "iaid": 0x0000C103,
        "duid": "000100013299cc0102000000c103",
        "duid_type": 1,
        "duid_kind": "DUID-LLT",
        "hwtype": 1,
        "time": 0x3299CC01,
        "lladdr": "02:00:00:00:c1:03",
    }


def test_client_id_udhcpc_hwaddr() -> None:
    d = o.describe_client_id(UDHCPC_CLIENT_ID)
    assert d["kind"] == "hwaddr" and d["type"] == 1 and d["hwaddr"] == "02:00:00:00:c1:02"
    assert o.hardware_client_id(bytes.fromhex("02000000c102")) == UDHCPC_CLIENT_ID


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        # DUID-LL (RFC 8415 §11.4), as systemd-networkd sends it.
        (
            bytes.fromhex("ff12345678000300015254000000aa"),
            {"iaid": 0x12345678, "duid_kind": "DUID-LL", "lladdr": "52:54:00:00:00:aa"},
        ),
        # DUID-EN (§11.3): enterprise number 9 (Cisco) + identifier.
        (
            bytes.fromhex("ff0000000100020000000901020304"),
            {"duid_kind": "DUID-EN", "enterprise": 9, "identifier": "01020304"},
        ),
        # DUID-UUID (RFC 6355).
        (b"\xff\x00\x00\x00\x01\x00\x04" + bytes(range(16)), {"uuid": bytes(range(16)).hex()}),
        (b"\xff\x00\x00\x00\x01\x00\x09abc", {"duid_type": 9, "duid_kind": "unknown"}),
        (b"\xff\x00\x00\x00\x01\x00\x01\x00", {"duid_kind": "invalid"}),  # LLT too short
    ],
)
def test_client_id_duid_kinds(raw: bytes, want: dict[str, object]) -> None:
    d = o.describe_client_id(raw)
    assert d["kind"] == "rfc4361"
    assert {k: d.get(k) for k in want} == want


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"", "invalid"),
        (b"\x01", "invalid"),  # RFC 2132 §9.14: minimum length 2
        (b"\xff\x00\x00\x00\x01\x00", "invalid"),  # IAID but no complete DUID type
        (b"\x00printer-7", "opaque"),
        (b"\x06\x00\x11\x22\x33\x44\x55", "opaque"),  # IEEE 802 htype
    ],
)
def test_client_id_other_forms(raw: bytes, kind: str) -> None:
    d = o.describe_client_id(raw)
    assert d["kind"] == kind and d["raw"] == raw.hex()
    if raw == b"\x00printer-7":
        assert d["text"] == "printer-7"


# -- domain names, FQDN, classless routes ---------------------------------------------------


def test_domain_search_rfc3397_example() -> None:
    """RFC 3397 §4: 'eng.apple.com' and 'marketing.apple.com', the second compressed."""
    raw = b"\x03eng\x05apple\x03com\x00\x09marketing\xc0\x04"
    assert o.decode_domain_list(raw) == ["eng.apple.com", "marketing.apple.com"]
    assert o.decode_domain_list(o.encode_domain_list(["a.example", "b.example."])) == [
        "a.example",
        "b.example",
    ]
    assert o.encode_domain_name(".") == b"\x00"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc0\x00",  # points at itself
        b"\x01a\xc0\x00",  # points back at its own first label: a loop
        b"\x01a\x00\xc0\x05\x01b\x00",  # forward pointer
        b"\x03ab",  # label past the end
        b"\x01a",  # no root label
        b"\x40abc\x00",  # extended label type (RFC 6891) is not a name
        b"\xc0",  # half a pointer
        (b"\x3f" + b"a" * 63) * 5 + b"\x00",  # 320 octets > 255
    ],
)
def test_domain_list_rejects(raw: bytes) -> None:
    with pytest.raises(OptionError):
        o.decode_domain_list(raw)


@pytest.mark.parametrize("name", ["a..b", "x" * 64 + ".example"])
def test_domain_name_encode_rejects(name: str) -> None:
    with pytest.raises(OptionError):
        o.encode_domain_name(name)


def test_fqdn() -> None:
    # RFC 4702 §2: flags S|E, rcodes 255 (deprecated), canonical wire-format name.
    wire = b"\x05\xff\xff" + o.encode_domain_name("host.example.net")

    def fqdn(flags: int, rcode: int, name: str) -> dict[str, object]:
        return {"flags": flags, "rcode1": rcode, "rcode2": rcode, "name": name}

    assert o.decode_fqdn(wire) == fqdn(5, 255, "host.example.net")
    assert o.decode_fqdn(b"\x00\x00\x00host") == fqdn(0, 0, "host")  # ASCII form (E clear)
    assert o.decode_fqdn(b"\x04\x00\x00\x04host") == fqdn(4, 0, "host")  # partial: no root
    assert o.encode_fqdn(o.decode_fqdn(wire)) == wire
    for bad in (b"\x04\x00", b"\x04\x00\x00\x05ab"):
        with pytest.raises(OptionError):
            o.decode_fqdn(bad)


def test_classless_routes_rfc3442() -> None:
    """RFC 3442 §3 encodings: only the significant octets of the destination are sent."""
    routes = [
        (IPv4Network("0.0.0.0/0"), IPv4Address("10.0.0.1")),
        (IPv4Network("10.0.0.0/8"), IPv4Address("10.0.0.2")),
        (IPv4Network("10.17.0.0/16"), IPv4Address("10.0.0.3")),
        (IPv4Network("10.27.129.0/24"), IPv4Address("10.0.0.4")),
        (IPv4Network("10.229.0.128/25"), IPv4Address("10.0.0.5")),
        (IPv4Network("10.198.122.47/32"), IPv4Address("10.0.0.6")),
    ]
    raw = o.encode_classless_routes(routes)
    assert raw[:5] == b"\x00\x0a\x00\x00\x01"
    assert raw[5:11] == b"\x08\x0a\x0a\x00\x00\x02"
    assert raw.endswith(b"\x20\x0a\xc6\x7a\x2f\x0a\x00\x00\x06")
    assert o.decode_classless_routes(raw) == routes
    for bad in (b"\x21" + bytes(8), b"\x18\x0a\x00"):
        with pytest.raises(OptionError):
            o.decode_classless_routes(bad)


# -- generic dispatch and formatting --------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (Opt.SUBNET_MASK, IPv4Address("255.255.255.0")),
        (Opt.ROUTER, [IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")]),
        (Opt.TIME_OFFSET, -7200),
        (Opt.LEASE_TIME, 3600),
        (Opt.INTERFACE_MTU, 1500),
        (Opt.DEFAULT_IP_TTL, 64),
        (Opt.IP_FORWARDING, False),
        (Opt.DOMAIN_NAME, "example.net"),
        (Opt.MESSAGE_TYPE, MessageType.NAK),
        (Opt.PARAM_REQUEST_LIST, [1, 3, 6, 15]),
        (Opt.RELAY_AGENT_INFO, [(1, b"rd0"), (2, b"modem-1")]),
        (Opt.DOMAIN_SEARCH, ["example.net", "example.org"]),
        (Opt.RAPID_COMMIT, True),
        (Opt.VENDOR_SPECIFIC, [(1, b"acs"), (2, b"\xc0\x00\x02\x09")]),
        (Opt.VIVSO, [(3561, [(1, b"x")]), (9, [])]),
        (Opt.VIVCO, [(3561, [b"a", b"bc"])]),
        (Opt.STATIC_ROUTE, [(IPv4Address("10.0.0.0"), IPv4Address("192.0.2.1"))]),
        (Opt.PATH_MTU_PLATEAU_TABLE, [68, 296]),
        (Opt.CLASSLESS_STATIC_ROUTE, [(IPv4Network("10.0.0.0/8"), IPv4Address("192.0.2.1"))]),
        (240, b"\x00private"),
    ],
)
def test_encode_decode_option(code: int, value: object) -> None:
    assert o.decode_option(code, o.encode_option(code, value)) == value


def test_encode_option_errors() -> None:
    with pytest.raises(OptionError):
        o.encode_option(Opt.LEASE_TIME, -1)
    with pytest.raises(OptionError):
        o.encode_option(Opt.ROUTER, ["not-an-address"])
    with pytest.raises(OptionError):
        o.encode_option(Opt.LEASE_TIME, "3600")  # type, not value, is wrong: still OptionError


@pytest.mark.parametrize(
    ("code", "raw", "line"),
    [
        (53, b"\x01", "(53) dhcp-message-type: DISCOVER"),
        (53, b"\x2a", "(53) dhcp-message-type: unknown(42)"),
        (3, b"\x0a\x4d\x00\x01\x0a\x4d\x00\x02", "(3) routers: 10.77.0.1, 10.77.0.2"),
        (51, b"\x00\x00\x00\x78", "(51) dhcp-lease-time: 120"),
        (12, b"gc-dhclient", '(12) host-name: "gc-dhclient"'),
        (12, b"\x01\x02", "(12) host-name: 0x0102"),
        (55, b"\x01\x03", "(55) dhcp-parameter-request-list: subnet-mask(1), routers(3)"),
        (61, UDHCPC_CLIENT_ID, "(61) dhcp-client-identifier: hwaddr 02:00:00:00:c1:02"),
        (
            61,
            DHCPCD_CLIENT_ID,
            "(61) dhcp-client-identifier: iaid 0x0000c103 DUID-LLT "
            "000100013299cc0102000000c103 (lladdr 02:00:00:00:c1:03)",
        ),
        (82, DHCRELAY_RELAY_INFO, '(82) dhcp-agent-options: circuit-id(1)="rd0"'),
        (82, b"\x02\x02\x00\x01", "(82) dhcp-agent-options: remote-id(2)=0x0001"),
        (52, b"\x03", "(52) dhcp-option-overload: file+sname"),
        (80, b"", "(80) rapid-commit: true"),
        (19, b"\x01", "(19) ip-forwarding: true"),
        (121, b"\x08\x0a\xc0\x00\x02\x01",
         "(121) classless-static-route: 10.0.0.0/8 via 192.0.2.1"),
        (224, b"\xab", "(224) option-224: 0xab"),
        (51, b"\x00\x78", "(51) dhcp-lease-time: <malformed: uint32 needs 4 bytes, got 2> 0x0078"),
        (82, b"\x01\x05ab", "(82) dhcp-agent-options: <malformed: relay sub-option 1 runs 3 "
         "bytes past option 82> 0x01056162"),
    ],
)  # fmt: skip
def test_format_option(code: int, raw: bytes, line: str) -> None:
    assert o.format_option(code, raw) == line


def test_format_options_keeps_order() -> None:
    lines = o.format_options({53: b"\x05", 54: b"\x0a\x4d\x00\x01"})
    assert lines == ["(53) dhcp-message-type: ACK", "(54) dhcp-server-identifier: 10.77.0.1"]
