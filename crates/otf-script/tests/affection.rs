//! Affection analysis: the cases of SystemTap's `affection.exp` (docs/testing.md, "Affection"),
//! with the exact pair sets "unit I can affect the condition of unit J".

use otf_script::affection::{analyse, Affection};
use otf_script::diag::SourceFile;

fn affection(src: &str) -> Affection {
    let file = SourceFile::new("t.stp", src);
    let parsed = otf_script::parser::parse(&file);
    assert!(!parsed.has_errors(), "{:?}", parsed.diags);
    let checked = otf_script::sema::check(&file, &parsed.script);
    assert!(!checked.has_errors(), "{:?}", checked.diags);
    let a = analyse(&checked);
    // The top-level pipeline agrees.
    let c = otf_script::compile_source(&file).expect("compiles");
    assert_eq!(c.affection, a);
    for (i, u) in c.script.units.iter().enumerate() {
        assert_eq!(u.reeval, a.reeval[i]);
    }
    a
}

fn pairs(src: &str) -> Vec<(usize, usize)> {
    affection(src).pairs
}

#[test]
fn no_condition_no_pairs() {
    assert_eq!(
        pairs("global a\nprobe timer.s(1) { a = 1 }\nprobe timer.s(2) { a = 2; println(a) }"),
        vec![]
    );
}

#[test]
fn condition_without_writer() {
    assert_eq!(
        pairs("global a\nprobe timer.s(1) if (a) { println(a) }\nprobe timer.s(2) { x = a }"),
        vec![]
    );
}

#[test]
fn a_writer_affects_another_probe() {
    let a = affection(
        "global a\nprobe timer.s(1) if (a) { println(\"x\") }\nprobe timer.s(2) { a = !a }",
    );
    assert_eq!(a.pairs, vec![(1, 0)]);
    assert_eq!(a.reeval, vec![vec![], vec![0]]);
    assert!(a.affects(1, 0));
    assert!(!a.affects(0, 1));
}

#[test]
fn a_probe_affects_itself() {
    assert_eq!(
        pairs("global a = 3\nprobe timer.s(1) if (a > 0) { a-- }"),
        vec![(0, 0)]
    );
}

#[test]
fn increments_and_compound_assignments_are_writes() {
    assert_eq!(
        pairs(
            "global a, b, c\nprobe timer.s(1) if (a || b || c) {}\nprobe timer.s(2) { a++ }\nprobe timer.s(3) { b += 1 }\nprobe timer.s(4) { --c }\nprobe timer.s(5) { x = a + b + c }"
        ),
        vec![(1, 0), (2, 0), (3, 0)]
    );
}

#[test]
fn multi_global_conditions() {
    // Writing either global re-evaluates the whole `var1 && var2` condition.
    assert_eq!(
        pairs(
            "global var1, var2\nprobe timer.s(1) if (var1 && var2) { println(\"x\") }\nprobe timer.s(2) { var1 = 1 }\nprobe timer.s(3) { var2 = 1 }"
        ),
        vec![(1, 0), (2, 0)]
    );
}

#[test]
fn several_writers_and_readers() {
    let src = "global a, b, c
probe timer.s(1) if (a) { b = 1 }
probe timer.s(2) if (b) { c = 1 }
probe timer.s(3) if (c) { a = 1; b = 0 }
probe timer.s(4) if (a && c) { }
probe timer.s(5) { c = 0 }";
    assert_eq!(
        pairs(src),
        vec![
            (0, 1),
            (1, 2),
            (1, 3),
            (2, 0),
            (2, 1),
            (2, 3),
            (4, 2),
            (4, 3)
        ]
    );
}

#[test]
fn writes_through_a_function() {
    assert_eq!(
        pairs(
            "global a\nfunction set() { a = 1 }\nprobe timer.s(1) if (a) {}\nprobe timer.s(2) { set() }\nprobe timer.s(3) { x = 1 }"
        ),
        vec![(1, 0)]
    );
}

#[test]
fn writes_through_nested_functions() {
    assert_eq!(
        pairs(
            "global a, b
function inner() { b = 1 }
function middle() { inner() }
function outer() { a = 0; middle() }
probe timer.s(1) if (b) {}
probe timer.s(2) { outer() }
probe timer.s(3) if (a) { middle() }"
        ),
        vec![(1, 0), (1, 2), (2, 0)]
    );
}

#[test]
fn function_that_only_reads_does_not_affect() {
    assert_eq!(
        pairs("global a\nfunction get() { return a }\nprobe timer.s(1) if (a) {}\nprobe timer.s(2) { x = get() }"),
        vec![]
    );
}

#[test]
fn parameters_and_locals_are_not_globals() {
    assert_eq!(
        pairs("global a\nfunction f(a) { a = 5; return a }\nprobe timer.s(1) if (a) {}\nprobe timer.s(2) { x = f(1) }"),
        vec![]
    );
}

#[test]
fn components_are_separate_units() {
    // Probe 0 has two components (units 0 and 1), only the second conditional; probe 1
    // (unit 2) writes `a`. The shared body of probe 0 writes `b`, read by unit 2's
    // condition, so both units 0 and 1 affect unit 2.
    let a = affection(
        "global a, b\nprobe timer.s(1), timer.s(2) if (a) { b = 1 }\nprobe timer.s(3) if (b) { a = 1 }",
    );
    assert_eq!(a.pairs, vec![(0, 2), (1, 2), (2, 1)]);
    assert_eq!(a.reeval, vec![vec![2], vec![2], vec![1]]);
}
