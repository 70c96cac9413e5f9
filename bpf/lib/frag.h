/* IPv4 fragments of translated datagrams (see struct kd_frag_key). The
 * first fragment parses as a whole packet (its ports are there) and is
 * translated as usual; kd_frag_record then stores the rewrite and the route,
 * and kd_frag_get applies them to the later fragments, which carry no L4
 * header (so only the IP checksum changes). Fragments that overtake their
 * first fragment are not translated. */
#pragma once
#include "conntrack.h"

/* kd_frag_record remembers the translation of p, which arrived as os -> od,
 * when p is the first fragment of a datagram (a whole packet needs nothing).
 * Returns 0, or -KD_DROP_FRAGMENT if it could not be stored. */
static __always_inline int kd_frag_record(const struct kd_pkt *p, __be32 os, __be32 od, __u8 action, __be32 peer,
					  __u64 now)
{
	struct kd_frag_key k = { .saddr = os, .daddr = od, .id = p->ip_id, .proto = p->proto };
	struct kd_frag_val v = { .expires = now + KD_FRAG_TIMEOUT * KD_NS, .saddr = p->saddr, .daddr = p->daddr,
				 .peer = peer, .action = action };

	if (!p->mf)
		return 0;
	return bpf_map_update_elem(&kd_frags, &k, &v, BPF_ANY) < 0 ? -KD_DROP_FRAGMENT : 0;
}

static __always_inline int kd_frag_set_addr(struct __sk_buff *skb, __u32 off, __be32 old, __be32 new)
{
	if (old == new)
		return 0;
	if (bpf_l3_csum_replace(skb, KD_IP_CSUM_OFF, old, new, sizeof(new)) < 0 ||
	    bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0) < 0)
		return -KD_DROP_REWRITE;
	return 0;
}

/* kd_frag_get looks a non-first fragment up and applies its datagram's
 * address rewrite. Returns the entry (p updated) or NULL; a failed rewrite
 * sets *err to its KD_DROP_* reason. */
static __always_inline struct kd_frag_val *kd_frag_get(struct __sk_buff *skb, struct kd_pkt *p, __u64 now, int *err)
{
	struct kd_frag_key k = { .saddr = p->saddr, .daddr = p->daddr, .id = p->ip_id, .proto = p->proto };
	struct kd_frag_val *v = bpf_map_lookup_elem(&kd_frags, &k);

	if (!v || v->expires < now)
		return NULL;
	if (kd_frag_set_addr(skb, KD_IP_SRC_OFF, p->saddr, v->saddr) < 0 ||
	    kd_frag_set_addr(skb, KD_IP_DST_OFF, p->daddr, v->daddr) < 0) {
		*err = KD_DROP_REWRITE;
		return NULL;
	}
	p->saddr = v->saddr;
	p->daddr = v->daddr;
	return v;
}
