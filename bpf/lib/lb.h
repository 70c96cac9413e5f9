/* Service lookup and backend selection. */
#pragma once
#include "conntrack.h"

static __always_inline struct kd_svc_val *kd_svc_lookup(struct kd_pkt *p, __u8 scope, int wildcard)
{
	struct kd_svc_key k = {
		.addr = p->daddr,
		.port = p->dport,
		.proto = p->proto,
		.scope = scope,
	};
	struct kd_svc_val *s = bpf_map_lookup_elem(&kd_services, &k);

	if (s || !wildcard)
		return s;
	/* NodePort: one entry with addr 0 serves every node address. */
	k.addr = 0;
	return bpf_map_lookup_elem(&kd_services, &k);
}

static __always_inline int kd_is_node_addr(__be32 a)
{
	return bpf_map_lookup_elem(&kd_node_addrs, &a) != NULL;
}

/* kd_slot_holds reports whether slot of svc's table is within the table's
 * count and still holds addr:port: a remembered backend (an affinity entry,
 * a UDP socket's backend) is still an endpoint of the service. */
static __always_inline int kd_slot_holds(struct kd_svc_val *svc, __u8 table, __u16 slot, __be32 addr, __u16 port)
{
	struct kd_backend_key bk = { .svc_id = svc->svc_id, .slot = slot, .table = table };
	struct kd_backend_val *be;

	if (slot >= (table == KD_BE_TABLE_LOCAL ? svc->local_count : svc->count))
		return 0;
	be = bpf_map_lookup_elem(&kd_backends, &bk);
	return be && be->addr == addr && be->port == port;
}

/* kd_affinity_valid reports whether an affinity entry still names a backend
 * of svc. Entries of a deleted service, of a reused service id or of a
 * removed backend fail and are replaced. */
static __always_inline int kd_affinity_valid(struct kd_svc_val *svc, struct kd_affinity_val *a)
{
	return kd_slot_holds(svc, a->table, a->slot, a->backend.addr, a->backend.port);
}

/* kd_pick_failed is the reason a pick from svc found nothing: the service has
 * no endpoints at all, or none that the table (this node's) holds. */
static __always_inline int kd_pick_failed(const struct kd_svc_val *svc)
{
	return svc->count ? -KD_DROP_NO_LOCAL_BACKEND : -KD_DROP_NO_BACKEND;
}

/* kd_pick chooses a backend from table (ALL or LOCAL) into *out. Per-flow
 * stickiness comes from conntrack; ClientIP affinity from kd_affinity.
 * Returns 0 or -KD_DROP_NO_BACKEND / -KD_DROP_NO_LOCAL_BACKEND. */
static __always_inline int kd_pick(struct kd_svc_val *svc, __u8 table, __be32 client, __u64 now,
				   struct kd_backend_val *out)
{
	struct kd_backend_key bk = { .svc_id = svc->svc_id, .table = table };
	struct kd_affinity_key ak = { .svc_id = svc->svc_id, .client = client };
	struct kd_backend_val *be;
	__u16 n = table == KD_BE_TABLE_LOCAL ? svc->local_count : svc->count;

	if (n == 0)
		return kd_pick_failed(svc);
	if (svc->flags & KD_SVC_AFFINITY) {
		struct kd_affinity_val *a = bpf_map_lookup_elem(&kd_affinity, &ak);
		if (a && now - a->last_used < (__u64)svc->affinity_timeout * KD_NS &&
		    (table != KD_BE_TABLE_LOCAL || (a->backend.flags & KD_BE_LOCAL)) &&
		    kd_affinity_valid(svc, a)) {
			a->last_used = now;
			*out = a->backend;
			return 0;
		}
	}
	bk.slot = bpf_get_prandom_u32() % n;
	be = bpf_map_lookup_elem(&kd_backends, &bk);
	if (!be)
		return kd_pick_failed(svc);
	*out = *be;
	if (svc->flags & KD_SVC_AFFINITY) {
		struct kd_affinity_val a = { .last_used = now, .backend = *be, .slot = bk.slot, .table = table };
		bpf_map_update_elem(&kd_affinity, &ak, &a, BPF_ANY);
	}
	return 0;
}

static __always_inline int kd_svc_dsr(const struct kd_svc_val *svc, const struct kd_config *cfg)
{
	if (svc->flags & KD_SVC_DSR)
		return 1;
	if (svc->flags & KD_SVC_TUNNEL)
		return 0;
	return cfg->mode == KD_MODE_DSR;
}
