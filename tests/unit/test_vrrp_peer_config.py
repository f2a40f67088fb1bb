"""vrrp/peer in the config tree: parsed into VrrpConfig.peer, optional, refused when it
cannot be the other device, and kept out of the sync drift summary (each device names
the other, so the two values always differ)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.config.model import diff
from appliance.config.tree import ConfigError, load
from appliance.sync.transport import config_summary
from appliance.testing.trees import standalone_tree

VRRP = {"vrrp/vrid": "51", "vrrp/priority": "150", "vrrp/virtual_ip": "192.0.2.100/24"}


def tree(tmp_path: Path, **extra: str) -> Path:
    return standalone_tree(tmp_path, extra={**VRRP, **extra})


def test_absent_means_any_source(tmp_path: Path) -> None:
    cfg = load(tree(tmp_path))
    assert cfg.vrrp is not None and cfg.vrrp.peer is None


def test_peer_is_parsed(tmp_path: Path) -> None:
    cfg = load(tree(tmp_path, **{"vrrp/peer": "192.0.2.11\n"}))
    assert cfg.vrrp is not None and cfg.vrrp.peer == IPv4Address("192.0.2.11")


@pytest.mark.parametrize("value,rule", [
    ("224.0.0.18", "not a unicast address"),
    ("0.0.0.0", "not a unicast address"),
    ("127.0.0.1", "not a unicast address"),
    ("255.255.255.255", "not a unicast address"),
    ("192.0.2.11\n192.0.2.12", "exactly one value"),
    ("peer-b", "not an IPv4 address"),
    ("", "exactly one value"),
    ("192.0.2.100", "not a virtual IP"),
])
def test_bad_peer_is_an_error_naming_the_file(tmp_path: Path, value: str, rule: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tree(tmp_path, **{"vrrp/peer": value}))
    assert any(p.path.endswith("vrrp/peer") and rule in p.rule for p in e.value.problems), \
        e.value.problems


def test_not_in_the_drift_summary_but_in_the_reload_diff(tmp_path: Path) -> None:
    a = load(tree(tmp_path / "a", **{"vrrp/peer": "192.0.2.11"}))
    b = load(tree(tmp_path / "b", **{"vrrp/peer": "192.0.2.10"}))
    assert not any(path == "vrrp/peer" for path, _ in config_summary(a))
    assert config_summary(a) == config_summary(replace(b, node=a.node))
    # a reload that changes it is seen (the daemon restarts VRRP with the new filter)
    assert diff(a, replace(b, node=a.node)) == ["vrrp/peer"]
    # an IPv4Address field is compared as a value (diff used to take it for a dataclass)
    no_filter = replace(a.groups[0], vrrp=replace(a.vrrp, peer=None))
    assert diff(a, replace(a, groups=(no_filter,))) == ["vrrp/peer"]
