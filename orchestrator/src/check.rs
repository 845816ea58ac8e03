//! `otf check`: compile and resolve without attaching, and print what would be attached.
//!
//! Output (stdout), one line per kernel attachment, then one line per affection pair:
//!
//! ```text
//! probe 0 timer.ms(100) group=hrtimer attach="bpf timer period 100000000 ns" otf=yes notify=immediate
//! probe 1 kernel.trace("syscalls:sys_enter_read") group=tracepoint attach="tracepoint syscalls:sys_enter_read" otf=yes notify=immediate
//! probe 0 can affect condition of probe 1
//! ```

use std::fmt::Write as _;
use std::io::Write as _;

use otf_core::SafeContext;
use otf_script::diag::{render_all, SourceFile};
use otf_script::point::PointKind;

use crate::cli::CheckArgs;
use crate::frontend::{self, Front};
use crate::resolve::{self, Attach, Resolved};
use crate::{load_source, Failure};

/// How a condition flip made by a body of `a` reaches user space: `immediate` (the body
/// wakes otf) or `timer` (the background timer finds it).
fn notify(c: SafeContext) -> &'static str {
    if c.safe {
        "immediate"
    } else {
        "timer"
    }
}

/// Compiles and resolves `src`; on failure, the compiler's diagnostics or the points that do
/// not resolve, rendered against `src` where the failure is printed. Warnings are printed to
/// stderr.
pub fn compile_and_resolve(src: &SourceFile) -> Result<(Front, Resolved), Failure> {
    let front = frontend::compile(src).map_err(|diags| Failure::Diagnostics {
        diags,
        file: Box::new(src.clone()),
    })?;
    let resolved = resolve::resolve(&front.units).map_err(|errors| Failure::Unresolved {
        errors,
        file: Box::new(src.clone()),
    })?;
    let mut warnings = front.warnings.clone();
    warnings.extend(resolved.warnings.iter().cloned());
    if !warnings.is_empty() {
        eprint!("{}", render_all(&warnings, src));
    }
    Ok((front, resolved))
}

/// How the attachment of `a` is made on this kernel (`otf check -v`), from the features
/// probed at run time (`otf_bpf::features`).
fn mechanism(a: &Attach, f: &otf_bpf::features::Features) -> &'static str {
    match a {
        Attach::Timer(t) if t.profile => "a perf cpu-clock event, enabled and disabled by ioctl",
        Attach::Timer(_) => "a BPF timer, started and cancelled",
        Attach::Tracepoint(tp) if tp.subsystem != "syscalls" && f.raw_tp_cookies => {
            "a raw tracepoint link with a cookie"
        }
        Attach::Tracepoint(_) if f.raw_tp_cookies => "a perf tracepoint link",
        Attach::Tracepoint(_) => {
            "a perf tracepoint link (no raw tracepoint cookies: kernel before 6.10)"
        }
        Attach::Uprobe(_) if f.uprobe_multi => "a uprobe_multi link per file and condition",
        Attach::Uprobe(_) => "a perf uprobe link per function (no uprobe_multi: kernel before 6.6)",
        Attach::Kprobe(_) if f.kprobe_multi => {
            "a kprobe_multi link when functions share a condition, else a perf kprobe link"
        }
        Attach::Kprobe(_) => {
            "a perf kprobe link per function (no kprobe_multi: kernel before 5.18 or without CONFIG_FPROBE)"
        }
    }
}

/// The text `otf check` prints for a resolved script.
pub fn report(front: &Front, res: &Resolved, verbose: bool) -> String {
    let mut out = String::new();
    for p in &res.probes {
        let _ = writeln!(
            out,
            "probe {} {} group={} attach=\"{}\" otf=yes notify={}",
            p.pidx,
            p.pp,
            p.attach.group(),
            p.attach,
            notify(p.attach.safe_context())
        );
    }
    if verbose {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            let f = otf_bpf::features::features();
            for p in &res.probes {
                let _ = writeln!(out, "# probe {}: {}", p.pidx, mechanism(&p.attach, &f));
            }
        } else {
            let _ = writeln!(
                out,
                "# mechanisms not shown: probing the kernel's features needs root"
            );
        }
        let mut types: Vec<&'static str> = Vec::new();
        for p in &res.probes {
            let t = p.attach.probe_type();
            if !types.contains(&t.name) {
                types.push(t.name);
                let _ = writeln!(
                    out,
                    "# {}: notify={}: {}",
                    t.name,
                    notify(t.safe_context),
                    t.safe_context.reason
                );
            }
        }
        let mut kprobes = false;
        for u in &front.units {
            if !u.kind.is_kernel() {
                let _ = writeln!(out, "# {} runs in user space (no pidx)", u.kind);
            }
            if let PointKind::KernelFunction { pattern, ret } = &u.kind {
                kprobes = true;
                if let Ok(r) =
                    crate::resolve::kernel_symbols().and_then(|k| k.resolve(pattern, *ret))
                {
                    let _ = writeln!(
                        out,
                        "# {}: {} function(s), {} matching symbol(s) skipped (the kernel refuses to probe them)",
                        u.kind,
                        r.targets.len(),
                        r.skipped
                    );
                }
            }
        }
        if kprobes {
            if let Err(msg) = otf_kprobes::kprobes_available() {
                let _ = writeln!(out, "# note: {msg}");
            }
        }
    }
    for (i, j) in resolve::expand_affection(res, &front.affection) {
        let _ = writeln!(out, "probe {i} can affect condition of probe {j}");
    }
    out
}

/// Generates the handler programs `otf run` would load on this kernel, so that a script
/// `otf check` accepts is one the code generator compiles. With `listing`, returns each as
/// `bpftool prog dump xlated` would print it.
fn generated(
    src: &SourceFile,
    front: &Front,
    res: &Resolved,
    listing: bool,
) -> Result<String, Failure> {
    let kinds = crate::run::needed_kinds(res);
    let raw = crate::run::raw_loaded(&kinds);
    let image = crate::run::build_image(src, front, res, 0, raw);
    let mut out = String::new();
    for kind in kinds {
        let prog = otf_codegen::generate(&image, kind, &otf_codegen::KernelInfo::default())
            .map_err(|source| Failure::Codegen {
                handler: kind.name(),
                source,
            })?;
        if listing {
            let _ = writeln!(
                out,
                "# handler {} ({} instructions)",
                kind.name(),
                prog.insns.len()
            );
            out.push_str(&otf_codegen::dump(&prog, &|p| {
                image
                    .probes
                    .get(p as usize)
                    .map(|s| s.label.clone())
                    .unwrap_or_default()
            }));
        }
    }
    Ok(out)
}

/// Runs `otf check`.
pub fn check(args: &CheckArgs) -> Result<i32, Failure> {
    let src = load_source(&args.source)?;
    let (front, res) = compile_and_resolve(&src)?;
    let mut text = report(&front, &res, args.verbose > 0);
    text.push_str(&generated(&src, &front, &res, args.bpf)?);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    Ok(0)
}
