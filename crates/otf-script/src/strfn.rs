//! The string functions of the reference VM ([`StrFn`]), as SystemTap's tapsets define them.

use crate::bytecode::StrFn;
use crate::store::Value;

/// Call `f` with its string arguments `strs` and integer arguments `ints`, in parameter
/// order within each kind. `tok` is what `tokenize` has left (per program run).
pub fn call(f: StrFn, strs: &[String], ints: &[i64], tok: &mut String) -> Value {
    let s = |i: usize| strs.get(i).map_or("", String::as_str);
    let n = |i: usize| ints.get(i).copied().unwrap_or(0);
    match f {
        StrFn::Strlen => Value::Int(s(0).len() as i64),
        StrFn::Substr => {
            let b = s(0).as_bytes();
            let start = n(0).clamp(0, b.len() as i64) as usize;
            let len = n(1).max(0) as usize;
            let end = start.saturating_add(len).min(b.len());
            Value::Str(String::from_utf8_lossy(&b[start..end]).into_owned())
        }
        StrFn::Isinstr => Value::Int(s(0).contains(s(1)) as i64),
        StrFn::Strtol => Value::Int(strtol(s(0), n(0))),
        StrFn::StrReplace => {
            if s(1).is_empty() {
                Value::Str(s(0).to_string())
            } else {
                Value::Str(s(0).replace(s(1), s(2)))
            }
        }
        StrFn::TextStr => Value::Str(text_str(s(0))),
        StrFn::Stringat => {
            let b = s(0).as_bytes();
            Value::Int(
                usize::try_from(n(0))
                    .ok()
                    .and_then(|i| b.get(i))
                    .map_or(0, |&c| i64::from(c)),
            )
        }
        StrFn::Tokenize => {
            if !s(0).is_empty() {
                *tok = s(0).to_string();
            }
            let delim = s(1);
            // Skip leading delimiters, take up to the next one (strsep-like, empty tokens
            // skipped as SystemTap's tokenize does).
            let rest = tok.trim_start_matches(|c| delim.contains(c)).to_string();
            let end = rest.find(|c| delim.contains(c)).unwrap_or(rest.len());
            let token = rest[..end].to_string();
            *tok = rest[end..].to_string();
            Value::Str(token)
        }
    }
}

/// C's `strtol` as SystemTap's `strtol(str, base)`: optional space and sign, `0x`/`0`
/// prefixes with base 0 (or 16), digits up to the first invalid one; 0 without digits.
fn strtol(s: &str, base: i64) -> i64 {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (base, t) = match base {
        0 if t.starts_with("0x") || t.starts_with("0X") => (16, &t[2..]),
        0 if t.starts_with('0') && t.len() > 1 => (8, &t[1..]),
        0 => (10, t),
        16 if t.starts_with("0x") || t.starts_with("0X") => (16, &t[2..]),
        b if (2..=36).contains(&b) => (b as u32, t),
        _ => return 0,
    };
    let mut v: i64 = 0;
    for c in t.chars() {
        let Some(d) = c.to_digit(base) else { break };
        v = v.wrapping_mul(i64::from(base)).wrapping_add(i64::from(d));
    }
    if neg {
        v.wrapping_neg()
    } else {
        v
    }
}

/// SystemTap's `text_str`: printable ASCII kept, the rest as C escapes.
fn text_str(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            b => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_of(v: Value) -> String {
        v.str().to_string()
    }

    #[test]
    fn the_functions_follow_their_tapset_definitions() {
        let mut tok = String::new();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            call(StrFn::Strlen, &s(&["abc"]), &[], &mut tok),
            Value::Int(3)
        );
        assert_eq!(
            str_of(call(StrFn::Substr, &s(&["hello"]), &[1, 3], &mut tok)),
            "ell"
        );
        assert_eq!(
            str_of(call(StrFn::Substr, &s(&["hello"]), &[3, 99], &mut tok)),
            "lo"
        );
        assert_eq!(
            str_of(call(StrFn::Substr, &s(&["hello"]), &[9, 1], &mut tok)),
            ""
        );
        assert_eq!(
            call(StrFn::Isinstr, &s(&["hello", "ll"]), &[], &mut tok),
            Value::Int(1)
        );
        assert_eq!(
            call(StrFn::Isinstr, &s(&["hello", "x"]), &[], &mut tok),
            Value::Int(0)
        );
        assert_eq!(
            call(StrFn::Strtol, &s(&[" -42z"]), &[10], &mut tok),
            Value::Int(-42)
        );
        assert_eq!(
            call(StrFn::Strtol, &s(&["0x1f"]), &[0], &mut tok),
            Value::Int(31)
        );
        assert_eq!(
            call(StrFn::Strtol, &s(&["ff"]), &[16], &mut tok),
            Value::Int(255)
        );
        assert_eq!(
            call(StrFn::Strtol, &s(&["017"]), &[0], &mut tok),
            Value::Int(15)
        );
        assert_eq!(
            call(StrFn::Strtol, &s(&["x"]), &[10], &mut tok),
            Value::Int(0)
        );
        assert_eq!(
            str_of(call(
                StrFn::StrReplace,
                &s(&["a-b-c", "-", "+"]),
                &[],
                &mut tok
            )),
            "a+b+c"
        );
        assert_eq!(
            str_of(call(StrFn::TextStr, &s(&["a\nb\u{1}"]), &[], &mut tok)),
            "a\\nb\\001"
        );
        assert_eq!(
            call(StrFn::Stringat, &s(&["AB"]), &[1], &mut tok),
            Value::Int(66)
        );
        assert_eq!(
            call(StrFn::Stringat, &s(&["AB"]), &[5], &mut tok),
            Value::Int(0)
        );
        assert_eq!(
            str_of(call(StrFn::Tokenize, &s(&["a b  c", " "]), &[], &mut tok)),
            "a"
        );
        assert_eq!(
            str_of(call(StrFn::Tokenize, &s(&["", " "]), &[], &mut tok)),
            "b"
        );
        assert_eq!(
            str_of(call(StrFn::Tokenize, &s(&["", " "]), &[], &mut tok)),
            "c"
        );
        assert_eq!(
            str_of(call(StrFn::Tokenize, &s(&["", " "]), &[], &mut tok)),
            ""
        );
    }
}
