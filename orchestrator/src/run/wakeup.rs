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
    // SAFETY: sched_attr is a plain C struct of integers; all-zero is a valid value.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, which we own; pid 0 is
    // the calling thread.
    let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
    if got != 0 {
        return;
    }
    let policy = attr.sched_policy as i32;
    if policy != libc::SCHED_OTHER && policy != libc::SCHED_BATCH {
        return;
    }
    attr.size = size;
    attr.sched_runtime = SLICE_NS;
    // Keep the reset-on-fork flag as it was; drop the flags sched_getattr reports but
    // sched_setattr refuses or would apply (utilisation clamps are not set here).
    attr.sched_flags &= libc::SCHED_FLAG_RESET_ON_FORK as u64;
    // SAFETY: sched_setattr reads `size` bytes of `attr`; pid 0 is the calling thread.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
}
