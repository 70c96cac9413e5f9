//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* XDP on the node's NIC: the fast path of from_netdev (kd_netdev.c) for
 * NodePort / externalIP / LoadBalancer flows to a backend on another node.
 *
 * xdp_netdev encapsulates such a packet itself (outer Ethernet, IPv4, UDP to
 * the VXLAN port, VXLAN with VNI KD_VNI: what the vxlan device would add to
 * what from_netdev sends into it) and sends it out of the NIC the FIB names
 * for the backend's node (XDP_TX when that is the NIC it came in on), with
 * the conntrack entry, metrics and flow event from_netdev records. A flow to
 * a service without endpoints that rejects gets tc's reply (TCP RST or ICMP
 * port unreachable) back out of the NIC (kd_xdp_reject).
 *
 * Everything else, and every case where tc would do more than forward the
 * packet unchanged, returns XDP_PASS before anything is recorded, so
 * from_netdev handles it as if XDP were not there: not a NodePort flow, a
 * local or possibly local backend (eTP Local, or local backends among the
 * service's: tc delivers into the pod with bpf_redirect_peer, which XDP does
 * not have), no backend on a service that drops, fragments, IP options,
 * malformed packets, packets that do not fit the tunnel (ICMP fragmentation needed) or
 * whose SYN MSS tc would clamp, segments whose L4 checksum a local sender left
 * to offload (kd_xdp_csum_partial), an unresolved next hop. */
#include "lib/datapath.h"

char __license[] SEC("license") = "GPL";

/* The Linux default ip_local_port_range, where the vxlan device picks the
 * outer source port of a flow (udp_flow_src_port). */
#define KD_VXLAN_SPORT_MIN 32768
#define KD_VXLAN_SPORT_MAX 61000

/* kd_vxlan_outer is what encapsulation puts in front of the original frame. */
struct kd_vxlan_outer {
	struct ethhdr eth;
	struct iphdr ip;
	struct udphdr udp;
	__be32 vx_flags;	/* I flag: the VNI is valid */
	__be32 vx_vni;		/* VNI << 8 */
} __attribute__((packed));

/* kd_xdp_fits reports whether tc would send the frame (data..end, parsed as
 * p) into the tunnel unchanged: kd_tunnel_fit neither answers it with ICMP
 * fragmentation needed nor clamps its SYN's MSS, and the kernel does not
 * fragment the outer packet. */
static __always_inline int kd_xdp_fits(void *data, void *end, const struct kd_pkt *p, const struct kd_config *cfg)
{
	struct tcphdr *th = data + p->l4_off;
	__u8 *opt = (void *)(th + 1);
	__u16 mtu = cfg->tunnel_mtu;

	if (!mtu)
		return 1;
	if (end - data - ETH_HLEN > mtu)
		return 0;
	if (p->proto != IPPROTO_TCP || !(p->tcp_flags & KD_TCP_SYN_F))
		return 1;
	/* kd_clamp_mss reads 24 bytes of TCP header: a shorter packet is left alone. */
	if ((void *)(opt + 4) > end || th->doff < 6 || opt[0] != KD_TCP_OPT_MSS || opt[1] != 4)
		return 1;
	return (((__u16)opt[2] << 8) | opt[3]) <= mtu - sizeof(struct iphdr) - sizeof(struct tcphdr);
}

/* kd_xdp_csum_partial reports whether the frame's TCP or UDP checksum holds
 * only the pseudo-header sum: a sender on this machine left the rest to
 * checksum offload (CHECKSUM_PARTIAL), as a host's stack does into a veth (a
 * kind node's eth0: the client is the host, through the docker bridge). The
 * veth carries that state as skb metadata XDP cannot read, and a frame sent
 * with XDP_TX or a redirect loses it: the backend would get a bad checksum
 * and drop every such segment. Such a frame is left to tc, whose skb keeps
 * the state. A complete checksum that happens to equal the pseudo-header
 * sum (one frame in 65536) goes to tc too, which serves it just as well. */
static __always_inline int kd_xdp_csum_partial(void *data, void *end, const struct kd_pkt *p)
{
	__u16 *check;
	__u32 sum;

	if (p->proto == IPPROTO_TCP)
		check = &((struct tcphdr *)(data + p->l4_off))->check;
	else if (p->proto == IPPROTO_UDP)
		check = &((struct udphdr *)(data + p->l4_off))->check;
	else
		return 0;
	if ((void *)(check + 1) > end)
		return 1;
	/* One's complement sum of the pseudo header (addresses, protocol,
	 * L4 length) in memory order, folded as csum_fold folds, not negated:
	 * what ~csum_tcpudp_magic(..., 0) leaves in the field. */
	sum = (p->saddr & 0xffff) + (p->saddr >> 16) + (p->daddr & 0xffff) + (p->daddr >> 16) +
	      bpf_htons(p->proto) + bpf_htons(p->tot_len - p->ihl_words * 4);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return *check == (__u16)sum;
}

/* kd_xdp_route looks up the way to node_ip for an outer packet carrying len
 * bytes of frame: the egress NIC and both MACs in *f. Returns 0, or -1 when
 * the kernel must take over (unresolved neighbour, no route, too big). */
static __always_inline int kd_xdp_route(struct xdp_md *ctx, const struct kd_config *cfg, __be32 node_ip, __u32 len,
					struct bpf_fib_lookup *f)
{
	__builtin_memset(f, 0, sizeof(*f));
	f->family = AF_INET;
	f->l4_protocol = IPPROTO_UDP;
	f->dport = bpf_htons(cfg->vxlan_port);
	f->tot_len = len - ETH_HLEN + sizeof(struct kd_vxlan_outer); /* host order */
	f->ipv4_src = cfg->node_ip;
	f->ipv4_dst = node_ip;
	f->ifindex = ctx->ingress_ifindex;
	return bpf_fib_lookup(ctx, f, sizeof(*f), 0) == BPF_FIB_LKUP_RET_SUCCESS ? 0 : -1;
}

/* kd_xdp_drop counts a drop with its KD_DROP_* reason (no event: the event
 * reader of kd_drop_event is skb only). */
static __always_inline int kd_xdp_drop(__u32 len, __u32 reason)
{
	kd_count(KD_M_DROP, len);
	kd_count(reason, len);
	return XDP_DROP;
}

/* kd_xdp_encap puts the VXLAN headers to node_ip in front of the frame (len
 * bytes, inner IPv4 TOS tos) and sends it the way f says. The outer header is
 * the vxlan device's for a collect-metadata tunnel key of kd_tunnel_to: TTL
 * 64, no DF, zero UDP checksum, the inner ECN bits (CE as ECT(0)), a source
 * port from the inner flow's hash in the default local port range. */
static __always_inline int kd_xdp_encap(struct xdp_md *ctx, const struct kd_config *cfg, const struct kd_pkt *p,
					__be32 node_ip, __u8 tos, __u32 len, const struct bpf_fib_lookup *f)
{
	struct kd_vxlan_outer *h;
	void *data, *end;
	__u32 hash;
	__u8 ecn = tos & 3;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(*h)) < 0)
		return kd_xdp_drop(len, KD_DROP_REWRITE);
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	h = data;
	if ((void *)(h + 1) > end)
		return kd_xdp_drop(len, KD_DROP_REWRITE);
	__builtin_memcpy(h->eth.h_dest, f->dmac, ETH_ALEN);
	__builtin_memcpy(h->eth.h_source, f->smac, ETH_ALEN);
	h->eth.h_proto = bpf_htons(ETH_P_IP);
	h->ip.version = 4;
	h->ip.ihl = 5;
	h->ip.tos = ecn == 3 ? 2 : ecn;
	h->ip.tot_len = bpf_htons(len + sizeof(*h) - ETH_HLEN);
	h->ip.id = (__u16)bpf_get_prandom_u32();
	h->ip.frag_off = 0;
	h->ip.ttl = 64;
	h->ip.protocol = IPPROTO_UDP;
	h->ip.check = 0;
	h->ip.saddr = cfg->node_ip;
	h->ip.daddr = node_ip;
	h->ip.check = kd_csum_fold(bpf_csum_diff(NULL, 0, (void *)h + ETH_HLEN, sizeof(struct iphdr), 0));
	hash = kd_ct_hash(p->saddr ^ kd_ct_hash(p->daddr ^ kd_ct_hash(((__u32)p->sport << 16 | p->dport) ^ p->proto)));
	h->udp.source = bpf_htons((((__u64)hash * (KD_VXLAN_SPORT_MAX - KD_VXLAN_SPORT_MIN)) >> 32) + KD_VXLAN_SPORT_MIN);
	h->udp.dest = bpf_htons(cfg->vxlan_port);
	h->udp.len = bpf_htons(len + sizeof(*h) - ETH_HLEN - sizeof(struct iphdr));
	h->udp.check = 0;
	h->vx_flags = bpf_htonl(0x08000000);
	h->vx_vni = bpf_htonl(KD_VNI << 8);
	if (f->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(f->ifindex, 0);
}

/* kd_xdp_reject answers a flow to a service without endpoints as tc's
 * kd_no_backend does: the same event, reply (kd_reject_rebuild) and counters,
 * the reply sent back out of the NIC. What tc would drop rather than answer
 * (IP options, a RST, a packet too short) passes untouched, for tc to drop
 * and report. */
static __always_inline int kd_xdp_reject(struct xdp_md *ctx, struct kd_config *cfg, struct kd_pkt *p,
					 const struct kd_svc_val *svc, __u32 len)
{
	int rc = kd_reject_rebuild(ctx, 1, p);

	if (rc == -KD_DROP_NO_BACKEND || rc == -KD_DROP_MALFORMED)
		return XDP_PASS;
	kd_event(cfg, p, KD_PROG_FROM_NETDEV, KD_M_REJECT, KD_DROP_NO_BACKEND, 0, 0, 0, svc->svc_id);
	if (rc < 0)
		return kd_xdp_drop(len, -rc);
	kd_count(KD_M_REJECT, rc);
	kd_count(KD_DROP_NO_BACKEND, rc);
	return XDP_TX;
}

SEC("xdp")
int xdp_netdev(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct kd_config *cfg = kd_cfg();
	struct bpf_fib_lookup f;
	struct kd_backend_val be;
	struct kd_svc_val *svc;
	struct kd_ct_val *v;
	struct kd_ct_key k;
	struct kd_pkt p;
	struct iphdr *ip = data + ETH_HLEN;
	__u32 len = end - data;
	__be32 peer;
	__u16 sport;
	__u64 now;
	int rc, fwd;

	if (!cfg || !cfg->vxlan_ifindex)
		return XDP_PASS;
	if (kd_parse_data(data, end, &p) != KD_PARSE_OK || p.ihl_words != 5 || p.mf)
		return XDP_PASS;
	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	if (p.proto == IPPROTO_UDP && p.dport == cfg->vxlan_port)
		return XDP_PASS;
	/* A local sender's frame is tc's (see kd_xdp_csum_partial), also for a
	 * reject: the reply would go back with XDP_TX into a veth, whose peer
	 * drops XDP frames unless it runs NAPI. */
	if (kd_xdp_csum_partial(data, end, &p))
		return XDP_PASS;
	/* Whether tc would send the frame into the tunnel unchanged, as XDP
	 * can: a reply to it (kd_xdp_reject) does not depend on that. */
	fwd = kd_xdp_fits(data, end, &p, cfg);
	now = bpf_ktime_get_ns();

	/* Next packet of a known flow: only a forwarded one is ours. Looked
	 * at without side effects first, so that a pass leaves it to tc. */
	kd_ct_key_fwd(&k, &p);
	v = kd_ct_lookup(&k);
	if (v && kd_ct_live(v, &p, now)) {
		peer = v->tunnel_peer;
		if (!fwd || !(v->flags & KD_CT_NODEPORT_REMOTE) || !peer || kd_xdp_route(ctx, cfg, peer, len, &f) < 0)
			return XDP_PASS;
		kd_ct_get(&k, &p, now);
		goto encap;
	}

	svc = kd_svc_lookup(&p, KD_SCOPE_EXTERNAL, 0);
	if (!svc && kd_is_node_addr(p.daddr))
		svc = kd_svc_lookup(&p, KD_SCOPE_EXTERNAL, 1);
	if (!svc)
		return XDP_PASS;
	/* No endpoints at all: kd_pick fails with KD_DROP_NO_BACKEND whatever
	 * the traffic policy, and a rejecting service answers. */
	if (!svc->count && (svc->flags & KD_SVC_REJECT))
		return kd_xdp_reject(ctx, cfg, &p, svc, len);
	/* A pick that may land on this node stays tc's: its delivery into the
	 * pod (bpf_redirect_peer) has no XDP equivalent, and picking twice
	 * would skew the choice between nodes. */
	if (!fwd || (svc->flags & KD_SVC_ETP_LOCAL) || svc->local_count || !svc->count)
		return XDP_PASS;
	if (kd_pick(svc, KD_BE_TABLE_ALL, p.saddr, now, &be) < 0 || (be.flags & KD_BE_LOCAL) || !be.node_ip)
		return XDP_PASS;
	peer = be.node_ip;
	if (kd_xdp_route(ctx, cfg, peer, len, &f) < 0)
		return XDP_PASS;
	if ((rc = kd_ct_create(&p, now, be.addr, be.port, 0, peer, svc->svc_id, KD_CT_NODEPORT_REMOTE, &sport)) < 0)
		return kd_xdp_drop(len, -rc);
	kd_event(cfg, &p, KD_PROG_FROM_NETDEV, KD_M_ENCAP, 0, be.addr, be.port, peer, svc->svc_id);
encap:
	kd_count(KD_M_ENCAP, len);
	kd_trace(cfg, KD_M_ENCAP, peer, f.ifindex);
	return kd_xdp_encap(ctx, cfg, &p, peer, ip->tos, len, &f);
}
