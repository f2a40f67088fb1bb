/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dhcp_steer.bpf.c - the XDP entry of the DHCP hot-backup datapath.
 *
 * This file contains the program attached to client/interface and the map
 * glue it needs. It is kept thin: parse (parse.h), look up the role and the
 * client's token bucket or else spend the new-client budget (rate_limit.h),
 * count (maps.h `stats`), return a verdict. Map accesses live here because
 * bcc rewrites `map.lookup()` only in the main source file; the headers hold
 * the logic.
 *
 *  - not IPv4 / UDP / port 67 (ARP, VRRP, ICMP, TCP, other UDP, ...): XDP_PASS
 *    untouched and uncounted;
 *  - DHCP too short for a BOOTP header: malformed, XDP_DROP;
 *  - DHCP on the standby: dropped_standby, XDP_DROP;
 *  - DHCP on the active device over the client's rate: dropped_ratelimit,
 *    XDP_DROP;
 *  - DHCP on the active device from a client with no bucket while the
 *    new-client budget is empty: dropped_new_client, XDP_DROP;
 *  - otherwise passed, XDP_PASS to the server's socket.
 *
 * Compiled at start-up by appliance/datapath/loader.py with bcc.
 */
#include <uapi/linux/bpf.h>

#include "dhcp_steer.h"
#include "maps.h"
#include "parse.h"
#include "rate_limit.h"

static __always_inline void count(__u32 index)
{
	__u64 *counter = stats.lookup(&index);

	if (counter)
		*counter += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline int role_is_active(void)
{
	__u32 zero = 0;
	__u32 *word = role.lookup(&zero);

	return word && *word == ROLE_ACTIVE;
}

/*
 * Admission on the active device; returns the stat_index of the outcome:
 * STAT_PASSED, STAT_DROPPED_RATELIMIT or STAT_DROPPED_NEW_CLIENT.
 *
 * A client with a bucket is known: only its own bucket decides. A client
 * without one must first get a unit of the global new-client budget, and only
 * then gets a bucket, so random chaddrs cannot each start with a full bucket,
 * nor push known clients out of the LRU faster than the budget allows. With
 * the per-client limit off and the budget on, buckets still mark who is
 * known. With both off, no map is touched.
 */
static __always_inline __u32 admit(const __u8 *client)
{
	struct rate_limit_value fresh = {};
	struct rate_limit_value *bucket;
	struct new_client_value *budget;
	struct rate_limit_key key = {};
	struct config_value *cfg;
	__u32 zero = 0;
	__u64 now;

	cfg = config.lookup(&zero);
	if (!cfg || (cfg->rate_limit_pps == 0 && cfg->new_client_pps == 0))
		return STAT_PASSED;
	__builtin_memcpy(key.mac, client, sizeof(key.mac));
	now = bpf_ktime_get_ns();
	bucket = rate_limit.lookup(&key);
	if (bucket) {
		if (cfg->rate_limit_pps == 0 || rate_limit_spend(bucket, cfg, now))
			return STAT_PASSED;
		return STAT_DROPPED_RATELIMIT;
	}
	if (cfg->new_client_pps) {
		budget = new_client.lookup(&zero);
		if (!budget || !new_client_spend(&budget->tat_ns, cfg, now))
			return STAT_DROPPED_NEW_CLIENT;
	}
	rate_limit_fill(&fresh, cfg, now);
	rate_limit.update(&key, &fresh);
	return STAT_PASSED;
}

int dhcp_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct dhcp_frame frame = {};
	__u32 outcome;
	int kind;

	kind = parse_dhcp(data, data_end, &frame);
	if (kind == PARSE_OTHER)
		return XDP_PASS;

	count(STAT_SEEN);
	if (kind == PARSE_MALFORMED) {
		count(STAT_MALFORMED);
		return XDP_DROP;
	}
	if (!role_is_active()) {
		count(STAT_DROPPED_STANDBY);
		return XDP_DROP;
	}
	outcome = admit(frame.client);
	count(outcome);
	return outcome == STAT_PASSED ? XDP_PASS : XDP_DROP;
}
