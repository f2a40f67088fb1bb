"""Live config: reload under load applies a new pool, a priority and a rate limit without
losing a lease or NAKing a client; a broken tree is refused and nothing changes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from appliance.config.tree import write_tree
from appliance.testing.daemonfiles import CLI, PY, REPO, runtime_value
from appliance.testing.netns import Topology, wait_for
from appliance.testing.trees import standalone_tree
from lab.loadnet import LOAD_POOL, server_and_relay

pytestmark = pytest.mark.netns  # needs root (tests/conftest.py)



def value(root: Path, rel: str) -> str:
    return runtime_value(root / "run", rel) or ""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=30)


def load(t, ns, out: Path, *args: str) -> dict:
    r = t.run(ns, [PY, "-m", "lab.dhcpload", "--server", "192.0.2.2",
                   "--out", str(out), *args], timeout=120, cwd=str(REPO))
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_reload_under_load_new_pool_rate_limit_and_broken_tree(tmp_path):
    etc = standalone_tree(tmp_path, datapath="xdp", extra={**LOAD_POOL,
                          "datapath/rate_limit_pps": "50"})
    with Topology() as t:
        srv, rel = server_and_relay(t)
        t.addr(rel, "eth0", "203.0.113.1/24")
        t.run(srv, ["ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.3"])
        log = open(tmp_path / "daemon.log", "wb")
        daemon = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
        wait_for(lambda: value(tmp_path, "pid") == str(daemon.pid), 30, what="daemon")

        first = tmp_path / "first.json"
        assert load(t, rel, first, "--relay", "198.18.0.1", "--clients", "300")["acked"] == 300
        # Before the reload nobody serves 203.0.113.0/24.
        none = load(t, rel, tmp_path / "none.json", "--relay", "203.0.113.1", "--clients", "5",
                    "--timeout", "0.3", "--retries", "0", "--duration", "3")
        assert none["acked"] == 0

        # Renewals run throughout the reload.
        renewing = t.popen(rel, [PY, "-m", "lab.dhcpload", "--relay",
                                 "198.18.0.1", "--server", "192.0.2.2", "--renew", str(first),
                                 "--rate", "100", "--window", "8",
                                 "--out", str(tmp_path / "renewed.json")], cwd=str(REPO))
        write_tree(etc, {"pools/extra/subnet": "203.0.113.0/24",
                         "pools/extra/range": "203.0.113.100-203.0.113.199",
                         "datapath/rate_limit_pps": "80"})
        r = cli("reload", "--config", str(etc))
        assert r.returncode == 0, r.stderr
        assert "reload applied" in r.stdout and "pools/extra" in r.stdout
        assert "datapath/rate_limit_pps" in r.stdout
        new = load(t, rel, tmp_path / "new.json", "--relay", "203.0.113.1", "--clients", "20",
                   "--seed", "5")
        assert new["acked"] == 20
        assert all(ip.startswith("203.0.113.") for ip in
                   json.loads((tmp_path / "new.json").read_text())["acks"].values())
        wait_for(lambda: value(tmp_path, "datapath/rate_limit_pps") == "80", 5,
                 what="rate limit in the map")
        assert renewing.wait(60) == 0
        renewed = json.loads((tmp_path / "renewed.json").read_text())
        assert renewed["summary"]["naks"] == 0
        assert renewed["acks"] == json.loads(first.read_text())["acks"]

        # A broken tree: refused with file, value and rule; the pool keeps serving.
        write_tree(etc, {"pools/extra/range": "203.0.113.200-203.0.113.100"})
        r = cli("reload", "--config", str(etc))
        assert r.returncode == 2
        assert "pools/extra/range" in r.stderr and "above the last" in r.stderr
        check = cli("check-config", str(etc))
        assert check.returncode == 2 and check.stderr == r.stderr
        # The daemon itself refuses it too (SIGHUP without the CLI's check).
        before = value(tmp_path, "config/last_reload")
        os.kill(daemon.pid, 1)
        wait_for(lambda: value(tmp_path, "config/last_reload") != before, 5,
                 what="daemon's reload verdict")
        assert json.loads(value(tmp_path, "config/last_reload"))["result"] == "refused"
        more = load(t, rel, tmp_path / "more.json", "--relay", "203.0.113.1", "--clients", "5",
                    "--seed", "9")
        assert more["acked"] == 5
        write_tree(etc, {"pools/extra/range": "203.0.113.100-203.0.113.199"})
        leases = json.loads(cli("leases", "--json", "--config", str(etc)).stdout)
        assert len(leases) == 300 + 20 + 5
        # `cleanup` (the unit's ExecStopPost) leaves a running daemon's program alone.
        r = t.run(srv, [CLI, "cleanup", "--config", str(etc)])
        assert "a daemon is running" in r.stdout
        assert "xdp" in t.run(srv, ["ip", "link", "show", "eth1"]).stdout
        t.stop(daemon)
        r = t.run(srv, [CLI, "cleanup", "--config", str(etc)])
        assert "nothing left behind" in r.stdout  # a clean stop detached it already


def test_priority_reload_is_advertised_at_once_and_pool_reload_does_not_flap(tmp_path):
    def tree(name: str, prio: int) -> Path:
        return standalone_tree(tmp_path / name, name=name, extra={
            "vrrp/vrid": "20", "vrrp/priority": str(prio), "vrrp/advert_interval_ms": "1000",
            "vrrp/virtual_ip": "192.0.2.1/24"})

    ea, eb = tree("A", 120), tree("B", 100)
    with Topology() as t:
        lan = t.lan()
        a, b = t.host("a"), t.host("b")
        t.attach(a, lan, "eth1", "192.0.2.2/24")
        t.attach(b, lan, "eth1", "192.0.2.3/24")
        pa = t.popen(a, [CLI, "run", "--config", str(ea)])
        wait_for(lambda: value(tmp_path / "A", "vrrp/state") == "master", 20, what="A master")
        pb = t.popen(b, [CLI, "run", "--config", str(eb)])
        wait_for(lambda: value(tmp_path / "B", "vrrp/state") == "backup", 20, what="B backup")
        # Counters are published about once a second, like every stats/ file.
        flips = wait_for(lambda: (v := value(tmp_path / "A", "stats/vrrp_became_master"))
                         not in ("", "0") and v, 5, what="A's counters published")

        # A pool change: VRRP untouched.
        write_tree(ea, {"pools/more/subnet": "203.0.113.0/24",
                        "pools/more/range": "203.0.113.10-203.0.113.20"})
        assert cli("reload", "--config", str(ea)).returncode == 0
        assert value(tmp_path / "A", "vrrp/state") == "master"
        assert value(tmp_path / "A", "stats/vrrp_became_master") == flips

        # A lower priority on A: advertised at once, B preempts well before the 3 s that
        # a master-down interval at 1 s adverts would take.
        write_tree(ea, {"vrrp/priority": "90"})
        r = cli("reload", "--config", str(ea))
        assert r.returncode == 0 and "vrrp/priority" in r.stdout
        wait_for(lambda: value(tmp_path / "B", "role") == "active", 1.5, interval=0.01,
                 what="B preempts after A's priority drops")
        wait_for(lambda: value(tmp_path / "A", "vrrp/priority") == "90", 3, what="A prio")
        t.stop(pa)
        t.stop(pb)
