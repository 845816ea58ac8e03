//! `otf run`: the session.
//!
//! Order of things (docs/architecture.md, "The model, in the code"): compile, resolve, load
//! the BPF runtime with the compiled script, build one probe group per probe type, then hand
//! everything to the otf-core [`Scheduler`]: its `Start` runs the `begin` bodies (here, with
//! the reference VM over the mmapped globals), evaluates every condition, and arms only the
//! probes whose condition is true. The event loop then waits on the ring buffer, the
//! background refresh timer, signals, the `-c` command and the `-T` deadline. At the end,
//! `Stop` runs the `end` bodies and releases everything.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use otf_bpf::{Event as RtEvent, LoadOptions, ProbeSlot, ProgKind, Runtime, RuntimeImage};
use otf_core::{
    DecisionLine, Event, Kernel, Phase, ProbeEntry, ProbeGroup, Scheduler, SchedulerConfig, State,
    Step, StopReason,
};
use otf_script::diag::SourceFile;
use otf_script::point::PointKind;
use otf_script::vm::{self, End};

use crate::cli::{OutputFormat, RunArgs};
use crate::frontend::Front;
use crate::resolve::{Attach, Resolved};
use crate::Failure;

mod user;

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

/// The output stream: script output and decision lines, text or JSON lines, flushed per batch.
struct Output {
    json: bool,
    w: io::BufWriter<io::Stdout>,
    broken: bool,
}

impl Output {
    fn new(json: bool) -> Output {
        Output {
            json,
            w: io::BufWriter::with_capacity(64 * 1024, io::stdout()),
            broken: false,
        }
    }

    fn write(&mut self, s: &str) {
        if !self.broken && self.w.write_all(s.as_bytes()).is_err() {
            self.broken = true;
        }
    }

    fn output(&mut self, pidx: Option<u32>, text: &str) {
        if self.json {
            let v = serde_json::json!({"type": "output", "pidx": pidx, "text": text});
            self.write(&format!("{v}\n"));
        } else {
            self.write(text);
        }
    }

    /// A structured JSON record (with `-o json` only).
    fn record(&mut self, v: &serde_json::Value) {
        if self.json {
            self.write(&format!("{v}\n"));
        }
    }

    fn decision(&mut self, group: &str, line: &DecisionLine) {
        if self.json {
            let v = serde_json::json!({
                "type": "otf",
                "decision": line.decision.as_str(),
                "group": group,
                "flavor": line.flavor.as_str(),
                "pidx": line.pidx,
            });
            self.write(&format!("{v}\n"));
        } else {
            self.write(&format!("{line}\n"));
        }
    }

    fn flush(&mut self) {
        if !self.broken && self.w.flush().is_err() {
            self.broken = true;
        }
    }
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
                let text = match self.front.compiled.script.formats.get(fmt as usize) {
                    Some(f) => {
                        let (pp, func) = self
                            .res
                            .probes
                            .get(pidx as usize)
                            .map(|p| (p.pp.as_str(), p.probefunc.as_str()))
                            .unwrap_or(("", ""));
                        otf_script::format::render_strs(f, args, strs, &comm, pp, func)
                    }
                    None => format!("<output record with unknown format {fmt}>\n"),
                };
                self.out.output(Some(pidx), &text);
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

    /// Reads every record available now, handles them, and flushes the output.
    fn pump(&mut self) {
        match self.events.drain() {
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

/// `sh -c CMD` runs a simple command in a child of the shell (dash does not exec it), so
/// `target()` would be the shell's pid. A simple command — words only, no shell syntax that
/// `exec` would change — is prefixed with `exec`, so the command keeps the shell's pid, which is
/// `target()`. Anything else (lists, pipes, redirections, compound commands, assignments) runs as
/// written, and `target()` is the pid of the shell that runs it.
fn exec_if_simple(cmd: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done",
        "!", "{", "}", "exec", "function", "select", "time",
    ];
    let trimmed = cmd.trim();
    let Some(first) = trimmed.split_whitespace().next() else {
        return cmd.to_string();
    };
    let syntax = trimmed.contains("$(")
        || trimmed.chars().any(|c| {
            matches!(
                c,
                ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' | '\n' | '#'
            )
        });
    if syntax || first.contains('=') || KEYWORDS.contains(&first) {
        cmd.to_string()
    } else {
        format!("exec {trimmed}")
    }
}

/// A `-c` command: started before the probes are attached (so that `target()` is known) but
/// held at a gate until the session is running.
struct Child {
    child: std::process::Child,
    gate: Option<OwnedFd>,
    done: bool,
}

impl Child {
    fn spawn(cmd: &str) -> Result<Child, Failure> {
        use std::os::unix::process::CommandExt;
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Failure::Message(format!(
                "cannot start -c command: pipe: {}",
                io::Error::last_os_error()
            )));
        }
        // SAFETY: pipe2 just returned these two fds, owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let rd_raw = rd.as_raw_fd();
        let wr_raw = wr.as_raw_fd();
        // The shell waits at the gate (fd 3) until the session runs, then becomes the command
        // with the same pid (`exec`), so target() is the command's pid.
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("read -r _ <&3; exec 3<&-; exec /bin/sh -c \"$0\"")
            .arg(exec_if_simple(cmd));
        // SAFETY: the closure only calls dup2 and close (async-signal-safe) between fork and
        // exec; it never blocks, so spawn() returns once the shell is running.
        unsafe {
            command.pre_exec(move || {
                if rd_raw == 3 {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it.
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(rd_raw, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(wr_raw);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| Failure::Message(format!("cannot start -c command `{cmd}`: {e}")))?;
        drop(rd);
        Ok(Child {
            child,
            gate: Some(wr),
            done: false,
        })
    }

    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    fn release(&mut self) {
        self.gate = None;
    }

    /// True once the command has ended (reaped).
    fn poll_exited(&mut self) -> bool {
        if !self.done {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.done = true;
            }
        }
        self.done
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn os_err(what: &str) -> Failure {
    Failure::Message(format!("{what}: {}", io::Error::last_os_error()))
}

fn new_fd(r: libc::c_int, what: &str) -> Result<OwnedFd, Failure> {
    if r < 0 {
        return Err(os_err(what));
    }
    // SAFETY: the kernel just returned this new fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn timerfd(first: Duration, every: Option<Duration>) -> Result<OwnedFd, Failure> {
    // SAFETY: plain system call with constant flags.
    let fd = new_fd(
        unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
            )
        },
        "timerfd_create",
    )?;
    let ts = |d: Duration| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    let first = first.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: ts(every.unwrap_or(Duration::ZERO)),
        it_value: ts(first),
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not requested.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(os_err("timerfd_settime"));
    }
    Ok(fd)
}

fn drain_fd(fd: RawFd) {
    let mut buf = [0u8; 256];
    // SAFETY: reading into a local buffer of the given size from a non-blocking fd.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

const TOK_RINGBUF: u64 = 1;
const TOK_TICK: u64 = 2;
const TOK_SIGNAL: u64 = 3;
const TOK_DEADLINE: u64 = 4;

fn epoll_add(ep: &OwnedFd, fd: RawFd, token: u64) -> Result<(), Failure> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event; both fds are open.
    if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(os_err("epoll_ctl"));
    }
    Ok(())
}

/// Blocks SIGINT, SIGTERM and SIGCHLD in this thread (and the threads it starts later) and
/// returns a signalfd for them.
fn signal_fd() -> Result<OwnedFd, Failure> {
    // SAFETY: sigset operations on a local, initialised set; sigprocmask/signalfd with valid
    // arguments.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(os_err("pthread_sigmask"));
        }
        new_fd(
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK),
            "signalfd",
        )
    }
}

/// Reads pending signals; returns (SIGINT/SIGTERM seen, SIGCHLD seen).
fn read_signals(fd: RawFd) -> (bool, bool) {
    let (mut term, mut chld) = (false, false);
    loop {
        // SAFETY: signalfd_siginfo is plain data, valid when zeroed.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        // SAFETY: reads at most the size of `si` into it.
        let n = unsafe {
            libc::read(
                fd,
                std::ptr::addr_of_mut!(si).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            )
        };
        if n <= 0 {
            break;
        }
        match si.ssi_signo as i32 {
            libc::SIGCHLD => chld = true,
            _ => term = true,
        }
    }
    (term, chld)
}

/// Whether the running kernel supports attach cookies on raw tracepoints (6.10 and later).
fn raw_tp_cookies() -> bool {
    otf_bpf::features::features().raw_tp_cookies
}

/// The runtime image: code, one probe slot per pidx, condition programs, globals. Probes that
/// share one perf tracepoint attachment are chained (`raw_tp`: whether raw tracepoint programs
/// are loaded, which decides which tracepoints use perf).
pub(crate) fn build_image(
    src: &SourceFile,
    front: &Front,
    res: &Resolved,
    target: i64,
    raw_tp: bool,
) -> RuntimeImage {
    let script = &front.compiled.script;
    let tps: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Tracepoint(tp) => Some((p.pidx, tp.clone())),
            _ => None,
        })
        .collect();
    let mut chain: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for group in otf_tracepoint::perf_chains(&tps, raw_tp) {
        for w in group
            .windows(2)
            .take(otf_bpf::layout::MAX_CHAIN.saturating_sub(1))
        {
            chain.insert(w[0], w[1]);
        }
    }
    let probes = res
        .probes
        .iter()
        .map(|p| {
            let u = &script.units[p.unit];
            let safe_context = match &p.attach {
                Attach::Timer(_) => otf_hrtimer::OTF_SAFE_CONTEXT,
                Attach::Tracepoint(tp) => otf_tracepoint::unsafe_reason(tp).is_none(),
                Attach::Uprobe(_) => otf_uprobes_inode::UPROBE_SAFE_CONTEXT.safe,
                Attach::Kprobe(_) => otf_kprobes::KPROBE_SAFE_CONTEXT.safe,
            };
            let (line, col) = src.line_col(u.point_span.lo);
            ProbeSlot {
                body: Some(u.body.start),
                entry: u.entry.as_ref().map(|e| e.start),
                cond: u.cond.as_ref().map(|_| p.unit as u32),
                label: format!("probe {} at {}:{line}:{col}", p.pp, src.name()),
                reeval: u.reeval.iter().map(|&c| c as u32).collect(),
                lock_mask: u.lock_mask,
                safe_context,
                is_return: u.point.is_return(),
                chain: chain.get(&p.pidx).copied(),
                deferred: u.deferred,
                pp: p.pp.clone(),
                probefunc: p.probefunc.clone(),
            }
        })
        .collect();
    let cond_code = script
        .units
        .iter()
        .map(|u| u.cond.as_ref().map(|c| c.start).unwrap_or(0))
        .collect();
    RuntimeImage {
        code: script.code.clone(),
        probes,
        cond_code,
        cond_init: vec![false; script.units.len()],
        globals_init: script.globals.iter().map(|g| g.init).collect(),
        maps: otf_codegen::maps::MapSpec::all(&script.globals),
        target_pid: target,
        strings: script.strings.clone(),
    }
}

fn entry_of(p: &crate::resolve::ProbeInfo) -> ProbeEntry {
    let cond = p.has_cond.then_some(p.unit as u32);
    ProbeEntry::new(p.pidx, cond, p.attach.flavor(), p.pp.clone())
}

fn prog_fd(rt: &Runtime, kind: ProgKind) -> Result<OwnedFd, Failure> {
    let p = rt.program(kind).ok_or_else(|| {
        Failure::Message(format!(
            "the BPF runtime has no {} program loaded",
            kind.name()
        ))
    })?;
    p.try_clone_to_owned()
        .map_err(|e| Failure::Message(format!("dup of {}: {e}", kind.name())))
}

/// One probe group per probe type present in the script, in a fixed order: tracepoints,
/// uprobes, kprobes, then timers. Start plans are applied in this order, so timers start last:
/// a timer body that runs at once sees every event probe of the start already armed. (With
/// timers first, a slow attach, e.g. a tracepoint under emulation, ate into the first window
/// of a toggling timer.)
fn build_groups(
    rt: &Runtime,
    front: &Front,
    res: &Resolved,
) -> Result<Vec<Box<dyn ProbeGroup>>, Failure> {
    let mut groups: Vec<Box<dyn ProbeGroup>> = Vec::new();
    let tps: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Tracepoint(t) => Some((entry_of(p), t.clone())),
            _ => None,
        })
        .collect();
    if !tps.is_empty() {
        let perf = prog_fd(rt, ProgKind::Tracepoint)?;
        let raw = rt
            .program(ProgKind::RawTp)
            .and_then(|p| p.try_clone_to_owned().ok());
        let g = otf_tracepoint::TracepointGroup::new(
            perf.as_fd(),
            raw.as_ref().map(|r| r.as_fd()),
            tps,
        )
        .map_err(|e| Failure::Message(format!("tracepoint probes: {e}")))?;
        groups.push(Box::new(g));
    }
    let script = &front.compiled.script;
    let ups: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Uprobe(t) => Some(otf_uprobes_inode::UprobeSpec {
                pidx: p.pidx,
                cond: p.has_cond.then_some(p.unit as u32),
                target: t.clone(),
                entry_save: script.units[p.unit].entry.is_some(),
            }),
            _ => None,
        })
        .collect();
    if !ups.is_empty() {
        let progs = otf_uprobes_inode::UprobePrograms {
            uprobe: prog_fd(rt, ProgKind::Uprobe)?,
            uretprobe: prog_fd(rt, ProgKind::Uretprobe)?,
            uprobe_multi: prog_fd(rt, ProgKind::UprobeMulti).ok(),
            uretprobe_multi: prog_fd(rt, ProgKind::UretprobeMulti).ok(),
        };
        let g = otf_uprobes_inode::UprobeGroup::new(ups, progs)
            .map_err(|e| Failure::Message(format!("uprobes: {e}")))?;
        groups.push(Box::new(g));
    }
    let kps: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Kprobe(t) => Some(otf_kprobes::KprobeSpec {
                pidx: p.pidx,
                cond: p.has_cond.then_some(p.unit as u32),
                target: t.clone(),
                entry_save: script.units[p.unit].entry.is_some(),
            }),
            _ => None,
        })
        .collect();
    if !kps.is_empty() {
        otf_kprobes::kprobes_available().map_err(Failure::Message)?;
        let progs = otf_kprobes::KprobePrograms {
            kprobe: prog_fd(rt, ProgKind::Kprobe)?,
            kretprobe: prog_fd(rt, ProgKind::Kretprobe)?,
            kprobe_multi: prog_fd(rt, ProgKind::KprobeMulti).ok(),
            kretprobe_multi: prog_fd(rt, ProgKind::KretprobeMulti).ok(),
        };
        let g = otf_kprobes::KprobeGroup::new(kps, progs)
            .map_err(|e| Failure::Message(format!("kprobes: {e}")))?;
        groups.push(Box::new(g));
    }
    let timers: Vec<_> = res
        .probes
        .iter()
        .filter_map(|p| match &p.attach {
            Attach::Timer(t) => Some((entry_of(p), *t)),
            _ => None,
        })
        .collect();
    if !timers.is_empty() {
        let perf = if timers.iter().any(|(_, t)| t.profile) {
            Some(prog_fd(rt, ProgKind::PerfEvent)?)
        } else {
            None
        };
        let map = rt
            .timers_map()
            .ok_or_else(|| Failure::Message("timer probes: no timers map (an otf bug)".into()))?;
        let bpf = otf_hrtimer::BpfTimers::new(
            prog_fd(rt, ProgKind::Timer)?.as_fd(),
            map,
            std::mem::size_of::<otf_codegen::layout::TimerSlot>(),
        )
        .map_err(|e| Failure::Message(format!("timer probes: {e}")))?;
        let g = otf_hrtimer::HrtimerGroup::with_bpf_timers(
            perf.as_ref().map(|p| p.as_fd()),
            bpf,
            timers,
        )
        .map_err(|e| Failure::Message(format!("timer probes: {e}")))?;
        groups.push(Box::new(g));
    }
    Ok(groups)
}

/// The program kinds the script needs.
pub(crate) fn needed_kinds(res: &Resolved) -> Vec<ProgKind> {
    let mut kinds = Vec::new();
    let mut add = |k: ProgKind| {
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    };
    for p in &res.probes {
        match &p.attach {
            Attach::Timer(t) if t.profile => add(ProgKind::PerfEvent),
            Attach::Timer(_) => add(ProgKind::Timer),
            Attach::Tracepoint(tp) => {
                add(ProgKind::Tracepoint);
                if tp.subsystem != "syscalls" && raw_tp_cookies() {
                    add(ProgKind::RawTp);
                }
            }
            // Multi-link programs only where the kernel has the links (probed once): without
            // them, every function gets its own link.
            Attach::Uprobe(_) => {
                add(ProgKind::Uprobe);
                add(ProgKind::Uretprobe);
                if otf_bpf::features::features().uprobe_multi {
                    add(ProgKind::UprobeMulti);
                    add(ProgKind::UretprobeMulti);
                }
            }
            Attach::Kprobe(_) => {
                add(ProgKind::Kprobe);
                add(ProgKind::Kretprobe);
                if otf_bpf::features::features().kprobe_multi {
                    add(ProgKind::KprobeMulti);
                    add(ProgKind::KretprobeMulti);
                }
            }
        }
    }
    kinds
}

/// Loads the runtime with the program kinds the script needs; if optional kinds (multi-link
/// and raw tracepoint programs) fail to load, retries without them (with the image rebuilt for
/// that: without raw tracepoints, more probes share perf attachments).
fn load_runtime(
    src: &SourceFile,
    front: &Front,
    res: &Resolved,
    target: i64,
) -> Result<Runtime, Failure> {
    let kinds = needed_kinds(res);
    let raw = kinds.contains(&ProgKind::RawTp);
    let image = build_image(src, front, res, target, raw);
    let opts = LoadOptions {
        kinds: kinds.clone(),
        ..LoadOptions::default()
    };
    match Runtime::load_with(&image, &opts) {
        Ok(rt) => Ok(rt),
        Err(first) => {
            let optional = [
                ProgKind::RawTp,
                ProgKind::UprobeMulti,
                ProgKind::UretprobeMulti,
                ProgKind::KprobeMulti,
                ProgKind::KretprobeMulti,
            ];
            let fewer: Vec<_> = kinds
                .into_iter()
                .filter(|k| !optional.contains(k))
                .collect();
            let image = build_image(src, front, res, target, false);
            let opts = LoadOptions {
                kinds: fewer,
                ..LoadOptions::default()
            };
            Runtime::load_with(&image, &opts)
                .map_err(|_| Failure::Message(format!("cannot load the otf BPF runtime: {first}")))
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

fn print_stats(
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
    let target = match (&child, args.target) {
        (Some(c), _) => c.pid(),
        (None, Some(pid)) => i64::from(pid),
        (None, None) => 0,
    };

    let rt = load_runtime(&src, &front, &res, target)?;
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
    let events = rt
        .events()
        .map_err(|e| Failure::Message(format!("ring buffer: {e}")))?;
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
                TOK_RINGBUF => session.pump(),
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
            session.pump();
            let steps = sched.handle(Event::TimerTick, t0.elapsed(), &mut session, &mut groups);
            report_failures(&steps);
        }
    };
    drop(deadline);

    // STOPPING: from here on no probe body runs in the kernel.
    rt.set_stopping();
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

#[cfg(test)]
mod tests {
    use super::exec_if_simple;

    #[test]
    fn simple_commands_are_execed_others_run_as_written() {
        assert_eq!(exec_if_simple("sleep 1"), "exec sleep 1");
        assert_eq!(
            exec_if_simple("  ./prog -x 'a b' $HOME "),
            "exec ./prog -x 'a b' $HOME"
        );
        for cmd in [
            "sleep 1; echo hi",
            "a | b",
            "a && b",
            "prog > out",
            "(sub)",
            "echo $(date)",
            "X=1 prog",
            "while true; do :; done",
            "if x",
            "",
            "exec prog",
        ] {
            assert_eq!(exec_if_simple(cmd), cmd, "{cmd}");
        }
    }
}
