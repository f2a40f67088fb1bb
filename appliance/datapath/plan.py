"""Desired map contents for a role and rate-limit config, and the writes that reach them.

Pure: values in, values out. The loader executes the writes; this module decides
what they are and in which order.

Rules:

- The whole user-writable state of the datapath is a MapState: the role word and
  the config record (rate and burst). The `stats` and `rate_limit` maps belong to
  the program.
- `diff(current, desired)` returns the writes in the order that is safe to apply:
  when the device gives up the role, the role write goes first (stop passing DHCP
  before anything else); when it takes the role, the config goes first (the rate
  limit is in force before the first DHCP frame passes) and the role last.
- A takeover with an unchanged config is exactly one write: the role word.
- Rate limits are validated here, with the kernel's bounds from layout.py, so a bad
  value is refused before it reaches a map.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.datapath import layout


@dataclass(frozen=True, slots=True)
class MapState:
    """What user space has written into the maps (or wants to)."""

    role: layout.Role
    rate_limit_pps: int  # 0: off
    rate_limit_burst: int  # effective depth: never 0 while pps > 0


@dataclass(frozen=True, slots=True)
class RoleWrite:
    """Set `role`[0] to this word."""

    role: layout.Role


@dataclass(frozen=True, slots=True)
class ConfigWrite:
    """Set `config`[0] to this record."""

    rate_limit_pps: int
    rate_limit_burst: int


MapWrite = RoleWrite | ConfigWrite

# The state of freshly created maps (the kernel zero-fills arrays): standby, no limit.
INITIAL = MapState(layout.Role.STANDBY, 0, 0)


def effective_burst(pps: int, burst: int) -> int:
    """Bucket depth in packets: `burst`, or twice the rate when burst is 0 (the
    datapath/rate_limit_burst default); 0 when rate limiting is off."""
    if pps == 0:
        return 0
    return burst if burst else 2 * pps


def check_rate_limit(pps: int, burst: int) -> None:
    """Raise ValueError naming the bound a rate limit breaks (dhcp_steer.h bounds)."""
    if not 0 <= pps <= layout.RATE_LIMIT_MAX_PPS:
        raise ValueError(f"rate_limit_pps {pps} outside 0..{layout.RATE_LIMIT_MAX_PPS}")
    if not 0 <= burst <= layout.RATE_LIMIT_MAX_BURST:
        raise ValueError(
            f"rate_limit_burst {burst} outside 0..{layout.RATE_LIMIT_MAX_BURST}")
    if pps and effective_burst(pps, burst) > layout.RATE_LIMIT_MAX_BURST:
        raise ValueError(
            f"rate_limit_pps {pps}: the default burst 2*pps exceeds "
            f"{layout.RATE_LIMIT_MAX_BURST}; set rate_limit_burst")


def desired(active: bool, rate_limit_pps: int, rate_limit_burst: int) -> MapState:
    """The maps' contents for this role and rate limit (validated)."""
    check_rate_limit(rate_limit_pps, rate_limit_burst)
    return MapState(
        layout.Role.ACTIVE if active else layout.Role.STANDBY,
        rate_limit_pps,
        effective_burst(rate_limit_pps, rate_limit_burst),
    )


def diff(current: MapState, want: MapState) -> list[MapWrite]:
    """The writes that turn `current` into `want`, in the safe order (module rules)."""
    role = [RoleWrite(want.role)] if want.role != current.role else []
    cfg = (
        [ConfigWrite(want.rate_limit_pps, want.rate_limit_burst)]
        if (want.rate_limit_pps, want.rate_limit_burst)
        != (current.rate_limit_pps, current.rate_limit_burst)
        else []
    )
    if want.role == layout.Role.STANDBY:
        return [*role, *cfg]
    return [*cfg, *role]


def compile_flags(rate_limit_entries: int = layout.RATE_LIMIT_ENTRIES) -> list[str]:
    """bcc cflags (-D over the `#ifndef` defaults of dhcp_steer.h). Only what differs
    from the header's default is passed, so the compiled program says what was
    chosen at start-up. Nothing in the config tree is a compile-time knob today;
    the rate limit is a run-time value in the `config` map."""
    if rate_limit_entries < 1:
        raise ValueError(f"rate_limit_entries {rate_limit_entries} must be >= 1")
    flags: list[str] = []
    if rate_limit_entries != layout.RATE_LIMIT_ENTRIES:
        flags.append(f"-DRATE_LIMIT_ENTRIES={rate_limit_entries}")
    return flags
