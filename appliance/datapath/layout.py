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

# -- the program -------------------------------------------------------------------
SOURCE_FILE = "dhcp_steer.bpf.c"  # in bpf/
PROG_NAME = "dhcp_steer"  # the XDP entry function

# -- maps (bpf/maps.h) -------------------------------------------------------------
MAP_ROLE = "role"
MAP_CONFIG = "config"
MAP_STATS = "stats"
MAP_RATE_LIMIT = "rate_limit"
MAP_NEW_CLIENT = "new_client"

# -- constants (#define in dhcp_steer.h) -------------------------------------------
RATE_LIMIT_ENTRIES = 65536  # default; -DRATE_LIMIT_ENTRIES overrides
VLAN_MAX_DEPTH = 2
DHCP_SERVER_PORT = 67  # RFC 2131 §4.1
BOOTP_FIXED_LEN = 236  # RFC 2131 §2
BOOTP_MIN_LEN = 240  # fixed header + magic cookie, RFC 2131 §3
BOOTP_OFF_HTYPE = 1  # RFC 2131 §2 figure 1: octet offsets in the BOOTP header
BOOTP_OFF_HLEN = 2
BOOTP_OFF_CHADDR = 28
BOOTP_HTYPE_ETHER = 1  # IANA ARP hardware type 1: chaddr holds a MAC
BOOTP_HLEN_ETHER = 6
NS_PER_TOKEN = 1_000_000_000
RATE_LIMIT_MAX_PPS = 1_000_000
RATE_LIMIT_MAX_BURST = 4_000_000
RATE_LIMIT_MAX_ELAPSED_NS = 1_000_000_000_000
NEW_CLIENT_CAS_TRIES = 4  # compare-and-swap attempts on the budget word

# Every #define above, by its C name, for the header cross-check.
DEFINES: dict[str, int] = {
    "RATE_LIMIT_ENTRIES": RATE_LIMIT_ENTRIES,
    "VLAN_MAX_DEPTH": VLAN_MAX_DEPTH,
    "DHCP_SERVER_PORT": DHCP_SERVER_PORT,
    "BOOTP_FIXED_LEN": BOOTP_FIXED_LEN,
    "BOOTP_MIN_LEN": BOOTP_MIN_LEN,
    "BOOTP_OFF_HTYPE": BOOTP_OFF_HTYPE,
    "BOOTP_OFF_HLEN": BOOTP_OFF_HLEN,
    "BOOTP_OFF_CHADDR": BOOTP_OFF_CHADDR,
    "BOOTP_HTYPE_ETHER": BOOTP_HTYPE_ETHER,
    "BOOTP_HLEN_ETHER": BOOTP_HLEN_ETHER,
    "NS_PER_TOKEN": NS_PER_TOKEN,
    "RATE_LIMIT_MAX_PPS": RATE_LIMIT_MAX_PPS,
    "RATE_LIMIT_MAX_BURST": RATE_LIMIT_MAX_BURST,
    "RATE_LIMIT_MAX_ELAPSED_NS": RATE_LIMIT_MAX_ELAPSED_NS,
    "NEW_CLIENT_CAS_TRIES": NEW_CLIENT_CAS_TRIES,
}


# -- enums ------------------------------------------------------------------------
class Role(enum.IntEnum):
    """enum role_value: the word in the one-slot `role` array."""

    STANDBY = 0  # ROLE_STANDBY: the zero-filled default
    ACTIVE = 1  # ROLE_ACTIVE


class Stat(enum.IntEnum):
    """enum stat_index: index into the per-CPU `stats` array (without STAT_MAX)."""

    SEEN = 0
    PASSED = 1
    DROPPED_STANDBY = 2
    DROPPED_RATELIMIT = 3
    MALFORMED = 4
    DROPPED_NEW_CLIENT = 5  # no bucket yet and the new-client budget is empty

    @property
    def counter_name(self) -> str:
        """The name in counters() and the runtime tree: 'dropped_standby'."""
        return self.name.lower()


STAT_MAX = len(Stat)

# C enum name -> {C member name: value}, for the header cross-check.
ENUMS: dict[str, dict[str, int]] = {
    "role_value": {f"ROLE_{m.name}": int(m) for m in Role},
    "stat_index": {**{f"STAT_{m.name}": int(m) for m in Stat}, "STAT_MAX": STAT_MAX},
}


# -- key / value mirrors ----------------------------------------------------------
RoleKey = ctypes.c_uint32  # array index, always 0
RoleValue = ctypes.c_uint32  # enum role_value
ConfigKey = ctypes.c_uint32  # array index, always 0
NewClientKey = ctypes.c_uint32  # array index, always 0
StatsKey = ctypes.c_uint32  # enum stat_index
StatsValue = ctypes.c_uint64  # one per possible CPU


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
    max_entries: int | None  # None: set by a compile-time knob


MAPS: tuple[MapSpec, ...] = (
    MapSpec(MAP_ROLE, "Array", RoleKey, RoleValue, 1),
    MapSpec(MAP_CONFIG, "Array", ConfigKey, ConfigValue, 1),
    MapSpec(MAP_STATS, "PerCpuArray", StatsKey, StatsValue, STAT_MAX),
    MapSpec(MAP_RATE_LIMIT, "LruHash", RateLimitKey, RateLimitValue, None),
    MapSpec(MAP_NEW_CLIENT, "Array", NewClientKey, NewClientValue, 1),
)
