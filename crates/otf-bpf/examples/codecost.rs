//! Kernel-side cost of the generated code per hit and per bytecode instruction, from
//! `BPF_PROG_TEST_RUN` (the syscall included), beside the reference VM in user space, and the
//! size of the generated handler: `cargo run --release -p otf-bpf --example codecost` (root).

use std::time::{Duration, Instant};

use otf_bpf::{cookie, KernelInfo, LoadOptions, ProbeSlot, ProgKind, Runtime, RuntimeImage};
use otf_script::bytecode::{Insn, Op};

/// `for (l0 = 0; l0 < n; l0++) {}`: 12 bytecode instructions, 9·n + 7 of them executed.
fn looped(n: i64) -> Vec<Insn> {
    vec![
        Insn::new(Op::Push, 0, 0),
        Insn::with_arg(Op::StL, 0),
        Insn::with_arg(Op::LdL, 0),
        Insn::new(Op::Push, 0, n),
        Insn::op(Op::Lt),
        Insn::with_arg(Op::Jz, 5),
        Insn::with_arg(Op::LdL, 0),
        Insn::new(Op::Push, 0, 1),
        Insn::op(Op::Add),
        Insn::with_arg(Op::StL, 0),
        Insn::with_arg(Op::Jmp, -9),
        Insn::op(Op::Next),
    ]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // (name, body, bytecode instructions executed per run)
    let bodies = [
        ("Next only", vec![Insn::op(Op::Next)], 1),
        ("loop 10", looped(10), 97),
        ("loop 100", looped(100), 907),
        ("loop 1000", looped(1000), 9007),
    ];
    let mut img = RuntimeImage::default();
    for (_, b, _) in &bodies {
        img.probes.push(ProbeSlot {
            body: Some(img.code.len() as u32),
            ..Default::default()
        });
        img.code.extend_from_slice(b);
    }
    let prog =
        otf_codegen::generate(&img, ProgKind::TestEntry, &KernelInfo::default()).expect("generate");
    println!(
        "generated test-entry handler: {} BPF instructions, {} functions",
        prog.insns.len(),
        prog.func_starts.len()
    );
    let t = Instant::now();
    let rt = Runtime::load_with(
        &img,
        &LoadOptions {
            kinds: vec![ProgKind::TestEntry],
            ..Default::default()
        },
    )
    .expect("load");
    println!("load (verification included): {:?}", t.elapsed());
    let n = 2000;
    let mut per_hit = Vec::new();
    for (p, &(name, ref body, steps)) in bodies.iter().enumerate() {
        let hit = median(
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..n {
                        rt.test_run_hit(cookie(p as u32)).expect("test run");
                    }
                    t.elapsed() / n
                })
                .collect(),
        );
        per_hit.push((steps, hit));
        println!(
            "{name} ({} bytecode instructions, {steps} executed): {hit:?} per hit (syscall \
             included)",
            body.len()
        );
        let start = img.probes[p].body.unwrap() as usize;
        let t = Instant::now();
        for _ in 0..n {
            let mut g = vec![0i64; 1];
            let mut hit = otf_script::vm::FixedHit::default();
            let _ = otf_script::vm::run(&img.code, start, &mut g, &mut hit, &mut |_| {});
        }
        println!(
            "  reference VM in user space: {:?} per run",
            t.elapsed() / n
        );
    }
    let (s0, t0) = per_hit[2];
    let (s1, t1) = per_hit[3];
    let per_insn = (t1.as_nanos() as f64 - t0.as_nanos() as f64) / f64::from(s1 - s0);
    println!("one executed bytecode instruction in generated code: ~{per_insn:.2} ns");
}
