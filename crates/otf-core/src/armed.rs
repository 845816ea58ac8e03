//! [`ArmedSet`]: which probes are armed, which failed, and how often each was armed.
//!
//! # Failure policy
//!
//! The set is updated only from [`ApplyReport`]s ([`ArmedSet::record`]):
//!
//! - A failed [`Op::Arm`] leaves the probe **disarmed** and marks it failed. A failed
//!   [`Op::Disarm`] leaves it **armed** (its body is still gated by its condition) and marks it
//!   failed. A failed [`Op::StartDisarmed`] leaves it disarmed and failed. A failed
//!   [`Op::Release`] counts it as released (nothing more can be done) and marks it failed.
//! - Planning is wanted-versus-armed, so at the **next refresh** a failed probe whose condition
//!   still asks for the other state is planned again: that is the retry (with its debug line
//!   again). Consecutive failures of the same operation are counted in [`Failure::consecutive`].
//! - The scheduler does not wait for a condition change to retry: while some failed probe has
//!   fewer than `max_retries + 1` consecutive failures, the next timer tick refreshes even if
//!   `need_refresh` is clear ([`ArmedSet::retry_due`]). After that, it is retried only at
//!   refreshes caused by condition changes.
//! - A success clears the mark; so does a refresh that no longer plans the probe (its condition
//!   went back to match what is armed: nothing left to retry).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ids::Pidx;
use crate::plan::{ApplyReport, Op, Plan};

/// The last failure of a probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The operation that failed.
    pub op: Op,
    /// The error reported by the group.
    pub error: String,
    /// How many times in a row this operation failed on this probe (1 for the first).
    pub consecutive: u32,
}

/// The arming state of one probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProbeState {
    /// True if the probe fires now.
    pub armed: bool,
    /// The last failure, until a success or a settled refresh clears it.
    pub failure: Option<Failure>,
    /// How many times it was armed (at start or at refreshes), for `--stats`.
    pub times_armed: u64,
    /// How many times it was disarmed at refreshes, for `--stats`.
    pub times_disarmed: u64,
}

/// Arming state of every probe, keyed by `pidx`. Probes never seen are disarmed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArmedSet {
    probes: BTreeMap<Pidx, ProbeState>,
}

impl ArmedSet {
    /// An empty set: nothing armed.
    pub fn new() -> ArmedSet {
        ArmedSet::default()
    }

    /// True if `pidx` is armed.
    pub fn is_armed(&self, pidx: Pidx) -> bool {
        self.probes.get(&pidx).is_some_and(|s| s.armed)
    }

    /// The state of `pidx`, if it was ever in a plan.
    pub fn state(&self, pidx: Pidx) -> Option<&ProbeState> {
        self.probes.get(&pidx)
    }

    /// The last failure of `pidx`, if it is marked failed.
    pub fn failure(&self, pidx: Pidx) -> Option<&Failure> {
        self.probes.get(&pidx).and_then(|s| s.failure.as_ref())
    }

    /// All known probes with their state, ascending `pidx`.
    pub fn iter(&self) -> impl Iterator<Item = (Pidx, &ProbeState)> + '_ {
        self.probes.iter().map(|(p, s)| (*p, s))
    }

    /// The armed probes, ascending.
    pub fn armed(&self) -> Vec<Pidx> {
        self.iter()
            .filter(|(_, s)| s.armed)
            .map(|(p, _)| p)
            .collect()
    }

    /// Update from a plan and the report of applying it (see the module's failure policy).
    pub fn record(&mut self, plan: &Plan, report: &ApplyReport) {
        for action in &plan.actions {
            let error = report.error_for(action);
            let st = self.probes.entry(action.pidx).or_default();
            match error {
                None => {
                    match action.op {
                        Op::Arm => {
                            st.armed = true;
                            st.times_armed += 1;
                        }
                        Op::Disarm => {
                            st.armed = false;
                            st.times_disarmed += 1;
                        }
                        Op::StartDisarmed | Op::Release => st.armed = false,
                    }
                    st.failure = None;
                }
                Some(error) => {
                    match action.op {
                        Op::Arm | Op::StartDisarmed | Op::Release => st.armed = false,
                        Op::Disarm => {}
                    }
                    let consecutive = match &st.failure {
                        Some(f) if f.op == action.op => f.consecutive + 1,
                        _ => 1,
                    };
                    st.failure = Some(Failure {
                        op: action.op,
                        error,
                        consecutive,
                    });
                }
            }
        }
    }

    /// Clear the failure mark of `pidx` (its state now matches what is wanted).
    pub fn clear_failure(&mut self, pidx: Pidx) {
        if let Some(st) = self.probes.get_mut(&pidx) {
            st.failure = None;
        }
    }

    /// True if some probe's last `Arm` or `Disarm` failed fewer than `max_retries + 1` times in
    /// a row: the scheduler then refreshes at the next timer tick to retry it.
    pub fn retry_due(&self, max_retries: u32) -> bool {
        self.probes.values().any(|s| {
            s.failure.as_ref().is_some_and(|f| {
                matches!(f.op, Op::Arm | Op::Disarm) && f.consecutive <= max_retries
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Phase};

    fn plan(phase: Phase, ops: &[(Pidx, Op)]) -> Plan {
        Plan {
            phase,
            actions: ops
                .iter()
                .map(|&(pidx, op)| Action {
                    pidx,
                    op,
                    decision: None,
                })
                .collect(),
        }
    }

    #[test]
    fn failed_arm_stays_disarmed_and_counts() {
        let mut set = ArmedSet::new();
        let p = plan(Phase::Refresh, &[(0, Op::Arm), (1, Op::Arm)]);
        let mut r = ApplyReport::new();
        r.ok(&p.actions[0]);
        r.failed(&p.actions[1], "EBUSY");
        set.record(&p, &r);
        assert!(set.is_armed(0));
        assert!(!set.is_armed(1));
        assert_eq!(set.failure(1).map(|f| f.consecutive), Some(1));
        assert!(set.retry_due(1));
        set.record(&plan(Phase::Refresh, &[(1, Op::Arm)]), &{
            let mut r = ApplyReport::new();
            r.failed(
                &Action {
                    pidx: 1,
                    op: Op::Arm,
                    decision: None,
                },
                "EBUSY",
            );
            r
        });
        assert_eq!(set.failure(1).map(|f| f.consecutive), Some(2));
        assert!(!set.retry_due(1));
        assert!(set.retry_due(2));
        let p = plan(Phase::Refresh, &[(1, Op::Arm)]);
        set.record(&p, &ApplyReport::all_ok(&p));
        assert!(set.is_armed(1));
        assert_eq!(set.failure(1), None);
        assert_eq!(set.state(1).map(|s| s.times_armed), Some(1));
    }

    #[test]
    fn failed_disarm_stays_armed() {
        let mut set = ArmedSet::new();
        let p = plan(Phase::Start, &[(0, Op::Arm)]);
        set.record(&p, &ApplyReport::all_ok(&p));
        let p = plan(Phase::Refresh, &[(0, Op::Disarm)]);
        let mut r = ApplyReport::new();
        r.failed(&p.actions[0], "EIO");
        set.record(&p, &r);
        assert!(set.is_armed(0));
        assert_eq!(set.failure(0).map(|f| f.op), Some(Op::Disarm));
    }

    #[test]
    fn missing_outcome_is_a_failure() {
        let mut set = ArmedSet::new();
        let p = plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm)]);
        let mut r = ApplyReport::new();
        r.ok(&p.actions[0]);
        set.record(&p, &r);
        assert!(set.is_armed(0));
        assert!(!set.is_armed(1));
        assert!(set
            .failure(1)
            .is_some_and(|f| f.error.contains("no outcome")));
    }
}
