//! `foreach` in a kernel probe body, for real (root): the body counts the `exec`s of the `-c`
//! command's own children into arrays and, at the fifth, walks them in the kernel, sorted.

mod common;

use common::{err, otf, out, FIVE_EXECS};

#[test]
fn a_tracepoint_body_prints_an_array_sorted_with_foreach() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        FIVE_EXECS,
        "-e",
        "global n, by, names\n\
         probe kernel.trace(\"sched:sched_process_exec\") {\n\
           if (ppid() != target()) next\n\
           n++\n\
           by[n % 3]++\n\
           names[execname(), n % 2] += n\n\
           if (n < 5) next\n\
           foreach (v = [k] in by- limit 2) printf(\"%d=%d\\n\", k, v)\n\
           foreach ([k-] in by) printf(\"%d \", k)\n\
           foreach ([e, p] in names+) printf(\"|%s %d %d\", e, p, names[e, p])\n\
           println(\"\")\n\
         }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // by: 0 → 1 (n = 3), 1 → 2 (1, 4), 2 → 2 (2, 5); ties by key. names: odd n 1+3+5, even 2+4.
    assert_eq!(out(&o), "1=2\n2=2\n2 1 0 |true 0 6|true 1 9\n");
}

#[test]
fn otf_check_accepts_foreach_in_a_kernel_body_and_refuses_changing_the_array() {
    let ok = otf(&[
        "check",
        "-e",
        "global a\nprobe kernel.trace(\"sched:sched_switch\") { a[cpu()]++; foreach (k in a-) printf(\"%d\\n\", k) }",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", err(&ok));
    let bad = otf(&[
        "check",
        "-e",
        "global a\nprobe kernel.trace(\"sched:sched_switch\") { a[cpu()]++; foreach (k in a-) delete a[k] }",
    ]);
    assert_ne!(bad.status.code(), Some(0));
    assert!(
        err(&bad).contains(
            "error: variable 'a' modified during 'foreach' iteration\n  --> <command line>:2:81\n"
        ),
        "{}",
        err(&bad)
    );
}
