//! Syscall probes dispatched by number (root): `otf run` on three syscalls per direction (a
//! dispatch unit each, one raw `sys_enter`/`sys_exit` link, docs/runtime.md) gives each hit the
//! `pp()` of its own probe and nothing for a probed syscall that is not made, exactly as the
//! same script with one perf tracepoint per probe (`OTF_SYSCALL_DISPATCH_MIN` large).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{err, out};

/// Runs `otf run -e script` with `OTF_SYSCALL_DISPATCH_MIN=min` (if given), calling getppid
/// and uname until it exits.
fn run(script: &str, min: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_otf"));
    c.args(["run", "-e", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(m) = min {
        c.env("OTF_SYSCALL_DISPATCH_MIN", m);
    }
    let mut child = c.spawn().expect("otf runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    // SAFETY: utsname is plain bytes; all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    while child.try_wait().expect("wait for otf").is_none() {
        assert!(Instant::now() < deadline, "otf still running after 60 s");
        // SAFETY: getppid has no preconditions; uname writes into a valid utsname.
        unsafe {
            libc::syscall(libc::SYS_getppid);
            libc::syscall(libc::SYS_uname, &mut uts as *mut libc::utsname);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("otf output")
}

#[test]
fn dispatched_hits_have_their_own_pp() {
    need_root!();
    let me = std::process::id();
    let script = format!(
        "global seen\n\
         probe kernel.trace(\"syscalls:sys_enter_getppid\"), kernel.trace(\"syscalls:sys_enter_newuname\"),\n\
         \x20     kernel.trace(\"syscalls:sys_enter_getpgid\") {{ if (pid() == {me}) seen[pp()]++ }}\n\
         probe kernel.trace(\"syscalls:sys_exit_getppid\"), kernel.trace(\"syscalls:sys_exit_newuname\"),\n\
         \x20     kernel.trace(\"syscalls:sys_exit_getpgid\") {{ if (pid() == {me}) seen[pp()]++ }}\n\
         probe timer.ms(500) {{ exit() }}\n\
         probe end {{ foreach (k+ in seen) println(k) }}\n"
    );
    let want = "kernel.trace(\"syscalls:sys_enter_getppid\")\n\
                kernel.trace(\"syscalls:sys_enter_newuname\")\n\
                kernel.trace(\"syscalls:sys_exit_getppid\")\n\
                kernel.trace(\"syscalls:sys_exit_newuname\")\n";
    for min in [None, Some("1000000")] {
        let o = run(&script, min);
        assert_eq!(o.status.code(), Some(0), "{min:?}: {}", err(&o));
        assert_eq!(out(&o), want, "OTF_SYSCALL_DISPATCH_MIN={min:?}");
    }
}
