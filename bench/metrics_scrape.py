"""What a Prometheus scrape costs the packet path: DORA/s and REQUEST->ACK latency with a
scrape every second against no scrape, same run.

The topology and load are bench/dora_throughput.py's (a load namespace plays a relay and
runs perfdhcp for throughput, lab.dhcpload for latency). Our daemon runs with
metrics/listen on in both modes; in "scrape" mode a scraper in a third namespace GETs
/metrics every --interval seconds for the whole measurement, as Prometheus would (with
Prometheus's Accept header, so the body is OpenMetrics). The modes alternate, each
measurement on a fresh daemon, so drift on the shared machine hits both alike.

    .venv/bin/python bench/metrics_scrape.py [--rounds 3] [--rates 3000,4000,...]
        [--interval 1] [--latency-rate 1000]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.testing.netns import Topology, inside, wait_for
from appliance.testing.trees import standalone_tree
from bench.dora_throughput import CLI, POOL, SUBNET, build, latency, perfdhcp

LISTEN = "192.0.2.2:9467"
ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
          "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


class Scraper:
    """GET /metrics every `interval` seconds from inside `ns`, in a thread of this
    process (the request leaves from the scraper's namespace, over the LAN)."""

    def __init__(self, ns, interval: float) -> None:  # type: ignore[no-untyped-def]
        self.ns, self.interval = ns, interval
        self.times_ms: list[float] = []
        self.failures = 0
        self.size = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with inside(self.ns):
            req = urllib.request.Request(f"http://{LISTEN}/metrics", headers={"Accept": ACCEPT})
            nxt = time.monotonic()
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        self.size = len(r.read())
                    self.times_ms.append((time.monotonic() - t0) * 1000)
                except OSError:
                    self.failures += 1
                nxt += self.interval
                self._stop.wait(max(0.0, nxt - time.monotonic()))


def start(t: Topology, srv, work: Path):  # type: ignore[no-untyped-def]
    etc = standalone_tree(work, extra={
        "pools/bench/subnet": SUBNET, "pools/bench/range": POOL,
        "pools/bench/lease_time": "3600", "metrics/listen": LISTEN})
    log = open(work / "daemon.log", "wb")
    p = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
    wait_for(lambda: (work / "run" / "role").exists(), 15, what="our daemon")
    return p


def one(kind: str, scrape: bool, interval: float, rate: int, period: int,
        lat_n: int) -> tuple[dict, Scraper | None]:
    with Topology("ms") as t:
        srv, load = build(t)
        scraper_ns = t.host("prom")
        t.attach(scraper_ns, _lan(t), "eth0", "192.0.2.9/24")
        work = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
        try:
            start(t, srv, work)
            # Both modes: the endpoint answers before the load starts.
            wait_for(lambda: _answers(scraper_ns), 15, what="/metrics answering")
            sc = Scraper(scraper_ns, interval) if scrape else None
            if sc is not None:
                sc.__enter__()
            try:
                if kind == "throughput":
                    res = perfdhcp(t, load, rate, period, clients=60000)
                else:
                    res = latency(t, load, rate, lat_n)
            finally:
                if sc is not None:
                    sc.__exit__()
        finally:
            t.close()
            shutil.rmtree(work, ignore_errors=True)
    return res, sc


def _answers(ns) -> bool:  # type: ignore[no-untyped-def]
    with inside(ns):
        try:
            with urllib.request.urlopen(f"http://{LISTEN}/metrics", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False


def _lan(t: Topology):  # type: ignore[no-untyped-def]
    # The bridge namespace bench/dora_throughput.build() made (Topology.lan's default name).
    return next(ns for ns in t.namespaces if ns.name.endswith("-lan"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rates", default="1000,2000,3000,4000,5000,6000")
    ap.add_argument("--period", type=int, default=4)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    ap.add_argument("--latency-rate", type=int, default=1000)
    a = ap.parse_args()
    # SIGTERM unwinds like ^C: every Topology removes its namespaces and processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rates = [int(x) for x in a.rates.split(",")]
    modes = (("no scrape", False), (f"scrape every {a.interval:g} s", True))
    best: dict[str, list[int]] = {m: [] for m, _ in modes}
    p50: dict[str, list[float]] = {m: [] for m, _ in modes}
    p99: dict[str, list[float]] = {m: [] for m, _ in modes}
    scrape_ms: list[float] = []
    size = fails = 0
    for rnd in range(a.rounds):
        for name, scrape in (modes if rnd % 2 == 0 else modes[::-1]):
            top = 0
            for rate in rates:
                res, sc = one("throughput", scrape, a.interval, rate, a.period, 0)
                line = (f"  round {rnd + 1} {name:18} rate {rate:6}/s: DORA/s {res['dora_s']:6}"
                        f"  loss DO {res['loss_do']:5}% RA {res['loss_ra']:5}%")
                if sc is not None:
                    scrape_ms += sc.times_ms
                    size, fails = sc.size, fails + sc.failures
                    line += f"  scrapes {len(sc.times_ms)}"
                print(line, flush=True)
                if res["ok"]:
                    top = max(top, res["dora_s"])
                elif top:
                    break
            best[name].append(top)
            lat, sc = one("latency", scrape, a.interval, a.latency_rate, 0, a.latency_rate * 5)
            if sc is not None:
                scrape_ms += sc.times_ms
                fails += sc.failures
            print(f"  round {rnd + 1} {name:18} latency at {a.latency_rate}/s: "
                  f"p50 {lat.get('p50_ms')} ms  p99 {lat.get('p99_ms')} ms", flush=True)
            if lat.get("p99_ms") is not None:
                p50[name].append(lat["p50_ms"])
                p99[name].append(lat["p99_ms"])
    print()
    print(f"{'mode':20} {'DORA/s <1% loss (median)':>26} {'REQ->ACK p50 ms':>16} "
          f"{'p99 ms (median)':>16}")
    for name, _ in modes:
        med = statistics.median
        print(f"{name:20} {med(best[name]) if best[name] else '-':>26} "
              f"{med(p50[name]) if p50[name] else '-':>16} "
              f"{med(p99[name]) if p99[name] else '-':>16}   "
              f"(rounds: {best[name]}, p99 {p99[name]})")
    if scrape_ms:
        s = sorted(scrape_ms)
        print(f"scrapes: {len(s)}, {fails} failed, body {size} bytes, scrape time p50 "
              f"{s[len(s) // 2]:.2f} ms, max {s[-1]:.2f} ms (under load)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
