"""Replication: DORA/s through device A standalone, in `sync` and `async` mode, and Kea HA
hot-standby (its fastest transport, the multi-threaded dedicated HTTP listener), in one
run; the replication delay (ACK on A -> durable on B); bulk sync of 100k and 1M sessions.

Topology: A's client LAN with a load namespace playing a relay (198.18.0.1, RFC 2544
benchmarking range) running perfdhcp; B on its own LAN; a veth sync link between A and
B (198.51.100.1/.2). For each setup, perfdhcp rate steps of --period seconds; the
figure is the highest rate whose DISCOVER-OFFER and REQUEST-ACK losses stay under 1%.

`sync-v1` and `async-v1` run the daemons of --v1-ref instead (default: the last commit
whose sync link speaks wire version 1, HMAC-SHA256 frames in clear), extracted from
this repository with `git archive` into a thin venv beside this one: the replication
delay with encryption (wire version 2, ChaCha20-Poly1305) beside the one without, same
machine, same run.

    .venv/bin/python bench/sync_replication.py [--only throughput|bulk] [--sizes ...]
        [--setups standalone,sync,sync-v1,async,async-v1,kea-ha] [--v1-ref REF]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.leases.journal import Journal
from appliance.leases.model import Lease, LeaseState
from appliance.testing.netns import Topology, wait_for
from appliance.testing.trees import standalone_tree
from bench.dora_throughput import perfdhcp
from lab.kea import kea_ha_config, start_kea

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv/bin/python")
CLI = str(ROOT / ".venv/bin/dhcp-hotbackup")
SUBNET, POOL = "198.18.0.0/16", "198.18.1.0-198.18.255.254"
KEY = "bench-key-0123456789abcdef0123456789"
V1_REF = "d491dd6"  # the last commit with sync wire version 1 (HMAC-only frames)


def v1_cli(ref: str, into: Path) -> str:
    """The `dhcp-hotbackup` command of commit `ref`: its tree from `git archive`, a venv
    on the same Debian python (system site packages) that imports it, and a script that
    runs its cli. Nothing is installed; `into` holds it all."""
    src = into / "tree"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    venv = into / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    purelib = subprocess.run([str(venv / "bin/python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "v1tree.pth").write_text(f"{src}\n")
    cli = venv / "bin/dhcp-hotbackup"
    cli.write_text(f"#!{venv}/bin/python3\nimport sys\nfrom appliance.cli import main\n"
                   "sys.exit(main())\n")
    cli.chmod(0o755)
    return str(cli)


def build(t: Topology):
    lan, lanb = t.lan(), t.lan("lanb")
    a, b, load = t.host("a"), t.host("b"), t.host("load")
    t.attach(a, lan, "eth1", "192.0.2.2/24")
    t.attach(b, lanb, "eth1", "192.0.2.2/24")
    t.attach(load, lan, "eth0", "192.0.2.3/24")
    t.addr(load, "eth0", "198.18.0.1/16")
    t.veth(a, "eth2", b, "eth2")
    t.addr(a, "eth2", "198.51.100.1/24")
    t.addr(b, "eth2", "198.51.100.2/24")
    for ns in (a, b):
        t.run(ns, ["ip", "route", "add", SUBNET, "via", "192.0.2.3"], check=False)
    return a, b, load


def tree(work: Path, name: str, mode: str | None, pool=(SUBNET, POOL)) -> Path:
    extra = {"pools/bench/subnet": pool[0], "pools/bench/range": pool[1],
             "pools/bench/lease_time": "86400"}
    if pool[0] != SUBNET:  # the load generator's relay still needs its own subnet
        extra.update({"pools/load/subnet": SUBNET, "pools/load/range": POOL})
    if mode is not None:
        local, peer = ("198.51.100.1", "198.51.100.2") if name == "A" else \
            ("198.51.100.2", "198.51.100.1")
        extra.update({"sync/interface": "eth2", "sync/local": f"{local}:6470",
                      "sync/peer": f"{peer}:6470", "sync/key": KEY, "sync/mode": mode})
    return standalone_tree(work / name, name=name, extra=extra)


def rd(work: Path, name: str, rel: str) -> str:
    try:
        return (work / name / "run" / rel).read_text().strip()
    except OSError:
        return ""


def start(t: Topology, ns, work: Path, name: str, etc: Path, cli: str = CLI):
    log = open(work / f"{name}.log", "ab")
    p = t.popen(ns, [cli, "run", "--config", str(etc)], stdout=log, stderr=log)
    wait_for(lambda: rd(work, name, "pid") == str(p.pid) or p.poll() is not None, 600,
             what=f"{name} start")
    return p


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- throughput ------------------------------------------------------------------------
def ours_setup(mode: str | None, cli: str = CLI):
    def setup(t: Topology, work: Path):
        a, b, load = build(t)
        pa = start(t, a, work, "A", tree(work, "A", mode), cli)
        if mode is not None:
            start(t, b, work, "B", tree(work, "B", mode), cli)
            wait_for(lambda: rd(work, "A", "sync/peer") == "connected", 30, what="in sync")
        return load, pa
    return setup


def kea_ha_setup(t: Topology, work: Path):
    a, b, load = build(t)
    subnets = [("192.0.2.0/24", "192.0.2.100 - 192.0.2.199"), (SUBNET, POOL.replace("-", " - "))]
    urls = dict(primary_url="http://198.51.100.1:8000/", standby_url="http://198.51.100.2:8000/")
    for ns, name in ((a, "primary"), (b, "standby")):
        d = work / name
        start_kea(t, ns, d, kea_ha_config(d, "eth1", subnets, this=name, **urls))
    # The pair serves once both reach HOT-STANDBY: probe with a few exchanges.
    wait_for(lambda: perfdhcp(t, load, 50, 1, 100)["dora_s"] > 0, 120, interval=1,
             what="kea HA pair serving")
    return load, None


def throughput(name: str, setup, rates: list[int], period: int, lat_rate: int) -> dict:
    best = {"rate": 0, "dora_s": 0, "loss_do": 0, "loss_ra": 0}
    delay = {}
    for rate in rates:
        work = Path(tempfile.mkdtemp(prefix=f"bench-sync-{name}-"))
        try:
            with Topology("bs") as t:
                load, _ = setup(t, work)
                res = perfdhcp(t, load, rate, period, clients=60000)
                if name.startswith(("sync", "async")):
                    wait_for(lambda w=work: rd(w, "B", "sync/delay_p50_ms") != "", 5,
                             what="delay figures")
                    delay = {"p50": rd(work, "B", "sync/delay_p50_ms"),
                             "p99": rd(work, "B", "sync/delay_p99_ms")}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"  {name:10} rate {rate:6}/s: DORA/s {res['dora_s']:6}  loss DO "
              f"{res['loss_do']:5}%  RA {res['loss_ra']:5}%  {'ok' if res['ok'] else 'LOSS'}"
              + (f"  delay p50 {delay['p50']} p99 {delay['p99']} ms" if delay else ""),
              flush=True)
        if res["ok"]:
            best = res | {"delay": delay}
        elif best["rate"]:
            break
    return best


# -- bulk sync -------------------------------------------------------------------------
def prebuilt(work: Path, n: int) -> Path:
    etc = tree(work, "A", "async", pool=("100.64.0.0/10", "100.64.1.0-100.127.255.254"))
    j = Journal(work / "A" / "state")
    j.replay(lambda x: None)
    now = time.time()
    first = int(IPv4Address("100.64.1.0"))
    j.compact([Lease(ip=first + i, mac=(0x020000000000 + i).to_bytes(6, "big"),
                     client_id=None, state=LeaseState.BOUND, start=now, expires=now + 86400,
                     pool="bench", hostname=f"host-{i}", seq=i + 1, origin="A")
               for i in range(n)], background=False)
    j.close()
    return etc


def bulk(n: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    try:
        etc_a = prebuilt(work, n)
        etc_b = tree(work, "B", "async", pool=("100.64.0.0/10", "100.64.1.0-100.127.255.254"))
        with Topology("bb") as t:
            a, b, load = build(t)
            pa = start(t, a, work, "A", etc_a)
            t0 = time.monotonic()
            pb = start(t, b, work, "B", etc_b)
            # A keeps serving during the bulk sync: a light load runs meanwhile.
            lp = t.popen(load, [PY, "-m", "lab.dhcpload", "--relay", "198.18.0.1",
                                "--server", "192.0.2.2", "--clients", "100000", "--rate",
                                "200", "--duration", "30", "--out", str(work / "acks.json")],
                         cwd=str(ROOT))
            wait_for(lambda: rd(work, "B", "sync/peer") == "connected", 600, interval=0.05,
                     what="bulk sync done")
            took = time.monotonic() - t0
            rss_a, rss_b = vm_hwm_mb(pa.pid), vm_hwm_mb(pb.pid)
            t.stop(lp)
            acks = int(rd(work, "A", "stats/ack") or 0)
            t.stop(pa)
            t.stop(pb)
        return {"n": n, "seconds": round(took, 2), "rss_a_mb": round(rss_a), "rss_b_mb":
                round(rss_b), "acks_during": acks}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["throughput", "bulk"])
    ap.add_argument("--rates", default="500,1000,1500,2000,3000,4000,5000,6000,7000,8000,"
                    "9000,10000")
    ap.add_argument("--period", type=int, default=4)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--setups", default="standalone,sync,sync-v1,async,async-v1,kea-ha")
    ap.add_argument("--v1-ref", default=V1_REF,
                    help="commit whose daemons run the -v1 setups (sync wire version 1)")
    a = ap.parse_args()
    rates = [int(x) for x in a.rates.split(",")]
    out: dict[str, object] = {}
    v1_dir = Path(tempfile.mkdtemp(prefix="bench-sync-v1-"))
    try:
        if a.only != "bulk":
            cli_v1 = v1_cli(a.v1_ref, v1_dir) if "-v1" in a.setups else CLI
            out["throughput"] = throughputs(a, rates, cli_v1)
        if a.only != "throughput":
            bulks(a)
    finally:
        shutil.rmtree(v1_dir, ignore_errors=True)
    print(json.dumps(out)[:0], end="")
    return 0


def throughputs(a: argparse.Namespace, rates: list[int], cli_v1: str) -> dict:
    setups = {"standalone": ours_setup(None), "sync": ours_setup("sync"),
              "sync-v1": ours_setup("sync", cli_v1), "async": ours_setup("async"),
              "async-v1": ours_setup("async", cli_v1), "kea-ha": kea_ha_setup}
    res = {}
    for name in a.setups.split(","):
        print(f"{name}: perfdhcp rate steps of {a.period}s", flush=True)
        res[name] = throughput(name, setups[name], rates, a.period, 1000)
    print(f"\n{'setup':12} {'DORA/s <1% loss':>16} {'repl. delay p50/p99 ms':>24}")
    for name, r in res.items():
        d = r.get("delay") or {}
        dd = f"{d.get('p50', '-')}/{d.get('p99', '-')}" if d else "-"
        print(f"{name:12} {r['dora_s']:>16} {dd:>24}")
    k = res.get("kea-ha", {}).get("dora_s", 0)
    s = res.get("standalone", {}).get("dora_s", 0)
    for name in ("sync", "async"):
        if name in res and k:
            print(f"ratio {name}/kea-ha: {res[name]['dora_s'] / k:.2f}")
        if name in res and s:
            print(f"ratio {name}/standalone: {res[name]['dora_s'] / s:.2f}")
    return res


def bulks(a: argparse.Namespace) -> None:
    print(f"\n{'sessions':>9} {'bulk sync s':>12} {'RSS A MB':>9} {'RSS B MB':>9} "
          f"{'ACKs by A meanwhile':>20}")
    for n in (int(x) for x in a.sizes.split(",")):
        r = bulk(n)
        print(f"{r['n']:>9} {r['seconds']:>12} {r['rss_a_mb']:>9} {r['rss_b_mb']:>9} "
              f"{r['acks_during']:>20}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
