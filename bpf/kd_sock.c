//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* cgroup socket hooks. The agent attaches them at the node's cgroup root, so
 * they run for every socket on the node: host-network clients and pods alike
 * (a pod's connect() to a ClusterIP is translated here, before from_container
 * sees a packet). connect4 and sendmsg4 translate the destination once per
 * connection / datagram (no per-packet NAT); recvmsg4 and getpeername4 show
 * the frontend back to the application. */
#include "lib/lb.h"

char __license[] SEC("license") = "GPL";

#define KD_SOCK_STREAM 1
#define KD_SOCK_DGRAM 2
#define KD_ECONNREFUSED 111

/* kd_sock_nodeport_addr reports whether a NodePort on addr is this node's:
 * one of its addresses, or 127.0.0.0/8 from the node's own network namespace
 * (kube-proxy serves localhost NodePorts; a pod's loopback is its own). */
static __always_inline int kd_sock_nodeport_addr(struct bpf_sock_addr *ctx, __be32 addr)
{
	struct kd_config *cfg;

	if (kd_is_node_addr(addr))
		return 1;
	if ((bpf_ntohl(addr) >> 24) != 127)
		return 0;
	cfg = kd_cfg();
	return cfg && cfg->host_netns && bpf_get_netns_cookie(ctx) == cfg->host_netns;
}

/* kd_sock_pick chooses a backend of svc from table into sv (backend, slot,
 * table). ClientIP affinity is per network namespace. Returns -1 if the
 * table is empty. */
static __always_inline int kd_sock_pick(struct bpf_sock_addr *ctx, struct kd_svc_val *svc, __u8 table, __u64 now,
					struct kd_sock_val *sv)
{
	struct kd_sock_aff_key ak = { .svc_id = svc->svc_id };
	struct kd_backend_key bk = { .svc_id = svc->svc_id, .table = table };
	struct kd_affinity_val *a, na = {};
	struct kd_backend_val *be;
	__u16 n = table == KD_BE_TABLE_LOCAL ? svc->local_count : svc->count;

	if (n == 0)
		return -1;
	if (svc->flags & KD_SVC_AFFINITY) {
		ak.netns = bpf_get_netns_cookie(ctx);
		a = bpf_map_lookup_elem(&kd_sock_affinity, &ak);
		if (a && now - a->last_used < (__u64)svc->affinity_timeout * KD_NS && a->table == table &&
		    kd_affinity_valid(svc, a)) {
			a->last_used = now;
			sv->backend_addr = a->backend.addr;
			sv->backend_port = a->backend.port;
			sv->slot = a->slot;
			sv->table = table;
			return 0;
		}
	}
	bk.slot = bpf_get_prandom_u32() % n;
	be = bpf_map_lookup_elem(&kd_backends, &bk);
	if (!be)
		return -1;
	sv->backend_addr = be->addr;
	sv->backend_port = be->port;
	sv->slot = bk.slot;
	sv->table = table;
	if (svc->flags & KD_SVC_AFFINITY) {
		na.last_used = now;
		na.backend = *be;
		na.slot = bk.slot;
		na.table = table;
		bpf_map_update_elem(&kd_sock_affinity, &ak, &na, BPF_ANY);
	}
	return 0;
}

/* kd_sock_refuse fails the connect() / sendmsg() with ECONNREFUSED, what
 * kube-proxy's REJECT gives (a plain 0 would be EPERM). */
static __always_inline int kd_sock_refuse(void)
{
	bpf_set_retval(-KD_ECONNREFUSED);
	return 0;
}

/* kd_sock_xlate rewrites ctx's destination if it is a service frontend.
 * Returns 1 to continue, 0 (ECONNREFUSED) when the service has no endpoint
 * to use: a frontend is never sent out untranslated. */
static __always_inline int kd_sock_xlate(struct bpf_sock_addr *ctx)
{
	struct kd_pkt p = {};
	struct kd_svc_val *svc;
	struct kd_sock_key fk = {}, rk = {};
	struct kd_sock_val sv = {}, *cur, *rev;
	__u64 now = bpf_ktime_get_ns();
	__u8 table;

	if (ctx->type == KD_SOCK_STREAM)
		p.proto = IPPROTO_TCP;
	else if (ctx->type == KD_SOCK_DGRAM)
		p.proto = IPPROTO_UDP;
	else
		return 1;
	p.daddr = ctx->user_ip4;
	p.dport = bpf_ntohs((__u16)ctx->user_port);
	svc = kd_svc_lookup(&p, KD_SCOPE_CLUSTER, 0);
	if (svc) {
		table = (svc->flags & KD_SVC_ITP_LOCAL) ? KD_BE_TABLE_LOCAL : KD_BE_TABLE_ALL;
	} else {
		/* externalIPs / LoadBalancer IPs, and NodePorts on this node's
		 * addresses (and localhost from the node). The client is inside the cluster: every endpoint,
		 * whatever externalTrafficPolicy says (as kube-proxy). */
		svc = kd_svc_lookup(&p, KD_SCOPE_EXTERNAL, kd_sock_nodeport_addr(ctx, p.daddr));
		if (!svc)
			return 1;
		table = KD_BE_TABLE_ALL;
	}
	fk.cookie = bpf_get_socket_cookie(ctx);
	fk.addr = p.daddr;
	fk.port = p.dport;
	fk.dir = KD_SOCK_FWD;
	/* UDP: every datagram of a socket to this frontend goes to the same
	 * backend while it stays an endpoint (what a conntrack entry gives). */
	cur = p.proto == IPPROTO_UDP ? bpf_map_lookup_elem(&kd_sock_nat, &fk) : NULL;
	if (cur && cur->table == table && kd_slot_holds(svc, table, cur->slot, cur->backend_addr, cur->backend_port)) {
		sv = *cur;
	} else {
		if (kd_sock_pick(ctx, svc, table, now, &sv) < 0) {
			kd_count(KD_M_REJECT, 0);
			kd_count(svc->count ? KD_DROP_NO_LOCAL_BACKEND : KD_DROP_NO_BACKEND, 0);
			return kd_sock_refuse();
		}
		sv.frontend_addr = p.daddr;
		sv.frontend_port = p.dport;
		if (p.proto == IPPROTO_UDP)
			bpf_map_update_elem(&kd_sock_nat, &fk, &sv, BPF_ANY);
	}
	/* One reverse entry per backend: answers from every backend this
	 * socket used show the frontend. */
	rk.cookie = fk.cookie;
	rk.addr = sv.backend_addr;
	rk.port = sv.backend_port;
	rk.dir = KD_SOCK_REV;
	rev = bpf_map_lookup_elem(&kd_sock_nat, &rk);
	if (!rev || rev->frontend_addr != sv.frontend_addr || rev->frontend_port != sv.frontend_port)
		bpf_map_update_elem(&kd_sock_nat, &rk, &sv, BPF_ANY);
	ctx->user_ip4 = sv.backend_addr;
	ctx->user_port = bpf_htons(sv.backend_port);
	kd_count(KD_M_DNAT, 0);
	return 1;
}

/* kd_sock_rev shows the frontend instead of the backend to the application. */
static __always_inline void kd_sock_rev(struct bpf_sock_addr *ctx)
{
	struct kd_sock_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = ctx->user_ip4,
		.port = bpf_ntohs((__u16)ctx->user_port),
		.dir = KD_SOCK_REV,
	};
	struct kd_sock_val *sv = bpf_map_lookup_elem(&kd_sock_nat, &rk);

	if (!sv)
		return;
	ctx->user_ip4 = sv->frontend_addr;
	ctx->user_port = bpf_htons(sv->frontend_port);
}

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	return kd_sock_xlate(ctx);
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return kd_sock_xlate(ctx);
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	kd_sock_rev(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	kd_sock_rev(ctx);
	return 1;
}
