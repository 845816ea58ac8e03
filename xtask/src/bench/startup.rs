//! `startup`: the time from exec to armed and from SIGINT to exit, otf and bpftrace side by
//! side, on 1, 360 (`syscalls:sys_enter_*`) and all tracepoints, with the time the kernel spent
//! in `BPF_PROG_LOAD` (the verifier and the JIT) when bpftrace can watch it.
//!
//! *Armed* is when the tracer releases its `-c` command: both start the command stopped and let
//! it run only once every probe is attached (otf: after the start plan is applied; bpftrace:
//! after its attach loops). The command is `/bin/sh armed.sh`, which prints [`ARMED`] and
//! sleeps. A begin probe would not do: otf runs `begin` before it arms, and bpftrace prints
//! "Attaching N probes..." before it attaches. The first hit of a probe would not either: with
//! hundreds of tracepoints, the first one hit says nothing about the others.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{cprog, median, Ctx};
use crate::util::display_cmd;

/// What the `-c` command prints once the tracer has released it.
const ARMED: &str = "otf-bench-armed";
/// What the load watcher prints per `BPF_PROG_LOAD`: `LOAD PID NS RET`.
const LOAD: &str = "otf-bench-load";
/// How long a tracer may take to arm, and to exit after SIGINT.
const ARM_LIMIT: Duration = Duration::from_secs(180);
const EXIT_LIMIT: Duration = Duration::from_secs(600);

/// A set of tracepoints: its label, the pattern for otf's `kernel.trace(...)` and bpftrace's
/// probe, and whether it is large (slow to detach: run `--startup-reps` times).
struct Set {
    label: &'static str,
    otf: &'static str,
    bpftrace: &'static str,
    large: bool,
}

const SETS: &[Set] = &[
    Set {
        label: "1 (sys_enter_getppid)",
        otf: "syscalls:sys_enter_getppid",
        bpftrace: "tracepoint:syscalls:sys_enter_getppid",
        large: false,
    },
    Set {
        label: "syscalls:sys_enter_*",
        otf: "syscalls:sys_enter_*",
        bpftrace: "tracepoint:syscalls:sys_enter_*",
        large: true,
    },
    Set {
        label: "* (all)",
        otf: "*",
        bpftrace: "tracepoint:*:*",
        large: true,
    },
];

/// One run of a tracer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sample {
    /// exec → the `-c` command's [`ARMED`] line.
    pub(super) armed_ms: f64,
    /// SIGINT → the tracer reaped.
    pub(super) exit_ms: f64,
    /// `BPF_PROG_LOAD` calls of the tracer and their summed duration, if watched.
    pub(super) loads: Option<(u64, f64)>,
    /// The count in bpftrace's "Attaching N probes..." line.
    pub(super) attaching: Option<u64>,
}

/// Parses the load watcher's `otf-bench-load PID NS RET` line.
fn parse_load(line: &str) -> Option<(u32, u64, i64)> {
    let mut w = line.strip_prefix(LOAD)?.split_whitespace();
    let pid = w.next()?.parse().ok()?;
    let ns = w.next()?.parse().ok()?;
    let ret = w.next()?.parse().ok()?;
    Some((pid, ns, ret))
}

/// The N of bpftrace's `Attaching N probes...` (or `Attaching 1 probe...`).
fn parse_attaching(line: &str) -> Option<u64> {
    line.trim()
        .strip_prefix("Attaching ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The load watcher: bpftrace on `sys_enter_bpf`/`sys_exit_bpf` printing the duration of
/// every `BPF_PROG_LOAD` (cmd 5) with the caller's pid. It is armed before any tracer starts,
/// and it loads nothing once armed, so it never sees itself.
pub(super) struct Watcher {
    child: std::process::Child,
    loads: Arc<Mutex<Vec<(u32, u64, i64)>>>,
    stopped: bool,
}

impl Watcher {
    fn start(bpftrace: &Path, armed_sh: &Path) -> Result<Watcher> {
        let program = format!(
            "tracepoint:syscalls:sys_enter_bpf /args->cmd == 5/ {{ @t[tid] = nsecs; }} \
             tracepoint:syscalls:sys_exit_bpf /@t[tid]/ {{ \
             printf(\"{LOAD} %d %d %d\\n\", pid, nsecs - @t[tid], args->ret); delete(@t[tid]); }}"
        );
        let mut cmd = Command::new(bpftrace);
        cmd.args(["-B", "line", "-c"])
            .arg(format!("/bin/sh {}", armed_sh.display()))
            .args(["-e", &program]);
        let sp = spawn(&mut cmd, true)?;
        let loads = Arc::new(Mutex::new(Vec::new()));
        let mut w = Watcher {
            child: sp.child,
            loads: loads.clone(),
            stopped: false,
        };
        let (lines, armed) = (sp.lines, sp.armed);
        std::thread::spawn(move || {
            for line in lines {
                if let Some(l) = parse_load(&line) {
                    loads.lock().unwrap_or_else(|e| e.into_inner()).push(l);
                }
            }
        });
        match armed.recv_timeout(Duration::from_secs(60)) {
            Ok(_) => Ok(w),
            Err(_) => {
                w.stop();
                bail!("the load watcher `{}` did not arm", display_cmd(&cmd))
            }
        }
    }

    /// The loads of process `pid` so far: count and total ms.
    fn loads_of(&self, pid: u32) -> (u64, f64) {
        let l = self.loads.lock().unwrap_or_else(|e| e.into_inner());
        l.iter()
            .filter(|(p, _, _)| *p == pid)
            .fold((0, 0.0), |(n, ms), (_, ns, _)| {
                (n + 1, ms + *ns as f64 / 1e6)
            })
    }

    fn stop(&mut self) {
        if !std::mem::replace(&mut self.stopped, true) {
            stop_group(&mut self.child, Duration::from_secs(60));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A spawned tracer.
struct Spawned {
    child: std::process::Child,
    /// Its stdout lines.
    lines: mpsc::Receiver<String>,
    /// When its stdout had the [`ARMED`] line.
    armed: mpsc::Receiver<Instant>,
    /// The end of its stderr, unless inherited.
    stderr: Arc<Mutex<String>>,
}

/// Starts `cmd` in its own process group with SIGINT at its default, stdout piped (read by a
/// thread) and stderr kept in [`Spawned::stderr`], or inherited if `inherit_stderr`.
fn spawn(cmd: &mut Command, inherit_stderr: bool) -> Result<Spawned> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(if inherit_stderr {
        Stdio::inherit()
    } else {
        Stdio::piped()
    });
    // SAFETY: the closure runs in the child between fork and exec and only calls setpgid(2)
    // and signal(2), which are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, || {
            libc::setpgid(0, 0);
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", display_cmd(cmd)))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (armed_tx, armed_rx) = mpsc::channel();
    let (line_tx, line_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.trim() == ARMED {
                let _ = armed_tx.send(Instant::now());
            }
            let _ = line_tx.send(line);
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(mut e) = child.stderr.take() {
        let buf = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = e.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
                b.push_str(&String::from_utf8_lossy(&chunk[..n]));
                // Keep the last 16 KiB (a failed `kernel.trace("*")` can print thousands of
                // lines).
                if b.len() > 32 << 10 {
                    let cut = b.len() - (16 << 10);
                    let cut = (cut..b.len()).find(|&i| b.is_char_boundary(i)).unwrap_or(0);
                    b.drain(..cut);
                }
            }
        });
    }
    Ok(Spawned {
        child,
        lines: line_rx,
        armed: armed_rx,
        stderr,
    })
}

/// Sends SIGINT to `child`, waits up to `limit` for it to exit (then SIGKILL), and kills what
/// is left of its process group (the `-c` command). Returns the time to exit, or `None` if it
/// had to be killed.
fn stop_group(child: &mut std::process::Child, limit: Duration) -> Option<Duration> {
    let pid = child.id() as libc::pid_t;
    let t = Instant::now();
    let mut took = None;
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill on our own child's pid; it has not been reaped yet (we own the Child).
        unsafe { libc::kill(pid, libc::SIGINT) };
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                took = Some(t.elapsed());
                break;
            }
            if t.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // SAFETY: the process group our child created (setpgid(0, 0) in pre_exec): the tracer and
    // its `-c` command; an empty group gives ESRCH.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    took
}

/// One run: starts the tracer, waits until its `-c` command prints [`ARMED`], lets it run for
/// 300 ms, stops it with SIGINT and waits for it.
pub(super) fn run_once(cmd: &mut Command, watcher: Option<&Watcher>) -> Result<Sample> {
    let t0 = Instant::now();
    let mut sp = spawn(cmd, false)?;
    let stderr = sp.stderr.clone();
    let pid = sp.child.id();
    let err_text = |stderr: &Arc<Mutex<String>>| {
        stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .trim_end()
            .to_string()
    };
    let armed_at = loop {
        match sp.armed.recv_timeout(Duration::from_millis(10)) {
            Ok(t) => break t,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                stop_group(&mut sp.child, Duration::from_secs(5));
                bail!(
                    "`{}` ended before arming:\n{}",
                    display_cmd(cmd),
                    err_text(&stderr)
                );
            }
        }
        if t0.elapsed() > ARM_LIMIT {
            stop_group(&mut sp.child, EXIT_LIMIT);
            bail!(
                "`{}` did not arm within {ARM_LIMIT:?}:\n{}",
                display_cmd(cmd),
                err_text(&stderr)
            );
        }
    };
    let armed_ms = (armed_at - t0).as_secs_f64() * 1e3;
    std::thread::sleep(Duration::from_millis(300));
    let exit = stop_group(&mut sp.child, EXIT_LIMIT);
    let Some(exit) = exit else {
        bail!(
            "`{}` did not exit within {EXIT_LIMIT:?} of SIGINT; killed it",
            display_cmd(cmd)
        );
    };
    let status = sp.child.wait()?;
    if !status.success() {
        eprintln!(
            "xtask bench: warning: `{}` exited with {status}: {}",
            display_cmd(cmd),
            err_text(&stderr)
        );
    }
    let attaching = sp.lines.try_iter().find_map(|l| parse_attaching(&l));
    // The watcher prints each load as it ends; all ended before the tracer armed.
    let loads = watcher.map(|w| w.loads_of(pid));
    Ok(Sample {
        armed_ms,
        exit_ms: exit.as_secs_f64() * 1e3,
        loads,
        attaching,
    })
}

/// The number of lines `cmd` prints (a probe listing), or `None` if it fails.
fn count_listed(cmd: &mut Command) -> Option<u64> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).lines().count() as u64)
}

/// One row of the report: a set, a tool, the probes it resolves, and its runs.
struct Row {
    set: &'static str,
    tool: &'static str,
    probes: Option<u64>,
    samples: Vec<Sample>,
}

/// The table: per set and tool the probes, runs, median/min/max ms to armed, the program loads
/// (count and ms, medians) and the median and max ms to exit.
fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<22} {:<9} {:>7} {:>5} {:>10} {:>9} {:>9} {:>11} {:>9} {:>10} {:>10}\n",
        "tracepoints",
        "tool",
        "probes",
        "runs",
        "armed p50",
        "min",
        "max",
        "prog loads",
        "load ms",
        "exit p50",
        "exit max"
    );
    for r in rows {
        let mut armed: Vec<f64> = r.samples.iter().map(|s| s.armed_ms).collect();
        let mut exit: Vec<f64> = r.samples.iter().map(|s| s.exit_ms).collect();
        let mut nloads: Vec<f64> = r
            .samples
            .iter()
            .filter_map(|s| s.loads.map(|l| l.0 as f64))
            .collect();
        let mut load_ms: Vec<f64> = r
            .samples
            .iter()
            .filter_map(|s| s.loads.map(|l| l.1))
            .collect();
        let a50 = median(&mut armed);
        let (amin, amax) = (
            armed.first().copied().unwrap_or(f64::NAN),
            armed.last().copied().unwrap_or(f64::NAN),
        );
        let e50 = median(&mut exit);
        let emax = exit.last().copied().unwrap_or(f64::NAN);
        let (loads, lms) = if nloads.is_empty() {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.0}", median(&mut nloads)),
                format!("{:.1}", median(&mut load_ms)),
            )
        };
        let probes = r.probes.map_or("?".to_string(), |n| n.to_string());
        out.push_str(&format!(
            "{:<22} {:<9} {probes:>7} {:>5} {a50:>10.1} {amin:>9.1} {amax:>9.1} {loads:>11} \
             {lms:>9} {e50:>10.1} {emax:>10.1}\n",
            r.set,
            r.tool,
            r.samples.len()
        ));
    }
    out
}

/// The startup benchmark.
pub fn bench_startup(ctx: &Ctx) -> Result<()> {
    if ctx.otf.is_none() && ctx.bpftrace.is_none() {
        println!("(needs otf or bpftrace)");
        return Ok(());
    }
    if ctx.bpftrace.is_none() {
        println!("(bpftrace is not installed: its rows, and the program load times, are skipped)");
    }
    let dir = cprog::dir()?;
    let r = startup(ctx, &dir);
    cprog::cleanup(ctx, &dir);
    r
}

/// Writes `dir/armed.sh`, the `-c` command: it prints [`ARMED`] and sleeps.
pub(super) fn write_armed_sh(dir: &Path) -> Result<PathBuf> {
    let armed_sh = dir.join("armed.sh");
    std::fs::write(&armed_sh, format!("echo {ARMED}\nexec sleep 3600\n"))
        .with_context(|| format!("cannot write {}", armed_sh.display()))?;
    Ok(armed_sh)
}

/// The load watcher if bpftrace is installed and it arms; says why not if it does not.
pub(super) fn start_watcher(ctx: &Ctx, armed_sh: &Path) -> Option<Watcher> {
    match Watcher::start(ctx.bpftrace.as_ref()?, armed_sh) {
        Ok(w) => Some(w),
        Err(e) => {
            println!("(no program load times: {e:#})");
            None
        }
    }
}

fn startup(ctx: &Ctx, dir: &Path) -> Result<()> {
    let armed_sh = write_armed_sh(dir)?;
    let c_arg = format!("/bin/sh {}", armed_sh.display());
    let otf_cmd = |pattern: &str| {
        ctx.otf.as_ref().map(|otf| {
            let mut c = Command::new(otf);
            c.args(["run", "-c", &c_arg, "-e"]).arg(format!(
                "global n\nprobe kernel.trace(\"{pattern}\") {{ n++ }}\n"
            ));
            c
        })
    };
    let bt_cmd = |pattern: &str| {
        ctx.bpftrace.as_ref().map(|bt| {
            let mut c = Command::new(bt);
            // bpftrace refuses more than 512 probes or programs unless told.
            c.env("BPFTRACE_MAX_PROBES", "100000")
                .env("BPFTRACE_MAX_BPF_PROGS", "100000")
                .args(["-B", "line", "-c", &c_arg, "-e"])
                .arg(format!("{pattern} {{ @n = count() }}"));
            c
        })
    };
    let watcher = start_watcher(ctx, &armed_sh);
    println!(
        "armed: exec → the tracer releases its -c command (after its last attach); exit: SIGINT \
         → reaped; prog loads: BPF_PROG_LOAD calls (verifier and JIT, feature probes included) \
         and their summed time, as a bpftrace watcher on sys_enter/exit_bpf saw them; body \
         `n++` (bpftrace `@n = count()`) on every probe"
    );
    // Warm-up (not counted): page cache, tracefs, BTF.
    for mut c in [otf_cmd(SETS[0].otf), bt_cmd(SETS[0].bpftrace)]
        .into_iter()
        .flatten()
    {
        run_once(&mut c, None)?;
    }
    let mut rows = Vec::new();
    for set in SETS {
        let reps = if set.large {
            ctx.opts.startup_reps
        } else {
            ctx.opts.reps
        };
        let skip_bt = set.large && set.otf == "*" && !ctx.opts.startup_bpftrace_all;
        let otf_probes = ctx.otf.as_ref().and_then(|otf| {
            count_listed(
                Command::new(otf)
                    .arg("list")
                    .arg(format!("kernel.trace(\"{}\")", set.otf)),
            )
        });
        let bt_probes = ctx
            .bpftrace
            .as_ref()
            .and_then(|bt| count_listed(Command::new(bt).arg("-l").arg(set.bpftrace)));
        let mut otf_row = ctx.otf.as_ref().map(|_| Row {
            set: set.label,
            tool: "otf",
            probes: otf_probes,
            samples: Vec::new(),
        });
        let mut bt_row = (ctx.bpftrace.is_some() && !skip_bt).then(|| Row {
            set: set.label,
            tool: "bpftrace",
            probes: bt_probes,
            samples: Vec::new(),
        });
        for rep in 0..reps {
            for (tool, row, cmd) in [
                ("otf", otf_row.as_mut(), otf_cmd(set.otf)),
                ("bpftrace", bt_row.as_mut(), bt_cmd(set.bpftrace)),
            ] {
                let (Some(row), Some(mut cmd)) = (row, cmd) else {
                    continue;
                };
                let s = run_once(&mut cmd, watcher.as_ref())?;
                eprintln!(
                    "xtask bench: {} {tool} run {}/{reps}: armed {:.1} ms, exit {:.1} ms",
                    set.label,
                    rep + 1,
                    s.armed_ms,
                    s.exit_ms
                );
                if row.probes.is_none() {
                    row.probes = s.attaching;
                }
                row.samples.push(s);
            }
        }
        rows.extend(otf_row);
        rows.extend(bt_row);
        if skip_bt && ctx.bpftrace.is_some() {
            println!(
                "(bpftrace on every tracepoint skipped: it needs 3-9 minutes to exit; add \
                 --startup-bpftrace-all)"
            );
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
    fn parses_watcher_and_attaching_lines() {
        assert_eq!(
            parse_load("otf-bench-load 4242 1234567 12"),
            Some((4242, 1234567, 12))
        );
        assert_eq!(parse_load("otf-bench-load 1 2 -22"), Some((1, 2, -22)));
        assert_eq!(parse_load("otf-bench-load 1 x 3"), None);
        assert_eq!(parse_load("@t[1]: 5"), None);
        assert_eq!(parse_attaching("Attaching 360 probes..."), Some(360));
        assert_eq!(parse_attaching("Attaching 1 probe..."), Some(1));
        assert_eq!(parse_attaching("otf-bench-armed"), None);
    }

    #[test]
    fn table_medians() {
        let s = |armed_ms, exit_ms, loads| Sample {
            armed_ms,
            exit_ms,
            loads,
            attaching: None,
        };
        let rows = [
            Row {
                set: "one",
                tool: "otf",
                probes: Some(1),
                samples: vec![
                    s(50.0, 60.0, Some((4, 10.0))),
                    s(30.0, 80.0, Some((4, 12.0))),
                    s(40.0, 70.0, Some((4, 11.0))),
                ],
            },
            Row {
                set: "one",
                tool: "bpftrace",
                probes: None,
                samples: vec![s(100.0, 200.0, None)],
            },
        ];
        let t = table(&rows);
        let cols = |tool: &str| {
            t.lines()
                .find(|l| l.split_whitespace().nth(1) == Some(tool))
                .unwrap()
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cols("otf")[2..],
            ["1", "3", "40.0", "30.0", "50.0", "4", "11.0", "70.0", "80.0"]
        );
        assert_eq!(
            cols("bpftrace")[2..],
            ["?", "1", "100.0", "100.0", "100.0", "-", "-", "200.0", "200.0"]
        );
    }
}
