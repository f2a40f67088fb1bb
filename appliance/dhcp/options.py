"""DHCPv4 option definitions and typed encoders/decoders for option values.

The table STD_OPTION_DEFS gives each known option code a name (Kea's std_option_defs
spelling, so operators see the same words in both products) and a value type. The codec
in message.py keeps every value raw; the functions here are how the server reads and
writes the few options it cares about, and how `format_option` shows any of them to a
person. Decoders raise OptionError (a ValueError) on a value of the wrong shape;
`format_option` never raises.

Option 82 (RFC 3046) and the client identifier (RFC 2132 §9.14, RFC 4361) get their own
helpers because the lease keys and the relay echo depend on them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from appliance.dhcp.enums import MessageType, Opt, RelaySubOpt
from appliance.wire.ether import mac_str


class OptionError(ValueError):
    """An option value that does not have the shape its definition requires."""


class OptType(StrEnum):
    """How an option value is laid out (RFC 2132 §2 data types, plus the structured ones)."""

    EMPTY = "empty"  # no data; presence is the value (RFC 4039 rapid commit)
    BOOL = "bool"  # one byte, 0 or 1
    U8 = "uint8"
    U16 = "uint16"
    U32 = "uint32"
    I32 = "int32"
    IP = "ipv4-address"
    IP_LIST = "ipv4-address-list"  # one or more addresses
    IP_PAIRS = "ipv4-address-pairs"  # (address, address) pairs: policy filter, static routes
    U16_LIST = "uint16-list"
    STRING = "string"  # NVT ASCII in the RFCs; UTF-8 accepted
    BYTES = "binary"
    MESSAGE_TYPE = "message-type"  # RFC 2132 §9.6
    OVERLOAD = "overload"  # RFC 2132 §9.3
    PARAM_LIST = "param-list"  # RFC 2132 §9.8: option codes, one byte each
    CLIENT_ID = "client-id"  # RFC 2132 §9.14 / RFC 4361
    RELAY_INFO = "relay-info"  # RFC 3046 sub-options
    FQDN = "fqdn"  # RFC 4702
    DOMAIN_LIST = "domain-list"  # RFC 3397, RFC 1035 §4.1.4 names with compression
    CLASSLESS_ROUTES = "classless-routes"  # RFC 3442
    SUBOPTIONS = "suboptions"  # RFC 2132 §8.4 option 43: code, length, value, repeated
    VIVCO = "vivco"  # RFC 3925 §3: enterprise, length, vendor class data items
    VIVSO = "vivso"  # RFC 3925 §4: enterprise, length, sub-options


@dataclass(frozen=True, slots=True)
class OptionDef:
    code: int
    name: str
    type: OptType


def _defs(*rows: tuple[int, str, OptType]) -> dict[int, OptionDef]:
    return {int(code): OptionDef(int(code), name, t) for code, name, t in rows}


T = OptType
STD_OPTION_DEFS: dict[int, OptionDef] = _defs(
    (Opt.SUBNET_MASK, "subnet-mask", T.IP),
    (Opt.TIME_OFFSET, "time-offset", T.I32),
    (Opt.ROUTER, "routers", T.IP_LIST),
    (Opt.TIME_SERVER, "time-servers", T.IP_LIST),
    (Opt.NAME_SERVER, "name-servers", T.IP_LIST),
    (Opt.DNS, "domain-name-servers", T.IP_LIST),
    (Opt.LOG_SERVER, "log-servers", T.IP_LIST),
    (Opt.COOKIE_SERVER, "cookie-servers", T.IP_LIST),
    (Opt.LPR_SERVER, "lpr-servers", T.IP_LIST),
    (Opt.IMPRESS_SERVER, "impress-servers", T.IP_LIST),
    (Opt.RESOURCE_LOCATION_SERVER, "resource-location-servers", T.IP_LIST),
    (Opt.HOSTNAME, "host-name", T.STRING),
    (Opt.BOOT_FILE_SIZE, "boot-size", T.U16),
    (Opt.MERIT_DUMP, "merit-dump", T.STRING),
    (Opt.DOMAIN_NAME, "domain-name", T.STRING),
    (Opt.SWAP_SERVER, "swap-server", T.IP),
    (Opt.ROOT_PATH, "root-path", T.STRING),
    (Opt.EXTENSIONS_PATH, "extensions-path", T.STRING),
    (Opt.IP_FORWARDING, "ip-forwarding", T.BOOL),
    (Opt.NON_LOCAL_SOURCE_ROUTING, "non-local-source-routing", T.BOOL),
    (Opt.POLICY_FILTER, "policy-filter", T.IP_PAIRS),
    (Opt.MAX_DATAGRAM_REASSEMBLY, "max-dgram-reassembly", T.U16),
    (Opt.DEFAULT_IP_TTL, "default-ip-ttl", T.U8),
    (Opt.PATH_MTU_AGING_TIMEOUT, "path-mtu-aging-timeout", T.U32),
    (Opt.PATH_MTU_PLATEAU_TABLE, "path-mtu-plateau-table", T.U16_LIST),
    (Opt.INTERFACE_MTU, "interface-mtu", T.U16),
    (Opt.ALL_SUBNETS_LOCAL, "all-subnets-local", T.BOOL),
    (Opt.BROADCAST_ADDRESS, "broadcast-address", T.IP),
    (Opt.PERFORM_MASK_DISCOVERY, "perform-mask-discovery", T.BOOL),
    (Opt.MASK_SUPPLIER, "mask-supplier", T.BOOL),
    (Opt.ROUTER_DISCOVERY, "router-discovery", T.BOOL),
    (Opt.ROUTER_SOLICITATION_ADDRESS, "router-solicitation-address", T.IP),
    (Opt.STATIC_ROUTE, "static-routes", T.IP_PAIRS),
    (Opt.TRAILER_ENCAPSULATION, "trailer-encapsulation", T.BOOL),
    (Opt.ARP_CACHE_TIMEOUT, "arp-cache-timeout", T.U32),
    (Opt.ETHERNET_ENCAPSULATION, "ieee802-3-encapsulation", T.BOOL),
    (Opt.TCP_DEFAULT_TTL, "default-tcp-ttl", T.U8),
    (Opt.TCP_KEEPALIVE_INTERVAL, "tcp-keepalive-interval", T.U32),
    (Opt.TCP_KEEPALIVE_GARBAGE, "tcp-keepalive-garbage", T.BOOL),
    (Opt.NIS_DOMAIN, "nis-domain", T.STRING),
    (Opt.NIS_SERVERS, "nis-servers", T.IP_LIST),
    (Opt.NTP_SERVERS, "ntp-servers", T.IP_LIST),
    (Opt.VENDOR_SPECIFIC, "vendor-encapsulated-options", T.SUBOPTIONS),
    (Opt.NETBIOS_NAME_SERVERS, "netbios-name-servers", T.IP_LIST),
    (Opt.NETBIOS_DD_SERVER, "netbios-dd-server", T.IP_LIST),
    (Opt.NETBIOS_NODE_TYPE, "netbios-node-type", T.U8),
    (Opt.NETBIOS_SCOPE, "netbios-scope", T.STRING),
    (Opt.FONT_SERVERS, "font-servers", T.IP_LIST),
    (Opt.X_DISPLAY_MANAGER, "x-display-manager", T.IP_LIST),
    (Opt.REQUESTED_IP, "dhcp-requested-address", T.IP),
    (Opt.LEASE_TIME, "dhcp-lease-time", T.U32),
    (Opt.OVERLOAD, "dhcp-option-overload", T.OVERLOAD),
    (Opt.MESSAGE_TYPE, "dhcp-message-type", T.MESSAGE_TYPE),
    (Opt.SERVER_ID, "dhcp-server-identifier", T.IP),
    (Opt.PARAM_REQUEST_LIST, "dhcp-parameter-request-list", T.PARAM_LIST),
    (Opt.MESSAGE, "dhcp-message", T.STRING),
    (Opt.MAX_MESSAGE_SIZE, "dhcp-max-message-size", T.U16),
    (Opt.RENEWAL_TIME, "dhcp-renewal-time", T.U32),
    (Opt.REBINDING_TIME, "dhcp-rebinding-time", T.U32),
    (Opt.VENDOR_CLASS, "vendor-class-identifier", T.STRING),
    (Opt.CLIENT_ID, "dhcp-client-identifier", T.CLIENT_ID),
    (Opt.NISPLUS_DOMAIN, "nisplus-domain-name", T.STRING),
    (Opt.NISPLUS_SERVERS, "nisplus-servers", T.IP_LIST),
    (Opt.TFTP_SERVER_NAME, "tftp-server-name", T.STRING),
    (Opt.BOOTFILE_NAME, "boot-file-name", T.STRING),
    (Opt.MOBILE_IP_HOME_AGENT, "mobile-ip-home-agent", T.IP_LIST),
    (Opt.SMTP_SERVER, "smtp-server", T.IP_LIST),
    (Opt.POP3_SERVER, "pop-server", T.IP_LIST),
    (Opt.NNTP_SERVER, "nntp-server", T.IP_LIST),
    (Opt.WWW_SERVER, "www-server", T.IP_LIST),
    (Opt.FINGER_SERVER, "finger-server", T.IP_LIST),
    (Opt.IRC_SERVER, "irc-server", T.IP_LIST),
    (Opt.STREETTALK_SERVER, "streettalk-server", T.IP_LIST),
    (Opt.STDA_SERVER, "streettalk-directory-assistance-server", T.IP_LIST),
    (Opt.NWIP_DOMAIN, "nwip-domain-name", T.STRING),
    (Opt.NWIP_SUBOPTIONS, "nwip-suboptions", T.BYTES),
    (Opt.USER_CLASS, "user-class", T.BYTES),
    (Opt.SLP_DIRECTORY_AGENT, "slp-directory-agent", T.BYTES),
    (Opt.SLP_SERVICE_SCOPE, "slp-service-scope", T.BYTES),
    (Opt.RAPID_COMMIT, "rapid-commit", T.EMPTY),
    (Opt.CLIENT_FQDN, "fqdn", T.FQDN),
    (Opt.RELAY_AGENT_INFO, "dhcp-agent-options", T.RELAY_INFO),
    (Opt.NDS_SERVERS, "nds-servers", T.IP_LIST),
    (Opt.NDS_TREE_NAME, "nds-tree-name", T.STRING),
    (Opt.NDS_CONTEXT, "nds-context", T.STRING),
    (Opt.BCMCS_CONTROLLER_NAMES, "bcms-controller-names", T.DOMAIN_LIST),
    (Opt.BCMCS_CONTROLLER_ADDRESS, "bcms-controller-address", T.IP_LIST),
    (Opt.AUTHENTICATION, "authenticate", T.BYTES),
    (Opt.CLIENT_LAST_TRANSACTION_TIME, "client-last-transaction-time", T.U32),
    (Opt.ASSOCIATED_IP, "associated-ip", T.IP_LIST),
    (Opt.CLIENT_SYSTEM, "client-system", T.U16_LIST),
    (Opt.CLIENT_NDI, "client-ndi", T.BYTES),
    (Opt.UUID_GUID, "uuid-guid", T.BYTES),
    (Opt.UAP_SERVERS, "uap-servers", T.STRING),
    (Opt.PCODE, "pcode", T.STRING),
    (Opt.TCODE, "tcode", T.STRING),
    (Opt.IPV6_ONLY_PREFERRED, "v6-only-preferred", T.U32),
    (Opt.NETINFO_SERVER_ADDRESS, "netinfo-server-address", T.IP_LIST),
    (Opt.NETINFO_SERVER_TAG, "netinfo-server-tag", T.STRING),
    (Opt.CAPTIVE_PORTAL, "v4-captive-portal", T.STRING),
    (Opt.AUTO_CONFIG, "auto-config", T.U8),
    (Opt.NAME_SERVICE_SEARCH, "name-service-search", T.U16_LIST),
    (Opt.SUBNET_SELECTION, "subnet-selection", T.IP),
    (Opt.DOMAIN_SEARCH, "domain-search", T.DOMAIN_LIST),
    (Opt.CLASSLESS_STATIC_ROUTE, "classless-static-route", T.CLASSLESS_ROUTES),
    (Opt.VIVCO, "vivco-suboptions", T.VIVCO),
    (Opt.VIVSO, "vivso-suboptions", T.VIVSO),
    (Opt.PANA_AGENT, "pana-agent", T.IP_LIST),
    (Opt.V4_LOST, "v4-lost", T.DOMAIN_LIST),
    (Opt.CAPWAP_AC_V4, "capwap-ac-v4", T.IP_LIST),
    (Opt.SIP_UA_CS_DOMAINS, "sip-ua-cs-domains", T.DOMAIN_LIST),
    (Opt.FORCERENEW_NONCE_CAPABLE, "forcerenew-nonce-capable", T.BYTES),
    (Opt.TFTP_SERVER_ADDRESS, "tftp-server-address", T.IP_LIST),
    (Opt.STATUS_CODE, "status-code", T.BYTES),
    (Opt.BASE_TIME, "base-time", T.U32),
    (Opt.START_TIME_OF_STATE, "start-time-of-state", T.U32),
    (Opt.QUERY_START_TIME, "query-start-time", T.U32),
    (Opt.QUERY_END_TIME, "query-end-time", T.U32),
    (Opt.DHCP_STATE, "dhcp-state", T.U8),
    (Opt.DATA_SOURCE, "data-source", T.U8),
    (Opt.V4_ACCESS_DOMAIN, "v4-access-domain", T.DOMAIN_LIST),
    (Opt.MS_CLASSLESS_STATIC_ROUTE, "ms-classless-static-route", T.CLASSLESS_ROUTES),
    (Opt.WPAD, "wpad-proxy-url", T.STRING),
)
del T

OPTION_DEFS_BY_NAME: dict[str, OptionDef] = {d.name: d for d in STD_OPTION_DEFS.values()}

RELAY_SUBOPT_NAMES: dict[int, str] = {
    RelaySubOpt.CIRCUIT_ID: "circuit-id",
    RelaySubOpt.REMOTE_ID: "remote-id",
    RelaySubOpt.DOCSIS_DEVICE_CLASS: "docsis-device-class",
    RelaySubOpt.LINK_SELECTION: "link-selection",
    RelaySubOpt.SUBSCRIBER_ID: "subscriber-id",
    RelaySubOpt.RADIUS_ATTRIBUTES: "radius-attributes",
    RelaySubOpt.AUTHENTICATION: "authentication",
    RelaySubOpt.VENDOR_SPECIFIC: "vendor-specific",
    RelaySubOpt.RELAY_AGENT_FLAGS: "relay-agent-flags",
    RelaySubOpt.SERVER_ID_OVERRIDE: "server-id-override",
    RelaySubOpt.RELAY_ID: "relay-id",
    RelaySubOpt.ACCESS_TECHNOLOGY_TYPE: "access-technology-type",
    RelaySubOpt.ACCESS_NETWORK_NAME: "access-network-name",
    RelaySubOpt.ACCESS_POINT_NAME: "access-point-name",
    RelaySubOpt.ACCESS_POINT_BSSID: "access-point-bssid",
    RelaySubOpt.OPERATOR_ID: "operator-id",
    RelaySubOpt.OPERATOR_REALM: "operator-realm",
    RelaySubOpt.RELAY_SOURCE_PORT: "relay-source-port",
    RelaySubOpt.VIRTUAL_SUBNET_SELECTION: "virtual-subnet-selection",
    RelaySubOpt.VIRTUAL_SUBNET_SELECTION_CONTROL: "virtual-subnet-selection-control",
}


def option_name(code: int) -> str:
    """Kea-style name of an option code; 'option-<code>' when we have no definition."""
    d = STD_OPTION_DEFS.get(code)
    if d is not None:
        return d.name
    if code == Opt.PAD:
        return "pad"
    if code == Opt.END:
        return "end"
    return f"option-{code}"


# -- fixed-width integers and booleans (RFC 2132 §2: network byte order) ----------------

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")


def _need(raw: bytes, n: int, what: str) -> None:
    if len(raw) != n:
        raise OptionError(f"{what} needs {n} bytes, got {len(raw)}")


def encode_u8(v: int) -> bytes:
    if not 0 <= v <= 0xFF:
        raise OptionError(f"{v} out of range for uint8")
    return bytes((v,))


def decode_u8(raw: bytes) -> int:
    _need(raw, 1, "uint8")
    return raw[0]


def encode_u16(v: int) -> bytes:
    if not 0 <= v <= 0xFFFF:
        raise OptionError(f"{v} out of range for uint16")
    return _U16.pack(v)


def decode_u16(raw: bytes) -> int:
    _need(raw, 2, "uint16")
    return _U16.unpack(raw)[0]


def encode_u32(v: int) -> bytes:
    if not 0 <= v <= 0xFFFFFFFF:
        raise OptionError(f"{v} out of range for uint32")
    return _U32.pack(v)


def decode_u32(raw: bytes) -> int:
    _need(raw, 4, "uint32")
    return _U32.unpack(raw)[0]


def encode_i32(v: int) -> bytes:
    if not -(2**31) <= v < 2**31:
        raise OptionError(f"{v} out of range for int32")
    return _I32.pack(v)


def decode_i32(raw: bytes) -> int:
    _need(raw, 4, "int32")
    return _I32.unpack(raw)[0]


def encode_bool(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


def decode_bool(raw: bytes) -> bool:
    _need(raw, 1, "boolean")
    if raw[0] > 1:
        raise OptionError(f"boolean value {raw[0]} is neither 0 nor 1")
    return raw[0] == 1


def encode_u16_list(values: Iterable[int]) -> bytes:
    return b"".join(encode_u16(v) for v in values)


def decode_u16_list(raw: bytes) -> list[int]:
    if not raw or len(raw) % 2:
        raise OptionError(f"uint16 list of {len(raw)} bytes")
    return [v for (v,) in _U16.iter_unpack(raw)]


# -- addresses ------------------------------------------------------------------------

IpLike = IPv4Address | bytes | str


def encode_ip(ip: IpLike) -> bytes:
    """4 bytes for an IPv4Address, a dotted-quad string or 4 raw bytes."""
    if isinstance(ip, bytes):
        if len(ip) != 4:
            raise OptionError(f"IPv4 address of {len(ip)} bytes")
        return ip
    try:
        return IPv4Address(ip).packed
    except ValueError as e:
        raise OptionError(str(e)) from None


def decode_ip(raw: bytes) -> IPv4Address:
    _need(raw, 4, "IPv4 address")
    return IPv4Address(raw)


def encode_ip_list(ips: Iterable[IpLike]) -> bytes:
    out = b"".join(encode_ip(ip) for ip in ips)
    if not out:
        raise OptionError("address list is empty (RFC 2132: at least one address)")
    return out


def decode_ip_list(raw: bytes) -> list[IPv4Address]:
    if not raw or len(raw) % 4:
        raise OptionError(f"address list of {len(raw)} bytes is not a non-zero multiple of 4")
    return [IPv4Address(raw[i : i + 4]) for i in range(0, len(raw), 4)]


def encode_ip_pairs(pairs: Iterable[tuple[IpLike, IpLike]]) -> bytes:
    return encode_ip_list(x for pair in pairs for x in pair)


def decode_ip_pairs(raw: bytes) -> list[tuple[IPv4Address, IPv4Address]]:
    if len(raw) % 8:
        raise OptionError(f"address-pair list of {len(raw)} bytes is not a multiple of 8")
    ips = decode_ip_list(raw)
    return list(zip(ips[::2], ips[1::2], strict=True))


# -- strings --------------------------------------------------------------------------


def encode_string(s: str) -> bytes:
    """UTF-8 (surrogate escapes restore undecodable bytes read by decode_string)."""
    return s.encode("utf-8", "surrogateescape")


def decode_string(raw: bytes) -> str:
    """Text of an NVT ASCII option. RFC 2132 §2: a receiver MUST be prepared to delete
    trailing NULs, which some clients (old Windows, some printers) send. Bytes that are
    not UTF-8 come back as surrogate escapes, so the value is never lost.
    """
    return raw.rstrip(b"\x00").decode("utf-8", "surrogateescape")


# -- message type, overload, parameter request list ---------------------------------


def decode_message_type(raw: bytes) -> MessageType | int:
    v = decode_u8(raw)
    try:
        return MessageType(v)
    except ValueError:
        return v


_OVERLOAD_NAMES = {1: "file", 2: "sname", 3: "file+sname"}


def decode_overload(raw: bytes) -> int:
    v = decode_u8(raw)
    if v not in _OVERLOAD_NAMES:
        raise OptionError(f"overload value {v} is not 1, 2 or 3")
    return v


def encode_param_list(codes: Iterable[int]) -> bytes:
    try:
        return bytes(codes)
    except ValueError as e:
        raise OptionError(str(e)) from None


def decode_param_list(raw: bytes) -> list[int]:
    return list(raw)


# -- Option 82: relay agent information (RFC 3046) ------------------------------------


def parse_relay_info(raw: bytes) -> list[tuple[int, bytes]]:
    """Sub-options of option 82 in wire order, values raw (RFC 3046 §2.0: code, length,
    value; no PAD/END inside). Raises OptionError when a sub-option runs past the end.
    """
    return _tlvs(raw, "relay sub-option", "option 82")


def _tlvs(raw: bytes, what: str, inside: str) -> list[tuple[int, bytes]]:
    """code, length, value triples in wire order (option 82's and option 43's
    sub-options); OptionError names `what` and `inside` when one runs past the end."""
    subs: list[tuple[int, bytes]] = []
    i, n = 0, len(raw)
    while i < n:
        if i + 1 >= n:
            raise OptionError(f"{what} {raw[i]} has no length byte")
        j = i + 2 + raw[i + 1]
        if j > n:
            raise OptionError(f"{what} {raw[i]} runs {j - n} bytes past {inside}")
        subs.append((raw[i], bytes(raw[i + 2 : j])))
        i = j
    return subs


def encode_relay_info(subs: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for code, value in subs:
        if not 0 <= code <= 255 or len(value) > 255:
            raise OptionError(f"relay sub-option {code} of {len(value)} bytes cannot be encoded")
        out.append(code)
        out.append(len(value))
        out += value
    return bytes(out)


def relay_suboption(raw: bytes, code: int) -> bytes | None:
    """First sub-option `code` of option 82, or None when absent or option 82 is malformed.

    Malformed counts as absent because the server echoes option 82 back unparsed
    (RFC 3046 §2.2) and only uses the sub-options as lease metadata.
    """
    try:
        subs = parse_relay_info(raw)
    except OptionError:
        return None
    for c, v in subs:
        if c == code:
            return v
    return None


def circuit_id(raw: bytes) -> bytes | None:
    """Agent Circuit ID (RFC 3046 §3.1): ISC dhcrelay -a puts the interface name here."""
    return relay_suboption(raw, RelaySubOpt.CIRCUIT_ID)


def remote_id(raw: bytes) -> bytes | None:
    """Agent Remote ID (RFC 3046 §3.2)."""
    return relay_suboption(raw, RelaySubOpt.REMOTE_ID)


# -- Option 61: client identifier (RFC 2132 §9.14, RFC 4361 §6.1) ----------------------

_DUID_KINDS = {1: "DUID-LLT", 2: "DUID-EN", 3: "DUID-LL", 4: "DUID-UUID"}


def hardware_client_id(mac: bytes, htype: int = 1) -> bytes:
    """The common client identifier form: hardware type then address (udhcpc, Windows)."""
    return bytes((htype,)) + mac


def describe_duid(duid: bytes) -> dict[str, Any]:
    """Fields of a DUID (RFC 8415 §11), JSON-ready (bytes shown as hex or a MAC)."""
    out: dict[str, Any] = {"duid": duid.hex()}
    if len(duid) < 2:
        out["duid_kind"] = "invalid"
        return out
    dtype = int.from_bytes(duid[:2], "big")
    out["duid_type"] = dtype
    out["duid_kind"] = _DUID_KINDS.get(dtype, "unknown")
    body = duid[2:]
    if dtype == 1 and len(body) >= 6:  # §11.2: hardware type, time, link-layer address
        out["hwtype"] = int.from_bytes(body[:2], "big")
        out["time"] = int.from_bytes(body[2:6], "big")  # seconds since 2000-01-01 UTC
        out["lladdr"] = mac_str(body[6:])
    elif dtype == 2 and len(body) >= 4:  # §11.3: enterprise number, identifier
        out["enterprise"] = int.from_bytes(body[:4], "big")
        out["identifier"] = body[4:].hex()
    elif dtype == 3 and len(body) >= 2:  # §11.4: hardware type, link-layer address
        out["hwtype"] = int.from_bytes(body[:2], "big")
        out["lladdr"] = mac_str(body[2:])
    elif dtype == 4 and len(body) == 16:  # RFC 6355 §4
        out["uuid"] = body.hex()
    elif dtype in _DUID_KINDS:
        out["duid_kind"] = "invalid"
    return out


def describe_client_id(raw: bytes) -> dict[str, Any]:
    """What a client identifier is made of, JSON-ready.

    - type 255: RFC 4361 §6.1, IAID (4 bytes) + DUID (dhcpcd, systemd-networkd):
      kind "rfc4361" with iaid and the describe_duid() fields;
    - type 1..254: RFC 2132 §9.14 hardware type + address (udhcpc sends 01 + MAC):
      kind "hwaddr" for type 1 (Ethernet), "opaque" for other types;
    - type 0: an identifier other than a hardware address (e.g. a name): "opaque";
    - shorter than 2 bytes (RFC 2132 §9.14 minimum length): "invalid".
    `raw` (hex) is always present.
    """
    out: dict[str, Any] = {"raw": raw.hex()}
    if len(raw) < 2:
        out["kind"] = "invalid"
        return out
    ctype = raw[0]
    out["type"] = ctype
    body = raw[1:]
    if ctype == 255:
        if len(body) < 4 + 2:
            out["kind"] = "invalid"
            return out
        out["kind"] = "rfc4361"
        out["iaid"] = int.from_bytes(body[:4], "big")
        out.update(describe_duid(body[4:]))
    elif ctype == 1:
        out["kind"] = "hwaddr"
        out["hwaddr"] = mac_str(body)
    else:
        out["kind"] = "opaque"
        out["value"] = body.hex()
        text = _printable(body)
        if text is not None:
            out["text"] = text
    return out


# -- domain names (RFC 1035 §3.1, §4.1.4; RFC 3397; RFC 4702) -------------------------


def _read_name(raw: bytes, i: int) -> tuple[str, int]:
    """One domain name starting at raw[i]; returns (name, index after it).

    Compression pointers (RFC 1035 §4.1.4) are offsets into the option value
    (RFC 3397 §2). Each must point before the start of the labels being read, so the
    walk always moves backwards and ends even on hostile input.
    """
    labels: list[str] = []
    resume = -1  # where the caller continues after a pointer
    floor = i  # a pointer must go strictly below this
    size = 0
    n = len(raw)
    while True:
        if i >= n:
            raise OptionError("domain name runs past the option")
        ln = raw[i]
        if ln == 0:
            i += 1
            break
        if ln & 0xC0 == 0xC0:
            if i + 1 >= n:
                raise OptionError("truncated compression pointer")
            ptr = ((ln & 0x3F) << 8) | raw[i + 1]
            if ptr >= floor:
                raise OptionError(f"compression pointer {ptr} does not point backwards")
            if resume < 0:
                resume = i + 2
            i = floor = ptr
            continue
        if ln & 0xC0:
            raise OptionError(f"label type 0x{ln & 0xC0:02x} is not supported")
        if i + 1 + ln > n:
            raise OptionError("label runs past the option")
        size += ln + 1
        if size > 255:
            raise OptionError("domain name longer than 255 octets")
        labels.append(raw[i + 1 : i + 1 + ln].decode("ascii", "backslashreplace"))
        i += 1 + ln
    return ".".join(labels), (resume if resume >= 0 else i)


def encode_domain_name(name: str) -> bytes:
    """A name in RFC 1035 §3.1 wire form (no compression), root label included."""
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        b = label.encode("ascii")
        if not 0 < len(b) < 64:
            raise OptionError(f"label {label!r} must be 1..63 octets")
        out.append(len(b))
        out += b
    out.append(0)
    if len(out) > 255:
        raise OptionError("domain name longer than 255 octets")
    return bytes(out)


def encode_domain_list(names: Iterable[str]) -> bytes:
    """Names in wire form with RFC 1035 §4.1.4 compression, as RFC 3397 §2 asks: a name
    whose tail was written before ends in a pointer to it (offsets count from the
    start of the option value; a receiver joins split instances first, RFC 3396)."""
    out = bytearray()
    seen: dict[bytes, int] = {}  # a name's tail in wire form -> its offset
    for n in names:
        wire = encode_domain_name(n)
        i = 0
        while wire[i]:
            tail = wire[i:]
            at = seen.get(tail)
            if at is not None:
                out += wire[:i]
                out += bytes((0xC0 | at >> 8, at & 0xFF))
                break
            if len(out) + i < 0x4000:  # a pointer has 14 bits
                seen[tail] = len(out) + i
            i += 1 + wire[i]
        else:
            out += wire
    return bytes(out)


def decode_domain_list(raw: bytes) -> list[str]:
    names: list[str] = []
    i = 0
    while i < len(raw):
        name, i = _read_name(raw, i)
        names.append(name)
    return names


def decode_fqdn(raw: bytes) -> dict[str, Any]:
    """Client FQDN (RFC 4702 §2): flags, two deprecated rcodes, then the name, in
    canonical wire form when the E flag (0x04) is set, ASCII otherwise. A wire-form name
    without its final root label is a partial name (§2.1); it is returned as is.
    """
    if len(raw) < 3:
        raise OptionError(f"FQDN option of {len(raw)} bytes (minimum 3)")
    flags = raw[0]
    body = raw[3:]
    if flags & 0x04:
        labels: list[str] = []
        i = 0
        while i < len(body) and body[i] != 0:
            ln = body[i]
            if ln & 0xC0 or i + 1 + ln > len(body):
                raise OptionError("bad label in FQDN option")
            labels.append(body[i + 1 : i + 1 + ln].decode("ascii", "backslashreplace"))
            i += 1 + ln
        name = ".".join(labels)
    else:
        name = body.decode("ascii", "backslashreplace")
    return {"flags": flags, "rcode1": raw[1], "rcode2": raw[2], "name": name}


def encode_fqdn(value: Mapping[str, Any]) -> bytes:
    flags = int(value.get("flags", 0))
    head = bytes((flags, int(value.get("rcode1", 0)), int(value.get("rcode2", 0))))
    name = str(value.get("name", ""))
    if flags & 0x04:
        return head + encode_domain_name(name)
    return head + name.encode("ascii")


# -- Option 121: classless static routes (RFC 3442 §3) --------------------------------

Route = tuple[IPv4Network, IPv4Address]


def encode_classless_routes(routes: Iterable[tuple[IPv4Network | str, IpLike]]) -> bytes:
    out = bytearray()
    for dest, router in routes:
        net = IPv4Network(dest)
        width = net.prefixlen
        out.append(width)
        out += net.network_address.packed[: (width + 7) // 8]
        out += encode_ip(router)
    return bytes(out)


def decode_classless_routes(raw: bytes) -> list[Route]:
    routes: list[Route] = []
    i, n = 0, len(raw)
    while i < n:
        width = raw[i]
        if width > 32:
            raise OptionError(f"route prefix width {width} > 32")
        sig = (width + 7) // 8
        j = i + 1 + sig + 4
        if j > n:
            raise OptionError("classless route runs past the option")
        dest = raw[i + 1 : i + 1 + sig] + bytes(4 - sig)
        net = IPv4Network((IPv4Address(dest), width), strict=False)
        routes.append((net, IPv4Address(raw[i + 1 + sig : j])))
        i = j
    return routes



# -- sub-options: 43 (RFC 2132 §8.4), 124 and 125 (RFC 3925) --------------------------

SubOption = tuple[int, bytes]


def encode_suboptions(subs: Iterable[tuple[int, bytes]]) -> bytes:
    """code, length, value for each (RFC 2132 §8.4's encapsulated vendor options; RFC
    3925 §4's sub-options). A value longer than 255 bytes cannot be one sub-option."""
    out = bytearray()
    for code, value in subs:
        if not 0 <= code <= 255:
            raise OptionError(f"sub-option code {code} is not in 0..255")
        if len(value) > 255:
            raise OptionError(f"sub-option {code} of {len(value)} bytes (at most 255)")
        out.append(code)
        out.append(len(value))
        out += value
    return bytes(out)


def decode_suboptions(raw: bytes) -> list[SubOption]:
    """The inverse of encode_suboptions; raises OptionError when one runs past the end.
    PAD (0) and END (255) are ordinary codes here: RFC 2132 §8.4 gives them no meaning
    inside option 43, and a vendor may use them."""
    return _tlvs(raw, "sub-option", "the option")


def _enterprise_blocks(raw: bytes) -> list[tuple[int, bytes]]:
    """RFC 3925 §3/§4: enterprise number (4 bytes), data length (1), data; repeated."""
    out: list[tuple[int, bytes]] = []
    i, n = 0, len(raw)
    while i < n:
        if i + 5 > n:
            raise OptionError("enterprise block shorter than its 5-byte header")
        ent = int.from_bytes(raw[i : i + 4], "big")
        j = i + 5 + raw[i + 4]
        if j > n:
            raise OptionError(f"enterprise {ent}: data runs {j - n} bytes past the option")
        out.append((ent, bytes(raw[i + 5 : j])))
        i = j
    return out


def _enterprise_block(ent: int, data: bytes) -> bytes:
    if not 0 <= ent <= 0xFFFFFFFF:
        raise OptionError(f"enterprise number {ent} is not in 0..4294967295")
    if len(data) > 255:
        raise OptionError(f"enterprise {ent}: {len(data)} bytes of data (at most 255; RFC "
                          "3925 §4: one block per enterprise)")
    return ent.to_bytes(4, "big") + bytes((len(data),)) + data


def encode_vivco(classes: Iterable[tuple[int, Iterable[bytes]]]) -> bytes:
    """Option 124: per enterprise, its vendor class data items (RFC 3925 §3: each item
    one length byte, then the opaque data)."""
    out = bytearray()
    for ent, items in classes:
        data = bytearray()
        for item in items:
            if len(item) > 255:
                raise OptionError(f"enterprise {ent}: a class item of {len(item)} bytes")
            data.append(len(item))
            data += item
        out += _enterprise_block(ent, bytes(data))
    return bytes(out)


def decode_vivco(raw: bytes) -> list[tuple[int, list[bytes]]]:
    out = []
    for ent, data in _enterprise_blocks(raw):
        items: list[bytes] = []
        i = 0
        while i < len(data):
            j = i + 1 + data[i]
            if j > len(data):
                raise OptionError(f"enterprise {ent}: a class item runs past its block")
            items.append(data[i + 1 : j])
            i = j
        out.append((ent, items))
    return out


def encode_vivso(vendors: Iterable[tuple[int, Iterable[tuple[int, bytes]]]]) -> bytes:
    """Option 125: per enterprise, its sub-options (RFC 3925 §4)."""
    return b"".join(_enterprise_block(ent, encode_suboptions(subs)) for ent, subs in vendors)


def decode_vivso(raw: bytes) -> list[tuple[int, list[SubOption]]]:
    return [(ent, decode_suboptions(data)) for ent, data in _enterprise_blocks(raw)]


# -- generic dispatch ----------------------------------------------------------------

_DECODERS: dict[OptType, Any] = {
    OptType.BOOL: decode_bool,
    OptType.U8: decode_u8,
    OptType.U16: decode_u16,
    OptType.U32: decode_u32,
    OptType.I32: decode_i32,
    OptType.IP: decode_ip,
    OptType.IP_LIST: decode_ip_list,
    OptType.IP_PAIRS: decode_ip_pairs,
    OptType.U16_LIST: decode_u16_list,
    OptType.STRING: decode_string,
    OptType.BYTES: bytes,
    OptType.MESSAGE_TYPE: decode_message_type,
    OptType.OVERLOAD: decode_overload,
    OptType.PARAM_LIST: decode_param_list,
    OptType.CLIENT_ID: describe_client_id,
    OptType.RELAY_INFO: parse_relay_info,
    OptType.FQDN: decode_fqdn,
    OptType.DOMAIN_LIST: decode_domain_list,
    OptType.CLASSLESS_ROUTES: decode_classless_routes,
    OptType.SUBOPTIONS: decode_suboptions,
    OptType.VIVCO: decode_vivco,
    OptType.VIVSO: decode_vivso,
}

_ENCODERS: dict[OptType, Any] = {
    OptType.BOOL: encode_bool,
    OptType.U8: encode_u8,
    OptType.U16: encode_u16,
    OptType.U32: encode_u32,
    OptType.I32: encode_i32,
    OptType.IP: encode_ip,
    OptType.IP_LIST: encode_ip_list,
    OptType.IP_PAIRS: encode_ip_pairs,
    OptType.U16_LIST: encode_u16_list,
    OptType.STRING: encode_string,
    OptType.BYTES: bytes,
    OptType.MESSAGE_TYPE: encode_u8,
    OptType.OVERLOAD: encode_u8,
    OptType.PARAM_LIST: encode_param_list,
    OptType.CLIENT_ID: bytes,
    OptType.RELAY_INFO: encode_relay_info,
    OptType.FQDN: encode_fqdn,
    OptType.DOMAIN_LIST: encode_domain_list,
    OptType.CLASSLESS_ROUTES: encode_classless_routes,
    OptType.SUBOPTIONS: encode_suboptions,
    OptType.VIVCO: encode_vivco,
    OptType.VIVSO: encode_vivso,
}


def _decode_empty(raw: bytes) -> bool:
    _need(raw, 0, "flag option")
    return True


_DECODERS[OptType.EMPTY] = _decode_empty
_ENCODERS[OptType.EMPTY] = lambda _v=True: b""


def decode_option(code: int, raw: bytes) -> Any:
    """Typed value of an option per STD_OPTION_DEFS (raw bytes for unknown codes).

    Raises OptionError when the value does not fit its definition.
    """
    d = STD_OPTION_DEFS.get(code)
    if d is None:
        return bytes(raw)
    return _DECODERS[d.type](raw)


def encode_option(code: int, value: Any) -> bytes:
    """Raw bytes for a typed value per STD_OPTION_DEFS (bytes pass through for unknown
    codes). The inverse of decode_option except for CLIENT_ID, which takes raw bytes.
    """
    d = STD_OPTION_DEFS.get(code)
    if d is None:
        return bytes(value)
    try:
        return _ENCODERS[d.type](value)
    except (TypeError, ValueError, struct.error) as e:
        if isinstance(e, OptionError):
            raise
        raise OptionError(f"{d.name}: {e}") from None



# -- option files: the text an operator writes (docs/dhcp-options.md) -----------------
#
# A file under options/ (at any level) is named by the option's Kea name or its code,
# optionally followed by '.<type>' (`options/routers`, `options/121`, `options/224.u32`):
# the type is required for a code with no definition here and overrides the table's
# otherwise (`options/43.hex`). Its lines are the value; list items go one per line or
# separated by commas. parse_option_file() turns one into (code, wire bytes) or raises
# OptionError saying what is wrong; config/tree.py names the file and the value.

# The short type names of custom options and sub-options (DESIGN.md), then Kea's.
TYPE_NAMES: dict[str, OptType] = {
    "address": OptType.IP, "addresses": OptType.IP_LIST,
    "u8": OptType.U8, "u16": OptType.U16, "u32": OptType.U32, "i32": OptType.I32,
    "string": OptType.STRING, "hex": OptType.BYTES, "bool": OptType.BOOL,
    "routes": OptType.CLASSLESS_ROUTES, "domains": OptType.DOMAIN_LIST,
    "u16-list": OptType.U16_LIST, "address-pairs": OptType.IP_PAIRS,
    "ipv4-address": OptType.IP, "ipv4-address-list": OptType.IP_LIST,
    "uint8": OptType.U8, "uint16": OptType.U16, "uint32": OptType.U32,
    "int32": OptType.I32, "binary": OptType.BYTES, "boolean": OptType.BOOL,
}  # fmt: skip
# Types a sub-option (of 43 and 125) may take: the scalar ones.
SUB_TYPES = ("address", "addresses", "u8", "u16", "u32", "i32", "string", "hex", "bool")

# Options the server writes itself or that only a client or relay sends: a file for one
# is refused, saying where the value comes from.
NOT_CONFIGURABLE: dict[int, str] = {
    Opt.PAD: "PAD is framing (RFC 2132 §3.1)",
    Opt.END: "END is framing (RFC 2132 §3.2)",
    Opt.REQUESTED_IP: "a client's option (RFC 2132 §9.1)",
    Opt.LEASE_TIME: "the lease time is pools/<p>/lease_time (with min_lease_time and "
                    "max_lease_time for the client's own request)",
    Opt.OVERLOAD: "overload is decided per reply, when the options need it (RFC 2132 §9.3)",
    Opt.MESSAGE_TYPE: "the message type is the server's (RFC 2132 §9.6)",
    Opt.SERVER_ID: "the server identifier is the interface's virtual IP "
                   "(interfaces/<ifname>/virtual_ip) or its own address",
    Opt.PARAM_REQUEST_LIST: "a client's option (RFC 2132 §9.8)",
    Opt.MESSAGE: "the server writes it into a DHCPNAK (RFC 2132 §9.9)",
    Opt.MAX_MESSAGE_SIZE: "a client's option (RFC 2132 §9.10)",
    Opt.RENEWAL_TIME: "T1 is pools/<p>/renew_time",
    Opt.REBINDING_TIME: "T2 is pools/<p>/rebind_time",
    Opt.CLIENT_ID: "a client's option, echoed (RFC 6842)",
    Opt.RAPID_COMMIT: "not offered by this server (RFC 4039)",
    Opt.CLIENT_FQDN: "a client's option (RFC 4702)",
    Opt.RELAY_AGENT_INFO: "a relay's option, echoed (RFC 3046 §2.2)",
    Opt.SUBNET_SELECTION: "a client's or relay's option (RFC 3011)",
    Opt.CLIENT_LAST_TRANSACTION_TIME: "a leasequery answer's (RFC 4388)",
    Opt.ASSOCIATED_IP: "a leasequery answer's (RFC 4388)",
    Opt.STATUS_CODE: "a leasequery answer's (RFC 6926)",
    Opt.BASE_TIME: "a leasequery answer's (RFC 6926)",
    Opt.START_TIME_OF_STATE: "a leasequery answer's (RFC 6926)",
    Opt.QUERY_START_TIME: "a leasequery's (RFC 6926)",
    Opt.QUERY_END_TIME: "a leasequery's (RFC 6926)",
    Opt.DHCP_STATE: "a leasequery answer's (RFC 6926)",
    Opt.DATA_SOURCE: "a leasequery answer's (RFC 6926)",
}
# A value longer than this cannot be sent whole to a client that accepts the RFC 2131
# minimum message (576 bytes): refused when read rather than dropped from every reply.
MAX_OPTION_BYTES = 1024
_TEXT_TYPES = (
    OptType.BOOL, OptType.U8, OptType.U16, OptType.U32, OptType.I32, OptType.IP,
    OptType.IP_LIST, OptType.IP_PAIRS, OptType.U16_LIST, OptType.STRING, OptType.BYTES,
    OptType.DOMAIN_LIST, OptType.CLASSLESS_ROUTES, OptType.SUBOPTIONS, OptType.VIVCO,
    OptType.VIVSO,
)  # fmt: skip


def option_code(name: str) -> int:
    """The code of a Kea option name or a decimal code 1..254; OptionError otherwise."""
    d = OPTION_DEFS_BY_NAME.get(name)
    if d is not None:
        return d.code
    if name.isascii() and name.isdigit():
        code = int(name)
        if 1 <= code <= 254:
            return code
        raise OptionError(f"option code {code} is not in 1..254")
    raise OptionError(f"'{name}' is neither a standard option name nor a code "
                      "(docs/dhcp-options.md lists the names)")


def parse_option_file(fname: str, lines: list[str]) -> tuple[int, bytes]:
    """An option file's (code, value in wire form). `fname` is its name (`routers`,
    `121`, `224.u32`), `lines` its lines without blanks and comments."""
    base, dot, tname = fname.partition(".")
    code = option_code(base)
    why = NOT_CONFIGURABLE.get(code)
    if why is not None:
        raise OptionError(f"option {code} ({option_name(code)}) cannot be set: {why}")
    d = STD_OPTION_DEFS.get(code)
    if dot:
        t = TYPE_NAMES.get(tname)
        if t is None:
            raise OptionError(f"unknown type '{tname}'; types: " + ", ".join(TYPE_NAMES))
    elif d is not None:
        t = d.type
    else:
        raise OptionError(f"option {code} has no standard definition: name its type, e.g. "
                          f"options/{code}.string (types: {', '.join(TYPE_NAMES)})")
    if t not in _TEXT_TYPES:
        raise OptionError(f"option {code} ({t}) cannot be written as text; write it in hex: "
                          f"{base}.hex")
    raw = parse_value(t, lines)
    if len(raw) > MAX_OPTION_BYTES:
        raise OptionError(f"{len(raw)} bytes encoded: at most {MAX_OPTION_BYTES}, so that a "
                          "reply of the RFC 2131 minimum size can carry it")
    return code, raw


def _items(lines: list[str]) -> list[str]:
    """List items: one per line, or separated by commas."""
    out = [x.strip() for line in lines for x in line.split(",")]
    if any(not x for x in out):
        raise OptionError("an empty item in the list (a stray comma?)")
    return out


def _int(s: str, lo: int, hi: int, what: str) -> int:
    s = s.strip()
    try:
        if s[:2].lower() == "0x":
            v = int(s[2:], 16) if s[2:].isascii() and s[2:].isalnum() else int("x")
        elif s.lstrip("-").isascii() and s.lstrip("-").isdigit():
            v = int(s)
        else:
            raise ValueError(s)
    except ValueError:
        raise OptionError(f"'{s}' is not an integer ({what})") from None
    if not lo <= v <= hi:
        raise OptionError(f"{v} is out of range for {what} ({lo}..{hi})")
    return v


def _addr(s: str) -> bytes:
    try:
        return IPv4Address(s.strip()).packed
    except ValueError:
        raise OptionError(f"'{s.strip()}' is not an IPv4 address") from None


def _hex(lines: list[str]) -> bytes:
    text = "".join(lines).replace(":", "").replace(" ", "").replace("-", "")
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise OptionError("is not hex bytes (like 0a0b0c, 0a:0b:0c or 0x0a0b0c)") from None
    if not raw:
        raise OptionError("no bytes: write the value in hex")
    return raw


def _one_line(lines: list[str], what: str) -> str:
    if len(lines) != 1:
        raise OptionError(f"{what}: expected one line, found {len(lines)}")
    return lines[0]


def _domain(name: str) -> str:
    n = name.strip().rstrip(".")
    if not n or any(not (c.isascii() and (c.isalnum() or c in "-_.")) for c in n):
        raise OptionError(f"'{name}' is not a domain name (letters, digits, '-', '.')")
    return n


def _route(item: str) -> tuple[IPv4Network, bytes]:
    """'10.0.0.0/8 192.0.2.1' (or Kea's '10.0.0.0/8 - 192.0.2.1')."""
    words = [w for w in item.split() if w != "-"]
    if len(words) != 2 or "/" not in words[0]:
        raise OptionError(f"'{item}' is not a route DESTINATION/WIDTH ROUTER (e.g. "
                          "10.0.0.0/8 192.0.2.1; 0.0.0.0/0 for the default route)")
    try:
        net = IPv4Network(words[0], strict=True)
    except ValueError:
        raise OptionError(f"'{words[0]}' is not a network with no host bits set") from None
    return net, _addr(words[1])


def parse_value(t: OptType, lines: list[str]) -> bytes:
    """The wire form of an option value written as text (see parse_option_file)."""
    if not lines:
        raise OptionError("the file holds no value")
    T = OptType
    if t == T.IP:
        return _addr(_one_line(lines, "one address"))
    if t == T.IP_LIST:
        return b"".join(_addr(x) for x in _items(lines))
    if t == T.IP_PAIRS:
        out = b""
        for x in _items(lines):
            pair = x.split()
            if len(pair) != 2:
                raise OptionError(f"'{x}' is not a pair of addresses 'A B'")
            out += _addr(pair[0]) + _addr(pair[1])
        return out
    if t == T.U8:
        return bytes((_int(_one_line(lines, "uint8"), 0, 255, "uint8"),))
    if t == T.U16:
        return _U16.pack(_int(_one_line(lines, "uint16"), 0, 0xFFFF, "uint16"))
    if t == T.U32:
        return _U32.pack(_int(_one_line(lines, "uint32"), 0, 0xFFFFFFFF, "uint32"))
    if t == T.I32:
        return _I32.pack(_int(_one_line(lines, "int32"), -(2**31), 2**31 - 1, "int32"))
    if t == T.BOOL:
        v = _one_line(lines, "boolean").lower()
        if v not in ("0", "1", "true", "false"):
            raise OptionError(f"'{v}' is not a boolean (0, 1, true, false)")
        return b"\x01" if v in ("1", "true") else b"\x00"
    if t == T.U16_LIST:
        return b"".join(_U16.pack(_int(x, 0, 0xFFFF, "uint16")) for x in _items(lines))
    if t == T.STRING:
        v = _one_line(lines, "text")
        return v.encode("utf-8")
    if t == T.BYTES:
        return _hex(lines)
    if t == T.DOMAIN_LIST:
        return encode_domain_list(_domain(x) for x in _items(lines))
    if t == T.CLASSLESS_ROUTES:
        out = bytearray()
        for x in _items(lines):
            net, router = _route(x)
            out.append(net.prefixlen)
            out += net.network_address.packed[: (net.prefixlen + 7) // 8]
            out += router
        return bytes(out)
    if t == T.SUBOPTIONS:
        return encode_suboptions(_sub(line, line.split(None, 2)) for line in lines)
    if t == T.VIVSO:
        vendors: dict[int, list[SubOption]] = {}
        for line in lines:
            w = line.split(None, 3)
            if len(w) < 4:
                raise OptionError(f"'{line}' is not ENTERPRISE CODE TYPE VALUE")
            ent = _int(w[0], 0, 0xFFFFFFFF, "enterprise number")
            vendors.setdefault(ent, []).append(_sub(line, w[1:]))
        return encode_vivso(vendors.items())
    if t == T.VIVCO:
        classes: dict[int, list[bytes]] = {}
        for line in lines:
            w = line.split(None, 2)
            if len(w) < 3 or w[1] not in ("string", "hex"):
                raise OptionError(f"'{line}' is not ENTERPRISE string|hex VALUE")
            ent = _int(w[0], 0, 0xFFFFFFFF, "enterprise number")
            item = w[2].encode() if w[1] == "string" else _hex([w[2]])
            classes.setdefault(ent, []).append(item)
        return encode_vivco(classes.items())
    raise OptionError(f"type {t} cannot be written as text")


def _sub(line: str, w: list[str]) -> SubOption:
    """One sub-option line's 'CODE TYPE VALUE' words."""
    if len(w) < 3:
        raise OptionError(f"'{line}' is not a sub-option CODE TYPE VALUE (e.g. '1 string "
                          "http://acs.example.net'; types: " + ", ".join(SUB_TYPES) + ")")
    code = _int(w[0], 0, 255, "sub-option code")
    if w[1] not in SUB_TYPES:
        raise OptionError(f"'{w[1]}' is not a sub-option type ({', '.join(SUB_TYPES)})")
    value = parse_value(TYPE_NAMES[w[1]], [w[2]])
    if len(value) > 255:
        raise OptionError(f"sub-option {code}: {len(value)} bytes (at most 255)")
    return code, value


# -- for people ----------------------------------------------------------------------


def _printable(b: bytes) -> str | None:
    """b as text if it is printable ASCII (ignoring trailing NULs), else None."""
    b = b.rstrip(b"\x00")
    if b and all(0x20 <= c < 0x7F for c in b):
        return b.decode("ascii")
    return None


def _text_or_hex(b: bytes) -> str:
    text = _printable(b)
    return f'"{text}"' if text is not None else (f"0x{b.hex()}" if b else '""')


def _format_value(t: OptType, raw: bytes) -> str:
    if t == OptType.EMPTY:
        _decode_empty(raw)
        return "true"
    if t in (OptType.STRING, OptType.BYTES):
        return _text_or_hex(raw) if t == OptType.STRING else f"0x{raw.hex()}"
    v = _DECODERS[t](raw)
    if t in (OptType.IP_LIST, OptType.U16_LIST, OptType.DOMAIN_LIST):
        return ", ".join(str(x) for x in v)
    if t == OptType.IP_PAIRS:
        return ", ".join(f"{a} {b}" for a, b in v)
    if t == OptType.MESSAGE_TYPE:
        return v.name if isinstance(v, MessageType) else f"unknown({v})"
    if t == OptType.OVERLOAD:
        return _OVERLOAD_NAMES[v]
    if t == OptType.PARAM_LIST:
        return ", ".join(f"{option_name(c)}({c})" for c in v)
    if t == OptType.CLIENT_ID:
        return _format_client_id(v)
    if t == OptType.RELAY_INFO:
        return ", ".join(
            f"{RELAY_SUBOPT_NAMES.get(c, f'sub-option-{c}')}({c})={_text_or_hex(s)}" for c, s in v
        )
    if t == OptType.FQDN:
        return f"flags=0x{v['flags']:02x} name={v['name']!r}"
    if t == OptType.CLASSLESS_ROUTES:
        return ", ".join(f"{net} via {gw}" for net, gw in v)
    if t == OptType.SUBOPTIONS:
        return ", ".join(f"{c}={_text_or_hex(x)}" for c, x in v)
    if t == OptType.VIVCO:
        return "; ".join(f"enterprise {e}: " + ", ".join(_text_or_hex(x) for x in items)
                         for e, items in v)
    if t == OptType.VIVSO:
        return "; ".join(f"enterprise {e}: " + ", ".join(f"{c}={_text_or_hex(x)}" for c, x in subs)
                         for e, subs in v)
    if t == OptType.BOOL:
        return "true" if v else "false"
    return str(v)


def _format_client_id(d: dict[str, Any]) -> str:
    kind = d["kind"]
    if kind == "hwaddr":
        return f"hwaddr {d['hwaddr']}"
    if kind == "rfc4361":
        s = f"iaid 0x{d['iaid']:08x} {d['duid_kind']} {d['duid']}"
        if "lladdr" in d:
            s += f" (lladdr {d['lladdr']})"
        return s
    if kind == "opaque":
        text = d.get("text")
        return f"type {d['type']} " + (f'"{text}"' if text is not None else f"0x{d['value']}")
    return f"invalid 0x{d['raw']}"


def format_option(code: int, raw: bytes) -> str:
    """One line for a person, e.g. '(53) dhcp-message-type: DISCOVER'. Never raises:
    a value that does not fit its definition is shown as '<malformed: why> 0x<hex>'.
    """
    d = STD_OPTION_DEFS.get(code)
    head = f"({code}) {option_name(code)}: "
    if d is None:
        return head + f"0x{bytes(raw).hex()}"
    try:
        return head + _format_value(d.type, raw)
    except Exception as e:  # a display helper must not take the caller down
        return head + f"<malformed: {e}> 0x{bytes(raw).hex()}"


def format_options(options: Mapping[int, bytes]) -> list[str]:
    """format_option for every option of a message, in its order."""
    return [format_option(code, raw) for code, raw in options.items()]
