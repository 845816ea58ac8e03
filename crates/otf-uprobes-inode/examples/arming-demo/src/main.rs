//! Example: a Rust tool with **its own BPF program** (src/bpf/demo.bpf.c) that gets
//! on-the-fly uprobe arming from `otf-uprobes-inode` + `otf-core`.
//!
//! ```text
//! otf-arming-demo BINARY [STEP ...]      STEP = "hot N" | "toggle" (default: a fixed scenario)
//! ```
//!
//! `BINARY` must define `fn_toggle` and `fn_hot` and, run as `BINARY hot N` / `BINARY toggle`,
//! call them. The tool probes `fn_toggle` always, and `fn_hot` only while the BPF-side flag
//! `tracing` is set: `fn_toggle`'s probe flips the flag and asks for a refresh (otf_arming.h);
//! the tool wakes on the ring buffer, plans with otf-core and applies with the `UprobeGroup`, so
//! `fn_hot` is attached only while it is traced and costs nothing otherwise.

use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::RingBufferBuilder;
use otf_core::{plan_and_apply, ArmedSet, ProbeGroup};
use otf_uprobes_inode::{resolve, UprobeGroup, UprobePrograms, UprobeSpec};

/// The generated skeleton of src/bpf/demo.bpf.c.
#[allow(clippy::all, clippy::undocumented_unsafe_blocks, missing_docs)]
mod demo {
    include!(concat!(env!("OUT_DIR"), "/demo.skel.rs"));
}
use demo::DemoSkelBuilder;

/// A `u64` of the mmapped `.bss`, shared with the BPF program.
fn shared(p: &mut u64) -> &AtomicU64 {
    // SAFETY: `p` is a valid, aligned u64 of the mmapped .bss that lives as long as the
    // skeleton; the kernel updates it concurrently, so it is only accessed atomically.
    unsafe { AtomicU64::from_ptr(p) }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(binary) = args.next() else {
        bail!("usage: otf-arming-demo BINARY [\"hot N\" | \"toggle\" ...]");
    };
    let mut steps: Vec<String> = args.collect();
    if steps.is_empty() {
        steps = ["hot 5", "toggle", "hot 5", "toggle", "hot 5"]
            .map(String::from)
            .to_vec();
    }

    // 1. Resolve the two functions (pure user space).
    let toggle = resolve(&binary, "fn_toggle", false)?.remove(0);
    let hot = resolve(&binary, "fn_hot", false)?.remove(0);

    // 2. Load our own BPF program.
    let mut storage = MaybeUninit::uninit();
    let mut skel = DemoSkelBuilder::default()
        .open(&mut storage)?
        .load()
        .context("load demo.bpf.c")?;
    let fd = |p: &libbpf_rs::ProgramMut<'_>| p.as_fd().try_clone_to_owned();
    let programs = UprobePrograms {
        entry: fd(&skel.progs.demo_uprobe)?,
        ret: fd(&skel.progs.demo_uretprobe)?,
        entry_multi: Some(fd(&skel.progs.demo_uprobe_multi)?),
        ret_multi: Some(fd(&skel.progs.demo_uretprobe_multi)?),
    };
    let bss = skel
        .maps
        .bss_data
        .as_deref_mut()
        .context(".bss not mmapped")?;
    let bss: *mut demo::types::bss = bss;
    // SAFETY: `bss` points into the skeleton's mmapped .bss, valid until `skel` drops at the end
    // of main; every access goes through atomics.
    let (tracing, need_refresh, hot_hits, toggles) = unsafe {
        (
            shared(&mut (*bss).tracing),
            shared(&mut (*bss).otf_need_refresh),
            shared(&mut (*bss).hot_hits),
            shared(&mut (*bss).toggles),
        )
    };

    // 3. The probe group: pidx 0 always armed, pidx 1 gated by condition 0 (`tracing`).
    let mut group = UprobeGroup::new(
        vec![
            UprobeSpec {
                pidx: 0,
                cond: None,
                target: toggle,
                entry_save: false,
            },
            UprobeSpec {
                pidx: 1,
                cond: Some(0),
                target: hot,
                entry_save: false,
            },
        ],
        programs,
    )?;
    let mut armed = ArmedSet::new();
    let mut refresh = |group: &mut UprobeGroup, start: bool| {
        let conditions = [tracing.load(Ordering::Relaxed) != 0];
        let (plan, report) = plan_and_apply(group, &mut armed, &conditions, start);
        for line in plan.decisions() {
            println!("{line}");
        }
        for f in report.failures() {
            eprintln!(
                "warning: pidx {}: {}",
                f.pidx,
                f.error.as_deref().unwrap_or("")
            );
        }
    };
    refresh(&mut group, true);

    // 4. Notifications from the BPF side wake us at once; need_refresh is the source of truth.
    let mut rb = RingBufferBuilder::new();
    rb.add(&skel.maps.otf_notify, |_rec: &[u8]| 0)?;
    let rb = rb.build()?;

    for step in &steps {
        let status = Command::new(&binary)
            .args(step.split_whitespace())
            .status()?;
        if !status.success() {
            bail!("{binary} {step}: {status}");
        }
        rb.poll(Duration::from_millis(200))?;
        if need_refresh.swap(0, Ordering::AcqRel) != 0 {
            refresh(&mut group, false);
        }
        println!(
            "after `{step}`: tracing={} fn_hot attached={} hot_hits={}",
            tracing.load(Ordering::Relaxed),
            group.is_attached(1),
            hot_hits.load(Ordering::Relaxed)
        );
    }
    println!(
        "hot_hits={} toggles={}",
        hot_hits.load(Ordering::Relaxed),
        toggles.load(Ordering::Relaxed)
    );
    let plan = group.plan_release(&armed);
    group.apply(&plan);
    Ok(())
}
