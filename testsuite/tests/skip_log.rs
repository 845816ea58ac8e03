//! The skip report end to end (docs/testing.md, "Skipped tests"): a skipped test appends its
//! line to `$OTF_SKIP_LOG`, named after its binary and its libtest thread. One test only: it
//! sets the process's environment.

use otf_testsuite::skip::{self, Need, Skipped};

#[test]
fn skips_are_appended_to_the_log_named_by_binary_and_test() {
    let path = std::env::temp_dir().join(format!("otf-skip-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    std::env::set_var(skip::LOG_ENV, &path);
    skip::skip(Need::Tool, "needs gcc");
    std::thread::scope(|s| {
        s.spawn(|| skip::skip_named(Need::Env, "a case", "no kprobes"));
    });
    std::env::remove_var(skip::LOG_ENV);
    let text = std::fs::read_to_string(&path).expect("the log was written");
    std::fs::remove_file(&path).unwrap();
    let got: Vec<Skipped> = text.lines().map(|l| skip::parse(l).expect(l)).collect();
    assert_eq!(
        got,
        [
            Skipped {
                need: Need::Tool,
                test: "skip_log::skips_are_appended_to_the_log_named_by_binary_and_test"
                    .to_string(),
                why: "needs gcc".to_string(),
            },
            Skipped {
                need: Need::Env,
                test: "skip_log::a case".to_string(),
                why: "no kprobes".to_string(),
            },
        ]
    );
}
