//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* tc programs on the host side of each pod's veth.
 * from_container (ingress: packets the pod sends): ClusterIP DNAT, reverse NAT
 *   of replies from backends, pod-to-pod delivery and overlay encapsulation.
 * to_container (egress: packets the host stack sends into the pod): reverse
 *   NAT of replies from host-network backends. */
#include "lib/datapath.h"

char __license[] SEC("license") = "GPL";

/* kd_route sends a packet by its (possibly translated) destination: a local
 * pod, a remote node's pod CIDR through the overlay, anything else to the
 * stack. */
static __always_inline int kd_route(struct __sk_buff *skb, struct kd_config *cfg, struct kd_pkt *p)
{
	__be32 node;
	int rc = kd_to_endpoint(skb, p->daddr);

	if (rc >= 0)
		return rc;
	node = kd_tunnel_node(p->daddr);
	if (node && node != cfg->node_ip)
		return kd_encap(skb, cfg, node);
	return kd_pass(skb);
}

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	struct kd_config *cfg = kd_cfg();
	struct kd_pkt p;
	struct kd_ct_key k;
	struct kd_ct_val *v;
	struct kd_svc_val *svc;
	struct kd_backend_val be;
	__u64 now;
	int err = 0, rc, verdict;
	__u16 flags, sport;
	__be32 src, os, od;
	__u8 act;

	if ((verdict = kd_ingress_parse(skb, cfg, &p, &rc)) != KD_GO_ON)
		return verdict;
	now = bpf_ktime_get_ns();
	if (rc == KD_PARSE_OTHER_L4) {
		/* An ICMP error from a backend about a translated flow. */
		v = kd_revnat_icmp(skb, &p, now, &err);
		if (err)
			return kd_drop(skb, err);
		if (v && (v->flags & (KD_CT_NODEPORT_LOCAL | KD_CT_NODEPORT_FWD)))
			return kd_reply_out(skb, cfg, &p, v);
	}
	if (rc == KD_PARSE_FRAGMENT) {
		/* A later fragment of a datagram translated here: same rewrite,
		 * same way out. */
		struct kd_frag_val *f;

		if ((verdict = kd_frag_follow(skb, cfg, &p, now, &f)) != KD_GO_ON)
			return verdict;
		if (f && f->action == KD_FRAG_FIB)
			return kd_fib_out(skb, &p);
	}
	if (rc != KD_PARSE_OK)
		return kd_route(skb, cfg, &p); /* ICMP, other fragments: plain routing */
	os = p.saddr;
	od = p.daddr;

	/* Reply from a backend pod of a flow translated on this node. */
	v = kd_revnat(skb, &p, now, &err);
	if (err)
		return kd_drop(skb, err);
	if (v) {
		if (v->flags & (KD_CT_NODEPORT_LOCAL | KD_CT_NODEPORT_FWD)) {
			act = ((v->flags & KD_CT_NODEPORT_FWD) && !(v->flags & KD_CT_DSR)) ? KD_FRAG_ENCAP : KD_FRAG_FIB;
			if ((rc = kd_frag_record(&p, os, od, act, v->tunnel_peer, now)) < 0)
				return kd_drop(skb, -rc);
			return kd_reply_out(skb, cfg, &p, v);
		}
		if ((rc = kd_frag_record(&p, os, od, KD_FRAG_ROUTE, 0, now)) < 0)
			return kd_drop(skb, -rc);
		return kd_route(skb, cfg, &p);
	}

	/* Next packet of a ClusterIP flow: keep its backend. */
	kd_ct_key_fwd(&k, &p);
	v = kd_ct_get(&k, &p, now);
	if (v && (v->flags & KD_CT_CLUSTER)) {
		if ((rc = kd_dnat(skb, &p, v->nat_addr, v->nat_port)) < 0 ||
		    (rc = kd_set_port(skb, &p, 1, kd_ct_sport(v, &p))) < 0 ||
		    ((v->flags & KD_CT_HAIRPIN) && (rc = kd_set_addr(skb, &p, 1, cfg->hairpin_addr)) < 0))
			return kd_drop(skb, -rc);
		kd_count(KD_M_DNAT, skb->len);
		if ((rc = kd_frag_record(&p, os, od, KD_FRAG_ROUTE, 0, now)) < 0)
			return kd_drop(skb, -rc);
		return kd_route(skb, cfg, &p);
	}

	/* New flow: ClusterIP first; externalIPs / LoadBalancer IPs and this
	 * node's NodePorts from a pod are served in-cluster the same way (as
	 * kube-proxy does). Another node's NodePort goes there through the stack. */
	svc = kd_svc_lookup(&p, KD_SCOPE_CLUSTER, 0);
	if (!svc)
		svc = kd_svc_lookup(&p, KD_SCOPE_EXTERNAL, kd_is_node_addr(p.daddr));
	if (!svc)
		return kd_route(skb, cfg, &p);
	if ((rc = kd_pick(svc, (svc->flags & KD_SVC_ITP_LOCAL) ? KD_BE_TABLE_LOCAL : KD_BE_TABLE_ALL,
			  p.saddr, now, &be)) < 0)
		return kd_no_backend(skb, cfg, &p, svc, KD_PROG_FROM_CONTAINER, -rc);
	flags = KD_CT_CLUSTER;
	src = p.saddr;
	if (be.addr == p.saddr) {
		/* Hairpin: the pod would drop a packet from its own address,
		 * so the source becomes the reserved hairpin address. */
		flags |= KD_CT_HAIRPIN;
		src = cfg->hairpin_addr;
	}
	if (be.flags & KD_BE_HOSTNET)
		flags |= KD_CT_HOSTNET;
	if ((rc = kd_ct_create(&p, now, be.addr, be.port, src, 0, svc->svc_id, flags, &sport)) < 0)
		return kd_drop(skb, -rc);
	kd_event(cfg, &p, KD_PROG_FROM_CONTAINER, KD_M_DNAT, 0, be.addr, be.port, 0, svc->svc_id);
	if ((rc = kd_dnat(skb, &p, be.addr, be.port)) < 0 || (rc = kd_set_port(skb, &p, 1, sport)) < 0 ||
	    ((flags & KD_CT_HAIRPIN) && (rc = kd_set_addr(skb, &p, 1, src)) < 0))
		return kd_drop(skb, -rc);
	kd_count(KD_M_DNAT, skb->len);
	if ((rc = kd_frag_record(&p, os, od, KD_FRAG_ROUTE, 0, now)) < 0)
		return kd_drop(skb, -rc);
	return kd_route(skb, cfg, &p);
}

SEC("tc")
int to_container(struct __sk_buff *skb)
{
	struct kd_pkt p;
	__u64 now = bpf_ktime_get_ns();
	__be32 os, od;
	int err = 0, rc;

	rc = kd_parse(skb, &p);
	if (rc == KD_PARSE_NOT_IPV4 || rc == KD_PARSE_MALFORMED)
		return TC_ACT_OK;
	os = p.saddr;
	od = p.daddr;
	if (rc == KD_PARSE_OTHER_L4)
		kd_revnat_icmp(skb, &p, now, &err);
	else if (rc == KD_PARSE_FRAGMENT)
		kd_frag_get(skb, &p, now, &err);
	else if (rc == KD_PARSE_OK && kd_revnat(skb, &p, now, &err) && !err &&
		 (rc = kd_frag_record(&p, os, od, KD_FRAG_ROUTE, 0, now)) < 0)
		return kd_drop(skb, -rc);
	if (err)
		return kd_drop(skb, err);
	return TC_ACT_OK;
}
