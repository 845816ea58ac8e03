//! `load-large`: exec to armed and the time the kernel spent in `BPF_PROG_LOAD` (the verifier
//! and the JIT) for the largest scripts otf loads, otf only (bpftrace cannot run these
//! SystemTap scripts).
//!
//! The scripts are written at run time into the benchmark's temporary directory. Each run is
//! [`startup`]'s: `otf run -c armed.sh`, *armed* when otf releases the stopped `-c` command (its
//! last attach done), 300 ms of running, SIGINT; the program loads come from [`startup`]'s
//! bpftrace watcher on `sys_enter_bpf`/`sys_exit_bpf` (no load times without bpftrace).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::startup::{self, Sample};
use super::{cprog, median, Ctx};

/// One script of the benchmark.
struct Script {
    /// Its label in the table.
    label: &'static str,
    /// Its file name in the temporary directory.
    file: &'static str,
    /// Its text.
    text: String,
    /// `otf run` options before `-c`.
    opts: &'static [&'static str],
    /// Slow to stop (detaching every tracepoint takes tens of seconds): run `--startup-reps`
    /// times rather than `--reps`.
    large: bool,
}

/// `global x` and a `probe TIMER` whose body is `stmt(0)`, ..., `stmt(n - 1)`, one per line,
/// then `tail` (if not empty).
fn timer_script(timer: &str, n: usize, stmt: impl Fn(usize) -> String, tail: &str) -> String {
    let mut s = format!("global x\nprobe {timer} {{\n");
    for i in 0..n {
        s.push_str("  ");
        s.push_str(&stmt(i));
        s.push('\n');
    }
    if !tail.is_empty() {
        s.push_str("  ");
        s.push_str(tail);
        s.push('\n');
    }
    s.push_str("}\n");
    s
}

/// Functions inlined 4 deep and loops nested 4 deep: the script of
/// `the_largest_bodies_load_and_run` in crates/otf-bpf/tests/verifier.rs.
const DEEP: &str = "global x\n\
    function f1(a) { s = 0; for (i = 0; i < a; i++) s += i; return s }\n\
    function f2(a) { return f1(a) + f1(a + 1) }\n\
    function f3(a) { t = 0; while (a > 0) { t += f2(a); a-- } return t }\n\
    function f4(a) { return f3(a) * 2 }\n\
    probe timer.ms(1) { for (i = 0; i < 3; i++) for (j = 0; j < 3; j++) x += f4(i + j) }\n";

/// The tracepoint suite's `otf_stress_hard_iter_2000` (testsuite/src/onthefly.rs, `script` for
/// `Suite::Tracepoint` with ENABLED 1, MAXTOGGLES 2000, TIMER hardcore and SystemTap's 360 s
/// watchdog): `timer.profile` and every tracepoint toggle the condition of
/// `kernel.trace("sched_process_fork")`, and the script exits after 2000 toggles.
const HARD: &str = r#"global enabled = 1
global toggles = 0

# Simplification to ensure 'hit' is only printed once.
global hit = 0

probe kernel.trace("sched_process_fork") if (enabled) {
   if (hit)
      next
   hit = 1
   println("hit")
}

probe timer.profile, kernel.trace("*") {
   toggles++
   hit = 0
   if (toggles > 2000)
      exit()
   else {
      println("toggling")
      enabled = !enabled
   }
}

probe timer.s(360) {
   println("timed out")
   exit()
}
"#;

/// The options the suite runs the hard subtest with (`onthefly::case` and the runner's
/// `--suppress-handler-errors` for stress subtests).
const HARD_OPTS: &[&str] = &[
    "--otf-debug",
    "--otf-interval",
    "100us",
    "--suppress-handler-errors",
];

/// The benchmark's scripts, in the order they run.
fn scripts() -> Vec<Script> {
    vec![
        Script {
            label: "4,400 x += 1",
            file: "straight.stp",
            // As in verifier.rs: near MAXACTION (20,000 bytecode steps).
            text: timer_script("timer.ms(1)", 4400, |_| "x += 1".into(), ""),
            opts: &[],
            large: false,
        },
        Script {
            label: "1,500 printf",
            file: "printf.stp",
            // verifier.rs's script, every 100 ms rather than every 1 ms (which would print
            // 1.5 million lines a second).
            text: timer_script(
                "timer.ms(100)",
                1500,
                |i| format!("printf(\"%d %d\\n\", x, {i})"),
                "x = 1",
            ),
            opts: &[],
            large: false,
        },
        Script {
            label: "inlined 4, loops 4",
            file: "deep.stp",
            text: DEEP.into(),
            opts: &[],
            large: false,
        },
        Script {
            label: "hard (tracepoint suite)",
            file: "hard.stp",
            text: HARD.into(),
            opts: HARD_OPTS,
            large: true,
        },
    ]
}

/// From `otf check --bpf`'s output: the probes (lines `probe N POINT ... attach=...`) and the
/// instructions of all handlers (lines `# handler NAME (N instructions)`).
fn parse_check(listing: &str) -> (u64, u64) {
    let mut probes = 0;
    let mut insns = 0;
    for line in listing.lines() {
        if line.starts_with("probe ") && line.contains(" attach=") {
            probes += 1;
        } else if let Some(rest) = line.strip_prefix("# handler ") {
            let n = rest
                .rsplit_once(" (")
                .and_then(|(_, r)| r.strip_suffix(" instructions)"))
                .and_then(|n| n.parse::<u64>().ok());
            insns += n.unwrap_or(0);
        }
    }
    (probes, insns)
}

/// One row of the table: a script, its probes and handler instructions, and its runs.
struct Row {
    label: &'static str,
    check: Option<(u64, u64)>,
    samples: Vec<Sample>,
}

/// The table: per script the probes, handler instructions, runs, median/min/max ms to armed
/// and the program loads (count and ms, medians).
fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<24} {:>7} {:>7} {:>5} {:>10} {:>9} {:>9} {:>11} {:>9}\n",
        "script", "probes", "insns", "runs", "armed p50", "min", "max", "prog loads", "load ms"
    );
    for r in rows {
        let mut armed: Vec<f64> = r.samples.iter().map(|s| s.armed_ms).collect();
        let a50 = median(&mut armed);
        let amin = armed.first().copied().unwrap_or(f64::NAN);
        let amax = armed.last().copied().unwrap_or(f64::NAN);
        let (mut nloads, mut load_ms): (Vec<f64>, Vec<f64>) = r
            .samples
            .iter()
            .filter_map(|s| s.loads.map(|(n, ms)| (n as f64, ms)))
            .unzip();
        let (loads, lms) = if nloads.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.0}", median(&mut nloads)),
                format!("{:.1}", median(&mut load_ms)),
            )
        };
        let (probes, insns) = r.check.map_or(("?".into(), "?".into()), |(p, i)| {
            (p.to_string(), i.to_string())
        });
        out.push_str(&format!(
            "{:<24} {probes:>7} {insns:>7} {:>5} {a50:>10.1} {amin:>9.1} {amax:>9.1} \
             {loads:>11} {lms:>9}\n",
            r.label,
            r.samples.len()
        ));
    }
    out
}

/// The load-large benchmark.
pub fn bench_load_large(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        bail!("otf could not be built");
    };
    if ctx.bpftrace.is_none() {
        println!("(bpftrace is not installed: no program load times)");
    }
    let dir = cprog::dir()?;
    let r = load_large(ctx, otf, &dir);
    cprog::cleanup(ctx, &dir);
    r
}

fn load_large(ctx: &Ctx, otf: &Path, dir: &Path) -> Result<()> {
    let armed_sh = startup::write_armed_sh(dir)?;
    let c_arg = format!("/bin/sh {}", armed_sh.display());
    let scripts = scripts();
    for s in &scripts {
        let path = dir.join(s.file);
        std::fs::write(&path, &s.text)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let cmd = |s: &Script| {
        let mut c = Command::new(otf);
        c.arg("run")
            .args(s.opts)
            .args(["-c", &c_arg])
            .arg(dir.join(s.file));
        c
    };
    let watcher = startup::start_watcher(ctx, &armed_sh);
    println!(
        "armed: exec → otf releases its -c command (after its last attach); prog loads: \
         BPF_PROG_LOAD calls (verifier and JIT, feature probes included) and their summed time, \
         as a bpftrace watcher on sys_enter/exit_bpf saw them; probes and insns: `otf check \
         --bpf` (probe points, instructions of all handlers)"
    );
    // Warm-up (not counted): page cache, BTF, the code generator's first run.
    startup::run_once(&mut cmd(&scripts[0]), None)?;
    let mut rows: Vec<Row> = scripts
        .iter()
        .map(|s| {
            let out = Command::new(otf)
                .args(["check", "--bpf"])
                .arg(dir.join(s.file))
                .output();
            let check = out
                .ok()
                .filter(|o| o.status.success())
                .map(|o| parse_check(&String::from_utf8_lossy(&o.stdout)));
            Row {
                label: s.label,
                check,
                samples: Vec::new(),
            }
        })
        .collect();
    let runs = |s: &Script| {
        if s.large {
            ctx.opts.startup_reps
        } else {
            ctx.opts.reps
        }
    };
    // Round-robin, so that drift hits every script alike.
    let rounds = scripts.iter().map(runs).max().unwrap_or(0);
    for round in 0..rounds {
        for (s, row) in scripts.iter().zip(&mut rows) {
            if round >= runs(s) {
                continue;
            }
            let sample = startup::run_once(&mut cmd(s), watcher.as_ref())?;
            eprintln!(
                "xtask bench: {} run {}/{}: armed {:.1} ms{}",
                s.label,
                round + 1,
                runs(s),
                sample.armed_ms,
                sample
                    .loads
                    .map(|(n, ms)| format!(", {n} loads in {ms:.1} ms"))
                    .unwrap_or_default()
            );
            row.samples.push(sample);
        }
    }
    drop(watcher);
    print!("{}", table(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_scripts() {
        assert_eq!(
            timer_script("timer.ms(1)", 2, |i| format!("x += {i}"), ""),
            "global x\nprobe timer.ms(1) {\n  x += 0\n  x += 1\n}\n"
        );
        assert_eq!(
            timer_script("timer.s(1)", 1, |_| "n++".into(), "x = 1"),
            "global x\nprobe timer.s(1) {\n  n++\n  x = 1\n}\n"
        );
        let s = scripts();
        assert_eq!(s[0].text.matches("x += 1\n").count(), 4400);
        assert_eq!(s[1].text.matches("printf(").count(), 1500);
        assert!(s[1]
            .text
            .contains("  printf(\"%d %d\\n\", x, 1499)\n  x = 1\n}\n"));
        assert!(s.iter().all(|s| s.text.ends_with("}\n")));
        assert_eq!(s.iter().filter(|s| s.large).count(), 1);
    }

    #[test]
    fn parses_check_listing() {
        let listing = "probe 0 kernel.trace(\"sched:sched_process_fork\") group=tracepoint \
                       attach=\"tracepoint sched:sched_process_fork\" otf=yes notify=immediate\n\
                       probe 1 timer.profile group=hrtimer attach=\"perf cpu-clock cpu 0 \
                       period 4000000 ns\" otf=yes notify=immediate\n\
                       probe 1 can affect condition of probe 0\n\
                       # handler otf_tracepoint (1018 instructions)\n\
                       ; func[0]: otf_tracepoint\n   0: (bf) r6 = r1\n\
                       # handler otf_perf_event (1,2 instructions)\n\
                       # handler otf_raw_tp (20 instructions)\n";
        assert_eq!(parse_check(listing), (2, 1038));
        assert_eq!(parse_check(""), (0, 0));
    }

    #[test]
    fn table_medians() {
        let s = |armed_ms, loads| Sample {
            armed_ms,
            exit_ms: 0.0,
            loads,
            attaching: None,
        };
        let rows = [
            Row {
                label: "big",
                check: Some((1, 42308)),
                samples: vec![
                    s(900.0, Some((4, 800.0))),
                    s(1000.0, Some((4, 820.0))),
                    s(950.0, Some((4, 810.0))),
                ],
            },
            Row {
                label: "unwatched",
                check: None,
                samples: vec![s(50.0, None)],
            },
        ];
        let t = table(&rows);
        let cols = |label: &str| {
            t.lines()
                .find(|l| l.starts_with(label))
                .unwrap()
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cols("big")[1..],
            ["1", "42308", "3", "950.0", "900.0", "1000.0", "4", "810.0"]
        );
        assert_eq!(
            cols("unwatched")[1..],
            ["?", "?", "1", "50.0", "50.0", "50.0", "-", "-"]
        );
    }
}
