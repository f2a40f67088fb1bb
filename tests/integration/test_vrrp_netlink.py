"""VRRP's netlink adapter against the real kernel, in a namespace of its own.

What `ip` shows is the oracle: the interface index and MAC, the addresses a VIP
add/remove leaves, the VMAC macvlan (kind, mode, address, up), and the link events
a cable pull produces. Errors that mean "already done" are not errors.
"""

from __future__ import annotations

import asyncio
import errno
import json
from ipaddress import IPv4Address, IPv4Interface

import pytest

from appliance.testing.netns import Topology, inside
from appliance.vrrp.netlink import LinkMonitor, Netlink, NetlinkFailure

pytestmark = [pytest.mark.netns]  # needs root (tests/conftest.py)

VIP = IPv4Interface("192.0.2.254/24")


@pytest.fixture
def box():
    with Topology("nl") as t:
        a, b = t.host("a"), t.host("b")
        t.veth(a, "eth1", b, "eth1")
        t.addr(a, "eth1", "192.0.2.1/24")
        t.addr(b, "eth1", "192.0.2.2/24")
        yield t, a


def ip_json(t: Topology, ns, *args: str) -> list[dict]:
    return json.loads(t.run(ns, ["ip", "-j", *args]).stdout or "[]")


def addresses(t: Topology, ns) -> set[str]:
    rows = ip_json(t, ns, "-4", "addr", "show", "dev", "eth1")
    return {f"{a['local']}/{a['prefixlen']}" for r in rows for a in r["addr_info"]}


def test_links_and_addresses(box):
    t, ns = box
    link = ip_json(t, ns, "link", "show", "eth1")[0]
    with inside(ns):
        nl = Netlink()
    try:
        index = nl.link_index("eth1")
        assert index == link["ifindex"]
        assert nl.link_index("nosuch0") is None
        assert nl.link_mac(index).hex(":") == link["address"]
        assert nl.link_up("eth1") and not nl.link_up("nosuch0")

        nl.add_addresses(index, [VIP])
        nl.add_addresses(index, [VIP])  # already there: not an error
        assert addresses(t, ns) == {"192.0.2.1/24", "192.0.2.254/24"}
        assert nl.primary_address(index, [VIP.ip]) == IPv4Address("192.0.2.1")
        assert nl.remove_stale(index, [VIP]) == [VIP]
        assert addresses(t, ns) == {"192.0.2.1/24"}
        nl.del_addresses(index, [VIP])  # not there: not an error
        assert nl.remove_stale(index, [VIP]) == []

        t.link(ns, "eth1", False)
        assert not nl.link_up("eth1")
        with pytest.raises(NetlinkFailure, match="cannot add"):
            nl.add_addresses(12345, [VIP])  # no such link
    finally:
        nl.close()


def test_many_addresses_in_few_calls_and_stale_ones_across_links(box):
    """change_addresses (batched requests, 64 to a datagram) against what `ip` shows:
    150 VIPs over three links in one call, "already there" and "not there" are not
    failures, a missing link is one, named; remove_stale_on finds them with one dump,
    whatever their prefix."""
    t, ns = box
    for name in ("v1", "v2"):
        t.run(ns, ["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"])
    with inside(ns):
        nl = Netlink()
    try:
        links = [nl.link_index(n) for n in ("eth1", "v1", "v2")]
        pairs = [(links[i % 3], IPv4Interface(f"10.{i % 3}.{i}.1/24")) for i in range(150)]
        assert nl.change_addresses(True, pairs) == []
        assert nl.change_addresses(True, pairs[:70]) == []  # already there
        shown = {name: addresses_of(t, ns, name) for name in ("eth1", "v1", "v2")}
        assert len(shown["v1"]) == 50 and "10.1.1.1/24" in shown["v1"]
        assert len(shown["eth1"]) == 51  # and its own 192.0.2.1
        failed = nl.change_addresses(True, [(99999, VIP), *pairs[:2]])
        assert [(i, v, e.errno) for i, v, e in failed] == [(99999, VIP, errno.ENODEV)]

        wanted = {links[1]: [IPv4Interface("10.1.1.1/16")], links[2]: [pairs[2][1]],
                  links[0]: [IPv4Interface("203.0.113.9/24")]}
        assert nl.remove_stale_on(wanted) == [(links[1], IPv4Interface("10.1.1.1/24")),
                                              (links[2], pairs[2][1])]
        assert "10.1.1.1/24" not in addresses_of(t, ns, "v1")
        assert nl.change_addresses(False, pairs) == []
        assert nl.change_addresses(False, pairs) == []  # not there
        assert addresses_of(t, ns, "eth1") == {"192.0.2.1/24"}
        assert addresses_of(t, ns, "v1") == set()
    finally:
        nl.close()


def addresses_of(t: Topology, ns, dev: str) -> set[str]:
    rows = ip_json(t, ns, "-4", "addr", "show", "dev", dev)
    return {f"{a['local']}/{a['prefixlen']}" for r in rows for a in r["addr_info"]}


def test_vmac_macvlan(box):
    t, ns = box
    with inside(ns):
        nl = Netlink()
    try:
        parent = nl.link_index("eth1")
        index = nl.create_vmac(parent, 10)
        again = nl.create_vmac(parent, 10)  # a stale one is replaced
        assert again != index
        link = ip_json(t, ns, "-d", "link", "show", "vrrp.10")[0]
        assert link["ifindex"] == again and link["address"] == "00:00:5e:00:01:0a"
        assert link["linkinfo"]["info_kind"] == "macvlan"
        assert link["linkinfo"]["info_data"]["mode"] == "private"
        assert "UP" in link["flags"] and link["link"] == "eth1"
        nl.delete_link(again)
        nl.delete_link(again)  # gone already: not an error
        assert t.run(ns, ["ip", "link", "show", "vrrp.10"], check=False).returncode != 0
    finally:
        nl.close()


def test_link_events(box):
    t, ns = box
    seen: list[tuple[str, bool]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with inside(ns):
            nl = Netlink()
            mon = LinkMonitor(["eth1"], lambda n, up: seen.append((n, up)), loop)
            assert mon.start(nl.link_up) == {"eth1": True}
        try:
            for up in (False, True, False):
                t.link(ns, "eth1", up)
                deadline = loop.time() + 5
                while (not seen or seen[-1] != ("eth1", up)) and loop.time() < deadline:
                    await asyncio.sleep(0.005)
            t.run(ns, ["ip", "link", "set", "eth1", "mtu", "1400"])  # not a state change
            await asyncio.sleep(0.1)
        finally:
            mon.close()
            nl.close()

    asyncio.run(main())
    assert seen == [("eth1", False), ("eth1", True), ("eth1", False)]
