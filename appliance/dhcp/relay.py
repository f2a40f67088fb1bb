"""Relay agents as the server sees them: which link a relayed message comes from, which
server identifier its client is told, where the answer goes, and which pools serve a link.

Pure: no socket, no clock. The server (dhcp/server.py) asks this module, once per
relayed message, what its Option 82 says beyond the circuit-id and remote-id it stores:

- link selection (sub-option 5, RFC 3527): the relay names the client's link with an
  address other than giaddr (giaddr is where the relay is reached, e.g. a loopback of a
  BNG); the pool is chosen by that address, the reply still goes to giaddr;
- server identifier override (sub-option 11, RFC 5107): the reply's option 54 is that
  address (the relay's own), so the client's unicast renewals and RELEASEs go to the
  relay, which relays them with Option 82 again, to whichever device is master. A
  REQUEST, RELEASE or DECLINE naming it is "for us";
- relay source port (sub-option 19, RFC 8357): the relay listens on the port it
  sent from, not 67, and the reply goes there.

A malformed Option 82 (a sub-option running past the end) is used for none of these:
the server still echoes it whole (RFC 3046 §2.2) and counts `relay_info_malformed`.
A link-selection or override sub-option of the wrong length is ignored the same way.

Shared networks ("several subnets behind one relay or interface"): pools whose
`pools/<name>/shared_network` files hold the same name are one link's pools. The pool
the link address falls in is tried first, then the others in name order; a client that
holds an address in one of them keeps it (RFC 2131 §4.3.1: its previous address). A
renewal through the relay of the first subnet for an address of another is on the
client's link, not "wrong network". The pools of a link are computed when the pools are
(re)loaded, never per packet.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.dhcp.enums import RelaySubOpt
from appliance.leases.pool import Pool, Pools

_LINK_SELECTION = int(RelaySubOpt.LINK_SELECTION)
_SERVER_ID_OVERRIDE = int(RelaySubOpt.SERVER_ID_OVERRIDE)
_RELAY_SOURCE_PORT = int(RelaySubOpt.RELAY_SOURCE_PORT)
_CIRCUIT_ID = int(RelaySubOpt.CIRCUIT_ID)
_REMOTE_ID = int(RelaySubOpt.REMOTE_ID)
_RELAY_ID = int(RelaySubOpt.RELAY_ID)


@dataclass(frozen=True, slots=True)
class RelayInfo:
    """What one Option 82 asks of the server (see the module docstring). `link` is the
    RFC 3527 address as an int (None: giaddr names the link); `server_id` the RFC 5107
    address, 4 bytes (None: ours); `source_port` whether RFC 8357's sub-option is there;
    `malformed`: the option could not be read, none of the above is used."""

    link: int | None = None
    server_id: bytes | None = None
    source_port: bool = False
    malformed: bool = False


NONE = RelayInfo()
MALFORMED = RelayInfo(malformed=True)


def relay_info(raw: bytes | None) -> RelayInfo:
    """Read the sub-options the server acts on from a raw Option 82 (RFC 3046 §2.0:
    code, length, value; no PAD or END inside). Never raises."""
    if not raw:
        return NONE
    link = sid = None
    port = False
    i, n = 0, len(raw)
    while i < n:
        if i + 1 >= n:
            return MALFORMED
        code = raw[i]
        j = i + 2 + raw[i + 1]
        if j > n:
            return MALFORMED
        if code == _LINK_SELECTION:
            if j - i != 6:  # RFC 3527: length 4
                return MALFORMED
            link = int.from_bytes(raw[i + 2 : j], "big")
        elif code == _SERVER_ID_OVERRIDE:
            if j - i != 6:  # RFC 5107: length 4
                return MALFORMED
            sid = raw[i + 2 : j]
        elif code == _RELAY_SOURCE_PORT:
            port = True  # RFC 8357: length 0; the port is the datagram's source
        i = j
    if link is None and sid is None and not port:
        return NONE
    return RelayInfo(link, sid, port)


def subopts(raw: bytes | None) -> dict[int, bytes] | None:
    """Option 82's sub-options by code (the first of each), or None when absent or
    malformed. For leasequery matching, not the per-packet path."""
    if not raw:
        return None
    out: dict[int, bytes] = {}
    i, n = 0, len(raw)
    while i < n:
        if i + 1 >= n:
            return None
        j = i + 2 + raw[i + 1]
        if j > n:
            return None
        out.setdefault(raw[i], raw[i + 2 : j])
        i = j
    return out


def remote_id(raw: bytes | None) -> bytes | None:
    s = subopts(raw)
    return None if s is None else s.get(_REMOTE_ID)


def relay_id(raw: bytes | None) -> bytes | None:
    """The Relay Identifier sub-option (RFC 6925)."""
    s = subopts(raw)
    return None if s is None else s.get(_RELAY_ID)


def circuit_id(raw: bytes | None) -> bytes | None:
    s = subopts(raw)
    return None if s is None else s.get(_CIRCUIT_ID)


class Links:
    """The pools of each link: a pool alone, or the pools of its shared network.
    Built once per (re)load of the pools."""

    __slots__ = ("_of", "any")

    def __init__(self, pools: Pools, shared: dict[str, str] | None = None) -> None:
        """`shared`: pool name -> shared network name (pools absent or mapped to "" are
        alone); taken from each pool's config when not given."""
        if shared is None:
            shared = {p.name: getattr(p.config, "shared_network", "") or ""
                      for p in pools.pools}
        members: dict[str, list[Pool]] = {}
        for p in sorted(pools.pools, key=lambda p: p.name):
            net = shared.get(p.name, "")
            if net:
                members.setdefault(net, []).append(p)
        of: dict[str, tuple[Pool, ...]] = {}
        for p in pools.pools:
            net = shared.get(p.name, "")
            others = [q for q in members.get(net, ()) if q is not p] if net else []
            of[p.name] = (p, *others)
        self._of = of
        # Some pool shares its link: without one the server never looks further (the
        # per-packet path stays as it was).
        self.any = any(len(v) > 1 for v in of.values())

    def pools(self, pool: Pool) -> tuple[Pool, ...]:
        """`pool` first, then the other pools of its shared network."""
        return self._of.get(pool.name) or (pool,)

    def same(self, a: Pool, b: Pool) -> bool:
        """`a` and `b` serve one link (the same pool, or one shared network)."""
        return a is b or b in self.pools(a)

    def on_link(self, pool: Pool, ip: int) -> bool:
        """`ip` is in the subnet of a pool of `pool`'s link."""
        return any(p.in_subnet(ip) for p in self.pools(pool))
