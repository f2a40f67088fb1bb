"""The datapath facade the daemon uses: open on the client interfaces, flip a group's
role, rebind interfaces on reload, read counters, close.

    dp = Datapath.open([Binding("eth1.100", (0,)), Binding("eth1.200", (1,)),
                        Binding("eth2", (0, 1))], cfg.datapath)  # every group standby
    dp.set_group_role(0, True)   # group 0's VRRP became master: one map write
    dp.set_interfaces([...])     # reload: add/remove interfaces, the others untouched
    dp.counters()                # device totals {"seen": ..., "dropped_standby": ...}
    dp.counters_by_group()       # {0: {...}, 1: {...}}
    dp.set_limits((50, 0), (200, 0))   # reload: per-client rate, new-client budget
    dp.close()                   # every group standby, then detach from every port

A Binding names a client interface and the group index(es) whose master serves it
(the daemon numbers its groups; a standalone interface gets a group the daemon keeps
active). Mode "xdp" compiles bpf/ (about 2 s), writes the limits, finds the physical
port under each interface and its VLAN ids (links.py, plan.place), writes the
`ifaces` keys and attaches the program to every port (native XDP where the driver
has it, generic otherwise; a stale program from a crashed daemon is replaced). Mode
"off" loads nothing: roles are Python bools, and the daemon checks each message with
`verdict()` (the kernel's rule, in Python) before answering (docs/datapath.md).
Either way every group starts standby.

The single-interface daemon keeps working unchanged: `Datapath.open("eth1", cfg)` is
`open([Binding("eth1", (0,))], cfg)`, `set_role(active)` is `set_group_role(0, active)`
and `role` is group 0's role.

`set_group_role` is the takeover: in mode "xdp" it is one bpf(2) map update with every
argument prebuilt (loader.GroupSwitch), then a log line when the role changed.

This module touches no kernel object itself; the loader and links.py do, and they are
imported only when an XDP datapath is opened or cleaned up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from appliance.config.model import DatapathConfig
from appliance.datapath import DatapathError, layout, plan
from appliance.datapath.plan import Binding, Link, Placement
from appliance.datapath.stats import Counters
from appliance.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from appliance.datapath.loader import GroupSwitch, Program

log = logging.getLogger(__name__)

MODES = ("xdp", "off")
# The group the single-interface daemon's one interface is bound to.
COMPAT_GROUP = 0

LinkReader = Callable[[], Mapping[str, Link]]


def _no_flip(group: int, active: bool) -> None:
    """Mode "off": no map to write."""


def _read_links() -> Mapping[str, Link]:
    from appliance.datapath import links

    try:
        return links.dump()
    except OSError as e:
        raise DatapathError(f"cannot read the link table: {e}") from e


class Datapath:
    """DHCP steering on a set of client interfaces. Build it with Datapath.open()."""

    def __init__(self, bindings: Sequence[Binding], attach_mode: str, program: Program | None,
                 rate_limit: tuple[int, int], new_client: tuple[int, int] = (0, 0),
                 read_links: LinkReader = _read_links) -> None:
        self._bindings: tuple[Binding, ...] = tuple(bindings)
        self._by_name = {b.name: b for b in self._bindings}
        self._placements: tuple[Placement, ...] = ()
        self._attach = attach_mode  # requested: "auto" | "native" | "generic" | "off"
        self._program = program
        self._roles: dict[int, bool] = {}
        self._rate_limit = rate_limit
        self._new_client = new_client
        self._read_links = read_links
        self._offload_off: set[str] = set()  # ports whose rx VLAN offload we turned off
        self._closed = False
        self._ratelog = RateLimitedLog(log)
        self._drops_seen: dict[str, int] = {}
        self._groups_ever: set[int] = set(plan.groups_of_bindings(self._bindings))
        if program is not None:
            switch = program.group_switch()
            self._switch: GroupSwitch | None = switch
            self._flip: Callable[[int, bool], None] = switch.set
            self._max_groups = switch.groups
            self._counters: Counters | None = Counters(program.read_stats)
        else:
            self._switch = None
            self._flip = _no_flip
            self._max_groups = layout.MAX_GROUPS
            self._counters = None

    # -- life cycle ------------------------------------------------------------------
    @classmethod
    def open(cls, interfaces: str | Sequence[Binding], cfg: DatapathConfig, *,
             attach: str = "auto", bpf_dir: Path | None = None,
             read_links: LinkReader = _read_links) -> Datapath:
        """Start the datapath on `interfaces` with every group standby. A plain name is
        the single-interface daemon's case: that interface bound to group 0. `attach`
        ("auto", "native", "generic") forces an XDP mode, for tests and benchmarks.
        Raises DatapathError when mode "xdp" cannot be set up (an interface missing or
        not placeable, the compiler, the verifier, an attach; nothing stays attached
        then), ValueError for a bad mode, limit or binding."""
        if cfg.mode not in MODES:
            raise ValueError(f"datapath mode {cfg.mode!r} not in {MODES}")
        bindings = ([Binding(interfaces, (COMPAT_GROUP,))] if isinstance(interfaces, str)
                    else list(interfaces))
        plan.check_bindings(bindings)
        want = plan.desired(cfg.rate_limit_pps, cfg.rate_limit_burst,
                            cfg.new_client_pps, cfg.new_client_burst)
        rate = (cfg.rate_limit_pps, cfg.rate_limit_burst)
        budget = (cfg.new_client_pps, cfg.new_client_burst)
        names = _names(b.name for b in bindings)
        if cfg.mode == "off":
            log.warning("DP001 datapath off on %s: no XDP program; the DHCP server "
                        "enforces the roles in user space (every group standby)", names)
            _warn_off(rate, budget)
            return cls(bindings, "off", None, rate, budget, read_links)

        try:
            placements = plan.place(bindings, read_links())
        except plan.PlanError as e:
            raise DatapathError(str(e)) from e
        from appliance.datapath.loader import Program

        program = Program.compile(plan.compile_flags(), bpf_dir)
        try:
            dp = cls(bindings, attach, program, rate, budget, read_links)
        except BaseException:
            program.close()
            raise
        try:
            program.apply(plan.diff(plan.INITIAL, want))
            for g in plan.groups_of(placements):
                dp._flip(g, False)  # explicit, whatever the zero-filled default
            dp._offload(placements)
            for key, groups in plan.table(placements).items():
                program.write_iface(key, groups)
            for _index, port in sorted(plan.ports(placements).items()):
                program.attach(port, attach)
            dp._placements = placements
        except BaseException:
            program.close()
            dp._restore_offload(set(dp._offload_off))
            raise
        log.info("DP002 XDP datapath on %s: %s, program id %d, every group standby, "
                 "rate limit %s, new clients %s", names, _describe_ports(program.ports),
                 program.prog_id, _describe(want.rate_limit_pps, want.rate_limit_burst),
                 _describe(want.new_client_pps, want.new_client_burst))
        return dp

    def close(self) -> None:
        """Every group standby, then detach from every port and release the program.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            for g in sorted(plan.groups_of_bindings(self._bindings) | set(self._roles)):
                self.set_group_role(g, False)
        finally:
            if self._program is not None:
                ports = self._program.ports
                self._program.close()
                log.info("DP004 XDP datapath detached from %s", _names(ports))
                self._restore_offload(set(self._offload_off))

    def __enter__(self) -> Datapath:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- roles -----------------------------------------------------------------------
    def set_group_role(self, group: int, active: bool) -> None:
        """Active: DHCP of group `group`'s clients reaches the server, on every interface
        bound to it. Standby: dropped (in the kernel in mode "xdp"). One map update
        whatever number of interfaces follow the group; always written, logged when it
        changes. Raises IndexError for a group index outside the map."""
        if not 0 <= group < self._max_groups:
            raise IndexError(f"group index {group} outside 0..{self._max_groups - 1}")
        self._flip(group, active)
        if active != self._roles.get(group, False):
            self._roles[group] = active
            log.info("DP009 group %d %s (%d interfaces)", group,
                     "active" if active else "standby", self._bound_to(group))

    def group_role(self, group: int) -> bool:
        """True when group `group` is active here."""
        return self._roles.get(group, False)

    @property
    def active_groups(self) -> frozenset[int]:
        return frozenset(g for g, on in self._roles.items() if on)

    def set_role(self, active: bool) -> None:
        """The single-interface daemon's flip: group 0 (COMPAT_GROUP)."""
        self.set_group_role(COMPAT_GROUP, active)

    @property
    def role(self) -> bool:
        """Group 0's role: the single-interface daemon's one role."""
        return self.group_role(COMPAT_GROUP)

    def verdict(self, interface: str, chaddr: bytes, hlen: int) -> layout.Stat:
        """What the kernel decides for a well-formed DHCP message from `chaddr` (the
        16-octet field, or the hlen octets) on `interface`, from the roles alone:
        PASSED, DROPPED_STANDBY, DROPPED_OTHER_BUCKET (a shared interface, the client's
        bucket is the group this device does not serve) or UNBOUND (not an interface
        of ours). In mode "off" the DHCP server must call this for every received
        message and drop (and count) all but PASSED; in mode "xdp" the kernel has
        done it already."""
        b = self._by_name.get(interface)
        return plan.decide(b.groups if b else None, self.group_role, chaddr, hlen)[1]

    def serves(self, interface: str, chaddr: bytes, hlen: int) -> bool:
        """verdict(...) is PASSED (or not ours: UNBOUND passes too, as in the kernel)."""
        return self.verdict(interface, chaddr, hlen) in (layout.Stat.PASSED,
                                                         layout.Stat.UNBOUND)

    # -- interfaces ------------------------------------------------------------------
    @property
    def bindings(self) -> tuple[Binding, ...]:
        return self._bindings

    @property
    def placements(self) -> tuple[Placement, ...]:
        """Where each interface's frames arrive (empty in mode "off")."""
        return self._placements

    def set_interfaces(self, bindings: Sequence[Binding]) -> plan.Reload:
        """Live reload: bind exactly `bindings`. Interfaces added get their keys (and
        their port the program, if it is new); interfaces removed lose theirs (and a
        port nobody uses any more is detached); an interface rebound to other groups
        is one key update. Interfaces, ports and groups that stay are not touched, nor
        is any role, except that a group no interface is bound to any more goes back
        to standby. Returns what was done. Raises DatapathError (nothing changed; an
        attach that fails is undone) or ValueError for a bad binding."""
        bindings = list(bindings)
        plan.check_bindings(bindings, self._max_groups)
        program = self._program
        if program is None:
            new_groups = plan.groups_of_bindings(bindings)
            change = plan.Reload((), (), (), (), plan.groups_of_bindings(self._bindings)
                                 - new_groups)
        else:
            program.check_netns("set_interfaces")
            try:
                new = plan.place(bindings, self._read_links())
            except plan.PlanError as e:
                raise DatapathError(str(e)) from e
            change = plan.reload(self._placements, new)
            self._offload(new)
            self._execute(program, change)
            self._placements = new
            self._restore_offload(self._offload_off - _tagged_ports(new))
        old_names = {b.name for b in self._bindings}
        self._bindings = tuple(bindings)
        self._by_name = {b.name: b for b in self._bindings}
        self._groups_ever |= plan.groups_of_bindings(self._bindings)
        for g in sorted(change.release):
            self.set_group_role(g, False)
            self._roles.pop(g, None)
        new_names = set(self._by_name)
        if old_names != new_names or not change.empty:
            log.info("DP016 interfaces reloaded: added %s, removed %s; attached to %s, "
                     "detached from %s", _names(new_names - old_names) or "none",
                     _names(old_names - new_names) or "none",
                     _names(n for _i, n in change.attach) or "no new port",
                     _names(n for _i, n in change.detach) or "no port")
        return change

    def _execute(self, program: Program, change: plan.Reload) -> None:
        before = dict(plan.table(self._placements))
        attached: list[str] = []
        try:
            for key, groups in change.upsert:
                program.write_iface(key, groups)
            for _index, port in change.attach:
                program.attach(port, self._attach)
                attached.append(port)
        except BaseException:
            for port in attached:
                program.detach(port)
            for key, _groups in change.upsert:
                if key in before:
                    program.write_iface(key, before[key])
                else:
                    program.delete_iface(key)
            raise
        for _index, port in change.detach:
            program.detach(port)
        for key in change.delete:
            program.delete_iface(key)

    def _offload(self, placements: Sequence[Placement]) -> None:
        """Turn rx VLAN offload off on every port that carries tagged interfaces
        (offload.py says why). Raises DatapathError if a port cannot."""
        from appliance.datapath import offload

        for port in sorted(_tagged_ports(placements) - self._offload_off):
            try:
                if not offload.rx_vlan_offload(port):
                    continue
                offload.set_rx_vlan_offload(port, False)
            except OSError as e:
                raise DatapathError(
                    f"{port}: cannot turn rx-vlan-offload off ({e.strerror}); XDP must see "
                    f"the VLAN tags of {_names(p.name for p in placements if p.port == port)}"
                    " (use another port, or datapath/mode off)") from e
            self._offload_off.add(port)
            log.warning("DP017 turned rx-vlan-offload off on %s: XDP must see the VLAN tags "
                        "of %s (turned back on when the datapath leaves the port)", port,
                        _names(p.name for p in placements if p.port == port))

    def _restore_offload(self, ports: set[str]) -> None:
        from appliance.datapath import offload

        for port in sorted(ports & self._offload_off):
            self._offload_off.discard(port)
            try:
                offload.set_rx_vlan_offload(port, True)
            except OSError as e:
                log.warning("DP018 could not turn rx-vlan-offload back on on %s: %s", port,
                            e.strerror)
                continue
            log.info("DP018 rx-vlan-offload on %s turned back on", port)

    def _bound_to(self, group: int) -> int:
        return sum(1 for b in self._bindings if group in b.groups)

    # -- facts and knobs -------------------------------------------------------------
    @property
    def interface(self) -> str:
        """The first bound interface (the single-interface daemon's one)."""
        return self._bindings[0].name if self._bindings else ""

    @property
    def attach_mode(self) -> str:
        """"native" | "generic" | "mixed" (ports in both modes) | "off" (runtime tree
        datapath/attach_mode); "none" while no port is attached."""
        if self._program is None:
            return "off"
        modes = set(self._program.ports.values())
        return modes.pop() if len(modes) == 1 else ("mixed" if modes else "none")

    @property
    def attach_modes(self) -> dict[str, str]:
        """Port -> "native" | "generic" ({} in mode "off")."""
        return self._program.ports if self._program is not None else {}

    @property
    def program(self) -> Program | None:
        """The loaded program (None in mode "off"); for tests and diagnostics."""
        return self._program

    def counters(self) -> dict[str, int]:
        """Kernel counters summed over CPUs and groups ({} in mode "off", where the
        server's own counters are the only ones). Groups once bound and since removed
        still count, so a total never goes down."""
        if self._counters is None:
            return {}
        return self._counters.read(self._groups_ever)

    def counters_by_group(self) -> dict[int, dict[str, int]]:
        """Each bound group's counters ({} in mode "off")."""
        if self._counters is None:
            return {}
        return {g: self._counters.group(g)
                for g in sorted(plan.groups_of_bindings(self._bindings))}

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
                    "(datapath/%s %d; stats/%s)", self.interface, value - last, what, key,
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
        want = plan.desired(*rate_limit, *new_client)
        old_rate, old_budget = self._rate_limit, self._new_client
        self._rate_limit, self._new_client = rate_limit, new_client
        if self._program is None:
            _warn_off(rate_limit, new_client)
            return
        self._program.apply(plan.diff(self._program.state, want))
        if rate_limit != old_rate:
            log.info("DP008 rate limit on %s: %s", self.interface,
                     _describe(want.rate_limit_pps, want.rate_limit_burst))
        if new_client != old_budget:
            log.info("DP013 new-client budget on %s: %s", self.interface,
                     _describe(want.new_client_pps, want.new_client_burst))


def _tagged_ports(placements: Sequence[Placement]) -> set[str]:
    return {p.port for p in placements if any(p.vlans)}


def _describe(pps: int, burst: int) -> str:
    return f"{pps}/s burst {burst}" if pps else "off"


def _names(names: object, most: int = 8) -> str:
    """"eth1, eth2" or, past `most`, "eth1, eth2, ... (200)": log lines stay short with
    hundreds of VLANs."""
    items = sorted(names)  # type: ignore[call-overload]
    if len(items) <= most:
        return ", ".join(items)
    return f"{', '.join(items[:most])}, ... ({len(items)})"


def _describe_ports(ports: Mapping[str, str]) -> str:
    modes = sorted(set(ports.values()))
    per_mode = ", ".join(f"{sum(1 for m in ports.values() if m == mode)} {mode}"
                         for mode in modes)
    return f"ports {_names(ports)} ({per_mode})"


def _warn_off(rate_limit: tuple[int, int], new_client: tuple[int, int]) -> None:
    """Mode "off": say which configured limits nobody enforces."""
    if rate_limit[0]:
        log.warning("DP006 datapath off: rate_limit_pps %d is not enforced", rate_limit[0])
    if new_client[0]:
        log.warning("DP006 datapath off: new_client_pps %d is not enforced", new_client[0])


def cleanup(interface: str) -> list[str]:
    """cleanup_all for one interface, as the single-interface daemon calls it: the modes
    removed from its port ([] when it was clean)."""
    return [mode for _port, mode in cleanup_all([interface])]


def cleanup_all(interfaces: Sequence[str]) -> list[tuple[str, str]]:
    """Detach any XDP program from the port under each of `interfaces` (crash cleanup:
    the program need not be ours; a VLAN or macvlan resolves to its port, a name not on
    this box is skipped, each port is cleaned once). Returns (port, mode) for each
    program removed ([] when everything was clean)."""
    from appliance.datapath.loader import detach_all

    links = _read_links()
    ports: list[str] = []
    for name in interfaces:
        if name not in links:
            continue
        try:
            port = plan.place([Binding(name, (0,))], links)[0].port
        except plan.PlanError:
            port = name  # a device the program cannot key: clean the name itself
        if port not in ports:
            ports.append(port)
    done: list[tuple[str, str]] = []
    for port in ports:
        modes = detach_all(port)
        if modes:
            log.warning("DP011 removed XDP program(s) from %s: %s", port, ", ".join(modes))
        done += [(port, m) for m in modes]
    return done
