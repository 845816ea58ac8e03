//! Expressions of the generator: each pushes exactly one value.

use otf_script::bytecode::{Ctx, Insn, Op, MAX_LOCALS, MAX_STACK};
use otf_script::vm;

use super::{Gen, Mode};
use crate::common::{a, ctx, i};

impl Gen<'_> {
    // ---- expressions: each pushes exactly one value; needs room() >= 1 ----

    pub(super) fn expr(&mut self, depth: u32) {
        assert!(self.room() >= 1, "generator bug: no room for an expression");
        if self.mode == Mode::Body && self.sroom() >= 2 && self.rng.chance(4) {
            return self.scmp();
        }
        if self.mode == Mode::Body && self.sroom() >= 2 && self.rng.chance(2) {
            return self.slen();
        }
        if self.mode == Mode::Body && self.sroom() >= 2 && self.rng.chance(3) {
            return self.sfn_int();
        }
        if depth == 0 || self.room() < 2 || self.rng.chance(20) {
            return self.leaf();
        }
        let d = depth - 1;
        let body = self.mode == Mode::Body;
        let branches = !self.straight;
        match self.rng.below(100) {
            0..=33 => {
                self.expr(d);
                self.expr(d);
                let op = self.binop();
                self.op(op);
            }
            34..=41 => {
                self.expr(d);
                let op = self.rng.pick(&[Op::Neg, Op::LNot, Op::BNot]);
                self.op(op);
            }
            42..=49 => self.edge(d),
            50..=57 if branches => self.logic(d),
            58..=63 if branches => self.ternary(d),
            64..=69 if self.mode == Mode::Cond && self.can_map_expr() => self.map_expr(d),
            64..=67 if body => {
                // Not a compiler shape: the operator applied to a value and its copy.
                self.expr(d);
                self.op(Op::Dup);
                let op = self.binop();
                self.op(op);
            }
            68..=74 if body => self.assign_expr(d),
            75..=78 if body => self.incdec_expr(),
            79..=82 if self.mode != Mode::Cond => self.randint(d),
            83..=88 if self.mode != Mode::Cond => self.time_or_cpu(),
            89..=95 if body && branches && self.frames.len() < 3 => self.call(d),
            96..=99 if self.can_map_expr() => self.map_expr(d),
            _ => self.leaf(),
        }
    }

    pub(super) fn leaf(&mut self) {
        let k = self.rng.below(100);
        match self.mode {
            Mode::Cond if k < 50 => self.push_value(),
            Mode::Cond => {
                let g = self.global();
                self.emit(a(Op::LdG, g));
            }
            Mode::Entry if k < 35 => self.push_value(),
            Mode::Entry if k < 70 => {
                let g = self.global();
                self.emit(a(Op::LdG, g));
            }
            Mode::Entry => self.ctx_leaf(),
            Mode::Body => match k {
                0..=24 => self.push_value(),
                25..=44 => {
                    let g = self.global();
                    self.emit(a(Op::LdG, g));
                }
                45..=74 if self.vars.1 > 0 => {
                    let v = self.var().unwrap_or(0);
                    self.emit(a(Op::LdL, v));
                }
                75..=87 => self.ctx_leaf(),
                88..=99 if self.entry_slots > 0 => {
                    let s = self.rng.below(self.entry_slots as u64) as i32;
                    self.emit(a(Op::EntryLoad, s));
                }
                _ => self.push_value(),
            },
        }
    }

    pub(super) fn push_value(&mut self) {
        let v = self.rng.value();
        self.push(v);
    }

    /// A context value that a test run reproduces exactly.
    fn ctx_leaf(&mut self) {
        let mut ids = vec![
            Ctx::Pid,
            Ctx::Tid,
            Ctx::Ppid,
            Ctx::Uid,
            Ctx::Target,
            Ctx::IntArg,
            Ctx::LongArg,
        ];
        if self.mode == Mode::Body {
            ids.push(Ctx::RetVal);
        }
        if self.env.cpu.is_some() {
            ids.push(Ctx::Cpu);
        }
        let id = self.rng.pick(&ids);
        let param = match id {
            Ctx::IntArg | Ctx::LongArg => self.rng.pick(&[1, 2, 3, 4, 5, 6, 0, 7, -1]),
            _ => 0,
        };
        self.emit(ctx(id, param));
    }

    /// An operator with an edge operand: division by 0 or -1, `i64::MIN / -1`, shifts by big
    /// or negative counts, overflowing arithmetic.
    fn edge(&mut self, d: u32) {
        let (op, v) = match self.rng.below(3) {
            0 => (
                self.rng.pick(&[Op::Div, Op::Mod]),
                self.rng
                    .pick(&[0, -1, -1, -1, 1, -2, 2, 3, 7, i64::MIN, i64::MAX, 5]),
            ),
            1 => (
                self.rng.pick(&[Op::Shl, Op::Shr]),
                self.rng
                    .pick(&[0, 1, 31, 32, 63, 64, 65, 127, -1, -63, -64, -65, i64::MIN]),
            ),
            _ => (
                self.rng.pick(&[Op::Add, Op::Sub, Op::Mul]),
                self.rng.pick(&[i64::MAX, i64::MIN, -1, 2]),
            ),
        };
        if self.rng.chance(15) {
            self.push(i64::MIN);
        } else {
            self.expr(d);
        }
        self.push(v);
        self.op(op);
    }

    /// `a && b` / `a || b`, as the compiler emits them.
    fn logic(&mut self, d: u32) {
        let (jop, fall, taken) = if self.rng.chance(50) {
            (Op::Jz, 1, 0)
        } else {
            (Op::Jnz, 0, 1)
        };
        let d0 = self.sp;
        self.expr(d);
        let j1 = self.jump(jop);
        self.expr(d);
        let j2 = self.jump(jop);
        self.push(fall);
        let je = self.jump(Op::Jmp);
        self.patch(j1);
        self.patch(j2);
        self.sp = d0;
        self.push(taken);
        self.patch(je);
    }

    /// `c ? a : b`.
    fn ternary(&mut self, d: u32) {
        let d0 = self.sp;
        self.expr(d);
        let jz = self.jump(Op::Jz);
        self.expr(d);
        let je = self.jump(Op::Jmp);
        self.patch(jz);
        self.sp = d0;
        self.expr(d);
        self.patch(je);
    }

    /// `(x = e)`, `(x op= e)` as a value (`Dup` before the store). Needs room() >= 2.
    fn assign_expr(&mut self, d: u32) {
        let var = self.var().filter(|_| self.rng.chance(50));
        let (ld, st, x) = match var {
            Some(v) => (Op::LdL, Op::StL, v),
            None => (Op::LdG, Op::StG, self.global()),
        };
        if self.rng.chance(50) {
            self.expr(d);
        } else {
            self.emit(a(ld, x));
            self.expr(d);
            let op = self.binop();
            self.op(op);
        }
        self.op(Op::Dup);
        self.emit(a(st, x));
    }

    /// `x++`, `--x` as a value.
    fn incdec_expr(&mut self) {
        let var = self.var().filter(|_| self.rng.chance(50));
        let (ld, st, x) = match var {
            Some(v) => (Op::LdL, Op::StL, v),
            None => (Op::LdG, Op::StG, self.global()),
        };
        let arith = self.rng.pick(&[Op::Add, Op::Sub]);
        let post = self.room() >= 3 && self.rng.chance(50);
        self.emit(a(ld, x));
        if post {
            self.op(Op::Dup);
        }
        self.push(1);
        self.op(arith);
        if !post {
            self.op(Op::Dup);
        }
        self.emit(a(st, x));
    }

    /// A `randint(n)` whose value does not matter (or the error for `n <= 0`). Needs
    /// room() >= 2.
    fn randint(&mut self, d: u32) {
        match self.rng.below(10) {
            // randint(1) == 0
            0 => {
                self.push(1);
                self.op(Op::RandInt);
            }
            // randint(n) >= 0
            1..=3 => {
                self.randint_n(d);
                self.op(Op::RandInt);
                self.push(0);
                self.op(Op::Ge);
            }
            // n = e; randint(n) < n
            4..=6 if self.mode == Mode::Body && self.top < MAX_LOCALS as i32 => {
                let t = self.slot().unwrap_or(0);
                self.randint_n(d);
                self.emit(a(Op::StL, t));
                self.emit(a(Op::LdL, t));
                self.op(Op::RandInt);
                self.emit(a(Op::LdL, t));
                self.op(Op::Lt);
                self.top -= 1;
            }
            // randint(n) < n, n evaluated twice: only for expressions without side effects
            4..=6 if self.mode == Mode::Entry => {
                let start = self.code.len();
                let d0 = self.sp;
                self.randint_n(d);
                let n: Vec<Insn> = self.code[start..].to_vec();
                let mut probe = n.clone();
                probe.push(i(Op::Ret));
                let depth = vm::verify(&probe, 0..probe.len()).unwrap_or(MAX_STACK);
                self.op(Op::RandInt);
                if d0 + 1 + depth <= MAX_STACK {
                    self.code.extend_from_slice(&n);
                    self.sp = d0 + 2;
                    self.op(Op::Lt);
                } else {
                    self.push(0);
                    self.op(Op::Ge);
                }
            }
            // n > randint(n), with one evaluation of n (not a compiler shape)
            _ => {
                self.randint_n(d);
                self.op(Op::Dup);
                self.op(Op::RandInt);
                self.op(Op::Gt);
            }
        }
    }

    /// The range of a `randint`: mostly positive, sometimes anything, now and then <= 0 (one
    /// use in 25 fails, so that most programs run on).
    fn randint_n(&mut self, d: u32) {
        match self.rng.below(50) {
            0..=27 => {
                let n = 1 + self.rng.below(100) as i64;
                self.push(n);
            }
            28..=45 => {
                // (e & 255) + 1
                self.expr(d);
                self.push(255);
                self.op(Op::And);
                self.push(1);
                self.op(Op::Add);
            }
            46..=47 => self.expr(d),
            _ => {
                let n = self.rng.pick(&[0, -1, i64::MIN]);
                self.push(n);
            }
        }
    }

    /// `gettimeofday_*()` or `cpu()` in a value-independent form. Needs room() >= 2.
    fn time_or_cpu(&mut self) {
        let t = ctx(Ctx::TimeNs, 0);
        match self.rng.below(5) {
            // gettimeofday_ns() > 0
            0 => {
                self.emit(t);
                self.push(0);
                self.op(Op::Gt);
            }
            // gettimeofday_us/ms/s() >= 0
            1 => {
                self.emit(t);
                let d = self.rng.pick(&[1_000, 1_000_000, 1_000_000_000]);
                self.push(d);
                self.op(Op::Div);
                self.push(0);
                self.op(Op::Ge);
            }
            // gettimeofday_ns() <= gettimeofday_ns()
            2 => {
                self.emit(t);
                self.emit(t);
                self.op(Op::Le);
            }
            // t - t, one read (not a compiler shape)
            3 if self.mode == Mode::Body => {
                self.emit(t);
                self.op(Op::Dup);
                self.op(Op::Sub);
            }
            // cpu() >= 0
            _ => {
                self.emit(ctx(Ctx::Cpu, 0));
                self.push(0);
                self.op(Op::Ge);
            }
        }
    }

    /// An inlined call of a function with 0..3 parameters and 0..2 locals, as the compiler
    /// inlines it: arguments stored into a fresh frame, locals zeroed, the body's statements
    /// (with `return e` jumping to the end with `e` on the stack), and `Push 0` when the body
    /// falls off its end. Pushes the return value.
    pub(super) fn call(&mut self, d: u32) {
        let nparams = self.rng.below(4) as i32;
        let size = nparams + self.rng.below(3) as i32;
        if self.top + size + 2 > MAX_LOCALS as i32 || self.room() < nparams as usize + 1 {
            return self.leaf();
        }
        for _ in 0..nparams {
            self.expr(d.min(1));
        }
        let base = self.top;
        self.top += size;
        for k in (0..nparams).rev() {
            self.emit(a(Op::StL, base + k));
        }
        for s in nparams..size {
            self.push(0);
            self.emit(a(Op::StL, base + s));
        }
        let saved_vars = std::mem::replace(&mut self.vars, (base, size));
        let saved_stmt_sp = std::mem::replace(&mut self.stmt_sp, self.sp);
        let saved_loops = std::mem::take(&mut self.loops);
        self.frames.push(Vec::new());
        let n = 1 + self.rng.below(3) as u32;
        self.block(n, d.min(2));
        if self.rng.chance(50) {
            // A final `return e` falls through.
            self.expr(1);
        } else {
            self.push(0);
        }
        for r in self.frames.pop().unwrap_or_default() {
            self.patch(r);
        }
        self.sp = self.stmt_sp + 1;
        self.vars = saved_vars;
        self.stmt_sp = saved_stmt_sp;
        self.loops = saved_loops;
        self.top = base;
    }
}
