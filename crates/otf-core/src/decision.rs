//! The `--otf-debug` vocabulary: one [`DecisionLine`] per kernel-side arming decision.
//!
//! The words follow SystemTap and depend on the probe type: each probe-type crate declares
//! its [`Vocabulary`] in its [`ProbeType`](crate::ProbeType) (`PROBE_TYPE.vocabulary`), and
//! planning reads it from there. The words the types declare (docs/user-guide.md, "Output"):
//!
//! | flavor | at start, condition false | refresh: turn on | refresh: turn off |
//! |---|---|---|---|
//! | hrtimer | not starting | enabling | disabling |
//! | kprobe, kretprobe | registering as disabled | enabling | disabling |
//! | uprobe, uretprobe, tracepoint | not registering | registering | unregistering |
//!
//! Probes armed at start produce no line (as in SystemTap).

use std::fmt;

use serde::Serialize;

use crate::ids::{Flavor, Pidx};

/// One arming decision, as worded in the debug output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// hrtimer, at start, condition false: the timer is not started.
    NotStarting,
    /// kprobe/kretprobe, at start, condition false: registered but disabled.
    RegisteringAsDisabled,
    /// uprobe/uretprobe/tracepoint, at start, condition false: not attached at all.
    NotRegistering,
    /// hrtimer/kprobe/kretprobe, refresh, condition became true.
    Enabling,
    /// hrtimer/kprobe/kretprobe, refresh, condition became false.
    Disabling,
    /// uprobe/uretprobe/tracepoint, refresh, condition became true.
    Registering,
    /// uprobe/uretprobe/tracepoint, refresh, condition became false.
    Unregistering,
}

impl Decision {
    /// The words of the decision, e.g. `registering as disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::NotStarting => "not starting",
            Decision::RegisteringAsDisabled => "registering as disabled",
            Decision::NotRegistering => "not registering",
            Decision::Enabling => "enabling",
            Decision::Disabling => "disabling",
            Decision::Registering => "registering",
            Decision::Unregistering => "unregistering",
        }
    }
}

/// The words of one probe type's decisions: what its `--otf-debug` lines say when a probe of
/// the type stays off at start, is turned on, or is turned off
/// ([`ProbeType::vocabulary`](crate::ProbeType::vocabulary)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vocabulary {
    /// At start, condition false ([`Op::StartDisarmed`](crate::Op::StartDisarmed)).
    pub start_disarmed: Decision,
    /// At a refresh, condition became true ([`Op::Arm`](crate::Op::Arm)).
    pub arm: Decision,
    /// At a refresh, condition became false ([`Op::Disarm`](crate::Op::Disarm)).
    pub disarm: Decision,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `--otf-debug` line. Its `Display` is exactly the line to print (without newline), e.g.
/// `otf: registering as disabled (kretprobe) pidx 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct DecisionLine {
    /// What is being done.
    pub decision: Decision,
    /// The flavor of the probe, printed in parentheses.
    pub flavor: Flavor,
    /// The probe.
    pub pidx: Pidx,
}

impl fmt::Display for DecisionLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "otf: {} ({}) pidx {}",
            self.decision, self.flavor, self.pidx
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(decision: Decision, flavor: Flavor, pidx: Pidx) -> String {
        DecisionLine {
            decision,
            flavor,
            pidx,
        }
        .to_string()
    }

    #[test]
    fn lines_match_the_language_table() {
        use Decision::*;
        use Flavor::*;
        assert_eq!(
            line(NotStarting, Hrtimer, 3),
            "otf: not starting (hrtimer) pidx 3"
        );
        assert_eq!(line(Enabling, Hrtimer, 0), "otf: enabling (hrtimer) pidx 0");
        assert_eq!(
            line(Disabling, Hrtimer, 12),
            "otf: disabling (hrtimer) pidx 12"
        );
        assert_eq!(
            line(RegisteringAsDisabled, Kretprobe, 1),
            "otf: registering as disabled (kretprobe) pidx 1"
        );
        assert_eq!(line(Enabling, Kprobe, 2), "otf: enabling (kprobe) pidx 2");
        assert_eq!(
            line(NotRegistering, Uretprobe, 4),
            "otf: not registering (uretprobe) pidx 4"
        );
        assert_eq!(
            line(Registering, Tracepoint, 5),
            "otf: registering (tracepoint) pidx 5"
        );
        assert_eq!(
            line(Unregistering, Uprobe, 0),
            "otf: unregistering (uprobe) pidx 0"
        );
    }
}
