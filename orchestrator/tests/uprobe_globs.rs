//! Function globs over a library (root): what uprobes cannot probe is skipped with one warning
//! (SystemTap warns per probe that fails to register and goes on; bpftrace refuses the glob),
//! and an exact name that cannot be probed fails with the reason in words, never "Unknown error
//! 524".

use std::process::{Command, Output};

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

fn otf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otf"))
        .args(args)
        .output()
        .expect("otf runs")
}

fn skip() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root");
        return true;
    }
    if !std::path::Path::new(LIBC).exists() {
        eprintln!("SKIPPED: no {LIBC}");
        return true;
    }
    false
}

#[test]
fn a_glob_skips_functions_uprobes_cannot_probe() {
    if skip() {
        return;
    }
    let script =
        format!("global n\nprobe process(\"{LIBC}\").function(\"pthread_spin_*\") {{ n++ }}");
    let o = otf(&["run", "-T", "300ms", "-e", &script]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: 1 function matching `pthread_spin_*`")
            && err.contains("cannot be probed and is skipped")
            && err.contains("pthread_spin_lock"),
        "{err}"
    );
    assert!(!err.contains("524"), "{err}");
}

#[test]
fn an_exact_name_that_cannot_be_probed_says_why() {
    if skip() {
        return;
    }
    let script = format!("probe process(\"{LIBC}\").function(\"pthread_spin_lock\") {{ }}");
    let o = otf(&["run", "-T", "300ms", "-e", &script]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot probe `pthread_spin_lock`: its first instruction has a `lock` prefix"),
        "{err}"
    );
}
