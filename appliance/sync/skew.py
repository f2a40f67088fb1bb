"""Clock skew between the two devices, measured over the sync link (NTP style), and the
alarm when it passes sync/max_clock_skew_ms.

Pure: the samples' times come in as arguments; no clock is read here.

Theory of operation. Every HEARTBEAT carries the sender's wall clock at sending (t3),
the newest stamp it received from us (t1, our wall clock when we sent it) and how long
it held that stamp (t3 - t2). We add t4, our wall clock on receipt, and the round trip
from our monotonic clock (it never steps), and get one RFC 5905 §8 sample:

    offset = ((t2 - t1) + (t3 - t4)) / 2     the peer's clock minus ours
    delay  = (t4 - t1) - (t3 - t2)           the round trip, without the peer's dwell

The offset is exact when the two one-way delays are equal and off by at most delay / 2
otherwise. Of the last FILTER samples the one with the smallest delay is kept (RFC 5905
§10's clock filter, simplified): a sample delayed by a busy event loop on either side
is outweighed by a quick one.

The alarm is raised when the skew exceeds the bound by more than half the round trip
(it certainly exceeds it, whatever the path's asymmetry) and cleared when it is below
the bound by as much: in between it keeps its state, so it does not flap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

FILTER = 8  # samples kept (RFC 5905 §10 keeps 8 too)


@dataclass(frozen=True, slots=True)
class Sample:
    offset_s: float  # the peer's wall clock minus ours
    delay_s: float  # the round trip the sample took


def sample(t1: float, t3: float, dwell_s: float, t4: float, rtt_s: float) -> Sample:
    """One NTP-style sample. t1: our wall clock when we sent the stamp the peer echoes;
    t3: the peer's wall clock when it sent the echo, `dwell_s` after it received ours;
    t4: our wall clock on receipt; rtt_s: t4 - t1 on our monotonic clock."""
    t2 = t3 - dwell_s
    return Sample(((t2 - t1) + (t3 - t4)) / 2, max(rtt_s - dwell_s, 0.0))


class SkewTracker:
    """The skew estimate and the alarm state of one link (it outlives connections:
    the last estimate and the alarm stay until a new sample says otherwise)."""

    __slots__ = ("_samples", "alarm", "bound_s", "estimate")

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self._samples: deque[Sample] = deque(maxlen=FILTER)
        self.estimate: Sample | None = None
        self.alarm = False

    def add(self, s: Sample) -> bool | None:
        """Take a sample; returns True when the alarm is raised by it, False when it is
        cleared by it, None when its state did not change."""
        self._samples.append(s)
        best = min(reversed(self._samples), key=lambda x: x.delay_s)  # ties: the newest
        self.estimate = best
        half = best.delay_s / 2
        skew = abs(best.offset_s)
        if not self.alarm and skew - half > self.bound_s:
            self.alarm = True
            return True
        if self.alarm and skew + half < self.bound_s:
            self.alarm = False
            return False
        return None

    def set_bound(self, bound_s: float) -> None:
        self.bound_s = bound_s

    @property
    def skew_ms(self) -> float | None:
        return None if self.estimate is None else self.estimate.offset_s * 1000

    @property
    def delay_ms(self) -> float | None:
        return None if self.estimate is None else self.estimate.delay_s * 1000
