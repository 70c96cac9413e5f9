//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* tc programs on the vxlan device (external / collect-metadata mode).
 * from_overlay (ingress, already decapsulated): deliver to local pods (with
 *   reverse NAT of ClusterIP replies), accept NodePort flows forwarded by an
 *   ingress node (step 3), and send tunnel-mode replies of flows this node
 *   forwarded out of its NIC to the client.
 * to_overlay (egress): packets the stack routes into the vxlan device (for
 *   example host-network clients to remote pods) get their tunnel key from
 *   the tunnel map. */
#include "lib/datapath.h"

char __license[] SEC("license") = "GPL";

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct kd_config *cfg = kd_cfg();
	struct bpf_tunnel_key tk = {};
	struct kd_pkt p;
	struct kd_ct_key k;
	struct kd_ct_val *v;
	__be32 peer = 0;
	__u64 now;
	int err = 0, rc, verdict;

	if ((verdict = kd_ingress_parse(skb, cfg, &p, &rc)) != KD_GO_ON)
		return verdict;
	if (rc != KD_PARSE_OK) {
		/* ICMP errors for a local client's translated flow, fragments. */
		if (rc == KD_PARSE_OTHER_L4) {
			struct kd_pkt q;

			now = bpf_ktime_get_ns();
			/* ... of a NodePort flow this node forwarded: out to the client. */
			if (kd_icmp_quoted(skb, &p, &q) == 0) {
				kd_ct_key_fwd(&k, &q);
				v = kd_ct_lookup(&k);
				if (v && (v->flags & KD_CT_NODEPORT_REMOTE) && v->expires >= now)
					return kd_fib_out(skb, &p);
			}
			kd_revnat_icmp(skb, &p, now, &err);
			if (err)
				return kd_drop(skb, err);
		} else {
			/* A later fragment of a datagram translated here. */
			struct kd_frag_val *f = kd_frag_get(skb, &p, bpf_ktime_get_ns(), &err);

			if (err)
				return kd_drop(skb, err);
			if (f && f->action == KD_FRAG_FIB)
				return kd_fib_out(skb, &p);
		}
		rc = kd_to_endpoint(skb, p.daddr);
		return rc >= 0 ? rc : kd_to_stack(skb);
	}
	if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), 0) == 0)
		peer = bpf_htonl(tk.remote_ipv4);
	now = bpf_ktime_get_ns();

	/* Tunnel-mode reply of a flow this node forwarded (step 4): the
	 * backend's node already wrote our frontend as source. */
	kd_ct_key_swapped(&k, &p, KD_CT_FWD);
	v = kd_ct_lookup(&k);
	if (v && (v->flags & KD_CT_NODEPORT_REMOTE) && v->expires >= now) {
		kd_ct_get(&k, &p, now); /* refresh lifetime / TCP state */
		if ((rc = kd_frag_record(&p, p.saddr, p.daddr, KD_FRAG_FIB, 0, now)) < 0)
			return kd_drop(skb, -rc);
		return kd_fib_out(skb, &p);
	}

	/* A local pod: reverse NAT if it is the reply of a ClusterIP flow
	 * whose client is here, then deliver. */
	if (bpf_map_lookup_elem(&kd_endpoints, &p.daddr)) {
		__be32 os = p.saddr, od = p.daddr;

		v = kd_revnat(skb, &p, now, &err);
		if (err)
			return kd_drop(skb, err);
		if (v && (rc = kd_frag_record(&p, os, od, KD_FRAG_ROUTE, 0, now)) < 0)
			return kd_drop(skb, -rc);
		/* From a host-network client on another node (its route to our
		 * pod CIDR): the stack delivers it, so its conntrack sees the
		 * connection and the pod's replies are not new flows for the
		 * masquerade (they would leave from the node's address). */
		if (!v && (p.saddr & cfg->pod_mask) != cfg->pod_cidr && !kd_tunnel_node(p.saddr)) {
			kd_count(KD_M_PASS, skb->len);
			return kd_to_stack(skb);
		}
		rc = kd_to_endpoint(skb, p.daddr);
		return rc >= 0 ? rc : kd_to_stack(skb);
	}

	/* A forwarded external flow (step 3). */
	rc = kd_forwarded_flow(skb, cfg, &p, peer, now, KD_PROG_FROM_OVERLAY);
	if (rc != KD_GO_ON)
		return rc;
	kd_count(KD_M_PASS, skb->len);
	return kd_to_stack(skb);
}

SEC("tc")
int to_overlay(struct __sk_buff *skb)
{
	struct kd_config *cfg = kd_cfg();
	struct bpf_tunnel_key tk = {};
	struct kd_ct_val *v = NULL;
	struct kd_pkt p;
	__be32 node, os, od, peer = 0;
	int err = 0, rc;

	if (!cfg)
		return TC_ACT_OK;
	if (bpf_skb_get_tunnel_key(skb, &tk, sizeof(tk), 0) == 0)
		return TC_ACT_OK; /* key set by one of our programs */
	rc = kd_parse(skb, &p);
	if (rc == KD_PARSE_NOT_IPV4 || rc == KD_PARSE_MALFORMED)
		return TC_ACT_OK;
	os = p.saddr;
	od = p.daddr;
	if (rc == KD_PARSE_FRAGMENT) {
		struct kd_frag_val *f = kd_frag_get(skb, &p, bpf_ktime_get_ns(), &err);

		if (err)
			return kd_drop(skb, err);
		if (f && f->action == KD_FRAG_ENCAP)
			peer = f->peer;
	}
	/* A host-network backend's reply to a client in a remote pod CIDR, of a
	 * flow translated here: reverse NAT as to_netdev does for clients
	 * outside the cluster. */
	if (rc == KD_PARSE_OK)
		v = kd_revnat(skb, &p, bpf_ktime_get_ns(), &err);
	else if (rc == KD_PARSE_OTHER_L4)
		v = kd_revnat_icmp(skb, &p, bpf_ktime_get_ns(), &err);
	if (err)
		return kd_drop(skb, err);
	/* A forwarded flow in tunnel mode goes back to its ingress node. */
	if (v && (v->flags & KD_CT_NODEPORT_FWD) && !(v->flags & KD_CT_DSR))
		node = v->tunnel_peer;
	else if (peer)
		node = peer;
	else
		node = kd_tunnel_node(p.daddr);
	if (!node)
		return kd_drop(skb, KD_DROP_NO_TUNNEL);
	if (v && (rc = kd_frag_record(&p, os, od, KD_FRAG_ENCAP, node, bpf_ktime_get_ns())) < 0)
		return kd_drop(skb, -rc);
	if ((rc = kd_tunnel_to(skb, cfg, node, skb->ifindex)) < 0)
		return kd_drop(skb, -rc);
	return TC_ACT_OK;
}
