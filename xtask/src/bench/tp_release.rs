//! `tp-release`: releasing many tracepoints. For `kernel.trace("syscalls:sys_enter_*")` (one
//! probe per syscall, ~360): SIGINT → exit of otf (syscall dispatch: one raw `sys_enter`
//! link), of otf with every syscall probe a perf tracepoint (`OTF_SYSCALL_DISPATCH_MIN`
//! large, as before syscall dispatch) and of bpftrace; the disarm and re-arm latency of the
//! glob toggled by a flipper probe, both ways; and what the two attachments cost a syscall
//! nobody probes, and a probed one.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::startup::{run_once, write_armed_sh};
use super::{cprog, measure, median, Ctx, Tracer, Variant, READY};

/// `OTF_SYSCALL_DISPATCH_MIN` that keeps every syscall probe a perf tracepoint.
const PERF_ONLY: &str = "1000000";

/// `env NAME=VALUE otf ARGS...`: otf with the dispatch threshold `min` (or the default).
fn otf_argv(otf: &Path, min: Option<&str>) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(m) = min {
        v.push("env".to_string());
        v.push(format!("OTF_SYSCALL_DISPATCH_MIN={m}"));
    }
    v.push(otf.to_string_lossy().into_owned());
    v
}

fn command(argv: &[String]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// The tp-release benchmark.
pub fn bench_tp_release(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        println!("(needs otf)");
        return Ok(());
    };
    if ctx.bpftrace.is_none() {
        println!("(bpftrace is not installed: its row is skipped)");
    }
    let dir = cprog::dir()?;
    let r = exit_times(ctx, otf, &dir)
        .and_then(|()| toggles(ctx, otf))
        .and_then(|()| costs(ctx, otf));
    cprog::cleanup(ctx, &dir);
    r
}

/// SIGINT → exit on `syscalls:sys_enter_*`.
fn exit_times(ctx: &Ctx, otf: &Path, dir: &Path) -> Result<()> {
    let armed_sh = write_armed_sh(dir)?;
    let c_arg = format!("/bin/sh {}", armed_sh.display());
    let script = "global n\nprobe kernel.trace(\"syscalls:sys_enter_*\") { n++ }\n";
    let otf_cmd = |min: Option<&str>| {
        let mut c = command(&otf_argv(otf, min));
        c.args(["run", "-c", &c_arg, "-e", script]);
        c
    };
    let mut rows: Vec<(&str, Command)> = vec![
        ("otf (syscall dispatch)", otf_cmd(None)),
        ("otf (perf tracepoints)", otf_cmd(Some(PERF_ONLY))),
    ];
    if let Some(bt) = &ctx.bpftrace {
        let mut c = Command::new(bt);
        c.env("BPFTRACE_MAX_PROBES", "100000")
            .env("BPFTRACE_MAX_BPF_PROGS", "100000")
            .args(["-B", "line", "-c", &c_arg, "-e"])
            .arg("tracepoint:syscalls:sys_enter_* { @n = count() }");
        rows.push(("bpftrace", c));
    }
    println!(
        "syscalls:sys_enter_*, body n++ (bpftrace @n = count()): exec → armed (the -c command \
         released), SIGINT → reaped; {} run(s) each",
        ctx.opts.startup_reps
    );
    println!(
        "{:<26} {:>12} {:>12} {:>12} {:>16}",
        "tool", "armed p50 ms", "exit p50 ms", "exit max ms", "exit / dispatch"
    );
    let mut base = f64::NAN;
    for (name, mut c) in rows {
        let mut armed = Vec::new();
        let mut exit = Vec::new();
        for _ in 0..ctx.opts.startup_reps {
            let s = run_once(&mut c, None)?;
            armed.push(s.armed_ms);
            exit.push(s.exit_ms);
        }
        let a = median(&mut armed);
        let e = median(&mut exit);
        let emax = exit.last().copied().unwrap_or(f64::NAN);
        if base.is_nan() {
            base = e;
        }
        println!(
            "{name:<26} {a:>12.1} {e:>12.1} {emax:>12.1} {:>16.1}",
            e / base
        );
    }
    Ok(())
}

/// The BPF links `pid` holds (fds whose fdinfo has a `link_type`).
fn links_of(pid: u32) -> usize {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|s| s.contains("\nlink_type:")))
        .count()
}

/// Polls until `pid` holds `want` links; the time taken, or `None` after `limit`.
fn until_links(pid: u32, want: impl Fn(usize) -> bool, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    loop {
        if want(links_of(pid)) {
            return Some(t.elapsed());
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn call(nr: libc::c_long) {
    // SAFETY: getsid(0) and getpgid(0) take no pointers and have no side effects.
    unsafe { libc::syscall(nr, 0) };
}

/// Disarm and re-arm of `probe kernel.trace("syscalls:sys_enter_*") if (on)`: this process
/// flips `on` with getpgid(2) (off) and getsid(2) (on), caught by two unconditional probes,
/// and polls otf's links until the glob's are gone (disarm) or back (re-arm).
fn toggles(ctx: &Ctx, otf: &Path) -> Result<()> {
    let me = std::process::id();
    let script = format!(
        "global on = 1, n\n\
         probe begin {{ println(\"{READY}\") }}\n\
         probe kernel.trace(\"syscalls:sys_enter_*\") if (on) {{ n++ }}\n\
         probe kernel.trace(\"syscalls:sys_exit_getsid\") {{ if (pid() == {me}) on = 1 }}\n\
         probe kernel.trace(\"syscalls:sys_exit_getpgid\") {{ if (pid() == {me}) on = 0 }}\n"
    );
    println!(
        "\ntoggling syscalls:sys_enter_* with a flipper probe ({} times each way): flip syscall → \
         otf's links of the glob gone (disarm) or all back (re-arm), polled in /proc/PID/fdinfo",
        ctx.opts.refreshes
    );
    println!(
        "{:<26} {:>9} {:>14} {:>14} {:>14} {:>14}",
        "otf", "links on", "disarm p50 ms", "disarm max", "re-arm p50 ms", "re-arm max"
    );
    let limit = Duration::from_secs(120);
    for (name, min) in [
        ("syscall dispatch", None),
        ("perf tracepoints", Some(PERF_ONLY)),
    ] {
        let mut argv = otf_argv(otf, min);
        argv.extend(["run", "-T", "3600s", "-e", &script].map(String::from));
        let running = Tracer::new(argv, READY).start()?;
        let pid = running.child.id();
        // The otf process itself (not `env`, which execs it).
        let on_links = links_of(pid);
        if on_links < 2 {
            bail!("otf (pid {pid}) holds {on_links} links after its start");
        }
        // The glob's links: one raw link, or one perf tracepoint per syscall.
        let glob = if min.is_none() {
            1
        } else {
            std::fs::read_dir("/sys/kernel/tracing/events/syscalls")
                .context("listing the syscall tracepoints")?
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("sys_enter_"))
                .count()
        };
        let off_links = on_links.saturating_sub(glob);
        let (mut off, mut on) = (Vec::new(), Vec::new());
        let mut timed_out = false;
        for _ in 0..ctx.opts.refreshes {
            call(libc::SYS_getpgid);
            match until_links(pid, |n| n <= off_links, limit) {
                Some(d) => off.push(d.as_secs_f64() * 1e3),
                None => timed_out = true,
            }
            call(libc::SYS_getsid);
            match until_links(pid, |n| n >= on_links, limit) {
                Some(d) => on.push(d.as_secs_f64() * 1e3),
                None => timed_out = true,
            }
        }
        running.stop().context("stopping otf")?;
        let (d50, dmax) = (median(&mut off), off.last().copied().unwrap_or(f64::NAN));
        let (r50, rmax) = (median(&mut on), on.last().copied().unwrap_or(f64::NAN));
        println!("{name:<26} {on_links:>9} {d50:>14.2} {dmax:>14.2} {r50:>14.2} {rmax:>14.2}");
        if timed_out {
            println!("  (some flips were not seen within {limit:?})");
        }
    }
    Ok(())
}

/// What an armed probe set costs a syscall: getppid(2) with no probe, with the other
/// attachment armed on getpgid only (getppid unprobed: the dispatch runs and finds nothing;
/// the perf event does not fire), and with getppid itself probed.
fn costs(ctx: &Ctx, otf: &Path) -> Result<()> {
    println!(
        "\nthe cost of an armed syscall probe set on getppid(2) ({} calls × {} reps): unprobed \
         (probe on getpgid only) and probed, one raw dispatch link vs a perf tracepoint",
        ctx.opts.iterations, ctx.opts.reps
    );
    let script = |sys: &str| {
        format!(
            "global n\nprobe begin {{ println(\"{READY}\") }}\n\
             probe kernel.trace(\"syscalls:sys_enter_{sys}\") {{ n++ }}\n"
        )
    };
    let variant = |name: &str, min: &str, sys: &str| {
        let mut argv = otf_argv(otf, Some(min));
        argv.extend(["run", "-T", "3600s", "-e", &script(sys)].map(String::from));
        Variant {
            name: name.into(),
            tracer: Some(Tracer::new(argv, READY)),
        }
    };
    let variants = vec![
        Variant {
            name: "no probe".into(),
            tracer: None,
        },
        variant("dispatch, getppid unprobed", "1", "getpgid"),
        variant("perf, getppid unprobed", PERF_ONLY, "getpgid"),
        variant("dispatch, getppid probed (n++)", "1", "getppid"),
        variant("perf, getppid probed (n++)", PERF_ONLY, "getppid"),
    ];
    measure(ctx, &variants, &|n| {
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: getppid has no preconditions.
            unsafe { libc::syscall(libc::SYS_getppid) };
        }
        t.elapsed().as_nanos() as f64 / n as f64
    })?;
    Ok(())
}
