"""Options, classes and hosts against Kea 2.2: the same configuration in both, the same
requests sent with scapy, the replies' options compared one by one.

    lan-ours ── ours: eth1 192.0.2.2, `dhcp-hotbackup run`     ── cli-ours 192.0.2.9
    lan-kea  ── kea:  eth1 192.0.2.2, kea-dhcp4 (raw sockets)  ── cli-kea  192.0.2.9

Each server has a LAN of its own, with the same addresses, so the replies are alike down
to the server identifier, and each request reaches exactly one server (the one a scapy
exchange waits for). The requests: a plain client asking for every option configured, a
set-top box and a phone (classes on option 60), a host by MAC, a host by Option 82
circuit-id through a relay (giaddr 192.0.2.9), and clients asking for their own lease
time (within min/max). Where we differ from Kea on purpose, DIFFERENCES says why, and the
test holds both servers to it.

Kea 2.2 has no definitions for options 121, 150 and 252 (they came later): Kea is given
them by code as hex, the same bytes ours encodes from text. Option 43 and 125 are given
to Kea as hex too (its sub-option spaces need option definitions of their own): the test
compares the bytes sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.dhcp import options as o
from appliance.dhcp.enums import BROADCAST_FLAG, MessageType
from appliance.dhcp.message import DhcpMessage
from appliance.testing.daemonfiles import CLI
from appliance.testing.dhcpreq import request
from appliance.testing.netns import Netns, Topology, wait_for
from appliance.testing.require import require_root, require_tools
from appliance.testing.trees import standalone_tree
from lab.clients import link_macs, scapy_exchange
from lab.kea import start_kea

pytestmark = [pytest.mark.netns]

SERVER_IP, CLI_IP = "192.0.2.2", "192.0.2.9"
ROUTES = ["10.0.0.0/8 192.0.2.1", "0.0.0.0/0 192.0.2.1"]
VENDOR43 = ["1 string http://acs.example.net:7547", "2 address 192.0.2.7"]
VIVSO = ["3561 1 string http://acs.example.net:7547"]
PHONE = "Cisco Systems, Inc. IP Phone CP-7945G"

OURS = {
    "options/ntp-servers": "192.0.2.123",
    "options/domain-search": "example.net, eng.example.net",
    "options/classless-static-route": "\n".join(ROUTES),
    "options/wpad-proxy-url": "http://wpad.example.net/wpad.dat",
    "options/interface-mtu": "1492",
    "pools/lan/min_lease_time": "600", "pools/lan/max_lease_time": "7200",
    "pools/lan/renew_time": "300", "pools/lan/rebind_time": "500",
    "pools/lan/options/tftp-server-name": "pool-tftp",
    "pools/lan/options/vendor-encapsulated-options": "\n".join(VENDOR43),
    "pools/lan/options/vivso-suboptions": "\n".join(VIVSO),
    "classes/stb/vendor_class": "STB-*",
    "classes/stb/options/boot-file-name": "stb.cfg",
    "classes/stb/options/tftp-server-name": "stb-tftp",
    "classes/phone/vendor_class": PHONE,
    "classes/phone/options/tftp-server-address": "192.0.2.69",
    "hosts/pc1/mac": "02:00:00:00:00:a1", "hosts/pc1/address": "192.0.2.50",
    "hosts/pc1/hostname": "pc-1", "hosts/pc1/options/boot-file-name": "pc1.cfg",
    "hosts/port5/circuit_id": "port5", "hosts/port5/address": "192.0.2.60",
    "hosts/port5/hostname": "cpe-5", "hosts/port5/options/ntp-servers": "192.0.2.124",
}


def _hex(fname: str, lines: list[str]) -> str:
    return o.parse_option_file(fname, lines)[1].hex()


def kea_conf(work: Path) -> dict:
    """OURS in Kea's words."""
    return {"Dhcp4": {
        "interfaces-config": {"interfaces": ["eth1"], "dhcp-socket-type": "raw"},
        "lease-database": {"type": "memfile", "persist": False},
        "valid-lifetime": 3600, "min-valid-lifetime": 600, "max-valid-lifetime": 7200,
        "renew-timer": 300, "rebind-timer": 500,
        "host-reservation-identifiers": ["hw-address", "circuit-id", "client-id"],
        "option-data": [
            {"name": "ntp-servers", "data": "192.0.2.123"},
            {"name": "domain-search", "data": "example.net, eng.example.net"},
            {"code": 121, "csv-format": False,
             "data": _hex("classless-static-route", ROUTES)},
            {"code": 252, "csv-format": False,
             "data": b"http://wpad.example.net/wpad.dat".hex()},
            {"name": "interface-mtu", "data": "1492"},
        ],
        "client-classes": [
            {"name": "stb", "test": "substring(option[60].hex,0,4) == 'STB-'",
             "option-data": [{"name": "boot-file-name", "data": "stb.cfg"},
                             {"name": "tftp-server-name", "data": "stb-tftp"}]},
            {"name": "phone", "test": f"option[60].text == '{PHONE}'",
             "option-data": [{"code": 150, "csv-format": False, "data": "c0000245"}]},
        ],
        "subnet4": [{
            "id": 1, "subnet": "192.0.2.0/24",
            "pools": [{"pool": "192.0.2.100 - 192.0.2.199"}],
            "option-data": [
                {"name": "routers", "data": "192.0.2.1"},
                {"name": "domain-name-servers", "data": "192.0.2.53"},
                {"name": "domain-name", "data": "example.net"},
                {"name": "tftp-server-name", "data": "pool-tftp"},
                {"code": 43, "csv-format": False,
                 "data": _hex("vendor-encapsulated-options", VENDOR43)},
                {"name": "vivso-suboptions", "csv-format": False,
                 "data": _hex("vivso-suboptions", VIVSO)},
            ],
            "reservations": [
                {"hw-address": "02:00:00:00:00:a1", "ip-address": "192.0.2.50",
                 "hostname": "pc-1",
                 "option-data": [{"name": "boot-file-name", "data": "pc1.cfg"}]},
                {"circuit-id": "'port5'", "ip-address": "192.0.2.60", "hostname": "cpe-5",
                 "option-data": [{"name": "ntp-servers", "data": "192.0.2.124"}]},
            ],
        }],
        "loggers": [{"name": "kea-dhcp4", "severity": "WARN",
                     "output_options": [{"output": str(work / "kea.log")}]}],
    }}


@dataclass
class Side:
    name: str
    cli: Netns
    server_mac: str


@dataclass
class Lab:
    t: Topology
    ours: Side
    kea: Side


def _side(t: Topology, name: str) -> tuple[Netns, Netns]:
    lan = t.lan(f"lan{name}")
    srv = t.host(name)
    t.attach(srv, lan, "eth1", f"{SERVER_IP}/24")
    cli = t.host(f"cli{name}")
    t.attach(cli, lan, "eth0", f"{CLI_IP}/24", mac="02:00:00:00:ee:09")
    return srv, cli


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[Lab]:
    require_root()
    require_tools("kea-dhcp4")
    root = tmp_path_factory.mktemp("opt-kea")
    with Topology("ok") as t:
        srv, cli_ours = _side(t, "o")
        kea, cli_kea = _side(t, "k")
        etc = standalone_tree(root / "ours", extra=OURS)
        log = open(root / "ours.log", "ab")
        ours = t.popen(srv, [CLI, "run", "--config", str(etc)], stdout=log, stderr=log)
        run = root / "ours" / "run" / "role"
        wait_for(lambda: ours.poll() is None and run.exists()
                 and run.read_text().strip() == "active", 30, what="our daemon active")
        kp = start_kea(t, kea, root / "kea", kea_conf(root / "kea"))

        def kea_up() -> bool:
            if kp.poll() is not None:
                raise AssertionError("kea-dhcp4 exited: "
                                     + (root / "kea" / "kea.stdout").read_text())
            return "kea-dhcp4" in t.run(kea, ["ss", "-lunp"], check=False).stdout

        wait_for(kea_up, 30, what="kea-dhcp4 listening")
        yield Lab(t, Side("ours", cli_ours, link_macs(t, srv)["eth1"]),
                  Side("kea", cli_kea, link_macs(t, kea)["eth1"]))
        assert t.stop(ours, timeout=15) == 0, (root / "ours.log").read_text()[-3000:]
        t.stop(kp)


ASK = bytes([1, 3, 6, 15, 12, 26, 42, 43, 66, 67, 119, 121, 125, 150, 252])


@dataclass
class Case:
    name: str
    mac: str
    options: dict[int, bytes]
    relayed: bool = False
    fixed: str | None = None  # the address both must offer


CASES = [
    Case("plain", "02:00:00:00:10:01", {}),
    Case("stb", "02:00:00:00:10:02", {60: b"STB-1000"}),
    Case("phone", "02:00:00:00:10:03", {60: PHONE.encode()}),
    Case("host-mac", "02:00:00:00:00:a1", {}, fixed="192.0.2.50"),
    Case("host-circuit", "02:00:00:00:10:05", {82: o.encode_relay_info([(1, b"port5")])},
         relayed=True, fixed="192.0.2.60"),
    Case("lease-5000", "02:00:00:00:10:06", {51: (5000).to_bytes(4, "big")}),
    Case("lease-60", "02:00:00:00:10:07", {51: (60).to_bytes(4, "big")}),
    Case("lease-1e6", "02:00:00:00:10:08", {51: (10**6).to_bytes(4, "big")}),
]

# (case, option) -> why we differ, and what each sends.
DIFFERENCES = {
    # DESIGN.md: the most specific level wins, and a class is more specific than a pool
    # (a vendor's TFTP server for its boxes in a pool serving every vendor). Kea 2.2
    # puts subnet and pool options above class options.
    ("stb", 66): ("class beats pool here; Kea's subnet beats its class", "stb-tftp",
                  "pool-tftp"),
}


def _frame(case: Case, xid: int, server_mac: str) -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    msg = request(MessageType.DISCOVER, case.mac, xid=xid, prl=ASK, options=case.options,
                  giaddr=CLI_IP if case.relayed else "0.0.0.0",
                  flags=0 if case.relayed else BROADCAST_FLAG)
    if case.relayed:
        # a relay agent forwards to the server's address, from port 67 (RFC 1542 §4.1)
        pkt = Ether(src="02:00:00:00:ee:09", dst=server_mac) / \
            IP(src=CLI_IP, dst=SERVER_IP) / UDP(sport=67, dport=67)
    else:
        pkt = Ether(src=case.mac, dst="ff:ff:ff:ff:ff:ff") / \
            IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
    return bytes(pkt / Raw(msg.encode()))


def _offers(lab: Lab, side: Side) -> dict[str, DhcpMessage]:
    from scapy.layers.l2 import Ether

    xids = {0x5000 + i: c for i, c in enumerate(CASES)}
    frames = [_frame(c, x, side.server_mac) for x, c in xids.items()]
    raw = scapy_exchange(lab.t, side.cli, "eth0", frames, list(xids), timeout=30)
    out: dict[str, DhcpMessage] = {}
    for r in raw:
        m = DhcpMessage.decode(bytes(Ether(r)["UDP"].payload))
        if m.xid in xids and m.message_type == MessageType.OFFER:
            out.setdefault(xids[m.xid].name, m)
    missing = [c.name for c in CASES if c.name not in out]
    assert not missing, f"{side.name} sent no OFFER for {missing}"
    return out


def _value(code: int, raw: bytes) -> object:
    """What a client makes of an option: its typed value (the domain search list as
    names: ours is compressed, RFC 3397 §2, Kea 2.2's is not)."""
    try:
        return o.decode_option(code, raw)
    except o.OptionError:
        return raw


@pytest.fixture(scope="module")
def replies(lab: Lab) -> dict[str, dict[str, DhcpMessage]]:
    return {"ours": _offers(lab, lab.ours), "kea": _offers(lab, lab.kea)}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_options_match_kea_one_by_one(replies, case):
    ours, kea = replies["ours"][case.name], replies["kea"][case.name]
    if case.fixed:
        assert str(IPv4Address(ours.yiaddr)) == str(IPv4Address(kea.yiaddr)) == case.fixed
    codes = sorted(set(ours.options) | set(kea.options))
    problems = []
    for code in codes:
        a, b = ours.options.get(code), kea.options.get(code)
        why = DIFFERENCES.get((case.name, code))
        if why is not None:
            _text, want_ours, want_kea = why
            assert (_value(code, a or b""), _value(code, b or b"")) == (want_ours, want_kea)
            continue
        if a is None or b is None or _value(code, a) != _value(code, b):
            problems.append(f"option {code} ({o.option_name(code)}): ours "
                            f"{o.format_option(code, a) if a is not None else 'absent'}, kea "
                            f"{o.format_option(code, b) if b is not None else 'absent'}")
    assert not problems, f"{case.name}:\n" + "\n".join(problems)


def test_what_the_cases_exercise(replies):
    """The comparison is not vacuous: the levels, classes and hosts show in the replies."""
    ours = {n: {c: _value(c, v) for c, v in m.options.items()}
            for n, m in replies["ours"].items()}
    assert ours["plain"][121][0][0].prefixlen == 8 and ours["plain"][66] == "pool-tftp"
    assert ours["stb"][67] == "stb.cfg"
    assert ours["phone"][150] == [IPv4Address("192.0.2.69")]
    assert ours["host-mac"][67] == "pc1.cfg" and ours["host-mac"][12] == "pc-1"
    assert ours["host-circuit"][42] == [IPv4Address("192.0.2.124")]
    assert ours["host-circuit"][12] == "cpe-5"
    assert [ours[n][51] for n in ("lease-5000", "lease-60", "lease-1e6")] == [5000, 600, 7200]
    assert (ours["plain"][58], ours["plain"][59]) == (300, 500)
