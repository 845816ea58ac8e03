//! `timers`: how many firings of otf's timers run, idle and under a flood of hits on an armed
//! probe, and how long after a toggle timer fires the hot probe is disarmed.
//!
//! otf's `timer.ms(N)` is a perf-event cpu-clock event with a BPF program. The kernel's perf
//! overflow path skips that program (it only counts it as missed) when another BPF program is
//! running on the CPU: under a flood of hits on an armed probe, firings are lost. otf reports
//! them (`--stats`: `"lost"` in each `{"type":"stats",...}` record with `-o json`). Each run lasts
//! `OTF_BENCH_TIMER_SECS` seconds (default 5); `--reps` runs per variant, alternating.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::arming::quantile;
use super::{median, Ctx, READY};
use crate::util::display_cmd;

/// The environment variable that sets the length of each run in seconds.
const SECS_ENV: &str = "OTF_BENCH_TIMER_SECS";

/// The hot probe, as otf and as bpftrace name it.
const HOT_OTF: &str = "kernel.trace(\"syscalls:sys_enter_getppid\")";
const HOT_BT: &str = "tracepoint:syscalls:sys_enter_getppid";

/// The periods of the counted timers, in ms.
const PERIODS_MS: [u64; 2] = [100, 1];

/// The toggle timer's period, in ms.
const TOGGLE_MS: u64 = 500;

/// What the toggler prints: `otfbench toggle ON NS`.
const TOGGLE: &str = "otfbench toggle ";

/// What the toggle script's begin probe prints: `otfbench begin NS`.
const BEGIN: &str = "otfbench begin ";

/// The seconds per run: [`SECS_ENV`] or 5.
fn run_secs() -> Result<u64> {
    match std::env::var(SECS_ENV) {
        Err(_) => Ok(5),
        Ok(s) => match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("{SECS_ENV}={s:?}: want a positive number of seconds"),
        },
    }
}

/// otf's script for the accuracy runs: the hot probe and one counted timer per period.
fn otf_accuracy_script() -> String {
    let mut s = format!("global n\nprobe {HOT_OTF} {{ n++ }}\n");
    for p in PERIODS_MS {
        s.push_str(&format!("probe timer.ms({p}) {{ }}\n"));
    }
    s
}

/// bpftrace's program for the accuracy runs: the same, with `interval:ms:N` counting into
/// `@msN`.
fn bt_accuracy_program() -> String {
    let mut s = format!("BEGIN {{ printf(\"{READY}\\n\") }} {HOT_BT} {{ @n = count() }}");
    for p in PERIODS_MS {
        s.push_str(&format!(" interval:ms:{p} {{ @ms{p} = count() }}"));
    }
    s
}

/// otf's script for the toggle runs: the hot probe `if (on)`, armed at the start, and a
/// `timer.ms(TOGGLE_MS)` that flips `on` and prints when it did.
fn otf_toggle_script() -> String {
    format!(
        "global on = 1, n\n\
         probe begin {{ printf(\"{BEGIN}%d\\n\", gettimeofday_ns()) }}\n\
         probe {HOT_OTF} if (on) {{ n++ }}\n\
         probe timer.ms({TOGGLE_MS}) {{ on = 1 - on; \
         printf(\"{TOGGLE}%d %d\\n\", on, gettimeofday_ns()) }}\n"
    )
}

/// One line of otf's `-o json` output, as far as this benchmark cares.
#[derive(Debug, Clone, PartialEq)]
enum OtfLine {
    /// A per-probe stats record: its pidx, point, hits and firings lost in the kernel.
    Stats {
        pidx: i64,
        point: String,
        hits: u64,
        lost: u64,
    },
    /// An output record's text.
    Output(String),
    /// An arming decision: registering (true) or unregistering (false) probe `pidx`.
    Decision { arm: bool, pidx: i64 },
}

/// Parses one line of otf's `-o json` output; `None` for anything else.
fn parse_otf_line(line: &str) -> Option<OtfLine> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    match v.get("type")?.as_str()? {
        "stats" => Some(OtfLine::Stats {
            pidx: v.get("pidx")?.as_i64()?,
            point: v.get("point")?.as_str()?.to_string(),
            hits: v.get("hits")?.as_u64()?,
            lost: v.get("lost").and_then(|l| l.as_u64()).unwrap_or(0),
        }),
        "output" => Some(OtfLine::Output(v.get("text")?.as_str()?.to_string())),
        "otf" => {
            let arm = match v.get("decision")?.as_str()? {
                "registering" => true,
                "unregistering" => false,
                _ => return None,
            };
            Some(OtfLine::Decision {
                arm,
                pidx: v.get("pidx")?.as_i64()?,
            })
        }
        _ => None,
    }
}

/// bpftrace's exit line `@NAME: N`: (NAME, N).
fn parse_bt_count(line: &str) -> Option<(String, u64)> {
    let (name, n) = line.trim().strip_prefix('@')?.split_once(": ")?;
    Some((name.to_string(), n.trim().parse().ok()?))
}

/// (ran, lost) of the stats record of `point` among `lines`.
fn timer_counts(lines: &[OtfLine], point: &str) -> Option<(u64, u64)> {
    lines.iter().find_map(|l| match l {
        OtfLine::Stats {
            point: p,
            hits,
            lost,
            ..
        } if p == point => Some((*hits, *lost)),
        _ => None,
    })
}

/// Parses `TOGGLE ON NS` or `BEGIN NS` in an output record's text: (Some(on) or None for the
/// begin line, NS).
fn parse_toggle(text: &str) -> Option<(Option<bool>, i64)> {
    let t = text.trim();
    if let Some(ns) = t.strip_prefix(BEGIN) {
        return Some((None, ns.trim().parse().ok()?));
    }
    let mut w = t.strip_prefix(TOGGLE)?.split_whitespace();
    let on = match w.next()? {
        "1" => true,
        "0" => false,
        _ => return None,
    };
    Some((Some(on), w.next()?.parse().ok()?))
}

/// One toggle of the hot probe's condition.
#[derive(Debug, Clone, PartialEq)]
struct Toggle {
    /// The value it set: true arms the hot probe, false disarms it.
    on: bool,
    /// Firings of the toggle timer lost just before this one (from the gap to the previous
    /// toggle, or to the begin probe for the first).
    lost_before: u64,
    /// The matching decision line's arrival after the firing that ran, ns.
    from_firing_ns: Option<i64>,
    /// The same after the firing that was due (`lost_before` periods earlier), ns.
    from_due_ns: Option<i64>,
}

/// Matches each toggle (timestamped by the toggler) with the first decision line on the hot
/// probe `hot` in the same direction that arrived after it and before the next toggle; the last
/// toggle is left out when it has none (the run ended first).
/// `lines` are (arrival ns, line), on the toggler's clock (CLOCK_REALTIME).
fn toggles(lines: &[(i64, OtfLine)], hot: i64, period_ns: i64) -> Vec<Toggle> {
    let mut begin = None;
    let mut fired: Vec<(bool, i64)> = Vec::new();
    for (_, l) in lines {
        if let OtfLine::Output(text) = l {
            match parse_toggle(text) {
                Some((None, t)) => begin = Some(t),
                Some((Some(on), t)) => fired.push((on, t)),
                None => {}
            }
        }
    }
    fired.sort_by_key(|&(_, t)| t);
    let decisions: Vec<(i64, bool)> = lines
        .iter()
        .filter_map(|(at, l)| match l {
            OtfLine::Decision { arm, pidx } if *pidx == hot => Some((*at, *arm)),
            _ => None,
        })
        .collect();
    let toggles: Vec<Toggle> = fired
        .iter()
        .enumerate()
        .map(|(i, &(on, t))| {
            let prev = if i == 0 { begin } else { Some(fired[i - 1].1) };
            // Whole periods since the previous firing, less the one that ran: the firings
            // lost in between (the first is due one period after the begin probe, roughly).
            let lost_before = prev.map_or(0, |p| {
                let periods = ((t - p) as f64 / period_ns as f64).round() as i64;
                (periods - 1).max(0) as u64
            });
            let next = fired.get(i + 1).map_or(i64::MAX, |f| f.1);
            let decision = decisions
                .iter()
                .filter(|&&(at, arm)| arm == on && at >= t && at < next)
                .map(|&(at, _)| at)
                .min();
            let due = t - lost_before as i64 * period_ns;
            Toggle {
                on,
                lost_before,
                from_firing_ns: decision.map(|d| d - t),
                from_due_ns: decision.map(|d| d - due),
            }
        })
        .collect();
    // The run's end (-T) may come between the last toggle and its decision: leave it out.
    let mut toggles = toggles;
    if toggles.last().is_some_and(|t| t.from_firing_ns.is_none()) {
        toggles.pop();
    }
    toggles
}

/// CLOCK_REALTIME in ns (the clock of otf's `gettimeofday_ns()`).
fn realtime_ns() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// A getppid(2) loop on every CPU this process may run on, one thread pinned to each.
struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is that of `set`.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return vec![0];
    }
    // SAFETY: CPU_ISSET reads the set for CPU numbers below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

impl Flood {
    fn start() -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = allowed_cpus()
            .into_iter()
            .map(|cpu| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // SAFETY: as in allowed_cpus; pid 0 pins this thread only.
                    unsafe {
                        let mut set: libc::cpu_set_t = std::mem::zeroed();
                        libc::CPU_SET(cpu, &mut set);
                        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                    }
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..1024 {
                            // SAFETY: getppid has no preconditions.
                            unsafe { libc::syscall(libc::SYS_getppid) };
                        }
                        n += 1024;
                    }
                    n
                })
            })
            .collect();
        Flood { stop, threads }
    }

    /// Stops the threads; returns the calls they made.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|t| t.join().unwrap_or(0))
            .sum()
    }
}

/// Runs `argv` to its end, its stdout lines timestamped on arrival (CLOCK_REALTIME ns); with
/// `sigint_after`, sends it SIGINT that long after it printed [`READY`]. Returns the lines and
/// its stderr. Fails if it runs longer than `limit`.
fn run_timed(
    argv: &[String],
    sigint_after: Option<Duration>,
    limit: Duration,
) -> Result<(Vec<(i64, String)>, String)> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SIGINT may be ignored when xtask runs as a background job: restore the default (see
    // Tracer::start). SAFETY: only signal(2), async-signal-safe, between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let name = display_cmd(&cmd);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut stderr = child.stderr.take().context("no stderr")?;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((realtime_ns(), line)).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut lines = Vec::new();
    let mut interrupt_at: Option<Instant> = None;
    loop {
        if let Some(at) = interrupt_at {
            if Instant::now() >= at {
                // SAFETY: kill on our own child, not yet reaped.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
                interrupt_at = None;
            }
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`{name}` did not finish within {limit:?}; killed it");
        }
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok((t, line)) => {
                if let (Some(d), true) = (sigint_after, line.trim() == READY) {
                    interrupt_at = Some(Instant::now() + d);
                }
                lines.push((t, line));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait()?;
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        bail!("`{name}` exited with {status}:\n{err}");
    }
    Ok((lines, err))
}

/// Under which load a variant runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Load {
    Idle,
    Flood,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Load::Idle => "idle",
            Load::Flood => "flood",
        }
    }
}

/// Runs `f` under `load`; returns its result and the getppid calls per second of the flood.
fn under<T>(load: Load, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let flood = (load == Load::Flood).then(Flood::start);
    let t = Instant::now();
    let r = f();
    let calls = flood.map_or(0, Flood::stop);
    Ok((r?, calls as f64 / t.elapsed().as_secs_f64()))
}

/// One accuracy run: per timer period the firings that ran and those the tool reported lost
/// (bpftrace reports none), and the hits of the hot probe (from every process).
#[derive(Debug, Clone)]
struct Counts {
    timers: Vec<(u64, Option<u64>)>,
    hot_hits: u64,
}

/// `otf run -o json EXTRA... -T SECSs -e SCRIPT`.
fn otf_argv(otf: &Path, extra: &[&str], secs: u64, script: &str) -> Vec<String> {
    let mut argv = vec![otf.to_string_lossy().into_owned(), "run".into()];
    argv.extend(["-o", "json"].iter().chain(extra).map(|s| s.to_string()));
    argv.extend(["-T".into(), format!("{secs}s"), "-e".into(), script.into()]);
    argv
}

/// One accuracy run of otf.
fn otf_accuracy(otf: &Path, secs: u64) -> Result<Counts> {
    let argv = otf_argv(otf, &["--stats"], secs, &otf_accuracy_script());
    let (lines, err) = run_timed(&argv, None, Duration::from_secs(secs + 120))?;
    let parsed: Vec<OtfLine> = lines
        .iter()
        .filter_map(|(_, l)| parse_otf_line(l))
        .collect();
    let timers = PERIODS_MS
        .iter()
        .map(|p| {
            let point = format!("timer.ms({p})");
            let (ran, lost) = timer_counts(&parsed, &point)
                .with_context(|| format!("otf printed no stats for {point}; stderr:\n{err}"))?;
            Ok((ran, Some(lost)))
        })
        .collect::<Result<_>>()?;
    let hot_hits = timer_counts(&parsed, HOT_OTF).map_or(0, |(h, _)| h);
    Ok(Counts { timers, hot_hits })
}

/// One accuracy run of bpftrace, stopped with SIGINT `secs` after its BEGIN.
fn bt_accuracy(bt: &Path, secs: u64) -> Result<Counts> {
    let argv = vec![
        bt.to_string_lossy().into_owned(),
        "-B".into(),
        "line".into(),
        "-e".into(),
        bt_accuracy_program(),
    ];
    let (lines, err) = run_timed(
        &argv,
        Some(Duration::from_secs(secs)),
        Duration::from_secs(secs + 300),
    )?;
    let counts: Vec<(String, u64)> = lines
        .iter()
        .filter_map(|(_, l)| parse_bt_count(l))
        .collect();
    let count = |name: &str| counts.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
    let timers = PERIODS_MS
        .iter()
        .map(|p| {
            let name = format!("ms{p}");
            let ran = count(&name)
                .with_context(|| format!("bpftrace printed no @{name}; stderr:\n{err}"))?;
            Ok((ran, None))
        })
        .collect::<Result<_>>()?;
    Ok(Counts {
        timers,
        hot_hits: count("n").unwrap_or(0),
    })
}

/// One toggle run of otf.
fn otf_toggle(otf: &Path, secs: u64) -> Result<(Vec<Toggle>, u64)> {
    let argv = otf_argv(otf, &["--otf-debug", "--stats"], secs, &otf_toggle_script());
    let (lines, err) = run_timed(&argv, None, Duration::from_secs(secs + 120))?;
    let parsed: Vec<(i64, OtfLine)> = lines
        .iter()
        .filter_map(|(t, l)| Some((*t, parse_otf_line(l)?)))
        .collect();
    let only: Vec<OtfLine> = parsed.iter().map(|(_, l)| l.clone()).collect();
    let hot = only
        .iter()
        .find_map(|l| match l {
            OtfLine::Stats { pidx, point, .. } if point.contains("sys_enter_getppid") => {
                Some(*pidx)
            }
            _ => None,
        })
        .with_context(|| format!("otf printed no stats for the hot probe; stderr:\n{err}"))?;
    let lost = timer_counts(&only, &format!("timer.ms({TOGGLE_MS})")).map_or(0, |(_, l)| l);
    Ok((toggles(&parsed, hot, TOGGLE_MS as i64 * 1_000_000), lost))
}

/// `x` as a percentage of `of`, one decimal.
fn percent(x: f64, of: f64) -> String {
    if of > 0.0 {
        format!("{:.1}", 100.0 * x / of)
    } else {
        "-".into()
    }
}

/// The median of `v`'s values (NaN when empty).
fn med(v: &[u64]) -> f64 {
    let mut f: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    median(&mut f)
}

/// The timers benchmark.
pub fn bench_timers(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        println!("(needs otf)");
        return Ok(());
    };
    let secs = run_secs()?;
    let reps = ctx.opts.reps;
    let cpus = allowed_cpus().len();
    println!(
        "{secs} s per run ({SECS_ENV}), {reps} runs per variant, alternating; flood: a getppid \
         loop pinned to each of {cpus} CPUs, hitting an armed {HOT_OTF} {{ n++ }}"
    );
    println!(
        "load average at the start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // (tool, load) → per run: counts, flood calls/s.
    let mut variants: Vec<(&str, Load)> = Vec::new();
    for load in [Load::Idle, Load::Flood] {
        variants.push(("otf", load));
        if ctx.bpftrace.is_some() {
            variants.push(("bpftrace", load));
        }
    }
    let mut acc: Vec<Vec<(Counts, f64)>> = vec![Vec::new(); variants.len()];
    let mut tog: Vec<(Vec<Toggle>, u64, f64)> = Vec::new();
    let mut tog_idle: Vec<(Vec<Toggle>, u64, f64)> = Vec::new();
    for rep in 0..reps {
        eprint!("\rxtask bench: repetition {}/{reps}", rep + 1);
        for (i, &(tool, load)) in variants.iter().enumerate() {
            let (c, rate) = under(load, || match (tool, &ctx.bpftrace) {
                ("bpftrace", Some(bt)) => bt_accuracy(bt, secs),
                _ => otf_accuracy(otf, secs),
            })?;
            acc[i].push((c, rate));
        }
        for load in [Load::Idle, Load::Flood] {
            let ((t, lost), rate) = under(load, || otf_toggle(otf, secs))?;
            match load {
                Load::Idle => tog_idle.push((t, lost, rate)),
                Load::Flood => tog.push((t, lost, rate)),
            }
        }
    }
    eprintln!();
    println!(
        "load average at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("\nfirings per {secs} s run (medians over {reps} runs; min-max of ran in brackets):");
    println!(
        "{:<16} {:>12} {:>18} {:>8} {:>8} {:>10} {:>8} {:>14}",
        "variant", "timer", "ran [min-max]", "lost", "ran+lost", "due", "% ran", "flood calls/s"
    );
    let mut hot = Vec::new();
    for ((tool, load), runs) in variants.iter().zip(&acc) {
        let mut rates: Vec<f64> = runs.iter().map(|(_, r)| *r).collect();
        let rate = median(&mut rates);
        let hits: Vec<u64> = runs.iter().map(|(c, _)| c.hot_hits).collect();
        hot.push(format!(
            "{tool}, {}: {:.2e}",
            load.name(),
            med(&hits) / secs as f64
        ));
        for (k, p) in PERIODS_MS.iter().enumerate() {
            let ran: Vec<u64> = runs.iter().map(|(c, _)| c.timers[k].0).collect();
            let lost: Vec<u64> = runs.iter().filter_map(|(c, _)| c.timers[k].1).collect();
            let sums: Vec<u64> = runs
                .iter()
                .filter_map(|(c, _)| c.timers[k].1.map(|l| l + c.timers[k].0))
                .collect();
            let due = (secs * 1000 / p) as f64;
            let (lo, hi) = (
                ran.iter().min().copied().unwrap_or(0),
                ran.iter().max().copied().unwrap_or(0),
            );
            let (l, s) = if lost.is_empty() {
                ("-".to_string(), "-".to_string())
            } else {
                (format!("{:.0}", med(&lost)), format!("{:.0}", med(&sums)))
            };
            println!(
                "{:<16} {:>12} {:>18} {l:>8} {s:>8} {due:>10.0} {:>8} {:>14}",
                format!("{tool}, {}", load.name()),
                if *tool == "bpftrace" {
                    format!("interval:ms:{p}")
                } else {
                    format!("timer.ms({p})")
                },
                format!("{:.0} [{lo}-{hi}]", med(&ran)),
                percent(med(&ran), due),
                if *load == Load::Flood {
                    format!("{:.2e}", rate)
                } else {
                    "-".into()
                },
            );
        }
    }
    println!(
        "hits per second of the hot probe, from all processes (medians): {}",
        hot.join("; ")
    );
    println!(
        "\ntoggle timer.ms({TOGGLE_MS}) flipping `on` of the hot probe `if (on)`: decision line \
         (--otf-debug, printed before otf applies it) after the firing that ran, and after the \
         firing that was due (earlier by the firings lost in between), ms:"
    );
    println!(
        "{:<22} {:>8} {:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "load, edge",
        "toggles",
        "lost before",
        "firing p50",
        "firing p99",
        "firing max",
        "due p50",
        "due p99",
        "due max",
        "no decision"
    );
    for (load, runs) in [(Load::Idle, &tog_idle), (Load::Flood, &tog)] {
        for on in [false, true] {
            let all: Vec<&Toggle> = runs
                .iter()
                .flat_map(|(t, _, _)| t)
                .filter(|t| t.on == on)
                .collect();
            let ms = |f: fn(&Toggle) -> Option<i64>| -> Vec<f64> {
                all.iter()
                    .filter_map(|t| f(t))
                    .map(|n| n as f64 / 1e6)
                    .collect()
            };
            let mut firing = ms(|t| t.from_firing_ns);
            let mut due = ms(|t| t.from_due_ns);
            let lost_before: u64 = all.iter().map(|t| t.lost_before).sum();
            let missing = all.len() - firing.len();
            let f50 = quantile(&mut firing, 0.5);
            let f99 = quantile(&mut firing, 0.99);
            let d50 = quantile(&mut due, 0.5);
            let d99 = quantile(&mut due, 0.99);
            println!(
                "{:<22} {:>8} {lost_before:>12} {f50:>10.1} {f99:>10.1} {:>10.1} {d50:>10.1} \
                 {d99:>10.1} {:>10.1} {missing:>12}",
                format!("{}, {}", load.name(), if on { "re-arm" } else { "disarm" }),
                all.len(),
                firing.last().copied().unwrap_or(f64::NAN),
                due.last().copied().unwrap_or(f64::NAN),
            );
        }
        let reported: u64 = runs.iter().map(|(_, l, _)| l).sum();
        println!(
            "{:<22} toggle firings otf reported lost in all runs: {reported}",
            format!("{}", load.name())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otf_json_lines() {
        let stats = r#"{"type":"stats","pidx":1,"point":"timer.ms(100)","hits":38,"bodies":38,"skipped_cond":0,"skipped_lock":0,"skipped_nest":0,"errors":0,"armed":1,"disarmed":0,"lost":12}"#;
        assert_eq!(
            parse_otf_line(stats),
            Some(OtfLine::Stats {
                pidx: 1,
                point: "timer.ms(100)".into(),
                hits: 38,
                lost: 12
            })
        );
        let dec = r#"{"type":"otf","decision":"unregistering","group":"tracepoint","flavor":"tracepoint","pidx":0}"#;
        assert_eq!(
            parse_otf_line(dec),
            Some(OtfLine::Decision {
                arm: false,
                pidx: 0
            })
        );
        let dec = dec.replace("unregistering", "registering");
        assert_eq!(
            parse_otf_line(&dec),
            Some(OtfLine::Decision { arm: true, pidx: 0 })
        );
        let out = r#"{"type":"output","pidx":1,"text":"otfbench toggle 0 1796109651652705690\n"}"#;
        assert_eq!(
            parse_otf_line(out),
            Some(OtfLine::Output(
                "otfbench toggle 0 1796109651652705690\n".into()
            ))
        );
        // Program-level stats, globals, other decisions and text are not ours.
        for l in [
            r#"{"type":"stats","program":"otf_perf_event","skipped_kernel":0}"#,
            r#"{"type":"global","name":"n","value":2027275}"#,
            r#"{"type":"otf","decision":"something else","pidx":0}"#,
            "ticks=38 fast=3984 hits=1",
            "",
        ] {
            assert_eq!(parse_otf_line(l), None, "{l}");
        }
    }

    #[test]
    fn bpftrace_counts() {
        assert_eq!(parse_bt_count("@ms100: 50"), Some(("ms100".into(), 50)));
        assert_eq!(parse_bt_count("@n: 4990123\n"), Some(("n".into(), 4990123)));
        assert_eq!(parse_bt_count("Attaching 4 probes..."), None);
        assert_eq!(parse_bt_count("@h[12]: 3"), Some(("h[12]".into(), 3)));
        assert_eq!(parse_bt_count("@x: abc"), None);
    }

    #[test]
    fn counts_of_a_timer() {
        let lines = [
            OtfLine::Stats {
                pidx: 1,
                point: "timer.ms(100)".into(),
                hits: 38,
                lost: 12,
            },
            OtfLine::Stats {
                pidx: 2,
                point: "timer.ms(1)".into(),
                hits: 3984,
                lost: 1016,
            },
        ];
        assert_eq!(timer_counts(&lines, "timer.ms(1)"), Some((3984, 1016)));
        assert_eq!(timer_counts(&lines, "timer.ms(10)"), None);
    }

    #[test]
    fn toggle_lines() {
        assert_eq!(
            parse_toggle("otfbench toggle 1 42\n"),
            Some((Some(true), 42))
        );
        assert_eq!(parse_toggle("otfbench toggle 0 7"), Some((Some(false), 7)));
        assert_eq!(parse_toggle("otfbench begin 5\n"), Some((None, 5)));
        assert_eq!(parse_toggle("otfbench toggle 2 7"), None);
        assert_eq!(parse_toggle("toggle 1 7"), None);
    }

    #[test]
    fn toggles_match_decisions_and_count_lost_firings() {
        const MS: i64 = 1_000_000;
        let out = |s: String| OtfLine::Output(s);
        let dec = |arm| OtfLine::Decision { arm, pidx: 0 };
        let lines = vec![
            (0, out("otfbench begin 0\n".into())),
            // First firing due at 500 ms, ran on time; its decision 3 ms later.
            (501 * MS, out(format!("otfbench toggle 0 {}\n", 500 * MS))),
            (503 * MS, dec(false)),
            // A decision on another probe does not count.
            (1001 * MS, OtfLine::Decision { arm: true, pidx: 3 }),
            (1004 * MS, dec(true)),
            (1002 * MS, out(format!("otfbench toggle 1 {}\n", 1000 * MS))),
            // The firing due at 1500 ms was lost: the next ran at 2000 ms.
            (2001 * MS, out(format!("otfbench toggle 0 {}\n", 2000 * MS))),
            (2010 * MS, dec(false)),
            // This one got no decision before the next toggle.
            (2501 * MS, out(format!("otfbench toggle 1 {}\n", 2500 * MS))),
            (3001 * MS, out(format!("otfbench toggle 0 {}\n", 3000 * MS))),
            (3002 * MS, dec(false)),
            // The last toggle got no decision before the end: left out.
            (3500 * MS, out(format!("otfbench toggle 1 {}\n", 3500 * MS))),
        ];
        let t = toggles(&lines, 0, 500 * MS);
        assert_eq!(
            t,
            vec![
                Toggle {
                    on: false,
                    lost_before: 0,
                    from_firing_ns: Some(3 * MS),
                    from_due_ns: Some(3 * MS)
                },
                Toggle {
                    on: true,
                    lost_before: 0,
                    from_firing_ns: Some(4 * MS),
                    from_due_ns: Some(4 * MS)
                },
                Toggle {
                    on: false,
                    lost_before: 1,
                    from_firing_ns: Some(10 * MS),
                    from_due_ns: Some(510 * MS)
                },
                Toggle {
                    on: true,
                    lost_before: 0,
                    from_firing_ns: None,
                    from_due_ns: None
                },
                Toggle {
                    on: false,
                    lost_before: 0,
                    from_firing_ns: Some(2 * MS),
                    from_due_ns: Some(2 * MS)
                },
            ]
        );
    }

    #[test]
    fn scripts() {
        let s = otf_accuracy_script();
        assert!(s.contains(HOT_OTF) && s.contains("timer.ms(100)") && s.contains("timer.ms(1)"));
        let p = bt_accuracy_program();
        assert!(p.contains(READY) && p.contains(HOT_BT) && p.contains("interval:ms:100"));
        let t = otf_toggle_script();
        assert!(t.contains(TOGGLE) && t.contains(BEGIN) && t.contains("if (on)"));
        assert!(t.contains(&format!("timer.ms({TOGGLE_MS})")));
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(38.0, 50.0), "76.0");
        assert_eq!(percent(1.0, 0.0), "-");
    }

    #[test]
    fn a_flood_calls_getppid() {
        let f = Flood::start();
        std::thread::sleep(Duration::from_millis(20));
        assert!(f.stop() > 0);
    }
}
