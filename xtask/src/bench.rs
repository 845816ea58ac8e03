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
mod arrays;
mod body;
mod cprog;
mod failures;
mod load_large;
mod startup;
mod timers;
mod tp_release;

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
    /// getppid calls per measurement in body-cost and arrays.
    #[arg(long, default_value_t = 1_000_000)]
    pub body_calls: u64,
    /// Repetitions of each variant in body-cost and arrays (11 and 7 variants; the interpreter's
    /// loop body alone takes ~3-7 s per measurement).
    #[arg(long, default_value_t = 5)]
    pub body_reps: usize,
    /// getppid calls per measurement of the printf bodies in body-cost (bpftrace's printf cost
    /// 16-30 us per hit on the machine of docs/performance.md).
    #[arg(long, default_value_t = 100_000)]
    pub printf_calls: u64,
    /// Runs per tool in `startup` for 360 and for all tracepoints (detaching them at exit took
    /// 12-50 s for otf and 0.5-9 minutes for bpftrace); one tracepoint runs --reps times. Also
    /// the runs of the hard script (every tracepoint) in `load-large`; its others run --reps
    /// times.
    #[arg(long, default_value_t = 1)]
    pub startup_reps: usize,
    /// In `startup`, also run bpftrace on every tracepoint (it then needs 3-9 minutes to exit).
    #[arg(long)]
    pub startup_bpftrace_all: bool,
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
        "flip to first hit (on) and last hit (off), p50/p99: a uprobe flipped from a uprobe and \
         a timer tracepoint, and the raw_syscalls:sys_enter tracepoint flipped from a uprobe",
        arming::bench_flip_latency,
    ),
    (
        "refresh-500",
        "wall time of a refresh that disarms, and one that re-arms, 500 uprobes",
        arming::bench_refresh_500,
    ),
    (
        "body-cost",
        "getppid(2) loop with otf and bpftrace running the same bodies (n++, a 20-iteration \
         loop, a printf, a false condition) on syscalls:sys_enter_getppid",
        body::bench_body_cost,
    ),
    (
        "arrays",
        "getppid(2) loop with otf and bpftrace running the same array and statistics bodies \
         (counts[pid()]++, a[pid()] <<< 1, s <<< tid(), histograms at exit) on \
         syscalls:sys_enter_getppid",
        arrays::bench_arrays,
    ),
    (
        "startup",
        "exec to armed and SIGINT to exit, otf and bpftrace, on 1, 360 (syscalls:sys_enter_*) \
         and all tracepoints",
        startup::bench_startup,
    ),
    (
        "tp-release",
        "syscalls:sys_enter_* (~360 tracepoints): SIGINT to exit of otf (syscall dispatch), otf \
         (perf tracepoints) and bpftrace, disarm and re-arm of the glob, dispatch vs perf cost",
        tp_release::bench_tp_release,
    ),
    (
        "load-large",
        "otf only: exec to armed and BPF_PROG_LOAD time for the largest scripts (4,400 \
         statements, 1,500 printf, functions and loops 4 deep, the suites' hard script)",
        load_large::bench_load_large,
    ),
    (
        "timers",
        "firings of timer.ms(100) and timer.ms(1) that ran and that otf reports lost, idle and \
         under a getppid flood on an armed probe (bpftrace's interval beside), and a toggle \
         timer's delay to the disarm of the hot probe",
        timers::bench_timers,
    ),
    (
        "failures",
        "otf only: exec to exit of a failed start of 2,001 uprobes (one refused by the kernel at \
         attach), and SIGINT to exit during the start of process(libc).function(\"*\")",
        failures::bench_failures,
    ),
    (
        "refresh-500-vm",
        "in the VM, on 6.12 and on 6.1 (no uprobe_multi there: one perf uprobe link per \
         function): refresh-500",
        bench_refresh_500_vm,
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
        || o.body_calls == 0
        || o.body_reps == 0
        || o.printf_calls == 0
        || o.startup_reps == 0
    {
        bail!(
            "--reps, --iterations, --flips, --refreshes, --uprobe-calls, --vm-iterations, \
             --body-calls, --body-reps, --printf-calls and --startup-reps must be positive"
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
    let others = other_tracers();
    if !others.is_empty() {
        eprintln!(
            "xtask bench: WARNING: other tracers are running ({}): their probes may hit this \
             benchmark's workloads, and its probes theirs",
            others
                .iter()
                .map(|(pid, comm)| format!("{comm} {pid}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
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

/// The processes named like a tracer (`otf`, `bpftrace`, `stap*`) other than this one: a
/// benchmark run beside another tracer measures both.
fn other_tracers() -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut v: Vec<(u32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            Some((pid, comm.trim().to_string()))
        })
        .filter(|(pid, comm)| *pid != me && is_tracer_name(comm))
        .collect();
    v.sort();
    v
}

/// Whether a process name (`/proc/PID/comm`) is a tracer's.
fn is_tracer_name(comm: &str) -> bool {
    matches!(comm, "otf" | "bpftrace") || comm.starts_with("stap")
}

/// A program that traces while the workload runs.
#[derive(Debug, Clone)]
pub struct Tracer {
    /// The command line.
    pub argv: Vec<String>,
    /// The line on its stdout that says its probes are attached.
    pub ready: String,
    /// Where its stdout goes: a pipe that is read and drained (`None`), or this file, truncated
    /// at each start and polled for the ready line; its stderr then goes to the same path with
    /// `.err` appended.
    pub output: Option<PathBuf>,
}

impl Tracer {
    /// A tracer whose stdout is read through a pipe.
    pub fn new(argv: Vec<String>, ready: &str) -> Tracer {
        Tracer {
            argv,
            ready: ready.into(),
            output: None,
        }
    }
}

/// `path` with `.err` appended: where a tracer with [`Tracer::output`] writes its stderr.
pub fn err_path(path: &std::path::Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".err");
    PathBuf::from(s)
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
            tracer: Some(Tracer::new(argv, READY)),
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
        cmd.args(&self.argv[1..]).stdin(Stdio::null());
        if let Some(path) = &self.output {
            let create = |p: &std::path::Path| {
                std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))
            };
            cmd.stdout(create(path)?).stderr(create(&err_path(path))?);
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        }
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
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", display_cmd(&cmd)))?;
        let mut running = Running {
            child,
            name: display_cmd(&cmd),
        };
        let mut is_ready: Box<dyn FnMut() -> bool> = match &self.output {
            // Poll the file for the ready line.
            Some(path) => {
                let (path, ready) = (path.clone(), self.ready.clone());
                Box::new(move || file_has_line(&path, &ready))
            }
            None => {
                let stdout = running.child.stdout.take().context("no stdout")?;
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
                Box::new(move || rx.try_recv().is_ok())
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let outcome = loop {
            if is_ready() {
                break "ready";
            }
            if let Ok(Some(_)) = running.child.try_wait() {
                break "ended";
            }
            if Instant::now() > deadline {
                break "timeout";
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if outcome == "ready" {
            // Let the attachment settle (the begin probe may run just before the last attach).
            std::thread::sleep(Duration::from_millis(200));
            if !matches!(running.child.try_wait(), Ok(Some(_))) {
                return Ok(running);
            }
        }
        let errors = match &self.output {
            Some(p) => format!(
                ":\n{}",
                std::fs::read_to_string(err_path(p))
                    .unwrap_or_default()
                    .trim_end()
            ),
            None => " (its error is above)".into(),
        };
        match outcome {
            "timeout" => bail!(
                "`{}` did not print {:?} within 60 s{errors}",
                running.name,
                self.ready
            ),
            "ready" => bail!("`{}` ended right after it was ready{errors}", running.name),
            _ => bail!(
                "`{}` ended before printing {:?}{errors}",
                running.name,
                self.ready
            ),
        }
    }
}

/// Whether the first MiB of the file at `path` has a line equal to `line` (surrounding
/// whitespace ignored).
fn file_has_line(path: &std::path::Path, line: &str) -> bool {
    use std::io::Read;
    let Ok(f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = Vec::new();
    if f.take(1 << 20).read_to_end(&mut buf).is_err() {
        return false;
    }
    String::from_utf8_lossy(&buf)
        .lines()
        .any(|l| l.trim() == line)
}

impl Running {
    fn stop(mut self) -> Result<()> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill on our own child's pid; it has not been reaped yet (we own the Child).
        unsafe { libc::kill(pid, libc::SIGINT) };
        // Detaching waits for the kernel (RCU grace periods, the tracepoint mutex that another
        // tracer's attach or detach may hold): on a busy machine that took over 20 s once.
        let t = Instant::now();
        let limit = Duration::from_secs(120);
        let mut told = false;
        loop {
            if !told && t.elapsed() > Duration::from_secs(10) {
                told = true;
                eprintln!(
                    "xtask bench: `{}` has not stopped 10 s after SIGINT; where its threads \
                     wait:\n{}",
                    self.name,
                    where_waiting(pid)
                );
            }
            if let Some(st) = self.child.try_wait()? {
                if !st.success() {
                    eprintln!("xtask bench: warning: `{}` exited with {st}", self.name);
                }
                if t.elapsed() > Duration::from_secs(5) {
                    eprintln!(
                        "xtask bench: warning: `{}` took {:.1} s to stop",
                        self.name,
                        t.elapsed().as_secs_f64()
                    );
                }
                return Ok(());
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "`{}` did not stop within {limit:?} of SIGINT; killed it",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Per thread of process `pid`: its state and kernel wait channel, then the kernel stack of its
/// main thread (for a tracer that does not stop).
fn where_waiting(pid: libc::pid_t) -> String {
    let mut out = String::new();
    let read = |p: String| std::fs::read_to_string(p).unwrap_or_default();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let dir = e.path();
        let state = read(format!("{}/status", dir.display()))
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or_default()
            .to_string();
        out.push_str(&format!(
            "  task {} {} wchan {}\n",
            e.file_name().to_string_lossy(),
            state,
            read(format!("{}/wchan", dir.display()))
        ));
    }
    out.push_str(&read(format!("/proc/{pid}/stack")));
    out
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
    measure_with(ctx, variants, workload, &|_| n, &mut |_| Ok(()))
}

/// Like [`measure`], with `iterations(i)` workload iterations for variant `i`, calling
/// `after(i)` after each measurement of variant `i`, once its tracer has stopped.
pub fn measure_with(
    ctx: &Ctx,
    variants: &[Variant],
    workload: &dyn Fn(u64) -> f64,
    iterations: &dyn Fn(usize) -> u64,
    after: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Vec<f64>> {
    workload(iterations(0) / 10 + 1); // warm up
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
            samples[i].push(workload(iterations(i)));
            if let Some(r) = running {
                r.stop()?;
            }
            after(i)?;
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
            tracer: Some(Tracer::new(
                vec![
                    bt.to_string_lossy().into_owned(),
                    "-B".into(),
                    "line".into(),
                    "-e".into(),
                    format!(
                        "BEGIN {{ printf(\"{READY}\\n\") }} \
                         tracepoint:syscalls:sys_enter_getppid /0/ {{ }}"
                    ),
                ],
                READY,
            )),
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
/// `refresh-500` in the VM on each kernel: the arming benchmark beside the kernel without
/// uprobe_multi.
fn bench_refresh_500_vm(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        bail!("otf could not be built");
    };
    for series in ["6.12", "6.1"] {
        println!("-- kernel {series} (emulated: compare the two kernels, not with the host)");
        rerun_in_vm_on(ctx, otf, "refresh-500", series)?;
    }
    Ok(())
}

fn rerun_in_vm(ctx: &Ctx, otf: &std::path::Path, name: &str) -> Result<()> {
    rerun_in_vm_on(ctx, otf, name, crate::vm::PINS[0].series)
}

/// Runs benchmark `name` inside the VM booting kernel `series`.
fn rerun_in_vm_on(ctx: &Ctx, otf: &std::path::Path, name: &str, series: &str) -> Result<()> {
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
        "--refreshes".into(),
        o.refreshes.to_string(),
        "--otf".into(),
    ] {
        command.push(a.into());
    }
    command.push(otf.as_os_str().to_owned());
    let rc = crate::vm::run(
        &crate::vm::Options {
            kernel: series.to_string(),
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
        let t = Tracer::new(
            vec![
                "sh".into(),
                "-c".into(),
                format!("trap 'exit 0' INT; echo {READY}; while :; do sleep 0.05; done"),
            ],
            READY,
        );
        let r = t.start().unwrap();
        r.stop().unwrap();
        let never = Tracer::new(vec!["true".into()], READY);
        assert!(never.start().is_err());
    }

    #[test]
    fn tracer_with_output_file() {
        let dir = std::env::temp_dir().join(format!("otf-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("t.out");
        let mut t = Tracer::new(
            vec![
                "sh".into(),
                "-c".into(),
                format!(
                    "trap 'exit 0' INT; echo {READY}; echo oops >&2; \
                     while :; do echo x; sleep 0.05; done"
                ),
            ],
            READY,
        );
        t.output = Some(out.clone());
        let r = t.start().unwrap();
        r.stop().unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with(&format!("{READY}\nx\n")), "{text}");
        assert_eq!(std::fs::read_to_string(err_path(&out)).unwrap(), "oops\n");
        // Ends without the ready line: an error that quotes its stderr.
        t.argv = vec!["sh".into(), "-c".into(), "echo no >&2".into()];
        let e = t.start().err().unwrap();
        assert!(format!("{e:#}").contains("no"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn where_a_process_waits() {
        let w = where_waiting(std::process::id() as libc::pid_t);
        assert!(w.contains("task ") && w.contains("State:"), "{w}");
    }

    #[test]
    fn tracer_names() {
        assert!(is_tracer_name("otf") && is_tracer_name("bpftrace") && is_tracer_name("stapio"));
        assert!(!is_tracer_name("otf-testsuite") && !is_tracer_name("bash"));
        assert!(other_tracers()
            .iter()
            .all(|(p, _)| *p != std::process::id()));
    }

    #[test]
    fn getppid_loop_measures_something() {
        let ns = getppid_loop(1000);
        assert!(ns > 0.0 && ns.is_finite());
    }
}
