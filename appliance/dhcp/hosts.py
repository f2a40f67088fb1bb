"""Hosts: clients known by configuration (hosts/<name>/), found per message.

Pure. A host is found by one identifier (DESIGN.md, "Options, classes, hosts"): its MAC,
its client identifier (option 61), or its relay's Option 82 circuit-id or remote-id
(RFC 3046 §3.1, §3.2), optionally only through one relay (giaddr). A circuit-id or
remote-id host is a subscriber port: its address goes with the port, whatever device is
plugged in, so a new device there takes over the binding of the one it replaced
(`owns`). When one message matches several hosts, the order is Kea's default
host-reservation-identifiers order: MAC, client id, circuit-id, then remote-id.

Everything is compiled when the config is loaded: per message it is at most four dict
lookups, and option 82 is parsed only when some host is found by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.config.model import HostConfig
from appliance.dhcp.enums import Opt, RelaySubOpt
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.options import OptionError, parse_relay_info
from appliance.leases.model import Lease

_ZERO = b"\x00\x00\x00\x00"
_CLIENT_ID = int(Opt.CLIENT_ID)
_RELAY_INFO = int(Opt.RELAY_AGENT_INFO)
_CIRCUIT = int(RelaySubOpt.CIRCUIT_ID)
_REMOTE = int(RelaySubOpt.REMOTE_ID)


@dataclass(frozen=True, slots=True, eq=False)
class Host:
    """One compiled host. `index` is its place in the config (1-based: 0 is "no host"
    in the reply cache's keys)."""

    name: str
    index: int
    ip: int  # 0: no fixed address
    hostname: bytes | None  # option 12's value
    options: dict[int, bytes] = field(default_factory=dict)
    # for a port (circuit-id / remote-id) host: (sub-option, value, relay or 0)
    port: tuple[int, bytes, int] | None = None

    def owns(self, lease: Lease) -> bool:
        """`lease` was bound through this host's port: the same relay sub-option value
        (and relay, when the host names one). A new device on the port replaces it."""
        if self.port is None or lease.relay_info is None:
            return False
        sub, value, relay = self.port
        if relay and lease.relay != relay:
            return False
        try:
            subs = parse_relay_info(lease.relay_info)
        except OptionError:
            return False
        return any(c == sub and v == value for c, v in subs)


class Hosts:
    """The hosts of a config, indexed by each kind of identifier and by address."""

    def __init__(self, configs: tuple[HostConfig, ...] = ()) -> None:
        self.by_mac: dict[bytes, Host] = {}
        self.by_client_id: dict[bytes, Host] = {}
        # (relay giaddr as int, 0 for any; value) -> host
        self.by_circuit: dict[tuple[int, bytes], Host] = {}
        self.by_remote: dict[tuple[int, bytes], Host] = {}
        self.by_ip: dict[int, Host] = {}
        self.all: list[Host] = []
        for n, hc in enumerate(configs, 1):
            relay = int(hc.relay) if hc.relay is not None else 0
            port = None
            if hc.circuit_id is not None:
                port = (_CIRCUIT, hc.circuit_id, relay)
            elif hc.remote_id is not None:
                port = (_REMOTE, hc.remote_id, relay)
            h = Host(hc.name, n, int(hc.address) if hc.address is not None else 0,
                     hc.hostname.encode() if hc.hostname else None,
                     {o.code: o.data for o in hc.options}, port)
            self.all.append(h)
            if hc.mac is not None:
                self.by_mac[hc.mac] = h
            elif hc.client_id is not None:
                self.by_client_id[hc.client_id] = h
            elif hc.circuit_id is not None:
                self.by_circuit[(relay, hc.circuit_id)] = h
            elif hc.remote_id is not None:
                self.by_remote[(relay, hc.remote_id)] = h
            if h.ip:
                self.by_ip[h.ip] = h

    def __len__(self) -> int:
        return len(self.all)

    def find(self, msg: DhcpMessage) -> Host | None:
        """The host `msg` comes from, or None."""
        if self.by_mac:
            h = self.by_mac.get(msg.mac)
            if h is not None:
                return h
        opts = msg.options
        if self.by_client_id:
            cid = opts.get(_CLIENT_ID)
            if cid is not None:
                h = self.by_client_id.get(cid)
                if h is not None:
                    return h
        if (self.by_circuit or self.by_remote) and msg.giaddr != _ZERO:
            # Option 82 counts only from a relay (RFC 3046 §2.1): a client cannot claim
            # a subscriber port by sending it itself.
            rai = opts.get(_RELAY_INFO)
            if rai is None:
                return None
            try:
                subs = parse_relay_info(rai)
            except OptionError:
                return None
            relay = int.from_bytes(msg.giaddr, "big")
            for index, sub in ((self.by_circuit, _CIRCUIT), (self.by_remote, _REMOTE)):
                if not index:
                    continue
                for c, v in subs:
                    if c == sub:
                        h = index.get((relay, v)) or index.get((0, v))
                        if h is not None:
                            return h
        return None
