"""A wrong wall clock on one device of a pair (issue 11, "the standby's clock decides the
active's leases"), with libfaketime under the real daemon.

Topology (lab.pair): devices A and B, standalone (both serve their own LAN), joined by
the sync link. B's wall clock runs a day ahead, as after a bad NTP answer; its monotonic
clock is left alone (NTP does not move it). A hands out leases; B holds them and, by its
own clock, they are long expired. What an operator must see: A's leases stay bound
(B's expiry sweep is not authoritative for them: docs/sync-protocol.md, merge), both
devices raise the clock-skew alarm (SYNC040), and the leases are on B.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.testing.netns import Topology, wait_for
from appliance.testing.require import missing
from lab.pair import Pair

pytestmark = pytest.mark.netns  # needs root (tests/conftest.py)

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
DAY_AHEAD = ("env", f"LD_PRELOAD={LIBFAKETIME}", "FAKETIME=+1d",
             "FAKETIME_DONT_FAKE_MONOTONIC=1", "FAKETIME_NO_CACHE=1")


@pytest.fixture
def topo():
    with Topology("wc") as t:
        yield t


def test_a_day_ahead_on_b_expires_nothing_of_a(topo: Topology, tmp_path: Path) -> None:
    if not LIBFAKETIME.exists():
        missing(f"{LIBFAKETIME} (Debian package faketime)")
    pair = Pair(topo, tmp_path)
    pair.a.start()
    pair.b.start(wrap=DAY_AHEAD)
    pair.wait_in_sync()
    try:
        acked, _ = pair.a.load("--clients", 20, "--seed", 3)
        assert len(acked) == 20, f"A acked {len(acked)} of 20"
        wait_for(lambda: pair.b.value("sync/clock_skew_alarm") == "1", 30,
                 what="B's clock-skew alarm (sync/clock_skew_alarm)")
        wait_for(lambda: pair.a.value("sync/clock_skew_alarm") == "1", 30,
                 what="A's clock-skew alarm (sync/clock_skew_alarm)")
        skew_ms = float(pair.a.value("sync/clock_skew_ms") or 0)
        assert abs(abs(skew_ms) - 86_400_000) < 60_000, f"A measures a skew of {skew_ms} ms"
        wait_for(lambda: {x["mac"] for x in pair.b.leases(all=True)} >= set(acked), 30,
                 what="A's 20 leases on B")
        # B sweeps its table every second, by its clock a day ahead; the defect showed
        # at its first sweep (B expired A's leases and replicated the expiry to A).
        # After ten of B's sweeps, every lease A handed out is still bound on A (on B,
        # by B's own clock, they are over: B's view, not replicated to A).
        swept = pair.b.stat("expiry_sweeps")
        pair.b.wait_stat("expiry_sweeps", swept + 10)
        rows = {x["mac"]: x for x in pair.a.leases(all=True)}
        gone = {m: rows.get(m, {}).get("state") for m in acked
                if rows.get(m, {}).get("state") != "bound"}
        assert not gone, f"A's leases ended by B's clock: {gone}"
        assert "SYNC040" in pair.a.log.read_text(), "A logged no clock-skew alarm (SYNC040)"
        pair.a.assert_running()
        pair.b.assert_running()
    finally:
        pair.stop()
