//! `foreach` in kernel bodies (`IterStart`, `IterNext`), with the reference VM's semantics
//! (`otf_script::vm`: the elements in the order of `sort_elements`, at most `limit` of them).
//!
//! There is no snapshot: an element can have 9 string keys of MAXSTRINGLEN bytes and an
//! array 2048 of them. Each step is a selection scan instead: `IterNext` runs
//! `bpf_for_each_map_elem` over the array with a callback that keeps, in `Frame::keybuf`
//! and `Frame::iter_best`/`iter_sbest`, the first element strictly after the one last given
//! in the loop's total order (the sort field, ascending or descending, then the whole key
//! ascending; unsorted: the key, ascending or descending). The element last given is the
//! loop's own key temporaries (and its value, kept in `Frame::iter`), which the body cannot
//! change; no element after it ends the loop. Every step costs one walk of the array, so a
//! loop over `n` elements costs `n²` callback runs.
//!
//! This equals the VM's snapshot only while the array does not change during the loop: as
//! in SystemTap, the semantic check refuses a body that modifies the array it iterates
//! (`otf_script::sema`), and the body holds the array's lock stripe, so no other body
//! changes it meanwhile.
//!
//! Keys compare as the VM's `Vec<Value>`: integers signed, strings bytewise, which on the
//! zero-padded MAXSTRINGLEN-byte slots is an unsigned comparison of their 16 big-endian
//! words. An aggregate iterates by `@count`: the callback sums the count of the element
//! over the CPUs (the `bpf_loop` of `lower/stats.rs`) when the order or the loop's value
//! needs it.

use otf_script::bytecode::{IterSpec, Op, StatKind, MAXSTRINGLEN, MAX_ITERS};

use super::stats::{agg_count, callback_prologue, callback_return, fold_copy};
use super::{copy_str, local, slocal, Gen, Region, SWORDS};
use crate::asm::{Func, Label};
use crate::insn::helper::FOR_EACH_MAP_ELEM;
use crate::insn::{Alu, Cond, Insn, Reg, DW, R1, R10, R2, R3, R4, R6, R7, R8, R9};
use crate::layout::off;
use crate::maps::{MapKind, MapSpec};
use crate::{Error, MapId};

/// The kernel's limit on nested call frames (`MAX_CALL_FRAMES`).
const MAX_CALL_FRAMES: usize = 8;

// The scan copies an aggregate's candidate key to `Frame::out_args` (and on into `out_strs`).
const _: () =
    assert!(off::F_OUT_ARGS + otf_script::bytecode::MAX_KEYS * MAXSTRINGLEN <= off::F_SSTACK);

/// The frame offset of word `w` of iteration `slot`'s `Frame::iter`.
fn iter_word(slot: usize, w: usize) -> i16 {
    off::s16(off::F_ITER + off::ITER_SIZE * slot + w)
}

/// Where one operand of a comparison is.
#[derive(Clone, Copy, Debug)]
enum Loc {
    /// An integer in a register.
    Reg(Reg),
    /// An integer, or a MAXSTRINGLEN-byte string, at `reg + off`.
    Mem(Reg, usize),
}

/// One field of an element in the loop's order.
#[derive(Clone, Copy, Debug)]
struct Field {
    str: bool,
    desc: bool,
    /// The candidate's, then the other element's.
    a: Loc,
    b: Loc,
}

/// One `foreach`'s operands, from its `IterStart` and `IterNext`.
#[derive(Clone, Copy, Debug)]
struct Iter<'m> {
    m: &'m MapSpec,
    spec: IterSpec,
    slot: usize,
    /// The first integer and string key temporaries (the element last given).
    t: usize,
    ts: usize,
    with_value: bool,
    /// The exit of the loop.
    done: usize,
}

impl Iter<'_> {
    fn aggregate(&self) -> bool {
        self.m.kind.per_cpu()
    }

    /// The element's value is needed: the order, or `v = [k] in a`.
    fn needs_value(&self) -> bool {
        self.spec.by == 1 || self.with_value
    }

    fn str_value(&self) -> bool {
        self.m.str_value
    }

    /// The offset of key `k` in the map's key, and where its temporary is.
    fn key_at(&self, k: usize) -> (usize, Loc) {
        let (mut at, mut ii, mut si) = (0, self.t, self.ts);
        for j in 0..k {
            if self.is_str(j) {
                at += MAXSTRINGLEN;
                si += 1;
            } else {
                at += 8;
                ii += 1;
            }
        }
        let tmp = if self.is_str(k) {
            Loc::Mem(R8, slocal(si as i32))
        } else {
            Loc::Mem(R8, local(ii as i32) as usize)
        };
        (at, tmp)
    }

    fn is_str(&self, k: usize) -> bool {
        self.m.str_keys & (1 << k) != 0
    }

    /// The value's temporary (`v = [k] in a`): after the keys' temporaries.
    fn value_temp(&self) -> Loc {
        let nstr = (0..self.m.nkeys as usize)
            .filter(|&k| self.is_str(k))
            .count();
        let nint = self.m.nkeys as usize - nstr;
        if self.str_value() {
            Loc::Mem(R8, slocal((self.ts + nstr) as i32))
        } else {
            Loc::Mem(R8, local((self.t + nint) as i32) as usize)
        }
    }

    /// The fields of the order, the candidate (key at r6, value at r7 or in r9) against
    /// another element (`key(k)`: where its key `k` is; `value`: where its value is).
    fn order(&self, key: impl Fn(usize) -> Loc, value: Loc) -> Vec<Field> {
        let n = self.m.nkeys as usize;
        let cand_value = if self.str_value() {
            Loc::Mem(R7, 0)
        } else {
            Loc::Reg(R9)
        };
        let key_field = |k: usize, desc: bool| Field {
            str: self.is_str(k),
            desc,
            a: Loc::Mem(R6, self.key_at(k).0),
            b: key(k),
        };
        let mut out = Vec::new();
        match self.spec.by {
            0 => return (0..n).map(|k| key_field(k, self.spec.desc)).collect(),
            1 => out.push(Field {
                str: self.str_value(),
                desc: self.spec.desc,
                a: cand_value,
                b: value,
            }),
            by => out.push(key_field(by as usize - 2, self.spec.desc)),
        }
        out.extend((0..n).map(|k| key_field(k, false)));
        out
    }
}

/// Compare the fields in order: jump to `lt` when the candidate comes first, to `gt` when it
/// comes after, fall through when they are equal. Uses r1 and r2.
fn compare(f: &mut Func, fields: &[Field], lt: Label, gt: Label) {
    for fl in fields {
        let (before, after) = if fl.desc { (gt, lt) } else { (lt, gt) };
        let words = if fl.str { SWORDS } else { 1 };
        for w in 0..words {
            for (dst, loc) in [(R1, fl.a), (R2, fl.b)] {
                match loc {
                    Loc::Reg(x) => f.emit(Insn::mov(dst, x)),
                    Loc::Mem(base, o) => f.emit(Insn::ldx(DW, dst, base, off::s16(o + 8 * w))),
                }
                if fl.str {
                    f.emit(Insn::to_be(dst, 64));
                }
            }
            let (l, g) = if fl.str {
                (Cond::Lt, Cond::Gt)
            } else {
                (Cond::Slt, Cond::Sgt)
            };
            f.jmp_reg(l, R1, R2, before);
            f.jmp_reg(g, R1, R2, after);
        }
    }
}

impl<'a> Gen<'a> {
    /// The `IterStart` of the `IterNext` at `pc` (the compiler puts it right before) and the
    /// loop's operands.
    fn iter_of(&self, pc: usize) -> Result<Iter<'a>, Error> {
        let next = self.code[pc];
        let bad = || Error::BadCode(format!("`foreach` at {pc} without its IterStart"));
        let start = *pc
            .checked_sub(1)
            .and_then(|p| self.code.get(p))
            .ok_or_else(bad)?;
        let slot = (next.imm & 0xff) as usize;
        if start.opcode() != Some(Op::IterStart)
            || (start.imm & 0xff) as usize != slot
            || slot >= MAX_ITERS
        {
            return Err(bad());
        }
        let m = self.map(start.arg)?;
        if m.kind == MapKind::PercpuArray {
            return Err(Error::BadCode(format!(
                "`foreach` at {pc} over a scalar aggregate"
            )));
        }
        Ok(Iter {
            m,
            spec: IterSpec::unpack(start.imm >> 8),
            slot,
            t: ((next.imm >> 8) & 0xfff) as usize,
            ts: ((next.imm >> 20) & 0xff) as usize,
            with_value: (next.imm >> 28) & 1 != 0,
            done: crate::cfg::jump_target(pc, &next) as usize,
        })
    }

    /// `IterStart` at `pc`: pops the limit, if any; the loop has given nothing yet.
    pub(super) fn iter_start(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let slot = (insn.imm & 0xff) as usize;
        if slot >= MAX_ITERS {
            return Err(Error::BadCode(format!("iteration slot {slot} at {pc}")));
        }
        if IterSpec::unpack(insn.imm >> 8).limit {
            let k = r.vs.len().checked_sub(1).ok_or(Error::Internal("limit"))?;
            let x = self.in_reg(r, k);
            self.b
                .f(r.f)
                .emit(Insn::stx(DW, R8, iter_word(slot, off::I_LEFT), x));
            r.vs.pop();
        }
        let f = self.b.f(r.f);
        f.emit(Insn::st(DW, R8, iter_word(slot, off::I_STARTED), 0));
        Ok(())
    }

    /// `IterNext` at `pc` (the header of the loop): the next element into the loop's
    /// temporaries, or the loop's exit.
    pub(super) fn iter_next(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let it = self.iter_of(pc)?;
        // Call frames: the handler, the hit, the loops around (this one included), the scan's
        // callback and, for an aggregate's count, the loop over the CPUs.
        let loops = r.shape.loops.iter().filter(|l| l.contains(pc)).count();
        let count = it.aggregate() && it.needs_value();
        let frames = 2 + loops + 1 + usize::from(count);
        if frames > MAX_CALL_FRAMES {
            return Err(Error::TooLarge(format!(
                "`foreach` over the array of aggregates `{}` sorted by value, inside {} other loops: the kernel allows {MAX_CALL_FRAMES} call frames, so otf compiles it inside at most {} other loops",
                it.m.name,
                loops - 1,
                MAX_CALL_FRAMES - 5
            )));
        }
        self.flush(r);
        let fid = r.f;
        let slot = it.slot;
        let out = self.b.f(fid).new_label();
        if it.spec.limit {
            let f = self.b.f(fid);
            let more = f.new_label();
            f.emit(Insn::ldx(DW, R1, R8, iter_word(slot, off::I_LEFT)));
            f.jmp_imm(Cond::Sgt, R1, 0, more);
            f.ja(out);
            f.bind(more);
        }
        // The last string value, when the order needs it and the loop does not keep it.
        let slast = it.str_value() && it.spec.by == 1 && !it.with_value;
        if slast {
            let f = self.b.f(fid);
            let first = f.new_label();
            f.emit(Insn::ldx(DW, R1, R8, iter_word(slot, off::I_STARTED)));
            f.jmp_imm(Cond::Eq, R1, 0, first);
            let mut at = off::F_KEYBUF;
            for k in 0..it.m.nkeys as usize {
                let Loc::Mem(_, o) = it.key_at(k).1 else {
                    unreachable!("temporaries are in the frame")
                };
                if it.is_str(k) {
                    copy_str(f, R8, at, R8, o);
                    at += MAXSTRINGLEN;
                } else {
                    f.emit(Insn::ldx(DW, R1, R8, off::s16(o)));
                    f.emit(Insn::stx(DW, R8, off::s16(at), R1));
                    at += 8;
                }
            }
            f.ld_map(R1, MapId::Global(it.m.global), None);
            f.emit(Insn::mov(R2, R8));
            f.emit(Insn::alu64_imm(Alu::Add, R2, off::F_KEYBUF as i32));
            super::lookup_str(f, off::F_ITER_SLAST, 0);
            f.bind(first);
        }
        let cb = self.scan_callback(&it, slast);
        let f = self.b.f(fid);
        f.emit(Insn::st(DW, R8, off::F_ITER_FOUND, 0));
        f.ld_map(R1, MapId::Global(it.m.global), None);
        f.ld_func(R2, cb);
        f.emit(Insn::mov(R3, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R3, -8));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::call_helper(FOR_EACH_MAP_ELEM));
        f.emit(Insn::ldx(DW, R1, R8, off::F_ITER_FOUND));
        let found = f.new_label();
        f.jmp_imm(Cond::Ne, R1, 0, found);
        f.bind(out);
        self.goto(r, it.done)?;
        let f = self.b.f(fid);
        f.bind(found);
        // Give it: its keys (then its value) into the loop's temporaries.
        if it.spec.limit {
            f.emit(Insn::ldx(DW, R1, R8, iter_word(slot, off::I_LEFT)));
            f.emit(Insn::alu64_imm(Alu::Sub, R1, 1));
            f.emit(Insn::stx(DW, R8, iter_word(slot, off::I_LEFT), R1));
        }
        f.emit(Insn::st(DW, R8, iter_word(slot, off::I_STARTED), 1));
        f.emit(Insn::ldx(DW, R1, R8, off::F_ITER_BEST));
        f.emit(Insn::stx(DW, R8, iter_word(slot, off::I_VAL), R1));
        let mut at = off::F_KEYBUF;
        for k in 0..it.m.nkeys as usize {
            let Loc::Mem(_, o) = it.key_at(k).1 else {
                unreachable!("temporaries are in the frame")
            };
            if it.is_str(k) {
                copy_str(f, R8, o, R8, at);
                at += MAXSTRINGLEN;
            } else {
                f.emit(Insn::ldx(DW, R1, R8, off::s16(at)));
                f.emit(Insn::stx(DW, R8, off::s16(o), R1));
                at += 8;
            }
        }
        if it.with_value {
            let Loc::Mem(_, o) = it.value_temp() else {
                unreachable!("temporaries are in the frame")
            };
            if it.str_value() {
                copy_str(f, R8, o, R8, off::F_ITER_SBEST);
            } else {
                f.emit(Insn::ldx(DW, R1, R8, off::F_ITER_BEST));
                f.emit(Insn::stx(DW, R8, off::s16(o), R1));
            }
        }
        Ok(())
    }

    /// The callback of the scan (`callback(map, key, value, ctx)`): keep the element if it
    /// comes after the one last given and before the one found so far.
    fn scan_callback(&mut self, it: &Iter<'_>, slast: bool) -> crate::asm::FuncId {
        let slot = it.slot;
        let count = it.aggregate() && it.needs_value();
        // The CPUs' counts of the candidate, from its key copied to `Frame::out_args` (free
        // between instructions).
        let cpu_cb = count.then(|| {
            self.cpu_callback(it.m, off::F_OUT_ARGS as i32, |f| {
                fold_copy(f, StatKind::Count, None)
            })
        });
        let cb = self.b.add();
        let f = self.b.f(cb);
        f.emit(Insn::mov(R6, R2));
        f.emit(Insn::mov(R7, R3));
        callback_prologue(f, R4);
        if let Some(cpu_cb) = cpu_cb {
            for w in 0..it.m.key_size as usize / 8 {
                f.emit(Insn::ldx(DW, R1, R6, off::s16(8 * w)));
                f.emit(Insn::stx(DW, R8, off::s16(off::F_OUT_ARGS + 8 * w), R1));
            }
            f.emit(Insn::st(DW, R8, agg_count(), 0));
            f.emit(Insn::st(DW, R8, agg_count() + 8, 0));
            self.loop_cpus(cb, cpu_cb);
            self.b.f(cb).emit(Insn::ldx(DW, R9, R8, agg_count()));
        } else if it.aggregate() || it.str_value() {
            f.emit(Insn::mov_imm(R9, 0));
        } else {
            f.emit(Insn::ldx(DW, R9, R7, 0));
        }
        let f = self.b.f(cb);
        let skip = f.new_label();
        let against_best = f.new_label();
        let take = f.new_label();
        // After the last one given?
        f.emit(Insn::ldx(DW, R1, R8, iter_word(slot, off::I_STARTED)));
        f.jmp_imm(Cond::Eq, R1, 0, against_best);
        let last_value = if it.str_value() {
            if slast {
                Loc::Mem(R8, off::F_ITER_SLAST)
            } else {
                it.value_temp()
            }
        } else {
            Loc::Mem(R8, iter_word(slot, off::I_VAL) as usize)
        };
        let fields = it.order(|k| it.key_at(k).1, last_value);
        compare(f, &fields, skip, against_best);
        f.ja(skip);
        // Before the one found so far?
        f.bind(against_best);
        f.emit(Insn::ldx(DW, R1, R8, off::F_ITER_FOUND));
        f.jmp_imm(Cond::Eq, R1, 0, take);
        let best_value = if it.str_value() {
            Loc::Mem(R8, off::F_ITER_SBEST)
        } else {
            Loc::Mem(R8, off::F_ITER_BEST as usize)
        };
        let fields = it.order(|k| Loc::Mem(R8, off::F_KEYBUF + it.key_at(k).0), best_value);
        compare(f, &fields, take, skip);
        f.ja(skip);
        f.bind(take);
        for w in 0..it.m.key_size as usize / 8 {
            f.emit(Insn::ldx(DW, R1, R6, off::s16(8 * w)));
            f.emit(Insn::stx(DW, R8, off::s16(off::F_KEYBUF + 8 * w), R1));
        }
        f.emit(Insn::stx(DW, R8, off::F_ITER_BEST, R9));
        if it.str_value() && it.needs_value() {
            copy_str(f, R8, off::F_ITER_SBEST, R7, 0);
        }
        f.emit(Insn::st(DW, R8, off::F_ITER_FOUND, 1));
        f.bind(skip);
        callback_return(f, 0);
        cb
    }
}
