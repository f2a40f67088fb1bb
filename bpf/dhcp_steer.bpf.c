/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dhcp_steer.bpf.c - the XDP entry of the DHCP hot-backup datapath.
 *
 * This file contains the program attached to every physical port under the
 * client interfaces, and the map glue it needs. It is kept thin: parse
 * (parse.h), find the interface the frame belongs to by (ingress ifindex,
 * VLAN ids) and the group that decides it (for an interface shared by two
 * groups, the client's RFC 3074 bucket picks one: loadbalance.h), look up
 * that group's role and the client's token bucket or else spend the
 * new-client budget (rate_limit.h), count (maps.h `stats`, in the group's
 * slot), return a verdict. Map accesses live here because bcc rewrites
 * `map.lookup()` only in the main source file; the headers hold the logic.
 *
 *  - not IPv4 / UDP / port 67 (ARP, VRRP, ICMP, TCP, other UDP, ...): XDP_PASS
 *    untouched and uncounted;
 *  - DHCP on an (ifindex, VLAN) no interface is bound to: not ours, XDP_PASS
 *    untouched, counted unbound;
 *  - DHCP too short for a BOOTP header: malformed, XDP_DROP;
 *  - DHCP whose group is standby here: dropped_standby, or, on a shared
 *    interface whose other group this device serves, dropped_other_bucket
 *    (the client is the peer's), XDP_DROP;
 *  - DHCP on the active device over the client's rate: dropped_ratelimit,
 *    XDP_DROP;
 *  - DHCP on the active device from a client with no bucket while the
 *    new-client budget is empty: dropped_new_client, XDP_DROP;
 *  - otherwise passed, XDP_PASS to the server's socket.
 *
 * Compiled at start-up by appliance/datapath/compiler.py with bcc.
 */
#include <uapi/linux/bpf.h>

#include "dhcp_steer.h"
#include "loadbalance.h"
#include "maps.h"
#include "parse.h"
#include "rate_limit.h"

/* One DHCP frame's outcome in `slot`: seen and the outcome, one lookup. */
static __always_inline void count(__u32 slot, __u32 outcome)
{
	struct stats_value *counters = stats.lookup(&slot);

	if (!counters)
		return;
	/* Per-CPU slot: no atomic needed. */
	counters->count[STAT_SEEN] += 1;
	if (outcome < STAT_MAX)
		counters->count[outcome] += 1;
}

static __always_inline void count_unbound(void)
{
	__u32 slot = STATS_SLOT_UNBOUND;
	struct stats_value *counters = stats.lookup(&slot);

	if (counters)
		counters->count[STAT_UNBOUND] += 1;
}

static __always_inline int group_is_active(__u32 group)
{
	__u32 *word = group_role.lookup(&group);

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
	struct lb_table_value *table;
	struct iface_value *iface;
	struct iface_key key = {};
	__u32 group, other, pick;
	__u32 zero = 0;
	__u32 outcome;
	int kind;

	kind = parse_dhcp(data, data_end, &frame);
	if (kind == PARSE_OTHER)
		return XDP_PASS;

	key.ifindex = ctx->ingress_ifindex;
	key.vlan[0] = frame.vlan[0];
	key.vlan[1] = frame.vlan[1];
	iface = ifaces.lookup(&key);
	if (!iface) {
		count_unbound();
		return XDP_PASS;
	}
	group = iface->group[0];
	if (!parse_bootp(&frame, data_end)) {
		count(group, STAT_MALFORMED);
		return XDP_DROP;
	}
	other = group;
	if (iface->groups > 1) {
		/* Load-sharing on one LAN: the bucket's parity picks the group,
		 * bucket % 2 as Kea's load balancing (query_filter.cc). */
		table = lb_table.lookup(&zero);
		pick = table ? rfc3074_bucket(table, frame.chaddr, frame.hlen) & 1 : 0;
		group = iface->group[pick];
		other = iface->group[pick ^ 1];
	}
	if (!group_is_active(group)) {
		outcome = other != group && group_is_active(other) ? STAT_DROPPED_OTHER_BUCKET
								   : STAT_DROPPED_STANDBY;
		count(group, outcome);
		return XDP_DROP;
	}
	outcome = admit(frame.client);
	count(group, outcome);
	return outcome == STAT_PASSED ? XDP_PASS : XDP_DROP;
}
