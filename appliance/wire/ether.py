"""Ethernet II header codec with 802.1Q / 802.1ad VLAN tags, and MAC address helpers.

Frame layout (IEEE 802.3 §3.1.1, IEEE 802.1Q §9.5): destination MAC (6), source MAC (6),
then zero or more 4-byte tags (TPID 0x88a8 for an 802.1ad service tag, 0x8100 for an
802.1Q customer tag, each followed by a 16-bit TCI), then the EtherType of the payload.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from appliance.wire import WireError

ETH_ALEN = 6  # octets in a MAC address
ETH_HLEN = 14  # untagged Ethernet II header
ETH_ZLEN = 60  # minimum frame without FCS (IEEE 802.3 §4.4.2); the NIC pads, we don't have to

ETH_P_IP = 0x0800  # IPv4 (RFC 894)
ETH_P_ARP = 0x0806  # ARP (RFC 826)
ETH_P_8021Q = 0x8100  # IEEE 802.1Q customer VLAN tag
ETH_P_8021AD = 0x88A8  # IEEE 802.1ad service VLAN tag (QinQ outer tag)
ETH_P_IPV6 = 0x86DD  # IPv6 (RFC 2464)

VLAN_TPIDS = frozenset((ETH_P_8021Q, ETH_P_8021AD))
MAX_VLAN_TAGS = 2  # QinQ; deeper stacks are not something a DHCP edge box serves

BROADCAST_MAC = b"\xff" * ETH_ALEN
ZERO_MAC = b"\x00" * ETH_ALEN

_HDR = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


def mac_str(b: bytes) -> str:
    """Lower-case colon form of a hardware address: b'\\x02\\x00..' -> '02:00:..'."""
    return ":".join(f"{x:02x}" for x in b)


def parse_mac(s: str) -> bytes:
    """Parse a 48-bit MAC written as 'aa:bb:cc:dd:ee:ff', 'aa-bb-..' or 'aabbccddeeff'.

    Groups may drop a leading zero ('2:0:0:0:c1:1'). Raises ValueError otherwise.
    """
    text = s.strip()
    if ":" in text or "-" in text:
        sep = ":" if ":" in text else "-"
        groups = text.split(sep)
        if len(groups) != ETH_ALEN or any(
            not 1 <= len(g) <= 2 or not _HEXDIGITS.issuperset(g) for g in groups
        ):
            raise ValueError(f"not a MAC address: {s!r}")
        return bytes(int(g, 16) for g in groups)
    if len(text) == 2 * ETH_ALEN and _HEXDIGITS.issuperset(text):
        return bytes.fromhex(text)
    raise ValueError(f"not a MAC address: {s!r}")


def vlan_tci(vid: int, pcp: int = 0, dei: int = 0) -> int:
    """Tag control information: priority (3 bits), drop eligible (1), VLAN id (12)."""
    if not 0 <= vid < 4096 or not 0 <= pcp < 8 or dei not in (0, 1):
        raise ValueError(f"bad VLAN tag vid={vid} pcp={pcp} dei={dei}")
    return (pcp << 13) | (dei << 12) | vid


class EthernetHeader(NamedTuple):
    """A parsed Ethernet header; `vlans` lists (tpid, tci) outermost first.

    Parsed headers are NamedTuples rather than frozen dataclasses: they are made for
    every received frame, and a frozen dataclass costs a __setattr__ call per field.
    """

    dst: bytes
    src: bytes
    ethertype: int
    vlans: tuple[tuple[int, int], ...] = ()

    @property
    def length(self) -> int:
        """Header length in bytes: where the payload starts in the frame."""
        return ETH_HLEN + 4 * len(self.vlans)

    @property
    def vlan_ids(self) -> tuple[int, ...]:
        return tuple(tci & 0x0FFF for _, tci in self.vlans)

    def pack(self) -> bytes:
        return ethernet_header(self.dst, self.src, self.ethertype, self.vlans)


def ethernet_header(
    dst_mac: bytes, src_mac: bytes, ethertype: int, vlans: tuple[tuple[int, int], ...] = ()
) -> bytes:
    """Pack an Ethernet header; `vlans` are (tpid, tci) pairs, outermost first."""
    if len(dst_mac) != ETH_ALEN or len(src_mac) != ETH_ALEN:
        raise ValueError("MAC addresses must be 6 bytes")
    if not vlans:
        return _HDR.pack(dst_mac, src_mac, ethertype)
    tags = b"".join(_TAG.pack(tpid, tci) for tpid, tci in vlans)
    return dst_mac + src_mac + tags + ethertype.to_bytes(2, "big")


def ethernet_frame(
    dst_mac: bytes,
    src_mac: bytes,
    ethertype: int,
    payload: bytes,
    vlans: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """An Ethernet frame (no FCS, no padding: the kernel/NIC pads short frames)."""
    return ethernet_header(dst_mac, src_mac, ethertype, vlans) + payload


def parse_ethernet(frame: bytes) -> EthernetHeader:
    """Parse the header of an Ethernet II frame, following up to two VLAN tags.

    Reasons: "truncated" (shorter than the header), "too_many_vlans".
    The payload starts at `header.length`.
    """
    if len(frame) < ETH_HLEN:
        raise WireError("truncated", f"{len(frame)} bytes < Ethernet header")
    dst, src, ethertype = _HDR.unpack_from(frame)
    if ethertype not in VLAN_TPIDS:
        return EthernetHeader(dst, src, ethertype)
    vlans: list[tuple[int, int]] = []
    off = 12
    while ethertype in VLAN_TPIDS:
        if len(vlans) == MAX_VLAN_TAGS:
            raise WireError("too_many_vlans", f"more than {MAX_VLAN_TAGS} VLAN tags")
        if len(frame) < off + 4 + 2:
            raise WireError("truncated", "VLAN tag runs past the frame")
        tpid, tci = _TAG.unpack_from(frame, off)
        vlans.append((tpid, tci))
        off += 4
        ethertype = int.from_bytes(frame[off : off + 2], "big")
    return EthernetHeader(dst, src, ethertype, tuple(vlans))
