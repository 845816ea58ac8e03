//! Measures the runtime's per-hit cost and attach/detach times on this machine (root):
//! `cargo run --release -p otf-bpf --example hitcost`. Numbers go into docs/runtime.md.

use std::time::{Duration, Instant};

use otf_bpf::{cookie, ProbeSlot, ProgKind, Runtime, RuntimeImage};
use otf_script::bytecode::{Ctx, Insn, Op};
use otf_tracepoint::{Tracepoint, TracepointLink};

const N: u32 = 200_000;

fn getppid_loop() -> Duration {
    let t = Instant::now();
    for _ in 0..N {
        // SAFETY: no preconditions.
        unsafe { libc::getppid() };
    }
    t.elapsed()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// ns per getppid call, median of 5 runs.
fn per_call() -> f64 {
    median(
        (0..5)
            .map(|_| getppid_loop().as_nanos() as f64 / N as f64)
            .collect(),
    )
}

fn image(bodies: &[Vec<Insn>]) -> RuntimeImage {
    let mut img = RuntimeImage {
        globals_init: vec![0; 4],
        cond_init: vec![],
        ..Default::default()
    };
    for b in bodies {
        img.probes.push(ProbeSlot {
            body: Some(img.code.len() as u32),
            lock_mask: 1,
            ..Default::default()
        });
        img.code.extend_from_slice(b);
    }
    img
}

fn tp(rt: &Runtime, p: u32) -> TracepointLink {
    TracepointLink::attach_perf(
        rt.program(ProgKind::Tracepoint).unwrap(),
        &Tracepoint::new("syscalls", "sys_enter_getppid"),
        cookie(p),
    )
    .unwrap()
}

fn raw(rt: &Runtime, p: u32) -> TracepointLink {
    TracepointLink::attach_raw(
        rt.program(ProgKind::RawTp).unwrap(),
        &Tracepoint::new("raw_syscalls", "sys_enter"),
        cookie(p),
    )
    .unwrap()
}

fn main() {
    let me = std::process::id() as i64;
    let skip = vec![
        Insn::new(Op::Push, 0, 0),
        Insn::with_arg(Op::Jnz, 1),
        Insn::op(Op::Skip),
        Insn::op(Op::Next),
    ];
    let incr = vec![
        Insn::new(Op::Ctx, Ctx::Pid as i32, 0),
        Insn::new(Op::Push, 0, me),
        Insn::op(Op::Eq),
        Insn::with_arg(Op::Jnz, 1),
        Insn::op(Op::Skip),
        Insn::with_arg(Op::LdG, 0),
        Insn::new(Op::Push, 0, 1),
        Insn::op(Op::Add),
        Insn::with_arg(Op::StG, 0),
        Insn::op(Op::Next),
    ];
    // A 100-iteration loop: ~900 instructions.
    let mut heavy = incr[..5].to_vec();
    heavy.extend([
        Insn::new(Op::Push, 0, 0),
        Insn::with_arg(Op::StL, 0),
        Insn::with_arg(Op::LdL, 0),
        Insn::new(Op::Push, 0, 100),
        Insn::op(Op::Lt),
        Insn::with_arg(Op::Jz, 5),
        Insn::with_arg(Op::LdL, 0),
        Insn::new(Op::Push, 0, 1),
        Insn::op(Op::Add),
        Insn::with_arg(Op::StL, 0),
        Insn::with_arg(Op::Jmp, -9),
        Insn::op(Op::Next),
    ]);
    let rt = Runtime::load(&image(&[skip, incr, heavy])).expect("load");
    let base = per_call();
    println!("getppid, no probe: {base:.0} ns/call");
    for (name, p) in [
        ("condition false (Skip after 3 insns)", 0),
        ("counter (10 insns)", 1),
        ("loop (~900 insns)", 2),
    ] {
        let l = tp(&rt, p);
        let c = per_call();
        drop(l);
        println!(
            "perf tracepoint sys_enter_getppid, {name}: +{:.0} ns/hit",
            c - base
        );
        let l = raw(&rt, p);
        let c = per_call();
        drop(l);
        println!("raw_tp sys_enter, {name}: +{:.0} ns/hit", c - base);
    }
    let mut a = Vec::new();
    let mut d = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let l = tp(&rt, 1);
        a.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        drop(l);
        d.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "perf tracepoint attach {:.2} ms, detach {:.2} ms (median of 10)",
        median(a),
        median(d)
    );
    let mut a = Vec::new();
    let mut d = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let l = raw(&rt, 1);
        a.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        drop(l);
        d.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "raw_tp attach {:.2} ms, detach {:.2} ms (median of 10)",
        median(a),
        median(d)
    );
    let t = Instant::now();
    let n = 20_000;
    for _ in 0..n {
        rt.test_run_hit(cookie(1)).unwrap();
    }
    println!(
        "BPF_PROG_TEST_RUN of one hit (syscall included): {:.0} ns",
        t.elapsed().as_nanos() as f64 / n as f64
    );
    let t = Instant::now();
    let _ = Runtime::load(&RuntimeImage::default()).unwrap();
    println!("Runtime::load (all 12 programs): {:?}", t.elapsed());
}
