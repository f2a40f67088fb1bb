"""Shared by every test: what the `netns` and `bpf` markers require, and a way to read
files as a process without root's DAC override.

Skipping is appliance/testing/require.py's job (one helper for every test): a test
that lacks root, bcc or a tool skips on a developer's box and FAILS under CI=true.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from hypothesis import settings

from appliance.testing.require import check_markers

# No per-example deadline: on a 2-core box shared with other test runs an example of a
# pure function took 221 ms against hypothesis's 200 ms and failed a correct test.
# Speed goals live in bench/; a test that sets its own deadline keeps it.
settings.register_profile("shared-box", deadline=None)
settings.load_profile("shared-box")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before the test's fixtures: a module-scoped fixture that compiles the XDP
    # program must not be what reports a missing bcc.
    check_markers(item)


# -- reading without CAP_DAC_OVERRIDE ----------------------------------------------------
# The tests run as root, and root reads a file of mode 000: to see what the daemon or an
# operator sees for an unreadable file or folder, the calling thread drops the two
# capabilities that bypass file permissions from its effective set for a while
# (capset(2) is per thread; they stay permitted, so they can be raised again).
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


@contextmanager
def _without_dac_override() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    saved = data[0].effective
    data[0].effective &= ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(hdr), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    try:
        yield
    finally:
        data[0].effective = saved
        if libc.capset(ctypes.byref(hdr), data) != 0:
            raise OSError(ctypes.get_errno(), "capset (restoring)")


@pytest.fixture(scope="session")
def without_dac_override() -> Callable[[], AbstractContextManager[None]]:
    """`with without_dac_override(): ...` reads files as their mode bits say, even as
    root (as a non-root user does anyway)."""
    return _without_dac_override

