/* Address/port rewrites with incremental L3/L4 checksum updates. Failures
 * return -KD_DROP_REWRITE, the reason to drop the packet with (as Cilium's
 * helpers return DROP_* codes). */
#pragma once
#include "parse.h"

/* kd_csum_fold folds a bpf_csum_diff sum into an Internet checksum. */
static __always_inline __u16 kd_csum_fold(__s64 s)
{
	__u32 c = (__u32)s;
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	return (__u16)~c;
}

static __always_inline __u32 kd_l4_csum_off(const struct kd_pkt *p)
{
	return p->l4_off + (p->proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
						    : offsetof(struct udphdr, check));
}

static __always_inline __u64 kd_l4_csum_flags(const struct kd_pkt *p)
{
	/* A zero UDP checksum means "none" and must stay zero. */
	return p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* kd_set_addr rewrites the source (is_src) or destination address. */
static __always_inline int kd_set_addr(struct __sk_buff *skb, struct kd_pkt *p, int is_src, __be32 new)
{
	__be32 *field = is_src ? &p->saddr : &p->daddr;
	__be32 old = *field;
	__u32 off = is_src ? KD_IP_SRC_OFF : KD_IP_DST_OFF;

	if (old == new)
		return 0;
	if (bpf_l4_csum_replace(skb, kd_l4_csum_off(p), old, new,
				BPF_F_PSEUDO_HDR | kd_l4_csum_flags(p) | sizeof(new)) < 0 ||
	    bpf_l3_csum_replace(skb, KD_IP_CSUM_OFF, old, new, sizeof(new)) < 0 ||
	    bpf_skb_store_bytes(skb, off, &new, sizeof(new), 0) < 0)
		return -KD_DROP_REWRITE;
	*field = new;
	return 0;
}

/* kd_set_port rewrites the source (is_src) or destination port (host order). */
static __always_inline int kd_set_port(struct __sk_buff *skb, struct kd_pkt *p, int is_src, __u16 new)
{
	__u16 *field = is_src ? &p->sport : &p->dport;
	__be16 old = bpf_htons(*field), nw = bpf_htons(new);
	/* source and dest are the first two 16-bit words of both TCP and UDP. */
	__u32 off = p->l4_off + (is_src ? 0 : 2);

	if (*field == new)
		return 0;
	if (bpf_l4_csum_replace(skb, kd_l4_csum_off(p), old, nw, kd_l4_csum_flags(p) | sizeof(nw)) < 0 ||
	    bpf_skb_store_bytes(skb, off, &nw, sizeof(nw), 0) < 0)
		return -KD_DROP_REWRITE;
	*field = new;
	return 0;
}

static __always_inline int kd_dnat(struct __sk_buff *skb, struct kd_pkt *p, __be32 addr, __u16 port)
{
	int rc = kd_set_addr(skb, p, 0, addr);

	return rc < 0 ? rc : kd_set_port(skb, p, 0, port);
}

static __always_inline int kd_snat(struct __sk_buff *skb, struct kd_pkt *p, __be32 addr, __u16 port)
{
	int rc = kd_set_addr(skb, p, 1, addr);

	return rc < 0 ? rc : kd_set_port(skb, p, 1, port);
}

static __always_inline int kd_set_macs(struct __sk_buff *skb, const __u8 *dst, const __u8 *src)
{
	if (bpf_skb_store_bytes(skb, 0, dst, ETH_ALEN, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_ALEN, src, ETH_ALEN, 0) < 0)
		return -KD_DROP_REWRITE;
	return 0;
}
