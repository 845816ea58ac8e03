//! `sprintf` (`SFormat`) in generated bodies: a fixed table of formats ([`formats`]), made
//! once from a fixed seed, each with its [`KernelFormat`] literal in the image's strings
//! ([`super::literals`]); the formats `bpf_snprintf` prints and the native formatter's
//! (`%c %#c %o`, `#`, precisions, `*` widths and `.*` precisions, more than 12 values, the `0`
//! flag on strings, text past the 127 bytes a result holds).

use otf_script::bytecode::{Format, Insn, Op, Piece, MAX_OUT_STRS};
use otf_script::format::{parse_printf, FmtItem, KernelFormat};

use super::{Gen, Rng};

/// The number of formats.
const NFORMATS: usize = 64;

/// One integer argument of a format: what the generator pushes for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntArg {
    /// Any value.
    Value,
    /// A `%c` value: ASCII in its low byte (the reference VM's strings are UTF-8, so a byte
    /// above 0x7f would differ; `%#c` escapes them, but the table does not know which), 0
    /// now and then (which ends the result).
    Char,
    /// A `*` width or `.*` precision: edges, negative and huge ones.
    Star,
}

/// A format of the table.
#[derive(Clone, Debug)]
pub struct SFormat {
    /// Its pieces, as the compiler makes them.
    pub fmt: Format,
    /// Its integer arguments, in order.
    pub ints: Vec<IntArg>,
    /// The number of its string arguments.
    pub nstrs: usize,
    /// Its [`KernelFormat`], encoded.
    pub kernel: String,
}

/// One random conversion (with its flags, width and precision) and text.
fn conversion(r: &mut Rng, strs: usize) -> String {
    let conv = if strs < MAX_OUT_STRS && r.chance(25) {
        's'
    } else {
        r.pick(&['d', 'i', 'u', 'x', 'X', 'o', 'c', 'p', 'd', 'x'])
    };
    let mut c = String::from("%");
    for flag in ['-', '+', ' ', '#', '0'] {
        if r.chance(15) {
            c.push(flag);
        }
    }
    match r.below(6) {
        0 => c.push('*'),
        1 => c.push_str(&r.pick(&[1, 5, 20, 64, 127, 300]).to_string()),
        _ => {}
    }
    match r.below(6) {
        0 => c.push_str(".*"),
        1 => c.push_str(&format!(".{}", r.pick(&[0, 1, 3, 25, 130]))),
        2 if r.chance(20) => c.push('.'),
        _ => {}
    }
    if r.chance(10) {
        c.push_str("ll");
    }
    c.push(conv);
    c
}

/// The table of formats (the same in every run: it is in every image).
pub fn formats() -> &'static [SFormat] {
    static F: std::sync::OnceLock<Vec<SFormat>> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let mut r = Rng::for_case(0x5f5f_5f5f, 0);
        let mut out = Vec::new();
        while out.len() < NFORMATS {
            let mut text = String::new();
            let most = if r.chance(10) { 16 } else { 4 };
            let n = 1 + r.below(most);
            let mut strs = 0;
            for _ in 0..n {
                match r.below(6) {
                    0 => text.push_str(&"t".repeat(r.pick(&[1, 30, 100, 126]) as usize)),
                    1 => text.push_str("|%%|"),
                    _ => {}
                }
                let c = conversion(&mut r, strs);
                strs += usize::from(c.ends_with('s'));
                text.push_str(&c);
            }
            if let Some(f) = build(&text) {
                out.push(f);
            }
        }
        out
    })
}

/// The pieces, arguments and kernel format of format string `text`, if the kernel prints
/// it (else the table skips it).
fn build(text: &str) -> Option<SFormat> {
    let (mut pieces, mut ints, mut nstrs) = (Vec::new(), Vec::new(), 0);
    for item in parse_printf(text).ok()? {
        match item {
            FmtItem::Text(t) => pieces.push(Piece::Text(t)),
            FmtItem::Conv { spec, .. } => {
                let arg = ints.len();
                ints.extend(std::iter::repeat_n(IntArg::Star, spec.dyn_args()));
                if spec.conv == b's' {
                    pieces.push(Piece::StrVal {
                        sarg: nstrs,
                        arg,
                        spec,
                    });
                    nstrs += 1;
                } else {
                    pieces.push(Piece::Int { arg, spec });
                    ints.push(if spec.conv == b'c' {
                        IntArg::Char
                    } else {
                        IntArg::Value
                    });
                }
            }
        }
    }
    let fmt = Format {
        pieces,
        nargs: ints.len(),
    };
    let kernel = KernelFormat::of(&fmt).ok()?.encode();
    (ints.len() <= otf_script::bytecode::MAX_OUT_ARGS).then_some(SFormat {
        fmt,
        ints,
        nstrs,
        kernel,
    })
}

impl Gen<'_> {
    /// A `sprintf` of a format of the table whose arguments fit: its integer arguments
    /// (straight-line leaves), then its string arguments; false if none fits.
    pub(super) fn sprintf(&mut self) -> bool {
        let id = self.rng.below(NFORMATS as u64) as usize;
        let f = &formats()[id];
        if self.room() < f.ints.len() + 2 || self.sroom() < f.nstrs.max(1) {
            return false;
        }
        for &k in &f.ints.clone() {
            match k {
                IntArg::Value => self.leaf(),
                IntArg::Char => {
                    self.leaf();
                    self.push(63);
                    self.op(Op::And);
                    let add = if self.rng.chance(10) { 0 } else { 33 };
                    self.push(add);
                    self.op(Op::Add);
                }
                IntArg::Star => {
                    let v = self.rng.pick(&[
                        -1,
                        -5,
                        0,
                        1,
                        3,
                        20,
                        126,
                        127,
                        128,
                        1024,
                        100_000,
                        (1 << 32) | 3,
                        i64::MIN,
                    ]);
                    self.push(v);
                }
            }
        }
        for _ in 0..f.nstrs {
            self.sexpr_at(0);
        }
        let lit = super::BASE_LITERALS + id;
        let imm = f.ints.len() as i64
            | (f.nstrs as i64) << 16
            | (lit as i64) << otf_script::vm::SFORMAT_KERNEL_SHIFT;
        self.emit(Insn::new(Op::SFormat, id as i32, imm));
        true
    }
}
