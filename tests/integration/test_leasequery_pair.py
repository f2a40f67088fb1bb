"""Leasequery on a real pair (issue 13): a BNG asks about a subscriber behind ISC
`dhcrelay -a`, over UDP (RFC 4388) and over TCP (RFC 6926); A answers, then B after a
kill -9 of A, from the sessions A replicated to it.

    lan bridge ─┬─ a      eth1 192.0.2.2  prio 120 ══ sync ══ b  eth1 192.0.2.3  prio 100
                ├─ relay  up0 192.0.2.4, dhcrelay -a ── rlan ── "sub" (dhclient)
                └─ load   eth0 192.0.2.5: plays the BNG (the leasequery requester)

VIP 192.0.2.1. The queries go to the VIP, from a plain socket bound to 192.0.2.5:67 (a
BNG sends from its relay address, and the answer comes back to giaddr, port 67); the
bulk ones over TCP to VIP:67. Which device answered is what each one's runtime tree
counts (stats/leaseactive, stats/bulk_replies).
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address

import pytest

from appliance.dhcp.enums import MessageType, Opt
from appliance.dhcp.message import DhcpMessage
from appliance.testing.netns import Netns, Topology, inside, wait_for
from appliance.testing.require import require_bcc, require_tools
from lab.clients import Dhclient, link_macs
from lab.hapair import B_IP, LOAD_IP, RELAY_DOWN_IP, VIP, HaPair

pytestmark = [pytest.mark.netns, pytest.mark.slow]

U32 = struct.Struct("!I")


def _query(mtype: int, xid: int, *, ciaddr: str = "0.0.0.0", mac: str | None = None,
           rai: bytes | None = None) -> bytes:
    """A leasequery built by scapy (an encoder independent of ours), giaddr = the BNG."""
    from scapy.layers.dhcp import BOOTP, DHCP

    opts: list = [("message-type", mtype), ("param_req_list", [82, 12])]
    if rai is not None:
        opts.append(("relay_agent_information", rai))
    chaddr = bytes.fromhex(mac.replace(":", "")) if mac else b""
    p = BOOTP(op=1, xid=xid, ciaddr=ciaddr, giaddr=LOAD_IP, htype=1 if mac else 0,
              hlen=len(chaddr), chaddr=chaddr + bytes(16 - len(chaddr))) / DHCP(
                  options=[*opts, "end"])
    return bytes(p)


def leasequery(ns: Netns, to: str, payload: bytes, xid: int, timeout: float = 5
               ) -> DhcpMessage | None:
    """Send a DHCPLEASEQUERY from the BNG's 192.0.2.5:67; its answer (None: none came)."""
    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((LOAD_IP, 67))
        s.settimeout(timeout)
        s.sendto(payload, (to, 67))
        while True:
            try:
                m = DhcpMessage.decode(s.recv(4096))
            except TimeoutError:
                return None
            if m.xid == xid:
                return m
    finally:
        s.close()


def bulk(ns: Netns, to: str, payload: bytes, timeout: float = 20) -> list[DhcpMessage]:
    """One DHCPBULKLEASEQUERY over TCP (2-octet length framing, RFC 6926); every answer
    up to and including DHCPLEASEQUERYDONE."""
    with inside(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((to, 67))
        s.sendall(struct.pack("!H", len(payload)) + payload)
        buf, out = b"", []
        while True:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {len(out)} answers"
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
                n = struct.unpack("!H", buf[:2])[0]
                m = DhcpMessage.decode(buf[2:2 + n])
                buf = buf[2 + n:]
                out.append(m)
                if m.message_type == MessageType.LEASEQUERYDONE:
                    return out
    finally:
        s.close()


def _xdp() -> str:
    require_bcc()
    return "xdp"


def test_leasequery_answered_by_a_then_by_b_after_kill9(tmp_path):
    require_tools("dhclient", "dhcrelay")
    with Topology("lq") as t:
        ha = HaPair(t, tmp_path, relay=True, lease_time=600, datapath=_xdp(), values={
            "leasequery/requesters": LOAD_IP, "leasequery/bulk_listen": "0.0.0.0:67"})
        ha.start()
        ns, mac = ha.relayed_client("sub")
        c = Dhclient(t, ns, "eth0", tmp_path / "dhclient")
        # Renew every 3 s: unicast to the server identifier, bypassing the relay.
        c.conf.write_text(c.conf.read_text() + "supersede dhcp-renewal-time 3;\n")
        c.start()
        ip = c.wait_event("BOUND", timeout=60)[1]
        t.run(ns, ["ip", "route", "replace", "default", "via", RELAY_DOWN_IP])
        c.wait_event("RENEW", timeout=30)
        circuit = b"down0"  # dhcrelay -a: the downstream interface's name
        assert link_macs(t, ha.relay_ns)["down0"]  # the relay's port exists
        bng = ha.load_ns

        # -- A answers, by address, by MAC; B (standby) answers nothing -----------------
        r = leasequery(bng, VIP, _query(10, 0x51, ciaddr=ip), 0x51)
        assert r is not None and r.message_type == MessageType.LEASEACTIVE, r
        assert str(IPv4Address(r.ciaddr)) == ip and r.mac.hex(":") == mac
        assert r.giaddr == IPv4Address(LOAD_IP).packed
        assert r.options[Opt.SERVER_ID] == IPv4Address(VIP).packed
        rai = r.options[Opt.RELAY_AGENT_INFO]
        assert rai[:2 + len(circuit)] == b"\x01" + bytes((len(circuit),)) + circuit
        left = U32.unpack(r.options[Opt.LEASE_TIME])[0]
        assert 500 < left <= 600
        ha.a.wait(lambda: ha.a.stat("leaseactive") >= 1, "A counted its answer")
        r = leasequery(bng, VIP, _query(10, 0x52, mac=mac), 0x52)
        assert r is not None and r.message_type == MessageType.LEASEACTIVE
        assert str(IPv4Address(r.ciaddr)) == ip
        r = leasequery(bng, VIP, _query(10, 0x53, ciaddr="203.0.113.250"), 0x53)
        assert r is not None and r.message_type == MessageType.LEASEUNKNOWN
        r = leasequery(bng, VIP, _query(10, 0x54, ciaddr="203.0.113.199"), 0x54)
        assert r is not None and r.message_type == MessageType.LEASEUNASSIGNED
        # To B's own address: B is standby and drops it (in the kernel, with XDP).
        dropped = ha.b.stat("dropped_standby")
        assert leasequery(bng, B_IP, _query(10, 0x55, ciaddr=ip), 0x55, timeout=2) is None
        ha.b.wait(lambda: ha.b.stat("dropped_standby") > dropped, "B counted the drop")
        assert ha.b.stat("leaseactive") == 0

        # -- bulk over TCP: A streams, B (standby) says NotAllowed ----------------------
        out = bulk(bng, VIP, _query(14, 0x61))  # every binding
        active = [m for m in out if m.message_type == MessageType.LEASEACTIVE]
        assert [str(IPv4Address(m.ciaddr)) for m in active] == [ip]
        assert active[0].options[Opt.DATA_SOURCE] == b"\x00"  # made by A itself
        assert out[-1].message_type == MessageType.LEASEQUERYDONE
        assert Opt.STATUS_CODE not in out[-1].options
        out = bulk(bng, VIP, _query(14, 0x62, rai=b"\x01" + bytes((len(circuit),)) + circuit))
        assert [str(IPv4Address(m.ciaddr)) for m in out[:-1]] == [ip]
        out = bulk(bng, B_IP, _query(14, 0x63))
        assert len(out) == 1 and out[0].options[Opt.STATUS_CODE][0] == 4  # NotAllowed
        ha.b.wait(lambda: ha.b.stat("bulk_refused_standby") == 1, "B counted the refusal")

        # -- kill -9 of A: B answers from the sessions A replicated ---------------------
        # The subscriber stops renewing (as one renewing hourly would not, in these
        # seconds): the binding B answers about is the one A made.
        c.stop()
        ha.a.kill9()
        ha.b.wait(lambda: ha.b.is_("active", "master"), "B takes over", timeout=30)
        r = wait_for(lambda: leasequery(bng, VIP, _query(10, 0x71, ciaddr=ip), 0x71,
                                        timeout=1), 20, what="B answers a leasequery")
        assert r.message_type == MessageType.LEASEACTIVE and r.mac.hex(":") == mac
        assert r.options[Opt.RELAY_AGENT_INFO] == rai  # Option 82, replicated
        ha.b.wait(lambda: ha.b.stat("leaseactive") >= 1, "B counted its answer")
        out = bulk(bng, VIP, _query(14, 0x72))
        active = [m for m in out if m.message_type == MessageType.LEASEACTIVE]
        assert [str(IPv4Address(m.ciaddr)) for m in active] == [ip]
        assert active[0].options[Opt.DATA_SOURCE] == b"\x01"  # REMOTE: A made it
        assert active[0].options[Opt.RELAY_AGENT_INFO] == rai
        ha.stop()
