"""Takeover time with 1 and with 200 client VLANs: from a failure of device A until the
survivor B serves every VLAN A served.

Topology: lab.vlans.VlanLab with N VLANs (eth1.100 ...; each its own bridge, a veth
port per device), the pair in one of two shapes (--shapes):

- standby: one group for every VLAN (Huawei's mVRRP: one election moves them all),
  A master;
- halves: two groups, ga for the first half of the VLANs (A master) and gb for the
  rest (B master): load-sharing by VLAN with one election per half (mVRRP);
- vlan: a group per VLAN, A master of every other one, so a failure of A moves N/2
  groups (N VRRP instances on each device).

Failures (--failures): `kill` -- kill -9 of A's daemon (B learns it from the sync link:
the connection reset); `stop` -- SIGSTOP of A's daemon (a hung box: its sockets stay
open, nothing resets, B must wait for VRRP's Master_Down_Interval, RFC 5798 §6.1).
The figure is failure -> the last of B's "D030 group <g> active" log lines for the
groups A served (the datapath flip, log timestamps in ms), and its check, failure -> B's
runtime tree showing every interface active (polled every 5 ms). Between trials A is
restarted (or continued) and takes its groups back.

    sudo .venv/bin/python bench/vlan_takeover.py [--vlans 1,200] [--trials 5]
        [--shapes standby,vlan] [--failures kill,stop] [--datapath xdp|off]
        [--advert-ms 100] [--keep DIR]

Each trial also prints how B learnt of the failure, from B's log: the sync link's probe
of A's port (refused: A's daemon is gone) and the reason VRRP gives for the move
(peer_down: the sync link's evidence; master_down: VRRP's timer).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.testing.netns import Topology, wait_for
from lab.vlans import Device, VlanLab, masters


def every_interface_active(d: Device, ifnames: list[str]) -> bool:
    return all(d.value(f"interfaces/{i}/role") == "active" for i in ifnames)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# B's log lines that say which path moved the groups: the sync link's probe (SYNC026
# died / SYNC027 alive / SYNC028 silent) and VRRP's transition reason (peer_down: the
# sync link's evidence; master_down: the Master_Down_Interval timer).
_HOW = re.compile(r"^(\S+ \S+) \S+ \S+: (SYNC02[678]|VRRP_TRANSITION .*-> master \((\w+)\))")


def how_b_learnt(b: Device, since: float) -> str:
    """'sync probe refused -> peer_down', ... from B's log after `since` (a slow trial
    says why it was slow)."""
    seen: list[str] = []
    names = {"SYNC026": "probe refused", "SYNC027": "probe ANSWERED", "SYNC028": "probe silent"}
    try:
        text = (b.root / "daemon.log").read_text(errors="replace")
    except OSError:
        return "?"
    for line in text.splitlines():
        m = _HOW.match(line)
        if not m or datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() \
                < since - 0.002:
            continue
        what = names.get(m.group(2)[:7]) or m.group(3)
        if what not in seen:
            seen.append(what)
    return " -> ".join(seen) or "?"


def trial(lab: VlanLab, failure: str, a_groups: set[str]) -> dict:
    a, b = lab.a, lab.b
    ifnames = [v.ifname for v in lab.vlans]
    assert a.proc is not None
    t0 = time.time()
    os.kill(a.proc.pid, signal.SIGKILL if failure == "kill" else signal.SIGSTOP)
    wait_for(lambda: every_interface_active(b, ifnames), 60, interval=0.005,
             what="B serving every VLAN")
    seen = time.time()
    flips: dict[str, float] = wait_for(
        lambda: (lambda f: f if len(f) == len(a_groups) else None)(
            b.served_at(a_groups, t0)), 10, what="B's D030 lines")
    res = {"log_ms": (max(flips.values()) - t0) * 1000, "tree_ms": (seen - t0) * 1000,
           "first_ms": (min(flips.values()) - t0) * 1000, "how": how_b_learnt(b, t0)}
    # Back to the start: A restarted (kill) or continued (stop), takes its groups back.
    if failure == "kill":
        a.proc.wait(5)
        a.cleanup()
        a.start()
    else:
        os.kill(a.proc.pid, signal.SIGCONT)
    return res


def run(n: int, shape: str, failures: list[str], trials: int, datapath: str,
        advert_ms: int, keep: Path | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-vt-{n}-"))
    out: dict = {}
    try:
        with Topology("bvt") as t:
            t0 = time.monotonic()
            lab = VlanLab(t, work, n)
            built = time.monotonic() - t0
            for d in (lab.a, lab.b):
                d.write_tree(shape, datapath=datapath, advert_ms=advert_ms)
            t1 = time.monotonic()
            lab.a.start(timeout=300)
            lab.b.start(timeout=300)
            want = masters(shape, lab.vlans)
            wait_for(lambda: lab.settled(want), 300, interval=0.2, what="pair settled")
            started = time.monotonic() - t1
            a_groups = {g for g, m in want.items() if m == "A"}
            assert lab.a.proc is not None and lab.b.proc is not None
            out["setup"] = {"lab_s": round(built, 1), "pair_s": round(started, 1),
                            "rss_a_mb": round(rss_mb(lab.a.proc.pid), 1),
                            "rss_b_mb": round(rss_mb(lab.b.proc.pid), 1),
                            "groups": len(want), "a_groups": len(a_groups)}
            print(f"  {n} VLANs, shape {shape}: lab built in {built:.1f} s, pair settled "
                  f"{started:.1f} s after the first start; RSS A {out['setup']['rss_a_mb']}"
                  f" MB, B {out['setup']['rss_b_mb']} MB; {len(want)} groups, "
                  f"{len(a_groups)} on A", flush=True)
            for failure in failures:
                rows = []
                for i in range(trials):
                    r = trial(lab, failure, a_groups)
                    rows.append(r)
                    print(f"    {failure:4} #{i + 1}: B serves every VLAN {r['log_ms']:7.1f} ms "
                          f"after the failure (first group {r['first_ms']:.1f} ms; runtime "
                          f"tree {r['tree_ms']:.1f} ms; B: {r['how']})", flush=True)
                    wait_for(lambda: lab.settled(want), 300, interval=0.1,
                             what="A took its groups back")
                out[failure] = rows
            for d in (lab.b, lab.a):
                d.stop()
    finally:
        if keep is not None:  # the daemons' logs, to read what a slow trial waited for
            for d in ("A", "B"):
                log = work / d / "daemon.log"
                if log.exists():
                    keep.mkdir(parents=True, exist_ok=True)
                    shutil.copy(log, keep / f"{n}-{shape}-{d}.log")
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vlans", default="1,200")
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--shapes", default="standby,halves")
    ap.add_argument("--failures", default="kill,stop")
    ap.add_argument("--datapath", choices=["xdp", "off"], default="xdp")
    ap.add_argument("--advert-ms", type=int, default=100)
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="copy each run's daemon logs to DIR (<vlans>-<shape>-A|B.log)")
    a = ap.parse_args()
    # SIGTERM (and SIGINT, ignored in a background job) unwind through the Topology's
    # exit: the namespaces and processes go even when the run is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # 200 VLANs: ~1,000 interfaces in this process's namespaces and the daemons' sockets.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    failures = a.failures.split(",")
    results = []
    for n in (int(x) for x in a.vlans.split(",")):
        for shape in a.shapes.split(","):
            if n == 1 and shape in ("vlan", "halves"):
                continue  # one VLAN, one group: the standby shape
            print(f"{n} VLANs, shape {shape}, datapath {a.datapath}, adverts "
                  f"{a.advert_ms} ms", flush=True)
            results.append((n, shape, run(n, shape, failures, a.trials, a.datapath,
                                          a.advert_ms, a.keep)))
    print(f"\n{'VLANs':>5} {'shape':8} {'groups A/all':>12} {'failure':8} "
          f"{'every VLAN served, median ms':>28} {'max':>7}  pair start s  RSS A MB")
    for n, shape, r in results:
        s = r["setup"]
        for f in failures:
            ms = [x["log_ms"] for x in r.get(f, [])]
            if ms:
                print(f"{n:>5} {shape:8} {s['a_groups']:>5}/{s['groups']:<6} {f:8} "
                      f"{statistics.median(ms):>28.1f} {max(ms):>7.1f}  "
                      f"{s['pair_s']:>12} {s['rss_a_mb']:>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
