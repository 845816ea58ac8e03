//! [`TracepointGroup`]: the `kernel.trace(...)` probes of a session as an otf-core
//! [`ProbeGroup`].

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use otf_core::{ApplyReport, Op, Pidx, Plan, ProbeEntry, ProbeGroup, SafeContext};

use otf_attach::close::{close_all, Reaper, REAPER_THREADS};

use crate::attach::{mode_for, AttachError, AttachMode, TracepointLink, TracepointProgs};
use crate::resolve::Tracepoint;

/// Groups of probes that must share one perf tracepoint attachment: the kernel attaches a
/// program to a perf tracepoint only once (`EEXIST`), so several probes on one tracepoint in
/// perf mode ([`mode_for`]) are attached once, with the cookie of the first (lowest pidx), and
/// the BPF runtime runs the others after it (`ProbeSlot::chain` in otf-bpf: each pidx chains to
/// the next of its group). Returns only groups of two or more, each sorted, in pidx order.
pub fn perf_chains(probes: &[(Pidx, Tracepoint)], raw_available: bool) -> Vec<Vec<Pidx>> {
    let mut by_tp: BTreeMap<&Tracepoint, Vec<Pidx>> = BTreeMap::new();
    for (pidx, tp) in probes {
        if mode_for(tp, raw_available) == AttachMode::Perf {
            by_tp.entry(tp).or_default().push(*pidx);
        }
    }
    let mut out: Vec<Vec<Pidx>> = by_tp
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort_unstable();
            v
        })
        .collect();
    out.sort();
    out
}

/// Tracepoint probes: a probe is armed iff its BPF link exists.
///
/// Arming attaches (raw tracepoint with cookie where available, perf tracepoint otherwise and
/// always for `syscalls:*`); disarming hands the link to a [`Reaper`] thread, so a refresh
/// never waits for detach grace periods (the probe stops firing within about a millisecond;
/// a hit in that window is still gated by its condition in BPF). Releasing at shutdown drops
/// every link concurrently and waits until all are gone.
///
/// Probes sharing a perf attachment ([`perf_chains`]) are attached while any of them is armed;
/// the bodies of the disarmed ones then end at their inlined condition check.
#[derive(Debug)]
pub struct TracepointGroup {
    perf_prog: OwnedFd,
    raw_prog: Option<OwnedFd>,
    entries: Vec<ProbeEntry>,
    tracepoints: Vec<Tracepoint>,
    /// Per probe: armed as far as the scheduler is concerned.
    armed: Vec<bool>,
    /// Per probe: the index of the probe that owns its link (itself unless shared).
    slot: Vec<usize>,
    /// Per probe: the link it owns (only at slot owners).
    links: Vec<Option<TracepointLink>>,
    index: HashMap<Pidx, usize>,
    reaper: Reaper<TracepointLink>,
}

impl TracepointGroup {
    /// A group attaching `perf_prog` (a `BPF_PROG_TYPE_TRACEPOINT` program) or `raw_prog` (a
    /// `BPF_PROG_TYPE_RAW_TRACEPOINT` program, optional) with cookie = pidx to each
    /// `(entry, tracepoint)`. The fds are duplicated. Nothing is attached until the start plan
    /// is applied. Probes on one tracepoint in perf mode share one attachment ([`perf_chains`]
    /// with `raw_available = raw_prog.is_some()`): the BPF program must run the chain.
    pub fn new(
        perf_prog: BorrowedFd<'_>,
        raw_prog: Option<BorrowedFd<'_>>,
        mut probes: Vec<(ProbeEntry, Tracepoint)>,
    ) -> io::Result<TracepointGroup> {
        probes.sort_by_key(|(e, _)| e.pidx);
        let perf_prog = perf_prog.try_clone_to_owned()?;
        let raw_prog = raw_prog.map(|p| p.try_clone_to_owned()).transpose()?;
        let index: HashMap<Pidx, usize> = probes
            .iter()
            .enumerate()
            .map(|(i, (e, _))| (e.pidx, i))
            .collect();
        let pairs: Vec<(Pidx, Tracepoint)> =
            probes.iter().map(|(e, t)| (e.pidx, t.clone())).collect();
        let mut slot: Vec<usize> = (0..probes.len()).collect();
        for chain in perf_chains(&pairs, raw_prog.is_some()) {
            let head = index[&chain[0]];
            for p in &chain {
                slot[index[p]] = head;
            }
        }
        let (entries, tracepoints): (Vec<_>, Vec<_>) = probes.into_iter().unzip();
        let links = entries.iter().map(|_| None).collect();
        let armed = entries.iter().map(|_| false).collect();
        Ok(TracepointGroup {
            perf_prog,
            raw_prog,
            entries,
            tracepoints,
            armed,
            slot,
            links,
            index,
            reaper: Reaper::new(),
        })
    }

    /// The tracepoint of `pidx`.
    pub fn tracepoint(&self, pidx: Pidx) -> Option<&Tracepoint> {
        self.index.get(&pidx).map(|&i| &self.tracepoints[i])
    }

    /// Whether the attachment that runs `pidx` exists now.
    pub fn is_attached(&self, pidx: Pidx) -> bool {
        self.index
            .get(&pidx)
            .is_some_and(|&i| self.links[self.slot[i]].is_some())
    }

    /// Whether some probe sharing the attachment owned by `owner` is armed.
    fn slot_wanted(&self, owner: usize) -> bool {
        (0..self.slot.len()).any(|j| self.slot[j] == owner && self.armed[j])
    }
}

impl ProbeGroup for TracepointGroup {
    fn name(&self) -> &'static str {
        crate::GROUP_NAME
    }

    fn probes(&self) -> &[ProbeEntry] {
        &self.entries
    }

    fn otf_supported(&self) -> bool {
        true
    }

    fn otf_safe_context(&self) -> SafeContext {
        crate::SAFE_CONTEXT
    }

    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        // Pass 1: what the scheduler wants of each probe. Pass 2: per attachment (probes on one
        // perf tracepoint share one), create it if some probe wants it, drop it if none does.
        let mut owners: Vec<usize> = Vec::new();
        let mut releasing = false;
        for action in &plan.actions {
            if let Some(&i) = self.index.get(&action.pidx) {
                self.armed[i] = action.op == Op::Arm;
                releasing |= action.op == Op::Release;
                if !owners.contains(&self.slot[i]) {
                    owners.push(self.slot[i]);
                }
            }
        }
        let mut failed: HashMap<usize, String> = HashMap::new();
        let mut to_drop = Vec::new();
        for owner in owners {
            let wanted = self.slot_wanted(owner);
            if wanted && self.links[owner].is_none() {
                let progs = TracepointProgs {
                    perf: self.perf_prog.as_fd(),
                    raw: self.raw_prog.as_ref().map(|p| p.as_fd()),
                };
                let cookie = u64::from(self.entries[owner].pidx);
                let tp = &self.tracepoints[owner];
                let mut attached = TracepointLink::attach(progs, tp, cookie);
                if is_eexist(&attached) {
                    // A link of this tracepoint disarmed moments ago may still be closing in the
                    // reaper (the kernel refuses a second attachment of the program to a perf
                    // tracepoint until then): wait for it, and try again.
                    self.reaper.flush();
                    attached = TracepointLink::attach(progs, tp, cookie);
                }
                match attached {
                    Ok(l) => self.links[owner] = Some(l),
                    Err(e) => {
                        let mut msg = format!("attach tracepoint {tp}: {e}");
                        if is_eexist::<()>(&Err(e)) {
                            msg.push_str(
                                " (the kernel attaches a program to a perf tracepoint only once)",
                            );
                        }
                        failed.insert(owner, msg);
                    }
                }
            } else if !wanted {
                to_drop.extend(self.links[owner].take());
            }
        }
        let mut report = ApplyReport::new();
        for action in &plan.actions {
            let Some(&i) = self.index.get(&action.pidx) else {
                report.failed(
                    action,
                    format!("pidx {} is not a tracepoint probe", action.pidx),
                );
                continue;
            };
            match failed.get(&self.slot[i]) {
                Some(msg) if action.op == Op::Arm => {
                    self.armed[i] = false;
                    report.failed(action, msg);
                }
                _ => report.ok(action),
            }
        }
        if releasing {
            close_all(to_drop, REAPER_THREADS);
            self.reaper.flush();
        } else {
            self.reaper.release(to_drop);
        }
        report
    }
}

fn is_eexist<T>(r: &Result<T, AttachError>) -> bool {
    matches!(r, Err(AttachError::Sys(_, io)) if io.raw_os_error() == Some(libc::EEXIST))
}
