//! Statements of the generator: each leaves the stack as it found it.

use otf_script::bytecode::{Insn, Op, MAX_ENTRY_SLOTS, MAX_OUT_ARGS, MAX_OUT_STRS, MAX_STEPS};
use otf_script::store::MemStore;
use otf_script::vm::{self, End};

use otf_bpf::layout::MAX_LOOP_NEST;

use super::{Gen, Loop, BODY_VARS, FORMATS};
use crate::common::{a, i, out, push};

impl Gen<'_> {
    // ---- statements: each leaves the stack at stmt_sp ----

    pub(super) fn block(&mut self, n: u32, depth: u32) {
        for _ in 0..n {
            if self.code.len() >= self.limit {
                break;
            }
            self.stmt(depth);
        }
    }

    fn stmt(&mut self, depth: u32) {
        self.sp = self.stmt_sp;
        let ed = if depth > 1 { 3 } else { 2 };
        let room = self.room();
        let nested = depth > 0 && !self.straight && room >= 3;
        // The native code runs each loop in its own bpf_loop frame; deeper nests are refused.
        let can_loop = nested && self.loop_nest < MAX_LOOP_NEST;
        match self.rng.below(100) {
            0..=15 => self.assign_var(ed),
            16..=29 => self.assign_global(ed),
            30..=34 => {
                self.expr(ed);
                self.op(Op::Pop);
            }
            35..=44 if !self.straight => self.output(),
            45..=56 if nested => self.if_stmt(depth),
            57..=63 if can_loop => self.for_loop(depth),
            64..=67 if can_loop => self.while_loop(depth),
            // `foreach` (the body is the loop's; a limit 0 or an empty array skips it).
            86..=88 if can_loop && !self.maps.is_empty() => self.foreach_stmt(depth),
            68..=72 if !self.loops.is_empty() && !self.straight => self.break_continue(),
            73..=76 if !self.frames.is_empty() && !self.straight => self.return_stmt(),
            77..=80 if !self.straight && room >= 2 && self.frames.len() < 3 => {
                self.call(2);
                self.op(Op::Pop);
            }
            81 => self.op(Op::Exit),
            82..=83 if !self.straight => self.guarded(Op::Next, 70),
            84 if !self.straight => self.guarded(Op::Skip, 80),
            85 => self.op(Op::Nop),
            86..=95 if !self.maps.is_empty() => self.map_stmt(ed),
            96..=99 if self.sroom() >= 2 => self.string_stmt(),
            _ => self.assign_var(ed),
        }
        self.sp = self.stmt_sp;
    }

    /// `x = e`, `x op= e`, `x++`/`x--` on a variable of the frame.
    pub(super) fn assign_var(&mut self, ed: u32) {
        let Some(v) = self.var() else {
            return self.assign_global(ed);
        };
        self.assign(Op::LdL, Op::StL, v, ed);
    }

    fn assign_global(&mut self, ed: u32) {
        let g = self.global();
        self.assign(Op::LdG, Op::StG, g, ed);
    }

    fn assign(&mut self, ld: Op, st: Op, x: i32, ed: u32) {
        let compound = self.room() >= 2;
        match self.rng.below(4) {
            2 if compound => {
                self.emit(a(ld, x));
                self.expr(ed);
                let op = self.binop();
                self.op(op);
            }
            3 if compound => {
                self.emit(a(ld, x));
                self.push(1);
                let op = self.rng.pick(&[Op::Add, Op::Sub]);
                self.op(op);
            }
            _ => self.expr(ed),
        }
        self.emit(a(st, x));
    }

    /// `printf` with 0..=16 integer arguments.
    fn output(&mut self) {
        let n = match self.rng.below(10) {
            0..=5 => self.rng.below(4),
            6..=8 => self.rng.below(MAX_OUT_ARGS as u64 + 1),
            _ => MAX_OUT_ARGS as u64,
        }
        .min(self.room() as u64);
        for _ in 0..n {
            self.expr(2);
        }
        // String arguments after the integer ones, now and then.
        let ns = if self.rng.chance(30) {
            self.rng
                .below(MAX_OUT_STRS as u64 + 1)
                .min(self.sroom() as u64)
        } else {
            0
        };
        for _ in 0..ns {
            self.sexpr();
        }
        let fmt = self.rng.below(FORMATS) as i32;
        self.emit(out(fmt, n as i64 | (ns as i64) << 16));
    }

    fn if_stmt(&mut self, depth: u32) {
        self.expr(3);
        let n = 1 + self.rng.below(3) as u32;
        match self.rng.below(3) {
            0 => {
                let jz = self.jump(Op::Jz);
                self.block(n, depth - 1);
                self.patch(jz);
            }
            1 => {
                let jz = self.jump(Op::Jz);
                self.block(n, depth - 1);
                let j = self.jump(Op::Jmp);
                self.patch(jz);
                let m = 1 + self.rng.below(3) as u32;
                self.block(m, depth - 1);
                self.patch(j);
            }
            _ => {
                // if (!e), as Jnz
                let jnz = self.jump(Op::Jnz);
                self.block(n, depth - 1);
                self.patch(jnz);
            }
        }
    }

    /// A loop bound: small, data-dependent (`e & 7`, re-evaluated each iteration), or now and
    /// then far beyond MAXACTION.
    fn loop_bound(&mut self) {
        if self.rng.chance(2) {
            return self.push(30_000);
        }
        let max = [13, 6, 4, 3][self.loop_nest.min(3)];
        match self.rng.below(4) {
            0 | 1 => {
                let n = self.rng.below(max) as i64;
                self.push(n);
            }
            2 => {
                self.expr(1);
                self.push(7);
                self.op(Op::And);
            }
            _ => {
                let g = self.global();
                self.emit(a(Op::LdG, g));
                self.push(3);
                self.op(Op::And);
            }
        }
    }

    /// `for (c = 0; c < N; c++) { ... }` with `continue` to the step.
    fn for_loop(&mut self, depth: u32) {
        let Some(c) = self.slot() else {
            return self.assign_var(2);
        };
        self.push(0);
        self.emit(a(Op::StL, c));
        let top = self.code.len();
        self.emit(a(Op::LdL, c));
        self.loop_bound();
        self.op(Op::Lt);
        let jz = self.jump(Op::Jz);
        self.loops.push(Loop::default());
        self.loop_nest += 1;
        let n = 1 + self.rng.below(3) as u32;
        self.block(n, depth - 1);
        self.loop_nest -= 1;
        let l = self.loops.pop().unwrap_or_default();
        for j in l.continues {
            self.patch(j);
        }
        self.emit(a(Op::LdL, c));
        self.push(1);
        self.op(Op::Add);
        self.emit(a(Op::StL, c));
        self.jump_back(Op::Jmp, top);
        self.patch(jz);
        for j in l.breaks {
            self.patch(j);
        }
        self.top -= 1;
    }

    /// `while (c < K && e) { c++; ... }` with `continue` to the test: a loop on data, bounded.
    fn while_loop(&mut self, depth: u32) {
        let Some(c) = self.slot() else {
            return self.assign_var(2);
        };
        self.push(0);
        self.emit(a(Op::StL, c));
        let top = self.code.len();
        let d0 = self.sp;
        self.emit(a(Op::LdL, c));
        self.loop_bound();
        self.op(Op::Lt);
        let j1 = self.jump(Op::Jz);
        self.expr(2);
        let j2 = self.jump(Op::Jz);
        self.push(1);
        let je = self.jump(Op::Jmp);
        self.patch(j1);
        self.patch(j2);
        self.sp = d0;
        self.push(0);
        self.patch(je);
        let jz = self.jump(Op::Jz);
        self.emit(a(Op::LdL, c));
        self.push(1);
        self.op(Op::Add);
        self.emit(a(Op::StL, c));
        self.loops.push(Loop::default());
        self.loop_nest += 1;
        let n = 1 + self.rng.below(3) as u32;
        self.block(n, depth - 1);
        self.loop_nest -= 1;
        let l = self.loops.pop().unwrap_or_default();
        for j in l.continues {
            self.patch_to(j, top);
        }
        self.jump_back(Op::Jmp, top);
        self.patch(jz);
        for j in l.breaks {
            self.patch(j);
        }
        self.top -= 1;
    }

    /// `if (e) break;` / `if (e) continue;`, sometimes unguarded (dead code follows).
    fn break_continue(&mut self) {
        let guarded = self.rng.chance(80);
        let jz = guarded.then(|| {
            self.expr(2);
            self.jump(Op::Jz)
        });
        let j = self.jump(Op::Jmp);
        let l = self.loops.last_mut().expect("inside a loop");
        if self.rng.chance(50) {
            l.breaks.push(j);
        } else {
            l.continues.push(j);
        }
        if let Some(jz) = jz {
            self.patch(jz);
        }
    }

    /// `return e` in an inlined function: jumps to the end of the call with `e` on the stack.
    fn return_stmt(&mut self) {
        let jz = self.rng.chance(70).then(|| {
            self.expr(2);
            self.jump(Op::Jz)
        });
        self.expr(2);
        let j = self.jump(Op::Jmp);
        self.frames.last_mut().expect("inside a function").push(j);
        self.sp = self.stmt_sp;
        if let Some(jz) = jz {
            self.patch(jz);
        }
    }

    /// `if (e) next` (or a `Skip`); unguarded now and then.
    fn guarded(&mut self, op: Op, percent: u64) {
        let jz = self.rng.chance(percent).then(|| {
            self.expr(2);
            self.jump(Op::Jz)
        });
        self.op(op);
        if let Some(jz) = jz {
            self.patch(jz);
        }
    }

    /// The rest of a body with a straight-line loop whose bound is tuned, with the reference
    /// VM, so that the body ends within a few instructions of MAXACTION (before or after), and
    /// `Nop`s after the loop to land exactly there. Falls back to a random bound when the
    /// body does not run to its end linearly.
    pub(super) fn near_budget_body(&mut self, start: &MemStore) -> Vec<Insn> {
        self.straight = true;
        let n = self.rng.below(3) as u32;
        self.block(n, 0);
        let c = self.slot().unwrap_or(BODY_VARS);
        self.push(0);
        self.emit(a(Op::StL, c));
        let top = self.code.len();
        self.emit(a(Op::LdL, c));
        let bound = self.emit(push(0));
        self.op(Op::Lt);
        let jz = self.jump(Op::Jz);
        self.loops.push(Loop::default());
        let n = 1 + self.rng.below(4) as u32;
        self.block(n, 0);
        let l = self.loops.pop().unwrap_or_default();
        for j in l.continues {
            self.patch(j);
        }
        self.emit(a(Op::LdL, c));
        self.push(1);
        self.op(Op::Add);
        self.emit(a(Op::StL, c));
        self.jump_back(Op::Jmp, top);
        self.patch(jz);
        for j in l.breaks {
            self.patch(j);
        }
        let pad_at = self.code.len();
        let n = self.rng.below(3) as u32;
        self.block(n, 0);
        self.emit(i(Op::Next));
        let mut code = std::mem::take(&mut self.code);

        let env = self.env;
        let steps = |code: &mut Vec<Insn>, n: i64| -> Option<i64> {
            code[bound].imm = n;
            let mut g = start.clone();
            let mut hit = env.fixed_hit([0; MAX_ENTRY_SLOTS]);
            let o = vm::run(code.as_slice(), 0, &mut g, &mut hit, &mut |_| {}).ok()?;
            (o.end == End::Next).then_some(o.steps as i64)
        };
        let s = [0, 1, 2].map(|n| steps(&mut code, n));
        let delta = self.rng.below(7) as i64 - 3;
        let goal = MAX_STEPS as i64 + delta;
        match s {
            [Some(s0), Some(s1), Some(s2)] if s1 > s0 && s2 - s1 == s1 - s0 && goal >= s0 => {
                let per = s1 - s0;
                code[bound].imm = (goal - s0) / per;
                let pad = ((goal - s0) % per) as usize;
                code.splice(pad_at..pad_at, std::iter::repeat_n(i(Op::Nop), pad));
            }
            _ => code[bound].imm = 500 + self.rng.below(2500) as i64,
        }
        code
    }
}
