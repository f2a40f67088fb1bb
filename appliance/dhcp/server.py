"""RFC 2131 §4.3 server decisions: (message, ingress, now) -> Decision.

Pure: never sends, never persists. It reads and updates the in-memory LeaseTable (an
OFFER holds its address in memory only) and returns, with the reply, the lease changes
that must be durable (journal, and the peer in `sync` mode) before the reply may leave.
Every refusal is a Reason (dhcp/enums.py), whose value is the counter the daemon bumps.

Whatever a client sends, a decision can be stored, replicated and expired: what a lease
takes from a message is bounded here, when deciding (a lease field holds at most 255
bytes, leases/codec.py), never by an exception afterwards.

The interface a message came in on (`Ingress`, one per client interface, built when the
interfaces are configured) carries its addresses, the VRRP groups bound to it and each
group's server identifier (its virtual IP there, so a unicast renewal reaches whichever
device is that group's master). A client's group is the interface's one group, or on an
interface two groups share, the one its RFC 3074 bucket names (dhcp/loadbalance.py, the
rule the XDP program applies too). Everything "us" means is per that group: option 54 in
our replies, the SELECTING check (a REQUEST naming the other group's virtual IP is for
"another server"), the server identifier a RELEASE or DECLINE may name, and the part of
the pool new addresses come from (leases/allocator.Share: the group's half of a shared
interface's pool, and this device's half while not in sync with the peer).

Rules, by message (RFC 2131 §4.3 and table 3):
- Any message: a client is its client identifier, else its chaddr (§4.2); a message with
  neither is refused, and so is a client identifier longer than 255 bytes once its
  instances are joined (RFC 3396 §7): it is the client's identity, shortening it could
  make two clients one. A relay's Option 82 longer than 255 bytes is refused too (it
  must be echoed whole, RFC 3046 §2.2, and stored whole). A hostname is stored as sent
  if it is UTF-8 of at most 255 bytes (RFC 1035 §2.3.4), trailing NULs removed (RFC 2132
  §2), else not stored (the client is served all the same). Option 82 is stored only
  from a relay (giaddr set, RFC 3046 §2.1); a unicast renewal, which bypasses the relay,
  keeps the relay and Option 82 the binding was made with.
- Relayed (dhcp/relay.py): Option 82's link selection (RFC 3527) names the client's
  link instead of giaddr; its server identifier override (RFC 5107) is our option 54
  for the client, and a REQUEST, RELEASE or DECLINE naming it is for us; its relay
  source port (RFC 8357) is where the answer goes. The pools of a shared network are
  one link: a DISCOVER takes the next when one is full, and a renewal through the
  relay's address in one subnet for an address of another is on the client's link.
- Options, classes, hosts (dhcp/reply.py, classes.py, hosts.py, compiled with the
  config): a message's host and classes are found first. A pool whose allow_classes /
  deny_classes keep the client's classes out gives it nothing (DISCOVER dropped, REQUEST
  silent). A host's fixed address in the pool's subnet comes before anything else; a
  host asking for another address there is NAKed (it moves to its own); a port host's
  (circuit-id / remote-id) address still bound to the device it replaced on that port
  is taken over: that binding is released, then the new one made, in one decision.
- DISCOVER: the host's address, a reserved address, else the client's current or
  previous address, else the requested one (option 50) if free, else a free one. The
  address is held for OFFER_HOLD_S so a repeated DISCOVER gets the same OFFER and nobody
  else gets it. A relay agent or relay circuit at its lease limit gets no OFFER for a
  new client.
- REQUEST, SELECTING (option 54 present): for another server -> forget our offer,
  silent. For us -> ACK the offered/requested address if it is this client's or free
  (within the relay limits), NAK otherwise.
- REQUEST, INIT-REBOOT (50 set, no 54, ciaddr 0): wrong network -> NAK; the client's
  binding -> ACK; held by another -> NAK; no record -> silent (§4.3.2).
- REQUEST, RENEWING / REBINDING (ciaddr set): this client's record of the address
  (bound, lapsed, released, or offered to it) -> ACK (extended); held by another,
  quarantined or not in our pools -> NAK if on a network we serve, else silent. No
  record of this client there: NAK while our table is complete (`table_complete`:
  standalone, or in sync with the peer), since a binding we have never seen is not
  valid for the client (§4.3.2); only while the peer may hold bindings we have not
  seen is it re-created, if free and within the limits.
- RELEASE: the client's binding is freed, if the RELEASE comes the way the binding was
  made: through the same relay and Option 82 circuit, or, not relayed, from the
  released address itself (a client behind a relay unicasts its RELEASE to the server
  identifier, §4.4.6, bypassing the relay). DECLINE: only from the client holding the
  binding (BOUND, §4.3.3: it declines what it was ACKed, never a mere OFFER), the same
  way; the binding ends and the address is quarantined for DECLINE_PROBATION_S under an
  identity of its own (leases.model.address_key), at most pool.max_declined per pool
  (the oldest quarantine ends early beyond that). INFORM: ACK with configuration only,
  no lease (§3.4).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from enum import Enum
from ipaddress import IPv4Address

from appliance.config.model import Config
from appliance.dhcp.enums import BROADCAST_FLAG, MessageType, Note, Op, Opt, Reason
from appliance.dhcp.hosts import Host
from appliance.dhcp.loadbalance import bucket, group_index
from appliance.dhcp.message import DhcpMessage, new_reply
from appliance.dhcp.options import circuit_id, remote_id
from appliance.dhcp.relay import NONE as NO_RELAY
from appliance.dhcp.relay import Links, RelayInfo, relay_info
from appliance.dhcp.reply import EMPTY, Policy, fill, lease_time, size_limit, timers
from appliance.leases.allocator import WHOLE, Allocator, Share
from appliance.leases.model import MAX_FIELD, Lease, LeaseState
from appliance.leases.pool import Pool, Pools
from appliance.leases.table import LeaseTable

OFFER_HOLD_S = 10.0
DECLINE_PROBATION_S = 86400.0
ZERO = b"\x00\x00\x00\x00"
BROADCAST_IP = b"\xff\xff\xff\xff"
_U32 = struct.Struct("!I")
_CLIENT_ID = int(Opt.CLIENT_ID)
_RELAY_INFO = int(Opt.RELAY_AGENT_INFO)
_HOSTNAME = int(Opt.HOSTNAME)
_PRL = int(Opt.PARAM_REQUEST_LIST)
_BOUND = LeaseState.BOUND
# Message types a client sends (RFC 2131 §3), as plain ints: compared once per packet.
_DISCOVER, _REQUEST, _DECLINE, _RELEASE, _INFORM = (
    int(MessageType.DISCOVER), int(MessageType.REQUEST), int(MessageType.DECLINE),
    int(MessageType.RELEASE), int(MessageType.INFORM))
_CLIENT_TYPES = frozenset((_DISCOVER, _REQUEST, _DECLINE, _RELEASE, _INFORM))
# Option 56 text of each NAK (RFC 2131 §4.3.2: the server SHOULD say why).
_NAK_TEXT = {
    Reason.NAK_NO_REQUESTED: "no requested address",
    Reason.NAK_WRONG_NETWORK: "wrong network",
    Reason.NAK_NOT_LEASABLE: "address not leasable here",
    Reason.NAK_RESERVED: "address reserved for another client",
    Reason.NAK_IN_USE: "address in use",
    Reason.NAK_OTHER_HALF: "address not available",
    Reason.NAK_DECLINED: "address declined",
    Reason.NAK_NO_BINDING: "no binding for this address",
    Reason.NAK_FIXED_ADDRESS: "the client has a fixed address",
}


class Dest(Enum):
    RELAY = "relay"  # giaddr:67
    UNICAST = "unicast"  # ciaddr:68 at chaddr: the client is on the link
    ROUTED = "routed"  # ciaddr:68 through the IP stack: the client is behind a router
    BROADCAST = "broadcast"  # 255.255.255.255:68
    LINK = "link"  # yiaddr:68 at chaddr: raw frame, the client has no address yet


@dataclass(slots=True)
class Decision:
    """What to do with one message. `reason` is why it was refused: no reply (a drop)
    or a NAK; `sent` the counter of the reply ("offer", "ack", "nak"), empty when
    silent; `commits` must be durable, in order, before the reply leaves; `notes` are
    counted besides. `detail` is for the log line of a refusal."""

    reason: Reason | None = None
    reply: DhcpMessage | None = None
    dest: Dest = Dest.BROADCAST
    dest_ip: bytes = BROADCAST_IP
    commits: tuple[Lease, ...] = ()
    sent: str = ""
    notes: tuple[Note, ...] = ()
    detail: str = ""
    # UDP port of dest_ip; 0: the usual one (67 for a relay, 68 for a client). A relay
    # that sent RFC 8357's relay source port sub-option gets it at its source port.
    dest_port: int = 0


@dataclass(frozen=True, slots=True)
class Ingress:
    """A client interface as the server sees it: built once per interface when the
    interfaces are (re)configured, handed in with every message that came in on it."""

    # addresses of the interface (its own and its virtual IPs): the pool of a client on
    # the link is the one whose subnet holds one of them (RFC 2131 §4.3.1)
    local_ips: tuple[int, ...]
    # per group bound here, in the interface's order: the server identifier (option 54,
    # 4 bytes) that group's clients get: its virtual IP on this interface, or the
    # interface's own address when no group is bound (standalone)
    server_ids: tuple[bytes, ...]
    # the VRRP groups bound here, one or two; ("",): none, always served
    groups: tuple[str, ...] = ("",)
    name: str = ""  # the interface, for messages

    def __post_init__(self) -> None:
        if not 1 <= len(self.groups) <= 2 or len(self.server_ids) != len(self.groups):
            raise ValueError(f"interface {self.name}: {len(self.groups)} group(s) and "
                             f"{len(self.server_ids)} server identifier(s): one or two "
                             "groups, a server identifier each")
        if any(len(s) != 4 for s in self.server_ids):
            raise ValueError(f"interface {self.name}: a server identifier is 4 bytes")

    @property
    def shared(self) -> bool:
        """Two groups serve this interface, splitting its clients by the RFC 3074 hash."""
        return len(self.groups) == 2

    def group_of(self, msg: DhcpMessage) -> int:
        """The index (in `groups`) of the group `msg`'s client belongs to here: 0 on an
        interface of one group; else by its chaddr's RFC 3074 bucket, as the kernel's."""
        if len(self.groups) == 1:
            return 0
        return group_index(bucket(msg.mac))


def _ip(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _b(ip: int) -> bytes:
    return ip.to_bytes(4, "big")


def _hostname(raw: bytes) -> str | None:
    """Option 12 as a lease keeps it: exactly what was sent, or nothing. RFC 2132 §2: a
    receiver deletes trailing NULs. A DNS name is at most 255 octets (RFC 1035 §2.3.4)
    and a lease field as long; UTF-8 so that what is stored is what the client sent
    (no replacement characters: 255 bytes of 0xff would become 765)."""
    raw = raw.rstrip(b"\x00")
    if not raw or len(raw) > MAX_FIELD:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _subscriber(relay_info: bytes | None) -> tuple[bytes | None, bytes | None]:
    """What identifies a relay agent's subscriber line: circuit-id and remote-id (RFC
    3046 §3.1, §3.2). Other sub-options may differ between packets of one client."""
    if relay_info is None:
        return None, None
    return circuit_id(relay_info), remote_id(relay_info)


class DhcpServer:
    def __init__(self, pools: Pools, table: LeaseTable, allocator: Allocator,
                 table_complete: bool = True, cfg: Config | None = None) -> None:
        self.pools = pools
        # options, classes and hosts, compiled (dhcp/reply.py); the pools' options and
        # reservations alone without a config
        self.policy = Policy(cfg)
        self.table = table
        self.alloc = allocator
        # True when every binding any server of ours made is in our table: standalone,
        # or in sync with the peer. Set by the daemon from the sync link's state.
        self.table_complete = table_complete
        self.links = Links(pools)  # shared networks (dhcp/relay.py)
        self._notes: list[Note] = []
        # The message being decided: its group's server identifier and allocation rule
        # (set first thing in handle(), read by the helpers; one message at a time).
        self._sid = ZERO
        self._own_sid = ZERO  # the group's own, when a relay overrides _sid (RFC 5107)
        self._relay: RelayInfo = NO_RELAY  # what the message's Option 82 asks of us
        self._link = 0  # the address naming a relayed client's link (RFC 3527 or giaddr)
        self._share: Share = WHOLE
        self._ingress: Ingress | None = None
        # The message's host (hosts/) and classes (bit mask), found in handle().
        self._host: Host | None = None
        self._classes = 0

    def set_pools(self, pools: Pools, cfg: Config | None = None) -> None:
        """New pools (a reload); with `cfg`, its options, classes and hosts too. The
        pools' host reservations come with them: Pools.from_config(..., host addresses)."""
        self.pools = pools
        self.links = Links(pools)
        if cfg is not None:
            self.policy = Policy(cfg)
        else:
            self.policy.clear()

    # -- entry -------------------------------------------------------------------------
    def handle(self, msg: DhcpMessage, ingress: Ingress, now: float,
               src: tuple[str, int] | None = None, group: int | None = None) -> Decision:
        """Decide on one message that came in on `ingress`. `src` is its IP source
        (address, port), used to check a RELEASE that did not come through a relay;
        `group` its client's group index there if the caller has it already
        (ingress.group_of(msg))."""
        if group is None:
            group = ingress.group_of(msg)
        self._sid = self._own_sid = ingress.server_ids[group]
        self._relay = NO_RELAY
        self._ingress = ingress
        self._share = self.alloc.share(len(ingress.groups) == 2, group)
        if msg.op != Op.BOOTREQUEST:
            return Decision(Reason.NOT_REQUEST)
        mt = msg.message_type
        if mt not in _CLIENT_TYPES:
            return Decision(Reason.UNKNOWN_TYPE)
        opts = msg.options
        cid = opts.get(_CLIENT_ID)
        if cid is not None and len(cid) > MAX_FIELD:
            return Decision(Reason.CLIENT_ID_TOO_LONG, detail=f"{len(cid)} bytes")
        key = cid or msg.mac
        if not key and mt != _INFORM:
            return Decision(Reason.NO_CLIENT_ID)
        if msg.giaddr != ZERO:
            rai = opts.get(_RELAY_INFO)
            if rai is not None and len(rai) > MAX_FIELD:
                return Decision(Reason.RELAY_INFO_TOO_LONG, detail=f"{len(rai)} bytes")
            # RFC 3527 link selection, RFC 5107 server identifier override, RFC 8357
            # relay port (dhcp/relay.py); nothing of it from a client on our link.
            rv = self._relay = relay_info(rai)
            self._link = rv.link if rv.link is not None else _ip(msg.giaddr)
            if rv.server_id is not None:
                self._sid = rv.server_id
        notes = self._notes
        if notes:
            notes.clear()
        if self._relay.malformed:
            notes.append(Note.RELAY_INFO_MALFORMED)
        if mt != _RELEASE and mt != _DECLINE:
            policy = self.policy
            self._host = policy.hosts.find(msg) if policy.hosts.all else None
            self._classes = policy.classes.classify(msg) if policy.classes.names else 0
        else:  # they end a binding: no options, no address chosen
            self._host, self._classes = None, 0
        if mt == _REQUEST:
            d = self._request(msg, key, ingress, now)
        elif mt == _DISCOVER:
            d = self._discover(msg, key, ingress, now)
        elif mt == _RELEASE:
            d = self._release(msg, key, now, src)
        elif mt == _DECLINE:
            d = self._decline(msg, key, now)
        else:
            d = self._inform(msg, ingress)
        if notes:
            d.notes = tuple(notes)
        if self._relay.source_port and d.dest is Dest.RELAY and src is not None:
            d.dest_port = src[1]  # RFC 8357: to the port the relay sent from
        return d

    def _same_link(self, pool: Pool, msg: DhcpMessage, ingress: Ingress) -> bool:
        """`pool` is of the relayed client's link: its link address's pool's shared
        network (a renewal through the relay's address in another of its subnets)."""
        link = self._pool_for(msg, ingress)
        return link is not None and self.links.same(link, pool)

    def _link_pools(self, pool: Pool, key: bytes, mac: bytes) -> tuple[Pool, ...]:
        """The pools of `pool`'s link in the order a DISCOVER tries them: the one holding
        the client's reservation, then the one holding its current address, then the
        link address's pool and the rest of its shared network (dhcp/relay.py)."""
        pools = self.links.pools(pool)
        if len(pools) == 1:
            return pools
        first = [p for p in pools if mac in p.reserved_by_mac]
        cur = self.table.of_client(key)
        if cur is not None:
            first += [p for p in pools if p.name == cur.pool and p not in first]
        return (*first, *(p for p in pools if p not in first))

    # -- helpers -----------------------------------------------------------------------
    def _pool_for(self, msg: DhcpMessage, ingress: Ingress) -> Pool | None:
        """RFC 2131 §4.3.1: giaddr names the client's network; else the receiving
        interface's. ciaddr (renewing) is checked against the result by the caller."""
        if msg.giaddr != ZERO:
            return self.pools.for_address(self._link)
        if msg.ciaddr != ZERO:
            p = self.pools.for_address(_ip(msg.ciaddr))
            if p is not None:
                return p
        for local in ingress.local_ips:
            p = self.pools.for_address(local)
            if p is not None:
                return p
        return None

    def _reply(self, msg: DhcpMessage, mtype: int, pool: Pool | None, yiaddr: int,
               lease_time: int | None) -> DhcpMessage:
        """The reply's options come from dhcp/reply.py (see its rules)."""
        r = new_reply(msg, mtype)
        o = r.options
        o[Opt.SERVER_ID] = self._sid
        if yiaddr:
            r.yiaddr = _b(yiaddr)
        if lease_time is not None and pool is not None:
            t1, t2 = timers(pool, lease_time)
            o[Opt.LEASE_TIME] = _U32.pack(lease_time)
            o[Opt.RENEWAL_TIME] = _U32.pack(t1)
            o[Opt.REBINDING_TIME] = _U32.pack(t2)
        host = self._host
        sel = self.policy.selected(pool, self._classes, host, msg.options.get(_PRL)) \
            if pool is not None else EMPTY
        # the selection, option 12, the echoes of 61 (RFC 6842) and 82 (RFC 3046 §2.2,
        # last), fitted to what the client accepts (option 57, RFC 2132 §9.3 overload)
        if fill(r, msg, sel, host, size_limit(msg)):
            self._notes.append(Note.OPTIONS_DROPPED)
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
            # A client behind a router unicasts its renewal straight to us, bypassing
            # its relay (§4.4.5): the answer is routed back, not framed to a chaddr that
            # is not on our link.
            return (Dest.UNICAST if self._on_link(msg.ciaddr) else Dest.ROUTED), msg.ciaddr
        if msg.flags & BROADCAST_FLAG or reply.yiaddr == ZERO:
            return Dest.BROADCAST, BROADCAST_IP
        return Dest.LINK, reply.yiaddr

    def _on_link(self, addr: bytes) -> bool:
        """`addr` is on the link the message came in on: in the subnet of a pool of
        one of the interface's addresses."""
        ip = _ip(addr)
        for local in self._ingress.local_ips:  # type: ignore[union-attr]
            p = self.pools.for_address(local)
            if p is not None and self.links.on_link(p, ip):
                return True
        return False

    def _nak(self, msg: DhcpMessage, reason: Reason) -> Decision:
        r = new_reply(msg, MessageType.NAK)
        r.options[Opt.SERVER_ID] = self._sid
        r.options[Opt.MESSAGE] = _NAK_TEXT[reason].encode()
        cid = msg.options.get(_CLIENT_ID)
        if cid is not None:
            r.options[Opt.CLIENT_ID] = cid
        rai = msg.options.get(_RELAY_INFO)
        if rai is not None:
            r.options[Opt.RELAY_AGENT_INFO] = rai
        dest, ip = self._dest(msg, r, nak=True)
        return Decision(reason, r, dest, ip, sent="nak")

    def _binding(self, msg: DhcpMessage, pool: Pool, now: float, ip: int,
                 state: LeaseState, expires: float, prev: Lease | None = None) -> Lease:
        """The lease this message makes, every field bounded (see the module rules).
        `prev` is the client's own record of `ip`, if any."""
        opts = msg.options
        hostname = None
        hn = opts.get(_HOSTNAME)
        if hn is not None:
            hostname = _hostname(hn)
            if hostname is None:
                self._notes.append(Note.HOSTNAME_IGNORED)
        rai = opts.get(_RELAY_INFO)
        if msg.giaddr != ZERO:
            relay, relay_info = _ip(msg.giaddr), rai
        else:
            relay, relay_info = 0, None
            if rai is not None:
                self._notes.append(Note.OPTION82_UNRELAYED)
            if msg.ciaddr != ZERO and prev is not None:
                # A renewal is unicast straight to us (RFC 2131 §4.4.5), not through the
                # relay that added Option 82: the binding keeps what it was made with.
                relay, relay_info = prev.relay, prev.relay_info
        # The merge orders a client's versions by `start` first (sync/merge.py): a renewal
        # stamped by a clock behind the version it renews (the peer's clock was ahead,
        # or ours was stepped back) would look older to the peer and be dropped there.
        start = now if prev is None or prev.start <= now else prev.start
        return Lease(
            ip=ip, mac=msg.mac, client_id=opts.get(_CLIENT_ID), state=state,
            start=start, expires=expires, pool=pool.name, hostname=hostname,
            relay_info=relay_info, relay=relay,
        )

    def _mine(self, ip: int, key: bytes, now: float) -> bool:
        """True if nobody but this client holds `ip`."""
        h = self.table.holder(ip, now)
        return h is None or h.key == key

    def _over_limit(self, msg: DhcpMessage, key: bytes, pool: Pool) -> Reason | None:
        """A relayed client that would take a new binding where its relay agent or its
        relay circuit is at the pool's limit (abuse: random chaddrs behind one port)."""
        if msg.giaddr == ZERO or not (pool.max_per_relay or pool.max_per_circuit):
            return None
        relay = _ip(msg.giaddr)
        circuit = circuit_id(msg.options.get(_RELAY_INFO) or b"")
        cur = self.table.of_client(key)
        if cur is not None and cur.state == _BOUND and cur.relay == relay and \
                circuit_id(cur.relay_info or b"") == circuit:
            return None  # already counted there: a renewal or a repeated DORA
        if pool.max_per_relay and self.table.relay_count(relay) >= pool.max_per_relay:
            return Reason.RELAY_LIMIT
        if pool.max_per_circuit and circuit is not None and \
                self.table.circuit_count(relay, circuit) >= pool.max_per_circuit:
            return Reason.CIRCUIT_LIMIT
        return None

    def _same_path(self, msg: DhcpMessage, cur: Lease, src: tuple[str, int] | None) -> bool:
        """A RELEASE or DECLINE of `cur` came the way `cur` was bound: through the same
        relay agent and subscriber line (giaddr, Option 82 circuit-id and remote-id), or
        on our own link for a binding made there. A RELEASE for a relayed binding may
        also come straight from the client (RFC 2131 §4.4.6: unicast to the server
        identifier, as dhclient behind `dhcrelay -a` sends it): then from the released
        address itself (`src`); a DECLINE never (the client has no address to send from,
        it broadcasts, and its relay forwards that)."""
        relayed = cur.relay != 0 or cur.relay_info is not None
        if msg.giaddr != ZERO:
            if not relayed or (cur.relay and cur.relay != _ip(msg.giaddr)):
                return False
            return _subscriber(msg.options.get(_RELAY_INFO)) == _subscriber(cur.relay_info)
        if not relayed:
            return True
        if src is None or msg.ciaddr == ZERO:
            return False
        try:
            return IPv4Address(src[0]).packed == msg.ciaddr
        except ValueError:
            return False

    # -- messages ----------------------------------------------------------------------
    def _discover(self, msg: DhcpMessage, key: bytes, ingress: Ingress, now: float
                  ) -> Decision:
        pool = self._pool_for(msg, ingress)
        if pool is None:
            return Decision(Reason.NO_SUBNET, detail=f"giaddr {IPv4Address(msg.giaddr)}")
        limit = self._over_limit(msg, key, pool)
        if limit is not None:
            return Decision(limit, detail=f"giaddr {IPv4Address(msg.giaddr)}")
        admits, cls = self.policy.admits, self._classes
        if self.links.any:
            # a shared network: the next pool if full, among those the client's classes
            # may use (set-top boxes in one subnet, phones in another, one relay)
            ip, denied = None, True
            for p in self._link_pools(pool, key, msg.mac):
                if not admits(p, cls):
                    continue
                denied = False
                ip = self._choose(msg, key, p, now)
                if ip is not None:
                    pool = p
                    break
        else:
            denied = not admits(pool, cls)
            ip = None if denied else self._choose(msg, key, pool, now)
        if denied:
            return Decision(Reason.CLASS_DENIED, detail=f"pool {pool.name}, classes "
                            f"{','.join(self.policy.classes.names_of(cls)) or '-'}")
        if ip is None:
            return Decision(Reason.POOL_EXHAUSTED, detail=f"pool {pool.name}")
        cur = self.table.of_client(key)
        if not (cur is not None and cur.ip == ip and cur.state == _BOUND
                and cur.expires > now) and self._mine(ip, key, now):
            # Hold the address for this client while it decides (in memory only). A
            # port's address still bound to the device it replaces is not held: the
            # REQUEST ends that binding first (durably), then makes this one.
            self.table.offer(self._binding(msg, pool, now, ip, LeaseState.OFFERED,
                                           now + OFFER_HOLD_S))
        r = self._reply(msg, MessageType.OFFER, pool, ip, lease_time(pool, msg))
        dest, dip = self._dest(msg, r)
        return Decision(None, r, dest, dip, sent="offer")

    def _host_ip(self, pool: Pool) -> int:
        """The message's host's fixed address when it is in `pool`'s subnet, else 0."""
        h = self._host
        if h is not None and h.ip and pool.in_subnet(h.ip):
            return h.ip
        return 0

    def _port_swap(self, ip: int, key: bytes, now: float) -> Lease | None:
        """The binding of `ip` held by another device on the message's host's port (a
        circuit-id / remote-id host): the new device there takes the address over."""
        h = self._host
        if h is None or h.port is None or h.ip != ip:
            return None
        holder = self.table.holder(ip, now)
        if holder is not None and holder.key != key and holder.state == _BOUND \
                and h.owns(holder):
            return holder
        return None

    def _choose(self, msg: DhcpMessage, key: bytes, pool: Pool, now: float) -> int | None:
        fixed = self._host_ip(pool)
        if fixed and (self._mine(fixed, key, now) or self._port_swap(fixed, key, now)):
            return fixed
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
        return self.alloc.allocate(pool, now, self._share)

    def _owned(self, ip: int, cur: Lease | None, now: float) -> bool:
        """An address not held by its client (free, or a lapsed binding) is only taken
        from the part of the pool the client's group and this device's split allow
        (leases/allocator.Share): the peer may hand out the rest meanwhile."""
        if cur is not None and cur.holds(now):
            return True
        return self._share.allows(ip)

    def _request(self, msg: DhcpMessage, key: bytes, ingress: Ingress, now: float
                 ) -> Decision:
        opts = msg.options
        sid = opts.get(Opt.SERVER_ID)
        req = opts.get(Opt.REQUESTED_IP)
        renewing = False
        if sid is not None:
            # SELECTING
            # For us: the identifier this client was given (a relay's RFC 5107
            # override) or the group's own (given before the relay overrode it).
            if sid != self._sid and sid != self._own_sid:
                cur = self.table.of_client(key)
                if cur is not None and cur.state == LeaseState.OFFERED:
                    self.table.offer(replace(cur, expires=now))  # lapses at next reclaim
                return Decision(Reason.OTHER_SERVER)
            if req is None or len(req) != 4:
                return self._nak(msg, Reason.NAK_NO_REQUESTED)
            ip = _ip(req)
        elif msg.ciaddr == ZERO:
            # INIT-REBOOT
            if req is None or len(req) != 4:
                return Decision(Reason.MALFORMED_REQUEST)
            ip = _ip(req)
            net = self._pool_for(msg, ingress)
            if net is None:
                return Decision(Reason.NO_SUBNET, detail=f"giaddr {IPv4Address(msg.giaddr)}")
            if not self.links.on_link(net, ip):
                return self._nak(msg, Reason.NAK_WRONG_NETWORK)
            cur = self.table.of_client(key)
            if cur is None or cur.ip != ip:
                holder = self.table.holder(ip, now)
                if holder is not None and holder.key != key:
                    return self._nak(msg, Reason.NAK_IN_USE)
                return Decision(Reason.UNKNOWN_CLIENT)  # §4.3.2: silent
        else:
            # RENEWING (unicast) or REBINDING (broadcast)
            ip = _ip(msg.ciaddr)
            renewing = True
        pool = self.pools.leasable(ip)
        if pool is None or (msg.giaddr != ZERO and not pool.in_subnet(self._link) and not (
                self.links.any and self._same_link(pool, msg, ingress))):
            net = self._pool_for(msg, ingress)
            if net is not None and self.links.on_link(net, ip):
                return self._nak(msg, Reason.NAK_NOT_LEASABLE)
            return Decision(Reason.NO_SUBNET, detail=f"giaddr {IPv4Address(msg.giaddr)}")
        fixed = self._host_ip(pool)
        if fixed and fixed != ip:
            # The client has a fixed address here: it moves to it (RFC 2131 §4.3.2: the
            # address it asks for is not valid for it).
            return self._nak(msg, Reason.NAK_FIXED_ADDRESS)
        res = pool.reserved_ips.get(ip)
        if res is not None and res != msg.mac and fixed != ip:
            return self._nak(msg, Reason.NAK_RESERVED)
        if not self.policy.admits(pool, self._classes):
            return Decision(Reason.CLASS_DENIED, detail=f"pool {pool.name}")
        cur = self.table.get(ip)
        if cur is not None and cur.state == LeaseState.DECLINED and cur.expires > now:
            return self._nak(msg, Reason.NAK_DECLINED)
        replaced = None
        if not self._mine(ip, key, now):
            replaced = self._port_swap(ip, key, now)
            if replaced is None:
                return self._nak(msg, Reason.NAK_IN_USE)
            cur = None
        # This client's record of the address: bound (maybe lapsed), released, or just
        # offered to it (a DISCOVER came first: not a binding made from one packet).
        own = cur is not None and cur.key == key
        if renewing and not own and self.table_complete:
            # §4.3.2: an address bound to nobody here is not valid for this client. Only
            # a table that may lack the peer's bindings (not in sync) re-creates it.
            return self._nak(msg, Reason.NAK_NO_BINDING)
        if not (own and cur.holds(now)) and not self._owned(ip, cur, now):  # type: ignore[union-attr]
            return self._nak(msg, Reason.NAK_OTHER_HALF)
        limit = self._over_limit(msg, key, pool)
        if limit is not None:
            return Decision(limit, detail=f"giaddr {IPv4Address(msg.giaddr)}")
        commits: tuple[Lease, ...] = ()
        if replaced is not None:
            # The device it replaces on the port loses the binding first, so that the
            # peer, applying these in order, sees the address freed, then taken.
            commits = (self.table.commit(replace(replaced, state=LeaseState.RELEASED,
                                                 expires=now)),)
        lt = lease_time(pool, msg)
        lease = self.table.commit(self._binding(msg, pool, now, ip, _BOUND, now + lt,
                                                cur if own else None))
        r = self._reply(msg, MessageType.ACK, pool, ip, lt)
        dest, dip = self._dest(msg, r)
        return Decision(None, r, dest, dip, commits=(*commits, lease), sent="ack")

    def _release(self, msg: DhcpMessage, key: bytes, now: float,
                 src: tuple[str, int] | None) -> Decision:
        sid = msg.options.get(Opt.SERVER_ID)
        if sid is not None and sid != self._sid and sid != self._own_sid:
            return Decision(Reason.OTHER_SERVER)
        cur = self.table.get(_ip(msg.ciaddr))
        if cur is None or cur.key != key or cur.state != _BOUND:
            return Decision(Reason.RELEASE_UNKNOWN)
        if not self._same_path(msg, cur, src):
            return Decision(Reason.RELEASE_MISMATCH, detail=f"{cur.address}: giaddr "
                            f"{IPv4Address(msg.giaddr)}, source {src[0] if src else '?'}")
        lease = self.table.commit(replace(cur, state=LeaseState.RELEASED, expires=now))
        return Decision(commits=(lease,))

    def _decline(self, msg: DhcpMessage, key: bytes, now: float) -> Decision:
        opts = msg.options
        req = opts.get(Opt.REQUESTED_IP)
        if req is None or len(req) != 4:
            return Decision(Reason.MALFORMED_REQUEST)
        sid = opts.get(Opt.SERVER_ID)
        if sid is not None and sid != self._sid and sid != self._own_sid:
            return Decision(Reason.OTHER_SERVER)
        ip = _ip(req)
        cur = self.table.get(ip)
        if cur is None or cur.key != key or cur.state != _BOUND or cur.expires <= now:
            # RFC 2131 §4.3.3: a client declines the address it was ACKed. Anything
            # else (an address only OFFERED, someone else's) would let one packet from
            # any MAC take an address out of the pool for a day.
            return Decision(Reason.DECLINE_UNKNOWN, detail=str(IPv4Address(ip)))
        if not self._same_path(msg, cur, None):
            return Decision(Reason.DECLINE_MISMATCH, detail=str(IPv4Address(ip)))
        commits = []
        table = self.table
        pool = self.pools.by_name.get(cur.pool)
        cap = pool.max_declined if pool is not None else 1
        if table.declined_in(cur.pool) >= cap:
            oldest = table.oldest_declined(cur.pool)
            if oldest is not None:
                # The quarantine is full: the oldest one ends now (a bound on what a
                # client that can bind and decline over and over takes out of the pool).
                commits.append(table.commit(replace(oldest, state=LeaseState.EXPIRED,
                                                    expires=now)))
                self._notes.append(Note.DECLINE_EVICTED)
        # The client's binding ends first, so that the peer, applying these in order,
        # sees the address freed by its client before it is quarantined (not a second
        # client taking a held address: an address conflict). Its next DISCOVER gets
        # another address.
        commits.append(table.commit(replace(cur, state=LeaseState.RELEASED, expires=now)))
        # The address is in use by someone we do not know (§4.3.3): quarantined under an
        # identity of its own, so that N declined addresses are N leases everywhere.
        commits.append(table.commit(Lease(
            ip=ip, mac=b"", client_id=None, state=LeaseState.DECLINED, start=now,
            expires=now + DECLINE_PROBATION_S, pool=cur.pool)))
        return Decision(commits=tuple(commits))

    def _inform(self, msg: DhcpMessage, ingress: Ingress) -> Decision:
        pool = self._pool_for(msg, ingress)
        if pool is None:
            return Decision(Reason.NO_SUBNET, detail=f"giaddr {IPv4Address(msg.giaddr)}")
        # RFC 2131 §3.4: no lease time, no yiaddr; sent to ciaddr.
        r = self._reply(msg, MessageType.ACK, pool, 0, None)
        dest, dip = self._dest(msg, r)
        return Decision(None, r, dest, dip, sent="ack")
