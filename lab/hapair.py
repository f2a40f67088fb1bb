"""Two real daemons as a hot-backup pair: one client LAN, a VRRP group, a sync link.

    lan bridge ─┬─ a      eth1 192.0.2.2 (02:00:00:00:00:0a)  prio 120 ══ eth2 198.51.100.1 ┐
                ├─ b      eth1 192.0.2.3 (02:00:00:00:00:0b)  prio 100 ══ eth2 198.51.100.2 ┘ veth
                ├─ load   eth0 192.0.2.5 + 198.18.0.1/16: dhcpload plays a relay (giaddr)
                ├─ relay  up0 192.0.2.4, dhcrelay -a ── rlan bridge (down0 203.0.113.1)
                │                                         └─ relayed client namespaces
                └─ client namespaces (dhclient, udhcpc, the 10 ms renewer)

VIP 192.0.2.1 is the server identifier, so renewals (unicast to it) reach whoever is
master. Pools: lan 192.0.2.100-199, relayed 203.0.113.100-199 (through dhcrelay), load
198.18.1.0-198.18.255.254 (dhcpload). Everything is owned by a `Topology`: processes
are ended by their PID and the namespaces deleted, even when a test fails.

    with Topology("ha") as t:
        ha = HaPair(t, tmp_path, advert_ms=100, relay=True)
        ha.start()                        # both daemons; A master and active, B in sync
        ns, mac = ha.client("c1")         # a client namespace on the LAN
        churn = ha.churn(clients=64)      # renewing load in the background
        ha.a.client_link(False)           # A's client link down
        ha.a.kill9(); ha.a.start()        # crash and restart
        ha.a.box_down()                   # whole-box failure: every link of A at once
        result = churn.stop()             # every ACK each load client got

`python -m lab.hapair churn ...` is the renewing load (run in the load
namespace) and `python -m lab.hapair renewer ...` the 10 ms renewing
client of the failover benchmark (run in a client namespace). Test support only; the
product never imports it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from pyroute2 import IPRoute

from appliance.testing.daemonfiles import CLI
from appliance.testing.netns import Netns, Topology, inside, wait_for
from appliance.testing.trees import standalone_tree
from lab.clients import Dhcrelay, Udhcpc, _script
from lab.daemon import LabDaemon

REPO = Path(__file__).resolve().parents[1]

VIP = "192.0.2.1"
A_IP, A_MAC = "192.0.2.2", "02:00:00:00:00:0a"
B_IP, B_MAC = "192.0.2.3", "02:00:00:00:00:0b"
RELAY_UP_IP = "192.0.2.4"
LOAD_IP = "192.0.2.5"
LOAD_NET, LOAD_RELAY = "198.18.0.0/16", "198.18.0.1"  # RFC 2544 benchmarking range
RELAYED_NET, RELAY_DOWN_IP = "203.0.113.0/24", "203.0.113.1"
SYNC_A, SYNC_B, SYNC_PORT = "198.51.100.1", "198.51.100.2", 6470
INTRUDER_IP = "198.51.100.9"  # a third host on the sync link (HaPair(sync_lan=True))
KEY = "0123456789abcdef0123456789abcdef"
VRID = 10
PRIO_A, PRIO_B = 120, 100
LAN_RANGE = ("192.0.2.100", "192.0.2.199")



def wall_of(mono: float) -> float:
    """The wall-clock time (time.time()) of a time.monotonic() reading taken earlier:
    runtime trees and captures stamp events with the wall clock."""
    return time.time() - (time.monotonic() - mono)


def master_down_ms(advert_ms: int, priority: int) -> float:
    """RFC 5798 §6.1: 3 x Master_Adver_Interval + Skew_Time, of a backup of `priority`."""
    return 3 * advert_ms + (256 - priority) * advert_ms / 256


class HaDevice(LabDaemon):
    """One daemon of the pair: namespace, config tree, runtime tree, process, log."""

    def __init__(self, t: Topology, root: Path, name: str, ns: Netns, ip: str, mac: str,
                 priority: int, local: str, peer: str, values: dict[str, str],
                 datapath: str, lease_time: int) -> None:
        self.t, self.name, self.ns, self.ip, self.mac = t, name, ns, ip, mac
        self.priority = priority
        self.root = Path(root) / name
        self.etc = standalone_tree(self.root, name=name, interface="eth1", datapath=datapath,
                                   ranges="-".join(LAN_RANGE), lease_time=lease_time, extra={
                                       "vrrp/priority": str(priority),
                                       "sync/local": f"{local}:{SYNC_PORT}",
                                       "sync/peer": f"{peer}:{SYNC_PORT}", **values})
        # On tmpfs, as /run is on the appliance: on this machine's ext4 each rewrite
        # of a runtime file costs 0.3-0.6 ms (a rename over a file forces writeback).
        self.run_dir = t.tmpfs(self.root / "run")
        self.state_dir = self.root / "state"
        self.log = self.root / "daemon.log"
        super().__init__()

    # -- life cycle (launch, stop, kill9, cleanup, running, current: lab/daemon.py) ----
    def start(self, timeout: float = 90) -> None:
        """Start the daemon and wait until it runs VRRP (its runtime tree names its pid
        and a VRRP state past initialize)."""
        self.launch()
        self.wait(lambda: self.current() and self.value("vrrp/state") in ("backup", "master"),
                  "started", timeout)

    # -- links -------------------------------------------------------------------------
    def set_links(self, *changes: tuple[str, bool]) -> float:
        """(ifname, up) changes applied back to back through one netlink socket opened
        in the device's namespace (like `ip link set`, without a process start between
        them); returns time.monotonic() when the kernel had done the last one."""
        with inside(self.ns):
            ipr = IPRoute()
        try:
            idx = {name: ipr.link_lookup(ifname=name)[0] for name, _ in changes}
            for name, up in changes:
                ipr.link("set", index=idx[name], state="up" if up else "down")
            return time.monotonic()
        finally:
            ipr.close()

    def client_link(self, up: bool) -> float:
        """The client link (eth1) up or down; returns when it was done (monotonic)."""
        return self.set_links(("eth1", up))

    def box_down(self) -> float:
        """Whole-box failure: every link of the device down at once (the sync link
        first, so that not even the daemon's client-link notice gets out: a dead box
        says nothing). Returns when it was done (monotonic)."""
        return self.set_links(("eth2", False), ("eth1", False))

    def box_up(self) -> float:
        return self.set_links(("eth2", True), ("eth1", True))

    # -- the runtime tree --------------------------------------------------------------
    def role(self) -> str | None:
        return self.value("role")

    def vrrp_state(self) -> str | None:
        return self.value("vrrp/state")

    def transition(self) -> dict:
        """vrrp/last_transition: state, time (wall clock), reason, previous, ..."""
        try:
            return json.loads(self.value("vrrp/last_transition") or "{}")
        except ValueError:
            return {}

    def is_(self, role: str, vrrp: str | None = None) -> bool:
        """This process published `role` (and VRRP state `vrrp`)."""
        return (self.current() and self.role() == role
                and (vrrp is None or self.vrrp_state() == vrrp))

    def in_sync(self) -> bool:
        return self.value("sync/peer") == "connected"

    def describe(self) -> str:
        return (f"{self.name}: running={self.running()} role={self.role()} "
                f"vrrp={self.vrrp_state()} sync={self.value('sync/peer')} "
                f"ready={self.value('sync/ready')} last={self.transition()}")

    def wait(self, pred, what: str, timeout: float = 30, interval: float = 0.02) -> object:
        try:
            return wait_for(pred, timeout, interval, what=f"{self.name}: {what}")
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{self.describe()}\n{self.log_tail()}") from None

    # -- the lease store ---------------------------------------------------------------
    def leases(self, all: bool = False) -> list[dict]:
        """`dhcp-hotbackup leases --json [--all]`: the durable lease table."""
        cmd = [CLI, "leases", "--json", "--config", str(self.etc), *(["--all"] if all else [])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}"
        return json.loads(r.stdout)

    def bindings(self) -> dict[str, str]:
        """mac -> ip of every bound lease; a MAC or an address bound twice is an error."""
        by_mac: dict[str, str] = {}
        by_ip: dict[str, str] = {}
        for x in self.leases():
            assert x["mac"] not in by_mac, \
                f"{self.name}: {x['mac']} bound twice: {by_mac[x['mac']]} and {x['ip']}"
            assert x["ip"] not in by_ip, \
                f"{self.name}: {x['ip']} bound to {by_ip[x['ip']]} and {x['mac']}"
            by_mac[x["mac"]] = x["ip"]
            by_ip[x["ip"]] = x["mac"]
        return by_mac


class ArpWatch:
    """The ARP frames that claim an address (sender protocol address = `ip`: replies
    and gratuitous ARPs) as seen on `ifname` in `ns`: (time.monotonic(), sender MAC,
    op: 1 request, 2 reply). An AF_PACKET socket opened in the namespace; close() it."""

    def __init__(self, ns: Netns, ip: str = VIP, ifname: str = "eth0") -> None:
        with inside(ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
            self.sock.bind((ifname, 0x0806))
        self.sock.setblocking(False)
        self.ip = socket.inet_aton(ip)
        self.seen: list[tuple[float, str, int]] = []

    def drain(self) -> list[tuple[float, str, int]]:
        while True:
            try:
                f = self.sock.recv(128)
            except BlockingIOError:
                return self.seen
            if len(f) >= 42 and f[28:32] == self.ip:
                self.seen.append((time.monotonic(), f[22:28].hex(":"),
                                  int.from_bytes(f[20:22], "big")))

    def claims(self, mac: str, after: float) -> list[tuple[float, str, int]]:
        return [x for x in self.drain() if x[1] == mac and x[0] > after]

    def close(self) -> None:
        self.sock.close()


class RoutedUdhcpc(Udhcpc):
    """udhcpc whose script also installs the router it was given (a relayed client's
    unicast renewal to the server identifier needs a route to it)."""

    def __init__(self, t: Topology, ns: Netns, ifname: str, workdir: Path) -> None:
        super().__init__(t, ns, ifname, workdir)
        self.script = _script(self.dir / "udhcpc-script", f"""
            echo "$1 ${{ip:--}}" >> {self.events_file}
            case "$1" in
              deconfig) ip -4 addr flush dev "$interface" ;;
              bound|renew)
                ip addr replace "$ip/$mask" dev "$interface"
                [ -z "$router" ] || ip route replace default via "${{router%% *}}" ;;
            esac
            exit 0
            """)


class HaPair:
    """Devices `a` (priority 120) and `b` (100) on one client LAN, with a load relay
    namespace and, if `relay`, ISC dhcrelay -a in front of a second LAN.

    `lease_time` is the lease of the LAN and relayed pools (short, so that dhclient
    renews by itself); the load pool's leases are an hour. `values` goes into both
    config trees. `datapath` is the product's default, xdp, unless a caller says "off":
    a daemon that cannot compile it exits (D099), nothing falls back quietly.
    `sync_lan`: the sync link is a shared segment (a bridge that floods every frame, as
    a hub or a tap would) with a third host on it, `intruder` (eth0 INTRUDER_IP), which
    sees the pair's sync traffic."""

    def __init__(self, t: Topology, root: Path, *, advert_ms: int = 100,
                 datapath: str = "xdp", lease_time: int = 3600, relay: bool = False,
                 values: dict[str, str] | None = None, sync_lan: bool = False) -> None:
        self.t, self.root, self.advert_ms = t, Path(root), advert_ms
        self.lan = t.lan("lan")
        na, nb, self.load_ns = t.host("a"), t.host("b"), t.host("load")
        t.attach(na, self.lan, "eth1", f"{A_IP}/24", mac=A_MAC)
        t.attach(nb, self.lan, "eth1", f"{B_IP}/24", mac=B_MAC)
        self.intruder: Netns | None = None
        if sync_lan:
            slan = t.lan("slan")
            # ageing_time 0: no address is ever learnt, every frame is flooded to every
            # port (a hub), so the third host sees the pair's connection.
            t.run(slan, ["ip", "link", "set", "br0", "type", "bridge", "ageing_time", "0"])
            t.attach(na, slan, "eth2", f"{SYNC_A}/24")
            t.attach(nb, slan, "eth2", f"{SYNC_B}/24")
            self.intruder = t.host("x")
            t.attach(self.intruder, slan, "eth0", f"{INTRUDER_IP}/24")
        else:
            t.veth(na, "eth2", nb, "eth2")
            t.addr(na, "eth2", f"{SYNC_A}/24")
            t.addr(nb, "eth2", f"{SYNC_B}/24")
        t.attach(self.load_ns, self.lan, "eth0", f"{LOAD_IP}/24")
        t.addr(self.load_ns, "eth0", f"{LOAD_RELAY}/16")
        routes = [(LOAD_NET, LOAD_IP)]
        self.relay_ns: Netns | None = None
        self.rlan: Netns | None = None
        self.dhcrelay: Dhcrelay | None = None
        if relay:
            self.relay_ns, self.rlan = t.host("relay"), t.lan("rlan")
            t.attach(self.relay_ns, self.lan, "up0", f"{RELAY_UP_IP}/24")
            t.attach(self.relay_ns, self.rlan, "down0", f"{RELAY_DOWN_IP}/24")
            t.run(self.relay_ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            routes.append((RELAYED_NET, RELAY_UP_IP))
        for ns in (na, nb):
            for net, via in routes:
                t.run(ns, ["ip", "route", "add", net, "via", via])
        common = {
            "vrrp/vrid": str(VRID), "vrrp/advert_interval_ms": str(advert_ms),
            "vrrp/virtual_ip": f"{VIP}/24", "vrrp/preempt": "1",
            "sync/interface": "eth2", "sync/key": KEY,
            "pools/relayed/subnet": RELAYED_NET,
            "pools/relayed/range": "203.0.113.100-203.0.113.199",
            "pools/relayed/router": RELAY_DOWN_IP,
            "pools/relayed/lease_time": str(lease_time),
            "pools/load/subnet": LOAD_NET, "pools/load/range": "198.18.1.0-198.18.255.254",
            "pools/load/router": LOAD_RELAY, "pools/load/lease_time": "3600",
            **(values or {}),
        }
        self.a = HaDevice(t, self.root, "deviceA", na, A_IP, A_MAC, PRIO_A, SYNC_A, SYNC_B,
                          common, datapath, lease_time)
        self.b = HaDevice(t, self.root, "deviceB", nb, B_IP, B_MAC, PRIO_B, SYNC_B, SYNC_A,
                          common, datapath, lease_time)
        self._n = 0
        self._churns = 0

    @property
    def devices(self) -> tuple[HaDevice, HaDevice]:
        return self.a, self.b

    def master_down_ms(self) -> float:
        """B's Master_Down_Interval: how long silence lasts before B takes over."""
        return master_down_ms(self.advert_ms, PRIO_B)

    def other(self, d: HaDevice) -> HaDevice:
        return self.b if d is self.a else self.a

    # -- life cycle --------------------------------------------------------------------
    def start(self, timeout: float = 90) -> None:
        """Start dhcrelay (if any), then A, then B; wait for the steady state."""
        if self.relay_ns is not None and self.dhcrelay is None:
            self.dhcrelay = Dhcrelay(self.t, self.relay_ns, "up0", "down0", VIP,
                                     self.root / "dhcrelay").start()
        self.a.launch()
        self.b.launch()
        self.steady(self.a, timeout)

    def steady(self, master: HaDevice, timeout: float = 60) -> None:
        """`master` is VRRP master and active, the other is backup and standby, and both
        see the sync link connected (in sync)."""
        backup = self.other(master)

        def ok() -> bool:
            return (master.is_("active", "master") and backup.is_("standby", "backup")
                    and master.in_sync() and backup.in_sync())

        try:
            wait_for(ok, timeout, 0.02, what=f"{master.name} master and in sync")
        except TimeoutError as e:
            raise AssertionError(f"{e}\n{self.a.describe()}\n{self.b.describe()}\n"
                                 f"==== {self.a.name}\n{self.a.log_tail()}\n"
                                 f"==== {self.b.name}\n{self.b.log_tail()}") from None

    def serving(self) -> list[HaDevice]:
        """The devices whose current process says active."""
        return [d for d in self.devices if d.running() and d.current()
                and d.role() == "active"]

    def stop(self) -> None:
        """SIGTERM both (exit status 0 required), B first so that A's stop is clean."""
        for d in (self.b, self.a):
            if d.running():
                d.stop()

    # -- clients -----------------------------------------------------------------------
    def client(self, name: str) -> tuple[Netns, str]:
        """A fresh namespace on the client LAN (eth0, no address); returns (ns, mac)."""
        return self._client(name, self.lan)

    def relayed_client(self, name: str) -> tuple[Netns, str]:
        """A fresh namespace on the LAN behind dhcrelay."""
        assert self.rlan is not None, "HaPair(relay=True) needed"
        return self._client(name, self.rlan)

    def _client(self, name: str, lan: Netns) -> tuple[Netns, str]:
        self._n += 1
        mac = f"02:c1:00:00:{self._n // 256:02x}:{self._n % 256:02x}"
        ns = self.t.host(name)
        self.t.attach(ns, lan, "eth0", mac=mac)
        return ns, mac

    # -- load --------------------------------------------------------------------------
    def churn(self, clients: int = 64, new_per_round: int = 1, pause: float = 0.05,
              seed: int = 7) -> Churn:
        """Renewing load from the load namespace (see `churn_main`), started now."""
        self._churns += 1
        return Churn(self.t, self.load_ns, self.root / f"churn{self._churns}", clients,
                     new_per_round, pause, seed)


class Churn:
    """`python -m lab.hapair churn` in the background: `clients` DORAs,
    then rounds of a renewal of every bound client (unicast REQUEST with ciaddr to the
    VIP, through the load relay) plus `new_per_round` fresh DORAs, until stopped.
    `stop()` returns its record (see `churn_main`)."""

    def __init__(self, t: Topology, ns: Netns, workdir: Path, clients: int,
                 new_per_round: int, pause: float, seed: int) -> None:
        self.t = t
        workdir.mkdir(parents=True, exist_ok=True)
        self.out = workdir / "churn.json"
        self.log = workdir / "churn.log"
        with open(self.log, "ab") as log:
            self.proc = t.popen(ns, [
                sys.executable, "-m", "lab.hapair", "churn", "--relay",
                LOAD_RELAY, "--server", VIP, "--clients", str(clients), "--new",
                str(new_per_round), "--pause", str(pause), "--seed", str(seed),
                "--out", str(self.out)], stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))

    def record(self) -> dict:
        try:
            return json.loads(self.out.read_text())
        except (OSError, ValueError):
            return {}

    def rounds(self) -> int:
        return int(self.record().get("rounds", 0))

    def wait_rounds(self, n: int, timeout: float = 60) -> None:
        """Wait until `n` more full rounds are done."""
        self.assert_running()
        target = self.rounds() + n
        try:
            wait_for(lambda: self.assert_running() or self.rounds() >= target, timeout,
                     what=f"churn round {target}")
        except TimeoutError as e:
            raise AssertionError(f"{e}: {self.summary()}") from None

    def assert_running(self) -> None:
        assert self.proc.poll() is None, \
            f"churn exited ({self.proc.returncode}): {self.log.read_text(errors='replace')}"

    def summary(self) -> dict:
        r = self.record()
        return {**{k: r.get(k) for k in ("rounds", "acks", "naks", "timeouts", "unanswered")},
                "clients": len(r.get("clients", {}))}

    def stop(self) -> dict:
        """SIGTERM: it finishes the round it is in, writes its record and exits 0."""
        self.assert_running()
        rc = self.t.stop(self.proc, signal.SIGTERM, timeout=30)
        assert rc == 0, f"churn exit {rc}: {self.log.read_text(errors='replace')}"
        return self.record()


def check_churn(rec: dict, selecting_naks: bool = False) -> list[str]:
    """What is wrong with a churn record: NAKs (with `selecting_naks`, a NAK to a new
    client's REQUEST in SELECTING -- it holds no address yet and starts over -- is not
    counted), a client whose address changed, an address ACKed to two clients. Empty
    when nothing is."""
    problems = []
    naks = [n for n in rec.get("nak_list", [])
            if not (selecting_naks and n["phase"] == "request")]
    if naks:
        problems.append(f"{len(naks)} NAKs: {naks[:10]}")
    for mac, ips in rec.get("history", {}).items():
        if len(ips) > 1:
            problems.append(f"{mac} was ACKed several addresses: {ips}")
    owners: dict[str, str] = {}
    for mac, ips in rec.get("history", {}).items():
        for ip in ips:
            if ip in owners and owners[ip] != mac:
                problems.append(f"{ip} ACKed to {owners[ip]} and to {mac}")
            owners[ip] = mac
    return problems


# -- the churn: renewing load (runs in the load namespace) --------------------------------
def _dhcp_request(mac: bytes, xid: int, mtype: int, **fields: object) -> bytes:
    from appliance.testing.dhcpreq import request

    return request(mtype, mac, xid=xid, **fields).encode()  # type: ignore[arg-type]


class _ChurnClient:
    __slots__ = ("ip", "mac", "offered", "phase", "sent_at", "server_id", "tries", "xid")

    def __init__(self, mac: bytes) -> None:
        self.mac = mac
        self.ip: bytes | None = None
        self.phase = "discover"
        self.offered = b""
        self.server_id = b""
        self.xid = 0
        self.sent_at = 0.0
        self.tries = 0


def churn_main(a: argparse.Namespace) -> int:
    """Rounds until SIGTERM. Each round: every bound client renews (REQUEST, ciaddr,
    unicast to --server with giaddr = --relay: the reply comes back to the relay) and
    `--new` clients run a DORA; a request unanswered after --timeout is resent up to
    --retries times, then the client waits for the next round.

    The record (--out, rewritten after every round): rounds, acks (count), naks,
    nak_list (mac, phase: "request" = SELECTING, "renew"; the address asked for; the
    server's message; when), timeouts, clients (mac -> last ACKed ip), history (mac ->
    every distinct ip ACKed, in order), unanswered (requests of the last round without an
    answer)."""
    from appliance.dhcp.enums import MessageType, Opt
    from appliance.dhcp.message import DhcpMessage
    from lab.dhcpload import replies, retransmit

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((a.relay, 67))
    sock.setblocking(False)
    relay = socket.inet_aton(a.relay)
    dest = (a.server, 67)
    rng = random.Random(a.seed)
    next_mac = 0

    def new_mac() -> bytes:
        nonlocal next_mac
        next_mac += 1
        return bytes([0x02, a.seed & 0xFF]) + next_mac.to_bytes(4, "big")

    bound: dict[bytes, _ChurnClient] = {}
    history: dict[str, list[str]] = {}
    rec = {"rounds": 0, "acks": 0, "naks": 0, "nak_list": [], "timeouts": 0,
           "unanswered": 0}
    by_xid: dict[int, _ChurnClient] = {}  # exchanges in flight, by their latest xid
    known: dict[int, _ChurnClient] = {}  # every xid of this round and the last

    def send(c: _ChurnClient) -> None:
        c.xid = rng.getrandbits(32)
        by_xid[c.xid] = c
        known[c.xid] = c
        c.sent_at = time.monotonic()
        if c.phase == "discover":
            data = _dhcp_request(c.mac, c.xid, MessageType.DISCOVER, giaddr=relay)
        elif c.phase == "request":
            data = _dhcp_request(c.mac, c.xid, MessageType.REQUEST, giaddr=relay,
                                 requested=c.offered, server_id=c.server_id)
        else:  # renew
            assert c.ip is not None
            data = _dhcp_request(c.mac, c.xid, MessageType.REQUEST, giaddr=relay,
                                 ciaddr=c.ip)
        try:
            sock.sendto(data, dest)
        except OSError:
            pass  # no route/ARP yet: counts as unanswered, resent

    def on_reply(m: DhcpMessage) -> None:
        # Answers to an earlier transmission of the exchange count as well: the client
        # got them, so what they say must hold.
        c = known.get(m.xid)
        if c is None or m.mac != c.mac:
            return  # not ours, or an xid two clients drew (32 random bits)
        latest = by_xid.get(m.xid) is c
        mt = m.message_type
        if mt == MessageType.OFFER:
            if latest and c.phase == "discover":
                del by_xid[m.xid]
                c.phase, c.offered, c.tries = "request", m.yiaddr, 0
                c.server_id = m.options.get(Opt.SERVER_ID, b"")
                send(c)
        elif mt == MessageType.ACK:
            if latest:
                del by_xid[m.xid]
            ip = socket.inet_ntoa(m.yiaddr)
            rec["acks"] += 1
            h = history.setdefault(c.mac.hex(":"), [])
            if ip not in h:
                h.append(ip)
            c.ip = m.yiaddr
            if c.phase in ("request", "renew"):
                c.phase = "done"
            bound[c.mac] = c
        elif mt == MessageType.NAK:
            phase = c.phase
            if latest:
                del by_xid[m.xid]
                c.phase = "done"
            rec["naks"] += 1
            why = m.options.get(Opt.MESSAGE, b"").decode(errors="replace")
            asked = socket.inet_ntoa(c.offered if phase == "request" else c.ip or b"\0" * 4)
            rec["nak_list"].append({"mac": c.mac.hex(":"), "phase": phase, "ip": asked,
                                    "why": why, "t": time.time()})

    def write() -> None:
        out = dict(rec, clients={m.hex(":"): socket.inet_ntoa(c.ip) for m, c in bound.items()
                                 if c.ip is not None}, history=history)
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f)
        os.replace(tmp, a.out)

    def round_(clients: list[_ChurnClient]) -> None:
        pending = list(reversed(clients))
        while (pending or by_xid):
            while pending and len(by_xid) < a.window:
                send(pending.pop())
            r, _, _ = select.select([sock], [], [], 0.005)
            for m in replies(sock) if r else ():
                on_reply(m)
            lost = retransmit(by_xid, time.monotonic(), a.timeout, a.retries, send)
            rec["timeouts"] += lost
            rec["unanswered"] += lost

    fresh = [_ChurnClient(new_mac()) for _ in range(a.clients)]
    while not stop:
        rec["unanswered"] = 0
        batch = fresh
        for c in bound.values():
            c.phase, c.tries = "renew", 0
            batch.append(c)
        fresh = [_ChurnClient(new_mac()) for _ in range(a.new)]
        if len(known) > 50 * (len(batch) + 64):
            known.clear()
        round_(batch)
        # A client whose DORA did not finish starts over in the next round.
        for c in batch:
            if c.ip is None:
                c.phase, c.tries = "discover", 0
                fresh.append(c)
        rec["rounds"] += 1
        write()
        if a.pause and not stop:
            time.sleep(a.pause)  # pacing the load, not waiting for a timer
    # Late answers to the last round's retransmissions are counted too.
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        r, _, _ = select.select([sock], [], [], 0.05)
        for m in replies(sock) if r else ():
            on_reply(m)
    write()
    return 0


# -- the 10 ms renewer (runs in a client namespace) ---------------------------------------
ETH_P_IP = 0x0800


def renewer_main(a: argparse.Namespace) -> int:
    """A client holding `--ip` that sends a REQUEST every --interval seconds, as a real
    client in RENEWING does: ciaddr set, no server identifier, unicast to the server
    identifier of the last ACK (--server at first); once T2 (option 59 of the last ACK)
    has passed since the last ACK, REBINDING: broadcast. It writes one JSON line per
    reply to --out: t (CLOCK_MONOTONIC when it was read), rtt (since its request was
    sent), src (Ethernet source), type (5 ACK, 6 NAK), yiaddr, sid (option 54),
    rebinding (whether the request was a broadcast). --broadcast: every request is
    broadcast (REBINDING from the start). Runs until SIGTERM."""
    from appliance.dhcp.enums import MessageType, Opt
    from appliance.dhcp.message import DecodeError, DhcpMessage

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    mac = bytes.fromhex(a.mac.replace(":", ""))
    client_id = bytes.fromhex(a.client_id) if a.client_id else None
    ip = socket.inet_aton(a.ip)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, a.iface.encode())
    udp.bind(("0.0.0.0", 68))
    udp.setblocking(False)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    raw.bind((a.iface, ETH_P_IP))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    raw.setblocking(False)
    server = a.server
    t2 = 1e9
    last_ack = time.monotonic()
    sent: dict[int, tuple[float, bool]] = {}  # xid -> (sent at, broadcast)
    out = open(a.out, "a", buffering=1)
    next_send = time.monotonic()
    clock = time.CLOCK_MONOTONIC
    while not stop:
        now = time.monotonic()
        if now >= next_send:
            rebinding = a.broadcast or now - last_ack > t2
            xid = random.getrandbits(32)
            sent[xid] = (now, rebinding)
            if len(sent) > 10000:
                sent.pop(next(iter(sent)))
            data = _dhcp_request(mac, xid, MessageType.REQUEST, ciaddr=ip,
                                 client_id=client_id)
            try:
                udp.sendto(data, ("255.255.255.255" if rebinding else server, 67))
            except OSError:
                pass  # e.g. no ARP answer yet: the next one goes 10 ms later
            next_send += a.interval
            if next_send < now:
                next_send = now + a.interval
        timeout = max(0.0, next_send - time.monotonic())
        r, _, _ = select.select([raw, udp], [], [], timeout)
        if udp in r:
            try:
                while True:
                    udp.recv(4096)
            except BlockingIOError:
                pass
        if raw not in r:
            continue
        while True:
            try:
                frame = raw.recv(4096)
            except BlockingIOError:
                break
            t = time.clock_gettime(clock)
            if len(frame) < 42 or frame[23] != 17:
                continue
            ihl = (frame[14] & 0x0F) * 4
            udp_off = 14 + ihl
            sport, dport = struct.unpack_from("!HH", frame, udp_off)
            if sport != 67 or dport != 68:
                continue
            try:
                m = DhcpMessage.decode(frame[udp_off + 8:])
            except DecodeError:
                continue
            if m.op != 2 or m.chaddr[:6] != mac or m.xid not in sent:
                continue
            mt = m.message_type
            sid = m.options.get(Opt.SERVER_ID, b"")
            if mt == MessageType.ACK:
                last_ack = t
                if len(sid) == 4:
                    server = socket.inet_ntoa(sid)
                t2b = m.options.get(Opt.REBINDING_TIME)
                if t2b is not None and len(t2b) == 4:
                    t2 = int.from_bytes(t2b, "big")
            at, rebinding = sent[m.xid]
            out.write(json.dumps({"t": t, "rtt": t - at, "src": frame[6:12].hex(":"),
                                  "type": int(mt or 0), "yiaddr": socket.inet_ntoa(m.yiaddr),
                                  "sid": socket.inet_ntoa(sid) if len(sid) == 4 else "",
                                  "rebinding": rebinding}) + "\n")
    out.close()
    return 0


class Renewer:
    """The 10 ms renewing client in `ns`: first a lease from `udhcpc -q` (its script sets
    the address), then `renewer_main` in the background."""

    def __init__(self, t: Topology, ns: Netns, mac: str, workdir: Path, server: str = VIP,
                 interval: float = 0.01, broadcast: bool = False) -> None:
        self.t, self.ns, self.mac, self.dir = t, ns, mac, Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server, self.interval, self.broadcast = server, interval, broadcast
        self.out = self.dir / "replies.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ip = ""
        self._pos = 0
        self.replies: list[dict] = []

    def lease(self, timeout: float = 60) -> str:
        """One DORA with udhcpc (retried until `timeout`); the address is set on eth0."""
        leasefile = self.dir / "ip"
        script = _script(self.dir / "script", f"""
            case "$1" in
              deconfig) ip -4 addr flush dev "$interface" ;;
              bound|renew) ip addr replace "$ip/$mask" dev "$interface"
                           echo "$ip" > {leasefile} ;;
            esac
            exit 0
            """)
        leasefile.unlink(missing_ok=True)
        self.t.run(self.ns, ["ip", "-4", "addr", "flush", "dev", "eth0"])
        r = self.t.run(self.ns, ["udhcpc", "-q", "-n", "-f", "-i", "eth0", "-s", str(script),
                                 "-t", str(max(3, int(timeout))), "-T", "1", "-A", "1"],
                       check=False, timeout=timeout + 30)
        assert leasefile.exists(), f"{self.ns}: no lease: {r.stdout}{r.stderr}"
        self.ip = leasefile.read_text().strip()
        return self.ip

    def start(self) -> None:
        assert self.ip, "lease() first"
        self.out.write_text("")
        self._pos, self.replies = 0, []
        with open(self.dir / "renewer.log", "ab") as log:
            self.proc = self.t.popen(self.ns, [
                sys.executable, "-m", "lab.hapair", "renewer", "--iface",
                "eth0", "--ip", self.ip, "--mac", self.mac, "--client-id",
                "01" + self.mac.replace(":", ""), "--server", self.server, "--interval",
                str(self.interval), "--out", str(self.out),
                *(["--broadcast"] if self.broadcast else [])],
                stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))

    def stop(self) -> None:
        if self.proc is not None:
            self.t.stop(self.proc)
            self.proc = None

    def poll(self) -> list[dict]:
        """Replies recorded since the last call (and kept in `replies`)."""
        assert self.proc is None or self.proc.poll() is None, \
            "renewer died: " + (self.dir / "renewer.log").read_text(errors="replace")
        with open(self.out) as f:
            f.seek(self._pos)
            chunk = f.read()
        end = chunk.rfind("\n") + 1
        self._pos += len(chunk[:end].encode())
        new = [json.loads(line) for line in chunk[:end].splitlines() if line]
        self.replies.extend(new)
        return new

    def acks_from(self, mac: str, after: float = 0.0) -> list[dict]:
        self.poll()
        return [r for r in self.replies if r["type"] == 5 and r["src"] == mac and r["t"] > after]

    def naks(self) -> list[dict]:
        self.poll()
        return [r for r in self.replies if r["type"] != 5]

    def addresses(self) -> set[str]:
        """Every address an ACK gave."""
        self.poll()
        return {r["yiaddr"] for r in self.replies if r["type"] == 5}

    def wait_acks_from(self, mac: str, after: float, n: int = 3, timeout: float = 30) -> None:
        try:
            wait_for(lambda: len(self.acks_from(mac, after)) >= n, timeout, 0.01,
                     what=f"{self.ns}: {n} ACKs from {mac}")
        except TimeoutError as e:
            last = self.replies[-1:] if self.replies else []
            raise AssertionError(f"{e}; last reply {last}") from None

    def switch(self, old: str, new: str, after: float) -> tuple[float, float]:
        """(last ACK from `old`, first ACK from `new`) around the first ACK from `new`
        after `after` (monotonic times): the client-visible outage is their difference."""
        first = min(r["t"] for r in self.acks_from(new, after))
        last = max(r["t"] for r in self.acks_from(old) if r["t"] < first)
        return last, first

    def outage(self, old: str, new: str, after: float, timeout: float = 30) -> float:
        """Seconds from the last ACK from `old` to the first from `new` after `after`
        (waits for that one): the client-visible outage of a switchover."""
        self.wait_acks_from(new, after, 1, timeout)
        last, first = self.switch(old, new, after)
        return first - last

    def max_gap(self, start: float, end: float) -> float:
        """The longest time without an ACK (from anyone) between `start` and `end`,
        counted from the last ACK before `start` (seconds)."""
        self.poll()
        ts = sorted(r["t"] for r in self.replies if r["type"] == 5)
        before = [x for x in ts if x <= start]
        inside_ = [x for x in ts if start < x <= end]
        points = ([before[-1]] if before else [start]) + inside_ + [end]
        return max(b - a for a, b in itertools.pairwise(points))


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.hapair")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("churn", help="renewing load through a relay address")
    c.add_argument("--relay", required=True)
    c.add_argument("--server", required=True)
    c.add_argument("--clients", type=int, default=64)
    c.add_argument("--new", type=int, default=1, help="fresh DORAs per round")
    c.add_argument("--window", type=int, default=32)
    c.add_argument("--timeout", type=float, default=0.25)
    c.add_argument("--retries", type=int, default=3)
    c.add_argument("--pause", type=float, default=0.05, help="between rounds")
    c.add_argument("--seed", type=int, default=7, help="second MAC byte")
    c.add_argument("--out", required=True)
    r = sub.add_parser("renewer", help="a REQUEST every --interval from a bound client")
    r.add_argument("--iface", default="eth0")
    r.add_argument("--ip", required=True)
    r.add_argument("--mac", required=True)
    r.add_argument("--client-id", default="")
    r.add_argument("--server", required=True)
    r.add_argument("--interval", type=float, default=0.01)
    r.add_argument("--broadcast", action="store_true")
    r.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return churn_main(a) if a.cmd == "churn" else renewer_main(a)


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
