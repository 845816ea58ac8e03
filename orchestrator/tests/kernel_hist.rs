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
