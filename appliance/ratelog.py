"""Rate-limited warnings: repeated rejects become counters, not a flood of log lines.

At most `burst` lines per `period` seconds per message id, then one line saying the rest
is suppressed (keepalived's way). Time is passed in, so the caller's clock is used.
"""

from __future__ import annotations

import logging


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, burst: int = 5, period: float = 60.0) -> None:
        self.log = logger
        self.burst, self.period = burst, period
        self._seen: dict[str, tuple[float, int]] = {}

    def warning(self, now: float, msg_id: str, fmt: str, *args: object) -> None:
        start, n = self._seen.get(msg_id, (now, 0))
        if now - start > self.period:
            start, n = now, 0
        n += 1
        self._seen[msg_id] = (start, n)
        if n <= self.burst:
            self.log.warning(msg_id + " " + fmt, *args)
        elif n == self.burst + 1:
            self.log.warning("%s repeated; further messages suppressed for %.0fs", msg_id,
                             self.period)
