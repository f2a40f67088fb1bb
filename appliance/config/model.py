"""Frozen configuration values built from the config tree; what a reload does with two.

Pure: no file access here. `config/tree.py` reads the directory, `config/schema.py`
parses each file; this module holds the result and compares two results:

- settings(cfg): every value as (file path, schema key, value), the one flat view that
  diff(), drift_summary() and plan() are built on;
- diff(old, new): the paths that differ;
- drift_summary(cfg): the values both devices must agree on (Key.agree), for the sync
  link's drift check;
- plan(old, new): what a reload does, sorted by each key's Key.reload class.

The model is many client interfaces and several VRRP groups (DESIGN.md, "Many
interfaces, several groups, both devices working"): Config.interfaces, each bound to
zero, one or two groups, and Config.groups, each a VRRP instance advertising on one
interface. A tree in the one-interface layout (client/interface, vrrp/<setting>) is one
interface bound to one group named LEGACY_GROUP; Config.legacy keeps its paths for
messages. Config.client_interface and Config.vrrp serve code written for one interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from appliance.config.schema import KEY_BY_PATH, Reload

# The group a one-interface tree's vrrp/ folder becomes: its name in the runtime tree
# and in metrics labels.
LEGACY_GROUP = "vrrp"


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    state_dir: str
    run_dir: str


@dataclass(frozen=True, slots=True)
class OptionValue:
    """One option file (options/<file> at any level): the option's code and its value in
    wire form, read through dhcp/options.py's table (docs/dhcp-options.md)."""

    file: str  # its name under options/: 'routers', '121', '224.u32'
    code: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ClassConfig:
    """One classes/<name>/ folder: who belongs (every criterion given must match, any
    line of one criterion may) and the options its members get. A pattern is text, or
    hex written 0x..., and ends in '*' to match a prefix (config/schema.pattern)."""

    name: str
    vendor_class: tuple[str, ...] = ()  # option 60
    user_class: tuple[str, ...] = ()  # option 77 (RFC 3004), any of its instances
    circuit_id: tuple[str, ...] = ()  # Option 82 sub-option 1 (RFC 3046 §3.1)
    remote_id: tuple[str, ...] = ()  # Option 82 sub-option 2 (RFC 3046 §3.2)
    mac_prefix: tuple[bytes, ...] = ()  # chaddr begins with one of these
    relay: tuple[IPv4Network, ...] = ()  # giaddr in one of these networks
    options: tuple[OptionValue, ...] = ()


@dataclass(frozen=True, slots=True)
class HostConfig:
    """One hosts/<name>/ folder: a client known by one identifier (MAC, client id, or
    the relay's circuit-id / remote-id: the subscriber's port, whatever is plugged in),
    and what it gets: a fixed address, a host name, options. Configuration, compared
    with the peer (drift), never replicated as a lease."""

    name: str
    mac: bytes | None = None
    client_id: bytes | None = None
    circuit_id: bytes | None = None
    remote_id: bytes | None = None
    relay: IPv4Address | None = None  # circuit-id / remote-id only through this giaddr
    address: IPv4Address | None = None
    hostname: str | None = None
    options: tuple[OptionValue, ...] = ()


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """One pools/<name>/ folder: a subnet, its ranges, options and reservations."""

    name: str
    subnet: IPv4Network
    ranges: tuple[tuple[IPv4Address, IPv4Address], ...]
    router: tuple[IPv4Address, ...] = ()
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None
    lease_time: int = 3600
    # MAC (6 raw bytes) -> fixed address
    reservations: tuple[tuple[bytes, IPv4Address], ...] = ()
    # Abuse limits (docs/operations.md, "Hostile clients").
    max_declined_percent: int = 10
    max_leases_per_relay: int = 0  # 0: no limit
    max_leases_per_circuit: int = 0  # 0: no limit
    # The pool-use alarm (docs/metrics.md): raised at alarm_percent (0: none), cleared
    # below alarm_clear_percent (0: ten points below alarm_percent).
    alarm_percent: int = 90
    alarm_clear_percent: int = 0
    # Pools with the same name here serve one link (dhcp/relay.Links); "": alone.
    shared_network: str = ""
    # Lease times: a client's own request (option 51) is honoured within min..max (0:
    # lease_time); T1/T2 (options 58/59; 0: RFC 2131 §4.4.5's 0.5 and 0.875).
    min_lease_time: int = 0
    max_lease_time: int = 0
    renew_time: int = 0
    rebind_time: int = 0
    # Classes: allow (when any: only their members get an address here) and deny.
    allow_classes: tuple[str, ...] = ()
    deny_classes: tuple[str, ...] = ()
    options: tuple[OptionValue, ...] = ()  # pools/<p>/options/

    @property
    def alarm_clear(self) -> int:
        """The use below which the alarm clears (at most alarm_percent)."""
        if not self.alarm_percent:
            return 0
        return self.alarm_clear_percent or max(1, self.alarm_percent - 10)


@dataclass(frozen=True, slots=True)
class VrrpConfig:
    vrid: int
    priority: int
    advert_interval_ms: int
    preempt: bool
    virtual_ips: tuple[IPv4Interface, ...]
    preempt_delay_ms: int = 0
    # tracked interface name -> priority decrement while it is down
    track: tuple[tuple[str, int], ...] = ()
    use_vmac: bool = False
    accept: bool = True
    garp_count: int = 5
    garp_interval_ms: int = 0
    garp_repeat_s: int = 5
    # vrrp/peer: adverts from any other source are dropped (None: any source). Each
    # device names the other, so it is not in the sync drift summary.
    peer: IPv4Address | None = None


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    """One interfaces/<ifname>/ folder: a client-facing interface and who serves it."""

    name: str
    # (): standalone, always active here; (g,): g's master serves here; (g1, g2): both
    # devices serve here, clients split between the two groups by the RFC 3074 hash.
    groups: tuple[str, ...] = ()
    # One per group, same order: the group's virtual IP here, the server identifier
    # (option 54) its clients get, so a unicast renewal reaches whoever is master.
    virtual_ips: tuple[IPv4Interface, ...] = ()

    @property
    def standalone(self) -> bool:
        return not self.groups

    def virtual_ip(self, group: str) -> IPv4Interface | None:
        """This interface's virtual IP for `group` (None: not bound to it)."""
        for g, vip in zip(self.groups, self.virtual_ips, strict=False):
            if g == group:
                return vip
        return None


@dataclass(frozen=True, slots=True)
class GroupConfig:
    """One vrrp/<group>/ folder: a VRRP instance. Its election moves every interface
    bound to it (Huawei's mVRRP: one admin group, many service interfaces)."""

    name: str
    interface: str  # where it advertises
    # The RFC 5798 settings; vrrp.virtual_ips are the addresses its adverts carry: its
    # interface's virtual IP for it (when that interface is bound to it), then
    # vrrp/<group>/virtual_ip.
    vrrp: VrrpConfig


@dataclass(frozen=True, slots=True)
class SyncConfig:
    interface: str
    local: tuple[IPv4Address, int]
    peer: tuple[IPv4Address, int]
    key: bytes = field(repr=False)
    mode: str = "sync"  # "sync" | "async"
    ack_timeout_ms: int = 50
    max_clock_skew_ms: int = 1000


@dataclass(frozen=True, slots=True)
class DatapathConfig:
    mode: str = "xdp"  # "xdp" | "off"
    rate_limit_pps: int = 50
    rate_limit_burst: int = 0  # 0: twice rate_limit_pps
    new_client_pps: int = 200  # clients without a bucket, all MACs; 0: off
    new_client_burst: int = 0  # 0: twice new_client_pps


class Unsupported(RuntimeError):
    """The tree asks for more than the code using the one-interface view can serve."""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = ""  # "address:port" of the Prometheus endpoint; "": off


@dataclass(frozen=True, slots=True)
class LeasequeryConfig:
    """leasequery/ (docs/leasequery.md): who may ask, and the RFC 6926 TCP listener."""

    requesters: tuple[IPv4Network, ...] = ()  # (): leasequery refused
    bulk_listen: str = ""  # "address:port"; "": no TCP listener
    bulk_max_connections: int = 8
    bulk_idle_timeout_s: int = 60


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeConfig
    pools: tuple[PoolConfig, ...]
    interfaces: tuple[InterfaceConfig, ...]  # sorted by name
    groups: tuple[GroupConfig, ...] = ()  # sorted by name
    sync: SyncConfig | None = None
    datapath: DatapathConfig = DatapathConfig()
    metrics: MetricsConfig = MetricsConfig()
    leasequery: LeasequeryConfig = LeasequeryConfig()
    options: tuple[OptionValue, ...] = ()  # options/: every client's
    classes: tuple[ClassConfig, ...] = ()  # sorted by name: the first named wins
    hosts: tuple[HostConfig, ...] = ()  # sorted by name
    # the directory it was read from, for messages
    source: str = ""
    # read from the one-interface layout: messages and the drift summary use its paths
    legacy: bool = False

    @property
    def standalone(self) -> bool:
        """No VRRP group: the device is always active."""
        return not self.groups

    def pool(self, name: str) -> PoolConfig | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None

    def host_addresses(self) -> tuple[IPv4Address, ...]:
        """The hosts' fixed addresses: kept out of dynamic allocation."""
        return tuple(h.address for h in self.hosts if h.address is not None)

    def interface(self, name: str) -> InterfaceConfig | None:
        for i in self.interfaces:
            if i.name == name:
                return i
        return None

    def group(self, name: str) -> GroupConfig | None:
        for g in self.groups:
            if g.name == name:
                return g
        return None

    def bound(self, group: str) -> tuple[InterfaceConfig, ...]:
        """The interfaces this group's master serves (shares, for a two-group one)."""
        return tuple(i for i in self.interfaces if group in i.groups)

    def service_vips(self, group: str) -> tuple[tuple[str, IPv4Interface], ...]:
        """(interface, virtual IP) the group's master adds on the interfaces bound to it
        other than the one it advertises on (whose addresses the VRRP instance adds)."""
        g = self.group(group)
        out = []
        for i in self.bound(group):
            vip = i.virtual_ip(group)
            if vip is not None and (g is None or i.name != g.interface):
                out.append((i.name, vip))
        return tuple(out)

    def group_index(self) -> dict[str, int]:
        """Each group's index for the datapath's group -> role map: by name, from 0. A
        running daemon keeps its indexes across a reload with stable_indexes()."""
        return {g.name: n for n, g in enumerate(self.groups)}

    # -- the one-interface view, for code not yet written for many ------------------
    def _one(self) -> tuple[InterfaceConfig, GroupConfig | None]:
        n_if, n_g = len(self.interfaces), len(self.groups)
        i = self.interfaces[0] if n_if == 1 else None
        g = self.groups[0] if n_g == 1 else None
        if i is not None and n_g == 0:
            return i, None
        if i is not None and g is not None and i.groups == (g.name,) \
                and g.interface == i.name:
            return i, g
        raise Unsupported(
            f"{self.source or 'the config tree'}: {n_if} interface(s), {n_g} group(s): this "
            "daemon serves one interface, standalone or bound to the one group that "
            "advertises on it")

    @property
    def client_interface(self) -> str:
        """The one client interface (Unsupported when the tree has more)."""
        return self._one()[0].name

    @property
    def vrrp(self) -> VrrpConfig | None:
        """The one group's VRRP settings; None standalone (Unsupported for more)."""
        g = self._one()[1]
        return g.vrrp if g is not None else None


def stable_indexes(previous: Mapping[str, int], names: Iterable[str]) -> dict[str, int]:
    """Datapath indexes for `names` that keep every index in `previous` whose group is
    still there, so a reload that adds or removes a group rewrites no other group's
    entries; a new group takes the lowest free index, in name order."""
    names = sorted(names)
    out = {n: previous[n] for n in names if n in previous}
    free = (i for i in range(len(names) + len(previous)) if i not in out.values())
    for n in names:
        if n not in out:
            out[n] = next(free)
    return out


# -- the flat view: every value with its file path and schema key ----------------------
@dataclass(frozen=True, slots=True)
class Setting:
    path: str  # the file: 'vrrp/ga/vrid' ('vrrp/vrid' in the one-interface layout)
    key: str  # its schema key: 'vrrp/<group>/vrid'
    value: Any  # typed; compared as such
    item: tuple[str, str]  # what it belongs to: ('pool', 'lan'), ('group', 'ga'), ...
    item_path: str  # that item's folder, named when it is added or removed


def canonical(v: Any) -> str:
    """A value as one line, the same on both devices (drift summary digests it): a list
    is its items joined by spaces, a range FIRST-LAST, an endpoint ADDRESS:PORT."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, tuple):
        if len(v) == 2 and type(v[0]) is IPv4Address and type(v[1]) is int:
            return f"{v[0]}:{v[1]}"  # an endpoint
        return " ".join(f"{x[0]}-{x[1]}" if isinstance(x, tuple) else canonical(x)
                        for x in v)  # a list; a tuple in it is a range
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


_FILE_OF = {"ranges": "range", "virtual_ips": "virtual_ip"}  # field -> file, where they differ
# Config fields that are not a section of settings/, or are walked by their own code.
_NOT_SECTIONS = ("source", "legacy", "pools", "interfaces", "groups", "options", "classes",
                 "hosts")


# Pool settings added with options and classes: listed only when set, so that a pair
# upgraded one device at a time sees no drift from a tree that does not use them.
_UNSET_UNLISTED = frozenset(("min_lease_time", "max_lease_time", "renew_time", "rebind_time",
                             "allow_classes", "deny_classes"))


def settings(cfg: Config, legacy: bool | None = None) -> list[Setting]:
    """Every value of `cfg` as a Setting, with the paths of the layout it was read from
    (legacy=False: the interfaces/ layout's paths, whatever it was read from).
    Sections (node/, sync/, datapath/, ...) are walked field by field, so a new field
    with the same name as its file needs no code here."""
    legacy = cfg.legacy if legacy is None else legacy
    out: list[Setting] = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name in _NOT_SECTIONS or not is_dataclass(v):  # sync/ absent: None
            continue
        item = ("section", f.name)
        for sf in fields(v):
            out.append(Setting(f"{f.name}/{sf.name}", f"{f.name}/{sf.name}",
                               getattr(v, sf.name), item, f.name))
    out += _interface_settings(cfg, legacy)
    out += _group_settings(cfg, legacy)
    for p in cfg.pools:
        base, item = f"pools/{p.name}", ("pool", p.name)
        for pf in fields(p):
            v = getattr(p, pf.name)
            if pf.name == "name":
                continue
            if pf.name == "options":
                out += _option_settings(v, base, "pools/<name>", item, base)
                continue
            if pf.name in _UNSET_UNLISTED and not v:
                continue
            if pf.name == "reservations":
                out += [Setting(f"{base}/reservations/{mac.hex(':')}",
                                "pools/<name>/reservations/<mac>", ip, item, base)
                        for mac, ip in v]
                continue
            if pf.name == "ranges":
                v = tuple(sorted(v))  # the same pool whatever the order of the lines
            file = _FILE_OF.get(pf.name, pf.name)
            out.append(Setting(f"{base}/{file}", f"pools/<name>/{file}", v, item, base))
    out += _option_settings(cfg.options, "", "", ("options", ""), "options")
    for kind, items in (("class", cfg.classes), ("host", cfg.hosts)):
        for it in items:
            base, item = f"{kind}es/{it.name}" if kind == "class" else f"hosts/{it.name}", \
                (kind, it.name)
            key = "classes/<class>" if kind == "class" else "hosts/<host>"
            for f in fields(it):
                v = getattr(it, f.name)
                if f.name == "name" or v is None or v == ():
                    continue
                if f.name == "options":
                    out += _option_settings(v, base, key, item, base)
                else:
                    out.append(Setting(f"{base}/{f.name}", f"{key}/{f.name}", v, item, base))
    return out


def _option_settings(opts: tuple[OptionValue, ...], base: str, key: str,
                     item: tuple[str, str], item_path: str) -> list[Setting]:
    """One Setting per option file, its value the wire bytes (so a list written on one
    line or on several is the same value)."""
    pre, kpre = (f"{base}/options", f"{key}/options") if base else ("options", "options")
    return [Setting(f"{pre}/{o.file}", f"{kpre}/<option>", o.data, item, item_path)
            for o in opts]


def _interface_settings(cfg: Config, legacy: bool) -> list[Setting]:
    out = []
    for i in cfg.interfaces:
        item = ("interface", i.name)
        if legacy:
            # The binding and the virtual IP are the vrrp/ folder's (its first line).
            out.append(Setting("client/interface", "client/interface", i.name, item,
                               "client/interface"))
            continue
        base = f"interfaces/{i.name}"
        out.append(Setting(f"{base}/group", "interfaces/<ifname>/group", i.groups, item,
                           base))
        out.append(Setting(f"{base}/virtual_ip", "interfaces/<ifname>/virtual_ip",
                           i.virtual_ips, item, base))
    return out


def _group_settings(cfg: Config, legacy: bool) -> list[Setting]:
    out = []
    for g in cfg.groups:
        item = ("group", g.name)
        base = "vrrp" if legacy else f"vrrp/{g.name}"
        key = "vrrp" if legacy else "vrrp/<group>"
        own = cfg.interface(g.interface)
        own_vip = own.virtual_ip(g.name) if own is not None else None
        if not legacy:
            out.append(Setting(f"{base}/interface", f"{key}/interface", g.interface, item,
                               base))
        for f in fields(g.vrrp):
            v = getattr(g.vrrp, f.name)
            if f.name == "track":
                out += [Setting(f"{base}/track/{ifname}", f"{key}/track/<ifname>", dec, item,
                                base) for ifname, dec in v]
                continue
            if f.name == "virtual_ips" and not legacy and own_vip is not None:
                # the file holds the addresses beyond the interface's own virtual_ip
                v = tuple(x for x in v if x != own_vip)
            file = _FILE_OF.get(f.name, f.name)
            out.append(Setting(f"{base}/{file}", f"{key}/{file}", v, item, base))
    return out


def _reload_class(key: str) -> Reload:
    """Key.reload; a key not classified yet is a restart (its running value stays)."""
    k = KEY_BY_PATH.get(key)
    return k.reload if k is not None and k.reload is not None else Reload.RESTART


def _changes(old: Config, new: Config) -> list[tuple[str, Reload]]:
    """(path, class) of every difference; an item (pool, interface, group, section)
    that is only on one side is one change named by its folder."""
    legacy = old.legacy and new.legacy
    a = {s.path: s for s in settings(old, legacy)}
    b = {s.path: s for s in settings(new, legacy)}
    items_a = {s.item for s in a.values()}
    items_b = {s.item for s in b.values()}
    out: dict[str, Reload] = {}
    for s in [*a.values(), *b.values()]:
        if s.item not in items_a or s.item not in items_b:
            kind = s.item[0]
            out[s.item_path] = (Reload.MEMBERSHIP if kind in ("interface", "group") else
                                Reload.POOLS if kind == "pool" else _reload_class(s.key))
        elif (s.path in a) != (s.path in b) or a[s.path].value != b[s.path].value:
            out[s.path] = _reload_class(s.key)
    return sorted(out.items())


def diff(old: Config, new: Config) -> list[str]:
    """The paths that differ (e.g. 'vrrp/priority', 'pools/lan/range'; a pool, an
    interface or a group added or removed: its folder, 'pools/guest'), sorted."""
    return [p for p, _ in _changes(old, new)]


def drift_summary(cfg: Config) -> list[tuple[str, str]]:
    """The values both devices must agree on (Key.agree), as (path, canonical value):
    the sync session sends keyed digests of them in HELLO and names the paths that
    differ. A one-interface tree gives the same list as before the interfaces/ layout,
    so a pair upgraded one device at a time sees no drift that is not there."""
    out = []
    for s in settings(cfg):
        k = KEY_BY_PATH.get(s.key)
        if k is not None and k.agree:
            out.append((s.path, canonical(s.value)))
    return out


# -- reload ----------------------------------------------------------------------------
ALL_LIVE = frozenset(Reload) - {Reload.RESTART}


@dataclass(frozen=True)
class ReloadPlan:
    """What a reload does. `config` is what runs afterwards: the new tree with every
    change the executor cannot apply live kept at its running value."""

    config: Config
    applied: tuple[str, ...]  # paths whose new value is in force after the reload
    restart_needed: tuple[str, ...]  # paths kept at the running value until a restart
    interfaces_added: tuple[InterfaceConfig, ...] = ()  # re-bound: removed, then added
    interfaces_removed: tuple[InterfaceConfig, ...] = ()
    groups_added: tuple[GroupConfig, ...] = ()
    groups_removed: tuple[GroupConfig, ...] = ()
    groups_restarted: tuple[GroupConfig, ...] = ()  # with their new settings
    priorities: tuple[tuple[str, int], ...] = ()  # (group, new priority), not restarted
    pools_changed: tuple[str, ...] = ()  # pools added, removed or changed
    datapath_limits: DatapathConfig | None = None  # to write to the map; None: same
    metrics: MetricsConfig | None = None  # the endpoint to move to or stop; None: same
    leasequery: LeasequeryConfig | None = None  # the new leasequery/ values; None: same

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(sorted({*self.applied, *self.restart_needed}))


def plan(old: Config, new: Config, live: frozenset[Reload] = ALL_LIVE) -> ReloadPlan:
    """The reload from `old` (running) to `new` (just read). `live`: the classes the
    executor applies without a restart; a change of any other class is kept at its
    running value and named in restart_needed (today's daemon: no MEMBERSHIP)."""
    changes = _changes(old, new)
    held = {c for _, c in changes if c not in live}
    run = new
    if Reload.MEMBERSHIP in held:
        # Which interfaces and groups exist, and who is bound where, stay as they run.
        run = replace(run, interfaces=old.interfaces, legacy=old.legacy)
    groups = []
    for g in (old if Reload.MEMBERSHIP in held else new).groups:
        was, now = old.group(g.name), new.group(g.name)
        if now is None:
            now = g  # a group the new tree removed, kept with the membership
        elif Reload.MEMBERSHIP in held and (now.interface, now.vrrp.virtual_ips) != \
                (g.interface, g.vrrp.virtual_ips):
            # what it takes from the interfaces changed with them: kept, but for the
            # priority (a reload that also adds a VLAN still moves the master)
            now = replace(g, vrrp=replace(g.vrrp, priority=now.vrrp.priority))
        if was is not None:
            if Reload.GROUP in held and _restarts(was, now):
                now = replace(was, vrrp=replace(was.vrrp, priority=now.vrrp.priority))
            if Reload.PRIORITY in held:
                now = replace(now, vrrp=replace(now.vrrp, priority=was.vrrp.priority))
        groups.append(now)
    run = replace(run, groups=tuple(groups))
    if Reload.POOLS in held:
        run = replace(run, pools=old.pools, options=old.options, classes=old.classes,
                      hosts=old.hosts)
    # Sections (node/, sync/, datapath/, ...): a held field keeps its running value; a
    # section added or removed is kept whole.
    for path, cls in changes:
        section = path.split("/")[0]
        if cls in live or section in _NOT_SECTIONS or section in ("client", "vrrp") \
                or not hasattr(run, section):
            continue
        was, now = getattr(old, section), getattr(run, section)
        name = path.split("/")[1] if "/" in path else ""
        if was is None or now is None or not name:
            run = replace(run, **{section: was})
        elif hasattr(now, name):
            run = replace(run, **{section: replace(now, **{name: getattr(was, name)})})
    applied = tuple(p for p, _ in _changes(old, run))
    pending = tuple(p for p, _ in _changes(run, new))
    return _effects(old, run, applied, pending)


def _restarts(a: GroupConfig, b: GroupConfig) -> bool:
    """A difference other than the priority: the instance restarts."""
    return replace(a, vrrp=replace(a.vrrp, priority=0)) != \
        replace(b, vrrp=replace(b.vrrp, priority=0))


def _effects(old: Config, run: Config, applied: tuple[str, ...],
             pending: tuple[str, ...]) -> ReloadPlan:
    was_if = {i.name: i for i in old.interfaces}
    now_if = {i.name: i for i in run.interfaces}
    was_g = {g.name: g for g in old.groups}
    now_g = {g.name: g for g in run.groups}
    was_p = {p.name: p for p in old.pools}
    now_p = {p.name: p for p in run.pools}
    return ReloadPlan(
        config=run, applied=applied, restart_needed=pending,
        interfaces_removed=tuple(i for n, i in was_if.items() if now_if.get(n) != i),
        interfaces_added=tuple(i for n, i in now_if.items() if was_if.get(n) != i),
        groups_removed=tuple(g for n, g in was_g.items() if n not in now_g),
        groups_added=tuple(g for n, g in now_g.items() if n not in was_g),
        groups_restarted=tuple(g for n, g in now_g.items()
                               if n in was_g and _restarts(was_g[n], g)),
        priorities=tuple((n, g.vrrp.priority) for n, g in now_g.items()
                         if n in was_g and not _restarts(was_g[n], g)
                         and was_g[n].vrrp.priority != g.vrrp.priority),
        # Options, classes and hosts are the pools' too (what their clients get, the
        # addresses kept out of allocation): a change to them rebuilds every pool.
        pools_changed=tuple(sorted(n for n in was_p.keys() | now_p.keys()
                                   if was_p.get(n) != now_p.get(n)
                                   or (old.options, old.classes, old.hosts)
                                   != (run.options, run.classes, run.hosts))),
        datapath_limits=run.datapath if run.datapath != old.datapath else None,
        metrics=run.metrics if run.metrics != old.metrics else None,
        leasequery=run.leasequery if run.leasequery != old.leasequery else None,
    )
