/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * otf_arming.h - take part in OTF (on-the-fly) arming from any BPF program.
 *
 * A BPF program that changes state on which the arming of probes depends
 * (in otf: a condition's value) tells user space in two ways:
 *
 *  1. it sets a `need_refresh` flag (a __u64 in .bss, read by user space
 *     through the mmapped map, swapped back to 0 when it refreshes); user
 *     space polls it on a background timer (--otf-interval);
 *  2. if the flag went 0 -> 1 and the program runs in a *safe* context (not
 *     NMI, not on the notification path itself), it also sends one small
 *     record on a BPF ring buffer with adaptive wakeup (flags 0, never
 *     BPF_RB_FORCE_WAKEUP, which costs a self-IPI per record), so that user
 *     space wakes at once from epoll.
 *
 * Usage in your own program:
 *
 *     #include "otf_arming.h"
 *     OTF_ARMING_DEFINE();              // need_refresh flag + ring buffer
 *     ...
 *     otf_request_refresh(&otf_need_refresh, &otf_notify, my_id, safe);
 *
 * The otf runtime's generated handlers (crates/otf-codegen) do the same on
 * their own flag and ring buffer; the record below is the one they send
 * (crates/otf-codegen/src/layout.rs, `RecHdr`; a test in otf-bpf checks that
 * the numbers here agree).
 */
#ifndef OTF_ARMING_H
#define OTF_ARMING_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Record kind of a notification (otf's REC_NOTIFY). */
#define OTF_REC_NOTIFY 4

/* A ring buffer record header, 48 bytes (otf's RecHdr). */
struct otf_rec_hdr {
	__u32 kind; /* OTF_REC_NOTIFY */
	__u32 pidx; /* who asked */
	__u32 code;
	__u32 aux;
	__u32 cpu;
	__u32 pid;
	__u32 tid;
	__u32 pad;
	char comm[16];
};

/* Defines the flag and a small ring buffer for notifications. */
#define OTF_ARMING_DEFINE()                                      \
	__u64 otf_need_refresh SEC(".bss");                      \
	struct {                                                 \
		__uint(type, BPF_MAP_TYPE_RINGBUF);              \
		__uint(max_entries, 4096);                       \
	} otf_notify SEC(".maps")

/*
 * Set *need_refresh; if it went 0 -> 1 and `safe`, send an OTF_REC_NOTIFY
 * record carrying `pidx` on `ringbuf`. Returns 1 if a notification was sent,
 * 0 if the flag was already set or the context is unsafe, -1 if the ring
 * buffer was full (the background timer still sees the flag).
 */
static __always_inline int otf_request_refresh(__u64 *need_refresh, void *ringbuf,
					       __u32 pidx, int safe)
{
	struct otf_rec_hdr rec = {};

	if (__sync_val_compare_and_swap(need_refresh, 0, 1) != 0)
		return 0;
	if (!safe)
		return 0;
	rec.kind = OTF_REC_NOTIFY;
	rec.pidx = pidx;
	if (bpf_ringbuf_output(ringbuf, &rec, sizeof(rec), 0))
		return -1;
	return 1;
}

#endif /* OTF_ARMING_H */
