//! String values in kernel probe bodies: literals, `execname()`, string locals and globals,
//! comparisons, arrays with string keys and values, and output records with strings, run in
//! the kernel (`BPF_PROG_TEST_RUN`) and by the reference VM on the same hits; the records,
//! the arrays and the globals must agree (root).

mod common;

use otf_bpf::{Event, RuntimeImage};
use otf_script::vm::{self, OutRecord};

/// The compiled script and the image `otf run` would build (kernel units only).
fn compile(src: &str) -> (otf_script::compile::CompiledScript, RuntimeImage) {
    common::compile_kernel_units(src, pp, probefunc)
}

/// `pp()` of the probe of unit `i` (any string: only the image says what it is).
fn pp(i: usize) -> String {
    format!("kernel.trace(\"sched:sched_switch\") #{i}")
}

/// `probefunc()` of unit `i`; the longest a string holds for unit 1.
fn probefunc(i: usize) -> String {
    match i {
        1 => "f".repeat(200),
        _ => format!("func_{i}"),
    }
}

/// Run `hits` (pidx in order) in the kernel and in the reference VM; compare the output
/// records, every array and every scalar global.
fn agree(src: &str, hits: &[u32]) {
    common::hits_agree("strings", src, hits, pp, probefunc);
}

#[test]
fn execname_counts_by_string_key() {
    agree(
        r#"global counts, pairs
probe kernel.trace("sched:sched_switch") {
    counts[execname()]++
    counts["lit"] += 2
    pairs[execname(), 3] = 7
    pairs["x", 4] += 1
}"#,
        &[0, 0, 0],
    );
}

#[test]
fn locals_globals_comparisons_and_output() {
    agree(
        r#"global n, who = "nobody", last, names
probe kernel.trace("sched:sched_switch") {
    n++
    s = execname()
    if (s == who) printf("same %s %d\n", s, n) else printf("new %s was %s\n", s, who)
    who = s
    last = "a string literal that is longer than sixteen bytes, to span several words"
    if (n % 2 == 0) names[n % 3] = s else names[n % 3] = "odd"
    t = names[n % 3]
    if (t < "p") printf("%s < p\n", t)
    if (t <= "odd") printf("%s <= odd\n", t)
    if (t > "odd") printf("%s > odd\n", t)
    if (t >= "odd") printf("%s >= odd\n", t)
    if (t != "odd") printf("%s != odd\n", t)
    if ("abc" > "abd" || "ab" >= "abc" || "" > "a") printf("wrong\n")
    if ("abd" > "abc" && "abc" > "ab" && "a" > "") printf("right %s %s\n", last, names[5])
    if ([n % 3] in names) printf("in\n")
    delete names[0]
}"#,
        &[0, 0, 0, 0, 0],
    );
}

#[test]
fn string_values_in_arrays_with_string_keys() {
    agree(
        r#"global m, k
probe kernel.trace("sched:sched_switch") {
    k++
    m["a", k % 2] = execname()
    m["b", k] = "bee"
    x = m["a", 1]
    if (x == execname()) m[x, 9] = x
    printf("%s|%s|%s|%d\n", m["a", 0], m["b", 1], m["zz", 0], k)
}"#,
        &[0, 0, 0],
    );
}

#[test]
fn concatenation_and_strlen() {
    agree(
        r#"global acc, n, lens
probe kernel.trace("sched:sched_switch") {
    n++
    acc = acc . execname() . "-"
    s = "<" . execname() . ">"
    lens[n] = strlen(acc)
    e = ""
    e2 = e . e
    printf("%s|%d|%d|%d|%s|%d\n", s, strlen(s), strlen(""), strlen(e2), e2 . "x", strlen(acc . acc))
    long = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    t = long . long
    printf("%s %d %d\n", t, strlen(t), strlen(long . "" . long . execname()))
    if (acc . "" == acc && strlen(acc) < 127) printf("short\n")
    u = repeat(n)
    printf("%s %d\n", u, strlen(u))
}
function repeat(k) {
    r = ""
    for (i = 0; i < k * 5; i++) r = r . "ab" . "é" . "c"
    return r
}"#,
        &[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
}

#[test]
fn pp_and_probefunc_as_values() {
    agree(
        r#"global seen, last
probe kernel.function("vfs_read") {
    seen[pp(), probefunc()]++
    last = pp() . "/" . probefunc()
    printf("%s %s %d %d\n", pp(), probefunc(), strlen(pp()), strlen(probefunc()))
}
probe process("/bin/true").function("main") {
    f = probefunc()
    seen[pp(), f] += strlen(f)
    if (f != last) printf("%s|%s\n", last, f)
}"#,
        &[0, 1, 0, 1],
    );
}

/// A string in this process's memory that stays put (leaked) and is resident (written
/// here): a test run's hit reads the memory of the task that runs it, this test, as the
/// reference VM reads its own; its address as a script constant.
fn resident(text: &str) -> u64 {
    let mut v = text.as_bytes().to_vec();
    v.push(0);
    v.extend_from_slice(b"after the NUL");
    let v: &'static mut [u8] = v.leak();
    // SAFETY: `v` is a valid, leaked buffer; the volatile read keeps the page touched.
    let _ = unsafe { std::ptr::read_volatile(v.as_ptr()) };
    v.as_ptr() as u64
}

#[test]
fn user_strings_read_from_memory() {
    let hello = resident("hello from user space");
    let long = resident(&"0123456789".repeat(20));
    agree(
        &format!(
            r#"global p = {hello}, q = {long}, n, got
probe kernel.trace("sched:sched_switch") {{
    n++
    printf("[%s][%s][%s]\n", user_string(p), user_string_n(p, 5), user_string_n(p, 0))
    printf("[%s][%s]\n", user_string_n(p, -1), user_string_n(p, 1000))
    s = user_string(q)
    printf("%d %d %d %s\n", strlen(s), strlen(user_string_n(q, 200)), strlen(user_string_n(q, 125)), s)
    m = n * 7 - 10
    got[n] = user_string_n(p, m)
    printf("%d [%s] [%s]\n", m, got[n], user_string_n2(q, m, "unused"))
    printf("[%s][%s][%s][%s]\n", user_string2(0, "no string at 0"), user_string(1, "none at 1"),
           user_string_n(0, 3, "neither"), user_string_nofault(0))
    printf("[%s][%s][%s]\n", user_string_n_nofault(1, 2), kernel_string2(p, "a user address"),
           kernel_string(0, "k") . user_string2(p, "x"))
}}"#
        ),
        &[0, 0, 0, 0],
    );
}

#[test]
fn a_fault_is_a_run_time_error_with_the_address() {
    if !common::can_test_run_bpf("strings") {
        return;
    }
    // A string that runs into a page that cannot be read faults; one that ends before it
    // does not.
    let base = common::page_before_a_hole(|b| {
        // SAFETY: `b` is the first, writable page; both copies end inside it.
        unsafe {
            std::ptr::copy_nonoverlapping(c"ok".to_bytes_with_nul().as_ptr(), b.add(4096 - 10), 3);
            // No NUL before the end of the page.
            std::ptr::copy_nonoverlapping(b"edge".as_ptr(), b.add(4096 - 4), 4);
        }
    });
    let (ok, edge) = (base + 4096 - 10, base + 4096 - 4);
    let cases: Vec<(String, u64, bool)> = vec![
        ("user_string(1)".into(), 1, false),
        ("user_string_n(0, 4)".into(), 0, false),
        (format!("user_string({edge})"), edge, false),
        ("kernel_string(1)".into(), 1, true),
        ("kernel_string_n(0, 2)".into(), 0, true),
        // In a loop: the fault leaves a bpf_loop callback.
        (
            format!("user_string({ok}) . user_string_n({edge}, 1) . user_string(i)"),
            1,
            false,
        ),
    ];
    for (expr, addr, kernel) in cases {
        let src = format!(
            r#"global n
probe kernel.trace("sched:sched_switch") {{
    for (i = 0; i < 2; i++) n++
    i = 1
    while (n < 10) {{ n++; if (n == 5) printf("%s\n", {expr}) }}
}}"#
        );
        let (c, image) = compile(&src);
        let common::OneHit {
            kernel: got,
            vm_out: outs,
            vm: want,
        } = common::one_hit_both(&c, &image, &src);
        let want = want.expect_err("the reference VM faults");
        assert!(outs.is_empty(), "{expr}: {outs:?}");
        let rc = -14;
        assert_eq!(
            want,
            vm::VmError::StringFault {
                pc: want.pc(),
                kernel,
                addr,
                rc
            },
            "{expr}"
        );
        let kind = if kernel {
            otf_bpf::RuntimeErrorKind::KernelStringFault { addr, rc }
        } else {
            otf_bpf::RuntimeErrorKind::UserStringFault { addr, rc }
        };
        // The kernel's error code for a kernel read of a user address is its own: only
        // the address and the message matter there.
        let errors: Vec<(otf_bpf::RuntimeErrorKind, u32)> = got
            .iter()
            .filter_map(|e| match e {
                Event::Error { kind, pc, .. } => Some((*kind, *pc)),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{expr}: {got:?}");
        let (k, pc) = errors[0];
        assert_eq!(pc as usize, want.pc(), "{expr}: the same instruction");
        match (k, kind) {
            (
                otf_bpf::RuntimeErrorKind::KernelStringFault { addr: a, rc: r },
                otf_bpf::RuntimeErrorKind::KernelStringFault { .. },
            ) => {
                assert_eq!(a, addr, "{expr}");
                assert!(r < 0, "{expr}: {r}");
            }
            _ => assert_eq!(k, kind, "{expr}"),
        }
        assert_eq!(k.to_string(), want.to_string(), "{expr}: the message");
        assert!(
            !got.iter().any(|e| matches!(e, Event::Output { .. })),
            "{expr}: {got:?}"
        );
    }
    // SAFETY: unmapping the mapping made above, no longer read.
    assert_eq!(unsafe { libc::munmap(base as *mut libc::c_void, 8192) }, 0);
}

#[test]
fn sprintf_in_the_kernel_prints_as_the_reference_vm() {
    agree(
        r#"global keys, last, n
probe kernel.function("vfs_read") {
    n++
    v = n * 7 - 20
    keys[sprintf("%s(%d)", execname(), n % 2)]++
    s = sprintf("%d|%i|%u|%x|%X|%5d|%-5d|%05d|%+d|% d|%-+6d|", v, v, v, v, v, v, v, v, v, v, v)
    t = sprintf("%d %u %x %d %ld %lld", -9223372036854775807 - 1, -1, -1, 9223372036854775807, 5, 6)
    u = sprintf("[%s][%8s][%-8s]%sabc%s9%s", "x", execname(), "ab", pp(), probefunc(), "")
    w = sprintf("%#x %#X %p 100%% %d", v, v, n, n)
    z = sprintf("%s", "") . sprintf("") . sprintf("%s.%s.%s", s, t, u)
    last = sprintf("%s\t%s", w, z)
    l = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    l = l . l
    q = sprintf("%s%s%s%s", l, l, l, l)
    r = sprintf("%s%s%s%d%d%d%d%d%d%d%d%d", l, l, l, n, n, n, n, n, n, n, n, n)
    keys[q] += strlen(q)
    keys[r . "!"] += strlen(r)
    keys[s] += 2
    keys[t] += 3
    keys[u] += 4
    printf("%s|%s|%s|%s|%s\n", s, t, u, w, z)
}"#,
        &[0, 0, 0, 0],
    );
}

/// 127 bytes of `c` as a script literal.
fn long(c: char) -> String {
    c.to_string().repeat(127)
}

#[test]
fn substr_stringat_and_isinstr_agree_with_the_reference_vm() {
    let y = long('y');
    let yz = format!("{}z", "y".repeat(126));
    let src = format!(
        r#"global n, keep
probe kernel.trace("sched:sched_switch") {{
    n++
    y = "{y}"
    yz = "{yz}"
    e = ""
    h = "hello world"
    for (i = 0; i < 3; i++) keep[substr(execname(), i, 2)]++
    foreach_start = substr(h, n - 2, n)
    printf("[%s][%s][%s][%s][%s]\n", substr(h, 0, 5), substr(h, 6, 100), substr(h, -5, 3), substr(h, 3, -1), substr(h, 11, 1))
    printf("[%s][%s][%s][%s][%s]\n", substr(h, -1, 5), substr(h, 0, 9223372036854775806), substr(h, 2, 0), substr(h, 10, 1), substr(y, 1, 200))
    printf("[%s][%s][%s][%s][%s]\n", substr(h, 12, 1), substr(h, 200, 5), substr(e, 0, 1), substr(y, 126, 5), substr(y, 127, 1))
    printf("[%s][%s][%s]\n", substr(y, 0, 127), substr(yz, 120, 9223372036854775807), substr(h, 9223372036854775807, 9223372036854775807))
    printf("[%s][%s][%s]\n", substr(h, -9223372036854775808, 4), substr(h, 1, -9223372036854775808), foreach_start)
    printf("%d %d %d %d %d\n", stringat(h, 0), stringat(h, 10), stringat(yz, 126), stringat(y, 0), stringat(y, 126))
    printf("%d %d %d %d\n", stringat(h, n - 1), stringat("é", 0), stringat("é", 1), stringat(execname(), 0))
    printf("%d %d %d %d %d %d\n", isinstr(e, e), isinstr(e, "a"), isinstr(h, e), isinstr(h, h), isinstr(h, "hello world!"), isinstr(h, "o w"))
    printf("%d %d %d %d %d %d\n", isinstr("aab", "ab"), isinstr(h, "ld"), isinstr(h, "lo"), isinstr(h, "wz"), isinstr(yz, "yz"), isinstr(y, "yz"))
    printf("%d %d %d %d %d %d\n", isinstr(y, y), isinstr(yz, y), isinstr(y, yz), isinstr(yz, substr(yz, 1, 126)), isinstr(execname(), substr(execname(), 1, 3)), isinstr("xé ü", "é"))
    printf("%d %d\n", isinstr(substr(h, 0, n), "l"), isinstr("0123456789abcdef0123456789abcdeX", "abcdeX"))
}}"#
    );
    agree(&src, &[0, 0, 0, 0, 0, 0]);
}

#[test]
fn strtol_agrees_with_the_reference_vm() {
    agree(
        r#"global n, sum
probe kernel.trace("sched:sched_switch") {
    n++
    printf("%d %d %d %d %d %d %d\n", strtol("ff", 16), strtol("0xff", 16), strtol("0XfF", 0), strtol("017", 0), strtol("08", 0), strtol("0", 0), strtol("0x", 0))
    printf("%d %d %d %d %d %d %d\n", strtol(" \t\n-42z", 10), strtol("+7", 10), strtol("-", 10), strtol("", 10), strtol("zz", 36), strtol("ZZ", 36), strtol("12", 1))
    printf("%d %d %d %d %d %d %d\n", strtol("12", 37), strtol("12", -16), strtol("777", 8), strtol("789", 8), strtol("1010", 2), strtol("99999999999999999999999", 10), strtol("-9223372036854775808", 10))
    printf("%d %d %d %d %d %d %d\n", strtol("0x", 16), strtol("0x1g", 16), strtol("  0x10", 0), strtol("-0x10", 0), strtol("\v\f\r5", 10), strtol("1x", 0), strtol("- 5", 10))
    printf("%d %d %d %d %d %d %d\n", strtol("0xg", 0), strtol("0Xa", 0), strtol("--5", 10), strtol("fg", 36), strtol("ff", -1), strtol("-1", 16), strtol("18446744073709551617", 10))
    printf("%d %d %d %d %d %d\n", strtol("10", 4294967312), strtol("0b1", 0), strtol("00x1", 0), strtol("+-1", 10), strtol("@", 36), strtol("`", 36))
    sum += strtol(sprintf("%d", n * 1000 - 2500), 10) + strtol(sprintf("%x", n), 16)
    long = "                                                                                                                              9"
    printf("%d %d %d\n", strtol(long, 10), strtol(long . "9", 10), strtol("7", n * 4 - 8))
}"#,
        &[0, 0, 0, 0, 0],
    );
}

#[test]
fn text_str_and_str_replace_agree_with_the_reference_vm() {
    let y = long('y');
    let src = format!(
        r#"global n, keys
probe kernel.trace("sched:sched_switch") {{
    n++
    y = "{y}"
    printf("[%s][%s][%s]\n", text_str("a\nb\tc\rd\"e\\f"), text_str("\001\177 ~é\x1f"), text_str(""))
    printf("[%s][%s][%s]\n", text_str("\a\b\f\v"), text_str("€ü😀x"), text_str("é" . substr("😀", 0, 4) . "\x7f€"))
    printf("[%s][%s]\n", text_str(substr(y, 0, 121) . "é"), text_str(substr(y, 0, 122) . "é"))
    printf("[%s][%s]\n", text_str(substr(y, 0, 117) . "😀"), text_str(substr(y, 0, 118) . "😀"))
    printf("[%s][%s]\n", text_str(substr(y, 0, 125) . "\n"), text_str(substr(y, 0, 126) . "\n"))
    printf("[%s][%s]\n", text_str(substr(y, 0, 124) . "\001"), text_str(substr(y, 0, 123) . "\001"))
    printf("[%s][%s]\n", text_str(substr(y, 0, 126) . "a"), text_str(substr("\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n", 0, n * 20)))
    keys[text_str(execname())]++
    printf("[%s][%s][%s][%s][%s]\n", str_replace("a-b-c", "-", "+"), str_replace("aaa", "a", "bb"), str_replace("aaaa", "aa", "b"), str_replace("abc", "", "x"), str_replace("abc", "abc", ""))
    printf("[%s][%s][%s][%s]\n", str_replace("", "a", "b"), str_replace("abc", "abcd", "x"), str_replace("aaa", "aa", "x"), str_replace("abcabc", "c", "ccc"))
    printf("[%s][%s]\n", str_replace(y, "y", "zz"), str_replace(y, "yy", ""))
    printf("[%s][%s]\n", str_replace("ab", "b", y), str_replace("ab", "a", y))
    printf("[%s][%s]\n", str_replace(y, y, "short"), str_replace(substr(y, 0, n * 10), "yyy", "-"))
    keys[str_replace(execname(), substr(execname(), 0, 1), "<>")] += 2
}}"#
    );
    agree(&src, &[0, 0, 0, 0, 0]);
}

#[test]
fn many_string_functions_in_one_body_load() {
    // The verifier's budget: every function several times in one body, and inside loops
    // nested as deep as the code generator allows.
    let mut body = String::new();
    for k in 0..6 {
        body.push_str(&format!(
            "    s{k} = substr(execname(), {k}, 3) . str_replace(\"a.b\", \".\", \"{k}\")\n    \
             v{k} = isinstr(s{k}, \"a\") + stringat(s{k}, {k}) + strtol(\"1{k}\", 0)\n    \
             t{k} = text_str(s{k} . \"\\n\")\n    \
             printf(\"%s %d %s\\n\", s{k}, v{k}, t{k})\n"
        ));
    }
    let src = format!(
        r#"global n
probe kernel.trace("sched:sched_switch") {{
    n++
{body}
    for (a = 0; a < 2; a++)
        for (b = 0; b < 2; b++)
            for (c = 0; c < 2; c++)
                for (d = 0; d < 2; d++)
                    for (e = 0; e < 2; e++)
                        printf("%d %s %d %s\n", isinstr(execname(), substr("abc", a, b)), str_replace("x.y", ".", text_str("\t")), strtol("z", 36) + c + d + e, substr(execname(), e, 1))
}}"#
    );
    agree(&src, &[0, 0]);
}

#[test]
fn stringat_out_of_bounds_is_the_run_time_error_of_the_reference_vm() {
    if !common::can_test_run_bpf("strings") {
        return;
    }
    // tapset/string.stp: STAP_ERROR("Position out of bounds") unless 0 <= pos < strlen.
    for (expr, out) in [
        ("stringat(h, 11)", false),
        ("stringat(h, -1)", false),
        ("stringat(\"\", 0)", false),
        ("stringat(h, -9223372036854775808)", false),
        ("stringat(h, 10)", true),
        // In a loop: the error leaves a bpf_loop callback.
        ("stringat(h, i + 9)", false),
    ] {
        let src = format!(
            r#"global n
probe kernel.trace("sched:sched_switch") {{
    h = "hello world"
    for (i = 0; i < 3; i++) printf("%d\n", {expr})
    n++
}}"#
        );
        let (c, image) = compile(&src);
        let common::OneHit {
            kernel: got,
            vm_out: outs,
            vm: want,
        } = common::one_hit_both(&c, &image, &src);
        let kouts: Vec<OutRecord> = got
            .iter()
            .filter_map(|e| match e {
                Event::Output {
                    fmt, args, strs, ..
                } => Some(OutRecord {
                    fmt: *fmt,
                    args: args.clone(),
                    strs: strs.clone(),
                }),
                _ => None,
            })
            .collect();
        assert_eq!(kouts, outs, "{expr}: the records before the error");
        let errors: Vec<(otf_bpf::RuntimeErrorKind, u32)> = got
            .iter()
            .filter_map(|e| match e {
                Event::Error { kind, pc, .. } => Some((*kind, *pc)),
                _ => None,
            })
            .collect();
        if out {
            assert!(want.is_ok(), "{expr}: {want:?}");
            assert!(errors.is_empty(), "{expr}: {errors:?}");
            assert_eq!(outs.len(), 3, "{expr}");
            continue;
        }
        let want = want.expect_err("the reference VM raises the error");
        assert!(
            matches!(want, vm::VmError::StrFn { .. }),
            "{expr}: {want:?}"
        );
        assert_eq!(
            errors,
            vec![(
                otf_bpf::RuntimeErrorKind::PositionOutOfBounds,
                want.pc() as u32
            )],
            "{expr}"
        );
        assert_eq!(errors[0].0.to_string(), want.to_string(), "{expr}");
        assert_eq!(want.to_string(), "Position out of bounds");
    }
}

#[test]
fn tokenize_agrees_with_the_reference_vm() {
    // tapset/tokenize.stp: a non-empty string starts over, "" continues; `strsep` with the
    // delimiter's bytes, empty tokens skipped. The state starts empty in every hit.
    let y = long('y');
    let src = format!(
        r#"global n, toks
function all(s, d) {{
    r = ""
    t = tokenize(s, d)
    while (t != "") {{ r = r . "[" . t . "]"; t = tokenize("", d) }}
    return r
}}
probe kernel.trace("sched:sched_switch") {{
    n++
    printf("%s\n", tokenize("", ","))
    printf("%s|%s|%s\n", all("one|two|three", "|"), all("one|two", ","), all("1,,2,3, ,4", ","))
    printf("%s|%s|%s\n", all("", ","), all("this is a string, which", ", "), all(",,a,,", ","))
    printf("%s|%s|%s\n", all("a b", ""), all("aébéc", "é"), all(execname(), "-_/"))
    printf("%s|%s\n", all("{y}", "x"), all(substr("{y}", 0, n * 30) . ",z", ","))
    printf("%s %s\n", tokenize("x,y", ","), tokenize("p", ","))
    printf("[%s][%s]\n", tokenize("", ","), tokenize("", ","))
    toks[tokenize(execname(), "0123456789")]++
    for (i = 0; i < 3; i++) toks[tokenize(i == 0 ? "a:b:c" : "", ":")] += i
}}"#
    );
    agree(&src, &[0, 0, 0, 0, 0]);
}
