"""A running daemon told to reload a tree that the reader cannot make sense of: an
emptied sync/, a dangling and a looping symbolic link, a pool without its range. All
are refused in one round (D020 names every path), the running config stays, and the
device keeps serving a real client. The daemon is the integration conftest's
`dhcp_net` (standalone, datapath off). Unreadable files and folders are in
tests/unit/test_config.py: this daemon runs as root, which reads them anyway."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from appliance.testing.daemonfiles import CLI
from appliance.testing.netns import wait_for
from appliance.testing.require import require_tools
from lab.clients import Udhcpc

pytestmark = pytest.mark.netns


def test_reload_refuses_empty_sync_and_broken_links_and_keeps_serving(dhcp_net, tmp_path):
    require_tools("udhcpc")
    etc = dhcp_net.etc
    lease_time = etc / "pools/lan/lease_time"
    saved = lease_time.read_text()
    (etc / "sync").mkdir()
    lease_time.unlink()
    os.symlink("/nonexistent/lease_time", lease_time)
    (etc / "pools/guest").mkdir()
    (etc / "pools/guest/subnet").write_text("198.51.100.0/24\n")
    os.symlink("reservations", etc / "pools/lan/reservations")
    try:
        before = dhcp_net.value("config/last_reload")
        os.kill(dhcp_net.proc.pid, signal.SIGHUP)
        wait_for(lambda: dhcp_net.value("config/last_reload") != before, 10,
                 what="the daemon's reload verdict")
        verdict = json.loads(dhcp_net.value("config/last_reload") or "{}")
        assert verdict["result"] == "refused", verdict
        expect = {f"{etc}/sync": "the folder holds no setting",
                  f"{lease_time}": "broken symbolic link",
                  f"{etc}/pools/guest/range": "missing: this setting is required",
                  f"{etc}/pools/lan/reservations": "symbolic link loop"}
        for path, rule in expect.items():
            assert any(p.startswith(f"{path}: ") and rule in p for p in verdict["problems"]), \
                (path, verdict["problems"])
        assert len(verdict["problems"]) == len(expect), verdict["problems"]
        log = dhcp_net.log_text()
        assert "D020 reload refused" in log
        assert all(path in log for path in expect)

        # The CLI refuses the same tree, with the same lines, and sends nothing.
        r = subprocess.run([CLI, "reload", "--config", str(etc)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2 and all(path in r.stderr for path in expect), r.stderr

        # The running config stays: a real client still gets a lease of the old length.
        dhcp_net.assert_serving()
        ns, mac = dhcp_net.client("c1")
        with Udhcpc(dhcp_net.t, ns, "eth0", tmp_path / "udhcpc").start() as c:
            c.wait_event("bound")
    finally:
        _restore(etc, saved)
    lease = dhcp_net.lease_of(mac)  # `leases` reads the tree too: after the repair
    assert lease is not None and lease["expires"] - lease["start"] == 3600, lease


def _restore(etc: Path, lease_time: str) -> None:
    for link in (etc / "pools/lan/reservations", etc / "pools/lan/lease_time"):
        if link.is_symlink():
            link.unlink()
    shutil.rmtree(etc / "pools/guest", ignore_errors=True)
    if (etc / "sync").is_dir():
        (etc / "sync").rmdir()
    (etc / "pools/lan/lease_time").write_text(lease_time)
