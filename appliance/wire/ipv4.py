"""IPv4 header codec (RFC 791 §3.1) with the header checksum and validation reasons.

The builder writes a 20-byte header without options. The parser checks what a receiver
must check before trusting the payload (RFC 1122 §3.2.1) and names each failure with a
stable reason: "truncated", "bad_version", "bad_ihl", "bad_total_length", "bad_checksum",
"fragment".
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from appliance.wire import WireError
from appliance.wire.checksum import internet_checksum

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_VRRP = 112  # RFC 5798 §5.1.1

IPV4_HLEN = 20  # header without options
IP_DF = 0x4000  # don't fragment (RFC 791 §3.1, flags bit 1)
IP_MF = 0x2000  # more fragments
IP_OFFMASK = 0x1FFF  # fragment offset in 8-byte units

_HDR = struct.Struct("!BBHHHBBH4s4s")


def build_ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    dont_fragment: bool = False,
) -> bytes:
    """An IPv4 packet: 20-byte header (version 4, IHL 5, correct checksum) + payload.

    ident 0 without DF is what ISC dhcpd and Kea send for DHCP replies; the packet is
    never fragmented on our links, so the identification field carries nothing.
    """
    if len(src) != 4 or len(dst) != 4:
        raise ValueError("IPv4 addresses must be 4 bytes")
    total = IPV4_HLEN + len(payload)
    if total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes exceeds 65535")
    flags_frag = IP_DF if dont_fragment else 0
    csum = internet_checksum(
        _HDR.pack(0x45, tos, total, ident, flags_frag, ttl, proto, 0, src, dst)
    )
    return _HDR.pack(0x45, tos, total, ident, flags_frag, ttl, proto, csum, src, dst) + payload


class Ipv4Header(NamedTuple):
    """A parsed IPv4 header. `header_length` is IHL in bytes, `options` raw."""

    tos: int
    total_length: int
    ident: int
    flags: int  # the 3 flag bits, shifted down: 0b010 = DF, 0b001 = MF
    frag_offset: int  # in bytes (the field counts 8-byte units)
    ttl: int
    proto: int
    checksum: int
    src: bytes
    dst: bytes
    header_length: int = IPV4_HLEN
    options: bytes = b""

    @property
    def is_fragment(self) -> bool:
        """True for any piece of a fragmented datagram (MF set or a non-zero offset)."""
        return bool(self.flags & 0b001) or self.frag_offset != 0

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & 0b010)


def parse_ipv4(
    packet: bytes, *, verify_checksum: bool = True, allow_fragments: bool = False
) -> tuple[Ipv4Header, bytes]:
    """Parse an IPv4 packet and return (header, payload).

    The payload ends at the header's total length: bytes after it (Ethernet padding of a
    short frame) are dropped. Fragments are refused unless allow_fragments: we do not
    reassemble, and a DHCP message is never legitimately fragmented on a LAN.
    """
    if len(packet) < IPV4_HLEN:
        raise WireError("truncated", f"{len(packet)} bytes < IPv4 header")
    vihl, tos, total, ident, flags_frag, ttl, proto, csum, src, dst = _HDR.unpack_from(packet)
    if vihl >> 4 != 4:
        raise WireError("bad_version", f"version {vihl >> 4}")
    hlen = (vihl & 0x0F) * 4
    if hlen < IPV4_HLEN:
        raise WireError("bad_ihl", f"IHL {hlen // 4} < 5")
    if total < hlen:
        raise WireError("bad_total_length", f"total length {total} < header {hlen}")
    if total > len(packet):
        raise WireError("bad_total_length", f"total length {total} > {len(packet)} received")
    if verify_checksum and internet_checksum(packet[:hlen]) != 0:
        raise WireError("bad_checksum", f"header checksum 0x{csum:04x}")
    if not allow_fragments and flags_frag & (IP_MF | IP_OFFMASK):
        raise WireError(
            "fragment", f"offset {(flags_frag & IP_OFFMASK) * 8} flags 0x{flags_frag:04x}"
        )
    options = bytes(packet[IPV4_HLEN:hlen]) if hlen > IPV4_HLEN else b""
    hdr = Ipv4Header(
        tos, total, ident, flags_frag >> 13, (flags_frag & IP_OFFMASK) * 8, ttl, proto, csum,
        src, dst, hlen, options,
    )  # fmt: skip
    return hdr, bytes(packet[hlen:total])
