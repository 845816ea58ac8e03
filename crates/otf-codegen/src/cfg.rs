//! The shape of one bytecode program: reachable instructions, the static operand-stack depth
//! before each, its basic blocks (charged against the step budget) and its loops.
//!
//! The compiler emits structured code (if/while/for/break/continue/return of inlined
//! functions), so every loop is a contiguous range entered only at its header, and loops
//! nest. Anything else is refused as an otf bug: the native code depends on it.

use std::collections::{BTreeMap, BTreeSet};

use otf_script::bytecode::{Ctx, Insn, Op, MAX_SSTACK, MAX_STACK};
use otf_script::vm;

use crate::layout::MAX_LOOP_NEST;
use crate::Error;

/// A loop: the instructions `header..=end`, entered only at `header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loop {
    pub header: usize,
    pub end: usize,
}

impl Loop {
    pub fn contains(&self, pc: usize) -> bool {
        (self.header..=self.end).contains(&pc)
    }
}

/// How control leaves a loop's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Exit {
    /// A jump (or fall-through) to this pc outside the loop.
    To(usize),
    /// `Next`, `Skip` or `Ret` inside the loop.
    Next,
    Skip,
    Ret,
    /// A run-time error inside the loop.
    Error,
}

/// The analysis of the program starting at `start`.
#[derive(Debug)]
pub(crate) struct Shape {
    pub start: usize,
    /// Reachable instructions, in order, with the stack depth before each.
    pub depth: BTreeMap<usize, u32>,
    /// The string stack depth before each reachable instruction.
    pub sdepth: BTreeMap<usize, u32>,
    /// Basic block leaders and lengths (as the reference VM charges them).
    pub blocks: BTreeMap<usize, u32>,
    /// Loops, ordered by header (outer before inner for one header).
    pub loops: Vec<Loop>,
    /// The highest local slot the program touches.
    pub max_local: Option<u32>,
    /// The highest string local slot the program touches.
    pub max_slocal: Option<u32>,
    /// The program reads the hit's arguments or return value.
    pub uses_regs: bool,
}

pub(crate) fn jump_target(pc: usize, insn: &Insn) -> i64 {
    pc as i64 + 1 + insn.arg as i64
}

/// Successors of `pc` (fall-through first).
pub(crate) fn successors(code: &[Insn], pc: usize) -> Vec<usize> {
    let insn = &code[pc];
    let t = jump_target(pc, insn);
    match insn.opcode() {
        Some(Op::Next | Op::Skip | Op::Ret) | None => vec![],
        Some(Op::Jmp) => vec![t as usize],
        Some(Op::Jz | Op::Jnz | Op::IterNext) => vec![pc + 1, t as usize],
        _ => vec![pc + 1],
    }
}

impl Shape {
    pub fn analyze(code: &[Insn], start: usize) -> Result<Shape, Error> {
        let end = code.len();
        vm::verify(code, start..end)?;
        let mut depth: BTreeMap<usize, u32> = BTreeMap::new();
        let mut sdepth: BTreeMap<usize, u32> = BTreeMap::new();
        let mut work = vec![(start, 0u32, 0u32)];
        let mut max_local = None::<u32>;
        let mut max_slocal = None::<u32>;
        let mut uses_regs = false;
        while let Some((pc, d, sd)) = work.pop() {
            if let Some(&old) = depth.get(&pc) {
                if old != d {
                    return Err(Error::BadCode(format!(
                        "stack depth {old} and {d} meet at {pc}"
                    )));
                }
                let sold = sdepth[&pc];
                if sold != sd {
                    return Err(Error::BadCode(format!(
                        "string stack depth {sold} and {sd} meet at {pc}"
                    )));
                }
                continue;
            }
            depth.insert(pc, d);
            sdepth.insert(pc, sd);
            let insn = &code[pc];
            let op = insn.opcode().ok_or(Error::Internal("opcode"))?;
            let (pops, pushes) = vm::stack_effect(insn).ok_or(Error::Internal("stack effect"))?;
            let nd = (d as usize)
                .checked_sub(pops)
                .ok_or_else(|| Error::BadCode(format!("stack underflow at {pc}")))?
                + pushes;
            if nd > MAX_STACK {
                return Err(Error::Internal("stack overflow"));
            }
            let (spops, spushes) =
                vm::sstack_effect(insn).ok_or(Error::Internal("string stack effect"))?;
            let nsd = (sd as usize)
                .checked_sub(spops)
                .ok_or_else(|| Error::BadCode(format!("string stack underflow at {pc}")))?
                + spushes;
            if nsd > MAX_SSTACK {
                return Err(Error::BadCode(format!(
                    "string stack deeper than {MAX_SSTACK} at {pc}"
                )));
            }
            match op {
                Op::LdL | Op::StL => {
                    max_local = Some(max_local.unwrap_or(0).max(insn.arg as u32));
                }
                Op::SLdL | Op::SStL => {
                    max_slocal = Some(max_slocal.unwrap_or(0).max(insn.arg as u32));
                }
                Op::Ctx => {
                    if matches!(
                        Ctx::from_i32(insn.arg),
                        Some(Ctx::RetVal | Ctx::IntArg | Ctx::LongArg)
                    ) {
                        uses_regs = true;
                    }
                }
                _ => {}
            }
            for s in successors(code, pc) {
                work.push((s, nd as u32, nsd as u32));
            }
        }
        let blocks = vm::basic_blocks(code, start);

        // Back edges give the loops; one header may have several (`continue`).
        let mut by_header: BTreeMap<usize, usize> = BTreeMap::new();
        for &pc in depth.keys() {
            for s in successors(code, pc) {
                if s <= pc {
                    let e = by_header.entry(s).or_insert(pc);
                    *e = (*e).max(pc);
                }
            }
        }
        let mut loops: Vec<Loop> = by_header
            .into_iter()
            .map(|(header, end)| Loop { header, end })
            .collect();
        loops.sort_by_key(|l| (l.header, std::cmp::Reverse(l.end)));
        // Proper nesting, and a nesting depth the kernel's call frames allow.
        let mut stack: Vec<Loop> = Vec::new();
        for l in &loops {
            while stack.last().is_some_and(|t| t.end < l.header) {
                stack.pop();
            }
            if let Some(t) = stack.last() {
                if l.end > t.end {
                    return Err(Error::BadCode(format!(
                        "loops {}..={} and {}..={} overlap without nesting",
                        t.header, t.end, l.header, l.end
                    )));
                }
            }
            stack.push(*l);
            if stack.len() > MAX_LOOP_NEST {
                return Err(Error::TooLarge(format!(
                    "loops nested {} deep at {}; otf compiles at most {MAX_LOOP_NEST}",
                    stack.len(),
                    l.header
                )));
            }
        }
        // Every loop is entered only at its header.
        for &pc in depth.keys() {
            for s in successors(code, pc) {
                for l in &loops {
                    if l.contains(s) && s != l.header && !l.contains(pc) {
                        return Err(Error::BadCode(format!(
                            "a jump from {pc} enters the loop {}..={} at {s}",
                            l.header, l.end
                        )));
                    }
                }
            }
        }
        Ok(Shape {
            start,
            depth,
            sdepth,
            blocks,
            loops,
            max_local,
            max_slocal,
            uses_regs,
        })
    }

    /// The last reachable instruction.
    pub fn last(&self) -> usize {
        self.depth.keys().next_back().copied().unwrap_or(self.start)
    }

    /// The loops directly inside `outer` (or at top level for `None`).
    pub fn children(&self, outer: Option<Loop>) -> Vec<Loop> {
        let mut out: Vec<Loop> = Vec::new();
        for l in &self.loops {
            let inside = match outer {
                Some(o) => o.contains(l.header) && *l != o,
                None => true,
            };
            if !inside {
                continue;
            }
            if out.last().is_some_and(|p| p.contains(l.header)) {
                continue;
            }
            // Not nested in another loop that is itself inside `outer`.
            let nested = self.loops.iter().any(|m| {
                *m != *l
                    && m.contains(l.header)
                    && m.end >= l.end
                    && match outer {
                        Some(o) => o.contains(m.header) && *m != o,
                        None => true,
                    }
                    && (m.header, std::cmp::Reverse(m.end)) < (l.header, std::cmp::Reverse(l.end))
            });
            if !nested {
                out.push(*l);
            }
        }
        out
    }

    /// Every way control leaves loop `l`.
    pub fn exits(&self, code: &[Insn], l: Loop) -> BTreeSet<Exit> {
        let mut out = BTreeSet::new();
        for (&pc, _) in self.depth.range(l.header..=l.end) {
            let insn = &code[pc];
            match insn.opcode() {
                Some(Op::Next) => {
                    out.insert(Exit::Next);
                }
                Some(Op::Skip) => {
                    out.insert(Exit::Skip);
                }
                Some(Op::Ret) => {
                    out.insert(Exit::Ret);
                }
                Some(Op::Div | Op::Mod | Op::RandInt) => {
                    out.insert(Exit::Error);
                }
                _ => {}
            }
            if self.blocks.contains_key(&pc) {
                out.insert(Exit::Error); // MAXACTION
            }
            for s in successors(code, pc) {
                if !l.contains(s) {
                    out.insert(Exit::To(s));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(op: Op, arg: i32) -> Insn {
        Insn::with_arg(op, arg)
    }

    #[test]
    fn nested_loops_are_found() {
        // i = 0; while (i < 3) { j = 0; while (j < 2) j++; i++ }
        let code = vec![
            Insn::new(Op::Push, 0, 0), // 0
            a(Op::StL, 0),             // 1
            a(Op::LdL, 0),             // 2 outer header
            Insn::new(Op::Push, 0, 3), // 3
            Insn::op(Op::Lt),          // 4
            a(Op::Jz, 16),             // 5 -> 22
            Insn::new(Op::Push, 0, 0), // 6
            a(Op::StL, 1),             // 7
            a(Op::LdL, 1),             // 8 inner header
            Insn::new(Op::Push, 0, 2), // 9
            Insn::op(Op::Lt),          // 10
            a(Op::Jz, 5),              // 11 -> 17
            a(Op::LdL, 1),             // 12
            Insn::new(Op::Push, 0, 1), // 13
            Insn::op(Op::Add),         // 14
            a(Op::StL, 1),             // 15
            a(Op::Jmp, -9),            // 16 -> 8
            a(Op::LdL, 0),             // 17
            Insn::new(Op::Push, 0, 1), // 18
            Insn::op(Op::Add),         // 19
            a(Op::StL, 0),             // 20
            a(Op::Jmp, -20),           // 21 -> 2
            Insn::op(Op::Next),        // 22
        ];
        let s = Shape::analyze(&code, 0).unwrap();
        assert_eq!(
            s.loops,
            vec![Loop { header: 2, end: 21 }, Loop { header: 8, end: 16 }]
        );
        assert_eq!(s.children(None), vec![Loop { header: 2, end: 21 }]);
        assert_eq!(
            s.children(Some(Loop { header: 2, end: 21 })),
            vec![Loop { header: 8, end: 16 }]
        );
        let ex = s.exits(&code, Loop { header: 8, end: 16 });
        assert!(ex.contains(&Exit::To(17)));
        let ex = s.exits(&code, Loop { header: 2, end: 21 });
        assert!(ex.contains(&Exit::To(22)));
        assert_eq!(s.max_local, Some(1));
        // Stack depth 1 before the StL that follows Push.
        assert_eq!(s.depth[&1], 1);
    }
}
