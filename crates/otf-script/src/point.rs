//! Probe points interpreted: the families and their arguments (`timer.ms(5)`, `kernel.trace("x")`, ...).

use std::fmt;

use crate::ast::{Component, Literal, ProbePoint, Span};
use crate::diag::Diagnostic;

/// What a probe point means, once its dotted components are interpreted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PointKind {
    /// `begin`: runs once in user space at start.
    Begin,
    /// `end`: runs once in user space at shutdown.
    End,
    /// `timer.ns/us/ms/s/hz(N)`: a periodic timer on one CPU.
    Timer {
        /// The period in nanoseconds (at least 1).
        period_ns: u64,
        /// The point in canonical form, e.g. `timer.ms(5)`.
        text: String,
    },
    /// `timer.profile`: the profiling tick, on every CPU.
    TimerProfile,
    /// `kernel.trace("PATTERN")`: tracepoints (`SUBSYS:NAME` or `NAME`, globs allowed).
    KernelTrace {
        /// The tracepoint name or glob.
        pattern: String,
    },
    /// `kernel.function("PATTERN")[.call|.return]`: kprobes or kretprobes.
    KernelFunction {
        /// The function name or glob.
        pattern: String,
        /// `.return`: a return probe.
        ret: bool,
    },
    /// `process("PATH").function("PATTERN")[.call|.return]`: inode uprobes or uretprobes.
    ProcessFunction {
        /// The executable or library path as written (resolved later).
        path: String,
        /// The function name or glob.
        pattern: String,
        /// `.return`: a return probe.
        ret: bool,
    },
}

impl PointKind {
    /// `true` for points that fire in the kernel (everything but `begin` and `end`).
    pub fn is_kernel(&self) -> bool {
        !matches!(self, PointKind::Begin | PointKind::End)
    }

    /// `true` for `kernel.function` and `process(...).function` points (entry or return).
    pub fn is_function_probe(&self) -> bool {
        matches!(
            self,
            PointKind::KernelFunction { .. } | PointKind::ProcessFunction { .. }
        )
    }

    /// `true` for `.return` function probes.
    pub fn is_return(&self) -> bool {
        matches!(
            self,
            PointKind::KernelFunction { ret: true, .. }
                | PointKind::ProcessFunction { ret: true, .. }
        )
    }

    /// A short name of the point's family: `begin`, `end`, `timer`, `timer.profile`,
    /// `kernel.trace`, `kernel.function`, `process.function`.
    pub fn family(&self) -> &'static str {
        match self {
            PointKind::Begin => "begin",
            PointKind::End => "end",
            PointKind::Timer { .. } => "timer",
            PointKind::TimerProfile => "timer.profile",
            PointKind::KernelTrace { .. } => "kernel.trace",
            PointKind::KernelFunction { .. } => "kernel.function",
            PointKind::ProcessFunction { .. } => "process.function",
        }
    }
}

/// Write a string literal with C escapes.
fn quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for PointKind {
    /// The point in canonical form, as `pp()` prints it: `begin`, `timer.ms(5)`,
    /// `kernel.trace("sched:sched_switch")`, `process("/bin/ls").function("main").return`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointKind::Begin => f.write_str("begin"),
            PointKind::End => f.write_str("end"),
            PointKind::Timer { text, .. } => f.write_str(text),
            PointKind::TimerProfile => f.write_str("timer.profile"),
            PointKind::KernelTrace { pattern } => {
                f.write_str("kernel.trace(")?;
                quoted(f, pattern)?;
                f.write_str(")")
            }
            PointKind::KernelFunction { pattern, ret } => {
                f.write_str("kernel.function(")?;
                quoted(f, pattern)?;
                f.write_str(if *ret { ").return" } else { ")" })
            }
            PointKind::ProcessFunction { path, pattern, ret } => {
                f.write_str("process(")?;
                quoted(f, path)?;
                f.write_str(").function(")?;
                quoted(f, pattern)?;
                f.write_str(if *ret { ").return" } else { ")" })
            }
        }
    }
}

/// The timer units: name as written, canonical name, nanoseconds per unit.
const TIMER_UNITS: &[(&str, &str, u64)] = &[
    ("ns", "ns", 1),
    ("nsec", "ns", 1),
    ("us", "us", 1_000),
    ("usec", "us", 1_000),
    ("ms", "ms", 1_000_000),
    ("msec", "ms", 1_000_000),
    ("s", "s", 1_000_000_000),
    ("sec", "s", 1_000_000_000),
];

/// The span of the components' names from the first to `comps[last]` (arguments of the
/// last one excluded).
fn family_span(comps: &[Component], last: usize) -> Span {
    comps[0].name.span.to(comps[last].name.span)
}

fn family_text(comps: &[Component], last: usize) -> String {
    comps[..=last]
        .iter()
        .map(|c| c.name.name.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

/// Levenshtein distance (for "did you mean" hints).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The families, as their dotted names (for "did you mean" hints).
const FAMILIES: &[&str] = &[
    "begin",
    "end",
    "timer.ns",
    "timer.us",
    "timer.ms",
    "timer.s",
    "timer.hz",
    "timer.profile",
    "kernel.trace",
    "kernel.function",
    "process.function",
];

fn unknown_family(comps: &[Component], last: usize) -> Diagnostic {
    let text = family_text(comps, last);
    let best = FAMILIES
        .iter()
        .map(|f| (distance(&text, f), *f))
        .min()
        .filter(|(d, _)| *d <= 2);
    let d = Diagnostic::error(
        format!("unknown probe point family `{text}`"),
        family_span(comps, last),
    );
    match best {
        Some((_, f)) => d.with_hint(format!("did you mean `{f}`?")),
        None => d.with_hint(
            "supported points: begin, end, timer.ns/us/ms/s/hz(N), timer.profile, \
             kernel.trace(\"NAME\"), kernel.function(\"NAME\")[.call|.return], \
             process(\"PATH\").function(\"NAME\")[.call|.return]",
        ),
    }
}

fn no_arg(c: &Component) -> Result<(), Diagnostic> {
    match &c.arg {
        None => Ok(()),
        Some(_) => Err(Diagnostic::error(
            format!("probe point component `{}` takes no argument", c.name.name),
            c.span,
        )),
    }
}

fn str_arg(c: &Component, what: &str) -> Result<String, Diagnostic> {
    match &c.arg {
        Some(Literal::Str(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Literal::Str(_)) => Err(Diagnostic::error(
            format!("`{}` needs a non-empty {what}", c.name.name),
            c.span,
        )),
        Some(Literal::Int(_)) => Err(Diagnostic::error(
            format!(
                "`{}` needs a string argument ({what}), not a number",
                c.name.name
            ),
            c.span,
        )
        .with_hint(format!("write it as `{}(\"...\")`", c.name.name))),
        None => Err(Diagnostic::error(
            format!("`{}` needs a string argument ({what})", c.name.name),
            c.span,
        )
        .with_hint(format!("write it as `{}(\"...\")`", c.name.name))),
    }
}

/// Nothing may follow component `i` (the last one a family accepts).
fn end_at(comps: &[Component], i: usize) -> Result<(), Diagnostic> {
    match comps.get(i + 1) {
        None => Ok(()),
        Some(extra) => Err(Diagnostic::error(
            format!(
                "unsupported probe point component `.{}` after `{}`",
                extra.name.name,
                family_text(comps, i)
            ),
            extra.span,
        )),
    }
}

/// `.call` / `.return` (or nothing) after the `function(...)` component at `i`.
fn call_or_return(comps: &[Component], i: usize) -> Result<bool, Diagnostic> {
    match comps.get(i + 1) {
        None => Ok(false),
        Some(c) if c.name.name == "call" || c.name.name == "return" => {
            no_arg(c)?;
            end_at(comps, i + 1)?;
            Ok(c.name.name == "return")
        }
        Some(c) => Err(Diagnostic::error(
            format!(
                "unsupported probe point component `.{}` after `{}`",
                c.name.name,
                family_text(comps, i)
            ),
            c.span,
        )
        .with_hint("function probes take `.call` or `.return`")),
    }
}

fn timer(comps: &[Component], point: &ProbePoint) -> Result<PointKind, Diagnostic> {
    no_arg(&comps[0])?;
    let Some(u) = comps.get(1) else {
        return Err(Diagnostic::error(
            "`timer` needs a unit: timer.ns(N), timer.us(N), timer.ms(N), timer.s(N), timer.hz(N) or timer.profile",
            point.span,
        ));
    };
    let unit = u.name.name.as_str();
    if unit == "profile" {
        no_arg(u)?;
        end_at(comps, 1)?;
        return Ok(PointKind::TimerProfile);
    }
    let per = TIMER_UNITS.iter().find(|(n, _, _)| *n == unit);
    if per.is_none() && unit != "hz" {
        return Err(Diagnostic::error(
            format!("unknown timer unit `{unit}` in `timer.{unit}`"),
            u.name.span,
        )
        .with_hint(
            "valid units: ns, us, ms, s, hz (and nsec, usec, msec, sec), or timer.profile",
        ));
    }
    end_at(comps, 1)?;
    let n = match &u.arg {
        Some(Literal::Int(n)) => *n,
        Some(Literal::Str(_)) => {
            return Err(Diagnostic::error(
                format!("`timer.{unit}` needs an integer argument, not a string"),
                u.span,
            ))
        }
        None => {
            return Err(Diagnostic::error(
                format!("`timer.{unit}` needs an integer argument"),
                u.span,
            )
            .with_hint(format!("e.g. `timer.{unit}(100)`")))
        }
    };
    if n <= 0 {
        return Err(Diagnostic::error(
            format!("timer period must be positive, got `timer.{unit}({n})`"),
            u.span,
        ));
    }
    match per {
        None => {
            if n > 1_000_000_000 {
                return Err(Diagnostic::error(
                    format!("timer frequency {n} Hz is out of range (1 to 1000000000)"),
                    u.span,
                ));
            }
            Ok(PointKind::Timer {
                period_ns: 1_000_000_000 / n as u64,
                text: format!("timer.hz({n})"),
            })
        }
        Some((_, canon, mult)) => {
            let period_ns = (n as u64).checked_mul(*mult).ok_or_else(|| {
                Diagnostic::error(
                    format!("timer period `timer.{unit}({n})` overflows 64-bit nanoseconds"),
                    u.span,
                )
            })?;
            Ok(PointKind::Timer {
                period_ns,
                text: format!("timer.{canon}({n})"),
            })
        }
    }
}

/// Interpret a probe point. Errors name the point and point at the offending component.
pub fn interpret(p: &ProbePoint) -> Result<PointKind, Diagnostic> {
    let comps = &p.components[..];
    let Some(first) = comps.first() else {
        return Err(Diagnostic::error("empty probe point", p.span));
    };
    match first.name.name.as_str() {
        "begin" | "end" => {
            if first.arg.is_some() {
                return Err(Diagnostic::error(
                    format!(
                        "`{}(N)` (sequence numbers) is not supported",
                        first.name.name
                    ),
                    first.span,
                ));
            }
            if comps.len() > 1 {
                return Err(unknown_family(comps, 1));
            }
            Ok(if first.name.name == "begin" {
                PointKind::Begin
            } else {
                PointKind::End
            })
        }
        "timer" => timer(comps, p),
        "kernel" => {
            no_arg(first)?;
            let Some(c) = comps.get(1) else {
                return Err(unknown_family(comps, 0));
            };
            match c.name.name.as_str() {
                "trace" => {
                    let pattern = str_arg(c, "tracepoint name")?;
                    end_at(comps, 1)?;
                    Ok(PointKind::KernelTrace { pattern })
                }
                "function" => {
                    let pattern = str_arg(c, "function name")?;
                    let ret = call_or_return(comps, 1)?;
                    Ok(PointKind::KernelFunction { pattern, ret })
                }
                _ => Err(unknown_family(comps, 1)),
            }
        }
        "process" => {
            let path = match &first.arg {
                Some(Literal::Str(s)) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(Diagnostic::error(
                        "`process` needs the executable's path as a string argument",
                        first.span,
                    )
                    .with_hint("e.g. `process(\"/usr/bin/app\").function(\"main\")`"))
                }
            };
            let Some(c) = comps.get(1) else {
                return Err(Diagnostic::error(
                    "`process(PATH)` alone is not a probe point: add `.function(\"NAME\")`",
                    p.span,
                ));
            };
            match c.name.name.as_str() {
                "function" => {
                    let pattern = str_arg(c, "function name")?;
                    let ret = call_or_return(comps, 1)?;
                    Ok(PointKind::ProcessFunction { path, pattern, ret })
                }
                _ => Err(unknown_family(comps, 1)),
            }
        }
        _ => Err(unknown_family(comps, comps.len() - 1)),
    }
}
