//! Arrays and statistics in kernel probe bodies, for real (root): counting by key, `foreach`
//! and histograms in `end`, conditions on array elements, array overflow, and the display of
//! globals written and never read. Each script counts only the `exec`s of the `-c` command's
//! own children (`ppid() == target()`), so other activity on the machine cannot disturb it.

mod common;

use common::{err, otf, out};

/// Five children of the command's shell exec `/bin/true`.
const FIVE_EXECS: &str = "for i in 1 2 3 4 5; do /bin/true; done";

#[test]
fn counting_by_key_and_foreach_in_end() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        FIVE_EXECS,
        "-e",
        "global n\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target()) n[pid()]++ }\n\
         probe end { foreach (p in n) { c++; s += n[p] } printf(\"%d %d\\n\", c, s) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "5 5\n");
}

#[test]
fn aggregates_and_histograms() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        FIVE_EXECS,
        "-e",
        "global s\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target()) { s <<< 1; s <<< 100 } }\n\
         probe end { printf(\"%d %d %d %d %d\\n\", @count(s), @sum(s), @min(s), @max(s), @avg(s)); print(@hist_log(s)) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // SystemTap's layout: two empty rows kept on each side of a non-empty one (8 is the only
    // row with no non-empty bucket within two rows, so it alone becomes `~`).
    let want = "\
10 505 1 100 50
value |-------------------------------------------------- count
    0 |                                                   0
    1 |@@@@@                                              5
    2 |                                                   0
    4 |                                                   0
      ~
   16 |                                                   0
   32 |                                                   0
   64 |@@@@@                                              5
  128 |                                                   0
  256 |                                                   0

";
    assert_eq!(out(&o), want);
}

#[test]
fn a_condition_on_an_array_element_arms_the_probe() {
    need_root!();
    let o = otf(&[
        "run",
        "--otf-debug",
        "-c",
        "sleep 0.6; for i in 1 2 3; do /bin/true; done",
        "-e",
        "global on, n\nprobe kernel.trace(\"sched:sched_process_exec\") if (on[1]) { if (ppid() == target()) n++ }\n\
         probe timer.ms(200) { on[1] = 1 }\nprobe end { printf(\"n=%d\\n\", n) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.starts_with("otf: not registering (tracepoint) pidx 0\n"),
        "{text}"
    );
    assert!(
        text.contains("otf: registering (tracepoint) pidx 0\n"),
        "{text}"
    );
    assert!(text.ends_with("n=3\n"), "{text}");
}

#[test]
fn a_full_array_is_a_run_time_error() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        FIVE_EXECS,
        "-e",
        "global a[2]\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target()) a[pid()] = 1 }",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("ERROR: Array overflow, check size limit (2) near kernel.trace(\"sched:sched_process_exec\")"),
        "{}",
        err(&o)
    );
}

#[test]
fn globals_written_and_never_read_are_printed_at_exit() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        FIVE_EXECS,
        "-e",
        "global a, s, n\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target()) { a[1]++; a[2] += 2; s <<< 3; n++ } }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // `a[2] += 2` reads `a`, so only `s` and `n` are displayed, in declaration order.
    assert_eq!(out(&o), "s @count=5 @min=3 @max=3 @sum=15 @avg=3\nn=0x5\n");
}

#[test]
fn a_timer_body_with_foreach_and_delete_runs_in_user_space() {
    need_root!();
    // The iotop pattern: a kernel probe fills an array, a timer prints and clears it.
    let o = otf(&[
        "run",
        "--stats",
        "-c",
        &format!("{FIVE_EXECS}; sleep 0.6"),
        "-e",
        "global n, total\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target()) n[pid()]++ }\n\
         probe timer.ms(100) { foreach (p in n- limit 10) total += n[p]; delete n }\n\
         probe end { foreach (p in n) left++; printf(\"total=%d left=%d\\n\", total, left) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    // Five `/bin/true` and the `sleep`: six execs, all counted and cleared by the timer.
    assert!(text.starts_with("total=6 left=0\n"), "{text}");
    // The timer's hits run their bodies (in user space), none skipped.
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.ends_with("timer.ms(100)"))
        .expect("timer row")
        .split_whitespace()
        .collect();
    assert_eq!(row[1], row[2], "hits = bodies: {text}");
    assert!(row[1].parse::<u32>().unwrap_or(0) >= 5, "{text}");
}

#[test]
fn json_keeps_the_structure_of_histograms_and_globals() {
    need_root!();
    let o = otf(&[
        "run",
        "-o",
        "json",
        "-e",
        "global s, a, n, t\nprobe begin { s <<< 1; s <<< 100; a[1] = 5; a[2] = 7; n = 3; t[\"x\"] <<< 4; print(@hist_log(s)); exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let lines: Vec<serde_json::Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let hist = lines
        .iter()
        .find(|v| v["type"] == "hist")
        .expect("a hist record");
    assert_eq!(
        hist["buckets"],
        serde_json::json!([{"value": 1, "count": 1}, {"value": 64, "count": 1}])
    );
    let global = |name: &str| {
        lines
            .iter()
            .find(|v| v["type"] == "global" && v["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("global {name}: {lines:?}"))
    };
    assert_eq!(global("n")["value"], 3);
    assert_eq!(
        global("a")["entries"],
        serde_json::json!([{"keys": [2], "value": 7}, {"keys": [1], "value": 5}])
    );
    assert_eq!(global("t")["entries"][0]["keys"], serde_json::json!(["x"]));
    assert_eq!(global("t")["entries"][0]["stats"]["sum"], 4);
}
