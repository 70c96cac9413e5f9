/* Flow events into the kd_events ring buffer: new flows sampled 1 in N,
 * every drop and reject. */
#pragma once
#include "parse.h"

/* kd_event_rate is the 1-in-N rate in force: a monitor session's override
 * until its deadline (so the default returns even if the session dies
 * without cleaning up), else the agent's default. 0: no events. */
static __always_inline __u32 kd_event_rate(const struct kd_config *cfg)
{
	if (cfg->override_until && bpf_ktime_get_ns() < cfg->override_until)
		return cfg->sample_override;
	return cfg->event_sample;
}

/* kd_event_reserve takes room for one event; a full ring buffer counts the
 * event as lost, so losses are never silent. */
static __always_inline struct kd_event *kd_event_reserve(void)
{
	struct kd_event *e = bpf_ringbuf_reserve(&kd_events, sizeof(*e), 0);

	if (!e)
		kd_count(KD_M_EVENT_LOST, 0);
	return e;
}

/* Waking the reader on every event (the default of bpf_ringbuf_submit)
 * costs microseconds per event; the reader polls instead (flows.Read) and
 * is woken only once this much waits, so a burst cannot fill the ring
 * between two polls. */
#define KD_EVENTS_WAKEUP_BYTES (256 * 1024)

static __always_inline void kd_event_submit(struct kd_event *e)
{
	__u64 flags = BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_query(&kd_events, BPF_RB_AVAIL_DATA) >= KD_EVENTS_WAKEUP_BYTES)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

/* kd_event reports a flow: new flows (verdict DNAT, ENCAP) are sampled,
 * drops and rejects are reported whenever events are on, being rare and
 * what a user looks for. */
static __always_inline void kd_event(struct kd_config *cfg, struct kd_pkt *p, __u8 prog, __u8 verdict,
				     __u8 reason, __be32 nat_addr, __u16 nat_port, __be32 peer, __u32 svc_id)
{
	struct kd_event *e;
	__u32 rate = kd_event_rate(cfg);

	if (!rate)
		return;
	if (verdict != KD_M_DROP && verdict != KD_M_REJECT && rate > 1 && bpf_get_prandom_u32() % rate)
		return;
	e = kd_event_reserve();
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
	kd_event_submit(e);
}

/* kd_drop_event reports a drop with the packet's addresses as they are at
 * the drop (read from the skb: most drop sites have no parsed packet, or one
 * already rewritten). A subprogram, not inlined: every drop site calls it. */
static __noinline int kd_drop_event(struct __sk_buff *skb, __u32 reason, __u32 svc_id)
{
	struct kd_config *cfg = kd_cfg();
	struct kd_event *e;
	struct iphdr ip;
	__u16 ports[2] = {};

	if (!cfg || !kd_event_rate(cfg))
		return 0;
	e = kd_event_reserve();
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->verdict = KD_M_DROP;
	e->reason = reason;
	e->svc_id = svc_id;
	if (skb->protocol == bpf_htons(ETH_P_IP) && !bpf_skb_load_bytes(skb, KD_L3_OFF, &ip, sizeof(ip))) {
		e->saddr = ip.saddr;
		e->daddr = ip.daddr;
		e->proto = ip.protocol;
		if ((ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) &&
		    !(ip.frag_off & bpf_htons(KD_IP_OFFMASK)) &&
		    !bpf_skb_load_bytes(skb, KD_L3_OFF + ip.ihl * 4, ports, sizeof(ports))) {
			e->sport = bpf_ntohs(ports[0]);
			e->dport = bpf_ntohs(ports[1]);
		}
	}
	kd_event_submit(e);
	return 0;
}

/* kd_dropped counts a drop and reports it. */
static __always_inline void kd_dropped(struct __sk_buff *skb, __u32 reason, __u32 svc_id)
{
	kd_count(KD_M_DROP, skb->len);
	kd_count(reason, skb->len);
	kd_drop_event(skb, reason, svc_id);
}

/* kd_trace records where a packet was sent (KD_DEBUG_TRACE only): verdict,
 * tunnel peer for encapsulation, target ifindex in svc_id. */
static __always_inline void kd_trace(struct kd_config *cfg, __u8 verdict, __be32 peer, __u32 ifindex)
{
	struct kd_event *e;

	if (!(cfg->debug & KD_DEBUG_TRACE))
		return;
	e = kd_event_reserve();
	if (!e)
		return;
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->verdict = verdict;
	e->tunnel_peer = peer;
	e->svc_id = ifindex;
	kd_event_submit(e);
}
