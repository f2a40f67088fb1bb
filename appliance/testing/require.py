"""What a test needs from the machine (root, a tool, bcc, a Python module), and what
happens when it is missing: a skip on a developer's box, a failure under CI.

Every test that cannot run without something calls one of these instead of
`pytest.skip` or `pytest.importorskip`:

    require_root("network namespaces")   # or mark the test `netns` / `bpf`
    require_tools("dhclient", "tcpdump")
    require_bcc()                        # or mark the test `bpf`
    scapy = require_module("scapy.all")
    missing("no kernel headers at /lib/modules/...")   # anything else

With `CI=true` in the environment (CI systems set it) the test fails instead of
skipping: a CI run that skips its namespace tests proves nothing, and
`scripts/setup.sh` (`make setup`, which `make test` runs) installs everything these
tests need. tests/conftest.py applies the `netns` and `bpf` markers through
`check_markers`, before any fixture of the test is set up.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

SETUP_HINT = "scripts/setup.sh installs it (make setup)"


def strict() -> bool:
    """True under CI: `CI` set to true, 1 or yes (any case)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(what: str) -> NoReturn:
    """The test cannot run because `what`: skip it, or fail it under CI=true."""
    if strict():
        pytest.fail(f"CI=true and {what}: under CI a test that needs it fails instead of "
                    f"skipping; {SETUP_HINT}", pytrace=False)
    pytest.skip(f"{what}; {SETUP_HINT}")


def require_root(why: str = "network namespaces") -> None:
    if os.geteuid() != 0:
        missing(f"not root (needed for {why})")


def require_tools(*tools: str) -> None:
    gone = [t for t in tools if shutil.which(t) is None]
    if gone:
        missing(f"not installed: {', '.join(gone)}")


def require_module(name: str) -> ModuleType:
    """`importlib.import_module(name)`, or missing() if it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"cannot import {name} ({e})")


def require_bcc() -> None:
    """bcc comes from Debian's python3-bpfcc, importable only from /usr/bin/python3
    (the venv has --system-site-packages); the PyPI package named bcc is unrelated."""
    try:
        import bcc  # noqa: F401
    except Exception as e:  # bcc raises more than ImportError when libbcc is broken
        missing(f"cannot import bcc (python3-bpfcc): {e}")


def check_markers(item: pytest.Item) -> None:
    """`netns` needs root; `bpf` needs root and bcc (pyproject.toml's markers)."""
    bpf = item.get_closest_marker("bpf") is not None
    if bpf or item.get_closest_marker("netns") is not None:
        require_root("network namespaces and BPF" if bpf else "network namespaces")
    if bpf:
        require_bcc()
