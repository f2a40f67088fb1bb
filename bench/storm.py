"""Storm: every subscriber comes back at once (after a power cut), through the pair in
`sync` mode and through Kea HA hot-standby, same run, same topology.

perfdhcp's avalanche scenario sends a DISCOVER for each of N clients at once, then
retransmits with exponential backoff for each client until it is bound, and reports the
time until every client had its ACK. Two rounds per server: `cold` (N clients the pair
has never seen) and `again` (the same N clients after the LAN lost power: every one is
known, its binding durable on both devices).

Topology: sync_replication.build (A serves, B follows over the sync link; a load
namespace plays the relay 198.18.0.1 and runs perfdhcp).

    .venv/bin/python bench/storm.py [--clients 50000] [--only ours|kea]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.testing.netns import Topology, wait_for
from bench.sync_replication import build, kea_ha_setup, rd, start, tree


def avalanche(t: Topology, load, clients: int, seed: int, timeout: float) -> dict:
    """One perfdhcp avalanche from the relay; its report, and our own wall-clock time."""
    t0 = time.monotonic()
    r = t.run(load, ["perfdhcp", "-4", "--scenario", "avalanche", "-l", "198.18.0.1",
                     "-R", str(clients), "-s", str(seed), "192.0.2.2"], check=False,
              timeout=timeout)
    took = time.monotonic() - t0
    out = r.stdout + r.stderr
    # "It took 00:00:02.213207 to provision 500 clients."
    m = re.search(r"It took (\d+):(\d+):(\d+(?:\.\d+)?) to provision (\d+) clients", out)
    scen = None
    if m:
        scen = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    sent = [int(x) for x in re.findall(r"sent packets: (\d+)", out)]
    recv = [int(x) for x in re.findall(r"received packets: (\d+)", out)]
    resent = re.search(r"Requests resent: (\d+)", out)
    return {"seconds": round(scen if scen is not None else took, 2),
            "wall_s": round(took, 2), "rc": r.returncode,
            "discover_sent": sent[0] if sent else 0, "offer_recv": recv[0] if recv else 0,
            "request_sent": sent[1] if len(sent) > 1 else 0,
            "ack_recv": recv[1] if len(recv) > 1 else 0,
            "resent": int(resent.group(1)) if resent else None,
            "raw": out if r.returncode else ""}


def ours(clients: int, timeout: float) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="bench-storm-ours-"))
    try:
        with Topology("bst") as t:
            a, b, load = build(t)
            start(t, a, work, "A", tree(work, "A", "sync"))
            start(t, b, work, "B", tree(work, "B", "sync"))
            wait_for(lambda: rd(work, "A", "sync/peer") == "connected", 60, what="in sync")
            out = []
            for name in ("cold", "again"):
                res = avalanche(t, load, clients, seed=7, timeout=timeout)
                # The runtime tree's counts are published about once a second.
                for dev in ("A", "B"):
                    wait_for(lambda d=dev: int(rd(work, d, "leases/active") or 0) >= clients,
                             30, what=f"{dev} holds every lease")
                res |= {"server": "ours (sync mode)", "round": name,
                        "bound_a": int(rd(work, "A", "leases/active") or 0),
                        "shed": int(rd(work, "A", "stats/dropped_overload") or 0)}
                res["bound_b"] = int(rd(work, "B", "leases/active") or 0)
                out.append(res)
                report(res)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def kea(clients: int, timeout: float) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="bench-storm-kea-"))
    try:
        with Topology("bsk") as t:
            load, _ = kea_ha_setup(t, work)
            out = []
            for name in ("cold", "again"):
                res = avalanche(t, load, clients, seed=7, timeout=timeout)
                res |= {"server": "Kea HA hot-standby", "round": name}
                out.append(res)
                report(res)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(r: dict) -> None:
    print(f"  {r['server']:20} {r['round']:6} all {r['ack_recv']:6} bound in "
          f"{r['seconds']:7.2f} s (perfdhcp rc {r['rc']}; DISCOVER sent {r['discover_sent']}, "
          f"OFFER {r['offer_recv']}, REQUEST {r['request_sent']}, ACK {r['ack_recv']}, "
          f"resent {r['resent']})"
          + (f"; A {r['bound_a']} bound, B {r['bound_b']}, shed {r['shed']}"
             if "bound_a" in r else ""), flush=True)
    if r["raw"]:
        print(r["raw"][-2000:], flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50000)
    ap.add_argument("--only", choices=["ours", "kea"])
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    print(f"storm: {a.clients} clients at once (perfdhcp --scenario avalanche)", flush=True)
    res: dict[str, list[dict]] = {}
    if a.only in (None, "ours"):
        res["ours"] = ours(a.clients, a.timeout)
    if a.only in (None, "kea"):
        res["kea"] = kea(a.clients, a.timeout)
    if "ours" in res and "kea" in res:
        for i, name in enumerate(("cold", "again")):
            o, k = res["ours"][i]["seconds"], res["kea"][i]["seconds"]
            print(f"  {name}: ours {o:.2f} s, Kea HA {k:.2f} s: Kea/ours = "
                  f"{k / o if o else float('nan'):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
