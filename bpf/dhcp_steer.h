/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dhcp_steer.h - the contract between the XDP program and user space.
 *
 * This file contains every constant, enum and key/value struct that both
 * sides of the datapath read: the role word, the counter indexes, the
 * run-time config record, the rate-limit bucket and the new-client budget.
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

/* ---- the role word ------------------------------------------------------ */

/*
 * Value of the one-slot `role` array (a __u32). Zero is standby so that a
 * freshly created map, whose slots the kernel zero-fills, drops DHCP until
 * the daemon says otherwise.
 */
enum role_value {
	ROLE_STANDBY = 0,
	ROLE_ACTIVE = 1,
};

/* ---- counters ----------------------------------------------------------- */

/*
 * Index into the per-CPU `stats` array. Every frame the program classifies
 * as DHCP to the server port counts in STAT_SEEN and in exactly one of the
 * five outcomes after it, so seen == passed + dropped_standby +
 * dropped_ratelimit + dropped_new_client + malformed. Other traffic is not
 * counted (it must cost a handful of instructions). Names in Python: the
 * member name without STAT_, lower case.
 */
enum stat_index {
	STAT_SEEN = 0,
	STAT_PASSED = 1,
	STAT_DROPPED_STANDBY = 2,
	STAT_DROPPED_RATELIMIT = 3,
	STAT_MALFORMED = 4,
	STAT_DROPPED_NEW_CLIENT = 5, /* unknown client, new-client budget empty */
	STAT_MAX = 6,
};

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
