//! One probe group per probe type, built over the loaded runtime's programs.

use std::os::fd::{AsFd, OwnedFd};

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
    p.try_clone_to_owned()
        .map_err(|e| Failure::Message(format!("dup of {}: {e}", kind.name())))
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
        .map_err(|e| Failure::Message(format!("tracepoint probes: {e}")))?;
        groups.push(Box::new(g));
    }
    let script = &front.compiled.script;
    let ups: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Uprobe(t) => Some(otf_uprobes_inode::UprobeSpec {
                pidx: p.pidx,
                cond: p.has_cond.then_some(p.unit as u32),
                target: t.clone(),
                entry_save: script.units[p.unit].entry.is_some(),
            }),
            _ => None,
        })
        .collect();
    if !ups.is_empty() {
        let progs = otf_uprobes_inode::UprobePrograms {
            uprobe: prog_fd(rt, ProgKind::Uprobe)?,
            uretprobe: prog_fd(rt, ProgKind::Uretprobe)?,
            uprobe_multi: prog_fd(rt, ProgKind::UprobeMulti).ok(),
            uretprobe_multi: prog_fd(rt, ProgKind::UretprobeMulti).ok(),
        };
        let g = otf_uprobes_inode::UprobeGroup::new(ups, progs)
            .map_err(|e| Failure::Message(format!("uprobes: {e}")))?;
        groups.push(Box::new(g));
    }
    let kps: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Kprobe(t) => Some(otf_kprobes::KprobeSpec {
                pidx: p.pidx,
                cond: p.has_cond.then_some(p.unit as u32),
                target: t.clone(),
                entry_save: script.units[p.unit].entry.is_some(),
            }),
            _ => None,
        })
        .collect();
    if !kps.is_empty() {
        otf_kprobes::kprobes_available().map_err(Failure::Message)?;
        let progs = otf_kprobes::KprobePrograms {
            kprobe: prog_fd(rt, ProgKind::Kprobe)?,
            kretprobe: prog_fd(rt, ProgKind::Kretprobe)?,
            kprobe_multi: prog_fd(rt, ProgKind::KprobeMulti).ok(),
            kretprobe_multi: prog_fd(rt, ProgKind::KretprobeMulti).ok(),
        };
        let g = otf_kprobes::KprobeGroup::new(kps, progs)
            .map_err(|e| Failure::Message(format!("kprobes: {e}")))?;
        groups.push(Box::new(g));
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
        let err = |e: std::io::Error| Failure::Message(format!("timer probes: {e}"));
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
