//! The ports of SystemTap's `testsuite/systemtap.onthefly/*.exp`: tables of subtests (parameter
//! sets), the script each one runs, and the expected-lines construction of `make_pattern`.
//!
//! Each suite's table is the `run_subtest_valid` / `run_subtest_stress` list of the `.exp` file.
//! Scripts are SystemTap's `make_script` with the parameters substituted; expected patterns are
//! `make_pattern` with otf's `--otf-debug` vocabulary (docs/user-guide.md, "Output").

use std::time::Duration;

use crate::case::{Background, Case, Kind, Requirement, Script};

/// One of the four ported suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `hrtimer_onthefly.exp`: a timer toggles another timer's condition.
    Hrtimer,
    /// `tracepoint_onthefly.exp`: a timer toggles `kernel.trace("sched_process_fork")`.
    Tracepoint,
    /// `uprobes_onthefly.exp`: a timer drives a state machine over `foo` and `foo.return`.
    Uprobes,
    /// `kprobes_onthefly.exp`: the same state machine over `vfs_read` and `vfs_read.return`.
    Kprobes,
}

impl Suite {
    /// The probe group of the suite's target probes, as `otf check` names it.
    pub fn group(self) -> &'static str {
        match self {
            Suite::Hrtimer => "hrtimer",
            Suite::Tracepoint => "tracepoint",
            Suite::Uprobes => "uprobes",
            Suite::Kprobes => "kprobes",
        }
    }

    /// The suite's name, as in SystemTap.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Hrtimer => "hrtimer_onthefly",
            Suite::Tracepoint => "tracepoint_onthefly",
            Suite::Uprobes => "uprobes_onthefly",
            Suite::Kprobes => "kprobes_onthefly",
        }
    }
}

/// What toggles the target probes' condition (SystemTap's `TIMER` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggler {
    /// A number of µs: the target/toggler period (see each suite's script).
    Us(u64),
    /// `timer.profile` toggles (`profile`).
    Profile,
    /// `timer.profile, kernel.trace("*")` toggle (`hardcore`): every tracepoint is attached.
    Hard,
}

/// One subtest: SystemTap's `run_subtest_valid/stress NAME ENABLED MAXTOGGLES TIMER [ARGS]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtest {
    /// The subtest name, e.g. `otf_start_enabled_iter_3`.
    pub name: String,
    /// Validated or stress.
    pub kind: Kind,
    /// The initial value of the condition variable, as script text (`0x7f`, `-1000`, ...).
    pub enabled: &'static str,
    /// How many times the condition is toggled before `exit()`.
    pub maxtoggles: u32,
    /// The toggler.
    pub toggler: Toggler,
    /// `--otf-interval` (SystemTap's `-D STP_ON_THE_FLY_INTERVAL`), if the subtest sets it.
    pub interval: Option<&'static str>,
}

impl Subtest {
    /// Whether the target probes start enabled (the script's truthiness of `enabled`).
    pub fn start_enabled(&self) -> bool {
        parse_int(self.enabled).is_some_and(|v| v != 0)
    }
}

/// Parse a script integer literal (decimal, `0x` hex, leading-`0` octal, optional `-`).
pub fn parse_int(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn st(
    name: &str,
    kind: Kind,
    enabled: &'static str,
    maxtoggles: u32,
    toggler: Toggler,
    interval: Option<&'static str>,
) -> Subtest {
    Subtest {
        name: name.to_string(),
        kind,
        enabled,
        maxtoggles,
        toggler,
        interval,
    }
}

/// The subtests of `suite`, in the `.exp` file's order.
pub fn subtests(suite: Suite) -> Vec<Subtest> {
    use Kind::{Stress, Validated};
    use Toggler::{Hard, Profile, Us};
    let mut v = Vec::new();
    // Finish and iteration subtests: the same shape in every suite.
    let (period, enabled_values): (u64, [&'static str; 5]) = match suite {
        Suite::Hrtimer => (100_000, ["0x7f", "-1000", "658", "-1", "123456789"]),
        _ => (500_000, ["1"; 5]),
    };
    let finish_enabled = if suite == Suite::Hrtimer { "100" } else { "1" };
    v.push(st(
        "otf_finish_at_start_disabled",
        Validated,
        "0",
        0,
        Us(period),
        None,
    ));
    v.push(st(
        "otf_finish_at_start_enabled",
        Validated,
        finish_enabled,
        0,
        Us(period),
        None,
    ));
    for (i, en) in (1..=5).zip(enabled_values) {
        v.push(st(
            &format!("otf_start_disabled_iter_{i}"),
            Validated,
            "0",
            i,
            Us(period),
            None,
        ));
        v.push(st(
            &format!("otf_start_enabled_iter_{i}"),
            Validated,
            en,
            i,
            Us(period),
            None,
        ));
    }
    let ms1 = Some("1ms");
    let us100 = Some("100us");
    match suite {
        Suite::Hrtimer => {
            v.push(st("otf_timer_10ms", Validated, "1", 5, Us(10_000), None));
            v.push(st("otf_timer_5ms", Validated, "-1", 5, Us(5_000), None));
            for (n, us) in [("2ms", 2000), ("1ms", 1000), ("500us", 500), ("100us", 100)] {
                v.push(st(
                    &format!("otf_stress_{n}_iter_50"),
                    Stress,
                    "1",
                    50,
                    Us(us),
                    None,
                ));
            }
            v.push(st(
                "otf_stress_prof_iter_2000",
                Stress,
                "1",
                2000,
                Profile,
                None,
            ));
            v.push(st(
                "otf_stress_hard_iter_2000",
                Stress,
                "1",
                2000,
                Hard,
                us100,
            ));
        }
        Suite::Tracepoint | Suite::Kprobes => {
            for (n, us) in [("100ms", 100_000), ("50ms", 50_000), ("10ms", 10_000)] {
                v.push(st(
                    &format!("otf_timer_{n}"),
                    Validated,
                    "1",
                    5,
                    Us(us),
                    ms1,
                ));
            }
            for (n, us) in [("5ms", 5000), ("1ms", 1000), ("500us", 500), ("100us", 100)] {
                v.push(st(
                    &format!("otf_stress_{n}_iter_50"),
                    Stress,
                    "1",
                    50,
                    Us(us),
                    us100,
                ));
            }
            v.push(st(
                "otf_stress_prof_iter_2000",
                Stress,
                "1",
                2000,
                Profile,
                us100,
            ));
            v.push(st(
                "otf_stress_hard_iter_2000",
                Stress,
                "1",
                2000,
                Hard,
                us100,
            ));
        }
        Suite::Uprobes => {
            for (n, us) in [("100ms", 100_000), ("50ms", 50_000)] {
                v.push(st(
                    &format!("otf_timer_{n}"),
                    Validated,
                    "1",
                    5,
                    Us(us),
                    None,
                ));
            }
            for (n, us) in [
                ("10ms", 10_000),
                ("5ms", 5000),
                ("1ms", 1000),
                ("500us", 500),
                ("100us", 100),
            ] {
                v.push(st(
                    &format!("otf_stress_{n}_iter_50"),
                    Stress,
                    "1",
                    50,
                    Us(us),
                    None,
                ));
            }
            v.push(st(
                "otf_stress_prof_iter_2000",
                Stress,
                "1",
                2000,
                Profile,
                None,
            ));
            v.push(st(
                "otf_stress_hard_iter_2000",
                Stress,
                "1",
                2000,
                Hard,
                us100,
            ));
        }
    }
    v
}

/// The probe point list that toggles, given the subtest's toggler and the numeric period.
fn toggler_points(t: Toggler, us: u64) -> String {
    match t {
        Toggler::Us(_) => format!("timer.us({us})"),
        Toggler::Profile => "timer.profile".to_string(),
        Toggler::Hard => "timer.profile, kernel.trace(\"*\")".to_string(),
    }
}

/// SystemTap's watchdog: `probe timer.s(360) { println("timed out"); exit() }`.
pub const SYSTEMTAP_WATCHDOG_SECS: u64 = 360;

/// The watchdog period in seconds for a subtest; `$OTF_SUITE_WATCHDOG` (seconds) overrides.
///
/// A subtest toggled by `timer.us` lasts a fixed time whatever the load, so its watchdog is
/// generous against that (4×, at least 30 s) and a hang fails cleanly (`timed out`) without
/// stalling the suite for SystemTap's 360 s. The `profile` and `hard` subtests toggle only when
/// the target probes have moved through their states, so how long their 2000 toggles take
/// depends on refresh latency and on what else the machine runs: a shorter watchdog would be a
/// timing assertion (a fresh CI run with both VMs beside the native tests reached 1406 of the
/// uprobes' 2000 toggles in 40 s). They keep SystemTap's 360 s natively, and 600 s in the VM.
pub fn watchdog_secs(suite: Suite, t: &Subtest) -> u64 {
    if let Some(w) = std::env::var("OTF_SUITE_WATCHDOG")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return w;
    }
    let in_vm = crate::system::in_vm();
    let Toggler::Us(us) = t.toggler else {
        // Under TCG the profiling tick came ~8 times a second (2000 toggles: ~250 s).
        return if in_vm { 600 } else { SYSTEMTAP_WATCHDOG_SECS };
    };
    let period = if suite == Suite::Hrtimer { 5 * us } else { us };
    let expected = (f64::from(t.maxtoggles) + 1.0) * period as f64 / 1e6;
    let w = (expected * 4.0).max(30.0).ceil() as u64;
    if in_vm {
        w * 3
    } else {
        w
    }
}

/// The script of `suite`'s `make_script` for subtest `t` (SystemTap's text, parameters
/// substituted; the uprobe target is `./uprobes_onthefly.x` in the working directory).
pub fn script(suite: Suite, t: &Subtest) -> String {
    let watchdog = watchdog_secs(suite, t);
    let enabled = t.enabled;
    let max = t.maxtoggles;
    match suite {
        Suite::Hrtimer => {
            let (timer, toggler) = match t.toggler {
                Toggler::Us(us) => (us, toggler_points(t.toggler, 5 * us)),
                other => (1500, toggler_points(other, 0)),
            };
            format!(
                r#"global enabled = {enabled}
global toggles = 0

# Simplification to ensure 'hit' is only printed once.
global hit = 0

probe timer.us({timer}) if (enabled) {{
   if (hit)
      next
   hit = 1
   println("hit")
}}

probe {toggler} {{
   toggles++
   hit = 0
   if (toggles > {max})
      exit()
   else {{
      println("toggling")
      # ensure we also use non-boolean (1 or 0) values
      enabled = enabled ? 0 : (randint(2) == 0 ? -1-randint(10000) : 1+randint(10000))
   }}
}}

probe timer.s({watchdog}) {{
   println("timed out")
   exit()
}}
"#
            )
        }
        Suite::Tracepoint => {
            let toggler = match t.toggler {
                Toggler::Us(us) => toggler_points(t.toggler, us),
                other => toggler_points(other, 0),
            };
            format!(
                r#"global enabled = {enabled}
global toggles = 0

# Simplification to ensure 'hit' is only printed once.
global hit = 0

probe kernel.trace("sched_process_fork") if (enabled) {{
   if (hit)
      next
   hit = 1
   println("hit")
}}

probe {toggler} {{
   toggles++
   hit = 0
   if (toggles > {max})
      exit()
   else {{
      println("toggling")
      enabled = !enabled
   }}
}}

probe timer.s({watchdog}) {{
   println("timed out")
   exit()
}}
"#
            )
        }
        Suite::Uprobes | Suite::Kprobes => {
            let toggler = match t.toggler {
                Toggler::Us(us) => toggler_points(t.toggler, us),
                other => toggler_points(other, 0),
            };
            let (call, ret) = if suite == Suite::Kprobes {
                (
                    r#"kernel.function("vfs_read").call"#.to_string(),
                    r#"kernel.function("vfs_read").return"#.to_string(),
                )
            } else {
                let p = crate::system::UPROBE_TARGET_NAME;
                (
                    format!(r#"process("./{p}").function("foo")"#),
                    format!(r#"process("./{p}").function("foo").return"#),
                )
            };
            format!(
                r#"# States: 0 cond disabled; 1 cond enabled, call and return probes not yet seen;
# 2 call probe seen; 3 both seen, nothing printed; 4 'hit' printed; 5 'rethit' printed.
global state = {enabled}
global toggles = 0

probe {call} if (state > 0) {{
   if (state == 3) {{
      println("hit")
      state++;
   }} else if (state == 1) {{
      state++;
   }}
}}

probe {ret} if (state > 0) {{
   # ensure that nothing changed during the function body
   if (state != @entry(state))
      next
   if (state == 4) {{
      println("rethit")
      state++;
   }} else if (state == 2) {{
      state++;
   }}
}}

probe {toggler} {{
   if (state != 0 && state != 5)
      next # give probes more time to move through the states
   toggles++
   if (toggles > {max})
      exit()
   else {{
      println("toggling")
      state = !state
   }}
}}

probe timer.s({watchdog}) {{
   println("timed out")
   exit()
}}
"#
            )
        }
    }
}

/// The `--otf-debug` decision words of a suite's target probes: (at start when off, turn on,
/// turn off), as SystemTap prints them for the probe type (docs/user-guide.md, "Output").
pub fn vocabulary(suite: Suite) -> (&'static str, &'static str, &'static str) {
    match suite {
        Suite::Hrtimer => ("not starting", "enabling", "disabling"),
        Suite::Tracepoint | Suite::Uprobes => ("not registering", "registering", "unregistering"),
        Suite::Kprobes => ("registering as disabled", "enabling", "disabling"),
    }
}

/// The kernel attachments of a suite's target probes, each as (flavour, pidx), in the order
/// otf reports one refresh's decisions: ascending pidx (`otf_core::plan`).
///
/// Derived from the script, not asked of otf: the target probes are the script's first probes
/// (pidx 0, and pidx 1 for the return probe), and each names exactly one function: `foo`, which
/// the target program [`crate::system::UPROBE_TARGET_C`] defines once, and `vfs_read`, which
/// the kprobe requirement ([`crate::system::kprobes_available`]) finds in the kernel's
/// `/proc/kallsyms`. One function is one attachment per probe point, and the flavour is fixed
/// by the point: `.function` is a uprobe or kprobe, `.return` a uretprobe or kretprobe.
///
/// SystemTap's `uprobes_onthefly.exp` expects three lines per decision, `(uretprobe)` then
/// `(uprobe)` twice, and `kprobes_onthefly.exp` three `(k*probe)` lines: SystemTap implements
/// `@entry` in a return probe with a third, hidden entry probe, and lists its uprobes return
/// probe first. otf evaluates `@entry` in the return probe's own attachment (no third probe)
/// and reports decisions by pidx, so here each flavour and pidx is exact and there are two.
pub fn targets(suite: Suite) -> &'static [(&'static str, u32)] {
    match suite {
        Suite::Hrtimer => &[("hrtimer", 0)],
        Suite::Tracepoint => &[("tracepoint", 0)],
        Suite::Uprobes => &[("uprobe", 0), ("uretprobe", 1)],
        Suite::Kprobes => &[("kprobe", 0), ("kretprobe", 1)],
    }
}

/// SystemTap's `make_pattern`: the ordered expected lines for subtest `t`, one decision line per
/// target attachment ([`targets`]) per decision.
pub fn expected(suite: Suite, t: &Subtest) -> Vec<String> {
    let (start_off, on, off) = vocabulary(suite);
    let decision = |words: &str| {
        targets(suite)
            .iter()
            .map(move |(flavour, pidx)| format!("* {words} ({flavour}) pidx {pidx}"))
            .collect::<Vec<_>>()
    };
    let hits: &[&str] = match suite {
        Suite::Hrtimer | Suite::Tracepoint => &["hit"],
        Suite::Uprobes | Suite::Kprobes => &["hit", "rethit"],
    };
    let mut enabled = t.start_enabled();
    let mut p: Vec<String> = Vec::new();
    if !enabled {
        p.extend(decision(start_off));
    }
    for i in 0..=t.maxtoggles {
        if enabled {
            p.extend(hits.iter().map(|h| h.to_string()));
        }
        if i < t.maxtoggles {
            p.push("toggling".to_string());
            p.extend(decision(if enabled { off } else { on }));
            enabled = !enabled;
        }
    }
    p
}

/// The runnable [`Case`] for subtest `t` of `suite`.
pub fn case(suite: Suite, t: &Subtest) -> Case {
    let mut c = Case::new(suite.name(), &t.name, Script::Text(script(suite, t)));
    c.kind = t.kind;
    c.opts.push("--otf-debug".to_string());
    if let Some(iv) = t.interval {
        c.opts.push("--otf-interval".to_string());
        c.opts.push(iv.to_string());
    }
    c.description = format!(
        "ENABLED {} MAXTOGGLES {} TIMER {}{}",
        t.enabled,
        t.maxtoggles,
        match t.toggler {
            Toggler::Us(us) => us.to_string(),
            Toggler::Profile => "profile".to_string(),
            Toggler::Hard => "hardcore".to_string(),
        },
        t.interval
            .map(|i| format!(", --otf-interval {i}"))
            .unwrap_or_default()
    );
    c.expect_none.push("timed out".to_string());
    match t.kind {
        Kind::Validated => c.expect_globs = expected(suite, t),
        // Beyond SystemTap's "survived": the toggler ran exactly MAXTOGGLES times (bodies are
        // atomic, output is one complete stream), so the script really ran to its end.
        Kind::Stress => c
            .expect_count
            .push(("toggling".to_string(), t.maxtoggles as usize)),
    }
    // Short toggle periods are timing-sensitive: run those alone, like the stress subtests.
    c.serial = match t.toggler {
        Toggler::Us(us) => (if suite == Suite::Hrtimer { 5 * us } else { us }) < 500_000,
        _ => true,
    };
    let watchdog = watchdog_secs(suite, t);
    // Beyond the watchdog: start-up and shutdown (detaching every tracepoint takes a while for
    // *hard*). The runner adds time in the VM.
    let slack = if t.toggler == Toggler::Hard { 180 } else { 30 };
    c.timeout = Duration::from_secs(watchdog + slack);
    c.background = Background {
        echo_loop: suite != Suite::Hrtimer || t.kind == Kind::Stress,
        uprobe_target: suite == Suite::Uprobes,
    };
    if suite == Suite::Uprobes {
        c.requires.insert(Requirement::Gcc);
    }
    if suite == Suite::Kprobes {
        c.requires.insert(Requirement::Kprobes);
    }
    c
}

/// The shortest toggle period (µs) of a validated tracepoint, kprobe or uprobe subtest inside
/// the VM; `$OTF_SUITE_VM_MIN_PERIOD_US` overrides.
///
/// Those subtests expect every toggle window to contain the refresh and a hit of the target,
/// which an outside event (a fork, a `read`, a call in the target program) must cause. Under
/// the VM's software emulation, on a host also busy with the native tests and the other VM, a
/// refresh takes 10–75 ms and the echo loop's forks can be 60 ms apart even with its VM-only
/// steady loop ([`crate::system::BackgroundProcess::echo_loop`]), so 10, 50 and 100 ms windows
/// miss lines although otf behaves correctly (it coalesces toggles that come faster than a
/// refresh, as SystemTap does). The VM runs them with windows of at least the suites' own start
/// period, 500 ms; natively they keep SystemTap's periods. Timer subtests need no outside event;
/// their windows are raised only to [`VM_MIN_HRTIMER_TOGGLE_US`].
pub const VM_MIN_PERIOD_US: u64 = 500_000;

/// The shortest toggle period (µs, SystemTap's 5×TIMER) of a validated hrtimer subtest inside
/// the VM. Each toggle window must contain otf's refresh, which takes 10–75 ms under software
/// emulation: `otf_timer_5ms`'s 25 ms windows coalesced toggles in two of three VMs of one CI
/// run (and in one of an earlier run), while its 50 ms sibling passes. Natively SystemTap's
/// periods are kept.
pub const VM_MIN_HRTIMER_TOGGLE_US: u64 = 100_000;

/// Subtest `t` as it runs on this machine: inside the VM, a validated subtest whose target
/// needs an outside event toggles no faster than [`VM_MIN_PERIOD_US`], a timer one no faster
/// than [`VM_MIN_HRTIMER_TOGGLE_US`].
pub fn on_this_machine(suite: Suite, t: &Subtest) -> Subtest {
    if !crate::system::in_vm() {
        return t.clone();
    }
    let floor = std::env::var("OTF_SUITE_VM_MIN_PERIOD_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VM_MIN_PERIOD_US);
    with_min_period(suite, t, floor)
}

/// `t` with its toggle period raised to `floor_us` if it is a validated subtest whose target
/// needs an outside event (see [`VM_MIN_PERIOD_US`]), or to [`VM_MIN_HRTIMER_TOGGLE_US`] if a
/// validated timer subtest.
pub fn with_min_period(suite: Suite, t: &Subtest, floor_us: u64) -> Subtest {
    let mut t = t.clone();
    if t.kind == Kind::Validated {
        if let Toggler::Us(us) = t.toggler {
            t.toggler = Toggler::Us(if suite == Suite::Hrtimer {
                us.max(VM_MIN_HRTIMER_TOGGLE_US / 5)
            } else {
                us.max(floor_us)
            });
        }
    }
    t
}

/// Run subtest `name` of `suite` as a `#[test]` (skip note or panic with the report).
pub fn check_subtest(suite: Suite, name: &str) {
    let Some(t) = subtests(suite).into_iter().find(|t| t.name == name) else {
        panic!("{} has no subtest `{name}`", suite.name());
    };
    let t = on_this_machine(suite, &t);
    crate::runner::check(&case(suite, &t));
}

/// Assert that the `#[test]` functions of a suite's test file are exactly its table.
pub fn assert_table_matches(suite: Suite, tests: &[&str]) {
    let mut table: Vec<String> = subtests(suite).into_iter().map(|t| t.name).collect();
    let mut tests: Vec<String> = tests.iter().map(|s| s.to_string()).collect();
    table.sort();
    tests.sort();
    assert_eq!(
        table,
        tests,
        "{}: the #[test] list and the subtest table differ",
        suite.name()
    );
}

/// Declare one `#[test]` per subtest of a suite, plus a test that the list equals the table.
///
/// ```ignore
/// otf_testsuite::onthefly_tests!(Suite::Hrtimer; otf_finish_at_start_disabled, ...);
/// ```
#[macro_export]
macro_rules! onthefly_tests {
    ($suite:expr; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::onthefly::check_subtest($suite, stringify!($name));
            }
        )+
        #[test]
        fn table_and_tests_agree() {
            $crate::onthefly::assert_table_matches($suite, &[$(stringify!($name)),+]);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(suite: Suite, name: &str) -> Subtest {
        subtests(suite)
            .into_iter()
            .find(|t| t.name == name)
            .unwrap()
    }

    #[test]
    fn load_dependent_stress_keeps_systemtaps_watchdog() {
        if std::env::var_os("OTF_SUITE_WATCHDOG").is_some() || crate::system::in_vm() {
            crate::skip::skip(
                crate::skip::Need::Env,
                "$OTF_SUITE_WATCHDOG is set or this is the VM (checks the native defaults)",
            );
            return;
        }
        for suite in [
            Suite::Hrtimer,
            Suite::Tracepoint,
            Suite::Uprobes,
            Suite::Kprobes,
        ] {
            for name in ["otf_stress_prof_iter_2000", "otf_stress_hard_iter_2000"] {
                let t = get(suite, name);
                assert_eq!(watchdog_secs(suite, &t), SYSTEMTAP_WATCHDOG_SECS, "{name}");
                assert!(script(suite, &t).contains("probe timer.s(360)"), "{name}");
            }
        }
        // Fixed-length subtests: 4× their length, at least 30 s (hrtimer's toggler is 5×TIMER).
        let t = get(Suite::Hrtimer, "otf_start_enabled_iter_5");
        assert_eq!(watchdog_secs(Suite::Hrtimer, &t), 30);
        let t = get(Suite::Tracepoint, "otf_start_enabled_iter_5");
        assert_eq!(watchdog_secs(Suite::Tracepoint, &t), 30);
        let t = get(Suite::Uprobes, "otf_stress_100us_iter_50");
        assert_eq!(watchdog_secs(Suite::Uprobes, &t), 30);
    }

    #[test]
    fn vm_floor_widens_only_short_validated_windows_of_event_driven_suites() {
        let period = |suite, name| match with_min_period(suite, &get(suite, name), 250_000).toggler
        {
            Toggler::Us(us) => us,
            other => panic!("{other:?}"),
        };
        assert_eq!(period(Suite::Tracepoint, "otf_timer_10ms"), 250_000);
        assert_eq!(period(Suite::Uprobes, "otf_timer_50ms"), 250_000);
        assert_eq!(period(Suite::Kprobes, "otf_timer_100ms"), 250_000);
        assert_eq!(
            period(Suite::Tracepoint, "otf_start_enabled_iter_3"),
            500_000
        );
        assert_eq!(
            period(Suite::Hrtimer, "otf_timer_5ms"),
            20_000,
            "timers need no event, only 100 ms windows for the refresh"
        );
        assert_eq!(period(Suite::Hrtimer, "otf_start_enabled_iter_3"), {
            match get(Suite::Hrtimer, "otf_start_enabled_iter_3").toggler {
                Toggler::Us(us) => us.max(20_000),
                other => panic!("{other:?}"),
            }
        });
        assert_eq!(
            period(Suite::Tracepoint, "otf_stress_1ms_iter_50"),
            1000,
            "stress subtests only have to survive"
        );
        let prof = with_min_period(
            Suite::Kprobes,
            &get(Suite::Kprobes, "otf_stress_prof_iter_2000"),
            250_000,
        );
        assert_eq!(prof, get(Suite::Kprobes, "otf_stress_prof_iter_2000"));
    }

    #[test]
    fn table_sizes_match_the_exp_files() {
        assert_eq!(subtests(Suite::Hrtimer).len(), 20);
        assert_eq!(subtests(Suite::Tracepoint).len(), 21);
        assert_eq!(subtests(Suite::Kprobes).len(), 21);
        assert_eq!(subtests(Suite::Uprobes).len(), 21);
        for s in [
            Suite::Hrtimer,
            Suite::Tracepoint,
            Suite::Kprobes,
            Suite::Uprobes,
        ] {
            let names: std::collections::BTreeSet<_> =
                subtests(s).into_iter().map(|t| t.name).collect();
            assert_eq!(
                names.len(),
                subtests(s).len(),
                "duplicate names in {}",
                s.name()
            );
        }
    }

    #[test]
    fn non_boolean_enabled_values() {
        assert!(get(Suite::Hrtimer, "otf_start_enabled_iter_1").start_enabled()); // 0x7f
        assert_eq!(parse_int("0x7f"), Some(127));
        assert_eq!(parse_int("-1000"), Some(-1000));
        assert_eq!(parse_int("010"), Some(8));
        assert_eq!(parse_int("0"), Some(0));
        assert!(!get(Suite::Hrtimer, "otf_start_disabled_iter_4").start_enabled());
        assert!(get(Suite::Hrtimer, "otf_start_enabled_iter_2").start_enabled()); // -1000
        assert!(get(Suite::Hrtimer, "otf_timer_5ms").start_enabled()); // -1
    }

    #[test]
    fn hrtimer_patterns_as_make_pattern() {
        let t = get(Suite::Hrtimer, "otf_start_disabled_iter_2");
        assert_eq!(
            expected(Suite::Hrtimer, &t),
            vec![
                "* not starting (hrtimer) pidx 0",
                "toggling",
                "* enabling (hrtimer) pidx 0",
                "hit",
                "toggling",
                "* disabling (hrtimer) pidx 0",
            ]
        );
        let t = get(Suite::Hrtimer, "otf_finish_at_start_enabled");
        assert_eq!(expected(Suite::Hrtimer, &t), vec!["hit"]);
        let t = get(Suite::Hrtimer, "otf_finish_at_start_disabled");
        assert_eq!(
            expected(Suite::Hrtimer, &t),
            vec!["* not starting (hrtimer) pidx 0"]
        );
    }

    #[test]
    fn function_patterns_name_each_attachment_by_flavour_and_pidx() {
        let t = get(Suite::Kprobes, "otf_start_disabled_iter_1");
        assert_eq!(
            expected(Suite::Kprobes, &t),
            vec![
                "* registering as disabled (kprobe) pidx 0",
                "* registering as disabled (kretprobe) pidx 1",
                "toggling",
                "* enabling (kprobe) pidx 0",
                "* enabling (kretprobe) pidx 1",
                "hit",
                "rethit",
            ]
        );
        let t = get(Suite::Uprobes, "otf_start_enabled_iter_1");
        assert_eq!(
            expected(Suite::Uprobes, &t),
            vec![
                "hit",
                "rethit",
                "toggling",
                "* unregistering (uprobe) pidx 0",
                "* unregistering (uretprobe) pidx 1"
            ]
        );
        let t = get(Suite::Uprobes, "otf_start_disabled_iter_2");
        assert_eq!(
            expected(Suite::Uprobes, &t)[..3],
            [
                "* not registering (uprobe) pidx 0",
                "* not registering (uretprobe) pidx 1",
                "toggling",
            ]
        );
        let t = get(Suite::Tracepoint, "otf_start_disabled_iter_1");
        assert_eq!(
            expected(Suite::Tracepoint, &t),
            vec![
                "* not registering (tracepoint) pidx 0",
                "toggling",
                "* registering (tracepoint) pidx 0",
                "hit",
            ]
        );
    }

    /// The pidx of [`targets`] are those `otf check` gives the scripts' target probes: the
    /// script text puts them first (checked here without running otf).
    #[test]
    fn target_probes_come_first_in_every_script() {
        for suite in [
            Suite::Hrtimer,
            Suite::Tracepoint,
            Suite::Uprobes,
            Suite::Kprobes,
        ] {
            for t in subtests(suite) {
                let s = script(suite, &t);
                let probes: Vec<&str> = s
                    .lines()
                    .map(str::trim_start)
                    .filter(|l| l.starts_with("probe "))
                    .collect();
                let n = targets(suite).len();
                for (i, line) in probes.iter().enumerate() {
                    let conditional = line.contains(" if (");
                    assert_eq!(conditional, i < n, "{} {}: {line}", suite.name(), t.name);
                }
                if n == 2 {
                    assert!(!probes[0].contains(".return") && probes[1].contains(".return"));
                }
            }
        }
    }

    #[test]
    fn scripts_substitute_parameters() {
        let t = get(Suite::Hrtimer, "otf_start_enabled_iter_3");
        let s = script(Suite::Hrtimer, &t);
        assert!(s.contains("global enabled = 658"));
        assert!(s.contains("probe timer.us(100000) if (enabled)"));
        assert!(s.contains("probe timer.us(500000) {"));
        assert!(s.contains("if (toggles > 3)"));
        assert!(s.contains("randint(2) == 0 ? -1-randint(10000) : 1+randint(10000)"));
        assert!(s.contains("println(\"timed out\")"));
        let t = get(Suite::Hrtimer, "otf_stress_hard_iter_2000");
        let s = script(Suite::Hrtimer, &t);
        assert!(s.contains("probe timer.us(1500) if (enabled)"));
        assert!(s.contains("probe timer.profile, kernel.trace(\"*\") {"));
        let t = get(Suite::Tracepoint, "otf_timer_10ms");
        let s = script(Suite::Tracepoint, &t);
        assert!(s.contains("kernel.trace(\"sched_process_fork\") if (enabled)"));
        assert!(s.contains("probe timer.us(10000) {"));
        let c = case(Suite::Tracepoint, &t);
        assert_eq!(c.opts, vec!["--otf-debug", "--otf-interval", "1ms"]);
        assert!(c.background.echo_loop);
        let t = get(Suite::Uprobes, "otf_stress_prof_iter_2000");
        let s = script(Suite::Uprobes, &t);
        assert!(
            s.contains("process(\"./uprobes_onthefly.x\").function(\"foo\").return if (state > 0)")
        );
        assert!(s.contains("probe timer.profile {"));
        let c = case(Suite::Uprobes, &t);
        assert_eq!(c.kind, Kind::Stress);
        assert_eq!(c.expect_count, vec![("toggling".to_string(), 2000)]);
        assert!(c.background.uprobe_target);
        let t = get(Suite::Kprobes, "otf_stress_5ms_iter_50");
        assert!(script(Suite::Kprobes, &t)
            .contains("kernel.function(\"vfs_read\").call if (state > 0)"));
        assert!(case(Suite::Kprobes, &t)
            .requires
            .contains(&Requirement::Kprobes));
    }
}
