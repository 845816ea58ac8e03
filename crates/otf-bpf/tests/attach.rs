//! Attach kinds on the real kernel (root): uprobe, uretprobe, uprobe.multi,
//! uretprobe.multi (function arguments and return values reach the VM), raw_tp with a cookie.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use otf_attach::sys::{attach_uprobe, attach_uprobe_multi};
use otf_bpf::{cookie, entry_cookie, Event, ProbeSlot, ProgKind, Runtime};
use otf_script::bytecode::{Ctx, Op};
use otf_tracepoint::{Tracepoint, TracepointLink};

/// The uprobe tests attach to one function of this executable for every process, and both
/// call it: they run one at a time, so that each sees only its own calls.
static TARGET: Mutex<()> = Mutex::new(());

/// This executable and the file offset of [`otf_bpf_test_target`] in it.
fn target() -> (String, u64) {
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().expect("a UTF-8 path").to_string();
    let t = otf_uprobes_inode::resolve(&exe, "otf_bpf_test_target", false)
        .expect("otf_bpf_test_target in the test executable");
    assert_eq!(t.len(), 1, "{t:?}");
    (exe, t[0].file_offset)
}

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
    let (exe, off) = target();
    let _one = TARGET.lock().unwrap_or_else(|e| e.into_inner());
    let l1 = attach_uprobe(
        rt.program(ProgKind::Uprobe).unwrap(),
        &exe,
        off,
        false,
        cookie(up),
    )
    .expect("uprobe");
    // The entry program of the return probe: a uprobe at the same place.
    let l2 = attach_uprobe(
        rt.program(ProgKind::Uprobe).unwrap(),
        &exe,
        off,
        false,
        entry_cookie(uret),
    )
    .expect("uprobe (entry)");
    let l3 = attach_uprobe(
        rt.program(ProgKind::Uretprobe).unwrap(),
        &exe,
        off,
        true,
        cookie(uret),
    )
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
    let mut b = Builder::new(1);
    let up = b.probe(&args_body(), ProbeSlot::default());
    let uret = b.probe(&ret_body(), ProbeSlot::default());
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    let (exe, off) = target();
    let _one = TARGET.lock().unwrap_or_else(|e| e.into_inner());
    let multi = |kind: ProgKind, c: u64, retprobe: bool| {
        attach_uprobe_multi(rt.program(kind).unwrap(), &exe, &[off], &[c], retprobe)
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
    let sys_enter = Tracepoint::new("raw_syscalls", "sys_enter");
    let link = TracepointLink::attach_raw(prog, &sys_enter, cookie(p))
        .expect("raw_tp with cookie (kernel >= 6.10)");
    // The same program may be attached twice to one raw tracepoint (unlike perf tracepoints).
    let link0 =
        TracepointLink::attach_raw(prog, &sys_enter, cookie(p0)).expect("second raw_tp attachment");
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
