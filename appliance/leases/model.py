"""The lease: one user session (address, client, times, Option 82), and its states.

A Lease is immutable; a change is a new Lease with a higher `seq`. The same value is
written to the journal, replicated to the peer and shown by `leases --json`.
Addresses are ints (host order) so that ranges and the pool split are arithmetic.
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


def client_key(mac: bytes, client_id: bytes | None) -> bytes:
    """RFC 2131 §4.2: a client is its client identifier (option 61) if it sent one,
    else its chaddr. The key is that very bytes object (no copy: a million leases).
    A client id equal to another client's bare MAC could alias it; that is no more
    than what spoofing chaddr already allows on an unauthenticated protocol."""
    return client_id or mac


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

    @property
    def key(self) -> bytes:
        return client_key(self.mac, self.client_id)

    @property
    def address(self) -> IPv4Address:
        return IPv4Address(self.ip)

    def holds(self, now: float) -> bool:
        """True while nobody else may get this address."""
        return self.state in HOLDING_STATES and self.expires > now

    def active(self, now: float) -> bool:
        return self.state == LeaseState.BOUND and self.expires > now
