//! Kernel-side cost of the BPF VM per hit and per instruction, from `BPF_PROG_TEST_RUN`
//! (the syscall included): `cargo run -p otf-bpf --example vmcost` (root).

use otf_bpf::{cookie, LoadOptions, ProbeSlot, ProgKind, Runtime, RuntimeImage};
use otf_script::bytecode::{Insn, Op};

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

fn main() {
    let bodies = [
        vec![Insn::op(Op::Next)],
        looped(10),
        looped(100),
        looped(1000),
    ];
    let mut img = RuntimeImage::default();
    for b in &bodies {
        img.probes.push(ProbeSlot {
            body: Some(img.code.len() as u32),
            ..Default::default()
        });
        img.code.extend_from_slice(b);
    }
    let rt = Runtime::load_with(
        &img,
        &LoadOptions {
            kinds: vec![ProgKind::TestEntry],
            ..Default::default()
        },
    )
    .expect("load");
    for (p, name) in [
        "Next only (1 insn)",
        "loop 10 (~94 insns)",
        "loop 100 (~904 insns)",
        "loop 1000 (~9004 insns)",
    ]
    .iter()
    .enumerate()
    {
        let n = 2000;
        let t = std::time::Instant::now();
        for _ in 0..n {
            rt.test_run_hit(cookie(p as u32)).expect("test run");
        }
        println!("{name}: {:?} per hit (syscall included)", t.elapsed() / n);
        let start = img.probes[p].body.unwrap() as usize;
        let t = std::time::Instant::now();
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
}
