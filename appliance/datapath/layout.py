"""The Python side of bpf/dhcp_steer.h: map names, role and counter enums, ctypes mirrors.

Pure: ctypes is used only to describe layouts. bpf/dhcp_steer.h is the source of
truth; tests/datapath/test_xdp_prog.py parses it and compares every constant and
enum value below, and checks each ctypes mirror against bcc's Key/Leaf types (size
and field offsets) of the compiled program (Cilium's alignchecker, adapted).

Python code refers to maps only through the MAP_* names here (Katran's
KatranLbMaps), never through string literals of its own.
"""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass

from appliance.dhcp import loadbalance

# -- the program -------------------------------------------------------------------
SOURCE_FILE = "dhcp_steer.bpf.c"  # in bpf/
PROG_NAME = "dhcp_steer"  # the XDP entry function

# -- maps (bpf/maps.h) -------------------------------------------------------------
MAP_IFACES = "ifaces"
MAP_GROUP_ROLE = "group_role"
MAP_LB_TABLE = "lb_table"
MAP_CONFIG = "config"
MAP_STATS = "stats"
MAP_RATE_LIMIT = "rate_limit"
MAP_NEW_CLIENT = "new_client"

# -- constants (#define in dhcp_steer.h) -------------------------------------------
RATE_LIMIT_ENTRIES = 65536  # default; -DRATE_LIMIT_ENTRIES overrides
VLAN_MAX_DEPTH = 2
MAX_GROUPS = 1024  # group indexes 0..MAX_GROUPS-1; -DMAX_GROUPS overrides
IFACE_ENTRIES = 4096  # bound (ifindex, VLAN) keys; -DIFACE_ENTRIES overrides
DHCP_SERVER_PORT = 67  # RFC 2131 §4.1
BOOTP_FIXED_LEN = 236  # RFC 2131 §2
BOOTP_MIN_LEN = 240  # fixed header + magic cookie, RFC 2131 §3
BOOTP_OFF_HTYPE = 1  # RFC 2131 §2 figure 1: octet offsets in the BOOTP header
BOOTP_OFF_HLEN = 2
BOOTP_OFF_CHADDR = 28
BOOTP_HTYPE_ETHER = 1  # IANA ARP hardware type 1: chaddr holds a MAC
BOOTP_HLEN_ETHER = 6
BOOTP_CHADDR_LEN = 16  # RFC 2131 §2
VLAN_VID_MASK = 0x0FFF  # IEEE 802.1Q: the VID is the TCI's low 12 bits
IFACE_VLANS = 2  # VLAN ids in an interface key (>= VLAN_MAX_DEPTH)
IFACE_MAX_GROUPS = 2  # groups one interface can be bound to
RFC3074_TABLE_LEN = 256
NS_PER_TOKEN = 1_000_000_000
RATE_LIMIT_MAX_PPS = 1_000_000
RATE_LIMIT_MAX_BURST = 4_000_000
RATE_LIMIT_MAX_ELAPSED_NS = 1_000_000_000_000
NEW_CLIENT_CAS_TRIES = 4  # compare-and-swap attempts on the budget word

# Every #define above, by its C name, for the header cross-check.
DEFINES: dict[str, int] = {
    "RATE_LIMIT_ENTRIES": RATE_LIMIT_ENTRIES,
    "VLAN_MAX_DEPTH": VLAN_MAX_DEPTH,
    "MAX_GROUPS": MAX_GROUPS,
    "IFACE_ENTRIES": IFACE_ENTRIES,
    "DHCP_SERVER_PORT": DHCP_SERVER_PORT,
    "BOOTP_FIXED_LEN": BOOTP_FIXED_LEN,
    "BOOTP_MIN_LEN": BOOTP_MIN_LEN,
    "BOOTP_OFF_HTYPE": BOOTP_OFF_HTYPE,
    "BOOTP_OFF_HLEN": BOOTP_OFF_HLEN,
    "BOOTP_OFF_CHADDR": BOOTP_OFF_CHADDR,
    "BOOTP_HTYPE_ETHER": BOOTP_HTYPE_ETHER,
    "BOOTP_HLEN_ETHER": BOOTP_HLEN_ETHER,
    "BOOTP_CHADDR_LEN": BOOTP_CHADDR_LEN,
    "VLAN_VID_MASK": VLAN_VID_MASK,
    "IFACE_VLANS": IFACE_VLANS,
    "IFACE_MAX_GROUPS": IFACE_MAX_GROUPS,
    "RFC3074_TABLE_LEN": RFC3074_TABLE_LEN,
    "NS_PER_TOKEN": NS_PER_TOKEN,
    "RATE_LIMIT_MAX_PPS": RATE_LIMIT_MAX_PPS,
    "RATE_LIMIT_MAX_BURST": RATE_LIMIT_MAX_BURST,
    "RATE_LIMIT_MAX_ELAPSED_NS": RATE_LIMIT_MAX_ELAPSED_NS,
    "NEW_CLIENT_CAS_TRIES": NEW_CLIENT_CAS_TRIES,
}


# -- enums ------------------------------------------------------------------------
class Role(enum.IntEnum):
    """enum role_value: the word in each slot of `group_role` (one per group)."""

    STANDBY = 0  # ROLE_STANDBY: the zero-filled default
    ACTIVE = 1  # ROLE_ACTIVE


class Stat(enum.IntEnum):
    """enum stat_index: index into a `stats` record (without STAT_MAX)."""

    SEEN = 0
    PASSED = 1
    DROPPED_STANDBY = 2
    DROPPED_RATELIMIT = 3
    MALFORMED = 4
    DROPPED_NEW_CLIENT = 5  # no bucket yet and the new-client budget is empty
    DROPPED_OTHER_BUCKET = 6  # shared interface: the client's bucket is the peer's
    UNBOUND = 7  # DHCP on an (ifindex, VLAN) no interface is bound to: passed

    @property
    def counter_name(self) -> str:
        """The name in counters() and the runtime tree: 'dropped_standby'."""
        return self.name.lower()


STAT_MAX = len(Stat)
# The outcomes every DHCP frame on a bound interface counts in exactly one of:
# seen == the sum of these. UNBOUND is apart (not ours, not in seen).
OUTCOMES: tuple[Stat, ...] = (Stat.PASSED, Stat.DROPPED_STANDBY, Stat.DROPPED_RATELIMIT,
                              Stat.MALFORMED, Stat.DROPPED_NEW_CLIENT,
                              Stat.DROPPED_OTHER_BUCKET)
STATS_SLOT_UNBOUND = MAX_GROUPS  # the `stats` slot of STAT_UNBOUND

# C enum name -> {C member name: value}, for the header cross-check.
ENUMS: dict[str, dict[str, int]] = {
    "role_value": {f"ROLE_{m.name}": int(m) for m in Role},
    "stat_index": {**{f"STAT_{m.name}": int(m) for m in Stat}, "STAT_MAX": STAT_MAX},
}


# -- key / value mirrors ----------------------------------------------------------
GroupRoleKey = ctypes.c_uint32  # group index
GroupRoleValue = ctypes.c_uint32  # enum role_value
LbTableKey = ctypes.c_uint32  # array index, always 0
ConfigKey = ctypes.c_uint32  # array index, always 0
NewClientKey = ctypes.c_uint32  # array index, always 0
StatsKey = ctypes.c_uint32  # slot: a group index, or STATS_SLOT_UNBOUND


class IfaceKey(ctypes.Structure):
    """struct iface_key: the port's ifindex and the frame's VLAN ids, outermost first,
    0 where there is no tag."""

    _fields_ = [("ifindex", ctypes.c_uint32), ("vlan", ctypes.c_uint16 * IFACE_VLANS)]


class IfaceValue(ctypes.Structure):
    """struct iface_value: 1 group, or 2 sharing the interface's clients by bucket."""

    _fields_ = [("groups", ctypes.c_uint32),
                ("group", ctypes.c_uint32 * IFACE_MAX_GROUPS)]


class LbTableValue(ctypes.Structure):
    """struct lb_table_value: the RFC 3074 mixing table."""

    _fields_ = [("mix", ctypes.c_uint8 * RFC3074_TABLE_LEN)]


class StatsValue(ctypes.Structure):
    """struct stats_value: one group's counters (one record per possible CPU)."""

    _fields_ = [("count", ctypes.c_uint64 * STAT_MAX)]


# bpf/dhcp_steer.h RFC3074_MIX_TABLE, what the loader writes into `lb_table`: the
# table of appliance/dhcp/loadbalance.py, tested equal to the header's.
LB_TABLE: tuple[int, ...] = loadbalance.MIX_TABLE


class ConfigValue(ctypes.Structure):
    """struct config_value."""

    _fields_ = [
        ("rate_limit_pps", ctypes.c_uint32),
        ("rate_limit_burst", ctypes.c_uint32),
        ("new_client_pps", ctypes.c_uint32),
        ("new_client_burst", ctypes.c_uint32),
    ]


class RateLimitKey(ctypes.Structure):
    """struct rate_limit_key: the client hardware address."""

    _fields_ = [("mac", ctypes.c_uint8 * 6)]


class RateLimitValue(ctypes.Structure):
    """struct rate_limit_value: one token bucket (tokens in nanotokens)."""

    _fields_ = [
        ("tokens", ctypes.c_uint64),
        ("last_ns", ctypes.c_uint64),
    ]


class NewClientValue(ctypes.Structure):
    """struct new_client_value: the global new-client budget (GCRA theoretical
    arrival time, bpf_ktime_get_ns clock; 0 = full)."""

    _fields_ = [("tat_ns", ctypes.c_uint64)]


@dataclass(frozen=True, slots=True)
class MapSpec:
    """One map of the catalogue in bpf/maps.h."""

    name: str
    kind: str  # bcc's table class name: "Array", "PerCpuArray", "LruHash"
    key: type[ctypes._SimpleCData] | type[ctypes.Structure]
    value: type[ctypes._SimpleCData] | type[ctypes.Structure]
    max_entries: int | None  # None: set by a compile-time knob (default_entries)


def default_entries(name: str) -> int:
    """max_entries of a map sized by a compile-time knob, at the header's defaults."""
    return {MAP_IFACES: IFACE_ENTRIES, MAP_GROUP_ROLE: MAX_GROUPS,
            MAP_STATS: MAX_GROUPS + 1, MAP_RATE_LIMIT: RATE_LIMIT_ENTRIES}[name]


MAPS: tuple[MapSpec, ...] = (
    MapSpec(MAP_IFACES, "HashTable", IfaceKey, IfaceValue, None),
    MapSpec(MAP_GROUP_ROLE, "Array", GroupRoleKey, GroupRoleValue, None),
    MapSpec(MAP_LB_TABLE, "Array", LbTableKey, LbTableValue, 1),
    MapSpec(MAP_CONFIG, "Array", ConfigKey, ConfigValue, 1),
    MapSpec(MAP_STATS, "PerCpuArray", StatsKey, StatsValue, None),
    MapSpec(MAP_RATE_LIMIT, "LruHash", RateLimitKey, RateLimitValue, None),
    MapSpec(MAP_NEW_CLIENT, "Array", NewClientKey, NewClientValue, 1),
)
