//! The kinds of handler program: one per attach type.

/// One generated handler program per attach type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProgKind {
    /// Perf events (cpu-clock timers: `timer.profile`).
    PerfEvent,
    /// BPF timers (`timer.ns/us/ms/s/hz`): a `BPF_PROG_TYPE_SYSCALL` program that user space
    /// runs with `BPF_PROG_TEST_RUN` to start or cancel the timer of a pidx
    /// ([`crate::layout::TimerCtl`]); each expiry runs the handler as the timer's callback,
    /// which re-arms it for the next due time ([`crate::layout::TimerSlot`]). Timer callbacks
    /// do not go through the perf overflow path, which skips a program while another BPF
    /// program runs on its CPU.
    Timer,
    /// Perf tracepoints (`syscalls:*` included).
    Tracepoint,
    /// Raw tracepoints (cookies need kernel ≥ 6.10).
    RawTp,
    /// `syscalls:sys_enter_*` probes dispatched by syscall number: a raw tracepoint program
    /// attached to `raw_syscalls:sys_enter` with the dispatch unit as its cookie; the syscall
    /// number (`ctx->args[1]`) picks the pidx in the syscalls map ([`crate::MapId::Syscalls`],
    /// [`crate::layout::syscall_key`]). Needs raw tracepoint cookies (6.10).
    SyscallEnter,
    /// `syscalls:sys_exit_*` probes dispatched by syscall number, on `raw_syscalls:sys_exit`
    /// (the number is read from the task's `pt_regs`, [`SYSCALL_REGS`]).
    SyscallExit,
    /// Uprobes.
    Uprobe,
    /// Uretprobes.
    Uretprobe,
    /// Uprobes attached with `uprobe_multi` (6.6).
    UprobeMulti,
    /// Uretprobes attached with `uprobe_multi` (6.6).
    UretprobeMulti,
    /// Kprobes.
    Kprobe,
    /// Kretprobes.
    Kretprobe,
    /// Kprobes attached with `kprobe_multi` (5.18, needs FPROBE).
    KprobeMulti,
    /// Kretprobes attached with `kprobe_multi`.
    KretprobeMulti,
    /// A raw tracepoint program run with `BPF_PROG_TEST_RUN`: the context is `{ u64 cookie }`
    /// and one run is one hit of that cookie's pidx (no function arguments).
    TestEntry,
}

/// What a handler reads from its context besides the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regs {
    /// Nothing: arguments and return value read 0.
    None,
    /// `pt_regs`: the function's arguments.
    Args,
    /// `pt_regs` at return: the arguments registers and the return value.
    Ret,
}

impl ProgKind {
    /// Every program kind.
    pub const ALL: &'static [ProgKind] = &[
        ProgKind::PerfEvent,
        ProgKind::Timer,
        ProgKind::Tracepoint,
        ProgKind::RawTp,
        ProgKind::SyscallEnter,
        ProgKind::SyscallExit,
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

    /// The program's name in the kernel (`bpftool prog` shows it, 15 characters at most).
    pub fn name(self) -> &'static str {
        match self {
            ProgKind::PerfEvent => "otf_perf_event",
            ProgKind::Timer => "otf_timer",
            ProgKind::Tracepoint => "otf_tracepoint",
            ProgKind::RawTp => "otf_raw_tp",
            ProgKind::SyscallEnter => "otf_sys_enter",
            ProgKind::SyscallExit => "otf_sys_exit",
            ProgKind::Uprobe => "otf_uprobe",
            ProgKind::Uretprobe => "otf_uretprobe",
            ProgKind::UprobeMulti => "otf_uprobe_m",
            ProgKind::UretprobeMulti => "otf_uretprobe_m",
            ProgKind::Kprobe => "otf_kprobe",
            ProgKind::Kretprobe => "otf_kretprobe",
            ProgKind::KprobeMulti => "otf_kprobe_m",
            ProgKind::KretprobeMulti => "otf_kretprobe_m",
            ProgKind::TestEntry => "otf_test_entry",
        }
    }

    /// `enum bpf_prog_type`.
    pub fn prog_type(self) -> u32 {
        match self {
            ProgKind::PerfEvent => 7,
            ProgKind::Timer => 31,
            ProgKind::Tracepoint => 5,
            ProgKind::RawTp
            | ProgKind::SyscallEnter
            | ProgKind::SyscallExit
            | ProgKind::TestEntry => 17,
            _ => 2,
        }
    }

    /// `enum bpf_attach_type` expected at load (0 for none).
    pub fn expected_attach_type(self) -> u32 {
        match self {
            ProgKind::KprobeMulti | ProgKind::KretprobeMulti => 42,
            ProgKind::UprobeMulti | ProgKind::UretprobeMulti => 48,
            _ => 0,
        }
    }

    /// `prog_flags` at load: the kernel loads syscall programs only as sleepable
    /// (`BPF_F_SLEEPABLE`); the timer callback itself runs in soft-irq context.
    pub fn prog_flags(self) -> u32 {
        match self {
            ProgKind::Timer => 1 << 4,
            _ => 0,
        }
    }

    /// The raw tracepoint a syscall-dispatch kind attaches to (`None` for the other kinds).
    pub fn syscall_tracepoint(self) -> Option<&'static str> {
        match self {
            ProgKind::SyscallEnter => Some("sys_enter"),
            ProgKind::SyscallExit => Some("sys_exit"),
            _ => None,
        }
    }

    /// What the handler reads from `pt_regs`.
    pub fn regs(self) -> Regs {
        match self {
            ProgKind::Uprobe | ProgKind::UprobeMulti | ProgKind::Kprobe | ProgKind::KprobeMulti => {
                Regs::Args
            }
            ProgKind::Uretprobe
            | ProgKind::UretprobeMulti
            | ProgKind::Kretprobe
            | ProgKind::KretprobeMulti => Regs::Ret,
            _ => Regs::None,
        }
    }
}

/// Offsets in `struct pt_regs` of argument registers 1..6 and of the return value.
#[cfg(target_arch = "x86_64")]
pub(crate) const PT_REGS_ARGS: [i16; 6] = [112, 104, 96, 88, 72, 64]; // di si dx cx r8 r9
#[cfg(target_arch = "x86_64")]
pub(crate) const PT_REGS_RC: i16 = 80; // ax
#[cfg(target_arch = "aarch64")]
pub(crate) const PT_REGS_ARGS: [i16; 6] = [0, 8, 16, 24, 32, 40]; // x0..x5
#[cfg(target_arch = "aarch64")]
pub(crate) const PT_REGS_RC: i16 = 0; // x0

/// Where the syscall-dispatch handlers find the syscall number in the `struct pt_regs` that
/// `raw_syscalls:sys_exit` passes as its first argument (one `bpf_probe_read_kernel` of
/// [`SyscallRegs::len`] bytes from [`SyscallRegs::base`]; `sys_enter` passes the number itself),
/// and how they tell a compat (32-bit) syscall, whose numbers are another table's. Compat
/// syscalls dispatch nothing, as the perf syscall events ignore them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallRegs {
    /// Offset in `pt_regs` of the window read.
    pub base: i16,
    /// Bytes read.
    pub len: i32,
    /// Offset in the window of the syscall number, and whether it is 4 bytes (else 8).
    pub nr: (i16, bool),
    /// How a compat syscall is told.
    pub compat: Compat,
}

/// How the syscall-dispatch handlers tell a compat syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compat {
    /// The 4-byte word at this offset of the current `task_struct` has a bit of `mask` set
    /// (x86_64: `thread_info.status`, first in the task, & `TS_COMPAT`; set for every 32-bit
    /// syscall, `int $0x80` from 64-bit code included, as `in_ia32_syscall()` reads it).
    Task(i16, i32),
    /// The 8-byte word at this offset of the [`SyscallRegs`] window has a bit of `mask` set
    /// (arm64: `pstate` & `PSR_MODE32_BIT`).
    Regs(i16, i32),
}

/// x86_64: `orig_ax` (120); `thread_info.status` (16) & `TS_COMPAT` (2).
#[cfg(target_arch = "x86_64")]
pub const SYSCALL_REGS: Option<SyscallRegs> = Some(SyscallRegs {
    base: 120,
    len: 8,
    nr: (0, false),
    compat: Compat::Task(16, 2),
});
/// arm64: `pstate` (264), `orig_x0`, `syscallno` (280, an `s32`); `pstate` & 0x10.
#[cfg(target_arch = "aarch64")]
pub const SYSCALL_REGS: Option<SyscallRegs> = Some(SyscallRegs {
    base: 264,
    len: 24,
    nr: (16, true),
    compat: Compat::Regs(0, 0x10),
});
/// Other architectures: no syscall dispatch (syscall probes stay perf tracepoints).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub const SYSCALL_REGS: Option<SyscallRegs> = None;
