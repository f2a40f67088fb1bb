"""A damaged lease store: one byte flipped in the middle of device A's journal (or of its
snapshot) while A is stopped; A restarted holds every session again.

    lan bridge ─┬─ deviceA  prio 120 ══ sync veth ══ deviceB  prio 100
                └─ load     lab.dhcpload plays a relay (198.18/16): 40 DORAs through VIP

40 sessions are made through A (each one journaled once, and replicated to B). A is
stopped (B takes over), a byte in the middle of A's file is flipped, A is started again.
On main that lost every record after the flipped one (A held 20 of 40, and the peer,
seeing the same cursor, sent only a delta). Now A passes over the damaged record, keeps
the damaged file aside, rewrites its store, pulls a full snapshot from B before it may
preempt, and holds all 40; renewals keep their addresses and new clients never get one
of them. Real daemons in namespaces; `HaPair` (lab/hapair.py) owns the topology.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.leases.journal import Journal, scan_records
from appliance.leases.model import LeaseState
from appliance.leases.table import LeaseTable
from appliance.testing.daemonfiles import CLI, REPO
from appliance.testing.netns import Topology, wait_for
from lab.hapair import LOAD_RELAY, VIP, HaPair

pytestmark = [pytest.mark.netns, pytest.mark.slow]

SESSIONS = 40
START_TIMEOUT = 90


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root: network namespaces")
        pytest.skip("needs root: network namespaces")


def _load(ha: HaPair, out: Path, *args: str) -> tuple[dict[str, str], dict]:
    """lab.dhcpload from the load namespace through the VIP: (mac -> ip ACKed, summary)."""
    r = ha.t.run(ha.load_ns, [sys.executable, "-m", "lab.dhcpload", "--relay", LOAD_RELAY,
                              "--server", VIP, "--out", str(out), *args],
                 timeout=120, cwd=str(REPO))
    return json.loads(out.read_text())["acks"], json.loads(r.stdout.strip().splitlines()[-1])


def _bound(state_dir: Path) -> dict[str, str]:
    """mac -> ip of the BOUND leases readable from one store file set (no lock)."""
    table = LeaseTable()
    for name in ("leases.snap", "leases.journal.old", "leases.journal"):
        scan_records(state_dir / name, table.load)
    return {x.mac.hex(":"): str(x.address) for x in table.leases()
            if x.state == LeaseState.BOUND}


def _fold_into_snapshot(state_dir: Path) -> None:
    """What the daemon does at its next start (journal.compact): A's 40 sessions move
    into leases.snap, so that the snapshot is what gets damaged."""
    j = Journal(state_dir)
    table = LeaseTable()
    j.replay(table.load)
    j.compact(list(table.leases()), background=False)
    j.close()


@pytest.mark.parametrize("target", ["leases.journal", "leases.snap"])
def test_flipped_byte_then_every_session_back_from_the_peer(tmp_path: Path, target: str):
    with Topology("sd") as t:
        ha = HaPair(t, tmp_path, advert_ms=100)
        ha.start(START_TIMEOUT)
        acked, summary = _load(ha, tmp_path / "acks.json", "--clients", str(SESSIONS))
        assert len(acked) == SESSIONS and summary["naks"] == 0, summary
        wait_for(lambda: all(ha.b.bindings().get(m) == ip for m, ip in acked.items()), 30,
                 what="B holds the 40 sessions")

        ha.a.stop()  # priority 0: B takes over
        ha.b.wait(lambda: ha.b.is_("active", "master"), "B master after A's stop", 30)
        state = ha.a.state_dir
        if target == "leases.snap":
            _fold_into_snapshot(state)
        assert _bound(state) == acked
        path = state / target
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        on_disk = _bound(state)
        lost = {m: ip for m, ip in acked.items() if on_disk.get(m) != ip}
        # Exactly the record holding the byte: the ones after it are read past it.
        assert len(lost) == 1, lost
        # `dhcp-hotbackup leases` reads through the damage too, and says so.
        r = subprocess.run([CLI, "leases", "--json", "--config", str(ha.a.etc)],
                           capture_output=True, text=True, timeout=60, check=True)
        assert len(json.loads(r.stdout)) == SESSIONS - 1 and "damaged" in r.stderr

        ha.a.start(START_TIMEOUT)
        ha.steady(ha.a, START_TIMEOUT)  # A preempted: it had all it needed first
        assert ha.a.transition().get("reason") == "preempt", ha.a.transition()
        run = ha.a.log_text().rsplit("==== start at", 1)[-1]
        found, snapshot_in = run.find("D067 lease store damaged"), run.find("D064")
        preempt = run.find("-> master (preempt)")
        assert 0 <= found < snapshot_in < preempt, \
            f"A must find the damage, then take the peer's snapshot, then preempt:\n{run}"
        ha.a.wait_stat("sync_snapshots_received", 1)  # published about once a second
        assert ha.a.wait_stat("store_damaged_files", 1) == 1

        # Every session on A again, the lost one from B's snapshot.
        on_a = ha.a.bindings()  # asserts no address or MAC bound twice
        assert all(on_a.get(m) == ip for m, ip in acked.items()), \
            {m: (ip, on_a.get(m)) for m, ip in acked.items() if on_a.get(m) != ip}
        # The damaged file was kept aside as it was; the store was rewritten.
        kept = list(state.glob(f"{target}.damaged-*"))
        assert len(kept) == 1 and kept[0].read_bytes() == bytes(data)
        assert _bound(state) == on_a
        assert kept[0].name in (ha.a.value("store/damage") or "")
        assert ha.a.value("store/state") == "ok"
        status = subprocess.run([CLI, "status", "--config", str(ha.a.etc)],
                                capture_output=True, text=True, timeout=60).stdout
        assert "DAMAGE" in status and kept[0].name in status

        # No address handed out twice: each client renews its own address, and new
        # clients get fresh ones.
        renew = tmp_path / "renew.json"
        renew.write_text(json.dumps({"acks": acked}))
        renewed, summary = _load(ha, tmp_path / "renewed.json", "--renew", str(renew))
        assert summary["naks"] == 0 and renewed == acked, summary
        fresh, summary = _load(ha, tmp_path / "fresh.json", "--clients", str(SESSIONS),
                               "--seed", "9")
        assert len(fresh) == SESSIONS and summary["naks"] == 0, summary
        assert not set(fresh.values()) & set(acked.values())
        for d in ha.devices:
            d.bindings()
        ha.stop()


def test_standalone_serves_what_it_recovered(tmp_path: Path):
    """No peer to pull from: the device says so (D067, store/damage), keeps the damaged
    file aside and serves the sessions it could read."""
    from appliance.testing.daemonfiles import runtime_value
    from appliance.testing.trees import standalone_tree
    from lab.loadnet import LOAD_POOL, server_and_relay

    etc = standalone_tree(tmp_path, extra=LOAD_POOL)
    run, state, log = tmp_path / "run", tmp_path / "state", tmp_path / "daemon.log"
    with Topology("sds") as t:
        srv, rel = server_and_relay(t)

        def start():
            with open(log, "ab") as f:
                p = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=f,
                            stderr=subprocess.STDOUT)
            wait_for(lambda: p.poll() is None and runtime_value(run, "pid") == str(p.pid)
                     and runtime_value(run, "role") == "active", 30, what="daemon active")
            return p

        def load(name: str, *args: str) -> dict[str, str]:
            out = tmp_path / f"{name}.json"
            t.run(rel, [sys.executable, "-m", "lab.dhcpload", "--relay", "198.18.0.1",
                        "--server", "192.0.2.2", "--out", str(out), *args],
                  timeout=120, cwd=str(REPO))
            return json.loads(out.read_text())["acks"]

        daemon = start()
        acked = load("first", "--clients", str(SESSIONS))
        assert len(acked) == SESSIONS
        assert t.stop(daemon, timeout=30) == 0
        path = state / "leases.journal"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        recovered = _bound(state)
        assert len(recovered) == SESSIONS - 1

        daemon = start()
        text = log.read_text()
        assert "D067 lease store damaged" in text and "serving what was recovered" in text
        wait_for(lambda: "damaged-" in (runtime_value(run, "store/damage") or ""), 10,
                 what="store/damage names the file kept aside")
        assert len(list(state.glob("leases.journal.damaged-*"))) == 1
        assert _bound(state) == recovered  # rewritten from what was read
        # It serves: the survivors keep their addresses.
        renew = tmp_path / "renew.json"
        renew.write_text(json.dumps({"acks": recovered}))
        assert load("renewed", "--renew", str(renew)) == recovered
        assert t.stop(daemon, timeout=30) == 0
