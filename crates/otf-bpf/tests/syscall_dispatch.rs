//! Syscall probes dispatched by number (root, kernel ≥ 6.10 for raw tracepoint cookies): the
//! generated `otf_sys_enter`/`otf_sys_exit` programs, attached by otf-tracepoint's group as
//! one raw link per dispatch unit, run exactly the probes of the syscalls made, with their
//! own pidx, and a disarmed unit holds no link.

mod common;

use std::os::fd::{AsRawFd, BorrowedFd};

use common::*;
use otf_bpf::{layout, LoadOptions, ProbeSlot, ProgKind, Runtime};
use otf_core::{ArmedSet, Flavor, PlanInput, ProbeEntry, ProbeGroup};
use otf_script::bytecode::Op;
use otf_tracepoint::{SyscallDir, SyscallPrograms, Tracepoint, TracepointGroup};

/// Root and raw tracepoint cookies, or the test is reported skipped.
fn can_run() -> bool {
    if !can_test_run_bpf("") {
        return false;
    }
    if !otf_bpf::features::features().raw_tp_cookies {
        skip::skip(
            skip::Need::Env,
            "raw tracepoint cookies need kernel 6.10 (syscall dispatch falls back to perf)",
        );
        return false;
    }
    true
}

/// A runtime with one probe per `(condition, tracepoint)`, probe `k` counting its hits on this
/// thread in global `k`, chained as the orchestrator chains them, and the tracepoint group
/// over it with the syscall programs.
fn setup(probes: &[(Option<u32>, Tracepoint)]) -> (Runtime, TracepointGroup) {
    let mut b = Builder::new(probes.len());
    let triples: Vec<_> = probes
        .iter()
        .enumerate()
        .map(|(k, (c, t))| (k as u32, *c, t.clone()))
        .collect();
    let chains = otf_tracepoint::tracepoint_chains(&triples, true, layout::SYSCALL_UNITS);
    for k in 0..probes.len() {
        let mut body = only_me();
        body.extend([
            a(Op::LdG, k as i32),
            push(1),
            i(Op::Add),
            a(Op::StG, k as i32),
            i(Op::Next),
        ]);
        let next = chains
            .iter()
            .find_map(|c| c.windows(2).find(|w| w[0] == k as u32).map(|w| w[1]));
        b.probe(
            &body,
            ProbeSlot {
                chain: next,
                ..ProbeSlot::default()
            },
        );
    }
    let rt = Runtime::load_with(
        &b.image,
        &LoadOptions {
            kinds: vec![
                ProgKind::Tracepoint,
                ProgKind::SyscallEnter,
                ProgKind::SyscallExit,
            ],
            ..LoadOptions::default()
        },
    )
    .expect("load");
    let entries = triples
        .iter()
        .map(|(p, c, t)| {
            (
                ProbeEntry::new(*p, *c, Flavor::Tracepoint, format!("kernel.trace(\"{t}\")")),
                t.clone(),
            )
        })
        .collect();
    let sys = SyscallPrograms {
        enter: rt.program(ProgKind::SyscallEnter),
        exit: rt.program(ProgKind::SyscallExit),
        map: rt.syscalls_map().expect("syscalls map"),
        units: layout::SYSCALL_UNITS as u32,
        nrs: layout::SYSCALL_NRS as u32,
    };
    let g = TracepointGroup::with_syscalls(
        rt.program(ProgKind::Tracepoint).unwrap(),
        None,
        Some(sys),
        entries,
    )
    .expect("group");
    (rt, g)
}

fn sys(name: &str) -> Tracepoint {
    Tracepoint::new("syscalls", name)
}

fn call(nr: libc::c_long, n: usize) {
    for _ in 0..n {
        // SAFETY: the syscalls called this way (getppid, getpgrp, getpgid(0)) take no pointer
        // arguments.
        unsafe { libc::syscall(nr, 0) };
    }
}

/// The kernel's id of a BPF program or link fd, from its fdinfo.
fn fdinfo_field(fd: i32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().parse().ok())
}

/// BPF links of this process that run program `prog`.
fn links_of(prog: BorrowedFd<'_>) -> usize {
    let id = fdinfo_field(prog.as_raw_fd(), "prog_id:").expect("prog_id of a program fd");
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
            info.contains("link_type:") && fdinfo_field(fd, "prog_id:") == Some(id)
        })
        .count()
}

fn start(g: &mut TracepointGroup, conditions: &[bool]) -> ArmedSet {
    let mut armed = ArmedSet::new();
    let plan = g.plan_start(&PlanInput {
        conditions,
        otf: true,
        armed: &armed,
    });
    let r = g.apply(&plan);
    assert_eq!(r.failures().count(), 0, "{r:?}");
    armed.record(&plan, &r);
    armed
}

#[test]
fn dispatch_runs_exactly_the_probed_syscalls() {
    if !can_run() {
        return;
    }
    let (rt, mut g) = setup(&[
        (None, sys("sys_enter_getppid")),
        (None, sys("sys_enter_getppid")),
        (None, sys("sys_enter_getpgrp")),
        (None, sys("sys_enter_getpgid")),
        (None, sys("sys_enter_newuname")),
        (None, sys("sys_exit_getppid")),
        (None, sys("sys_exit_getpgrp")),
        (None, sys("sys_exit_getpgid")),
    ]);
    let units: Vec<_> = g.dispatch_units().iter().map(|u| u.dir).collect();
    assert_eq!(units, vec![SyscallDir::Enter, SyscallDir::Exit]);
    let armed = start(&mut g, &[]);
    assert_eq!(g.link_count(), 2);
    assert_eq!(links_of(rt.program(ProgKind::SyscallEnter).unwrap()), 1);
    assert_eq!(links_of(rt.program(ProgKind::SyscallExit).unwrap()), 1);
    call(libc::SYS_getppid, 7);
    call(libc::SYS_getpgrp, 5);
    // SAFETY: utsname is plain bytes; all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    for _ in 0..3 {
        // SAFETY: `uts` is a valid, writable utsname.
        unsafe { libc::syscall(libc::SYS_uname, &mut uts as *mut libc::utsname) };
    }
    let got = rt.globals().snapshot();
    // getppid twice (two probes of one unit on one syscall run as a chain), getpgrp,
    // getpgid never called, newuname is uname's number; then the exits.
    assert_eq!(
        got,
        vec![7, 7, 5, 0, 3, 7, 5, 0],
        "per-probe hits of this thread"
    );
    for (p, want) in [(0u32, 7u64), (1, 7), (2, 5), (4, 3), (5, 7), (6, 5)] {
        assert!(
            rt.counters(p).bodies >= want,
            "pidx {p}: {:?}",
            rt.counters(p)
        );
    }
    let r = g.apply(&g.plan_release(&armed));
    assert_eq!(r.failures().count(), 0);
    assert_eq!(g.link_count(), 0);
    assert_eq!(links_of(rt.program(ProgKind::SyscallEnter).unwrap()), 0);
}

#[test]
fn a_disarmed_unit_has_no_link() {
    if !can_run() {
        return;
    }
    // Unit (cond 0, enter): getppid, getpgrp and getsid; cond 1 probes getpgid alone, below
    // MIN_DISPATCH, so it stays a perf tracepoint.
    assert!(otf_tracepoint::min_dispatch() <= 3 && otf_tracepoint::min_dispatch() > 1);
    let (rt, mut g) = setup(&[
        (Some(0), sys("sys_enter_getppid")),
        (Some(0), sys("sys_enter_getpgrp")),
        (Some(1), sys("sys_enter_getpgid")),
        (Some(0), sys("sys_enter_getsid")),
    ]);
    assert_eq!(g.dispatch_units().len(), 1);
    let prog = rt.program(ProgKind::SyscallEnter).unwrap();
    let mut armed = start(&mut g, &[false, false]);
    assert_eq!(g.link_count(), 0);
    assert_eq!(links_of(prog), 0);
    call(libc::SYS_getppid, 4);
    assert_eq!(rt.globals().get(0), Some(0));

    let refresh = |g: &mut TracepointGroup, armed: &mut ArmedSet, on: bool| {
        let plan = g.plan_refresh(&PlanInput {
            conditions: &[on, false],
            otf: true,
            armed,
        });
        let r = g.apply(&plan);
        assert_eq!(r.failures().count(), 0, "{r:?}");
        armed.record(&plan, &r);
    };
    refresh(&mut g, &mut armed, true);
    assert!(g.is_attached(0) && g.is_attached(1) && g.is_attached(3) && !g.is_attached(2));
    assert_eq!(links_of(prog), 1);
    call(libc::SYS_getppid, 4);
    call(libc::SYS_getpgrp, 2);
    assert_eq!(rt.globals().snapshot(), vec![4, 2, 0, 0]);

    refresh(&mut g, &mut armed, false);
    assert_eq!(g.link_count(), 0);
    // The raw link is closed by the refresh (or a closing thread): the kernel's release may
    // follow; once calls stop counting, none counts any more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let before = rt.globals().get(0);
        call(libc::SYS_getppid, 4);
        if rt.globals().get(0) == before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "disarmed unit still runs after 5 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(links_of(prog), 0);
    let settled = rt.globals().get(0);
    call(libc::SYS_getppid, 4);
    call(libc::SYS_getpgrp, 4);
    assert_eq!(rt.globals().get(0), settled);
    assert_eq!(rt.globals().get(1), Some(2));
    let r = g.apply(&g.plan_release(&armed));
    assert_eq!(r.failures().count(), 0);
}

#[test]
fn the_whole_sys_enter_glob_is_one_link() {
    if !can_run() {
        return;
    }
    let tps = otf_tracepoint::resolve("syscalls:sys_enter_*").expect("resolve");
    assert!(tps.len() > 300, "{} sys_enter tracepoints", tps.len());
    let probes: Vec<_> = tps.iter().map(|t| (Some(0), t.clone())).collect();
    let (rt, mut g) = setup(&probes);
    assert_eq!(g.dispatch_units().len(), 1);
    // Every sys_enter tracepoint of this kernel maps to a number.
    assert_eq!(g.dispatch_units()[0].members.len(), tps.len());
    let armed = start(&mut g, &[true]);
    assert_eq!(g.link_count(), 1);
    assert_eq!(links_of(rt.program(ProgKind::SyscallEnter).unwrap()), 1);
    let getppid = tps
        .iter()
        .position(|t| t.name == "sys_enter_getppid")
        .unwrap();
    call(libc::SYS_getppid, 3);
    assert_eq!(rt.globals().get(getppid as u32), Some(3));
    let r = g.apply(&g.plan_release(&armed));
    assert_eq!(r.failures().count(), 0);
    assert_eq!(g.link_count(), 0);
    assert_eq!(links_of(rt.program(ProgKind::SyscallEnter).unwrap()), 0);
    // The perf program was never attached.
    assert_eq!(links_of(rt.program(ProgKind::Tracepoint).unwrap()), 0);
}

/// `int $0x80` from this 64-bit process: a 32-bit syscall, whose number is the i386 table's.
#[cfg(target_arch = "x86_64")]
fn int80(nr: u32) -> i32 {
    let ret: i32;
    // SAFETY: the i386 getppid/getpgrp take no arguments and touch no memory; the syscall
    // entry preserves every register but eax (the result) and r8-r11, declared clobbered.
    unsafe {
        std::arch::asm!(
            "int 0x80",
            inlateout("eax") nr => ret,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            options(nostack)
        )
    };
    ret
}

/// A compat syscall (`int $0x80` getppid = i386 64, getpgrp = 65) dispatches nothing: not the
/// 64-bit syscalls of the same numbers (semget, semop), not the 64-bit getppid; the perf
/// syscall events ignore them too.
#[cfg(target_arch = "x86_64")]
#[test]
fn compat_syscalls_dispatch_nothing() {
    if !can_run() {
        return;
    }
    if std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| c.contains("ia32_emulation=")) {
        skip::skip(
            skip::Need::Env,
            "ia32 emulation set on the kernel command line",
        );
        return;
    }
    let (rt, mut g) = setup(&[
        (None, sys("sys_enter_semget")),
        (None, sys("sys_enter_semop")),
        (None, sys("sys_enter_getppid")),
    ]);
    assert_eq!(g.dispatch_units().len(), 1);
    let ppid = std::os::unix::process::parent_id() as i32;
    let armed = start(&mut g, &[]);
    for _ in 0..10 {
        assert_eq!(int80(64), ppid, "i386 getppid through int $0x80");
        int80(65);
    }
    assert_eq!(rt.globals().snapshot(), vec![0, 0, 0]);
    call(libc::SYS_getppid, 3);
    assert_eq!(rt.globals().snapshot(), vec![0, 0, 3]);
    let r = g.apply(&g.plan_release(&armed));
    assert_eq!(r.failures().count(), 0);
}
