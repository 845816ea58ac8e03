//! Aggregate reads (`StatGet`: `@count`, `@sum`, `@min`, `@max`, `@avg`, `@variance`) and
//! `delete` of a whole array or aggregate (`MapClear`) in kernel bodies.
//!
//! An aggregate is a per-CPU map: its reader combines the CPUs' copies as user space does
//! (`otf_script::store::Aggregate::merge`). The code runs `bpf_loop` over the CPUs with a
//! callback that looks each copy up with `bpf_map_lookup_percpu_elem` (5.19) and folds it into
//! `Frame::agg`; the first CPU without a copy ends the loop (the helper returns NULL for a CPU
//! past `nr_cpu_ids`, and for a missing key on every CPU), so the loop needs no CPU count.
//! The statistic is then computed from `Frame::agg`; `@min`, `@max`, `@avg` and `@variance`
//! of an aggregate with no values are the run-time error "empty aggregate".
//!
//! `delete a` of an array or an array of aggregates runs `bpf_for_each_map_elem` (5.13) with
//! a callback that deletes the element it is given (hash maps keep an element's list link
//! while it is freed, so the walk goes on); a scalar aggregate's copies are zeroed, one CPU
//! at a time as above, from the zero-filled value of [`MapId::Zero`] (user space does the
//! same, `RuntimeStore::map_clear`). The body holds the array's lock stripe, so no other body
//! changes the map meanwhile.

use otf_script::bytecode::{MapOperands, StatKind};
use otf_script::vm::STAT_KIND_SHIFT;

use super::{stack, Gen, KeyAt, Region, Val};
use crate::asm::{Func, FuncId};
use crate::insn::helper::{
    FOR_EACH_MAP_ELEM, LOOP, MAP_DELETE_ELEM, MAP_LOOKUP_PERCPU_ELEM, PROBE_READ_KERNEL,
};
use crate::insn::{Alu, Cond, Insn, Reg, DW, R0, R1, R10, R2, R3, R4, R5, R6, R8};
use crate::layout::{off, ERR_EMPTY_AGGREGATE};
use crate::maps::{MapKind, MapSpec, STAT_COUNT, STAT_MAX, STAT_MIN, STAT_SUM};
use crate::{Error, MapId};

/// `bpf_loop`'s bound on the CPUs visited: the kernel's largest `NR_CPUS`. The loop stops at
/// the first CPU past the possible ones.
const MAX_CPUS: i32 = 8192;

/// The words of `Frame::agg`.
const AGG_COUNT: usize = 0;
const AGG_SUM: usize = 1;
const AGG_MIN: usize = 2;
const AGG_MAX: usize = 3;
const AGG_SQ: usize = 4;
const AGG_LIN: usize = 5;
const AGG_S2: usize = 6;

/// The frame offset of `Frame::agg`'s count (its sum follows).
pub(super) fn agg_count() -> i16 {
    agg(AGG_COUNT)
}

/// The frame offset of word `w` of `Frame::agg`.
fn agg(w: usize) -> i16 {
    off::s16(off::F_AGG + 8 * w)
}

/// `x = div64(x, y)` for `y >= 0`, as SystemTap's `_stp_div64`: truncated toward zero, 0
/// when `y` is 0 (`may_be_zero`; else `y > 0` is known). BPF divides unsigned: the
/// magnitude is divided and the sign put back. Uses `t`.
fn div64(f: &mut Func, x: Reg, y: Reg, t: Reg, may_be_zero: bool) {
    let done = f.new_label();
    if may_be_zero {
        let nonzero = f.new_label();
        f.jmp_imm(Cond::Ne, y, 0, nonzero);
        f.emit(Insn::mov_imm(x, 0));
        f.ja(done);
        f.bind(nonzero);
    }
    f.emit(Insn::mov(t, x));
    f.emit(Insn::jmp_imm(Cond::Sge, x, 0, 1));
    f.emit(Insn::neg(x));
    f.emit(Insn::alu64_reg(Alu::Div, x, y));
    f.emit(Insn::jmp_imm(Cond::Sge, t, 0, 1));
    f.emit(Insn::neg(x));
    f.bind(done);
}

/// The start of a callback: r8 = the frame (its context points at the caller's saved r8),
/// saved at `r10 - 8` as every function does.
pub(super) fn callback_prologue(f: &mut Func, ctx: Reg) {
    f.emit(Insn::ldx(DW, R8, ctx, 0));
    f.emit(Insn::stx(DW, R10, -8, R8));
}

/// `return ret` from a callback.
pub(super) fn callback_return(f: &mut Func, ret: i32) {
    f.emit(Insn::mov_imm(R0, ret));
    f.emit(Insn::exit());
}

impl Gen<'_> {
    /// `bpf_loop(MAX_CPUS, cb, &frame, 0)` (r6-r9 are kept across the helper).
    pub(super) fn loop_cpus(&mut self, fid: FuncId, cb: FuncId) {
        let f = self.b.f(fid);
        f.emit(Insn::mov_imm(R1, MAX_CPUS));
        f.ld_func(R2, cb);
        f.emit(Insn::mov(R3, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R3, -8));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::call_helper(LOOP));
    }

    /// A callback of [`Gen::loop_cpus`] that looks up CPU `index`'s copy of `m`'s element
    /// whose key is at frame offset `key` and returns 1 when there is none; `body` follows
    /// with the copy in r0, and returns.
    pub(super) fn cpu_callback(
        &mut self,
        m: &MapSpec,
        key: i32,
        body: impl FnOnce(&mut Func),
    ) -> FuncId {
        let cb = self.b.add();
        let f = self.b.f(cb);
        f.emit(Insn::mov(R6, R1));
        callback_prologue(f, R2);
        f.ld_map(R1, MapId::Global(m.global), None);
        f.emit(Insn::mov(R2, R8));
        f.emit(Insn::alu64_imm(Alu::Add, R2, key));
        f.emit(Insn::mov(R3, R6));
        f.emit(Insn::call_helper(MAP_LOOKUP_PERCPU_ELEM));
        let have = f.new_label();
        f.jmp_imm(Cond::Ne, R0, 0, have);
        callback_return(f, 1);
        f.bind(have);
        body(f);
        cb
    }

    /// The frame offset of a map instruction's key (a scalar aggregate's `u32` 0 is stored
    /// at `Frame::tmp` here).
    fn key_offset(&mut self, fid: FuncId, m: &MapSpec, key: KeyAt) -> i32 {
        if m.kind == MapKind::PercpuArray {
            self.b.f(fid).emit(Insn::st(DW, R8, off::F_TMP, 0));
            return i32::from(off::F_TMP);
        }
        match key {
            KeyAt::Stack(base) => i32::from(stack(base as u32)),
            KeyAt::Buf => off::F_KEYBUF as i32,
        }
    }

    /// `StatGet` at `pc`: pops the keys, pushes the statistic.
    pub(super) fn stat_get(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let fid = r.f;
        let mo = MapOperands::unpack(insn.imm & ((1 << STAT_KIND_SHIFT) - 1));
        let kind = StatKind::from_i64(insn.imm >> STAT_KIND_SHIFT)
            .ok_or_else(|| Error::BadCode(format!("statistic {:#x} at {pc}", insn.imm)))?;
        if mo.nkeys as usize > otf_script::bytecode::MAX_KEYS {
            return Err(Error::BadCode(format!("map operands {:#x}", insn.imm)));
        }
        let m = self.map(insn.arg)?;
        if !m.kind.per_cpu() {
            return Err(Error::BadCode(format!(
                "{} at {pc} is not an aggregate",
                m.name
            )));
        }
        let d = r.shape.depth[&pc] as usize;
        let sd = r.shape.sdepth[&pc];
        if d < mo.nint() || (sd as usize) < mo.nstr() {
            return Err(Error::BadCode(format!("aggregate read operands at {pc}")));
        }
        let base = d - mo.nint();
        let sbase = sd - mo.nstr() as u32;
        self.flush(r);
        let key = self.build_key(fid, mo, base, sbase);
        let key = self.key_offset(fid, m, key);
        // The `@variance` terms of each copy, when the aggregate keeps them (without them
        // every term is 0, as user space computes it).
        let var = match kind {
            StatKind::Variance => m.stat().variance.map(|o| o as i16),
            _ => None,
        };
        let f = self.b.f(fid);
        // `@variance` reads all the sums (0 without the copies' terms).
        let sums: &[usize] = match kind {
            StatKind::Variance => &[AGG_COUNT, AGG_SUM, AGG_SQ, AGG_LIN, AGG_S2],
            _ => &[AGG_COUNT, AGG_SUM],
        };
        for &w in sums {
            f.emit(Insn::st(DW, R8, agg(w), 0));
        }
        let cb = self.cpu_callback(m, key, |f| fold_copy(f, kind, var));
        self.loop_cpus(fid, cb);
        let f = self.b.f(fid);
        f.emit(Insn::ldx(DW, R1, R8, agg(AGG_COUNT)));
        match kind {
            StatKind::Count => f.emit(Insn::mov(R0, R1)),
            StatKind::Sum => f.emit(Insn::ldx(DW, R0, R8, agg(AGG_SUM))),
            _ => {
                let ok = f.new_label();
                f.jmp_imm(Cond::Ne, R1, 0, ok);
                self.error(r, ERR_EMPTY_AGGREGATE, pc);
                let f = self.b.f(fid);
                f.bind(ok);
                match kind {
                    StatKind::Min => f.emit(Insn::ldx(DW, R0, R8, agg(AGG_MIN))),
                    StatKind::Max => f.emit(Insn::ldx(DW, R0, R8, agg(AGG_MAX))),
                    StatKind::Avg => {
                        f.emit(Insn::ldx(DW, R0, R8, agg(AGG_SUM)));
                        div64(f, R0, R1, R2, false);
                    }
                    _ => {
                        let shift = i32::from(m.hist.variance.unwrap_or(0));
                        variance(f, shift);
                    }
                }
            }
        }
        r.vs.truncate(base);
        r.vs.push(Val::Reg(R0));
        Ok(())
    }

    /// `MapClear` (`delete a` of a whole array or aggregate) at `pc`.
    pub(super) fn map_clear(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let fid = r.f;
        let m = self.map(insn.arg)?;
        self.flush(r);
        if m.kind == MapKind::PercpuArray {
            // Zero every CPU's copy of the one element.
            let key = self.key_offset(fid, m, KeyAt::Buf);
            let size = m.value_size as i32;
            let cb = self.cpu_callback(m, key, |f| {
                f.emit(Insn::mov(R1, R0));
                f.emit(Insn::mov_imm(R2, size));
                f.ld_map(R3, MapId::Zero, Some(0));
                f.emit(Insn::call_helper(PROBE_READ_KERNEL));
                callback_return(f, 0);
            });
            self.loop_cpus(fid, cb);
            return Ok(());
        }
        let cb = self.b.add();
        {
            // callback(map, key, value, ctx): delete the element (r1 and r2 as given).
            let f = self.b.f(cb);
            f.emit(Insn::call_helper(MAP_DELETE_ELEM));
            callback_return(f, 0);
        }
        let f = self.b.f(fid);
        f.ld_map(R1, MapId::Global(m.global), None);
        f.ld_func(R2, cb);
        f.emit(Insn::mov(R3, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R3, -8));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::call_helper(FOR_EACH_MAP_ELEM));
        Ok(())
    }
}

/// The body of the `StatGet` callback: fold the copy at r0 into `Frame::agg` (a copy with no
/// values is skipped), then `return 0`. `var`: the offset of the copy's `avg_s` (and `_M2`)
/// for `@variance`.
pub(super) fn fold_copy(f: &mut Func, kind: StatKind, var: Option<i16>) {
    let next = f.new_label();
    f.emit(Insn::ldx(DW, R1, R0, STAT_COUNT));
    f.jmp_imm(Cond::Eq, R1, 0, next);
    if matches!(kind, StatKind::Min | StatKind::Max) {
        let (field, w, keep) = if kind == StatKind::Min {
            (STAT_MIN, AGG_MIN, Cond::Sle)
        } else {
            (STAT_MAX, AGG_MAX, Cond::Sge)
        };
        // The first copy with values sets it; later ones only lower (raise) it.
        let set = f.new_label();
        f.emit(Insn::ldx(DW, R3, R0, field));
        f.emit(Insn::ldx(DW, R2, R8, agg(AGG_COUNT)));
        f.jmp_imm(Cond::Eq, R2, 0, set);
        f.emit(Insn::ldx(DW, R4, R8, agg(w)));
        let skip = f.new_label();
        f.jmp_reg(keep, R4, R3, skip);
        f.bind(set);
        f.emit(Insn::stx(DW, R8, agg(w), R3));
        f.bind(skip);
    }
    f.emit(Insn::ldx(DW, R2, R8, agg(AGG_COUNT)));
    f.emit(Insn::alu64_reg(Alu::Add, R2, R1));
    f.emit(Insn::stx(DW, R8, agg(AGG_COUNT), R2));
    f.emit(Insn::ldx(DW, R2, R0, STAT_SUM));
    f.emit(Insn::ldx(DW, R3, R8, agg(AGG_SUM)));
    f.emit(Insn::alu64_reg(Alu::Add, R3, R2));
    f.emit(Insn::stx(DW, R8, agg(AGG_SUM), R3));
    if let Some(at) = var {
        // otf_script::store::VarParts::of_copy: count·avg_s² and count·avg_s, and
        // (count − 1)·div64(_M2, count − 1).
        f.emit(Insn::ldx(DW, R2, R0, at));
        f.emit(Insn::mov(R3, R1));
        f.emit(Insn::alu64_reg(Alu::Mul, R3, R2));
        add_to(f, AGG_LIN, R3, R4);
        f.emit(Insn::alu64_reg(Alu::Mul, R3, R2));
        add_to(f, AGG_SQ, R3, R4);
        f.emit(Insn::ldx(DW, R3, R0, at + 8));
        f.emit(Insn::mov(R5, R1));
        f.emit(Insn::alu64_imm(Alu::Sub, R5, 1));
        div64(f, R3, R5, R2, true);
        f.emit(Insn::alu64_reg(Alu::Mul, R3, R5));
        add_to(f, AGG_S2, R3, R4);
    }
    f.bind(next);
    callback_return(f, 0);
}

/// `Frame::agg[w] += x` (uses `t`).
fn add_to(f: &mut Func, w: usize, x: Reg, t: Reg) {
    f.emit(Insn::ldx(DW, t, R8, agg(w)));
    f.emit(Insn::alu64_reg(Alu::Add, t, x));
    f.emit(Insn::stx(DW, R8, agg(w), t));
}

/// r0 = `@variance` from the combined terms in `Frame::agg` (count in r1, not 0), as
/// `otf_script::store::Aggregate::variance` (SystemTap's `_stp_stat_get`): `avg =
/// div64(sum << shift, count)`, `S1 = Σ count·avg_s² − 2·avg·Σ count·avg_s + avg²·count`,
/// `div64(S1 + S2, count − 1) >> 2·shift`, wrapping 64-bit arithmetic.
fn variance(f: &mut Func, shift: i32) {
    f.emit(Insn::ldx(DW, R2, R8, agg(AGG_SUM)));
    if shift & 63 != 0 {
        f.emit(Insn::alu64_imm(Alu::Lsh, R2, shift & 63));
    }
    div64(f, R2, R1, R3, false); // avg
    f.emit(Insn::ldx(DW, R0, R8, agg(AGG_SQ)));
    f.emit(Insn::mov(R3, R2));
    f.emit(Insn::alu64_imm(Alu::Mul, R3, 2));
    f.emit(Insn::ldx(DW, R4, R8, agg(AGG_LIN)));
    f.emit(Insn::alu64_reg(Alu::Mul, R3, R4));
    f.emit(Insn::alu64_reg(Alu::Sub, R0, R3));
    f.emit(Insn::mov(R3, R2));
    f.emit(Insn::alu64_reg(Alu::Mul, R3, R2));
    f.emit(Insn::alu64_reg(Alu::Mul, R3, R1));
    f.emit(Insn::alu64_reg(Alu::Add, R0, R3));
    f.emit(Insn::ldx(DW, R3, R8, agg(AGG_S2)));
    f.emit(Insn::alu64_reg(Alu::Add, R0, R3));
    f.emit(Insn::alu64_imm(Alu::Sub, R1, 1));
    div64(f, R0, R1, R3, true);
    if (2 * shift) & 63 != 0 {
        f.emit(Insn::alu64_imm(Alu::Arsh, R0, (2 * shift) & 63));
    }
}
