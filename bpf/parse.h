/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse.h - bounds-checked parsing of Ethernet / VLAN / IPv4 / UDP / BOOTP.
 *
 * This file contains parse_dhcp(), which classifies one frame as "not ours",
 * "DHCP to the server port" or "malformed DHCP", and finds the client's
 * hardware address. No maps and no verdicts here: dhcp_steer.bpf.c decides.
 *
 * Every read is preceded by a check against data_end, so the verifier proves
 * the parser never reads outside the frame, whatever its length.
 *
 * The rule for short and odd frames (README.md "Truncated frames"):
 *  - until the frame is proven to be IPv4 / UDP / destination port 67 it is
 *    PARSE_OTHER and is passed untouched; the stack drops what is broken;
 *  - a proven frame whose UDP payload cannot hold the BOOTP fixed header and
 *    magic cookie is PARSE_MALFORMED (dropped and counted by the caller).
 */
#ifndef DHCP_STEER_PARSE_H
#define DHCP_STEER_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>

#include "dhcp_steer.h"

/* Network-order constants, folded at compile time (no helper call). */
#define NET16(x) ((__be16)__builtin_bswap16((__u16)(x)))

/* IEEE 802.1Q tag after the outer EtherType (the TPID that named it). */
struct vlan_tag {
	__be16 tci;
	__be16 encapsulated_proto;
};

enum parse_result {
	PARSE_OTHER = 0,     /* not DHCP to us: pass untouched */
	PARSE_DHCP = 1,      /* DHCP to port 67; client is set */
	PARSE_MALFORMED = 2, /* UDP to port 67, too short for BOOTP */
};

struct dhcp_frame {
	/* Client hardware address (6 bytes inside the frame): chaddr when
	 * htype/hlen say Ethernet, else the Ethernet source. */
	const __u8 *client;
};

/* RFC 791 §3.1: fragment offset is the low 13 bits of the flags word. */
#define IP_FRAG_OFFSET_MASK 0x1fff

static __always_inline int parse_dhcp(void *data, void *data_end, struct dhcp_frame *f)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u8 *bootp;
	void *cur;
	__u16 proto;
	__u32 ihl;
	int i;

	if ((void *)(eth + 1) > data_end)
		return PARSE_OTHER;
	proto = eth->h_proto;
	cur = eth + 1;

	/* IEEE 802.1Q (TPID 0x8100) and 802.1ad S-tag (0x88a8): up to two. */
#pragma unroll
	for (i = 0; i < VLAN_MAX_DEPTH; i++) {
		struct vlan_tag *tag = cur;

		if (proto != NET16(ETH_P_8021Q) && proto != NET16(ETH_P_8021AD))
			break;
		if ((void *)(tag + 1) > data_end)
			return PARSE_OTHER;
		proto = tag->encapsulated_proto;
		cur = tag + 1;
	}

	/* RFC 894: EtherType 0x0800 is IPv4. */
	if (proto != NET16(ETH_P_IP))
		return PARSE_OTHER;
	ip = cur;
	if ((void *)(ip + 1) > data_end)
		return PARSE_OTHER;
	/* RFC 768 / IANA protocol numbers: 17 is UDP. */
	if (ip->protocol != IPPROTO_UDP)
		return PARSE_OTHER;
	/* Later fragments carry no UDP header: not provably ours. */
	if (ip->frag_off & NET16(IP_FRAG_OFFSET_MASK))
		return PARSE_OTHER;
	/* RFC 791 §3.1: IHL counts 32-bit words, 5 (no options) to 15. */
	ihl = ip->ihl;
	if (ip->version != 4 || ihl < 5)
		return PARSE_OTHER;
	udp = (void *)ip + ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return PARSE_OTHER;
	if (udp->dest != NET16(DHCP_SERVER_PORT))
		return PARSE_OTHER;

	/* From here on the frame is DHCP to the server, or malformed. */
	bootp = (__u8 *)(udp + 1);
	if (bootp + BOOTP_MIN_LEN > (__u8 *)data_end)
		return PARSE_MALFORMED;
	if (bootp[BOOTP_OFF_HTYPE] == BOOTP_HTYPE_ETHER &&
	    bootp[BOOTP_OFF_HLEN] == BOOTP_HLEN_ETHER)
		f->client = bootp + BOOTP_OFF_CHADDR;
	else
		f->client = eth->h_source;
	return PARSE_DHCP;
}

#endif /* DHCP_STEER_PARSE_H */
