"""A server namespace and a relay-playing load namespace on one LAN, for load tests.

    lan ── srv (eth1 192.0.2.2/24)
        └─ rel (eth0 192.0.2.3/24 + 198.18.0.1/16, the relay address dhcpload binds)

198.18.0.0/16 (RFC 2544's benchmarking range) holds thousands of clients; the server
gets a route to it through the relay, as a real server has to its relays' subnets.
"""

from __future__ import annotations

from appliance.testing.netns import Netns, Topology

LOAD_NET = "198.18.0.0/16"
LOAD_RELAY = "198.18.0.1"
LOAD_POOL = {"pools/load/subnet": LOAD_NET, "pools/load/range": "198.18.1.0-198.18.255.254"}


def server_and_relay(t: Topology) -> tuple[Netns, Netns]:
    lan = t.lan()
    srv = t.host("srv")
    t.attach(srv, lan, "eth1", "192.0.2.2/24")
    rel = t.host("rel")
    t.attach(rel, lan, "eth0", "192.0.2.3/24")
    t.addr(rel, "eth0", f"{LOAD_RELAY}/16")
    t.run(srv, ["ip", "route", "add", LOAD_NET, "via", "192.0.2.3"])
    return srv, rel
