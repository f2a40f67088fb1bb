"""Desired map contents for a role and limits config, and the writes that reach them.

Pure: values in, values out. The loader executes the writes; this module decides
what they are and in which order.

Rules:

- The whole user-writable state of the datapath is a MapState: the role word and
  the config record (per-client rate and burst, new-client rate and burst). The
  `stats`, `rate_limit` and `new_client` maps belong to the program.
- `diff(current, desired)` returns the writes in the order that is safe to apply:
  when the device gives up the role, the role write goes first (stop passing DHCP
  before anything else); when it takes the role, the config goes first (the limits
  are in force before the first DHCP frame passes) and the role last.
- A change of the new-client budget's rate or burst is followed by a reset of the
  budget word (full): its state is a time measured in the old interval, and a
  budget shrunk from a long window (say burst 10^6 at 1/s) would otherwise stay
  empty for that old window. Per-client buckets keep their state.
- A takeover with an unchanged config is exactly one write: the role word.
- Limits are validated here, with the kernel's bounds from layout.py, so a bad
  value is refused before it reaches a map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from appliance.datapath import layout


@dataclass(frozen=True, slots=True)
class MapState:
    """What user space has written into the maps (or wants to)."""

    role: layout.Role
    rate_limit_pps: int  # 0: off
    rate_limit_burst: int  # effective depth: never 0 while pps > 0
    new_client_pps: int = 0  # 0: off
    new_client_burst: int = 0  # effective depth: never 0 while pps > 0


@dataclass(frozen=True, slots=True)
class RoleWrite:
    """Set `role`[0] to this word."""

    role: layout.Role


@dataclass(frozen=True, slots=True)
class ConfigWrite:
    """Set `config`[0] to this record."""

    rate_limit_pps: int
    rate_limit_burst: int
    new_client_pps: int = 0
    new_client_burst: int = 0


@dataclass(frozen=True, slots=True)
class BudgetReset:
    """Set `new_client`[0] to 0: the new-client budget full."""


MapWrite = RoleWrite | ConfigWrite | BudgetReset

# The state of freshly created maps (the kernel zero-fills arrays): standby, no limit.
INITIAL = MapState(layout.Role.STANDBY, 0, 0)


def effective_burst(pps: int, burst: int) -> int:
    """Bucket depth in packets: `burst`, or twice the rate when burst is 0 (the
    datapath/rate_limit_burst default); 0 when rate limiting is off."""
    if pps == 0:
        return 0
    return burst if burst else 2 * pps


def check_rate_limit(pps: int, burst: int, name: str = "rate_limit") -> None:
    """Raise ValueError naming the bound a limit breaks (dhcp_steer.h bounds; the
    new-client budget, `name` "new_client", has the same ones)."""
    if not 0 <= pps <= layout.RATE_LIMIT_MAX_PPS:
        raise ValueError(f"{name}_pps {pps} outside 0..{layout.RATE_LIMIT_MAX_PPS}")
    if not 0 <= burst <= layout.RATE_LIMIT_MAX_BURST:
        raise ValueError(
            f"{name}_burst {burst} outside 0..{layout.RATE_LIMIT_MAX_BURST}")
    if pps and effective_burst(pps, burst) > layout.RATE_LIMIT_MAX_BURST:
        raise ValueError(
            f"{name}_pps {pps}: the default burst 2*pps exceeds "
            f"{layout.RATE_LIMIT_MAX_BURST}; set {name}_burst")


def desired(active: bool, rate_limit_pps: int, rate_limit_burst: int,
            new_client_pps: int = 0, new_client_burst: int = 0) -> MapState:
    """The maps' contents for this role and these limits (validated)."""
    check_rate_limit(rate_limit_pps, rate_limit_burst)
    check_rate_limit(new_client_pps, new_client_burst, "new_client")
    return MapState(
        layout.Role.ACTIVE if active else layout.Role.STANDBY,
        rate_limit_pps,
        effective_burst(rate_limit_pps, rate_limit_burst),
        new_client_pps,
        effective_burst(new_client_pps, new_client_burst),
    )


def _limits(s: MapState) -> tuple[int, int, int, int]:
    return (s.rate_limit_pps, s.rate_limit_burst, s.new_client_pps, s.new_client_burst)


def diff(current: MapState, want: MapState) -> list[MapWrite]:
    """The writes that turn `current` into `want`, in the safe order (module rules)."""
    role = [RoleWrite(want.role)] if want.role != current.role else []
    cfg: list[MapWrite] = []
    if _limits(want) != _limits(current):
        cfg.append(ConfigWrite(*_limits(want)))
        if (want.new_client_pps, want.new_client_burst) != \
                (current.new_client_pps, current.new_client_burst):
            cfg.append(BudgetReset())
    if want.role == layout.Role.STANDBY:
        return [*role, *cfg]
    return [*cfg, *role]


def apply_write(state: MapState, write: MapWrite) -> MapState:
    """The state after one write (what the loader records as it executes them)."""
    if isinstance(write, RoleWrite):
        return replace(state, role=write.role)
    if isinstance(write, ConfigWrite):
        return replace(state, rate_limit_pps=write.rate_limit_pps,
                       rate_limit_burst=write.rate_limit_burst,
                       new_client_pps=write.new_client_pps,
                       new_client_burst=write.new_client_burst)
    return state  # BudgetReset: program-owned state, not part of MapState


def compile_flags(rate_limit_entries: int = layout.RATE_LIMIT_ENTRIES) -> list[str]:
    """bcc cflags (-D over the `#ifndef` defaults of dhcp_steer.h). Only what differs
    from the header's default is passed, so the compiled program says what was
    chosen at start-up. Nothing in the config tree is a compile-time knob today;
    the limits are run-time values in the `config` map."""
    if rate_limit_entries < 1:
        raise ValueError(f"rate_limit_entries {rate_limit_entries} must be >= 1")
    flags: list[str] = []
    if rate_limit_entries != layout.RATE_LIMIT_ENTRIES:
        flags.append(f"-DRATE_LIMIT_ENTRIES={rate_limit_entries}")
    return flags
