"""Load-sharing: DORA/s through the pair with both devices working, against the same pair
in hot-standby and against Kea HA in load-balancing mode, interleaved in one run.

Topology: lab.vlans.VlanLab, two VLANs (eth1.100, eth1.200, each its own bridge) with
devices A and B on both and a veth sync link between them; a load namespace on each
VLAN plays a relay (198.18.0.1 on VLAN 100, 198.19.0.1 on VLAN 200: RFC 2544's range)
and sends to an address both devices hold, at the Ethernet broadcast address: every
relayed packet reaches both devices, as a relay configured with both servers would
send it to each. One perfdhcp per VLAN runs at half the offered rate, with disjoint
client MACs; the figure for a rate step is the sum of both, and a step passes when the
DISCOVER-OFFER and REQUEST-ACK losses summed over both stay under 1%.

Setups (--setups):

- ls-vlan: ours, load-sharing by VLAN: group g100 on eth1.100 with A master, g200 on
  eth1.200 with B master; each device serves one VLAN and replicates to the other.
- ls-bucket: ours, load-sharing on one LAN: groups ga and gb on both VLANs, clients
  split by the RFC 3074 hash (A answers ga's bucket, B gb's), each group allocating from
  its half of every pool, which the daemon derives itself.
- hs: ours, hot-standby: one group g on both VLANs, A master, B in sync and idle.
- kea-lb: Kea 2.2 HA load-balancing (lab.kea.kea_ha_lb_config: the MT dedicated HTTP
  listener; pools cut in halves by hand with the HA_server1/HA_server2 classes).
- kea-hs: Kea 2.2 HA hot-standby (lab.kea.kea_ha_config), for reference.

Ours runs with sync/mode sync (a client's ACK waits for the peer's ack), Kea HA sends
every lease update to its partner before the ACK: the same promise. Each round runs
every setup once, the order rotated each round (the shared box's load hits them alike);
a setup's figure is its highest passing rate; the table gives medians over the rounds
and the ratios of those medians, with the per-round ratios beside them.

    sudo .venv/bin/python bench/loadsharing.py [--rounds 3] [--period 3]
        [--rates 1000,2000,...] [--setups ls-vlan,ls-bucket,hs,kea-lb,kea-hs]
        [--datapath off|xdp] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.testing.netns import Topology, wait_for
from lab.kea import kea_ha_config, kea_ha_lb_config, start_kea
from lab.vlans import SYNC_A, SYNC_B, VlanLab

SETUPS = ("ls-vlan", "ls-bucket", "hs", "kea-lb", "kea-hs")
OURS = {"ls-vlan": "vlan", "ls-bucket": "bucket", "hs": "standby"}
# perfdhcp's client count per VLAN: random clients among this many MACs; each VLAN's
# relay subnet is a /16, and a group of ls-bucket or a Kea LB server allocates from
# half of it (32,512 addresses), which its ~half of these clients must fit in.
CLIENTS_PER_VLAN = 30000


def perfdhcp_out(out: str) -> tuple[int, int, int, int]:
    """(DISCOVERs sent, OFFERs received, REQUESTs sent, ACKs received) of a run."""
    sent = [int(x) for x in re.findall(r"sent packets: (\d+)", out)]
    recv = [int(x) for x in re.findall(r"received packets: (\d+)", out)]
    if len(sent) < 2 or len(recv) < 2:
        return 0, 0, 0, 0
    return sent[0], recv[0], sent[1], recv[1]


def offer(t: Topology, lab: VlanLab, rate: int, period: int, clients: int,
          macs: int = 0) -> dict:
    """One perfdhcp per VLAN at rate/VLANs, in parallel; the summed result."""
    procs = []
    share = max(1, rate // len(lab.vlans))
    for i, v in enumerate(lab.vlans):
        assert lab.load is not None
        procs.append(t.popen(lab.load, [
            "perfdhcp", "-4", "-l", v.load_relay, "-r", str(share), "-R", str(clients),
            "-p", str(period), "-W", "500000",
            "-b", f"mac=02:{0x10 + i:02x}:{macs & 0xff:02x}:00:00:00",
            v.relay_target], stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    tot = [0, 0, 0, 0]
    for p in procs:
        try:
            out, _ = p.communicate(timeout=period + 60)
        except subprocess.TimeoutExpired:
            t.stop(p)
            out = b""
        for k, x in enumerate(perfdhcp_out(out.decode(errors="replace"))):
            tot[k] += x
    d_sent, o_recv, r_sent, a_recv = tot
    if not d_sent or not r_sent:
        return {"rate": rate, "ok": False, "loss_do": 100.0, "loss_ra": 100.0, "dora_s": 0}
    loss_do = 100.0 * (d_sent - o_recv) / d_sent
    loss_ra = 100.0 * (r_sent - a_recv) / r_sent
    return {"rate": rate, "ok": loss_do < 1 and loss_ra < 1, "loss_do": round(loss_do, 2),
            "loss_ra": round(loss_ra, 2), "dora_s": round(a_recv / period)}


def serving_all(t: Topology, lab: VlanLab) -> bool:
    """A short probe answered in full on every VLAN: both devices (or Kea servers) are
    in the state that serves their share."""
    r = offer(t, lab, 40 * len(lab.vlans), 1, 50, macs=0xEE)
    return r["loss_do"] == 0 and r["loss_ra"] == 0 and r["dora_s"] > 0


# -- setups: each starts the servers on a fresh lab and returns once they serve --------
Procs = tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]


def ours(shape: str, datapath: str) -> Callable[[Topology, VlanLab], Procs]:
    def setup(t: Topology, lab: VlanLab) -> Procs:
        lab.start_pair(shape, datapath=datapath, lease_time=86400)
        assert lab.a.proc is not None and lab.b.proc is not None
        return lab.a.proc, lab.b.proc
    return setup


def _kea_subnets(lab: VlanLab) -> list[tuple[str, str]]:
    out = []
    for v in lab.vlans:
        out.append((str(v.net), v.lan_range.replace("-", " - ")))
        out.append((str(v.load_net), v.load_range.replace("-", " - ")))
    return out


def kea_lb(t: Topology, lab: VlanLab) -> Procs:
    ifs = [v.ifname for v in lab.vlans]
    urls = {"server1_url": f"http://{SYNC_A}:8000/", "server2_url": f"http://{SYNC_B}:8000/"}
    procs = []
    for ns, name in ((lab.na, "server1"), (lab.nb, "server2")):
        d = lab.work / name
        procs.append(start_kea(t, ns, d, kea_ha_lb_config(d, ifs, _kea_subnets(lab),
                                                          this=name, lease_time=86400,
                                                          **urls)))
    return procs[0], procs[1]


def kea_hs(t: Topology, lab: VlanLab) -> Procs:
    ifs = [v.ifname for v in lab.vlans]
    urls = {"primary_url": f"http://{SYNC_A}:8000/", "standby_url": f"http://{SYNC_B}:8000/"}
    procs = []
    for ns, name in ((lab.na, "primary"), (lab.nb, "standby")):
        d = lab.work / name
        procs.append(start_kea(t, ns, d, kea_ha_config(d, ifs, _kea_subnets(lab),
                                                       this=name, lease_time=86400, **urls)))
    return procs[0], procs[1]


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far (proc(5))."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steps(name: str, setup: Callable[[Topology, VlanLab], Procs], rates: list[int],
          period: int) -> dict:
    """Rate steps on one lab running `setup`: the highest rate that passed, with the
    share of a core each device's server used during that step."""
    best = {"rate": 0, "dora_s": 0, "loss_do": 0.0, "loss_ra": 0.0, "cpu_a": 0, "cpu_b": 0}
    work = Path(tempfile.mkdtemp(prefix=f"bench-ls-{name}-"))
    try:
        with Topology("bls") as t:
            lab = VlanLab(t, work, 2, load=True)
            t0 = time.monotonic()
            pa, pb = setup(t, lab)
            wait_for(lambda: serving_all(t, lab), 180, interval=1, what=f"{name} serving")
            ready = time.monotonic() - t0
            failed = 0
            for k, rate in enumerate(rates):
                c0, w0 = (cpu_s(pa.pid), cpu_s(pb.pid)), time.monotonic()
                res = offer(t, lab, rate, period, CLIENTS_PER_VLAN, macs=k)
                wall = time.monotonic() - w0
                res["cpu_a"], res["cpu_b"] = (round(100 * (cpu_s(p.pid) - c) / wall)
                                              for p, c in zip((pa, pb), c0, strict=True))
                print(f"  {name:9} {rate:6}/s: DORA/s {res['dora_s']:6}  loss DO "
                      f"{res['loss_do']:6}%  RA {res['loss_ra']:6}%  CPU A {res['cpu_a']:3}% "
                      f"B {res['cpu_b']:3}%  {'ok' if res['ok'] else 'LOSS'}", flush=True)
                if res["ok"]:
                    best, failed = res, 0
                else:
                    failed += 1
                    if best["rate"] or failed == 2:
                        break
            best = best | {"ready_s": round(ready, 1)}
            if name in OURS:
                for d in (lab.a, lab.b):
                    d.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--period", type=int, default=3)
    ap.add_argument("--rates", default="250,500,750,1000,1500,2000,2500,3000,3500,4000,5000,6000,"
                    "7000,8000")
    ap.add_argument("--setups", default="ls-vlan,ls-bucket,hs,kea-lb")
    ap.add_argument("--datapath", choices=["off", "xdp"], default="off")
    ap.add_argument("--json", help="write every round's figures here")
    a = ap.parse_args()
    # SIGTERM (and SIGINT, ignored in a background job) unwind through the Topology's
    # exit: the namespaces and processes go even when the run is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    names = a.setups.split(",")
    for n in names:
        if n not in SETUPS:
            ap.error(f"unknown setup {n!r} (known: {', '.join(SETUPS)})")
    rates = [int(x) for x in a.rates.split(",")]
    funcs: dict[str, Callable[[Topology, VlanLab], Procs]] = {
        "kea-lb": kea_lb, "kea-hs": kea_hs,
        **{n: ours(shape, a.datapath) for n, shape in OURS.items()}}
    rounds: list[dict[str, dict]] = []
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        print(f"round {r + 1}/{a.rounds}: {', '.join(order)} (perfdhcp steps of "
              f"{a.period} s, both VLANs at once)", flush=True)
        rounds.append({n: steps(n, funcs[n], rates, a.period) for n in order})
    report(names, rounds)
    if a.json:
        Path(a.json).write_text(json.dumps(rounds, indent=1))
    return 0


def report(names: list[str], rounds: list[dict[str, dict]]) -> None:
    med = {n: statistics.median(r[n]["dora_s"] for r in rounds) for n in names}
    print(f"\n{'setup':10} {'DORA/s <1% loss, median':>24}  {'CPU A/B at it':>14}  per round")
    for n in names:
        per = " ".join(f"{r[n]['dora_s']:>6}" for r in rounds)
        ca = statistics.median(r[n].get("cpu_a", 0) for r in rounds)
        cb = statistics.median(r[n].get("cpu_b", 0) for r in rounds)
        print(f"{n:10} {med[n]:>24.0f}  {f'{ca:.0f}% / {cb:.0f}%':>14}  {per}")
    pairs = [("ls-vlan", "hs"), ("ls-bucket", "hs"), ("ls-vlan", "kea-lb"),
             ("ls-bucket", "kea-lb"), ("hs", "kea-hs"), ("kea-lb", "kea-hs")]
    print()
    for x, y in pairs:
        if x in med and y in med and med[y]:
            per = [r[x]["dora_s"] / r[y]["dora_s"] for r in rounds if r[y]["dora_s"]]
            print(f"ratio {x}/{y}: {med[x] / med[y]:.2f} of the medians, "
                  f"{statistics.median(per):.2f} the median of the rounds' (per round: "
                  f"{', '.join(f'{p:.2f}' for p in per)})")


if __name__ == "__main__":
    raise SystemExit(main())
