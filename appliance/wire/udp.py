"""UDP header codec (RFC 768) and the IPv4/UDP/Ethernet builders used to send DHCP replies.

A DHCP server must sometimes reply to a client that has no address yet (RFC 2131 §4.1:
unicast to the client's hardware address and yiaddr, or broadcast): the kernel cannot
route that, so the reply goes out through an AF_PACKET socket as a whole frame built
here. Parsing is the inverse, for frames read from such a socket.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from appliance.wire import WireError
from appliance.wire.checksum import internet_checksum, pseudo_header_sum
from appliance.wire.ether import ETH_P_IP, EthernetHeader, ethernet_frame, parse_ethernet
from appliance.wire.ipv4 import IPPROTO_UDP, Ipv4Header, build_ipv4, parse_ipv4

UDP_HLEN = 8

_HDR = struct.Struct("!HHHH")


def udp_checksum(src_ip: bytes, dst_ip: bytes, segment: bytes) -> int:
    """Checksum of a UDP segment (header with checksum 0, then data), as it goes on the wire.

    RFC 768: a computed checksum of 0 is transmitted as 0xffff, because 0 on the wire
    means "no checksum".
    """
    csum = internet_checksum(segment, pseudo_header_sum(src_ip, dst_ip, IPPROTO_UDP, len(segment)))
    return csum or 0xFFFF


def build_udp(src_ip: bytes, dst_ip: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP header + payload with the checksum over the IPv4 pseudo-header filled in."""
    length = UDP_HLEN + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
    # The header's words go into the initial sum, so the payload is copied only once.
    initial = pseudo_header_sum(src_ip, dst_ip, IPPROTO_UDP, length) + sport + dport + length
    csum = internet_checksum(payload, initial) or 0xFFFF  # RFC 768: 0 means "none"
    return _HDR.pack(sport, dport, length, csum) + payload


def ipv4_udp_packet(
    src_ip: bytes,
    dst_ip: bytes,
    sport: int,
    dport: int,
    payload: bytes,
    ttl: int = 64,
    tos: int = 0,
) -> bytes:
    """IPv4 header + UDP header + payload, both checksums correct (no Ethernet header)."""
    return build_ipv4(
        src_ip, dst_ip, IPPROTO_UDP, build_udp(src_ip, dst_ip, sport, dport, payload), ttl, tos
    )


def build_ipv4_udp_frame(
    dst_mac: bytes,
    src_mac: bytes,
    src_ip: bytes,
    dst_ip: bytes,
    sport: int,
    dport: int,
    payload: bytes,
    ttl: int = 64,
    tos: int = 0,
    vlans: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """A whole Ethernet frame carrying IPv4/UDP, ready for an AF_PACKET SOCK_RAW send."""
    packet = ipv4_udp_packet(src_ip, dst_ip, sport, dport, payload, ttl, tos)
    return ethernet_frame(dst_mac, src_mac, ETH_P_IP, packet, vlans)


class UdpHeader(NamedTuple):
    sport: int
    dport: int
    length: int
    checksum: int  # as received; 0 means the sender computed none (RFC 768)


def parse_udp(
    src_ip: bytes,
    dst_ip: bytes,
    segment: bytes,
    *,
    verify_checksum: bool = True,
    allow_partial: bool = False,
) -> tuple[UdpHeader, bytes]:
    """Parse a UDP segment carried between src_ip and dst_ip; return (header, payload).

    Reasons: "truncated", "bad_length", "bad_checksum". A zero checksum field is accepted
    (RFC 768: none computed).

    Frames sent from an ordinary socket on the same host or over veth reach an AF_PACKET
    reader before any checksum offload ran (PACKET_AUXDATA: TP_STATUS_CSUMNOTREADY): the
    field then holds only the folded pseudo-header sum (CHECKSUM_PARTIAL). They are not
    corrupt. Pass verify_checksum=False when auxdata says so, or allow_partial=True to
    accept a field equal to that partial sum when auxdata is not available.
    """
    if len(segment) < UDP_HLEN:
        raise WireError("truncated", f"{len(segment)} bytes < UDP header")
    sport, dport, length, csum = _HDR.unpack_from(segment)
    if length < UDP_HLEN or length > len(segment):
        raise WireError("bad_length", f"UDP length {length}, {len(segment)} bytes received")
    segment = segment[:length]
    if verify_checksum and csum != 0:
        pseudo = pseudo_header_sum(src_ip, dst_ip, IPPROTO_UDP, length)
        if internet_checksum(segment, pseudo) != 0 and not (allow_partial and csum == pseudo):
            raise WireError("bad_checksum", f"UDP checksum 0x{csum:04x}")
    return UdpHeader(sport, dport, length, csum), bytes(segment[UDP_HLEN:])


class Ipv4UdpFrame(NamedTuple):
    """An Ethernet/IPv4/UDP frame taken apart; `payload` is the UDP data."""

    eth: EthernetHeader
    ip: Ipv4Header
    udp: UdpHeader
    payload: bytes


def parse_ipv4_udp_frame(
    frame: bytes, *, verify_checksum: bool = True, allow_partial: bool = False
) -> Ipv4UdpFrame:
    """Parse Ethernet (VLAN tags followed) -> IPv4 -> UDP in one call.

    Raises WireError; besides the reasons of the layers, "not_ipv4" (EtherType) and
    "not_udp" (IP protocol). verify_checksum and allow_partial apply to the UDP checksum
    (see parse_udp); the IPv4 header checksum is never offloaded and is always checked.
    """
    eth = parse_ethernet(frame)
    if eth.ethertype != ETH_P_IP:
        raise WireError("not_ipv4", f"EtherType 0x{eth.ethertype:04x}")
    ip, segment = parse_ipv4(frame[eth.length :])
    if ip.proto != IPPROTO_UDP:
        raise WireError("not_udp", f"IP protocol {ip.proto}")
    udp, payload = parse_udp(
        ip.src, ip.dst, segment, verify_checksum=verify_checksum, allow_partial=allow_partial
    )
    return Ipv4UdpFrame(eth, ip, udp, payload)
