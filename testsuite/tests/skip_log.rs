//! The skip report (docs/testing.md, "Skipped tests"): end to end, a skipped test appends its
//! line to `$OTF_SKIP_LOG`, named after its binary and its libtest thread (the only test here
//! that sets the process's environment); and no test of the workspace prints a skip of its own.

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
                test:
                    "otf-testsuite/skip_log::skips_are_appended_to_the_log_named_by_binary_and_test"
                        .to_string(),
                why: "needs gcc".to_string(),
            },
            Skipped {
                need: Need::Env,
                test: "otf-testsuite/skip_log::a case".to_string(),
                why: "no kprobes".to_string(),
            },
        ]
    );
}

/// Every test of the workspace reports its skips through `skip.rs`: a test that prints
/// "SKIPPED"/"skipped" itself reads `ok` and is not counted by `cargo xtask test`.
#[test]
fn no_test_prints_a_skip_of_its_own() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    let mut dirs = vec![
        root.join("testsuite/src"),
        root.join("testsuite/tests"),
        root.join("orchestrator/tests"),
    ];
    for krate in std::fs::read_dir(root.join("crates")).expect("crates/") {
        dirs.push(krate.expect("crates/ entry").path().join("tests"));
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("src/skip.rs") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 20, "found only {files:?}");
    let mut offenders = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read a test file");
        for (i, line) in text.lines().enumerate() {
            let l = line.to_lowercase();
            let prints = ["println!(", "print!(", "eprintln!(", "eprint!("]
                .iter()
                .any(|m| l.contains(m));
            if prints && (l.contains("skipped") || l.contains("skipping")) {
                offenders.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "report skips with skip::skip (testsuite/src/skip.rs; orchestrator tests: \
         common::skip), not a print:\n{}",
        offenders.join("\n")
    );
}
