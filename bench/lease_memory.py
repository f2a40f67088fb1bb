"""Peak RSS of the server holding 100k and 1M leases, ours against Kea (memfile), same run.

Each server starts on a store that already holds N bound leases (ours: a snapshot file
written with our journal code; Kea: a lease CSV in its memfile format) and the figure is
the kernel's VmHWM once it serves. Addresses come from 100.64.0.0/10 so a million fit;
the servers run in a namespace whose only link is a veth pair: no packet goes anywhere.

    .venv/bin/python bench/lease_memory.py [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import shutil
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
from lab.kea import kea_config, start_kea

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / ".venv/bin/dhcp-hotbackup")
NET, FIRST = "100.64.0.0/10", int(IPv4Address("100.64.1.0"))


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def leases(n: int, now: float):
    for i in range(n):
        yield Lease(ip=FIRST + i, mac=(0x020000000000 + i).to_bytes(6, "big"), client_id=None,
                    state=LeaseState.BOUND, start=now, expires=now + 86400, pool="big",
                    hostname=f"host-{i}", seq=i + 1, origin="deviceA")


def ours(n: int, work: Path) -> float:
    etc = standalone_tree(work, extra={
        "pools/big/subnet": NET, "pools/big/range": f"{IPv4Address(FIRST)}-100.127.255.254",
        "pools/big/lease_time": "86400"})
    j = Journal(work / "state")
    j.replay(lambda x: None)
    j.compact(list(leases(n, time.time())), background=False)
    j.close()
    with Topology("bm") as t:
        ns = t.host("srv")
        t.veth(ns, "eth1", ns, "peer1")
        t.addr(ns, "eth1", "192.0.2.2/24")
        log = open(work / "daemon.log", "wb")
        p = t.popen(ns, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
        wait_for(lambda: (work / "run/role").exists(), 600, what="daemon start")
        time.sleep(1.5)  # let the start-up compaction thread settle
        rss = vm_hwm_mb(p.pid)
        t.stop(p)
    return rss


def kea(n: int, work: Path) -> float:
    now = int(time.time())
    csv = work / "leases4.csv"
    with open(csv, "w") as f:
        f.write("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,"
                "hostname,state,user_context\n")
        for x in leases(n, now):
            f.write(f"{IPv4Address(x.ip)},{x.mac.hex(':')},,86400,{now + 86400},2,0,0,"
                    f"{x.hostname},0,\n")
    cfg = kea_config(work, "eth1", [("192.0.2.0/24", "192.0.2.100 - 192.0.2.199"),
                                    (NET, f"{IPv4Address(FIRST)} - 100.127.255.254")],
                     lease_time=86400)
    with Topology("bk") as t:
        ns = t.host("srv")
        t.veth(ns, "eth1", ns, "peer1")
        t.addr(ns, "eth1", "192.0.2.2/24")
        p = start_kea(t, ns, work, cfg)
        wait_for(lambda: "kea-dhcp4" in t.run(ns, ["ss", "-lunp"], check=False).stdout
                 or p.poll() is not None, 600, what="kea start")
        rss = vm_hwm_mb(p.pid) if p.poll() is None else float("nan")
        t.stop(p)
    return rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    a = ap.parse_args()
    print(f"{'leases':>9} {'ours MB':>9} {'kea MB':>9} {'ours/kea':>9}")
    for n in (int(x) for x in a.sizes.split(",")):
        w1 = Path(tempfile.mkdtemp(prefix="bench-mem-ours-"))
        w2 = Path(tempfile.mkdtemp(prefix="bench-mem-kea-"))
        try:
            o = ours(n, w1)
            k = kea(n, w2)
        finally:
            shutil.rmtree(w1, ignore_errors=True)
            shutil.rmtree(w2, ignore_errors=True)
        print(f"{n:>9} {o:>9.1f} {k:>9.1f} {o / k if k else float('nan'):>9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
