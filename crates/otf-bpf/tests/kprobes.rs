//! kprobe, kretprobe, kprobe.multi and kretprobe.multi handlers. This machine's kernel has no
//! kprobes: attaching fails and the test says so and passes, unless `OTF_REQUIRE_KPROBES=1`
//! (set in the kprobe VM, kernel 6.12), where every attachment must work.

mod common;

use std::time::Duration;

use common::*;
use otf_attach::sys::{attach_kprobe, attach_kprobe_multi, Link};
use otf_bpf::{cookie, Event, ProbeSlot, ProgKind, Runtime};
use otf_script::bytecode::{Ctx, Op};

const FUNC: &str = "__x64_sys_getppid";

fn required() -> bool {
    std::env::var("OTF_REQUIRE_KPROBES").is_ok_and(|v| v == "1")
}

#[test]
fn kprobe_handlers_count_and_see_return_values() {
    let mut b = Builder::new(4);
    let count = |g: i32, b: &mut Builder| {
        let mut body = only_me();
        body.extend([
            a(Op::LdG, g),
            push(1),
            i(Op::Add),
            a(Op::StG, g),
            i(Op::Next),
        ]);
        b.probe(&body, ProbeSlot::default())
    };
    let kp = count(0, &mut b);
    let kpm = count(1, &mut b);
    let kretm = count(2, &mut b);
    let mut body = only_me();
    body.extend([ctx(Ctx::RetVal, 0), out(0, 1), i(Op::Next)]);
    let kret = b.probe(
        &body,
        ProbeSlot {
            is_return: true,
            ..Default::default()
        },
    );
    let rt = Runtime::load(&b.image).expect("load (kprobe programs verify on any kernel)");
    let mut ev = rt.events().expect("events");

    let single = |kind: ProgKind, p: u32, ret: bool| {
        attach_kprobe(rt.program(kind).unwrap(), FUNC, ret, cookie(p))
    };
    let multi = |kind: ProgKind, p: u32, ret: bool| {
        attach_kprobe_multi(rt.program(kind).unwrap(), &[FUNC], &[cookie(p)], ret)
    };
    let links = (|| -> std::io::Result<Vec<Link>> {
        Ok(vec![
            single(ProgKind::Kprobe, kp, false)?,
            single(ProgKind::Kretprobe, kret, true)?,
            multi(ProgKind::KprobeMulti, kpm, false)?,
            multi(ProgKind::KretprobeMulti, kretm, true)?,
        ])
    })();
    let links = match links {
        Ok(l) => l,
        Err(e) if !required() => {
            skip::skip(
                skip::Need::Env,
                &format!(
                    "kprobes unavailable on this kernel ({e}); set OTF_REQUIRE_KPROBES=1 to \
                     require them"
                ),
            );
            return;
        }
        Err(e) => panic!("attaching kprobes: {e}"),
    };
    for _ in 0..10 {
        // SAFETY: no preconditions.
        unsafe { libc::getppid() };
    }
    drop(links);
    let g = rt.globals();
    assert_eq!(
        (g.get(0), g.get(1), g.get(2)),
        (Some(10), Some(10), Some(10))
    );
    // SAFETY: no preconditions.
    let ppid = unsafe { libc::getppid() } as i64;
    let rets: Vec<_> = ev
        .poll(Duration::from_millis(100))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Event::Output { pidx, args, .. } if pidx == kret => Some(args[0]),
            _ => None,
        })
        .collect();
    assert_eq!(rets, vec![ppid; 10]);
}
