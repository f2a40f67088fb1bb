"""`make demo`: two VLANs in load-sharing hot backup, real clients, failures, a timeline.

DeviceA and DeviceB each have a port on VLAN 100 (eth1.100, 192.0.2.0/24, VIP
192.0.2.1) and on VLAN 200 (eth1.200, 203.0.113.0/24, VIP 203.0.113.1), and a dedicated
sync link. Group g100 (bound to eth1.100) has A at priority 200 and B at 100, group g200
(eth1.200) the reverse: A serves VLAN 100, B serves VLAN 200, each replicates the
sessions it makes to the other. Clients: ISC dhclient and busybox udhcpc on each VLAN.
This kernel has no 802.1Q devices, so each VLAN is a bridge of its own and each device a
veth port into it named like the VLAN sub-interface (lab.vlans).

The demo shows both devices working, then fails A's VLAN 100 link and restores it,
kills A's daemon with kill -9 (B serves both VLANs from the sessions it already holds,
the clients renew and keep their addresses), brings A back (it resyncs and takes g100
back), and prints what each client saw. Everything lives in namespaces removed at the
end, even when a step fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from appliance.testing.netns import Netns, Topology, wait_for
from lab.clients import Dhclient, Udhcpc
from lab.vlans import VlanLab, group_served

_T0 = time.time()
_Client = Dhclient | Udhcpc


def say(event: str, at: float | None = None) -> None:
    print(f"  {(at or time.time()) - _T0:7.3f}s  {event}", flush=True)


def addr_of(t: Topology, ns: Netns, ifname: str = "eth0") -> str:
    out = t.run(ns, ["ip", "-4", "-o", "addr", "show", "dev", ifname], check=False).stdout
    for word in out.split():
        if "/" in word and word[0].isdigit():
            return word.split("/")[0]
    return "-"


def who_serves(lab: VlanLab) -> str:
    """'g100: A, g200: B' from the devices' runtime trees."""
    return ", ".join(f"{g}: {'+'.join(sorted(lab.serving(g))) or 'nobody'}"
                     for g in ("g100", "g200"))


def serving_table(lab: VlanLab) -> str:
    """Who serves each VLAN, from both devices' runtime trees (interfaces/<if>/role,
    groups/<g>/vrrp_state): one line per interface."""
    lines = [f"  {'interface':10} {'group':6} {'server id':12} {'deviceA':18} {'deviceB':18}"]
    for v in lab.vlans:
        g = f"g{v.vid}"
        cells = []
        for d in (lab.a, lab.b):
            if not d.alive():
                cells.append("down")
                continue
            cells.append(f"{d.value(f'interfaces/{v.ifname}/role') or '?'} "
                         f"({d.value(f'groups/{g}/vrrp_state') or '?'})")
        lines.append(f"  {v.ifname:10} {g:6} {v.vip:12} {cells[0]:18} {cells[1]:18}")
    return "\n".join(lines)


class Clients:
    """The four clients: name -> (namespace, VLAN id, client)."""

    def __init__(self, t: Topology, lab: VlanLab, work: Path) -> None:
        self.t = t
        self.all: dict[str, tuple[Netns, int, _Client]] = {}
        for v in lab.vlans:
            ns = lab.client(f"dhcl{v.vid}", v)
            self.all[f"dhclient@{v.vid}"] = (ns, v.vid, Dhclient(
                t, ns, "eth0", work / f"dhclient{v.vid}", hostname=f"laptop-{v.vid}"))
            ns = lab.client(f"udh{v.vid}", v)
            self.all[f"udhcpc@{v.vid}"] = (ns, v.vid, Udhcpc(t, ns, "eth0",
                                                            work / f"udhcpc{v.vid}"))
        self._stop = threading.Event()

    def start(self) -> None:
        for _ns, _vid, c in self.all.values():
            c.start()
        for _ns, _vid, c in self.all.values():
            c.wait_event("BOUND" if isinstance(c, Dhclient) else "bound", timeout=60)
        # busybox udhcpc treats any lease as at least 122 s long and would renew only
        # after 61 s; with the demo's 10 s leases it is told to renew every 3 s.
        threading.Thread(target=self._keep_renewing, daemon=True).start()

    def _keep_renewing(self) -> None:
        while not self._stop.wait(3.0):
            for _ns, _vid, c in self.all.values():
                if isinstance(c, Udhcpc) and c.running():
                    c.renew()

    def addresses(self) -> dict[str, str]:
        return {n: addr_of(self.t, ns) for n, (ns, _v, _c) in self.all.items()}

    def renewal_rtt(self, vid: int) -> float:
        """Have VLAN `vid`'s udhcpc renew now (unicast to its server identifier, the
        VIP): milliseconds until its ACK."""
        c = self.all[f"udhcpc@{vid}"][2]
        n = sum(1 for e in c.events() if e and e[0] == "renew")
        t0 = time.time()
        c.renew()  # type: ignore[union-attr]
        c.wait_event("renew", count=n + 1, timeout=30)
        return (time.time() - t0) * 1000

    def dhclients_renew(self) -> None:
        """Wait for each dhclient's next renewal at T1 (5 s), unicast to the VIP."""
        for name, (_ns, vid, c) in self.all.items():
            if isinstance(c, Dhclient):
                k = sum(1 for e in c.events() if e and e[0] == "RENEW")
                c.wait_event("RENEW", count=k + 1, timeout=30)
                say(f"{name} renewed at T1 (VLAN {vid}): {self.addresses()[name]}")

    def stop(self) -> None:
        self._stop.set()
        for _ns, _vid, c in self.all.values():
            c.stop()


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
    print("dhcp-hotbackup demo: DeviceA and DeviceB in load-sharing hot backup on two VLANs")
    print("  VLAN 100 (eth1.100, VIP 192.0.2.1): group g100, A priority 200, B 100")
    print("  VLAN 200 (eth1.200, VIP 203.0.113.1): group g200, A priority 100, B 200")
    print(f"  adverts 100 ms, leases 10 s, sync link 198.51.100.0/24, datapath {datapath}; "
          f"work dir {work}")
    if datapath == "xdp":
        print("  (a daemon's start includes compiling its XDP program with bcc: seconds here)")
    print()
    print("timeline (seconds since start):")
    rows: list[tuple[str, str, str, str, str]] = []
    first: dict[str, str] = {}
    end: dict[str, str] = {}
    try:
        with Topology("demo") as t:
            lab = VlanLab(t, work, 2)
            a, b = lab.a, lab.b
            clients = Clients(t, lab, work)
            say("namespaces: a bridge per VLAN (100, 200), ports eth1.100/eth1.200 on each "
                "device, a sync link, two clients per VLAN")
            for d in (a, b):
                d.write_tree("vlan", lease_time=10, datapath=datapath, advert_ms=100)
            a.start()
            wait_for(lambda: lab.serving("g100") == {"A"} and lab.serving("g200") == {"A"},
                     30, what="A serving both groups alone")
            say(f"deviceA started alone: it serves both VLANs ({who_serves(lab)})")
            b.start()
            wait_for(lambda: lab.settled({"g100": "A", "g200": "B"}), 60,
                     what="B in sync and master of g200")
            say(f"deviceB started: synced from A, took g200 back ({who_serves(lab)}); "
                "both devices work")

            clients.start()
            first = clients.addresses()
            say("clients bound: " + ", ".join(f"{n} {ip}" for n, ip in first.items()))
            wait_for(lambda: len(a.bindings()) == 4 and len(b.bindings()) == 4, 15,
                     what="four sessions on each device")
            print("\nsessions on deviceA (VLAN 100's were made by A, VLAN 200's replicated "
                  "from B):")
            print(a.leases_text())
            print("who serves what (the devices' runtime trees):")
            print(serving_table(lab) + "\n")

            def failover(what: str, do: Callable[[], float], group: str, vid: int,
                         other_vid: int, then: Callable[[], None] = lambda: None) -> None:
                t_event = do()
                wait_for(lambda: group_served(b, group), 30, interval=0.001,
                         what=f"B's runtime tree to say it serves {group}")
                seen = time.time()
                say(what, t_event)
                wait_for(lambda: lab.serving(group) == {"B"}, 30, interval=0.002,
                         what=f"B alone to serve {group}")
                flip = wait_for(lambda: b.served_at({group}, t_event).get(group), 10,
                                what="B's D030 line")
                took = (flip - t_event) * 1000
                say(f"deviceB serves {group} too: its datapath flipped {took:.0f} ms after "
                    f"the event, its runtime tree said so {(seen - t_event) * 1000:.0f} ms "
                    f"after ({who_serves(lab)})", flip)
                then()
                rtt = clients.renewal_rtt(vid)
                say(f"udhcpc@{vid} renewed from B in {rtt:.1f} ms: "
                    f"{clients.addresses()[f'udhcpc@{vid}']}")
                rtt2 = clients.renewal_rtt(other_vid)
                say(f"udhcpc@{other_vid} (B's VLAN all along) renewed in {rtt2:.1f} ms")
                clients.dhclients_renew()
                rows.append((what, group, f"{took:.0f}", f"{rtt:.1f}",
                             "yes" if clients.addresses() == first else "NO"))

            def took_back(how: str) -> None:
                wait_for(lambda: lab.settled({"g100": "A", "g200": "B"}), 60, interval=0.01,
                         what="A to take g100 back")
                say(f"{how}: A in sync and master of g100 again ({who_serves(lab)})")

            print("event 1: deviceA's VLAN 100 port goes down")
            failover("A's eth1.100 down",
                     # The time before the command: B may flip before `ip` returns.
                     lambda: (time.time(), t.link(lab.na, "eth1.100", False))[0],
                     "g100", 100, 200)
            t.link(lab.na, "eth1.100", True)
            took_back("A's eth1.100 back up")

            print("event 2: deviceA's daemon is killed (kill -9)")
            # The unit's ExecStopPost (`dhcp-hotbackup cleanup`: A's VIPs and XDP
            # removed) runs once B serves: it is a Python start that, on these two
            # shared cores, would delay B as a separate box would not be.
            failover("kill -9 of deviceA's daemon", lambda: a.kill9(cleanup=False),
                     "g100", 100, 200, then=a.cleanup)
            wait_for(lambda: len(b.bindings()) == 4, 5, what="B holding every session")
            print("\nwho serves what, A down:")
            print(serving_table(lab) + "\n")
            a.start()
            say("deviceA restarted: resyncing from B before it may preempt g100")
            took_back("deviceA back")
            say(f"sessions on A after the return: {len(a.bindings())}")
            print(serving_table(lab))
            clients.dhclients_renew()
            end = clients.addresses()

            print("\nevent                          group moved to B  takeover ms  "
                  "udhcpc renew ms  every client kept its address")
            for r in rows:
                print(f"  {r[0]:29} {r[1]:>16} {r[2]:>12} {r[3]:>16}  {r[4]}")
            print("  (takeover: the event until B's datapath serves the group, its log D030)")
            print("\nclient         VLAN  address at start  address now")
            for n, (_ns, vid, _c) in clients.all.items():
                print(f"  {n:12} {vid:>4}  {first[n]:17} {end[n]}")
            print("\n`dhcp-hotbackup status` on deviceA at the end (counters left out):")
            print("\n".join(ln for ln in a.status_text().splitlines()
                            if "=" not in ln and not ln.startswith(" " * 12)))
            clients.stop()
            for d in (b, a):
                d.stop()
            say("devices stopped; removing namespaces")
        ok = bool(rows) and all(r[4] == "yes" for r in rows) and first == end
        print("\nresult:", "no client lost or changed its address" if ok else
              "a client lost or changed its address")
        return 0 if ok else 1
    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as e:
        print(f"\ndemo failed: {e}", file=sys.stderr)
        for d in ("A", "B"):
            log = work / d / "daemon.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"--- device{d}'s log (last lines):\n" + "\n".join(tail),
                      file=sys.stderr)
        return 1
    finally:
        if not os.environ.get("DEMO_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
