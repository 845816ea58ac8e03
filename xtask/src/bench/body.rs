//! `body-cost`: what an armed probe's body costs per hit, otf against bpftrace running the same
//! bodies on the same tracepoint, in one run with the variants alternating.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::{cprog, err_path, getppid_loop, measure_with, Ctx, Options, Tracer, Variant, READY};

/// The probed tracepoint, as otf and as bpftrace name it.
const TP_OTF: &str = "kernel.trace(\"syscalls:sys_enter_getppid\")";
const TP_BT: &str = "tracepoint:syscalls:sys_enter_getppid";

/// What the printf bodies print per hit (the lines counted after each measurement).
const HIT: &str = "otf-bench-hit";

/// One row of the summary: a body, and the variants that run it in otf and in bpftrace.
struct Row {
    what: &'static str,
    otf: Option<usize>,
    bpftrace: Option<usize>,
}

/// otf's script for a body: `global GLOBALS`, a begin probe printing [`READY`], and `PROBE`
/// (the tracepoint, then `tail`: an optional condition and the body).
pub(super) fn otf_script(globals: &str, tail: &str) -> String {
    format!(
        "global {globals}\n\
         probe begin {{ println(\"{READY}\") }}\n\
         probe {TP_OTF} {tail}\n"
    )
}

/// bpftrace's program for a body: BEGIN runs `pre`, prints [`READY`] and runs `post`, then the
/// tracepoint with `tail` (an optional predicate and the body).
pub(super) fn bt_program(pre: &str, post: &str, tail: &str) -> String {
    format!("BEGIN {{ {pre}printf(\"{READY}\\n\"); {post}}} {TP_BT} {tail}")
}

/// A body as each tool runs it.
pub(super) struct Body {
    /// Its row in the summary.
    pub what: &'static str,
    /// The otf variant's name.
    pub otf_name: &'static str,
    /// Extra arguments of `otf run`.
    pub otf_args: &'static [&'static str],
    /// otf's script.
    pub otf_script: String,
    /// The bpftrace variant's name.
    pub bt_name: &'static str,
    /// bpftrace's program.
    pub bt_program: String,
    /// Whether it prints per hit (its output then goes to a file).
    pub prints: bool,
    /// Text that otf's output must contain once it has stopped (its exit output), each string
    /// somewhere; checked after every measurement when not empty (the output then goes to a
    /// file).
    pub otf_exit: &'static [&'static str],
    /// The same for bpftrace.
    pub bt_exit: &'static [&'static str],
}

/// The bodies. otf's locals and bpftrace's `$` variables are 64-bit integers in both; the loop
/// starts from pid() so that no compiler can fold it to a constant (bpftrace compiles `while`
/// with loop unrolling disabled: 20 real iterations in both).
fn bodies() -> Vec<Body> {
    vec![
        Body {
            what: "n++ (bpftrace @n = count())",
            otf_name: "otf, n++",
            otf_args: &[],
            otf_script: otf_script("n", "{ n++ }"),
            bt_name: "bpftrace, @n = count()",
            bt_program: bt_program("", "", "{ @n = count() }"),
            prints: false,
            otf_exit: &[],
            bt_exit: &[],
        },
        Body {
            what: "20-iteration loop, then a sum",
            otf_name: "otf, 20-iteration loop, sum",
            otf_args: &[],
            otf_script: otf_script(
                "s",
                "{ x = pid(); for (i = 0; i < 20; i++) x = (x ^ i) * 3; s += x }",
            ),
            bt_name: "bpftrace, 20-iteration while, sum()",
            bt_program: bt_program(
                "",
                "",
                "{ $x = pid; $i = 0; while ($i < 20) { $x = ($x ^ $i) * 3; $i++; } \
                 @s = sum($x) }",
            ),
            prints: false,
            otf_exit: &[],
            bt_exit: &[],
        },
        Body {
            what: "printf per hit (to a file)",
            otf_name: "otf, printf to a file",
            otf_args: &[],
            otf_script: otf_script("n", &format!("{{ printf(\"{HIT} %d\\n\", pid()) }}")),
            bt_name: "bpftrace -B full, printf to a file",
            // With -B full the ready line would wait in stdio's buffer until 8 KiB of output
            // follow it: a line of 8192 spaces pushes it out.
            bt_program: bt_program(
                "",
                "printf(\"%8192s\\n\", \"\"); ",
                &format!("{{ printf(\"{HIT} %d\\n\", pid) }}"),
            ),
            prints: true,
            otf_exit: &[],
            bt_exit: &[],
        },
        Body {
            what: "condition false, probe armed (otf --no-otf `if (on)`; bpftrace /@on/, a map)",
            otf_name: "otf --no-otf, if (on), on = 0 (armed)",
            otf_args: &["--no-otf"],
            otf_script: otf_script("on = 0, n", "if (on) { n++ }"),
            bt_name: "bpftrace, predicate /@on/, @on = 0",
            bt_program: bt_program("@on = 0; ", "", "/@on/ { @n = count() }"),
            prints: false,
            otf_exit: &[],
            bt_exit: &[],
        },
        Body {
            what: "condition false: otf disarmed; bpftrace /0/ (a constant, its cheapest)",
            otf_name: "otf, if (on), on = 0 (disarmed)",
            otf_args: &[],
            otf_script: otf_script("on = 0, n", "if (on) { n++ }"),
            bt_name: "bpftrace, predicate /0/",
            bt_program: bt_program("", "", "/0/ { @n = count() }"),
            prints: false,
            otf_exit: &[],
            bt_exit: &[],
        },
    ]
}

/// Lines of `text` that start with [`HIT`].
fn count_hits(text: &str) -> u64 {
    text.lines().filter(|l| l.starts_with(HIT)).count() as u64
}

/// Output records a tracer reported lost in `text`: otf's `WARNING: N output record(s) lost`
/// and bpftrace's `Lost N events`, summed.
fn lost_records(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let n = if let Some(r) = l.strip_prefix("WARNING: ") {
                r.strip_suffix(" output record(s) lost: the ring buffer was full")
                    .or_else(|| r.strip_suffix(" output record(s) lost"))?
            } else {
                l.strip_prefix("Lost ")?.strip_suffix(" events")?
            };
            n.trim().parse::<u64>().ok()
        })
        .sum()
}

/// otf's added ns over bpftrace's, as a ratio: `n/a` unless bpftrace added something, and `0`
/// when otf added nothing (a disarmed probe's median can land below the baseline's).
fn ratio_text(otf: f64, bpftrace: f64) -> String {
    if !(otf.is_finite() && bpftrace.is_finite()) || bpftrace <= 0.0 {
        "n/a".into()
    } else if otf <= 0.0 {
        "0".into()
    } else if otf / bpftrace >= 10.0 {
        format!("{:.0}", otf / bpftrace)
    } else {
        format!("{:.2}", otf / bpftrace)
    }
}

/// The summary: per body, the added ns of otf and bpftrace over no probe and their ratio.
/// `added` is indexed by variant; a missing variant prints `-`.
fn summary(rows: &[Row], added: &[f64]) -> String {
    let cell = |i: Option<usize>| i.map_or("-".to_string(), |i| format!("{:.1}", added[i]));
    let w = rows
        .iter()
        .map(|r| r.what.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{:<w$} {:>14} {:>18} {:>15}\n",
        "body", "otf added ns", "bpftrace added ns", "otf / bpftrace"
    );
    for r in rows {
        let ratio = match (r.otf, r.bpftrace) {
            (Some(o), Some(b)) => ratio_text(added[o], added[b]),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "{:<w$} {:>14} {:>18} {:>15}\n",
            r.what,
            cell(r.otf),
            cell(r.bpftrace),
            ratio
        ));
    }
    out
}

/// The body-cost benchmark: getppid with no probe, then per body otf and bpftrace, alternating
/// within each repetition; a table of all variants, then the summary of added ns per call.
pub fn bench_body_cost(ctx: &Ctx) -> Result<()> {
    compare(ctx, bodies())
}

/// Runs the getppid loop with no probe, then per body under otf and under bpftrace, alternating
/// within each repetition (`--body-calls` calls per measurement, `--printf-calls` for bodies
/// that print per hit; `--body-reps` repetitions); prints a table of all variants, what the
/// printing bodies printed, then the summary of added ns per call. Fails (after the summary)
/// when a tracer's exit output lacked what its body expects there.
pub(super) fn compare(ctx: &Ctx, bodies: Vec<Body>) -> Result<()> {
    let dir = cprog::dir()?;
    let r = compare_in(ctx, &dir, bodies);
    cprog::cleanup(ctx, &dir);
    r
}

/// A variant whose tracer writes its output to a file, read after each measurement.
struct Captured {
    /// The variant's index.
    variant: usize,
    path: PathBuf,
    /// Whether its body prints per hit: count the lines and the records lost.
    prints: bool,
    /// What its exit output must contain.
    exit: &'static [&'static str],
    /// Per measurement: lines printed, records reported lost, whether `exit` was all there.
    samples: Vec<(u64, u64, bool)>,
}

fn compare_in(ctx: &Ctx, dir: &Path, bodies: Vec<Body>) -> Result<()> {
    let mut variants = vec![Variant {
        name: "no probe".into(),
        tracer: None,
    }];
    let mut rows = Vec::new();
    let mut files: Vec<Captured> = Vec::new();
    let mut capture = |variant: usize, name: String, prints: bool, exit| {
        let path = dir.join(name);
        files.push(Captured {
            variant,
            path: path.clone(),
            prints,
            exit,
            samples: Vec::new(),
        });
        path
    };
    let any_prints = bodies.iter().any(|b| b.prints);
    for (k, b) in bodies.into_iter().enumerate() {
        let mut row = Row {
            what: b.what,
            otf: None,
            bpftrace: None,
        };
        if let Some(otf) = &ctx.otf {
            let mut v = Variant::otf(b.otf_name, otf, b.otf_args, &b.otf_script);
            if b.prints || !b.otf_exit.is_empty() {
                let f = capture(variants.len(), format!("otf-{k}.out"), b.prints, b.otf_exit);
                if let Some(t) = v.tracer.as_mut() {
                    t.output = Some(f);
                }
            }
            row.otf = Some(variants.len());
            variants.push(v);
        }
        if let Some(bt) = &ctx.bpftrace {
            let mut argv = vec![bt.to_string_lossy().into_owned(), "-B".into()];
            // Full buffering for the printf body (otf buffers 64 KiB too); line buffering
            // elsewhere, where only the ready line is printed.
            argv.push(if b.prints { "full" } else { "line" }.into());
            argv.extend(["-e".into(), b.bt_program]);
            let mut t = Tracer::new(argv, READY);
            if b.prints || !b.bt_exit.is_empty() {
                let f = format!("bpftrace-{k}.out");
                t.output = Some(capture(variants.len(), f, b.prints, b.bt_exit));
            }
            row.bpftrace = Some(variants.len());
            variants.push(Variant {
                name: b.bt_name.into(),
                tracer: Some(t),
            });
        }
        rows.push(row);
    }
    if ctx.otf.is_none() && ctx.bpftrace.is_none() {
        println!("(only the baseline can run: no otf `run` and no bpftrace)");
    } else if ctx.bpftrace.is_none() {
        println!("(bpftrace is not installed: its rows are skipped)");
    }
    let calls = ctx.opts.body_calls;
    let printf_calls = ctx.opts.printf_calls;
    let for_printf = if any_prints {
        format!(" ({printf_calls} for the printf bodies)")
    } else {
        String::new()
    };
    println!(
        "{calls} getppid calls per measurement{for_printf}, {} repetitions, variants alternating",
        ctx.opts.body_reps
    );
    let printing: Vec<usize> = files
        .iter()
        .filter(|f| f.prints)
        .map(|f| f.variant)
        .collect();
    let iterations = |i: usize| {
        if printing.contains(&i) {
            printf_calls
        } else {
            calls
        }
    };
    let body_ctx = Ctx {
        opts: &Options {
            reps: ctx.opts.body_reps,
            ..ctx.opts.clone()
        },
        otf: ctx.otf.clone(),
        bpftrace: ctx.bpftrace.clone(),
    };
    let medians = measure_with(&body_ctx, &variants, &getppid_loop, &iterations, &mut |i| {
        if let Some(c) = files.iter_mut().find(|c| c.variant == i) {
            let (out, err) = read_output(&c.path);
            let lost = lost_records(&out) + lost_records(&err);
            let exit_ok = c.exit.iter().all(|s| out.contains(s));
            c.samples.push((count_hits(&out), lost, exit_ok));
            // The next measurement truncates the file; free the space now.
            let _ = std::fs::remove_file(&c.path);
            let _ = std::fs::remove_file(err_path(&c.path));
        }
        Ok(())
    })?;
    let mut missing = Vec::new();
    for c in &files {
        let name = &variants[c.variant].name;
        if c.prints {
            let hits: Vec<String> = c.samples.iter().map(|(h, _, _)| h.to_string()).collect();
            let lost: u64 = c.samples.iter().map(|(_, l, _)| l).sum();
            println!(
                "{name}: lines printed per measurement {} (of {printf_calls} calls each, plus \
                 what other processes' getppid calls printed); records reported lost in all: \
                 {lost}",
                hits.join(", ")
            );
        }
        if !c.exit.is_empty() {
            let ok = c.samples.iter().filter(|(_, _, ok)| *ok).count();
            println!(
                "{name}: exit output had {} in {ok} of {} measurements",
                c.exit
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" and "),
                c.samples.len()
            );
            if ok < c.samples.len() {
                missing.push(name.clone());
            }
        }
    }
    let base = medians.first().copied().unwrap_or(f64::NAN);
    let added: Vec<f64> = medians.iter().map(|m| m - base).collect();
    println!("\nadded ns per getppid call over no probe (medians):");
    print!("{}", summary(&rows, &added));
    if !missing.is_empty() {
        bail!(
            "the exit output lacked the expected text in some measurements of: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

/// A tracer's output file and its stderr file, as text.
fn read_output(path: &Path) -> (String, String) {
    let out = std::fs::read(path).unwrap_or_default();
    let err = std::fs::read(err_path(path)).unwrap_or_default();
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_lost() {
        let out = "Attaching 2 probes...\notf-bench-ready\n        \notf-bench-hit 12\n\
                   otf-bench-hit 13\nLost 42 events\n";
        assert_eq!(count_hits(out), 2);
        assert_eq!(lost_records(out), 42);
        let err = "WARNING: 7 output record(s) lost: the ring buffer was full\n\
                   WARNING: Number of skipped probes: 3\n";
        assert_eq!(lost_records(err), 7);
        assert_eq!(lost_records(""), 0);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio_text(300.0, 100.0), "3.00");
        assert_eq!(ratio_text(2500.0, 100.0), "25");
        assert_eq!(ratio_text(-3.0, 100.0), "0");
        assert_eq!(ratio_text(50.0, -1.0), "n/a");
        assert_eq!(ratio_text(50.0, f64::NAN), "n/a");
    }

    #[test]
    fn summary_rows() {
        let rows = [
            Row {
                what: "n++",
                otf: Some(1),
                bpftrace: Some(2),
            },
            Row {
                what: "loop",
                otf: Some(3),
                bpftrace: None,
            },
        ];
        let t = summary(&rows, &[0.0, 200.0, 100.0, 3000.0]);
        let line = |w: &str| {
            t.lines()
                .find(|l| l.starts_with(w))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(line("n++")[1..], ["200.0", "100.0", "2.00"]);
        assert_eq!(line("loop")[1..], ["3000.0", "-", "-"]);
    }

    #[test]
    fn scripts_print_ready_and_probe_the_tracepoint() {
        for b in bodies() {
            let (s, p) = (&b.otf_script, &b.bt_program);
            assert!(s.contains(READY) && s.contains(TP_OTF), "{s}");
            assert!(p.contains(READY) && p.contains(TP_BT), "{p}");
            assert_eq!(s.contains(HIT), b.prints);
            assert_eq!(p.contains(HIT), b.prints);
        }
        // The padding follows the ready line, which it must push out of stdio's buffer.
        let p = &bodies()[2].bt_program;
        assert!(p.find(READY) < p.find("%8192s"), "{p}");
    }
}
