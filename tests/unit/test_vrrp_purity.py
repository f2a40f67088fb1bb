"""The pure VRRP modules (STYLE.md §3.2) import no I/O: checked on their source, and by
importing them with pyroute2 made unimportable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

VRRP = Path(__file__).resolve().parents[2] / "appliance" / "vrrp"
PURE = ["packet.py", "timers.py", "fsm.py"]
FORBIDDEN = {"socket", "asyncio", "select", "selectors", "time", "os", "pathlib",
             "subprocess", "threading", "bcc", "pyroute2", "sdnotify", "scapy"}
# pure arrows: own package's pure modules and wire (STYLE.md §3.2)
ALLOWED_APPLIANCE = {"appliance.vrrp.packet", "appliance.vrrp.timers", "appliance.vrrp.fsm",
                     "appliance.wire"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("name", PURE)
def test_pure_module_imports(name: str) -> None:
    mods = _imports(VRRP / name)
    assert not {m.split(".")[0] for m in mods} & FORBIDDEN, mods
    for m in mods:
        if m.startswith("appliance"):
            assert any(m == a or m.startswith(a + ".") for a in ALLOWED_APPLIANCE), m


@pytest.mark.parametrize("name", PURE)
def test_pure_module_opens_with_a_docstring(name: str) -> None:
    doc = ast.get_docstring(ast.parse((VRRP / name).read_text()))
    assert doc and "RFC 5798" in doc.splitlines()[0]


def test_pure_modules_import_without_pyroute2() -> None:
    code = ("import sys; sys.modules['pyroute2'] = None; sys.modules['socket'] = None; "
            "import appliance.vrrp.fsm, appliance.vrrp.packet, appliance.vrrp.timers")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=VRRP.parents[1])
    assert r.returncode == 0, r.stderr
