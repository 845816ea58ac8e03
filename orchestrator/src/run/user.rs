//! Bodies that run in user space, in the reference VM over the kernel's globals and maps:
//! `begin` and `end`, the display of globals written and never read, and the *deferred*
//! bodies of `timer` probes that use what only user space runs yet (printing histograms,
//! some `sprintf` formats, the `_warn` string reads): their kernel hit sends a record and the body
//! runs here at once, holding the same lock stripes a kernel body would.

use std::time::Duration;

use otf_bpf::Runtime;
use otf_script::compile::Unit;
use otf_script::display::Shown;
use otf_script::point::PointKind;
use otf_script::store::{log_bucket_value, Aggregate, Value};
use otf_script::vm::{self, End, FixedHit, GlobalStore as _, OutRecord};

use super::Session;

impl Session<'_> {
    /// The context of a body run by user space itself: otf's own process.
    pub(super) fn hit(&self) -> FixedHit {
        // SAFETY: these calls have no preconditions and cannot fail.
        let (pid, tid, ppid, uid, cpu) = unsafe {
            (
                libc::getpid(),
                libc::gettid(),
                libc::getppid(),
                libc::getuid(),
                libc::sched_getcpu(),
            )
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        FixedHit {
            pid: i64::from(pid),
            tid: i64::from(tid),
            ppid: i64::from(ppid),
            uid: i64::from(uid),
            cpu: i64::from(cpu.max(0)),
            time_ns: now,
            target: self.target,
            seed: (now as u64) | 1,
            strings: self.front.compiled.script.strings.clone(),
            formats: self.front.compiled.script.formats.clone(),
            names: [self.comm.clone(), String::new(), String::new()],
            ..FixedHit::default()
        }
    }

    /// Run one unit's body in user space over the live globals and maps, holding its lock
    /// stripes; output goes to the stream, errors are reported near `name`. Conditions the
    /// body can affect are re-evaluated before the stripes are released.
    fn run_unit(&mut self, u: &Unit, name: &str, comm: &str, mut hit: FixedHit) {
        let mut records: Vec<OutRecord> = Vec::new();
        let locked = lock_patiently(self.rt, u.lock_mask);
        let script = &self.front.compiled.script;
        let mut texts = Vec::new();
        let mut structured = Vec::new();
        let mut globals = self.rt.store();
        let r = vm::run(
            &script.code,
            u.body.start as usize,
            &mut globals,
            &mut hit,
            &mut |rec| records.push(rec),
        );
        // Histograms show the aggregate as the body left it: render before unlocking.
        for rec in records {
            let Some(f) = script.formats.get(rec.fmt as usize) else {
                continue;
            };
            let maps = &mut globals;
            let json = self.out.json;
            let mut hists = Vec::new();
            let mut hist = |g: u32, linear: bool, keys: &[Value], words: Option<&[i64]>| {
                let info = &script.globals[g as usize];
                // The buckets copied into the record by the print, else as the body left
                // them.
                let agg = match words {
                    Some(w) => otf_script::hist::aggregate_of_words(&info.hist, linear, w),
                    None => maps
                        .stat_get(g, keys)
                        .unwrap_or_else(|| Aggregate::new(&info.hist)),
                };
                let lin = info.hist.linear.filter(|_| linear);
                if json {
                    hists.push(hist_json(&info.name, keys, &agg, lin));
                }
                otf_script::hist::render(&agg, lin)
            };
            texts.push(otf_script::hist::render_record_bytes(
                f,
                &rec.args,
                &rec.strs,
                &script.globals,
                comm,
                name,
                "",
                &mut hist,
            ));
            structured.extend(hists);
        }
        // As a kernel body does: the conditions it may have changed, under its stripes.
        let mut changed = false;
        if self.conds_synced {
            for &c in &u.reeval {
                let Some(cond) = script.units.get(c).and_then(|cu| cu.cond.as_ref()) else {
                    continue;
                };
                let r = vm::run(
                    &script.code,
                    cond.start as usize,
                    &mut globals,
                    &mut hit,
                    &mut |_| {},
                );
                let v = !matches!(r, Ok(o) if o.end == End::Ret(0));
                if v != self.rt.cond_enabled(c as u32) {
                    self.rt.set_cond_enabled(c as u32, v);
                    changed = true;
                }
            }
        }
        if locked {
            self.rt.unlock(u.lock_mask);
        }
        if changed {
            self.flags.notified = true;
        }
        for text in texts {
            self.out.output(None, &text);
        }
        for v in structured {
            self.out.record(&v);
        }
        match r {
            Ok(o) => {
                if o.exit_requested {
                    self.flags.exit = true;
                }
            }
            Err(e) => {
                let msg = e.to_string();
                self.report_error(&msg, name, None);
            }
        }
    }

    /// Runs the bodies of every `begin` (or `end`) unit in script order.
    pub(super) fn run_user_bodies(&mut self, which: &PointKind) {
        let units: Vec<Unit> = self
            .front
            .compiled
            .script
            .units
            .iter()
            .filter(|u| &u.point == which)
            .cloned()
            .collect();
        let name = which.to_string();
        for u in units {
            let mut hit = self.hit();
            hit.names[1] = name.clone();
            let comm = self.comm.clone();
            self.run_unit(&u, &name, &comm, hit);
        }
        self.out.flush();
    }

    /// The `end` bodies, then the globals written and never read (SystemTap prints them as if
    /// by `end` probes of its own, after the script's).
    pub(super) fn run_end_bodies(&mut self) {
        self.run_user_bodies(&PointKind::End);
        let globals = &self.front.compiled.script.globals;
        let mut store = self.rt.store();
        let shown = otf_script::display::unread(globals, &mut store);
        for s in &shown {
            if self.out.json {
                self.out.record(&shown_json(s));
            } else {
                self.out
                    .output(None, otf_script::display::text(s).as_bytes());
            }
        }
        self.out.flush();
    }

    /// A deferred body: the kernel hit of `pidx` (on `cpu`, in task `pid`/`tid`) handed it
    /// over. Its context values are the hit's.
    pub(super) fn run_deferred(&mut self, pidx: u32, cpu: u32, pid: u32, tid: u32, comm: &str) {
        let Some(p) = self.res.probes.get(pidx as usize) else {
            return;
        };
        let Some(u) = self.front.compiled.script.units.get(p.unit).cloned() else {
            return;
        };
        let name = p.pp.clone();
        let mut hit = self.hit();
        hit.pid = i64::from(pid);
        hit.tid = i64::from(tid);
        hit.cpu = i64::from(cpu);
        hit.names = [comm.to_string(), name.clone(), p.probefunc.clone()];
        self.run_unit(&u, &name, comm, hit);
    }
}

/// Takes lock stripes from user space, waiting up to about a second (bodies in the kernel hold
/// them only briefly). Returns whether it got them.
fn lock_patiently(rt: &Runtime, mask: u64) -> bool {
    if mask == 0 {
        return false;
    }
    for _ in 0..1000 {
        if rt.try_lock(mask, 10_000) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Int(i) => serde_json::json!(i),
        Value::Str(s) => serde_json::json!(s),
    }
}

fn keys_json(k: &[Value]) -> serde_json::Value {
    serde_json::Value::Array(k.iter().map(value_json).collect())
}

fn stats_json(a: &Aggregate) -> serde_json::Value {
    serde_json::json!({
        "count": a.count, "sum": a.sum, "min": a.min, "max": a.max,
        "avg": a.sum / a.count.max(1),
    })
}

/// A global of the exit display as a JSON record (docs/user-guide.md).
fn shown_json(s: &Shown) -> serde_json::Value {
    match s {
        Shown::Scalar { name, value } => {
            serde_json::json!({"type": "global", "name": name, "value": value_json(value)})
        }
        Shown::Array { name, entries } => serde_json::json!({
            "type": "global", "name": name,
            "entries": entries.iter().map(|(k, v)| serde_json::json!({"keys": keys_json(k), "value": value_json(v)})).collect::<Vec<_>>(),
        }),
        Shown::Stat { name, stats } => serde_json::json!({
            "type": "global", "name": name,
            "stats": stats.as_ref().map_or(serde_json::json!({"count": 0}), stats_json),
        }),
        Shown::StatArray { name, entries } => serde_json::json!({
            "type": "global", "name": name,
            "entries": entries.iter().map(|(k, a)| serde_json::json!({"keys": keys_json(k), "stats": stats_json(a)})).collect::<Vec<_>>(),
        }),
    }
}

/// A printed histogram as a JSON record: its non-empty buckets, each with the lowest value
/// it counts (`"under"`/`"over"` mark a linear histogram's out-of-range buckets).
pub(super) fn hist_json(
    name: &str,
    keys: &[Value],
    agg: &Aggregate,
    linear: Option<(i64, i64, i64)>,
) -> serde_json::Value {
    let buckets: Vec<serde_json::Value> = match linear {
        None => agg
            .log
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(b, &c)| serde_json::json!({"value": log_bucket_value(b), "count": c}))
            .collect(),
        Some((lo, _, step)) => {
            let n = agg.linear.len();
            agg.linear
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(b, &c)| {
                    if b == 0 {
                        serde_json::json!({"under": lo, "count": c})
                    } else if b == n - 1 {
                        serde_json::json!({"over": lo + (b as i64 - 2) * step, "count": c})
                    } else {
                        serde_json::json!({"value": lo + (b as i64 - 1) * step, "count": c})
                    }
                })
                .collect()
        }
    };
    serde_json::json!({
        "type": "hist", "name": name, "keys": keys_json(keys),
        "kind": if linear.is_some() { "linear" } else { "log" },
        "buckets": buckets,
    })
}
