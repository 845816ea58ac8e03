//! On-the-fly `timer.*` probes on perf cpu-clock events.
//!
//! A timer probe is a software `PERF_COUNT_SW_CPU_CLOCK` perf event sampling every
//! `period` nanoseconds on one CPU (or every online CPU for `timer.profile`), with a BPF
//! `perf_event` program attached through a link whose cookie is the probe's pidx.
//! Disarming is `PERF_EVENT_IOC_DISABLE` (the timer really stops), arming `ENABLE`.
//!
//! Use [`resolve`] to turn a [`TimerKind`] into attachments, and [`PerfTimer`] to own one.

mod group;
pub mod sys;
mod timer;

pub use group::HrtimerGroup;

pub use timer::{
    resolve, resolve_on, PerfTimer, TimerAttachment, TimerError, TimerKind, TimerUnit,
    MIN_PERIOD_NS, PROFILE_PERIOD_NS,
};

/// Timer handlers never wake user space themselves.
///
/// A cpu-clock sample is delivered from the perf hrtimer interrupt (hard-irq context, NMI-like
/// for the purpose of locking): waking a user-space reader from there takes scheduler locks that
/// may already be held by the interrupted code. Timer probes therefore only set the
/// `need_refresh` flag, and the orchestrator's background timer (`--otf-interval`) picks it up.
pub const OTF_SAFE_CONTEXT: bool = false;

/// The reason for [`OTF_SAFE_CONTEXT`], for `otf check` and documentation.
pub const UNSAFE_REASON: &str =
    "perf cpu-clock handlers run in hard-irq context; refreshes wait for the background timer";

/// The name of this probe group in decision lines (`otf: enabling (hrtimer) pidx N`).
pub const GROUP_NAME: &str = "hrtimer";
