"""What a user reads off a running daemon: one file of its runtime tree, a counter,
its log. Mixed into every test helper that runs a daemon (they set `run_dir` and
`log`), so that they all read the tree the same way."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from appliance.testing.netns import wait_for

# The command and interpreter the tests run: the venv's when it has them (make test),
# else whatever is installed (the .deb).
_BIN = Path(sys.executable).parent / "dhcp-hotbackup"
CLI = str(_BIN) if _BIN.exists() else (shutil.which("dhcp-hotbackup") or "dhcp-hotbackup")
PY = sys.executable
REPO = Path(__file__).resolve().parents[2]  # the checkout: cwd for `python -m appliance...`


# Lease fields that two devices holding the same session must agree on (`remaining` is
# relative to when each table was read).
SESSION_FIELDS = ("ip", "mac", "client_id", "state", "start", "expires", "hostname", "pool",
                  "option82", "seq", "origin")


def session(lease: dict) -> tuple:
    """A `leases --json` row without the fields that depend on when it was read."""
    return tuple(json.dumps(lease.get(k), sort_keys=True) for k in SESSION_FIELDS)


def runtime_value(run_dir: Path, rel: str) -> str | None:
    """One file of a runtime tree, stripped (None if it is not there yet)."""
    try:
        return (run_dir / rel).read_text().strip()
    except OSError:
        return None


def runtime_stat(run_dir: Path, name: str) -> int:
    """stats/<name> (published about once a second); 0 until it appears."""
    try:
        return int(runtime_value(run_dir, f"stats/{name}") or 0)
    except ValueError:
        return 0


class DaemonFiles:
    run_dir: Path
    log: Path

    def value(self, rel: str) -> str | None:
        return runtime_value(self.run_dir, rel)

    def stat(self, name: str) -> int:
        return runtime_stat(self.run_dir, name)

    def wait_stat(self, name: str, at_least: int, timeout: float = 30) -> int:
        """stats/ are published about once a second: wait for the count, not read it once."""
        try:
            wait_for(lambda: self.stat(name) >= at_least, timeout,
                     what=f"{getattr(self, 'name', self.run_dir)} stats/{name} >= {at_least}")
        except TimeoutError as e:
            raise AssertionError(f"{e}: it is {self.stat(name)}\n{self.log_tail()}") from None
        return self.stat(name)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])
