"""Internet checksum (RFC 1071) and the IPv4 pseudo-header sum (RFC 768, RFC 793 §3.1).

The sum is computed without a per-byte or per-word Python loop: the buffer is read as
one big integer, and because 2**16 ≡ 1 (mod 0xffff), that integer modulo 0xffff equals
the sum of its 16-bit words modulo 0xffff — which is the one's complement sum, except
that one's complement arithmetic spells a non-zero multiple of 0xffff as 0xffff rather
than 0 (RFC 1071 §1, "end-around carry"). Both steps run in C inside CPython.
"""

from __future__ import annotations

_MOD = 0xFFFF


def ones_complement_sum(data: bytes, initial: int = 0) -> int:
    """One's complement sum of `data` as 16-bit big-endian words, plus `initial`.

    `initial` is any non-negative integer standing for words already summed (a folded
    partial sum, or an unfolded total: only its value modulo 0xffff matters). An odd
    trailing byte is padded with a zero byte on the right (RFC 1071 §4.1). The result
    is folded to 16 bits and is 0 only when every word (and `initial`) is 0.
    """
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    total = int.from_bytes(data, "big") + initial
    if total == 0:
        return 0
    folded = total % _MOD
    return folded if folded else 0xFFFF


def internet_checksum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 checksum of `data`: the complement of the one's complement sum.

    `initial` is a partial sum to start from (e.g. pseudo_header_sum()). A buffer that
    already holds a correct checksum field yields 0.
    """
    return ~ones_complement_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Partial one's complement sum of the IPv4 pseudo-header (RFC 768; RFC 793 §3.1).

    src and dst are 4-byte addresses, proto the IP protocol number, length the length
    of the transport header plus data in bytes. Fold it in through `initial`.
    """
    if len(src) != 4 or len(dst) != 4:
        raise ValueError("pseudo-header addresses must be 4 bytes")
    # A 32-bit address is its two 16-bit words modulo 0xffff (2**16 ≡ 1), so the words
    # need not be split out; the zero byte + protocol and the length are one word each.
    total = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + length
    if total == 0:
        return 0
    folded = total % _MOD
    return folded if folded else 0xFFFF


def transport_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    """Checksum of a transport segment (UDP, TCP, ...) over the IPv4 pseudo-header.

    `segment` is the transport header (checksum field zero for building, or as received
    for verifying: then a correct segment yields 0) followed by the payload.
    """
    return internet_checksum(segment, pseudo_header_sum(src, dst, proto, len(segment)))
