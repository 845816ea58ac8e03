//! Benchmarks of on-the-fly arming itself: flip latency, uprobe cost per call, and the wall time
//! of a refresh over 500 uprobes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{cprog, measure, median, Ctx, Tracer, Variant, READY};
use crate::util::{display_cmd, shell_quote, which};

/// CLOCK_MONOTONIC in nanoseconds (the clock the C workloads print).
fn monotonic_ns() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// Runs `otf run <extra> -c CMD -e SCRIPT` to completion; returns its stdout lines, each with
/// its arrival time (CLOCK_MONOTONIC ns). Fails if it takes longer than `limit`.
fn run_otf_collect(
    otf: &Path,
    extra: &[&str],
    cmd: &str,
    script: &str,
    limit: Duration,
) -> Result<Vec<(i64, String)>> {
    let mut args = vec!["run"];
    args.extend(extra);
    run_collect(otf, &args, cmd, script, limit)
}

/// Runs `program <args> -c CMD -e SCRIPT` (otf, or strace running otf) like [`run_otf_collect`].
fn run_collect(
    program: &Path,
    args: &[&str],
    cmd: &str,
    script: &str,
    limit: Duration,
) -> Result<Vec<(i64, String)>> {
    let mut c = Command::new(program);
    c.args(args)
        .args(["-c", cmd, "-e", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = c
        .spawn()
        .with_context(|| format!("cannot start {}", display_cmd(&c)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            lines.push((monotonic_ns(), line));
        }
        let _ = tx.send(lines);
    });
    let lines = match rx.recv_timeout(limit) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{}` did not finish within {limit:?}; killed it",
                display_cmd(&c)
            );
        }
    };
    let status = child.wait()?;
    if !status.success() {
        eprintln!("xtask bench: warning: otf exited with {status}");
    }
    Ok(lines)
}

/// The value at quantile `q` (0..=1, nearest rank) of `v`, sorted in place.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Parses the flip program's `otfbench flip PATH on|off NS` lines into (path, edge, ns); a
/// timeout (-1) gives `None` as the value.
fn parse_flips(lines: &[(i64, String)]) -> Vec<(String, String, Option<f64>)> {
    lines
        .iter()
        .filter_map(|(_, l)| {
            let mut w = l.strip_prefix("otfbench flip ")?.split_whitespace();
            let (path, edge, ns) = (w.next()?, w.next()?, w.next()?.parse::<i64>().ok()?);
            Some((
                path.to_string(),
                edge.to_string(),
                (ns >= 0).then_some(ns as f64),
            ))
        })
        .collect()
}

/// The tracepoint target of flip-latency: `raw_syscalls:sys_enter` probed `if (tpon)`, flipped
/// by uprobes on `tp_on`/`tp_off`. A hit is not seen by its body (the body stops at the flip,
/// when the condition turns false, before the kernel detaches anything) but at the hook itself:
/// the program counts `run_cnt` while it is attached, and every syscall of this program runs it.
/// The program turns the kernel's run statistics on for its own lifetime (`BPF_ENABLE_STATS`,
/// released with its fd at exit), finds the raw-tracepoint programs loaded (otf's: the machine
/// runs no other while benchmarking) and polls the sum of their `run_cnt` with
/// `BPF_OBJ_GET_INFO_BY_FD`, itself a syscall. *on*: the first poll whose count grew; *off*: the
/// last one, once 40 ms passed without growth. (Until 2026-12-01 evening the hit was a batch of
/// `getppid` timed slower than armed and disarmed's midpoint: 270 vs 341 ns per call made a
/// thin margin that something on the machine kept crossing.) Prints `otfbench flip tracepoint on|off NS` as
/// [`FLIP`] does, and `otfbench tpprogs N`.
///
/// [`FLIP`]: super::cprog::FLIP
const FLIP_TP: &str = r#"
#include <string.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
__attribute__((noinline)) void tp_on(void) { __asm__ volatile(""); }
__attribute__((noinline)) void tp_off(void) { __asm__ volatile(""); }
static int progs[64], nprogs;
static long bpfc(int cmd, union bpf_attr *a) { return syscall(SYS_bpf, cmd, a, sizeof *a); }
static void find_progs(void) {
    union bpf_attr a; unsigned int id = 0;
    for (;;) {
        memset(&a, 0, sizeof a); a.start_id = id;
        if (bpfc(BPF_PROG_GET_NEXT_ID, &a)) break;
        id = a.next_id;
        memset(&a, 0, sizeof a); a.prog_id = id;
        int fd = bpfc(BPF_PROG_GET_FD_BY_ID, &a);
        if (fd < 0) continue;
        struct bpf_prog_info info; memset(&info, 0, sizeof info);
        memset(&a, 0, sizeof a); a.info.bpf_fd = fd; a.info.info_len = sizeof info;
        a.info.info = (unsigned long)&info;
        if (bpfc(BPF_OBJ_GET_INFO_BY_FD, &a) == 0 && info.type == BPF_PROG_TYPE_RAW_TRACEPOINT
            && nprogs < 64) progs[nprogs++] = fd;
        else close(fd);
    }
}
static unsigned long long runs(void) {
    unsigned long long n = 0;
    for (int i = 0; i < nprogs; i++) {
        struct bpf_prog_info info; memset(&info, 0, sizeof info);
        union bpf_attr a; memset(&a, 0, sizeof a);
        a.info.bpf_fd = progs[i]; a.info.info_len = sizeof info; a.info.info = (unsigned long)&info;
        if (bpfc(BPF_OBJ_GET_INFO_BY_FD, &a) == 0) n += info.run_cnt;
    }
    return n;
}
/* ns from t0 to the first poll that saw the count grow; -1 on timeout */
static long long wait_on(long long t0) {
    unsigned long long prev = runs();
    for (;;) {
        unsigned long long r = runs(); long long b = now();
        if (r > prev) return b - t0;
        prev = r;
        if (b - t0 > 3000000000LL) return -1;
    }
}
/* ns from t0 to the last poll that saw the count grow, once it stayed put for 40 ms */
static long long wait_off(long long t0) {
    unsigned long long prev = runs(); long long last = t0;
    for (;;) {
        unsigned long long r = runs(); long long b = now();
        if (r > prev) last = b;
        prev = r;
        if (b - last > 40000000LL) return last - t0;
        if (b - t0 > 3000000000LL) return -1;
    }
}
int main(int argc, char **argv) {
    int cycles = argc > 1 ? atoi(argv[1]) : 20;
    setvbuf(stdout, NULL, _IOLBF, 0);
    srand(getpid());
    union bpf_attr a; memset(&a, 0, sizeof a); a.enable_stats.type = BPF_STATS_RUN_TIME;
    if (bpfc(BPF_ENABLE_STATS, &a) < 0) { perror("BPF_ENABLE_STATS"); return 1; }
    find_progs();
    printf("otfbench tpprogs %d\n", nprogs);
    usleep(300000);
    for (int i = 0; i < cycles; i++) {
        long long t0 = now();
        tp_on();
        printf("otfbench flip tracepoint on %lld\n", wait_on(t0));
        usleep(150000 + rand() % 100000);
        t0 = now();
        tp_off();
        printf("otfbench flip tracepoint off %lld\n", wait_off(t0));
        usleep(200000 + rand() % 100000);
    }
    return 0;
}
"#;

/// Flip latency: from a flip of `on` to the first hit (on) and the last hit (off) of a uprobe
/// `if (on)`, flipped by a uprobe body and by a `timer:itimer_state` tracepoint body (a timer
/// interrupt tracepoint: until 2026-12-01 an "unsafe" context whose flips waited for the
/// --otf-interval 100ms timer; both now wake otf at once); the two alternate within one run.
/// Then, in a second session, of a tracepoint `if (tpon)` ([`FLIP_TP`]), flipped by uprobes.
pub fn bench_flip_latency(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        println!("(needs otf)");
        return Ok(());
    };
    let dir = cprog::dir()?;
    let exe = cprog::build(&dir, "flip", cprog::FLIP, "full")?;
    cprog::check_first_insn(&exe, "work", "endbr64")?;
    let p = exe.display();
    let script = format!(
        "global on = 0, n\n\
         probe process(\"{p}\").function(\"work\") if (on) {{ n++ }}\n\
         probe process(\"{p}\").function(\"flip_on\") {{ on = 1 }}\n\
         probe process(\"{p}\").function(\"flip_off\") {{ on = 0 }}\n\
         probe kernel.trace(\"timer:itimer_state\") {{ if (pid() == target()) on = 1 - on }}\n"
    );
    let cycles = ctx.opts.flips;
    println!(
        "{cycles} flips per path and edge; a hit is two consecutive calls of an endbr64 function \
         slower than 3 us (armed: ~10 us; disarmed: ~2 ns)"
    );
    // `exec`: target() is the pid of the shell that otf starts (the command would be its child).
    let cmd = format!("exec {} {cycles}", shell_quote(&exe.to_string_lossy()));
    let limit = Duration::from_secs(60 + 10 * cycles as u64);
    let lines = run_otf_collect(otf, &["--otf-interval", "100ms"], &cmd, &script, limit)?;
    let mut flips = parse_flips(&lines);
    // The same uprobe flips with otf's opt-in `--otf-rcu-expedited` (system-wide knob, set for
    // that session only): the uprobe rows without the kernel's normal grace period.
    if std::fs::read_to_string("/sys/kernel/rcu_expedited").is_ok_and(|v| v.trim() != "0") {
        println!("(warning: /sys/kernel/rcu_expedited is already set: every row is expedited)");
    }
    let exp_lines = run_otf_collect(
        otf,
        &["--otf-interval", "100ms", "--otf-rcu-expedited"],
        &cmd,
        &script,
        limit,
    )?;
    flips.extend(
        parse_flips(&exp_lines)
            .into_iter()
            .map(|(path, edge, v)| (format!("{path}+rcu"), edge, v)),
    );
    // The tracepoint, in its own session.
    let tp_exe = cprog::build(&dir, "fliptp", FLIP_TP, "full")?;
    let tp = tp_exe.display();
    let tp_script = format!(
        "global tpon = 0, n\n\
         probe kernel.trace(\"raw_syscalls:sys_enter\") if (tpon) {{ n++ }}\n\
         probe process(\"{tp}\").function(\"tp_on\") {{ tpon = 1 }}\n\
         probe process(\"{tp}\").function(\"tp_off\") {{ tpon = 0 }}\n"
    );
    let tp_cmd = format!("exec {} {cycles}", shell_quote(&tp_exe.to_string_lossy()));
    let tp_lines = run_otf_collect(
        otf,
        &["--otf-interval", "100ms"],
        &tp_cmd,
        &tp_script,
        limit,
    )?;
    match tp_lines
        .iter()
        .find_map(|(_, l)| l.strip_prefix("otfbench tpprogs "))
    {
        Some(n) if n.trim() != "0" => println!(
            "tracepoint: a hit is a run of the program at the hook ({} raw-tracepoint program(s) \
             polled for run_cnt)",
            n.trim()
        ),
        _ => println!("(warning: no raw-tracepoint program found: the tracepoint rows time out)"),
    }
    flips.extend(parse_flips(&tp_lines));
    if flips.is_empty() {
        bail!(
            "the flip program printed nothing; otf said:\n{}",
            lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    println!(
        "{:<52} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "target (flipper), edge", "flips", "p50 ms", "p99 ms", "min ms", "max ms", "timeouts"
    );
    for (path, label) in [
        ("immediate", "uprobe (uprobe flip)"),
        ("timer", "uprobe (itimer flip)"),
        ("immediate+rcu", "uprobe (uprobe flip), rcu_expedited"),
        ("timer+rcu", "uprobe (itimer flip), rcu_expedited"),
        ("tracepoint", "tracepoint (uprobe flip)"),
    ] {
        for edge in ["on", "off"] {
            let all: Vec<&Option<f64>> = flips
                .iter()
                .filter(|(p, e, _)| p == path && e == edge)
                .map(|(_, _, v)| v)
                .collect();
            let mut v: Vec<f64> = all.iter().filter_map(|x| x.map(|ns| ns / 1e6)).collect();
            let timeouts = all.len() - v.len();
            let what = if edge == "on" {
                "first hit"
            } else {
                "last hit"
            };
            let p50 = quantile(&mut v, 0.5);
            let p99 = quantile(&mut v, 0.99);
            let min = v.first().copied().unwrap_or(f64::NAN);
            let max = v.last().copied().unwrap_or(f64::NAN);
            println!(
                "{:<52} {:>6} {p50:>10.3} {p99:>10.3} {min:>10.3} {max:>10.3} {timeouts:>8}",
                format!("{label}, {edge} ({what})"),
                all.len()
            );
        }
    }
    cprog::cleanup(ctx, &dir);
    Ok(())
}

/// ns per call of a function starting with endbr64 and one starting with push %rbp: no probe,
/// a disarmed otf uprobe, otf --no-otf, bpftrace's false predicate.
pub fn bench_uprobes(ctx: &Ctx) -> Result<()> {
    let dir = cprog::dir()?;
    for (name, cf, first) in [
        ("loop-endbr64", "full", "endbr64"),
        ("loop-push", "none", "push %rbp"),
    ] {
        let exe = cprog::build(&dir, name, cprog::LOOP, cf)?;
        cprog::check_first_insn(&exe, "f", first)?;
        println!("-- f starts with `{first}` ({})", exe.display());
        let p = exe.to_string_lossy().into_owned();
        let script = format!(
            "global on = 0, n\n\
             probe begin {{ println(\"{READY}\") }}\n\
             probe process(\"{p}\").function(\"f\") if (on) {{ n++ }}\n"
        );
        let mut variants = vec![Variant {
            name: "no probe".into(),
            tracer: None,
        }];
        if let Some(otf) = &ctx.otf {
            for (vname, extra) in [
                ("otf, condition false (disarmed)", &[][..]),
                ("otf --no-otf, condition false (armed)", &["--no-otf"][..]),
            ] {
                variants.push(Variant::otf(vname, otf, extra, &script));
            }
        }
        if let Some(bt) = &ctx.bpftrace {
            variants.push(Variant {
                name: "bpftrace, predicate /0/".into(),
                tracer: Some(Tracer::new(
                    vec![
                        bt.to_string_lossy().into_owned(),
                        "-B".into(),
                        "line".into(),
                        "-e".into(),
                        format!("BEGIN {{ printf(\"{READY}\\n\") }} uprobe:{p}:f /0/ {{ }}"),
                    ],
                    READY,
                )),
            });
        }
        let calls = ctx.opts.uprobe_calls;
        let workload = |_n: u64| -> f64 {
            Command::new(&exe)
                .arg(calls.to_string())
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                .unwrap_or(f64::NAN)
        };
        measure(ctx, &variants, &workload)?;
    }
    cprog::cleanup(ctx, &dir);
    Ok(())
}

/// One refresh cycle of the refresh program: flip time, edge, workload-seen latency, and the
/// arrival of the last otf decision line after the flip.
#[derive(Debug, Clone, PartialEq)]
struct RefreshCycle {
    on: bool,
    seen_ns: Option<f64>,
    last_decision_ns: Option<f64>,
}

/// Matches each `otfbench refresh on|off T0 D` line with the otf decision lines that arrived
/// after T0 and before the next flip.
fn parse_refresh(lines: &[(i64, String)]) -> Vec<RefreshCycle> {
    let flips: Vec<(bool, i64, i64)> = lines
        .iter()
        .filter_map(|(_, l)| {
            let mut w = l.strip_prefix("otfbench refresh ")?.split_whitespace();
            let on = w.next()? == "on";
            let t0 = w.next()?.parse().ok()?;
            let d = w.next()?.parse().ok()?;
            Some((on, t0, d))
        })
        .collect();
    flips
        .iter()
        .enumerate()
        .map(|(i, &(on, t0, d))| {
            let end = flips.get(i + 1).map_or(i64::MAX, |f| f.1);
            let last = lines
                .iter()
                .filter(|(t, l)| *t >= t0 && *t < end && !l.starts_with("otfbench"))
                .map(|(t, _)| *t)
                .max();
            RefreshCycle {
                on,
                seen_ns: (d >= 0).then_some(d as f64),
                last_decision_ns: last.map(|t| (t - t0) as f64),
            }
        })
        .collect()
}

/// Refreshes in `strace -f -ttt -T` output of otf: from the main thread's return from
/// `epoll_wait` to its next `epoll_wait`, when a `BPF_LINK_CREATE` (re-arm) or a `close` (disarm)
/// happened on any thread in between. Returns (re-arm?, ms).
fn parse_strace(text: &str) -> Vec<(bool, f64)> {
    let mut main: Option<&str> = None;
    let mut wake_end: Option<f64> = None;
    let (mut create, mut close) = (false, false);
    let mut out = Vec::new();
    for line in text.lines() {
        // "PID TS CALL": strace pads PID with spaces to the widest pid seen.
        let Some((pid, r)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = r.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        let main_pid = *main.get_or_insert(pid);
        let rest = rest.trim_start();
        let is_wait = rest.starts_with("epoll_wait(") || rest.starts_with("epoll_pwait(");
        if pid == main_pid && is_wait {
            if let Some(w) = wake_end.take() {
                if create || close {
                    out.push((create, (ts - w) * 1e3));
                }
            }
            (create, close) = (false, false);
            if !rest.contains("<unfinished") {
                let dur = rest
                    .rsplit_once('<')
                    .and_then(|(_, d)| d.trim_end_matches('>').parse::<f64>().ok());
                wake_end = dur.map(|d| ts + d);
            }
        } else if pid == main_pid
            && (rest.starts_with("<... epoll_wait resumed>")
                || rest.starts_with("<... epoll_pwait resumed>"))
        {
            wake_end = Some(ts);
        } else if wake_end.is_some() {
            create |= rest.contains("BPF_LINK_CREATE");
            close |= rest.starts_with("close(");
        }
    }
    out
}

/// The wall time of a refresh that disarms, and one that re-arms, 500 uprobes.
pub fn bench_refresh_500(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        println!("(needs otf)");
        return Ok(());
    };
    const N: usize = 500;
    let dir = cprog::dir()?;
    let exe = cprog::build(&dir, "refresh", &cprog::refresh_source(N), "none")?;
    cprog::check_first_insn(&exe, "bench_fn_0", "push %rbp")?;
    let p = exe.display();
    let script = format!(
        "global on = 1, n\n\
         probe process(\"{p}\").function(\"bench_fn_*\") if (on) {{ n++ }}\n\
         probe process(\"{p}\").function(\"flip_on\") {{ on = 1 }}\n\
         probe process(\"{p}\").function(\"flip_off\") {{ on = 0 }}\n"
    );
    let cycles = ctx.opts.refreshes;
    println!(
        "{cycles} refreshes each way over {N} uprobes (push %rbp functions); `seen` is flip → end \
         of the first round of {N} calls with ≥99% (on) or ≤1% (off) of them slower than 250 ns; \
         `decisions` is flip → arrival of otf's last --otf-debug line (printed before it \
         applies them); `in otf` is, in a second run under strace, wake-up → back in epoll_wait"
    );
    // `exec`: target() is the pid of the shell that otf starts (the command would be its child).
    let cmd = format!("exec {} {cycles}", shell_quote(&exe.to_string_lossy()));
    let limit = Duration::from_secs(120 + 15 * cycles as u64);
    let lines = run_otf_collect(otf, &["--otf-debug"], &cmd, &script, limit)?;
    let cycles = parse_refresh(&lines);
    // The same again under strace, which sees the refresh inside otf (it slows syscalls down).
    let traced = match which("strace") {
        None => {
            println!("(strace is not installed: no in-otf refresh times)");
            Vec::new()
        }
        Some(strace) => {
            let log = dir.join("strace.log");
            let log_s = log.to_string_lossy().into_owned();
            let otf_s = otf.to_string_lossy().into_owned();
            let argv = [
                "-f",
                "-ttt",
                "-T",
                "-e",
                "trace=close,bpf,epoll_wait,epoll_pwait",
                "-o",
                &log_s,
                &otf_s,
                "run",
            ];
            run_collect(&strace, &argv, &cmd, &script, limit)?;
            let text = std::fs::read_to_string(&log)
                .with_context(|| format!("cannot read {}", log.display()))?;
            parse_strace(&text)
        }
    };
    if cycles.is_empty() {
        bail!(
            "the refresh program printed nothing; otf said:\n{}",
            lines
                .iter()
                .map(|(_, l)| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if let Some((_, l)) = lines.iter().find(|(_, l)| !l.starts_with("otfbench")) {
        println!("(a decision line looks like: {l})");
    }
    println!(
        "{:<16} {:>6} {:>14} {:>14} {:>16} {:>16} {:>14} {:>14}",
        "refresh",
        "runs",
        "seen p50 ms",
        "seen max ms",
        "decisions p50",
        "decisions max",
        "in otf p50",
        "in otf max"
    );
    for on in [false, true] {
        let mine: Vec<&RefreshCycle> = cycles.iter().filter(|c| c.on == on).collect();
        let mut seen: Vec<f64> = mine
            .iter()
            .filter_map(|c| c.seen_ns)
            .map(|n| n / 1e6)
            .collect();
        let mut dec: Vec<f64> = mine
            .iter()
            .filter_map(|c| c.last_decision_ns)
            .map(|n| n / 1e6)
            .collect();
        let s50 = median(&mut seen);
        let smax = seen.last().copied().unwrap_or(f64::NAN);
        let d50 = median(&mut dec);
        let dmax = dec.last().copied().unwrap_or(f64::NAN);
        let mut ins: Vec<f64> = traced
            .iter()
            .filter(|(c, _)| *c == on)
            .map(|(_, ms)| *ms)
            .collect();
        let i50 = median(&mut ins);
        let imax = ins.last().copied().unwrap_or(f64::NAN);
        println!(
            "{:<16} {:>6} {s50:>14.2} {smax:>14.2} {d50:>16.2} {dmax:>16.2} {i50:>14.2} {imax:>14.2}",
            if on { "re-arm 500" } else { "disarm 500" },
            mine.len()
        );
    }
    cprog::cleanup(ctx, &dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut [3.0], 0.99), 3.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn flips_parse() {
        let lines = vec![
            (1, "otfbench flip immediate on 12345".to_string()),
            (2, "noise".to_string()),
            (3, "otfbench flip timer off -1".to_string()),
        ];
        assert_eq!(
            parse_flips(&lines),
            vec![
                ("immediate".into(), "on".into(), Some(12345.0)),
                ("timer".into(), "off".into(), None)
            ]
        );
    }

    #[test]
    fn refresh_parse_matches_decisions_to_flips() {
        let lines = vec![
            (100, "otf: arm".to_string()),
            (1_500, "otf: disarm 1".to_string()),
            (1_900, "otf: disarm 2".to_string()),
            (2_100, "otfbench refresh off 1000 300".to_string()),
            (5_300, "otf: arm 1".to_string()),
            (6_000, "otfbench refresh on 5000 -1".to_string()),
        ];
        assert_eq!(
            parse_refresh(&lines),
            vec![
                RefreshCycle {
                    on: false,
                    seen_ns: Some(300.0),
                    last_decision_ns: Some(900.0)
                },
                RefreshCycle {
                    on: true,
                    seen_ns: None,
                    last_decision_ns: Some(300.0)
                },
            ]
        );
    }

    #[test]
    fn strace_refreshes() {
        let log = "\
10 1.000000 close(3)        = 0 <0.000045>
10 1.100000 epoll_wait(5, [{events=EPOLLIN, data={u32=2, u64=2}}], 8, -1) = 1 <0.099315>
10 1.200000 epoll_wait(5, [{events=EPOLLIN, data={u32=1, u64=1}}], 8, -1) = 1 <0.050000>
10 1.255000 bpf(BPF_LINK_CREATE, {link_create={prog_fd=18}, ...}, 144 <unfinished ...>
12 1.256000 +++ exited with 0 +++
10 1.265000 <... bpf resumed>) = 23 <0.010000>
10 1.270000 epoll_wait(5, [{events=EPOLLIN, data={u32=1, u64=1}}], 8, -1) = 1 <0.030000>
11  1.305000 close(23)       = 0 <0.040000>
10 1.350000 epoll_wait(5,  <unfinished ...>
11 1.400000 close(22)       = 0 <0.040000>
10 1.500000 <... epoll_wait resumed>[{events=EPOLLIN, data={u32=3, u64=3}}], 8, -1) = 1 <0.1>
10 1.600000 close(20)       = 0 <0.000037>
";
        let r = parse_strace(log);
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(r[0].0 && (r[0].1 - 20.0).abs() < 1e-6, "{r:?}");
        assert!(!r[1].0 && (r[1].1 - 50.0).abs() < 1e-6, "{r:?}");
    }
}
