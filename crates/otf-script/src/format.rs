//! Rendering output records: a [`Format`] and a record's integer arguments to text, as C's
//! `printf` does on 64-bit values.

use crate::bytecode::{Format, Piece, Spec};

/// Render one output record. `args` are the record's integer arguments; `execname`, `pp` and
/// `probefunc` are the strings of the hit (used by [`Piece::Execname`], [`Piece::Pp`] and
/// [`Piece::Probefunc`]). A missing argument renders as 0.
pub fn render(fmt: &Format, args: &[i64], execname: &str, pp: &str, probefunc: &str) -> String {
    let mut s = String::new();
    for piece in &fmt.pieces {
        match piece {
            Piece::Text(t) => s.push_str(t),
            Piece::Int { arg, spec } => {
                push_int(&mut s, args.get(*arg).copied().unwrap_or(0), spec)
            }
            Piece::Execname(spec) => push_str(&mut s, execname, spec),
            Piece::Pp(spec) => push_str(&mut s, pp, spec),
            Piece::Probefunc(spec) => push_str(&mut s, probefunc, spec),
            Piece::Str(t, spec) => push_str(&mut s, t, spec),
            // Rendered by the runtime, which has the aggregate ([`crate::hist`]).
            Piece::Hist { .. } => {}
        }
    }
    s
}

/// Format one integer by a conversion `%[-][0][width]conv` (conv one of `d i u x X o c s`;
/// `s` prints the value as `%d` does, as SystemTap prints a number given to `%s`).
pub fn format_int(v: i64, spec: &Spec) -> String {
    let mut s = String::new();
    push_int(&mut s, v, spec);
    s
}

fn push_int(s: &mut String, v: i64, spec: &Spec) {
    let (sign, digits) = match spec.conv {
        b'u' => ("", (v as u64).to_string()),
        b'x' => ("", format!("{:x}", v as u64)),
        b'X' => ("", format!("{:X}", v as u64)),
        b'o' => ("", format!("{:o}", v as u64)),
        b'c' => {
            let c = char::from(v as u8).to_string();
            push_padded(s, "", &c, spec.width as usize, spec.left, false);
            return;
        }
        _ => {
            if v < 0 {
                ("-", v.unsigned_abs().to_string())
            } else {
                ("", v.to_string())
            }
        }
    };
    push_padded(s, sign, &digits, spec.width as usize, spec.left, spec.zero);
}

fn push_str(s: &mut String, t: &str, spec: &Spec) {
    push_padded(s, "", t, spec.width as usize, spec.left, false);
}

fn push_padded(s: &mut String, sign: &str, body: &str, width: usize, left: bool, zero: bool) {
    let len = sign.len() + body.chars().count();
    let pad = width.saturating_sub(len);
    if left {
        s.push_str(sign);
        s.push_str(body);
        s.extend(std::iter::repeat_n(' ', pad));
    } else if zero {
        s.push_str(sign);
        s.extend(std::iter::repeat_n('0', pad));
        s.push_str(body);
    } else {
        s.extend(std::iter::repeat_n(' ', pad));
        s.push_str(sign);
        s.push_str(body);
    }
}

/// One item of a parsed `printf` format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FmtItem {
    /// Literal text (`%%` already turned into `%`).
    Text(String),
    /// A conversion `%[-][0][width]conv`.
    Conv {
        /// The conversion.
        spec: Spec,
        /// Byte offset of the `%` in the format string.
        offset: usize,
        /// The conversion as written, e.g. `%-5d`.
        text: String,
    },
}

impl FmtItem {
    /// `true` for `%s`, which takes a string argument.
    pub fn is_string_conv(&self) -> bool {
        matches!(self, FmtItem::Conv { spec, .. } if spec.conv == b's')
    }
}

/// Why a `printf` format string was refused: a message and the byte offset of the
/// offending conversion in the format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FmtError {
    /// What is wrong, e.g. "unsupported printf conversion `%.2f`".
    pub message: String,
    /// Byte offset of the `%` in the format string.
    pub offset: usize,
}

/// The largest field width accepted in a conversion.
pub const MAX_WIDTH: u32 = 1024;

/// Parse a `printf` format: text, `%%`, and `%[-][0][width]conv` with conv one of
/// `d i u x X o s c`. Anything else (precision, `+`, `#`, length modifiers, `%p`, ...) is
/// refused with an error naming the conversion.
pub fn parse_printf(fmt: &str) -> Result<Vec<FmtItem>, FmtError> {
    let b = fmt.as_bytes();
    let mut items = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let mut lit_start = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        text.push_str(&fmt[lit_start..i]);
        let start = i;
        i += 1;
        if b.get(i) == Some(&b'%') {
            text.push('%');
            i += 1;
            lit_start = i;
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&c) = b.get(i) {
            match c {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        let mut width: u64 = 0;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            width = (width * 10 + (c - b'0') as u64).min(u64::from(u32::MAX));
            i += 1;
        }
        let conv = b.get(i).copied();
        let end = (i + 1).min(b.len());
        // Extend the written text to a char boundary for the message.
        let mut end_txt = end;
        while !fmt.is_char_boundary(end_txt) {
            end_txt += 1;
        }
        let written = &fmt[start..end_txt];
        match conv {
            Some(c @ (b'd' | b'i' | b'u' | b'x' | b'X' | b'o' | b's' | b'c')) => {
                if width > u64::from(MAX_WIDTH) {
                    return Err(FmtError {
                        message: format!(
                            "field width in printf conversion `{written}` is larger than {MAX_WIDTH}"
                        ),
                        offset: start,
                    });
                }
                spec.conv = c;
                spec.width = width as u32;
                if spec.left {
                    spec.zero = false;
                }
                if !text.is_empty() {
                    items.push(FmtItem::Text(std::mem::take(&mut text)));
                }
                items.push(FmtItem::Conv {
                    spec,
                    offset: start,
                    text: written.to_string(),
                });
                i += 1;
                lit_start = i;
            }
            None => {
                return Err(FmtError {
                    message: format!(
                        "incomplete printf conversion `{written}` at the end of the format"
                    ),
                    offset: start,
                })
            }
            Some(_) => {
                // Show the whole conversion as written: flags, precision, length modifiers
                // and the conversion letter.
                let mut j = i;
                while j < b.len() && b"0123456789.+-# 'hlLqjzt*".contains(&b[j]) {
                    j += 1;
                }
                let mut j = (j + 1).min(b.len());
                while !fmt.is_char_boundary(j) {
                    j += 1;
                }
                let written = &fmt[start..j];
                return Err(FmtError {
                    message: format!(
                        "unsupported printf conversion `{written}` (supported: %d %i %u %x %X %o %s %c %% with width, `-` and `0`)"
                    ),
                    offset: start,
                });
            }
        }
    }
    text.push_str(&fmt[lit_start..]);
    if !text.is_empty() {
        items.push(FmtItem::Text(text));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(conv: u8, width: u32, left: bool, zero: bool) -> Spec {
        Spec {
            conv,
            width,
            left,
            zero,
        }
    }

    #[test]
    fn integers_like_c() {
        assert_eq!(format_int(42, &spec(b'd', 0, false, false)), "42");
        assert_eq!(format_int(-42, &spec(b'd', 6, false, false)), "   -42");
        assert_eq!(format_int(-42, &spec(b'd', 6, false, true)), "-00042");
        assert_eq!(format_int(-42, &spec(b'i', 6, true, true)), "-42   ");
        assert_eq!(
            format_int(i64::MIN, &spec(b'd', 0, false, false)),
            "-9223372036854775808"
        );
        assert_eq!(
            format_int(-1, &spec(b'u', 0, false, false)),
            "18446744073709551615"
        );
        assert_eq!(
            format_int(-1, &spec(b'x', 0, false, false)),
            "ffffffffffffffff"
        );
        assert_eq!(format_int(255, &spec(b'X', 4, false, true)), "00FF");
        assert_eq!(format_int(8, &spec(b'o', 0, false, false)), "10");
        assert_eq!(format_int(65, &spec(b'c', 3, false, false)), "  A");
        assert_eq!(format_int(65, &spec(b'c', 3, true, false)), "A  ");
        assert_eq!(format_int(12345, &spec(b'd', 3, false, false)), "12345");
    }

    #[test]
    fn parse_formats() {
        let items = parse_printf("a%%b %-5d|%08x%s\n").unwrap();
        assert_eq!(items.len(), 6);
        assert_eq!(items[0], FmtItem::Text("a%b ".into()));
        assert!(
            matches!(&items[1], FmtItem::Conv { spec, offset: 5, text } if spec.left && spec.width == 5 && text == "%-5d")
        );
        assert!(
            matches!(&items[3], FmtItem::Conv { spec, .. } if spec.zero && spec.width == 8 && spec.conv == b'x')
        );
        assert!(items[4].is_string_conv());
        assert_eq!(items[5], FmtItem::Text("\n".into()));
        let e = parse_printf("x %.2f").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.message.contains("`%.2f`"), "{}", e.message);
        assert!(parse_printf("100%")
            .unwrap_err()
            .message
            .contains("incomplete"));
        assert!(parse_printf("%ld").is_err());
        assert!(parse_printf("%é").is_err());
        assert_eq!(parse_printf("").unwrap(), vec![]);
    }

    #[test]
    fn pieces() {
        let f = Format {
            pieces: vec![
                Piece::Text("a=".into()),
                Piece::Int {
                    arg: 0,
                    spec: spec(b'd', 0, false, false),
                },
                Piece::Text(" ".into()),
                Piece::Execname(spec(b's', 6, true, false)),
                Piece::Text("|".into()),
                Piece::Pp(spec(b's', 0, false, false)),
                Piece::Probefunc(spec(b's', 0, false, false)),
                Piece::Str("x".into(), spec(b's', 3, false, false)),
                Piece::Int {
                    arg: 5,
                    spec: spec(b'd', 0, false, false),
                },
            ],
            nargs: 1,
        };
        assert_eq!(
            render(&f, &[7], "bash", "begin", "main"),
            "a=7 bash  |beginmain  x0"
        );
    }
}
