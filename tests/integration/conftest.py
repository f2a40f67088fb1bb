"""Shared fixtures for the namespace tests: a LAN with the real server process on it.

    lan bridge ── srv netns: eth1 192.0.2.2/24, `dhcp-hotbackup run` (standalone)
               └─ client namespaces, one per test (`dhcp_net.client("name")`)

`dhcp_net` is one daemon per test module (pool lan 192.0.2.100-199 and a second pool
`relayed` 203.0.113.100-199 reached through a relay at 192.0.2.3); `short_lease_net` is
a separate LAN whose daemon hands out 10 s leases, for tests that watch a client renew
at T1. Both stop the daemon with SIGTERM and require it to exit 0: a crash anywhere in
the module shows up. Namespaces and processes are removed by Topology even on failure.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.testing.daemonfiles import CLI, DaemonFiles
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.require import require_root, require_tools
from appliance.testing.trees import standalone_tree

SERVER_IP = "192.0.2.2"
RELAY_UP_IP = "192.0.2.3"
RELAYED_NET = "203.0.113.0/24"
RELAYED_POOL = {
    "pools/relayed/subnet": RELAYED_NET,
    "pools/relayed/range": "203.0.113.100-203.0.113.199",
    "pools/relayed/router": "203.0.113.1",
}


class DhcpNet(DaemonFiles):
    """A topology with a running server, and what a user would look at on it."""

    def __init__(self, t: Topology, root: Path, lease_time: int,
                 extra: dict[str, str] | None = None) -> None:
        self.t = t
        self.root = root
        self.etc = standalone_tree(root, lease_time=lease_time, extra=extra)
        self.run_dir = root / "run"
        self.log = root / "daemon.log"
        self.lan = t.lan()
        self.srv = t.host("srv")
        t.attach(self.srv, self.lan, "eth1", f"{SERVER_IP}/24")
        self._n = 0
        with open(self.log, "ab") as log:
            self.proc = t.popen(self.srv, [CLI, "run", "--config", str(self.etc)],
                                stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._active, 30, what="daemon role active")

    def _active(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.log_tail()}")
        try:
            return (self.run_dir / "role").read_text().strip() == "active"
        except FileNotFoundError:
            return False

    # -- clients -----------------------------------------------------------------------
    def client(self, name: str, ifname: str = "eth0") -> tuple[Netns, str]:
        """A fresh namespace on the LAN with `ifname` (no address); returns (ns, mac)."""
        self._n += 1
        mac = f"02:7e:00:00:{self._n // 256:02x}:{self._n % 256:02x}"
        ns = self.t.host(name)
        self.t.attach(ns, self.lan, ifname, mac=mac)
        return ns, mac

    # -- what a user looks at --------------------------------------------------------
    def leases(self, all: bool = False) -> list[dict]:
        """`dhcp-hotbackup leases --json [--all]`."""
        cmd = [CLI, "leases", "--json", "--config", str(self.etc), *(["--all"] if all else [])]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}"
        return json.loads(r.stdout)

    def lease_of(self, mac: str, all: bool = False) -> dict | None:
        found = [x for x in self.leases(all=all) if x["mac"] == mac.lower()]
        assert len(found) <= 1, f"several leases for {mac}: {found}"
        return found[0] if found else None

    def assert_serving(self) -> None:
        assert self.proc.poll() is None, \
            f"daemon died ({self.proc.returncode}):\n{self.log_tail()}"

    def stop(self) -> None:
        """SIGTERM, as systemd would; the daemon must exit cleanly."""
        rc = self.t.stop(self.proc, timeout=15)
        assert rc == 0, f"daemon exit status {rc} after SIGTERM:\n{self.log_tail()}"


@pytest.fixture(scope="module")
def _module_dhcp_net(tmp_path_factory) -> Iterator[DhcpNet]:
    require_root()
    with Topology() as t:
        net = DhcpNet(t, tmp_path_factory.mktemp("dhcp-net"), lease_time=3600,
                      extra=RELAYED_POOL)
        t.run(net.srv, ["ip", "route", "add", RELAYED_NET, "via", RELAY_UP_IP])
        yield net
        net.stop()


@pytest.fixture
def dhcp_net(_module_dhcp_net: DhcpNet) -> Iterator[DhcpNet]:
    """The module's server (one daemon for all tests), checked alive before and after
    each test so that the test which crashed it is the one that fails."""
    _module_dhcp_net.assert_serving()
    yield _module_dhcp_net
    _module_dhcp_net.assert_serving()


@pytest.fixture
def short_lease_net(tmp_path) -> Iterator[DhcpNet]:
    """A LAN of its own whose daemon hands out 10 s leases (T1 = 5 s)."""
    require_root()
    with Topology() as t:
        net = DhcpNet(t, tmp_path / "short", lease_time=10)
        yield net
        net.stop()


@pytest.fixture
def need():
    """need("dhcpcd", ...) is require_tools: a skip when a tool is not installed, a
    failure under CI=true (appliance/testing/require.py)."""
    return require_tools
