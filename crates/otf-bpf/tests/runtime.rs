//! The runtime on the real kernel (root): tracepoint, perf timer, lock, condition
//! re-evaluation and notification, run-time errors, `@entry`, context values.

mod common;

use std::time::Duration;

use common::*;
use otf_bpf::{cookie, entry_cookie, Event, ProbeSlot, ProgKind, Runtime, RuntimeErrorKind};
use otf_hrtimer::{PerfTimer, TimerAttachment};
use otf_script::bytecode::{Ctx, Op};
use otf_tracepoint::{AttachError, Tracepoint, TracepointLink};

fn getppid_link(rt: &Runtime, pidx: u32) -> TracepointLink {
    syscall_tp_link(rt, "sys_enter_getppid", pidx)
}

/// A perf tracepoint attachment of the tracepoint handler with cookie `pidx`. Note: one
/// program can be attached only once to one perf tracepoint (a second attach fails with
/// EEXIST).
fn try_syscall_tp_link(rt: &Runtime, name: &str, pidx: u32) -> Result<TracepointLink, AttachError> {
    TracepointLink::attach_perf(
        rt.program(ProgKind::Tracepoint)
            .expect("tracepoint program"),
        &Tracepoint::new("syscalls", name),
        cookie(pidx),
    )
}

fn syscall_tp_link(rt: &Runtime, name: &str, pidx: u32) -> TracepointLink {
    try_syscall_tp_link(rt, name, pidx).expect("attach tracepoint")
}

#[test]
fn tracepoint_counts_runs_and_outputs() {
    let mut b = Builder::new(4);
    let mut body = only_me();
    body.extend([
        a(Op::LdG, 0),
        push(1),
        i(Op::Add),
        i(Op::Dup),
        a(Op::StG, 0),
        ctx(Ctx::Pid, 0),
        ctx(Ctx::Tid, 0),
        ctx(Ctx::Ppid, 0),
        ctx(Ctx::Uid, 0),
        ctx(Ctx::Target, 0),
        ctx(Ctx::TimeNs, 0),
        ctx(Ctx::LongArg, 1),
        out(7, 8),
        i(Op::Next),
    ]);
    let p = b.probe(&body, ProbeSlot::default());
    b.image.target_pid = 4242;
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    let link = getppid_link(&rt, p);
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    for _ in 0..100 {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
    }
    drop(link);
    let c = rt.counters(p);
    assert_eq!(c.bodies, 100, "{c:?}");
    assert!(c.hits >= 100);
    assert_eq!(c.hits, c.bodies + c.skipped_cond, "{c:?}");
    assert_eq!(c.errors + c.skipped_lock + c.skipped_nest, 0);
    assert_eq!(rt.globals().get(0), Some(100));

    let events = ev.poll(Duration::from_millis(100)).expect("poll");
    let outs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output {
                pidx, fmt, args, ..
            } => Some((*pidx, *fmt, args.clone(), e.comm_str().unwrap())),
            _ => None,
        })
        .collect();
    assert_eq!(outs.len(), 100, "{events:?}");
    // SAFETY: plain getters.
    let (ppid, uid) = unsafe { (libc::getppid() as i64, libc::getuid() as i64) };
    let me = std::process::id() as i64;
    let tid = gettid();
    for (k, (pidx, fmt, args, _comm)) in outs.iter().enumerate() {
        assert_eq!((*pidx, *fmt), (p, 7));
        assert_eq!(args[0], k as i64 + 1);
        assert_eq!(&args[1..6], &[me, tid, ppid, uid, 4242]);
        // gettimeofday_ns(): within a second of the wall clock.
        assert!((args[6] - t0).abs() < 1_000_000_000, "{} vs {t0}", args[6]);
        // No function arguments on a tracepoint.
        assert_eq!(args[7], 0);
    }
    assert_eq!(ev.undecodable(), 0);
}

#[test]
fn perf_timer_runs_bodies() {
    let mut b = Builder::new(2);
    let p = b.probe(
        &[
            a(Op::LdG, 1),
            push(1),
            i(Op::Add),
            a(Op::StG, 1),
            ctx(Ctx::Cpu, 0),
            a(Op::StG, 0),
            i(Op::Next),
        ],
        ProbeSlot::default(),
    );
    let rt = Runtime::load(&b.image).expect("load");
    // A 1 kHz cpu-clock perf event on CPU 1.
    let timer = PerfTimer::open(
        rt.program(ProgKind::PerfEvent).unwrap(),
        TimerAttachment {
            cpu: 1,
            period_ns: 1_000_000,
            profile: false,
        },
        cookie(p),
        true,
    )
    .expect("attach perf event");
    // More than 10 hits come within ~10 ms at 1 kHz; a loaded (virtual) CPU may take longer, so
    // wait for them with a generous deadline rather than for a fixed time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt.counters(p).hits <= 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(timer);
    let c = rt.counters(p);
    assert!(c.hits > 10, "{c:?}");
    assert_eq!(c.hits, c.bodies);
    assert_eq!(rt.globals().get(1), Some(c.bodies as i64));
    assert_eq!(rt.globals().get(0), Some(1), "cpu() of a timer on CPU 1");
}

/// A BPF timer (otf-hrtimer's `BpfTimers` driving the generated timer program) runs the body
/// every period while started, not at all once cancelled, and again once restarted; its
/// counts of expiries agree with the hits.
#[test]
fn bpf_timer_runs_bodies_only_while_started() {
    use otf_bpf::layout::{TimerCtl, TimerSlot};
    use otf_hrtimer::bpf_timer::{BpfTimers, CTL_SIZE, FIRED_OFF, LOST_OFF, OP_CANCEL, OP_START};
    // The contract otf-hrtimer documents is the layout the code generator uses.
    assert_eq!(CTL_SIZE, std::mem::size_of::<TimerCtl>());
    assert_eq!(FIRED_OFF, std::mem::offset_of!(TimerSlot, fired));
    assert_eq!(LOST_OFF, std::mem::offset_of!(TimerSlot, lost));
    assert_eq!(
        (OP_START, OP_CANCEL),
        (
            otf_bpf::layout::TIMER_OP_START,
            otf_bpf::layout::TIMER_OP_CANCEL
        )
    );

    let mut b = Builder::new(1);
    let p = b.probe(
        &[
            a(Op::LdG, 0),
            push(1),
            i(Op::Add),
            a(Op::StG, 0),
            i(Op::Next),
        ],
        ProbeSlot::default(),
    );
    let rt = Runtime::load(&b.image).expect("load");
    let timers = BpfTimers::new(
        rt.program(ProgKind::Timer).expect("timer program"),
        rt.timers_map().expect("timers map"),
        std::mem::size_of::<TimerSlot>(),
    )
    .expect("timers");
    let wait_for = |n: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rt.counters(p).hits < n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        rt.counters(p).hits
    };
    // Never started: never fires.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rt.counters(p).hits, 0);
    timers.start(p, 1_000_000).expect("start");
    assert!(wait_for(20) >= 20);
    timers.cancel(p).expect("cancel");
    let stopped = rt.counters(p);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(rt.counters(p), stopped, "a cancelled timer fired");
    assert_eq!(stopped.hits, stopped.bodies);
    assert_eq!(rt.globals().get(0), Some(stopped.bodies as i64));
    let (fired, lost) = timers.counts(p).expect("counts");
    assert_eq!(fired, stopped.hits);
    // Expiries that ran and due times passed over cover the time it ran (at most ~1 s here).
    assert!(fired + lost <= 2_000, "{fired} + {lost}");
    timers.start(p, 1_000_000).expect("restart");
    assert!(wait_for(stopped.hits + 20) >= stopped.hits + 20);
    timers.cancel(p).expect("cancel");
    // A pidx outside the map is refused by the program (ENOENT), not a crash.
    let err = timers.start(u32::MAX, 1_000_000).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
}

/// Two probes on both CPUs read-modify-write one global with a window of ~60 steps between
/// the read and the write: with the lock, no update is lost.
#[test]
fn lock_makes_bodies_atomic() {
    let mut b = Builder::new(3);
    // Only the two worker threads, whose tids are written into g1 and g2 after load.
    let mut body = vec![
        ctx(Ctx::Tid, 0),
        a(Op::LdG, 1),
        i(Op::Eq),
        ctx(Ctx::Tid, 0),
        a(Op::LdG, 2),
        i(Op::Eq),
        i(Op::Or),
        a(Op::Jnz, 1),
        i(Op::Skip),
    ];
    body.extend([
        a(Op::LdG, 0),
        a(Op::StL, 0),
        // for (l1 = 0; l1 < 20; l1++) {}
        push(0),
        a(Op::StL, 1),
        a(Op::LdL, 1),
        push(20),
        i(Op::Lt),
        a(Op::Jz, 5),
        a(Op::LdL, 1),
        push(1),
        i(Op::Add),
        a(Op::StL, 1),
        a(Op::Jmp, -9),
        a(Op::LdL, 0),
        push(1),
        i(Op::Add),
        a(Op::StG, 0),
        i(Op::Next),
    ]);
    let slot = ProbeSlot {
        lock_mask: 1,
        ..Default::default()
    };
    let p0 = b.probe(&body, slot.clone());
    let p1 = b.probe(&body, slot);
    let rt = Runtime::load(&b.image).expect("load");
    let ready = std::sync::Arc::new(std::sync::Barrier::new(3));
    let (tx, rx) = std::sync::mpsc::channel();
    let workers: Vec<_> = (0..2)
        .map(|cpu| {
            let ready = ready.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                }
                tx.send(gettid()).unwrap();
                ready.wait();
                for _ in 0..20_000 {
                    // SAFETY: no preconditions.
                    unsafe { libc::getppid() };
                }
            })
        })
        .collect();
    rt.globals().set(1, rx.recv().unwrap());
    rt.globals().set(2, rx.recv().unwrap());
    let l0 = getppid_link(&rt, p0);
    let l1 = syscall_tp_link(&rt, "sys_exit_getppid", p1);
    ready.wait();
    for w in workers {
        w.join().unwrap();
    }
    drop((l0, l1));
    let (c0, c1) = (rt.counters(p0), rt.counters(p1));
    let g = rt.globals().get(0).unwrap();
    eprintln!("locked: {c0:?} {c1:?} g={g} {:?}", rt.error_counters());
    assert_eq!(g as u64, c0.bodies + c1.bodies);
    assert_eq!(
        c0.bodies + c0.skipped_lock + c1.bodies + c1.skipped_lock,
        80_000
    );
}

#[test]
fn condition_change_sets_flag_and_notifies_once() {
    let mut b = Builder::new(4);
    // cond 0: g3 != 0
    let c = b.cond(&[a(Op::LdG, 3), i(Op::Ret)], false);
    let set = b.probe(
        &[push(1), a(Op::StG, 3), i(Op::Next)],
        ProbeSlot {
            reeval: vec![c],
            safe_context: true,
            ..Default::default()
        },
    );
    let clear_unsafe = b.probe(
        &[push(0), a(Op::StG, 3), i(Op::Next)],
        ProbeSlot {
            reeval: vec![c],
            safe_context: false,
            ..Default::default()
        },
    );
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    assert!(!rt.cond_enabled(c));

    rt.test_run_hit(cookie(set)).unwrap();
    assert!(rt.cond_enabled(c));
    rt.test_run_hit(cookie(set)).unwrap(); // no change
    let e = ev.drain().unwrap();
    assert_eq!(e, vec![Event::Notification { pidx: set }]);
    assert!(rt.take_need_refresh());
    assert!(!rt.take_need_refresh());

    // Unsafe context: the flag, but no notification.
    rt.test_run_hit(cookie(clear_unsafe)).unwrap();
    assert!(!rt.cond_enabled(c));
    assert!(rt.need_refresh());
    assert_eq!(ev.drain().unwrap(), vec![]);

    // The flag is still set: a change in a safe context does not notify again (0 -> 1 only).
    rt.test_run_hit(cookie(set)).unwrap();
    assert!(rt.cond_enabled(c));
    assert_eq!(ev.drain().unwrap(), vec![]);
    assert!(rt.take_need_refresh());
    assert_eq!(rt.error_counters().notifications, 1);

    // User space can set the bit too (refresh re-evaluation).
    rt.set_cond_enabled(c, false);
    assert!(!rt.cond_enabled(c));
}

#[test]
fn run_time_errors_are_reported() {
    let mut b = Builder::new(1);
    let div = b.probe(
        &[push(1), push(0), i(Op::Div), i(Op::Next)],
        ProbeSlot::default(),
    );
    let modz = b.probe(
        &[push(5), push(0), i(Op::Mod), i(Op::Next)],
        ProbeSlot::default(),
    );
    let spin = b.probe(&[i(Op::Nop), a(Op::Jmp, -2)], ProbeSlot::default());
    let rand = b.probe(
        &[push(0), i(Op::RandInt), i(Op::Next)],
        ProbeSlot::default(),
    );
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    for p in [div, modz, spin, rand] {
        rt.test_run_hit(cookie(p)).unwrap();
    }
    let off = |p: u32| b.image.probes[p as usize].body.unwrap();
    // Where the reference VM stops the endless loop: the step budget is charged per basic
    // block, at the block's first instruction (docs/bytecode.md).
    let max_action_pc = {
        let mut g = vec![0i64; 1];
        let mut hit = otf_script::vm::FixedHit::default();
        match otf_script::vm::run(
            &b.image.code,
            off(spin) as usize,
            &mut g,
            &mut hit,
            &mut |_| {},
        ) {
            Err(otf_script::vm::VmError::MaxAction { pc }) => pc as u32,
            r => panic!("the reference VM ran the endless loop to {r:?}"),
        }
    };
    assert_eq!(
        ev.drain().unwrap(),
        vec![
            Event::Error {
                pidx: div,
                kind: RuntimeErrorKind::DivisionByZero,
                pc: off(div) + 2
            },
            Event::Error {
                pidx: modz,
                kind: RuntimeErrorKind::DivisionByZero,
                pc: off(modz) + 2
            },
            Event::Error {
                pidx: spin,
                kind: RuntimeErrorKind::MaxAction,
                pc: max_action_pc
            },
            Event::Error {
                pidx: rand,
                kind: RuntimeErrorKind::InvalidRandint,
                pc: off(rand) + 1
            },
        ]
    );
    let e = rt.error_counters();
    assert_eq!(
        (e.division_by_zero, e.max_action, e.invalid_randint),
        (2, 1, 1)
    );
    assert_eq!(rt.counters(div).errors, 1);
    assert_eq!(rt.counters(div).bodies, 0);
}

#[test]
fn entry_values_reach_the_return() {
    let mut b = Builder::new(1);
    let entry = b.prog(&[
        push(42),
        a(Op::EntrySave, 0),
        push(-7),
        a(Op::EntrySave, 7),
        i(Op::Next),
    ]);
    let p = b.probe(
        &[
            a(Op::EntryLoad, 0),
            a(Op::EntryLoad, 7),
            out(1, 2),
            i(Op::Next),
        ],
        ProbeSlot {
            entry: Some(entry),
            is_return: true,
            ..Default::default()
        },
    );
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    rt.test_run_hit(entry_cookie(p)).unwrap();
    rt.test_run_hit(cookie(p)).unwrap();
    // A return without a matching entry reads 0.
    rt.test_run_hit(cookie(p)).unwrap();
    let args: Vec<_> = ev
        .drain()
        .unwrap()
        .into_iter()
        .map(|e| match e {
            Event::Output { args, .. } => args,
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(args, vec![vec![42, -7], vec![0, 0]]);
    let c = rt.counters(p);
    assert_eq!((c.entry_runs, c.hits, c.bodies), (1, 2, 2));
}

#[test]
fn exit_is_recorded_and_unconfigured_cookies_are_counted() {
    let mut b = Builder::new(1);
    let p = b.probe(
        &[i(Op::Exit), push(3), a(Op::StG, 0), i(Op::Next)],
        ProbeSlot::default(),
    );
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    assert!(!rt.exit_requested());
    rt.test_run_hit(cookie(p)).unwrap();
    rt.test_run_hit(cookie(77)).unwrap();
    assert!(rt.exit_requested());
    assert_eq!(
        rt.globals().get(0),
        Some(3),
        "the body goes on after exit()"
    );
    assert_eq!(ev.drain().unwrap(), vec![Event::Exit { pidx: p }]);
    assert_eq!(rt.error_counters().bad_cookie, 1);

    // Once exit() was called no body runs any more (SystemTap's STOPPING state).
    rt.globals().set(0, 0);
    rt.test_run_hit(cookie(p)).unwrap();
    assert_eq!(rt.globals().get(0), Some(0), "a body ran after exit()");
    assert_eq!(rt.counters(p).bodies, 1);

    // Likewise once user space marks the session as stopping.
    rt.clear_exit_requested();
    rt.test_run_hit(cookie(p)).unwrap();
    assert_eq!(rt.counters(p).bodies, 2, "bodies run again after the clear");
    rt.clear_exit_requested();
    rt.set_stopping();
    rt.test_run_hit(cookie(p)).unwrap();
    assert_eq!(rt.counters(p).bodies, 2, "a body ran while stopping");
}

/// Several probes on one perf tracepoint: the program attaches once (a second attach fails
/// with EEXIST), the others are chained behind the first.
#[test]
fn chained_probes_share_one_attachment() {
    let mut b = Builder::new(3);
    let mut bodies = Vec::new();
    for g in 0..3 {
        let mut body = only_me();
        body.extend([
            a(Op::LdG, g),
            push(g as i64 + 1),
            i(Op::Add),
            a(Op::StG, g),
            i(Op::Next),
        ]);
        bodies.push(body);
    }
    let p0 = b.probe(
        &bodies[0],
        ProbeSlot {
            chain: Some(1),
            ..Default::default()
        },
    );
    let p1 = b.probe(
        &bodies[1],
        ProbeSlot {
            chain: Some(2),
            ..Default::default()
        },
    );
    let p2 = b.probe(&bodies[2], ProbeSlot::default());
    let rt = Runtime::load(&b.image).expect("load");
    let link = syscall_tp_link(&rt, "sys_enter_getppid", p0);
    let again = try_syscall_tp_link(&rt, "sys_enter_getppid", p1);
    assert!(
        again.is_err(),
        "a second attachment of one program to one perf tracepoint"
    );
    for _ in 0..10 {
        // SAFETY: no preconditions.
        unsafe { libc::getppid() };
    }
    drop(link);
    assert_eq!(rt.globals().snapshot(), vec![10, 20, 30]);
    for p in [p0, p1, p2] {
        assert_eq!(rt.counters(p).bodies, 10);
    }
}

/// The reference VM runs on the mmapped globals (begin/end bodies, refresh): what it writes
/// the kernel reads and the other way round.
#[test]
fn reference_vm_shares_globals_with_the_kernel() {
    let mut b = Builder::new(2);
    let begin = b.prog(&[push(40), a(Op::StG, 0), i(Op::Next)]);
    let p = b.probe(
        &[
            a(Op::LdG, 0),
            push(2),
            i(Op::Add),
            a(Op::StG, 1),
            i(Op::Next),
        ],
        ProbeSlot::default(),
    );
    let rt = Runtime::load(&b.image).expect("load");
    let mut g = rt.globals();
    let mut hit = otf_script::vm::FixedHit::default();
    let r = otf_script::vm::run(&b.image.code, begin as usize, &mut g, &mut hit, &mut |_| {});
    assert!(r.is_ok(), "{r:?}");
    rt.test_run_hit(cookie(p)).unwrap();
    assert_eq!(rt.globals().snapshot(), vec![40, 42]);
    assert_eq!(otf_script::vm::GlobalStore::len(&g), 2);
}

/// A hit that cannot take its lock stripes within MAXTRYLOCK polls is skipped and counted;
/// other stripes are unaffected.
#[test]
fn held_lock_skips_the_hit() {
    let mut b = Builder::new(2);
    let body = [
        a(Op::LdG, 0),
        push(1),
        i(Op::Add),
        a(Op::StG, 0),
        i(Op::Next),
    ];
    let locked = b.probe(
        &body,
        ProbeSlot {
            lock_mask: 0b01,
            ..Default::default()
        },
    );
    let other = b.probe(
        &body,
        ProbeSlot {
            lock_mask: 0b10,
            ..Default::default()
        },
    );
    let rt = Runtime::load(&b.image).expect("load");
    assert!(rt.try_lock(0b01, 1));
    assert!(!rt.try_lock(0b01, 10), "stripe 0 is held");
    rt.test_run_hit(cookie(locked)).unwrap();
    rt.test_run_hit(cookie(other)).unwrap();
    let c = rt.counters(locked);
    assert_eq!(
        (c.hits, c.bodies, c.skipped_lock, c.skipped()),
        (1, 0, 1, 1)
    );
    assert_eq!(rt.counters(other).bodies, 1);
    rt.unlock(0b01);
    rt.test_run_hit(cookie(locked)).unwrap();
    assert_eq!(rt.counters(locked).bodies, 1);
    assert_eq!(rt.globals().get(0), Some(2));
    assert!(rt.error_counters().lock_contended >= 1);
}

/// A full ring buffer drops records and counts them; the hit itself goes on.
#[test]
fn full_ring_buffer_counts_drops() {
    let mut b = Builder::new(1);
    // for (l0 = 0; l0 < 700; l0++) printf(16 args): ~18 200 steps, under MAXACTION
    let mut body = vec![push(0), a(Op::StL, 0)];
    body.extend([a(Op::LdL, 0), push(700), i(Op::Lt), a(Op::Jz, 22)]);
    for k in 0..16 {
        body.push(push(k));
    }
    body.extend([
        out(0, 16),
        a(Op::LdL, 0),
        push(1),
        i(Op::Add),
        a(Op::StL, 0),
        a(Op::Jmp, -26),
        i(Op::Next),
    ]);
    let p = b.probe(&body, ProbeSlot::default());
    let rt = Runtime::load(&b.image).expect("load");
    let mut ev = rt.events().expect("events");
    // 40 × 700 records of 176 bytes (+8 header) ≈ 5.2 MB > 4 MiB.
    for _ in 0..40 {
        rt.test_run_hit(cookie(p)).unwrap();
    }
    let got = ev.drain().unwrap().len() as u64;
    let dropped = rt.error_counters().ringbuf_dropped;
    assert!(dropped > 0);
    assert_eq!(got + dropped, 28_000);
    assert_eq!(rt.counters(p).bodies, 40);
}

#[test]
fn a_disarmed_probe_runs_no_body() {
    if !can_test_run_bpf("a_disarmed_probe_runs_no_body") {
        return;
    }
    let mut b = Builder::new(1);
    let p = b.probe(
        &[
            a(Op::LdG, 0),
            push(1),
            i(Op::Add),
            a(Op::StG, 0),
            i(Op::Next),
        ],
        ProbeSlot::default(),
    );
    let rt = Runtime::load(&b.image).expect("load");
    rt.test_run_hit(cookie(p)).expect("hit");
    assert_eq!(rt.globals().get(0), Some(1), "armed at load");
    // Disarmed while its attachment would still deliver hits: counted, no body.
    rt.set_armed(p, false);
    rt.test_run_hit(cookie(p)).expect("hit");
    rt.test_run_hit(cookie(p)).expect("hit");
    assert_eq!(rt.globals().get(0), Some(1), "no body while disarmed");
    let c = rt.counters(p);
    assert_eq!((c.hits, c.bodies, c.skipped_cond), (3, 1, 2), "{c:?}");
    rt.set_armed(p, true);
    rt.test_run_hit(cookie(p)).expect("hit");
    assert_eq!(rt.globals().get(0), Some(2), "armed again");
}
