//! `SFormat` (`sprintf`) of a format the kernel's `bpf_snprintf` cannot print as SystemTap
//! does (`%c`, `%#c`, `%o`, `#`, precisions, `*` widths and precisions, more than 12 values,
//! `%05s`): a
//! native formatter, with the reference VM's text byte for byte (`otf_script::format`,
//! `push_number`, `push_char`, `push_str`), truncated at 127 bytes.
//!
//! The result is built in the frame's key buffer, which no other instruction uses while a
//! `sprintf` runs, then copied to the result's string slot (the first string argument's):
//!
//! | key buffer | holds |
//! |---|---|
//! | `keybuf[0]` | the result being built, zero-padded |
//! | `keybuf[1]`, `keybuf[2]` | 128 spaces, 128 `0` digits (padding is a copy from there) |
//! | `keybuf[3]` | a literal text (a piece's text, or a string literal with a `*` width) |
//! | `keybuf[4]` | the digits of a number, right-aligned at byte 24 |
//! | `keybuf[5]` | the integers of the piece being formatted ([`var`]) |
//!
//! Every write goes through [`append`] (a `bpf_probe_read_kernel` of at most the room left
//! from one frame buffer to the result) or [`putc`], which keep the length at most 127.

use otf_script::bytecode::{Piece, Spec, MAXSTRINGLEN};
use otf_script::format::MAX_WIDTH;

use super::{copy_str, sslot, stack, strlen, zero, Gen, Region, SWORDS};
use crate::asm::Func;
use crate::insn::{helper, Alu, Cond, Insn, B, DW, R0, R1, R2, R3, R4, R8};
use crate::layout::off;
use crate::Error;

const _: () = assert!(
    otf_script::bytecode::MAX_KEYS >= 6,
    "the key buffer's scratch"
);

/// The result being built.
const OUT: usize = off::F_KEYBUF;
/// 128 spaces.
const SPACES: usize = off::F_KEYBUF + MAXSTRINGLEN;
/// 128 `0` digits.
const ZEROS: usize = off::F_KEYBUF + 2 * MAXSTRINGLEN;
/// A literal text, zero-padded.
const LIT: usize = off::F_KEYBUF + 3 * MAXSTRINGLEN;
/// The digits of a number end at `DIG + DIG_END`.
const DIG: usize = off::F_KEYBUF + 4 * MAXSTRINGLEN;
const DIG_END: usize = 24;
/// The most bytes a result holds (then a NUL).
const ROOM: i32 = MAXSTRINGLEN as i32 - 1;

/// The integers of the formatter (`keybuf[5]`).
#[derive(Clone, Copy)]
enum V {
    /// The length of the result so far (at most [`ROOM`]).
    Len,
    /// The field width.
    Width,
    /// The precision (numbers: 0 if none; strings: [`MAX_WIDTH`] if none).
    Prec,
    /// The number of digits in `DIG`.
    Ndig,
    /// The sign byte of a number (0: none) or a `%c` byte.
    Sign,
    /// The padding of the field.
    Fill,
    /// The digits written with their precision zeros, or the bytes of a string written.
    Body,
    /// Where the first NUL byte was written ([`ROOM`]: none).
    Nul,
}

fn var(v: V) -> i16 {
    off::s16(off::F_KEYBUF + 5 * MAXSTRINGLEN + 8 * v as usize)
}

/// Where [`append`] copies from.
#[derive(Clone, Copy)]
enum Src {
    /// A buffer at this frame offset.
    At(usize),
    /// The last [`V::Ndig`] bytes of the digits.
    Digits,
}

/// Append `min(r3, room left)` bytes from `src` to the result (r3 unsigned). Uses r0-r4.
fn append(f: &mut Func, src: Src) {
    let (ok, skip) = (f.new_label(), f.new_label());
    f.emit(Insn::ldx(DW, R1, R8, var(V::Len)));
    f.emit(Insn::mov_imm(R4, ROOM));
    f.emit(Insn::alu64_reg(Alu::Sub, R4, R1));
    f.jmp_reg(Cond::Le, R3, R4, ok);
    f.emit(Insn::mov(R3, R4));
    f.bind(ok);
    f.jmp_imm(Cond::Eq, R3, 0, skip);
    f.emit(Insn::mov(R0, R1));
    f.emit(Insn::alu64_reg(Alu::Add, R0, R3));
    f.emit(Insn::stx(DW, R8, var(V::Len), R0));
    f.emit(Insn::alu64_imm(Alu::And, R1, ROOM));
    f.emit(Insn::alu64_reg(Alu::Add, R1, R8));
    f.emit(Insn::alu64_imm(Alu::Add, R1, OUT as i32));
    f.emit(Insn::mov(R2, R3));
    f.emit(Insn::alu64_imm(Alu::And, R2, ROOM));
    match src {
        Src::At(o) => {
            f.emit(Insn::mov(R3, R8));
            f.emit(Insn::alu64_imm(Alu::Add, R3, o as i32));
        }
        Src::Digits => {
            f.emit(Insn::ldx(DW, R4, R8, var(V::Ndig)));
            f.emit(Insn::alu64_imm(Alu::And, R4, 31));
            f.emit(Insn::mov(R3, R8));
            f.emit(Insn::alu64_imm(Alu::Add, R3, (DIG + DIG_END) as i32));
            f.emit(Insn::alu64_reg(Alu::Sub, R3, R4));
        }
    }
    f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
    f.bind(skip);
}

/// Append [`V::Fill`] bytes of `buf` (spaces or zeros).
fn pad(f: &mut Func, buf: usize) {
    f.emit(Insn::ldx(DW, R3, R8, var(V::Fill)));
    append(f, Src::At(buf));
}

/// Append the byte in r2 if there is room. Uses r0, r1.
fn putc(f: &mut Func) {
    let skip = f.new_label();
    f.emit(Insn::ldx(DW, R1, R8, var(V::Len)));
    f.jmp_imm(Cond::Ge, R1, ROOM, skip);
    f.emit(Insn::mov(R0, R1));
    f.emit(Insn::alu64_imm(Alu::Add, R0, 1));
    f.emit(Insn::stx(DW, R8, var(V::Len), R0));
    f.emit(Insn::alu64_imm(Alu::And, R1, ROOM));
    f.emit(Insn::alu64_reg(Alu::Add, R1, R8));
    f.emit(Insn::stx(B, R1, off::s16(OUT), R2));
    f.bind(skip);
}

/// Before a [`putc`] of r2: if it is a NUL byte and the first, [`V::Nul`] is where it goes.
/// Uses r1, r3.
fn mark_nul(f: &mut Func) {
    let skip = f.new_label();
    f.jmp_imm(Cond::Ne, R2, 0, skip);
    f.emit(Insn::ldx(DW, R1, R8, var(V::Len)));
    f.emit(Insn::ldx(DW, R3, R8, var(V::Nul)));
    f.jmp_reg(Cond::Ge, R1, R3, skip);
    f.emit(Insn::stx(DW, R8, var(V::Nul), R1));
    f.bind(skip);
}

/// Fill the frame buffer at `at` with `bytes` (at most 128), zero-padded to a word.
fn stage(f: &mut Func, at: usize, bytes: &[u8]) {
    for (k, w) in bytes.chunks(8).take(SWORDS).enumerate() {
        let mut b = [0u8; 8];
        b[..w.len()].copy_from_slice(w);
        f.emit_all(&Insn::ld_imm64(R1, 0, u64::from_ne_bytes(b)));
        f.emit(Insn::stx(DW, R8, off::s16(at + 8 * k), R1));
    }
}

/// `var = (i32) stack slot`, clamped to `0..=MAX_WIDTH` (a `*` width or `.*` precision).
fn dyn_value(f: &mut Func, slot: u32, v: V) {
    let (lo, hi) = (f.new_label(), f.new_label());
    f.emit(Insn::ldx(DW, R1, R8, stack(slot)));
    f.emit(Insn::alu64_imm(Alu::Lsh, R1, 32));
    f.emit(Insn::alu64_imm(Alu::Arsh, R1, 32));
    f.jmp_imm(Cond::Sge, R1, 0, lo);
    f.emit(Insn::mov_imm(R1, 0));
    f.bind(lo);
    f.jmp_imm(Cond::Sle, R1, MAX_WIDTH as i32, hi);
    f.emit(Insn::mov_imm(R1, MAX_WIDTH as i32));
    f.bind(hi);
    f.emit(Insn::stx(DW, R8, var(v), R1));
}

/// [`V::Width`] and [`V::Prec`] of `spec` (`none`: the precision when there is none),
/// reading its `*` arguments from the stack slots from `slot`; the slot after them.
fn field(f: &mut Func, spec: &Spec, slot: u32, none: u32) -> u32 {
    let mut i = slot;
    if spec.star_width {
        dyn_value(f, i, V::Width);
        i += 1;
    } else {
        f.emit(Insn::st(DW, R8, var(V::Width), spec.width as i32));
    }
    if spec.star_prec {
        dyn_value(f, i, V::Prec);
        i += 1;
    } else {
        let p = spec.precision.unwrap_or(none);
        f.emit(Insn::st(DW, R8, var(V::Prec), p as i32));
    }
    i
}

/// [`V::Fill`] = `Width - r3` if positive, else 0. Uses r0, r1.
fn fill(f: &mut Func) {
    let none = f.new_label();
    f.emit(Insn::ldx(DW, R1, R8, var(V::Width)));
    f.emit(Insn::mov_imm(R0, 0));
    f.jmp_reg(Cond::Le, R1, R3, none);
    f.emit(Insn::mov(R0, R1));
    f.emit(Insn::alu64_reg(Alu::Sub, R0, R3));
    f.bind(none);
    f.emit(Insn::stx(DW, R8, var(V::Fill), R0));
}

/// A string of [`V::Body`] bytes at `at`, after its width and precision are set; the `0`
/// flag writes a NUL byte after the field (which ends the result: [`end_at_nul`]).
fn string(f: &mut Func, at: usize, spec: &Spec) {
    let left = spec.left;
    f.emit(Insn::ldx(DW, R3, R8, var(V::Body)));
    fill(f);
    if !left {
        pad(f, SPACES);
    }
    f.emit(Insn::ldx(DW, R3, R8, var(V::Body)));
    append(f, Src::At(at));
    if left {
        pad(f, SPACES);
    }
    if spec.zero {
        f.emit(Insn::mov_imm(R2, 0));
        mark_nul(f);
        putc(f);
    }
}

/// Zero the result after its first NUL byte (a `%c` of 0, a `%05s`), so that it is the
/// string SystemTap has (a C string) and compares and hashes as one: the rest from
/// [`V::Nul`] on copied from `LIT`, zeroed.
fn end_at_nul(f: &mut Func) {
    zero(f, LIT, SWORDS);
    f.emit(Insn::ldx(DW, R3, R8, var(V::Nul)));
    f.emit(Insn::stx(DW, R8, var(V::Len), R3));
    f.emit(Insn::mov_imm(R3, ROOM));
    f.emit(Insn::ldx(DW, R1, R8, var(V::Len)));
    f.emit(Insn::alu64_reg(Alu::Sub, R3, R1));
    append(f, Src::At(LIT));
}

/// `Body = min(r0, Prec)`.
fn clamp_body(f: &mut Func) {
    let ok = f.new_label();
    f.emit(Insn::ldx(DW, R1, R8, var(V::Prec)));
    f.jmp_reg(Cond::Le, R0, R1, ok);
    f.emit(Insn::mov(R0, R1));
    f.bind(ok);
    f.emit(Insn::stx(DW, R8, var(V::Body), R0));
}

/// SystemTap's `number()` (`otf_script::format::push_number`) of the value in stack slot
/// `slot`, its width and precision set.
fn number(f: &mut Func, spec: &Spec, slot: u32) {
    let (base, upper, signed, alt) = match spec.conv {
        b'u' => (10, false, false, spec.alt),
        b'x' => (16, false, false, spec.alt),
        b'X' => (16, true, false, spec.alt),
        b'o' => (8, false, false, spec.alt),
        b'p' => (16, false, false, true),
        _ => (10, false, true, spec.alt),
    };
    let prefix: &[u8] = match (alt, base, upper) {
        (true, 16, false) => b"0x",
        (true, 16, true) => b"0X",
        (true, 8, _) => b"0",
        _ => b"",
    };
    let left = spec.left;
    let zeropad = spec.zero && !left;
    f.emit(Insn::ldx(DW, R2, R8, stack(slot)));
    let sign = match () {
        _ if signed && spec.plus => b'+',
        _ if signed && spec.space => b' ',
        _ => 0,
    };
    f.emit(Insn::st(DW, R8, var(V::Sign), i32::from(sign)));
    if signed {
        let pos = f.new_label();
        f.jmp_imm(Cond::Sge, R2, 0, pos);
        f.emit(Insn::neg(R2));
        f.emit(Insn::st(DW, R8, var(V::Sign), i32::from(b'-')));
        f.bind(pos);
    }
    // The digits, last first, unrolled (at most 22 in octal).
    let done = f.new_label();
    let most = match base {
        8 => 22,
        10 => 20,
        _ => 16,
    };
    f.emit(Insn::mov_imm(R4, 0));
    for i in 0..most {
        f.emit(Insn::mov(R0, R2));
        f.emit(Insn::alu64_imm(Alu::Mod, R0, base));
        if base == 16 {
            let dec = f.new_label();
            f.jmp_imm(Cond::Le, R0, 9, dec);
            let a = if upper { b'A' } else { b'a' };
            f.emit(Insn::alu64_imm(Alu::Add, R0, i32::from(a - b'0') - 10));
            f.bind(dec);
        }
        f.emit(Insn::alu64_imm(Alu::Add, R0, i32::from(b'0')));
        f.emit(Insn::stx(B, R8, off::s16(DIG + DIG_END - 1 - i), R0));
        f.emit(Insn::alu64_imm(Alu::Add, R4, 1));
        f.emit(Insn::alu64_imm(Alu::Div, R2, base));
        f.jmp_imm(Cond::Eq, R2, 0, done);
    }
    f.bind(done);
    f.emit(Insn::stx(DW, R8, var(V::Ndig), R4));
    // Body = max(Prec, Ndig); r3 = sign + prefix + Body.
    let keep = f.new_label();
    f.emit(Insn::ldx(DW, R1, R8, var(V::Prec)));
    f.jmp_reg(Cond::Ge, R1, R4, keep);
    f.emit(Insn::mov(R1, R4));
    f.bind(keep);
    f.emit(Insn::stx(DW, R8, var(V::Body), R1));
    f.emit(Insn::mov(R3, R1));
    f.emit(Insn::alu64_imm(Alu::Add, R3, prefix.len() as i32));
    let nosign = f.new_label();
    f.emit(Insn::ldx(DW, R2, R8, var(V::Sign)));
    f.jmp_imm(Cond::Eq, R2, 0, nosign);
    f.emit(Insn::alu64_imm(Alu::Add, R3, 1));
    f.bind(nosign);
    fill(f);
    if !zeropad && !left {
        pad(f, SPACES);
    }
    let nosign = f.new_label();
    f.emit(Insn::ldx(DW, R2, R8, var(V::Sign)));
    f.jmp_imm(Cond::Eq, R2, 0, nosign);
    putc(f);
    f.bind(nosign);
    for &c in prefix {
        f.emit(Insn::mov_imm(R2, i32::from(c)));
        putc(f);
    }
    if zeropad {
        pad(f, ZEROS);
    }
    f.emit(Insn::ldx(DW, R3, R8, var(V::Body)));
    f.emit(Insn::ldx(DW, R1, R8, var(V::Ndig)));
    f.emit(Insn::alu64_reg(Alu::Sub, R3, R1));
    append(f, Src::At(ZEROS));
    f.emit(Insn::ldx(DW, R3, R8, var(V::Ndig)));
    append(f, Src::Digits);
    if left {
        pad(f, SPACES);
    }
}

/// SystemTap's `_stp_vsprint_char` without `#` (`otf_script::format::push_char`): the low
/// byte of the value in stack slot `slot`, padded with spaces.
fn char(f: &mut Func, spec: &Spec, slot: u32) {
    f.emit(Insn::mov_imm(R3, 1));
    fill(f);
    if !spec.left {
        pad(f, SPACES);
    }
    f.emit(Insn::ldx(DW, R2, R8, stack(slot)));
    f.emit(Insn::alu64_imm(Alu::And, R2, 0xff));
    mark_nul(f);
    putc(f);
    if spec.left {
        pad(f, SPACES);
    }
}

/// `%#c` (`otf_script::format::push_char`): the low byte of the value in stack slot `slot`,
/// escaped as C does when it is not printable ASCII or is a quote or backslash, staged in
/// `LIT` and padded with spaces as a string.
fn escaped_char(f: &mut Func, spec: &Spec, slot: u32) {
    let (esc, same, out) = (f.new_label(), f.new_label(), f.new_label());
    let lit = |k: usize| off::s16(LIT + k);
    f.emit(Insn::ldx(DW, R2, R8, stack(slot)));
    f.emit(Insn::alu64_imm(Alu::And, R2, 0xff));
    f.emit(Insn::stx(B, R8, lit(0), R2));
    f.emit(Insn::st(DW, R8, var(V::Body), 1));
    f.jmp_imm(Cond::Lt, R2, 0x20, esc);
    f.jmp_imm(Cond::Ge, R2, 0x7f, esc);
    f.jmp_imm(Cond::Eq, R2, i32::from(b'\''), same);
    f.jmp_imm(Cond::Eq, R2, i32::from(b'\\'), same);
    f.ja(out);
    f.bind(same);
    f.emit(Insn::st(B, R8, lit(0), i32::from(b'\\')));
    f.emit(Insn::stx(B, R8, lit(1), R2));
    f.emit(Insn::st(DW, R8, var(V::Body), 2));
    f.ja(out);
    f.bind(esc);
    f.emit(Insn::st(B, R8, lit(0), i32::from(b'\\')));
    f.emit(Insn::st(DW, R8, var(V::Body), 2));
    for (c, e) in otf_script::strfn::CONTROL_ESCAPES {
        let next = f.new_label();
        f.jmp_imm(Cond::Ne, R2, i32::from(c), next);
        f.emit(Insn::st(B, R8, lit(1), i32::from(e)));
        f.ja(out);
        f.bind(next);
    }
    for (k, shift) in [(1, 6), (2, 3), (3, 0)] {
        f.emit(Insn::mov(R0, R2));
        f.emit(Insn::alu64_imm(Alu::Rsh, R0, shift));
        f.emit(Insn::alu64_imm(Alu::And, R0, 7));
        f.emit(Insn::alu64_imm(Alu::Add, R0, i32::from(b'0')));
        f.emit(Insn::stx(B, R8, lit(k), R0));
    }
    f.emit(Insn::st(DW, R8, var(V::Body), 4));
    f.bind(out);
    let spec = Spec {
        zero: false,
        ..*spec
    };
    string(f, LIT, &spec);
}

impl Gen<'_> {
    /// `SFormat` of a native format ([`otf_script::format::KernelFormat::native`]): its
    /// pieces into `keybuf[0]` one after the other, then a copy into the result's slot.
    pub(super) fn sprintf_native(
        &mut self,
        r: &mut Region<'_>,
        pc: usize,
        pieces: &[Piece],
    ) -> Result<(), Error> {
        let insn = self.code[pc];
        let n = (insn.imm & 0xffff) as usize;
        let ns = ((insn.imm >> 16) & 0xffff) as u32;
        let sd = r.shape.sdepth[&pc];
        if r.vs.len() < n || sd < ns {
            return Err(Error::BadCode(format!("sprintf operands at {pc}")));
        }
        let base = (r.vs.len() - n) as u32;
        let s0 = sd - ns;
        self.flush(r);
        let bad = || Error::BadCode(format!("sprintf arguments at {pc}"));
        let int_slot = |k: usize| (k < n).then_some(base + k as u32).ok_or_else(bad);
        let f = self.b.f(r.f);
        zero(f, OUT, SWORDS);
        stage(f, SPACES, &[b' '; MAXSTRINGLEN]);
        stage(f, ZEROS, &[b'0'; MAXSTRINGLEN]);
        f.emit(Insn::st(DW, R8, var(V::Len), 0));
        f.emit(Insn::st(DW, R8, var(V::Nul), ROOM));
        for piece in pieces {
            match piece {
                Piece::Text(t) => {
                    let t = &t.as_bytes()[..t.len().min(ROOM as usize)];
                    if t.is_empty() {
                        continue;
                    }
                    stage(f, LIT, t);
                    f.emit(Insn::mov_imm(R3, t.len() as i32));
                    append(f, Src::At(LIT));
                }
                Piece::Int { arg, spec } => {
                    let at = int_slot(arg + spec.dyn_args())?;
                    field(f, spec, int_slot(*arg)?, 0);
                    if spec.conv == b'c' && spec.alt {
                        escaped_char(f, spec, at);
                    } else if spec.conv == b'c' {
                        char(f, spec, at);
                    } else {
                        number(f, spec, at);
                    }
                }
                Piece::StrVal { sarg, arg, spec } => {
                    if *sarg >= ns as usize || (spec.dyn_args() > 0 && *arg >= n) {
                        return Err(bad());
                    }
                    field(f, spec, base + *arg as u32, MAX_WIDTH);
                    let at = sslot(s0 + *sarg as u32);
                    strlen(f, at);
                    clamp_body(f);
                    string(f, at, spec);
                }
                Piece::Str { text, arg, spec } => {
                    if spec.dyn_args() > 0 && *arg >= n {
                        return Err(bad());
                    }
                    field(f, spec, base + *arg as u32, MAX_WIDTH);
                    let t = &text.as_bytes()[..text.len().min(ROOM as usize)];
                    stage(f, LIT, &[t, &[0u8; 8]].concat());
                    f.emit(Insn::mov_imm(R0, t.len() as i32));
                    clamp_body(f);
                    string(f, LIT, spec);
                }
                _ => return Err(bad()),
            }
        }
        let nul = pieces.iter().any(|p| match p {
            Piece::Int { spec, .. } => spec.conv == b'c' && !spec.alt,
            Piece::StrVal { spec, .. } | Piece::Str { spec, .. } => spec.zero,
            _ => false,
        });
        if nul {
            end_at_nul(f);
        }
        copy_str(f, R8, sslot(s0), R8, OUT);
        r.vs.truncate(base as usize);
        Ok(())
    }
}
