"""VRRP's netlink adapter against the real kernel, in a namespace of its own.

What `ip` shows is the oracle: the interface index and MAC, the addresses a VIP
add/remove leaves, the VMAC macvlan (kind, mode, address, up), and the link events
a cable pull produces. Errors that mean "already done" are not errors.
"""

from __future__ import annotations

import asyncio
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
