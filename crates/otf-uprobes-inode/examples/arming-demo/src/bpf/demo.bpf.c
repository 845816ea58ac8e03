// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * demo.bpf.c - the example tool's own BPF program.
 *
 * Two probes, told apart by the attach cookie (= pidx):
 *   pidx 0  fn_toggle  always armed; flips `tracing` and asks user space to refresh
 *   pidx 1  fn_hot     armed only while `tracing` != 0 (its condition); counts calls
 *
 * The condition is also checked in the body, so the meaning never depends on how fast user
 * space arms or disarms: arming is only an optimisation (otf's docs/architecture.md, "The model,
 * in the code", 1).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "otf_arming.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

OTF_ARMING_DEFINE();

__u64 tracing;   /* the condition of pidx 1 */
__u64 hot_hits;  /* calls of fn_hot counted while tracing */
__u64 toggles;   /* calls of fn_toggle */

static __always_inline int hit(void *ctx)
{
	__u64 pidx = bpf_get_attach_cookie(ctx);

	if (pidx == 0) {
		__sync_fetch_and_add(&toggles, 1);
		tracing = !tracing;
		/* uprobes run in process context: safe to notify at once. */
		otf_request_refresh(&otf_need_refresh, &otf_notify, 0, 1);
	} else if (pidx == 1 && tracing) {
		__sync_fetch_and_add(&hot_hits, 1);
	}
	return 0;
}

SEC("uprobe")
int demo_uprobe(void *ctx) { return hit(ctx); }

SEC("uretprobe")
int demo_uretprobe(void *ctx) { return hit(ctx); }

SEC("uprobe.multi")
int demo_uprobe_multi(void *ctx) { return hit(ctx); }

SEC("uretprobe.multi")
int demo_uretprobe_multi(void *ctx) { return hit(ctx); }
