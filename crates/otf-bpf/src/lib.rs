//! The otf BPF runtime: the precompiled BPF object built from `bpf/otf_runtime.bpf.c`, its
//! map layout, loading, and the decoding of its events.
//!
//! The orchestrator fills a [`RuntimeImage`] from the compiler's output, loads it with
//! [`Runtime::load`], attaches the handler programs ([`Runtime::program`]) with each
//! attachment's pidx as the attach cookie ([`cookie`], [`entry_cookie`]), and then reads and
//! writes the script's globals ([`Runtime::globals`]), the cached condition bits
//! ([`Runtime::cond_enabled`]), the `need_refresh` flag ([`Runtime::take_need_refresh`]) and
//! the counters through the mmapped `.bss`, without syscalls. Records (output, `exit()`,
//! run-time errors, notifications) arrive on a ring buffer ([`Runtime::events`]).
//!
//! See `docs/runtime.md` for the hit path, the lock and the limits.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject, RingBuffer, RingBufferBuilder};
use otf_script::bytecode::{Insn, MAX_CODE, MAX_GLOBALS};
use otf_script::vm::GlobalStore;

mod events;
pub mod layout;

pub use events::{decode, Event, RuntimeErrorKind};
use layout::*;
pub use layout::{cookie, entry_cookie};

#[allow(
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    missing_docs,
    unsafe_op_in_unsafe_fn,
    unused_imports,
    non_camel_case_types
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/otf_runtime.skel.rs"));
}

use skel::types;

/// An error of the runtime: what was being done, and the underlying cause.
#[derive(Debug)]
pub struct Error {
    context: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    fn msg(context: impl Into<String>) -> Self {
        Error {
            context: context.into(),
            source: None,
        }
    }

    fn with(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// What was being done when the error happened.
    pub fn context(&self) -> &str {
        &self.context
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {s}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One handler program of the runtime, per attach type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgKind {
    /// `SEC("perf_event")`: perf events (cpu-clock timers).
    PerfEvent,
    /// `SEC("tracepoint")`: perf tracepoints (`syscalls:*` included).
    Tracepoint,
    /// `SEC("raw_tp")`: raw tracepoints (cookies need kernel ≥ 6.10).
    RawTp,
    /// `SEC("uprobe")`.
    Uprobe,
    /// `SEC("uretprobe")`.
    Uretprobe,
    /// `SEC("uprobe.multi")`.
    UprobeMulti,
    /// `SEC("uretprobe.multi")`.
    UretprobeMulti,
    /// `SEC("kprobe")`.
    Kprobe,
    /// `SEC("kretprobe")`.
    Kretprobe,
    /// `SEC("kprobe.multi")`.
    KprobeMulti,
    /// `SEC("kretprobe.multi")`.
    KretprobeMulti,
    /// `SEC("raw_tp")` test entry: `BPF_PROG_TEST_RUN` with the cookie as the context runs
    /// one hit ([`Runtime::test_run_hit`]).
    TestEntry,
}

impl ProgKind {
    /// Every program kind.
    pub const ALL: &'static [ProgKind] = &[
        ProgKind::PerfEvent,
        ProgKind::Tracepoint,
        ProgKind::RawTp,
        ProgKind::Uprobe,
        ProgKind::Uretprobe,
        ProgKind::UprobeMulti,
        ProgKind::UretprobeMulti,
        ProgKind::Kprobe,
        ProgKind::Kretprobe,
        ProgKind::KprobeMulti,
        ProgKind::KretprobeMulti,
        ProgKind::TestEntry,
    ];

    /// The BPF program's name in the object.
    pub fn name(self) -> &'static str {
        match self {
            ProgKind::PerfEvent => "otf_perf_event",
            ProgKind::Tracepoint => "otf_tracepoint",
            ProgKind::RawTp => "otf_raw_tp",
            ProgKind::Uprobe => "otf_uprobe",
            ProgKind::Uretprobe => "otf_uretprobe",
            ProgKind::UprobeMulti => "otf_uprobe_multi",
            ProgKind::UretprobeMulti => "otf_uretprobe_multi",
            ProgKind::Kprobe => "otf_kprobe",
            ProgKind::Kretprobe => "otf_kretprobe",
            ProgKind::KprobeMulti => "otf_kprobe_multi",
            ProgKind::KretprobeMulti => "otf_kretprobe_multi",
            ProgKind::TestEntry => "otf_test_entry",
        }
    }
}

/// The kernel-side description of one pidx (one kernel attachment). Many pidx may share one
/// compiled unit (same offsets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeSlot {
    /// Code offset of the body (starts with the inlined condition check, ends with `Next`);
    /// `None`: hits are only counted.
    pub body: Option<u32>,
    /// Code offset of the entry program of a `.return` probe using `@entry` (run by the
    /// attachment with [`entry_cookie`]); `None` if none.
    pub entry: Option<u32>,
    /// Condition ids this body can affect, re-evaluated after it runs
    /// (at most [`layout::MAX_REEVAL_PER_PROBE`]).
    pub reeval: Vec<u32>,
    /// Lock stripes taken around the body and the re-evaluations (bit `g % 64` for global `g`).
    pub lock_mask: u64,
    /// The hit runs in a safe context and may wake user space with a notification.
    pub safe_context: bool,
    /// A return probe (`returnval()` is meaningful).
    pub is_return: bool,
    /// Another pidx whose hit runs right after this one's, from the same attachment (at
    /// most [`layout::MAX_CHAIN`] in a chain). For attachments that cannot be repeated:
    /// the kernel attaches one program at most once to one perf tracepoint (EEXIST), so
    /// several probes on one tracepoint share one attachment and are chained.
    pub chain: Option<u32>,
}

/// Everything the runtime needs to run a compiled script, independent of the compiler's
/// types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeImage {
    /// All code: bodies, conditions and entry programs ([`MAX_CODE`] at most).
    pub code: Vec<Insn>,
    /// Probe slots, indexed by pidx ([`layout::MAX_PROBES`] at most).
    pub probes: Vec<ProbeSlot>,
    /// Code offset of each condition program (ends with `Ret`), indexed by cond id.
    pub cond_code: Vec<u32>,
    /// Initial cached condition bits, indexed by cond id (missing entries: false). The
    /// orchestrator evaluates every condition before arming anything.
    pub cond_init: Vec<bool>,
    /// Initial values of the globals; its length is the number of globals.
    pub globals_init: Vec<i64>,
    /// `target()`.
    pub target_pid: i64,
}

impl RuntimeImage {
    /// Check the image against the runtime's capacity and its internal references.
    pub fn validate(&self) -> Result<()> {
        let ncode = self.code.len();
        if ncode > MAX_CODE {
            return Err(Error::msg(format!(
                "script too large: {ncode} instructions, the runtime holds {MAX_CODE}"
            )));
        }
        if self.probes.len() > MAX_PROBES {
            return Err(Error::msg(format!(
                "too many probe attachments: {}, the runtime holds {MAX_PROBES}",
                self.probes.len()
            )));
        }
        if self.cond_code.len() > MAX_CONDS || self.cond_init.len() > MAX_CONDS {
            return Err(Error::msg(format!(
                "too many probe conditions: {}, the runtime holds {MAX_CONDS}",
                self.cond_code.len()
            )));
        }
        if self.globals_init.len() > MAX_GLOBALS {
            return Err(Error::msg(format!(
                "too many globals: {}, the runtime holds {MAX_GLOBALS}",
                self.globals_init.len()
            )));
        }
        let in_code = |what: &str, off: u32| -> Result<()> {
            if (off as usize) < ncode {
                Ok(())
            } else {
                Err(Error::msg(format!(
                    "{what} starts at {off}, outside the code (length {ncode})"
                )))
            }
        };
        for (c, &off) in self.cond_code.iter().enumerate() {
            in_code(&format!("condition {c}"), off)?;
        }
        let mut total = 0usize;
        for (pidx, p) in self.probes.iter().enumerate() {
            if let Some(b) = p.body {
                in_code(&format!("body of pidx {pidx}"), b)?;
            }
            if let Some(e) = p.entry {
                in_code(&format!("entry program of pidx {pidx}"), e)?;
            }
            if let Some(c) = p.chain {
                if c as usize >= self.probes.len() {
                    return Err(Error::msg(format!(
                        "pidx {pidx} is chained to pidx {c}, which does not exist"
                    )));
                }
            }
            if p.reeval.len() > MAX_REEVAL_PER_PROBE {
                return Err(Error::msg(format!(
                    "pidx {pidx} can affect {} conditions, the runtime re-evaluates at most {MAX_REEVAL_PER_PROBE}",
                    p.reeval.len()
                )));
            }
            for &c in &p.reeval {
                if c as usize >= self.cond_code.len() {
                    return Err(Error::msg(format!(
                        "pidx {pidx} re-evaluates condition {c}, which does not exist"
                    )));
                }
            }
            total += p.reeval.len();
        }
        if total > MAX_REEVAL {
            return Err(Error::msg(format!(
                "{total} condition re-evaluations in all, the runtime holds {MAX_REEVAL}"
            )));
        }
        Ok(())
    }
}

/// Per-pidx counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Handler invocations (entry-program runs not included).
    pub hits: u64,
    /// Bodies run to their end.
    pub bodies: u64,
    /// Hits ended by the inlined condition check (`Skip`).
    pub skipped_cond: u64,
    /// Hits skipped because the lock could not be taken in time.
    pub skipped_lock: u64,
    /// Hits skipped because too many hits were nested on one CPU.
    pub skipped_nest: u64,
    /// Run-time errors (body or re-evaluated conditions).
    pub errors: u64,
    /// Entry programs run (return probes with `@entry`).
    pub entry_runs: u64,
}

impl Counters {
    /// Hits that were skipped (lock or nesting), as SystemTap's "skipped probes".
    pub fn skipped(&self) -> u64 {
        self.skipped_lock + self.skipped_nest
    }
}

/// Global counters of the runtime.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounters {
    /// Division or modulo by zero.
    pub division_by_zero: u64,
    /// MAXACTION exceeded.
    pub max_action: u64,
    /// Invalid randint range.
    pub invalid_randint: u64,
    /// Malformed code.
    pub bad_code: u64,
    /// Records lost because the ring buffer was full.
    pub ringbuf_dropped: u64,
    /// Hits whose cookie named no configured pidx.
    pub bad_cookie: u64,
    /// Notification records sent.
    pub notifications: u64,
    /// Lock acquisitions that had to wait.
    pub lock_contended: u64,
}

/// Which programs to load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// The program kinds to load (the others are not loaded and [`Runtime::program`] returns
    /// `None` for them). On kernels before 6.10, leave out [`ProgKind::RawTp`] (no cookies).
    pub kinds: Vec<ProgKind>,
    /// Kernel verifier log level for every program (0: only on failure; 4: statistics;
    /// 1 or 2: full log). libbpf prints the logs through its print callback.
    pub verifier_log_level: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            kinds: ProgKind::ALL.to_vec(),
            verifier_log_level: 0,
        }
    }
}

/// The loaded runtime object.
pub struct Runtime {
    skel: ManuallyDrop<skel::OtfRuntimeSkel<'static>>,
    /// Storage of the libbpf object the skeleton borrows; freed after `skel`.
    obj: NonNull<MaybeUninit<OpenObject>>,
    bss: NonNull<types::bss>,
    nglobals: usize,
    kinds: Vec<ProgKind>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("nglobals", &self.nglobals)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

// Compile-time check behind the `Send` impl below: the skeleton itself is `Send`.
const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<skel::OtfRuntimeSkel<'static>>();
};

// SAFETY: the skeleton is `Send` (checked above); `obj` is the skeleton's own heap storage
// and `bss` points into a shared mapping owned by it, neither tied to a thread. All `.bss`
// accesses are atomic. `Sync` is not claimed: `program()` hands out libbpf program handles.
unsafe impl Send for Runtime {}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: `skel` is dropped exactly once, here, before the storage it borrows.
        unsafe { ManuallyDrop::drop(&mut self.skel) };
        // SAFETY: `obj` came from `Box::into_raw` in `load_with` and nothing borrows it any
        // more.
        drop(unsafe { Box::from_raw(self.obj.as_ptr()) });
    }
}

fn clock_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl Runtime {
    /// Load the runtime with every program kind and fill it with `image`.
    pub fn load(image: &RuntimeImage) -> Result<Runtime> {
        Self::load_with(image, &LoadOptions::default())
    }

    /// Load the runtime with the program kinds of `opts` and fill it with `image`.
    pub fn load_with(image: &RuntimeImage, opts: &LoadOptions) -> Result<Runtime> {
        image.validate()?;
        let obj = NonNull::from(Box::leak(Box::new(MaybeUninit::<OpenObject>::uninit())));
        match Self::open_and_load(obj, opts) {
            Ok((skel, bss)) => {
                let rt = Runtime {
                    skel: ManuallyDrop::new(skel),
                    obj,
                    bss,
                    nglobals: image.globals_init.len(),
                    kinds: opts.kinds.clone(),
                };
                rt.fill(image);
                Ok(rt)
            }
            Err(e) => {
                // SAFETY: the failed open/load dropped whatever it put in the storage
                // (the skeleton's owned reference drops the object on error); free it.
                drop(unsafe { Box::from_raw(obj.as_ptr()) });
                Err(e)
            }
        }
    }

    fn open_and_load(
        obj: NonNull<MaybeUninit<OpenObject>>,
        opts: &LoadOptions,
    ) -> Result<(skel::OtfRuntimeSkel<'static>, NonNull<types::bss>)> {
        // SAFETY: `obj` is a live heap allocation that outlives the skeleton (see `Drop`),
        // and nothing else accesses it while the skeleton exists.
        let storage: &'static mut MaybeUninit<OpenObject> = unsafe { &mut *obj.as_ptr() };
        let mut open = skel::OtfRuntimeSkelBuilder::default()
            .open(storage)
            .map_err(|e| Error::with("opening the otf BPF runtime object", e))?;
        for &k in ProgKind::ALL {
            let load = opts.kinds.contains(&k);
            let p = Self::open_prog(&mut open, k);
            p.set_autoload(load);
            p.set_autoattach(false);
            if opts.verifier_log_level != 0 {
                p.set_log_level(opts.verifier_log_level);
            }
        }
        let mut skel = open.load().map_err(|e| {
            Error::with(
                "loading the otf BPF runtime (libbpf prints the verifier log above)",
                e,
            )
        })?;
        let bss = skel
            .maps
            .bss_data
            .as_deref_mut()
            .map(NonNull::from)
            .ok_or_else(|| Error::msg("the otf BPF runtime's .bss is not mmapped"))?;
        Ok((skel, bss))
    }

    fn open_prog<'a>(
        open: &'a mut skel::OpenOtfRuntimeSkel<'static>,
        k: ProgKind,
    ) -> &'a mut libbpf_rs::OpenProgramMut<'static> {
        let p = &mut open.progs;
        match k {
            ProgKind::PerfEvent => &mut p.otf_perf_event,
            ProgKind::Tracepoint => &mut p.otf_tracepoint,
            ProgKind::RawTp => &mut p.otf_raw_tp,
            ProgKind::Uprobe => &mut p.otf_uprobe,
            ProgKind::Uretprobe => &mut p.otf_uretprobe,
            ProgKind::UprobeMulti => &mut p.otf_uprobe_multi,
            ProgKind::UretprobeMulti => &mut p.otf_uretprobe_multi,
            ProgKind::Kprobe => &mut p.otf_kprobe,
            ProgKind::Kretprobe => &mut p.otf_kretprobe,
            ProgKind::KprobeMulti => &mut p.otf_kprobe_multi,
            ProgKind::KretprobeMulti => &mut p.otf_kretprobe_multi,
            ProgKind::TestEntry => &mut p.otf_test_entry,
        }
    }

    fn bss_mut(&self) -> *mut types::bss {
        self.bss.as_ptr()
    }

    /// Write the image into the (not yet attached) runtime.
    fn fill(&self, image: &RuntimeImage) {
        let b = self.bss_mut();
        // SAFETY: `b` points to the mmapped .bss of the loaded object, valid while `self`
        // lives; nothing is attached yet, and all indices are checked by `validate` and the
        // array lengths.
        unsafe {
            let code = std::ptr::addr_of_mut!((*b).code) as *mut types::otf_insn;
            for (i, insn) in image.code.iter().enumerate().take(MAX_CODE) {
                code.add(i).write_volatile(types::otf_insn {
                    op: insn.op,
                    pad: [0; 3],
                    arg: insn.arg,
                    imm: insn.imm,
                });
            }
            let globals = std::ptr::addr_of_mut!((*b).globals) as *mut i64;
            for (i, &v) in image.globals_init.iter().enumerate().take(MAX_GLOBALS) {
                globals.add(i).write_volatile(v);
            }
            let cond_code = std::ptr::addr_of_mut!((*b).cond_code) as *mut u32;
            for (i, &off) in image.cond_code.iter().enumerate().take(MAX_CONDS) {
                cond_code.add(i).write_volatile(off);
            }
            let cond_enabled = std::ptr::addr_of_mut!((*b).cond_enabled) as *mut u8;
            for (i, &on) in image.cond_init.iter().enumerate().take(MAX_CONDS) {
                cond_enabled.add(i).write_volatile(on as u8);
            }
            let reeval = std::ptr::addr_of_mut!((*b).reeval) as *mut u32;
            let probes = std::ptr::addr_of_mut!((*b).probes) as *mut types::otf_probe;
            let mut off = 0usize;
            for (pidx, p) in image.probes.iter().enumerate().take(MAX_PROBES) {
                for (k, &c) in p.reeval.iter().enumerate() {
                    reeval.add(off + k).write_volatile(c);
                }
                let mut flags = PROBE_VALID;
                if p.safe_context {
                    flags |= PROBE_SAFE;
                }
                if p.is_return {
                    flags |= PROBE_RETURN;
                }
                if p.entry.is_some() {
                    flags |= PROBE_HAS_ENTRY;
                }
                probes.add(pidx).write_volatile(types::otf_probe {
                    body: p.body.unwrap_or(NO_CODE),
                    entry: p.entry.unwrap_or(NO_CODE),
                    flags,
                    reeval_off: off as u32,
                    reeval_len: p.reeval.len() as u32,
                    chain: p.chain.unwrap_or(NO_CODE),
                    lock_mask: p.lock_mask,
                });
                off += p.reeval.len();
            }
            std::ptr::addr_of_mut!((*b).target_pid).write_volatile(image.target_pid);
        }
        self.update_time_offset();
    }

    /// Recompute the offset added to the kernel's boot-time clock for `gettimeofday_ns()`
    /// (`CLOCK_REALTIME - CLOCK_BOOTTIME`); call it again after the wall clock was set.
    pub fn update_time_offset(&self) {
        let off = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME);
        // SAFETY: an aligned i64 of the mmapped .bss, valid while `self` lives.
        let p = unsafe { std::ptr::addr_of_mut!((*self.bss_mut()).time_offset) };
        // SAFETY: as above; shared with the kernel, so accessed atomically.
        unsafe { AtomicI64::from_ptr(p) }.store(off, Ordering::Relaxed);
    }

    /// Set `target()`.
    pub fn set_target_pid(&self, pid: i64) {
        // SAFETY: an aligned i64 of the mmapped .bss, valid while `self` lives.
        let p = unsafe { std::ptr::addr_of_mut!((*self.bss_mut()).target_pid) };
        // SAFETY: as above; shared with the kernel, so accessed atomically.
        unsafe { AtomicI64::from_ptr(p) }.store(pid, Ordering::Relaxed);
    }

    /// The handler program of kind `kind`, to attach with a cookie from [`cookie`] or
    /// [`entry_cookie`]. `None` if that kind was not loaded ([`LoadOptions`]).
    pub fn program(&self, kind: ProgKind) -> Option<&libbpf_rs::ProgramMut<'_>> {
        if !self.kinds.contains(&kind) {
            return None;
        }
        let p = &self.skel.progs;
        let prog: &libbpf_rs::ProgramMut<'static> = match kind {
            ProgKind::PerfEvent => &p.otf_perf_event,
            ProgKind::Tracepoint => &p.otf_tracepoint,
            ProgKind::RawTp => &p.otf_raw_tp,
            ProgKind::Uprobe => &p.otf_uprobe,
            ProgKind::Uretprobe => &p.otf_uretprobe,
            ProgKind::UprobeMulti => &p.otf_uprobe_multi,
            ProgKind::UretprobeMulti => &p.otf_uretprobe_multi,
            ProgKind::Kprobe => &p.otf_kprobe,
            ProgKind::Kretprobe => &p.otf_kretprobe,
            ProgKind::KprobeMulti => &p.otf_kprobe_multi,
            ProgKind::KretprobeMulti => &p.otf_kretprobe_multi,
            ProgKind::TestEntry => &p.otf_test_entry,
        };
        Some(prog)
    }

    /// Run one hit of the attachment with cookie `cookie` in the kernel, through
    /// `BPF_PROG_TEST_RUN` of the test-entry program (no function arguments). Used by tests
    /// and benchmarks.
    pub fn test_run_hit(&self, cookie: u64) -> Result<()> {
        if !self.kinds.contains(&ProgKind::TestEntry) {
            return Err(Error::msg("the test-entry program is not loaded"));
        }
        let prog = &self.skel.progs.otf_test_entry;
        let mut ctx = cookie.to_ne_bytes();
        let input = libbpf_rs::ProgramInput {
            context_in: Some(&mut ctx),
            ..Default::default()
        };
        prog.test_run(input)
            .map_err(|e| Error::with(format!("test run of cookie {cookie:#x}"), e))?;
        Ok(())
    }

    /// The script's globals over the mmapped `.bss`, for the reference VM (`begin`/`end`
    /// bodies, condition evaluation at refresh) and for reading results.
    pub fn globals(&self) -> GlobalsView<'_> {
        // SAFETY: the globals array of the mmapped .bss, valid while `self` lives.
        let p = unsafe { std::ptr::addr_of_mut!((*self.bss_mut()).globals) } as *mut i64;
        GlobalsView {
            // SAFETY: derived from a non-null pointer.
            ptr: unsafe { NonNull::new_unchecked(p) },
            len: self.nglobals,
            _rt: std::marker::PhantomData,
        }
    }

    fn cond_ptr(&self, id: u32) -> Option<&AtomicU8> {
        if id as usize >= MAX_CONDS {
            return None;
        }
        // SAFETY: an element of the mmapped cond_enabled array (index checked), valid while
        // `self` lives; shared with the kernel, so accessed atomically.
        unsafe {
            let base = std::ptr::addr_of_mut!((*self.bss_mut()).cond_enabled) as *mut u8;
            Some(AtomicU8::from_ptr(base.add(id as usize)))
        }
    }

    /// The cached value of condition `id` (false for an unknown id).
    pub fn cond_enabled(&self, id: u32) -> bool {
        self.cond_ptr(id)
            .is_some_and(|c| c.load(Ordering::Relaxed) != 0)
    }

    /// Set the cached value of condition `id` (ignored for an id out of range).
    pub fn set_cond_enabled(&self, id: u32, on: bool) {
        if let Some(c) = self.cond_ptr(id) {
            c.store(on as u8, Ordering::Relaxed);
        }
    }

    fn u64_field(&self, f: impl FnOnce(*mut types::bss) -> *mut u64) -> &AtomicU64 {
        // SAFETY: `f` returns the address of an aligned u64 field of the mmapped .bss,
        // valid while `self` lives; shared with the kernel, so accessed atomically.
        unsafe { AtomicU64::from_ptr(f(self.bss_mut())) }
    }

    /// Atomically read and clear `need_refresh`: `true` if some condition bit changed since
    /// the last call.
    pub fn take_need_refresh(&self) -> bool {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).need_refresh) })
            .swap(0, Ordering::SeqCst)
            != 0
    }

    /// `need_refresh` without clearing it.
    pub fn need_refresh(&self) -> bool {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).need_refresh) })
            .load(Ordering::SeqCst)
            != 0
    }

    /// `exit()` was called by some probe body.
    pub fn exit_requested(&self) -> bool {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).exit_requested) })
            .load(Ordering::Relaxed)
            != 0
    }

    /// Forget an `exit()` request, so that bodies run again (while it is set, no body runs).
    /// For tools that keep one runtime across runs, such as the differential test.
    pub fn clear_exit_requested(&self) {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).exit_requested) })
            .store(0, Ordering::SeqCst);
    }

    /// Enter the STOPPING state: from now on no probe body runs (as after `exit()`), so the
    /// `end` bodies see the final globals. Called by the orchestrator when the session stops.
    pub fn set_stopping(&self) {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).stopping) })
            .store(1, Ordering::SeqCst);
    }

    /// Try to take the lock stripes `mask` from user space (as a body does in the kernel),
    /// polling at most `tries` times. Release with [`Runtime::unlock`].
    pub fn try_lock(&self, mask: u64, tries: u32) -> bool {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        let w = self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).lock_word) });
        for _ in 0..tries.max(1) {
            let old = w.load(Ordering::Relaxed);
            if old & mask == 0
                && w.compare_exchange(old, old | mask, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    /// Release lock stripes taken with [`Runtime::try_lock`].
    pub fn unlock(&self, mask: u64) {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).lock_word) })
            .fetch_and(!mask, Ordering::SeqCst);
    }

    /// The counters of `pidx` (zero for a pidx out of range).
    pub fn counters(&self, pidx: u32) -> Counters {
        if pidx as usize >= MAX_PROBES {
            return Counters::default();
        }
        // SAFETY: an element of the mmapped counters array (index checked).
        let c = unsafe {
            (std::ptr::addr_of_mut!((*self.bss_mut()).counters) as *mut types::otf_counters)
                .add(pidx as usize)
        };
        // SAFETY: fields of that element (see `u64_field`).
        let rd = |f: *mut u64| unsafe { AtomicU64::from_ptr(f) }.load(Ordering::Relaxed);
        // SAFETY: `c` is valid (above); addr_of_mut! creates no reference.
        unsafe {
            Counters {
                hits: rd(std::ptr::addr_of_mut!((*c).hits)),
                bodies: rd(std::ptr::addr_of_mut!((*c).bodies)),
                skipped_cond: rd(std::ptr::addr_of_mut!((*c).skipped_cond)),
                skipped_lock: rd(std::ptr::addr_of_mut!((*c).skipped_lock)),
                skipped_nest: rd(std::ptr::addr_of_mut!((*c).skipped_nest)),
                errors: rd(std::ptr::addr_of_mut!((*c).errors)),
                entry_runs: rd(std::ptr::addr_of_mut!((*c).entry_runs)),
            }
        }
    }

    /// The global counters.
    pub fn error_counters(&self) -> ErrorCounters {
        // SAFETY: the stats struct of the mmapped .bss.
        let s = unsafe { std::ptr::addr_of_mut!((*self.bss_mut()).stats) };
        // SAFETY: fields of it (see `u64_field`).
        let rd = |f: *mut u64| unsafe { AtomicU64::from_ptr(f) }.load(Ordering::Relaxed);
        // SAFETY: `s` is valid; addr_of_mut! creates no reference.
        unsafe {
            let e = std::ptr::addr_of_mut!((*s).errors) as *mut u64;
            ErrorCounters {
                division_by_zero: rd(e.add(ERR_DIV_ZERO as usize)),
                max_action: rd(e.add(ERR_MAXACTION as usize)),
                invalid_randint: rd(e.add(ERR_RANDINT as usize)),
                bad_code: rd(e.add(ERR_BAD_CODE as usize)),
                ringbuf_dropped: rd(std::ptr::addr_of_mut!((*s).ringbuf_dropped)),
                bad_cookie: rd(std::ptr::addr_of_mut!((*s).bad_cookie)),
                notifications: rd(std::ptr::addr_of_mut!((*s).notifications)),
                lock_contended: rd(std::ptr::addr_of_mut!((*s).lock_contended)),
            }
        }
    }

    /// A consumer of the runtime's ring buffer. Create one per runtime.
    pub fn events(&self) -> Result<EventReader<'_>> {
        let queue: Rc<RefCell<VecDeque<Event>>> = Rc::default();
        let bad: Rc<RefCell<u64>> = Rc::default();
        let (q, b) = (queue.clone(), bad.clone());
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.events, move |data: &[u8]| {
                match decode(data) {
                    Some(e) => q.borrow_mut().push_back(e),
                    None => *b.borrow_mut() += 1,
                }
                0
            })
            .map_err(|e| Error::with("setting up the ring buffer consumer", e))?;
        let rb = builder
            .build()
            .map_err(|e| Error::with("setting up the ring buffer consumer", e))?;
        Ok(EventReader {
            rb,
            queue,
            bad,
            _rt: std::marker::PhantomData,
        })
    }

    /// The number of globals of the loaded script.
    pub fn nglobals(&self) -> usize {
        self.nglobals
    }

    /// The ring buffer map, e.g. to add it to one's own [`RingBufferBuilder`].
    pub fn events_map(&self) -> &dyn MapCore {
        &self.skel.maps.events
    }
}

/// The script's globals in the mmapped `.bss`, shared live with the BPF programs. Accesses
/// are single 64-bit atomic loads and stores (no tearing); a body's atomicity against them
/// needs [`Runtime::try_lock`].
#[derive(Debug)]
pub struct GlobalsView<'a> {
    ptr: NonNull<i64>,
    len: usize,
    _rt: std::marker::PhantomData<&'a Runtime>,
}

impl GlobalsView<'_> {
    fn cell(&self, idx: u32) -> Option<&AtomicI64> {
        if (idx as usize) < self.len {
            // SAFETY: idx < len <= MAX_GLOBALS, inside the mmapped globals array, which
            // outlives 'a; shared with the kernel, so accessed atomically.
            Some(unsafe { AtomicI64::from_ptr(self.ptr.as_ptr().add(idx as usize)) })
        } else {
            None
        }
    }

    /// Global `idx`, or `None` out of range.
    pub fn get(&self, idx: u32) -> Option<i64> {
        self.cell(idx).map(|c| c.load(Ordering::Relaxed))
    }

    /// Set global `idx`; `false` out of range.
    pub fn set(&self, idx: u32, v: i64) -> bool {
        self.cell(idx)
            .map(|c| c.store(v, Ordering::Relaxed))
            .is_some()
    }

    /// A copy of all globals.
    pub fn snapshot(&self) -> Vec<i64> {
        (0..self.len as u32).filter_map(|i| self.get(i)).collect()
    }
}

impl GlobalStore for GlobalsView<'_> {
    fn load(&self, idx: u32) -> i64 {
        self.get(idx).unwrap_or(0)
    }
    fn store(&mut self, idx: u32, v: i64) {
        self.set(idx, v);
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// A consumer of the runtime's ring buffer, decoding records into [`Event`]s.
pub struct EventReader<'a> {
    rb: RingBuffer<'static>,
    queue: Rc<RefCell<VecDeque<Event>>>,
    bad: Rc<RefCell<u64>>,
    _rt: std::marker::PhantomData<&'a Runtime>,
}

impl fmt::Debug for EventReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventReader")
            .field("queued", &self.queue.borrow().len())
            .finish_non_exhaustive()
    }
}

impl EventReader<'_> {
    /// An epoll fd that becomes readable when records are available (for the orchestrator's
    /// event loop).
    pub fn epoll_fd(&self) -> RawFd {
        self.rb.epoll_fd()
    }

    /// Take every record available now, without waiting.
    pub fn drain(&mut self) -> Result<Vec<Event>> {
        self.rb
            .consume()
            .map_err(|e| Error::with("reading the ring buffer", e))?;
        Ok(self.queue.borrow_mut().drain(..).collect())
    }

    /// Wait up to `timeout` for records, then take every record available.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Event>> {
        self.rb
            .poll(timeout)
            .map_err(|e| Error::with("polling the ring buffer", e))?;
        self.drain()
    }

    /// Records that could not be decoded so far (should stay 0).
    pub fn undecodable(&self) -> u64 {
        *self.bad.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn c_structs_match_rust_layout() {
        assert_eq!(size_of::<types::otf_insn>(), size_of::<Insn>());
        assert_eq!(offset_of!(types::otf_insn, arg), offset_of!(Insn, arg));
        assert_eq!(offset_of!(types::otf_insn, imm), offset_of!(Insn, imm));
        assert_eq!(size_of::<types::otf_rec_hdr>(), REC_HDR_SIZE);
        assert_eq!(offset_of!(types::otf_rec_hdr, cpu), 16);
        assert_eq!(offset_of!(types::otf_rec_hdr, comm), 32);
        assert_eq!(size_of::<types::otf_probe>(), 32);
        assert_eq!(size_of::<types::otf_counters>(), 64);
        assert_eq!(std::mem::size_of_val(&[0i64; MAX_GLOBALS]), 8 * 1024);
    }

    #[test]
    fn image_validation_names_the_problem() {
        let mut img = RuntimeImage::default();
        assert!(img.validate().is_ok());
        img.probes.push(ProbeSlot {
            body: Some(3),
            ..Default::default()
        });
        let e = img.validate().unwrap_err().to_string();
        assert!(e.contains("body of pidx 0"), "{e}");
        img.code = vec![Insn::op(otf_script::bytecode::Op::Next); 4];
        assert!(img.validate().is_ok());
        img.probes[0].reeval = vec![0];
        let e = img.validate().unwrap_err().to_string();
        assert!(e.contains("condition 0"), "{e}");
        img.globals_init = vec![0; MAX_GLOBALS + 1];
        img.probes[0].reeval.clear();
        assert!(img.validate().is_err());
    }
}
