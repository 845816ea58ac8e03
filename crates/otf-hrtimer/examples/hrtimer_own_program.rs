//! Reusing otf-hrtimer with your own BPF program: a 5 ms timer armed, disarmed and re-armed on
//! the fly through the otf-core `ProbeGroup` interface. Run as root:
//!
//! ```text
//! cargo run -p otf-hrtimer --example hrtimer_own_program
//! ```

use otf_attach::testprog as minprog;

use std::os::fd::AsFd;
use std::time::Duration;

use otf_core::{plan_and_apply, ArmedSet, Flavor, ProbeEntry};
use otf_hrtimer::{HrtimerGroup, TimerKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Your program: any BPF_PROG_TYPE_PERF_EVENT program. It can read its probe's pidx with
    // bpf_get_attach_cookie(ctx).
    let prog = minprog::load_noop(minprog::PROG_TYPE_PERF_EVENT)?;
    let _stats = minprog::enable_stats()?;

    // One timer probe, pidx 0, gated by condition 0.
    let kind = TimerKind::Periodic {
        period_ns: 5_000_000,
    };
    let probes = otf_hrtimer::resolve(kind)
        .into_iter()
        .map(|a| {
            (
                ProbeEntry::new(0, Some(0), Flavor::Hrtimer, "timer.ms(5)"),
                a,
            )
        })
        .collect();
    let mut group = HrtimerGroup::new(prog.as_fd(), probes)?;
    let mut armed = ArmedSet::new();

    let mut step = |cond: bool, start: bool, armed: &mut ArmedSet| {
        let t = std::time::Instant::now();
        let (plan, _) = plan_and_apply(&mut group, armed, &[cond], start);
        let took = t.elapsed();
        for line in plan.decisions() {
            println!("{line}");
        }
        std::thread::sleep(Duration::from_millis(200));
        let runs = minprog::run_count(prog.as_fd()).unwrap_or(0);
        println!("condition {cond}: apply took {took:?}; program has run {runs} times");
    };
    step(false, true, &mut armed); // not starting: 0 runs
    step(true, false, &mut armed); // enabling: ~40 runs
    step(false, false, &mut armed); // disabling: no more runs
    step(true, false, &mut armed); // enabling again
    Ok(())
}
