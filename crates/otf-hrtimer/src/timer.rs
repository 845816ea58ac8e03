//! Timer points, their kernel attachments, and the owned perf cpu-clock timer.

use otf_attach::perf;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::sys;

/// Period of `timer.profile`: one scheduler tick at `HZ=250`, SystemTap's profiling rate.
pub const PROFILE_PERIOD_NS: u64 = 4_000_000;

/// Shortest accepted period. The kernel clamps cpu-clock periods below ~10 µs anyway, and a
/// perf sample costs ~13 µs here (docs/kernel-facts.md), so shorter periods would only stall the
/// machine.
pub const MIN_PERIOD_NS: u64 = 10_000;

/// What a timer point asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerKind {
    /// `timer.ns/us/ms/s/hz(N)`: one periodic timer with this period, on one CPU.
    Periodic {
        /// The period in nanoseconds.
        period_ns: u64,
    },
    /// `timer.profile`: one timer per online CPU at [`PROFILE_PERIOD_NS`].
    Profile,
}

/// The unit of a `timer.UNIT(N)` point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerUnit {
    /// `timer.ns(N)`.
    Ns,
    /// `timer.us(N)`.
    Us,
    /// `timer.ms(N)`.
    Ms,
    /// `timer.s(N)`.
    S,
    /// `timer.hz(N)`: N times per second.
    Hz,
}

/// Why a timer point cannot be turned into a timer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimerError(pub String);

impl TimerKind {
    /// The periodic timer `timer.UNIT(n)`; refuses non-positive values and periods shorter
    /// than [`MIN_PERIOD_NS`].
    pub fn periodic(unit: TimerUnit, n: i64) -> Result<TimerKind, TimerError> {
        if n <= 0 {
            return Err(TimerError(format!(
                "timer period must be positive, got {n}"
            )));
        }
        let n = n as u64;
        let period_ns = match unit {
            TimerUnit::Ns => Some(n),
            TimerUnit::Us => n.checked_mul(1_000),
            TimerUnit::Ms => n.checked_mul(1_000_000),
            TimerUnit::S => n.checked_mul(1_000_000_000),
            TimerUnit::Hz => Some(1_000_000_000 / n),
        }
        .ok_or_else(|| TimerError(format!("timer period {n} is too large")))?;
        if period_ns < MIN_PERIOD_NS {
            return Err(TimerError(format!(
                "timer period of {period_ns} ns is too short (minimum {} µs)",
                MIN_PERIOD_NS / 1000
            )));
        }
        Ok(TimerKind::Periodic { period_ns })
    }
}

/// One kernel attachment of a timer point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerAttachment {
    /// The CPU the timer runs on (a perf timer's; a BPF timer runs where the kernel puts it).
    pub cpu: u32,
    /// Its period in nanoseconds.
    pub period_ns: u64,
    /// One of `timer.profile`'s per-CPU samplers (always a perf cpu-clock event: a sample
    /// is of the CPU it interrupts).
    pub profile: bool,
}

impl fmt::Display for TimerAttachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.profile {
            write!(
                f,
                "perf cpu-clock cpu {} period {} ns",
                self.cpu, self.period_ns
            )
        } else {
            write!(f, "bpf timer period {} ns", self.period_ns)
        }
    }
}

/// The kernel attachments of a timer point, given the online CPUs: a periodic timer runs on
/// the first online CPU, `timer.profile` on each online CPU (one pidx each).
pub fn resolve_on(kind: TimerKind, online: &[u32]) -> Vec<TimerAttachment> {
    let first = online.first().copied().unwrap_or(0);
    match kind {
        TimerKind::Periodic { period_ns } => vec![TimerAttachment {
            cpu: first,
            period_ns,
            profile: false,
        }],
        TimerKind::Profile => {
            let cpus: Vec<u32> = if online.is_empty() {
                vec![0]
            } else {
                online.to_vec()
            };
            cpus.into_iter()
                .map(|cpu| TimerAttachment {
                    cpu,
                    period_ns: PROFILE_PERIOD_NS,
                    profile: true,
                })
                .collect()
        }
    }
}

/// [`resolve_on`] with this machine's online CPUs.
pub fn resolve(kind: TimerKind) -> Vec<TimerAttachment> {
    resolve_on(kind, &sys::online_cpus())
}

/// A cpu-clock perf event with a BPF program attached through a link carrying a cookie.
///
/// Dropping it detaches the program and closes the event (the link is closed first), so a
/// killed process leaves nothing behind. Arming is `PERF_EVENT_IOC_ENABLE`, disarming
/// `PERF_EVENT_IOC_DISABLE`, which really stops the timer (no more hits).
#[derive(Debug)]
pub struct PerfTimer {
    // Field order is drop order: the link goes before the event.
    link: OwnedFd,
    event: OwnedFd,
    attachment: TimerAttachment,
    enabled: bool,
}

impl PerfTimer {
    /// Opens the timer described by `attachment`, attaches `prog` (a `BPF_PROG_TYPE_PERF_EVENT`
    /// program fd) with `cookie`, and leaves it enabled iff `enabled`. A timer created
    /// disabled never fires until [`PerfTimer::enable`] ("not starting").
    pub fn open(
        prog: BorrowedFd<'_>,
        attachment: TimerAttachment,
        cookie: u64,
        enabled: bool,
    ) -> io::Result<PerfTimer> {
        let event = perf::open(
            &perf::PerfAttr::cpu_clock(attachment.period_ns, false),
            attachment.cpu as i32,
        )?;
        let link = otf_attach::sys::link_perf_event(prog, event.as_fd(), cookie)?;
        let mut t = PerfTimer {
            link,
            event,
            attachment,
            enabled: false,
        };
        if enabled {
            t.enable()?;
        }
        Ok(t)
    }

    /// Starts the timer (`PERF_EVENT_IOC_ENABLE`).
    pub fn enable(&mut self) -> io::Result<()> {
        perf::set_enabled(self.event.as_fd(), true)?;
        self.enabled = true;
        Ok(())
    }

    /// Stops the timer (`PERF_EVENT_IOC_DISABLE`): the program stops running at once.
    pub fn disable(&mut self) -> io::Result<()> {
        perf::set_enabled(self.event.as_fd(), false)?;
        self.enabled = false;
        Ok(())
    }

    /// Nanoseconds the timer has run while enabled (the cpu-clock event's count): the timer
    /// was due `count_ns() / period` times.
    pub fn count_ns(&self) -> io::Result<u64> {
        perf::read_count(self.event.as_fd())
    }

    /// Whether the timer is currently enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// What this timer is.
    pub fn attachment(&self) -> TimerAttachment {
        self.attachment
    }

    /// The BPF link fd (closing it detaches the program).
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(
            TimerKind::periodic(TimerUnit::Ms, 5),
            Ok(TimerKind::Periodic {
                period_ns: 5_000_000
            })
        );
        assert_eq!(
            TimerKind::periodic(TimerUnit::Hz, 100),
            Ok(TimerKind::Periodic {
                period_ns: 10_000_000
            })
        );
        assert_eq!(
            TimerKind::periodic(TimerUnit::Us, 100),
            Ok(TimerKind::Periodic { period_ns: 100_000 })
        );
        assert!(TimerKind::periodic(TimerUnit::Ns, 100).is_err());
        assert!(TimerKind::periodic(TimerUnit::S, 0).is_err());
        assert!(TimerKind::periodic(TimerUnit::S, i64::MAX).is_err());
    }

    #[test]
    fn profile_is_one_per_cpu() {
        let a = resolve_on(TimerKind::Profile, &[0, 1, 3]);
        assert_eq!(a.iter().map(|a| a.cpu).collect::<Vec<_>>(), vec![0, 1, 3]);
        let p = resolve_on(
            TimerKind::Periodic {
                period_ns: 1_000_000,
            },
            &[2, 3],
        );
        assert_eq!(
            p,
            vec![TimerAttachment {
                cpu: 2,
                period_ns: 1_000_000,
                profile: false,
            }]
        );
    }
}
