//! End to end: script text → parse → sema → affection → bytecode → the reference VM.

use otf_script::bytecode::{Insn, Op, MAX_STACK};
use otf_script::compile::disassemble;
use otf_script::diag::SourceFile;
use otf_script::vm::{self, End, FixedHit, VmError};
use otf_script::{compile_source, format, Compiled};

fn compile(src: &str) -> Compiled {
    let file = SourceFile::new("t.stp", src);
    match compile_source(&file) {
        Ok(c) => c,
        Err(d) => panic!(
            "compile failed:\n{}",
            otf_script::diag::render_all(&d, &file)
        ),
    }
}

fn compile_err(src: &str) -> String {
    let file = SourceFile::new("t.stp", src);
    match compile_source(&file) {
        Ok(_) => panic!("compiled: {src}"),
        Err(d) => otf_script::diag::render_all(&d, &file),
    }
}

/// A script with its globals, run unit by unit.
struct Machine {
    c: Compiled,
    globals: Vec<i64>,
    hit: FixedHit,
    out: String,
    exit: bool,
}

impl Machine {
    fn new(src: &str) -> Machine {
        let c = compile(src);
        let globals = c.script.globals.iter().map(|g| g.init).collect();
        Machine {
            c,
            globals,
            hit: FixedHit {
                pid: 77,
                ..FixedHit::default()
            },
            out: String::new(),
            exit: false,
        }
    }

    fn global(&self, name: &str) -> i64 {
        let i = self
            .c
            .script
            .globals
            .iter()
            .position(|g| g.name == name)
            .unwrap_or_else(|| panic!("no global {name}"));
        self.globals[i]
    }

    fn run_range(&mut self, unit: usize, r: std::ops::Range<u32>) -> Result<End, VmError> {
        let s = &self.c.script;
        let pp = s.units[unit].point.to_string();
        let mut recs = Vec::new();
        let res = vm::run(
            &s.code,
            r.start as usize,
            &mut self.globals,
            &mut self.hit,
            &mut |rec| recs.push(rec),
        );
        for rec in recs {
            self.out.push_str(&format::render(
                &s.formats[rec.fmt as usize],
                &rec.args,
                "stap",
                &pp,
                "foo",
            ));
        }
        let o = res?;
        self.exit |= o.exit_requested;
        Ok(o.end)
    }

    /// Run unit `u`'s body.
    fn run(&mut self, u: usize) -> Result<End, VmError> {
        let r = self.c.script.units[u].body.clone();
        self.run_range(u, r)
    }

    /// Run unit `u`'s condition program.
    fn cond(&mut self, u: usize) -> i64 {
        let r = self.c.script.units[u].cond.clone().expect("no condition");
        match self.run_range(u, r) {
            Ok(End::Ret(v)) => v,
            other => panic!("condition ended with {other:?}"),
        }
    }
}

fn output_of(src: &str) -> String {
    let mut m = Machine::new(src);
    assert_eq!(m.run(0), Ok(End::Next));
    m.out
}

#[test]
fn arithmetic_and_precedence() {
    let out = output_of(
        "probe begin { println(1 + 2 * 3, \" \", (1 + 2) * 3, \" \", 7 / 2, \" \", -7 % 3, \" \", 1 << 4 >> 2, \" \", 6 & 3 | 8 ^ 1, \" \", ~0, \" \", -(-5), \" \", +4, \" \", !0, !5) }",
    );
    assert_eq!(out, "7 9 3 -1 4 11 -1 5 4 10\n");
}

#[test]
fn comparisons() {
    let out = output_of(
        "probe begin { println(1 < 2, 2 < 1, 2 <= 2, 3 > 2, 2 >= 3, 4 == 4, 4 != 4, -1 < 0) }",
    );
    assert_eq!(out, "10110101\n");
}

#[test]
fn wrapping_arithmetic_end_to_end() {
    let out = output_of(
        "global m = -9223372036854775808\nprobe begin { println(9223372036854775807 + 1, \" \", m / -1, \" \", m % -1, \" \", -m, \" \", 1 << 65) }",
    );
    assert_eq!(
        out,
        "-9223372036854775808 -9223372036854775808 0 -9223372036854775808 2\n"
    );
}

#[test]
fn globals_initialised_and_assignment_ops() {
    let mut m = Machine::new(
        "global a = 10, b = -3, c\nprobe begin { a += 5; a -= 1; a *= 2; a /= 4; a %= 4; b <<= 2; b >>= 1; c = 12; c &= 10; c |= 1; c ^= 15 }",
    );
    assert_eq!(m.globals, vec![10, -3, 0]);
    m.run(0).unwrap();
    assert_eq!(m.global("a"), ((10 + 5 - 1) * 2 / 4) % 4);
    assert_eq!(m.global("b"), -6);
    assert_eq!(m.global("c"), ((12 & 10) | 1) ^ 15);
}

#[test]
fn increments_and_decrements() {
    let out = output_of(
        "global g = 5\nprobe begin { x = 1; println(x++, \" \", x, \" \", ++x, \" \", x--, \" \", --x, \" \", g++, \" \", ++g, \" \", g) }",
    );
    assert_eq!(out, "1 2 3 3 1 5 7 7\n");
}

#[test]
fn short_circuit_and_or() {
    let mut m = Machine::new(
        "global n\nfunction bump() { n++; return 1 }\nprobe begin { a = 0 && bump(); b = 1 || bump(); c = 1 && bump(); d = 0 || bump(); e = 0 || 0; println(a, b, c, d, e, \" \", n, \" \", 5 && 7, 0 || 3) }",
    );
    m.run(0).unwrap();
    assert_eq!(m.out, "01110 2 11\n");
    assert_eq!(m.global("n"), 2);
}

#[test]
fn ternary_and_if_else() {
    let out = output_of(
        "probe begin { x = 3; y = x > 2 ? 10 : 20; if (x == 3) z = 1 else z = 2; if (x != 3) w = 1 else if (x == 3) w = 7; println(y, \" \", z, \" \", w, \" \", 0 ? 1 : 0 ? 2 : 3) }",
    );
    assert_eq!(out, "10 1 7 3\n");
}

#[test]
fn loops_break_continue() {
    let out = output_of(
        "probe begin { s = 0; for (i = 0; i < 10; i++) { if (i == 2) continue; if (i == 6) break; s += i }
          n = 0; while (1) { n++; if (n >= 5) break }
          k = 0; j = 0; while (j < 10) { j++; if (j % 2) continue; k++ }
          for (;;) { break }
          println(s, \" \", n, \" \", k) }",
    );
    assert_eq!(out, format!("{} 5 5\n", 1 + 3 + 4 + 5));
}

#[test]
fn next_leaves_the_hit() {
    let mut m = Machine::new("global a\nprobe begin { a = 1; next; a = 2 }");
    assert_eq!(m.run(0), Ok(End::Next));
    assert_eq!(m.global("a"), 1);
}

#[test]
fn functions_are_inlined_with_fresh_locals() {
    let out = output_of(
        "function sq(x) { return x * x }
         function sum3(a, b, c) { t = a + b; return t + c }
         function counter() { k++; return k }
         function noret(x) { y = x }
         probe begin { println(sq(7), \" \", sum3(1, 2, 3), \" \", sq(sq(2)), \" \", counter(), counter(), \" \", noret(4)) }",
    );
    assert_eq!(out, "49 6 16 11 0\n");
}

#[test]
fn nested_calls_and_early_return() {
    let out = output_of(
        "function abs(x) { if (x < 0) return -x; return x }
         function f(x) { for (i = 0; i < 100; i++) { if (i == x) return abs(-i) * 10 } return -1 }
         function g(x) { return f(x) + f(x + 1) }
         probe begin { println(g(3), \" \", f(1000), \" \", 1 + abs(-2) * 3) }",
    );
    assert_eq!(out, "70 -1 7\n");
}

#[test]
fn parameters_shadow_globals_and_globals_are_shared() {
    let mut m = Machine::new(
        "global x = 100, seen
         function f(x) { seen = x; return x + 1 }
         probe begin { println(f(5), \" \", x, \" \", seen) }",
    );
    m.run(0).unwrap();
    assert_eq!(m.out, "6 100 5\n");
}

#[test]
fn function_writes_to_globals() {
    let mut m = Machine::new(
        "global a, b
         function inner() { b = 2 }
         function outer() { a = 1; inner() }
         probe begin { outer() }",
    );
    m.run(0).unwrap();
    assert_eq!((m.global("a"), m.global("b")), (1, 2));
}

#[test]
fn printf_conversions() {
    let out = output_of(
        "probe begin { printf(\"%d|%5d|%-5d|%05d|%i|%u|%x|%X|%o|%c|%%|%s|%-6s|%3s|%s\\n\", -42, 42, 42, -42, 7, -1, 255, 255, 8, 65, \"str\", execname(), \"ab\", pp()) }",
    );
    assert_eq!(
        out,
        "-42|   42|42   |-0042|7|18446744073709551615|ff|FF|10|A|%|str|stap  | ab|begin\n"
    );
}

#[test]
fn printf_systemtap_conversions() {
    let out = output_of(
        "probe begin { printf(\"%p|%p|%#x|%#X|%#o|%#x|%+d|% d|%.3d|%08.3d|%-#10x|%lld|%llx|%lu|%li|%lX\\n\", \
         0, 0x1234abcd, 255, 255, 8, 0, 5, 5, 7, 5, 255, -1, -1, -1, 3, 0xabc) }",
    );
    assert_eq!(
        out,
        "0x0|0x1234abcd|0xff|0XFF|010|0x0|+5| 5|007|00000005|0xff      |-1|ffffffffffffffff|18446744073709551615|3|ABC\n"
    );
    // `*` widths and `.*` precisions come from the arguments before the value.
    let out = output_of(
        "probe begin { w = 4; printf(\"%*d|%-*d|%*d|%.*d|%*.*x|%d\\n\", w, 42, w, 42, -3, 42, 3, 7, 6, 4, 255, 9) }",
    );
    assert_eq!(out, "  42|42  |42|007|  00ff|9\n");
    let out = output_of(
        "probe begin { printf(\"%.3s|%-6.2s|%*s|%.*s|%5s|%.0s|%c%#c\\n\", \
         \"abcdef\", execname(), 4, \"ab\", 2, pp(), \"x\", \"gone\", 65, 10) }",
    );
    assert_eq!(out, "abc|st    |  ab|be|    x||A\\n\n");
}

#[test]
fn dynamic_widths_are_record_arguments() {
    let c = compile("probe begin { printf(\"%*d %.*s %d\\n\", 3, 1, 2, execname(), 5) }");
    assert_eq!(c.script.formats[0].nargs, 4, "{:?}", c.script.formats);
}

#[test]
fn print_and_println_concatenate() {
    let out = output_of(
        "probe begin { print(1, \"a\", 2); print(\"\\n\"); println(); println(\"x\", execname(), 5, pp()) }",
    );
    assert_eq!(out, "1a2\n\nxstap5begin\n");
}

#[test]
fn probefunc_in_function_probes() {
    let mut m = Machine::new(
        "probe process(\"/bin/true\").function(\"main\") { println(probefunc(), \" \", pp()) }",
    );
    m.run(0).unwrap();
    assert_eq!(m.out, "foo process(\"/bin/true\").function(\"main\")\n");
}

#[test]
fn formats_are_shared() {
    let c = compile("probe begin { println(1); println(2); printf(\"%d\\n\", 3) }");
    assert_eq!(c.script.formats.len(), 1, "{:?}", c.script.formats);
}

#[test]
fn context_builtins() {
    let mut m = Machine::new(
        "probe begin { println(pid(), \" \", tid(), \" \", ppid(), \" \", uid(), \" \", cpu(), \" \", target(), \" \", gettimeofday_ns(), \" \", gettimeofday_us(), \" \", gettimeofday_ms(), \" \", gettimeofday_s()) }",
    );
    m.hit = FixedHit {
        pid: 1,
        tid: 2,
        ppid: 3,
        uid: 4,
        cpu: 5,
        target: 6,
        time_ns: 1_234_567_891_234,
        ..FixedHit::default()
    };
    m.run(0).unwrap();
    assert_eq!(m.out, "1 2 3 4 5 6 1234567891234 1234567891 1234567 1234\n");
}

#[test]
fn function_arguments_and_returnval() {
    let mut m = Machine::new(
        "global r
         probe process(\"/bin/true\").function(\"f\").return { r = returnval() }
         probe process(\"/bin/true\").function(\"f\") { println(int_arg(1), \" \", long_arg(1), \" \", ulong_arg(2), \" \", pointer_arg(2)) }",
    );
    m.hit.retval = 99;
    m.hit.args = vec![0x1_ffff_ffff, 12];
    m.run(0).unwrap();
    assert_eq!(m.global("r"), 99);
    m.run(1).unwrap();
    assert_eq!(m.out, "-1 8589934591 12 12\n");
}

#[test]
fn randint_and_exit() {
    let mut m = Machine::new("global r\nprobe begin { r = randint(10); exit() }");
    assert_eq!(m.run(0), Ok(End::Next));
    assert!((0..10).contains(&m.global("r")));
    assert!(m.exit);
}

#[test]
fn runtime_errors_in_scripts() {
    let mut m = Machine::new("global z\nprobe begin { x = 1 / z }");
    assert!(matches!(m.run(0), Err(VmError::DivisionByZero { .. })));
    let mut m = Machine::new("global z\nprobe begin { x = 1 % z }");
    assert!(matches!(m.run(0), Err(VmError::DivisionByZero { .. })));
    let mut m = Machine::new("probe begin { while (1) { } }");
    assert!(matches!(m.run(0), Err(VmError::MaxAction { .. })));
    let mut m = Machine::new("global z\nprobe begin { x = randint(z) }");
    assert!(matches!(m.run(0), Err(VmError::InvalidRandint { .. })));
    // tapset/string.stp: STAP_ERROR("Position out of bounds") (PR15044).
    let mut m = Machine::new("global z = 2\nprobe begin { x = stringat(\"ab\", z) }");
    let e = m.run(0).expect_err("stringat out of bounds");
    assert!(matches!(e, VmError::StrFn { .. }), "{e:?}");
    assert_eq!(e.to_string(), "Position out of bounds");
}

#[test]
fn inlined_condition_skips_the_body() {
    let mut m = Machine::new("global on, n\nprobe timer.ms(10) if (on) { n++ }");
    assert_eq!(m.run(0), Ok(End::Skip));
    assert_eq!(m.global("n"), 0);
    assert_eq!(m.cond(0), 0);
    m.globals[0] = -5;
    assert_eq!(m.cond(0), 1);
    assert_eq!(m.run(0), Ok(End::Next));
    assert_eq!(m.global("n"), 1);
}

#[test]
fn budget_condition_runs_exactly_budget_times() {
    let mut m =
        Machine::new("global budget = 3, n\nprobe timer.us(100) if (budget > 0) { budget--; n++ }");
    let mut ran = 0;
    for _ in 0..10 {
        if m.run(0) == Ok(End::Next) {
            ran += 1;
        }
    }
    assert_eq!((ran, m.global("n"), m.global("budget")), (3, 3, 0));
}

#[test]
fn each_component_has_its_own_condition() {
    let mut m = Machine::new(
        "global a, b, n\nprobe timer.ms(1) if (a), timer.ms(2) if (b > 1), timer.ms(3) { n++ }",
    );
    assert_eq!(m.c.script.units.len(), 3);
    m.globals[1] = 2;
    assert_eq!(m.run(0), Ok(End::Skip));
    assert_eq!(m.run(1), Ok(End::Next));
    assert_eq!(m.run(2), Ok(End::Next));
    assert_eq!(m.global("n"), 2);
    assert!(m.c.script.units[2].cond.is_none());
    assert_eq!(m.cond(1), 1);
    assert_eq!(m.cond(0), 0);
}

#[test]
fn entry_programs_save_and_the_return_body_loads() {
    let mut m = Machine::new(
        "global state = 1, seen
         probe process(\"/bin/true\").function(\"foo\").return if (state > 0) {
           if (state != @entry(state)) next
           seen = @entry(long_arg(1)) + 1000 * @entry(state) }",
    );
    let u = &m.c.script.units[0];
    let entry = u.entry.clone().expect("entry program");
    // At entry: state = 1, arg 1 = 7.
    m.hit.args = vec![7];
    assert_eq!(m.run_range(0, entry), Ok(End::Next));
    assert_eq!(&m.hit.entry[..3], &[1, 7, 1]);
    // At return: state unchanged.
    m.hit.args = vec![];
    assert_eq!(m.run(0), Ok(End::Next));
    assert_eq!(m.global("seen"), 1007);
    // State changed between entry and return: `next` before the write.
    m.globals[0] = 2;
    m.globals[1] = 0;
    assert_eq!(m.run(0), Ok(End::Next));
    assert_eq!(m.global("seen"), 0);
}

#[test]
fn units_record_accesses_locks_and_reeval() {
    let c = compile(
        "global a, b, c, d
         function w() { c = 1 }
         probe timer.s(1) if (a) { b = d; w() }
         probe timer.s(2) if (c && b) { x = 1 }",
    );
    let u0 = &c.script.units[0];
    let u1 = &c.script.units[1];
    assert_eq!(u0.globals_read, vec![0, 3]);
    assert_eq!(u0.globals_written, vec![1, 2]);
    assert_eq!(u0.reeval, vec![1]);
    // a, b, c, d from the body and its condition, plus b and c read by unit 1's condition.
    assert_eq!(u0.lock_mask, 0b1111);
    assert_eq!(u1.globals_read, vec![1, 2]);
    assert!(u1.globals_written.is_empty());
    assert_eq!(u1.lock_mask, 0b0110);
    assert_eq!(u1.nlocals, 1);
    assert!(u1.reeval.is_empty());
}

#[test]
fn lock_stripes_wrap_at_64() {
    let mut src = String::from("global ");
    src.push_str(
        &(0..70)
            .map(|i| format!("g{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    src.push_str("\nprobe begin { g65 = g1 }");
    let c = compile(&src);
    assert_eq!(c.script.units[0].lock_mask, 0b10);
}

#[test]
fn every_program_verifies() {
    let c = compile(
        "global a, b
         function f(x) { while (x > 0) { if (x == 3) return 9; x-- } return a ? 1 : 2 }
         probe process(\"/bin/true\").function(\"f\").return if (a > 0 || b) { b = f(@entry(a)) + (a && b) }
         probe begin { printf(\"%d %s\\n\", f(4), execname()) }",
    );
    for u in &c.script.units {
        for r in [Some(u.body.clone()), u.cond.clone(), u.entry.clone()]
            .into_iter()
            .flatten()
        {
            assert!(vm::verify(&c.script.code, r.start as usize..r.end as usize).is_ok());
        }
        assert_eq!(c.script.code[u.body.end as usize - 1], Insn::op(Op::Next));
        if let Some(r) = &u.cond {
            assert_eq!(c.script.code[r.end as usize - 1], Insn::op(Op::Ret));
        }
    }
}

#[test]
fn stack_depth_limit_is_a_compile_error() {
    // a + (a + (a + ...)) nests right operands: depth grows by one per level.
    let mut e = String::from("1");
    for _ in 0..MAX_STACK {
        e = format!("1 + ({e})");
    }
    let err = compile_err(&format!("probe begin {{ x = {e} }}"));
    assert!(err.contains("more than 32 operand stack slots"), "{err}");
    // Exactly at the limit compiles: MAX_STACK - 1 nested levels use MAX_STACK slots.
    let mut e = String::from("1");
    for _ in 0..MAX_STACK - 1 {
        e = format!("1 + ({e})");
    }
    let c = compile(&format!("probe begin {{ x = {e} }}"));
    let u = &c.script.units[0];
    let depth = vm::verify(&c.script.code, u.body.start as usize..u.body.end as usize).unwrap();
    assert_eq!(depth, MAX_STACK);
}

#[test]
fn too_many_output_arguments() {
    let args = (0..17)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let err = compile_err(&format!("probe begin {{ println({args}) }}"));
    assert!(err.contains("too many integer arguments"), "{err}");
    let args = (0..16)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    compile(&format!("probe begin {{ println({args}) }}"));
}

#[test]
fn memory_dumps_must_fit_the_output_record() {
    // Nine dumps of 128 bytes, nine addresses and a string value: 9·128 + 9·8 + 128 = 1352
    // bytes.
    let src = format!(
        "probe begin {{ s = \"x\"; printf(\"%s{}\", s{}) }}",
        "%.128m".repeat(9),
        ", 1".repeat(9)
    );
    let err = compile_err(&src);
    assert!(
        err.contains("too much output in one printf: 72 bytes of values, 128 of strings and 1152 of memory dumps exceed the 1280-byte output record"),
        "{err}"
    );
    assert!(err.contains("t.stp:1:24"), "{err}");
    // Eight of them and a string fit (8·128 + 8·8 + 128 = 1216).
    compile(&format!(
        "probe begin {{ s = \"x\"; printf(\"%s{}\", s{}) }}",
        "%.128m".repeat(8),
        ", 1".repeat(8)
    ));
}

#[test]
fn too_many_locals_through_inlining() {
    let locals = (0..40)
        .map(|i| format!("v{i} = {i}"))
        .collect::<Vec<_>>()
        .join("; ");
    let src = format!(
        "function f() {{ {locals}; return v1 }}\nfunction g() {{ {locals}; return f() }}\nprobe begin {{ x = g() }}"
    );
    let err = compile_err(&src);
    assert!(err.contains("needs more than 64 local slots"), "{err}");
}

#[test]
fn code_size_limit() {
    // Each level doubles the inlined code.
    let mut src = String::from("function f0(x) { return x + 1 + 2 + 3 + 4 + 5 + 6 + 7 }\n");
    for i in 1..20 {
        src.push_str(&format!(
            "function f{i}(x) {{ return f{}(x) + f{}(x) }}\n",
            i - 1,
            i - 1
        ));
    }
    src.push_str("probe begin { x = f19(1) }");
    let err = compile_err(&src);
    assert!(err.contains("more than 65536 instructions"), "{err}");
}

#[test]
fn disassembly_snapshot() {
    let c = compile(
        "global n, on = 1
         function twice(x) { return x * 2 }
         probe timer.ms(100) if (on) { n += twice(3); if (n > 10) { printf(\"n=%d\\n\", n); exit() } }",
    );
    insta::assert_snapshot!(disassemble(&c.script.code));
}

#[test]
fn long_call_chains_compile_or_fail_cleanly() {
    // 60 chained functions with a parameter each (one live slot per level): fine.
    let mut src = String::new();
    for i in 0..60 {
        src.push_str(&format!(
            "function f{i}(x) {{ return f{}(x) + 1 }}\n",
            i + 1
        ));
    }
    src.push_str("function f60(x) { return x }\nprobe begin { println(f0(5)) }");
    let mut m = Machine::new(&src);
    m.run(0).unwrap();
    assert_eq!(m.out, "65\n");

    // 2000 chained functions without locals around a deeply nested expression: a clean
    // error, no stack overflow.
    let mut src = String::new();
    for i in 0..2000 {
        src.push_str(&format!("function f{i}() {{ return f{}() + 1 }}\n", i + 1));
    }
    let deep = format!("{}1{}", "(".repeat(60), " + 1)".repeat(60));
    src.push_str(&format!(
        "function f2000() {{ return {deep} }}\nprobe begin {{ println(f0()) }}"
    ));
    let err = compile_err(&src);
    assert!(err.contains("nests more than 1000 levels deep"), "{err}");
}

#[test]
fn warnings_are_returned_with_the_compiled_script() {
    let c = compile("probe begin { x = y }");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0]
        .message
        .contains("`y` is read but never assigned"));
    let file = SourceFile::new("t.stp", "probe begin { x = y; z = foo() }");
    let d = otf_script::check_source(&file);
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(!d[0].is_error() && d[1].is_error());
}

#[test]
fn parse_errors_stop_the_pipeline() {
    let err = compile_err("probe begin { x = }");
    assert!(err.starts_with("error:"), "{err}");
}

/// `printf` of a begin body run by the reference VM, as bytes, or its error.
fn printed_bytes(src: &str) -> Result<Vec<u8>, VmError> {
    let c = compile(src).script;
    let mut hit = FixedHit {
        strings: c.strings.clone(),
        ..FixedHit::default()
    };
    let mut globals: Vec<i64> = c.globals.iter().map(|g| g.init).collect();
    let mut out = Vec::new();
    vm::run(
        &c.code,
        c.units[0].body.start as usize,
        &mut globals,
        &mut hit,
        &mut |r| {
            out.extend(format::render_bytes(
                &c.formats[r.fmt as usize],
                &r.args,
                "",
                "",
                "",
            ))
        },
    )?;
    Ok(out)
}

#[test]
fn memory_dumps_in_user_space() {
    // `%#m` reads this process's memory (there is no probed task in user space).
    let buf: &'static [u8] = b"ab\0\xfe-tail";
    let p = buf.as_ptr() as u64;
    let got = printed_bytes(&format!(
        "probe begin {{ printf(\"[%#.4m][%#.*M][%-#5M][%d]\\n\", {p}, 3, {p}, {p} + 1, 7) }}"
    ));
    assert_eq!(got, Ok(b"[ab\0\xfe][616200][62   ][7]\n".to_vec()));
    // The Out names its memory plan, a string literal.
    let c = compile("probe begin { printf(\"%d%.3m\", 1, 2) }").script;
    let listing = disassemble(&c.code);
    let out = listing
        .lines()
        .find(|l| l.contains("Out fmt0"))
        .unwrap_or_else(|| panic!("{listing}"));
    let lit: usize = out
        .split("mem=s")
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(out.contains(" n=2 "), "{out}");
    assert_eq!(c.strings[lit], "k,1,2,c3");
    // Kernel memory cannot be read from user space; user memory at 0 cannot be read.
    for (f, addr) in [("%.2m", p), ("%#M", 0)] {
        let got = printed_bytes(&format!(
            "probe begin {{ printf(\"x\"); printf(\"{f}\", {addr}); printf(\"y\") }}"
        ));
        let Err(e) = got else { panic!("{f}: {got:?}") };
        assert_eq!(e, VmError::MemoryFault { pc: e.pc(), addr }, "{f}");
        assert_eq!(
            e.to_string(),
            format!("read fault [man error::fault] at {addr:#x}")
        );
    }
}
