//! `body-cost`: what an armed probe's body costs per hit, otf against bpftrace running the same
//! bodies on the same tracepoint, in one run with the variants alternating.

use std::path::{Path, PathBuf};

use anyhow::Result;

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
fn otf_script(globals: &str, tail: &str) -> String {
    format!(
        "global {globals}\n\
         probe begin {{ println(\"{READY}\") }}\n\
         probe {TP_OTF} {tail}\n"
    )
}

/// bpftrace's program for a body: BEGIN runs `pre`, prints [`READY`] and runs `post`, then the
/// tracepoint with `tail` (an optional predicate and the body).
fn bt_program(pre: &str, post: &str, tail: &str) -> String {
    format!("BEGIN {{ {pre}printf(\"{READY}\\n\"); {post}}} {TP_BT} {tail}")
}

/// A body as each tool runs it.
struct Body {
    /// Its row in the summary.
    what: &'static str,
    /// The otf variant's name.
    otf_name: &'static str,
    /// Extra arguments of `otf run`.
    otf_args: &'static [&'static str],
    /// otf's script.
    otf_script: String,
    /// The bpftrace variant's name.
    bt_name: &'static str,
    /// bpftrace's program.
    bt_program: String,
    /// Whether it prints per hit (its output then goes to a file).
    prints: bool,
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
        },
        Body {
            what: "condition false, probe armed (otf --no-otf `if (on)`; bpftrace /@on/, a map)",
            otf_name: "otf --no-otf, if (on), on = 0 (armed)",
            otf_args: &["--no-otf"],
            otf_script: otf_script("on = 0, n", "if (on) { n++ }"),
            bt_name: "bpftrace, predicate /@on/, @on = 0",
            bt_program: bt_program("@on = 0; ", "", "/@on/ { @n = count() }"),
            prints: false,
        },
        Body {
            what: "condition false: otf disarmed; bpftrace /0/ (a constant, its cheapest)",
            otf_name: "otf, if (on), on = 0 (disarmed)",
            otf_args: &[],
            otf_script: otf_script("on = 0, n", "if (on) { n++ }"),
            bt_name: "bpftrace, predicate /0/",
            bt_program: bt_program("", "", "/0/ { @n = count() }"),
            prints: false,
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
    let dir = cprog::dir()?;
    let r = body_cost(ctx, &dir);
    cprog::cleanup(ctx, &dir);
    r
}

fn body_cost(ctx: &Ctx, dir: &Path) -> Result<()> {
    let mut variants = vec![Variant {
        name: "no probe".into(),
        tracer: None,
    }];
    let mut rows = Vec::new();
    // Variants whose tracer writes its stdout to a file, by variant index.
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    for (k, b) in bodies().into_iter().enumerate() {
        let mut row = Row {
            what: b.what,
            otf: None,
            bpftrace: None,
        };
        if let Some(otf) = &ctx.otf {
            let mut v = Variant::otf(b.otf_name, otf, b.otf_args, &b.otf_script);
            if b.prints {
                let f = dir.join(format!("otf-{k}.out"));
                if let Some(t) = v.tracer.as_mut() {
                    t.output = Some(f.clone());
                }
                files.push((variants.len(), f));
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
            if b.prints {
                let f = dir.join(format!("bpftrace-{k}.out"));
                t.output = Some(f.clone());
                files.push((variants.len(), f));
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
    println!(
        "{calls} getppid calls per measurement ({printf_calls} for the printf bodies), {} \
         repetitions, variants alternating",
        ctx.opts.body_reps
    );
    let prints = |i: usize| files.iter().any(|(j, _)| *j == i);
    let iterations = |i: usize| if prints(i) { printf_calls } else { calls };
    // Per printing variant: lines printed and records reported lost, per measurement.
    let mut printed: Vec<(usize, Vec<(u64, u64)>)> =
        files.iter().map(|(i, _)| (*i, Vec::new())).collect();
    let body_ctx = Ctx {
        opts: &Options {
            reps: ctx.opts.body_reps,
            ..ctx.opts.clone()
        },
        otf: ctx.otf.clone(),
        bpftrace: ctx.bpftrace.clone(),
    };
    let medians = measure_with(&body_ctx, &variants, &getppid_loop, &iterations, &mut |i| {
        if let Some(k) = files.iter().position(|(j, _)| *j == i) {
            let path = &files[k].1;
            let (hits, lost) = read_output(path);
            printed[k].1.push((hits, lost));
            // The next measurement truncates the file; free the space now.
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(err_path(path));
        }
        Ok(())
    })?;
    for (i, samples) in &printed {
        let hits: Vec<String> = samples.iter().map(|(h, _)| h.to_string()).collect();
        let lost: u64 = samples.iter().map(|(_, l)| l).sum();
        println!(
            "{}: lines printed per measurement {} (of {printf_calls} calls each, plus what \
             other processes' getppid calls printed); records reported lost in all: {lost}",
            variants[*i].name,
            hits.join(", ")
        );
    }
    let base = medians.first().copied().unwrap_or(f64::NAN);
    let added: Vec<f64> = medians.iter().map(|m| m - base).collect();
    println!("\nadded ns per getppid call over no probe (medians):");
    print!("{}", summary(&rows, &added));
    Ok(())
}

/// The hit lines in a printing tracer's output file and the records it reported lost (in the
/// file or in its stderr file).
fn read_output(path: &Path) -> (u64, u64) {
    let out = std::fs::read(path).unwrap_or_default();
    let out = String::from_utf8_lossy(&out);
    let err = std::fs::read_to_string(err_path(path)).unwrap_or_default();
    (count_hits(&out), lost_records(&out) + lost_records(&err))
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
