"""DHCPv4 protocol constants: BOOTP op codes, message types, option and sub-option codes.

Values come from RFC 951 / RFC 2131 (message format), RFC 2132 (options and message
types) and the later RFCs cited on each line; the IANA "BOOTP Vendor Extensions and
DHCP Options" registry is the index. Names follow the RFC text, shortened the way
operators say them (DNS, not DOMAIN_NAME_SERVER).

At the end: Reason and Note, why the server refused a request or what it noticed in
one, each value a counter name, and LOG, the ones logged with their stable ids.
"""

from __future__ import annotations

from enum import Enum, IntEnum

SERVER_PORT = 67  # RFC 2131 §4.1: servers listen on UDP 67
CLIENT_PORT = 68  # RFC 2131 §4.1: clients listen on UDP 68

MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 §3, RFC 1497: 99.130.83.99
BROADCAST_FLAG = 0x8000  # RFC 2131 §2, Figure 2: leftmost bit of `flags`

BOOTP_MIN_SIZE = 300  # RFC 1542 §2.1: BOOTP messages shorter than this may be dropped
DHCP_MIN_MAX_SIZE = 576  # RFC 2131 §2: every client accepts 576-byte IP datagrams


class Op(IntEnum):
    """The `op` field (RFC 951, RFC 2131 §2)."""

    BOOTREQUEST = 1
    BOOTREPLY = 2


class HType(IntEnum):
    """Hardware address types for `htype` (RFC 1700 / IANA ARP parameters)."""

    ETHERNET = 1
    IEEE802 = 6
    INFINIBAND = 32  # RFC 4390: hlen 0, chaddr zero, client-id mandatory


class MessageType(IntEnum):
    """Option 53 values (RFC 2132 §9.6 and the RFCs named per value)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8
    FORCERENEW = 9  # RFC 3203
    LEASEQUERY = 10  # RFC 4388
    LEASEUNASSIGNED = 11  # RFC 4388
    LEASEUNKNOWN = 12  # RFC 4388
    LEASEACTIVE = 13  # RFC 4388
    BULKLEASEQUERY = 14  # RFC 6926
    LEASEQUERYDONE = 15  # RFC 6926
    ACTIVELEASEQUERY = 16  # RFC 7724
    LEASEQUERYSTATUS = 17  # RFC 7724
    TLS = 18  # RFC 7724


class Opt(IntEnum):
    """Option codes (RFC 2132 unless another RFC is named)."""

    PAD = 0  # §3.1
    SUBNET_MASK = 1  # §3.3
    TIME_OFFSET = 2  # §3.4
    ROUTER = 3  # §3.5
    TIME_SERVER = 4  # §3.6
    NAME_SERVER = 5  # §3.7 (IEN 116)
    DNS = 6  # §3.8
    LOG_SERVER = 7  # §3.9
    COOKIE_SERVER = 8  # §3.10
    LPR_SERVER = 9  # §3.11
    IMPRESS_SERVER = 10  # §3.12
    RESOURCE_LOCATION_SERVER = 11  # §3.13
    HOSTNAME = 12  # §3.14
    BOOT_FILE_SIZE = 13  # §3.15
    MERIT_DUMP = 14  # §3.16
    DOMAIN_NAME = 15  # §3.17
    SWAP_SERVER = 16  # §3.18
    ROOT_PATH = 17  # §3.19
    EXTENSIONS_PATH = 18  # §3.20
    IP_FORWARDING = 19  # §4.1
    NON_LOCAL_SOURCE_ROUTING = 20  # §4.2
    POLICY_FILTER = 21  # §4.3
    MAX_DATAGRAM_REASSEMBLY = 22  # §4.4
    DEFAULT_IP_TTL = 23  # §4.5
    PATH_MTU_AGING_TIMEOUT = 24  # §4.6
    PATH_MTU_PLATEAU_TABLE = 25  # §4.7
    INTERFACE_MTU = 26  # §5.1
    ALL_SUBNETS_LOCAL = 27  # §5.2
    BROADCAST_ADDRESS = 28  # §5.3
    PERFORM_MASK_DISCOVERY = 29  # §5.4
    MASK_SUPPLIER = 30  # §5.5
    ROUTER_DISCOVERY = 31  # §5.6
    ROUTER_SOLICITATION_ADDRESS = 32  # §5.7
    STATIC_ROUTE = 33  # §5.8
    TRAILER_ENCAPSULATION = 34  # §6.1
    ARP_CACHE_TIMEOUT = 35  # §6.2
    ETHERNET_ENCAPSULATION = 36  # §6.3
    TCP_DEFAULT_TTL = 37  # §7.1
    TCP_KEEPALIVE_INTERVAL = 38  # §7.2
    TCP_KEEPALIVE_GARBAGE = 39  # §7.3
    NIS_DOMAIN = 40  # §8.1
    NIS_SERVERS = 41  # §8.2
    NTP_SERVERS = 42  # §8.3
    VENDOR_SPECIFIC = 43  # §8.4
    NETBIOS_NAME_SERVERS = 44  # §8.5
    NETBIOS_DD_SERVER = 45  # §8.6
    NETBIOS_NODE_TYPE = 46  # §8.7
    NETBIOS_SCOPE = 47  # §8.8
    FONT_SERVERS = 48  # §8.9
    X_DISPLAY_MANAGER = 49  # §8.10
    REQUESTED_IP = 50  # §9.1
    LEASE_TIME = 51  # §9.2
    OVERLOAD = 52  # §9.3
    MESSAGE_TYPE = 53  # §9.6
    SERVER_ID = 54  # §9.7
    PARAM_REQUEST_LIST = 55  # §9.8
    MESSAGE = 56  # §9.9
    MAX_MESSAGE_SIZE = 57  # §9.10
    RENEWAL_TIME = 58  # §9.11 (T1)
    REBINDING_TIME = 59  # §9.12 (T2)
    VENDOR_CLASS = 60  # §9.13
    CLIENT_ID = 61  # §9.14; RFC 4361 §6.1 for the DUID form
    NISPLUS_DOMAIN = 64  # §8.11
    NISPLUS_SERVERS = 65  # §8.12
    TFTP_SERVER_NAME = 66  # §9.4
    BOOTFILE_NAME = 67  # §9.5
    MOBILE_IP_HOME_AGENT = 68  # §8.13
    SMTP_SERVER = 69  # §8.14
    POP3_SERVER = 70  # §8.15
    NNTP_SERVER = 71  # §8.16
    WWW_SERVER = 72  # §8.17
    FINGER_SERVER = 73  # §8.18
    IRC_SERVER = 74  # §8.19
    STREETTALK_SERVER = 75  # §8.20
    STDA_SERVER = 76  # §8.21
    NWIP_DOMAIN = 62  # RFC 2242
    NWIP_SUBOPTIONS = 63  # RFC 2242
    USER_CLASS = 77  # RFC 3004
    SLP_DIRECTORY_AGENT = 78  # RFC 2610
    SLP_SERVICE_SCOPE = 79  # RFC 2610
    RAPID_COMMIT = 80  # RFC 4039
    CLIENT_FQDN = 81  # RFC 4702
    RELAY_AGENT_INFO = 82  # RFC 3046
    NDS_SERVERS = 85  # RFC 2241
    NDS_TREE_NAME = 86  # RFC 2241
    NDS_CONTEXT = 87  # RFC 2241
    BCMCS_CONTROLLER_NAMES = 88  # RFC 4280
    BCMCS_CONTROLLER_ADDRESS = 89  # RFC 4280
    AUTHENTICATION = 90  # RFC 3118
    CLIENT_LAST_TRANSACTION_TIME = 91  # RFC 4388
    ASSOCIATED_IP = 92  # RFC 4388
    CLIENT_SYSTEM = 93  # RFC 4578
    CLIENT_NDI = 94  # RFC 4578
    UUID_GUID = 97  # RFC 4578
    UAP_SERVERS = 98  # RFC 2485
    PCODE = 100  # RFC 4833: IEEE 1003.1 TZ string
    TCODE = 101  # RFC 4833: tz database name
    IPV6_ONLY_PREFERRED = 108  # RFC 8925
    NETINFO_SERVER_ADDRESS = 112  # Apple NetInfo (Kea's name)
    NETINFO_SERVER_TAG = 113  # Apple NetInfo (Kea's name)
    CAPTIVE_PORTAL = 114  # RFC 8910
    AUTO_CONFIG = 116  # RFC 2563
    NAME_SERVICE_SEARCH = 117  # RFC 2937
    SUBNET_SELECTION = 118  # RFC 3011
    DOMAIN_SEARCH = 119  # RFC 3397
    CLASSLESS_STATIC_ROUTE = 121  # RFC 3442
    VIVCO = 124  # RFC 3925: vendor-identifying vendor class
    VIVSO = 125  # RFC 3925: vendor-identifying vendor-specific information
    PANA_AGENT = 136  # RFC 5192
    V4_LOST = 137  # RFC 5223
    CAPWAP_AC_V4 = 138  # RFC 5417
    SIP_UA_CS_DOMAINS = 141  # RFC 6011
    FORCERENEW_NONCE_CAPABLE = 145  # RFC 6704
    TFTP_SERVER_ADDRESS = 150  # RFC 5859 (Cisco VoIP phones)
    STATUS_CODE = 151  # RFC 6926
    BASE_TIME = 152  # RFC 6926
    START_TIME_OF_STATE = 153  # RFC 6926
    QUERY_START_TIME = 154  # RFC 6926
    QUERY_END_TIME = 155  # RFC 6926
    DHCP_STATE = 156  # RFC 6926
    DATA_SOURCE = 157  # RFC 6926
    V4_ACCESS_DOMAIN = 213  # RFC 5986
    MS_CLASSLESS_STATIC_ROUTE = 249  # Microsoft's pre-RFC 3442 code, same format
    WPAD = 252  # Web Proxy Auto-Discovery URL (draft-ietf-wrec-wpad-01)
    END = 255  # §3.2


class RelaySubOpt(IntEnum):
    """Option 82 sub-option codes (RFC 3046 §2.0 and the RFCs named per value)."""

    CIRCUIT_ID = 1  # RFC 3046 §3.1
    REMOTE_ID = 2  # RFC 3046 §3.2
    DOCSIS_DEVICE_CLASS = 4  # RFC 3256
    LINK_SELECTION = 5  # RFC 3527
    SUBSCRIBER_ID = 6  # RFC 3993
    RADIUS_ATTRIBUTES = 7  # RFC 4014
    AUTHENTICATION = 8  # RFC 4030
    VENDOR_SPECIFIC = 9  # RFC 4243
    RELAY_AGENT_FLAGS = 10  # RFC 5010
    SERVER_ID_OVERRIDE = 11  # RFC 5107
    RELAY_ID = 12  # RFC 6925
    ACCESS_TECHNOLOGY_TYPE = 13  # RFC 7839
    ACCESS_NETWORK_NAME = 14  # RFC 7839
    ACCESS_POINT_NAME = 15  # RFC 7839
    ACCESS_POINT_BSSID = 16  # RFC 7839
    OPERATOR_ID = 17  # RFC 7839
    OPERATOR_REALM = 18  # RFC 7839
    RELAY_SOURCE_PORT = 19  # RFC 8357
    VIRTUAL_SUBNET_SELECTION = 151  # RFC 6607
    VIRTUAL_SUBNET_SELECTION_CONTROL = 152  # RFC 6607


# -- why the server answered nothing, or a NAK: one enum from decision to counter ------


class Reason(Enum):
    """Why a received DHCP message got no answer (`dropped_*`) or a DHCPNAK (`nak_*`).

    The value is the counter name, one-to-one: stats/<value> in the runtime tree and
    docs/operations.md's counter table (tests/unit/test_dhcp_reasons.py holds the doc to
    this list). The server's Decision carries the member; the daemon counts it, and logs
    the ones in LOG (rate-limited, one stable id each).
    """

    # -- before the server (daemon, kernel) --
    MALFORMED = "dropped_malformed"  # not a DHCP message (message.DecodeReason), or no type
    # For a VRRP group this device does not serve now, on that interface (on one two
    # groups share: the other group's client by its RFC 3074 bucket); the XDP program
    # drops most of these in the kernel.
    STANDBY = "dropped_standby"
    # Came in on an interface that is not a client interface (the sync link, a
    # management port, loopback): the one :67 socket hears every interface.
    FOREIGN_INTERFACE = "dropped_foreign_interface"
    RATELIMIT = "dropped_ratelimit"  # over datapath/rate_limit_pps for one MAC (XDP)
    NEW_CLIENT = "dropped_new_client"  # unseen MAC, new-client budget empty (XDP)
    OVERLOAD = "dropped_overload"  # waited too long in the socket or intake queue: shed
    STORE_FAILED = "dropped_store_failed"  # reply withheld: its lease not durable (D062)
    # -- the message as a whole --
    NOT_REQUEST = "dropped_not_request"  # op is BOOTREPLY (RFC 2131 §4.1: servers ignore it)
    UNKNOWN_TYPE = "dropped_unknown_type"  # option 53 names no client message
    # Neither a client identifier nor a hardware address (hlen 0): nothing to key a
    # binding by (RFC 2131 §4.2).
    NO_CLIENT_ID = "dropped_no_client_id"
    # Option 61 longer than a lease can store once its instances are joined (RFC 3396
    # §7): a client identifier is the client's identity and is never shortened.
    CLIENT_ID_TOO_LONG = "dropped_client_id_too_long"
    # A relay's option 82 longer than 255 bytes joined: RFC 3046 §2.0 defines one
    # option, and §2.2 wants it echoed whole; we cannot store it, so we do not bind.
    RELAY_INFO_TOO_LONG = "dropped_relay_info_too_long"
    NO_SUBNET = "dropped_no_subnet"  # no pool for giaddr / the interface (§4.3.1)
    POOL_EXHAUSTED = "dropped_pool_exhausted"  # no free address for a DISCOVER
    # -- per message type --
    OTHER_SERVER = "dropped_other_server"  # REQUEST chose another server (§4.3.2)
    MALFORMED_REQUEST = "dropped_malformed_request"  # no/short option 50 where required
    UNKNOWN_CLIENT = "dropped_unknown_client"  # INIT-REBOOT, no record (§4.3.2: silent)
    RELEASE_UNKNOWN = "dropped_release_unknown"  # RELEASE of an address not bound to it
    # RELEASE by the binding's client, from elsewhere than it was bound through: another
    # relay or Option 82 circuit, or (not relayed) from an address other than ciaddr.
    RELEASE_MISMATCH = "dropped_release_mismatch"
    # DECLINE of an address the client holds no binding for: only OFFERED, someone
    # else's, or none (RFC 2131 §4.3.3: the client declines the address it was ACKed).
    DECLINE_UNKNOWN = "dropped_decline_unknown"
    DECLINE_MISMATCH = "dropped_decline_mismatch"  # as RELEASE_MISMATCH, for a DECLINE
    CIRCUIT_LIMIT = "dropped_circuit_limit"  # pools/<p>/max_leases_per_circuit reached
    RELAY_LIMIT = "dropped_relay_limit"  # pools/<p>/max_leases_per_relay reached
    # The pool's allow_classes / deny_classes keep the client's classes out (dhcp/classes.py)
    CLASS_DENIED = "dropped_class_denied"
    # -- DHCPNAK (RFC 2131 §4.3.2: the requested address is not valid for the client) --
    NAK_NO_REQUESTED = "nak_no_requested_address"  # SELECTING without option 50
    NAK_WRONG_NETWORK = "nak_wrong_network"  # INIT-REBOOT on another subnet
    NAK_NOT_LEASABLE = "nak_not_leasable"  # not an address of a pool on the client's net
    NAK_RESERVED = "nak_reserved"  # reserved for another MAC
    NAK_IN_USE = "nak_in_use"  # another client holds it
    # Free or lapsed, and outside what the client's group and this device may allocate:
    # the other group's half of a shared interface's pool, or the peer's half while not
    # in sync (leases/allocator.Share)
    NAK_OTHER_HALF = "nak_other_half"
    NAK_DECLINED = "nak_declined"  # quarantined after a DHCPDECLINE
    NAK_FIXED_ADDRESS = "nak_fixed_address"  # the client is a host with another address here
    # RENEWING/REBINDING for an address with no binding for this client while our table
    # is complete (standalone, or in sync with the peer): re-creating it would make a
    # durable binding from one unsolicited packet.
    NAK_NO_BINDING = "nak_no_binding"


class Note(Enum):
    """Something the server noticed in a message it still answered. The value is the
    counter name (stats/<value>), listed in docs/operations.md like Reason's."""

    # Option 82 from a client on our link (giaddr 0): a relay agent adds it, so this one
    # is the client's own claim (RFC 3046 §2.1: a relay drops such a packet from an
    # untrusted circuit). Echoed (§2.2) but not stored as the subscriber's data.
    OPTION82_UNRELAYED = "option82_unrelayed"
    # Option 12 that is not a host name we can store as sent (not UTF-8, or longer than
    # the 255 octets of a DNS name, RFC 1035 §2.3.4): the lease keeps no hostname.
    HOSTNAME_IGNORED = "hostname_ignored"
    # A DECLINE found the pool's quarantine full (pools/<p>/max_declined_percent): the
    # oldest quarantined address was freed early to make room.
    DECLINE_EVICTED = "decline_evicted"
    # A relay's Option 82 whose sub-options cannot be read (one runs past the end), or
    # whose link-selection / server-id-override sub-option is not 4 bytes: echoed whole
    # (RFC 3046 §2.2), but none of its link selection, override or relay port is used.
    RELAY_INFO_MALFORMED = "relay_info_malformed"
    # Options that fit nowhere in a reply within the client's maximum message size, even
    # with file and sname overloaded (RFC 2132 §9.3): left out (dhcp/reply.py).
    OPTIONS_DROPPED = "options_dropped"


# Refusals and notes an operator should hear about: a rate-limited log line each, with a
# stable id (docs/operations.md, "Log messages"). The rest are counted only: they are
# ordinary protocol traffic (another server chosen, an unknown INIT-REBOOT, a NAK).
LOG: dict[Reason | Note, tuple[str, str]] = {
    Reason.FOREIGN_INTERFACE: ("D013", "DHCP on an interface that is not a client interface"),
    Reason.POOL_EXHAUSTED: ("D011", "pool exhausted: no address"),
    Reason.NO_SUBNET: ("D050", "no pool for the relay's giaddr or the interface"),
    Reason.NO_CLIENT_ID: ("D051", "no client identifier and no hardware address"),
    Reason.CLIENT_ID_TOO_LONG: ("D052", "client identifier longer than 255 bytes"),
    Reason.RELAY_INFO_TOO_LONG: ("D053", "relay agent information longer than 255 bytes"),
    Reason.DECLINE_UNKNOWN: ("D054", "DECLINE of an address the client is not bound to"),
    Reason.DECLINE_MISMATCH: ("D055", "DECLINE from elsewhere than the binding's relay"),
    Reason.RELEASE_MISMATCH: ("D056", "RELEASE from elsewhere than the binding's relay"),
    Reason.CIRCUIT_LIMIT: ("D057", "relay circuit at its lease limit"),
    Reason.RELAY_LIMIT: ("D058", "relay agent at its lease limit"),
    Reason.NAK_NO_BINDING: ("D059", "renewal of an address with no binding: NAK"),
    Note.OPTION82_UNRELAYED: ("D070", "Option 82 from a client on our link, not stored"),
    Note.DECLINE_EVICTED: ("D071", "quarantine full: the oldest declined address freed"),
    Note.RELAY_INFO_MALFORMED: ("D072", "relay's Option 82 unreadable: link selection, "
                                "server-id override and relay port not used"),
}
