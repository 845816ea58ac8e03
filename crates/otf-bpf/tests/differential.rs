//! Differential test: random bytecode programs run in the BPF VM (through the test-entry
//! program, `BPF_PROG_TEST_RUN`) and in the reference VM (`otf_script::vm::run`) must agree
//! on globals, outcome, error kind and pc, and output records.

mod common;

use common::*;
use otf_bpf::{
    cookie, Event, LoadOptions, ProbeSlot, ProgKind, Runtime, RuntimeErrorKind, RuntimeImage,
};
use otf_script::bytecode::{Insn, Op};
use otf_script::vm::{self, End, FixedHit, OutRecord, VmError};

const NGLOBALS: usize = 16;
/// Locals 0..LOOP_BASE are free for statements; loop counters use LOOP_BASE.. .
const LOOP_BASE: i32 = 56;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn value(&mut self) -> i64 {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => -1,
            3 => i64::MIN,
            4 => i64::MAX,
            5 => self.below(64) as i64,
            6 => -(self.below(1000) as i64),
            _ => self.next() as i64,
        }
    }
}

struct Gen<'a> {
    rng: &'a mut Rng,
    code: Vec<Insn>,
    loop_depth: i32,
}

const BINOPS: &[Op] = &[
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::Div,
    Op::Mod,
    Op::Shl,
    Op::Shr,
    Op::And,
    Op::Or,
    Op::Xor,
    Op::Lt,
    Op::Le,
    Op::Gt,
    Op::Ge,
    Op::Eq,
    Op::Ne,
];

impl Gen<'_> {
    fn emit(&mut self, insn: Insn) {
        self.code.push(insn);
    }

    /// An expression: pushes exactly one value; uses at most `depth + 2` stack slots.
    fn expr(&mut self, depth: u32) {
        let leaf = depth == 0 || self.rng.chance(30);
        if leaf {
            match self.rng.below(3) {
                0 => {
                    let v = self.rng.value();
                    self.emit(push(v))
                }
                1 => {
                    let s = self.rng.below(8) as i32;
                    self.emit(a(Op::LdL, s))
                }
                _ => {
                    let g = self.rng.below(NGLOBALS as u64) as i32;
                    self.emit(a(Op::LdG, g))
                }
            }
            return;
        }
        match self.rng.below(10) {
            0 => {
                self.expr(depth - 1);
                let op = [Op::Neg, Op::LNot, Op::BNot][self.rng.below(3) as usize];
                self.emit(i(op));
            }
            1 => {
                // x; dup; op
                self.expr(depth - 1);
                self.emit(i(Op::Dup));
                let mut op = BINOPS[self.rng.below(BINOPS.len() as u64) as usize];
                if matches!(op, Op::Div | Op::Mod) && self.rng.chance(95) {
                    op = Op::Add;
                }
                self.emit(i(op));
            }
            2 => {
                // Division by a value that may be -1 or 0.
                self.expr(depth - 1);
                let d = [-1, 0, 1, 3, 7, -5, i64::MIN, 2][self.rng.below(8) as usize];
                self.emit(push(d));
                let op = if self.rng.chance(50) {
                    Op::Div
                } else {
                    Op::Mod
                };
                self.emit(i(op));
            }
            _ => {
                self.expr(depth - 1);
                self.expr(depth - 1);
                let mut op = BINOPS[self.rng.below(BINOPS.len() as u64) as usize];
                if matches!(op, Op::Div | Op::Mod) && self.rng.chance(95) {
                    op = Op::Xor;
                }
                self.emit(i(op));
            }
        }
    }

    fn block(&mut self, n: u32, depth: u32) {
        for _ in 0..n {
            self.stmt(depth);
        }
    }

    /// A statement: leaves the stack as it found it.
    fn stmt(&mut self, depth: u32) {
        let kind = if depth == 0 {
            self.rng.below(5)
        } else {
            self.rng.below(9)
        };
        match kind {
            0 | 1 => {
                self.expr(3);
                let s = self.rng.below(8) as i32;
                self.emit(a(Op::StL, s));
            }
            2 => {
                self.expr(3);
                let g = self.rng.below(NGLOBALS as u64) as i32;
                self.emit(a(Op::StG, g));
            }
            3 => {
                let n = self.rng.below(5);
                for _ in 0..n {
                    self.expr(2);
                }
                let fmt = self.rng.below(100) as i32;
                self.emit(out(fmt, n as i64));
            }
            4 => match self.rng.below(20) {
                0 => self.emit(i(Op::Exit)),
                1 => self.emit(i(Op::Skip)),
                2 => self.emit(i(Op::Next)),
                3 => {
                    self.expr(1);
                    self.emit(i(Op::Pop));
                }
                _ => self.emit(i(Op::Nop)),
            },
            5 | 6 => {
                // if (e) { then } [else { else }]
                self.expr(2);
                let jz = self.code.len();
                self.emit(a(Op::Jz, 0));
                let n = 1 + self.rng.below(3) as u32;
                self.block(n, depth - 1);
                if self.rng.chance(50) {
                    let jmp = self.code.len();
                    self.emit(a(Op::Jmp, 0));
                    self.code[jz].arg = (self.code.len() - jz - 1) as i32;
                    let n = 1 + self.rng.below(3) as u32;
                    self.block(n, depth - 1);
                    self.code[jmp].arg = (self.code.len() - jmp - 1) as i32;
                } else {
                    self.code[jz].arg = (self.code.len() - jz - 1) as i32;
                }
            }
            _ => {
                // for (c = 0; c < N; c++) { body }; N occasionally large (MAXACTION).
                if self.loop_depth >= 8 {
                    self.emit(i(Op::Nop));
                    return;
                }
                let c = LOOP_BASE + self.loop_depth;
                self.loop_depth += 1;
                let n = if self.rng.chance(3) {
                    30_000
                } else {
                    self.rng.below(40) as i64
                };
                self.emit(push(0));
                self.emit(a(Op::StL, c));
                let head = self.code.len();
                self.emit(a(Op::LdL, c));
                self.emit(push(n));
                self.emit(i(Op::Lt));
                let jz = self.code.len();
                self.emit(a(Op::Jz, 0));
                let k = 1 + self.rng.below(3) as u32;
                self.block(k, depth - 1);
                self.emit(a(Op::LdL, c));
                self.emit(push(1));
                self.emit(i(Op::Add));
                self.emit(a(Op::StL, c));
                let back = self.code.len();
                self.emit(a(Op::Jmp, head as i32 - back as i32 - 1));
                self.code[jz].arg = (self.code.len() - jz - 1) as i32;
                self.loop_depth -= 1;
            }
        }
    }
}

/// One random program, ending with `Next` or `Ret e`.
fn program(rng: &mut Rng) -> Vec<Insn> {
    let mut g = Gen {
        rng,
        code: Vec::new(),
        loop_depth: 0,
    };
    let n = 1 + g.rng.below(8) as u32;
    g.block(n, 3);
    if g.rng.chance(20) {
        g.expr(2);
        g.emit(i(Op::Ret));
    } else {
        g.emit(i(Op::Next));
    }
    g.code
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Body,
    Skip,
    Error(RuntimeErrorKind, u32),
}

fn kind_of(e: &VmError) -> RuntimeErrorKind {
    match e {
        VmError::DivisionByZero { .. } => RuntimeErrorKind::DivisionByZero,
        VmError::MaxAction { .. } => RuntimeErrorKind::MaxAction,
        VmError::InvalidRandint { .. } => RuntimeErrorKind::InvalidRandint,
        _ => RuntimeErrorKind::BadCode,
    }
}

#[test]
fn bpf_vm_agrees_with_reference_vm() {
    let total: usize = std::env::var("OTF_DIFF_PROGRAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let seed: u64 = std::env::var("OTF_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x07f0_5eed);
    let mut rng = Rng(seed);
    let mut done = 0usize;
    let (mut errors, mut exits, mut outs, mut skips) = (0, 0, 0, 0);
    let mut by_kind = std::collections::BTreeMap::<String, usize>::new();
    while done < total {
        // One image per batch of programs that fits in the code area.
        let mut progs: Vec<Vec<Insn>> = Vec::new();
        let mut image = RuntimeImage {
            globals_init: vec![0; NGLOBALS],
            ..Default::default()
        };
        while done + progs.len() < total && image.code.len() < 60_000 {
            let p = program(&mut rng);
            if image.code.len() + p.len() > otf_script::bytecode::MAX_CODE {
                break;
            }
            for (pc, insn) in p.iter().enumerate() {
                // Every generated program is well-formed.
                assert!(insn.opcode().is_some(), "pc {pc}");
            }
            image.probes.push(ProbeSlot {
                body: Some(image.code.len() as u32),
                ..Default::default()
            });
            image.code.extend_from_slice(&p);
            progs.push(p);
        }
        let rt = Runtime::load_with(
            &image,
            &LoadOptions {
                kinds: vec![ProgKind::TestEntry],
                ..Default::default()
            },
        )
        .expect("load");
        let mut ev = rt.events().expect("events");
        for (pidx, p) in progs.iter().enumerate() {
            let start = image.probes[pidx].body.unwrap() as usize;
            let init: Vec<i64> = (0..NGLOBALS).map(|_| rng.value()).collect();
            let gv = rt.globals();
            for (g, &v) in init.iter().enumerate() {
                gv.set(g as u32, v);
            }
            // A previous program's exit() would keep this one from running.
            rt.clear_exit_requested();
            let before = rt.counters(pidx as u32);
            rt.test_run_hit(cookie(pidx as u32)).expect("test run");
            let after = rt.counters(pidx as u32);
            let events = ev.drain().expect("drain");

            // The reference VM, on the whole code (absolute pcs, like the kernel).
            let mut globals = init.clone();
            let mut recs: Vec<OutRecord> = Vec::new();
            let mut hit = FixedHit::default();
            let r = vm::run(&image.code, start, &mut globals, &mut hit, &mut |o| {
                recs.push(o)
            });

            let ctx = || {
                format!("program {pidx} (seed {seed:#x}):\n{p:?}\nreference: {r:?}\nbpf: {events:?} {after:?}")
            };
            let kernel_outs: Vec<OutRecord> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Output {
                        pidx: q, fmt, args, ..
                    } => {
                        assert_eq!(*q as usize, pidx);
                        Some(OutRecord {
                            fmt: *fmt,
                            args: args.clone(),
                        })
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(kernel_outs, recs, "output records differ: {}", ctx());
            let kernel_exit = events.iter().any(|e| matches!(e, Event::Exit { .. }));
            let kernel_err: Vec<_> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Error { kind, pc, .. } => Some(Verdict::Error(*kind, *pc)),
                    _ => None,
                })
                .collect();
            let verdict = if after.errors > before.errors {
                assert_eq!(kernel_err.len(), 1, "{}", ctx());
                kernel_err.into_iter().next().unwrap()
            } else if after.skipped_cond > before.skipped_cond {
                Verdict::Skip
            } else {
                assert_eq!(after.bodies, before.bodies + 1, "{}", ctx());
                Verdict::Body
            };
            match &r {
                Ok(o) => {
                    let want = match o.end {
                        End::Skip => Verdict::Skip,
                        End::Next | End::Ret(_) => Verdict::Body,
                    };
                    assert_eq!(verdict, want, "{}", ctx());
                    assert_eq!(kernel_exit, o.exit_requested, "exit: {}", ctx());
                    if o.exit_requested {
                        exits += 1;
                    }
                    if o.end == End::Skip {
                        skips += 1;
                    }
                }
                Err(e) => {
                    assert_eq!(
                        verdict,
                        Verdict::Error(kind_of(e), e.pc() as u32),
                        "{}",
                        ctx()
                    );
                    errors += 1;
                    *by_kind.entry(format!("{:?}", kind_of(e))).or_default() += 1;
                }
            }
            outs += recs.len();
            assert_eq!(gv.snapshot(), globals, "globals differ: {}", ctx());
        }
        assert_eq!(ev.undecodable(), 0);
        assert_eq!(rt.error_counters().ringbuf_dropped, 0);
        done += progs.len();
    }
    eprintln!(
        "{done} programs: {errors} run-time errors {by_kind:?}, {exits} exits, {skips} skips, {outs} output records"
    );
    assert!(errors > 0 && exits > 0 && skips > 0 && outs > 0);
}
