"""Two devices on several VLANs, each VLAN its own bridge: the load-sharing lab.

This kernel has no 802.1Q devices and no VLAN-filtering bridge, so each VLAN is a
bridge of its own in one "switch" namespace, and each device has a veth port into it
named like the VLAN sub-interface it stands for (eth1.100):

    switch ns: br100 ─┬─ a     eth1.100  192.0.2.2    ┐
                      ├─ b     eth1.100  192.0.2.3    │ VIPs 192.0.2.1 (and .254 for a
                      ├─ load  eth0.100  192.0.2.5 + 198.18.0.1/16 (relay address;
                      │        sends to 192.0.2.250, held by both devices, at ff:ff:..)
                      └─ client namespaces (eth0)     ┘ second group on the same LAN)
               br200 ─┬─ a     eth1.200  203.0.113.2
                      ├─ b     eth1.200  203.0.113.3     VIPs 203.0.113.1 (and .254)
                      ├─ load  eth0.200  203.0.113.5 + 198.19.0.1/16
                      └─ client namespaces
    a eth2 198.51.100.1 ══ b eth2 198.51.100.2   the sync link (veth)

Shapes of the pair over those VLANs: `vlan` -- load-sharing by VLAN, one group
per VLAN, A master of the first VLAN's group, B of the second's (every other one with
more); `halves` -- two groups, ga for the first half of the VLANs (A master) and gb for
the rest (B master), Huawei's mVRRP shape; `bucket` -- two groups
on every VLAN, clients split by the RFC 3074 hash, A master of `ga`, B of `gb`;
`standby` -- one group for every VLAN, A master, B hot standby. Device trees are the
interfaces/ layout (appliance.testing.trees.interfaces_tree). Everything belongs to a
Topology: processes ended by PID and namespaces removed, even on failure. Test and
bench support only; the product never imports it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Network
from pathlib import Path

from appliance.testing.daemonfiles import runtime_value
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.trees import interfaces_tree

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv/bin/dhcp-hotbackup")
SYNC_A, SYNC_B, SYNC_PORT = "198.51.100.1", "198.51.100.2", 6470
KEY = "lab-vlans-key-0123456789abcdef0123"
SHAPES = ("vlan", "halves", "bucket", "standby")
# The daemon's datapath flip: "D030 group <g> active (...)" with several groups,
# "D030 role active (...)" with one (appliance/daemon.py); asctime is local time, ms.
D030 = re.compile(r"^(\S+ \S+) INFO \S+: D030 (?:group (\S+)|role) active")


@dataclass(frozen=True)
class Vlan:
    """One client VLAN: its id, the client subnet on it, and the load relay's subnet
    (RFC 2544's 198.18.0.0/15, one /16 per VLAN) that dhcpload or perfdhcp plays (none
    in a lab of more than two VLANs)."""
    vid: int
    net: IPv4Network
    load_net: IPv4Network | None = None

    @property
    def ifname(self) -> str:
        return f"eth1.{self.vid}"

    def host(self, n: int) -> str:
        return str(self.net[n])

    @property
    def vip(self) -> str:  # the first group's virtual IP here: the server identifier
        return self.host(1)

    @property
    def vip2(self) -> str:  # the second group's on a VLAN shared by two (RFC 3074)
        return self.host(254)

    @property
    def relay_target(self) -> str:  # where the load's relay sends: both devices
        return self.host(250)

    @property
    def load_relay(self) -> str:
        assert self.load_net is not None
        return str(self.load_net[1])

    @property
    def lan_range(self) -> str:
        return f"{self.net[100]}-{self.net[199]}"

    @property
    def load_range(self) -> str:
        assert self.load_net is not None
        return f"{self.load_net[256]}-{self.load_net[-2]}"


def vlans(n: int = 2) -> list[Vlan]:
    """The lab's `n` VLANs: up to two, 100 on 192.0.2.0/24 and 200 on 203.0.113.0/24,
    each with a load relay /16; more (up to 512), VLANs 100, 101, ... on the /24s of
    198.18.0.0/15 (RFC 2544), with no load relay."""
    if n <= 2:
        plan = [Vlan(100, IPv4Network("192.0.2.0/24"), IPv4Network("198.18.0.0/16")),
                Vlan(200, IPv4Network("203.0.113.0/24"), IPv4Network("198.19.0.0/16"))]
        return plan[:max(n, 1)]
    nets = list(IPv4Network("198.18.0.0/15").subnets(new_prefix=24))
    if n > len(nets):
        raise ValueError(f"{n} VLANs: this lab has addresses for {len(nets)}")
    return [Vlan(100 + i, net) for i, net in enumerate(nets[:n])]


def groups_of(shape: str, vl: list[Vlan]) -> dict[str, list[tuple[str, str]]]:
    """interfaces/<if>/{group,virtual_ip} of a shape: ifname -> [(group, VIP/prefix)]."""
    if shape == "vlan":
        return {v.ifname: [(f"g{v.vid}", f"{v.vip}/24")] for v in vl}
    if shape == "halves":
        return {v.ifname: [("ga" if i < (len(vl) + 1) // 2 else "gb", f"{v.vip}/24")]
                for i, v in enumerate(vl)}
    if shape == "bucket":
        return {v.ifname: [("ga", f"{v.vip}/24"), ("gb", f"{v.vip2}/24")] for v in vl}
    if shape == "standby":
        return {v.ifname: [("g", f"{v.vip}/24")] for v in vl}
    raise ValueError(shape)


def masters(shape: str, vl: list[Vlan]) -> dict[str, str]:
    """group -> the device that is its master while both run (priority 200 vs 100)."""
    if shape == "vlan":
        return {f"g{v.vid}": "A" if i % 2 == 0 else "B" for i, v in enumerate(vl)}
    if shape in ("bucket", "halves"):
        return {"ga": "A", "gb": "B"} if shape == "bucket" or len(vl) > 1 else {"ga": "A"}
    return {"g": "A"}


class Device:
    """One of the pair's daemons: its tree, process and runtime tree."""

    def __init__(self, lab: VlanLab, name: str, ns: Netns, sync_local: str,
                 sync_peer: str) -> None:
        self.lab, self.name, self.ns = lab, name, ns
        self.sync_local, self.sync_peer = sync_local, sync_peer
        self.root = lab.work / name
        self.run_dir = self.root / "run"
        self._run_mounted = False
        self.etc: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    def write_tree(self, shape: str, lease_time: int = 3600, datapath: str = "off",
                   advert_ms: int = 100, sync_mode: str = "sync") -> Path:
        vl = self.lab.vlans
        prio = {g: "200" if m == self.name else "100" for g, m in masters(shape, vl).items()}
        vrid = {g: str(10 + i) for i, g in enumerate(sorted(prio))}
        pools: dict[str, tuple[str, str]] = {}
        for v in vl:
            pools[f"v{v.vid}"] = (str(v.net), v.lan_range)
            if v.load_net is not None:
                pools[f"load{v.vid}"] = (str(v.load_net), v.load_range)
        extra = {"sync/interface": "eth2", "sync/local": f"{self.sync_local}:{SYNC_PORT}",
                 "sync/peer": f"{self.sync_peer}:{SYNC_PORT}", "sync/key": KEY,
                 "sync/mode": sync_mode}
        for v in vl:
            extra[f"pools/v{v.vid}/router"] = v.vip
        if datapath == "xdp":
            # The load generators are thousands of new MACs a second: the kernel's
            # per-client and new-client budgets would shed them (docs/datapath.md).
            extra.update({"datapath/rate_limit_pps": "0", "datapath/new_client_pps": "0"})
        self.etc = interfaces_tree(
            self.root, name=f"device{self.name}", interfaces=groups_of(shape, vl),
            groups={g: {"vrid": vrid[g], "priority": prio[g],
                        "advert_interval_ms": str(advert_ms)} for g in prio},
            pools=pools, lease_time=lease_time, extra=extra, datapath=datapath)
        return self.etc

    def start(self, timeout: float = 60) -> None:
        assert self.etc is not None, "write_tree first"
        if not self._run_mounted:
            # On tmpfs, as /run is on the appliance. On this machine's ext4 a rename over
            # a runtime file forces writeback, and a daemon killed in the middle of the
            # 200 interfaces' rewrite dies only when that I/O is done: its sync
            # connection closed up to 130 ms after the kill (bench/vlan_takeover.py
            # --keep showed B acting within 1 ms of the EOF, the EOF late).
            self.lab.t.tmpfs(self.run_dir, size_mb=64)
            self._run_mounted = True
        log = open(self.root / "daemon.log", "ab")
        self.proc = p = self.lab.t.popen(self.ns, [CLI, "run", "--config", str(self.etc)],
                                         stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.value("pid") == str(p.pid) or p.poll() is not None,
                 timeout, what=f"{self.name} start")
        if p.poll() is not None:
            raise RuntimeError(f"device {self.name} exited; log:\n{self.log_tail()}")

    def kill9(self, cleanup: bool = True) -> float:
        """kill -9 the daemon; returns the time the signal was sent (time.time()). Then,
        as the systemd unit's ExecStopPost does, `dhcp-hotbackup cleanup` (unless
        `cleanup` is False): without it the dead box's kernel keeps the VIPs and answers
        ARP. Without cleanup it returns at once: the kernel takes some 60 ms more to tear
        the process down (its XDP program and maps, its sockets), long after its sync
        connection closed, and the peer acts on that first."""
        sent = time.time()
        if self.proc is not None and self.proc.poll() is None:
            sent = time.time()
            os.kill(self.proc.pid, signal.SIGKILL)
        if cleanup:
            self.cleanup()
        return sent

    def cleanup(self) -> None:
        """`dhcp-hotbackup cleanup`: what a crashed daemon left (VIPs, XDP) removed,
        once it is gone."""
        if self.proc is not None:
            self.proc.wait(5)
        self.lab.t.run(self.ns, [CLI, "cleanup", "--config", str(self.etc)], timeout=120)

    def stop(self) -> None:
        if self.proc is not None:
            self.lab.t.stop(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def value(self, rel: str) -> str:
        return runtime_value(self.run_dir, rel) or ""

    def status(self) -> dict:
        """`dhcp-hotbackup status --json`: the per-group and per-interface view."""
        r = subprocess.run([CLI, "status", "--json", "--config", str(self.etc)],
                           capture_output=True, text=True, timeout=30)
        try:
            return json.loads(r.stdout)
        except json.JSONDecodeError:
            return {}

    def status_text(self) -> str:
        return subprocess.run([CLI, "status", "--config", str(self.etc)],
                              capture_output=True, text=True, timeout=30).stdout

    def leases_text(self) -> str:
        return subprocess.run([CLI, "leases", "--config", str(self.etc)],
                              capture_output=True, text=True, timeout=30).stdout

    def bindings(self) -> dict[str, str]:
        out = subprocess.run([CLI, "leases", "--json", "--config", str(self.etc)],
                             capture_output=True, text=True, timeout=30).stdout
        return {x["mac"]: x["ip"] for x in json.loads(out or "[]")}

    def served_at(self, groups: set[str], since: float) -> dict[str, float]:
        """group -> wall time (time.time()) of the last "D030 ... active" line for it in
        the daemon's log at or after `since`: when its datapath started serving it."""
        out: dict[str, float] = {}
        try:
            text = (self.root / "daemon.log").read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            m = D030.match(line)
            if m and (m.group(2) in groups or (m.group(2) is None and len(groups) == 1)):
                t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if t >= since - 0.002:  # the log's ms resolution
                    out[m.group(2) or next(iter(groups))] = t
        return out

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = (self.root / "daemon.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


class VlanLab:
    """The namespaces of the module docstring: a switch with one bridge per VLAN, the
    two devices, the sync link, and (load=True) a load namespace on every VLAN."""

    def __init__(self, t: Topology, work: Path, n_vlans: int = 2, load: bool = False) -> None:
        self.t, self.work = t, work
        self.vlans = vlans(n_vlans)
        self.switch = t.host("sw")
        self.na, self.nb = t.host("deviceA"), t.host("deviceB")
        self.load: Netns | None = t.host("load") if load else None
        self._ports = 0
        self._bridges_and_ports()
        for v in self.vlans:
            if self.load is not None:
                if v.load_net is None:
                    raise ValueError("a load namespace needs a lab of at most two VLANs")
                ifn = f"eth0.{v.vid}"
                self.port(self.load, v, ifn, f"{v.host(5)}/24")
                t.addr(self.load, ifn, f"{v.load_relay}/16")
                for ns in (self.na, self.nb):
                    t.run(ns, ["ip", "route", "add", str(v.load_net), "via", v.host(5)])
                    # Both devices hold the relay target, and the load namespace
                    # reaches it at the Ethernet broadcast address: one frame reaches
                    # both devices, as a relay configured with both servers sends one
                    # copy to each (perfdhcp has one server address and does not set
                    # SO_BROADCAST). Our UDP socket needs the address held; so do Kea's
                    # raw sockets, whose filter takes a unicast to an address of its
                    # interface only (Kea then warns DHCPSRV_MULTIPLE_RAW_SOCKETS_PER_IFACE,
                    # which concerns broadcasts: the load sends none).
                    t.addr(ns, v.ifname, f"{v.relay_target}/32")
                t.run(self.load, ["ip", "neigh", "replace", v.relay_target, "lladdr",
                                  "ff:ff:ff:ff:ff:ff", "dev", ifn, "nud", "permanent"])
        t.veth(self.na, "eth2", self.nb, "eth2")
        t.addr(self.na, "eth2", f"{SYNC_A}/24")
        t.addr(self.nb, "eth2", f"{SYNC_B}/24")
        self.a = Device(self, "A", self.na, SYNC_A, SYNC_B)
        self.b = Device(self, "B", self.nb, SYNC_B, SYNC_A)

    def _bridges_and_ports(self) -> None:
        """A bridge per VLAN in the switch and each device's port into it, in three
        `ip -batch` runs (200 VLANs are 1,400 commands: one process each would take a
        minute here)."""
        root, sw, dev = [], [], {self.na.name: [], self.nb.name: []}
        for v in self.vlans:
            # No multicast snooping: VRRP adverts and DHCP broadcasts reach every port.
            sw += [f"link add br{v.vid} type bridge forward_delay 0 mcast_snooping 0",
                   f"link set br{v.vid} up"]
            for ns, n in ((self.na, 2), (self.nb, 3)):
                self._ports += 1
                port = f"v{v.vid}p{self._ports}"
                root.append(f"link add name {v.ifname} netns {ns.name} type veth "
                            f"peer name {port} netns {self.switch.name}")
                sw += [f"link set {port} master br{v.vid}", f"link set {port} up"]
                dev[ns.name] += [f"link set {v.ifname} up",
                                 f"addr add {v.host(n)}/24 dev {v.ifname}"]
                ns.ifaces.append(v.ifname)
        _batch(None, root)
        _batch(self.switch.name, sw)
        for ns_name, cmds in dev.items():
            _batch(ns_name, cmds)

    def port(self, ns: Netns, v: Vlan, ifname: str, cidr: str | None = None,
             mac: str | None = None) -> None:
        """A veth from `ns` (named `ifname`) into VLAN `v`'s bridge."""
        self._ports += 1
        sw = f"v{v.vid}p{self._ports}"
        self.t.veth(ns, ifname, self.switch, sw)
        self.t.run(self.switch, ["ip", "link", "set", sw, "master", f"br{v.vid}"])
        if mac:
            self.t.run(ns, ["ip", "link", "set", ifname, "address", mac])
        if cidr:
            self.t.addr(ns, ifname, cidr)

    def client(self, name: str, v: Vlan) -> Netns:
        """A client namespace with eth0 on VLAN `v` (no address: DHCP gives it one)."""
        ns = self.t.host(name)
        self.port(ns, v, "eth0")
        return ns

    def start_pair(self, shape: str, **tree: object) -> None:
        """Both daemons in `shape`; returns once every group has its intended master
        and the sync link is up both ways."""
        for d in (self.a, self.b):
            d.write_tree(shape, **tree)  # type: ignore[arg-type]
        self.a.start()
        self.b.start()
        want = masters(shape, self.vlans)
        wait_for(lambda: self.settled(want), 60, what=f"pair settled in shape {shape}")

    def settled(self, want: dict[str, str]) -> bool:
        """Every group of `want` (group -> device) served by that device only, and each
        device's sync peer connected."""
        if any(d.value("sync/peer") != "connected" for d in (self.a, self.b)):
            return False
        return all(self.serving(g) == {m} for g, m in want.items())

    def serving(self, group: str) -> set[str]:
        """The devices whose runtime tree says they serve `group` now."""
        return {d.name for d in (self.a, self.b) if d.alive() and group_served(d, group)}


def group_served(d: Device, group: str) -> bool:
    """Whether device `d` serves `group` now, from its runtime tree (groups/<g>/role)."""
    return d.value(f"groups/{group}/role") == "active"


def _batch(ns: str | None, cmds: list[str]) -> None:
    """`ip [-n ns] -batch -` of `cmds`, one per line; raises with ip's message."""
    args = ["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"]
    r = subprocess.run(args, input="\n".join(cmds) + "\n", capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip -batch in {ns or 'the root namespace'}: {r.stderr.strip()}")
