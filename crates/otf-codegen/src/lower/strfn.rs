//! `SCall`: the string functions (`otf_script::strfn`) in native code, with the reference
//! VM's results byte for byte (both follow SystemTap's tapset and runtime C: see there), and
//! its run-time error (`stringat` out of bounds: [`ERR_POSITION`]).
//!
//! Strings are the 128-byte, zero-padded string slots of the frame (see `lower.rs`). The
//! functions that look at every byte run a `bpf_loop` over the bytes, with a small callback
//! made for the call site (its string slots are constants in it) and their state in the
//! frame's key buffer, which no other instruction uses while a string function runs:
//!
//! | key buffer | holds |
//! |---|---|
//! | `keybuf[0]` | a candidate match: `bpf_probe_read_kernel` of the needle's length from the haystack at one position (the rest stays zero, so 16 word compares with the needle's slot decide) |
//! | `keybuf[1]` | the result being built (`text_str`, `str_replace`), which a last write may overrun into `keybuf[2]` |
//! | `keybuf[3]` | the loop's integers ([`var`]) |
//!
//! The result of a string function goes to the slot of its first string argument, as the
//! string stack has it; an integer result is r0. `tokenize` keeps what is left of its
//! string in `Frame::tok` (per program run, as the reference VM).

use otf_script::bytecode::{StrFn, MAXSTRINGLEN};

use super::{copy_str, sslot, stack, strlen, zero, Gen, Region, Val, SWORDS};
use crate::asm::{Func, FuncId, Label};
use crate::insn::{helper, Alu, Cond, Insn, B, DW, R0, R1, R10, R2, R3, R4, R5, R8};
use crate::layout::{off, ERR_POSITION};
use crate::Error;

const _: () = assert!(
    otf_script::bytecode::MAX_KEYS >= 4,
    "the key buffer's scratch"
);

/// Where a candidate match is read (`keybuf[0]`).
const CAND: usize = off::F_KEYBUF;
/// Where a result is built (`keybuf[1]`, overrun into `keybuf[2]`).
const OUT: usize = off::F_KEYBUF + MAXSTRINGLEN;
/// The last byte of a string slot, always zero.
const LAST: usize = MAXSTRINGLEN - 1;

/// Integer `k` of a string function's loop (`keybuf[3]`).
fn var(k: usize) -> i16 {
    off::s16(off::F_KEYBUF + 3 * MAXSTRINGLEN + 8 * k)
}

fn at(o: usize) -> i16 {
    off::s16(o)
}

/// `return v` from a callback.
fn ret(f: &mut Func, v: i32) {
    f.emit(Insn::mov_imm(R0, v));
    f.emit(Insn::exit());
}

/// `x = r8 + (x & 127)`: a byte index made a pointer into the frame the verifier bounds.
fn frame_ptr(f: &mut Func, x: crate::insn::Reg) {
    f.emit(Insn::alu64_imm(Alu::And, x, LAST as i32));
    f.emit(Insn::alu64_reg(Alu::Add, x, R8));
}

/// For the byte in r3: r0 = r8 + 8 * (r3 >> 6) (its word of a byte set at `var(k)`, read
/// at `r0 + var(k)`), r4 = 1 << (r3 & 63). Uses r0, r4.
fn bit_of(f: &mut Func) {
    f.emit(Insn::mov(R0, R3));
    f.emit(Insn::alu64_imm(Alu::Rsh, R0, 6));
    f.emit(Insn::alu64_imm(Alu::And, R0, 3));
    f.emit(Insn::alu64_imm(Alu::Lsh, R0, 3));
    f.emit(Insn::alu64_reg(Alu::Add, R0, R8));
    f.emit(Insn::mov(R4, R3));
    f.emit(Insn::alu64_imm(Alu::And, R4, 63));
    f.emit(Insn::mov_imm(R2, 1));
    f.emit(Insn::alu64_reg(Alu::Lsh, R2, R4));
    f.emit(Insn::mov(R4, R2));
}

/// `bpf_probe_read_kernel(r8 + CAND, (hi - lo) & 127, r8 + from + (lo & 127))` unless
/// `hi - lo` is 0 (the bytes `lo..hi` of the frame buffer at `from` into the candidate
/// buffer). `lo` and `hi` are registers other than r1 and r2; uses r0-r3.
fn read_frame(f: &mut Func, lo: crate::insn::Reg, hi: crate::insn::Reg, from: usize) {
    let skip = f.new_label();
    f.emit(Insn::mov(R2, hi));
    f.emit(Insn::alu64_reg(Alu::Sub, R2, lo));
    f.emit(Insn::alu64_imm(Alu::And, R2, LAST as i32));
    f.jmp_imm(Cond::Eq, R2, 0, skip);
    if lo != R3 {
        f.emit(Insn::mov(R3, lo));
    }
    frame_ptr(f, R3);
    f.emit(Insn::alu64_imm(Alu::Add, R3, from as i32));
    f.emit(Insn::mov(R1, R8));
    f.emit(Insn::alu64_imm(Alu::Add, R1, CAND as i32));
    f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
    f.bind(skip);
}

/// Compare the 16 words at `a` and `b` (frame offsets); jump to `differ` at the first pair
/// that differs. Uses r1, r2.
fn words_differ(f: &mut Func, a: usize, b: usize, differ: Label) {
    for k in 0..SWORDS {
        f.emit(Insn::ldx(DW, R1, R8, at(a + 8 * k)));
        f.emit(Insn::ldx(DW, R2, R8, at(b + 8 * k)));
        f.jmp_reg(Cond::Ne, R1, R2, differ);
    }
}

/// `bpf_probe_read_kernel(r8 + CAND, var(len) & 127, r3)`: `len` bytes of a string from the
/// address in r3 into the candidate buffer (zeroed once before the loop: the bytes after them
/// stay zero).
fn read_candidate(f: &mut Func, len: usize) {
    f.emit(Insn::mov(R1, R8));
    f.emit(Insn::alu64_imm(Alu::Add, R1, CAND as i32));
    f.emit(Insn::ldx(DW, R2, R8, var(len)));
    f.emit(Insn::alu64_imm(Alu::And, R2, LAST as i32));
    f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
}

impl Gen<'_> {
    /// `SCall` at `pc` (every function but `tokenize`, which `user_space_only` refuses).
    pub(super) fn scall(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let fun = StrFn::from_i32(insn.arg)
            .ok_or_else(|| Error::BadCode(format!("string function {} at {pc}", insn.arg)))?;
        let (params, ret_str) = fun.signature();
        let ni = params.iter().filter(|&&s| !s).count();
        let ns = params.len() - ni;
        let sd = r.shape.sdepth[&pc] as usize;
        let d = r.vs.len();
        if d < ni || sd < ns {
            return Err(Error::BadCode(format!("{} operands at {pc}", fun.name())));
        }
        self.flush(r);
        let base = d - ni;
        let s: Vec<usize> = (sd - ns..sd).map(|k| sslot(k as u32)).collect();
        let n: Vec<i16> = (base..d).map(|k| stack(k as u32)).collect();
        let fid = r.f;
        match fun {
            StrFn::Strlen => strlen(self.b.f(fid), s[0]),
            StrFn::Stringat => {
                // `Position out of bounds` unless 0 <= i < strlen(s) (unsigned: a negative
                // i is out too).
                let f = self.b.f(fid);
                strlen(f, s[0]);
                f.emit(Insn::ldx(DW, R3, R8, n[0]));
                let ok = f.new_label();
                f.jmp_reg(Cond::Lt, R3, R0, ok);
                self.error(r, ERR_POSITION, pc);
                let f = self.b.f(fid);
                f.bind(ok);
                frame_ptr(f, R3);
                f.emit(Insn::ldx(B, R0, R3, at(s[0])));
            }
            StrFn::Substr => substr(self.b.f(fid), s[0], n[0], n[1]),
            StrFn::Isinstr => self.isinstr(fid, s[0], s[1]),
            StrFn::Strtol => self.strtol(fid, s[0], n[0]),
            StrFn::TextStr => self.text_str(fid, s[0]),
            StrFn::StrReplace => self.str_replace(fid, s[0], s[1], s[2]),
            StrFn::Tokenize => self.tokenize(fid, s[0], s[1]),
        }
        r.vs.truncate(base);
        if !ret_str {
            r.vs.push(Val::Reg(R0));
        }
        Ok(())
    }

    /// A new function, the callback of a `bpf_loop` started from a function that keeps r8 at
    /// `r10 - 8`: r1 is the iteration, r8 the frame.
    fn str_callback(&mut self) -> FuncId {
        let id = self.b.add();
        self.b.f(id).emit(Insn::ldx(DW, R8, R2, 0));
        id
    }

    /// `bpf_loop(r1, cb, r10 - 8, 0)` (r1 set by the caller).
    fn str_loop(&mut self, fid: FuncId, cb: FuncId) {
        let f = self.b.f(fid);
        f.ld_func(R2, cb);
        f.emit(Insn::mov(R3, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R3, -8));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::call_helper(helper::LOOP));
    }

    /// `isinstr(s1, s2)`: 1 for an empty `s2`, else a `bpf_loop` over the positions of `s1`
    /// where `s2` fits, each comparing `strlen(s2)` bytes read from there with `s2`.
    fn isinstr(&mut self, fid: FuncId, s1: usize, s2: usize) {
        // var0: strlen(s2); var1: the result.
        let cb = self.str_callback();
        {
            let f = self.b.f(cb);
            f.emit(Insn::mov(R3, R1));
            frame_ptr(f, R3);
            f.emit(Insn::alu64_imm(Alu::Add, R3, s1 as i32));
            read_candidate(f, 0);
            let miss = f.new_label();
            words_differ(f, CAND, s2, miss);
            f.emit(Insn::st(DW, R8, var(1), 1));
            ret(f, 1);
            f.bind(miss);
            ret(f, 0);
        }
        let f = self.b.f(fid);
        let done = f.new_label();
        strlen(f, s2);
        f.emit(Insn::stx(DW, R8, var(0), R0));
        strlen(f, s1);
        f.emit(Insn::ldx(DW, R1, R8, var(0)));
        f.emit(Insn::st(DW, R8, var(1), 1));
        f.jmp_imm(Cond::Eq, R1, 0, done);
        f.emit(Insn::st(DW, R8, var(1), 0));
        f.jmp_reg(Cond::Gt, R1, R0, done);
        // Positions 0 ..= strlen(s1) - strlen(s2).
        f.emit(Insn::alu64_reg(Alu::Sub, R0, R1));
        f.emit(Insn::alu64_imm(Alu::Add, R0, 1));
        zero(f, CAND, SWORDS);
        f.emit(Insn::mov(R1, R0));
        self.str_loop(fid, cb);
        let f = self.b.f(fid);
        f.bind(done);
        f.emit(Insn::ldx(DW, R0, R8, var(1)));
    }

    /// `strtol(s, base)` as the kernel's `simple_strtol` (`strfn::strtol`): a `-`, the
    /// prefixes of bases 0 and 16, then the digits (a `bpf_loop`): `0-9a-fA-F` below the base,
    /// the argument as an `unsigned int`, with wrapping arithmetic.
    fn strtol(&mut self, fid: FuncId, s: usize, nbase: i16) {
        // var1: the value; var2: negative; var3: the first digit; var4: the base.
        let dig = self.str_callback();
        {
            let f = self.b.f(dig);
            let stop = f.new_label();
            let have = f.new_label();
            f.emit(Insn::ldx(DW, R3, R8, var(3)));
            f.emit(Insn::alu64_reg(Alu::Add, R3, R1));
            f.jmp_imm(Cond::Gt, R3, LAST as i32, stop);
            f.emit(Insn::alu64_reg(Alu::Add, R3, R8));
            f.emit(Insn::ldx(B, R0, R3, at(s)));
            f.emit(Insn::mov(R1, R0));
            f.emit(Insn::alu64_imm(Alu::Sub, R1, i32::from(b'0')));
            f.jmp_imm(Cond::Le, R1, 9, have);
            // a-f of either case: 10 + its place in the alphabet (`_tolower` is `| 0x20`).
            f.emit(Insn::mov(R1, R0));
            f.emit(Insn::alu64_imm(Alu::Or, R1, 0x20));
            f.emit(Insn::alu64_imm(Alu::Sub, R1, i32::from(b'a')));
            f.jmp_imm(Cond::Gt, R1, 5, stop);
            f.emit(Insn::alu64_imm(Alu::Add, R1, 10));
            f.bind(have);
            f.emit(Insn::ldx(DW, R2, R8, var(4)));
            f.jmp_reg(Cond::Ge, R1, R2, stop);
            f.emit(Insn::ldx(DW, R3, R8, var(1)));
            f.emit(Insn::alu64_reg(Alu::Mul, R3, R2));
            f.emit(Insn::alu64_reg(Alu::Add, R3, R1));
            f.emit(Insn::stx(DW, R8, var(1), R3));
            ret(f, 0);
            f.bind(stop);
            ret(f, 1);
        }
        let f = self.b.f(fid);
        let (signed, b16, hex, digits, done) = (
            f.new_label(),
            f.new_label(),
            f.new_label(),
            f.new_label(),
            f.new_label(),
        );
        // r4: the position; the sign.
        f.emit(Insn::st(DW, R8, var(2), 0));
        f.emit(Insn::mov_imm(R4, 0));
        f.emit(Insn::ldx(B, R0, R8, at(s)));
        f.jmp_imm(Cond::Ne, R0, i32::from(b'-'), signed);
        f.emit(Insn::st(DW, R8, var(2), 1));
        f.emit(Insn::mov_imm(R4, 1));
        f.bind(signed);
        // r0, r1: the next two bytes; r2: the second one in lower case; r5: the base.
        f.emit(Insn::mov(R3, R4));
        f.emit(Insn::alu64_reg(Alu::Add, R3, R8));
        f.emit(Insn::ldx(B, R0, R3, at(s)));
        f.emit(Insn::ldx(B, R1, R3, at(s + 1)));
        f.emit(Insn::mov(R2, R1));
        f.emit(Insn::alu64_imm(Alu::Or, R2, 0x20));
        f.emit(Insn::ldx(DW, R5, R8, nbase));
        f.emit(Insn::mov32(R5, R5));
        f.jmp_imm(Cond::Ne, R5, 0, b16);
        // Base 0: `0x` and a hex digit is 16, another `0` 8, anything else 10.
        f.emit(Insn::mov_imm(R5, 10));
        f.jmp_imm(Cond::Ne, R0, i32::from(b'0'), digits);
        f.emit(Insn::mov_imm(R5, 8));
        f.jmp_imm(Cond::Ne, R2, i32::from(b'x'), digits);
        f.emit(Insn::ldx(B, R1, R3, at(s + 2)));
        f.emit(Insn::mov(R2, R1));
        f.emit(Insn::alu64_imm(Alu::Sub, R2, i32::from(b'0')));
        f.jmp_imm(Cond::Le, R2, 9, hex);
        f.emit(Insn::alu64_imm(Alu::Or, R1, 0x20));
        f.emit(Insn::alu64_imm(Alu::Sub, R1, i32::from(b'a')));
        f.jmp_imm(Cond::Gt, R1, 5, digits);
        f.bind(hex);
        f.emit(Insn::mov_imm(R5, 16));
        f.emit(Insn::alu64_imm(Alu::Add, R4, 2));
        f.ja(digits);
        // Base 16: an optional `0x`.
        f.bind(b16);
        f.jmp_imm(Cond::Ne, R5, 16, digits);
        f.jmp_imm(Cond::Ne, R0, i32::from(b'0'), digits);
        f.jmp_imm(Cond::Ne, R2, i32::from(b'x'), digits);
        f.emit(Insn::alu64_imm(Alu::Add, R4, 2));
        f.bind(digits);
        f.emit(Insn::st(DW, R8, var(1), 0));
        f.emit(Insn::stx(DW, R8, var(3), R4));
        f.emit(Insn::stx(DW, R8, var(4), R5));
        f.emit(Insn::mov_imm(R1, MAXSTRINGLEN as i32));
        self.str_loop(fid, dig);
        let f = self.b.f(fid);
        f.emit(Insn::ldx(DW, R0, R8, var(1)));
        f.emit(Insn::ldx(DW, R1, R8, var(2)));
        f.jmp_imm(Cond::Eq, R1, 0, done);
        f.emit(Insn::neg(R0));
        f.bind(done);
    }

    /// `text_str(s)` as `_stp_text_str` (`strfn::text_str`): a `bpf_loop` over the input,
    /// each iteration decoding one UTF-8 character (as `_stp_decode_utf8`: else one byte)
    /// and writing it, or its escape, into the result buffer; it stops at the NUL, after 127
    /// bytes of input, or before the first escape that does not fit whole in 127 bytes.
    fn text_str(&mut self, fid: FuncId, s: usize) {
        // var0: the bytes written; var1: the input position; var2: the bytes of a character.
        let cb = self.str_callback();
        {
            let f = self.b.f(cb);
            let [stop, verbatim, two, three, four, checks, not3, not4, big, advance, esc2, plain, wrote] =
                [(); 13].map(|()| f.new_label());
            // r1: the position; r3: its byte; r5: the bytes after it (`size` once the lead
            // byte is read).
            f.emit(Insn::ldx(DW, R1, R8, var(1)));
            f.jmp_imm(Cond::Ge, R1, LAST as i32, stop);
            f.emit(Insn::mov(R4, R1));
            frame_ptr(f, R4);
            f.emit(Insn::ldx(B, R3, R4, at(s)));
            f.emit(Insn::mov_imm(R5, LAST as i32 - 1));
            f.emit(Insn::alu64_reg(Alu::Sub, R5, R1));
            for (mask, lead, l) in [(0xE0, 0xC0, two), (0xF0, 0xE0, three), (0xF8, 0xF0, four)] {
                f.emit(Insn::mov(R0, R3));
                f.emit(Insn::alu64_imm(Alu::And, R0, mask));
                f.jmp_imm(Cond::Eq, R0, lead, l);
            }
            f.ja(verbatim);
            // r2: the code point so far.
            let cont = f.new_label();
            for (n, l, bits) in [(2, two, 0x1F), (3, three, 0xF), (4, four, 0x7)] {
                f.bind(l);
                f.jmp_imm(Cond::Lt, R5, n - 1, verbatim);
                f.emit(Insn::st(DW, R8, var(2), n));
                f.emit(Insn::mov(R2, R3));
                f.emit(Insn::alu64_imm(Alu::And, R2, bits));
                f.ja(cont);
            }
            f.bind(cont);
            for k in 1..=3 {
                if k > 1 {
                    f.emit(Insn::ldx(DW, R0, R8, var(2)));
                    f.jmp_imm(Cond::Le, R0, k, checks);
                }
                f.emit(Insn::mov(R0, R1));
                f.emit(Insn::alu64_imm(Alu::Add, R0, k));
                frame_ptr(f, R0);
                f.emit(Insn::ldx(B, R0, R0, at(s)));
                f.emit(Insn::mov(R5, R0));
                f.emit(Insn::alu64_imm(Alu::And, R5, 0xC0));
                f.jmp_imm(Cond::Ne, R5, 0x80, verbatim);
                f.emit(Insn::alu64_imm(Alu::Lsh, R2, 6));
                f.emit(Insn::alu64_imm(Alu::And, R0, 0x3F));
                f.emit(Insn::alu64_reg(Alu::Or, R2, R0));
            }
            // Overlong forms, values above U+10FFFF and surrogates are bytes.
            f.bind(checks);
            f.jmp_imm(Cond::Lt, R2, 0x80, verbatim);
            f.emit(Insn::ldx(DW, R0, R8, var(2)));
            f.jmp_imm(Cond::Ne, R0, 3, not3);
            f.jmp_imm(Cond::Lt, R2, 0x800, verbatim);
            f.bind(not3);
            f.jmp_imm(Cond::Ne, R0, 4, not4);
            f.jmp_imm(Cond::Lt, R2, 0x10000, verbatim);
            f.bind(not4);
            f.jmp_imm(Cond::Gt, R2, 0x10FFFF, verbatim);
            f.emit(Insn::mov(R0, R2));
            f.emit(Insn::alu64_imm(Alu::Sub, R0, 0xD800));
            f.jmp_imm(Cond::Le, R0, 0x7FF, verbatim);
            // A character: \uXXXX, or \UXXXXXXXX above U+FFFF, if it fits.
            f.emit(Insn::ldx(DW, R4, R8, var(0)));
            f.jmp_imm(Cond::Gt, R2, 0xFFFF, big);
            for (letter, digits, l) in [(b'u', 4, None), (b'U', 8, Some(big))] {
                if let Some(l) = l {
                    f.bind(l);
                }
                let num = 2 + digits;
                f.emit(Insn::mov(R0, R4));
                f.emit(Insn::alu64_imm(Alu::Add, R0, num));
                f.jmp_imm(Cond::Gt, R0, LAST as i32, stop);
                f.emit(Insn::stx(DW, R8, var(0), R0));
                frame_ptr(f, R4);
                f.emit(Insn::st(B, R4, at(OUT), i32::from(b'\\')));
                f.emit(Insn::st(B, R4, at(OUT + 1), i32::from(letter)));
                for i in 0..digits {
                    f.emit(Insn::mov(R0, R2));
                    f.emit(Insn::alu64_imm(Alu::Rsh, R0, 4 * (digits - 1 - i)));
                    f.emit(Insn::alu64_imm(Alu::And, R0, 0xF));
                    f.emit(Insn::jmp_imm(Cond::Lt, R0, 10, 1));
                    f.emit(Insn::alu64_imm(Alu::Add, R0, i32::from(b'A' - b'0' - 10)));
                    f.emit(Insn::alu64_imm(Alu::Add, R0, i32::from(b'0')));
                    f.emit(Insn::stx(B, R4, at(OUT + 2 + i as usize), R0));
                }
                f.ja(advance);
            }
            f.bind(advance);
            f.emit(Insn::ldx(DW, R1, R8, var(1)));
            f.emit(Insn::ldx(DW, R0, R8, var(2)));
            f.emit(Insn::alu64_reg(Alu::Add, R1, R0));
            f.emit(Insn::stx(DW, R8, var(1), R1));
            ret(f, 0);
            // One byte (r3): the NUL ends; printable ASCII but `"` and `\`, a short escape,
            // else \ooo.
            f.bind(verbatim);
            f.jmp_imm(Cond::Eq, R3, 0, stop);
            f.emit(Insn::ldx(DW, R4, R8, var(0)));
            for (c, e) in otf_script::strfn::CONTROL_ESCAPES
                .into_iter()
                .chain([(b'"', b'"'), (b'\\', b'\\')])
            {
                f.emit(Insn::mov_imm(R0, i32::from(e)));
                f.jmp_imm(Cond::Eq, R3, i32::from(c), esc2);
            }
            f.emit(Insn::mov(R0, R3));
            f.emit(Insn::alu64_imm(Alu::Sub, R0, 0x20));
            f.jmp_imm(Cond::Le, R0, 0x7e - 0x20, plain);
            f.emit(Insn::mov(R5, R4));
            f.emit(Insn::alu64_imm(Alu::Add, R5, 4));
            f.jmp_imm(Cond::Gt, R5, LAST as i32, stop);
            frame_ptr(f, R4);
            f.emit(Insn::st(B, R4, at(OUT), i32::from(b'\\')));
            for (k, shift) in [(1, 6), (2, 3), (3, 0)] {
                f.emit(Insn::mov(R0, R3));
                if shift != 0 {
                    f.emit(Insn::alu64_imm(Alu::Rsh, R0, shift));
                }
                f.emit(Insn::alu64_imm(Alu::And, R0, 7));
                f.emit(Insn::alu64_imm(Alu::Add, R0, i32::from(b'0')));
                f.emit(Insn::stx(B, R4, at(OUT + k), R0));
            }
            f.ja(wrote);
            f.bind(esc2);
            f.emit(Insn::mov(R5, R4));
            f.emit(Insn::alu64_imm(Alu::Add, R5, 2));
            f.jmp_imm(Cond::Gt, R5, LAST as i32, stop);
            frame_ptr(f, R4);
            f.emit(Insn::st(B, R4, at(OUT), i32::from(b'\\')));
            f.emit(Insn::stx(B, R4, at(OUT + 1), R0));
            f.ja(wrote);
            f.bind(plain);
            f.emit(Insn::mov(R5, R4));
            f.emit(Insn::alu64_imm(Alu::Add, R5, 1));
            f.jmp_imm(Cond::Gt, R5, LAST as i32, stop);
            frame_ptr(f, R4);
            f.emit(Insn::stx(B, R4, at(OUT), R3));
            // r5: the bytes written now; one byte of input.
            f.bind(wrote);
            f.emit(Insn::stx(DW, R8, var(0), R5));
            f.emit(Insn::ldx(DW, R1, R8, var(1)));
            f.emit(Insn::alu64_imm(Alu::Add, R1, 1));
            f.emit(Insn::stx(DW, R8, var(1), R1));
            ret(f, 0);
            f.bind(stop);
            ret(f, 1);
        }
        let f = self.b.f(fid);
        zero(f, OUT, SWORDS);
        f.emit(Insn::st(DW, R8, var(0), 0));
        f.emit(Insn::st(DW, R8, var(1), 0));
        f.emit(Insn::mov_imm(R1, LAST as i32));
        self.str_loop(fid, cb);
        let f = self.b.f(fid);
        copy_str(f, R8, s, R8, OUT);
        f.emit(Insn::st(B, R8, at(s + LAST), 0));
    }

    /// At the start of a program that calls `tokenize`: nothing left of a string
    /// (`Frame::tok` zeroed), as the reference VM starts each run.
    pub(super) fn clear_tokenize(&mut self, fid: FuncId, shape: &crate::cfg::Shape) {
        let uses = shape.depth.keys().any(|&pc| {
            let insn = self.code[pc];
            insn.opcode() == Some(otf_script::bytecode::Op::SCall)
                && StrFn::from_i32(insn.arg) == Some(StrFn::Tokenize)
        });
        if uses {
            zero(self.b.f(fid), off::F_TOK, SWORDS);
        }
    }

    /// `tokenize(s, delim)` as `strfn::tokenize` (SystemTap's `strsep` loop): a non-empty
    /// `s` is copied to `Frame::tok`; a `bpf_loop` over `delim` makes the set of its bytes
    /// (a 256-bit set in `var(8..12)`); a `bpf_loop` over `tok` finds the first byte not in
    /// it (the token's start) and the next byte in it or the NUL (its end). The token is read
    /// into the zeroed candidate buffer and copied over `s`; what follows the delimiter at the
    /// end (nothing at the NUL) becomes `tok`, zero-padded, the same way.
    fn tokenize(&mut self, fid: FuncId, s: usize, delim: usize) {
        const SET: usize = 8;
        // var0: the start (128 until found); var1: the end.
        let set = self.str_callback();
        {
            let f = self.b.f(set);
            let stop = f.new_label();
            frame_ptr(f, R1);
            f.emit(Insn::ldx(B, R3, R1, at(delim)));
            f.jmp_imm(Cond::Eq, R3, 0, stop);
            bit_of(f);
            f.emit(Insn::ldx(DW, R2, R0, var(SET)));
            f.emit(Insn::alu64_reg(Alu::Or, R2, R4));
            f.emit(Insn::stx(DW, R0, var(SET), R2));
            ret(f, 0);
            f.bind(stop);
            ret(f, 1);
        }
        let scan = self.str_callback();
        {
            let f = self.b.f(scan);
            let (end, started, skip) = (f.new_label(), f.new_label(), f.new_label());
            f.emit(Insn::alu64_imm(Alu::And, R1, LAST as i32));
            f.emit(Insn::mov(R5, R1));
            f.emit(Insn::alu64_reg(Alu::Add, R1, R8));
            f.emit(Insn::ldx(B, R3, R1, at(off::F_TOK)));
            f.jmp_imm(Cond::Eq, R3, 0, end);
            bit_of(f);
            f.emit(Insn::ldx(DW, R2, R0, var(SET)));
            f.emit(Insn::alu64_reg(Alu::And, R2, R4));
            f.emit(Insn::ldx(DW, R0, R8, var(0)));
            f.jmp_imm(Cond::Ne, R0, MAXSTRINGLEN as i32, started);
            // Before the token: a delimiter is an empty token, skipped.
            f.jmp_imm(Cond::Ne, R2, 0, skip);
            f.emit(Insn::stx(DW, R8, var(0), R5));
            ret(f, 0);
            f.bind(started);
            f.jmp_imm(Cond::Ne, R2, 0, end);
            ret(f, 0);
            f.bind(end);
            f.emit(Insn::stx(DW, R8, var(1), R5));
            ret(f, 1);
            f.bind(skip);
            ret(f, 0);
        }
        let f = self.b.f(fid);
        let same = f.new_label();
        f.emit(Insn::ldx(B, R0, R8, at(s)));
        f.jmp_imm(Cond::Eq, R0, 0, same);
        copy_str(f, R8, off::F_TOK, R8, s);
        f.bind(same);
        for k in 0..4 {
            f.emit(Insn::st(DW, R8, var(SET + k), 0));
        }
        f.emit(Insn::mov_imm(R1, LAST as i32));
        self.str_loop(fid, set);
        let f = self.b.f(fid);
        f.emit(Insn::st(DW, R8, var(0), MAXSTRINGLEN as i32));
        f.emit(Insn::st(DW, R8, var(1), LAST as i32));
        f.emit(Insn::mov_imm(R1, MAXSTRINGLEN as i32));
        self.str_loop(fid, scan);
        let f = self.b.f(fid);
        // r3: the start (the end when no token started), r4: the end.
        f.emit(Insn::ldx(DW, R3, R8, var(0)));
        f.emit(Insn::ldx(DW, R4, R8, var(1)));
        f.emit(Insn::jmp_reg(Cond::Le, R3, R4, 1));
        f.emit(Insn::mov(R3, R4));
        zero(f, CAND, SWORDS);
        read_frame(f, R3, R4, off::F_TOK);
        copy_str(f, R8, s, R8, CAND);
        // What is left: after the delimiter at the end, or nothing at the NUL.
        let (rest, done) = (f.new_label(), f.new_label());
        f.emit(Insn::ldx(DW, R3, R8, var(1)));
        f.emit(Insn::mov(R1, R3));
        frame_ptr(f, R1);
        f.emit(Insn::ldx(B, R0, R1, at(off::F_TOK)));
        f.jmp_imm(Cond::Ne, R0, 0, rest);
        zero(f, off::F_TOK, SWORDS);
        f.ja(done);
        f.bind(rest);
        zero(f, CAND, SWORDS);
        f.emit(Insn::alu64_imm(Alu::Add, R3, 1));
        f.emit(Insn::mov_imm(R4, LAST as i32));
        read_frame(f, R3, R4, off::F_TOK);
        copy_str(f, R8, off::F_TOK, R8, CAND);
        f.bind(done);
    }

    /// `str_replace(s, old, new)`: `s` when `old` is empty, else a `bpf_loop` over the bytes
    /// of `s`: where `old` matches (compared as `isinstr` does), `new` is appended to the
    /// result and the loop skips `old`; elsewhere the byte is. Cut at 127 bytes.
    fn str_replace(&mut self, fid: FuncId, s: usize, old: usize, new: usize) {
        // var0: the bytes written; var1: strlen(old); var2: strlen(new); var3: strlen(s);
        // var4: the next byte to look at; var5: this iteration's byte.
        let cb = self.str_callback();
        {
            let f = self.b.f(cb);
            let (skip, stop, literal, check) =
                (f.new_label(), f.new_label(), f.new_label(), f.new_label());
            f.emit(Insn::alu64_imm(Alu::And, R1, LAST as i32));
            f.emit(Insn::ldx(DW, R2, R8, var(4)));
            f.jmp_reg(Cond::Lt, R1, R2, skip);
            f.emit(Insn::stx(DW, R8, var(5), R1));
            f.emit(Insn::mov(R3, R1));
            f.emit(Insn::alu64_reg(Alu::Add, R3, R8));
            f.emit(Insn::ldx(B, R0, R3, at(s)));
            f.jmp_imm(Cond::Eq, R0, 0, stop);
            // Does `old` fit here?
            f.emit(Insn::ldx(DW, R2, R8, var(1)));
            f.emit(Insn::mov(R4, R1));
            f.emit(Insn::alu64_reg(Alu::Add, R4, R2));
            f.emit(Insn::ldx(DW, R5, R8, var(3)));
            f.jmp_reg(Cond::Gt, R4, R5, literal);
            f.emit(Insn::alu64_imm(Alu::Add, R3, s as i32));
            read_candidate(f, 1);
            words_differ(f, CAND, old, literal);
            // A match: `new` at the end of the result, and past `old`.
            let empty = f.new_label();
            f.emit(Insn::ldx(DW, R1, R8, var(0)));
            frame_ptr(f, R1);
            f.emit(Insn::alu64_imm(Alu::Add, R1, OUT as i32));
            f.emit(Insn::ldx(DW, R2, R8, var(2)));
            f.emit(Insn::alu64_imm(Alu::And, R2, LAST as i32));
            f.jmp_imm(Cond::Eq, R2, 0, empty);
            f.emit(Insn::mov(R3, R8));
            f.emit(Insn::alu64_imm(Alu::Add, R3, new as i32));
            f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
            f.bind(empty);
            f.emit(Insn::ldx(DW, R5, R8, var(0)));
            f.emit(Insn::ldx(DW, R1, R8, var(2)));
            f.emit(Insn::alu64_reg(Alu::Add, R5, R1));
            f.emit(Insn::stx(DW, R8, var(0), R5));
            f.emit(Insn::ldx(DW, R1, R8, var(5)));
            f.emit(Insn::ldx(DW, R2, R8, var(1)));
            f.emit(Insn::alu64_reg(Alu::Add, R1, R2));
            f.emit(Insn::stx(DW, R8, var(4), R1));
            f.ja(check);
            f.bind(literal);
            f.emit(Insn::ldx(DW, R1, R8, var(5)));
            frame_ptr(f, R1);
            f.emit(Insn::ldx(B, R0, R1, at(s)));
            f.emit(Insn::ldx(DW, R5, R8, var(0)));
            f.emit(Insn::mov(R4, R5));
            frame_ptr(f, R4);
            f.emit(Insn::stx(B, R4, at(OUT), R0));
            f.emit(Insn::alu64_imm(Alu::Add, R5, 1));
            f.emit(Insn::stx(DW, R8, var(0), R5));
            f.bind(check);
            f.emit(Insn::ldx(DW, R5, R8, var(0)));
            f.jmp_imm(Cond::Sge, R5, LAST as i32, stop);
            f.bind(skip);
            ret(f, 0);
            f.bind(stop);
            ret(f, 1);
        }
        let f = self.b.f(fid);
        let done = f.new_label();
        strlen(f, old);
        f.jmp_imm(Cond::Eq, R0, 0, done);
        f.emit(Insn::stx(DW, R8, var(1), R0));
        strlen(f, new);
        f.emit(Insn::stx(DW, R8, var(2), R0));
        strlen(f, s);
        f.emit(Insn::stx(DW, R8, var(3), R0));
        zero(f, CAND, SWORDS);
        zero(f, OUT, SWORDS);
        f.emit(Insn::st(DW, R8, var(0), 0));
        f.emit(Insn::st(DW, R8, var(4), 0));
        f.emit(Insn::mov_imm(R1, LAST as i32));
        self.str_loop(fid, cb);
        let f = self.b.f(fid);
        copy_str(f, R8, s, R8, OUT);
        f.emit(Insn::st(B, R8, at(s + LAST), 0));
        f.bind(done);
    }
}

/// `substr(s, start, len)`: "" unless `0 <= start < strlen(s)`; then `strlcpy` with the size
/// `clamp(len + 1, 0, MAXSTRINGLEN)` (`len + 1` wrapping), so at most that size less one
/// bytes. Those bytes are read into the zeroed candidate buffer by `bpf_probe_read_kernel`,
/// which is then copied over `s`.
fn substr(f: &mut Func, s: usize, start: i16, len: i16) {
    strlen(f, s);
    // r3: the start (strlen(s), which copies nothing, when out of the string), r4: the end,
    // then the length.
    f.emit(Insn::ldx(DW, R3, R8, start));
    f.emit(Insn::jmp_imm(Cond::Sge, R3, 0, 1));
    f.emit(Insn::mov(R3, R0));
    f.emit(Insn::jmp_reg(Cond::Sle, R3, R0, 1));
    f.emit(Insn::mov(R3, R0));
    f.emit(Insn::ldx(DW, R4, R8, len));
    f.emit(Insn::alu64_imm(Alu::Add, R4, 1));
    f.emit(Insn::jmp_imm(Cond::Sge, R4, 1, 1));
    f.emit(Insn::mov_imm(R4, 1));
    f.emit(Insn::jmp_imm(Cond::Sle, R4, MAXSTRINGLEN as i32, 1));
    f.emit(Insn::mov_imm(R4, MAXSTRINGLEN as i32));
    f.emit(Insn::alu64_imm(Alu::Sub, R4, 1));
    f.emit(Insn::alu64_reg(Alu::Add, R4, R3));
    f.emit(Insn::jmp_reg(Cond::Sle, R4, R0, 1));
    f.emit(Insn::mov(R4, R0));
    f.emit(Insn::alu64_reg(Alu::Sub, R4, R3));
    zero(f, CAND, SWORDS);
    let copy = f.new_label();
    f.emit(Insn::mov(R2, R4));
    f.emit(Insn::alu64_imm(Alu::And, R2, LAST as i32));
    f.jmp_imm(Cond::Eq, R2, 0, copy);
    frame_ptr(f, R3);
    f.emit(Insn::alu64_imm(Alu::Add, R3, s as i32));
    f.emit(Insn::mov(R1, R8));
    f.emit(Insn::alu64_imm(Alu::Add, R1, CAND as i32));
    f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
    f.bind(copy);
    copy_str(f, R8, s, R8, CAND);
}
