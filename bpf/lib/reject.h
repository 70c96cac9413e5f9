/* Rejecting flows to a Service without endpoints, as kube-proxy does: TCP
 * gets a RST, UDP an ICMP port unreachable, both sent back out of the
 * interface the packet came in on. The packet is rebuilt in place
 * (bpf_skb_change_tail trims or grows it). Only IPv4 headers without options
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

static __always_inline void kd_fill_ip(struct iphdr *ip, struct kd_pkt *p, __u8 proto, __u16 len)
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

static __always_inline int kd_reject(struct __sk_buff *skb, struct kd_pkt *p)
{
	__u32 ifindex = skb->ifindex;

	if (p->ihl_words != 5)
		return kd_drop(skb, KD_DROP_NO_BACKEND);
	if (p->proto == IPPROTO_TCP) {
		struct kd_rst_hdr h = {};
		struct tcphdr in;
		struct kd_pseudo ph;
		__u32 payload;
		__s64 sum;

		if (p->tcp_flags & KD_TCP_RST)
			return kd_drop(skb, KD_DROP_NO_BACKEND);
		if (bpf_skb_load_bytes(skb, ETH_ALEN, h.eth.h_dest, ETH_ALEN) < 0 ||
		    bpf_skb_load_bytes(skb, 0, h.eth.h_source, ETH_ALEN) < 0 ||
		    bpf_skb_load_bytes(skb, p->l4_off, &in, sizeof(in)) < 0)
			return kd_drop(skb, KD_DROP_MALFORMED);
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
		if (bpf_skb_change_tail(skb, sizeof(h) - 2, 0) < 0 ||
		    bpf_skb_store_bytes(skb, 0, &h.eth, sizeof(h) - 2, 0) < 0)
			return kd_drop(skb, KD_DROP_REWRITE);
	} else {
		struct kd_icmp_hdr h = {};
		__s64 sum;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, h.orig, sizeof(h.orig)) < 0 ||
		    bpf_skb_load_bytes(skb, ETH_ALEN, h.eth.h_dest, ETH_ALEN) < 0 ||
		    bpf_skb_load_bytes(skb, 0, h.eth.h_source, ETH_ALEN) < 0)
			return kd_drop(skb, KD_DROP_MALFORMED);
		h.eth.h_proto = bpf_htons(ETH_P_IP);
		kd_fill_ip(&h.ip, p, IPPROTO_ICMP, sizeof(h) - ETH_HLEN - 2);
		h.icmp.type = ICMP_DEST_UNREACH;
		h.icmp.code = ICMP_PORT_UNREACH;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.icmp, sizeof(h.icmp) + sizeof(h.orig), 0);
		h.icmp.checksum = kd_csum_fold(sum);
		if (bpf_skb_change_tail(skb, sizeof(h) - 2, 0) < 0 ||
		    bpf_skb_store_bytes(skb, 0, &h.eth, sizeof(h) - 2, 0) < 0)
			return kd_drop(skb, KD_DROP_REWRITE);
	}
	kd_count(KD_M_REJECT, skb->len);
	kd_count(KD_DROP_NO_BACKEND, skb->len);
	return bpf_redirect(ifindex, 0);
}
