"""The runtime tree's interfaces/ and groups/ (appliance/runtime/view.py): which file holds
what, and what `status` prints from a tree it read, 200 VLANs on a line each."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from appliance.runtime import view
from appliance.runtime.view import GroupFacts, InterfaceFacts


def g(name: str, serving: bool, **kw: object) -> GroupFacts:
    base = dict(state="active" if serving else "backup",
                vrrp_state="master" if serving else "backup", priority=200,
                configured_priority=200, master="192.0.2.2", vrid=1, interface="eth1.100",
                interfaces=100)
    base.update(kw)
    return GroupFacts(name, serving, **base)  # type: ignore[arg-type]


def test_roles_per_interface_follow_the_groups_served():
    assert view.interface_role(("ga",), frozenset({"ga"})) == "active"
    assert view.interface_role(("ga",), frozenset({"gb"})) == "standby"
    assert view.interface_role(("ga", "gb"), frozenset({"gb"})) == "shared"
    assert view.interface_role(("ga", "gb"), frozenset({"ga", "gb"})) == "active"
    assert view.interface_role((), frozenset({""})) == "active"  # standalone
    assert view.interface_role((), frozenset()) == "standby"


def test_values_name_every_file():
    vals = view.values(
        [g("ga", True, takeovers=2, last_transition={"state": "master"}), g("gb", False)],
        [InterfaceFacts("eth1.100", ("ga",), ("192.0.2.1",), 7),
         InterfaceFacts("eth1.300", ("ga", "gb"), ("198.51.100.1", "198.51.100.254"), 3),
         InterfaceFacts("eth9", (), ("203.0.113.2",), 0)],
        frozenset({"ga", ""}))
    assert vals["groups/ga/role"] == "active" and vals["groups/gb/role"] == "standby"
    assert vals["groups/ga/takeovers"] == 2
    assert vals["groups/ga/last_transition"] == '{"state": "master"}'
    assert "groups/gb/last_transition" not in vals
    assert vals["interfaces/eth1.100/role"] == "active"
    assert vals["interfaces/eth1.300/role"] == "shared"
    assert vals["interfaces/eth1.300/server_id"] == "198.51.100.1\n198.51.100.254"
    assert vals["interfaces/eth9/role"] == "active" and vals["interfaces/eth9/groups"] == ""
    assert vals["interfaces/eth1.100/leases"] == 7


def test_pools_belong_to_the_interfaces_on_their_subnet():
    def n(s: str) -> tuple[int, int]:
        net = IPv4Network(s)
        return int(net.network_address), int(net.netmask)

    pools = [("v100", *n("192.0.2.0/25")), ("v300", *n("198.51.100.0/24")),
             ("relayed", *n("203.0.113.128/25"))]
    got = view.pools_by_interface({
        "eth1.100": [int(IPv4Address("192.0.2.2")), int(IPv4Address("192.0.2.1"))],
        "eth1.300": [int(IPv4Address("198.51.100.254"))],
        "eth1.400": [int(IPv4Address("203.0.113.2"))]}, pools)
    assert got == {"eth1.100": ("v100",), "eth1.300": ("v300",), "eth1.400": ()}


def tree(n: int) -> dict[str, str]:
    out = {}
    for i in range(n):
        ifname, grp = f"eth1.{100 + i}", "g00" if i < n // 2 else "g01"
        out[f"interfaces/{ifname}/role"] = "active" if grp == "g00" else "standby"
        out[f"interfaces/{ifname}/groups"] = grp
        out[f"interfaces/{ifname}/server_id"] = f"198.18.{i}.1"
        out[f"interfaces/{ifname}/leases"] = str(i % 7)
        out[f"interfaces/{ifname}/stats/received"] = str(4 * i)
        out[f"interfaces/{ifname}/stats/sent"] = str(4 * i)
    for grp, role in (("g00", "active"), ("g01", "standby")):
        out |= {f"groups/{grp}/role": role, f"groups/{grp}/vrrp_state":
                "master" if role == "active" else "backup", f"groups/{grp}/vrid": "1",
                f"groups/{grp}/priority": "1", f"groups/{grp}/configured_priority": "200",
                f"groups/{grp}/master": "198.18.0.2", f"groups/{grp}/interfaces": "100",
                f"groups/{grp}/takeovers": "0"}
    out["stats/ack"] = "1"
    return out


def test_the_table_has_a_line_per_interface_in_natural_order_then_per_group():
    lines = view.table(tree(200))
    assert len(lines) == 1 + 200 + 1 + 2
    assert lines[1].split()[:2] == ["eth1.100", "active"]
    assert lines[200].split() == ["eth1.299", "standby", "g01", "198.18.199.1", "3", "796",
                                  "796"]
    names = [x.split()[0] for x in lines[1:201]]
    assert names == [f"eth1.{100 + i}" for i in range(200)]  # 99 < 100 < 299
    assert lines[-1].split()[:5] == ["g01", "standby", "backup", "1", "1/200"]
    assert max(len(x) for x in lines) <= 100
    assert view.table({"eth1.9": "x", "stats/ack": "1"}) == []


def test_the_table_can_be_cut_and_the_summary_counts_roles():
    lines = view.table(tree(200), most=10)
    assert len(lines) == 1 + 10 + 1 + 1 + 2
    assert lines[11] == "  ... 190 more: 90 active, 100 standby"
    assert view.summary(tree(200)) == \
        "200 interfaces: 100 active, 100 standby; 2 groups: 1 active, 1 standby"
