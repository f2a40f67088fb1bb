"""Frames for the datapath tests, built with scapy (the builder is the provenance).

Every frame carries correct IPv4 and UDP checksums (scapy computes them), as a real
sender's would. MACs are locally administered (02:...) and addresses come from the
RFC 5737 documentation ranges.
"""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

CLIENT = "02:00:00:00:00:01"
OTHER_CLIENT = "02:00:00:00:00:02"
RELAY = "02:00:00:00:01:01"
SERVER_IP = "192.0.2.1"
RELAY_IP = "198.51.100.1"
BCAST = "ff:ff:ff:ff:ff:ff"


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def discover_payload(chaddr: str = CLIENT, giaddr: str = "0.0.0.0", htype: int = 1,
                     hlen: int = 6, xid: int = 0x1234) -> Packet:
    """BOOTP + DHCP options of a DISCOVER (RFC 2131 §4.4.1), no lower layers."""
    return BOOTP(op=1, htype=htype, hlen=hlen, xid=xid, giaddr=giaddr,
                 chaddr=mac_bytes(chaddr)) / DHCP(
        options=[("message-type", "discover"), ("param_req_list", [1, 3, 6]), "end"])


def discover(src: str = CLIENT, chaddr: str | None = None, giaddr: str = "0.0.0.0",
             htype: int = 1, hlen: int = 6) -> Packet:
    """A client's broadcast DISCOVER: 0.0.0.0:68 -> 255.255.255.255:67."""
    return (Ether(src=src, dst=BCAST)
            / IP(src="0.0.0.0", dst="255.255.255.255", ttl=64)
            / UDP(sport=68, dport=67)
            / discover_payload(chaddr or src, giaddr, htype, hlen))


def random_macs(n: int, seed: int = 1) -> list[str]:
    """`n` distinct locally administered unicast MACs (02:...), reproducible by seed."""
    import random

    rng = random.Random(seed)
    out: dict[str, None] = {}
    while len(out) < n:
        out[(b"\x02" + rng.getrandbits(40).to_bytes(5, "big")).hex(":")] = None
    return list(out)


def flood(macs: list[str], decline_every: int = 0) -> list[bytes]:
    """One DISCOVER per MAC, its chaddr and Ethernet source the same random MAC (what a
    starvation tool sends); every `decline_every`-th is a DECLINE instead (RFC 2131
    §4.4.3's message, which costs the server a quarantined address). Built from one
    scapy template with the UDP checksum 0 ("none", RFC 768), so patching the MACs
    leaves a valid frame; thousands of frames cost milliseconds, not seconds."""
    def template(kind: str) -> bytearray:
        return bytearray(bytes(
            Ether(src=CLIENT, dst=BCAST) / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67, chksum=0)
            / BOOTP(op=1, xid=0xF100D, chaddr=mac_bytes(CLIENT))
            / DHCP(options=[("message-type", kind), "end"])))

    kinds = {"discover": template("discover"), "decline": template("decline")}
    chaddr = 14 + 20 + 8 + 28  # Ethernet, IPv4 without options, UDP, BOOTP chaddr
    out = []
    for i, mac in enumerate(macs):
        kind = "decline" if decline_every and i % decline_every == decline_every - 1 \
            else "discover"
        raw = bytearray(kinds[kind])
        raw[6:12] = raw[chaddr:chaddr + 6] = mac_bytes(mac)
        out.append(bytes(raw))
    return out


def relayed_discover(chaddr: str = CLIENT) -> Packet:
    """A DISCOVER forwarded by a relay agent (RFC 1542 §4.1): Ethernet source is
    the relay, giaddr its address, unicast to the server's port 67 from port 67."""
    return (Ether(src=RELAY, dst="02:00:00:00:00:fe")
            / IP(src=RELAY_IP, dst=SERVER_IP, ttl=63)
            / UDP(sport=67, dport=67)
            / discover_payload(chaddr, giaddr=RELAY_IP))


def renew(src: str = CLIENT) -> Packet:
    """A RENEWING client's unicast REQUEST to the server (RFC 2131 §4.3.2)."""
    return (Ether(src=src, dst="02:00:00:00:00:fe")
            / IP(src="192.0.2.100", dst=SERVER_IP)
            / UDP(sport=68, dport=67)
            / BOOTP(op=1, ciaddr="192.0.2.100", chaddr=mac_bytes(src))
            / DHCP(options=[("message-type", "request"), "end"]))


def vlan_discover() -> Packet:
    """DISCOVER with one IEEE 802.1Q tag (VID 100)."""
    d = discover()
    return Ether(src=CLIENT, dst=BCAST) / Dot1Q(vlan=100) / d[IP]


def qinq_discover() -> Packet:
    """DISCOVER with an 802.1ad S-tag (TPID 0x88a8, VID 10) over a C-tag (VID 100)."""
    d = discover()
    return Ether(src=CLIENT, dst=BCAST) / Dot1AD(vlan=10) / Dot1Q(vlan=100) / d[IP]


def double_q_discover() -> Packet:
    """DISCOVER with two 802.1Q tags (the pre-802.1ad QinQ some switches send)."""
    d = discover()
    return Ether(src=CLIENT, dst=BCAST) / Dot1Q(vlan=10) / Dot1Q(vlan=100) / d[IP]


def tagged(frame: Packet, *vids: int, outer_tpid: int = 0x8100) -> Packet:
    """`frame` (Ether / IP / ...) with 802.1Q tags of `vids`, outermost first; the outer
    tag's TPID is `outer_tpid` (0x88a8 for an 802.1ad S-tag)."""
    inner = frame[IP]
    layers = Ether(src=frame[Ether].src, dst=frame[Ether].dst)
    for i, vid in enumerate(vids):
        layers = layers / (Dot1AD(vlan=vid) if i == 0 and outer_tpid == 0x88A8
                           else Dot1Q(vlan=vid))
    return Ether(bytes(layers / inner))


def triple_tag_discover() -> Packet:
    """Three tags: deeper than VLAN_MAX_DEPTH, so not parsed (passed, uncounted)."""
    d = discover()
    return (Ether(src=CLIENT, dst=BCAST) / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3)
            / d[IP])


def ip_options_discover() -> Packet:
    """DISCOVER with an IPv4 Router Alert option (RFC 2113): IHL 6."""
    d = discover()
    d[IP].options = [IPOption_Router_Alert()]
    return Ether(bytes(d))


def ip_max_options_discover() -> Packet:
    """DISCOVER with 40 bytes of IPv4 options (IHL 15, the maximum; RFC 791 §3.1):
    ten NOPs (type 1) padded by scapy to the 32-bit boundary."""
    d = discover()
    d[IP].options = Raw(b"\x01" * 40)
    return Ether(bytes(d))


def first_fragment_discover() -> Packet:
    """DISCOVER in a first fragment (MF set, offset 0): it has the UDP header."""
    d = discover()
    d[IP].flags = "MF"
    return Ether(bytes(d))


def later_fragment() -> Packet:
    """A non-first fragment whose payload happens to look like UDP to port 67."""
    return (Ether(src=CLIENT, dst=BCAST)
            / IP(src="192.0.2.100", dst=SERVER_IP, frag=10, proto=17)
            / Raw(bytes(UDP(sport=68, dport=67)) + b"\x00" * 300))


def short_ihl() -> Packet:
    """IPv4 header with IHL 4 (invalid, RFC 791 §3.1 minimum is 5)."""
    raw = bytearray(bytes(discover()))
    raw[14] = 0x44
    return Ether(bytes(raw))


def short_bootp() -> Packet:
    """UDP to port 67 whose payload (10 bytes) cannot hold a BOOTP header."""
    return (Ether(src=CLIENT, dst=BCAST) / IP(src="0.0.0.0", dst="255.255.255.255")
            / UDP(sport=68, dport=67) / Raw(b"\x01" * 10))


# -- traffic that is not ours -----------------------------------------------------
def arp_request() -> Packet:
    return Ether(src=CLIENT, dst=BCAST) / ARP(psrc="192.0.2.100", pdst=SERVER_IP)


def icmp_echo() -> Packet:
    return Ether(src=CLIENT) / IP(src="192.0.2.100", dst=SERVER_IP) / ICMP()


def vrrp_advert() -> Packet:
    """A VRRPv3 advert (RFC 5798 §5.1): IP protocol 112 to 224.0.0.18, TTL 255, laid
    out as keepalived 2.2.7 sends it (v3 advert, VRID 51, priority 150, one address,
    100 cs, 192.0.2.100); the VRRP checksum is left zero, the datapath ignores it."""
    return (Ether(src="00:00:5e:00:01:33", dst="01:00:5e:00:00:12")
            / IP(src="192.0.2.2", dst="224.0.0.18", ttl=255, proto=112, tos=0xC0)
            / Raw(bytes.fromhex("3133960100640000c0000264")))


def udp_to(port: int) -> Packet:
    return (Ether(src=CLIENT) / IP(src="192.0.2.100", dst=SERVER_IP)
            / UDP(sport=40000, dport=port) / Raw(b"x" * 300))


def dhcp_offer_to_client() -> Packet:
    """A server's reply to port 68: not ours (only port 67 is steered)."""
    return (Ether(src="02:00:00:00:00:fe", dst=CLIENT) / IP(src=SERVER_IP, dst="192.0.2.100")
            / UDP(sport=67, dport=68) / BOOTP(op=2, chaddr=mac_bytes(CLIENT))
            / DHCP(options=[("message-type", "offer"), "end"]))


def tcp_to_67() -> Packet:
    return Ether(src=CLIENT) / IP(src="192.0.2.100", dst=SERVER_IP) / TCP(dport=67)


def ipv6_udp_to_67() -> Packet:
    return (Ether(src=CLIENT, dst="33:33:00:01:00:02") / IPv6(src="fe80::1", dst="ff02::1:2")
            / UDP(sport=546, dport=67) / Raw(b"x" * 300))


def headers_len(frame: Packet) -> int:
    """Bytes before the UDP payload (Ethernet, tags, IPv4 with options, UDP)."""
    return len(frame) - len(frame[UDP].payload)
