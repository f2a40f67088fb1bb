"""The RFC 3074 load-balancing hash: which of two groups serves a client on a shared LAN.

Pure. An interface bound to two VRRP groups (load-sharing on one LAN) splits its
clients between them by the client's hash bucket, so both devices serve the LAN at
once, each answering its half. The XDP program makes the same decision in the kernel
(bpf/loadbalance.h, with the mixing table that bpf/dhcp_steer.h holds and the loader
writes into the `lb_table` map); this module is its Python twin, for the DHCP server
when the datapath is off and for the tests that prove the two agree
(tests/unit/test_loadbalance.py, tests/datapath/test_xdp_groups.py).

The rule, both sides:

- the key is chaddr's first hlen octets, hlen clamped to the field's 16 (RFC 2131 §2);
- `bucket(key)`: RFC 3074 §6, Pearson's hash seeded with the key's length, taking the
  octets from the last to the first through MIX_TABLE; 0..255;
- `group_index(bucket)`: bucket % 2, as Kea's load balancing picks one of two active
  servers (hooks/dhcp/high_availability/query_filter.cc): 0 is the interface's first
  group line, 1 its second.

Why chaddr and never the client identifier option (which RFC 3074 and Kea hash when a
client sends one): the kernel would have to walk the variable-length option list to
find it, a bounded loop over up to a full frame of options for every DHCP frame, while
chaddr sits at a fixed offset. One rule on both sides matters more than the choice of
key: a client's DISCOVER, REQUEST and renewals all carry the same chaddr, relays keep
it, so every message of a client lands in the same bucket.
"""

from __future__ import annotations

CHADDR_LEN = 16  # RFC 2131 §2: the chaddr field's size

# RFC 3074 §6: the mixing table, a permutation of 0..255.
MIX_TABLE: tuple[int, ...] = (
    251, 175, 119, 215,  81,  14,  79, 191, 103,  49, 181, 143, 186, 157,   0, 232,
     31,  32,  55,  60, 152,  58,  17, 237, 174,  70, 160, 144, 220,  90,  57, 223,
     59,   3,  18, 140, 111, 166, 203, 196, 134, 243, 124,  95, 222, 179, 197,  65,
    180,  48,  36,  15, 107,  46, 233, 130, 165,  30, 123, 161, 209,  23,  97,  16,
     40,  91, 219,  61, 100,  10, 210, 109, 250, 127,  22, 138,  29, 108, 244,  67,
    207,   9, 178, 204,  74,  98, 126, 249, 167, 116,  34,  77, 193, 200, 121,   5,
     20, 113,  71,  35, 128,  13, 182,  94,  25, 226, 227, 199,  75,  27,  41, 245,
    230, 224,  43, 225, 177,  26, 155, 150, 212, 142, 218, 115, 241,  73,  88, 105,
     39, 114,  62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122,  12,  84,
     82, 163,  44, 139, 228, 236, 205, 242, 217,  11, 187, 146, 159,  64,  86, 239,
    195,  42, 106, 198, 118, 112, 184, 172,  87,   2, 173, 117, 176, 229, 247, 253,
    137, 185,  99, 164, 102, 147,  45,  66, 231,  52, 141, 211, 194, 206, 246, 238,
     56, 110,  78, 248,  63, 240, 189,  93,  92,  51,  53, 183,  19, 171,  72,  50,
     33, 104, 101,  69,   8, 252,  83, 120,  76, 135,  85,  54, 202, 125, 188, 213,
     96, 235, 136, 208, 162, 129, 190, 132, 156,  38,  47,   1,   7, 254,  24,   4,
    216, 131,  89,  21,  28, 133,  37, 153, 149,  80, 170,  68,   6, 169, 234, 151,
)  # fmt: skip

GROUPS = 2  # groups that share one interface


def key(chaddr: bytes, hlen: int) -> bytes:
    """The hash key of a BOOTP message: chaddr's first hlen octets (hlen clamped to the
    16-octet field, as the kernel clamps it). `chaddr` is the field as received."""
    return bytes(chaddr[: max(0, min(hlen, CHADDR_LEN))])


def bucket(hwaddr: bytes) -> int:
    """RFC 3074 §6: the hash bucket (0..255) of `hwaddr`, the key's octets (see key())."""
    h = len(hwaddr) & 0xFF
    table = MIX_TABLE
    for octet in reversed(hwaddr):
        h = table[h ^ octet]
    return h


def group_index(b: int) -> int:
    """Which of an interface's two groups serves bucket `b`: 0 (its first group line) or
    1 (its second); bucket % 2, Kea's rule for two active servers."""
    return b % GROUPS


def group_of(chaddr: bytes, hlen: int) -> int:
    """group_index(bucket(key(chaddr, hlen))): the whole rule for one message."""
    return group_index(bucket(key(chaddr, hlen)))
