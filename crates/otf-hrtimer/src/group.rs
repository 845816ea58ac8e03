//! [`HrtimerGroup`]: the `timer.*` probes of a session as an otf-core [`ProbeGroup`].

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use otf_core::{Action, ApplyReport, Op, Pidx, Plan, ProbeEntry, ProbeGroup, ProbeType};

use crate::bpf_timer::BpfTimers;
use crate::timer::{PerfTimer, TimerAttachment};

/// How one timer probe exists in the kernel.
#[derive(Debug)]
enum Backing {
    /// A perf cpu-clock event, once created (`timer.profile`, or every timer without BPF
    /// timers).
    Perf(Option<PerfTimer>),
    /// A BPF timer, started or not.
    Bpf { running: bool },
}

/// Why an action on a timer probe failed: the text of the probe's failure in the
/// [`ApplyReport`], with the system call's error as its source.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The pidx is not one of the group's probes.
    #[error("pidx {0} is not a timer probe")]
    NotATimer(Pidx),
    /// Starting a BPF timer failed.
    #[error("starting the BPF timer: {0}")]
    Start(#[source] io::Error),
    /// Cancelling a BPF timer failed.
    #[error("cancelling the BPF timer: {0}")]
    Cancel(#[source] io::Error),
    /// Opening a perf cpu-clock timer failed.
    #[error("perf cpu-clock timer on cpu {cpu}: {source}")]
    Open {
        /// The CPU it was opened on.
        cpu: u32,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// Enabling a perf timer failed.
    #[error("PERF_EVENT_IOC_ENABLE: {0}")]
    Enable(#[source] io::Error),
    /// Disabling a perf timer failed.
    #[error("PERF_EVENT_IOC_DISABLE: {0}")]
    Disable(#[source] io::Error),
}

/// Timer probes. With [`BpfTimers`] ([`HrtimerGroup::with_bpf_timers`]), each
/// `timer.ns/us/ms/s/hz` is a BPF timer that runs the program as its callback, and arming and
/// disarming start and cancel it; `timer.profile` (and every timer of a group made with
/// [`HrtimerGroup::new`]) is a [`PerfTimer`] whose BPF link carries the probe's pidx as cookie.
///
/// A perf timer that starts disarmed is created *disabled* ("not starting"): the perf event
/// exists, with the program attached, but never fires until it is enabled. Arming is
/// `PERF_EVENT_IOC_ENABLE`, disarming `PERF_EVENT_IOC_DISABLE`, releasing drops the event.
#[derive(Debug)]
pub struct HrtimerGroup {
    prog: Option<OwnedFd>,
    bpf: Option<BpfTimers>,
    entries: Vec<ProbeEntry>,
    attachments: Vec<TimerAttachment>,
    timers: Vec<Backing>,
    index: HashMap<Pidx, usize>,
    /// Nanoseconds each released perf timer ran while enabled.
    ran_ns: Vec<u64>,
    /// Nanoseconds each perf timer had run when the session began stopping (hits are no
    /// longer counted from then on).
    stopped_ns: Option<Vec<u64>>,
}

impl HrtimerGroup {
    /// A group running `prog` (a `BPF_PROG_TYPE_PERF_EVENT` program; the fd is duplicated) on a
    /// perf cpu-clock event for each `(entry, attachment)`. Nothing is created in the kernel
    /// until the start plan is applied. Entries are sorted by pidx.
    pub fn new(
        prog: BorrowedFd<'_>,
        probes: Vec<(ProbeEntry, TimerAttachment)>,
    ) -> io::Result<HrtimerGroup> {
        Self::build(Some(prog.try_clone_to_owned()?), None, probes)
    }

    /// A group whose periodic timers are the BPF timers `bpf`, and whose `timer.profile`
    /// probes run `perf_prog` on perf cpu-clock events (required if there are any).
    pub fn with_bpf_timers(
        perf_prog: Option<BorrowedFd<'_>>,
        bpf: BpfTimers,
        probes: Vec<(ProbeEntry, TimerAttachment)>,
    ) -> io::Result<HrtimerGroup> {
        let prog = perf_prog.map(|p| p.try_clone_to_owned()).transpose()?;
        Self::build(prog, Some(bpf), probes)
    }

    fn build(
        prog: Option<OwnedFd>,
        bpf: Option<BpfTimers>,
        mut probes: Vec<(ProbeEntry, TimerAttachment)>,
    ) -> io::Result<HrtimerGroup> {
        probes.sort_by_key(|(e, _)| e.pidx);
        let index = probes
            .iter()
            .enumerate()
            .map(|(i, (e, _))| (e.pidx, i))
            .collect();
        let (entries, attachments): (Vec<_>, Vec<TimerAttachment>) = probes.into_iter().unzip();
        let timers: Vec<Backing> = attachments
            .iter()
            .map(|a| match bpf {
                Some(_) if !a.profile => Backing::Bpf { running: false },
                _ => Backing::Perf(None),
            })
            .collect();
        if prog.is_none() && timers.iter().any(|t| matches!(t, Backing::Perf(_))) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "timer.profile needs a perf-event program",
            ));
        }
        let ran_ns = vec![0; entries.len()];
        Ok(HrtimerGroup {
            prog,
            bpf,
            entries,
            attachments,
            timers,
            ran_ns,
            stopped_ns: None,
            index,
        })
    }

    /// The perf timer of `pidx`, if it is one and exists in the kernel now.
    pub fn timer(&self, pidx: Pidx) -> Option<&PerfTimer> {
        match &self.timers[*self.index.get(&pidx)?] {
            Backing::Perf(t) => t.as_ref(),
            Backing::Bpf { .. } => None,
        }
    }

    /// Whether the BPF timer of `pidx` is running (`None`: not a BPF timer).
    pub fn bpf_timer_running(&self, pidx: Pidx) -> Option<bool> {
        match &self.timers[*self.index.get(&pidx)?] {
            Backing::Bpf { running } => Some(*running),
            Backing::Perf(_) => None,
        }
    }

    /// Nanoseconds perf timer `i` has run while enabled, released or not (0 for a BPF timer).
    fn perf_ran_ns(&self, i: usize) -> u64 {
        let live = match &self.timers[i] {
            Backing::Perf(Some(t)) => t.count_ns().unwrap_or(0),
            _ => 0,
        };
        self.ran_ns[i] + live
    }

    fn apply_bpf(&mut self, i: usize, op: Op, pidx: Pidx) -> Result<(), ApplyError> {
        let bpf = self.bpf.as_ref().expect("BPF timers are configured");
        let Backing::Bpf { running } = &mut self.timers[i] else {
            unreachable!("apply_bpf on a perf timer")
        };
        match op {
            Op::Arm => {
                bpf.start(pidx, self.attachments[i].period_ns)
                    .map_err(ApplyError::Start)?;
                *running = true;
            }
            Op::StartDisarmed | Op::Disarm | Op::Release => {
                if *running {
                    bpf.cancel(pidx).map_err(ApplyError::Cancel)?;
                    *running = false;
                }
            }
        }
        Ok(())
    }

    fn apply_one(&mut self, action: &Action) -> Result<(), ApplyError> {
        let i = *self
            .index
            .get(&action.pidx)
            .ok_or(ApplyError::NotATimer(action.pidx))?;
        if matches!(self.timers[i], Backing::Bpf { .. }) {
            return self.apply_bpf(i, action.op, action.pidx);
        }
        let cookie = u64::from(action.pidx);
        let attachment = self.attachments[i];
        let open = |prog: &Option<OwnedFd>, enabled: bool| {
            let prog = prog.as_ref().expect("perf timers have a program");
            PerfTimer::open(prog.as_fd(), attachment, cookie, enabled).map_err(|source| {
                ApplyError::Open {
                    cpu: attachment.cpu,
                    source,
                }
            })
        };
        let Backing::Perf(timer) = &mut self.timers[i] else {
            unreachable!("checked above")
        };
        match action.op {
            Op::Arm => match timer {
                Some(t) => t.enable().map_err(ApplyError::Enable),
                None => {
                    *timer = Some(open(&self.prog, true)?);
                    Ok(())
                }
            },
            Op::StartDisarmed => match timer {
                Some(t) => t.disable().map_err(ApplyError::Disable),
                None => {
                    *timer = Some(open(&self.prog, false)?);
                    Ok(())
                }
            },
            Op::Disarm => match timer {
                Some(t) => t.disable().map_err(ApplyError::Disable),
                None => Ok(()),
            },
            Op::Release => {
                if let Some(t) = timer.take() {
                    self.ran_ns[i] += t.count_ns().unwrap_or(0);
                }
                Ok(())
            }
        }
    }
}

impl Drop for HrtimerGroup {
    /// Cancels the BPF timers still running (perf timers close with their fds).
    fn drop(&mut self) {
        if let Some(bpf) = &self.bpf {
            for (e, t) in self.entries.iter().zip(&self.timers) {
                if matches!(t, Backing::Bpf { running: true }) {
                    let _ = bpf.cancel(e.pidx);
                }
            }
        }
    }
}

impl ProbeGroup for HrtimerGroup {
    fn probe_type(&self) -> &'static ProbeType {
        &crate::PROBE_TYPE
    }

    /// A BPF timer counts the due times it passed over. A perf timer's firings are derived:
    /// the nanoseconds it ran while enabled until the session began stopping (its cpu-clock
    /// count, kept across its release) over its period, less the hits that arrived and one
    /// more (a firing racing the stop).
    fn lost_hits(&self, pidx: Pidx, arrived: u64) -> Option<u64> {
        let &i = self.index.get(&pidx)?;
        match &self.timers[i] {
            Backing::Bpf { .. } => self.bpf.as_ref()?.counts(pidx).ok().map(|(_, lost)| lost),
            Backing::Perf(_) => {
                let ran = match &self.stopped_ns {
                    Some(v) => v[i],
                    None => self.perf_ran_ns(i),
                };
                let due = ran / self.attachments[i].period_ns.max(1);
                Some(due.saturating_sub(arrived + 1))
            }
        }
    }

    /// Freezes the perf timers' clocks: firings after this are neither hits nor lost.
    fn stopping(&mut self) {
        self.stopped_ns = Some(
            (0..self.entries.len())
                .map(|i| self.perf_ran_ns(i))
                .collect(),
        );
    }

    fn probes(&self) -> &[ProbeEntry] {
        &self.entries
    }

    fn otf_supported(&self) -> bool {
        true
    }

    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        let mut report = ApplyReport::new();
        for action in &plan.actions {
            match self.apply_one(action) {
                Ok(()) => report.ok(action),
                Err(e) => report.failed(action, e),
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn apply_errors_read_as_before_and_keep_the_system_error() {
        let eperm = || io::Error::from_raw_os_error(libc::EPERM);
        let cases = [
            (ApplyError::Start(eperm()), "starting the BPF timer"),
            (ApplyError::Cancel(eperm()), "cancelling the BPF timer"),
            (
                ApplyError::Open {
                    cpu: 3,
                    source: eperm(),
                },
                "perf cpu-clock timer on cpu 3",
            ),
            (ApplyError::Enable(eperm()), "PERF_EVENT_IOC_ENABLE"),
            (ApplyError::Disable(eperm()), "PERF_EVENT_IOC_DISABLE"),
        ];
        for (e, what) in cases {
            assert_eq!(e.to_string(), format!("{what}: {}", eperm()));
            let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
            assert_eq!(
                source.and_then(io::Error::raw_os_error),
                Some(libc::EPERM),
                "{e}"
            );
        }
        let e = ApplyError::NotATimer(7);
        assert_eq!(e.to_string(), "pidx 7 is not a timer probe");
        assert!(e.source().is_none());
    }

    #[test]
    fn failed_actions_are_reported_with_the_errors_text() {
        // Not a BPF program: opening the perf timer may succeed, attaching to it cannot.
        let not_a_prog = std::fs::File::open("/dev/null").unwrap();
        let attachment = TimerAttachment {
            cpu: 0,
            period_ns: 1_000_000,
            profile: true,
        };
        let entry = ProbeEntry::new(3, None, otf_core::Flavor::Hrtimer, "timer.profile");
        let mut g = HrtimerGroup::new(not_a_prog.as_fd(), vec![(entry, attachment)]).unwrap();
        let plan = Plan {
            phase: otf_core::Phase::Start,
            actions: [3, 9]
                .map(|pidx| Action {
                    pidx,
                    op: Op::Arm,
                    decision: None,
                })
                .to_vec(),
        };
        let report = g.apply(&plan);
        let error = |pidx| report.outcome(pidx).and_then(|o| o.error.clone());
        let opened = error(3).unwrap_or_default();
        assert!(
            opened.starts_with("perf cpu-clock timer on cpu 0: "),
            "{opened}"
        );
        assert_eq!(error(9).as_deref(), Some("pidx 9 is not a timer probe"));
    }
}
