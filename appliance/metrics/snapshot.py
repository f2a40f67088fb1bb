"""A plain snapshot of the daemon's state: what the metrics and the alarms are made from.

Pure values. The daemon builds one per publish (about once a second) from what it holds
and hands it over; `families.families(snapshot)` turns it into Prometheus metric families
and `alarms.Alarms` raises and clears alarms on it. Nothing here refers to a socket, a
lease table or a VRRP instance, so the daemon may change shape (many interfaces, several
VRRP groups: issue 12) and only the code that fills a Snapshot follows.

A snapshot is never changed after it is handed over: the exporter's thread reads the
last one while the daemon builds the next (the mappings are fresh dicts each time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Lease states as the metrics name them (leases/model.py LeaseState, lower case).
LEASE_STATES = ("offered", "bound", "released", "expired", "declined")
# States whose address nobody else may be given: what counts as a used address.
USED_STATES = ("offered", "bound", "declined")


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative histogram, Prometheus style: `counts[i]` observations were at most
    `bounds[i]`; `count` of them in all (the +Inf bucket), summing to `total`."""

    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    count: int = 0
    total: float = 0.0


@dataclass(frozen=True, slots=True)
class Interface:
    """A client-facing interface: whether this device answers DHCP on it, and its
    counters (names as under stats/ in the runtime tree)."""

    name: str
    active: bool
    group: str | None = None  # the VRRP group that decides who serves it; None: standalone
    attach_mode: str = "off"  # how the XDP program is attached: native | generic | off
    dhcp: Mapping[str, int] = field(default_factory=dict)  # discover, offer, dropped_*, ...
    xdp: Mapping[str, int] = field(default_factory=dict)  # seen, passed, dropped_*, malformed
    # Its own packet counts (received, sent, dropped_standby): with several interfaces
    # `dhcp` and `xdp` are the device's, in Snapshot.device_dhcp/device_xdp instead.
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Group:
    """A VRRP group (one instance: vrid, priority, the interfaces bound to it)."""

    name: str
    vrid: int
    state: str  # initialize | backup | master
    priority: int  # effective, after tracking
    configured_priority: int
    master: str = ""  # the master's address as seen from here; "" when none is heard
    events: Mapping[str, int] = field(default_factory=dict)  # adverts sent, transitions...
    rejected: Mapping[str, int] = field(default_factory=dict)  # reject reason -> adverts


@dataclass(frozen=True, slots=True)
class Pool:
    """A pool's size, its leases by state, and its use alarm's thresholds."""

    name: str
    size: int  # addresses it hands out: its ranges, and reservations outside them
    leases: Mapping[str, int] = field(default_factory=dict)  # LEASE_STATES -> count
    alarm_percent: int = 0  # raise at or above this use; 0: no alarm
    clear_percent: int = 0  # clear below this use

    @property
    def used(self) -> int:
        return sum(self.leases.get(s, 0) for s in USED_STATES)


@dataclass(frozen=True, slots=True)
class Sync:
    """The sync link to the peer."""

    peer: str  # connected | syncing | disconnected
    ready: bool  # holds everything the peer had (VRRP may preempt)
    lag: int  # updates sent and not yet acknowledged
    last_seq: int  # how far the peer's log is held here
    drift: tuple[str, ...] = ()  # settings that differ from the peer's
    clock_skew_s: float | None = None  # the peer's clock minus ours; None: not measured
    clock_skew_alarm: bool = False  # beyond the link's bound (sync/max_clock_skew_ms)
    delay: Histogram = Histogram()  # replication delay of live updates, seconds
    events: Mapping[str, int] = field(default_factory=dict)  # frames, acks, catch-ups...
    refused: Mapping[str, int] = field(default_factory=dict)  # refusal reason -> count


@dataclass(frozen=True, slots=True)
class Takeover:
    """This device took a group over from a master that failed, or preempted it."""

    group: str
    cause: str  # master_down | master_stopped | peer_down | preempt (VRRP's reason)
    at: float  # wall clock
    duration_s: float  # the wait for the failure's evidence plus this device's own work
    why: str = ""  # the evidence, in words (peer_down: what the sync link said)


@dataclass(frozen=True, slots=True)
class AlarmState:
    """One alarm this device knows of, raised or clear (alarms.py keeps them)."""

    kind: str  # pool_use | takeover | peer_lost | config_drift | clock_skew | store_failed
    subject: str  # the pool or group it is about; "" for the device's own
    active: bool
    since: float  # wall clock of the last raise or clear
    message: str = ""
    raised: int = 0  # times raised since the daemon started

    @property
    def path(self) -> str:
        """Its file in the runtime tree: alarms/<kind>[/<subject>]."""
        return f"alarms/{self.kind}/{self.subject}" if self.subject else f"alarms/{self.kind}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    node: str
    time: float  # wall clock when taken
    started: float  # wall clock when the daemon started
    version: str = ""
    interfaces: tuple[Interface, ...] = ()
    groups: tuple[Group, ...] = ()
    pools: tuple[Pool, ...] = ()
    sync: Sync | None = None  # None: no sync/ folder
    takeovers: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (group, cause)
    last_takeover: Mapping[str, Takeover] = field(default_factory=dict)  # group -> last
    alarms: tuple[AlarmState, ...] = ()
    store_error: str = ""  # why the lease store cannot write; "": it can
    # With several interfaces the server's counters by type and reason are the device's,
    # not an interface's: exported once, with an empty interface label (none), instead
    # of repeated under every interface (a sum over 200 VLANs would count 200 times).
    device_dhcp: Mapping[str, int] = field(default_factory=dict)
    device_xdp: Mapping[str, int] = field(default_factory=dict)
