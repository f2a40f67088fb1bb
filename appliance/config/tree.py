"""Reads and validates the sysfs-style config tree into a Config, with precise errors.

Every problem is reported as `<file>: <value>: <rule>`, and all problems are collected
before giving up, so that an operator fixes a broken tree in one round.

Nothing the reader cannot make sense of becomes a default: a dangling or looping
symbolic link, a file or folder it may not read, a named pipe or device where a value
belongs, an empty vrrp/, sync/ or pool folder are each a problem naming the path and
saying what to do (docs/operations.md, "When the tree is refused"). Symbolic links to
real files and folders, inside the tree or not, are followed; the reader never
recurses, so no link can make it loop, and it opens values non-blocking and reads at
most MAX_VALUE_BYTES, so no link (to a pipe, /dev/zero) can make it hang.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from appliance.config.model import (
    LEGACY_GROUP,
    ClassConfig,
    Config,
    DatapathConfig,
    GroupConfig,
    HostConfig,
    InterfaceConfig,
    LeasequeryConfig,
    MetricsConfig,
    NodeConfig,
    OptionValue,
    PoolConfig,
    SyncConfig,
    VrrpConfig,
)
from appliance.config.schema import (
    KEY_BY_PATH,
    LEGACY_VRRP_NAMES,
    Invalid,
    group_name,
    ifname,
    mac_filename,
)
from appliance.config.schema import name as pool_name

# The one import from a higher layer (pyproject.toml's layers contract names it): the
# option table is the one definition of how an option file reads (DESIGN.md, "Options,
# classes, hosts"), for this reader as for the replies.
from appliance.dhcp.options import OptionError, option_name, parse_option_file

DEFAULT_ROOT = "/etc/dhcp-hotbackup"


@dataclass(frozen=True)
class Problem:
    path: str  # file path as given to the operator
    value: str
    rule: str

    def __str__(self) -> str:
        v = self.value if len(self.value) <= 60 else self.value[:57] + "..."
        return f"{self.path}: '{v}': {self.rule}" if self.value else f"{self.path}: {self.rule}"


class ConfigError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def ignored(name: str) -> bool:
    """Files that are not settings: hidden files, editor backups, documentation, and
    what dpkg and ucf leave beside a conffile (README, x.dpkg-dist, x.ucf-old, ...)."""
    return (name.startswith(".") or name.endswith("~") or name.startswith("README")
            or ".dpkg-" in name or ".ucf-" in name)


# A value is a few lines of text; a bigger "file" is a mistake (or a symbolic link to
# something that never ends, like /dev/zero), and is refused rather than read.
MAX_VALUE_BYTES = 64 * 1024


class Kind(Enum):
    ABSENT = "absent"
    FILE = "file"
    DIR = "dir"
    OTHER = "other"  # a named pipe, a device or a socket
    BROKEN = "broken"  # a dangling or looping symbolic link, or no access


@dataclass(frozen=True)
class Entry:
    kind: Kind
    why: str = ""  # for OTHER and BROKEN: what is wrong and what to do


_ACCESS_HINT = ("the daemon runs as root; run check-config as root too, or make the "
                "tree readable (folders 755, files 644, sync/key 600)")


_SPECIAL = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def probe(path: Path) -> Entry:
    """What `path` is once symbolic links are followed. A dangling or looping link is
    BROKEN, never ABSENT: it was put there to say something, so it must not silently
    become the default (Path.exists() is False for it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:
            return Entry(Kind.ABSENT)
        return Entry(Kind.BROKEN, f"broken symbolic link: its target '{target}' does not "
                     "exist; point the link at an existing file (or folder) or remove it")
    except NotADirectoryError:
        return Entry(Kind.ABSENT)  # a parent is a file; that parent is reported itself
    except OSError as e:
        if e.errno == errno.ELOOP:
            return Entry(Kind.BROKEN, "symbolic link loop: the link leads back to itself; "
                         "point it at a real file (or folder) or remove it")
        return Entry(Kind.BROKEN, f"cannot be reached: {e.strerror}: "
                     + _ACCESS_HINT)
    if stat.S_ISREG(st.st_mode):
        return Entry(Kind.FILE)
    if stat.S_ISDIR(st.st_mode):
        return Entry(Kind.DIR)
    what = next((name for test, name in _SPECIAL if test(st.st_mode)), "not a regular file")
    return Entry(Kind.OTHER, f"is {what}, not a file holding the value")


def _present(r: _Reader, rel: str, needs: str) -> bool:
    """An optional folder (vrrp/, sync/) switches a feature on. Absent: off. A folder
    holding settings: on. Anything else is an error, never a silent default: an empty
    vrrp/ used to make a standalone, always-active device of one half of a pair."""
    e = r.probe(rel)
    if e.kind is Kind.ABSENT:
        return False
    if e.kind is Kind.DIR:
        names = r.folder(rel)
        if names is None:
            return False  # reported
        if names:
            return True
        r.fail(rel, "", f"the folder holds no setting: a pair needs {needs} "
               f"(docs/config.md); a standalone device has no {rel}/ folder: remove it")
        return False
    r.fail(rel, "", e.why if e.kind is Kind.BROKEN else
           f"must be a folder holding {needs}; a standalone device has no {rel} at all")
    return False


def _lines(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            out.append(s)
    return out


def _read_value(path: Path) -> str:
    """The text of one setting. O_NONBLOCK: a named pipe swapped in after probe() must
    not hang the reader; fstat on the open file closes that race; at most
    MAX_VALUE_BYTES + 1 bytes are read. Raises OSError or ValueError (with the rule)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("is not a regular file holding the value")
        data = b""
        while len(data) <= MAX_VALUE_BYTES:
            chunk = os.read(fd, MAX_VALUE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > MAX_VALUE_BYTES:
        raise ValueError(f"larger than {MAX_VALUE_BYTES} bytes: a setting is a few lines "
                         "of text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def fail(self, rel: str, value: str, rule: str) -> None:
        p = Problem(str(self.root / rel) if rel else str(self.root), value, rule)
        if p not in self.problems:  # a folder listed twice is one problem
            self.problems.append(p)

    def probe(self, rel: str) -> Entry:
        return probe(self.root / rel)

    def folder(self, rel: str) -> list[str] | None:
        """The names in folder `rel`, sorted, without ignored() ones; [] when it is
        absent; None (and a problem naming it) when it is not a readable folder."""
        e = self.probe(rel)
        if e.kind is Kind.ABSENT:
            return []
        if e.kind is not Kind.DIR:
            self.fail(rel, "", e.why if e.kind is Kind.BROKEN else
                      "must be a folder (one file per setting inside)")
            return None
        try:
            names = os.listdir(self.root / rel)
        except OSError as ex:
            self.fail(rel, "", f"cannot list the folder: {ex.strerror}: {_ACCESS_HINT}")
            return None
        return sorted(n for n in names if not ignored(n))

    def get(self, rel: str, schema_path: str | None = None) -> Any:
        """Parse one file; the schema default when absent; None (and a problem) if bad."""
        key = KEY_BY_PATH[schema_path or rel]
        e = self.probe(rel)
        if e.kind is Kind.ABSENT:
            if key.default is None and key.path not in ("pools/<name>/domain",):
                top = key.path.split("/")[0]
                hint = (f" (a standalone device has no {top}/ folder at all)"
                        if top in ("vrrp", "sync") else "")
                if key.path.startswith("vrrp/<group>/"):
                    hint = f" (remove {'/'.join(rel.split('/')[:2])}/ if the group is gone)"
                self.fail(rel, "", f"missing: this setting is required{hint}")
            return key.default
        if e.kind is Kind.DIR:
            self.fail(rel, "", "must be a file holding the value, not a directory")
            return None
        if e.kind is not Kind.FILE:
            self.fail(rel, "", e.why)
            return None
        try:
            text = _read_value(self.root / rel)
        except OSError as ex:
            self.fail(rel, "", f"cannot read: {ex.strerror}: {_ACCESS_HINT}")
            return None
        except ValueError as ex:
            self.fail(rel, "", str(ex))
            return None
        lines = _lines(text)
        try:
            return key.parse(lines)
        except Invalid as ex:
            self.fail(rel, " / ".join(lines), str(ex))
            return None

    def check_known(self, folder: str, allowed: set[str]) -> None:
        for name in self.folder(folder) or ():
            if name not in allowed:
                self.fail(f"{folder}/{name}", "", "unknown setting (a typo?); known: "
                          + ", ".join(sorted(allowed)))


def _names(prefix: str) -> set[str]:
    """The names a folder may hold: 'vrrp' gives vrid, priority, ..., track."""
    out = set()
    for p in KEY_BY_PATH:
        if p.startswith(prefix + "/"):
            n = p[len(prefix) + 1 :].split("/")[0]
            if not n.startswith("<"):
                out.add(n)
    return out


TOPS = ("node", "client", "interfaces", "vrrp", "sync", "pools", "datapath", "metrics",
        "leasequery", "options", "classes", "hosts")


def load(root: str | os.PathLike[str] = DEFAULT_ROOT) -> Config:
    """Read and validate the tree under `root`; raise ConfigError listing every problem."""
    r = _Reader(Path(root))
    e = r.probe("")
    if e.kind is not Kind.DIR:
        raise ConfigError([Problem(str(r.root), "", e.why if e.kind is Kind.BROKEN else
                                   "config tree not found (not a directory)")])
    tops = r.folder("")
    if tops is None:
        raise ConfigError(r.problems)
    for top in tops:
        if top not in TOPS:
            r.fail(top, "", "unknown folder; known: " + ", ".join(TOPS))

    r.check_known("node", _names("node"))
    node_name = r.get("node/name") if r.probe("node/name").kind is not Kind.ABSENT \
        else _hostname()
    node = NodeConfig(
        name=node_name,
        state_dir=r.get("node/state_dir"),
        run_dir=r.get("node/run_dir"),
    )
    interfaces, groups, legacy = _layout(r)
    sync = _sync(r) if _present(r, "sync", "sync/interface, local, peer and key") else None

    pools: list[PoolConfig] = []
    names = r.folder("pools")
    for name in names or ():
        rel = f"pools/{name}"
        kind = r.probe(rel).kind
        if kind is not Kind.DIR:
            r.fail(rel, "", r.probe(rel).why if kind is Kind.BROKEN else
                   "must be a folder: each pool is a folder pools/<name>/ holding its "
                   "subnet and range")
            continue
        held = r.folder(rel)
        if held == []:
            r.fail(rel, "", "the folder holds no setting: a pool needs subnet and range; "
                   "remove the folder if the pool is gone")
        if not held:
            continue
        p = _pool(r, name)
        if p is not None:
            pools.append(p)
    if names == []:
        r.fail("pools", "", "at least one pool is required (pools/<name>/subnet and range)")
    _check_pools(r, pools)
    options = _options(r, "options", "options/<option>")
    classes = _classes(r)
    hosts = _hosts(r, pools)
    _check_class_refs(r, pools, classes)
    if not legacy:
        _check_vips(r, interfaces, groups, pools)

    r.check_known("datapath", _names("datapath"))
    datapath = DatapathConfig(
        mode=r.get("datapath/mode"),
        rate_limit_pps=r.get("datapath/rate_limit_pps"),
        rate_limit_burst=r.get("datapath/rate_limit_burst"),
        new_client_pps=r.get("datapath/new_client_pps"),
        new_client_burst=r.get("datapath/new_client_burst"),
    )
    r.check_known("metrics", _names("metrics"))
    metrics = MetricsConfig(listen=r.get("metrics/listen") or "")
    r.check_known("leasequery", _names("leasequery"))
    leasequery = LeasequeryConfig(**{k: r.get(f"leasequery/{k}") for k in (
        "requesters", "bulk_listen", "bulk_max_connections", "bulk_idle_timeout_s")})
    if r.problems:
        raise ConfigError(r.problems)
    return Config(node=node, pools=tuple(pools), interfaces=interfaces, groups=groups,
                  sync=sync, datapath=datapath, metrics=metrics, leasequery=leasequery,
                  options=options, classes=classes, hosts=hosts, source=str(r.root),
                  legacy=legacy)


def _hostname() -> str:
    h = socket.gethostname().split(".")[0] or "device"
    return h[:63]


Layout = tuple[tuple[InterfaceConfig, ...], tuple[GroupConfig, ...], bool]

_MIXED = ("the tree mixes two layouts: client/interface with the group's settings "
          "directly in vrrp/ (one interface), and interfaces/<ifname>/ with one folder "
          "vrrp/<group>/ per group (docs/config.md); keep one")


def _layout(r: _Reader) -> Layout:
    """Which layout the tree is written in, read into interfaces and groups. The
    interfaces/ layout when interfaces/ exists (or, without client/, vrrp/ holds group
    folders); else the one-interface layout. Both at once is an error naming both."""
    has_client = r.probe("client").kind is not Kind.ABSENT
    has_ifs = r.probe("interfaces").kind is not Kind.ABSENT
    if has_client and has_ifs:
        r.fail("interfaces", "", _MIXED + ": this tree has client/ too")
        return (), (), False
    group_dirs = _group_dirs(r)
    if has_ifs or (group_dirs and not has_client):
        ifs, groups = _interfaces_layout(r)
        return ifs, groups, False
    if group_dirs:
        for n in group_dirs:
            r.fail(f"vrrp/{n}", "", _MIXED + ": this is a group folder, and the tree has "
                   "client/interface")
        r.check_known("client", _names("client"))
        r.get("client/interface")
        return (), (), True
    if not has_client:
        r.fail("client/interface", "", "missing: name the client-facing interface here, "
               "or give each one a folder interfaces/<ifname>/ (docs/config.md)")
        return (), (), True
    r.check_known("client", _names("client"))
    client_if = r.get("client/interface")
    vrrp = None
    if _present(r, "vrrp", "vrrp/vrid and vrrp/virtual_ip"):
        vals = _vrrp(r, "vrrp", "vrrp")
        vrrp = _vrrp_config(r, "vrrp", vals, vals["virtual_ips"]) if vals else None
    if client_if is None:
        return (), (), True
    ifs, groups = one_interface(client_if, vrrp)
    return ifs, groups, True


def one_interface(name: str, vrrp: VrrpConfig | None
                  ) -> tuple[tuple[InterfaceConfig, ...], tuple[GroupConfig, ...]]:
    """The one-interface layout on the model, the only place that maps it (a package
    upgrade must not break a running pair's tree): client/interface is one interface;
    the settings directly in vrrp/ are one group named LEGACY_GROUP advertising there,
    whose first virtual_ip is the interface's (the server identifier) and whose adverts
    carry all of them. Without vrrp/, the interface is standalone."""
    if vrrp is None:
        return (InterfaceConfig(name),), ()
    return ((InterfaceConfig(name, (LEGACY_GROUP,), (vrrp.virtual_ips[0],)),),
            (GroupConfig(LEGACY_GROUP, name, vrrp),))


def _group_dirs(r: _Reader) -> list[str]:
    """Folders in vrrp/ that are not the one-interface layout's vrrp/track/."""
    if r.probe("vrrp").kind is not Kind.DIR:
        return []
    return [n for n in r.folder("vrrp") or ()
            if n not in LEGACY_VRRP_NAMES and r.probe(f"vrrp/{n}").kind is Kind.DIR]


def _interfaces_layout(r: _Reader) -> tuple[tuple[InterfaceConfig, ...],
                                            tuple[GroupConfig, ...]]:
    ifs: list[InterfaceConfig] = []
    named: dict[str, list[str]] = {}  # group -> the interfaces whose group file names it
    names = r.folder("interfaces")
    if names == [] and r.probe("interfaces").kind is Kind.DIR:
        r.fail("interfaces", "", "the folder holds no interface: give each client-facing "
               "interface a folder interfaces/<ifname>/ (empty: standalone, always active)")
    for n in names or ():
        rel = f"interfaces/{n}"
        try:
            ifname([n])
        except Invalid as e:
            r.fail(rel, n, f"folder name: {e}")
            continue
        e = r.probe(rel)
        if e.kind is not Kind.DIR:
            r.fail(rel, "", e.why if e.kind is Kind.BROKEN else
                   "must be a folder: each client interface is a folder interfaces/<ifname>/"
                   " (empty for a standalone interface)")
            continue
        if r.folder(rel) is None:
            continue
        r.check_known(rel, _names("interfaces/<ifname>"))
        groups = r.get(f"{rel}/group", "interfaces/<ifname>/group")
        vips = r.get(f"{rel}/virtual_ip", "interfaces/<ifname>/virtual_ip")
        groups = () if isinstance(groups, str) else groups  # absent: standalone
        vips = () if isinstance(vips, str) else vips
        for g in groups or ():
            named.setdefault(g, []).append(n)
        if groups is None or vips is None:
            continue
        if len(vips) != len(groups):
            shown = " / ".join(map(str, vips))
            if not groups:
                r.fail(f"{rel}/virtual_ip", shown, "a standalone interface (no group file) "
                       "answers with its own address: remove this file, or name the group "
                       f"in {rel}/group")
            elif not vips:
                r.fail(f"{rel}/virtual_ip", "", f"missing: one virtual IP/prefix per line "
                       f"of {rel}/group, in the same order")
            else:
                r.fail(f"{rel}/virtual_ip", shown, f"{len(vips)} lines for {len(groups)} "
                       f"in {rel}/group: one virtual IP/prefix per group, in the same order")
            continue
        ifs.append(InterfaceConfig(n, groups, vips))

    found: dict[str, tuple[str | None, dict[str, Any]]] = {}
    exists: set[str] = set()
    if _present(r, "vrrp", "one folder per group, vrrp/<group>/, with its vrid"):
        for n in r.folder("vrrp") or ():
            rel = f"vrrp/{n}"
            if n in LEGACY_VRRP_NAMES:
                r.fail(rel, "", _MIXED + ": this is the one-interface layout's setting, and "
                       "the tree has interfaces/; move it into vrrp/<group>/")
                continue
            try:
                group_name(n)
            except Invalid as e:
                r.fail(rel, n, f"folder name: {e}")
                continue
            e = r.probe(rel)
            if e.kind is not Kind.DIR:
                r.fail(rel, "", e.why if e.kind is Kind.BROKEN else
                       "must be a folder: each group is a folder vrrp/<group>/ holding its "
                       "vrid")
                continue
            exists.add(n)
            held = r.folder(rel)
            if held == []:
                r.fail(rel, "", "the folder holds no setting: a group needs its vrid; "
                       "remove the folder if the group is gone")
            if not held:
                continue
            vals = _vrrp(r, rel, "vrrp/<group>")
            where = r.get(f"{rel}/interface", "vrrp/<group>/interface")
            if vals is not None and where is not None:
                found[n] = (where if r.probe(f"{rel}/interface").kind is Kind.FILE else None,
                            vals)

    for g, users in sorted(named.items()):
        if g not in exists:
            for i in users:
                r.fail(f"interfaces/{i}/group", g, f"no group '{g}': there is no folder "
                       f"vrrp/{g}/ (groups: {', '.join(sorted(exists)) or 'none'})")
    by_name = {i.name: i for i in ifs}
    groups: list[GroupConfig] = []
    for n, (where, vals) in sorted(found.items()):
        rel = f"vrrp/{n}"
        if where is None:
            if n not in named:
                r.fail(rel, "", "no interface names this group (interfaces/<ifname>/group) "
                       f"and it has no {rel}/interface and virtual_ip of its own: bind an "
                       "interface to it, or remove the folder")
                continue
            where = named[n][0]  # the first in name order
        own = by_name.get(where)
        own_vip = own.virtual_ip(n) if own is not None else None
        vips = ((own_vip,) if own_vip is not None else ()) + vals["virtual_ips"]
        if not vips:
            if where in named.get(n, ()):
                continue  # its interface's own virtual_ip is wrong: reported there
            r.fail(f"{rel}/virtual_ip", "", f"missing: the group advertises on {where}, which "
                   f"serves no DHCP for it (interfaces/{where}/group does not name it), so "
                   "its adverts need a virtual IP/prefix here")
            continue
        vrrp = _vrrp_config(r, rel, vals, vips)
        if vrrp is not None:
            groups.append(GroupConfig(n, where, vrrp))
    advertised: dict[tuple[str, int], str] = {}
    for g in groups:
        k = (g.interface, g.vrrp.vrid)
        if k in advertised:
            r.fail(f"vrrp/{g.name}/vrid", str(g.vrrp.vrid), f"vrrp/{advertised[k]} advertises "
                   f"vrid {g.vrrp.vrid} on {g.interface} too: groups on one interface need "
                   "different vrids (RFC 5798 5.2.3)")
        else:
            advertised[k] = g.name
    return tuple(ifs), tuple(groups)


def _check_vips(r: _Reader, ifs: tuple[InterfaceConfig, ...],
                groups: tuple[GroupConfig, ...], pools: list[PoolConfig]) -> None:
    """Every virtual IP once; a server identifier inside a pool's subnet (else that
    interface's own clients get no address) and not the network or broadcast address."""
    pools_ok = bool(pools) and not any(
        p.path.startswith(str(r.root / "pools")) for p in r.problems)
    seen: dict[IPv4Address, str] = {}

    def once(rel: str, vip: IPv4Interface) -> None:
        if vip.ip in seen:
            r.fail(rel, str(vip), f"used twice: {seen[vip.ip]} holds {vip.ip} too")
        else:
            seen[vip.ip] = rel
        net = vip.network
        if net.prefixlen < 31 and vip.ip in (net.network_address, net.broadcast_address):
            which = "network" if vip.ip == net.network_address else "broadcast"
            r.fail(rel, str(vip), f"is the {which} address of {net}, not a host's")

    for i in ifs:
        rel = f"interfaces/{i.name}/virtual_ip"
        for vip in i.virtual_ips:
            once(rel, vip)
            if pools_ok and not any(vip.ip in p.subnet for p in pools):
                r.fail(rel, str(vip), "outside every pool's subnet: no pool serves this "
                       "interface's clients; add pools/<name>/ for that subnet or fix the "
                       "address")
    for g in groups:
        own = next((i for i in ifs if i.name == g.interface), None)
        own_vip = own.virtual_ip(g.name) if own is not None else None
        for vip in g.vrrp.virtual_ips:
            if vip != own_vip:
                once(f"vrrp/{g.name}/virtual_ip", vip)


def missing_interfaces(cfg: Config) -> list[str]:
    """The client interfaces (and the interfaces groups advertise on) that this box
    does not have, by name, sorted: the daemon names them at start. if_nametoindex asks
    the kernel in this process's network namespace (/sys/class/net shows the one that
    mounted /sys, which in a namespace entered without `ip netns exec` is another)."""
    names = {i.name for i in cfg.interfaces} | {g.interface for g in cfg.groups}
    out = []
    for n in sorted(names):
        try:
            socket.if_nametoindex(n)
        except OSError:
            out.append(n)
    return out


def _vrrp(r: _Reader, base: str, key: str) -> dict[str, Any] | None:
    """The VRRP settings in folder `base` (vrrp/ or vrrp/<group>/), with schema paths
    under `key`; VrrpConfig's arguments, virtual_ips being the file's (() if absent)."""
    r.check_known(base, _names(key))
    track: list[tuple[str, int]] = []
    for f in r.folder(f"{base}/track") or ():
        try:
            ifname([f])
        except Invalid as e:
            r.fail(f"{base}/track/{f}", f, f"file name: {e}")
            continue
        dec = r.get(f"{base}/track/{f}", f"{key}/track/<ifname>")
        if dec is not None:
            track.append((f, dec))
    vals = {k: r.get(f"{base}/{k}", f"{key}/{k}") for k in (
        "vrid", "priority", "advert_interval_ms", "preempt", "preempt_delay_ms", "virtual_ip",
        "use_vmac", "accept", "garp_count", "garp_interval_ms", "garp_repeat_s", "peer")}
    if any(v is None for v in vals.values()):
        return None
    vips = vals.pop("virtual_ip")
    vals["virtual_ips"] = () if isinstance(vips, str) else vips  # absent in a group
    # vrrp/peer absent: the schema's "(any source)", i.e. no filter
    vals["peer"] = vals["peer"] if isinstance(vals["peer"], IPv4Address) else None
    vals["track"] = tuple(track)
    return vals


def _vrrp_config(r: _Reader, base: str, vals: dict[str, Any],
                 vips: tuple[IPv4Interface, ...]) -> VrrpConfig | None:
    peer = vals["peer"]
    if peer is not None and peer in {v.ip for v in vips}:
        r.fail(f"{base}/peer", str(peer), "must be the other device's own address, not a "
               "virtual IP (adverts are sent from the interface's own address)")
        return None
    return VrrpConfig(**{**vals, "virtual_ips": vips})


def _sync(r: _Reader) -> SyncConfig | None:
    r.check_known("sync", _names("sync"))
    keyfile = r.root / "sync/key"
    if r.probe("sync/key").kind is Kind.FILE:
        mode = stat.S_IMODE(keyfile.stat().st_mode)
        if mode & 0o077:
            r.fail("sync/key", f"mode {mode:04o}", "the secret must not be readable by group or "
                   "others: chmod 600")
    vals = {k: r.get(f"sync/{k}") for k in (
        "interface", "local", "peer", "key", "mode", "ack_timeout_ms", "max_clock_skew_ms")}
    if any(v is None for v in vals.values()):
        return None
    if vals["local"] == vals["peer"]:
        r.fail("sync/peer", f"{vals['peer'][0]}:{vals['peer'][1]}", "must differ from sync/local")
    return SyncConfig(**vals)


def _pool(r: _Reader, name: str) -> PoolConfig | None:
    base = f"pools/{name}"
    try:
        pool_name([name])
    except Invalid as e:
        r.fail(base, name, f"pool folder name: {e}")
        return None
    r.check_known(base, _names("pools/<name>"))
    subnet = r.get(f"{base}/subnet", "pools/<name>/subnet")
    rng = r.get(f"{base}/range", "pools/<name>/range")
    router = r.get(f"{base}/router", "pools/<name>/router")
    dns = r.get(f"{base}/dns", "pools/<name>/dns")
    dom = r.get(f"{base}/domain", "pools/<name>/domain")
    lt = r.get(f"{base}/lease_time", "pools/<name>/lease_time")
    limits = {k: r.get(f"{base}/{k}", f"pools/<name>/{k}") for k in (
        "max_declined_percent", "max_leases_per_relay", "max_leases_per_circuit")}
    times = {k: r.get(f"{base}/{k}", f"pools/<name>/{k}") for k in (
        "min_lease_time", "max_lease_time", "renew_time", "rebind_time")}
    allow = r.get(f"{base}/allow_classes", "pools/<name>/allow_classes")
    deny = r.get(f"{base}/deny_classes", "pools/<name>/deny_classes")
    opts = _options(r, f"{base}/options", "pools/<name>/options/<option>")
    for code, alias, v in ((3, "router", router), (6, "dns", dns), (15, "domain", dom)):
        clash = next((o for o in opts if o.code == code), None)
        if v and clash is not None:
            r.fail(f"{base}/options/{clash.file}", "", f"option {code} is set twice: by "
                   f"{base}/{alias} too; keep one")
    if lt is not None and None not in times.values():
        _check_times(r, base, lt, times)
    alarm = r.get(f"{base}/alarm_percent", "pools/<name>/alarm_percent")
    clear = r.get(f"{base}/alarm_clear_percent", "pools/<name>/alarm_clear_percent")
    shared = r.get(f"{base}/shared_network", "pools/<name>/shared_network")
    if alarm is not None and clear and clear > alarm:
        r.fail(f"{base}/alarm_clear_percent", str(clear), f"must not exceed "
               f"pools/{name}/alarm_percent ({alarm}): the alarm clears below it")
    res: list[tuple[bytes, IPv4Address]] = []
    for f in r.folder(f"{base}/reservations") or ():
        rel = f"{base}/reservations/{f}"
        try:
            mac = mac_filename(f)
        except Invalid as e:
            r.fail(rel, f, str(e))
            continue
        ip = r.get(rel, "pools/<name>/reservations/<mac>")
        if ip is None:
            continue
        if subnet is not None and ip not in subnet:
            r.fail(rel, str(ip), f"reserved address is outside pools/{name}/subnet {subnet}")
            continue
        if any(m == mac for m, _ in res):
            r.fail(rel, f, "the same MAC is reserved twice")
            continue
        res.append((mac, ip))
    if subnet is None or rng is None or None in limits.values() or None in times.values() \
            or allow is None or deny is None:
        return None
    for lo, hi in rng:
        if lo not in subnet or hi not in subnet:
            r.fail(f"{base}/range", f"{lo}-{hi}", f"range must lie inside subnet {subnet}")
            return None
        if lo == subnet.network_address or hi == subnet.broadcast_address:
            if subnet.prefixlen < 31:
                r.fail(f"{base}/range", f"{lo}-{hi}",
                       "range must not include the network or broadcast address")
                return None
    seen: set[IPv4Address] = set()
    for _mac, ip in res:
        if ip in seen:
            r.fail(f"{base}/reservations", str(ip), "two MACs reserve the same address")
        seen.add(ip)
    return PoolConfig(name=name, subnet=subnet, ranges=rng, router=router, dns=dns,
                      domain=dom, lease_time=lt, reservations=tuple(res), **limits,
                      alarm_percent=alarm if alarm is not None else 90,
                      alarm_clear_percent=clear or 0,
                      shared_network=shared if shared != "(none)" else "",
                      **times, allow_classes=allow, deny_classes=deny, options=opts)


def _check_times(r: _Reader, base: str, lt: int, t: dict[str, int]) -> None:
    """min_lease_time <= lease_time <= max_lease_time; T1 < T2 < the lease."""
    lo, hi = t["min_lease_time"] or lt, t["max_lease_time"] or lt
    if lo > lt:
        r.fail(f"{base}/min_lease_time", str(lo), f"must not exceed {base}/lease_time ({lt})")
    if hi < lt:
        r.fail(f"{base}/max_lease_time", str(hi), f"must not be below {base}/lease_time ({lt})")
    t1, t2 = t["renew_time"], t["rebind_time"]
    if t1 and t1 >= lo:
        r.fail(f"{base}/renew_time", str(t1), f"T1 must be below the shortest lease ({lo} s) "
               "(RFC 2131 §4.4.5)")
    if t2 and t2 >= lo:
        r.fail(f"{base}/rebind_time", str(t2), f"T2 must be below the shortest lease ({lo} s)")
    if t1 and t2 and t1 >= t2:
        r.fail(f"{base}/rebind_time", str(t2), f"T2 must be above T1 ({base}/renew_time {t1})")


def _options(r: _Reader, folder: str, key: str) -> tuple[OptionValue, ...]:
    """The option files of one level, each read through dhcp/options.py's table. Two
    files for one code (routers and 3) are refused: which would win is not obvious."""
    out: list[OptionValue] = []
    for f in r.folder(folder) or ():
        rel = f"{folder}/{f}"
        lines = r.get(rel, key)
        if lines is None:
            continue
        try:
            code, data = parse_option_file(f, lines)
        except OptionError as e:
            r.fail(rel, " / ".join(lines), str(e))
            continue
        twin = next((o for o in out if o.code == code), None)
        if twin is not None:
            r.fail(rel, "", f"option {code} ({option_name(code)}) is set twice: by "
                   f"{folder}/{twin.file} too; keep one")
            continue
        out.append(OptionValue(f, code, data))
    return tuple(out)


def _named_folders(r: _Reader, top: str, what: str) -> Iterator[tuple[str, str]]:
    """(name, path) of each well-named folder under `top` (classes/, hosts/) whose files
    are all known; a bad name or a file where the folder should be is reported."""
    for n in r.folder(top) or ():
        rel = f"{top}/{n}"
        try:
            pool_name([n])
        except Invalid as e:
            r.fail(rel, n, f"{what} folder name: {e}")
            continue
        if r.probe(rel).kind is not Kind.DIR:
            r.fail(rel, "", f"must be a folder: each {what} is a folder {top}/<{what}>/")
            continue
        r.check_known(rel, _names(f"{top}/<{what}>"))
        yield n, rel


_CRITERIA = ("vendor_class", "user_class", "circuit_id", "remote_id", "mac_prefix", "relay")


def _classes(r: _Reader) -> tuple[ClassConfig, ...]:
    out = []
    for n, rel in _named_folders(r, "classes", "class"):
        vals = {k: r.get(f"{rel}/{k}", f"classes/<class>/{k}") for k in _CRITERIA}
        opts = _options(r, f"{rel}/options", "classes/<class>/options/<option>")
        if None in vals.values():
            continue
        if not any(vals.values()):
            r.fail(rel, "", "no criterion: a class needs at least one of "
                   + ", ".join(_CRITERIA) + " (else every client is a member)")
            continue
        out.append(ClassConfig(n, **vals, options=opts))
    return tuple(out)


_IDS = ("mac", "client_id", "circuit_id", "remote_id")


def _hosts(r: _Reader, pools: list[PoolConfig]) -> tuple[HostConfig, ...]:
    out: list[HostConfig] = []
    seen_id: dict[tuple[str, Any, Any], str] = {}
    seen_ip: dict[IPv4Address, str] = {}
    for p in pools:
        for mac, ip in p.reservations:
            seen_ip[ip] = f"pools/{p.name}/reservations/{mac.hex(':')}"
    for n, rel in _named_folders(r, "hosts", "host"):
        vals = {k: r.get(f"{rel}/{k}", f"hosts/<host>/{k}") for k in (
            *_IDS, "relay", "address", "hostname")}
        opts = _options(r, f"{rel}/options", "hosts/<host>/options/<option>")
        if None in vals.values():
            continue
        vals = {k: None if isinstance(v, str) and v == "(none)" else v
                for k, v in vals.items()}
        ids = [k for k in _IDS if vals[k] is not None]
        if len(ids) != 1:
            r.fail(rel, ", ".join(ids), "a host is found by exactly one of "
                   + ", ".join(_IDS) + f"; this one has {len(ids)}")
            continue
        kind = ids[0]
        if vals["relay"] is not None and kind not in ("circuit_id", "remote_id"):
            r.fail(f"{rel}/relay", str(vals["relay"]), "only a circuit_id or remote_id "
                   "host is scoped to a relay")
            continue
        ident = (kind, vals[kind], vals["relay"] if kind in ("circuit_id", "remote_id")
                 else None)
        if ident in seen_id:
            r.fail(f"{rel}/{kind}", "", f"the same {kind} as {seen_id[ident]}")
            continue
        seen_id[ident] = rel
        ip = vals["address"]
        if ip is not None:
            if pools and not any(ip in p.subnet for p in pools):
                r.fail(f"{rel}/address", str(ip), "outside every pool's subnet")
                continue
            if ip in seen_ip:
                r.fail(f"{rel}/address", str(ip), f"reserved twice: {seen_ip[ip]} has it too")
                continue
            net = next((p.subnet for p in pools if ip in p.subnet), None)
            if net is not None and net.prefixlen < 31 and \
                    ip in (net.network_address, net.broadcast_address):
                r.fail(f"{rel}/address", str(ip), f"is the network or broadcast address of {net}")
                continue
            seen_ip[ip] = f"{rel}/address"
        out.append(HostConfig(n, **vals, options=opts))
    return tuple(out)


def _check_class_refs(r: _Reader, pools: list[PoolConfig],
                      classes: tuple[ClassConfig, ...]) -> None:
    known = {c.name for c in classes}
    for p in pools:
        for f, names in (("allow_classes", p.allow_classes), ("deny_classes", p.deny_classes)):
            for c in names:
                if c not in known:
                    r.fail(f"pools/{p.name}/{f}", c, f"no class '{c}': there is no folder "
                           f"classes/{c}/ (classes: {', '.join(sorted(known)) or 'none'})")


def _check_pools(r: _Reader, pools: list[PoolConfig]) -> None:
    spans = []
    for p in pools:
        for lo, hi in p.ranges:
            spans.append((int(lo), int(hi), p.name))
    spans.sort()
    for (_a_lo, a_hi, a_name), (b_lo, b_hi, b_name) in itertools.pairwise(spans):
        if b_lo <= a_hi:
            r.fail(f"pools/{b_name}/range", f"{IPv4Address(b_lo)}-{IPv4Address(b_hi)}",
                   f"overlaps a range of pools/{a_name}")
    nets = [(p.subnet, p.name) for p in pools]
    for i, (n1, a) in enumerate(nets):
        for n2, b in nets[i + 1 :]:
            if n1.overlaps(n2):
                r.fail(f"pools/{b}/subnet", str(n2), f"overlaps pools/{a}/subnet {n1}")


def write_value(path: str | os.PathLike[str], value: str, mode: int = 0o644) -> None:
    """Atomic write of one value (temp file + rename), for tools and tests."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, (value.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, p)


def write_tree(root: str | os.PathLike[str], values: dict[str, str]) -> None:
    """Write a whole tree from {relative path: value}; sync/key gets mode 0600."""
    for rel, v in values.items():
        write_value(Path(root) / rel, v, 0o600 if rel == "sync/key" else 0o644)
