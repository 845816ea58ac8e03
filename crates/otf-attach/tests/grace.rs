//! `GraceKick`: every kick is followed by a kernel grace period on the kick's own thread
//! (`membarrier(MEMBARRIER_CMD_GLOBAL)`, which needs no privilege), kicks made meanwhile are
//! merged and not lost, and dropping the kick ends its thread.

#[path = "../../../testsuite/src/skip.rs"]
mod skip;

use otf_attach::grace::GraceKick;
use skip::{skip, Need};

/// Threads of this process named `otf-grace`.
fn grace_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "otf-grace")
        .count()
}

#[test]
fn every_kick_is_followed_by_a_grace_period_and_drop_ends_the_thread() {
    let kick = GraceKick::new();
    assert_eq!(kick.rounds(), 0);
    assert_eq!(grace_threads(), 0, "no thread before the first kick");
    kick.kick();
    if !kick.wait_idle() {
        skip(
            Need::Env,
            "membarrier(MEMBARRIER_CMD_GLOBAL) refused (a nohz_full kernel?)",
        );
        return;
    }
    let first = kick.rounds();
    assert!(first >= 1, "the first kick ran no grace period");
    assert_eq!(grace_threads(), 1);
    // Kicks while one may be in flight: at least one more round, at most one per kick.
    for _ in 0..3 {
        kick.kick();
    }
    assert!(kick.wait_idle());
    let more = kick.rounds() - first;
    assert!((1..=3).contains(&more), "{more} rounds for 3 kicks");
    assert_eq!(grace_threads(), 1, "one thread for every kick");
    drop(kick);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while grace_threads() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the thread outlived its kick"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
