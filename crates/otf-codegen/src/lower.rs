//! Lowering one bytecode program (a body, a condition or an entry program) to native BPF.
//!
//! Register conventions inside every function of a handler:
//!
//! | register | holds |
//! |---|---|
//! | r6 | steps charged so far in this program run (spilled to `Frame::steps` around calls) |
//! | r7 | the cookie of the pidx being run (low 32 bits: the pidx) |
//! | r8 | this nesting level's [`Frame`](crate::layout::Frame) (per-CPU map value) |
//! | r9 | the [`Shared`](crate::layout::Shared) map value |
//! | r0-r5 | scratch; helper arguments |
//!
//! The operand stack is static: before every instruction its depth is known (the compiler
//! guarantees it, [`Shape`] checks it), so stack slot `d` is the fixed address
//! `r8 + stack[d]`, and the lowering of an instruction is a few loads, one operation and a
//! store, with no dispatch. Every function stores r8 at `r10 - 8`, which is the context
//! pointer of the `bpf_loop` callbacks it starts.
//!
//! Loops become `bpf_loop` callbacks (inlined by the kernel since 6.0 as a direct call per
//! iteration, so the verifier checks each loop body once instead of walking every
//! iteration): one callback per loop, run once per iteration from the loop's header;
//! reaching the header again is `return 0`, leaving the loop is `return 1` with
//! `Frame::exit` saying where to go on (a pc, or how the program ended).

mod foreach;
mod hist;
mod output;
mod sformat;
mod stats;
mod strfn;

use std::collections::HashMap;

use otf_script::bytecode::{
    Ctx, Insn as BInsn, MapOperands, Op, ReadStr, HIST_LOG_BUCKET0, HIST_LOG_BUCKETS, MAXSTRINGLEN,
    MAX_STEPS,
};

use crate::asm::{Builder, FuncId, Label};
use crate::cfg::{jump_target, successors, Exit, Loop, Shape};
use crate::insn::{
    helper, Alu, Atomic, Cond, Insn, Reg, DW, R0, R1, R10, R2, R3, R4, R5, R6, R7, R8, R9, W,
};
use crate::layout::{
    off, ERR_ARRAY_FULL, ERR_DIV_ZERO, ERR_KERNEL_STRING, ERR_MAXACTION, ERR_RANDINT,
    ERR_USER_STRING, REC_ERR_ADDR, REC_ERR_ARG, REC_EXIT,
};
use crate::maps::{MapKind, MapSpec, STAT_COUNT, STAT_MAX, STAT_MIN, STAT_SUM};
use crate::{Error, KernelInfo, MapId};

/// `Frame::exit` codes: how a loop callback ended. A jump to pc `p` is `EXIT_PC + p`.
pub(crate) const EXIT_NONE: i32 = 0;
const EXIT_NEXT: i32 = 1;
const EXIT_SKIP: i32 = 2;
const EXIT_RET: i32 = 3;
const EXIT_ERROR: i32 = 4;
const EXIT_PC: i32 = 16;

/// Where the ends of a program go in its top-level function.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ends {
    /// `Next` (and `Skip`/`Ret` where the mode has no use for them).
    pub next: Label,
    /// `Skip`.
    pub skip: Label,
    /// `Ret`: the result is in `Frame::result`.
    pub ret: Label,
    /// A run-time error: `Frame::err` and `Frame::errpc` are set.
    pub error: Label,
}

/// Shared state of one handler's generation.
pub(crate) struct Gen<'a> {
    pub code: &'a [BInsn],
    pub b: &'a mut Builder,
    pub kinfo: &'a KernelInfo,
    /// The maps of the script's arrays and aggregates.
    pub maps: &'a [MapSpec],
    /// The script's string literals.
    pub strings: &'a [String],
    /// The number of globals (string globals have a field of [`MapId::Strings`] each).
    pub nglobals: usize,
    /// The `sprintf` formats in [`MapId::Formats`]: offset and arguments by literal id.
    pub formats: std::collections::BTreeMap<u32, (u32, otf_script::format::KernelFormat)>,
}

/// The 64-bit words of a string buffer.
pub(crate) const SWORDS: usize = MAXSTRINGLEN / 8;

/// The offset in the frame of string stack slot `d`.
fn sslot(d: u32) -> usize {
    off::F_SSTACK + MAXSTRINGLEN * d as usize
}

/// The offset in the frame of string local `a`.
fn slocal(a: i32) -> usize {
    off::F_SLOCALS + MAXSTRINGLEN * a as usize
}

/// Copy a string buffer (MAXSTRINGLEN bytes) from `src + so` to `dst + dof`, a word at a
/// time through [`TMP`].
fn copy_str(f: &mut crate::asm::Func, dst: Reg, dof: usize, src: Reg, so: usize) {
    for k in 0..SWORDS {
        f.emit(Insn::ldx(DW, TMP, src, off::s16(so + 8 * k)));
        f.emit(Insn::stx(DW, dst, off::s16(dof + 8 * k), TMP));
    }
}

/// `bpf_map_lookup_elem` (its arguments set up), then the string at `so` of the value found
/// into frame offset `dof`, or "" when there is none.
fn lookup_str(f: &mut crate::asm::Func, dof: usize, so: usize) {
    f.emit(Insn::call_helper(helper::MAP_LOOKUP_ELEM));
    let have = f.new_label();
    let done = f.new_label();
    f.jmp_imm(Cond::Ne, R0, 0, have);
    zero(f, dof, SWORDS);
    f.ja(done);
    f.bind(have);
    copy_str(f, R8, dof, R0, so);
    f.bind(done);
}

/// Where a map instruction's key is.
#[derive(Clone, Copy, Debug)]
enum KeyAt {
    /// In place: integer keys in the stack slots from this depth.
    Stack(usize),
    /// Built in `Frame::keybuf` (keys with strings).
    Buf,
}

fn stack(d: u32) -> i16 {
    off::s16(off::F_STACK + 8 * d as usize)
}

fn local(slot: i32) -> i16 {
    off::s16(off::F_LOCALS + 8 * slot as usize)
}

/// One function being filled with (part of) a program.
struct Region<'s> {
    f: FuncId,
    shape: &'s Shape,
    /// The loop this function is the callback of; `None` for the top-level function.
    own: Option<Loop>,
    ends: Option<Ends>,
    labels: HashMap<usize, Label>,
    lo: usize,
    hi: usize,
    /// Where each operand stack value is now (see [`Val`]).
    vs: Vec<Val>,
    /// A conditional jump already emitted with the comparison before it.
    fused: Option<usize>,
}

/// The right operand of a jump.
#[derive(Clone, Copy, Debug)]
enum Operand {
    Imm(i32),
    Reg(Reg),
}

/// The signed jump condition of a comparison opcode.
fn compare(op: Op) -> Cond {
    match op {
        Op::Lt => Cond::Slt,
        Op::Le => Cond::Sle,
        Op::Gt => Cond::Sgt,
        Op::Ge => Cond::Sge,
        Op::Eq => Cond::Eq,
        _ => Cond::Ne,
    }
}

/// The opposite jump condition.
fn negate(c: Cond) -> Cond {
    match c {
        Cond::Eq => Cond::Ne,
        Cond::Ne => Cond::Eq,
        Cond::Slt => Cond::Sge,
        Cond::Sge => Cond::Slt,
        Cond::Sle => Cond::Sgt,
        Cond::Sgt => Cond::Sle,
        Cond::Lt => Cond::Ge,
        Cond::Ge => Cond::Lt,
        Cond::Le => Cond::Gt,
        Cond::Gt => Cond::Le,
        Cond::Set => unreachable!("comparisons never produce jset"),
    }
}

/// Where an operand stack value is, while its instruction's block is being lowered: values
/// are kept out of memory until a block ends, a helper is called or a register is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val {
    /// In its stack slot.
    Slot,
    /// A constant.
    Const(i64),
    /// The current value of a local (stores to it materialise it first).
    Local(i32),
    /// The current value of a global (stores to it materialise it first).
    Global(i32),
    /// In a register.
    Reg(Reg),
}

/// Registers for operand values; [`TMP`] is kept free for moving values to memory.
const ALLOC: [Reg; 5] = [R1, R2, R3, R4, R0];
const TMP: Reg = R5;

fn global(g: i32) -> i16 {
    off::s16(off::GLOBALS + 8 * g as usize)
}

impl<'a> Gen<'a> {
    /// Emit the program starting at `start` into function `f` (the top level), whose r6-r9
    /// are set up. Its ends jump to `ends`.
    pub fn program(&mut self, f: FuncId, shape: &Shape, ends: Ends) -> Result<(), Error> {
        let mut r = Region {
            f,
            shape,
            own: None,
            ends: Some(ends),
            labels: HashMap::new(),
            lo: shape.start,
            hi: shape.last(),
            vs: Vec::new(),
            fused: None,
        };
        self.f(f).emit(Insn::mov_imm(R6, 0));
        self.clear_tokenize(f, shape);
        self.region(&mut r)
    }

    fn f(&mut self, f: FuncId) -> &mut crate::asm::Func {
        self.b.f(f)
    }

    fn label(&mut self, r: &mut Region<'_>, pc: usize) -> Label {
        if let Some(&l) = r.labels.get(&pc) {
            return l;
        }
        let l = self.f(r.f).new_label();
        r.labels.insert(pc, l);
        l
    }

    fn region(&mut self, r: &mut Region<'_>) -> Result<(), Error> {
        let children = r.shape.children(r.own);
        let pcs: Vec<usize> = r
            .shape
            .depth
            .range(r.lo..=r.hi)
            .map(|(&pc, _)| pc)
            .collect();
        for pc in pcs {
            if let Some(c) = children.iter().find(|c| c.contains(pc)) {
                if pc == c.header {
                    self.flush(r);
                    r.vs = vec![Val::Slot; r.shape.depth[&pc] as usize];
                    let l = self.label(r, pc);
                    self.f(r.f).bind(l);
                    self.call_loop(r, *c)?;
                }
                continue;
            }
            if r.fused == Some(pc) {
                r.fused = None;
                continue;
            }
            if let Some(&len) = r.shape.blocks.get(&pc) {
                // A block starts: every predecessor left the operand stack in memory.
                self.flush(r);
                r.vs = vec![Val::Slot; r.shape.depth[&pc] as usize];
                let l = self.label(r, pc);
                self.f(r.f).bind(l);
                self.charge(r, pc, len);
            }
            self.insn(r, pc)?;
            // Falling through out of this function's range.
            let falls = successors(self.code, pc).first() == Some(&(pc + 1))
                && !matches!(self.code[pc].opcode(), Some(Op::Jmp));
            if falls && (pc + 1 > r.hi || !r.shape.depth.contains_key(&(pc + 1))) {
                self.flush(r);
                self.goto(r, pc + 1)?;
            }
        }
        Ok(())
    }

    /// Charge a block of `len` instructions at its leader `pc`.
    ///
    /// The count goes through the frame first: reloaded from map memory, it is a scalar the
    /// verifier does not know, so paths that reach this leader having run different numbers of
    /// steps are one state to it. Kept in a register, the count was a distinct constant per
    /// path, made precise by the MAXACTION test below, and no path could be pruned: a random
    /// program with two log2 aggregates (a 7-level search each) and ~30 branches went past
    /// the verifier's 1,000,000 instructions (differential seed 0x817c70322dd018b8, #7097).
    fn charge(&mut self, r: &mut Region<'_>, pc: usize, len: u32) {
        let f = self.f(r.f);
        f.emit(Insn::stx(DW, R8, off::F_STEPS, R6));
        f.emit(Insn::ldx(DW, R6, R8, off::F_STEPS));
        f.emit(Insn::alu64_imm(Alu::Add, R6, len as i32));
        let ok = f.new_label();
        f.jmp_imm(Cond::Le, R6, MAX_STEPS as i32, ok);
        self.error(r, ERR_MAXACTION, pc);
        self.f(r.f).bind(ok);
    }

    /// Set the error and leave through the error end.
    fn error(&mut self, r: &mut Region<'_>, kind: u32, pc: usize) {
        let f = self.f(r.f);
        f.emit(Insn::st(DW, R8, off::F_ERR, kind as i32));
        f.emit(Insn::st(DW, R8, off::F_ERRPC, pc as i32));
        self.end(r, EXIT_ERROR);
    }

    /// Leave the program with end `code` (`EXIT_NEXT`, ...).
    fn end(&mut self, r: &mut Region<'_>, code: i32) {
        match r.ends {
            Some(e) => {
                let l = match code {
                    EXIT_NEXT => e.next,
                    EXIT_SKIP => e.skip,
                    EXIT_RET => e.ret,
                    _ => e.error,
                };
                self.f(r.f).ja(l);
            }
            None => self.leave(r.f, code, 1),
        }
    }

    /// Return from a callback: store the exit code, spill the steps, return `ret`.
    fn leave(&mut self, f: FuncId, code: i32, ret: i32) {
        let f = self.f(f);
        if ret == 1 {
            f.emit(Insn::st(DW, R8, off::F_EXIT, code));
        }
        f.emit(Insn::stx(DW, R8, off::F_STEPS, R6));
        f.emit(Insn::mov_imm(R0, ret));
        f.emit(Insn::exit());
    }

    /// Continue at `pc`: a local jump, the next iteration of this callback's loop, or a
    /// way out of it.
    fn goto(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        if let Some(o) = r.own {
            if pc == o.header {
                self.leave(r.f, EXIT_NONE, 0);
                return Ok(());
            }
        }
        if (r.lo..=r.hi).contains(&pc) {
            let l = self.label(r, pc);
            self.f(r.f).ja(l);
            return Ok(());
        }
        if r.ends.is_some() {
            return Err(Error::BadCode(format!("a jump leaves the program to {pc}")));
        }
        self.leave(r.f, EXIT_PC + pc as i32, 1);
        Ok(())
    }

    /// `if reg cond 0 goto pc` (a conditional jump of the bytecode).
    fn branch(&mut self, r: &mut Region<'_>, cond: Cond, reg: Reg, pc: usize) -> Result<(), Error> {
        let local = (r.lo..=r.hi).contains(&pc) && r.own.is_none_or(|o| pc != o.header);
        if local {
            let l = self.label(r, pc);
            self.f(r.f).jmp_imm(cond, reg, 0, l);
            return Ok(());
        }
        let inv = match cond {
            Cond::Eq => Cond::Ne,
            _ => Cond::Eq,
        };
        let skip = self.f(r.f).new_label();
        self.f(r.f).jmp_imm(inv, reg, 0, skip);
        self.goto(r, pc)?;
        self.f(r.f).bind(skip);
        Ok(())
    }

    /// `if a cond b goto pc`.
    fn branch2(
        &mut self,
        r: &mut Region<'_>,
        cond: Cond,
        a: Reg,
        b: Operand,
        pc: usize,
    ) -> Result<(), Error> {
        let local = (r.lo..=r.hi).contains(&pc) && r.own.is_none_or(|o| pc != o.header);
        let jump = |f: &mut crate::asm::Func, c: Cond, l: Label| match b {
            Operand::Imm(i) => f.jmp_imm(c, a, i, l),
            Operand::Reg(x) => f.jmp_reg(c, a, x, l),
        };
        if local {
            let l = self.label(r, pc);
            jump(self.f(r.f), cond, l);
            return Ok(());
        }
        let skip = self.f(r.f).new_label();
        jump(self.f(r.f), negate(cond), skip);
        self.goto(r, pc)?;
        self.f(r.f).bind(skip);
        Ok(())
    }

    /// Whether the comparison at `pc` can be fused with the conditional jump after it.
    fn fuses(&self, r: &Region<'_>, pc: usize) -> bool {
        matches!(
            self.code.get(pc + 1).and_then(|i| i.opcode()),
            Some(Op::Jz | Op::Jnz)
        ) && !r.shape.blocks.contains_key(&(pc + 1))
            && r.shape.depth.contains_key(&(pc + 1))
    }

    /// Run loop `l` with `bpf_loop` and continue where it says.
    fn call_loop(&mut self, r: &mut Region<'_>, l: Loop) -> Result<(), Error> {
        let cb = self.callback(r.shape, l)?;
        let f = self.f(r.f);
        f.emit(Insn::st(DW, R8, off::F_EXIT, EXIT_NONE));
        f.emit(Insn::stx(DW, R8, off::F_STEPS, R6));
        f.emit(Insn::mov_imm(R1, MAX_STEPS as i32 + 1));
        f.ld_func(R2, cb);
        f.emit(Insn::mov(R3, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R3, -8));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::call_helper(helper::LOOP));
        f.emit(Insn::ldx(DW, R6, R8, off::F_STEPS));
        f.emit(Insn::ldx(DW, R1, R8, off::F_EXIT));
        for e in r.shape.exits(self.code, l) {
            let code = match e {
                Exit::To(pc) => EXIT_PC + pc as i32,
                Exit::Next => EXIT_NEXT,
                Exit::Skip => EXIT_SKIP,
                Exit::Ret => EXIT_RET,
                Exit::Error => EXIT_ERROR,
            };
            let skip = self.f(r.f).new_label();
            self.f(r.f).jmp_imm(Cond::Ne, R1, code, skip);
            match e {
                Exit::To(pc) => self.goto(r, pc)?,
                _ => match r.ends {
                    Some(_) => self.end(r, code),
                    // Propagate: Frame::exit and Frame::steps are already right.
                    None => {
                        let f = self.f(r.f);
                        f.emit(Insn::mov_imm(R0, 1));
                        f.emit(Insn::exit());
                    }
                },
            }
            self.f(r.f).bind(skip);
        }
        // The loop ran out of iterations: only possible past the step budget.
        self.error(r, ERR_MAXACTION, l.header);
        Ok(())
    }

    /// The callback of loop `l`.
    fn callback(&mut self, shape: &Shape, l: Loop) -> Result<FuncId, Error> {
        let id = self.b.add();
        {
            let f = self.f(id);
            f.emit(Insn::ldx(DW, R8, R2, 0));
            f.emit(Insn::stx(DW, R10, -8, R8));
            f.ld_map(R9, MapId::Shared, Some(0));
            f.emit(Insn::ldx(DW, R6, R8, off::F_STEPS));
            f.emit(Insn::ldx(DW, R7, R8, off::F_COOKIE));
        }
        let mut r = Region {
            f: id,
            shape,
            own: Some(l),
            ends: None,
            labels: HashMap::new(),
            lo: l.header,
            hi: l.end,
            vs: Vec::new(),
            fused: None,
        };
        self.region(&mut r)?;
        Ok(id)
    }

    /// Put the value at depth `k` into a register (allocating one unless it is already in
    /// one) and return it.
    fn in_reg(&mut self, r: &mut Region<'_>, k: usize) -> Reg {
        let v = r.vs[k];
        if let Val::Reg(x) = v {
            return x;
        }
        let x = self.alloc(r);
        let f = self.b.f(r.f);
        match v {
            Val::Slot => f.emit(Insn::ldx(DW, x, R8, stack(k as u32))),
            Val::Const(c) => match i32::try_from(c) {
                Ok(c) => f.emit(Insn::mov_imm(x, c)),
                Err(_) => f.emit_all(&Insn::ld_imm64(x, 0, c as u64)),
            },
            Val::Local(s) => f.emit(Insn::ldx(DW, x, R8, local(s))),
            Val::Global(g) => f.emit(Insn::ldx(DW, x, R9, global(g))),
            Val::Reg(_) => unreachable!(),
        }
        r.vs[k] = Val::Reg(x);
        x
    }

    /// A free scratch register; spills the deepest register value if none is free.
    fn alloc(&mut self, r: &mut Region<'_>) -> Reg {
        for x in ALLOC {
            if !r.vs.contains(&Val::Reg(x)) {
                return x;
            }
        }
        // Spill the deepest register value, sparing the top two (an operation's operands).
        let n = r.vs.len();
        let k = (0..n.saturating_sub(2))
            .chain(n.saturating_sub(2)..n)
            .find(|&k| matches!(r.vs[k], Val::Reg(_)))
            .expect("a register value");
        let Val::Reg(x) = r.vs[k] else { unreachable!() };
        self.b.f(r.f).emit(Insn::stx(DW, R8, stack(k as u32), x));
        r.vs[k] = Val::Slot;
        x
    }

    /// Write every pending value to its stack slot (before a jump target, a jump, a helper
    /// call or a loop: there the operand stack is in memory).
    fn flush(&mut self, r: &mut Region<'_>) {
        for k in 0..r.vs.len() {
            self.flush_one(r, k);
        }
    }

    fn flush_one(&mut self, r: &mut Region<'_>, k: usize) {
        let f = self.b.f(r.f);
        let at = stack(k as u32);
        match r.vs[k] {
            Val::Slot => return,
            Val::Reg(x) => f.emit(Insn::stx(DW, R8, at, x)),
            Val::Const(c) => match i32::try_from(c) {
                Ok(c) => f.emit(Insn::st(DW, R8, at, c)),
                Err(_) => {
                    f.emit_all(&Insn::ld_imm64(TMP, 0, c as u64));
                    f.emit(Insn::stx(DW, R8, at, TMP));
                }
            },
            Val::Local(s) => {
                f.emit(Insn::ldx(DW, TMP, R8, local(s)));
                f.emit(Insn::stx(DW, R8, at, TMP));
            }
            Val::Global(g) => {
                f.emit(Insn::ldx(DW, TMP, R9, global(g)));
                f.emit(Insn::stx(DW, R8, at, TMP));
            }
        }
        r.vs[k] = Val::Slot;
    }

    /// Before a store to `v`'s location, materialise every pending read of it.
    fn before_store(&mut self, r: &mut Region<'_>, v: Val) {
        for k in 0..r.vs.len() {
            if r.vs[k] == v {
                self.flush_one(r, k);
            }
        }
    }

    /// Store the top value (popped) to `dst + off`.
    fn store_top(&mut self, r: &mut Region<'_>, dst: Reg, off: i16) {
        let k = r.vs.len() - 1;
        match r.vs[k] {
            Val::Const(c) if i32::try_from(c).is_ok() => {
                self.b.f(r.f).emit(Insn::st(DW, dst, off, c as i32));
            }
            _ => {
                let x = self.in_reg(r, k);
                self.b.f(r.f).emit(Insn::stx(DW, dst, off, x));
            }
        }
        r.vs.pop();
    }

    fn insn(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let op = insn.opcode().ok_or(Error::Internal("opcode"))?;
        let d = r.shape.depth[&pc];
        debug_assert_eq!(d as usize, r.vs.len());
        let a = insn.arg;
        let fid = r.f;
        if let Some(what) = otf_script::vm::user_space_only(&insn) {
            // The front end runs these in user space only (`begin`/`end` and deferred timer
            // bodies); see `otf_script::vm::user_space_only`.
            return Err(Error::BadCode(format!(
                "{op:?} at {pc} ({what}) runs in user space only"
            )));
        }
        match op {
            Op::Nop => {}
            Op::Push => r.vs.push(Val::Const(insn.imm)),
            Op::LdG => r.vs.push(Val::Global(a)),
            Op::LdL => r.vs.push(Val::Local(a)),
            Op::StG => {
                self.before_store(r, Val::Global(a));
                self.store_top(r, R9, global(a));
            }
            Op::StL => {
                self.before_store(r, Val::Local(a));
                self.store_top(r, R8, local(a));
            }
            Op::EntrySave => {
                let o = off::s16(off::F_ENTRY + 8 * a as usize);
                self.store_top(r, R8, o);
            }
            Op::EntryLoad => {
                let x = self.alloc(r);
                let o = off::s16(off::F_ENTRY + 8 * a as usize);
                self.b.f(fid).emit(Insn::ldx(DW, x, R8, o));
                r.vs.push(Val::Reg(x));
            }
            Op::Dup => {
                let top = *r.vs.last().ok_or(Error::Internal("dup"))?;
                match top {
                    Val::Const(_) | Val::Local(_) | Val::Global(_) => r.vs.push(top),
                    _ => {
                        let k = r.vs.len() - 1;
                        let x = self.in_reg(r, k);
                        r.vs.push(Val::Slot);
                        let y = self.alloc(r);
                        self.b.f(fid).emit(Insn::mov(y, x));
                        *r.vs.last_mut().expect("pushed") = Val::Reg(y);
                    }
                }
            }
            Op::Pop => {
                r.vs.pop();
            }
            Op::Add | Op::Sub | Op::Mul | Op::And | Op::Or | Op::Xor | Op::Shl | Op::Shr => {
                let alu = match op {
                    Op::Add => Alu::Add,
                    Op::Sub => Alu::Sub,
                    Op::Mul => Alu::Mul,
                    Op::And => Alu::And,
                    Op::Or => Alu::Or,
                    Op::Xor => Alu::Xor,
                    Op::Shl => Alu::Lsh,
                    _ => Alu::Arsh,
                };
                let n = r.vs.len();
                let shift = matches!(op, Op::Shl | Op::Shr);
                let imm = match r.vs[n - 1] {
                    Val::Const(c) if shift => Some((c & 63) as i32),
                    Val::Const(c) => i32::try_from(c).ok(),
                    _ => None,
                };
                let xa = self.in_reg(r, n - 2);
                if let Some(c) = imm {
                    self.b.f(fid).emit(Insn::alu64_imm(alu, xa, c));
                } else {
                    let xb = self.in_reg(r, n - 1);
                    let f = self.b.f(fid);
                    if shift {
                        f.emit(Insn::alu64_imm(Alu::And, xb, 63));
                    }
                    f.emit(Insn::alu64_reg(alu, xa, xb));
                }
                r.vs.pop();
            }
            Op::Div | Op::Mod => {
                self.flush(r);
                let f = self.b.f(fid);
                f.emit(Insn::ldx(DW, R1, R8, stack(d - 2)));
                f.emit(Insn::ldx(DW, R2, R8, stack(d - 1)));
                let ok = f.new_label();
                f.jmp_imm(Cond::Ne, R2, 0, ok);
                self.error(r, ERR_DIV_ZERO, pc);
                let f = self.b.f(fid);
                f.bind(ok);
                // Unsigned division of the magnitudes (sdiv needs BPF v4, kernel 6.6):
                // |i64::MIN| is 2^63 as a u64, so i64::MIN / -1 wraps to i64::MIN.
                f.emit(Insn::mov(R3, R1)); // a
                f.emit(Insn::mov(R4, R2)); // b
                f.emit(Insn::jmp_imm(Cond::Sge, R1, 0, 1));
                f.emit(Insn::neg(R1));
                f.emit(Insn::jmp_imm(Cond::Sge, R2, 0, 1));
                f.emit(Insn::neg(R2));
                if op == Op::Div {
                    f.emit(Insn::alu64_reg(Alu::Div, R1, R2));
                    f.emit(Insn::alu64_reg(Alu::Xor, R3, R4)); // sign differs: negative
                } else {
                    f.emit(Insn::alu64_reg(Alu::Mod, R1, R2)); // sign of a
                }
                f.emit(Insn::jmp_imm(Cond::Sge, R3, 0, 1));
                f.emit(Insn::neg(R1));
                r.vs.pop();
                *r.vs.last_mut().expect("two operands") = Val::Reg(R1);
            }
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne if self.fuses(r, pc) => {
                // `a < b; Jz/Jnz` in one block: one conditional jump, no 0/1 value.
                let next = self.code[pc + 1];
                let mut c = compare(op);
                if next.opcode() == Some(Op::Jz) {
                    c = negate(c);
                }
                let (xa, xb) = self.operands(r);
                r.vs.truncate(r.vs.len() - 2);
                self.flush(r);
                let t = jump_target(pc + 1, &next) as usize;
                self.branch2(r, c, xa, xb, t)?;
                r.fused = Some(pc + 1);
            }
            Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne => {
                let c = compare(op);
                let (xa, xb) = self.operands(r);
                let y = self.alloc(r);
                let f = self.b.f(fid);
                f.emit(Insn::mov_imm(y, 1));
                match xb {
                    Operand::Imm(i) => f.emit(Insn::jmp_imm(c, xa, i, 1)),
                    Operand::Reg(xb) => f.emit(Insn::jmp_reg(c, xa, xb, 1)),
                }
                f.emit(Insn::mov_imm(y, 0));
                r.vs.pop();
                *r.vs.last_mut().expect("two operands") = Val::Reg(y);
            }
            Op::Neg | Op::BNot => {
                let k = r.vs.len() - 1;
                let x = self.in_reg(r, k);
                let f = self.b.f(fid);
                match op {
                    Op::Neg => f.emit(Insn::neg(x)),
                    _ => f.emit(Insn::alu64_imm(Alu::Xor, x, -1)),
                }
            }
            Op::LNot => {
                let k = r.vs.len() - 1;
                let x = self.in_reg(r, k);
                let y = self.alloc(r);
                let f = self.b.f(fid);
                f.emit(Insn::mov_imm(y, 1));
                f.emit(Insn::jmp_imm(Cond::Eq, x, 0, 1));
                f.emit(Insn::mov_imm(y, 0));
                r.vs[k] = Val::Reg(y);
            }
            Op::Jmp => {
                self.flush(r);
                let t = jump_target(pc, &insn) as usize;
                self.goto(r, t)?;
            }
            Op::Jz | Op::Jnz => {
                let k = r.vs.len() - 1;
                let x = self.in_reg(r, k);
                r.vs.pop();
                self.flush(r);
                let t = jump_target(pc, &insn) as usize;
                let c = if op == Op::Jz { Cond::Eq } else { Cond::Ne };
                self.branch(r, c, x, t)?;
            }
            Op::Next => self.end(r, EXIT_NEXT),
            Op::Skip => self.end(r, EXIT_SKIP),
            Op::Ret => {
                self.store_top(r, R8, off::F_RESULT);
                self.end(r, EXIT_RET);
            }
            Op::Ctx => {
                let id = Ctx::from_i32(a).ok_or(Error::Internal("context id"))?;
                let x = match id {
                    Ctx::Target | Ctx::RetVal | Ctx::IntArg | Ctx::LongArg => {
                        let x = self.alloc(r);
                        self.ctx_load(fid, id, insn.imm, x);
                        x
                    }
                    _ => {
                        self.flush(r);
                        self.ctx(fid, id);
                        R0
                    }
                };
                r.vs.push(Val::Reg(x));
            }
            Op::RandInt => {
                self.flush(r);
                self.b.f(fid).emit(Insn::ldx(DW, R1, R8, stack(d - 1)));
                let ok = self.b.f(fid).new_label();
                self.b.f(fid).jmp_imm(Cond::Sgt, R1, 0, ok);
                self.error(r, ERR_RANDINT, pc);
                let f = self.b.f(fid);
                f.bind(ok);
                f.emit(Insn::call_helper(helper::GET_PRANDOM_U32));
                f.emit(Insn::alu64_imm(Alu::Lsh, R0, 32));
                f.emit(Insn::stx(DW, R8, off::F_TMP, R0));
                f.emit(Insn::call_helper(helper::GET_PRANDOM_U32));
                f.emit(Insn::mov32(R0, R0));
                f.emit(Insn::ldx(DW, R1, R8, off::F_TMP));
                f.emit(Insn::alu64_reg(Alu::Or, R0, R1));
                f.emit(Insn::ldx(DW, R1, R8, stack(d - 1)));
                f.emit(Insn::alu64_reg(Alu::Mod, R0, R1));
                *r.vs.last_mut().expect("operand") = Val::Reg(R0);
            }
            Op::Out => self.out(r, pc)?,
            Op::MapGet | Op::MapIn | Op::MapDel => {
                let mo = self.operands_of(insn)?;
                let sd = r.shape.sdepth[&pc];
                let base = d as usize - mo.nint();
                let sbase = sd - mo.nstr() as u32;
                self.flush(r);
                let m = self.map(a)?;
                let key = self.build_key(fid, mo, base, sbase);
                self.key_ptr(fid, m, key);
                let f = self.b.f(fid);
                f.ld_map(R1, MapId::Global(a as u32), None);
                r.vs.truncate(base);
                if op == Op::MapDel {
                    f.emit(Insn::call_helper(helper::MAP_DELETE_ELEM));
                } else if op == Op::MapGet && mo.str_value {
                    // The string, or "" when missing, in the string slot of the result.
                    lookup_str(f, sslot(sbase), 0);
                } else {
                    f.emit(Insn::call_helper(helper::MAP_LOOKUP_ELEM));
                    // A missing element reads 0 (the NULL pointer itself); `in` is 0 or 1.
                    let done = f.new_label();
                    f.jmp_imm(Cond::Eq, R0, 0, done);
                    if op == Op::MapIn {
                        f.emit(Insn::mov_imm(R0, 1));
                    } else {
                        f.emit(Insn::ldx(DW, R0, R0, 0));
                    }
                    f.bind(done);
                    r.vs.push(Val::Reg(R0));
                }
            }
            Op::MapPut if self.operands_of(insn)?.str_value => {
                // Pop the string value and the keys; the value stays on the string stack.
                let mo = self.operands_of(insn)?;
                let sd = r.shape.sdepth[&pc];
                let base = d as usize - mo.nint();
                let sbase = sd - 1 - mo.nstr() as u32;
                let val = sslot(sd - 1);
                self.flush(r);
                let m = self.map(a)?;
                let key = self.build_key(fid, mo, base, sbase);
                self.lookup(fid, m, key);
                let f = self.b.f(fid);
                let have = f.new_label();
                let done = f.new_label();
                f.jmp_imm(Cond::Ne, R0, 0, have);
                self.key_ptr(fid, m, key);
                let f = self.b.f(fid);
                f.ld_map(R1, MapId::Global(a as u32), None);
                f.emit(Insn::mov(R3, R8));
                f.emit(Insn::alu64_imm(Alu::Add, R3, val as i32));
                f.emit(Insn::mov_imm(R4, 0));
                f.emit(Insn::call_helper(helper::MAP_UPDATE_ELEM));
                // The error is an `int` before Linux 6.4: test the low 32 bits.
                f.jmp32_imm(Cond::Sge, R0, 0, done);
                self.error(r, ERR_ARRAY_FULL, pc);
                let f = self.b.f(fid);
                f.bind(have);
                copy_str(f, R0, 0, R8, val);
                f.bind(done);
                if sbase != sd - 1 {
                    copy_str(f, R8, sslot(sbase), R8, val);
                }
                r.vs.truncate(base);
            }
            Op::MapPut | Op::MapAdd => {
                let mo = self.operands_of(insn)?;
                let sd = r.shape.sdepth[&pc];
                let base = d as usize - 1 - mo.nint();
                let sbase = sd - mo.nstr() as u32;
                self.flush(r);
                let m = self.map(a)?;
                let val = stack(d - 1);
                let key = self.build_key(fid, mo, base, sbase);
                self.lookup(fid, m, key);
                let f = self.b.f(fid);
                let have = f.new_label();
                f.jmp_imm(Cond::Ne, R0, 0, have);
                if op == Op::MapPut {
                    // A new element: insert the value itself.
                    self.key_ptr(fid, m, key);
                    let f = self.b.f(fid);
                    f.ld_map(R1, MapId::Global(a as u32), None);
                    f.emit(Insn::mov(R3, R8));
                    f.emit(Insn::alu64_imm(Alu::Add, R3, i32::from(val)));
                    f.emit(Insn::mov_imm(R4, 0));
                    f.emit(Insn::call_helper(helper::MAP_UPDATE_ELEM));
                    let ok = f.new_label();
                    // The error is an `int` before Linux 6.4: test the low 32 bits.
                    f.jmp32_imm(Cond::Sge, R0, 0, ok);
                    self.error(r, ERR_ARRAY_FULL, pc);
                    let f = self.b.f(fid);
                    f.bind(ok);
                    let done = f.new_label();
                    f.ja(done);
                    f.bind(have);
                    f.emit(Insn::ldx(DW, R1, R8, val));
                    f.emit(Insn::stx(DW, R0, 0, R1));
                    f.bind(done);
                    f.emit(Insn::ldx(DW, R0, R8, val));
                } else {
                    self.insert_zero(r, m, key, pc)?;
                    let f = self.b.f(fid);
                    f.bind(have);
                    f.emit(Insn::ldx(DW, R1, R0, 0));
                    f.emit(Insn::ldx(DW, R2, R8, val));
                    f.emit(Insn::alu64_reg(Alu::Add, R1, R2));
                    f.emit(Insn::stx(DW, R0, 0, R1));
                    f.emit(Insn::mov(R0, R1));
                }
                r.vs.truncate(base);
                r.vs.push(Val::Reg(R0));
            }
            Op::StatAdd => {
                let mo = self.operands_of(insn)?;
                let sd = r.shape.sdepth[&pc];
                let base = d as usize - 1 - mo.nint();
                let sbase = sd - mo.nstr() as u32;
                self.flush(r);
                let m = self.map(a)?;
                let key = self.build_key(fid, mo, base, sbase);
                self.lookup(fid, m, key);
                let have = self.b.f(fid).new_label();
                self.b.f(fid).jmp_imm(Cond::Ne, R0, 0, have);
                self.insert_zero(r, m, key, pc)?;
                self.b.f(fid).bind(have);
                self.b.f(fid).emit(Insn::ldx(DW, R1, R8, stack(d - 1)));
                stat_add(self.b.f(fid), m);
                r.vs.truncate(base);
            }
            Op::SPush
            | Op::SCtx
            | Op::SLdL
            | Op::SStL
            | Op::SLdG
            | Op::SStG
            | Op::SDup
            | Op::SPop
            | Op::SCmp
            | Op::SLen
            | Op::SConcat => self.string_insn(r, pc)?,
            Op::SRead => self.read_str(r, pc)?,
            Op::SCall => self.scall(r, pc)?,
            Op::StatGet => self.stat_get(r, pc)?,
            Op::MapClear => self.map_clear(r, pc)?,
            Op::IterStart => self.iter_start(r, pc)?,
            Op::IterNext => self.iter_next(r, pc)?,
            Op::SFormat => self.sprintf(r, pc)?,
            Op::Exit => {
                self.flush(r);
                let f = self.b.f(fid);
                f.emit(Insn::st(DW, R9, off::EXIT_REQUESTED, 1));
                header(f, REC_EXIT, Some((0, 0)));
                emit_record(f, 48);
            }
        }
        Ok(())
    }

    /// The operands of a map instruction.
    fn operands_of(&self, insn: BInsn) -> Result<MapOperands, Error> {
        let m = MapOperands::unpack(insn.imm);
        if insn.imm < 0 || m.nkeys as usize > otf_script::bytecode::MAX_KEYS {
            return Err(Error::BadCode(format!("map operands {:#x}", insn.imm)));
        }
        Ok(m)
    }

    /// The map of global `g`.
    fn map(&self, g: i32) -> Result<&'a MapSpec, Error> {
        self.maps
            .iter()
            .find(|m| m.global as i32 == g)
            .ok_or_else(|| Error::BadCode(format!("global {g} has no map")))
    }

    /// r2 = the key: the stack slots from depth `base` (flushed) or the key buffer, or a zero
    /// `u32` for a scalar aggregate's one-element array.
    fn key_ptr(&mut self, fid: FuncId, m: &MapSpec, key: KeyAt) {
        let f = self.b.f(fid);
        if m.kind == MapKind::PercpuArray {
            f.emit(Insn::st(DW, R8, off::F_TMP, 0));
            f.emit(Insn::mov(R2, R8));
            f.emit(Insn::alu64_imm(Alu::Add, R2, i32::from(off::F_TMP)));
            return;
        }
        let at = match key {
            KeyAt::Stack(base) => i32::from(stack(base as u32)),
            KeyAt::Buf => off::F_KEYBUF as i32,
        };
        f.emit(Insn::mov(R2, R8));
        f.emit(Insn::alu64_imm(Alu::Add, R2, at));
    }

    /// Where the key of a map instruction is: in place when every key is an integer (from
    /// depth `base`), else built in the key buffer from the integer stack slots (from depth
    /// `base`) and the string stack slots (from string depth `sbase`), in key order. The
    /// operand stack must be flushed.
    fn build_key(&mut self, fid: FuncId, mo: MapOperands, base: usize, sbase: u32) -> KeyAt {
        if mo.nstr() == 0 {
            return KeyAt::Stack(base);
        }
        let f = self.b.f(fid);
        let (mut at, mut ii, mut si) = (off::F_KEYBUF, base as u32, sbase);
        for k in 0..mo.nkeys as usize {
            if mo.str_keys & (1 << k) != 0 {
                copy_str(f, R8, at, R8, sslot(si));
                si += 1;
                at += MAXSTRINGLEN;
            } else {
                f.emit(Insn::ldx(DW, TMP, R8, stack(ii)));
                f.emit(Insn::stx(DW, R8, off::s16(at), TMP));
                ii += 1;
                at += 8;
            }
        }
        KeyAt::Buf
    }

    /// r0 = `bpf_map_lookup_elem(map, key)`.
    fn lookup(&mut self, fid: FuncId, m: &MapSpec, key: KeyAt) {
        self.key_ptr(fid, m, key);
        let f = self.b.f(fid);
        f.ld_map(R1, MapId::Global(m.global), None);
        f.emit(Insn::call_helper(helper::MAP_LOOKUP_ELEM));
    }

    /// After a failed lookup: insert a zero element and look it up again (r0); a full
    /// array is the run-time error "array overflow". The body holds the array's lock
    /// stripe, so no other body inserts meanwhile.
    fn insert_zero(
        &mut self,
        r: &mut Region<'_>,
        m: &MapSpec,
        key: KeyAt,
        pc: usize,
    ) -> Result<(), Error> {
        let fid = r.f;
        self.key_ptr(fid, m, key);
        let f = self.b.f(fid);
        f.ld_map(R1, MapId::Global(m.global), None);
        f.ld_map(R3, MapId::Zero, Some(0));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::call_helper(helper::MAP_UPDATE_ELEM));
        let ok = f.new_label();
        // The error is an `int` before Linux 6.4: test the low 32 bits.
        f.jmp32_imm(Cond::Sge, R0, 0, ok);
        self.error(r, ERR_ARRAY_FULL, pc);
        self.b.f(fid).bind(ok);
        self.lookup(fid, m, key);
        let f = self.b.f(fid);
        let found = f.new_label();
        f.jmp_imm(Cond::Ne, R0, 0, found);
        self.error(r, ERR_ARRAY_FULL, pc);
        self.b.f(fid).bind(found);
        Ok(())
    }

    /// Two distinct scratch registers (spilling operand values if needed), free until the
    /// next allocation.
    fn alloc2(&mut self, r: &mut Region<'_>) -> (Reg, Reg) {
        let x = self.alloc(r);
        r.vs.push(Val::Reg(x));
        let y = self.alloc(r);
        r.vs.pop();
        (x, y)
    }

    /// The field of string global `g` in [`MapId::Strings`]'s value.
    fn str_global(&self, g: i32) -> Result<i32, Error> {
        usize::try_from(g)
            .ok()
            .filter(|&g| g < self.nglobals)
            .map(|g| (g * MAXSTRINGLEN) as i32)
            .ok_or_else(|| Error::BadCode(format!("string global {g} does not exist")))
    }

    /// `SFormat` (`sprintf`) of a format the kernel prints as SystemTap does
    /// ([`otf_script::format::KernelFormat`]): the arguments array in `Frame::keybuf` after
    /// the first 128 bytes (integers from their stack slots, strings as pointers to their
    /// string slots, constants), `bpf_snprintf` into the zeroed first 128 bytes of the key
    /// buffer with the format in [`MapId::Formats`], then a copy into the result's slot (the
    /// first string argument's: the helper reads every argument before it writes). The
    /// formats it cannot print are native (`lower/sformat.rs`).
    fn sprintf(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let lit = otf_script::vm::sformat_kernel(&insn);
        let (at, kf) = self
            .formats
            .get(&lit)
            .cloned()
            .ok_or_else(|| Error::BadCode(format!("sprintf format literal {lit} at {pc}")))?;
        if let Some(pieces) = &kf.native {
            return self.sprintf_native(r, pc, pieces);
        }
        let n = (insn.imm & 0xffff) as usize;
        let ns = ((insn.imm >> 16) & 0xffff) as u32;
        let sd = r.shape.sdepth[&pc];
        if r.vs.len() < n || sd < ns {
            return Err(Error::BadCode(format!("sprintf operands at {pc}")));
        }
        let base = r.vs.len() - n;
        let s0 = sd - ns;
        self.flush(r);
        let (out, argv) = (off::F_KEYBUF, off::F_KEYBUF + MAXSTRINGLEN);
        let f = self.b.f(r.f);
        zero(f, out, SWORDS);
        for (j, a) in kf.args.iter().enumerate() {
            let to = off::s16(argv + 8 * j);
            match *a {
                otf_script::format::KernelArg::Int(k) if k < n => {
                    f.emit(Insn::ldx(DW, R1, R8, stack((base + k) as u32)));
                    f.emit(Insn::stx(DW, R8, to, R1));
                }
                otf_script::format::KernelArg::Str(k) if (k as u32) < ns => {
                    f.emit(Insn::mov(R1, R8));
                    f.emit(Insn::alu64_imm(Alu::Add, R1, sslot(s0 + k as u32) as i32));
                    f.emit(Insn::stx(DW, R8, to, R1));
                }
                otf_script::format::KernelArg::Const(c) => {
                    f.emit(Insn::st(DW, R8, to, i32::from(c)))
                }
                _ => return Err(Error::BadCode(format!("sprintf arguments at {pc}"))),
            }
        }
        f.emit(Insn::mov(R1, R8));
        f.emit(Insn::alu64_imm(Alu::Add, R1, out as i32));
        f.emit(Insn::mov_imm(R2, MAXSTRINGLEN as i32));
        f.ld_map(R3, MapId::Formats, Some(at as i32));
        if kf.args.is_empty() {
            f.emit(Insn::mov_imm(R4, 0));
        } else {
            f.emit(Insn::mov(R4, R8));
            f.emit(Insn::alu64_imm(Alu::Add, R4, argv as i32));
        }
        f.emit(Insn::mov_imm(R5, 8 * kf.args.len() as i32));
        f.emit(Insn::call_helper(helper::SNPRINTF));
        copy_str(f, R8, sslot(s0), R8, out);
        r.vs.truncate(base);
        Ok(())
    }

    /// Lower a string instruction (`SPush` to `SLen`; `SCall` is user space only, `SFormat`
    /// is [`Gen::sprintf`]).
    fn string_insn(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let op = insn.opcode().ok_or(Error::Internal("opcode"))?;
        let sd = r.shape.sdepth[&pc];
        let a = insn.arg;
        let fid = r.f;
        match op {
            Op::SPush => {
                let text = self
                    .strings
                    .get(a as usize)
                    .cloned()
                    .ok_or_else(|| Error::BadCode(format!("string literal {a} at {pc}")))?;
                let t = otf_script::vm::truncate(text);
                let mut bytes = [0u8; MAXSTRINGLEN];
                bytes[..t.len()].copy_from_slice(t.as_bytes());
                let f = self.b.f(fid);
                for (k, w) in bytes.chunks_exact(8).enumerate() {
                    let w = i64::from_ne_bytes(w.try_into().expect("8 bytes"));
                    let at = off::s16(sslot(sd) + 8 * k);
                    match i32::try_from(w) {
                        Ok(w) => f.emit(Insn::st(DW, R8, at, w)),
                        Err(_) => {
                            f.emit_all(&Insn::ld_imm64(TMP, 0, w as u64));
                            f.emit(Insn::stx(DW, R8, at, TMP));
                        }
                    }
                }
            }
            Op::SCtx if a == 1 || a == 2 => {
                // pp(), probefunc(): string a - 1 of the pidx's element of the names map.
                self.flush(r);
                let f = self.b.f(fid);
                f.emit(Insn::mov32(R1, R7));
                f.emit(Insn::stx(DW, R8, off::F_TMP, R1));
                f.ld_map(R1, MapId::Names, None);
                f.emit(Insn::mov(R2, R8));
                f.emit(Insn::alu64_imm(Alu::Add, R2, i32::from(off::F_TMP)));
                lookup_str(f, sslot(sd), MAXSTRINGLEN * (a as usize - 1));
            }
            Op::SCtx => {
                // execname(): the task's comm, NUL-padded to 16 bytes by the helper.
                self.flush(r);
                let f = self.b.f(fid);
                zero(f, sslot(sd) + 16, SWORDS - 2);
                f.emit(Insn::mov(R1, R8));
                f.emit(Insn::alu64_imm(Alu::Add, R1, sslot(sd) as i32));
                f.emit(Insn::mov_imm(R2, 16));
                f.emit(Insn::call_helper(helper::GET_CURRENT_COMM));
            }
            Op::SLdL => copy_str(self.b.f(fid), R8, sslot(sd), R8, slocal(a)),
            Op::SStL => copy_str(self.b.f(fid), R8, slocal(a), R8, sslot(sd - 1)),
            Op::SDup => copy_str(self.b.f(fid), R8, sslot(sd), R8, sslot(sd - 1)),
            Op::SPop => {}
            Op::SLdG | Op::SStG => {
                let field = self.str_global(a)?;
                let x = self.alloc(r);
                let f = self.b.f(fid);
                f.ld_map(x, MapId::Strings, Some(field));
                if op == Op::SLdG {
                    copy_str(f, R8, sslot(sd), x, 0);
                } else {
                    copy_str(f, x, 0, R8, sslot(sd - 1));
                }
            }
            Op::SCmp => {
                // Word by word; the first differing words decide, compared as big-endian
                // (byte-wise) unsigned numbers. Past the NUL both buffers are zero.
                let cmp = Op::from_u8(a as u8).ok_or(Error::Internal("string comparison"))?;
                let (x, y) = self.alloc2(r);
                let (sa, sb) = (sslot(sd - 2), sslot(sd - 1));
                let f = self.b.f(fid);
                let diff = f.new_label();
                let done = f.new_label();
                for k in 0..SWORDS {
                    f.emit(Insn::ldx(DW, x, R8, off::s16(sa + 8 * k)));
                    f.emit(Insn::ldx(DW, TMP, R8, off::s16(sb + 8 * k)));
                    f.jmp_reg(Cond::Ne, x, TMP, diff);
                }
                let equal = matches!(cmp, Op::Le | Op::Ge | Op::Eq);
                f.emit(Insn::mov_imm(y, equal as i32));
                f.ja(done);
                f.bind(diff);
                match cmp {
                    Op::Eq => f.emit(Insn::mov_imm(y, 0)),
                    Op::Ne => f.emit(Insn::mov_imm(y, 1)),
                    _ => {
                        let c = if matches!(cmp, Op::Lt | Op::Le) {
                            Cond::Lt
                        } else {
                            Cond::Gt
                        };
                        f.emit(Insn::to_be(x, 64));
                        f.emit(Insn::to_be(TMP, 64));
                        f.emit(Insn::mov_imm(y, 1));
                        f.emit(Insn::jmp_reg(c, x, TMP, 1));
                        f.emit(Insn::mov_imm(y, 0));
                    }
                }
                f.bind(done);
                r.vs.push(Val::Reg(y));
            }
            Op::SLen => {
                self.flush(r);
                strlen(self.b.f(fid), sslot(sd - 1));
                r.vs.push(Val::Reg(R0));
            }
            Op::SConcat => {
                // a . b: b copied after a's text by `bpf_probe_read_kernel_str`, which writes
                // at most 128 - len(a) bytes, its NUL included: the result has at most 127
                // bytes, and a's zero padding after it stays (the helper does not pad).
                self.flush(r);
                let (sa, sb) = (sslot(sd - 2), sslot(sd - 1));
                let f = self.b.f(fid);
                strlen(f, sa);
                f.emit(Insn::mov(R2, R0));
                f.emit(Insn::mov(R1, R8));
                f.emit(Insn::alu64_imm(Alu::Add, R1, sa as i32));
                f.emit(Insn::alu64_reg(Alu::Add, R1, R2));
                f.emit(Insn::mov_imm(R3, MAXSTRINGLEN as i32));
                f.emit(Insn::alu64_reg(Alu::Sub, R3, R2));
                f.emit(Insn::mov(R2, R3));
                f.emit(Insn::mov(R3, R8));
                f.emit(Insn::alu64_imm(Alu::Add, R3, sb as i32));
                f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL_STR));
            }
            _ => return Err(Error::Internal("a user-space-only instruction")),
        }
        Ok(())
    }

    /// `SRead` (`user_string`, `kernel_string` and their variants): zero the destination,
    /// `bpf_probe_read_{user,kernel}_str(dst, size, addr)` with SystemTap's size (a
    /// constant when `n` is, else clamped at run time); a negative result is the run-time
    /// error, with the address and the error code in the frame for the record, or (with a
    /// message) leaves the message, which is already where the result goes. With a
    /// message the string is read into the key buffer first, so that a fault keeps it.
    fn read_str(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let rs = ReadStr::unpack(insn.arg)
            .ok_or_else(|| Error::BadCode(format!("string read {:#x} at {pc}", insn.arg)))?;
        let sd = r.shape.sdepth[&pc];
        let base = r.vs.len() - 1 - usize::from(rs.n);
        let size = if rs.n {
            match r.vs[base + 1] {
                Val::Const(c) => Some(rs.size(Some(c))),
                _ => None,
            }
        } else {
            Some(rs.size(None))
        };
        self.flush(r);
        let (dst, result) = if rs.msg {
            (off::F_KEYBUF, sslot(sd - 1))
        } else {
            (sslot(sd), sslot(sd))
        };
        let fid = r.f;
        let f = self.b.f(fid);
        zero(f, dst, SWORDS);
        match size {
            Some(n) => f.emit(Insn::mov_imm(R2, n as i32)),
            None => {
                // clamp(n + 1, 1, max), signed, as the tapsets compute it.
                let max = rs.max_size() as i32;
                f.emit(Insn::ldx(DW, R2, R8, stack(base as u32 + 1)));
                f.emit(Insn::alu64_imm(Alu::Add, R2, 1));
                f.emit(Insn::jmp_imm(Cond::Sge, R2, 1, 1));
                f.emit(Insn::mov_imm(R2, 1));
                f.emit(Insn::jmp_imm(Cond::Sle, R2, max, 1));
                f.emit(Insn::mov_imm(R2, max));
            }
        }
        f.emit(Insn::mov(R1, R8));
        f.emit(Insn::alu64_imm(Alu::Add, R1, dst as i32));
        f.emit(Insn::ldx(DW, R3, R8, stack(base as u32)));
        f.emit(Insn::call_helper(if rs.kernel {
            helper::PROBE_READ_KERNEL_STR
        } else {
            helper::PROBE_READ_USER_STR
        }));
        let ok = f.new_label();
        let done = f.new_label();
        f.jmp_imm(Cond::Sge, R0, 0, ok);
        if rs.msg {
            f.ja(done);
        } else {
            f.emit(Insn::ldx(DW, R1, R8, stack(base as u32)));
            f.emit(Insn::stx(DW, R8, off::F_ERRADDR, R1));
            f.emit(Insn::stx(DW, R8, off::F_ERRARG, R0));
            let kind = if rs.kernel {
                ERR_KERNEL_STRING
            } else {
                ERR_USER_STRING
            };
            self.error(r, kind, pc);
        }
        let f = self.b.f(fid);
        f.bind(ok);
        if rs.msg {
            copy_str(f, R8, result, R8, dst);
        }
        f.bind(done);
        r.vs.truncate(base);
        Ok(())
    }

    /// The two top values of a comparison: the left one in a register, the right one an
    /// immediate when it is a small constant.
    fn operands(&mut self, r: &mut Region<'_>) -> (Reg, Operand) {
        let n = r.vs.len();
        let imm = match r.vs[n - 1] {
            Val::Const(c) => i32::try_from(c).ok(),
            _ => None,
        };
        let xa = self.in_reg(r, n - 2);
        let xb = match imm {
            Some(i) => Operand::Imm(i),
            None => Operand::Reg(self.in_reg(r, n - 1)),
        };
        (xa, xb)
    }

    /// `x` = a context value read without a helper.
    fn ctx_load(&mut self, fid: FuncId, id: Ctx, imm: i64, x: Reg) {
        let f = self.b.f(fid);
        match id {
            Ctx::Target => f.emit(Insn::ldx(DW, x, R9, off::TARGET_PID)),
            Ctx::RetVal => f.emit(Insn::ldx(DW, x, R8, off::F_RETVAL)),
            _ => {
                if (1..=6).contains(&imm) {
                    let o = off::s16(off::F_ARGS + 8 * (imm as usize - 1));
                    f.emit(Insn::ldx(DW, x, R8, o));
                    if id == Ctx::IntArg {
                        f.emit(Insn::alu64_imm(Alu::Lsh, x, 32));
                        f.emit(Insn::alu64_imm(Alu::Arsh, x, 32));
                    }
                } else {
                    f.emit(Insn::mov_imm(x, 0));
                }
            }
        }
    }

    /// r0 = the context value `id`.
    fn ctx(&mut self, fid: FuncId, id: Ctx) {
        let kinfo = *self.kinfo;
        let f = self.f(fid);
        match id {
            Ctx::Pid => {
                f.emit(Insn::call_helper(helper::GET_CURRENT_PID_TGID));
                f.emit(Insn::alu64_imm(Alu::Rsh, R0, 32));
            }
            Ctx::Tid => {
                f.emit(Insn::call_helper(helper::GET_CURRENT_PID_TGID));
                f.emit(Insn::mov32(R0, R0));
            }
            Ctx::Uid => {
                f.emit(Insn::call_helper(helper::GET_CURRENT_UID_GID));
                f.emit(Insn::mov32(R0, R0));
            }
            Ctx::Cpu => {
                f.emit(Insn::call_helper(helper::GET_SMP_PROCESSOR_ID));
                f.emit(Insn::mov32(R0, R0));
            }
            Ctx::TimeNs => {
                f.emit(Insn::call_helper(helper::KTIME_GET_BOOT_NS));
                f.emit(Insn::ldx(DW, R1, R9, off::TIME_OFFSET));
                f.emit(Insn::alu64_reg(Alu::Add, R0, R1));
            }
            Ctx::Target | Ctx::RetVal | Ctx::IntArg | Ctx::LongArg => {
                unreachable!("read without a helper: ctx_load")
            }
            Ctx::Ppid => {
                // task->real_parent->tgid, with offsets read from the kernel's BTF.
                f.emit(Insn::st(DW, R8, off::F_TMP, 0));
                f.emit(Insn::call_helper(helper::GET_CURRENT_TASK));
                f.emit(Insn::mov(R3, R0));
                f.emit(Insn::alu64_imm(Alu::Add, R3, kinfo.task_real_parent as i32));
                f.emit(Insn::mov(R1, R8));
                f.emit(Insn::alu64_imm(Alu::Add, R1, off::F_TMP as i32));
                f.emit(Insn::mov_imm(R2, 8));
                f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
                f.emit(Insn::ldx(DW, R3, R8, off::F_TMP));
                f.emit(Insn::st(DW, R8, off::F_TMP, 0));
                f.emit(Insn::alu64_imm(Alu::Add, R3, kinfo.task_tgid as i32));
                f.emit(Insn::mov(R1, R8));
                f.emit(Insn::alu64_imm(Alu::Add, R1, off::F_TMP as i32));
                f.emit(Insn::mov_imm(R2, 4));
                f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
                f.emit(Insn::ldx(W, R0, R8, off::F_TMP));
                f.emit(Insn::alu64_imm(Alu::Lsh, R0, 32));
                f.emit(Insn::alu64_imm(Alu::Arsh, R0, 32));
            }
        }
    }
}

/// Fill the staged record header: `kind`, the pidx (r7), `code` and `aux` (`None`: the
/// error kind and pc from the frame), cpu, pid, tid and comm (for an error: the error's
/// operands from the frame instead, `Frame::erraddr` and `Frame::errarg`).
pub(crate) fn header(f: &mut crate::asm::Func, kind: u32, code_aux: Option<(i32, i32)>) {
    let h = off::F_OUT;
    f.emit(Insn::st(W, R8, off::s16(h), kind as i32));
    f.emit(Insn::stx(W, R8, off::s16(h + 4), R7));
    match code_aux {
        Some((c, a)) => {
            f.emit(Insn::st(W, R8, off::s16(h + 8), c));
            f.emit(Insn::st(W, R8, off::s16(h + 12), a));
        }
        None => {
            f.emit(Insn::ldx(DW, R1, R8, off::F_ERR));
            f.emit(Insn::stx(W, R8, off::s16(h + 8), R1));
            f.emit(Insn::ldx(DW, R1, R8, off::F_ERRPC));
            f.emit(Insn::stx(W, R8, off::s16(h + 12), R1));
        }
    }
    f.emit(Insn::call_helper(helper::GET_SMP_PROCESSOR_ID));
    f.emit(Insn::stx(W, R8, off::s16(h + 16), R0));
    f.emit(Insn::call_helper(helper::GET_CURRENT_PID_TGID));
    f.emit(Insn::stx(W, R8, off::s16(h + 24), R0));
    f.emit(Insn::alu64_imm(Alu::Rsh, R0, 32));
    f.emit(Insn::stx(W, R8, off::s16(h + 20), R0));
    f.emit(Insn::st(W, R8, off::s16(h + 28), 0));
    if code_aux.is_none() {
        // An error record carries the error's operands where comm would be.
        f.emit(Insn::ldx(DW, R1, R8, off::F_ERRADDR));
        f.emit(Insn::stx(DW, R8, off::s16(h + REC_ERR_ADDR), R1));
        f.emit(Insn::ldx(DW, R1, R8, off::F_ERRARG));
        f.emit(Insn::stx(DW, R8, off::s16(h + REC_ERR_ARG), R1));
        return;
    }
    f.emit(Insn::mov(R1, R8));
    f.emit(Insn::alu64_imm(Alu::Add, R1, (h + 32) as i32));
    f.emit(Insn::mov_imm(R2, 16));
    f.emit(Insn::call_helper(helper::GET_CURRENT_COMM));
}

/// Send the staged record (`size` bytes) on the ring buffer; count it as dropped if full.
pub(crate) fn emit_record(f: &mut crate::asm::Func, size: i32) {
    f.ld_map(R1, MapId::Events, None);
    f.emit(Insn::mov(R2, R8));
    f.emit(Insn::alu64_imm(Alu::Add, R2, off::F_OUT as i32));
    f.emit(Insn::mov_imm(R3, size));
    f.emit(Insn::mov_imm(R4, 0));
    f.emit(Insn::call_helper(helper::RINGBUF_OUTPUT));
    f.emit(Insn::jmp_imm(Cond::Eq, R0, 0, 2));
    f.emit(Insn::mov_imm(R1, 1));
    f.emit(Insn::atomic64(Atomic::Add, R9, off::STATS_DROPPED, R1));
}

/// r0 = the length of the string at `r8 + at`, in `0..=127` (uses r0-r2). With the zero
/// padding, the word holding the NUL is the first whose last byte is zero, and the length
/// in it is the number of its low bytes that are not zero (BPF has no count-trailing-zeros:
/// a binary search).
///
/// The verifier follows each path of the search with the constants it computes; the
/// result goes through `Frame::tmp`, so that what follows sees one unknown length and
/// later uses of it never make those constants matter (which would keep the verifier from
/// merging the paths: a few `strlen`s in a row would multiply them). For the same reason the
/// words are loaded at fixed offsets, never at an offset computed from the search.
pub(crate) fn strlen(f: &mut crate::asm::Func, at: usize) {
    let found = f.new_label();
    for k in 0..SWORDS {
        f.emit(Insn::mov_imm(R0, 8 * k as i32));
        f.emit(Insn::ldx(DW, R1, R8, off::s16(at + 8 * k)));
        f.emit(Insn::mov(R2, R1));
        f.emit(Insn::alu64_imm(Alu::Rsh, R2, 56));
        f.jmp_imm(Cond::Eq, R2, 0, found);
    }
    // Not NUL-terminated (never: byte 127 is always zero): as long as a string can be.
    f.emit(Insn::mov_imm(R0, MAXSTRINGLEN as i32 - 1));
    let done = f.new_label();
    f.ja(done);
    f.bind(found);
    for (shift, add) in [(32, 4), (16, 2), (8, 1)] {
        f.emit(Insn::mov(R2, R1));
        f.emit(Insn::alu64_imm(Alu::Rsh, R2, shift));
        f.emit(Insn::jmp_imm(Cond::Eq, R2, 0, 2));
        f.emit(Insn::mov(R1, R2));
        f.emit(Insn::alu64_imm(Alu::Add, R0, add));
    }
    f.emit(Insn::jmp_imm(Cond::Eq, R1, 0, 1));
    f.emit(Insn::alu64_imm(Alu::Add, R0, 1));
    f.bind(done);
    f.emit(Insn::stx(DW, R8, off::F_TMP, R0));
    f.emit(Insn::ldx(DW, R0, R8, off::F_TMP));
    f.emit(Insn::alu64_imm(Alu::And, R0, MAXSTRINGLEN as i32 - 1));
}

/// Zero `n` u64 words at `r8 + start`.
pub(crate) fn zero(f: &mut crate::asm::Func, start: usize, n: usize) {
    for k in 0..n {
        f.emit(Insn::st(DW, R8, off::s16(start + 8 * k), 0));
    }
}

/// `<<<`: add r1 to the aggregate value at r0 (this CPU's copy), as SystemTap's
/// `__stp_stat_add`: count, sum, min, max, the `@variance` state, then the histogram
/// buckets. Uses r0-r5.
fn stat_add(f: &mut crate::asm::Func, m: &MapSpec) {
    let layout = m.stat();
    let variance = layout
        .variance
        .map(|o| (o as i16, i32::from(m.hist.variance.unwrap_or(0))));
    f.emit(Insn::ldx(DW, R2, R0, STAT_COUNT));
    let later = f.new_label();
    let common = f.new_label();
    f.jmp_imm(Cond::Ne, R2, 0, later);
    f.emit(Insn::stx(DW, R0, STAT_MIN, R1));
    f.emit(Insn::stx(DW, R0, STAT_MAX, R1));
    if let Some((at, shift)) = variance {
        // The first value: avg_s = v << shift, M2 = 0.
        f.emit(Insn::mov(R3, R1));
        if shift != 0 {
            f.emit(Insn::alu64_imm(Alu::Lsh, R3, shift));
        }
        f.emit(Insn::stx(DW, R0, at, R3));
        f.emit(Insn::st(DW, R0, at + 8, 0));
    }
    f.ja(common);
    f.bind(later);
    let skip_min = f.new_label();
    f.emit(Insn::ldx(DW, R3, R0, STAT_MIN));
    f.jmp_reg(Cond::Sge, R1, R3, skip_min);
    f.emit(Insn::stx(DW, R0, STAT_MIN, R1));
    f.bind(skip_min);
    let skip_max = f.new_label();
    f.emit(Insn::ldx(DW, R3, R0, STAT_MAX));
    f.jmp_reg(Cond::Sle, R1, R3, skip_max);
    f.emit(Insn::stx(DW, R0, STAT_MAX, R1));
    f.bind(skip_max);
    if let Some((at, shift)) = variance {
        variance_add(f, at, shift);
    }
    f.bind(common);
    f.emit(Insn::alu64_imm(Alu::Add, R2, 1));
    f.emit(Insn::stx(DW, R0, STAT_COUNT, R2));
    f.emit(Insn::ldx(DW, R3, R0, STAT_SUM));
    f.emit(Insn::alu64_reg(Alu::Add, R3, R1));
    f.emit(Insn::stx(DW, R0, STAT_SUM, R3));
    if let Some(log) = layout.log {
        log_bucket(f, HIST_LOG_BUCKET0 as i32);
        bucket_inc(f, log as i32, HIST_LOG_BUCKETS as i32 - 1);
    }
    if let Some((lin, n)) = layout.linear {
        let Some((lo, _, step)) = m.hist.linear else {
            return;
        };
        // r2 = v - lo; negative: bucket 0, else (v - lo) / step + 1, at most n - 1.
        f.emit(Insn::mov(R2, R1));
        match i32::try_from(lo) {
            Ok(lo) => f.emit(Insn::alu64_imm(Alu::Sub, R2, lo)),
            Err(_) => {
                f.emit_all(&Insn::ld_imm64(R3, 0, lo as u64));
                f.emit(Insn::alu64_reg(Alu::Sub, R2, R3));
            }
        }
        let under = f.new_label();
        let clamp = f.new_label();
        f.jmp_imm(Cond::Slt, R2, 0, under);
        match i32::try_from(step) {
            Ok(step) => f.emit(Insn::alu64_imm(Alu::Div, R2, step)),
            Err(_) => {
                f.emit_all(&Insn::ld_imm64(R3, 0, step as u64));
                f.emit(Insn::alu64_reg(Alu::Div, R2, R3));
            }
        }
        f.emit(Insn::alu64_imm(Alu::Add, R2, 1));
        f.ja(clamp);
        f.bind(under);
        f.emit(Insn::mov_imm(R2, 0));
        f.bind(clamp);
        bucket_inc(f, lin as i32, n as i32 - 1);
    }
}

/// Welford's step of SystemTap's `__stp_stat_add` for a value r1 added to a copy whose
/// count before it is r2 (> 0), with `avg_s` at `r0 + at` and `_M2` after it:
/// `delta = (int)((v << shift) - avg_s)`, `avg_s += delta / (count + 1)` (signed,
/// truncated: magnitudes divided, the sign put back), `_M2 += delta * ((v << shift) -
/// avg_s)`. Uses r3-r5.
fn variance_add(f: &mut crate::asm::Func, at: i16, shift: i32) {
    f.emit(Insn::mov(R3, R1));
    if shift != 0 {
        f.emit(Insn::alu64_imm(Alu::Lsh, R3, shift));
    }
    f.emit(Insn::ldx(DW, R4, R0, at));
    f.emit(Insn::alu64_reg(Alu::Sub, R3, R4));
    // A C int: the low 32 bits, sign-extended.
    f.emit(Insn::alu64_imm(Alu::Lsh, R3, 32));
    f.emit(Insn::alu64_imm(Alu::Arsh, R3, 32));
    f.emit(Insn::mov(R4, R3));
    f.emit(Insn::jmp_imm(Cond::Sge, R4, 0, 1));
    f.emit(Insn::neg(R4));
    f.emit(Insn::mov(R5, R2));
    f.emit(Insn::alu64_imm(Alu::Add, R5, 1));
    f.emit(Insn::alu64_reg(Alu::Div, R4, R5));
    f.emit(Insn::jmp_imm(Cond::Sge, R3, 0, 1));
    f.emit(Insn::neg(R4));
    f.emit(Insn::ldx(DW, R5, R0, at));
    f.emit(Insn::alu64_reg(Alu::Add, R5, R4));
    f.emit(Insn::stx(DW, R0, at, R5));
    f.emit(Insn::mov(R4, R1));
    if shift != 0 {
        f.emit(Insn::alu64_imm(Alu::Lsh, R4, shift));
    }
    f.emit(Insn::alu64_reg(Alu::Sub, R4, R5));
    f.emit(Insn::alu64_reg(Alu::Mul, R4, R3));
    f.emit(Insn::ldx(DW, R5, R0, at + 8));
    f.emit(Insn::alu64_reg(Alu::Add, R5, R4));
    f.emit(Insn::stx(DW, R0, at + 8, R5));
}

/// r2 = the `@hist_log` bucket of r1 (SystemTap's `_stp_val_to_bucket`): `bucket0` for 0,
/// `bucket0 + bits` for positive values, `bucket0 - bits` for negative ones, where `bits` is
/// the bit length of |v| (BPF has no count-leading-zeros: a binary search). Uses r2-r5.
fn log_bucket(f: &mut crate::asm::Func, bucket0: i32) {
    let done = f.new_label();
    f.emit(Insn::mov_imm(R2, bucket0));
    f.jmp_imm(Cond::Eq, R1, 0, done);
    f.emit(Insn::mov(R3, R1));
    let pos = f.new_label();
    f.jmp_imm(Cond::Sge, R3, 0, pos);
    f.emit(Insn::neg(R3));
    f.bind(pos);
    f.emit(Insn::mov_imm(R4, 1));
    for shift in [32, 16, 8, 4, 2, 1] {
        let next = f.new_label();
        f.emit(Insn::mov(R5, R3));
        f.emit(Insn::alu64_imm(Alu::Rsh, R5, shift));
        f.jmp_imm(Cond::Eq, R5, 0, next);
        f.emit(Insn::mov(R3, R5));
        f.emit(Insn::alu64_imm(Alu::Add, R4, shift));
        f.bind(next);
    }
    let neg = f.new_label();
    f.jmp_imm(Cond::Slt, R1, 0, neg);
    f.emit(Insn::alu64_reg(Alu::Add, R2, R4));
    f.ja(done);
    f.bind(neg);
    f.emit(Insn::alu64_reg(Alu::Sub, R2, R4));
    f.bind(done);
}

/// Increment the bucket r2 (clamped to `0..=last`) of the buckets at `r0 + at`.
fn bucket_inc(f: &mut crate::asm::Func, at: i32, last: i32) {
    let ok = f.new_label();
    f.jmp_imm(Cond::Le, R2, last, ok);
    f.emit(Insn::mov_imm(R2, last));
    f.bind(ok);
    // The verifier needs the offset's bounds: unsigned `r2 <= last` above, and a mask.
    f.emit(Insn::alu64_imm(Alu::And, R2, 0x7fff));
    f.emit(Insn::alu64_imm(Alu::Lsh, R2, 3));
    f.emit(Insn::mov(R3, R0));
    f.emit(Insn::alu64_reg(Alu::Add, R3, R2));
    f.emit(Insn::ldx(DW, R4, R3, at as i16));
    f.emit(Insn::alu64_imm(Alu::Add, R4, 1));
    f.emit(Insn::stx(DW, R3, at as i16, R4));
}
