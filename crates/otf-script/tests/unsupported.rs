//! SystemTap constructs that otf does not support are refused by name, once, at their own
//! line:col, without follow-on errors; and script arguments (`$1`, `@1`, `$#`, `@#`) through
//! the whole front end.

use otf_script::diag::{render_all, SourceFile};

/// Every error of the whole front end for `text` (run with `args`), as `line:col message`.
fn errors_with(text: &str, args: &[&str]) -> Vec<String> {
    let file = SourceFile::new("t.stp", text).with_args(args.iter().copied());
    otf_script::check_source(&file)
        .iter()
        .filter(|d| d.is_error())
        .map(|d| {
            let (l, c) = file.line_col(d.span.lo);
            format!("{l}:{c} {}", d.message)
        })
        .collect()
}

fn errors(text: &str) -> Vec<String> {
    errors_with(text, &[])
}

#[test]
fn each_construct_is_one_named_error() {
    let cases: &[(&str, &str)] = &[
        (
            "probe begin { println(user_string_quoted(1)) }",
            "1:23 `user_string_quoted` is not supported yet",
        ),
        (
            "probe begin {\n  s = kernel_string_utf16(1, \"e\") }",
            "2:7 `kernel_string_utf16` is not supported yet",
        ),
        (
            "probe begin { x = user_string2_n_warn(1, 2, \"w\") }",
            "1:19 `user_string2_n_warn` is not supported yet",
        ),
        (
            "probe kernel.trace(\"sched:sched_switch\") { println(\"x\" . user_string_warn(1)) }",
            "1:58 `user_string_warn` and `user_string_n_warn` (their warnings): only available in `begin`, `end` and `timer` probes for now (their bodies run in user space)",
        ),
        (
            "probe begin { x = 1\n $a = 0 }",
            "2:2 target variables (`$a`) are not supported",
        ),
        (
            "probe begin { x = &$var }",
            "1:19 target variables (`$var`) are not supported",
        ),
        (
            "probe begin { x = $var->field->next + 1 }",
            "1:19 target variables (`$var`) are not supported",
        ),
        (
            "probe begin { x = $$vars\n}",
            "1:19 target variables (`$$vars`) are not supported",
        ),
        (
            "probe begin { x = @cast(p, \"task_struct\")->pid }",
            "1:19 `@cast` is not supported",
        ),
        (
            "probe begin { if (@defined($x)) y = 1 }",
            "1:19 `@defined` is not supported",
        ),
        (
            "probe begin { x = y->z }",
            "1:20 member access (`->`) is not supported",
        ),
        (
            "probe begin { if (s !~ \"x\") exit() }",
            "1:21 regular expression matching (`!~`) is not supported",
        ),
        (
            "@define N %( 10 %)\nprobe begin { }",
            "1:1 preprocessor macros (`@define`) are not supported",
        ),
        (
            "probe kernel.{trace(\"a\"), trace(\"b\")} { }",
            "1:14 brace alternatives (`{a,b}`) in probe points are not supported",
        ),
        (
            "private global x\nprobe begin { x = 1 }",
            "1:1 `private` is not supported",
        ),
        (
            "function f:long() %{ STAP_RETVALUE = 1; %}\nprobe begin { }",
            "1:19 embedded C code (`%{ ... %}`) is not supported",
        ),
        (
            "probe begin { printf(\"%d\\n\", $2) }",
            "1:30 command line argument index 2 out of range [1-0]",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(errors(text), [*want], "script: {text}");
    }
}

#[test]
fn errors_after_a_refused_construct_are_still_found() {
    assert_eq!(
        errors("probe kernel.{trace(\"a\"),trace(\"b\")} { }\nprobe end { y = }"),
        [
            "1:14 brace alternatives (`{a,b}`) in probe points are not supported",
            "2:17 expected an expression, found `}`",
        ]
    );
}

#[test]
fn script_arguments_everywhere() {
    let text = "probe timer.ms($1), kernel.trace(@2) { n = $1 + $# }\n\
                probe begin { printf(\"%s %s %d\\n\", @2, @#, $3) }";
    let file = SourceFile::new("t.stp", text).with_args(["100", "sched_switch", "x + 1"]);
    let d = otf_script::check_source(&file);
    assert!(d.iter().all(|d| !d.is_error()), "{}", render_all(&d, &file));
    let c = otf_script::compile_source(&file).expect("compiles");
    let points: Vec<String> = c.script.units.iter().map(|u| u.point.to_string()).collect();
    assert_eq!(
        points,
        ["timer.ms(100)", "kernel.trace(\"sched_switch\")", "begin"]
    );
    // A missing argument, at the `$N`, with the number given.
    assert_eq!(
        errors_with("probe begin {\n  x = 1\n  y = $4 }", &["a", "b"]),
        ["3:7 command line argument index 4 out of range [1-2]"]
    );
}
