/* Where a packet goes next: a local pod, the overlay, out of a NIC, the stack. */
#pragma once
#include "nat.h"
#include "events.h"
#include "mtu.h"

/* VNI used on the collect-metadata vxlan device; every node uses the same. */
#define KD_VNI 1

static __always_inline int kd_pass(struct __sk_buff *skb)
{
	kd_count(KD_M_PASS, skb->len);
	return TC_ACT_OK;
}

/* kd_drop drops the packet, counted and reported with its KD_DROP_* reason. */
static __always_inline int kd_drop(struct __sk_buff *skb, __u32 reason)
{
	kd_dropped(skb, reason, 0);
	return TC_ACT_SHOT;
}

/* kd_to_endpoint redirects to a local pod (through its veth peer) after
 * setting the MACs the pod expects. Returns KD_GO_ON if daddr is not a local
 * pod. */
static __always_inline int kd_to_endpoint(struct __sk_buff *skb, __be32 daddr)
{
	struct kd_endpoint_val *ep = bpf_map_lookup_elem(&kd_endpoints, &daddr);

	if (!ep)
		return KD_GO_ON;
	if (kd_set_macs(skb, ep->mac, ep->host_mac) < 0)
		return kd_drop(skb, KD_DROP_REWRITE);
	kd_count(KD_M_LOCAL, skb->len);
	return bpf_redirect_peer(ep->ifindex, 0);
}

/* kd_tunnel_to gives the packet its overlay destination node_ip (the vxlan
 * device adds the outer headers) and counts the encapsulation; ifindex is
 * where it leaves, for the trace. -KD_DROP_REWRITE when the kernel refuses. */
static __always_inline int kd_tunnel_to(struct __sk_buff *skb, struct kd_config *cfg, __be32 node_ip, __u32 ifindex)
{
	struct bpf_tunnel_key key = {};

	key.remote_ipv4 = bpf_ntohl(node_ip); /* the helper takes host order */
	key.tunnel_id = KD_VNI;
	key.tunnel_ttl = 64;
	if (bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX) < 0)
		return -KD_DROP_REWRITE;
	kd_count(KD_M_ENCAP, skb->len);
	kd_trace(cfg, KD_M_ENCAP, node_ip, ifindex);
	return 0;
}

/* kd_encap sends the packet as is into the vxlan device with node_ip as
 * the outer destination. */
static __always_inline int kd_encap(struct __sk_buff *skb, struct kd_config *cfg, __be32 node_ip)
{
	int rc;

	if (!node_ip || !cfg->vxlan_ifindex)
		return kd_drop(skb, KD_DROP_NO_TUNNEL);
	rc = kd_tunnel_fit(skb, cfg);
	if (rc != KD_GO_ON)
		return rc;
	if ((rc = kd_tunnel_to(skb, cfg, node_ip, cfg->vxlan_ifindex)) < 0)
		return kd_drop(skb, -rc);
	return bpf_redirect(cfg->vxlan_ifindex, 0);
}

/* kd_tunnel_node returns the node owning daddr's pod CIDR, or 0. */
static __always_inline __be32 kd_tunnel_node(__be32 daddr)
{
	struct kd_tunnel_key k = { .prefixlen = 32, .addr = daddr };
	struct kd_tunnel_val *t = bpf_map_lookup_elem(&kd_tunnel, &k);

	return t ? t->node_ip : 0;
}

/* kd_to_stack hands a packet to the local stack; packets decapsulated by the
 * vxlan device carry the sender's inner MAC, so mark them for this host. */
static __always_inline int kd_to_stack(struct __sk_buff *skb)
{
	if (skb->pkt_type != 0 /* PACKET_HOST */)
		bpf_skb_change_type(skb, 0);
	return TC_ACT_OK;
}

/* kd_fib_out sends a packet towards an off-cluster client: FIB lookup for the
 * egress NIC and neighbour MAC; if the neighbour is unresolved let the kernel
 * resolve it (bpf_redirect_neigh). */
static __always_inline int kd_fib_out(struct __sk_buff *skb, struct kd_pkt *p)
{
	struct bpf_fib_lookup f = {};
	long rc;

	f.family = AF_INET;
	f.l4_protocol = p->proto;
	f.sport = bpf_htons(p->sport);
	f.dport = bpf_htons(p->dport);
	/* tot_len stays 0: the kernel then checks the skb itself against the
	 * egress MTU, segment by segment for GSO packets (a GRO'd reply carries
	 * the total length of all its segments). */
	f.ipv4_src = p->saddr;
	f.ipv4_dst = p->daddr;
	f.ifindex = skb->ingress_ifindex ? skb->ingress_ifindex : skb->ifindex;
	rc = bpf_fib_lookup(skb, &f, sizeof(f), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		if (kd_set_macs(skb, f.dmac, f.smac) < 0)
			return kd_drop(skb, KD_DROP_REWRITE);
		kd_count(KD_M_FIB_OUT, skb->len);
		return bpf_redirect(f.ifindex, 0);
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		kd_count(KD_M_FIB_OUT, skb->len);
		return bpf_redirect_neigh(f.ifindex, NULL, 0, 0);
	}
	/* The client is this node (a host-network client of another node's
	 * NodePort whose backend runs here, dsr): the local stack takes it. */
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED) {
		kd_count(KD_M_PASS, skb->len);
		return kd_to_stack(skb);
	}
	return kd_drop(skb, KD_DROP_FIB);
}
