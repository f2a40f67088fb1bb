"""Many client VLANs on each device: start-up time, memory, and the time from a kill -9
until every VLAN is served by the survivor.

The real daemon pair (lab/vlanpair.py): N client VLANs (a bridge each, each device a
veth port eth1.<vid> into it: this kernel has no 802.1Q devices), split evenly between
G groups (default 2, Huawei's mVRRP shape: one admin group deciding for half the VLANs,
load-sharing: A masters the even groups, B the odd ones), one sync link, XDP on every
port. Printed:

- start-up: `dhcp-hotbackup run` to its runtime tree naming its pid and every group's
  VRRP past initialize (the XDP program compiled and attached to every port, every
  interface bound, every VRRP instance started); for A alone, then B joining;
- steady: B launched to the pair steady (in sync, each group served by its master);
- RSS of each daemon in the steady state (VmRSS), and its open file descriptors;
- kill -9 of A to B's datapath serving every group A served (B's D030 log lines: the
  role map, one write per group however many VLANs follow it), to B's runtime tree
  saying so (groups/<g>/role), to every interface's VIP on B (the service VIPs:
  netlink, then gratuitous ARPs), then to every one of B's interfaces/<if>/role reading
  active; then A restarts and the pair is steady again
  (A preempts its groups once in sync), and the next trial runs.

    sudo .venv/bin/python bench/many_vlans.py [--vlans 1,200] [--groups 2] [--trials 3]
                                              [--advert-ms 100] [--datapath xdp|off]
                                              [--json FILE]

Each VLAN count in --vlans is a pair of its own, measured in turn in the same run, so 1
VLAN (one group) is the baseline printed beside 200. Figures go to docs/benchmarks.md;
not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyroute2 import IPRoute

from appliance.testing.netns import Topology, inside, wait_for
from lab.vlanpair import VlanDevice, VlanPair


def rss_kb(d: VlanDevice) -> tuple[int, int]:
    """(VmRSS in KiB, open fds) of the daemon whose pid its runtime tree names."""
    pid = int(d.value("pid") or 0)
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def flip_time(d: VlanDevice, groups: list[str], after: float) -> float | None:
    """Wall-clock time of the last of `groups`' D030 "active" lines in d's log after
    `after` (the datapath's role word written: the takeover itself; ms resolution)."""
    last = None
    for line in d.log_text().splitlines():
        if " D030 " not in line or not line[:4].isdigit():
            continue
        if len(groups) > 1 and not any(f"group {g} active" in line for g in groups):
            continue
        if len(groups) == 1 and "active" not in line:
            continue
        stamp, ms = line[:19], int(line[20:23])
        t = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + ms / 1000
        if t >= after - 0.001:
            last = t if last is None else max(last, t)
    return last


def started(d: VlanDevice, groups: list[str]) -> bool:
    return d.running() and d.current() and all(
        d.group_vrrp(g) in ("backup", "master") for g in groups)


def vips_on(d: VlanDevice, vips: set[str]) -> bool:
    with inside(d.ns):
        ipr = IPRoute()
    try:
        have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(family=2)}
    finally:
        ipr.close()
    return vips <= have


def measure(n: int, ng: int, a: argparse.Namespace) -> dict[str, object]:
    """One pair with n VLANs in ng groups: its figures (see the module docstring)."""
    ng = min(ng, n)
    per = -(-n // ng)
    vlans = {100 + i: f"g{i // per:02d}" for i in range(n)}
    groups = sorted(set(vlans.values()))
    out: dict[str, object] = {"vlans": n, "groups": ng}
    with tempfile.TemporaryDirectory(prefix="many-vlans-") as tmp, Topology("mv") as t:
        t0 = time.monotonic()
        vp = VlanPair(t, Path(tmp), vlans, advert_ms=a.advert_ms, datapath=a.datapath)
        print(f"topology: {n} VLANs, {ng} groups ({per} VLANs each), built in "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        A, B = vp.a, vp.b
        # A alone, then B
        t0 = time.monotonic()
        A.launch()
        wait_for(lambda: started(A, groups), 300, 0.01, what="A started")
        start_a = time.monotonic() - t0
        t0 = time.monotonic()
        B.launch()
        wait_for(lambda: started(B, groups), 300, 0.01, what="B started")
        start_b = time.monotonic() - t0
        masters = {g: vp.device(m) for g, m in vp.masters.items()}
        vp.wait_served(masters, 300)
        steady = time.monotonic() - t0
        rss = {d.name: rss_kb(d) for d in (A, B)}
        print(f"start-up: A {start_a:.2f} s, B {start_b:.2f} s; B to the pair steady "
              f"{steady:.2f} s", file=sys.stderr)
        print(f"RSS: A {rss['deviceA'][0] / 1024:.1f} MiB ({rss['deviceA'][1]} fds), "
              f"B {rss['deviceB'][0] / 1024:.1f} MiB ({rss['deviceB'][1]} fds)",
              file=sys.stderr)
        a_groups = [g for g, m in vp.masters.items() if m == "a"]
        a_vips = {vp.vip(vid) for vid, g in vlans.items() if g in a_groups}
        trials: list[dict[str, float]] = []
        for k in range(a.trials):
            # Settled first: right after a start the store's fdatasyncs (the catch-up's
            # cursor, the epoch) are still running, and a process in D state dies only
            # when they finish (20-60 ms on this disk), whatever the number of VLANs.
            time.sleep(a.settle)
            # From the signal, polling at once: A is reaped only some 30-65 ms later
            # (its AF_PACKET sockets wait for RCU grace periods), long after its sync
            # connection closed first and B took over (VlanDevice.kill9 would wait).
            assert A.proc is not None and A.current()
            t_kill, w_kill = time.monotonic(), time.time()
            os.kill(A.proc.pid, signal.SIGKILL)
            wait_for(lambda: all(B.group_role(g) == "active" for g in groups), 60, 0.0005,
                     what="B serves every group")
            groups_s = time.monotonic() - t_kill
            wait_for(lambda: vips_on(B, a_vips), 60, 0.002, what="every VIP on B")
            vips_s = time.monotonic() - t_kill
            wait_for(lambda: all(B.value(f"interfaces/{vp.ifnames[v]}/role") == "active"
                                 for v in vlans), 60, 0.005, what="every interface active")
            ifs_s = time.monotonic() - t_kill
            A.proc.wait(10)
            A.cleanup()  # the unit's ExecStopPost, after the figures
            flipped = flip_time(B, a_groups, w_kill)
            flip_s = flipped - w_kill if flipped is not None else float("nan")
            trials.append({"flip_s": flip_s, "groups_s": groups_s, "vips_s": vips_s,
                           "interfaces_s": ifs_s})
            print(f"trial {k + 1}: kill -9 -> B's datapath serves every group {flip_s * 1000:.0f}"
                  f" ms (its log), its runtime tree says so {groups_s * 1000:.1f} ms, every VIP "
                  f"on B {vips_s * 1000:.0f} ms, every interface active in B's runtime tree "
                  f"{ifs_s * 1000:.0f} ms", file=sys.stderr)
            t0 = time.monotonic()
            A.launch()
            vp.wait_served(masters, 300)
            print(f"          A back and steady in {time.monotonic() - t0:.1f} s",
                  file=sys.stderr)
        vp.stop()
    out.update(start_a_s=start_a, start_b_s=start_b, steady_s=steady,
               rss_kib={k: v[0] for k, v in rss.items()}, fds={k: v[1] for k, v in rss.items()},
               trials=trials,
               median={k: statistics.median(x[k] for x in trials) for k in trials[0]}
               if trials else {})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vlans", default="1,200",
                    help="VLAN counts, one pair each, side by side (default 1,200)")
    ap.add_argument("--groups", type=int, default=2)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--advert-ms", type=int, default=100)
    ap.add_argument("--settle", type=float, default=3.0,
                    help="seconds of steady state before each kill (default 3)")
    ap.add_argument("--datapath", default="xdp", choices=["xdp", "off"])
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args()
    runs = [measure(int(n), a.groups, a) for n in a.vlans.split(",")]
    print(f"\nadvert {a.advert_ms} ms, datapath {a.datapath}, {a.trials} kills each "
          "(medians; kill -9 of A to: B's datapath serving A's groups (B's D030 log "
          "lines, ms resolution) / its runtime tree saying so / B holding A's VIPs / "
          "B's runtime tree saying every interface active)")
    print(f"{'VLANs':>5} {'groups':>6} {'start A':>8} {'start B':>8} {'steady':>7} "
          f"{'RSS A':>9} {'RSS B':>9} {'flip':>8} {'groups':>9} {'VIPs':>8} {'tree':>8}")
    for r in runs:
        med: dict[str, float] = r["median"]  # type: ignore[assignment]
        rss: dict[str, int] = r["rss_kib"]  # type: ignore[assignment]
        print(f"{r['vlans']:>5} {r['groups']:>6} {r['start_a_s']:>7.2f}s {r['start_b_s']:>7.2f}s "
              f"{r['steady_s']:>6.2f}s {rss['deviceA'] / 1024:>5.1f} MiB "
              f"{rss['deviceB'] / 1024:>5.1f} MiB {med.get('flip_s', 0) * 1000:>5.0f} ms "
              f"{med.get('groups_s', 0) * 1000:>6.1f} ms "
              f"{med.get('vips_s', 0) * 1000:>5.0f} ms "
              f"{med.get('interfaces_s', 0) * 1000:>5.0f} ms")
    if a.json:
        Path(a.json).write_text(json.dumps({"advert_ms": a.advert_ms, "datapath": a.datapath,
                                            "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
