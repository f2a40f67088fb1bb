"""What a Prometheus scrape costs the packet path: DORA/s and REQUEST->ACK latency with a
scrape every second against no scrape, same run.

The topology and load are bench/dora_throughput.py's (a load namespace plays a relay and
runs perfdhcp for throughput, lab.dhcpload for latency). Our daemon runs with
metrics/listen on in both modes; in "scrape" mode a scraper in a third namespace GETs
/metrics every --interval seconds for the whole measurement, as Prometheus would (with
Prometheus's Accept header, so the body is OpenMetrics). Throughput is the ACKs per
second perfdhcp gets at an offered rate above what the server sustains (its capacity);
latency is REQUEST->ACK at 1000 new clients/s. Each round starts one daemon and measures
both modes on it, in alternating order, so the load of the shared machine hits both
alike; the figures are medians over the rounds.

    .venv/bin/python bench/metrics_scrape.py [--rounds 8] [--rate 10000] [--interval 1]
"""

from __future__ import annotations

import argparse
import os
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
PATH = "/metrics"  # --path /: the same requests without rendering (what costs what)
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
            req = urllib.request.Request(f"http://{LISTEN}{PATH}", headers={"Accept": ACCEPT})
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


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loop_cpu_s(pid: int) -> float:
    """CPU seconds of the daemon's main thread (its event loop), nanosecond-exact
    (/proc/<pid>/task/<pid>/schedstat: /proc's utime counts 10 ms ticks)."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[0]) / 1e9


def idle_cost(pid: int, ns, n: int = 10, gap: float = 1.05) -> float:  # type: ignore[no-untyped-def]
    """What a scrape costs the daemon's event loop, in ms, with no DHCP load: `n` scrapes
    `gap` seconds apart (each finds a new snapshot to render, as a real scraper does),
    less what the idle loop uses in as long without them (housekeeping, the publish).
    The HTTP side runs in other threads and is not counted here."""
    with inside(ns):
        req = urllib.request.Request(f"http://{LISTEN}{PATH}", headers={"Accept": ACCEPT})
        c0, t0 = loop_cpu_s(pid), time.monotonic()
        for i in range(n):
            with urllib.request.urlopen(req, timeout=5) as r:
                r.read()
            time.sleep(max(0.0, t0 + (i + 1) * gap - time.monotonic()))
        busy, wall = loop_cpu_s(pid) - c0, time.monotonic() - t0
    c1 = loop_cpu_s(pid)
    time.sleep(wall)
    idle = loop_cpu_s(pid) - c1
    return (busy - idle) / n * 1000


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
    global PATH
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--rate", type=int, default=10000,
                    help="perfdhcp's offered DORA/s: above what the server sustains, so "
                    "the ACKs per second it achieves are its capacity")
    ap.add_argument("--period", type=int, default=4)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    ap.add_argument("--latency-rate", type=int, default=1000)
    ap.add_argument("--latency-clients", type=int, default=3000)
    ap.add_argument("--path", default="/metrics",
                    help="what the scraper GETs (/ : the same requests, no rendering)")
    a = ap.parse_args()
    PATH = a.path
    # SIGTERM unwinds like ^C: every Topology removes its namespaces and processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = ("no scrape", f"scrape every {a.interval:g} s")
    dora: dict[str, list[int]] = {n: [] for n in names}
    p50: dict[str, list[float]] = {n: [] for n in names}
    p99: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    scrape_ms: list[float] = []
    per_scrape: list[float] = []
    size = fails = 0
    for rnd in range(a.rounds):
        # One daemon per round, both modes on it, in alternating order: what differs
        # between the two figures of a round is the scraping, not the box's load.
        with Topology("ms") as t:
            srv, load = build(t)
            scraper_ns = t.host("prom")
            t.attach(scraper_ns, _lan(t), "eth0", "192.0.2.9/24")
            work = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
            try:
                daemon = start(t, srv, work)
                wait_for(lambda ns=scraper_ns: _answers(ns), 15, what="/metrics answering")
                per_scrape.append(idle_cost(daemon.pid, scraper_ns))
                order = names if rnd % 2 == 0 else names[::-1]
                for name in order:
                    scraping = name != names[0]
                    with Scraper(scraper_ns, a.interval) if scraping else _Nothing() as sc:
                        c0 = cpu_s(daemon.pid)
                        res = perfdhcp(t, load, a.rate, a.period, clients=20000)
                        busy = (cpu_s(daemon.pid) - c0) / a.period
                        lat = latency(t, load, a.latency_rate, a.latency_clients)
                    dora[name].append(res["dora_s"])
                    cpu[name].append(busy)
                    if lat.get("p99_ms") is not None:
                        p50[name].append(lat["p50_ms"])
                        p99[name].append(lat["p99_ms"])
                    line = (f"  round {rnd + 1} {name:18} DORA/s {res['dora_s']:6} (offered "
                            f"{a.rate}, loss RA {res['loss_ra']:5}%, daemon CPU "
                            f"{busy * 100:3.0f}%)  REQ->ACK p50 "
                            f"{lat.get('p50_ms')} ms p99 {lat.get('p99_ms')} ms")
                    if isinstance(sc, Scraper):
                        scrape_ms += sc.times_ms
                        size, fails = sc.size, fails + sc.failures
                        line += f"  scrapes {len(sc.times_ms)}"
                    print(line, flush=True)
            finally:
                t.close()
                shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    print()
    print(f"{'mode':22} {'DORA/s (median)':>16} {'daemon CPU':>11} {'REQ->ACK p50 ms':>16} "
          f"{'p99 ms':>8}")
    for n in names:
        print(f"{n:22} {med(dora[n]):>16.0f} {med(cpu[n]) * 100:>10.0f}% "
              f"{med(p50[n]):>16.3f} {med(p99[n]):>8.3f}")
    pairs = list(zip(dora[names[1]], dora[names[0]], strict=True))
    print(f"per round, scrape/no scrape: DORA/s ratio median "
          f"{med(s / n for s, n in pairs if n):.3f}; p99 difference median "
          f"{med(s - n for s, n in zip(p99[names[1]], p99[names[0]], strict=False)):+.3f} ms")
    print(f"event-loop CPU per scrape, idle (median of {len(per_scrape)} rounds of 10): "
          f"{med(per_scrape):.2f} ms ({' '.join(f'{x:.2f}' for x in per_scrape)})")
    if scrape_ms:
        s = sorted(scrape_ms)
        print(f"scrapes: {len(s)}, {fails} failed, body {size} bytes, scrape time p50 "
              f"{s[len(s) // 2]:.2f} ms, max {s[-1]:.2f} ms (under load)")
    return 0


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
