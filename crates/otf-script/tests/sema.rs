//! The semantic passes: what is accepted, what is refused and where, and the name
//! resolution the compiler relies on. Also checks every `tests/malformed/sema_*.stp` case.

use otf_script::diag::{Diagnostic, Severity, SourceFile};
use otf_script::point::PointKind;
use otf_script::sema::{self, Checked, Scope, VarRef};

fn checked(src: &str) -> (SourceFile, Checked) {
    let file = SourceFile::new("t.stp", src);
    let parsed = otf_script::parser::parse(&file);
    assert!(
        !parsed.has_errors(),
        "parse errors:\n{}",
        otf_script::diag::render_all(&parsed.diags, &file)
    );
    let c = sema::check(&file, &parsed.script);
    (file, c)
}

/// (line, col, message) of every diagnostic of `sev` from the whole front end.
fn diags(src: &str, sev: Severity) -> Vec<(usize, usize, String)> {
    let file = SourceFile::new("t.stp", src);
    otf_script::check_source(&file)
        .into_iter()
        .filter(|d| d.severity == sev)
        .map(|d: Diagnostic| {
            let (l, c) = file.line_col(d.span.lo);
            (l, c, d.message)
        })
        .collect()
}

fn errors(src: &str) -> Vec<(usize, usize, String)> {
    diags(src, Severity::Error)
}

fn ok(src: &str) {
    let e = errors(src);
    assert!(e.is_empty(), "unexpected errors for {src:?}: {e:#?}");
}

/// Exactly one error, at `line:col`, containing `msg`.
fn err_at(src: &str, line: usize, col: usize, msg: &str) {
    let e = errors(src);
    assert_eq!(e.len(), 1, "expected one error for {src:?}, got {e:#?}");
    let (l, c, m) = &e[0];
    assert!(
        *l == line && *c == col && m.contains(msg),
        "expected {line}:{col} `{msg}` for {src:?}, got {l}:{c} `{m}`"
    );
}

#[test]
fn the_onthefly_suite_scripts_are_accepted() {
    ok("global enabled = 0, toggles = 0, hit = 0
probe timer.us(100000) if (enabled) { if (hit) next; hit = 1; println(\"hit\") }
probe timer.us(500000) {
  toggles++; hit = 0
  if (toggles > 5) exit()
  else { println(\"toggling\")
         enabled = enabled ? 0 : (randint(2) == 0 ? -1 - randint(10000) : 1 + randint(10000)) } }
probe timer.s(360) { println(\"timed out\"); exit() }");
    ok("global state = 1, toggles = 0
probe kernel.function(\"vfs_read\").call if (state > 0) {
  if (state == 3) { println(\"hit\"); state++ } else if (state == 1) state++ }
probe kernel.function(\"vfs_read\").return if (state > 0) {
  if (state != @entry(state)) next
  if (state == 4) { println(\"rethit\"); state++ } else if (state == 2) state++ }
probe timer.us(500000) {
  if (state != 0 && state != 5) next
  toggles++
  if (toggles > 5) exit() else { println(\"toggling\"); state = !state } }");
    ok("global enabled = 1
probe kernel.trace(\"sched_process_fork\") if (enabled) { println(\"hit\") }
probe timer.us(1000), timer.profile { enabled = !enabled }");
}

#[test]
fn units_and_points() {
    let (_, c) = checked(
        "probe begin, end {}\nprobe timer.hz(1000) if (1), timer.profile? {}\nprobe process(\"/bin/ls\").function(\"m*\").return {}",
    );
    assert!(!c.has_errors());
    let pts: Vec<_> = c
        .units
        .iter()
        .map(|u| (u.probe, u.component, u.point.clone()))
        .collect();
    assert_eq!(
        pts,
        vec![
            (0, 0, PointKind::Begin),
            (0, 1, PointKind::End),
            (
                1,
                0,
                PointKind::Timer {
                    period_ns: 1_000_000,
                    text: "timer.hz(1000)".into()
                }
            ),
            (1, 1, PointKind::TimerProfile),
            (
                2,
                0,
                PointKind::ProcessFunction {
                    path: "/bin/ls".into(),
                    pattern: "m*".into(),
                    ret: true
                }
            ),
        ]
    );
    assert!(c.units[3].optional && !c.units[2].optional);
    assert!(c.units[2].has_cond && c.units[2].cond_reads.is_empty());
}

#[test]
fn name_resolution() {
    let (_, c) = checked(
        "global g, h = -4
         function f(a, g) { t = a + g + h; return t }
         probe begin { x = 1; y = f(x, 2); g = y }",
    );
    assert!(!c.has_errors(), "{:?}", c.diags);
    assert_eq!(c.globals[1].init, -4);
    assert_eq!(c.resolve(Scope::Probe(0), "g"), Some(VarRef::Global(0)));
    assert_eq!(c.resolve(Scope::Probe(0), "x"), Some(VarRef::Local(0)));
    assert_eq!(c.resolve(Scope::Probe(0), "y"), Some(VarRef::Local(1)));
    assert_eq!(c.resolve(Scope::Probe(0), "zz"), None);
    // Parameters shadow globals; locals follow the parameters.
    assert_eq!(c.resolve(Scope::Function(0), "a"), Some(VarRef::Local(0)));
    assert_eq!(c.resolve(Scope::Function(0), "g"), Some(VarRef::Local(1)));
    assert_eq!(c.resolve(Scope::Function(0), "h"), Some(VarRef::Global(1)));
    assert_eq!(c.resolve(Scope::Function(0), "t"), Some(VarRef::Local(2)));
    assert_eq!(c.function_locals[0], vec!["a", "g", "t"]);
    assert_eq!(c.function("f"), Some(0));
    assert_eq!(c.global("h"), Some(1));
    // f reads h; the probe writes g and, through f, reads h.
    assert_eq!(
        c.function_access[0]
            .reads
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1]
    );
    assert!(c.function_access[0].writes.is_empty());
    assert_eq!(
        c.probe_access[0].writes.iter().copied().collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(
        c.probe_access[0].reads.iter().copied().collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn transitive_accesses_through_nested_calls() {
    let (_, c) = checked(
        "global a, b, c
         function f3() { c = a }
         function f2() { f3() }
         function f1() { b++; f2() }
         probe begin { f1() }",
    );
    assert!(!c.has_errors());
    let w: Vec<u32> = c.probe_access[0].writes.iter().copied().collect();
    let r: Vec<u32> = c.probe_access[0].reads.iter().copied().collect();
    assert_eq!(w, vec![1, 2]);
    assert_eq!(r, vec![0, 1]);
}

#[test]
fn global_initialisers() {
    let (_, c) = checked("global a = 5, b = -5, c = 0x10, d = 017, e, f = -9223372036854775808");
    let inits: Vec<i64> = c.globals.iter().map(|g| g.init).collect();
    assert_eq!(inits, vec![5, -5, 16, 15, 0, i64::MIN]);
    err_at("global a = 1 + 2", 1, 12, "must be an integer constant");
    err_at("global a = b", 1, 12, "must be an integer constant");
    let (_, c) = checked("global s = \"text\"");
    assert_eq!(c.globals[0].init_str.as_deref(), Some("text"));
}

#[test]
fn duplicates() {
    err_at("global a\nglobal a", 2, 8, "duplicate global `a`");
    err_at(
        "function f() {}\nfunction f() {}",
        2,
        10,
        "duplicate function `f`",
    );
    err_at(
        "function f(a, a) { return a }",
        1,
        15,
        "duplicate parameter `a`",
    );
    err_at("function pid() { return 1 }", 1, 10, "name of a built-in");
}

#[test]
fn undefined_functions_and_arity() {
    err_at("probe begin { foo(1) }", 1, 15, "unknown function `foo`");
    err_at(
        "probe begin { x = randint() }",
        1,
        19,
        "`randint` takes 1 argument, got 0",
    );
    err_at(
        "probe begin { x = pid(1) }",
        1,
        19,
        "`pid` takes 0 arguments, got 1",
    );
    err_at("probe begin { exit(1) }", 1, 15, "`exit` takes 0 arguments");
    err_at(
        "probe begin { printf() }",
        1,
        15,
        "`printf` takes at least 1 argument",
    );
    err_at(
        "function f(a, b) { return a }\nprobe begin { x = f(1) }",
        2,
        19,
        "function `f` takes 2 arguments, got 1",
    );
    ok("probe begin { println() }");
}

#[test]
fn recursion_is_refused() {
    err_at(
        "function f(n) { return f(n - 1) }\nprobe begin { x = f(3) }",
        1,
        24,
        "recursive function call `f` is not supported (functions are inlined)",
    );
    let e = errors(
        "function a() { return b() }\nfunction b() { return c() }\nfunction c() { return a() }\nprobe begin { a() }",
    );
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].2.contains("recursive function call `a`"), "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (3, 23));
}

#[test]
fn implicit_locals_and_unassigned_reads() {
    let w = diags("probe begin { x = y + 1 }", Severity::Warning);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].0, w[0].1), (1, 19));
    assert!(w[0].2.contains("`y` is read but never assigned"));
    // Assigned later in the body counts as assigned (SystemTap decides per body).
    assert!(diags("probe begin { if (z) z = 1 }", Severity::Warning).is_empty());
    // Warned once per name.
    assert_eq!(
        diags("probe begin { x = q + q }", Severity::Warning).len(),
        1
    );
    // Locals of different probes are distinct.
    let (_, c) = checked("probe begin { x = 1 }\nprobe end { y = 2; x = 3 }");
    assert_eq!(
        c.probe_locals,
        vec![vec!["x".to_string()], vec!["y".into(), "x".into()]]
    );
}

#[test]
fn condition_rules() {
    err_at(
        "global a\nprobe begin if (a = 1) {}",
        2,
        17,
        "probe condition must not modify any variables",
    );
    err_at(
        "global a\nprobe begin if (a++) {}",
        2,
        17,
        "probe condition must not modify any variables",
    );
    err_at(
        "probe begin if (x > 0) { x = 1 }",
        1,
        17,
        "probe condition may only reference global variables",
    );
    err_at(
        "probe begin if (pid() == 1) {}",
        1,
        17,
        "probe condition may only reference global variables",
    );
    ok("global a, b\nprobe begin if (a && b || -3 < a * 2) {}");
    let (_, c) = checked("global a, b, c\nprobe begin if (c > a) {}");
    assert_eq!(
        c.units[0].cond_reads.iter().copied().collect::<Vec<_>>(),
        vec![0, 2]
    );
}

#[test]
fn context_rules() {
    err_at(
        "probe begin { x = returnval() }",
        1,
        19,
        "only available in `.return` probes",
    );
    err_at(
        "probe kernel.function(\"f\") { x = returnval() }",
        1,
        34,
        "only available in `.return` probes",
    );
    err_at(
        "global s\nprobe begin { x = @entry(s) }",
        2,
        19,
        "only available in `.return` probes",
    );
    err_at(
        "probe timer.s(1) { x = int_arg(1) }",
        1,
        24,
        "only available in function probes",
    );
    err_at(
        "probe begin { println(probefunc()) }",
        1,
        23,
        "only available in function probes",
    );
    err_at(
        "function f() { return returnval() }\nprobe begin { x = f() }",
        2,
        19,
        "function `f` uses",
    );
    err_at(
        "probe kernel.function(\"f\").return, timer.s(1) { x = returnval() }",
        1,
        53,
        "only available in `.return` probes",
    );
    ok("probe kernel.function(\"f\").return { x = returnval() + @entry(long_arg(1)) + int_arg(2) }");
    ok("probe process(\"/bin/ls\").function(\"f\") { println(probefunc(), pointer_arg(6)) }");
    err_at(
        "probe process(\"/bin/ls\").function(\"f\") { x = int_arg(7) }",
        1,
        54,
        "integer constant from 1 to 6",
    );
    err_at(
        "probe process(\"/bin/ls\").function(\"f\") { n = 1; x = int_arg(n) }",
        1,
        61,
        "integer constant",
    );
}

#[test]
fn entry_rules() {
    err_at(
        "probe kernel.function(\"f\").return { x = 1; y = @entry(x) }",
        1,
        55,
        "@entry may only use globals",
    );
    err_at(
        "global g\nprobe kernel.function(\"f\").return { y = @entry(g++) }",
        2,
        48,
        "@entry expression must not modify",
    );
    err_at(
        "function f() { return @entry(1) }\nprobe kernel.function(\"f\").return { y = f() }",
        1,
        23,
        "@entry is not supported inside functions",
    );
    let many = (0..9)
        .map(|i| format!("@entry({i})"))
        .collect::<Vec<_>>()
        .join(" + ");
    let e = errors(&format!(
        "probe kernel.function(\"f\").return {{ y = {many} }}"
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].2.contains("more than 8 @entry"));
}

#[test]
fn statement_placement() {
    err_at(
        "probe begin { return 1 }",
        1,
        15,
        "`return` outside a function",
    );
    err_at("probe begin { break }", 1, 15, "`break` outside a loop");
    err_at(
        "probe begin { if (1) continue }",
        1,
        22,
        "`continue` outside a loop",
    );
    err_at("function f() { break }", 1, 16, "`break` outside a loop");
    ok("function f() { while (1) { break } for (;;) { continue } return 1 }");
    ok("function f() { next }");
}

#[test]
fn strings_and_integers_do_not_mix() {
    err_at(
        "probe begin { x = \"a\" + 1 }",
        1,
        19,
        "is a string, but an integer is needed",
    );
    err_at(
        "probe begin { x = execname() + 1 }",
        1,
        19,
        "`execname()` is a string",
    );
    err_at(
        "probe begin { if (pp()) next }",
        1,
        19,
        "`pp()` is a string",
    );
    err_at(
        "function f(x) { return x + 1 }\nprobe begin { y = f(\"s\") }",
        1,
        24,
        "type mismatch: `x` is a long here but a string elsewhere",
    );
    err_at(
        "probe begin { \"lonely\" }",
        1,
        15,
        "is a string and is not used",
    );
    err_at("probe begin { x = println(1) }", 1, 19, "has no value");
    err_at("probe begin { println(exit()) }", 1, 23, "has no value");
    ok("probe begin { print(\"a\", 1, execname(), pp()); println(execname()) }");
}

#[test]
fn printf_checks() {
    err_at(
        "probe begin { x = 1; printf(x) }",
        1,
        29,
        "must be a string literal",
    );
    err_at(
        "probe begin { printf(\"%d %d\\n\", 1) }",
        1,
        26,
        "nothing for `%d`",
    );
    err_at(
        "probe begin { printf(\"%d\\n\", 1, 2) }",
        1,
        33,
        "too many arguments for printf",
    );
    err_at(
        "probe begin { printf(\"%s\\n\", 1) }",
        1,
        30,
        "`%s` needs a string argument",
    );
    err_at(
        "probe begin { printf(\"%d\\n\", execname()) }",
        1,
        30,
        "`%d` needs an integer argument",
    );
    err_at(
        "probe begin { printf(\"%5.2f\", 1) }",
        1,
        23,
        "unsupported printf conversion `%5.2f`",
    );
    err_at(
        "probe begin { printf(\"100%\") }",
        1,
        26,
        "incomplete printf conversion",
    );
    ok("probe begin { printf(\"%-10s|%5d|%%|%c|%x\\n\", execname(), 3, 65, -1) }");
}

#[test]
fn printf_systemtap_conversions() {
    ok("probe begin { printf(\"%p %ld %lu %lld %llu %lx %llx %li %lX %#x %#X %#o %05d %+d % d\\n\", \
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) }");
    ok("probe begin { printf(\"%.3d %08.3d %-#10x %-8s %.2s %c %#c\\n\", 1, 2, 3, \"a\", pp(), 65, 10) }");
    // `*` and `.*` take integer arguments before the value.
    ok("probe begin { printf(\"%*d %-*s %.*s %*.*x\\n\", 5, 1, 3, execname(), 2, \"abc\", 6, 3, 255) }");
    err_at(
        "probe begin { printf(\"%*d\\n\", 5) }",
        1,
        23,
        "printf format has 1 conversion taking 2 arguments but 1 argument is given: nothing for `%*d`",
    );
    err_at(
        "probe begin { printf(\"%d %.*s\\n\", 1, 2) }",
        1,
        26,
        "nothing for `%.*s`",
    );
    err_at(
        "probe begin { printf(\"%*d\\n\", \"x\", 1) }",
        1,
        31,
        "the `*` width of `%*d` needs an integer argument, but",
    );
    err_at(
        "probe begin { printf(\"%*s\\n\", 2, 1) }",
        1,
        34,
        "`%*s` needs a string argument",
    );
    err_at(
        "probe begin { printf(\"%*d\\n\", 1, 2, 3) }",
        1,
        37,
        "too many arguments for printf: the format has 1 conversion taking 2 arguments",
    );
    err_at(
        "probe begin { s = sprintf(\"x%4b\", 1) }",
        1,
        29,
        "`sprintf` conversion `%4b` is not supported yet",
    );
    err_at(
        "probe begin { s = sprintf(\"%#.2M\", 1) }",
        1,
        28,
        "`sprintf` conversion `%#.2M` is not supported yet",
    );
    err_at(
        "probe begin { printf(\"%.200m\", 1) }",
        1,
        23,
        "printf conversion `%.200m` reads more than 128 bytes",
    );
    err_at(
        "probe begin { printf(\"%m\", \"x\") }",
        1,
        28,
        "`%m` needs an integer argument, but",
    );
    err_at(
        "probe begin { printf(\"%hd\", 1) }",
        1,
        23,
        "unsupported printf conversion `%hd`",
    );
}

#[test]
fn assignment_to_functions() {
    err_at("probe begin { pid = 3 }", 1, 15, "cannot assign to `pid`");
    err_at(
        "function f() { return 1 }\nprobe begin { f++ }",
        2,
        15,
        "cannot assign to `f`",
    );
    err_at(
        "probe begin { x = pid }",
        1,
        19,
        "`pid` is a function, not a variable",
    );
    // A global named like a built-in is a variable.
    ok("global cpu\nprobe begin { cpu = 3; x = cpu + cpu() }");
}

#[test]
fn probe_point_errors() {
    let e = errors("probe kernel.funtion(\"vfs_read\") { n++ }");
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!((e[0].0, e[0].1), (1, 7));
    assert_eq!(e[0].2, "unknown probe point family `kernel.funtion`");
    err_at("probe timer.min(5) {}", 1, 13, "unknown timer unit `min`");
    err_at("probe timer.ms(0) {}", 1, 13, "must be positive");
    err_at("probe timer.ms(-5) {}", 1, 13, "must be positive");
    err_at("probe timer.s(9223372036854775807) {}", 1, 13, "overflows");
    err_at("probe timer.ms {}", 1, 13, "needs an integer argument");
    err_at("probe timer.ms(\"5\") {}", 1, 13, "not a string");
    err_at("probe timer.hz(1000000001) {}", 1, 13, "out of range");
    err_at("probe kernel.trace {}", 1, 14, "needs a string argument");
    err_at("probe kernel.trace(5) {}", 1, 14, "not a number");
    err_at(
        "probe kernel.function(\"f\").inline {}",
        1,
        28,
        "unsupported probe point component `.inline`",
    );
    err_at(
        "probe process.function(\"f\") {}",
        1,
        7,
        "`process` needs the executable's path",
    );
    err_at("probe begin(5) {}", 1, 7, "not supported");
    err_at("probe foo {}", 1, 7, "unknown probe point family `foo`");
}

#[test]
fn probe_point_rendering() {
    let file = SourceFile::new(
        "trace.stp",
        "global n\n\nprobe kernel.funtion(\"vfs_read\") { n++ }\n",
    );
    let d = otf_script::check_source(&file);
    let text = otf_script::diag::render_all(&d, &file);
    assert!(
        text.starts_with(
            "error: unknown probe point family `kernel.funtion`\n  --> trace.stp:3:7\n   |\n 3 | probe kernel.funtion(\"vfs_read\") { n++ }\n   |       ^^^^^^^^^^^^^^\n"
        ),
        "{text}"
    );
    assert!(text.contains("did you mean `kernel.function`?"), "{text}");
}

#[test]
fn canonical_point_display() {
    let (_, c) = checked(
        "probe timer.msec(5), timer.sec(2), timer.us(3), timer.ns(4), timer.profile, begin, end, kernel.trace(\"sched:*\"), kernel.function(\"vfs_*\").call, kernel.function(\"x\").return, process(\"a b\").function(\"m\") {}",
    );
    let shown: Vec<String> = c.units.iter().map(|u| u.point.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "timer.ms(5)",
            "timer.s(2)",
            "timer.us(3)",
            "timer.ns(4)",
            "timer.profile",
            "begin",
            "end",
            "kernel.trace(\"sched:*\")",
            "kernel.function(\"vfs_*\")",
            "kernel.function(\"x\").return",
            "process(\"a b\").function(\"m\")",
        ]
    );
    let k: Vec<(bool, bool, bool)> = c
        .units
        .iter()
        .map(|u| {
            (
                u.point.is_kernel(),
                u.point.is_function_probe(),
                u.point.is_return(),
            )
        })
        .collect();
    assert_eq!(k[5], (false, false, false));
    assert_eq!(k[4], (true, false, false));
    assert_eq!(k[8], (true, true, false));
    assert_eq!(k[9], (true, true, true));
    match &c.units[0].point {
        PointKind::Timer { period_ns, .. } => assert_eq!(*period_ns, 5_000_000),
        p => panic!("{p:?}"),
    }
}

/// Every `tests/malformed/sema_*.stp` starts with `# expect: LINE:COL substring`; the
/// front end must report an error there whose message contains the substring.
#[test]
fn malformed_sema_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/malformed")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("sema_") && f.ends_with(".stp"))
        })
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).expect("read");
        let first = text.lines().next().unwrap_or("");
        let spec = first
            .strip_prefix("# expect: ")
            .unwrap_or_else(|| panic!("{}: no `# expect:` line", path.display()));
        let (pos, want) = spec.split_once(' ').expect("LINE:COL message");
        let (l, c) = pos.split_once(':').expect("LINE:COL");
        let (l, c): (usize, usize) = (l.parse().expect("line"), c.parse().expect("col"));
        let file = SourceFile::new(path.display().to_string(), text.clone());
        let d = otf_script::check_source(&file);
        let errs: Vec<_> = d.iter().filter(|d| d.is_error()).collect();
        let first_err = errs
            .first()
            .unwrap_or_else(|| panic!("{}: no error", path.display()));
        assert_eq!(
            file.line_col(first_err.span.lo),
            (l, c),
            "{}: first error at the wrong place:\n{}",
            path.display(),
            otf_script::diag::render_all(&d, &file)
        );
        assert!(
            first_err.message.contains(want),
            "{}: `{}` does not contain `{want}`",
            path.display(),
            first_err.message
        );
        n += 1;
    }
    assert!(n >= 20, "only {n} sema_*.stp cases");
}

#[test]
fn strings_read_from_memory() {
    ok(
        r#"probe begin { s = user_string(1); t = user_string(1, "e") . user_string2(1, "e")
        u = user_string_n(1, 2) . user_string_n(1, 2, "e") . user_string_n2(1, 2, "e")
        v = user_string_warn(1) . user_string_warn(1, "w") . user_string2_warn(1, "w")
        w = user_string_n_warn(1, 2) . user_string_n_warn(1, 2, "w") . user_string_nofault(1)
        x = kernel_string(1) . kernel_string(1, "e") . kernel_string2(1, "e") . kernel_string_n(1, 2)
        y = user_string_n_nofault(1, 2); printf("%s%s%s%s%s%s%s\n", s, t, u, v, w, x, y) }"#,
    );
    // In kernel probes too, except the warnings.
    ok(
        r#"probe kernel.trace("sched:sched_switch") { println(user_string(1) . kernel_string_n(2, 3)) }"#,
    );
    err_at(
        "probe begin { println(user_string()) }",
        1,
        23,
        "`user_string` takes 1 to 2 arguments, got 0",
    );
    err_at(
        "probe begin { println(kernel_string_n(1, 2, \"e\")) }",
        1,
        23,
        "`kernel_string_n` takes 2 arguments, got 3",
    );
    err_at(
        "probe begin { println(user_string(\"p\")) }",
        1,
        35,
        "a string literal is a string, but an integer is needed here",
    );
    err_at(
        "probe begin { println(user_string2(1, 2)) }",
        1,
        39,
        "this expression is an integer, but a string is needed here",
    );
}

#[test]
fn variance_and_its_bit_shift() {
    ok("global s, t\nprobe begin { s <<< 1; t[1] <<< 2; x = @variance(s) + @variance(t[1], 62) }");
    // The default 0 never conflicts: `@variance(s)` then `@variance(s, 3)` keeps 3, as
    // SystemTap.
    ok("global s\nprobe begin { s <<< 1; x = @variance(s) + @variance(s, 3) + @variance(s, 3) }");
    err_at(
        "global s\nprobe begin { s <<< 1; x = @variance(s, 63) }",
        2,
        28,
        "bit shift (63) out of range <0..62>",
    );
    err_at(
        "global s\nprobe begin { s <<< 1; x = @variance(s, -1) }",
        2,
        28,
        "bit shift (-1) out of range <0..62>",
    );
    err_at(
        "global s\nprobe begin { s <<< 1; x = @variance(s, 2) }\nprobe end { y = @variance(s, 4) }",
        3,
        17,
        "conflicting bit shifts declared (previously 2)",
    );
    err_at(
        "global s\nprobe begin { s <<< 1; x = @variance(s, 2) }\nprobe end { y = @variance(s) }",
        3,
        17,
        "conflicting bit shifts declared (previously 2)",
    );
    // Aggregates are read, and whole arrays deleted, in every kernel probe body.
    ok("global s, a\nprobe kernel.trace(\"sched:sched_switch\") { s <<< 1; a[1] = @variance(s) + @count(s); delete a; delete s }");
}

#[test]
fn the_bit_shift_of_variance_is_a_constant() {
    let file = SourceFile::new(
        "t.stp",
        "global s\nprobe begin { s <<< 1; n = 2; x = @variance(s, n) }",
    );
    let d = otf_script::check_source(&file);
    let e: Vec<_> = d.iter().filter(|d| d.is_error()).collect();
    assert_eq!(e.len(), 1, "{d:?}");
    assert_eq!(
        e[0].message,
        "the bit shift of `@variance` must be an integer constant"
    );
    assert_eq!(file.line_col(e[0].span.lo), (2, 48));
}

#[test]
fn sprintf_in_kernel_probes_depends_on_its_format() {
    // What the kernel's `bpf_snprintf` prints as SystemTap does runs in the kernel.
    ok(r#"global a
probe kernel.trace("syscalls:sys_enter_getppid") {
    a[sprintf("%s(%d)", execname(), pid())]++
    a[sprintf("%d %i %u %x %X %5d %-5d %05d %+d % d %ld %lld", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)]++
    a[sprintf("%s %8s %-8s %sabc %#x %#X %p 100%%", pp(), "x", execname(), "y", 1, 2, 3)]++
    a[sprintf("%5s|%-3s|", "lit", "l")]++
}"#);
    // The native formatter prints every other conversion, flag, width and precision.
    ok(r#"global a
probe kernel.trace("syscalls:sys_enter_getppid") {
    a[sprintf("%c %#c %o %#o %*d %.3d %#5x %-p %.2s %*.*s %05s", 65, 10, 8, 8, 3, 1, 2, 3, 4, "abc", 5, 1, "x", "y")]++
    a[sprintf("%d%d%d%d%d%d%d%d%d%d%d%d%d %s%s%s%s%s", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, pp(), pp(), pp(), pp(), pp())]++
}"#);
    // The rest is refused at the `sprintf`, by name.
    let refused = [("é%d", "not ASCII")];
    for (fmt, why) in refused {
        let args = vec!["1"; fmt.matches('%').count()];
        err_at(
            &format!(
                "global a\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") {{\n    a[sprintf(\"{fmt}\", {})]++\n}}",
                args.join(", ")
            ),
            3,
            7,
            why,
        );
    }
    // The whole message.
    err_at(
        "probe kernel.trace(\"syscalls:sys_enter_getppid\") { x = sprintf(\"é%d\", 65) }",
        1,
        56,
        "`sprintf` with text that is not ASCII or holds a NUL byte: only available in `begin`, `end` and `timer` probes for now (their bodies run in user space)",
    );
    // Any format runs in user space.
    ok("probe begin { x = sprintf(\"%c %o %.2s %*d\", 65, 8, \"abc\", 3, 4) }");
}

#[test]
fn an_array_cannot_change_during_a_foreach_over_it() {
    // SystemTap's messages (elaborate.cxx, no_var_mutation_during_iteration_check).
    let msg = "variable 'a' modified during 'foreach' iteration";
    err_at(
        "global a\nprobe begin { foreach (k in a) a[k] = 1 }",
        2,
        32,
        msg,
    );
    err_at(
        "global a\nprobe begin { foreach (k in a) {\n  a[k]++ } }",
        3,
        3,
        msg,
    );
    err_at(
        "global a\nprobe begin { foreach (k in a) delete a[k] }",
        2,
        39,
        msg,
    );
    err_at(
        "global a\nprobe begin { foreach (k in a) delete a }",
        2,
        39,
        msg,
    );
    err_at(
        "global a\nprobe begin { foreach (k in a) a[k] <<< 1 }",
        2,
        32,
        msg,
    );
    // Inside a nested loop, over another array or not.
    err_at(
        "global a, b\nprobe begin { foreach (k in a) foreach (j in b) a[j] += 2 }",
        2,
        49,
        msg,
    );
    // Through a function, and a function's callee.
    let call = "function call modifies var 'a' during 'foreach' iteration";
    err_at(
        "global a\nfunction f(k) { a[k] = 0 }\nprobe begin { foreach (k in a) f(k) }",
        3,
        32,
        call,
    );
    err_at(
        "global a\nfunction g() { delete a }\nfunction f() { g() }\nprobe begin { foreach (k in a) f() }",
        4,
        32,
        call,
    );
    // A foreach inside a function, and a probe that calls that function.
    err_at(
        "global a\nfunction f() { foreach (k in a) a[k] = 1 }\nprobe begin { f() }",
        2,
        33,
        msg,
    );
    // Reading it, writing another array, and writing it after the loop are fine.
    ok("global a, b\nfunction f(k) { return a[k] }\n\
        probe begin { foreach (k in a) { b[k] = a[k] + f(k); x = [k] in a } a[1] = 2; delete a }");
}

#[test]
fn kernel_bodies_print_histograms_that_fit_an_output_record() {
    ok("global s, a\nprobe kernel.trace(\"sched:sched_switch\") { s <<< 1; print(@hist_log(s)); a[\"x\", 1] <<< 2; println(@hist_linear(a[\"x\", 1], 0, 100, 10)) }");
    // 1024 bytes of log buckets, two string keys and a number: 1288 > 1280.
    let why = "printing histograms with more than the 1280 bytes of an output record (1024 for a `@hist_log`, 8 a bucket for a `@hist_linear`, 128 a key or string, 8 a number): only available in `begin`, `end` and `timer` probes for now (their bodies run in user space)";
    err_at(
        "global a\nprobe kernel.trace(\"sched:sched_switch\") {\n  a[\"x\", \"y\"] <<< 1; print(1, @hist_log(a[\"x\", \"y\"])) }",
        3,
        22,
        why,
    );
    // Two log histograms; a linear one of 1000 buckets.
    err_at(
        "global s\nprobe kernel.trace(\"sched:sched_switch\") { s <<< 1; print(@hist_log(s), @hist_log(s)) }",
        2,
        53,
        why,
    );
    err_at(
        "global s\nprobe kernel.trace(\"sched:sched_switch\") { s <<< 1; print(@hist_linear(s, 0, 1000, 1)) }",
        2,
        53,
        why,
    );
    // User-space bodies print them from the aggregate.
    ok("global s\nprobe begin { s <<< 1; print(@hist_log(s), @hist_log(s)) }");
}
