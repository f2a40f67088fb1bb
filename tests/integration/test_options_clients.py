"""Real clients see the options we send: dhcpcd installs the classless static routes
(RFC 3442), busybox udhcpc hands them to its script, ISC dhclient asking for them gets
them in its script's environment; each also gets the NTP servers and the domain search
list where it asks for them. One daemon for the module, configured with options at the
global and pool levels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from appliance.config.tree import write_tree
from appliance.dhcp.enums import BROADCAST_FLAG, MessageType
from appliance.dhcp.message import DhcpMessage
from appliance.testing.daemonfiles import CLI
from appliance.testing.dhcpreq import request
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.require import require_root
from appliance.testing.trees import standalone_tree
from lab.clients import Dhclient, Dhcpcd, Dhcrelay, Udhcpc, ipv4_addrs, scapy_exchange

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


def _discover(t: Topology, ns: Netns, mac: str, xid: int) -> DhcpMessage:
    """One broadcast DISCOVER asking for 42 from `mac`, sent with scapy; the OFFER."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    msg = request(MessageType.DISCOVER, mac, xid=xid, prl=bytes([1, 3, 42]),
                  flags=BROADCAST_FLAG)
    frame = bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0",
                  dst="255.255.255.255") / UDP(sport=68, dport=67) / Raw(msg.encode()))
    for r in scapy_exchange(t, ns, "eth0", [frame], [xid]):
        m = DhcpMessage.decode(bytes(Ether(r)["UDP"].payload))
        if m.xid == xid:
            return m
    raise AssertionError(f"no OFFER for xid {xid:#x}")


def test_options_and_hosts_apply_on_reload_and_a_bad_value_is_refused(tmp_path):
    """`dhcp-hotbackup reload` (SIGHUP): new options and a new host apply at once, no
    restart; a broken option file is refused naming the file and the value, and the
    running options stay."""
    require_root()
    with Topology() as t:
        lan = t.lan()
        srv = t.host("srv")
        t.attach(srv, lan, "eth1", "192.0.2.2/24")
        cli = t.host("cli")
        mac = "02:7e:00:00:02:01"
        t.attach(cli, lan, "eth0", mac=mac)
        etc = standalone_tree(tmp_path)
        log = open(tmp_path / "daemon.log", "ab")
        p = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
        role = tmp_path / "run" / "role"
        wait_for(lambda: p.poll() is None and role.exists()
                 and role.read_text().strip() == "active", 30, what="daemon active")
        first = _discover(t, cli, mac, 0x7001)
        assert 42 not in first.options
        assert IPv4Address(first.yiaddr) != IPv4Address("192.0.2.77")

        write_tree(etc, {"options/ntp-servers": "192.0.2.123",
                         "hosts/me/mac": mac, "hosts/me/address": "192.0.2.77"})
        r = subprocess.run([CLI, "reload", "--config", str(etc)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and "reload applied" in r.stdout, r.stdout + r.stderr
        second = _discover(t, cli, mac, 0x7002)
        assert second.options[42] == IPv4Address("192.0.2.123").packed
        assert IPv4Address(second.yiaddr) == IPv4Address("192.0.2.77")

        write_tree(etc, {"options/ntp-servers": "192.0.2.300"})
        # the CLI checks first and sends nothing; the daemon, signalled directly, refuses
        r = subprocess.run([CLI, "reload", "--config", str(etc)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"{etc}/options/ntp-servers: '192.0.2.300'" in r.stderr, r.stderr
        last = tmp_path / "run" / "config" / "last_reload"
        os.kill(p.pid, signal.SIGHUP)
        refused = wait_for(lambda: last.exists() and json.loads(last.read_text())
                           .get("result") == "refused" and json.loads(last.read_text()), 15,
                           what="the daemon refused the reload")
        assert any(f"{etc}/options/ntp-servers: '192.0.2.300'" in x
                   for x in refused["problems"]), refused
        third = _discover(t, cli, mac, 0x7003)
        assert third.options[42] == IPv4Address("192.0.2.123").packed
        assert t.stop(p, timeout=15) == 0, (tmp_path / "daemon.log").read_text()[-3000:]


def test_a_port_reserved_by_circuit_id_whatever_device_is_plugged_in(tmp_path, need):
    """hosts/<h>/circuit_id: the subscriber port behind ISC `dhcrelay -a` (whose
    circuit-id is its downstream interface's name) gets the host's address; a device
    swapped in on that port (another MAC, the first one gone without a RELEASE) gets the
    same address at once, and the first device's binding is gone from the lease table."""
    require_root()
    need("dhcrelay", "udhcpc")
    with Topology() as t:
        lan = t.lan()
        srv = t.host("srv")
        t.attach(srv, lan, "eth1", "192.0.2.2/24")
        relay = t.host("rly")
        t.attach(relay, lan, "up0", "192.0.2.3/24")
        rcli = t.host("rcl")
        t.veth(relay, "cust7", rcli, "eth0")
        t.addr(relay, "cust7", "203.0.113.1/24")
        t.run(srv, ["ip", "route", "add", "203.0.113.0/24", "via", "192.0.2.3"])
        etc = standalone_tree(tmp_path, extra={
            "pools/relayed/subnet": "203.0.113.0/24",
            "pools/relayed/range": "203.0.113.100-203.0.113.199",
            "hosts/cust7/circuit_id": "cust7", "hosts/cust7/relay": "203.0.113.1",
            "hosts/cust7/address": "203.0.113.50"})
        log = open(tmp_path / "daemon.log", "ab")
        p = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
        role = tmp_path / "run" / "role"
        wait_for(lambda: p.poll() is None and role.exists()
                 and role.read_text().strip() == "active", 30, what="daemon active")

        def leases() -> list[dict]:
            r = subprocess.run([CLI, "leases", "--json", "--all", "--config", str(etc)],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            return json.loads(r.stdout)

        with Dhcrelay(t, relay, "up0", "cust7", "192.0.2.2", tmp_path / "relay").start():
            macs = ["02:7e:00:00:03:01", "02:7e:00:00:03:02"]
            for n, mac in enumerate(macs):
                t.run(rcli, ["ip", "link", "set", "eth0", "down"])
                t.run(rcli, ["ip", "link", "set", "eth0", "address", mac])
                t.run(rcli, ["ip", "link", "set", "eth0", "up"])
                c = Udhcpc(t, rcli, "eth0", tmp_path / f"udhcpc{n}")
                with c.start():
                    assert c.wait_event("bound", timeout=40)[1] == "203.0.113.50"
                c.wait_exit()  # stopped, no RELEASE: the device is unplugged
            table = leases()
            by_mac = {x["mac"]: x for x in table}
            assert by_mac[macs[1]]["ip"] == "203.0.113.50"
            assert by_mac[macs[1]]["state"] == "bound"
            # the first device holds nothing any more (its binding was released first,
            # then the address bound to the new device: one record per address)
            assert [x["mac"] for x in table if x["ip"] == "203.0.113.50"] == [macs[1]]
            assert macs[0] not in by_mac or by_mac[macs[0]]["state"] != "bound"
        assert t.stop(p, timeout=15) == 0, (tmp_path / "daemon.log").read_text()[-3000:]
