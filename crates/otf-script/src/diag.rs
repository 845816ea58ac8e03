//! Diagnostics: source files, spans to line:col, and rendering errors as rustc does.
//!
//! A [`Diagnostic`] is a value (never a panic): every pass of the front end returns a list of
//! them, and the command line prints them with [`render_all`] in the format of
//! docs/user-guide.md, "Errors":
//!
//! ```text
//! error: unknown probe point family `kernel.funtion`
//!   --> trace.stp:3:7
//!    |
//!  3 | probe kernel.funtion("vfs_read") { n++ }
//!    |       ^^^^^^^^^^^^^^
//!    = help: did you mean `kernel.function`?
//! ```

use crate::ast::Span;
use std::fmt;

/// A script's text with its name, the byte offsets of its lines and the command line
/// arguments it is run with (`$1`, `@1`, `$#`, ...; see [`SourceFile::with_args`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    name: String,
    text: String,
    /// Byte offset of the first character of every line; `line_starts[0] == 0`.
    line_starts: Vec<u32>,
    /// The script arguments, substituted for `$N` / `@N` by the lexer.
    args: Vec<String>,
}

impl SourceFile {
    /// A source file called `name` (as shown in `--> name:line:col`) with contents `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0u32];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| (i + 1) as u32),
        );
        SourceFile {
            name: name.into(),
            text,
            line_starts,
            args: Vec::new(),
        }
    }

    /// Reads a script from raw bytes. Text that is not valid UTF-8 is refused with an error
    /// at the line and column of the first invalid byte; the returned file (with the
    /// invalid bytes replaced by U+FFFD) is the one to render that error against (both are
    /// boxed, to keep the `Result` small).
    pub fn from_bytes(
        name: impl Into<String>,
        bytes: Vec<u8>,
    ) -> Result<Self, Box<(SourceFile, Diagnostic)>> {
        match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile::new(name, text)),
            Err(e) => {
                let bytes = e.as_bytes();
                let at = e.utf8_error().valid_up_to();
                let len = e.utf8_error().error_len().unwrap_or(bytes.len() - at);
                let shown: Vec<String> = bytes[at..at + len]
                    .iter()
                    .map(|b| format!("0x{b:02x}"))
                    .collect();
                // The valid prefix is kept as is, so offsets up to the bad byte are the same
                // in the lossy text.
                let file = SourceFile::new(name, String::from_utf8_lossy(bytes).into_owned());
                let diag = Diagnostic::error(
                    format!(
                        "the script is not valid UTF-8: invalid byte{} {}",
                        if len == 1 { "" } else { "s" },
                        shown.join(" ")
                    ),
                    Span::new(at, at + 1),
                )
                .with_hint(
                    "otf scripts are UTF-8 text; convert the file, e.g. with \
                     `iconv -f LATIN1 -t UTF-8`",
                );
                Err(Box::new((file, diag)))
            }
        }
    }

    /// The same file run with the script arguments `args`: `$N` is the text of `args[N-1]`
    /// lexed as script text, `@N` the same text as a string literal, and `$#` / `@#` the
    /// number of arguments (as an integer / a string), as in SystemTap.
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// The script arguments given with [`SourceFile::with_args`] (empty by default).
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The name given at construction (usually the path, or `<command line>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The number of lines (a final line without `\n` counts; an empty text has one line).
    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// The 1-based line and 1-based column (counted in characters, not bytes) of byte offset
    /// `byte`. Offsets past the end are clamped to the end of the text; an offset inside a
    /// multi-byte character counts as that character.
    pub fn line_col(&self, byte: u32) -> (usize, usize) {
        let byte = (byte as usize).min(self.text.len());
        // Index of the last line start <= byte.
        let line_idx = match self.line_starts.binary_search(&(byte as u32)) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line_idx] as usize;
        let mut end = byte;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let col = self.text[start..end].chars().count() + 1;
        (line_idx + 1, col)
    }

    /// The text of 1-based line `line`, without its line terminator (`\n` or `\r\n`).
    /// Returns `""` for a line number out of range.
    pub fn line_text(&self, line: usize) -> &str {
        if line == 0 || line > self.line_starts.len() {
            return "";
        }
        let start = self.line_starts[line - 1] as usize;
        let end = self
            .line_starts
            .get(line)
            .map(|&s| s as usize - 1)
            .unwrap_or(self.text.len());
        let s = &self.text[start..end];
        s.strip_suffix('\r').unwrap_or(s)
    }
}

/// How serious a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The script is refused.
    Error,
    /// The script runs, but something is probably wrong.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One error or warning about a place in the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The one-line message (no trailing period, no `error:` prefix).
    pub message: String,
    /// Where the problem is; underlined when rendered.
    pub span: Span,
    /// An optional suggestion, rendered as `= help: ...`.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// An error with `message` at `span`.
    pub fn error(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// A warning with `message` at `span`.
    pub fn warning(message: impl Into<String>, span: Span) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// The same diagnostic with a `= help:` line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `true` for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic against `file` in the format of docs/user-guide.md, "Errors".
    /// The result ends with a newline.
    ///
    /// The gutter is as wide as the line number; a span over several lines is underlined to
    /// the end of its first line; an empty span (or one at the end of a line) gets one caret.
    pub fn render(&self, file: &SourceFile) -> String {
        let (line, col) = file.line_col(self.span.lo);
        let text = file.line_text(line);
        let width = line.to_string().len();
        let pad = " ".repeat(width + 1);

        // Characters of the line before the span (tabs kept, so that carets line up) and the
        // number of characters underlined.
        let prefix: String = text
            .chars()
            .take(col - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let (hi_line, hi_col) = file.line_col(self.span.hi.max(self.span.lo));
        let line_chars = text.chars().count();
        let end_col = if hi_line == line {
            hi_col
        } else {
            line_chars + 1
        };
        let carets = end_col.saturating_sub(col).max(1);

        let mut out = String::new();
        out.push_str(&format!("{}: {}\n", self.severity, self.message));
        out.push_str(&format!("{pad}--> {}:{line}:{col}\n", file.name()));
        out.push_str(&format!("{pad} |\n"));
        out.push_str(&format!(" {line:>width$} | {text}\n"));
        out.push_str(&format!("{pad} | {prefix}{}\n", "^".repeat(carets)));
        if let Some(hint) = &self.hint {
            out.push_str(&format!("{pad} = help: {hint}\n"));
        }
        // No trailing spaces on the ` | ` lines when the source line is empty.
        out.lines()
            .map(str::trim_end)
            .fold(String::with_capacity(out.len()), |mut acc, l| {
                acc.push_str(l);
                acc.push('\n');
                acc
            })
    }
}

/// Renders every diagnostic in order, separated by blank lines.
pub fn render_all(diags: &[Diagnostic], file: &SourceFile) -> String {
    diags
        .iter()
        .map(|d| d.render(file))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `true` if any diagnostic is an error (warnings alone do not stop a script).
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(Diagnostic::is_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_language_md_example() {
        let text = "global n\n\nprobe kernel.funtion(\"vfs_read\") { n++ }\n";
        let file = SourceFile::new("trace.stp", text);
        let lo = text.find("kernel").unwrap();
        let d = Diagnostic::error(
            "unknown probe point family `kernel.funtion`",
            Span::new(lo, lo + "kernel.funtion".len()),
        );
        assert_eq!(
            d.render(&file),
            "error: unknown probe point family `kernel.funtion`\n  --> trace.stp:3:7\n   |\n \
             3 | probe kernel.funtion(\"vfs_read\") { n++ }\n   |       ^^^^^^^^^^^^^^\n"
        );
    }

    #[test]
    fn warning_hint_wide_gutter_and_multiline_span() {
        let mut text = String::new();
        for _ in 0..11 {
            text.push('\n');
        }
        text.push_str("x = (1 +\n 2)\n");
        let file = SourceFile::new("a.stp", text.as_str());
        let lo = text.find('(').unwrap();
        let hi = text.find(')').unwrap() + 1;
        let d = Diagnostic::warning("odd", Span::new(lo, hi)).with_hint("be even");
        assert_eq!(
            d.render(&file),
            "warning: odd\n   --> a.stp:12:5\n    |\n 12 | x = (1 +\n    |     ^^^^\n    = help: be even\n"
        );
    }

    #[test]
    fn empty_span_gets_one_caret_and_columns_count_chars() {
        let text = "é = \"ü\" x";
        let file = SourceFile::new("u.stp", text);
        let lo = text.find('x').unwrap();
        assert_eq!(file.line_col(lo as u32), (1, 9));
        let d = Diagnostic::error("here", Span::new(lo, lo));
        let r = d.render(&file);
        assert!(r.ends_with(" 1 | é = \"ü\" x\n   |         ^\n"), "{r}");
        // End of text, after a final newline: the (empty) last line.
        let file = SourceFile::new("e.stp", "a\n");
        assert_eq!(file.line_col(2), (2, 1));
        assert_eq!(file.line_text(2), "");
        assert_eq!(file.line_text(1), "a");
        assert_eq!(file.line_text(3), "");
    }

    #[test]
    fn tabs_are_kept_so_that_carets_line_up() {
        let file = SourceFile::new("t.stp", "\tx = yy");
        let d = Diagnostic::error("m", Span::new(5, 7));
        assert!(d.render(&file).ends_with(" 1 | \tx = yy\n   | \t    ^^\n"));
        // A span past the end of the text is clamped to it.
        let d = Diagnostic::error("m", Span::new(100, 200));
        assert!(d.render(&file).contains("--> t.stp:1:8\n"));
    }

    #[test]
    fn invalid_utf8_is_an_error_at_the_first_bad_byte() {
        let ok = SourceFile::from_bytes("a.stp", b"probe begin {}".to_vec()).expect("utf-8");
        assert_eq!(ok.text(), "probe begin {}");
        let e = SourceFile::from_bytes("b.stp", b"x\n \xc3\xa9 \xe2\x82 y\n".to_vec())
            .expect_err("not utf-8");
        let (file, d) = *e;
        assert_eq!(
            d.message,
            "the script is not valid UTF-8: invalid bytes 0xe2 0x82"
        );
        assert_eq!(file.line_col(d.span.lo), (2, 4));
        assert!(d.render(&file).contains("--> b.stp:2:4\n"));
    }

    #[test]
    fn crlf_and_render_all_and_has_errors() {
        let file = SourceFile::new("c.stp", "a\r\nbb\r\n");
        assert_eq!(file.line_text(1), "a");
        assert_eq!(file.line_col(3), (2, 1));
        let w = Diagnostic::warning("w", Span::new(0, 1));
        let e = Diagnostic::error("e", Span::new(3, 5));
        assert!(!has_errors(std::slice::from_ref(&w)));
        assert!(has_errors(&[w.clone(), e.clone()]));
        let all = render_all(&[w.clone(), e.clone()], &file);
        assert_eq!(all, format!("{}\n{}", w.render(&file), e.render(&file)));
        assert!(all.contains(" 2 | bb\n   | ^^\n"));
    }
}
