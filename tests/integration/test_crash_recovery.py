"""kill -9 of the server under load, then restart: every ACKed lease is still its client's.

A relay-playing load generator (lab.dhcpload) records every ACK it got.
After the crash and restart: the durable store holds each of those bindings, a renewal
of each gets the same address, and a crowd of new clients never gets one of them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from appliance.testing.daemonfiles import CLI, PY, REPO, runtime_stat
from appliance.testing.netns import Topology, wait_for
from appliance.testing.trees import standalone_tree
from lab.loadnet import LOAD_POOL, server_and_relay

pytestmark = pytest.mark.netns  # needs root (tests/conftest.py)





def _load(t, ns, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return t.run(ns, [PY, "-m", "lab.dhcpload", "--relay", "198.18.0.1",
                      "--server", "192.0.2.2", "--out", str(out), *args],
                 timeout=120, cwd=str(REPO))


def test_kill9_under_load_loses_no_acked_lease(tmp_path):
    etc = standalone_tree(tmp_path, extra=LOAD_POOL)
    run = tmp_path / "run"
    with Topology() as t:
        srv, rel = server_and_relay(t)

        def start():
            log = open(tmp_path / "daemon.log", "ab")
            p = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
            wait_for(lambda: (run / "role").exists() and (run / "pid").read_text().strip()
                     == str(p.pid), 15, what="daemon start")
            return p

        daemon = start()
        acks = tmp_path / "acks.json"
        load = t.popen(rel, [PY, "-m", "lab.dhcpload", "--relay", "198.18.0.1",
                             "--server", "192.0.2.2", "--clients", "30000", "--window", "64",
                             "--rate", "2500", "--duration", "6", "--timeout", "0.5",
                             "--retries", "1", "--out", str(acks)], cwd=str(REPO))
        wait_for(lambda: runtime_stat(run, "ack") >= 1500, 20, what="1500 ACKs under load")
        t.kill9(daemon)
        assert load.wait(60) == 0
        acked = json.loads(acks.read_text())["acks"]
        assert len(acked) >= 1500

        daemon = start()
        store = json.loads(subprocess.run(
            [CLI, "leases", "--json", "--config", str(etc)], capture_output=True, text=True,
            check=True).stdout)
        bound = {x["mac"]: x["ip"] for x in store}
        missing = {m: ip for m, ip in acked.items() if bound.get(m) != ip}
        assert not missing, f"{len(missing)} ACKed leases lost, e.g. {list(missing.items())[:3]}"

        # Each client renews (REQUEST with ciaddr): same address, no NAK.
        renewed = tmp_path / "renewed.json"
        r = _load(t, rel, renewed, "--renew", str(acks), "--window", "128")
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        assert summary["naks"] == 0
        assert json.loads(renewed.read_text())["acks"] == acked

        # New clients never get an address that a surviving client holds.
        fresh = tmp_path / "fresh.json"
        _load(t, rel, fresh, "--clients", "2000", "--seed", "7", "--window", "128")
        new = json.loads(fresh.read_text())["acks"]
        assert len(new) == 2000
        assert not set(new.values()) & set(acked.values())
        assert len(set(new.values())) == len(new)
        t.stop(daemon)
