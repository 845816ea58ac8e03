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

/// Timer handlers may wake user space themselves (an immediate refresh, as SystemTap's hrtimer
/// probes do).
///
/// A cpu-clock sample is delivered from the perf hrtimer interrupt: hard-irq context, never NMI.
/// The notification is a BPF ring-buffer record with adaptive wakeup, and the ring buffer does
/// not wake the reader inline: it queues an `irq_work`, which runs the wake-up later from a
/// context where taking scheduler locks is allowed. So notifying from a timer handler cannot
/// deadlock, and a timer probe that flips a condition gets the probe re-armed at once instead of
/// waiting for the background timer (`--otf-interval`).
pub const OTF_SAFE_CONTEXT: bool = true;

/// The reason for [`OTF_SAFE_CONTEXT`], for `otf check` and documentation.
pub const SAFE_REASON: &str =
    "perf cpu-clock handlers run in hard-irq context (never NMI); ring-buffer wake-ups are deferred through irq_work";

/// The name of this probe group in decision lines (`otf: enabling (hrtimer) pidx N`).
pub const GROUP_NAME: &str = "hrtimer";
