// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * otf_runtime.bpf.c - the otf runtime in the kernel.
 *
 * One handler program per attach type; every attachment carries its pidx in
 * the attach cookie (OTF_COOKIE_ENTRY marks the entry program of a return
 * probe). A hit: count it, claim a per-CPU nesting level, take the body's
 * lock stripes, run the body in the bytecode VM (otf_vm.h), re-evaluate the
 * conditions it can affect, flag/notify a needed refresh, release.
 * See docs/runtime.md.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "otf_insn.h"
#include "otf_runtime.h"
#include "otf_arming.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* ---- state shared with user space (.bss, mmapped by the skeleton) ---- */

/* The lock word: bit s set while a body holding stripe s runs. Own cache line. */
__u64 lock_word __attribute__((aligned(64)));
/* Set when a cached condition bit changed; swapped to 0 by user space. */
__u64 need_refresh __attribute__((aligned(64)));
/* Set by exit(). */
__u64 exit_requested;
/* Set by user space when the session stops (timeout, signal, -c command ended). */
__u64 stopping;
/* Added to bpf_ktime_get_boot_ns() for gettimeofday_ns() (CLOCK_REALTIME - CLOCK_BOOTTIME). */
__s64 time_offset;
/* target() */
__s64 target_pid;
/* Global statistics. */
struct otf_stats stats __attribute__((aligned(64)));
/* The script's globals. */
__s64 globals[OTF_MAX_GLOBALS] __attribute__((aligned(64)));
/* Cached condition values, per cond id. */
__u8 cond_enabled[OTF_MAX_CONDS];
/* Code offset of each condition program, per cond id. */
__u32 cond_code[OTF_MAX_CONDS];
/* Concatenated re-evaluation lists (cond ids), see struct otf_probe. */
__u32 reeval[OTF_MAX_REEVAL];
/* Probe slots, per pidx. */
struct otf_probe probes[OTF_MAX_PROBES];
/* Counters, per pidx. */
struct otf_counters counters[OTF_MAX_PROBES] __attribute__((aligned(64)));
/* All code: bodies, conditions, entry programs. */
struct otf_insn code[OTF_MAX_CODE];

/* ---- maps ---- */

/* Output, exit, error and notification records. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, OTF_RINGBUF_SIZE);
} events SEC(".maps");

struct otf_frame;
/* Per-CPU machine state, one per nesting level. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OTF_MAX_NEST);
	__type(key, __u32);
	__type(value, struct otf_frame);
} frames SEC(".maps");

/* Per-CPU nesting state. */
struct otf_nest {
	__u64 busy; /* bit l: nesting level l is in use on this CPU */
	__u64 held; /* lock stripes held by hits running on this CPU */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct otf_nest);
} nest SEC(".maps");

/* @entry values saved at function entry, per (tid, pidx). LRU: no growth
 * when functions never return. */
struct otf_entry_key {
	__u32 tid;
	__u32 pidx;
};

struct otf_entry_val {
	__s64 slots[OTF_MAX_ENTRY_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, OTF_ENTRY_MAP_SIZE);
	__type(key, struct otf_entry_key);
	__type(value, struct otf_entry_val);
} entry_vals SEC(".maps");

#include "otf_vm.h"

/* ---- lock ---- */

struct otf_lock_ctx {
	__u64 mask;
	__u64 got;
};

static __always_inline int otf_try_lock_once(__u64 mask)
{
	__u64 old = *(volatile __u64 *)&lock_word;

	if (old & mask)
		return 0;
	return __sync_val_compare_and_swap(&lock_word, old, old | mask) == old;
}

static long otf_lock_spin(__u64 i, void *c)
{
	struct otf_lock_ctx *lc = c;

	if (otf_try_lock_once(lc->mask)) {
		lc->got = 1;
		return 1;
	}
	return 0;
}

/* Bounded try-lock of the stripes in `mask` (SystemTap's MAXTRYLOCK). */
static __always_inline int otf_lock(struct otf_nest *n, __u64 mask)
{
	struct otf_lock_ctx lc = {};

	if (!mask)
		return 1;
	/* A hit interrupted on this CPU holds one of our stripes: it cannot
	 * release it before we return, so waiting is useless. */
	if (*(volatile __u64 *)&n->held & mask)
		return 0;
	if (!otf_try_lock_once(mask)) {
		__sync_fetch_and_add(&stats.lock_contended, 1);
		lc.mask = mask;
		bpf_loop(OTF_MAXTRYLOCK, otf_lock_spin, &lc, 0);
		if (!lc.got)
			return 0;
	}
	__sync_fetch_and_or(&n->held, mask);
	return 1;
}

static __always_inline void otf_unlock(struct otf_nest *n, __u64 mask)
{
	if (!mask)
		return;
	__sync_fetch_and_and(&n->held, ~mask);
	__sync_fetch_and_and(&lock_word, ~mask);
}

/* ---- the hit ---- */

static __always_inline void otf_report_error(struct otf_frame *f, __u32 pidx)
{
	__sync_fetch_and_add(&stats.errors[f->err & (OTF_ERR_KINDS - 1)], 1);
	__sync_fetch_and_add(&counters[pidx & (OTF_MAX_PROBES - 1)].errors, 1);
	otf_fill_hdr(&f->out.hdr, OTF_REC_ERROR, pidx, f->err, f->errpc);
	otf_emit(f, 0);
}

/*
 * Re-evaluate the condition reeval[idx] after a body of `pidx` ran; on a
 * change, store the bit and request a refresh (notify if `safe`). A global
 * function: verified once, so the loop calling it stays cheap to verify.
 */
__noinline int otf_reeval(__u32 level, __u32 pidx, __u32 idx, __u32 safe)
{
	struct otf_frame *f = bpf_map_lookup_elem(&frames, &level);
	__u32 cid;
	__u8 now;
	int st;

	if (!f || idx >= OTF_MAX_REEVAL || pidx >= OTF_MAX_PROBES)
		return 0;
	cid = reeval[idx & (OTF_MAX_REEVAL - 1)];
	if (cid >= OTF_MAX_CONDS)
		return 0;
	st = otf_vm_run(level, cond_code[cid & (OTF_MAX_CONDS - 1)], 0);
	if (st == OTF_ST_ERROR) {
		otf_report_error(f, pidx);
		return 0;
	}
	now = st == OTF_ST_RET && f->result != 0;
	if (cond_enabled[cid & (OTF_MAX_CONDS - 1)] == now)
		return 0;
	cond_enabled[cid & (OTF_MAX_CONDS - 1)] = now;
	st = otf_request_refresh(&need_refresh, &events, pidx, safe);
	if (st > 0)
		__sync_fetch_and_add(&stats.notifications, 1);
	else if (st < 0)
		__sync_fetch_and_add(&stats.ringbuf_dropped, 1);
	return 0;
}

/*
 * Everything after the nesting level is claimed and the frame's args/retval
 * are filled. A global function: verified once per program.
 */
__noinline int otf_hit(__u32 level, __u64 cookie)
{
	__u32 pidx = (__u32)cookie;
	__u32 zero = 0, flags, off, len, k;
	struct otf_probe *p;
	struct otf_counters *cnt;
	struct otf_frame *f;
	struct otf_nest *n;
	__u64 mask;
	int st;

	if (pidx >= OTF_MAX_PROBES) {
		__sync_fetch_and_add(&stats.bad_cookie, 1);
		return 0;
	}
	p = &probes[pidx & (OTF_MAX_PROBES - 1)];
	flags = p->flags;
	if (!(flags & OTF_PROBE_VALID)) {
		__sync_fetch_and_add(&stats.bad_cookie, 1);
		return 0;
	}
	/* As SystemTap's STOPPING state: once exit() was called or the session is
	 * stopping, no body runs any more (end bodies see the final globals). */
	if (exit_requested || stopping)
		return 0;
	cnt = &counters[pidx & (OTF_MAX_PROBES - 1)];
	f = bpf_map_lookup_elem(&frames, &level);
	n = bpf_map_lookup_elem(&nest, &zero);
	if (!f || !n)
		return 0;
	f->pidx = pidx;

	if (cookie & OTF_COOKIE_ENTRY) {
		struct otf_entry_key key = {};
		__u32 start = p->entry;

		if (start == OTF_NO_CODE)
			return 0;
		__sync_fetch_and_add(&cnt->entry_runs, 1);
		__builtin_memset(f->entry, 0, sizeof(f->entry));
		st = otf_vm_run(level, start, 1);
		if (st == OTF_ST_ERROR) {
			otf_report_error(f, pidx);
			return 0;
		}
		key.tid = (__u32)bpf_get_current_pid_tgid();
		key.pidx = pidx;
		bpf_map_update_elem(&entry_vals, &key, f->entry, BPF_ANY);
		return 0;
	}

	__sync_fetch_and_add(&cnt->hits, 1);
	if (p->body == OTF_NO_CODE)
		return 0;

	if (flags & OTF_PROBE_HAS_ENTRY) {
		struct otf_entry_key key = {};
		struct otf_entry_val *ev;

		key.tid = (__u32)bpf_get_current_pid_tgid();
		key.pidx = pidx;
		ev = bpf_map_lookup_elem(&entry_vals, &key);
		if (ev) {
			__builtin_memcpy(f->entry, ev->slots, sizeof(f->entry));
			bpf_map_delete_elem(&entry_vals, &key);
		} else {
			__builtin_memset(f->entry, 0, sizeof(f->entry));
		}
	}

	mask = p->lock_mask;
	if (!otf_lock(n, mask)) {
		__sync_fetch_and_add(&cnt->skipped_lock, 1);
		return 0;
	}

	st = otf_vm_run(level, p->body, 1);
	if (st == OTF_ST_SKIP) {
		__sync_fetch_and_add(&cnt->skipped_cond, 1);
		otf_unlock(n, mask);
		return 0;
	}
	if (st == OTF_ST_ERROR) {
		otf_report_error(f, pidx);
	} else {
		__sync_fetch_and_add(&cnt->bodies, 1);
	}

	/* Re-evaluate the conditions this body can affect. */
	off = p->reeval_off;
	len = p->reeval_len;
	for (k = 0; k < OTF_MAX_REEVAL_PER_PROBE; k++) {
		if (k >= len)
			break;
		otf_reeval(level, pidx, off + k, flags & OTF_PROBE_SAFE);
	}

	otf_unlock(n, mask);
	return 0;
}

/* ---- handlers ---- */

#define OTF_REGS_NONE 0
#define OTF_REGS_ARGS 1
#define OTF_REGS_RET 2

static __always_inline int otf_enter(void *ctx, __u64 cookie, int regs)
{
	__u32 zero = 0, level, k;
	struct otf_nest *n = bpf_map_lookup_elem(&nest, &zero);
	struct otf_frame *f;
	__u64 bit = 0;

	if (!n)
		return 0;
	for (level = 0; level < OTF_MAX_NEST; level++) {
		bit = 1ull << level;
		if (!(__sync_fetch_and_or(&n->busy, bit) & bit))
			break;
	}
	if (level >= OTF_MAX_NEST) {
		__u32 pidx = (__u32)cookie;

		if (pidx < OTF_MAX_PROBES)
			__sync_fetch_and_add(&counters[pidx & (OTF_MAX_PROBES - 1)].skipped_nest, 1);
		return 0;
	}
	f = bpf_map_lookup_elem(&frames, &level);
	if (f) {
		if (regs != OTF_REGS_NONE) {
			struct pt_regs *r = ctx;

			f->args[0] = PT_REGS_PARM1(r);
			f->args[1] = PT_REGS_PARM2(r);
			f->args[2] = PT_REGS_PARM3(r);
			f->args[3] = PT_REGS_PARM4(r);
			f->args[4] = PT_REGS_PARM5(r);
			f->args[5] = PT_REGS_PARM6(r);
			f->retval = regs == OTF_REGS_RET ? PT_REGS_RC(r) : 0;
		} else {
			__builtin_memset(f->args, 0, sizeof(f->args));
			f->retval = 0;
		}
		/* Run this pidx, then the pidx chained to it (several probes
		 * sharing one attachment, e.g. one perf tracepoint). */
		for (k = 0; k < OTF_MAX_CHAIN; k++) {
			__u32 pidx = (__u32)cookie, next;

			otf_hit(level, cookie);
			if (pidx >= OTF_MAX_PROBES)
				break;
			if (!(probes[pidx & (OTF_MAX_PROBES - 1)].flags & OTF_PROBE_VALID))
				break;
			next = probes[pidx & (OTF_MAX_PROBES - 1)].chain;
			if (next == OTF_NO_CODE || next == pidx)
				break;
			cookie = (cookie & ~0xffffffffull) | next;
		}
	}
	__sync_fetch_and_and(&n->busy, ~bit);
	return 0;
}

SEC("perf_event")
int otf_perf_event(void *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_NONE);
}

SEC("tracepoint")
int otf_tracepoint(void *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_NONE);
}

SEC("raw_tp")
int otf_raw_tp(void *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_NONE);
}

SEC("uprobe")
int otf_uprobe(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_ARGS);
}

SEC("uretprobe")
int otf_uretprobe(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_RET);
}

SEC("uprobe.multi")
int otf_uprobe_multi(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_ARGS);
}

SEC("uretprobe.multi")
int otf_uretprobe_multi(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_RET);
}

SEC("kprobe")
int otf_kprobe(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_ARGS);
}

SEC("kretprobe")
int otf_kretprobe(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_RET);
}

SEC("kprobe.multi")
int otf_kprobe_multi(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_ARGS);
}

SEC("kretprobe.multi")
int otf_kretprobe_multi(struct pt_regs *ctx)
{
	return otf_enter(ctx, bpf_get_attach_cookie(ctx), OTF_REGS_RET);
}

/*
 * Test entry: BPF_PROG_TEST_RUN with ctx = { u64 cookie } runs one hit of
 * that cookie's pidx, exactly as a real attachment would (no args).
 */
SEC("raw_tp")
int otf_test_entry(struct bpf_raw_tracepoint_args *ctx)
{
	return otf_enter(ctx, ctx->args[0], OTF_REGS_NONE);
}
