//! [`HrtimerGroup`]: the `timer.*` probes of a session as an otf-core [`ProbeGroup`].

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use otf_core::{Action, ApplyReport, Op, Phase, Pidx, Plan, ProbeEntry, ProbeGroup, SafeContext};

use crate::timer::{PerfTimer, TimerAttachment};

/// Timer probes, each a [`PerfTimer`] whose BPF link carries the probe's pidx as cookie.
///
/// A probe that starts disarmed is created *disabled* ("not starting"): the perf event exists,
/// with the program attached, but never fires until it is enabled. Arming is
/// `PERF_EVENT_IOC_ENABLE`, disarming `PERF_EVENT_IOC_DISABLE`, releasing drops the event.
#[derive(Debug)]
pub struct HrtimerGroup {
    prog: OwnedFd,
    entries: Vec<ProbeEntry>,
    attachments: Vec<TimerAttachment>,
    timers: Vec<Option<PerfTimer>>,
    index: HashMap<Pidx, usize>,
    /// Nanoseconds each released timer ran while enabled.
    ran_ns: Vec<u64>,
}

impl HrtimerGroup {
    /// A group running `prog` (a `BPF_PROG_TYPE_PERF_EVENT` program; the fd is duplicated) for
    /// each `(entry, attachment)`. Nothing is created in the kernel until the start plan is
    /// applied. Entries are sorted by pidx.
    pub fn new(
        prog: BorrowedFd<'_>,
        mut probes: Vec<(ProbeEntry, TimerAttachment)>,
    ) -> io::Result<HrtimerGroup> {
        probes.sort_by_key(|(e, _)| e.pidx);
        let prog = prog.try_clone_to_owned()?;
        let index = probes
            .iter()
            .enumerate()
            .map(|(i, (e, _))| (e.pidx, i))
            .collect();
        let (entries, attachments): (Vec<_>, Vec<_>) = probes.into_iter().unzip();
        let timers = entries.iter().map(|_| None).collect();
        let ran_ns = vec![0; entries.len()];
        Ok(HrtimerGroup {
            prog,
            entries,
            attachments,
            timers,
            ran_ns,
            index,
        })
    }

    /// The timer of `pidx`, if it exists in the kernel now.
    pub fn timer(&self, pidx: Pidx) -> Option<&PerfTimer> {
        self.index.get(&pidx).and_then(|&i| self.timers[i].as_ref())
    }

    fn apply_one(&mut self, phase: Phase, action: &Action) -> Result<(), String> {
        let i = *self
            .index
            .get(&action.pidx)
            .ok_or_else(|| format!("pidx {} is not a timer probe", action.pidx))?;
        let cookie = u64::from(action.pidx);
        let open = |prog: &OwnedFd, enabled: bool| {
            PerfTimer::open(prog.as_fd(), self.attachments[i], cookie, enabled).map_err(|e| {
                format!(
                    "perf cpu-clock timer on cpu {}: {e}",
                    self.attachments[i].cpu
                )
            })
        };
        match (action.op, phase) {
            (Op::Arm, _) => match &mut self.timers[i] {
                Some(t) => t
                    .enable()
                    .map_err(|e| format!("PERF_EVENT_IOC_ENABLE: {e}")),
                None => {
                    let t = open(&self.prog, true)?;
                    self.timers[i] = Some(t);
                    Ok(())
                }
            },
            (Op::StartDisarmed, _) => match &mut self.timers[i] {
                Some(t) => t
                    .disable()
                    .map_err(|e| format!("PERF_EVENT_IOC_DISABLE: {e}")),
                None => {
                    let t = open(&self.prog, false)?;
                    self.timers[i] = Some(t);
                    Ok(())
                }
            },
            (Op::Disarm, _) => match &mut self.timers[i] {
                Some(t) => t
                    .disable()
                    .map_err(|e| format!("PERF_EVENT_IOC_DISABLE: {e}")),
                None => Ok(()),
            },
            (Op::Release, _) => {
                if let Some(t) = self.timers[i].take() {
                    self.ran_ns[i] += t.count_ns().unwrap_or(0);
                }
                Ok(())
            }
        }
    }
}

impl ProbeGroup for HrtimerGroup {
    fn name(&self) -> &'static str {
        crate::GROUP_NAME
    }

    /// The firings the timer of `pidx` was due: the nanoseconds it ran while enabled (its
    /// cpu-clock count, kept across its release) over its period.
    fn due_hits(&self, pidx: Pidx) -> Option<u64> {
        let &i = self.index.get(&pidx)?;
        let live = self.timers[i]
            .as_ref()
            .and_then(|t| t.count_ns().ok())
            .unwrap_or(0);
        Some((self.ran_ns[i] + live) / self.attachments[i].period_ns.max(1))
    }

    fn probes(&self) -> &[ProbeEntry] {
        &self.entries
    }

    fn otf_supported(&self) -> bool {
        true
    }

    fn otf_safe_context(&self) -> SafeContext {
        SafeContext::safe(crate::SAFE_REASON)
    }

    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        let mut report = ApplyReport::new();
        for action in &plan.actions {
            match self.apply_one(plan.phase, action) {
                Ok(()) => report.ok(action),
                Err(e) => report.failed(action, e),
            }
        }
        report
    }
}
