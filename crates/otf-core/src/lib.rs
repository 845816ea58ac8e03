//! ProbeGroup trait, arming state, refresh decisions and the pure refresh scheduler of otf.
//!
//! otf arms and disarms kernel probes *on the fly*: a probe whose condition is false is not
//! attached (or is disabled) in the kernel. This crate holds everything about that which does
//! not touch the kernel:
//!
//! - identity and vocabulary: [`Pidx`], [`CondId`], [`Flavor`], [`Decision`], [`Vocabulary`],
//!   [`DecisionLine`] (the `--otf-debug` lines);
//! - the [`ProbeGroup`] trait that each probe-type crate implements, with pure planning
//!   ([`Plan`], [`Action`], [`Op`]) separated from applying ([`ApplyReport`]);
//! - the [`ProbeType`] descriptor each probe-type crate exports once (`PROBE_TYPE`): its
//!   group name, point grammar, flavors, `--otf-debug` words and safe context, read by the
//!   orchestrator and, through [`ProbeGroup::probe_type`], by planning;
//! - the arming state [`ArmedSet`] and its failure policy;
//! - the [`Scheduler`]: a state machine over [`Event`]s (start, notification, timer tick, stop)
//!   with the kernel injected as a [`Kernel`], returning the [`Step`]s it took as data;
//! - [`timeline`]: a readable text rendering of steps, used by the snapshot tests.
//!
//! See `docs/architecture.md` for the model and `docs/snapshots.md` for the timelines.

pub mod armed;
pub mod decision;
pub mod glob;
pub mod group;
pub mod ids;
pub mod plan;
pub mod probe_type;
pub mod scheduler;
pub mod timeline;

pub use armed::{ArmedSet, Failure, ProbeState};
pub use decision::{Decision, DecisionLine, Vocabulary};
pub use group::{plan_and_apply, ProbeEntry, ProbeGroup, SafeContext};
pub use ids::{CondId, Flavor, Pidx};
pub use plan::{Action, ActionOutcome, ApplyReport, Op, Phase, Plan, PlanInput};
pub use probe_type::ProbeType;
pub use scheduler::{
    Event, IgnoreReason, Kernel, Scheduler, SchedulerConfig, State, Step, StopReason,
};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
