//! Skipped tests in `cargo xtask test` (docs/testing.md, "Skipped tests").
//!
//! libtest has no "skipped" status, so the tests report their skips themselves: each appends an
//! `otf-test-skip:` line to the file named by `$OTF_SKIP_LOG` (`testsuite/src/skip.rs`, the one
//! definition of the format, included here too). `cargo xtask test` gives the native run and
//! each VM its own file (the guests write the host's filesystem), then lists every skip in its
//! summary and fails on those that must not happen in that run ([`fatal`]).

use std::path::PathBuf;

use anyhow::Result;

use crate::vm;

#[path = "../../../testsuite/src/skip.rs"]
mod skip;

pub use skip::{Need, Skipped, LOG_ENV};

/// One run of tests whose skips are collected: the native tests or one VM.
#[derive(Debug, Clone)]
pub struct Place {
    /// How the summary names it (`natively`, `VM 1 (6.12)`).
    pub name: String,
    /// Its `$OTF_SKIP_LOG`.
    pub log: PathBuf,
    /// Whether its tests run as root (the VM's always do).
    pub as_root: bool,
}

/// The skip log of place `key` (`native`, `vm1`) of this xtask process.
pub fn log_path(key: &str) -> Result<PathBuf> {
    let dir = vm::cache_dir()?.join("run");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(format!("skips-{}-{key}.log", std::process::id())))
}

impl Place {
    /// The place `key` ([`log_path`]), named `name` in the summary.
    pub fn new(key: &str, name: String, as_root: bool) -> Result<Place> {
        Ok(Place {
            name,
            log: log_path(key)?,
            as_root,
        })
    }

    /// Removes a log left from an earlier run of the same process id.
    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.log);
    }

    /// Reads (and removes) the place's log.
    pub fn report(&self) -> Report {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        Report::parse(self, &text)
    }
}

/// The skips of one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The place's name.
    pub place: String,
    /// Whether its tests ran as root.
    pub as_root: bool,
    /// The skips, in the order they were logged.
    pub skips: Vec<Skipped>,
    /// Lines of the log that are not skip lines (a garbled record must not pass unseen).
    pub unreadable: Vec<String>,
}

impl Report {
    /// The report of `place` from its log's `text`.
    pub fn parse(place: &Place, text: &str) -> Report {
        let mut skips = Vec::new();
        let mut unreadable = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match skip::parse(line) {
                Some(s) => skips.push(s),
                None => unreadable.push(line.to_string()),
            }
        }
        Report {
            place: place.name.clone(),
            as_root: place.as_root,
            skips,
            unreadable,
        }
    }
}

/// Why skip `s` fails a run (as root if `as_root`), or `None` if it is legitimate there.
pub fn fatal(s: &Skipped, as_root: bool) -> Option<&'static str> {
    match s.need {
        Need::Root if as_root => Some("skipped for want of root in a run as root"),
        Need::Tool => Some("skipped for want of a tool that cargo xtask test installs"),
        Need::Root | Need::Env => None,
    }
}

/// Prints the skips of every place (after the step summary); returns how many must not have
/// happened (fatal skips and unreadable log lines).
pub fn print(reports: &[Report]) -> usize {
    let counts: Vec<String> = reports
        .iter()
        .map(|r| {
            let n = r.skips.len();
            match r.place.as_str() {
                "natively" => format!("{n} natively"),
                p => format!("{n} in {p}"),
            }
        })
        .collect();
    if counts.is_empty() {
        return 0;
    }
    let total: usize = reports.iter().map(|r| r.skips.len()).sum();
    eprintln!("xtask test: {total} test(s) skipped: {}", counts.join(", "));
    let mut bad = 0;
    for r in reports {
        for s in &r.skips {
            let verdict = match fatal(s, r.as_root) {
                Some(why) => {
                    bad += 1;
                    format!("  FATAL: {why}")
                }
                None => String::new(),
            };
            eprintln!(
                "  {:<14} {:<4} {}: {}{verdict}",
                r.place,
                s.need.word(),
                s.test,
                s.why
            );
        }
        for l in &r.unreadable {
            bad += 1;
            eprintln!("  {:<14} FATAL: not a skip line in {LOG_ENV}: {l}", r.place);
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(name: &str, as_root: bool) -> Place {
        Place {
            name: name.to_string(),
            log: PathBuf::from("/nonexistent"),
            as_root,
        }
    }

    const LOG: &str = "\
otf-test-skip: env kprobes_onthefly::otf_timer_10ms: this kernel has no kprobes (...)
otf-test-skip: root invariants::b_final_armed_state_matches_condition_on: needs root (BPF)

otf-test-skip: tool invariants::c_nothing_remains_after_exit (uprobes): needs gcc
";

    #[test]
    fn logs_parse_into_skips_and_unreadable_lines() {
        let r = Report::parse(&place("natively", false), &format!("{LOG}garbled line\n"));
        assert_eq!(r.skips.len(), 3);
        assert_eq!(r.skips[0].need, Need::Env);
        assert_eq!(r.skips[0].test, "kprobes_onthefly::otf_timer_10ms");
        assert_eq!(r.skips[1].need, Need::Root);
        assert_eq!(r.skips[2].need, Need::Tool);
        assert_eq!(
            r.skips[2].test,
            "invariants::c_nothing_remains_after_exit (uprobes)"
        );
        assert_eq!(r.unreadable, ["garbled line"]);
    }

    #[test]
    fn which_skips_are_fatal() {
        let r = Report::parse(&place("natively", false), LOG);
        let fatal_here = |as_root| {
            r.skips
                .iter()
                .map(|s| fatal(s, as_root).is_some())
                .collect::<Vec<_>>()
        };
        // Env: never; root: only in a run as root; tool: always.
        assert_eq!(fatal_here(false), [false, false, true]);
        assert_eq!(fatal_here(true), [false, true, true]);
        // Not root natively: the root skip is listed, the tool skip fails the run.
        assert_eq!(print(std::slice::from_ref(&r)), 1);
        let env_only = Report::parse(&place("VM 0 (6.12)", true), LOG.lines().next().unwrap());
        assert_eq!(print(std::slice::from_ref(&env_only)), 0);
        let as_root = Report::parse(&place("VM 1 (6.12)", true), LOG);
        assert_eq!(print(&[env_only, as_root]), 2);
        let garbled = Report::parse(&place("natively", true), "otf-test-skip: nope\n");
        assert_eq!(print(&[garbled]), 1);
        assert_eq!(print(&[]), 0);
    }
}
