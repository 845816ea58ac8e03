//! Arrays and statistics in kernel probe bodies, for real (root): counting by key, `foreach`
//! and histograms in `end`, conditions on array elements, array overflow, and the display of
//! globals written and never read. Each script counts only the `exec`s of the `-c` command's
//! own children (`ppid() == target()`), so other activity on the machine cannot disturb it.

mod common;

use common::{err, otf, out, FIVE_EXECS};

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

#[test]
fn variance_of_values_added_in_the_kernel() {
    need_root!();
    // Five execs on CPU 0 add 1, 4, 9, 16, 25 in this order: one per-CPU copy. By hand, as
    // SystemTap's __stp_stat_add and _stp_stat_get compute it:
    // shift 0: avg_s 1, 2, 4, 7, 10 and M2 0, 6, 41, 149, 419; avg = 55/5 = 11,
    //   S1 = 5·(10−11)² = 5, S2 = 4·(419/4) = 416, (5 + 416)/4 = 105;
    // shift 4 (×16): avg_s 16, 40, 74, 119, 175 and M2 0, 1152, 8432, 33366, 96591;
    //   avg = 880/5 = 176, S1 = 5, S2 = 4·24147 = 96588, (5 + 96588)/4 = 24148, >> 8: 94.
    let o = otf(&[
        "run",
        "-c",
        &format!("exec taskset -c 0 sh -c '{FIVE_EXECS}'"),
        "-e",
        "global s, t, n\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target()) { n++; s <<< n * n; t[execname()] <<< n * n } }\n\
         probe end { printf(\"%d %d %d %d\\n\", @count(s), @variance(s), @variance(t[\"true\"], 4), @avg(s)) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "5 105 94 11\n");
}

#[test]
fn variance_combines_the_cpus_as_systemtap() {
    need_root!();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        common::skip::skip(common::skip::Need::Env, "needs two CPUs");
        return;
    }
    // 1 and 3 on CPU 0, 10 on CPU 1 (each `taskset` execs `true` on its CPU). CPU 0's copy:
    // avg_s 2, M2 2; CPU 1's: avg_s 10. avg = 14/3 = 4, S1 = 2·(2−4)² + 1·(10−4)² = 44,
    // S2 = 1·(2/1) = 2: (44 + 2)/2 = 23 (all on one CPU it would be 25).
    let o = otf(&[
        "run",
        "-c",
        "taskset -c 0 /bin/true; taskset -c 0 /bin/true; taskset -c 1 /bin/true",
        "-e",
        "global s, t, n\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target() && execname() == \"true\") { n++; v = n == 3 ? 10 : 2 * n - 1; s <<< v; t[cpu()] <<< v } }\n\
         probe end { printf(\"%d %d %d %d %d\\n\", @count(s), @sum(s), @variance(s), @variance(t[0]), @variance(t[1])) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // t[0]: 1, 3 alone: delta 2, avg_s 2, M2 2; avg 2, S1 0, S2 2: 2. t[1]: one value, 0.
    assert_eq!(out(&o), "3 14 23 2 0\n");
}
