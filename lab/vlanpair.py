"""Two real daemons serving many client VLANs in load-sharing hot backup.

This kernel has no 802.1Q devices, so each VLAN is a bridge of its own and each device
a veth port into it named like a VLAN sub-interface (DESIGN.md):

    v100 bridge ─┬─ a  eth1.100 192.0.2.2    VIP 192.0.2.1    (g100: A 200, B 100)
                 ├─ b  eth1.100 192.0.2.3
                 └─ client namespaces
    v200 bridge ─┬─ a  eth1.200 198.51.100.2 VIP 198.51.100.1 (g200: A 100, B 200)
                 ├─ b  eth1.200 198.51.100.3
                 └─ client namespaces
    a eth2 203.0.113.1 ══ veth ══ b eth2 203.0.113.2   (the sync link)

With more than two VLANs the subnets are /24s of 198.18.0.0/15 (RFC 2544), VLAN i's
being 198.18.0.0/15's i-th. `shared=True` is the other load-sharing shape: one LAN
(eth1, 192.0.2.0/24) bound to two groups, ga (VIP .1, A master) and gb (VIP .254, B
master), clients split between them by the RFC 3074 hash.

    with Topology("vl") as t:
        vp = VlanPair(t, tmp_path, {100: "g100", 200: "g200"})  # A masters g100, B g200
        vp.start()                          # both up, each group served by its master
        ns, mac = vp.client(100, "c1")      # a client namespace on VLAN 100
        vp.a.kill9()                        # crash (and the unit's cleanup)
        vp.wait_served({"g100": vp.b, "g200": vp.b})
        vp.a.link("eth1.100", False)        # A's client link of VLAN 100 down

Every process is ended by its PID and every namespace deleted by the Topology. Test
and bench support; the product never imports it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network
from pathlib import Path

from pyroute2 import IPRoute

from appliance.testing.daemonfiles import CLI
from appliance.testing.netns import Netns, Topology, inside, wait_for
from appliance.testing.trees import interfaces_tree
from lab.daemon import LabDaemon

SYNC_A, SYNC_B, SYNC_PORT = "203.0.113.1", "203.0.113.2", 6470
KEY = "0123456789abcdef0123456789abcdef"
HIGH, LOW = 200, 100  # the priority of a group's master and of its backup
SHARED_GROUPS = ("ga", "gb")


def subnets(n: int) -> list[IPv4Network]:
    """The client subnets of n VLANs: documentation ranges for up to two, else /24s of
    198.18.0.0/15 (at most 512)."""
    if n <= 2:
        return [IPv4Network("192.0.2.0/24"), IPv4Network("198.51.100.0/24")][:n]
    nets = list(IPv4Network("198.18.0.0/15").subnets(new_prefix=24))
    if n > len(nets):
        raise ValueError(f"{n} VLANs: at most {len(nets)}")
    return nets[:n]


class VlanDevice(LabDaemon):
    """One daemon: namespace, config tree, runtime tree, process, log."""

    STOP_TIMEOUT = 60.0

    def __init__(self, t: Topology, root: Path, name: str, ns: Netns, etc: Path) -> None:
        self.t, self.name, self.ns, self.etc = t, name, ns, etc
        self.root = Path(root)
        self.run_dir = t.tmpfs(self.root / "run")  # /run is tmpfs on the appliance
        self.log = self.root / "daemon.log"
        super().__init__()

    def link(self, ifname: str, up: bool) -> float:
        """An interface of the device up or down; returns when done (monotonic)."""
        with inside(self.ns):
            ipr = IPRoute()
        try:
            ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0],
                     state="up" if up else "down")
            return time.monotonic()
        finally:
            ipr.close()

    # -- the runtime tree --------------------------------------------------------------
    def group_role(self, group: str) -> str | None:
        """groups/<g>/role: active | standby."""
        return self.value(f"groups/{group}/role")

    def group_vrrp(self, group: str) -> str | None:
        return self.value(f"groups/{group}/vrrp_state")

    def serves(self, group: str) -> bool:
        """This process serves `group` (active and VRRP master)."""
        return (self.running() and self.current() and self.group_role(group) == "active"
                and self.group_vrrp(group) == "master")

    def in_sync(self) -> bool:
        return self.value("sync/peer") == "connected"

    def describe(self) -> str:
        groups = sorted(p.name for p in (self.run_dir / "groups").glob("*")) \
            if (self.run_dir / "groups").is_dir() else []
        return (f"{self.name}: running={self.running()} sync={self.value('sync/peer')} "
                + " ".join(f"{g}={self.group_role(g)}/{self.group_vrrp(g)}" for g in groups))

    def status(self, *args: str) -> str:
        r = subprocess.run([CLI, "status", "--config", str(self.etc), *args],
                           capture_output=True, text=True, timeout=60)
        return r.stdout

    def leases(self, all: bool = False) -> list[dict]:
        import json

        cmd = [CLI, "leases", "--json", "--config", str(self.etc), *(["--all"] if all else [])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}"
        return json.loads(r.stdout)

    def bindings(self) -> dict[str, str]:
        """mac -> ip of every bound lease."""
        return {x["mac"]: x["ip"] for x in self.leases()}


class VlanPair:
    """Devices `a` and `b`; `vlans` maps each VLAN id to its group (a VLAN's interface
    is eth1.<vid>); `masters` maps a group to the device ("a" or "b") with the higher
    priority (default: alternating in group name order, A first). `shared`: instead,
    one LAN (eth1) shared by groups ga (A) and gb (B). `values` goes into both trees."""

    def __init__(self, t: Topology, root: Path, vlans: Mapping[int, str] | None = None, *,
                 masters: Mapping[str, str] | None = None, shared: bool = False,
                 advert_ms: int = 100, datapath: str = "xdp", lease_time: int = 3600,
                 values: Mapping[str, str] | None = None) -> None:
        self.t, self.root = t, Path(root)
        self.shared = shared
        self.vlans: dict[int, str] = dict(vlans or ({} if shared else {100: "g100",
                                                                        200: "g200"}))
        groups = list(SHARED_GROUPS) if shared else sorted(set(self.vlans.values()))
        self.masters = dict(masters or {g: "ab"[n % 2] for n, g in enumerate(groups)})
        na, nb = t.host("a"), t.host("b")
        self.lans: dict[int, Netns] = {}
        self.nets: dict[int, IPv4Network] = {}
        self.ifnames: dict[int, str] = {}
        ifs_a: dict[str, list[tuple[str, str]]] = {}
        ifs_b: dict[str, list[tuple[str, str]]] = {}
        if shared:
            net = IPv4Network("192.0.2.0/24")
            self.nets[0], self.ifnames[0] = net, "eth1"
            self.lans[0] = lan = t.lan("lan")
            t.attach(na, lan, "eth1", f"{net[2]}/24")
            t.attach(nb, lan, "eth1", f"{net[3]}/24")
            bound = [("ga", f"{net[1]}/24"), ("gb", f"{net[254]}/24")]
            ifs_a["eth1"] = ifs_b["eth1"] = bound
        else:
            for (vid, group), net in zip(sorted(self.vlans.items()), subnets(len(self.vlans)),
                                         strict=True):
                ifname = f"eth1.{vid}"
                self.nets[vid], self.ifnames[vid] = net, ifname
                self.lans[vid] = lan = t.lan(f"v{vid}")
                t.attach(na, lan, ifname, f"{net[2]}/24")
                t.attach(nb, lan, ifname, f"{net[3]}/24")
                ifs_a[ifname] = ifs_b[ifname] = [(group, f"{net[1]}/24")]
        t.veth(na, "eth2", nb, "eth2")
        t.addr(na, "eth2", f"{SYNC_A}/24")
        t.addr(nb, "eth2", f"{SYNC_B}/24")
        pools = {f"v{vid}": (str(net), f"{net[100]}-{net[199]}")
                 for vid, net in self.nets.items()}
        self.groups = groups
        self.advert_ms = advert_ms
        devs = []
        for name, ns, ifs, local, peer in (("deviceA", na, ifs_a, SYNC_A, SYNC_B),
                                           ("deviceB", nb, ifs_b, SYNC_B, SYNC_A)):
            me = "a" if name == "deviceA" else "b"
            gset = {g: {"vrid": str(n + 1), "advert_interval_ms": str(advert_ms),
                        "preempt": "1",
                        "priority": str(HIGH if self.masters[g] == me else LOW)}
                    for n, g in enumerate(groups)}
            droot = self.root / name
            etc = interfaces_tree(droot, name=name, interfaces=ifs, groups=gset, pools=pools,
                                  lease_time=lease_time, datapath=datapath, extra={
                                      "sync/interface": "eth2",
                                      "sync/local": f"{local}:{SYNC_PORT}",
                                      "sync/peer": f"{peer}:{SYNC_PORT}", "sync/key": KEY,
                                      **(values or {})})
            devs.append(VlanDevice(t, droot, name, ns, etc))
        self.a, self.b = devs
        self._n = 0

    @property
    def devices(self) -> tuple[VlanDevice, VlanDevice]:
        return self.a, self.b

    def device(self, which: str) -> VlanDevice:
        return self.a if which == "a" else self.b

    def other(self, d: VlanDevice) -> VlanDevice:
        return self.b if d is self.a else self.a

    def vip(self, vid: int = 0, group: str | None = None) -> str:
        """VLAN `vid`'s virtual IP (shared: group gb's is .254, ga's .1)."""
        net = self.nets[vid]
        return str(net[254] if group == "gb" else net[1])

    # -- life cycle --------------------------------------------------------------------
    def start(self, timeout: float = 120) -> None:
        """Both daemons; returns when every group is served by its master device, the
        other is its backup, and the sync link is up on both."""
        self.a.launch()
        self.b.launch()
        self.wait_served({g: self.device(m) for g, m in self.masters.items()}, timeout)

    def wait_served(self, who: Mapping[str, VlanDevice], timeout: float = 60,
                    interval: float = 0.02, sync: bool = True) -> float:
        """Wait until each group is served by its device in `who` and not by the other
        (when it runs); `sync`: and the running devices are in sync. Returns
        time.monotonic() when it was seen."""

        def ok() -> bool:
            for g, d in who.items():
                o = self.other(d)
                if not d.serves(g):
                    return False
                if o.running() and o.current() and o.group_role(g) != "standby":
                    return False
            return not sync or all(d.in_sync() for d in self.devices if d.running())

        try:
            wait_for(ok, timeout, interval, what="groups served: " + ", ".join(
                f"{g} by {d.name}" for g, d in who.items()))
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{self.a.describe()}\n{self.b.describe()}\n"
                                 f"==== {self.a.name}\n{self.a.log_tail()}\n"
                                 f"==== {self.b.name}\n{self.b.log_tail()}") from None
        return time.monotonic()

    def stop(self) -> None:
        for d in (self.b, self.a):
            if d.running():
                d.stop()

    # -- clients -----------------------------------------------------------------------
    def client(self, vid: int, name: str, mac: str | None = None) -> tuple[Netns, str]:
        """A fresh namespace on VLAN `vid` (0: the shared LAN), eth0 without an address;
        returns (ns, mac)."""
        self._n += 1
        mac = mac or f"02:c2:00:00:{self._n // 256:02x}:{self._n % 256:02x}"
        ns = self.t.host(name)
        self.t.attach(ns, self.lans[vid], "eth0", mac=mac)
        return ns, mac

    def vids(self) -> Sequence[int]:
        return sorted(self.nets)
