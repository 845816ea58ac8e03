//! Real-kernel tests (root): a tracepoint probe runs its program iff it is armed, and many
//! links are released concurrently.

use otf_attach::testprog as minprog;

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use otf_core::{plan_and_apply, ArmedSet, Flavor, ProbeEntry, ProbeGroup};
use otf_tracepoint::{AttachMode, Tracepoint, TracepointGroup, TracepointLink};

fn root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn syscall_tracepoint_on_the_fly() {
    if !root() {
        skip::skip(skip::Need::Root, "needs root (BPF, tracepoints)");
        return;
    }
    let prog = minprog::load_noop(minprog::PROG_TYPE_TRACEPOINT).expect("load");
    let _stats = minprog::enable_stats().expect("stats");
    let tps = otf_tracepoint::resolve("syscalls:sys_enter_getppid").expect("resolve");
    assert_eq!(tps, vec![Tracepoint::new("syscalls", "sys_enter_getppid")]);
    let entry = ProbeEntry::new(
        0,
        Some(0),
        Flavor::Tracepoint,
        "kernel.trace(\"sys_enter_getppid\")",
    );
    let mut g =
        TracepointGroup::new(prog.as_fd(), None, vec![(entry, tps[0].clone())]).expect("group");
    let mut armed = ArmedSet::new();
    let runs = || minprog::run_count(prog.as_fd()).expect("run count");

    let (plan, _) = plan_and_apply(&mut g, &mut armed, &[false], true);
    assert_eq!(
        plan.decisions().next().map(|d| d.to_string()).as_deref(),
        Some("otf: not registering (tracepoint) pidx 0")
    );
    assert!(!g.is_attached(0));
    minprog::getppid_times(100);
    assert_eq!(runs(), 0);

    let (_, r) = plan_and_apply(&mut g, &mut armed, &[true], false);
    assert_eq!(r.failures().count(), 0, "{r:?}");
    assert!(g.is_attached(0));
    minprog::getppid_times(100);
    assert!(
        runs() >= 100,
        "armed probe ran {} times for 100 calls",
        runs()
    );

    // How long the disarm takes (it hands the detach to a background closer) is a
    // performance property: `cargo xtask bench --only flip-latency` measures it; here it is
    // only printed.
    let t = Instant::now();
    let (plan, r) = plan_and_apply(&mut g, &mut armed, &[false], false);
    eprintln!("disarm planned and applied in {:?}", t.elapsed());
    assert_eq!(
        plan.decisions().next().map(|d| d.to_string()).as_deref(),
        Some("otf: unregistering (tracepoint) pidx 0")
    );
    assert_eq!(r.failures().count(), 0);
    // The link is released in the background; it stops firing once its close begins.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let before = runs();
        minprog::getppid_times(100);
        if runs() == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "disarmed probe still runs after 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Release waits for everything.
    let plan = g.plan_release(&armed);
    let r = g.apply(&plan);
    assert_eq!(r.failures().count(), 0);
}

#[test]
fn raw_tracepoint_with_cookie_and_concurrent_release() {
    if !root() {
        skip::skip(skip::Need::Root, "needs root (BPF, tracepoints)");
        return;
    }
    let perf = minprog::load_noop(minprog::PROG_TYPE_TRACEPOINT).expect("load");
    let raw = minprog::load_noop(minprog::PROG_TYPE_RAW_TRACEPOINT).expect("load raw");
    let tp = Tracepoint::new("sched", "sched_process_fork");
    let l = TracepointLink::attach_raw(raw.as_fd(), &tp, 7).expect("raw_tp with cookie");
    assert_eq!(l.mode(), AttachMode::Raw);
    drop(l);

    // Many perf tracepoint links released together: all gone when close_all returns.
    let tps = otf_tracepoint::resolve("syscalls:sys_enter_get*").expect("resolve");
    assert!(tps.len() >= 4);
    let links: Vec<_> = tps
        .iter()
        .enumerate()
        .map(|(i, tp)| TracepointLink::attach_perf(perf.as_fd(), tp, i as u64).expect("attach"))
        .collect();
    let n = links.len();
    let t = Instant::now();
    otf_attach::close::close_all(links, otf_attach::close::CLOSE_THREADS);
    let took = t.elapsed();
    eprintln!("released {n} perf tracepoint links in {took:?}");
    let _stats = minprog::enable_stats().expect("stats");
    let before = minprog::run_count(perf.as_fd()).expect("run count");
    minprog::getppid_times(100);
    assert_eq!(minprog::run_count(perf.as_fd()).expect("run count"), before);
}

#[test]
fn probes_on_one_perf_tracepoint_share_an_attachment() {
    if !root() {
        skip::skip(skip::Need::Root, "needs root (BPF, tracepoints)");
        return;
    }
    let prog = minprog::load_noop(minprog::PROG_TYPE_TRACEPOINT).expect("load");
    let tp = Tracepoint::new("syscalls", "sys_enter_getppid");
    let chains = otf_tracepoint::perf_chains(&[(4, tp.clone()), (7, tp.clone())], true);
    assert_eq!(chains, vec![vec![4, 7]]);
    let e = |p, c| {
        ProbeEntry::new(
            p,
            Some(c),
            Flavor::Tracepoint,
            "kernel.trace(\"sys_enter_getppid\")",
        )
    };
    let mut g = TracepointGroup::new(
        prog.as_fd(),
        None,
        vec![(e(4, 0), tp.clone()), (e(7, 1), tp.clone())],
    )
    .expect("group");
    let mut armed = ArmedSet::new();
    let mut step = |conds: &[bool], start: bool, armed: &mut ArmedSet| {
        let (_, r) = plan_and_apply(&mut g, armed, conds, start);
        assert_eq!(r.failures().count(), 0, "{r:?}");
        (g.is_attached(4), g.is_attached(7))
    };
    // Both armed: one attachment (a second would be EEXIST).
    assert_eq!(step(&[true, true], true, &mut armed), (true, true));
    // One disarmed: the attachment stays for the other.
    assert_eq!(step(&[false, true], false, &mut armed), (true, true));
    // Swap in one refresh: still attached, no kernel operation needed.
    assert_eq!(step(&[true, false], false, &mut armed), (true, true));
    // Both off: detached; both on again right away (the old link may still be closing).
    assert_eq!(step(&[false, false], false, &mut armed), (false, false));
    assert_eq!(step(&[true, true], false, &mut armed), (true, true));
    let plan = g.plan_release(&armed);
    assert_eq!(g.apply(&plan).failures().count(), 0);
    assert!(!g.is_attached(4));
}

/// Every `syscalls:sys_enter_*`/`sys_exit_*` tracepoint of this kernel maps to a syscall number
/// ([`otf_tracepoint::syscall_nr`]), entry and exit of one syscall to the same one, and no two
/// syscalls to one number; and the numbers are the kernel's: a perf tracepoint on the mapped
/// name fires for `syscall(nr)` (a handful, including an aliased name).
#[test]
fn syscall_tracepoint_names_map_to_this_kernels_numbers() {
    if !root() {
        skip::skip(skip::Need::Root, "needs root (tracefs, BPF)");
        return;
    }
    use otf_tracepoint::{syscall_nr, syscall_of, SyscallDir};
    use std::collections::HashMap;
    let tps = otf_tracepoint::resolve("syscalls:*").expect("resolve");
    let mut by_name: HashMap<(SyscallDir, String), u32> = HashMap::new();
    let mut unmapped = Vec::new();
    for tp in &tps {
        let Some((dir, name)) = syscall_of(tp) else {
            continue;
        };
        match syscall_nr(tp) {
            Some((_, nr)) => {
                by_name.insert((dir, name.to_string()), nr);
            }
            None => unmapped.push(tp.to_string()),
        }
    }
    assert!(unmapped.is_empty(), "unmapped: {unmapped:?}");
    assert!(by_name.len() > 600, "{} syscall tracepoints", by_name.len());
    for dir in [SyscallDir::Enter, SyscallDir::Exit] {
        let mut nrs: Vec<u32> = by_name
            .iter()
            .filter(|((d, _), _)| *d == dir)
            .map(|(_, nr)| *nr)
            .collect();
        let n = nrs.len();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), n, "{dir:?}: two names share a number");
    }
    for ((dir, name), nr) in &by_name {
        if *dir == SyscallDir::Enter {
            assert_eq!(
                by_name.get(&(SyscallDir::Exit, name.clone())),
                Some(nr),
                "{name}"
            );
        }
    }
    // The numbers against the kernel: the perf tracepoint of the mapped name counts the calls
    // made by number (the counting program counts every process's calls, so at least).
    let prog = minprog::load_noop(minprog::PROG_TYPE_TRACEPOINT).expect("load");
    let _stats = minprog::enable_stats().expect("stats");
    for name in ["getppid", "getpgrp", "newuname", "getpgid"] {
        let tp = Tracepoint::new("syscalls", &format!("sys_enter_{name}"));
        let nr = by_name[&(SyscallDir::Enter, name.to_string())];
        let link = TracepointLink::attach_perf(prog.as_fd(), &tp, 0).expect("attach");
        let before = minprog::run_count(prog.as_fd()).expect("run count");
        let mut uts = [0u8; 512];
        for _ in 0..50 {
            // SAFETY: uname gets a 512-byte buffer (struct utsname is 390 bytes); getppid and
            // getpgrp ignore the argument, getpgid takes it as a pid (ESRCH, no effect).
            unsafe { libc::syscall(libc::c_long::from(nr), uts.as_mut_ptr()) };
        }
        let runs = minprog::run_count(prog.as_fd()).expect("run count") - before;
        drop(link);
        assert!(runs >= 50, "{tp}: {runs} runs for 50 calls of syscall {nr}");
    }
}
