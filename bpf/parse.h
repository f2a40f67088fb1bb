/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parse.h - bounds-checked parsing of Ethernet / VLAN / IPv4 / UDP / BOOTP.
 *
 * This file contains parse_dhcp(), which classifies one frame as "not ours",
 * "DHCP to the server port" or "malformed DHCP", and finds the VLAN ids of
 * its tags (the interface it belongs to), the client's hardware address and
 * chaddr with hlen. No maps and no verdicts here: dhcp_steer.bpf.c decides.
 *
 * Every read is preceded by a check against data_end, so the verifier proves
 * the parser never reads outside the frame, whatever its length.
 *
 * The rule for short and odd frames (README.md "Truncated frames"):
 *  - until the frame is proven to be IPv4 / UDP / destination port 67 it is
 *    PARSE_OTHER and is passed untouched; the stack drops what is broken;
 *  - a proven frame (PARSE_UDP67) whose UDP payload cannot hold the BOOTP
 *    fixed header and magic cookie fails parse_bootp: malformed, dropped and
 *    counted by the caller when its interface is ours.
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
	PARSE_OTHER = 0, /* not DHCP to us: pass untouched */
	PARSE_UDP67 = 1, /* IPv4 UDP to port 67: vlan[], eth and bootp are set */
};

struct dhcp_frame {
	const struct ethhdr *eth;
	/* The UDP payload: a BOOTP message if long enough (parse_bootp). */
	const __u8 *bootp;
	/* Client hardware address (6 bytes inside the frame): chaddr when
	 * htype/hlen say Ethernet, else the Ethernet source. The rate-limit key. */
	const __u8 *client;
	/* The BOOTP chaddr field (16 bytes inside the frame) and hlen clamped to
	 * BOOTP_CHADDR_LEN: the RFC 3074 hash key. */
	const __u8 *chaddr;
	__u32 hlen;
	/* Non-zero VLAN ids of the tags, outermost first (struct iface_key). A
	 * malformed frame is counted only when its (ifindex, VLAN) is bound, so
	 * the VLAN ids are found before the BOOTP length is checked. */
	__u16 vlan[IFACE_VLANS];
};

/* RFC 791 §3.1: fragment offset is the low 13 bits of the flags word. */
#define IP_FRAG_OFFSET_MASK 0x1fff

static __always_inline int parse_dhcp(void *data, void *data_end, struct dhcp_frame *f)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	void *cur;
	__u16 proto;
	__u16 vid;
	__u32 ihl;
	int tags = 0;
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
		/* A VID-0 (priority) tag is no VLAN: the kernel strips it and
		 * delivers the frame as untagged, so it takes no key slot. */
		vid = __builtin_bswap16(tag->tci) & VLAN_VID_MASK;
		if (vid) {
			if (tags == 0)
				f->vlan[0] = vid;
			else
				f->vlan[1] = vid;
			tags++;
		}
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
	f->eth = eth;
	f->bootp = (__u8 *)(udp + 1);
	return PARSE_UDP67;
}

/*
 * The BOOTP fields of a PARSE_UDP67 frame: 1 (client, chaddr, hlen set) if
 * the payload holds the fixed header and magic cookie, 0 if it is malformed.
 * Separate from parse_dhcp, and called after the interface lookup, so the
 * verifier sees the pointers derived right after the one check that proves
 * them (LLVM would otherwise fold a stored verdict back into a pointer
 * comparison the verifier cannot tie to the stored pointers).
 */
static __always_inline int parse_bootp(struct dhcp_frame *f, void *data_end)
{
	const __u8 *bootp = f->bootp;

	if (bootp + BOOTP_MIN_LEN > (const __u8 *)data_end)
		return 0;
	f->chaddr = bootp + BOOTP_OFF_CHADDR;
	f->hlen = bootp[BOOTP_OFF_HLEN];
	if (f->hlen > BOOTP_CHADDR_LEN)
		f->hlen = BOOTP_CHADDR_LEN;
	if (bootp[BOOTP_OFF_HTYPE] == BOOTP_HTYPE_ETHER &&
	    bootp[BOOTP_OFF_HLEN] == BOOTP_HLEN_ETHER)
		f->client = bootp + BOOTP_OFF_CHADDR;
	else
		f->client = f->eth->h_source;
	return 1;
}

#endif /* DHCP_STEER_PARSE_H */
