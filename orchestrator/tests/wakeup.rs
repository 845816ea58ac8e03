//! otf's own threads run with a 0.1 ms scheduler slice so that a notification preempts a busy
//! traced program at once (orchestrator/src/run/wakeup.rs); the `-c` command keeps the
//! kernel's default slice (root; Linux 6.12+, where `/proc/PID/sched` shows `se.slice`).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::skip::{skip, Need};

/// `se.slice` of a thread, from `/proc/PID/task/TID/sched`.
fn slice(task: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(task.join("sched")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("se.slice"))
        .and_then(|v| v.trim_start_matches([' ', ':']).trim().parse().ok())
}

#[test]
fn otf_threads_get_a_short_slice_and_the_command_keeps_its_own() {
    need_root!();
    if slice(std::path::Path::new("/proc/self")).is_none() {
        skip(
            Need::Env,
            "this kernel shows no se.slice in /proc/PID/sched (before 6.6)",
        );
        return;
    }
    // The tracepoint's program is loaded and the -c command waits in `sleep` while we look.
    let otf = Command::new(env!("CARGO_BIN_EXE_otf"))
        .args([
            "run",
            "-T",
            "20s",
            "-c",
            "sleep 30",
            "-e",
            "probe kernel.trace(\"sched:sched_process_exit\") { if (pid() == target()) exit() }",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("otf runs");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", otf.id()));
    let deadline = Instant::now() + Duration::from_secs(20);
    // The command is the only child of otf; wait until it is there and otf's slice is set.
    let (own, cmd) = loop {
        let children =
            std::fs::read_to_string(proc_dir.join(format!("task/{}/children", otf.id())))
                .unwrap_or_default();
        let own = slice(&proc_dir);
        if let (Some(pid), Some(own)) = (children.split_whitespace().next(), own) {
            if own == 100_000 {
                break (own, slice(std::path::Path::new(&format!("/proc/{pid}"))));
            }
        }
        assert!(
            Instant::now() < deadline,
            "otf's slice never became 0.1 ms: {own:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let default = slice(std::path::Path::new("/proc/self")).expect("read above");
    // SAFETY: kill(2) on the pid of our own child, which has not been waited for yet.
    unsafe { libc::kill(otf.id() as i32, libc::SIGINT) };
    let o = otf.wait_with_output().expect("otf output");
    assert_eq!(o.status.code(), Some(0), "{}", common::err(&o));
    assert_eq!(own, 100_000);
    assert_eq!(
        cmd,
        Some(default),
        "the -c command must keep the default slice {default}"
    );
}
