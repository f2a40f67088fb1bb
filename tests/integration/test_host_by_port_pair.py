"""One address per subscriber port, across a failover (issue 13): a host reserved by
Option 82 circuit-id (hosts/<h>/circuit_id) behind ISC `dhcrelay -a` gets its address
from A, keeps it through a kill -9 of A (B renews it: hosts are configuration, the same on
both devices, and the binding was replicated), and a device swapped in on that port after
the failover (another MAC) gets the same address from B.

    lan bridge ─┬─ a      eth1 192.0.2.2  prio 120 ══ sync ══ b  eth1 192.0.2.3  prio 100
                └─ relay  up0 192.0.2.4, dhcrelay -a ── rlan (down0 203.0.113.1) ── "sub"
"""

from __future__ import annotations

import pytest

from appliance.testing.netns import Topology
from appliance.testing.require import require_tools
from lab.clients import Udhcpc
from lab.hapair import RELAY_DOWN_IP, HaPair

pytestmark = [pytest.mark.netns, pytest.mark.slow]

PORT_IP = "203.0.113.50"  # outside the relayed pool's dynamic range (.100-.199)


def test_port_host_keeps_its_address_through_a_failover(tmp_path):
    require_tools("dhcrelay", "udhcpc")
    with Topology("hp") as t:
        ha = HaPair(t, tmp_path, advert_ms=100, relay=True, lease_time=600, values={
            "hosts/port7/circuit_id": "down0", "hosts/port7/relay": RELAY_DOWN_IP,
            "hosts/port7/address": PORT_IP})
        ha.start()
        ns, _ = ha.relayed_client("sub")

        def plug(mac: str, n: int) -> Udhcpc:
            t.run(ns, ["ip", "link", "set", "eth0", "down"])
            t.run(ns, ["ip", "link", "set", "eth0", "address", mac])
            t.run(ns, ["ip", "link", "set", "eth0", "up"])
            return Udhcpc(t, ns, "eth0", tmp_path / f"udhcpc{n}")

        first, second = "02:7e:00:00:07:01", "02:7e:00:00:07:02"
        c = plug(first, 0)
        with c.start():
            assert c.wait_event("bound", timeout=40)[1] == PORT_IP
            ha.b.wait(lambda: ha.b.bindings().get(first) == PORT_IP,
                      "B holds the port's binding")
            ha.a.kill9()
            ha.b.wait(lambda: ha.b.is_("active", "master"), "B master after kill -9", 30)
            served = ha.b.stat("ack")
        c.wait_exit()
        # The device's next start through the relay is answered by B: the same address.
        c = plug(first, 1)
        with c.start():
            assert c.wait_event("bound", timeout=40)[1] == PORT_IP
        c.wait_exit()
        ha.b.wait(lambda: ha.b.stat("ack") > served, "B counts the ACK after the failover", 5)
        # Another device on that port, after the failover: the port's address, from B.
        c = plug(second, 2)
        with c.start():
            assert c.wait_event("bound", timeout=40)[1] == PORT_IP
        c.wait_exit()
        on_b = ha.b.bindings()
        assert on_b.get(second) == PORT_IP and first not in on_b, on_b
