"""VRRPv3 advert codec: keepalived's real bytes, scapy as an oracle, every reject reason,
round trips and a fuzzer (RFC 5798 §5, §7.1)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.vrrp.packet import (
    VRRP_GROUP,
    Advert,
    Received,
    Reject,
    check_group,
    decode_advert,
    decode_datagram,
    encode_advert,
    encode_datagram,
)
from appliance.wire.checksum import internet_checksum

# -- golden packets --------------------------------------------------------------------
# Captured from keepalived 2.2.7 (Debian 12) in a network namespace, eth0 = 192.0.2.1/24
# (veth, MAC 02:00:00:00:00:01, no VMAC), started as
#   keepalived -n -l -D -P -f vrrp3-keepalived.conf -p PIDFILE -r VRRP_PIDFILE
# with
#   global_defs { router_id ka1  vrrp_version 3 }
#   vrrp_instance VI_1 { state MASTER  interface eth0  virtual_router_id 51
#                        priority 150  advert_int 1  virtual_ipaddress { 192.0.2.100/24 } }
# Source: reference capture vrrp3-keepalived-session.pcap (frames 1 and 9; the Ethernet
# header 01:00:5e:00:00:12 <- 02:00:00:00:00:01 type 0x0800 is stripped). tcpdump -vv:
#   IP (tos 0xc0, ttl 255, id 1, offset 0, flags [none], proto VRRP (112), length 32)
#   192.0.2.1 > 224.0.0.18: VRRPv3, Advertisement, vrid 51, prio 150, intvl 100cs,
#   length 12, addrs: 192.0.2.100
KEEPALIVED_ADVERT = bytes.fromhex(
    "45c0002000010000ff701899c0000201e0000012" "313396010064d371c0000264"
)
# Frame 9, the same instance stopped with SIGTERM: "(VI_1) sent 0 priority".
#   IP (tos 0xc0, ttl 255, id 4, ...) 192.0.2.1 > 224.0.0.18: VRRPv3, Advertisement,
#   vrid 51, prio 0, intvl 100cs, length 12, addrs: 192.0.2.100
KEEPALIVED_PRIO0 = bytes.fromhex(
    "45c0002000040000ff701896c0000201e0000012" "313300010064" "6972" "c0000264"
)
# Source: reference capture vrrp3-keepalived-2vip-adv10ms.pcap frame 1; same set-up with
# advert_int 0.01 and virtual_ipaddress { 192.0.2.100/24 192.0.2.101/24 }. tcpdump -vv:
#   IP (tos 0xc0, ttl 255, id 1, ...) 192.0.2.1 > 224.0.0.18: VRRPv3, Advertisement,
#   vrid 51, prio 150, intvl 1cs, length 16, addrs(2): 192.0.2.100,192.0.2.101
KEEPALIVED_2VIP_10MS = bytes.fromhex(
    "45c0002400010000ff701895c0000201e0000012" "313396020001116ac0000264c0000265"
)

SRC = IPv4Address("192.0.2.1")
VIP = IPv4Address("192.0.2.100")
VIP2 = IPv4Address("192.0.2.101")


def test_keepalived_advert_decodes() -> None:
    r = decode_datagram(KEEPALIVED_ADVERT)
    assert r == Received(src=SRC, dst=VRRP_GROUP,
                         advert=Advert(vrid=51, priority=150, max_adver_int_cs=100,
                                       addresses=(VIP,)))


def test_keepalived_priority_zero_decodes() -> None:
    r = decode_datagram(KEEPALIVED_PRIO0)
    assert isinstance(r, Received)
    assert r.advert.priority == 0


def test_keepalived_two_vips_10ms_decodes() -> None:
    r = decode_datagram(KEEPALIVED_2VIP_10MS)
    assert isinstance(r, Received)
    assert r.advert == Advert(51, 150, 1, (VIP, VIP2))


@pytest.mark.parametrize("golden,advert,ident", [
    (KEEPALIVED_ADVERT, Advert(51, 150, 100, (VIP,)), 1),
    (KEEPALIVED_PRIO0, Advert(51, 0, 100, (VIP,)), 4),
    (KEEPALIVED_2VIP_10MS, Advert(51, 150, 1, (VIP, VIP2)), 1),
])
def test_we_encode_keepalived_bytes_exactly(golden: bytes, advert: Advert, ident: int) -> None:
    """Byte for byte, IP header included (TOS 0xc0, TTL 255, no DF, same checksum)."""
    assert encode_datagram(advert, SRC, ident=ident) == golden
    assert encode_advert(advert, SRC) == golden[20:]


def test_checksum_covers_the_pseudo_header() -> None:
    """§5.2.8: the same VRRP message from another source has another checksum."""
    a = Advert(51, 150, 100, (VIP,))
    assert encode_advert(a, SRC)[6:8] == bytes.fromhex("d371")
    assert encode_advert(a, IPv4Address("192.0.2.2"))[6:8] != bytes.fromhex("d371")
    # and a checksum over the message alone (VRRPv2 style) is not what keepalived sends
    msg = encode_advert(a, SRC)
    assert internet_checksum(msg[:6] + b"\0\0" + msg[8:]) != 0xD371


# -- scapy as an independent oracle ----------------------------------------------------

adverts = st.builds(
    Advert,
    vrid=st.integers(1, 255),
    priority=st.integers(0, 255),
    max_adver_int_cs=st.integers(1, 4095),
    addresses=st.lists(st.integers(0, 2**32 - 1).map(IPv4Address), max_size=20).map(tuple),
)
addresses = st.integers(0, 2**32 - 1).map(IPv4Address)


@settings(max_examples=200, deadline=None)
@given(adverts, addresses)
def test_scapy_builds_the_same_bytes(advert: Advert, src: IPv4Address) -> None:
    from scapy.all import raw
    from scapy.layers.inet import IP
    from scapy.layers.vrrp import VRRPv3

    pkt = IP(src=str(src), dst=str(VRRP_GROUP), ttl=255, tos=0xC0, id=7) / VRRPv3(
        vrid=advert.vrid, priority=advert.priority, adv=advert.max_adver_int_cs,
        addrlist=[str(a) for a in advert.addresses])
    assert raw(pkt) == encode_datagram(advert, src, ident=7)


# -- round trip ------------------------------------------------------------------------


@given(adverts, addresses, addresses)
def test_round_trip(advert: Advert, src: IPv4Address, dst: IPv4Address) -> None:
    assert decode_advert(encode_advert(advert, src, dst), src, dst) == advert
    assert decode_datagram(encode_datagram(advert, src, dst)) == Received(src, dst, advert)


def test_encoder_refuses_what_cannot_be_sent() -> None:
    for bad in (Advert(0, 1, 1, ()), Advert(256, 1, 1, ()), Advert(1, 256, 1, ()),
                Advert(1, 1, 4096, ()), Advert(1, 1, 1, (VIP,) * 256)):
        with pytest.raises(ValueError):
            encode_advert(bad, SRC)


# -- every reject reason ---------------------------------------------------------------

GOOD = KEEPALIVED_ADVERT


def _fix_ip_checksum(pkt: bytearray) -> bytes:
    pkt[10:12] = b"\0\0"
    pkt[10:12] = internet_checksum(bytes(pkt[:20])).to_bytes(2, "big")
    return bytes(pkt)


def _with_vrrp(message: bytes, ttl: int = 255) -> bytes:
    """An IP packet around an arbitrary VRRP message, IP header valid."""
    hdr = bytearray(GOOD[:20])
    hdr[2:4] = (20 + len(message)).to_bytes(2, "big")
    hdr[8] = ttl
    return _fix_ip_checksum(hdr) + message


def _vrrp_checksummed(message: bytearray) -> bytes:
    """Recompute the VRRP checksum, so that only the field under test is wrong."""
    from appliance.wire.checksum import pseudo_header_sum

    message[6:8] = b"\0\0"
    c = internet_checksum(bytes(message),
                          pseudo_header_sum(SRC.packed, VRRP_GROUP.packed, 112, len(message)))
    message[6:8] = c.to_bytes(2, "big")
    return bytes(message)


def test_reject_ttl() -> None:
    """§7.1: TTL must be 255 -- a packet routed from elsewhere is refused."""
    assert decode_datagram(_with_vrrp(GOOD[20:], ttl=64)) is Reject.BAD_TTL
    assert decode_datagram(_with_vrrp(GOOD[20:], ttl=254)) is Reject.BAD_TTL


def test_reject_checksum() -> None:
    msg = bytearray(GOOD[20:])
    msg[7] ^= 0x01
    assert decode_datagram(_with_vrrp(bytes(msg))) is Reject.BAD_CHECKSUM
    # a flipped address byte is caught by the checksum too
    msg = bytearray(GOOD[20:])
    msg[-1] ^= 0x80
    assert decode_datagram(_with_vrrp(bytes(msg))) is Reject.BAD_CHECKSUM


def test_reject_version() -> None:
    msg = bytearray(GOOD[20:])
    msg[0] = 0x21  # VRRPv2 advert
    assert decode_datagram(_with_vrrp(_vrrp_checksummed(msg))) is Reject.BAD_VERSION
    msg[0] = 0x41
    assert decode_datagram(_with_vrrp(_vrrp_checksummed(msg))) is Reject.BAD_VERSION


def test_reject_type() -> None:
    msg = bytearray(GOOD[20:])
    msg[0] = 0x32
    assert decode_datagram(_with_vrrp(_vrrp_checksummed(msg))) is Reject.BAD_TYPE


def test_reject_interval_zero() -> None:
    msg = bytearray(GOOD[20:])
    msg[4:6] = b"\x00\x00"
    assert decode_datagram(_with_vrrp(_vrrp_checksummed(msg))) is Reject.BAD_INTERVAL
    # the 4 reserved bits are ignored (§5.2.6): rsvd set, interval 0 is still 0
    msg[4:6] = b"\xf0\x00"
    assert decode_datagram(_with_vrrp(_vrrp_checksummed(msg))) is Reject.BAD_INTERVAL


def test_reserved_bits_are_ignored() -> None:
    msg = bytearray(GOOD[20:])
    msg[4] |= 0xF0
    r = decode_datagram(_with_vrrp(_vrrp_checksummed(msg)))
    assert isinstance(r, Received) and r.advert.max_adver_int_cs == 100


@pytest.mark.parametrize("cut", [0, 1, 7])
def test_reject_truncated_header(cut: int) -> None:
    assert decode_datagram(_with_vrrp(GOOD[20 : 20 + cut])) is Reject.TRUNCATED


def test_reject_truncated_address_list() -> None:
    msg = bytearray(GOOD[20:])
    msg[3] = 2  # says two addresses, carries one
    assert decode_datagram(_with_vrrp(_vrrp_checksummed(msg))) is Reject.TRUNCATED


def test_reject_truncated_ip() -> None:
    assert decode_datagram(GOOD[:19]) is Reject.TRUNCATED
    assert decode_datagram(b"") is Reject.TRUNCATED


def test_reject_trailing_bytes() -> None:
    msg = bytearray(GOOD[20:] + b"\0\0\0\0")
    assert decode_datagram(_with_vrrp(_vrrp_checksummed(msg))) is Reject.BAD_LENGTH


def test_reject_bad_ip_header() -> None:
    assert decode_datagram(b"\x60" + GOOD[1:]) is Reject.BAD_IP_HEADER  # IPv6 nibble
    udp = bytearray(GOOD)
    udp[9] = 17
    assert decode_datagram(_fix_ip_checksum(udp)) is Reject.BAD_IP_HEADER
    frag = bytearray(GOOD)
    frag[6] = 0x20  # MF
    assert decode_datagram(_fix_ip_checksum(frag)) is Reject.BAD_IP_HEADER
    too_long = bytearray(GOOD)
    too_long[3] += 1  # total length past the end
    assert decode_datagram(_fix_ip_checksum(too_long)) is Reject.BAD_IP_HEADER


def test_check_group_vrid_and_addresses() -> None:
    a = Advert(51, 150, 100, (VIP, VIP2))
    assert check_group(a, 51, (VIP, VIP2)) is None
    assert check_group(a, 51, (VIP2, VIP)) is None  # order does not matter
    assert check_group(a, 52, (VIP, VIP2)) is Reject.OTHER_VRID
    assert check_group(a, 51, (VIP,)) is Reject.ADDR_MISMATCH
    assert check_group(Advert(51, 150, 100, (VIP, VIP)), 51, (VIP, VIP2)) is Reject.ADDR_MISMATCH
    assert check_group(Advert(51, 150, 100, ()), 51, (VIP,)) is Reject.ADDR_MISMATCH


def test_reject_names_are_counter_names() -> None:
    names = [r.value for r in Reject]
    assert len(set(names)) == len(names)
    assert all(n.startswith("rx_") and n == r.counter for n, r in zip(names, Reject, strict=True))
    for wanted in ("rx_bad_version", "rx_bad_ttl", "rx_bad_checksum", "rx_truncated",
                   "rx_other_vrid", "rx_addr_mismatch", "rx_bad_type", "rx_bad_interval"):
        assert wanted in names


# -- fuzz: only a packet or a reason, never an exception -------------------------------


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_decode_datagram_random(data: bytes) -> None:
    assert isinstance(decode_datagram(data), Received | Reject)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=100))
def test_fuzz_decode_advert_random(data: bytes) -> None:
    assert isinstance(decode_advert(data, SRC, VRRP_GROUP), Advert | Reject)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from([KEEPALIVED_ADVERT, KEEPALIVED_PRIO0, KEEPALIVED_2VIP_10MS]),
       st.lists(st.tuples(st.integers(0, 47), st.integers(0, 255)), min_size=1, max_size=4),
       st.integers(0, 48))
def test_fuzz_mutated_keepalived(golden: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    pkt = bytearray(golden)
    for pos, val in edits:
        if pos < len(pkt):
            pkt[pos] = val
    r = decode_datagram(bytes(pkt[: max(cut, 0) or len(pkt)]))
    assert isinstance(r, Received | Reject)
    if isinstance(r, Received):  # whatever gets through is self-consistent
        assert 1 <= r.advert.max_adver_int_cs <= 4095
        assert 0 <= r.advert.priority <= 255
