//! Scheduler behaviour asserted directly (no snapshots): edge events, object safety, planning
//! details, and a randomized check of the arming invariants.

mod common;

use std::time::Duration;

use common::{type_of, FakeGroup, FakeKernel, Sim};
use otf_core::plan::{plan_refresh, plan_start};
use otf_core::{
    ApplyReport, ArmedSet, Event, Flavor, IgnoreReason, Op, Phase, Plan, PlanInput, ProbeEntry,
    ProbeGroup, ProbeType, SafeContext, Scheduler, SchedulerConfig, State, Step, StopReason,
};

#[test]
fn events_before_start_are_ignored_and_stop_before_start_runs_nothing() {
    let mut sim = Sim::otf(
        &[true],
        vec![FakeGroup::new("tp", Flavor::Tracepoint, &[(0, Some(0))])],
    );
    assert_eq!(sim.tick(), [Step::Ignored(IgnoreReason::NotStarted)]);
    assert_eq!(
        sim.event(Event::Notification),
        [Step::Ignored(IgnoreReason::NotStarted)]
    );
    assert_eq!(sim.sched.next_tick_due(), None);
    assert_eq!(sim.stop(StopReason::Signal), [Step::Enter(State::Stopped)]);
    assert_eq!(
        (sim.kernel.begins, sim.kernel.ends, sim.groups[0].applies),
        (0, 0, 0)
    );
    assert_eq!(sim.start(), [Step::Ignored(IgnoreReason::Stopped)]);
}

#[test]
fn second_start_is_ignored_and_quiet_notification_is_idle() {
    let mut sim = Sim::otf(
        &[true],
        vec![FakeGroup::new("tp", Flavor::Tracepoint, &[(0, Some(0))])],
    );
    sim.start();
    assert_eq!(sim.start(), [Step::Ignored(IgnoreReason::AlreadyStarted)]);
    assert_eq!(
        sim.event(Event::Notification),
        [Step::NeedRefresh(false), Step::Idle]
    );
    assert_eq!(sim.sched.refresh_count(), 0);
    assert_eq!(sim.kernel.begins, 1);
}

#[test]
fn stale_need_refresh_at_start_is_cleared() {
    let mut sim = Sim::otf(
        &[false],
        vec![FakeGroup::new("tp", Flavor::Tracepoint, &[(0, Some(0))])],
    );
    sim.kernel.need_refresh = true;
    let steps = sim.start();
    assert!(steps.contains(&Step::NeedRefresh(true)));
    assert!(!sim.kernel.need_refresh);
    assert_eq!(sim.tick(), [Step::NeedRefresh(false), Step::Idle]);
}

/// A group as a probe-type crate would write it (name and safe context from its type), used
/// through `Box<dyn ProbeGroup>`.
struct Minimal {
    probes: Vec<ProbeEntry>,
    applied: Vec<(Phase, Op, u32)>,
}

impl ProbeGroup for Minimal {
    fn probe_type(&self) -> &'static ProbeType {
        type_of(Flavor::Tracepoint)
    }
    fn probes(&self) -> &[ProbeEntry] {
        &self.probes
    }
    fn otf_supported(&self) -> bool {
        true
    }
    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        for a in &plan.actions {
            self.applied.push((plan.phase, a.op, a.pidx));
        }
        ApplyReport::all_ok(plan)
    }
}

#[test]
fn groups_work_as_trait_objects() {
    let mut groups: Vec<Box<dyn ProbeGroup + Send>> = vec![Box::new(FakeGroup::new(
        "uprobes",
        Flavor::Uprobe,
        &[(0, Some(0)), (1, None)],
    ))];
    let mut kernel = FakeKernel {
        conds: vec![false],
        ..FakeKernel::default()
    };
    let mut sched = Scheduler::new(SchedulerConfig::default());
    sched.handle(Event::Start, Duration::ZERO, &mut kernel, &mut groups);
    assert_eq!(sched.armed().armed(), [1]);

    let mut dyn_groups: Vec<Box<dyn ProbeGroup>> = vec![Box::new(Minimal {
        probes: vec![ProbeEntry::new(
            0,
            Some(0),
            Flavor::Tracepoint,
            "kernel.trace(\"x\")",
        )],
        applied: Vec::new(),
    })];
    assert_eq!(dyn_groups[0].name(), "tracepoint");
    assert_eq!(
        dyn_groups[0].otf_safe_context(),
        type_of(Flavor::Tracepoint).safe_context
    );
    let mut kernel = FakeKernel {
        conds: vec![true],
        ..FakeKernel::default()
    };
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let kernel_dyn: &mut dyn otf_core::Kernel = &mut kernel;
    sched.handle(Event::Start, Duration::ZERO, kernel_dyn, &mut dyn_groups);
    sched.handle(
        Event::Stop(StopReason::Exit),
        Duration::from_millis(1),
        kernel_dyn,
        &mut dyn_groups,
    );
    assert_eq!(sched.state(), State::Stopped);
}

#[test]
fn planning_edge_cases() {
    let probes = [
        ProbeEntry::new(0, Some(7), Flavor::Kprobe, "cond id out of range"),
        ProbeEntry::new(1, Some(0), Flavor::Kretprobe, "c0"),
        ProbeEntry::new(2, None, Flavor::Kprobe, "no condition"),
    ];
    let kprobes = type_of(Flavor::Kprobe);
    let armed = ArmedSet::new();
    let input = PlanInput {
        conditions: &[false],
        otf: true,
        armed: &armed,
    };
    let plan = plan_start(kprobes, &probes, true, &input);
    let ops: Vec<_> = plan
        .actions
        .iter()
        .map(|a| (a.pidx, a.op, a.decision.is_some()))
        .collect();
    assert_eq!(
        ops,
        [
            (0, Op::Arm, false),
            (1, Op::StartDisarmed, true),
            (2, Op::Arm, false)
        ]
    );
    // The words are the type's, the flavor the probe's.
    let lines: Vec<_> = plan.decisions().map(|d| d.to_string()).collect();
    assert_eq!(lines, ["otf: registering as disabled (kretprobe) pidx 1"]);
    let words = |ty: &ProbeType| {
        plan_start(ty, &probes, true, &input)
            .decisions()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        words(type_of(Flavor::Tracepoint)),
        ["otf: not registering (kretprobe) pidx 1"]
    );
    // Nothing is armed (e.g. every arm failed): a refresh plans the wanted ones again.
    let plan = plan_refresh(kprobes, &probes, true, &input);
    let ops: Vec<_> = plan.actions.iter().map(|a| (a.pidx, a.op)).collect();
    assert_eq!(ops, [(0, Op::Arm), (2, Op::Arm)]);
    // --no-otf: retries carry no decision line.
    let no_otf = PlanInput {
        otf: false,
        ..input
    };
    let plan = plan_refresh(kprobes, &probes, true, &no_otf);
    assert_eq!(plan.actions.len(), 3);
    assert!(plan.decisions().next().is_none());
    // Unsorted probes still give a plan in pidx order.
    let reversed: Vec<_> = probes.iter().rev().cloned().collect();
    let pidxs: Vec<_> = plan_start(kprobes, &reversed, true, &input)
        .actions
        .iter()
        .map(|a| a.pidx)
        .collect();
    assert_eq!(pidxs, [0, 1, 2]);
}

#[test]
fn failed_disarm_stays_armed_and_is_retried_at_the_next_tick() {
    let mut sim = Sim::otf(
        &[true],
        vec![
            FakeGroup::new("timer", Flavor::Hrtimer, &[(0, None)]),
            FakeGroup::new("tp", Flavor::Tracepoint, &[(1, Some(0))]).fail(1, Op::Disarm, 1, "EIO"),
        ],
    );
    sim.start();
    sim.at(5.0).hit(0, None, &[(0, false)]);
    sim.deliver();
    assert!(sim.sched.armed().is_armed(1));
    assert_eq!(sim.sched.armed().failure(1).map(|f| f.op), Some(Op::Disarm));
    // Still armed, but its body is gated by the condition.
    assert!(!sim.at(6.0).hit(1, Some("must not print"), &[]));
    let steps = sim.at(100.0).tick();
    assert!(steps.contains(&Step::RetryDue));
    assert!(!sim.sched.armed().is_armed(1));
    assert_eq!(sim.sched.armed().failure(1), None);
    sim.check_consistent();
}

/// A group that forgets to report an outcome: the action counts as failed.
struct Forgetful(Vec<ProbeEntry>);

impl ProbeGroup for Forgetful {
    fn probe_type(&self) -> &'static ProbeType {
        type_of(Flavor::Uprobe)
    }
    fn name(&self) -> &'static str {
        "forgetful"
    }
    fn probes(&self) -> &[ProbeEntry] {
        &self.0
    }
    fn otf_supported(&self) -> bool {
        true
    }
    fn otf_safe_context(&self) -> SafeContext {
        SafeContext::not_safe("test")
    }
    fn apply(&mut self, _plan: &Plan) -> ApplyReport {
        ApplyReport::new()
    }
}

#[test]
fn missing_outcome_fails_the_start() {
    let mut groups = vec![Box::new(Forgetful(vec![ProbeEntry::new(
        0,
        None,
        Flavor::Uprobe,
        "x",
    )]))];
    let mut kernel = FakeKernel {
        conds: vec![],
        ..FakeKernel::default()
    };
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let steps = sched.handle(Event::Start, Duration::ZERO, &mut kernel, &mut groups);
    assert!(steps.contains(&Step::StartFailed));
    assert!(sched.start_failed());
}

#[test]
fn start_failure_can_be_tolerated() {
    let config = SchedulerConfig {
        abort_on_start_failure: false,
        ..SchedulerConfig::default()
    };
    let mut sim = Sim::new(
        config,
        &[true],
        vec![
            FakeGroup::new("up", Flavor::Uprobe, &[(0, Some(0)), (1, Some(0))]).fail(
                0,
                Op::Arm,
                1,
                "EBUSY",
            ),
        ],
    );
    sim.start();
    assert_eq!(sim.sched.state(), State::Running);
    assert_eq!(sim.sched.armed().armed(), [1]);
    assert!(sim.at(100.0).tick().contains(&Step::RetryDue));
    assert_eq!(sim.sched.armed().armed(), [0, 1]);
}

/// Random sessions: random probes write random conditions from safe and unsafe contexts,
/// notifications are delivered or lost, ticks come; arming operations sometimes fail. After
/// every refresh, what the scheduler believes is armed is what the fake kernel fires (the fake
/// also panics on arming an armed probe or disarming a disarmed one), and every probe without a
/// pending failure is armed exactly when its condition holds.
#[test]
fn random_sessions_keep_armed_equal_to_wanted() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _session in 0..200 {
        let n_conds = 1 + rand(3) as usize;
        let conds: Vec<bool> = (0..n_conds).map(|_| rand(2) == 1).collect();
        let mut groups = Vec::new();
        let mut pidx = 0;
        for (name, flavor) in [
            ("hrtimer", Flavor::Hrtimer),
            ("kprobes", Flavor::Kprobe),
            ("uprobes", Flavor::Uprobe),
            ("tracepoint", Flavor::Tracepoint),
        ] {
            let mut probes = Vec::new();
            for _ in 0..=rand(3) {
                let cond = if rand(4) == 0 {
                    None
                } else {
                    Some(rand(n_conds as u64) as u32)
                };
                probes.push((pidx, cond));
                pidx += 1;
            }
            let mut g = FakeGroup::new(name, flavor, &probes);
            if rand(3) == 0 {
                g = g.unsafe_context();
            }
            if rand(5) == 0 {
                let (p, _) = probes[rand(probes.len() as u64) as usize];
                let op = if rand(2) == 0 { Op::Arm } else { Op::Disarm };
                g = g.fail(p, op, 1 + rand(5) as u32, "injected");
            }
            groups.push(g);
        }
        let mut sim = Sim::new(
            SchedulerConfig {
                abort_on_start_failure: false,
                ..SchedulerConfig::default()
            },
            &conds,
            groups,
        );
        sim.start();
        sim.check_consistent();
        let mut now = 0.0;
        for _ in 0..60 {
            now += 1.0;
            sim.at(now);
            match rand(4) {
                0 | 1 => {
                    let writer = rand(u64::from(pidx)) as u32;
                    let c = rand(n_conds as u64) as u32;
                    sim.hit(writer, None, &[(c, rand(2) == 1)]);
                }
                2 => {
                    if rand(4) == 0 {
                        sim.notification_pending = false; // lost: the timer must catch up
                    } else {
                        sim.deliver();
                    }
                }
                _ => {
                    sim.tick();
                }
            }
            sim.check_consistent();
            if !sim.kernel.need_refresh && !sim.notification_pending {
                for g in &sim.groups {
                    for p in &g.probes {
                        if sim.sched.armed().failure(p.pidx).is_some() {
                            continue;
                        }
                        let wanted = p.cond.is_none_or(|c| sim.kernel.conds[c as usize]);
                        assert_eq!(
                            sim.sched.armed().is_armed(p.pidx),
                            wanted,
                            "pidx {} after a settled refresh\n{}",
                            p.pidx,
                            sim.timeline.as_str()
                        );
                    }
                }
            }
        }
        sim.stop(StopReason::Exit);
        sim.check_released();
        assert_eq!(sim.sched.state(), State::Stopped);
    }
}
