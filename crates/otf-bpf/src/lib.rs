//! The otf BPF runtime: the maps a script runs on, its generated handler programs
//! (otf-codegen), loading, and the decoding of their events.
//!
//! The orchestrator fills a [`RuntimeImage`] from the compiler's output, loads it with
//! [`Runtime::load`] (which creates the maps, generates one handler per attach kind and
//! loads it through the kernel's verifier), attaches the handlers ([`Runtime::program`]) with
//! each attachment's pidx as the attach cookie ([`cookie`], [`entry_cookie`]), and then reads
//! and writes the script's globals ([`Runtime::globals`]), the cached condition bits
//! ([`Runtime::cond_enabled`]), the `need_refresh` flag ([`Runtime::take_need_refresh`]) and
//! the counters through the mmapped shared map, without syscalls; the script's arrays and
//! aggregates live in one BPF map each, read and written with bpf(2) through
//! [`Runtime::store`], which sees every global. Records (output, `exit()`, run-time errors,
//! notifications) arrive on a ring buffer ([`Runtime::events`]).
//!
//! See `docs/runtime.md` for the hit path, the lock and the limits, and `docs/codegen.md` for
//! the generated code.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use libbpf_rs::{MapCore, MapHandle, MapType, RingBuffer, RingBufferBuilder};
use otf_codegen::layout::{CpuState, Shared};
use otf_script::bytecode::{Ctx, Op, MAX_GLOBALS};
use otf_script::vm::GlobalStore;

mod arrays;
mod btf;
mod events;
pub mod features;

pub use arrays::RuntimeStore;
pub use events::{decode, Event, RuntimeErrorKind};
use layout::*;
pub use layout::{cookie, entry_cookie};
pub use otf_codegen::layout::Counters;
pub use otf_codegen::{layout, KernelInfo, ProbeSlot, ProgKind, RuntimeImage};

/// An error of the runtime: what was being done, and the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("{}", Error::text(context, source.as_deref()))]
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

    /// `CONTEXT: SOURCE`, or either alone when the other is missing.
    fn text(
        context: &str,
        source: Option<&(dyn std::error::Error + Send + Sync + 'static)>,
    ) -> String {
        match source {
            Some(s) if context.is_empty() => s.to_string(),
            Some(s) => format!("{context}: {s}"),
            None => context.to_string(),
        }
    }

    /// What was being done when the error happened.
    pub fn context(&self) -> &str {
        &self.context
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// New elements refused by a full array.
    pub array_full: u64,
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
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// The program kinds to load (the others are not loaded and [`Runtime::program`] returns
    /// `None` for them). On kernels before 6.10, leave out [`ProgKind::RawTp`] (no cookies).
    pub kinds: Vec<ProgKind>,
    /// Kernel verifier log level for every program (0: only on failure; 4: statistics;
    /// 1 or 2: full log, printed on stderr).
    pub verifier_log_level: u32,
    /// For tests of the failure path: changes each generated program before it is loaded.
    pub tamper: Option<fn(&mut otf_codegen::Program)>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            kinds: ProgKind::ALL.to_vec(),
            verifier_log_level: 0,
            tamper: None,
        }
    }
}

/// The maps of a runtime.
struct Maps {
    shared: MapHandle,
    events: MapHandle,
    cpu: MapHandle,
    entry: MapHandle,
    /// The arrays' and aggregates' maps and the zero value.
    globals: arrays::GlobalMaps,
    /// `pp()` and `probefunc()` of each pidx ([`otf_codegen::MapId::Names`]).
    names: MapHandle,
    /// The `sprintf` formats ([`otf_codegen::MapId::Formats`]).
    formats: MapHandle,
    /// The BPF timers, when the timer program is loaded ([`otf_codegen::MapId::Timers`]).
    timers: Option<MapHandle>,
    /// The syscall dispatch, when a syscall program is loaded ([`otf_codegen::MapId::Syscalls`]).
    syscalls: Option<MapHandle>,
}

/// The loaded runtime: maps, the mmapped shared value and the handler programs.
pub struct Runtime {
    maps: Maps,
    /// The mmapped [`Shared`] value.
    bss: NonNull<Shared>,
    mmap_len: usize,
    progs: Vec<(ProgKind, OwnedFd)>,
    nglobals: usize,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("nglobals", &self.nglobals)
            .field(
                "kinds",
                &self.progs.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

// SAFETY: every field is an owned fd or a pointer into a shared mapping owned by `self`,
// neither tied to a thread; all accesses to the mapping are atomic.
unsafe impl Send for Runtime {}

impl Drop for Runtime {
    fn drop(&mut self) {
        // SAFETY: `bss` is the start of a mapping of `mmap_len` bytes made in `load_with` and
        // not unmapped elsewhere; nothing borrows it any more (borrows are tied to `self`).
        unsafe { libc::munmap(self.bss.as_ptr().cast(), self.mmap_len) };
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

fn create_map(
    ty: MapType,
    name: &str,
    key: u32,
    value: u32,
    entries: u32,
    flags: u32,
) -> Result<MapHandle> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
        map_flags: flags,
        ..Default::default()
    };
    MapHandle::create(ty, Some(name), key, value, entries, &opts)
        .map_err(|e| Error::with(format!("creating the BPF map {name}"), e))
}

/// The timers map: one [`otf_codegen::layout::TimerSlot`] per pidx, described by BTF so that
/// the kernel finds its `struct bpf_timer`.
fn timers_map(npidx: usize) -> Result<MapHandle> {
    let (data, key, value) = otf_codegen::timer_map_btf();
    let btf = load_btf(&data)?;
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as libbpf_sys::size_t,
        btf_fd: btf.as_raw_fd() as u32,
        btf_key_type_id: key,
        btf_value_type_id: value,
        ..Default::default()
    };
    MapHandle::create(
        MapType::Array,
        Some("otf_timers"),
        4,
        std::mem::size_of::<otf_codegen::layout::TimerSlot>() as u32,
        npidx.max(1) as u32,
        &opts,
    )
    .map_err(|e| Error::with("creating the BPF map otf_timers", e))
}

/// Whether the code reads `pp()` or `probefunc()` as a string value.
fn uses_names(image: &RuntimeImage) -> bool {
    image
        .code
        .iter()
        .any(|i| i.opcode() == Some(Op::SCtx) && i.arg != 0)
}

/// The map of `pp()` and `probefunc()` per pidx ([`otf_codegen::MapId::Names`]): filled
/// when the code reads them, else one empty element.
fn names_map(image: &RuntimeImage) -> Result<MapHandle> {
    use otf_script::bytecode::MAXSTRINGLEN;
    let used = uses_names(image);
    let n = if used { image.probes.len().max(1) } else { 1 };
    let m = create_map(
        MapType::Array,
        "otf_names",
        4,
        2 * MAXSTRINGLEN as u32,
        n as u32,
        libbpf_sys::BPF_F_RDONLY_PROG,
    )?;
    if used {
        for (pidx, p) in image.probes.iter().enumerate() {
            let mut v = [0u8; 2 * MAXSTRINGLEN];
            for (k, s) in [&p.pp, &p.probefunc].into_iter().enumerate() {
                let t = otf_script::vm::truncate(s.clone());
                v[k * MAXSTRINGLEN..][..t.len()].copy_from_slice(t.as_bytes());
            }
            m.update(&(pidx as u32).to_ne_bytes(), &v, libbpf_rs::MapFlags::ANY)
                .map_err(|e| Error::with("filling the names map", e))?;
        }
    }
    Ok(m)
}

/// The map of the `bpf_snprintf` formats of the image's `sprintf`s
/// ([`otf_codegen::MapId::Formats`]): one value, read only to the programs and frozen after
/// it is filled, as the helper's format argument (`ARG_PTR_TO_CONST_STR`) requires.
fn formats_map(image: &RuntimeImage) -> Result<MapHandle> {
    let (value, _) = otf_codegen::maps::sprintf_formats(&image.code, &image.strings);
    let m = create_map(
        MapType::Array,
        "otf_formats",
        4,
        value.len() as u32,
        1,
        libbpf_sys::BPF_F_RDONLY_PROG,
    )?;
    m.update(&0u32.to_ne_bytes(), &value, libbpf_rs::MapFlags::ANY)
        .map_err(|e| Error::with("filling the formats map", e))?;
    m.freeze()
        .map_err(|e| Error::with("freezing the formats map", e))?;
    Ok(m)
}

/// Whether any program of the image reads `ppid()` (which needs the kernel's BTF).
fn uses_ppid(image: &RuntimeImage) -> bool {
    image
        .code
        .iter()
        .any(|i| i.opcode() == Some(Op::Ctx) && Ctx::from_i32(i.arg) == Some(Ctx::Ppid))
}

impl Runtime {
    /// Load the runtime with every program kind and fill it with `image`.
    pub fn load(image: &RuntimeImage) -> Result<Runtime> {
        Self::load_with(image, &LoadOptions::default())
    }

    /// Create the maps, fill them with `image`, and generate and load the handlers of the
    /// kinds in `opts`. A program the verifier refuses is an otf bug: the error names the
    /// probe and keeps the verifier log in a file.
    pub fn load_with(image: &RuntimeImage, opts: &LoadOptions) -> Result<Runtime> {
        image.validate().map_err(|e| Error::with("", e))?;
        let shared_size = std::mem::size_of::<Shared>();
        let maps = Maps {
            shared: create_map(
                MapType::Array,
                "otf_shared",
                4,
                shared_size as u32,
                1,
                libbpf_sys::BPF_F_MMAPABLE,
            )?,
            events: create_map(MapType::RingBuf, "otf_events", 0, 0, RINGBUF_SIZE as u32, 0)?,
            cpu: create_map(
                MapType::PercpuArray,
                "otf_cpu",
                4,
                std::mem::size_of::<CpuState>() as u32,
                1,
                0,
            )?,
            entry: create_map(
                MapType::LruHash,
                "otf_entry",
                8,
                8 * otf_script::bytecode::MAX_ENTRY_SLOTS as u32,
                ENTRY_MAP_SIZE as u32,
                0,
            )?,
            globals: arrays::GlobalMaps::create(&image.maps, image.globals_init.len())?,
            names: names_map(image)?,
            formats: formats_map(image)?,
            timers: if opts.kinds.contains(&ProgKind::Timer) {
                Some(timers_map(image.probes.len())?)
            } else {
                None
            },
            syscalls: if opts.kinds.iter().any(|k| k.syscall_tracepoint().is_some()) {
                Some(create_map(
                    MapType::Array,
                    "otf_syscalls",
                    4,
                    4,
                    (otf_codegen::layout::SYSCALL_UNITS * otf_codegen::layout::SYSCALL_NRS) as u32,
                    0,
                )?)
            } else {
                None
            },
        };
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let mmap_len = shared_size.div_ceil(page) * page;
        // SAFETY: maps `mmap_len` bytes of the mmapable array's fd, which the kernel sized
        // for one value of `shared_size` bytes (rounded to pages); checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mmap_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                maps.shared.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::with(
                "mapping the shared BPF map",
                std::io::Error::last_os_error(),
            ));
        }
        let mut rt = Runtime {
            maps,
            bss: NonNull::new(p.cast()).ok_or_else(|| Error::msg("mmap returned NULL"))?,
            mmap_len,
            progs: Vec::new(),
            nglobals: image.globals_init.len(),
        };
        rt.fill(image);
        let kinfo = if uses_ppid(image) {
            btf::kernel_info()?
        } else {
            KernelInfo::default()
        };
        for &kind in &opts.kinds {
            let mut prog = otf_codegen::generate(image, kind, &kinfo)
                .map_err(|e| Error::with(format!("generating the {} handler", kind.name()), e))?;
            if let Some(t) = opts.tamper {
                t(&mut prog);
            }
            let fd = rt.load_program(image, &prog, opts.verifier_log_level)?;
            rt.progs.push((kind, fd));
        }
        Ok(rt)
    }

    fn map_fd(&self, m: otf_codegen::MapId) -> Result<RawFd> {
        let h = match m {
            otf_codegen::MapId::Shared => &self.maps.shared,
            otf_codegen::MapId::Events => &self.maps.events,
            otf_codegen::MapId::Cpu => &self.maps.cpu,
            otf_codegen::MapId::Entry => &self.maps.entry,
            otf_codegen::MapId::Names => &self.maps.names,
            otf_codegen::MapId::Formats => &self.maps.formats,
            otf_codegen::MapId::Global(g) => {
                return self.maps.globals.fd(m).ok_or_else(|| {
                    Error::msg(format!(
                        "the generated code uses the map of global {g}, which the image does not have (an otf bug)"
                    ))
                })
            }
            otf_codegen::MapId::Timers => self
                .maps
                .timers
                .as_ref()
                .ok_or_else(|| Error::msg("no timers map (an otf bug)"))?,
            otf_codegen::MapId::Syscalls => self
                .maps
                .syscalls
                .as_ref()
                .ok_or_else(|| Error::msg("no syscalls map (an otf bug)"))?,
            otf_codegen::MapId::Zero | otf_codegen::MapId::Strings => {
                return self
                    .maps
                    .globals
                    .fd(m)
                    .ok_or_else(|| Error::msg(format!("no {m} map")))
            }
        };
        Ok(h.as_fd().as_raw_fd())
    }

    fn load_program(
        &self,
        image: &RuntimeImage,
        prog: &otf_codegen::Program,
        log_level: u32,
    ) -> Result<OwnedFd> {
        let mut insns = prog.insns.clone();
        for &(at, m) in &prog.map_refs {
            insns[at].imm = self.map_fd(m)?;
        }
        let bytes: Vec<u8> = insns.iter().flat_map(|i| i.to_bytes()).collect();
        let btf = load_btf(&prog.btf)?;
        let func_info: Vec<u32> = prog
            .func_info
            .iter()
            .flat_map(|&(off, ty)| [off, ty])
            .collect();
        let name = std::ffi::CString::new(prog.kind.name()).expect("no NUL in names");
        let load = |log_level: u32, log: &mut [u8]| {
            let mut opts = libbpf_sys::bpf_prog_load_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as libbpf_sys::size_t,
                expected_attach_type: prog.kind.expected_attach_type(),
                prog_flags: prog.kind.prog_flags(),
                prog_btf_fd: btf.as_raw_fd() as u32,
                func_info: func_info.as_ptr().cast(),
                func_info_cnt: prog.func_info.len() as u32,
                func_info_rec_size: 8,
                log_level,
                log_size: log.len() as u32,
                log_buf: if log.is_empty() {
                    std::ptr::null_mut()
                } else {
                    log.as_mut_ptr().cast()
                },
                ..Default::default()
            };
            // SAFETY: `bytes` holds `insns.len()` encoded `struct bpf_insn`s and outlives the
            // call; the strings are NUL-terminated; `opts` is a zeroed options struct of the
            // libbpf version we link, with no log buffer or one of `log_size` bytes that
            // outlives the call.
            unsafe {
                libbpf_sys::bpf_prog_load(
                    prog.kind.prog_type(),
                    name.as_ptr(),
                    c"Dual MIT/GPL".as_ptr(),
                    bytes.as_ptr().cast(),
                    insns.len() as libbpf_sys::size_t,
                    &mut opts,
                )
            }
        };
        let log_text = |log: &[u8]| {
            String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)])
                .into_owned()
        };
        // The verifier's log is asked for only when the user wants it (`log_level`) or to explain
        // a failed load, which is loaded again with a log: a 16 MiB buffer allocated for every
        // load left the heap with a 16 MiB free top that khugepaged (THP "always", Debian 6.1)
        // filled with huge pages while otf ran, growing VmRSS by up to 16 MiB it never used.
        let mut log = if log_level != 0 {
            vec![0u8; VERIFIER_LOG_SIZE]
        } else {
            Vec::new()
        };
        let fd = load(log_level, &mut log);
        if fd < 0 && log_level == 0 {
            log = vec![0u8; VERIFIER_LOG_SIZE];
            let again = load(1, &mut log);
            if again >= 0 {
                // SAFETY: `again` is a new program fd that nothing else owns; closed here.
                drop(unsafe { OwnedFd::from_raw_fd(again) });
            }
        }
        if fd < 0 {
            let err = std::io::Error::from_raw_os_error(-fd);
            return Err(verifier_error(image, prog, &log_text(&log), err));
        }
        if log_level != 0 {
            eprintln!("{}: verifier log:\n{}", prog.kind.name(), log_text(&log));
        }
        // SAFETY: `fd` is a new program fd that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn bss_mut(&self) -> *mut Shared {
        self.bss.as_ptr()
    }

    /// Write the image into the (not yet attached) maps.
    fn fill(&self, image: &RuntimeImage) {
        let b = self.bss_mut();
        let variants = otf_codegen::variant_ids(image);
        // SAFETY: `b` points to the mmapped shared value, valid while `self` lives; nothing
        // is attached yet, and all indices are checked by `validate` and the array lengths.
        unsafe {
            let globals = std::ptr::addr_of_mut!((*b).globals) as *mut i64;
            for (i, &v) in image.globals_init.iter().enumerate().take(MAX_GLOBALS) {
                globals.add(i).write_volatile(v);
            }
            let cond_enabled = std::ptr::addr_of_mut!((*b).cond_enabled) as *mut u8;
            for (i, &on) in image.cond_init.iter().enumerate().take(MAX_CONDS) {
                cond_enabled.add(i).write_volatile(on as u8);
            }
            let probes = std::ptr::addr_of_mut!((*b).probes) as *mut layout::Probe;
            for (pidx, p) in image.probes.iter().enumerate().take(MAX_PROBES) {
                let mut flags = PROBE_VALID | PROBE_ARMED;
                if p.safe_context {
                    flags |= PROBE_SAFE;
                }
                if p.is_return {
                    flags |= PROBE_RETURN;
                }
                if p.entry.is_some() {
                    flags |= PROBE_HAS_ENTRY;
                }
                probes.add(pidx).write_volatile(layout::Probe {
                    body: variants[pidx].unwrap_or(NO_CODE),
                    flags,
                    chain: p.chain.unwrap_or(NO_CODE),
                    pad: 0,
                });
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
    pub fn program(&self, kind: ProgKind) -> Option<BorrowedFd<'_>> {
        self.progs
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, fd)| fd.as_fd())
    }

    /// The timers map ([`otf_codegen::MapId::Timers`]), when the timer program is loaded: with
    /// [`Runtime::program`]`(ProgKind::Timer)`, what otf-hrtimer's `BpfTimers` drives.
    pub fn timers_map(&self) -> Option<BorrowedFd<'_>> {
        self.maps.timers.as_ref().map(|m| m.as_fd())
    }

    /// The syscall dispatch map ([`otf_codegen::MapId::Syscalls`]), when a syscall program
    /// ([`ProgKind::SyscallEnter`], [`ProgKind::SyscallExit`]) is loaded: user space writes
    /// pidx + 1 at [`layout::syscall_key`]`(unit, nr)` for each dispatched probe, and attaches
    /// the program to the raw tracepoint with the unit as cookie (otf-tracepoint does both).
    pub fn syscalls_map(&self) -> Option<BorrowedFd<'_>> {
        self.maps.syscalls.as_ref().map(|m| m.as_fd())
    }

    /// Run one hit of the attachment with cookie `cookie` in the kernel, through
    /// `BPF_PROG_TEST_RUN` of the test-entry program (no function arguments). Used by tests
    /// and benchmarks.
    pub fn test_run_hit(&self, cookie: u64) -> Result<()> {
        let prog = self
            .program(ProgKind::TestEntry)
            .ok_or_else(|| Error::msg("the test-entry program is not loaded"))?;
        let mut ctx = cookie.to_ne_bytes();
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            ctx_in: ctx.as_mut_ptr().cast(),
            ctx_size_in: ctx.len() as u32,
            ..Default::default()
        };
        // SAFETY: `opts` is a zeroed options struct with a context buffer that outlives the
        // call; the fd is a loaded program.
        let r = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
        if r < 0 {
            return Err(Error::with(
                format!("test run of cookie {cookie:#x}"),
                std::io::Error::from_raw_os_error(-r),
            ));
        }
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

    /// Every global, scalars and arrays and aggregates, as a
    /// [`GlobalStore`](otf_script::vm::GlobalStore) for the reference VM (`begin`/`end`
    /// bodies) and for reading results; see [`RuntimeStore`].
    pub fn store(&self) -> RuntimeStore<'_> {
        RuntimeStore::new(self.globals(), &self.maps.globals)
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

    /// Mark `pidx` armed or disarmed, as user space decided, before the attachment is made or
    /// released: a disarmed pidx runs no body even while the kernel still delivers its hits
    /// (a released attachment can fire until the kernel is done with it). Every pidx starts
    /// armed. Ignored for a pidx out of range.
    pub fn set_armed(&self, pidx: u32, armed: bool) {
        if pidx as usize >= MAX_PROBES {
            return;
        }
        // SAFETY: the flags of an element of the mmapped probes array (index checked), valid
        // while `self` lives; the kernel reads it concurrently, so it is accessed atomically.
        let flags = unsafe {
            let p = (std::ptr::addr_of_mut!((*self.bss_mut()).probes) as *mut layout::Probe)
                .add(pidx as usize);
            std::sync::atomic::AtomicU32::from_ptr(std::ptr::addr_of_mut!((*p).flags))
        };
        if armed {
            flags.fetch_or(PROBE_ARMED, Ordering::SeqCst);
        } else {
            flags.fetch_and(!PROBE_ARMED, Ordering::SeqCst);
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

    fn u64_field(&self, f: impl FnOnce(*mut Shared) -> *mut u64) -> &AtomicU64 {
        // SAFETY: `f` returns the address of an aligned u64 field of the mmapped .bss,
        // valid while `self` lives; shared with the kernel, so accessed atomically.
        unsafe { AtomicU64::from_ptr(f(self.bss_mut())) }
    }

    /// Atomically read and clear `need_refresh`: `true` if some condition bit changed since
    /// the last call.
    pub fn take_need_refresh(&self) -> bool {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).need_refresh.word) })
            .swap(0, Ordering::SeqCst)
            != 0
    }

    /// `need_refresh` without clearing it.
    pub fn need_refresh(&self) -> bool {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).need_refresh.word) })
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

    /// Whether a run-time error in a kernel body enters the STOPPING state at once (SystemTap's
    /// default; off for `--suppress-handler-errors`). Off until set.
    pub fn set_stop_on_error(&self, on: bool) {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).stop_on_error) })
            .store(on as u64, Ordering::SeqCst);
    }

    /// Try to take the lock stripes `mask` from user space (as a body does in the kernel),
    /// polling at most `tries` times. Release with [`Runtime::unlock`].
    pub fn try_lock(&self, mask: u64, tries: u32) -> bool {
        // SAFETY: address of a field of the .bss (see `u64_field`).
        let w = self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).lock_word.word) });
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
        self.u64_field(|b| unsafe { std::ptr::addr_of_mut!((*b).lock_word.word) })
            .fetch_and(!mask, Ordering::SeqCst);
    }

    /// The counters of `pidx` (zero for a pidx out of range).
    pub fn counters(&self, pidx: u32) -> Counters {
        if pidx as usize >= MAX_PROBES {
            return Counters::default();
        }
        // SAFETY: an element of the mmapped counters array (index checked).
        let c = unsafe {
            (std::ptr::addr_of_mut!((*self.bss_mut()).counters) as *mut layout::Counters)
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
                pad: 0,
            }
        }
    }

    /// Hits the kernel itself skipped, per loaded handler: its `recursion_misses` (5.12+),
    /// counted when a hit arrives while another BPF program runs on that CPU (for example a
    /// timer's interrupt landing in an armed body) and the program is not run at all.
    pub fn kernel_misses(&self) -> Vec<(ProgKind, u64)> {
        self.progs
            .iter()
            .map(|(k, fd)| {
                let mut info = libbpf_sys::bpf_prog_info::default();
                let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
                // SAFETY: `info` is a zeroed bpf_prog_info of `len` bytes that outlives the
                // call (no array fields requested); the fd is a loaded program.
                let r = unsafe {
                    libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len)
                };
                (*k, if r == 0 { info.recursion_misses } else { 0 })
            })
            .collect()
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
                array_full: rd(e.add(ERR_ARRAY_FULL as usize)),
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
            .add(&self.maps.events, move |data: &[u8]| {
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
        &self.maps.events
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

    /// Take at most `max` of the records available now, without waiting. An event loop that
    /// must stay responsive while a probe floods the ring buffer uses this: [`drain`](Self::drain)
    /// returns only once the buffer is empty, which a producer faster than its reader may
    /// never let happen. The ring buffer's epoll fd stays readable while records remain.
    pub fn drain_at_most(&mut self, max: usize) -> Result<Vec<Event>> {
        let n = self.rb.consume_raw_n(max.max(1));
        if n < 0 {
            return Err(Error::with(
                "reading the ring buffer",
                std::io::Error::from_raw_os_error(-n),
            ));
        }
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

/// Load a BTF blob into the kernel.
fn load_btf(data: &[u8]) -> Result<OwnedFd> {
    let mut opts = libbpf_sys::bpf_btf_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_btf_load_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    // SAFETY: `data` is a BTF blob of `data.len()` bytes that outlives the call; `opts` is a
    // zeroed options struct.
    let fd = unsafe {
        libbpf_sys::bpf_btf_load(
            data.as_ptr().cast(),
            data.len() as libbpf_sys::size_t,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(Error::with(
            "loading the BTF of the generated code (an otf bug)",
            std::io::Error::from_raw_os_error(-fd),
        ));
    }
    // SAFETY: `fd` is a new BTF fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bytes of the verifier log buffer: enough for the log of the largest program's failing path.
const VERIFIER_LOG_SIZE: usize = 16 << 20;

/// The error for a program the verifier refused: an otf bug, named by probe, with the
/// verifier log kept in a file.
fn verifier_error(
    image: &RuntimeImage,
    prog: &otf_codegen::Program,
    log: &str,
    err: std::io::Error,
) -> Error {
    // The verifier's last instruction line ("123: (79) r1 = ...") is where it stopped.
    let at = log.lines().rev().find_map(|l| {
        let (n, rest) = l.split_once(": (")?;
        rest.get(..2)?;
        n.trim().parse::<usize>().ok()
    });
    let who = at
        .and_then(|i| prog.owner_of(i))
        .and_then(|p| image.probes.get(p as usize))
        .map(|p| p.label.clone())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| format!("the {} handler", prog.kind.name()));
    let path = std::env::temp_dir().join(format!(
        "otf-verifier-{}-{}.log",
        std::process::id(),
        prog.kind.name()
    ));
    let mut text = format!(
        "generated program: {} instructions\n{}\n\nverifier log:\n{log}",
        prog.insns.len(),
        otf_codegen::dump(prog, &|p| image
            .probes
            .get(p as usize)
            .map(|s| s.label.clone())
            .unwrap_or_default())
    );
    text.push('\n');
    let kept = match std::fs::write(&path, text) {
        Ok(()) => format!("the verifier log is in {}", path.display()),
        Err(e) => format!(
            "the verifier log could not be written to {}: {e}",
            path.display()
        ),
    };
    let at = at
        .map(|i| format!(" at instruction {i}"))
        .unwrap_or_default();
    Error::msg(format!(
        "the kernel's verifier refused the code generated for {who}{at} ({err}); this is an otf bug, please report it with the script; {kept}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_shows_its_context_and_its_source_and_keeps_the_source() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(Error::msg("ctx").to_string(), "ctx");
        assert_eq!(
            Error::with("ctx", io()).to_string(),
            "ctx: entity not found"
        );
        let bare = Error::with("", io());
        assert_eq!(bare.to_string(), "entity not found");
        let source =
            std::error::Error::source(&bare).and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(
            source.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn a_refused_program_names_its_probe_and_keeps_the_log() {
        use otf_script::bytecode::Insn;
        let img = RuntimeImage {
            code: vec![Insn::op(Op::Next)],
            probes: vec![ProbeSlot {
                body: Some(0),
                label: "probe timer.ms(1) at t.stp:3:7".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let prog =
            otf_codegen::generate(&img, ProgKind::PerfEvent, &KernelInfo::default()).unwrap();
        // The instruction the verifier stopped at lies in the body of pidx 0.
        let at = prog.owners.iter().find(|&&(_, o)| o == 0).unwrap().0 + 1;
        let log = format!(
            "0: (bf) r6 = r1\n{at}: (79) r1 = *(u64 *)(r8 +9999)\ninvalid access to map value\n"
        );
        let e = verifier_error(&img, &prog, &log, std::io::Error::from_raw_os_error(13));
        let m = e.to_string();
        assert!(m.contains("probe timer.ms(1) at t.stp:3:7"), "{m}");
        assert!(m.contains("otf bug"), "{m}");
        assert!(m.contains(&format!("at instruction {at}")), "{m}");
        let path = m.rsplit("is in ").next().unwrap();
        let kept = std::fs::read_to_string(path).unwrap();
        assert!(kept.contains("invalid access to map value"), "{kept}");
        assert!(kept.contains("; func[0]: otf_perf_event"), "{kept}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_arming_header_agrees_with_the_record_layout() {
        let h = include_str!("../../../bpf/otf_arming.h");
        assert!(
            h.contains(&format!("#define OTF_REC_NOTIFY {}", REC_NOTIFY)),
            "bpf/otf_arming.h: OTF_REC_NOTIFY"
        );
        // 8 u32 fields and a 16-byte comm: the 48 bytes of RecHdr.
        assert_eq!(REC_HDR_SIZE, 8 * 4 + 16);
        assert_eq!(h.matches("\t__u32 ").count(), 8);
        assert!(h.contains("char comm[16];"));
    }

    #[test]
    fn uses_ppid_finds_the_context_read() {
        use otf_script::bytecode::Insn;
        let mut img = RuntimeImage::default();
        assert!(!uses_ppid(&img));
        img.code = vec![Insn::new(Op::Ctx, Ctx::Ppid as i32, 0), Insn::op(Op::Next)];
        assert!(uses_ppid(&img));
    }
}
