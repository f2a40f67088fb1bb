"""Fixtures for the datapath tests: one compiled program per module, and a helper to run
frames through it with counter deltas. Root and bcc for the `bpf` and `netns` markers
are checked by tests/conftest.py (a skip, or a failure under CI=true)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from appliance.datapath.loader import Program
    from appliance.testing.xdp_run import RunResult


@dataclass
class Harness:
    """A loaded (not attached) program with its test-run entry point."""

    program: Program

    def run(self, frame: bytes) -> RunResult:
        from appliance.testing.xdp_run import run

        return run(self.program.fd, frame)

    def counters(self) -> dict[str, int]:
        from appliance.datapath.stats import sum_percpu

        return sum_percpu(self.program.read_stats())

    def set_state(self, active: bool, pps: int = 0, burst: int = 0, new_pps: int = 0,
                  new_burst: int = 0) -> None:
        """Role, per-client rate limit and new-client budget (both off by default)."""
        from appliance.datapath import plan

        want = plan.desired(active, pps, burst, new_pps, new_burst)
        self.program.apply(plan.diff(self.program.state, want))

    def run_counted(self, frame: bytes) -> tuple[RunResult, dict[str, int]]:
        """(result, counter delta with only the non-zero entries)."""
        before = self.counters()
        result = self.run(frame)
        after = self.counters()
        delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        return result, delta


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    """One compile per test module (bcc takes about 2 s)."""
    from appliance.datapath.loader import Program

    program = Program.compile()
    try:
        yield Harness(program)
    finally:
        program.close()


@pytest.fixture
def fresh(harness: Harness) -> Iterator[Harness]:
    """The module's program reset to standby, no rate limit, no new-client budget (a
    full one), empty buckets, zero counters."""
    harness.set_state(False)
    harness.program.clear_buckets()
    harness.program.reset_new_client()
    harness.program.clear_stats()
    yield harness
    harness.set_state(False)
    harness.program.clear_buckets()
    harness.program.reset_new_client()
