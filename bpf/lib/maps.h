/* Map definitions shared by every program. The Go loader creates (or adopts
 * pinned) maps once and hands them to every object through MapReplacements.
 * KD_SIZED marks a max_entries the loader always replaces with the agent's
 * configuration (dataplane/config MapSizes, defaults in DefaultMapSizes): the
 * only sizes written here are the ones the programs fix (kd_config, kd_metrics). */
#pragma once
#include "common.h"

#define KD_SIZED 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kd_svc_key);
	__type(value, struct kd_svc_val);
	__uint(max_entries, KD_SIZED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kd_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct kd_backend_key);
	__type(value, struct kd_backend_val);
	__uint(max_entries, KD_SIZED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kd_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kd_ct_key);
	__type(value, struct kd_ct_val);
	__uint(max_entries, KD_SIZED);
} kd_conntrack SEC(".maps");

/* Flows not confirmed yet (KD_CT_NEW, see conntrack.h): a flood of them
 * evicts only its own kind, never kd_conntrack's established flows. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kd_ct_key);
	__type(value, struct kd_ct_val);
	__uint(max_entries, KD_SIZED);
} kd_ct_new SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kd_affinity_key);
	__type(value, struct kd_affinity_val);
	__uint(max_entries, KD_SIZED);
} kd_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct kd_tunnel_key);
	__type(value, struct kd_tunnel_val);
	__uint(max_entries, KD_SIZED);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kd_tunnel SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct kd_endpoint_val);
	__uint(max_entries, KD_SIZED);
} kd_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u32);
	__uint(max_entries, KD_SIZED);
} kd_node_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kd_config);
	__uint(max_entries, 1);
} kd_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kd_metric);
	__uint(max_entries, KD_M_MAX);
} kd_metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, KD_SIZED);
} kd_events SEC(".maps");

/* Socket hooks: forward (UDP) and reverse translations per socket cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kd_sock_key);
	__type(value, struct kd_sock_val);
	__uint(max_entries, KD_SIZED);
} kd_sock_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kd_sock_aff_key);
	__type(value, struct kd_affinity_val);
	__uint(max_entries, KD_SIZED);
} kd_sock_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct kd_frag_key);
	__type(value, struct kd_frag_val);
	__uint(max_entries, KD_SIZED);
} kd_frags SEC(".maps");

static __always_inline struct kd_config *kd_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&kd_config, &zero);
}

static __always_inline void kd_count(__u32 idx, __u32 bytes)
{
	struct kd_metric *m = bpf_map_lookup_elem(&kd_metrics, &idx);
	if (m) {
		m->packets++;
		m->bytes += bytes;
	}
}
