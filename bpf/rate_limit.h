/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rate_limit.h - the per-client token bucket and the global new-client budget.
 *
 * This file contains the admission maths and no map access: bcc rewrites
 * `map.lookup()` calls only in the main source file, so dhcp_steer.bpf.c
 * looks the bucket, the budget and the config record up and hands them to
 * these helpers.
 *
 * Per-client bucket: arithmetic in nanotokens (NS_PER_TOKEN per packet): the
 * refill for elapsed_ns at pps packets/s is elapsed_ns * pps nanotokens, no
 * division. The bounds in dhcp_steer.h keep every term below 2^64.
 * Concurrency: the bucket is read and written without a lock. Two CPUs
 * handling frames of the same client at the same instant may both spend the
 * same token, so the worst case admits a few packets more than the burst.
 * Frames of one client normally hash to one RX queue (same addresses and
 * ports), so in practice one CPU owns a bucket.
 *
 * New-client budget: one budget for every client MAC the program has no
 * bucket for, shared by all CPUs. Here the lock-free shortcut above would be
 * wrong: a flood of random chaddrs is spread over every RX queue by design
 * (RSS hashes the varying addresses), so every CPU writes the budget at the
 * same time, and a lost update is a new client admitted for free. Choices
 * weighed (all load with bcc 0.26 on kernel 6.x):
 *  - a per-CPU share (rate / ncpus per CPU, no sharing): exact per CPU, but
 *    a NIC with one RX queue, generic XDP or veth puts every frame on one CPU,
 *    so the real budget would be rate / ncpus, and the shares need the CPU
 *    count in the config record;
 *  - bpf_spin_lock around a two-word bucket: correct, but the map must carry
 *    BTF (bcc falls back to no BTF when it cannot build it, and then the
 *    verifier refuses the program), no helper may run under the lock, and
 *    user space needs BPF_F_LOCK to read it consistently;
 *  - one 64-bit word updated with compare-and-swap (chosen): GCRA, the
 *    virtual-scheduling form of the token bucket (ITU-T I.371), keeps
 *    its whole state in one number, the theoretical arrival time (TAT) of the
 *    next new client. bcc 0.26 / LLVM 14 emit BPF_CMPXCHG for
 *    __sync_val_compare_and_swap (BPF atomics, kernel >= 5.12). No lock, no
 *    BTF, one atomic per admitted new client; a refused one only reads.
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

/*
 * A new client's bucket: full, less the packet being admitted. With the rate
 * limit off (cap 0) the bucket only marks the client as known (new-client
 * budget) and holds more than any cap, which rate_limit_spend reads as full:
 * a rate set later starts it full, as it would start a new client.
 */
static __always_inline void rate_limit_fill(struct rate_limit_value *bucket,
					    const struct config_value *cfg, __u64 now)
{
	__u64 cap = rate_limit_cap(cfg);

	bucket->tokens = cap >= NS_PER_TOKEN ? cap - NS_PER_TOKEN : ~0ULL;
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

/*
 * Spend one unit of the global new-client budget at `now`; `tat_ns` points at
 * the shared word in the `new_client` map. Returns 1 if a new client may be
 * admitted, 0 if the budget is empty.
 *
 * GCRA with interval T = 1 s / pps (rounded up, so never faster than pps)
 * and depth B = burst: with t = max(TAT, now), a new client is admitted when
 * t + T <= now + B * T, and TAT becomes t + T. Over any span of s seconds at
 * most B + pps * s new clients are admitted; an idle budget refills to B.
 * TAT only ever moves forward by a successful compare-and-swap, so two CPUs
 * cannot both take the last unit. The terms stay far below 2^64: B * T is at
 * most 4e6 * 1e9 ns.
 */
static __always_inline int new_client_spend(__u64 *tat_ns, const struct config_value *cfg,
					    __u64 now)
{
	__u64 pps = cfg->new_client_pps;
	__u64 burst = cfg->new_client_burst;
	__u64 interval, window, tat, t, seen;
	int i;

	if (!pps)
		return 1;
	if (pps > RATE_LIMIT_MAX_PPS)
		pps = RATE_LIMIT_MAX_PPS;
	if (!burst)
		burst = 2 * pps;
	if (burst > RATE_LIMIT_MAX_BURST)
		burst = RATE_LIMIT_MAX_BURST;
	interval = (NS_PER_TOKEN + pps - 1) / pps;
	window = burst * interval;
	tat = *(volatile __u64 *)tat_ns;
	/* A bounded loop (verifier, kernel >= 5.3), not unrolled: it is rare. */
#pragma clang loop unroll(disable)
	for (i = 0; i < NEW_CLIENT_CAS_TRIES; i++) {
		t = tat > now ? tat : now;
		if (t - now + interval > window)
			return 0; /* empty: the next unit is due later */
		seen = __sync_val_compare_and_swap(tat_ns, tat, t + interval);
		if (seen == tat)
			return 1;
		tat = seen; /* another CPU took a unit first: decide again */
	}
	return 0;
}

#endif /* DHCP_STEER_RATE_LIMIT_H */
