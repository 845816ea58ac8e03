//! A runtime test case, and the declarative `.test` file format that describes cases.
//!
//! The format reads like documentation (see `docs/testing.md` and `testsuite/cases/*.test`):
//!
//! ```text
//! # A comment.
//! NAME hrtimer_start_disabled_iter_1
//! DESCRIPTION A disabled 100 ms timer is enabled once by a 500 ms toggler.
//! KIND validated
//! REQUIRES root
//! TIMEOUT 60
//! OPTS --otf-debug
//! PROG
//!   global enabled = 0, toggles = 0, hit = 0
//!   probe timer.us(100000) if (enabled) { if (hit) next; hit = 1; println("hit") }
//!   probe timer.us(500000) { toggles++; hit = 0; if (toggles > 1) exit() else { println("toggling"); enabled = !enabled } }
//!   probe timer.s(120) { println("timed out"); exit() }
//! EXPECT_GLOBS
//!   * not starting (hrtimer) pidx ?
//!   toggling
//!   * enabling (hrtimer) pidx ?
//!   hit
//! EXPECT_NONE timed out
//! ```
//!
//! A line `KEY value` sets a field. `PROG`, `EXPECT_GLOBS` and `EXPECT_JSON` written alone on
//! their line take the block of following lines that are indented (by at least two spaces; the
//! common indentation is removed; blank lines inside the block are kept). `NAME` starts a new
//! case; the other keys apply to the case being built.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a case's outcome is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The output is matched against the expected patterns; any error output fails the case.
    Validated,
    /// Run with `--suppress-handler-errors`; passes iff otf exits 0 with no error on stderr
    /// within the time limit (and the expectations that are given, if any, hold).
    Stress,
}

/// Something a case needs from the machine; when it is missing the case is skipped with a note
/// (except `kprobes` inside the VM, where missing kprobes is a failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Requirement {
    /// Running as root.
    Root,
    /// A kernel with kprobes (a kprobe PMU in `/sys/bus/event_source/devices`).
    Kprobes,
    /// Running inside the test VM (`OTF_IN_VM=1`).
    Vm,
    /// A C compiler (`gcc`), to build a uprobe target.
    Gcc,
}

impl Requirement {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "root" => Self::Root,
            "kprobes" => Self::Kprobes,
            "vm" => Self::Vm,
            "gcc" => Self::Gcc,
            _ => return None,
        })
    }
}

/// Background activity kept running while otf runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Background {
    /// The `/bin/echo` loop of SystemTap's suite, with four subshell forks per iteration so that
    /// `sched_process_fork` fires about every 0.8 ms rather than every 4 ms on this machine
    /// (see [`crate::system::BackgroundProcess::echo_loop`]).
    pub echo_loop: bool,
    /// The uprobe target program (`foo(i)` in an endless loop) built into the case's working
    /// directory as `./uprobes_onthefly.x` and started there.
    pub uprobe_target: bool,
}

/// Where the script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// The script text.
    Text(String),
    /// A script file (relative paths are relative to the `.test` file's directory).
    File(PathBuf),
}

/// One runtime test case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The suite (e.g. `hrtimer_onthefly`, or the `.test` file's stem).
    pub suite: String,
    /// The subtest name.
    pub name: String,
    /// Free text shown in reports.
    pub description: String,
    /// The script.
    pub script: Script,
    /// Extra `otf run` options, before the script file.
    pub opts: Vec<String>,
    /// Ordered glob patterns over stdout lines, subsequence semantics.
    pub expect_globs: Vec<String>,
    /// Ordered JSON objects over stdout lines parsed as JSON; each must be a subset of the record
    /// it matches (strings in it are globs); subsequence semantics.
    pub expect_json: Vec<serde_json::Value>,
    /// Ordered glob patterns over stderr lines, subsequence semantics.
    pub expect_stderr: Vec<String>,
    /// Globs that no stdout line may match.
    pub expect_none: Vec<String>,
    /// `(glob, n)`: exactly `n` stdout lines must match `glob`.
    pub expect_count: Vec<(String, usize)>,
    /// The expected exit status of otf.
    pub exit_code: i32,
    /// Kill otf and fail after this long.
    pub timeout: Duration,
    /// What the machine must provide.
    pub requires: BTreeSet<Requirement>,
    /// Validated or stress.
    pub kind: Kind,
    /// Background activity.
    pub background: Background,
    /// Run alone (no other case of this test process at the same time). Stress cases always
    /// run alone; timing-sensitive validated cases ask for it with `SERIAL`.
    pub serial: bool,
}

impl Case {
    /// A validated case with no expectations, needing root, timing out after 60 s.
    pub fn new(suite: &str, name: &str, script: Script) -> Self {
        Case {
            suite: suite.to_string(),
            name: name.to_string(),
            description: String::new(),
            script,
            opts: Vec::new(),
            expect_globs: Vec::new(),
            expect_json: Vec::new(),
            expect_none: Vec::new(),
            expect_stderr: Vec::new(),
            expect_count: Vec::new(),
            exit_code: 0,
            timeout: Duration::from_secs(60),
            requires: BTreeSet::from([Requirement::Root]),
            kind: Kind::Validated,
            background: Background::default(),
            serial: false,
        }
    }

    /// `suite/name`, the way reports name a case.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.suite, self.name)
    }
}

/// A syntax error in a `.test` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file (or origin) being parsed.
    pub origin: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Split an `OPTS` value into words: whitespace separates, single and double quotes group.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_string());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn parse_duration_secs(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.trim().parse().ok().map(Duration::from_millis);
    }
    let s = v.strip_suffix('s').unwrap_or(v);
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| *x > 0.0)
        .map(Duration::from_secs_f64)
}

/// Parse the text of a `.test` file. `suite` names the cases' suite; `base` is the directory
/// relative `SCRIPT_FILE` paths are resolved against.
pub fn parse_test_file(
    text: &str,
    suite: &str,
    base: &Path,
    origin: &str,
) -> Result<Vec<Case>, ParseError> {
    let err = |line: usize, message: String| ParseError {
        origin: origin.to_string(),
        line,
        message,
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut cases: Vec<Case> = Vec::new();
    let mut cur: Option<(Case, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let raw = lines[i];
        i += 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with(' ') || raw.starts_with('\t') {
            return Err(err(
                lineno,
                "indented line outside a PROG/EXPECT_GLOBS/EXPECT_JSON block".into(),
            ));
        }
        let (key, value) = match trimmed.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (trimmed, ""),
        };
        // Block keys alone on their line take the following indented lines.
        let mut block = || -> Vec<String> {
            let mut body: Vec<&str> = Vec::new();
            while i < lines.len() {
                let l = lines[i];
                if l.starts_with("  ") || l.starts_with('\t') || l.trim().is_empty() {
                    body.push(l);
                    i += 1;
                } else {
                    break;
                }
            }
            while body.last().is_some_and(|l| l.trim().is_empty()) {
                body.pop();
            }
            let indent = body
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            body.iter()
                .map(|l| {
                    if l.trim().is_empty() {
                        String::new()
                    } else {
                        l[indent..].to_string()
                    }
                })
                .collect()
        };
        if key == "NAME" {
            if value.is_empty() {
                return Err(err(lineno, "NAME needs a value".into()));
            }
            if let Some((c, l)) = cur.take() {
                finish(c, l, &mut cases, origin)?;
            }
            cur = Some((Case::new(suite, value, Script::Text(String::new())), lineno));
            continue;
        }
        let Some((case, _)) = cur.as_mut() else {
            return Err(err(lineno, format!("`{key}` before the first NAME")));
        };
        match key {
            "DESCRIPTION" => {
                if !case.description.is_empty() {
                    case.description.push(' ');
                }
                case.description.push_str(value);
            }
            "PROG" => {
                case.script = Script::Text(if value.is_empty() {
                    block().join("\n") + "\n"
                } else {
                    value.to_string() + "\n"
                })
            }
            "SCRIPT_FILE" => case.script = Script::File(base.join(value)),
            "OPTS" => case
                .opts
                .extend(split_words(value).map_err(|e| err(lineno, e))?),
            "EXPECT" => case.expect_globs.push(value.to_string()),
            "EXPECT_GLOBS" => {
                if value.is_empty() {
                    case.expect_globs
                        .extend(block().into_iter().filter(|l| !l.is_empty()));
                } else {
                    case.expect_globs.push(value.to_string());
                }
            }
            "EXPECT_JSON" => {
                let items = if value.is_empty() {
                    block()
                } else {
                    vec![value.to_string()]
                };
                for item in items.iter().filter(|l| !l.trim().is_empty()) {
                    let v: serde_json::Value = serde_json::from_str(item)
                        .map_err(|e| err(lineno, format!("EXPECT_JSON: {e}: {item}")))?;
                    case.expect_json.push(v);
                }
            }
            "SERIAL" => case.serial = true,
            "EXPECT_STDERR" => case.expect_stderr.push(value.to_string()),
            "EXPECT_NONE" => case.expect_none.push(value.to_string()),
            "EXPECT_COUNT" => {
                let (n, glob) = value
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| err(lineno, "EXPECT_COUNT N GLOB".into()))?;
                let n = n
                    .parse()
                    .map_err(|_| err(lineno, format!("EXPECT_COUNT: `{n}` is not a count")))?;
                case.expect_count.push((glob.trim().to_string(), n));
            }
            "EXIT" => {
                case.exit_code = value
                    .parse()
                    .map_err(|_| err(lineno, format!("EXIT: `{value}` is not an exit status")))?
            }
            "TIMEOUT" => {
                case.timeout = parse_duration_secs(value)
                    .ok_or_else(|| err(lineno, format!("TIMEOUT: `{value}` is not a duration")))?
            }
            "REQUIRES" => {
                for w in value.split_whitespace() {
                    let r = Requirement::parse(w).ok_or_else(|| {
                        err(
                            lineno,
                            format!("REQUIRES: unknown requirement `{w}` (root, kprobes, vm, gcc)"),
                        )
                    })?;
                    case.requires.insert(r);
                }
            }
            "KIND" => {
                case.kind = match value {
                    "validated" => Kind::Validated,
                    "stress" => Kind::Stress,
                    _ => {
                        return Err(err(
                            lineno,
                            format!("KIND: `{value}` is neither `validated` nor `stress`"),
                        ))
                    }
                }
            }
            "BACKGROUND" => {
                for w in value.split_whitespace() {
                    match w {
                        "echo-loop" => case.background.echo_loop = true,
                        "uprobe-target" => {
                            case.background.uprobe_target = true;
                            case.requires.insert(Requirement::Gcc);
                        }
                        _ => {
                            return Err(err(
                                lineno,
                                format!("BACKGROUND: unknown `{w}` (echo-loop, uprobe-target)"),
                            ))
                        }
                    }
                }
            }
            _ => return Err(err(lineno, format!("unknown key `{key}`"))),
        }
    }
    if let Some((c, l)) = cur.take() {
        finish(c, l, &mut cases, origin)?;
    }
    Ok(cases)
}

fn finish(case: Case, line: usize, cases: &mut Vec<Case>, origin: &str) -> Result<(), ParseError> {
    if case.script == Script::Text(String::new()) {
        return Err(ParseError {
            origin: origin.to_string(),
            line,
            message: format!("case `{}` has no PROG or SCRIPT_FILE", case.name),
        });
    }
    if cases.iter().any(|c| c.name == case.name) {
        return Err(ParseError {
            origin: origin.to_string(),
            line,
            message: format!("duplicate NAME `{}`", case.name),
        });
    }
    cases.push(case);
    Ok(())
}

/// Whether `expected` is a subset of `actual`: objects recursively by key, strings as globs,
/// everything else by equality.
pub fn json_subset(expected: &serde_json::Value, actual: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_subset(ev, av))),
        (Value::String(e), Value::String(a)) => crate::glob::glob_match(e, a),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(e, a)| json_subset(e, a))
        }
        (e, a) => e == a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
# comment
NAME first
DESCRIPTION the first case
KIND validated
REQUIRES root vm
TIMEOUT 30
OPTS --otf-debug --otf-interval '1 ms'
PROG
  global x = 1
  probe timer.ms(10) {

    exit()
  }
EXPECT_GLOBS
  * enabling (hrtimer) pidx ?
  hit
EXPECT toggling
EXPECT_NONE timed out
EXPECT_COUNT 3 toggling
EXPECT_STDERR warning:*

NAME second
KIND stress
SERIAL
PROG probe begin { exit() }
BACKGROUND echo-loop uprobe-target
EXPECT_JSON {"type": "output", "text": "h*"}
EXIT 1
TIMEOUT 500ms
"#;

    #[test]
    fn parses_the_example() {
        let cases = parse_test_file(EXAMPLE, "s", Path::new("/base"), "ex.test").unwrap();
        assert_eq!(cases.len(), 2);
        let a = &cases[0];
        assert_eq!(a.full_name(), "s/first");
        assert_eq!(a.description, "the first case");
        assert_eq!(a.kind, Kind::Validated);
        assert!(a.requires.contains(&Requirement::Vm) && a.requires.contains(&Requirement::Root));
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.opts, vec!["--otf-debug", "--otf-interval", "1 ms"]);
        assert_eq!(
            a.script,
            Script::Text("global x = 1\nprobe timer.ms(10) {\n\n  exit()\n}\n".to_string())
        );
        assert_eq!(
            a.expect_globs,
            vec!["* enabling (hrtimer) pidx ?", "hit", "toggling"]
        );
        assert_eq!(a.expect_none, vec!["timed out"]);
        assert_eq!(a.expect_stderr, vec!["warning:*"]);
        assert_eq!(a.expect_count, vec![("toggling".to_string(), 3)]);
        let b = &cases[1];
        assert_eq!(b.kind, Kind::Stress);
        assert!(b.serial && !a.serial);
        assert_eq!(b.exit_code, 1);
        assert_eq!(b.timeout, Duration::from_millis(500));
        assert!(b.background.echo_loop && b.background.uprobe_target);
        assert!(b.requires.contains(&Requirement::Gcc));
        assert_eq!(
            b.script,
            Script::Text("probe begin { exit() }\n".to_string())
        );
        assert_eq!(b.expect_json.len(), 1);
    }

    #[test]
    fn reports_errors_with_line_numbers() {
        let e = parse_test_file("NAME a\nKIND fast\n", "s", Path::new("."), "x.test").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("fast"), "{e}");
        let e = parse_test_file("PROG x\n", "s", Path::new("."), "x.test").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse_test_file("NAME a\n", "s", Path::new("."), "x.test").unwrap_err();
        assert!(e.message.contains("no PROG"), "{e}");
        let e = parse_test_file(
            "NAME a\nPROG x\nNAME a\nPROG y\n",
            "s",
            Path::new("."),
            "x.test",
        )
        .unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        let e = parse_test_file("NAME a\nFOO x\n", "s", Path::new("."), "x.test").unwrap_err();
        assert!(e.message.contains("FOO"), "{e}");
    }

    #[test]
    fn split_words_handles_quotes() {
        assert_eq!(
            split_words(" a  'b c' \"d\"e ").unwrap(),
            vec!["a", "b c", "de"]
        );
        assert!(split_words("'a").is_err());
        assert_eq!(split_words("''").unwrap(), vec![""]);
    }

    #[test]
    fn json_subset_semantics() {
        let a: serde_json::Value = serde_json::from_str(
            r#"{"type":"decision","pidx":0,"text":"otf: enabling (hrtimer) pidx 0","x":[1]}"#,
        )
        .unwrap();
        let e: serde_json::Value =
            serde_json::from_str(r#"{"type":"decision","text":"* enabling *"}"#).unwrap();
        assert!(json_subset(&e, &a));
        let e: serde_json::Value = serde_json::from_str(r#"{"pidx":1}"#).unwrap();
        assert!(!json_subset(&e, &a));
        let e: serde_json::Value = serde_json::from_str(r#"{"missing":1}"#).unwrap();
        assert!(!json_subset(&e, &a));
    }
}
