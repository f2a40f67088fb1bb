"""DHCP on many client interfaces: real clients on three "VLANs" and a relayed one, one
server process, two sockets.

This kernel has no 802.1Q devices, so each VLAN is a bridge of its own and the server a
veth port into it named like a VLAN sub-interface (DESIGN.md):

    srv netns                                         (one :67 socket, one AF_PACKET)
      eth1.100 192.0.2.2/25    + VIP 192.0.2.1 (ga)        ── bridge v100 ── dhclient
      eth1.200 192.0.2.130/25  + VIP 192.0.2.129 (gb)      ── bridge v200 ── udhcpc
      eth1.300 198.51.100.2/24 + VIPs .1 (ga), .254 (gb)   ── bridge v300 ── dhcpcd (ga's
                                                              bucket), udhcpc (gb's bucket)
      eth1.400 203.0.113.2/25  (no group: standalone)      ── bridge v400 ── dhcrelay -a
                                                              ── cust7 203.0.113.129/25 ── dhclient
      sync0 198.18.0.1/24      (not a client interface)    ══ veth ══ peer 198.18.0.2

The server is the real daemon (`dhcp-hotbackup run`) on a tree in the interfaces/ layout:
groups ga (advertising on eth1.100, eth1.300 its service interface) and gb (on
eth1.200, eth1.300 too), no peer at first, so it becomes master of both and its VRRP
adds the VIPs; for the last test a VRRP peer (lab/vrrp_node.py) on v200 is gb's master,
so the daemon serves ga and the standalone interface only. What a user checks: each client
gets an address of its VLAN's pool, from its group's half on the shared VLAN, with its
group's virtual IP as the server identifier; every reply leaves on the port its request
came in on (a capture on each bridge), renewals too; DHCP on the sync link is dropped
and counted; a group the device does not serve gets no answer on any VLAN, and the other
group's clients on the shared VLAN none either. And the transport itself, with real
sockets: ingress interface per datagram, replies per interface, the set changed live.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from appliance.dhcp.enums import MessageType
from appliance.dhcp.loadbalance import group_of
from appliance.testing.daemonfiles import CLI, PY, REPO, DaemonFiles
from appliance.testing.dhcpreq import request
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.require import require_root
from appliance.testing.trees import interfaces_tree
from lab.clients import (
    Capture,
    Dhclient,
    Dhcpcd,
    Dhcrelay,
    Udhcpc,
    ipv4_addrs,
    link_macs,
    scapy_exchange,
)

pytestmark = [pytest.mark.netns]

BROADCAST_FLAG = 0x8000


class Vlan:
    def __init__(self, vid: int, net: str, srv: str, groups: tuple[str, ...],
                 vips: tuple[str, ...], rng: tuple[str, str] | None) -> None:
        self.vid, self.net, self.srv = vid, IPv4Network(net), srv
        self.ifname = f"eth1.{vid}"
        self.groups, self.vips, self.range = groups, vips, rng
        self.lan: Netns | None = None
        self.cap: Capture | None = None

    def in_range(self, ip: str) -> bool:
        assert self.range is not None
        return IPv4Address(self.range[0]) <= IPv4Address(ip) <= IPv4Address(self.range[1])


V100 = Vlan(100, "192.0.2.0/25", "192.0.2.2", ("ga",), ("192.0.2.1",),
            ("192.0.2.100", "192.0.2.120"))
V200 = Vlan(200, "192.0.2.128/25", "192.0.2.130", ("gb",), ("192.0.2.129",),
            ("192.0.2.200", "192.0.2.220"))
V300 = Vlan(300, "198.51.100.0/24", "198.51.100.2", ("ga", "gb"),
            ("198.51.100.1", "198.51.100.254"), ("198.51.100.100", "198.51.100.199"))
V400 = Vlan(400, "203.0.113.0/25", "203.0.113.2", (), (), None)  # the relay's uplink
VLANS = (V100, V200, V300, V400)
RELAY_UP, RELAY_DOWN_IF, RELAY_DOWN = "203.0.113.3/25", "cust7", "203.0.113.129/25"
RELAYED = IPv4Network("203.0.113.128/25")
RELAYED_RANGE = ("203.0.113.150", "203.0.113.199")
SYNC_SRV, SYNC_PEER = "198.18.0.1", "198.18.0.2"

POOLS = {
    # v100 is the pool "lan" (MultiNet)
    "pools/v200/subnet": "192.0.2.128/25", "pools/v200/range": "192.0.2.200-192.0.2.220",
    "pools/v300/subnet": "198.51.100.0/24",
    "pools/v300/range": "198.51.100.100-198.51.100.199",
    "pools/relayed/subnet": str(RELAYED), "pools/relayed/range": "-".join(RELAYED_RANGE),
    # 10 s: the relayed dhclient renews by itself at T1 = 5 s, unicast, bypassing the relay
    "pools/relayed/lease_time": "10",
}


def mac_of_group(g: int, start: int) -> str:
    """A MAC whose RFC 3074 bucket puts its client in group index `g` on eth1.300."""
    for i in range(start, start + 256):
        m = bytes([2, 0x5e, 0x10, 0, i >> 8, i & 0xFF])
        if group_of(m, 6) == g:
            return m.hex(":")
    raise AssertionError("no MAC found")


def replies(cap: Capture) -> list:
    """(ip src, ip dst, chaddr, yiaddr, xid, message type, option 54) of every server
    reply (UDP from port 67, BOOTREPLY) captured, with scapy's own DHCP parser."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP

    out = []
    for p in cap.packets():
        if UDP not in p or p[UDP].sport != 67 or BOOTP not in p or p[BOOTP].op != 2:
            continue
        opts = {k: v for k, *v in (o for o in p[DHCP].options if isinstance(o, tuple))} \
            if DHCP in p else {}
        sid = opts.get("server_id", [None])[0]
        mt = opts.get("message-type", [None])[0]
        out.append((p[IP].src, p[IP].dst, bytes(p[BOOTP].chaddr[:6]).hex(":"),
                    p[BOOTP].yiaddr, p[BOOTP].xid, mt, sid))
    return out


GROUPS = {"ga": {"vrid": "10", "priority": "200", "advert_interval_ms": "100"},
          "gb": {"vrid": "20", "priority": "200", "advert_interval_ms": "100"}}
PEER_GB = "192.0.2.131/25"  # gb's other master, on v200, for the last test


class MultiNet(DaemonFiles):
    """The topology above with the server running; `restart(serving)` runs it again
    answering only those groups."""

    def __init__(self, t: Topology, root: Path) -> None:
        self.t, self.root = t, root
        self.srv = t.host("srv")
        for v in VLANS:
            v.lan = t.lan(f"v{v.vid}")
            t.attach(self.srv, v.lan, v.ifname, f"{v.srv}/{v.net.prefixlen}")
        self.peer = t.host("peer")
        t.veth(self.srv, "sync0", self.peer, "sync0")
        t.addr(self.srv, "sync0", f"{SYNC_SRV}/24")
        t.addr(self.peer, "sync0", f"{SYNC_PEER}/24")
        t.run(self.srv, ["ip", "route", "add", str(RELAYED), "via", RELAY_UP.split("/")[0]])
        pools = {"lan": (str(V100.net), "-".join(V100.range))}  # type: ignore[arg-type]
        for k, v in POOLS.items():
            if k.endswith("/subnet"):
                name = k.split("/")[1]
                pools[name] = (v, POOLS[f"pools/{name}/range"])
        self.etc = interfaces_tree(
            root, interfaces={v.ifname: [(g, f"{vip}/{v.net.prefixlen}")
                                         for g, vip in zip(v.groups, v.vips, strict=True)]
                              for v in VLANS},
            groups=GROUPS, pools=pools,
            extra={"pools/relayed/lease_time": POOLS["pools/relayed/lease_time"]})
        self.run_dir = root / "run"
        self.log = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.gb_peer: subprocess.Popen[bytes] | None = None
        self._n = 0

    def start(self, serving: list[str] | None = None) -> None:
        """The daemon; `serving` ["ga", ""]: with gb's peer master first (the daemon
        stays gb's backup)."""
        if serving is not None:
            assert set(serving) == {"ga", ""}, "only gb can be given to the peer"
            pns = self.t.host("gbpeer")
            assert V200.lan is not None
            self.t.attach(pns, V200.lan, "eth1", PEER_GB)
            self.gb_peer = self.t.popen(pns, [
                PY, "-m", "lab.vrrp_node", "--interface", "eth1", "--vrid", "20",
                "--priority", "250", "--advert-ms", "100", "--vip", "192.0.2.129/25"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO))
        # The last run's tree goes: its counters must not be read as this run's.
        shutil.rmtree(self.run_dir / "stats", ignore_errors=True)
        (self.run_dir / "role").unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = self.t.popen(self.srv, [CLI, "run", "--config", str(self.etc)],
                                     stdout=log, stderr=subprocess.STDOUT)
        want = {"ga": "active", "gb": "active" if serving is None else "standby"}
        wait_for(lambda: self._active() and all(
            self.value(f"groups/{g}/role") == r and self.value(f"groups/{g}/vrrp_state")
            in ("master", "backup") for g, r in want.items()), 30,
            what=f"daemon serving {want}")

    def _active(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.log_tail()}")
        return self.value("role") == "active"

    def stop(self) -> None:
        assert self.proc is not None
        rc = self.t.stop(self.proc, timeout=15)
        assert rc == 0, f"daemon exit status {rc} after SIGTERM:\n{self.log_tail()}"
        if self.gb_peer is not None:
            self.t.stop(self.gb_peer, timeout=15)
            self.gb_peer = None

    def client(self, v: Vlan, name: str, mac: str | None = None) -> tuple[Netns, str]:
        self._n += 1
        mac = mac or f"02:7f:00:{v.vid // 100:02x}:00:{self._n:02x}"
        ns = self.t.host(name)
        assert v.lan is not None
        self.t.attach(ns, v.lan, "eth0", mac=mac)
        return ns, mac

    def leases(self) -> list[dict]:
        r = subprocess.run([CLI, "leases", "--json", "--config", str(self.etc)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> Iterator[MultiNet]:
    require_root()
    root = tmp_path_factory.mktemp("multi")
    with Topology() as t:
        n = MultiNet(t, root)
        for v in VLANS:
            assert v.lan is not None
            v.cap = Capture(t, v.lan, "br0", root / f"cap{v.vid}").start()
        n.start()
        yield n
        n.stop()


def test_real_clients_on_every_vlan_get_its_pool_and_its_groups_server_identifier(
        net, tmp_path, need):
    need("dhclient", "udhcpc", "dhcpcd", "dhcrelay", "tcpdump", "nsenter", "unshare")
    t = net.t
    relay = t.host("rly")
    assert V400.lan is not None
    t.attach(relay, V400.lan, "up0", RELAY_UP)
    rcli = t.host("rcl")
    t.veth(relay, RELAY_DOWN_IF, rcli, "eth0")
    t.addr(relay, RELAY_DOWN_IF, RELAY_DOWN)
    ns100, mac100 = net.client(V100, "c100")
    ns200, mac200 = net.client(V200, "c200")
    ns3a, mac3a = net.client(V300, "c3a", mac_of_group(0, 1))
    ns3b, mac3b = net.client(V300, "c3b", mac_of_group(1, 1))
    with Dhcrelay(t, relay, "up0", RELAY_DOWN_IF, V400.srv, tmp_path / "relay").start(), \
            Dhclient(t, ns100, "eth0", tmp_path / "d100").start() as c100, \
            Udhcpc(t, ns200, "eth0", tmp_path / "u200").start() as c200, \
            Dhcpcd(t, ns3a, "eth0", tmp_path / "d3a").start() as c3a, \
            Udhcpc(t, ns3b, "eth0", tmp_path / "u3b").start() as c3b, \
            Dhclient(t, rcli, "eth0", tmp_path / "rel").start() as crel:
        ip100 = c100.wait_event("BOUND", timeout=40)[1]
        ip200 = c200.wait_event("bound", timeout=40)[1]
        ip3b = c3b.wait_event("bound", timeout=40)[1]
        iprel = crel.wait_event("BOUND", timeout=40)[1]

        def dhcpcd_addr() -> str | None:
            assert c3a.running(), c3a.log_text()
            a = ipv4_addrs(t, ns3a, "eth0")
            return a[0] if a else None

        ip3a = wait_for(dhcpcd_addr, 40, what="dhcpcd configured an address")
        assert V100.in_range(ip100) and V200.in_range(ip200)
        assert V300.in_range(ip3a) and V300.in_range(ip3b)
        assert IPv4Address(RELAYED_RANGE[0]) <= IPv4Address(iprel) <= \
            IPv4Address(RELAYED_RANGE[1])
        # The shared VLAN: each group allocates from its own half (bit 0 = group index).
        assert int(IPv4Address(ip3a)) & 1 == 0 and int(IPv4Address(ip3b)) & 1 == 1

        pools = {x["mac"]: (x["ip"], x["pool"]) for x in net.leases()}
        assert pools[mac100] == (ip100, "lan") and pools[mac200] == (ip200, "v200")
        assert pools[mac3a] == (ip3a, "v300") and pools[mac3b] == (ip3b, "v300")
        assert pools[crel_mac(t, rcli)][1] == "relayed"

        # Every ACK on the port its request came in on, from the group's virtual IP,
        # which is its server identifier; and no reply to a client on another port.
        expect = {mac100: (V100, "192.0.2.1"), mac200: (V200, "192.0.2.129"),
                  mac3a: (V300, "198.51.100.1"), mac3b: (V300, "198.51.100.254")}
        for mac, (vlan, vip) in expect.items():
            acks = wait_for(lambda v=vlan, m=mac: [r for r in replies(v.cap) if r[2] == m
                                                   and r[5] == 5], 10,
                            what=f"the ACK to {mac} on bridge v{vlan.vid}")
            assert all(r[0] == vip and r[6] == vip for r in acks), (mac, acks)
            for other in VLANS:
                if other is not vlan:
                    assert not [r for r in replies(other.cap) if r[2] == mac], \
                        f"a reply to {mac} left on {other.ifname}"
        # The relayed client's replies went to the relay on eth1.400, from our address
        # there; its server identifier is that interface's own (no group: standalone).
        rel = wait_for(lambda: [r for r in replies(V400.cap) if r[3] == iprel and r[5] == 5],
                       10, what="the relayed client's ACK on bridge v400")  # capture flushed
        assert rel and all(r[1] == RELAY_DOWN.split("/")[0] and r[6] == V400.srv
                           for r in rel), rel
        # Its renewal comes straight to us through the relay's router (RFC 2131 §4.4.5:
        # unicast to the server identifier, no giaddr); our ACK to ciaddr is routed back
        # through that router, not framed to a chaddr that is not on eth1.400.
        t.run(relay, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        t.run(rcli, ["ip", "route", "replace", "default", "via", RELAY_DOWN.split("/")[0]])
        assert crel.wait_event("RENEW", timeout=30)[1] == iprel
        relay_mac = link_macs(t, relay)["up0"]
        routed = wait_for(lambda: [p for p in frames(V400.cap) if p[1] == iprel
                                   and p[3] == 5], 10, what="the routed renewal ACK")
        assert all(p[0] == V400.srv and p[2] == relay_mac for p in routed), routed

        # Renewals: unicast to the group's virtual IP, answered on the same port.
        for c, vlan, mac, ip, vip in ((c200, V200, mac200, ip200, "192.0.2.129"),
                                     (c3b, V300, mac3b, ip3b, "198.51.100.254")):
            before = len([r for r in replies(vlan.cap) if r[2] == mac and r[5] == 5])
            c.renew()
            assert c.wait_event("renew")[1] == ip
            acks = wait_for(lambda v=vlan, m=mac, b=before: (
                [r for r in replies(v.cap) if r[2] == m and r[5] == 5][b:]), 10,
                what=f"the renewal's ACK on v{vlan.vid}")
            assert acks[0][:2] == (vip, ip), acks
        assert net.stat("dropped_foreign_interface") == 0
        net.wait_stat("ack", 7)


def crel_mac(t: Topology, ns: Netns) -> str:
    return link_macs(t, ns)["eth0"].lower()


def frames(cap: Capture) -> list:
    """(ip src, ip dst, Ethernet dst, message type) of every server reply captured."""
    from scapy.layers.dhcp import BOOTP, DHCP
    from scapy.layers.inet import IP, UDP

    out = []
    for p in cap.packets():
        if UDP in p and p[UDP].sport == 67 and BOOTP in p and p[BOOTP].op == 2 and DHCP in p:
            mt = next((o[1] for o in p[DHCP].options if isinstance(o, tuple)
                       and o[0] == "message-type"), None)
            out.append((p[IP].src, p[IP].dst, p.dst, mt))
    return out


def _frame(msg_bytes: bytes, mac: str) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0",
                 dst="255.255.255.255") / UDP(sport=68, dport=67) / msg_bytes)


def test_broadcast_replies_leave_only_on_the_requests_port_from_its_groups_vip(net):
    """A client that asks for broadcast (flag set, RFC 2131 §4.1): the OFFER goes to
    255.255.255.255 out of the port the DISCOVER came in on only (IP_PKTINFO), from the
    group's virtual IP."""
    for vlan, mac, vip, xid in ((V200, "02:7f:00:02:00:f1", "192.0.2.129", 0x2001),
                                (V300, mac_of_group(1, 300), "198.51.100.254", 0x3001),
                                (V300, mac_of_group(0, 300), "198.51.100.1", 0x3002)):
        ns, _ = net.client(vlan, f"b{xid:x}", mac)
        m = request(MessageType.DISCOVER, mac, xid=xid, flags=BROADCAST_FLAG).encode()
        got = scapy_exchange(net.t, ns, "eth0", [_frame(m, mac)], [xid])
        assert got, f"no OFFER to {mac}"
        offers = wait_for(lambda v=vlan, x=xid: [r for r in replies(v.cap) if r[4] == x],
                          10, what=f"OFFER {xid:#x} on v{vlan.vid}")
        assert [(r[0], r[1], r[6]) for r in offers] == [(vip, "255.255.255.255", vip)]
        for other in VLANS:
            if other is not vlan:
                assert not [r for r in replies(other.cap) if r[4] == xid], other.ifname


def test_dhcp_on_the_sync_link_is_dropped_and_counted(net, tmp_path):
    """The one :67 socket hears every interface; the sync link is not a client one."""
    before = net.stat("dropped_foreign_interface")
    with Capture(net.t, net.peer, "sync0", tmp_path / "cap").start() as cap:
        m = request(MessageType.DISCOVER, "02:7f:00:99:00:01", xid=0x5151).encode()
        code = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); "
                "s.setsockopt(socket.SOL_SOCKET, 25, b'sync0'); "
                "s.bind(('0.0.0.0', 68)); d = bytes.fromhex(sys.argv[1]); "
                f"s.sendto(d, ('{SYNC_SRV}', 67)); s.sendto(d, ('255.255.255.255', 67))")
        net.t.run(net.peer, [PY, "-c", code, m.hex()])
        net.wait_stat("dropped_foreign_interface", before + 2)
        assert "D013 DHCP on sync0, not a client interface" in net.log_text()
        assert not [r for r in replies(cap)]  # never answered


def test_only_the_groups_served_are_answered_per_interface_and_bucket(net):
    """Serving ga and the ungrouped interfaces only (the peer is gb's master): gb's VLAN
    gets no answer, nor gb's clients on the shared VLAN; ga's are answered there."""
    net.stop()
    net.start(serving=["ga", ""])
    standby = net.stat("dropped_standby")
    ga_mac, gb_mac = mac_of_group(0, 600), mac_of_group(1, 600)
    ns, _ = net.client(V300, "s300", ga_mac)
    frames = [_frame(request(MessageType.DISCOVER, m, xid=x).encode(), m)
              for m, x in ((gb_mac, 0x6002), (ga_mac, 0x6001))]
    got = scapy_exchange(net.t, ns, "eth0", frames, [0x6001])
    assert got, "ga's client got no OFFER"
    ns2, mac2 = net.client(V200, "s200")
    frame = _frame(request(MessageType.DISCOVER, mac2, xid=0x6003).encode(), mac2)
    net.t.run(ns2, [PY, "-c", "import sys; from scapy.all import sendp; "
                    "sendp(bytes.fromhex(sys.argv[1]), iface='eth0', verbose=False)",
                    frame.hex()], cwd=str(REPO))
    net.wait_stat("dropped_standby", standby + 2)
    assert V300.cap is not None and V200.cap is not None
    offers = [r for r in replies(V300.cap) if r[4] in (0x6001, 0x6002)]
    assert [(r[4], r[6]) for r in offers] == [(0x6001, "198.51.100.1")]
    assert not [r for r in replies(V200.cap) if r[4] == 0x6003]


# -- the transport alone, with real sockets --------------------------------------------
def test_transport_names_the_ingress_port_and_sends_on_it_and_follows_set_interfaces(
        tmp_path):
    """DhcpTransport in a namespace with two client ports and a third one that is not:
    recv_batch names each datagram's port and drops the third's (counted); send() puts
    each kind of reply on the port given; set_interfaces() changes the set live."""
    require_root()
    from appliance.dhcp.server import Dest, Ingress
    from appliance.dhcp.transport import DhcpTransport
    from appliance.testing.netns import inside

    with Topology() as t:
        srv = t.host("tsrv")
        lans = {}
        for name, cidr in (("eth1.10", "192.0.2.2/25"), ("eth1.20", "192.0.2.130/25"),
                           ("mgmt0", "198.18.0.1/24")):
            lans[name] = t.lan(f"l{name[-2:]}")
            t.attach(srv, lans[name], name, cidr)
        clients = {}
        for name, cidr in (("eth1.10", "192.0.2.3/25"), ("eth1.20", "192.0.2.131/25"),
                           ("mgmt0", "198.18.0.2/24")):
            clients[name] = t.host(f"c{name[-2:]}")
            t.attach(clients[name], lans[name], "eth0", cidr)
        ing = {
            "eth1.10": Ingress(local_ips=(int(IPv4Address("192.0.2.2")),),
                               server_ids=(IPv4Address("192.0.2.2").packed,), name="eth1.10"),
            "eth1.20": Ingress(local_ips=(int(IPv4Address("192.0.2.130")),),
                               server_ids=(IPv4Address("192.0.2.130").packed,),
                               name="eth1.20"),
        }
        with inside(srv):  # the sockets live in srv; names are looked up there
            tr = DhcpTransport()
        try:
            with inside(srv):
                assert tr.set_interfaces([ing["eth1.10"], ing["eth1.20"],
                                          Ingress(local_ips=(), server_ids=(bytes(4),),
                                                  name="eth1.99")]) == ["eth1.99"]
            caps = {n: Capture(t, lans[n], "br0", tmp_path / f"c{n}").start() for n in lans}

            def send_from(name: str, payload: bytes) -> None:
                code = ("import socket, sys; s = socket.socket(socket.AF_INET, "
                        "socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, "
                        "socket.SO_BROADCAST, 1); s.setsockopt(socket.SOL_SOCKET, 25, "
                        "b'eth0'); s.bind(('0.0.0.0', 68)); "
                        "s.sendto(bytes.fromhex(sys.argv[1]), ('255.255.255.255', 67))")
                t.run(clients[name], [PY, "-c", code, payload.hex()])

            def drain(k: int) -> list:
                got: list = []
                wait_for(lambda: got.extend(tr.recv_batch(64)) or len(got) >= k, 10,
                         what=f"{k} datagrams")
                return got

            for name in ("eth1.10", "eth1.20", "mgmt0"):
                send_from(name, name.encode())
            got = drain(2)
            assert sorted((d, p.ifname) for d, _a, _ts, p in got) == \
                [(b"eth1.10", "eth1.10"), (b"eth1.20", "eth1.20")]
            assert all(ts > 0 for _d, _a, ts, _p in got)
            wait_for(lambda: tr.recv_batch(8) == [] and tr.foreign == 1, 10,
                     what="mgmt0's datagram counted as foreign")
            assert tr.foreign_ifindex != 0

            # Replies: each kind out of the port given, none elsewhere.
            port20 = next(p for p in tr.ports if p.ifname == "eth1.20")
            payload = bytes(240)
            tr.send(payload, Dest.BROADCAST, b"\xff" * 4, bytes(6), port20, 0)
            tr.send(payload, Dest.LINK, IPv4Address("192.0.2.200").packed,
                    bytes.fromhex("027f00000042"), port20, 0)

            def seen(name: str) -> list:
                from scapy.layers.inet import IP, UDP

                return [(p[IP].src, p[IP].dst, p.dst) for p in caps[name].packets()
                        if UDP in p and p[UDP].sport == 67]

            wait_for(lambda: len(seen("eth1.20")) == 2, 10, what="two replies on eth1.20")
            assert sorted(seen("eth1.20")) == [
                ("192.0.2.130", "192.0.2.200", "02:7f:00:00:00:42"),
                ("192.0.2.130", "255.255.255.255", "ff:ff:ff:ff:ff:ff")]
            assert seen("eth1.10") == [] and seen("mgmt0") == []

            # Live: eth1.20 is no longer a client interface, mgmt0 becomes one.
            mgmt = Ingress(local_ips=(), server_ids=(IPv4Address("198.18.0.1").packed,),
                           name="mgmt0")
            with inside(srv):
                assert tr.set_interfaces([ing["eth1.10"], mgmt]) == []
            for name in ("eth1.20", "mgmt0"):
                send_from(name, name.encode())
            got = drain(1)
            assert [(d, p.ifname) for d, _a, _ts, p in got] == [(b"mgmt0", "mgmt0")]
            wait_for(lambda: tr.recv_batch(8) == [] and tr.foreign == 2, 10,
                     what="eth1.20's datagram counted as foreign")
        finally:
            tr.close()


def test_socket_count_does_not_grow_with_the_interfaces(tmp_path):
    """Two sockets whatever the number of client interfaces (here 40)."""
    require_root()
    import os

    from appliance.dhcp.server import Ingress
    from appliance.dhcp.transport import DhcpTransport
    from appliance.testing.netns import inside

    with Topology() as t:
        srv = t.host("ssrv")
        peer = t.host("speer")
        ings = []
        for i in range(40):
            t.veth(srv, f"eth1.{100 + i}", peer, f"p{i}")
            ings.append(Ingress(local_ips=(), server_ids=(bytes(4),), name=f"eth1.{100 + i}"))
        fds = len(os.listdir("/proc/self/fd"))
        with inside(srv):
            tr = DhcpTransport()
            missing = tr.set_interfaces(ings)
        try:
            assert missing == []
            assert len(tr.ports) == 40
            assert len(os.listdir("/proc/self/fd")) == fds + 2
        finally:
            tr.close()
