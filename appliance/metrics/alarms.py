"""Alarms: conditions an operator must hear about, raised and cleared on each snapshot.

Pure: `Alarms.handle(event, now) -> list[Action]`, `now` from a monotonic clock passed
in. The daemon feeds it every snapshot it publishes (about once a second) and executes
what comes back: a log line with the action's stable ID, the runtime tree's
alarms/<kind>[/<subject>] file (the message while raised, empty when clear) and, through
the next snapshot, the metrics `dhcp_hotbackup_alarm_active` and
`dhcp_hotbackup_alarms_raised_total`.

The alarms (docs/metrics.md, "Alarms"):

    kind          subject  raised when                               cleared when
    pool_use      pool     use >= pools/<p>/alarm_percent            use < its clear threshold
    takeover      group    this device took the group over           the group is no longer
                           (every takeover raises it again)          master here, or
                                                                     TAKEOVER_HOLD_S passed
    peer_lost     -        the sync peer disconnected for            the peer is connected
                           PEER_LOST_AFTER_S                         (or syncing) again
    config_drift  -        settings differ from the peer's           they match again
    clock_skew    -        the sync link's skew alarm (beyond        it clears
                           sync/max_clock_skew_ms)
    store_failed  -        the lease store cannot write (disk full   writes succeed again
                           or failing: the device stops serving)

A takeover is an event, not a state: its alarm says "this device serves a group it took
from a failed master", and clears itself when the group moves on or after
TAKEOVER_HOLD_S, so that it does not stay raised for days. The pool-use alarm has
hysteresis (raise at one use, clear below a lower one) so that a pool hovering at the
threshold does not flap. peer_lost waits PEER_LOST_AFTER_S so that a reconnect (the
peer's restart takes a few seconds, a handshake a few ms) is not an alarm unless it
lasts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from appliance.metrics.snapshot import AlarmState, Snapshot

TAKEOVER_HOLD_S = 300.0
PEER_LOST_AFTER_S = 3.0

# kind -> (raise ID, clear ID): one ID each, so that a journal field match finds, say,
# every takeover (DHCP_HOTBACKUP_ID=M020). docs/metrics.md, "Log messages".
IDS: dict[str, tuple[str, str]] = {
    "pool_use": ("M010", "M011"),
    "takeover": ("M020", "M021"),
    "peer_lost": ("M030", "M031"),
    "config_drift": ("M040", "M041"),
    "clock_skew": ("M050", "M051"),
    "store_failed": ("M060", "M061"),
}
KINDS = tuple(IDS)


@dataclass(frozen=True, slots=True)
class Observed:
    """The daemon published this snapshot."""

    snapshot: Snapshot


Event = Observed


@dataclass(frozen=True, slots=True)
class Raise:
    """Log `text` at warning with `msg_id`; write alarm.message to alarm.path."""

    alarm: AlarmState
    msg_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Clear:
    """Log `text` at info with `msg_id`; empty alarm.path."""

    alarm: AlarmState
    msg_id: str
    text: str


Action = Raise | Clear
Key = tuple[str, str]


class Alarms:
    """The state of every alarm this device knows of."""

    def __init__(self, takeover_hold_s: float = TAKEOVER_HOLD_S,
                 peer_lost_after_s: float = PEER_LOST_AFTER_S) -> None:
        self.takeover_hold_s = takeover_hold_s
        self.peer_lost_after_s = peer_lost_after_s
        self._alarms: dict[Key, AlarmState] = {}
        self._raised_at: dict[Key, float] = {}  # monotonic, for the takeover hold
        self._takeover_seen: dict[str, float] = {}  # group -> `at` of the last one seen
        self._down_since: float | None = None  # monotonic: the sync peer disconnected

    def states(self) -> tuple[AlarmState, ...]:
        """Every known alarm, raised or clear, in a stable order."""
        order = {k: i for i, k in enumerate(KINDS)}
        return tuple(sorted(self._alarms.values(), key=lambda a: (order[a.kind], a.subject)))

    def active(self) -> tuple[AlarmState, ...]:
        return tuple(a for a in self.states() if a.active)

    def handle(self, event: Event, now: float) -> list[Action]:
        snap = event.snapshot
        out: list[Action] = []
        self._pools(snap, out)
        self._takeovers(snap, now, out)
        self._sync(snap, now, out)
        self._store(snap, out)
        return out

    # -- one method per kind ----------------------------------------------------------
    def _pools(self, snap: Snapshot, out: list[Action]) -> None:
        present = set()
        for p in snap.pools:
            if not p.alarm_percent or p.size <= 0:
                continue
            key = ("pool_use", p.name)
            present.add(key)
            a = self._known(key, snap.time)
            pct = 100.0 * p.used / p.size
            where = (f"pool {p.name} {pct:.0f}% used ({p.used} of {p.size} addresses)")
            if not a.active and p.used * 100 >= p.alarm_percent * p.size:
                self._raise(out, a, snap.time, f"{where}: raised at {p.alarm_percent}%, "
                            f"clears below {p.clear_percent}%")
            elif a.active and p.used * 100 < p.clear_percent * p.size:
                self._clear(out, a, snap.time, f"{where}, below {p.clear_percent}%")
        for key, a in list(self._alarms.items()):
            if key[0] == "pool_use" and key not in present:
                # The pool was removed or its alarm turned off (reload).
                if a.active:
                    self._clear(out, a, snap.time, f"pool {key[1]}: removed or its alarm "
                                "turned off")
                del self._alarms[key]

    def _takeovers(self, snap: Snapshot, now: float, out: list[Action]) -> None:
        states = {g.name: g.state for g in snap.groups}
        for g in snap.groups:
            self._known(("takeover", g.name), snap.time)
        for group, t in sorted(snap.last_takeover.items()):
            if self._takeover_seen.get(group) == t.at:
                continue
            self._takeover_seen[group] = t.at
            a = self._known(("takeover", group), snap.time)
            why = f": {t.why}" if t.why else ""
            self._raise(out, a, t.at, f"took over group {group} ({t.cause}{why}) in "
                        f"{t.duration_s * 1000:.1f} ms", now=now, again=True)
        for key, a in list(self._alarms.items()):
            if key[0] != "takeover" or not a.active:
                continue
            state = states.get(key[1])
            if state != "master":
                self._clear(out, a, snap.time, f"group {key[1]} is {state or 'gone'} here "
                            "now")
            elif now - self._raised_at.get(key, now) >= self.takeover_hold_s:
                self._clear(out, a, snap.time, f"group {key[1]} served here for "
                            f"{self.takeover_hold_s:.0f} s since the takeover")

    def _sync(self, snap: Snapshot, now: float, out: list[Action]) -> None:
        s = snap.sync
        if s is None:
            return
        lost = self._known(("peer_lost", ""), snap.time)
        if s.peer == "disconnected":
            if self._down_since is None:
                self._down_since = now
            gone = now - self._down_since
            if not lost.active and gone >= self.peer_lost_after_s:
                self._raise(out, lost, snap.time, f"sync peer disconnected for {gone:.0f} s")
        else:
            self._down_since = None
            if lost.active:
                self._clear(out, lost, snap.time, f"sync peer {s.peer} again")

        drift = self._known(("config_drift", ""), snap.time)
        paths = " ".join(s.drift)
        if s.drift and not drift.active:
            self._raise(out, drift, snap.time, f"config differs from the peer's: {paths}")
        elif s.drift and drift.message != f"config differs from the peer's: {paths}":
            # Other settings differ now: the file and metric follow, no new line (D042
            # logs every change of the difference).
            self._alarms[("config_drift", "")] = replace(
                drift, message=f"config differs from the peer's: {paths}")
        elif not s.drift and drift.active:
            self._clear(out, drift, snap.time, "config matches the peer's again")

        skew = self._known(("clock_skew", ""), snap.time)
        ms = "unknown" if s.clock_skew_s is None else f"{s.clock_skew_s * 1000:+.0f} ms"
        if s.clock_skew_alarm and not skew.active:
            self._raise(out, skew, snap.time, f"clock skew with the peer {ms}, beyond "
                        "sync/max_clock_skew_ms")
        elif not s.clock_skew_alarm and skew.active:
            self._clear(out, skew, snap.time, f"clock skew with the peer {ms}, within bounds")

    def _store(self, snap: Snapshot, out: list[Action]) -> None:
        a = self._known(("store_failed", ""), snap.time)
        if snap.store_error and not a.active:
            self._raise(out, a, snap.time, f"the lease store cannot write ({snap.store_error}):"
                        " this device serves nobody until it can")
        elif not snap.store_error and a.active:
            self._clear(out, a, snap.time, "the lease store writes again")

    # -- bookkeeping --------------------------------------------------------------------
    def _known(self, key: Key, at: float) -> AlarmState:
        a = self._alarms.get(key)
        if a is None:
            a = self._alarms[key] = AlarmState(key[0], key[1], False, at)
        return a

    def _raise(self, out: list[Action], a: AlarmState, at: float, message: str, *,
               now: float | None = None, again: bool = False) -> None:
        assert again or not a.active
        key = (a.kind, a.subject)
        new = replace(a, active=True, since=at, message=message, raised=a.raised + 1)
        self._alarms[key] = new
        if now is not None:
            self._raised_at[key] = now
        out.append(Raise(new, IDS[a.kind][0], f"alarm {new.path[7:]} raised: {message}"))

    def _clear(self, out: list[Action], a: AlarmState, at: float, message: str) -> None:
        key = (a.kind, a.subject)
        new = replace(a, active=False, since=at, message="")
        self._alarms[key] = new
        self._raised_at.pop(key, None)
        out.append(Clear(new, IDS[a.kind][1], f"alarm {new.path[7:]} cleared: {message}"))
