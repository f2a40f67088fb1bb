/* SPDX-License-Identifier: Apache-2.0 */
/*
 * maps.h - every map of the DHCP steering program.
 *
 * This file contains the eight maps and nothing else; it is the only file
 * that uses bcc's map macros. Each map says what it holds, its key and value,
 * who writes it and who reads it. User space finds them by these names
 * (appliance/datapath/layout.py MAP_*). None is pinned: see README.md.
 */
#ifndef DHCP_STEER_MAPS_H
#define DHCP_STEER_MAPS_H

#include "dhcp_steer.h"

/*
 * ifaces: the client interfaces. key struct iface_key (port ifindex, VLAN
 * ids), value struct iface_value (the group or two groups bound there).
 * Written by the daemon at start and on reload (a key per interface added,
 * removed or rebound; the others untouched), read by the program for every
 * DHCP frame. A frame whose key is absent is not ours: passed, STAT_UNBOUND.
 */
BPF_HASH(ifaces, struct iface_key, struct iface_value, IFACE_ENTRIES);

/*
 * group_role: the switch of each group. key __u32 group index, value __u32
 * enum role_value. Written by the daemon (one update per VRRP transition of
 * the group, whatever number of interfaces are bound to it), read by the
 * program for every DHCP frame. A 32-bit word in an array: the update is a
 * single aligned store no reader can see half done.
 */
BPF_ARRAY(group_role, __u32, MAX_GROUPS);

/*
 * lb_table: the RFC 3074 mixing table. key __u32 0, value struct
 * lb_table_value. Written once by the loader right after the program loads
 * (dhcp_steer.h says why it is not a constant), read by the program for DHCP
 * on an interface shared by two groups.
 */
BPF_ARRAY(lb_table, struct lb_table_value, 1);

/*
 * config: run-time knobs. key __u32 0, value struct config_value. Written by
 * the daemon at start and on reload, read by the program per DHCP frame.
 */
BPF_ARRAY(config, struct config_value, 1);

/*
 * stats: counters. key __u32 slot (a group index, or STATS_SLOT_UNBOUND),
 * value struct stats_value per CPU. Written by the program, read (and summed
 * over CPUs and slots) by datapath/stats.py.
 */
BPF_PERCPU_ARRAY(stats, struct stats_value, MAX_GROUPS + 1);

/*
 * rate_limit: the known clients, one token bucket each. key struct
 * rate_limit_key, value struct rate_limit_value. Written and read by the
 * program; user space only reads it for diagnostics. A bucket is created only
 * within the new-client budget, so a flood of new MACs cannot churn it
 * faster than that budget; LRU: when full, the oldest bucket goes instead of
 * the insert failing.
 */
BPF_TABLE("lru_hash", struct rate_limit_key, struct rate_limit_value, rate_limit,
	  RATE_LIMIT_ENTRIES);

/*
 * new_client: the global new-client budget. key __u32 0, value struct
 * new_client_value (one word, compare-and-swap from every CPU). Written by
 * the program for each client it admits without a bucket; user space resets
 * it to 0 (full) when the budget's config changes, and reads it for
 * diagnostics.
 */
BPF_ARRAY(new_client, struct new_client_value, 1);

#endif /* DHCP_STEER_MAPS_H */
