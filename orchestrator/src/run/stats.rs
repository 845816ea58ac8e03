//! `--stats` and the failures reported at the end of a run.

use otf_bpf::Runtime;
use otf_core::Scheduler;

use crate::resolve::Resolved;

use super::*;

pub(super) fn print_stats(
    out: &mut Output,
    rt: &Runtime,
    res: &Resolved,
    sched: &Scheduler,
    lost: &std::collections::BTreeMap<u32, u64>,
) {
    let rows: Vec<_> = res
        .probes
        .iter()
        .map(|p| {
            let c = rt.counters(p.pidx);
            let st = sched.armed().state(p.pidx);
            (
                p,
                c,
                st.map(|s| s.times_armed).unwrap_or(0),
                st.map(|s| s.times_disarmed).unwrap_or(0),
            )
        })
        .collect();
    if out.json {
        for (p, c, a, d) in rows {
            let v = serde_json::json!({
                "type": "stats", "pidx": p.pidx, "point": p.pp, "hits": c.hits,
                "bodies": c.bodies, "skipped_cond": c.skipped_cond,
                "skipped_lock": c.skipped_lock, "skipped_nest": c.skipped_nest,
                "errors": c.errors, "armed": a, "disarmed": d,
                "lost": lost.get(&p.pidx).copied().unwrap_or(0),
            });
            out.write(&format!("{v}\n"));
        }
        for (kind, n) in rt.kernel_misses() {
            let v = serde_json::json!({
                "type": "stats", "program": kind.name(), "skipped_kernel": n,
            });
            out.write(&format!("{v}\n"));
        }
    } else {
        // One column per cause of a hit that did not run its body: its condition, the lock,
        // nesting, and (`lost`) the kernel not running a timer by its due time. Hits the
        // kernel skipped are counted per program, on `#` lines below.
        out.write(&format!(
            "{:>5} {:>10} {:>10} {:>12} {:>12} {:>12} {:>7} {:>8} {:>8}  {}\n",
            "pidx",
            "hits",
            "bodies",
            "skipped_cond",
            "skipped_lock",
            "skipped_nest",
            "armed",
            "disarmed",
            "lost",
            "point"
        ));
        for (p, c, a, d) in rows {
            out.write(&format!(
                "{:>5} {:>10} {:>10} {:>12} {:>12} {:>12} {:>7} {:>8} {:>8}  {}\n",
                p.pidx,
                c.hits,
                c.bodies,
                c.skipped_cond,
                c.skipped_lock,
                c.skipped_nest,
                a,
                d,
                lost.get(&p.pidx).copied().unwrap_or(0),
                p.pp
            ));
        }
        // The kernel counts the hits it did not run per program, not per probe.
        for (kind, n) in rt.kernel_misses() {
            if n > 0 {
                out.write(&format!(
                    "# {n} hit(s) of the {} handler skipped by the kernel (another BPF program was running on that CPU)\n",
                    kind.name()
                ));
            }
        }
    }
    out.flush();
}
