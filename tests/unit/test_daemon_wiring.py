"""Pure helpers of the composition root (appliance/daemon.py): the pair policy's layout
and the datapath's group indexes from a config, and the sync NOTICEs for many groups."""

from __future__ import annotations

from appliance import daemon
from appliance.config.tree import load
from appliance.pair.policy import STANDALONE
from appliance.testing.trees import interfaces_tree


def test_layout_binds_each_groups_interfaces_and_the_unbound_ones_to_standalone(tmp_path):
    cfg = load(interfaces_tree(tmp_path, interfaces={
        "eth1.100": [("ga", "192.0.2.1/25")], "eth1.200": [("gb", "192.0.2.129/25")],
        "eth1.300": [("ga", "198.51.100.1/24"), ("gb", "198.51.100.254/24")],
        "eth1.400": []}, groups={"ga": {"vrid": "1"}, "gb": {"vrid": "2"}},
        pools={"a": ("192.0.2.0/25", "192.0.2.100-192.0.2.120"),
               "b": ("192.0.2.128/25", "192.0.2.200-192.0.2.220"),
               "c": ("198.51.100.0/24", "198.51.100.100-198.51.100.199")}))
    layout = daemon._layout(cfg)
    assert dict(layout.groups) == {"ga": ("eth1.100", "eth1.300"),
                                   "gb": ("eth1.200", "eth1.300"), STANDALONE: ("eth1.400",)}
    assert daemon._group_names(cfg) == ["ga", "gb", STANDALONE]


def test_a_hand_over_of_many_groups_is_split_into_notices_that_fit():
    groups = [f"g{i:03d}" for i in range(200)]
    chunks = daemon._notice_chunks(groups, "interface eth1.100 down")
    assert all(len(c.encode()) <= daemon.NOTICE_MAX for c in chunks)
    assert [g for c in chunks for g in c.split("|")[0].split(",")] == groups
    assert all(c.endswith("|interface eth1.100 down") for c in chunks)
    assert daemon._notice_chunks(["ga"], "x" * 300) == ["ga|" + "x" * 252]
