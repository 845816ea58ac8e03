//! In-memory fakes for driving the scheduler without a kernel: a [`FakeKernel`] (globals reduced
//! to condition values, the `need_refresh` flag, pending output) and a [`FakeGroup`] that keeps
//! a "firing" bit per probe and refuses impossible operations (arming an armed probe, disarming a
//! disarmed one), plus a [`Sim`] that plays probe hits the way the BPF runtime would.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use otf_core::timeline::Timeline;
use otf_core::{
    ApplyReport, CondId, Decision, DecisionLine, Event, Flavor, Kernel, Op, Phase, Pidx, Plan,
    ProbeEntry, ProbeGroup, ProbeType, SafeContext, Scheduler, SchedulerConfig, Step, StopReason,
    Vocabulary,
};

/// A fake probe type of `flavor` (and `ret`urn flavor) with the words `words` (start
/// disarmed, arm, disarm).
const fn fake_type(
    name: &'static str,
    flavor: Flavor,
    ret: Option<Flavor>,
    words: [Decision; 3],
) -> ProbeType {
    ProbeType {
        name,
        family: "fake",
        point: "fake",
        suffixes: &[],
        flavor,
        return_flavor: ret,
        vocabulary: Vocabulary {
            start_disarmed: words[0],
            arm: words[1],
            disarm: words[2],
        },
        safe_context: SafeContext::safe("fake: process context"),
    }
}

/// The fake probe types, with the words of the real ones (SystemTap's).
const TIMERS: ProbeType = fake_type(
    "hrtimer",
    Flavor::Hrtimer,
    None,
    [
        Decision::NotStarting,
        Decision::Enabling,
        Decision::Disabling,
    ],
);
const KPROBES: ProbeType = fake_type(
    "kprobes",
    Flavor::Kprobe,
    Some(Flavor::Kretprobe),
    [
        Decision::RegisteringAsDisabled,
        Decision::Enabling,
        Decision::Disabling,
    ],
);
const UPROBES: ProbeType = fake_type(
    "uprobes",
    Flavor::Uprobe,
    Some(Flavor::Uretprobe),
    [
        Decision::NotRegistering,
        Decision::Registering,
        Decision::Unregistering,
    ],
);
const TRACEPOINTS: ProbeType = fake_type(
    "tracepoint",
    Flavor::Tracepoint,
    None,
    [
        Decision::NotRegistering,
        Decision::Registering,
        Decision::Unregistering,
    ],
);

/// The fake probe type whose probes have `flavor`.
pub fn type_of(flavor: Flavor) -> &'static ProbeType {
    match flavor {
        Flavor::Hrtimer => &TIMERS,
        Flavor::Kprobe | Flavor::Kretprobe => &KPROBES,
        Flavor::Uprobe | Flavor::Uretprobe => &UPROBES,
        Flavor::Tracepoint => &TRACEPOINTS,
    }
}

/// The kernel side, in memory.
#[derive(Debug, Default)]
pub struct FakeKernel {
    /// Live condition values (what re-evaluating from the globals gives).
    pub conds: Vec<bool>,
    /// The BPF runtime's `need_refresh` flag.
    pub need_refresh: bool,
    /// Output records not yet drained.
    pub pending: Vec<String>,
    /// The printed stream: drained output and decision lines, in order.
    pub stream: Vec<String>,
    /// Condition writes done by `begin` bodies.
    pub begin_writes: Vec<(CondId, bool)>,
    /// Condition writes done while `end` runs by a probe still armed in the kernel (they set
    /// `need_refresh`, as the runtime would).
    pub writes_during_end: Vec<(CondId, bool)>,
    /// Counters, to check the scheduler's calls.
    pub begins: u32,
    /// How many times `run_end` ran.
    pub ends: u32,
}

impl Kernel for FakeKernel {
    fn run_begin(&mut self) {
        self.begins += 1;
        self.pending.push("begin".into());
        for &(c, v) in &self.begin_writes.clone() {
            self.conds[c as usize] = v;
        }
    }
    fn run_end(&mut self) {
        self.ends += 1;
        self.pending.push("end".into());
        for &(c, v) in &self.writes_during_end.clone() {
            if self.conds[c as usize] != v {
                self.conds[c as usize] = v;
                self.need_refresh = true;
            }
        }
    }
    fn take_need_refresh(&mut self) -> bool {
        std::mem::take(&mut self.need_refresh)
    }
    fn drain_output(&mut self) {
        self.stream.append(&mut self.pending);
    }
    fn current_conditions(&mut self) -> Vec<bool> {
        self.conds.clone()
    }
    fn emit_decisions(&mut self, _group: &str, lines: &[DecisionLine]) {
        self.stream.extend(lines.iter().map(|l| l.to_string()));
    }
}

/// A probe group in memory.
#[derive(Debug)]
pub struct FakeGroup {
    /// Group name.
    pub name: &'static str,
    /// Its probe type (the words of its decisions).
    pub ty: &'static ProbeType,
    /// Its probes.
    pub probes: Vec<ProbeEntry>,
    /// `otf_supported()`.
    pub supported: bool,
    /// `otf_safe_context()`.
    pub safe: SafeContext,
    /// Per-probe: true while the probe fires in the "kernel".
    pub firing: BTreeMap<Pidx, bool>,
    /// Probes that exist in the kernel (attached, enabled or not).
    pub exists: BTreeMap<Pidx, bool>,
    /// Injected failures: (pidx, op, how many more times, error).
    pub failures: Vec<(Pidx, Op, u32, &'static str)>,
    /// Every apply call, for counting.
    pub applies: u32,
}

impl FakeGroup {
    /// A group of `flavor` probes given as (pidx, cond).
    pub fn new(name: &'static str, flavor: Flavor, probes: &[(Pidx, Option<CondId>)]) -> FakeGroup {
        FakeGroup {
            name,
            ty: type_of(flavor),
            probes: probes
                .iter()
                .map(|&(p, c)| ProbeEntry::new(p, c, flavor, format!("{name} probe {p}")))
                .collect(),
            supported: true,
            safe: SafeContext::safe("fake: process context"),
            firing: BTreeMap::new(),
            exists: BTreeMap::new(),
            failures: Vec::new(),
            applies: 0,
        }
    }

    /// Add probes of another flavor of the group's type (e.g. `.return` next to `.call`).
    pub fn with(mut self, flavor: Flavor, probes: &[(Pidx, Option<CondId>)]) -> FakeGroup {
        for &(p, c) in probes {
            self.probes.push(ProbeEntry::new(
                p,
                c,
                flavor,
                format!("{} probe {p}", self.name),
            ));
        }
        self.probes.sort_by_key(|p| p.pidx);
        self
    }

    /// Mark the group's context unsafe.
    pub fn unsafe_context(mut self) -> FakeGroup {
        self.safe = SafeContext::not_safe("fake: may run in NMI");
        self
    }

    /// Mark the group as not supporting on-the-fly arming.
    pub fn unsupported(mut self) -> FakeGroup {
        self.supported = false;
        self
    }

    /// Make `op` on `pidx` fail the next `times` times.
    pub fn fail(mut self, pidx: Pidx, op: Op, times: u32, error: &'static str) -> FakeGroup {
        self.failures.push((pidx, op, times, error));
        self
    }

    /// True if `pidx` is fired by the "kernel".
    pub fn is_firing(&self, pidx: Pidx) -> bool {
        self.firing.get(&pidx).copied().unwrap_or(false)
    }

    /// True if any kernel object is left.
    pub fn anything_left(&self) -> bool {
        self.exists.values().any(|&e| e) || self.firing.values().any(|&f| f)
    }

    fn take_failure(&mut self, pidx: Pidx, op: Op) -> Option<&'static str> {
        let f = self
            .failures
            .iter_mut()
            .find(|f| f.0 == pidx && f.1 == op && f.2 > 0)?;
        f.2 -= 1;
        Some(f.3)
    }
}

impl ProbeGroup for FakeGroup {
    fn probe_type(&self) -> &'static ProbeType {
        self.ty
    }
    fn name(&self) -> &'static str {
        self.name
    }
    fn probes(&self) -> &[ProbeEntry] {
        &self.probes
    }
    fn otf_supported(&self) -> bool {
        self.supported
    }
    fn otf_safe_context(&self) -> SafeContext {
        self.safe
    }
    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        self.applies += 1;
        let mut report = ApplyReport::new();
        for action in &plan.actions {
            if let Some(err) = self.take_failure(action.pidx, action.op) {
                report.failed(action, err);
                continue;
            }
            let firing = self.is_firing(action.pidx);
            match action.op {
                Op::Arm => {
                    assert!(!firing, "{}: arm of armed pidx {}", self.name, action.pidx);
                    self.firing.insert(action.pidx, true);
                    self.exists.insert(action.pidx, true);
                }
                Op::Disarm => {
                    assert!(
                        firing,
                        "{}: disarm of disarmed pidx {}",
                        self.name, action.pidx
                    );
                    assert_eq!(plan.phase, Phase::Refresh);
                    self.firing.insert(action.pidx, false);
                    // kprobes and hrtimers keep a disabled object; the others detach.
                    let keeps = matches!(
                        self.probes
                            .iter()
                            .find(|p| p.pidx == action.pidx)
                            .map(|p| p.flavor),
                        Some(Flavor::Hrtimer | Flavor::Kprobe | Flavor::Kretprobe)
                    );
                    self.exists.insert(action.pidx, keeps);
                }
                Op::StartDisarmed => {
                    assert_eq!(plan.phase, Phase::Start);
                    let registers = matches!(
                        self.probes
                            .iter()
                            .find(|p| p.pidx == action.pidx)
                            .map(|p| p.flavor),
                        Some(Flavor::Kprobe | Flavor::Kretprobe)
                    );
                    self.exists.insert(action.pidx, registers);
                }
                Op::Release => {
                    self.firing.insert(action.pidx, false);
                    self.exists.insert(action.pidx, false);
                }
            }
            report.ok(action);
        }
        report
    }
}

/// A simulated session: scheduler, fake kernel, fake groups, a timeline and a clock.
pub struct Sim {
    /// The scheduler under test.
    pub sched: Scheduler,
    /// The fake kernel.
    pub kernel: FakeKernel,
    /// The fake groups.
    pub groups: Vec<FakeGroup>,
    /// What happened, as text.
    pub timeline: Timeline,
    /// A notification record is waiting in the ring buffer.
    pub notification_pending: bool,
    now: Duration,
}

impl Sim {
    /// A session with conditions initially `conds` (before `begin`).
    pub fn new(config: SchedulerConfig, conds: &[bool], groups: Vec<FakeGroup>) -> Sim {
        Sim {
            sched: Scheduler::new(config),
            kernel: FakeKernel {
                conds: conds.to_vec(),
                ..FakeKernel::default()
            },
            groups,
            timeline: Timeline::new(),
            notification_pending: false,
            now: Duration::ZERO,
        }
    }

    /// A session with the default configuration.
    pub fn otf(conds: &[bool], groups: Vec<FakeGroup>) -> Sim {
        Sim::new(SchedulerConfig::default(), conds, groups)
    }

    /// Set the clock, in milliseconds (fractions allowed).
    pub fn at(&mut self, ms: f64) -> &mut Sim {
        self.now = Duration::from_micros((ms * 1000.0).round() as u64);
        self
    }

    /// Deliver `event` now; returns the steps.
    pub fn event(&mut self, event: Event) -> Vec<Step> {
        if event == Event::Notification {
            self.notification_pending = false;
        }
        let steps = self
            .sched
            .handle(event, self.now, &mut self.kernel, &mut self.groups);
        self.timeline.record(self.now, &event, &steps);
        steps
    }

    /// Start.
    pub fn start(&mut self) -> Vec<Step> {
        self.event(Event::Start)
    }

    /// Background timer tick.
    pub fn tick(&mut self) -> Vec<Step> {
        self.event(Event::TimerTick)
    }

    /// Deliver the pending notification, if one was sent. Returns whether one was.
    pub fn deliver(&mut self) -> bool {
        if self.notification_pending {
            self.event(Event::Notification);
            true
        } else {
            false
        }
    }

    /// Stop.
    pub fn stop(&mut self, reason: StopReason) -> Vec<Step> {
        self.event(Event::Stop(reason))
    }

    fn group_of(&self, pidx: Pidx) -> (usize, ProbeEntry) {
        for (i, g) in self.groups.iter().enumerate() {
            if let Some(p) = g.probes.iter().find(|p| p.pidx == pidx) {
                return (i, p.clone());
            }
        }
        panic!("no probe pidx {pidx}");
    }

    /// The probe `pidx` is hit. If the kernel fires it and its condition holds, its body prints
    /// `print` (if any) and writes the conditions in `writes`; each changed condition raises
    /// `need_refresh`, and if that went 0→1 and the probe's context is safe, a notification is
    /// sent. Returns whether the body ran.
    pub fn hit(&mut self, pidx: Pidx, print: Option<&str>, writes: &[(CondId, bool)]) -> bool {
        let (gi, entry) = self.group_of(pidx);
        let group = &self.groups[gi];
        if !group.is_firing(pidx) {
            self.timeline
                .note(self.now, &format!("pidx {pidx} hit: not firing (disarmed)"));
            return false;
        }
        if let Some(c) = entry.cond {
            if !self.kernel.conds[c as usize] {
                self.timeline.note(
                    self.now,
                    &format!("pidx {pidx} hit: body skipped (c{c}=false)"),
                );
                return false;
            }
        }
        let safe = group.otf_safe_context().safe;
        let mut note = format!("pidx {pidx} ({}) body:", entry.flavor);
        if let Some(text) = print {
            self.kernel.pending.push(text.to_string());
            let _ = write!(note, " println(\"{text}\");");
        }
        for &(c, v) in writes {
            let old = self.kernel.conds[c as usize];
            let _ = write!(note, " c{c}:={v}");
            if old == v {
                let _ = write!(note, " (unchanged);");
                continue;
            }
            self.kernel.conds[c as usize] = v;
            if self.kernel.need_refresh {
                let _ = write!(note, " need_refresh already 1;");
            } else {
                self.kernel.need_refresh = true;
                if safe {
                    self.notification_pending = true;
                    let _ = write!(note, " need_refresh 0->1, notify;");
                } else {
                    let _ = write!(note, " need_refresh 0->1, unsafe context: no notification;");
                }
            }
        }
        if print.is_none() && writes.is_empty() {
            note.push_str(" ran");
        }
        self.timeline.note(self.now, note.trim_end_matches(';'));
        true
    }

    /// Timeline, printed stream and final state, for a snapshot.
    pub fn render(&self) -> String {
        let mut s = self.timeline.as_str().to_string();
        s.push_str("\nstream:\n");
        for line in &self.kernel.stream {
            let _ = writeln!(s, "  {line}");
        }
        let _ = writeln!(s, "\nfinal: state {}", self.sched.state());
        for (pidx, st) in self.sched.armed().iter() {
            let _ = write!(
                s,
                "  pidx {pidx}: armed={} times_armed={} times_disarmed={}",
                st.armed, st.times_armed, st.times_disarmed
            );
            if let Some(f) = &st.failure {
                let _ = write!(s, " failure={}:{} x{}", f.op, f.error, f.consecutive);
            }
            s.push('\n');
        }
        s
    }

    /// Check that the scheduler's view and the fake kernel agree, and that every supported,
    /// failure-free probe is armed exactly when wanted (after a refresh).
    pub fn check_consistent(&self) {
        for g in &self.groups {
            for p in &g.probes {
                assert_eq!(
                    self.sched.armed().is_armed(p.pidx),
                    g.is_firing(p.pidx),
                    "pidx {} armed set vs kernel",
                    p.pidx
                );
            }
        }
    }

    /// After stop: nothing may be left in the kernel.
    pub fn check_released(&self) {
        for g in &self.groups {
            assert!(!g.anything_left(), "{} left kernel objects", g.name);
        }
    }
}
