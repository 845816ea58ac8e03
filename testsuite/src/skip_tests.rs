//! Tests of [`crate::skip`], kept out of `skip.rs`, which other crates' tests include.

use crate::skip::*;

#[test]
fn lines_round_trip() {
    for need in [Need::Root, Need::Tool, Need::Env] {
        let l = line(
            need,
            "invariants",
            "c_nothing: x (y)",
            "needs root (BPF: perf)\nmore",
        );
        assert_eq!(
            l,
            format!(
                "otf-test-skip: {} invariants::c_nothing: x (y): needs root (BPF: perf) more\n",
                need.word()
            )
        );
        assert_eq!(
            parse(&l),
            Some(Skipped {
                need,
                // The test name ends at the first ": ".
                test: "invariants::c_nothing".to_string(),
                why: "x (y): needs root (BPF: perf) more".to_string(),
            })
        );
    }
    assert_eq!(parse("note: something else"), None);
    assert_eq!(parse("otf-test-skip: maybe t::x: why"), None);
}

#[test]
fn binary_names_lose_cargos_hash() {
    assert_eq!(binary_name("invariants-0123456789abcdef"), "invariants");
    assert_eq!(
        binary_name("kprobes_onthefly-9017c5f7f89cd1de"),
        "kprobes_onthefly"
    );
    assert_eq!(
        binary_name("otf_testsuite-88ef2b23fc647e89"),
        "otf_testsuite"
    );
    assert_eq!(binary_name("my-tool"), "my-tool");
    assert_eq!(binary_name("plain"), "plain");
}
