/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * otf_vm.h - the bounded bytecode interpreter of the otf runtime.
 *
 * Included by otf_runtime.bpf.c after the maps and .bss variables it uses
 * (code[], globals[], frames, events, stats, time_offset, target_pid,
 * exit_requested) are declared.
 *
 * One program run (a body, a condition or an entry program) is one
 * bpf_loop(); each iteration executes OTF_BATCH instructions, and the frame
 * counts steps so that the (OTF_MAX_STEPS + 1)th instruction fails with
 * MAXACTION exactly as in the reference VM. All machine state lives in a per-CPU frame
 * (struct otf_frame, selected by the nesting level), not on the 512-byte
 * BPF stack.
 */
#ifndef OTF_VM_H
#define OTF_VM_H

/* Program run status (struct otf_frame.status). */
#define OTF_ST_RUN 0
#define OTF_ST_NEXT 1  /* Next: normal end */
#define OTF_ST_RET 2   /* Ret: result in frame.result */
#define OTF_ST_SKIP 3  /* Skip: own condition false */
#define OTF_ST_ERROR 4 /* run-time error: frame.err, frame.errpc */

/* A staged ring-buffer record: header and up to 32 arguments. */
struct otf_out {
	struct otf_rec_hdr hdr;
	__s64 args[32];
};

/* Per-CPU, per-nesting-level machine state. */
struct otf_frame {
	__s64 stack[OTF_MAX_STACK];
	__s64 locals[OTF_MAX_LOCALS];
	__s64 entry[OTF_MAX_ENTRY_SLOTS];
	__s64 args[6];  /* function arguments 1..6 of the hit (0 if none) */
	__s64 retval;   /* return value of the hit (return probes) */
	__s64 result;   /* value of Ret */
	__u32 pc;
	__u32 sp;
	__u32 status;   /* OTF_ST_* */
	__u32 err;      /* enum otf_err */
	__u32 errpc;
	__u32 pidx;
	__u32 steps;    /* instructions executed in this run */
	__u32 pad;
	struct otf_out out;
};

struct otf_loop_ctx {
	struct otf_frame *f;
};

/* Minimal CO-RE view of the kernel's task_struct (relocated at load time). */
struct task_struct {
	struct task_struct *real_parent;
	int tgid;
} __attribute__((preserve_access_index));

static __always_inline void otf_fill_hdr(struct otf_rec_hdr *h, __u32 kind, __u32 pidx,
					 __u32 code, __u32 aux)
{
	__u64 pt = bpf_get_current_pid_tgid();

	h->kind = kind;
	h->pidx = pidx;
	h->code = code;
	h->aux = aux;
	h->cpu = bpf_get_smp_processor_id();
	h->pid = pt >> 32;
	h->tid = (__u32)pt;
	h->pad = 0;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Send f->out (header + nargs arguments) on the ring buffer, adaptive wakeup. */
static __always_inline void otf_emit(struct otf_frame *f, __u32 nargs)
{
	__u64 size = sizeof(struct otf_rec_hdr) + (__u64)(nargs & 31) * 8;

	if (bpf_ringbuf_output(&events, &f->out, size, 0))
		__sync_fetch_and_add(&stats.ringbuf_dropped, 1);
}

static __always_inline __s64 otf_sdiv(__s64 a, __s64 b)
{
	/* b != 0. Unsigned division on the magnitudes (no sdiv before BPF v4);
	 * i64::MIN / -1 wraps to i64::MIN. */
	__u64 ua = a < 0 ? -(__u64)a : (__u64)a;
	__u64 ub = b < 0 ? -(__u64)b : (__u64)b;
	__u64 q = ua / ub;

	return ((a < 0) != (b < 0)) ? (__s64)(-q) : (__s64)q;
}

static __always_inline __s64 otf_smod(__s64 a, __s64 b)
{
	/* b != 0; the result has the sign of a; i64::MIN % -1 == 0. */
	__u64 ua = a < 0 ? -(__u64)a : (__u64)a;
	__u64 ub = b < 0 ? -(__u64)b : (__u64)b;
	__u64 r = ua % ub;

	return a < 0 ? (__s64)(-r) : (__s64)r;
}

static __always_inline __s64 otf_ctx_value(struct otf_frame *f, __s32 id, __s64 imm)
{
	__s64 v;

	switch (id) {
	case OTF_CTX_PID:
		return bpf_get_current_pid_tgid() >> 32;
	case OTF_CTX_TID:
		return (__u32)bpf_get_current_pid_tgid();
	case OTF_CTX_PPID: {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();

		return BPF_CORE_READ(t, real_parent, tgid);
	}
	case OTF_CTX_UID:
		return (__u32)bpf_get_current_uid_gid();
	case OTF_CTX_CPU:
		return bpf_get_smp_processor_id();
	case OTF_CTX_TIMENS:
		return (__s64)bpf_ktime_get_boot_ns() + time_offset;
	case OTF_CTX_TARGET:
		return target_pid;
	case OTF_CTX_RETVAL:
		return f->retval;
	case OTF_CTX_INTARG:
	case OTF_CTX_LONGARG: {
		__u64 k = (__u64)imm - 1;

		if (k >= 6)
			return 0;
		v = f->args[k];
		return id == OTF_CTX_INTARG ? (__s64)(__s32)v : v;
	}
	}
	return 0;
}

#define OTF_ST(i) f->stack[(i) & (OTF_MAX_STACK - 1)]

/* Execute one instruction. Returns 1 to stop the loop. */
static __always_inline long otf_exec1(struct otf_frame *f)
{
	struct otf_insn *in;
	__u32 pc, sp, npc;
	__s32 arg;
	__s64 imm, a, b, v;

	pc = f->pc;
	if (f->steps >= OTF_MAX_STEPS) {
		f->status = OTF_ST_ERROR;
		f->err = OTF_ERR_MAXACTION;
		f->errpc = pc;
		return 1;
	}
	if (pc >= OTF_MAX_CODE)
		goto bad;
	in = &code[pc & (OTF_MAX_CODE - 1)];
	arg = in->arg;
	imm = in->imm;
	sp = f->sp;
	if (sp > OTF_MAX_STACK)
		goto bad;
	npc = pc + 1;
	f->steps++;

	switch (in->op) {
	case OTF_OP_NOP:
		break;
	case OTF_OP_PUSH:
		if (sp >= OTF_MAX_STACK)
			goto bad;
		OTF_ST(sp) = imm;
		sp++;
		break;
	case OTF_OP_LDG:
		if (sp >= OTF_MAX_STACK || arg < 0 || arg >= OTF_MAX_GLOBALS)
			goto bad;
		OTF_ST(sp) = *(volatile __s64 *)&globals[arg & (OTF_MAX_GLOBALS - 1)];
		sp++;
		break;
	case OTF_OP_STG:
		if (sp < 1 || arg < 0 || arg >= OTF_MAX_GLOBALS)
			goto bad;
		sp--;
		*(volatile __s64 *)&globals[arg & (OTF_MAX_GLOBALS - 1)] = OTF_ST(sp);
		break;
	case OTF_OP_LDL:
		if (sp >= OTF_MAX_STACK || arg < 0 || arg >= OTF_MAX_LOCALS)
			goto bad;
		OTF_ST(sp) = f->locals[arg & (OTF_MAX_LOCALS - 1)];
		sp++;
		break;
	case OTF_OP_STL:
		if (sp < 1 || arg < 0 || arg >= OTF_MAX_LOCALS)
			goto bad;
		sp--;
		f->locals[arg & (OTF_MAX_LOCALS - 1)] = OTF_ST(sp);
		break;
	case OTF_OP_DUP:
		if (sp < 1 || sp >= OTF_MAX_STACK)
			goto bad;
		OTF_ST(sp) = OTF_ST(sp - 1);
		sp++;
		break;
	case OTF_OP_POP:
		if (sp < 1)
			goto bad;
		sp--;
		break;
	case OTF_OP_ADD ... OTF_OP_NE:
		if (sp < 2)
			goto bad;
		b = OTF_ST(sp - 1);
		a = OTF_ST(sp - 2);
		switch (in->op) {
		case OTF_OP_ADD: v = (__s64)((__u64)a + (__u64)b); break;
		case OTF_OP_SUB: v = (__s64)((__u64)a - (__u64)b); break;
		case OTF_OP_MUL: v = (__s64)((__u64)a * (__u64)b); break;
		case OTF_OP_DIV:
		case OTF_OP_MOD:
			if (b == 0) {
				f->status = OTF_ST_ERROR;
				f->err = OTF_ERR_DIV_ZERO;
				f->errpc = pc;
				return 1;
			}
			v = in->op == OTF_OP_DIV ? otf_sdiv(a, b) : otf_smod(a, b);
			break;
		case OTF_OP_SHL: v = (__s64)((__u64)a << (b & 63)); break;
		case OTF_OP_SHR: v = a >> (b & 63); break;
		case OTF_OP_AND: v = a & b; break;
		case OTF_OP_OR: v = a | b; break;
		case OTF_OP_XOR: v = a ^ b; break;
		case OTF_OP_LT: v = a < b; break;
		case OTF_OP_LE: v = a <= b; break;
		case OTF_OP_GT: v = a > b; break;
		case OTF_OP_GE: v = a >= b; break;
		case OTF_OP_EQ: v = a == b; break;
		default: v = a != b; break;
		}
		sp--;
		OTF_ST(sp - 1) = v;
		break;
	case OTF_OP_NEG:
		if (sp < 1)
			goto bad;
		OTF_ST(sp - 1) = (__s64)(-(__u64)OTF_ST(sp - 1));
		break;
	case OTF_OP_LNOT:
		if (sp < 1)
			goto bad;
		OTF_ST(sp - 1) = OTF_ST(sp - 1) == 0;
		break;
	case OTF_OP_BNOT:
		if (sp < 1)
			goto bad;
		OTF_ST(sp - 1) = ~OTF_ST(sp - 1);
		break;
	case OTF_OP_JMP:
		npc = pc + 1 + arg;
		break;
	case OTF_OP_JZ:
	case OTF_OP_JNZ:
		if (sp < 1)
			goto bad;
		sp--;
		v = OTF_ST(sp);
		if ((in->op == OTF_OP_JZ) == (v == 0))
			npc = pc + 1 + arg;
		break;
	case OTF_OP_NEXT:
		f->status = OTF_ST_NEXT;
		f->sp = sp;
		return 1;
	case OTF_OP_RET:
		if (sp < 1)
			goto bad;
		f->result = OTF_ST(sp - 1);
		f->sp = sp - 1;
		f->status = OTF_ST_RET;
		return 1;
	case OTF_OP_SKIP:
		f->status = OTF_ST_SKIP;
		f->sp = sp;
		return 1;
	case OTF_OP_CTX:
		if (sp >= OTF_MAX_STACK || arg < OTF_CTX_PID || arg > OTF_CTX_LONGARG)
			goto bad;
		OTF_ST(sp) = otf_ctx_value(f, arg, imm);
		sp++;
		break;
	case OTF_OP_RANDINT: {
		__u64 r;

		if (sp < 1)
			goto bad;
		v = OTF_ST(sp - 1);
		if (v <= 0) {
			f->status = OTF_ST_ERROR;
			f->err = OTF_ERR_RANDINT;
			f->errpc = pc;
			return 1;
		}
		r = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
		OTF_ST(sp - 1) = (__s64)(r % (__u64)v);
		break;
	}
	case OTF_OP_OUT: {
		__u32 n, base, k;

		if (imm < 0 || imm > OTF_MAX_OUT_ARGS || imm > sp)
			goto bad;
		n = (__u32)imm;
		base = sp - n;
		for (k = 0; k < OTF_MAX_OUT_ARGS; k++) {
			if (k >= n)
				break;
			f->out.args[k] = OTF_ST(base + k);
		}
		sp = base;
		otf_fill_hdr(&f->out.hdr, OTF_REC_OUT, f->pidx, (__u32)arg, n);
		otf_emit(f, n);
		break;
	}
	case OTF_OP_EXIT:
		exit_requested = 1;
		otf_fill_hdr(&f->out.hdr, OTF_REC_EXIT, f->pidx, 0, 0);
		otf_emit(f, 0);
		break;
	case OTF_OP_ENTRYSAVE:
		if (sp < 1 || arg < 0 || arg >= OTF_MAX_ENTRY_SLOTS)
			goto bad;
		sp--;
		f->entry[arg & (OTF_MAX_ENTRY_SLOTS - 1)] = OTF_ST(sp);
		break;
	case OTF_OP_ENTRYLOAD:
		if (sp >= OTF_MAX_STACK || arg < 0 || arg >= OTF_MAX_ENTRY_SLOTS)
			goto bad;
		OTF_ST(sp) = f->entry[arg & (OTF_MAX_ENTRY_SLOTS - 1)];
		sp++;
		break;
	default:
		goto bad;
	}
	f->pc = npc;
	f->sp = sp;
	return 0;
bad:
	f->status = OTF_ST_ERROR;
	f->err = OTF_ERR_BAD_CODE;
	f->errpc = pc;
	return 1;
}

/*
 * Instructions executed per bpf_loop iteration. More amortises the callback
 * but costs verification time, and 2 gave no measurable gain: see
 * docs/runtime.md.
 */
#define OTF_BATCH 1

static long otf_step(__u64 i, void *c)
{
	struct otf_loop_ctx *lc = c;
	struct otf_frame *f = lc->f;
	int j;

	if (!f)
		return 1;
	for (j = 0; j < OTF_BATCH; j++) {
		if (otf_exec1(f))
			return 1;
	}
	return 0;
}

/*
 * Run the program starting at code offset `start` in the frame of nesting
 * level `level`. Locals are zeroed when `zero_locals`. Returns OTF_ST_*.
 * A global (not static) function: the verifier checks it once per program.
 */
__noinline int otf_vm_run(__u32 level, __u32 start, __u32 zero_locals)
{
	struct otf_frame *f = bpf_map_lookup_elem(&frames, &level);
	struct otf_loop_ctx lc = {};

	if (!f)
		return OTF_ST_ERROR;
	f->pc = start;
	f->sp = 0;
	f->status = OTF_ST_RUN;
	f->err = 0;
	f->errpc = 0;
	f->result = 0;
	f->steps = 0;
	if (zero_locals)
		__builtin_memset(f->locals, 0, sizeof(f->locals));
	lc.f = f;
	bpf_loop(OTF_MAX_STEPS / OTF_BATCH + 2, otf_step, &lc, 0);
	if (f->status == OTF_ST_RUN) {
		/* Unreachable: the last iteration always stops the loop. */
		f->status = OTF_ST_ERROR;
		f->err = OTF_ERR_MAXACTION;
		f->errpc = f->pc;
	}
	return f->status;
}

#endif /* OTF_VM_H */
