"""The bcc adapter: compile bpf/ with -D flags, attach/detach XDP, typed map handles.

The only module that imports bcc. It also calls libbpf.so.1, the library bcc itself
links, through ctypes for the three things bcc 0.26 does not offer: querying what is
attached to an interface (`bpf_xdp_query`), attaching with a chosen mode and an
exact error code (`bpf_xdp_attach`), and detaching only our own program
(`XDP_FLAGS_REPLACE` with the old program's fd).

Attach policy (README.md "Attach and pinning"):

- mode "auto": native (driver) XDP first; if the driver has no native XDP
  (EOPNOTSUPP), generic (SKB) XDP. The mode that took is returned and logged.
- A program already on the interface (left by a crashed daemon: XDP attachments
  outlive the process that made them) is replaced atomically when it is in the same
  mode; in the other mode it is detached first, since the kernel refuses native and
  generic programs side by side (EEXIST).
- Nothing is pinned: the maps die with the program.

Network namespaces: attach and detach use the calling thread's namespace. A
Program remembers the namespace it attached in and refuses to detach from another
one, so an ifindex is never applied to the wrong interface.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bcc import BPF

from appliance.datapath import DatapathError, layout, plan

log = logging.getLogger(__name__)

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
# enum { XDP_ATTACHED_NONE, _DRV, _SKB, _HW, _MULTI }
_ATTACHED = {0: "none", 1: "native", 2: "generic", 3: "offload", 4: "multi"}
_MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}

ATTACH_MODES = ("auto", "native", "generic")


# -- libbpf through ctypes ---------------------------------------------------------
class _XdpQueryOpts(ctypes.Structure):
    """struct bpf_xdp_query_opts (tools/lib/bpf/libbpf.h, libbpf 1.1)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_id", ctypes.c_uint32),
        ("drv_prog_id", ctypes.c_uint32),
        ("hw_prog_id", ctypes.c_uint32),
        ("skb_prog_id", ctypes.c_uint32),
        ("attach_mode", ctypes.c_uint8),
    ]


class _XdpAttachOpts(ctypes.Structure):
    """struct bpf_xdp_attach_opts (tools/lib/bpf/libbpf.h)."""

    _fields_ = [("sz", ctypes.c_size_t), ("old_prog_fd", ctypes.c_int)]


class _ProgInfo(ctypes.Structure):
    """The head of struct bpf_prog_info (include/uapi/linux/bpf.h): type and id."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 248)]


_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_xdp_query = _libbpf.bpf_xdp_query
_xdp_query.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_XdpQueryOpts)]
_xdp_attach = _libbpf.bpf_xdp_attach
_xdp_attach.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint32,
                        ctypes.POINTER(_XdpAttachOpts)]
_xdp_detach = _libbpf.bpf_xdp_detach
_xdp_detach.argtypes = [ctypes.c_int, ctypes.c_uint32, ctypes.POINTER(_XdpAttachOpts)]
_obj_info = _libbpf.bpf_obj_get_info_by_fd
_obj_info.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
# The role flip: declared without argtypes so that a call with prebuilt ctypes
# arguments converts nothing (RoleSwitch).
_map_update = _libbpf.bpf_map_update_elem
_map_update.restype = ctypes.c_int


def _check(rc: int, what: str) -> None:
    """libbpf >= 1.0 returns -errno."""
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


@dataclass(frozen=True, slots=True)
class Attachment:
    """What XDP program an interface has, as the kernel reports it."""

    prog_id: int  # 0: none
    mode: str  # "none" | "native" | "generic" | "offload" | "multi"
    drv_prog_id: int
    skb_prog_id: int


def ifindex(interface: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except OSError as e:
        raise DatapathError(f"interface {interface!r} not found in this namespace") from e


def query(interface: str) -> Attachment:
    """The XDP program(s) on `interface` (in the calling thread's namespace)."""
    opts = _XdpQueryOpts(sz=ctypes.sizeof(_XdpQueryOpts))
    _check(_xdp_query(ifindex(interface), 0, ctypes.byref(opts)),
           f"bpf_xdp_query {interface}")
    return Attachment(opts.prog_id, _ATTACHED.get(opts.attach_mode, "unknown"),
                      opts.drv_prog_id, opts.skb_prog_id)


def detach_all(interface: str) -> list[str]:
    """Detach whatever XDP program is on `interface`, in every mode; returns the
    modes that had one. For crash cleanup: the program need not be ours."""
    idx = ifindex(interface)
    found = query(interface)
    done: list[str] = []
    for mode, prog_id in (("native", found.drv_prog_id), ("generic", found.skb_prog_id)):
        if prog_id:
            _check(_xdp_detach(idx, _MODE_FLAGS[mode], None),
                   f"detach {mode} XDP from {interface}")
            done.append(mode)
    return done


def _netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def default_bpf_dir() -> Path:
    """bpf/ beside the package in a checkout; the .deb's copy otherwise."""
    here = Path(__file__).resolve().parents[2] / "bpf"
    if (here / layout.SOURCE_FILE).is_file():
        return here
    return Path("/usr/share/dhcp-hotbackup/bpf")


class RoleSwitch:
    """The takeover: one BPF_MAP_UPDATE_ELEM of the role word, with every argument
    built in advance (map fd, key, both values, flags), so `set` is a single ctypes
    call into libbpf and a single bpf(2) syscall."""

    # The ctypes key and values must outlive the raw addresses held in _args.
    __slots__ = ("_args", "_key", "_values")

    def __init__(self, map_fd: int) -> None:
        self._key = layout.RoleKey(0)
        self._values = (layout.RoleValue(layout.Role.STANDBY),
                        layout.RoleValue(layout.Role.ACTIVE))
        fd = ctypes.c_int(map_fd)
        key = ctypes.c_void_p(ctypes.addressof(self._key))
        flags = ctypes.c_uint64(0)  # BPF_ANY
        self._args = tuple(
            (fd, key, ctypes.c_void_p(ctypes.addressof(v)), flags) for v in self._values)

    def set(self, active: bool) -> None:
        rc = _map_update(*self._args[active])
        if rc < 0:
            raise OSError(-rc, f"role map update: {os.strerror(-rc)}")


class Program:
    """The compiled and loaded XDP program with its maps; attached to at most one
    interface. `bpf` is the bcc object, for tests and diagnostics only."""

    def __init__(self, bpf: BPF, fn: BPF.Function) -> None:
        self.bpf = bpf
        self._fn = fn
        self.interface: str | None = None
        self.attach_mode: str | None = None
        self._ifindex = 0
        self._netns = 0
        tables = {spec.name: bpf[spec.name.encode()] for spec in layout.MAPS}
        self._role = tables[layout.MAP_ROLE]
        self._config = tables[layout.MAP_CONFIG]
        self._stats = tables[layout.MAP_STATS]
        self._rate_limit = tables[layout.MAP_RATE_LIMIT]
        self.state = plan.INITIAL

    # -- building ------------------------------------------------------------------
    @classmethod
    def compile(cls, cflags: Sequence[str] = (), bpf_dir: Path | None = None) -> Program:
        """Compile bpf/ with bcc (about 2 s) and load the XDP entry (the verifier
        runs here). Raises DatapathError with bcc's message on failure."""
        src = (bpf_dir or default_bpf_dir()).resolve()
        # bcc reads the file into memory, so includes resolve through -I only.
        flags = [f"-I{src}", *cflags]
        try:
            bpf = BPF(src_file=str(src / layout.SOURCE_FILE).encode(), cflags=flags)
            fn = bpf.load_func(layout.PROG_NAME.encode(), BPF.XDP)
        except Exception as e:  # bcc raises bare Exception
            raise DatapathError(f"cannot load {src / layout.SOURCE_FILE}: {e}") from e
        log.debug("DP010 compiled %s with %s", src / layout.SOURCE_FILE, flags)
        return cls(bpf, fn)

    @property
    def fd(self) -> int:
        return self._fn.fd

    @property
    def prog_id(self) -> int:
        info = _ProgInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _check(_obj_info(self.fd, ctypes.byref(info), ctypes.byref(size)), "prog info")
        return info.id

    # -- maps ------------------------------------------------------------------------
    def role_switch(self) -> RoleSwitch:
        return RoleSwitch(self._role.map_fd)

    def read_role(self) -> layout.Role:
        return layout.Role(self._role[self._role.Key(0)].value)

    def write_config(self, pps: int, burst: int) -> None:
        value = layout.ConfigValue(pps, burst)
        self._config[self._config.Key(0)] = self._config.Leaf(
            value.rate_limit_pps, value.rate_limit_burst)

    def apply(self, writes: Sequence[plan.MapWrite], switch: RoleSwitch | None = None) -> None:
        """Execute plan writes in order and record the resulting state."""
        for w in writes:
            if isinstance(w, plan.RoleWrite):
                (switch or self.role_switch()).set(w.role == layout.Role.ACTIVE)
                self.state = plan.MapState(w.role, self.state.rate_limit_pps,
                                           self.state.rate_limit_burst)
            else:
                self.write_config(w.rate_limit_pps, w.rate_limit_burst)
                self.state = plan.MapState(self.state.role, w.rate_limit_pps,
                                           w.rate_limit_burst)

    def read_stats(self) -> list[list[int]]:
        """Per-CPU values of every counter, indexed by layout.Stat."""
        return [list(self._stats.getvalue(self._stats.Key(i))) for i in range(layout.STAT_MAX)]

    def clear_stats(self) -> None:
        for i in range(layout.STAT_MAX):
            self._stats.clearitem(self._stats.Key(i))

    def buckets(self) -> dict[bytes, layout.RateLimitValue]:
        """The rate-limit buckets by client MAC (diagnostics)."""
        return {bytes(k.mac): layout.RateLimitValue(v.tokens, v.last_ns)
                for k, v in self._rate_limit.items()}

    def clear_buckets(self) -> None:
        self._rate_limit.clear()

    # -- attaching -------------------------------------------------------------------
    def attach(self, interface: str, mode: str = "auto") -> str:
        """Attach to `interface` (see the module's attach policy); returns "native" or
        "generic". Replaces a stale program; raises DatapathError if nothing took."""
        if mode not in ATTACH_MODES:
            raise ValueError(f"attach mode {mode!r} not in {ATTACH_MODES}")
        if self.interface is not None:
            raise DatapathError(f"already attached to {self.interface}")
        idx = ifindex(interface)
        before = query(interface)
        order = ["native", "generic"] if mode == "auto" else [mode]
        errors: list[str] = []
        for m in order:
            other = "generic" if m == "native" else "native"
            other_id = before.skb_prog_id if m == "native" else before.drv_prog_id
            rc = _xdp_attach(idx, self.fd, _MODE_FLAGS[m], None)
            if rc == -errno.EEXIST and other_id:
                # A stale program in the other mode blocks this one: remove it.
                _check(_xdp_detach(idx, _MODE_FLAGS[other], None),
                       f"detach stale {other} XDP from {interface}")
                log.warning("DP003 removed stale %s XDP program id %d from %s",
                            other, other_id, interface)
                rc = _xdp_attach(idx, self.fd, _MODE_FLAGS[m], None)
            if rc == 0:
                stale = before.drv_prog_id if m == "native" else before.skb_prog_id
                if stale:
                    log.warning("DP003 replaced stale %s XDP program id %d on %s",
                                m, stale, interface)
                self.interface, self.attach_mode = interface, m
                self._ifindex, self._netns = idx, _netns_inode()
                return m
            errors.append(f"{m}: {os.strerror(-rc)}")
            if m == "native" and mode == "auto":
                log.info("DP007 %s has no native XDP (%s); trying generic",
                         interface, os.strerror(-rc))
        raise DatapathError(f"cannot attach XDP to {interface}: {'; '.join(errors)}")

    def detach(self) -> None:
        """Detach from the interface if this program is still the one attached there
        (XDP_FLAGS_REPLACE with our fd: a newer program put there by someone else is
        left alone). Idempotent."""
        if self.interface is None or self.attach_mode is None:
            return
        if _netns_inode() != self._netns:
            raise DatapathError(
                f"detach from {self.interface}: called from another network namespace")
        opts = _XdpAttachOpts(sz=ctypes.sizeof(_XdpAttachOpts), old_prog_fd=self.fd)
        rc = _xdp_detach(self._ifindex, _MODE_FLAGS[self.attach_mode] | XDP_FLAGS_REPLACE,
                         ctypes.byref(opts))
        interface, self.interface, self.attach_mode = self.interface, None, None
        if rc == -errno.EEXIST:
            # Not ours any more: replaced by another program, or already removed.
            now = query(interface)
            if now.prog_id:
                log.warning("DP005 %s carries another XDP program (id %d) now; left it "
                            "attached", interface, now.prog_id)
        elif rc == -errno.ENODEV:
            log.info("DP012 %s is gone; nothing to detach", interface)
        else:
            _check(rc, f"detach XDP from {interface}")

    def close(self) -> None:
        """Detach (if attached) and release the program and maps."""
        try:
            self.detach()
        finally:
            self.bpf.cleanup()
