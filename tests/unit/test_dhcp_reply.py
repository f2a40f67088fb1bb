"""Options, classes and hosts end to end in pure code: a config tree written to disk,
read by config/tree.py (through dhcp/options.py's table), compiled (dhcp/reply.py) and
answered by the server. What a client would see is what is asserted: the options of the
reply, decoded with the same table, and the address it gets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from appliance.config.model import Config
from appliance.config.tree import ConfigError, load, write_tree
from appliance.dhcp import options as o
from appliance.dhcp.enums import MessageType, Note, Opt, Reason
from appliance.dhcp.message import DhcpMessage
from appliance.dhcp.server import DhcpServer, Ingress
from appliance.leases.allocator import Allocator
from appliance.leases.model import LeaseState
from appliance.leases.pool import Pools
from appliance.leases.table import LeaseTable

SID = IPv4Address("192.0.2.1").packed
ZERO = bytes(4)
T0 = 1_700_000_000.0
INGRESS = Ingress(local_ips=(int(IPv4Address("192.0.2.1")),), server_ids=(SID,))
MAC1 = bytes.fromhex("020000000001")
MAC2 = bytes.fromhex("020000000002")
RELAY = IPv4Address("198.51.100.1").packed

BASE = {
    "interfaces/eth1/.keep": "",
    "pools/lan/subnet": "192.0.2.0/24",
    "pools/lan/range": "192.0.2.100-192.0.2.103",
    "pools/lan/router": "192.0.2.1",
    "pools/lan/lease_time": "3600",
    "pools/far/subnet": "198.51.100.0/24",
    "pools/far/range": "198.51.100.100-198.51.100.110",
}


def tree(tmp_path: Path, extra: dict[str, str]) -> Config:
    root = tmp_path / "etc"
    write_tree(root, {**BASE, **extra})
    return load(root)


def server(cfg: Config) -> DhcpServer:
    pools = Pools.from_config(cfg.pools, cfg.host_addresses())
    table = LeaseTable(origin="A")
    return DhcpServer(pools, table, Allocator(pools, table), cfg=cfg)


def msg(mtype: int, mac: bytes = MAC1, *, giaddr: bytes = ZERO, ciaddr: bytes = ZERO,
        **opts: bytes) -> DhcpMessage:
    op: dict[int, bytes] = {Opt.MESSAGE_TYPE: bytes([mtype])}
    for k, v in opts.items():
        op[int(k[1:]) if k[0] == "o" and k[1:].isdigit() else Opt[k.upper()]] = v
    return DhcpMessage(op=1, htype=1, hlen=6, hops=0, xid=7, secs=0, flags=0,
                       ciaddr=ciaddr, yiaddr=ZERO, siaddr=ZERO, giaddr=giaddr,
                       chaddr=mac + bytes(10), sname=bytes(64), file=bytes(128), options=op)


def offer(s: DhcpServer, mac: bytes = MAC1, **opts: bytes) -> DhcpMessage:
    d = s.handle(msg(MessageType.DISCOVER, mac, **opts), INGRESS, T0)
    assert d.sent == "offer", d
    return d.reply


def seen(reply: DhcpMessage) -> dict[int, object]:
    """The reply as a client decodes it: wire bytes back through the codec (overload
    and RFC 3396 instances joined), each option typed by the table."""
    back = DhcpMessage.decode(reply.encode())
    return {c: o.decode_option(c, v) for c, v in back.options.items()}


def prl(*codes: int) -> bytes:
    return bytes(codes)


# -- option files -------------------------------------------------------------------------
@pytest.mark.parametrize("fname,lines,code,value", [
    ("routers", ["192.0.2.1", "192.0.2.2"], 3, [IPv4Address("192.0.2.1"),
                                                IPv4Address("192.0.2.2")]),
    ("domain-name-servers", ["192.0.2.53, 192.0.2.54"], 6,
     [IPv4Address("192.0.2.53"), IPv4Address("192.0.2.54")]),
    ("ntp-servers", ["192.0.2.123"], 42, [IPv4Address("192.0.2.123")]),
    ("interface-mtu", ["1492"], 26, 1492),
    ("ip-forwarding", ["false"], 19, False),
    ("time-offset", ["-3600"], 2, -3600),
    ("domain-search", ["example.net", "eng.example.net"], 119,
     ["example.net", "eng.example.net"]),
    ("classless-static-route", ["10.0.0.0/8 - 192.0.2.1", "0.0.0.0/0 192.0.2.1"], 121,
     [(IPv4Network("10.0.0.0/8"), IPv4Address("192.0.2.1")),
      (IPv4Network("0.0.0.0/0"), IPv4Address("192.0.2.1"))]),
    ("249", ["172.16.0.0/12 192.0.2.1"], 249,
     [(IPv4Network("172.16.0.0/12"), IPv4Address("192.0.2.1"))]),
    ("tftp-server-name", ["tftp.example.net"], 66, "tftp.example.net"),
    ("boot-file-name", ["pxelinux.0"], 67, "pxelinux.0"),
    ("tftp-server-address", ["192.0.2.69"], 150, [IPv4Address("192.0.2.69")]),
    ("wpad-proxy-url", ["http://wpad.example.net/wpad.dat"], 252,
     "http://wpad.example.net/wpad.dat"),
    ("vendor-encapsulated-options", ["1 string http://acs.example.net", "2 address 192.0.2.7"],
     43, [(1, b"http://acs.example.net"), (2, IPv4Address("192.0.2.7").packed)]),
    ("vivso-suboptions", ["3561 1 string acs", "3561 2 u16 7547", "4491 1 hex 0102"], 125,
     [(3561, [(1, b"acs"), (2, b"\x1d\x7b")]), (4491, [(1, b"\x01\x02")])]),
    ("vivco-suboptions", ["3561 string dslforum.org"], 124, [(3561, [b"dslforum.org"])]),
    ("224.u32", ["7"], 224, b"\x00\x00\x00\x07"),
    ("225.addresses", ["192.0.2.1,192.0.2.2"], 225, bytes.fromhex("c0000201c0000202")),
    ("226.hex", ["0a:0b:0c"], 226, b"\x0a\x0b\x0c"),
    ("227.bool", ["1"], 227, b"\x01"),
    ("228.routes", ["192.0.2.128/25 192.0.2.1"], 228,
     bytes.fromhex("19c0000280c0000201")),
    ("43.hex", ["0x0102"], 43, b"\x01\x02"),
])
def test_option_files(fname, lines, code, value):
    c, raw = o.parse_option_file(fname, lines)
    assert c == code
    if isinstance(value, bytes):
        assert raw == value
    else:
        assert o.decode_option(code, raw) == value


@pytest.mark.parametrize("fname,lines,why", [
    ("routers", ["192.0.2.300"], "'192.0.2.300' is not an IPv4 address"),
    ("interface-mtu", ["70000"], "70000 is out of range for uint16"),
    ("224", ["1"], "option 224 has no standard definition: name its type"),
    ("224.u64", ["1"], "unknown type 'u64'"),
    ("dhcp-lease-time", ["60"], "pools/<p>/lease_time"),
    ("dhcp-server-identifier", ["192.0.2.9"], "virtual_ip"),
    ("classless-static-route", ["10.0.0.1/8 192.0.2.1"], "no host bits"),
    ("classless-static-route", ["10.0.0.0/8"], "is not a route"),
    ("vendor-encapsulated-options", ["1 float 2"], "not a sub-option type"),
    ("no-such-option", ["1"], "neither a standard option name nor a code"),
    ("0", ["1"], "not in 1..254"),
    ("domain-name", ["a", "b"], "expected one line"),
    ("domain-search", ["exa mple.net"], "not a domain name"),
    ("ip-forwarding", ["maybe"], "not a boolean"),
    ("routers", ["192.0.2.1,"], "empty item"),
])
def test_option_file_errors_say_what_is_wrong(fname, lines, why):
    with pytest.raises(o.OptionError, match=why):
        o.parse_option_file(fname, lines)


def test_check_config_names_the_file_and_the_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        tree(tmp_path, {"options/ntp-servers": "192.0.2.300",
                        "pools/lan/options/routers": "192.0.2.9",
                        "classes/x/options/classless-static-route": "10.0.0.0/8 nowhere",
                        "hosts/h/mac": "02:00:00:00:00:09",
                        "hosts/h/options/224": "7"})
    text = str(e.value)
    assert "etc/options/ntp-servers: '192.0.2.300': '192.0.2.300' is not an IPv4 address" \
        in text
    assert "pools/lan/options/routers: option 3 is set twice: by pools/lan/router too" in text
    assert "classes/x/options/classless-static-route: '10.0.0.0/8 nowhere'" in text
    assert "classes/x: no criterion" in text
    assert "hosts/h/options/224: '7': option 224 has no standard definition" in text


def test_two_files_for_one_option_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"option 42 \(ntp-servers\) is set twice"):
        tree(tmp_path, {"options/ntp-servers": "192.0.2.1", "options/42": "192.0.2.2"})


# -- levels -------------------------------------------------------------------------------
LEVELS = {
    "options/ntp-servers": "192.0.2.123",
    "options/domain-name": "global.example",
    "options/tftp-server-name": "global-tftp",
    "options/boot-file-name": "global.cfg",
    "pools/lan/options/domain-name": "pool.example",
    "pools/lan/options/tftp-server-name": "pool-tftp",
    "pools/lan/options/boot-file-name": "pool.cfg",
    "classes/stb/vendor_class": "STB-*",
    "classes/stb/options/tftp-server-name": "stb-tftp",
    "classes/stb/options/boot-file-name": "stb.cfg",
    "hosts/box1/mac": "02:00:00:00:00:01",
    "hosts/box1/options/boot-file-name": "box1.cfg",
}
ASK = prl(1, 3, 6, 15, 42, 66, 67)


def test_the_most_specific_level_wins(tmp_path):
    s = server(tree(tmp_path, LEVELS))
    # MAC2: no class, no host: global, then pool
    r = seen(offer(s, MAC2, param_request_list=ASK))
    assert r[42] == [IPv4Address("192.0.2.123")]  # global only
    assert r[15] == "pool.example" and r[66] == "pool-tftp" and r[67] == "pool.cfg"
    # MAC2 in class stb: the class beats the pool
    r = seen(offer(s, MAC2, param_request_list=ASK, vendor_class=b"STB-1000"))
    assert r[66] == "stb-tftp" and r[67] == "stb.cfg" and r[15] == "pool.example"
    # MAC1 is host box1 and in class stb: the host beats the class
    r = seen(offer(s, MAC1, param_request_list=ASK, vendor_class=b"STB-1000"))
    assert r[67] == "box1.cfg" and r[66] == "stb-tftp"


def test_a_client_outside_every_pool_level_gets_the_global_options_through_inform(tmp_path):
    s = server(tree(tmp_path, LEVELS))
    d = s.handle(msg(MessageType.INFORM, MAC2, ciaddr=IPv4Address("192.0.2.40").packed,
                     param_request_list=ASK), INGRESS, T0)
    r = seen(d.reply)
    assert 51 not in r and r[42] == [IPv4Address("192.0.2.123")]


def test_the_parameter_request_list_decides_what_is_sent(tmp_path):
    s = server(tree(tmp_path, LEVELS))
    r = seen(offer(s, MAC2, param_request_list=prl(42)))
    # asked: 42; always: 1, 3, 15 (Kea's basic options); the musts: 53, 54, 51, 58, 59
    assert set(r) == {53, 54, 51, 58, 59, 42, 1, 3, 15}
    r = seen(offer(s, MAC2))  # no PRL at all
    assert set(r) == {53, 54, 51, 58, 59, 1, 3, 15}
    # order: the client's
    back = DhcpMessage.decode(offer(s, MAC2, param_request_list=prl(67, 42, 66)).encode())
    asked = [c for c in back.options if c in (42, 66, 67)]
    assert asked == [67, 42, 66]


# -- lease times ----------------------------------------------------------------------------
TIMES = {"pools/lan/lease_time": "3600", "pools/lan/min_lease_time": "600",
         "pools/lan/max_lease_time": "7200", "pools/lan/renew_time": "300",
         "pools/lan/rebind_time": "500"}


@pytest.mark.parametrize("asked,got", [(None, 3600), (60, 600), (5000, 5000), (10**6, 7200)])
def test_requested_lease_time_within_min_and_max(tmp_path, asked, got):
    s = server(tree(tmp_path, TIMES))
    opts = {} if asked is None else {"lease_time": asked.to_bytes(4, "big")}
    r = seen(offer(s, MAC2, **opts))
    assert r[51] == got and r[58] == 300 and r[59] == 500
    ack = s.handle(msg(MessageType.REQUEST, MAC2, requested_ip=IPv4Address(
        str(IPv4Address(offer(s, MAC2, **opts).yiaddr))).packed, server_id=SID, **opts),
        INGRESS, T0)
    assert ack.commits[-1].expires == T0 + got


def test_t1_t2_default_to_half_and_seven_eighths_without_a_setting(tmp_path):
    r = seen(offer(server(tree(tmp_path, {"pools/lan/lease_time": "800"})), MAC2))
    assert (r[51], r[58], r[59]) == (800, 400, 700)


def test_t1_t2_beyond_a_short_requested_lease_fall_back(tmp_path):
    s = server(tree(tmp_path, {**TIMES, "pools/lan/renew_time": "500",
                               "pools/lan/rebind_time": "550"}))
    r = seen(offer(s, MAC2, lease_time=(600).to_bytes(4, "big")))
    assert r[51] == 600 and r[58] == 500 and r[59] == 550
    with pytest.raises(ConfigError, match="T1 must be below the shortest lease"):
        tree(tmp_path / "x", {**TIMES, "pools/lan/renew_time": "600"})
    with pytest.raises(ConfigError, match="min_lease_time: '4000': must not exceed"):
        tree(tmp_path / "y", {**TIMES, "pools/lan/min_lease_time": "4000"})


# -- size: RFC 3396 and overload ---------------------------------------------------------
ROUTES = "\n".join(f"10.{i}.0.0/16 192.0.2.1" for i in range(60))  # 60 * 8 = 480 bytes


def test_a_long_option_is_split_and_joined_again(tmp_path):
    s = server(tree(tmp_path, {"options/classless-static-route": ROUTES}))
    rep = offer(s, MAC2, param_request_list=prl(121), max_message_size=(1500).to_bytes(2, "big"))
    wire = rep.encode()
    assert wire.count(bytes((121, 255))) == 1  # 480 bytes: 255 + 225 (RFC 3396 §5)
    assert seen(rep)[121][59] == (IPv4Network("10.59.0.0/16"), IPv4Address("192.0.2.1"))


def test_overload_when_the_client_accepts_only_576_bytes(tmp_path):
    routes = "\n".join(ROUTES.splitlines()[:30])  # 240 bytes
    s = server(tree(tmp_path, {"options/classless-static-route": routes,
                               "options/tftp-server-name": "t" * 40,
                               "options/boot-file-name": "b" * 60,
                               "options/ntp-servers": "192.0.2.123"}))
    rep = offer(s, MAC2, param_request_list=prl(121, 66, 67, 42))
    wire = rep.encode()
    assert len(wire) <= 576 - 28
    back = DhcpMessage.decode(wire)
    assert back.overload in (1, 3)  # options continue in file (and sname), RFC 2132 §9.3
    r = seen(rep)
    assert len(r[121]) == 30 and r[66] == "t" * 40 and r[67] == "b" * 60
    assert r[54] == IPv4Address("192.0.2.1")
    assert s._notes == []  # nothing dropped
    # a client that accepts more gets it all in the options field
    big = offer(s, MAC2, param_request_list=prl(121, 66, 67, 42),
                max_message_size=(1500).to_bytes(2, "big"))
    assert DhcpMessage.decode(big.encode()).overload == 0


def test_what_fits_nowhere_is_left_out_and_counted(tmp_path):
    long = "\n".join(f"10.{i}.{j}.0/24 192.0.2.1" for i in range(2) for j in range(60))
    s = server(tree(tmp_path, {"options/classless-static-route": long[:0] + "\n".join(
        long.splitlines()[:110])}))
    d = s.handle(msg(MessageType.DISCOVER, MAC2, param_request_list=prl(121)), INGRESS, T0)
    assert Note.OPTIONS_DROPPED in d.notes
    assert len(d.reply.encode()) <= 548 and 121 not in seen(d.reply)


# -- hosts ----------------------------------------------------------------------------------
HOSTS = {
    "hosts/pc/mac": "02:00:00:00:00:01", "hosts/pc/address": "192.0.2.50",
    "hosts/pc/hostname": "pc-1",
    "hosts/cid/client_id": "0x01ff00000000ee", "hosts/cid/address": "192.0.2.51",
    "hosts/port5/circuit_id": "eth0/1/5", "hosts/port5/relay": "198.51.100.1",
    "hosts/port5/address": "198.51.100.105",
    "hosts/port5/options/boot-file-name": "port5.cfg",
    "hosts/modem/remote_id": "0x001122334455", "hosts/modem/address": "198.51.100.20",
    # inside the range: never handed to anyone else
    "hosts/inrange/mac": "02:00:00:00:00:77", "hosts/inrange/address": "192.0.2.100",
}


def rai(circuit: bytes | None = None, remote: bytes | None = None) -> bytes:
    subs = []
    if circuit is not None:
        subs.append((1, circuit))
    if remote is not None:
        subs.append((2, remote))
    return o.encode_relay_info(subs)


def test_host_by_mac_gets_its_address_and_name(tmp_path):
    s = server(tree(tmp_path, HOSTS))
    r = offer(s, MAC1, param_request_list=prl(12))
    assert IPv4Address(r.yiaddr) == IPv4Address("192.0.2.50")
    assert seen(r)[12] == "pc-1"
    # a name only when asked for (or when the client sent its own)
    assert 12 not in seen(offer(s, MAC1))
    assert seen(offer(s, MAC1, hostname=b"mine"))[12] == "pc-1"


def test_host_by_client_id(tmp_path):
    s = server(tree(tmp_path, HOSTS))
    r = offer(s, MAC2, client_id=bytes.fromhex("01ff00000000ee"))
    assert IPv4Address(r.yiaddr) == IPv4Address("192.0.2.51")


def test_host_by_circuit_id_is_the_port_whatever_device_is_plugged_in(tmp_path):
    s = server(tree(tmp_path, HOSTS))
    port = rai(b"eth0/1/5")
    yi = offer(s, MAC2, giaddr=RELAY, relay_agent_info=port).yiaddr
    assert IPv4Address(yi) == IPv4Address("198.51.100.105")
    ack = s.handle(msg(MessageType.REQUEST, MAC2, giaddr=RELAY, relay_agent_info=port,
                       requested_ip=yi, server_id=SID, param_request_list=prl(67)),
                   INGRESS, T0)
    assert ack.sent == "ack" and seen(ack.reply)[67] == "port5.cfg"
    # the device is swapped: the new one gets the port's address, the old binding ends
    mac3 = bytes.fromhex("02000000cc03")
    yi3 = offer(s, mac3, giaddr=RELAY, relay_agent_info=port).yiaddr
    assert yi3 == yi
    ack = s.handle(msg(MessageType.REQUEST, mac3, giaddr=RELAY, relay_agent_info=port,
                       requested_ip=yi, server_id=SID), INGRESS, T0 + 5)
    assert ack.sent == "ack"
    old, new = ack.commits
    assert old.mac == MAC2 and old.state == LeaseState.RELEASED
    assert new.mac == mac3 and new.state == LeaseState.BOUND and new.ip == old.ip
    # through another relay the circuit-id is another port: a dynamic address
    other = IPv4Address("198.51.100.2").packed
    yi4 = offer(s, bytes.fromhex("02000000cc04"), giaddr=other, relay_agent_info=port).yiaddr
    assert IPv4Address(yi4) != IPv4Address("198.51.100.105")


def test_host_by_remote_id(tmp_path):
    s = server(tree(tmp_path, HOSTS))
    yi = offer(s, MAC2, giaddr=RELAY,
               relay_agent_info=rai(b"x", bytes.fromhex("001122334455"))).yiaddr
    assert IPv4Address(yi) == IPv4Address("198.51.100.20")


def test_option82_from_a_client_on_the_link_is_no_port(tmp_path):
    s = server(tree(tmp_path, {**HOSTS, "hosts/lanport/circuit_id": "p1",
                               "hosts/lanport/address": "192.0.2.60"}))
    yi = offer(s, MAC2, relay_agent_info=rai(b"p1")).yiaddr
    assert IPv4Address(yi) != IPv4Address("192.0.2.60")


def test_a_host_address_is_never_handed_to_another_client(tmp_path):
    s = server(tree(tmp_path, HOSTS))
    got = set()
    for i in range(3):
        m = bytes.fromhex(f"0200000010{i:02x}")
        d = s.handle(msg(MessageType.DISCOVER, m), INGRESS, T0)
        got.add(IPv4Address(d.reply.yiaddr))
    assert IPv4Address("192.0.2.100") not in got and len(got) == 3
    d = s.handle(msg(MessageType.DISCOVER, bytes.fromhex("020000001099")), INGRESS, T0)
    assert d.reason is Reason.POOL_EXHAUSTED  # 4 in the range, one a host's
    # asking for it by option 50 does not get it either
    d = s.handle(msg(MessageType.REQUEST, MAC2, requested_ip=IPv4Address("192.0.2.100").packed,
                     server_id=SID), INGRESS, T0)
    assert d.reason is Reason.NAK_RESERVED


def test_a_host_renewing_another_address_is_moved_to_its_own(tmp_path):
    s = server(tree(tmp_path, {}))
    yi = offer(s, MAC1).yiaddr
    assert s.handle(msg(MessageType.REQUEST, MAC1, requested_ip=yi, server_id=SID),
                    INGRESS, T0).sent == "ack"
    cfg = tree(tmp_path / "new", HOSTS)
    s.set_pools(Pools.from_config(cfg.pools, cfg.host_addresses()), cfg)
    d = s.handle(msg(MessageType.REQUEST, MAC1, ciaddr=yi), INGRESS, T0 + 60)
    assert d.reason is Reason.NAK_FIXED_ADDRESS
    assert IPv4Address(offer(s, MAC1).yiaddr) == IPv4Address("192.0.2.50")


@pytest.mark.parametrize("extra,why", [
    ({"hosts/a/mac": "02:00:00:00:00:01", "hosts/a/circuit_id": "x"}, "exactly one of"),
    ({"hosts/a/address": "192.0.2.5"}, "exactly one of"),
    ({"hosts/a/mac": "02:00:00:00:00:01", "hosts/a/address": "203.0.113.5"},
     "outside every pool's subnet"),
    ({"hosts/a/mac": "02:00:00:00:00:01", "hosts/a/address": "192.0.2.5",
      "hosts/b/mac": "02:00:00:00:00:02", "hosts/b/address": "192.0.2.5"}, "reserved twice"),
    ({"hosts/a/mac": "02:00:00:00:00:01", "hosts/b/mac": "02:00:00:00:00:01"},
     "the same mac as hosts/a"),
    ({"hosts/a/mac": "02:00:00:00:00:01", "hosts/a/relay": "198.51.100.1"},
     "only a circuit_id or remote_id host"),
    ({"hosts/a/mac": "02:00:00:00:00:01", "hosts/a/address": "192.0.2.255"},
     "broadcast address"),
])
def test_host_errors(tmp_path, extra, why):
    with pytest.raises(ConfigError, match=why):
        tree(tmp_path, extra)


def test_hosts_are_in_the_drift_summary_and_not_leases(tmp_path):
    from appliance.config.model import drift_summary
    cfg = tree(tmp_path, HOSTS)
    d = dict(drift_summary(cfg))
    assert d["hosts/port5/circuit_id"] == b"eth0/1/5".hex()
    assert d["hosts/port5/options/boot-file-name"] == b"port5.cfg".hex()


# -- classes --------------------------------------------------------------------------------
CLASSES = {
    "classes/a-stb/vendor_class": "STB-*",
    "classes/a-stb/options/tftp-server-name": "stb-tftp",
    "classes/b-phone/vendor_class": "Cisco Systems, Inc. IP Phone CP-7945G",
    "classes/b-phone/options/tftp-server-address": "192.0.2.69",
    "classes/b-phone/options/tftp-server-name": "phone-tftp",
    "classes/c-ipxe/user_class": "iPXE",
    "classes/c-ipxe/options/boot-file-name": "http://boot.example.net/menu.ipxe",
    "classes/d-port/circuit_id": "eth0/1/*",
    "classes/d-port/relay": "198.51.100.0/28",
    "classes/d-port/options/domain-name": "port.example",
    "classes/e-oui/mac_prefix": "00:1a:2b",
    "classes/e-oui/options/ntp-servers": "192.0.2.124",
    "classes/f-rid/remote_id": "0xaabb*",
    "classes/f-rid/options/domain-name": "rid.example",
}


def test_classes_match_and_add_options(tmp_path):
    s = server(tree(tmp_path, CLASSES))
    ask = prl(15, 42, 66, 67, 150)
    r = seen(offer(s, MAC2, param_request_list=ask, vendor_class=b"STB-2000"))
    assert r[66] == "stb-tftp" and 150 not in r
    r = seen(offer(s, MAC2, param_request_list=ask,
                   vendor_class=b"Cisco Systems, Inc. IP Phone CP-7945G"))
    assert r[150] == [IPv4Address("192.0.2.69")] and r[66] == "phone-tftp"
    # an exact pattern: a longer value is not a member
    assert 150 not in seen(offer(s, MAC2, param_request_list=ask,
                                 vendor_class=b"Cisco Systems, Inc. IP Phone CP-7945GX"))
    # RFC 3004 instances, and the bare string some clients send
    for uc in (b"\x04iPXE", b"iPXE", b"\x03foo\x04iPXE"):
        assert seen(offer(s, MAC2, param_request_list=ask, user_class=uc))[67].startswith(
            "http://")
    # circuit-id prefix and relay together
    r = seen(offer(s, MAC2, param_request_list=ask, giaddr=RELAY,
                   relay_agent_info=rai(b"eth0/1/7")))
    assert r[15] == "port.example"
    r = seen(offer(s, MAC2, param_request_list=ask,
                   giaddr=IPv4Address("198.51.100.20").packed,
                   relay_agent_info=rai(b"eth0/1/7")))
    assert 15 not in r  # relay outside 198.51.100.0/28: not a member
    r = seen(offer(s, bytes.fromhex("001a2b000001"), param_request_list=ask))
    assert r[42] == [IPv4Address("192.0.2.124")]
    r = seen(offer(s, MAC2, param_request_list=ask, giaddr=RELAY,
                   relay_agent_info=rai(b"z", bytes.fromhex("aabbcc"))))
    assert r[15] == "rid.example"


def test_the_first_class_in_name_order_wins(tmp_path):
    s = server(tree(tmp_path, {**CLASSES, "classes/a-stb/options/domain-name": "stb.example"}))
    # STB-x from a port: in a-stb and d-port, both set domain-name
    r = seen(offer(s, MAC2, param_request_list=prl(15), vendor_class=b"STB-1", giaddr=RELAY,
                   relay_agent_info=rai(b"eth0/1/1")))
    assert r[15] == "stb.example"


def test_pools_allow_and_deny_classes(tmp_path):
    s = server(tree(tmp_path, {**CLASSES, "pools/lan/allow_classes": "a-stb\nc-ipxe",
                               "pools/far/deny_classes": "b-phone"}))
    assert s.handle(msg(MessageType.DISCOVER, MAC2), INGRESS, T0).reason is \
        Reason.CLASS_DENIED
    assert offer(s, MAC2, vendor_class=b"STB-9")
    phone = b"Cisco Systems, Inc. IP Phone CP-7945G"
    d = s.handle(msg(MessageType.DISCOVER, MAC2, giaddr=RELAY, vendor_class=phone),
                 INGRESS, T0)
    assert d.reason is Reason.CLASS_DENIED
    assert offer(s, MAC2, giaddr=RELAY)
    with pytest.raises(ConfigError, match="no class 'nope'"):
        tree(tmp_path / "x", {**CLASSES, "pools/lan/deny_classes": "nope"})


# -- the compiled tables are reused -----------------------------------------------------
def test_options_are_compiled_once_per_combination(tmp_path):
    s = server(tree(tmp_path, {**LEVELS, **CLASSES}))
    offer(s, MAC2)
    a = s.policy.options_for(s.pools.by_name["lan"], 0, None)
    offer(s, MAC2)
    assert s.policy.options_for(s.pools.by_name["lan"], 0, None) is a


def test_a_shared_network_gives_each_class_its_own_subnet(tmp_path):
    """Set-top boxes and phones behind one relay, each class in a subnet of its own: the
    pools of a shared network (pools/<p>/shared_network) that a client's classes may use."""
    s = server(tree(tmp_path, {
        **CLASSES,
        "pools/far/shared_network": "cust", "pools/far/deny_classes": "b-phone",
        "pools/phones/subnet": "203.0.113.0/24",
        "pools/phones/range": "203.0.113.100-203.0.113.110",
        "pools/phones/shared_network": "cust", "pools/phones/allow_classes": "b-phone"}))
    phone = b"Cisco Systems, Inc. IP Phone CP-7945G"
    yi = offer(s, MAC2, giaddr=RELAY, vendor_class=phone).yiaddr
    assert IPv4Address(yi) in IPv4Network("203.0.113.0/24")
    yi = offer(s, MAC1, giaddr=RELAY, vendor_class=b"STB-1").yiaddr
    assert IPv4Address(yi) in IPv4Network("198.51.100.0/24")
