//! Kernel-level tests of otf (the `otf` binary run as a black box, as root, on the real kernel).
//!
//! This library is the shared harness; the tests live in `tests/`:
//!
//! - [`case`]: a runtime test case and the declarative `.test` format (`cases/*.test`);
//! - [`glob`]: glob patterns and the ordered-subsequence matching of SystemTap's harness;
//! - [`onthefly`]: the ports of SystemTap's on-the-fly suite, generated from parameter tables;
//! - [`runner`]: running a case (requirements, scheduling, background load, judging, reports);
//! - [`skip`]: reporting skipped tests so that `cargo xtask test` counts them;
//! - [`otf`]: finding (`$OTF_BIN` or `cargo build -p otf`) and running the binary;
//! - [`system`]: privileges, kprobe detection, background processes, `/proc` sampling;
//! - [`bpfobj`]: BPF programs, links and maps through `bpf(2)` and `fdinfo`, for leak checks;
//! - [`stats`]: reading otf's `--otf-debug` decisions and `--stats` report.
//!
//! See `docs/testing.md`.

pub mod bpfobj;
pub mod case;
pub mod glob;
pub mod onthefly;
pub mod otf;
pub mod runner;
pub mod skip;
#[cfg(test)]
mod skip_tests;
pub mod stats;
pub mod system;
