//! An assembler for generated code: functions (the handler, the hit callback, one callback
//! per loop) with local labels, linked into one instruction array.

use crate::insn::{Cond, Insn, Reg, PSEUDO_FUNC};
use crate::{Error, MapId};

/// Jumps farther than this go through islands ([`Func::relax`]); the margin leaves room for
/// the islands inserted between a near jump and its target.
const FAR: i64 = 28_000;
/// Instructions between islands.
const ISLAND_SPACING: usize = 8_192;

/// A jump target inside one function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(usize);

/// A function of the program being generated (index into [`Program::funcs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FuncId(pub usize);

/// One function: its instructions and what must be patched when linking.
#[derive(Debug, Default)]
pub(crate) struct Func {
    pub insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    jumps: Vec<(usize, Label)>,
    /// `ld_imm64` slots that take the address of a function.
    func_refs: Vec<(usize, FuncId)>,
    /// `ld_imm64` slots whose immediate is a map.
    pub map_refs: Vec<(usize, MapId)>,
    /// Which probe each instruction range was generated for (start index, label).
    pub owners: Vec<(usize, u32)>,
}

impl Func {
    pub fn new_label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub fn bind(&mut self, l: Label) {
        debug_assert!(self.labels[l.0].is_none(), "label bound twice");
        self.labels[l.0] = Some(self.insns.len());
    }

    pub fn emit(&mut self, i: Insn) {
        self.insns.push(i);
    }

    pub fn emit_all(&mut self, is: &[Insn]) {
        self.insns.extend_from_slice(is);
    }

    /// `goto l`.
    pub fn ja(&mut self, l: Label) {
        self.jumps.push((self.insns.len(), l));
        self.emit(Insn::ja(0));
    }

    /// `if r cond imm goto l`.
    pub fn jmp_imm(&mut self, cond: Cond, r: Reg, imm: i32, l: Label) {
        self.jumps.push((self.insns.len(), l));
        self.emit(Insn::jmp_imm(cond, r, imm, 0));
    }

    /// `if w cond imm goto l` (`JMP32`): compares the low 32 bits of `r` only, as an `int`
    /// result must be (the map helpers' errors before Linux 6.4, docs/kernel-facts.md).
    pub fn jmp32_imm(&mut self, cond: Cond, r: Reg, imm: i32, l: Label) {
        self.jumps.push((self.insns.len(), l));
        self.emit(Insn::jmp32_imm(cond, r, imm, 0));
    }

    /// `if a cond b goto l`.
    pub fn jmp_reg(&mut self, cond: Cond, a: Reg, b: Reg, l: Label) {
        self.jumps.push((self.insns.len(), l));
        self.emit(Insn::jmp_reg(cond, a, b, 0));
    }

    /// `dst = &map` (`value`: the address of byte `off` of its only value).
    pub fn ld_map(&mut self, dst: Reg, map: MapId, value: Option<i32>) {
        use crate::insn::{PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};
        self.map_refs.push((self.insns.len(), map));
        let (src, off) = match value {
            Some(off) => (PSEUDO_MAP_VALUE, off as u32 as u64),
            None => (PSEUDO_MAP_FD, 0),
        };
        self.emit_all(&Insn::ld_imm64(dst, src, off << 32));
    }

    /// `dst = &f` (for `bpf_loop`'s callback argument).
    pub fn ld_func(&mut self, dst: Reg, f: FuncId) {
        self.func_refs.push((self.insns.len(), f));
        self.emit_all(&Insn::ld_imm64(dst, PSEUDO_FUNC, 0));
    }

    /// Make every jump reachable with BPF's 16-bit offsets: a jump farther than that goes
    /// through *islands*, blocks of `goto`s placed every [`ISLAND_SPACING`] instructions
    /// (each skipped by a `goto` over it), hopping from island to island towards its target.
    /// (Kernels from 6.6 have 32-bit `gotol`; 6.1 does not.)
    pub fn relax(&mut self) {
        let pos = |f: &Func, l: Label| f.labels[l.0].unwrap_or(0) as i64;
        let far: Vec<usize> = (0..self.jumps.len())
            .filter(|&k| {
                let (at, l) = self.jumps[k];
                (pos(self, l) - at as i64 - 1).abs() > FAR
            })
            .collect();
        if far.is_empty() {
            return;
        }
        let n = self.insns.len();
        // Island positions: every ISLAND_SPACING, never between the two slots of an ld_imm64.
        let mut islands: Vec<usize> = Vec::new();
        let labelled: std::collections::HashSet<usize> =
            self.jumps.iter().map(|&(at, _)| at).collect();
        // An island may not split an ld_imm64 nor sit inside a short jump written with a
        // fixed offset (not through a label), such as `if r0 == 0 goto +2`.
        let splits = |q: usize| {
            (q > 0 && self.insns[q - 1].is_ld_imm64())
                || (q.saturating_sub(8)..q).any(|k| {
                    let i = self.insns[k];
                    let c = i.class();
                    (c == crate::insn::JMP || c == crate::insn::JMP32)
                        && !labelled.contains(&k)
                        && !matches!(i.code & 0xf0, 0x80 | 0x90)
                        && k as i64 + 1 + i.off as i64 >= q as i64
                })
        };
        let mut p = ISLAND_SPACING;
        while p < n {
            let mut q = p;
            while q < n && splits(q) {
                q += 1;
            }
            if q >= n {
                break;
            }
            islands.push(q);
            p = q + ISLAND_SPACING;
        }
        // The island entries each far jump needs, in hop order, and where it hops first.
        let mut entries: Vec<Vec<(Label, Label)>> = vec![Vec::new(); islands.len()];
        let mut first: Vec<(usize, Label)> = Vec::new();
        for &k in &far {
            let (at, target) = self.jumps[k];
            let t = pos(self, target) as usize;
            let crossed: Vec<usize> = if t > at {
                (0..islands.len())
                    .filter(|&i| islands[i] > at && islands[i] <= t)
                    .collect()
            } else {
                (0..islands.len())
                    .rev()
                    .filter(|&i| islands[i] <= at && islands[i] > t)
                    .collect()
            };
            let mut next = target;
            for &i in crossed.iter().rev() {
                let entry = self.new_label();
                entries[i].push((entry, next));
                next = entry;
            }
            first.push((k, next));
        }
        for (k, l) in first {
            self.jumps[k].1 = l;
        }
        // Rebuild with the islands inserted; everything after an island moves.
        let mut shift = vec![0usize; n + 1];
        let mut insns = Vec::with_capacity(n + islands.len() * 8);
        let mut new_jumps = Vec::new();
        let mut added = 0usize;
        let mut isl = 0usize;
        let mut island_labels: Vec<(Label, usize)> = Vec::new();
        #[allow(clippy::needless_range_loop)] // i runs one past the end, to place islands
        for i in 0..=n {
            if isl < islands.len() && islands[isl] == i {
                let es = &entries[isl];
                if !es.is_empty() {
                    insns.push(Insn::ja(es.len() as i16));
                    added += 1;
                    for &(entry, next) in es {
                        island_labels.push((entry, insns.len()));
                        new_jumps.push((insns.len(), next));
                        insns.push(Insn::ja(0));
                        added += 1;
                    }
                }
                isl += 1;
            }
            shift[i] = added;
            if i < n {
                insns.push(self.insns[i]);
            }
        }
        for l in self.labels.iter_mut().flatten() {
            *l += shift[*l];
        }
        for (entry, at) in island_labels {
            self.labels[entry.0] = Some(at);
        }
        for (at, l) in std::mem::take(&mut self.jumps) {
            new_jumps.push((at + shift[at], l));
        }
        self.jumps = new_jumps;
        for (at, _) in self.func_refs.iter_mut() {
            *at += shift[*at];
        }
        for (at, _) in self.map_refs.iter_mut() {
            *at += shift[*at];
        }
        for (at, _) in self.owners.iter_mut() {
            *at += shift[*at];
        }
        self.insns = insns;
    }

    /// Record that what follows was generated for probe `owner`.
    pub fn owner(&mut self, owner: u32) {
        self.owners.push((self.insns.len(), owner));
    }
}

/// A program under construction: its functions, the first being the entry point.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    pub funcs: Vec<Func>,
}

/// Where a map must be patched in, and which probe owns each instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Linked {
    /// The instructions.
    pub insns: Vec<Insn>,
    /// `ld_imm64` slots whose immediate must become the fd of a map.
    pub map_refs: Vec<(usize, MapId)>,
    /// Instruction ranges (by start) and the probe slot label index they belong to.
    pub owners: Vec<(usize, u32)>,
    /// The first instruction of every function (the first is 0).
    pub func_starts: Vec<usize>,
}

impl Builder {
    pub fn add(&mut self) -> FuncId {
        self.funcs.push(Func::default());
        FuncId(self.funcs.len() - 1)
    }

    pub fn f(&mut self, id: FuncId) -> &mut Func {
        &mut self.funcs[id.0]
    }

    /// Lay the functions out one after another and resolve every reference.
    pub fn link(mut self) -> Result<Linked, Error> {
        for f in &mut self.funcs {
            f.relax();
        }
        let mut starts = Vec::with_capacity(self.funcs.len());
        let mut n = 0usize;
        for f in &self.funcs {
            starts.push(n);
            n += f.insns.len();
        }
        let mut out = Linked {
            insns: Vec::with_capacity(n),
            func_starts: starts.clone(),
            ..Default::default()
        };
        for (fi, f) in self.funcs.into_iter().enumerate() {
            let base = starts[fi];
            let mut insns = f.insns;
            for (at, l) in f.jumps {
                let target = f.labels[l.0].ok_or(Error::Internal("unbound label"))?;
                let rel = target as i64 - (at as i64 + 1);
                insns[at].off = i16::try_from(rel).map_err(|_| {
                    Error::TooLarge(format!(
                        "a jump of {rel} instructions does not fit the 16-bit offset of BPF jumps"
                    ))
                })?;
            }
            for (at, g) in f.func_refs {
                let rel = starts[g.0] as i64 - (base + at) as i64 - 1;
                insns[at].imm = rel as i32;
            }
            out.map_refs
                .extend(f.map_refs.into_iter().map(|(at, m)| (base + at, m)));
            out.owners
                .extend(f.owners.into_iter().map(|(at, o)| (base + at, o)));
            out.insns.extend(insns);
        }
        out.owners.sort_by_key(|&(at, _)| at);
        Ok(prune(out))
    }
}

/// Drop the instructions no path reaches (the verifier refuses unreachable code), and fix
/// every jump, call, function address, map slot and owner range around them.
fn prune(p: Linked) -> Linked {
    use crate::insn::{JMP, JMP32, PSEUDO_FUNC};
    let n = p.insns.len();
    let mut live = vec![false; n];
    let mut work = vec![0usize];
    while let Some(i) = work.pop() {
        if i >= n || live[i] {
            continue;
        }
        live[i] = true;
        let insn = p.insns[i];
        if insn.is_ld_imm64() {
            if i + 1 < n {
                live[i + 1] = true;
            }
            if insn.src().0 == PSEUDO_FUNC {
                work.push((i as i64 + 1 + insn.imm as i64) as usize);
            }
            work.push(i + 2);
            continue;
        }
        let class = insn.class();
        if class == JMP || class == JMP32 {
            let op = insn.code & 0xf0;
            match op {
                0x90 => {} // exit
                0x80 => {
                    if insn.src().0 == crate::insn::PSEUDO_CALL {
                        work.push((i as i64 + 1 + insn.imm as i64) as usize);
                    }
                    work.push(i + 1);
                }
                0x00 => work.push((i as i64 + 1 + insn.off as i64) as usize),
                _ => {
                    work.push(i + 1);
                    work.push((i as i64 + 1 + insn.off as i64) as usize);
                }
            }
            continue;
        }
        work.push(i + 1);
    }
    if live.iter().all(|&l| l) {
        return p;
    }
    // new_index[i]: the index of the first live instruction at or after i.
    let mut new_index = vec![0usize; n + 1];
    let mut k = 0;
    for i in 0..n {
        new_index[i] = k;
        if live[i] {
            k += 1;
        }
    }
    new_index[n] = k;
    let mut insns = Vec::with_capacity(k);
    for i in 0..n {
        if !live[i] {
            continue;
        }
        let mut insn = p.insns[i];
        let class = insn.class();
        let ni = new_index[i] as i64;
        let retarget = |rel: i64| new_index[(i as i64 + 1 + rel) as usize] as i64 - ni - 1;
        if insn.is_ld_imm64() && insn.src().0 == PSEUDO_FUNC {
            insn.imm = retarget(insn.imm as i64) as i32;
        } else if (class == JMP || class == JMP32) && !insn.is_ld_imm64() {
            let op = insn.code & 0xf0;
            if op == 0x80 && insn.src().0 == crate::insn::PSEUDO_CALL {
                insn.imm = retarget(insn.imm as i64) as i32;
            } else if op != 0x80 && op != 0x90 {
                insn.off = retarget(insn.off as i64) as i16;
            }
        }
        insns.push(insn);
    }
    Linked {
        insns,
        map_refs: p
            .map_refs
            .into_iter()
            .filter(|&(at, _)| live[at])
            .map(|(at, m)| (new_index[at], m))
            .collect(),
        owners: p
            .owners
            .into_iter()
            .map(|(at, o)| (new_index[at], o))
            .collect(),
        func_starts: p
            .func_starts
            .into_iter()
            .filter(|&f| f < n && live[f])
            .map(|f| new_index[f])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{Cond, R0, R1};

    /// Follow `goto`s from `at`'s jump target until a non-`goto` instruction.
    fn land(insns: &[Insn], at: usize) -> usize {
        let mut t = (at as i64 + 1 + insns[at].off as i64) as usize;
        while insns[t].code == crate::insn::JMP && insns[t].imm == 0 && insns[t].off != 0 {
            // An island entry hops on; the skip at an island's start is never a target.
            t = (t as i64 + 1 + insns[t].off as i64) as usize;
        }
        t
    }

    #[test]
    fn far_jumps_hop_through_islands_and_short_jumps_stay_whole() {
        let mut f = Func::default();
        let far_fwd = f.new_label();
        let back = f.new_label();
        f.bind(back);
        f.emit(Insn::mov_imm(R1, 7)); // the backward target: `r1 = 7`
        f.jmp_imm(Cond::Eq, R0, 1, far_fwd);
        let mut k = 0;
        while f.insns.len() < 40_000 {
            // A short fixed-offset jump every few instructions, as emit_record has.
            f.emit(Insn::jmp_imm(Cond::Eq, R0, 0, 1));
            f.emit(Insn::mov_imm(R1, k));
            f.emit(Insn::mov_imm(R0, 0));
            k += 1;
        }
        f.ja(back);
        f.bind(far_fwd);
        f.emit(Insn::mov_imm(R1, 9)); // the forward target: `r1 = 9`
        f.emit(Insn::exit());
        let mut b = Builder::default();
        b.funcs.push(f);
        // Linking relaxes the jumps and resolves them; without islands it would fail.
        let linked = b.link().expect("links");
        let insns = &linked.insns;
        let cond = insns
            .iter()
            .position(|i| i.code == Insn::jmp_imm(Cond::Eq, R0, 1, 0).code && i.imm == 1)
            .unwrap();
        assert_eq!(insns[land(insns, cond)], Insn::mov_imm(R1, 9));
        // `goto back` sits right before the forward target.
        let back_jump = insns
            .iter()
            .rposition(|i| *i == Insn::mov_imm(R1, 9))
            .unwrap()
            - 1;
        assert_eq!(insns[land(insns, back_jump)], Insn::mov_imm(R1, 7));
        // Every short fixed jump still skips exactly its `r1 = k`.
        for (at, i) in insns.iter().enumerate() {
            if i.code == Insn::jmp_imm(Cond::Eq, R0, 0, 0).code && i.imm == 0 && i.off == 1 {
                assert_eq!(insns[at + 1].code, Insn::mov_imm(R1, 0).code, "at {at}");
                assert_eq!(insns[at + 2], Insn::mov_imm(R0, 0), "at {at}");
            }
        }
        // Islands were placed (the code grew) and each starts with a skip over its entries.
        assert!(insns.len() > 40_003);
    }
}
