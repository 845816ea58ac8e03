//! On-the-fly `timer.*` probes: BPF timers, and perf cpu-clock events for `timer.profile`.
//!
//! `timer.ns/us/ms/s/hz(N)` is a BPF timer ([`bpf_timer`]) whose callback runs the probe's
//! program; arming starts it, disarming cancels it (the timer really stops). `timer.profile`
//! is a software `PERF_COUNT_SW_CPU_CLOCK` perf event sampling every online CPU, with a BPF
//! `perf_event` program attached through a link whose cookie is the probe's pidx; disarming
//! is `PERF_EVENT_IOC_DISABLE`, arming `ENABLE`. A group made with [`HrtimerGroup::new`] puts
//! every timer on perf events (for a Rust author's own perf-event program).
//!
//! Use [`resolve`] to turn a [`TimerKind`] into attachments, [`PerfTimer`] to own a perf
//! timer, [`BpfTimers`] to drive BPF timers.

pub mod bpf_timer;
mod group;
pub mod sys;
mod timer;

pub use bpf_timer::BpfTimers;
pub use group::{ApplyError, HrtimerGroup};

pub use timer::{
    resolve, resolve_on, PerfTimer, TimerAttachment, TimerError, TimerKind, TimerUnit,
    MIN_PERIOD_NS, PROFILE_PERIOD_NS,
};

/// The `timer.*` probe type, read by the orchestrator and returned by [`HrtimerGroup`]: group
/// `hrtimer` (`otf: enabling (hrtimer) pidx N`), its grammar, flavor and `--otf-debug` words.
///
/// Timer handlers may wake user space themselves (an immediate refresh, as SystemTap's hrtimer
/// probes do). A BPF timer's callback runs from the hrtimer soft interrupt; a cpu-clock sample
/// is delivered from the perf hrtimer interrupt: hard-irq context, never NMI.
/// The notification is a BPF ring-buffer record with adaptive wakeup, and the ring buffer does
/// not wake the reader inline: it queues an `irq_work`, which runs the wake-up later from a
/// context where taking scheduler locks is allowed. So notifying from a timer handler cannot
/// deadlock, and a timer probe that flips a condition gets the probe re-armed at once instead of
/// waiting for the background timer (`--otf-interval`).
pub const PROBE_TYPE: otf_core::ProbeType = otf_core::ProbeType {
    name: "hrtimer",
    family: "timer",
    point: "timer",
    suffixes: &["ns", "us", "ms", "s", "hz", "profile"],
    flavor: otf_core::Flavor::Hrtimer,
    return_flavor: None,
    // A timer whose condition is false at start is not started; later it is enabled and
    // disabled.
    vocabulary: otf_core::Vocabulary {
        start_disarmed: otf_core::Decision::NotStarting,
        arm: otf_core::Decision::Enabling,
        disarm: otf_core::Decision::Disabling,
    },
    safe_context: otf_core::SafeContext::safe(
        "BPF timer callbacks run in soft-irq, perf cpu-clock handlers in hard-irq context (never NMI); ring-buffer wake-ups are deferred through irq_work",
    ),
};
