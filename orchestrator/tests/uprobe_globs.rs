//! Function globs over a library (root): what uprobes cannot probe is skipped with one warning
//! (SystemTap warns per probe that fails to register and goes on; bpftrace refuses the glob),
//! and an exact name that cannot be probed fails with the reason in words, never "Unknown error
//! 524".

use std::process::{Command, Output};

use common::skip::{self, Need};

mod common;

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

fn otf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otf"))
        .args(args)
        .output()
        .expect("otf runs")
}

fn skip() -> bool {
    if !skip::need_root("attaching uprobes") {
        return true;
    }
    if !std::path::Path::new(LIBC).exists() {
        skip::skip(Need::Env, &format!("no {LIBC}"));
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

/// A library of `n` functions and one, `bad`, whose first instruction (`push %es`, invalid in
/// 64-bit mode) the kernel refuses at attach time although otf's up-front check does not know
/// it; and a program that maps it and runs (uprobes are installed in the processes that map
/// the file, so that is where the kernel finds the bad instruction). Built with gcc in `dir`.
fn library_with_a_bad_function(dir: &std::path::Path, n: usize) -> std::process::Child {
    std::fs::create_dir_all(dir).expect("fixture dir");
    let mut c = String::new();
    for k in 0..n {
        c.push_str(&format!("int f{k}(int x) {{ return x + {k}; }}\n"));
    }
    c.push_str("__attribute__((naked)) void bad(void) { __asm__(\".byte 0x06; ret\"); }\n");
    std::fs::write(dir.join("lib.c"), c).expect("write lib.c");
    std::fs::write(
        dir.join("main.c"),
        "#include <unistd.h>\nint f1(int);\nint main(void) { for (;;) { f1(1); usleep(10000); } }\n",
    )
    .expect("write main.c");
    let gcc = |args: &[&str]| {
        let o = Command::new("gcc")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("gcc runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    gcc(&["-O1", "-shared", "-fPIC", "lib.c", "-o", "libmany.so"]);
    let rpath = format!("-Wl,-rpath,{}", dir.display());
    gcc(&["main.c", "-L.", "-lmany", &rpath, "-o", "main"]);
    Command::new(dir.join("main")).spawn().expect("start main")
}

#[test]
fn a_function_refused_at_attach_fails_the_start_naming_it() {
    if skip() {
        return;
    }
    if Command::new("gcc").arg("--version").output().is_err() {
        skip::skip(Need::Tool, "no gcc to build the library");
        return;
    }
    let dir = std::env::temp_dir().join(format!("otf-bad-uprobe-{}", std::process::id()));
    let mut main = library_with_a_bad_function(&dir, 2000);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let script = format!(
        "global n\nprobe process(\"{}\").function(\"*\") {{ n++ }}",
        dir.join("libmany.so").display()
    );
    let o = otf(&["run", "-T", "2s", "-e", &script]);
    let _ = main.kill();
    let _ = main.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&o.stderr);
    // The batch of 2,001 fails as one uprobe_multi link; bisecting it with multi links finds
    // `bad` alone, and the start fails with its name and the reason in words.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("libmany.so:bad ")
            && err.contains("cannot single-step the function's first instruction (ENOTSUPP)"),
        "{err}"
    );
    assert!(!err.contains("Unknown error"), "{err}");
}
