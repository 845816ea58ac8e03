//! `cargo xtask bench`: what a probe costs, measured side by side in one run.
//!
//! Each benchmark is a function in [`BENCHES`]. A benchmark runs a workload under several
//! *variants* (no probe, otf with a disarmed probe, `otf --no-otf`, bpftrace, ...), alternating
//! between them for several repetitions so that the machine's drift hits all of them alike, and
//! reports medians and the ratio to the variant without any probe.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::deps;
use crate::util::{self, display_cmd, which};

mod arming;
mod cprog;

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Repetitions of each variant (alternating).
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Workload iterations per measurement (e.g. getppid calls).
    #[arg(long, default_value_t = 2_000_000)]
    pub iterations: u64,
    /// Run only these benchmarks (repeatable); see --list.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// List the benchmarks and exit.
    #[arg(long)]
    pub list: bool,
    /// Flips per path and edge in flip-latency.
    #[arg(long, default_value_t = 25)]
    pub flips: usize,
    /// Refreshes each way in refresh-500.
    #[arg(long, default_value_t = 5)]
    pub refreshes: usize,
    /// Calls per measurement in uprobes (an armed endbr64 uprobe costs ~10 us per call).
    #[arg(long, default_value_t = 200_000)]
    pub uprobe_calls: u64,
    /// Keep the C programs built for the uprobe benchmarks (their directory is printed).
    #[arg(long)]
    pub keep: bool,
    /// Use this otf binary instead of building it.
    #[arg(long, value_name = "PATH")]
    pub otf: Option<PathBuf>,
    /// read(2) calls per measurement in the VM benchmark (~2 us each under emulation; shorter
    /// measurements are dominated by the emulator's noise).
    #[arg(long, default_value_t = 500_000)]
    pub vm_iterations: u64,
    /// Virtual CPUs of the benchmark VM. With 2, the single-threaded emulation interleaves the
    /// vCPUs and otf's idle threads on the other vCPU add noise (medians moved by ±20%).
    #[arg(long, default_value_t = 1)]
    pub vm_cpus: u32,
    /// Internal: this process runs inside the VM that `kprobe-getppid-vm` booted.
    #[arg(long, hide = true)]
    pub in_vm: bool,
}

/// What every benchmark gets.
pub struct Ctx<'a> {
    /// The options.
    pub opts: &'a Options,
    /// The otf binary, if it could be built and has `otf run`.
    pub otf: Option<PathBuf>,
    /// bpftrace, if installed.
    pub bpftrace: Option<PathBuf>,
}

/// A benchmark: name, description, function.
pub type Bench = (&'static str, &'static str, fn(&Ctx) -> Result<()>);

/// All benchmarks, in the order they run.
pub const BENCHES: &[Bench] = &[
    (
        "tracepoint-getppid",
        "getppid(2) loop with a probe on syscalls:sys_enter_getppid whose condition is false",
        bench_tracepoint_getppid,
    ),
    (
        "uprobes",
        "calls of an endbr64 and a push %rbp function with a uprobe whose condition is false",
        arming::bench_uprobes,
    ),
    (
        "flip-latency",
        "flip to first hit (on) and last hit (off), p50/p99, immediate and timer paths",
        arming::bench_flip_latency,
    ),
    (
        "refresh-500",
        "wall time of a refresh that disarms, and one that re-arms, 500 uprobes",
        arming::bench_refresh_500,
    ),
    (
        "kprobe-read-vm",
        "in the VM (6.12, kprobes): read(2) loop on /dev/zero with a kprobe on vfs_read whose \
         condition is false",
        bench_kprobe_read_vm,
    ),
];

/// Runs the bench task.
pub fn run(o: &Options) -> Result<i32> {
    if o.list {
        for (name, what, _) in BENCHES {
            println!("{name:<24} {what}");
        }
        return Ok(0);
    }
    for name in &o.only {
        if !BENCHES.iter().any(|(n, _, _)| n == name) {
            bail!("no benchmark named {name} (see --list)");
        }
    }
    if o.reps == 0
        || o.iterations == 0
        || o.flips == 0
        || o.refreshes == 0
        || o.uprobe_calls == 0
        || o.vm_iterations == 0
    {
        bail!(
            "--reps, --iterations, --flips, --refreshes, --uprobe-calls and --vm-iterations \
             must be positive"
        );
    }
    if !util::is_root() {
        bail!("the benchmarks attach probes: run them as root");
    }
    if o.in_vm && o.otf.is_none() {
        bail!("--in-vm needs --otf");
    }
    if !o.in_vm {
        deps::ensure("building otf", deps::BUILD)?;
    }
    let otf = match &o.otf {
        Some(p) => Some(p.clone()),
        None => match util::cargo_build_bin("otf", "otf", true) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("xtask bench: cannot build otf ({e:#}); otf variants are skipped");
                None
            }
        },
    };
    let otf = otf.filter(|p| {
        let ok = Command::new(p)
            .args(["run", "--help"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!(
                "xtask bench: {} has no working `otf run` yet; otf variants are skipped",
                p.display()
            );
        }
        ok
    });
    let bpftrace = which("bpftrace");
    if bpftrace.is_none() && !o.in_vm {
        eprintln!("xtask bench: bpftrace is not installed; its variant is skipped");
    }
    let ctx = Ctx {
        opts: o,
        otf,
        bpftrace,
    };
    let mut failed = 0;
    for (name, what, f) in BENCHES {
        if !o.only.is_empty() && !o.only.iter().any(|n| n == name) {
            continue;
        }
        if !o.in_vm {
            println!("\n== {name}: {what}");
        }
        if let Err(e) = f(&ctx) {
            eprintln!("xtask bench: {name} failed: {e:#}");
            failed += 1;
        }
    }
    Ok(i32::from(failed > 0))
}

/// A program that traces while the workload runs.
#[derive(Debug, Clone)]
pub struct Tracer {
    /// The command line.
    pub argv: Vec<String>,
    /// The line on its stdout that says its probes are attached.
    pub ready: String,
}

/// One way of running the workload.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its name in the report.
    pub name: String,
    /// The tracer to run alongside, or none for the baseline.
    pub tracer: Option<Tracer>,
}

impl Variant {
    /// The variant `name` that runs `otf run EXTRA... -T 3600s -e SCRIPT` alongside the
    /// workload; `script`'s `begin` must print [`READY`].
    pub fn otf(name: &str, otf: &std::path::Path, extra: &[&str], script: &str) -> Variant {
        let mut argv = vec![otf.to_string_lossy().into_owned(), "run".into()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.extend(["-T".into(), "3600s".into(), "-e".into(), script.into()]);
        Variant {
            name: name.into(),
            tracer: Some(Tracer {
                argv,
                ready: READY.into(),
            }),
        }
    }
}

/// A running tracer, stopped with SIGINT (then SIGKILL) when dropped.
struct Running {
    child: Child,
    name: String,
}

const READY: &str = "otf-bench-ready";

impl Tracer {
    fn start(&self) -> Result<Running> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // A tracer is stopped with SIGINT. When xtask itself was started as a background job of
        // a non-interactive shell, SIGINT is ignored and children inherit that, and a shell
        // cannot trap a signal ignored on entry: give the tracer the default disposition.
        // SAFETY: the closure runs in the child between fork and exec and only calls signal(2),
        // which is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", display_cmd(&cmd)))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let ready = self.ready.clone();
        // Read (and drain) the tracer's output so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !told && line.trim() == ready {
                    told = true;
                    let _ = tx.send(());
                }
            }
        });
        let running = Running {
            child,
            name: display_cmd(&cmd),
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) => {
                // Let the attachment settle (the begin probe may run just before the last attach).
                std::thread::sleep(Duration::from_millis(200));
                Ok(running)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                "`{}` ended before printing {:?} (its error is above)",
                running.name,
                self.ready
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "`{}` did not print {:?} within 60 s",
                running.name,
                self.ready
            ),
        }
    }
}

impl Running {
    fn stop(mut self) -> Result<()> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill on our own child's pid; it has not been reaped yet (we own the Child).
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait()? {
                if !st.success() {
                    eprintln!("xtask bench: warning: `{}` exited with {st}", self.name);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "`{}` did not stop within 20 s of SIGINT; killed it",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Calls getppid(2) `n` times; returns nanoseconds per call.
fn getppid_loop(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no preconditions; the raw syscall avoids any libc caching.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// Runs every variant `reps` times, alternating, measuring `workload` (ns per iteration) while
/// the variant's tracer runs; prints a table of medians; returns the medians in variant order.
pub fn measure(ctx: &Ctx, variants: &[Variant], workload: &dyn Fn(u64) -> f64) -> Result<Vec<f64>> {
    let n = ctx.opts.iterations;
    workload(n / 10 + 1); // warm up
    let mut samples = vec![Vec::new(); variants.len()];
    for rep in 0..ctx.opts.reps {
        eprint!("\rxtask bench: repetition {}/{}", rep + 1, ctx.opts.reps);
        for (i, v) in variants.iter().enumerate() {
            let running = v.tracer.as_ref().map(Tracer::start).transpose()?;
            if ctx.opts.in_vm {
                // Under emulation the kernel's deferred work after a tracer starts or stops
                // (RCU callbacks, freeing programs and perf events) runs for a while and
                // slowed whichever sample came next by up to 2x.
                std::thread::sleep(Duration::from_secs(2));
            }
            samples[i].push(workload(n));
            if let Some(r) = running {
                r.stop()?;
            }
        }
    }
    eprintln!();
    let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
    println!("{}", report(variants, &samples, &medians));
    Ok(medians)
}

fn median(s: &mut [f64]) -> f64 {
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The table: per variant the median, min and max ns per iteration, the ratio to the first
/// variant (the baseline) and the added cost per iteration.
fn report(variants: &[Variant], samples: &[Vec<f64>], medians: &[f64]) -> String {
    let base = medians.first().copied().unwrap_or(f64::NAN);
    let mut out = format!(
        "{:<44} {:>10} {:>10} {:>10} {:>8} {:>10}\n",
        "variant", "median ns", "min", "max", "ratio", "added ns"
    );
    for ((v, s), m) in variants.iter().zip(samples).zip(medians) {
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        out.push_str(&format!(
            "{:<44} {m:>10.1} {min:>10.1} {max:>10.1} {:>8.2} {:>10.1}\n",
            v.name,
            m / base,
            m - base
        ));
    }
    out
}

/// The tracepoint benchmark: getppid with no probe, a disarmed otf probe, the same probe under
/// `--no-otf` (armed, condition checked per hit) and bpftrace's false predicate.
fn bench_tracepoint_getppid(ctx: &Ctx) -> Result<()> {
    let script = format!(
        "global on = 0, n\n\
         probe begin {{ println(\"{READY}\") }}\n\
         probe kernel.trace(\"syscalls:sys_enter_getppid\") if (on) {{ n++ }}\n"
    );
    let mut variants = vec![Variant {
        name: "no probe".into(),
        tracer: None,
    }];
    if let Some(otf) = &ctx.otf {
        variants.push(Variant::otf(
            "otf, condition false (disarmed)",
            otf,
            &[],
            &script,
        ));
        variants.push(Variant::otf(
            "otf --no-otf, condition false (armed)",
            otf,
            &["--no-otf"],
            &script,
        ));
    }
    if let Some(bt) = &ctx.bpftrace {
        variants.push(Variant {
            name: "bpftrace, predicate /0/".into(),
            tracer: Some(Tracer {
                argv: vec![
                    bt.to_string_lossy().into_owned(),
                    "-B".into(),
                    "line".into(),
                    "-e".into(),
                    format!(
                        "BEGIN {{ printf(\"{READY}\\n\") }} \
                         tracepoint:syscalls:sys_enter_getppid /0/ {{ }}"
                    ),
                ],
                ready: READY.into(),
            }),
        });
    }
    if variants.len() == 1 {
        println!("(only the baseline can run: no otf `run` and no bpftrace)");
    }
    measure(ctx, &variants, &getppid_loop)?;
    Ok(())
}

/// The kprobe benchmark, which needs a kernel with kprobes: on the host it boots the VM
/// (`cargo xtask vm`) and runs itself there with `--in-vm`; in the VM it measures a loop of
/// one-byte `read(2)`s from /dev/zero with no probe, with a disarmed otf kprobe on `vfs_read`
/// and under `--no-otf`. (getppid's syscall functions are not in this kernel's
/// `available_filter_functions`; `vfs_read` is, and is what the kprobes suite probes.) Under
/// emulation only the ratios mean something.
fn bench_kprobe_read_vm(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        bail!("otf could not be built");
    };
    if !ctx.opts.in_vm {
        return rerun_in_vm(ctx, otf, "kprobe-read-vm");
    }
    let func = "vfs_read";
    let script = format!(
        "global on = 0, n\n\
         probe begin {{ println(\"{READY}\") }}\n\
         probe kernel.function(\"{func}\") if (on) {{ n++ }}\n"
    );
    let variants = [
        Variant {
            name: "no probe".into(),
            tracer: None,
        },
        // The control: otf running with no kprobe at all, to tell otf's own background work
        // from the probe's cost.
        Variant::otf(
            "otf running, no kprobe in the script",
            otf,
            &[],
            &format!("probe begin {{ println(\"{READY}\") }}"),
        ),
        Variant::otf("otf kprobe, condition false (disarmed)", otf, &[], &script),
        Variant::otf(
            "otf --no-otf kprobe, condition false (armed)",
            otf,
            &["--no-otf"],
            &script,
        ),
    ];
    println!(
        "kernel {}, kernel.function(\"{func}\"), {} reads per measurement (emulated: compare \
         ratios, not nanoseconds)",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        ctx.opts.vm_iterations
    );
    let zero = std::fs::File::open("/dev/zero").context("cannot open /dev/zero")?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&zero);
    let read_loop = move |n: u64| {
        let mut b = [0u8; 1];
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: reads one byte into a live one-byte buffer from an open descriptor.
            unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let vm_ctx = Ctx {
        opts: &Options {
            iterations: ctx.opts.vm_iterations,
            ..ctx.opts.clone()
        },
        otf: ctx.otf.clone(),
        bpftrace: None,
    };
    measure(&vm_ctx, &variants, &read_loop)?;
    drop(zero);
    Ok(())
}

/// Boots the VM and runs benchmark `name` of this xtask binary there (`--in-vm`).
fn rerun_in_vm(ctx: &Ctx, otf: &std::path::Path, name: &str) -> Result<()> {
    deps::ensure("the benchmarks in the VM", deps::VM)?;
    let exe = std::env::current_exe().context("cannot find the xtask binary")?;
    let o = ctx.opts;
    let mut command: Vec<std::ffi::OsString> = vec![exe.into_os_string()];
    for a in [
        "bench".to_string(),
        "--in-vm".into(),
        "--only".into(),
        name.into(),
        "--reps".into(),
        o.reps.to_string(),
        "--vm-iterations".into(),
        o.vm_iterations.to_string(),
        "--otf".into(),
    ] {
        command.push(a.into());
    }
    command.push(otf.as_os_str().to_owned());
    let rc = crate::vm::run(
        &crate::vm::Options {
            timeout: 30,
            cpus: o.vm_cpus,
            ..crate::vm::Options::default()
        },
        &command,
    )?;
    if rc != 0 {
        bail!("the benchmark in the VM exited with status {rc}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn report_ratios() {
        let v = |n: &str| Variant {
            name: n.into(),
            tracer: None,
        };
        let table = report(
            &[v("base"), v("probe")],
            &[vec![100.0, 110.0], vec![300.0]],
            &[100.0, 300.0],
        );
        let probe = table.lines().find(|l| l.starts_with("probe")).unwrap();
        let cols: Vec<&str> = probe.split_whitespace().collect();
        assert_eq!(cols[1..], ["300.0", "300.0", "300.0", "3.00", "200.0"]);
    }

    #[test]
    fn tracer_ready_and_stop() {
        // A real process standing in for a tracer: prints the ready line, waits for SIGINT.
        let t = Tracer {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("trap 'exit 0' INT; echo {READY}; while :; do sleep 0.05; done"),
            ],
            ready: READY.into(),
        };
        let r = t.start().unwrap();
        r.stop().unwrap();
        let never = Tracer {
            argv: vec!["true".into()],
            ready: READY.into(),
        };
        assert!(never.start().is_err());
    }

    #[test]
    fn getppid_loop_measures_something() {
        let ns = getppid_loop(1000);
        assert!(ns > 0.0 && ns.is_finite());
    }
}
