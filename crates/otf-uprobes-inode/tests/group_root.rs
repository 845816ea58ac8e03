//! Root tests on the real kernel: the UprobeGroup arms, disarms, batches and survives a
//! deleted binary. Hits are counted by the tiny counting program of `sys::counting` (the same
//! cookie = pidx contract as the otf-bpf runtime). Skipped with a note when not root.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use otf_attach::sys::counting::CountingProgram;
use otf_attach::sys::ProgKind;
use otf_attach::table::TablePolicy;
use otf_core::{plan_and_apply, ArmedSet, Pidx, ProbeGroup};
use otf_uprobes_inode::{resolve, UprobeGroup, UprobePrograms, UprobeSpec};

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

/// Serialises process spawning with link closing inside this test binary. A child between
/// fork and exec holds copies of every descriptor of the parent, close-on-exec or not, so a link
/// closed by one test while another test spawns a process stays attached until that child execs;
/// a test then sees a "disarmed" probe fire. (docs/uprobes.md, "Known limits".)
static FORK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn forks() -> std::sync::MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let r = unsafe { libc::geteuid() } == 0;
    if !r {
        skip::skip(skip::Need::Root, "needs root (attaching uprobes)");
    }
    r
}

/// A C program with `n` functions `fn_0..fn_{n-1}`. `prog K` calls each K times; `prog -i`
/// reads a count per line from stdin, calls each that many times and prints `ok`.
fn build(dir: &Path, n: usize) -> PathBuf {
    let mut src = String::from("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n");
    for i in 0..n {
        src += &format!("__attribute__((noinline)) int fn_{i}(int x) {{ return x + {i}; }}\n");
    }
    src += "typedef int (*f_t)(int);\nstatic f_t fns[] = {";
    for i in 0..n {
        src += &format!("fn_{i},");
    }
    src += "};\nstatic int run(int k){int s=0;for(int j=0;j<k;j++)for(unsigned i=0;i<sizeof fns/sizeof *fns;i++)s+=fns[i](j);return s;}\n";
    src += "int main(int argc,char**argv){if(argc>1&&!strcmp(argv[1],\"-i\")){char l[64];while(fgets(l,sizeof l,stdin)){run(atoi(l));printf(\"ok\\n\");fflush(stdout);}return 0;}return run(argc>1?atoi(argv[1]):1)&1;}\n";
    let c = dir.join("t.c");
    std::fs::write(&c, src).unwrap();
    let bin = dir.join("t");
    let _g = forks();
    assert!(Command::new("gcc")
        .args(["-O0", "-o"])
        .arg(&bin)
        .arg(&c)
        .status()
        .unwrap()
        .success());
    bin
}

struct Progs {
    all: Vec<CountingProgram>,
}

impl Progs {
    fn load(slots: u32) -> (Progs, UprobePrograms) {
        let p = |k| CountingProgram::load(k, slots).unwrap();
        let all = vec![
            p(ProgKind::Perf),
            p(ProgKind::Perf),
            p(ProgKind::UprobeMulti),
            p(ProgKind::UprobeMulti),
        ];
        let fd = |i: usize| all[i].prog().try_clone_to_owned().unwrap();
        let progs = UprobePrograms {
            entry: fd(0),
            ret: fd(1),
            entry_multi: Some(fd(2)),
            ret_multi: Some(fd(3)),
        };
        (Progs { all }, progs)
    }
    fn hits(&self, pidx: Pidx) -> u64 {
        self.all.iter().map(|p| p.hits(pidx).unwrap()).sum()
    }
}

fn run(bin: &Path, k: u32) {
    let _g = forks();
    Command::new(bin).arg(k.to_string()).status().unwrap();
}

/// Plans and applies like the scheduler does, recording into `armed`.
fn step(g: &mut UprobeGroup, armed: &mut ArmedSet, conds: &[bool], start: bool) -> Vec<String> {
    let (plan, report) = {
        let _g = forks();
        plan_and_apply(g, armed, conds, start)
    };
    assert_eq!(report.failures().count(), 0, "{report:?}");
    // Disarmed links close in the background: the tests look at the kernel once they are gone.
    g.wait_closed();
    plan.decisions().map(|d| d.to_string()).collect()
}

#[test]
fn arm_disarm_counts_hits_entry_and_return() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = build(dir.path(), 3);
    let p = bin.to_str().unwrap();
    let call = resolve(p, "fn_1", false).unwrap().remove(0);
    let ret = resolve(p, "fn_1", true).unwrap().remove(0);
    let (progs, programs) = Progs::load(16);
    let specs = vec![
        UprobeSpec {
            pidx: 0,
            cond: Some(0),
            target: call,
            entry_save: false,
        },
        UprobeSpec {
            pidx: 1,
            cond: Some(1),
            target: ret,
            entry_save: false,
        },
    ];
    let mut g = UprobeGroup::new(specs, programs).unwrap();
    let mut armed = ArmedSet::new();
    let lines = step(&mut g, &mut armed, &[true, false], true);
    assert_eq!(lines, ["otf: not registering (uretprobe) pidx 1"]);
    assert!(g.is_attached(0) && !g.is_attached(1));
    run(&bin, 5);
    assert_eq!((progs.hits(0), progs.hits(1)), (5, 0));

    let lines = step(&mut g, &mut armed, &[false, true], false);
    assert_eq!(
        lines,
        [
            "otf: unregistering (uprobe) pidx 0",
            "otf: registering (uretprobe) pidx 1"
        ]
    );
    run(&bin, 5);
    assert_eq!((progs.hits(0), progs.hits(1)), (5, 5));

    // on -> off -> on between refreshes coalesces: nothing to do.
    let lines = step(&mut g, &mut armed, &[false, true], false);
    assert!(lines.is_empty());

    let plan = g.plan_release(&armed);
    let report = {
        let _g = forks();
        g.apply(&plan)
    };
    assert_eq!(report.failures().count(), 0);
    assert!(g.link_sizes().is_empty());
    run(&bin, 5);
    assert_eq!((progs.hits(0), progs.hits(1)), (5, 5));
}

#[test]
fn entry_save_attaches_the_entry_too() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = build(dir.path(), 2);
    let ret = resolve(bin.to_str().unwrap(), "fn_0", true)
        .unwrap()
        .remove(0);
    let (progs, programs) = Progs::load(4);
    let mut g = UprobeGroup::new(
        vec![UprobeSpec {
            pidx: 2,
            cond: None,
            target: ret,
            entry_save: true,
        }],
        programs,
    )
    .unwrap();
    let mut armed = ArmedSet::new();
    step(&mut g, &mut armed, &[], true);
    assert_eq!(g.link_sizes(), [1, 1], "one return link and one entry link");
    run(&bin, 3);
    // Three calls: three entry hits and three return hits, all with cookie 2.
    let entry = progs.all[0].hits(2).unwrap() + progs.all[2].hits(2).unwrap();
    let ret = progs.all[1].hits(2).unwrap() + progs.all[3].hits(2).unwrap();
    assert_eq!((entry, ret), (3, 3));
}

/// 500 functions sharing one condition: one uprobe_multi link, switched in one grace period.
/// Prints the timings (no timing assertions).
#[test]
fn batch_refresh_of_500_functions() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = build(dir.path(), 500);
    let targets = resolve(bin.to_str().unwrap(), "fn_*", false).unwrap();
    assert_eq!(targets.len(), 500);
    let specs = |cond_per_fn: bool| {
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| UprobeSpec {
                pidx: i as Pidx,
                cond: Some(if cond_per_fn { i as u32 } else { 0 }),
                target: t.clone(),
                entry_save: false,
            })
            .collect::<Vec<_>>()
    };
    let on_all = vec![true; 500];
    let off_all = vec![false; 500];

    for (name, policy, per_fn, n) in [
        (
            "uprobe_multi (default policy)",
            TablePolicy::default(),
            false,
            500,
        ),
        (
            "one uprobe_multi link per condition, concurrent close",
            TablePolicy::default(),
            true,
            500,
        ),
        (
            "one uprobe_multi link per condition, serial close",
            TablePolicy {
                min_multi: 1,
                max_close_threads: 1,
            },
            true,
            20,
        ),
        (
            "single perf links, concurrent close",
            TablePolicy {
                min_multi: usize::MAX,
                max_close_threads: 256,
            },
            true,
            50,
        ),
        (
            "single perf links, serial close",
            TablePolicy {
                min_multi: usize::MAX,
                max_close_threads: 1,
            },
            true,
            20,
        ),
    ] {
        let (progs, programs) = Progs::load(512);
        let mut g =
            UprobeGroup::new(specs(per_fn).into_iter().take(n).collect(), programs).unwrap();
        g.set_policy(policy);
        let mut armed = ArmedSet::new();
        step(&mut g, &mut armed, &off_all, true);
        let t = Instant::now();
        step(&mut g, &mut armed, &on_all, false);
        let arm = t.elapsed();
        let sizes = g.link_sizes();
        run(&bin, 2);
        for p in 0..n as Pidx {
            assert_eq!(progs.hits(p), 2, "pidx {p}");
        }
        let t = Instant::now();
        step(&mut g, &mut armed, &off_all, false);
        let disarm = t.elapsed();
        assert!(g.link_sizes().is_empty());
        run(&bin, 2);
        assert_eq!(progs.hits(0), 2, "{name}: a disarmed probe fired");
        println!(
            "MEASURE {name}: {n} functions in {} link(s): arm {:.1} ms, disarm {:.1} ms",
            sizes.len(),
            arm.as_secs_f64() * 1e3,
            disarm.as_secs_f64() * 1e3
        );
        if !per_fn {
            assert_eq!(sizes, [500]);
        }
    }
}

/// Splitting a multi link: disarming part of one keeps the rest counting.
#[test]
fn disarming_part_of_a_multi_link_keeps_the_rest() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = build(dir.path(), 4);
    let targets = resolve(bin.to_str().unwrap(), "fn_*", false).unwrap();
    let (progs, programs) = Progs::load(8);
    let specs = targets
        .into_iter()
        .enumerate()
        .map(|(i, t)| UprobeSpec {
            pidx: i as Pidx,
            cond: Some(0),
            target: t,
            entry_save: false,
        })
        .collect();
    let mut g = UprobeGroup::new(specs, programs).unwrap();
    let mut armed = ArmedSet::new();
    step(&mut g, &mut armed, &[true], true);
    assert_eq!(g.link_sizes(), [4]);
    // A plan disarming only pidx 1 and 3 (as a retry or a hand-made plan would).
    let plan = otf_core::Plan {
        phase: otf_core::Phase::Refresh,
        actions: [1, 3]
            .iter()
            .map(|&pidx| otf_core::Action {
                pidx,
                op: otf_core::Op::Disarm,
                decision: None,
            })
            .collect(),
    };
    let report = {
        let _g = forks();
        g.apply(&plan)
    };
    assert_eq!(report.failures().count(), 0);
    assert_eq!(g.last_apply().resplit, 2);
    println!(
        "MEASURE split of a 4-member uprobe_multi link (2 disarmed, 2 re-attached): {:.1} ms",
        g.last_apply().elapsed.as_secs_f64() * 1e3
    );
    assert_eq!(g.link_sizes(), [2]);
    run(&bin, 3);
    let hits: Vec<u64> = (0..4).map(|p| progs.hits(p)).collect();
    assert_eq!(hits, [3, 0, 3, 0]);
    assert!(g.take_warnings().is_empty());
}

/// The probed binary is deleted, then replaced, while a process runs it and its probe is armed:
/// nothing crashes, the probe keeps counting on the inode resolved at start, and it can be
/// disarmed and re-armed on that inode.
#[test]
fn deleted_and_replaced_binary_does_not_break_the_group() {
    if !root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = build(dir.path(), 2);
    let t = resolve(bin.to_str().unwrap(), "fn_0", false)
        .unwrap()
        .remove(0);
    let (progs, programs) = Progs::load(4);
    let mut g = UprobeGroup::new(
        vec![UprobeSpec {
            pidx: 0,
            cond: Some(0),
            target: t,
            entry_save: false,
        }],
        programs,
    )
    .unwrap();
    let mut armed = ArmedSet::new();
    step(&mut g, &mut armed, &[true], true);

    let spawn_guard = forks();
    let mut child = Command::new(&bin)
        .arg("-i")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(spawn_guard);
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut talk = |k: u32| {
        writeln!(stdin, "{k}").unwrap();
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        assert_eq!(l.trim(), "ok");
    };
    talk(2);
    assert_eq!(progs.hits(0), 2);

    std::fs::remove_file(&bin).unwrap();
    talk(3);
    assert_eq!(
        progs.hits(0),
        5,
        "armed probe keeps firing on the deleted inode"
    );

    step(&mut g, &mut armed, &[false], false);
    talk(1);
    assert_eq!(progs.hits(0), 5);
    step(&mut g, &mut armed, &[true], false);
    talk(4);
    assert_eq!(
        progs.hits(0),
        9,
        "re-armed on the deleted inode through the open descriptor"
    );

    // Replace the path with another program: the old inode stays probed, the new one is not.
    let other = build(&dir.path().join("x").tap_mkdir(), 2);
    std::fs::rename(&other, &bin).unwrap();
    talk(1);
    assert_eq!(progs.hits(0), 10);
    run(&bin, 5);
    assert_eq!(
        progs.hits(0),
        10,
        "the replacement file is a different inode"
    );
    drop(stdin);
    child.wait().unwrap();
    let plan = g.plan_release(&armed);
    assert_eq!(forks_apply(&mut g, &plan).failures().count(), 0);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

fn forks_apply(g: &mut UprobeGroup, plan: &otf_core::Plan) -> otf_core::ApplyReport {
    let _g = forks();
    g.apply(plan)
}
