"""A minimal rtnetlink client: the handful of requests VRRP makes, and link events.

Adapter (a socket). Why not pyroute2, which the tests still use: the daemon needs
eight message kinds, and importing pyroute2 costs about 24 MB of the daemon's ~40 MB
RSS. That memory is torn down before a killed daemon's sockets close, so the peer
learnt of a kill -9 about 3 ms later because of it (docs/failover.md).

Formats are those of include/uapi/linux/{netlink,rtnetlink,if_link,if_addr}.h:
nlmsghdr (16 bytes), then ifinfomsg (16) or ifaddrmsg (8), then rtattrs, each
padded to 4 bytes; the framing is wire/netlink.py's, shared with datapath/links.py.
`parse` is the one decoder of kernel input here; it raises RtnlError on anything
malformed (fuzzed in tests/unit/test_vrrp_rtnl.py).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.wire.netlink import (
    IFADDR,
    IFINFO,
    NLA_F_NESTED,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_MULTI,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_NEWADDR,
    RTM_NEWLINK,
    NetlinkError,
    attr,
    attrs,
    error_of,
    fixed,
    message,
    messages,
)

# include/uapi/linux/rtnetlink.h
RTMGRP_LINK = 0x1
# include/uapi/linux/if_link.h
IFLA_ADDRESS, IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO = 1, 3, 5, 18
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_MACVLAN_MODE = 1
MACVLAN_MODE_PRIVATE = 1
# include/uapi/linux/if_addr.h
IFA_ADDRESS, IFA_LOCAL = 1, 2

IFF_UP = 0x1
_U32 = struct.Struct("=I")
_RECV = 1 << 16
_BATCH = 64  # requests per datagram in `acked`: 64 x ~40 bytes, well inside any buffer

# A request the kernel refused (errno), or a message that cannot be parsed.
RtnlError = NetlinkError


@dataclass(slots=True)
class Message:
    """One rtnetlink message: its type, its fixed header's fields, its attributes."""

    type: int
    flags: int = 0  # ifinfomsg flags (IFF_*) or ifaddrmsg flags
    index: int = 0
    prefixlen: int = 0
    family: int = 0
    attrs: dict[int, bytes] = field(default_factory=dict)

    def text(self, kind: int) -> str | None:
        raw = self.attrs.get(kind)
        return None if raw is None else raw.split(b"\0", 1)[0].decode(errors="replace")


def parse(buf: bytes) -> Iterator[tuple[int, int, int, bytes | Message | int]]:
    """(type, flags, seq, body) for each message in a datagram: body is the errno
    (0 = ACK) for NLMSG_ERROR, a Message for link and address messages, else the raw
    payload."""
    for kind, flags, seq, body, end in messages(buf):
        if kind == NLMSG_ERROR:
            yield kind, flags, seq, error_of(buf, body, end)
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            fam, _type, index, iff, _change = fixed(IFINFO, buf, body, end, "ifinfomsg")
            yield kind, flags, seq, Message(kind, iff, index, 0, fam,
                                            attrs(buf, body + IFINFO.size, end))
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            fam, plen, ifa_flags, _scope, index = fixed(IFADDR, buf, body, end, "ifaddrmsg")
            yield kind, flags, seq, Message(kind, ifa_flags, index, plen, fam,
                                            attrs(buf, body + IFADDR.size, end))
        else:
            yield kind, flags, seq, buf[body:end]


class Rtnl:
    """One NETLINK_ROUTE socket: blocking requests, or (groups) an event feed."""

    def __init__(self, groups: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  socket.NETLINK_ROUTE)
        self.sock.bind((0, groups))
        self._seq = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> list[Message]:
        """Send one request; returns the messages of its answer (a dump's rows), after
        the kernel's ACK or NLMSG_DONE. Raises RtnlError with the kernel's errno."""
        self._seq += 1
        seq = self._seq
        self.sock.send(message(kind, flags | NLM_F_REQUEST, seq, body))
        out: list[Message] = []
        while True:
            data = self.sock.recv(_RECV)
            for mtype, mflags, mseq, payload in parse(data):
                if mseq != seq:
                    continue  # an answer to an earlier, abandoned request
                if mtype == NLMSG_ERROR:
                    assert isinstance(payload, int)
                    if payload:
                        raise RtnlError(payload, os.strerror(payload))
                    return out
                if mtype == NLMSG_DONE:
                    return out
                if isinstance(payload, Message):
                    out.append(payload)
                if not flags & (NLM_F_DUMP | NLM_F_ACK) and not mflags & NLM_F_MULTI:
                    return out  # a plain GET: its one answer

    def acked(self, kind: int, flags: int, bodies: list[bytes]) -> list[int]:
        """Many requests of one kind, each acknowledged: sent _BATCH to a datagram (the
        kernel runs every message of a datagram in turn, netlink(7)) and the ACKs read
        after, so 200 service VIPs cost a few system calls rather than 400. Returns the
        errno of each request in order (0: done)."""
        result = [0] * len(bodies)
        for start in range(0, len(bodies), _BATCH):
            chunk = bodies[start:start + _BATCH]
            first = self._seq + 1
            self._seq += len(chunk)
            self.sock.send(b"".join(
                message(kind, flags | NLM_F_REQUEST | NLM_F_ACK, first + i, body)
                for i, body in enumerate(chunk)))
            waiting = len(chunk)
            while waiting:
                for mtype, _mflags, mseq, payload in parse(self.sock.recv(_RECV)):
                    if mtype == NLMSG_ERROR and first <= mseq < first + len(chunk):
                        assert isinstance(payload, int)
                        result[start + mseq - first] = payload
                        waiting -= 1
        return result

    def events(self) -> list[Message]:
        """The link/address messages queued on an event socket (non-blocking read)."""
        out: list[Message] = []
        while True:
            try:
                data = self.sock.recv(_RECV, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out
            out.extend(p for _t, _f, _s, p in parse(data) if isinstance(p, Message))

    # -- the requests VRRP makes ---------------------------------------------------
    def get_link(self, index: int = 0, ifname: str | None = None) -> Message | None:
        """One link by index or name; None if there is no such link."""
        body = IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        if ifname is not None:
            body += attr(IFLA_IFNAME, ifname.encode() + b"\0")
        try:
            rows = self.request(RTM_GETLINK, 0, body)
        except RtnlError as e:
            if e.errno in (errno.ENODEV, errno.EINVAL):
                return None
            raise
        return rows[0] if rows else None

    def set_link_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, NLM_F_ACK,
                     IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP))

    def add_macvlan(self, name: str, parent: int, mac: bytes,
                    mode: int = MACVLAN_MODE_PRIVATE) -> None:
        info = attr(IFLA_INFO_KIND, b"macvlan") + attr(
            IFLA_INFO_DATA | NLA_F_NESTED, attr(IFLA_MACVLAN_MODE, _U32.pack(mode)))
        body = (IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
                + attr(IFLA_IFNAME, name.encode() + b"\0") + attr(IFLA_LINK, _U32.pack(parent))
                + attr(IFLA_ADDRESS, mac) + attr(IFLA_LINKINFO | NLA_F_NESTED, info))
        self.request(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)

    def del_link(self, index: int) -> None:
        self.request(RTM_DELLINK, NLM_F_ACK, IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0))

    def addresses(self, index: int) -> list[tuple[bytes, int]]:
        """(IPv4 address, prefix length) of every address on the link."""
        return [(ip, plen) for i, ip, plen in self.all_addresses() if i == index]

    def all_addresses(self) -> list[tuple[int, bytes, int]]:
        """(link index, IPv4 address, prefix length) of every address: one dump."""
        rows = self.request(RTM_GETADDR, NLM_F_DUMP,
                            IFADDR.pack(socket.AF_INET, 0, 0, 0, 0))
        out = []
        for m in rows:
            if m.family != socket.AF_INET:
                continue
            raw = m.attrs.get(IFA_LOCAL) or m.attrs.get(IFA_ADDRESS)
            if raw is not None and len(raw) == 4:
                out.append((m.index, raw, m.prefixlen))
        return out

    def address(self, add: bool, index: int, ip: bytes, prefixlen: int) -> None:
        """Add (NLM_F_EXCL: EEXIST if there) or delete one IPv4 address, as `ip addr`."""
        body = _addr_body(index, ip, prefixlen)
        if add:
            self.request(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body)
        else:
            self.request(RTM_DELADDR, NLM_F_ACK, body)

    def addresses_change(self, add: bool, rows: list[tuple[int, bytes, int]]) -> list[int]:
        """`address` for many (index, ip, prefixlen) at once (`acked`): errno of each."""
        bodies = [_addr_body(index, ip, plen) for index, ip, plen in rows]
        if add:
            return self.acked(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, bodies)
        return self.acked(RTM_DELADDR, 0, bodies)


def _addr_body(index: int, ip: bytes, prefixlen: int) -> bytes:
    return (IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
            + attr(IFA_LOCAL, ip) + attr(IFA_ADDRESS, ip))
