"""VRRP's kernel side: VIPs, gratuitous ARP, link events, VMAC.

Adapter over rtnetlink (vrrp/rtnl.py). It does what the state machine's actions ask
for and reports link changes; it decides nothing.

- `Netlink`: requests on one rtnetlink socket -- interface lookup, the primary address,
  VIP add/remove (idempotent: "already there" and "not there" are not errors), start-up
  removal of stale VIPs (kill -9 leaves them behind, as with keepalived), and the
  macvlan for the virtual MAC 00:00:5e:00:01:<vrid> (RFC 5798 §7.3).
- `LinkMonitor`: a second rtnetlink socket bound to RTMGRP_LINK and read from the asyncio
  loop (loop.add_reader): RTM_NEWLINK/RTM_DELLINK for tracked interfaces, event-driven,
  never polled.
- `GarpSender`: an AF_PACKET socket that sends gratuitous ARP *requests* as keepalived
  does (sha = our MAC, spa = tpa = VIP, tha = ff:ff:ff:ff:ff:ff; RFC 5798 §6.4.2 "broadcast
  a gratuitous ARP request"; RFC 5227 §3 explains why a request, not a reply). The one
  socket also sends the prebuilt frames of a group's service VIPs out of their own
  interfaces (sendto with the interface's name), so 200 service interfaces cost no
  socket each.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Interface

from appliance.vrrp.rtnl import (
    IFLA_ADDRESS,
    IFLA_IFNAME,
    RTM_DELLINK,
    RTM_NEWLINK,
    RTMGRP_LINK,
    Rtnl,
    RtnlError,
)

log = logging.getLogger("appliance.vrrp")

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARPOP_REQUEST = 1
BROADCAST_MAC = b"\xff" * 6
IFF_UP = 0x1
IFF_RUNNING = 0x40  # carrier (RFC 2863 operational state as the kernel's flag)
IFNAMSIZ = 16


def vmac_address(vrid: int) -> bytes:
    """RFC 5798 §7.3: the IPv4 virtual router MAC address is 00-00-5E-00-01-{VRID}."""
    return bytes((0x00, 0x00, 0x5E, 0x00, 0x01, vrid))


def vmac_ifname(vrid: int) -> str:
    """keepalived's default name for the VMAC interface, so operators recognise it."""
    return f"vrrp.{vrid}"


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def arp_announcement(mac: bytes, address: IPv4Address) -> bytes:
    """An Ethernet frame with a gratuitous ARP request for `address`, byte for byte what
    keepalived 2.2.7 sends (RFC 826 packet format)."""
    eth = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", ARPHRD_ETHER, ETH_P_IP, 6, 4, ARPOP_REQUEST)
    arp += mac + address.packed + BROADCAST_MAC + address.packed
    return eth + arp


class NetlinkFailure(RuntimeError):
    """A netlink request failed for a reason that is not "already done"."""


class Netlink:
    """Request/response rtnetlink operations on one socket (blocking, fast)."""

    def __init__(self) -> None:
        self._rt = Rtnl()

    def close(self) -> None:
        self._rt.close()

    # -- links ----------------------------------------------------------------------
    def link_index(self, ifname: str) -> int | None:
        link = self._rt.get_link(ifname=ifname)
        return link.index if link is not None else None

    def link_mac(self, index: int) -> bytes:
        link = self._rt.get_link(index)
        if link is None or IFLA_ADDRESS not in link.attrs:
            raise NetlinkFailure(f"link {index} has no hardware address")
        return link.attrs[IFLA_ADDRESS]

    def link_up(self, ifname: str) -> bool:
        """Administratively up with carrier; False for a missing interface."""
        try:
            link = self._rt.get_link(ifname=ifname)
        except RtnlError:
            return False
        return link is not None and bool(link.flags & IFF_UP) and \
            bool(link.flags & IFF_RUNNING)

    def create_vmac(self, parent: int, vrid: int) -> int:
        """Create (or re-create) the macvlan carrying the virtual MAC, up; its index.

        Private mode as keepalived: frames from the macvlan leave through the parent and
        are not delivered to sibling macvlans.
        """
        name = vmac_ifname(vrid)
        stale = self.link_index(name)
        if stale is not None:
            self.delete_link(stale)
        try:
            self._rt.add_macvlan(name, parent, vmac_address(vrid))
        except RtnlError as e:
            raise NetlinkFailure(f"cannot create macvlan {name}: {e}") from e
        index = self.link_index(name)
        if index is None:
            raise NetlinkFailure(f"macvlan {name} vanished after creation")
        self._rt.set_link_up(index)
        return index

    def delete_link(self, index: int) -> None:
        try:
            self._rt.del_link(index)
        except RtnlError as e:
            if e.errno != errno.ENODEV:
                raise NetlinkFailure(f"cannot delete link {index}: {e}") from e

    # -- addresses ------------------------------------------------------------------
    def addresses(self, index: int) -> list[IPv4Interface]:
        return [IPv4Interface((IPv4Address(ip), plen))
                for ip, plen in self._rt.addresses(index)]

    def primary_address(self, index: int, exclude: Iterable[IPv4Address]) -> IPv4Address | None:
        """The first IPv4 address of the interface that is not a VIP: the source of our
        adverts and the tie-breaker of RFC 5798 §6.4.3 ("primary IPvX Address")."""
        skip = set(exclude)
        for iface in self.addresses(index):
            if iface.ip not in skip:
                return iface.ip
        return None

    def add_addresses(self, index: int, vips: Iterable[IPv4Interface]) -> None:
        for vip in vips:
            try:
                self._rt.address(True, index, vip.ip.packed, vip.network.prefixlen)
            except RtnlError as e:
                if e.errno != errno.EEXIST:
                    raise NetlinkFailure(f"cannot add {vip} on link {index}: {e}") from e

    def del_addresses(self, index: int, vips: Iterable[IPv4Interface]) -> None:
        for vip in vips:
            try:
                self._rt.address(False, index, vip.ip.packed, vip.network.prefixlen)
            except RtnlError as e:
                if e.errno not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                    raise NetlinkFailure(f"cannot remove {vip} from link {index}: {e}") from e

    def change_addresses(self, add: bool, pairs: Sequence[tuple[int, IPv4Interface]]
                         ) -> list[tuple[int, IPv4Interface, RtnlError]]:
        """add_addresses/del_addresses for many (index, VIP) pairs in a few system calls
        (a group's service VIPs); "already done" is not an error. Returns the failures,
        each with the kernel's error, instead of raising at the first."""
        rows = [(index, vip.ip.packed, vip.network.prefixlen) for index, vip in pairs]
        done = {errno.EEXIST} if add else {errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV}
        return [(index, vip, RtnlError(err, os.strerror(err)))
                for (index, vip), err in zip(pairs, self._rt.addresses_change(add, rows),
                                             strict=True)
                if err and err not in done]

    def all_addresses(self) -> dict[int, list[IPv4Interface]]:
        """Every IPv4 address of every link, by link index: one dump, however many
        interfaces are asked about."""
        out: dict[int, list[IPv4Interface]] = {}
        for index, ip, plen in self._rt.all_addresses():
            out.setdefault(index, []).append(IPv4Interface((IPv4Address(ip), plen)))
        return out

    def remove_stale(self, index: int, vips: Iterable[IPv4Interface]) -> list[IPv4Interface]:
        """Remove VIPs left on the interface by an earlier run (kill -9, crash): a
        device that starts must not answer for an address it is not master of."""
        return [v for _, v in self.remove_stale_on({index: vips})]

    def remove_stale_on(self, wanted: dict[int, Iterable[IPv4Interface]]
                        ) -> list[tuple[int, IPv4Interface]]:
        """remove_stale for many links at once (a group's service interfaces), reading
        the address table once. A VIP counts as present whatever its prefix."""
        ips = {index: {v.ip for v in vips} for index, vips in wanted.items()}
        present = self.all_addresses()
        stale = [(index, a) for index, want in ips.items() for a in present.get(index, ())
                 if a.ip in want]
        for index, a in stale:
            self.del_addresses(index, [a])
        return stale


def set_ipv4_conf(ifname: str, key: str, value: int) -> int | None:
    """Set net.ipv4.conf.<ifname>.<key>, returning the old value (None: not set).

    Used for the VMAC (as keepalived does): the VIPs live on the macvlan, and on the
    parent arp_ignore=1 stops it answering ARP for them with its real MAC, while
    arp_announce=2 stops it announcing a VIP with its real MAC when it resolves a
    neighbour for a packet sourced from the VIP. Written through /proc (as keepalived
    does) rather than IFLA_INET_CONF.
    """
    path = f"/proc/sys/net/ipv4/conf/{ifname}/{key}"
    try:
        with open(path) as f:
            old = int(f.read().strip())
        with open(path, "w") as f:
            f.write(str(value))
    except (OSError, ValueError) as e:
        log.warning("VRRP_SYSCTL cannot set %s: %s", path, e)
        return None
    return old


class LinkMonitor:
    """Reports (ifname, up) for the watched interfaces on every RTM_NEWLINK/RTM_DELLINK."""

    def __init__(self, names: Iterable[str], on_change: Callable[[str, bool], None],
                 loop: asyncio.AbstractEventLoop) -> None:
        self._names = frozenset(names)
        self._on_change = on_change
        self._loop = loop
        self._rt: Rtnl | None = None
        self._last: dict[str, bool] = {}

    def start(self, initial: Callable[[str], bool]) -> dict[str, bool]:
        """Subscribe, then read the current state through `initial` (subscribing first,
        so a change between the two is not lost); returns that state."""
        if not self._names:
            return {}
        self._rt = Rtnl(groups=RTMGRP_LINK)
        self._loop.add_reader(self._rt.fileno(), self._readable)
        self._last = {name: initial(name) for name in self._names}
        return dict(self._last)

    def states(self) -> dict[str, bool]:
        return dict(self._last)

    def close(self) -> None:
        if self._rt is not None:
            self._loop.remove_reader(self._rt.fileno())
            self._rt.close()
            self._rt = None

    def _readable(self) -> None:
        if self._rt is None:
            return
        try:
            msgs = self._rt.events()
        except OSError as e:  # RtnlError too
            # ENOBUFS: the kernel dropped events; fall back to asking for the state.
            log.warning("VRRP_LINK_EVENTS netlink read failed (%s); re-reading links", e)
            msgs = []
            self._resync()
        for msg in msgs:
            name = msg.text(IFLA_IFNAME)
            if name not in self._names:
                continue
            if msg.type == RTM_DELLINK:
                up = False
            elif msg.type == RTM_NEWLINK:
                up = bool(msg.flags & IFF_UP) and bool(msg.flags & IFF_RUNNING)
            else:
                continue
            self._report(name, up)

    def _resync(self) -> None:
        nl = Netlink()
        try:
            for name in self._names:
                self._report(name, nl.link_up(name))
        finally:
            nl.close()

    def _report(self, name: str, up: bool) -> None:
        if self._last.get(name) == up:
            return  # RTM_NEWLINK also reports MTU, address, stats changes
        self._last[name] = up
        self._on_change(name, up)


class GarpSender:
    """Sends gratuitous ARP requests for the VIPs out of one interface (`send`), and
    prebuilt ones out of any interface (`send_frames`)."""

    def __init__(self, ifname: str, mac: bytes) -> None:
        self.mac = mac
        # Protocol 0: the socket is never hooked into the receive path (send only).
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self._sock.bind((ifname, 0))
        self._sock.setblocking(False)

    def send_frames(self, frames: Iterable[tuple[str, bytes]]
                    ) -> tuple[int, list[tuple[str, OSError]]]:
        """Each (interface, frame) out of that interface (packet(7): a sendto address
        overrides the bound one); returns how many went out and the failures, which
        the caller counts and logs once per round rather than once per interface."""
        sent = 0
        failed: list[tuple[str, OSError]] = []
        for ifname, frame in frames:
            try:
                self._sock.sendto(frame, (ifname, 0))
                sent += 1
            except OSError as e:
                failed.append((ifname, e))
        return sent, failed

    def send(self, addresses: Iterable[IPv4Address]) -> int:
        """One request per address; returns how many went out."""
        sent = 0
        for address in addresses:
            try:
                self._sock.send(arp_announcement(self.mac, address))
                sent += 1
            except OSError as e:
                log.warning("VRRP_GARP_ERROR gratuitous ARP for %s not sent: %s", address, e)
        return sent

    def close(self) -> None:
        self._sock.close()
