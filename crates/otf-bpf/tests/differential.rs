//! Differential test: random bytecode programs run in the kernel (the runtime loaded from a
//! `RuntimeImage`, one hit per probe slot through `BPF_PROG_TEST_RUN`) and in the reference VM
//! (`otf_script::vm::run`, the oracle) must agree on everything a hit can change or report:
//! the `@entry` program's run, how the body ended (normally, skipped by its condition, or the
//! error's kind and pc), the output records in order, `exit()`, the globals, the elements of
//! the arrays and aggregates (read back through `Runtime::store`, against the `MemStore` the
//! reference VM ran on), the re-evaluated conditions (their errors and cached bits: the
//! condition programs' return values), `need_refresh` and notifications, and the slot's
//! counters. Every image declares the same arrays and aggregates (`randprog::MAPS`); their
//! maps outlive a hit, so before each hit they are emptied and given the case's starting
//! elements on both sides.
//!
//! The programs come from `common/randprog/`; `common/observe.rs` runs a case's hit on both
//! sides and compares what it shows. Each run draws a fresh seed, printed first on stderr;
//! `OTF_DIFF_SEED` replays a run, `OTF_DIFF_ONLY=N` (or `A..B`) runs only those programs of it
//! (one is printed in full), `OTF_DIFF_PROGRAMS` sets the number of programs (default 10,000),
//! `OTF_DIFF_BATCH` the programs per runtime load (default 20; one load in 40 is five times
//! larger). Loader threads generate and load batches while the test's thread runs the hits.
//! Needs root; skips with a note otherwise.

mod common;
#[path = "common/observe.rs"]
mod observe;
#[path = "common/randprog/mod.rs"]
mod randprog;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use observe::{
    exit_marked, image_of, kernel, load, nonzero, reference, BodyEnd, Observed, Placed, Prog,
};
use otf_bpf::layout::{MAX_CONDS, MAX_PROBES};
use otf_bpf::{Runtime, RuntimeErrorKind, RuntimeImage};
use otf_script::bytecode::{Ctx, Insn, Op, StrFn, MAX_CODE, MAX_OUT_ARGS};
use otf_script::compile::disassemble;
use randprog::{Case, HitEnv};

const DEFAULT_PROGRAMS: u64 = 10_000;
/// Programs per runtime load. The kernel's verifier checks every body of a load again, and its
/// cost per program grows with their number (measured: 15 ms per program in loads of 20, 17
/// in loads of 80, 52 in loads of 200), so most loads are small; one in [`LARGE_EVERY`] is
/// [`LARGE_FACTOR`] times larger, as a script with many probes is.
const DEFAULT_BATCH: u64 = 20;
const LARGE_EVERY: u64 = 40;
const LARGE_FACTOR: usize = 5;
/// Mismatches reported in full.
const FULL_REPORTS: usize = 3;
/// Operations the generator does not emit (none). Of the string functions (`SCall`) it
/// emits all but `strlen` (which the compiler emits as `SLen`).
const USER_SPACE_ONLY: &[Op] = &[];

#[test]
fn kernel_agrees_with_reference_vm() {
    if !common::can_test_run_bpf("differential") {
        return;
    }
    let cfg = Config::from_env();
    eprintln!(
        "differential: seed {:#x} (replay with OTF_DIFF_SEED={:#x})",
        cfg.seed, cfg.seed
    );
    let started = Instant::now();
    // Before this thread is pinned (hit_env): the loader threads may use every CPU.
    let cpus = affinity();
    let loaders = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let env = hit_env(cfg.seed);
    let mut run = Run {
        cfg: &cfg,
        env: &env,
        stats: Stats::default(),
        mismatches: Vec::new(),
        by_field: BTreeMap::new(),
        batch: 0..0,
    };
    // Loading (the kernel's verifier) takes most of the time: loader threads generate and
    // load batches while this thread, pinned to its CPU, runs the hits.
    let source = Mutex::new(Batches {
        indices: cfg.only.clone().unwrap_or(0..cfg.programs),
        made: 0,
        carry: None,
    });
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Loaded>(loaders);
        for _ in 0..loaders {
            let (tx, cfg, env, source) = (tx.clone(), &cfg, &env, &source);
            s.spawn(move || {
                if let Some(set) = &cpus {
                    set_affinity(set);
                }
                loop {
                    let t = Instant::now();
                    let cases = source.lock().expect("batch source").next(cfg, env);
                    let generate = t.elapsed();
                    if cases.is_empty() {
                        break;
                    }
                    // A batch whose handler has more functions than the kernel loads
                    // (loops and `foreach` each add one) is loaded in halves: that limit is
                    // the batch's, not a program's.
                    let mut pending = vec![cases];
                    while let Some(cases) = pending.pop() {
                        let (image, placed) = image_of(cases.clone(), env.target);
                        let t = Instant::now();
                        let rt = load(&image);
                        if matches!(&rt, Err(e) if e.contains("BPF functions") && cases.len() > 1) {
                            let mut first = cases;
                            let second = first.split_off(first.len() / 2);
                            pending.push(second);
                            pending.push(first);
                            continue;
                        }
                        let loaded = Loaded {
                            image,
                            placed,
                            rt,
                            generate,
                            load: t.elapsed(),
                        };
                        if tx.send(loaded).is_err() {
                            return;
                        }
                    }
                }
            });
        }
        drop(tx);
        for loaded in rx {
            run.batch(loaded);
        }
    });
    run.stats.loaders = loaders;
    run.finish(started.elapsed());
}

/// `disassemble`'s listing, with the global and the number of keys of the array and
/// aggregate operations (which it does not show).
fn listing(code: &[Insn]) -> String {
    let mut s = String::new();
    for (line, insn) in disassemble(code).lines().zip(code) {
        s += line;
        if matches!(
            insn.opcode(),
            Some(Op::MapGet | Op::MapPut | Op::MapAdd | Op::MapIn | Op::MapDel | Op::StatAdd)
        ) {
            let _ = write!(s, " g{} keys={}", insn.arg, insn.imm);
        }
        s.push('\n');
    }
    s
}

/// A batch, generated and loaded by a loader thread.
struct Loaded {
    image: RuntimeImage,
    placed: Vec<Placed>,
    rt: Result<Runtime, String>,
    generate: Duration,
    load: Duration,
}

struct Config {
    seed: u64,
    programs: u64,
    /// `OTF_DIFF_ONLY`: these programs of the run (`N` or `A..B`).
    only: Option<Range<u64>>,
    batch: usize,
}

impl Config {
    fn from_env() -> Config {
        Config {
            seed: env_u64("OTF_DIFF_SEED").unwrap_or_else(fresh_seed),
            programs: env_u64("OTF_DIFF_PROGRAMS").unwrap_or(DEFAULT_PROGRAMS),
            only: std::env::var("OTF_DIFF_ONLY")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| match v.split_once("..") {
                    Some((a, b)) => number("OTF_DIFF_ONLY", a)..number("OTF_DIFF_ONLY", b),
                    None => number("OTF_DIFF_ONLY", &v)..number("OTF_DIFF_ONLY", &v) + 1,
                }),
            batch: env_u64("OTF_DIFF_BATCH")
                .unwrap_or(DEFAULT_BATCH)
                .clamp(1, MAX_PROBES as u64) as usize,
        }
    }
}

/// `$name` as a number; `None` if unset or empty.
fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    Some(number(name, &v))
}

/// A number, decimal or `0x` hex, from the variable `name`.
fn number(name: &str, v: &str) -> u64 {
    let v = v.trim().replace('_', "");
    let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    n.unwrap_or_else(|e| panic!("{name}={v}: not a number ({e})"))
}

fn fresh_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

/// What the test thread's hits see. Pins the thread to its CPU so that `cpu()` is known.
fn hit_env(seed: u64) -> HitEnv {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    // SAFETY: plain system calls without arguments.
    let (pid, ppid, uid) = unsafe { (libc::getpid(), libc::getppid(), libc::getuid()) };
    HitEnv {
        pid: pid.into(),
        tid: common::gettid(),
        ppid: ppid.into(),
        uid: uid.into(),
        cpu: pin_to_current_cpu(),
        target: 1 + (seed % 4_000_000) as i64,
        time_ns: now.as_nanos() as i64,
        comm: std::fs::read_to_string("/proc/thread-self/comm")
            .unwrap_or_default()
            .trim_end_matches('\n')
            .to_string(),
    }
}

/// Pin this thread (the test's own, which ends with the test) to the CPU it runs on.
fn pin_to_current_cpu() -> Option<i64> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu < 0 {
        return None;
    }
    // SAFETY: a zeroed cpu_set_t is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes inside the set (the cpu number is below its size).
    unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    // SAFETY: sched_getcpu has no preconditions.
    (set_affinity(&set) && unsafe { libc::sched_getcpu() } == cpu).then_some(cpu.into())
}

/// This thread's CPU affinity.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: a zeroed cpu_set_t is valid; the kernel writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then_some(set)
    }
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: a valid cpu_set_t passed with its size.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

/// The run's programs, cut into batches that fit in one image.
struct Batches {
    indices: Range<u64>,
    /// Batches made so far.
    made: u64,
    /// A case generated that did not fit in the previous batch.
    carry: Option<(u64, Case)>,
}

impl Batches {
    /// The next batch (empty at the end).
    fn next(&mut self, cfg: &Config, env: &HitEnv) -> Vec<(u64, Case)> {
        let mut batch = Vec::new();
        let (mut code, mut conds) = (0, 0);
        self.made += 1;
        let most = if self.made % LARGE_EVERY == 0 {
            cfg.batch * LARGE_FACTOR
        } else {
            cfg.batch
        }
        .min(MAX_PROBES);
        while batch.len() < most {
            let Some((n, case)) = self.carry.take().or_else(|| {
                self.indices
                    .next()
                    .map(|n| (n, randprog::case(cfg.seed, n, env)))
            }) else {
                break;
            };
            if code + case.code_len() > MAX_CODE || conds + case.conds.len() > MAX_CONDS {
                self.carry = Some((n, case));
                break;
            }
            code += case.code_len();
            conds += case.conds.len();
            batch.push((n, case));
        }
        batch
    }
}

/// What the programs did, from the reference VM's results (to show that the generator covers
/// what it should).
#[derive(Default)]
struct Stats {
    programs: u64,
    /// Instructions of all programs (bodies, conditions, entry programs).
    insns: u64,
    loads: u64,
    ops: BTreeMap<Op, u64>,
    /// Context ids read.
    ctx_ids: std::collections::BTreeSet<i32>,
    /// The string functions (`SCall`) run.
    str_fns: std::collections::BTreeSet<i32>,
    max_out_args: i64,
    body_next: u64,
    body_skip: u64,
    /// Run-time errors by (program kind, error kind).
    faults: BTreeMap<String, u64>,
    entry_runs: u64,
    reevals: u64,
    need_refresh: u64,
    exits: u64,
    outputs: u64,
    near_budget: u64,
    near_budget_maxaction: u64,
    /// Bodies failing with "array overflow", by the operation that failed.
    full_by_op: BTreeMap<Op, u64>,
    /// Hits after which arrays / aggregates held elements.
    with_arrays: u64,
    with_aggregates: u64,
    /// Time spent, summed over the loader threads for generating and loading.
    generate: Duration,
    load: Duration,
    hits: Duration,
    loaders: usize,
}

impl Stats {
    fn count(&mut self, case: &Case, r: &Observed) {
        self.programs += 1;
        self.insns += case.code_len() as u64;
        for insn in std::iter::once(&case.body)
            .chain(case.entry.iter())
            .chain(case.conds.iter())
            .flatten()
        {
            let op = insn.opcode().expect("known");
            *self.ops.entry(op).or_default() += 1;
            match op {
                Op::Ctx => _ = self.ctx_ids.insert(insn.arg),
                Op::SCall => _ = self.str_fns.insert(insn.arg),
                Op::Out => self.max_out_args = self.max_out_args.max(insn.imm),
                _ => {}
            }
        }
        let faults = r
            .entry
            .iter()
            .filter_map(|e| e.err())
            .chain(match r.body {
                BodyEnd::Fault(f) => Some(f),
                _ => None,
            })
            .chain(r.cond_errors.iter().copied());
        for f in faults {
            let prog = match f.prog {
                Prog::Entry => "entry",
                Prog::Body => "body",
                Prog::Cond(_) => "cond",
            };
            *self
                .faults
                .entry(format!("{prog} {:?}", f.kind))
                .or_default() += 1;
        }
        if let BodyEnd::Fault(f) = r.body {
            if f.kind == RuntimeErrorKind::ArrayFull && f.prog == Prog::Body {
                let op = case.body[f.pc as usize].opcode().expect("known");
                *self.full_by_op.entry(op).or_default() += 1;
            }
        }
        self.with_arrays += !r.arrays.is_empty() as u64;
        self.with_aggregates += !r.aggregates.is_empty() as u64;
        match r.body {
            BodyEnd::Next => self.body_next += 1,
            BodyEnd::Skip => self.body_skip += 1,
            BodyEnd::Fault(_) => {}
        }
        self.entry_runs += r.counters.entry_runs;
        if r.body != BodyEnd::Skip {
            self.reevals += case.reeval.len() as u64;
        }
        self.need_refresh += r.need_refresh as u64;
        self.exits += r.exit as u64;
        self.outputs += r.outputs.len() as u64;
        if case.near_budget {
            self.near_budget += 1;
            if matches!(r.body, BodyEnd::Fault(f) if f.kind == RuntimeErrorKind::MaxAction) {
                self.near_budget_maxaction += 1;
            }
        }
    }

    /// What a run of enough programs must have produced; empty if all is there.
    fn missing(&self) -> Vec<String> {
        let mut m: Vec<String> = Op::ALL
            .iter()
            .filter(|op| !self.ops.contains_key(op) && !USER_SPACE_ONLY.contains(op))
            .map(|op| format!("opcode {op:?}"))
            .collect();
        m.extend(
            (0..=Ctx::LongArg as i32)
                .filter(|id| !self.ctx_ids.contains(id))
                .map(|id| format!("context id {id}")),
        );
        m.extend(
            StrFn::ALL
                .iter()
                .filter(|f| !matches!(f, StrFn::Strlen))
                .filter(|&&f| !self.str_fns.contains(&(f as i32)))
                .map(|f| format!("string function {}", f.name())),
        );
        if self.max_out_args < MAX_OUT_ARGS as i64 {
            m.push(format!("an output record with {MAX_OUT_ARGS} arguments"));
        }
        for kind in [
            "DivisionByZero",
            "MaxAction",
            "InvalidRandint",
            "ArrayFull",
            "PositionOutOfBounds",
        ] {
            if !self.faults.contains_key(&format!("body {kind}")) {
                m.push(format!("a body failing with {kind}"));
            }
        }
        for op in [Op::MapPut, Op::MapAdd, Op::StatAdd] {
            if !self.full_by_op.contains_key(&op) {
                m.push(format!("an array overflow at {op:?}"));
            }
        }
        for (what, n) in [
            (
                "an entry program failing",
                self.faults.keys().any(|k| k.starts_with("entry")),
            ),
            (
                "a condition failing",
                self.faults.keys().any(|k| k.starts_with("cond")),
            ),
            ("a body skipped by its condition", self.body_skip > 0),
            ("an entry program run", self.entry_runs > 0),
            ("a condition bit changed", self.need_refresh > 0),
            ("exit()", self.exits > 0),
            ("an output record", self.outputs > 0),
            ("an array with elements after a hit", self.with_arrays > 0),
            (
                "an aggregate with elements after a hit",
                self.with_aggregates > 0,
            ),
            (
                "a near-budget body ending normally",
                self.near_budget > self.near_budget_maxaction,
            ),
            (
                "a near-budget body hitting MAXACTION",
                self.near_budget_maxaction > 0,
            ),
        ] {
            if !n {
                m.push(what.to_string());
            }
        }
        m
    }
}

struct Run<'a> {
    cfg: &'a Config,
    env: &'a HitEnv,
    stats: Stats,
    /// Full reports of the first mismatches, and one line for each further one.
    mismatches: Vec<String>,
    by_field: BTreeMap<&'static str, u64>,
    /// The programs of the batch being run (its failures may need the whole batch to show).
    batch: Range<u64>,
}

impl Run<'_> {
    fn batch(&mut self, loaded: Loaded) {
        let Loaded {
            image,
            placed,
            rt,
            generate,
            load,
        } = loaded;
        self.batch =
            placed.first().map_or(0, |p| p.index)..placed.last().map_or(0, |p| p.index + 1);
        self.stats.generate += generate;
        self.stats.load += load;
        self.stats.loads += 1;
        let rt = rt.unwrap_or_else(|e| self.load_failure(&placed, e));
        let mut ev = rt.events().expect("a ring buffer consumer");
        let code = exit_marked(&image.code);
        for p in &placed {
            let t = Instant::now();
            let got = kernel(&rt, &mut ev, p, self.env);
            self.stats.hits += t.elapsed();
            let want = reference(&code, p, self.env);
            self.stats.count(&p.case, &want);
            let differs = want.diff(&got);
            for f in &differs {
                *self.by_field.entry(f).or_default() += 1;
            }
            if self.cfg.only.as_ref().is_some_and(|r| r.end - r.start == 1) {
                eprintln!("{}", self.report(p, &want, Some(&got)));
            }
            if differs.is_empty() {
                continue;
            }
            let line = format!("program #{} differs in {}", p.index, differs.join(", "));
            eprintln!("differential: {line}");
            if self.mismatches.len() < FULL_REPORTS {
                self.mismatches.push(self.report(p, &want, Some(&got)));
            } else {
                self.mismatches.push(line);
            }
        }
    }

    /// A case: how to replay it, what differs, both results (`got`: `None` if the kernel did
    /// not load it), its set-up and its programs.
    fn report(&self, p: &Placed, want: &Observed, got: Option<&Observed>) -> String {
        let seed = self.cfg.seed;
        let mut s = String::new();
        let (b, n) = (&self.batch, self.batch.end - self.batch.start);
        let _ = writeln!(
            s,
            "program #{} (seed {seed:#x}), pidx {} of the load of programs #{}..#{}\n\
             replay it alone: OTF_DIFF_SEED={seed:#x} OTF_DIFF_ONLY={}\n\
             with its batch:  OTF_DIFF_SEED={seed:#x} OTF_DIFF_ONLY={}..{} OTF_DIFF_BATCH={n}",
            p.index,
            p.pidx,
            b.start,
            b.end - 1,
            p.index,
            b.start,
            b.end
        );
        let Some(got) = got else {
            let _ = writeln!(s, "reference VM:\n  {}", want.show());
            self.describe(&mut s, p);
            return s;
        };
        let differs = want.diff(got);
        if differs.is_empty() {
            let _ = writeln!(s, "the kernel and the reference VM agree");
        } else {
            let _ = writeln!(s, "differs in: {}", differs.join(", "));
        }
        if want.outputs != got.outputs {
            let k = (want.outputs.iter().zip(&got.outputs))
                .position(|(a, b)| a != b)
                .unwrap_or(want.outputs.len().min(got.outputs.len()));
            let _ = writeln!(
                s,
                "first differing output record #{k} of {} / {}: reference {:?}, kernel {:?}",
                want.outputs.len(),
                got.outputs.len(),
                want.outputs.get(k),
                got.outputs.get(k)
            );
        }
        let _ = writeln!(s, "reference VM:\n  {}", want.show());
        let _ = writeln!(s, "kernel:\n  {}", got.show());
        self.describe(&mut s, p);
        s
    }

    /// The case's set-up and programs.
    fn describe(&self, s: &mut String, p: &Placed) {
        let case = &p.case;
        let _ =
            writeln!(
            s,
            "set-up: pidx {}, pid {} tid {} ppid {} uid {} cpu {:?} target {}, safe_context {}, \
             entry run {}, cond bits before {:?}, re-evaluates {:?}\ninitial globals {:?}",
            p.pidx,
            self.env.pid,
            self.env.tid,
            self.env.ppid,
            self.env.uid,
            self.env.cpu,
            self.env.target,
            case.safe_context,
            case.run_entry,
            case.cond_init,
            case.reeval.iter().map(|k| format!("cond{k}")).collect::<Vec<_>>(),
            nonzero(&case.initial_globals()),
        );
        let _ = writeln!(
            s,
            "arrays and aggregates used {:?}\nstarting elements (global, keys, value put or added) {:?}",
            case.maps.iter().map(|m| m.g).collect::<Vec<_>>(),
            case.map_init,
        );
        let mut prog = |name: String, off: u32, code: &[Insn]| {
            let _ = writeln!(s, "{name} (image offset {off}):\n{}", listing(code));
        };
        if let (Some(off), Some(code)) = (p.entry, &case.entry) {
            prog("entry".into(), off, code);
        }
        let body = if case.own_cond {
            "body (cond0 inlined first)"
        } else {
            "body"
        };
        prog(body.into(), p.body, &case.body);
        for (k, code) in case.conds.iter().enumerate() {
            prog(
                format!("cond{k} (id {})", p.cond_ids[k]),
                p.cond_offs[k],
                code,
            );
        }
    }

    /// A batch did not load: find one program that does not load alone, and fail.
    fn load_failure(&self, placed: &[Placed], err: String) -> ! {
        let n = placed.len();
        let cases = |ps: &[Placed]| -> Vec<(u64, Case)> {
            ps.iter().map(|p| (p.index, p.case.clone())).collect()
        };
        let fails = |ps: &[Placed]| load(&image_of(cases(ps), self.env.target).0).is_err();
        let mut set = placed;
        while set.len() > 1 {
            let (l, r) = set.split_at(set.len() / 2);
            if fails(l) {
                set = l;
            } else if fails(r) {
                set = r;
            } else {
                break;
            }
        }
        let culprit = if set.len() == 1 && fails(set) {
            let p = &set[0];
            let (image, placed) = image_of(cases(set), self.env.target);
            let want = reference(&exit_marked(&image.code), &placed[0], self.env);
            format!(
                "program #{} does not load alone:\n{}",
                p.index,
                self.report(&placed[0], &want, None)
            )
        } else {
            format!(
                "{} programs load in smaller batches but not together (try a smaller \
                 OTF_DIFF_BATCH)",
                set.len()
            )
        };
        panic!(
            "differential: Runtime::load of a batch of {n} programs failed (seed {:#x}): {err}\n{culprit}",
            self.cfg.seed
        );
    }

    fn finish(self, took: Duration) {
        let s = &self.stats;
        eprintln!(
            "differential: {} programs ({} instructions on average), {} runtime loads, {:.1?} \
             (in {} loader threads: generating \
             {:.1?}, loading {:.1?}; kernel hits {:.1?})\n  bodies ran {} skipped {}; errors {:?}\n  entry runs {}, \
             conditions re-evaluated {} (bits changed after {} hits), exits {}, output records {}, \
             near-budget bodies {} ({} hit MAXACTION)\n  array overflows by operation {:?}, \
             hits leaving elements in arrays {} and in aggregates {}, `foreach` loops {}",
            s.programs,
            s.insns / s.programs.max(1),
            s.loads,
            took,
            s.loaders,
            s.generate,
            s.load,
            s.hits,
            s.body_next,
            s.body_skip,
            s.faults,
            s.entry_runs,
            s.reevals,
            s.need_refresh,
            s.exits,
            s.outputs,
            s.near_budget,
            s.near_budget_maxaction,
            s.full_by_op,
            s.with_arrays,
            s.with_aggregates,
            s.ops.get(&Op::IterStart).copied().unwrap_or(0),
        );
        if !self.mismatches.is_empty() {
            let n = self.by_field.values().max().copied().unwrap_or(0);
            panic!(
                "differential: the kernel and the reference VM disagree on {} of {} programs \
                 (seed {:#x}; by field {:?}, at most {n} for one field)\n\n{}",
                self.mismatches.len(),
                s.programs,
                self.cfg.seed,
                self.by_field,
                self.mismatches.join("\n")
            );
        }
        // The generator's coverage, once there are enough programs to expect everything.
        if s.programs >= 2_000 {
            let missing = s.missing();
            assert!(
                missing.is_empty(),
                "generator: {} programs (seed {:#x}) never produced {}",
                s.programs,
                self.cfg.seed,
                missing.join(", ")
            );
        }
    }
}
