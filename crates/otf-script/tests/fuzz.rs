//! Robustness of the front end: whatever the input, it returns diagnostics and never panics,
//! overflows the stack or loops forever.
//!
//! Over 100,000 generated inputs in total (random token soups, random bytes and text, and
//! mutations of valid scripts), plus deterministic deep-nesting inputs.

use otf_script::diag::{has_errors, render_all, Diagnostic, SourceFile};
use proptest::prelude::*;
use std::time::Instant;

/// The function under test: the whole front end on `text`. Returns the diagnostics after
/// checking that each one points inside the text and renders.
fn front_end(text: &str) -> Vec<Diagnostic> {
    let file = SourceFile::new("fuzz.stp", text);
    let diags = otf_script::check_source(&file);
    for d in &diags {
        assert!(d.span.lo <= d.span.hi, "{d:?}");
        assert!(d.span.hi as usize <= text.len(), "{d:?}");
        assert!(!d.message.is_empty());
    }
    // Rendering every diagnostic of every case would dominate the run time: render the first
    // few (they cover every kind of span: empty, multi-line, at the end of the text).
    let shown = &diags[..diags.len().min(3)];
    let rendered = render_all(shown, &file);
    let locations = rendered
        .lines()
        .filter(|l| l.trim_start().starts_with("--> fuzz.stp:"));
    assert_eq!(locations.count(), shown.len());
    diags
}

/// Valid scripts covering the whole grammar; the seeds of the mutation tests.
const CORPUS: &[&str] = &[
    "global enabled = 0, toggles = 0, hit = 0\n\
     probe timer.us(100000) if (enabled) { if (hit) next; hit = 1; println(\"hit\") }\n\
     probe timer.us(500000) {\n  toggles++; hit = 0\n  if (toggles > 5) exit()\n  \
     else { println(\"toggling\")\n enabled = enabled ? 0 : (randint(2) == 0 ? -1 - randint(10000) : 1 + randint(10000)) } }\n\
     probe timer.s(360) { println(\"timed out\"); exit() }\n",
    "global state = 1, toggles = 0\n\
     probe kernel.function(\"vfs_read\").call if (state > 0) {\n  if (state == 3) { println(\"hit\"); state++ } else if (state == 1) state++ }\n\
     probe kernel.function(\"vfs_read\").return if (state > 0) {\n  if (state != @entry(state)) next\n  \
     if (state == 4) { println(\"rethit\"); state++ } else if (state == 2) state++ }\n\
     probe timer.us(500000) {\n  if (state != 0 && state != 5) next\n  toggles++\n  \
     if (toggles > 5) exit() else { println(\"toggling\"); state = !state } }\n",
    "# comment\n// another\n/* block */\nglobal a, b = 0x10, c = -9223372036854775808, d = 017\n\
     function f(x, y) { for (i = 0; i < x; i++) { y += i; if (y > 100) break; else continue } return y }\n\
     function g() { while (1) { return f(1, 2) } }\n\
     probe process(\"/bin/ls\").function(\"main\").return?, kernel.function(\"vfs_read\").return if (a || b && c) {\n\
       printf(\"%d %s %-5x\\n\", returnval(), execname(), ~a ^ b | c & d << 2 >> 1)\n\
       a = b = c; a -= 1; a *= 2; a /= 3; a %= 4; a <<= 1; a >>= 1; a &= 7; a |= 8; a ^= 9\n\
       --a; a--; ++b; b++; p = 1; q = 2; r = 3; a = -b + +c * !d % (p - q) / r + g() + @entry(a)\n\
       for (;;) { next } ; ; {}\n}\n",
    "global n\nprobe begin { println(\"start\\t\\\"q\\\"\\\\\") }\nprobe end { printf(\"%d\\n\", gettimeofday_ms()) }\n\
     probe kernel.trace(\"sched:sched_process_*\") { n <= 3 ? x++ : y-- }\n",
];

/// Token spellings for the token-soup generator: valid, invalid and unsupported pieces.
const TOKENS: &[&str] = &[
    "global",
    "function",
    "probe",
    "if",
    "else",
    "while",
    "for",
    "break",
    "continue",
    "next",
    "return",
    "@entry",
    "@count",
    "x",
    "y",
    "state",
    "timer",
    "kernel",
    "process",
    "begin",
    "end",
    "ms",
    "us",
    "profile",
    "trace",
    "call",
    "0",
    "1",
    "42",
    "0x7f",
    "017",
    "08",
    "0x",
    "9223372036854775807",
    "9223372036854775808",
    "99999999999999999999",
    "\"s\"",
    "\"a\\n\"",
    "\"bad\\q\"",
    "\"open",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ";",
    ".",
    "?",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "<<",
    ">>",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "&",
    "^",
    "|",
    "&&",
    "||",
    "!",
    "~",
    "=",
    "+=",
    "-=",
    "*=",
    "/=",
    "%=",
    "<<=",
    ">>=",
    "&=",
    "^=",
    "|=",
    "++",
    "--",
    "<<<",
    "$v",
    "#c\n",
    "/*",
    "*/",
    "//c\n",
    "\n",
    "%{",
    "%}",
    "`",
    "é",
    "foreach",
    "delete",
    "try",
    "do",
];

/// A small deterministic generator: each proptest case draws one `u64` seed and builds its
/// input from it, which is much faster in a debug build than composing proptest strategies
/// per byte (and a failing seed is still recorded and replayed by proptest).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// xorshift64*
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Up to 60 tokens from [`TOKENS`], with or without spaces between them.
fn token_soup(rng: &mut Rng) -> String {
    let n = rng.below(61);
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(TOKENS[rng.below(TOKENS.len())]);
        if rng.below(2) == 0 {
            s.push(' ');
        }
    }
    s
}

/// Up to 200 random bytes, as text (invalid UTF-8 replaced).
fn random_bytes(rng: &mut Rng) -> String {
    let n = rng.below(201);
    let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Up to 200 printable ASCII characters, tabs and newlines.
fn random_text(rng: &mut Rng) -> String {
    let n = rng.below(201);
    (0..n)
        .map(|_| match rng.below(100) {
            0..=4 => '\n',
            5 => '\t',
            _ => (b' ' + rng.below(95) as u8) as char,
        })
        .collect()
}

/// A corpus script with one to four mutations: byte flips, deletions, duplications, splices
/// of another corpus script, and inserted tokens.
fn mutated(rng: &mut Rng) -> String {
    let mut b = CORPUS[rng.below(CORPUS.len())].as_bytes().to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(5) {
            0 => {
                if at < b.len() {
                    b[at] ^= 1 + rng.below(255) as u8;
                }
            }
            1 => {
                let end = (at + rng.below(40)).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(40)).min(b.len());
                let piece = b[at..end].to_vec();
                b.splice(at..at, piece);
            }
            3 => {
                let o = CORPUS[rng.below(CORPUS.len())].as_bytes();
                let from = rng.below(o.len());
                let piece = &o[from..(from + rng.below(80)).min(o.len())];
                b.splice(at..at, piece.iter().copied());
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// Case counts: 30,000 + 15,000 + 20,000 + 15,000 + 25,000 = 105,000.
proptest! {
    #![proptest_config(config(30_000))]
    #[test]
    fn token_soups_never_panic(seed in any::<u64>()) {
        front_end(&token_soup(&mut Rng::new(seed)));
    }
}

proptest! {
    #![proptest_config(config(15_000))]
    #[test]
    fn probe_body_soups_never_panic(seed in any::<u64>()) {
        // A probe header around the soup, so that the statement and expression grammar is
        // reached more often.
        front_end(&format!("probe begin {{ {} }}", token_soup(&mut Rng::new(seed))));
    }
}

proptest! {
    #![proptest_config(config(20_000))]
    #[test]
    fn random_bytes_never_panic(seed in any::<u64>()) {
        front_end(&random_bytes(&mut Rng::new(seed)));
    }
}

proptest! {
    #![proptest_config(config(15_000))]
    #[test]
    fn random_text_never_panics(seed in any::<u64>()) {
        front_end(&random_text(&mut Rng::new(seed)));
    }
}

proptest! {
    #![proptest_config(config(25_000))]
    #[test]
    fn mutated_scripts_never_panic(seed in any::<u64>()) {
        front_end(&mutated(&mut Rng::new(seed)));
    }
}

#[test]
fn corpus_is_valid() {
    for text in CORPUS {
        assert!(parser_diags(text).is_empty(), "{text}");
        let diags = front_end(text);
        assert!(!has_errors(&diags), "{text}\n{diags:#?}");
    }
}

// ---- deterministic deep nesting -----------------------------------------------------------

const DEEP: usize = 20_000;

/// Runs the front end on `text`, which must be rejected quickly with the nesting error.
fn assert_too_deep(what: &str, text: &str) {
    let t = Instant::now();
    let diags = front_end(text);
    let elapsed = t.elapsed();
    assert!(has_errors(&diags), "{what}: no error");
    assert!(
        diags
            .iter()
            .any(|d| d.message == "nesting too deep (limit 200)"),
        "{what}: {diags:#?}"
    );
    // The nesting error unwinds without an error per level.
    assert!(diags.len() <= 3, "{what}: {} diagnostics", diags.len());
    assert!(elapsed.as_secs() < 2, "{what}: took {elapsed:?}");
}

/// The parser alone on `text` (these tests are about syntax and nesting: the later passes
/// may refuse the script for other reasons, e.g. its size).
fn parser_diags(text: &str) -> Vec<Diagnostic> {
    otf_script::parser::parse(&SourceFile::new("deep.stp", text)).diags
}

/// Runs the parser on `text`, which must be accepted; then the whole front end, which must
/// not crash.
fn assert_accepted(what: &str, text: &str) {
    let diags = parser_diags(text);
    assert!(diags.is_empty(), "{what}: {diags:#?}");
    front_end(text);
}

fn wrap(body: &str) -> String {
    format!("global a, b\nfunction f(x) {{ return x }}\nprobe begin {{ {body} }}\nprobe end {{ a = 1 }}")
}

#[test]
fn deep_parentheses() {
    let text = wrap(&format!("a = {}1{}", "(".repeat(DEEP), ")".repeat(DEEP)));
    assert_too_deep("parens", &text);
    let text = wrap(&format!("a = {}", "(".repeat(DEEP)));
    assert_too_deep("unclosed parens", &text);
    let text = wrap(&format!("a = {}1{}", "f(".repeat(DEEP), ")".repeat(DEEP)));
    assert_too_deep("nested calls", &text);
    let text = wrap(&format!(
        "a = {}1{}",
        "@entry(".repeat(DEEP),
        ")".repeat(DEEP)
    ));
    assert_too_deep("nested @entry", &text);
}

#[test]
fn deep_blocks() {
    let text = wrap(&format!("{}a = 1{}", "{".repeat(DEEP), "}".repeat(DEEP)));
    assert_too_deep("braces", &text);
    let text = format!("probe begin {}", "{".repeat(DEEP));
    assert_too_deep("unclosed braces", &text);
    let text = wrap(&"while (a) ".repeat(DEEP));
    assert_too_deep("while chain", &text);
    let text = wrap(&format!("{}a = 1", "for (;;) ".repeat(DEEP)));
    assert_too_deep("for chain", &text);
}

#[test]
fn deep_unary_prefixes() {
    for op in ["!", "-", "~", "+", "- ", "!-~+"] {
        let text = wrap(&format!("a = {}1", op.repeat(DEEP)));
        assert_too_deep(op, &text);
    }
    let text = wrap(&format!("{}a", "++".repeat(DEEP)));
    assert_too_deep("++", &text);
}

#[test]
fn deep_if_chains() {
    let text = wrap(&format!("{}a = 1", "if (a) ".repeat(DEEP)));
    assert_too_deep("nested if", &text);
    let text = wrap(&format!("{}a = 1", "if (a) a = 1 else ".repeat(DEEP)));
    assert_too_deep("else-if chain", &text);
}

#[test]
fn deep_right_associative_chains() {
    let text = wrap(&format!("{}1", "a = ".repeat(DEEP)));
    assert_too_deep("assignment chain", &text);
    let text = wrap(&format!("a = {}1", "a ? 1 : ".repeat(DEEP)));
    assert_too_deep("ternary chain", &text);
    let text = wrap(&format!(
        "a = {}1{}",
        "a ? (".repeat(DEEP),
        ") : 1".repeat(DEEP)
    ));
    assert_too_deep("ternary nested in then", &text);
}

#[test]
fn long_left_associative_chains() {
    // 100,000 terms: parsed by a loop; the left spine of the tree counts as nesting, so the
    // chain is refused (a tree that deep would overflow the stack of every later pass).
    let terms = 100_000;
    for op in ["+", "*", "||", "<", "-", "=="] {
        let chain = vec!["1"; terms].join(op);
        let t = Instant::now();
        assert_too_deep(op, &wrap(&format!("a = {chain}")));
        assert!(t.elapsed().as_secs() < 2);
    }
    // Statements in sequence are not nesting: 100,000 statements parse fine.
    assert_accepted("many statements", &wrap(&"a = a + 1; ".repeat(100_000)));
    // Many separate top-level items too.
    assert_accepted("many probes", &"probe begin { a++ }\n".repeat(20_000));
}

#[test]
fn nesting_just_under_the_limit_is_accepted() {
    // 190 levels of every kind parse fine on the default 2 MiB test thread stack.
    let n = 190;
    assert_accepted(
        "parens",
        &wrap(&format!("a = {}1{}", "(".repeat(n), ")".repeat(n))),
    );
    assert_accepted(
        "braces",
        &wrap(&format!("{}a = 1{}", "{".repeat(n), "}".repeat(n))),
    );
    assert_accepted(
        "if chain",
        &wrap(&format!("{}a = 1", "if (a) a = 1 else ".repeat(n))),
    );
    assert_accepted("nested if", &wrap(&format!("{}a = 1", "if (a) ".repeat(n))));
    assert_accepted("unary", &wrap(&format!("a = {}1", "- ".repeat(n))));
    assert_accepted("assign chain", &wrap(&format!("{}1", "a = ".repeat(n))));
    assert_accepted(
        "left chain",
        &wrap(&format!("a = {}", vec!["1"; n].join("+"))),
    );
    assert_accepted(
        "calls",
        &wrap(&format!("a = {}1{}", "f(".repeat(n), ")".repeat(n))),
    );
    assert_accepted("ternary", &wrap(&format!("a = {}1", "a ? 1 : ".repeat(n))));
    // Mixed: blocks, ifs and parentheses sharing one limit.
    let mixed = format!(
        "{}a = {}1{}{}",
        "{ if (a) ".repeat(n / 4),
        "(".repeat(n / 4),
        ")".repeat(n / 4),
        "}".repeat(n / 4)
    );
    assert_accepted("mixed", &wrap(&mixed));
}

#[test]
fn deepest_accepted_nesting_fits_in_a_small_stack() {
    // The parser's frames are small enough that the deepest accepted script needs well under
    // the 2 MiB of a test thread (about 600 KiB in a debug build): check with half of it.
    let n = 199;
    let texts = vec![
        wrap(&format!("a = {}1{}", "(".repeat(n - 3), ")".repeat(n - 3))),
        wrap(&format!("{}a = 1{}", "{".repeat(n - 2), "}".repeat(n - 2))),
        wrap(&format!("{}a = 1", "if (a) a = 1 else ".repeat(n - 2))),
        wrap(&format!("a = {}1{}", "f(".repeat(n - 3), ")".repeat(n - 3))),
    ];
    let handle = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            for text in &texts {
                assert!(parser_diags(text).is_empty(), "{}", &text[..60]);
            }
        })
        .expect("spawn");
    handle
        .join()
        .expect("parsing at the nesting limit overflowed a 1 MiB stack");
}
