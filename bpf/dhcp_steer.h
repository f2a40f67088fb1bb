/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dhcp_steer.h - the contract between the XDP program and user space.
 *
 * This file contains every constant, enum and key/value struct that both
 * sides of the datapath read: the interface key (ifindex, VLAN ids) and the
 * groups it is bound to, the per-group role word, the counter indexes and
 * the per-group counter record, the RFC 3074 mixing table, the run-time
 * config record, the rate-limit bucket and the new-client budget.
 * It is the single source:
 * appliance/datapath/layout.py mirrors it with ctypes, and
 * tests/datapath/test_xdp_prog.py proves the two agree (enum values parsed
 * from this file, struct sizes and offsets compared with bcc's Key/Leaf).
 *
 * Compile-time knobs are `#ifndef` defaults that the loader may override
 * with bcc cflags ("-DNAME=value"); the source is never templated.
 *
 * Keep this file free of maps and code: maps live in maps.h, parsing in
 * parse.h. Every enum member carries an explicit value because the Python
 * side parses them.
 */
#ifndef DHCP_STEER_H
#define DHCP_STEER_H

/* ---- compile-time knobs (override with -DNAME=value) ------------------- */

/* Buckets in the rate_limit LRU map: one per client MAC recently seen. */
#ifndef RATE_LIMIT_ENTRIES
#define RATE_LIMIT_ENTRIES 65536
#endif

/* VLAN tags parsed before giving up (802.1Q single tag, 802.1ad QinQ). */
#ifndef VLAN_MAX_DEPTH
#define VLAN_MAX_DEPTH 2
#endif

/*
 * Groups (VRRP instances) the datapath can tell apart: the size of the
 * `group_role` array; group indexes run 0..MAX_GROUPS-1. The `stats` array
 * has one more slot (STATS_SLOT_UNBOUND).
 */
#ifndef MAX_GROUPS
#define MAX_GROUPS 1024
#endif

/* Bound (ifindex, VLAN) keys in the `ifaces` hash: client interfaces. */
#ifndef IFACE_ENTRIES
#define IFACE_ENTRIES 4096
#endif

/* ---- protocol constants ------------------------------------------------- */

/* RFC 2131 §4.1: servers listen on UDP 67 ("bootps"), clients on 68. */
#define DHCP_SERVER_PORT 67

/*
 * RFC 2131 §2 figure 1: op..file is a fixed 236-octet header; §3: the options
 * field opens with the 4-octet magic cookie 99.130.83.99. A UDP payload to
 * port 67 shorter than this cannot be a DHCP message (counted malformed).
 */
#define BOOTP_FIXED_LEN 236
#define BOOTP_MIN_LEN 240

/* RFC 2131 §2 figure 1: octet offsets inside the BOOTP header. */
#define BOOTP_OFF_HTYPE 1
#define BOOTP_OFF_HLEN 2
#define BOOTP_OFF_CHADDR 28

/* RFC 1700 / IANA ARP hardware types: 1 = Ethernet (10Mb), chaddr is a MAC. */
#define BOOTP_HTYPE_ETHER 1
#define BOOTP_HLEN_ETHER 6

/* RFC 2131 §2 figure 1: chaddr is 16 octets; hlen above that is taken as 16. */
#define BOOTP_CHADDR_LEN 16

/* IEEE 802.1Q: the VLAN id is the low 12 bits of the TCI; VID 0 is a
 * priority tag (no VLAN), which the kernel treats as untagged. */
#define VLAN_VID_MASK 0x0fff

/* ---- interfaces and groups ---------------------------------------------- */

/*
 * VLAN ids in an interface key. The parser records the VIDs of the tags it
 * walks, so the key must hold VLAN_MAX_DEPTH of them.
 */
#define IFACE_VLANS 2
#if VLAN_MAX_DEPTH > IFACE_VLANS
#error "VLAN_MAX_DEPTH exceeds the VLAN ids an iface_key holds"
#endif

/* Groups one interface can be bound to: one, or two sharing its clients. */
#define IFACE_MAX_GROUPS 2

/*
 * Key of `ifaces`: where a frame arrived. ifindex is the physical port the
 * program runs on (xdp_md ingress_ifindex); vlan[] the non-zero VLAN ids of
 * its tags, outermost first, 0 where there is no tag: an untagged frame on
 * eth1 is {eth1, {0, 0}}, one of eth1.100 {eth1, {100, 0}}, one of the QinQ
 * interface eth1.10.100 {eth1, {10, 100}}. A VID-0 (priority) tag is not
 * recorded: the kernel delivers such a frame as untagged.
 */
struct iface_key {
	__u32 ifindex;
	__u16 vlan[IFACE_VLANS];
};

/*
 * Value of `ifaces`: the group(s) whose master serves this interface.
 * groups 1: group[0] serves every client. groups 2 (load-sharing on one LAN):
 * the client's RFC 3074 bucket picks group[bucket % 2] (Kea's rule for two
 * active servers), so each device drops the other's clients. Every index is
 * below MAX_GROUPS (user space checks before writing).
 */
struct iface_value {
	__u32 groups;
	__u32 group[IFACE_MAX_GROUPS];
};

/*
 * RFC 3074 §6: the load-balancing hash's mixing table, a permutation of
 * 0..255 (Pearson's hash). bcc places no constant data in the program
 * (it has no .rodata), so the table reaches the kernel in the one-slot
 * `lb_table` array, written by the loader right after the program loads;
 * this copy is the contract that appliance/dhcp/loadbalance.py and that
 * map are tested against (tests/datapath, tests/unit/test_loadbalance.py).
 */
#define RFC3074_TABLE_LEN 256
#define RFC3074_MIX_TABLE                                                    \
	{                                                                    \
		251, 175, 119, 215,  81,  14,  79, 191, 103,  49, 181, 143, \
		186, 157,   0, 232,  31,  32,  55,  60, 152,  58,  17, 237, \
		174,  70, 160, 144, 220,  90,  57, 223,  59,   3,  18, 140, \
		111, 166, 203, 196, 134, 243, 124,  95, 222, 179, 197,  65, \
		180,  48,  36,  15, 107,  46, 233, 130, 165,  30, 123, 161, \
		209,  23,  97,  16,  40,  91, 219,  61, 100,  10, 210, 109, \
		250, 127,  22, 138,  29, 108, 244,  67, 207,   9, 178, 204, \
		 74,  98, 126, 249, 167, 116,  34,  77, 193, 200, 121,   5, \
		 20, 113,  71,  35, 128,  13, 182,  94,  25, 226, 227, 199, \
		 75,  27,  41, 245, 230, 224,  43, 225, 177,  26, 155, 150, \
		212, 142, 218, 115, 241,  73,  88, 105,  39, 114,  62, 255, \
		192, 201, 145, 214, 168, 158, 221, 148, 154, 122,  12,  84, \
		 82, 163,  44, 139, 228, 236, 205, 242, 217,  11, 187, 146, \
		159,  64,  86, 239, 195,  42, 106, 198, 118, 112, 184, 172, \
		 87,   2, 173, 117, 176, 229, 247, 253, 137, 185,  99, 164, \
		102, 147,  45,  66, 231,  52, 141, 211, 194, 206, 246, 238, \
		 56, 110,  78, 248,  63, 240, 189,  93,  92,  51,  53, 183, \
		 19, 171,  72,  50,  33, 104, 101,  69,   8, 252,  83, 120, \
		 76, 135,  85,  54, 202, 125, 188, 213,  96, 235, 136, 208, \
		162, 129, 190, 132, 156,  38,  47,   1,   7, 254,  24,   4, \
		216, 131,  89,  21,  28, 133,  37, 153, 149,  80, 170,  68, \
		  6, 169, 234, 151,                                         \
	}

/* Value of `lb_table`: the mixing table above. */
struct lb_table_value {
	__u8 mix[RFC3074_TABLE_LEN];
};

/* ---- the role word ------------------------------------------------------ */

/*
 * Value of each slot of `group_role` (a __u32, one per group index). Zero is
 * standby so that a freshly created map, whose slots the kernel zero-fills,
 * drops DHCP until the daemon says otherwise.
 */
enum role_value {
	ROLE_STANDBY = 0,
	ROLE_ACTIVE = 1,
};

/* ---- counters ----------------------------------------------------------- */

/*
 * Index into a `stats` record (struct stats_value). Every frame the program
 * classifies as DHCP to the server port on a bound (ifindex, VLAN) counts in
 * STAT_SEEN and in exactly one of the six outcomes after it, in the slot of
 * the group that decided it, so seen == passed + dropped_standby +
 * dropped_ratelimit + malformed + dropped_new_client + dropped_other_bucket.
 * DHCP on an (ifindex, VLAN) that no interface is bound to is not ours: it
 * is passed untouched and counted only in STAT_UNBOUND, in the slot
 * STATS_SLOT_UNBOUND. Other traffic is not counted (it must cost a handful
 * of instructions). Names in Python: the member name without STAT_, lower
 * case.
 */
enum stat_index {
	STAT_SEEN = 0,
	STAT_PASSED = 1,
	STAT_DROPPED_STANDBY = 2,
	STAT_DROPPED_RATELIMIT = 3,
	STAT_MALFORMED = 4,
	STAT_DROPPED_NEW_CLIENT = 5,   /* unknown client, new-client budget empty */
	STAT_DROPPED_OTHER_BUCKET = 6, /* shared interface: the client's bucket
					  is the other group's, which this
					  device does not serve (the peer does) */
	STAT_UNBOUND = 7,              /* not ours: passed, outside seen */
	STAT_MAX = 8,
};

/*
 * Value of `stats` (per CPU): the counters of one group, indexed by enum
 * stat_index. Slot g holds group g's (malformed frames of a shared
 * interface count in its first group's slot); slot STATS_SLOT_UNBOUND holds
 * STAT_UNBOUND only. One record per slot keeps it to one map lookup per
 * frame.
 */
struct stats_value {
	__u64 count[STAT_MAX];
};

#define STATS_SLOT_UNBOUND MAX_GROUPS

/* ---- rate limiter ------------------------------------------------------- */

/* Tokens are kept in nanotokens: one DHCP packet costs NS_PER_TOKEN. */
#define NS_PER_TOKEN 1000000000ULL

/*
 * Bounds that keep the bucket arithmetic inside 64 bits: the refill
 * elapsed_ns * pps is at most 1e12 * 1e6 = 1e18, the cap burst * 1e9 at most
 * 4.3e18; their sum stays below 2^64 (1.8e19). The loader refuses larger
 * values; the program clamps as well.
 */
#define RATE_LIMIT_MAX_PPS 1000000
#define RATE_LIMIT_MAX_BURST 4000000
#define RATE_LIMIT_MAX_ELAPSED_NS 1000000000000ULL

/*
 * Value of the one-slot `config` array; written by user space at run time.
 * The new-client budget shares the rate limiter's bounds (RATE_LIMIT_MAX_*).
 */
struct config_value {
	__u32 rate_limit_pps;   /* per client MAC; 0 = rate limiting off */
	__u32 rate_limit_burst; /* bucket depth in packets; 0 = 2 * pps */
	__u32 new_client_pps;   /* new clients per second, all MACs; 0 = off */
	__u32 new_client_burst; /* budget depth in clients; 0 = 2 * pps */
};

/* Key of `rate_limit`: the client's hardware address (see README.md). */
struct rate_limit_key {
	__u8 mac[6];
};

/* Value of `rate_limit`: one token bucket. */
struct rate_limit_value {
	__u64 tokens;  /* nanotokens left, at most burst * NS_PER_TOKEN */
	__u64 last_ns; /* bpf_ktime_get_ns() of the last refill */
};

/* ---- new-client budget -------------------------------------------------- */

/*
 * Compare-and-swap attempts on the budget word before a new client is
 * refused. A failed attempt means another CPU has just changed the word,
 * i.e. admitted a new client itself: under that contention refusing is
 * within the budget's promise (rate_limit.h, new_client_spend).
 */
#define NEW_CLIENT_CAS_TRIES 4

/*
 * Value of the one-slot `new_client` array: the budget shared by every CPU,
 * one 64-bit word so that a single BPF_CMPXCHG updates it (kernel >= 5.12).
 * GCRA in its virtual-scheduling form: the theoretical arrival time of the
 * next new client. Zero (a fresh map, or user space after a config change)
 * is a full budget.
 */
struct new_client_value {
	__u64 tat_ns; /* bpf_ktime_get_ns() clock; budget empty at now + burst * interval */
};

#endif /* DHCP_STEER_H */
