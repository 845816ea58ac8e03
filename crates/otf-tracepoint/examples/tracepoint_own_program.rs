//! Reusing otf-tracepoint with your own BPF program: `syscalls:sys_enter_getppid` armed,
//! disarmed and re-armed on the fly through the otf-core `ProbeGroup` interface, with the
//! attach and detach times. Run as root:
//!
//! ```text
//! cargo run -p otf-tracepoint --example tracepoint_own_program
//! ```

use otf_attach::testprog as minprog;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use otf_core::{plan_and_apply, ArmedSet, Flavor, ProbeEntry};
use otf_tracepoint::TracepointGroup;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Your programs: a BPF_PROG_TYPE_TRACEPOINT program (and optionally a raw_tp one). They
    // can read the probe's pidx with bpf_get_attach_cookie(ctx).
    let prog = minprog::load_noop(minprog::PROG_TYPE_TRACEPOINT)?;
    let raw = minprog::load_noop(minprog::PROG_TYPE_RAW_TRACEPOINT)?;
    let _stats = minprog::enable_stats()?;

    let pattern = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "sys_enter_getppid".into());
    let tps = otf_tracepoint::resolve(&pattern)?;
    println!("{pattern} matches {} tracepoint(s)", tps.len());
    let probes = tps
        .into_iter()
        .enumerate()
        .map(|(i, tp)| {
            let desc = format!("kernel.trace(\"{tp}\")");
            (
                ProbeEntry::new(i as u32, Some(0), Flavor::Tracepoint, desc),
                tp,
            )
        })
        .collect();
    let mut group = TracepointGroup::new(prog.as_fd(), Some(raw.as_fd()), probes)?;
    let mut armed = ArmedSet::new();

    let mut step = |cond: bool, start: bool, armed: &mut ArmedSet| {
        let t = Instant::now();
        let (plan, report) = plan_and_apply(&mut group, armed, &[cond], start);
        let took = t.elapsed();
        for line in plan.decisions().take(3) {
            println!("{line}");
        }
        for f in report.failures().take(3) {
            println!(
                "failed: pidx {}: {}",
                f.pidx,
                f.error.as_deref().unwrap_or("")
            );
        }
        // A disarmed probe stops firing within about a millisecond of the refresh.
        std::thread::sleep(Duration::from_millis(5));
        let before = minprog::run_count(prog.as_fd()).unwrap_or(0)
            + minprog::run_count(raw.as_fd()).unwrap_or(0);
        minprog::getppid_times(1000);
        let after = minprog::run_count(prog.as_fd()).unwrap_or(0)
            + minprog::run_count(raw.as_fd()).unwrap_or(0);
        println!(
            "condition {cond}: apply took {took:?}; {} program runs during 1000 getppid() calls",
            after - before
        );
    };
    step(false, true, &mut armed); // not registering
    step(true, false, &mut armed); // registering
    step(false, false, &mut armed); // unregistering
    step(true, false, &mut armed); // registering again
    step(false, false, &mut armed);
    Ok(())
}
