//! SystemTap's preprocessor conditionals: `%( CONDITION %? THEN %: ELSE %)`.
//!
//! The lexer turns `%(`, `%?`, `%:` and `%)` into [`TokenKind::Pp`] marks; [`expand`] then
//! keeps the tokens of the branches whose condition holds and drops the others, with the
//! lexer's errors inside them (SystemTap's `parser::skip_pp` ignores errors in skipped text:
//! `%( $# >= 2 %? $2 %: 10 %)` with one argument is not an error). Conditions are evaluated
//! as SystemTap's `eval_pp_conditional` (parse.cxx) does, on the system described by an
//! [`Env`]:
//!
//! - `kernel_v`, `kernel_vr`, `systemtap_v` `OP "VERSION"`: `strverscmp(3)` order, or with
//!   `==` / `!=` a glob (`fnmatch(3)`) when the string has `*`, `?` or `[`;
//! - `arch`, `runtime`, `systemtap_privilege` `==` / `!=` `"GLOB"` (privilege: exact);
//! - `guru_mode == 0|1`, `CONFIG_X OP "GLOB"|N|CONFIG_Y`;
//! - `"s1" OP "s2"`, `N1 OP N2` (`$#` and `@#` are already numbers and strings here);
//! - terms joined by `&&` (binding tighter) and `||`, no parentheses.
//!
//! The ELSE part is optional, conditionals nest, and a skipped branch's conditionals are
//! skipped whole.

use std::collections::HashMap;
use std::ffi::CString;

use crate::ast::Span;
use crate::diag::Diagnostic;
use crate::lexer::{PpMark, Token, TokenKind};

/// The SystemTap version otf's semantics follow (`systemtap_v`): the release whose tapset
/// and runtime behaviour the reference VM matches (docs/language.md).
pub const SYSTEMTAP_V: &str = "5.6";

/// What the conditions are evaluated against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `kernel_vr`: the kernel release (`uname -r`); `kernel_v` is its part before the first
    /// `-`.
    pub kernel_release: String,
    /// `arch`: the machine as SystemTap names it (`x86_64`, `arm64`, `i386`, ...).
    pub arch: String,
    /// `runtime`: `"bpf"` (otf runs scripts on eBPF, as `stap --runtime=bpf`).
    pub runtime: String,
    /// `systemtap_v`.
    pub systemtap_v: String,
    /// `systemtap_privilege`: `"stapdev"` (otf runs as root).
    pub privilege: String,
    /// The kernel's configuration (`CONFIG_X` → `y`, `m`, a number or a string), if known.
    pub config: HashMap<String, String>,
}

impl Env {
    /// The running system: `uname(2)`, and the configuration from `/boot/config-RELEASE` or
    /// `/proc/config.gz` when readable (else every `CONFIG_X` is empty, as SystemTap has it
    /// for an option that is not set).
    pub fn running() -> Env {
        // SAFETY: `utsname` is plain data; `uname` fills it and returns 0, or fails.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `u` is a valid, writable `utsname`.
        let ok = unsafe { libc::uname(&mut u) } == 0;
        let field = |f: &[libc::c_char]| -> String {
            let bytes: Vec<u8> = f
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let (release, machine) = if ok {
            (field(&u.release), field(&u.machine))
        } else {
            (String::new(), std::env::consts::ARCH.to_string())
        };
        let config = read_config(&release);
        Env {
            arch: normalize_machine(&machine),
            kernel_release: release,
            runtime: "bpf".into(),
            systemtap_v: SYSTEMTAP_V.into(),
            privilege: "stapdev".into(),
            config,
        }
    }

    /// `kernel_v`: the release up to its first `-`.
    fn kernel_v(&self) -> &str {
        self.kernel_release
            .split('-')
            .next()
            .unwrap_or(&self.kernel_release)
    }
}

/// SystemTap's `normalize_machine` (staputil.cxx): `uname -m` to the kernel's `SUBARCH`.
pub fn normalize_machine(m: &str) -> String {
    let s = match m {
        "i486" | "i586" | "i686" => "i386",
        "sun4u" => "sparc64",
        "sa110" => "arm",
        "s390x" => "s390",
        "aarch64" => "arm64",
        "riscv64" => "riscv",
        _ if m.starts_with("arm") => "arm",
        _ if m.starts_with("ppc") => "powerpc",
        _ if m.starts_with("mips") => "mips",
        _ if m.starts_with("sh2") || m.starts_with("sh3") || m.starts_with("sh4") => "sh",
        _ => m,
    };
    s.to_string()
}

/// The kernel configuration as `CONFIG_X` → value (quotes removed), from
/// `/boot/config-RELEASE` or `/proc/config.gz`; empty if neither can be read.
fn read_config(release: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/boot/config-{release}"))
        .ok()
        .or_else(|| {
            use std::io::Read;
            let f = std::fs::File::open("/proc/config.gz").ok()?;
            let mut s = String::new();
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut s)
                .ok()?;
            Some(s)
        })
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("CONFIG_"))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// `fnmatch(pattern, s, FNM_NOESCAPE) == 0`, as SystemTap calls it.
fn glob_match(pattern: &str, s: &str) -> bool {
    let (Ok(p), Ok(t)) = (CString::new(pattern), CString::new(s)) else {
        return false;
    };
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    unsafe { libc::fnmatch(p.as_ptr(), t.as_ptr(), libc::FNM_NOESCAPE) == 0 }
}

extern "C" {
    /// glibc's (and musl's) `strverscmp(3)`, which SystemTap uses for version comparisons.
    fn strverscmp(a: *const libc::c_char, b: *const libc::c_char) -> libc::c_int;
}

/// `strverscmp(a, b)` normalized to -1, 0, 1.
fn version_cmp(a: &str, b: &str) -> i32 {
    let (Ok(x), Ok(y)) = (CString::new(a), CString::new(b)) else {
        return a.cmp(b) as i32;
    };
    // SAFETY: both are valid NUL-terminated strings that outlive the call.
    unsafe { strverscmp(x.as_ptr(), y.as_ptr()) }.signum()
}

/// A term's failure: SystemTap's message and the token it blames.
type EvalError = (String, Span);

fn err<T>(msg: impl Into<String>, t: &Token) -> Result<T, EvalError> {
    Err((msg.into(), t.span))
}

/// `l op r` for an ordered type, as SystemTap's `eval_comparison`.
fn compare<T: PartialOrd>(l: T, op: &Token, r: T) -> Result<bool, EvalError> {
    Ok(match op.kind {
        TokenKind::EqEq => l == r,
        TokenKind::Ne => l != r,
        TokenKind::Lt => l < r,
        TokenKind::Le => l <= r,
        TokenKind::Gt => l > r,
        TokenKind::Ge => l >= r,
        _ => return err("expected comparison operator", op),
    })
}

/// `==` → true, `!=` → false, else SystemTap's error.
fn eq_or_ne(op: &Token) -> Result<bool, EvalError> {
    match op.kind {
        TokenKind::EqEq => Ok(true),
        TokenKind::Ne => Ok(false),
        _ => err("expected '==' or '!='", op),
    }
}

fn string_rhs(r: &Token) -> Result<&str, EvalError> {
    match &r.kind {
        TokenKind::Str(s) => Ok(s),
        _ => err("expected string literal", r),
    }
}

/// C's `strtoll(s, &end, 0)` with the whole string consumed.
fn config_number(s: &str) -> Option<i64> {
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse::<i64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// One `l op r` term (SystemTap's `eval_pp_conditional`).
fn eval_term(env: &Env, l: &Token, op: &Token, r: &Token) -> Result<bool, EvalError> {
    match &l.kind {
        TokenKind::Ident(name)
            if name == "kernel_v" || name == "kernel_vr" || name == "systemtap_v" =>
        {
            let query = string_rhs(r)?;
            let target = match name.as_str() {
                "kernel_v" => env.kernel_v(),
                "kernel_vr" => env.kernel_release.as_str(),
                _ => env.systemtap_v.as_str(),
            };
            let wildcard = query.contains(['*', '?', '[']);
            if !matches!(
                op.kind,
                TokenKind::EqEq
                    | TokenKind::Ne
                    | TokenKind::Lt
                    | TokenKind::Le
                    | TokenKind::Gt
                    | TokenKind::Ge
            ) {
                return err("expected comparison operator", op);
            }
            if wildcard {
                let want = eq_or_ne(op)
                    .or_else(|_| err("wildcard not allowed with order comparison operators", op))?;
                return Ok(glob_match(query, target) == want);
            }
            compare(version_cmp(target, query), op, 0)
        }
        TokenKind::Ident(name) if name == "systemtap_privilege" => {
            let query = string_rhs(r)?;
            Ok((env.privilege == query) == eq_or_ne(op)?)
        }
        TokenKind::Ident(name) if name == "guru_mode" => {
            let TokenKind::Int(v) = r.kind else {
                return err("expected number", r);
            };
            if v != 0 && v != 1 {
                return err("expected 0 or 1", op);
            }
            // otf has no guru mode (embedded C is refused).
            Ok((v == 0) == eq_or_ne(op)?)
        }
        TokenKind::Ident(name) if name == "arch" || name == "runtime" => {
            let query = string_rhs(r)?;
            let target = if name == "arch" {
                &env.arch
            } else {
                &env.runtime
            };
            Ok(glob_match(query, target) == eq_or_ne(op)?)
        }
        TokenKind::Ident(name) if name.starts_with("CONFIG_") => {
            let lhs = env.config.get(name).map_or("", String::as_str);
            match &r.kind {
                TokenKind::Str(q) => Ok(glob_match(q, lhs) == eq_or_ne(op)?),
                TokenKind::Int(v) => match config_number(lhs) {
                    Some(x) => compare(x, op, *v),
                    None => err("Config option value not a number", l),
                },
                TokenKind::Ident(other) if other.starts_with("CONFIG_") => {
                    let rhs = env.config.get(other).map_or("", String::as_str);
                    match (config_number(lhs), config_number(rhs)) {
                        (Some(a), Some(b)) => compare(a, op, b),
                        _ => compare(lhs, op, rhs),
                    }
                }
                _ => err(
                    "expected string, number literal or other CONFIG_... as right side operand",
                    r,
                ),
            }
        }
        TokenKind::Str(a) => match &r.kind {
            TokenKind::Str(b) => compare(a.as_str(), op, b.as_str()),
            TokenKind::Int(_) => err("expected string literal as right value", r),
            _ => not_a_condition(l),
        },
        TokenKind::Int(a) => match &r.kind {
            TokenKind::Int(b) => compare(*a, op, *b),
            TokenKind::Str(_) => err("expected number literal as right value", r),
            _ => not_a_condition(l),
        },
        _ => not_a_condition(l),
    }
}

fn not_a_condition<T>(l: &Token) -> Result<T, EvalError> {
    err(
        "expected 'arch', 'kernel_v', 'kernel_vr', 'systemtap_v', 'runtime', \
         'systemtap_privilege', 'CONFIG_...', or comparison between strings or integers",
        l,
    )
}

/// What is being done with the tokens of an open conditional.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    KeepThen,
    SkipThen,
    KeepElse,
    SkipElse,
}

fn mark(t: &Token) -> Option<PpMark> {
    match t.kind {
        TokenKind::Pp(m) => Some(m),
        _ => None,
    }
}

/// Expands the conditionals of `tokens` (ending with `Eof`) for `env` (computed only if the
/// text has one), dropping the tokens of the branches not taken and the `diags` inside them,
/// and adding SystemTap's errors for malformed conditionals.
pub fn expand(tokens: &mut Vec<Token>, diags: &mut Vec<Diagnostic>, env: &dyn Fn() -> Env) {
    if !tokens.iter().any(|t| mark(t).is_some()) {
        return;
    }
    let env = env();
    let input = std::mem::take(tokens);
    let mut out = Vec::with_capacity(input.len());
    // Byte ranges whose lexer errors are dropped (the skipped branches).
    let mut skipped: Vec<(u32, u32)> = Vec::new();
    let mut errors: Vec<Diagnostic> = Vec::new();
    // The open conditionals: their `%(` token and state.
    let mut open: Vec<(Span, State)> = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let t = &input[i];
        let state = open.last().map(|o| o.1);
        if matches!(state, Some(State::SkipThen | State::SkipElse)) {
            // Skip to this conditional's next `%:` / `%?` / `%)` at nesting 0.
            // From the mark that began the branch: the lexer makes no token of what it
            // refuses whole (`%{ %}`), so the first skipped token may come after it.
            let from = i.checked_sub(1).map_or(0, |p| input[p].span.hi);
            let mut nesting = 0usize;
            while i < input.len() {
                match (mark(&input[i]), nesting) {
                    (Some(PpMark::Open), _) => nesting += 1,
                    (Some(PpMark::Close), n) if n > 0 => nesting -= 1,
                    (Some(_), 0) => break,
                    _ => {}
                }
                if input[i].kind == TokenKind::Eof {
                    break;
                }
                i += 1;
            }
            let to = input.get(i).map_or(u32::MAX, |t| t.span.lo);
            skipped.push((from, to));
            if input.get(i).is_none_or(|t| t.kind == TokenKind::Eof) {
                if let Some((span, _)) = open.last() {
                    errors.push(Diagnostic::error(
                        "incomplete conditional at end of file",
                        *span,
                    ));
                }
                out.extend(input.get(i).cloned());
                break;
            }
            {
                // A stray `%?` in skipped text is skipped as well (SystemTap's skip_pp
                // stops at it, and scan_pp then reports it).
                handle_mark(&input[i], &mut open, &mut errors);
                i += 1;
            }
            continue;
        }
        match mark(t) {
            None => {
                if t.kind == TokenKind::Eof {
                    if let Some((span, _)) = open.last() {
                        errors.push(Diagnostic::error(
                            "incomplete conditional at end of file",
                            *span,
                        ));
                    }
                    out.push(t.clone());
                    break;
                }
                out.push(t.clone());
                i += 1;
            }
            Some(PpMark::Open) => {
                let start = t.span;
                i += 1;
                match condition(&env, &input, &mut i) {
                    Ok(v) => {
                        // `i` is past the `%?`.
                        open.push((start, if v { State::KeepThen } else { State::SkipThen }));
                    }
                    Err((msg, span)) => {
                        errors.push(Diagnostic::error(msg, span));
                        // Drop the whole conditional rather than guess a branch.
                        open.push((start, State::SkipThen));
                        skip_to_then(&input, &mut i);
                    }
                }
            }
            Some(_) => {
                handle_mark(t, &mut open, &mut errors);
                i += 1;
            }
        }
    }
    diags.retain(|d| {
        !skipped
            .iter()
            .any(|&(lo, hi)| d.span.lo >= lo && d.span.lo < hi)
    });
    diags.extend(errors);
    *tokens = out;
}

/// A `%?`, `%:` or `%)` where the tokens are kept (or ending a skipped branch).
fn handle_mark(t: &Token, open: &mut Vec<(Span, State)>, errors: &mut Vec<Diagnostic>) {
    let missing = || Diagnostic::error("incomplete conditional - missing '%('", t.span);
    match mark(t) {
        Some(PpMark::Then) => errors.push(missing()),
        Some(PpMark::Else) => match open.last_mut() {
            None => errors.push(missing()),
            Some((_, s @ (State::KeepElse | State::SkipElse))) => {
                errors.push(Diagnostic::error(
                    "invalid conditional - duplicate '%:'",
                    t.span,
                ));
                *s = State::SkipElse;
            }
            Some((_, s)) => {
                *s = if *s == State::KeepThen {
                    State::SkipElse
                } else {
                    State::KeepElse
                }
            }
        },
        Some(PpMark::Close) => {
            if open.pop().is_none() {
                errors.push(missing());
            }
        }
        Some(PpMark::Open) | None => {}
    }
}

/// After an unreadable condition: on past its `%?` (or to the end).
fn skip_to_then(input: &[Token], i: &mut usize) {
    while *i < input.len() && input[*i].kind != TokenKind::Eof {
        let m = mark(&input[*i]);
        *i += 1;
        if m == Some(PpMark::Then) {
            return;
        }
    }
}

/// The condition starting at `input[*i]`: terms `l op r` joined by `&&` and `||`, up to and
/// including the `%?` (`*i` ends past it).
fn condition(env: &Env, input: &[Token], i: &mut usize) -> Result<bool, EvalError> {
    let open = &input[i.saturating_sub(1)];
    let mut result = false;
    let mut and = true;
    loop {
        let term: Vec<&Token> = input[*i..]
            .iter()
            .take(3)
            .take_while(|t| t.kind != TokenKind::Eof && mark(t).is_none())
            .collect();
        if term.len() < 3 {
            return err("incomplete condition after '%('", open);
        }
        and &= eval_term(env, term[0], term[1], term[2])?;
        *i += 3;
        let n = input.get(*i);
        *i += 1;
        match n.map(|t| &t.kind) {
            Some(TokenKind::AndAnd) => continue,
            Some(TokenKind::OrOr) => {
                result |= and;
                and = true;
            }
            _ => {
                result |= and;
                return match n.and_then(mark) {
                    Some(PpMark::Then) => Ok(result),
                    _ => err("expected '%?' marker for conditional", open),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::lex_with_env;

    fn env() -> Env {
        Env {
            kernel_release: "6.1.0-37-amd64".into(),
            arch: "x86_64".into(),
            runtime: "bpf".into(),
            systemtap_v: SYSTEMTAP_V.into(),
            privilege: "stapdev".into(),
            config: [("CONFIG_HZ", "250"), ("CONFIG_SMP", "y")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The kept tokens as text, and the error messages.
    fn pp(text: &str, args: &[&str]) -> (String, Vec<String>) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (toks, diags) = lex_with_env(text, &args, &env);
        let kept: Vec<String> = toks
            .iter()
            .filter(|t| t.kind != TokenKind::Eof)
            .map(|t| match &t.kind {
                TokenKind::Ident(s) => s.clone(),
                TokenKind::Int(v) => v.to_string(),
                TokenKind::Str(s) => format!("{s:?}"),
                k => k.text().unwrap_or("?").to_string(),
            })
            .collect();
        (
            kept.join(" "),
            diags.into_iter().map(|d| d.message).collect(),
        )
    }

    #[test]
    fn kernel_versions_compare_as_strverscmp() {
        // kernel_v is 6.1.0 (the release before its `-`); 6.1.0 > 2.6.30 and < 6.10.
        assert_eq!(pp("%( kernel_v > \"2.6.30\" %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( kernel_v >= \"6.10\" %? a %: b %)", &[]).0, "b");
        assert_eq!(pp("%( kernel_v == \"6.1.0\" %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( kernel_vr == \"6.1.0-37-amd64\" %? a %)", &[]).0, "a");
        assert_eq!(pp("%( kernel_v == \"6.1*\" %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( kernel_v != \"6.1*\" %? a %: b %)", &[]).0, "b");
        assert_eq!(pp("%(kernel_v<\"2.6.25\" %? a %: b %)", &[]).0, "b");
        assert_eq!(pp("%( systemtap_v >= \"1.4\" %? a %: b %)", &[]).0, "a");
        assert_eq!(
            pp("%( kernel_v > \"6*\" %? a %)", &[]).1,
            ["wildcard not allowed with order comparison operators"]
        );
    }

    #[test]
    fn script_argument_counts_choose_the_branch_and_hide_missing_arguments() {
        // The examples' `%( $# >= 1 %? $1 %: 100 %)`: with no argument, `$1` is not an error.
        assert_eq!(
            pp("x = %( $# >= 1 %? $1 %: 100 %)", &[]),
            ("x = 100".into(), vec![])
        );
        assert_eq!(pp("x = %( $# >= 1 %? $1 %: 100 %)", &["7"]).0, "x = 7");
        assert_eq!(pp("%( $# == 1 || $# > 1 %? a %: b %)", &["1", "2"]).0, "a");
        assert_eq!(pp("%( @# == \"0\" %? a %: b %)", &[]).0, "a");
    }

    #[test]
    fn arch_runtime_config_and_literals() {
        assert_eq!(pp("%( arch == \"x86_64\" %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( arch != \"i?86\" %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( runtime == \"kernel\" %? a %: b %)", &[]).0, "b");
        assert_eq!(pp("%( CONFIG_SMP == \"y\" %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( CONFIG_NUMA == \"y\" %? a %: b %)", &[]).0, "b");
        assert_eq!(pp("%( CONFIG_HZ >= 100 %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( 1 < 2 && \"a\" < \"b\" %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( 1 > 2 && 1 < 2 || 3 == 3 %? a %: b %)", &[]).0, "a");
        assert_eq!(pp("%( guru_mode == 0 %? a %: b %)", &[]).0, "a");
        assert_eq!(
            pp("%( \"a\" == 1 %? a %)", &[]).1,
            ["expected string literal as right value"]
        );
        assert_eq!(
            pp("%( foo == 1 %? a %)", &[]).1,
            [
                "expected 'arch', 'kernel_v', 'kernel_vr', 'systemtap_v', 'runtime', \
              'systemtap_privilege', 'CONFIG_...', or comparison between strings or integers"
            ]
        );
    }

    #[test]
    fn nesting_and_skipped_text() {
        let s = "%( 1 == 1 %? a %( 1 == 2 %? b %: c %) %: d %( 1 == 1 %? e %) %) f";
        assert_eq!(pp(s, &[]).0, "a c f");
        let s = "%( 1 == 2 %? a %( 1 == 1 %? b %: c %) %: d %( 1 == 1 %? e %) %) f";
        assert_eq!(pp(s, &[]).0, "d e f");
        // What cannot be read in a skipped branch is no error (SystemTap's skip_pp).
        assert_eq!(
            pp("%( 1 == 2 %? %{ c %} $x %: ok %)", &[]),
            ("ok".into(), vec![])
        );
        // Adjacent strings join after the expansion.
        assert_eq!(pp("\"a\" %( 1 == 1 %? \"b\" %)", &[]).0, "\"ab\"");
    }

    #[test]
    fn malformed_conditionals_get_systemtaps_errors() {
        assert_eq!(
            pp("%( 1 == 1 %? a", &[]).1,
            ["incomplete conditional at end of file"]
        );
        assert_eq!(pp("a %)", &[]).1, ["incomplete conditional - missing '%('"]);
        assert_eq!(pp("a %?", &[]).1, ["incomplete conditional - missing '%('"]);
        assert_eq!(
            pp("%( 1 == 1 %? a %: b %: c %)", &[]).1,
            ["invalid conditional - duplicate '%:'"]
        );
        assert_eq!(
            pp("%( 1 == %? a %)", &[]).1,
            ["incomplete condition after '%('"]
        );
        assert_eq!(
            pp("%( 1 == 1 a %? b %)", &[]).1,
            ["expected '%?' marker for conditional"]
        );
        assert_eq!(
            pp("%( 1 == 1 a b %) c", &[]).1,
            [
                "expected '%?' marker for conditional",
                "incomplete conditional at end of file"
            ]
        );
        assert_eq!(
            pp("%( 1 == 2 %? a", &[]),
            (
                "".into(),
                vec!["incomplete conditional at end of file".into()]
            )
        );
    }
}
