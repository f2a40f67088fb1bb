"""VRRP test support: `VrrpLab` (our daemon, keepalived and a stand-alone VrrpService node
on one bridge and on segments of their own, with an observer) and `LanWatch`; and the
stand-alone node itself: VrrpService alone on an asyncio loop, one service per group.

    python -m lab.vrrp_node --interface eth1 --vrid 51 --priority 150 \\
        --advert-ms 100 --vip 192.0.2.1/24 [--track eth2=30] [--preempt 0|1] \\
        [--state-file F] [--gate 0|1] [--vmac 0|1] [--peer 192.0.2.11]
    python -m lab.vrrp_node --groups groups.json [--policy 1] [--state-file F]

`--groups` runs several groups (issue 12), one VrrpService each on one loop (so groups
on one interface share its receive socket), from a JSON list of objects with `name`,
`interface`, `vrid`, `priority`, `vips` and optionally `service_vips` ([[ifname,
"a.b.c.d/n"], ...]), `advert_ms`, `preempt`, `peer`, `track` ({ifname: decrement}),
`use_vmac`, `garp_count`, `garp_interval_ms`, `garp_repeat_s`. `--policy 1` runs the
real pair policy (appliance/pair/policy.py) over them as the daemon will: link events
of every interface bound to a group and the VRRP transitions go in; SetHealth,
TakeOver and SetGate are executed on the services, Serve is recorded (`serving`).

Prints every transition as one JSON line on stdout (flushed), and keeps `--state-file`
current (JSON: state, priority, master, gate, counters, transitions of the first
group, and `groups`: the same per group, with `healthy` and `service_vips`; `serving`):
rewritten by rename on every transition and, when something else changed, every 20 ms.

Signals: SIGTERM/SIGINT stop the services (priority-0 advert, VIPs removed) and exit 0;
SIGUSR1 opens the sync gate, SIGUSR2 closes it; SIGHUP re-reads `--groups` and applies
each group's `service_vips` live (set_service_vips).

The namespace tests and the benchmark run the real daemon (`VrrpLab.start_daemon`, i.e.
`dhcp-hotbackup run` with a vrrp/ folder). The stand-alone node remains for what the
daemon cannot be made to do from outside: close and open the sync gate on demand (the
daemon's gate follows its sync link). Test support only; the product never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from appliance.config.model import VrrpConfig
from appliance.pair import policy as pp
from appliance.runtime.tree import read_tree
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.trees import standalone_tree
from appliance.vrrp.service import GroupSpec, VrrpService, VrrpStartError

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_BIN = os.path.join(os.path.dirname(sys.executable), "dhcp-hotbackup")
DAEMON = _BIN if os.path.exists(_BIN) else (shutil.which("dhcp-hotbackup") or "dhcp-hotbackup")

_REFRESH_S = 0.02


def _track(value: str) -> tuple[str, int]:
    name, _, dec = value.partition("=")
    if not name or not dec:
        raise argparse.ArgumentTypeError(f"--track wants IFNAME=DECREMENT, got {value!r}")
    return name, int(dec)


def _flag(value: str) -> bool:
    if value not in ("0", "1"):
        raise argparse.ArgumentTypeError("0 or 1")
    return value == "1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lab.vrrp_node",
                                description=__doc__.splitlines()[0])
    p.add_argument("--groups", help="JSON list of groups (see the module doc)")
    p.add_argument("--policy", type=_flag, default=False,
                   help="run the pair policy over the groups")
    p.add_argument("--interface")
    p.add_argument("--vrid", type=int)
    p.add_argument("--priority", type=int)
    p.add_argument("--advert-ms", type=int, default=100)
    p.add_argument("--vip", type=IPv4Interface, action="append")
    p.add_argument("--track", type=_track, action="append", default=[])
    p.add_argument("--preempt", type=_flag, default=True)
    p.add_argument("--preempt-delay-ms", type=int, default=0)
    p.add_argument("--gate", type=_flag, default=True, help="initial sync gate")
    p.add_argument("--vmac", type=_flag, default=False)
    p.add_argument("--peer", type=IPv4Address, help="vrrp/peer: drop other sources")
    p.add_argument("--garp-count", type=int, default=5)
    p.add_argument("--garp-interval-ms", type=int, default=0)
    p.add_argument("--garp-repeat-s", type=int, default=5)
    p.add_argument("--state-file")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    if not args.groups and None in (args.interface, args.vrid, args.priority, args.vip):
        p.error("either --groups, or --interface, --vrid, --priority and --vip")
    if args.policy and not args.groups:
        p.error("--policy needs named groups (--groups): the policy's unnamed group is "
                "the standalone interfaces")
    return args


def group_from_json(g: dict[str, Any], garp_defaults: dict[str, int]) -> GroupSpec:
    cfg = VrrpConfig(
        vrid=int(g["vrid"]),
        priority=int(g["priority"]),
        advert_interval_ms=int(g.get("advert_ms", 100)),
        preempt=bool(g.get("preempt", True)),
        virtual_ips=tuple(IPv4Interface(v) for v in g["vips"]),
        preempt_delay_ms=int(g.get("preempt_delay_ms", 0)),
        track=tuple((k, int(v)) for k, v in g.get("track", {}).items()),
        use_vmac=bool(g.get("use_vmac", False)),
        garp_count=int(g.get("garp_count", garp_defaults["garp_count"])),
        garp_interval_ms=int(g.get("garp_interval_ms", garp_defaults["garp_interval_ms"])),
        garp_repeat_s=int(g.get("garp_repeat_s", garp_defaults["garp_repeat_s"])),
        peer=IPv4Address(g["peer"]) if g.get("peer") else None,
    )
    return GroupSpec(str(g["name"]), cfg, str(g["interface"]),
                     tuple((i, IPv4Interface(v)) for i, v in g.get("service_vips", [])))


def read_groups(path: str, args: argparse.Namespace) -> list[GroupSpec]:
    with open(path) as f:
        raw = json.load(f)
    defaults = {"garp_count": args.garp_count, "garp_interval_ms": args.garp_interval_ms,
                "garp_repeat_s": args.garp_repeat_s}
    return [group_from_json(g, defaults) for g in raw]


class Node:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        if args.groups:
            self.specs = read_groups(args.groups, args)
        else:
            self.specs = [GroupSpec("", VrrpConfig(
                vrid=args.vrid,
                priority=args.priority,
                advert_interval_ms=args.advert_ms,
                preempt=args.preempt,
                virtual_ips=tuple(args.vip),
                preempt_delay_ms=args.preempt_delay_ms,
                track=tuple(args.track),
                use_vmac=args.vmac,
                garp_count=args.garp_count,
                garp_interval_ms=args.garp_interval_ms,
                garp_repeat_s=args.garp_repeat_s,
                peer=args.peer,
            ), args.interface)]
        self.cfg = self.specs[0].cfg
        self.transitions: list[dict[str, Any]] = []
        self.services: dict[str, VrrpService] = {}
        self.gate = args.gate
        self.policy: pp.PairPolicy | None = None
        self.serving: set[str] = set()
        self._events: deque[pp.Event] = deque()
        self._busy = False
        self._written: str | None = None
        self._done = asyncio.Event()

    @property
    def service(self) -> VrrpService | None:
        """The first group's service (the single group of the legacy arguments)."""
        return self.services.get(self.specs[0].name)

    @staticmethod
    def bound(spec: GroupSpec) -> tuple[str, ...]:
        """The client interfaces bound to the group: its own and its service ones."""
        return tuple(dict.fromkeys([spec.interface, *(i for i, _ in spec.service_vips)]))

    def on_transition(self, group: str, state: str, info: dict[str, Any]) -> None:
        record = {"t": time.time(), "state": state, **info}
        self.transitions.append(record)
        sys.stdout.write(json.dumps(record, default=str) + "\n")
        sys.stdout.flush()
        if self.policy is not None:
            self.feed(pp.VrrpChanged(group, pp.Vrrp(state), str(info.get("reason", ""))))
        # after the service has finished the transition (VIPs, GARP): file I/O here
        # would delay them, which a daemon's datapath flip does not
        asyncio.get_running_loop().call_soon(self.write_state)

    def on_link(self, ifname: str, up: bool) -> None:
        if self.policy is not None:
            self.feed(pp.LinkChanged(ifname, up))

    def feed(self, event: pp.Event) -> None:
        """One event into the pair policy, its actions executed in order; an event that
        arrives while actions run (a transition caused by TakeOver) waits its turn."""
        assert self.policy is not None
        self._events.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._events:
                now = asyncio.get_running_loop().time()
                for action in self.policy.handle(self._events.popleft(), now):
                    self.execute(action)
        finally:
            self._busy = False

    def execute(self, action: pp.Action) -> None:
        if isinstance(action, pp.SetHealth):
            self.services[action.group].set_health(action.healthy)
        elif isinstance(action, pp.TakeOver):
            self.services[action.group].takeover(action.why)
        elif isinstance(action, pp.SetGate):
            self.set_gate(action.ready)
        elif isinstance(action, pp.Serve):
            (self.serving.add if action.on else self.serving.discard)(action.group)
        elif isinstance(action, pp.Note):
            logging.getLogger("lab.vrrp_node").info("%s %s", action.msg_id, action.text)

    def group_snapshot(self, svc: VrrpService) -> dict[str, Any]:
        return {
            "state": svc.state,
            "priority": svc.priority,
            "master": svc.master,
            "healthy": svc.healthy,
            "service_vips": len(svc.service_vips),
            "counters": svc.counters(),
            "transitions": [t for t in self.transitions if t.get("group") == svc.group],
        }

    def snapshot(self) -> dict[str, Any]:
        svc = self.service
        assert svc is not None
        groups = {name: self.group_snapshot(s) for name, s in self.services.items()}
        return {
            "pid": os.getpid(),
            **{k: v for k, v in groups[svc.group].items() if k != "transitions"},
            "gate": self.gate,
            "transitions": self.transitions,
            "groups": groups,
            "serving": sorted(self.serving),
        }

    def write_state(self) -> None:
        path = self.args.state_file
        if not path or self.service is None:
            return
        text = json.dumps(self.snapshot(), default=str, sort_keys=True)
        if text == self._written:
            return
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        self._written = text

    def set_gate(self, ready: bool) -> None:
        self.gate = ready
        for svc in self.services.values():
            svc.set_gate(ready)
        self.write_state()

    def reload(self) -> None:
        """SIGHUP: each group's service VIPs from the file again, applied live."""
        log = logging.getLogger("lab.vrrp_node")
        if not self.args.groups:
            return
        for spec in read_groups(self.args.groups, self.args):
            svc = self.services.get(spec.name)
            if svc is None:
                continue
            try:
                svc.set_service_vips(spec.service_vips)
            except VrrpStartError as e:
                log.error("reload of group %s refused: %s", spec.name, e)
        self.write_state()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if self.args.policy:
            self.policy = pp.PairPolicy(pp.Layout(
                groups={spec.name: self.bound(spec) for spec in self.specs}))
            for action in self.policy.start(loop.time()):
                self.execute(action)
        for spec in self.specs:
            svc = VrrpService.for_group(
                spec, lambda st, info, g=spec.name: self.on_transition(g, st, info), loop,
                on_link=self.on_link, watch=self.bound(spec))
            svc.set_gate(self.gate)
            self.services[spec.name] = svc
        loop.add_signal_handler(signal.SIGTERM, self._done.set)
        loop.add_signal_handler(signal.SIGINT, self._done.set)
        loop.add_signal_handler(signal.SIGUSR1, self.set_gate, True)
        loop.add_signal_handler(signal.SIGUSR2, self.set_gate, False)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        started: list[VrrpService] = []
        try:
            for svc in self.services.values():
                await svc.start()
                started.append(svc)
        except VrrpStartError as e:
            print(f"vrrp_node: cannot start group {svc.group or '(unnamed)'}: {e}",
                  file=sys.stderr, flush=True)
            for s in started:
                await s.stop()
            return 2
        if self.policy is not None:
            for svc in started:  # the policy learns the links that were down at start
                for ifname, up in svc.links().items():
                    if not up:
                        self.feed(pp.LinkChanged(ifname, False))
        self.write_state()
        while not self._done.is_set():
            try:
                await asyncio.wait_for(self._done.wait(), _REFRESH_S)
            except TimeoutError:
                pass
            self.write_state()
        for svc in self.services.values():
            await svc.stop()
        self.write_state()
        return 0


# -- a lab for tests and benchmarks: our nodes and keepalived on one bridge ------------

KEEPALIVED_CONF = """\
# written by lab.vrrp_node for a test run
global_defs {{
    router_id {router_id}
    vrrp_version 3
    vrrp_garp_master_delay {garp_repeat_s}
}}
vrrp_instance VI_1 {{
    state BACKUP
    interface {interface}
    virtual_router_id {vrid}
    priority {priority}
    advert_int {advert_s}
{preempt}    virtual_ipaddress {{
{vips}
    }}
}}
"""


def keepalived_conf(*, interface: str, vrid: int, priority: int, advert_ms: int,
                    vips: list[str], preempt: bool = True, router_id: str = "ka",
                    garp_repeat_s: int = 5) -> str:
    """A keepalived 2.2.7 VRRPv3 instance equivalent to our node's arguments."""
    return KEEPALIVED_CONF.format(
        router_id=router_id, interface=interface, vrid=vrid, priority=priority,
        advert_s=f"{advert_ms / 1000:g}", garp_repeat_s=garp_repeat_s,
        preempt="" if preempt else "    nopreempt\n",
        vips="\n".join(f"        {v}" for v in vips))


class LanWatch:
    """tcpdump in an observer namespace, collecting with their kernel capture timestamps
    (time.time() clock) the gratuitous ARPs, `garps` [(t, sender_mac, address)], and the
    VRRP adverts, `adverts` [(t, src_ip, priority)]."""

    def __init__(self, topo: Topology, ns: Netns, ifname: str = "eth1") -> None:
        self.garps: list[tuple[float, str, str]] = []
        self.adverts: list[tuple[float, str, int]] = []
        self._cond = threading.Condition()
        self._proc = topo.popen(ns, ["tcpdump", "-i", ifname, "-l", "-n", "-tt", "-e",
                                     "--immediate-mode", "arp or ip proto 112"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._ready = threading.Event()
        threading.Thread(target=self._read_err, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(10):
            raise TimeoutError("tcpdump did not start listening")

    def _read_err(self) -> None:
        for line in self._proc.stderr:
            if b"listening on" in line:
                self._ready.set()

    def _read(self) -> None:
        for raw in self._proc.stdout:
            parts = raw.decode(errors="replace").split()
            if "who-has" in parts:
                self._arp(parts)
            elif "VRRPv3," in parts:
                self._vrrp(parts)

    def _arp(self, parts: list[str]) -> None:
        # 1700000000.123456 02:00:00:00:00:0b > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806),
        #   length 42: Request who-has 192.0.2.100 (ff:ff:ff:ff:ff:ff) tell 192.0.2.100, ...
        # (tcpdump shows "(ff:ff:ff:ff:ff:ff)" after who-has when tha is not zero)
        try:
            i, j = parts.index("who-has"), parts.index("tell")
        except ValueError:
            return
        if j + 1 >= len(parts) or parts[i + 1] != parts[j + 1].rstrip(","):
            return  # an ordinary ARP request, not gratuitous
        with self._cond:
            self.garps.append((float(parts[0]), parts[1], parts[i + 1]))
            self._cond.notify_all()

    def _vrrp(self, parts: list[str]) -> None:
        # 1700000000.123456 02:..:0a > 01:00:5e:00:00:12, ethertype IPv4 (0x0800), length 46:
        #   192.0.2.10 > 224.0.0.18: VRRPv3, Advertisement, vrid 51, prio 150, intvl 10cs, ...
        try:
            src = parts[parts.index("224.0.0.18:") - 2]
            prio = int(parts[parts.index("prio") + 1].rstrip(","))
        except (ValueError, IndexError):
            return
        with self._cond:
            self.adverts.append((float(parts[0]), src, prio))
            self._cond.notify_all()

    def _wait(self, find, what: str, timeout: float) -> float:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = find()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {what}")
                self._cond.wait(left)

    def wait(self, mac: str, after: float, timeout: float = 10.0) -> float:
        """Capture time of the first gratuitous ARP from `mac` later than `after`."""
        return self._wait(
            lambda: next((t for t, m, _ in self.garps if m == mac and t > after), None),
            f"gratuitous ARP from {mac} after {after}", timeout)

    def wait_advert(self, src: str, after: float, timeout: float = 10.0) -> float:
        """Capture time of the first advert from `src` later than `after`."""
        return self._wait(
            lambda: next((t for t, s, _ in self.adverts if s == src and t > after), None),
            f"advert from {src} after {after}", timeout)

    def wait_advert_any(self, srcs: set[str], after: float,
                        timeout: float = 10.0) -> tuple[float, str, int]:
        """The first advert (time, src, priority) from any of `srcs` later than `after`."""
        return self._wait(
            lambda: next((a for a in self.adverts if a[1] in srcs and a[0] > after), None),
            f"advert from {sorted(srcs)} after {after}", timeout)

    def count_adverts(self, src: str, after: float, before: float = float("inf")) -> int:
        with self._cond:
            return sum(1 for t, s, _ in self.adverts if s == src and after < t < before)

    def last_advert(self, src: str, before: float) -> float | None:
        """Capture time of the last advert from `src` earlier than `before`."""
        with self._cond:
            times = [t for t, s, _ in self.adverts if s == src and t < before]
        return max(times) if times else None


class VrrpLab:
    """A bridge with hosts that run our daemon, our stand-alone node or keepalived, and an
    observer namespace.

    Host i gets eth1 = 192.0.2.<10+i>/24 with MAC 02:00:00:00:00:<10+i>; every process
    is started through the Topology (ended by PID) and logs into `workdir`. A daemon host
    `name` has its config tree, lease store and runtime tree under `workdir/name/`.

    Segments (issue 12's VLANs: this kernel has no 802.1Q, so a bridge each):
    `segment(seg, net)` adds one, the observer joins it as `o<seg>`, and
    `join(host, seg, ifname)` gives a host a port named like a VLAN sub-interface
    (`eth1.100`) with the subnet's address 10+i and MAC 02:00:00:<k>:00:<10+i>
    (segment k).
    """

    def __init__(self, topo: Topology, workdir: str, *, vrid: int = 51,
                 advert_ms: int = 100, vip: str = "192.0.2.100/24") -> None:
        self.t = topo
        self.dir = workdir
        self.vrid = vrid
        self.advert_ms = advert_ms
        self.vip = vip
        self.lan = topo.lan()
        self.obs = topo.host("obs")
        topo.attach(self.obs, self.lan, "eth1", "192.0.2.250/24", mac="02:00:00:00:00:fa")
        self.hosts: dict[str, Netns] = {}
        self.ip: dict[str, str] = {}
        self.mac: dict[str, str] = {}
        self.logs: dict[str, str] = {}  # name -> log of its latest process
        self._daemons: set[str] = set()  # hosts whose latest process is our daemon
        self._starts = 0
        self.segments: dict[str, tuple[Netns, str]] = {}  # seg -> (bridge ns, subnet)
        self.seg_mac: dict[tuple[str, str], str] = {}  # (host, ifname) -> MAC

    # -- segments: a bridge per "VLAN" ---------------------------------------------------
    def segment(self, seg: str, net: str) -> Netns:
        """A bridge for segment `seg` (subnet `net`, e.g. 198.51.100.0/26), joined by
        the observer as `o<seg>` with the subnet's sixth address from the top."""
        ns = self.t.lan(f"s{seg}")
        subnet = IPv4Network(net)
        self.segments[seg] = (ns, str(subnet))
        k = len(self.segments)
        self.t.attach(self.obs, ns, f"o{seg}",
                      f"{subnet[subnet.num_addresses - 6]}/{subnet.prefixlen}",
                      mac=f"02:00:00:{k:02x}:00:fa")
        return ns

    def join(self, name: str, seg: str, ifname: str) -> str:
        """Host `name` on segment `seg` as `ifname` with the subnet's address number
        10+i (as on eth1); returns that address."""
        ns, net = self.segments[seg]
        subnet = IPv4Network(net)
        n = int(self.ip[name].rsplit(".", 1)[1])
        k = list(self.segments).index(seg) + 1
        mac = f"02:00:00:{k:02x}:00:{n:02x}"
        self.t.attach(self.hosts[name], ns, ifname, f"{subnet[n]}/{subnet.prefixlen}",
                      mac=mac)
        self.seg_mac[(name, ifname)] = mac
        return str(subnet[n])

    def seg_watch(self, seg: str) -> LanWatch:
        """tcpdump on the observer's port into segment `seg`."""
        return LanWatch(self.t, self.obs, f"o{seg}")

    def addrs(self, name: str, dev: str) -> set[str]:
        """The IPv4 addresses on `dev` in host `name`, as `ip -4 addr` shows them."""
        r = self.t.run(self.hosts[name], ["ip", "-4", "-o", "addr", "show", "dev", dev])
        return {line.split()[3] for line in r.stdout.splitlines() if " inet " in line}

    def host(self, name: str) -> Netns:
        n = 10 + len(self.hosts)
        ns = self.t.host(name)
        self.ip[name] = f"192.0.2.{n}"
        self.mac[name] = f"02:00:00:00:00:{n:02x}"
        self.t.attach(ns, self.lan, "eth1", f"{self.ip[name]}/24", mac=self.mac[name])
        self.hosts[name] = ns
        return ns

    def _log(self, name: str, suffix: str = "") -> str:
        self._starts += 1
        path = os.path.join(self.dir, f"{name}.{self._starts}{suffix}.log")
        self.logs[name] = path
        return path

    # -- our daemon: dhcp-hotbackup run with a vrrp/ folder --------------------------
    def config_dir(self, name: str) -> str:
        return os.path.join(self.dir, name, "etc")

    def run_dir(self, name: str) -> str:
        return os.path.join(self.dir, name, "run")

    def start_daemon(self, name: str, priority: int, *, track: dict[str, int] | None = None,
                     preempt: bool = True, preempt_delay_ms: int = 0,
                     use_vmac: bool = False, garp_repeat_s: int = 5,
                     datapath: str = "off",
                     extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """`dhcp-hotbackup run` on host `name`'s eth1 with the lab's VRID, VIP and advert
        interval. The config tree is written afresh; the lease store (state/) is kept
        across restarts, as on a device; the runtime tree (run/) is removed first, so
        that what `daemon_state` reads comes from this process."""
        root = os.path.join(self.dir, name)
        shutil.rmtree(self.config_dir(name), ignore_errors=True)
        shutil.rmtree(self.run_dir(name), ignore_errors=True)
        values = {
            "vrrp/vrid": str(self.vrid),
            "vrrp/priority": str(priority),
            "vrrp/advert_interval_ms": str(self.advert_ms),
            "vrrp/virtual_ip": self.vip,
            "vrrp/preempt": "1" if preempt else "0",
            "vrrp/preempt_delay_ms": str(preempt_delay_ms),
            "vrrp/use_vmac": "1" if use_vmac else "0",
            "vrrp/garp_repeat_s": str(garp_repeat_s),
            **{f"vrrp/track/{ifname}": str(dec) for ifname, dec in (track or {}).items()},
            **(extra or {}),
        }
        # the pool keeps clear of the hosts (.10-), the VIP (.100) and the observer (.250)
        etc = standalone_tree(root, name=name, interface="eth1", datapath=datapath,
                              ranges="192.0.2.150-192.0.2.199", extra=values)
        with open(self._log(name), "wb") as log:
            p = self.t.popen(self.hosts[name], [DAEMON, "run", "--config", str(etc)],
                             stdout=log, stderr=subprocess.STDOUT)
        self._daemons.add(name)
        return p

    def daemon_state(self, name: str) -> dict[str, Any]:
        """The daemon's runtime tree in the shape `state` returns for a stand-alone node:
        state, priority, master (None when none), counters (stats/vrrp_*), and also pid,
        role, attach_mode, stats (the other stats/*) and last_transition (the parsed
        vrrp/last_transition, or None). {} until the daemon has published vrrp/state.

        The daemon writes one file after another, so a read can fall in the middle of a
        publish (vrrp/state new, stats/ old): the tree is read until two reads agree."""
        run = read_tree(self.run_dir(name))
        for _ in range(10):
            again = read_tree(self.run_dir(name))
            if again == run:
                break
            run = again
        if "vrrp/state" not in run or "vrrp/priority" not in run:
            return {}  # the first publish is still being written (state comes first)
        last = run.get("vrrp/last_transition")
        counters, stats = {}, {}
        for k, v in run.items():
            if k.startswith("stats/vrrp_"):
                counters[k[len("stats/vrrp_"):]] = int(v)
            elif k.startswith("stats/"):
                stats[k[len("stats/"):]] = int(v)
        return {
            "pid": int(run.get("pid") or 0),
            "role": run.get("role"),
            "state": run["vrrp/state"],
            "priority": int(run["vrrp/priority"]),
            "master": run.get("vrrp/master") or None,
            "attach_mode": run.get("datapath/attach_mode"),
            "counters": counters,
            "stats": stats,
            "last_transition": json.loads(last) if last else None,
        }

    def cleanup(self, name: str) -> str:
        """`dhcp-hotbackup cleanup` for host `name`'s tree, in its namespace: stdout."""
        return self.t.run(self.hosts[name],
                          [DAEMON, "cleanup", "--config", self.config_dir(name)]).stdout

    # -- the stand-alone node (VrrpService alone) ------------------------------------
    def state_file(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.json")

    def start_ours(self, name: str, priority: int, *extra: str) -> subprocess.Popen[bytes]:
        """`python -m lab.vrrp_node` on host `name` (see the module doc)."""
        path = self.state_file(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        cmd = [sys.executable, "-m", "lab.vrrp_node", "--interface", "eth1",
               "--vrid", str(self.vrid), "--priority", str(priority),
               "--advert-ms", str(self.advert_ms), "--vip", self.vip,
               "--state-file", path, "--log-level", "INFO", *extra]
        with open(self._log(name), "wb") as log:
            p = self.t.popen(self.hosts[name], cmd, stdout=log, stderr=subprocess.STDOUT,
                             cwd=_REPO)
        self._daemons.discard(name)
        return p

    def start_groups(self, name: str, groups: list[dict[str, Any]], *,
                     policy: bool = False, extra: tuple[str, ...] = ()
                     ) -> subprocess.Popen[bytes]:
        """`python -m lab.vrrp_node --groups` on host `name`: one VrrpService per group
        of `groups` (the JSON objects of the module doc), the pair policy over them
        with `policy`. The groups file is `groups_file(name)`: rewrite it and send
        SIGHUP to change the service VIPs live."""
        path = self.state_file(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with open(self.groups_file(name), "w") as f:
            json.dump(groups, f, indent=1)
        cmd = [sys.executable, "-m", "lab.vrrp_node", "--groups", self.groups_file(name),
               "--policy", "1" if policy else "0", "--state-file", path,
               "--log-level", "INFO", *extra]
        with open(self._log(name), "wb") as log:
            p = self.t.popen(self.hosts[name], cmd, stdout=log, stderr=subprocess.STDOUT,
                             cwd=_REPO)
        self._daemons.discard(name)
        return p

    def groups_file(self, name: str) -> str:
        return os.path.join(self.dir, f"{name}.groups.json")

    def group_state(self, name: str, group: str) -> dict[str, Any]:
        """One group's part of a node's state ({} before it is published)."""
        return self.state(name).get("groups", {}).get(group, {})

    def wait_group(self, name: str, group: str, state: str, timeout: float = 10.0,
                   **fields: object) -> dict[str, Any]:
        """Wait until group `group` on host `name` is in `state` with these fields."""
        def ok() -> bool:
            g = self.group_state(name, group)
            return g.get("state") == state and all(g.get(k) == v for k, v in fields.items())
        try:
            wait_for(ok, timeout, what=f"{name} group {group} {state} {fields or ''}")
        except TimeoutError as e:
            g = {k: v for k, v in self.group_state(name, group).items()
                 if k not in ("counters", "transitions")}
            raise AssertionError(f"{e}; it published {g}") from None
        return self.group_state(name, group)

    # -- keepalived --------------------------------------------------------------------
    def start_keepalived(self, name: str, priority: int, *, preempt: bool = True,
                         garp_repeat_s: int = 5, advert_ms: int | None = None,
                         interface: str = "eth1", vrid: int | None = None,
                         vips: list[str] | None = None) -> subprocess.Popen[bytes]:
        """keepalived on host `name`; `advert_ms`, `vrid` and `vips` override the lab's
        (a group's peer on a segment: its `interface`, VRID and VIPs)."""
        log = self._log(name, ".ka")
        base = log[:-len(".log")]
        with open(f"{base}.conf", "w") as f:
            f.write(keepalived_conf(interface=interface, vrid=vrid or self.vrid,
                                    priority=priority,
                                    advert_ms=advert_ms or self.advert_ms,
                                    vips=vips or [self.vip],
                                    preempt=preempt, router_id=name,
                                    garp_repeat_s=garp_repeat_s))
        with open(log, "wb") as out:
            p = self.t.popen(self.hosts[name],
                             ["keepalived", "-n", "-l", "-D", "-P", "-f", f"{base}.conf",
                              "-p", f"{base}.pid", "-r", f"{base}.vrrp.pid"],
                             stdout=out, stderr=subprocess.STDOUT)
        self._daemons.discard(name)
        return p

    # -- what the tests look at --------------------------------------------------------
    def state(self, name: str) -> dict[str, Any]:
        """The latest process's published state on host `name` ({} before there is
        any): the daemon's runtime tree or the stand-alone node's state file."""
        if name in self._daemons:
            return self.daemon_state(name)
        try:
            with open(self.state_file(name)) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def in_state(self, name: str, state: str, **fields: object) -> bool:
        """Host `name` is in VRRP `state` with these fields (master=, priority=, ...); for
        a daemon also its role is the one that state implies (active exactly when
        master, standby otherwise) and its last transition was into that state."""
        s = self.state(name)
        if s.get("state") != state or any(s.get(k) != v for k, v in fields.items()):
            return False
        if name not in self._daemons:
            return True
        last = s.get("last_transition") or {}
        return s.get("role") == ("active" if state == "master" else "standby") \
            and last.get("state") == state

    def wait_state(self, name: str, state: str, timeout: float = 10.0,
                   **fields: object) -> dict[str, Any]:
        """Wait for `in_state`; on timeout, fail showing what was last published."""
        try:
            wait_for(lambda: self.in_state(name, state, **fields), timeout,
                     what=f"{name} {state} {fields or ''}")
        except TimeoutError as e:
            s = {k: v for k, v in self.state(name).items() if k not in ("stats",)}
            raise AssertionError(f"{e}; {name} published {s}") from None
        return self.state(name)

    def has_vip(self, name: str, dev: str = "eth1") -> bool:
        r = self.t.run(self.hosts[name], ["ip", "-4", "-o", "addr", "show", "dev", dev],
                       check=False)
        return f" {self.vip.split('/')[0]}/" in r.stdout

    def arp_watch(self) -> LanWatch:
        return LanWatch(self.t, self.obs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(Node(args).run())


if __name__ == "__main__":
    sys.exit(main())
