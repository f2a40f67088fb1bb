"""The client-facing sockets: receive DHCP on :67 of client/interface, send per RFC 2131 §4.1.

- A UDP socket bound to 0.0.0.0:67 with SO_BINDTODEVICE receives broadcasts and unicasts
  (renewals to the server identifier) and sends to relays and to broadcast.
- A client on the link gets its unicast reply as a frame addressed to chaddr, through
  an AF_PACKET socket (as Kea's and dhcpd's packet filters do): IP destination yiaddr
  for a client with no address yet that did not ask for broadcast (dhclient, udhcpc
  and dhcpcd never do), ciaddr for a renewing one. No ARP is needed: the backup never
  learnt the clients' MACs (they ARPed for the master's address), so right after a
  takeover each first reply through the IP stack would wait for an ARP round trip.

Kernel receive timestamps (SO_TIMESTAMPNS) let the daemon shed requests that waited
too long in the socket queue before doing any work on them (overload).
"""

from __future__ import annotations

import fcntl
import socket
import struct

from appliance.dhcp.enums import CLIENT_PORT, SERVER_PORT
from appliance.dhcp.message import MAX_MESSAGE_LEN
from appliance.dhcp.server import Dest
from appliance.wire.udp import ipv4_udp_packet

SO_BINDTODEVICE = 25
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
IP_PKTINFO = 8
ETH_P_IP = 0x0800
SIOCGIFADDR = 0x8915
SIOCGIFHWADDR = 0x8927
_TS = struct.Struct("@qq")
_RECV_SIZE = MAX_MESSAGE_LEN + 1
_ANC = socket.CMSG_SPACE(_TS.size)


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


def interface_mac(ifname: str) -> bytes:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
        return res[18:24]
    finally:
        s.close()


class DhcpTransport:
    def __init__(self, ifname: str, rcvbuf: int = 4 << 20) -> None:
        self.ifname = ifname
        self.ifindex = socket.if_nametoindex(ifname)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind(("0.0.0.0", SERVER_PORT))
        s.setblocking(False)
        self.sock = s
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        # Send only: no receive queue to fill up.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
        raw.bind((ifname, 0))
        raw.setblocking(False)
        self.raw = raw
        self._raw_rx_drain()
        self.src_ip = b"\x00\x00\x00\x00"
        self._pktinfo: list[tuple[int, int, bytes]] | None = None

    def _raw_rx_drain(self) -> None:
        # A packet socket sees every IPv4 frame until shut for reading; we never read it.
        try:
            self.raw.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def set_source(self, ip: bytes) -> None:
        """Replies carry the server identifier as their source address (IP_PKTINFO)."""
        self.src_ip = ip
        self._pktinfo = [(socket.IPPROTO_IP, IP_PKTINFO,
                          struct.pack("@i4s4s", 0, ip, b"\x00\x00\x00\x00"))]

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_batch(self, limit: int) -> list[tuple[bytes, tuple[str, int], float]]:
        """Up to `limit` queued datagrams: (data, address, kernel receive time)."""
        out = []
        recvmsg = self.sock.recvmsg
        unpack = _TS.unpack
        for _ in range(limit):
            try:
                # One byte more than the largest message we accept: a longer datagram
                # arrives cut to MAX_MESSAGE_LEN + 1 and decode() refuses it as oversized
                # instead of parsing a silently truncated copy.
                data, anc, _flags, addr = recvmsg(_RECV_SIZE, _ANC)
            except (BlockingIOError, InterruptedError):
                break
            ts = 0.0
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and \
                        len(cdata) >= _TS.size:
                    sec, nsec = unpack(cdata[: _TS.size])
                    ts = sec + nsec * 1e-9
            out.append((data, addr, ts))
        return out

    def send(self, payload: bytes, dest: Dest, ip: bytes, mac: bytes) -> None:
        """Send one reply; raises OSError (the caller counts it)."""
        if dest is Dest.LINK or (dest is Dest.UNICAST and self._pktinfo is not None):
            pkt = ipv4_udp_packet(self.src_ip, ip, SERVER_PORT, CLIENT_PORT, payload)
            self.raw.sendto(pkt, (self.ifname, ETH_P_IP, 0, 0, mac))
            return
        port = SERVER_PORT if dest is Dest.RELAY else CLIENT_PORT
        addr = (socket.inet_ntoa(ip), port)
        if self._pktinfo is not None and dest is not Dest.RELAY:
            try:
                self.sock.sendmsg([payload], self._pktinfo, 0, addr)
                return
            except OSError:
                pass  # the source is not (yet) local: let the kernel choose
        self.sock.sendto(payload, addr)

    def close(self) -> None:
        self.sock.close()
        self.raw.close()
