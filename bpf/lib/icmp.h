/* Reverse NAT of ICMP errors (destination unreachable, time exceeded) sent
 * by a backend, or a router on its side, about a translated flow: the quoted
 * packet is client -> backend; the client must see it as client -> frontend,
 * coming from the frontend, or its socket would not match the error (no
 * ECONNREFUSED for UDP, no PMTU update). The quoted L4 checksum is left as
 * is (receivers do not verify it). Hairpin flows are not handled. */
#pragma once
#include "conntrack.h"

#define KD_ICMP_DEST_UNREACH 3
#define KD_ICMP_TIME_EXCEEDED 11

static __always_inline int kd_csum_fix(struct __sk_buff *skb, __u32 csum_off, __u32 off, const void *new,
				       __u32 len, int l3)
{
	__u32 old = 0, nw = 0;

	if (bpf_skb_load_bytes(skb, off, &old, len) < 0)
		return -KD_DROP_REWRITE;
	__builtin_memcpy(&nw, new, len);
	if (l3 ? bpf_l3_csum_replace(skb, csum_off, old, nw, len) < 0
	       : bpf_l4_csum_replace(skb, csum_off, old, nw, len) < 0)
		return -KD_DROP_REWRITE;
	if (bpf_skb_store_bytes(skb, off, &nw, len, 0) < 0)
		return -KD_DROP_REWRITE;
	return 0;
}

/* kd_icmp_quoted fills q with the tuple of the packet quoted in an ICMP error
 * (as the error's sender saw it) and returns 0, or KD_GO_ON if p is not such
 * an error about a TCP/UDP packet with a plain IPv4 header. */
static __always_inline int kd_icmp_quoted(struct __sk_buff *skb, struct kd_pkt *p, struct kd_pkt *q)
{
	struct iphdr in;
	__u8 hdr[2];
	__u16 ports[2];

	if (p->proto != IPPROTO_ICMP)
		return KD_GO_ON;
	if (bpf_skb_load_bytes(skb, p->l4_off, hdr, sizeof(hdr)) < 0)
		return KD_GO_ON;
	if (hdr[0] != KD_ICMP_DEST_UNREACH && hdr[0] != KD_ICMP_TIME_EXCEEDED)
		return KD_GO_ON;
	if (bpf_skb_load_bytes(skb, p->l4_off + 8, &in, sizeof(in)) < 0 || in.ihl != 5)
		return KD_GO_ON;
	if (in.protocol != IPPROTO_TCP && in.protocol != IPPROTO_UDP)
		return KD_GO_ON;
	if (bpf_skb_load_bytes(skb, p->l4_off + 8 + 20, ports, sizeof(ports)) < 0)
		return KD_GO_ON;
	q->saddr = in.saddr;
	q->daddr = in.daddr;
	q->sport = bpf_ntohs(ports[0]);
	q->dport = bpf_ntohs(ports[1]);
	q->proto = in.protocol;
	q->tcp_flags = 0;
	return 0;
}

/* kd_revnat_icmp rewrites an ICMP error about a translated flow. Returns the
 * conntrack entry (NULL if it is not about one); a failed rewrite sets *err
 * to its KD_DROP_* reason. */
static __always_inline struct kd_ct_val *kd_revnat_icmp(struct __sk_buff *skb, struct kd_pkt *p, __u64 now,
							int *err)
{
	struct kd_ct_key k = {};
	struct kd_ct_val *v;
	struct kd_pkt q;
	__u32 icmp_csum = p->l4_off + 2;
	__u32 in_off = p->l4_off + 8;
	__u16 old_csum, new_csum, nport;

	if (kd_icmp_quoted(skb, p, &q) < 0)
		return NULL;
	/* Quoted: client:sport -> backend:dport. The reply tuple is reversed. */
	kd_ct_key_swapped(&k, &q, KD_CT_REPLY);
	v = kd_ct_lookup(&k);
	if (!v || v->expires < now || (v->flags & KD_CT_HAIRPIN))
		return NULL;
	/* Quoted destination address and port, with the quoted IP checksum and
	 * the ICMP checksum that covers them. */
	if (bpf_skb_load_bytes(skb, in_off + 10, &old_csum, 2) < 0)
		goto fail;
	if (kd_csum_fix(skb, in_off + 10, in_off + 16, &v->nat_addr, 4, 1) < 0)
		goto fail;
	if (bpf_skb_load_bytes(skb, in_off + 10, &new_csum, 2) < 0)
		goto fail;
	if (bpf_l4_csum_replace(skb, icmp_csum, q.daddr, v->nat_addr, 4) < 0 ||
	    bpf_l4_csum_replace(skb, icmp_csum, old_csum, new_csum, 2) < 0)
		goto fail;
	nport = bpf_htons(v->nat_port);
	if (kd_csum_fix(skb, icmp_csum, in_off + 22, &nport, 2, 0) < 0)
		goto fail;
	/* Quoted source port: the client's own, if the flow got another. */
	nport = bpf_htons(v->client_port);
	if (v->client_port && kd_csum_fix(skb, icmp_csum, in_off + 20, &nport, 2, 0) < 0)
		goto fail;
	/* Outer source: the frontend (the ICMP checksum has no pseudo header). */
	if (bpf_l3_csum_replace(skb, KD_IP_CSUM_OFF, p->saddr, v->nat_addr, 4) < 0 ||
	    bpf_skb_store_bytes(skb, KD_IP_SRC_OFF, &v->nat_addr, 4, 0) < 0)
		goto fail;
	p->saddr = v->nat_addr;
	return v;
fail:
	*err = KD_DROP_REWRITE;
	return v;
}
