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

Formats: include/uapi/linux/{netlink,rtnetlink,if_link}.h; the framing is
wire/netlink.py's, shared with vrrp/rtnl.py (adapters of one package do not import
another's). `decode` is the one decoder of kernel input here; it raises LinkError on
anything malformed (fuzzed in tests/datapath/test_plan.py).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

from appliance.datapath.plan import Link
from appliance.wire.netlink import (
    IFINFO,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_GETLINK,
    RTM_NEWLINK,
    NetlinkError,
    attrs,
    error_of,
    fixed,
    message,
    messages,
)

# include/uapi/linux/if_link.h
IFLA_IFNAME, IFLA_LINK, IFLA_LINKINFO, IFLA_LINK_NETNSID = 3, 5, 18, 37
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_VLAN_ID = 1

_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_RECV = 1 << 16

# The kernel refused the dump (errno), or sent a message that cannot be parsed.
LinkError = NetlinkError


def _link(index: int, found: dict[int, bytes]) -> Link:
    raw_name = found.get(IFLA_IFNAME)
    if raw_name is None:
        raise LinkError(errno.EBADMSG, f"link {index} without IFLA_IFNAME")
    name = raw_name.split(b"\0", 1)[0].decode(errors="replace")
    kind, vlan_id = "", 0
    info = found.get(IFLA_LINKINFO)
    if info is not None:
        nested = attrs(info, 0, len(info))
        kind = nested.get(IFLA_INFO_KIND, b"").split(b"\0", 1)[0].decode(errors="replace")
        data = nested.get(IFLA_INFO_DATA)
        if kind == "vlan" and data is not None:
            vid = attrs(data, 0, len(data)).get(IFLA_VLAN_ID)
            if vid is None or len(vid) < _U16.size:
                raise LinkError(errno.EBADMSG, f"VLAN link {name} without IFLA_VLAN_ID")
            vlan_id = _U16.unpack_from(vid)[0]
    parent = found.get(IFLA_LINK)
    if parent is not None and len(parent) < _U32.size:
        raise LinkError(errno.EBADMSG, f"link {name}: short IFLA_LINK")
    return Link(index=index, name=name, kind=kind,
                link=_U32.unpack_from(parent)[0] if parent is not None else 0,
                link_other_netns=IFLA_LINK_NETNSID in found, vlan_id=vlan_id)


def decode(buf: bytes) -> Iterator[tuple[int, int, Link | int | None]]:
    """(type, seq, body) for each message of one datagram: body is a Link for
    RTM_NEWLINK, the errno (0 = ACK) for NLMSG_ERROR, None otherwise (NLMSG_DONE)."""
    for kind, _flags, seq, body, end in messages(buf):
        if kind == NLMSG_ERROR:
            yield kind, seq, error_of(buf, body, end)
        elif kind == RTM_NEWLINK:
            index = fixed(IFINFO, buf, body, end, "ifinfomsg")[2]
            yield kind, seq, _link(index, attrs(buf, body + IFINFO.size, end))
        else:
            yield kind, seq, None


def dump() -> dict[str, Link]:
    """Every link of the calling thread's network namespace, by name. Raises LinkError
    (errno from the kernel, or EBADMSG for an answer that does not parse)."""
    seq = 1
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                       socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq,
                          IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)))
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
