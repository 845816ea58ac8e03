//! Helpers shared by the kernel tests: a tiny assembler and image builders.
#![allow(dead_code)]

use otf_bpf::{ProbeSlot, RuntimeImage};
use otf_script::bytecode::{Insn, Op};

/// Shorthands for instructions.
pub fn i(op: Op) -> Insn {
    Insn::op(op)
}
pub fn a(op: Op, arg: i32) -> Insn {
    Insn::with_arg(op, arg)
}
pub fn push(v: i64) -> Insn {
    Insn::new(Op::Push, 0, v)
}
pub fn out(fmt: i32, n: i64) -> Insn {
    Insn::new(Op::Out, fmt, n)
}
pub fn ctx(id: otf_script::bytecode::Ctx, param: i64) -> Insn {
    Insn::new(Op::Ctx, id as i32, param)
}

/// This thread's id.
pub fn gettid() -> i64 {
    // SAFETY: a plain syscall without arguments.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// The inlined condition check "this thread only": `if (tid() != me) skip` (tests run in
/// parallel threads of one process).
pub fn only_me() -> Vec<Insn> {
    vec![
        ctx(otf_script::bytecode::Ctx::Tid, 0),
        push(gettid()),
        i(Op::Eq),
        a(Op::Jnz, 1),
        i(Op::Skip),
    ]
}

/// Code and slot builder: appends programs, returns their offsets.
#[derive(Default)]
pub struct Builder {
    pub image: RuntimeImage,
}

impl Builder {
    pub fn new(nglobals: usize) -> Self {
        let mut b = Builder::default();
        b.image.globals_init = vec![0; nglobals];
        b
    }

    /// Append a program; returns its offset.
    pub fn prog(&mut self, code: &[Insn]) -> u32 {
        let off = self.image.code.len() as u32;
        self.image.code.extend_from_slice(code);
        off
    }

    /// Add a probe slot with this body; returns its pidx. An unlabelled slot is labelled
    /// `test probe <pidx>` (verifier errors name the probe by its label).
    pub fn probe(&mut self, body: &[Insn], slot: ProbeSlot) -> u32 {
        let off = self.prog(body);
        let pidx = self.image.probes.len() as u32;
        let label = if slot.label.is_empty() {
            format!("test probe {pidx}")
        } else {
            slot.label.clone()
        };
        self.image.probes.push(ProbeSlot {
            body: Some(off),
            label,
            ..slot
        });
        pidx
    }

    /// Add a condition program; returns its cond id.
    pub fn cond(&mut self, code: &[Insn], init: bool) -> u32 {
        let off = self.prog(code);
        self.image.cond_code.push(off);
        self.image.cond_init.push(init);
        (self.image.cond_code.len() - 1) as u32
    }
}
