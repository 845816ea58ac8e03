//! `--otf-rcu-expedited` sets /sys/kernel/rcu_expedited for the session and puts the old value
//! back at exit, also when otf is killed (orchestrator/src/run/expedite.rs; root).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{err, out};

const KNOB: &str = "/sys/kernel/rcu_expedited";

fn knob() -> String {
    std::fs::read_to_string(KNOB)
        .expect("read the knob")
        .trim()
        .to_string()
}

/// Waits up to 10 s for the knob to read `want`.
fn wait_knob(want: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if knob() == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

const SCRIPT: &str =
    "probe kernel.trace(\"sched:sched_process_exit\") { if (pid() == target()) exit() }";

/// One test, so that the cases do not race on the one system-wide knob.
#[test]
fn the_knob_is_set_for_the_session_and_restored_however_otf_ends() {
    need_root!();
    if std::fs::metadata(KNOB).is_err() {
        common::skip::skip(
            common::skip::Need::Env,
            "no /sys/kernel/rcu_expedited (TINY_RCU)",
        );
        return;
    }
    let before = knob();
    std::fs::write(KNOB, "0").expect("clear the knob");

    // A normal end: the command sees 1, the knob is 0 again when otf has exited.
    let o = common::otf(&[
        "run",
        "--otf-rcu-expedited",
        "-c",
        "cat /sys/kernel/rcu_expedited",
        "-e",
        SCRIPT,
    ]);
    let after_normal = knob();

    // Killed: the watchdog puts 0 back.
    let mut killed = Command::new(env!("CARGO_BIN_EXE_otf"))
        .args(["run", "--otf-rcu-expedited", "-c", "sleep 10", "-e", SCRIPT])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("otf runs");
    let was_set = wait_knob("1");
    killed.kill().expect("SIGKILL otf");
    let _ = killed.wait();
    let restored_after_kill = wait_knob("0");
    let after_kill = knob();

    // Already set by someone else: otf leaves it set.
    std::fs::write(KNOB, "1").expect("set the knob");
    let o2 = common::otf(&["run", "--otf-rcu-expedited", "-c", "true", "-e", SCRIPT]);
    let kept = knob();

    std::fs::write(KNOB, &before).expect("restore the knob");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "1\n");
    assert_eq!(after_normal, "0");
    assert!(was_set, "the knob never read 1 while otf ran");
    assert!(
        restored_after_kill,
        "the knob is still {after_kill} 10 s after SIGKILL"
    );
    assert_eq!(o2.status.code(), Some(0), "{}", err(&o2));
    assert_eq!(kept, "1");
}
