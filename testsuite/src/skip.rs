//! Skipped tests, reported so that `cargo xtask test` can count them (docs/testing.md,
//! "Skipped tests").
//!
//! libtest has no "skipped" status: a test that cannot run here returns early and reads `ok`.
//! So every skip goes through [`skip`] (or [`skip_named`]), which prints one line
//!
//! ```text
//! otf-test-skip: KIND PACKAGE/BINARY::TEST: REASON
//! ```
//!
//! on stderr (shown with `--nocapture`) and, when `$OTF_SKIP_LOG` names a file, appends the
//! same line to it. `cargo xtask test` sets `$OTF_SKIP_LOG` for the native run and for each VM
//! (a host file: the guests write the host's filesystem), lists every skip in its summary and
//! fails on the skips that must not happen there (see [`Need`]).
//!
//! This file is the one definition for the whole workspace: the orchestrator's and the kernel
//! crates' tests include it with `#[path = ".../testsuite/src/skip.rs"] mod skip;`, so it uses
//! only `std`.

// Not every crate that includes this file uses every item.
#![allow(dead_code)]

use std::io::Write as _;

/// The environment variable naming the file that skips are appended to.
pub const LOG_ENV: &str = "OTF_SKIP_LOG";

/// The prefix of a skip line.
pub const PREFIX: &str = "otf-test-skip: ";

/// What a skipped test lacked; `cargo xtask test` decides from it whether the skip is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root (BPF, perf events, attaching probes): fatal in a run as root (and in the VM,
    /// which runs as root).
    Root,
    /// A program that `cargo xtask test` installs (`gcc`): always fatal there.
    Tool,
    /// Something this machine or kernel does not have, or a test that runs elsewhere (kprobes
    /// natively, run in the VM; timing tests in the VM, run natively; two CPUs): listed, not
    /// fatal.
    Env,
}

impl Need {
    /// The word in the skip line.
    pub fn word(self) -> &'static str {
        match self {
            Need::Root => "root",
            Need::Tool => "tool",
            Need::Env => "env",
        }
    }

    /// The `Need` of a skip line's word.
    pub fn from_word(word: &str) -> Option<Need> {
        [Need::Root, Need::Tool, Need::Env]
            .into_iter()
            .find(|n| n.word() == word)
    }
}

/// One skip line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// What the test lacked.
    pub need: Need,
    /// `PACKAGE/BINARY::TEST` (the package that includes this file, the test binary's name).
    pub test: String,
    /// What was missing, in words.
    pub why: String,
}

/// The skip line (with its newline) for test `test` of test binary `binary`.
pub fn line(need: Need, binary: &str, test: &str, why: &str) -> String {
    // One line, whatever `why` holds.
    let why = why.replace('\n', " ");
    format!("{PREFIX}{} {binary}::{test}: {why}\n", need.word())
}

/// Parses a skip line (as [`line`] writes it); `None` for any other line.
pub fn parse(line: &str) -> Option<Skipped> {
    let rest = line.trim_end().strip_prefix(PREFIX)?;
    let (word, rest) = rest.split_once(' ')?;
    let (test, why) = rest.split_once(": ")?;
    Some(Skipped {
        need: Need::from_word(word)?,
        test: test.to_string(),
        why: why.to_string(),
    })
}

/// Report that the running `#[test]` is skipped (named after libtest's thread, which carries
/// the test's name) because it lacks `need`; `why` says what is missing.
pub fn skip(need: Need, why: &str) {
    let name = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("?")
        .to_string();
    skip_named(need, &name, why);
}

/// Report that test (or test part) `test` of this test binary is skipped; see [`skip`].
///
/// # Panics
///
/// If `$OTF_SKIP_LOG` is set and the line cannot be appended to it: a skip that the run cannot
/// count must not pass silently.
pub fn skip_named(need: Need, test: &str, why: &str) {
    let binary = format!("{}/{}", env!("CARGO_PKG_NAME"), binary());
    let line = line(need, &binary, test, why);
    eprint!("{line}");
    if let Some(path) = std::env::var_os(LOG_ENV) {
        // One write per line (O_APPEND): lines of concurrent tests do not interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = res {
            panic!(
                "cannot record the skip in ${LOG_ENV} ({}): {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}

/// Whether the effective user is root; otherwise reports the running test as skipped for want
/// of root (`what` says what needs it) and returns `false`.
pub fn need_root(what: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { geteuid() } == 0;
    if !root {
        skip(Need::Root, &format!("needs root ({what})"));
    }
    root
}

extern "C" {
    fn geteuid() -> u32;
}

/// The test binary's name without cargo's hash (`invariants` for `invariants-0123abcd…`).
fn binary() -> String {
    let exe = std::env::args_os().next().unwrap_or_default();
    binary_name(
        &std::path::Path::new(&exe)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

/// `stem` without cargo's `-<16 hex digits>` suffix.
pub fn binary_name(stem: &str) -> String {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem.to_string(),
    }
}
