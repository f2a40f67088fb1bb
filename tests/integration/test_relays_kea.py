"""Relays, differential against Kea 2.2 (kea-dhcp4): the same relayed packets, built by
scapy and sent from a relay's address, to our daemon and to Kea configured alike; what
each answers is compared field by field.

    lan bridge ─┬─ srv    eth1 192.0.2.2/24: `dhcp-hotbackup run`, or kea-dhcp4
                └─ relay  eth0 192.0.2.3/24 + 198.51.100.1/25: plays the relay agent

Compared: link selection (RFC 3527: the pool named by the sub-option, the subnet mask,
Option 82 echoed), relay source port (RFC 8357: the answer at the relay's port), a shared
network (the next subnet when the first is full): the same. Server identifier override
(RFC 5107: option 54) differs on purpose: Kea 2.2 ignores the sub-option.
Kea's leasequery hook (libdhcp_lease_query.so) is not in Debian 12's kea packages, so
leasequery itself is not compared here.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from appliance.testing.netns import Topology, wait_for
from appliance.testing.require import require_root, require_tools
from tests.integration.conftest import RELAYED_POOL, DhcpNet
from tests.integration.test_relays import RELAY_IP, RELAY_IP2, SHARED, Relay, dora, packet, sub

pytestmark = [pytest.mark.netns]

KEA_HOOKS = Path("/usr/lib/x86_64-linux-gnu/kea/hooks")


def kea_conf(work: Path) -> dict:
    """The same pools as the daemon's tree (conftest's lan and relayed, SHARED)."""
    def subnet(i, net, lo, hi, **kw):
        return {"id": i, "subnet": net, "pools": [{"pool": f"{lo}-{hi}"}], **kw}
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": ["eth1"], "dhcp-socket-type": "udp"},
        "lease-database": {"type": "memfile", "persist": False},
        "valid-lifetime": 600,
        "subnet4": [subnet(1, "192.0.2.0/24", "192.0.2.100", "192.0.2.199"),
                    subnet(2, "203.0.113.0/24", "203.0.113.100", "203.0.113.199")],
        "shared-networks": [{"name": "sn", "subnet4": [
            subnet(3, "198.51.100.0/25", "198.51.100.10", "198.51.100.11"),
            subnet(4, "198.51.100.128/25", "198.51.100.130", "198.51.100.131")]}],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": str(work / "kea.log")}],
                     "severity": "INFO"}],
    }}


def scenario(relay_of) -> dict:
    """What a relay sees of the server, for each case (the same packets for both)."""
    out: dict = {}
    r = relay_of(67)
    try:
        rai = sub(1, b"port1") + sub(5, bytes((203, 0, 113, 0)))
        off, ack = dora(r, "02:aa:00:00:00:01", RELAY_IP, rai, 0x100)
        out["link_selection"] = (off["yiaddr"].rsplit(".", 1)[0], off["subnet_mask"],
                                 ack["message-type"], ack.get("relay_agent_information"))
        rai = sub(1, b"port2") + sub(11, bytes((192, 0, 2, 3)))
        off, ack = dora(r, "02:aa:00:00:00:02", RELAY_IP, rai, 0x200)
        out["override"] = (off["server_id"], ack["message-type"], ack["server_id"])
        got = []
        for n in range(4):
            _o, a = dora(r, f"02:bb:00:00:00:0{n}", RELAY_IP2, sub(1, f"p{n}".encode()),
                         0x400 + 16 * n)
            got.append((a["message-type"], a["yiaddr"], a["subnet_mask"]))
        out["shared"] = got
    finally:
        r.close()
    r = relay_of(6767)
    try:
        r.sock.settimeout(3)
        try:
            off = r.ask(packet("discover", "02:aa:00:00:00:03", RELAY_IP,
                               sub(1, b"port3") + sub(19, b""), 0x300), 0x300)
            out["relay_port"] = off["message-type"]
        except TimeoutError:
            out["relay_port"] = None
    finally:
        r.close()
    return out


def _relay_ns(t, net):
    relay = t.host("relay")
    t.attach(relay, net.lan, "eth0", f"{RELAY_IP}/24")
    t.addr(relay, "eth0", f"{RELAY_IP2}/25")
    net.relay = relay


def test_relay_suboptions_and_shared_network_as_kea(tmp_path):
    require_root()
    require_tools("kea-dhcp4")
    with Topology("rk") as t:
        ours = DhcpNet(t, tmp_path / "ours", lease_time=600, extra={**RELAYED_POOL, **SHARED})
        _relay_ns(t, ours)
        mine = scenario(lambda port: Relay(ours, port))
        ours.stop()

    with Topology("rk") as t:
        class KeaNet:  # what Relay needs of a net: the relay namespace
            pass
        kn = KeaNet()
        kn.lan = t.lan()
        srv = t.host("srv")
        t.attach(srv, kn.lan, "eth1", "192.0.2.2/24")
        _relay_ns(t, kn)
        work = tmp_path / "kea"
        work.mkdir()
        conf = work / "kea-dhcp4.conf"
        conf.write_text(json.dumps(kea_conf(work)))
        env = dict(os.environ, KEA_PIDFILE_DIR=str(work), KEA_LOCKFILE_DIR=str(work))
        with open(work / "kea.stdout", "wb") as f:
            proc = t.popen(srv, ["kea-dhcp4", "-c", str(conf)], env=env, stdout=f,
                           stderr=subprocess.STDOUT)
        wait_for(lambda: proc.poll() is not None or "DHCP4_STARTED" in
                 (work / "kea.log").read_text(errors="replace") if (work / "kea.log").exists()
                 else False, 30, what="kea-dhcp4 started")
        assert proc.poll() is None, (work / "kea.stdout").read_text()
        kea = scenario(lambda port: Relay(kn, port))

    assert mine["link_selection"] == kea["link_selection"]
    assert mine["shared"] == kea["shared"]
    assert mine["relay_port"] == kea["relay_port"] == 2
    # Where we differ on purpose: Kea 2.2 ignores RFC 5107's sub-option and answers with
    # its own identifier; we give the relay's, so that renewals go through the relay
    # (which relays them to whichever device of the pair is master). Both ACK.
    assert mine["override"] == ("192.0.2.3", 5, "192.0.2.3")
    assert kea["override"] == ("192.0.2.2", 5, "192.0.2.2")
