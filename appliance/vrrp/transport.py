"""VRRP's sockets: raw IP protocol 112 on the client interface, bytes <-> packet.Advert.

Adapter. Two kinds of socket, as keepalived has:

- receive: SOCK_RAW/IPPROTO_VRRP bound to the interface (SO_BINDTODEVICE), member of
  224.0.0.18 on it (RFC 5798 §5.1.1.2), read from the asyncio loop (loop.add_reader).
  The kernel hands us the IP header too, so the TTL-255 rule of §7.1 is checked in
  packet.decode_datagram together with everything else. One per interface, shared by
  every group that elects there (`RxHub`, keepalived's per-interface socket and
  dispatcher): each raw socket gets a copy of every advert on its interface, so a
  socket per group would make each group read, and refuse as rx_other_vrid, the other
  groups' adverts. A datagram goes to the group its VRID byte names (packet.vrid_of),
  which runs every check on it; one that names no group here (another router's VRID,
  or too short to name one) goes to every group of the interface, each of which counts
  it (so those counters say what reached the group's interface).
- send: SOCK_RAW/IPPROTO_RAW (IP_HDRINCL) bound to the sending interface -- the client
  interface, or the VMAC macvlan so that adverts leave from 00:00:5e:00:01:<vrid>
  (§7.3). One per group. We write the IP header ourselves because the VRRP checksum
  covers the source address (§5.2.8), which must therefore be the one we computed it
  with; TTL 255 (§5.1.1.3) and TOS 0xc0 come with it. IP_MULTICAST_LOOP is off so our
  own adverts do not come back to us (any that do are discarded as rx_own by the state
  machine).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import weakref
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
    vrid_of,
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


OnDatagram = Callable[[Received | Reject, float], None]


class VridInUse(ValueError):
    """A second group asked for a VRID already taken on the same interface."""


class _Receiver:
    """The one receive socket on one interface, and the groups it reads for."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ifname: str) -> None:
        self._loop = loop
        self.ifname = ifname
        self.groups: dict[int, tuple[str, OnDatagram]] = {}  # vrid -> (group, callback)
        self._rx: socket.socket | None = None

    def open(self) -> None:
        rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_VRRP)
        try:
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                          _mreqn(VRRP_GROUP, socket.if_nametoindex(self.ifname)))
            rx.setblocking(False)
        except OSError:
            rx.close()
            raise
        self._rx = rx
        self._loop.add_reader(rx.fileno(), self._readable)

    def close(self) -> None:
        if self._rx is not None:
            self._loop.remove_reader(self._rx.fileno())
            self._rx.close()
            self._rx = None

    def dispatch(self, data: bytes, now: float) -> None:
        """One datagram to the group its VRID names; to every group here when it names
        none of them (see the module doc)."""
        result = decode_datagram(data)
        vrid = vrid_of(data)
        target = self.groups.get(vrid) if vrid is not None else None
        if target is not None:
            target[1](result, now)
            return
        for _group, callback in list(self.groups.values()):
            callback(result, now)

    def _readable(self) -> None:
        if self._rx is None:
            return
        for _ in range(_BATCH):
            try:
                data = self._rx.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("VRRP_RX_ERROR reading VRRP socket on %s: %s", self.ifname, e)
                return
            self.dispatch(data, self._loop.time())
            if self._rx is None:  # a callback stopped the last group here
                return


class RxHub:
    """The VRRP receive sockets of one event loop: one per interface, opened with the
    first group that elects there and closed with the last. `RxHub.of(loop)` is the
    loop's own, so every VrrpService of a daemon shares it without being told."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RxHub] = \
        weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._receivers: dict[str, _Receiver] = {}

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> RxHub:
        hub = cls._by_loop.get(loop)
        if hub is None:
            hub = cls._by_loop[loop] = cls(loop)
        return hub

    def groups_on(self, ifname: str) -> dict[int, str]:
        """VRID -> group of the groups that receive on `ifname` now."""
        r = self._receivers.get(ifname)
        return {vrid: g for vrid, (g, _) in r.groups.items()} if r is not None else {}

    def check(self, ifname: str, vrid: int) -> None:
        """Raises VridInUse when a group already receives `vrid` on `ifname`."""
        r = self._receivers.get(ifname)
        if r is not None and vrid in r.groups:
            other = r.groups[vrid][0]
            raise VridInUse(
                f"VRID {vrid} on {ifname} is already used by group {other or '(unnamed)'}: "
                "each group electing on one interface needs its own VRID (RFC 5798 §7.1: "
                "the VRID names the virtual router on its interface)")

    def attach(self, ifname: str, vrid: int, group: str, on_datagram: OnDatagram) -> None:
        """Receive `vrid`'s adverts on `ifname`; raises VridInUse when another group
        has that VRID there, OSError when the socket cannot be opened."""
        self.check(ifname, vrid)
        r = self._receivers.get(ifname)
        if r is None:
            r = _Receiver(self._loop, ifname)
            r.open()
            self._receivers[ifname] = r
        r.groups[vrid] = (group, on_datagram)

    def detach(self, ifname: str, vrid: int) -> None:
        r = self._receivers.get(ifname)
        if r is None:
            return
        r.groups.pop(vrid, None)
        if not r.groups:
            r.close()
            del self._receivers[ifname]


class VrrpTransport:
    """One group's adverts: received through the loop's RxHub on `ifname`, sent from
    `send_ifname` (default: the same)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ifname: str,
                 on_datagram: OnDatagram, send_ifname: str | None = None, *,
                 vrid: int, group: str = "") -> None:
        self._loop = loop
        self._ifname = ifname
        self._send_ifname = send_ifname or ifname
        self._on_datagram = on_datagram
        self._vrid = vrid
        self._group = group
        self._attached = False
        self._tx: socket.socket | None = None
        self._ident = 0

    def open(self) -> None:
        """Raises VridInUse (another group has our VRID on this interface) or OSError."""
        hub = RxHub.of(self._loop)
        hub.attach(self._ifname, self._vrid, self._group, self._on_datagram)
        self._attached = True
        try:
            tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        except OSError:
            self.close()
            raise
        try:
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                          self._send_ifname.encode())
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                          _mreqn(IPv4Address(0), socket.if_nametoindex(self._send_ifname)))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            tx.setblocking(False)
        except OSError:
            tx.close()
            self.close()
            raise
        self._tx = tx

    def close(self) -> None:
        if self._attached:
            RxHub.of(self._loop).detach(self._ifname, self._vrid)
            self._attached = False
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
