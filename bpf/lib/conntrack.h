/* Conntrack: two entries per translated flow (original tuple and reply
 * tuple), TCP state tracked loosely from flags to pick a lifetime.
 *
 * Two LRU hashes, so a full table evicts flows instead of failing: a new flow
 * starts in kd_ct_new (KD_CT_NEW) and moves to kd_conntrack once confirmed
 * (kd_ct_confirmed: the client's ACK for TCP, an answer for UDP), as
 * nf_conntrack evicts unassured entries first. A SYN flood, or any flood of
 * flows nobody completes, only evicts its own kind: established flows keep
 * their entries.
 *
 * The two entries of a flow behave as one connection (as nf_conntrack keeps
 * one timeout per connection): when either is refreshed (at most once a
 * second) or changes TCP state, the other gets the same lifetime and the FIN
 * bits of both sides. A TCP flow closes (short lifetime) only once both sides
 * sent FIN, or on RST; a half-closed flow keeps its established lifetime. */
#pragma once
#include <linux/errno.h>
#include "parse.h"

#define KD_NS 1000000000ULL
#define KD_TCP_FINS (KD_TCP_FIN_CLIENT | KD_TCP_FIN_BACKEND)

/* Source ports tried when a new flow's reply tuple is taken: KD_CT_PORT_TRIES
 * candidates in 32768-65535 (above the default NodePort range, as Cilium's
 * SNAT keeps), derived from a hash of the flow. */
#define KD_CT_PORT_TRIES 8
#define KD_CT_PORT_MIN 32768
#define KD_CT_PORT_MASK 0x7fff

static __always_inline void kd_ct_key_set(struct kd_ct_key *k, __be32 saddr, __be32 daddr, __u16 sport,
					  __u16 dport, __u8 proto, __u8 dir)
{
	/* a compound literal zeroes pad: the key is hashed whole */
	*k = (struct kd_ct_key){.saddr = saddr, .daddr = daddr, .sport = sport, .dport = dport, .proto = proto,
				.dir = dir};
}

static __always_inline void kd_ct_key_fwd(struct kd_ct_key *k, struct kd_pkt *p)
{
	kd_ct_key_set(k, p->saddr, p->daddr, p->sport, p->dport, p->proto, KD_CT_FWD);
}

static __always_inline void kd_ct_key_reply(struct kd_ct_key *k, struct kd_pkt *p)
{
	kd_ct_key_fwd(k, p);
	k->dir = KD_CT_REPLY;
}

/* kd_ct_key_swapped is the key of p's tuple seen from the other side (source
 * and destination swapped): where the entry of the flow p answers is found. */
static __always_inline void kd_ct_key_swapped(struct kd_ct_key *k, const struct kd_pkt *p, __u8 dir)
{
	kd_ct_key_set(k, p->daddr, p->saddr, p->dport, p->sport, p->proto, dir);
}

/* kd_ct_lifetime folds this packet's TCP flags into *state and returns the
 * lifetime in ns the entry gets. reply: the packet is from the backend's side.
 * one_sided: the entry is the only one of its flow on this node and may never
 * see the backend's side (the ingress node of a dsr NodePort flow). */
static __always_inline __u64 kd_ct_lifetime(struct kd_pkt *p, __u8 *state, int reply, int one_sided)
{
	if (p->proto != IPPROTO_TCP)
		return KD_CT_UDP_TIMEOUT * KD_NS;
	if (reply)
		*state |= KD_TCP_SEEN_REPLY;
	if (p->tcp_flags & KD_TCP_SYN_F)
		*state |= KD_TCP_SYN;
	else if (p->tcp_flags & KD_TCP_ACK)
		*state |= KD_TCP_ESTABLISHED;
	if (p->tcp_flags & KD_TCP_RST)
		*state |= KD_TCP_CLOSING;
	else if (p->tcp_flags & KD_TCP_FIN)
		*state |= reply ? KD_TCP_FIN_BACKEND : KD_TCP_FIN_CLIENT;
	if ((*state & KD_TCP_FINS) == KD_TCP_FINS)
		*state |= KD_TCP_CLOSING;
	if (*state & KD_TCP_CLOSING)
		return KD_CT_CLOSE_TIMEOUT * KD_NS;
	/* Without the backend's side in view, the end of a half-closed flow
	 * cannot be seen: bound it, every client packet renews it. */
	if (one_sided && (*state & KD_TCP_FIN_CLIENT) && !(*state & KD_TCP_SEEN_REPLY))
		return KD_CT_FIN_WAIT_TIMEOUT * KD_NS;
	if (*state & KD_TCP_ESTABLISHED)
		return KD_CT_TCP_TIMEOUT * KD_NS;
	return KD_CT_SYN_TIMEOUT * KD_NS;
}

/* kd_ct_lookup finds k's entry: confirmed flows first (the common case),
 * then new ones. */
static __always_inline struct kd_ct_val *kd_ct_lookup(struct kd_ct_key *k)
{
	struct kd_ct_val *v = bpf_map_lookup_elem(&kd_conntrack, k);

	return v ? v : bpf_map_lookup_elem(&kd_ct_new, k);
}

/* kd_ct_sport is the source port the client's packets of forward entry v
 * leave with (p: one of them). */
static __always_inline __u16 kd_ct_sport(const struct kd_ct_val *v, const struct kd_pkt *p)
{
	return v->client_port ? v->client_port : p->sport;
}

/* kd_ct_partner_key builds the key of the other entry of k's flow. Returns
 * -1 when the flow has no other entry on this node. */
static __always_inline int kd_ct_partner_key(struct kd_ct_key *k, struct kd_ct_val *v, struct kd_ct_key *pk)
{
	pk->proto = k->proto;
	pk->pad = 0;
	if (k->dir == KD_CT_REPLY) {
		pk->saddr = v->client_addr;
		pk->daddr = v->nat_addr;
		pk->sport = v->client_port ? v->client_port : k->dport;
		pk->dport = v->nat_port;
		pk->dir = KD_CT_FWD;
		return 0;
	}
	if (v->flags & KD_CT_NODEPORT_REMOTE)
		return -1;
	pk->saddr = v->nat_addr;
	pk->daddr = k->saddr;
	pk->sport = v->nat_port;
	pk->dport = v->client_port ? v->client_port : k->sport;
	pk->dir = KD_CT_REPLY;
	if (v->flags & KD_CT_HAIRPIN) {
		struct kd_config *cfg = kd_cfg();

		if (!cfg)
			return -1;
		pk->daddr = cfg->hairpin_addr;
	}
	return 0;
}

/* kd_ct_is_partner reports whether pv (found under k's partner key) is the
 * other entry of k's flow and not of another flow that reuses the tuple. */
static __always_inline int kd_ct_is_partner(struct kd_ct_key *k, struct kd_ct_val *pv)
{
	if (k->dir == KD_CT_REPLY)
		return pv->nat_addr == k->saddr && pv->nat_port == k->sport;
	return pv->nat_addr == k->daddr && pv->nat_port == k->dport;
}

/* kd_ct_merge gives v the flow's FIN bits and raises its lifetime to exp; a
 * flow that just closed gets close_exp. */
static __always_inline void kd_ct_merge(struct kd_ct_val *v, __u8 fins, __u64 exp, __u64 close_exp)
{
	if ((v->tcp_state | fins) != v->tcp_state) {
		v->tcp_state |= fins;
		if (fins & KD_TCP_CLOSING)
			v->expires = close_exp;
	}
	if (!(v->tcp_state & KD_TCP_CLOSING) && exp > v->expires)
		v->expires = exp;
}

/* kd_ct_sync makes both entries of v's flow agree on lifetime and FIN bits. */
static __always_inline void kd_ct_sync(struct kd_ct_key *k, struct kd_ct_val *v, __u64 now)
{
	struct kd_ct_key pk;
	struct kd_ct_val *pv;
	__u64 close_exp = now + KD_CT_CLOSE_TIMEOUT * KD_NS;
	__u8 fins;

	if (kd_ct_partner_key(k, v, &pk) < 0)
		return;
	pv = kd_ct_lookup(&pk);
	if (!pv || !kd_ct_is_partner(k, pv))
		return;
	fins = (v->tcp_state | pv->tcp_state) & (KD_TCP_FINS | KD_TCP_CLOSING);
	if ((fins & KD_TCP_FINS) == KD_TCP_FINS)
		fins |= KD_TCP_CLOSING;
	kd_ct_merge(v, fins, pv->expires, close_exp);
	kd_ct_merge(pv, fins, v->expires, close_exp);
}

/* kd_ct_confirmed reports whether packet p confirms new entry v's flow:
 * for TCP the client's ACK that completes the handshake (a flood of SYNs never
 * sends it, though the backends answer them); for UDP an answer, or on the
 * ingress node of a dsr flow, which never sees answers, a second datagram. */
static __always_inline int kd_ct_confirmed(struct kd_pkt *p, struct kd_ct_val *v, int reply)
{
	if (p->proto == IPPROTO_TCP)
		return !reply && (p->tcp_flags & (KD_TCP_ACK | KD_TCP_SYN_F | KD_TCP_RST)) == KD_TCP_ACK;
	return reply || (v->flags & KD_CT_NODEPORT_REMOTE);
}

/* kd_ct_store stores k's entry v in conntrack table map and counts it under
 * metric added when the key is new to the table (replacing an entry does not
 * change how many the table holds). */
static __always_inline int kd_ct_store(void *map, struct kd_ct_key *k, struct kd_ct_val *v, __u32 added)
{
	int err = bpf_map_update_elem(map, k, v, BPF_NOEXIST);

	if (!err) {
		kd_count(added, 0);
		return 0;
	}
	if (err != -EEXIST)
		return err;
	return bpf_map_update_elem(map, k, v, BPF_ANY);
}

/* kd_ct_remove deletes k from conntrack table map, counting a removal under
 * metric removed. */
static __always_inline void kd_ct_remove(void *map, struct kd_ct_key *k, __u32 removed)
{
	if (!bpf_map_delete_elem(map, k))
		kd_count(removed, 0);
}

/* kd_ct_move_one moves k's entry v from kd_ct_new to kd_conntrack and
 * returns it there (NULL if it could not be stored). */
static __always_inline struct kd_ct_val *kd_ct_move_one(struct kd_ct_key *k, struct kd_ct_val *v)
{
	struct kd_ct_val nv = *v;

	nv.flags &= ~KD_CT_NEW;
	if (kd_ct_store(&kd_conntrack, k, &nv, KD_M_CT_ADDED) < 0)
		return NULL;
	kd_ct_remove(&kd_ct_new, k, KD_M_CT_NEW_REMOVED);
	return bpf_map_lookup_elem(&kd_conntrack, k);
}

/* kd_ct_promote moves a confirmed flow (entry v under k, and its partner)
 * to kd_conntrack. Returns k's entry there, or v if it could not move. */
static __always_inline struct kd_ct_val *kd_ct_promote(struct kd_ct_key *k, struct kd_ct_val *v)
{
	struct kd_ct_key pk;
	struct kd_ct_val *pv;

	if (kd_ct_partner_key(k, v, &pk) == 0) {
		pv = bpf_map_lookup_elem(&kd_ct_new, &pk);
		if (pv && kd_ct_is_partner(k, pv))
			kd_ct_move_one(&pk, pv);
	}
	pv = kd_ct_move_one(k, v);
	return pv ? pv : v;
}

/* kd_ct_live reports whether entry v still holds p's flow: not expired, and
 * not ended by FIN/RST when p is a fresh SYN (port reuse: a new flow). */
static __always_inline int kd_ct_live(const struct kd_ct_val *v, const struct kd_pkt *p, __u64 now)
{
	if (v->expires < now)
		return 0;
	return !(p->proto == IPPROTO_TCP && (v->tcp_state & (KD_TCP_CLOSING | KD_TCP_FINS)) &&
		 (p->tcp_flags & (KD_TCP_SYN_F | KD_TCP_ACK)) == KD_TCP_SYN_F);
}

/* kd_ct_get returns a live entry and refreshes its lifetime (and its
 * partner's); a new flow that p confirms moves to kd_conntrack. A fresh SYN
 * on an entry that saw FIN/RST starts a new flow (returns NULL). */
static __always_inline struct kd_ct_val *kd_ct_get(struct kd_ct_key *k, struct kd_pkt *p, __u64 now)
{
	struct kd_ct_val *v = kd_ct_lookup(k);
	__u8 state;
	__u64 exp;
	int reply;

	if (!v || !kd_ct_live(v, p, now))
		return NULL;
	/* The reply entry, or (tunnel-mode ingress node) the forward entry
	 * looked up for a packet coming back. */
	reply = k->dir == KD_CT_REPLY || p->saddr != k->saddr;
	state = v->tcp_state;
	exp = now + kd_ct_lifetime(p, &state, reply, v->flags & KD_CT_NODEPORT_REMOTE);
	if (state != v->tcp_state) {
		v->tcp_state = state;
		/* Closing and half-closed states set the lifetime; others
		 * only extend it (the partner may have extended it further). */
		if (exp > v->expires || (state & (KD_TCP_CLOSING | KD_TCP_FINS)))
			v->expires = exp;
		kd_ct_sync(k, v, now);
	} else if (exp > v->expires + KD_NS) {
		/* Avoid dirtying the cache lines on every packet: refresh
		 * (both entries) once a second. */
		v->expires = exp;
		kd_ct_sync(k, v, now);
	}
	if ((v->flags & KD_CT_NEW) && kd_ct_confirmed(p, v, reply))
		return kd_ct_promote(k, v);
	return v;
}

/* kd_ct_put stores a new flow's entry in kd_ct_new, replacing an earlier
 * flow's under the same key (ended, or given up as stale) in kd_conntrack. */
static __always_inline int kd_ct_put(struct kd_ct_key *k, struct kd_ct_val *v, struct kd_pkt *p, __u64 now)
{
	v->tcp_state = 0;
	v->expires = now + kd_ct_lifetime(p, &v->tcp_state, 0, 0);
	v->flags |= KD_CT_NEW;
	kd_ct_remove(&kd_conntrack, k, KD_M_CT_REMOVED);
	return kd_ct_store(&kd_ct_new, k, v, KD_M_CT_NEW_ADDED);
}

/* kd_ct_reply_taken reports whether reply key k is held by a live flow other
 * than the one being created (client -> frontend p->daddr:p->dport). Two
 * frontends translated to one backend give the same reply tuple for the same
 * client address and port; overwriting would send the first flow's replies
 * out with the second frontend as source. */
static __always_inline int kd_ct_reply_taken(struct kd_ct_key *k, struct kd_pkt *p, __u64 now)
{
	struct kd_ct_val *old = kd_ct_lookup(k);
	struct kd_ct_key fk;
	struct kd_ct_val *f;

	if (!old || old->expires < now || (old->tcp_state & KD_TCP_CLOSING))
		return 0;
	if (old->nat_addr == p->daddr && old->nat_port == p->dport && old->client_addr == p->saddr &&
	    (old->client_port ? old->client_port : k->dport) == p->sport)
		return 0; /* the same flow again (port reuse) */
	/* Only while its forward entry lives (not evicted or replaced). */
	kd_ct_partner_key(k, old, &fk);
	f = kd_ct_lookup(&fk);
	return f && f->expires >= now && kd_ct_is_partner(k, f);
}

/* kd_ct_hash mixes x (murmur3's 32-bit finalizer): the candidate source
 * ports of a flow are spread over the range and differ between flows. */
static __always_inline __u32 kd_ct_hash(__u32 x)
{
	x ^= x >> 16;
	x *= 0x85ebca6b;
	x ^= x >> 13;
	x *= 0xc2b2ae35;
	x ^= x >> 16;
	return x;
}

/* kd_ct_reply_port finds the destination port of the new flow's reply key rk
 * (backend -> reply_dst): the client's own port unless a live flow of another
 * frontend holds that reply tuple. Then, as nf_conntrack's NAT does, the flow
 * gets another source port: up to KD_CT_PORT_TRIES candidates, deterministic
 * from a hash of the flow, the first free one wins. Returns 0 with rk->dport
 * set, or -KD_DROP_CT_COLLISION when every candidate is taken. */
static __always_inline int kd_ct_reply_port(struct kd_ct_key *rk, struct kd_pkt *p, __u64 now)
{
	__u32 seed;
	int i;

	rk->dport = p->sport;
	if (!kd_ct_reply_taken(rk, p, now))
		return 0;
	seed = kd_ct_hash(p->saddr ^ kd_ct_hash(p->daddr ^ kd_ct_hash(((__u32)p->sport << 16) | p->dport)));
	for (i = 0; i < KD_CT_PORT_TRIES; i++) {
		rk->dport = KD_CT_PORT_MIN + (kd_ct_hash(seed + i) & KD_CT_PORT_MASK);
		if (rk->dport != p->sport && !kd_ct_reply_taken(rk, p, now))
			return 0;
	}
	return -KD_DROP_CT_COLLISION;
}

/* kd_ct_create stores both directions of a translated flow. The reply key is
 * what the backend sends: backend -> reply_dst. *sport is set to the source
 * port the flow's packets leave with (p->sport unless that reply tuple was
 * taken, see kd_ct_reply_port). Returns 0, or -KD_DROP_CT_COLLISION /
 * -KD_DROP_CT_FULL. */
static __always_inline int kd_ct_create(struct kd_pkt *p, __u64 now, __be32 be_addr, __u16 be_port,
					__be32 reply_dst, __be32 peer, __u32 svc_id, __u16 flags, __u16 *sport)
{
	struct kd_ct_key k = {};
	struct kd_ct_key rk = {};
	struct kd_ct_val v = {};
	int rc;

	*sport = p->sport;
	if (!(flags & KD_CT_NODEPORT_REMOTE)) {
		kd_ct_key_set(&rk, be_addr, reply_dst, be_port, p->sport, p->proto, KD_CT_REPLY);
		if ((rc = kd_ct_reply_port(&rk, p, now)) < 0)
			return rc;
		*sport = rk.dport;
	}
	kd_ct_key_fwd(&k, p);
	v.nat_addr = be_addr;
	v.nat_port = be_port;
	v.tunnel_peer = peer;
	v.svc_id = svc_id;
	v.flags = flags;
	if (*sport != p->sport)
		v.client_port = *sport;
	if (kd_ct_put(&k, &v, p, now) < 0)
		return -KD_DROP_CT_FULL;
	if (flags & KD_CT_NODEPORT_REMOTE)
		return 0; /* no translation here: the peer keeps the reply state */
	v.nat_addr = p->daddr;
	v.nat_port = p->dport;
	v.client_addr = p->saddr;
	if (*sport != p->sport)
		v.client_port = p->sport;
	if (kd_ct_put(&rk, &v, p, now) < 0)
		return -KD_DROP_CT_FULL;
	return 0;
}
