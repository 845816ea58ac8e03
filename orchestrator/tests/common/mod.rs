//! What the `otf run` tests share: running the built binary and skipping without root.

#![allow(dead_code)]

use std::process::{Command, Output};

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
