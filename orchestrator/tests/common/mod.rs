//! What the `otf run` tests share: running the built binary and skipping without root.

#![allow(dead_code)]

use std::process::{Command, Output};

/// Whether the tests run as root (the kernel tests need it).
pub fn root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

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

/// Return from the test, saying so, when not root.
#[macro_export]
macro_rules! need_root {
    () => {
        if !common::root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
    };
}
