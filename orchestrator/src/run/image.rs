//! From the compiled script to the loaded runtime: the image, the program kinds it needs.

use otf_bpf::{LoadOptions, ProbeSlot, ProgKind, Runtime, RuntimeImage};
use otf_script::diag::SourceFile;

use crate::frontend::Front;
use crate::resolve::{Attach, Resolved};
use crate::Failure;

/// Whether the running kernel supports attach cookies on raw tracepoints (6.10 and later).
pub(super) fn raw_tp_cookies() -> bool {
    otf_bpf::features::features().raw_tp_cookies
}

/// The runtime image: code, one probe slot per pidx, condition programs, globals. Probes that
/// share one perf tracepoint attachment are chained (`raw_tp`: whether raw tracepoint programs
/// are loaded, which decides which tracepoints use perf).
pub(crate) fn build_image(
    src: &SourceFile,
    front: &Front,
    res: &Resolved,
    target: i64,
    raw_tp: bool,
) -> RuntimeImage {
    let script = &front.compiled.script;
    let tps = tracepoint_probes(res);
    let mut chain: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for group in otf_tracepoint::tracepoint_chains(&tps, raw_tp, syscall_units(raw_tp)) {
        for w in group
            .windows(2)
            .take(otf_bpf::layout::MAX_CHAIN.saturating_sub(1))
        {
            chain.insert(w[0], w[1]);
        }
    }
    let probes = res
        .probes
        .iter()
        .map(|p| {
            let u = &script.units[p.unit];
            let safe_context = p.attach.safe_context().safe;
            let (line, col) = src.line_col(u.point_span.lo);
            ProbeSlot {
                body: Some(u.body.start),
                entry: u.entry.as_ref().map(|e| e.start),
                cond: u.cond.as_ref().map(|_| p.unit as u32),
                label: format!("probe {} at {}:{line}:{col}", p.pp, src.name()),
                reeval: u.reeval.iter().map(|&c| c as u32).collect(),
                lock_mask: u.lock_mask,
                safe_context,
                is_return: u.point.is_return(),
                chain: chain.get(&p.pidx).copied(),
                deferred: u.deferred,
                pp: p.pp.clone(),
                probefunc: p.probefunc.clone(),
            }
        })
        .collect();
    let cond_code = script
        .units
        .iter()
        .map(|u| u.cond.as_ref().map(|c| c.start).unwrap_or(0))
        .collect();
    RuntimeImage {
        code: script.code.clone(),
        probes,
        cond_code,
        cond_init: vec![false; script.units.len()],
        globals_init: script.globals.iter().map(|g| g.init).collect(),
        maps: otf_codegen::maps::MapSpec::all(&script.globals),
        target_pid: target,
        strings: script.strings.clone(),
    }
}

/// The tracepoint probes as `(pidx, condition, tracepoint)`, the condition as the probe
/// group's entries have it (`groups::entry_of`).
fn tracepoint_probes(res: &Resolved) -> Vec<(u32, Option<u32>, otf_tracepoint::Tracepoint)> {
    res.probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Tracepoint(tp) => {
                Some((p.pidx, p.has_cond.then_some(p.unit as u32), tp.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The syscall dispatch units the runtime has room for when its raw tracepoint programs are
/// loaded (`raw`), else 0 (syscall probes stay perf tracepoints).
fn syscall_units(raw: bool) -> usize {
    if raw && otf_codegen::SYSCALL_REGS.is_some() {
        otf_bpf::layout::SYSCALL_UNITS
    } else {
        0
    }
}

/// Whether `kinds` loads raw tracepoint programs (which decides the chains of the image).
pub(crate) fn raw_loaded(kinds: &[ProgKind]) -> bool {
    kinds.iter().any(|k| {
        matches!(
            k,
            ProgKind::RawTp | ProgKind::SyscallEnter | ProgKind::SyscallExit
        )
    })
}

/// The program kinds the script needs.
pub(crate) fn needed_kinds(res: &Resolved) -> Vec<ProgKind> {
    let mut kinds = Vec::new();
    let mut add = |k: ProgKind| {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    };
    for p in &res.probes {
        match &p.attach {
            Attach::Timer(t) if t.profile => add(ProgKind::PerfEvent),
            Attach::Timer(_) => add(ProgKind::Timer),
            Attach::Tracepoint(tp) => {
                add(ProgKind::Tracepoint);
                if tp.subsystem != "syscalls" && raw_tp_cookies() {
                    add(ProgKind::RawTp);
                }
            }
            // Multi-link programs only where the kernel has the links (probed once): without
            // them, every function gets its own link.
            Attach::Uprobe(_) => {
                add(ProgKind::Uprobe);
                add(ProgKind::Uretprobe);
                if otf_bpf::features::features().uprobe_multi {
                    add(ProgKind::UprobeMulti);
                    add(ProgKind::UretprobeMulti);
                }
            }
            Attach::Kprobe(_) => {
                add(ProgKind::Kprobe);
                add(ProgKind::Kretprobe);
                if otf_bpf::features::features().kprobe_multi {
                    add(ProgKind::KprobeMulti);
                    add(ProgKind::KretprobeMulti);
                }
            }
        }
    }
    // Syscall probes dispatched by number (otf_tracepoint::SyscallDispatch), where raw
    // tracepoints take cookies.
    let dispatch = otf_tracepoint::SyscallDispatch::plan(
        &tracepoint_probes(res),
        raw_tp_cookies() && otf_codegen::SYSCALL_REGS.is_some(),
        otf_tracepoint::min_dispatch(),
        otf_bpf::layout::SYSCALL_UNITS,
    );
    for u in &dispatch.units {
        add(match u.dir {
            otf_tracepoint::SyscallDir::Enter => ProgKind::SyscallEnter,
            otf_tracepoint::SyscallDir::Exit => ProgKind::SyscallExit,
        });
    }
    kinds
}

/// Loads the runtime with the program kinds the script needs; if optional kinds (multi-link
/// and raw tracepoint programs) fail to load, retries without them (with the image rebuilt for
/// that: without raw tracepoints, more probes share perf attachments).
pub(super) fn load_runtime(
    src: &SourceFile,
    front: &Front,
    res: &Resolved,
    target: i64,
) -> Result<Runtime, Failure> {
    let kinds = needed_kinds(res);
    let raw = raw_loaded(&kinds);
    let image = build_image(src, front, res, target, raw);
    let opts = LoadOptions {
        kinds: kinds.clone(),
        ..LoadOptions::default()
    };
    match Runtime::load_with(&image, &opts) {
        Ok(rt) => Ok(rt),
        Err(first) => {
            let optional = [
                ProgKind::RawTp,
                ProgKind::SyscallEnter,
                ProgKind::SyscallExit,
                ProgKind::UprobeMulti,
                ProgKind::UretprobeMulti,
                ProgKind::KprobeMulti,
                ProgKind::KretprobeMulti,
            ];
            let fewer: Vec<_> = kinds
                .into_iter()
                .filter(|k| !optional.contains(k))
                .collect();
            let image = build_image(src, front, res, target, false);
            let opts = LoadOptions {
                kinds: fewer,
                ..LoadOptions::default()
            };
            // The first error is the one that tells: the second load only left things out.
            Runtime::load_with(&image, &opts).map_err(|_| Failure::Runtime {
                what: "cannot load the otf BPF runtime",
                source: first,
            })
        }
    }
}
