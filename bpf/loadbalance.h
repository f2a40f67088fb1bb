/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loadbalance.h - the RFC 3074 hash bucket of a client, for interfaces shared
 * by two groups.
 *
 * This file contains rfc3074_bucket() and no map access (dhcp_steer.bpf.c
 * looks the mixing table up and hands it over). appliance/dhcp/loadbalance.py
 * is the same function in Python; tests/datapath runs both on random chaddrs.
 *
 * RFC 3074 §6: Pearson's hash, seeded with the key's length, taking the key's
 * octets from the last to the first, each through the mixing table; the
 * result (0..255) is the client's bucket. The key is chaddr's first hlen
 * octets (hlen clamped to the field's 16). RFC 3074 (and Kea) hash the
 * client identifier option instead when the client sends one; we never do:
 * finding an option means walking the variable-length option list, a loop
 * over up to ~1200 octets per frame that the verifier must bound and every
 * DHCP frame would pay for, while chaddr sits at a fixed offset. User space
 * uses the same chaddr rule, so both sides always agree; the split is only
 * worse for clients whose chaddr changes between messages (none we know of:
 * a relay keeps chaddr, and a client that randomises its MAC changes its
 * client identifier too).
 */
#ifndef DHCP_STEER_LOADBALANCE_H
#define DHCP_STEER_LOADBALANCE_H

#include "dhcp_steer.h"

/*
 * The bucket of the key chaddr[0..hlen-1] (hlen <= BOOTP_CHADDR_LEN; the
 * caller proved chaddr + BOOTP_CHADDR_LEN lies inside the frame). Unrolled
 * over the field's 16 octets so that every packet access has a constant
 * offset; octets at or past hlen are skipped.
 */
static __always_inline __u32 rfc3074_bucket(const struct lb_table_value *table,
					     const __u8 *chaddr, __u32 hlen)
{
	__u8 hash = hlen;
	int i;

#pragma unroll
	for (i = BOOTP_CHADDR_LEN - 1; i >= 0; i--) {
		if (i < hlen)
			hash = table->mix[hash ^ chaddr[i]];
	}
	return hash;
}

#endif /* DHCP_STEER_LOADBALANCE_H */
