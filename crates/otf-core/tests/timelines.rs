//! Timelines of the scheduler driven by the in-memory fakes, recorded as insta snapshots
//! (see docs/snapshots.md). Each test also asserts the facts its snapshot is about.

mod common;

use common::{FakeGroup, Sim};
use otf_core::{Flavor, IgnoreReason, Op, SchedulerConfig, State, Step, StopReason};

fn decisions(sim: &Sim) -> Vec<&str> {
    sim.kernel
        .stream
        .iter()
        .filter(|l| l.starts_with("otf: "))
        .map(String::as_str)
        .collect()
}

/// Start with one condition false and one true in each group: the start vocabulary of every
/// flavor; probes armed at start print nothing.
#[test]
fn start_vocabulary_per_group() {
    // c0 = false, c1 = true
    let mut sim = Sim::otf(
        &[false, true],
        vec![
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(0, Some(0)), (1, Some(1))]),
            FakeGroup::new("kprobes", Flavor::Kprobe, &[(2, Some(0)), (4, Some(1))])
                .with(Flavor::Kretprobe, &[(3, Some(0)), (5, Some(1))]),
            FakeGroup::new("uprobes", Flavor::Uprobe, &[(6, Some(0)), (8, Some(1))])
                .with(Flavor::Uretprobe, &[(7, Some(0)), (9, Some(1))]),
            FakeGroup::new(
                "tracepoint",
                Flavor::Tracepoint,
                &[(10, Some(0)), (11, Some(1))],
            ),
        ],
    );
    sim.at(0.0).start();
    assert_eq!(sim.sched.state(), State::Running);
    assert_eq!(
        decisions(&sim),
        [
            "otf: not starting (hrtimer) pidx 0",
            "otf: registering as disabled (kprobe) pidx 2",
            "otf: registering as disabled (kretprobe) pidx 3",
            "otf: not registering (uprobe) pidx 6",
            "otf: not registering (uretprobe) pidx 7",
            "otf: not registering (tracepoint) pidx 10",
        ]
    );
    assert_eq!(sim.sched.armed().armed(), [1, 4, 5, 8, 9, 11]);
    // kprobes registered disabled exist in the kernel; the others do not.
    assert_eq!(sim.groups[1].exists.get(&2), Some(&true));
    assert_eq!(sim.groups[2].exists.get(&6), Some(&false));
    sim.check_consistent();
    sim.at(50.0).stop(StopReason::Timeout);
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// hrtimer_onthefly: a toggler flips the target's condition; not starting, enabling, disabling.
/// The toggler's println comes before the decision it caused (output order).
#[test]
fn hrtimer_toggling() {
    // pidx 0: timer.us(100) if (enabled) { println("hit") }   pidx 1: the toggler (no condition)
    let mut sim = Sim::otf(
        &[false],
        vec![FakeGroup::new(
            "hrtimer",
            Flavor::Hrtimer,
            &[(0, Some(0)), (1, None)],
        )],
    );
    sim.at(0.0).start();
    assert!(!sim.hit(0, Some("hit"), &[]));
    sim.at(0.5).hit(1, Some("toggling"), &[(0, true)]);
    assert!(sim.deliver());
    assert!(sim.groups[0].is_firing(0));
    sim.at(0.6).hit(0, Some("hit"), &[]);
    sim.at(1.0).hit(1, Some("toggling"), &[(0, false)]);
    assert!(sim.deliver());
    assert!(!sim.groups[0].is_firing(0));
    sim.at(1.1).hit(0, Some("hit"), &[]);
    sim.at(2.0).stop(StopReason::Exit);
    assert_eq!(
        sim.kernel.stream,
        [
            "begin",
            "otf: not starting (hrtimer) pidx 0",
            "toggling",
            "otf: enabling (hrtimer) pidx 0",
            "hit",
            "toggling",
            "otf: disabling (hrtimer) pidx 0",
            "end",
        ]
    );
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// kprobes_onthefly: `.call` and `.return` share one condition (two pidx, one CondId).
#[test]
fn kprobes_call_and_return_share_a_condition() {
    let mut sim = Sim::otf(
        &[false],
        vec![
            FakeGroup::new("kprobes", Flavor::Kprobe, &[(0, Some(0))])
                .with(Flavor::Kretprobe, &[(1, Some(0))]),
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(2, None)]),
        ],
    );
    sim.at(0.0).start();
    sim.at(500.0).hit(2, Some("toggling"), &[(0, true)]);
    sim.deliver();
    assert_eq!(sim.sched.armed().armed(), [0, 1, 2]);
    sim.at(501.0).hit(0, None, &[]);
    sim.at(501.1).hit(1, None, &[]);
    sim.at(1000.0).hit(2, Some("toggling"), &[(0, false)]);
    sim.deliver();
    assert_eq!(sim.sched.armed().armed(), [2]);
    // Disabled kprobes stay registered until shutdown.
    assert_eq!(sim.groups[0].exists.get(&0), Some(&true));
    sim.at(1500.0).stop(StopReason::Exit);
    assert_eq!(
        decisions(&sim),
        [
            "otf: registering as disabled (kprobe) pidx 0",
            "otf: registering as disabled (kretprobe) pidx 1",
            "otf: enabling (kprobe) pidx 0",
            "otf: enabling (kretprobe) pidx 1",
            "otf: disabling (kprobe) pidx 0",
            "otf: disabling (kretprobe) pidx 1",
        ]
    );
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// uprobes_onthefly: not registering, registering, unregistering, for uprobe and uretprobe.
#[test]
fn uprobes_toggling() {
    let mut sim = Sim::otf(
        &[false],
        vec![
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(0, None)]),
            FakeGroup::new("uprobes", Flavor::Uprobe, &[(1, Some(0))])
                .with(Flavor::Uretprobe, &[(2, Some(0))]),
        ],
    );
    sim.at(0.0).start();
    sim.at(500.0).hit(0, Some("toggling"), &[(0, true)]);
    sim.deliver();
    sim.at(1000.0).hit(0, Some("toggling"), &[(0, false)]);
    sim.deliver();
    sim.at(1500.0).stop(StopReason::Exit);
    assert_eq!(
        decisions(&sim),
        [
            "otf: not registering (uprobe) pidx 1",
            "otf: not registering (uretprobe) pidx 2",
            "otf: registering (uprobe) pidx 1",
            "otf: registering (uretprobe) pidx 2",
            "otf: unregistering (uprobe) pidx 1",
            "otf: unregistering (uretprobe) pidx 2",
        ]
    );
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// tracepoint_onthefly, starting enabled: armed at start (no line), unregistering, registering.
#[test]
fn tracepoint_start_enabled_toggling() {
    let mut sim = Sim::otf(
        &[true],
        vec![
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(0, Some(0))]),
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(1, None)]),
        ],
    );
    sim.at(0.0).start();
    sim.at(0.2).hit(0, Some("hit"), &[]);
    sim.at(500.0).hit(1, Some("toggling"), &[(0, false)]);
    sim.deliver();
    sim.at(600.0).hit(0, Some("hit"), &[]);
    sim.at(1000.0).hit(1, Some("toggling"), &[(0, true)]);
    sim.deliver();
    sim.at(1000.5).hit(0, Some("hit"), &[]);
    sim.at(1500.0).stop(StopReason::Exit);
    assert_eq!(
        decisions(&sim),
        [
            "otf: unregistering (tracepoint) pidx 0",
            "otf: registering (tracepoint) pidx 0"
        ]
    );
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// A writer in a safe context notifies: the refresh happens at once, not at the next tick.
#[test]
fn safe_writer_refreshes_immediately() {
    let mut sim = Sim::otf(
        &[false],
        vec![
            FakeGroup::new("uprobes", Flavor::Uprobe, &[(0, None)]),
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(1, Some(0))]),
        ],
    );
    sim.at(0.0).start();
    sim.at(30.0).hit(0, Some("tracing on"), &[(0, true)]);
    assert!(sim.notification_pending);
    sim.at(30.013).deliver();
    assert!(
        sim.groups[1].is_firing(1),
        "armed by the notification, before any tick"
    );
    let steps = sim.at(100.0).tick();
    assert_eq!(steps, [Step::NeedRefresh(false), Step::Idle]);
    sim.at(150.0).stop(StopReason::Signal);
    insta::assert_snapshot!(sim.render());
}

/// A writer in an unsafe context sends nothing: the change waits for the background timer.
#[test]
fn unsafe_writer_waits_for_the_timer() {
    let mut sim = Sim::otf(
        &[false],
        vec![
            FakeGroup::new("hrtimer-profile", Flavor::Hrtimer, &[(0, None)]).unsafe_context(),
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(1, Some(0))]),
        ],
    );
    sim.at(0.0).start();
    assert_eq!(
        sim.sched.next_tick_due(),
        Some(std::time::Duration::from_millis(100))
    );
    sim.at(30.0).hit(0, None, &[(0, true)]);
    assert!(!sim.notification_pending);
    assert!(!sim.deliver());
    assert!(
        !sim.groups[1].is_firing(1),
        "nothing happens before the tick"
    );
    sim.at(100.0).tick();
    assert!(sim.groups[1].is_firing(1));
    assert_eq!(
        sim.sched.next_tick_due(),
        Some(std::time::Duration::from_millis(200))
    );
    sim.at(200.0).tick();
    sim.at(250.0).stop(StopReason::Timeout);
    insta::assert_snapshot!(sim.render());
}

/// on→off→on between two refreshes coalesces: need_refresh is set, but nothing changes.
#[test]
fn flips_between_refreshes_coalesce() {
    let mut sim = Sim::otf(
        &[true],
        vec![
            FakeGroup::new("timer-profile", Flavor::Hrtimer, &[(0, None)]).unsafe_context(),
            FakeGroup::new("uprobes", Flavor::Uprobe, &[(1, Some(0))]),
        ],
    );
    sim.at(0.0).start();
    sim.at(10.0).hit(0, None, &[(0, false)]);
    sim.at(20.0).hit(0, None, &[(0, true)]);
    let steps = sim.at(100.0).tick();
    assert!(steps.contains(&Step::NeedRefresh(true)));
    assert!(steps.contains(&Step::NoChange));
    assert_eq!(sim.groups[1].applies, 1, "only the start plan was applied");
    sim.at(150.0).stop(StopReason::Exit);
    assert!(decisions(&sim).is_empty());
    insta::assert_snapshot!(sim.render());
}

/// One condition gates several attachments (a glob): one flip, one decision per pidx.
#[test]
fn several_pidx_share_one_condition() {
    let mut sim = Sim::otf(
        &[false, false],
        vec![
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(0, None)]),
            FakeGroup::new(
                "uprobes",
                Flavor::Uprobe,
                &[(1, Some(0)), (2, Some(0)), (3, Some(0))],
            ),
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(4, Some(1))]),
        ],
    );
    sim.at(0.0).start();
    sim.at(10.0).hit(0, None, &[(0, true)]);
    sim.deliver();
    assert_eq!(sim.sched.armed().armed(), [0, 1, 2, 3]);
    sim.at(20.0).stop(StopReason::Exit);
    insta::assert_snapshot!(sim.render());
}

/// A probe affects its own condition: `probe tp if (budget > 0) { budget-- }`. Its last allowed
/// hit turns it off; later hits do not fire.
#[test]
fn probe_affects_its_own_condition() {
    let mut sim = Sim::otf(
        &[true],
        vec![FakeGroup::new(
            "tracepoint",
            Flavor::Tracepoint,
            &[(0, Some(0))],
        )],
    );
    sim.at(0.0).start();
    sim.at(1.0).hit(0, Some("budget 2->1"), &[]);
    sim.at(2.0).hit(0, Some("budget 1->0"), &[(0, false)]);
    // A hit between the flip and the refresh: the probe fires, its body is gated.
    assert!(!sim.at(2.005).hit(0, None, &[]));
    sim.at(2.013).deliver();
    assert!(!sim.at(3.0).hit(0, None, &[]));
    assert!(!sim.groups[0].is_firing(0));
    sim.at(10.0).stop(StopReason::Exit);
    assert_eq!(decisions(&sim), ["otf: unregistering (tracepoint) pidx 0"]);
    insta::assert_snapshot!(sim.render());
}

/// A refresh asked for during shutdown is ignored: a condition flipped while `end` runs, and a
/// notification and a tick arriving after the stop.
#[test]
fn refresh_during_shutdown_is_ignored() {
    let mut sim = Sim::otf(
        &[true, false],
        vec![
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(0, Some(0))]),
            FakeGroup::new("uprobes", Flavor::Uprobe, &[(1, Some(1))]),
        ],
    );
    sim.kernel.writes_during_end = vec![(1, true)];
    sim.at(0.0).start();
    sim.at(40.0).hit(0, Some("last words"), &[(0, false)]);
    assert!(sim.notification_pending);
    let steps = sim.at(40.5).stop(StopReason::Exit);
    assert!(steps.contains(&Step::Ignored(IgnoreReason::ShuttingDown)));
    // The notification sent before the stop arrives late; then a tick.
    assert!(sim.at(41.0).deliver());
    assert_eq!(sim.at(100.0).tick(), [Step::Ignored(IgnoreReason::Stopped)]);
    assert_eq!(
        sim.at(101.0).stop(StopReason::Signal),
        [Step::Ignored(IgnoreReason::Stopped)]
    );
    assert!(decisions(&sim)
        .iter()
        .all(|d| !d.starts_with("otf: registering (uprobe)")));
    assert_eq!(sim.kernel.ends, 1);
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// One arm fails: reported, the rest applied, the failed probe left disarmed. The next ticks
/// retry it (max_retries = 3); after that it waits for a condition change. When its condition
/// goes off the failure is forgotten; when it comes back on, it is tried again and succeeds.
#[test]
fn failed_arm_is_retried() {
    let mut sim = Sim::otf(
        &[false],
        vec![
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(0, None)]),
            FakeGroup::new(
                "uprobes",
                Flavor::Uprobe,
                &[(1, Some(0)), (2, Some(0)), (3, Some(0))],
            )
            .fail(2, Op::Arm, 4, "attach uprobe: EBUSY"),
        ],
    );
    sim.at(0.0).start();
    sim.at(10.0).hit(0, None, &[(0, true)]);
    sim.deliver();
    assert_eq!(sim.sched.armed().armed(), [0, 1, 3]);
    assert_eq!(sim.sched.armed().failure(2).map(|f| f.consecutive), Some(1));
    sim.check_consistent();
    for t in [100.0, 200.0, 300.0] {
        let steps = sim.at(t).tick();
        assert!(steps.contains(&Step::RetryDue), "retry at {t}");
    }
    assert_eq!(sim.sched.armed().failure(2).map(|f| f.consecutive), Some(4));
    assert_eq!(
        sim.at(400.0).tick(),
        [Step::NeedRefresh(false), Step::Idle],
        "gave up"
    );
    sim.at(450.0).hit(0, None, &[(0, false)]);
    sim.deliver();
    assert_eq!(
        sim.sched.armed().failure(2),
        None,
        "settled: nothing wanted"
    );
    sim.at(460.0).hit(0, None, &[(0, true)]);
    sim.deliver();
    assert_eq!(sim.sched.armed().armed(), [0, 1, 2, 3]);
    sim.check_consistent();
    sim.at(500.0).stop(StopReason::Exit);
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// A failure at start tears the session down: the remaining groups are not started, everything is
/// released, no `end` bodies.
#[test]
fn failure_at_start_aborts() {
    let mut sim = Sim::otf(
        &[true],
        vec![
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(0, Some(0))]),
            FakeGroup::new("uprobes", Flavor::Uprobe, &[(1, Some(0)), (2, None)]).fail(
                2,
                Op::Arm,
                1,
                "attach uprobe: ENOENT",
            ),
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(3, None)]),
        ],
    );
    sim.at(0.0).start();
    assert!(sim.sched.start_failed());
    assert_eq!(sim.sched.state(), State::Stopped);
    assert_eq!(sim.kernel.ends, 0);
    assert_eq!(sim.groups[2].applies, 1, "tracepoint: only released");
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// --no-otf: everything armed at start whatever the conditions, no decisions, flips change
/// nothing in the kernel (bodies are still gated by their conditions).
#[test]
fn no_otf_arms_everything() {
    let mut sim = Sim::new(
        SchedulerConfig {
            otf: false,
            ..SchedulerConfig::default()
        },
        &[false],
        vec![
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(0, Some(0)), (1, None)]),
            FakeGroup::new("kprobes", Flavor::Kprobe, &[(2, Some(0))]),
            FakeGroup::new("uprobes", Flavor::Uprobe, &[(3, Some(0))]),
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(4, Some(0))]),
        ],
    );
    sim.at(0.0).start();
    assert_eq!(sim.sched.armed().armed(), [0, 1, 2, 3, 4]);
    assert!(
        !sim.hit(4, Some("hit"), &[]),
        "fires, but the body is gated"
    );
    sim.at(5.0).hit(1, Some("toggling"), &[(0, true)]);
    sim.deliver();
    sim.at(6.0).hit(4, Some("hit"), &[]);
    sim.at(10.0).stop(StopReason::Exit);
    assert!(decisions(&sim).is_empty());
    sim.check_released();
    insta::assert_snapshot!(sim.render());
}

/// A group that does not support on-the-fly arming is armed at start and stays armed, while a
/// supported group in the same session follows its condition.
#[test]
fn unsupported_group_stays_armed() {
    let mut sim = Sim::otf(
        &[false],
        vec![
            FakeGroup::new("perf-legacy", Flavor::Tracepoint, &[(0, Some(0))]).unsupported(),
            FakeGroup::new("tracepoint", Flavor::Tracepoint, &[(1, Some(0))]),
            FakeGroup::new("hrtimer", Flavor::Hrtimer, &[(2, None)]),
        ],
    );
    sim.at(0.0).start();
    sim.at(5.0).hit(2, None, &[(0, true)]);
    sim.deliver();
    sim.at(6.0).hit(2, None, &[(0, false)]);
    sim.deliver();
    assert_eq!(sim.sched.armed().armed(), [0, 2]);
    assert_eq!(sim.groups[0].applies, 1, "only the start plan");
    sim.at(10.0).stop(StopReason::Exit);
    assert_eq!(
        decisions(&sim),
        [
            "otf: not registering (tracepoint) pidx 1",
            "otf: registering (tracepoint) pidx 1",
            "otf: unregistering (tracepoint) pidx 1",
        ]
    );
    insta::assert_snapshot!(sim.render());
}

/// `begin` bodies run before conditions are evaluated: a condition set in `begin` arms its probe
/// at start, with no decision line.
#[test]
fn begin_runs_before_conditions_are_evaluated() {
    let mut sim = Sim::otf(
        &[false, false],
        vec![FakeGroup::new(
            "uprobes",
            Flavor::Uprobe,
            &[(0, Some(0)), (1, Some(1))],
        )],
    );
    sim.kernel.begin_writes = vec![(0, true)];
    let steps = sim.at(0.0).start();
    assert_eq!(steps[0], Step::RunBegin);
    assert_eq!(sim.sched.armed().armed(), [0]);
    assert_eq!(decisions(&sim), ["otf: not registering (uprobe) pidx 1"]);
    sim.at(1.0).stop(StopReason::CommandEnded);
    insta::assert_snapshot!(sim.render());
}
