//! The compiler from the checked syntax tree to [`crate::bytecode`].
//!
//! One [`Unit`] per (probe statement, component). Its programs live in one shared code
//! array ([`CompiledScript::code`]):
//!
//! - `body`: the unit's own condition inlined first (`<cond>; Jnz +1; Skip`), then the
//!   statement body, then `Next`;
//! - `cond`: the condition alone, normalised to 0 or 1 and ending in `Ret` (for
//!   re-evaluation after a writer runs);
//! - `entry`: for `.return` units using `@entry(E)`: each `E` evaluated and saved with
//!   `EntrySave` to slots `0..n`, then `Next` (run at the matching function entry).
//!
//! Script functions are inlined at every call site with fresh local slots. Every program
//! is checked with [`crate::vm::verify`]; limits ([`MAX_STACK`], [`MAX_LOCALS`],
//! [`MAX_CODE`], [`MAX_OUT_ARGS`]) are compile errors, never panics.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

use crate::affection::Affection;
use crate::ast::{
    BinOp, Block, Expr, ExprKind, Foreach, HistKind, Ident, Sort, Span, StatOp, Stmt, StmtKind,
    UnOp,
};
use crate::bytecode::{
    Ctx, Format, GlobalKind, Insn, IterSpec, MapOperands, Op, Piece, ReadStrFn, Spec, StatKind,
    StrFn, LOCK_STRIPES, MAXSTRINGLEN, MAX_CODE, MAX_ITERS, MAX_LOCALS, MAX_OUT_ARGS, MAX_OUT_STRS,
    MAX_SLOCALS, MAX_SSTACK, MAX_STACK,
};
use crate::diag::Diagnostic;
use crate::format::{parse_printf, FmtItem, KernelFormat};
use crate::point::PointKind;
use crate::sema::{builtin, Builtin, Checked, GlobalInfo, Scope, VarRef};
use crate::types::VType;
use crate::vm;

/// A compiled script: all programs in one code array, and what each unit runs.
#[derive(Clone, Debug, PartialEq)]
pub struct CompiledScript {
    /// The code of every program.
    pub code: Vec<Insn>,
    /// One unit per (probe statement, component), in script order.
    pub units: Vec<Unit>,
    /// Output formats, indexed by the `Out` instruction's format id.
    pub formats: Vec<Format>,
    /// The globals with their initial values, by index.
    pub globals: Vec<GlobalInfo>,
    /// String literals used as values, by the `SPush` instruction's id.
    pub strings: Vec<String>,
}

/// One (probe statement, component) pair, compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// Index of the probe statement.
    pub probe: usize,
    /// Index of the component in the statement.
    pub component: usize,
    /// The probe point.
    pub point: PointKind,
    /// Where the point was written.
    pub point_span: Span,
    /// Written with `?`.
    pub optional: bool,
    /// The body program (condition inlined first), ending in `Next`.
    pub body: Range<u32>,
    /// The condition alone, ending in `Ret`; `None` without a condition.
    pub cond: Option<Range<u32>>,
    /// The `@entry` program of a `.return` unit, ending in `Next`; `None` if unused.
    pub entry: Option<Range<u32>>,
    /// Units whose condition this unit re-evaluates after its body.
    pub reeval: Vec<usize>,
    /// Bit `g % LOCK_STRIPES` for every global the body (with its inlined condition and
    /// called functions) reads or writes, and every global read by the conditions in
    /// `reeval`.
    pub lock_mask: u64,
    /// Globals read by the body, its inlined condition and called functions (sorted).
    pub globals_read: Vec<u32>,
    /// Globals written by the body and called functions (sorted).
    pub globals_written: Vec<u32>,
    /// Local slots used by the body (including inlined calls).
    pub nlocals: u32,
    /// A kernel unit whose body runs in user space when the kernel hit hands it over
    /// ([`crate::vm::user_space_only`]).
    pub deferred: bool,
}

impl CompiledScript {
    /// The instructions of a program range.
    pub fn program(&self, r: &Range<u32>) -> &[Insn] {
        &self.code[r.start as usize..r.end as usize]
    }
}

/// Render code as text, one instruction per line: `index: Op operands`; jumps show their
/// absolute target.
pub fn disassemble(code: &[Insn]) -> String {
    let mut s = String::new();
    for (pc, i) in code.iter().enumerate() {
        let _ = write!(s, "{pc:4}: ");
        match i.opcode() {
            None => {
                let _ = writeln!(s, "?{} {} {}", i.op, i.arg, i.imm);
            }
            Some(op) => {
                let name = format!("{op:?}");
                let _ = match op {
                    Op::Push => writeln!(s, "{name} {}", i.imm),
                    Op::LdG | Op::StG => writeln!(s, "{name} g{}", i.arg),
                    Op::LdL | Op::StL => writeln!(s, "{name} l{}", i.arg),
                    Op::EntrySave | Op::EntryLoad => writeln!(s, "{name} e{}", i.arg),
                    Op::Jmp | Op::Jz | Op::Jnz => {
                        writeln!(s, "{name} -> {}", pc as i64 + 1 + i.arg as i64)
                    }
                    Op::Ctx => match Ctx::from_i32(i.arg) {
                        Some(c) if i.imm != 0 => writeln!(s, "{name} {c:?}({})", i.imm),
                        Some(c) => writeln!(s, "{name} {c:?}"),
                        None => writeln!(s, "{name} ?{}", i.arg),
                    },
                    Op::Out => match vm::out_plan(i) {
                        Some(lit) => writeln!(
                            s,
                            "{name} fmt{} n={} mem=s{lit}",
                            i.arg,
                            i.imm & 0xffff_ffff
                        ),
                        None => writeln!(s, "{name} fmt{} n={}", i.arg, i.imm),
                    },
                    _ => writeln!(s, "{name}"),
                };
            }
        }
    }
    s
}

/// An inlined function call being compiled.
struct Frame {
    func: usize,
    base: u32,
    /// First string local of the call.
    sbase: u32,
    /// `Jmp` instructions of `return` statements, patched to the end of the call.
    returns: Vec<usize>,
    /// Stack depth at statement boundaries inside the call.
    stmt_depth: usize,
}

/// The deepest nesting of statements and expressions, counted through inlined function
/// calls, that the compiler accepts (it recurses over the tree).
pub const MAX_NEST: usize = 1000;

struct Loop {
    breaks: Vec<usize>,
    continues: Vec<usize>,
}

struct Compiler<'a> {
    checked: &'a Checked,
    code: Vec<Insn>,
    formats: Vec<Format>,
    format_ids: HashMap<Format, u32>,
    errors: Vec<Diagnostic>,
    /// Emission stopped because the code is too large.
    too_big: bool,
    // Per program:
    depth: usize,
    span: Span,
    deep_reported: bool,
    probe: usize,
    frames: Vec<Frame>,
    loops: Vec<Loop>,
    top: u32,
    max_top: u32,
    locals_reported: bool,
    nest: usize,
    entries: Vec<&'a Expr>,
    /// `Some` while compiling an entry program (no entry loads).
    stmt_depth: usize,
    /// `foreach` loops open around the current statement.
    iters: u32,
    /// String stack depth, string statement depth, next free string local, most used.
    sdepth: usize,
    stmt_sdepth: usize,
    stop: u32,
    smax_top: u32,
    strings: Vec<String>,
    string_ids: HashMap<String, u32>,
    sdeep_reported: bool,
    /// Where each `sprintf` is (by pc), to refuse one the kernel cannot run at its place.
    sformat_spans: HashMap<usize, Span>,
}

impl<'a> Compiler<'a> {
    fn emit(&mut self, insn: Insn) -> usize {
        if self.code.len() >= MAX_CODE {
            if !self.too_big {
                self.too_big = true;
                self.errors.push(Diagnostic::error(
                    format!(
                        "the script compiles to more than {MAX_CODE} instructions (functions are inlined at every call)"
                    ),
                    self.span,
                ));
            }
            return self.code.len();
        }
        if let Some((pops, pushes)) = vm::stack_effect(&insn) {
            self.depth = self.depth.saturating_sub(pops) + pushes;
            if self.depth > MAX_STACK && !self.deep_reported {
                self.deep_reported = true;
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "expression too complex: it needs more than {MAX_STACK} operand stack slots"
                        ),
                        self.span,
                    )
                    .with_hint("split it into several statements using local variables"),
                );
            }
        }
        if let Some((pops, pushes)) = vm::sstack_effect(&insn) {
            self.sdepth = self.sdepth.saturating_sub(pops) + pushes;
            if self.sdepth > MAX_SSTACK && !self.sdeep_reported {
                self.sdeep_reported = true;
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "expression too complex: it needs more than {MAX_SSTACK} string values at once"
                        ),
                        self.span,
                    )
                    .with_hint("split it into several statements using local variables"),
                );
            }
        }
        self.code.push(insn);
        self.code.len() - 1
    }

    fn op(&mut self, op: Op) -> usize {
        self.emit(Insn::op(op))
    }

    /// Emit a jump to be patched later.
    fn jump(&mut self, op: Op) -> usize {
        self.emit(Insn::with_arg(op, 0))
    }

    /// Emit a jump to an earlier instruction.
    fn jump_back(&mut self, op: Op, target: usize) {
        let at = self.code.len();
        self.emit(Insn::with_arg(op, target as i32 - at as i32 - 1));
    }

    /// Make the jump at `at` go to the next instruction emitted.
    fn patch(&mut self, at: usize) {
        let target = self.code.len();
        if let Some(i) = self.code.get_mut(at) {
            i.arg = target as i32 - at as i32 - 1;
        }
    }

    fn begin_program(&mut self) -> usize {
        self.depth = 0;
        self.stmt_depth = 0;
        self.sdepth = 0;
        self.stmt_sdepth = 0;
        self.sdeep_reported = false;
        self.deep_reported = false;
        self.frames.clear();
        self.loops.clear();
        self.code.len()
    }

    fn end_program(&mut self, start: usize) -> Range<u32> {
        let r = start as u32..self.code.len() as u32;
        if !self.too_big && !self.deep_reported {
            if let Err(e) = vm::verify(&self.code, start..self.code.len()) {
                self.errors.push(Diagnostic::error(
                    format!("internal compiler error: generated code does not verify: {e}"),
                    self.span,
                ));
            }
        }
        r
    }

    fn resolve(&self, name: &str) -> VarRef {
        let (scope, base) = match self.frames.last() {
            Some(f) => (Scope::Function(f.func), f.base),
            None => (Scope::Probe(self.probe), 0),
        };
        match self.checked.resolve(scope, name) {
            Some(VarRef::Local(s)) => VarRef::Local(base + s),
            Some(g) => g,
            // Unreachable after sema; a fresh zero local is the safe reading.
            None => VarRef::Local(base + MAX_LOCALS as u32),
        }
    }

    /// The scope a name is looked up in now, and its string local base.
    fn scope(&self) -> (Scope, u32) {
        match self.frames.last() {
            Some(f) => (Scope::Function(f.func), f.sbase),
            None => (Scope::Probe(self.probe), 0),
        }
    }

    /// The type of variable `name` here.
    fn var_type(&self, name: &str) -> VType {
        let (scope, _) = self.scope();
        match self.checked.resolve(scope, name) {
            Some(VarRef::Global(_)) => self.checked.types.global(name),
            _ => match scope {
                Scope::Probe(p) => self.checked.types.probe_local(p, name),
                Scope::Function(f) => self.checked.types.fn_local(f, name),
            },
        }
    }

    /// The string local slot of string local `name` here: its rank among the scope's
    /// string locals, after the call's base.
    fn sslot(&self, name: &str) -> u32 {
        let (scope, sbase) = self.scope();
        let locals: &[String] = match scope {
            Scope::Probe(p) => &self.checked.probe_locals[p],
            Scope::Function(f) => &self.checked.function_locals[f],
        };
        let is_str = |n: &str| {
            let t = match scope {
                Scope::Probe(p) => self.checked.types.probe_local(p, n),
                Scope::Function(f) => self.checked.types.fn_local(f, n),
            };
            t == VType::Str
        };
        let rank = locals
            .iter()
            .take_while(|l| l.as_str() != name)
            .filter(|l| is_str(l))
            .count();
        sbase + rank as u32
    }

    /// The number of string locals of a probe or function.
    fn nstr_locals(&self, scope: Scope) -> u32 {
        match scope {
            Scope::Probe(p) => self.checked.probe_locals[p]
                .iter()
                .filter(|l| self.checked.types.probe_local(p, l) == VType::Str)
                .count() as u32,
            Scope::Function(f) => self.checked.function_locals[f]
                .iter()
                .filter(|l| self.checked.types.fn_local(f, l) == VType::Str)
                .count() as u32,
        }
    }

    /// Push string variable `id`.
    fn load_str(&mut self, id: &Ident) {
        match self.resolve(&id.name) {
            VarRef::Global(g) => self.emit(Insn::with_arg(Op::SLdG, g as i32)),
            VarRef::Local(_) => {
                let s = self.sslot(&id.name);
                self.emit(Insn::with_arg(Op::SLdL, s as i32))
            }
        };
    }

    /// Pop a string into variable `id`.
    fn store_str(&mut self, id: &Ident) {
        match self.resolve(&id.name) {
            VarRef::Global(g) => self.emit(Insn::with_arg(Op::SStG, g as i32)),
            VarRef::Local(_) => {
                let s = self.sslot(&id.name);
                self.emit(Insn::with_arg(Op::SStL, s as i32))
            }
        };
    }

    /// Push string literal `t`.
    fn push_str(&mut self, t: &str) {
        let id = self.literal(t);
        self.emit(Insn::with_arg(Op::SPush, id as i32));
    }

    /// The id of string literal `t`, added if new.
    fn literal(&mut self, t: &str) -> u32 {
        match self.string_ids.get(t) {
            Some(&id) => id,
            None => {
                let id = self.strings.len() as u32;
                self.strings.push(t.to_string());
                self.string_ids.insert(t.to_string(), id);
                id
            }
        }
    }

    /// The static type of an expression.
    fn ety(&self, e: &Expr) -> VType {
        match &e.kind {
            ExprKind::Str(_) => VType::Str,
            ExprKind::Var(id) => self.var_type(&id.name),
            ExprKind::Assign { target, .. } => self.var_type(&target.name),
            ExprKind::Binary {
                op: BinOp::Concat, ..
            } => VType::Str,
            ExprKind::Ternary { then, .. } => self.ety(then),
            ExprKind::Call { name, .. } => match self.checked.function(&name.name) {
                Some(f) => self.checked.types.fn_ret(f),
                None => match name.name.as_str() {
                    "execname" | "pp" | "probefunc" | "sprintf" => VType::Str,
                    n if ReadStrFn::by_name(n).is_some() => VType::Str,
                    n => match StrFn::by_name(n) {
                        Some(f) if f.signature().1 => VType::Str,
                        _ => VType::Long,
                    },
                },
            },
            ExprKind::Index { array, .. } | ExprKind::IndexAssign { array, .. } => {
                self.checked.types.global(&array.name)
            }
            _ => VType::Long,
        }
    }

    /// The packed operands of a map instruction on `array` with `nkeys` keys.
    fn map_ops(&self, array: &Ident, nkeys: usize) -> i64 {
        let info = self
            .checked
            .global(&array.name)
            .and_then(|g| self.checked.globals.get(g as usize));
        MapOperands {
            nkeys: nkeys as u8,
            str_keys: info.map_or(0, |i| i.str_keys),
            str_value: info.is_some_and(|i| i.str_value),
        }
        .pack()
    }

    /// Drop an unwanted value of type `t`.
    fn drop_value(&mut self, t: VType) {
        match t {
            VType::Str => self.op(Op::SPop),
            VType::Long => self.op(Op::Pop),
        };
    }

    fn load(&mut self, id: &Ident) {
        match self.resolve(&id.name) {
            VarRef::Global(g) => self.emit(Insn::with_arg(Op::LdG, g as i32)),
            VarRef::Local(s) if (s as usize) < MAX_LOCALS => {
                self.emit(Insn::with_arg(Op::LdL, s as i32))
            }
            VarRef::Local(_) => self.emit(Insn::new(Op::Push, 0, 0)),
        };
    }

    fn store(&mut self, id: &Ident) {
        match self.resolve(&id.name) {
            VarRef::Global(g) => self.emit(Insn::with_arg(Op::StG, g as i32)),
            VarRef::Local(s) if (s as usize) < MAX_LOCALS => {
                self.emit(Insn::with_arg(Op::StL, s as i32))
            }
            VarRef::Local(_) => self.op(Op::Pop),
        };
    }

    fn block(&mut self, b: &'a Block) {
        for s in &b.stmts {
            if self.too_big {
                return;
            }
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &'a Stmt) {
        if self.enter(s.span) {
            self.stmt_inner(s);
        }
        self.nest -= 1;
        self.depth = self.stmt_depth;
        self.sdepth = self.stmt_sdepth;
    }

    fn stmt_inner(&mut self, s: &'a Stmt) {
        self.span = s.span;
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::If { cond, then, els } => {
                self.expr(cond, true);
                let jz = self.jump(Op::Jz);
                self.stmt(then);
                match els {
                    None => self.patch(jz),
                    Some(e) => {
                        let j = self.jump(Op::Jmp);
                        self.patch(jz);
                        self.stmt(e);
                        self.patch(j);
                    }
                }
            }
            StmtKind::While { cond, body } => {
                let top = self.code.len();
                self.expr(cond, true);
                let jz = self.jump(Op::Jz);
                self.loops.push(Loop {
                    breaks: vec![],
                    continues: vec![],
                });
                self.stmt(body);
                let l = self.loops.pop().unwrap_or(Loop {
                    breaks: vec![],
                    continues: vec![],
                });
                for c in l.continues {
                    self.patch_to(c, top);
                }
                self.jump_back(Op::Jmp, top);
                self.patch(jz);
                for b in l.breaks {
                    self.patch(b);
                }
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                if let Some(e) = init {
                    self.expr(e, false);
                }
                let top = self.code.len();
                let jz = cond.as_ref().map(|c| {
                    self.expr(c, true);
                    self.jump(Op::Jz)
                });
                self.loops.push(Loop {
                    breaks: vec![],
                    continues: vec![],
                });
                self.stmt(body);
                let l = self.loops.pop().unwrap_or(Loop {
                    breaks: vec![],
                    continues: vec![],
                });
                for c in l.continues {
                    self.patch(c);
                }
                if let Some(e) = step {
                    self.expr(e, false);
                }
                self.jump_back(Op::Jmp, top);
                if let Some(j) = jz {
                    self.patch(j);
                }
                for b in l.breaks {
                    self.patch(b);
                }
            }
            StmtKind::Break => {
                let j = self.jump(Op::Jmp);
                if let Some(l) = self.loops.last_mut() {
                    l.breaks.push(j);
                }
            }
            StmtKind::Continue => {
                let j = self.jump(Op::Jmp);
                if let Some(l) = self.loops.last_mut() {
                    l.continues.push(j);
                }
            }
            StmtKind::Next => {
                self.op(Op::Next);
            }
            StmtKind::Return(e) => {
                let ret_str = self
                    .frames
                    .last()
                    .is_some_and(|f| self.checked.types.fn_ret(f.func) == VType::Str);
                match e {
                    Some(e) => self.expr(e, true),
                    None if ret_str => self.push_str(""),
                    None => {
                        self.emit(Insn::new(Op::Push, 0, 0));
                    }
                }
                let j = self.jump(Op::Jmp);
                if let Some(f) = self.frames.last_mut() {
                    f.returns.push(j);
                }
            }
            StmtKind::Expr(e) => self.expr(e, false),
            StmtKind::Delete(e) => match &e.kind {
                ExprKind::Var(v) => match self.resolve(&v.name) {
                    VarRef::Global(g) if self.kind(g).is_map() => {
                        self.emit(Insn::with_arg(Op::MapClear, g as i32));
                    }
                    _ if self.var_type(&v.name) == VType::Str => {
                        self.push_str("");
                        self.store_str(v);
                    }
                    _ => {
                        self.emit(Insn::new(Op::Push, 0, 0));
                        self.store(v);
                    }
                },
                ExprKind::Index { array, keys } => {
                    let g = self.map_index(array);
                    for k in keys {
                        self.expr(k, true);
                    }
                    self.span = s.span;
                    let ops = self.map_ops(array, keys.len());
                    self.emit(Insn::new(Op::MapDel, g, ops));
                }
                _ => {}
            },
            StmtKind::Foreach(f) => self.foreach(f),
            StmtKind::Empty => {}
        }
        // Every statement leaves the stacks as it found them.
        self.depth = self.stmt_depth;
        self.sdepth = self.stmt_sdepth;
    }

    fn patch_to(&mut self, at: usize, target: usize) {
        if let Some(i) = self.code.get_mut(at) {
            i.arg = target as i32 - at as i32 - 1;
        }
    }

    fn binop(op: BinOp) -> Op {
        match op {
            BinOp::Mul => Op::Mul,
            BinOp::Div => Op::Div,
            BinOp::Mod => Op::Mod,
            BinOp::Add => Op::Add,
            BinOp::Sub => Op::Sub,
            BinOp::Shl => Op::Shl,
            BinOp::Shr => Op::Shr,
            BinOp::Lt => Op::Lt,
            BinOp::Le => Op::Le,
            BinOp::Gt => Op::Gt,
            BinOp::Ge => Op::Ge,
            BinOp::Eq => Op::Eq,
            BinOp::Ne => Op::Ne,
            BinOp::BitAnd => Op::And,
            BinOp::BitXor => Op::Xor,
            BinOp::BitOr => Op::Or,
            // Short-circuit operators are compiled with jumps, never through here.
            BinOp::And => Op::And,
            BinOp::Or => Op::Or,
            // String concatenation is `SConcat`, never through here.
            BinOp::Concat => Op::Nop,
        }
    }

    /// Compile an expression; leave its value on the stack iff `want`.
    /// Count one level of nesting (statements and expressions, through inlined calls);
    /// `false` when the limit is exceeded (compilation is then abandoned).
    fn enter(&mut self, span: Span) -> bool {
        self.nest += 1;
        if self.nest > MAX_NEST && !self.too_big {
            self.too_big = true;
            self.errors.push(
                Diagnostic::error(
                    format!(
                        "the script nests more than {MAX_NEST} levels deep once its functions are inlined"
                    ),
                    span,
                )
                .with_hint("split deeply nested expressions or chains of function calls"),
            );
        }
        !self.too_big
    }

    fn expr(&mut self, e: &'a Expr, want: bool) {
        let (d0, s0) = (self.depth, self.sdepth);
        let is_str = self.ety(e) == VType::Str;
        if self.enter(e.span) {
            if is_str {
                self.str_expr(e, want);
            } else {
                self.expr_inner(e, want);
            }
        }
        self.nest -= 1;
        self.depth = d0 + usize::from(want && !is_str);
        self.sdepth = s0 + usize::from(want && is_str);
    }

    /// A string-valued expression: its value on the string stack iff `want`.
    #[inline(never)]
    fn str_expr(&mut self, e: &'a Expr, want: bool) {
        self.span = e.span;
        let s0 = self.sdepth;
        match &e.kind {
            ExprKind::Str(t) => {
                if want {
                    self.push_str(t);
                }
            }
            ExprKind::Var(id) => {
                if want {
                    self.load_str(id);
                }
            }
            ExprKind::Assign { op, target, value } => {
                if *op == Some(BinOp::Concat) {
                    self.load_str(target);
                    self.expr(value, true);
                    self.span = e.span;
                    self.op(Op::SConcat);
                } else {
                    self.expr(value, true);
                    self.span = e.span;
                }
                if want {
                    self.op(Op::SDup);
                }
                self.store_str(target);
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs, true);
                self.expr(rhs, true);
                self.span = e.span;
                self.op(Op::SConcat);
                if !want {
                    self.op(Op::SPop);
                }
            }
            ExprKind::Ternary { cond, then, els } => {
                self.expr(cond, true);
                let jz = self.jump(Op::Jz);
                self.expr(then, want);
                let je = self.jump(Op::Jmp);
                self.patch(jz);
                self.sdepth = s0;
                self.expr(els, want);
                self.patch(je);
            }
            ExprKind::Call { name, args } => {
                if let Some(f) = self.checked.function(&name.name) {
                    self.inline(e, f, args, want);
                } else if name.name == "sprintf" {
                    self.output(e, Builtin::Sprintf, args);
                    if !want {
                        self.op(Op::SPop);
                    }
                } else if let Some(f) = StrFn::by_name(&name.name) {
                    for a in args {
                        self.expr(a, true);
                    }
                    self.span = e.span;
                    self.emit(Insn::with_arg(Op::SCall, f as i32));
                    if !want {
                        self.op(Op::SPop);
                    }
                } else if let Some(f) = ReadStrFn::by_name(&name.name) {
                    // The address, `n`, then the message (or "" for the variants whose
                    // default message is empty).
                    for a in args {
                        self.expr(a, true);
                    }
                    let read = f.call(args.len());
                    if read.msg && args.len() == f.nints() {
                        self.push_str("");
                    }
                    self.span = e.span;
                    self.emit(Insn::with_arg(Op::SRead, read.pack()));
                    if !want {
                        self.op(Op::SPop);
                    }
                } else {
                    let id = match name.name.as_str() {
                        "execname" => 0,
                        "pp" => 1,
                        _ => 2,
                    };
                    if want {
                        self.emit(Insn::with_arg(Op::SCtx, id));
                    }
                }
            }
            ExprKind::Index { array, keys } => {
                let g = self.map_index(array);
                for k in keys {
                    self.expr(k, true);
                }
                self.span = e.span;
                let ops = self.map_ops(array, keys.len());
                self.emit(Insn::new(Op::MapGet, g, ops));
                if !want {
                    self.op(Op::SPop);
                }
            }
            ExprKind::IndexAssign {
                op,
                array,
                keys,
                value,
            } => {
                let g = self.map_index(array);
                let ops = self.map_ops(array, keys.len());
                if *op == Some(BinOp::Concat) {
                    // a[k] .= v: read, append, write.
                    if !self.update_element(e, g, ops, keys, value, Op::SConcat) {
                        return;
                    }
                } else {
                    for k in keys {
                        self.expr(k, true);
                    }
                    self.expr(value, true);
                    self.span = e.span;
                    self.emit(Insn::new(Op::MapPut, g, ops));
                }
                if !want {
                    self.op(Op::SPop);
                }
            }
            _ => {
                // No other expression is a string (sema).
                if want {
                    self.push_str("");
                }
            }
        }
    }

    fn expr_inner(&mut self, e: &'a Expr, want: bool) {
        self.span = e.span;
        let d0 = self.depth;
        match &e.kind {
            ExprKind::Int(n) => {
                if want {
                    self.emit(Insn::new(Op::Push, 0, *n));
                }
            }
            ExprKind::Str(_) => {
                // Only valid as an output argument (sema); a string statement does nothing.
                if want {
                    self.emit(Insn::new(Op::Push, 0, 0));
                }
            }
            ExprKind::Var(id) => {
                if want {
                    self.load(id);
                }
            }
            ExprKind::Assign { op, target, value } => {
                if let Some(op) = op {
                    self.load(target);
                    self.expr(value, true);
                    self.span = e.span;
                    self.op(Self::binop(*op));
                } else {
                    self.expr(value, true);
                    self.span = e.span;
                }
                if want {
                    self.op(Op::Dup);
                }
                self.store(target);
            }
            ExprKind::IncDec {
                prefix,
                inc,
                target,
            } => {
                let arith = if *inc { Op::Add } else { Op::Sub };
                self.load(target);
                if want && !*prefix {
                    self.op(Op::Dup);
                }
                self.emit(Insn::new(Op::Push, 0, 1));
                self.op(arith);
                if want && *prefix {
                    self.op(Op::Dup);
                }
                self.store(target);
            }
            ExprKind::Binary { op, lhs, rhs } => match op {
                BinOp::And | BinOp::Or => {
                    // a && b: a; Jz F; b; Jz F; Push 1; Jmp E; F: Push 0; E:
                    // a || b: a; Jnz T; b; Jnz T; Push 0; Jmp E; T: Push 1; E:
                    let (jop, fall, taken) = if *op == BinOp::And {
                        (Op::Jz, 1, 0)
                    } else {
                        (Op::Jnz, 0, 1)
                    };
                    self.expr(lhs, true);
                    let j1 = self.jump(jop);
                    self.expr(rhs, true);
                    let j2 = self.jump(jop);
                    self.emit(Insn::new(Op::Push, 0, fall));
                    let je = self.jump(Op::Jmp);
                    self.patch(j1);
                    self.patch(j2);
                    self.depth = d0;
                    self.emit(Insn::new(Op::Push, 0, taken));
                    self.patch(je);
                    if !want {
                        self.op(Op::Pop);
                    }
                }
                _ => {
                    self.expr(lhs, true);
                    self.expr(rhs, true);
                    self.span = e.span;
                    if self.ety(lhs) == VType::Str {
                        self.emit(Insn::with_arg(Op::SCmp, Self::binop(*op) as u8 as i32));
                    } else {
                        self.op(Self::binop(*op));
                    }
                    if !want {
                        self.op(Op::Pop);
                    }
                }
            },
            ExprKind::Unary { op, expr } => {
                self.expr(expr, true);
                self.span = e.span;
                match op {
                    UnOp::Neg => {
                        self.op(Op::Neg);
                    }
                    UnOp::Not => {
                        self.op(Op::LNot);
                    }
                    UnOp::BitNot => {
                        self.op(Op::BNot);
                    }
                    UnOp::Plus => {}
                }
                if !want {
                    self.op(Op::Pop);
                }
            }
            ExprKind::Ternary { cond, then, els } => {
                self.expr(cond, true);
                let jz = self.jump(Op::Jz);
                self.expr(then, want);
                let je = self.jump(Op::Jmp);
                self.patch(jz);
                self.depth = d0;
                self.expr(els, want);
                self.patch(je);
            }
            ExprKind::Entry(inner) => {
                let slot = self.entries.len();
                self.entries.push(inner);
                if want {
                    self.emit(Insn::with_arg(Op::EntryLoad, slot as i32));
                }
            }
            ExprKind::Call { name, args } => self.call(e, name, args, want),
            _ => self.map_expr(e, want),
        }
        self.depth = d0 + usize::from(want);
    }

    fn call(&mut self, e: &'a Expr, name: &'a Ident, args: &'a [Expr], want: bool) {
        if let Some(f) = self.checked.function(&name.name) {
            self.inline(e, f, args, want);
            return;
        }
        let Some((b, _, _)) = builtin(&name.name) else {
            if want {
                self.emit(Insn::new(Op::Push, 0, 0));
            }
            return;
        };
        match b {
            Builtin::Printf | Builtin::Print | Builtin::Println => self.output(e, b, args),
            Builtin::Exit => {
                self.op(Op::Exit);
            }
            Builtin::Randint => {
                self.expr(&args[0], true);
                self.span = e.span;
                self.op(Op::RandInt);
            }
            Builtin::Ctx(c) => {
                self.emit(Insn::new(Op::Ctx, c as i32, 0));
            }
            Builtin::TimeDiv(d) => {
                self.emit(Insn::new(Op::Ctx, Ctx::TimeNs as i32, 0));
                self.emit(Insn::new(Op::Push, 0, d));
                self.op(Op::Div);
            }
            Builtin::Arg(c) => {
                let n = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Int(n)) => *n,
                    _ => 0,
                };
                self.emit(Insn::new(Op::Ctx, c as i32, n));
            }
            Builtin::Execname
            | Builtin::Pp
            | Builtin::Probefunc
            | Builtin::Sprintf
            | Builtin::ReadStr(_) => {
                // String-valued: compiled by `str_expr`, never through here.
                self.emit(Insn::new(Op::Push, 0, 0));
            }
            Builtin::Str(f) => {
                for a in args {
                    self.expr(a, true);
                }
                self.span = e.span;
                if f == StrFn::Strlen {
                    // `SLen`, which the code generator lowers.
                    self.op(Op::SLen);
                } else {
                    self.emit(Insn::with_arg(Op::SCall, f as i32));
                }
            }
        }
        if b.is_void() {
            if want {
                self.emit(Insn::new(Op::Push, 0, 0));
            }
        } else if !want {
            self.op(Op::Pop);
        }
    }

    fn inline(&mut self, e: &'a Expr, f: usize, args: &'a [Expr], want: bool) {
        let func = &self.checked.script.functions[f];
        let nparams = func.params.len();
        let frame_size = self.checked.function_locals[f].len() as u32;
        for a in args {
            self.expr(a, true);
        }
        self.span = e.span;
        let base = self.top;
        let new_top = base + frame_size;
        if new_top as usize > MAX_LOCALS {
            if !self.locals_reported {
                self.locals_reported = true;
                self.errors.push(
                    Diagnostic::error(
                        format!(
                            "too many local variables: inlining `{}` here needs more than {MAX_LOCALS} local slots",
                            func.name.name
                        ),
                        e.span,
                    )
                    .with_hint("use fewer locals or fewer nested function calls"),
                );
            }
            // Drop the arguments and yield 0 so that code generation can go on.
            for _ in args {
                self.op(Op::Pop);
            }
            if want {
                self.emit(Insn::new(Op::Push, 0, 0));
            }
            return;
        }
        let Some(sbase) = self.bind_params(e, f, base, nparams.min(args.len()), frame_size) else {
            return;
        };
        let ret_str = self.checked.types.fn_ret(f) == VType::Str;
        let saved_stmt_depth = self.stmt_depth;
        let saved_stmt_sdepth = self.stmt_sdepth;
        let saved_loops = std::mem::take(&mut self.loops);
        self.stmt_depth = self.depth;
        self.stmt_sdepth = self.sdepth;
        let ssd = self.sdepth;
        self.frames.push(Frame {
            func: f,
            base,
            sbase,
            returns: Vec::new(),
            stmt_depth: self.depth,
        });
        self.block(&func.body);
        let frame = self.frames.pop();
        let sd = frame.as_ref().map_or(self.depth, |f| f.stmt_depth);
        let mut returns = frame.map(|f| f.returns).unwrap_or_default();
        let ends_in_return = matches!(
            func.body.stmts.last().map(|s| &s.kind),
            Some(StmtKind::Return(_))
        );
        if ends_in_return
            && !self.too_big
            && returns.last().is_some()
            && returns.last().copied() == self.code.len().checked_sub(1)
        {
            // The final `return` falls through to the end of the call: no jump needed, and
            // no implicit `return 0`.
            returns.pop();
            self.code.pop();
        } else {
            self.depth = sd;
            self.sdepth = ssd;
            // Falling off the end returns 0 (or "").
            if ret_str {
                self.push_str("");
            } else {
                self.emit(Insn::new(Op::Push, 0, 0));
            }
        }
        for r in returns {
            self.patch(r);
        }
        if ret_str {
            self.depth = sd;
            self.sdepth = ssd + 1;
        } else {
            self.depth = sd + 1;
            self.sdepth = ssd;
        }
        self.stmt_depth = saved_stmt_depth;
        self.stmt_sdepth = saved_stmt_sdepth;
        self.loops = saved_loops;
        self.top = base;
        self.stop = sbase;
        if !want {
            self.drop_value(if ret_str { VType::Str } else { VType::Long });
        }
    }

    /// Store an inlined call's arguments (on the stacks) into its parameters and zero its
    /// other locals; returns the call's first string local (`None` when they run out).
    #[inline(never)]
    fn bind_params(
        &mut self,
        e: &Expr,
        f: usize,
        base: u32,
        nparams: usize,
        frame_size: u32,
    ) -> Option<u32> {
        let func = &self.checked.script.functions[f];
        let new_top = base + frame_size;
        let sbase = self.stop;
        let nstr = self.nstr_locals(Scope::Function(f));
        if (sbase + nstr) as usize > MAX_SLOCALS {
            if !self.locals_reported {
                self.locals_reported = true;
                self.errors.push(Diagnostic::error(
                    format!(
                        "too many string variables: inlining `{}` here needs more than {MAX_SLOCALS}",
                        func.name.name
                    ),
                    e.span,
                ));
            }
            return None;
        }
        self.top = new_top;
        self.max_top = self.max_top.max(new_top);
        self.stop = sbase + nstr;
        self.smax_top = self.smax_top.max(self.stop);
        let locals = &self.checked.function_locals[f];
        let types = &self.checked.types;
        let is_str = |n: &str| types.fn_local(f, n) == VType::Str;
        let mut srank = vec![0u32; locals.len()];
        let mut r = 0;
        for (i, l) in locals.iter().enumerate() {
            srank[i] = r;
            if is_str(l) {
                r += 1;
            }
        }
        for i in (0..nparams).rev() {
            if is_str(&locals[i]) {
                self.emit(Insn::with_arg(Op::SStL, (sbase + srank[i]) as i32));
            } else {
                self.emit(Insn::with_arg(Op::StL, (base + i as u32) as i32));
            }
        }
        // Function locals start at 0 or "" on every call (slots are reused between calls).
        for s in nparams as u32..frame_size {
            if is_str(&locals[s as usize]) {
                self.push_str("");
                self.emit(Insn::with_arg(Op::SStL, (sbase + srank[s as usize]) as i32));
            } else {
                self.emit(Insn::new(Op::Push, 0, 0));
                self.emit(Insn::with_arg(Op::StL, (base + s) as i32));
            }
        }
        Some(sbase)
    }

    /// Arrays and statistics (kept out of `expr_inner` so that its stack frame, which deep
    /// expressions multiply, stays small).
    #[inline(never)]
    fn map_expr(&mut self, e: &'a Expr, want: bool) {
        match &e.kind {
            ExprKind::Index { array, keys } | ExprKind::In { array, keys } => {
                let g = self.map_index(array);
                for k in keys {
                    self.expr(k, true);
                }
                self.span = e.span;
                let op = if matches!(e.kind, ExprKind::In { .. }) {
                    Op::MapIn
                } else {
                    Op::MapGet
                };
                let ops = self.map_ops(array, keys.len());
                self.emit(Insn::new(op, g, ops));
                if !want {
                    self.op(Op::Pop);
                }
            }
            ExprKind::IndexAssign {
                op,
                array,
                keys,
                value,
            } => {
                let g = self.map_index(array);
                let ops = self.map_ops(array, keys.len());
                match op {
                    None | Some(BinOp::Add) | Some(BinOp::Sub) => {
                        for k in keys {
                            self.expr(k, true);
                        }
                        self.expr(value, true);
                        self.span = e.span;
                        if *op == Some(BinOp::Sub) {
                            self.op(Op::Neg);
                        }
                        let put = if op.is_none() { Op::MapPut } else { Op::MapAdd };
                        self.emit(Insn::new(put, g, ops));
                    }
                    Some(op) => {
                        // Read, combine, write back.
                        if !self.update_element(e, g, ops, keys, value, Self::binop(*op)) {
                            if want {
                                self.emit(Insn::new(Op::Push, 0, 0));
                            }
                            return;
                        }
                    }
                }
                if !want {
                    self.op(Op::Pop);
                }
            }
            ExprKind::IndexIncDec {
                prefix,
                inc,
                array,
                keys,
            } => {
                let g = self.map_index(array);
                for k in keys {
                    self.expr(k, true);
                }
                self.span = e.span;
                let d = if *inc { 1 } else { -1 };
                self.emit(Insn::new(Op::Push, 0, d));
                let ops = self.map_ops(array, keys.len());
                self.emit(Insn::new(Op::MapAdd, g, ops));
                if !want {
                    self.op(Op::Pop);
                } else if !*prefix {
                    // The old value: new - d.
                    self.emit(Insn::new(Op::Push, 0, d));
                    self.op(Op::Sub);
                }
            }
            ExprKind::Aggregate {
                target,
                keys,
                value,
            } => {
                let g = self.map_index(target);
                for k in keys {
                    self.expr(k, true);
                }
                self.expr(value, true);
                self.span = e.span;
                let ops = self.map_ops(target, keys.len());
                self.emit(Insn::new(Op::StatAdd, g, ops));
                if want {
                    self.emit(Insn::new(Op::Push, 0, 0));
                }
            }
            ExprKind::Stat {
                op, target, keys, ..
            } => {
                let g = self.map_index(target);
                for k in keys {
                    self.expr(k, true);
                }
                self.span = e.span;
                let kind = match op {
                    StatOp::Count => StatKind::Count,
                    StatOp::Sum => StatKind::Sum,
                    StatOp::Min => StatKind::Min,
                    StatOp::Max => StatKind::Max,
                    StatOp::Avg => StatKind::Avg,
                    StatOp::Variance => StatKind::Variance,
                };
                let ops = self.map_ops(target, keys.len());
                self.emit(Insn::new(
                    Op::StatGet,
                    g,
                    ops | (kind as i64) << vm::STAT_KIND_SHIFT,
                ));
                if !want {
                    self.op(Op::Pop);
                }
            }
            // Only a `print` argument (sema), handled by `output`.
            ExprKind::Hist { .. } if want => {
                self.emit(Insn::new(Op::Push, 0, 0));
            }
            _ => {}
        }
    }

    /// `a[keys] OP= value` by read, combine, write: the keys go to temporaries (integers and
    /// strings apart) so that they can be pushed twice, for the `MapGet` and the `MapPut`;
    /// `combine` merges the old element and `value`. Leaves the new element on its stack;
    /// `false` (with an error) when the temporaries run out.
    fn update_element(
        &mut self,
        e: &'a Expr,
        g: i32,
        ops: i64,
        keys: &'a [Expr],
        value: &'a Expr,
        combine: Op,
    ) -> bool {
        let m = MapOperands::unpack(ops);
        let (ni, ns) = (m.nint() as u32, m.nstr() as u32);
        let (Some(t), Some(ts)) = (self.temps(ni, e.span), self.stemps(ns, e.span)) else {
            return false;
        };
        for k in keys {
            self.expr(k, true);
        }
        for i in (0..ns).rev() {
            self.emit(Insn::with_arg(Op::SStL, (ts + i) as i32));
        }
        for i in (0..ni).rev() {
            self.emit(Insn::with_arg(Op::StL, (t + i) as i32));
        }
        for _ in 0..2 {
            for i in 0..ni {
                self.emit(Insn::with_arg(Op::LdL, (t + i) as i32));
            }
            for i in 0..ns {
                self.emit(Insn::with_arg(Op::SLdL, (ts + i) as i32));
            }
        }
        self.emit(Insn::new(Op::MapGet, g, ops));
        self.expr(value, true);
        self.span = e.span;
        self.op(combine);
        self.emit(Insn::new(Op::MapPut, g, ops));
        self.top -= ni;
        self.stop -= ns;
        true
    }

    /// What global `g` is.
    fn kind(&self, g: u32) -> GlobalKind {
        self.checked
            .globals
            .get(g as usize)
            .map_or(GlobalKind::Scalar, |i| i.kind)
    }

    /// The global index of an array or aggregate (sema checked it is one).
    fn map_index(&self, array: &Ident) -> i32 {
        match self.checked.global(&array.name) {
            Some(g) => g as i32,
            None => 0,
        }
    }

    /// `n` fresh local slots (released by the caller with `self.top -= n`); `None` (with an
    /// error) when the locals run out.
    fn temps(&mut self, n: u32, span: Span) -> Option<u32> {
        let t = self.top;
        if (t + n) as usize > MAX_LOCALS {
            if !self.locals_reported {
                self.locals_reported = true;
                self.errors.push(Diagnostic::error(
                    format!("too many local variables here (at most {MAX_LOCALS} slots)"),
                    span,
                ));
            }
            return None;
        }
        self.top += n;
        self.max_top = self.max_top.max(self.top);
        Some(t)
    }

    /// `n` fresh string local slots (released by the caller with `self.stop -= n`).
    fn stemps(&mut self, n: u32, span: Span) -> Option<u32> {
        let t = self.stop;
        if (t + n) as usize > MAX_SLOCALS {
            if !self.locals_reported {
                self.locals_reported = true;
                self.errors.push(Diagnostic::error(
                    format!("too many string variables here (at most {MAX_SLOCALS})"),
                    span,
                ));
            }
            return None;
        }
        self.stop += n;
        self.smax_top = self.smax_top.max(self.stop);
        Some(t)
    }

    /// `foreach ([v =] [k...] in a[+-] [limit N]) body`: `IterStart`, then a loop of
    /// `IterNext` into temporaries, copied to the named variables, and the body.
    fn foreach(&mut self, f: &'a Foreach) {
        let g = self.map_index(&f.array);
        let m = MapOperands::unpack(self.map_ops(&f.array, f.keys.len()));
        let with_value = f.value.is_some();
        let str_value = with_value && m.str_value;
        let ni = m.nint() as u32 + u32::from(with_value && !str_value);
        let ns = m.nstr() as u32 + u32::from(str_value);
        if self.iters as usize >= MAX_ITERS {
            self.errors.push(Diagnostic::error(
                format!("more than {MAX_ITERS} nested `foreach` loops"),
                f.array.span,
            ));
            return;
        }
        let (Some(t), Some(ts)) = (self.temps(ni, f.array.span), self.stemps(ns, f.array.span))
        else {
            return;
        };
        let slot = self.iters as i64;
        self.iters += 1;
        let spec = IterSpec {
            by: match f.sort {
                None => 0,
                Some(Sort { key: None, .. }) => 1,
                Some(Sort { key: Some(k), .. }) => k as u8 + 2,
            },
            desc: f.sort.is_some_and(|s| s.desc),
            limit: f.limit.is_some(),
        };
        if let Some(l) = &f.limit {
            self.expr(l, true);
        }
        self.span = f.array.span;
        self.emit(Insn::new(Op::IterStart, g, slot | spec.pack() << 8));
        let top = self.code.len();
        let next = self.emit(Insn::new(
            Op::IterNext,
            0,
            slot | (t as i64) << 8 | (ts as i64) << 20 | (with_value as i64) << 28,
        ));
        // The keys (then the value) come in order, integers into `t..`, strings into `ts..`.
        let (mut it, mut is) = (t, ts);
        let vars = f
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k, m.str_keys & (1 << i) != 0));
        for (k, is_str) in vars.chain(f.value.iter().map(|v| (v, str_value))) {
            if is_str {
                self.emit(Insn::with_arg(Op::SLdL, is as i32));
                self.store_str(k);
                is += 1;
            } else {
                self.emit(Insn::with_arg(Op::LdL, it as i32));
                self.store(k);
                it += 1;
            }
        }
        self.loops.push(Loop {
            breaks: vec![],
            continues: vec![],
        });
        self.stmt(&f.body);
        let l = self.loops.pop().unwrap_or(Loop {
            breaks: vec![],
            continues: vec![],
        });
        for c in l.continues {
            self.patch_to(c, top);
        }
        self.jump_back(Op::Jmp, top);
        self.patch(next);
        for b in l.breaks {
            self.patch(b);
        }
        self.iters -= 1;
        self.top -= ni;
        self.stop -= ns;
    }

    fn format_id(&mut self, mut pieces: Vec<Piece>, nargs: usize) -> u32 {
        // Merge adjacent text pieces.
        let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
        for p in pieces.drain(..) {
            match (merged.last_mut(), p) {
                (Some(Piece::Text(a)), Piece::Text(b)) => a.push_str(&b),
                (_, Piece::Text(b)) if b.is_empty() => {}
                (_, p) => merged.push(p),
            }
        }
        let f = Format {
            pieces: merged,
            nargs,
        };
        if let Some(&id) = self.format_ids.get(&f) {
            return id;
        }
        let id = self.formats.len() as u32;
        self.format_ids.insert(f.clone(), id);
        self.formats.push(f);
        id
    }

    /// A string-valued output argument as a piece, or `None` for an integer argument. `arg`
    /// is the index of the conversion's first `*` argument.
    fn string_piece(a: &Expr, spec: Spec, arg: usize) -> Option<Piece> {
        match &a.kind {
            ExprKind::Str(s) => Some(
                if spec.width == 0 && spec.precision.is_none() && spec.dyn_args() == 0 && !spec.zero
                {
                    Piece::Text(s.clone())
                } else {
                    Piece::Str {
                        text: s.clone(),
                        arg,
                        spec,
                    }
                },
            ),
            ExprKind::Call { name, args } if args.is_empty() => match name.name.as_str() {
                "execname" => Some(Piece::Execname { arg, spec }),
                "pp" => Some(Piece::Pp { arg, spec }),
                "probefunc" => Some(Piece::Probefunc { arg, spec }),
                _ => None,
            },
            _ => None,
        }
    }

    /// One output value `a` formatted by `spec`: a string piece, or an integer piece whose
    /// value joins the record's arguments `ints`. `first` is the index of the conversion's
    /// first record argument (its `*` arguments, already in `ints`, or else the value).
    /// `sprintf`: context strings (`execname()`, ...) are values too.
    #[allow(clippy::too_many_arguments)]
    fn push_value(
        &self,
        a: &'a Expr,
        spec: Spec,
        first: usize,
        ints: &mut Vec<&'a Expr>,
        strs: &mut Vec<&'a Expr>,
        pieces: &mut Vec<Piece>,
        sprintf: bool,
    ) {
        // `sprintf`'s context strings are values on the string stack, so that the kernel's
        // `bpf_snprintf` can print them (`format::KernelFormat`).
        let piece = Self::string_piece(a, spec, first).filter(|p| {
            !(sprintf
                && matches!(
                    p,
                    Piece::Execname { .. } | Piece::Pp { .. } | Piece::Probefunc { .. }
                ))
        });
        match piece {
            Some(p) => pieces.push(p),
            None if self.ety(a) == VType::Str => {
                pieces.push(Piece::StrVal {
                    sarg: strs.len(),
                    arg: first,
                    spec,
                });
                strs.push(a);
            }
            // Its words are placed once the record's pushed arguments are known.
            None if matches!(spec.conv, b'm' | b'M') => {
                pieces.push(Piece::Mem {
                    arg: first,
                    at: 0,
                    spec,
                });
                ints.push(a);
            }
            None => {
                pieces.push(Piece::Int { arg: first, spec });
                ints.push(a);
            }
        }
    }

    fn output(&mut self, e: &'a Expr, b: Builtin, args: &'a [Expr]) {
        let plain = Spec {
            conv: b's',
            ..Spec::default()
        };
        let int_spec = Spec {
            conv: b'd',
            ..Spec::default()
        };
        let mut pieces = Vec::new();
        // The record's integer and string arguments, in order.
        let mut ints: Vec<&'a Expr> = Vec::new();
        let mut strs: Vec<&'a Expr> = Vec::new();
        let mut hists: Vec<crate::memdump::HistSnap> = Vec::new();
        if b == Builtin::Printf || b == Builtin::Sprintf {
            let fmt = match args.first().map(|a| &a.kind) {
                Some(ExprKind::Str(s)) => s.as_str(),
                _ => "",
            };
            let items = parse_printf(fmt).unwrap_or_default();
            let mut rest = args[1..].iter();
            'items: for it in items {
                match it {
                    FmtItem::Text(t) => pieces.push(Piece::Text(t)),
                    FmtItem::Conv { spec, .. } => {
                        let first = ints.len();
                        for _ in 0..spec.dyn_args() {
                            let Some(a) = rest.next() else { break 'items };
                            ints.push(a);
                        }
                        let Some(a) = rest.next() else { break };
                        self.push_value(
                            a,
                            spec,
                            first,
                            &mut ints,
                            &mut strs,
                            &mut pieces,
                            b == Builtin::Sprintf,
                        );
                    }
                }
            }
        } else {
            for a in args {
                if let ExprKind::Hist { kind, target, keys } = &a.kind {
                    let global = self.checked.global(&target.name).unwrap_or(0);
                    let linear = matches!(kind, HistKind::Linear { .. });
                    let spec = self
                        .checked
                        .globals
                        .get(global as usize)
                        .map(|g| g.hist)
                        .unwrap_or_default();
                    let words = if linear {
                        spec.linear_buckets()
                    } else {
                        crate::bytecode::HIST_LOG_BUCKETS
                    };
                    hists.push(crate::memdump::HistSnap {
                        global,
                        linear,
                        keys: self.map_ops(target, keys.len()),
                        arg: ints.len(),
                        sarg: strs.len(),
                        at: 0,
                        words,
                    });
                    pieces.push(Piece::Hist {
                        global,
                        linear,
                        arg: ints.len(),
                        sarg: strs.len(),
                        nkeys: keys.len(),
                        at: None,
                    });
                    for k in keys {
                        if self.ety(k) == VType::Str {
                            strs.push(k);
                        } else {
                            ints.push(k);
                        }
                    }
                    continue;
                }
                let first = ints.len();
                let spec = if self.ety(a) == VType::Str {
                    plain
                } else {
                    int_spec
                };
                self.push_value(
                    a,
                    spec,
                    first,
                    &mut ints,
                    &mut strs,
                    &mut pieces,
                    b == Builtin::Sprintf,
                );
            }
            if b == Builtin::Println {
                pieces.push(Piece::Text("\n".into()));
            }
        }
        if ints.len() > MAX_OUT_ARGS {
            self.errors.push(Diagnostic::error(
                format!(
                    "too many integer arguments in one output call: {} (at most {MAX_OUT_ARGS})",
                    ints.len()
                ),
                e.span,
            ));
            return;
        }
        if strs.len() > MAX_OUT_STRS {
            self.errors.push(Diagnostic::error(
                format!(
                    "too many string arguments in one output call: {} (at most {MAX_OUT_STRS})",
                    strs.len()
                ),
                e.span,
            ));
            return;
        }
        let (n, ns) = (ints.len(), strs.len());
        let mut plan = crate::memdump::place_dumps(&mut pieces, n);
        crate::memdump::place_hists(&mut pieces, &mut plan, hists, n, ns);
        if 8 * (n + plan.words()) + MAXSTRINGLEN * ns > crate::memdump::MAX_RECORD_ARG_BYTES {
            self.errors.push(Diagnostic::error(
                format!(
                    "too much output in one printf: {} bytes of values, {} of strings and {} of memory dumps exceed the {}-byte output record (8 bytes a value, {MAXSTRINGLEN} a string, a memory dump rounded up to 8)",
                    8 * n,
                    MAXSTRINGLEN * ns,
                    8 * plan.words(),
                    crate::memdump::MAX_RECORD_ARG_BYTES
                ),
                e.span,
            ));
            return;
        }
        for a in ints {
            self.expr(a, true);
        }
        for a in strs {
            self.expr(a, true);
        }
        self.span = e.span;
        let id = self.format_id(pieces, n);
        let mut imm = n as i64 | (ns as i64) << 16;
        let op = if b == Builtin::Sprintf {
            // Why the kernel cannot print it, for `vm::user_space_only`.
            match KernelFormat::of(&self.formats[id as usize]) {
                Ok(k) => {
                    let lit = self.literal(&k.encode());
                    imm |= i64::from(lit) << vm::SFORMAT_KERNEL_SHIFT;
                }
                Err(refusal) => imm |= i64::from(refusal) << vm::SFORMAT_REFUSAL_SHIFT,
            }
            Op::SFormat
        } else {
            if !plan.is_empty() {
                let lit = self.literal(&plan.encode());
                imm |= (i64::from(lit) + 1) << vm::OUT_PLAN_SHIFT;
            }
            Op::Out
        };
        let pc = self.emit(Insn::new(op, id as i32, imm));
        if op == Op::SFormat {
            self.sformat_spans.insert(pc, e.span);
        }
    }
}

/// Compile a checked script. `aff` gives each unit's re-evaluation list. Returns every
/// compile error (the checked script must have no errors: if it has, they are returned).
pub fn compile(checked: &Checked, aff: &Affection) -> Result<CompiledScript, Vec<Diagnostic>> {
    if checked.has_errors() {
        return Err(checked
            .diags
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect());
    }
    let mut c = Compiler {
        checked,
        code: Vec::new(),
        formats: Vec::new(),
        format_ids: HashMap::new(),
        errors: Vec::new(),
        too_big: false,
        depth: 0,
        span: Span::default(),
        deep_reported: false,
        probe: 0,
        frames: Vec::new(),
        loops: Vec::new(),
        top: 0,
        max_top: 0,
        locals_reported: false,
        nest: 0,
        entries: Vec::new(),
        stmt_depth: 0,
        iters: 0,
        sdepth: 0,
        stmt_sdepth: 0,
        stop: 0,
        smax_top: 0,
        strings: Vec::new(),
        string_ids: HashMap::new(),
        sdeep_reported: false,
        sformat_spans: HashMap::new(),
    };
    let mut units = Vec::new();
    for (ui, u) in checked.units.iter().enumerate() {
        let probe = &checked.script.probes[u.probe];
        let spec = &probe.points[u.component];
        c.probe = u.probe;
        let nprobe_locals = checked.probe_locals[u.probe].len() as u32;
        c.top = nprobe_locals;
        c.max_top = nprobe_locals;
        c.stop = c.nstr_locals(Scope::Probe(u.probe));
        c.smax_top = c.stop;
        if c.stop as usize > MAX_SLOCALS {
            c.errors.push(Diagnostic::error(
                format!("too many string variables in this probe (at most {MAX_SLOCALS})"),
                probe.span,
            ));
        }
        c.locals_reported = false;
        c.entries.clear();
        if nprobe_locals as usize > MAX_LOCALS {
            c.errors.push(Diagnostic::error(
                format!("too many local variables in this probe (at most {MAX_LOCALS})"),
                probe.span,
            ));
        }

        // The body, with the condition inlined first.
        let start = c.begin_program();
        if let Some(cond) = &spec.cond {
            c.expr(cond, true);
            c.emit(Insn::with_arg(Op::Jnz, 1));
            c.op(Op::Skip);
        }
        c.block(&probe.body);
        c.span = probe.body.span;
        c.op(Op::Next);
        let body = c.end_program(start);

        // The condition alone.
        let cond = spec.cond.as_ref().map(|cond| {
            let start = c.begin_program();
            c.expr(cond, true);
            // Normalise to 0 or 1, so that runtimes can compare results as booleans.
            c.op(Op::LNot);
            c.op(Op::LNot);
            c.op(Op::Ret);
            c.end_program(start)
        });

        // The @entry program.
        let entry = if !c.entries.is_empty() && u.point.is_return() {
            let entries = std::mem::take(&mut c.entries);
            let start = c.begin_program();
            for (slot, e) in entries.iter().enumerate() {
                c.expr(e, true);
                c.emit(Insn::with_arg(Op::EntrySave, slot as i32));
            }
            c.op(Op::Next);
            Some(c.end_program(start))
        } else {
            None
        };

        // What only user space runs yet: a timer defers such a body, other kernel probes
        // cannot have it.
        let user_only = [Some(&body), cond.as_ref(), entry.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|r| r.start as usize..r.end as usize)
            .find_map(|pc| {
                c.code
                    .get(pc)
                    .and_then(vm::user_space_only)
                    .map(|w| (pc, w))
            });
        if let Some((pc, what)) = user_only {
            // A `sprintf` is refused where it is, the rest at the probe.
            let span = c.sformat_spans.get(&pc).copied().unwrap_or(probe.span);
            let user = matches!(
                u.point,
                PointKind::Begin | PointKind::End | PointKind::Timer { .. }
            );
            if !user && !c.too_big {
                c.errors.push(
                    Diagnostic::error(
                        format!(
                            "{what}: only available in `begin`, `end` and `timer` probes for now (their bodies run in user space)"
                        ),
                        span,
                    )
                    .with_hint(format!("this probe includes `{}`", u.point)),
                );
            }
        }
        let access = &checked.probe_access[u.probe];
        let mut read: Vec<u32> = access
            .reads
            .iter()
            .chain(u.cond_reads.iter())
            .copied()
            .collect();
        read.sort_unstable();
        read.dedup();
        let written: Vec<u32> = access.writes.iter().copied().collect();
        let reeval = aff.reeval.get(ui).cloned().unwrap_or_default();
        let mut lock_mask = 0u64;
        let stripe = |g: u32| 1u64 << (g as usize % LOCK_STRIPES);
        for &g in read.iter().chain(written.iter()) {
            lock_mask |= stripe(g);
        }
        for &p in &reeval {
            for &g in &checked.units[p].cond_reads {
                lock_mask |= stripe(g);
            }
        }
        units.push(Unit {
            probe: u.probe,
            component: u.component,
            point: u.point.clone(),
            point_span: u.point_span,
            optional: u.optional,
            body,
            cond,
            entry,
            reeval,
            lock_mask,
            globals_read: read,
            globals_written: written,
            nlocals: c.max_top.min(MAX_LOCALS as u32),
            deferred: user_only.is_some() && !matches!(u.point, PointKind::Begin | PointKind::End),
        });
    }
    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(CompiledScript {
        code: c.code,
        units,
        formats: c.formats,
        globals: checked.globals.clone(),
        strings: c.strings,
    })
}
