"""What a reply carries: the options of the four levels, lease times, and fitting it all
into the client's maximum message size.

Pure. `Policy` is compiled from the config when it is loaded or reloaded (never per
packet): each level's options are wire bytes already (config/tree.py read them through
dhcp/options.py's table), the classes and hosts are indexed, and the merged option table
of each (pool, classes, host) combination is computed once and kept (`options_for`).

Rules:
- Levels, the most specific winning (DESIGN.md): global (options/), the pool (its
  subnet mask and broadcast address, pools/<p>/router|dns|domain, pools/<p>/options/),
  the client's classes (the first in name order wins between two), the host.
- What is sent (RFC 2131 §4.3.1, RFC 2132 §9.8): the message type, the server
  identifier, the lease time with T1 and T2 (not in a reply to INFORM, §3.4); then the
  options the Parameter Request List names, in its order; then those every client
  gets asked or not (subnet mask, routers, DNS servers, domain name: Kea's "basic"
  options, which clients that send no PRL rely on); option 12 when the host has a name
  and the client asked for it or sent its own; the client identifier echoed (RFC 6842)
  and the relay's option 82 echoed last (RFC 3046 §2.2).
- Lease time: the pool's; a client asking for its own (option 51, RFC 2131 §3.5) gets it
  within pools/<p>/min_lease_time..max_lease_time. T1 and T2: pools/<p>/renew_time and
  rebind_time when they fit below that lease, else 0.5 and 0.875 of it (§4.4.5).
- Size: a value longer than 255 bytes is split into instances (RFC 3396 §5, done by
  DhcpMessage.encode). A reply larger than the client accepts (option 57, at least the
  576-byte minimum of RFC 2131 §2, less the 28 bytes of IP and UDP headers; at most one
  Ethernet frame, as the reply is never fragmented) moves options into `file`, then
  `sname`, and says so in option 52 (RFC 2132 §9.3); options 53, 54 and 82 stay in the
  options field, where relays and clients look first. What fits nowhere is left out
  and counted (Note.OPTIONS_DROPPED).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from appliance.config.model import Config
from appliance.dhcp.classes import Classifier
from appliance.dhcp.enums import Opt
from appliance.dhcp.hosts import Host, Hosts
from appliance.dhcp.message import DhcpMessage
from appliance.leases.pool import Pool

_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
# Sent whether the PRL names them or not (see the module rules).
ALWAYS = (int(Opt.SUBNET_MASK), int(Opt.ROUTER), int(Opt.DNS), int(Opt.DOMAIN_NAME))
_PRL = int(Opt.PARAM_REQUEST_LIST)
_HOSTNAME = int(Opt.HOSTNAME)
_LEASE_TIME = int(Opt.LEASE_TIME)
_MAX_SIZE = int(Opt.MAX_MESSAGE_SIZE)
_OVERLOAD = int(Opt.OVERLOAD)
# Kept in the options field when the rest is moved to file/sname.
_PINNED = frozenset((int(Opt.MESSAGE_TYPE), int(Opt.SERVER_ID), int(Opt.RELAY_AGENT_INFO)))
_RELAY_INFO = int(Opt.RELAY_AGENT_INFO)
_CLIENT_ID = int(Opt.CLIENT_ID)
MIN_MESSAGE = 576  # RFC 2131 §2: every client accepts this much (IP datagram)
MAX_MESSAGE = 1500  # one Ethernet frame: replies are not fragmented
IP_UDP = 28  # IPv4 + UDP headers
HEADER = 240  # BOOTP fixed fields and the magic cookie
_FILE_LEN, _SNAME_LEN = 128, 64
# The merged tables kept: pools x class combinations x hosts in use; beyond this (a
# config far larger than any we know of) the cache starts again rather than grow.
CACHE_MAX = 65536


class Policy:
    """Options, classes and hosts of one config, compiled."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.global_options: dict[int, bytes] = (
            {o.code: o.data for o in cfg.options} if cfg is not None else {})
        self.classes = Classifier(cfg.classes if cfg is not None else ())
        self.hosts = Hosts(cfg.hosts if cfg is not None else ())
        self._pool_options: dict[str, dict[int, bytes]] = {}
        self._rules: dict[str, tuple[bool, int, int]] = {}
        self._merged: dict[tuple[str, int, int], dict[int, bytes]] = {}
        self._selected: dict[tuple[str, int, int, bytes | None], Selection] = {}

    def clear(self) -> None:
        """Forget what was computed from the pools (they were rebuilt)."""
        self._pool_options.clear()
        self._rules.clear()
        self._merged.clear()
        self._selected.clear()

    # -- per pool ---------------------------------------------------------------------
    def pool_options(self, pool: Pool) -> dict[int, bytes]:
        """The pool level alone: subnet mask and broadcast address (RFC 2132 §3.3, §5.3)
        from its subnet, the router/dns/domain aliases, then pools/<p>/options/."""
        out = self._pool_options.get(pool.name)
        if out is None:
            pc = pool.config
            out = {int(Opt.SUBNET_MASK): _U32.pack(pool.mask)}
            if pc.router:
                out[int(Opt.ROUTER)] = b"".join(a.packed for a in pc.router)
            if pc.dns:
                out[int(Opt.DNS)] = b"".join(a.packed for a in pc.dns)
            if pc.domain:
                out[int(Opt.DOMAIN_NAME)] = pc.domain.encode()
            out[int(Opt.BROADCAST_ADDRESS)] = _U32.pack(pool.net | (~pool.mask & 0xFFFFFFFF))
            for o in pc.options:
                out[o.code] = o.data
            self._pool_options[pool.name] = out
        return out

    def admits(self, pool: Pool, classes: int) -> bool:
        """The pool's allow_classes / deny_classes let a client of `classes` in."""
        rule = self._rules.get(pool.name)
        if rule is None:
            pc = pool.config
            # (restricted, allow mask, deny mask); config/tree.py refuses unknown names
            rule = (bool(pc.allow_classes), self.classes.mask(pc.allow_classes),
                    self.classes.mask(pc.deny_classes))
            self._rules[pool.name] = rule
        restricted, allow, deny = rule
        if classes & deny:
            return False
        return not restricted or bool(classes & allow)

    def options_for(self, pool: Pool, classes: int, host: Host | None) -> dict[int, bytes]:
        """The merged option table for this combination, computed once."""
        k = (pool.name, classes, host.index if host is not None else 0)
        out = self._merged.get(k)
        if out is None:
            out = dict(self.global_options)
            out.update(self.pool_options(pool))
            if classes:
                # the first class in name order wins: apply the others first
                for i in reversed(range(len(self.classes.names))):
                    if classes >> i & 1:
                        out.update(self.classes.options[i])
            if host is not None:
                out.update(host.options)
            if len(self._merged) >= CACHE_MAX:
                self._merged.clear()
            self._merged[k] = out
        return out

    def selected(self, pool: Pool, classes: int, host: Host | None,
                 prl: bytes | None) -> Selection:
        """What a client asking for `prl` gets from this combination, in order: the
        PRL's codes, then ALWAYS (see the module rules). Computed once per (combination,
        PRL): a network's clients send a handful of different lists. The table holds no
        code the reply sets itself (53, 54, 51, 58, 59, 61, 82: options.NOT_CONFIGURABLE),
        so these items never overwrite one."""
        k = (pool.name, classes, host.index if host is not None else 0, prl)
        sel = self._selected.get(k)
        if sel is None:
            avail = self.options_for(pool, classes, host)
            out: dict[int, bytes] = {}
            for code in (*(prl or b""), *ALWAYS):
                v = avail.get(code)
                if v is not None and code not in out:
                    out[code] = v
            sel = Selection(tuple(out.items()))
            if len(self._selected) >= CACHE_MAX:
                self._selected.clear()  # a flood of made-up lists: start again
            self._selected[k] = sel
        return sel

    def global_table(self) -> dict[int, bytes]:
        """The options of a client no pool serves (an INFORM from elsewhere): global."""
        return self.global_options


def lease_time(pool: Pool, msg: DhcpMessage) -> int:
    """The lease for this client: the pool's, or the client's own request (option 51)
    within min_lease_time..max_lease_time."""
    lt = pool.lease_time
    want = msg.options.get(_LEASE_TIME)
    if want is None or len(want) != 4:
        return lt
    pc = pool.config
    lo, hi = pc.min_lease_time or lt, pc.max_lease_time or lt
    v = _U32.unpack(want)[0]
    return lo if v < lo else hi if v > hi else v


def timers(pool: Pool, lease: int) -> tuple[int, int]:
    """T1 and T2 for a lease of `lease` seconds (RFC 2131 §4.4.5)."""
    pc = pool.config
    t1 = pc.renew_time if 0 < pc.renew_time < lease else lease // 2
    t2 = pc.rebind_time if t1 < pc.rebind_time < lease else max(t1, lease * 7 // 8)
    return t1, t2


def _wire(n: int) -> int:
    """Bytes an option of n value bytes takes: split into instances of at most 255
    (RFC 3396 §5)."""
    return n + 2 if n <= 255 else n + 2 * ((n + 254) // 255)


@dataclass(slots=True)
class Layout:
    """Where a selection's options go when the whole reply does not fit: the ones kept
    in the options field, and the encoded `file` and `sname` fields (RFC 2132 §9.3)."""

    main: tuple[tuple[int, bytes], ...]
    file: bytes | None
    sname: bytes | None
    overload: int  # option 52's value, 0: none
    dropped: int  # options that fit nowhere


class Selection:
    """The options one (combination, PRL) gets, their encoded size, and their layouts
    by the room left in the options field (a few distinct values: the per-client parts
    of a reply vary little in size)."""

    __slots__ = ("items", "layouts", "size")

    def __init__(self, items: tuple[tuple[int, bytes], ...]) -> None:
        self.items = items
        self.size = sum(_wire(len(v)) for _, v in items)
        self.layouts: dict[int, Layout] = {}

    def layout(self, room: int) -> Layout:
        lay = self.layouts.get(room)
        if lay is None:
            lay = _layout(self.items, room)
            if len(self.layouts) >= 64:
                self.layouts.clear()
            self.layouts[room] = lay
        return lay


def _layout(items: tuple[tuple[int, bytes], ...], room: int) -> Layout:
    """Greedy, in order: an option goes in the options field while `room` lasts, else in
    `file`, else in `sname` (each ends with END, RFC 2131 §4.1), else it is left out."""
    main = []
    file, sname = bytearray(), bytearray()
    file_room, sname_room = _FILE_LEN - 1, _SNAME_LEN - 1
    dropped = 0
    for code, v in items:
        n = _wire(len(v))
        if n <= room:
            main.append((code, v))
            room -= n
        elif n <= file_room:
            _put(file, code, v)
            file_room -= n
        elif n <= sname_room:
            _put(sname, code, v)
            sname_room -= n
        else:
            dropped += 1
    out_file = out_sname = None
    if file:
        file.append(255)
        out_file = bytes(file) + bytes(_FILE_LEN - len(file))
    if sname:
        sname.append(255)
        out_sname = bytes(sname) + bytes(_SNAME_LEN - len(sname))
    return Layout(tuple(main), out_file, out_sname,
                  (1 if file else 0) | (2 if sname else 0), dropped)


def fill(reply: DhcpMessage, msg: DhcpMessage, sel: Selection, host: Host | None,
         limit: int) -> int:
    """Complete `reply.options` (which holds 53, 54 and the lease times already) for a
    client that accepts `limit` bytes: the selection, the host's name when the client
    asked for it or sent its own (option 12), the client identifier echoed (RFC 6842),
    the relay's option 82 echoed last (RFC 3046 §2.2). The per-client options (lease
    times, 12, 61, 82) stay in the options field; when the reply would not fit, the
    selection's precomputed layout moves the rest to file/sname (option 52). Returns how
    many options fit nowhere."""
    o = reply.options
    mopts = msg.options
    if host is not None and host.hostname is not None:
        prl = mopts.get(_PRL)
        if (prl is not None and _HOSTNAME in prl) or _HOSTNAME in mopts:
            o[_HOSTNAME] = host.hostname
    cid = mopts.get(_CLIENT_ID)
    if cid is not None:
        o[_CLIENT_ID] = cid
    rai = mopts.get(_RELAY_INFO)
    dyn = HEADER + 1 + (_wire(len(rai)) if rai is not None else 0)
    for v in o.values():
        dyn += _wire(len(v))
    items = sel.items
    if dyn + sel.size <= limit:
        if items:
            if _HOSTNAME in o and any(c == _HOSTNAME for c, _ in items):
                del o[_HOSTNAME]  # a configured option 12 wins over the host's name
            o.update(items)
        if rai is not None:
            o[_RELAY_INFO] = rai
        return 0
    lay = sel.layout(limit - dyn - 3)  # 3: option 52 itself
    if _HOSTNAME in o and any(c == _HOSTNAME for c, _ in items):
        del o[_HOSTNAME]
    _place(reply, o, lay)
    if rai is not None:
        o[_RELAY_INFO] = rai
    return lay.dropped


def _place(reply: DhcpMessage, options: dict[int, bytes], lay: Layout) -> None:
    """A layout's options into `options`, and what overflowed into the reply's `file`
    and `sname` fields, with option 52 saying which (RFC 2131 §4.1, RFC 3396)."""
    options.update(lay.main)
    if lay.overload:
        options[_OVERLOAD] = bytes((lay.overload,))
        if lay.file is not None:
            reply.file = lay.file
        if lay.sname is not None:
            reply.sname = lay.sname


def size_limit(msg: DhcpMessage) -> int:
    """The largest DHCP message (UDP payload) this client accepts."""
    v = msg.options.get(_MAX_SIZE)
    size = _U16.unpack(v)[0] if v is not None and len(v) == 2 else MIN_MESSAGE
    return min(max(size, MIN_MESSAGE), MAX_MESSAGE) - IP_UDP


def _put(buf: bytearray, code: int, value: bytes) -> None:
    if not value:
        buf += bytes((code, 0))
    for k in range(0, len(value), 255):
        chunk = value[k : k + 255]
        buf.append(code)
        buf.append(len(chunk))
        buf += chunk


def fit(reply: DhcpMessage, limit: int) -> int:
    """Make any `reply` encode within `limit` bytes, the same way fill() does: 53, 54
    and 82 stay in the options field, the others in their order go there while room
    lasts, then to `file`, then to `sname` (option 52); returns how many fit nowhere.
    `reply.sname` and `reply.file` must be empty."""
    opts = reply.options
    if HEADER + 1 + sum(_wire(len(v)) for v in opts.values()) <= limit:
        return 0
    pinned = {c: v for c, v in opts.items() if c in _PINNED}
    room = limit - HEADER - 1 - 3 - sum(_wire(len(v)) for v in pinned.values())
    lay = _layout(tuple((c, v) for c, v in opts.items() if c not in _PINNED), room)
    out = {c: v for c, v in pinned.items() if c != _RELAY_INFO}
    _place(reply, out, lay)
    if _RELAY_INFO in opts:
        out[_RELAY_INFO] = opts[_RELAY_INFO]
    reply.options = out
    return lay.dropped


EMPTY = Selection(())  # a reply with no pool (an INFORM from no network of ours): no options
