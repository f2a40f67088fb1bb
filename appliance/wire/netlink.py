"""Netlink framing (include/uapi/linux/netlink.h, rtnetlink.h): the message and attribute
codec both rtnetlink clients share, vrrp/rtnl.py (VRRP's addresses, the VMAC, link
events) and datapath/links.py (the link dump that places interfaces on their ports).

Pure: bytes in, tuples out. A datagram is nlmsghdr-framed messages, each padded to 4
bytes; a message body is a fixed header (ifinfomsg, ifaddrmsg) then rtattrs, each
padded to 4 bytes too (netlink(7), rtnetlink(7)). Anything malformed raises
NetlinkError (errno EBADMSG): both clients' decoders are fuzzed
(tests/unit/test_vrrp_rtnl.py, tests/datapath/test_plan.py).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator

# include/uapi/linux/netlink.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_EXCL, NLM_F_CREATE, NLM_F_DUMP = 0x200, 0x400, 0x300
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
# include/uapi/linux/rtnetlink.h
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22

HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTA = struct.Struct("=HH")  # rtattr: len, type
_ERR = struct.Struct("=i")


class NetlinkError(OSError):
    """A request the kernel refused (its errno), or a message that cannot be parsed
    (EBADMSG)."""


def align(n: int) -> int:
    return (n + 3) & ~3


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """One request: nlmsghdr then `body` (port id 0: the kernel fills it in)."""
    return HDR.pack(HDR.size + len(body), kind, flags, seq, 0) + body


def attr(kind: int, data: bytes) -> bytes:
    """One rtattr, padded."""
    n = _RTA.size + len(data)
    return _RTA.pack(n, kind) + data + b"\0" * (align(n) - n)


def attrs(buf: bytes, start: int, end: int) -> dict[int, bytes]:
    """The rtattrs in buf[start:end] by type (flags masked off; the first of a type
    wins). Nested attributes are parsed by calling this on their value."""
    out: dict[int, bytes] = {}
    i = start
    while i + _RTA.size <= end:
        n, kind = _RTA.unpack_from(buf, i)
        if n < _RTA.size or i + n > end:
            raise NetlinkError(errno.EBADMSG, f"rtattr of length {n} at {i} overruns {end}")
        out.setdefault(kind & NLA_TYPE_MASK, buf[i + _RTA.size:i + n])
        i += align(n)
    return out


def messages(buf: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """(type, flags, seq, body, end) for each message of one datagram: its body is
    buf[body:end]."""
    i = 0
    while i + HDR.size <= len(buf):
        n, kind, flags, seq, _pid = HDR.unpack_from(buf, i)
        if n < HDR.size or i + n > len(buf):
            raise NetlinkError(errno.EBADMSG, f"netlink message of length {n} at {i} "
                               f"overruns the {len(buf)}-byte datagram")
        yield kind, flags, seq, i + HDR.size, i + n
        i += align(n)


def error_of(buf: bytes, body: int, end: int) -> int:
    """The errno an NLMSG_ERROR carries (0: an ACK)."""
    if end - body < _ERR.size:
        raise NetlinkError(errno.EBADMSG, "truncated NLMSG_ERROR")
    return -_ERR.unpack_from(buf, body)[0]


def fixed(st: struct.Struct, buf: bytes, body: int, end: int, what: str) -> tuple:
    """The fixed header `st` (IFINFO, IFADDR) at the start of a message body."""
    if end - body < st.size:
        raise NetlinkError(errno.EBADMSG, f"truncated {what}")
    return st.unpack_from(buf, body)
