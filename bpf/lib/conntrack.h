/* Conntrack: two entries per translated flow (original tuple and reply
 * tuple), TCP state tracked loosely from flags to pick a lifetime. The map is
 * an LRU hash, so a full table evicts the oldest flows instead of failing. */
#pragma once
#include "parse.h"

#define KD_NS 1000000000ULL

static __always_inline void kd_ct_key_fwd(struct kd_ct_key *k, struct kd_pkt *p)
{
	k->saddr = p->saddr;
	k->daddr = p->daddr;
	k->sport = p->sport;
	k->dport = p->dport;
	k->proto = p->proto;
	k->dir = KD_CT_FWD;
	k->pad = 0;
}

static __always_inline void kd_ct_key_reply(struct kd_ct_key *k, struct kd_pkt *p)
{
	kd_ct_key_fwd(k, p);
	k->dir = KD_CT_REPLY;
}

/* kd_ct_lifetime folds this packet's TCP flags into *state and returns the
 * lifetime in ns the entry gets. */
static __always_inline __u64 kd_ct_lifetime(struct kd_pkt *p, __u8 *state)
{
	if (p->proto != IPPROTO_TCP)
		return KD_CT_UDP_TIMEOUT * KD_NS;
	if (p->tcp_flags & (KD_TCP_FIN | KD_TCP_RST))
		*state |= KD_TCP_CLOSING;
	else if (p->tcp_flags & KD_TCP_SYN_F) {
		if (!(p->tcp_flags & KD_TCP_ACK) && (*state & KD_TCP_CLOSING))
			*state = KD_TCP_SYN; /* port reuse after close */
		*state |= KD_TCP_SYN;
	} else if (p->tcp_flags & KD_TCP_ACK)
		*state |= KD_TCP_ESTABLISHED;
	if (*state & KD_TCP_CLOSING)
		return KD_CT_CLOSE_TIMEOUT * KD_NS;
	if (*state & KD_TCP_ESTABLISHED)
		return KD_CT_TCP_TIMEOUT * KD_NS;
	return KD_CT_SYN_TIMEOUT * KD_NS;
}

/* kd_ct_get returns a live entry and refreshes its lifetime. A fresh SYN on
 * an entry that saw FIN/RST starts a new flow (returns NULL). */
static __always_inline struct kd_ct_val *kd_ct_get(struct kd_ct_key *k, struct kd_pkt *p, __u64 now)
{
	struct kd_ct_val *v = bpf_map_lookup_elem(&kd_conntrack, k);
	__u8 state;
	__u64 exp;

	if (!v)
		return NULL;
	if (v->expires < now)
		return NULL;
	if (p->proto == IPPROTO_TCP && (v->tcp_state & KD_TCP_CLOSING) &&
	    (p->tcp_flags & (KD_TCP_SYN_F | KD_TCP_ACK)) == KD_TCP_SYN_F)
		return NULL;
	state = v->tcp_state;
	exp = now + kd_ct_lifetime(p, &state);
	if (state != v->tcp_state)
		v->tcp_state = state;
	/* Avoid dirtying the cache line on every packet: refresh once a second. */
	if (exp > v->expires + KD_NS || exp < v->expires)
		v->expires = exp;
	return v;
}

static __always_inline int kd_ct_put(struct kd_ct_key *k, struct kd_ct_val *v, struct kd_pkt *p, __u64 now)
{
	v->tcp_state = 0;
	v->expires = now + kd_ct_lifetime(p, &v->tcp_state);
	return bpf_map_update_elem(&kd_conntrack, k, v, BPF_ANY);
}

/* kd_ct_create stores both directions of a translated flow. The reply key is
 * what the backend sends: backend -> reply_dst. */
static __always_inline int kd_ct_create(struct kd_pkt *p, __u64 now, __be32 be_addr, __u16 be_port,
					__be32 reply_dst, __be32 peer, __u32 svc_id, __u16 flags)
{
	struct kd_ct_key k = {};
	struct kd_ct_val v = {};

	kd_ct_key_fwd(&k, p);
	v.nat_addr = be_addr;
	v.nat_port = be_port;
	v.tunnel_peer = peer;
	v.svc_id = svc_id;
	v.flags = flags;
	if (kd_ct_put(&k, &v, p, now) < 0)
		return -1;
	if (flags & KD_CT_NODEPORT_REMOTE)
		return 0; /* no translation here: the peer keeps the reply state */
	k.saddr = be_addr;
	k.daddr = reply_dst;
	k.sport = be_port;
	k.dport = p->sport;
	k.dir = KD_CT_REPLY;
	v.nat_addr = p->daddr;
	v.nat_port = p->dport;
	v.client_addr = p->saddr;
	return kd_ct_put(&k, &v, p, now);
}
