"""Leasequery: which bindings a query names and the messages that answer it, for RFC 4388
(one binding, by address, MAC or client identifier, over UDP) and RFC 6926 (bulk, over
TCP: by address, MAC, client identifier, relay identifier, remote-id, circuit-id, or
every binding), with the RFC 6926 stream framing.

Pure: no socket, no clock (`now` is passed in). The packet path (dhcp/service.py) hands
a DHCPLEASEQUERY to `Leasequery.answer`; the TCP adapter (dhcp/tcp.py) feeds bytes to a
`Framer` and pulls the answers of a DHCPBULKLEASEQUERY from `Leasequery.bulk` a few at a
time, so a query for a million bindings never holds the event loop.

Rules:
- Only the active device answers: the packet path drops a query for a group this device
  does not serve (`dropped_standby`, as any request), and the TCP adapter answers
  DHCPLEASEQUERYDONE with status NotAllowed while this device serves nothing, and
  QueryTerminated when it stops serving in the middle of a bulk reply. Right after a
  takeover the new active answers from the bindings it holds: the peer's, replicated.
- Only configured requesters (leasequery/requesters, matched against giaddr and the IP
  source) are answered; none configured: leasequery is off. Each refusal is an LqReason
  (a counter, and a rate-limited log line with its id).
- RFC 4388: giaddr must be set (the reply goes there); the query is by ciaddr if
  set, else by client identifier (option 61) if present, else by chaddr (hlen 1..16, not
  all zero); nothing to query by: refused (`dropped_leasequery_malformed`).
- RFC 4388: DHCPLEASEACTIVE for a binding bound and unexpired, with ciaddr the
  address, chaddr/htype/hlen the client's, options 51 (seconds left), 91 (seconds since
  the client's last transaction: the binding's start), 61 (if the client sent one), 82
  (the Option 82 the binding keeps, also after unicast renewals without it), 92 (the
  client's other active addresses, query by MAC or client identifier), 12 if asked for
  in option 55 and stored. DHCPLEASEUNASSIGNED: by address, for an address we may lease
  (a pool's range or reservation) with no active binding. DHCPLEASEUNKNOWN otherwise.
- RFC 6926: each message on the TCP stream is preceded by its length, two octets in
  network order. Every answer carries base-time (152, our wall clock),
  start-time-of-state (153: seconds before base-time its state began), dhcp-state (156)
  and data-source (157, REMOTE when the binding was made by the peer); the answers of a
  query end with DHCPLEASEQUERYDONE. A query by relay-id / remote-id / circuit-id is an
  Option 82 in the query holding those sub-options (all given must match; circuit-id
  is our extension, RFC 6926 names relay-id and remote-id); no criterion at all is a
  query for every binding. query-start-time / query-end-time (154, 155) keep the
  bindings whose state began within them. Errors are a DHCPLEASEQUERYDONE with a
  status-code (151): MalformedQuery, NotAllowed, QueryTerminated (RFC 6926).
  (DHCPLEASEQUERYSTATUS, type 17, is RFC 7724's active leasequery, not used here.)

Cost: by address and by client identifier are one dict probe; by MAC walks the table
(no MAC index: a binding is keyed by client identifier when there is one), measured in
docs/leasequery.md. Bulk queries walk a snapshot of the addresses, in steps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum
from ipaddress import IPv4Address, IPv4Network

from appliance.dhcp.enums import MessageType, Op, Opt, RelaySubOpt
from appliance.dhcp.message import MAX_MESSAGE_LEN, DecodeError, DhcpMessage, new_reply
from appliance.dhcp.relay import subopts
from appliance.leases.model import Lease, LeaseState
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable

_U32 = struct.Struct("!I")
_LEN = struct.Struct("!H")
ZERO = b"\x00\x00\x00\x00"
_LEASEQUERY = int(MessageType.LEASEQUERY)
_BULK = int(MessageType.BULKLEASEQUERY)
_CLIENT_ID = int(Opt.CLIENT_ID)
_RELAY_INFO = int(Opt.RELAY_AGENT_INFO)
_PRL = int(Opt.PARAM_REQUEST_LIST)
_SUB_CIRCUIT = int(RelaySubOpt.CIRCUIT_ID)
_SUB_REMOTE = int(RelaySubOpt.REMOTE_ID)
_SUB_RELAY_ID = int(RelaySubOpt.RELAY_ID)
# A bulk reply is framed in 2 octets (RFC 6926); we never send or take more than
# one DHCP message's worth (dhcp/message.py).
MAX_FRAME = MAX_MESSAGE_LEN


class LqReason(Enum):
    """Why a leasequery got no answer, or a bulk connection was refused or closed. The
    value is the counter name (stats/<value>); LOG gives the ones logged."""

    # UDP (RFC 4388)
    NOT_ALLOWED = "dropped_leasequery_not_allowed"  # requester not in leasequery/requesters
    NO_GIADDR = "dropped_leasequery_no_giaddr"  # RFC 4388: giaddr must be set
    MALFORMED = "dropped_leasequery_malformed"  # no ciaddr, client id nor chaddr
    # TCP (RFC 6926)
    BULK_CONNECTIONS = "bulk_refused_connections"  # leasequery/bulk_max_connections open
    BULK_NOT_ALLOWED = "bulk_refused_not_allowed"  # source not in leasequery/requesters
    BULK_FRAME = "bulk_refused_frame"  # length 0 or > MAX_FRAME, or not a DHCP message
    BULK_NOT_QUERY = "bulk_refused_not_query"  # a message that is no DHCPBULKLEASEQUERY
    BULK_MALFORMED = "bulk_refused_malformed"  # a query we cannot read (MalformedQuery)
    BULK_STANDBY = "bulk_refused_standby"  # this device serves nothing now (NotAllowed)
    BULK_TERMINATED = "bulk_query_terminated"  # stopped serving mid-reply (QueryTerminated)
    BULK_IDLE = "bulk_closed_idle"  # no query for leasequery/bulk_idle_timeout_s


# Stable log ids (docs/leasequery.md, "Log messages"); each line is rate-limited.
LOG: dict[LqReason, tuple[str, str]] = {
    LqReason.NOT_ALLOWED: ("LQ001", "leasequery from a requester not in leasequery/requesters"),
    LqReason.NO_GIADDR: ("LQ002", "leasequery without giaddr"),
    LqReason.MALFORMED: ("LQ003", "leasequery with nothing to query by"),
    LqReason.BULK_CONNECTIONS: ("LQ010", "bulk leasequery connection refused: too many open"),
    LqReason.BULK_NOT_ALLOWED: ("LQ011", "bulk leasequery connection from a requester not "
                                "in leasequery/requesters"),
    LqReason.BULK_FRAME: ("LQ012", "bulk leasequery stream not framed DHCP: closed"),
    LqReason.BULK_NOT_QUERY: ("LQ013", "bulk leasequery stream carried another message "
                              "type: closed"),
    LqReason.BULK_MALFORMED: ("LQ014", "bulk leasequery malformed: MalformedQuery"),
    LqReason.BULK_STANDBY: ("LQ015", "bulk leasequery while standby: NotAllowed"),
    LqReason.BULK_TERMINATED: ("LQ016", "bulk leasequery terminated: this device stopped "
                               "serving"),
    LqReason.BULK_IDLE: ("LQ017", "bulk leasequery connection idle: closed"),
}

# What the packet path and the TCP adapter count besides the refusals.
COUNTERS = ("leasequery", "leaseactive", "leaseunassigned", "leaseunknown",
            "bulkleasequery", "bulk_replies", "leasequerydone")


class Status(IntEnum):
    """status-code option values (RFC 6926)."""

    SUCCESS = 0
    UNSPEC_FAIL = 1
    QUERY_TERMINATED = 2
    MALFORMED_QUERY = 3
    NOT_ALLOWED = 4


class DhcpState(IntEnum):
    """dhcp-state option values (RFC 6926)."""

    AVAILABLE = 1
    ACTIVE = 2
    EXPIRED = 3
    RELEASED = 4
    ABANDONED = 5
    RESET = 6
    REMOTE = 7
    TRANSITIONING = 8


DATA_SOURCE_REMOTE = 0x01  # data-source option (RFC 6926): made by the partner

_STATE = {LeaseState.BOUND: DhcpState.ACTIVE, LeaseState.EXPIRED: DhcpState.EXPIRED,
          LeaseState.RELEASED: DhcpState.RELEASED, LeaseState.DECLINED: DhcpState.ABANDONED,
          LeaseState.OFFERED: DhcpState.AVAILABLE, LeaseState.DELETED: DhcpState.AVAILABLE}


class Kind(Enum):
    ADDRESS = "address"
    CLIENT_ID = "client-id"
    MAC = "mac"
    RELAY = "relay"  # Option 82 sub-options: relay-id, remote-id, circuit-id (bulk only)
    ALL = "all"  # bulk only


@dataclass(frozen=True, slots=True)
class Query:
    kind: Kind
    ip: int = 0
    key: bytes = b""  # client id or MAC
    # Option 82 sub-options to match (code -> value), Kind.RELAY
    relay: tuple[tuple[int, bytes], ...] = ()
    start: int | None = None  # query-start-time, RFC 6926 (bulk)
    end: int | None = None  # query-end-time


def parse_query(msg: DhcpMessage, bulk: bool = False) -> Query | None:
    """The query `msg` asks (RFC 4388 precedence: ciaddr, client id, chaddr; RFC
    6926 adds relay sub-options and "all"). None: nothing to query by (UDP), or a
    malformed criterion."""
    o = msg.options
    start = end = None
    if bulk:
        st, en = o.get(int(Opt.QUERY_START_TIME)), o.get(int(Opt.QUERY_END_TIME))
        if (st is not None and len(st) != 4) or (en is not None and len(en) != 4):
            return None
        start = _U32.unpack(st)[0] if st is not None else None
        end = _U32.unpack(en)[0] if en is not None else None
    if msg.ciaddr != ZERO:
        return Query(Kind.ADDRESS, ip=int.from_bytes(msg.ciaddr, "big"), start=start, end=end)
    cid = o.get(_CLIENT_ID)
    if cid is not None:
        if not cid:
            return None
        return Query(Kind.CLIENT_ID, key=cid, start=start, end=end)
    mac = msg.mac
    if mac and any(mac):
        return Query(Kind.MAC, key=mac, start=start, end=end)
    if not bulk:
        return None
    rai = o.get(_RELAY_INFO)
    if rai is not None:
        subs = subopts(rai)
        if subs is None:
            return None
        want = tuple((c, subs[c]) for c in (_SUB_RELAY_ID, _SUB_REMOTE, _SUB_CIRCUIT)
                     if c in subs)
        if not want:
            return None
        return Query(Kind.RELAY, relay=want, start=start, end=end)
    return Query(Kind.ALL, start=start, end=end)


def allowed(requesters: tuple[IPv4Network, ...], *addrs: int) -> bool:
    """Every address given (giaddr, IP source) is in one of the requester prefixes."""
    if not requesters:
        return False
    for a in addrs:
        ip = IPv4Address(a)
        if not any(ip in net for net in requesters):
            return False
    return True


def _since(lease: Lease) -> float:
    """When the binding's current state began: its start while bound (or quarantined),
    its end once released or expired (the release sets `expires` to its time)."""
    if lease.state in (LeaseState.RELEASED, LeaseState.EXPIRED):
        return lease.expires
    return lease.start


@dataclass(slots=True)
class Answer:
    """The reply to one UDP leasequery (None: refused, `reason` says why), and its
    counter ("leaseactive", ...)."""

    reason: LqReason | None = None
    reply: DhcpMessage | None = None
    sent: str = ""
    detail: str = ""


class Leasequery:
    """Answers leasequeries from the server's lease table and pools (read at each query,
    so a reload's pools and every replicated binding are seen at once)."""

    def __init__(self, table: LeaseTable, pools: Pools | None = None,
                 requesters: tuple[IPv4Network, ...] = (), node: str = "",
                 server: object = None) -> None:
        self.table = table
        self._pools = pools
        self._server = server  # a DhcpServer: its current pools
        self.requesters = requesters
        self.node = node  # our node name: a binding made elsewhere is REMOTE (RFC 6926)

    @property
    def pools(self) -> Pools:
        if self._server is not None:
            return self._server.pools  # type: ignore[attr-defined, no-any-return]
        assert self._pools is not None
        return self._pools

    # -- RFC 4388 over UDP ---------------------------------------------------------------
    def answer(self, msg: DhcpMessage, src_ip: int, sid: bytes, now: float) -> Answer:
        """One DHCPLEASEQUERY that came in from `src_ip`; `sid` is our server identifier
        for the interface and group it came in on."""
        if msg.giaddr == ZERO:
            return Answer(LqReason.NO_GIADDR, detail=f"source {IPv4Address(src_ip)}")
        gi = int.from_bytes(msg.giaddr, "big")
        if not allowed(self.requesters, gi, src_ip):
            return Answer(LqReason.NOT_ALLOWED, detail=f"giaddr {IPv4Address(gi)}, source "
                          f"{IPv4Address(src_ip)}")
        q = parse_query(msg)
        if q is None:
            return Answer(LqReason.MALFORMED, detail=f"giaddr {IPv4Address(gi)}")
        r = self._single(msg, q, sid, now, bulk=False)
        return Answer(reply=r, sent=_SENT[r.message_type])  # type: ignore[index]

    def _single(self, msg: DhcpMessage, q: Query, sid: bytes, now: float, bulk: bool
                ) -> DhcpMessage:
        """The one answer to a query by address, client id or MAC."""
        table = self.table
        if q.kind is Kind.ADDRESS:
            lease = table.get(q.ip)
            if lease is not None and lease.active(now) and _in_window(q, lease):
                return self._reply(msg, lease, MessageType.LEASEACTIVE, sid, now, bulk)
            if lease is not None or self.pools.leasable(q.ip) is not None:
                r = self._empty(msg, MessageType.LEASEUNASSIGNED, sid, now, bulk)
                r.ciaddr = q.ip.to_bytes(4, "big")
                if bulk and lease is not None:
                    self._state_options(r, lease, now)
                elif bulk:
                    r.options[Opt.DHCP_STATE] = bytes((DhcpState.AVAILABLE,))
                return r
            return self._empty(msg, MessageType.LEASEUNKNOWN, sid, now, bulk)
        if q.kind is Kind.CLIENT_ID:
            lease = table.of_client(q.key)
            found = [lease] if lease is not None and lease.active(now) else []
        else:
            found = [x for x in table.by_ip.values() if x.mac == q.key and x.active(now)]
        found = [x for x in found if _in_window(q, x)]
        if not found:
            return self._empty(msg, MessageType.LEASEUNKNOWN, sid, now, bulk)
        # RFC 4388: the most recent in ciaddr, the others in associated-ip.
        found.sort(key=lambda x: x.start, reverse=True)
        r = self._reply(msg, found[0], MessageType.LEASEACTIVE, sid, now, bulk)
        if len(found) > 1:
            r.options[Opt.ASSOCIATED_IP] = b"".join(x.ip.to_bytes(4, "big")
                                                    for x in found[1:64])
        return r

    def _empty(self, msg: DhcpMessage, mtype: int, sid: bytes, now: float, bulk: bool
               ) -> DhcpMessage:
        r = new_reply(msg, mtype)
        r.options[Opt.SERVER_ID] = sid
        if bulk:
            r.options[Opt.BASE_TIME] = _U32.pack(_u32(now))
        return r

    def _reply(self, msg: DhcpMessage, lease: Lease, mtype: int, sid: bytes, now: float,
               bulk: bool) -> DhcpMessage:
        r = self._empty(msg, mtype, sid, now, bulk)
        mac = lease.mac[:16]
        r.htype, r.hlen = (1 if mac else 0), len(mac)
        r.chaddr = mac + bytes(16 - len(mac))
        r.ciaddr = lease.ip.to_bytes(4, "big")
        o = r.options
        if lease.state == LeaseState.BOUND:
            o[Opt.LEASE_TIME] = _U32.pack(_u32(lease.expires - now))
        o[Opt.CLIENT_LAST_TRANSACTION_TIME] = _U32.pack(_u32(now - lease.start))
        if lease.client_id:
            o[Opt.CLIENT_ID] = lease.client_id
        prl = msg.options.get(_PRL, b"")
        if lease.hostname and Opt.HOSTNAME in prl:
            o[Opt.HOSTNAME] = lease.hostname.encode()
        if bulk:
            self._state_options(r, lease, now)
        if lease.relay_info is not None:
            o[Opt.RELAY_AGENT_INFO] = lease.relay_info  # last (RFC 3046 §2.1)
        return r

    def _state_options(self, r: DhcpMessage, lease: Lease, now: float) -> None:
        """RFC 6926: start-time-of-state, dhcp-state, data-source."""
        o = r.options
        o[Opt.START_TIME_OF_STATE] = _U32.pack(_u32(now - _since(lease)))
        o[Opt.DHCP_STATE] = bytes((_STATE[lease.state],))
        o[Opt.DATA_SOURCE] = bytes((DATA_SOURCE_REMOTE if lease.origin and
                                    lease.origin != self.node else 0,))

    # -- RFC 6926 over TCP ---------------------------------------------------------------
    def bulk(self, msg: DhcpMessage, sid: bytes, now: float) -> Iterator[DhcpMessage]:
        """The answers to one DHCPBULKLEASEQUERY, ending with DHCPLEASEQUERYDONE. The
        caller decides who may ask and whether we serve; it takes them a few at a time
        (each step reads the table as it is then: a binding changed meanwhile is sent
        as it is now, one removed is skipped)."""
        q = parse_query(msg, bulk=True)
        if q is None:
            yield self.done(msg, sid, now, Status.MALFORMED_QUERY, "malformed query")
            return
        if q.kind in (Kind.ADDRESS, Kind.CLIENT_ID, Kind.MAC):
            r = self._single(msg, q, sid, now, bulk=True)
            if r.message_type != MessageType.LEASEUNKNOWN:
                yield r
            yield self.done(msg, sid, now)
            return
        table = self.table
        everything = q.kind is Kind.ALL
        for ip in list(table.by_ip):
            lease = table.by_ip.get(ip)
            if lease is None or lease.state in (LeaseState.OFFERED, LeaseState.DELETED):
                continue
            active = lease.active(now)
            if not (active or everything) or not _in_window(q, lease):
                continue
            if q.relay:
                subs = subopts(lease.relay_info)
                if subs is None or any(subs.get(c) != v for c, v in q.relay):
                    continue
            yield self._reply(msg, lease, MessageType.LEASEACTIVE if active else
                              MessageType.LEASEUNASSIGNED, sid, now, bulk=True)
        yield self.done(msg, sid, now)

    def done(self, msg: DhcpMessage, sid: bytes, now: float,
             status: Status = Status.SUCCESS, text: str = "") -> DhcpMessage:
        """DHCPLEASEQUERYDONE: the end of a query's answers; a status-code other than
        Success says why it ended early (RFC 6926)."""
        r = self._empty(msg, MessageType.LEASEQUERYDONE, sid, now, bulk=True)
        if status is not Status.SUCCESS:
            r.options[Opt.STATUS_CODE] = bytes((status,)) + text.encode()[:200]
        return r


_SENT = {MessageType.LEASEACTIVE: "leaseactive", MessageType.LEASEUNASSIGNED: "leaseunassigned",
         MessageType.LEASEUNKNOWN: "leaseunknown"}


def _u32(seconds: float) -> int:
    return min(max(int(seconds), 0), 0xFFFFFFFF)


def _in_window(q: Query, lease: Lease) -> bool:
    """RFC 6926: the binding's state began within [start, end]."""
    if q.start is None and q.end is None:
        return True
    t = _since(lease)
    return (q.start is None or t >= q.start) and (q.end is None or t <= q.end)


# -- the TCP stream (RFC 6926) ------------------------------------------------------
class FrameError(ValueError):
    """The stream is not length-framed DHCP; the connection is closed."""


class Framer:
    """Splits a byte stream into messages: two octets of length, then that many."""

    __slots__ = ("_buf", "max_len")

    def __init__(self, max_len: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_len = max_len

    def feed(self, data: bytes) -> list[bytes]:
        """The complete messages `data` finishes; raises FrameError on a length of 0 or
        beyond max_len (nothing after it can be trusted to be framed)."""
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= 2:
            n = _LEN.unpack_from(buf)[0]
            if n == 0 or n > self.max_len:
                raise FrameError(f"frame of {n} bytes (1..{self.max_len})")
            if len(buf) < 2 + n:
                break
            out.append(bytes(buf[2 : 2 + n]))
            del buf[: 2 + n]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def frame(payload: bytes) -> bytes:
    if not 0 < len(payload) <= 0xFFFF:
        raise ValueError(f"a frame holds 1..65535 bytes, not {len(payload)}")
    return _LEN.pack(len(payload)) + payload


def read_bulk_query(data: bytes) -> DhcpMessage | LqReason:
    """A framed message as a DHCPBULKLEASEQUERY, or why it is not one."""
    try:
        msg = DhcpMessage.decode(data)
    except DecodeError:
        return LqReason.BULK_FRAME
    if msg.op != Op.BOOTREQUEST or msg.message_type != _BULK:
        return LqReason.BULK_NOT_QUERY
    return msg


def is_leasequery(msg: DhcpMessage) -> bool:
    return msg.message_type == _LEASEQUERY
