"""Every key of the config tree: its path, parser, default and help (ExaBGP setup.py style).

Pure. A parser takes the file's lines (blank and '#' lines already removed) and returns a
value or raises Invalid(rule). config/tree.py reads the files; docs/config.md is
generated from KEYS by `dhcp-hotbackup check-config --list-keys`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any


class Invalid(ValueError):
    """A value broke a rule; the message states the rule."""


Parser = Callable[[list[str]], Any]


def _one(lines: list[str]) -> str:
    if len(lines) != 1:
        raise Invalid(f"expected exactly one value, found {len(lines)} lines")
    return lines[0]


def _decimal(s: str) -> int:
    """ASCII digits only: int() would also take '1_000', '+5' and other scripts' digits."""
    if not (s.isascii() and s.isdigit()):
        raise ValueError(s)
    return int(s)


def integer(lo: int, hi: int, multiple: int = 1) -> Parser:
    def parse(lines: list[str]) -> int:
        s = _one(lines)
        try:
            v = _decimal(s)
        except ValueError:
            raise Invalid(f"must be an integer in {lo}..{hi}") from None
        if not lo <= v <= hi:
            raise Invalid(f"must be an integer in {lo}..{hi}")
        if v % multiple:
            raise Invalid(f"must be a multiple of {multiple}")
        return v

    return parse


def boolean(lines: list[str]) -> bool:
    s = _one(lines)
    if s not in ("0", "1"):
        raise Invalid("must be 0 or 1")
    return s == "1"


def choice(*options: str) -> Parser:
    def parse(lines: list[str]) -> str:
        s = _one(lines)
        if s not in options:
            raise Invalid("must be one of " + " | ".join(options))
        return s

    return parse


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
# Linux's dev_valid_name(): under IFNAMSIZ (16) bytes, no '/', ':' or white space
# (':' names an address label, eth0:1, not a device); "." and ".." are refused by the
# first character.
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,14}$")


def name(lines: list[str]) -> str:
    s = _one(lines)
    if not _NAME.match(s):
        raise Invalid("must be 1-63 characters of letters, digits, '.', '_', '-'")
    return s


def ifname(lines: list[str]) -> str:
    s = _one(lines)
    if not _IFNAME.match(s):
        raise Invalid("must be a Linux interface name (1-15 characters: letters, digits, "
                      "'.', '_', '-', '@'; no '/', ':' or spaces)")
    return s


def group_name(s: str) -> str:
    """A VRRP group's name: its folder vrrp/<group>/. Not a setting's name of the
    one-interface layout (vrrp/vrid, vrrp/track/...), so that no folder is both."""
    if not _NAME.match(s):
        raise Invalid(f"group name '{s}' must be 1-63 characters of letters, digits, '.', "
                      "'_', '-'")
    if s in LEGACY_VRRP_NAMES:
        raise Invalid(f"group name '{s}' is a setting of the one-interface layout "
                      f"(vrrp/{s}); choose another name")
    return s


def group_lines(lines: list[str]) -> tuple[str, ...]:
    """interfaces/<ifname>/group: one group, or two sharing the interface (RFC 3074)."""
    if not lines:
        raise Invalid("names no group: remove the file for a standalone interface (always "
                      "active here), or write the group's name")
    if len(lines) > 2:
        raise Invalid(f"{len(lines)} groups: one line (that group's master serves here) or "
                      "two (both devices serve here, clients split by the RFC 3074 hash)")
    out = tuple(group_name(s) for s in lines)
    if len(out) == 2 and out[0] == out[1]:
        raise Invalid(f"names group '{out[0]}' twice")
    return out


def abspath(lines: list[str]) -> str:
    s = _one(lines)
    if not s.startswith("/"):
        raise Invalid("must be an absolute path")
    return s


def ipv4(s: str) -> IPv4Address:
    try:
        return IPv4Address(s)
    except ValueError:
        raise Invalid(f"'{s}' is not an IPv4 address") from None


def ip_list(lines: list[str]) -> tuple[IPv4Address, ...]:
    return tuple(ipv4(s) for s in lines)


def ip_one(lines: list[str]) -> IPv4Address:
    return ipv4(_one(lines))


def unicast_ip(lines: list[str]) -> IPv4Address:
    a = ip_one(lines)
    if a.is_multicast or a.is_unspecified or a.is_loopback or a == IPv4Address("255.255.255.255"):
        raise Invalid(f"'{a}' is not a unicast address of a device on the LAN")
    return a


def subnet(lines: list[str]) -> IPv4Network:
    s = _one(lines)
    try:
        return IPv4Network(s, strict=True)
    except ValueError:
        raise Invalid("must be an IPv4 network like 192.0.2.0/24 with no host bits set") from None


def ranges(lines: list[str]) -> tuple[tuple[IPv4Address, IPv4Address], ...]:
    if not lines:
        raise Invalid("needs at least one range, one per line: FIRST-LAST")
    out = []
    for s in lines:
        parts = s.split("-")
        if len(parts) != 2:
            raise Invalid(f"'{s}' is not a range FIRST-LAST (e.g. 192.0.2.100-192.0.2.199)")
        lo, hi = ipv4(parts[0].strip()), ipv4(parts[1].strip())
        if lo > hi:
            raise Invalid(f"'{s}': the first address is above the last")
        out.append((lo, hi))
    return tuple(out)


def subnets(lines: list[str]) -> tuple[IPv4Network, ...]:
    """Addresses or prefixes, one per line (an address is its /32)."""
    out = []
    for s in lines:
        try:
            out.append(IPv4Network(s.strip(), strict=False))
        except ValueError:
            raise Invalid(f"'{s}' is not an IPv4 address or prefix") from None
    return tuple(out)


def interfaces(lines: list[str]) -> tuple[IPv4Interface, ...]:
    if not lines:
        raise Invalid("needs at least one address/prefix, one per line")
    out = []
    for s in lines:
        try:
            if "/" not in s:
                raise ValueError
            out.append(IPv4Interface(s))
        except ValueError:
            raise Invalid(f"'{s}' is not an IPv4 address with prefix (e.g. 192.0.2.1/24)") from None
    return tuple(out)


def endpoint(lines: list[str]) -> tuple[IPv4Address, int]:
    s = _one(lines)
    host, sep, port = s.rpartition(":")
    if not sep:
        raise Invalid("must be ADDRESS:PORT (e.g. 198.51.100.1:6470)")
    try:
        p = _decimal(port)
    except ValueError:
        raise Invalid("must be ADDRESS:PORT with a port in 1..65535") from None
    if not 1 <= p <= 65535:
        raise Invalid("must be ADDRESS:PORT with a port in 1..65535")
    return ipv4(host), p


def listen(lines: list[str]) -> str:
    """ADDRESS:PORT to listen on, or nothing (an empty file): off."""
    if not lines:
        return ""
    addr, port = endpoint(lines)
    return f"{addr}:{port}"


def domain(lines: list[str]) -> str:
    s = _one(lines)
    if len(s) > 253 or not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", s):
        raise Invalid("must be a domain name (letters, digits, '-', '.')")
    return s


def secret(lines: list[str]) -> bytes:
    s = _one(lines)
    # The AEAD keys of the sync link are derived from it (HKDF): 32 characters of
    # `openssl rand -hex 32` carry 128 bits; the postinst writes 64.
    if len(s) < 32:
        raise Invalid("must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    return s.encode()


_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")


def mac_filename(s: str) -> bytes:
    """A reservation file's name is the client's MAC: aa:bb:cc:dd:ee:ff (or with '-')."""
    if not _MAC.match(s):
        raise Invalid(f"file name '{s}' is not a MAC address like 02:00:00:00:00:01")
    return bytes(int(x, 16) for x in re.split("[:-]", s))


def mac_one(lines: list[str]) -> bytes:
    s = _one(lines)
    if not _MAC.match(s):
        raise Invalid(f"'{s}' is not a MAC address like 02:00:00:00:00:01")
    return bytes(int(x, 16) for x in re.split("[:-]", s))


_HEXBYTES = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*$")


def identifier_bytes(s: str) -> bytes:
    """A client id, circuit-id or remote-id as written: hex as 0x0102.. or 01:02:..,
    else the text itself (ISC dhcrelay -a's circuit-id is the interface name)."""
    if s[:2].lower() == "0x":
        try:
            raw = bytes.fromhex(s[2:])
        except ValueError:
            raise Invalid(f"'{s}' is not hex bytes after 0x") from None
    elif _HEXBYTES.match(s) and len(s) > 2:
        raw = bytes.fromhex(s.replace(":", ""))
    else:
        raw = s.encode("utf-8")
    if not 0 < len(raw) <= 255:
        raise Invalid(f"'{s}' must be 1..255 bytes")
    return raw


def identifier(lines: list[str]) -> bytes:
    return identifier_bytes(_one(lines))


def pattern(s: str) -> tuple[bytes, bool]:
    """A class pattern: (bytes, prefix). Text, or hex as 0x..; a final '*' matches
    every value that begins with the rest ('MSFT*', '0x0102*')."""
    prefix = s.endswith("*")
    body = s[:-1] if prefix else s
    if not body:
        raise Invalid(f"'{s}' matches everything: remove the criterion instead")
    if body[:2].lower() == "0x":
        try:
            return bytes.fromhex(body[2:]), prefix
        except ValueError:
            raise Invalid(f"'{s}' is not hex bytes after 0x") from None
    return body.encode("utf-8"), prefix


def patterns(lines: list[str]) -> tuple[str, ...]:
    if not lines:
        raise Invalid("no pattern: one per line (text, 0x-hex, a final '*' for a prefix)")
    for s in lines:
        pattern(s)
    return tuple(lines)


def mac_prefixes(lines: list[str]) -> tuple[bytes, ...]:
    if not lines:
        raise Invalid("no prefix: one per line, like 00:1a:2b")
    out = []
    for s in lines:
        if not _HEXBYTES.match(s) or len(s) > 17:
            raise Invalid(f"'{s}' is not a MAC prefix like 00:1a:2b (1 to 6 bytes)")
        out.append(bytes.fromhex(s.replace(":", "")))
    return tuple(out)


def networks(lines: list[str]) -> tuple[IPv4Network, ...]:
    if not lines:
        raise Invalid("no relay: one address or network per line")
    out = []
    for s in lines:
        try:
            out.append(IPv4Network(s, strict=True))
        except ValueError:
            raise Invalid(f"'{s}' is not an address or network like 192.0.2.0/24") from None
    return tuple(out)


def class_names(lines: list[str]) -> tuple[str, ...]:
    out = []
    for s in lines:
        if not _NAME.match(s):
            raise Invalid(f"'{s}' is not a class name (a folder classes/<class>/)")
        out.append(s)
    return tuple(out)


def hostname(lines: list[str]) -> str:
    s = _one(lines)
    if len(s) > 63 or not re.match(r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$", s):
        raise Invalid("must be a host name label (letters, digits, '-'; at most 63)")
    return s


def option_lines(lines: list[str]) -> list[str]:
    """An option file's lines; config/tree.py reads them through dhcp/options.py's
    table (parse_option_file), which knows each option's type."""
    return lines


class Reload(Enum):
    """What a reload (SIGHUP) does when a key's value changes (docs/operations.md,
    "Reload"). config.model.plan() sorts every change into these."""

    POOLS = "pools"  # the pools are rebuilt at once; no lease is touched
    PRIORITY = "priority"  # the group's next advert carries it (RFC 5798 6.4.3: preemption)
    GROUP = "group"  # the group's VRRP instance restarts (priority 0 first: the peer takes
    #                  over meanwhile); its interfaces follow it, the other groups run on
    MEMBERSHIP = "membership"  # an interface or group added, removed or re-bound; the
    #                            others are not disturbed
    DATAPATH = "datapath"  # written to the XDP map (one map write)
    METRICS = "metrics"  # the metrics endpoint moves or stops (docs/metrics.md)
    LEASEQUERY = "leasequery"  # who may ask, from the next query on (docs/leasequery.md)
    RESTART = "restart"  # only a restart applies it: the running value stays, and is named


# What each class does, for docs/config.md and `check-config --list-keys`.
RELOAD_HELP = {
    Reload.POOLS: "live: the pools are rebuilt at once; no lease is touched",
    Reload.PRIORITY: "live: the group's next advert carries it (a peer may preempt)",
    Reload.GROUP: "live: the group's VRRP instance restarts (priority 0 first, so the peer "
                  "serves meanwhile); other groups run on",
    Reload.MEMBERSHIP: "live: the interface or group is added, removed or re-bound; the "
                       "others are not disturbed",
    Reload.DATAPATH: "live: one write to the XDP map",
    Reload.METRICS: "live: the metrics endpoint moves or stops",
    Reload.LEASEQUERY: "live: from the next leasequery on",
    Reload.RESTART: "restart: a reload keeps the running value and names it (D023)",
}


@dataclass(frozen=True)
class Key:
    path: str  # relative path; '<name>', '<ifname>', '<group>', '<mac>' stand for one name
    parse: Parser
    default: Any  # None: required when its folder exists
    help: str
    example: str = ""
    # How a reload applies a change (None: not classified yet, so a restart; a unit test
    # names every key left so), and whether both devices of a pair must hold the same
    # value (compared in the sync link's drift check; None: not decided, not compared).
    reload: Reload | None = None
    agree: bool | None = None
    legacy: bool = False  # the one-interface layout (client/interface, vrrp/<setting>)


REQUIRED = None
NONE = "(none)"  # optional, no default value: absent is None in the model
_R = Reload

KEYS: tuple[Key, ...] = (
    Key("node/name", name, "(host name)", "this device's name, shown to the peer", "deviceA",
        reload=_R.RESTART, agree=False),
    Key("node/state_dir", abspath, "/var/lib/dhcp-hotbackup", "durable lease store",
        reload=_R.RESTART, agree=False),
    Key("node/run_dir", abspath, "/run/dhcp-hotbackup", "runtime tree (status files)",
        reload=_R.RESTART, agree=False),
    Key("interfaces/<ifname>/group", group_lines, "(standalone)",
        "the VRRP group (a folder vrrp/<group>/) whose master serves this interface; two "
        "lines: both devices serve it, clients split between the two groups by the RFC 3074 "
        "hash; no file: standalone, always active here", "ga",
        reload=_R.MEMBERSHIP, agree=True),
    Key("interfaces/<ifname>/virtual_ip", interfaces, "(none)",
        "one line per group line, same order: that group's virtual IP/prefix here, the DHCP "
        "server identifier for its clients", "192.0.2.1/24",
        reload=_R.MEMBERSHIP, agree=True),
    Key("vrrp/<group>/interface", ifname, "(the first interface naming the group)",
        "where the group advertises; one election moves every interface bound to it", "eth1",
        reload=_R.GROUP, agree=True),
    Key("vrrp/<group>/vrid", integer(1, 255), REQUIRED, "VRRP virtual router id", "10",
        reload=_R.GROUP, agree=True),
    Key("vrrp/<group>/priority", integer(1, 255), 100, "1..254; 255 = address owner", "120",
        reload=_R.PRIORITY, agree=False),
    Key("vrrp/<group>/advert_interval_ms", integer(10, 40950, 10), 100,
        "advertisement interval; VRRPv3 counts centiseconds", reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/preempt", boolean, True,
        "1: a higher priority takes the master role back", reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/preempt_delay_ms", integer(0, 3_600_000), 0,
        "wait this long after start before preempting", reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/virtual_ip", interfaces, "(its interface's virtual_ip)",
        "more virtual IPs its adverts carry, one per line; needed only when the group's "
        "interface serves no DHCP for it", "198.51.100.1/24", reload=_R.GROUP, agree=True),
    Key("vrrp/<group>/use_vmac", boolean, False,
        "1: virtual MAC 00:00:5e:00:01:<vrid> on a macvlan", reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/accept", boolean, True,
        "1: accept packets to the virtual IP when master", reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/garp_count", integer(0, 100), 5,
        "gratuitous ARPs sent on becoming master", reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/garp_interval_ms", integer(0, 10000), 0,
        "spacing between gratuitous ARPs", reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/garp_repeat_s", integer(0, 3600), 5,
        "a second batch of gratuitous ARPs this long after the first (0: none)",
        reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/peer", unicast_ip, "(any source)",
        "optional: the other device's address on the group's interface; adverts from any "
        "other source are dropped and counted (stats/vrrp_rx_not_peer)", "192.0.2.3",
        reload=_R.GROUP, agree=False),
    Key("vrrp/<group>/track/<ifname>", integer(1, 254), REQUIRED,
        "priority decrement while <ifname> (any interface) is down", "30",
        reload=_R.GROUP, agree=False),
    Key("sync/interface", ifname, REQUIRED, "the dedicated sync link", "eth2",
        reload=_R.RESTART, agree=False),
    Key("sync/local", endpoint, REQUIRED, "listen address:port on the sync link",
        "198.51.100.1:6470", reload=_R.RESTART, agree=False),
    Key("sync/peer", endpoint, REQUIRED, "the peer's address:port", "198.51.100.2:6470",
        reload=_R.RESTART, agree=False),
    Key("sync/key", secret, REQUIRED, "shared secret, file mode 0600",
        reload=_R.RESTART, agree=False),
    Key("sync/mode", choice("sync", "async"), "sync",
        "sync: the peer acks before the client gets its ACK; async: it follows within ms",
        reload=_R.RESTART, agree=False),
    Key("sync/ack_timeout_ms", integer(1, 10000), 50,
        "longest a client's ACK waits for the peer before serving alone",
        reload=_R.RESTART, agree=False),
    Key("sync/max_clock_skew_ms", integer(1, 86_400_000), 1000,
        "clock skew with the peer (measured over the sync link) beyond which an alarm is "
        "raised (log SYNC040, runtime sync/clock_skew_alarm)",
        reload=_R.RESTART, agree=False),
    Key("pools/<name>/subnet", subnet, REQUIRED, "the pool's subnet", "192.0.2.0/24",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/range", ranges, REQUIRED, "FIRST-LAST, one per line",
        "192.0.2.100-192.0.2.199", reload=_R.POOLS, agree=True),
    Key("pools/<name>/router", ip_list, (), "routers (option 3), one per line", "192.0.2.1",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/dns", ip_list, (), "DNS servers (option 6), one per line", "192.0.2.53",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/domain", domain, None, "domain name (option 15)", "example.net",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/lease_time", integer(10, 31_536_000), 3600, "lease time in seconds",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/reservations/<mac>", ip_one, REQUIRED, "fixed address for that MAC",
        "192.0.2.50", reload=_R.POOLS, agree=True),
    Key("pools/<name>/max_declined_percent", integer(1, 100), 10,
        "at most this share of the pool's addresses quarantined after DHCPDECLINE (at least "
        "one address); a decline beyond it ends the oldest quarantine early",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/max_leases_per_relay", integer(0, 16_777_216), 0,
        "bound leases one relay agent (giaddr) may hold in this pool; 0 = no limit",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/max_leases_per_circuit", integer(0, 16_777_216), 0,
        "bound leases one relay circuit (Option 82 circuit-id) may hold in this pool; "
        "0 = no limit", "4", reload=_R.POOLS, agree=True),
    Key("pools/<name>/shared_network", name, "(none)",
        "pools with the same name here serve one link (several subnets behind one relay or "
        "interface): a client whose link pool is full gets an address from the next, and a "
        "renewal through the relay of one is on the link of all (docs/relays.md)", "vlan100",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/alarm_percent", integer(0, 100), 90,
        "pool-use alarm: raised when this share of the pool is used; 0 = no alarm", "80",
        reload=_R.POOLS, agree=False),
    Key("pools/<name>/alarm_clear_percent", integer(0, 100), 0,
        "the alarm clears below this use; 0 = ten points below alarm_percent", "60",
        reload=_R.POOLS, agree=False),
    Key("pools/<name>/min_lease_time", integer(0, 31_536_000), 0,
        "shortest lease a client may ask for (option 51); 0 = lease_time", "600",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/max_lease_time", integer(0, 31_536_000), 0,
        "longest lease a client may ask for (option 51); 0 = lease_time", "86400",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/renew_time", integer(0, 31_536_000), 0,
        "T1 (option 58), below the lease time; 0 = half the lease (RFC 2131 §4.4.5)", "1800",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/rebind_time", integer(0, 31_536_000), 0,
        "T2 (option 59), between T1 and the lease time; 0 = 7/8 of the lease", "3150",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/allow_classes", class_names, (),
        "when set, only members of these classes (one per line) get an address here",
        "stb", reload=_R.POOLS, agree=True),
    Key("pools/<name>/deny_classes", class_names, (),
        "members of these classes get no address here", "phones",
        reload=_R.POOLS, agree=True),
    Key("pools/<name>/options/<option>", option_lines, NONE,
        "an option for this pool's clients: file named by the Kea option name or code "
        "(docs/dhcp-options.md); pools/<name>/router, dns and domain are aliases",
        "routers: 192.0.2.1", reload=_R.POOLS, agree=True),
    Key("options/<option>", option_lines, NONE,
        "an option for every client, by Kea name or code[.type] (docs/dhcp-options.md); "
        "a pool's, a class's, a host's of the same code wins", "ntp-servers: 192.0.2.123",
        reload=_R.POOLS, agree=True),
    Key("classes/<class>/vendor_class", patterns, (),
        "option 60 (vendor class identifier): one pattern per line (text, 0x-hex; a final "
        "'*' matches a prefix)", "MSFT 5.0", reload=_R.POOLS, agree=True),
    Key("classes/<class>/user_class", patterns, (),
        "option 77 (user class, RFC 3004): any instance matching a pattern", "iPXE",
        reload=_R.POOLS, agree=True),
    Key("classes/<class>/circuit_id", patterns, (),
        "Option 82 circuit-id (RFC 3046 §3.1) from a relay", "eth0/1/*",
        reload=_R.POOLS, agree=True),
    Key("classes/<class>/remote_id", patterns, (),
        "Option 82 remote-id (RFC 3046 §3.2) from a relay", "0x0011*",
        reload=_R.POOLS, agree=True),
    Key("classes/<class>/mac_prefix", mac_prefixes, (),
        "the client's MAC begins with one of these (an OUI: 3 bytes)", "00:1a:2b",
        reload=_R.POOLS, agree=True),
    Key("classes/<class>/relay", networks, (),
        "relayed by an agent whose giaddr is in one of these", "198.51.100.0/24",
        reload=_R.POOLS, agree=True),
    Key("classes/<class>/options/<option>", option_lines, NONE,
        "an option for the class's members (beats global and pool; the first class in "
        "name order wins among classes)", "tftp-server-name: tftp.example.net",
        reload=_R.POOLS, agree=True),
    Key("hosts/<host>/mac", mac_one, NONE, "the host's MAC (one identifier per host)",
        "02:00:00:00:00:10", reload=_R.POOLS, agree=True),
    Key("hosts/<host>/client_id", identifier, NONE,
        "the host's client identifier (option 61): 0x-hex, 01:02:.. hex, or text",
        "01:02:00:00:00:00:10", reload=_R.POOLS, agree=True),
    Key("hosts/<host>/circuit_id", identifier, NONE,
        "the relay's circuit-id for the subscriber port (whatever device is plugged in)",
        "eth0/1/5", reload=_R.POOLS, agree=True),
    Key("hosts/<host>/remote_id", identifier, NONE,
        "the relay's remote-id for the subscriber", "0x001122334455",
        reload=_R.POOLS, agree=True),
    Key("hosts/<host>/relay", ip_one, NONE,
        "circuit_id / remote_id count only through this relay (giaddr); absent: any",
        "198.51.100.1", reload=_R.POOLS, agree=True),
    Key("hosts/<host>/address", ip_one, NONE,
        "the host's fixed address, in a pool's subnet; never handed out to others",
        "192.0.2.60", reload=_R.POOLS, agree=True),
    Key("hosts/<host>/hostname", hostname, NONE, "host name (option 12) sent to the host",
        "cpe-5", reload=_R.POOLS, agree=True),
    Key("hosts/<host>/options/<option>", option_lines, NONE,
        "an option for this host (beats every other level)", "boot-file-name: cpe.cfg",
        reload=_R.POOLS, agree=True),
    Key("datapath/mode", choice("xdp", "off"), "xdp",
        "xdp: steer DHCP in the kernel; off: role kept in user space",
        reload=_R.RESTART, agree=False),
    Key("datapath/rate_limit_pps", integer(0, 1_000_000), 50,
        "DHCP packets per second per client MAC, in the kernel; 0 = off",
        reload=_R.DATAPATH, agree=False),
    Key("datapath/rate_limit_burst", integer(0, 1_000_000), 0,
        "token-bucket burst; 0 = twice rate_limit_pps", reload=_R.DATAPATH, agree=False),
    Key("datapath/new_client_pps", integer(0, 1_000_000), 200,
        "clients the kernel has no rate-limit bucket for (unseen MACs) admitted per "
        "second, all together, in the kernel; 0 = off", reload=_R.DATAPATH, agree=False),
    Key("datapath/new_client_burst", integer(0, 1_000_000), 0,
        "new-client budget depth; 0 = twice new_client_pps", reload=_R.DATAPATH, agree=False),
    Key("leasequery/requesters", subnets, (),
        "who may send DHCPLEASEQUERY (RFC 4388) and DHCPBULKLEASEQUERY (RFC 6926): "
        "addresses or prefixes, one per line, matched against giaddr and the IP source; "
        "none: leasequery is refused (docs/leasequery.md)", "198.51.100.0/24",
        reload=_R.LEASEQUERY, agree=True),
    Key("leasequery/bulk_listen", listen, "",
        "address:port of the RFC 6926 bulk leasequery TCP listener (port 67 in the RFC); "
        "absent or empty: off", "0.0.0.0:67", reload=_R.RESTART, agree=False),
    Key("leasequery/bulk_max_connections", integer(1, 1024), 8,
        "bulk leasequery connections open at once; one more is closed at accept",
        reload=_R.RESTART, agree=False),
    Key("leasequery/bulk_idle_timeout_s", integer(1, 86400), 60,
        "a bulk leasequery connection with no query for this long is closed",
        reload=_R.RESTART, agree=False),
    Key("metrics/listen", listen, "",
        "address:port of the Prometheus endpoint (GET /metrics); absent or empty: off",
        "192.0.2.2:9467", reload=_R.METRICS, agree=False),
)

# The one-interface layout that trees written before interfaces/ use, read unchanged:
# client/interface, and each vrrp/<group>/ setting directly in vrrp/ (config/tree.py
# maps it onto one interface bound to one group named LEGACY_GROUP). Derived from the
# group keys, so the two layouts never disagree on a parser, a default or a class.
_GROUP = "vrrp/<group>/"
LEGACY_KEYS: tuple[Key, ...] = (
    Key("client/interface", ifname, REQUIRED,
        "the one client-facing interface (= interfaces/<ifname>/); XDP attaches here",
        "eth1", reload=_R.MEMBERSHIP, agree=False, legacy=True),
    *(replace(k, path="vrrp/" + k.path[len(_GROUP):], legacy=True,
              help="one per line; the first is the DHCP server identifier",
              default=REQUIRED)
      if k.path == _GROUP + "virtual_ip" else
      replace(k, path="vrrp/" + k.path[len(_GROUP):], legacy=True)
      for k in KEYS if k.path.startswith(_GROUP) and k.path != _GROUP + "interface"),
)
KEYS += LEGACY_KEYS

# The names directly under vrrp/ in the one-interface layout: no group may take one.
LEGACY_VRRP_NAMES = frozenset(k.path.split("/")[1] for k in LEGACY_KEYS
                              if k.path.startswith("vrrp/"))

KEY_BY_PATH = {k.path: k for k in KEYS}
