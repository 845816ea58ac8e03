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
        out.write(&format!(
            "{:>5} {:>10} {:>10} {:>12} {:>12} {:>12} {:>7} {:>8}  {}\n",
            "pidx",
            "hits",
            "bodies",
            "skipped_cond",
            "skipped_lock",
            "skipped_nest",
            "armed",
            "disarmed",
            "point"
        ));
        for (p, c, a, d) in rows {
            out.write(&format!(
                "{:>5} {:>10} {:>10} {:>12} {:>12} {:>12} {:>7} {:>8}  {}\n",
                p.pidx,
                c.hits,
                c.bodies,
                c.skipped_cond,
                c.skipped_lock,
                c.skipped_nest,
                a,
                d,
                p.pp
            ));
        }
        for (&pidx, n) in lost {
            let pp = res
                .probes
                .iter()
                .find(|p| p.pidx == pidx)
                .map_or("?", |p| p.pp.as_str());
            out.write(&format!(
                "# {n} firing(s) of {pp} (pidx {pidx}) lost in the kernel (not run by their due time)\n"
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
