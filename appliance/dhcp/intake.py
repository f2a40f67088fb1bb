"""The intake queue between the socket and the server: who is answered first when more
requests arrive than the server can answer.

Pure: no socket, no clock (`now` is passed in, on the caller's monotonic clock).

Theory of operation. After a power cut every subscriber comes back at once. The
daemon drains the socket into two queues, so that the kernel's queue never decides
for it (a full socket buffer drops the *newest*):

- `known`: every REQUEST, RELEASE, DECLINE and INFORM, and a DISCOVER from a client
  that holds a binding here. A REQUEST finishes an exchange the server has already
  spent an OFFER on (RFC 2131 §4.3.2), or keeps a subscriber's address alive; a
  client we know gets its old address back without touching the free pool.
- `new`: DISCOVERs from clients we do not know.

`take` serves `known` first, oldest first, then `new`. Each entry carries a deadline
(its kernel receive time + the longest a request may wait): an entry past it is shed
unanswered, before any decision is made for it, because its client has retransmitted
or given up (RFC 2131 §4.1: 4 s, then 8 s, ... between retries). When a queue is full
its oldest entry is shed to make room, so under sustained overload the server keeps
answering the freshest requests, which are the ones whose clients still listen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Intake(Generic[T]):
    __slots__ = ("capacity", "known", "new", "shed_full", "shed_late")

    def __init__(self, capacity: int = 8192) -> None:
        self.known: deque[tuple[float, T]] = deque()
        self.new: deque[tuple[float, T]] = deque()
        self.capacity = capacity  # per queue
        self.shed_late = 0  # entries that waited past their deadline
        self.shed_full = 0  # entries pushed out by newer ones while a queue was full

    def __len__(self) -> int:
        return len(self.known) + len(self.new)

    def push(self, item: T, known: bool, deadline: float) -> None:
        q = self.known if known else self.new
        if len(q) >= self.capacity:
            q.popleft()
            self.shed_full += 1
        q.append((deadline, item))

    def take(self, limit: int, now: float) -> list[T]:
        """Up to `limit` entries, known clients first; late entries are shed on the way."""
        out: list[T] = []
        for q in (self.known, self.new):
            while q and len(out) < limit:
                deadline, item = q.popleft()
                if deadline < now:
                    self.shed_late += 1
                    continue
                out.append(item)
        return out

    def clear(self) -> int:
        """Forget everything queued (the device stopped serving); returns how many."""
        n = len(self)
        self.known.clear()
        self.new.clear()
        return n

    def drop(self, unwanted: Callable[[T], bool]) -> int:
        """Forget the entries `unwanted` says (their group is no longer served here);
        returns how many. The rest keep their order."""
        n = 0
        for q in (self.known, self.new):
            keep = [e for e in q if not unwanted(e[1])]
            if len(keep) != len(q):
                n += len(q) - len(keep)
                q.clear()
                q.extend(keep)
        return n

    def __iter__(self) -> Iterator[T]:
        for q in (self.known, self.new):
            for _deadline, item in q:
                yield item


class QueueDelay:
    """How long each datagram waited in the kernel's socket queue, from its receive stamp.

    The kernel stamps datagrams with CLOCK_REALTIME (SO_TIMESTAMPNS). Compared with the
    daemon's wall clock that is the wait, as long as both are the same clock. They are
    not when the daemon's clock is offset (faketime, a test's FakeClock): every
    datagram would look hours old, or from the future. So the smallest lag seen is
    taken as the offset between the two (on a real box about 50 µs), re-learnt when a
    batch comes in below it or more than STEP_S above it (a clock stepped; a stall
    that long is rarer, and costs one batch answered late, not lost).
    """

    STEP_S = 5.0
    __slots__ = ("offset",)

    def __init__(self) -> None:
        self.offset: float | None = None

    def waited(self, stamps: list[float], wall_now: float) -> list[float]:
        """Seconds each datagram waited (0 for one without a stamp)."""
        lags = [wall_now - ts for ts in stamps if ts]
        if not lags:
            return [0.0] * len(stamps)
        low = min(lags)
        off = self.offset
        if off is None or low < off or low - off > self.STEP_S:
            self.offset = off = low
        return [wall_now - ts - off if ts else 0.0 for ts in stamps]
