//! `otf run`: the session.
//!
//! Order of things (docs/architecture.md, "The model, in the code"): compile, resolve, load
//! the BPF runtime with the compiled script, build one probe group per probe type, then hand
//! everything to the otf-core [`Scheduler`]: its `Start` runs the `begin` bodies (here, with
//! the reference VM over the mmapped globals), evaluates every condition, and arms only the
//! probes whose condition is true. The event loop then waits on the ring buffer, the
//! background refresh timer, signals, the `-c` command and the `-T` deadline. At the end,
//! `Stop` runs the `end` bodies and releases everything.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use otf_bpf::{Event as RtEvent, Runtime};
use otf_core::{
    DecisionLine, Event, Kernel, Phase, ProbeGroup, Scheduler, SchedulerConfig, State, Step,
    StopReason,
};
use otf_script::point::PointKind;
use otf_script::vm::{self, End};

use crate::cli::{OutputFormat, RunArgs};
use crate::frontend::Front;
use crate::resolve::Resolved;
use crate::Failure;

mod child;
mod expedite;
mod fds;
mod groups;
mod image;
mod output;
mod stats;
mod user;
mod wakeup;

use child::Child;
use fds::*;
use groups::build_groups;
use image::load_runtime;
pub(crate) use image::{build_image, needed_kinds, raw_loaded};

/// Records handled per wake-up of the event loop before it looks at its other fds again.
const PUMP_BATCH: usize = 4096;
use output::Output;
use stats::print_stats;

/// True if the process may load BPF programs and open perf events: root, or CAP_BPF and
/// CAP_PERFMON in the effective set.
pub fn has_privilege() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let Some(eff) = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
    else {
        return false;
    };
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    eff & (1 << CAP_PERFMON) != 0 && eff & (1 << CAP_BPF) != 0
}

/// What the session learned from the records and bodies, for the event loop.
#[derive(Default)]
struct Flags {
    exit: bool,
    notified: bool,
    errors: u64,
}

/// The kernel side of the session, as the scheduler sees it.
struct Session<'a> {
    rt: &'a Runtime,
    events: otf_bpf::EventReader<'a>,
    front: &'a Front,
    res: &'a Resolved,
    out: Output,
    flags: Flags,
    debug: bool,
    suppress_errors: bool,
    target: i64,
    comm: String,
    /// Units with a condition: (cond id, condition program start).
    conds: Vec<(usize, u32)>,
    ncond: usize,
    /// `end` bodies were requested by the scheduler and wait for the probes to be released.
    end_pending: bool,
    /// The cached condition bits were set from user space (once, at start).
    conds_synced: bool,
}

impl Session<'_> {
    fn report_error(&mut self, what: &str, near: &str, pidx: Option<u32>) {
        self.out.flush();
        match pidx {
            Some(p) => eprintln!("ERROR: {what} near {near} (pidx {p})"),
            None => eprintln!("ERROR: {what} near {near}"),
        }
        self.flags.errors += 1;
    }

    fn handle_record(&mut self, ev: RtEvent) {
        match ev {
            RtEvent::Output {
                pidx,
                fmt,
                ref args,
                ref strs,
                ..
            } => {
                let comm = ev.comm_str().unwrap_or_default();
                let script = &self.front.compiled.script;
                let mut hists = Vec::new();
                let text = match script.formats.get(fmt as usize) {
                    Some(f) => {
                        let (pp, func) = self
                            .res
                            .probes
                            .get(pidx as usize)
                            .map(|p| (p.pp.as_str(), p.probefunc.as_str()))
                            .unwrap_or(("", ""));
                        // A kernel body's histograms are the buckets the record carries,
                        // copied when the print ran.
                        let json = self.out.json;
                        let mut hist = |g: u32, linear: bool, keys: &[_], words: Option<&[i64]>| {
                            let info = &script.globals[g as usize];
                            let agg = otf_script::hist::aggregate_of_words(
                                &info.hist,
                                linear,
                                words.unwrap_or_default(),
                            );
                            let lin = info.hist.linear.filter(|_| linear);
                            if json {
                                hists.push(user::hist_json(&info.name, keys, &agg, lin));
                            }
                            otf_script::hist::render(&agg, lin)
                        };
                        otf_script::hist::render_record_bytes(
                            f,
                            args,
                            strs,
                            &script.globals,
                            &comm,
                            pp,
                            func,
                            &mut hist,
                        )
                    }
                    None => format!("<output record with unknown format {fmt}>\n").into_bytes(),
                };
                self.out.output(Some(pidx), &text);
                for v in hists {
                    self.out.record(&v);
                }
            }
            RtEvent::Exit { .. } => self.flags.exit = true,
            RtEvent::Deferred {
                pidx,
                cpu,
                pid,
                tid,
                ..
            } => {
                let comm = ev.comm_str().unwrap_or_default();
                self.run_deferred(pidx, cpu, pid, tid, &comm);
            }
            RtEvent::Error { pidx, kind, pc } => {
                let pp = self
                    .res
                    .probes
                    .get(pidx as usize)
                    .map(|p| p.pp.clone())
                    .unwrap_or_else(|| "an unknown probe".into());
                let script = &self.front.compiled.script;
                let msg = match kind {
                    // SystemTap names the limit: the array is the failing instruction's.
                    otf_bpf::RuntimeErrorKind::ArrayFull => {
                        let max = script
                            .code
                            .get(pc as usize)
                            .and_then(|i| script.globals.get(i.arg as usize))
                            .map(|g| g.max_entries())
                            .unwrap_or(otf_script::bytecode::MAXMAPENTRIES);
                        format!("{} ({max})", kind.message())
                    }
                    _ => kind.message().to_string(),
                };
                self.report_error(&msg, &pp, Some(pidx));
            }
            RtEvent::Notification { .. } => self.flags.notified = true,
        }
    }

    /// Reads every record available now, handles them, and flushes the output. Only where
    /// nothing produces records any more (after the release); the event loop uses
    /// [`pump_some`](Self::pump_some).
    fn pump(&mut self) {
        self.pump_records(usize::MAX);
    }

    /// As [`pump`](Self::pump), but at most [`PUMP_BATCH`] records, so that a probe flooding
    /// the ring buffer faster than otf prints cannot keep the loop from its signals, deadline
    /// and refresh timer (measured: `printf` on every `getppid` of two spinning processes kept
    /// the debug build from its Ctrl-C for 8 s and more when one call read until empty).
    fn pump_some(&mut self) {
        self.pump_records(PUMP_BATCH);
    }

    fn pump_records(&mut self, max: usize) {
        let got = if max == usize::MAX {
            self.events.drain()
        } else {
            self.events.drain_at_most(max)
        };
        match got {
            Ok(evs) => {
                for ev in evs {
                    self.handle_record(ev);
                }
            }
            Err(e) => eprintln!("WARNING: {e}"),
        }
        if self.rt.exit_requested() {
            self.flags.exit = true;
        }
        self.out.flush();
    }
}

impl Kernel for Session<'_> {
    fn run_begin(&mut self) {
        self.run_user_bodies(&PointKind::Begin);
    }

    fn run_end(&mut self) {
        // The scheduler asks for the end bodies before it releases the probes; running them then
        // would let probe bodies still change the globals the end bodies read. Defer them to the
        // drain that follows the release (STOPPING: release, drain, end; as SystemTap, where no
        // probe body runs once the session is stopping).
        self.end_pending = true;
    }

    fn take_need_refresh(&mut self) -> bool {
        self.rt.take_need_refresh()
    }

    fn drain_output(&mut self) {
        self.pump();
        // The first drain after `run_end` is the one that follows the release of every group.
        if self.end_pending {
            self.end_pending = false;
            self.run_end_bodies();
        }
    }

    fn current_conditions(&mut self) -> Vec<bool> {
        let mut vals = vec![true; self.ncond];
        let code = &self.front.compiled.script.code;
        for &(cond, start) in &self.conds {
            let mut hit = self.hit();
            let mut globals = self.rt.store();
            let r = vm::run(code, start as usize, &mut globals, &mut hit, &mut |_| {});
            // A condition that fails to evaluate counts as true: arming is an optimisation, and
            // the body re-checks the condition (and reports the error) in the kernel.
            let v = !matches!(r, Ok(o) if o.end == End::Ret(0));
            vals[cond] = v;
            // The cached bits are the kernel's once probes run (bodies keep them current
            // under the lock, and a hit whose bit is clear is skipped): user space sets them
            // only at start, after the begin bodies and before anything is attached.
            if !self.conds_synced {
                self.rt.set_cond_enabled(cond as u32, v);
            }
        }
        self.conds_synced = true;
        vals
    }

    fn emit_decisions(&mut self, group: &str, lines: &[DecisionLine]) {
        // Before the attachments change: a probe being disarmed runs no body from now on,
        // even while the kernel finishes releasing it (docs/runtime.md).
        for l in lines {
            use otf_core::Decision as D;
            let armed = matches!(l.decision, D::Enabling | D::Registering);
            self.rt.set_armed(l.pidx, armed);
        }
        if self.debug {
            for l in lines {
                self.out.decision(group, l);
            }
            self.out.flush();
        }
    }
}

/// Reports failed actions of the steps. At start they are fatal (the scheduler tears down);
/// later, warnings.
fn report_failures(steps: &[Step]) {
    for s in steps {
        if let Step::Apply {
            group,
            plan,
            report,
        } = s
        {
            for f in report.failures() {
                let err = f.error.as_deref().unwrap_or("failed");
                if plan.phase == Phase::Start {
                    eprintln!("error: cannot attach {group} probe pidx {}: {err}", f.pidx);
                } else {
                    eprintln!(
                        "WARNING: otf: {} of {group} probe pidx {} failed: {err}",
                        f.op, f.pidx
                    );
                }
            }
        }
    }
}

/// Raises the soft limit on open files to the hard limit when many attachments are needed:
/// each tracepoint or timer attachment holds one or two fds (`kernel.trace("*")` is thousands),
/// and the default soft limit is often 1024 (as bpftrace does).
fn raise_fd_limit(attachments: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    let want = (attachments as u64 * 2 + 256).min(lim.rlim_max);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: setrlimit reads the struct we own; raising the soft limit up to the hard
        // limit needs no privilege. Failure leaves the old limit, reported later as EMFILE.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// Runs `otf run`.
pub fn run(args: &RunArgs) -> Result<i32, Failure> {
    if !has_privilege() {
        return Err(Failure::Message(
            "otf run needs root (or CAP_BPF and CAP_PERFMON)".into(),
        ));
    }
    let src = crate::load_source(&args.source)?;
    let (front, res) = crate::check::compile_and_resolve(&src)?;
    if let Some(why) = otf_bpf::features::missing() {
        return Err(Failure::Message(why));
    }
    // Declared before everything it speeds up, so that it is restored after they are released.
    let _expedited = match args.otf_rcu_expedited {
        true => Some(expedite::Expedited::set()?),
        false => None,
    };
    raise_fd_limit(res.probes.len());
    if args.verbose > 0 {
        eprintln!(
            "otf: {} unit(s), {} kernel attachment(s), {} instruction(s)",
            front.units.len(),
            res.probes.len(),
            front.compiled.script.code.len()
        );
        for p in &res.probes {
            eprintln!("otf: pidx {} {} -> {}", p.pidx, p.pp, p.attach);
        }
    }

    // Signals first, so every thread started later has them blocked too.
    let sigfd = signal_fd()?;
    let mut child = match &args.command {
        Some(cmd) => Some(Child::spawn(cmd)?),
        None => None,
    };
    // After the -c command is started (it keeps its own slice), before any thread of otf.
    wakeup::prompt_wakeups();
    let target = match (&child, args.target) {
        (Some(c), _) => c.pid(),
        (None, Some(pid)) => i64::from(pid),
        (None, None) => 0,
    };

    let rt = load_runtime(&src, &front, &res, target)?;
    rt.set_stop_on_error(!args.suppress_handler_errors);
    {
        // String globals start at their initialisers (integers are in the image).
        use otf_script::vm::GlobalStore as _;
        let mut store = rt.store();
        for (g, info) in front.compiled.script.globals.iter().enumerate() {
            if let Some(t) = &info.init_str {
                store.store_str(g as u32, t);
            }
        }
    }
    let mut groups = build_groups(&rt, &front, &res)?;
    let events = rt.events().map_err(|source| Failure::Runtime {
        what: "ring buffer",
        source,
    })?;
    let conds = front
        .compiled
        .script
        .units
        .iter()
        .enumerate()
        .filter_map(|(i, u)| u.cond.as_ref().map(|c| (i, c.start)))
        .collect();
    let comm = std::fs::read_to_string("/proc/self/comm")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "otf".into());
    let mut session = Session {
        rt: &rt,
        events,
        front: &front,
        res: &res,
        out: Output::new(args.output == OutputFormat::Json),
        flags: Flags::default(),
        debug: args.otf_debug,
        suppress_errors: args.suppress_handler_errors,
        target,
        comm,
        conds,
        ncond: front.compiled.script.units.len(),
        end_pending: false,
        conds_synced: false,
    };

    let config = SchedulerConfig {
        otf: !args.no_otf,
        interval: args.otf_interval,
        ..SchedulerConfig::default()
    };
    let mut sched = Scheduler::new(config);
    let t0 = Instant::now();
    let steps = sched.handle(Event::Start, t0.elapsed(), &mut session, &mut groups);
    report_failures(&steps);
    if sched.start_failed() {
        session.out.flush();
        return Ok(1);
    }
    if let Some(c) = child.as_mut() {
        c.release();
    }

    let ep = new_fd(
        // SAFETY: plain system call.
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    epoll_add(&ep, session.events.epoll_fd(), TOK_RINGBUF)?;
    let tick = timerfd(
        args.otf_interval,
        Some(args.otf_interval.max(Duration::from_micros(10))),
    )?;
    epoll_add(&ep, tick.as_raw_fd(), TOK_TICK)?;
    epoll_add(&ep, sigfd.as_raw_fd(), TOK_SIGNAL)?;
    let deadline = match args.timeout {
        Some(d) => {
            let fd = timerfd(d, None)?;
            epoll_add(&ep, fd.as_raw_fd(), TOK_DEADLINE)?;
            Some(fd)
        }
        None => None,
    };

    let reason = loop {
        if session.flags.exit {
            break StopReason::Exit;
        }
        if session.flags.errors > 0 && !session.suppress_errors {
            break StopReason::Error;
        }
        if session.out.broken {
            break StopReason::Signal;
        }
        if let Some(c) = child.as_mut() {
            if c.poll_exited() {
                break StopReason::CommandEnded;
            }
        }
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: `evs` is a valid buffer of 8 events.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(os_err("epoll_wait"));
        }
        let mut stop = None;
        let mut ticked = false;
        for ev in &evs[..n as usize] {
            match ev.u64 {
                TOK_RINGBUF => session.pump_some(),
                TOK_TICK => {
                    drain_fd(tick.as_raw_fd());
                    ticked = true;
                }
                TOK_SIGNAL => {
                    let (term, _chld) = read_signals(sigfd.as_raw_fd());
                    if term {
                        stop = Some(StopReason::Signal);
                    }
                }
                TOK_DEADLINE => stop = Some(StopReason::Timeout),
                _ => {}
            }
        }
        if let Some(r) = stop {
            break r;
        }
        if session.flags.exit || (session.flags.errors > 0 && !session.suppress_errors) {
            continue;
        }
        if std::mem::take(&mut session.flags.notified) {
            let steps = sched.handle(Event::Notification, t0.elapsed(), &mut session, &mut groups);
            report_failures(&steps);
        }
        if ticked {
            // The timer is also the fallback for notifications that were never sent.
            session.pump_some();
            let steps = sched.handle(Event::TimerTick, t0.elapsed(), &mut session, &mut groups);
            report_failures(&steps);
        }
    };
    drop(deadline);

    // STOPPING: from here on no probe body runs in the kernel.
    rt.set_stopping();
    for g in groups.iter_mut() {
        g.stopping();
    }
    let steps = sched.handle(Event::Stop(reason), t0.elapsed(), &mut session, &mut groups);
    report_failures(&steps);
    debug_assert_eq!(sched.state(), State::Stopped);
    // Timer firings the kernel did not run: a BPF timer counts the due times it passed over;
    // a perf timer's are derived (the perf overflow path skips a BPF program while another
    // runs on its CPU, without counting it).
    let lost: std::collections::BTreeMap<u32, u64> = groups
        .iter()
        .flat_map(|g| {
            g.probes()
                .iter()
                .filter_map(|p| {
                    g.lost_hits(p.pidx, rt.counters(p.pidx).hits)
                        .map(|n| (p.pidx, n))
                })
                .collect::<Vec<_>>()
        })
        .filter(|&(_, n)| n > 0)
        .collect();
    drop(groups);
    session.pump();
    if session.end_pending {
        // Not reached with the current scheduler (it drains after releasing), kept so that end
        // bodies can never be lost.
        session.end_pending = false;
        session.run_end_bodies();
    }

    // SystemTap's "skipped probes": hits that did not run for want of a lock or a nesting
    // level, and hits the kernel did not run at all (docs/runtime.md).
    let skipped: u64 = res
        .probes
        .iter()
        .map(|p| rt.counters(p.pidx).skipped())
        .sum::<u64>()
        + rt.kernel_misses().iter().map(|(_, n)| n).sum::<u64>()
        + lost.values().sum::<u64>();
    if args.stats {
        print_stats(&mut session.out, &rt, &res, &sched, &lost);
    }
    session.out.flush();
    if skipped > 0 {
        eprintln!("WARNING: Number of skipped probes: {skipped}");
    }
    let dropped = rt.error_counters().ringbuf_dropped;
    if dropped > 0 {
        eprintln!("WARNING: {dropped} output record(s) lost: the ring buffer was full");
    }
    let failed =
        reason == StopReason::Error || (session.flags.errors > 0 && !session.suppress_errors);
    Ok(if failed { 1 } else { 0 })
}
