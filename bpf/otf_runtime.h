/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * otf_runtime.h - layout of the otf BPF runtime shared with user space
 * (crates/otf-bpf/src/layout.rs mirrors every number and struct here; the
 * test crates/otf-bpf/tests/header.rs checks that they agree).
 */
#ifndef OTF_RUNTIME_H
#define OTF_RUNTIME_H

#include "otf_insn.h"

/* Capacity of the runtime object. */
#define OTF_MAX_PROBES 4096         /* pidx < OTF_MAX_PROBES */
#define OTF_MAX_CONDS 4096          /* cond id < OTF_MAX_CONDS */
#define OTF_MAX_REEVAL 16384        /* total length of all re-evaluation lists */
#define OTF_MAX_REEVAL_PER_PROBE 64 /* conditions re-evaluated after one body */
#define OTF_MAX_NEST 4              /* nested hits on one CPU (task, irq, nmi, ...) */
#define OTF_MAX_CHAIN 64            /* pidx run by one attachment (struct otf_probe.chain) */
#define OTF_MAXTRYLOCK 65536        /* lock word polls before a hit is skipped */
#define OTF_ENTRY_MAP_SIZE 16384    /* (tid, pidx) @entry records kept (LRU) */
#define OTF_RINGBUF_SIZE (1 << 22)  /* ring buffer bytes */

/* No code: a probe slot without a body or entry program. */
#define OTF_NO_CODE 0xffffffffu

/* Probe slot flags. */
#define OTF_PROBE_VALID 1u     /* the slot is configured */
#define OTF_PROBE_SAFE 2u      /* safe context: may send a notification */
#define OTF_PROBE_RETURN 4u    /* return probe: retval; loads @entry slots */
#define OTF_PROBE_HAS_ENTRY 8u /* has an entry program (load saved slots at return) */

/*
 * Attach cookie: bits 0..31 the pidx, bit 32 set for the entry program of a
 * return probe (run at function entry, saves @entry slots).
 */
#define OTF_COOKIE_ENTRY (1ull << 32)

/* One probe slot per pidx (one kernel attachment). 32 bytes. */
struct otf_probe {
	__u32 body;       /* code offset of the body (ends with Next) or OTF_NO_CODE */
	__u32 entry;      /* code offset of the entry program or OTF_NO_CODE */
	__u32 flags;      /* OTF_PROBE_* */
	__u32 reeval_off; /* first index into reeval[] */
	__u32 reeval_len; /* number of cond ids re-evaluated after the body */
	__u32 chain;      /* next pidx sharing this attachment, or OTF_NO_CODE */
	__u64 lock_mask;  /* lock stripes taken around the body */
};

/* Per-pidx counters, one cache line each, updated with atomic adds. */
struct otf_counters {
	__u64 hits;         /* handler invocations for this pidx (not entry runs) */
	__u64 bodies;       /* bodies run to their end (Next/Ret) */
	__u64 skipped_cond; /* ended by Skip (own condition false) */
	__u64 skipped_lock; /* lock not taken within OTF_MAXTRYLOCK */
	__u64 skipped_nest; /* more than OTF_MAX_NEST nested hits on one CPU */
	__u64 errors;       /* run-time errors in the body or its conditions */
	__u64 entry_runs;   /* entry programs run (return probes with @entry) */
	__u64 pad;
};

/* Run-time error kinds (Error records, stats.errors[]). */
enum otf_err {
	OTF_ERR_NONE = 0,
	OTF_ERR_DIV_ZERO = 1,      /* "division by zero" */
	OTF_ERR_MAXACTION = 2,     /* "MAXACTION exceeded" */
	OTF_ERR_RANDINT = 3,       /* "invalid randint range" */
	OTF_ERR_BAD_CODE = 4,      /* invalid opcode, operand, jump or stack depth */
	OTF_ERR_KINDS = 8,
};

/* Global statistics. */
struct otf_stats {
	__u64 errors[OTF_ERR_KINDS]; /* by enum otf_err */
	__u64 ringbuf_dropped;       /* records lost: ring buffer full */
	__u64 bad_cookie;            /* hits with an unconfigured pidx */
	__u64 notifications;         /* notification records sent */
	__u64 lock_contended;        /* lock acquisitions that had to wait */
	__u64 pad[4];
};

/* Record kinds on the ring buffer. */
enum otf_rec_kind {
	OTF_REC_OUT = 1,    /* output record: fmt, nargs, args */
	OTF_REC_EXIT = 2,   /* exit() was called */
	OTF_REC_ERROR = 3,  /* run-time error: code = enum otf_err, aux = pc */
	OTF_REC_NOTIFY = 4, /* need_refresh went 0 -> 1 in a safe context */
};

/* Record header, 48 bytes; an OTF_REC_OUT record is followed by aux i64 args. */
struct otf_rec_hdr {
	__u32 kind; /* enum otf_rec_kind */
	__u32 pidx; /* the probe hit that produced it */
	__u32 code; /* OUT: format id; ERROR: enum otf_err */
	__u32 aux;  /* OUT: number of args; ERROR: pc (absolute code offset) */
	__u32 cpu;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 pad;
	char comm[16];
};

#endif /* OTF_RUNTIME_H */
