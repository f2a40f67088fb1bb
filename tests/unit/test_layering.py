"""The dependency rules of docs/architecture.md (STYLE.md 3.2).

The rules themselves are import-linter contracts in pyproject.toml ([tool.importlinter],
each with its reason; `lint-imports` in `make lint`). This file checks that they hold,
that each of them catches what it is for (a copy of the package with one violation per
contract), that every module is placed in the pure or the adapter list, and what
import-linter cannot see: that the pure modules import with the I/O libraries absent
(import-linter does not follow imports inside the standard library) and open with a
docstring.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = {c["id"]: c for c in
             tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
             ["contracts"]}
PURE = CONTRACTS["pure"]["source_modules"]
ADAPTERS = CONTRACTS["adapters"]["source_modules"]
# The composition root, the front end, and test support are neither pure nor adapters.
NEITHER = {"appliance", "appliance.__main__", "appliance.daemon", "appliance.cli"}


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"),
                           "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_import_contracts_hold():
    r = lint_imports(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in r.stdout, r.stdout


# One violation per contract, in a copy of the package: each contract must break.
VIOLATIONS = {
    "pure": ("vrrp/fsm.py", "import time"),  # the standard library is forbidden too
    "adapters": ("runtime/tree.py", "import lab.hapair"),
    "layers": ("dhcp/server.py", "import appliance.sync.frames"),
    "sync-core": ("sync/session.py", "import appliance.config.model"),
    "vrrp-core": ("vrrp/timers.py", "import appliance.ratelog"),
    "testing": ("leases/table.py", "import appliance.testing.trees"),
    "third-party": ("daemon.py", "import pyroute2"),
}


def test_every_contract_catches_its_violation(tmp_path):
    assert set(VIOLATIONS) == set(CONTRACTS), "a contract without a violation to catch"
    shutil.copytree(REPO / "appliance", tmp_path / "appliance",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for rel, line in VIOLATIONS.values():
        with open(tmp_path / "appliance" / rel, "a") as f:
            f.write(f"\n{line}  # noqa\n")
    r = lint_imports(tmp_path, pythonpath=tmp_path)
    out = " ".join(r.stdout.split())  # import-linter wraps long names
    assert r.returncode == 1, r.stdout + r.stderr
    for cid, contract in CONTRACTS.items():
        assert f"{contract['name']} BROKEN" in out, f"{cid} did not catch {VIOLATIONS[cid]}"


def test_a_new_top_level_module_must_be_given_a_layer(tmp_path):
    shutil.copytree(REPO / "appliance", tmp_path / "appliance",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "appliance" / "newthing.py").write_text('"""A new module."""\n')
    r = lint_imports(tmp_path, pythonpath=tmp_path)
    assert r.returncode == 1 and "appliance.newthing" in r.stdout, r.stdout


def _modules() -> dict[str, Path]:
    """Every product module that holds code (an __init__ with only a docstring does
    not), appliance.testing excepted."""
    out = {}
    for p in sorted((REPO / "appliance").rglob("*.py")):
        parts = p.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
            body = ast.parse(p.read_text()).body
            if all(isinstance(n, ast.Expr | ast.ImportFrom) and
                   (isinstance(n, ast.Expr) or n.module == "__future__") for n in body):
                continue
        name = ".".join(parts)
        if name == "appliance.testing" or name.startswith("appliance.testing."):
            continue
        out[name] = p
    return out


def _covered(name: str, sources: list[str], as_packages: bool) -> bool:
    return any(name == s or (as_packages and name.startswith(s + ".")) for s in sources)


def test_every_module_is_pure_or_an_adapter():
    problems = []
    for name in _modules():
        if name in NEITHER:
            continue
        pure = _covered(name, PURE, CONTRACTS["pure"].get("as_packages", True))
        adapter = _covered(name, ADAPTERS, CONTRACTS["adapters"].get("as_packages", True))
        if pure == adapter:
            problems.append(
                f"{name} is {'in both lists' if pure else 'in neither list'}: put it in "
                "pyproject.toml [tool.importlinter]'s 'pure' contract (no I/O, no clock: "
                "events and `now` in, values and actions out) or in its 'adapters' "
                "contract (touches a socket, a file, the kernel or the clock), as "
                "docs/architecture.md marks it [P] or [A]")
    assert not problems, "\n".join(problems)


def test_the_contract_lists_name_existing_modules():
    # import-linter refuses a missing source module too; this says which and where.
    modules = set(_modules())
    listed = [m for m in PURE + ADAPTERS if m not in modules and
              not any(x.startswith(m + ".") for x in modules)]
    assert not listed, f"pyproject.toml lists modules that do not exist: {listed}"


# -- what import-linter cannot see ---------------------------------------------------------
IO_LIBRARIES = ("socket", "asyncio", "selectors", "select", "ssl", "subprocess", "bcc",
                "pyroute2", "sdnotify", "scapy")


def test_pure_modules_import_with_the_io_libraries_absent():
    """import-linter stops at the standard library's door: a pure module that imports
    a harmless-looking stdlib module which itself pulls in socket or asyncio passes the
    contracts. Here every I/O library is made unimportable (sys.modules[name] = None)
    and every pure module must still import: with bcc and pyroute2 absent, as STYLE.md
    3.2 asks, and without a socket or an event loop."""
    pure = sorted(m for m in _modules() if _covered(m, PURE, True))
    code = "\n".join([
        "import importlib, sys",
        *(f"sys.modules[{lib!r}] = None" for lib in IO_LIBRARIES),
        "bad = []",
        f"for m in {pure!r}:",
        "    try:",
        "        importlib.import_module(m)",
        "    except ImportError as e:",
        "        bad.append(f'{m}: {e}')",
        "print('\\n'.join(bad))",
    ])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"pure modules that need an I/O library:\n{r.stdout}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_opens_with_a_docstring(name: str):
    path = _modules()[name]
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc, f"{path.relative_to(REPO)} does not say what it contains (STYLE.md 3.6)"
    if name in ("appliance.vrrp.packet", "appliance.vrrp.timers", "appliance.vrrp.fsm"):
        assert "RFC 5798" in doc.splitlines()[0], "the VRRP core cites its RFC first"
