//! The hand-written `.test` files in `testsuite/cases/` (readable examples of the format; see
//! `docs/testing.md`). One `#[test]` per file; every case of a file runs and is reported.

use otf_testsuite::case::parse_test_file;
use otf_testsuite::runner::{cases_dir, run_case, Verdict};
use otf_testsuite::skip;

fn run_file(stem: &str) {
    let path = cases_dir().join(format!("{stem}.test"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cases = parse_test_file(&text, stem, &cases_dir(), &path.display().to_string())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!cases.is_empty(), "{} has no cases", path.display());
    // Run the file's cases concurrently (the harness gate bounds how many run at once).
    let results: Vec<(String, Result<Verdict, String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| (c.full_name(), s.spawn(|| run_case(c))))
            .collect();
        handles
            .into_iter()
            .map(|(n, h)| {
                (
                    n,
                    h.join()
                        .unwrap_or_else(|_| Err("harness panicked".to_string())),
                )
            })
            .collect()
    });
    let mut failures = Vec::new();
    for (name, r) in results {
        match r {
            Ok(Verdict::Pass(o)) => eprintln!("{name}: pass (otf {:.2?})", o.elapsed),
            Ok(Verdict::Skip(need, why)) => skip::skip_named(need, &name, &why),
            Err(report) => {
                eprintln!("{report}");
                failures.push(name);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases: {failures:?} (reports above)"
    );
}

macro_rules! test_files {
    ($($stem:ident),+ $(,)?) => {
        $( #[test] fn $stem() { run_file(stringify!($stem)); } )+

        #[test]
        fn every_test_file_is_listed() {
            let mut listed = vec![$(stringify!($stem).to_string()),+];
            let mut found: Vec<String> = std::fs::read_dir(cases_dir())
                .unwrap()
                .filter_map(|e| e.ok()?.path().file_name()?.to_str()?.strip_suffix(".test").map(str::to_string))
                .collect();
            listed.sort();
            found.sort();
            assert_eq!(listed, found, "tests/cases.rs must list every cases/*.test file");
        }
    };
}

test_files!(errors, examples, hrtimer, tracepoint);
