//! The string functions of the reference VM ([`StrFn`]), as current SystemTap defines them
//! (`tapset/string.stp`, `tapset/tokenize.stp`, `runtime/stp_string.c`) on a current kernel
//! (its `simple_strtol`, and `char` unsigned since Linux 6.2's `-funsigned-char`, which
//! SystemTap's modules are built with). They work on bytes, as SystemTap's C does.

use crate::bytecode::{StrFn, MAXSTRINGLEN};
use crate::store::Value;

/// The control characters SystemTap escapes by letter (`runtime/stp_string.c`, and
/// `_stp_vsprint_char` for `%#c`): the byte and the letter after the backslash. Every other
/// byte outside printable ASCII is escaped in octal (`\ooo`).
pub const CONTROL_ESCAPES: [(u8, u8); 7] = [
    (0x07, b'a'),
    (0x08, b'b'),
    (0x0c, b'f'),
    (b'\n', b'n'),
    (b'\r', b'r'),
    (b'\t', b't'),
    (0x0b, b'v'),
];

/// The letter escaping control character `b` ([`CONTROL_ESCAPES`]), if it has one.
pub fn control_escape(b: u8) -> Option<u8> {
    CONTROL_ESCAPES.iter().find(|e| e.0 == b).map(|e| e.1)
}

/// A run-time error raised by a string function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrError {
    /// `stringat(s, i)` with `i` outside `0..strlen(s)`: SystemTap's `STAP_ERROR("Position out
    /// of bounds")` (PR15044, since compatibility version 2.3).
    #[error("Position out of bounds")]
    PositionOutOfBounds,
}

/// Call `f` with its string arguments `strs` and integer arguments `ints`, in parameter
/// order within each kind. `tok` is what `tokenize` has left of its string (per program
/// run; `None` once used up, as SystemTap's `tok_start` is `NULL`).
pub fn call(
    f: StrFn,
    strs: &[String],
    ints: &[i64],
    tok: &mut Option<Vec<u8>>,
) -> Result<Value, StrError> {
    let s = |i: usize| strs.get(i).map_or(&b""[..], |s| s.as_bytes());
    let n = |i: usize| ints.get(i).copied().unwrap_or(0);
    let text = |b: &[u8]| Value::Str(String::from_utf8_lossy(b).into_owned());
    Ok(match f {
        StrFn::Strlen => Value::Int(s(0).len() as i64),
        StrFn::Substr => text(substr(s(0), n(0), n(1))),
        StrFn::Isinstr => Value::Int(find(s(0), s(1)).is_some() as i64),
        StrFn::Strtol => Value::Int(strtol(s(0), n(0))),
        StrFn::StrReplace => text(&str_replace(s(0), s(1), s(2))),
        StrFn::TextStr => Value::Str(text_str(s(0))),
        StrFn::Stringat => Value::Int(stringat(s(0), n(0))?),
        StrFn::Tokenize => text(&tokenize(s(0), s(1), tok)),
    })
}

/// The first position of `needle` in `hay` (C's `strstr`; an empty needle is at 0).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `substr`: `clamp_t(int64_t, length + 1, 0, MAXSTRINGLEN)` is the size given to
/// `strlcpy` (so at most `size - 1` bytes, and `length + 1` wraps: `i64::MAX` gives
/// nothing), from `start` if `0 <= start < strlen(s)`, else nothing.
fn substr(s: &[u8], start: i64, length: i64) -> &[u8] {
    let size = length.wrapping_add(1).clamp(0, MAXSTRINGLEN as i64) as usize;
    match usize::try_from(start) {
        Ok(start) if start < s.len() && size > 0 => {
            let rest = &s[start..];
            &rest[..rest.len().min(size - 1)]
        }
        _ => &[],
    }
}

/// `stringat`: the byte at `pos` (unsigned: `char` is since Linux 6.2), or the error.
fn stringat(s: &[u8], pos: i64) -> Result<i64, StrError> {
    usize::try_from(pos)
        .ok()
        .and_then(|i| s.get(i))
        .map(|&c| i64::from(c))
        .ok_or(StrError::PositionOutOfBounds)
}

/// `str_replace`: every `old` (left to right, not overlapping) replaced by `new`; `s`
/// itself when `old` is empty.
fn str_replace(s: &[u8], old: &[u8], new: &[u8]) -> Vec<u8> {
    if old.is_empty() {
        return s.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = find(rest, old) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(new);
        rest = &rest[i + old.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The kernel's `simple_strtol(s, NULL, base)`: a `-` (no white space, no `+`), then
/// `simple_strtoull`: with base 0, `0x` followed by a hex digit is 16, another leading `0`
/// is 8, anything else 10; with base 16 a `0x` is skipped. The digits are `0-9`, `a-f` and
/// `A-F` only (whatever the base), each below the base, which is the argument as an
/// `unsigned int`; no check of the base and no error, the value wraps.
fn strtol(s: &[u8], base: i64) -> i64 {
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut base = base as u32;
    if base == 0 {
        base = if at(0) != b'0' {
            10
        } else if at(1) | 0x20 == b'x' && at(2).is_ascii_hexdigit() {
            16
        } else {
            8
        };
    }
    let mut i = 0;
    if base == 16 && at(0) == b'0' && at(1) | 0x20 == b'x' {
        i = 2;
    }
    let mut v: u64 = 0;
    loop {
        let c = at(i);
        let d = match c {
            b'0'..=b'9' => c - b'0',
            _ if (b'a'..=b'f').contains(&(c | 0x20)) => (c | 0x20) - b'a' + 10,
            _ => break,
        };
        if u32::from(d) >= base {
            break;
        }
        v = v.wrapping_mul(u64::from(base)).wrapping_add(u64::from(d));
        i += 1;
    }
    (if neg { v.wrapping_neg() } else { v }) as i64
}

/// `_stp_decode_utf8` on `s` zero-padded (the string's NUL and the buffer after it), at
/// `p`, with `size` bytes left: (code point, bytes). A lead byte without its continuation
/// bytes (or the room for them), a surrogate, a value above U+10FFFF or an overlong form is
/// the byte itself.
fn decode_utf8(s: &[u8], p: usize, size: usize) -> (u32, usize) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let b = at(p);
    let size = size - 1;
    let (n, mut c) = match b {
        _ if b & 0xE0 == 0xC0 && size >= 1 => (2, u32::from(b & 0x1F)),
        _ if b & 0xF0 == 0xE0 && size >= 2 => (3, u32::from(b & 0xF)),
        _ if b & 0xF8 == 0xF0 && size >= 3 => (4, u32::from(b & 0x7)),
        _ => return (u32::from(b), 1),
    };
    for k in 1..n {
        let b2 = at(p + k);
        if b2 & 0xC0 != 0x80 {
            return (u32::from(b), 1);
        }
        c = (c << 6) | u32::from(b2 & 0x3F);
    }
    let overlong = c < 0x80 || (n == 3 && c < 0x800) || (n == 4 && c < 0x10000);
    if (0xD800..=0xDFFF).contains(&c) || c > 0x10FFFF || overlong {
        return (u32::from(b), 1);
    }
    (c, n)
}

/// `text_str` (`_stp_text_str(out, in, 0, 0, 0, 0, 0)`): printable ASCII but `"` and `\`
/// kept; `\a \b \f \n \r \t \v \" \\` as two characters; a whole UTF-8 character as
/// `\uXXXX` (`\UXXXXXXXX` above U+FFFF, upper-case hex); any other byte as `\ooo`. At most
/// MAXSTRINGLEN - 1 bytes of input are read and written: it stops before the first escape
/// (or character) that does not fit whole.
fn text_str(s: &[u8]) -> String {
    const MAX: usize = MAXSTRINGLEN - 1;
    let mut out = String::new();
    let mut p = 0;
    while p < MAX {
        let (c, n) = decode_utf8(s, p, MAX - p);
        if c == 0 {
            break;
        }
        let esc = if n > 1 {
            if c <= 0xFFFF {
                format!("\\u{c:04X}")
            } else {
                format!("\\U{c:08X}")
            }
        } else {
            let b = c as u8;
            match b {
                b'"' | b'\\' => format!("\\{}", b as char),
                0x20..=0x7e => (b as char).to_string(),
                _ => match control_escape(b) {
                    Some(e) => format!("\\{}", e as char),
                    None => format!("\\{b:03o}"),
                },
            }
        };
        if out.len() + esc.len() > MAX {
            break;
        }
        out.push_str(&esc);
        p += n;
    }
    out
}

/// `tokenize(input, delim)`: a non-empty `input` starts over (`strlcpy` into the context's
/// buffer); then `strsep` with the bytes of `delim` until a token that is not empty, which
/// is the result ("" when none is left).
fn tokenize(input: &[u8], delim: &[u8], tok: &mut Option<Vec<u8>>) -> Vec<u8> {
    if !input.is_empty() {
        *tok = Some(input[..input.len().min(MAXSTRINGLEN - 1)].to_vec());
    }
    while let Some(rest) = tok.take() {
        let token = match rest.iter().position(|b| delim.contains(b)) {
            Some(i) => {
                *tok = Some(rest[i + 1..].to_vec());
                rest[..i].to_vec()
            }
            None => rest,
        };
        if !token.is_empty() {
            return token;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: StrFn, strs: &[&str], ints: &[i64], tok: &mut Option<Vec<u8>>) -> Value {
        let strs: Vec<String> = strs.iter().map(|s| s.to_string()).collect();
        call(f, &strs, ints, tok).expect("no error")
    }

    fn int(f: StrFn, strs: &[&str], ints: &[i64]) -> i64 {
        match run(f, strs, ints, &mut None) {
            Value::Int(v) => v,
            v => panic!("{f:?}: not an integer: {v:?}"),
        }
    }

    fn string(f: StrFn, strs: &[&str], ints: &[i64]) -> String {
        run(f, strs, ints, &mut None).str().to_string()
    }

    /// SystemTap's testsuite/systemtap.string/substr.exp, and the wrapping `length + 1` of
    /// `clamp_t(int64_t, STAP_ARG_length + 1, 0, MAXSTRINGLEN)`.
    #[test]
    fn substr_as_the_tapset() {
        let s = "Hello World!";
        let sub = |a, b| string(StrFn::Substr, &[s], &[a, b]);
        for (start, len, want) in [
            (0, 0, ""),
            (-1, 10, ""),
            (10, 0, ""),
            (0, 1, "H"),
            (2, 5, "llo W"),
            (11, 1, "!"),
            (11, 100, "!"),
            (12, 1, ""),
            (0, 100000, "Hello World!"),
            (0, -1, ""),
            (0, i64::MAX, ""),
            (0, i64::MAX - 1, "Hello World!"),
            (i64::MIN, 5, ""),
        ] {
            assert_eq!(sub(start, len), want, "substr(s, {start}, {len})");
        }
        let long = "y".repeat(127);
        assert_eq!(string(StrFn::Substr, &[&long], &[0, 126]).len(), 126);
        assert_eq!(string(StrFn::Substr, &[&long], &[0, 127]).len(), 127);
        assert_eq!(string(StrFn::Substr, &[&long], &[1, 500]).len(), 126);
    }

    /// `stringat`: `STAP_ERROR("Position out of bounds")` outside `0..strlen`; the byte as
    /// an unsigned `char`.
    #[test]
    fn stringat_raises_position_out_of_bounds() {
        assert_eq!(int(StrFn::Stringat, &["AB"], &[1]), 66);
        assert_eq!(int(StrFn::Stringat, &["é"], &[0]), 0xc3);
        let strs = vec!["AB".to_string()];
        for pos in [2, 5, -1, i64::MIN] {
            assert_eq!(
                call(StrFn::Stringat, &strs, &[pos], &mut None),
                Err(StrError::PositionOutOfBounds),
                "stringat(\"AB\", {pos})"
            );
        }
        assert_eq!(
            call(StrFn::Stringat, &[String::new()], &[0], &mut None),
            Err(StrError::PositionOutOfBounds)
        );
        assert_eq!(
            StrError::PositionOutOfBounds.to_string(),
            "Position out of bounds"
        );
    }

    /// SystemTap's testsuite/systemtap.string/strtol.exp, and the kernel's
    /// `simple_strtol`: no white space or `+`, only hex digits, any base.
    #[test]
    fn strtol_as_the_kernels_simple_strtol() {
        let t = |s: &str, base| int(StrFn::Strtol, &[s], &[base]);
        for (s, base, want) in [
            ("1", 10, 1),
            ("-1", 10, -1),
            ("-123456789", 10, -123456789),
            ("abcdef", 10, 0),
            ("1a2b3c4d5e6f7g8h9", 10, 1),
            (" 1 2 3 4", 10, 0),
            ("", 10, 0),
            ("1000", 16, 4096),
            ("1000", 8, 512),
            ("1000", 2, 8),
            // The kernel's differences from C's strtol.
            (" 42", 10, 0),
            ("+12", 10, 0),
            ("--5", 10, 0),
            ("0x1F", 0, 31),
            ("0X1f", 16, 31),
            ("-0x10", 0, -16),
            ("0xg", 0, 0),
            ("0x", 16, 0),
            ("017", 0, 15),
            ("09", 0, 0),
            ("0", 0, 0),
            // Digits are 0-9a-f only, whatever the base; bases are not checked.
            ("z", 36, 0),
            ("fg", 36, 15),
            ("10", 1, 0),
            ("00", 1, 0),
            ("12", 37, 37 + 2),
            ("ff", -1, 15 * 0xffff_ffff + 15),
            ("11", (1 << 32) + 2, 3),
            // Wrapping.
            ("-9223372036854775808", 10, i64::MIN),
            ("9223372036854775808", 10, i64::MIN),
            ("18446744073709551617", 10, 1),
        ] {
            assert_eq!(t(s, base), want, "strtol({s:?}, {base})");
        }
    }

    /// `_stp_text_str`: SystemTap's testsuite/systemtap.string/text_str.exp, the short
    /// escapes, UTF-8 as `\u`/`\U`, and no escape cut at 127 bytes.
    #[test]
    fn text_str_as_stp_text_str() {
        let t = |s: &str| string(StrFn::TextStr, &[s], &[]);
        assert_eq!(t("\n\nXYZZY\x19"), "\\n\\nXYZZY\\031");
        assert_eq!(t("?\x07\n\n\r\n"), "?\\a\\n\\n\\r\\n");
        assert_eq!(t("\x07\x08\x0c\x0b\t\"\\"), "\\a\\b\\f\\v\\t\\\"\\\\");
        assert_eq!(t("a\u{1}\u{7f}"), "a\\001\\177");
        assert_eq!(t("é ü"), "\\u00E9 \\u00FC");
        assert_eq!(t("€😀"), "\\u20AC\\U0001F600");
        // 126 bytes, then an escape of 2, 4 or 6 bytes: none is cut, none fits.
        let pad = "y".repeat(125);
        assert_eq!(t(&format!("{pad}\n")), format!("{pad}\\n"));
        assert_eq!(t(&format!("{pad}x\n")), format!("{pad}x"));
        assert_eq!(t(&format!("{pad}\u{1}")), pad);
        assert_eq!(t(&format!("{}é", "y".repeat(122))), "y".repeat(122));
        assert_eq!(
            t(&format!("{}é", "y".repeat(121))),
            format!("{}\\u00E9", "y".repeat(121))
        );
        // 43 bytes of \001 would be 172: it stops at the last whole one (31 of them).
        assert_eq!(t(&"\u{1}".repeat(43)), "\\001".repeat(31));
    }

    /// `_stp_decode_utf8`: bytes that are no UTF-8 character are octal escapes.
    #[test]
    fn text_str_of_bytes_that_are_not_utf8() {
        let t = |b: &[u8]| text_str(b);
        assert_eq!(t(b"\xc3"), "\\303");
        assert_eq!(t(b"\xc3x"), "\\303x");
        assert_eq!(t(b"\xc0\x80"), "\\300\\200");
        assert_eq!(t(b"\xed\xa0\x80"), "\\355\\240\\200");
        assert_eq!(t(b"\xf4\x90\x80\x80"), "\\364\\220\\200\\200");
        assert_eq!(t(b"\xff"), "\\377");
    }

    /// SystemTap's testsuite/systemtap.string/tokenize.exp, and `strsep` on bytes.
    #[test]
    fn tokenize_as_the_tapset() {
        let all = |s: &str, delim: &str| {
            let mut tok = None;
            let mut out = Vec::new();
            let mut t = run(StrFn::Tokenize, &[s, delim], &[], &mut tok);
            while !t.str().is_empty() {
                out.push(t.str().to_string());
                t = run(StrFn::Tokenize, &["", delim], &[], &mut tok);
            }
            out
        };
        assert_eq!(all("a,b,c,d", ","), ["a", "b", "c", "d"]);
        assert_eq!(all("one|two", ","), ["one|two"]);
        assert_eq!(all("1,,2,3, ,4", ","), ["1", "2", "3", " ", "4"]);
        assert_eq!(all("", ","), Vec::<String>::new());
        assert_eq!(
            all("this is a string, which", ", "),
            ["this", "is", "a", "string", "which"]
        );
        assert_eq!(all(",,a,,", ","), ["a"]);
        assert_eq!(all("a b", ""), ["a b"]);
        // A delimiter is a set of bytes.
        assert_eq!(all("aébéc", "é"), ["a", "b", "c"]);
        // "" continues, or gives "" when nothing was started.
        let mut tok = None;
        let t = run(StrFn::Tokenize, &["", ","], &[], &mut tok);
        assert_eq!(t.str(), "");
        let t = run(StrFn::Tokenize, &["x,y", ","], &[], &mut tok);
        assert_eq!(t.str(), "x");
        let t = run(StrFn::Tokenize, &["p", ","], &[], &mut tok);
        assert_eq!(t.str(), "p", "a non-empty string starts over");
        let t = run(StrFn::Tokenize, &["", ","], &[], &mut tok);
        assert_eq!(t.str(), "");
    }

    #[test]
    fn isinstr_str_replace_and_strlen() {
        assert_eq!(int(StrFn::Strlen, &["abc"], &[]), 3);
        assert_eq!(int(StrFn::Isinstr, &["hello", "ll"], &[]), 1);
        assert_eq!(int(StrFn::Isinstr, &["hello", "x"], &[]), 0);
        assert_eq!(int(StrFn::Isinstr, &["hello", ""], &[]), 1);
        assert_eq!(
            string(StrFn::StrReplace, &["a-b-c", "-", "+"], &[]),
            "a+b+c"
        );
        assert_eq!(string(StrFn::StrReplace, &["aaa", "aa", "b"], &[]), "ba");
        assert_eq!(string(StrFn::StrReplace, &["abc", "", "x"], &[]), "abc");
    }
}
