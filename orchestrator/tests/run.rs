//! `otf run` for real (root): begin/end, timers, exit(), -T, -c, -x, JSON output, --stats,
//! --otf-debug decisions, run-time errors. Skipped (reported, `common::skip`) when not root.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{err, otf, otf_while, out};

#[test]
fn begin_and_end_run_in_order() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "probe begin { println(\"hello\") } probe end { println(\"bye\") } probe begin { exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "hello\nbye\n");
}

#[test]
fn timer_fires_and_exit_ends_the_run() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "global n\nprobe timer.ms(10) { n++; printf(\"tick %d\\n\", n); if (n == 5) exit() }\n\
         probe end { printf(\"n=%d %s\\n\", n, pp()) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // Ticks in order from 1; no body runs after exit() (STOPPING), so the end body sees 5.
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    let ticks = lines.len() - 1;
    assert_eq!(ticks, 5, "{text}");
    for (i, l) in lines[..ticks].iter().enumerate() {
        assert_eq!(*l, format!("tick {}", i + 1), "{text}");
    }
    assert_eq!(lines[ticks], format!("n={ticks} end"), "{text}");
}

#[test]
fn timeout_ends_the_run_with_status_0() {
    need_root!();
    let t = Instant::now();
    let o = otf(&[
        "run",
        "-T",
        "300ms",
        "-e",
        "probe timer.s(100) { } probe end { println(\"end\") }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "end\n");
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn command_sets_target_and_ends_the_run() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        "echo child $$",
        "-e",
        "probe begin { printf(\"target %d\\n\", target()) } probe end { println(\"end\") }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let target = lines[0].strip_prefix("target ").expect("target line");
    assert!(target.parse::<i64>().is_ok_and(|p| p > 0), "{text}");
    // The command's pid is target() (sh execs into the command's shell).
    assert_eq!(lines[1], format!("child {target}"), "{text}");
    assert_eq!(lines[2], "end");
}

/// `target()` is the pid of the command itself, not of a shell around it: a program started by
/// `-c` (here another shell reporting its own pid) has pid `target()`.
#[test]
fn target_is_the_command_s_own_pid() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        "sh -c 'echo child $$'",
        "-e",
        "probe begin { printf(\"target %d\\n\", target()) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<&str> = text.lines().collect();
    let target = lines[0].strip_prefix("target ").expect("target line");
    assert_eq!(lines[1], format!("child {target}"), "{text}");
}

#[test]
fn target_option() {
    need_root!();
    let o = otf(&[
        "run",
        "-x",
        "4242",
        "-e",
        "probe begin { println(target()); exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "4242\n");
}

#[test]
fn json_output_records_and_decisions() {
    need_root!();
    let o = otf(&[
        "run",
        "-o",
        "json",
        "--otf-debug",
        "-e",
        "global on\nprobe timer.ms(5) if (on) { println(\"hit\"); exit() }\n\
         probe begin { println(\"hi\") }\nprobe timer.ms(50) { on = 1 }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let has = |v: serde_json::Value| lines.contains(&v);
    assert!(
        has(serde_json::json!({"type":"output","pidx":null,"text":"hi\n"})),
        "{text}"
    );
    assert!(
        has(
            serde_json::json!({"type":"otf","decision":"not starting","group":"hrtimer","flavor":"hrtimer","pidx":0})
        ),
        "{text}"
    );
    assert!(
        has(
            serde_json::json!({"type":"otf","decision":"enabling","group":"hrtimer","flavor":"hrtimer","pidx":0})
        ),
        "{text}"
    );
    assert!(
        has(serde_json::json!({"type":"output","pidx":0,"text":"hit\n"})),
        "{text}"
    );
}

#[test]
fn otf_debug_lines_follow_the_toggles() {
    need_root!();
    let o = otf(&[
        "run",
        "--otf-debug",
        "--otf-interval",
        "10ms",
        "-e",
        "global on, n\nprobe timer.ms(5) if (on) { }\n\
         probe timer.ms(200) { if (++n > 4) exit() else { println(\"toggling\"); on = !on } }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // As SystemTap's harness: the expected lines must appear in this order (other lines may come
    // between them). The toggles are 200 ms apart and the refresh interval 10 ms, so each toggle
    // gets its own refresh.
    let text = out(&o);
    let expected = [
        "otf: not starting (hrtimer) pidx 0",
        "toggling",
        "otf: enabling (hrtimer) pidx 0",
        "toggling",
        "otf: disabling (hrtimer) pidx 0",
        "toggling",
        "otf: enabling (hrtimer) pidx 0",
        "toggling",
        "otf: disabling (hrtimer) pidx 0",
    ];
    let mut want = expected.iter().peekable();
    for line in text.lines() {
        if want.peek().is_some_and(|w| **w == line) {
            want.next();
        }
    }
    assert!(
        want.peek().is_none(),
        "missing {:?} in:\n{text}",
        want.peek()
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("otf: ")).count(),
        5,
        "{text}"
    );
}

#[test]
fn stats_table() {
    need_root!();
    let o = otf(&[
        "run",
        "--stats",
        "-e",
        "global n\nprobe timer.ms(10) { if (++n == 3) exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    // `++n` is a pure write, as in SystemTap: `n` is displayed at exit, before the table.
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("n=0x3"), "{text}");
    let header = lines.next().expect("header");
    for col in [
        "pidx",
        "hits",
        "bodies",
        "skipped_cond",
        "skipped_lock",
        "skipped_nest",
        "armed",
        "disarmed",
        "lost",
        "point",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(row[0], "0");
    // exit() at the third body; no body runs after it.
    assert_eq!(row[2], "3", "bodies: {text}");
    assert_eq!(
        row[1], row[2],
        "no condition: every hit runs its body: {text}"
    );
    assert_eq!(row[3..6], ["0", "0", "0"], "nothing skipped: {text}");
    assert_eq!(row[6], "1", "armed once: {text}");
    assert_eq!(row[8], "0", "no firing lost: {text}");
    assert_eq!(row[9], "timer.ms(10)");
}

#[test]
fn runtime_error_ends_the_run_with_status_1() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "global z\nprobe timer.ms(10) { println(1 / z) }",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("ERROR: division by zero near timer.ms(10) (pidx 0)"),
        "{}",
        err(&o)
    );
}

#[test]
fn no_body_runs_after_a_runtime_error_in_the_kernel() {
    need_root!();
    // SystemTap's probe epilogue (MAXERRORS 0): the first error ends the session and no
    // later hit runs its body, even before user space has read the error. The test keeps
    // calling getppid() in bursts while otf runs, so hits follow the failing one within
    // microseconds; `end` still runs and sees one body run.
    let me = std::process::id();
    let src = format!(
        "global n, z\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") {{ if (pid() == {me}) {{ n++; println(1 / z) }} }}\n\
         probe end {{ printf(\"runs %d\\n\", n) }}"
    );
    let o = otf_while(&["run", "-T", "30s", "-e", &src], || {
        for _ in 0..10_000 {
            // SAFETY: getppid has no preconditions.
            unsafe { libc::getppid() };
        }
    });
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(out(&o), "runs 1\n", "{}", err(&o));
    assert_eq!(
        err(&o).matches("ERROR: division by zero").count(),
        1,
        "{}",
        err(&o)
    );
}

#[test]
fn a_probe_flooding_the_output_does_not_keep_otf_from_its_deadline() {
    need_root!();
    // Two threads call getppid() as fast as they can and every call prints a line: more
    // records than otf can format. otf must still end at its -T deadline (and report the
    // records the full ring buffer dropped) rather than read the buffer forever.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // SAFETY: getppid has no preconditions.
                    unsafe { libc::getppid() };
                }
            })
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_otf"))
        .args([
            "run",
            "-T",
            "1s",
            "-e",
            "probe kernel.trace(\"syscalls:sys_enter_getppid\") { printf(\"x %d\\n\", pid()) }",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("otf runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for otf") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in spinners {
        t.join().expect("spinner");
    }
    let o = child.wait_with_output().expect("otf output");
    assert!(
        status.is_some(),
        "otf still running 30 s after its 1 s deadline: {}",
        err(&o)
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains("output record(s) lost"), "{}", err(&o));
}

#[test]
fn suppressed_runtime_errors_keep_running() {
    need_root!();
    // The body fails every time; its third run can only come if the first two errors did not
    // end the run (no time window: `-T` only bounds a failure).
    let o = otf(&[
        "run",
        "--suppress-handler-errors",
        "-T",
        "30s",
        "-e",
        "global z, n\nprobe timer.ms(50) { if (++n == 3) exit(); println(1 / z) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("n=0x3\n"), "{}", out(&o));
    assert!(
        err(&o).matches("ERROR: division by zero").count() >= 2,
        "{}",
        err(&o)
    );
}

#[test]
fn tracepoint_probe_on_the_fly() {
    need_root!();
    // The tracepoint starts off; the timer turns it on; the test forks until the script has
    // counted three forks while on (`-T` only bounds a failure).
    let o = otf_while(
        &[
            "run",
            "--otf-debug",
            "--stats",
            "-T",
            "30s",
            "-e",
            "global on, n\nprobe kernel.trace(\"sched_process_fork\") if (on) { if (++n == 3) exit() }\n\
             probe timer.ms(200) { on = 1 }",
        ],
        || {
            Command::new("/bin/true").status().expect("fork /bin/true");
        },
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with("otf: not registering (tracepoint) pidx 0\n"),
        "{text}"
    );
    assert!(
        text.contains("otf: registering (tracepoint) pidx 0\nn=0x3\n"),
        "three forks counted while on, then exit(): {text}"
    );
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.trim_start().starts_with("0 "))
        .expect("stats row")
        .split_whitespace()
        .collect();
    assert!(
        row[2].parse::<u64>().unwrap_or(0) >= 3,
        "forks counted: {text}"
    );
}

#[test]
fn no_otf_keeps_everything_armed() {
    need_root!();
    let o = otf(&[
        "run",
        "--no-otf",
        "--otf-debug",
        "--stats",
        "-T",
        "200ms",
        "-e",
        "global on\nprobe timer.ms(10) if (on) { }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        !text.contains("otf: "),
        "no decisions under --no-otf: {text}"
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert!(
        row[1].parse::<u64>().unwrap_or(0) > 0,
        "hits while armed: {text}"
    );
    assert_eq!(row[2], "0", "no body ran: {text}");
}

#[test]
fn safe_context_notification_refreshes_before_the_timer() {
    need_root!();
    // The background timer is 30 s away: only the notification sent by the tracepoint body
    // (a safe context) can arm the timer probe in time. The test calls getppid until otf
    // exits, so a call comes after the tracepoint is attached whenever that is.
    let t = Instant::now();
    let o = otf_while(
        &[
            "run",
            "--otf-debug",
            "--otf-interval",
            "30s",
            "-T",
            "20s",
            "-e",
            "global on\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") if (!on) { on = 1 }\n\
             probe timer.ms(5) if (on) { println(\"hit\"); exit() }",
        ],
        || {
            let _ = std::os::unix::process::parent_id();
        },
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with("otf: not starting (hrtimer) pidx 1\n"),
        "{text}"
    );
    assert!(text.contains("otf: enabling (hrtimer) pidx 1\n"), "{text}");
    assert!(text.contains("hit\n"), "{text}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn two_probes_on_one_syscall_tracepoint_both_run() {
    need_root!();
    let o = otf(&[
        "run",
        "--stats",
        "-c",
        "sh -c true; sh -c true",
        "-e",
        "global a, b\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { a++ }\n\
         probe kernel.trace(\"syscalls:sys_enter_getppid\") { b++ }\n\
         probe end { printf(\"%d %d\\n\", a > 0, a == b) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("1 1\n"), "{}", out(&o));
}

/// Script arguments: `$1` lexed as script text, `@2` a string, `$#` their number.
#[test]
fn script_arguments_are_substituted() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "probe begin { printf(\"%d %s %d\\n\", $1, @2, $#); exit() }",
        "--",
        "5",
        "hello",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "5 hello 2\n");
    // Missing: refused before anything runs.
    let o = otf(&[
        "run",
        "-e",
        "probe begin { printf(\"%d\\n\", $2); exit() }",
        "--",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains(
            "command line argument index 2 out of range [1-1]\n  --> <command line>:1:30\n"
        ),
        "{}",
        err(&o)
    );
    assert_eq!(out(&o), "");
}
