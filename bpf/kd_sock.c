//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* cgroup socket hooks for host-network clients of ClusterIPs: connect4 and
 * sendmsg4 translate the destination once per connection / datagram (no
 * per-packet NAT); recvmsg4 and getpeername4 show the ClusterIP back to the
 * application. */
#include "lib/lb.h"

char __license[] SEC("license") = "GPL";

#define KD_SOCK_STREAM 1
#define KD_SOCK_DGRAM 2

/* kd_sock_xlate rewrites ctx's destination if it is a ClusterIP. Returns 0
 * to refuse (no endpoints and the service rejects), 1 to continue. */
static __always_inline int kd_sock_xlate(struct bpf_sock_addr *ctx)
{
	struct kd_pkt p = {};
	struct kd_svc_val *svc;
	struct kd_backend_val be;
	struct kd_sock_key sk;
	struct kd_sock_val sv = {};
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
	p.saddr = 0;
	svc = kd_svc_lookup(&p, KD_SCOPE_CLUSTER, 0);
	if (svc) {
		table = (svc->flags & KD_SVC_ITP_LOCAL) ? KD_BE_TABLE_LOCAL : KD_BE_TABLE_ALL;
	} else {
		/* externalIPs / LoadBalancer IPs, and NodePorts on this node's
		 * addresses, from the host itself. */
		svc = kd_svc_lookup(&p, KD_SCOPE_EXTERNAL, kd_is_node_addr(p.daddr));
		if (!svc)
			return 1;
		table = (svc->flags & KD_SVC_ETP_LOCAL) ? KD_BE_TABLE_LOCAL : KD_BE_TABLE_ALL;
	}
	if (kd_pick(svc, table, 0, now, &be) < 0) {
		kd_count(KD_M_DROP, 0);
		kd_count(svc->count ? KD_DROP_NO_LOCAL_BACKEND : KD_DROP_NO_BACKEND, 0);
		return (svc->flags & KD_SVC_REJECT) ? 0 : 1;
	}
	sk.cookie = bpf_get_socket_cookie(ctx);
	sv.frontend_addr = p.daddr;
	sv.frontend_port = p.dport;
	sv.backend_addr = be.addr;
	sv.backend_port = be.port;
	bpf_map_update_elem(&kd_sock_revnat, &sk, &sv, BPF_ANY);
	ctx->user_ip4 = be.addr;
	ctx->user_port = bpf_htons(be.port);
	kd_count(KD_M_DNAT, 0);
	return 1;
}

/* kd_sock_rev shows the frontend instead of the backend to the application. */
static __always_inline void kd_sock_rev(struct bpf_sock_addr *ctx)
{
	struct kd_sock_key sk = { .cookie = bpf_get_socket_cookie(ctx) };
	struct kd_sock_val *sv = bpf_map_lookup_elem(&kd_sock_revnat, &sk);

	if (!sv)
		return;
	if (ctx->user_ip4 != sv->backend_addr || bpf_ntohs((__u16)ctx->user_port) != sv->backend_port)
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
