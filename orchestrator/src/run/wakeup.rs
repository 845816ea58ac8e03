//! A short scheduler slice for otf's own threads, so that a notification from a probe body
//! runs otf's refresh at once instead of after the traced program's time slice.
//!
//! Why (measured, docs/performance.md "Flip latency", 2026-12-01 evening): on this two-CPU
//! machine the workload of `cargo xtask bench --only flip-latency` spins on one CPU. The ring
//! buffer's wake-up of otf's event loop often lands on that CPU, and EEVDF lets the running
//! task finish its slice (RUN_TO_PARITY, ~1.5-3 ms) before the woken one runs: the
//! `raw_syscalls:sys_enter` tracepoint took p50 1.96 ms to come on and 2.9 ms to go off, of
//! which the kernel's own work is ~0.3 ms. A custom slice (`sched_setattr` with
//! `sched_runtime`, SCHED_OTHER; Linux 6.12+, "sched/eevdf: Allow shorter slices to
//! wakeup-preempt") makes a woken otf thread preempt at once: p50 0.55 / 0.76 ms. It changes
//! no priority and no share of CPU time: otf still gets its fair share, in shorter turns.
//! Older kernels accept the call and ignore the runtime of a SCHED_OTHER task.

/// The slice asked for: the kernel's minimum custom slice (0.1 ms).
pub(super) const SLICE_NS: u64 = 100_000;

/// Gives the calling thread, and the threads it starts from now on (the link closers), a
/// [`SLICE_NS`] slice, keeping its policy and nice value. Processes started earlier (the `-c`
/// command) keep theirs; otf starts no process later. Does nothing under a real-time or
/// deadline policy, and ignores a refusal: the slice only makes refreshes prompter.
pub(super) fn prompt_wakeups() {
    otf_attach::sched::set_fair(otf_attach::sched::FairPolicy::Keep, SLICE_NS);
}
