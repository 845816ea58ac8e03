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
    /// `++`
    PlusPlus,
    /// `--`
    MinusMinus,
    /// The end of the text (always the last token).
    Eof,
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
    let mut lx = Lexer {
        src: text.as_bytes(),
        text,
        pos: 0,
        tokens: Vec::new(),
        diags: Vec::new(),
    };
    lx.run();
    let end = text.trim_end().len();
    lx.tokens.push(Token {
        kind: TokenKind::Eof,
        span: Span::new(end, end),
    });
    (lx.tokens, lx.diags)
}

struct Lexer<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    diags: Vec<Diagnostic>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl Lexer<'_> {
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
                    }
                }
                b'$' if is_ident_start(self.peek(1)) => {
                    let end = self.ident_end(lo + 1);
                    self.pos = end;
                    let word = &self.text[lo..end];
                    self.error(
                        format!("target variables (`{word}`) are not supported"),
                        lo,
                        self.pos,
                    )
                    .hint = Some(
                        "use `int_arg(N)`, `long_arg(N)`, `pointer_arg(N)` or `returnval()`".into(),
                    );
                }
                b'%' if self.peek(1) == b'{' => self.embedded_c(),
                _ => self.operator(),
            }
        }
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
        self.error("embedded C code (`%{ ... %}`) is not supported", lo, lo + 2);
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
            vec![Str("a\n\t\"\\\r\0AAz".into()), Str("é".into()), Eof]
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
        assert_eq!(toks.len(), 4); // a b c EOF
    }

    #[test]
    fn eof_points_after_last_visible_character() {
        let (toks, _) = lex("probe {\n\n  ");
        let eof = toks.last().unwrap();
        assert_eq!(eof.kind, TokenKind::Eof);
        assert_eq!(eof.span, Span::new(7, 7));
    }
}
