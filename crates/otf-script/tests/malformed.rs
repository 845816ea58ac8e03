//! Every script in `tests/malformed/*.stp` is refused by the front end with its first error
//! at the expected place.
//!
//! The first line of each file is a comment `# expect: LINE:COL SUBSTRING`: the first error
//! diagnostic must be reported at 1-based LINE:COL (the comment itself is line 1) and its
//! message must contain SUBSTRING. `syntax_*.stp` cases exercise the parser, `sema_*.stp`
//! ones the semantic pass.

use otf_script::diag::{render_all, Diagnostic, SourceFile};
use std::path::{Path, PathBuf};

/// The front end under test: parser, semantic passes, affection and compiler.
fn front_end(file: &SourceFile) -> Vec<Diagnostic> {
    otf_script::check_source(file)
}

struct Expect {
    line: usize,
    col: usize,
    substring: String,
}

fn parse_header(path: &Path, text: &str) -> Result<Expect, String> {
    let first = text.lines().next().unwrap_or_default();
    let rest = first
        .strip_prefix("# expect:")
        .ok_or_else(|| {
            format!(
                "{}: first line must be `# expect: LINE:COL TEXT`",
                path.display()
            )
        })?
        .trim();
    let (pos, substring) = rest
        .split_once(' ')
        .ok_or_else(|| format!("{}: no message substring in `{first}`", path.display()))?;
    let (line, col) = pos
        .split_once(':')
        .and_then(|(l, c)| Some((l.parse().ok()?, c.parse().ok()?)))
        .ok_or_else(|| format!("{}: bad LINE:COL `{pos}`", path.display()))?;
    Ok(Expect {
        line,
        col,
        substring: substring.trim().to_string(),
    })
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/malformed exists")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.extension().is_some_and(|e| e == "stp"))
        .collect();
    paths.sort();
    paths
}

/// Checks one case; `Err` describes the mismatch.
fn check(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let expect = parse_header(path, &text)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let file = SourceFile::new(name.as_ref(), text.as_str());
    let diags = front_end(&file);
    let Some(first) = diags.iter().find(|d| d.is_error()) else {
        return Err(format!("{name}: no error reported"));
    };
    let (line, col) = file.line_col(first.span.lo);
    if (line, col) != (expect.line, expect.col) || !first.message.contains(&expect.substring) {
        return Err(format!(
            "{name}: expected an error at {}:{} containing `{}`, got:\n{}",
            expect.line,
            expect.col,
            expect.substring,
            render_all(&diags, &file)
        ));
    }
    Ok(())
}

#[test]
fn malformed_scripts_report_the_expected_first_error() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in cases() {
        checked += 1;
        if let Err(e) = check(&path) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
    let syntax = cases()
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("syntax_"))
        })
        .count();
    assert!(syntax >= 25, "only {syntax} syntax cases");
}

#[test]
fn every_case_has_a_valid_header_and_an_error_after_it() {
    for path in cases() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let expect = parse_header(&path, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            expect.line >= 2,
            "{}: the error cannot be on the header line",
            path.display()
        );
        assert!(!expect.substring.is_empty(), "{}", path.display());
    }
}
