//! Attach kinds on the real kernel (root): uprobe, uretprobe, uprobe.multi,
//! uretprobe.multi (function arguments and return values reach the VM), raw_tp with a cookie.

mod common;

use std::time::{Duration, Instant};

use common::*;
use libbpf_rs::{RawTracepointOpts, UprobeMultiOpts, UprobeOpts};
use otf_bpf::{cookie, entry_cookie, Event, ProbeSlot, ProgKind, Runtime};
use otf_script::bytecode::{Ctx, Op};

/// The function the uprobes attach to.
#[no_mangle]
#[inline(never)]
pub extern "C" fn otf_bpf_test_target(a: i64, b: i64) -> i64 {
    std::hint::black_box(a.wrapping_mul(3).wrapping_add(b))
}

fn outputs(events: &[Event]) -> Vec<(u32, Vec<i64>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Output { pidx, args, .. } => Some((*pidx, args.clone())),
            _ => None,
        })
        .collect()
}

fn args_body() -> Vec<otf_script::bytecode::Insn> {
    vec![
        ctx(Ctx::LongArg, 1),
        ctx(Ctx::LongArg, 2),
        ctx(Ctx::IntArg, 1),
        ctx(Ctx::LongArg, 7),
        out(0, 4),
        i(Op::Next),
    ]
}

fn ret_body() -> Vec<otf_script::bytecode::Insn> {
    vec![
        ctx(Ctx::RetVal, 0),
        a(Op::EntryLoad, 0),
        out(1, 2),
        i(Op::Next),
    ]
}

#[test]
fn uprobes_see_arguments_and_return_values() {
    let exe = std::env::current_exe().unwrap();
    let mut b = Builder::new(1);
    let entry = b.prog(&[ctx(Ctx::LongArg, 2), a(Op::EntrySave, 0), i(Op::Next)]);
    let up = b.probe(&args_body(), ProbeSlot::default());
    let uret = b.probe(
        &ret_body(),
        ProbeSlot {
            entry: Some(entry),
            is_return: true,
            ..Default::default()
        },
    );
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    let pid = std::process::id() as i32;
    let opts = |c: u64, retprobe: bool| UprobeOpts {
        cookie: c,
        retprobe,
        func_name: Some("otf_bpf_test_target".into()),
        ..Default::default()
    };
    let l1 = rt
        .program(ProgKind::Uprobe)
        .unwrap()
        .attach_uprobe_with_opts(pid, &exe, 0, opts(cookie(up), false))
        .expect("uprobe");
    // The entry program of the return probe: a uprobe at the same place.
    let l2 = rt
        .program(ProgKind::Uprobe)
        .unwrap()
        .attach_uprobe_with_opts(pid, &exe, 0, opts(entry_cookie(uret), false))
        .expect("uprobe (entry)");
    let l3 = rt
        .program(ProgKind::Uretprobe)
        .unwrap()
        .attach_uprobe_with_opts(pid, &exe, 0, opts(cookie(uret), true))
        .expect("uretprobe");
    assert_eq!(otf_bpf_test_target(-5_000_000_000, 11), -14_999_999_989);
    drop((l1, l2, l3));
    let got = outputs(&ev.poll(Duration::from_millis(100)).unwrap());
    assert_eq!(
        got,
        vec![
            (
                up,
                vec![-5_000_000_000, 11, (-5_000_000_000i64) as i32 as i64, 0]
            ),
            (uret, vec![-14_999_999_989, 11]),
        ]
    );
    assert_eq!(rt.counters(uret).entry_runs, 1);
}

#[test]
fn uprobe_multi_carries_one_cookie_per_offset() {
    let exe = std::env::current_exe().unwrap();
    let mut b = Builder::new(1);
    let up = b.probe(&args_body(), ProbeSlot::default());
    let uret = b.probe(&ret_body(), ProbeSlot::default());
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    let pid = std::process::id() as i32;
    let multi = |kind: ProgKind, c: u64, retprobe: bool| {
        rt.program(kind)
            .unwrap()
            .attach_uprobe_multi_with_opts(
                pid,
                &exe,
                "",
                UprobeMultiOpts {
                    syms: vec!["otf_bpf_test_target".into()],
                    cookies: vec![c],
                    retprobe,
                    ..Default::default()
                },
            )
            .expect("uprobe_multi")
    };
    let l1 = multi(ProgKind::UprobeMulti, cookie(up), false);
    let l2 = multi(ProgKind::UretprobeMulti, cookie(uret), true);
    otf_bpf_test_target(7, -2);
    drop((l1, l2));
    let got = outputs(&ev.poll(Duration::from_millis(100)).unwrap());
    assert_eq!(got, vec![(up, vec![7, -2, 7, 0]), (uret, vec![19, 0])]);
}

#[test]
fn raw_tracepoint_with_cookie() {
    let mut b = Builder::new(1);
    let mut body = only_me();
    body.extend([
        a(Op::LdG, 0),
        push(1),
        i(Op::Add),
        a(Op::StG, 0),
        i(Op::Next),
    ]);
    let p0 = b.probe(&[i(Op::Next)], ProbeSlot::default());
    let p = b.probe(&body, ProbeSlot::default());
    let rt = Runtime::load(&b.image).expect("load");
    let prog = rt.program(ProgKind::RawTp).unwrap();
    let t = Instant::now();
    let link = prog
        .attach_raw_tracepoint_with_opts(
            "sys_enter",
            RawTracepointOpts {
                cookie: cookie(p),
                ..Default::default()
            },
        )
        .expect("raw_tp with cookie (kernel >= 6.10)");
    // The same program may be attached twice to one raw tracepoint (unlike perf tracepoints).
    let link0 = prog
        .attach_raw_tracepoint_with_opts(
            "sys_enter",
            RawTracepointOpts {
                cookie: cookie(p0),
                ..Default::default()
            },
        )
        .expect("second raw_tp attachment");
    eprintln!("raw_tp attach: {:?}", t.elapsed());
    for _ in 0..50 {
        // SAFETY: no preconditions.
        unsafe { libc::getppid() };
    }
    let t = Instant::now();
    drop(link);
    eprintln!("raw_tp detach: {:?}", t.elapsed());
    drop(link0);
    let c = rt.counters(p);
    assert!(c.bodies >= 50, "{c:?}");
    assert_eq!(rt.globals().get(0), Some(c.bodies as i64));
    assert!(rt.counters(p0).hits >= 50);
}
