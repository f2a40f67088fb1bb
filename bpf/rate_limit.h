/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rate_limit.h - token-bucket arithmetic for the per-client DHCP rate limit.
 *
 * This file contains the bucket maths and no map access: bcc rewrites
 * `map.lookup()` calls only in the main source file, so dhcp_steer.bpf.c
 * looks the bucket and the config record up and hands them to these helpers.
 *
 * Arithmetic in nanotokens (NS_PER_TOKEN per packet): the refill for
 * elapsed_ns at pps packets/s is elapsed_ns * pps nanotokens, no division.
 * The bounds in dhcp_steer.h keep every term below 2^64.
 *
 * Concurrency: the bucket is read and written without a lock. Two CPUs
 * handling frames of the same client at the same instant may both spend the
 * same token, so the worst case admits a few packets more than the burst.
 * Frames of one client normally hash to one RX queue (same addresses and
 * ports), so in practice one CPU owns a bucket.
 */
#ifndef DHCP_STEER_RATE_LIMIT_H
#define DHCP_STEER_RATE_LIMIT_H

#include "dhcp_steer.h"

/* Bucket depth in nanotokens for this config (burst 0 means 2 * pps). */
static __always_inline __u64 rate_limit_cap(const struct config_value *cfg)
{
	__u64 pps = cfg->rate_limit_pps;
	__u64 burst = cfg->rate_limit_burst;

	if (pps > RATE_LIMIT_MAX_PPS)
		pps = RATE_LIMIT_MAX_PPS;
	if (!burst)
		burst = 2 * pps;
	if (burst > RATE_LIMIT_MAX_BURST)
		burst = RATE_LIMIT_MAX_BURST;
	return burst * NS_PER_TOKEN;
}

/* A new client's bucket: full, less the packet being admitted. */
static __always_inline void rate_limit_fill(struct rate_limit_value *bucket,
					    const struct config_value *cfg, __u64 now)
{
	bucket->tokens = rate_limit_cap(cfg) - NS_PER_TOKEN;
	bucket->last_ns = now;
}

/*
 * Refill `bucket` for the time since its last packet, then spend one token.
 * Returns 1 if the packet is admitted, 0 if the client is over its rate.
 */
static __always_inline int rate_limit_spend(struct rate_limit_value *bucket,
					    const struct config_value *cfg, __u64 now)
{
	__u64 pps = cfg->rate_limit_pps;
	__u64 cap = rate_limit_cap(cfg);
	__u64 elapsed = now - bucket->last_ns;
	__u64 tokens = bucket->tokens;

	if (pps > RATE_LIMIT_MAX_PPS)
		pps = RATE_LIMIT_MAX_PPS;
	if ((__s64)elapsed < 0)
		elapsed = 0; /* another CPU stamped the bucket after our clock read */
	if (elapsed >= RATE_LIMIT_MAX_ELAPSED_NS || tokens > cap)
		tokens = cap;
	else
		tokens += elapsed * pps;
	if (tokens > cap)
		tokens = cap;
	bucket->last_ns = now;
	if (tokens < NS_PER_TOKEN) {
		bucket->tokens = tokens;
		return 0;
	}
	bucket->tokens = tokens - NS_PER_TOKEN;
	return 1;
}

#endif /* DHCP_STEER_RATE_LIMIT_H */
