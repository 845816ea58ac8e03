//! One handler program per attach kind: the hit path around the lowered bodies.
//!
//! ```text
//! handler(ctx)                          main function
//!   cookie; exit()/stopping: return      (no body runs once the session stops)
//!   claim a nesting level on this CPU    (too deep: skipped_nest++)
//!   copy the arguments from pt_regs
//!   bpf_loop(MAX_CHAIN, hit, ...)        one iteration per pidx of the attachment
//!   release the level
//! hit(i, ctx)                           callback: one pidx
//!   pidx valid? hits++; dispatch on the pidx's body (a compare per distinct body)
//!   cached condition bit clear: skipped_cond++ (no lock taken)
//!   @entry values; zero the locals; take the lock stripes (bounded spin)
//!   body; bodies++ or the error record
//!   re-evaluate the conditions it can affect; notify; unlock
//!   next pidx of the chain, or stop
//! ```
//!
//! The nesting level and the stripes held on a CPU are updated with atomics: a uprobe
//! program may be preempted by another task's hit on the same CPU, so hits on one CPU need
//! not nest strictly.

use otf_script::bytecode::MAX_STEPS;

use crate::asm::{Builder, Func, FuncId};
use crate::cfg::Shape;
use crate::insn::{
    helper, Alu, Atomic, Cond, Insn, B, DW, R0, R1, R10, R2, R3, R4, R6, R7, R8, R9, W,
};
use crate::kind::{ProgKind, Regs, PT_REGS_ARGS, PT_REGS_RC};
use crate::layout::{
    off, ERR_KINDS, MAXTRYLOCK, MAX_CHAIN, MAX_NEST, MAX_PROBES, NO_CODE, PROBE_ARMED, PROBE_SAFE,
    PROBE_VALID, REC_DEFER, REC_ERROR, REC_NOTIFY,
};
use crate::lower::{emit_record, header, zero, Ends, Gen, SWORDS};
use crate::{Error, MapId, Variant};

/// `dst = &shared.<array>[pidx]` for an array of `1 << shift`-byte elements at `base`.
fn pidx_ptr(f: &mut Func, dst: crate::insn::Reg, base: i32, shift: i32) {
    f.emit(Insn::mov32(R1, R7));
    f.emit(Insn::alu64_imm(Alu::And, R1, MAX_PROBES as i32 - 1));
    f.emit(Insn::alu64_imm(Alu::Lsh, R1, shift));
    f.emit(Insn::mov(dst, R9));
    f.emit(Insn::alu64_reg(Alu::Add, dst, R1));
    f.emit(Insn::alu64_imm(Alu::Add, dst, base));
}

/// `counters[pidx].<field> += 1`.
fn count(f: &mut Func, field: i16) {
    pidx_ptr(f, R2, off::COUNTERS, 6);
    f.emit(Insn::mov_imm(R1, 1));
    f.emit(Insn::atomic64(Atomic::Add, R2, field, R1));
}

/// `shared.<field> += 1` (atomically).
fn stat(f: &mut Func, field: i16) {
    f.emit(Insn::mov_imm(R1, 1));
    f.emit(Insn::atomic64(Atomic::Add, R9, field, R1));
}

/// Count a run-time error (frame's err/errpc) and send its record. As SystemTap's probe
/// epilogue (MAXERRORS 0), the error also enters the STOPPING state when `stop_on_error` is
/// set, so no later hit on any CPU runs a body (user space then ends the session).
fn report_error(f: &mut Func) {
    f.emit(Insn::ldx(DW, R1, R9, off::STOP_ON_ERROR));
    f.emit(Insn::atomic64(Atomic::Or, R9, off::STOPPING, R1));
    f.emit(Insn::ldx(DW, R1, R8, off::F_ERR));
    f.emit(Insn::alu64_imm(Alu::And, R1, ERR_KINDS as i32 - 1));
    f.emit(Insn::alu64_imm(Alu::Lsh, R1, 3));
    f.emit(Insn::mov(R2, R9));
    f.emit(Insn::alu64_reg(Alu::Add, R2, R1));
    f.emit(Insn::mov_imm(R1, 1));
    f.emit(Insn::atomic64(Atomic::Add, R2, off::STATS_ERRORS, R1));
    count(f, off::C_ERRORS);
    header(f, REC_ERROR, None);
    emit_record(f, 48);
}

/// The lock spin callback: one poll of the lock word per iteration.
fn spin(b: &mut Builder) -> FuncId {
    let id = b.add();
    let f = b.f(id);
    f.emit(Insn::ldx(DW, R8, R2, 0));
    f.ld_map(R9, MapId::Shared, Some(0));
    f.emit(Insn::ldx(DW, R2, R8, off::F_LOCK_MASK));
    f.emit(Insn::ldx(DW, R1, R9, off::LOCK_WORD));
    let again = f.new_label();
    f.emit(Insn::mov(R3, R1));
    f.emit(Insn::alu64_reg(Alu::And, R3, R2));
    f.jmp_imm(Cond::Ne, R3, 0, again);
    f.emit(Insn::mov(R0, R1));
    f.emit(Insn::alu64_reg(Alu::Or, R2, R1));
    f.emit(Insn::atomic64(Atomic::Cmpxchg, R9, off::LOCK_WORD, R2));
    f.jmp_reg(Cond::Ne, R0, R1, again);
    f.emit(Insn::st(DW, R8, off::F_LOCK_GOT, 1));
    f.emit(Insn::mov_imm(R0, 1));
    f.emit(Insn::exit());
    f.bind(again);
    f.emit(Insn::mov_imm(R0, 0));
    f.emit(Insn::exit());
    id
}

/// Take the stripes `mask`; jump to `fail` if they cannot be had. `[r10 - 16]` holds the
/// per-CPU state.
fn lock(f: &mut Func, mask: u64, spin: FuncId, fail: crate::asm::Label) {
    f.emit(Insn::ldx(DW, R1, R10, -16));
    f.emit(Insn::ldx(DW, R1, R1, off::CPU_HELD));
    f.emit_all(&Insn::ld_imm64(R2, 0, mask));
    f.emit(Insn::alu64_reg(Alu::And, R1, R2));
    // A hit this one interrupted holds a stripe: it cannot go on before we end.
    f.jmp_imm(Cond::Ne, R1, 0, fail);
    let got = f.new_label();
    let slow = f.new_label();
    f.emit(Insn::ldx(DW, R1, R9, off::LOCK_WORD));
    f.emit(Insn::mov(R3, R1));
    f.emit(Insn::alu64_reg(Alu::And, R3, R2));
    f.jmp_imm(Cond::Ne, R3, 0, slow);
    f.emit(Insn::mov(R0, R1));
    f.emit(Insn::alu64_reg(Alu::Or, R2, R1));
    f.emit(Insn::atomic64(Atomic::Cmpxchg, R9, off::LOCK_WORD, R2));
    f.jmp_reg(Cond::Eq, R0, R1, got);
    f.bind(slow);
    stat(f, off::STATS_CONTENDED);
    f.emit_all(&Insn::ld_imm64(R2, 0, mask));
    f.emit(Insn::stx(DW, R8, off::F_LOCK_MASK, R2));
    f.emit(Insn::st(DW, R8, off::F_LOCK_GOT, 0));
    f.emit_all(&Insn::ld_imm64(R1, 0, MAXTRYLOCK as u64));
    f.ld_func(R2, spin);
    f.emit(Insn::mov(R3, R10));
    f.emit(Insn::alu64_imm(Alu::Add, R3, -8));
    f.emit(Insn::mov_imm(R4, 0));
    f.emit(Insn::call_helper(helper::LOOP));
    f.emit(Insn::ldx(DW, R1, R8, off::F_LOCK_GOT));
    f.jmp_imm(Cond::Eq, R1, 0, fail);
    f.bind(got);
    f.emit(Insn::ldx(DW, R1, R10, -16));
    f.emit_all(&Insn::ld_imm64(R3, 0, mask));
    f.emit(Insn::atomic64(Atomic::Or, R1, off::CPU_HELD, R3));
}

fn unlock(f: &mut Func, mask: u64) {
    f.emit(Insn::ldx(DW, R1, R10, -16));
    f.emit_all(&Insn::ld_imm64(R3, 0, !mask));
    f.emit(Insn::atomic64(Atomic::And, R1, off::CPU_HELD, R3));
    // The release must order the body's stores before it: x86's `lock and` does; arm64's
    // JIT emits `stclr` (no release) for a plain atomic and, `ldclral` for the fetching one.
    let release = if cfg!(target_arch = "aarch64") {
        Atomic::FetchAnd
    } else {
        Atomic::And
    };
    f.emit(Insn::atomic64(release, R9, off::LOCK_WORD, R3));
}

/// The `(tid, pidx)` key of the `@entry` map at `r10 - 24`.
fn entry_key(f: &mut Func) {
    f.emit(Insn::call_helper(helper::GET_CURRENT_PID_TGID));
    f.emit(Insn::stx(W, R10, -24, R0));
    f.emit(Insn::stx(W, R10, -20, R7));
}

/// After a condition program: store its value in the cached bit; on a change, request a
/// refresh and notify user space from a safe context.
fn update_cond(f: &mut Func, cid: u32, next: crate::asm::Label) {
    let coff = off::s16(off::COND + cid as usize);
    f.emit(Insn::ldx(DW, R1, R8, off::F_RESULT));
    f.emit(Insn::mov_imm(R2, 1));
    f.emit(Insn::jmp_imm(Cond::Ne, R1, 0, 1));
    f.emit(Insn::mov_imm(R2, 0));
    f.emit(Insn::ldx(B, R3, R9, coff));
    f.jmp_reg(Cond::Eq, R3, R2, next);
    f.emit(Insn::stx(B, R9, coff, R2));
    f.emit(Insn::mov_imm(R0, 0));
    f.emit(Insn::mov_imm(R1, 1));
    f.emit(Insn::atomic64(Atomic::Cmpxchg, R9, off::NEED_REFRESH, R1));
    f.jmp_imm(Cond::Ne, R0, 0, next);
    pidx_ptr(f, R2, off::PROBES, 4);
    f.emit(Insn::ldx(W, R3, R2, off::P_FLAGS));
    f.emit(Insn::alu64_imm(Alu::And, R3, PROBE_SAFE as i32));
    f.jmp_imm(Cond::Eq, R3, 0, next);
    zero(f, off::F_OUT, 6);
    f.emit(Insn::st(W, R8, off::s16(off::F_OUT), REC_NOTIFY as i32));
    f.emit(Insn::stx(W, R8, off::s16(off::F_OUT + 4), R7));
    f.ld_map(R1, MapId::Events, None);
    f.emit(Insn::mov(R2, R8));
    f.emit(Insn::alu64_imm(Alu::Add, R2, off::F_OUT as i32));
    f.emit(Insn::mov_imm(R3, 48));
    f.emit(Insn::mov_imm(R4, 0));
    f.emit(Insn::call_helper(helper::RINGBUF_OUTPUT));
    let sent = f.new_label();
    f.jmp_imm(Cond::Eq, R0, 0, sent);
    stat(f, off::STATS_DROPPED);
    f.ja(next);
    f.bind(sent);
    stat(f, off::STATS_NOTIFICATIONS);
}

/// The timer program's entry (`BPF_PROG_TYPE_SYSCALL`, run by user space with its context a
/// [`TimerCtl`](crate::layout::TimerCtl)): start or cancel the timer of one pidx. Returns the
/// helper's result (0, or a negative errno; -ENOENT for a pidx outside the map).
fn timer_control(f: &mut Func, fire: FuncId) {
    use crate::layout::{timer_off as t, TIMER_OP_START};
    let fail = f.new_label();
    let cancel = f.new_label();
    f.emit(Insn::mov(R6, R1));
    f.emit(Insn::ldx(W, R1, R6, t::CTL_PIDX));
    f.emit(Insn::stx(W, R10, -4, R1));
    f.ld_map(R1, MapId::Timers, None);
    f.emit(Insn::mov(R2, R10));
    f.emit(Insn::alu64_imm(Alu::Add, R2, -4));
    f.emit(Insn::call_helper(helper::MAP_LOOKUP_ELEM));
    f.jmp_imm(Cond::Eq, R0, 0, fail);
    f.emit(Insn::mov(R7, R0));
    f.emit(Insn::ldx(W, R1, R6, t::CTL_OP));
    f.jmp_imm(Cond::Ne, R1, TIMER_OP_START as i32, cancel);
    // -EBUSY once initialised: the timer and its callback stay as they are.
    f.emit(Insn::mov(R1, R7));
    f.ld_map(R2, MapId::Timers, None);
    f.emit(Insn::mov_imm(R3, 1)); // CLOCK_MONOTONIC
    f.emit(Insn::call_helper(helper::TIMER_INIT));
    f.emit(Insn::mov(R1, R7));
    f.ld_func(R2, fire);
    f.emit(Insn::call_helper(helper::TIMER_SET_CALLBACK));
    f.emit(Insn::ldx(DW, R8, R6, t::CTL_PERIOD));
    f.emit(Insn::stx(DW, R7, t::PERIOD, R8));
    f.emit(Insn::call_helper(helper::KTIME_GET_NS));
    f.emit(Insn::alu64_reg(Alu::Add, R0, R8));
    f.emit(Insn::stx(DW, R7, t::NEXT, R0));
    f.emit(Insn::mov(R1, R7));
    f.emit(Insn::mov(R2, R8));
    f.emit(Insn::mov_imm(R3, 0));
    f.emit(Insn::call_helper(helper::TIMER_START));
    f.emit(Insn::exit());
    f.bind(cancel);
    f.emit(Insn::mov(R1, R7));
    f.emit(Insn::call_helper(helper::TIMER_CANCEL));
    f.emit(Insn::exit());
    f.bind(fail);
    f.emit(Insn::mov_imm(R0, -2));
    f.emit(Insn::exit());
}

/// The start of the timer callback (`R6` = the [`TimerSlot`](crate::layout::TimerSlot), the
/// callback's third argument): `R7` = the pidx (its key), then re-arm for the next due time
/// still ahead, counting the due times passed over as lost. Re-arming from the due times, not
/// from now, keeps the firings from drifting by the callback's latency.
fn timer_rearm(f: &mut Func) {
    use crate::layout::timer_off as t;
    f.emit(Insn::mov(R6, R3));
    f.emit(Insn::ldx(W, R7, R2, 0));
    f.emit(Insn::call_helper(helper::KTIME_GET_NS));
    f.emit(Insn::ldx(DW, R1, R6, t::NEXT));
    f.emit(Insn::mov(R2, R0));
    f.emit(Insn::alu64_reg(Alu::Sub, R2, R1)); // late by
    f.emit(Insn::jmp_imm(Cond::Sge, R2, 0, 1));
    f.emit(Insn::mov_imm(R2, 0));
    f.emit(Insn::ldx(DW, R3, R6, t::PERIOD));
    f.emit(Insn::alu64_reg(Alu::Div, R2, R3)); // due times passed over
    f.emit(Insn::atomic64(Atomic::Add, R6, t::LOST, R2));
    f.emit(Insn::alu64_imm(Alu::Add, R2, 1));
    f.emit(Insn::alu64_reg(Alu::Mul, R2, R3));
    f.emit(Insn::alu64_reg(Alu::Add, R1, R2));
    f.emit(Insn::stx(DW, R6, t::NEXT, R1));
    f.emit(Insn::alu64_reg(Alu::Sub, R1, R0));
    f.emit(Insn::mov(R2, R1));
    f.emit(Insn::mov(R1, R6));
    f.emit(Insn::mov_imm(R3, 0));
    f.emit(Insn::call_helper(helper::TIMER_START));
    f.emit(Insn::mov_imm(R1, 1));
    f.emit(Insn::atomic64(Atomic::Add, R6, t::FIRED, R1));
}

/// Branch on the pidx's variant to a new label per variant that `has` code; the others go to
/// `none`. Returns the labels, by variant.
fn dispatch(
    f: &mut Func,
    variants: &[Variant],
    has: impl Fn(&Variant) -> bool,
    none: crate::asm::Label,
) -> Vec<crate::asm::Label> {
    let labels: Vec<_> = variants.iter().map(|_| f.new_label()).collect();
    pidx_ptr(f, R2, off::PROBES, 4);
    f.emit(Insn::ldx(W, R3, R2, off::P_BODY));
    for (k, v) in variants.iter().enumerate() {
        if has(v) {
            f.jmp_imm(Cond::Eq, R3, k as i32, labels[k]);
        }
    }
    f.ja(none);
    labels
}

/// Emit one program instance (body, condition or entry) into the hit function.
fn run_program(
    g: &mut Gen<'_>,
    hit: FuncId,
    shapes: &std::collections::HashMap<u32, Shape>,
    start: u32,
    ends: Ends,
) -> Result<(), Error> {
    let shape = shapes.get(&start).ok_or(Error::Internal("shape"))?;
    if let Some(m) = shape.max_local {
        zero(g.b.f(hit), off::F_LOCALS, m as usize + 1);
    }
    if let Some(m) = shape.max_slocal {
        zero(g.b.f(hit), off::F_SLOCALS, (m as usize + 1) * SWORDS);
    }
    g.program(hit, shape, ends)
}

/// The whole handler of `kind`.
pub(crate) fn handler(
    g: &mut Gen<'_>,
    kind: ProgKind,
    variants: &[Variant],
    shapes: &std::collections::HashMap<u32, Shape>,
    cond_code: &[u32],
) -> Result<(), Error> {
    let control = (kind == ProgKind::Timer).then(|| g.b.add());
    let main = g.b.add();
    let hit = g.b.add();
    let spin = spin(g.b);
    let uses_regs = shapes.values().any(|s| s.uses_regs);
    if let Some(control) = control {
        timer_control(g.b.f(control), main);
    }

    // ---- main ----
    {
        let f = g.b.f(main);
        let out = f.new_label();
        let nest_skip = f.new_label();
        f.emit(Insn::mov(R6, R1));
        if kind == ProgKind::TestEntry {
            f.emit(Insn::ldx(DW, R7, R6, 0));
        } else if kind == ProgKind::Timer {
            timer_rearm(f);
        } else if kind.syscall_tracepoint().is_some() {
            crate::syscall::prologue(f, kind, out)?;
        } else {
            f.emit(Insn::call_helper(helper::GET_ATTACH_COOKIE));
            f.emit(Insn::mov(R7, R0));
        }
        f.ld_map(R9, MapId::Shared, Some(0));
        f.emit(Insn::st(W, R10, -24, 0));
        f.ld_map(R1, MapId::Cpu, None);
        f.emit(Insn::mov(R2, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R2, -24));
        f.emit(Insn::call_helper(helper::MAP_LOOKUP_ELEM));
        f.jmp_imm(Cond::Eq, R0, 0, out);
        // Claim the lowest free nesting level with an atomic fetch-or: uprobe programs may
        // be preempted (they run with migration, not preemption, disabled), so hits on one
        // CPU need not nest. The level is computed, not branched on, so the verifier checks
        // the rest of the program once.
        f.emit(Insn::ldx(DW, R1, R0, off::CPU_BUSY));
        f.emit(Insn::alu64_imm(Alu::Xor, R1, -1));
        f.emit(Insn::alu64_imm(Alu::And, R1, (1 << MAX_NEST) - 1));
        f.emit(Insn::mov(R2, R1));
        f.emit(Insn::neg(R2));
        f.emit(Insn::alu64_reg(Alu::And, R1, R2)); // the lowest free level's bit
        f.jmp_imm(Cond::Eq, R1, 0, nest_skip);
        f.emit(Insn::mov(R3, R1));
        f.emit(Insn::atomic64(Atomic::FetchOr, R0, off::CPU_BUSY, R3));
        f.emit(Insn::alu64_reg(Alu::And, R3, R1));
        f.jmp_imm(Cond::Ne, R3, 0, nest_skip); // taken meanwhile by a hit that preempted us
        f.emit(Insn::stx(DW, R10, -32, R1));
        // bit 1, 2, 4, 8 -> level 0, 1, 2, 3
        f.emit(Insn::mov(R2, R1));
        f.emit(Insn::alu64_imm(Alu::Rsh, R2, 1));
        f.emit(Insn::alu64_imm(Alu::Rsh, R1, 3));
        f.emit(Insn::alu64_reg(Alu::Sub, R2, R1));
        f.emit(Insn::alu64_imm(Alu::And, R2, MAX_NEST as i32 - 1));
        f.emit(Insn::alu64_imm(Alu::Mul, R2, off::FRAME_SIZE));
        f.emit(Insn::mov(R8, R0));
        f.emit(Insn::alu64_reg(Alu::Add, R8, R2));
        f.emit(Insn::alu64_imm(Alu::Add, R8, off::CPU_FRAMES));
        f.emit(Insn::stx(DW, R10, -16, R8));
        f.emit(Insn::stx(DW, R10, -8, R0));
        f.emit(Insn::stx(DW, R8, off::F_COOKIE, R7));
        if uses_regs {
            match kind.regs() {
                Regs::None => zero(f, off::F_ARGS, 7),
                regs => {
                    for (k, &o) in PT_REGS_ARGS.iter().enumerate() {
                        f.emit(Insn::ldx(DW, R1, R6, o));
                        f.emit(Insn::stx(DW, R8, off::s16(off::F_ARGS + 8 * k), R1));
                    }
                    if regs == Regs::Ret {
                        f.emit(Insn::ldx(DW, R1, R6, PT_REGS_RC));
                        f.emit(Insn::stx(DW, R8, off::F_RETVAL, R1));
                    } else {
                        f.emit(Insn::st(DW, R8, off::F_RETVAL, 0));
                    }
                }
            }
        }
        f.emit(Insn::mov_imm(R1, MAX_CHAIN as i32));
        f.ld_func(R2, hit);
        f.emit(Insn::mov(R3, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R3, -16));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::call_helper(helper::LOOP));
        f.emit(Insn::ldx(DW, R1, R10, -8));
        f.emit(Insn::ldx(DW, R2, R10, -32));
        f.emit(Insn::alu64_imm(Alu::Xor, R2, -1));
        f.emit(Insn::atomic64(Atomic::And, R1, off::CPU_BUSY, R2));
        f.bind(out);
        f.emit(Insn::mov_imm(R0, 0));
        f.emit(Insn::exit());
        f.bind(nest_skip);
        f.emit(Insn::mov32(R1, R7));
        f.jmp_imm(Cond::Ge, R1, MAX_PROBES as i32, out);
        count(f, off::C_SKIPPED_NEST);
        f.ja(out);
    }

    // ---- hit ----
    let (chain_next, bad_cookie, entry_path, stop_now) = {
        let f = g.b.f(hit);
        let chain_next = f.new_label();
        let bad_cookie = f.new_label();
        let entry_path = f.new_label();
        f.emit(Insn::ldx(DW, R8, R2, 0));
        f.emit(Insn::ldx(DW, R1, R2, 8));
        f.emit(Insn::stx(DW, R10, -8, R8));
        f.emit(Insn::stx(DW, R10, -16, R1));
        f.ld_map(R9, MapId::Shared, Some(0));
        f.emit(Insn::ldx(DW, R7, R8, off::F_COOKIE));
        f.emit(Insn::mov32(R1, R7));
        f.jmp_imm(Cond::Ge, R1, MAX_PROBES as i32, bad_cookie);
        pidx_ptr(f, R2, off::PROBES, 4);
        f.emit(Insn::ldx(W, R3, R2, off::P_FLAGS));
        f.emit(Insn::alu64_imm(Alu::And, R3, PROBE_VALID as i32));
        f.jmp_imm(Cond::Eq, R3, 0, bad_cookie);
        // As SystemTap's STOPPING state: after exit() or once the session stops, no body
        // runs (the end bodies see the final globals).
        let stop_now = f.new_label();
        f.emit(Insn::ldx(DW, R1, R9, off::EXIT_REQUESTED));
        f.jmp_imm(Cond::Ne, R1, 0, stop_now);
        f.emit(Insn::ldx(DW, R1, R9, off::STOPPING));
        f.jmp_imm(Cond::Ne, R1, 0, stop_now);
        // Disarmed by user space, the kernel not done releasing the attachment yet.
        let armed = f.new_label();
        f.emit(Insn::ldx(W, R3, R2, off::P_FLAGS));
        f.emit(Insn::alu64_imm(Alu::And, R3, PROBE_ARMED as i32));
        f.jmp_imm(Cond::Ne, R3, 0, armed);
        f.emit(Insn::mov(R4, R7));
        f.emit(Insn::alu64_imm(Alu::Rsh, R4, 32));
        f.jmp_imm(Cond::Ne, R4, 0, chain_next);
        count(f, off::C_HITS);
        count(f, off::C_SKIPPED_COND);
        f.ja(chain_next);
        f.bind(armed);
        f.emit(Insn::mov(R4, R7));
        f.emit(Insn::alu64_imm(Alu::Rsh, R4, 32));
        f.jmp_imm(Cond::Ne, R4, 0, entry_path);
        count(f, off::C_HITS);
        (chain_next, bad_cookie, entry_path, stop_now)
    };

    // Dispatch on the body.
    let labels = dispatch(g.b.f(hit), variants, |v| v.body.is_some(), chain_next);
    for (k, v) in variants.iter().enumerate() {
        let Some(body) = v.body else { continue };
        g.b.f(hit).owner(v.owner);
        let done = g.b.f(hit).new_label();
        let err = g.b.f(hit).new_label();
        let skip = g.b.f(hit).new_label();
        let reeval = g.b.f(hit).new_label();
        let lock_fail = g.b.f(hit).new_label();
        {
            let f = g.b.f(hit);
            f.bind(labels[k]);
            if let Some(cid) = v.cond {
                // The cached condition bit: a false condition costs no lock.
                let on = f.new_label();
                f.emit(Insn::ldx(B, R1, R9, off::s16(off::COND + cid as usize)));
                f.jmp_imm(Cond::Ne, R1, 0, on);
                count(f, off::C_SKIPPED_COND);
                f.ja(chain_next);
                f.bind(on);
            }
            if v.deferred {
                // User space runs the body (and its inlined condition) under the lock.
                count(f, off::C_BODIES);
                header(f, REC_DEFER, Some((0, 0)));
                emit_record(f, crate::layout::REC_HDR_SIZE as i32);
                f.ja(chain_next);
                continue;
            }
            if v.entry.is_some() {
                let none = f.new_label();
                let have = f.new_label();
                entry_key(f);
                f.ld_map(R1, MapId::Entry, None);
                f.emit(Insn::mov(R2, R10));
                f.emit(Insn::alu64_imm(Alu::Add, R2, -24));
                f.emit(Insn::call_helper(helper::MAP_LOOKUP_ELEM));
                f.jmp_imm(Cond::Eq, R0, 0, none);
                for s in 0..otf_script::bytecode::MAX_ENTRY_SLOTS {
                    f.emit(Insn::ldx(DW, R1, R0, 8 * s as i16));
                    f.emit(Insn::stx(DW, R8, off::s16(off::F_ENTRY + 8 * s), R1));
                }
                f.ld_map(R1, MapId::Entry, None);
                f.emit(Insn::mov(R2, R10));
                f.emit(Insn::alu64_imm(Alu::Add, R2, -24));
                f.emit(Insn::call_helper(helper::MAP_DELETE_ELEM));
                f.ja(have);
                f.bind(none);
                zero(f, off::F_ENTRY, otf_script::bytecode::MAX_ENTRY_SLOTS);
                f.bind(have);
            }
            if v.lock_mask != 0 {
                lock(f, v.lock_mask, spin, lock_fail);
            }
        }
        let ends = Ends {
            next: done,
            skip,
            ret: done,
            error: err,
        };
        run_program(g, hit, shapes, body, ends)?;
        let f = g.b.f(hit);
        f.bind(done);
        count(f, off::C_BODIES);
        f.ja(reeval);
        f.bind(err);
        report_error(f);
        f.ja(reeval);
        f.bind(skip);
        count(f, off::C_SKIPPED_COND);
        if v.lock_mask != 0 {
            unlock(f, v.lock_mask);
        }
        f.ja(chain_next);
        f.bind(lock_fail);
        count(f, off::C_SKIPPED_LOCK);
        f.ja(chain_next);
        f.bind(reeval);
        for &cid in &v.reeval {
            let start = *cond_code
                .get(cid as usize)
                .ok_or(Error::Internal("condition id"))?;
            let f = g.b.f(hit);
            let upd = f.new_label();
            let zero_res = f.new_label();
            let cerr = f.new_label();
            let next = f.new_label();
            let ends = Ends {
                next: zero_res,
                skip: zero_res,
                ret: upd,
                error: cerr,
            };
            run_program(g, hit, shapes, start, ends)?;
            let f = g.b.f(hit);
            f.bind(zero_res);
            f.emit(Insn::st(DW, R8, off::F_RESULT, 0));
            f.bind(upd);
            update_cond(f, cid, next);
            f.ja(next);
            f.bind(cerr);
            report_error(f);
            f.bind(next);
        }
        let f = g.b.f(hit);
        if v.lock_mask != 0 {
            unlock(f, v.lock_mask);
        }
        f.ja(chain_next);
    }

    // Entry programs of return probes (the entry cookie).
    {
        g.b.f(hit).bind(entry_path);
        let elabels = dispatch(g.b.f(hit), variants, |v| v.entry.is_some(), chain_next);
        for (k, v) in variants.iter().enumerate() {
            let Some(entry) = v.entry else { continue };
            let done = g.b.f(hit).new_label();
            let err = g.b.f(hit).new_label();
            {
                let f = g.b.f(hit);
                f.owner(v.owner);
                f.bind(elabels[k]);
                count(f, off::C_ENTRY_RUNS);
                zero(f, off::F_ENTRY, otf_script::bytecode::MAX_ENTRY_SLOTS);
            }
            let ends = Ends {
                next: done,
                skip: done,
                ret: done,
                error: err,
            };
            run_program(g, hit, shapes, entry, ends)?;
            let f = g.b.f(hit);
            f.bind(done);
            entry_key(f);
            f.ld_map(R1, MapId::Entry, None);
            f.emit(Insn::mov(R2, R10));
            f.emit(Insn::alu64_imm(Alu::Add, R2, -24));
            f.emit(Insn::mov(R3, R8));
            f.emit(Insn::alu64_imm(Alu::Add, R3, off::F_ENTRY as i32));
            f.emit(Insn::mov_imm(R4, 0));
            f.emit(Insn::call_helper(helper::MAP_UPDATE_ELEM));
            f.ja(chain_next);
            f.bind(err);
            report_error(f);
            f.ja(chain_next);
        }
    }

    // The next pidx of this attachment.
    {
        let f = g.b.f(hit);
        let stop = f.new_label();
        f.owner(u32::MAX);
        f.bind(chain_next);
        pidx_ptr(f, R2, off::PROBES, 4);
        f.emit(Insn::ldx(W, R3, R2, off::P_CHAIN));
        f.emit(Insn::jmp32_imm(Cond::Eq, R3, NO_CODE as i32, 0));
        let at = f.insns.len() - 1;
        f.emit(Insn::mov32(R1, R7));
        f.jmp_reg(Cond::Eq, R3, R1, stop);
        f.emit(Insn::alu64_imm(Alu::Rsh, R7, 32));
        f.emit(Insn::alu64_imm(Alu::Lsh, R7, 32));
        f.emit(Insn::alu64_reg(Alu::Or, R7, R3));
        f.emit(Insn::stx(DW, R8, off::F_COOKIE, R7));
        f.emit(Insn::mov_imm(R0, 0));
        f.emit(Insn::exit());
        // The jump32 above goes here.
        let here = f.insns.len();
        f.insns[at].off = (here - at - 1) as i16;
        f.bind(stop);
        f.bind(stop_now);
        f.emit(Insn::mov_imm(R0, 1));
        f.emit(Insn::exit());
        f.bind(bad_cookie);
        stat(f, off::STATS_BAD_COOKIE);
        f.emit(Insn::mov_imm(R0, 1));
        f.emit(Insn::exit());
    }
    let _ = MAX_STEPS;
    let _ = R6;
    Ok(())
}
