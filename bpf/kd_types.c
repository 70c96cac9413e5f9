//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/* Not a program: the BTF of this object carries every enum of lib/common.h
 * and struct kd_event (ring buffer records have no map value type, so the
 * programs' BTF lacks it), so dataplane/maps' tests compare the Go constants
 * and layouts with C. A new enum of common.h belongs in kd_btf_anchor too. */
#include "lib/common.h"

struct kd_btf_anchor {
	enum kd_scope scope;
	enum kd_svc_flags svc_flags;
	enum kd_be_flags be_flags;
	enum kd_be_table be_table;
	enum kd_ct_dir ct_dir;
	enum kd_ct_flags ct_flags;
	enum kd_tcp_state tcp_state;
	enum kd_timeout timeout;
	enum kd_mode mode;
	enum kd_metric_index metric;
	enum kd_debug debug;
	enum kd_prog prog;
	enum kd_sock_dir sock_dir;
	enum kd_frag_action frag_action;
	struct kd_event event;
} kd_btf_anchor SEC(".data");

char __license[] SEC("license") = "GPL";
