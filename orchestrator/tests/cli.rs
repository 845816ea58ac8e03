//! The `otf` command line without attaching anything: `otf check`, `otf list`, usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn otf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_otf"))
}

fn run(args: &[&str]) -> Output {
    otf().args(args).output().expect("otf runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The affection lines of `otf check -e SCRIPT`.
fn pairs(script: &str) -> Vec<String> {
    let o = run(&["check", "-e", script]);
    assert_eq!(o.status.code(), Some(0), "otf check failed: {}", stderr(&o));
    stdout(&o)
        .lines()
        .filter(|l| l.contains("can affect condition of"))
        .map(str::to_string)
        .collect()
}

fn expect_pairs(script: &str, expected: &[(u32, u32)]) {
    let want: Vec<String> = expected
        .iter()
        .map(|(i, j)| format!("probe {i} can affect condition of probe {j}"))
        .collect();
    assert_eq!(pairs(script), want, "script:\n{script}");
}

// The affection cases of SystemTap's affection.exp (docs/testing.md, "Affection").

#[test]
fn affection_no_condition() {
    expect_pairs(
        "global x\nprobe timer.s(1) { x = 1 }\nprobe timer.s(2) { x = 2 }\n",
        &[],
    );
}

#[test]
fn affection_writer_affects_other() {
    expect_pairs(
        "global x\nprobe timer.s(1) { x = !x }\nprobe timer.s(2) if (x) { }\n",
        &[(0, 1)],
    );
}

#[test]
fn affection_self() {
    expect_pairs(
        "global x = 1\nprobe timer.s(1) if (x) { x = 0 }\n",
        &[(0, 0)],
    );
}

#[test]
fn affection_condition_over_several_globals() {
    expect_pairs(
        "global var1, var2\n\
         probe timer.s(1) { var1 = 1 }\n\
         probe timer.s(2) { var2 = 1 }\n\
         probe timer.s(3) if (var1 && var2) { }\n",
        &[(0, 2), (1, 2)],
    );
}

#[test]
fn affection_several_writers_and_readers() {
    expect_pairs(
        "global a, b\n\
         probe timer.s(1) { a++ }\n\
         probe timer.s(2) { b++ }\n\
         probe timer.s(3) if (a) { }\n\
         probe timer.s(4) if (b) { }\n\
         probe timer.s(5) if (a || b) { a = 0 }\n\
         probe timer.s(6) { println(a + b) }\n",
        &[(0, 2), (0, 4), (1, 3), (1, 4), (4, 2), (4, 4)],
    );
}

#[test]
fn affection_through_functions_and_nested_calls() {
    expect_pairs(
        "global x, y\n\
         function set_x() { x = 1 return 0 }\n\
         function outer() { return set_x() }\n\
         function set_y() { y = 1 return 0 }\n\
         probe timer.s(1) { set_x() }\n\
         probe timer.s(2) { outer() }\n\
         probe timer.s(3) if (x) { }\n\
         probe timer.s(4) if (y) { }\n\
         probe timer.s(5) { z = set_y() }\n",
        &[(0, 2), (1, 2), (4, 3)],
    );
}

#[test]
fn affection_expands_to_every_pidx_of_a_statement() {
    // Two components share one body: both pidx are writers; only the second has a condition.
    expect_pairs(
        "global x\nprobe timer.s(1), timer.s(2) if (x) { x = 0 }\n",
        &[(0, 1), (1, 1)],
    );
}

#[test]
fn check_lists_probes_with_pidx_group_and_attachment() {
    let o = run(&[
        "check",
        "-e",
        "probe begin { }\nprobe timer.ms(5) { }\nprobe timer.hz(100), timer.us(100) { }\n",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        "probe 0 timer.ms(5) group=hrtimer attach=\"bpf timer period 5000000 ns\" otf=yes notify=immediate",
        "{out}"
    );
    assert!(
        lines[1].starts_with("probe 1 timer.hz(100) group=hrtimer"),
        "{out}"
    );
    assert!(lines[2].contains("period 100000 ns"), "{out}");
}

#[test]
fn preprocessor_conditionals_pick_the_branch_for_the_arguments_and_the_kernel() {
    // The pattern of SystemTap's examples: a default when the argument is missing.
    let script = "probe timer.ms(%( $# >= 1 %? $1 %: 7 %)) { }\n\
                  %( kernel_v >= \"2.6.0\" && arch != \"no-such-arch\" %? probe timer.s(1) { } %: probe begin { x = $y } %)";
    let o = run(&["check", "-e", script]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("probe 0 timer.ms(7) "), "{out}");
    assert!(out.contains("probe 1 timer.s(1) "), "{out}");
    let o = run(&["check", "-e", script, "--", "25"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("probe 0 timer.ms(25) "),
        "{}",
        stdout(&o)
    );
    // A malformed conditional is SystemTap's error at its place.
    let o = run(&[
        "check",
        "-e",
        "probe begin { }\n%( kernel_v > \"6*\" %? probe end { } %)",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("wildcard not allowed with order comparison operators") && e.contains(":2:"),
        "{e}"
    );
}

#[test]
fn timer_profile_has_one_pidx_per_cpu() {
    let o = run(&[
        "check",
        "-e",
        "global x\nprobe timer.profile if (x) { x = 0 }\n",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let probes = out.lines().filter(|l| l.contains("group=hrtimer")).count();
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("cpu list");
    let n: usize = cpus
        .trim()
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => b.parse::<usize>().unwrap_or(0) - a.parse::<usize>().unwrap_or(0) + 1,
            None => 1,
        })
        .sum();
    assert_eq!(probes, n, "{out}");
    // Every pidx of the statement affects every pidx of the unit.
    let pairs = out.lines().filter(|l| l.contains("can affect")).count();
    assert_eq!(pairs, n * n, "{out}");
}

#[test]
fn unknown_family_is_a_script_error_at_its_column() {
    let o = run(&[
        "check",
        "-e",
        "global n\nprobe kernel.funtion(\"vfs_read\") { n++ }\n",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("error: unknown probe point family `kernel.funtion`"),
        "{err}"
    );
    assert!(err.contains("--> <command line>:2:7"), "{err}");
    assert!(err.contains("^^^^^^^^^^^^^^"), "{err}");
}

#[test]
fn unknown_family_in_list_is_an_error() {
    let o = run(&["list", "kernel.funtion(\"x\")"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown probe point family `kernel.funtion`"));
}

#[test]
fn list_timers() {
    let o = run(&["list", "timer"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o),
        "timer.ns(N)\ntimer.us(N)\ntimer.ms(N)\ntimer.s(N)\ntimer.hz(N)\ntimer.profile\n"
    );
}

#[test]
fn missing_script_file_is_an_error() {
    let o = run(&["check", "/nonexistent/x.stp"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read script /nonexistent/x.stp"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["run"][..],
        &["run", "-T", "soon", "-e", "probe begin {}"],
        &["run", "-o", "xml", "-e", "probe begin {}"],
        &["run", "--otf-interval", "fast", "-e", "probe begin {}"],
        &["run", "-x", "notapid", "-e", "probe begin {}"],
        &["run", "--bogus", "-e", "probe begin {}"],
        &["run", "-e", "probe begin {}", "-c", "true", "-x", "1"],
        &["check"],
        &["check", "a.stp", "-e", "probe begin {}"],
        &["list"],
        &["frobnicate"],
        &[],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "otf {args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_and_version_exit_0() {
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&["--version"]).status.code(), Some(0));
    let o = run(&["run", "--help"]);
    assert!(stdout(&o).contains("--otf-interval"));
}

fn malformed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/otf-script/tests/malformed")
}

/// Every malformed script of otf-script's suite is refused by `otf check` with status 1 and a
/// diagnostic at the `# expect: LINE:COL msg` position of its header.
#[test]
fn malformed_scripts_are_refused_at_their_position() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(malformed_dir())
        .expect("malformed dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "stp"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no malformed scripts found");
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        let Some(expect) = text.lines().find_map(|l| l.strip_prefix("# expect: ")) else {
            panic!("{}: no `# expect:` header", f.display());
        };
        let (pos, msg) = expect.split_once(' ').unwrap_or((expect, ""));
        let name = f.display().to_string();
        let o = run(&["check", &name]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!("--> {name}:{pos}\n")),
            "{name}: expected {pos}:\n{err}"
        );
        assert!(err.contains(msg.trim()), "{name}: expected `{msg}`:\n{err}");
        assert!(!err.contains("internal error"), "{name}: {err}");
    }
}

#[test]
fn run_without_privilege_says_so() {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let o = run(&["run", "-e", "probe begin { }"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("otf run needs root (or CAP_BPF and CAP_PERFMON)"));
        return;
    }
    // As root: run as `nobody`, without capabilities.
    use std::os::unix::process::CommandExt;
    let o = otf()
        .args(["run", "-e", "probe begin { }"])
        .uid(65534)
        .gid(65534)
        .output();
    let Ok(o) = o else {
        common::skip::skip(common::skip::Need::Env, "cannot run as nobody");
        return;
    };
    if o.status.code() == Some(126) || stderr(&o).contains("Permission denied") {
        common::skip::skip(
            common::skip::Need::Env,
            "the otf binary is not accessible to nobody",
        );
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("error: otf run needs root (or CAP_BPF and CAP_PERFMON)"));
}

/// `otf check -v` says when `kernel.function` probes cannot run on this kernel, and only then.
#[test]
fn check_verbose_says_whether_kprobes_are_available() {
    let o = run(&[
        "check",
        "-v",
        "-e",
        "probe kernel.function(\"vfs_read\") { }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("# kernel.function(\"vfs_read\"): 1 function(s)"),
        "{text}"
    );
    let note = text.contains("need a kernel built with CONFIG_KPROBES=y");
    assert_eq!(
        note,
        otf_kprobes::kprobes_available().is_err(),
        "the CONFIG_KPROBES note must appear exactly when kprobes are missing:\n{text}"
    );
}

/// Script arguments after `--` (or after the script file) reach `$N`, `@N`, `$#`, also in
/// probe points.
#[test]
fn script_arguments_reach_the_script() {
    let o = run(&[
        "check",
        "-e",
        "probe timer.ms($1), kernel.trace(@2) { n = $# }",
        "--",
        "250",
        "sched_switch",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains(" timer.ms(250) "), "{text}");
    assert!(
        text.contains(" kernel.trace(\"sched:sched_switch\") "),
        "{text}"
    );
    // After a script file, with or without `--`.
    let dir = std::env::temp_dir().join(format!("otf-cli-args-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("a.stp");
    std::fs::write(&path, "probe timer.ms($1) { } probe timer.s($2) { }\n").expect("write");
    let p = path.display().to_string();
    for args in [
        &["check", &p, "7", "3"][..],
        &["check", &p, "--", "7", "3"],
        &["check", &p, "7", "--", "3"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        let text = stdout(&o);
        assert!(
            text.contains(" timer.ms(7) ") && text.contains(" timer.s(3) "),
            "{args:?}: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A missing script argument is an error at the `$N`, with status 1.
#[test]
fn missing_script_argument_is_an_error_at_its_position() {
    let o = run(&["check", "-e", "probe begin {\n  x = $1 + $3\n}", "--", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(
            "error: command line argument index 3 out of range [1-1]\n  --> <command line>:2:12\n"
        ),
        "{err}"
    );
    let o = run(&["check", "-e", "probe begin { printf(\"%s\\n\", @1) }"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "error: command line argument index 1 out of range [1-0]\n  --> <command line>:1:30\n"
        ),
        "{}",
        stderr(&o)
    );
}

/// A script that is not UTF-8 is refused at the line:col of its first invalid byte.
#[test]
fn invalid_utf8_is_an_error_at_the_first_bad_byte() {
    let dir = std::env::temp_dir().join(format!("otf-cli-utf8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bad.stp");
    std::fs::write(&path, b"probe begin {\n  x = 1 \xff\xfe\n}\n").expect("write");
    let p = path.display().to_string();
    let o = run(&["check", &p]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!(
            "error: the script is not valid UTF-8: invalid byte 0xff\n  --> {p}:2:9\n"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
