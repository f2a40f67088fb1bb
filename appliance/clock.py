"""The daemon's one source of time: the wall clock that lease times are written in, and
a monotonic clock for intervals.

Adapter (it reads the system clocks). Pure modules never call it: they get `now`
passed in. The daemon reads every time through one Clock, so a test can run it on a
FakeClock (appliance/testing/clock.py) and step it forwards or back.

Lease times are wall-clock (they are persisted and shared with the peer, whose
monotonic clock means nothing here); timers and intervals are monotonic, so a clock
step (NTP, an operator) never stretches or cuts them.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """Unix seconds: lease start and expiry."""
        ...

    def mono(self) -> float:
        """Seconds from an arbitrary origin that never jumps: intervals, rate limits."""
        ...


class SystemClock:
    """The system's clocks (time.time, time.monotonic)."""

    __slots__ = ()

    @staticmethod
    def wall() -> float:
        return time.time()

    @staticmethod
    def mono() -> float:
        return time.monotonic()


SYSTEM = SystemClock()
