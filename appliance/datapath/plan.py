"""What the datapath's maps should hold, and the writes that get them there.

Pure: values in, values out. The loader executes the writes and the facade
(service.py) reads the kernel's link table; this module decides.

Three parts:

**Limits** (the `config` map). A MapState is the per-client rate and burst and the
new-client budget's rate and burst. `diff(current, desired)` returns the writes: the
config record, followed by a reset of the budget word (full) when the budget's rate or
burst changed: its state is a time measured in the old interval, and a budget shrunk
from a long window (burst 10^6 at 1/s) would otherwise stay empty for that old window.
Per-client buckets keep their state. Limits are validated here, with the kernel's
bounds from layout.py, so a bad value is refused before it reaches a map.

**Interfaces** (the `ifaces` map and the ports the program is attached to). A client
interface is bound to one group index, or two sharing its clients by RFC 3074 bucket
(a Binding). `place(bindings, links)` finds, from the kernel's link table (Link facts,
read by links.py), the physical port each interface's frames arrive on and the VLAN
ids they carry there: a plain netdev (a NIC port, a veth) is its own port with no tag;
a VLAN device adds its VLAN id and goes down to its parent; a macvlan or ipvlan goes
down to its parent with no tag. `table(placements)` is the `ifaces` map's contents;
`reload(old, new)` the writes, attaches and detaches that turn one set into the other
without touching the interfaces and ports that stay.

**The decision** of a frame's group and role, as the kernel makes it
(`decide`): the facade's user-space check in mode "off", and the tests' oracle.

A group's takeover is not here: it is one write of its role word
(loader.GroupSwitch), whatever number of interfaces are bound to the group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from appliance.datapath import layout
from appliance.dhcp import loadbalance


class PlanError(ValueError):
    """Bindings that cannot be placed on this box's links; the message names the
    interface and what is wrong with it."""


# -- limits (the `config` map) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class MapState:
    """The limits user space has written into `config` (or wants to)."""

    rate_limit_pps: int  # 0: off
    rate_limit_burst: int  # effective depth: never 0 while pps > 0
    new_client_pps: int = 0  # 0: off
    new_client_burst: int = 0  # effective depth: never 0 while pps > 0


@dataclass(frozen=True, slots=True)
class ConfigWrite:
    """Set `config`[0] to this record."""

    rate_limit_pps: int
    rate_limit_burst: int
    new_client_pps: int = 0
    new_client_burst: int = 0


@dataclass(frozen=True, slots=True)
class BudgetReset:
    """Set `new_client`[0] to 0: the new-client budget full."""


MapWrite = ConfigWrite | BudgetReset

# The state of freshly created maps (the kernel zero-fills arrays): no limit.
INITIAL = MapState(0, 0)


def effective_burst(pps: int, burst: int) -> int:
    """Bucket depth in packets: `burst`, or twice the rate when burst is 0 (the
    datapath/rate_limit_burst default); 0 when rate limiting is off."""
    if pps == 0:
        return 0
    return burst if burst else 2 * pps


def check_rate_limit(pps: int, burst: int, name: str = "rate_limit") -> None:
    """Raise ValueError naming the bound a limit breaks (dhcp_steer.h bounds; the
    new-client budget, `name` "new_client", has the same ones)."""
    if not 0 <= pps <= layout.RATE_LIMIT_MAX_PPS:
        raise ValueError(f"{name}_pps {pps} outside 0..{layout.RATE_LIMIT_MAX_PPS}")
    if not 0 <= burst <= layout.RATE_LIMIT_MAX_BURST:
        raise ValueError(
            f"{name}_burst {burst} outside 0..{layout.RATE_LIMIT_MAX_BURST}")
    if pps and effective_burst(pps, burst) > layout.RATE_LIMIT_MAX_BURST:
        raise ValueError(
            f"{name}_pps {pps}: the default burst 2*pps exceeds "
            f"{layout.RATE_LIMIT_MAX_BURST}; set {name}_burst")


def desired(rate_limit_pps: int, rate_limit_burst: int, new_client_pps: int = 0,
            new_client_burst: int = 0) -> MapState:
    """The `config` map's contents for these limits (validated)."""
    check_rate_limit(rate_limit_pps, rate_limit_burst)
    check_rate_limit(new_client_pps, new_client_burst, "new_client")
    return MapState(rate_limit_pps, effective_burst(rate_limit_pps, rate_limit_burst),
                    new_client_pps, effective_burst(new_client_pps, new_client_burst))


def diff(current: MapState, want: MapState) -> list[MapWrite]:
    """The writes that turn `current` into `want` (module rules)."""
    if want == current:
        return []
    out: list[MapWrite] = [ConfigWrite(want.rate_limit_pps, want.rate_limit_burst,
                                       want.new_client_pps, want.new_client_burst)]
    if (want.new_client_pps, want.new_client_burst) != \
            (current.new_client_pps, current.new_client_burst):
        out.append(BudgetReset())
    return out


def apply_write(state: MapState, write: MapWrite) -> MapState:
    """The state after one write (what the loader records as it executes them)."""
    if isinstance(write, ConfigWrite):
        return replace(state, rate_limit_pps=write.rate_limit_pps,
                       rate_limit_burst=write.rate_limit_burst,
                       new_client_pps=write.new_client_pps,
                       new_client_burst=write.new_client_burst)
    return state  # BudgetReset: program-owned state, not part of MapState


def compile_flags(rate_limit_entries: int = layout.RATE_LIMIT_ENTRIES,
                  max_groups: int = layout.MAX_GROUPS,
                  iface_entries: int = layout.IFACE_ENTRIES) -> list[str]:
    """bcc cflags (-D over the `#ifndef` defaults of dhcp_steer.h). Only what differs
    from the header's default is passed, so the compiled program says what was
    chosen at start-up. Nothing in the config tree is a compile-time knob today;
    the limits are run-time values in the `config` map."""
    for name, value in (("rate_limit_entries", rate_limit_entries),
                        ("max_groups", max_groups), ("iface_entries", iface_entries)):
        if value < 1:
            raise ValueError(f"{name} {value} must be >= 1")
    flags: list[str] = []
    if rate_limit_entries != layout.RATE_LIMIT_ENTRIES:
        flags.append(f"-DRATE_LIMIT_ENTRIES={rate_limit_entries}")
    if max_groups != layout.MAX_GROUPS:
        flags.append(f"-DMAX_GROUPS={max_groups}")
    if iface_entries != layout.IFACE_ENTRIES:
        flags.append(f"-DIFACE_ENTRIES={iface_entries}")
    return flags


# -- interfaces (the `ifaces` map, the ports) -------------------------------------------

# Kinds whose frames arrive on another device, given by IFLA_LINK: a VLAN device adds
# its tag; macvlan/ipvlan (and their tap twins) share their parent's wire untagged.
VLAN_KIND = "vlan"
UNTAGGED_UPPER_KINDS = frozenset({"macvlan", "macvtap", "ipvlan", "ipvtap"})
# Ports the program cannot key right: with native XDP on a bond or team the program
# runs on each member with the member's ifindex, and in generic mode the member has
# already moved any VLAN tag out of the frame.
UNSUPPORTED_PORT_KINDS = frozenset({"bond", "team"})
# A VLAN device on a bridge: the bridge's port has moved the tag out of the frame
# (skb_vlan_untag) before XDP on the bridge runs.
NO_TAGS_PORT_KINDS = frozenset({"bridge"})
VLAN_ID_MAX = 4094  # IEEE 802.1Q: 4095 is reserved


@dataclass(frozen=True, slots=True)
class Binding:
    """A client interface and the group index(es) whose master serves it: one, or two
    sharing its clients by RFC 3074 bucket (the first line's group takes the even
    buckets, the second's the odd ones)."""

    name: str
    groups: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Link:
    """What the kernel says about one netdev (RTM_NEWLINK; links.py reads them)."""

    index: int
    name: str
    kind: str = ""  # IFLA_INFO_KIND; "" for a device without one (a NIC port)
    link: int = 0  # IFLA_LINK: the parent's ifindex for vlan/macvlan/ipvlan
    link_other_netns: bool = False  # IFLA_LINK_NETNSID: the parent is elsewhere
    vlan_id: int = 0  # IFLA_VLAN_ID, kind "vlan" only


IfaceKey = tuple[int, tuple[int, ...]]  # (port ifindex, VLAN ids padded to IFACE_VLANS)


@dataclass(frozen=True, slots=True)
class Placement:
    """A bound interface as the datapath sees it: the port its frames arrive on, the
    VLAN ids they carry there (outermost first, 0-padded), its groups."""

    name: str
    port: str
    port_index: int
    vlans: tuple[int, ...]
    groups: tuple[int, ...]

    @property
    def key(self) -> IfaceKey:
        return (self.port_index, self.vlans)


def check_binding(b: Binding, max_groups: int = layout.MAX_GROUPS) -> None:
    """Raise PlanError unless `b` names one or two distinct group indexes in range."""
    if not b.name:
        raise PlanError("an interface binding without a name")
    if not 1 <= len(b.groups) <= layout.IFACE_MAX_GROUPS:
        raise PlanError(f"interface {b.name}: {len(b.groups)} groups; an interface is "
                        f"bound to 1 or {layout.IFACE_MAX_GROUPS}")
    if len(set(b.groups)) != len(b.groups):
        raise PlanError(f"interface {b.name}: group {b.groups[0]} twice")
    for g in b.groups:
        if not 0 <= g < max_groups:
            raise PlanError(f"interface {b.name}: group index {g} outside 0..{max_groups - 1}")


def check_bindings(bindings: Sequence[Binding], max_groups: int = layout.MAX_GROUPS) -> None:
    """check_binding for each, and no interface bound twice."""
    names: set[str] = set()
    for b in bindings:
        check_binding(b, max_groups)
        if b.name in names:
            raise PlanError(f"interface {b.name}: bound twice; give it one binding with "
                            "both groups")
        names.add(b.name)


def place(bindings: Sequence[Binding], links: Mapping[str, Link],
          max_groups: int = layout.MAX_GROUPS) -> tuple[Placement, ...]:
    """Where each bound interface's frames arrive. Raises PlanError naming the first
    interface that is missing, sits on a device the program cannot key, has more VLAN
    tags than the program parses, or shares its (port, VLAN ids) with another bound
    interface (the same frames cannot belong to two interfaces)."""
    by_index = {link.index: link for link in links.values()}
    out: list[Placement] = []
    seen: dict[IfaceKey, str] = {}
    check_bindings(bindings, max_groups)
    for b in bindings:
        link = links.get(b.name)
        if link is None:
            raise PlanError(f"interface {b.name}: no such device on this box")
        port, vids = _walk(b.name, link, by_index)
        if len(vids) > layout.VLAN_MAX_DEPTH:
            raise PlanError(f"interface {b.name}: {len(vids)} VLAN tags on {port.name}; "
                            f"the datapath parses {layout.VLAN_MAX_DEPTH}")
        vlans = tuple(vids) + (0,) * (layout.IFACE_VLANS - len(vids))
        placement = Placement(b.name, port.name, port.index, vlans, tuple(b.groups))
        other = seen.get(placement.key)
        if other is not None:
            raise PlanError(f"interfaces {other} and {b.name} both receive "
                            f"{describe_key(port.name, vlans)}: bind one of them")
        seen[placement.key] = b.name
        out.append(placement)
    return tuple(out)


def _walk(name: str, link: Link, by_index: Mapping[int, Link]) -> tuple[Link, list[int]]:
    """(the port, the VLAN ids outermost first) under `link`."""
    vids: list[int] = []
    cur = link
    hops = 0
    while cur.kind == VLAN_KIND or cur.kind in UNTAGGED_UPPER_KINDS:
        if cur.kind == VLAN_KIND:
            if not 1 <= cur.vlan_id <= VLAN_ID_MAX:
                raise PlanError(f"interface {name}: {cur.name} has VLAN id {cur.vlan_id} "
                                f"(1..{VLAN_ID_MAX}; 0 is a priority tag, not a VLAN)")
            vids.append(cur.vlan_id)
        if cur.link_other_netns:
            raise PlanError(f"interface {name}: the parent of {cur.name} is in another "
                            "network namespace; XDP must attach to it there")
        parent = by_index.get(cur.link)
        hops += 1
        if parent is None or hops > 8:
            raise PlanError(f"interface {name}: the parent of {cur.name} (ifindex "
                            f"{cur.link}) is not a device here")
        cur = parent
    if cur.kind in UNSUPPORTED_PORT_KINDS:
        raise PlanError(f"interface {name}: it sits on {cur.name}, a {cur.kind}; XDP on a "
                        f"{cur.kind} runs on its member ports, which the datapath does not "
                        "key: bind an interface of a plain port")
    if vids and cur.kind in NO_TAGS_PORT_KINDS:
        raise PlanError(f"interface {name}: a VLAN on the {cur.kind} {cur.name}; the "
                        f"{cur.kind}'s ports remove the tag before XDP on {cur.name} sees "
                        "the frame")
    vids.reverse()
    return cur, vids


def describe_key(port: str, vlans: Sequence[int]) -> str:
    """"eth1 untagged", "eth1 VLAN 100", "eth1 VLAN 10.100" (for messages)."""
    tags = [str(v) for v in vlans if v]
    return f"{port} VLAN {'.'.join(tags)}" if tags else f"{port} untagged"


IfaceTable = dict[IfaceKey, tuple[int, ...]]  # the `ifaces` map: key -> groups


def table(placements: Iterable[Placement]) -> IfaceTable:
    return {p.key: p.groups for p in placements}


def ports(placements: Iterable[Placement]) -> dict[int, str]:
    """The ports the program must be attached to: ifindex -> name."""
    return {p.port_index: p.port for p in placements}


def groups_of(placements: Iterable[Placement]) -> frozenset[int]:
    return frozenset(g for p in placements for g in p.groups)


def groups_of_bindings(bindings: Iterable[Binding]) -> frozenset[int]:
    return frozenset(g for b in bindings for g in b.groups)


@dataclass(frozen=True, slots=True)
class Reload:
    """What turns one set of placements into another, in execution order:

    1. `upsert` the keys that are new or bound to other groups (before a new port is
       attached, so its first frame finds its interface, never "not ours");
    2. `attach` the new ports;
    3. `detach` the ports no longer used (before their keys go: their frames are then
       not seen at all, never passed as "not ours" by a program still attached);
    4. `delete` the keys no longer bound;
    5. `release` the groups no interface is bound to any more: their role word goes
       back to standby, so a group index used again later starts as fresh maps do.

    Keys, ports and groups in both sets are not touched."""

    upsert: tuple[tuple[IfaceKey, tuple[int, ...]], ...]
    attach: tuple[tuple[int, str], ...]
    detach: tuple[tuple[int, str], ...]
    delete: tuple[IfaceKey, ...]
    release: frozenset[int]

    @property
    def empty(self) -> bool:
        return not (self.upsert or self.attach or self.detach or self.delete or self.release)


def reload(old: Sequence[Placement], new: Sequence[Placement]) -> Reload:
    t_old, t_new = table(old), table(new)
    p_old, p_new = ports(old), ports(new)
    return Reload(
        upsert=tuple((k, g) for k, g in t_new.items() if t_old.get(k) != g),
        attach=tuple((i, n) for i, n in p_new.items() if i not in p_old),
        detach=tuple((i, n) for i, n in p_old.items() if i not in p_new),
        delete=tuple(k for k in t_old if k not in t_new),
        release=groups_of(old) - groups_of(new),
    )


# -- the decision, as the kernel makes it ------------------------------------------------


def decide(groups: Sequence[int] | None, active: Callable[[int], bool], chaddr: bytes,
           hlen: int) -> tuple[int | None, layout.Stat]:
    """(the deciding group, the outcome) of a well-formed DHCP frame from `chaddr` on an
    interface bound to `groups` (None: not bound), with `active(g)` the role of each
    group. The rate limit and the new-client budget are not part of it: a PASSED here
    is what the program then hands to admission. Mode "off" enforces this in user
    space; the tests check the kernel against it."""
    if not groups:
        return None, layout.Stat.UNBOUND
    group = other = groups[0]
    if len(groups) > 1:
        pick = loadbalance.group_of(chaddr, hlen)
        group, other = groups[pick], groups[pick ^ 1]
    if active(group):
        return group, layout.Stat.PASSED
    if other != group and active(other):
        return group, layout.Stat.DROPPED_OTHER_BUCKET
    return group, layout.Stat.DROPPED_STANDBY
