"""`make demo`: the two-device pair in namespaces, real clients, failovers, a timeline.

DeviceA (priority 120) and DeviceB (priority 100) share a client LAN (VRRP group 10,
virtual IP 192.0.2.1 = the DHCP server identifier) and a dedicated sync link. Clients:
ISC dhclient and busybox udhcpc on the LAN, and a dhclient behind ISC dhcrelay -a
(Option 82). The demo shows the sessions on both devices, then fails A's client link,
restores it, kills A's daemon with kill -9, brings A back, and prints what each client
saw. Everything lives in namespaces that are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from appliance.testing.daemonfiles import runtime_value
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.trees import standalone_tree
from lab.clients import Dhclient, Dhcrelay, Udhcpc

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv/bin/dhcp-hotbackup")
_T0 = time.time()
KEY = "demo-key-0123456789abcdef0123456789"


def say(event: str, at: float | None = None) -> None:
    print(f"  {(at or time.time()) - _T0:7.3f}s  {event}", flush=True)


class Device:
    def __init__(self, t: Topology, work: Path, name: str, ns: Netns, prio: int,
                 local: str, peer: str, datapath: str) -> None:
        self.t, self.name, self.ns = t, name, ns
        self.root = work / name
        self.etc = standalone_tree(self.root, name=name, lease_time=10, datapath=datapath,
                                   extra={
            "vrrp/vrid": "10", "vrrp/priority": str(prio),
            "vrrp/advert_interval_ms": "100", "vrrp/virtual_ip": "192.0.2.1/24",
            "sync/interface": "eth2", "sync/local": f"{local}:6470",
            "sync/peer": f"{peer}:6470", "sync/key": KEY,
            "pools/relayed/subnet": "203.0.113.0/24",
            "pools/relayed/range": "203.0.113.100-203.0.113.199",
            "pools/relayed/router": "203.0.113.1", "pools/relayed/lease_time": "10"})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.root / "daemon.log", "ab")
        self.proc = self.t.popen(self.ns, [CLI, "run", "--config", str(self.etc)],
                                 stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.value("pid") == str(self.proc.pid)  # type: ignore[union-attr]
                 or self.proc.poll() is not None, 30,  # type: ignore[union-attr]
                 what=f"{self.name} start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited; log:\n" + self.log_tail())

    def value(self, rel: str) -> str:
        return runtime_value(self.root / "run", rel) or ""

    def transition_time(self) -> float:
        try:
            return float(json.loads(self.value("vrrp/last_transition"))["time"])
        except (ValueError, KeyError):
            return 0.0

    def leases(self) -> str:
        return subprocess.run([CLI, "leases", "--config", str(self.etc)], capture_output=True,
                              text=True).stdout

    def bindings(self) -> dict[str, str]:
        out = subprocess.run([CLI, "leases", "--json", "--config", str(self.etc)],
                             capture_output=True, text=True).stdout
        return {x["mac"]: x["ip"] for x in json.loads(out or "[]")}

    def log_tail(self) -> str:
        return "\n".join((self.root / "daemon.log").read_text(errors="replace")
                         .splitlines()[-20:])


def addr_of(t: Topology, ns: Netns, ifname: str = "eth0") -> str:
    out = t.run(ns, ["ip", "-4", "-o", "addr", "show", "dev", ifname], check=False).stdout
    for word in out.split():
        if "/" in word and word[0].isdigit():
            return word.split("/")[0]
    return "-"


def master_of(a: Device, b: Device) -> str:
    m = [d.name for d in (a, b) if d.value("role") == "active"]
    return "+".join(m) if m else "nobody"


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (network namespaces)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="dhcp-hotbackup-demo-"))
    datapath = "xdp"
    try:
        import bcc  # noqa: F401
    except ImportError:
        datapath = "off"
    print("dhcp-hotbackup demo: DeviceA and DeviceB as a hot-backup pair, real clients")
    print(f"  VRRP group 10 (adverts 100 ms), VIP 192.0.2.1, sync link 198.51.100.0/24, "
          f"datapath {datapath}; work dir {work}\n")
    print("timeline (seconds since start):")
    rows: list[tuple[str, ...]] = []
    try:
        with Topology("demo") as t:
            lan, lan2 = t.lan(), t.lan("lan2")
            na, nb = t.host("deviceA"), t.host("deviceB")
            t.attach(na, lan, "eth1", "192.0.2.2/24")
            t.attach(nb, lan, "eth1", "192.0.2.3/24")
            t.veth(na, "eth2", nb, "eth2")
            t.addr(na, "eth2", "198.51.100.1/24")
            t.addr(nb, "eth2", "198.51.100.2/24")
            relay = t.host("relay")
            t.attach(relay, lan, "up0", "192.0.2.4/24")
            t.attach(relay, lan2, "down0", "203.0.113.1/24")
            t.run(relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            for ns in (na, nb):
                t.run(ns, ["ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.4"])
            c1, c2, c3 = t.host("dhclient"), t.host("udhcpc"), t.host("relayed")
            t.attach(c1, lan, "eth0")
            t.attach(c2, lan, "eth0")
            t.attach(c3, lan2, "eth0")
            # The clients' scripts set the address only; the relayed client renews by
            # unicast to the server identifier, which needs its router (option 3).
            t.run(c3, ["ip", "route", "add", "192.0.2.0/24", "via", "203.0.113.1", "onlink",
                       "dev", "eth0"])
            say("namespaces: one client LAN, a sync link, a relay LAN behind dhcrelay -a")

            a = Device(t, work, "deviceA", na, 120, "198.51.100.1", "198.51.100.2", datapath)
            b = Device(t, work, "deviceB", nb, 100, "198.51.100.2", "198.51.100.1", datapath)
            a.start()
            wait_for(lambda: a.value("vrrp/state") == "master", 20, what="A master")
            say(f"deviceA started: VRRP master, role {a.value('role')}, datapath "
                f"{a.value('datapath/attach_mode')}")
            b.start()
            wait_for(lambda: b.value("vrrp/state") == "backup" and
                     b.value("sync/peer") == "connected", 30, what="B in sync")
            say(f"deviceB started: VRRP backup, role {b.value('role')}, in sync with A")
            Dhcrelay(t, relay, "up0", "down0", "192.0.2.1", work / "relay").start()

            clients = {
                "dhclient": (c1, Dhclient(t, c1, "eth0", work / "c1", hostname="laptop")),
                "udhcpc": (c2, Udhcpc(t, c2, "eth0", work / "c2")),
                "relayed": (c3, Dhclient(t, c3, "eth0", work / "c3", hostname="relayed-pc")),
            }
            for _name, (_ns, c) in clients.items():
                c.start()
                c.wait_event("BOUND" if isinstance(c, Dhclient) else "bound", timeout=60)
            first = {n: addr_of(t, ns) for n, (ns, _c) in clients.items()}
            # busybox udhcpc treats any lease as at least 122 s long and would renew only
            # after 61 s; with the demo's 10 s leases it is told to renew every 3 s.
            stop_renewing = threading.Event()

            def keep_renewing() -> None:
                while not stop_renewing.wait(3.0):
                    if clients["udhcpc"][1].running():
                        clients["udhcpc"][1].renew()  # type: ignore[attr-defined]

            threading.Thread(target=keep_renewing, daemon=True).start()
            say("clients bound: " + ", ".join(f"{n} {ip}" for n, ip in first.items()))
            wait_for(lambda: len(b.bindings()) == 3, 10, what="sessions on B")
            print("\nsessions on deviceA:")
            print(a.leases())
            print("sessions on deviceB (replicated over the sync link):")
            print(b.leases())

            def failover(what: str, do, expect: Device) -> None:
                t_event = time.time()
                do()
                say(what, t_event)
                wait_for(lambda: expect.value("vrrp/state") == "master" and
                         expect.value("role") == "active" and
                         expect.transition_time() > t_event, 30, interval=0.005,
                         what=f"{expect.name} to take over")
                took = (expect.transition_time() - t_event) * 1000
                say(f"{expect.name} is master (role active) {took:.1f} ms after the event",
                    expect.transition_time())
                # udhcpc renews now (unicast to the VIP): the outage it sees.
                udh = clients["udhcpc"][1]
                n = sum(1 for e in udh.events() if e and e[0] == "renew")
                t_renew = time.time()
                udh.renew()  # type: ignore[attr-defined]
                udh.wait_event("renew", count=n + 1, timeout=30)
                rtt = (time.time() - t_renew) * 1000
                say(f"udhcpc renewed from {expect.name} in {rtt:.1f} ms: "
                    f"{addr_of(t, clients['udhcpc'][0])}")
                # dhclients renew at T1 (5 s) by themselves, unicast to the VIP.
                for name in ("dhclient", "relayed"):
                    c = clients[name][1]
                    k = sum(1 for e in c.events() if e and e[0] == "RENEW")
                    c.wait_event("RENEW", count=k + 1, timeout=30)
                    say(f"{name} renewed at T1 from {expect.name}: "
                        f"{addr_of(t, clients[name][0])}")
                now = {n: addr_of(t, ns) for n, (ns, _c) in clients.items()}
                rows.append((what, expect.name, f"{took:.1f}", f"{rtt:.1f}",
                             "yes" if now == first else "NO"))

            print("event 1: deviceA's client link goes down")
            failover("A's client link down (eth1 down)",
                     lambda: t.link(na, "eth1", False), b)
            t.link(na, "eth1", True)
            wait_for(lambda: a.value("role") == "active" and b.value("role") == "standby",
                     30, interval=0.01, what="A back")
            say(f"A's link back up: A master again (preempt), master now {master_of(a, b)}")

            print("event 2: deviceA's daemon is killed (kill -9)")
            failover("kill -9 of deviceA's daemon",
                     lambda: os.kill(a.proc.pid, signal.SIGKILL), b)  # type: ignore[union-attr]
            a.proc.wait(5)  # type: ignore[union-attr]
            a.start()
            say("deviceA restarted: syncing from B before it may preempt")
            wait_for(lambda: a.value("role") == "active" and b.value("role") == "standby",
                     60, interval=0.01, what="A preempts back")
            say(f"deviceA in sync and master again; B standby; sessions on A: "
                f"{len(a.bindings())}")


            print("\nevent                            new master  takeover ms  "
                  "udhcpc renew ms  every client kept its address")
            for r in rows:
                print(f"  {r[0]:31} {r[1]:10} {r[2]:>11} {r[3]:>16}  {r[4]}")
            print("\nclient      address at start  address now")
            end = {n: addr_of(t, ns) for n, (ns, _c) in clients.items()}
            for n in first:
                print(f"  {n:9} {first[n]:17} {end[n]}")
            print("\n`dhcp-hotbackup status` on deviceA:")
            print(subprocess.run([CLI, "status", "--config", str(a.etc)], capture_output=True,
                                 text=True).stdout)
            stop_renewing.set()
            for c in clients.values():
                c[1].stop()
            for d in (b, a):
                if d.proc is not None:
                    t.stop(d.proc)
            say("devices stopped; removing namespaces")
        ok = all(r[4] == "yes" for r in rows) and first == end
        print("\nresult:", "no client lost or changed its address" if ok else
              "a client lost or changed its address")
        return 0 if ok else 1
    finally:
        if not os.environ.get("DEMO_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
