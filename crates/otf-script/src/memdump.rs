//! `printf`'s memory dumps, `%m` and `%M`, as SystemTap's runtime prints them
//! (`runtime/vsprintf.c`, `_stp_vsprint_memory`; the translator's `visit_print_format`):
//!
//! - The precision is the number of bytes read from the address (not a limit, as for
//!   `%s`): a precision above 0, else 1 byte (`%m`, `%.0m`, `%.m` read one). SystemTap reads
//!   at most a page and raises "N is too many bytes for a memory dump" above that; otf reads
//!   at most [`MAX_MEMORY_DUMP`] bytes: a larger constant precision is refused at check time,
//!   a larger `.*` precision reads [`MAX_MEMORY_DUMP`] bytes.
//! - Without `#` the bytes are kernel memory (`kread`), with `#` the current task's user
//!   memory (`uread`, SystemTap since 3.1). A fault ends the probe's body with the run-time
//!   error `read fault [man error::fault] at 0x…` (the first byte that cannot be read,
//!   [`fault_address`]) and nothing of that `printf` is printed.
//! - `%m` writes the bytes as they are; `%M` writes each as two lowercase hexadecimal
//!   digits. A width pads with spaces (after with `-`); the `0` flag writes a NUL byte after
//!   the field.
//!
//! The bytes travel in the output record: after the arguments the program pushed, each
//! dump has whole 64-bit words of the record's integer arguments, which the kernel (or, in
//! user-space bodies, the reference VM) fills when the `printf` runs. A [`MemPlan`], a
//! string literal of the compiled script named by the `Out` instruction, says where.

use crate::bytecode::{Piece, Spec};

/// The most bytes one `%m` or `%M` reads (MAXSTRINGLEN).
pub const MAX_MEMORY_DUMP: usize = 128;

/// The page size memory faults are counted in ([`fault_address`]): x86-64's.
pub const PAGE: u64 = 4096;

/// The first byte SystemTap (which reads a dump a byte at a time) finds unreadable in a
/// dump at `addr` that could not be read whole: `addr` itself when `first_ok` (its byte
/// reads) is false, else the start of the next page (a dump is shorter than a page, and
/// memory is readable or not by page).
pub fn fault_address(addr: u64, first_ok: bool) -> u64 {
    if first_ok {
        (addr & !(PAGE - 1)).wrapping_add(PAGE)
    } else {
        addr
    }
}

/// The most bytes of arguments one output record carries: its integer arguments (pushed
/// ones and memory dump words, 8 bytes each) and its string arguments (MAXSTRINGLEN each).
/// The code generator stages a record in a buffer of this size.
pub const MAX_RECORD_ARG_BYTES: usize = 1280;

/// The number of bytes a memory dump reads: the precision (the `.*` argument `prec`, or
/// the constant one) when above 0, else 1, at most [`MAX_MEMORY_DUMP`].
pub fn dump_len(spec: &Spec, prec: i64) -> usize {
    let p = if spec.star_prec {
        prec
    } else {
        spec.precision.map_or(0, i64::from)
    };
    if p > 0 {
        (p as u64).min(MAX_MEMORY_DUMP as u64) as usize
    } else {
        1
    }
}

/// How many bytes a memory dump's record words hold: its length when that is a constant,
/// else [`MAX_MEMORY_DUMP`].
pub fn dump_room(spec: &Spec) -> usize {
    if spec.star_prec {
        MAX_MEMORY_DUMP
    } else {
        dump_len(spec, 0)
    }
}

/// The bytes of `len` bytes kept in record words `words` (native byte order).
pub fn bytes_of(words: &[i64], len: usize) -> Vec<u8> {
    let mut b: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    b.resize(len, 0);
    b
}

/// The record words holding `bytes` (native byte order, the last one zero-padded).
pub fn words_of(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            i64::from_ne_bytes(w)
        })
        .collect()
}

/// SystemTap's `_stp_vsprint_memory` for `%m` and `%M`: `bytes` (already read), as they
/// are or in hexadecimal, padded with spaces to `width`; the `0` flag writes a NUL byte
/// after the field.
pub fn push_dump(out: &mut Vec<u8>, bytes: &[u8], spec: &Spec, width: usize) {
    let body: Vec<u8> = if spec.conv == b'M' {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        bytes
            .iter()
            .flat_map(|&c| [HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]])
            .collect()
    } else {
        bytes.to_vec()
    };
    let fill = width.saturating_sub(body.len());
    if !spec.left {
        out.extend(std::iter::repeat_n(b' ', fill));
    }
    out.extend_from_slice(&body);
    if spec.left {
        out.extend(std::iter::repeat_n(b' ', fill));
    }
    if spec.zero {
        out.push(0);
    }
}

/// How many bytes one memory dump reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpLen {
    /// A constant number of bytes (1 to [`MAX_MEMORY_DUMP`]).
    Const(usize),
    /// As [`dump_len`] computes it from the record's pushed argument at this index (a `.*`
    /// precision).
    Arg(usize),
}

/// One memory dump of an output record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dump {
    /// User memory (`%#m`), else kernel memory.
    pub user: bool,
    /// The index of the pushed argument holding the address.
    pub addr: usize,
    /// The index of the record's first word of bytes (after the pushed arguments).
    pub at: usize,
    /// How many bytes it reads.
    pub len: DumpLen,
}

impl Dump {
    /// The number of record words it has.
    pub fn words(&self) -> usize {
        match self.len {
            DumpLen::Const(n) => n.div_ceil(8),
            DumpLen::Arg(_) => MAX_MEMORY_DUMP / 8,
        }
    }

    /// The number of bytes it reads, given the record's pushed arguments.
    pub fn len_of(&self, args: &[i64]) -> usize {
        match self.len {
            DumpLen::Const(n) => n.clamp(1, MAX_MEMORY_DUMP),
            DumpLen::Arg(i) => {
                let spec = Spec {
                    star_prec: true,
                    ..Spec::default()
                };
                dump_len(&spec, args.get(i).copied().unwrap_or(0))
            }
        }
    }
}

/// A histogram printed by `print(@hist_log(a[k]))` (or `@hist_linear`): the buckets of
/// the aggregate's element, summed over the CPUs, copied into the record's words when the
/// print runs (SystemTap formats the histogram then), so a later change of the aggregate
/// (a `delete` in the same body, other hits) does not show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistSnap {
    /// The aggregate (a global).
    pub global: u32,
    /// `@hist_linear`'s buckets, else `@hist_log`'s.
    pub linear: bool,
    /// The element's keys ([`crate::bytecode::MapOperands::pack`]ed): the integer ones are
    /// the record's pushed arguments from `arg`, the string ones its string arguments from
    /// `sarg`, in key order.
    pub keys: i64,
    /// The index of the first integer key among the pushed arguments.
    pub arg: usize,
    /// The index of the first string key among the string arguments.
    pub sarg: usize,
    /// The index of the record's first word of buckets (after the pushed arguments).
    pub at: usize,
    /// The number of buckets (words).
    pub words: usize,
}

/// The largest number of words of one [`HistSnap`].
pub const MAX_HIST_WORDS: usize = MAX_RECORD_ARG_BYTES / 8;

/// The memory dumps and histograms of one output record, in record order: what the kernel
/// (or the reference VM) reads into the record when the `printf` or `print` runs. The
/// compiler keeps it as a string literal ([`MemPlan::encode`]) whose id the `Out`
/// instruction carries ([`crate::vm::out_plan`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemPlan {
    /// The dumps.
    pub dumps: Vec<Dump>,
    /// The histograms, after the dumps.
    pub hists: Vec<HistSnap>,
}

impl MemPlan {
    /// The number of record words of all the dumps and histograms.
    pub fn words(&self) -> usize {
        self.dumps.iter().map(Dump::words).sum::<usize>()
            + self.hists.iter().map(|h| h.words).sum::<usize>()
    }

    /// Whether the plan reads nothing.
    pub fn is_empty(&self) -> bool {
        self.dumps.is_empty() && self.hists.is_empty()
    }

    /// The plan as ASCII text: one `u` or `k`, the address index, the first word and `cN`
    /// (a constant length) or `aN` (the argument holding it) per dump; `h` (`@hist_log`) or
    /// `l` (`@hist_linear`), the global, the packed keys, the first integer and string
    /// keys, the first word and the number of words per histogram; `;` between them.
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self
            .dumps
            .iter()
            .map(|d| {
                let len = match d.len {
                    DumpLen::Const(n) => format!("c{n}"),
                    DumpLen::Arg(i) => format!("a{i}"),
                };
                let mem = if d.user { 'u' } else { 'k' };
                format!("{mem},{},{},{len}", d.addr, d.at)
            })
            .chain(self.hists.iter().map(|h| {
                let kind = if h.linear { 'l' } else { 'h' };
                format!(
                    "{kind},{},{},{},{},{},{}",
                    h.global, h.keys, h.arg, h.sarg, h.at, h.words
                )
            }))
            .collect();
        parts.join(";")
    }

    /// The plan [`MemPlan::encode`] wrote, if `s` is one: `n` pushed arguments, whose
    /// dumps follow each other from word `n` on, at most [`MAX_MEMORY_DUMP`] bytes each,
    /// then the histograms (keys among the `n` arguments and `ns` strings, at most
    /// [`MAX_HIST_WORDS`] words each).
    pub fn decode(s: &str, n: usize, ns: usize) -> Option<MemPlan> {
        let mut dumps = Vec::new();
        let mut hists: Vec<HistSnap> = Vec::new();
        let mut next = n;
        for part in s.split(';') {
            let mut f = part.split(',');
            let user = match f.next()? {
                "u" => true,
                "k" => false,
                k @ ("h" | "l") => {
                    let mut num = || f.next()?.parse::<i64>().ok();
                    let (global, keys, arg, sarg, at, words) =
                        (num()?, num()?, num()?, num()?, num()?, num()?);
                    let mo = crate::bytecode::MapOperands::unpack(keys);
                    let h = HistSnap {
                        global: u32::try_from(global).ok()?,
                        linear: k == "l",
                        keys,
                        arg: usize::try_from(arg).ok()?,
                        sarg: usize::try_from(sarg).ok()?,
                        at: usize::try_from(at).ok()?,
                        words: usize::try_from(words).ok()?,
                    };
                    if f.next().is_some()
                        || keys < 0
                        || mo.pack() != keys
                        || mo.nkeys as usize > crate::bytecode::MAX_KEYS
                        || h.arg + mo.nint() > n
                        || h.sarg + mo.nstr() > ns
                        || h.at != next
                        || !(1..=MAX_HIST_WORDS).contains(&h.words)
                    {
                        return None;
                    }
                    next += h.words;
                    hists.push(h);
                    continue;
                }
                _ => return None,
            };
            if !hists.is_empty() {
                return None;
            }
            let addr: usize = f.next()?.parse().ok()?;
            let at: usize = f.next()?.parse().ok()?;
            let len = f.next()?;
            let len = match (len.get(..1)?, len.get(1..)?.parse::<usize>().ok()?) {
                ("c", v) if (1..=MAX_MEMORY_DUMP).contains(&v) => DumpLen::Const(v),
                ("a", v) if v < n => DumpLen::Arg(v),
                _ => return None,
            };
            if f.next().is_some() || addr >= n || at != next {
                return None;
            }
            let d = Dump {
                user,
                addr,
                at,
                len,
            };
            next += d.words();
            dumps.push(d);
        }
        Some(MemPlan { dumps, hists })
    }
}

/// Place the words of the memory dumps among `pieces` (their [`Piece::Mem`] `at`) after
/// the record's `n` pushed arguments, in order, and return the plan that fills them.
pub fn place_dumps(pieces: &mut [Piece], n: usize) -> MemPlan {
    let mut plan = MemPlan::default();
    let mut next = n;
    for p in pieces {
        if let Piece::Mem { arg, at, spec } = p {
            let d = Dump {
                user: spec.alt,
                addr: *arg + spec.dyn_args(),
                at: next,
                len: if spec.star_prec {
                    DumpLen::Arg(*arg + usize::from(spec.star_width))
                } else {
                    DumpLen::Const(dump_room(spec))
                },
            };
            *at = next;
            next += d.words();
            plan.dumps.push(d);
        }
    }
    plan
}

/// Give the histograms `hists` of a `print` (their `at` unset) words after the record's
/// `n` pushed arguments and the dumps of `plan`, when they fit in the record with its `ns`
/// strings: their [`Piece::Hist`] then render the words. Else the record carries no
/// buckets and the runtime reads the aggregate when it renders the record (user-space
/// bodies only: `otf check` refuses the print in other bodies).
pub fn place_hists(
    pieces: &mut [Piece],
    plan: &mut MemPlan,
    hists: Vec<HistSnap>,
    n: usize,
    ns: usize,
) {
    let words: usize = hists.iter().map(|h| h.words).sum();
    let fits =
        8 * (n + plan.words() + words) + crate::bytecode::MAXSTRINGLEN * ns <= MAX_RECORD_ARG_BYTES;
    if hists.is_empty() || !fits || hists.iter().any(|h| h.words == 0) {
        return;
    }
    let mut next = n + plan.words();
    let mut hists = hists.into_iter();
    for p in pieces {
        if let Piece::Hist { at, .. } = p {
            let Some(mut h) = hists.next() else { return };
            h.at = next;
            *at = Some(next);
            next += h.words;
            plan.hists.push(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(conv: u8) -> Spec {
        Spec {
            conv,
            ..Spec::default()
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(dump_len(&spec(b'm'), 0), 1);
        let p = |p: u32| Spec {
            precision: Some(p),
            ..spec(b'm')
        };
        assert_eq!(dump_len(&p(0), 0), 1);
        assert_eq!(dump_len(&p(5), 0), 5);
        assert_eq!(dump_len(&p(128), 0), 128);
        let star = Spec {
            star_prec: true,
            ..spec(b'M')
        };
        assert_eq!(dump_len(&star, 7), 7);
        assert_eq!(dump_len(&star, 0), 1);
        assert_eq!(dump_len(&star, -3), 1);
        assert_eq!(dump_len(&star, 1000), MAX_MEMORY_DUMP);
        assert_eq!(dump_len(&star, i64::MIN), 1);
        assert_eq!(dump_room(&star), MAX_MEMORY_DUMP);
        assert_eq!(dump_room(&p(9)), 9);
    }

    #[test]
    fn fault_addresses() {
        assert_eq!(fault_address(0x1ffc, false), 0x1ffc);
        assert_eq!(fault_address(0x1ffc, true), 0x2000);
        assert_eq!(fault_address(0x2000, true), 0x3000);
        assert_eq!(fault_address(u64::MAX - 3, true), 0);
    }

    #[test]
    fn words_round_trip() {
        let b: Vec<u8> = (1..=11).collect();
        let w = words_of(&b);
        assert_eq!(w.len(), 2);
        assert_eq!(bytes_of(&w, 11), b);
        assert_eq!(bytes_of(&w, 3), [1, 2, 3]);
    }

    #[test]
    fn dumps() {
        let mut out = Vec::new();
        push_dump(&mut out, b"a\0\xff", &spec(b'm'), 0);
        assert_eq!(out, b"a\0\xff");
        out.clear();
        push_dump(&mut out, b"a\0\xff", &spec(b'M'), 0);
        assert_eq!(out, b"6100ff");
        out.clear();
        push_dump(&mut out, b"AB", &spec(b'M'), 6);
        assert_eq!(out, b"  4142");
        out.clear();
        let left = Spec {
            left: true,
            ..spec(b'm')
        };
        push_dump(&mut out, b"AB", &left, 4);
        assert_eq!(out, b"AB  ");
        out.clear();
        let zero = Spec {
            zero: true,
            ..spec(b'm')
        };
        push_dump(&mut out, b"AB", &zero, 4);
        assert_eq!(out, b"  AB\0");
    }

    #[test]
    fn plans() {
        let plan = MemPlan {
            dumps: vec![
                Dump {
                    user: false,
                    addr: 0,
                    at: 3,
                    len: DumpLen::Const(9),
                },
                Dump {
                    user: true,
                    addr: 2,
                    at: 5,
                    len: DumpLen::Arg(1),
                },
            ],
            hists: vec![],
        };
        assert_eq!(plan.words(), 2 + 16);
        let s = plan.encode();
        assert_eq!(s, "k,0,3,c9;u,2,5,a1");
        assert_eq!(MemPlan::decode(&s, 3, 0), Some(plan.clone()));
        // Words that do not follow the pushed arguments, an address that is not one of
        // them, a length too large: not a plan.
        assert_eq!(MemPlan::decode(&s, 2, 0), None);
        assert_eq!(MemPlan::decode("k,3,3,c1", 3, 0), None);
        assert_eq!(MemPlan::decode("k,0,3,c129", 3, 0), None);
        assert_eq!(MemPlan::decode("k,0,3,c0", 3, 0), None);
        assert_eq!(MemPlan::decode("x,0,3,c1", 3, 0), None);
        assert_eq!(MemPlan::decode("k,0,3,c1,", 3, 0), None);
        assert_eq!(MemPlan::decode("", 3, 0), None);
        // A histogram after the dumps: keys (an integer and a string) among the arguments.
        let mut h = plan.clone();
        let keys = crate::bytecode::MapOperands {
            nkeys: 2,
            str_keys: 0b10,
            str_value: false,
        }
        .pack();
        h.hists.push(HistSnap {
            global: 4,
            linear: true,
            keys,
            arg: 2,
            sarg: 0,
            at: 21,
            words: 13,
        });
        assert_eq!(h.words(), 2 + 16 + 13);
        let s = h.encode();
        assert_eq!(s, format!("k,0,3,c9;u,2,5,a1;l,4,{keys},2,0,21,13"));
        assert_eq!(MemPlan::decode(&s, 3, 1), Some(h.clone()));
        // Its string key missing, its words not after the dumps, a dump after it.
        assert_eq!(MemPlan::decode(&s, 3, 0), None);
        assert_eq!(MemPlan::decode(&s.replace(",21,", ",22,"), 3, 1), None);
        assert_eq!(MemPlan::decode(&format!("{s};k,0,34,c1"), 3, 1), None);
        assert_eq!(
            plan.dumps[1].len_of(&[0, 300, 0]),
            MAX_MEMORY_DUMP,
            "a `.*` precision is clamped"
        );
        assert_eq!(plan.dumps[0].len_of(&[]), 9);
    }
}
