"""VRRP failover benchmark: master killed -> the backup's first gratuitous ARP on the LAN.

Ours (the daemon, `dhcp-hotbackup run` with a vrrp/ folder and no sync/, datapath off
unless --datapath xdp) and keepalived 2.2.7 on the same namespace topology in the same
run, at several advert intervals (`--impl node` adds VrrpService alone,
lab.vrrp_node, to the progress lines on stderr):

    lan bridge ── m   (eth1 192.0.2.10, priority 150: the master)
               ├─ b   (eth1 192.0.2.11, priority 100: the backup)
               └─ obs (tcpdump -tt: kernel capture timestamps of adverts and GARPs)

A trial: m is master and b backup; after a few intervals of steady state, wait for one
of m's adverts, then kill m a random phase later (SIGKILL: the whole keepalived process
group, or our daemon's single process; --signal term for a priority-0 shutdown). The
phases come from one seeded sequence, the same for both implementations, so their
trials are paired. Two figures per trial, from the observer's capture timestamps:

- failover: kill -> b's first gratuitous ARP (what a LAN sees);
- overhead: m's last advert -> b's first gratuitous ARP, minus b's Master_Down_Interval
  (RFC 5798 §6.1): free of the kill phase, it is the timer lateness plus the time from
  the timer to the first GARP -- the implementation's own cost.

m is then restarted, preempts back, and the next trial begins. The goal per interval is
b's Master_Down_Interval, 3 x interval + Skew_Time (§6.1).

    sudo .venv/bin/python bench/vrrp_failover.py [--trials 10] [--intervals 10,100,1000]
                              [--impl ours,keepalived[,node]] [--signal kill|term]
                              [--seed 1] [--datapath off|xdp] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from appliance.testing.netns import Topology, wait_for
from appliance.vrrp.timers import master_down_interval_s
from lab.vrrp_node import VrrpLab

MASTER_PRIO = 150
BACKUP_PRIO = 100


@dataclass
class Result:
    impl: str
    interval_ms: int
    failover: list[float] = field(default_factory=list)  # seconds, kill -> GARP
    overhead: list[float] = field(default_factory=list)  # seconds, last advert -> GARP - MDI
    spurious: int = 0  # takeovers by b while m was alive (advert gaps, timer jitter)
    errors: list[str] = field(default_factory=list)


def _median_ms(xs: list[float]) -> float | None:
    return statistics.median(xs) * 1000 if xs else None


class Pair:
    """m and b of one implementation on a fresh topology."""

    def __init__(self, impl: str, interval_ms: int, workdir: str, sig: int,
                 datapath: str = "off") -> None:
        self.impl = impl
        self.sig = sig
        self.datapath = datapath
        self.topo = Topology(prefix="vb")
        try:
            self.lab = VrrpLab(self.topo, workdir, advert_ms=interval_ms)
            self.lab.host("m")
            self.lab.host("b")
            self.watch = self.lab.arp_watch()
            self.m: subprocess.Popen[bytes] | None = None
            self._start("b", BACKUP_PRIO)
        except BaseException:
            self.topo.close()
            raise

    def close(self) -> None:
        self.topo.close()

    def _start(self, name: str, prio: int) -> subprocess.Popen[bytes]:
        # no second batch of GARPs (keepalived's garp_master_delay, our garp_repeat_s): it
        # would land in the next trial's capture
        if self.impl == "ours":
            return self.lab.start_daemon(name, prio, garp_repeat_s=0, datapath=self.datapath)
        if self.impl == "node":
            return self.lab.start_ours(name, prio, "--garp-repeat-s", "0")
        return self.lab.start_keepalived(name, prio, garp_repeat_s=0)

    def _settled(self) -> bool:
        if self.impl == "keepalived":
            return self.lab.has_vip("m") and not self.lab.has_vip("b")
        # the daemon's state also requires its role: active on m, standby on b
        return self.lab.in_state("m", "master") and self.lab.in_state("b", "backup")

    def start_master(self, timeout: float) -> None:
        """(Re)start m and wait until it has taken over and b is backup."""
        t0 = time.time()
        self.m = self._start("m", MASTER_PRIO)
        self.watch.wait(self.lab.mac["m"], t0, timeout)
        wait_for(self._settled, timeout, interval=0.01, what=f"{self.impl}: m master")

    def kill_master(self) -> float:
        assert self.m is not None
        t = time.time()
        if self.impl != "keepalived" and self.sig == signal.SIGKILL:
            self.topo.kill9(self.m)
        else:  # keepalived: parent and VRRP child together (a process group)
            os.killpg(self.m.pid, self.sig)
        return t


def _bursts(times: list[float], gap_s: float = 0.005) -> int:
    """Takeovers in a list of GARP times: each sends a burst of back-to-back GARPs."""
    times = sorted(times)
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > gap_s)


def run_one(impl: str, interval_ms: int, trials: int, sig: int, seed: int,
            workdir: str, datapath: str = "off") -> Result:
    res = Result(impl, interval_ms)
    interval = interval_ms / 1000
    mdi = master_down_interval_s(BACKUP_PRIO, interval_ms // 10)
    timeout = 4 * mdi + 30  # a daemon (re)start on a loaded machine
    phases = random.Random(seed)
    pair = Pair(impl, interval_ms, workdir, sig, datapath)
    m_ip, b_mac = pair.lab.ip["m"], pair.lab.mac["b"]
    try:
        pair.start_master(timeout)
        for i in range(trials):
            stable_from = time.time()
            phase = phases.uniform(0, interval)
            t_adv = pair.watch.wait_advert(m_ip, stable_from + 3 * interval, timeout)
            time.sleep(max(0.0, t_adv + phase - time.time()))
            t_kill = pair.kill_master()
            res.spurious += _bursts([t for t, mac, _ in list(pair.watch.garps)
                                     if mac == b_mac and stable_from < t < t_kill])
            try:
                t_garp = pair.watch.wait(b_mac, t_kill, timeout)
            except TimeoutError as e:
                res.errors.append(f"trial {i}: {e}")
            else:
                res.failover.append(t_garp - t_kill)
                last = pair.watch.last_advert(m_ip, t_kill + 0.001)
                if last is not None:
                    res.overhead.append(t_garp - last - mdi)
            assert pair.m is not None
            pair.topo.stop(pair.m, sig=signal.SIGKILL)  # reap (already dead for kill)
            pair.start_master(timeout)
    finally:
        pair.close()
    return res


def _cell(xs: list[float]) -> str:
    if not xs:
        return "-"
    return (f"{statistics.median(xs) * 1000:.1f} ({min(xs) * 1000:.1f}-"
            f"{max(xs) * 1000:.1f})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--intervals", default="10,100,1000",
                   help="advert intervals in ms, comma-separated (multiples of 10)")
    p.add_argument("--impl", default="ours,keepalived")
    p.add_argument("--signal", choices=("kill", "term"), default="kill")
    p.add_argument("--seed", type=int, default=1, help="seed of the kill phases")
    p.add_argument("--datapath", choices=("off", "xdp"), default="off",
                   help="our daemon's datapath/mode (xdp: bcc compiles at every restart)")
    p.add_argument("--json", help="also write the raw samples here")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    impls = args.impl.split(",")
    if "keepalived" in impls and shutil.which("keepalived") is None:
        sys.exit("keepalived not installed")
    sig = signal.SIGKILL if args.signal == "kill" else signal.SIGTERM
    intervals = [int(x) for x in args.intervals.split(",")]

    results: dict[tuple[str, int], Result] = {}
    with tempfile.TemporaryDirectory(prefix="vrrp-bench-") as workdir:
        for interval in intervals:
            for impl in impls:
                d = os.path.join(workdir, f"{impl}-{interval}")
                os.makedirs(d)
                t0 = time.monotonic()
                r = run_one(impl, interval, args.trials, sig, args.seed, d, args.datapath)
                results[(impl, interval)] = r
                print(f"# {impl:10s} {interval:5d} ms adverts: failover {_cell(r.failover)} ms,"
                      f" overhead {_cell(r.overhead)} ms, n={len(r.failover)} "
                      f"({time.monotonic() - t0:.0f} s)"
                      + (f"; errors: {r.errors}" if r.errors else ""),
                      file=sys.stderr, flush=True)

    print(f"\nVRRP failover (ours: the daemon, datapath {args.datapath}):"
          f" {args.signal} the master (priority {MASTER_PRIO}) -> the backup's"
          f" (priority {BACKUP_PRIO}) first gratuitous ARP, ms, median (min-max) of n paired"
          " trials\n")
    print("| advert | goal 3xI+skew | ours failover | keepalived failover | ours/ka "
          "| ours overhead | ka overhead | ours within goal | n ours/ka | spurious ours/ka |")
    print("|" + "|".join("---" for _ in range(10)) + "|")
    for interval in intervals:
        goal = master_down_interval_s(BACKUP_PRIO, interval // 10) * 1000
        ours = results.get(("ours", interval), Result("ours", interval))
        ka = results.get(("keepalived", interval), Result("keepalived", interval))
        mo, mk = _median_ms(ours.failover), _median_ms(ka.failover)
        ratio = f"{mo / mk:.2f}" if mo and mk else "-"
        within = (f"{sum(s * 1000 <= goal for s in ours.failover)}/{len(ours.failover)}"
                  if ours.failover else "-")
        print(f"| {interval} ms | {goal:.1f} | {_cell(ours.failover)} | {_cell(ka.failover)} "
              f"| {ratio} | {_cell(ours.overhead)} | {_cell(ka.overhead)} | {within} "
              f"| {len(ours.failover)}/{len(ka.failover)} | {ours.spurious}/{ka.spurious} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k[0]}/{k[1]}": {"failover": v.failover, "overhead": v.overhead,
                                           "spurious": v.spurious, "errors": v.errors}
                       for k, v in results.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
