"""The configs the load-sharing lab and benches write: Kea HA load-balancing accepted by
kea-dhcp4 itself, and our pair's trees in every shape accepted by check-config."""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.testing.require import require_tools
from lab.kea import kea_ha_lb_config, split_pool
from lab.vlans import SHAPES, Device, masters, vlans

CLI = str(Path(__file__).resolve().parents[2] / ".venv/bin/dhcp-hotbackup")


@given(st.integers(0, 2**32 - 2), st.integers(1, 2**16))
def test_split_pool_halves_cover_the_pool_once(lo: int, size: int) -> None:
    hi = min(lo + size, 2**32 - 1)
    a, b = split_pool(f"{IPv4Address(lo)} - {IPv4Address(hi)}")
    a_lo, a_hi = (int(IPv4Address(x)) for x in a.split(" - "))
    b_lo, b_hi = (int(IPv4Address(x)) for x in b.split(" - "))
    assert (a_lo, b_hi) == (lo, hi)
    assert a_hi + 1 == b_lo  # contiguous, disjoint
    assert abs((a_hi - a_lo) - (b_hi - b_lo)) <= 1  # halves


def test_kea_accepts_the_load_balancing_config(tmp_path: Path) -> None:
    require_tools("kea-dhcp4")
    subnets = [(str(v.net), v.lan_range.replace("-", " - ")) for v in vlans(2)]
    for name in ("server1", "server2"):
        # kea-dhcp4 -t checks that the interfaces exist: this box's loopback stands in.
        cfg = kea_ha_lb_config(tmp_path / name, ["lo"], subnets,
                               this=name, server1_url="http://198.51.100.1:8000/",
                               server2_url="http://198.51.100.2:8000/")
        pools = [p for s in cfg["Dhcp4"]["subnet4"] for p in s["pools"]]
        assert {p["client-class"] for p in pools} == {"HA_server1", "HA_server2"}
        conf = tmp_path / f"{name}.conf"
        conf.write_text(json.dumps(cfg))
        r = subprocess.run(["kea-dhcp4", "-t", str(conf)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("shape", "n"), [*((s, 2) for s in SHAPES), ("halves", 200),
                                          ("vlan", 200)])
def test_pair_trees_pass_check_config(tmp_path: Path, shape: str, n: int) -> None:
    lab = SimpleNamespace(vlans=vlans(n), work=tmp_path)
    groups = masters(shape, lab.vlans)
    for name in ("A", "B"):
        d = Device(lab, name, None, "198.51.100.1", "198.51.100.2")  # type: ignore[arg-type]
        etc = d.write_tree(shape, datapath="xdp")
        r = subprocess.run([CLI, "check-config", "--config", str(etc)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        prio = {g: (etc / "vrrp" / g / "priority").read_text().strip() for g in groups}
        # Each group's intended master has the higher priority on its own tree.
        assert prio == {g: "200" if m == name else "100" for g, m in groups.items()}
