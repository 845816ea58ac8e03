//! Structural tests of the grammar: the parser builds exactly the expected tree.

use otf_script::ast::*;
use otf_script::diag::{render_all, SourceFile};
use otf_script::parser::{parse, Parsed};

/// Parses `text` and fails the test (with rendered diagnostics) if there is any diagnostic.
fn ok(text: &str) -> Script {
    let file = SourceFile::new("t.stp", text);
    let Parsed { script, diags } = parse(&file);
    assert!(
        diags.is_empty(),
        "unexpected diagnostics:\n{}",
        render_all(&diags, &file)
    );
    script
}

/// A compact S-expression of an expression.
fn sx(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(v) => v.to_string(),
        ExprKind::Str(s) => format!("{s:?}"),
        ExprKind::Var(id) => id.name.clone(),
        ExprKind::Assign { op, target, value } => {
            let op = op.map(|o| format!("{}=", o.as_str())).unwrap_or("=".into());
            format!("({op} {} {})", target.name, sx(value))
        }
        ExprKind::IncDec {
            prefix,
            inc,
            target,
        } => {
            let op = if *inc { "++" } else { "--" };
            if *prefix {
                format!("(pre{op} {})", target.name)
            } else {
                format!("(post{op} {})", target.name)
            }
        }
        ExprKind::Binary { op, lhs, rhs } => format!("({} {} {})", op.as_str(), sx(lhs), sx(rhs)),
        ExprKind::Unary { op, expr } => {
            let op = match op {
                UnOp::Neg => "neg",
                UnOp::Not => "!",
                UnOp::BitNot => "~",
                UnOp::Plus => "pos",
            };
            format!("({op} {})", sx(expr))
        }
        ExprKind::Ternary { cond, then, els } => {
            format!("(? {} {} {})", sx(cond), sx(then), sx(els))
        }
        ExprKind::Call { name, args } => {
            let mut s = format!("(call {}", name.name);
            for a in args {
                s.push(' ');
                s.push_str(&sx(a));
            }
            s.push(')');
            s
        }
        ExprKind::Entry(e) => format!("(@entry {})", sx(e)),
        ExprKind::Index { array, keys } => format!("{}[{}]", array.name, list(keys)),
        ExprKind::IndexAssign {
            op,
            array,
            keys,
            value,
        } => {
            let op = op.map(|o| format!("{}=", o.as_str())).unwrap_or("=".into());
            format!("({op} {}[{}] {})", array.name, list(keys), sx(value))
        }
        ExprKind::IndexIncDec {
            prefix,
            inc,
            array,
            keys,
        } => {
            let op = if *inc { "++" } else { "--" };
            let fix = if *prefix { "pre" } else { "post" };
            format!("({fix}{op} {}[{}])", array.name, list(keys))
        }
        ExprKind::In { keys, array } => format!("(in [{}] {})", list(keys), array.name),
        ExprKind::Aggregate {
            target,
            keys,
            value,
        } => format!("(<<< {}[{}] {})", target.name, list(keys), sx(value)),
        ExprKind::Stat {
            op,
            target,
            keys,
            shift,
        } => match shift {
            Some(s) => format!("(@{} {}[{}] {s})", op.name(), target.name, list(keys)),
            None => format!("(@{} {}[{}])", op.name(), target.name, list(keys)),
        },
        ExprKind::Hist { kind, target, keys } => {
            format!("(hist {kind:?} {}[{}])", target.name, list(keys))
        }
    }
}

fn list(es: &[Expr]) -> String {
    es.iter().map(sx).collect::<Vec<_>>().join(" ")
}

/// A compact S-expression of a statement.
fn st(s: &Stmt) -> String {
    match &s.kind {
        StmtKind::Block(b) => blk(b),
        StmtKind::If { cond, then, els } => match els {
            Some(e) => format!("(if {} {} {})", sx(cond), st(then), st(e)),
            None => format!("(if {} {})", sx(cond), st(then)),
        },
        StmtKind::While { cond, body } => format!("(while {} {})", sx(cond), st(body)),
        StmtKind::For {
            init,
            cond,
            step,
            body,
        } => {
            let o = |e: &Option<Expr>| e.as_ref().map(sx).unwrap_or("_".into());
            format!("(for {} {} {} {})", o(init), o(cond), o(step), st(body))
        }
        StmtKind::Break => "break".into(),
        StmtKind::Continue => "continue".into(),
        StmtKind::Next => "next".into(),
        StmtKind::Return(None) => "(return)".into(),
        StmtKind::Return(Some(e)) => format!("(return {})", sx(e)),
        StmtKind::Expr(e) => sx(e),
        StmtKind::Delete(e) => format!("(delete {})", sx(e)),
        StmtKind::Foreach(f) => {
            let keys: Vec<&str> = f.keys.iter().map(|k| k.name.as_str()).collect();
            format!(
                "(foreach {}[{}] {} {:?} {} {})",
                f.value
                    .as_ref()
                    .map_or(String::new(), |v| format!("{}=", v.name)),
                keys.join(" "),
                f.array.name,
                f.sort.map(|s| (s.key, s.desc)),
                f.limit.as_ref().map_or("_".into(), sx),
                st(&f.body)
            )
        }
        StmtKind::Empty => ";".into(),
    }
}

fn blk(b: &Block) -> String {
    let inner: Vec<String> = b.stmts.iter().map(st).collect();
    format!("{{{}}}", inner.join(" "))
}

/// The S-expression of a single expression statement `probe begin { E }`.
fn e(text: &str) -> String {
    let s = ok(&format!("probe begin {{ {text} }}"));
    assert_eq!(s.probes[0].body.stmts.len(), 1, "{text}");
    st(&s.probes[0].body.stmts[0])
}

/// The S-expression of the body of `probe begin { BODY }`.
fn body(text: &str) -> String {
    blk(&ok(&format!("probe begin {{ {text} }}")).probes[0].body)
}

#[test]
fn precedence_follows_c() {
    assert_eq!(e("1 + 2 * 3"), "(+ 1 (* 2 3))");
    assert_eq!(e("1 * 2 + 3"), "(+ (* 1 2) 3)");
    assert_eq!(e("a % b / c * d"), "(* (/ (% a b) c) d)");
    assert_eq!(e("1 << 2 + 3"), "(<< 1 (+ 2 3))");
    assert_eq!(e("a < b << c"), "(< a (<< b c))");
    assert_eq!(e("a == b < c"), "(== a (< b c))");
    assert_eq!(e("a & b == c"), "(& a (== b c))");
    assert_eq!(e("a ^ b & c"), "(^ a (& b c))");
    assert_eq!(e("a | b ^ c"), "(| a (^ b c))");
    assert_eq!(e("a && b | c"), "(&& a (| b c))");
    assert_eq!(e("a || b && c"), "(|| a (&& b c))");
    assert_eq!(e("a || b ? c : d"), "(? (|| a b) c d)");
    assert_eq!(e("x = a ? b : c"), "(= x (? a b c))");
    assert_eq!(e("-a * b"), "(* (neg a) b)");
    assert_eq!(e("!a == b"), "(== (! a) b)");
    assert_eq!(e("~a & +b"), "(& (~ a) (pos b))");
    assert_eq!(e("- -a"), "(neg (neg a))");
    assert_eq!(e("!-~+a"), "(! (neg (~ (pos a))))");
    assert_eq!(e("(1 + 2) * 3"), "(* (+ 1 2) 3)");
    assert_eq!(e("a >= b != c <= d"), "(!= (>= a b) (<= c d))");
    assert_eq!(e("a > b >> c"), "(> a (>> b c))");
    assert_eq!(e("-x++"), "(neg (post++ x))");
    assert_eq!(e("a - --b"), "(- a (pre-- b))");
    assert_eq!(e("a---b"), "(- (post-- a) b)");
}

#[test]
fn associativity() {
    assert_eq!(e("a - b - c"), "(- (- a b) c)");
    assert_eq!(e("a / b / c"), "(/ (/ a b) c)");
    assert_eq!(e("a << b >> c"), "(>> (<< a b) c)");
    assert_eq!(e("a < b < c"), "(< (< a b) c)");
    assert_eq!(e("a || b || c"), "(|| (|| a b) c)");
    assert_eq!(e("a = b = c"), "(= a (= b c))");
    assert_eq!(e("a += b -= c"), "(+= a (-= b c))");
    assert_eq!(e("a ? b : c ? d : e"), "(? a b (? c d e))");
    assert_eq!(e("a ? b ? c : d : e"), "(? a (? b c d) e)");
    assert_eq!(e("a ? x = 1 : 2"), "(? a (= x 1) 2)");
}

#[test]
fn assignment_operators_and_incdec() {
    for op in [
        "=", "+=", "-=", "*=", "/=", "%=", "<<=", ">>=", "&=", "|=", "^=",
    ] {
        assert_eq!(e(&format!("x {op} 1")), format!("({op} x 1)"));
    }
    assert_eq!(e("++x"), "(pre++ x)");
    assert_eq!(e("--x"), "(pre-- x)");
    assert_eq!(e("x++"), "(post++ x)");
    assert_eq!(e("x--"), "(post-- x)");
    assert_eq!(e("(x) = 1"), "(= x 1)");
    assert_eq!(e("y = x++ + ++x"), "(= y (+ (post++ x) (pre++ x)))");
}

#[test]
fn calls_and_entry() {
    assert_eq!(e("f()"), "(call f)");
    assert_eq!(
        e("printf(\"%d %s\\n\", a + 1, execname())"),
        "(call printf \"%d %s\\n\" (+ a 1) (call execname))"
    );
    assert_eq!(e("x = @entry(state) + 1"), "(= x (+ (@entry state) 1))");
    assert_eq!(e("@entry(f(a, b))"), "(@entry (call f a b))");
}

#[test]
fn literals() {
    assert_eq!(e("x = 0x7f"), "(= x 127)");
    assert_eq!(e("x = 0X10"), "(= x 16)");
    assert_eq!(e("x = 017"), "(= x 15)");
    assert_eq!(e("x = 0"), "(= x 0)");
    assert_eq!(e("x = 9223372036854775807"), "(= x 9223372036854775807)");
    assert_eq!(e("x = -9223372036854775808"), "(= x -9223372036854775808)");
    assert_eq!(e("x = - 9223372036854775808"), "(= x -9223372036854775808)");
    assert_eq!(e("x = 0xffffffffffffffff"), "(= x -1)");
    assert_eq!(e("x = 0x8000000000000000"), "(= x -9223372036854775808)");
    assert_eq!(e("x = -1"), "(= x (neg 1))");
    assert_eq!(
        e("x = 1 - -9223372036854775808"),
        "(= x (- 1 -9223372036854775808))"
    );
    // The i64::MIN literal is one node spanning the minus sign and the digits.
    let s = ok("probe begin { -9223372036854775808 }");
    let StmtKind::Expr(ex) = &s.probes[0].body.stmts[0].kind else {
        panic!()
    };
    assert_eq!(ex.kind, ExprKind::Int(i64::MIN));
    assert_eq!(ex.span, Span::new(14, 34));
}

#[test]
fn string_escapes() {
    assert_eq!(
        e(r#"print("a\tb\n\"q\"\\ \101\x42\0")"#),
        format!("(call print {:?})", "a\tb\n\"q\"\\ AB\0")
    );
    assert_eq!(
        e(r#"print("é # not a comment // nor this")"#),
        "(call print \"é # not a comment // nor this\")"
    );
}

#[test]
fn comments_everywhere() {
    let s = ok(
        "# hash\n// slashes\n/* block\n comment */ global /* in */ a // end\n\
                probe begin { # c\n a = 1 /* x */ + 2 // y\n }\n/**/",
    );
    assert_eq!(s.globals.len(), 1);
    assert_eq!(body_of(&s, 0), "{(= a (+ 1 2))}");
}

fn body_of(s: &Script, i: usize) -> String {
    blk(&s.probes[i].body)
}

#[test]
fn every_statement_kind() {
    assert_eq!(body("{ a = 1; { b = 2 } }"), "{{(= a 1) {(= b 2)}}}");
    assert_eq!(body("if (a) b = 1"), "{(if a (= b 1))}");
    assert_eq!(body("if (a) b = 1; else c = 2"), "{(if a (= b 1) (= c 2))}");
    assert_eq!(body("if (a) b = 1 else c = 2"), "{(if a (= b 1) (= c 2))}");
    assert_eq!(
        body("if (a) if (b) x() else y()"),
        "{(if a (if b (call x) (call y)))}",
        "else binds to the nearest if"
    );
    assert_eq!(
        body("if (a) x() else if (b) y() else z()"),
        "{(if a (call x) (if b (call y) (call z)))}"
    );
    assert_eq!(body("while (i < 10) i++"), "{(while (< i 10) (post++ i))}");
    assert_eq!(
        body("while (1) { break; continue }"),
        "{(while 1 {break continue})}"
    );
    assert_eq!(
        body("for (i = 0; i < 3; i++) n += i"),
        "{(for (= i 0) (< i 3) (post++ i) (+= n i))}"
    );
    assert_eq!(body("for (;;) break"), "{(for _ _ _ break)}");
    assert_eq!(body("for (; i;) { }"), "{(for _ i _ {})}");
    assert_eq!(body("next"), "{next}");
    assert_eq!(body("next; next"), "{next next}");
    assert_eq!(body(";"), "{;}");
    assert_eq!(body("a = 1 b = 2"), "{(= a 1) (= b 2)}");
    assert_eq!(body("a = 1; ; b = 2;"), "{(= a 1) ; (= b 2)}");
    assert_eq!(body("if (x) ; else y = 1"), "{(if x ; (= y 1))}");
    let s = ok("function f(a) { return a + 1 } function g() { return } function h() { return; }");
    assert_eq!(blk(&s.functions[0].body), "{(return (+ a 1))}");
    assert_eq!(blk(&s.functions[1].body), "{(return)}");
    assert_eq!(blk(&s.functions[2].body), "{(return)}");
}

#[test]
fn globals_and_functions() {
    let s = ok(
        "global a, b = 3, c = -1\nglobal d;\nfunction f(x, y) { return x * y }\nfunction g() { }\n\
                function h:long(p:long) { return p }",
    );
    let names: Vec<_> = s.globals.iter().map(|g| g.name.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert!(s.globals[0].init.is_none());
    assert_eq!(sx(s.globals[1].init.as_ref().unwrap()), "3");
    assert_eq!(sx(s.globals[2].init.as_ref().unwrap()), "(neg 1)");
    assert_eq!(s.globals[1].span, Span::new(10, 15));
    assert_eq!(s.functions.len(), 3);
    let f = &s.functions[0];
    assert_eq!(f.name.name, "f");
    let params: Vec<_> = f.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(params, ["x", "y"]);
    assert!(s.functions[1].params.is_empty());
    assert_eq!(s.functions[2].params[0].name, "p");
    assert!(s.probes.is_empty());
}

fn point(p: &ProbePoint) -> String {
    p.components
        .iter()
        .map(|c| match &c.arg {
            None => c.name.name.clone(),
            Some(Literal::Int(v)) => format!("{}({v})", c.name.name),
            Some(Literal::Str(s)) => format!("{}({s:?})", c.name.name),
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[test]
fn probe_points() {
    let s = ok(r#"
probe begin { }
probe end { }
probe timer.ms(10) { }
probe timer.profile { }
probe timer.us(-5) { }
probe kernel.trace("sched:*") { }
probe kernel.function("vfs_read").call { }
probe kernel.function("vfs_read").return { }
probe process("/bin/ls").function("main").return { }
probe process("echo").function("*").call? { }
probe timer.s(0x10) { }
"#);
    let pts: Vec<String> = s.probes.iter().map(|p| point(&p.points[0].point)).collect();
    assert_eq!(
        pts,
        [
            "begin",
            "end",
            "timer.ms(10)",
            "timer.profile",
            "timer.us(-5)",
            "kernel.trace(\"sched:*\")",
            "kernel.function(\"vfs_read\").call",
            "kernel.function(\"vfs_read\").return",
            "process(\"/bin/ls\").function(\"main\").return",
            "process(\"echo\").function(\"*\").call",
            "timer.s(16)",
        ]
    );
    assert!(s.probes[..9].iter().all(|p| !p.points[0].optional));
    assert!(s.probes[9].points[0].optional);
    let c = &s.probes[8].points[0].point.components;
    assert_eq!(c.len(), 3);
    assert_eq!(c[0].name.name, "process");
    assert_eq!(c[0].arg, Some(Literal::Str("/bin/ls".into())));
    // Spans: the point, and each component with its argument.
    let text = "probe process(\"/x\").function(\"f\") { }";
    let s = ok(text);
    let p = &s.probes[0].points[0].point;
    assert_eq!(p.span, Span::new(6, 33));
    assert_eq!(p.components[1].span, Span::new(20, 33));
    assert_eq!(s.probes[0].span, Span::new(0, text.len()));
}

#[test]
fn several_components_with_conditions() {
    let s = ok(
        "global on\nprobe timer.profile, kernel.trace(\"*\")? if (on > 0), begin if (!on) { n++ }",
    );
    let p = &s.probes[0];
    assert_eq!(p.points.len(), 3);
    assert_eq!(point(&p.points[0].point), "timer.profile");
    assert!(p.points[0].cond.is_none());
    assert!(!p.points[0].optional);
    assert_eq!(point(&p.points[1].point), "kernel.trace(\"*\")");
    assert!(p.points[1].optional);
    assert_eq!(sx(p.points[1].cond.as_ref().unwrap()), "(> on 0)");
    assert_eq!(sx(p.points[2].cond.as_ref().unwrap()), "(! on)");
    assert_eq!(blk(&p.body), "{(post++ n)}");
    // The spec span includes `?` and the condition.
    let text = "probe begin? if (x) { }";
    let s = ok(text);
    assert_eq!(s.probes[0].points[0].span, Span::new(6, 19));
    assert_eq!(s.probes[0].points[0].point.span, Span::new(6, 11));
}

#[test]
fn spans_of_statements_and_expressions() {
    let text = "probe begin { x = (a + b) * 2; if (x) y-- }";
    let s = ok(text);
    let st0 = &s.probes[0].body.stmts[0];
    assert_eq!(
        &text[st0.span.lo as usize..st0.span.hi as usize],
        "x = (a + b) * 2"
    );
    let StmtKind::Expr(Expr {
        kind: ExprKind::Assign { value, target, .. },
        ..
    }) = &st0.kind
    else {
        panic!()
    };
    assert_eq!(&text[target.span.lo as usize..target.span.hi as usize], "x");
    assert_eq!(
        &text[value.span.lo as usize..value.span.hi as usize],
        "(a + b) * 2"
    );
    let st1 = &s.probes[0].body.stmts[1];
    assert_eq!(
        &text[st1.span.lo as usize..st1.span.hi as usize],
        "if (x) y--"
    );
    let b = &s.probes[0].body;
    assert_eq!(&text[b.span.lo as usize..b.span.hi as usize], &text[12..]);
}

/// The scripts of SystemTap's on-the-fly suites (docs/testing.md, "The on-the-fly ports") with
/// their parameters substituted.
fn suite_scripts() -> Vec<String> {
    let watchdog = "probe timer.s(360) { println(\"timed out\"); exit() }\n";
    let mut out = Vec::new();
    let hrtimer = |enabled: &str, timer: &str, max: &str, target: &str, toggler: &str| {
        format!(
            "global enabled = {enabled}, toggles = 0, hit = 0\n\
             probe {target} if (enabled) {{ if (hit) next; hit = 1; println(\"hit\") }}\n\
             probe {toggler} {{                               # the toggler\n\
               toggles++; hit = 0\n\
               if (toggles > {max}) exit()\n\
               else {{ println(\"toggling\")\n\
                      enabled = enabled ? 0 : (randint(2) == 0 ? -1 - randint(10000) : 1 + randint(10000)) }} }}\n{watchdog}",
        )
        .replace("TIMER", timer)
    };
    for enabled in ["0", "1", "0x7f", "-1000", "658", "-1", "123456789"] {
        out.push(hrtimer(
            enabled,
            "100000",
            "5",
            "timer.us(100000)",
            "timer.us(500000)",
        ));
    }
    out.push(hrtimer(
        "1",
        "1500",
        "2000",
        "timer.us(1500)",
        "timer.profile",
    ));
    out.push(hrtimer(
        "1",
        "100",
        "2000",
        "timer.us(100)",
        "timer.profile, kernel.trace(\"*\")",
    ));
    // tracepoint_onthefly
    for enabled in ["0", "1"] {
        out.push(format!(
            "global enabled = {enabled}, toggles = 0, hit = 0\n\
             probe kernel.trace(\"sched_process_fork\") if (enabled) {{ if (hit) next; hit = 1; println(\"hit\") }}\n\
             probe timer.us(500000) {{\n  toggles++; hit = 0\n  if (toggles > 5) exit()\n  \
             else {{ println(\"toggling\"); enabled = !enabled }} }}\n{watchdog}"
        ));
    }
    // kprobes_onthefly and uprobes_onthefly
    for (call, ret) in [
        (
            "kernel.function(\"vfs_read\").call",
            "kernel.function(\"vfs_read\").return",
        ),
        (
            "process(\"./prog\").function(\"foo\")",
            "process(\"./prog\").function(\"foo\").return",
        ),
        (
            "process(\"./prog\").function(\"foo\").call",
            "process(\"./prog\").function(\"foo\").return",
        ),
    ] {
        for enabled in ["0", "1"] {
            out.push(format!(
                "global state = {enabled}, toggles = 0\n\
                 probe {call} if (state > 0) {{\n  if (state == 3) {{ println(\"hit\"); state++ }} else if (state == 1) state++ }}\n\
                 probe {ret} if (state > 0) {{\n  if (state != @entry(state)) next\n  \
                 if (state == 4) {{ println(\"rethit\"); state++ }} else if (state == 2) state++ }}\n\
                 probe timer.us(500000) {{\n  if (state != 0 && state != 5) next\n  toggles++\n  \
                 if (toggles > 5) exit() else {{ println(\"toggling\"); state = !state }} }}\n{watchdog}"
            ));
        }
    }
    // affection: writers, self-affecting probes, several globals, writes through (nested) calls.
    out.push("probe timer.s(1) { println(\"a\") }\nprobe timer.s(2) { println(\"b\") }".into());
    out.push(
        "global var1 = 0\nprobe timer.s(1) if (var1) { }\nprobe timer.s(2) { var1 = 1 }".into(),
    );
    out.push("global var1 = 1\nprobe timer.s(1) if (var1) { var1 = 0 }".into());
    out.push(
        "global var1, var2\nprobe timer.s(1) if (var1 && var2) { }\nprobe timer.s(2) { var1 = 1 }\n\
         probe timer.s(3) { var2++ }"
            .into(),
    );
    out.push(
        "global a, b, c\nprobe timer.s(1) if (a) { b = 1 }\nprobe timer.s(2) if (b) { c = 1 }\n\
         probe timer.s(3) if (c || a) { a = 1; c-- }\nprobe timer.s(4) { a += 2 }"
            .into(),
    );
    out.push(
        "global g\nfunction set(v) { g = v }\nfunction outer(v) { set(v + 1); return 0 }\n\
         probe timer.s(1) if (g) { }\nprobe timer.s(2) { set(1) }\nprobe timer.s(3) { outer(2) }"
            .into(),
    );
    out
}

#[test]
fn onthefly_suite_scripts_parse_cleanly() {
    let scripts = suite_scripts();
    assert!(scripts.len() >= 20);
    for text in &scripts {
        let s = ok(text);
        assert!(!s.probes.is_empty());
        assert!(s
            .probes
            .iter()
            .any(|p| p.points[0].point.components[0].name.name == "timer"));
    }
    // Spot-check one: the hrtimer toggler's nested ternary.
    let s = ok(&scripts[0]);
    assert_eq!(s.globals.len(), 3);
    assert_eq!(s.probes.len(), 3);
    assert_eq!(sx(s.probes[0].points[0].cond.as_ref().unwrap()), "enabled");
    assert_eq!(
        body_of(&s, 1),
        "{(post++ toggles) (= hit 0) (if (> toggles 5) (call exit) {(call println \"toggling\") \
         (= enabled (? enabled 0 (? (== (call randint 2) 0) (- (neg 1) (call randint 10000)) \
         (+ 1 (call randint 10000)))))})}"
    );
    assert_eq!(point(&s.probes[1].points[0].point), "timer.us(500000)");
}

/// The error messages of `text`, each with its `line:col`.
fn errors(text: &str) -> Vec<String> {
    let file = SourceFile::new("t.stp", text);
    parse(&file)
        .diags
        .iter()
        .map(|d| {
            let (l, c) = file.line_col(d.span.lo);
            format!("{l}:{c} {}", d.message)
        })
        .collect()
}

#[test]
fn several_errors_are_reported_and_parsing_resumes() {
    let text = "probe begin {\n  x = (1 +\n  y = 2\n  if x { }\n  z = 3\n}\n\
                probe timer.ms(a) { }\n\
                probe end { w = = 1 }\n\
                global if\n\
                function f( { }\n\
                probe begin { ok = 1 }\n";
    let errs = errors(text);
    assert_eq!(
        errs,
        [
            // `x = (1 + y = 2`: the `)` was forgotten, and `1 + y` cannot be assigned.
            "2:8 left side of assignment must be a variable",
            "4:6 expected `(` after `if`, found identifier `x`",
            "7:16 probe point arguments must be literals, found identifier `a`",
            "8:17 expected an expression, found `=`",
            "9:8 expected a variable name after `global`, found keyword `if`",
            "10:13 expected a parameter name, found `{`",
        ]
    );
    // The valid parts are still in the tree.
    let file = SourceFile::new("t.stp", text);
    let parsed = parse(&file);
    assert!(parsed.has_errors());
    assert_eq!(parsed.script.probes.len(), 3);
    assert_eq!(blk(&parsed.script.probes[0].body), "{(= z 3)}");
    assert_eq!(blk(&parsed.script.probes[2].body), "{(= ok 1)}");
}

#[test]
fn unclosed_block_is_reported_once_and_the_next_probe_still_parses() {
    let text = "probe begin {\n  if (x) {\n    y = 1\n\nprobe end { z = 2 }\n";
    assert_eq!(
        errors(text),
        ["5:1 expected `}` to close the block, found keyword `probe`"]
    );
    let file = SourceFile::new("t.stp", text);
    let parsed = parse(&file);
    assert_eq!(parsed.script.probes.len(), 2);
    assert_eq!(blk(&parsed.script.probes[1].body), "{(= z 2)}");
    let hint = parsed.diags[0].hint.as_deref().unwrap_or_default();
    assert_eq!(hint, "the `{` at 2:10 is not closed");
}

#[test]
fn postfix_operators_bind_only_on_the_same_line() {
    assert_eq!(body("a = b\n++c"), "{(= a b) (pre++ c)}");
    assert_eq!(body("a = b\n--c"), "{(= a b) (pre-- c)}");
    assert_eq!(body("a = b++\nc"), "{(= a (post++ b)) c}");
    assert_eq!(
        errors("probe begin { x = 5++ }"),
        ["1:19 operand of `++` must be a variable or an array element"]
    );
}

#[test]
fn garbage_yields_errors_not_a_tree() {
    let errs = errors("\u{0}\u{1}probe ````");
    assert!(errs.len() >= 3, "{errs:?}");
    assert!(errors(&"`".repeat(10_000)).len() <= 51);
    assert_eq!(errors(""), Vec::<String>::new());
    assert!(ok("").probes.is_empty());
    assert!(ok("  # only a comment\n;;").probes.is_empty());
}

#[test]
fn arrays_statistics_and_foreach() {
    assert_eq!(e("a[1, x] = 2"), "(= a[1 x] 2)");
    assert_eq!(e("a[k] += 2"), "(+= a[k] 2)");
    assert_eq!(e("a[k]++"), "(post++ a[k])");
    assert_eq!(e("--a[k]"), "(pre-- a[k])");
    assert_eq!(e("x = a[k] + 1"), "(= x (+ a[k] 1))");
    // `in` binds looser than `|` and tighter than `&&`, as in SystemTap.
    assert_eq!(e("x = k + 1 in a && y"), "(= x (&& (in [(+ k 1)] a) y))");
    assert_eq!(e("x = [1, 2] in a"), "(= x (in [1 2] a))");
    assert_eq!(e("x = !(k in a)"), "(= x (! (in [k] a)))");
    assert_eq!(e("s <<< 5"), "(<<< s[] 5)");
    assert_eq!(e("t[pid()] <<< x * 2"), "(<<< t[(call pid)] (* x 2))");
    assert_eq!(
        e("x = @count(s) + @avg(t[1])"),
        "(= x (+ (@count s[]) (@avg t[1])))"
    );
    assert_eq!(e("print(@hist_log(s))"), "(call print (hist Log s[]))");
    assert_eq!(
        e("x = @variance(s) + @variance(t[1], 3)"),
        "(= x (+ (@variance s[]) (@variance t[1] 3)))"
    );
    assert_eq!(
        e("print(@hist_linear(t[1], -10, 10, 5))"),
        "(call print (hist Linear { lo: -10, hi: 10, step: 5 } t[1]))"
    );
    assert_eq!(e("delete a[1]"), "(delete a[1])");
    assert_eq!(e("delete a"), "(delete a)");
    assert_eq!(
        e("foreach (k in a) n++"),
        "(foreach [k] a None _ (post++ n))"
    );
    assert_eq!(
        e("foreach (v = [k1, k2-] in a limit 3) {}"),
        "(foreach v=[k1 k2] a Some((Some(1), true)) 3 {})"
    );
    assert_eq!(
        e("foreach (k in a+) {}"),
        "(foreach [k] a Some((None, false)) _ {})"
    );
    let s = ok("global a[100], b%, c%[5], d");
    let g: Vec<_> = s
        .globals
        .iter()
        .map(|g| (g.name.name.as_str(), g.size.is_some(), g.wrap))
        .collect();
    assert_eq!(
        g,
        [
            ("a", true, false),
            ("b", false, true),
            ("c", true, true),
            ("d", false, false)
        ]
    );
}

#[test]
fn a_point_pattern_alone_parses_with_wildcard_components() {
    use otf_script::parser::parse_point_pattern;
    let names = |text: &str| -> Vec<(String, Option<Literal>)> {
        parse_point_pattern(text)
            .unwrap()
            .components
            .into_iter()
            .map(|c| (c.name.name, c.arg))
            .collect()
    };
    assert_eq!(
        names("process(\"/bin/ls\").function(\"m*\").return"),
        [
            ("process".into(), Some(Literal::Str("/bin/ls".into()))),
            ("function".into(), Some(Literal::Str("m*".into()))),
            ("return".into(), None),
        ]
    );
    assert_eq!(
        names("timer.ms(5)")[1],
        ("ms".into(), Some(Literal::Int(5)))
    );
    assert_eq!(names("timer.*")[1], ("*".into(), None));
    // Not a lone point: the error names what is wrong.
    for (text, msg) in [
        ("kernel.trace(\"x", "unterminated"),
        ("a..b", "expected a probe point component name"),
        ("timer.ms(5) x", "expected the end of the probe point"),
        ("", "expected a probe point component name"),
    ] {
        let e = parse_point_pattern(text).unwrap_err();
        assert!(e.message.contains(msg), "{text}: {}", e.message);
    }
}
