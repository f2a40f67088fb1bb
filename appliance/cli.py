"""The command line: run, check-config, status, leases. Parses, formats, nothing else."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from ipaddress import IPv4Address

from appliance import __version__
from appliance.config import tree as config_tree
from appliance.config.model import Config
from appliance.config.schema import KEYS, RELOAD_HELP
from appliance.leases.model import LeaseState
from appliance.runtime import view

EPILOG = """\
The config tree is a directory with one value per file (see docs/config.md and
`dhcp-hotbackup check-config --list-keys`). Every subcommand finds the daemon's
runtime tree (node/run_dir) and lease store (node/state_dir) from that tree, so
several devices can run side by side on one machine with different --config.
"""


def _load(path: str) -> Config:
    try:
        return config_tree.load(path)
    except config_tree.ConfigError as e:
        print(f"dhcp-hotbackup: invalid config tree {path}:", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_run(args: argparse.Namespace) -> int:
    from appliance import daemon
    from appliance.leases.journal import StoreLocked
    from appliance.metrics import journal

    level = getattr(logging, args.log_level.upper())
    # Under systemd: the journal, with each line's ID as a field (docs/metrics.md).
    to_journal = journal.handler() if journal.under_systemd() else None
    if to_journal is not None:
        logging.basicConfig(level=level, format="%(message)s", handlers=[to_journal])
    else:
        logging.basicConfig(
            level=level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        if journal.under_systemd():
            logging.getLogger("dhcp-hotbackup").warning(
                "M004 no journal socket or no python3-systemd: logging to stderr, without "
                "the ID fields")
    cfg = _load(args.config)
    try:
        return daemon.run(cfg)
    except StoreLocked as e:
        print(f"dhcp-hotbackup: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError) as e:
        logging.getLogger("dhcp-hotbackup").error("D099 cannot run: %s", e)
        return 1


def cmd_reload(args: argparse.Namespace) -> int:
    """Validate the tree here, then ask the running daemon to apply it (SIGHUP) and show
    what it did: the same answer as check-config for a bad tree, and nothing sent."""
    import signal

    from appliance.runtime.tree import read_tree

    cfg = _load(args.config)  # exits 2 naming each bad file and value
    run = read_tree(cfg.node.run_dir)
    if not (run and _pid_alive(run)):
        print(f"{cfg.node.name}: not running; nothing to reload (the tree is valid)",
              file=sys.stderr)
        return 3
    before = run.get("config/last_reload", "")
    os.kill(int(run["pid"]), signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = read_tree(cfg.node.run_dir).get("config/last_reload", "")
        if now and now != before:
            res = json.loads(now)
            print(f"{cfg.node.name}: reload {res['result']}")
            for key in ("changed", "restart_needed", "problems"):
                for item in res.get(key, []):
                    print(f"  {key.replace('_', ' ')}: {item}")
            return 0 if res["result"] != "refused" else 2
        time.sleep(0.05)
    print(f"{cfg.node.name}: the daemon did not report the reload within 10 s",
          file=sys.stderr)
    return 1


def cmd_cleanup(args: argparse.Namespace) -> int:
    from appliance import daemon

    cfg = _load(args.config)
    names = ", ".join(i.name for i in cfg.interfaces[:4]) + \
        (f" and {len(cfg.interfaces) - 4} more" if len(cfg.interfaces) > 4 else "")
    try:
        done = daemon.cleanup(cfg)
    except OSError as e:
        print(f"dhcp-hotbackup: cleanup of {names} failed: {e}", file=sys.stderr)
        return 1
    for line in done:
        print(line)
    if not done:
        print(f"{names}: nothing left behind")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.list_keys:
        for k in KEYS:
            default = "(required)" if k.default is None else repr(k.default)
            how = k.reload.value if k.reload is not None else "?"
            how += ",same" if k.agree else ""
            layout = " [one-interface layout]" if k.legacy else ""
            print(f"{k.path:36} {default:24} {how:16} {k.help}{layout}")
        print("\nreload: " + "; ".join(f"{c.value}: {t}" for c, t in RELOAD_HELP.items())
              + "; same: both devices must agree (drift check)")
        return 0
    path = args.dir or args.config
    cfg = _load(path)
    print(f"{path}: ok — node {cfg.node.name}, {_shape(cfg)}, {len(cfg.pools)} pool(s), "
          f"{_size(cfg)} addresses")
    return 0


def _size(cfg: Config) -> int:
    return sum(int(hi) - int(lo) + 1 for p in cfg.pools for lo, hi in p.ranges)


def _shape(cfg: Config) -> str:
    """Interfaces and groups in a line, readable with 200 VLANs."""
    if cfg.legacy or (len(cfg.interfaces) == 1 and len(cfg.groups) <= 1):
        mode = "standalone" if cfg.standalone else f"VRRP vrid {cfg.groups[0].vrrp.vrid}"
        return f"{mode}, interface {cfg.interfaces[0].name}"
    names = [i.name for i in cfg.interfaces]
    shown = ", ".join(names[:4]) + (f", ... {names[-1]}" if len(names) > 4 else "")
    out = f"{len(names)} interfaces ({shown})"
    if cfg.groups:
        out += ", groups " + ", ".join(
            f"{g.name} (vrid {g.vrrp.vrid} on {g.interface}, {len(cfg.bound(g.name))} "
            "interface(s))" for g in cfg.groups)
    alone = sum(1 for i in cfg.interfaces if i.standalone)
    if alone:
        out += f", {alone} standalone"
    return out


def _pid_alive(run: dict[str, str]) -> bool:
    try:
        pid = int(run.get("pid", "0"))
        os.kill(pid, 0)
        return pid > 0
    except (ValueError, ProcessLookupError, PermissionError):
        return False


def cmd_status(args: argparse.Namespace) -> int:
    from appliance.runtime.tree import read_tree

    cfg = _load(args.config)
    run = read_tree(cfg.node.run_dir)
    running = bool(run) and _pid_alive(run)
    if args.json:
        out: dict[str, object] = {"running": running, "node": cfg.node.name}
        for k, v in run.items():
            cur: dict[str, object] = out
            parts = k.split("/")
            for part in parts[:-1]:
                cur = cur.setdefault(part, {})  # type: ignore[assignment]
            cur[parts[-1]] = int(v) if v.lstrip("-").isdigit() else v
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0 if running else 3
    if not running:
        print(f"{cfg.node.name}: not running (runtime tree {cfg.node.run_dir})")
        return 3
    g = run.get
    names = [i.name for i in cfg.interfaces]  # not client_interface: a tree may have many
    many = len(names) > 1 or len(cfg.groups) > 1
    if many:
        print(f"{cfg.node.name}: {g('role', '?')}   pid {g('pid')}   {view.summary(run)}")
    else:
        print(f"{cfg.node.name}: {g('role', '?')}   pid {g('pid')}   interface "
              f"{', '.join(names)}")
    if "vrrp/state" in run:
        print(f"  vrrp      {g('vrrp/state')}  priority {g('vrrp/priority')}  master "
              f"{g('vrrp/master', '-')}")
    if "sync/peer" in run:
        print(f"  sync      peer {g('sync/peer')}  lag {g('sync/lag', '0')}  last_seq "
              f"{g('sync/last_seq', '0')}")
        if g("sync/config_drift"):
            print(f"  DRIFT     {g('sync/config_drift')}")
        if g("sync/clock_skew_ms"):
            alarm = "   ALARM: beyond sync/max_clock_skew_ms" \
                if g("sync/clock_skew_alarm") == "1" else ""
            print(f"  clock     peer {g('sync/clock_skew_ms')} ms from ours (round trip "
                  f"{g('sync/clock_delay_ms', '?')} ms){alarm}")
    if "datapath/attach_mode" in run:
        print(f"  datapath  {g('datapath/attach_mode')}")
    print(f"  leases    {g('leases/active', '0')} active")
    if "store/state" in run:
        err = g("store/error")
        print(f"  store     {g('store/state')}" + (f"  {err}" if err else ""))
        if g("store/damage"):
            print(f"  DAMAGE    {g('store/damage')}")
    for k, v in run.items():
        if k.startswith("alarms/") and v:
            print(f"  ALARM     {k[7:]}: {v}")
    if many:
        # One line per interface, then per group: 200 VLANs read at a glance.
        for line in view.table(run):
            print(line)
    stats = {k[6:]: v for k, v in run.items() if k.startswith("stats/")}
    # DHCP counters always; the sync, VRRP and XDP ones when they are not zero (all of
    # them are in `status --json` and under stats/ in the runtime tree).
    groups = [("dhcp", [k for k in stats if not k.startswith(("sync_", "vrrp_", "xdp_"))]),
              ("sync", [k for k in stats if k.startswith("sync_") and stats[k] != "0"]),
              ("vrrp", [k for k in stats if k.startswith("vrrp_") and stats[k] != "0"]),
              ("xdp", [k for k in stats if k.startswith("xdp_") and stats[k] != "0"])]
    for name, keys in groups:
        if not keys:
            continue
        line = f"  {name:9}"
        for k in keys:
            short = k.split("_", 1)[1] if name != "dhcp" else k
            item = f" {short}={stats[k]}"
            if len(line) + len(item) > 88:
                print(line)
                line = " " * 11
            line += item
        print(line)
    return 0


def lease_json(lease, now: float) -> dict[str, object]:
    from appliance.dhcp.options import circuit_id, remote_id

    d: dict[str, object] = {
        "ip": str(IPv4Address(lease.ip)),
        "mac": lease.mac.hex(":"),
        "client_id": lease.client_id.hex() if lease.client_id is not None else None,
        "state": lease.state.name.lower(),
        "start": lease.start,
        "expires": lease.expires,
        "remaining": max(0, round(lease.expires - now)),
        "hostname": lease.hostname,
        "pool": lease.pool,
        "seq": lease.seq,
        "origin": lease.origin,
    }
    if lease.relay_info is not None:
        try:
            cid, rid = circuit_id(lease.relay_info), remote_id(lease.relay_info)
        except ValueError:
            cid = rid = None
        d["option82"] = {
            "raw": lease.relay_info.hex(),
            "circuit_id": cid.hex() if cid is not None else None,
            "remote_id": rid.hex() if rid is not None else None,
        }
    return d


def cmd_leases(args: argparse.Namespace) -> int:
    from appliance.leases.journal import read_store

    cfg = _load(args.config)
    now = time.time()
    damage: list = []
    leases = sorted(read_store(cfg.node.state_dir, damage=damage).values(),
                    key=lambda x: x.ip)
    for scan in damage:  # read through, as the daemon does at start (journal.py)
        print(f"dhcp-hotbackup: warning: {cfg.node.state_dir}: {scan.describe()} damaged; "
              "the records in those bytes are not shown", file=sys.stderr)
    if not args.all:
        leases = [x for x in leases if x.state == LeaseState.BOUND and x.expires > now]
    where = _lease_places(cfg)
    rows = []
    for x in leases:
        j = lease_json(x, now)
        j["interface"], j["group"] = where(x)
        rows.append(j)
    if args.interface:
        rows = [j for j in rows if j["interface"] == args.interface]
    if args.group is not None:
        rows = [j for j in rows if j["group"] == args.group]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    many = len(cfg.interfaces) > 1 or len(cfg.groups) > 1
    if many:
        print(f"{'interface':12} {'group':8} ", end="")
    print(f"{'address':15} {'mac':17} {'state':8} {'expires in':>10}  {'hostname':16} option82")
    for j in rows:
        if many:
            print(f"{(j['interface'] or '-')[:12]:12} {(j['group'] or '-')[:8]:8} ", end="")
        o82 = j.get("option82")
        o82s = ""
        if isinstance(o82, dict):
            cid = o82.get("circuit_id")
            o82s = f"circuit-id {bytes.fromhex(cid).decode('ascii', 'replace')}" if cid else \
                f"raw {o82['raw']}"
        print(f"{j['ip']:15} {j['mac']:17} {j['state']:8} {j['remaining']:>9}s  "
              f"{(j['hostname'] or '-')[:16]:16} {o82s}")
    print(f"{len(rows)} lease(s)")
    return 0


def _lease_places(cfg: Config):  # type: ignore[no-untyped-def]
    """lease -> (interface, group) it was made for: the interface whose virtual IP (or,
    standalone, whose address in the runtime tree) is in the lease's pool's subnet, and
    of that interface's groups the one its client's RFC 3074 bucket belongs to. ("", "")
    for a relayed pool's lease; a standalone interface's group is ""."""
    from appliance.dhcp.loadbalance import group_of
    from appliance.runtime.tree import read_tree

    run = read_tree(cfg.node.run_dir)
    subnets = {p.name: p.subnet for p in cfg.pools}
    by_pool: dict[str, tuple[str, tuple[str, ...]]] = {}
    for i in cfg.interfaces:
        addrs = [v.ip for v in i.virtual_ips]
        for a in run.get(f"interfaces/{i.name}/server_id", "").split():
            try:
                addrs.append(IPv4Address(a))
            except ValueError:
                continue
        for name, net in subnets.items():
            if name not in by_pool and any(a in net for a in addrs):
                by_pool[name] = (i.name, i.groups)

    def where(lease) -> tuple[str, str]:  # type: ignore[no-untyped-def]
        ifname, groups = by_pool.get(lease.pool or "", ("", ()))
        if not groups:
            return ifname, ""
        return ifname, groups[group_of(lease.mac, len(lease.mac)) if len(groups) > 1 else 0]

    return where


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dhcp-hotbackup",
        description="DHCPv4 server for a hot-backup pair of edge devices (VRRP, session "
                    "replication, XDP datapath).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=config_tree.DEFAULT_ROOT, metavar="DIR",
                        help="config tree (default %(default)s)")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    r = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    r.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("check-config", parents=[common],
                       help="validate a config tree; exit 2 naming each bad file and value")
    c.add_argument("dir", nargs="?", help="tree to check (default: --config)")
    c.add_argument("--list-keys", action="store_true", help="list every setting with its "
                   "default and meaning")
    c.set_defaults(func=cmd_check_config)
    rl = sub.add_parser("reload", parents=[common],
                        help="validate the tree, then have the running daemon apply it live")
    rl.set_defaults(func=cmd_reload)
    k = sub.add_parser("cleanup", parents=[common],
                       help="remove what a crashed daemon left: XDP program, virtual IPs "
                            "(run by the unit after a stop)")
    k.set_defaults(func=cmd_cleanup)
    s = sub.add_parser("status", parents=[common], help="role, VRRP, sync, leases, counters")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    x = sub.add_parser("leases", parents=[common], help="the lease table from the durable store")
    x.add_argument("--json", action="store_true")
    x.add_argument("--all", action="store_true", help="include released, expired, declined")
    x.add_argument("--interface", metavar="IF", help="only the leases made on this interface")
    x.add_argument("--group", metavar="G", help="only the leases of this group's clients")
    x.set_defaults(func=cmd_leases)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
