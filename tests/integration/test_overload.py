"""Overload: requests that waited too long are shed before any work, and the store
holds exactly the leases whose ACKs went out (Kea HA, measured here, saved thousands
of leases it never answered once overloaded)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from appliance.testing.daemonfiles import CLI, PY, REPO, runtime_stat
from appliance.testing.netns import Topology, wait_for
from appliance.testing.trees import standalone_tree
from lab.loadnet import LOAD_POOL, server_and_relay

pytestmark = pytest.mark.netns  # needs root (tests/conftest.py)





def test_backlog_is_shed_and_store_matches_acks(tmp_path):
    etc = standalone_tree(tmp_path, extra=LOAD_POOL)
    run = tmp_path / "run"
    with Topology() as t:
        srv, rel = server_and_relay(t)
        log = open(tmp_path / "daemon.log", "wb")
        daemon = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
        wait_for(lambda: (run / "role").exists(), 15, what="daemon start")

        acks = tmp_path / "acks.json"
        load = t.popen(rel, [PY, "-m", "lab.dhcpload", "--relay", "198.18.0.1",
                             "--server", "192.0.2.2", "--clients", "20000", "--window", "512",
                             "--rate", "3000", "--duration", "5", "--timeout", "1.5",
                             "--retries", "3", "--linger", "3", "--out", str(acks)],
                       cwd=str(REPO))
        wait_for(lambda: runtime_stat(run, "ack") >= 500, 20, what="500 ACKs")
        # Freeze the server for a second while requests keep arriving: the queue it finds
        # on waking is older than it may answer, so it must shed it, unanswered.
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            time.sleep(1.2)  # the length of the freeze, not a wait for a timer
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        assert load.wait(60) == 0
        wait_for(lambda: runtime_stat(run, "dropped_overload") > 0, 5, what="dropped_overload")
        acked = json.loads(acks.read_text())["acks"]
        store = json.loads(subprocess.run(
            [CLI, "leases", "--json", "--config", str(etc)], capture_output=True, text=True,
            check=True).stdout)
        bound = {x["mac"]: x["ip"] for x in store}
        assert bound == acked, (
            f"saved without ACK: {len(set(bound) - set(acked))}, "
            f"ACKed without save: {len(set(acked) - set(bound))}")
        t.stop(daemon)
