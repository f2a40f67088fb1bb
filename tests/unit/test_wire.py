"""Tests for appliance.wire: the RFC 1071 checksum, Ethernet/VLAN, IPv4 and UDP codecs.

Oracles: RFC 1071's worked example and a textbook IPv4 header, a word-by-word reference
sum, scapy 2.5.0 (checksums and whole frames), and the golden captures in
tests/unit/golden/ (frames built by real clients' raw sockets, and frames the kernel sent
with a partial UDP checksum on veth).
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import scapy.all as scapy_all
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.dhcp.message import DhcpMessage
from appliance.wire import WireError
from appliance.wire.checksum import (
    internet_checksum,
    ones_complement_sum,
    pseudo_header_sum,
    transport_checksum,
)
from appliance.wire.ether import (
    BROADCAST_MAC,
    ETH_P_8021AD,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    EthernetHeader,
    ethernet_frame,
    ethernet_header,
    mac_str,
    parse_ethernet,
    parse_mac,
    vlan_tci,
)
from appliance.wire.ipv4 import IPPROTO_UDP, build_ipv4, parse_ipv4
from appliance.wire.udp import (
    build_ipv4_udp_frame,
    build_udp,
    ipv4_udp_packet,
    parse_ipv4_udp_frame,
    parse_udp,
    udp_checksum,
)

GOLDEN = Path(__file__).parent / "golden"


def pcap_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    endian = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    frames, off = [], 24
    while off < len(data):
        _, _, incl, _ = struct.unpack_from(endian + "IIII", data, off)
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


def ip(s: str) -> bytes:
    return IPv4Address(s).packed


def reference_sum(data: bytes) -> int:
    """RFC 1071 §4.1 written out: add 16-bit words, fold carries."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


# -- checksum ---------------------------------------------------------------------------


def test_rfc1071_example() -> None:
    """RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d)."""
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D
    assert internet_checksum(data + b"\x22\x0d") == 0  # verifying a correct buffer


def test_ipv4_header_example() -> None:
    # The classic worked example (192.168.0.1 -> 192.168.0.199, UDP, DF, TTL 64).
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(hdr) == 0xB861


def test_checksum_edges() -> None:
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(bytes(7)) == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0x0000
    assert internet_checksum(b"\x01") == internet_checksum(b"\x01\x00") == 0xFEFF  # RFC 1071 §4.1
    assert ones_complement_sum(b"\xff\xff\x00\x01") == 0x0001  # end-around carry


@given(st.binary(max_size=3000), st.integers(0, 0xFFFF))
def test_checksum_matches_word_by_word_sum(data: bytes, initial: int) -> None:
    assert ones_complement_sum(data) == reference_sum(data)
    assert internet_checksum(data) == ~reference_sum(data) & 0xFFFF
    if len(data) % 2 == 0:  # a partial sum folds in like one more word
        assert ones_complement_sum(data, initial) == reference_sum(
            data + initial.to_bytes(2, "big")
        )


@given(st.binary(min_size=2, max_size=1500).filter(lambda b: len(b) % 2 == 0))
def test_inserting_the_checksum_verifies(data: bytes) -> None:
    csum = internet_checksum(data)
    assert internet_checksum(data + csum.to_bytes(2, "big")) == 0


def test_pseudo_header_sum() -> None:
    # 192.0.2.1 -> 192.0.2.2, UDP, 308 bytes: c000 + 0201 + c000 + 0202 + 0011 + 0134.
    want = reference_sum(bytes.fromhex("c0000201c000020200110134"))
    assert pseudo_header_sum(ip("192.0.2.1"), ip("192.0.2.2"), 17, 308) == want
    with pytest.raises(ValueError):
        pseudo_header_sum(b"\x01\x02\x03", ip("192.0.2.2"), 17, 8)


# -- Ethernet ---------------------------------------------------------------------------


def test_mac_helpers() -> None:
    b = bytes.fromhex("02000000c101")
    assert mac_str(b) == "02:00:00:00:c1:01"
    for s in (
        "02:00:00:00:c1:01",
        "02-00-00-00-C1-01",
        "02000000c101",
        "2:0:0:0:c1:1",
        " 02:00:00:00:c1:01\n",
    ):
        assert parse_mac(s) == b
    assert BROADCAST_MAC == b"\xff" * 6 and mac_str(BROADCAST_MAC) == "ff:ff:ff:ff:ff:ff"


@pytest.mark.parametrize(
    "s",
    ["", "02:00:00:00:c1", "02:00:00:00:c1:01:02", "02:00:00:00:c1:0g", "020:00:00:00:c1:01",
     "02:00-00:00:c1:01", "02000000c1", "0x02:00:00:00:c1:01", "02::00:00:00:c1", "+2:0:0:0:0:1"],
)  # fmt: skip
def test_parse_mac_rejects(s: str) -> None:
    with pytest.raises(ValueError):
        parse_mac(s)


@given(st.binary(min_size=6, max_size=6))
def test_mac_roundtrip(b: bytes) -> None:
    assert parse_mac(mac_str(b)) == b


def test_ethernet_untagged() -> None:
    dst, src = BROADCAST_MAC, bytes.fromhex("020000005e01")
    frame = ethernet_frame(dst, src, ETH_P_IP, b"payload")
    assert frame == dst + src + b"\x08\x00payload"
    h = parse_ethernet(frame)
    assert h == EthernetHeader(dst, src, ETH_P_IP) and h.length == 14 and h.vlan_ids == ()
    assert h.pack() == frame[:14]


def test_ethernet_qinq() -> None:
    """802.1ad outer tag (0x88a8) then 802.1Q inner tag (0x8100), then the EtherType."""
    vlans = ((ETH_P_8021AD, vlan_tci(100, pcp=5)), (ETH_P_8021Q, vlan_tci(200, dei=1)))
    frame = ethernet_frame(BROADCAST_MAC, bytes(6), ETH_P_IP, b"x", vlans)
    assert frame[12:22] == bytes.fromhex("88a8a064810010c80800")
    h = parse_ethernet(frame)
    assert h.vlans == vlans and h.vlan_ids == (100, 200) and h.ethertype == ETH_P_IP
    assert h.length == 22 and frame[h.length :] == b"x"
    with pytest.raises(ValueError):
        vlan_tci(4096)


@pytest.mark.parametrize(
    ("frame", "why"),
    [
        (bytes(13), "truncated"),
        (bytes(12) + b"\x81\x00\x00\x01", "truncated"),  # tag without the EtherType after it
        (bytes(12) + b"\x88\xa8\x00\x01\x81\x00\x00\x02\x81\x00\x00\x03\x08\x00", "too_many_vlans"),
    ],
)
def test_ethernet_rejects(frame: bytes, why: str) -> None:
    with pytest.raises(WireError) as e:
        parse_ethernet(frame)
    assert e.value.reason == why and isinstance(e.value, ValueError)


def test_ethernet_header_rejects_bad_mac() -> None:
    with pytest.raises(ValueError):
        ethernet_header(bytes(5), bytes(6), ETH_P_ARP)


# -- IPv4 ---------------------------------------------------------------------------------


def test_build_ipv4() -> None:
    pkt = build_ipv4(ip("192.0.2.1"), ip("192.0.2.2"), IPPROTO_UDP, b"abcd", ttl=64, tos=0x10)
    assert pkt[:2] == b"\x45\x10" and pkt[2:4] == (24).to_bytes(2, "big")
    assert pkt[8] == 64 and pkt[9] == 17 and pkt[12:16] == ip("192.0.2.1")
    assert internet_checksum(pkt[:20]) == 0 and pkt[20:] == b"abcd"
    hdr, payload = parse_ipv4(pkt)
    assert (hdr.ttl, hdr.tos, hdr.proto, hdr.total_length, hdr.ident) == (64, 0x10, 17, 24, 0)
    assert not hdr.is_fragment and not hdr.dont_fragment and payload == b"abcd"
    df = build_ipv4(ip("192.0.2.1"), ip("192.0.2.2"), 17, b"", ident=7, dont_fragment=True)
    assert parse_ipv4(df)[0].dont_fragment and parse_ipv4(df)[0].ident == 7
    with pytest.raises(ValueError):
        build_ipv4(bytes(3), bytes(4), 17, b"")
    with pytest.raises(ValueError):
        build_ipv4(bytes(4), bytes(4), 17, bytes(65516))


def _hdr(**kw: int) -> bytearray:
    """A valid 20-byte header + 8 payload bytes, then fields overridden, checksum redone."""
    f = dict(vihl=0x45, tos=0, total=28, ident=0, frag=0, ttl=64, proto=17)
    f.update(kw)
    h = bytearray(
        struct.pack("!BBHHHBBH4s4s", f["vihl"], f["tos"], f["total"], f["ident"], f["frag"],
                    f["ttl"], f["proto"], 0, ip("10.0.0.1"), ip("10.0.0.2"))
    )  # fmt: skip
    ihl = (f["vihl"] & 0xF) * 4
    h += bytes(max(0, ihl - 20))
    h[10:12] = internet_checksum(bytes(h[: max(ihl, 20)])).to_bytes(2, "big")
    return h + bytearray(b"payload!")


@pytest.mark.parametrize(
    ("packet", "why"),
    [
        (bytes(19), "truncated"),
        (bytes(_hdr(vihl=0x65)), "bad_version"),
        (bytes(_hdr(vihl=0x44)), "bad_ihl"),
        (bytes(_hdr(total=19)), "bad_total_length"),
        (bytes(_hdr(vihl=0x46, total=20)), "bad_total_length"),  # total < IHL
        (bytes(_hdr(total=29)), "bad_total_length"),  # claims more than received
        (bytes(_hdr(frag=0x2000)), "fragment"),  # MF: first fragment
        (bytes(_hdr(frag=0x0003)), "fragment"),  # offset 24: a later one
    ],
)
def test_parse_ipv4_rejects(packet: bytes, why: str) -> None:
    with pytest.raises(WireError) as e:
        parse_ipv4(packet)
    assert e.value.reason == why


def test_parse_ipv4_checksum_options_padding_fragments() -> None:
    bad = _hdr()
    bad[10] ^= 1
    with pytest.raises(WireError) as e:
        parse_ipv4(bytes(bad))
    assert e.value.reason == "bad_checksum"
    assert parse_ipv4(bytes(bad), verify_checksum=False)[1] == b"payload!"

    with_opts = _hdr(vihl=0x46, total=32)  # IHL 6: 4 bytes of options
    hdr, payload = parse_ipv4(bytes(with_opts))
    assert hdr.header_length == 24 and hdr.options == bytes(4) and payload == b"payload!"

    padded = bytes(_hdr(total=24)) + bytes(18)  # Ethernet padding after the datagram
    assert parse_ipv4(padded)[1] == b"payl"

    frag = _hdr(frag=0x2000 | 0x0003, ttl=1)
    hdr, _ = parse_ipv4(bytes(frag), allow_fragments=True)
    assert hdr.is_fragment and hdr.frag_offset == 24 and hdr.flags == 0b001 and hdr.ttl == 1


# -- UDP ----------------------------------------------------------------------------------


def test_build_and_parse_udp() -> None:
    src, dst = ip("192.0.2.1"), ip("192.0.2.100")
    seg = build_udp(src, dst, 67, 68, b"hello")
    assert seg[:6] == struct.pack("!HHH", 67, 68, 13)
    assert transport_checksum(src, dst, IPPROTO_UDP, seg) == 0
    hdr, payload = parse_udp(src, dst, seg)
    assert (hdr.sport, hdr.dport, hdr.length) == (67, 68, 13) and payload == b"hello"
    # Trailing bytes past the UDP length are not payload.
    assert parse_udp(src, dst, seg + b"\0\0")[1] == b"hello"
    # A zero checksum means "none computed" (RFC 768) and is accepted.
    assert parse_udp(src, dst, seg[:6] + b"\0\0" + seg[8:])[1] == b"hello"


def test_udp_checksum_zero_goes_out_as_ffff() -> None:
    """RFC 768: a computed 0 is sent as all ones. Find a payload that sums to 0."""
    src, dst = ip("10.0.0.1"), ip("10.0.0.2")
    base = struct.pack("!HHHH", 67, 68, 10, 0)
    # Choose the 2-byte payload that makes the one's complement sum 0xffff.
    partial = ones_complement_sum(base, pseudo_header_sum(src, dst, 17, 10))
    filler = (0xFFFF - partial).to_bytes(2, "big")
    assert internet_checksum(base + filler, pseudo_header_sum(src, dst, 17, 10)) == 0
    seg = build_udp(src, dst, 67, 68, filler)
    assert seg[6:8] == b"\xff\xff"
    assert udp_checksum(src, dst, base + filler) == 0xFFFF
    assert parse_udp(src, dst, seg)[1] == filler


@pytest.mark.parametrize(
    ("segment", "why"),
    [
        (bytes(7), "truncated"),
        (struct.pack("!HHHH", 68, 67, 7, 0), "bad_length"),
        (struct.pack("!HHHH", 68, 67, 12, 0) + b"abc", "bad_length"),
        (struct.pack("!HHHH", 68, 67, 9, 0x1234) + b"a", "bad_checksum"),
    ],
)
def test_parse_udp_rejects(segment: bytes, why: str) -> None:
    with pytest.raises(WireError) as e:
        parse_udp(ip("10.0.0.1"), ip("10.0.0.2"), segment)
    assert e.value.reason == why


def test_frame_builder_roundtrip() -> None:
    payload = bytes(range(256)) + b"odd"
    frame = build_ipv4_udp_frame(
        bytes.fromhex("02000000c101"), bytes.fromhex("020000005e01"),
        ip("198.51.100.1"), ip("198.51.100.170"), 67, 68, payload, ttl=32,
        vlans=((ETH_P_8021Q, vlan_tci(42)),),
    )  # fmt: skip
    f = parse_ipv4_udp_frame(frame)
    assert f.eth.dst == bytes.fromhex("02000000c101") and f.eth.vlan_ids == (42,)
    assert f.ip.src == ip("198.51.100.1") and f.ip.ttl == 32 and f.ip.total_length == 28 + 259
    assert (f.udp.sport, f.udp.dport) == (67, 68) and f.payload == payload
    assert frame[f.eth.length :] == ipv4_udp_packet(
        ip("198.51.100.1"), ip("198.51.100.170"), 67, 68, payload, ttl=32
    )


def test_frame_parser_rejects_non_udp() -> None:
    arp = ethernet_frame(BROADCAST_MAC, bytes(6), ETH_P_ARP, bytes(28))
    tcp = ethernet_frame(
        BROADCAST_MAC, bytes(6), ETH_P_IP, build_ipv4(bytes(4), bytes(4), 6, bytes(20))
    )
    for frame, why in ((arp, "not_ipv4"), (tcp, "not_udp")):
        with pytest.raises(WireError) as e:
            parse_ipv4_udp_frame(frame)
        assert e.value.reason == why


# -- golden frames ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dhclient", "udhcpc", "dhcpcd", "dhcrelay_downstream"])
def test_golden_frames_from_raw_sockets_verify(name: str) -> None:
    """Clients (and udhcpd answering them) build whole frames on packet sockets: every
    checksum is complete and verifies."""
    for frame in pcap_frames(GOLDEN / f"{name}.pcap"):
        f = parse_ipv4_udp_frame(frame)
        assert {f.udp.sport, f.udp.dport} <= {67, 68}
        assert f.udp.length == 308 and len(f.payload) == 300
        DhcpMessage.decode(f.payload)


def test_golden_partial_checksums_from_veth() -> None:
    """dhcrelay and udhcpd send through ordinary UDP sockets; captured on veth, their UDP
    checksum field holds only the folded pseudo-header sum (CHECKSUM_PARTIAL)."""
    frames = pcap_frames(GOLDEN / "dhcrelay_upstream.pcap")
    assert len(frames) == 4
    for frame in frames:
        with pytest.raises(WireError) as e:
            parse_ipv4_udp_frame(frame)
        assert e.value.reason == "bad_checksum"
        f = parse_ipv4_udp_frame(frame, verify_checksum=False)
        assert f.udp.checksum == pseudo_header_sum(f.ip.src, f.ip.dst, 17, f.udp.length)
        assert parse_ipv4_udp_frame(frame, allow_partial=True) == f
        assert f.ip.dont_fragment and (f.udp.sport, f.udp.dport) == (67, 67)
        DhcpMessage.decode(f.payload)
    # A genuinely corrupt checksum is still refused with allow_partial.
    broken = bytearray(frames[0])
    broken[14 + 20 + 6] ^= 0x40
    with pytest.raises(WireError):
        parse_ipv4_udp_frame(bytes(broken), allow_partial=True)


# -- scapy as an oracle (python3-scapy: a test dependency, scripts/setup.sh) --------------------


@settings(max_examples=60)
@given(st.binary(max_size=1500))
def test_checksum_matches_scapy(data: bytes) -> None:
    from scapy.utils import checksum

    assert internet_checksum(data) == checksum(data)


@settings(max_examples=60)
@given(
    st.ip_addresses(v=4), st.ip_addresses(v=4), st.integers(0, 65535), st.integers(0, 65535),
    st.binary(max_size=600), st.integers(1, 255), st.integers(0, 255),
)  # fmt: skip
def test_ipv4_udp_packet_matches_scapy(
    src: IPv4Address, dst: IPv4Address, sport: int, dport: int, payload: bytes, ttl: int, tos: int
) -> None:
    ours = ipv4_udp_packet(src.packed, dst.packed, sport, dport, payload, ttl=ttl, tos=tos)
    theirs = bytes(
        scapy_all.IP(src=str(src), dst=str(dst), ttl=ttl, tos=tos, id=0, flags=0)
        / scapy_all.UDP(sport=sport, dport=dport)
        / scapy_all.Raw(payload)
    )
    assert ours == theirs


@settings(max_examples=30)
@given(
    st.binary(min_size=6, max_size=6),
    st.integers(0, 4095),
    st.integers(0, 4095),
    st.binary(max_size=64),
)
def test_qinq_frames_match_scapy(mac: bytes, outer: int, inner: int, payload: bytes) -> None:
    vlans = ((ETH_P_8021AD, outer), (ETH_P_8021Q, inner))
    ours = ethernet_frame(BROADCAST_MAC, mac, ETH_P_IP, payload, vlans)
    theirs = bytes(
        scapy_all.Ether(dst="ff:ff:ff:ff:ff:ff", src=mac_str(mac), type=ETH_P_8021AD)
        / scapy_all.Dot1AD(vlan=outer, type=ETH_P_8021Q)
        / scapy_all.Dot1Q(vlan=inner, type=ETH_P_IP)
        / scapy_all.Raw(payload)
    )
    assert ours == theirs
    assert parse_ethernet(theirs).vlan_ids == (outer, inner)


def test_scapy_dhcp_frame_parses() -> None:
    pkt = (
        scapy_all.Ether(src="02:00:00:00:c1:09", dst="ff:ff:ff:ff:ff:ff")
        / scapy_all.Dot1Q(vlan=7)
        / scapy_all.IP(src="0.0.0.0", dst="255.255.255.255")
        / scapy_all.UDP(sport=68, dport=67)
        / scapy_all.BOOTP(chaddr=bytes.fromhex("02000000c109"), xid=99)
        / scapy_all.DHCP(options=[("message-type", "discover"), "end"])
    )
    f = parse_ipv4_udp_frame(bytes(pkt))
    assert f.eth.vlan_ids == (7,) and f.ip.dst == b"\xff\xff\xff\xff"
    msg = DhcpMessage.decode(f.payload)
    assert msg.xid == 99 and msg.message_type == 1 and msg.mac == bytes.fromhex("02000000c109")


# -- fuzz: parsers raise WireError and nothing else ------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=120), st.sampled_from([b"", b"\x08\x00", b"\x81\x00", b"\x88\xa8"]))
def test_wire_parsers_never_crash(data: bytes, ethertype: bytes) -> None:
    frame = bytes(12) + ethertype + data if ethertype else data
    for fn in (parse_ethernet, parse_ipv4_udp_frame):
        try:
            fn(frame)
        except WireError:
            pass
    for verify in (True, False):
        try:
            parse_ipv4(data, verify_checksum=verify, allow_fragments=not verify)
        except WireError:
            pass
        try:
            parse_udp(bytes(4), bytes(4), data, verify_checksum=verify, allow_partial=True)
        except WireError:
            pass
