"""Real clients see the options we send: dhcpcd installs the classless static routes
(RFC 3442), busybox udhcpc hands them to its script, ISC dhclient asking for them gets
them in its script's environment; each also gets the NTP servers and the domain search
list where it asks for them. One daemon for the module, configured with options at the
global and pool levels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from appliance.testing.daemonfiles import CLI
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.require import require_root
from appliance.testing.trees import standalone_tree
from lab.clients import Dhclient, Dhcpcd, Udhcpc, ipv4_addrs

pytestmark = [pytest.mark.netns]

OPTIONS = {
    "options/classless-static-route": "10.0.0.0/8 192.0.2.1\n"
                                      "198.18.0.0/15 192.0.2.254\n0.0.0.0/0 192.0.2.1",
    "options/ntp-servers": "192.0.2.123",
    "pools/lan/options/domain-search": "example.net, eng.example.net",
}


@dataclass
class Net:
    t: Topology
    lan: Netns
    n: int = 0

    def client(self, name: str) -> tuple[Netns, str]:
        self.n += 1
        mac = f"02:7e:00:00:01:{self.n:02x}"
        ns = self.t.host(name)
        self.t.attach(ns, self.lan, "eth0", mac=mac)
        return ns, mac


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Iterator[Net]:
    require_root()
    root = tmp_path_factory.mktemp("opt-clients")
    with Topology() as t:
        lan = t.lan()
        srv = t.host("srv")
        t.attach(srv, lan, "eth1", "192.0.2.2/24")
        etc = standalone_tree(root, extra=OPTIONS)
        log = open(root / "daemon.log", "ab")
        p = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
        role = root / "run" / "role"
        wait_for(lambda: p.poll() is None and role.exists()
                 and role.read_text().strip() == "active", 30, what="daemon active")
        yield Net(t, lan)
        assert t.stop(p, timeout=15) == 0, (root / "daemon.log").read_text()[-3000:]


def routes(net: Net, ns: Netns) -> str:
    return net.t.run(ns, ["ip", "-4", "route", "show"]).stdout


def test_dhcpcd_installs_the_classless_static_routes(net, tmp_path, need):
    need("dhcpcd", "nsenter", "unshare")
    ns, _mac = net.client("csr-dcd")
    c = Dhcpcd(net.t, ns, "eth0", tmp_path / "dhcpcd")
    c.conf.write_text("duid\nhostname itest-dhcpcd\noption classless_static_routes, "
                      "ntp_servers, domain_search\n")
    with c.start():
        def installed() -> str | None:
            if not c.running():
                raise AssertionError(f"dhcpcd exited:\n{c.log_text()}")
            r = routes(net, ns)
            return r if "10.0.0.0/8 via 192.0.2.1" in r else None

        r = wait_for(installed, 40, what="dhcpcd installed the routes")
        assert "198.18.0.0/15 via 192.0.2.254" in r
        assert "default via 192.0.2.1" in r  # from option 121's 0.0.0.0/0 (RFC 3442)
        assert ipv4_addrs(net.t, ns, "eth0")


def test_udhcpc_script_gets_the_routes(net, tmp_path, need):
    need("udhcpc")
    ns, _mac = net.client("csr-udh")
    c = Udhcpc(net.t, ns, "eth0", tmp_path / "udhcpc")
    # busybox exports option 121 as $staticroutes ("NET/WIDTH ROUTER ..."), 42 as $ntpsrv
    c.script.write_text(f"""#!/bin/sh
echo "$1 ${{ip:--}} ntp=${{ntpsrv:--}} search=${{search:--}} routes=${{staticroutes:--}}" \
  >> {c.events_file}
exit 0
""")
    with c.start("-O", "staticroutes", "-O", "ntpsrv", "-O", "search"):
        ev = " ".join(c.wait_event("bound"))
    assert "routes=10.0.0.0/8 192.0.2.1 198.18.0.0/15 192.0.2.254 0.0.0.0/0 192.0.2.1" in ev
    assert "ntp=192.0.2.123" in ev
    assert "search=example.net eng.example.net" in ev


def test_dhclient_asking_for_the_routes_gets_them(net, tmp_path, need):
    need("dhclient")
    ns, _mac = net.client("csr-dhc")
    c = Dhclient(net.t, ns, "eth0", tmp_path / "dhclient")
    # Debian's own dhclient.conf defines option 121 the same way
    c.conf.write_text(
        "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n"
        "request subnet-mask, routers, domain-name-servers, ntp-servers, domain-search, "
        "rfc3442-classless-static-routes;\n")
    c.script.write_text(f"""#!/bin/sh
echo "$reason ${{new_ip_address:--}} csr=${{new_rfc3442_classless_static_routes:--}} \
ntp=${{new_ntp_servers:--}} search=${{new_domain_search:--}}" >> {c.events_file}
case "$reason" in PREINIT) ip link set dev "$interface" up ;; esac
exit 0
""")
    with c.start():
        ev = " ".join(c.wait_event("BOUND"))
    # RFC 3442 §3 as bytes: width, significant octets, router
    assert "csr=8 10 192 0 2 1 15 198 18 192 0 2 254 0 192 0 2 1" in ev
    assert "ntp=192.0.2.123" in ev
    assert "search=example.net. eng.example.net." in ev or \
        "search=example.net eng.example.net" in ev
