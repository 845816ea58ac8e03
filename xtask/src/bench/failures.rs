//! `failures`: how long otf takes to give up, and to stop when interrupted, on a start of
//! thousands of uprobes (issue 13: a failed start and Ctrl-C during a long start end within
//! 1 s).
//!
//! - **Failed start**: `process(LIB).function("*")` over a library of 2,000 functions and one,
//!   `bad`, whose first instruction (`push %es`, invalid in 64-bit mode) the kernel refuses at
//!   attach time (otf's up-front check does not know that opcode), while a process maps the
//!   library. The batch fails as one uprobe_multi link, and otf bisects it with multi links;
//!   timed from exec to exit (status 1).
//! - **Ctrl-C during the start**: `process(libc).function("*")` (~2,800 functions), SIGINT
//!   20 ms after exec, timed from the signal to exit; and, for scale, the same run's exec to
//!   exit with `-T 1ms`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::Ctx;

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

/// Builds the library with a bad function and starts a program mapping it.
fn fixture(dir: &Path) -> Result<std::process::Child> {
    std::fs::create_dir_all(dir)?;
    let mut c = String::new();
    for k in 0..2000 {
        c.push_str(&format!("int f{k}(int x) {{ return x + {k}; }}\n"));
    }
    c.push_str("__attribute__((naked)) void bad(void) { __asm__(\".byte 0x06; ret\"); }\n");
    std::fs::write(dir.join("lib.c"), c)?;
    std::fs::write(
        dir.join("main.c"),
        "#include <unistd.h>\nint f1(int);\nint main(void) { for (;;) { f1(1); usleep(10000); } }\n",
    )?;
    let rpath = format!("-Wl,-rpath,{}", dir.display());
    for args in [
        vec!["-O1", "-shared", "-fPIC", "lib.c", "-o", "libmany.so"],
        vec!["main.c", "-L.", "-lmany", rpath.as_str(), "-o", "main"],
    ] {
        let o = Command::new("gcc").current_dir(dir).args(&args).output()?;
        if !o.status.success() {
            bail!("gcc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
    Ok(Command::new(dir.join("main")).spawn()?)
}

/// Runs otf once; returns (exit status, exec to exit), sending SIGINT after `interrupt` if
/// given (then the time is from the signal to exit).
fn time_run(otf: &Path, args: &[&str], interrupt: Option<Duration>) -> Result<(i32, Duration)> {
    let t0 = Instant::now();
    let mut child = Command::new(otf)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start otf")?;
    let mut from = t0;
    if let Some(after) = interrupt {
        std::thread::sleep(after);
        from = Instant::now();
        // SAFETY: kill on our own child's pid, not yet reaped (we own the Child).
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    }
    let status = child.wait()?;
    Ok((status.code().unwrap_or(-1), from.elapsed()))
}

fn ms(d: &[Duration]) -> String {
    let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    match (v.first(), v.get(v.len() / 2), v.last()) {
        (Some(lo), Some(med), Some(hi)) => format!("{med:.0} [{lo:.0}-{hi:.0}]"),
        _ => "-".into(),
    }
}

/// The failures benchmark.
pub fn bench_failures(ctx: &Ctx) -> Result<()> {
    let Some(otf) = &ctx.otf else {
        bail!("needs otf");
    };
    let reps = ctx.opts.reps;
    let dir = std::env::temp_dir().join(format!("otf-bench-failures-{}", std::process::id()));
    let mut main = fixture(&dir)?;
    std::thread::sleep(Duration::from_millis(100));
    let bad_script = format!(
        "probe process(\"{}\").function(\"*\") {{ }}",
        dir.join("libmany.so").display()
    );
    let libc_script = format!("global n\nprobe process(\"{LIBC}\").function(\"*\") {{ n++ }}");
    let (mut failed, mut ctrl_c, mut whole) = (Vec::new(), Vec::new(), Vec::new());
    let mut statuses = Vec::new();
    for rep in 0..reps {
        eprint!("\rxtask bench: repetition {}/{reps}", rep + 1);
        let (st, d) = time_run(otf, &["run", "-T", "5s", "-e", &bad_script], None)?;
        statuses.push(st);
        failed.push(d);
        if Path::new(LIBC).exists() {
            let (_, d) = time_run(
                otf,
                &["run", "-T", "10s", "-e", &libc_script],
                Some(Duration::from_millis(20)),
            )?;
            ctrl_c.push(d);
            let (_, d) = time_run(otf, &["run", "-T", "1ms", "-e", &libc_script], None)?;
            whole.push(d);
        }
    }
    eprintln!();
    let _ = main.kill();
    let _ = main.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("ms, median [min-max] of {reps} runs:");
    println!(
        "failed start, 2,001 uprobes, one refused at attach (exec to exit; exit statuses {statuses:?}): {}",
        ms(&failed)
    );
    println!(
        "SIGINT 20 ms into a start of process(libc).function(\"*\") to exit: {}",
        ms(&ctrl_c)
    );
    println!(
        "process(libc).function(\"*\") with -T 1ms, exec to exit: {}",
        ms(&whole)
    );
    if statuses.iter().any(|&s| s != 1) {
        bail!("the failed start did not exit with status 1: {statuses:?}");
    }
    Ok(())
}
