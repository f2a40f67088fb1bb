"""FakeClock: a Clock (appliance/clock.py) that moves only when a test says so.

    clock = FakeClock(wall=1_700_000_000.0)
    clock.advance(30)        # both clocks move on 30 s
    clock.step_wall(-86400)  # the wall clock is stepped back a day (NTP, an operator);
                             # the monotonic clock does not move
"""

from __future__ import annotations


class FakeClock:
    def __init__(self, wall: float = 1_700_000_000.0, mono: float = 1000.0) -> None:
        self._wall = wall
        self._mono = mono

    def wall(self) -> float:
        return self._wall

    def mono(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move on."""
        if seconds < 0:
            raise ValueError("time does not run backwards; use step_wall for a clock step")
        self._wall += seconds
        self._mono += seconds

    def step_wall(self, seconds: float) -> None:
        """The wall clock is set forwards or back; intervals are not affected."""
        self._wall += seconds
