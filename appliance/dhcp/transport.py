"""The client-facing sockets: receive DHCP on :67 of every client interface, send per
RFC 2131 §4.1 out of the interface each request came in on.

Two sockets whatever the number of interfaces (hundreds of VLAN sub-interfaces on one
trunk), as dnsmasq does, rather than a socket per interface as Kea does:

- One UDP socket bound to 0.0.0.0:67 (no SO_BINDTODEVICE) receives broadcasts and
  unicasts (renewals to a server identifier, relays) on every interface. IP_PKTINFO
  names the ingress interface of each datagram (ipi_ifindex); a datagram from an
  interface that is not a configured client interface (the sync link, a management
  port, loopback) is dropped here and counted (`foreign`). Replies to broadcast leave
  through the same socket with IP_PKTINFO: ipi_ifindex pins the interface the request
  came in on and ipi_spec_dst makes the source the server identifier of the client's
  group there. Replies to a relay are routed to giaddr, and the answer to a client
  behind a router that renewed straight to us (ciaddr not on the link) to ciaddr, both
  out of the interface the request came in on (ipi_ifindex again).
- One AF_PACKET socket (protocol 0: it never receives anything) sends a client on the
  link its unicast reply as a frame addressed to chaddr on the ingress interface (as
  Kea's and dhcpd's packet filters do): IP destination yiaddr for a client with no
  address yet that did not ask for broadcast (dhclient, udhcpc and dhcpcd never do),
  ciaddr for a renewing one. No ARP is needed: the backup never learnt the clients'
  MACs (they ARPed for the master's address), so right after a takeover each first
  reply through the IP stack would wait for an ARP round trip.

Per-interface values (the Ingress the server reads, the IP_PKTINFO ancillary data of
each group) are built once in set_interfaces() (a `Port` per interface, looked up by
ifindex), never per packet.

Kernel receive timestamps (SO_TIMESTAMPNS) let the service shed requests that waited
too long in the socket queue before doing any work on them (overload).
"""

from __future__ import annotations

import fcntl
import socket
import struct
from collections.abc import Iterable

from appliance.dhcp.enums import CLIENT_PORT, SERVER_PORT
from appliance.dhcp.message import MAX_MESSAGE_LEN
from appliance.dhcp.server import Dest, Ingress
from appliance.wire.udp import ipv4_udp_packet

SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
IP_PKTINFO = 8
ETH_P_IP = 0x0800
SIOCGIFADDR = 0x8915
_SOL_SOCKET = socket.SOL_SOCKET
_SOL_IP = socket.IPPROTO_IP
_TS = struct.Struct("@qq")
# struct in_pktinfo (ip(7)): ipi_ifindex, ipi_spec_dst, ipi_addr
_PKTINFO = struct.Struct("@i4s4s")
_IFINDEX = struct.Struct("@i")
_RECV_SIZE = MAX_MESSAGE_LEN + 1
_ANC = socket.CMSG_SPACE(_TS.size) + socket.CMSG_SPACE(_PKTINFO.size)
_ANY = b"\x00\x00\x00\x00"
_BROADCAST = ("255.255.255.255", CLIENT_PORT)


def interface_address(ifname: str) -> bytes | None:
    """The interface's primary IPv4 address (4 bytes), or None if it has none."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", ifname.encode()[:15]))
        return res[20:24]
    except OSError:
        return None
    finally:
        s.close()


class Port:
    """One client interface as the transport uses it, built once: the Ingress the server
    reads, and per group the IP_PKTINFO that sends out of this interface from that
    group's server identifier."""

    __slots__ = ("ifindex", "ifname", "ingress", "link", "pktinfo", "pktinfo_any")

    def __init__(self, ingress: Ingress, ifindex: int) -> None:
        self.ingress = ingress
        self.ifname = ingress.name
        self.ifindex = ifindex
        self.pktinfo = tuple([(_SOL_IP, IP_PKTINFO, _PKTINFO.pack(ifindex, sid, _ANY))]
                             for sid in ingress.server_ids)
        # Out of this interface from an address the kernel picks: to a relay, and
        # while the server identifier is not (yet) an address of ours (a virtual IP a
        # moment before VRRP adds it).
        self.pktinfo_any = [(_SOL_IP, IP_PKTINFO, _PKTINFO.pack(ifindex, _ANY, _ANY))]
        # The AF_PACKET destination without its last item, chaddr (socket(7) sockaddr_ll).
        self.link = (ingress.name, ETH_P_IP, 0, 0)


class DhcpTransport:
    def __init__(self, rcvbuf: int = 4 << 20) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(_SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(_SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.setsockopt(_SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.setsockopt(_SOL_IP, IP_PKTINFO, 1)
            try:
                s.setsockopt(_SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                s.setsockopt(_SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.setsockopt(_SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.bind(("0.0.0.0", SERVER_PORT))
            s.setblocking(False)
            # Protocol 0: no receive hook at all (packet(7)); the frame's EtherType is
            # given per sendto.
            raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        except OSError:
            s.close()
            raise
        raw.setblocking(False)
        self.sock = s
        self.raw = raw
        self._ports: dict[int, Port] = {}
        # Datagrams that came in on an interface that is not a client interface: how
        # many, and the last one's ifindex (for the log line).
        self.foreign = 0
        self.foreign_ifindex = 0

    # -- the interfaces --------------------------------------------------------------
    def set_interfaces(self, interfaces: Iterable[Ingress]) -> list[str]:
        """Serve exactly these interfaces from now on (live: datagrams already read keep
        the Port they came with). Returns the names of those that do not exist (not
        served); the others' ifindexes are resolved now."""
        ports: dict[int, Port] = {}
        missing = []
        for ing in interfaces:
            try:
                ifindex = socket.if_nametoindex(ing.name)
            except OSError:
                missing.append(ing.name)
                continue
            ports[ifindex] = Port(ing, ifindex)
        self._ports = ports
        return missing

    @property
    def ports(self) -> list[Port]:
        return list(self._ports.values())

    def fileno(self) -> int:
        return self.sock.fileno()

    # -- receive ---------------------------------------------------------------------
    def recv_batch(self, limit: int) -> list[tuple[bytes, tuple[str, int], float, Port]]:
        """Up to `limit` queued datagrams that came in on a client interface: (data, IP
        source, kernel receive time, the interface's Port). Others are counted in
        `foreign` and dropped."""
        out = []
        recvmsg = self.sock.recvmsg
        ts_unpack = _TS.unpack_from
        ifi_unpack = _IFINDEX.unpack_from
        ports = self._ports
        for _ in range(limit):
            try:
                # One byte more than the largest message we accept: a longer datagram
                # arrives cut to MAX_MESSAGE_LEN + 1 and decode() refuses it as oversized
                # instead of parsing a silently truncated copy.
                data, anc, _flags, addr = recvmsg(_RECV_SIZE, _ANC)
            except (BlockingIOError, InterruptedError):
                break
            ts = 0.0
            ifindex = 0
            for level, kind, cdata in anc:
                if kind == SCM_TIMESTAMPNS and level == _SOL_SOCKET and \
                        len(cdata) >= _TS.size:
                    sec, nsec = ts_unpack(cdata)
                    ts = sec + nsec * 1e-9
                elif kind == IP_PKTINFO and level == _SOL_IP and len(cdata) >= 4:
                    ifindex = ifi_unpack(cdata)[0]
            port = ports.get(ifindex)
            if port is None:
                self.foreign += 1
                self.foreign_ifindex = ifindex
                continue
            out.append((data, addr, ts, port))
        return out

    # -- send ------------------------------------------------------------------------
    def send(self, payload: bytes, dest: Dest, ip: bytes, mac: bytes, port: Port,
             group: int, udp_port: int = 0) -> None:
        """Send one reply to a request that came in on `port` from a client of group
        index `group` there; `udp_port` overrides a relay's port 67 (RFC 8357). Raises
        OSError (the caller counts it)."""
        if dest is Dest.LINK or dest is Dest.UNICAST:
            pkt = ipv4_udp_packet(port.ingress.server_ids[group], ip, SERVER_PORT,
                                  CLIENT_PORT, payload)
            self.raw.sendto(pkt, (*port.link, mac))
            return
        if dest is Dest.RELAY:
            # To giaddr, port 67 (RFC 2131 §4.1), routed out of the interface the relay's
            # request came in on; with no route to giaddr the kernel takes it as on that
            # link, as it did for a socket bound to the interface.
            self.sock.sendmsg([payload], port.pktinfo_any, 0,
                              (socket.inet_ntoa(ip), udp_port or SERVER_PORT))
            return
        # 255.255.255.255 out of this interface only, or ciaddr routed through it (a
        # client behind a router that renewed straight to us), from the server identifier.
        addr = _BROADCAST if dest is Dest.BROADCAST else (socket.inet_ntoa(ip), CLIENT_PORT)
        try:
            self.sock.sendmsg([payload], port.pktinfo[group], 0, addr)
        except OSError:
            # The server identifier is not local yet: this interface's own address.
            self.sock.sendmsg([payload], port.pktinfo_any, 0, addr)

    def close(self) -> None:
        self.sock.close()
        self.raw.close()

