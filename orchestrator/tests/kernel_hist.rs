//! Printing histograms in kernel probe bodies, for real (root): the kernel copies the
//! buckets into the output record when the print runs, and `otf run` prints them exactly as
//! the same prints in a `begin` body (run by the reference VM) do.

mod common;

use common::{err, otf, out};

/// `otf run -e script` with extra arguments before it; its standard output (exit status 0).
fn run(args: &[&str], script: &str) -> String {
    let mut a: Vec<&str> = vec!["run"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-e", script]);
    let o = otf(&a);
    assert_eq!(o.status.code(), Some(0), "{script}: {}", err(&o));
    out(&o)
}

#[test]
fn a_histogram_prints_in_a_tracepoint_body_as_in_begin() {
    need_root!();
    let body = "s <<< 5; s <<< -3; s <<< 5; print(@hist_log(s))";
    let kernel = run(
        &["-c", "/bin/true"],
        &format!(
            "global s\nprobe kernel.trace(\"sched:sched_process_exec\") {{ if (pid() == target() && execname() == \"true\") {{ {body} }} }}"
        ),
    );
    let vm = run(&[], &format!("global s\nprobe begin {{ {body}; exit() }}"));
    assert_eq!(kernel, vm);
    assert!(kernel.contains("    4 |@@ "), "{kernel}");
    assert!(kernel.contains("   -2 |@ "), "{kernel}");
}

#[test]
fn histograms_of_values_spread_over_cpus_and_deleted_after_the_print() {
    need_root!();
    // Four children of the command's shell call getppid(2), pinned to CPUs 0, 1, 0, 1 where
    // `taskset` can: the fourth prints the buckets of every CPU's copy, then deletes them.
    let calls = "for c in 0 1 0 1; do taskset -c $c perl -e 'getppid()' 2>/dev/null || perl -e 'getppid()'; done";
    let step = "a[\"k\", 1] <<< @count(a[\"k\", 1]) * 10 + 1";
    let print =
        "println(\"n=\", @count(a[\"k\", 1]), @hist_linear(a[\"k\", 1], 0, 40, 10)); delete a";
    let kernel = run(
        &["-c", calls],
        &format!(
            "global a\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") {{\n  if (ppid() != target()) next\n  {step}\n  if (@count(a[\"k\", 1]) == 4) {{ {print} }}\n}}\nprobe end {{ printf(\"end %d\\n\", @count(a[\"k\", 1])) }}"
        ),
    );
    let vm = run(
        &[],
        &format!("global a\nprobe begin {{ for (i = 0; i < 4; i++) {{ {step} }}\n  {print}\n  printf(\"end %d\\n\", @count(a[\"k\", 1])); exit() }}"),
    );
    assert_eq!(kernel, vm);
    assert!(kernel.starts_with("n=4value |"), "{kernel}");
    for row in ["    0 |@ ", "   10 |@ ", "   20 |@ ", "   30 |@ "] {
        assert!(kernel.contains(row), "{row}: {kernel}");
    }
    assert!(kernel.ends_with("end 0\n"), "{kernel}");
}

#[test]
fn json_has_the_buckets_a_kernel_body_printed() {
    need_root!();
    let script = "global t\nprobe kernel.trace(\"sched:sched_process_exec\") { if (pid() == target() && execname() == \"true\") { t[\"x\"] <<< 4; t[\"x\"] <<< 40; print(@hist_linear(t[\"x\"], 0, 50, 10)); delete t } }";
    let o = otf(&["run", "-o", "json", "-c", "/bin/true", "-e", script]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let lines: Vec<serde_json::Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let hist = lines
        .iter()
        .find(|v| v["type"] == "hist")
        .unwrap_or_else(|| panic!("a hist record: {lines:?}"));
    assert_eq!(hist["name"], "t");
    assert_eq!(hist["keys"], serde_json::json!(["x"]));
    assert_eq!(
        hist["buckets"],
        serde_json::json!([{"value": 0, "count": 1}, {"value": 40, "count": 1}])
    );
}

#[test]
fn otf_check_accepts_a_histogram_print_in_a_tracepoint_body_and_refuses_two_log_ones() {
    // No root needed: `otf check` loads nothing.
    let ok = otf(&[
        "check",
        "-e",
        "global s\nprobe kernel.trace(\"sched:sched_switch\") { s <<< 1; print(@hist_log(s)) }",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", err(&ok));
    let bad = otf(&[
        "check",
        "-e",
        "global s\nprobe kernel.trace(\"sched:sched_switch\") { s <<< 1; print(@hist_log(s), @hist_log(s)) }",
    ]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        err(&bad).contains(
            "error: printing histograms with more than the 1280 bytes of an output record"
        ) && err(&bad).contains("<command line>:2:53"),
        "{}",
        err(&bad)
    );
}
