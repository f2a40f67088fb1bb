"""The runtime tree's per-interface and per-group part, as a pure function of state.

Pure: the daemon gathers plain values (GroupFacts, InterfaceFacts) and `values()` says
which file holds what; runtime/tree.py writes them. `table()` is the other direction:
the lines `dhcp-hotbackup status` prints from a tree it read, one per interface, so
200 VLANs read at a glance.

    groups/<g>/role            active | standby     the datapath's role for the group
    groups/<g>/state           init | backup | active | fault   (the pair policy's)
    groups/<g>/vrrp_state      initialize | backup | master
    groups/<g>/priority        effective VRRP priority; configured_priority beside it
    groups/<g>/master          the master's address as seen from here
    groups/<g>/vrid, interface, interfaces (how many are bound), takeovers
    groups/<g>/last_transition JSON, as vrrp/last_transition
    interfaces/<if>/role       active | standby | shared (serving one of its two groups)
    interfaces/<if>/groups     its groups, one line each in the config ("" standalone)
    interfaces/<if>/server_id  the server identifier per group, in the same order
    interfaces/<if>/leases     bound leases of the pools on its subnets (pools_by_interface)
    interfaces/<if>/stats/     received, sent, dropped_standby (the packet path's, not here)

The interfaces bound to no group belong to the group STANDALONE (""), which has no
groups/ folder: it has no election.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

STANDALONE = ""  # pair.policy.STANDALONE (runtime sits below pair: not imported)


@dataclass(frozen=True, slots=True)
class GroupFacts:
    name: str
    serving: bool  # the datapath's role for it
    state: str  # the pair policy's GroupState value
    vrrp_state: str  # initialize | backup | master
    priority: int
    configured_priority: int
    master: str
    vrid: int
    interface: str  # where it advertises
    interfaces: int  # how many client interfaces are bound to it
    takeovers: int = 0
    last_transition: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InterfaceFacts:
    name: str
    groups: tuple[str, ...]  # () standalone
    server_ids: tuple[str, ...]  # one per group (its own address when standalone)
    leases: int


def interface_role(groups: Sequence[str], serving: frozenset[str]) -> str:
    """active: every group of it is served here; shared: one of its two; else standby."""
    mine = tuple(groups) or (STANDALONE,)
    n = sum(1 for g in mine if g in serving)
    return "active" if n == len(mine) else "shared" if n else "standby"


def values(groups: Sequence[GroupFacts], interfaces: Sequence[InterfaceFacts],
           serving: frozenset[str]) -> dict[str, object]:
    """{path: value} for groups/ and interfaces/ (see the module docstring)."""
    out: dict[str, object] = {}
    for g in groups:
        b = f"groups/{g.name}/"
        out[b + "role"] = "active" if g.serving else "standby"
        out[b + "state"] = g.state
        out[b + "vrrp_state"] = g.vrrp_state
        out[b + "priority"] = g.priority
        out[b + "configured_priority"] = g.configured_priority
        out[b + "master"] = g.master
        out[b + "vrid"] = g.vrid
        out[b + "interface"] = g.interface
        out[b + "interfaces"] = g.interfaces
        out[b + "takeovers"] = g.takeovers
        if g.last_transition:
            out[b + "last_transition"] = json.dumps(dict(g.last_transition), sort_keys=True)
    for i in interfaces:
        b = f"interfaces/{i.name}/"
        out[b + "role"] = interface_role(i.groups, serving)
        out[b + "groups"] = "\n".join(i.groups)
        out[b + "server_id"] = "\n".join(i.server_ids)
        out[b + "leases"] = i.leases
    return out


def pools_by_interface(addresses: Mapping[str, Sequence[int]],
                       pools: Sequence[tuple[str, int, int]]) -> dict[str, tuple[str, ...]]:
    """The pools each interface serves from: those (name, network, netmask as ints)
    whose subnet holds one of its addresses (its own or a virtual IP: `addresses`,
    interface -> [address as int]). A relayed pool (no interface on its subnet) is
    nobody's."""
    return {ifname: tuple(name for name, net, mask in pools
                          if any(a & mask == net for a in addrs))
            for ifname, addrs in addresses.items()}


# -- the other direction: what `status` prints -------------------------------------
def table(tree: Mapping[str, str], most: int = 0) -> list[str]:
    """One line per interface, then one per group, from a runtime tree as read
    (runtime.tree.read_tree). `most` > 0: at most that many interface lines, then a
    count of the rest by role (the groups are never cut)."""
    ifs: dict[str, dict[str, str]] = {}
    grs: dict[str, dict[str, str]] = {}
    for k, v in tree.items():
        kind, _, rest = k.partition("/")
        name, _, leaf = rest.rpartition("/")
        if name.endswith("/stats"):  # interfaces/<if>/stats/<counter>
            name, leaf = name[:-6], "stats/" + leaf
        if kind == "interfaces" and name and "/" not in name:
            ifs.setdefault(name, {})[leaf] = v
        elif kind == "groups" and name and "/" not in name:
            grs.setdefault(name, {})[leaf] = v
    lines: list[str] = []
    if ifs:
        w = max(9, *(len(n) for n in ifs))
        lines.append(f"  {'interface':{w}} {'role':8} {'group':12} {'server id':16} leases "
                     f"{'requests':>9} {'replies':>9}")
        shown = sorted(ifs, key=_natural)
        rest = shown[most:] if most > 0 else []
        for n in shown[:most] if most > 0 else shown:
            f = ifs[n]
            groups = ",".join(f.get("groups", "").split()) or "-"
            sid = ",".join(f.get("server_id", "").split()) or "-"
            lines.append(f"  {n:{w}} {f.get('role', '?'):8} {groups:12} {sid:16} "
                         f"{f.get('leases', '0'):>6} {f.get('stats/received', '0'):>9} "
                         f"{f.get('stats/sent', '0'):>9}")
        if rest:
            roles: dict[str, int] = {}
            for n in rest:
                r = ifs[n].get("role", "?")
                roles[r] = roles.get(r, 0) + 1
            lines.append(f"  ... {len(rest)} more: " + ", ".join(
                f"{c} {r}" for r, c in sorted(roles.items())))
    if grs:
        w = max(5, *(len(n) for n in grs))
        lines.append(f"  {'group':{w}} {'role':8} {'vrrp':10} {'vrid':>4} {'prio':>9} "
                     f"{'master':15} {'ifs':>4} takeovers")
        for n in sorted(grs, key=_natural):
            f = grs[n]
            prio = f.get("priority", "?")
            if f.get("configured_priority", prio) != prio:
                prio = f"{prio}/{f.get('configured_priority')}"
            lines.append(f"  {n:{w}} {f.get('role', '?'):8} {f.get('vrrp_state', '?'):10} "
                         f"{f.get('vrid', '?'):>4} {prio:>9} {f.get('master', '') or '-':15} "
                         f"{f.get('interfaces', '?'):>4} {f.get('takeovers', '0')}")
    return lines


def summary(tree: Mapping[str, str]) -> str:
    """"200 interfaces: 100 active, 100 standby; 2 groups: 1 active" (status's header)."""
    roles: dict[str, int] = {}
    groles: dict[str, int] = {}
    for k, v in tree.items():
        parts = k.split("/")
        if len(parts) == 3 and parts[0] == "interfaces" and parts[2] == "role":
            roles[v] = roles.get(v, 0) + 1
        elif len(parts) == 3 and parts[0] == "groups" and parts[2] == "role":
            groles[v] = groles.get(v, 0) + 1
    out = f"{sum(roles.values())} interfaces: " + ", ".join(
        f"{c} {r}" for r, c in sorted(roles.items()))
    if groles:
        out += f"; {sum(groles.values())} groups: " + ", ".join(
            f"{c} {r}" for r, c in sorted(groles.items()))
    return out


def _natural(name: str) -> tuple[object, ...]:
    """eth1.2 before eth1.10: digits compare as numbers."""
    out: list[object] = []
    num = ""
    text = ""
    for ch in name:
        if ch.isdigit():
            if text:
                out.append((1, text))
                text = ""
            num += ch
        else:
            if num:
                out.append((0, int(num)))
                num = ""
            text += ch
    if num:
        out.append((0, int(num)))
    if text:
        out.append((1, text))
    return tuple(out)
