//! One hit of a generated case, observed in the kernel and in the reference VM, for the
//! differential test (`tests/differential.rs`).

use std::fmt;

use otf_bpf::{
    cookie, entry_cookie, Counters, Event, EventReader, ProbeSlot, Runtime, RuntimeErrorKind,
    RuntimeImage,
};
use otf_script::bytecode::{Insn, Op, MAX_ENTRY_SLOTS};
use otf_script::vm::{self, End, OutRecord, VmError};

use otf_codegen::maps::MapSpec;
use otf_script::store::Aggregate;

use crate::randprog::{
    contents, global_infos, Aggregates, Arrays, Case, HitEnv, NGLOBALS, STR_GLOBALS,
};
use otf_script::vm::GlobalStore;

/// The string globals of [`STR_GLOBALS`] that are not empty.
fn strings_of(store: &dyn GlobalStore) -> Vec<(u32, String)> {
    STR_GLOBALS
        .iter()
        .map(|&g| (g, store.load_str(g)))
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// In the reference VM's copy of the code, `Exit` becomes an output record with this format
/// id, so that an `exit()` before a run-time error is seen too.
const EXIT_MARK: i32 = i32::MAX;

/// Where a case's programs are in an image.
pub struct Placed {
    pub index: u64,
    pub case: Case,
    pub pidx: u32,
    pub body: u32,
    pub entry: Option<u32>,
    /// Condition ids, one per `case.conds`.
    pub cond_ids: Vec<u32>,
    pub cond_offs: Vec<u32>,
}

impl Placed {
    /// The program and relative pc of the absolute code offset `pc`.
    pub fn locate(&self, pc: u32) -> Option<(Prog, u32)> {
        let within = |start: u32, len: usize| pc >= start && pc < start + len as u32;
        if within(self.body, self.case.body.len()) {
            return Some((Prog::Body, pc - self.body));
        }
        if let (Some(e), Some(code)) = (self.entry, &self.case.entry) {
            if within(e, code.len()) {
                return Some((Prog::Entry, pc - e));
            }
        }
        (0..self.case.conds.len())
            .find(|&k| within(self.cond_offs[k], self.case.conds[k].len()))
            .map(|k| (Prog::Cond(k), pc - self.cond_offs[k]))
    }

    pub fn fault(&self, kind: RuntimeErrorKind, pc: u32) -> Option<Fault> {
        self.locate(pc).map(|(prog, pc)| Fault {
            kind: comparable(kind),
            prog,
            pc,
        })
    }
}

/// One image holding `cases`, a probe slot each (pidx in their order), and where each case's
/// programs went.
pub fn image_of(cases: Vec<(u64, Case)>, target: i64) -> (RuntimeImage, Vec<Placed>) {
    let mut image = RuntimeImage {
        globals_init: vec![0; NGLOBALS],
        maps: MapSpec::all(global_infos()),
        target_pid: target,
        strings: crate::randprog::literals(),
        ..Default::default()
    };
    let mut placed = Vec::with_capacity(cases.len());
    for (pidx, (index, case)) in cases.into_iter().enumerate() {
        let mut add = |code: &[Insn]| {
            image.code.extend_from_slice(code);
            (image.code.len() - code.len()) as u32
        };
        let entry = case.entry.as_deref().map(&mut add);
        let body = add(&case.body);
        let cond_offs: Vec<u32> = case.conds.iter().map(|c| add(c)).collect();
        let first = image.cond_code.len() as u32;
        let cond_ids: Vec<u32> = (first..first + cond_offs.len() as u32).collect();
        image.cond_code.extend_from_slice(&cond_offs);
        image.cond_init.extend_from_slice(&case.cond_init);
        image.probes.push(ProbeSlot {
            body: Some(body),
            entry,
            cond: case.own_cond.then(|| cond_ids[0]),
            reeval: case.reeval.iter().map(|&k| cond_ids[k]).collect(),
            lock_mask: case.lock_mask(),
            safe_context: case.safe_context,
            is_return: entry.is_some(),
            chain: None,
            label: format!("differential program #{index}"),
            deferred: false,
            pp: crate::randprog::pp_of(index),
            probefunc: crate::randprog::probefunc_of(index),
        });
        placed.push(Placed {
            index,
            case,
            pidx: pidx as u32,
            body,
            entry,
            cond_ids,
            cond_offs,
        });
    }
    (image, placed)
}

/// Load `image` with the test-entry handler only.
pub fn load(image: &RuntimeImage) -> Result<Runtime, String> {
    super::common::load_test_entry(image).map_err(|e| e.to_string())
}

/// A program of a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prog {
    Entry,
    Body,
    Cond(usize),
}

/// A run-time error: its kind and where (program and pc relative to the program's start).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: RuntimeErrorKind,
    pub prog: Prog,
    pub pc: u32,
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prog = match self.prog {
            Prog::Entry => "entry".to_string(),
            Prog::Body => "body".to_string(),
            Prog::Cond(k) => format!("cond{k}"),
        };
        write!(f, "{:?} at {prog}+{}", self.kind, self.pc)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyEnd {
    /// `Next`: the body ran.
    Next,
    /// `Skip`: the condition was false.
    Skip,
    Fault(Fault),
}

/// Everything one case's hit shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// The entry program's run (`None`: not run).
    pub entry: Option<Result<(), Fault>>,
    pub body: BodyEnd,
    /// Output records of the hit, in order: (format id, arguments).
    pub outputs: Vec<(u32, Vec<i64>, Vec<String>)>,
    /// The string globals of [`STR_GLOBALS`] that are not empty.
    pub strings: Vec<(u32, String)>,
    pub exit: bool,
    /// Errors of re-evaluated conditions, in order.
    pub cond_errors: Vec<Fault>,
    /// The cached bits of the case's conditions after the hit.
    pub cond_bits: Vec<bool>,
    pub need_refresh: bool,
    pub notifications: u32,
    /// The slot's counters (changes during the hit).
    pub counters: Counters,
    /// The globals after the hit that are not 0.
    pub globals: Vec<(u32, i64)>,
    /// The arrays' elements after the hit, sorted by key (arrays with elements).
    pub arrays: Arrays,
    /// The aggregates after the hit, sorted by key (those with elements).
    pub aggregates: Aggregates,
    /// What only the kernel can get wrong: records of another pidx or with a wrong header,
    /// errors outside the case's programs, lost records, failed test runs.
    pub stray: Vec<String>,
}

impl Observed {
    /// The names of the fields that differ.
    pub fn diff(&self, o: &Observed) -> Vec<&'static str> {
        let mut d = Vec::new();
        let mut check = |differs: bool, name| {
            if differs {
                d.push(name)
            }
        };
        check(self.entry != o.entry, "entry");
        check(self.body != o.body, "body");
        check(self.outputs != o.outputs, "outputs");
        check(self.strings != o.strings, "strings");
        check(self.exit != o.exit, "exit");
        check(self.cond_errors != o.cond_errors, "cond_errors");
        check(self.cond_bits != o.cond_bits, "cond_bits");
        check(self.need_refresh != o.need_refresh, "need_refresh");
        check(self.notifications != o.notifications, "notifications");
        check(self.counters != o.counters, "counters");
        check(self.globals != o.globals, "globals");
        check(self.arrays != o.arrays, "arrays");
        check(self.aggregates != o.aggregates, "aggregates");
        check(self.stray != o.stray, "stray");
        d
    }

    /// A compact rendering (long output lists abbreviated).
    pub fn show(&self) -> String {
        let outputs = if self.outputs.len() <= 6 {
            format!("{:?}", self.outputs)
        } else {
            format!(
                "{} records, first {:?} ... last {:?}",
                self.outputs.len(),
                &self.outputs[..3],
                &self.outputs[self.outputs.len() - 1]
            )
        };
        let c = &self.counters;
        format!(
            "entry {:?}, body {:?}, exit {}, outputs {outputs}\n  \
             cond errors {:?}, cond bits {:?}, need_refresh {}, notifications {}\n  \
             counters hits {} bodies {} skipped_cond {} errors {} entry_runs {} skipped_lock {} skipped_nest {}\n  \
             globals {:?}\n  strings {:?}\n  arrays {}\n  aggregates {}{}",
            self.entry,
            self.body,
            self.exit,
            self.cond_errors,
            self.cond_bits,
            self.need_refresh,
            self.notifications,
            c.hits,
            c.bodies,
            c.skipped_cond,
            c.errors,
            c.entry_runs,
            c.skipped_lock,
            c.skipped_nest,
            self.globals,
            self.strings,
            show_arrays(&self.arrays),
            show_aggregates(&self.aggregates),
            if self.stray.is_empty() {
                String::new()
            } else {
                format!("\n  STRAY {:?}", self.stray)
            }
        )
    }
}

/// Arrays as `g{[k..]=v ..}`.
pub fn show_arrays(arrays: &Arrays) -> String {
    let a: Vec<String> = arrays
        .iter()
        .map(|(g, es)| {
            let es: Vec<String> = es.iter().map(|(k, v)| format!("{k:?}={v}")).collect();
            format!("{g}{{{}}}", es.join(" "))
        })
        .collect();
    a.join(", ")
}

/// Aggregates as `g{[k..]=(count sum min max, nonzero buckets) ..}`.
pub fn show_aggregates(aggs: &Aggregates) -> String {
    let a: Vec<String> = aggs
        .iter()
        .map(|(g, es)| {
            let es: Vec<String> = es
                .iter()
                .map(|(k, a)| format!("{k:?}={}", show_aggregate(a)))
                .collect();
            format!("{g}{{{}}}", es.join(" "))
        })
        .collect();
    a.join(", ")
}

fn show_aggregate(a: &Aggregate) -> String {
    let buckets = |b: &[i64]| -> Vec<(usize, i64)> {
        b.iter()
            .copied()
            .enumerate()
            .filter(|&(_, n)| n != 0)
            .collect()
    };
    let mut s = format!(
        "(count {} sum {} min {} max {}",
        a.count, a.sum, a.min, a.max
    );
    if !a.log.is_empty() {
        s += &format!(" log {:?}", buckets(&a.log));
    }
    if !a.linear.is_empty() {
        s += &format!(" linear {:?}", buckets(&a.linear));
    }
    if a.var_shift.is_some() && a.count > 0 {
        s += &format!(" variance {}", a.variance());
    }
    s + ")"
}

pub fn nonzero(globals: &[i64]) -> Vec<(u32, i64)> {
    (0..globals.len() as u32)
        .zip(globals.iter().copied())
        .filter(|&(_, v)| v != 0)
        .collect()
}

/// What of an error kind the kernel and the reference VM must agree on: the error code of a
/// `kernel_string` fault is the kernel's own (user space cannot read kernel memory at all,
/// and SystemTap's message does not show it), so it is left out.
pub fn comparable(kind: RuntimeErrorKind) -> RuntimeErrorKind {
    match kind {
        RuntimeErrorKind::KernelStringFault { addr, .. } => {
            RuntimeErrorKind::KernelStringFault { addr, rc: 0 }
        }
        k => k,
    }
}

pub fn kind_of(e: &VmError) -> RuntimeErrorKind {
    match e {
        VmError::StringFault {
            kernel: false,
            addr,
            rc,
            ..
        } => RuntimeErrorKind::UserStringFault {
            addr: *addr,
            rc: *rc,
        },
        VmError::StringFault {
            kernel: true, addr, ..
        } => RuntimeErrorKind::KernelStringFault { addr: *addr, rc: 0 },
        VmError::MemoryFault { addr, .. } => RuntimeErrorKind::ReadFault { addr: *addr },
        VmError::DivisionByZero { .. } => RuntimeErrorKind::DivisionByZero,
        VmError::MaxAction { .. } => RuntimeErrorKind::MaxAction,
        VmError::InvalidRandint { .. } => RuntimeErrorKind::InvalidRandint,
        VmError::EmptyAggregate { .. } => RuntimeErrorKind::EmptyAggregate,
        VmError::StrFn {
            err: otf_script::strfn::StrError::PositionOutOfBounds,
            ..
        } => RuntimeErrorKind::PositionOutOfBounds,
        VmError::Array {
            err: otf_script::store::MapError::Full { .. },
            ..
        } => RuntimeErrorKind::ArrayFull,
        e => panic!("generator bug: a verified program is malformed at run time: {e}"),
    }
}

/// The code the reference VM runs: the image's, with `Exit` as an output record marked
/// [`EXIT_MARK`] (same pcs, same step count).
pub fn exit_marked(code: &[Insn]) -> Vec<Insn> {
    code.iter()
        .map(|insn| match insn.opcode() {
            Some(Op::Exit) => Insn::new(Op::Out, EXIT_MARK, 0),
            _ => *insn,
        })
        .collect()
}

/// The hit as the reference VM runs it: the entry program (saving `@entry` slots), the body,
/// then, unless it was skipped, the conditions it re-evaluates.
pub fn reference(code: &[Insn], p: &Placed, env: &HitEnv) -> Observed {
    let case = &p.case;
    let fault = |e: &VmError| {
        p.fault(kind_of(e), e.pc() as u32)
            .expect("the reference VM fails inside the case")
    };
    let mut globals = case.initial_store();
    let mut outputs = Vec::new();
    let mut exit = false;
    let mut sink = |o: OutRecord| {
        if o.fmt == EXIT_MARK as u32 {
            exit = true;
        } else {
            outputs.push((o.fmt, o.args, o.strs));
        }
    };
    let mut errors = 0;
    let mut saved = [0; MAX_ENTRY_SLOTS];
    let entry = case.run_entry.then(|| {
        let start = p.entry.expect("an entry program") as usize;
        let mut hit = env.fixed_hit([0; MAX_ENTRY_SLOTS]);
        match vm::run(code, start, &mut globals, &mut hit, &mut sink) {
            Ok(_) => {
                saved = hit.entry;
                Ok(())
            }
            Err(e) => {
                errors += 1;
                Err(fault(&e))
            }
        }
    });
    let mut hit = env.fixed_hit(saved);
    hit.names[1] = crate::randprog::pp_of(p.index);
    hit.names[2] = crate::randprog::probefunc_of(p.index);
    let body = match vm::run(code, p.body as usize, &mut globals, &mut hit, &mut sink) {
        Ok(o) if o.end == End::Skip => BodyEnd::Skip,
        Ok(_) => BodyEnd::Next,
        Err(e) => {
            errors += 1;
            BodyEnd::Fault(fault(&e))
        }
    };
    let mut cond_bits = case.cond_init.clone();
    let (mut need_refresh, mut notifications, mut cond_errors) = (false, 0, Vec::new());
    if body != BodyEnd::Skip {
        for &k in &case.reeval {
            let mut hit = env.fixed_hit([0; MAX_ENTRY_SLOTS]);
            match vm::run(
                code,
                p.cond_offs[k] as usize,
                &mut globals,
                &mut hit,
                &mut sink,
            ) {
                Ok(o) => {
                    let now = matches!(o.end, End::Ret(v) if v != 0);
                    if cond_bits[k] != now {
                        cond_bits[k] = now;
                        if !need_refresh {
                            need_refresh = true;
                            notifications += case.safe_context as u32;
                        }
                    }
                }
                Err(e) => {
                    errors += 1;
                    cond_errors.push(fault(&e));
                }
            }
        }
    }
    let (arrays, aggregates) = contents(&mut globals);
    let strings = strings_of(&globals);
    Observed {
        strings,
        counters: Counters {
            hits: 1,
            bodies: (body == BodyEnd::Next) as u64,
            skipped_cond: (body == BodyEnd::Skip) as u64,
            errors,
            entry_runs: case.run_entry as u64,
            ..Counters::default()
        },
        entry,
        body,
        outputs,
        exit,
        cond_errors,
        cond_bits,
        need_refresh,
        notifications,
        globals: nonzero(&globals.scalars),
        arrays,
        aggregates,
        stray: Vec::new(),
    }
}

/// The hit in the kernel: `BPF_PROG_TEST_RUN` with the entry cookie (if the entry runs), then
/// with the body's cookie.
pub fn kernel(rt: &Runtime, ev: &mut EventReader<'_>, p: &Placed, env: &HitEnv) -> Observed {
    let case = &p.case;
    let gv = rt.globals();
    for (g, v) in case.initial_globals().into_iter().enumerate() {
        gv.set(g as u32, v);
    }
    for (k, &id) in p.cond_ids.iter().enumerate() {
        rt.set_cond_enabled(id, case.cond_init[k]);
    }
    rt.clear_exit_requested();
    rt.take_need_refresh();
    let before = rt.counters(p.pidx);
    let (dropped, undecodable) = (rt.error_counters().ringbuf_dropped, ev.undecodable());
    let mut stray = Vec::new();
    // The maps outlive the hits of a runtime: every hit starts from its case's elements.
    let mut store = rt.store();
    if let Err(e) = case.init_maps(&mut store) {
        stray.push(format!("putting the starting elements: {e}"));
    }
    // String globals start empty in every hit.
    for &g in STR_GLOBALS {
        store.store_str(g, "");
    }
    if case.run_entry {
        if let Err(e) = rt.test_run_hit(entry_cookie(p.pidx)) {
            stray.push(format!("test run of the entry: {e}"));
        }
    }
    if let Err(e) = rt.test_run_hit(cookie(p.pidx)) {
        stray.push(format!("test run of the body: {e}"));
    }
    let events = ev.drain().unwrap_or_else(|e| {
        stray.push(format!("reading the ring buffer: {e}"));
        Vec::new()
    });
    let after = rt.counters(p.pidx);

    let (mut outputs, mut exits, mut notifications) = (Vec::new(), 0, 0);
    let (mut entry_fault, mut body_fault, mut cond_errors) = (None, None, Vec::new());
    for e in events {
        let pidx = match &e {
            Event::Output { pidx, .. }
            | Event::Exit { pidx }
            | Event::Error { pidx, .. }
            | Event::Deferred { pidx, .. }
            | Event::Notification { pidx } => *pidx,
        };
        if pidx != p.pidx {
            stray.push(format!("a record of pidx {pidx}: {e:?}"));
            continue;
        }
        match e {
            Event::Output {
                fmt,
                args,
                strs,
                cpu,
                pid,
                tid,
                ..
            } => {
                if i64::from(pid) != env.pid
                    || i64::from(tid) != env.tid
                    || env.cpu.is_some_and(|c| c != i64::from(cpu))
                {
                    stray.push(format!("output header pid {pid} tid {tid} cpu {cpu}"));
                }
                outputs.push((fmt, args, strs));
            }
            Event::Exit { .. } => exits += 1,
            Event::Notification { .. } => notifications += 1,
            Event::Deferred { .. } => stray.push(format!("a deferred-body record: {e:?}")),
            Event::Error { kind, pc, .. } => match p.fault(kind, pc) {
                Some(
                    f @ Fault {
                        prog: Prog::Entry, ..
                    },
                ) if entry_fault.is_none() && case.run_entry => entry_fault = Some(f),
                Some(
                    f @ Fault {
                        prog: Prog::Body, ..
                    },
                ) if body_fault.is_none() => body_fault = Some(f),
                Some(
                    f @ Fault {
                        prog: Prog::Cond(_),
                        ..
                    },
                ) => cond_errors.push(f),
                f => stray.push(format!("unexpected error {kind:?} at pc {pc} ({f:?})")),
            },
        }
    }
    let exit = rt.exit_requested();
    if exit != (exits > 0) {
        stray.push(format!(
            "exit_requested is {exit} after {exits} exit records"
        ));
    }
    if rt.error_counters().ringbuf_dropped != dropped {
        stray.push("ring buffer records were dropped".into());
    }
    if ev.undecodable() != undecodable {
        stray.push("undecodable ring buffer records".into());
    }
    let sub = |a: u64, b: u64| a.wrapping_sub(b);
    let counters = Counters {
        hits: sub(after.hits, before.hits),
        bodies: sub(after.bodies, before.bodies),
        skipped_cond: sub(after.skipped_cond, before.skipped_cond),
        skipped_lock: sub(after.skipped_lock, before.skipped_lock),
        skipped_nest: sub(after.skipped_nest, before.skipped_nest),
        errors: sub(after.errors, before.errors),
        entry_runs: sub(after.entry_runs, before.entry_runs),
        ..Counters::default()
    };
    let body = match body_fault {
        Some(f) => BodyEnd::Fault(f),
        None if counters.skipped_cond > 0 => BodyEnd::Skip,
        None => BodyEnd::Next,
    };
    let (arrays, aggregates) = contents(&mut store);
    let strings = strings_of(&store);
    Observed {
        strings,
        entry: case.run_entry.then(|| entry_fault.map_or(Ok(()), Err)),
        body,
        outputs,
        exit,
        cond_errors,
        cond_bits: p.cond_ids.iter().map(|&id| rt.cond_enabled(id)).collect(),
        need_refresh: rt.take_need_refresh(),
        notifications,
        counters,
        globals: nonzero(&gv.snapshot()),
        arrays,
        aggregates,
        stray,
    }
}
