"""The kernel's link table, for placing client interfaces on their physical ports.

Adapter (one NETLINK_ROUTE socket, standard library only): `dump()` asks the kernel for
every link of the calling thread's network namespace (RTM_GETLINK with NLM_F_DUMP) and
returns plan.Link facts: ifindex, name, kind, the parent's ifindex (IFLA_LINK), whether
that parent is in another namespace (IFLA_LINK_NETNSID), and a VLAN device's id
(IFLA_VLAN_ID). plan.place() walks them from each interface down to its port.

Why netlink and not /sys/class/net (ifindex, lower_* links) and /proc/net/vlan: sysfs
shows the namespace of whoever mounted it, not of the calling thread, so a process
that enters a namespace with setns(2) (the loader's attach, the tests) would read
another namespace's devices; a netlink socket belongs to the namespace it is opened
in, like the ifindexes the program sees. It is also one request for all links instead
of three files per interface (200 VLANs: one dump of a few kB).

Formats: include/uapi/linux/{netlink,rtnetlink,if_link}.h. `decode` is the one decoder
of kernel input here; it raises LinkError on anything malformed (fuzzed in
tests/datapath/test_plan.py). vrrp/rtnl.py has a client of its own; adapters of one
package do not import another's.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

from appliance.datapath.plan import Link

# include/uapi/linux/netlink.h
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
# include/uapi/linux/rtnetlink.h
RTM_NEWLINK, RTM_GETLINK = 16, 18
# include/uapi/linux/if_link.h
IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO, IFLA_LINK_NETNSID = 3, 5, 18, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VLAN_ID = 1
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_RTA = struct.Struct("=HH")  # rtattr: len, type
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_ERR = struct.Struct("=i")
_RECV = 1 << 16


class LinkError(OSError):
    """The kernel refused the dump (errno), or sent a message that cannot be parsed."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(buf: bytes, start: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    i = start
    while i + _RTA.size <= end:
        n, kind = _RTA.unpack_from(buf, i)
        if n < _RTA.size or i + n > end:
            raise LinkError(errno.EBADMSG, f"rtattr of length {n} at {i} overruns {end}")
        out.setdefault(kind & NLA_TYPE_MASK, buf[i + _RTA.size:i + n])
        i += _align(n)
    return out


def _link(index: int, attrs: dict[int, bytes]) -> Link:
    raw_name = attrs.get(IFLA_IFNAME)
    if raw_name is None:
        raise LinkError(errno.EBADMSG, f"link {index} without IFLA_IFNAME")
    name = raw_name.split(b"\0", 1)[0].decode(errors="replace")
    kind, vlan_id = "", 0
    info = attrs.get(IFLA_LINKINFO)
    if info is not None:
        nested = _attrs(info, 0, len(info))
        kind = nested.get(IFLA_INFO_KIND, b"").split(b"\0", 1)[0].decode(errors="replace")
        data = nested.get(IFLA_INFO_DATA)
        if kind == "vlan" and data is not None:
            vid = _attrs(data, 0, len(data)).get(IFLA_VLAN_ID)
            if vid is None or len(vid) < _U16.size:
                raise LinkError(errno.EBADMSG, f"VLAN link {name} without IFLA_VLAN_ID")
            vlan_id = _U16.unpack_from(vid)[0]
    parent = attrs.get(IFLA_LINK)
    if parent is not None and len(parent) < _U32.size:
        raise LinkError(errno.EBADMSG, f"link {name}: short IFLA_LINK")
    return Link(index=index, name=name, kind=kind,
                link=_U32.unpack_from(parent)[0] if parent is not None else 0,
                link_other_netns=IFLA_LINK_NETNSID in attrs, vlan_id=vlan_id)


def decode(buf: bytes) -> Iterator[tuple[int, int, Link | int | None]]:
    """(type, seq, body) for each message of one datagram: body is a Link for
    RTM_NEWLINK, the errno (0 = ACK) for NLMSG_ERROR, None otherwise (NLMSG_DONE)."""
    i = 0
    while i + _HDR.size <= len(buf):
        n, kind, _flags, seq, _pid = _HDR.unpack_from(buf, i)
        if n < _HDR.size or i + n > len(buf):
            raise LinkError(errno.EBADMSG, f"netlink message of length {n} at {i} "
                            f"overruns the {len(buf)}-byte datagram")
        body, end = i + _HDR.size, i + n
        if kind == NLMSG_ERROR:
            if end - body < _ERR.size:
                raise LinkError(errno.EBADMSG, "truncated NLMSG_ERROR")
            yield kind, seq, -_ERR.unpack_from(buf, body)[0]
        elif kind == RTM_NEWLINK:
            if end - body < _IFINFO.size:
                raise LinkError(errno.EBADMSG, "truncated ifinfomsg")
            index = _IFINFO.unpack_from(buf, body)[2]
            yield kind, seq, _link(index, _attrs(buf, body + _IFINFO.size, end))
        else:
            yield kind, seq, None
        i += _align(n)


def dump() -> dict[str, Link]:
    """Every link of the calling thread's network namespace, by name. Raises LinkError
    (errno from the kernel, or EBADMSG for an answer that does not parse)."""
    seq = 1
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        sock.send(_HDR.pack(_HDR.size + len(body), RTM_GETLINK,
                            NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body)
        out: dict[str, Link] = {}
        while True:
            data = sock.recv(_RECV)
            for kind, mseq, payload in decode(data):
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    err = payload if isinstance(payload, int) else errno.EBADMSG
                    if err:
                        raise LinkError(err, f"RTM_GETLINK dump: {os.strerror(err)}")
                    return out
                if isinstance(payload, Link):
                    out[payload.name] = payload
