"""Fixtures for the datapath tests: one compiled program per module, and a helper to run
frames through it with counter deltas. Root and bcc for the `bpf` and `netns` markers
are checked by tests/conftest.py (a skip, or a failure under CI=true)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from appliance.datapath.loader import GroupSwitch, Program
    from appliance.testing.xdp_run import RunResult

# BPF_PROG_TEST_RUN without a context runs the program as if the frame had come in on
# the loopback device of the caller's namespace: ifindex 1.
LO = 1
# What `fresh` binds to group 0: untagged, VLAN 100 and QinQ 10.100 frames "on lo",
# so the fixture frames of dhcp_frames.py are all ours.
DEFAULT_KEYS = ((LO, (0, 0)), (LO, (100, 0)), (LO, (10, 100)))
# Groups the tests use; `fresh` puts them back to standby with zero counters.
TEST_GROUPS = tuple(range(8))


@dataclass
class Harness:
    """A loaded (not attached) program with its test-run entry point."""

    program: Program
    switch: GroupSwitch = field(init=False)

    def __post_init__(self) -> None:
        self.switch = self.program.group_switch()

    def run(self, frame: bytes, ifindex: int = 0) -> RunResult:
        from appliance.testing.xdp_run import run

        return run(self.program.fd, frame, ingress_ifindex=ifindex)

    def counters(self, group: int | None = None) -> dict[str, int]:
        """Totals over TEST_GROUPS and the unbound slot, or one group's."""
        from appliance.datapath.stats import Counters

        c = Counters(self.program.read_stats)
        return c.group(group) if group is not None else c.read(TEST_GROUPS)

    def set_role(self, group: int, active: bool) -> None:
        self.switch.set(group, active)

    def set_state(self, active: bool, pps: int = 0, burst: int = 0, new_pps: int = 0,
                  new_burst: int = 0, group: int = 0) -> None:
        """Group `group`'s role, per-client rate limit and new-client budget (both off by
        default)."""
        from appliance.datapath import plan

        self.program.apply(plan.diff(self.program.state,
                                     plan.desired(pps, burst, new_pps, new_burst)))
        self.set_role(group, active)

    def bind(self, key: tuple[int, tuple[int, ...]], groups: Sequence[int]) -> None:
        self.program.write_iface(key, groups)

    def unbind_all(self) -> None:
        for key in self.program.read_ifaces():
            self.program.delete_iface(key)

    def run_counted(self, frame: bytes, ifindex: int = 0) -> tuple[RunResult, dict[str, int]]:
        """(result, counter delta with only the non-zero entries)."""
        before = self.counters()
        result = self.run(frame, ifindex)
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


def _reset(h: Harness) -> None:
    h.set_state(False)
    for g in TEST_GROUPS:
        h.set_role(g, False)
    h.unbind_all()
    for key in DEFAULT_KEYS:
        h.bind(key, (0,))
    h.program.clear_buckets()
    h.program.reset_new_client()
    h.program.clear_stats([*TEST_GROUPS, _unbound_slot()])


def _unbound_slot() -> int:
    from appliance.datapath import layout

    return layout.STATS_SLOT_UNBOUND


@pytest.fixture
def fresh(harness: Harness) -> Iterator[Harness]:
    """The module's program with DEFAULT_KEYS bound to group 0, every test group standby,
    no rate limit, no new-client budget (a full one), empty buckets, zero counters."""
    _reset(harness)
    yield harness
    _reset(harness)
