//! Plans (what a group should do, as plain data) and apply reports (what happened).
//!
//! Planning is pure: it compares what is *wanted* (the current condition values, or "always"
//! when on-the-fly arming does not apply) with what is *armed* ([`ArmedSet`]) and returns a
//! [`Plan`]. Only [`ProbeGroup::apply`](crate::ProbeGroup::apply) touches the kernel.
//!
//! The free functions [`plan_start`], [`plan_refresh`] and [`plan_release`] are the default
//! policy used by the provided methods of [`ProbeGroup`](crate::ProbeGroup).

use std::fmt;

use serde::Serialize;

use crate::armed::ArmedSet;
use crate::decision::DecisionLine;
use crate::group::ProbeEntry;
use crate::ids::Pidx;
use crate::probe_type::ProbeType;

/// When a plan is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Session start: nothing exists in the kernel yet.
    Start,
    /// A refresh while running: the group's kernel objects from earlier phases exist.
    Refresh,
    /// Shutdown: release everything.
    Shutdown,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Start => "start",
            Phase::Refresh => "refresh",
            Phase::Shutdown => "shutdown",
        })
    }
}

/// What to do with one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Make the probe fire: at start, attach it enabled; at a refresh, enable or attach it.
    Arm,
    /// Stop the probe firing (disable or detach it). Only at a refresh.
    Disarm,
    /// At start, condition false: set the probe up disarmed. What that means is the group's
    /// business (kprobes: register disabled; hrtimer, uprobes, tracepoints: typically nothing).
    StartDisarmed,
    /// At shutdown: release every kernel object of the probe, armed or not.
    Release,
}

impl Op {
    /// Short lowercase name (`arm`, `disarm`, `start-disarmed`, `release`).
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Arm => "arm",
            Op::Disarm => "disarm",
            Op::StartDisarmed => "start-disarmed",
            Op::Release => "release",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One planned operation on one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    /// The probe.
    pub pidx: Pidx,
    /// What to do.
    pub op: Op,
    /// The `--otf-debug` line for this action, if it is an on-the-fly decision. `None` for
    /// probes armed at start, for everything under `--no-otf` or in groups that do not support
    /// on-the-fly arming, and for releases.
    pub decision: Option<DecisionLine>,
}

/// A group's plan: actions in ascending `pidx` order. Plain data; applying it is
/// [`ProbeGroup::apply`](crate::ProbeGroup::apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// When the plan was made; tells `apply` whether kernel objects already exist.
    pub phase: Phase,
    /// The actions, ascending `pidx`, at most one per probe.
    pub actions: Vec<Action>,
}

impl Plan {
    /// An empty plan for `phase`.
    pub fn new(phase: Phase) -> Plan {
        Plan {
            phase,
            actions: Vec::new(),
        }
    }

    /// True if there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The debug lines of this plan, in action order.
    pub fn decisions(&self) -> impl Iterator<Item = &DecisionLine> + '_ {
        self.actions.iter().filter_map(|a| a.decision.as_ref())
    }

    /// The action for `pidx`, if any.
    pub fn action(&self, pidx: Pidx) -> Option<&Action> {
        self.actions.iter().find(|a| a.pidx == pidx)
    }
}

/// What planning needs to know besides the group's own probes.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// Current condition values, indexed by [`CondId`](crate::CondId). A condition id outside
    /// the slice counts as true (arming is only an optimisation; bodies are still gated).
    pub conditions: &'a [bool],
    /// On-the-fly arming on. `false` is `--no-otf`: every probe is wanted armed, always.
    pub otf: bool,
    /// What is armed now (empty at start).
    pub armed: &'a ArmedSet,
}

impl PlanInput<'_> {
    /// Whether `entry`, in a group whose `otf_supported()` is `supported`, should be armed.
    ///
    /// Always true under `--no-otf`, in unsupported groups and for probes without a condition;
    /// otherwise the value of the probe's condition.
    pub fn wanted(&self, entry: &ProbeEntry, supported: bool) -> bool {
        if !self.otf || !supported {
            return true;
        }
        match entry.cond {
            None => true,
            Some(c) => self.conditions.get(c as usize).copied().unwrap_or(true),
        }
    }

    /// Whether on-the-fly decisions (and their debug lines) apply to a group.
    pub fn decides(&self, supported: bool) -> bool {
        self.otf && supported
    }
}

fn sorted(mut actions: Vec<Action>) -> Vec<Action> {
    actions.sort_by_key(|a| a.pidx);
    actions
}

/// Default start plan for `probes` of type `ty`: every probe gets [`Op::Arm`] (no debug line)
/// if wanted, else [`Op::StartDisarmed`] with the type's start decision
/// ([`Vocabulary::start_disarmed`](crate::Vocabulary::start_disarmed): `not starting`,
/// `registering as disabled`, `not registering`).
pub fn plan_start(
    ty: &ProbeType,
    probes: &[ProbeEntry],
    supported: bool,
    input: &PlanInput<'_>,
) -> Plan {
    let actions = probes
        .iter()
        .map(|p| {
            if input.wanted(p, supported) {
                Action {
                    pidx: p.pidx,
                    op: Op::Arm,
                    decision: None,
                }
            } else {
                Action {
                    pidx: p.pidx,
                    op: Op::StartDisarmed,
                    decision: Some(DecisionLine {
                        decision: ty.vocabulary.start_disarmed,
                        flavor: p.flavor,
                        pidx: p.pidx,
                    }),
                }
            }
        })
        .collect();
    Plan {
        phase: Phase::Start,
        actions: sorted(actions),
    }
}

/// Default refresh plan for `probes` of type `ty`: for each probe whose wanted state differs
/// from its armed state, [`Op::Arm`] or [`Op::Disarm`], with the type's debug line
/// ([`Vocabulary::arm`](crate::Vocabulary::arm), [`Vocabulary::disarm`](crate::Vocabulary::disarm))
/// when on-the-fly arming applies.
///
/// Only the difference counts, so flips between two refreshes coalesce (on→off→on plans
/// nothing), and a probe whose last `Arm` failed (still disarmed, still wanted) is planned
/// again: that is the retry.
pub fn plan_refresh(
    ty: &ProbeType,
    probes: &[ProbeEntry],
    supported: bool,
    input: &PlanInput<'_>,
) -> Plan {
    let decides = input.decides(supported);
    let actions = probes
        .iter()
        .filter_map(|p| {
            let wanted = input.wanted(p, supported);
            if wanted == input.armed.is_armed(p.pidx) {
                return None;
            }
            let (op, decision) = if wanted {
                (Op::Arm, ty.vocabulary.arm)
            } else {
                (Op::Disarm, ty.vocabulary.disarm)
            };
            Some(Action {
                pidx: p.pidx,
                op,
                decision: decides.then_some(DecisionLine {
                    decision,
                    flavor: p.flavor,
                    pidx: p.pidx,
                }),
            })
        })
        .collect();
    Plan {
        phase: Phase::Refresh,
        actions: sorted(actions),
    }
}

/// Default shutdown plan: [`Op::Release`] for every probe of the group, armed or not, without
/// debug lines.
pub fn plan_release(probes: &[ProbeEntry]) -> Plan {
    let actions = probes
        .iter()
        .map(|p| Action {
            pidx: p.pidx,
            op: Op::Release,
            decision: None,
        })
        .collect();
    Plan {
        phase: Phase::Shutdown,
        actions: sorted(actions),
    }
}

/// The outcome of one action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    /// The probe.
    pub pidx: Pidx,
    /// The operation that was attempted.
    pub op: Op,
    /// `None` if it succeeded, else the error, worded for a user (e.g. `attach uprobe: ENOENT`).
    pub error: Option<String>,
}

/// What [`ProbeGroup::apply`](crate::ProbeGroup::apply) did: one outcome per action of the plan.
///
/// An action of the plan that has no outcome here is treated as failed
/// ("no outcome reported"), so a group cannot lose a failure by forgetting to report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// Outcomes, normally in plan order.
    pub outcomes: Vec<ActionOutcome>,
}

impl ApplyReport {
    /// An empty report.
    pub fn new() -> ApplyReport {
        ApplyReport::default()
    }

    /// A report in which every action of `plan` succeeded.
    pub fn all_ok(plan: &Plan) -> ApplyReport {
        ApplyReport {
            outcomes: plan
                .actions
                .iter()
                .map(|a| ActionOutcome {
                    pidx: a.pidx,
                    op: a.op,
                    error: None,
                })
                .collect(),
        }
    }

    /// Record that `action` succeeded.
    pub fn ok(&mut self, action: &Action) {
        self.outcomes.push(ActionOutcome {
            pidx: action.pidx,
            op: action.op,
            error: None,
        });
    }

    /// Record that `action` failed with `error`.
    pub fn failed(&mut self, action: &Action, error: impl fmt::Display) {
        self.outcomes.push(ActionOutcome {
            pidx: action.pidx,
            op: action.op,
            error: Some(error.to_string()),
        });
    }

    /// The outcome recorded for `pidx`, if any.
    pub fn outcome(&self, pidx: Pidx) -> Option<&ActionOutcome> {
        self.outcomes.iter().find(|o| o.pidx == pidx)
    }

    /// The error of `action` as this report tells it: `None` if it succeeded, the error if it
    /// failed, and "no outcome reported" if the report does not mention it.
    pub fn error_for(&self, action: &Action) -> Option<String> {
        match self
            .outcomes
            .iter()
            .find(|o| o.pidx == action.pidx && o.op == action.op)
        {
            Some(o) => o.error.clone(),
            None => Some("no outcome reported by the probe group".to_string()),
        }
    }

    /// The failed outcomes.
    pub fn failures(&self) -> impl Iterator<Item = &ActionOutcome> + '_ {
        self.outcomes.iter().filter(|o| o.error.is_some())
    }
}
