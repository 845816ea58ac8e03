//! Every script of the four ported suites (all parameter sets) passes `otf check`: it compiles
//! and its probe points resolve, on any kernel. The kprobe scripts too — on a kernel without
//! kprobes they cannot be attached, but they must still compile and resolve (`otf run` is
//! what refuses them there).

use std::process::Command;

use otf_testsuite::onthefly::{script, subtests, Suite};
use otf_testsuite::otf::otf_bin;
use otf_testsuite::system::build_uprobe_target;

#[test]
fn every_suite_script_passes_otf_check() {
    let otf = otf_bin().expect("the otf binary");
    let dir = std::env::temp_dir().join(format!("otf-check-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    build_uprobe_target(&dir).expect("gcc builds the uprobe target");
    let mut checked = 0;
    for suite in [
        Suite::Hrtimer,
        Suite::Tracepoint,
        Suite::Uprobes,
        Suite::Kprobes,
    ] {
        for t in subtests(suite) {
            let text = script(suite, &t);
            let out = Command::new(&otf)
                .args(["check", "-e", &text])
                .current_dir(&dir)
                .output()
                .expect("otf runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{} {}: otf check failed:\n{text}\n{}",
                suite.name(),
                t.name,
                String::from_utf8_lossy(&out.stderr)
            );
            let group = format!("group={}", suite.group());
            assert!(
                stdout.lines().any(|l| l.contains(&group)),
                "{} {}: no {group} probe in:\n{stdout}",
                suite.name(),
                t.name
            );
            checked += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    // docs/testing.md, "The on-the-fly ports": hrtimer 20 subtests, tracepoint 21, uprobes 21,
    // kprobes 21.
    assert_eq!(
        checked,
        20 + 21 + 21 + 21,
        "every subtest of the four suites"
    );
}
