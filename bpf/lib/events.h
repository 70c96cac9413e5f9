/* Sampled flow events into the kd_events ring buffer. */
#pragma once
#include "parse.h"

static __always_inline void kd_event(struct kd_config *cfg, struct kd_pkt *p, __u8 prog, __u8 verdict,
				     __u8 reason, __be32 nat_addr, __u16 nat_port, __be32 peer, __u32 svc_id)
{
	struct kd_event *e;

	if (!cfg->event_sample)
		return;
	if (cfg->event_sample > 1 && bpf_get_prandom_u32() % cfg->event_sample)
		return;
	e = bpf_ringbuf_reserve(&kd_events, sizeof(*e), 0);
	if (!e)
		return;
	e->ts = bpf_ktime_get_ns();
	e->saddr = p->saddr;
	e->daddr = p->daddr;
	e->sport = p->sport;
	e->dport = p->dport;
	e->proto = p->proto;
	e->nat_addr = nat_addr;
	e->nat_port = nat_port;
	e->tunnel_peer = peer;
	e->svc_id = svc_id;
	e->verdict = verdict;
	e->reason = reason;
	e->prog = prog;
	e->pad = 0;
	bpf_ringbuf_submit(e, 0);
}

/* kd_trace records where a packet was sent (KD_DEBUG_TRACE only): verdict,
 * tunnel peer for encapsulation, target ifindex in svc_id. */
static __always_inline void kd_trace(struct kd_config *cfg, __u8 verdict, __be32 peer, __u32 ifindex)
{
	struct kd_event *e;

	if (!(cfg->debug & KD_DEBUG_TRACE))
		return;
	e = bpf_ringbuf_reserve(&kd_events, sizeof(*e), 0);
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->verdict = verdict;
	e->tunnel_peer = peer;
	e->svc_id = ifindex;
	bpf_ringbuf_submit(e, 0);
}
