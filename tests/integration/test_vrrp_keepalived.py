"""Our VRRPv3 node against keepalived 2.2.7 on one bridge (namespaces, root).

    lan bridge ── ours  (eth1 192.0.2.10, MAC 02:00:00:00:00:0a) appliance.testing.vrrp_node
               ├─ ka    (eth1 192.0.2.11, MAC 02:00:00:00:00:0b) keepalived, vrrp_version 3
               └─ obs   (eth1 192.0.2.250) tcpdump: gratuitous ARPs with kernel timestamps

VRID 51, VIP 192.0.2.100/24, 100 ms adverts. Takeover times are measured from the
moment we kill or stop a process to the new master's first gratuitous ARP seen by the
observer -- that is, when the LAN learns who owns the VIP. Everything waits on observable
state; no test sleeps for a timer.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.testing.netns import Topology, wait_for
from appliance.testing.vrrp_node import VrrpLab
from appliance.vrrp.timers import master_down_interval_s, skew_time_s

pytestmark = pytest.mark.netns

ADVERT_MS = 100
# Process wake-up and capture slack on a shared 2-core machine, on top of the RFC's own
# Master_Down_Interval; the interval itself is 361 ms for priority 100 at 100 ms.
SLACK_S = 0.1


def mdi(priority: int) -> float:
    return master_down_interval_s(priority, ADVERT_MS // 10)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VrrpLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces")
    for tool in ("keepalived", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    with Topology(prefix="vr") as t:
        lab = VrrpLab(t, str(tmp_path), advert_ms=ADVERT_MS)
        lab.host("ours")
        lab.host("ka")
        try:
            yield lab
        finally:
            for log in sorted(tmp_path.glob("*.log")):  # shown by pytest on failure
                print(f"==== {log.name}\n" + "\n".join(log.read_text(
                    errors="replace").splitlines()[-40:]))


def _ours(lab: VrrpLab, state: str, master: str | None = None) -> bool:
    s = lab.state("ours")
    return s.get("state") == state and (master is None or s.get("master") == master)


def test_keepalived_master_failover_preemption_and_priority_zero(lab: VrrpLab) -> None:
    """keepalived has the higher priority: it wins; kill -9 it and we own the VIP within
    the Master_Down_Interval; it comes back and preempts us; its SIGTERM (priority 0)
    hands the VIP to us after Skew_Time."""
    arp = lab.arp_watch()
    ka = lab.start_keepalived("ka", 150)
    lab.start_ours("ours", 100)
    wait_for(lambda: _ours(lab, "backup", lab.ip["ka"]) and lab.has_vip("ka"), 10,
             what="keepalived master, ours backup")
    assert not lab.has_vip("ours")

    # kill -9 the whole keepalived (parent and VRRP child at once: no priority 0)
    t_kill = time.time()
    lab.t.stop(ka, sig=signal.SIGKILL)
    took = arp.wait(lab.mac["ours"], t_kill) - t_kill
    assert took <= mdi(100) + SLACK_S, f"took {took:.3f}s, MDI {mdi(100):.3f}s"
    wait_for(lambda: _ours(lab, "master") and lab.has_vip("ours"), 5, what="ours master")

    # preemption back: keepalived restarts with the higher priority and takes over
    ka = lab.start_keepalived("ka", 150)
    wait_for(lambda: _ours(lab, "backup", lab.ip["ka"]), 10, what="keepalived preempts")
    wait_for(lambda: not lab.has_vip("ours"), 2, what="our VIP removed")
    assert lab.has_vip("ka")
    assert lab.state("ours")["transitions"][-1]["reason"] == "higher_priority"

    # keepalived's SIGTERM sends priority 0: we take over after Skew_Time, not MDI
    t_stop = time.time()
    lab.t.stop(ka)
    took = arp.wait(lab.mac["ours"], t_stop) - t_stop
    assert took < mdi(100) / 2, f"took {took:.3f}s (skew {skew_time_s(100, 10):.3f}s)"
    wait_for(lambda: _ours(lab, "master"), 2, what="ours master after priority 0")
    assert lab.state("ours")["transitions"][-1]["reason"] == "master_stopped"
    assert lab.state("ours")["counters"]["rx_bad_checksum"] == 0


def test_ours_master_priority_zero_kill_and_preemption_back(lab: VrrpLab) -> None:
    """We have the higher priority: we win; our SIGTERM makes keepalived take over well
    before its Master_Down_Interval; we preempt back; kill -9 us and keepalived owns the
    VIP within the interval; we restart, clean our stale VIP and preempt back again."""
    arp = lab.arp_watch()
    lab.start_keepalived("ka", 100)
    ours = lab.start_ours("ours", 150)
    wait_for(lambda: _ours(lab, "master") and not lab.has_vip("ka"), 10,
             what="ours master, keepalived backup")
    assert lab.has_vip("ours")

    # our priority-0 shutdown
    t_stop = time.time()
    assert lab.t.stop(ours) == 0
    took = arp.wait(lab.mac["ka"], t_stop) - t_stop
    assert took < mdi(100) / 2, f"keepalived took {took:.3f}s after our priority 0"
    assert not lab.has_vip("ours"), "VIP left behind by a clean stop"
    assert lab.state("ours")["state"] == "initialize"
    assert lab.state("ours")["counters"]["tx_adverts"] >= 2

    # preemption back: we restart with the higher priority
    t_start = time.time()
    ours = lab.start_ours("ours", 150)
    arp.wait(lab.mac["ours"], t_start)
    wait_for(lambda: _ours(lab, "master") and not lab.has_vip("ka"), 10,
             what="ours preempts keepalived")
    assert lab.state("ours")["transitions"][-1]["reason"] == "preempt"

    # kill -9 us: keepalived takes over within its Master_Down_Interval
    t_kill = time.time()
    lab.t.kill9(ours)
    took = arp.wait(lab.mac["ka"], t_kill) - t_kill
    assert took <= mdi(100) + SLACK_S, f"keepalived took {took:.3f}s, MDI {mdi(100):.3f}s"
    assert lab.has_vip("ours"), "kill -9 leaves the VIP behind (as with keepalived)"

    # restart: the stale VIP goes at start-up, then we preempt back
    lab.start_ours("ours", 150)
    wait_for(lambda: _ours(lab, "master") and not lab.has_vip("ka"), 10,
             what="ours preempts again")
    first = lab.state("ours")["transitions"][0]
    assert (first["state"], first["reason"]) == ("backup", "startup")
