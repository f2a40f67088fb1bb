"""The replication backlog: changes sent to the peer and not yet acknowledged, and the
DHCP replies parked on them in `sync` mode.

Pure: `now` comes in, waiters are opaque tokens (the transport uses asyncio futures).

Theory of operation (DESIGN.md: "an ACK leaves the master only after the lease is durable
on the master and, in sync mode with the peer connected, acknowledged by the peer"):
the daemon parks a reply with add(seq, now, waiter) once the change `seq` is handed to
the link. A waiter leaves the backlog in exactly one of three ways:

- ack(upto): the peer made everything up to `upto` durable (an ACK frame);
- expired(now, timeout): it waited sync/ack_timeout_ms: serve alone rather than make a
  client wait on a slow or dead peer (the change still reaches the peer later);
- release_all(): the peer is gone or no longer in sync: nobody waits on it.

Acks release in seq order, expiry in arrival order; both are O(1) per waiter. Two queues
hold the same entries, and an entry taken out of one is skipped in the other (lazy
deletion), so a change parked out of seq order is still released exactly on time.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

W = TypeVar("W")


class _Entry(Generic[W]):
    __slots__ = ("done", "seq", "t", "waiter")

    def __init__(self, seq: int, t: float, waiter: W | None) -> None:
        self.seq = seq
        self.t = t
        self.waiter = waiter
        self.done = False


class Backlog(Generic[W]):
    __slots__ = ("_by_seq", "_by_time", "_pending", "acked", "released", "timed_out")

    def __init__(self) -> None:
        self._by_seq: deque[_Entry[W]] = deque()
        self._by_time: deque[_Entry[W]] = deque()
        self._pending = 0
        self.acked = 0  # waiters released by the peer's ACK
        self.timed_out = 0  # released by sync/ack_timeout_ms
        self.released = 0  # released because the peer left

    def __len__(self) -> int:
        """Lag: changes handed to the peer and not acknowledged yet."""
        return self._pending

    def add(self, seq: int, now: float, waiter: W | None = None) -> None:
        e = _Entry(seq, now, waiter)
        q = self._by_seq
        if not q or q[-1].seq <= seq:
            q.append(e)
        else:
            # Parked out of seq order (rare: the daemon's commits resumed out of order).
            i = len(q)
            while i > 0 and q[i - 1].seq > seq:
                i -= 1
            q.insert(i, e)
        self._by_time.append(e)
        self._pending += 1

    def ack(self, upto_seq: int) -> list[W]:
        """The peer holds everything up to `upto_seq`: the waiters that may go now."""
        out: list[W] = []
        q = self._by_seq
        while q and q[0].seq <= upto_seq:
            e = q.popleft()
            if e.done:
                continue
            e.done = True
            self._pending -= 1
            self.acked += 1
            if e.waiter is not None:
                out.append(e.waiter)
        self._trim_time()
        return out

    def expired(self, now: float, timeout_s: float) -> list[W]:
        """Waiters parked for `timeout_s` or more: they are served without the peer."""
        out: list[W] = []
        q = self._by_time
        limit = now - timeout_s
        while q and (q[0].done or q[0].t <= limit):
            e = q.popleft()
            if e.done:
                continue
            e.done = True
            self._pending -= 1
            self.timed_out += 1
            if e.waiter is not None:
                out.append(e.waiter)
        self._trim_seq()
        return out

    def release_all(self) -> list[W]:
        out = [e.waiter for e in self._by_seq if not e.done and e.waiter is not None]
        self.released += self._pending
        for e in self._by_seq:
            e.done = True
        self._by_seq.clear()
        self._by_time.clear()
        self._pending = 0
        return out

    def oldest(self) -> float | None:
        """When the longest-waiting entry was parked (None if nothing waits)."""
        self._trim_time()
        return self._by_time[0].t if self._by_time else None

    def next_deadline(self, timeout_s: float) -> float | None:
        t = self.oldest()
        return None if t is None else t + timeout_s

    def age(self, now: float) -> float:
        """How long the oldest unacknowledged change has waited (replication lag, s)."""
        t = self.oldest()
        return 0.0 if t is None else now - t

    def _trim_time(self) -> None:
        q = self._by_time
        while q and q[0].done:
            q.popleft()

    def _trim_seq(self) -> None:
        q = self._by_seq
        while q and q[0].done:
            q.popleft()
