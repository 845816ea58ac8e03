//! `cargo xtask test`: everything CI checks, with a summary.
//!
//! 1. `cargo fmt --all --check` and `cargo clippy --workspace --all-targets -- -D warnings`;
//! 2. the kernel tests of [`VM_TESTS`] (the kprobe tests, the four on-the-fly suites in full,
//!    the invariants and the differential test)
//!    inside one VM boot of Debian's 6.12 kernel, which has kprobes (see docs/vm.md), so that
//!    otf is shown on a second kernel; their binaries and a release `otf` are built natively
//!    first, and the VM runs in the background while
//! 3. `cargo test --workspace --no-fail-fast` runs on this machine's kernel (kernel tests need
//!    root). The VM's output is printed when it ends. `--sequential` runs the VM afterwards
//!    instead; `cargo xtask test --vm-only --vm-all` runs every kernel-level test binary there.
//!
//! The summary lists every test that skipped, natively and in each VM, and fails the run on the
//! skips that must not happen there ([`skips`]).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::util::{self, cargo, display_cmd, fmt_duration, shell_quote};
use crate::{deps, vm};

mod skips;

/// What the tests need beyond building otf, installed like [`deps::BUILD`]: a test that skips
/// for want of one of these fails `cargo xtask test` ([`skips::fatal`]).
const TEST_DEPS: &[deps::Dep] = &[deps::Dep {
    check: deps::Check::Bin("gcc"),
    package: "gcc",
    why: "builds the uprobe tests' target programs (also inside the VM, which runs the host's)",
}];

/// A test binary that runs inside the VM.
pub struct VmTest {
    /// The package.
    pub package: &'static str,
    /// The test target, or `None` for all of the package's test binaries.
    pub target: Option<&'static str>,
    /// Arguments for the test binary (libtest filters: a test runs if it matches any).
    pub args: &'static [&'static str],
    /// Which VM runs it: the VMs of one table boot side by side, each with its share.
    pub vm: usize,
    /// The kernel that VM boots (`cargo xtask vm --kernel`): the same for every test of a VM.
    pub kernel: &'static str,
}

/// What `cargo xtask test` runs inside the VM: the kprobe tests, the four on-the-fly suites in
/// full, the invariants (with their kprobe variants) and the differential test of the runtime
/// against the reference VM ([`VM_DIFF_PROGRAMS`] programs), so that otf is shown on a second
/// kernel; and the suites' validated subtests and the invariants again on Debian 12's own 6.1
/// (VM 2), the stated minimum kernel. The VMs boot side by side, each with single-threaded
/// emulation (one host core at most): VM 0 runs the kprobe tests and the timer suite, VM 1 the
/// rest on 6.12.
pub const VM_TESTS: &[VmTest] = &[
    VmTest {
        package: "otf-kprobes",
        target: None,
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-bpf",
        target: Some("kprobes"),
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("kprobes_onthefly"),
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("hrtimer_onthefly"),
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("tracepoint_onthefly"),
        args: &[],
        vm: 1,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("uprobes_onthefly"),
        args: &[],
        vm: 1,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("invariants"),
        args: &[],
        vm: 1,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-bpf",
        target: Some("differential"),
        args: &[],
        vm: 1,
        kernel: "6.12",
    },
    // Debian 12's own 6.1 (no uprobe_multi, no kprobe_multi, no raw tracepoint cookies): the
    // four suites' validated subtests (the stress ones run on 6.12) and the invariants.
    VmTest {
        package: "otf-testsuite",
        target: Some("kprobes_onthefly"),
        args: SKIP_STRESS,
        vm: 2,
        kernel: "6.1",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("hrtimer_onthefly"),
        args: SKIP_STRESS,
        vm: 2,
        kernel: "6.1",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("tracepoint_onthefly"),
        args: SKIP_STRESS,
        vm: 2,
        kernel: "6.1",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("uprobes_onthefly"),
        args: SKIP_STRESS,
        vm: 2,
        kernel: "6.1",
    },
    VmTest {
        package: "otf-testsuite",
        target: Some("invariants"),
        args: &[],
        vm: 2,
        kernel: "6.1",
    },
];

/// libtest arguments that leave out a suite's stress subtests (`otf_stress_*`).
const SKIP_STRESS: &[&str] = &["--skip", "otf_stress"];

/// Random programs of the differential test in the VM (`OTF_DIFF_PROGRAMS`; 10,000 natively),
/// for about 2 minutes there. Its time is the kernel's verifier on the generated code (~10 ms
/// per program natively, more since the programs have arrays and strings); 500 took 200–295 s
/// there beside two other VMs, so 250 keep `cargo xtask test` within its time budget with the
/// third (6.1) VM.
pub const VM_DIFF_PROGRAMS: u32 = 250;

/// With `--vm-all`: every test binary of the kernel-level crates (over an hour under emulation).
pub const VM_ALL_TESTS: &[VmTest] = &[
    VmTest {
        package: "otf-testsuite",
        target: None,
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-kprobes",
        target: None,
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-bpf",
        target: None,
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-hrtimer",
        target: None,
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-tracepoint",
        target: None,
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
    VmTest {
        package: "otf-uprobes-inode",
        target: None,
        args: &[],
        vm: 0,
        kernel: "6.12",
    },
];

/// The arguments for the test binary `t` in VM `vm` of `table`.
fn vm_args(table: &[VmTest], vm: usize, t: &util::Artifact) -> &'static [&'static str] {
    table
        .iter()
        .find(|v| v.vm == vm && v.package == t.package && v.target.is_none_or(|x| x == t.target))
        .map_or(&[], |v| v.args)
}

/// The kernel VM `vm` of `table` boots.
fn vm_kernel(table: &[VmTest], vm: usize) -> &'static str {
    table
        .iter()
        .find(|v| v.vm == vm)
        .map_or(vm::PINS[0].series, |v| v.kernel)
}

/// Options of `cargo xtask test`.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Skip the VM: only fmt, clippy and the native tests.
    #[arg(long, conflicts_with = "vm_only")]
    pub no_vm: bool,
    /// Only the kernel tests in the VM.
    #[arg(long)]
    pub vm_only: bool,
    /// Run every test binary of the kernel-level crates in the VM, not only the kprobe tests
    /// and the on-the-fly suites (slow: over an hour under software emulation).
    #[arg(long)]
    pub vm_all: bool,
    /// Run the VM after the native tests instead of beside them (slower, quieter machine).
    #[arg(long)]
    pub sequential: bool,
    /// Show the VM's kernel messages.
    #[arg(long, short)]
    pub verbose: bool,
    /// Kill the VM after this many minutes.
    #[arg(long, value_name = "MINUTES", default_value_t = 40)]
    pub vm_timeout: u64,
}

/// How a step ended.
#[derive(Debug)]
enum Outcome {
    Ok,
    Failed(String),
    Skipped(String),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

/// Runs the test task; returns 0 only if every step passed.
pub fn run(o: &Options) -> Result<i32> {
    let started = Instant::now();
    deps::ensure("building and testing otf", deps::BUILD)?;
    deps::ensure("the uprobe tests", TEST_DEPS)?;
    if !o.no_vm {
        deps::ensure("the kernel tests in the VM", deps::VM)?;
    }
    let mut steps = Vec::new();
    let step =
        |steps: &mut Vec<Step>, name: &'static str, f: &mut dyn FnMut() -> Result<Outcome>| {
            eprintln!("\nxtask test: ==== {name} ====");
            let t = Instant::now();
            let outcome = f().unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
            if let Outcome::Failed(why) = &outcome {
                eprintln!("xtask test: {name} FAILED: {why}");
            }
            steps.push(Step {
                name,
                outcome,
                took: t.elapsed(),
            });
        };
    if !o.vm_only {
        step(&mut steps, "fmt", &mut || {
            status(cargo().args(["fmt", "--all", "--check"]))
        });
        step(&mut steps, "clippy", &mut || {
            status(cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]))
        });
        if !util::is_root() {
            eprintln!("\n{}", not_root_banner());
        }
    }
    // Where each run's skips go: the native tests, and each VM of the table.
    let native_place = skips::Place::new("native", "natively".into(), util::is_root())?;
    let mut places = Vec::new();
    if !o.vm_only {
        places.push(native_place.clone());
    }
    if !o.no_vm {
        places.extend(vm_places(if o.vm_all { VM_ALL_TESTS } else { VM_TESTS })?);
    }
    places.iter().for_each(skips::Place::clear);
    let native = || {
        status(
            cargo()
                .args(["test", "--workspace", "--no-fail-fast"])
                .env(skips::LOG_ENV, &native_place.log),
        )
    };
    match (o.vm_only, o.no_vm) {
        (false, true) => step(&mut steps, "native tests", &mut || native()),
        (true, _) => step(&mut steps, "kernel tests in the VM", &mut || {
            prepare_vm_tests(o)?.run(o, None)
        }),
        (false, false) if o.sequential => {
            step(&mut steps, "native tests", &mut || native());
            step(&mut steps, "kernel tests in the VM", &mut || {
                prepare_vm_tests(o)?.run(o, None)
            });
        }
        (false, false) => {
            // The VM's single-threaded emulation keeps one host core busy at most, and both
            // suites spend much of their time waiting for timers: run them side by side.
            let mut vm_outcome = None;
            step(&mut steps, "build for the VM", &mut || {
                let prepared = prepare_vm_tests(o)?;
                let log = vm::cache_dir()?
                    .join("run")
                    .join(format!("vm-tests-{}.log", std::process::id()));
                eprintln!(
                    "xtask test: the VM runs in the background while the native tests run; \
                     its output goes to {} and is printed when it ends",
                    log.display()
                );
                let opts = o.clone();
                vm_outcome = Some(std::thread::spawn(move || {
                    let t = Instant::now();
                    let outcome = prepared
                        .run(&opts, Some(&log))
                        .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let _ = std::fs::remove_file(&log);
                    (outcome, text, t.elapsed())
                }));
                Ok(Outcome::Ok)
            });
            step(&mut steps, "native tests", &mut || native());
            if let Some(handle) = vm_outcome {
                eprintln!("\nxtask test: ==== kernel tests in the VM ====");
                if !handle.is_finished() {
                    eprintln!("xtask test: waiting for the VM to finish");
                }
                let (outcome, text, took) = match handle.join() {
                    Ok(r) => r,
                    Err(_) => (
                        Outcome::Failed("the VM thread panicked".into()),
                        String::new(),
                        Duration::ZERO,
                    ),
                };
                print!("{text}");
                if let Outcome::Failed(why) = &outcome {
                    eprintln!("xtask test: kernel tests in the VM FAILED: {why}");
                }
                steps.push(Step {
                    name: "kernel tests in the VM",
                    outcome,
                    took,
                });
            }
        }
    }
    let reports: Vec<skips::Report> = places.iter().map(skips::Place::report).collect();
    Ok(summary(&steps, &reports, started.elapsed()))
}

/// The skip-log places of the VMs of `table`, by VM index.
fn vm_places(table: &[VmTest]) -> Result<Vec<skips::Place>> {
    let mut vms: Vec<usize> = table.iter().map(|t| t.vm).collect();
    vms.sort_unstable();
    vms.dedup();
    vms.into_iter().map(|i| vm_place(table, i)).collect()
}

/// The skip-log place of VM `i` of `table` (its guest runs the tests as root).
fn vm_place(table: &[VmTest], i: usize) -> Result<skips::Place> {
    skips::Place::new(
        &format!("vm{i}"),
        format!("VM {i} ({})", vm_kernel(table, i)),
        true,
    )
}

fn not_root_banner() -> String {
    let line = "!".repeat(78);
    format!(
        "{line}\n!!! NOT ROOT: the kernel-level tests will SKIP on this machine's kernel.\n\
         !!! Run `sudo -E cargo xtask test` (or as root) to run them for real.\n{line}"
    )
}

/// Runs a command with inherited output; a non-zero exit is a failed step.
fn status(cmd: &mut std::process::Command) -> Result<Outcome> {
    let st = util::run_status(cmd)?;
    Ok(if st.success() {
        Outcome::Ok
    } else {
        Outcome::Failed(format!("`{}` exited with {st}", display_cmd(cmd)))
    })
}

/// The VM's test binaries and `otf`, built natively and ready to run in the VM.
struct PreparedVmTests {
    table: &'static [VmTest],
    /// The binaries of each VM, by VM index.
    groups: Vec<(usize, Vec<util::Artifact>)>,
    otf: std::path::PathBuf,
}

/// Builds the kernel test binaries and `otf` natively (cargo under emulation is slow).
fn prepare_vm_tests(o: &Options) -> Result<PreparedVmTests> {
    let mut groups: Vec<Vec<util::Artifact>> = Vec::new();
    let table = if o.vm_all { VM_ALL_TESTS } else { VM_TESTS };
    for VmTest {
        package,
        target,
        vm,
        ..
    } in table
    {
        let mut cmd = cargo();
        cmd.args([
            "test",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "-p",
            package,
        ]);
        if let Some(t) = target {
            cmd.args(["--test", t]);
        }
        let json = util::cargo_json(&mut cmd)
            .with_context(|| format!("building the test binaries of {package} failed"))?;
        if groups.len() <= *vm {
            groups.resize_with(vm + 1, Vec::new);
        }
        groups[*vm].extend(util::executables(&json, |_, test| test));
    }
    for tests in &mut groups {
        tests.sort_by(|a, b| (&a.package, &a.target).cmp(&(&b.package, &b.target)));
        tests.dedup();
    }
    let groups: Vec<(usize, Vec<util::Artifact>)> = groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .collect();
    // The suites run the `otf` binary; build it here, natively (cargo under emulation is slow),
    // and optimised: under emulation a debug otf takes twice as long to start (3.7-4.3 s
    // against 2.0 s with a kprobe), and the suites start it about ninety times.
    eprintln!("xtask test: building otf (release) natively for the suites ($OTF_BIN in the VM)");
    let otf = util::cargo_build_bin("otf", "otf", true)?;
    // Fetch and unpack the VM kernels now (once), not in the VM threads.
    let mut kernels: Vec<&str> = groups.iter().map(|(i, _)| vm_kernel(table, *i)).collect();
    kernels.dedup();
    for series in kernels {
        let kernel = vm::prepare_kernel(vm::pin(series)?, None)?;
        eprintln!("xtask test: VM kernel {} ready", kernel.abi);
    }
    Ok(PreparedVmTests { table, groups, otf })
}

impl PreparedVmTests {
    /// Runs each group's binaries in its own VM, the VMs side by side; the guests' output goes to
    /// stdout or, with `log`, to that file (with several VMs, each VM's output in one piece).
    fn run(self, o: &Options, log: Option<&std::path::Path>) -> Result<Outcome> {
        let PreparedVmTests { table, groups, otf } = self;
        if groups.is_empty() {
            return Ok(Outcome::Skipped(
                "no kernel test binaries to run in the VM".into(),
            ));
        }
        if groups.len() == 1 {
            let (i, tests) = groups.into_iter().next().unwrap_or_default();
            return run_group(table, i, tests, &otf, o, log);
        }
        let dir = vm::cache_dir()?.join("run");
        std::fs::create_dir_all(&dir)?;
        let n = groups.len();
        let logs: Vec<std::path::PathBuf> = (0..n)
            .map(|i| dir.join(format!("vm-tests-{}-vm{i}.log", std::process::id())))
            .collect();
        if log.is_none() {
            eprintln!(
                "xtask test: {n} VMs side by side; their output is printed when each ends \
                 (follow it in {})",
                logs.iter()
                    .map(|l| l.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            for (k, (i, tests)) in groups.into_iter().enumerate() {
                let (tx, vm_log, otf) = (tx.clone(), logs[k].clone(), &otf);
                let _ = std::fs::remove_file(&vm_log);
                scope.spawn(move || {
                    let t = Instant::now();
                    let outcome = run_group(table, i, tests, otf, o, Some(&vm_log))
                        .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
                    let _ = tx.send((k, i, outcome, t.elapsed()));
                });
            }
            drop(tx);
            let mut failures = Vec::new();
            for (k, i, outcome, took) in rx {
                let text = std::fs::read_to_string(&logs[k]).unwrap_or_default();
                let _ = std::fs::remove_file(&logs[k]);
                let header = format!(
                    "xtask test: ==== VM {i} ({}) of {n} ended after {} ====\n",
                    vm_kernel(table, i),
                    fmt_duration(took)
                );
                match log {
                    Some(p) => append(p, &format!("{header}{text}")),
                    None => print!("{header}{text}"),
                }
                if let Outcome::Failed(why) = outcome {
                    failures.push(format!("VM {i}: {why}"));
                }
            }
            Ok(if failures.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed(failures.join("; "))
            })
        })
    }
}

/// Runs one VM's binaries in one boot (a new boot after a guest crash).
fn run_group(
    table: &'static [VmTest],
    index: usize,
    tests: Vec<util::Artifact>,
    otf: &std::path::Path,
    o: &Options,
    log: Option<&std::path::Path>,
) -> Result<Outcome> {
    // Progress and results go where the guest's output goes.
    let say = |msg: String| match log {
        Some(p) => append(p, &format!("{msg}\n")),
        None => eprintln!("{msg}"),
    };
    let dir = vm::cache_dir()?.join("run");
    std::fs::create_dir_all(&dir)?;
    let script_path = dir.join(format!("vm-tests-{}-vm{index}.sh", std::process::id()));
    let progress_path = dir.join(format!(
        "vm-tests-{}-vm{index}.progress",
        std::process::id()
    ));
    // The file `run` collects this VM's skips from (kept across boots after a guest crash).
    let skip_log = format!(
        "{}={}",
        skips::LOG_ENV,
        skips::log_path(&format!("vm{index}"))?.display()
    );
    let opts = vm::Options {
        kernel: vm_kernel(table, index).to_string(),
        verbose: o.verbose,
        timeout: o.vm_timeout,
        env: vec![
            skip_log,
            "OTF_IN_VM=1".into(),
            "OTF_REQUIRE_KPROBES=1".into(),
            format!("OTF_BIN={}", otf.display()),
            format!("OTF_DIFF_PROGRAMS={VM_DIFF_PROGRAMS}"),
        ],
        output: log.map(std::path::Path::to_path_buf),
        ..vm::Options::default()
    };
    // Normally one boot runs everything. If the guest crashes, the binary that was running is
    // reported as crashed and the rest run in a new boot.
    let mut results: Vec<(String, Option<i32>)> = Vec::new();
    let mut remaining = tests;
    let mut boots = 0;
    while !remaining.is_empty() {
        boots += 1;
        say(format!(
            "xtask test: VM boot {boots}: running {} test binaries: {}",
            remaining.len(),
            remaining.iter().map(label).collect::<Vec<_>>().join(", ")
        ));
        std::fs::write(
            &script_path,
            vm_script(table, index, &remaining, &progress_path)?,
        )?;
        std::fs::write(&progress_path, "")?;
        let rc = vm::run(
            &opts,
            &[OsString::from("sh"), script_path.clone().into_os_string()],
        );
        let progress = std::fs::read_to_string(&progress_path).unwrap_or_default();
        let (done, running) = parse_progress(&progress);
        for &(i, code) in &done {
            if let Some(t) = remaining.get(i) {
                results.push((label(t), Some(code)));
            }
        }
        match rc {
            // All finished (a crash while powering off does not matter).
            _ if done.len() == remaining.len() => break,
            Ok(rc) => bail!(
                "the VM's test script exited with {rc} after {} of {} binaries",
                done.len(),
                remaining.len()
            ),
            Err(e) => {
                let Some(crashed) = running else {
                    return Err(e);
                };
                say(format!(
                    "xtask test: the VM died while running {}: {e:#}",
                    label(&remaining[crashed])
                ));
                results.push((label(&remaining[crashed]), None));
                remaining.drain(..=crashed);
            }
        }
    }
    let _ = std::fs::remove_file(&script_path);
    let _ = std::fs::remove_file(&progress_path);
    say(format!(
        "xtask test: kernel test binaries in the VM ({boots} boot(s)):"
    ));
    let mut failures = Vec::new();
    for (name, code) in &results {
        let word = match code {
            Some(0) => "ok".to_string(),
            Some(c) => format!("FAILED (exit status {c})"),
            None => "VM DIED (crash or timeout)".to_string(),
        };
        say(format!("  {word:<24} {name}"));
        if *code != Some(0) {
            failures.push(format!("{name}: {word}"));
        }
    }
    Ok(if failures.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Failed(failures.join("; "))
    })
}

/// Appends `text` to the log file `path` (best effort: a log that cannot be written must not
/// fail the tests).
fn append(path: &std::path::Path, text: &str) {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
}

fn label(t: &util::Artifact) -> String {
    format!("{}/{}", t.package, t.target)
}

/// Parses the progress file: the binaries that finished (index, exit status), in order, and
/// the one that started but did not finish, if any.
fn parse_progress(text: &str) -> (Vec<(usize, i32)>, Option<usize>) {
    let mut done = Vec::new();
    let mut running = None;
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["start", i] => running = i.parse().ok(),
            ["done", i, rc] => {
                if let (Ok(i), Ok(rc)) = (i.parse(), rc.parse()) {
                    done.push((i, rc));
                    running = None;
                }
            }
            _ => {}
        }
    }
    (done, running)
}

/// The shell script that runs each test binary in the VM, in its package's directory (as
/// `cargo test` does), records its progress in `progress` (a host file, synced, so that a crash
/// of the guest shows which binary was running), reports each binary's status and exits with the
/// number of failures.
fn vm_script(
    table: &[VmTest],
    vm: usize,
    tests: &[util::Artifact],
    progress: &std::path::Path,
) -> Result<String> {
    let mut s = format!(
        "#!/bin/sh\n\
         # Generated by cargo xtask test: the kernel-level tests, run inside the VM.\n\
         progress={}\n\
         failed=0\n\
         summary=''\n\
         t() {{\n\
         \x20 i=$1; name=$2; dir=$3; shift 3\n\
         \x20 echo \"start $i\" >> \"$progress\"; sync\n\
         \x20 echo \"xtask vm-tests: ---- $name ($(uname -r))\"\n\
         \x20 (cd \"$dir\" && CARGO_MANIFEST_DIR=\"$dir\" \"$@\")\n\
         \x20 rc=$?\n\
         \x20 echo \"done $i $rc\" >> \"$progress\"; sync\n\
         \x20 if [ $rc -eq 0 ]; then r=ok; else r=\"FAILED (exit status $rc)\"; failed=$((failed+1)); fi\n\
         \x20 summary=\"$summary\nxtask vm-tests: $r: $name\"\n\
         }}\n",
        util::shell_quote_os(progress.as_os_str())?
    );
    for (i, t) in tests.iter().enumerate() {
        let dir = t
            .manifest
            .parent()
            .with_context(|| format!("odd manifest path {}", t.manifest.display()))?;
        write!(
            s,
            "t {i} {} {} {}",
            shell_quote(&label(t)),
            util::shell_quote_os(dir.as_os_str())?,
            util::shell_quote_os(t.exe.as_os_str())?
        )?;
        for a in vm_args(table, vm, t) {
            write!(s, " {}", shell_quote(a))?;
        }
        s.push('\n');
    }
    s.push_str("printf '%s\\n' \"$summary\"\nexit $failed\n");
    Ok(s)
}

/// Prints the summary (the steps, then every skipped test by place); returns the process exit
/// status: 1 if a step failed or a test skipped where it must not ([`skips::fatal`]).
fn summary(steps: &[Step], skipped: &[skips::Report], total: Duration) -> i32 {
    eprintln!("\nxtask test: summary");
    let mut failed = 0;
    for s in steps {
        let (word, note) = match &s.outcome {
            Outcome::Ok => ("ok", String::new()),
            Outcome::Failed(why) => {
                failed += 1;
                ("FAILED", format!("  {why}"))
            }
            Outcome::Skipped(why) => ("skipped", format!("  {why}")),
        };
        eprintln!(
            "  {word:<8} {:<24} {:>8}{note}",
            s.name,
            fmt_duration(s.took)
        );
    }
    if !util::is_root() && steps.iter().any(|s| s.name == "native tests") {
        eprintln!("  (not root: kernel tests skipped natively)");
    }
    let bad_skips = skips::print(skipped);
    if failed == 0 && bad_skips == 0 {
        eprintln!(
            "xtask test: PASSED ({} steps, {})",
            steps.len(),
            fmt_duration(total)
        );
        0
    } else {
        let skips_note = if bad_skips > 0 {
            format!(", {bad_skips} test(s) skipped that must run here (FATAL above)")
        } else {
            String::new()
        };
        eprintln!(
            "xtask test: FAILED ({failed} of {} steps failed{skips_note}, {})",
            steps.len(),
            fmt_duration(total)
        );
        1
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn vm_tables_run_everything_once_and_split_the_default_set_in_two() {
        let vms: std::collections::BTreeSet<usize> = super::VM_TESTS.iter().map(|t| t.vm).collect();
        assert_eq!(vms.into_iter().collect::<Vec<_>>(), [0, 1, 2]);
        // One kernel per VM, each a pinned one; 6.1 runs the suites and the invariants.
        for t in super::VM_TESTS {
            assert_eq!(t.kernel, super::vm_kernel(super::VM_TESTS, t.vm));
            assert!(crate::vm::pin(t.kernel).is_ok());
        }
        for suite in [
            "kprobes_onthefly",
            "hrtimer_onthefly",
            "tracepoint_onthefly",
            "uprobes_onthefly",
            "invariants",
        ] {
            assert!(
                super::VM_TESTS
                    .iter()
                    .any(|t| t.target == Some(suite) && t.kernel == "6.1"),
                "{suite} runs on 6.1"
            );
        }
        let kprobes = super::VM_TESTS
            .iter()
            .find(|t| t.target == Some("kprobes_onthefly"))
            .expect("the kprobes suite runs in the VM");
        for suite in [
            "hrtimer_onthefly",
            "tracepoint_onthefly",
            "uprobes_onthefly",
            "invariants",
        ] {
            assert!(
                super::VM_TESTS.iter().any(|t| t.target == Some(suite)),
                "{suite} runs in the VM too"
            );
        }
        let uprobes = super::VM_TESTS
            .iter()
            .find(|t| t.target == Some("uprobes_onthefly"))
            .unwrap();
        assert_ne!(kprobes.vm, uprobes.vm, "the two longest suites share no VM");
        assert!(super::VM_ALL_TESTS.iter().all(|t| t.vm == 0));
    }

    use super::*;
    use std::path::PathBuf;
    use std::process::Command;

    #[test]
    fn script_reports_each_binary_and_counts_failures() {
        let art = |target: &str, exe: &str| util::Artifact {
            manifest: PathBuf::from("/tmp/Cargo.toml"),
            package: "p".into(),
            target: target.into(),
            exe: PathBuf::from(exe),
        };
        let progress = std::env::temp_dir().join(format!("xtask-progress-{}", std::process::id()));
        let table = [VmTest {
            package: "p",
            target: Some("args"),
            args: &["filter one", "two"],
            vm: 0,
            kernel: "6.12",
        }];
        let script = vm_script(
            &table,
            0,
            &[
                art("good", "/bin/true"),
                art("bad", "/bin/false"),
                art("cwd", "/bin/pwd"),
                art("args", "/bin/echo"),
            ],
            &progress,
        )
        .unwrap();
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let log = std::fs::read_to_string(&progress).unwrap();
        std::fs::remove_file(&progress).unwrap();
        assert_eq!(
            parse_progress(&log),
            (vec![(0, 0), (1, 1), (2, 0), (3, 0)], None)
        );
        assert!(
            text.contains("\nfilter one two\n"),
            "a binary gets its table's arguments: {text}"
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("xtask vm-tests: ok: p/good"), "{text}");
        assert!(
            text.contains("xtask vm-tests: FAILED (exit status 1): p/bad"),
            "{text}"
        );
        assert!(
            text.contains("\n/tmp\n"),
            "binaries run in their package directory: {text}"
        );
    }

    #[test]
    fn progress_shows_the_crashed_binary() {
        assert_eq!(
            parse_progress("start 0\ndone 0 0\nstart 1\n"),
            (vec![(0, 0)], Some(1))
        );
        assert_eq!(parse_progress(""), (vec![], None));
    }

    #[test]
    fn summary_status() {
        let step = |outcome| Step {
            name: "x",
            outcome,
            took: Duration::ZERO,
        };
        assert_eq!(
            summary(
                &[step(Outcome::Ok), step(Outcome::Skipped("y".into()))],
                &[],
                Duration::ZERO
            ),
            0
        );
        assert_eq!(
            summary(
                &[step(Outcome::Ok), step(Outcome::Failed("z".into()))],
                &[],
                Duration::ZERO
            ),
            1
        );
    }

    #[test]
    fn summary_fails_on_skips_that_must_not_happen() {
        let ok = [Step {
            name: "native tests",
            outcome: Outcome::Ok,
            took: Duration::ZERO,
        }];
        let report = |as_root, log: &str| {
            let place = skips::Place {
                name: "natively".into(),
                log: PathBuf::from("/nonexistent"),
                as_root,
            };
            skips::Report::parse(&place, log)
        };
        let root = "otf-test-skip: root invariants::d_leak: needs root (BPF)\n";
        let env = "otf-test-skip: env kprobes_onthefly::otf_timer_10ms: no kprobes here\n";
        let tool = "otf-test-skip: tool uprobes_onthefly::otf_timer_50ms: needs gcc\n";
        // Listed, not fatal: kprobes natively; root while not root.
        assert_eq!(summary(&ok, &[report(false, env)], Duration::ZERO), 0);
        assert_eq!(summary(&ok, &[report(false, root)], Duration::ZERO), 0);
        // Fatal: root while root (natively or in a VM), a tool the xtask installs.
        assert_eq!(summary(&ok, &[report(true, root)], Duration::ZERO), 1);
        assert_eq!(
            summary(
                &ok,
                &[report(true, env), report(false, tool)],
                Duration::ZERO
            ),
            1
        );
    }

    /// The VM guests get the same log file `run` reads the VM's skips from.
    #[test]
    fn each_vm_has_its_own_skip_log() {
        let places = vm_places(VM_TESTS).unwrap();
        assert_eq!(
            places.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["VM 0 (6.12)", "VM 1 (6.12)", "VM 2 (6.1)"]
        );
        assert!(places.iter().all(|p| p.as_root));
        let logs: std::collections::BTreeSet<_> = places.iter().map(|p| &p.log).collect();
        assert_eq!(logs.len(), 3);
        assert_eq!(places[1].log, skips::log_path("vm1").unwrap());
    }
}
