"""Reads the datapath's per-CPU counters and sums them into named counters.

An adapter over a reader function (the loader's `Program.read_stats(slot)`), so it
does not touch a map itself: the loader does. The `stats` map has a record per
group (slot = group index) and one for DHCP that is not ours (slot
layout.STATS_SLOT_UNBOUND); each record is a counter per layout.Stat, per CPU.
Names are layout.Stat's counter names ("seen", "passed", "dropped_standby",
"dropped_ratelimit", "malformed", "dropped_new_client", "dropped_other_bucket",
"unbound"); the daemon publishes them under the runtime tree's stats/
(docs/datapath.md says how they map).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from appliance.datapath import layout

SlotReader = Callable[[int], Sequence[Sequence[int]]]  # slot -> per CPU -> per Stat


def sum_percpu(per_cpu: Sequence[Sequence[int]]) -> dict[str, int]:
    """{counter name: sum over CPUs} of one record, for every layout.Stat, in enum
    order. `per_cpu` is a list per CPU of layout.STAT_MAX values."""
    out = dict.fromkeys((s.counter_name for s in layout.Stat), 0)
    for cpu in per_cpu:
        if len(cpu) != layout.STAT_MAX:
            raise ValueError(f"expected {layout.STAT_MAX} counters, got {len(cpu)}")
        for stat in layout.Stat:
            out[stat.counter_name] += int(cpu[stat])
    return out


def add(total: dict[str, int], part: dict[str, int]) -> dict[str, int]:
    """total += part, per counter; returns total."""
    for name, value in part.items():
        total[name] = total.get(name, 0) + value
    return total


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """after - before, per counter (for tests and rate displays)."""
    return {name: after[name] - before.get(name, 0) for name in after}


class Counters:
    """Named, CPU-summed counters of one loaded program, per group and in total."""

    def __init__(self, read: SlotReader) -> None:
        self._read = read

    def group(self, group: int) -> dict[str, int]:
        """One group's counters (unbound is always 0 there)."""
        return sum_percpu(self._read(group))

    def unbound(self) -> int:
        return sum_percpu(self._read(layout.STATS_SLOT_UNBOUND))["unbound"]

    def read(self, groups: Iterable[int]) -> dict[str, int]:
        """The device's totals: every group in `groups` plus the unbound slot. Pass every
        group index ever bound, so a total never goes down when a group is removed."""
        total = sum_percpu(self._read(layout.STATS_SLOT_UNBOUND))
        for g in sorted(set(groups)):
            add(total, self.group(g))
        return total
