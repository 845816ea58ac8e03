//! Root tests of the KprobeGroup on the real kernel.
//!
//! On a kernel without CONFIG_KPROBES (this development machine) the tests check that arming
//! fails with the clear message and print a note. With `OTF_IN_VM=1` (the `cargo xtask vm`
//! kernel, which has kprobes and kprobe_multi) kprobes MUST work and the attach tests run.

use std::time::Instant;

use otf_attach::sys::counting::CountingProgram;
use otf_attach::sys::ProgKind;
use otf_attach::table::TablePolicy;
use otf_attach::testprog::getppid_times;
use otf_core::{plan_and_apply, ArmedSet, Pidx, PlanInput, ProbeGroup};
use otf_kprobes::{
    kprobes_available, KernelSymbols, KprobeGroup, KprobePrograms, KprobeSpec, NO_KPROBES,
};

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let r = unsafe { libc::geteuid() } == 0;
    if !r {
        assert!(
            std::env::var_os("OTF_IN_VM").is_none(),
            "the VM tests run as root"
        );
        skip::skip(skip::Need::Root, "needs root (attaching kprobes)");
    }
    r
}

/// Whether kprobes are here; panics in the VM if they are not (the VM kernel must have them).
fn kprobes_here() -> bool {
    match kprobes_available() {
        Ok(()) => true,
        Err(msg) => {
            assert!(
                std::env::var_os("OTF_IN_VM").is_none(),
                "OTF_IN_VM=1 but: {msg}"
            );
            skip::skip(
                skip::Need::Env,
                &format!("{msg}; kprobe attach tests run in `cargo xtask vm`"),
            );
            false
        }
    }
}

struct Progs {
    all: Vec<CountingProgram>,
}

impl Progs {
    /// Counting programs; the multi ones only if the kernel can load them.
    fn load(slots: u32) -> (Progs, KprobePrograms) {
        let single = |_| CountingProgram::load(ProgKind::Perf, slots).unwrap();
        let mut all = vec![single(0), single(1)];
        let multi = CountingProgram::load(ProgKind::KprobeMulti, slots).ok();
        let multi_ret = CountingProgram::load(ProgKind::KprobeMulti, slots).ok();
        let has_multi = multi.is_some() && multi_ret.is_some();
        all.extend(multi);
        all.extend(multi_ret);
        let fd = |i: usize| all[i].prog().try_clone_to_owned().unwrap();
        let progs = KprobePrograms {
            entry: fd(0),
            ret: fd(1),
            entry_multi: has_multi.then(|| fd(2)),
            ret_multi: has_multi.then(|| fd(3)),
        };
        (Progs { all }, progs)
    }

    fn hits(&self, pidx: Pidx) -> u64 {
        self.all.iter().map(|p| p.hits(pidx).unwrap()).sum()
    }
}

fn getppid_symbol(syms: &KernelSymbols) -> String {
    let r = syms
        .resolve("__*_sys_getppid", false)
        .expect("getppid's syscall entry is probeable");
    r.targets[0].symbol.clone()
}

fn spec(pidx: Pidx, cond: u32, symbol: &str, ret: bool) -> KprobeSpec {
    KprobeSpec {
        pidx,
        cond: Some(cond),
        target: otf_kprobes::KprobeTarget {
            symbol: symbol.to_string(),
            module: None,
            ret,
        },
        entry_save: false,
    }
}

#[test]
fn arming_fails_clearly_without_kprobes() {
    if !root() {
        return;
    }
    if kprobes_available().is_ok() {
        skip::skip(
            skip::Need::Env,
            "this kernel has kprobes; the test is for kernels without them",
        );
        return;
    }
    let (_progs, programs) = Progs::load(4);
    let mut g = KprobeGroup::new(vec![spec(0, 0, "vfs_read", false)], programs).unwrap();
    let armed = ArmedSet::new();
    let input = PlanInput {
        conditions: &[true],
        otf: true,
        armed: &armed,
    };
    let plan = g.plan_start(&input);
    let report = g.apply(&plan);
    let err = report
        .outcome(0)
        .and_then(|o| o.error.clone())
        .expect("attach must fail here");
    println!("arming error on this kernel: {err}");
    assert!(err.contains(NO_KPROBES), "{err}");
    assert!(!g.is_attached(0));
    // Condition false at start: registering as disabled, nothing touched, no failure.
    let input = PlanInput {
        conditions: &[false],
        otf: true,
        armed: &armed,
    };
    let plan = g.plan_start(&input);
    let lines: Vec<String> = plan.decisions().map(|d| d.to_string()).collect();
    assert_eq!(lines, ["otf: registering as disabled (kprobe) pidx 0"]);
    assert_eq!(g.apply(&plan).failures().count(), 0);
}

#[test]
fn kprobe_and_kretprobe_arm_and_disarm() {
    if !root() || !kprobes_here() {
        return;
    }
    let syms = KernelSymbols::load().unwrap();
    let f = getppid_symbol(&syms);
    let (progs, programs) = Progs::load(8);
    let mut g =
        KprobeGroup::new(vec![spec(0, 0, &f, false), spec(1, 1, &f, true)], programs).unwrap();
    let mut armed = ArmedSet::new();
    let mut step = |g: &mut KprobeGroup, conds: &[bool], start: bool| {
        let (plan, report) = plan_and_apply(g, &mut armed, conds, start);
        assert_eq!(report.failures().count(), 0, "{report:?}");
        // Disarmed links close in the background: look at the kernel once they are gone.
        g.wait_closed();
        plan.decisions().map(|d| d.to_string()).collect::<Vec<_>>()
    };
    let lines = step(&mut g, &[true, false], true);
    assert_eq!(lines, ["otf: registering as disabled (kretprobe) pidx 1"]);
    getppid_times(100);
    assert!(progs.hits(0) >= 100, "kprobe counted {}", progs.hits(0));
    assert_eq!(progs.hits(1), 0);

    let lines = step(&mut g, &[false, true], false);
    assert_eq!(
        lines,
        [
            "otf: disabling (kprobe) pidx 0",
            "otf: enabling (kretprobe) pidx 1"
        ]
    );
    // A lone function gets a plain kretprobe, not a one-function kprobe_multi link.
    let stats = g.last_apply();
    assert_eq!((stats.single_links, stats.multi_links), (1, 0), "{stats:?}");
    let before = progs.hits(0);
    getppid_times(100);
    assert!(
        progs.hits(0) - before < 100,
        "disarmed kprobe must not count our calls"
    );
    assert!(progs.hits(1) >= 100);

    let plan = g.plan_release(&armed);
    assert_eq!(g.apply(&plan).failures().count(), 0);
    assert!(g.link_sizes().is_empty());
}

/// Many kernel functions sharing one condition: one kprobe_multi link when the kernel has it.
/// Prints timings, asserts behaviour only.
#[test]
fn batch_of_kernel_functions() {
    if !root() || !kprobes_here() {
        return;
    }
    let syms = KernelSymbols::load().unwrap();
    let targets = syms.resolve("__*_sys_get*", false).unwrap().targets;
    assert!(targets.len() >= 5);
    for policy in [
        TablePolicy::default(),
        TablePolicy {
            min_multi: usize::MAX,
            max_close_threads: 256,
        },
    ] {
        let (progs, programs) = Progs::load(targets.len() as u32 + 1);
        let specs = targets
            .iter()
            .enumerate()
            .map(|(i, t)| spec(i as Pidx, 0, &t.symbol, false))
            .collect::<Vec<_>>();
        let mut g = KprobeGroup::new(specs, programs).unwrap();
        g.set_policy(policy);
        let mut armed = ArmedSet::new();
        let n = targets.len();
        let on = [true];
        let input = PlanInput {
            conditions: &[false],
            otf: true,
            armed: &armed,
        };
        let plan = g.plan_start(&input);
        armed.record(&plan, &g.apply(&plan));
        let t = Instant::now();
        let input = PlanInput {
            conditions: &on,
            otf: true,
            armed: &armed,
        };
        let plan = g.plan_refresh(&input);
        let report = g.apply(&plan);
        let arm = t.elapsed();
        assert_eq!(report.failures().count(), 0, "{report:?}");
        armed.record(&plan, &report);
        let sizes = g.link_sizes();
        getppid_times(10);
        let ppid = targets
            .iter()
            .position(|t| t.symbol.ends_with("sys_getppid"))
            .unwrap();
        assert!(progs.hits(ppid as Pidx) >= 10);
        let t = Instant::now();
        let input = PlanInput {
            conditions: &[false],
            otf: true,
            armed: &armed,
        };
        let plan = g.plan_refresh(&input);
        assert_eq!(g.apply(&plan).failures().count(), 0);
        println!(
            "MEASURE kprobes {policy:?}: {n} functions in {} link(s): arm {:.1} ms, disarm {:.1} ms",
            sizes.len(),
            arm.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
    }
}
