/* Building blocks shared by the tc programs: reverse NAT and the "new
 * external flow" / "forwarded flow" steps. Includes every other helper.
 * Helpers that fail return the negative KD_DROP_* reason (-KD_DROP_REWRITE,
 * ...), which the program drops the packet with: kd_drop(skb, -rc). */
#pragma once
#include "lb.h"
#include "fwd.h"
#include "reject.h"
#include "events.h"
#include "icmp.h"
#include "frag.h"

/* kd_revnat looks the packet up as the reply of a translated flow and, if it
 * is one, rewrites the source back to the frontend (and, for hairpin flows,
 * the destination back to the client; for flows whose source port was
 * changed, the destination port back to the client's). Returns the entry or NULL. A failed
 * rewrite sets *err to its KD_DROP_* reason. */
static __always_inline struct kd_ct_val *kd_revnat(struct __sk_buff *skb, struct kd_pkt *p, __u64 now, int *err)
{
	struct kd_ct_key k;
	struct kd_ct_val *v;
	int rc;

	kd_ct_key_reply(&k, p);
	v = kd_ct_get(&k, p, now);
	if (!v)
		return NULL;
	if ((rc = kd_snat(skb, p, v->nat_addr, v->nat_port)) < 0)
		*err = -rc;
	else if ((v->flags & KD_CT_HAIRPIN) && (rc = kd_set_addr(skb, p, 0, v->client_addr)) < 0)
		*err = -rc;
	else if (v->client_port && (rc = kd_set_port(skb, p, 0, v->client_port)) < 0)
		*err = -rc;
	if (!*err)
		kd_count(KD_M_REVNAT, skb->len);
	return v;
}

/* kd_ingress_parse is how every ingress program starts: without a config yet
 * the packet passes untouched, a malformed one is dropped and a non-IPv4 one
 * goes to the stack. KD_GO_ON leaves the packet, with *rc the parse result
 * (KD_PARSE_*), to the caller. */
static __always_inline int kd_ingress_parse(struct __sk_buff *skb, const struct kd_config *cfg, struct kd_pkt *p,
					    int *rc)
{
	if (!cfg)
		return TC_ACT_OK;
	*rc = kd_parse(skb, p);
	if (*rc == KD_PARSE_MALFORMED)
		return kd_drop(skb, KD_DROP_MALFORMED);
	if (*rc == KD_PARSE_NOT_IPV4)
		return kd_pass(skb);
	return KD_GO_ON;
}

/* kd_frag_follow sends a later fragment (KD_PARSE_FRAGMENT) the way its first
 * fragment went: its datagram's address rewrite, and into the tunnel if the
 * first fragment went there. Returns a tc verdict, or KD_GO_ON with *f the
 * datagram's entry (NULL: not translated here) for the caller's own route. */
static __always_inline int kd_frag_follow(struct __sk_buff *skb, struct kd_config *cfg, struct kd_pkt *p,
					  __u64 now, struct kd_frag_val **f)
{
	int err = 0;

	*f = kd_frag_get(skb, p, now, &err);
	if (err)
		return kd_drop(skb, err);
	if (*f && (*f)->action == KD_FRAG_ENCAP)
		return kd_encap(skb, cfg, (*f)->peer);
	return KD_GO_ON;
}

/* kd_no_backend handles a service with nothing to pick from. */
static __always_inline int kd_no_backend(struct __sk_buff *skb, struct kd_config *cfg, struct kd_pkt *p,
					 const struct kd_svc_val *svc, __u8 prog, __u32 reason)
{
	if (reason == KD_DROP_NO_BACKEND && (svc->flags & KD_SVC_REJECT)) {
		kd_event(cfg, p, prog, KD_M_REJECT, reason, 0, 0, 0, svc->svc_id);
		return kd_reject(skb, p);
	}
	kd_dropped(skb, reason, svc->svc_id);
	return TC_ACT_SHOT;
}

/* kd_deliver_dnat sends an already DNATed packet to its backend: a local
 * pod through its veth, or (host-network backend) the local stack. */
static __always_inline int kd_deliver_dnat(struct __sk_buff *skb, struct kd_pkt *p)
{
	int rc = kd_to_endpoint(skb, p->daddr);

	if (rc >= 0)
		return rc;
	kd_count(KD_M_PASS, skb->len);
	return kd_to_stack(skb);
}

/* kd_dnat_deliver ends every external flow whose backend is on this node:
 * DNAT p (which arrived for od) to addr:port, give it source port sport (see
 * kd_ct_create), count it, record the rewrite for the datagram's later
 * fragments and deliver it. */
static __always_inline int kd_dnat_deliver(struct __sk_buff *skb, struct kd_pkt *p, __be32 addr, __u16 port,
					   __u16 sport, __be32 od, __u64 now)
{
	int rc = kd_dnat(skb, p, addr, port);

	if (rc < 0 || (rc = kd_set_port(skb, p, 1, sport)) < 0)
		return kd_drop(skb, -rc);
	kd_count(KD_M_DNAT, skb->len);
	rc = kd_frag_record(p, p->saddr, od, KD_FRAG_ROUTE, 0, now);
	if (rc < 0)
		return kd_drop(skb, -rc);
	return kd_deliver_dnat(skb, p);
}

/* kd_forwarded_flow is step 3 of the remote NodePort walk, on the backend's
 * node: a packet for an external frontend came through the overlay from the
 * ingress node `peer`; DNAT it to one of this node's own backends and
 * remember peer for the reply. Returns KD_GO_ON if the frontend is unknown. */
static __always_inline int kd_forwarded_flow(struct __sk_buff *skb, struct kd_config *cfg, struct kd_pkt *p,
					     __be32 peer, __u64 now, __u8 prog)
{
	struct kd_ct_key k;
	struct kd_ct_val *f;
	struct kd_svc_val *svc;
	struct kd_backend_val be;
	__be32 od = p->daddr;
	__u16 flags, sport;
	int rc;

	kd_ct_key_fwd(&k, p);
	f = kd_ct_get(&k, p, now);
	if (f && (f->flags & KD_CT_NODEPORT_FWD))
		return kd_dnat_deliver(skb, p, f->nat_addr, f->nat_port, kd_ct_sport(f, p), od, now);
	/* Forwarded traffic is trusted to be for a node address of the
	 * ingress node, so the NodePort wildcard applies to any address. */
	svc = kd_svc_lookup(p, KD_SCOPE_EXTERNAL, 1);
	if (!svc)
		return KD_GO_ON;
	if ((rc = kd_pick(svc, KD_BE_TABLE_LOCAL, p->saddr, now, &be)) < 0)
		return kd_no_backend(skb, cfg, p, svc, prog, -rc);
	if (!peer)
		peer = p->daddr;
	flags = KD_CT_NODEPORT_FWD;
	if (kd_svc_dsr(svc, cfg))
		flags |= KD_CT_DSR;
	if (be.flags & KD_BE_HOSTNET)
		flags |= KD_CT_HOSTNET;
	if ((rc = kd_ct_create(p, now, be.addr, be.port, p->saddr, peer, svc->svc_id, flags, &sport)) < 0)
		return kd_drop(skb, -rc);
	kd_event(cfg, p, prog, KD_M_DNAT, 0, be.addr, be.port, peer, svc->svc_id);
	return kd_dnat_deliver(skb, p, be.addr, be.port, sport, od, now);
}

/* kd_reply_out sends a reverse-NATed reply of an external flow towards the
 * client: back through the tunnel to the ingress node, or (dsr, or the
 * ingress node itself) out of a NIC. */
static __always_inline int kd_reply_out(struct __sk_buff *skb, struct kd_config *cfg, struct kd_pkt *p,
					struct kd_ct_val *v)
{
	if ((v->flags & KD_CT_NODEPORT_FWD) && !(v->flags & KD_CT_DSR))
		return kd_encap(skb, cfg, v->tunnel_peer);
	/* dsr: the client's segments come through the tunnel, so the MSS the
	 * backend advertises must fit it. */
	if (v->flags & KD_CT_NODEPORT_FWD)
		kd_clamp_syn(skb, cfg);
	return kd_fib_out(skb, p);
}
