//! The parser: tokens to the syntax tree in [`crate::ast`].
//!
//! [`parse`] never fails and never panics: it returns the tree it could build together with
//! every diagnostic (lexical and syntactic) sorted by position. A script is valid only if
//! [`crate::diag::has_errors`] is false for them. After an error the parser synchronises at
//! `;`, `}` and the top-level keywords, so one run reports several errors (at most
//! [`MAX_ERRORS`]).
//!
//! Nesting is capped at [`MAX_DEPTH`] levels (statements, blocks, parentheses, operators:
//! every level of the resulting tree counts, including the left-leaning spine of a long
//! `a + b + c + ...` chain), so that neither this parser nor the later recursive passes can
//! overflow the stack. Unary prefix chains and left-associative operator chains are parsed
//! with loops, not recursion.
//!
//! Two details of the tree: a parenthesised expression keeps its inner node (with the span
//! widened to the parentheses), and `-9223372036854775808` (the decimal literal directly
//! under unary minus) becomes the single literal `ExprKind::Int(i64::MIN)`; all other
//! negations stay `Unary { op: Neg, .. }`.

use crate::ast::*;
use crate::diag::{Diagnostic, SourceFile};
use crate::lexer::{lex_with_args, Token, TokenKind};

/// The deepest nesting accepted (statements, blocks and expression operators together).
pub const MAX_DEPTH: usize = 200;

/// After this many errors the parser stops reporting and gives up on the rest of the file.
pub const MAX_ERRORS: usize = 50;

/// The result of [`parse`]: the tree (possibly partial when there are errors) and the
/// diagnostics, sorted by position.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// The syntax tree. Only meaningful when `diags` holds no error.
    pub script: Script,
    /// Lexical and syntax errors, in source order.
    pub diags: Vec<Diagnostic>,
}

impl Parsed {
    /// `true` if any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        crate::diag::has_errors(&self.diags)
    }
}

/// Parses a whole script.
pub fn parse(file: &SourceFile) -> Parsed {
    let (toks, lex_diags) = lex_with_args(file.text(), file.args());
    let lexed_at: Vec<u32> = lex_diags.iter().map(|d| d.span.lo).collect();
    let mut p = Parser {
        file,
        toks,
        pos: 0,
        diags: Vec::new(),
        depth: 0,
        bail: false,
        last_err_pos: usize::MAX,
        script: Script::default(),
        wildcards: false,
    };
    p.script_items();
    let mut diags = lex_diags;
    // A construct the lexer refused is not blamed twice.
    p.diags.retain(|d| !lexed_at.contains(&d.span.lo));
    diags.append(&mut p.diags);
    diags.sort_by_key(|d| d.span.lo);
    if diags.len() > MAX_ERRORS {
        // Lexical errors are not capped by the parser: keep the first ones only.
        diags.retain(|d| !d.message.starts_with("too many errors"));
        diags.truncate(MAX_ERRORS);
        let span = diags.last().map(|d| d.span).unwrap_or_default();
        diags.push(Diagnostic::error(
            format!("too many errors ({MAX_ERRORS}); giving up on the rest of the script"),
            span,
        ));
    }
    Parsed {
        script: p.script,
        diags,
    }
}

/// Parses one probe point written alone, as `otf list` takes its pattern:
/// `process("/bin/ls").function("m*").return`. The grammar is the script's (components
/// `NAME` or `NAME(LITERAL)` separated by `.`), except that a component may also be the
/// wildcard `*` (`timer.*`). Nothing may follow the point. Returns the first error.
pub fn parse_point_pattern(text: &str) -> Result<ProbePoint, Diagnostic> {
    let file = SourceFile::new("<pattern>", text);
    let (toks, mut lex_diags) = lex_with_args(text, &[]);
    if let Some(i) = lex_diags.iter().position(Diagnostic::is_error) {
        return Err(lex_diags.swap_remove(i));
    }
    let mut p = Parser {
        file: &file,
        toks,
        pos: 0,
        diags: Vec::new(),
        depth: 0,
        bail: false,
        last_err_pos: usize::MAX,
        script: Script::default(),
        wildcards: true,
    };
    let point = p.probe_point();
    if point.is_ok() && !p.at(&TokenKind::Eof) {
        let msg = format!("expected the end of the probe point, found {}", p.peek());
        let _ = p.error_here(msg);
    }
    match (point, p.diags.into_iter().next()) {
        (Ok(point), None) => Ok(point),
        (_, Some(d)) => Err(d),
        (Err(Fail), None) => Err(Diagnostic::error(
            "cannot parse the probe point",
            Span::default(),
        )),
    }
}

/// An error that has already been reported.
#[derive(Debug)]
struct Fail;

type PResult<T> = Result<T, Fail>;

struct Parser<'f> {
    file: &'f SourceFile,
    toks: Vec<Token>,
    pos: usize,
    diags: Vec<Diagnostic>,
    /// Current nesting depth (see [`MAX_DEPTH`]).
    depth: usize,
    /// Set when nesting got too deep: unwind to the top level without further reports.
    bail: bool,
    /// Token index of the last error, to report only one error per token.
    last_err_pos: usize,
    script: Script,
    /// Whether a probe point component may be the wildcard `*` ([`parse_point_pattern`]).
    wildcards: bool,
}

fn binop(kind: &TokenKind) -> Option<(BinOp, u8)> {
    use TokenKind as T;
    Some(match kind {
        T::OrOr => (BinOp::Or, 1),
        T::AndAnd => (BinOp::And, 2),
        T::Pipe => (BinOp::BitOr, 4),
        T::Caret => (BinOp::BitXor, 5),
        T::Amp => (BinOp::BitAnd, 6),
        T::EqEq => (BinOp::Eq, 7),
        T::Ne => (BinOp::Ne, 7),
        T::Lt => (BinOp::Lt, 8),
        T::Le => (BinOp::Le, 8),
        T::Gt => (BinOp::Gt, 8),
        T::Ge => (BinOp::Ge, 8),
        T::Shl => (BinOp::Shl, 9),
        T::Shr => (BinOp::Shr, 9),
        T::Dot => (BinOp::Concat, 10),
        T::Plus => (BinOp::Add, 11),
        T::Minus => (BinOp::Sub, 11),
        T::Star => (BinOp::Mul, 12),
        T::Slash => (BinOp::Div, 12),
        T::Percent => (BinOp::Mod, 12),
        _ => return None,
    })
}

/// The precedence of `k in a`: looser than `|`, tighter than `&&` (as in SystemTap).
const IN_PREC: u8 = 3;

fn assign_op(kind: &TokenKind) -> Option<Option<BinOp>> {
    use TokenKind as T;
    Some(Some(match kind {
        T::Assign => return Some(None),
        T::PlusEq => BinOp::Add,
        T::MinusEq => BinOp::Sub,
        T::StarEq => BinOp::Mul,
        T::SlashEq => BinOp::Div,
        T::PercentEq => BinOp::Mod,
        T::ShlEq => BinOp::Shl,
        T::ShrEq => BinOp::Shr,
        T::AmpEq => BinOp::BitAnd,
        T::CaretEq => BinOp::BitXor,
        T::PipeEq => BinOp::BitOr,
        T::DotEq => BinOp::Concat,
        _ => return None,
    }))
}

fn starts_expr(kind: &TokenKind) -> bool {
    use TokenKind as T;
    matches!(
        kind,
        T::Ident(_)
            | T::Int(_)
            | T::IntMinMagnitude
            | T::Str(_)
            | T::Entry
            | T::StatOp(_)
            | T::LBracket
            | T::LParen
            | T::Minus
            | T::Plus
            | T::Bang
            | T::Tilde
            | T::PlusPlus
            | T::MinusMinus
    )
}

/// SystemTap keywords that otf does not support; refused by name where a statement starts.
const UNSUPPORTED_STATEMENTS: &[(&str, &str)] = &[
    ("try", "`try`/`catch` is not supported"),
    ("catch", "`try`/`catch` is not supported"),
    ("do", "`do ... while` is not supported; use `while (E) S`"),
];

impl Parser<'_> {
    // ---- token access -------------------------------------------------------------------

    fn peek(&self) -> &TokenKind {
        &self.toks[self.pos].kind
    }

    fn peek_at(&self, ahead: usize) -> &TokenKind {
        let i = (self.pos + ahead).min(self.toks.len() - 1);
        &self.toks[i].kind
    }

    fn span(&self) -> Span {
        self.toks[self.pos].span
    }

    fn at(&self, kind: &TokenKind) -> bool {
        self.peek() == kind
    }

    /// Consumes the current token (never moves past the end-of-file token).
    fn bump(&mut self) -> Token {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if self.at(kind) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// End of the last consumed token.
    fn prev_end(&self) -> u32 {
        if self.pos == 0 {
            0
        } else {
            self.toks[self.pos - 1].span.hi
        }
    }

    fn span_from(&self, lo: u32) -> Span {
        Span {
            lo,
            hi: self.prev_end().max(lo),
        }
    }

    /// `true` at a `probe`, `global` or `function` that starts a top-level item (a
    /// `function` right after `.` is a probe point component).
    fn at_top_level_keyword(&self) -> bool {
        match self.peek() {
            TokenKind::Probe | TokenKind::Global => true,
            TokenKind::Function => self.pos == 0 || self.toks[self.pos - 1].kind != TokenKind::Dot,
            _ => false,
        }
    }

    // ---- errors ---------------------------------------------------------------------------

    /// Reports an error at `span` unless one was already reported at this token, or the
    /// parser is unwinding, or there were too many errors.
    fn report(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) -> Fail {
        if self.bail || self.last_err_pos == self.pos {
            return Fail;
        }
        self.last_err_pos = self.pos;
        let mut d = Diagnostic::error(msg, span);
        d.hint = hint;
        self.diags.push(d);
        if self.diags.len() >= MAX_ERRORS {
            self.diags.push(Diagnostic::error(
                format!("too many errors ({MAX_ERRORS}); giving up on the rest of the script"),
                span,
            ));
            self.bail = true;
            self.pos = self.toks.len() - 1;
        }
        Fail
    }

    /// Reports an error at the current token.
    fn error_here(&mut self, msg: impl Into<String>) -> Fail {
        let span = self.span();
        self.report(span, msg, None)
    }

    fn error_here_hint(&mut self, msg: impl Into<String>, hint: impl Into<String>) -> Fail {
        let span = self.span();
        self.report(span, msg, Some(hint.into()))
    }

    /// Consumes `kind` or reports "expected `kind` WHAT, found X".
    fn expect(&mut self, kind: TokenKind, what: &str) -> PResult<Span> {
        if self.at(&kind) {
            return Ok(self.bump().span);
        }
        let msg = format!(
            "expected `{}`{}{what}, found {}",
            kind.text().unwrap_or_default(),
            if what.is_empty() { "" } else { " " },
            self.peek()
        );
        Err(self.error_here(msg))
    }

    /// Enters one nesting level, or reports that the nesting is too deep and starts
    /// unwinding to the top level.
    fn enter(&mut self) -> PResult<()> {
        if self.bail {
            return Err(Fail);
        }
        if self.depth >= MAX_DEPTH {
            let f = self.error_here_hint(
                format!("nesting too deep (limit {MAX_DEPTH})"),
                "split the expression or block into smaller pieces (e.g. with local variables)",
            );
            self.bail = true;
            return Err(f);
        }
        self.depth += 1;
        Ok(())
    }

    // ---- synchronisation ------------------------------------------------------------------

    /// Skips to the next top-level keyword (or the end).
    fn sync_top_level(&mut self) {
        while !self.at(&TokenKind::Eof) && !self.at_top_level_keyword() {
            self.bump();
        }
    }

    /// Skips the rest of a broken statement that started at token `stmt_start`: up to and
    /// including `;`, or up to `}`, a statement keyword, a top-level keyword or the first
    /// token of a new line (statements need no `;`, so a line break is a good guess at a
    /// statement boundary). Balanced `{ }` are skipped whole.
    fn sync_statement(&mut self, stmt_start: usize) {
        let sync_start = self.pos;
        loop {
            match self.peek() {
                TokenKind::Eof | TokenKind::RBrace => return,
                TokenKind::Semi => {
                    self.bump();
                    return;
                }
                TokenKind::If
                | TokenKind::While
                | TokenKind::For
                | TokenKind::Return
                | TokenKind::Break
                | TokenKind::Continue
                | TokenKind::Next
                    if self.pos != stmt_start =>
                {
                    return
                }
                _ if self.at_top_level_keyword() => return,
                TokenKind::LBrace => self.skip_braces(),
                _ if self.pos != sync_start && self.pos != stmt_start && self.newline_before() => {
                    return
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// Skips from `{` to its matching `}` (or the end of file / a top-level keyword).
    fn skip_braces(&mut self) {
        let mut level = 0usize;
        loop {
            match self.peek() {
                TokenKind::Eof => return,
                TokenKind::LBrace => level += 1,
                TokenKind::RBrace => {
                    level -= 1;
                    if level == 0 {
                        self.bump();
                        return;
                    }
                }
                _ if self.at_top_level_keyword() => return,
                _ => {}
            }
            self.bump();
        }
    }

    // ---- top level ------------------------------------------------------------------------

    fn script_items(&mut self) {
        while !self.at(&TokenKind::Eof) {
            let start = self.pos;
            self.depth = 0;
            let r = match self.peek() {
                TokenKind::Global => self.global(),
                TokenKind::Function => self.function(),
                TokenKind::Probe => self.probe(),
                TokenKind::Semi => {
                    self.bump();
                    Ok(())
                }
                TokenKind::Ident(w) if w == "private" => {
                    let f = self.error_here_hint(
                        "`private` is not supported",
                        "remove it: an otf script is one file, its globals and functions are its own",
                    );
                    self.bump();
                    if matches!(self.peek(), TokenKind::Global | TokenKind::Function) {
                        continue;
                    }
                    Err(f)
                }
                other => {
                    let hint = match other {
                        TokenKind::Ident(_) | TokenKind::LBrace | TokenKind::If => {
                            "statements must be inside a `probe` or `function` body"
                        }
                        _ => "a script is a list of `global`, `function` and `probe` items",
                    };
                    let msg = format!("expected `probe`, `global` or `function`, found {other}");
                    Err(self.error_here_hint(msg, hint))
                }
            };
            if r.is_err() {
                self.bail = false;
                if self.pos == start {
                    self.bump();
                }
                self.sync_top_level();
            }
        }
    }

    fn ident(&mut self, what: &str) -> PResult<Ident> {
        if let TokenKind::Ident(name) = self.peek() {
            let name = name.clone();
            let span = self.bump().span;
            return Ok(Ident { name, span });
        }
        let msg = format!("expected {what}, found {}", self.peek());
        let hint = self
            .peek()
            .is_keyword()
            .then(|| format!("`{}` is a keyword", self.peek().text().unwrap_or_default()));
        let span = self.span();
        Err(self.report(span, msg, hint))
    }

    /// `global NAME [= E] [, NAME [= E]]... [;]`
    fn global(&mut self) -> PResult<()> {
        self.bump();
        loop {
            let name = self.ident("a variable name after `global`")?;
            let mut wrap = self.eat(&TokenKind::Percent);
            let size = if self.eat(&TokenKind::LBracket) {
                let e = self.expr(true)?;
                self.expect(TokenKind::RBracket, "to close the array size")?;
                Some(e)
            } else {
                None
            };
            wrap |= self.eat(&TokenKind::Percent);
            let init = if self.eat(&TokenKind::Assign) {
                Some(self.expr(true)?)
            } else {
                None
            };
            let span = self.span_from(name.span.lo);
            self.script.globals.push(Global {
                name,
                init,
                size,
                wrap,
                span,
            });
            if !self.eat(&TokenKind::Comma) {
                break;
            }
        }
        self.eat(&TokenKind::Semi);
        Ok(())
    }

    /// An optional `:long` / `:string` type annotation.
    fn type_annotation(&mut self) -> PResult<Option<TypeAnn>> {
        if !self.eat(&TokenKind::Colon) {
            return Ok(None);
        }
        match self.peek() {
            TokenKind::Ident(t) if t == "long" => {
                self.bump();
                Ok(Some(TypeAnn::Long))
            }
            TokenKind::Ident(t) if t == "string" => {
                self.bump();
                Ok(Some(TypeAnn::String))
            }
            other => {
                let msg = format!("expected a type (`long` or `string`), found {other}");
                Err(self.error_here(msg))
            }
        }
    }

    /// `function NAME(A, B) { ... }`
    fn function(&mut self) -> PResult<()> {
        let lo = self.bump().span.lo;
        let name = self.ident("a function name after `function`")?;
        let ret_type = self.type_annotation()?;
        self.expect(TokenKind::LParen, "after the function name")?;
        let mut params = Vec::new();
        let mut param_types = Vec::new();
        if !self.at(&TokenKind::RParen) {
            loop {
                params.push(self.ident("a parameter name")?);
                param_types.push(self.type_annotation()?);
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
        }
        if !self.at(&TokenKind::RParen) {
            let msg = format!(
                "expected `,` or `)` in the parameter list, found {}",
                self.peek()
            );
            return Err(self.error_here(msg));
        }
        self.bump();
        if !self.at(&TokenKind::LBrace) {
            let msg = format!(
                "expected `{{` to start the function body, found {}",
                self.peek()
            );
            return Err(self.error_here(msg));
        }
        let body = self.block()?;
        let span = self.span_from(lo);
        self.script.functions.push(Function {
            name,
            params,
            param_types,
            ret_type,
            body,
            span,
        });
        Ok(())
    }

    /// `probe SPEC [, SPEC]... { BODY }`
    fn probe(&mut self) -> PResult<()> {
        let lo = self.bump().span.lo;
        let points = match self.probe_specs() {
            Ok(points) => Some(points),
            Err(f) => {
                if self.bail {
                    return Err(f);
                }
                self.depth = 0;
                // Skip the rest of the header; still check the body if there is one.
                while !matches!(self.peek(), TokenKind::Eof | TokenKind::LBrace)
                    && !self.at_top_level_keyword()
                {
                    self.bump();
                }
                None
            }
        };
        if matches!(self.peek(), TokenKind::Assign | TokenKind::PlusEq) && points.is_some() {
            return Err(self.error_here("probe aliases are not supported"));
        }
        if !self.at(&TokenKind::LBrace) {
            if points.is_none() {
                return Err(Fail);
            }
            let msg = format!(
                "expected `{{` to start the probe body, found {}",
                self.peek()
            );
            let hint = "a probe is `probe POINT { STATEMENTS }`; separate several points with `,`";
            return Err(self.error_here_hint(msg, hint));
        }
        let body = self.block()?;
        if let Some(points) = points {
            let span = self.span_from(lo);
            self.script.probes.push(Probe { points, body, span });
        }
        Ok(())
    }

    fn probe_specs(&mut self) -> PResult<Vec<ProbeSpec>> {
        if matches!(
            self.peek(),
            TokenKind::LBrace | TokenKind::Eof | TokenKind::Comma | TokenKind::If
        ) || self.at_top_level_keyword()
        {
            return Err(self.error_here_hint(
                "`probe` needs a probe point, e.g. `probe timer.s(1) { ... }`",
                "probe points: begin, end, timer.ms(N), timer.profile, kernel.trace(\"NAME\"), \
                 kernel.function(\"NAME\"), process(\"PATH\").function(\"NAME\")",
            ));
        }
        let mut specs = Vec::new();
        loop {
            specs.push(self.probe_spec()?);
            if !self.eat(&TokenKind::Comma) {
                return Ok(specs);
            }
            if self.at(&TokenKind::LBrace) {
                return Err(self.error_here_hint(
                    "expected another probe point after `,`",
                    "remove the trailing `,` before the probe body",
                ));
            }
        }
    }

    /// `POINT [?] [if (COND)]`
    fn probe_spec(&mut self) -> PResult<ProbeSpec> {
        let point = self.probe_point()?;
        let lo = point.span.lo;
        let optional = self.eat(&TokenKind::Question);
        if self.at(&TokenKind::Bang) {
            return Err(self.error_here_hint(
                "`!` (optional and sufficient) probe points are not supported",
                "use `?` for an optional probe point",
            ));
        }
        let cond = if self.eat(&TokenKind::If) {
            self.expect(TokenKind::LParen, "after `if` in a probe condition")?;
            let cond = self.expr(true)?;
            self.expect(TokenKind::RParen, "to close the probe condition")?;
            Some(cond)
        } else {
            None
        };
        Ok(ProbeSpec {
            point,
            optional,
            cond,
            span: self.span_from(lo),
        })
    }

    fn probe_point(&mut self) -> PResult<ProbePoint> {
        let lo = self.span().lo;
        let mut components = vec![self.component()?];
        while self.eat(&TokenKind::Dot) {
            components.push(self.component()?);
        }
        Ok(ProbePoint {
            components,
            span: self.span_from(lo),
        })
    }

    /// `NAME [( LITERAL )]`; keywords such as `function` and `return` are valid names here.
    fn component(&mut self) -> PResult<Component> {
        let name = match self.peek() {
            TokenKind::Ident(name) => name.clone(),
            k if k.is_keyword() => k.text().unwrap_or_default().to_string(),
            TokenKind::Star if self.wildcards => "*".to_string(),
            TokenKind::Star => {
                return Err(
                    self.error_here("wildcard probe point components (`*`) are not supported")
                )
            }
            TokenKind::LBrace => return Err(self.brace_alternatives()),
            other => {
                let msg = format!("expected a probe point component name, found {other}");
                return Err(self.error_here(msg));
            }
        };
        let span = self.bump().span;
        let name = Ident { name, span };
        let arg = if self.eat(&TokenKind::LParen) {
            let lit = self.literal()?;
            if !self.at(&TokenKind::RParen) {
                let msg = format!(
                    "expected `)` after the probe point argument, found {}",
                    self.peek()
                );
                return Err(
                    self.error_here_hint(msg, "a probe point component takes one literal argument")
                );
            }
            self.bump();
            Some(lit)
        } else {
            None
        };
        Ok(Component {
            name,
            arg,
            span: self.span_from(span.lo),
        })
    }

    /// `{a,b}` where a probe point component is expected: refused, and skipped whole so that
    /// the braces are not taken for the probe body.
    fn brace_alternatives(&mut self) -> Fail {
        let f = self.error_here_hint(
            "brace alternatives (`{a,b}`) in probe points are not supported",
            "write each probe point out, separated by `,`: `probe a.x, a.y { ... }`",
        );
        self.skip_braces();
        f
    }

    /// A literal probe point argument: a string, an integer or `-` integer.
    fn literal(&mut self) -> PResult<Literal> {
        let neg = self.at(&TokenKind::Minus);
        let k = if neg { self.peek_at(1) } else { self.peek() };
        let lit = match k {
            TokenKind::Str(s) if !neg => Literal::Str(s.clone()),
            TokenKind::Int(v) => Literal::Int(if neg { v.wrapping_neg() } else { *v }),
            TokenKind::IntMinMagnitude if neg => Literal::Int(i64::MIN),
            TokenKind::IntMinMagnitude => {
                return Err(self.error_here_hint(
                    "integer literal out of range",
                    "integers are 64-bit signed; the largest is 9223372036854775807",
                ))
            }
            TokenKind::Ident(name) => {
                let msg =
                    format!("probe point arguments must be literals, found identifier `{name}`");
                let hint = format!("quote it: \"{name}\"");
                if neg {
                    self.bump();
                }
                return Err(self.error_here_hint(msg, hint));
            }
            other => {
                let msg = format!(
                    "expected a literal string or number as the probe point argument, found {other}"
                );
                if neg {
                    self.bump();
                }
                return Err(self.error_here(msg));
            }
        };
        if neg {
            self.bump();
        }
        self.bump();
        Ok(lit)
    }

    // ---- statements -----------------------------------------------------------------------
    //
    // The functions on the recursion paths (block, stmt, the compound statements, expr,
    // binary, unary, primary, paren, call) are kept small, with messages built in separate
    // functions: an unoptimised build gives every local its own stack slot, and the deepest
    // accepted nesting must fit comfortably in a 2 MiB thread stack.

    /// `{ STMT... }`; the current token is `{`.
    fn block(&mut self) -> PResult<Block> {
        let open = self.bump().span;
        let mut stmts = Vec::new();
        loop {
            if self.at(&TokenKind::RBrace) {
                self.bump();
                break;
            }
            if self.at(&TokenKind::Eof) || self.at_top_level_keyword() {
                self.unclosed_block(open);
                break;
            }
            let start = self.pos;
            let saved = self.depth;
            match self.stmt() {
                Ok(s) => {
                    self.depth = saved;
                    stmts.push(s)
                }
                Err(f) => {
                    if self.bail {
                        return Err(f);
                    }
                    self.depth = saved;
                    self.recover_statement(start);
                }
            }
        }
        Ok(Block {
            stmts,
            span: self.span_from(open.lo),
        })
    }

    fn unclosed_block(&mut self, open: Span) {
        let (line, col) = self.file.line_col(open.lo);
        let msg = format!("expected `}}` to close the block, found {}", self.peek());
        let span = self.span();
        self.report(
            span,
            msg,
            Some(format!("the `{{` at {line}:{col} is not closed")),
        );
    }

    /// After a failed statement that started at token `start`: skip the rest of it, and at
    /// least one token.
    fn recover_statement(&mut self, start: usize) {
        self.sync_statement(start);
        if self.pos == start
            && !matches!(self.peek(), TokenKind::RBrace | TokenKind::Eof)
            && !self.at_top_level_keyword()
        {
            self.bump();
        }
    }

    /// One statement. The caller restores `self.depth` (one level is entered here).
    fn stmt(&mut self) -> PResult<Stmt> {
        self.enter()?;
        match self.peek() {
            TokenKind::LBrace => self.block_stmt(),
            TokenKind::If => self.if_stmt(),
            TokenKind::While => self.while_stmt(),
            TokenKind::For => self.for_stmt(),
            TokenKind::Ident(w) if w == "foreach" && self.peek_at(1) == &TokenKind::LParen => {
                self.foreach_stmt()
            }
            _ => self.simple_stmt(),
        }
    }

    /// A statement nested in `if`, `while` or `for`, boxed.
    fn sub_stmt(&mut self) -> PResult<Box<Stmt>> {
        if matches!(self.peek(), TokenKind::Eof | TokenKind::RBrace) || self.at_top_level_keyword()
        {
            return Err(self.expected_found("a statement"));
        }
        let saved = self.depth;
        let s = self.stmt().map(Box::new);
        self.depth = saved;
        s
    }

    /// Reports "expected WHAT, found X" at the current token.
    fn expected_found(&mut self, what: &str) -> Fail {
        let msg = format!("expected {what}, found {}", self.peek());
        self.error_here(msg)
    }

    fn paren_cond(&mut self, kw: &str) -> PResult<Expr> {
        self.expect(TokenKind::LParen, &format!("after `{kw}`"))?;
        let cond = self.expr(true)?;
        self.expect(TokenKind::RParen, &format!("to close the `{kw}` condition"))?;
        Ok(cond)
    }

    fn stmt_from(&self, lo: u32, kind: StmtKind) -> Stmt {
        Stmt {
            kind,
            span: self.span_from(lo),
        }
    }

    fn block_stmt(&mut self) -> PResult<Stmt> {
        let lo = self.span().lo;
        let b = self.block()?;
        Ok(self.stmt_from(lo, StmtKind::Block(b)))
    }

    fn if_stmt(&mut self) -> PResult<Stmt> {
        let lo = self.bump().span.lo;
        let cond = self.paren_cond("if")?;
        let then = self.sub_stmt()?;
        let els = if self.eat(&TokenKind::Else) {
            Some(self.sub_stmt()?)
        } else {
            None
        };
        Ok(self.stmt_from(lo, StmtKind::If { cond, then, els }))
    }

    fn while_stmt(&mut self) -> PResult<Stmt> {
        let lo = self.bump().span.lo;
        let cond = self.paren_cond("while")?;
        let body = self.sub_stmt()?;
        Ok(self.stmt_from(lo, StmtKind::While { cond, body }))
    }

    fn for_stmt(&mut self) -> PResult<Stmt> {
        let lo = self.bump().span.lo;
        self.expect(TokenKind::LParen, "after `for`")?;
        let init = self.opt_expr(&TokenKind::Semi)?;
        self.expect(TokenKind::Semi, "after the `for` initialiser")?;
        let cond = self.opt_expr(&TokenKind::Semi)?;
        self.expect(TokenKind::Semi, "after the `for` condition")?;
        let step = self.opt_expr(&TokenKind::RParen)?;
        self.expect(TokenKind::RParen, "to close the `for` header")?;
        let body = self.sub_stmt()?;
        Ok(self.stmt_from(
            lo,
            StmtKind::For {
                init,
                cond,
                step,
                body,
            },
        ))
    }

    /// `foreach ([v =] K in a[+-] [limit N]) S` with `K` one key variable or `[k1, k2]`,
    /// any one of the keys or the array followed by `+` or `-` (the sort order).
    fn foreach_stmt(&mut self) -> PResult<Stmt> {
        let lo = self.bump().span.lo;
        self.expect(TokenKind::LParen, "after `foreach`")?;
        let mut sort = None;
        let mut value = None;
        if matches!(self.peek(), TokenKind::Ident(_)) && self.peek_at(1) == &TokenKind::Assign {
            value = Some(self.ident("a variable")?);
            self.bump();
        }
        let mut keys = Vec::new();
        if self.eat(&TokenKind::LBracket) {
            loop {
                keys.push(self.ident("a key variable")?);
                self.sort_mark(&mut sort, Some(keys.len() - 1))?;
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
            self.expect(TokenKind::RBracket, "to close the `foreach` keys")?;
        } else {
            keys.push(self.ident("a key variable after `foreach (`")?);
            self.sort_mark(&mut sort, Some(0))?;
        }
        if !matches!(self.peek(), TokenKind::Ident(w) if w == "in") {
            return Err(self.expected_found("`in` in `foreach (KEY in ARRAY)`"));
        }
        self.bump();
        let array = self.ident("an array name after `in`")?;
        self.sort_mark(&mut sort, None)?;
        let limit = if matches!(self.peek(), TokenKind::Ident(w) if w == "limit") {
            self.bump();
            Some(self.expr(true)?)
        } else {
            None
        };
        self.expect(TokenKind::RParen, "to close the `foreach` header")?;
        let body = *self.sub_stmt()?;
        Ok(self.stmt_from(
            lo,
            StmtKind::Foreach(Box::new(Foreach {
                value,
                keys,
                array,
                sort,
                limit,
                body,
            })),
        ))
    }

    /// An optional `+` / `-` sort mark after a `foreach` key (`key`) or array (`None`).
    fn sort_mark(&mut self, sort: &mut Option<Sort>, key: Option<usize>) -> PResult<()> {
        let desc = match self.peek() {
            TokenKind::Plus => false,
            TokenKind::Minus => true,
            _ => return Ok(()),
        };
        if sort.is_some() {
            return Err(self.error_here_hint(
                "a `foreach` may sort by only one key or value",
                "keep one `+` or `-` mark",
            ));
        }
        self.bump();
        *sort = Some(Sort { key, desc });
        Ok(())
    }

    fn opt_expr(&mut self, end: &TokenKind) -> PResult<Option<Expr>> {
        if self.at(end) {
            Ok(None)
        } else {
            Ok(Some(self.expr(true)?))
        }
    }

    /// The statements that do not nest other statements, with their optional `;` (which is
    /// not part of the span).
    fn simple_stmt(&mut self) -> PResult<Stmt> {
        let lo = self.span().lo;
        let kind = match self.peek() {
            TokenKind::Semi => {
                self.bump();
                return Ok(self.stmt_from(lo, StmtKind::Empty));
            }
            TokenKind::Break => {
                self.bump();
                StmtKind::Break
            }
            TokenKind::Continue => {
                self.bump();
                StmtKind::Continue
            }
            TokenKind::Next => {
                self.bump();
                StmtKind::Next
            }
            TokenKind::Return => {
                self.bump();
                if starts_expr(self.peek()) {
                    StmtKind::Return(Some(self.expr(true)?))
                } else {
                    StmtKind::Return(None)
                }
            }
            TokenKind::Else => return Err(self.error_here("`else` without a matching `if`")),
            TokenKind::Ident(w) if w == "delete" && starts_expr(self.peek_at(1)) => {
                self.bump();
                let e = self.unary()?;
                if !matches!(e.kind, ExprKind::Var(_) | ExprKind::Index { .. }) {
                    return Err(self.report(
                        e.span,
                        "`delete` needs a variable, an array or an array element",
                        Some("write `delete a[k]`, `delete a` or `delete x`".into()),
                    ));
                }
                StmtKind::Delete(e)
            }
            TokenKind::Ident(name)
                if UNSUPPORTED_STATEMENTS.iter().any(|(n, _)| n == name)
                    && !matches!(self.peek_at(1), TokenKind::Assign) =>
            {
                return Err(self.unsupported_statement());
            }
            _ => StmtKind::Expr(self.expr(true)?),
        };
        let s = self.stmt_from(lo, kind);
        self.eat(&TokenKind::Semi);
        Ok(s)
    }

    fn unsupported_statement(&mut self) -> Fail {
        let TokenKind::Ident(name) = self.peek().clone() else {
            return Fail;
        };
        let why = UNSUPPORTED_STATEMENTS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, w)| *w)
            .unwrap_or_default();
        self.error_here_hint(format!("`{name}` is not supported"), why)
    }

    // ---- expressions ----------------------------------------------------------------------

    /// An expression: assignment (right-associative, if `assign`) over a conditional
    /// `c ? a : b` (right-associative) over the binary operators.
    fn expr(&mut self, assign: bool) -> PResult<Expr> {
        self.enter()?;
        let mut e = self.binary(1)?;
        if self.at(&TokenKind::Question) {
            e = self.ternary(e)?;
        }
        if assign && assign_op(self.peek()).is_some() {
            e = self.assignment(e)?;
        } else if assign && self.at(&TokenKind::Aggregate) {
            e = self.aggregate(e)?;
        }
        self.depth -= 1;
        Ok(e)
    }

    /// `target <<< value`; the current token is `<<<`.
    fn aggregate(&mut self, target: Expr) -> PResult<Expr> {
        self.bump();
        let value = self.expr(true)?;
        let span = target.span.to(value.span);
        let (target, keys) = match target.kind {
            ExprKind::Var(t) => (t, Vec::new()),
            ExprKind::Index { array, keys } => (array, keys),
            _ => {
                return Err(self.report(
                    target.span,
                    "left side of `<<<` must be a global or an array element",
                    Some("write `x <<< v` or `a[k] <<< v`".into()),
                ))
            }
        };
        Ok(Expr {
            kind: ExprKind::Aggregate {
                target,
                keys,
                value: Box::new(value),
            },
            span,
        })
    }

    /// `cond ? then : els`; the current token is `?`.
    fn ternary(&mut self, cond: Expr) -> PResult<Expr> {
        self.bump();
        let then = self.expr(true)?;
        if !self.at(&TokenKind::Colon) {
            return Err(self.expected_found("`:` in the conditional expression `c ? a : b`"));
        }
        self.bump();
        let els = self.expr(false)?;
        let span = cond.span.to(els.span);
        Ok(Expr {
            kind: ExprKind::Ternary {
                cond: Box::new(cond),
                then: Box::new(then),
                els: Box::new(els),
            },
            span,
        })
    }

    /// `target OP= value`; the current token is the assignment operator.
    fn assignment(&mut self, target: Expr) -> PResult<Expr> {
        let op = assign_op(self.peek()).unwrap_or(None);
        self.bump();
        let value = self.expr(true)?;
        let span = target.span.to(value.span);
        match target.kind {
            ExprKind::Var(target) => Ok(Expr {
                kind: ExprKind::Assign {
                    op,
                    target,
                    value: Box::new(value),
                },
                span,
            }),
            ExprKind::Index { array, keys } => Ok(Expr {
                kind: ExprKind::IndexAssign {
                    op,
                    array,
                    keys,
                    value: Box::new(value),
                },
                span,
            }),
            _ => Err(self.not_assignable(target.span, op)),
        }
    }

    fn not_assignable(&mut self, span: Span, op: Option<BinOp>) -> Fail {
        let op = match op {
            Some(op) => format!("{}=", op.as_str()),
            None => "=".into(),
        };
        self.report(
            span,
            "left side of assignment must be a variable",
            Some(format!(
                "only a variable or an array element can be assigned with `{op}`"
            )),
        )
    }

    /// Binary operators of precedence `min_prec` and above, by precedence climbing. A chain
    /// of operators of one level is a loop (each link counts one nesting level).
    fn binary(&mut self, min_prec: u8) -> PResult<Expr> {
        let lhs = self.unary()?;
        match self.peek_prec() {
            Some(prec) if prec >= min_prec => self.binary_chain(lhs, min_prec),
            _ => Ok(lhs),
        }
    }

    fn at_in(&self) -> bool {
        matches!(self.peek(), TokenKind::Ident(w) if w == "in")
    }

    /// The precedence of the binary operator (or `in`) at the current token.
    fn peek_prec(&self) -> Option<u8> {
        if self.at_in() {
            return Some(IN_PREC);
        }
        binop(self.peek()).map(|(_, p)| p)
    }

    /// `KEY in ARRAY`; the current token is `in`.
    fn array_in(&mut self, keys: Vec<Expr>, lo: Span) -> PResult<Expr> {
        self.bump();
        let array = self.ident("an array name after `in`")?;
        let span = lo.to(array.span);
        Ok(Expr {
            kind: ExprKind::In { keys, array },
            span,
        })
    }

    fn binary_chain(&mut self, mut lhs: Expr, min_prec: u8) -> PResult<Expr> {
        let saved = self.depth;
        while let Some(prec) = self.peek_prec() {
            if prec < min_prec {
                break;
            }
            if self.at_in() {
                let lo = lhs.span;
                lhs = self.array_in(vec![lhs], lo)?;
                continue;
            }
            let Some((op, _)) = binop(self.peek()) else {
                break;
            };
            self.bump();
            self.enter()?;
            let rhs = self.binary(prec + 1)?;
            lhs = make_binary(op, lhs, rhs);
        }
        self.depth = saved;
        Ok(lhs)
    }

    /// Prefix operators (collected by a loop, not recursion), then a primary expression with
    /// its postfix `++` / `--`.
    fn unary(&mut self) -> PResult<Expr> {
        if is_prefix_op(self.peek()) {
            return self.prefixed();
        }
        match self.primary() {
            Ok(e) => self.postfix(e),
            Err(f) => Err(f),
        }
    }

    fn prefixed(&mut self) -> PResult<Expr> {
        let saved = self.depth;
        let mut ops: Vec<Token> = Vec::new();
        while is_prefix_op(self.peek()) {
            self.enter()?;
            ops.push(self.bump());
        }
        let e = if self.at(&TokenKind::IntMinMagnitude)
            && matches!(ops.last(), Some(t) if t.kind == TokenKind::Minus)
        {
            self.int_min(&mut ops)
        } else {
            let e = self.primary()?;
            self.postfix(e)?
        };
        let e = self.apply_prefix(ops, e)?;
        self.depth = saved;
        Ok(e)
    }

    /// `-9223372036854775808`: the minus (last of `ops`) and the literal as one node.
    fn int_min(&mut self, ops: &mut Vec<Token>) -> Expr {
        let minus = ops.pop().map(|t| t.span).unwrap_or_default();
        let lit = self.bump().span;
        Expr {
            kind: ExprKind::Int(i64::MIN),
            span: minus.to(lit),
        }
    }

    fn apply_prefix(&mut self, mut ops: Vec<Token>, mut e: Expr) -> PResult<Expr> {
        while let Some(t) = ops.pop() {
            let op = match t.kind {
                TokenKind::Minus => UnOp::Neg,
                TokenKind::Plus => UnOp::Plus,
                TokenKind::Bang => UnOp::Not,
                TokenKind::Tilde => UnOp::BitNot,
                _ => {
                    let inc = t.kind == TokenKind::PlusPlus;
                    e = self.incdec(e, true, inc, t.span)?;
                    continue;
                }
            };
            let span = t.span.to(e.span);
            e = Expr {
                kind: ExprKind::Unary {
                    op,
                    expr: Box::new(e),
                },
                span,
            };
        }
        Ok(e)
    }

    /// Builds `++x` / `x--` etc.; `operand` must be a variable.
    fn incdec(&mut self, operand: Expr, prefix: bool, inc: bool, op_span: Span) -> PResult<Expr> {
        let span = op_span.to(operand.span);
        match operand.kind {
            ExprKind::Var(target) => Ok(Expr {
                kind: ExprKind::IncDec {
                    prefix,
                    inc,
                    target,
                },
                span,
            }),
            ExprKind::Index { array, keys } => Ok(Expr {
                kind: ExprKind::IndexIncDec {
                    prefix,
                    inc,
                    array,
                    keys,
                },
                span,
            }),
            _ => {
                let op = if inc { "++" } else { "--" };
                Err(self.report(
                    operand.span,
                    format!("operand of `{op}` must be a variable or an array element"),
                    Some(
                        "only a variable or an array element can be incremented or decremented"
                            .into(),
                    ),
                ))
            }
        }
    }

    /// Postfix `++` / `--` after `e`. They bind only on the same line: since `;` is
    /// optional, `a = b` followed by `++c` on the next line are two statements.
    fn postfix(&mut self, e: Expr) -> PResult<Expr> {
        match self.peek() {
            TokenKind::PlusPlus | TokenKind::MinusMinus if !self.newline_before() => {
                let t = self.bump();
                self.incdec(e, false, t.kind == TokenKind::PlusPlus, t.span)
            }
            _ => Ok(e),
        }
    }

    /// `true` if a line break separates the previous token from the current one.
    fn newline_before(&self) -> bool {
        let from = self.prev_end() as usize;
        let to = self.span().lo as usize;
        self.file
            .text()
            .get(from..to)
            .is_some_and(|gap| gap.contains('\n'))
    }

    fn primary(&mut self) -> PResult<Expr> {
        match self.peek() {
            TokenKind::LParen => self.paren(),
            TokenKind::Ident(_) => self.name_or_call(),
            TokenKind::Entry => self.entry(),
            TokenKind::StatOp(_) => self.stat(),
            TokenKind::LBracket => {
                let lo = self.bump().span;
                let keys = self.expr_list(&TokenKind::RBracket)?;
                self.expect(TokenKind::RBracket, "to close the keys")?;
                if !self.at_in() {
                    return Err(self.expected_found("`in` after `[KEYS]`"));
                }
                self.array_in(keys, lo)
            }
            _ => self.atom(),
        }
    }

    /// A literal, or an error for anything that cannot start an expression.
    fn atom(&mut self) -> PResult<Expr> {
        let t = self.toks[self.pos].clone();
        let kind = match t.kind {
            TokenKind::Int(v) => ExprKind::Int(v),
            TokenKind::Str(s) => ExprKind::Str(s),
            TokenKind::IntMinMagnitude => {
                return Err(self.error_here_hint(
                    "integer literal out of range",
                    "integers are 64-bit signed; the largest is 9223372036854775807 \
                     (the smallest, -9223372036854775808, must be written with its minus sign)",
                ))
            }
            _ => return Err(self.expected_found("an expression")),
        };
        self.bump();
        Ok(Expr { kind, span: t.span })
    }

    /// `( E )`; the span of the inner node is widened to the parentheses.
    fn paren(&mut self) -> PResult<Expr> {
        let lo = self.bump().span.lo;
        let mut inner = self.expr(true)?;
        self.expect(TokenKind::RParen, "to close `(`")?;
        inner.span = self.span_from(lo);
        Ok(inner)
    }

    /// `@entry( E )`.
    fn entry(&mut self) -> PResult<Expr> {
        let lo = self.bump().span.lo;
        if !self.at(&TokenKind::LParen) {
            return Err(
                self.error_here_hint("expected `(` after `@entry`", "write `@entry(EXPRESSION)`")
            );
        }
        self.bump();
        let inner = Box::new(self.expr(true)?);
        self.expect(TokenKind::RParen, "to close `@entry(`")?;
        Ok(Expr {
            kind: ExprKind::Entry(inner),
            span: self.span_from(lo),
        })
    }

    /// Expressions separated by `,` up to (not including) `end`; at least one.
    fn expr_list(&mut self, end: &TokenKind) -> PResult<Vec<Expr>> {
        let mut v = vec![self.expr(true)?];
        while self.eat(&TokenKind::Comma) {
            v.push(self.expr(true)?);
        }
        if !self.at(end) {
            return Err(self.expected_found(&format!("`,` or {end}")));
        }
        Ok(v)
    }

    /// `@count(x)`, `@sum(a[k])`, `@hist_log(x)`, `@hist_linear(x, lo, hi, step)`.
    fn stat(&mut self) -> PResult<Expr> {
        let t = self.bump();
        let TokenKind::StatOp(name) = t.kind else {
            return Err(Fail);
        };
        self.expect(TokenKind::LParen, &format!("after `@{name}`"))?;
        let operand = self.unary()?;
        let (target, keys) = match operand.kind {
            ExprKind::Var(v) => (v, Vec::new()),
            ExprKind::Index { array, keys } => (array, keys),
            _ => {
                return Err(self.report(
                    operand.span,
                    format!("the operand of `@{name}` must be an aggregate"),
                    Some(
                        "write a global (`x`) or an array element (`a[k]`) filled with `<<<`"
                            .into(),
                    ),
                ))
            }
        };
        let kind = if name == "hist_linear" {
            let mut params = [0i64; 3];
            for p in params.iter_mut() {
                self.expect(TokenKind::Comma, "between the `@hist_linear` parameters")?;
                let e = self.expr(false)?;
                *p = match const_int(&e) {
                    Some(v) => v,
                    None => {
                        return Err(self.report(
                            e.span,
                            "`@hist_linear` parameters must be integer constants",
                            Some("write `@hist_linear(x, LOW, HIGH, STEP)` with literals".into()),
                        ))
                    }
                };
            }
            Some(HistKind::Linear {
                lo: params[0],
                hi: params[1],
                step: params[2],
            })
        } else if name == "hist_log" {
            Some(HistKind::Log)
        } else {
            None
        };
        // `@variance(x, N)`: SystemTap's optional bit shift.
        let mut shift = None;
        if name == "variance" && self.eat(&TokenKind::Comma) {
            let e = self.expr(false)?;
            shift = match const_int(&e) {
                Some(v) => Some(v),
                None => {
                    return Err(self.report(
                        e.span,
                        "the bit shift of `@variance` must be an integer constant",
                        Some("write `@variance(x, N)` with N from 0 to 62".into()),
                    ))
                }
            };
        }
        self.expect(TokenKind::RParen, &format!("to close `@{name}(`"))?;
        let span = self.span_from(t.span.lo);
        let kind = match kind {
            Some(kind) => ExprKind::Hist { kind, target, keys },
            None => ExprKind::Stat {
                op: StatOp::from_name(&name).ok_or(Fail)?,
                target,
                keys,
                shift,
            },
        };
        Ok(Expr { kind, span })
    }

    /// A variable, an array element `a[k1, k2]` or, before `(`, a call.
    fn name_or_call(&mut self) -> PResult<Expr> {
        let t = self.bump();
        let TokenKind::Ident(name) = t.kind else {
            return Err(Fail);
        };
        let name = Ident { name, span: t.span };
        if self.at(&TokenKind::LParen) {
            return self.call(name);
        }
        if self.at(&TokenKind::LBracket) {
            self.bump();
            let keys = self.expr_list(&TokenKind::RBracket)?;
            self.expect(TokenKind::RBracket, "to close the array index")?;
            let span = self.span_from(name.span.lo);
            return Ok(Expr {
                kind: ExprKind::Index { array: name, keys },
                span,
            });
        }
        Ok(Expr {
            kind: ExprKind::Var(name),
            span: t.span,
        })
    }

    /// `NAME(ARGS)`; the current token is `(`.
    fn call(&mut self, name: Ident) -> PResult<Expr> {
        self.bump();
        let mut args = Vec::new();
        if !self.at(&TokenKind::RParen) {
            loop {
                args.push(self.expr(true)?);
                if !self.eat(&TokenKind::Comma) {
                    break;
                }
            }
            if !self.at(&TokenKind::RParen) {
                return Err(self.bad_argument_list(&name));
            }
        }
        self.bump();
        let span = self.span_from(name.span.lo);
        Ok(Expr {
            kind: ExprKind::Call { name, args },
            span,
        })
    }

    fn bad_argument_list(&mut self, name: &Ident) -> Fail {
        let what = format!("`,` or `)` in the arguments of `{}`", name.name);
        self.expected_found(&what)
    }
}

/// The value of an integer literal, possibly negated.
fn const_int(e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(v) => Some(*v),
        ExprKind::Unary {
            op: UnOp::Neg,
            expr,
        } => const_int(expr).map(i64::wrapping_neg),
        ExprKind::Unary {
            op: UnOp::Plus,
            expr,
        } => const_int(expr),
        _ => None,
    }
}

fn is_prefix_op(kind: &TokenKind) -> bool {
    matches!(
        kind,
        TokenKind::Minus
            | TokenKind::Plus
            | TokenKind::Bang
            | TokenKind::Tilde
            | TokenKind::PlusPlus
            | TokenKind::MinusMinus
    )
}

fn make_binary(op: BinOp, lhs: Expr, rhs: Expr) -> Expr {
    let span = lhs.span.to(rhs.span);
    Expr {
        kind: ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        span,
    }
}
