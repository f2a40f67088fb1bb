"""What the sync session's three machines share: the transition table (phase x trigger
-> next phase, with the refusal for every pair it lacks), the wire they send on, and
the error for our own bugs.

Rules for this file: pure (no sockets, no clock). A table is data: its rows are the
allowed moves with one line each on what happens (docs/sync-protocol.md renders them,
tests/unit/test_sync_phases.py checks the doc against them); every (phase, trigger)
pair that is not a row is refused. Who is to blame decides how: a trigger the peer
causes (a frame) is bad input, refused with a named Reason (counter refused_<reason>,
rate-limited log SYNC007, the connection closed, nothing else changed); a trigger our
own side causes is a bug, SessionError (h11's RemoteProtocolError / LocalProtocolError).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

from appliance.leases.model import Lease
from appliance.sync.frames import Frame, FrameCodec, FrameError, FrameType, Reason


class SessionError(RuntimeError):
    """An event our own side had no business sending (a bug in the caller)."""


P = TypeVar("P", bound=Enum)
T = TypeVar("T", bound=Enum)


@dataclass(frozen=True, slots=True)
class Move(Generic[P, T]):
    """One row of a table: in `phase`, `trigger` leads to `to`; `what` says what
    happens (for the docs)."""

    phase: P
    trigger: T
    to: P
    what: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """How a pair the table lacks is refused: `reason` for a trigger the peer causes
    (None: the trigger is ours, and the missing move is our bug), `detail` for the log."""

    reason: Reason | None
    detail: str


class Table(Mapping[tuple[P, T], P]):
    """A transition table: a read-only mapping (phase, trigger) -> next phase, built
    from its rows, that knows how to refuse every other pair."""

    __slots__ = ("_next", "_refused", "name", "peer", "phases", "rows", "triggers")

    def __init__(self, name: str, phases: type[P], triggers: type[T], rows: Sequence[Move],
                 peer: Mapping[T, str]) -> None:
        """`peer`: the triggers the peer causes, each with the detail of its refusal
        ({phase} is replaced by the phase's value); the other triggers are ours."""
        self.name = name
        self.phases = phases
        self.triggers = triggers
        self.rows = tuple(rows)
        self.peer = dict(peer)
        self._next: dict[tuple[P, T], P] = {}
        for m in self.rows:
            if (m.phase, m.trigger) in self._next:
                raise ValueError(f"{name}: two rows for {m.phase.name} on {m.trigger.name}")
            self._next[(m.phase, m.trigger)] = m.to
        # The refusal of every missing pair, precomputed: a refused frame allocates
        # nothing but its exception.
        self._refused: dict[tuple[P, T], Refusal] = {}
        for ph in phases:
            for t in triggers:
                if (ph, t) in self._next:
                    continue
                if t in self.peer:
                    self._refused[(ph, t)] = Refusal(
                        Reason.UNEXPECTED, self.peer[t].format(phase=ph.value))
                else:
                    self._refused[(ph, t)] = Refusal(
                        None, f"no {name} move from {ph.name} on {t.value}")

    def __getitem__(self, key: tuple[P, T]) -> P:
        return self._next[key]

    def __iter__(self) -> Iterator[tuple[P, T]]:
        return iter(self._next)

    def __len__(self) -> int:
        return len(self._next)

    def refusal(self, phase: P, trigger: T) -> Refusal | None:
        """None when the move is allowed."""
        return self._refused.get((phase, trigger))

    def next(self, phase: P, trigger: T) -> P:
        """The phase `trigger` leads to from `phase`, or the refusal raised: FrameError
        (the peer's trigger) or SessionError (ours)."""
        to = self._next.get((phase, trigger))
        if to is not None:
            return to
        r = self._refused[(phase, trigger)]
        if r.reason is None:
            raise SessionError(r.detail)
        raise FrameError(r.reason, r.detail)

    def markdown(self) -> str:
        """The table for docs/sync-protocol.md: every row, then how the rest is refused."""
        lines = ["| phase | trigger | next | what happens |", "| --- | --- | --- | --- |"]
        for m in self.rows:
            lines.append(f"| {m.phase.name} | {m.trigger.value} | {m.to.name} | {m.what} |")
        peer, ours = [], []
        for t in self.triggers:
            phases = [ph.name for ph in self.phases if (ph, t) not in self._next]
            if phases:
                (peer if t in self.peer else ours).append(f"{t.value} in {', '.join(phases)}")
        lines.append("")
        if peer:
            lines.append("Refused `refused_unexpected` (the peer's frame): "
                         + "; ".join(peer) + ".")
        if ours:
            lines.append("A bug on our side (`SessionError`): " + "; ".join(ours) + ".")
        return "\n".join(lines)


class Counters(Protocol):
    def bump(self, name: str, n: int = 1) -> None: ...


class Wire:
    """Where a connection's frames go: encoded in the order they are sent (each frame's
    counter is its nonce, frames.FrameCodec) into one buffer the session sends per event,
    and counted."""

    __slots__ = ("codec", "stats", "tx")

    def __init__(self, codec: FrameCodec, tx: list[bytes], stats: Counters) -> None:
        self.codec = codec
        self.tx = tx
        self.stats = stats

    def send(self, frame: Frame) -> None:
        self.tx.append(self.codec.encode(frame))
        self.stats.bump("frames_sent")

    def send_leases(self, ftype: FrameType, leases: Sequence[Lease], budget: int) -> list[int]:
        """UPDATES or BULK_PAGE frames of at most `budget` body bytes: how many leases
        went into each frame, in order."""
        frames = self.codec.encode_leases(ftype, leases, budget)
        self.tx.extend(data for data, _n in frames)
        self.stats.bump("frames_sent", len(frames))
        self.stats.bump("leases_sent", len(leases))
        return [n for _data, n in frames]
