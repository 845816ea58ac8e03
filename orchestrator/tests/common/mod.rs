//! What the `otf run` tests share: running the built binary and skipping without root.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Reporting skipped tests (`skip::skip(Need, why)`), shared with the kernel-level suite so
/// that `cargo xtask test` counts them (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
pub mod skip;

/// Runs the `otf` binary built for these tests with `args`.
pub fn otf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otf"))
        .args(args)
        .output()
        .expect("otf runs")
}

/// Runs `otf` with `args` and calls `poke` (which causes the kernel event the script waits
/// for) every 10 ms until otf exits: the events keep coming until the script has seen what it
/// needs, instead of a fixed sleep guessing when the probe is armed. Panics after 60 s. The
/// output is read after otf exits: for runs that print less than a pipe holds (64 KiB).
pub fn otf_while(args: &[&str], mut poke: impl FnMut()) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otf"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otf runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for otf").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let o = child.wait_with_output().expect("otf output");
            panic!("otf still running after 60 s:\n{}\n{}", out(&o), err(&o));
        }
        poke();
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("otf output")
}

/// Its stdout as text.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its stderr as text.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Return from the test, reporting the skip ([`skip`]), when not root.
#[macro_export]
macro_rules! need_root {
    () => {
        if !common::skip::need_root("BPF, perf events") {
            return;
        }
    };
}

/// A `-c` command whose shell runs `/bin/true` five times: five `exec`s of children of the
/// target (`ppid() == target()`), for scripts that count them.
pub const FIVE_EXECS: &str = "for i in 1 2 3 4 5; do /bin/true; done";
