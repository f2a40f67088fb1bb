"""The lease: one user session (address, client, times, relay, Option 82), and its states.

A Lease is immutable; a change is a new Lease with a higher `seq`. The same value is
written to the journal, replicated to the peer and shown by `leases --json`.
Addresses are ints (host order) so that ranges and the pool split are arithmetic.

Every variable field fits the lease codec (leases/codec.py): at most MAX_FIELD bytes.
The DHCP server bounds what it takes from a message when it decides, so that a
decision can always be stored, replicated and expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address


class LeaseState(IntEnum):
    """Lifecycle of a binding. OFFERED lives only in memory (never journaled nor synced)."""

    OFFERED = 0
    BOUND = 1
    RELEASED = 2  # DHCPRELEASE: address free, client remembered for affinity
    EXPIRED = 3  # reclaimed after `expires`: address free, client remembered
    DECLINED = 4  # DHCPDECLINE: address quarantined until `expires`
    DELETED = 5  # tombstone: forget the binding (split-brain loser, admin removal)


# States whose address may not be handed to anyone else until `expires`.
HOLDING_STATES = frozenset({LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED})

# The longest variable field a lease can store (one length byte in leases/codec.py; as
# long as one DHCP option, RFC 2132 §2).
MAX_FIELD = 255

# A lease that belongs to no client (a quarantined address after DHCPDECLINE: the
# declining client's binding ends, RFC 2131 §4.3.3) is keyed by its address. The key is
# longer than MAX_FIELD, so no client identifier or MAC a lease can hold equals it:
# each such address is a client of its own for the table, the merge rules and the
# catch-up delta (sync/merge.coalesce keeps one change per key).
_ADDRESS_KEY = b"\x00" * (MAX_FIELD - 3)


def client_key(mac: bytes, client_id: bytes | None) -> bytes:
    """RFC 2131 §4.2: a client is its client identifier (option 61) if it sent one,
    else its chaddr. The key is that very bytes object (no copy: a million leases).
    A client id equal to another client's bare MAC could alias it; that is no more
    than what spoofing chaddr already allows on an unauthenticated protocol. Empty
    when the message has neither (the server refuses it: nothing to key it by)."""
    return client_id or mac


def address_key(ip: int) -> bytes:
    """The key of a lease that has no client (no MAC, no client id): its address."""
    return _ADDRESS_KEY + ip.to_bytes(4, "big")


def circuit_id(relay_info: bytes | None) -> bytes | None:
    """The Agent Circuit ID sub-option (RFC 3046 §3.1) of a raw option 82, or None when
    absent or when the option is malformed. (dhcp/options.py has the full parser; the
    lease table needs this one field and `leases` never imports `dhcp`.)"""
    if not relay_info:
        return None
    i, n = 0, len(relay_info)
    while i + 1 < n:
        end = i + 2 + relay_info[i + 1]
        if end > n:
            return None
        if relay_info[i] == 1:
            return relay_info[i + 2 : end]
        i = end
    return None


@dataclass(frozen=True, slots=True)
class Lease:
    ip: int
    mac: bytes
    client_id: bytes | None
    state: LeaseState
    start: float  # unix seconds, when the binding was made or last renewed
    expires: float  # unix seconds
    pool: str
    hostname: str | None = None
    relay_info: bytes | None = None  # the raw value of option 82, sub-options included
    seq: int = 0  # replication sequence number, assigned when the change is committed
    origin: str = ""  # node name of the device that made this change
    # giaddr of the relay agent the binding was made through (RFC 2131 §4.1), 0 when the
    # client is on our own link. Kept across unicast renewals, which bypass the relay.
    relay: int = 0

    @property
    def key(self) -> bytes:
        return self.client_id or self.mac or address_key(self.ip)

    @property
    def address(self) -> IPv4Address:
        return IPv4Address(self.ip)

    def holds(self, now: float) -> bool:
        """True while nobody else may get this address."""
        return self.state in HOLDING_STATES and self.expires > now

    def active(self, now: float) -> bool:
        return self.state == LeaseState.BOUND and self.expires > now
