//! Soak test of the on-the-fly invariants under load (docs/testing.md, "Soak"): while two
//! processes, one pinned to each CPU, call getppid(2) in a loop, a script toggles a probe's
//! condition on and off tens of thousands of times. At the end:
//!
//! - no body ran while its condition was false (`bad == 0`, counted by the body itself);
//! - the probe's final armed state (its last `--otf-debug` decision) equals its final condition,
//!   and `--stats`' `armed − disarmed` says the same;
//! - the counters add up: `hits == bodies + skipped_cond + skipped_lock + errors`, `errors == 0`,
//!   `bodies` equals the script's own count, and the decision lines agree with `armed`/`disarmed`;
//! - nothing leaks: otf's fd count stays flat, and after exit none of the BPF programs, links and
//!   maps it held exists, no process is left in its process group, and the load is gone.
//!
//! `$OTF_SOAK_SECS` sets each test's toggling time (default 20 s for the tracepoint, 25 s for
//! the timer; 10 s in the VM). No timing assertion: the rates are printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use otf_testsuite::bpfobj::{self, Held};
use otf_testsuite::otf::{OtfProcess, Outcome};
use otf_testsuite::runner::Slot;
use otf_testsuite::skip;
use otf_testsuite::stats::{check_alternation, final_armed};
use otf_testsuite::system::{self, TempDir};

/// Skip (reported, [`skip`]) unless root.
fn need_root() -> bool {
    skip::need_root("BPF, perf events; run the suite as root")
}

/// Seconds of toggling: `$OTF_SOAK_SECS`, else `default` (10 in the VM).
fn soak_secs(default: u64) -> u64 {
    std::env::var("OTF_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if system::in_vm() { 10 } else { default })
}

// ---------------------------------------------------------------------------------------------
// The load: processes calling getppid(2) in a loop, one pinned to each CPU

/// A forked child calling getppid(2) forever, killed (and reaped) on drop.
struct Spinner {
    pid: libc::pid_t,
}

impl Spinner {
    /// Fork a child that pins itself to `cpu` (if given) and calls getppid(2) in a loop.
    fn getppid_loop(cpu: Option<usize>) -> std::io::Result<Spinner> {
        // SAFETY: the child only makes raw system calls (no allocation, no locks), which is
        // what may be done after fork in a multi-threaded process, and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; all arguments are valid for these calls.
            unsafe {
                // Dies with the test thread that forked it, even if the test panics or aborts.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                libc::setpgid(0, 0);
                if let Some(cpu) = cpu {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                }
                loop {
                    libc::syscall(libc::SYS_getppid);
                }
            }
        }
        Ok(Spinner { pid })
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        // SAFETY: our own child, not yet reaped (so its pid cannot have been reused).
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// One getppid loop per CPU this process may run on (two on the development machine).
fn load() -> Vec<Spinner> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid cpu_set_t of the size passed.
    let ok = unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
    };
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: cpu < CPU_SETSIZE.
        .filter(|&c| ok && unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    let pins: Vec<Option<usize>> = match cpus.len() {
        0 => vec![None, None],
        1 => vec![Some(cpus[0]), Some(cpus[0])],
        _ => cpus.iter().take(2).map(|&c| Some(c)).collect(),
    };
    pins.into_iter()
        .map(|cpu| Spinner::getppid_loop(cpu).expect("fork the getppid loop"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Running otf and reading its JSON output

/// The soak script. `target` (pidx 0) runs while `on`; its body counts itself, checks its own
/// condition, and turns `on` off every 50th run (a write from the probe's own context); a
/// `timer.us(200)` flips `on` between 0 and a random non-zero value. After `secs` the toggling
/// stops with `on` at `final_on` for `settle_ms`, then the script exits.
fn script(target: &str, start_on: i64, final_on: i64, secs: u64, settle_ms: u64) -> String {
    let ms = secs * 1000;
    format!(
        r#"global on = {start_on}, bad = 0, runs = 0, k = 0, flips = 0, offs = 0, stop = 0
global t0 = 0, fin = 0
probe begin {{ t0 = gettimeofday_ms() }}
# pidx 0, the target. It runs only while `on` (under the lock), so `bad` must stay 0.
probe {target} if (on) {{
   if (!on) bad++
   runs++
   if (!stop && ++k >= 50) {{ k = 0; on = 0; offs++ }}
}}
# The toggler (pidx 1).
probe timer.us(200) {{
   if (stop) next
   if (gettimeofday_ms() - t0 >= {ms}) {{
      stop = 1; on = {final_on}; fin = gettimeofday_ms()
      printf("stopped on=%d\n", on)
      next
   }}
   on = on ? 0 : 1 + randint(1000)
   flips++
}}
probe timer.ms(10) {{ if (stop && gettimeofday_ms() - fin >= {settle_ms}) exit() }}
probe end {{ printf("bad=%d runs=%d flips=%d offs=%d on=%d\n", bad, runs, flips, offs, on) }}
"#
    )
}

/// What the JSON output says.
#[derive(Debug, Default)]
struct Report {
    /// Decision lines, rendered as in text mode (`otf: registering (tracepoint) pidx 0`).
    decisions: Vec<String>,
    /// Script output lines.
    output: Vec<String>,
    /// Per-probe `stats` records: pidx -> counter -> value.
    stats: BTreeMap<u64, BTreeMap<String, u64>>,
    /// `skipped_kernel` per handler program.
    skipped_kernel: BTreeMap<String, u64>,
    /// The probe point of each pidx.
    points: BTreeMap<u64, String>,
}

fn parse(o: &Outcome) -> Report {
    let mut r = Report::default();
    for l in &o.stdout {
        let Ok(serde_json::Value::Object(v)) = serde_json::from_str(&l.text) else {
            continue;
        };
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default();
        match s("type") {
            "otf" => r.decisions.push(format!(
                "otf: {} ({}) pidx {}",
                s("decision"),
                s("flavor"),
                v.get("pidx").and_then(|x| x.as_u64()).unwrap_or(u64::MAX)
            )),
            "output" => r.output.extend(s("text").lines().map(str::to_string)),
            "stats" => {
                if let Some(pidx) = v.get("pidx").and_then(|x| x.as_u64()) {
                    r.points.insert(pidx, s("point").to_string());
                    let c = r.stats.entry(pidx).or_default();
                    for (k, x) in &v {
                        if let (true, Some(n)) = (k != "pidx", x.as_u64()) {
                            c.insert(k.clone(), n);
                        }
                    }
                } else if let Some(n) = v.get("skipped_kernel").and_then(|x| x.as_u64()) {
                    r.skipped_kernel.insert(s("program").to_string(), n);
                }
            }
            _ => {}
        }
    }
    r
}

impl Report {
    /// The `name=value` printed by the script (last occurrence).
    fn printed(&self, name: &str) -> Option<i64> {
        let key = format!("{name}=");
        self.output.iter().rev().find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&key))
                .and_then(|v| v.parse().ok())
        })
    }

    /// The pidx of the target's attachments (several for `timer.profile`, one per CPU) and the
    /// pidx of the toggler.
    fn pidxs(&self) -> (Vec<u64>, u64) {
        let targets = self
            .points
            .iter()
            .filter(|(_, p)| !p.starts_with("timer.us(") && !p.starts_with("timer.ms("))
            .map(|(&i, _)| i)
            .collect();
        let toggler = self
            .points
            .iter()
            .find(|(_, p)| p.starts_with("timer.us("))
            .map_or(u64::MAX, |(&i, _)| i);
        (targets, toggler)
    }

    /// A counter summed over `pidxs`.
    fn sum(&self, pidxs: &[u64], name: &str) -> u64 {
        pidxs.iter().map(|&p| self.counter(p, name)).sum()
    }

    fn counter(&self, pidx: u64, name: &str) -> u64 {
        self.stats
            .get(&pidx)
            .and_then(|c| c.get(name))
            .copied()
            .unwrap_or_else(|| panic!("--stats has no `{name}` for pidx {pidx}: {:?}", self.stats))
    }
}

/// A report of a run for assertion messages (stdout without the decision lines, which are
/// summarised).
fn show(script: &str, o: &Outcome) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "--- command: {}\n--- status: {} after {:.2?}\n--- script:",
        o.command,
        o.status_text(),
        o.elapsed
    );
    for (i, l) in script.lines().enumerate() {
        let _ = writeln!(r, "{:4} | {l}", i + 1);
    }
    let decisions = o
        .stdout
        .iter()
        .filter(|l| l.text.contains(r#""type":"otf""#));
    let (n, last) = decisions.fold((0, None), |(n, _), l| (n + 1, Some(l)));
    let _ = writeln!(r, "--- {n} decision records; the last: {last:?}");
    let _ = writeln!(r, "--- other stdout:");
    for l in o
        .stdout
        .iter()
        .filter(|l| !l.text.contains(r#""type":"otf""#))
    {
        let _ = writeln!(r, "{:>9.3?} | {}", l.at, l.text);
    }
    let _ = writeln!(r, "--- stderr:\n{}", o.stderr);
    r
}

// ---------------------------------------------------------------------------------------------
// The soak

fn soak(test: &str, target: &str, default_secs: u64) {
    if !need_root() {
        return;
    }
    let _slot = Slot::acquire(true);
    let secs = soak_secs(default_secs);
    let settle_ms = if system::in_vm() { 20_000 } else { 2_000 };
    // Start and end in varying states: each run covers one of the four combinations.
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    };
    let start_on = i64::from(seed & 1 != 0);
    let final_on = if seed & 2 != 0 { 7 } else { 0 };
    let tmp = TempDir::new(test).expect("tmp");
    let script = script(target, start_on, final_on, secs, settle_ms);
    let file = tmp.path().join(format!("{test}.stp"));
    std::fs::write(&file, &script).expect("write script");
    let args: Vec<String> = [
        "run",
        "--otf-debug",
        "--stats",
        "-o",
        "json",
        "--otf-interval",
        "1ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([file.display().to_string()])
    .collect();

    let spinners = load();
    let spinner_pids: Vec<i32> = spinners.iter().map(|s| s.pid).collect();
    let mut p = OtfProcess::spawn(&args, tmp.path()).expect("spawn otf");
    let pid = p.pid();
    let started = Instant::now();
    // While it runs: the BPF objects otf holds (sampled every 250 ms; the programs are loaded
    // once, the links come and go with the arming) and its fd count after warm-up and at the
    // end of the toggling.
    let mut held = Held::default();
    let mut fds: Vec<(Duration, usize)> = Vec::new();
    let mut rss: Vec<u64> = Vec::new();
    let deadline = started + Duration::from_secs(secs + 120) + Duration::from_millis(settle_ms) * 2;
    while p.running() && Instant::now() < deadline {
        if let Ok(h) = bpfobj::held_by(pid) {
            held.progs.extend(h.progs);
            held.maps.extend(h.maps);
            held.links.extend(h.links);
            held.perf_events = held.perf_events.max(h.perf_events);
        }
        let t = started.elapsed();
        if t >= Duration::from_secs(1) && t <= Duration::from_secs(secs) {
            if let (Ok(n), Ok(kb)) = (system::fd_count(pid), system::vm_rss_kb(pid)) {
                fds.push((t, n));
                rss.push(kb);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let o = p.wait(Duration::from_secs(secs + 180) + Duration::from_millis(settle_ms) * 2);
    drop(spinners);
    let r = parse(&o);

    // Rates first, whatever happens next.
    let (targets, toggler) = r.pidxs();
    let get = |pidx: u64, n: &str| r.stats.get(&pidx).and_then(|c| c.get(n)).copied();
    let total = |n: &str| targets.iter().filter_map(|&p| get(p, n)).sum::<u64>();
    let flips = r.printed("flips").unwrap_or(0);
    let offs = r.printed("offs").unwrap_or(0);
    let s = secs.max(1) as f64;
    eprintln!(
        "{test}: {secs} s of toggling ({:.1?} in all), start on={start_on}, final on={final_on}\n  \
         script toggles: {} ({flips} by the timer, {offs} by the target's body; {:.0}/s)\n  \
         kernel arm/disarm per target pidx {targets:?}: {}/{} ({:.1} disarms/s per pidx)\n  \
         target: hits {} ({:.0}/s), bodies {}, skipped_cond {}, skipped_lock {}, \
         skipped_nest {}, errors {}\n  \
         toggler: {:?} firings run, {:?} lost; skipped by the kernel {:?}\n  \
         otf fds {:?} -> {:?}, VmRSS {:?} -> {:?} kB",
        o.elapsed,
        flips + offs,
        (flips + offs) as f64 / s,
        total("armed"),
        total("disarmed"),
        total("disarmed") as f64 / s / targets.len().max(1) as f64,
        total("hits"),
        total("hits") as f64 / s,
        total("bodies"),
        total("skipped_cond"),
        total("skipped_lock"),
        total("skipped_nest"),
        total("errors"),
        get(toggler, "hits"),
        get(toggler, "lost"),
        r.skipped_kernel,
        fds.first().map(|f| f.1),
        fds.last().map(|f| f.1),
        rss.first(),
        rss.last(),
    );
    if flips + offs < 10_000 {
        eprintln!("note: {test}: fewer than 10^4 script toggles in {secs} s on this machine");
    }

    // The run itself.
    assert!(
        !o.timed_out && o.code() == Some(0) && o.error_lines().is_empty(),
        "otf did not exit cleanly\n{}",
        show(&script, &o)
    );
    assert!(
        o.leftover_group.is_empty(),
        "processes left in otf's process group: {:?}",
        o.leftover_group
    );
    for sp in spinner_pids {
        assert!(!system::process_alive(sp), "the getppid loop {sp} survived");
    }
    assert!(
        !targets.is_empty() && toggler != u64::MAX,
        "--stats has no target or toggler: {:?}\n{}",
        r.points,
        show(&script, &o)
    );

    // (1) No body while the condition was false.
    assert_eq!(
        r.printed("bad"),
        Some(0),
        "a body ran while its condition was false\n{}",
        show(&script, &o)
    );
    let runs = r.printed("runs").expect("runs printed");
    assert!(
        runs > 0,
        "the target's body never ran: the soak proves nothing\n{}",
        show(&script, &o)
    );
    assert!(
        flips > 0 && offs > 0,
        "the condition was not toggled from both writers\n{}",
        show(&script, &o)
    );

    // (2) The final armed state equals the final condition, for each attachment of the target.
    assert_eq!(
        r.printed("on"),
        Some(final_on),
        "the script ended with another `on`\n{}",
        show(&script, &o)
    );
    if let Err(e) = check_alternation(&r.decisions) {
        panic!("inconsistent decision sequence: {e}\n{}", show(&script, &o));
    }
    let want = final_on != 0;
    let fin = final_armed(&r.decisions);
    for &t in &targets {
        let last = fin.get(&(t as u32)).copied();
        assert_eq!(
            last.unwrap_or(start_on != 0),
            want,
            "pidx {t}: armed after its last decision ({last:?}) differs from the final condition {final_on}\n{}",
            show(&script, &o)
        );
        let (armed, disarmed) = (r.counter(t, "armed"), r.counter(t, "disarmed"));
        assert!(
            disarmed > 0,
            "pidx {t} was never disarmed in the kernel\n{}",
            show(&script, &o)
        );
        assert_eq!(
            armed.checked_sub(disarmed),
            Some(u64::from(want)),
            "pidx {t}: --stats armed {armed} - disarmed {disarmed} disagrees with the final condition {final_on}"
        );
        // The decision lines count the same (arming at start prints nothing).
        let suffix = format!(" pidx {t}");
        let count = |words: [&str; 2]| {
            r.decisions
                .iter()
                .filter(|d| d.ends_with(&suffix) && words.iter().any(|w| d.starts_with(w)))
                .count() as u64
        };
        let on_lines = count(["otf: registering (", "otf: enabling ("]);
        let off_lines = count(["otf: unregistering (", "otf: disabling ("]);
        assert_eq!(
            (on_lines + u64::from(start_on != 0), off_lines),
            (armed, disarmed),
            "pidx {t}: decision lines (arm, disarm) disagree with --stats armed/disarmed"
        );
    }

    // (3) The counts add up. A hit is counted once the nesting level is claimed (handler.rs),
    // so `skipped_nest` is beside `hits`, not in it; a run-time error would end the run.
    for &t in targets.iter().chain([&toggler]) {
        let c = |n| r.counter(t, n);
        assert_eq!(c("errors"), 0, "pidx {t}: run-time errors");
        assert_eq!(
            c("hits"),
            c("bodies") + c("skipped_cond") + c("skipped_lock") + c("errors"),
            "pidx {t}: hits != bodies + skipped_cond + skipped_lock + errors: {:?}",
            r.stats.get(&t)
        );
    }
    assert_eq!(
        r.sum(&targets, "bodies"),
        runs as u64,
        "--stats bodies of the target != the script's own count: {:?}",
        r.stats
    );

    // (4) Nothing leaks: fds flat while toggling, every BPF object otf held gone after exit.
    assert!(
        !held.progs.is_empty(),
        "otf held no BPF program while running: the leak check proves nothing"
    );
    if let (Some(first), Some(last)) = (fds.first(), fds.last()) {
        // In-flight background detaches hold a few fds at any moment.
        assert!(
            last.1 <= first.1 + 16,
            "otf's fd count grew from {} at {:.1?} to {} at {:.1?} over {} arm/disarm cycles",
            first.1,
            first.0,
            last.1,
            last.0,
            total("disarmed")
        );
    }
    let deadline = Instant::now() + Duration::from_secs(if system::in_vm() { 100 } else { 10 });
    let left = loop {
        let left = bpfobj::still_existing(&held).expect("bpf(2)");
        if left.is_empty() || Instant::now() >= deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        left.is_empty(),
        "BPF objects of otf (pid {pid}) still exist after it exited: {left:?} (held {held:?})"
    );
    assert!(
        !system::process_alive(pid),
        "otf (pid {pid}) is still alive"
    );
}

/// A hot tracepoint (`syscalls:*`: a perf tracepoint event per arming, whose detach waits for a
/// grace period) driven by both getppid loops.
#[test]
fn soak_tracepoint_getppid() {
    soak(
        "soak_tracepoint_getppid",
        "kernel.trace(\"syscalls:sys_enter_getppid\")",
        20,
    );
}

/// `timer.profile`, one perf timer per CPU, started and stopped by ioctl: the target whose
/// arming is cheap enough for 10^4 kernel arm/disarm cycles in a CI-length run, while the
/// getppid loops keep both CPUs busy.
#[test]
fn soak_timer_profile() {
    soak("soak_timer_profile", "timer.profile", 25);
}
