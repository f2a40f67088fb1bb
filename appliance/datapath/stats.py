"""Reads the datapath's per-CPU counters and sums them into named counters.

An adapter over a reader function (the loader's `Program.read_stats`), so it does
not touch a map itself: the loader does. Names are
layout.Stat's counter names ("seen", "passed", "dropped_standby",
"dropped_ratelimit", "malformed"); the daemon publishes them under the runtime
tree's stats/ (docs/datapath.md says how they map).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from appliance.datapath import layout

PerCpuReader = Callable[[], Sequence[Sequence[int]]]


def sum_percpu(per_cpu: Sequence[Sequence[int]]) -> dict[str, int]:
    """{counter name: sum over CPUs}, for every layout.Stat, in enum order."""
    if len(per_cpu) != layout.STAT_MAX:
        raise ValueError(f"expected {layout.STAT_MAX} counters, got {len(per_cpu)}")
    return {stat.counter_name: int(sum(per_cpu[stat])) for stat in layout.Stat}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """after - before, per counter (for tests and rate displays)."""
    return {name: after[name] - before.get(name, 0) for name in after}


class Counters:
    """Named, CPU-summed counters of one loaded program."""

    def __init__(self, read: PerCpuReader) -> None:
        self._read = read

    def read(self) -> dict[str, int]:
        return sum_percpu(self._read())
