"""VRRP's sockets: raw IP protocol 112 on the client interface, bytes <-> packet.Advert.

Adapter. Two sockets, as keepalived has:

- receive: SOCK_RAW/IPPROTO_VRRP bound to the interface (SO_BINDTODEVICE), member of
  224.0.0.18 on it (RFC 5798 §5.1.1.2), read from the asyncio loop (loop.add_reader).
  The kernel hands us the IP header too, so the TTL-255 rule of §7.1 is checked in
  packet.decode_datagram together with everything else.
- send: SOCK_RAW/IPPROTO_RAW (IP_HDRINCL) bound to the sending interface -- the client
  interface, or the VMAC macvlan so that adverts leave from 00:00:5e:00:01:<vrid>
  (§7.3). We write the IP header ourselves because the VRRP checksum covers the
  source address (§5.2.8), which must therefore be the one we computed it with; TTL 255
  (§5.1.1.3) and TOS 0xc0 come with it. IP_MULTICAST_LOOP is off so our own adverts
  do not come back to us (any that do are discarded as rx_own by the state machine).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address

from appliance.vrrp.packet import (
    IPPROTO_VRRP,
    VRRP_GROUP,
    Advert,
    Received,
    Reject,
    decode_datagram,
    encode_datagram,
)

log = logging.getLogger("appliance.vrrp")

# A datagram bigger than this is not a VRRPv3 advert (255 addresses = 1048 bytes plus
# a 60-byte IP header); reading more would only let a flood cost us memory.
_RECV_SIZE = 2048
# Packets read per wake-up before yielding to the loop: a flood of forged adverts must
# not starve our own advert timer.
_BATCH = 64


def _mreqn(group: IPv4Address, ifindex: int) -> bytes:
    # struct ip_mreqn { in_addr imr_multiaddr; in_addr imr_address; int imr_ifindex; }
    return struct.pack("=4s4si", group.packed, b"\0\0\0\0", ifindex)


class VrrpTransport:
    """Receives adverts on `ifname` and sends them from `send_ifname` (default: the same)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ifname: str,
                 on_datagram: Callable[[Received | Reject, float], None],
                 send_ifname: str | None = None) -> None:
        self._loop = loop
        self._ifname = ifname
        self._send_ifname = send_ifname or ifname
        self._on_datagram = on_datagram
        self._rx: socket.socket | None = None
        self._tx: socket.socket | None = None
        self._ident = 0

    def open(self) -> None:
        rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_VRRP)
        try:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self._ifname.encode())
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                          _mreqn(VRRP_GROUP, socket.if_nametoindex(self._ifname)))
            rx.setblocking(False)
        except OSError:
            rx.close()
            raise
        tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                          self._send_ifname.encode())
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                          _mreqn(IPv4Address(0), socket.if_nametoindex(self._send_ifname)))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            tx.setblocking(False)
        except OSError:
            tx.close()
            rx.close()
            raise
        self._rx, self._tx = rx, tx
        self._loop.add_reader(rx.fileno(), self._readable)

    def close(self) -> None:
        if self._rx is not None:
            self._loop.remove_reader(self._rx.fileno())
            self._rx.close()
            self._rx = None
        if self._tx is not None:
            self._tx.close()
            self._tx = None

    def send(self, advert: Advert, src: IPv4Address) -> None:
        """Send one advert to 224.0.0.18; raises OSError (the caller counts it)."""
        if self._tx is None:
            raise OSError("VRRP transport is closed")
        # The kernel fills in the identification only when it is 0 and we want a
        # changing one as keepalived sends (1, 2, 3, ...): it helps reading captures.
        self._ident = (self._ident % 0xFFFF) + 1
        datagram = encode_datagram(advert, src, VRRP_GROUP, ident=self._ident)
        self._tx.sendto(datagram, (str(VRRP_GROUP), 0))

    def _readable(self) -> None:
        if self._rx is None:
            return
        for _ in range(_BATCH):
            try:
                data = self._rx.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("VRRP_RX_ERROR reading VRRP socket: %s", e)
                return
            self._on_datagram(decode_datagram(data), self._loop.time())
