"""One builder for the DHCP requests that tests, load generators and labs send.

    request(MessageType.DISCOVER, mac, giaddr=relay).encode()
    request(MessageType.REQUEST, mac, requested=ip, server_id=sid, xid=xid)

Every field a client or relay sets is a keyword; the rest are zeros, as RFC 2131 §4.4.1
table 5 has a client send them. Addresses and MACs are bytes; `mac_bytes` and
`ip_bytes` convert the text forms. Options beyond the common ones go in `options`
(code -> raw value), after the message type and before the parameter request list.
"""

from __future__ import annotations

import socket

from appliance.dhcp.enums import Opt
from appliance.dhcp.message import DhcpMessage

ZERO = b"\0\0\0\0"
# What dhclient asks for: mask, router, DNS, domain, lease time, T1, T2.
DEFAULT_PRL = bytes([1, 3, 6, 15, 51, 58, 59])


def mac_bytes(mac: str | bytes) -> bytes:
    return mac if isinstance(mac, bytes) else bytes.fromhex(mac.replace(":", ""))


def ip_bytes(ip: str | bytes) -> bytes:
    return ip if isinstance(ip, bytes) else socket.inet_aton(ip)


def request(mtype: int, mac: str | bytes, *, xid: int = 0x1234, ciaddr: str | bytes = ZERO,
            giaddr: str | bytes = ZERO, requested: str | bytes | None = None,
            server_id: str | bytes | None = None, client_id: bytes | None = None,
            hops: int | None = None, flags: int = 0, secs: int = 0,
            prl: bytes | None = DEFAULT_PRL,
            options: dict[int, bytes] | None = None) -> DhcpMessage:
    """A BOOTREQUEST of type `mtype` from `mac` (hops 1 when relayed, unless given)."""
    gi = ip_bytes(giaddr)
    o: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes([mtype])}
    if requested is not None:
        o[Opt.REQUESTED_IP] = ip_bytes(requested)
    if server_id is not None:
        o[Opt.SERVER_ID] = ip_bytes(server_id)
    if client_id is not None:
        o[Opt.CLIENT_ID] = client_id
    if options:
        o.update(options)
    if prl is not None:
        o[Opt.PARAM_REQUEST_LIST] = prl
    return DhcpMessage(
        op=1, htype=1, hlen=6, hops=(1 if gi != ZERO else 0) if hops is None else hops,
        xid=xid, secs=secs, flags=flags, ciaddr=ip_bytes(ciaddr), yiaddr=ZERO, siaddr=ZERO,
        giaddr=gi, chaddr=mac_bytes(mac) + bytes(10), sname=bytes(64), file=bytes(128),
        options=o)
