/* Packet parsing into a small flat struct the other helpers work on. */
#pragma once
#include "maps.h"

#ifndef AF_INET
#define AF_INET 2
#endif

#define KD_IP_MF 0x2000
#define KD_IP_OFFMASK 0x1fff

enum {
	KD_PARSE_OK = 0,
	KD_PARSE_NOT_IPV4,	/* ARP, IPv6, ...: not ours */
	KD_PARSE_OTHER_L4,	/* IPv4 but not TCP/UDP (ICMP, SCTP, ...) */
	KD_PARSE_FRAGMENT,	/* non-first fragment: no ports */
	KD_PARSE_MALFORMED,	/* truncated or invalid */
};

struct kd_pkt {
	__u32 l4_off;
	__be32 saddr;
	__be32 daddr;
	__u16 sport;		/* host order */
	__u16 dport;
	__u16 tot_len;
	__u8 proto;
	__u8 tcp_flags;		/* FIN 0x01 SYN 0x02 RST 0x04 ACK 0x10 */
	__u8 ihl_words;
	__u8 mf;		/* more fragments: a first (or middle) fragment */
	__be16 ip_id;		/* IP identification */
};

#define KD_TCP_FIN 0x01
#define KD_TCP_SYN_F 0x02
#define KD_TCP_RST 0x04
#define KD_TCP_ACK 0x10

#define KD_L3_OFF ETH_HLEN
#define KD_IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define KD_IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define KD_IP_DST_OFF (ETH_HLEN + offsetof(struct iphdr, daddr))

/* kd_parse_data parses the Ethernet frame at data..end: the one parser of tc
 * (kd_parse) and XDP programs. */
static __always_inline int kd_parse_data(void *data, void *end, struct kd_pkt *p)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > end)
		return KD_PARSE_NOT_IPV4;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return KD_PARSE_NOT_IPV4;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > end)
		return KD_PARSE_MALFORMED;
	if (ip->version != 4 || ip->ihl < 5)
		return KD_PARSE_MALFORMED;
	p->ihl_words = ip->ihl;
	p->l4_off = ETH_HLEN + ip->ihl * 4;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->proto = ip->protocol;
	p->tot_len = bpf_ntohs(ip->tot_len);
	p->tcp_flags = 0;
	p->sport = 0;
	p->dport = 0;
	p->mf = !!(ip->frag_off & bpf_htons(KD_IP_MF));
	p->ip_id = ip->id;
	if (p->tot_len < ip->ihl * 4)
		return KD_PARSE_MALFORMED;
	if (ip->frag_off & bpf_htons(KD_IP_OFFMASK))
		return KD_PARSE_FRAGMENT;
	if (p->proto == IPPROTO_TCP) {
		struct tcphdr *th = data + p->l4_off;
		if ((void *)(th + 1) > end)
			return KD_PARSE_MALFORMED;
		if (th->doff < 5)
			return KD_PARSE_MALFORMED;
		p->sport = bpf_ntohs(th->source);
		p->dport = bpf_ntohs(th->dest);
		p->tcp_flags = ((__u8 *)th)[13];
		return KD_PARSE_OK;
	}
	if (p->proto == IPPROTO_UDP) {
		struct udphdr *uh = data + p->l4_off;
		if ((void *)(uh + 1) > end)
			return KD_PARSE_MALFORMED;
		p->sport = bpf_ntohs(uh->source);
		p->dport = bpf_ntohs(uh->dest);
		return KD_PARSE_OK;
	}
	return KD_PARSE_OTHER_L4;
}

static __always_inline int kd_parse(struct __sk_buff *skb, struct kd_pkt *p)
{
	return kd_parse_data((void *)(long)skb->data, (void *)(long)skb->data_end, p);
}
