"""Client-visible outage of a failover: ours (VRRP + the sync link) against Kea HA.

A client renews every 10 ms through the switchover (lab.hapair.Renewer:
a REQUEST in RENEWING -- ciaddr set, unicast to the server identifier of its last ACK;
once T2 of that ACK has passed without an ACK, REBINDING: broadcast -- as RFC 2131 has
a client do). The outage is the time from its last ACK from A to its first ACK from B.
Failures of A:

- link: A's client link goes down (netlink, in A's namespace);
- kill: kill -9 of A's server process (then `cleanup`, as our unit's ExecStopPost does,
  once B has answered: here A and B share two cores, and a Python process starting
  on "A" would take CPU from B that a separate box would not);
- box: whole-box failure: A's sync link and client link down back to back (~50 us apart).

The topology is lab.hapair.HaPair's: A (priority 120) and B (100) on one
client LAN bridge with a veth sync link; the renewer in a client namespace. Ours runs
at each VRRP advert interval (--intervals); between trials A is stopped, its links
brought up, and it is started again: it syncs, preempts, and the renewer sees its ACKs
before the next trial. A random delay (seeded) before each failure spreads its phase
over the advert cycle.

Kea HA (kea-dhcp4 2.2 hot-standby, lab.kea.kea_ha_config: the MT HTTP
listener on the sync link, heartbeat-delay / max-response-delay / max-ack-delay 1 ms,
max-unacked-clients 0, its fastest) runs on the same topology in the same run. Kea has
no virtual server identifier: its renewer renews to the primary's own address and can
only reach the standby once T2 has passed (lease --kea-lease s, T2 = 7/8 of it) -- that
is what a real client sees. A second renewer that broadcasts every request (REBINDING
from the start) shows how soon Kea's standby itself answers. A Kea trial that sees no
ACK from the standby within --kea-wait s is reported as "> wait".

Figures per trial: outage; "excess" = outage minus one renewal interval (a perfect,
instant switchover still costs the renewer one interval: its last ACK from A and its
first from B answer consecutive requests); failure -> first ACK from B; failure -> B's
VRRP transition (its runtime vrrp/last_transition); the round trip of B's first ACK.

    sudo .venv/bin/python bench/failover_outage.py [--trials 10] [--intervals 10,100]
        [--scenarios link,kill,box] [--kea-trials 10] [--kea-link-trials 3]
        [--kea-lease 4] [--kea-wait 20] [--no-kea] [--datapath xdp|off] [--seed 1]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from appliance.testing.netns import Topology, wait_for
from lab.hapair import (
    A_IP,
    A_MAC,
    B_MAC,
    PRIO_B,
    HaPair,
    Renewer,
    master_down_ms,
    wall_of,
)
from lab.kea import kea_ha_config, start_kea

SCENARIOS = ("link", "kill", "box")
TITLES = {"link": "client link down", "kill": "kill -9 of the server", "box": "whole box down"}


@dataclass
class Series:
    impl: str
    scenario: str
    interval_ms: int  # 0 for Kea
    outage: list[float] = field(default_factory=list)  # ms; None-free: timeouts apart
    excess: list[float] = field(default_factory=list)
    from_failure: list[float] = field(default_factory=list)
    takeover: list[float] = field(default_factory=list)
    first_rtt: list[float] = field(default_factory=list)
    broadcast: list[float] = field(default_factory=list)  # Kea: the broadcasting renewer
    timeouts: int = 0
    broadcast_timeouts: int = 0
    naks: int = 0


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def fmt(xs: list[float], timeouts: int = 0, wait: float = 0.0) -> str:
    if not xs:
        return f"> {wait * 1000:.0f} ({timeouts}/{timeouts})" if timeouts else "-"
    s = f"{med(xs):.1f} ({max(xs):.1f})"
    if timeouts:
        s += f" +{timeouts}x>{wait:.0f}s"
    return s


# -- ours ------------------------------------------------------------------------------
def fail(ha: HaPair, scenario: str) -> tuple[float, float]:
    """Make A fail; returns (monotonic, wall) of the failure: the instant the signal
    was sent, or the kernel had set the (last) link down."""
    if scenario == "kill":
        t = time.monotonic()
        ha.a.kill9(cleanup=False)  # cleanup after B's first ACK (module docstring)
    elif scenario == "link":
        t = ha.a.client_link(False)
    else:
        t = ha.a.box_down()
    return t, wall_of(t)


def restore(ha: HaPair, scenario: str, timeout: float = 120) -> None:
    """A stopped (it is not serving anyway), its links up, started again; it syncs and
    preempts: wait for the steady state."""
    if ha.a.running():
        ha.a.stop()
    if scenario == "link":
        ha.a.client_link(True)
    elif scenario == "box":
        ha.a.box_up()
    ha.a.start(timeout)
    ha.steady(ha.a, timeout)


def run_ours(work: Path, interval: int, scenarios: list[str], trials: int, datapath: str,
             rng: random.Random, probe_s: float) -> list[Series]:
    out = []
    with Topology("fo") as t:
        ha = HaPair(t, work, advert_ms=interval, datapath=datapath,
                    values={"datapath/rate_limit_pps": "0"})
        ha.start(120)
        ns, mac = ha.client("probe")
        probe = Renewer(t, ns, mac, work / "probe", interval=probe_s)
        probe.lease()
        probe.start()
        try:
            for scenario in scenarios:
                s = Series("ours", scenario, interval)
                for i in range(trials):
                    probe.wait_acks_from(A_MAC, time.monotonic(), 5, timeout=60)
                    time.sleep(rng.uniform(0, 2 * interval / 1000))  # random failure phase
                    before = ha.b.transition().get("time", 0)
                    t_fail, wall = fail(ha, scenario)
                    try:
                        probe.wait_acks_from(B_MAC, t_fail, 1, timeout=30)
                    except AssertionError:
                        s.timeouts += 1
                        print(f"  ours {interval} ms {scenario} #{i + 1}: no ACK from B",
                              flush=True)
                        restore(ha, scenario)
                        continue
                    if scenario == "kill":
                        ha.a.cleanup()
                    last_a, first_b = probe.switch(A_MAC, B_MAC, t_fail)
                    first = next(r for r in probe.acks_from(B_MAC, t_fail) if r["t"] == first_b)
                    ha.b.wait(lambda b=before: ha.b.transition().get("time", 0) > b,
                              "its transition published", 10)
                    tr = ha.b.transition()
                    s.outage.append((first_b - last_a) * 1000)
                    s.excess.append((first_b - last_a - probe_s) * 1000)
                    s.from_failure.append((first_b - t_fail) * 1000)
                    s.takeover.append((tr["time"] - wall) * 1000)
                    s.first_rtt.append(first["rtt"] * 1000)
                    print(f"  ours {interval:4} ms {scenario:4} #{i + 1:2}: outage "
                          f"{s.outage[-1]:7.1f} ms, failure->B ACK {s.from_failure[-1]:7.1f}, "
                          f"B master after {s.takeover[-1]:7.1f} ({tr.get('reason')}), B's "
                          f"first rtt {s.first_rtt[-1]:5.1f}", flush=True)
                    restore(ha, scenario)
                s.naks = len(probe.naks())
                out.append(s)
        finally:
            probe.stop()
            for d in ha.devices:
                if d.running():
                    d.stop()
    return out


# -- Kea HA ----------------------------------------------------------------------------
class KeaPair:
    URLS = {"primary_url": "http://198.51.100.1:8000/",
            "standby_url": "http://198.51.100.2:8000/"}

    def __init__(self, t: Topology, ha: HaPair, work: Path, lease: int) -> None:
        self.t, self.ha, self.work, self.lease = t, ha, work, lease
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        dev = self.ha.a if name == "primary" else self.ha.b
        d = self.work / name
        cfg = kea_ha_config(d, "eth1", [("192.0.2.0/24", "192.0.2.100 - 192.0.2.199")],
                            this=name, lease_time=self.lease, heartbeat_ms=1,
                            max_response_ms=1, max_ack_ms=1, max_unacked=0, **self.URLS)
        cfg["Dhcp4"]["loggers"].append({
            "name": "kea-dhcp4.ha-hooks", "severity": "INFO",
            "output_options": [{"output": str(d / "ha.log")}]})
        self.procs[name] = start_kea(self.t, dev.ns, d, cfg)

    def hot_standby(self, name: str) -> int:
        """How often `name` entered the HOT-STANDBY state (its HA log)."""
        try:
            text = (self.work / name / "ha.log").read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return text.count("to HOT-STANDBY state")

    def kill_primary(self) -> None:
        p = self.procs["primary"]
        if p.poll() is None:
            self.t.kill9(p)


def run_kea(work: Path, scenarios: list[str], trials: int, link_trials: int, lease: int,
            wait: float, rng: random.Random, probe_s: float) -> list[Series]:
    out = []
    with Topology("fk") as t:
        ha = HaPair(t, work, advert_ms=100)  # the topology only: no daemon runs
        kea = KeaPair(t, ha, work, lease)
        t0 = time.monotonic()
        kea.start("primary")
        kea.start("standby")
        ns, mac = ha.client("probe")
        probe = Renewer(t, ns, mac, work / "probe", server=A_IP, interval=probe_s)
        probe.lease(timeout=120)
        print(f"  kea HA pair: first lease {time.monotonic() - t0:.1f} s after a cold start",
              flush=True)
        bns, bmac = ha.client("bcast")
        bprobe = Renewer(t, bns, bmac, work / "bcast", server=A_IP, interval=probe_s,
                         broadcast=True)
        bprobe.lease(timeout=120)
        bprobe.start()
        try:
            for scenario in scenarios:
                s = Series("kea", scenario, 0)
                n = link_trials if scenario == "link" else trials
                for i in range(n):
                    # The renewer starts over against the primary (after a failover it
                    # renews to the standby's identifier, which stops answering once the
                    # primary is back in hot-standby).
                    probe.stop()
                    probe.start()
                    probe.wait_acks_from(A_MAC, time.monotonic(), 5, timeout=120)
                    bprobe.wait_acks_from(A_MAC, time.monotonic(), 5, timeout=120)
                    time.sleep(rng.uniform(0, 0.2))  # random failure phase
                    if scenario == "kill":
                        t_fail = time.monotonic()
                        kea.kill_primary()
                    elif scenario == "link":
                        t_fail = ha.a.client_link(False)
                    else:
                        t_fail = ha.a.box_down()
                    try:
                        probe.wait_acks_from(B_MAC, t_fail, 1, timeout=wait)
                        last_a, first_b = probe.switch(A_MAC, B_MAC, t_fail)
                        s.outage.append((first_b - last_a) * 1000)
                        s.excess.append((first_b - last_a - probe_s) * 1000)
                        s.from_failure.append((first_b - t_fail) * 1000)
                        got = f"{s.outage[-1]:8.1f} ms"
                    except AssertionError:
                        s.timeouts += 1
                        got = f"none within {wait:.0f} s"
                    try:
                        wait_for(lambda tf=t_fail: bprobe.acks_from(B_MAC, tf), 1.0, 0.01)
                        b_last, b_first = bprobe.switch(A_MAC, B_MAC, t_fail)
                        s.broadcast.append((b_first - b_last) * 1000)
                        bgot = f"{s.broadcast[-1]:8.1f} ms"
                    except TimeoutError:
                        s.broadcast_timeouts += 1
                        bgot = "none"
                    print(f"  kea {scenario:4} #{i + 1:2}: renewing client outage {got}; "
                          f"broadcasting client {bgot}", flush=True)
                    # Restore: the primary back (fresh process, same lease file), links up,
                    # until it is in hot-standby again.
                    kea.kill_primary()
                    if scenario == "link":
                        ha.a.client_link(True)
                    elif scenario == "box":
                        ha.a.box_up()
                    before = kea.hot_standby("primary")
                    kea.start("primary")
                    wait_for(lambda b=before: kea.hot_standby("primary") > b, 120,
                             what="Kea primary back in hot-standby")
                s.naks = len(probe.naks())
                out.append(s)
        finally:
            probe.stop()
            bprobe.stop()
    return out


# -- the table -------------------------------------------------------------------------
def goal_ms(scenario: str, interval: int) -> float:
    if scenario == "box":
        return master_down_ms(interval, PRIO_B) + 5
    return 5.0


def report(ours: list[Series], kea: dict[str, Series], kea_wait: float, probe_ms: float,
           trials: int) -> None:
    print(f"\nClient-visible outage, ms: median (max) of {trials} trials; renewer every "
          f"{probe_ms:g} ms. 'excess' = outage - {probe_ms:g} ms (one renewal interval).")
    head = (f"{'failure':22} {'advert':>6} {'goal':>6} | {'ours outage':>14} {'excess':>14} "
            f"{'fail->B ACK':>14} {'B master':>12} {'B 1st rtt':>10} | "
            f"{'Kea renewing':>18} {'Kea broadcast':>16} | {'Kea/ours':>9}")
    print(head)
    print("-" * len(head))
    for s in ours:
        k = kea.get(s.scenario)
        goal = goal_ms(s.scenario, s.interval_ms)
        if k is not None:
            kstr = fmt(k.outage, k.timeouts, kea_wait)
            kb = fmt(k.broadcast, k.broadcast_timeouts, 1.0)
            if k.outage and s.outage:
                ratio = f"{med(k.outage) / med(s.outage):.0f}x"
            elif k.timeouts and s.outage:
                ratio = f">{kea_wait * 1000 / med(s.outage):.0f}x"
            else:
                ratio = "-"
        else:
            kstr, kb, ratio = "-", "-", "-"
        print(f"{TITLES[s.scenario]:22} {s.interval_ms:>6} {goal:>6.1f} | "
              f"{fmt(s.outage, s.timeouts, 30):>14} {fmt(s.excess):>14} "
              f"{fmt(s.from_failure):>14} {fmt(s.takeover):>12} {fmt(s.first_rtt):>10} | "
              f"{kstr:>18} {kb:>16} | {ratio:>9}")
    for s in ours:
        goal = goal_ms(s.scenario, s.interval_ms)
        inside = sum(1 for x in s.outage if x < goal)
        inside_x = sum(1 for x in s.excess if x < goal)
        print(f"  {TITLES[s.scenario]:22} at {s.interval_ms:3} ms: outage under the goal in "
              f"{inside}/{len(s.outage)} trials, excess under it in {inside_x}/{len(s.excess)}"
              f"; NAKs seen by the renewer: {s.naks}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--intervals", default="10,100")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--kea-trials", type=int, default=None, help="default: --trials")
    ap.add_argument("--kea-link-trials", type=int, default=3,
                    help="Kea never fails over on a client link loss: each trial waits "
                    "--kea-wait for nothing")
    ap.add_argument("--kea-lease", type=int, default=4, help="Kea's lease time, s")
    ap.add_argument("--kea-wait", type=float, default=20.0)
    ap.add_argument("--no-kea", action="store_true")
    ap.add_argument("--datapath", choices=("xdp", "off"), default="xdp")
    ap.add_argument("--probe-ms", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--keep", action="store_true", help="keep the work directories (logs)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 1
    scenarios = [x for x in a.scenarios.split(",") if x]
    intervals = [int(x) for x in a.intervals.split(",") if x]
    rng = random.Random(a.seed)
    probe_s = a.probe_ms / 1000
    ours: list[Series] = []
    kea: dict[str, Series] = {}
    t0 = time.monotonic()
    for interval in intervals:
        work = Path(tempfile.mkdtemp(prefix=f"bench-failover-{interval}-"))
        print(f"ours, adverts every {interval} ms, datapath {a.datapath}:", flush=True)
        try:
            ours += run_ours(work, interval, scenarios, a.trials, a.datapath, rng, probe_s)
        finally:
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)
    if not a.no_kea:
        work = Path(tempfile.mkdtemp(prefix="bench-failover-kea-"))
        print(f"Kea HA hot-standby, 1 ms timers, lease {a.kea_lease} s:", flush=True)
        try:
            for s in run_kea(work, scenarios, a.kea_trials or a.trials, a.kea_link_trials,
                             a.kea_lease, a.kea_wait, rng, probe_s):
                kea[s.scenario] = s
        finally:
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)
    report(ours, kea, a.kea_wait, a.probe_ms, a.trials)
    print(f"\n(run took {time.monotonic() - t0:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"ours": [vars(s) for s in ours],
                       "kea": {k: vars(v) for k, v in kea.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
