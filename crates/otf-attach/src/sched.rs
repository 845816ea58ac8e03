//! The calling thread's fair-class scheduling: its policy (`SCHED_OTHER` or `SCHED_BATCH`) and
//! its slice (`sched_setattr(2)`'s `sched_runtime`, a custom EEVDF slice on Linux 6.12+, which
//! older kernels accept and ignore for a fair task). otf's event loop asks for a short slice so
//! that its wake-ups preempt the traced program; its background threads ask for the batch
//! policy and the default slice so that theirs do not (docs/performance.md, "Flip latency").

/// The fair policy [`set_fair`] gives the calling thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FairPolicy {
    /// Keep the thread's policy (`SCHED_OTHER` or `SCHED_BATCH`).
    Keep,
    /// `SCHED_BATCH`: the thread's wake-ups do not preempt the running task.
    Batch,
}

/// Gives the calling thread `policy` and a slice of `slice_ns` (0: the kernel's default),
/// keeping its nice value and its reset-on-fork flag; threads it starts later inherit both.
/// Does nothing under a real-time or deadline policy, and ignores a refusal (returns `false`):
/// the slice and policy only change when otf's threads run, never whether they do.
pub fn set_fair(policy: FairPolicy, slice_ns: u64) -> bool {
    // SAFETY: sched_attr is a plain C struct of integers; all-zero is a valid value.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, which we own; pid 0 is
    // the calling thread.
    if unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) } != 0 {
        return false;
    }
    let current = attr.sched_policy as i32;
    if current != libc::SCHED_OTHER && current != libc::SCHED_BATCH {
        return false;
    }
    attr.size = size;
    if policy == FairPolicy::Batch {
        attr.sched_policy = libc::SCHED_BATCH as u32;
    }
    attr.sched_runtime = slice_ns;
    // Keep the reset-on-fork flag as it was; drop the flags sched_getattr reports but
    // sched_setattr refuses or would apply (utilisation clamps are not set here).
    attr.sched_flags &= libc::SCHED_FLAG_RESET_ON_FORK as u64;
    // SAFETY: sched_setattr reads `size` bytes of `attr`, which we own; pid 0 is the calling
    // thread. A refusal leaves the thread as it was.
    unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy and slice of the calling thread, as sched_getattr reports them.
    fn current() -> (i32, u64) {
        // SAFETY: as in `set_fair`.
        let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::sched_attr>() as u32;
        // SAFETY: as in `set_fair`.
        let r = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
        assert_eq!(r, 0, "sched_getattr: {}", std::io::Error::last_os_error());
        (attr.sched_policy as i32, attr.sched_runtime)
    }

    #[test]
    fn batch_with_the_default_slice_and_back_to_a_short_one() {
        // On a thread of its own: the policy stays with the thread.
        std::thread::spawn(|| {
            let before = current().0;
            if before != libc::SCHED_OTHER && before != libc::SCHED_BATCH {
                // Under a real-time policy (a test run under chrt) nothing changes.
                assert!(!set_fair(FairPolicy::Batch, 0));
                assert_eq!(current().0, before);
                return;
            }
            assert!(set_fair(FairPolicy::Batch, 0));
            assert_eq!(current().0, libc::SCHED_BATCH);
            // Keep leaves the batch policy as it is; the slice is the one asked for (kernels
            // before 6.12 accept it and report it back too).
            assert!(set_fair(FairPolicy::Keep, 100_000));
            let (policy, slice) = current();
            assert_eq!(policy, libc::SCHED_BATCH);
            assert!(slice == 100_000 || slice == 0, "slice {slice}");
        })
        .join()
        .expect("the test thread");
    }
}
