//! A readable text rendering of scheduler steps, one event per block:
//!
//! ```text
//! t=0ms          Start
//!                  run begin
//!                  drain output
//!                  need_refresh=0
//!                  eval [c0=false c1=true]
//!                  hrtimer start: start-disarmed pidx 0 ok   | otf: not starting (hrtimer) pidx 0
//!                  hrtimer start: arm pidx 1 ok
//!                  -> Running
//! ```
//!
//! Used by the snapshot tests and usable for `-v` logs.

use std::fmt::Write as _;
use std::time::Duration;

use crate::plan::{Op, Phase};
use crate::scheduler::{Event, Step};

const INDENT: &str = "                 ";

/// Format `d` as `t=…ms` (milliseconds, with microseconds when not whole).
pub fn format_time(d: Duration) -> String {
    let us = d.as_micros();
    if us % 1000 == 0 {
        format!("t={}ms", us / 1000)
    } else {
        format!("t={}.{:03}ms", us / 1000, us % 1000)
    }
}

/// Format condition values as `[c0=true c1=false]`.
pub fn format_conditions(conds: &[bool]) -> String {
    let inner: Vec<String> = conds
        .iter()
        .enumerate()
        .map(|(i, v)| format!("c{i}={v}"))
        .collect();
    format!("[{}]", inner.join(" "))
}

/// Render one step as lines (without indentation). Releases that succeeded share one line.
pub fn render_step(step: &Step) -> Vec<String> {
    match step {
        Step::Enter(s) => vec![format!("-> {s}")],
        Step::RunBegin => vec!["run begin".into()],
        Step::RunEnd => vec!["run end".into()],
        Step::NeedRefresh(v) => vec![format!("need_refresh={}", u8::from(*v))],
        Step::RetryDue => vec!["retry due (failed operations)".into()],
        Step::DrainOutput => vec!["drain output".into()],
        Step::EvalConditions(c) => vec![format!("eval {}", format_conditions(c))],
        Step::NoChange => vec!["no change".into()],
        Step::Idle => vec!["idle".into()],
        Step::Ignored(r) => vec![format!("ignored: {r}")],
        Step::StartFailed => vec!["START FAILED: tearing down".into()],
        Step::Apply {
            group,
            plan,
            report,
        } => {
            if plan.phase == Phase::Shutdown {
                // One line for the releases that worked, one per failure.
                let mut lines = Vec::new();
                let ok: Vec<String> = plan
                    .actions
                    .iter()
                    .filter(|a| report.error_for(a).is_none())
                    .map(|a| a.pidx.to_string())
                    .collect();
                if !ok.is_empty() {
                    lines.push(format!(
                        "{group} {}: {} pidx {} ok",
                        plan.phase,
                        Op::Release,
                        ok.join(",")
                    ));
                }
                for a in &plan.actions {
                    if let Some(e) = report.error_for(a) {
                        lines.push(format!(
                            "{group} {}: {} pidx {} FAILED: {e}",
                            plan.phase, a.op, a.pidx
                        ));
                    }
                }
                return lines;
            }
            plan.actions
                .iter()
                .map(|a| {
                    let outcome = match report.error_for(a) {
                        None => "ok".to_string(),
                        Some(e) => format!("FAILED: {e}"),
                    };
                    let mut line =
                        format!("{group} {}: {} pidx {} {outcome}", plan.phase, a.op, a.pidx);
                    if let Some(d) = &a.decision {
                        let _ = write!(line, "   | {d}");
                    }
                    line
                })
                .collect()
        }
    }
}

/// An accumulating text timeline.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    text: String,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Append an event and the steps it produced.
    pub fn record(&mut self, now: Duration, event: &Event, steps: &[Step]) {
        let _ = writeln!(self.text, "{:<14} {event}", format_time(now));
        for step in steps {
            for line in render_step(step) {
                let _ = writeln!(self.text, "{INDENT}{line}");
            }
        }
    }

    /// Append a free-form note (e.g. what a simulated probe body did).
    pub fn note(&mut self, now: Duration, text: &str) {
        let _ = writeln!(self.text, "{:<14} . {text}", format_time(now));
    }

    /// The text so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text.
    pub fn into_string(self) -> String {
        self.text
    }
}
