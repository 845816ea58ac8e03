//! The reference VM: executes [`crate::bytecode`] over a store of globals.
//!
//! This interpreter defines what the bytecode means; the native BPF code that `otf-codegen`
//! generates must agree with it, and tests run the same programs on both. It never panics,
//! whatever the code: malformed programs (unknown opcodes, stack underflow, jumps out of
//! range, ...) are reported as [`VmError`] values. [`verify`] checks a program statically, as
//! the compiler does for everything it emits.

use std::ops::Range;

use crate::bytecode::{
    Ctx, Insn, IterSpec, MapOperands, Op, ReadStr, StatKind, StrFn, MAXSTRINGLEN, MAX_ENTRY_SLOTS,
    MAX_GLOBALS, MAX_ITERS, MAX_KEYS, MAX_LOCALS, MAX_OUT_ARGS, MAX_OUT_STRS, MAX_SLOCALS,
    MAX_SSTACK, MAX_STACK, MAX_STEPS,
};
pub use crate::store::{Aggregate, MapError, Value};

/// The script's globals, as the VM sees them: 64-bit integers by index.
///
/// Implemented here for `[i64]` and `Vec<i64>`; the orchestrator implements it over the BPF
/// runtime's mmapped globals.
pub trait GlobalStore {
    /// The value of global `idx` (`idx < self.len()`; the VM checks it first).
    fn load(&self, idx: u32) -> i64;
    /// Set global `idx` to `v` (`idx < self.len()`; the VM checks it first).
    fn store(&mut self, idx: u32, v: i64);
    /// The number of globals in the store: an access at or beyond it is the run-time error
    /// [`VmError::GlobalOutOfRange`]. Defaults to [`MAX_GLOBALS`].
    fn len(&self) -> usize {
        MAX_GLOBALS
    }
    /// `true` when the store holds no globals.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// String global `g` ("" until set).
    fn load_str(&self, g: u32) -> String {
        let _ = g;
        String::new()
    }
    /// Set string global `g`.
    fn store_str(&mut self, g: u32, s: &str) {
        let _ = (g, s);
    }
    /// The element `key` of array `g`, if present. Stores without arrays have none.
    fn map_get(&mut self, g: u32, key: &[Value]) -> Option<Value> {
        let _ = (g, key);
        None
    }
    /// Set element `key` of array `g` to `v` (inserting it).
    fn map_put(&mut self, g: u32, key: &[Value], v: Value) -> Result<(), MapError> {
        let _ = (g, key, v);
        Err(MapError::NoArrays)
    }
    /// Delete element `key` of array or aggregate `g` (nothing if missing).
    fn map_delete(&mut self, g: u32, key: &[Value]) {
        let _ = (g, key);
    }
    /// Delete every element of array or aggregate `g`.
    fn map_clear(&mut self, g: u32) {
        let _ = g;
    }
    /// Every element of array `g`: its keys and value (in no particular order).
    fn map_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Value)> {
        let _ = g;
        Vec::new()
    }
    /// Add `v` to aggregate `g` (element `key` of it when it is an array of aggregates).
    fn stat_add(&mut self, g: u32, key: &[Value], v: i64) -> Result<(), MapError> {
        let _ = (g, key, v);
        Err(MapError::NoArrays)
    }
    /// The aggregate `g` (element `key`), combined over CPUs; `None` when nothing was added.
    fn stat_get(&mut self, g: u32, key: &[Value]) -> Option<Aggregate> {
        let _ = (g, key);
        None
    }
    /// Every element of array of aggregates `g` (the scalar aggregate with empty keys).
    fn stat_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Aggregate)> {
        let _ = g;
        Vec::new()
    }
}

impl GlobalStore for [i64] {
    fn load(&self, idx: u32) -> i64 {
        self.get(idx as usize).copied().unwrap_or(0)
    }
    fn store(&mut self, idx: u32, v: i64) {
        if let Some(g) = self.get_mut(idx as usize) {
            *g = v;
        }
    }
    fn len(&self) -> usize {
        <[i64]>::len(self)
    }
}

/// A mutable slice reference is a store too, so that `&mut &mut [i64]` can be passed as
/// `&mut dyn GlobalStore` (a bare `[i64]` is unsized and cannot be).
impl GlobalStore for &mut [i64] {
    fn load(&self, idx: u32) -> i64 {
        (**self).load(idx)
    }
    fn store(&mut self, idx: u32, v: i64) {
        (**self).store(idx, v)
    }
    fn len(&self) -> usize {
        <[i64]>::len(self)
    }
}

impl GlobalStore for Vec<i64> {
    fn load(&self, idx: u32) -> i64 {
        self.as_slice().load(idx)
    }
    fn store(&mut self, idx: u32, v: i64) {
        self.as_mut_slice().store(idx, v)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

/// What a probe hit knows about itself: context values, randomness and `@entry` slots.
pub trait HitContext {
    /// The context value `id` ([`Op::Ctx`]); `param` is the argument number (1-based) for
    /// [`Ctx::IntArg`] and [`Ctx::LongArg`], else 0.
    fn ctx(&mut self, id: Ctx, param: i64) -> i64;
    /// A uniform random value in `[0, n)`; the VM only calls it with `n > 0`.
    fn randint(&mut self, n: i64) -> i64;
    /// Save `v` as `@entry` slot `slot` (`slot < MAX_ENTRY_SLOTS`) for the matching return.
    /// The default forgets it.
    fn entry_save(&mut self, slot: u32, v: i64) {
        let _ = (slot, v);
    }
    /// String literal `id` of the script ("" if unknown; [`Op::SPush`]).
    fn literal(&mut self, id: u32) -> String {
        let _ = id;
        String::new()
    }
    /// A context string ([`Op::SCtx`]): 0 `execname()`, 1 `pp()`, 2 `probefunc()`.
    fn ctx_str(&mut self, id: i32) -> String {
        let _ = id;
        String::new()
    }
    /// Output format `fmt` rendered with these arguments ([`Op::SFormat`]; "" if unknown).
    fn format(&mut self, fmt: u32, args: &[i64], strs: &[String]) -> String {
        let _ = (fmt, args, strs);
        String::new()
    }
    /// The `@entry` slot `slot` saved at the matching entry, or 0 if none. The default
    /// returns 0.
    fn entry_load(&mut self, slot: u32) -> i64 {
        let _ = slot;
        0
    }
    /// The NUL-terminated string at `addr` ([`Op::SRead`]): at most `size` bytes are read,
    /// the result holds at most `size - 1`; `Err` is the negative errno of a fault. The
    /// default reads user memory of this process ([`crate::mem::read_user_str`]: in user
    /// space there is no probed task, so `user_string` in `begin`, `end` and deferred
    /// timer bodies reads otf's own memory) and faults on every kernel address (user space
    /// cannot read kernel memory).
    fn read_str(&mut self, kernel: bool, addr: u64, size: usize) -> Result<Vec<u8>, i64> {
        if kernel {
            Err(-14)
        } else {
            crate::mem::read_user_str(0, addr, size)
        }
    }
    /// The `len` bytes at `addr` (`%m`, `%M`; `user`: `%#m`), or the negative errno of a
    /// fault. The default reads user memory of this process ([`crate::mem::read_user`]) and
    /// faults on kernel memory, as [`HitContext::read_str`] does.
    fn read_mem(&mut self, user: bool, addr: u64, len: usize) -> Result<Vec<u8>, i64> {
        if user {
            crate::mem::read_user(0, addr, len)
        } else {
            Err(-14)
        }
    }
    /// Report a warning (`user_string_warn`); the default prints SystemTap's
    /// `WARNING: <msg>` line on stderr.
    fn warn(&mut self, msg: &str) {
        eprintln!("WARNING: {msg}");
    }
}

/// A simple deterministic [`HitContext`] for tests and for `begin`/`end` bodies run in user
/// space: fixed context values, a seeded xorshift generator and an in-memory `@entry` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixedHit {
    /// `pid()`.
    pub pid: i64,
    /// `tid()`.
    pub tid: i64,
    /// `ppid()`.
    pub ppid: i64,
    /// `uid()`.
    pub uid: i64,
    /// `cpu()`.
    pub cpu: i64,
    /// `gettimeofday_ns()`.
    pub time_ns: i64,
    /// `target()`.
    pub target: i64,
    /// `returnval()`.
    pub retval: i64,
    /// Function arguments; `args[0]` is argument 1. Missing arguments read 0.
    pub args: Vec<i64>,
    /// The random generator's state (never 0).
    pub seed: u64,
    /// `@entry` slots.
    pub entry: [i64; MAX_ENTRY_SLOTS],
    /// The script's string literals ([`crate::compile::CompiledScript::strings`]).
    pub strings: Vec<String>,
    /// `execname()`, `pp()`, `probefunc()`.
    pub names: [String; 3],
    /// The script's output formats, for `sprintf`.
    pub formats: Vec<crate::bytecode::Format>,
}

impl Default for FixedHit {
    fn default() -> Self {
        FixedHit {
            pid: 0,
            tid: 0,
            ppid: 0,
            uid: 0,
            cpu: 0,
            time_ns: 0,
            target: 0,
            retval: 0,
            args: Vec::new(),
            seed: 0x9e37_79b9_7f4a_7c15,
            entry: [0; MAX_ENTRY_SLOTS],
            strings: Vec::new(),
            names: Default::default(),
            formats: Vec::new(),
        }
    }
}

impl HitContext for FixedHit {
    fn literal(&mut self, id: u32) -> String {
        self.strings.get(id as usize).cloned().unwrap_or_default()
    }

    fn format(&mut self, fmt: u32, args: &[i64], strs: &[String]) -> String {
        match self.formats.get(fmt as usize) {
            Some(f) => {
                let [e, p, pf] = &self.names;
                crate::format::render_strs(f, args, strs, e, p, pf)
            }
            None => String::new(),
        }
    }

    fn ctx_str(&mut self, id: i32) -> String {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.names.get(i))
            .cloned()
            .unwrap_or_default()
    }

    fn ctx(&mut self, id: Ctx, param: i64) -> i64 {
        let arg = |args: &[i64]| -> i64 {
            if param >= 1 {
                args.get((param - 1) as usize).copied().unwrap_or(0)
            } else {
                0
            }
        };
        match id {
            Ctx::Pid => self.pid,
            Ctx::Tid => self.tid,
            Ctx::Ppid => self.ppid,
            Ctx::Uid => self.uid,
            Ctx::Cpu => self.cpu,
            Ctx::TimeNs => self.time_ns,
            Ctx::Target => self.target,
            Ctx::RetVal => self.retval,
            Ctx::IntArg => arg(&self.args) as i32 as i64,
            Ctx::LongArg => arg(&self.args),
        }
    }

    fn randint(&mut self, n: i64) -> i64 {
        // xorshift64
        let mut x = if self.seed == 0 { 1 } else { self.seed };
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed = x;
        if n <= 0 {
            0
        } else {
            (x % n as u64) as i64
        }
    }

    fn entry_save(&mut self, slot: u32, v: i64) {
        if let Some(e) = self.entry.get_mut(slot as usize) {
            *e = v;
        }
    }

    fn entry_load(&mut self, slot: u32) -> i64 {
        self.entry.get(slot as usize).copied().unwrap_or(0)
    }
}

/// One output record: a format id (index into the script's formats) and its integer
/// arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRecord {
    /// The format id ([`Insn::arg`] of the [`Op::Out`]).
    pub fmt: u32,
    /// The integer arguments, first argument first.
    pub args: Vec<i64>,
    /// The string arguments, first argument first.
    pub strs: Vec<String>,
}

/// How a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// [`Op::Next`]: the hit ended normally (a body ran).
    Next,
    /// [`Op::Skip`]: the probe's own condition was false; the body did not run.
    Skip,
    /// [`Op::Ret`]: a condition or value program returned this value.
    Ret(i64),
}

/// The result of a successful [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// How the program ended.
    pub end: End,
    /// `exit()` was executed during this hit.
    pub exit_requested: bool,
    /// Instructions executed.
    pub steps: u32,
}

/// A run-time error of the VM. The first three are errors of correct programs; the others
/// only happen with malformed code (which [`verify`] and the compiler rule out).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VmError {
    /// Division or modulo by zero.
    #[error("division by zero")]
    DivisionByZero {
        /// The instruction.
        pc: usize,
    },
    /// More than [`MAX_STEPS`] instructions in one hit (SystemTap's MAXACTION).
    #[error("MAXACTION exceeded: more than {MAX_STEPS} instructions in one probe hit")]
    MaxAction {
        /// The instruction that would have exceeded the budget.
        pc: usize,
    },
    /// `randint(n)` with `n <= 0`.
    #[error("invalid randint range {n}")]
    InvalidRandint {
        /// The instruction.
        pc: usize,
        /// The requested range.
        n: i64,
    },
    /// An unknown opcode.
    #[error("malformed code: unknown opcode {op} at {pc}")]
    BadOpcode {
        /// The instruction.
        pc: usize,
        /// Its opcode byte.
        op: u8,
    },
    /// An unknown [`Ctx`] id.
    #[error("malformed code: unknown context id {id} at {pc}")]
    BadContext {
        /// The instruction.
        pc: usize,
        /// The id.
        id: i32,
    },
    /// Popping an empty stack.
    #[error("malformed code: stack underflow at {pc}")]
    StackUnderflow {
        /// The instruction.
        pc: usize,
    },
    /// Pushing onto a full stack ([`MAX_STACK`]).
    #[error("malformed code: stack overflow at {pc}")]
    StackOverflow {
        /// The instruction.
        pc: usize,
    },
    /// A jump to outside the code, or running past its end.
    #[error("malformed code: jump from {pc} to {target}, outside the program")]
    JumpOutOfRange {
        /// The instruction.
        pc: usize,
        /// The target (may be negative).
        target: i64,
    },
    /// A local slot outside `0..MAX_LOCALS`.
    #[error("malformed code: local slot {slot} out of range at {pc}")]
    LocalOutOfRange {
        /// The instruction.
        pc: usize,
        /// The slot.
        slot: i32,
    },
    /// A global index outside the store.
    #[error("malformed code: global {idx} out of range at {pc}")]
    GlobalOutOfRange {
        /// The instruction.
        pc: usize,
        /// The index.
        idx: i32,
    },
    /// An `@entry` slot outside `0..MAX_ENTRY_SLOTS`.
    #[error("malformed code: @entry slot {slot} out of range at {pc}")]
    EntrySlotOutOfRange {
        /// The instruction.
        pc: usize,
        /// The slot.
        slot: i32,
    },
    /// An output record with a bad argument count (negative or above [`MAX_OUT_ARGS`]).
    #[error("malformed code: output record with {n} arguments at {pc}")]
    BadOutArgs {
        /// The instruction.
        pc: usize,
        /// The count.
        n: i64,
    },
    /// An array operation failed (a new key in a full array).
    #[error("{err}")]
    Array {
        /// The instruction.
        pc: usize,
        /// Why.
        err: MapError,
    },
    /// `@min`, `@max` or `@avg` of an aggregate that has no value.
    #[error("empty aggregate")]
    EmptyAggregate {
        /// The instruction.
        pc: usize,
    },
    /// `%m` or `%M` (`printf`'s memory dumps) could not read the memory.
    #[error("{}", memory_fault_message(*.addr))]
    MemoryFault {
        /// The instruction.
        pc: usize,
        /// The first byte that could not be read
        /// ([`crate::memdump::fault_address`]).
        addr: u64,
    },
    /// A string function's run-time error (`stringat` out of bounds).
    #[error("{err}")]
    StrFn {
        /// The instruction.
        pc: usize,
        /// What went wrong.
        err: crate::strfn::StrError,
    },
    /// `user_string` or `kernel_string` (and the `_n` variants) could not read the
    /// string.
    #[error("{}", string_fault_message(*.kernel, *.addr, *.rc))]
    StringFault {
        /// The instruction.
        pc: usize,
        /// Kernel memory (`kernel_string`), else user memory.
        kernel: bool,
        /// The address read.
        addr: u64,
        /// The negative errno of the fault (`-EFAULT`).
        rc: i64,
    },
}

/// SystemTap's message for a string that could not be read from memory
/// (`tapset/uconversions.stp`, `tapset/linux/conversions.stp`): `user string copy fault
/// -14 at 0x1 [man error::fault]`, `kernel string copy fault at 0x1 [man error::fault]`.
pub fn string_fault_message(kernel: bool, addr: u64, rc: i64) -> String {
    if kernel {
        format!("kernel string copy fault at {addr:#x} [man error::fault]")
    } else {
        format!("user string copy fault {rc} at {addr:#x} [man error::fault]")
    }
}

/// SystemTap's message for a `%m` or `%M` that could not read the memory (the translator's
/// `STAP_MSG_LOC2C_01`): `read fault [man error::fault] at 0x1`.
pub fn memory_fault_message(addr: u64) -> String {
    format!("read fault [man error::fault] at {addr:#x}")
}

impl VmError {
    /// The instruction at which the error happened.
    pub fn pc(&self) -> usize {
        match *self {
            VmError::DivisionByZero { pc }
            | VmError::MaxAction { pc }
            | VmError::InvalidRandint { pc, .. }
            | VmError::BadOpcode { pc, .. }
            | VmError::BadContext { pc, .. }
            | VmError::StackUnderflow { pc }
            | VmError::StackOverflow { pc }
            | VmError::JumpOutOfRange { pc, .. }
            | VmError::LocalOutOfRange { pc, .. }
            | VmError::GlobalOutOfRange { pc, .. }
            | VmError::EntrySlotOutOfRange { pc, .. }
            | VmError::BadOutArgs { pc, .. }
            | VmError::Array { pc, .. }
            | VmError::EmptyAggregate { pc }
            | VmError::MemoryFault { pc, .. }
            | VmError::StrFn { pc, .. }
            | VmError::StringFault { pc, .. } => pc,
        }
    }
}

struct Stack {
    v: [i64; MAX_STACK],
    n: usize,
}

impl Stack {
    #[inline]
    fn push(&mut self, x: i64, pc: usize) -> Result<(), VmError> {
        if self.n >= MAX_STACK {
            return Err(VmError::StackOverflow { pc });
        }
        self.v[self.n] = x;
        self.n += 1;
        Ok(())
    }
    /// Pop `n` values (keys), the deepest first.
    fn pop_n(&mut self, n: i64, pc: usize) -> Result<Vec<i64>, VmError> {
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= MAX_KEYS)
            .ok_or(VmError::BadOpcode { pc, op: 0 })?;
        if self.n < n {
            return Err(VmError::StackUnderflow { pc });
        }
        self.n -= n;
        Ok(self.v[self.n..self.n + n].to_vec())
    }
    #[inline]
    fn pop(&mut self, pc: usize) -> Result<i64, VmError> {
        if self.n == 0 {
            return Err(VmError::StackUnderflow { pc });
        }
        self.n -= 1;
        Ok(self.v[self.n])
    }
}

/// Apply a binary operator as the bytecode defines it (wrapping, shifts masked by 63,
/// `>>` arithmetic). `None` for division or modulo by zero, or if `op` is not binary.
pub fn binop(op: Op, a: i64, b: i64) -> Option<i64> {
    Some(match op {
        Op::Add => a.wrapping_add(b),
        Op::Sub => a.wrapping_sub(b),
        Op::Mul => a.wrapping_mul(b),
        Op::Div => {
            if b == 0 {
                return None;
            }
            a.wrapping_div(b)
        }
        Op::Mod => {
            if b == 0 {
                return None;
            }
            a.wrapping_rem(b)
        }
        Op::Shl => a.wrapping_shl((b & 63) as u32),
        Op::Shr => a.wrapping_shr((b & 63) as u32),
        Op::And => a & b,
        Op::Or => a | b,
        Op::Xor => a ^ b,
        Op::Lt => (a < b) as i64,
        Op::Le => (a <= b) as i64,
        Op::Gt => (a > b) as i64,
        Op::Ge => (a >= b) as i64,
        Op::Eq => (a == b) as i64,
        Op::Ne => (a != b) as i64,
        _ => return None,
    })
}

fn jump_target(code_len: usize, pc: usize, rel: i32) -> Result<usize, VmError> {
    let t = pc as i64 + 1 + rel as i64;
    if t < 0 || t >= code_len as i64 {
        return Err(VmError::JumpOutOfRange { pc, target: t });
    }
    Ok(t as usize)
}

/// Run the program starting at `code[start]` until it ends ([`Op::Next`], [`Op::Skip`],
/// [`Op::Ret`]) or fails. Locals start at zero. Output records are passed to `out` as they
/// are emitted (so records emitted before an error are delivered).
pub fn run(
    code: &[Insn],
    start: usize,
    globals: &mut dyn GlobalStore,
    hit: &mut dyn HitContext,
    out: &mut dyn FnMut(OutRecord),
) -> Result<Outcome, VmError> {
    let mut st = Stack {
        v: [0; MAX_STACK],
        n: 0,
    };
    let mut locals = [0i64; MAX_LOCALS];
    let mut iters: Vec<Iteration> = vec![(Vec::new(), 0); MAX_ITERS];
    let mut sst: Vec<String> = Vec::with_capacity(MAX_SSTACK);
    let mut slocals: Vec<String> = vec![String::new(); MAX_SLOCALS];
    // What `tokenize` has left of its string.
    let mut tok: Option<Vec<u8>> = None;
    let mut exit_requested = false;
    let mut steps: u32 = 0;
    let mut pc = start;
    let nglobals = globals.len();
    let blocks = basic_blocks(code, start);
    loop {
        let Some(insn) = code.get(pc) else {
            return Err(VmError::JumpOutOfRange {
                pc,
                target: pc as i64,
            });
        };
        if let Some(&len) = blocks.get(&pc) {
            // The step budget is charged a whole basic block at a time, at its first
            // instruction: native code checks it once per block (docs/bytecode.md).
            steps = steps.saturating_add(len);
            if steps > MAX_STEPS {
                return Err(VmError::MaxAction { pc });
            }
        }
        let Some(op) = insn.opcode() else {
            return Err(VmError::BadOpcode { pc, op: insn.op });
        };
        let a = insn.arg;
        let local = |slot: i32| -> Result<usize, VmError> {
            if slot < 0 || slot as usize >= MAX_LOCALS {
                Err(VmError::LocalOutOfRange { pc, slot })
            } else {
                Ok(slot as usize)
            }
        };
        let global = |idx: i32| -> Result<u32, VmError> {
            if idx < 0 || idx as usize >= nglobals {
                Err(VmError::GlobalOutOfRange { pc, idx })
            } else {
                Ok(idx as u32)
            }
        };
        let entry = |slot: i32| -> Result<u32, VmError> {
            if slot < 0 || slot as usize >= MAX_ENTRY_SLOTS {
                Err(VmError::EntrySlotOutOfRange { pc, slot })
            } else {
                Ok(slot as u32)
            }
        };
        let mut next = pc + 1;
        match op {
            Op::Nop => {}
            Op::Push => st.push(insn.imm, pc)?,
            Op::LdG => {
                let g = global(a)?;
                st.push(globals.load(g), pc)?
            }
            Op::StG => {
                let g = global(a)?;
                let v = st.pop(pc)?;
                globals.store(g, v)
            }
            Op::LdL => {
                let s = local(a)?;
                st.push(locals[s], pc)?
            }
            Op::StL => {
                let s = local(a)?;
                locals[s] = st.pop(pc)?;
            }
            Op::Dup => {
                let v = st.pop(pc)?;
                st.push(v, pc)?;
                st.push(v, pc)?;
            }
            Op::Pop => {
                st.pop(pc)?;
            }
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Mod
            | Op::Shl
            | Op::Shr
            | Op::And
            | Op::Or
            | Op::Xor
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Eq
            | Op::Ne => {
                let b = st.pop(pc)?;
                let x = st.pop(pc)?;
                let r = binop(op, x, b).ok_or(VmError::DivisionByZero { pc })?;
                st.push(r, pc)?;
            }
            Op::Neg => {
                let v = st.pop(pc)?;
                st.push(v.wrapping_neg(), pc)?
            }
            Op::LNot => {
                let v = st.pop(pc)?;
                st.push((v == 0) as i64, pc)?
            }
            Op::BNot => {
                let v = st.pop(pc)?;
                st.push(!v, pc)?
            }
            Op::Jmp => next = jump_target(code.len(), pc, a)?,
            Op::Jz => {
                let v = st.pop(pc)?;
                if v == 0 {
                    next = jump_target(code.len(), pc, a)?;
                }
            }
            Op::Jnz => {
                let v = st.pop(pc)?;
                if v != 0 {
                    next = jump_target(code.len(), pc, a)?;
                }
            }
            Op::Next => {
                return Ok(Outcome {
                    end: End::Next,
                    exit_requested,
                    steps,
                })
            }
            Op::Skip => {
                return Ok(Outcome {
                    end: End::Skip,
                    exit_requested,
                    steps,
                })
            }
            Op::Ret => {
                let v = st.pop(pc)?;
                return Ok(Outcome {
                    end: End::Ret(v),
                    exit_requested,
                    steps,
                });
            }
            Op::Ctx => {
                let id = Ctx::from_i32(a).ok_or(VmError::BadContext { pc, id: a })?;
                let v = hit.ctx(id, insn.imm);
                st.push(v, pc)?
            }
            Op::RandInt => {
                let n = st.pop(pc)?;
                if n <= 0 {
                    return Err(VmError::InvalidRandint { pc, n });
                }
                let v = hit.randint(n);
                st.push(v, pc)?
            }
            Op::Out => {
                let (n, ns) = (insn.imm & 0xffff, (insn.imm >> 16) & 0xffff);
                if insn.imm < 0 || n as usize > MAX_OUT_ARGS || ns as usize > MAX_OUT_STRS {
                    return Err(VmError::BadOutArgs { pc, n: insn.imm });
                }
                let (n, ns) = (n as usize, ns as usize);
                if st.n < n || sst.len() < ns {
                    return Err(VmError::StackUnderflow { pc });
                }
                let mut args = st.v[st.n - n..st.n].to_vec();
                st.n -= n;
                if let Some(lit) = out_plan(insn) {
                    let plan = crate::memdump::MemPlan::decode(&hit.literal(lit), n, ns)
                        .ok_or(VmError::BadOutArgs { pc, n: insn.imm })?;
                    for d in &plan.dumps {
                        let addr = args[d.addr] as u64;
                        let Ok(mut bytes) = hit.read_mem(d.user, addr, d.len_of(&args)) else {
                            let first_ok = hit.read_mem(d.user, addr, 1).is_ok();
                            let addr = crate::memdump::fault_address(addr, first_ok);
                            return Err(VmError::MemoryFault { pc, addr });
                        };
                        bytes.resize(8 * d.words(), 0);
                        args.extend(crate::memdump::words_of(&bytes));
                    }
                    // The histograms' buckets as the aggregates are now.
                    let sbase = sst.len() - ns;
                    for h in &plan.hists {
                        let mo = MapOperands::unpack(h.keys);
                        let (mut i, mut j) = (h.arg, sbase + h.sarg);
                        let key: Vec<Value> = (0..mo.nkeys as usize)
                            .map(|k| {
                                if mo.str_keys & (1 << k) != 0 {
                                    j += 1;
                                    Value::Str(sst[j - 1].clone())
                                } else {
                                    i += 1;
                                    Value::Int(args[i - 1])
                                }
                            })
                            .collect();
                        let agg = globals.stat_get(h.global, &key);
                        let b = agg.map_or(Vec::new(), |a| if h.linear { a.linear } else { a.log });
                        let mut w = b;
                        w.resize(h.words, 0);
                        args.extend(w);
                    }
                }
                let strs = sst.split_off(sst.len() - ns);
                out(OutRecord {
                    fmt: a as u32,
                    args,
                    strs,
                });
            }
            Op::Exit => exit_requested = true,
            Op::EntrySave => {
                let s = entry(a)?;
                let v = st.pop(pc)?;
                hit.entry_save(s, v)
            }
            Op::EntryLoad => {
                let s = entry(a)?;
                let v = hit.entry_load(s);
                st.push(v, pc)?
            }
            Op::MapGet | Op::MapIn => {
                let g = global(a)?;
                let m = MapOperands::unpack(insn.imm);
                let key = pop_key(&mut st, &mut sst, m, pc)?;
                let v = globals.map_get(g, &key);
                if op == Op::MapIn {
                    // `[k] in t` of an array of aggregates: the element exists once added to.
                    let there = v.is_some() || globals.stat_get(g, &key).is_some();
                    st.push(there as i64, pc)?
                } else if m.str_value {
                    spush(
                        &mut sst,
                        v.map(|v| v.str().to_string()).unwrap_or_default(),
                        pc,
                    )?
                } else {
                    st.push(v.map_or(0, |v| v.int()), pc)?
                }
            }
            Op::MapPut | Op::MapAdd => {
                let g = global(a)?;
                let m = MapOperands::unpack(insn.imm);
                let v = if m.str_value {
                    Value::Str(spop(&mut sst, pc)?)
                } else {
                    Value::Int(st.pop(pc)?)
                };
                let key = pop_key(&mut st, &mut sst, m, pc)?;
                let new = match (op, v) {
                    (Op::MapAdd, Value::Int(d)) => Value::Int(
                        globals
                            .map_get(g, &key)
                            .map_or(0, |v| v.int())
                            .wrapping_add(d),
                    ),
                    (_, v) => v,
                };
                globals
                    .map_put(g, &key, new.clone())
                    .map_err(|err| VmError::Array { pc, err })?;
                match new {
                    Value::Int(v) => st.push(v, pc)?,
                    Value::Str(s) => spush(&mut sst, s, pc)?,
                }
            }
            Op::MapDel => {
                let g = global(a)?;
                let key = pop_key(&mut st, &mut sst, MapOperands::unpack(insn.imm), pc)?;
                globals.map_delete(g, &key)
            }
            Op::MapClear => {
                let g = global(a)?;
                globals.map_clear(g)
            }
            Op::StatAdd => {
                let g = global(a)?;
                let v = st.pop(pc)?;
                let key = pop_key(&mut st, &mut sst, MapOperands::unpack(insn.imm), pc)?;
                globals
                    .stat_add(g, &key, v)
                    .map_err(|err| VmError::Array { pc, err })?;
            }
            Op::StatGet => {
                let g = global(a)?;
                let m = MapOperands::unpack(insn.imm & STAT_KIND_MASK);
                let key = pop_key(&mut st, &mut sst, m, pc)?;
                let kind = StatKind::from_i64(insn.imm >> STAT_KIND_SHIFT)
                    .ok_or(VmError::BadOpcode { pc, op: insn.op })?;
                let agg = globals.stat_get(g, &key).unwrap_or_default();
                let v = agg.stat(kind).ok_or(VmError::EmptyAggregate { pc })?;
                st.push(v, pc)?
            }
            Op::IterStart => {
                let g = global(a)?;
                let spec = IterSpec::unpack(insn.imm >> 8);
                let limit = if spec.limit { Some(st.pop(pc)?) } else { None };
                let slot = (insn.imm & 0xff) as usize;
                let mut elems = globals.map_entries(g);
                if elems.is_empty() {
                    elems = globals
                        .stat_entries(g)
                        .into_iter()
                        .map(|(k, agg)| (k, Value::Int(agg.count)))
                        .collect();
                }
                sort_elements(&mut elems, spec);
                if let Some(l) = limit {
                    elems.truncate(l.max(0) as usize);
                }
                let Some(it) = iters.get_mut(slot) else {
                    return Err(VmError::BadOpcode { pc, op: insn.op });
                };
                *it = (elems, 0);
            }
            Op::IterNext => {
                let slot = (insn.imm & 0xff) as usize;
                let mut ib = ((insn.imm >> 8) & 0xfff) as usize;
                let mut sb = ((insn.imm >> 20) & 0xff) as usize;
                let with_value = (insn.imm >> 28) & 1 != 0;
                let Some((elems, pos)) = iters.get_mut(slot) else {
                    return Err(VmError::BadOpcode { pc, op: insn.op });
                };
                match elems.get(*pos) {
                    None => next = jump_target(code.len(), pc, a)?,
                    Some((k, v)) => {
                        *pos += 1;
                        let vals = k.iter().chain(with_value.then_some(v));
                        for x in vals {
                            match x {
                                Value::Int(i) => {
                                    let Some(l) = locals.get_mut(ib) else {
                                        return Err(VmError::LocalOutOfRange {
                                            pc,
                                            slot: ib as i32,
                                        });
                                    };
                                    *l = *i;
                                    ib += 1;
                                }
                                Value::Str(t) => {
                                    let Some(l) = slocals.get_mut(sb) else {
                                        return Err(VmError::LocalOutOfRange {
                                            pc,
                                            slot: sb as i32,
                                        });
                                    };
                                    *l = t.clone();
                                    sb += 1;
                                }
                            }
                        }
                    }
                }
            }
            Op::SPush => {
                let t = hit.literal(a as u32);
                spush(&mut sst, truncate(t), pc)?
            }
            Op::SCtx => {
                let t = hit.ctx_str(a);
                spush(&mut sst, truncate(t), pc)?
            }
            Op::SLdL | Op::SStL => {
                let Some(l) = usize::try_from(a).ok().filter(|&l| l < MAX_SLOCALS) else {
                    return Err(VmError::LocalOutOfRange { pc, slot: a });
                };
                if op == Op::SLdL {
                    let t = slocals[l].clone();
                    spush(&mut sst, t, pc)?
                } else {
                    slocals[l] = spop(&mut sst, pc)?;
                }
            }
            Op::SLdG => {
                let g = global(a)?;
                let t = globals.load_str(g);
                spush(&mut sst, t, pc)?
            }
            Op::SStG => {
                let g = global(a)?;
                let t = spop(&mut sst, pc)?;
                globals.store_str(g, &t)
            }
            Op::SDup => {
                let t = spop(&mut sst, pc)?;
                spush(&mut sst, t.clone(), pc)?;
                spush(&mut sst, t, pc)?
            }
            Op::SPop => {
                spop(&mut sst, pc)?;
            }
            Op::SConcat => {
                let b = spop(&mut sst, pc)?;
                let x = spop(&mut sst, pc)?;
                spush(&mut sst, truncate(x + &b), pc)?
            }
            Op::SCmp => {
                let b = spop(&mut sst, pc)?;
                let x = spop(&mut sst, pc)?;
                let o = x.as_bytes().cmp(b.as_bytes());
                use std::cmp::Ordering::*;
                let r = match Op::from_u8(a as u8) {
                    Some(Op::Lt) => o == Less,
                    Some(Op::Le) => o != Greater,
                    Some(Op::Gt) => o == Greater,
                    Some(Op::Ge) => o != Less,
                    Some(Op::Eq) => o == Equal,
                    Some(Op::Ne) => o != Equal,
                    _ => return Err(VmError::BadOpcode { pc, op: insn.op }),
                };
                st.push(r as i64, pc)?
            }
            Op::SLen => {
                let t = spop(&mut sst, pc)?;
                st.push(t.len() as i64, pc)?
            }
            Op::SFormat => {
                let (n, ns) = (
                    (insn.imm & 0xffff) as usize,
                    ((insn.imm >> 16) & 0xffff) as usize,
                );
                if st.n < n || sst.len() < ns {
                    return Err(VmError::StackUnderflow { pc });
                }
                let args = st.v[st.n - n..st.n].to_vec();
                st.n -= n;
                let strs = sst.split_off(sst.len() - ns);
                let t = hit.format(a as u32, &args, &strs);
                spush(&mut sst, truncate(t), pc)?
            }
            Op::SRead => {
                let r = ReadStr::unpack(a).ok_or(VmError::BadOpcode { pc, op: insn.op })?;
                let msg = if r.msg {
                    Some(spop(&mut sst, pc)?)
                } else {
                    None
                };
                let n = if r.n { Some(st.pop(pc)?) } else { None };
                let addr = st.pop(pc)? as u64;
                let t = match (hit.read_str(r.kernel, addr, r.size(n)), msg) {
                    (Ok(bytes), _) => String::from_utf8_lossy(&bytes).into_owned(),
                    (Err(rc), Some(m)) => {
                        if r.warn {
                            hit.warn(&string_fault_message(r.kernel, addr, rc));
                        }
                        m
                    }
                    (Err(rc), None) => {
                        return Err(VmError::StringFault {
                            pc,
                            kernel: r.kernel,
                            addr,
                            rc,
                        })
                    }
                };
                spush(&mut sst, truncate(t), pc)?
            }
            Op::SCall => {
                let f = StrFn::from_i32(a).ok_or(VmError::BadOpcode { pc, op: insn.op })?;
                let (params, _) = f.signature();
                let nints = params.iter().filter(|&&s| !s).count();
                let nstrs = params.len() - nints;
                if sst.len() < nstrs {
                    return Err(VmError::StackUnderflow { pc });
                }
                let ints = st.pop_n(nints as i64, pc)?;
                let strs = sst.split_off(sst.len() - nstrs);
                match crate::strfn::call(f, &strs, &ints, &mut tok) {
                    Ok(Value::Int(v)) => st.push(v, pc)?,
                    Ok(Value::Str(t)) => spush(&mut sst, truncate(t), pc)?,
                    Err(err) => return Err(VmError::StrFn { pc, err }),
                }
            }
        }
        pc = next;
    }
}

/// A `foreach` in progress: the snapshot of the elements (keys, value) and the next one.
type Iteration = (Vec<(Vec<Value>, Value)>, usize);

/// Where a `StatGet` keeps the statistic in `imm` (above the [`MapOperands`]).
pub const STAT_KIND_SHIFT: u32 = 20;
const STAT_KIND_MASK: i64 = (1 << STAT_KIND_SHIFT) - 1;

/// A string as the machine keeps it: at most [`MAXSTRINGLEN`]` - 1` bytes, cut at a
/// character boundary.
pub fn truncate(mut s: String) -> String {
    if s.len() >= MAXSTRINGLEN {
        let mut n = MAXSTRINGLEN - 1;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    s
}

fn spush(sst: &mut Vec<String>, s: String, pc: usize) -> Result<(), VmError> {
    if sst.len() >= MAX_SSTACK {
        return Err(VmError::StackOverflow { pc });
    }
    sst.push(s);
    Ok(())
}

fn spop(sst: &mut Vec<String>, pc: usize) -> Result<String, VmError> {
    sst.pop().ok_or(VmError::StackUnderflow { pc })
}

/// Pop a map instruction's keys: integer keys from the integer stack, string keys from the
/// string stack, back in key order.
fn pop_key(
    st: &mut Stack,
    sst: &mut Vec<String>,
    m: MapOperands,
    pc: usize,
) -> Result<Vec<Value>, VmError> {
    let ints = st.pop_n(m.nint() as i64, pc)?;
    let n = m.nstr();
    if sst.len() < n {
        return Err(VmError::StackUnderflow { pc });
    }
    let strs = sst.split_off(sst.len() - n);
    let (mut ii, mut si) = (ints.into_iter(), strs.into_iter());
    Ok((0..m.nkeys as usize)
        .map(|k| {
            if m.str_keys & (1 << k) != 0 {
                Value::Str(si.next().unwrap_or_default())
            } else {
                Value::Int(ii.next().unwrap_or(0))
            }
        })
        .collect())
}

/// Order `foreach` elements: by keys when unsorted, else by the value or key `spec` names
/// (descending with `-`), ties by keys.
pub fn sort_elements(elems: &mut [(Vec<Value>, Value)], spec: IterSpec) {
    elems.sort_by(|a, b| a.0.cmp(&b.0));
    if spec.by == 0 {
        if spec.desc {
            elems.reverse();
        }
        return;
    }
    let field = |e: &(Vec<Value>, Value)| -> Value {
        if spec.by == 1 {
            e.1.clone()
        } else {
            e.0.get(spec.by as usize - 2).cloned().unwrap_or_default()
        }
    };
    elems.sort_by(|a, b| {
        let o = field(a).cmp(&field(b));
        if spec.desc {
            o.reverse()
        } else {
            o
        }
    });
}

/// Why [`verify`] refused a program.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The range is empty or not inside the code.
    #[error("program range {range:?} is not inside code of length {len}")]
    BadRange {
        /// The range given.
        range: Range<usize>,
        /// The code length.
        len: usize,
    },
    /// An unknown opcode.
    #[error("unknown opcode {op} at {pc}")]
    BadOpcode {
        /// The instruction.
        pc: usize,
        /// Its opcode byte.
        op: u8,
    },
    /// A jump leaves the program's range.
    #[error("jump from {pc} to {target} leaves the program")]
    JumpOutOfRange {
        /// The instruction.
        pc: usize,
        /// The target.
        target: i64,
    },
    /// Execution can run past the end of the range.
    #[error("execution runs past the end at {pc}")]
    FallsOffEnd {
        /// The last instruction.
        pc: usize,
    },
    /// A local, global or `@entry` slot, a context id or an argument count out of range.
    #[error("operand out of range at {pc}")]
    OperandOutOfRange {
        /// The instruction.
        pc: usize,
    },
    /// An instruction can pop an empty stack.
    #[error("stack underflow at {pc}")]
    StackUnderflow {
        /// The instruction.
        pc: usize,
    },
    /// The stack can grow beyond [`MAX_STACK`].
    #[error("stack deeper than {MAX_STACK} at {pc}")]
    StackOverflow {
        /// The instruction.
        pc: usize,
    },
    /// Two paths reach an instruction with different stack depths.
    #[error("stack depth {a} or {b} at {pc} depending on the path")]
    InconsistentStack {
        /// The instruction.
        pc: usize,
        /// One depth.
        a: usize,
        /// The other.
        b: usize,
    },
}

/// The stack effect of an instruction: (values popped, values pushed).
pub fn stack_effect(insn: &Insn) -> Option<(usize, usize)> {
    let op = insn.opcode()?;
    Some(match op {
        Op::Nop | Op::Jmp | Op::Next | Op::Skip | Op::Exit => (0, 0),
        Op::Push | Op::LdG | Op::LdL | Op::Ctx | Op::EntryLoad => (0, 1),
        Op::StG | Op::StL | Op::Pop | Op::Jz | Op::Jnz | Op::Ret | Op::EntrySave => (1, 0),
        Op::Dup => (1, 2),
        Op::Neg | Op::LNot | Op::BNot | Op::RandInt => (1, 1),
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Mod
        | Op::Shl
        | Op::Shr
        | Op::And
        | Op::Or
        | Op::Xor
        | Op::Lt
        | Op::Le
        | Op::Gt
        | Op::Ge
        | Op::Eq
        | Op::Ne => (2, 1),
        Op::Out => (usize::try_from(insn.imm & 0xffff).ok()?, 0),
        Op::MapGet => {
            let m = map_operands(insn)?;
            (m.nint(), usize::from(!m.str_value))
        }
        Op::MapIn => (map_operands(insn)?.nint(), 1),
        Op::MapPut | Op::MapAdd => {
            let m = map_operands(insn)?;
            let v = usize::from(!m.str_value);
            (m.nint() + v, v)
        }
        Op::MapDel => (map_operands(insn)?.nint(), 0),
        Op::MapClear | Op::IterNext => (0, 0),
        Op::StatAdd => (map_operands(insn)?.nint() + 1, 0),
        Op::StatGet => (MapOperands::unpack(insn.imm & STAT_KIND_MASK).nint(), 1),
        Op::IterStart => (usize::from(IterSpec::unpack(insn.imm >> 8).limit), 0),
        Op::SPush
        | Op::SCtx
        | Op::SLdL
        | Op::SStL
        | Op::SLdG
        | Op::SStG
        | Op::SDup
        | Op::SPop
        | Op::SConcat => (0, 0),
        Op::SCmp | Op::SLen => (0, 1),
        Op::SCall => {
            let (params, ret_str) = StrFn::from_i32(insn.arg)?.signature();
            (
                params.iter().filter(|&&s| !s).count(),
                usize::from(!ret_str),
            )
        }
        Op::SFormat => (usize::try_from(insn.imm & 0xffff).ok()?, 0),
        Op::SRead => (1 + usize::from(ReadStr::unpack(insn.arg)?.n), 0),
    })
}

/// The effect of an instruction on the string stack: (strings popped, strings pushed).
pub fn sstack_effect(insn: &Insn) -> Option<(usize, usize)> {
    let op = insn.opcode()?;
    Some(match op {
        Op::SPush | Op::SCtx | Op::SLdL | Op::SLdG => (0, 1),
        Op::SStL | Op::SStG | Op::SPop | Op::SLen => (1, 0),
        Op::SDup => (1, 2),
        Op::SConcat => (2, 1),
        Op::SCmp => (2, 0),
        Op::Out => (usize::try_from((insn.imm >> 16) & 0xffff).ok()?, 0),
        Op::SFormat => (usize::try_from((insn.imm >> 16) & 0xffff).ok()?, 1),
        Op::SRead => (usize::from(ReadStr::unpack(insn.arg)?.msg), 1),
        Op::SCall => {
            let (params, ret_str) = StrFn::from_i32(insn.arg)?.signature();
            (params.iter().filter(|&&s| s).count(), usize::from(ret_str))
        }
        Op::MapGet => {
            let m = map_operands(insn)?;
            (m.nstr(), usize::from(m.str_value))
        }
        Op::MapPut | Op::MapAdd => {
            let m = map_operands(insn)?;
            let v = usize::from(m.str_value);
            (m.nstr() + v, v)
        }
        Op::MapIn | Op::MapDel | Op::StatAdd => (map_operands(insn)?.nstr(), 0),
        Op::StatGet => (MapOperands::unpack(insn.imm & STAT_KIND_MASK).nstr(), 0),
        _ => (0, 0),
    })
}

/// Why an instruction can only run in user space (the reference VM) for now, if it can: the
/// code generator lowers the rest. A kernel probe whose body needs one is a timer's deferred
/// body, or refused.
pub fn user_space_only(insn: &Insn) -> Option<&'static str> {
    let op = insn.opcode()?;
    Some(match op {
        // The compiler keeps why the format cannot run in `bpf_snprintf` in bits 32..40
        // (`crate::format::KernelFormat::of`; 0: it can).
        Op::SFormat => match sformat_refusal(insn) {
            0 => return None,
            c => crate::format::KERNEL_SPRINTF_REFUSALS
                .get(usize::from(c) - 1)
                .copied()
                .unwrap_or("`sprintf` with this format"),
        },
        Op::SRead if ReadStr::unpack(insn.arg).is_some_and(|r| r.warn) => {
            "`user_string_warn` and `user_string_n_warn` (their warnings)"
        }
        _ => return None,
    })
}

/// The bit of an `Out` instruction's `imm` where the string literal id (plus 1; 0: none) of
/// its [`crate::memdump::MemPlan`] starts ([`out_plan`]).
pub const OUT_PLAN_SHIFT: u32 = 32;

/// The string literal holding the [`crate::memdump::MemPlan::encode`]d memory dumps of an
/// `Out` instruction (`printf` with `%m` or `%M`), if it has any (bits 32..52 of `imm`).
pub fn out_plan(insn: &Insn) -> Option<u32> {
    (((insn.imm >> OUT_PLAN_SHIFT) & 0xf_ffff) as u32).checked_sub(1)
}

/// The bit of an `SFormat` instruction's `imm` where the code of why its format cannot run
/// in the kernel starts ([`sformat_refusal`]).
pub const SFORMAT_REFUSAL_SHIFT: u32 = 32;

/// The bit of an `SFormat` instruction's `imm` where the string literal id of its
/// [`crate::format::KernelFormat`] starts ([`sformat_kernel`]).
pub const SFORMAT_KERNEL_SHIFT: u32 = 40;

/// The string literal (an id of the script's literals) that holds the
/// [`crate::format::KernelFormat::encode`]d format of an `SFormat` instruction that can run
/// in the kernel (bits 40..60 of `imm`; meaningless when [`sformat_refusal`] is not 0).
pub fn sformat_kernel(insn: &Insn) -> u32 {
    ((insn.imm >> SFORMAT_KERNEL_SHIFT) & 0xf_ffff) as u32
}

/// Why an `SFormat` instruction's format cannot run in the kernel's `bpf_snprintf`: 0 if it
/// can, else a 1-based index into [`crate::format::KERNEL_SPRINTF_REFUSALS`] (bits 32..40
/// of `imm`, set by the compiler from [`crate::format::KernelFormat::of`]).
pub fn sformat_refusal(insn: &Insn) -> u8 {
    (insn.imm >> SFORMAT_REFUSAL_SHIFT) as u8
}

/// The operands of a map instruction, if valid.
fn map_operands(insn: &Insn) -> Option<MapOperands> {
    let m = MapOperands::unpack(insn.imm);
    (insn.imm >= 0 && (m.nkeys as usize) <= MAX_KEYS).then_some(m)
}

/// The basic blocks of the program that starts at `start`: each block's first instruction
/// (its *leader*) and its number of instructions. Leaders are `start`, every target of a
/// reachable jump, and every instruction that follows a reachable jump or end (`Jmp`, `Jz`,
/// `Jnz`, `Next`, `Skip`, `Ret`). A block runs from its leader up to and including the first
/// jump or end, or up to the next leader. The step budget is charged per block
/// (docs/bytecode.md); the native code generator uses the same blocks.
pub fn basic_blocks(code: &[Insn], start: usize) -> std::collections::BTreeMap<usize, u32> {
    use std::collections::{BTreeMap, BTreeSet};
    let ends_block = |op: Option<Op>| {
        matches!(
            op,
            Some(Op::Jmp | Op::Jz | Op::Jnz | Op::IterNext | Op::Next | Op::Skip | Op::Ret)
        )
    };
    let mut leaders = BTreeSet::new();
    let mut seen = vec![false; code.len()];
    let mut work = vec![start];
    leaders.insert(start);
    while let Some(pc) = work.pop() {
        if pc >= code.len() || seen[pc] {
            continue;
        }
        seen[pc] = true;
        let insn = &code[pc];
        let op = insn.opcode();
        let target = pc as i64 + 1 + insn.arg as i64;
        match op {
            Some(Op::Jmp | Op::Jz | Op::Jnz | Op::IterNext) => {
                if target >= 0 {
                    leaders.insert(target as usize);
                    work.push(target as usize);
                }
                leaders.insert(pc + 1);
                if op != Some(Op::Jmp) {
                    work.push(pc + 1);
                }
            }
            Some(Op::Next | Op::Skip | Op::Ret) => {
                leaders.insert(pc + 1);
            }
            None => {}
            _ => work.push(pc + 1),
        }
    }
    let mut blocks = BTreeMap::new();
    for &l in &leaders {
        if l >= code.len() || !seen[l] {
            continue;
        }
        let mut n = 0u32;
        let mut pc = l;
        while pc < code.len() {
            n += 1;
            if ends_block(code[pc].opcode()) || leaders.contains(&(pc + 1)) {
                break;
            }
            pc += 1;
        }
        blocks.insert(l, n);
    }
    blocks
}

/// Check the program `code[range]` statically: every opcode known, every jump inside the
/// range, no path running past its end, every slot and id in range (globals below
/// [`MAX_GLOBALS`]), and the stack depth consistent, never negative and at most
/// [`MAX_STACK`] along all paths. Returns the maximum stack depth.
pub fn verify(code: &[Insn], range: Range<usize>) -> Result<usize, VerifyError> {
    if range.start >= range.end || range.end > code.len() {
        return Err(VerifyError::BadRange {
            range,
            len: code.len(),
        });
    }
    let base = range.start;
    let n = range.end - range.start;
    let mut depth: Vec<Option<usize>> = vec![None; n];
    let mut sdepth: Vec<usize> = vec![0; n];
    let mut work = vec![0usize];
    depth[0] = Some(0);
    let mut max = 0usize;
    while let Some(i) = work.pop() {
        let pc = base + i;
        let insn = &code[pc];
        let Some(op) = insn.opcode() else {
            return Err(VerifyError::BadOpcode { pc, op: insn.op });
        };
        let a = insn.arg;
        let bad = Err(VerifyError::OperandOutOfRange { pc });
        match op {
            Op::LdL | Op::StL if a < 0 || a as usize >= MAX_LOCALS => return bad,
            Op::LdG | Op::StG if a < 0 || a as usize >= MAX_GLOBALS => return bad,
            Op::EntrySave | Op::EntryLoad if a < 0 || a as usize >= MAX_ENTRY_SLOTS => return bad,
            Op::Ctx if Ctx::from_i32(a).is_none() => return bad,
            Op::Out
                if insn.imm < 0
                    || insn.imm >> 52 != 0
                    || (insn.imm & 0xffff) as usize > MAX_OUT_ARGS
                    || ((insn.imm >> 16) & 0xffff) as usize > MAX_OUT_STRS
                    || a < 0 =>
            {
                return bad
            }
            Op::SLdL | Op::SStL if a < 0 || a as usize >= MAX_SLOCALS => return bad,
            Op::SLdG | Op::SStG if a < 0 || a as usize >= MAX_GLOBALS => return bad,
            Op::SCtx if !(0..3).contains(&a) => return bad,
            Op::SCall if StrFn::from_i32(a).is_none() => return bad,
            Op::SRead if ReadStr::unpack(a).is_none() => return bad,
            Op::SFormat
                if insn.imm < 0
                    || insn.imm >> 60 != 0
                    || usize::from(sformat_refusal(insn))
                        > crate::format::KERNEL_SPRINTF_REFUSALS.len()
                    || a < 0 =>
            {
                return bad
            }
            Op::SCmp
                if !matches!(
                    Op::from_u8(a as u8),
                    Some(Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::Eq | Op::Ne)
                ) || a < 0 =>
            {
                return bad
            }
            Op::MapGet
            | Op::MapPut
            | Op::MapAdd
            | Op::MapIn
            | Op::MapDel
            | Op::MapClear
            | Op::StatAdd
            | Op::StatGet
            | Op::IterStart
                if a < 0 || a as usize >= MAX_GLOBALS =>
            {
                return bad
            }
            Op::StatGet if StatKind::from_i64(insn.imm >> STAT_KIND_SHIFT).is_none() => return bad,
            Op::IterStart | Op::IterNext if (insn.imm & 0xff) as usize >= MAX_ITERS => return bad,
            Op::IterNext
                if ((insn.imm >> 8) & 0xfff) as usize > MAX_LOCALS
                    || ((insn.imm >> 20) & 0xff) as usize > MAX_SLOCALS =>
            {
                return bad
            }
            _ => {}
        }
        let (pops, pushes) = stack_effect(insn).ok_or(VerifyError::OperandOutOfRange { pc })?;
        let (spops, spushes) = sstack_effect(insn).ok_or(VerifyError::OperandOutOfRange { pc })?;
        let d = depth[i].unwrap_or(0);
        let sd = sdepth[i];
        if d < pops || sd < spops {
            return Err(VerifyError::StackUnderflow { pc });
        }
        let nd = d - pops + pushes;
        let nsd = sd - spops + spushes;
        if nd > MAX_STACK || nsd > MAX_SSTACK {
            return Err(VerifyError::StackOverflow { pc });
        }
        max = max.max(nd);
        let mut succ: [Option<i64>; 2] = [None, None];
        let fall = i as i64 + 1;
        let jump = i as i64 + 1 + a as i64;
        match op {
            Op::Next | Op::Skip | Op::Ret => {}
            Op::Jmp => succ[0] = Some(jump),
            Op::Jz | Op::Jnz | Op::IterNext => {
                succ[0] = Some(fall);
                succ[1] = Some(jump);
            }
            _ => succ[0] = Some(fall),
        }
        for (k, s) in succ.into_iter().enumerate() {
            let Some(t) = s else { continue };
            if t < 0 || t >= n as i64 {
                let is_fall = k == 0 && !matches!(op, Op::Jmp);
                return Err(if is_fall {
                    VerifyError::FallsOffEnd { pc }
                } else {
                    VerifyError::JumpOutOfRange {
                        pc,
                        target: base as i64 + t,
                    }
                });
            }
            let t = t as usize;
            match depth[t] {
                None => {
                    depth[t] = Some(nd);
                    sdepth[t] = nsd;
                    work.push(t);
                }
                Some(old) if old == nd && sdepth[t] != nsd => {
                    return Err(VerifyError::InconsistentStack {
                        pc: base + t,
                        a: sdepth[t],
                        b: nsd,
                    })
                }
                Some(old) if old != nd => {
                    return Err(VerifyError::InconsistentStack {
                        pc: base + t,
                        a: old,
                        b: nd,
                    })
                }
                Some(_) => {}
            }
        }
    }
    Ok(max)
}
