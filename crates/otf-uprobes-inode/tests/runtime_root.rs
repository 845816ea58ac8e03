//! Root: the UprobeGroup drives the real otf-bpf runtime's handler programs. Hits are the
//! runtime's own per-pidx counters (cookie = pidx; entry part = pidx | COOKIE_ENTRY).

use std::process::Command;

use otf_bpf::{LoadOptions, ProbeSlot, ProgKind, Runtime, RuntimeImage};
use otf_core::{plan_and_apply, ArmedSet, ProbeGroup};
use otf_script::bytecode::{Insn, Op};
use otf_uprobes_inode::{resolve, UprobeGroup, UprobePrograms, UprobeSpec};

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

/// The one function the orchestrator needs: the runtime's uprobe handlers as descriptors.
fn programs(rt: &Runtime) -> UprobePrograms {
    let fd = |k| rt.program(k).map(|p| p.try_clone_to_owned().unwrap());
    UprobePrograms {
        entry: fd(ProgKind::Uprobe).unwrap(),
        ret: fd(ProgKind::Uretprobe).unwrap(),
        entry_multi: fd(ProgKind::UprobeMulti),
        ret_multi: fd(ProgKind::UretprobeMulti),
    }
}

#[test]
fn group_counts_hits_in_the_otf_runtime() {
    if !skip::need_root("attaching uprobes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t.c");
    std::fs::write(
        &src,
        "__attribute__((noinline)) int work(int x){return x*7;}\nvolatile int sink;\n\
         int main(int c,char**v){(void)v;for(int i=0;i<c*4;i++)sink+=work(i);return 0;}\n",
    )
    .unwrap();
    let bin = dir.path().join("t");
    assert!(Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let p = bin.to_str().unwrap();

    let image = RuntimeImage {
        probes: vec![
            ProbeSlot::default(),
            ProbeSlot {
                is_return: true,
                ..ProbeSlot::default()
            },
            // A return probe with an entry program (`@entry`): the entry part runs `Next`.
            ProbeSlot {
                is_return: true,
                entry: Some(0),
                ..ProbeSlot::default()
            },
        ],
        code: vec![Insn::op(Op::Next)],
        ..RuntimeImage::default()
    };
    let opts = LoadOptions {
        kinds: vec![
            ProgKind::Uprobe,
            ProgKind::Uretprobe,
            ProgKind::UprobeMulti,
            ProgKind::UretprobeMulti,
        ],
        ..LoadOptions::default()
    };
    let rt = match Runtime::load_with(&image, &opts) {
        Ok(rt) => rt,
        Err(e) => panic!("otf-bpf runtime does not load: {e}"),
    };
    let specs = vec![
        UprobeSpec {
            pidx: 0,
            cond: Some(0),
            target: resolve(p, "work", false).unwrap().remove(0),
            entry_save: false,
        },
        UprobeSpec {
            pidx: 1,
            cond: Some(1),
            target: resolve(p, "work", true).unwrap().remove(0),
            entry_save: false,
        },
        UprobeSpec {
            pidx: 2,
            cond: None,
            target: resolve(p, "work", true).unwrap().remove(0),
            entry_save: true,
        },
    ];
    let mut g = UprobeGroup::new(specs, programs(&rt)).unwrap();
    let mut armed = ArmedSet::new();
    let mut step = |g: &mut UprobeGroup, conds: &[bool], start: bool| {
        let (_, report) = plan_and_apply(g, &mut armed, conds, start);
        assert_eq!(report.failures().count(), 0, "{report:?}");
        // Disarmed links close in the background: look at the kernel once they are gone.
        g.wait_closed();
    };
    step(&mut g, &[true, false], true);
    Command::new(&bin).status().unwrap(); // argc = 1: 4 calls
    assert_eq!((rt.counters(0).hits, rt.counters(1).hits), (4, 0));
    step(&mut g, &[false, true], false);
    Command::new(&bin).arg("x").status().unwrap(); // argc = 2: 8 calls
    assert_eq!((rt.counters(0).hits, rt.counters(1).hits), (4, 8));
    assert_eq!(rt.error_counters().bad_cookie, 0);
    // The @entry probe: 12 returns, and its entry part ran at each of the 12 entries.
    assert_eq!((rt.counters(2).hits, rt.counters(2).entry_runs), (12, 12));
    let plan = g.plan_release(&armed);
    assert_eq!(g.apply(&plan).failures().count(), 0);
    Command::new(&bin).status().unwrap();
    assert_eq!((rt.counters(0).hits, rt.counters(1).hits), (4, 8));
}
