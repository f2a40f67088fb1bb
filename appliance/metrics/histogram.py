"""Cumulative histograms for the metrics, and the replication-delay record that feeds one.

Pure. A Prometheus histogram counts every observation since the start (the server
computes rates and quantiles over time from the bucket counters); the runtime tree's
sync/delay_p50_ms and p99_ms keep reading the last 10k delays. `DelayLog` is both: the
deque the daemon already keeps, which also counts what goes into it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable

from appliance.metrics.snapshot import Histogram

# Replication delay buckets, seconds: sub-millisecond on an idle link, milliseconds
# under load (docs/benchmarks.md: p50 1.9 ms at 1000/s), seconds after a stall.
DELAY_BOUNDS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                  2.5, 5.0, 10.0)


class Buckets:
    """Observations counted into fixed buckets (upper bounds, ascending)."""

    __slots__ = ("bounds", "count", "per_bucket", "total")

    def __init__(self, bounds: tuple[float, ...] = DELAY_BOUNDS_S) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be distinct and ascending")
        self.bounds = bounds
        self.per_bucket = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le = "<=").
        self.per_bucket[bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.total += value

    def snapshot(self) -> Histogram:
        cumulative = []
        n = 0
        for c in self.per_bucket[:-1]:
            n += c
            cumulative.append(n)
        return Histogram(self.bounds, tuple(cumulative), self.count, self.total)


class DelayLog(deque):  # type: ignore[type-arg]
    """The last `maxlen` replication delays in milliseconds (the runtime tree's
    percentiles), and every delay since the start in `buckets`, in seconds."""

    def __init__(self, maxlen: int = 10000, bounds: tuple[float, ...] = DELAY_BOUNDS_S) -> None:
        super().__init__(maxlen=maxlen)
        self.buckets = Buckets(bounds)

    def extend(self, values_ms: Iterable[float]) -> None:  # type: ignore[override]
        values = list(values_ms)
        super().extend(values)
        observe = self.buckets.observe
        for v in values:
            observe(v / 1000.0)

    def append(self, value_ms: float) -> None:  # type: ignore[override]
        super().append(value_ms)
        self.buckets.observe(value_ms / 1000.0)
