"""One real `dhcp-hotbackup run` in a namespace, as the scenario labs drive it: launch,
SIGTERM (must exit 0), kill -9 and the unit's cleanup, whether this process wrote the
runtime tree. lab/hapair.py's HaDevice and lab/vlanpair.py's VlanDevice build on it;
each sets t, name, ns, etc, root, run_dir and log, and adds its own `start`."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from appliance.testing.daemonfiles import CLI, DaemonFiles
from appliance.testing.netns import Netns, Topology


class LabDaemon(DaemonFiles):
    t: Topology
    name: str
    ns: Netns
    etc: Path
    root: Path
    STOP_TIMEOUT = 30.0

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the daemon and return at once (its log marks each start)."""
        assert not self.running(), f"{self.name} is running"
        with open(self.log, "ab") as log:
            log.write(f"==== start at {time.time():.6f}\n".encode())
            log.flush()
            self.proc = self.t.popen(self.ns, [CLI, "run", "--config", str(self.etc)],
                                     stdout=log, stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()
        return self.proc

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, as systemd would: the daemon must exit 0."""
        assert self.proc is not None
        rc = self.t.stop(self.proc, signal.SIGTERM, timeout=timeout or self.STOP_TIMEOUT)
        assert rc == 0, f"{self.name}: exit status {rc} after SIGTERM\n{self.log_tail()}"

    def kill9(self, cleanup: bool = True) -> float:
        """kill -9 the daemon; returns when it was dead (monotonic). Then, as the
        systemd unit's ExecStopPost does, `dhcp-hotbackup cleanup` (unless `cleanup` is
        False): without it the dead box's kernel keeps the VIPs and answers ARP."""
        self.assert_running()
        assert self.proc is not None
        self.t.kill9(self.proc)
        dead = time.monotonic()
        if cleanup:
            self.cleanup()
        return dead

    def cleanup(self) -> str:
        """`dhcp-hotbackup cleanup`: what a crashed daemon left on the LAN, removed."""
        return self.t.run(self.ns, [CLI, "cleanup", "--config", str(self.etc)],
                          timeout=120).stdout

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self) -> None:
        assert self.running(), \
            f"{self.name}: daemon exited ({self.proc and self.proc.returncode})\n" \
            + self.log_tail()

    def current(self) -> bool:
        """The runtime tree is this process's (not a dead one's)."""
        self.assert_running()
        assert self.proc is not None
        return self.value("pid") == str(self.proc.pid)
