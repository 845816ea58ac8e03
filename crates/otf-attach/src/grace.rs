//! Ending the kernel's pending RCU grace period in the background after a tracepoint is
//! detached, so that the next attachment of a tracepoint does not wait for it.
//!
//! The kernel's tracepoints keep one snapshot of the RCU state per kind of transition, shared
//! by every tracepoint: when a tracepoint loses its last probe (1 → 0), `tracepoint_remove_func`
//! records `get_state_synchronize_rcu()`, and the next tracepoint to gain a first probe (0 → 1),
//! any tracepoint, calls `cond_synchronize_rcu()` on that snapshot in `tracepoint_add_func`
//! before it enables its static key. `get_state_synchronize_rcu()` does not start a grace
//! period: on an idle machine with lazy RCU (`CONFIG_RCU_LAZY`, Debian's default) nothing may
//! have started one 200 ms later, and the next arm waits a whole grace period. Measured on the
//! 6.18 host (bpftrace, 60 flips of `raw_syscalls:sys_enter` 150–300 ms apart): 8 of 60
//! `BPF_RAW_TRACEPOINT_OPEN` calls slept in `tracepoint_add_func` → `synchronize_rcu`, taking
//! 4–64 ms where the others took 0.13–0.5 ms (docs/performance.md, "Flip latency").
//!
//! [`GraceKick::kick`] asks a background thread to call `membarrier(MEMBARRIER_CMD_GLOBAL)`,
//! which the kernel implements as `synchronize_rcu()`: a grace period starts now, and when it
//! ends every snapshot taken before the kick is satisfied. The thread sleeps through the grace
//! period; the caller does not wait. Kicks made while one is in flight are merged into one more
//! round. Where the kernel refuses the call (`nohz_full` kernels, no membarrier) the kick does
//! nothing and the arm waits as before.

use std::sync::{Arc, Condvar, Mutex};

/// `MEMBARRIER_CMD_GLOBAL` (include/uapi/linux/membarrier.h): `synchronize_rcu()` on machines
/// with more than one CPU online.
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1;

/// A background grace-period starter, one thread started at the first [`GraceKick::kick`] and
/// stopped when the kick is dropped (without waiting for a grace period in flight).
#[derive(Debug, Default)]
pub struct GraceKick {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// A kick arrived after the thread's last `membarrier` started.
    requested: bool,
    /// The owner is gone: the thread exits.
    stop: bool,
    /// The thread is in `membarrier`.
    in_flight: bool,
    /// `membarrier` failed once: later kicks do nothing.
    unsupported: bool,
    /// The thread is started.
    started: bool,
    /// Grace periods the thread has waited through.
    rounds: u64,
}

impl GraceKick {
    /// A kick with no thread yet.
    pub fn new() -> GraceKick {
        GraceKick::default()
    }

    /// Starts a grace period in the background (or, if one started by an earlier kick is still
    /// running, another one after it), and returns at once.
    pub fn kick(&self) {
        let mut st = lock(&self.shared);
        if st.unsupported {
            return;
        }
        st.requested = true;
        if !st.started {
            let shared = Arc::clone(&self.shared);
            st.started = std::thread::Builder::new()
                .name("otf-grace".into())
                .spawn(move || run(&shared))
                .is_ok();
            if !st.started {
                // Without a thread the kick is lost and the next arm may wait, as without kicks.
                st.requested = false;
            }
        }
        drop(st);
        self.shared.wake.notify_all();
    }

    /// Grace periods waited through so far (for tests).
    pub fn rounds(&self) -> u64 {
        lock(&self.shared).rounds
    }

    /// Waits until every kick made so far has had its grace period; returns false if the
    /// kernel refused `membarrier` (for tests).
    pub fn wait_idle(&self) -> bool {
        let mut st = lock(&self.shared);
        while !st.unsupported && (st.requested || st.in_flight) {
            st = self.shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        !st.unsupported
    }
}

impl Drop for GraceKick {
    fn drop(&mut self) {
        lock(&self.shared).stop = true;
        self.shared.wake.notify_all();
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(shared: &Shared) {
    // A batch thread with the kernel's default slice: its wake-up must not preempt the traced
    // program. (It is started by a refresh, whose thread may have the 0.1 ms slice of `otf
    // run`, which a new thread inherits.) Measured (docs/performance.md, "Flip latency"): with
    // the inherited slice, 5 of 400 tracepoint disarms were seen by the workload more than
    // 1 ms late, against 1 of 400 without kicks.
    crate::sched::set_fair(crate::sched::FairPolicy::Batch, 0);
    loop {
        {
            let mut st = lock(shared);
            while !st.requested && !st.stop {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop {
                return;
            }
            st.requested = false;
            st.in_flight = true;
        }
        // SAFETY: membarrier takes no pointers; MEMBARRIER_CMD_GLOBAL with flags 0 and cpu_id 0.
        let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
        let mut st = lock(shared);
        st.in_flight = false;
        if r != 0 {
            st.unsupported = true;
            st.requested = false;
            shared.wake.notify_all();
            return;
        }
        st.rounds += 1;
        shared.wake.notify_all();
    }
}
