"""VRRPv3 advertisement codec (RFC 5798 §5.1-5.2) with the IPv4 pseudo-header checksum.

Pure: bytes in, values or a reject reason out; no sockets, no clock.

Two layers, matching what a receiver gets from a raw socket and what it hands on:

- `decode_datagram(ip_packet)` checks the IPv4 header a receiver must check (RFC 5798
  §7.1: TTL 255, protocol 112) and then the VRRP message; it returns `Received` or a
  `Reject`.
- `decode_advert(message, src, dst)` checks the VRRP message alone (version, type,
  length, checksum, interval) and returns `Advert` or a `Reject`.
- `check_group(advert, vrid, addresses)` is the per-instance check (VRID configured,
  address list identical, §7.1) that the state machine applies.
- `check_source(src, peer)` is the configured-peer filter (vrrp/peer), applied before the
  state machine sees an advert.
- `vrid_of(ip_packet)` reads the VRID byte without checking anything else: how a
  receive socket shared by several groups on one interface finds the group a datagram
  is meant for (keepalived's dispatcher does the same before its checks).

Every way a packet can be refused is a `Reject` member whose value is the counter name
in the runtime tree (keepalived's rlflags idea). Decoders never raise on bad input; only
encoders raise ValueError, on arguments that cannot be put on the wire (our bug).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from appliance.wire import WireError
from appliance.wire.checksum import internet_checksum, pseudo_header_sum
from appliance.wire.ipv4 import build_ipv4, parse_ipv4

# RFC 5798 §5.1.1.2: IPv4 multicast address assigned by IANA for VRRP.
VRRP_GROUP = IPv4Address("224.0.0.18")
# RFC 5798 §5.1.1.4: IPv4 protocol number assigned by IANA for VRRP.
IPPROTO_VRRP = 112
# RFC 5798 §5.1.1.3: TTL MUST be 255; a receiver discards any other (§7.1).
VRRP_TTL = 255
# Not in RFC 5798; keepalived and the routers it interoperates with send adverts with
# IP precedence 6 (Internetwork Control, RFC 791 §3.1), which is TOS byte 0xc0.
VRRP_TOS = 0xC0
# RFC 5798 §5.2.1: this document specifies version 3.
VRRP_VERSION = 3
# RFC 5798 §5.2.2: the only type defined is ADVERTISEMENT.
TYPE_ADVERTISEMENT = 1
# RFC 5798 §5.2.4: 255 is the address owner; 0 means the master stops (§5.2.4, §6.4.3).
PRIORITY_OWNER = 255
PRIORITY_STOP = 0
# RFC 5798 §5.2.7: Max Adver Int is a 12-bit count of centiseconds.
MAX_ADVER_INT_CS = 0x0FFF
# RFC 5798 §5.2.5: Count IPvX Addr is one byte.
MAX_ADDRESSES = 255

HEADER_LEN = 8  # RFC 5798 §5.1: version/type, VRID, priority, count, rsvd/interval, csum
_HDR = struct.Struct("!BBBBHH")


class Reject(enum.Enum):
    """Why a received packet was dropped. The value is the counter name (one-to-one)."""

    # The IP packet or the VRRP message is shorter than its headers or its own length
    # fields say (§7.1: "MUST verify that the received packet contains the complete
    # VRRP packet (including fixed fields, IPvX address(es))").
    TRUNCATED = "rx_truncated"
    # Not a well-formed, unfragmented IPv4 packet of protocol 112.
    BAD_IP_HEADER = "rx_bad_ip_header"
    # §7.1: "MUST verify that the IPv4 TTL ... is 255."
    BAD_TTL = "rx_bad_ttl"
    # §7.1: "MUST verify that the VRRP version ... is 3."
    BAD_VERSION = "rx_bad_version"
    # §5.2.2: "A packet with unknown type MUST be discarded."
    BAD_TYPE = "rx_bad_type"
    # §7.1: "MUST verify that the VRRP checksum is correct."
    BAD_CHECKSUM = "rx_bad_checksum"
    # §5.2.7: an advert interval of 0 would make every Master_Down_Interval 0 (§6.1).
    BAD_INTERVAL = "rx_bad_interval"
    # The VRRP message is longer than its address count says.
    BAD_LENGTH = "rx_bad_length"
    # §7.1: "MUST verify that the VRID is configured on the receiving interface."
    OTHER_VRID = "rx_other_vrid"
    # §7.1: "MAY verify that the IPvX address(es) associated with the VRID are identical
    # to the IPvX Address(es) list in the VRRP packet" ... "SHOULD log ... MAY drop".
    ADDR_MISMATCH = "rx_addr_mismatch"
    # Our own advert came back (multicast loop, or a second socket on the host).
    OWN = "rx_own"
    # vrrp/peer is set and the advert came from another address (keepalived's
    # check_unicast_src, without the unicast transport). Checked before the state machine.
    NOT_PEER = "rx_not_peer"
    # A Backup that may preempt and follows a master heard a lower priority from another
    # router (not vrrp/peer either): §6.4.2 "Otherwise: Discard the ADVERTISEMENT", the
    # Master_Down_Timer keeps running. See fsm.py, "Forged adverts".
    LOWER_PRIORITY = "rx_lower_priority"
    # A priority-0 advert ("the master stops", §5.2.4) from a router that is not the
    # master we follow (nor vrrp/peer): ignored rather than cutting our wait to
    # Skew_Time. See fsm.py.
    STOP_NOT_MASTER = "rx_stop_not_master"
    # A Master that took over on the sync link's evidence (PeerDown: the old master's
    # daemon is gone or it handed the group over) heard that old master's better
    # priority within one of its advert intervals: an advert sent before the evidence,
    # still in flight or queued. Discarded once; its next advert is heard. See fsm.py.
    STALE_AFTER_EVIDENCE = "rx_stale_after_evidence"

    @property
    def counter(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Advert:
    """A VRRPv3 ADVERTISEMENT (RFC 5798 §5.2) with the fields a receiver acts on."""

    vrid: int
    priority: int
    max_adver_int_cs: int  # centiseconds, §5.2.7
    addresses: tuple[IPv4Address, ...]


@dataclass(frozen=True, slots=True)
class Received:
    """A validated advert with the IPv4 header fields that matter to the state machine."""

    src: IPv4Address  # the sender's primary address: the tie-breaker of §6.4.2/§6.4.3
    dst: IPv4Address
    advert: Advert


def _checksum(message: bytes, src: IPv4Address, dst: IPv4Address) -> int:
    # §5.2.8: "the 16-bit one's complement of the one's complement sum of the entire
    # VRRP message starting with the version field and a 'pseudo-header' as defined in
    # Section 8.1 of [RFC2460]" -- for IPv4 the pseudo-header of RFC 768 (src, dst,
    # zero, protocol, length), which is what keepalived and routers compute.
    return internet_checksum(
        message, pseudo_header_sum(src.packed, dst.packed, IPPROTO_VRRP, len(message))
    )


def encode_advert(advert: Advert, src: IPv4Address, dst: IPv4Address = VRRP_GROUP) -> bytes:
    """The VRRP message (no IP header) with its checksum over the IPv4 pseudo-header."""
    if not 1 <= advert.vrid <= 255:
        raise ValueError(f"VRID {advert.vrid} outside 1..255 (§5.2.3)")
    if not 0 <= advert.priority <= 255:
        raise ValueError(f"priority {advert.priority} outside 0..255 (§5.2.4)")
    if not 0 <= advert.max_adver_int_cs <= MAX_ADVER_INT_CS:
        raise ValueError(f"interval {advert.max_adver_int_cs} cs outside 0..4095 (§5.2.7)")
    if len(advert.addresses) > MAX_ADDRESSES:
        raise ValueError(f"{len(advert.addresses)} addresses, at most 255 (§5.2.5)")
    body = b"".join(a.packed for a in advert.addresses)
    hdr = _HDR.pack(
        (VRRP_VERSION << 4) | TYPE_ADVERTISEMENT,
        advert.vrid,
        advert.priority,
        len(advert.addresses),
        advert.max_adver_int_cs & MAX_ADVER_INT_CS,  # §5.2.6: rsvd (4 bits) sent as 0
        0,
    )
    csum = _checksum(hdr + body, src, dst)
    return hdr[:6] + csum.to_bytes(2, "big") + body


def encode_datagram(
    advert: Advert,
    src: IPv4Address,
    dst: IPv4Address = VRRP_GROUP,
    *,
    ttl: int = VRRP_TTL,
    ident: int = 0,
) -> bytes:
    """A whole IPv4 packet carrying the advert, as sent with IP_HDRINCL (§5.1.1)."""
    return build_ipv4(
        src.packed, dst.packed, IPPROTO_VRRP, encode_advert(advert, src, dst),
        ttl=ttl, tos=VRRP_TOS, ident=ident,
    )


def decode_advert(message: bytes, src: IPv4Address, dst: IPv4Address) -> Advert | Reject:
    """Check and decode one VRRP message (the IP payload). Never raises on bad input."""
    if len(message) < HEADER_LEN:
        return Reject.TRUNCATED
    ver_type, vrid, priority, count, rsvd_int, _csum = _HDR.unpack_from(message)
    # §7.1 check order: version before checksum, so a VRRPv2 advert (whose checksum has
    # no pseudo-header) is counted as the wrong version rather than a bad checksum.
    if ver_type >> 4 != VRRP_VERSION:
        return Reject.BAD_VERSION
    if ver_type & 0x0F != TYPE_ADVERTISEMENT:
        return Reject.BAD_TYPE
    expected = HEADER_LEN + 4 * count
    if len(message) < expected:
        return Reject.TRUNCATED
    if _checksum(message, src, dst) != 0:
        return Reject.BAD_CHECKSUM
    if len(message) > expected:
        return Reject.BAD_LENGTH
    interval_cs = rsvd_int & MAX_ADVER_INT_CS  # §5.2.6: rsvd MUST be ignored
    if interval_cs == 0:
        return Reject.BAD_INTERVAL
    addresses = tuple(
        IPv4Address(message[i : i + 4]) for i in range(HEADER_LEN, expected, 4)
    )
    return Advert(vrid=vrid, priority=priority, max_adver_int_cs=interval_cs,
                  addresses=addresses)


def decode_datagram(packet: bytes) -> Received | Reject:
    """Check and decode an IPv4 packet as read from a raw IPPROTO_VRRP socket."""
    try:
        hdr, payload = parse_ipv4(packet)
    except WireError as e:
        return Reject.TRUNCATED if e.reason == "truncated" else Reject.BAD_IP_HEADER
    if hdr.proto != IPPROTO_VRRP:
        return Reject.BAD_IP_HEADER
    if hdr.ttl != VRRP_TTL:
        return Reject.BAD_TTL
    src, dst = IPv4Address(hdr.src), IPv4Address(hdr.dst)
    advert = decode_advert(payload, src, dst)
    if isinstance(advert, Reject):
        return advert
    return Received(src=src, dst=dst, advert=advert)


def vrid_of(packet: bytes) -> int | None:
    """The VRID byte of a datagram as read from a raw IPPROTO_VRRP socket (§5.2.3),
    or None when the packet is too short to have one. Nothing else is checked: a
    datagram whose VRID names a group goes to that group, which runs every check of
    §7.1 on it and counts what it refuses."""
    if not packet:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if ihl < 20 or len(packet) < ihl + 2:
        return None
    return packet[ihl + 1]


def check_group(
    advert: Advert, vrid: int, addresses: tuple[IPv4Address, ...]
) -> Reject | None:
    """The per-instance checks of §7.1: our VRID, and the same virtual addresses.

    The address lists are compared as sets: keepalived and routers do not promise an
    order, and two devices configured with the same addresses in another order are one
    virtual router.
    """
    if advert.vrid != vrid:
        return Reject.OTHER_VRID
    if set(advert.addresses) != set(addresses) or len(advert.addresses) != len(addresses):
        return Reject.ADDR_MISMATCH
    return None


def check_source(src: IPv4Address, peer: IPv4Address | None) -> Reject | None:
    """The vrrp/peer filter: with a configured peer, an advert from any other address is
    refused before the state machine sees it. Not in RFC 5798, which has no notion of a
    peer (any router on the LAN may join a virtual router, §6.4); keepalived's
    `unicast_peer` with `check_unicast_src` refuses the same way. VRRPv3 has no
    authentication (§9), so this stops strays and naive forgeries, not an attacker who
    spoofs the peer's address."""
    if peer is not None and src != peer:
        return Reject.NOT_PEER
    return None
