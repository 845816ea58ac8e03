//! A program the kernel's verifier refuses is reported as an otf bug that names the probe,
//! with the verifier log kept in a file (root).

use otf_bpf::{LoadOptions, ProbeSlot, ProgKind, Runtime, RuntimeImage};
use otf_codegen::insn::{Insn, DW, R1, R8};
use otf_script::bytecode::{Insn as BInsn, Op};

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

/// Replace the first instruction generated for pidx 0 with a read far past the frame.
fn out_of_bounds(p: &mut otf_codegen::Program) {
    let at = p.owners.iter().find(|&&(_, o)| o == 0).expect("pidx 0").0;
    p.insns[at] = Insn::ldx(DW, R1, R8, 30000);
}

#[test]
fn a_refused_program_is_an_otf_bug_with_its_log() {
    if !skip::need_root("loading BPF programs") {
        return;
    }
    let img = RuntimeImage {
        code: vec![
            BInsn::new(Op::Push, 0, 1),
            BInsn::with_arg(Op::StG, 0),
            BInsn::op(Op::Next),
        ],
        probes: vec![ProbeSlot {
            body: Some(0),
            lock_mask: 1,
            label: "probe timer.ms(5) at t.stp:2:7".into(),
            ..Default::default()
        }],
        globals_init: vec![0],
        ..Default::default()
    };
    // Unchanged, it loads.
    let opts = LoadOptions {
        kinds: vec![ProgKind::TestEntry],
        ..Default::default()
    };
    Runtime::load_with(&img, &opts).expect("the generated program loads");
    let opts = LoadOptions {
        tamper: Some(out_of_bounds),
        ..opts
    };
    let m = Runtime::load_with(&img, &opts)
        .expect_err("refused")
        .to_string();
    assert!(m.contains("probe timer.ms(5) at t.stp:2:7"), "{m}");
    assert!(m.contains("this is an otf bug"), "{m}");
    let path = m.rsplit("is in ").next().expect("a log path");
    let log = std::fs::read_to_string(path).expect("the log file");
    assert!(log.contains("verifier log:"), "{log}");
    assert!(log.contains("invalid access to map value"), "{log}");
    let _ = std::fs::remove_file(path);
}

/// The image of a script whose kernel units each get one pidx (no attachment needed: the
/// test-entry program runs a hit).
fn image_of(src: &str) -> RuntimeImage {
    let file = otf_script::diag::SourceFile::new("big.stp", src);
    let c = otf_script::compile_source(&file).expect("compiles");
    let s = &c.script;
    RuntimeImage {
        code: s.code.clone(),
        probes: s
            .units
            .iter()
            .map(|u| ProbeSlot {
                body: Some(u.body.start),
                lock_mask: u.lock_mask,
                label: format!("{}", u.point),
                ..Default::default()
            })
            .collect(),
        cond_code: vec![0; s.units.len()],
        globals_init: s.globals.iter().map(|g| g.init).collect(),
        maps: otf_codegen::maps::MapSpec::all(&s.globals),
        ..Default::default()
    }
}

#[test]
fn the_largest_bodies_load_and_run() {
    if !skip::need_root("loading BPF programs") {
        return;
    }
    let mut straight = String::from("global x\nprobe timer.ms(1) {\n");
    for _ in 0..4400 {
        straight.push_str("  x += 1\n");
    }
    straight.push_str("}\n");
    let mut printfs = String::from("global x\nprobe timer.ms(1) {\n");
    for i in 0..1500 {
        printfs.push_str(&format!("  printf(\"%d %d\\n\", x, {i})\n"));
    }
    printfs.push_str("  x = 1\n}\n");
    let deep = "global x\n\
        function f1(a) { s = 0; for (i = 0; i < a; i++) s += i; return s }\n\
        function f2(a) { return f1(a) + f1(a + 1) }\n\
        function f3(a) { t = 0; while (a > 0) { t += f2(a); a-- } return t }\n\
        function f4(a) { return f3(a) * 2 }\n\
        probe timer.ms(1) { for (i = 0; i < 3; i++) for (j = 0; j < 3; j++) x += f4(i + j) }\n";
    for (name, src, kinds) in [
        (
            "4,400 statements",
            straight.as_str(),
            vec![ProgKind::TestEntry],
        ),
        ("1,500 printf", printfs.as_str(), vec![ProgKind::TestEntry]),
        (
            "functions inlined 4 deep, loops 4 deep",
            deep,
            vec![ProgKind::TestEntry],
        ),
    ] {
        let img = image_of(src);
        let t = std::time::Instant::now();
        let rt = Runtime::load_with(
            &img,
            &LoadOptions {
                kinds,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: loaded in {:?}", t.elapsed());
        let mut ev = rt.events().expect("events");
        rt.test_run_hit(otf_bpf::cookie(0)).expect("hit");
        // The reference VM is the oracle.
        let mut globals = img.globals_init.clone();
        let mut hit = otf_script::vm::FixedHit::default();
        let mut out = Vec::new();
        otf_script::vm::run(&img.code, 0, &mut globals, &mut hit, &mut |r| out.push(r))
            .unwrap_or_else(|e| panic!("{name}: reference VM: {e}"));
        assert_eq!(
            rt.globals().snapshot(),
            globals,
            "{name}: {:?} {:?}",
            rt.counters(0),
            rt.error_counters()
        );
        let got = ev.drain().expect("drain").len();
        assert_eq!(got, out.len(), "{name}: output records");
        assert_eq!(rt.counters(0).bodies, 1, "{name}");
    }
}
