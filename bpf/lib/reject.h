/* Rejecting flows to a Service without endpoints, as kube-proxy does: TCP
 * gets a RST, UDP an ICMP port unreachable, both sent back out of the
 * interface the packet came in on. The packet is rebuilt in place
 * (trimmed or grown; tc and XDP alike: kd_reject_rebuild). Only IPv4 headers without options
 * are rebuilt; anything else is dropped. Both count KD_DROP_NO_BACKEND. */
#pragma once
#include "fwd.h"

/* The leading pad puts the IP header on a 4-byte boundary: BPF stack
 * accesses must be aligned. Only eth onwards is written to the packet. */
struct kd_rst_hdr {
	__u16 pad;
	struct ethhdr eth;
	struct iphdr ip;
	struct tcphdr tcp;
};

struct kd_icmp_hdr {
	__u16 pad;
	struct ethhdr eth;
	struct iphdr ip;
	struct kd_icmphdr icmp;
	__u8 orig[28];
};

struct kd_pseudo {
	__be32 saddr;
	__be32 daddr;
	__u8 zero;
	__u8 proto;
	__be16 len;
};

static __always_inline void kd_fill_ip(struct iphdr *ip, const struct kd_pkt *p, __u8 proto, __u16 len)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(len);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = 64;
	ip->protocol = proto;
	ip->check = 0;
	ip->saddr = p->daddr;
	ip->daddr = p->saddr;
	ip->check = kd_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
}

/* kd_ctx_load, kd_ctx_store and kd_ctx_resize read, write and resize the
 * packet of ctx: an skb, or an XDP frame when xdp is set. xdp is a constant
 * at every call, so each program keeps only its own context's helpers. */
static __always_inline long kd_ctx_load(void *ctx, int xdp, __u32 off, void *buf, __u32 len)
{
	return xdp ? bpf_xdp_load_bytes(ctx, off, buf, len) : bpf_skb_load_bytes(ctx, off, buf, len);
}

static __always_inline long kd_ctx_store(void *ctx, int xdp, __u32 off, void *buf, __u32 len)
{
	return xdp ? bpf_xdp_store_bytes(ctx, off, buf, len) : bpf_skb_store_bytes(ctx, off, buf, len, 0);
}

static __always_inline long kd_ctx_resize(void *ctx, int xdp, __u32 len)
{
	if (xdp)
		return bpf_xdp_adjust_tail(ctx, (int)len - (int)bpf_xdp_get_buff_len(ctx));
	return bpf_skb_change_tail(ctx, len, 0);
}

/* kd_reject_rebuild rewrites the packet p of ctx (see kd_ctx_load) in place
 * into its reject reply. Returns the reply's length, or -KD_DROP_NO_BACKEND
 * (not answered: IP options, a RST) or -KD_DROP_MALFORMED (too short), both
 * with the packet untouched, or -KD_DROP_REWRITE (the packet is lost). */
static __always_inline int kd_reject_rebuild(void *ctx, int xdp, const struct kd_pkt *p)
{
	if (p->ihl_words != 5)
		return -KD_DROP_NO_BACKEND;
	if (p->proto == IPPROTO_TCP) {
		struct kd_rst_hdr h = {};
		struct tcphdr in;
		struct kd_pseudo ph;
		__u32 payload;
		__s64 sum;

		if (p->tcp_flags & KD_TCP_RST)
			return -KD_DROP_NO_BACKEND;
		if (kd_ctx_load(ctx, xdp, ETH_ALEN, h.eth.h_dest, ETH_ALEN) < 0 ||
		    kd_ctx_load(ctx, xdp, 0, h.eth.h_source, ETH_ALEN) < 0 ||
		    kd_ctx_load(ctx, xdp, p->l4_off, &in, sizeof(in)) < 0)
			return -KD_DROP_MALFORMED;
		payload = p->tot_len - 20 - in.doff * 4;
		if (payload > 0xffff)
			payload = 0;
		if (in.ack) {
			h.tcp.seq = in.ack_seq;
			h.tcp.rst = 1;
		} else {
			h.tcp.ack_seq = bpf_htonl(bpf_ntohl(in.seq) + payload + in.syn + in.fin);
			h.tcp.rst = 1;
			h.tcp.ack = 1;
		}
		h.eth.h_proto = bpf_htons(ETH_P_IP);
		kd_fill_ip(&h.ip, p, IPPROTO_TCP, sizeof(h.ip) + sizeof(h.tcp));
		h.tcp.source = bpf_htons(p->dport);
		h.tcp.dest = bpf_htons(p->sport);
		h.tcp.doff = 5;
		ph.saddr = p->daddr;
		ph.daddr = p->saddr;
		ph.zero = 0;
		ph.proto = IPPROTO_TCP;
		ph.len = bpf_htons(sizeof(h.tcp));
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.tcp, sizeof(h.tcp), (__u32)sum);
		h.tcp.check = kd_csum_fold(sum);
		if (kd_ctx_resize(ctx, xdp, sizeof(h) - 2) < 0 ||
		    kd_ctx_store(ctx, xdp, 0, &h.eth, sizeof(h) - 2) < 0)
			return -KD_DROP_REWRITE;
		return sizeof(h) - 2;
	} else {
		struct kd_icmp_hdr h = {};
		__s64 sum;

		if (kd_ctx_load(ctx, xdp, ETH_HLEN, h.orig, sizeof(h.orig)) < 0 ||
		    kd_ctx_load(ctx, xdp, ETH_ALEN, h.eth.h_dest, ETH_ALEN) < 0 ||
		    kd_ctx_load(ctx, xdp, 0, h.eth.h_source, ETH_ALEN) < 0)
			return -KD_DROP_MALFORMED;
		h.eth.h_proto = bpf_htons(ETH_P_IP);
		kd_fill_ip(&h.ip, p, IPPROTO_ICMP, sizeof(h) - ETH_HLEN - 2);
		h.icmp.type = ICMP_DEST_UNREACH;
		h.icmp.code = ICMP_PORT_UNREACH;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.icmp, sizeof(h.icmp) + sizeof(h.orig), 0);
		h.icmp.checksum = kd_csum_fold(sum);
		if (kd_ctx_resize(ctx, xdp, sizeof(h) - 2) < 0 ||
		    kd_ctx_store(ctx, xdp, 0, &h.eth, sizeof(h) - 2) < 0)
			return -KD_DROP_REWRITE;
		return sizeof(h) - 2;
	}
}

/* kd_reject answers p on the interface it came in on, or drops it with the
 * reason kd_reject_rebuild gives. */
static __always_inline int kd_reject(struct __sk_buff *skb, struct kd_pkt *p)
{
	__u32 ifindex = skb->ifindex;
	int len = kd_reject_rebuild(skb, 0, p);

	if (len < 0)
		return kd_drop(skb, -len);
	kd_count(KD_M_REJECT, len);
	kd_count(KD_DROP_NO_BACKEND, len);
	return bpf_redirect(ifindex, 0);
}
