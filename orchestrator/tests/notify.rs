//! Condition flips wake otf at once from every context (root): a body on a scheduler
//! tracepoint, which fires with run-queue locks held, notifies through the ring buffer's
//! `irq_work` like any other (docs/runtime.md, "Notification and safe contexts").

mod common;

use common::{err, otf, otf_while, out};

/// The background timer is 30 s away and the run ends after 20 s: only the notification sent
/// by the `sched:sched_process_fork` body can arm the timer probe, which then ends the run.
#[test]
fn a_flip_in_a_scheduler_tracepoint_body_arms_at_once() {
    need_root!();
    // A fork every 10 ms until otf exits (the first ones may come before the probe is armed).
    let fork = || {
        let _ = std::process::Command::new("true").status();
    };
    let o = otf_while(
        &[
            "run",
            "--otf-debug",
            "--otf-interval",
            "30s",
            "-T",
            "20s",
            "-e",
            "global on\nprobe kernel.trace(\"sched:sched_process_fork\") if (!on) { on = 1 }\n\
         probe timer.ms(5) if (on) { println(\"hit\"); exit() }\n\
         probe end { println(\"end\") }",
        ],
        fork,
    );
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with("otf: not starting (hrtimer) pidx 1\n"),
        "{text}"
    );
    assert!(text.contains("otf: enabling (hrtimer) pidx 1\n"), "{text}");
    // `exit()` from the timer body, not the -T limit: "hit" comes before "end".
    let hit = text
        .find("hit\n")
        .unwrap_or_else(|| panic!("no hit: {text}"));
    assert!(text[hit..].contains("end\n"), "{text}");
}

/// `otf check` says so, for the scheduler's tracepoints as for any other.
#[test]
fn check_prints_immediate_notification_for_scheduler_tracepoints() {
    need_root!();
    let o = otf(&[
        "check",
        "-v",
        "-e",
        "global on\nprobe kernel.trace(\"sched:sched_process_fork\") { on = 1 }\n\
         probe timer.s(1) if (on) { }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with(
            "probe 0 kernel.trace(\"sched:sched_process_fork\") group=tracepoint \
             attach=\"tracepoint sched:sched_process_fork\" otf=yes notify=immediate\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("# tracepoint: notify=immediate: ring-buffer wake-ups go through irq_work"),
        "{text}"
    );
}
