//! On-the-fly `kernel.trace(...)` probes.
//!
//! [`resolve`] turns `NAME` or `SUBSYS:NAME` (with `*`/`?` globs) into the kernel's
//! tracepoints, read from tracefs. A probe is *armed* iff a BPF link to its tracepoint exists:
//! arming attaches ([`TracepointLink::attach`]), disarming drops the link. perf's
//! `PERF_EVENT_IOC_DISABLE` does not stop BPF programs on tracepoints, so this is the only way
//! to make a disarmed tracepoint cost nothing. Drops of perf-tracepoint links block for a
//! grace period; otf-attach's `Closer` releases them off the refresh path, and
//! its `close_all` releases a batch concurrently. `syscalls:*` probes, which only perf can
//! attach one by one, are instead dispatched by syscall number from one raw
//! `raw_syscalls:sys_enter`/`sys_exit` link per unit of probes that flip together
//! ([`SyscallDispatch`]), which releases in well under a millisecond.

mod attach;
mod group;
mod resolve;
mod syscall;

pub use group::{perf_chains, tracepoint_chains, ApplyError, TracepointGroup};
pub use syscall::{
    min_dispatch, syscall_nr, syscall_number, syscall_of, DispatchUnit, SyscallDir,
    SyscallDispatch, SyscallPrograms, ALIASES, MIN_DISPATCH,
};

pub use attach::{mode_for, AttachError, AttachMode, TracepointLink, TracepointProgs};
pub use resolve::{
    events_dir, glob_match, list_all, list_in, resolve, resolve_in, tracepoint_id, TraceError,
    Tracepoint,
};

/// The `kernel.trace(...)` probe type, read by the orchestrator and returned by
/// [`TracepointGroup`]: group `tracepoint` (`otf: registering (tracepoint) pidx N`), its grammar,
/// flavor and `--otf-debug` words.
///
/// Its bodies may wake user space themselves, whatever the tracepoint (the scheduler's and
/// interrupts' included): the notification is a BPF ring-buffer record, and the ring buffer
/// never wakes its reader inline. `bpf_ringbuf_commit` queues an `irq_work`
/// (kernel/bpf/ringbuf.c), which the kernel allows from any context, NMI included, and which
/// runs the wake-up later from its own interrupt; in NMI the reservation only try-locks the
/// ring, so a busy ring drops the record (counted) instead of deadlocking. The record is the
/// same operation as a body's `printf`. A notification that cannot be sent leaves
/// `need_refresh` set for the background timer.
pub const PROBE_TYPE: otf_core::ProbeType = otf_core::ProbeType {
    name: "tracepoint",
    family: "kernel.trace",
    point: "kernel.trace(\"GLOB\")",
    suffixes: &[],
    flavor: otf_core::Flavor::Tracepoint,
    return_flavor: None,
    // A tracepoint probe is armed by attaching and disarmed by detaching, like a uprobe.
    vocabulary: otf_core::Vocabulary {
        start_disarmed: otf_core::Decision::NotRegistering,
        arm: otf_core::Decision::Registering,
        disarm: otf_core::Decision::Unregistering,
    },
    safe_context: otf_core::SafeContext::safe(
        "ring-buffer wake-ups go through irq_work, which may be queued from any context (NMI included); a record that cannot be sent leaves the refresh to the background timer",
    ),
};
