"""appliance/testing/require.py: what a test lacks is a skip on a developer's box and a
failure under CI=true; checked on the functions, and on a real pytest run of a tiny
suite with and without CI=true."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.testing import require


@pytest.mark.parametrize("value,strict", [("true", True), ("TRUE", True), ("1", True),
                                          ("yes", True), ("", False), ("false", False),
                                          ("0", False)])
def test_ci_values(monkeypatch, value, strict):
    monkeypatch.setenv("CI", value)
    assert require.strict() is strict


def test_ci_unset_is_not_strict(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    assert not require.strict()


@pytest.mark.parametrize("call,says", [
    (lambda: require.require_tools("sh", "no-such-tool-dhb"), "not installed: no-such-tool-dhb"),
    (lambda: require.require_module("no_such_module_dhb"), "cannot import no_such_module_dhb"),
    (lambda: require.require_root("namespaces"), "not root (needed for namespaces)"),
    (lambda: require.require_bcc(), "cannot import bcc (python3-bpfcc)"),
    (lambda: require.missing("no kernel headers"), "no kernel headers"),
])
def test_missing_skips_outside_ci_and_fails_under_ci(monkeypatch, call, says):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setitem(sys.modules, "bcc", None)  # import bcc -> ImportError
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=re.escape(says)):
        call()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=re.escape(f"CI=true and {says}")):
        call()


def test_present_things_pass_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    require.require_tools("sh", "ip")
    assert require.require_module("json").dumps([]) == "[]"


SUITE = {
    "conftest.py": """
        import sys

        from appliance.testing.require import check_markers

        sys.modules["bcc"] = None  # this machine's bcc, made unimportable


        def pytest_configure(config):
            config.addinivalue_line("markers", "bpf: needs root and bcc")
            config.addinivalue_line("markers", "netns: needs root")


        def pytest_runtest_setup(item):
            check_markers(item)
    """,
    "test_tiny.py": """
        import pytest

        from appliance.testing.require import require_module, require_tools


        @pytest.fixture(scope="module")
        def compiled():
            raise AssertionError("a fixture ran before the marker check")


        def test_tool():
            require_tools("no-such-tool-dhb")


        def test_module():
            require_module("no_such_module_dhb")


        @pytest.mark.bpf
        def test_bpf(compiled):
            pass


        def test_present():
            require_tools("sh")
    """,
}


def _run(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    for name, text in SUITE.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def test_a_suite_missing_things_skips_without_ci(tmp_path):
    r = _run(tmp_path, None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 3 skipped" in r.stdout, r.stdout
    assert "not installed: no-such-tool-dhb; scripts/setup.sh installs it" in r.stdout


def test_the_same_suite_fails_under_ci(tmp_path):
    r = _run(tmp_path, "true")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "2 failed, 1 passed, 1 error" in r.stdout, r.stdout
    assert "CI=true and not installed: no-such-tool-dhb" in r.stdout
    assert "CI=true and cannot import no_such_module_dhb" in r.stdout
    assert "CI=true and cannot import bcc" in r.stdout  # from the marker, before the fixture
    assert "a fixture ran before the marker check" not in r.stdout
