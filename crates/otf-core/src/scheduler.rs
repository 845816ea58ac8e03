//! The refresh scheduler: a pure state machine over [`Event`]s.
//!
//! No threads, no sleeps, no clock: the caller passes `now` with each event, the kernel side is
//! a [`Kernel`] and the probe groups are [`ProbeGroup`]s. [`Scheduler::handle`] both decides and
//! executes (it calls the [`Kernel`] methods and [`ProbeGroup::apply`] itself, in the order
//! the model requires) and returns the [`Step`]s it took, as data, for logs and snapshot tests.
//!
//! ```text
//!            Start                     Stop
//! Starting ─────────▶ Running ───────────────▶ Stopping ──▶ Stopped
//!     │   (start failed, abort)                                ▲
//!     └────────────────────────────────────────────────────────┘
//! ```
//!
//! - **Start** (in `Starting`): run `begin` bodies; drain their output; clear `need_refresh`;
//!   evaluate every condition; then, group by group, plan the start, emit the decisions and
//!   apply. If an apply fails and [`SchedulerConfig::abort_on_start_failure`] is set (the
//!   default), the remaining groups are not started, everything is released (no `end` bodies) and the state becomes
//!   `Stopped` ([`Scheduler::start_failed`]). Otherwise `Running`.
//! - **Notification** (in `Running`): take `need_refresh`; if it was set, refresh; else nothing
//!   (an earlier refresh already handled it).
//! - **TimerTick** (in `Running`): take `need_refresh`; refresh if it was set, or if a failed
//!   arm/disarm is due for a retry ([`ArmedSet::retry_due`]); else nothing.
//! - **Refresh**: drain pending output, re-evaluate every condition, then group by group plan,
//!   emit decisions, apply, record. Groups with an empty plan are not called.
//! - **Stop** (in `Starting` or `Running`): `Stopping`: drain output, run `end` bodies, take
//!   `need_refresh` and ignore it (no refresh during shutdown), release every group, drain
//!   output again, `Stopped`. Stop before start goes straight to `Stopped`.
//! - Any refresh request outside `Running`, a second `Start` or a second `Stop` is recorded
//!   as [`Step::Ignored`].

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::armed::ArmedSet;
use crate::decision::DecisionLine;
use crate::group::ProbeGroup;
use crate::plan::{ApplyReport, Plan, PlanInput};

/// The scheduler's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum State {
    /// Before [`Event::Start`].
    Starting,
    /// Probes are set up; refreshes happen.
    Running,
    /// Shutting down: no refresh any more.
    Stopping,
    /// Everything released.
    Stopped,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why the session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A body called `exit()`.
    Exit,
    /// `-T/--timeout` elapsed.
    Timeout,
    /// SIGINT / SIGTERM.
    Signal,
    /// The `-c` command ended.
    CommandEnded,
    /// A run-time error ended the run.
    Error,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Exit => "exit()",
            StopReason::Timeout => "timeout",
            StopReason::Signal => "signal",
            StopReason::CommandEnded => "command ended",
            StopReason::Error => "error",
        })
    }
}

/// Something that happened, delivered to [`Scheduler::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Event {
    /// Start the session.
    Start,
    /// A probe in a safe context woke user space (`need_refresh` went 0→1).
    Notification,
    /// The `--otf-interval` background timer fired.
    TimerTick,
    /// End the session.
    Stop(StopReason),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Start => f.write_str("Start"),
            Event::Notification => f.write_str("Notification"),
            Event::TimerTick => f.write_str("TimerTick"),
            Event::Stop(r) => write!(f, "Stop({r})"),
        }
    }
}

/// Why an event was not acted upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    /// A refresh request before `Start`.
    NotStarted,
    /// `Start` when already started.
    AlreadyStarted,
    /// A refresh request (or `need_refresh` found set) while stopping.
    ShuttingDown,
    /// An event after the session stopped.
    Stopped,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IgnoreReason::NotStarted => "not started",
            IgnoreReason::AlreadyStarted => "already started",
            IgnoreReason::ShuttingDown => "shutting down",
            IgnoreReason::Stopped => "stopped",
        })
    }
}

/// One thing the scheduler did, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Step {
    /// Entered a new state.
    Enter(State),
    /// Ran the `begin` bodies ([`Kernel::run_begin`]).
    RunBegin,
    /// Took (read and cleared) `need_refresh`; the value it had.
    NeedRefresh(bool),
    /// A timer tick refreshes although `need_refresh` was clear, to retry failed operations.
    RetryDue,
    /// Drained pending output records ([`Kernel::drain_output`]).
    DrainOutput,
    /// Evaluated the conditions; their values, indexed by `CondId`.
    EvalConditions(Vec<bool>),
    /// Applied a non-empty plan to a group.
    Apply {
        /// The group's [`ProbeGroup::name`].
        group: &'static str,
        /// What was asked.
        plan: Plan,
        /// What happened.
        report: ApplyReport,
    },
    /// A refresh found nothing to change in any group.
    NoChange,
    /// Nothing to do for this event (timer tick or notification with `need_refresh` clear).
    Idle,
    /// The event or request was ignored.
    Ignored(IgnoreReason),
    /// Start-up failed (an apply failed at start); the session is being torn down.
    StartFailed,
    /// Ran the `end` bodies ([`Kernel::run_end`]).
    RunEnd,
}

/// The kernel side as the scheduler sees it. The orchestrator implements it on the BPF runtime;
/// tests implement it in memory.
pub trait Kernel {
    /// Run the `begin` bodies (in user space).
    fn run_begin(&mut self);
    /// Run the `end` bodies (in user space).
    fn run_end(&mut self);
    /// Read and clear the `need_refresh` flag (atomically: an exchange with 0).
    fn take_need_refresh(&mut self) -> bool;
    /// Print every pending output record, in order.
    fn drain_output(&mut self);
    /// Re-evaluate every condition from the live globals, store the values where the BPF
    /// runtime caches them, and return them indexed by `CondId`.
    fn current_conditions(&mut self) -> Vec<bool>;
    /// The decision lines of a plan, just before it is applied. Print them under `--otf-debug`
    /// (in the output stream), or ignore them. They are announced before the outcome is known;
    /// failures are in the [`Step::Apply`] report that `handle` returns (warn about them there).
    fn emit_decisions(&mut self, group: &str, lines: &[DecisionLine]);
}

/// Scheduler settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SchedulerConfig {
    /// On-the-fly arming; `false` is `--no-otf` (everything armed, no decisions).
    pub otf: bool,
    /// The background timer period (`--otf-interval`, default 100 ms).
    pub interval: Duration,
    /// How many timer ticks retry a failed arm/disarm without a condition change (default 3).
    pub max_retries: u32,
    /// Tear the session down if an apply fails at start (default true: "attach failure at
    /// start" is an error, exit status 1).
    pub abort_on_start_failure: bool,
}

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            otf: true,
            interval: Duration::from_millis(100),
            max_retries: 3,
            abort_on_start_failure: true,
        }
    }
}

/// The refresh scheduler. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Scheduler {
    config: SchedulerConfig,
    state: State,
    armed: ArmedSet,
    conditions: Vec<bool>,
    next_tick: Option<Duration>,
    refreshes: u64,
    start_failed: bool,
}

impl Scheduler {
    /// A scheduler in state `Starting`.
    pub fn new(config: SchedulerConfig) -> Scheduler {
        Scheduler {
            config,
            state: State::Starting,
            armed: ArmedSet::new(),
            conditions: Vec::new(),
            next_tick: None,
            refreshes: 0,
            start_failed: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What is armed, with failures and counts (for `--stats`).
    pub fn armed(&self) -> &ArmedSet {
        &self.armed
    }

    /// The condition values of the last evaluation.
    pub fn conditions(&self) -> &[bool] {
        &self.conditions
    }

    /// How many refreshes ran (refreshes that found nothing to change included).
    pub fn refresh_count(&self) -> u64 {
        self.refreshes
    }

    /// True if start-up failed and the session was torn down (exit status 1).
    pub fn start_failed(&self) -> bool {
        self.start_failed
    }

    /// When the next [`Event::TimerTick`] is due: `interval` after the start or the last tick;
    /// `None` unless running. The caller owns the clock; ticks delivered early or late are
    /// handled the same way.
    pub fn next_tick_due(&self) -> Option<Duration> {
        match self.state {
            State::Running => self.next_tick,
            _ => None,
        }
    }

    /// Handle one event at time `now` (since the session began): decide, call the kernel and
    /// the groups, and return the steps taken.
    ///
    /// `groups` must be the same, in the same order, for every call. The element type can be
    /// `Box<dyn ProbeGroup>`, `Box<dyn ProbeGroup + Send>` (through the forwarding impl for
    /// `Box`) or a concrete group type.
    pub fn handle<K, G>(
        &mut self,
        event: Event,
        now: Duration,
        kernel: &mut K,
        groups: &mut [G],
    ) -> Vec<Step>
    where
        K: Kernel + ?Sized,
        G: ProbeGroup,
    {
        let mut steps = Vec::new();
        match (event, self.state) {
            (Event::Start, State::Starting) => {
                self.next_tick = Some(now + self.config.interval);
                self.start(kernel, groups, &mut steps);
            }
            (Event::Start, State::Running) => {
                steps.push(Step::Ignored(IgnoreReason::AlreadyStarted))
            }
            (Event::Notification | Event::TimerTick, State::Starting) => {
                steps.push(Step::Ignored(IgnoreReason::NotStarted))
            }
            (Event::Notification, State::Running) => {
                let need = kernel.take_need_refresh();
                steps.push(Step::NeedRefresh(need));
                if need {
                    self.refresh(kernel, groups, &mut steps);
                } else {
                    steps.push(Step::Idle);
                }
            }
            (Event::TimerTick, State::Running) => {
                self.next_tick = Some(now + self.config.interval);
                let need = kernel.take_need_refresh();
                steps.push(Step::NeedRefresh(need));
                if need {
                    self.refresh(kernel, groups, &mut steps);
                } else if self.armed.retry_due(self.config.max_retries) {
                    steps.push(Step::RetryDue);
                    self.refresh(kernel, groups, &mut steps);
                } else {
                    steps.push(Step::Idle);
                }
            }
            (Event::Stop(_), State::Starting) => {
                self.state = State::Stopped;
                steps.push(Step::Enter(State::Stopped));
            }
            (Event::Stop(_), State::Running) => self.stop(kernel, groups, &mut steps, true),
            (_, State::Stopping) => steps.push(Step::Ignored(IgnoreReason::ShuttingDown)),
            (_, State::Stopped) => steps.push(Step::Ignored(IgnoreReason::Stopped)),
        }
        steps
    }

    fn start<K, G>(&mut self, kernel: &mut K, groups: &mut [G], steps: &mut Vec<Step>)
    where
        K: Kernel + ?Sized,
        G: ProbeGroup,
    {
        kernel.run_begin();
        steps.push(Step::RunBegin);
        // Output order: what begin printed comes before the start decisions.
        kernel.drain_output();
        steps.push(Step::DrainOutput);
        // Conditions are evaluated below; a flag raised by begin bodies is stale.
        let stale = kernel.take_need_refresh();
        steps.push(Step::NeedRefresh(stale));
        self.conditions = kernel.current_conditions();
        steps.push(Step::EvalConditions(self.conditions.clone()));
        for group in groups.iter_mut() {
            let plan = group.plan_start(&PlanInput {
                conditions: &self.conditions,
                otf: self.config.otf,
                armed: &self.armed,
            });
            let ok = self.apply(kernel, group, plan, steps);
            if !ok && self.config.abort_on_start_failure {
                self.start_failed = true;
                steps.push(Step::StartFailed);
                self.stop(kernel, groups, steps, false);
                return;
            }
        }
        self.state = State::Running;
        steps.push(Step::Enter(State::Running));
    }

    fn refresh<K, G>(&mut self, kernel: &mut K, groups: &mut [G], steps: &mut Vec<Step>)
    where
        K: Kernel + ?Sized,
        G: ProbeGroup,
    {
        self.refreshes += 1;
        kernel.drain_output();
        steps.push(Step::DrainOutput);
        self.conditions = kernel.current_conditions();
        steps.push(Step::EvalConditions(self.conditions.clone()));
        let mut changed = false;
        for group in groups.iter_mut() {
            let plan = group.plan_refresh(&PlanInput {
                conditions: &self.conditions,
                otf: self.config.otf,
                armed: &self.armed,
            });
            // A failed probe that this refresh does not plan is settled: forget its failure.
            for p in group.probes() {
                if plan.action(p.pidx).is_none() && self.armed.failure(p.pidx).is_some() {
                    self.armed.clear_failure(p.pidx);
                }
            }
            if !plan.is_empty() {
                changed = true;
                self.apply(kernel, group, plan, steps);
            }
        }
        if !changed {
            steps.push(Step::NoChange);
        }
    }

    fn stop<K, G>(&mut self, kernel: &mut K, groups: &mut [G], steps: &mut Vec<Step>, run_end: bool)
    where
        K: Kernel + ?Sized,
        G: ProbeGroup,
    {
        self.state = State::Stopping;
        steps.push(Step::Enter(State::Stopping));
        kernel.drain_output();
        steps.push(Step::DrainOutput);
        if run_end {
            kernel.run_end();
            steps.push(Step::RunEnd);
        }
        if kernel.take_need_refresh() {
            steps.push(Step::NeedRefresh(true));
            steps.push(Step::Ignored(IgnoreReason::ShuttingDown));
        }
        for group in groups.iter_mut() {
            let plan = group.plan_release(&self.armed);
            if !plan.is_empty() {
                self.apply(kernel, group, plan, steps);
            }
        }
        kernel.drain_output();
        steps.push(Step::DrainOutput);
        self.state = State::Stopped;
        steps.push(Step::Enter(State::Stopped));
    }

    /// Emit decisions, apply, record. Returns true if every action succeeded.
    fn apply<K, G>(
        &mut self,
        kernel: &mut K,
        group: &mut G,
        plan: Plan,
        steps: &mut Vec<Step>,
    ) -> bool
    where
        K: Kernel + ?Sized,
        G: ProbeGroup + ?Sized,
    {
        let lines: Vec<DecisionLine> = plan.decisions().copied().collect();
        if !lines.is_empty() {
            kernel.emit_decisions(group.name(), &lines);
        }
        let report = group.apply(&plan);
        self.armed.record(&plan, &report);
        let ok = plan.actions.iter().all(|a| report.error_for(a).is_none());
        steps.push(Step::Apply {
            group: group.name(),
            plan,
            report,
        });
        ok
    }
}
