"""The dependency rules of docs/architecture.md (STYLE.md 3.2), checked on the source.

Pure modules import no I/O, clock or third-party networking library; `leases` never
imports `dhcp`; `dhcp`, `vrrp` and `sync` never import each other; no product module
imports `appliance.testing`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "appliance"

PURE = [
    "wire/checksum.py", "wire/ether.py", "wire/ipv4.py", "wire/udp.py",
    "dhcp/enums.py", "dhcp/options.py", "dhcp/message.py", "dhcp/server.py", "dhcp/intake.py",
    "leases/model.py", "leases/codec.py", "leases/pool.py", "leases/allocator.py",
    "leases/table.py",
    "sync/frames.py", "sync/session.py", "sync/backlog.py",
    "vrrp/packet.py", "vrrp/timers.py", "vrrp/fsm.py",
    "datapath/layout.py", "datapath/plan.py",
    "config/schema.py", "config/model.py", "role.py", "pair/policy.py",
]
FORBIDDEN_IN_PURE = {
    "socket", "asyncio", "select", "selectors", "time", "os", "pathlib", "subprocess",
    "threading", "bcc", "pyroute2", "sdnotify", "fcntl", "random", "secrets",
}
APART = {"dhcp": {"vrrp", "sync"}, "vrrp": {"dhcp", "sync"}, "sync": {"dhcp", "vrrp"},
         "leases": {"dhcp", "vrrp", "sync", "datapath"}}


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("rel", PURE)
def test_pure_module_has_no_io(rel: str):
    p = ROOT / rel
    if not p.exists():
        pytest.skip(f"{rel} not written yet")
    bad = {m for m in imports(p) if m.split(".")[0] in FORBIDDEN_IN_PURE}
    assert not bad, f"pure module {rel} imports {sorted(bad)}"


def test_packages_stay_apart_and_product_never_imports_testing():
    problems = []
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        pkg = rel.parts[0] if len(rel.parts) > 1 else ""
        if pkg == "testing":
            continue
        for m in imports(p):
            parts = m.split(".")
            if parts[0] != "appliance" or len(parts) < 2:
                continue
            if parts[1] == "testing":
                problems.append(f"{rel} imports {m}")
            if parts[1] in APART.get(pkg, set()):
                problems.append(f"{rel} imports {m}")
    assert not problems, "\n".join(problems)


def test_only_the_compiler_imports_bcc_and_nothing_imports_pyroute2():
    """bcc (LLVM) lives in the short-lived compiler child; netlink is vrrp/rtnl.py.
    Either in the daemon would cost tens of MB of RSS (docs/failover.md)."""
    bad = []
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT).as_posix()
        if rel.startswith("testing/"):
            continue
        roots = {m.split(".")[0] for m in imports(p)}
        if "pyroute2" in roots or ("bcc" in roots and rel != "datapath/compiler.py"):
            bad.append(rel)
    assert not bad, bad
