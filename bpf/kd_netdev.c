//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* tc programs on the node's NIC.
 * from_netdev (ingress): NodePort / externalIP / LoadBalancer frontends.
 *   Local backend: DNAT and deliver. Remote backend: encapsulate the original
 *   packet to the backend's node (it picks one of its own backends).
 * to_netdev (egress): reverse NAT of replies from host-network backends, which
 *   leave through the stack rather than a pod veth. */
#include "lib/datapath.h"

char __license[] SEC("license") = "GPL";

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	struct kd_config *cfg = kd_cfg();
	struct kd_backend_val be;
	struct kd_svc_val *svc;
	struct kd_ct_val *v;
	struct kd_ct_key k;
	struct kd_pkt p;
	int rc, verdict;
	__u16 flags, sport;
	__u64 now;
	__be32 od;

	if ((verdict = kd_ingress_parse(skb, cfg, &p, &rc)) != KD_GO_ON)
		return verdict;
	if (rc == KD_PARSE_FRAGMENT) {
		/* A later fragment of a datagram translated here. */
		struct kd_frag_val *f;

		if ((verdict = kd_frag_follow(skb, cfg, &p, bpf_ktime_get_ns(), &f)) != KD_GO_ON)
			return verdict;
		if (f)
			return kd_deliver_dnat(skb, &p);
	}
	if (rc != KD_PARSE_OK)
		return kd_pass(skb);
	od = p.daddr;
	if (p.proto == IPPROTO_UDP && p.dport == cfg->vxlan_port)
		return kd_pass(skb); /* overlay traffic for the vxlan device */
	now = bpf_ktime_get_ns();

	/* Next packet of a known external flow: same backend / same node. */
	kd_ct_key_fwd(&k, &p);
	v = kd_ct_get(&k, &p, now);
	if (v) {
		if (v->flags & KD_CT_NODEPORT_REMOTE) {
			if ((rc = kd_frag_record(&p, p.saddr, od, KD_FRAG_ENCAP, v->tunnel_peer, now)) < 0)
				return kd_drop(skb, -rc);
			return kd_encap(skb, cfg, v->tunnel_peer);
		}
		if (v->flags & KD_CT_NODEPORT_LOCAL)
			return kd_dnat_deliver(skb, &p, v->nat_addr, v->nat_port, kd_ct_sport(v, &p), od, now);
	}

	/* Exact frontend (externalIP, LoadBalancer IP, a NodePort bound to one
	 * address), then the NodePort wildcard for any of this node's addresses. */
	svc = kd_svc_lookup(&p, KD_SCOPE_EXTERNAL, 0);
	if (!svc && kd_is_node_addr(p.daddr))
		svc = kd_svc_lookup(&p, KD_SCOPE_EXTERNAL, 1);
	if (!svc)
		return kd_pass(skb);
	if ((rc = kd_pick(svc, (svc->flags & KD_SVC_ETP_LOCAL) ? KD_BE_TABLE_LOCAL : KD_BE_TABLE_ALL,
			  p.saddr, now, &be)) < 0)
		return kd_no_backend(skb, cfg, &p, svc, KD_PROG_FROM_NETDEV, -rc);

	if (!(be.flags & KD_BE_LOCAL)) {
		/* Forward the original packet; the client IP is kept end to end. */
		if ((rc = kd_ct_create(&p, now, be.addr, be.port, 0, be.node_ip, svc->svc_id,
				       KD_CT_NODEPORT_REMOTE, &sport)) < 0)
			return kd_drop(skb, -rc);
		kd_event(cfg, &p, KD_PROG_FROM_NETDEV, KD_M_ENCAP, 0, be.addr, be.port, be.node_ip,
			 svc->svc_id);
		if ((rc = kd_frag_record(&p, p.saddr, od, KD_FRAG_ENCAP, be.node_ip, now)) < 0)
			return kd_drop(skb, -rc);
		return kd_encap(skb, cfg, be.node_ip);
	}
	flags = KD_CT_NODEPORT_LOCAL;
	if (be.flags & KD_BE_HOSTNET)
		flags |= KD_CT_HOSTNET;
	if ((rc = kd_ct_create(&p, now, be.addr, be.port, p.saddr, 0, svc->svc_id, flags, &sport)) < 0)
		return kd_drop(skb, -rc);
	kd_event(cfg, &p, KD_PROG_FROM_NETDEV, KD_M_DNAT, 0, be.addr, be.port, 0, svc->svc_id);
	return kd_dnat_deliver(skb, &p, be.addr, be.port, sport, od, now);
}

SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	struct kd_config *cfg = kd_cfg();
	struct kd_pkt p;
	struct kd_ct_val *v;
	__u64 now;
	__be32 os, od;
	int err = 0, rc;

	if (!cfg)
		return TC_ACT_OK;
	rc = kd_parse(skb, &p);
	if (rc == KD_PARSE_FRAGMENT) {
		/* A later fragment of a reply the stack fragmented. */
		struct kd_frag_val *f;
		int verdict = kd_frag_follow(skb, cfg, &p, bpf_ktime_get_ns(), &f);

		return verdict != KD_GO_ON ? verdict : TC_ACT_OK;
	}
	if (rc != KD_PARSE_OK)
		return TC_ACT_OK;
	if (p.proto == IPPROTO_UDP && p.dport == cfg->vxlan_port)
		return TC_ACT_OK;
	now = bpf_ktime_get_ns();
	os = p.saddr;
	od = p.daddr;
	v = kd_revnat(skb, &p, now, &err);
	if (err)
		return kd_drop(skb, err);
	/* A forwarded flow in tunnel mode goes back to the ingress node; dsr
	 * and local flows continue out of this NIC as routed. */
	if (v && (v->flags & KD_CT_NODEPORT_FWD) && !(v->flags & KD_CT_DSR)) {
		if ((rc = kd_frag_record(&p, os, od, KD_FRAG_ENCAP, v->tunnel_peer, now)) < 0)
			return kd_drop(skb, -rc);
		return kd_encap(skb, cfg, v->tunnel_peer);
	}
	if (v && (rc = kd_frag_record(&p, os, od, KD_FRAG_ROUTE, 0, now)) < 0)
		return kd_drop(skb, -rc);
	/* dsr: the client's segments come through the tunnel, so the MSS a
	 * host-network backend advertises must fit it. */
	if (v && (v->flags & KD_CT_NODEPORT_FWD))
		kd_clamp_syn(skb, cfg);
	return TC_ACT_OK;
}
