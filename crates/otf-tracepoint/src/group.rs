//! [`TracepointGroup`]: the `kernel.trace(...)` probes of a session as an otf-core
//! [`ProbeGroup`].

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use otf_core::{ApplyReport, Op, Pidx, Plan, ProbeEntry, ProbeGroup, ProbeType};

use otf_attach::close::{close_all, Closer, CLOSE_THREADS};
use otf_attach::grace::GraceKick;

use crate::attach::{mode_for, AttachError, AttachMode, TracepointLink, TracepointProgs};
use crate::resolve::Tracepoint;
use crate::syscall::{map_update, min_dispatch, SyscallDir, SyscallDispatch, SyscallPrograms};

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

/// The chains of the BPF runtime for `probes` (`(pidx, condition, tracepoint)`): the perf
/// chains ([`perf_chains`]) of the probes that are not dispatched by syscall number, and the
/// chains of each dispatch unit ([`SyscallDispatch::chains`]). `syscall_units`: the dispatch
/// units the runtime has room for (0 when the syscall programs are not loaded), as given to
/// [`TracepointGroup::with_syscalls`], which attaches accordingly.
pub fn tracepoint_chains(
    probes: &[(Pidx, Option<u32>, Tracepoint)],
    raw_available: bool,
    syscall_units: usize,
) -> Vec<Vec<Pidx>> {
    let dispatch = SyscallDispatch::plan(probes, syscall_units > 0, min_dispatch(), syscall_units);
    let rest: Vec<(Pidx, Tracepoint)> = probes
        .iter()
        .filter(|(p, _, _)| dispatch.unit_of(*p).is_none())
        .map(|(p, _, t)| (*p, t.clone()))
        .collect();
    let mut out = perf_chains(&rest, raw_available);
    out.extend(dispatch.chains());
    out.sort();
    out
}

/// The syscall dispatch of a group.
#[derive(Debug)]
struct Dispatch {
    enter: Option<OwnedFd>,
    exit: Option<OwnedFd>,
    plan: SyscallDispatch,
    /// The unit whose link each unit owner (index of its first member) holds.
    unit_at: HashMap<usize, usize>,
}

/// Tracepoint probes: a probe is armed iff its BPF link exists.
///
/// Arming attaches (raw tracepoint with cookie where available, perf tracepoint otherwise and
/// for `syscalls:*` outside a dispatch unit, one raw link per dispatch unit); disarming closes a few raw links at once ([`INLINE_RAW_CLOSES`]) and hands the others to a [`Closer`] thread, so a refresh
/// never waits for detach grace periods (the probe stops firing within about a millisecond;
/// a hit in that window is still gated by its condition in BPF), then kicks an RCU grace period
/// in the background ([`GraceKick`]) so that the next arm does not wait for one. Releasing at
/// shutdown drops every link concurrently and waits until all are gone.
///
/// Probes sharing a perf attachment ([`perf_chains`]) are attached while any of them is armed;
/// the bodies of the disarmed ones then end at their inlined condition check.
///
/// With syscall programs ([`TracepointGroup::with_syscalls`]), the `syscalls:*` probes of a
/// dispatch unit ([`SyscallDispatch`]) share one raw `sys_enter`/`sys_exit` link in the same
/// way: it exists while any of them is armed, and is gone when the unit is disarmed.
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
    closer: Closer<TracepointLink>,
    /// Started after every disarm, so that the next arm does not wait for the grace period the
    /// kernel's tracepoint snapshot asks for ([`GraceKick`]).
    grace: Arc<GraceKick>,
    dispatch: Option<Dispatch>,
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
        probes: Vec<(ProbeEntry, Tracepoint)>,
    ) -> io::Result<TracepointGroup> {
        TracepointGroup::with_syscalls(perf_prog, raw_prog, None, probes)
    }

    /// As [`TracepointGroup::new`], with the syscall-dispatch programs and map: the
    /// `syscalls:*` probes that [`SyscallDispatch::plan`] puts in a unit (with
    /// [`crate::min_dispatch`] and `sys.units`) are attached as one raw link per unit, and the map is
    /// filled now. The BPF runtime must chain as [`tracepoint_chains`] does with
    /// `syscall_units = sys.units`.
    pub fn with_syscalls(
        perf_prog: BorrowedFd<'_>,
        raw_prog: Option<BorrowedFd<'_>>,
        sys: Option<SyscallPrograms<'_>>,
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
        let triples: Vec<(Pidx, Option<u32>, Tracepoint)> = probes
            .iter()
            .map(|(e, t)| (e.pidx, e.cond, t.clone()))
            .collect();
        let plan = SyscallDispatch::plan(
            &triples,
            sys.is_some(),
            min_dispatch(),
            sys.map_or(0, |s| s.units as usize),
        );
        let pairs: Vec<(Pidx, Tracepoint)> = triples
            .iter()
            .filter(|(p, _, _)| plan.unit_of(*p).is_none())
            .map(|(p, _, t)| (*p, t.clone()))
            .collect();
        let mut slot: Vec<usize> = (0..probes.len()).collect();
        for chain in perf_chains(&pairs, raw_prog.is_some()) {
            let head = index[&chain[0]];
            for p in &chain {
                slot[index[p]] = head;
            }
        }
        let dispatch = match sys {
            Some(sys) if !plan.units.is_empty() => {
                let mut unit_at = HashMap::new();
                for (u, unit) in plan.units.iter().enumerate() {
                    let prog = match unit.dir {
                        crate::SyscallDir::Enter => sys.enter,
                        crate::SyscallDir::Exit => sys.exit,
                    };
                    if prog.is_none() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("no program for raw_syscalls:{}", unit.dir.raw_tracepoint()),
                        ));
                    }
                    let owner = index[&unit.members[0].0];
                    for (p, _) in &unit.members {
                        slot[index[p]] = owner;
                    }
                    unit_at.insert(owner, u);
                    for (nr, head) in unit.heads() {
                        if nr >= sys.nrs {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!("syscall number {nr} over the dispatch map's {}", sys.nrs),
                            ));
                        }
                        map_update(sys.map, u as u32 * sys.nrs + nr, head + 1)?;
                    }
                }
                Some(Dispatch {
                    enter: sys.enter.map(|p| p.try_clone_to_owned()).transpose()?,
                    exit: sys.exit.map(|p| p.try_clone_to_owned()).transpose()?,
                    plan,
                    unit_at,
                })
            }
            _ => None,
        };
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
            closer: Closer::new(CLOSE_THREADS),
            grace: Arc::new(GraceKick::new()),
            dispatch,
        })
    }

    /// The syscall dispatch units of this group (empty without syscall programs).
    pub fn dispatch_units(&self) -> &[crate::DispatchUnit] {
        self.dispatch.as_ref().map_or(&[], |d| &d.plan.units)
    }

    /// The number of kernel attachments (links) held now.
    pub fn link_count(&self) -> usize {
        self.links.iter().filter(|l| l.is_some()).count()
    }

    /// Attaches the link owned by probe index `owner`.
    fn attach_owner(&mut self, owner: usize) -> Result<TracepointLink, AttachError> {
        if let Some(d) = &self.dispatch {
            if let Some(&u) = d.unit_at.get(&owner) {
                let dir = d.plan.units[u].dir;
                let prog = match dir {
                    crate::SyscallDir::Enter => d.enter.as_ref(),
                    crate::SyscallDir::Exit => d.exit.as_ref(),
                }
                .expect("checked at creation");
                return TracepointLink::attach_dispatch(prog.as_fd(), dir, u as u32);
            }
        }
        let progs = TracepointProgs {
            perf: self.perf_prog.as_fd(),
            raw: self.raw_prog.as_ref().map(|p| p.as_fd()),
        };
        let cookie = u64::from(self.entries[owner].pidx);
        let tp = &self.tracepoints[owner];
        let mut attached = TracepointLink::attach(progs, tp, cookie);
        if is_eexist(&attached) {
            // A link of this tracepoint disarmed moments ago may still be closing in the
            // background (the kernel refuses a second attachment of the program to a perf
            // tracepoint until then): wait for it, and try again.
            self.closer.flush();
            attached = TracepointLink::attach(progs, tp, cookie);
        }
        attached
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
    fn probe_type(&self) -> &'static ProbeType {
        &crate::PROBE_TYPE
    }

    fn probes(&self) -> &[ProbeEntry] {
        &self.entries
    }

    fn otf_supported(&self) -> bool {
        true
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
        let mut failed: HashMap<usize, ApplyError> = HashMap::new();
        let mut to_drop = Vec::new();
        for owner in owners {
            let wanted = self.slot_wanted(owner);
            if wanted && self.links[owner].is_none() {
                match self.attach_owner(owner) {
                    Ok(l) => self.links[owner] = Some(l),
                    Err(source) => {
                        let error = match self
                            .dispatch
                            .as_ref()
                            .and_then(|d| d.unit_at.get(&owner).map(|&u| d.plan.units[u].dir))
                        {
                            Some(dir) => ApplyError::Dispatch { dir, source },
                            None => ApplyError::Attach {
                                tracepoint: self.tracepoints[owner].clone(),
                                source,
                            },
                        };
                        failed.insert(owner, error);
                    }
                }
            } else if !wanted {
                to_drop.extend(self.links[owner].take());
            }
        }
        let mut report = ApplyReport::new();
        for action in &plan.actions {
            let Some(&i) = self.index.get(&action.pidx) else {
                report.failed(action, ApplyError::NotATracepoint(action.pidx));
                continue;
            };
            match failed.get(&self.slot[i]) {
                Some(error) if action.op == Op::Arm => {
                    self.armed[i] = false;
                    report.failed(action, error);
                }
                _ => report.ok(action),
            }
        }
        if releasing {
            close_all(to_drop, CLOSE_THREADS);
            self.closer.flush();
        } else {
            let (quick, slow): (Vec<_>, Vec<_>) = to_drop
                .into_iter()
                .partition(|l| l.mode() != AttachMode::Perf);
            // Raw links kick a grace period once closed: a tracepoint's last detach leaves the
            // next first attach (of any tracepoint) waiting for one. A perf tracepoint's close
            // needs no kick: the kernel's `perf_trace_event_unreg` itself waits in
            // `tracepoint_synchronize_unregister()` after the detach.
            if !quick.is_empty() && quick.len() <= INLINE_RAW_CLOSES {
                // The hook is gone when the close returns, ~0.3 ms from now.
                drop(quick);
                self.grace.kick();
            } else {
                let grace = Arc::clone(&self.grace);
                self.closer.release_then(quick, move || grace.kick());
            }
            self.closer.release(slow);
        }
        report
    }
}

/// Raw tracepoint links closed on the refresh's own thread when a refresh drops at most this
/// many. Closing one waits for no grace period (0.2–0.3 ms, strace), while handing it to a new
/// closing thread cost a flip p50 0.39 ms more before the close even started (bpftrace of 100
/// flips of `raw_syscalls:sys_enter`, docs/performance.md "Flip latency"); a larger batch still
/// goes to the [`Closer`] so that a refresh never spends more than ~2.5 ms closing.
const INLINE_RAW_CLOSES: usize = 8;

fn is_eexist<T>(r: &Result<T, AttachError>) -> bool {
    r.as_ref().err().is_some_and(eexist)
}

/// Whether the kernel refused an attachment with `EEXIST`.
fn eexist(e: &AttachError) -> bool {
    matches!(e, AttachError::Sys(_, io) if io.raw_os_error() == Some(libc::EEXIST))
}

/// Why an action on a tracepoint probe failed: the text of the probe's failure in the
/// [`ApplyReport`], with the attach error as its source.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The pidx is not one of the group's probes.
    #[error("pidx {0} is not a tracepoint probe")]
    NotATracepoint(Pidx),
    /// Attaching the tracepoint failed.
    #[error("attach tracepoint {tracepoint}: {source}{}", eexist_hint(source))]
    Attach {
        /// The tracepoint.
        tracepoint: Tracepoint,
        /// Why.
        #[source]
        source: AttachError,
    },
    /// Attaching the raw `sys_enter`/`sys_exit` link of a syscall dispatch unit failed.
    #[error(
        "attach the syscall dispatch on raw_syscalls:{}: {source}{}",
        dir.raw_tracepoint(),
        eexist_hint(source)
    )]
    Dispatch {
        /// The direction of the unit.
        dir: SyscallDir,
        /// Why.
        #[source]
        source: AttachError,
    },
}

/// What follows an attach error's text when the kernel said `EEXIST`.
fn eexist_hint(e: &AttachError) -> &'static str {
    match eexist(e) {
        true => " (the kernel attaches a program to a perf tracepoint only once)",
        false => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(s: &str, n: &str) -> Tracepoint {
        Tracepoint::new(s, n)
    }

    #[test]
    fn chains_are_per_perf_tracepoint_and_per_dispatch_unit() {
        let probes = vec![
            // Unit (cond 0, enter): read twice, write, close — dispatched (3 syscalls).
            (0, Some(0), tp("syscalls", "sys_enter_read")),
            (1, Some(0), tp("syscalls", "sys_enter_write")),
            (2, Some(0), tp("syscalls", "sys_enter_close")),
            (3, Some(0), tp("syscalls", "sys_enter_read")),
            // cond 1: read alone — a perf tracepoint; with probe 5 one perf chain.
            (4, Some(1), tp("syscalls", "sys_enter_read")),
            (5, None, tp("syscalls", "sys_enter_read")),
            // Two probes on one real tracepoint: raw links, no chain, unless no raw program.
            (6, None, tp("sched", "sched_switch")),
            (7, None, tp("sched", "sched_switch")),
        ];
        assert_eq!(
            tracepoint_chains(&probes, true, 32),
            vec![vec![0, 3], vec![4, 5]]
        );
        assert_eq!(
            tracepoint_chains(&probes, false, 32),
            vec![vec![0, 3], vec![4, 5], vec![6, 7]]
        );
        // Without syscall programs every syscall probe on read is one perf chain.
        assert_eq!(tracepoint_chains(&probes, true, 0), vec![vec![0, 3, 4, 5]]);
    }

    #[test]
    fn apply_errors_read_as_before_and_keep_the_attach_error() {
        use std::error::Error as _;

        let sys =
            |errno| AttachError::Sys("bpf(BPF_LINK_CREATE)", io::Error::from_raw_os_error(errno));
        let eexist = io::Error::from_raw_os_error(libc::EEXIST);
        let e = ApplyError::Attach {
            tracepoint: tp("sched", "sched_switch"),
            source: sys(libc::EEXIST),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "attach tracepoint sched:sched_switch: bpf(BPF_LINK_CREATE) failed: {eexist} \
                 (the kernel attaches a program to a perf tracepoint only once)"
            )
        );
        let attach = e.source().and_then(|s| s.downcast_ref::<AttachError>());
        assert!(matches!(attach, Some(AttachError::Sys(..))), "{attach:?}");
        let errno = e
            .source()
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error);
        assert_eq!(errno, Some(libc::EEXIST));

        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let e = ApplyError::Dispatch {
            dir: SyscallDir::Exit,
            source: sys(libc::EPERM),
        };
        assert_eq!(
            e.to_string(),
            format!(
                "attach the syscall dispatch on raw_syscalls:sys_exit: bpf(BPF_LINK_CREATE) \
                 failed: {eperm}"
            )
        );
        assert!(e.source().is_some_and(|s| s.is::<AttachError>()));

        let e = ApplyError::NotATracepoint(4);
        assert_eq!(e.to_string(), "pidx 4 is not a tracepoint probe");
        assert!(e.source().is_none());
    }
}
