//! `sprintf` in kernel probe bodies with the formats the kernel's `bpf_snprintf` cannot
//! print (the native formatter of `lower/sformat.rs`): every conversion with flags, widths,
//! precisions, `*` widths and `.*` precisions, run in the kernel (`BPF_PROG_TEST_RUN`) and by
//! the reference VM on the same hits; the records and the globals must agree (root).

mod common;

use otf_bpf::RuntimeImage;
use otf_script::vm;

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
    common::hits_agree("sprintf", src, hits, pp, probefunc);
}

/// A script whose probe sets one string global per `(format, arguments)` with `sprintf`,
/// then prints them all; `n` counts the hits (so each hit formats other values).
fn script(cases: &[(&str, &str)]) -> String {
    let globals: Vec<String> = (0..cases.len()).map(|i| format!("g{i}")).collect();
    let mut s = format!(
        "global n, {}\nprobe kernel.function(\"vfs_read\") {{\n    n++\n",
        globals.join(", ")
    );
    for (i, (f, args)) in cases.iter().enumerate() {
        let sep = if args.is_empty() { "" } else { ", " };
        s.push_str(&format!("    g{i} = sprintf(\"{f}\"{sep}{args})\n"));
        s.push_str(&format!("    printf(\"%s|\\n\", g{i})\n"));
    }
    s.push('}');
    s
}

/// Every hit in the kernel and in the VM, on a few hits (the values change with `n`).
fn check(cases: &[(&str, &str)]) {
    let src = script(cases);
    let (c, _) = compile(&src);
    // Each of these runs in the kernel (no `SFormat` is refused).
    for insn in &c.code {
        assert_eq!(vm::user_space_only(insn), None, "{src}");
    }
    agree(&src, &[0, 0, 0]);
}

#[test]
fn integers_with_every_flag_width_and_precision() {
    check(&[
        ("%o|%#o|%#o|%5o|%-5o|%05o", "n * 8, 0, -1, 9, 9, 9"),
        (
            "%#x|%#X|%#5x|%#-8X|%#010x|%#.4x",
            "0, 0, n, n * 255, 255, n",
        ),
        ("%p|%20p|%-20p|%.8p|%020p|%+p", "0, n, n, n, n, n"),
        (
            "%.3d|%.3d|%8.3d|%-8.3d|%+.3d|%08.3d|%08.3d",
            "n, -n, n, n, n, n, -n",
        ),
        ("%.0d|%.0x|%.0o|%#.0o|%.d|%.5x", "0, 0, 0, 0, 7, 255"),
        (
            "%d|%i|%u|%x|%X|%o",
            "-9223372036854775807 - 1, -1, -1, -1, -1, -1",
        ),
        (
            "%+d|% d|%+ d|%+5d|%+05d|%-+5d|% 05i",
            "n, -n, n, n, -n, n, n",
        ),
        ("%+u|%+x|% o|%#u|%#d", "n, n, n, n, -n"),
        ("%lld|%llo|%lX|%-#22o|%#22o", "n - 100, 8, -2, -1, -1"),
        ("%020d|%-020d|%20.19d", "-9223372036854775807 - 1, -1, n"),
    ]);
}

#[test]
fn characters() {
    check(&[
        ("%c%c%c|%3c|%-3c|", "65, 66 + n, 0x141, 90, 90"),
        ("[%c][%5c][%-5c]", "33 + n, 256 + 97, 126"),
        ("%c%c%d", "104, 105, n"),
        ("%c%c%c", "65, 256, 66"),
        (
            "%#c%#c%#c%#c%#c%#c%#c%#c%#c%#c",
            "7, 8, 12, 10, 13, 9, 11, 39, 92, 65",
        ),
        (
            "%#c|%#c|%#c|%#c|%#5c|%-#5c|%#05c|%#*c",
            "0, 1, 0x7f, 0xff + n, 10, 1, 200, 6, 39",
        ),
        ("%c%c%c|%5s", "65, n - 1, 66, \"tail\""),
        ("%d%05s|%s", "n, \"ab\", \"after\""),
        ("%-5s|%03s|%s", "\"a\", \"b\", \"c\""),
        ("%*s|%0*s|%s", "3, \"a\", n, \"b\", \"c\""),
    ]);
}

#[test]
fn dynamic_widths_and_precisions() {
    check(&[
        ("%*d|%-*d|%0*x", "5, n, 5, n, 6, 255"),
        ("%*d|%*d|%*d", "-5, n, 0, n, (1 << 32) | 3, n"),
        ("%.*d|%.*d|%*.*d|%*d,%d", "4, n, -1, n, 6, 3, n, 3, 1, 2"),
        ("%*d|", "100000, n"),
        (
            "%*s|%-*s|%.*s|%*.*s",
            "4, \"ab\", 4, \"ab\", 2, \"abcdef\", 5, 2, \"abcdef\"",
        ),
        ("%*s|%.*s|", "7, execname(), n, execname()"),
        ("%*c|%-*c|%*o", "3, 65, 3, 66, -9, 8"),
        ("%.*x|%#.*o|", "n, n, 2147483647, n"),
    ]);
}

#[test]
fn strings_with_precision_and_context_strings() {
    check(&[
        (
            "%.3s|%.10s|%6.2s|%-6.2s|%.0s|%.s",
            "\"abcdef\", \"abc\", \"abcdef\", \"abcdef\", \"abc\", \"abc\"",
        ),
        ("%.2s|%.4s|%-20.3s|%c", "execname(), pp(), probefunc(), 65"),
        ("%s%o%s", "\"x\", n, \"y\""),
        ("%.1s%.1s%.1s %o", "\"a\", \"b\", \"c\", 0"),
    ]);
}

#[test]
fn more_than_twelve_values_and_truncation() {
    check(&[
        (
            "%d%d%d%d%d%d%d%d%d%d%d%d%d%d",
            "n, n, n, n, n, n, n, n, n, n, n, n, n, n",
        ),
        (
            "%o%o%o%o%o%o%o%o%o%o%o%o%o%o%o%o",
            "-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1",
        ),
        (
            "%120s%c%c%c%c%c%c%c%c%c%o",
            "\"x\", 65, 66, 67, 68, 69, 70, 71, 72, 73, n",
        ),
        ("%126d%.5d", "n, n"),
        ("%*s|%o", "1000, \"a\", 8"),
        ("%s%s%.100s%o", "probefunc(), probefunc(), probefunc(), n"),
    ]);
}

#[test]
fn a_result_ends_at_its_first_nul_byte_as_a_key_too() {
    // `%c` of 0 and the `0` flag on a string write a NUL byte: the result is the C string
    // before it, the same key as that string.
    let src = r#"global keys, n
probe kernel.function("vfs_read") {
    n++
    keys[sprintf("%c%c%o", 65, 0, n)]++
    keys[sprintf("%03s|%d", "A", n)] += 10
    keys["A"] += 100
    keys[sprintf("%.*s%c", n, "ABC", 0)] += 1000
}"#;
    agree(src, &[0, 0, 0]);
}
