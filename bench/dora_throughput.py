"""DORA throughput and latency: our standalone server against Kea (memfile), same run.

Topology (namespaces): a load namespace on the LAN plays a relay (198.18.0.1, the
RFC 2544 benchmarking range, so a 64k pool fits) and runs perfdhcp; the server
namespace runs either server. For each server, perfdhcp runs rate steps; the figure is
the highest rate whose DISCOVER-OFFER and REQUEST-ACK loss both stay under 1%. Latency
p50/p99 (REQUEST sent -> ACK received) comes from lab.dhcpload at a
fixed moderate rate. Both servers write their leases durably to disk (ours fdatasyncs
each batch before replying; Kea's memfile appends to its CSV).

    .venv/bin/python bench/dora_throughput.py [--rates 2000,4000,...] [--period 4]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.testing.netns import Topology, wait_for
from appliance.testing.trees import standalone_tree
from lab.kea import kea_config, start_kea

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")
CLI = str(ROOT / ".venv/bin/dhcp-hotbackup")
SUBNET, POOL = "198.18.0.0/16", "198.18.1.0-198.18.255.254"


def build(t: Topology):
    lan = t.lan()
    srv = t.host("srv")
    t.attach(srv, lan, "eth1", "192.0.2.2/24")
    load = t.host("load")
    t.attach(load, lan, "eth0", "192.0.2.3/24")
    t.addr(load, "eth0", "198.18.0.1/16")
    t.run(srv, ["ip", "route", "add", SUBNET, "via", "192.0.2.3"])
    return srv, load


def start_ours(t: Topology, srv, work: Path):
    etc = standalone_tree(work, extra={
        "pools/bench/subnet": SUBNET, "pools/bench/range": POOL,
        "pools/bench/lease_time": "3600"})
    log = open(work / "daemon.log", "wb")
    p = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
    wait_for(lambda: (work / "run" / "role").exists(), 15, what="our daemon")
    return p


def start_kea_srv(t: Topology, srv, work: Path):
    cfg = kea_config(work, "eth1", [("192.0.2.0/24", "192.0.2.100 - 192.0.2.199"),
                                    (SUBNET, POOL.replace("-", " - "))])
    p = start_kea(t, srv, work, cfg)
    # Kea is up when its raw socket answers; give it a moment to open sockets.
    wait_for(lambda: "DHCP4_STARTED" in _read(work / "kea.log") or p.poll() is not None
             or _listening(t, srv), 15, what="kea")
    return p


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


def _listening(t: Topology, srv) -> bool:
    r = t.run(srv, ["ss", "-lunp"], check=False)
    return "kea-dhcp4" in r.stdout


def perfdhcp(t: Topology, load, rate: int, period: int, clients: int) -> dict:
    r = t.run(load, ["perfdhcp", "-4", "-l", "198.18.0.1", "-r", str(rate), "-R",
                     str(clients), "-p", str(period), "192.0.2.2"], check=False,
              timeout=period + 60)
    return rate_result(r.stdout, rate, period)


def rate_result(out: str, rate: int, period: int) -> dict:
    """One perfdhcp run's figures from its output: DISCOVER->OFFER and REQUEST->ACK
    loss (%), whether both stayed under 1%, and ACKs per second over `period`."""
    sent = [int(x) for x in re.findall(r"sent packets: (\d+)", out)]
    recv = [int(x) for x in re.findall(r"received packets: (\d+)", out)]
    if len(sent) < 2 or not sent[0] or not sent[1]:
        return {"rate": rate, "ok": False, "loss_do": 100.0, "loss_ra": 100.0, "dora_s": 0}
    loss_do = 100.0 * (sent[0] - recv[0]) / sent[0]
    loss_ra = 100.0 * (sent[1] - recv[1]) / sent[1]
    return {"rate": rate, "ok": loss_do < 1 and loss_ra < 1, "loss_do": round(loss_do, 2),
            "loss_ra": round(loss_ra, 2), "dora_s": round(recv[1] / period)}


def latency(t: Topology, load, rate: int, n: int) -> dict:
    r = t.run(load, [PY, "-m", "lab.dhcpload", "--relay", "198.18.0.1",
                     "--server", "192.0.2.2", "--clients", str(n), "--window", "256",
                     "--rate", str(rate), "--seed", str(int(time.time()) & 0xFF)],
              check=False, timeout=120, cwd=str(ROOT))
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"p50_ms": None, "p99_ms": None}


def measure(name: str, starter, rates: list[int], period: int, lat_rate: int) -> dict:
    best = {"rate": 0, "dora_s": 0}
    steps = []
    for rate in rates:
        with Topology("bd") as t:
            srv, load = build(t)
            work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
            try:
                starter(t, srv, work)
                res = perfdhcp(t, load, rate, period, clients=60000)
            finally:
                t.close()
                shutil.rmtree(work, ignore_errors=True)
        steps.append(res)
        print(f"  {name:5} rate {rate:6}/s: DORA/s {res['dora_s']:6}  loss DO "
              f"{res['loss_do']:5}%  RA {res['loss_ra']:5}%  {'ok' if res['ok'] else 'LOSS'}",
              flush=True)
        if res["ok"]:
            best = res
        elif best["rate"]:
            break
    with Topology("bl") as t:
        srv, load = build(t)
        work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        try:
            starter(t, srv, work)
            lat = latency(t, load, lat_rate, lat_rate * 3)
        finally:
            t.close()
            shutil.rmtree(work, ignore_errors=True)
    return {"best": best, "steps": steps, "latency": lat}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="1000,2000,3000,4000,4500,5000,5500,6000,6500,7000,"
                    "7500,8000,9000,10000")
    ap.add_argument("--period", type=int, default=4)
    ap.add_argument("--latency-rate", type=int, default=1000)
    ap.add_argument("--only", choices=["ours", "kea"])
    a = ap.parse_args()
    rates = [int(x) for x in a.rates.split(",")]
    out = {}
    for name, starter in (("ours", start_ours), ("kea", start_kea_srv)):
        if a.only and a.only != name:
            continue
        print(f"{name}: perfdhcp rate steps of {a.period}s", flush=True)
        out[name] = measure(name, starter, rates, a.period, a.latency_rate)
    print()
    print(f"{'server':8} {'DORA/s <1% loss':>16} {'REQ->ACK p50 ms':>16} {'p99 ms':>8}")
    for name, r in out.items():
        lat = r["latency"]
        print(f"{name:8} {r['best']['dora_s']:>16} {lat.get('p50_ms')!s:>16} "
              f"{lat.get('p99_ms')!s:>8}")
    if "ours" in out and "kea" in out and out["kea"]["best"]["dora_s"]:
        ratio = out["ours"]["best"]["dora_s"] / out["kea"]["best"]["dora_s"]
        print(f"ratio ours/kea (DORA/s): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
