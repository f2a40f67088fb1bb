"""Reads and validates the sysfs-style config tree into a Config, with precise errors.

Every problem is reported as `<file>: <value>: <rule>`, and all problems are collected
before giving up, so that an operator fixes a broken tree in one round.
"""

from __future__ import annotations

import itertools
import os
import socket
import stat
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from appliance.config.model import (
    Config,
    DatapathConfig,
    NodeConfig,
    PoolConfig,
    SyncConfig,
    VrrpConfig,
)
from appliance.config.schema import KEY_BY_PATH, Invalid, ifname, mac_filename
from appliance.config.schema import name as pool_name

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


def _present(d: Path) -> bool:
    """An optional folder counts only if it holds a setting: an empty vrrp/ or sync/
    (as a package upgrade may leave behind) is the same as none."""
    return d.is_dir() and any(not ignored(e.name) for e in d.iterdir())


def _lines(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        s = raw.strip()
        if s and not s.startswith("#"):
            out.append(s)
    return out


class _Reader:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def fail(self, rel: str, value: str, rule: str) -> None:
        self.problems.append(Problem(str(self.root / rel), value, rule))

    def get(self, rel: str, schema_path: str | None = None) -> Any:
        """Parse one file; the schema default when absent; None (and a problem) if bad."""
        key = KEY_BY_PATH[schema_path or rel]
        f = self.root / rel
        if not f.exists():
            if key.default is None and key.path not in ("pools/<name>/domain",):
                self.fail(rel, "", "missing: this setting is required")
            return key.default
        if not f.is_file():
            self.fail(rel, "", "must be a file holding the value, not a directory")
            return key.default
        try:
            text = f.read_text()
        except (OSError, UnicodeDecodeError) as e:
            self.fail(rel, "", f"cannot read: {e}")
            return key.default
        lines = _lines(text)
        try:
            return key.parse(lines)
        except Invalid as e:
            self.fail(rel, " / ".join(lines), str(e))
            return None

    def check_known(self, folder: str, allowed: set[str]) -> None:
        d = self.root / folder
        if not d.is_dir():
            return
        for entry in sorted(d.iterdir()):
            if ignored(entry.name):
                continue
            if entry.name not in allowed:
                self.fail(f"{folder}/{entry.name}", "", "unknown setting (a typo?); known: "
                          + ", ".join(sorted(allowed)))


def _names(prefix: str) -> set[str]:
    out = set()
    for p in KEY_BY_PATH:
        if p.startswith(prefix + "/"):
            out.add(p[len(prefix) + 1 :].split("/")[0])
    return out


def load(root: str | os.PathLike[str] = DEFAULT_ROOT) -> Config:
    """Read and validate the tree under `root`; raise ConfigError listing every problem."""
    r = _Reader(Path(root))
    if not r.root.is_dir():
        raise ConfigError([Problem(str(r.root), "", "config tree not found (not a directory)")])
    for top in sorted(r.root.iterdir()):
        if top.name not in ("node", "client", "vrrp", "sync", "pools", "datapath") and \
                not ignored(top.name):
            r.fail(top.name, "", "unknown folder; known: node, client, vrrp, sync, pools, "
                   "datapath")

    r.check_known("node", _names("node"))
    node_name = r.get("node/name") if (r.root / "node/name").exists() else None
    if node_name is None:
        node_name = _hostname()
    node = NodeConfig(
        name=node_name,
        state_dir=r.get("node/state_dir"),
        run_dir=r.get("node/run_dir"),
    )
    r.check_known("client", _names("client"))
    client_if = r.get("client/interface")

    vrrp = _vrrp(r) if _present(r.root / "vrrp") else None
    sync = _sync(r) if _present(r.root / "sync") else None

    pools: list[PoolConfig] = []
    pdir = r.root / "pools"
    folders = sorted(d for d in pdir.iterdir() if _present(d) and not ignored(d.name)) \
        if pdir.is_dir() else []
    for d in folders:
        p = _pool(r, d.name)
        if p is not None:
            pools.append(p)
    if not folders:
        r.fail("pools", "", "at least one pool is required (pools/<name>/subnet and range)")
    _check_pools(r, pools)

    r.check_known("datapath", _names("datapath"))
    datapath = DatapathConfig(
        mode=r.get("datapath/mode"),
        rate_limit_pps=r.get("datapath/rate_limit_pps"),
        rate_limit_burst=r.get("datapath/rate_limit_burst"),
    )
    if r.problems:
        raise ConfigError(r.problems)
    return Config(node=node, client_interface=client_if, pools=tuple(pools), vrrp=vrrp,
                  sync=sync, datapath=datapath, source=str(r.root))


def _hostname() -> str:
    h = socket.gethostname().split(".")[0] or "device"
    return h[:63]


def _vrrp(r: _Reader) -> VrrpConfig | None:
    r.check_known("vrrp", _names("vrrp"))
    track: list[tuple[str, int]] = []
    tdir = r.root / "vrrp/track"
    if tdir.is_dir():
        for f in sorted(tdir.iterdir()):
            if ignored(f.name):
                continue
            try:
                ifname([f.name])
            except Invalid as e:
                r.fail(f"vrrp/track/{f.name}", f.name, f"file name: {e}")
                continue
            dec = r.get(f"vrrp/track/{f.name}", "vrrp/track/<ifname>")
            if dec is not None:
                track.append((f.name, dec))
    vals = {k: r.get(f"vrrp/{k}") for k in (
        "vrid", "priority", "advert_interval_ms", "preempt", "preempt_delay_ms", "virtual_ip",
        "use_vmac", "accept", "garp_count", "garp_interval_ms", "garp_repeat_s")}
    if any(v is None for v in vals.values()):
        return None
    return VrrpConfig(
        vrid=vals["vrid"], priority=vals["priority"],
        advert_interval_ms=vals["advert_interval_ms"], preempt=vals["preempt"],
        virtual_ips=vals["virtual_ip"], preempt_delay_ms=vals["preempt_delay_ms"],
        track=tuple(track), use_vmac=vals["use_vmac"], accept=vals["accept"],
        garp_count=vals["garp_count"], garp_interval_ms=vals["garp_interval_ms"],
        garp_repeat_s=vals["garp_repeat_s"],
    )


def _sync(r: _Reader) -> SyncConfig | None:
    r.check_known("sync", _names("sync"))
    keyfile = r.root / "sync/key"
    if keyfile.is_file():
        mode = stat.S_IMODE(keyfile.stat().st_mode)
        if mode & 0o077:
            r.fail("sync/key", f"mode {mode:04o}", "the secret must not be readable by group or "
                   "others: chmod 600")
    vals = {k: r.get(f"sync/{k}") for k in (
        "interface", "local", "peer", "key", "mode", "ack_timeout_ms")}
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
    res: list[tuple[bytes, IPv4Address]] = []
    rdir = r.root / base / "reservations"
    if rdir.is_dir():
        for f in sorted(rdir.iterdir()):
            if ignored(f.name):
                continue
            rel = f"{base}/reservations/{f.name}"
            try:
                mac = mac_filename(f.name)
            except Invalid as e:
                r.fail(rel, f.name, str(e))
                continue
            ip = r.get(rel, "pools/<name>/reservations/<mac>")
            if ip is None:
                continue
            if subnet is not None and ip not in subnet:
                r.fail(rel, str(ip), f"reserved address is outside pools/{name}/subnet {subnet}")
                continue
            if any(m == mac for m, _ in res):
                r.fail(rel, f.name, "the same MAC is reserved twice")
                continue
            res.append((mac, ip))
    if subnet is None or rng is None:
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
                      domain=dom, lease_time=lt, reservations=tuple(res))


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
