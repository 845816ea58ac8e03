//! Probe resolution: compiled units (probe point components) to kernel attachments with pidx.
//!
//! pidx are assigned 0-based in script order: probe statements in order, their
//! comma-separated components in order, and each component's kernel attachments in the order
//! its resolver returns them. `begin` and `end` are not kernel attachments and get none.

use std::fmt;
use std::sync::OnceLock;

use otf_core::{Flavor, Pidx, ProbeType};
use otf_hrtimer::{TimerAttachment, TimerKind};
use otf_script::ast::Span;
use otf_script::diag::Diagnostic;
use otf_script::point::PointKind;
use otf_tracepoint::Tracepoint;

use crate::error::{PointError, Unresolved};

/// The running kernel's function lists, read once per process: a script with several
/// `kernel.function` points (or `otf check -v`) reads tracefs once.
pub fn kernel_symbols() -> Result<&'static otf_kprobes::KernelSymbols, otf_kprobes::ResolveError> {
    static SYMBOLS: OnceLock<Result<otf_kprobes::KernelSymbols, otf_kprobes::ResolveError>> =
        OnceLock::new();
    SYMBOLS
        .get_or_init(otf_kprobes::KernelSymbols::load)
        .as_ref()
        .map_err(Clone::clone)
}

/// One unit to resolve: a component of a probe statement.
#[derive(Clone, Debug)]
pub struct UnitIn {
    /// Index of the unit (its condition id).
    pub unit: usize,
    /// The interpreted point.
    pub kind: PointKind,
    /// Where the point is written.
    pub span: Span,
    /// `?`: dropped with a warning when it resolves to nothing.
    pub optional: bool,
    /// Whether the unit has an `if (COND)`.
    pub has_cond: bool,
}

/// What a kernel attachment is.
#[derive(Clone, Debug)]
pub enum Attach {
    /// A perf cpu-clock timer.
    Timer(TimerAttachment),
    /// A tracepoint.
    Tracepoint(Tracepoint),
    /// An inode uprobe.
    Uprobe(otf_uprobes_inode::UprobeTarget),
    /// A kprobe.
    Kprobe(otf_kprobes::KprobeTarget),
}

impl Attach {
    /// The probe type, as its crate describes it.
    pub fn probe_type(&self) -> &'static ProbeType {
        match self {
            Attach::Timer(_) => &otf_hrtimer::PROBE_TYPE,
            Attach::Tracepoint(_) => &otf_tracepoint::PROBE_TYPE,
            Attach::Uprobe(_) => &otf_uprobes_inode::PROBE_TYPE,
            Attach::Kprobe(_) => &otf_kprobes::PROBE_TYPE,
        }
    }

    /// The probe group name, as its crate names it.
    pub fn group(&self) -> &'static str {
        self.probe_type().name
    }

    /// Whether a body of this probe may wake otf itself when it flips a condition, and why:
    /// the fact its probe crate states (and its `ProbeGroup::otf_safe_context` returns).
    pub fn safe_context(&self) -> otf_core::SafeContext {
        self.probe_type().safe_context
    }

    /// Whether this is a `.return` probe.
    fn ret(&self) -> bool {
        match self {
            Attach::Uprobe(t) => t.ret,
            Attach::Kprobe(t) => t.ret,
            Attach::Timer(_) | Attach::Tracepoint(_) => false,
        }
    }

    /// The flavor (debug vocabulary).
    pub fn flavor(&self) -> Flavor {
        self.probe_type().flavor(self.ret())
    }
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attach::Timer(t) => t.fmt(f),
            Attach::Tracepoint(t) => write!(f, "tracepoint {t}"),
            Attach::Uprobe(u) => write!(
                f,
                "{} {}:{} (offset {:#x})",
                if u.ret { "uretprobe" } else { "uprobe" },
                u.path.display(),
                u.symbol,
                u.file_offset
            ),
            Attach::Kprobe(k) => write!(
                f,
                "{} {}{}",
                if k.ret { "kretprobe" } else { "kprobe" },
                k.symbol,
                k.module
                    .as_ref()
                    .map(|m| format!(" [{m}]"))
                    .unwrap_or_default()
            ),
        }
    }
}

/// One resolved kernel attachment.
#[derive(Clone, Debug)]
pub struct ProbeInfo {
    /// Its pidx.
    pub pidx: Pidx,
    /// The unit it comes from.
    pub unit: usize,
    /// Whether its unit has a condition.
    pub has_cond: bool,
    /// What to attach.
    pub attach: Attach,
    /// `pp()`: the probe point, expanded (`kernel.trace("sched:sched_switch")`).
    pub pp: String,
    /// `probefunc()`: the function of a function probe, else empty.
    pub probefunc: String,
}

/// The result of resolving a script.
#[derive(Debug, Default)]
pub struct Resolved {
    /// Every kernel attachment, by pidx.
    pub probes: Vec<ProbeInfo>,
    /// Warnings (dropped optional points).
    pub warnings: Vec<Diagnostic>,
}

impl Resolved {
    /// The pidx of the attachments of `unit`.
    pub fn pidx_of_unit(&self, unit: usize) -> impl Iterator<Item = Pidx> + '_ {
        self.probes
            .iter()
            .filter(move |p| p.unit == unit)
            .map(|p| p.pidx)
    }
}

/// `s` as a SystemTap string literal.
pub(crate) fn quoted(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The kernel attachments of one point, as `(attach, pp, probefunc)`.
fn resolve_point(
    kind: &PointKind,
    online: &[u32],
    warnings: &mut Vec<String>,
) -> Result<Vec<(Attach, String, String)>, PointError> {
    match kind {
        PointKind::Begin | PointKind::End => Ok(Vec::new()),
        PointKind::Timer { period_ns, text } => {
            if *period_ns < otf_hrtimer::MIN_PERIOD_NS {
                return Err(PointError::TimerTooShort {
                    period_ns: *period_ns,
                });
            }
            Ok(otf_hrtimer::resolve_on(
                TimerKind::Periodic {
                    period_ns: *period_ns,
                },
                online,
            )
            .into_iter()
            .map(|a| (Attach::Timer(a), text.clone(), String::new()))
            .collect())
        }
        PointKind::TimerProfile => Ok(otf_hrtimer::resolve_on(TimerKind::Profile, online)
            .into_iter()
            .map(|a| (Attach::Timer(a), "timer.profile".to_string(), String::new()))
            .collect()),
        PointKind::KernelTrace { pattern } => {
            let tps = otf_tracepoint::resolve(pattern)?;
            if tps.is_empty() {
                return Err(PointError::NoTracepoint {
                    pattern: pattern.clone(),
                });
            }
            Ok(tps
                .into_iter()
                .map(|tp| {
                    let pp = format!("kernel.trace({})", quoted(&tp.to_string()));
                    (Attach::Tracepoint(tp), pp, String::new())
                })
                .collect())
        }
        PointKind::KernelFunction { pattern, ret } => {
            let ts = kernel_symbols()?.targets(pattern, *ret)?;
            Ok(ts
                .into_iter()
                .map(|t| {
                    let pp = format!(
                        "kernel.function({}){}",
                        quoted(&t.symbol),
                        if t.ret { ".return" } else { "" }
                    );
                    let func = t.symbol.clone();
                    (Attach::Kprobe(t), pp, func)
                })
                .collect())
        }
        PointKind::ProcessFunction { path, pattern, ret } => {
            let (ts, skipped) = otf_uprobes_inode::resolve_checked(path, pattern, *ret)?;
            if let Some(first) = skipped.first() {
                // One warning for all, as for unprobeable kernel functions.
                let names: Vec<&str> = skipped.iter().take(5).map(|u| u.symbol.as_str()).collect();
                warnings.push(format!(
                    "{} function{} matching `{pattern}` in {} cannot be probed and {} skipped ({}): {}{}",
                    skipped.len(),
                    if skipped.len() == 1 { "" } else { "s" },
                    ts.first().map_or(path.clone(), |t| t.path.display().to_string()),
                    if skipped.len() == 1 { "is" } else { "are" },
                    first.reason,
                    names.join(", "),
                    if skipped.len() > names.len() { ", ..." } else { "" },
                ));
            }
            Ok(ts
                .into_iter()
                .map(|t| {
                    let pp = format!(
                        "process({}).function({}){}",
                        quoted(&t.path.display().to_string()),
                        quoted(&t.symbol),
                        if t.ret { ".return" } else { "" }
                    );
                    let func = t.symbol.clone();
                    (Attach::Uprobe(t), pp, func)
                })
                .collect())
        }
    }
}

/// Resolves every unit; an error names the unit's point. A point marked optional (`?`) that
/// does not resolve is dropped with a warning.
pub fn resolve(units: &[UnitIn]) -> Result<Resolved, Vec<Unresolved>> {
    let online = otf_hrtimer::sys::online_cpus();
    let mut out = Resolved::default();
    let mut errors = Vec::new();
    let mut next: Pidx = 0;
    for u in units {
        let mut warnings = Vec::new();
        let r = resolve_point(&u.kind, &online, &mut warnings);
        out.warnings
            .extend(warnings.into_iter().map(|w| Diagnostic::warning(w, u.span)));
        match r {
            Ok(list) if list.is_empty() && u.kind.is_kernel() => {
                // Resolvers report "no match" as errors; an empty list is the same thing.
                let error = PointError::MatchesNothing {
                    point: u.kind.clone(),
                };
                if u.optional {
                    out.warnings.push(Diagnostic::warning(
                        format!("{error}; optional point dropped"),
                        u.span,
                    ));
                } else {
                    errors.push(Unresolved {
                        span: u.span,
                        error,
                    });
                }
            }
            Ok(list) => {
                for (attach, pp, probefunc) in list {
                    out.probes.push(ProbeInfo {
                        pidx: next,
                        unit: u.unit,
                        has_cond: u.has_cond,
                        attach,
                        pp,
                        probefunc,
                    });
                    next += 1;
                }
            }
            Err(error) if u.optional => out.warnings.push(Diagnostic::warning(
                format!("{error}; optional point dropped"),
                u.span,
            )),
            Err(error) => errors.push(Unresolved {
                span: u.span,
                error,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Expands unit-level affection pairs `(writer unit, affected unit)` to sorted, deduplicated
/// `(I, J)` pidx pairs: every pidx of the writer unit by every pidx of the affected unit. (Every
/// unit of a statement shares its body, so the writers cover all pidx of the statement.)
pub fn expand_affection(res: &Resolved, pairs: &[(usize, usize)]) -> Vec<(Pidx, Pidx)> {
    let mut out: Vec<(Pidx, Pidx)> = pairs
        .iter()
        .flat_map(|&(writer, unit)| {
            res.pidx_of_unit(writer)
                .flat_map(move |i| res.pidx_of_unit(unit).map(move |j| (i, j)))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
