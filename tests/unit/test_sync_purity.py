"""The pure sync modules import no I/O, clock or randomness (STYLE.md 3.2), import
nothing outside sync/ but the lease model and codec, and import without asyncio."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SYNC = Path(__file__).resolve().parents[2] / "appliance" / "sync"
PURE = ["frames.py", "session.py", "backlog.py", "changelog.py", "merge.py"]
FORBIDDEN = {"socket", "asyncio", "select", "selectors", "time", "os", "pathlib",
             "subprocess", "threading", "random", "secrets", "fcntl"}
ALLOWED_APPLIANCE = {"appliance.leases.model", "appliance.leases.codec"}


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("name", PURE)
def test_pure_sync_module(name: str) -> None:
    mods = _imports(SYNC / name)
    assert not {m for m in mods if m.split(".")[0] in FORBIDDEN}
    foreign = {m for m in mods if m.startswith("appliance.")
               and not m.startswith("appliance.sync.") and m not in ALLOWED_APPLIANCE}
    assert not foreign, f"{name} imports {sorted(foreign)}"
    assert ast.get_docstring(ast.parse((SYNC / name).read_text()))


def test_pure_modules_load_without_asyncio_or_sockets() -> None:
    code = ("import sys; import appliance.sync.session, appliance.sync.merge, "
            "appliance.sync.backlog; "
            "bad = {'asyncio', 'socket', 'selectors'} & set(sys.modules); print(sorted(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=SYNC.parents[1])
    assert out.stdout.strip() == "[]"
