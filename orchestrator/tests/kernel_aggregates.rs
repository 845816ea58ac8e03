//! Aggregate reads (`@count`, `@sum`, `@min`, `@max`, `@avg`, `@variance`) and `delete` of a
//! whole array in kernel probe bodies, for real (root). The hits are the `getppid(2)` calls
//! of the `-c` command's children (`ppid() == target()`), one after the other, alternately
//! pinned to CPUs 0 and 1 when the machine has two, so that an aggregate's values are spread
//! over the CPUs' copies that the kernel code combines.

mod common;

use common::{err, otf, out};

/// Four children of the command's shell call getppid(2) once each, pinned to CPUs 0, 1, 0, 1
/// (unpinned where `taskset` cannot pin).
const FOUR_CALLS: &str =
    "for c in 0 1 0 1; do taskset -c $c perl -e 'getppid()' 2>/dev/null || perl -e 'getppid()'; done";

const PROBE: &str = "probe kernel.trace(\"syscalls:sys_enter_getppid\")";

#[test]
fn aggregates_are_read_in_a_tracepoint_body() {
    need_root!();
    // Values -11, -4, 3, 10: @avg truncates toward zero (-12/3 = -4, -2/4 = 0).
    let script = format!(
        "global a, b, cpus\n{PROBE} {{\n  if (ppid() != target()) next\n  cpus[cpu()] = 1\n\
         a <<< @count(a) * 7 - 11; b[@count(a)] = 1\n\
         if (@count(a) >= 3) {{ printf(\"%d %d %d %d %d %d\\n\", @count(a), @sum(a), @min(a), @max(a), @avg(a), [3] in b); delete b }}\n}}\n\
         probe end {{ foreach (c in cpus) n++; printf(\"cpus=%d b=%d\\n\", n > 1, [4] in b) }}"
    );
    let o = otf(&["run", "-c", FOUR_CALLS, "-e", &script]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    assert_eq!(
        out(&o),
        format!(
            "3 -12 -11 3 -4 1\n4 -2 -11 10 0 0\ncpus={} b=0\n",
            u8::from(two_cpus)
        )
    );
}

#[test]
fn variance_is_read_in_a_tracepoint_body_as_in_user_space() {
    need_root!();
    // Values -5, 32, 143, 328, read with @variance in the kernel after each `<<<`, and in
    // `end` (user space combining the CPUs' copies): both are SystemTap's integer
    // arithmetic, so the last value read in the kernel is the one printed in `end`.
    let script = format!(
        "global v\n{PROBE} {{\n  if (ppid() != target()) next\n\
         v <<< @count(v) * @count(v) * 37 - 5; printf(\"%d %d\\n\", @variance(v), @variance(v, 0))\n}}\n\
         probe end {{ printf(\"end %d\\n\", @variance(v)) }}"
    );
    let run = |cmd: &str| {
        let o = otf(&["run", "-c", cmd, "-e", &script]);
        assert_eq!(o.status.code(), Some(0), "{}", err(&o));
        let text = out(&o);
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "0 0", "{text}");
        let last = lines[3].split(' ').next().expect("a value").to_string();
        assert_eq!(lines[4], format!("end {last}"), "{text}");
        lines
    };
    // Spread over two CPUs (SystemTap's variance then depends on the split, as there).
    run(FOUR_CALLS);
    // All on CPU 0: one copy, the numbers of the reference VM adding the same values.
    let one = run("for c in 0 0 0 0; do taskset -c $c perl -e 'getppid()'; done");
    let begin = otf(&[
        "run",
        "-e",
        "global v\nprobe begin { for (i = 0; i < 4; i++) { v <<< @count(v) * @count(v) * 37 - 5; printf(\"%d %d\\n\", @variance(v), @variance(v, 0)) } exit() }",
    ]);
    assert_eq!(begin.status.code(), Some(0), "{}", err(&begin));
    assert_eq!(out(&begin), one[..4].join("\n") + "\n");
}

#[test]
fn an_empty_aggregate_is_a_run_time_error() {
    need_root!();
    let script = format!(
        "global e, t\n{PROBE} {{ if (ppid() == target()) {{ t[\"x\"] <<< 1\n\
         printf(\"%d %d %d\\n\", @count(e), @sum(e), @count(t[\"y\"])); printf(\"%d\\n\", @min(t[\"y\"])) }} }}"
    );
    let o = otf(&["run", "-c", "perl -e 'getppid()'", "-e", &script]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(out(&o), "0 0 0\n");
    assert!(
        err(&o)
            .contains("ERROR: empty aggregate near kernel.trace(\"syscalls:sys_enter_getppid\")"),
        "{}",
        err(&o)
    );
}

#[test]
fn delete_of_whole_arrays_and_aggregates_then_reads() {
    need_root!();
    // Hits n = 0, 1, 2 (everything deleted, then s <<< 100), 1.
    let script = format!(
        "global a, w%, t, s\n{PROBE} {{\n  if (ppid() != target()) next\n\
         n = @count(s); s <<< n; a[n] = n + 1; w[n] = 1; t[n % 2] <<< n\n\
         if (n == 2) {{\n    delete a; delete w; delete t; delete s\n\
         printf(\"%d %d %d %d %d %d\\n\", [1] in a, a[1], [0] in w, @count(t[0]), @sum(t[1]), @count(s))\n\
         s <<< 100\n  }}\n}}\n\
         probe end {{ foreach (k in a) na++; foreach (k in w) nw++; foreach (k in t) nt++\n\
         printf(\"%d %d %d %d %d %d\\n\", na, nw, nt, @count(s), @sum(s), a[1]) }}"
    );
    let o = otf(&["run", "-c", FOUR_CALLS, "-e", &script]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "0 0 0 0 0 0\n1 1 1 2 101 2\n");
}
