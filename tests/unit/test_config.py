"""The config tree: every bad value is refused naming the file, the value and the rule."""

from __future__ import annotations

import os
from ipaddress import IPv4Address

import pytest

from appliance.cli import main
from appliance.config.model import diff
from appliance.config.tree import ConfigError, load, write_tree
from appliance.testing.trees import standalone_tree

PAIR = {
    "vrrp/vrid": "10", "vrrp/priority": "120", "vrrp/advert_interval_ms": "100",
    "vrrp/virtual_ip": "192.0.2.1/24", "vrrp/track/eth1": "30",
    "sync/interface": "eth2", "sync/local": "198.51.100.1:6470",
    "sync/peer": "198.51.100.2:6470", "sync/key": "0123456789abcdef0123",
}


def test_standalone_tree_loads(tmp_path):
    cfg = load(standalone_tree(tmp_path))
    assert cfg.standalone and cfg.client_interface == "eth1"
    assert cfg.pools[0].ranges[0][0] == IPv4Address("192.0.2.100")
    assert cfg.datapath.mode == "off" and cfg.datapath.rate_limit_pps == 50


def test_pair_tree_loads(tmp_path):
    cfg = load(standalone_tree(tmp_path, extra=PAIR))
    assert cfg.vrrp.vrid == 10 and cfg.vrrp.track == (("eth1", 30),)
    assert cfg.sync.peer == (IPv4Address("198.51.100.2"), 6470) and cfg.sync.mode == "sync"
    assert "0123" not in repr(cfg.sync)  # the secret never shows in logs


BAD = [
    ("vrrp/vrid", "300", "must be an integer in 1..255"),
    ("vrrp/advert_interval_ms", "105", "multiple of 10"),
    ("vrrp/preempt", "yes", "must be 0 or 1"),
    ("vrrp/virtual_ip", "192.0.2.1", "address with prefix"),
    ("sync/local", "198.51.100.1", "ADDRESS:PORT"),
    ("sync/mode", "fast", "one of sync | async"),
    ("sync/key", "short", "at least 16 characters"),
    ("pools/lan/range", "192.0.2.200-192.0.2.100", "above the last"),
    ("pools/lan/range", "198.51.100.1-198.51.100.5", "inside subnet"),
    ("pools/lan/subnet", "192.0.2.1/24", "no host bits"),
    ("pools/lan/lease_time", "abc", "integer"),
    ("pools/lan/dns", "8.8.8", "not an IPv4 address"),
    ("pools/lan/reservations/02:00:00:00:00:01", "198.51.100.9", "outside"),
    ("pools/lan/reservations/not-a-mac", "192.0.2.9", "not a MAC address"),
    ("datapath/mode", "ebpf", "one of xdp | off"),
    ("client/interface", "this-name-is-too-long", "interface name"),
    ("vrrp/track/eth1", "0", "1..254"),
    ("node/typo", "x", "unknown setting"),
]


@pytest.mark.parametrize("rel,value,rule", BAD)
def test_bad_value_names_file_value_and_rule(tmp_path, rel, value, rule):
    etc = standalone_tree(tmp_path, extra=PAIR)
    write_tree(etc, {rel: value})
    with pytest.raises(ConfigError) as e:
        load(etc)
    msgs = [str(p) for p in e.value.problems]
    assert any(str(etc / rel) in m and rule in m for m in msgs), msgs
    if "not-a-mac" not in rel and "typo" not in rel:
        assert any(value in m for m in msgs), msgs


def test_all_problems_reported_at_once(tmp_path):
    etc = standalone_tree(tmp_path)
    write_tree(etc, {"pools/lan/lease_time": "x", "datapath/mode": "y"})
    with pytest.raises(ConfigError) as e:
        load(etc)
    assert len(e.value.problems) == 2


def test_missing_required_and_key_mode(tmp_path):
    etc = standalone_tree(tmp_path, extra=PAIR)
    os.unlink(etc / "client/interface")
    os.chmod(etc / "sync/key", 0o644)
    with pytest.raises(ConfigError) as e:
        load(etc)
    text = str(e.value)
    assert "client/interface: missing" in text and "chmod 600" in text


def test_overlapping_pools_refused(tmp_path):
    etc = standalone_tree(tmp_path, extra={"pools/other/subnet": "192.0.2.0/25",
                                           "pools/other/range": "192.0.2.100-192.0.2.110"})
    with pytest.raises(ConfigError, match="overlaps"):
        load(etc)


def test_diff_names_changed_settings(tmp_path):
    a = load(standalone_tree(tmp_path / "a", extra=PAIR))
    b_etc = standalone_tree(tmp_path / "b", extra=PAIR)
    write_tree(b_etc, {"vrrp/priority": "90", "pools/lan/lease_time": "60",
                       "node/state_dir": str(tmp_path / "a/state"),
                       "node/run_dir": str(tmp_path / "a/run")})
    assert diff(a, load(b_etc)) == ["pools/lan/lease_time", "vrrp/priority"]


def test_check_config_command(tmp_path, capsys):
    etc = standalone_tree(tmp_path)
    assert main(["check-config", str(etc)]) == 0
    assert "ok" in capsys.readouterr().out
    write_tree(etc, {"pools/lan/lease_time": "5"})
    with pytest.raises(SystemExit) as e:
        main(["check-config", "--config", str(etc)])
    assert e.value.code == 2
    assert "lease_time: '5': must be an integer in 10..31536000" in capsys.readouterr().err


def test_docs_config_md_matches_the_schema():
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("gen", root / "scripts/gen_config_doc.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (root / "docs/config.md").read_text() == gen.render(), \
        "docs/config.md is stale: run .venv/bin/python scripts/gen_config_doc.py"


def test_readme_package_leftovers_and_empty_optional_folders_are_not_settings(tmp_path):
    etc = standalone_tree(tmp_path)
    (etc / "README").write_text("how this tree works\n")
    (etc / "pools/lan/lease_time.dpkg-dist").write_text("600\n")
    (etc / "pools/lan/router.ucf-old").write_text("192.0.2.9\n")
    (etc / "vrrp").mkdir()  # left empty by an upgrade that kept the operator's removal
    (etc / "sync").mkdir()
    (etc / "sync/README.sync").write_text("the sync link\n")
    cfg = load(etc)
    assert cfg.vrrp is None and cfg.sync is None and cfg.pools[0].lease_time == 3600
