"""RFC 2131 §4.3 server decisions: (message, ingress, now) -> Decision.

Pure: never sends, never persists. It reads and updates the in-memory LeaseTable (an
OFFER holds its address in memory only) and returns, with the reply, the lease change
that must be durable (journal, and the peer in `sync` mode) before the reply may leave.

Rules, by message (RFC 2131 §4.3 and table 3):
- DISCOVER: reserved address, else the client's current or previous address, else the
  requested one (option 50) if free, else a free one. The address is held for
  OFFER_HOLD_S so a repeated DISCOVER gets the same OFFER and nobody else gets it.
- REQUEST, SELECTING (option 54 present): for another server -> forget our offer,
  silent. For us -> ACK the offered/requested address if it is this client's or free,
  NAK otherwise.
- REQUEST, INIT-REBOOT (50 set, no 54, ciaddr 0): wrong network -> NAK; the client's
  binding -> ACK; held by another -> NAK; no record -> silent (§4.3.2).
- REQUEST, RENEWING / REBINDING (ciaddr set): the client's binding -> ACK (extended);
  held by another or not in our pools -> NAK if on a network we serve, else silent;
  free and leasable -> ACK (the binding is re-created: after a failover the peer may
  have missed nothing, but a store restored from backup might have).
- RELEASE: the client's binding is freed. DECLINE: the address is quarantined for
  DECLINE_PROBATION_S. INFORM: ACK with configuration only, no lease (§3.4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from enum import Enum

from appliance.dhcp.enums import BROADCAST_FLAG, MessageType, Op, Opt
from appliance.dhcp.message import DhcpMessage, new_reply
from appliance.leases.allocator import Allocator
from appliance.leases.model import Lease, LeaseState, client_key
from appliance.leases.pool import Pool, Pools
from appliance.leases.table import LeaseTable

OFFER_HOLD_S = 10.0
DECLINE_PROBATION_S = 86400.0
ZERO = b"\x00\x00\x00\x00"
BROADCAST_IP = b"\xff\xff\xff\xff"
_U32 = struct.Struct("!I")
# Options we always send (RFC 2131 §4.3.1 table 3 musts, plus the basics every client
# needs), whether or not the parameter request list names them.
_ALWAYS = (Opt.SUBNET_MASK, Opt.ROUTER, Opt.DNS, Opt.DOMAIN_NAME)


class Dest(Enum):
    RELAY = "relay"  # giaddr:67
    UNICAST = "unicast"  # ciaddr:68 (at chaddr: the client is on the link)
    BROADCAST = "broadcast"  # 255.255.255.255:68
    LINK = "link"  # yiaddr:68 at chaddr: raw frame, the client has no address yet


@dataclass(slots=True)
class Decision:
    counter: str  # stats/<counter> to bump: the reply kind, or the reason for silence
    reply: DhcpMessage | None = None
    dest: Dest = Dest.BROADCAST
    dest_ip: bytes = BROADCAST_IP
    commit: Lease | None = None  # must be durable before the reply leaves


@dataclass(frozen=True, slots=True)
class Ingress:
    """What the transport knows about a received packet."""

    local_ips: tuple[int, ...]  # addresses of the receiving interface (VIPs included)


def _ip(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _b(ip: int) -> bytes:
    return ip.to_bytes(4, "big")


class DhcpServer:
    def __init__(self, pools: Pools, table: LeaseTable, allocator: Allocator,
                 server_id: bytes) -> None:
        self.pools = pools
        self.table = table
        self.alloc = allocator
        self.server_id = server_id
        self._opts_cache: dict[str, dict[int, bytes]] = {}

    def set_pools(self, pools: Pools) -> None:
        self.pools = pools
        self._opts_cache.clear()

    # -- entry -------------------------------------------------------------------------
    def handle(self, msg: DhcpMessage, ingress: Ingress, now: float) -> Decision:
        if msg.op != Op.BOOTREQUEST:
            return Decision("dropped_not_request")
        mt = msg.message_type
        if mt == MessageType.DISCOVER:
            return self._discover(msg, ingress, now)
        if mt == MessageType.REQUEST:
            return self._request(msg, ingress, now)
        if mt == MessageType.RELEASE:
            return self._release(msg, now)
        if mt == MessageType.DECLINE:
            return self._decline(msg, now)
        if mt == MessageType.INFORM:
            return self._inform(msg, ingress)
        return Decision("dropped_unknown_type")

    # -- helpers -----------------------------------------------------------------------
    def _pool_for(self, msg: DhcpMessage, ingress: Ingress) -> Pool | None:
        """RFC 2131 §4.3.1: giaddr names the client's network; else the receiving
        interface's. ciaddr (renewing) is checked against the result by the caller."""
        if msg.giaddr != ZERO:
            return self.pools.for_address(_ip(msg.giaddr))
        if msg.ciaddr != ZERO:
            p = self.pools.for_address(_ip(msg.ciaddr))
            if p is not None:
                return p
        for local in ingress.local_ips:
            p = self.pools.for_address(local)
            if p is not None:
                return p
        return None

    def _options(self, pool: Pool) -> dict[int, bytes]:
        cached = self._opts_cache.get(pool.name)
        if cached is None:
            pc = pool.config
            cached = {Opt.SUBNET_MASK: _U32.pack(pool.mask)}
            if pc.router:
                cached[Opt.ROUTER] = b"".join(a.packed for a in pc.router)
            if pc.dns:
                cached[Opt.DNS] = b"".join(a.packed for a in pc.dns)
            if pc.domain:
                cached[Opt.DOMAIN_NAME] = pc.domain.encode()
            cached[Opt.BROADCAST_ADDRESS] = _U32.pack(pool.net | (~pool.mask & 0xFFFFFFFF))
            self._opts_cache[pool.name] = cached
        return cached

    def _reply(self, msg: DhcpMessage, mtype: int, pool: Pool | None, yiaddr: int,
               lease_time: int | None) -> DhcpMessage:
        r = new_reply(msg, mtype)
        o = r.options
        o[Opt.SERVER_ID] = self.server_id
        if yiaddr:
            r.yiaddr = _b(yiaddr)
        if lease_time is not None:
            o[Opt.LEASE_TIME] = _U32.pack(lease_time)
            # RFC 2131 §4.4.5 defaults: T1 = 0.5, T2 = 0.875 of the lease.
            o[Opt.RENEWAL_TIME] = _U32.pack(lease_time // 2)
            o[Opt.REBINDING_TIME] = _U32.pack(lease_time * 7 // 8)
        if pool is not None and mtype != MessageType.NAK:
            avail = self._options(pool)
            prl = msg.options.get(Opt.PARAM_REQUEST_LIST, b"")
            # Parameter request list honoured, in the client's order (RFC 2132 §9.8).
            for code in prl:
                v = avail.get(code)
                if v is not None and code not in o:
                    o[code] = v
            for code in _ALWAYS:
                v = avail.get(code)
                if v is not None and code not in o:
                    o[code] = v
        cid = msg.options.get(Opt.CLIENT_ID)
        if cid is not None:
            o[Opt.CLIENT_ID] = cid  # RFC 6842: echo the client identifier
        rai = msg.options.get(Opt.RELAY_AGENT_INFO)
        if rai is not None:
            o[Opt.RELAY_AGENT_INFO] = rai  # RFC 3046 §2.2: echoed, last option
        return r

    def _dest(self, msg: DhcpMessage, reply: DhcpMessage, nak: bool = False
              ) -> tuple[Dest, bytes]:
        """RFC 2131 §4.1, where a reply goes."""
        if msg.giaddr != ZERO:
            if nak:
                reply.flags |= BROADCAST_FLAG
            return Dest.RELAY, msg.giaddr
        if nak:
            return Dest.BROADCAST, BROADCAST_IP
        if msg.ciaddr != ZERO:
            return Dest.UNICAST, msg.ciaddr
        if msg.flags & BROADCAST_FLAG or reply.yiaddr == ZERO:
            return Dest.BROADCAST, BROADCAST_IP
        return Dest.LINK, reply.yiaddr

    def _nak(self, msg: DhcpMessage, why: str) -> Decision:
        r = new_reply(msg, MessageType.NAK)
        r.options[Opt.SERVER_ID] = self.server_id
        r.options[Opt.MESSAGE] = why.encode()
        cid = msg.options.get(Opt.CLIENT_ID)
        if cid is not None:
            r.options[Opt.CLIENT_ID] = cid
        rai = msg.options.get(Opt.RELAY_AGENT_INFO)
        if rai is not None:
            r.options[Opt.RELAY_AGENT_INFO] = rai
        dest, ip = self._dest(msg, r, nak=True)
        return Decision("nak", r, dest, ip)

    def _binding(self, msg: DhcpMessage, key: bytes, pool: Pool, now: float,
                 ip: int, state: LeaseState, expires: float) -> Lease:
        opts = msg.options
        hn = opts.get(Opt.HOSTNAME)
        return Lease(
            ip=ip, mac=msg.mac, client_id=opts.get(Opt.CLIENT_ID), state=state,
            start=now, expires=expires, pool=pool.name,
            hostname=hn.decode("utf-8", "replace") if hn else None,
            relay_info=opts.get(Opt.RELAY_AGENT_INFO),
        )

    def _mine(self, ip: int, key: bytes, now: float) -> bool:
        """True if nobody but this client holds `ip`."""
        h = self.table.holder(ip, now)
        return h is None or h.key == key

    # -- messages ----------------------------------------------------------------------
    def _discover(self, msg: DhcpMessage, ingress: Ingress, now: float) -> Decision:
        pool = self._pool_for(msg, ingress)
        if pool is None:
            return Decision("dropped_no_subnet")
        key = client_key(msg.mac, msg.options.get(Opt.CLIENT_ID))
        ip = self._choose(msg, key, pool, now)
        if ip is None:
            return Decision("dropped_pool_exhausted")
        cur = self.table.of_client(key)
        if not (cur is not None and cur.ip == ip and cur.state == LeaseState.BOUND
                and cur.expires > now):
            # Hold the address for this client while it decides (in memory only).
            self.table.offer(self._binding(msg, key, pool, now, ip, LeaseState.OFFERED,
                                           now + OFFER_HOLD_S))
        r = self._reply(msg, MessageType.OFFER, pool, ip, pool.lease_time)
        dest, dip = self._dest(msg, r)
        return Decision("offer", r, dest, dip)

    def _choose(self, msg: DhcpMessage, key: bytes, pool: Pool, now: float) -> int | None:
        res = pool.reserved_by_mac.get(msg.mac)
        if res is not None and self._mine(res, key, now):
            return res
        cur = self.table.of_client(key)
        if cur is not None and pool.in_range(cur.ip) and cur.state != LeaseState.DECLINED \
                and self._mine(cur.ip, key, now) and self._owned(cur.ip, cur, now):
            return cur.ip
        req = msg.options.get(Opt.REQUESTED_IP)
        if req is not None and len(req) == 4:
            rip = _ip(req)
            if pool.in_range(rip) and rip not in pool.reserved_ips and \
                    self.table.holder(rip, now) is None and self._owned(rip, None, now):
                return rip
        return self.alloc.allocate(pool, now)

    def _owned(self, ip: int, cur: Lease | None, now: float) -> bool:
        """While split (peer unreachable), a client's old address that has lapsed is
        only reused if it lies in our half of the pool."""
        if self.alloc.owner is None or (cur is not None and cur.holds(now)):
            return True
        return ip & 1 == self.alloc.owner

    def _request(self, msg: DhcpMessage, ingress: Ingress, now: float) -> Decision:
        opts = msg.options
        key = client_key(msg.mac, opts.get(Opt.CLIENT_ID))
        sid = opts.get(Opt.SERVER_ID)
        req = opts.get(Opt.REQUESTED_IP)
        if sid is not None:
            # SELECTING
            if sid != self.server_id:
                cur = self.table.of_client(key)
                if cur is not None and cur.state == LeaseState.OFFERED:
                    self.table.offer(replace(cur, expires=now))  # lapses at next reclaim
                return Decision("dropped_other_server")
            if req is None or len(req) != 4:
                return self._nak(msg, "no requested address")
            ip = _ip(req)
        elif msg.ciaddr == ZERO:
            # INIT-REBOOT
            if req is None or len(req) != 4:
                return Decision("dropped_malformed_request")
            ip = _ip(req)
            net = self._pool_for(msg, ingress)
            if net is None:
                return Decision("dropped_no_subnet")
            if not net.in_subnet(ip):
                return self._nak(msg, "wrong network")
            cur = self.table.of_client(key)
            if cur is None or cur.ip != ip:
                holder = self.table.holder(ip, now)
                if holder is not None and holder.key != key:
                    return self._nak(msg, "address in use")
                return Decision("dropped_unknown_client")  # §4.3.2: silent
        else:
            # RENEWING (unicast) or REBINDING (broadcast)
            ip = _ip(msg.ciaddr)
        pool = self.pools.leasable(ip)
        if pool is None or (msg.giaddr != ZERO and not pool.in_subnet(_ip(msg.giaddr))):
            net = self._pool_for(msg, ingress)
            if net is not None and net.in_subnet(ip):
                return self._nak(msg, "address not leasable here")
            return Decision("dropped_no_subnet")
        res = pool.reserved_ips.get(ip)
        if res is not None and res != msg.mac:
            return self._nak(msg, "address reserved for another client")
        if not self._mine(ip, key, now):
            return self._nak(msg, "address in use")
        cur = self.table.get(ip)
        if (cur is None or cur.key != key or not cur.holds(now)) and not self._owned(ip, cur, now):
            return self._nak(msg, "address not available")
        if cur is not None and cur.state == LeaseState.DECLINED and cur.expires > now:
            return self._nak(msg, "address declined")
        lease = self.table.commit(self._binding(msg, key, pool, now, ip, LeaseState.BOUND,
                                                now + pool.lease_time))
        r = self._reply(msg, MessageType.ACK, pool, ip, pool.lease_time)
        dest, dip = self._dest(msg, r)
        return Decision("ack", r, dest, dip, commit=lease)

    def _release(self, msg: DhcpMessage, now: float) -> Decision:
        key = client_key(msg.mac, msg.options.get(Opt.CLIENT_ID))
        cur = self.table.get(_ip(msg.ciaddr))
        if cur is None or cur.key != key or cur.state != LeaseState.BOUND:
            return Decision("dropped_release_unknown")
        lease = self.table.commit(replace(cur, state=LeaseState.RELEASED, expires=now))
        return Decision("release", commit=lease)

    def _decline(self, msg: DhcpMessage, now: float) -> Decision:
        key = client_key(msg.mac, msg.options.get(Opt.CLIENT_ID))
        req = msg.options.get(Opt.REQUESTED_IP)
        if req is None or len(req) != 4:
            return Decision("dropped_malformed_request")
        cur = self.table.get(_ip(req))
        if cur is None or cur.key != key or cur.state not in (LeaseState.BOUND,
                                                              LeaseState.OFFERED):
            return Decision("dropped_decline_unknown")
        # The address is in use by someone we do not know: quarantine it, forget the
        # client's binding so its next DISCOVER gets another address.
        lease = self.table.commit(replace(cur, state=LeaseState.DECLINED, mac=b"",
                                          client_id=None, start=now,
                                          expires=now + DECLINE_PROBATION_S))
        return Decision("decline", commit=lease)

    def _inform(self, msg: DhcpMessage, ingress: Ingress) -> Decision:
        pool = self._pool_for(msg, ingress)
        if pool is None:
            return Decision("dropped_no_subnet")
        # RFC 2131 §3.4: no lease time, no yiaddr; sent to ciaddr.
        r = self._reply(msg, MessageType.ACK, pool, 0, None)
        dest, dip = self._dest(msg, r)
        return Decision("ack", r, dest, dip)

