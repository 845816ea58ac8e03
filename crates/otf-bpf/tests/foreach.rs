//! `foreach` in kernel probe bodies, run in the kernel (`BPF_PROG_TEST_RUN`) and by the
//! reference VM on the same hits: the output records (the elements in the order they were
//! given) and the arrays must agree (root). Unit 0 fills arrays, hit after hit; unit 1 walks
//! them with `foreach` (sorted by value or by a key, ascending or descending, with ties,
//! `limit`, string keys and values, several keys, `v = [k]`, aggregates by `@count`, nested
//! loops, empty arrays).

mod common;

/// Run unit 0 `fills` times, then unit 1 once, in the kernel and in the reference VM;
/// compare the output records and every array and aggregate. Returns the number of records.
fn agree(src: &str, fills: usize) -> usize {
    let hits: Vec<u32> = std::iter::repeat_n(0, fills).chain([1]).collect();
    common::hits_agree(
        "foreach",
        src,
        &hits,
        |i| format!("unit {i}"),
        |_| "f".into(),
    )
    .unwrap_or(0)
}

/// The integer arrays: `a` has many ties of value (37 elements, values 0..6), `b` negative
/// keys and values.
const INTS: &str = r#"global n, a, b
probe kernel.trace("sched:sched_switch") {
    n++
    a[(n * 7919) % 37] = (n * 13) % 7
    b[-(n * 31) % 11, n % 3] = 5 - n
}
"#;

#[test]
fn integer_arrays_in_every_order() {
    for order in [
        "[k] in a",
        "[k] in a-",
        "[k+] in a",
        "[k-] in a",
        "[k] in a+",
        "[k] in a-",
        "v = [k] in a",
        "v = [k] in a+",
        "v = [k] in a- limit 5",
        "[k] in a+ limit 0",
        "[k] in a limit -3",
        "[k] in a limit n - 10",
    ] {
        let src = format!(
            "{INTS}probe kernel.trace(\"sched:sched_switch\") {{\n    foreach ({order}) printf(\"%d=%d \", k, a[k])\n    println(\"\")\n}}\n"
        );
        let src = src.replace(
            "printf(\"%d=%d \", k, a[k])",
            "printf(\"%d=%d %d \", k, a[k], v)",
        );
        let src = if order.starts_with('v') {
            src
        } else {
            src.replace(", v)", ", -1)")
        };
        let records = agree(&src, 60);
        if records > 0 && !order.contains("limit") {
            assert_eq!(records, 38, "{src}");
        }
    }
}

#[test]
fn a_wrapping_array() {
    // Not full: which element a full one drops differs (the kernel's LRU map).
    let src = r#"global n, w%[16]
probe kernel.trace("sched:sched_switch") {
    n++
    w[n * 3 % 11] = n % 4
}
probe kernel.trace("sched:sched_switch") {
    foreach (v = [k] in w-) printf("%d=%d ", k, v)
    println("")
}
"#;
    let records = agree(src, 12);
    if records > 0 {
        assert_eq!(records, 12, "eleven elements and a newline");
    }
}

#[test]
fn several_keys_sorted_by_each() {
    for order in [
        "[i, j] in b",
        "[i, j] in b-",
        "[i+, j] in b",
        "[i, j-] in b",
        "[i, j+] in b limit 4",
        "v = [i, j] in b+",
        "v = [i, j] in b-",
    ] {
        let src = format!(
            "{INTS}probe kernel.trace(\"sched:sched_switch\") {{\n    foreach ({order}) printf(\"%d,%d=%d \", i, j, b[i, j])\n    println(\"\")\n}}\n"
        );
        agree(&src, 40);
    }
}

#[test]
fn string_keys_and_values() {
    let fill = r#"global n, s, t, u
probe kernel.trace("sched:sched_switch") {
    n++
    k = sprintf("%d", n % 9)
    s[k . "x"] = n % 4
    s[k] = n % 4
    t[execname(), n % 5] = "v" . sprintf("%d", (n * 3) % 7)
    u["a long key that runs past sixteen bytes " . sprintf("%d", n % 6), "b"] = "w"
}
"#;
    for order in [
        "[k] in s",
        "[k-] in s",
        "[k] in s+",
        "[k] in s- limit 7",
        "v = [k] in s-",
    ] {
        let src = format!(
            "{fill}probe kernel.trace(\"sched:sched_switch\") {{\n    foreach ({order}) printf(\"%s=%d \", k, s[k])\n    println(\"\")\n}}\n"
        );
        assert_ne!(agree(&src, 30), 1, "{src}: elements were given");
    }
    for order in [
        "[e, i] in t",
        "[e, i] in t+",
        "[e, i] in t-",
        "v = [e, i] in t+",
        "[e, i-] in t limit 3",
        "v = [e-, i] in t",
    ] {
        let src = format!(
            "{fill}probe kernel.trace(\"sched:sched_switch\") {{\n    foreach ({order}) printf(\"%s,%d=%s \", e, i, t[e, i])\n    println(\"\")\n}}\n"
        );
        agree(&src, 30);
    }
    for order in ["[x, y] in u-", "[x+, y] in u", "v = [x, y] in u+"] {
        let src = format!(
            "{fill}probe kernel.trace(\"sched:sched_switch\") {{\n    foreach ({order}) printf(\"%s,%s \", x, y)\n    println(\"\")\n}}\n"
        );
        agree(&src, 30);
    }
}

#[test]
fn aggregates_by_count() {
    let fill = r#"global n, st
probe kernel.trace("sched:sched_switch") {
    n++
    st[n % 7] <<< n
    if (n % 3 == 0) st[n % 7] <<< 2 * n
}
"#;
    for order in [
        "[k] in st",
        "[k] in st-",
        "[k] in st+",
        "[k] in st- limit 2",
        "[k-] in st limit 3",
    ] {
        let src = format!(
            "{fill}probe kernel.trace(\"sched:sched_switch\") {{\n    foreach ({order}) printf(\"%d: %d %d\\n\", k, @count(st[k]), @sum(st[k]))\n}}\n"
        );
        agree(&src, 25);
    }
}

#[test]
fn nested_loops_and_loops_in_the_body() {
    let src = format!(
        r#"{INTS}probe kernel.trace("sched:sched_switch") {{
    foreach ([i, j] in b- limit 3) {{
        foreach (v = [k] in a+ limit 4) {{
            s = 0
            for (x = 0; x < k; x++) s += x
            if (k == 5) continue
            if (s > 400) break
            printf("%d %d %d %d %d\n", i, j, k, v, s)
        }}
        foreach ([k-] in a limit 2) printf("inner %d\n", k)
    }}
}}
"#
    );
    agree(&src, 50);
}

#[test]
fn empty_arrays_give_nothing() {
    let src = r#"global n, a, s, st
probe kernel.trace("sched:sched_switch") {
    n++
}
probe kernel.trace("sched:sched_switch") {
    foreach (v = [k] in a+) printf("a %d\n", k)
    foreach ([w-] in s) printf("s %s\n", w)
    foreach ([k] in st+) printf("st %d\n", k)
    println("end")
    a[1] = 1
    s["x"] = "y"
    st[2] <<< 3
}
"#;
    let records = agree(src, 2);
    if records > 0 {
        assert_eq!(records, 1, "only `end`");
    }
}

#[test]
fn the_deepest_nests_the_kernel_takes_and_the_one_refused() {
    // Plain arrays: a `foreach` inside four other loops (5 loop frames, the scan's callback,
    // the handler and the hit: 8 call frames).
    let deep = |inner: &str| {
        format!(
            "{INTS}global st\nprobe kernel.trace(\"sched:sched_switch\") {{\n    st[n % 4] <<< n\n    \
             for (i = 0; i < 2; i++) for (j = 0; j < 2; j++) for (l = 0; l < 2; l++) {{\n        {inner}\n    }}\n}}\n"
        )
    };
    agree(
        &deep("for (m = 0; m < 2; m++) foreach (v = [k] in a- limit 2) printf(\"%d %d %d\\n\", i + j + l + m, k, v)"),
        20,
    );
    // An array of aggregates sorted by value: its scan also loops over the CPUs, so at most
    // three other loops.
    agree(
        &deep("foreach ([k] in st+) printf(\"%d %d\\n\", i + j + l, k)"),
        20,
    );
    if !common::can_test_run_bpf("foreach") {
        return;
    }
    let src = deep("for (m = 0; m < 2; m++) foreach ([k] in st+) printf(\"%d\\n\", k)");
    let (_, image) = common::compile_kernel_units(&src, |i| format!("unit {i}"), |_| "f".into());
    let e = common::load_test_entry(&image)
        .err()
        .unwrap_or_else(|| panic!("{src}: loaded"))
        .to_string();
    assert!(
        e.contains("`foreach` over the array of aggregates `st` sorted by value, inside 4 other loops: the kernel allows 8 call frames, so otf compiles it inside at most 3 other loops"),
        "{e}"
    );
}
