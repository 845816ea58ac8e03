//! One probe group per probe type, built over the loaded runtime's programs.

use std::os::fd::{AsFd, OwnedFd};

use otf_attach::group::{LinkAttacher, LinkGroup, LinkPrograms, LinkSpec};
use otf_bpf::{ProgKind, Runtime};
use otf_core::{ProbeEntry, ProbeGroup};

use crate::frontend::Front;
use crate::resolve::{Attach, Resolved};
use crate::Failure;

pub(super) fn entry_of(p: &crate::resolve::ProbeInfo) -> ProbeEntry {
    let cond = p.has_cond.then_some(p.unit as u32);
    ProbeEntry::new(p.pidx, cond, p.attach.flavor(), p.pp.clone())
}

pub(super) fn prog_fd(rt: &Runtime, kind: ProgKind) -> Result<OwnedFd, Failure> {
    let p = rt.program(kind).ok_or_else(|| {
        Failure::Message(format!(
            "the BPF runtime has no {} program loaded",
            kind.name()
        ))
    })?;
    p.try_clone_to_owned().map_err(|source| Failure::Session {
        what: format!("dup of {}", kind.name()),
        source,
    })
}

/// The [`LinkGroup`] of type `A` over the probes `target` picks out of `res` (`None` when
/// there are none), attaching the runtime's programs of `kinds` (entry, return, and their
/// multi versions, which may be missing).
fn link_group<A>(
    rt: &Runtime,
    front: &Front,
    res: &Resolved,
    target: impl Fn(&Attach) -> Option<&A::Target>,
    kinds: [ProgKind; 4],
) -> Result<Option<Box<dyn ProbeGroup>>, Failure>
where
    A: LinkAttacher + 'static,
    A::Target: Clone,
    A::Error: std::error::Error + Send + Sync + 'static,
{
    let units = &front.compiled.script.units;
    let specs: Vec<LinkSpec<A::Target>> = res
        .probes
        .iter()
        .filter_map(|p| {
            Some(LinkSpec {
                pidx: p.pidx,
                cond: p.has_cond.then_some(p.unit as u32),
                target: target(&p.attach)?.clone(),
                entry_save: units[p.unit].entry.is_some(),
            })
        })
        .collect();
    if specs.is_empty() {
        return Ok(None);
    }
    let [entry, ret, entry_multi, ret_multi] = kinds;
    let progs = LinkPrograms {
        entry: prog_fd(rt, entry)?,
        ret: prog_fd(rt, ret)?,
        entry_multi: prog_fd(rt, entry_multi).ok(),
        ret_multi: prog_fd(rt, ret_multi).ok(),
    };
    let g = LinkGroup::<A>::new(specs, progs).map_err(|e| Failure::Group {
        group: A::TYPE.name,
        source: Box::new(e),
    })?;
    Ok(Some(Box::new(g)))
}

/// One probe group per probe type present in the script, in a fixed order: tracepoints,
/// uprobes, kprobes, then timers. Start plans are applied in this order, so timers start last:
/// a timer body that runs at once sees every event probe of the start already armed. (With
/// timers first, a slow attach, e.g. a tracepoint under emulation, ate into the first window
/// of a toggling timer.)
pub(super) fn build_groups(
    rt: &Runtime,
    front: &Front,
    res: &Resolved,
) -> Result<Vec<Box<dyn ProbeGroup>>, Failure> {
    let mut groups: Vec<Box<dyn ProbeGroup>> = Vec::new();
    let tps: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Tracepoint(t) => Some((entry_of(p), t.clone())),
            _ => None,
        })
        .collect();
    if !tps.is_empty() {
        let perf = prog_fd(rt, ProgKind::Tracepoint)?;
        let raw = rt
            .program(ProgKind::RawTp)
            .and_then(|p| p.try_clone_to_owned().ok());
        let sys = rt
            .syscalls_map()
            .map(|map| otf_tracepoint::SyscallPrograms {
                enter: rt.program(ProgKind::SyscallEnter),
                exit: rt.program(ProgKind::SyscallExit),
                map,
                units: otf_bpf::layout::SYSCALL_UNITS as u32,
                nrs: otf_bpf::layout::SYSCALL_NRS as u32,
            });
        let g = otf_tracepoint::TracepointGroup::with_syscalls(
            perf.as_fd(),
            raw.as_ref().map(|r| r.as_fd()),
            sys,
            tps,
        )
        .map_err(|e| Failure::Group {
            group: "tracepoint probes",
            source: Box::new(e),
        })?;
        groups.push(Box::new(g));
    }
    if let Some(g) = link_group::<otf_uprobes_inode::Uprobes>(
        rt,
        front,
        res,
        |a| match a {
            Attach::Uprobe(t) => Some(t),
            _ => None,
        },
        [
            ProgKind::Uprobe,
            ProgKind::Uretprobe,
            ProgKind::UprobeMulti,
            ProgKind::UretprobeMulti,
        ],
    )? {
        groups.push(g);
    }
    if res
        .probes
        .iter()
        .any(|p| matches!(p.attach, Attach::Kprobe(_)))
    {
        otf_kprobes::kprobes_available().map_err(Failure::Message)?;
    }
    if let Some(g) = link_group::<otf_kprobes::Kprobes>(
        rt,
        front,
        res,
        |a| match a {
            Attach::Kprobe(t) => Some(t),
            _ => None,
        },
        [
            ProgKind::Kprobe,
            ProgKind::Kretprobe,
            ProgKind::KprobeMulti,
            ProgKind::KretprobeMulti,
        ],
    )? {
        groups.push(g);
    }
    let timers: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Timer(t) => Some((entry_of(p), *t)),
            _ => None,
        })
        .collect();
    if !timers.is_empty() {
        let perf = if timers.iter().any(|(_, t)| t.profile) {
            Some(prog_fd(rt, ProgKind::PerfEvent)?)
        } else {
            None
        };
        let err = |e: std::io::Error| Failure::Group {
            group: "timer probes",
            source: Box::new(e),
        };
        let g = if timers.iter().all(|(_, t)| t.profile) {
            // Only timer.profile: perf events, no timer program or map loaded.
            let perf = perf.as_ref().expect("a perf program for timer.profile");
            otf_hrtimer::HrtimerGroup::new(perf.as_fd(), timers).map_err(err)?
        } else {
            let map = rt.timers_map().ok_or_else(|| {
                Failure::Message("timer probes: no timers map (an otf bug)".into())
            })?;
            let bpf = otf_hrtimer::BpfTimers::new(
                prog_fd(rt, ProgKind::Timer)?.as_fd(),
                map,
                std::mem::size_of::<otf_codegen::layout::TimerSlot>(),
            )
            .map_err(err)?;
            otf_hrtimer::HrtimerGroup::with_bpf_timers(
                perf.as_ref().map(|p| p.as_fd()),
                bpf,
                timers,
            )
            .map_err(err)?
        };
        groups.push(Box::new(g));
    }
    Ok(groups)
}
