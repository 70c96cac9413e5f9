/* The tunnel's size limit. VXLAN adds 50 bytes (outer IPv4 20, UDP 8, VXLAN
 * 8, inner Ethernet 14), so an inner IPv4 packet larger than the NIC's MTU
 * minus 50 (kd_config.tunnel_mtu) would leave as outer fragments, which
 * underlays drop or mangle and the client never hears about. As Cilium does:
 * a DF packet that does not fit is answered with ICMP fragmentation needed
 * carrying the tunnel MTU (so the sender's PMTU discovery adapts), and the
 * MSS of TCP SYNs entering the tunnel is clamped so full-size segments of
 * either side fit (host-network backends and clients advertise the NIC's
 * MSS). GSO packets are left to the clamp (their segments are what counts). */
#pragma once
#include "events.h"
#include "nat.h"

#define KD_IP_DF 0x4000
#define KD_ICMP_FRAG_NEEDED 4
#define KD_TCP_OPT_MSS 2

/* The pad puts the IP header on a 4-byte boundary (aligned stack access);
 * only eth onwards is written to the packet. */
struct kd_frag_needed_hdr {
	__u16 pad;
	struct ethhdr eth;
	struct iphdr ip;
	struct kd_icmphdr icmp;
	__u8 orig[28];		/* the offending packet's IP header + 8 bytes */
};

/* kd_clamp_mss lowers the MSS option of a TCP SYN (or SYN-ACK) at l4_off to
 * max_mss. Only an MSS option in the first position is seen (where Linux,
 * Windows and the BSDs put it). */
static __always_inline void kd_clamp_mss(struct __sk_buff *skb, __u32 l4_off, __u16 max_mss)
{
	__u8 th[24];
	__u16 old;
	__be16 o, n;

	if (bpf_skb_load_bytes(skb, l4_off, th, sizeof(th)) < 0)
		return;
	if (!(th[13] & KD_TCP_SYN_F) || (th[12] >> 4) < 6)
		return;
	if (th[20] != KD_TCP_OPT_MSS || th[21] != 4)
		return;
	old = ((__u16)th[22] << 8) | th[23];
	if (old <= max_mss)
		return;
	o = bpf_htons(old);
	n = bpf_htons(max_mss);
	if (bpf_l4_csum_replace(skb, l4_off + offsetof(struct tcphdr, check), o, n, sizeof(n)) < 0)
		return;
	bpf_skb_store_bytes(skb, l4_off + 22, &n, sizeof(n), 0);
}

/* kd_clamp_syn clamps the MSS of a TCP SYN to what the tunnel carries. It
 * reads the headers in place (no helper call: it runs on every packet that
 * enters the tunnel) and gives up on headers outside the linear area. */
static __always_inline void kd_clamp_syn(struct __sk_buff *skb, struct kd_config *cfg)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct tcphdr *th = data + ETH_HLEN + sizeof(*ip);

	if (!cfg->tunnel_mtu || (void *)th + sizeof(*th) > end)
		return;
	if (ip->protocol != IPPROTO_TCP || ip->ihl != 5 || (ip->frag_off & bpf_htons(KD_IP_MF | KD_IP_OFFMASK)))
		return;
	if (!th->syn)
		return;
	kd_clamp_mss(skb, ETH_HLEN + sizeof(*ip), cfg->tunnel_mtu - sizeof(*ip) - sizeof(*th));
}

/* kd_frag_needed rebuilds the packet in place into ICMP fragmentation needed
 * (from this node's address, next-hop MTU mtu) to its sender and sends it back
 * out of the interface it came in on. */
static __always_inline int kd_frag_needed(struct __sk_buff *skb, struct kd_config *cfg, struct iphdr *in, __u16 mtu)
{
	struct kd_frag_needed_hdr h = {};
	__u32 ifindex = skb->ifindex;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, h.orig, sizeof(h.orig)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_ALEN, h.eth.h_dest, ETH_ALEN) < 0 ||
	    bpf_skb_load_bytes(skb, 0, h.eth.h_source, ETH_ALEN) < 0)
		return TC_ACT_SHOT;
	h.eth.h_proto = bpf_htons(ETH_P_IP);
	h.ip.version = 4;
	h.ip.ihl = 5;
	h.ip.tot_len = bpf_htons(sizeof(h) - 2 - ETH_HLEN);
	h.ip.frag_off = bpf_htons(KD_IP_DF);
	h.ip.ttl = 64;
	h.ip.protocol = IPPROTO_ICMP;
	h.ip.saddr = cfg->node_ip;
	h.ip.daddr = in->saddr;
	h.ip.check = kd_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&h.ip, sizeof(h.ip), 0));
	h.icmp.type = ICMP_DEST_UNREACH;
	h.icmp.code = KD_ICMP_FRAG_NEEDED;
	h.icmp.unused = bpf_htonl(mtu); /* unused (16 bits), then the next-hop MTU */
	h.icmp.checksum = kd_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&h.icmp, sizeof(h.icmp) + sizeof(h.orig), 0));
	if (bpf_skb_change_tail(skb, sizeof(h) - 2, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 0, &h.eth, sizeof(h) - 2, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(ifindex, 0);
}

/* kd_tunnel_fit prepares a packet about to be encapsulated: clamps a SYN's
 * MSS and returns KD_GO_ON when it may go in, or the tc verdict of the ICMP
 * fragmentation needed that replaces a DF packet too big for the tunnel. The
 * ICMP goes back out of the incoming interface, so it is only sent from an
 * ingress hook (ingress_ifindex == ifindex); from egress, and for packets
 * without DF, the kernel fragments the outer packet as before. */
static __always_inline int kd_tunnel_fit(struct __sk_buff *skb, struct kd_config *cfg)
{
	struct iphdr ip;
	__u16 mtu = cfg->tunnel_mtu;

	if (!mtu)
		return KD_GO_ON;
	kd_clamp_syn(skb, cfg);
	if (skb->len - ETH_HLEN <= mtu || skb->gso_size)
		return KD_GO_ON;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.version != 4)
		return KD_GO_ON;
	if (bpf_ntohs(ip.tot_len) <= mtu || !(ip.frag_off & bpf_htons(KD_IP_DF)) || ip.ihl != 5 ||
	    skb->ingress_ifindex != skb->ifindex)
		return KD_GO_ON;
	/* counted and reported here: the ICMP replaces the packet */
	kd_dropped(skb, KD_DROP_TOO_BIG, 0);
	return kd_frag_needed(skb, cfg, &ip, mtu);
}
