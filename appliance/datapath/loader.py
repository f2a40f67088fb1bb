"""The kernel side of the datapath: the loaded XDP program and its maps, driven by fd.

The program is compiled and loaded by appliance/datapath/compiler.py (bcc, in a
short-lived child process); this module holds the file descriptors it handed over
and calls libbpf.so.1 (the library bcc itself links) through ctypes for everything
else: map lookups and updates, querying what is attached to an interface
(`bpf_xdp_query`), attaching with a chosen mode and an exact error code
(`bpf_xdp_attach`), and detaching only our own program (`XDP_FLAGS_REPLACE` with the
old program's fd). No bcc or LLVM in the daemon's address space.

One program serves every physical port under the client interfaces: it is attached
to each (Program.attach, once per port) and its maps are shared by all of them.

Attach policy (README.md "Attach and pinning"), per port:

- mode "auto": native (driver) XDP first; if the driver has no native XDP
  (EOPNOTSUPP), generic (SKB) XDP. The mode that took is returned and logged.
- A program already on the interface (left by a crashed daemon: XDP attachments
  outlive the process that made them) is replaced atomically when it is in the same
  mode; in the other mode it is detached first, since the kernel refuses native and
  generic programs side by side (EEXIST).
- Nothing is pinned: the maps die with the program.

Network namespaces: attach and detach use the calling thread's namespace. A
Program remembers the namespace it attached each port in and refuses to detach from
another one, so an ifindex is never applied to the wrong interface.
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

from appliance.datapath import DatapathError, compiler, layout, plan

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
    """The head of struct bpf_prog_info (include/uapi/linux/bpf.h); the kernel fills
    as much as the size we pass."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("tag", ctypes.c_uint8 * 8), ("jited_prog_len", ctypes.c_uint32),
                ("xlated_prog_len", ctypes.c_uint32), ("rest", ctypes.c_uint8 * 232)]


class _MapInfo(ctypes.Structure):
    """The head of struct bpf_map_info (include/uapi/linux/bpf.h)."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16)]


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
_lookup = _libbpf.bpf_map_lookup_elem
_lookup.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_update = _libbpf.bpf_map_update_elem
_update.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64]
_delete = _libbpf.bpf_map_delete_elem
_delete.argtypes = [ctypes.c_int, ctypes.c_void_p]
_next_key = _libbpf.bpf_map_get_next_key
_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_num_possible_cpus = _libbpf.libbpf_num_possible_cpus
# The role flip: declared without argtypes so that a call with prebuilt ctypes
# arguments converts nothing (GroupSwitch). A handle of its own: argtypes set on one
# handle apply to every use of it.
_map_update = ctypes.CDLL("libbpf.so.1", use_errno=True).bpf_map_update_elem
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


class GroupSwitch:
    """A group's takeover: one BPF_MAP_UPDATE_ELEM of its role word in `group_role`,
    with every argument built in advance for every group index (map fd, key, both
    values, flags), so `set` is a single ctypes call into libbpf and a single bpf(2)
    syscall, whatever number of interfaces are bound to the group."""

    # The ctypes keys and values must outlive the raw addresses held in _args.
    __slots__ = ("_args", "_keys", "_values")

    def __init__(self, map_fd: int, groups: int = layout.MAX_GROUPS) -> None:
        self._keys = (layout.GroupRoleKey * groups)(*range(groups))
        self._values = (layout.GroupRoleValue(layout.Role.STANDBY),
                        layout.GroupRoleValue(layout.Role.ACTIVE))
        fd = ctypes.c_int(map_fd)
        flags = ctypes.c_uint64(0)  # BPF_ANY
        values = tuple(ctypes.c_void_p(ctypes.addressof(v)) for v in self._values)
        base, size = ctypes.addressof(self._keys), ctypes.sizeof(layout.GroupRoleKey)
        self._args = tuple(
            tuple((fd, ctypes.c_void_p(base + g * size), v, flags) for v in values)
            for g in range(groups))

    @property
    def groups(self) -> int:
        return len(self._args)

    def set(self, group: int, active: bool) -> None:
        """Raises IndexError for a group index outside the map, OSError if the kernel
        refuses the update."""
        rc = _map_update(*self._args[group][active])
        if rc < 0:
            raise OSError(-rc, f"group_role[{group}] update: {os.strerror(-rc)}")


class BpfMap:
    """One map by fd, with the layout.py mirrors as key and value types. Per-CPU
    maps read and write one value per possible CPU, each padded to 8 bytes."""

    def __init__(self, spec: layout.MapSpec, fd: int) -> None:
        """Takes ownership of `fd`: closed here if the map is not the one expected."""
        self.spec, self.fd = spec, fd
        try:
            self._describe()
        except BaseException:
            self.close()
            raise

    def _describe(self) -> None:
        spec, fd = self.spec, self.fd
        info = _MapInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _check(_obj_info(fd, ctypes.byref(info), ctypes.byref(size)), f"map {spec.name} info")
        self.max_entries = info.max_entries
        key_size, value_size = ctypes.sizeof(spec.key), ctypes.sizeof(spec.value)
        if (info.key_size, info.value_size) != (key_size, value_size):
            # The C and layout.py disagree: refuse rather than read garbage.
            raise DatapathError(
                f"map {spec.name}: the program's key/value sizes {info.key_size}/"
                f"{info.value_size} are not layout.py's {key_size}/{value_size}")
        self.percpu = spec.kind.startswith("PerCpu")
        self.ncpus = _num_possible_cpus() if self.percpu else 1
        if self.ncpus < 1:
            raise DatapathError(f"libbpf_num_possible_cpus: {os.strerror(-self.ncpus)}")
        self._stride = (value_size + 7) // 8 * 8 if self.percpu else value_size

    def _buffer(self) -> ctypes.Array[ctypes.c_char]:
        return ctypes.create_string_buffer(self._stride * self.ncpus)

    def lookup(self, key: ctypes._CData) -> list[ctypes._CData] | None:
        """The value (one per possible CPU for a per-CPU map), or None if absent."""
        buf = self._buffer()
        rc = _lookup(self.fd, ctypes.byref(key), buf)
        if rc == -errno.ENOENT:
            return None
        _check(rc, f"lookup in map {self.spec.name}")
        vt = self.spec.value
        return [vt.from_buffer_copy(buf, i * self._stride) for i in range(self.ncpus)]

    def update(self, key: ctypes._CData, value: ctypes._CData) -> None:
        """Write `value` (on every CPU, for a per-CPU map)."""
        buf = self._buffer()
        raw = bytes(value)
        for i in range(self.ncpus):
            ctypes.memmove(ctypes.addressof(buf) + i * self._stride, raw, len(raw))
        _check(_update(self.fd, ctypes.byref(key), buf, 0), f"update of map {self.spec.name}")

    def delete(self, key: ctypes._CData) -> None:
        rc = _delete(self.fd, ctypes.byref(key))
        if rc != -errno.ENOENT:
            _check(rc, f"delete from map {self.spec.name}")

    def keys(self) -> list[ctypes._CData]:
        """Every key, in the kernel's order (a snapshot: the map may change)."""
        out: list[ctypes._CData] = []
        kt = self.spec.key
        prev: ctypes._CData | None = None
        while True:
            nxt = kt()
            rc = _next_key(self.fd, ctypes.byref(prev) if prev is not None else None,
                           ctypes.byref(nxt))
            if rc == -errno.ENOENT:
                return out
            _check(rc, f"next key in map {self.spec.name}")
            out.append(nxt)
            prev = nxt

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(slots=True)
class _Port:
    """One port the program is attached to."""

    name: str
    ifindex: int
    mode: str  # "native" | "generic"
    netns: int  # inode of the namespace it was attached in


class Program:
    """The loaded XDP program with its maps; attached to any number of ports. Owns
    the file descriptors: close() releases them (the kernel frees the program and
    maps once nothing else holds them)."""

    def __init__(self, loaded: compiler.Loaded) -> None:
        self._fd = loaded.prog_fd
        self._ports: dict[str, _Port] = {}
        self.maps: dict[str, BpfMap] = {}
        fds = dict(loaded.map_fds)
        try:
            for spec in layout.MAPS:
                self.maps[spec.name] = BpfMap(spec, fds.pop(spec.name))
        except BaseException:
            self._release()
            raise
        finally:
            for fd in fds.values():  # a map layout.py does not know
                os.close(fd)
        self._ifaces = self.maps[layout.MAP_IFACES]
        self._group_role = self.maps[layout.MAP_GROUP_ROLE]
        self._config = self.maps[layout.MAP_CONFIG]
        self._stats = self.maps[layout.MAP_STATS]
        self._rate_limit = self.maps[layout.MAP_RATE_LIMIT]
        self._new_client = self.maps[layout.MAP_NEW_CLIENT]
        self.max_groups = self._group_role.max_entries
        self.state = plan.INITIAL
        self._home_netns = _netns_inode()
        try:
            # bcc cannot give the program constant data: the RFC 3074 table is written
            # here, before the program can be attached anywhere (dhcp_steer.h).
            self.maps[layout.MAP_LB_TABLE].update(
                layout.LbTableKey(0), layout.LbTableValue((ctypes.c_uint8 * 256)(
                    *layout.LB_TABLE)))
        except BaseException:
            self._release()
            raise

    # -- building ------------------------------------------------------------------
    @classmethod
    def compile(cls, cflags: Sequence[str] = (), bpf_dir: Path | None = None) -> Program:
        """Compile bpf/ (bcc, in a child process: about 2 s) and load the XDP entry
        (the verifier runs there). Raises DatapathError with bcc's message."""
        loaded = compiler.load(cflags, bpf_dir)
        log.debug("DP010 compiled %s with %s", bpf_dir or compiler.default_bpf_dir(),
                  list(cflags))
        return cls(loaded)  # on failure it has closed every descriptor

    @property
    def fd(self) -> int:
        return self._fd

    def _info(self) -> _ProgInfo:
        info = _ProgInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _check(_obj_info(self.fd, ctypes.byref(info), ctypes.byref(size)), "prog info")
        return info

    @property
    def prog_id(self) -> int:
        return self._info().id

    @property
    def instructions(self) -> int:
        """BPF instructions after the verifier's rewrites (8 bytes each)."""
        return self._info().xlated_prog_len // 8

    # -- maps ------------------------------------------------------------------------
    def group_switch(self) -> GroupSwitch:
        return GroupSwitch(self._group_role.fd, self.max_groups)

    def read_group_role(self, group: int) -> layout.Role:
        value = self._group_role.lookup(layout.GroupRoleKey(group))
        if value is None:
            raise IndexError(f"group index {group} outside 0..{self.max_groups - 1}")
        return layout.Role(value[0].value)

    def write_iface(self, key: plan.IfaceKey, groups: Sequence[int]) -> None:
        """Bind the (port ifindex, VLAN ids) `key` to `groups` (one update, atomic for
        the program: it sees the old or the new value)."""
        self._ifaces.update(_iface_key(key), layout.IfaceValue(
            len(groups), (ctypes.c_uint32 * layout.IFACE_MAX_GROUPS)(*groups)))

    def delete_iface(self, key: plan.IfaceKey) -> None:
        self._ifaces.delete(_iface_key(key))

    def read_ifaces(self) -> plan.IfaceTable:
        """The `ifaces` map as plan.table() describes it (diagnostics, tests)."""
        out: plan.IfaceTable = {}
        for key in self._ifaces.keys():
            value = self._ifaces.lookup(key)
            if value is not None:
                v = value[0]
                out[(key.ifindex, tuple(key.vlan))] = tuple(v.group[:v.groups])
        return out

    def read_lb_table(self) -> tuple[int, ...]:
        value = self.maps[layout.MAP_LB_TABLE].lookup(layout.LbTableKey(0))
        assert value is not None
        return tuple(value[0].mix)

    def read_config(self) -> layout.ConfigValue:
        value = self._config.lookup(layout.ConfigKey(0))
        assert value is not None
        return value[0]

    def write_config(self, pps: int, burst: int, new_client_pps: int = 0,
                     new_client_burst: int = 0) -> None:
        self._config.update(layout.ConfigKey(0), layout.ConfigValue(
            pps, burst, new_client_pps, new_client_burst))

    def read_new_client(self) -> layout.NewClientValue:
        """The new-client budget word (diagnostics, tests)."""
        value = self._new_client.lookup(layout.NewClientKey(0))
        assert value is not None
        return value[0]

    def reset_new_client(self) -> None:
        """The new-client budget full again (tat 0)."""
        self._new_client.update(layout.NewClientKey(0), layout.NewClientValue(0))

    def apply(self, writes: Sequence[plan.MapWrite]) -> None:
        """Execute plan writes in order and record the resulting state."""
        for w in writes:
            if isinstance(w, plan.ConfigWrite):
                self.write_config(w.rate_limit_pps, w.rate_limit_burst, w.new_client_pps,
                                  w.new_client_burst)
            else:
                self.reset_new_client()
            self.state = plan.apply_write(self.state, w)

    def read_stats(self, slot: int) -> list[list[int]]:
        """Per-CPU values of one `stats` slot (a group index, or
        layout.STATS_SLOT_UNBOUND): a list per CPU, indexed by layout.Stat."""
        values = self._stats.lookup(layout.StatsKey(slot))
        if values is None:
            raise IndexError(f"stats slot {slot} outside 0..{self._stats.max_entries - 1}")
        return [list(v.count) for v in values]

    def clear_stats(self, slots: Sequence[int] | None = None) -> None:
        """Zero the counters of `slots` (all when None: a few ms for 1025 slots)."""
        for i in range(self._stats.max_entries) if slots is None else slots:
            self._stats.update(layout.StatsKey(i), layout.StatsValue())

    def buckets(self) -> dict[bytes, layout.RateLimitValue]:
        """The rate-limit buckets by client MAC (diagnostics)."""
        out = {}
        for key in self._rate_limit.keys():
            value = self._rate_limit.lookup(key)
            if value is not None:
                out[bytes(key.mac)] = value[0]
        return out

    def clear_buckets(self) -> None:
        for key in self._rate_limit.keys():
            self._rate_limit.delete(key)

    # -- attaching -------------------------------------------------------------------
    def check_netns(self, what: str) -> None:
        """Raise DatapathError unless the calling thread is in the namespace the program
        was loaded in: port names and ifindexes are only meaningful there."""
        if _netns_inode() != self._home_netns:
            raise DatapathError(f"{what}: called from another network namespace than the "
                                "one the datapath was opened in")

    @property
    def ports(self) -> dict[str, str]:
        """The ports the program is attached to: name -> "native" | "generic"."""
        return {p.name: p.mode for p in self._ports.values()}

    def attach(self, interface: str, mode: str = "auto") -> str:
        """Attach to the port `interface` (see the module's attach policy); returns
        "native" or "generic". Replaces a stale program; raises DatapathError if
        nothing took."""
        if mode not in ATTACH_MODES:
            raise ValueError(f"attach mode {mode!r} not in {ATTACH_MODES}")
        if interface in self._ports:
            raise DatapathError(f"already attached to {interface}")
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
                if stale and stale != self.prog_id:
                    log.warning("DP003 replaced stale %s XDP program id %d on %s",
                                m, stale, interface)
                self._ports[interface] = _Port(interface, idx, m, _netns_inode())
                return m
            errors.append(f"{m}: {os.strerror(-rc)}")
            if m == "native" and mode == "auto":
                log.info("DP007 %s has no native XDP (%s); trying generic",
                         interface, os.strerror(-rc))
        raise DatapathError(f"cannot attach XDP to {interface}: {'; '.join(errors)}")

    def detach(self, interface: str | None = None) -> None:
        """Detach from the port `interface` (every port when None) if this program is
        still the one attached there (XDP_FLAGS_REPLACE with our fd: a newer program
        put there by someone else is left alone). Idempotent; a port we are not on
        is ignored. With several ports, each is tried and the first error raised."""
        names = list(self._ports) if interface is None else [interface]
        error: BaseException | None = None
        for name in names:
            try:
                self._detach_one(name)
            except (OSError, DatapathError) as e:
                error = error or e
        if error is not None:
            raise error

    def _detach_one(self, interface: str) -> None:
        port = self._ports.get(interface)
        if port is None:
            return
        if _netns_inode() != port.netns:
            raise DatapathError(
                f"detach from {interface}: called from another network namespace")
        del self._ports[interface]
        opts = _XdpAttachOpts(sz=ctypes.sizeof(_XdpAttachOpts), old_prog_fd=self.fd)
        rc = _xdp_detach(port.ifindex, _MODE_FLAGS[port.mode] | XDP_FLAGS_REPLACE,
                         ctypes.byref(opts))
        if rc == -errno.EEXIST:
            # Not ours any more: replaced by another program, or already removed.
            try:
                now = query(interface)
            except (OSError, DatapathError):
                return  # renamed or gone meanwhile: nothing of ours is left there
            if now.prog_id:
                log.warning("DP005 %s carries another XDP program (id %d) now; left it "
                            "attached", interface, now.prog_id)
        elif rc == -errno.ENODEV:
            log.info("DP012 %s is gone; nothing to detach", interface)
        else:
            _check(rc, f"detach XDP from {interface}")

    def _release(self) -> None:
        for m in self.maps.values():
            m.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        """Detach from every port and release the program and maps. Idempotent."""
        try:
            self.detach()
        finally:
            self._release()


def _iface_key(key: plan.IfaceKey) -> layout.IfaceKey:
    ifindex, vlans = key
    return layout.IfaceKey(ifindex, (ctypes.c_uint16 * layout.IFACE_VLANS)(*vlans))
