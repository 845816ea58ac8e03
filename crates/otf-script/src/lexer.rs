//! The lexer: source text to tokens.
//!
//! [`lex`] turns the whole text into a vector of [`Token`]s ending in [`TokenKind::Eof`],
//! plus the diagnostics for what it could not read. It never stops early: an invalid character,
//! a bad escape or a malformed number is reported and lexing continues after it, so that one
//! run reports several problems.
//!
//! Integer literals are 64-bit:
//! - decimal literals must fit in `i64` (at most `9223372036854775807`). The one exception is
//!   `9223372036854775808`, which the lexer returns as [`TokenKind::IntMinMagnitude`]; the
//!   parser accepts it only directly after a unary `-` (giving `i64::MIN`) and reports
//!   "integer literal out of range" anywhere else;
//! - hexadecimal (`0x1F`) and octal (`017`) literals may use all 64 bits (up to
//!   `0xffffffffffffffff`) and are reinterpreted as `i64` in two's complement, as in
//!   SystemTap: `0xffffffffffffffff` is `-1` and `0x8000000000000000` is `i64::MIN`.
//!
//! String literals support the escapes `\n \t \r \" \\ \' \a \b \f \v \?`, octal escapes
//! `\0`..`\377` (one to three digits) and hex escapes `\xH` / `\xHH`, as long as the value
//! is ASCII (at most `0x7f`); anything else is an error. A string cannot span lines.
//! Adjacent string literals (`"a" "b"`) are one literal, as in SystemTap.
//!
//! Script arguments are substituted here, as SystemTap does (see [`lex_with_args`]): `$N` is
//! the text of argument N lexed as script text, `@N` that text as a string literal, `$#` and
//! `@#` the number of arguments as an integer and as a string. A missing argument is the
//! error "command line argument index N out of range [1-M]" at the `$N`.
//!
//! SystemTap constructs that otf does not support are refused here by name when they can be
//! recognised from the text alone: target variables (`$x`, `$$vars`, `&$x`, `$x->f`), `@`
//! operators such as `@cast(...)`, `->`, `=~` / `!~`, `@define` macros, embedded C
//! (`%{ %}`) and preprocessor conditionals (`%( %? %: %)`). Each is reported once and
//! skipped whole, and where the construct is an operand a placeholder identifier takes its
//! place, so that the parser reports no follow-on errors (nor blames a neighbouring line).

use crate::ast::Span;
use crate::diag::Diagnostic;
use std::fmt;

/// What a token is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An identifier (not a keyword).
    Ident(String),
    /// An integer literal that fits in `i64` (hex and octal ones reinterpreted, see the
    /// module documentation).
    Int(i64),
    /// The decimal literal `9223372036854775808`, valid only directly after unary `-`.
    IntMinMagnitude,
    /// A string literal, escapes resolved.
    Str(String),
    /// `@entry`.
    Entry,
    /// A statistics operator: `@count`, `@sum`, `@min`, `@max`, `@avg`, `@variance`,
    /// `@hist_log`, `@hist_linear` (the name without `@`).
    StatOp(String),
    /// `<<<` (add a value to a statistics aggregate).
    Aggregate,
    /// `global`
    Global,
    /// `function`
    Function,
    /// `probe`
    Probe,
    /// `if`
    If,
    /// `else`
    Else,
    /// `while`
    While,
    /// `for`
    For,
    /// `break`
    Break,
    /// `continue`
    Continue,
    /// `next`
    Next,
    /// `return`
    Return,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `;`
    Semi,
    /// `.`
    Dot,
    /// `?`
    Question,
    /// `:`
    Colon,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    EqEq,
    /// `!=`
    Ne,
    /// `&`
    Amp,
    /// `^`
    Caret,
    /// `|`
    Pipe,
    /// `&&`
    AndAnd,
    /// `||`
    OrOr,
    /// `!`
    Bang,
    /// `~`
    Tilde,
    /// A preprocessor mark (`%(`, `%?`, `%:`, `%)`), consumed by
    /// [`crate::preprocess::expand`] before the parser sees the tokens.
    Pp(PpMark),
    /// `=`
    Assign,
    /// `+=`
    PlusEq,
    /// `-=`
    MinusEq,
    /// `*=`
    StarEq,
    /// `/=`
    SlashEq,
    /// `%=`
    PercentEq,
    /// `<<=`
    ShlEq,
    /// `>>=`
    ShrEq,
    /// `&=`
    AmpEq,
    /// `^=`
    CaretEq,
    /// `|=`
    PipeEq,
    /// `.=`
    DotEq,
    /// `++`
    PlusPlus,
    /// `--`
    MinusMinus,
    /// The end of the text (always the last token).
    Eof,
}

/// The marks of a preprocessor conditional `%( CONDITION %? THEN %: ELSE %)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpMark {
    /// `%(`
    Open,
    /// `%?`
    Then,
    /// `%:`
    Else,
    /// `%)`
    Close,
}

impl TokenKind {
    /// The keyword for `word`, if it is one.
    pub fn keyword(word: &str) -> Option<TokenKind> {
        Some(match word {
            "global" => TokenKind::Global,
            "function" => TokenKind::Function,
            "probe" => TokenKind::Probe,
            "if" => TokenKind::If,
            "else" => TokenKind::Else,
            "while" => TokenKind::While,
            "for" => TokenKind::For,
            "break" => TokenKind::Break,
            "continue" => TokenKind::Continue,
            "next" => TokenKind::Next,
            "return" => TokenKind::Return,
            _ => return None,
        })
    }

    /// The fixed source text of keywords and punctuation; `None` for identifiers, literals and
    /// the end of file.
    pub fn text(&self) -> Option<&'static str> {
        use TokenKind::*;
        Some(match self {
            Ident(_) | Int(_) | IntMinMagnitude | Str(_) | StatOp(_) | Eof => return None,
            Entry => "@entry",
            Aggregate => "<<<",
            Global => "global",
            Function => "function",
            Probe => "probe",
            If => "if",
            Else => "else",
            While => "while",
            For => "for",
            Break => "break",
            Continue => "continue",
            Next => "next",
            Return => "return",
            LParen => "(",
            RParen => ")",
            LBrace => "{",
            RBrace => "}",
            LBracket => "[",
            RBracket => "]",
            Comma => ",",
            Semi => ";",
            Dot => ".",
            Question => "?",
            Colon => ":",
            Plus => "+",
            Minus => "-",
            Star => "*",
            Slash => "/",
            Percent => "%",
            Shl => "<<",
            Shr => ">>",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            EqEq => "==",
            Ne => "!=",
            Amp => "&",
            Caret => "^",
            Pipe => "|",
            AndAnd => "&&",
            OrOr => "||",
            Bang => "!",
            Tilde => "~",
            Pp(PpMark::Open) => "%(",
            Pp(PpMark::Then) => "%?",
            Pp(PpMark::Else) => "%:",
            Pp(PpMark::Close) => "%)",
            Assign => "=",
            PlusEq => "+=",
            MinusEq => "-=",
            StarEq => "*=",
            SlashEq => "/=",
            PercentEq => "%=",
            ShlEq => "<<=",
            ShrEq => ">>=",
            AmpEq => "&=",
            CaretEq => "^=",
            PipeEq => "|=",
            DotEq => ".=",
            PlusPlus => "++",
            MinusMinus => "--",
        })
    }

    /// `true` for the keywords (`global`, `function`, ..., `return`).
    pub fn is_keyword(&self) -> bool {
        use TokenKind::*;
        matches!(
            self,
            Global | Function | Probe | If | Else | While | For | Break | Continue | Next | Return
        )
    }
}

impl fmt::Display for TokenKind {
    /// How the token is named in messages: `` `{` ``, `` identifier `x` ``, `end of file`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKind::Ident(name) => write!(f, "identifier `{name}`"),
            TokenKind::Int(v) => write!(f, "integer `{v}`"),
            TokenKind::IntMinMagnitude => f.write_str("integer `9223372036854775808`"),
            TokenKind::Str(_) => f.write_str("a string"),
            TokenKind::StatOp(op) => write!(f, "`@{op}`"),
            TokenKind::Eof => f.write_str("end of file"),
            other if other.is_keyword() => {
                write!(f, "keyword `{}`", other.text().unwrap_or_default())
            }
            other => write!(f, "`{}`", other.text().unwrap_or_default()),
        }
    }
}

/// A token with the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// What the token is.
    pub kind: TokenKind,
    /// Its bytes in the source.
    pub span: Span,
}

/// Lexes `text` into tokens (the last one is always [`TokenKind::Eof`]) and the errors found.
///
/// The end-of-file token sits right after the last non-blank character, so that "found end
/// of file" errors point at the end of the last line rather than past a trailing newline.
pub fn lex(text: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    lex_with_args(text, &[])
}

/// Lexes `text` like [`lex`], substituting the script arguments `args` for `$1`..`$N`,
/// `@1`..`@N`, `$#` and `@#` (the tokens of a substitution all have the span of the `$N` they
/// replace), and expanding preprocessor conditionals for the running system
/// ([`crate::preprocess::Env::running`], read only if the text has a conditional).
pub fn lex_with_args(text: &str, args: &[String]) -> (Vec<Token>, Vec<Diagnostic>) {
    lex_with_env(text, args, &crate::preprocess::Env::running)
}

/// [`lex_with_args`] with the conditionals evaluated on the system `env` describes.
pub fn lex_with_env(
    text: &str,
    args: &[String],
    env: &dyn Fn() -> crate::preprocess::Env,
) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut lx = Lexer::new(text, args, false);
    lx.run();
    let end = text.trim_end().len();
    lx.tokens.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(end, end),
    });
    crate::preprocess::expand(&mut lx.tokens, &mut lx.diags, env);
    merge_adjacent_strings(&mut lx.tokens);
    (lx.tokens, lx.diags)
}

struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    diags: Vec<Diagnostic>,
    /// The script arguments.
    args: &'a [String],
    /// Lexing the text of a script argument: `$N` in it is an error, as in SystemTap.
    nested: bool,
}

/// Joins adjacent string literals into one, as SystemTap does (`"a" "b"` is `"ab"`).
fn merge_adjacent_strings(tokens: &mut Vec<Token>) {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    for t in tokens.drain(..) {
        if let (
            TokenKind::Str(s),
            Some(Token {
                kind: TokenKind::Str(prev),
                span,
            }),
        ) = (&t.kind, out.last_mut())
        {
            prev.push_str(s);
            span.hi = span.hi.max(t.span.hi);
            continue;
        }
        out.push(t);
    }
    *tokens = out;
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str, args: &'a [String], nested: bool) -> Self {
        Lexer {
            src: text.as_bytes(),
            text,
            pos: 0,
            tokens: Vec::new(),
            diags: Vec::new(),
            args,
            nested,
        }
    }

    fn peek(&self, ahead: usize) -> u8 {
        self.src.get(self.pos + ahead).copied().unwrap_or(0)
    }

    fn push(&mut self, kind: TokenKind, lo: usize) {
        self.tokens.push(Token {
            kind,
            span: Span::new(lo, self.pos),
        });
    }

    fn error(&mut self, msg: impl Into<String>, lo: usize, hi: usize) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(msg, Span::new(lo, hi)));
        self.diags.last_mut().expect("just pushed")
    }

    fn ident_end(&self, from: usize) -> usize {
        let mut end = from;
        while end < self.src.len() && is_ident_char(self.src[end]) {
            end += 1;
        }
        end
    }

    fn run(&mut self) {
        while self.pos < self.src.len() {
            let lo = self.pos;
            let b = self.src[lo];
            match b {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => self.pos += 1,
                b'#' => self.skip_line(),
                b'/' if self.peek(1) == b'/' => self.skip_line(),
                b'/' if self.peek(1) == b'*' => self.block_comment(),
                b'"' => self.string(),
                b'0'..=b'9' => self.number(),
                b if is_ident_start(b) => {
                    let end = self.ident_end(lo);
                    self.pos = end;
                    let word = &self.text[lo..end];
                    let kind = TokenKind::keyword(word)
                        .unwrap_or_else(|| TokenKind::Ident(word.to_string()));
                    self.push(kind, lo);
                }
                b'$' | b'@' if self.peek(1) == b'#' || self.peek(1).is_ascii_digit() => {
                    self.script_arg()
                }
                b'@' if &self.text[lo + 1..self.ident_end(lo + 1)] == "define" => self.define(),
                b'@' => {
                    let end = self.ident_end(lo + 1);
                    self.pos = end.max(lo + 1);
                    let word = &self.text[lo + 1..end];
                    const STATS: &[&str] = &[
                        "count",
                        "sum",
                        "min",
                        "max",
                        "avg",
                        "variance",
                        "hist_log",
                        "hist_linear",
                    ];
                    if word == "entry" {
                        self.push(TokenKind::Entry, lo);
                    } else if STATS.contains(&word) {
                        self.push(TokenKind::StatOp(word.to_string()), lo);
                    } else if word.is_empty() {
                        self.error("unexpected character `@`", lo, lo + 1).hint = Some(
                            "`@` starts `@entry(E)` or a statistics operator such as `@count(x)`"
                                .into(),
                        );
                    } else {
                        self.error(format!("`@{word}` is not supported"), lo, end)
                            .hint = Some(
                            "`@` starts `@entry(E)` or a statistics operator such as `@count(x)`"
                                .into(),
                        );
                        self.skip_operand_rest(lo);
                    }
                }
                b'$' if self.at_target_variable(lo) => self.target_variable(),
                b'&' if self.peek(1) == b'$'
                    && self.at_target_variable(lo + 1)
                    && !self.after_operand() =>
                {
                    self.target_variable()
                }
                b'%' if self.peek(1) == b'{' => self.embedded_c(),
                b'%' if matches!(self.peek(1), b'(' | b'?' | b':' | b')') => self.preprocessor(),
                b'-' if self.peek(1) == b'>' => self.arrow(),
                b'=' | b'!' if self.peek(1) == b'~' => self.regex_match(),
                _ => self.operator(),
            }
        }
    }

    // ---- script arguments -------------------------------------------------------------------

    /// `$N`, `@N`, `$#` or `@#` at `self.pos`.
    fn script_arg(&mut self) {
        let lo = self.pos;
        let quoted = self.src[lo] == b'@';
        let end = if self.peek(1) == b'#' {
            lo + 2
        } else {
            let mut end = lo + 1;
            while end < self.src.len() && self.src[end].is_ascii_digit() {
                end += 1;
            }
            end
        };
        self.pos = end;
        let shown = &self.text[lo..end];
        if self.nested {
            self.error(
                "invalid nested substitution of command line arguments",
                lo,
                end,
            )
            .hint = Some(format!(
                "the text of a script argument cannot use `{shown}`"
            ));
            self.push(TokenKind::Int(0), lo);
            return;
        }
        let count = self.args.len();
        let digits = &self.text[lo + 1..end];
        if digits == "#" {
            let kind = if quoted {
                TokenKind::Str(count.to_string())
            } else {
                TokenKind::Int(count as i64)
            };
            self.push(kind, lo);
            return;
        }
        let index = digits.parse::<usize>().unwrap_or(usize::MAX);
        let Some(arg) = index.checked_sub(1).and_then(|i| self.args.get(i)) else {
            self.error(
                format!("command line argument index {digits} out of range [1-{count}]"),
                lo,
                end,
            )
            .hint = Some(if count == 0 {
                "the script was given no arguments; pass them after `--`, e.g. \
                 `otf run SCRIPT -- ARG...`"
                    .into()
            } else {
                format!(
                    "the script was given {count} argument{} (after `--`)",
                    if count == 1 { "" } else { "s" }
                )
            });
            // A stand-in, so that the parser does not report the hole.
            self.push(
                if quoted {
                    TokenKind::Str(String::new())
                } else {
                    TokenKind::Int(0)
                },
                lo,
            );
            return;
        };
        if quoted {
            self.push(TokenKind::Str(arg.clone()), lo);
            return;
        }
        // `$N`: the argument's text lexed as script text; every token (and error) of it is
        // placed at the `$N`.
        let mut sub = Lexer::new(arg, &[], true);
        sub.run();
        let span = Span::new(lo, end);
        self.tokens
            .extend(sub.tokens.into_iter().map(|t| Token { kind: t.kind, span }));
        for mut d in sub.diags {
            d.message = format!("{} (in `{shown}`, the argument `{arg}`)", d.message);
            d.span = span;
            self.diags.push(d);
        }
    }

    // ---- unsupported SystemTap constructs -----------------------------------------------

    /// `true` if a target variable starts at `at`: `$name`, `$$name`.
    fn at_target_variable(&self, at: usize) -> bool {
        let b = |i: usize| self.src.get(at + i).copied().unwrap_or(0);
        b(0) == b'$' && (is_ident_start(b(1)) || (b(1) == b'$' && is_ident_start(b(2))))
    }

    /// `true` if the last token ends an operand (so that a following `&` is binary).
    fn after_operand(&self) -> bool {
        matches!(
            self.tokens.last().map(|t| &t.kind),
            Some(
                TokenKind::Ident(_)
                    | TokenKind::Int(_)
                    | TokenKind::IntMinMagnitude
                    | TokenKind::Str(_)
                    | TokenKind::RParen
                    | TokenKind::RBracket
            )
        )
    }

    /// End of a SystemTap name at `from` (letters, digits, `_` and `$`).
    fn stap_name_end(&self, from: usize) -> usize {
        let mut end = from;
        while end < self.src.len() && (is_ident_char(self.src[end]) || self.src[end] == b'$') {
            end += 1;
        }
        end
    }

    /// A target variable with its optional `&` and its `->field` / `[index]` suffixes, at
    /// `self.pos`: refused once, replaced by a placeholder identifier.
    fn target_variable(&mut self) {
        let lo = self.pos;
        let name_lo = if self.src[lo] == b'&' { lo + 1 } else { lo };
        let name_end = self.stap_name_end(name_lo + 1);
        self.pos = name_end;
        self.skip_member_suffixes();
        let word = self.text[name_lo..name_end].to_string();
        self.error(
            format!("target variables (`{word}`) are not supported"),
            lo,
            self.pos,
        )
        .hint = Some("use `int_arg(N)`, `long_arg(N)`, `pointer_arg(N)` or `returnval()`".into());
        self.push(TokenKind::Ident(word), lo);
    }

    /// Skips `->name` and `[ ... ]` suffixes (on the same line), as after a target variable.
    fn skip_member_suffixes(&mut self) {
        loop {
            let mut at = self.pos;
            while matches!(self.src.get(at), Some(b' ' | b'\t')) {
                at += 1;
            }
            match (self.src.get(at), self.src.get(at + 1)) {
                (Some(b'-'), Some(b'>')) => {
                    let mut name = at + 2;
                    while matches!(self.src.get(name), Some(b' ' | b'\t')) {
                        name += 1;
                    }
                    self.pos = self.stap_name_end(name);
                }
                (Some(b'['), _) => {
                    let Some(close) = self.matching(at, b'[', b']') else {
                        return;
                    };
                    self.pos = close;
                }
                _ => return,
            }
        }
    }

    /// The offset after the `close` matching the `open` at `at`, on the same line, skipping
    /// string literals; `None` if there is none.
    fn matching(&self, at: usize, open: u8, close: u8) -> Option<usize> {
        let mut level = 0usize;
        let mut i = at;
        let mut in_str = false;
        while let Some(&b) = self.src.get(i) {
            match b {
                b'\n' => return None,
                b'\\' if in_str => i += 1,
                b'"' => in_str = !in_str,
                _ if in_str => {}
                _ if b == open => level += 1,
                _ if b == close => {
                    level -= 1;
                    if level == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        None
    }

    /// After an unsupported `@word` (already reported) that started at `lo`: skips its
    /// `( ... )` operands and `->field` suffixes, and leaves a placeholder identifier.
    fn skip_operand_rest(&mut self, lo: usize) {
        let mut at = self.pos;
        while matches!(self.src.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        if self.src.get(at) == Some(&b'(') {
            if let Some(close) = self.matching(at, b'(', b')') {
                self.pos = close;
            }
        }
        self.skip_member_suffixes();
        let word = self.text[lo..self.ident_end(lo + 1)].to_string();
        self.push(TokenKind::Ident(word), lo);
    }

    /// `@define NAME(PARAMS) %( BODY %)`: refused and skipped whole.
    fn define(&mut self) {
        let lo = self.pos;
        self.pos = self.ident_end(lo + 1);
        self.error(
            "preprocessor macros (`@define`) are not supported",
            lo,
            self.pos,
        )
        .hint = Some("write the macro's text out where it is used".into());
        // The name, its parameters and the body.
        let mut at = self.pos;
        while at < self.src.len() && self.src[at].is_ascii_whitespace() {
            at += 1;
        }
        at = self.ident_end(at);
        if self.src.get(at) == Some(&b'(') {
            at = self.matching(at, b'(', b')').unwrap_or(at);
        }
        while at < self.src.len() && self.src[at].is_ascii_whitespace() {
            at += 1;
        }
        self.pos = at;
        if self.src.get(at) == Some(&b'%') && self.peek(1) == b'(' {
            self.pos += 2;
            self.skip_macro_body();
        }
    }

    /// `%(`, `%?`, `%:` or `%)` at `self.pos`: a mark for [`crate::preprocess::expand`].
    fn preprocessor(&mut self) {
        let lo = self.pos;
        let mark = match self.peek(1) {
            b'(' => PpMark::Open,
            b'?' => PpMark::Then,
            b':' => PpMark::Else,
            _ => PpMark::Close,
        };
        self.pos += 2;
        self.tokens.push(Token {
            kind: TokenKind::Pp(mark),
            span: Span::new(lo, lo + 2),
        });
    }

    /// Skips a `@define` body after its `%(`, up to and including the matching `%)`
    /// (nested `%( %)` inside it skipped whole).
    fn skip_macro_body(&mut self) {
        let mut level = 0usize;
        while self.pos < self.src.len() {
            if self.src[self.pos] == b'%' {
                match self.peek(1) {
                    b'(' => level += 1,
                    b')' if level > 0 => level -= 1,
                    b')' => {
                        self.pos += 2;
                        return;
                    }
                    _ => {
                        self.pos += 1;
                        continue;
                    }
                }
                self.pos += 2;
                continue;
            }
            self.pos += 1;
        }
    }

    /// `->` outside a target variable: refused with its member name.
    fn arrow(&mut self) {
        let lo = self.pos;
        self.pos += 2;
        self.skip_member_suffixes();
        let mut name = self.pos;
        while matches!(self.src.get(name), Some(b' ' | b'\t')) {
            name += 1;
        }
        self.pos = self.stap_name_end(name);
        self.error("member access (`->`) is not supported", lo, self.pos)
            .hint =
            Some("otf has no pointers or structures (no target variables or `@cast`)".into());
    }

    /// `=~` or `!~`: refused; an `==` / `!=` stands in so that the parser goes on.
    fn regex_match(&mut self) {
        let lo = self.pos;
        let negated = self.src[lo] == b'!';
        self.pos += 2;
        let op = if negated { "!~" } else { "=~" };
        self.error(
            format!("regular expression matching (`{op}`) is not supported"),
            lo,
            lo + 2,
        )
        .hint = Some(if negated {
            "for `!(~x)`, write `! ~x`".into()
        } else {
            "for an assignment of `~x`, write `= ~x`".into()
        });
        self.push(
            if negated {
                TokenKind::Ne
            } else {
                TokenKind::EqEq
            },
            lo,
        );
    }

    fn skip_line(&mut self) {
        while self.pos < self.src.len() && self.src[self.pos] != b'\n' {
            self.pos += 1;
        }
    }

    fn block_comment(&mut self) {
        let lo = self.pos;
        self.pos += 2;
        while self.pos < self.src.len() {
            if self.src[self.pos] == b'*' && self.peek(1) == b'/' {
                self.pos += 2;
                return;
            }
            self.pos += 1;
        }
        self.error("unterminated block comment", lo, lo + 2).hint =
            Some("close the comment with `*/`".into());
    }

    fn embedded_c(&mut self) {
        let lo = self.pos;
        self.pos += 2;
        while self.pos < self.src.len() {
            if self.src[self.pos] == b'%' && self.peek(1) == b'}' {
                self.pos += 2;
                break;
            }
            self.pos += 1;
        }
        self.pos = self.pos.min(self.src.len());
        self.error("embedded C code (`%{ ... %}`) is not supported", lo, lo + 2)
            .hint = Some("write the code in the script language (or drop it)".into());
        // As the body of `function f(...)` or `function f:long(...)`, stand in for an empty
        // body so that the function itself parses.
        let n = self.tokens.len();
        let body = match self.tokens.last().map(|t| &t.kind) {
            Some(TokenKind::RParen) => true,
            Some(TokenKind::Ident(_)) => n >= 2 && self.tokens[n - 2].kind == TokenKind::Colon,
            _ => false,
        };
        if body {
            self.tokens.push(Token {
                kind: TokenKind::LBrace,
                span: Span::new(lo, lo + 2),
            });
            self.push(TokenKind::RBrace, self.pos.saturating_sub(2).max(lo));
        }
    }

    fn number(&mut self) {
        let lo = self.pos;
        let (radix, digits_lo) = if self.src[lo] == b'0' && matches!(self.peek(1), b'x' | b'X') {
            (16, lo + 2)
        } else if self.src[lo] == b'0' {
            (8, lo + 1)
        } else {
            (10, lo)
        };
        // The literal is the longest run of alphanumerics, so that `12abc` or `09` is one
        // bad literal rather than several tokens.
        let end = self.ident_end(lo);
        self.pos = end;
        let digits = &self.text[digits_lo..end];
        if radix == 16 && digits.is_empty() {
            self.error("hexadecimal literal has no digits", lo, end);
            self.push(TokenKind::Int(0), lo);
            return;
        }
        if let Some((i, c)) = digits.char_indices().find(|(_, c)| !c.is_digit(radix)) {
            let at = digits_lo + i;
            let what = match radix {
                16 => "hexadecimal",
                8 => "octal",
                _ => "decimal",
            };
            let d = self.error(
                format!("invalid digit `{c}` in {what} literal"),
                at,
                at + c.len_utf8(),
            );
            if radix == 8 && c.is_ascii_digit() {
                d.hint = Some(
                    "a literal starting with `0` is octal; drop the leading zero for decimal"
                        .into(),
                );
            }
            self.push(TokenKind::Int(0), lo);
            return;
        }
        let value = if digits.is_empty() {
            Some(0) // a lone `0`
        } else {
            u64::from_str_radix(digits, radix).ok()
        };
        let kind = match value {
            Some(v) if radix != 10 => TokenKind::Int(v as i64),
            Some(v) if v <= i64::MAX as u64 => TokenKind::Int(v as i64),
            Some(v) if v == i64::MAX as u64 + 1 => TokenKind::IntMinMagnitude,
            _ => {
                let limit = if radix == 10 {
                    "the largest is 9223372036854775807"
                } else {
                    "the largest is 0xffffffffffffffff"
                };
                self.error("integer literal out of range", lo, end).hint =
                    Some(format!("integers are 64-bit signed; {limit}"));
                TokenKind::Int(0)
            }
        };
        self.push(kind, lo);
    }

    fn string(&mut self) {
        let lo = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                self.unterminated_string(lo);
                break;
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\n' => {
                    self.unterminated_string(lo);
                    break;
                }
                b'\\' => self.escape(&mut value),
                _ => {
                    // Copy one whole character.
                    let ch = self.text[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    value.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
        self.push(TokenKind::Str(value), lo);
    }

    fn unterminated_string(&mut self, lo: usize) {
        self.error("unterminated string literal", lo, lo + 1).hint =
            Some("close the string with `\"` on the same line (write a newline as `\\n`)".into());
    }

    fn escape(&mut self, value: &mut String) {
        let lo = self.pos;
        self.pos += 1; // the backslash
        let Some(&c) = self.src.get(self.pos) else {
            return; // reported as unterminated by the caller
        };
        let simple = match c {
            b'n' => Some('\n'),
            b't' => Some('\t'),
            b'r' => Some('\r'),
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'\'' => Some('\''),
            b'a' => Some('\x07'),
            b'b' => Some('\x08'),
            b'f' => Some('\x0c'),
            b'v' => Some('\x0b'),
            b'?' => Some('?'),
            _ => None,
        };
        if let Some(ch) = simple {
            self.pos += 1;
            value.push(ch);
            return;
        }
        let (radix, max_digits, first) = match c {
            b'0'..=b'7' => (8, 3, self.pos),
            b'x' => (16, 2, self.pos + 1),
            b'\n' => {
                // Leave the newline for the caller: the string is unterminated.
                self.error("unknown escape sequence `\\` at end of line", lo, lo + 1);
                return;
            }
            _ => {
                let ch = self.text[self.pos..].chars().next().unwrap_or('\u{fffd}');
                self.pos += ch.len_utf8();
                self.error(format!("unknown escape sequence `\\{ch}`"), lo, self.pos)
                    .hint = Some(
                    "supported escapes: \\n \\t \\r \\\" \\\\ \\a \\b \\f \\v \\? \\NNN (octal) \\xHH (hex)"
                        .into(),
                );
                return;
            }
        };
        let mut end = first;
        while end < self.src.len()
            && end - first < max_digits
            && (self.src[end] as char).is_digit(radix)
        {
            end += 1;
        }
        self.pos = end;
        if end == first {
            self.error("`\\x` escape needs hexadecimal digits", lo, end);
            return;
        }
        let v = u32::from_str_radix(&self.text[first..end], radix).unwrap_or(u32::MAX);
        match char::from_u32(v).filter(|ch| ch.is_ascii()) {
            Some(ch) => value.push(ch),
            None => {
                self.error(
                    format!("escape `{}` is out of range", &self.text[lo..end]),
                    lo,
                    end,
                )
                .hint = Some("only ASCII values (up to \\177 or \\x7f) are supported".into());
            }
        }
    }

    fn operator(&mut self) {
        use TokenKind::*;
        let lo = self.pos;
        let (a, b, c) = (self.peek(0), self.peek(1), self.peek(2));
        let (kind, len) = match (a, b, c) {
            (b'<', b'<', b'=') => (ShlEq, 3),
            (b'>', b'>', b'=') => (ShrEq, 3),
            (b'<', b'<', b'<') => (Aggregate, 3),
            (b'<', b'<', _) => (Shl, 2),
            (b'>', b'>', _) => (Shr, 2),
            (b'<', b'=', _) => (Le, 2),
            (b'>', b'=', _) => (Ge, 2),
            (b'=', b'=', _) => (EqEq, 2),
            (b'!', b'=', _) => (Ne, 2),
            (b'&', b'&', _) => (AndAnd, 2),
            (b'|', b'|', _) => (OrOr, 2),
            (b'+', b'+', _) => (PlusPlus, 2),
            (b'-', b'-', _) => (MinusMinus, 2),
            (b'+', b'=', _) => (PlusEq, 2),
            (b'-', b'=', _) => (MinusEq, 2),
            (b'*', b'=', _) => (StarEq, 2),
            (b'/', b'=', _) => (SlashEq, 2),
            (b'%', b'=', _) => (PercentEq, 2),
            (b'&', b'=', _) => (AmpEq, 2),
            (b'^', b'=', _) => (CaretEq, 2),
            (b'|', b'=', _) => (PipeEq, 2),
            (b'<', ..) => (Lt, 1),
            (b'>', ..) => (Gt, 1),
            (b'=', ..) => (Assign, 1),
            (b'!', ..) => (Bang, 1),
            (b'&', ..) => (Amp, 1),
            (b'|', ..) => (Pipe, 1),
            (b'+', ..) => (Plus, 1),
            (b'-', ..) => (Minus, 1),
            (b'*', ..) => (Star, 1),
            (b'/', ..) => (Slash, 1),
            (b'%', ..) => (Percent, 1),
            (b'^', ..) => (Caret, 1),
            (b'~', ..) => (Tilde, 1),
            (b'(', ..) => (LParen, 1),
            (b')', ..) => (RParen, 1),
            (b'{', ..) => (LBrace, 1),
            (b'}', ..) => (RBrace, 1),
            (b'[', ..) => (LBracket, 1),
            (b']', ..) => (RBracket, 1),
            (b',', ..) => (Comma, 1),
            (b';', ..) => (Semi, 1),
            (b'.', b'=', _) => (DotEq, 2),
            (b'.', ..) => (Dot, 1),
            (b'?', ..) => (Question, 1),
            (b':', ..) => (Colon, 1),
            _ => {
                let ch = self.text[lo..].chars().next().unwrap_or('\u{fffd}');
                self.pos += ch.len_utf8();
                let shown = if ch.is_control() || ch == '`' {
                    format!("{ch:?}")
                } else {
                    format!("`{ch}`")
                };
                self.error(format!("unexpected character {shown}"), lo, self.pos);
                return;
            }
        };
        self.pos += len;
        self.push(kind, lo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<TokenKind> {
        let (toks, diags) = lex(text);
        assert!(diags.is_empty(), "{diags:?}");
        toks.into_iter().map(|t| t.kind).collect()
    }

    fn errors(text: &str) -> Vec<(String, u32)> {
        lex(text)
            .1
            .into_iter()
            .map(|d| (d.message, d.span.lo))
            .collect()
    }

    #[test]
    fn numbers() {
        use TokenKind::*;
        assert_eq!(
            kinds("0 017 0x1F 0XfF 9223372036854775807 9223372036854775808"),
            vec![
                Int(0),
                Int(15),
                Int(31),
                Int(255),
                Int(i64::MAX),
                IntMinMagnitude,
                Eof
            ]
        );
        assert_eq!(
            kinds("0xffffffffffffffff 01777777777777777777777 0x8000000000000000"),
            vec![Int(-1), Int(-1), Int(i64::MIN), Eof]
        );
        assert_eq!(
            errors("x 9223372036854775809")[0].0,
            "integer literal out of range"
        );
        assert_eq!(
            errors("0x10000000000000000")[0].0,
            "integer literal out of range"
        );
        assert_eq!(
            errors("99999999999999999999999")[0].0,
            "integer literal out of range"
        );
        assert_eq!(
            errors("  09"),
            vec![("invalid digit `9` in octal literal".into(), 3)]
        );
        assert_eq!(errors("12ab")[0].0, "invalid digit `a` in decimal literal");
        assert_eq!(errors("0x")[0].0, "hexadecimal literal has no digits");
    }

    #[test]
    fn strings_and_escapes() {
        use TokenKind::*;
        assert_eq!(
            kinds(r#""a\n\t\"\\\r\0\101\x41z" "é""#),
            vec![Str("a\n\t\"\\\r\0AAzé".into()), Eof]
        );
        assert_eq!(
            errors(r#"x "a\qb""#)[0],
            ("unknown escape sequence `\\q`".into(), 4)
        );
        assert_eq!(
            errors("x \"abc\n\"")[0],
            ("unterminated string literal".into(), 2)
        );
        assert_eq!(
            errors("x \"abc")[0],
            ("unterminated string literal".into(), 2)
        );
        assert_eq!(errors(r#""\x80""#)[0].0, "escape `\\x80` is out of range");
        assert_eq!(
            errors(r#""\xg""#)[0].0,
            "`\\x` escape needs hexadecimal digits"
        );
    }

    #[test]
    fn comments_keywords_operators() {
        use TokenKind::*;
        assert_eq!(
            kinds("# c\n// d\n/* e \n */ probe function return @entry x_1"),
            vec![Probe, Function, Return, Entry, Ident("x_1".into()), Eof]
        );
        assert_eq!(
            kinds("<<= >>= << >> <= >= == != && || ++ -- += -= *= /= %= &= ^= |= < > = ! & | + - * / % ^ ~ ( ) { } [ ] , ; . ? :"),
            vec![
                ShlEq, ShrEq, Shl, Shr, Le, Ge, EqEq, Ne, AndAnd, OrOr, PlusPlus, MinusMinus,
                PlusEq, MinusEq, StarEq, SlashEq, PercentEq, AmpEq, CaretEq, PipeEq, Lt, Gt,
                Assign, Bang, Amp, Pipe, Plus, Minus, Star, Slash, Percent, Caret, Tilde,
                LParen, RParen, LBrace, RBrace, LBracket, RBracket, Comma, Semi, Dot,
                Question, Colon, Eof
            ]
        );
        assert_eq!(
            errors("a /* b"),
            vec![("unterminated block comment".into(), 2)]
        );
    }

    #[test]
    fn bad_characters_continue() {
        let (toks, diags) = lex("a ` b \u{7} c $x @cast");
        assert_eq!(diags.len(), 4, "{diags:?}");
        assert_eq!(diags[0].message, "unexpected character '`'");
        assert_eq!(diags[1].message, "unexpected character '\\u{7}'");
        assert_eq!(
            diags[2].message,
            "target variables (`$x`) are not supported"
        );
        assert_eq!(diags[3].message, "`@cast` is not supported");
        // a b c EOF, and placeholders for `$x` and `@cast`.
        let names: Vec<String> = toks.iter().map(|t| t.kind.to_string()).collect();
        assert_eq!(
            names,
            [
                "identifier `a`",
                "identifier `b`",
                "identifier `c`",
                "identifier `$x`",
                "identifier `@cast`",
                "end of file"
            ]
        );
    }

    fn args_kinds(text: &str, args: &[&str]) -> Vec<TokenKind> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (toks, diags) = lex_with_args(text, &args);
        assert!(diags.is_empty(), "{diags:?}");
        toks.into_iter().map(|t| t.kind).collect()
    }

    fn args_errors(text: &str, args: &[&str]) -> Vec<(String, u32, u32)> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        lex_with_args(text, &args)
            .1
            .into_iter()
            .map(|d| (d.message, d.span.lo, d.span.hi))
            .collect()
    }

    #[test]
    fn script_arguments_are_substituted() {
        use TokenKind::*;
        assert_eq!(
            args_kinds("$1 @2 $# @# $2", &["5", "hello"]),
            vec![
                Int(5),
                Str("hello".into()),
                Int(2),
                Str("2".into()),
                Ident("hello".into()),
                Eof
            ]
        );
        // `$N` is the argument's text lexed as script text, `@N` the text verbatim.
        assert_eq!(
            args_kinds("x = $1", &["-3 + y"]),
            vec![
                Ident("x".into()),
                Assign,
                Minus,
                Int(3),
                Plus,
                Ident("y".into()),
                Eof
            ]
        );
        assert_eq!(
            args_kinds("@1", &["a \"b\" \\n $1"]),
            vec![Str("a \"b\" \\n $1".into()), Eof]
        );
        assert_eq!(
            args_kinds("$1", &["\"sched\""]),
            vec![Str("sched".into()), Eof]
        );
        assert_eq!(args_kinds("$#", &[]), vec![Int(0), Eof]);
        // Every token of a substitution is at the `$N`.
        let (toks, _) = lex_with_args(
            "a $12",
            &(1..=12).map(|i| format!("{i} x")).collect::<Vec<_>>(),
        );
        assert_eq!(toks[1].kind, Int(12));
        assert_eq!(toks[1].span, Span::new(2, 5));
        assert_eq!(toks[2].span, Span::new(2, 5));
        // In strings and comments nothing is substituted.
        assert_eq!(
            args_kinds("\"$1 @1\" # $2", &[]),
            vec![Str("$1 @1".into()), Eof]
        );
    }

    #[test]
    fn missing_and_nested_script_arguments() {
        assert_eq!(
            args_errors("x $3", &["a"]),
            vec![(
                "command line argument index 3 out of range [1-1]".into(),
                2,
                4
            )]
        );
        assert_eq!(
            args_errors("@1 $0", &[]),
            vec![
                (
                    "command line argument index 1 out of range [1-0]".into(),
                    0,
                    2
                ),
                (
                    "command line argument index 0 out of range [1-0]".into(),
                    3,
                    5
                )
            ]
        );
        // A stand-in token replaces a missing argument.
        let (toks, _) = lex_with_args("$1", &[]);
        assert_eq!(toks[0].kind, TokenKind::Int(0));
        assert_eq!(
            args_errors("  $1", &["$2", "x"]),
            vec![(
                "invalid nested substitution of command line arguments (in `$1`, the argument `$2`)"
                    .into(),
                2,
                4
            )]
        );
        assert_eq!(
            args_errors("$1", &["12ab"])[0].0,
            "invalid digit `a` in decimal literal (in `$1`, the argument `12ab`)"
        );
        // `$name` is still a target variable.
        assert_eq!(
            args_errors("$x1", &["a"])[0].0,
            "target variables (`$x1`) are not supported"
        );
    }

    #[test]
    fn unsupported_constructs_are_refused_by_name_and_skipped() {
        use TokenKind::*;
        let lexed = |text: &str| {
            let (toks, diags) = lex(text);
            let msgs: Vec<String> = diags.into_iter().map(|d| d.message).collect();
            let kinds: Vec<TokenKind> = toks.into_iter().map(|t| t.kind).collect();
            (msgs, kinds)
        };
        let (m, k) = lexed("x = &$p->a->b[i] + 1");
        assert_eq!(m, ["target variables (`$p`) are not supported"]);
        assert_eq!(
            k,
            [
                Ident("x".into()),
                Assign,
                Ident("$p".into()),
                Plus,
                Int(1),
                Eof
            ]
        );
        // A binary `&` stays an operator.
        let (m, k) = lexed("y &$p");
        assert_eq!(m.len(), 1);
        assert_eq!(k, [Ident("y".into()), Amp, Ident("$p".into()), Eof]);
        let (m, k) = lexed("@cast(p, \"task_struct\", \"kernel\")->pid z");
        assert_eq!(m, ["`@cast` is not supported"]);
        assert_eq!(k, [Ident("@cast".into()), Ident("z".into()), Eof]);
        let (m, k) = lexed("a->b c");
        assert_eq!(m, ["member access (`->`) is not supported"]);
        assert_eq!(k, [Ident("a".into()), Ident("c".into()), Eof]);
        let (m, k) = lexed("a =~ \"x\" b !~ c");
        assert_eq!(
            m,
            [
                "regular expression matching (`=~`) is not supported",
                "regular expression matching (`!~`) is not supported"
            ]
        );
        assert_eq!(
            k,
            [
                Ident("a".into()),
                EqEq,
                Str("x".into()),
                Ident("b".into()),
                Ne,
                Ident("c".into()),
                Eof
            ]
        );
        // `@define` is skipped with its body.
        let (m, k) = lexed("@define max(a, b) %( (@a > @b ? @a : @b) %) probe");
        assert_eq!(m, ["preprocessor macros (`@define`) are not supported"]);
        assert_eq!(k, [Probe, Eof]);
        // Conditionals are expanded (crate::preprocess has their tests).
        // Embedded C as a function body leaves an empty body.
        let (m, k) = lexed("f() %{ x %} g %{ y %}");
        assert_eq!(m.len(), 2);
        assert_eq!(
            k,
            [
                Ident("f".into()),
                LParen,
                RParen,
                LBrace,
                RBrace,
                Ident("g".into()),
                Eof
            ]
        );
    }

    #[test]
    fn adjacent_strings_are_one_literal() {
        use TokenKind::*;
        let (toks, _) = lex("x \"a\" \"b\"\n \"c\" y");
        assert_eq!(toks[1].kind, Str("abc".into()));
        assert_eq!(toks[1].span, Span::new(2, 14));
        assert_eq!(toks[2].kind, Ident("y".into()));
    }

    #[test]
    fn eof_points_after_last_visible_character() {
        let (toks, _) = lex("probe {\n\n  ");
        let eof = toks.last().unwrap();
        assert_eq!(eof.kind, TokenKind::Eof);
        assert_eq!(eof.span, Span::new(7, 7));
    }
}
