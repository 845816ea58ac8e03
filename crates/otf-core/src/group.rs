//! The [`ProbeGroup`] trait: one implementation per probe type.

use serde::Serialize;

use crate::armed::ArmedSet;
use crate::ids::{CondId, Flavor, Pidx};
use crate::plan::{self, ApplyReport, Plan, PlanInput};
use crate::probe_type::ProbeType;

/// One kernel attachment of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeEntry {
    /// Its index (0-based, script order, unique across groups).
    pub pidx: Pidx,
    /// The condition that gates it, or `None` for a probe without `if (...)` (always armed).
    pub cond: Option<CondId>,
    /// Its flavor, named in its `--otf-debug` lines (the words are its type's
    /// [`ProbeType::vocabulary`]).
    pub flavor: Flavor,
    /// A human description, e.g. `process("/bin/app").function("foo")` or
    /// `kernel.trace("sched:sched_process_fork")`.
    pub description: String,
}

impl ProbeEntry {
    /// A new entry.
    pub fn new(
        pidx: Pidx,
        cond: Option<CondId>,
        flavor: Flavor,
        description: impl Into<String>,
    ) -> ProbeEntry {
        ProbeEntry {
            pidx,
            cond,
            flavor,
            description: description.into(),
        }
    }
}

/// Whether a probe may wake user space itself when it flips a condition (docs/architecture.md,
/// "The model, in the code", 3), with the reason written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SafeContext {
    /// True if the probe's body may send the notification record.
    pub safe: bool,
    /// Why, in one sentence (printed by `otf check`).
    pub reason: &'static str,
}

impl SafeContext {
    /// A context from which notifying user space is safe.
    pub const fn safe(reason: &'static str) -> SafeContext {
        SafeContext { safe: true, reason }
    }

    /// A context from which notifying is not safe (e.g. it may run in NMI): the background timer
    /// picks up the change instead.
    pub const fn not_safe(reason: &'static str) -> SafeContext {
        SafeContext {
            safe: false,
            reason,
        }
    }
}

/// A set of kernel attachments of one probe type, armed and disarmed on the fly.
///
/// Deciding is separated from doing: `plan_*` are pure and return a [`Plan`] (the provided
/// defaults implement the policy of docs/architecture.md, and most groups keep them); [`apply`]
/// is the only method that touches the kernel. The trait is object safe: the scheduler holds
/// `Box<dyn ProbeGroup>`.
///
/// [`apply`]: ProbeGroup::apply
pub trait ProbeGroup {
    /// The group's probe type (its crate's `PROBE_TYPE`), which the provided methods read: the
    /// group's name, its safe context and the words of its `--otf-debug` lines.
    fn probe_type(&self) -> &'static ProbeType;

    /// The group's name: `hrtimer`, `tracepoint`, `uprobes`, `kprobes`, … Default: its type's
    /// [`ProbeType::name`].
    fn name(&self) -> &'static str {
        self.probe_type().name
    }

    /// The group's attachments, ascending `pidx`. Must not change after the session starts.
    fn probes(&self) -> &[ProbeEntry];

    /// Whether this group can disarm probes in the kernel. If false, every probe is armed at
    /// start and stays armed; conditions then only gate bodies.
    fn otf_supported(&self) -> bool;

    /// How many hits `pidx` was due while armed and never got, given the `arrived` hits that
    /// it got, when the group can tell (a timer knows its due times); they were lost in the
    /// kernel. `None` (the default) when it cannot.
    fn lost_hits(&self, pidx: Pidx, arrived: u64) -> Option<u64> {
        let _ = (pidx, arrived);
        None
    }

    /// The session is stopping: from now on no body runs and no hit is counted, though the
    /// probes are released only later. A group that derives [`ProbeGroup::lost_hits`] from the
    /// time its probes ran stops that clock here. The default does nothing.
    fn stopping(&mut self) {}

    /// Whether bodies of this group's probes may notify user space, and why. Default: its
    /// probe type's [`ProbeType::safe_context`], which the orchestrator reads before any group
    /// exists (the fact is compiled into the probe bodies).
    fn otf_safe_context(&self) -> SafeContext {
        self.probe_type().safe_context
    }

    /// Plan session start. Pure. Default: [`plan::plan_start`], with the words of the group's
    /// [`probe_type`](ProbeGroup::probe_type).
    fn plan_start(&self, input: &PlanInput<'_>) -> Plan {
        plan::plan_start(
            self.probe_type(),
            self.probes(),
            self.otf_supported(),
            input,
        )
    }

    /// Plan a refresh. Pure. Default: [`plan::plan_refresh`], with the words of the group's
    /// [`probe_type`](ProbeGroup::probe_type).
    fn plan_refresh(&self, input: &PlanInput<'_>) -> Plan {
        plan::plan_refresh(
            self.probe_type(),
            self.probes(),
            self.otf_supported(),
            input,
        )
    }

    /// Plan shutdown. Pure. Default: [`plan::plan_release`] (release every probe).
    fn plan_release(&self, armed: &ArmedSet) -> Plan {
        let _ = armed;
        plan::plan_release(self.probes())
    }

    /// Carry out `plan` in the kernel and report one outcome per action.
    ///
    /// Apply every action it can: a failure of one action must not stop the others. Batching
    /// and overlapping (uprobe_multi, detaching on worker threads) are welcome, as long as every
    /// action has its outcome when `apply` returns. `plan.phase` tells whether kernel objects
    /// from an earlier phase exist.
    fn apply(&mut self, plan: &Plan) -> ApplyReport;
}

/// Plans one start (`start`) or refresh of `group` against `conditions` (with on-the-fly arming
/// on), applies it, and records the outcome in `armed`, as the [`Scheduler`](crate::Scheduler)
/// does for each group: for a tool or a test that drives one group itself. Returns the plan
/// and its report.
pub fn plan_and_apply<G: ProbeGroup + ?Sized>(
    group: &mut G,
    armed: &mut ArmedSet,
    conditions: &[bool],
    start: bool,
) -> (Plan, ApplyReport) {
    let input = PlanInput {
        conditions,
        otf: true,
        armed,
    };
    let plan = if start {
        group.plan_start(&input)
    } else {
        group.plan_refresh(&input)
    };
    let report = group.apply(&plan);
    armed.record(&plan, &report);
    (plan, report)
}

/// Forwarding impl, so that `Box<dyn ProbeGroup>` (or `Box<dyn ProbeGroup + Send>`) is itself
/// a `ProbeGroup` and a `&mut [Box<dyn ProbeGroup>]` can be passed to
/// [`Scheduler::handle`](crate::Scheduler::handle). Every method forwards, overrides included.
impl<G: ProbeGroup + ?Sized> ProbeGroup for Box<G> {
    fn probe_type(&self) -> &'static ProbeType {
        (**self).probe_type()
    }
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn probes(&self) -> &[ProbeEntry] {
        (**self).probes()
    }
    fn otf_supported(&self) -> bool {
        (**self).otf_supported()
    }
    fn lost_hits(&self, pidx: Pidx, arrived: u64) -> Option<u64> {
        (**self).lost_hits(pidx, arrived)
    }
    fn stopping(&mut self) {
        (**self).stopping()
    }
    fn otf_safe_context(&self) -> SafeContext {
        (**self).otf_safe_context()
    }
    fn plan_start(&self, input: &PlanInput<'_>) -> Plan {
        (**self).plan_start(input)
    }
    fn plan_refresh(&self, input: &PlanInput<'_>) -> Plan {
        (**self).plan_refresh(input)
    }
    fn plan_release(&self, armed: &ArmedSet) -> Plan {
        (**self).plan_release(armed)
    }
    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        (**self).apply(plan)
    }
}
