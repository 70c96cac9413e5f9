/* Shared definitions for every kubedirect BPF program: includes, constants,
 * the C structs that dataplane/maps mirrors field by field. Keep both in sync:
 * the tests in dataplane/maps compare every struct layout and every enum value
 * through BTF (kd_types.c puts all of them in BTF). Constants are enums, not
 * #defines, so they reach BTF at all. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* linux/icmp.h pulls in libc headers; the two fields we need. */
struct kd_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 unused;
};
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* KD_GO_ON: a helper that returns a tc verdict left the packet to its caller
 * (tc verdicts are >= 0; failures are -KD_DROP_* reasons). */
enum { KD_GO_ON = -1 };

/* Service scope: ClusterIP frontends are only matched for traffic from pods
 * and host-network sockets; external frontends (NodePort, externalIPs,
 * LoadBalancer ingress) are matched on the node NIC and the overlay. */
enum kd_scope {
	KD_SCOPE_CLUSTER = 0,
	KD_SCOPE_EXTERNAL = 1,
};

/* Service flags (kd_svc_val.flags). */
enum kd_svc_flags {
	KD_SVC_ETP_LOCAL = 1 << 0,	/* externalTrafficPolicy: Local */
	KD_SVC_ITP_LOCAL = 1 << 1,	/* internalTrafficPolicy: Local */
	KD_SVC_AFFINITY = 1 << 2,	/* sessionAffinity: ClientIP */
	KD_SVC_DSR = 1 << 3,		/* external mode dsr */
	KD_SVC_TUNNEL = 1 << 4,		/* external mode tunnel (neither: config default) */
	KD_SVC_REJECT = 1 << 5,		/* no endpoints: TCP RST / ICMP port unreachable */
};

/* Backend flags (kd_backend_val.flags). */
enum kd_be_flags {
	KD_BE_LOCAL = 1 << 0,		/* runs on this node */
	KD_BE_REMOTE = 1 << 1,		/* runs on node_ip */
	KD_BE_HOSTNET = 1 << 2,		/* backend address is a node address */
};

/* Backend slot tables (kd_backend_key.table). */
enum kd_be_table {
	KD_BE_TABLE_ALL = 0,		/* slots 0..count-1: every backend */
	KD_BE_TABLE_LOCAL = 1,		/* slots 0..local_count-1: this node's backends */
};

/* Conntrack entry direction (kd_ct_key.dir). */
enum kd_ct_dir {
	KD_CT_FWD = 0,		/* original tuple: client -> frontend */
	KD_CT_REPLY = 1,	/* reply tuple: backend -> client (after NAT) */
};

/* Conntrack flags (kd_ct_val.flags). */
enum kd_ct_flags {
	KD_CT_CLUSTER = 1 << 0,		/* ClusterIP, DNAT done here */
	KD_CT_NODEPORT_LOCAL = 1 << 1,	/* external frontend, backend on this node */
	KD_CT_NODEPORT_REMOTE = 1 << 2,	/* external frontend, forwarded to tunnel_peer */
	KD_CT_NODEPORT_FWD = 1 << 3,	/* arrived through the overlay from ingress node tunnel_peer */
	KD_CT_DSR = 1 << 4,		/* reply leaves through this node's NIC */
	KD_CT_HAIRPIN = 1 << 5,		/* client and backend are the same pod: source SNATed */
	KD_CT_HOSTNET = 1 << 6,		/* backend is a host-network endpoint */
	KD_CT_NEW = 1 << 7,		/* not confirmed yet: the entry is in kd_ct_new */
};

/* TCP state bits (kd_ct_val.tcp_state). Both entries of a flow carry the
 * FIN bits of both sides (each FIN is copied to the other entry). */
enum kd_tcp_state {
	KD_TCP_SYN = 1 << 0,
	KD_TCP_ESTABLISHED = 1 << 1,
	KD_TCP_CLOSING = 1 << 2,	/* both sides sent FIN, or RST: short lifetime */
	KD_TCP_FIN_CLIENT = 1 << 3,	/* the client sent FIN (half-closed) */
	KD_TCP_FIN_BACKEND = 1 << 4,	/* the backend sent FIN (half-closed) */
	KD_TCP_SEEN_REPLY = 1 << 5,	/* a forward-only entry saw the backend's side */
};

/* Conntrack and fragment lifetimes in seconds. */
enum kd_timeout {
	KD_CT_SYN_TIMEOUT = 60,
	KD_CT_TCP_TIMEOUT = 21600,
	KD_CT_CLOSE_TIMEOUT = 10,
	KD_CT_FIN_WAIT_TIMEOUT = 60,	/* forward-only entry after the client's FIN */
	KD_CT_UDP_TIMEOUT = 120,
	KD_FRAG_TIMEOUT = 30,		/* kd_frags entries: the kernel's reassembly timeout */
};

/* Config modes (kd_config.mode). */
enum kd_mode {
	KD_MODE_TUNNEL = 0,
	KD_MODE_DSR = 1,
};

/* Metrics indexes: verdicts first, then drop reasons. */
enum kd_metric_index {
	KD_M_PASS = 0,		/* handed to the stack untouched */
	KD_M_DNAT,		/* service translation done */
	KD_M_REVNAT,		/* reply translated back */
	KD_M_LOCAL,		/* redirected to a local pod */
	KD_M_ENCAP,		/* sent into the overlay */
	KD_M_FIB_OUT,		/* sent out of a NIC after a FIB lookup */
	KD_M_REJECT,		/* no endpoints: RST / ICMP sent */
	KD_M_DROP,		/* dropped (reason counted too) */
	KD_M_VERDICT_MAX,
	/* Conntrack bookkeeping (counts in packets, bytes unused): entries the
	 * datapath added to and removed from each table. With the agent's own
	 * removals and the entries present they give the LRU evictions, which
	 * BPF cannot see happen. */
	KD_M_CT_NEW_ADDED = 9,
	KD_M_CT_NEW_REMOVED,
	KD_M_CT_ADDED,
	KD_M_CT_REMOVED,
	KD_M_EVENT_LOST = 15,	/* a flow event the full kd_events ring buffer could not take */
	KD_DROP_MALFORMED = 16,	/* truncated or invalid headers */
	KD_DROP_NO_BACKEND,	/* service has no endpoints */
	KD_DROP_NO_LOCAL_BACKEND, /* eTP/iTP Local or forwarded, none here */
	KD_DROP_NO_TUNNEL,	/* remote backend's node unknown */
	KD_DROP_FIB,		/* no route for a reply */
	KD_DROP_REWRITE,	/* a helper failed to rewrite the packet */
	KD_DROP_CT_FULL,	/* could not create a conntrack entry */
	KD_DROP_FRAGMENT,	/* first fragment of a translated datagram could not be tracked */
	KD_DROP_CT_COLLISION,	/* reply tuple held by a live flow of another frontend */
	KD_DROP_TOO_BIG,	/* DF packet too big for the tunnel: ICMP fragmentation needed sent */
	KD_M_MAX = 32,
};

struct kd_svc_key {
	__be32 addr;	/* frontend address; 0 = any node address (NodePort) */
	__u16 port;	/* host order */
	__u8 proto;	/* IPPROTO_TCP / IPPROTO_UDP */
	__u8 scope;	/* KD_SCOPE_* */
};

struct kd_svc_val {
	__u32 svc_id;		/* backend table id */
	__u16 count;		/* backends in KD_BE_TABLE_ALL */
	__u16 local_count;	/* backends in KD_BE_TABLE_LOCAL */
	__u32 flags;		/* KD_SVC_* */
	__u32 affinity_timeout;	/* seconds, with KD_SVC_AFFINITY */
};

struct kd_backend_key {
	__u32 svc_id;
	__u16 slot;
	__u8 table;	/* KD_BE_TABLE_* */
	__u8 pad;
};

struct kd_backend_val {
	__be32 addr;
	__be32 node_ip;	/* node running it; 0 when local */
	__u16 port;	/* host order */
	__u8 flags;	/* KD_BE_* */
	__u8 pad;
};

struct kd_ct_key {
	__be32 saddr;
	__be32 daddr;
	__u16 sport;	/* host order */
	__u16 dport;
	__u8 proto;
	__u8 dir;	/* KD_CT_* */
	__u16 pad;
};

struct kd_ct_val {
	__u64 expires;		/* CLOCK_MONOTONIC ns */
	__be32 nat_addr;	/* FWD: backend address; REPLY: frontend address (new source) */
	__be32 tunnel_peer;	/* node the flow is forwarded to / came from; 0 if none */
	__be32 client_addr;	/* REPLY of a hairpin flow: the real client (dst rewrite) */
	__u32 svc_id;
	__u16 nat_port;		/* host order */
	__u16 flags;		/* KD_CT_* */
	__u8 tcp_state;		/* KD_TCP_* */
	__u8 pad;
	__u16 client_port;	/* host order; 0: the client's port is kept. FWD: the source port the
				 * client's packets leave with; REPLY: the client's own port (dst
				 * rewrite). Set when the reply tuple was taken (kd_ct_create). */
};

struct kd_affinity_key {
	__u32 svc_id;
	__be32 client;
};

struct kd_affinity_val {
	__u64 last_used;	/* CLOCK_MONOTONIC ns */
	struct kd_backend_val backend;
	__u16 slot;		/* where backend was picked: kd_pick checks it is still there */
	__u8 table;		/* KD_BE_TABLE_* of slot */
	__u8 pad;
};

struct kd_tunnel_key {
	__u32 prefixlen;	/* LPM trie prefix length */
	__be32 addr;		/* pod CIDR of a remote node */
};

struct kd_tunnel_val {
	__be32 node_ip;		/* that node's underlay address */
	__u32 flags;
};

struct kd_endpoint_val {
	__u32 ifindex;		/* host side of the pod's veth */
	__u32 flags;
	__u8 mac[6];		/* pod's MAC (destination) */
	__u8 host_mac[6];	/* host veth MAC (source) */
};

struct kd_config {
	__be32 node_ip;		/* primary underlay address */
	__be32 pod_cidr;	/* this node's pod CIDR */
	__be32 pod_mask;	/* its netmask */
	__be32 hairpin_addr;	/* SNAT source for pod-to-own-service hairpin */
	__u32 vxlan_ifindex;	/* vxlan device in external mode */
	__u32 netdev_ifindex;	/* NIC used for DSR / forwarded replies when the FIB says so */
	__u32 event_sample;	/* default: 0 no events; N one event per N new flows, every drop and reject */
	__u16 vxlan_port;	/* 8472 */
	__u8 mode;		/* KD_MODE_*: default external mode */
	__u8 debug;		/* KD_DEBUG_* */
	__u64 host_netns;	/* cookie of the node's network namespace: its sockets get NodePorts on 127.0.0.0/8 */
	__u16 tunnel_mtu;	/* largest inner IPv4 packet the overlay carries unfragmented (NIC MTU - 50); 0: no check */
	__u16 pad;
	__u32 sample_override;	/* event_sample of a monitor session, until override_until */
	__u64 override_until;	/* CLOCK_MONOTONIC ns; past it event_sample applies again */
};

/* kd_config.debug: KD_DEBUG_TRACE emits an event for every redirect (tests,
 * troubleshooting; costly). */
enum kd_debug {
	KD_DEBUG_TRACE = 1 << 0,
};

struct kd_metric {
	__u64 packets;
	__u64 bytes;
};

struct kd_event {
	__u64 ts;
	__be32 saddr;
	__be32 daddr;
	__be32 nat_addr;
	__be32 tunnel_peer;
	__u32 svc_id;
	__u16 sport;
	__u16 dport;
	__u16 nat_port;
	__u8 proto;
	__u8 verdict;		/* KD_M_* */
	__u8 reason;		/* KD_DROP_* or 0 */
	__u8 prog;		/* KD_PROG_* */
	__u16 pad;
};

/* The program that emitted an event (kd_event.prog). */
enum kd_prog {
	KD_PROG_FROM_CONTAINER = 1,
	KD_PROG_TO_CONTAINER,
	KD_PROG_FROM_NETDEV,
	KD_PROG_TO_NETDEV,
	KD_PROG_FROM_OVERLAY,
	KD_PROG_TO_OVERLAY,
	KD_PROG_SOCK,
};

/* kd_sock_nat entry kinds (kd_sock_key.dir). */
enum kd_sock_dir {
	KD_SOCK_FWD = 0,	/* socket + frontend -> backend (UDP: one backend per socket) */
	KD_SOCK_REV = 1,	/* socket + backend -> frontend (recvmsg4, getpeername4) */
};

struct kd_sock_key {
	__u64 cookie;	/* socket cookie */
	__be32 addr;	/* FWD: frontend address; REV: backend address */
	__u16 port;	/* host order */
	__u8 dir;	/* KD_SOCK_* */
	__u8 pad;
};

struct kd_sock_val {
	__be32 frontend_addr;
	__be32 backend_addr;
	__u16 frontend_port;	/* host order */
	__u16 backend_port;
	__u16 slot;		/* FWD: the backend's slot in table, to check it is still there */
	__u8 table;		/* FWD: KD_BE_TABLE_* it was picked from */
	__u8 pad;
};

/* ClientIP affinity of the socket hooks: the client is a network namespace
 * (a pod, or the host), whose address is not known at connect(). */
struct kd_sock_aff_key {
	__u64 netns;	/* bpf_get_netns_cookie */
	__u32 svc_id;
	__u32 pad;
};

/* IPv4 fragments (kd_frags): only the first fragment of a datagram carries the
 * ports, so the first fragment of a translated datagram records its address
 * rewrite and its route under the addresses it arrived with and its IP id;
 * the later fragments get the same (as Cilium tracks fragments). */
struct kd_frag_key {
	__be32 saddr;	/* as the fragments arrive (before translation) */
	__be32 daddr;
	__u16 id;	/* IP identification, network order */
	__u8 proto;
	__u8 pad;
};

struct kd_frag_val {
	__u64 expires;		/* CLOCK_MONOTONIC ns */
	__be32 saddr;		/* after translation */
	__be32 daddr;
	__be32 peer;		/* KD_FRAG_ENCAP: tunnel destination */
	__u8 action;		/* KD_FRAG_* */
	__u8 pad[3];
};

/* What the later fragments of a datagram get (kd_frag_val.action). */
enum kd_frag_action {
	KD_FRAG_ROUTE = 0,	/* as the program routes an untranslated packet by destination */
	KD_FRAG_ENCAP = 1,	/* into the tunnel to peer */
	KD_FRAG_FIB = 2,	/* out of a NIC towards the client (kd_fib_out) */
};
