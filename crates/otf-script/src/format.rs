//! Rendering output records: a [`Format`] and a record's integer arguments to bytes, as
//! SystemTap's runtime prints them.
//!
//! The rules follow SystemTap's runtime (`runtime/vsprintf.c`: `number()`,
//! `_stp_vsprint_char`, `_stp_vsprint_memory`, `_stp_vsprint_binary`) as its translator's
//! compiled printf calls them (`translate.cxx`, `emit_compiled_printfs`). They differ from C's
//! `printf` in a few places:
//!
//! - `%#x`, `%#X` and `%#o` prefix `0x`, `0X` and `0` to every value, 0 included (`0x0`, `00`).
//! - `%p` is `%#x`: `0x` and the hexadecimal digits, no padding of its own (`%p` of 0 is `0x0`).
//! - The `0` flag still pads with zeros when a precision is given (`%08.3d` of 5 is `00000005`).
//! - `%.0s` prints nothing, `%.s` (no digits) is `%s`.
//! - A `*` width or `.*` precision argument is read as a 32-bit `int` and clamped to
//!   `0..=`[`MAX_WIDTH`]: a negative width is 0 (not left-justification, as C's would be).
//! - `%05s` pads with spaces and writes a NUL byte after the field.
//! - `%b` writes the value's bytes in native order: 1, 2, 4 or 8 of them, chosen by the
//!   precision, else by the width when it is one of those, else 8; a wider field is padded
//!   with NUL bytes (after the value with `-`).
//! - `%m` and `%M` dump memory ([`crate::memdump`]): `precision` bytes (default 1) read
//!   at the address, as they are or as lowercase hexadecimal.
//! - `%c` writes the value's low byte; `%#c` escapes it as C does (`\n`, `\'`, `\ooo`) when
//!   it is not printable ASCII or is a quote or backslash.
//! - Widths and precisions count bytes, not characters.
//!
//! Length modifiers `l` and `ll` are accepted and ignored: every value is 64-bit. SystemTap's
//! translator takes at most one flag and a single `l`; several flags (`%-#10x`) and `ll` are
//! accepted here and printed as the runtime's `_stp_vsnprintf` would print them.

use crate::bytecode::{Format, Piece, Spec};
use crate::memdump;

/// Render one output record to bytes, exactly as SystemTap would write them. `args` are the
/// record's integer arguments; `execname`, `pp` and `probefunc` are the strings of the hit
/// (used by [`Piece::Execname`], [`Piece::Pp`] and [`Piece::Probefunc`]). A missing argument
/// renders as 0.
pub fn render_bytes(
    fmt: &Format,
    args: &[i64],
    execname: &str,
    pp: &str,
    probefunc: &str,
) -> Vec<u8> {
    render_bytes_strs(fmt, args, &[], execname, pp, probefunc)
}

/// [`render_bytes`] of a record that also carries string arguments ([`Piece::StrVal`]).
pub fn render_bytes_strs(
    fmt: &Format,
    args: &[i64],
    strs: &[String],
    execname: &str,
    pp: &str,
    probefunc: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in &fmt.pieces {
        match piece {
            Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
            Piece::Int { arg, spec } => {
                let (field, value_at) = field(spec, args, *arg);
                push_int(&mut out, arg_at(args, value_at), spec, field);
            }
            Piece::Execname { arg, spec } => push_str(&mut out, execname, spec, args, *arg),
            Piece::Pp { arg, spec } => push_str(&mut out, pp, spec, args, *arg),
            Piece::Probefunc { arg, spec } => push_str(&mut out, probefunc, spec, args, *arg),
            Piece::Str { text, arg, spec } => push_str(&mut out, text, spec, args, *arg),
            Piece::StrVal { sarg, arg, spec } => {
                let t = strs.get(*sarg).map_or("", String::as_str);
                push_str(&mut out, t, spec, args, *arg)
            }
            Piece::Mem { arg, at, spec } => {
                let (field, _) = field(spec, args, *arg);
                let prec = arg_at(args, arg + usize::from(spec.star_width));
                let len = memdump::dump_len(spec, prec);
                let words = args.get(*at..).unwrap_or(&[]);
                let bytes = memdump::bytes_of(&words[..words.len().min(len.div_ceil(8))], len);
                memdump::push_dump(&mut out, &bytes, spec, field.width);
            }
            // Rendered by the runtime, which has the aggregate ([`crate::hist`]).
            Piece::Hist { .. } => {}
        }
    }
    out
}

/// Render one output record as text: [`render_bytes`], with any byte sequence that is not
/// UTF-8 (a `%c` of a byte above 0x7f, a `%.Ns` cutting a character) replaced by U+FFFD.
pub fn render(fmt: &Format, args: &[i64], execname: &str, pp: &str, probefunc: &str) -> String {
    into_text(render_bytes(fmt, args, execname, pp, probefunc))
}

/// The result of a `sprintf` ([`Op::SFormat`](crate::bytecode::Op::SFormat)): [`render`]
/// of a record that also carries string arguments ([`Piece::StrVal`]), up to its first NUL
/// byte (a `%c` of 0, a `%05s`), where SystemTap's string (a C string) ends.
pub fn render_strs(
    fmt: &Format,
    args: &[i64],
    strs: &[String],
    execname: &str,
    pp: &str,
    probefunc: &str,
) -> String {
    let mut b = render_bytes_strs(fmt, args, strs, execname, pp, probefunc);
    if let Some(nul) = b.iter().position(|&c| c == 0) {
        b.truncate(nul);
    }
    into_text(b)
}

/// Format one integer by a conversion (`d i u x X o c p b`; `s` prints the value as `%d`
/// does). A `*` width or `.*` precision counts as absent. Non-UTF-8 output is replaced as by
/// [`render`].
pub fn format_int(v: i64, spec: &Spec) -> String {
    let field = Field {
        width: if spec.star_width {
            0
        } else {
            spec.width as usize
        },
        precision: if spec.star_prec {
            None
        } else {
            spec.precision.map(|p| p as usize)
        },
    };
    let mut out = Vec::new();
    push_int(&mut out, v, spec, field);
    into_text(out)
}

fn into_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A conversion's width and precision once its `*` arguments are read.
#[derive(Clone, Copy, Debug)]
struct Field {
    width: usize,
    precision: Option<usize>,
}

fn arg_at(args: &[i64], i: usize) -> i64 {
    args.get(i).copied().unwrap_or(0)
}

/// A `*` width or `.*` precision argument: SystemTap reads it as an `int` and clamps it to
/// `0..=` the space left (here [`MAX_WIDTH`]).
fn dyn_value(v: i64) -> usize {
    (v as i32).clamp(0, MAX_WIDTH as i32) as usize
}

/// The width and precision of `spec`, reading its `*` arguments from `args[arg..]`, and the
/// index of the argument after them.
fn field(spec: &Spec, args: &[i64], arg: usize) -> (Field, usize) {
    let mut i = arg;
    let width = if spec.star_width {
        i = i.saturating_add(1);
        dyn_value(arg_at(args, i - 1))
    } else {
        spec.width as usize
    };
    let precision = if spec.star_prec {
        i = i.saturating_add(1);
        Some(dyn_value(arg_at(args, i - 1)))
    } else {
        spec.precision.map(|p| p as usize)
    };
    (Field { width, precision }, i)
}

fn push_int(out: &mut Vec<u8>, v: i64, spec: &Spec, field: Field) {
    match spec.conv {
        b'u' => push_number(out, v, 10, false, false, spec, field),
        b'x' => push_number(out, v, 16, false, false, spec, field),
        b'X' => push_number(out, v, 16, true, false, spec, field),
        b'o' => push_number(out, v, 8, false, false, spec, field),
        b'p' => {
            let spec = Spec { alt: true, ..*spec };
            push_number(out, v, 16, false, false, &spec, field)
        }
        b'c' => push_char(out, v as u8, spec, field),
        b'b' => push_binary(out, v, spec, field),
        _ => push_number(out, v, 10, false, true, spec, field),
    }
}

fn pad(out: &mut Vec<u8>, byte: u8, n: usize) {
    out.extend(std::iter::repeat_n(byte, n));
}

/// SystemTap's `number()`: sign, `#` prefix, zero or space padding, precision zeros, digits.
fn push_number(
    out: &mut Vec<u8>,
    v: i64,
    base: u64,
    upper: bool,
    signed: bool,
    spec: &Spec,
    field: Field,
) {
    let left = spec.left;
    let zeropad = spec.zero && !left;
    let mut num = v as u64;
    let sign = if !signed {
        None
    } else if v < 0 {
        num = v.unsigned_abs();
        Some(b'-')
    } else if spec.plus {
        Some(b'+')
    } else if spec.space {
        Some(b' ')
    } else {
        None
    };
    let prefix: &[u8] = match (spec.alt, base, upper) {
        (true, 16, false) => b"0x",
        (true, 16, true) => b"0X",
        (true, 8, _) => b"0",
        _ => b"",
    };
    let digits_of: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut digits = Vec::with_capacity(22);
    loop {
        digits.push(digits_of[(num % base) as usize]);
        num /= base;
        if num == 0 {
            break;
        }
    }
    digits.reverse();
    let precision = field.precision.unwrap_or(0).max(digits.len());
    let used = usize::from(sign.is_some()) + prefix.len() + precision;
    let fill = field.width.saturating_sub(used);
    if !zeropad && !left {
        pad(out, b' ', fill);
    }
    out.extend(sign);
    out.extend_from_slice(prefix);
    if zeropad {
        pad(out, b'0', fill);
    }
    pad(out, b'0', precision - digits.len());
    out.extend_from_slice(&digits);
    if left {
        pad(out, b' ', fill);
    }
}

/// SystemTap's `_stp_vsprint_char`: the low byte, escaped by `#` when it is not printable
/// ASCII or is `'` or `\\`, padded with spaces.
fn push_char(out: &mut Vec<u8>, c: u8, spec: &Spec, field: Field) {
    let mut body = Vec::with_capacity(4);
    if spec.alt && (!(0x20..0x7f).contains(&c) || c == b'\'' || c == b'\\') {
        body.push(b'\\');
        match (c, crate::strfn::control_escape(c)) {
            (_, Some(e)) => body.push(e),
            (b'\'' | b'\\', None) => body.push(c),
            _ => body.extend([b'0' + (c >> 6), b'0' + ((c >> 3) & 7), b'0' + (c & 7)]),
        }
    } else {
        body.push(c);
    }
    let fill = field.width.saturating_sub(body.len());
    if !spec.left {
        pad(out, b' ', fill);
    }
    out.extend_from_slice(&body);
    if spec.left {
        pad(out, b' ', fill);
    }
}

/// SystemTap's `_stp_vsprint_binary`: the value's bytes in native order.
fn push_binary(out: &mut Vec<u8>, v: i64, spec: &Spec, field: Field) {
    let valid = |n: usize| matches!(n, 1 | 2 | 4 | 8).then_some(n);
    // A width of 0 behaves as no width: SystemTap's -1 and 0 give the same bytes.
    let width = (field.width > 0).then_some(field.width);
    let (width, size) = match (width, field.precision.and_then(valid)) {
        (None, None) => (8, 8),
        (None, Some(p)) => (p, p),
        (Some(w), Some(p)) => (w, p),
        (Some(w), None) => (w, valid(w).unwrap_or(8)),
    };
    let fill = width.saturating_sub(size);
    if !spec.left {
        pad(out, 0, fill);
    }
    match size {
        1 => out.extend((v as i8).to_ne_bytes()),
        2 => out.extend((v as i16).to_ne_bytes()),
        4 => out.extend((v as i32).to_ne_bytes()),
        _ => out.extend(v.to_ne_bytes()),
    }
    if spec.left {
        pad(out, 0, fill);
    }
}

/// SystemTap's `_stp_vsprint_memory` for `%s`: at most `precision` bytes, padded with spaces;
/// the `0` flag writes a NUL byte after the field.
fn push_str(out: &mut Vec<u8>, s: &str, spec: &Spec, args: &[i64], arg: usize) {
    let (field, _) = field(spec, args, arg);
    let s = s.as_bytes();
    let body = &s[..field.precision.map_or(s.len(), |p| p.min(s.len()))];
    let fill = field.width.saturating_sub(body.len());
    if !spec.left {
        pad(out, b' ', fill);
    }
    out.extend_from_slice(body);
    if spec.left {
        pad(out, b' ', fill);
    }
    if spec.zero {
        out.push(0);
    }
}

/// Why a `sprintf` format cannot run in the kernel with SystemTap's output: the messages of
/// [`KernelFormat::of`]'s refusals, indexed by their code minus 1 (the code is kept in the
/// `SFormat` instruction, see [`crate::vm::user_space_only`]).
pub const KERNEL_SPRINTF_REFUSALS: [&str; 2] = [
    "`sprintf` with text that is not ASCII or holds a NUL byte",
    "`sprintf` with `%b`, `%m`, `%M` or a histogram in the format",
];

/// A `sprintf` format as the kernel prints it, identically to SystemTap's runtime: either
/// for the kernel's `bpf_snprintf` helper (its format string and the values of its
/// arguments array), or, when that helper cannot print it, for the native formatter of the
/// code generator ([`KernelFormat::native`]: the pieces themselves).
///
/// `bpf_snprintf` (kernel/bpf/helpers.c, `bpf_bprintf_prepare`) takes at most 12 u64
/// arguments and conversions `%[0 +-][width]` + `d i u x X` (with `ll`: 64-bit), `s`, `c`
/// and pointer forms, no `#`, no precision, no `*`, printable ASCII text only, and a `%s` may
/// not be followed by a letter or digit. Those it takes print as SystemTap prints them,
/// except `%c` (SystemTap keeps a NUL byte, the kernel ends the string there). So:
/// integers become `%lld`-style conversions with the same flags and width; `%#x`/`%#X` and
/// `%p` without width or flags become the literal `0x`/`0X` and `%llx`/`%llX`; strings
/// `%[-][width]s`, passed as pointers to their string slots; text right after a `%s` that
/// starts with a letter or digit starts with a `%c` of that constant byte instead; string
/// literals formatted with a constant width are rendered here. Any other format is native
/// (`%c`, `%o`, `#`, precisions, `*` widths and precisions, more values), unless it has
/// a piece the native formatter does not print (a code of [`KERNEL_SPRINTF_REFUSALS`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFormat {
    /// The format string, NUL-terminated (empty for a native format).
    pub text: Vec<u8>,
    /// The arguments array, in order (empty for a native format).
    pub args: Vec<KernelArg>,
    /// The pieces of a format for the native formatter (`None`: `bpf_snprintf`'s): text
    /// (ASCII, no NUL), [`Piece::Int`] (any conversion but `%b`, which the checker refuses), [`Piece::StrVal`]
    /// and [`Piece::Str`] (with a `*` width or `.*` precision; else rendered as text).
    pub native: Option<Vec<Piece>>,
}

/// One value of [`KernelFormat::args`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelArg {
    /// Integer argument `i` of the `SFormat` instruction (0: the first pushed).
    Int(usize),
    /// A pointer to string argument `i` (0: the first pushed).
    Str(usize),
    /// A constant (a `%c` byte).
    Const(u8),
}

/// The most arguments `bpf_snprintf` takes.
pub const KERNEL_MAX_ARGS: usize = 12;

impl KernelFormat {
    /// The format for `bpf_snprintf` if it prints `fmt` as SystemTap does, else the one for
    /// the native formatter, or the code (1-based index into [`KERNEL_SPRINTF_REFUSALS`]) of
    /// why neither does.
    pub fn of(fmt: &Format) -> Result<KernelFormat, u8> {
        match Self::snprintf(fmt) {
            Some(k) => Ok(k),
            None => Self::native_of(fmt),
        }
    }

    /// The format for the native formatter ([`KernelFormat::native`]), or the refusal code.
    fn native_of(fmt: &Format) -> Result<KernelFormat, u8> {
        let ascii = |t: &[u8]| t.iter().all(|&c| c != 0 && c.is_ascii());
        let mut pieces = Vec::new();
        for piece in &fmt.pieces {
            match piece {
                Piece::Text(t) if !ascii(t.as_bytes()) => return Err(1),
                Piece::Text(_) => {}
                // `%b` is refused by the checker.
                Piece::Int { spec, .. } if spec.conv == b'b' => return Err(2),
                Piece::Int { .. } => {}
                Piece::Str { text, spec, arg } if spec.dyn_args() == 0 => {
                    let mut out = Vec::new();
                    push_str(&mut out, text, spec, &[], *arg);
                    // The NUL byte of the `0` flag ends the result.
                    let nul = out.iter().position(|&c| c == 0);
                    let body = &out[..nul.unwrap_or(out.len())];
                    if !ascii(body) {
                        return Err(1);
                    }
                    pieces.push(Piece::Text(String::from_utf8_lossy(body).into_owned()));
                    if nul.is_some() {
                        break;
                    }
                    continue;
                }
                Piece::Str { text, .. } if !ascii(text.as_bytes()) => return Err(1),
                Piece::Str { .. } | Piece::StrVal { .. } => {}
                // Never in a `sprintf` (the compiler makes context strings string values).
                Piece::Execname { .. } | Piece::Pp { .. } | Piece::Probefunc { .. } => {
                    return Err(2)
                }
                Piece::Hist { .. } | Piece::Mem { .. } => return Err(2),
            }
            pieces.push(piece.clone());
        }
        Ok(KernelFormat {
            text: vec![0],
            args: Vec::new(),
            native: Some(pieces),
        })
    }

    /// The format for `bpf_snprintf`, if it prints `fmt` as SystemTap does.
    fn snprintf(fmt: &Format) -> Option<KernelFormat> {
        let mut text = Vec::new();
        let mut args = Vec::new();
        let mut after_s = false;
        let mut nstr = 0usize;
        for piece in &fmt.pieces {
            let lit: Vec<u8> = match piece {
                Piece::Text(t) => t.as_bytes().to_vec(),
                Piece::Str { text: t, arg, spec } => {
                    if spec.dyn_args() > 0 {
                        return None;
                    }
                    if spec.zero {
                        return None;
                    }
                    let mut out = Vec::new();
                    push_str(&mut out, t, spec, &[], *arg);
                    out
                }
                Piece::Int { arg, spec } => {
                    if spec.dyn_args() > 0 {
                        return None;
                    }
                    if spec.precision.is_some() {
                        return None;
                    }
                    let plain = spec.width == 0 && !spec.left && !spec.zero;
                    let conv = match spec.conv {
                        b'd' | b'i' | b'u' => spec.conv,
                        b'x' | b'X' if !spec.alt => spec.conv,
                        b'x' | b'X' | b'p' if plain => {
                            let up = spec.conv == b'X';
                            text.extend_from_slice(if up { b"0X" } else { b"0x" });
                            if up {
                                b'X'
                            } else {
                                b'x'
                            }
                        }
                        b'x' | b'X' | b'p' => return None,
                        _ => return None,
                    };
                    text.push(b'%');
                    push_flags(&mut text, spec, true);
                    text.extend_from_slice(b"ll");
                    text.push(conv);
                    args.push(KernelArg::Int(*arg));
                    after_s = false;
                    continue;
                }
                Piece::StrVal { sarg, spec, .. } => {
                    if spec.dyn_args() > 0 {
                        return None;
                    }
                    if spec.precision.is_some() {
                        return None;
                    }
                    if spec.zero {
                        return None;
                    }
                    text.push(b'%');
                    push_flags(&mut text, spec, false);
                    text.push(b's');
                    args.push(KernelArg::Str(*sarg));
                    nstr += 1;
                    after_s = true;
                    continue;
                }
                Piece::Execname { .. }
                | Piece::Pp { .. }
                | Piece::Probefunc { .. }
                | Piece::Hist { .. }
                | Piece::Mem { .. } => return None,
            };
            if lit.is_empty() {
                continue;
            }
            if lit
                .iter()
                .any(|&c| !(c.is_ascii_graphic() || c == b' ' || (0x09..=0x0d).contains(&c)))
            {
                return None;
            }
            let mut rest = &lit[..];
            if after_s && lit[0].is_ascii_alphanumeric() {
                // `bpf_bprintf_prepare` refuses a letter or digit right after `%s`.
                text.extend_from_slice(b"%c");
                args.push(KernelArg::Const(lit[0]));
                rest = &lit[1..];
            }
            for &c in rest {
                if c == b'%' {
                    text.push(b'%');
                }
                text.push(c);
            }
            after_s = false;
        }
        // The kernel copies the strings and the other values into one 512-byte buffer
        // (`MAX_BPRINTF_BIN_ARGS`): 128 bytes per string, at most 12 per other value.
        if args.len() > KERNEL_MAX_ARGS || nstr * 128 + (args.len() - nstr) * 12 > 512 {
            return None;
        }
        text.push(0);
        Some(KernelFormat {
            text,
            args,
            native: None,
        })
    }
}

impl KernelFormat {
    /// The format as one string (a literal of the compiled script, which the code generator
    /// reads back with [`KernelFormat::decode`]): the format text, a NUL, then one byte per
    /// argument: 1 an integer, 2 a string, anything else that constant byte. A native format
    /// is [`NATIVE_TAG`] and its pieces as text ([`encode_native`]).
    pub fn encode(&self) -> String {
        if let Some(pieces) = &self.native {
            return encode_native(pieces);
        }
        let mut b = self.text.clone();
        if b.last() != Some(&0) {
            b.push(0);
        }
        for a in &self.args {
            b.push(match *a {
                KernelArg::Int(_) => 1,
                KernelArg::Str(_) => 2,
                KernelArg::Const(c) => c,
            });
        }
        String::from_utf8_lossy(&b).into_owned()
    }

    /// The format [`KernelFormat::encode`] wrote, if `s` is one.
    pub fn decode(s: &str) -> Option<KernelFormat> {
        if let Some(rest) = s.strip_prefix(NATIVE_TAG) {
            return Some(KernelFormat {
                text: vec![0],
                args: Vec::new(),
                native: Some(decode_native(rest)?),
            });
        }
        let b = s.as_bytes();
        let nul = b.iter().position(|&c| c == 0)?;
        let (mut ni, mut ns) = (0, 0);
        let args = b[nul + 1..]
            .iter()
            .map(|&c| match c {
                1 => {
                    ni += 1;
                    KernelArg::Int(ni - 1)
                }
                2 => {
                    ns += 1;
                    KernelArg::Str(ns - 1)
                }
                c => KernelArg::Const(c),
            })
            .collect::<Vec<_>>();
        (args.len() <= KERNEL_MAX_ARGS).then(|| KernelFormat {
            text: b[..=nul].to_vec(),
            args,
            native: None,
        })
    }
}

/// How an encoded native [`KernelFormat`] starts (a `bpf_snprintf` format never starts with
/// a control character).
pub const NATIVE_TAG: &str = "\u{1}N";

/// A spec as text: `conv flags width precision` (flags a bit set, precision `-` if none).
fn encode_spec(out: &mut String, s: &Spec) {
    let flags = u8::from(s.star_width)
        | u8::from(s.star_prec) << 1
        | u8::from(s.left) << 2
        | u8::from(s.zero) << 3
        | u8::from(s.plus) << 4
        | u8::from(s.space) << 5
        | u8::from(s.alt) << 6;
    let prec = s.precision.map_or("-".to_string(), |p| p.to_string());
    out.push_str(&format!("{} {flags} {} {prec} ", s.conv, s.width));
}

/// The pieces of a native format as one string: per piece a letter (`T` text, `I` integer,
/// `S` string value, `L` string literal), its numbers separated by spaces, and a text as its
/// length, `:` and its bytes.
fn encode_native(pieces: &[Piece]) -> String {
    let mut out = NATIVE_TAG.to_string();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(&format!("T{}:{t}", t.len())),
            Piece::Int { arg, spec } => {
                out.push_str(&format!("I{arg} "));
                encode_spec(&mut out, spec);
            }
            Piece::StrVal { sarg, arg, spec } => {
                out.push_str(&format!("S{sarg} {arg} "));
                encode_spec(&mut out, spec);
            }
            Piece::Str { text, arg, spec } => {
                out.push_str(&format!("L{arg} "));
                encode_spec(&mut out, spec);
                out.push_str(&format!("{}:{text}", text.len()));
            }
            // Never in a native format ([`KernelFormat::of`]).
            _ => {}
        }
    }
    out
}

/// The pieces [`encode_native`] wrote (after [`NATIVE_TAG`]).
fn decode_native(s: &str) -> Option<Vec<Piece>> {
    let mut rest = s;
    let num = |rest: &mut &str, end: char| -> Option<u64> {
        let i = rest.find(end)?;
        let n = rest[..i].parse().ok()?;
        *rest = &rest[i + 1..];
        Some(n)
    };
    let text = |rest: &mut &str| -> Option<String> {
        let n = num(rest, ':')? as usize;
        let t = rest.get(..n)?.to_string();
        *rest = &rest[n..];
        Some(t)
    };
    let spec = |rest: &mut &str| -> Option<Spec> {
        let conv = num(rest, ' ')? as u8;
        let flags = num(rest, ' ')?;
        let width = num(rest, ' ')? as u32;
        let i = rest.find(' ')?;
        let precision = match &rest[..i] {
            "-" => None,
            p => Some(p.parse().ok()?),
        };
        *rest = &rest[i + 1..];
        let bit = |k: u32| flags & (1 << k) != 0;
        Some(Spec {
            conv,
            width,
            precision,
            star_width: bit(0),
            star_prec: bit(1),
            left: bit(2),
            zero: bit(3),
            plus: bit(4),
            space: bit(5),
            alt: bit(6),
        })
    };
    let mut pieces = Vec::new();
    while let Some(c) = rest.chars().next() {
        rest = &rest[1..];
        pieces.push(match c {
            'T' => Piece::Text(text(&mut rest)?),
            'I' => {
                let arg = num(&mut rest, ' ')? as usize;
                Piece::Int {
                    arg,
                    spec: spec(&mut rest)?,
                }
            }
            'S' => {
                let sarg = num(&mut rest, ' ')? as usize;
                let arg = num(&mut rest, ' ')? as usize;
                Piece::StrVal {
                    sarg,
                    arg,
                    spec: spec(&mut rest)?,
                }
            }
            'L' => {
                let arg = num(&mut rest, ' ')? as usize;
                let spec = spec(&mut rest)?;
                Piece::Str {
                    text: text(&mut rest)?,
                    arg,
                    spec,
                }
            }
            _ => return None,
        });
    }
    Some(pieces)
}

/// The flags and width of a conversion as `bpf_snprintf` takes them (`-`, `0`, `+`, ` `,
/// digits); `int` keeps the flags that only numbers use.
fn push_flags(text: &mut Vec<u8>, spec: &Spec, int: bool) {
    if spec.left {
        text.push(b'-');
    }
    if int && spec.zero {
        text.push(b'0');
    }
    if int && spec.plus {
        text.push(b'+');
    }
    if int && spec.space && !spec.plus {
        text.push(b' ');
    }
    if spec.width > 0 {
        text.extend_from_slice(spec.width.to_string().as_bytes());
    }
}

/// One item of a parsed `printf` format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FmtItem {
    /// Literal text (`%%` already turned into `%`).
    Text(String),
    /// A conversion `%[flags][width][.precision][length]conv`.
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
    /// `true` for `%s`, which takes a string argument (after its `*` arguments, if any).
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

/// The largest field width or precision accepted in a conversion; a `*` width or `.*`
/// precision argument is clamped to it.
pub const MAX_WIDTH: u32 = 1024;

/// What `parse_printf` supports, for error messages.
const SUPPORTED: &str =
    "%d %i %u %x %X %o %p %c %s %b %m %M %% with flags `-+ #0`, width, precision, `*` and `l`/`ll`";

/// Parse a `printf` format: text, `%%`, and `%[flags][width][.precision][length]conv` with
/// flags among `- + space # 0`, a width of digits or `*`, a precision of `.` and digits or `*`,
/// length `l` or `ll` (ignored) and conv one of `d i u x X o p c s b m M`. Anything else
/// (`%f`, `%h`, `%n`, ...) is refused with an error naming the conversion as written, and so
/// is a `%m`/`%M` precision above [`memdump::MAX_MEMORY_DUMP`].
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
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alt = true,
                _ => break,
            }
            i += 1;
        }
        let number = |i: &mut usize| -> u64 {
            let mut n: u64 = 0;
            while let Some(&c) = b.get(*i) {
                if !c.is_ascii_digit() {
                    break;
                }
                n = (n * 10 + (c - b'0') as u64).min(u64::from(u32::MAX));
                *i += 1;
            }
            n
        };
        let mut width = 0;
        if b.get(i) == Some(&b'*') {
            spec.star_width = true;
            i += 1;
        } else {
            width = number(&mut i);
        }
        let mut precision = None;
        if b.get(i) == Some(&b'.') {
            i += 1;
            match b.get(i) {
                Some(b'*') => {
                    spec.star_prec = true;
                    i += 1;
                }
                // SystemTap reads `.` without digits as no precision (C reads it as 0).
                Some(c) if c.is_ascii_digit() => precision = Some(number(&mut i)),
                _ => {}
            }
        }
        if b.get(i) == Some(&b'l') {
            i += 1;
            if b.get(i) == Some(&b'l') {
                i += 1;
            }
        }
        let conv = b.get(i).copied();
        let end = (i + 1).min(b.len());
        // Extend the written text to a char boundary for the message.
        let mut end_txt = end;
        while !fmt.is_char_boundary(end_txt) {
            end_txt += 1;
        }
        let written = &fmt[start..end_txt];
        let err = |message: String| FmtError {
            message,
            offset: start,
        };
        match conv {
            Some(
                c @ (b'd' | b'i' | b'u' | b'x' | b'X' | b'o' | b'p' | b's' | b'c' | b'b' | b'm'
                | b'M'),
            ) => {
                if width > u64::from(MAX_WIDTH) {
                    return Err(err(format!(
                        "field width in printf conversion `{written}` is larger than {MAX_WIDTH}"
                    )));
                }
                if precision.is_some_and(|p| p > u64::from(MAX_WIDTH)) {
                    return Err(err(format!(
                        "precision in printf conversion `{written}` is larger than {MAX_WIDTH}"
                    )));
                }
                if matches!(c, b'm' | b'M')
                    && precision.is_some_and(|p| p > memdump::MAX_MEMORY_DUMP as u64)
                {
                    return Err(err(format!(
                        "printf conversion `{written}` reads more than {} bytes, the most a memory dump reads in otf",
                        memdump::MAX_MEMORY_DUMP
                    )));
                }
                spec.conv = c;
                spec.width = width as u32;
                spec.precision = precision.map(|p| p as u32);
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
                return Err(err(format!(
                    "incomplete printf conversion `{written}` at the end of the format"
                )))
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
                return Err(err(format!(
                    "unsupported printf conversion `{written}` (supported: {SUPPORTED})"
                )));
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

    /// The pieces `compile` builds for a format whose conversions all take integers: each
    /// conversion consumes its `*` arguments, then its value.
    fn int_format(f: &str) -> Format {
        let mut pieces = Vec::new();
        let mut nargs = 0;
        for item in parse_printf(f).unwrap_or_else(|e| panic!("{f}: {}", e.message)) {
            match item {
                FmtItem::Text(t) => pieces.push(Piece::Text(t)),
                FmtItem::Conv { spec, .. } => {
                    pieces.push(Piece::Int { arg: nargs, spec });
                    nargs += spec.dyn_args() + 1;
                }
            }
        }
        Format { pieces, nargs }
    }

    /// `printf(f, args...)` with integer arguments, as bytes.
    fn bytes(f: &str, args: &[i64]) -> Vec<u8> {
        render_bytes(&int_format(f), args, "", "", "")
    }

    /// `printf(f, args...)` with integer arguments, as text.
    fn text(f: &str, args: &[i64]) -> String {
        String::from_utf8(bytes(f, args)).expect("UTF-8 output")
    }

    /// `printf(f, [ints...,] s)`: one string conversion (after its `*` arguments `ints`).
    fn string(f: &str, ints: &[i64], s: &str) -> Vec<u8> {
        let mut pieces = Vec::new();
        for item in parse_printf(f).unwrap() {
            match item {
                FmtItem::Text(t) => pieces.push(Piece::Text(t)),
                FmtItem::Conv { spec, .. } => pieces.push(Piece::Str {
                    text: s.into(),
                    arg: 0,
                    spec,
                }),
            }
        }
        let fmt = Format {
            pieces,
            nargs: ints.len(),
        };
        render_bytes(&fmt, ints, "", "", "")
    }

    fn spec(conv: u8, width: u32, left: bool, zero: bool) -> Spec {
        Spec {
            conv,
            width,
            left,
            zero,
            ..Spec::default()
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
        assert_eq!(
            text("%d|%5d|%-5d|%05d", &[-7, 7, 7, 7]),
            "-7|    7|7    |00007"
        );
        assert_eq!(text("%-05d|", &[42]), "42   |");
        assert_eq!(text("%016d", &[-1]), "-000000000000001");
    }

    #[test]
    fn length_modifiers_are_ignored() {
        assert_eq!(text("%ld %li", &[-5, 7]), "-5 7");
        assert_eq!(text("%lu", &[-1]), "18446744073709551615");
        assert_eq!(text("%lld", &[i64::MIN]), "-9223372036854775808");
        assert_eq!(text("%llu", &[-1024]), "18446744073709550592");
        assert_eq!(text("%lx %lX", &[255, 0xabc]), "ff ABC");
        assert_eq!(text("%llx", &[-1]), "ffffffffffffffff");
        assert_eq!(text("%llo %08lx", &[8, 255]), "10 000000ff");
    }

    #[test]
    fn pointers_are_hash_x() {
        // SystemTap since 1.3: `%p` is `%#x` on the 64-bit value, no padding of its own.
        assert_eq!(text("%p", &[0]), "0x0");
        assert_eq!(text("%p", &[1]), "0x1");
        assert_eq!(text("%p", &[0x1234_5678_abcd_ef00]), "0x12345678abcdef00");
        assert_eq!(text("%p", &[-1]), "0xffffffffffffffff");
        assert_eq!(text("%20p|", &[0x1234_5678]), "          0x12345678|");
        assert_eq!(text("%-20p|", &[1]), "0x1                 |");
        assert_eq!(text("%.8p", &[1]), "0x00000001");
        assert_eq!(text("%20.8p|", &[0]), "          0x00000000|");
        assert_eq!(text("%020p", &[1]), "0x000000000000000001");
        assert_eq!(text("%+p", &[1]), "0x1");
    }

    #[test]
    fn alternate_form_prefixes_every_value() {
        assert_eq!(text("%#x %#X %#o", &[255, 255, 8]), "0xff 0XFF 010");
        // Unlike C, SystemTap's number() prefixes 0 too.
        assert_eq!(text("%#x %#X %#o", &[0, 0, 0]), "0x0 0X0 00");
        assert_eq!(text("%#x", &[-1]), "0xffffffffffffffff");
        assert_eq!(text("%#10x|", &[255]), "      0xff|");
        assert_eq!(text("%#010x|", &[255]), "0x000000ff|");
        assert_eq!(text("%-#10x|", &[255]), "0xff      |");
        assert_eq!(text("%#-10X|", &[255]), "0XFF      |");
        assert_eq!(text("%#6o|", &[8]), "   010|");
        assert_eq!(text("%#d %#u %#ld", &[5, 5, -5]), "5 5 -5");
    }

    #[test]
    fn signs() {
        assert_eq!(text("%+d %+d %+d", &[5, -5, 0]), "+5 -5 +0");
        assert_eq!(text("% d|% d", &[5, -5]), " 5|-5");
        assert_eq!(text("%+ d|% +d", &[5, 5]), "+5|+5");
        assert_eq!(text("%+5d|%+05d|%-+5d|", &[5, 5, 5]), "   +5|+0005|+5   |");
        // Only signed conversions take a sign.
        assert_eq!(text("%+u %+x % o", &[5, 255, 8]), "5 ff 10");
    }

    #[test]
    fn precision_on_integers() {
        assert_eq!(text("%.3d", &[5]), "005");
        assert_eq!(text("%.3d", &[-5]), "-005");
        assert_eq!(text("%.3d", &[12345]), "12345");
        assert_eq!(text("%8.3d|", &[5]), "     005|");
        assert_eq!(text("%-8.3d|", &[5]), "005     |");
        assert_eq!(text("%+.3d", &[5]), "+005");
        // SystemTap keeps zero padding with a precision (C would pad with spaces).
        assert_eq!(text("%08.3d", &[5]), "00000005");
        assert_eq!(text("%08.3d", &[-5]), "-0000005");
        // A digit is always written; `.` alone is no precision.
        assert_eq!(text("%.0d|%.d", &[0, 7]), "0|7");
        assert_eq!(
            text("%.5x %#.5x %.4o", &[255, 255, 8]),
            "000ff 0x000ff 0010"
        );
        assert_eq!(text("%.3u", &[-1]), "18446744073709551615");
    }

    #[test]
    fn dynamic_width_and_precision() {
        assert_eq!(text("%*d|", &[5, 42]), "   42|");
        assert_eq!(text("%-*d|", &[5, 42]), "42   |");
        assert_eq!(text("%0*x", &[4, 255]), "00ff");
        // SystemTap's compiled printf clamps a negative width to 0.
        assert_eq!(text("%*d|", &[-5, 42]), "42|");
        assert_eq!(text("%*d|", &[0, 42]), "42|");
        // The argument is read as a 32-bit int.
        assert_eq!(text("%*d|", &[(1 << 32) | 3, 7]), "  7|");
        assert_eq!(text("%.*d", &[4, 7]), "0007");
        assert_eq!(text("%.*d", &[-1, 7]), "7");
        assert_eq!(text("%*.*d|", &[6, 3, 7]), "   007|");
        assert_eq!(text("%*d,%d", &[3, 1, 2]), "  1,2");
        let wide = text("%*d", &[100_000, 1]);
        assert_eq!(wide.len(), MAX_WIDTH as usize);
        assert!(wide.ends_with(" 1"));
    }

    #[test]
    fn strings() {
        assert_eq!(string("%-6s|", &[], "ab"), b"ab    |");
        assert_eq!(string("%6s|", &[], "ab"), b"    ab|");
        assert_eq!(string("%.3s|", &[], "abcdef"), b"abc|");
        assert_eq!(string("%.10s|", &[], "abc"), b"abc|");
        assert_eq!(string("%6.2s|", &[], "abcdef"), b"    ab|");
        assert_eq!(string("%-6.2s|", &[], "abcdef"), b"ab    |");
        assert_eq!(string("%.0s|", &[], "abc"), b"|");
        assert_eq!(string("%.s|", &[], "abc"), b"abc|");
        assert_eq!(string("%*s|", &[4], "ab"), b"  ab|");
        assert_eq!(string("%-*s|", &[4], "ab"), b"ab  |");
        assert_eq!(string("%.*s|", &[2], "abcdef"), b"ab|");
        assert_eq!(string("%*.*s|", &[5, 2], "abcdef"), b"   ab|");
        // The `0` flag writes a NUL after the field.
        assert_eq!(string("%05s|", &[], "ab"), b"   ab\0|");
        // Widths and precisions count bytes.
        assert_eq!(string("%3s|", &[], "é"), " é|".as_bytes());
        assert_eq!(string("%.1s|", &[], "é"), b"\xc3|");
        assert_eq!(string("%ls", &[], "x"), b"x");
    }

    #[test]
    fn characters() {
        assert_eq!(text("%c%c", &[65, 0x142]), "AB");
        assert_eq!(bytes("%c", &[0xe9]), [0xe9]);
        assert_eq!(
            text("%#c|%#c|%#c", &[65, b' '.into(), b'~'.into()]),
            "A| |~"
        );
        assert_eq!(text("%#c", &[10]), "\\n");
        assert_eq!(text("%#c%#c%#c", &[7, 8, 12]), "\\a\\b\\f");
        assert_eq!(text("%#c%#c%#c", &[13, 9, 11]), "\\r\\t\\v");
        assert_eq!(text("%#c%#c", &[39, 92]), "\\'\\\\");
        assert_eq!(text("%#c|%#c|%#c", &[1, 0x7f, 0xff]), "\\001|\\177|\\377");
        assert_eq!(text("%#5c|%-#5c|", &[10, 1]), "   \\n|\\001 |");
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn binary() {
        let v = 0x0102_0304_0506_0708;
        assert_eq!(bytes("%b", &[v]), [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(bytes("%8b", &[1]), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes("%1b", &[0x4142]), [0x42]);
        assert_eq!(bytes("%2b", &[0x4142]), [0x42, 0x41]);
        assert_eq!(bytes("%4b", &[-1]), [0xff; 4]);
        assert_eq!(bytes("%.2b", &[0x4142]), [0x42, 0x41]);
        // A width that is no size writes 8 bytes, padded to the width with NULs.
        assert_eq!(bytes("%3b", &[1]), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes("%10b", &[1]), [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes("%-10b", &[1]), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes("%4.2b", &[0x4142]), [0, 0, 0x42, 0x41]);
        assert_eq!(bytes("%-4.1b", &[0x41]), [0x41, 0, 0, 0]);
        assert_eq!(bytes("%.3b", &[1]), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes("%*b", &[2, 0x4142]), [0x42, 0x41]);
        // SystemTap's langref example.
        assert_eq!(text("%3d: %1b%1b%1b\n", &[97, 97, 65, 33]), " 97: aA!\n");
    }

    /// `printf(f, ints...)` of one `%m`/`%M` whose bytes `mem` the record carries after
    /// the pushed arguments `ints` (its `*` arguments, then the address).
    fn dump(f: &str, ints: &[i64], mem: &[u8]) -> Vec<u8> {
        let mut pieces = Vec::new();
        for item in parse_printf(f).unwrap() {
            match item {
                FmtItem::Text(t) => pieces.push(Piece::Text(t)),
                FmtItem::Conv { spec, .. } => pieces.push(Piece::Mem {
                    arg: 0,
                    at: ints.len(),
                    spec,
                }),
            }
        }
        let mut args = ints.to_vec();
        args.extend(memdump::words_of(mem));
        let fmt = Format {
            pieces,
            nargs: ints.len(),
        };
        render_bytes(&fmt, &args, "", "", "")
    }

    #[test]
    fn memory_dumps() {
        let mem = b"Hi\0\xffzzzzzzzzzz";
        // The precision is the number of bytes, 1 by default; NUL and bytes above 127 are
        // written as they are.
        assert_eq!(dump("[%m]", &[0x1000], mem), b"[H]");
        assert_eq!(dump("[%.0m]", &[0x1000], mem), b"[H]");
        assert_eq!(dump("[%.4m]", &[0x1000], mem), b"[Hi\0\xff]");
        assert_eq!(dump("[%.4M]", &[0x1000], mem), b"[486900ff]");
        assert_eq!(dump("[%M]", &[0x1000], mem), b"[48]");
        // Widths count the output (two digits a byte for `%M`); `-` pads after; `0` writes
        // a NUL after the field.
        assert_eq!(dump("[%6.2m]", &[0x1000], mem), b"[    Hi]");
        assert_eq!(dump("[%-6.2M]", &[0x1000], mem), b"[4869  ]");
        assert_eq!(dump("[%03.2M]", &[0x1000], mem), b"[4869\0]");
        assert_eq!(dump("[%08.2m]", &[0x1000], mem), b"[      Hi\0]");
        assert_eq!(dump("[%3.4M]", &[0x1000], mem), b"[486900ff]");
        // `*` width and `.*` precision come before the address.
        assert_eq!(dump("[%*.*M]", &[7, 3, 0x1000], mem), b"[ 486900]");
        assert_eq!(dump("[%.*m]", &[-2, 0x1000], mem), b"[H]");
        assert_eq!(dump("[%.*M]", &[12, 0x1000], mem).len(), 2 + 24);
        // `#` (user memory) prints the same way.
        assert_eq!(dump("[%#.2m]", &[0x1000], mem), b"[Hi]");
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
        assert!(parse_printf("%5")
            .unwrap_err()
            .message
            .contains("incomplete"));
        assert!(parse_printf("%é").is_err());
        assert_eq!(parse_printf("").unwrap(), vec![]);

        let [FmtItem::Conv { spec, text, .. }] = &parse_printf("%-#*.*llx").unwrap()[..] else {
            panic!()
        };
        assert_eq!(text, "%-#*.*llx");
        assert!(spec.left && spec.alt && spec.star_width && spec.star_prec);
        assert_eq!((spec.conv, spec.dyn_args()), (b'x', 2));
        let [FmtItem::Conv { spec, .. }] = &parse_printf("%+ 08.3d").unwrap()[..] else {
            panic!()
        };
        assert!(spec.plus && spec.space && spec.zero);
        assert_eq!((spec.width, spec.precision), (8, Some(3)));
        let [FmtItem::Conv { spec, .. }] = &parse_printf("%-05d").unwrap()[..] else {
            panic!()
        };
        assert!(spec.left && !spec.zero, "`-` overrides `0`");
    }

    #[test]
    fn refused_conversions_are_named() {
        let msg = |f: &str| parse_printf(f).unwrap_err().message;
        assert_eq!(
            msg("a %.129m"),
            "printf conversion `%.129m` reads more than 128 bytes, the most a memory dump reads in otf"
        );
        assert!(msg("%#10.200M").contains("`%#10.200M` reads more than 128 bytes"));
        assert!(parse_printf("%.128m %-#20.128M %*.*m %m").is_ok());
        for f in [
            "%hd", "%hhx", "%Ld", "%lf", "%zu", "%jd", "%lllx", "%5.2f", "%n",
        ] {
            assert!(
                msg(f).starts_with(&format!("unsupported printf conversion `{f}`")),
                "{f}: {}",
                msg(f)
            );
        }
        assert!(msg("%2000d").contains("field width"));
        assert!(msg("%.2000d").contains("precision in printf conversion `%.2000d`"));
        assert!(parse_printf("%1024d %.1024s").is_ok());
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
                Piece::Execname {
                    arg: 0,
                    spec: spec(b's', 6, true, false),
                },
                Piece::Text("|".into()),
                Piece::Pp {
                    arg: 0,
                    spec: spec(b's', 0, false, false),
                },
                Piece::Probefunc {
                    arg: 0,
                    spec: spec(b's', 0, false, false),
                },
                Piece::Str {
                    text: "x".into(),
                    arg: 0,
                    spec: spec(b's', 3, false, false),
                },
                Piece::Int {
                    arg: 5,
                    spec: spec(b'd', 0, false, false),
                },
                Piece::Pp {
                    arg: 1,
                    spec: Spec {
                        star_width: true,
                        star_prec: true,
                        ..spec(b's', 0, false, false)
                    },
                },
            ],
            nargs: 3,
        };
        assert_eq!(
            render(&f, &[7, 4, 2], "bash", "begin", "main"),
            "a=7 bash  |beginmain  x0  be"
        );
        // Bytes that are not UTF-8 are replaced in text output.
        assert_eq!(text_of_c(0xe9), "\u{fffd}");
    }

    #[test]
    fn kernel_formats() {
        let kf = |f: &str, strs: usize| {
            let items = parse_printf(f).expect("parses");
            let mut pieces = Vec::new();
            let (mut ni, mut ns) = (0, 0);
            for it in items {
                match it {
                    FmtItem::Text(t) => pieces.push(Piece::Text(t)),
                    FmtItem::Conv { spec, .. } if spec.conv == b's' && ns < strs => {
                        pieces.push(Piece::StrVal {
                            sarg: ns,
                            arg: ni,
                            spec,
                        });
                        ns += 1;
                    }
                    FmtItem::Conv { spec, .. } => {
                        pieces.push(Piece::Int { arg: ni, spec });
                        ni += 1 + spec.dyn_args();
                    }
                }
            }
            KernelFormat::of(&Format { pieces, nargs: ni })
        };
        let k = kf("%s(%d) %-5x|%05X|%+d|% i|%u", 1).expect("kernel");
        assert_eq!(k.text, b"%s(%lld) %-5llx|%05llX|%+lld|% lli|%llu\0");
        use KernelArg::*;
        assert_eq!(
            k.args,
            [Str(0), Int(0), Int(1), Int(2), Int(3), Int(4), Int(5)]
        );
        assert_eq!(KernelFormat::decode(&k.encode()), Some(k));
        // A letter after `%s` is a `%c` of a constant; `%` is doubled; `%#x` and `%p` are
        // `0x` and `%llx`.
        let k = kf("%sab%%%#x%p", 1).expect("kernel");
        assert_eq!(k.text, b"%s%cb%%0x%llx0x%llx\0");
        assert_eq!(k.args, [Str(0), Const(b'a'), Int(0), Int(1)]);
        assert_eq!(KernelFormat::decode(&k.encode()), Some(k));
        // The rest is native, with its pieces as they are (a string literal with a constant
        // width rendered), and survives the encoding.
        for f in [
            "%c",
            "%o",
            "%*d",
            "%.1d",
            "%.1s",
            "%#4x",
            "%-p",
            "a%d%d%d%d%d%d%d%d%d%d%d%d%d\n",
            "%-#*.*llx|%s %+ 05.2d",
            "\u{1}\t%c",
            "%05s|%-03s",
            "%#c%-#5c",
        ] {
            let k = kf(f, 1).unwrap_or_else(|c| panic!("{f}: {c}"));
            assert!(k.native.is_some(), "{f}");
            assert_eq!(KernelFormat::decode(&k.encode()), Some(k), "{f}");
        }
        for (f, code) in [("%b", 2), ("é%o", 1), ("a\0%o", 1)] {
            assert_eq!(kf(f, 1).map(|_| ()), Err(code), "{f}");
        }
    }

    fn text_of_c(c: i64) -> String {
        render(&int_format("%c"), &[c], "", "", "")
    }
}
