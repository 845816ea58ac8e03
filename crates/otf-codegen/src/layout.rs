//! The memory the generated programs share with user space, and the records they send.
//!
//! Every number and offset the code generator uses comes from the `#[repr(C)]` types here,
//! so user space (otf-bpf, which creates the maps) and the generated code cannot disagree.
//!
//! - [`Shared`]: one mmapped array map value (`BPF_F_MMAPABLE`): the script's globals, the
//!   lock word, flags, statistics, cached condition bits, probe slots and per-pidx counters.
//! - [`CpuState`]: one per-CPU array value: the nesting depth, the lock stripes held on this
//!   CPU and one [`Frame`] per nesting level (operand stack, locals, `@entry` slots, the
//!   hit's arguments and a staged output record).
//! - Records on the ring buffer start with a [`RecHdr`].

use std::mem::{offset_of, size_of};

use otf_script::bytecode::{
    MAXSTRINGLEN, MAX_ITERS, MAX_KEYS, MAX_OUT_STRS, MAX_SLOCALS, MAX_SSTACK,
};

/// Highest pidx + 1 the runtime has room for.
pub const MAX_PROBES: usize = 4096;
/// Highest condition id + 1.
pub const MAX_CONDS: usize = 4096;
/// Conditions re-evaluated after one body, at most.
pub const MAX_REEVAL_PER_PROBE: usize = 64;
/// Nested hits on one CPU (task, soft irq, hard irq, NMI); deeper hits are skipped and counted.
pub const MAX_NEST: usize = 4;
/// Probes (pidx) run by one attachment through [`crate::ProbeSlot::chain`].
pub const MAX_CHAIN: usize = 64;
/// Dispatch units of the syscall handlers ([`crate::ProgKind::SyscallEnter`]): raw
/// `sys_enter`/`sys_exit` links, each with its unit as cookie; more units stay perf
/// tracepoints.
pub const SYSCALL_UNITS: usize = 32;
/// Syscall numbers per dispatch unit in the syscalls map (numbers at or above it, such as
/// x32's, dispatch nothing).
pub const SYSCALL_NRS: usize = 1024;

/// The key in the syscalls map ([`crate::MapId::Syscalls`], an array of `u32`) of syscall
/// `nr` in dispatch unit `unit`; its value is the first pidx to run + 1 (0: not probed).
pub const fn syscall_key(unit: u32, nr: u32) -> u32 {
    unit * SYSCALL_NRS as u32 + nr
}
/// Polls of the lock word before a hit that cannot take its lock is skipped (SystemTap's
/// MAXTRYLOCK).
pub const MAXTRYLOCK: u32 = 65536;
/// `(tid, pidx)` `@entry` records kept (LRU).
pub const ENTRY_MAP_SIZE: usize = 16384;
/// Ring buffer size in bytes.
pub const RINGBUF_SIZE: usize = 1 << 22;
/// "No code" marker in a probe slot.
pub const NO_CODE: u32 = 0xffff_ffff;
/// Loops nested in one program, at most: each is one `bpf_loop` callback frame, and the
/// kernel allows 8 call frames (the handler and the hit take two).
pub const MAX_LOOP_NEST: usize = 5;

/// Probe slot flag: the slot is configured.
pub const PROBE_VALID: u32 = 1;
/// Probe slot flag: safe context, may send a notification.
pub const PROBE_SAFE: u32 = 2;
/// Probe slot flag: return probe.
pub const PROBE_RETURN: u32 = 4;
/// Probe slot flag: has an entry program whose `@entry` slots are loaded at return.
pub const PROBE_HAS_ENTRY: u32 = 8;
/// Probe slot flag: armed, as user space last decided. A hit of a probe that is not (its
/// attachment still being released by the kernel) runs no body: no body runs between a
/// "disabling" decision and the next "enabling", whatever the kernel's release takes.
pub const PROBE_ARMED: u32 = 16;
/// Attach cookie bit marking the entry program of a return probe.
pub const COOKIE_ENTRY: u64 = 1 << 32;

/// Error kind: division by zero.
pub const ERR_DIV_ZERO: u32 = 1;
/// Error kind: MAXACTION exceeded.
pub const ERR_MAXACTION: u32 = 2;
/// Error kind: invalid randint range.
pub const ERR_RANDINT: u32 = 3;
/// Error kind: malformed code (never emitted by generated code; kept for the record format).
pub const ERR_BAD_CODE: u32 = 4;
/// Error kind: a new element in a full array ("Array overflow, check size limit").
pub const ERR_ARRAY_FULL: u32 = 5;
/// Error kind: `user_string` could not read user memory ("user string copy fault -14 at
/// 0x1 [man error::fault]"); the record carries the address and the helper's error code.
pub const ERR_USER_STRING: u32 = 6;
/// Error kind: `kernel_string` could not read kernel memory ("kernel string copy fault at
/// 0x1 [man error::fault]"); the record carries the address and the helper's error code.
pub const ERR_KERNEL_STRING: u32 = 7;
/// Error kind: `@min`, `@max`, `@avg` or `@variance` of an aggregate with no values
/// ("empty aggregate").
pub const ERR_EMPTY_AGGREGATE: u32 = 8;
/// Error kind: `%m` or `%M` could not read the memory ("read fault [man error::fault] at
/// 0x1"); the record carries the address and the helper's error code.
pub const ERR_READ_FAULT: u32 = 9;
/// Error kind: `stringat` outside its string ("Position out of bounds").
pub const ERR_POSITION: u32 = 10;
/// Size of the per-kind error counter array (a power of two: the kind is masked with
/// `ERR_KINDS - 1` before it indexes it).
pub const ERR_KINDS: usize = 16;

/// Record kind: output record.
pub const REC_OUT: u32 = 1;
/// Record kind: `exit()`.
pub const REC_EXIT: u32 = 2;
/// Record kind: run-time error.
pub const REC_ERROR: u32 = 3;
/// Record kind: notification (`need_refresh` went 0 → 1 in a safe context).
pub const REC_NOTIFY: u32 = 4;
/// Record kind: run the body of the pidx in user space ([`crate::ProbeSlot::deferred`]).
pub const REC_DEFER: u32 = 5;

/// [`TimerCtl::op`]: start the timer (init it and set its callback on first use).
pub const TIMER_OP_START: u32 = 0;
/// [`TimerCtl::op`]: cancel the timer.
pub const TIMER_OP_CANCEL: u32 = 1;

/// The context of a run of the [`ProgKind::Timer`](crate::ProgKind::Timer) program: what user
/// space asks of the timer of one pidx.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerCtl {
    /// [`TIMER_OP_START`] or [`TIMER_OP_CANCEL`].
    pub op: u32,
    /// The pidx (its slot in the timers map).
    pub pidx: u32,
    /// Start: the period in nanoseconds; the first expiry is one period from now.
    pub period_ns: u64,
}

/// One value of the timers map (an array keyed by pidx, described by BTF so that the kernel
/// finds the `struct bpf_timer`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerSlot {
    /// `struct bpf_timer` (opaque to programs and user space).
    pub timer: [u64; 2],
    /// The period in nanoseconds.
    pub period_ns: u64,
    /// The next due time (`CLOCK_MONOTONIC` ns).
    pub next_ns: u64,
    /// Expiries that ran the handler.
    pub fired: u64,
    /// Due times that passed without an expiry (whole periods the callback came too late
    /// for); the next expiry is the next due time still ahead.
    pub lost: u64,
}

/// Size of a record header.
pub const REC_HDR_SIZE: usize = size_of::<RecHdr>();

/// Offsets in [`TimerSlot`] and [`TimerCtl`].
pub mod timer_off {
    use super::{TimerCtl, TimerSlot};
    use std::mem::offset_of;
    /// [`TimerSlot::period_ns`].
    pub const PERIOD: i16 = offset_of!(TimerSlot, period_ns) as i16;
    /// [`TimerSlot::next_ns`].
    pub const NEXT: i16 = offset_of!(TimerSlot, next_ns) as i16;
    /// [`TimerSlot::fired`].
    pub const FIRED: i16 = offset_of!(TimerSlot, fired) as i16;
    /// [`TimerSlot::lost`].
    pub const LOST: i16 = offset_of!(TimerSlot, lost) as i16;
    /// [`TimerCtl::op`].
    pub const CTL_OP: i16 = offset_of!(TimerCtl, op) as i16;
    /// [`TimerCtl::pidx`].
    pub const CTL_PIDX: i16 = offset_of!(TimerCtl, pidx) as i16;
    /// [`TimerCtl::period_ns`].
    pub const CTL_PERIOD: i16 = offset_of!(TimerCtl, period_ns) as i16;
}

/// The attach cookie of a hit of `pidx`.
pub const fn cookie(pidx: u32) -> u64 {
    pidx as u64
}

/// The attach cookie of the entry program of return probe `pidx` (saves `@entry` slots).
pub const fn entry_cookie(pidx: u32) -> u64 {
    pidx as u64 | COOKIE_ENTRY
}

/// One probe slot per pidx.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Probe {
    /// The number of the pidx's generated body (its variant, [`crate::variant_ids`]);
    /// [`NO_CODE`]: hits are only counted.
    pub body: u32,
    /// `PROBE_*` flags.
    pub flags: u32,
    /// The next pidx run by the same attachment, or [`NO_CODE`].
    pub chain: u32,
    /// Reserved.
    pub pad: u32,
}

/// Per-pidx counters, one cache line each, updated with atomic adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Hits (entry-program runs not included).
    pub hits: u64,
    /// Bodies run to their end.
    pub bodies: u64,
    /// Hits whose condition was false (the cached bit or the inlined `Skip`).
    pub skipped_cond: u64,
    /// Lock not taken within [`MAXTRYLOCK`] polls.
    pub skipped_lock: u64,
    /// More than [`MAX_NEST`] nested hits on one CPU.
    pub skipped_nest: u64,
    /// Run-time errors in the body or its conditions.
    pub errors: u64,
    /// Entry programs run (return probes with `@entry`).
    pub entry_runs: u64,
    /// Reserved.
    pub pad: u64,
}

impl Counters {
    /// Hits that were skipped (lock or nesting), as SystemTap's "skipped probes".
    pub fn skipped(&self) -> u64 {
        self.skipped_lock + self.skipped_nest
    }
}

/// Global statistics.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Run-time errors by kind (`ERR_*`).
    pub errors: [u64; ERR_KINDS],
    /// Records lost: ring buffer full.
    pub ringbuf_dropped: u64,
    /// Hits with an unconfigured pidx.
    pub bad_cookie: u64,
    /// Notification records sent.
    pub notifications: u64,
    /// Lock acquisitions that had to wait.
    pub lock_contended: u64,
    /// Reserved.
    pub pad: [u64; 4],
}

/// A cache line of its own for a word many CPUs write.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default)]
pub struct Line {
    /// The word.
    pub word: u64,
}

/// The shared array map value (mmapped by user space).
#[repr(C, align(64))]
pub struct Shared {
    /// The script's globals (first, so that every global has a 16-bit offset).
    pub globals: [i64; otf_script::bytecode::MAX_GLOBALS],
    /// Bit `s` set while a body holding lock stripe `s` runs.
    pub lock_word: Line,
    /// Set when a cached condition bit changed; swapped to 0 by user space.
    pub need_refresh: Line,
    /// Set by `exit()`.
    pub exit_requested: u64,
    /// Set by user space when the session stops, and by a run-time error when
    /// `stop_on_error` is set.
    pub stopping: u64,
    /// 1 if a run-time error stops the session (SystemTap's MAXERRORS 0), 0 with
    /// `--suppress-handler-errors`; set by user space before anything is attached.
    pub stop_on_error: u64,
    /// Added to `bpf_ktime_get_boot_ns()` for `gettimeofday_ns()`.
    pub time_offset: i64,
    /// `target()`.
    pub target_pid: i64,
    /// Global statistics.
    pub stats: Stats,
    /// Cached condition values, per condition id.
    pub cond_enabled: [u8; MAX_CONDS],
    /// Probe slots, per pidx.
    pub probes: [Probe; MAX_PROBES],
    /// Counters, per pidx.
    pub counters: [Counters; MAX_PROBES],
}

/// A ring buffer record header (48 bytes); an output record is followed by its arguments.
/// An error record has no `comm`: its 16 bytes are the error's operands, `Frame::erraddr`
/// then `Frame::errarg` ([`REC_ERR_ADDR`], [`REC_ERR_ARG`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RecHdr {
    /// `REC_*`.
    pub kind: u32,
    /// The probe hit that produced it.
    pub pidx: u32,
    /// Output: format id; error: `ERR_*`.
    pub code: u32,
    /// Output: number of arguments; error: the bytecode pc.
    pub aux: u32,
    /// CPU.
    pub cpu: u32,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Reserved.
    pub pad: u32,
    /// `comm` of the current task (error records: the error's operands).
    pub comm: [u8; 16],
}

/// Offset in an error record of the address a string read faulted at (`u64`).
pub const REC_ERR_ADDR: usize = offset_of!(RecHdr, comm);
/// Offset in an error record of the error code of the failed helper (`i64`).
pub const REC_ERR_ARG: usize = offset_of!(RecHdr, comm) + 8;

/// The machine state of one hit, per CPU and nesting level.
#[repr(C)]
pub struct Frame {
    /// The operand stack; slot `d` holds the value at depth `d` (depths are static).
    pub stack: [i64; otf_script::bytecode::MAX_STACK],
    /// Local slots.
    pub locals: [i64; otf_script::bytecode::MAX_LOCALS],
    /// `@entry` slots.
    pub entry: [i64; otf_script::bytecode::MAX_ENTRY_SLOTS],
    /// Function arguments 1..6 of the hit.
    pub args: [i64; 6],
    /// Return value of the hit (return probes).
    pub retval: i64,
    /// The cookie of the pidx being run.
    pub cookie: u64,
    /// Steps charged so far in the current program run.
    pub steps: u64,
    /// How a loop callback ended (`EXIT_*` or a jump target code).
    pub exit: u64,
    /// Result of a condition program.
    pub result: i64,
    /// Error kind of the last run-time error.
    pub err: u64,
    /// Bytecode pc of the last run-time error.
    pub errpc: u64,
    /// Stripes the lock spin waits for.
    pub lock_mask: u64,
    /// Set by the lock spin when it took the stripes.
    pub lock_got: u64,
    /// Scratch for helper results.
    pub tmp: u64,
    /// The staged record.
    pub out: RecHdr,
    /// Its arguments: the integer arguments, then the string arguments (MAXSTRINGLEN
    /// bytes each) right after them, running on into `out_strs`.
    pub out_args: [i64; 32],
    /// Room for the string arguments of a record after its integer arguments.
    pub out_strs: [[u8; MAXSTRINGLEN]; MAX_OUT_STRS],
    /// The string stack; slot `d` holds the string at depth `d` (depths are static).
    pub sstack: [[u8; MAXSTRINGLEN]; MAX_SSTACK],
    /// String local slots.
    pub slocals: [[u8; MAXSTRINGLEN]; MAX_SLOCALS],
    /// A map key with string keys, built in key order (8 bytes per integer key,
    /// MAXSTRINGLEN per string key); also the scratch buffer a string is read into
    /// (`SRead` with a message to return on a fault).
    pub keybuf: [[u8; MAXSTRINGLEN]; MAX_KEYS],
    /// The operand of the last run-time error, for the error record: the address a string
    /// read faulted at.
    pub erraddr: u64,
    /// The second operand of the last run-time error: the failed helper's error code.
    pub errarg: i64,
    /// An aggregate read in the kernel (`StatGet`), combined over the CPUs' copies: count,
    /// sum, min, max, then the `@variance` sums `Σ count·avg_s²`, `Σ count·avg_s` and
    /// `Σ (count − 1)·variance_s`.
    pub agg: [i64; 8],
    /// What `tokenize` has left of its string in this program run (zero-padded; empty once
    /// used up), cleared at the start of a program that calls it.
    pub tok: [u8; MAXSTRINGLEN],
    /// The `foreach` loops in progress, by iteration slot.
    pub iter: [IterState; MAX_ITERS],
    /// The scan of a `foreach` step found an element after the last one given (its key is
    /// in `keybuf`).
    pub iter_found: u64,
    /// The value of the element found (an aggregate's `@count`; integer elements).
    pub iter_best: i64,
    /// The value of the element found (string elements).
    pub iter_sbest: [u8; MAXSTRINGLEN],
    /// The value of the element last given (string elements sorted by value).
    pub iter_slast: [u8; MAXSTRINGLEN],
}

/// The state of one `foreach` loop in the kernel (see `lower/foreach.rs`): the element last
/// given is in the loop's key temporaries, which the body cannot change.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IterState {
    /// Elements still allowed by `limit` (only kept with a limit).
    pub left: i64,
    /// An element was given already.
    pub started: u64,
    /// The value of the element last given (integer elements and aggregates).
    pub val: i64,
    /// Reserved.
    pub pad: u64,
}

/// The per-CPU array value.
#[repr(C)]
pub struct CpuState {
    /// Bit `l`: nesting level `l` is in use on this CPU.
    pub busy: u64,
    /// Lock stripes held by hits running on this CPU.
    pub held: u64,
    /// Reserved.
    pub pad: [u64; 6],
    /// One frame per nesting level.
    pub frames: [Frame; MAX_NEST],
}

/// Offsets used by the generated code, as `i16` memory offsets or `i32` immediates.
pub(crate) mod off {
    use super::*;

    pub const fn s16(v: usize) -> i16 {
        assert!(v <= i16::MAX as usize);
        v as i16
    }

    pub const GLOBALS: usize = offset_of!(Shared, globals);
    pub const LOCK_WORD: i16 = s16(offset_of!(Shared, lock_word));
    pub const NEED_REFRESH: i16 = s16(offset_of!(Shared, need_refresh));
    pub const EXIT_REQUESTED: i16 = s16(offset_of!(Shared, exit_requested));
    pub const STOPPING: i16 = s16(offset_of!(Shared, stopping));
    pub const STOP_ON_ERROR: i16 = s16(offset_of!(Shared, stop_on_error));
    pub const TIME_OFFSET: i16 = s16(offset_of!(Shared, time_offset));
    pub const TARGET_PID: i16 = s16(offset_of!(Shared, target_pid));
    pub const STATS_ERRORS: i16 = s16(offset_of!(Shared, stats) + offset_of!(Stats, errors));
    pub const STATS_DROPPED: i16 =
        s16(offset_of!(Shared, stats) + offset_of!(Stats, ringbuf_dropped));
    pub const STATS_BAD_COOKIE: i16 =
        s16(offset_of!(Shared, stats) + offset_of!(Stats, bad_cookie));
    pub const STATS_NOTIFICATIONS: i16 =
        s16(offset_of!(Shared, stats) + offset_of!(Stats, notifications));
    pub const STATS_CONTENDED: i16 =
        s16(offset_of!(Shared, stats) + offset_of!(Stats, lock_contended));
    pub const COND: usize = offset_of!(Shared, cond_enabled);
    pub const PROBES: i32 = offset_of!(Shared, probes) as i32;
    pub const COUNTERS: i32 = offset_of!(Shared, counters) as i32;

    pub const P_BODY: i16 = s16(offset_of!(Probe, body));
    pub const P_FLAGS: i16 = s16(offset_of!(Probe, flags));
    pub const P_CHAIN: i16 = s16(offset_of!(Probe, chain));

    pub const C_HITS: i16 = s16(offset_of!(Counters, hits));
    pub const C_BODIES: i16 = s16(offset_of!(Counters, bodies));
    pub const C_SKIPPED_COND: i16 = s16(offset_of!(Counters, skipped_cond));
    pub const C_SKIPPED_LOCK: i16 = s16(offset_of!(Counters, skipped_lock));
    pub const C_SKIPPED_NEST: i16 = s16(offset_of!(Counters, skipped_nest));
    pub const C_ERRORS: i16 = s16(offset_of!(Counters, errors));
    pub const C_ENTRY_RUNS: i16 = s16(offset_of!(Counters, entry_runs));

    pub const CPU_BUSY: i16 = s16(offset_of!(CpuState, busy));
    pub const CPU_HELD: i16 = s16(offset_of!(CpuState, held));
    pub const CPU_FRAMES: i32 = offset_of!(CpuState, frames) as i32;

    pub const F_STACK: usize = offset_of!(Frame, stack);
    pub const F_LOCALS: usize = offset_of!(Frame, locals);
    pub const F_ENTRY: usize = offset_of!(Frame, entry);
    pub const F_ARGS: usize = offset_of!(Frame, args);
    pub const F_RETVAL: i16 = s16(offset_of!(Frame, retval));
    pub const F_COOKIE: i16 = s16(offset_of!(Frame, cookie));
    pub const F_STEPS: i16 = s16(offset_of!(Frame, steps));
    pub const F_EXIT: i16 = s16(offset_of!(Frame, exit));
    pub const F_RESULT: i16 = s16(offset_of!(Frame, result));
    pub const F_ERR: i16 = s16(offset_of!(Frame, err));
    pub const F_ERRPC: i16 = s16(offset_of!(Frame, errpc));
    pub const F_LOCK_MASK: i16 = s16(offset_of!(Frame, lock_mask));
    pub const F_LOCK_GOT: i16 = s16(offset_of!(Frame, lock_got));
    pub const F_TMP: i16 = s16(offset_of!(Frame, tmp));
    pub const F_OUT: usize = offset_of!(Frame, out);
    pub const F_OUT_ARGS: usize = offset_of!(Frame, out_args);
    pub const F_SSTACK: usize = offset_of!(Frame, sstack);
    pub const F_SLOCALS: usize = offset_of!(Frame, slocals);
    pub const F_KEYBUF: usize = offset_of!(Frame, keybuf);
    pub const F_ERRADDR: i16 = s16(offset_of!(Frame, erraddr));
    pub const F_ERRARG: i16 = s16(offset_of!(Frame, errarg));
    pub const F_AGG: usize = offset_of!(Frame, agg);
    pub const F_TOK: usize = offset_of!(Frame, tok);
    pub const F_ITER: usize = offset_of!(Frame, iter);
    pub const ITER_SIZE: usize = size_of::<IterState>();
    pub const I_LEFT: usize = offset_of!(IterState, left);
    pub const I_STARTED: usize = offset_of!(IterState, started);
    pub const I_VAL: usize = offset_of!(IterState, val);
    pub const F_ITER_FOUND: i16 = s16(offset_of!(Frame, iter_found));
    pub const F_ITER_BEST: i16 = s16(offset_of!(Frame, iter_best));
    pub const F_ITER_SBEST: usize = offset_of!(Frame, iter_sbest);
    pub const F_ITER_SLAST: usize = offset_of!(Frame, iter_slast);
    pub const FRAME_SIZE: i32 = size_of::<Frame>() as i32;
}

const _: () = assert!(size_of::<RecHdr>() == 48);
const _: () = assert!(size_of::<Probe>() == 16);
const _: () = assert!(size_of::<Counters>() == 64);
const _: () = assert!(MAX_NEST.is_power_of_two());
const _: () = assert!(ERR_KINDS.is_power_of_two() && ERR_POSITION < ERR_KINDS as u32);
const _: () = assert!(MAX_PROBES.is_power_of_two());
const _: () = assert!(off::GLOBALS == 0);
const _: () = assert!(off::F_OUT_ARGS == off::F_OUT + REC_HDR_SIZE);
// The string arguments of a record follow its (at most MAX_OUT_ARGS) integer arguments.
const _: () = assert!(
    off::F_OUT_ARGS + 8 * otf_script::bytecode::MAX_OUT_ARGS + MAXSTRINGLEN * MAX_OUT_STRS
        <= offset_of!(Frame, out_strs) + size_of::<[[u8; MAXSTRINGLEN]; MAX_OUT_STRS]>()
);
// Every frame offset fits an i16 memory offset.
const _: () = assert!(size_of::<Frame>() <= i16::MAX as usize);
// The kernel's limit on a per-CPU map value (PCPU_MIN_UNIT_SIZE).
const _: () = assert!(size_of::<CpuState>() <= 32 * 1024);
