"""`make demo`: a server in network namespaces and real clients against it, with a timeline.

Until the two-device failover demo exists, this shows one device: DeviceA serves a LAN
with ISC dhclient and busybox udhcpc on it, and a client behind ISC dhcrelay (-a, so
Option 82 is added); the sessions, the counters, a renewal, a kill -9 and restart with
every lease kept. Everything lives in namespaces that are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.testing.clients import Dhclient, Dhcrelay, Udhcpc
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.trees import standalone_tree

ROOT = Path(__file__).resolve().parents[2]
CLI = str(ROOT / ".venv/bin/dhcp-hotbackup")
_T0 = time.monotonic()


def say(event: str) -> None:
    print(f"  {time.monotonic() - _T0:7.2f}s  {event}", flush=True)


def addr_of(t: Topology, ns: Netns, ifname: str) -> str:
    out = t.run(ns, ["ip", "-4", "-o", "addr", "show", "dev", ifname], check=False).stdout
    for word in out.split():
        if "/" in word and word[0].isdigit():
            return word.split("/")[0]
    return "-"


def lease_starts(etc: Path) -> dict[str, float]:
    out = subprocess.run([CLI, "leases", "--json", "--config", str(etc)], capture_output=True,
                         text=True, check=True).stdout
    return {x["ip"]: x["start"] for x in json.loads(out)}


def renewed(etc: Path, before: dict[str, float]) -> bool:
    now = lease_starts(etc)
    return all(now.get(ip, 0) > start for ip, start in before.items())


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (network namespaces)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="dhcp-hotbackup-demo-"))
    etc = standalone_tree(work, name="deviceA", lease_time=10, extra={
        "pools/relayed/subnet": "203.0.113.0/24",
        "pools/relayed/range": "203.0.113.100-203.0.113.199",
        "pools/relayed/router": "203.0.113.1",
        "pools/relayed/lease_time": "10",
    })
    print("dhcp-hotbackup demo: one device (DeviceA) serving real clients in namespaces")
    print(f"  config tree {etc} (state and runtime tree beside it)\n")
    print("timeline:")
    try:
        with Topology("demo") as t:
            lan = t.lan()
            dev = t.host("deviceA")
            t.attach(dev, lan, "eth1", "192.0.2.2/24")
            t.run(dev, ["ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.3"])
            relay = t.host("relay")
            t.attach(relay, lan, "up0", "192.0.2.3/24")
            t.run(relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            lan2 = t.lan("lan2")
            t.attach(relay, lan2, "down0", "203.0.113.1/24")
            c1 = t.host("dhclient")
            t.attach(c1, lan, "eth0")
            c2 = t.host("udhcpc")
            t.attach(c2, lan, "eth0")
            c3 = t.host("relayed")
            t.attach(c3, lan2, "eth0")
            say("namespaces built: lan bridge, deviceA, relay (dhcrelay -a), 3 client hosts")

            log = open(work / "deviceA.log", "wb")
            daemon = t.popen(dev, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
            wait_for(lambda: (work / "run/role").exists(), 15, what="deviceA to start")
            say(f"deviceA started (pid {daemon.pid}): role "
                f"{(work / 'run/role').read_text().strip()}")
            Dhcrelay(t, relay, "up0", "down0", "192.0.2.2", work / "relay").start()
            say("dhcrelay -a started in the relay namespace")

            # Clients run in the foreground with scripts that only set the address.
            Dhclient(t, c1, "eth0", work / "c1", hostname="laptop").start() \
                .wait_event("BOUND")
            say(f"dhclient bound {addr_of(t, c1, 'eth0')}")
            Udhcpc(t, c2, "eth0", work / "c2").start().wait_event("bound")
            say(f"udhcpc bound {addr_of(t, c2, 'eth0')}")
            Dhclient(t, c3, "eth0", work / "c3", hostname="relayed-pc").start() \
                .wait_event("BOUND")
            say(f"relayed dhclient bound {addr_of(t, c3, 'eth0')} (through dhcrelay, "
                "Option 82 added)")

            print("\nsessions on deviceA (`dhcp-hotbackup leases`):")
            print(subprocess.run([CLI, "leases", "--config", str(etc)], capture_output=True,
                                 text=True).stdout)
            before = {n: addr_of(t, ns, "eth0") for n, ns in
                      (("dhclient", c1), ("udhcpc", c2), ("relayed", c3))}
            starts = lease_starts(etc)
            wait_for(lambda: renewed(etc, starts), 40, interval=0.2, what="renewals at T1")
            say("all three renewed at T1 (lease 10 s, T1 5 s): REQUESTs ACKed, same addresses")

            t.kill9(daemon)
            say("deviceA killed with kill -9")
            log = open(work / "deviceA.log", "ab")
            daemon = t.popen(dev, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
            wait_for(lambda: (work / "run/pid").read_text().strip() == str(daemon.pid), 15,
                     what="deviceA restart")
            say("deviceA restarted: leases replayed from its journal")
            starts = lease_starts(etc)
            wait_for(lambda: renewed(etc, starts), 40, interval=0.2,
                     what="renewals after restart")
            after = {n: addr_of(t, ns, "eth0") for n, ns in
                     (("dhclient", c1), ("udhcpc", c2), ("relayed", c3))}
            say("all three renewed against the restarted server")

            print("\nclient        before        after")
            for n in before:
                same = "same" if before[n] == after[n] else "CHANGED"
                print(f"  {n:10} {before[n]:13} {after[n]:13} {same}")
            print("\n`dhcp-hotbackup status`:")
            print(subprocess.run([CLI, "status", "--config", str(etc)], capture_output=True,
                                 text=True).stdout)
            t.stop(daemon)
            say("deviceA stopped; removing namespaces")
        ok = all(before[n] == after[n] != "-" for n in before)
        print("\nresult:", "every client kept its address" if ok else "a client lost its "
              "address")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
