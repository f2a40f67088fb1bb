"""The datapath facade the daemon uses: open, flip the role, read counters, close.

    dp = Datapath.open(cfg.client_interface, cfg.datapath)   # standby, attached
    dp.set_role(True)        # VRRP became master: first thing in the handler
    dp.counters()            # {"seen": ..., "dropped_standby": ..., ...}
    dp.set_limits((50, 0), (200, 0))   # reload: per-client rate, new-client budget
    dp.close()               # standby, then detach

Mode "xdp" compiles bpf/ (about 2 s), writes the limits, sets the role word to
standby and attaches to the interface (native XDP where the driver has it, generic
otherwise; a stale program from a crashed daemon is replaced). Mode "off" loads
nothing: the role is a Python bool and the DHCP server must check `role` itself
before answering (docs/datapath.md). Either way the role starts standby.

`set_role` is the takeover: in mode "xdp" it is one bpf(2) map update with every
argument prebuilt (loader.RoleSwitch), then a log line.

This module touches no kernel object itself; the loader (and through it bcc) is
imported only when an XDP datapath is opened or cleaned up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from appliance.config.model import DatapathConfig
from appliance.datapath import plan
from appliance.datapath.stats import Counters
from appliance.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from appliance.datapath.loader import Program

log = logging.getLogger(__name__)

MODES = ("xdp", "off")


def _no_flip(active: bool) -> None:
    """Mode "off": no map to write."""


class Datapath:
    """One interface's DHCP steering. Build it with Datapath.open()."""

    def __init__(self, interface: str, attach_mode: str, program: Program | None,
                 rate_limit: tuple[int, int], new_client: tuple[int, int] = (0, 0)) -> None:
        self._interface = interface
        self._attach_mode = attach_mode
        self._program = program
        self._active = False
        self._rate_limit = rate_limit
        self._new_client = new_client
        self._closed = False
        self._ratelog = RateLimitedLog(log)
        self._drops_seen: dict[str, int] = {}
        if program is not None:
            switch = program.role_switch()
            self._switch = switch
            self._flip: Callable[[bool], None] = switch.set
            self._counters: Counters | None = Counters(program.read_stats)
        else:
            self._switch = None
            self._flip = _no_flip
            self._counters = None

    # -- life cycle ------------------------------------------------------------------
    @classmethod
    def open(cls, interface: str, cfg: DatapathConfig, *, attach: str = "auto",
             bpf_dir: Path | None = None) -> Datapath:
        """Start the datapath on `interface` in role standby. `attach` ("auto",
        "native", "generic") forces an XDP mode, for tests and benchmarks. Raises
        DatapathError when mode "xdp" cannot be set up (nothing stays attached
        then), ValueError for a bad mode or limit."""
        if cfg.mode not in MODES:
            raise ValueError(f"datapath mode {cfg.mode!r} not in {MODES}")
        want = plan.desired(False, cfg.rate_limit_pps, cfg.rate_limit_burst,
                            cfg.new_client_pps, cfg.new_client_burst)
        rate = (cfg.rate_limit_pps, cfg.rate_limit_burst)
        budget = (cfg.new_client_pps, cfg.new_client_burst)
        if cfg.mode == "off":
            log.warning("DP001 datapath off on %s: no XDP program; the DHCP server "
                        "enforces the role in user space (role standby)", interface)
            _warn_off(rate, budget)
            return cls(interface, "off", None, rate, budget)

        from appliance.datapath.loader import Program

        program = Program.compile(plan.compile_flags(), bpf_dir)
        try:
            dp = cls(interface, "", program, rate, budget)
            program.apply(plan.diff(plan.INITIAL, want), dp._switch)
            dp._flip(False)  # explicit, whatever the zero-filled default
            dp._attach_mode = program.attach(interface, attach)
        except BaseException:
            program.close()
            raise
        log.info("DP002 XDP datapath on %s: %s mode, program id %d, role standby, "
                 "rate limit %s, new clients %s", interface, dp._attach_mode,
                 program.prog_id, _describe(want.rate_limit_pps, want.rate_limit_burst),
                 _describe(want.new_client_pps, want.new_client_burst))
        return dp

    def close(self) -> None:
        """Role standby, then detach and release the program. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.set_role(False)
        finally:
            if self._program is not None:
                self._program.close()
                log.info("DP004 XDP datapath detached from %s", self._interface)

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the role --------------------------------------------------------------------
    def set_role(self, active: bool) -> None:
        """Active: DHCP reaches the server. Standby: dropped (in the kernel in mode
        "xdp"). One map update; always written, logged when it changes."""
        self._flip(active)
        if active != self._active:
            self._active = active
            log.info("DP009 role %s on %s", "active" if active else "standby",
                     self._interface)

    @property
    def role(self) -> bool:
        """True when active. In mode "off" the DHCP server checks this per packet."""
        return self._active

    # -- facts and knobs -------------------------------------------------------------
    @property
    def interface(self) -> str:
        return self._interface

    @property
    def attach_mode(self) -> str:
        """"native" | "generic" | "off" (runtime tree datapath/attach_mode)."""
        return self._attach_mode

    @property
    def program(self) -> Program | None:
        """The loaded program (None in mode "off"); for tests and diagnostics."""
        return self._program

    def counters(self) -> dict[str, int]:
        """Kernel counters summed over CPUs ({} in mode "off", where the server's
        own counters are the only ones)."""
        return self._counters.read() if self._counters is not None else {}

    def log_drops(self, counters: dict[str, int], now: float) -> None:
        """Log (rate-limited, DP014/DP015) the kernel's refusals since the last call:
        the XDP program cannot log, so the daemon calls this with each counters()
        reading; `now` is monotonic seconds."""
        for name, msg_id, what, key in (
                ("dropped_new_client", "DP014", "from unseen clients: the new-client "
                 "budget was empty", "new_client_pps"),
                ("dropped_ratelimit", "DP015", "from clients over their own rate",
                 "rate_limit_pps")):
            value = counters.get(name, 0)
            last = self._drops_seen.get(name)
            self._drops_seen[name] = value
            if last is not None and value > last:
                pps = (self._new_client if key == "new_client_pps" else self._rate_limit)[0]
                self._ratelog.warning(
                    now, msg_id, "%s: %d DHCP frames %s, dropped in the kernel "
                    "(datapath/%s %d; stats/%s)", self._interface, value - last, what, key,
                    pps, name)

    @property
    def rate_limit(self) -> tuple[int, int]:
        """(pps, burst) as configured (burst 0 = twice pps)."""
        return self._rate_limit

    @property
    def new_client_budget(self) -> tuple[int, int]:
        """(pps, burst) of the new-client budget as configured (burst 0 = twice pps)."""
        return self._new_client

    def set_rate_limit(self, pps: int, burst: int = 0) -> None:
        """Change the per-client rate limit at run time (config reload): one write of
        the `config` map; buckets keep their tokens and refill at the new rate."""
        self.set_limits((pps, burst), self._new_client)

    def set_new_client_budget(self, pps: int, burst: int = 0) -> None:
        """Change the new-client budget at run time (config reload): one write of the
        `config` map and one of `new_client` (the budget starts full)."""
        self.set_limits(self._rate_limit, (pps, burst))

    def set_limits(self, rate_limit: tuple[int, int], new_client: tuple[int, int]) -> None:
        """Both limits as (pps, burst); writes only what changed (plan.diff), logs
        DP008 when the per-client limit changed and DP013 when the budget did."""
        want = plan.desired(self._active, *rate_limit, *new_client)
        old_rate, old_budget = self._rate_limit, self._new_client
        self._rate_limit, self._new_client = rate_limit, new_client
        if self._program is None:
            _warn_off(rate_limit, new_client)
            return
        program = self._program
        # set_role bypasses program.state (it is the one-syscall fast path), so take
        # the role from here and the config from what the program last wrote.
        current = replace(program.state, role=want.role)
        program.apply(plan.diff(current, want), self._switch)
        if rate_limit != old_rate:
            log.info("DP008 rate limit on %s: %s", self._interface,
                     _describe(want.rate_limit_pps, want.rate_limit_burst))
        if new_client != old_budget:
            log.info("DP013 new-client budget on %s: %s", self._interface,
                     _describe(want.new_client_pps, want.new_client_burst))


def _describe(pps: int, burst: int) -> str:
    return f"{pps}/s burst {burst}" if pps else "off"


def _warn_off(rate_limit: tuple[int, int], new_client: tuple[int, int]) -> None:
    """Mode "off": say which configured limits nobody enforces."""
    if rate_limit[0]:
        log.warning("DP006 datapath off: rate_limit_pps %d is not enforced", rate_limit[0])
    if new_client[0]:
        log.warning("DP006 datapath off: new_client_pps %d is not enforced", new_client[0])


def cleanup(interface: str) -> list[str]:
    """Detach any XDP program from `interface` (crash cleanup; the program need not
    be ours). Returns the modes that had one ([] when the interface was clean)."""
    from appliance.datapath.loader import detach_all

    modes = detach_all(interface)
    if modes:
        log.warning("DP011 removed XDP program(s) from %s: %s", interface, ", ".join(modes))
    return modes
