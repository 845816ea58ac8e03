//! otf's code generator: a script's bytecode units, compiled to native BPF at `otf run` time.
//!
//! [`generate`] turns a [`RuntimeImage`] (the compiler's code and one [`ProbeSlot`] per
//! pidx) into one handler [`Program`] per attach kind ([`ProgKind`]): the hit path (cookie,
//! nesting, counters, lock, condition re-evaluation, notification) around every distinct
//! body, lowered instruction by instruction with static stack slots, loops as `bpf_loop`
//! callbacks. Maps are referenced symbolically ([`MapId`]); the loader (otf-bpf) patches in
//! their fds. Nothing here needs root: `otf check --bpf` prints the result ([`dump`]).
//!
//! Passes, one file each: `cfg.rs` (shape of a bytecode program), `lower.rs` (bytecode to
//! BPF), `handler.rs` (the hit path), `syscall.rs` (the syscall-dispatch prologue), `asm.rs`
//! (labels, islands, linking), `btf.rs` (the functions' BTF), `xlated.rs` (the listing); see
//! `docs/codegen.md`.

mod asm;
mod btf;
mod cfg;
mod handler;
mod image;
pub mod insn;
mod kind;
pub mod layout;
mod lower;
pub mod maps;
mod syscall;
mod xlated;

use std::collections::HashMap;

pub use btf::timer_map_btf;
pub use image::{ProbeSlot, RuntimeImage};
pub use insn::Insn;
pub use kind::{Compat, ProgKind, Regs, SyscallRegs, SYSCALL_REGS};
pub use xlated::dump;

/// An error of the code generator. Every one is an otf bug or a limit of otf, never the
/// user's: a script that `otf check` accepts compiles.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image is inconsistent or over the runtime's capacity.
    #[error("{0}")]
    Image(String),
    /// The bytecode is not of the shape the compiler emits.
    #[error("unexpected bytecode (an otf bug): {0}")]
    BadCode(String),
    /// The bytecode verifier refused a program: the compiler emitted bytecode it should not.
    #[error("unexpected bytecode (an otf bug): {0}")]
    Verify(#[from] otf_script::vm::VerifyError),
    /// A program over a limit of BPF or of otf.
    #[error("program too large: {0}")]
    TooLarge(String),
    /// A handler with more BPF functions than the kernel loads in one program
    /// ([`MAX_FUNCS`]): the kernel's verifier would refuse it with "too many subprograms".
    #[error(
        "program too large: {0} BPF functions (the handler, and one for each loop, `foreach` and \
         string-function loop of every probe body of this attach kind), the kernel loads at \
         most {MAX_FUNCS}; split the script"
    )]
    TooManyFunctions(usize),
    /// A bug in the code generator.
    #[error("code generator bug: {0}")]
    Internal(&'static str),
}

/// The most BPF functions (the program and its BPF-to-BPF and callback functions) the kernel
/// loads in one program (`BPF_MAX_SUBPROGS` in include/linux/bpf_verifier.h).
pub const MAX_FUNCS: usize = 256;

/// The maps a generated program refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapId {
    /// The mmapped array of [`layout::Shared`].
    Shared,
    /// The ring buffer of records.
    Events,
    /// The per-CPU array of [`layout::CpuState`].
    Cpu,
    /// The LRU hash of `@entry` values, keyed by `(tid, pidx)`.
    Entry,
    /// The map of the array or aggregate that is global `.0` ([`maps::MapSpec`]).
    Global(u32),
    /// A zero-filled array value that new aggregate elements are inserted from.
    Zero,
    /// The string globals: one array value of MAXSTRINGLEN bytes per global index (read
    /// and written by user space through its mmapped value).
    Strings,
    /// `pp()` and `probefunc()` of each pidx: an array keyed by pidx whose value is two
    /// MAXSTRINGLEN-byte strings (read only to the programs).
    Names,
    /// The BPF timers of `timer.*` probes: an array of [`layout::TimerSlot`] keyed by pidx,
    /// with BTF ([`timer_map_btf`]).
    Timers,
    /// The `bpf_snprintf` formats of the script's `sprintf`s that run in the kernel: one
    /// array value, `BPF_F_RDONLY_PROG` and frozen ([`maps::sprintf_formats`]).
    Formats,
    /// The syscall dispatch of [`ProgKind::SyscallEnter`] and [`ProgKind::SyscallExit`]: an
    /// array of `u32` keyed by [`layout::syscall_key`], [`layout::SYSCALL_UNITS`] ×
    /// [`layout::SYSCALL_NRS`] entries, each the pidx + 1 to run (0: none), filled by user
    /// space.
    Syscalls,
}

impl MapId {
    /// Its name in listings.
    pub fn name(self) -> &'static str {
        match self {
            MapId::Shared => "shared",
            MapId::Events => "events",
            MapId::Cpu => "cpu",
            MapId::Entry => "entry",
            MapId::Global(_) => "global",
            MapId::Zero => "zero",
            MapId::Strings => "strings",
            MapId::Names => "names",
            MapId::Timers => "timers",
            MapId::Formats => "formats",
            MapId::Syscalls => "syscalls",
        }
    }
}

impl std::fmt::Display for MapId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MapId::Global(g) => write!(f, "global{g}"),
            m => f.write_str(m.name()),
        }
    }
}

/// Facts about the running kernel that the generated code needs: offsets in `task_struct`
/// (from the kernel's BTF) for `ppid()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelInfo {
    /// `offsetof(struct task_struct, real_parent)`.
    pub task_real_parent: u32,
    /// `offsetof(struct task_struct, tgid)`.
    pub task_tgid: u32,
}

impl Default for KernelInfo {
    /// Debian 6.1's x86_64 values, for listings and tests; the loader reads the real ones.
    fn default() -> Self {
        KernelInfo {
            task_real_parent: 2464,
            task_tgid: 2452,
        }
    }
}

/// One distinct body: what the pidx that share it have in common.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Variant {
    body: Option<u32>,
    entry: Option<u32>,
    cond: Option<u32>,
    reeval: Vec<u32>,
    lock_mask: u64,
    /// The body runs in user space ([`ProbeSlot::deferred`]).
    deferred: bool,
    /// The first pidx with this variant (its label names it in errors).
    owner: u32,
}

/// The variant (distinct body) of every pidx, as stored in `Probe::body`; `None` for a slot
/// with neither body nor entry program.
pub fn variant_ids(image: &RuntimeImage) -> Vec<Option<u32>> {
    variants(image).1
}

/// What makes two pidx share a variant: body, entry, condition, re-evaluations, lock mask.
type VariantKey = (Option<u32>, Option<u32>, Option<u32>, Vec<u32>, u64);

fn variants(image: &RuntimeImage) -> (Vec<Variant>, Vec<Option<u32>>) {
    let mut list: Vec<Variant> = Vec::new();
    let mut index: HashMap<VariantKey, u32> = HashMap::new();
    let mut ids = Vec::with_capacity(image.probes.len());
    for (pidx, p) in image.probes.iter().enumerate() {
        if p.body.is_none() && p.entry.is_none() {
            ids.push(None);
            continue;
        }
        let key = (p.body, p.entry, p.cond, p.reeval.clone(), p.lock_mask);
        let id = *index.entry(key).or_insert_with(|| {
            list.push(Variant {
                body: p.body,
                entry: p.entry,
                cond: p.cond,
                reeval: p.reeval.clone(),
                lock_mask: p.lock_mask,
                deferred: p.deferred,
                owner: pidx as u32,
            });
            list.len() as u32 - 1
        });
        ids.push(Some(id));
    }
    (list, ids)
}

/// A generated handler program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Its attach kind.
    pub kind: ProgKind,
    /// The instructions (map references hold a [`MapId`] until the loader patches them).
    pub insns: Vec<Insn>,
    /// `ld_imm64` slots to patch with a map's fd.
    pub map_refs: Vec<(usize, MapId)>,
    /// Instruction ranges by start, and the pidx whose probe they were generated for
    /// (`u32::MAX`: the shared hit path).
    pub owners: Vec<(usize, u32)>,
    /// The first instruction of every function (the handler, the hit callback, the lock spin,
    /// one per loop).
    pub func_starts: Vec<usize>,
    /// BTF describing the functions (load it, then pass its fd with [`Program::func_info`]).
    pub btf: Vec<u8>,
    /// `struct bpf_func_info` records: (first instruction, BTF type id) per function.
    pub func_info: Vec<(u32, u32)>,
}

impl Program {
    /// The pidx whose probe instruction `insn` was generated for, if any.
    pub fn owner_of(&self, insn: usize) -> Option<u32> {
        let k = self.owners.partition_point(|&(at, _)| at <= insn);
        k.checked_sub(1)
            .map(|k| self.owners[k].1)
            .filter(|&o| o != u32::MAX)
    }
}

/// Generate the handler of `kind` for `image`.
pub fn generate(
    image: &RuntimeImage,
    kind: ProgKind,
    kinfo: &KernelInfo,
) -> Result<Program, Error> {
    image.validate()?;
    let (vars, _) = variants(image);
    let mut shapes = HashMap::new();
    let mut starts: Vec<u32> = Vec::new();
    for v in &vars {
        starts.extend(v.body.filter(|_| !v.deferred));
        starts.extend(v.entry);
        for &c in &v.reeval {
            starts.push(image.cond_code[c as usize]);
        }
    }
    for s in starts {
        if let std::collections::hash_map::Entry::Vacant(e) = shapes.entry(s) {
            e.insert(cfg::Shape::analyze(&image.code, s as usize)?);
        }
    }
    let mut b = asm::Builder::default();
    let mut g = lower::Gen {
        code: &image.code,
        b: &mut b,
        kinfo,
        maps: &image.maps,
        strings: &image.strings,
        nglobals: image.globals_init.len(),
        formats: maps::sprintf_formats(&image.code, &image.strings).1,
    };
    handler::handler(&mut g, kind, &vars, &shapes, &image.cond_code)?;
    let linked = b.link()?;
    if linked.func_starts.len() > MAX_FUNCS {
        return Err(Error::TooManyFunctions(linked.func_starts.len()));
    }
    if linked.insns.len() > 1_000_000 {
        return Err(Error::TooLarge(format!(
            "{} instructions, the kernel loads at most 1,000,000",
            linked.insns.len()
        )));
    }
    // The timer program's entry is its control function; the handler is the timer callback.
    let first = usize::from(kind == ProgKind::Timer);
    let names: Vec<String> = (0..linked.func_starts.len())
        .map(|k| match k.checked_sub(first) {
            None => kind.name().to_string(),
            Some(0) if first == 1 => "otf_timer_fire".to_string(),
            Some(0) => kind.name().to_string(),
            Some(1) => "otf_hit".to_string(),
            _ => format!("otf_fn_{k}"),
        })
        .collect();
    let (btf, func_info) = btf::func_btf(&linked.func_starts, &names);
    Ok(Program {
        kind,
        btf,
        func_info,
        insns: linked.insns,
        map_refs: linked.map_refs,
        owners: linked.owners,
        func_starts: linked.func_starts,
    })
}
