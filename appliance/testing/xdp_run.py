"""BPF_PROG_TEST_RUN for XDP programs: packet in, verdict and packet out.

This calls libbpf.so.1's `bpf_prog_test_run_opts` through ctypes with the program
fd (`Program.fd`, appliance/datapath/loader.py). The kernel runs the program once
(or `repeat` times) on a copy of the frame, with the real maps: counters and
buckets change as if the frame had arrived on an interface.

    result = run(fn.fd, bytes(Ether()/IP()/UDP(dport=67)/BOOTP()))
    assert result.verdict is Verdict.PASS

Kernel rule worth knowing: a test-run frame must be at least ETH_HLEN (14)
bytes; shorter input is refused with EINVAL before the program runs
(net/bpf/test_run.c, bpf_test_init). `run` raises OSError then.

The frame arrives, for the program, on the loopback device of the calling thread's
namespace (xdp_md ingress_ifindex 1) unless `ingress_ifindex` names another device
of that namespace: then the kernel passes an xdp_md context in (ctx_in, kernel >=
5.15) and the program sees that ifindex, as if the frame had come in on it. An
ifindex that is not a device there is refused with ENODEV.

With `flags=BPF_F_TEST_XDP_LIVE_FRAMES` the kernel instead sends the frames the
program redirects (kernel >= 5.18): bench/ uses that as an in-kernel traffic
generator.

Test support only: product code never imports this module.
"""

from __future__ import annotations

import ctypes
import enum
import os
from dataclasses import dataclass


# include/uapi/linux/bpf.h: enum xdp_action
class Verdict(enum.IntEnum):
    ABORTED = 0
    DROP = 1
    PASS = 2
    TX = 3
    REDIRECT = 4


# include/uapi/linux/bpf.h: BPF_PROG_TEST_RUN flags
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

ETH_HLEN = 14  # include/uapi/linux/if_ether.h


class _TestRunOpts(ctypes.Structure):
    """libbpf's struct bpf_test_run_opts (tools/lib/bpf/bpf.h, libbpf 1.1)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class _XdpMd(ctypes.Structure):
    """struct xdp_md (include/uapi/linux/bpf.h) as BPF_PROG_TEST_RUN's ctx_in: data 0
    and data_end the frame's length (no metadata), the ingress device and queue."""

    _fields_ = [("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32),
                ("data_meta", ctypes.c_uint32), ("ingress_ifindex", ctypes.c_uint32),
                ("rx_queue_index", ctypes.c_uint32), ("egress_ifindex", ctypes.c_uint32)]


_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_test_run = _libbpf.bpf_prog_test_run_opts
_test_run.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
_test_run.restype = ctypes.c_int

# Room for the program to grow a frame (bpf_xdp_adjust_head/tail); ours does not.
_OUT_SLACK = 256


@dataclass(frozen=True, slots=True)
class RunResult:
    verdict: Verdict
    data_out: bytes
    duration_ns: int  # kernel-measured mean run time per repetition


def run(prog_fd: int, frame: bytes, repeat: int = 1, flags: int = 0,
        batch_size: int = 0, ingress_ifindex: int = 0) -> RunResult:
    """Run the XDP program `prog_fd` on `frame`; raises OSError on a kernel refusal
    (EINVAL for a frame shorter than ETH_HLEN, ENODEV for an `ingress_ifindex` that is
    not a device of this thread's namespace, for example)."""
    buf_in = ctypes.create_string_buffer(frame, len(frame))
    out_len = len(frame) + _OUT_SLACK
    buf_out = ctypes.create_string_buffer(out_len)
    live = bool(flags & BPF_F_TEST_XDP_LIVE_FRAMES)
    ctx = _XdpMd(data_end=len(frame), ingress_ifindex=ingress_ifindex) \
        if ingress_ifindex else None
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(buf_in, ctypes.c_void_p),
        data_out=None if live else ctypes.cast(buf_out, ctypes.c_void_p),
        data_size_in=len(frame),
        data_size_out=0 if live else out_len,
        ctx_in=ctypes.cast(ctypes.pointer(ctx), ctypes.c_void_p) if ctx else None,
        ctx_size_in=ctypes.sizeof(_XdpMd) if ctx else 0,
        repeat=repeat,
        flags=flags,
        batch_size=batch_size,
    )
    rc = _test_run(prog_fd, ctypes.byref(opts))
    if rc < 0:
        err = ctypes.get_errno() or -rc
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    data_out = b"" if live else buf_out.raw[: opts.data_size_out]
    return RunResult(Verdict(opts.retval), data_out, opts.duration)


# -- an in-kernel traffic generator (for bench/ and load tests) -------------------------
class _Insn(ctypes.Structure):
    """struct bpf_insn (include/uapi/linux/bpf.h)."""

    _fields_ = [("code", ctypes.c_uint8), ("regs", ctypes.c_uint8),
                ("off", ctypes.c_int16), ("imm", ctypes.c_int32)]


_BPF_PROG_TYPE_XDP = 6  # enum bpf_prog_type
_BPF_FUNC_redirect = 23  # enum bpf_func_id
_prog_load = _libbpf.bpf_prog_load
_prog_load.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p,
                       ctypes.POINTER(_Insn), ctypes.c_size_t, ctypes.c_void_p]
_prog_load.restype = ctypes.c_int


def load_redirect(ifindex: int) -> int:
    """Load (not attach) a 4-instruction XDP program `return bpf_redirect(ifindex, 0)`
    and return its fd. Run it with `run(fd, frame, repeat=N,
    flags=BPF_F_TEST_XDP_LIVE_FRAMES)` from inside the namespace that holds
    `ifindex`: the kernel transmits N copies of `frame` on that interface, at
    millions of frames per second (xdp-trafficgen's method). The caller closes the fd."""
    insns = (_Insn * 4)(
        _Insn(0xB7, 0x01, 0, ifindex),  # BPF_ALU64|BPF_MOV|BPF_K: r1 = ifindex
        _Insn(0xB7, 0x02, 0, 0),  # r2 = 0 (flags)
        _Insn(0x85, 0x00, 0, _BPF_FUNC_redirect),  # BPF_JMP|BPF_CALL: bpf_redirect
        _Insn(0x95, 0x00, 0, 0),  # BPF_JMP|BPF_EXIT: return r0
    )
    fd = _prog_load(_BPF_PROG_TYPE_XDP, b"trafficgen", b"GPL", insns, 4, None)
    if fd < 0:
        raise OSError(-fd, f"BPF_PROG_LOAD: {os.strerror(-fd)}")
    return fd


def load_pass() -> int:
    """Load (not attach) the empty XDP program `return XDP_PASS`; for baselines."""
    insns = (_Insn * 2)(
        _Insn(0xB7, 0x00, 0, Verdict.PASS),  # r0 = XDP_PASS
        _Insn(0x95, 0x00, 0, 0),  # exit
    )
    fd = _prog_load(_BPF_PROG_TYPE_XDP, b"pass", b"GPL", insns, 2, None)
    if fd < 0:
        raise OSError(-fd, f"BPF_PROG_LOAD: {os.strerror(-fd)}")
    return fd
