//! Probe identity: `pidx`, condition ids and probe flavors.

use std::fmt;

use serde::Serialize;

/// Index of one kernel attachment: 0-based, in script order, unique across all groups.
///
/// A script probe point that resolves to several attachments (a glob, `.call` and `.return`, …)
/// gets one `pidx` per attachment. The BPF runtime receives it as the attach cookie.
pub type Pidx = u32;

/// Index of a probe condition (one per probe statement component, the "unit" that `if (C)`
/// follows). Several `pidx` share one `CondId` when one component resolves to several attachments.
///
/// Condition values are passed around as a slice of `bool` indexed by `CondId`.
pub type CondId = u32;

/// The kind of kernel attachment, as named in the `--otf-debug` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// `timer.*` (perf cpu-clock event).
    Hrtimer,
    /// `kernel.function(...)` / `.call`.
    Kprobe,
    /// `kernel.function(...).return`.
    Kretprobe,
    /// `process(...).function(...)` / `.call`.
    Uprobe,
    /// `process(...).function(...).return`.
    Uretprobe,
    /// `kernel.trace(...)`.
    Tracepoint,
}

impl Flavor {
    /// Every flavor, in declaration order.
    pub const ALL: [Flavor; 6] = [
        Flavor::Hrtimer,
        Flavor::Kprobe,
        Flavor::Kretprobe,
        Flavor::Uprobe,
        Flavor::Uretprobe,
        Flavor::Tracepoint,
    ];

    /// The word used in debug lines: `hrtimer`, `kprobe`, `kretprobe`, `uprobe`, `uretprobe`,
    /// `tracepoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Hrtimer => "hrtimer",
            Flavor::Kprobe => "kprobe",
            Flavor::Kretprobe => "kretprobe",
            Flavor::Uprobe => "uprobe",
            Flavor::Uretprobe => "uretprobe",
            Flavor::Tracepoint => "tracepoint",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
