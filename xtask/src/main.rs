//! Developer tasks for otf: `cargo xtask test | vm | run-probes | bench`.
//!
//! See docs/contributing.md for what each task does and docs/vm.md for the VM.

mod bench;
mod cpio;
mod deps;
mod run_probes;
mod test;
mod util;
mod vm;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// otf developer tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install missing build (and VM) dependencies, then check, lint and test everything:
    /// fmt, clippy, native tests, and the kernel tests inside the VM.
    Test(test::Options),
    /// Run COMMAND as root in a VM booting Debian's 6.12 kernel (with kprobes), the host's
    /// filesystem visible at the same paths; exits with COMMAND's status.
    Vm {
        #[command(flatten)]
        options: vm::Options,
        /// The command and its arguments (after `--`).
        #[arg(required = true, last = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Build otf (release) and run a script: scripts/default.stp unless told otherwise.
    RunProbes(run_probes::Options),
    /// Measure what probes cost, side by side: syscall and uprobe loops without probes, with a
    /// disarmed otf probe, with otf --no-otf and with bpftrace's false predicate; flip latencies;
    /// the refresh time for 500 uprobes (docs/performance.md).
    Bench(bench::Options),
    /// Install the build dependencies (and with --vm those of the VM) and exit.
    Deps {
        /// Also the VM's dependencies, and download the VM kernel.
        #[arg(long)]
        vm: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Test(o) => test::run(&o),
        Task::Vm { options, command } => vm::run(&options, &command),
        Task::RunProbes(o) => run_probes::run(&o),
        Task::Bench(o) => bench::run(&o),
        Task::Deps { vm } => deps_only(vm),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn deps_only(vm: bool) -> anyhow::Result<i32> {
    deps::ensure("building otf", deps::BUILD)?;
    if vm {
        deps::ensure("the test VM", deps::VM)?;
        let k = vm::prepare_kernel(vm::pin(vm::PINS[0].series)?, None)?;
        eprintln!(
            "xtask: VM kernel {} ready at {}",
            k.abi,
            k.vmlinuz.display()
        );
    }
    eprintln!("xtask: all dependencies are installed");
    Ok(0)
}
