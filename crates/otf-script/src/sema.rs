//! Semantic passes: name resolution, implicit locals, condition rules, context rules, probe point checks.
//!
//! [`check`] takes a parsed script and returns a [`Checked`]: the script with its probe
//! points interpreted (one [`UnitInfo`] per probe component), its globals and their initial
//! values, the locals of every probe and function (slot = position), the globals each body
//! and condition reads and writes (through called functions too), and every diagnostic.
//! Later passes ([`crate::affection`], [`crate::compile`]) run only when there is no error.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::ast::{
    BinOp, Block, Expr, ExprKind, HistKind, Ident, Script, Span, Stmt, StmtKind, UnOp,
};
use crate::bytecode::{
    Ctx, GlobalKind, HistSpec, ReadStrFn, StrFn, MAXMAPENTRIES, MAXSTRINGLEN, MAX_ENTRY_SLOTS,
    MAX_GLOBALS,
};
use crate::diag::{Diagnostic, SourceFile};
use crate::format::{parse_printf, FmtItem};
use crate::point::{interpret, PointKind};
use crate::types::VType;

/// A built-in function, as the compiler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    /// `printf(FMT, ...)`.
    Printf,
    /// `println(...)`.
    Println,
    /// `print(...)`.
    Print,
    /// `exit()`.
    Exit,
    /// `randint(N)`.
    Randint,
    /// A context value without parameter: `pid()`, `tid()`, `ppid()`, `uid()`, `cpu()`,
    /// `gettimeofday_ns()`, `target()`, `returnval()`.
    Ctx(Ctx),
    /// `gettimeofday_us/ms/s()`: nanoseconds divided by this.
    TimeDiv(i64),
    /// A function argument: `int_arg(N)` ([`Ctx::IntArg`]) or `long_arg(N)`,
    /// `ulong_arg(N)`, `pointer_arg(N)` ([`Ctx::LongArg`]).
    Arg(Ctx),
    /// `execname()` (a string).
    Execname,
    /// `pp()` (a string).
    Pp,
    /// `probefunc()` (a string).
    Probefunc,
    /// A string function ([`StrFn`]).
    Str(StrFn),
    /// `sprintf(FMT, ...)`: like `printf`, into a string.
    Sprintf,
    /// `user_string(addr)`, `kernel_string(addr)` and their variants: a string read from
    /// memory.
    ReadStr(ReadStrFn),
}

impl Builtin {
    /// `true` for the built-ins whose value is a string (usable only as output arguments).
    pub fn is_string(self) -> bool {
        matches!(self, Builtin::Execname | Builtin::Pp | Builtin::Probefunc)
    }

    /// `true` for the built-ins without a value (output and `exit`).
    pub fn is_void(self) -> bool {
        matches!(
            self,
            Builtin::Printf | Builtin::Println | Builtin::Print | Builtin::Exit
        )
    }
}

/// The built-in function called `name`, with its minimum and maximum argument counts
/// (`None`: any number).
pub fn builtin(name: &str) -> Option<(Builtin, usize, Option<usize>)> {
    use Builtin as B;
    Some(match name {
        "printf" => (B::Printf, 1, None),
        "println" => (B::Println, 0, None),
        "print" => (B::Print, 1, None),
        "exit" => (B::Exit, 0, Some(0)),
        "randint" => (B::Randint, 1, Some(1)),
        "pid" => (B::Ctx(Ctx::Pid), 0, Some(0)),
        "tid" => (B::Ctx(Ctx::Tid), 0, Some(0)),
        "ppid" => (B::Ctx(Ctx::Ppid), 0, Some(0)),
        "uid" => (B::Ctx(Ctx::Uid), 0, Some(0)),
        "cpu" => (B::Ctx(Ctx::Cpu), 0, Some(0)),
        "gettimeofday_ns" => (B::Ctx(Ctx::TimeNs), 0, Some(0)),
        "gettimeofday_us" => (B::TimeDiv(1_000), 0, Some(0)),
        "gettimeofday_ms" => (B::TimeDiv(1_000_000), 0, Some(0)),
        "gettimeofday_s" => (B::TimeDiv(1_000_000_000), 0, Some(0)),
        "target" => (B::Ctx(Ctx::Target), 0, Some(0)),
        "returnval" => (B::Ctx(Ctx::RetVal), 0, Some(0)),
        "execname" => (B::Execname, 0, Some(0)),
        "pp" => (B::Pp, 0, Some(0)),
        "probefunc" => (B::Probefunc, 0, Some(0)),
        "sprintf" => (B::Sprintf, 1, None),
        "int_arg" => (B::Arg(Ctx::IntArg), 1, Some(1)),
        "long_arg" | "ulong_arg" | "pointer_arg" => (B::Arg(Ctx::LongArg), 1, Some(1)),
        n => match (StrFn::by_name(n), ReadStrFn::by_name(n)) {
            (Some(f), _) => {
                let k = f.signature().0.len();
                (B::Str(f), k, Some(k))
            }
            (None, Some(f)) => (B::ReadStr(f), f.min, Some(f.max)),
            (None, None) => return None,
        },
    })
}

/// SystemTap's tapset functions that read memory which otf does not have yet, with what to
/// use instead: they are refused by name rather than as unknown functions.
fn not_yet(name: &str) -> Option<&'static str> {
    let quoted =
        "print the string read by `user_string` or `kernel_string` (quoting is not supported)";
    let wide = "only byte strings can be read (`user_string`, `kernel_string`)";
    Some(match name {
        "user_string_quoted"
        | "user_string_n_quoted"
        | "user_string_n2_quoted"
        | "kernel_string_quoted"
        | "kernel_or_user_string_quoted"
        | "kernel_buffer_quoted"
        | "user_buffer_quoted" => quoted,
        "user_string_utf32"
        | "user_string2_utf32"
        | "user_string_utf16"
        | "user_string2_utf16"
        | "user_string_quoted_utf32"
        | "user_string_quoted_utf16"
        | "kernel_string_utf32"
        | "kernel_string2_utf32"
        | "kernel_string_utf16"
        | "kernel_string2_utf16"
        | "kernel_string_quoted_utf32"
        | "kernel_string_quoted_utf16"
        | "kernel_or_user_string_quoted_utf32"
        | "kernel_or_user_string_quoted_utf16" => wide,
        // SystemTap's returns "" whatever it reads (its body has no `return`).
        "user_string2_n_warn" => "use `user_string_n_warn(addr, n, warn_msg)`",
        _ => return None,
    })
}

/// The highest argument number accepted by `int_arg(N)` and friends (the registers that
/// carry arguments on x86-64).
pub const MAX_ARG_NUMBER: i64 = 6;

/// A declared global.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalInfo {
    /// The name.
    pub name: String,
    /// The initial value (0 when not initialised).
    pub init: i64,
    /// What it is: a scalar, an array or an aggregate (inferred from its uses).
    pub kind: GlobalKind,
    /// `global a[N]`: the size limit as declared (arrays default to [`MAXMAPENTRIES`]).
    pub size: Option<u32>,
    /// `global a%`: full arrays drop their oldest element instead of failing.
    pub wrap: bool,
    /// The histograms an aggregate keeps.
    pub hist: HistSpec,
    /// A string scalar, or an array of strings.
    pub str_value: bool,
    /// Bit `i`: key `i` of the array is a string.
    pub str_keys: u16,
    /// A string scalar's initial value.
    pub init_str: Option<String>,
    /// Its value is read somewhere (`x++`, `x = v`, `x <<< v`, `delete x` are pure writes).
    pub read: bool,
    /// It is written somewhere. Globals written and never read are printed at exit, as
    /// SystemTap prints them.
    pub written: bool,
    /// The declaration.
    pub span: Span,
}

impl GlobalInfo {
    /// The most elements the array (or array of aggregates) may hold.
    pub fn max_entries(&self) -> u32 {
        self.size.unwrap_or(MAXMAPENTRIES)
    }
}

/// Globals read and written by a body or condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Global indexes read.
    pub reads: BTreeSet<u32>,
    /// Global indexes written.
    pub writes: BTreeSet<u32>,
}

impl Access {
    fn merge(&mut self, other: &Access) {
        self.reads.extend(other.reads.iter().copied());
        self.writes.extend(other.writes.iter().copied());
    }
}

/// One (probe statement, component) pair: the unit of arming and of compilation.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitInfo {
    /// Index of the probe statement in [`Script::probes`].
    pub probe: usize,
    /// Index of the component in its [`crate::ast::Probe::points`].
    pub component: usize,
    /// The interpreted point.
    pub point: PointKind,
    /// Where the point was written.
    pub point_span: Span,
    /// Written with `?`.
    pub optional: bool,
    /// Whether the component has a condition.
    pub has_cond: bool,
    /// Globals read by the condition (empty without one).
    pub cond_reads: BTreeSet<u32>,
}

/// Where a name is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The body (or condition) of probe statement `n`.
    Probe(usize),
    /// The body of function `n`.
    Function(usize),
}

/// What a name refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarRef {
    /// Global index.
    Global(u32),
    /// Local slot within the probe, or within the function's frame (parameters first).
    Local(u32),
}

/// The result of [`check`].
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The script as parsed.
    pub script: Script,
    /// The globals, by index (declaration order).
    pub globals: Vec<GlobalInfo>,
    /// Every (probe, component) pair whose point could be interpreted, in script order.
    pub units: Vec<UnitInfo>,
    /// Per probe statement: its locals; the slot of a local is its position.
    pub probe_locals: Vec<Vec<String>>,
    /// Per function: its parameters then its locals; slot = position.
    pub function_locals: Vec<Vec<String>>,
    /// Per probe statement: globals its body reads and writes, through called functions
    /// too (not its conditions).
    pub probe_access: Vec<Access>,
    /// Per function: globals it reads and writes, through nested calls too.
    pub function_access: Vec<Access>,
    /// The inferred types of every variable, array and function.
    pub types: crate::types::Types,
    /// All errors and warnings, in the order found.
    pub diags: Vec<Diagnostic>,
    global_index: HashMap<String, u32>,
    function_index: HashMap<String, usize>,
}

impl Checked {
    /// `true` if any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    /// The index of global `name`.
    pub fn global(&self, name: &str) -> Option<u32> {
        self.global_index.get(name).copied()
    }

    /// The index of script function `name`.
    pub fn function(&self, name: &str) -> Option<usize> {
        self.function_index.get(name).copied()
    }

    /// Resolve a variable name in `scope`: in a function, parameters first, then globals,
    /// then the function's locals; in a probe, globals, then the probe's locals.
    pub fn resolve(&self, scope: Scope, name: &str) -> Option<VarRef> {
        let (locals, nparams) = match scope {
            Scope::Probe(p) => (self.probe_locals.get(p)?, 0),
            Scope::Function(f) => (
                self.function_locals.get(f)?,
                self.script.functions.get(f)?.params.len(),
            ),
        };
        let pos = |n: &str| locals.iter().position(|l| l == n).map(|i| i as u32);
        if let Some(i) = pos(name).filter(|&i| (i as usize) < nparams) {
            return Some(VarRef::Local(i));
        }
        if let Some(g) = self.global(name) {
            return Some(VarRef::Global(g));
        }
        pos(name).map(VarRef::Local)
    }

    /// Units of probe statement `probe`.
    pub fn units_of(&self, probe: usize) -> impl Iterator<Item = (usize, &UnitInfo)> {
        self.units
            .iter()
            .enumerate()
            .filter(move |(_, u)| u.probe == probe)
    }
}

/// The type of an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int,
    Str,
    Void,
    /// `@hist_log(x)` / `@hist_linear(...)`: only printable.
    Hist,
}

/// Context-dependent things a body uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Use {
    /// `returnval()`: `.return` function probes only.
    RetVal,
    /// `int_arg(N)` etc. and `probefunc()`: function probes only.
    FuncCtx(&'static str),
    /// Constructs that run only in user space for now: `begin` and `end` probes.
    UserOnly(&'static str),
}

/// What kind of expression context the walker is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Body,
    Cond,
    Entry,
}

#[derive(Default)]
struct BodyInfo {
    locals: Vec<String>,
    access: Access,
    calls: Vec<(usize, Span)>,
    uses: Vec<(Use, Span)>,
    entries: usize,
    /// Calls inside `foreach` loops, with the arrays those loops iterate (checked against
    /// what the function writes once every function's writes are known).
    iter_calls: Vec<(usize, Span, Vec<u32>)>,
}

struct Walker<'a> {
    file: &'a SourceFile,
    globals: &'a HashMap<String, u32>,
    infos: &'a [GlobalInfo],
    types: &'a crate::types::Types,
    /// The probe or function being walked (for the types of its locals).
    scope: Scope,
    functions: &'a HashMap<String, usize>,
    script: &'a Script,
    diags: &'a mut Vec<Diagnostic>,
    in_function: bool,
    loops: u32,
    mode: Mode,
    /// Names assigned somewhere in this body (implicit locals).
    assigned: HashSet<String>,
    /// The arrays the `foreach` loops around the current statement iterate.
    iterating: Vec<u32>,
    /// Locals already warned about.
    warned: HashSet<String>,
    info: BodyInfo,
    /// Parameters of the function being walked.
    param_names: Vec<String>,
}

#[allow(clippy::too_many_arguments)]
fn walker<'a>(
    file: &'a SourceFile,
    globals: &'a HashMap<String, u32>,
    infos: &'a [GlobalInfo],
    types: &'a crate::types::Types,
    scope: Scope,
    functions: &'a HashMap<String, usize>,
    script: &'a Script,
    diags: &'a mut Vec<Diagnostic>,
) -> Walker<'a> {
    Walker {
        file,
        globals,
        infos,
        types,
        scope,
        functions,
        script,
        diags,
        in_function: false,
        loops: 0,
        mode: Mode::Body,
        assigned: HashSet::new(),
        iterating: Vec::new(),
        warned: HashSet::new(),
        info: BodyInfo::default(),
        param_names: Vec::new(),
    }
}

fn collect_assigned_stmt(s: &Stmt, out: &mut HashSet<String>) {
    match &s.kind {
        StmtKind::Block(b) => b.stmts.iter().for_each(|s| collect_assigned_stmt(s, out)),
        StmtKind::If { cond, then, els } => {
            collect_assigned_expr(cond, out);
            collect_assigned_stmt(then, out);
            if let Some(e) = els {
                collect_assigned_stmt(e, out);
            }
        }
        StmtKind::While { cond, body } => {
            collect_assigned_expr(cond, out);
            collect_assigned_stmt(body, out);
        }
        StmtKind::For {
            init,
            cond,
            step,
            body,
        } => {
            for e in [init, cond, step].into_iter().flatten() {
                collect_assigned_expr(e, out);
            }
            collect_assigned_stmt(body, out);
        }
        StmtKind::Return(Some(e)) | StmtKind::Expr(e) | StmtKind::Delete(e) => {
            collect_assigned_expr(e, out)
        }
        StmtKind::Foreach(f) => {
            out.extend(f.keys.iter().map(|k| k.name.clone()));
            out.extend(f.value.iter().map(|k| k.name.clone()));
            if let Some(l) = &f.limit {
                collect_assigned_expr(l, out);
            }
            collect_assigned_stmt(&f.body, out);
        }
        StmtKind::Return(None)
        | StmtKind::Break
        | StmtKind::Continue
        | StmtKind::Next
        | StmtKind::Empty => {}
    }
}

fn collect_assigned_expr(e: &Expr, out: &mut HashSet<String>) {
    match &e.kind {
        ExprKind::Int(_) | ExprKind::Str(_) | ExprKind::Var(_) => {}
        ExprKind::Assign { target, value, .. } => {
            out.insert(target.name.clone());
            collect_assigned_expr(value, out);
        }
        ExprKind::IncDec { target, .. } => {
            out.insert(target.name.clone());
        }
        ExprKind::Binary { lhs, rhs, .. } => {
            collect_assigned_expr(lhs, out);
            collect_assigned_expr(rhs, out);
        }
        ExprKind::Unary { expr, .. } | ExprKind::Entry(expr) => collect_assigned_expr(expr, out),
        ExprKind::Ternary { cond, then, els } => {
            collect_assigned_expr(cond, out);
            collect_assigned_expr(then, out);
            collect_assigned_expr(els, out);
        }
        ExprKind::Call { args, .. }
        | ExprKind::Index { keys: args, .. }
        | ExprKind::IndexIncDec { keys: args, .. }
        | ExprKind::In { keys: args, .. }
        | ExprKind::Stat { keys: args, .. }
        | ExprKind::Hist { keys: args, .. } => {
            args.iter().for_each(|a| collect_assigned_expr(a, out))
        }
        ExprKind::IndexAssign { keys, value, .. } | ExprKind::Aggregate { keys, value, .. } => {
            keys.iter().for_each(|a| collect_assigned_expr(a, out));
            collect_assigned_expr(value, out);
        }
    }
}

fn is_const_int(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Int(_) => true,
        ExprKind::Unary {
            op: UnOp::Neg | UnOp::Plus,
            expr,
        } => is_const_int(expr),
        _ => false,
    }
}

fn describe(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Str(_) => "a string literal".to_string(),
        ExprKind::Hist { .. } => "the histogram".to_string(),
        ExprKind::Stat { op, .. } => format!("`@{}`", op.name()),
        ExprKind::Call { name, .. } => format!("`{}()`", name.name),
        _ => "this expression".to_string(),
    }
}

impl<'a> Walker<'a> {
    fn err(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::error(msg, span));
    }

    fn err_hint(&mut self, msg: impl Into<String>, span: Span, hint: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(msg, span).with_hint(hint));
    }

    fn local_slot(&mut self, name: &str) -> u32 {
        if let Some(i) = self.info.locals.iter().position(|l| l == name) {
            return i as u32;
        }
        self.info.locals.push(name.to_string());
        (self.info.locals.len() - 1) as u32
    }

    /// Resolve a name for a read or write (params first in functions, then globals).
    fn resolve(&mut self, name: &str) -> VarRef {
        // Parameters are the first locals and shadow globals.
        if self.in_function && self.is_param(name) {
            return VarRef::Local(self.local_slot(name));
        }
        if let Some(&g) = self.globals.get(name) {
            return VarRef::Global(g);
        }
        VarRef::Local(self.local_slot(name))
    }

    fn is_param(&self, name: &str) -> bool {
        self.param_names.iter().any(|p| p == name)
    }

    fn is_callable(&self, name: &str) -> bool {
        builtin(name).is_some() || self.functions.contains_key(name)
    }

    fn check_target(&mut self, target: &Ident, span: Span) -> bool {
        if self.mode == Mode::Cond {
            self.err("probe condition must not modify any variables", span);
            return false;
        }
        if self.mode == Mode::Entry {
            self.err("@entry expression must not modify any variables", span);
            return false;
        }
        let is_var = self.globals.contains_key(&target.name) || self.is_param(&target.name);
        if !is_var && self.is_callable(&target.name) {
            let what = if builtin(&target.name).is_some() {
                "a built-in function"
            } else {
                "a function"
            };
            self.err(
                format!("cannot assign to `{}`: it is {what}", target.name),
                target.span,
            );
            return false;
        }
        true
    }

    fn write(&mut self, target: &Ident, also_read: bool) {
        match self.resolve(&target.name) {
            VarRef::Global(g) => {
                self.info.access.writes.insert(g);
                if also_read {
                    self.info.access.reads.insert(g);
                }
            }
            VarRef::Local(_) => {}
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => self.block(b),
            StmtKind::If { cond, then, els } => {
                self.int(cond);
                self.stmt(then);
                if let Some(e) = els {
                    self.stmt(e);
                }
            }
            StmtKind::While { cond, body } => {
                self.int(cond);
                self.loops += 1;
                self.stmt(body);
                self.loops -= 1;
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                if let Some(e) = init {
                    self.effect(e);
                }
                if let Some(e) = cond {
                    self.int(e);
                }
                if let Some(e) = step {
                    self.effect(e);
                }
                self.loops += 1;
                self.stmt(body);
                self.loops -= 1;
            }
            StmtKind::Break | StmtKind::Continue => {
                if self.loops == 0 {
                    let w = if s.kind == StmtKind::Break {
                        "break"
                    } else {
                        "continue"
                    };
                    self.err(format!("`{w}` outside a loop"), s.span);
                }
            }
            StmtKind::Next => {}
            StmtKind::Return(e) => {
                if !self.in_function {
                    self.err_hint(
                        "`return` outside a function",
                        s.span,
                        "use `next` to leave a probe body",
                    );
                }
                if let Some(e) = e {
                    let t = match self.scope {
                        Scope::Function(f) => match self.types.fn_ret(f) {
                            VType::Str => Ty::Str,
                            VType::Long => Ty::Int,
                        },
                        Scope::Probe(_) => Ty::Int,
                    };
                    self.value(e, t);
                }
            }
            StmtKind::Expr(e) => self.effect(e),
            StmtKind::Delete(e) => self.delete(e),
            StmtKind::Foreach(f) => {
                let Some(g) = self.map_global(&f.array) else {
                    return;
                };
                self.info.access.reads.insert(g);
                let kind = self.infos[g as usize].kind;
                if let (Some(v), GlobalKind::Stat { .. }) = (&f.value, kind) {
                    self.err_hint(
                        format!(
                            "`{}` is an array of aggregates: it has no values to assign to `{}`",
                            f.array.name, v.name
                        ),
                        v.span,
                        format!(
                            "write `foreach ([k] in {})` and read `@count({}[k])` etc.",
                            f.array.name, f.array.name
                        ),
                    );
                }
                for v in f.keys.iter().chain(f.value.iter()) {
                    if self.globals.contains_key(&v.name) && !self.is_param(&v.name) {
                        self.err(
                            format!(
                                "`foreach` variable `{}` is a global; use a local name",
                                v.name
                            ),
                            v.span,
                        );
                    } else {
                        self.local_slot(&v.name);
                    }
                }
                if let Some(l) = &f.limit {
                    self.int(l);
                }
                self.loops += 1;
                self.iterating.push(g);
                self.stmt(&f.body);
                self.iterating.pop();
                self.loops -= 1;
            }
            StmtKind::Empty => {}
        }
    }

    /// A write to array `g` (named by `at`): an error inside a `foreach` over it, as in
    /// SystemTap (the kernel walks the array itself at every step, see `otf_codegen`'s
    /// `lower/foreach.rs`).
    fn modifies(&mut self, g: u32, at: &Ident) {
        if self.iterating.contains(&g) {
            self.err(
                format!("variable '{}' modified during 'foreach' iteration", at.name),
                at.span,
            );
        }
    }

    /// `delete x`, `delete a`, `delete a[k]`.
    fn delete(&mut self, e: &Expr) {
        if !self.writable(e.span) {
            return;
        }
        match &e.kind {
            ExprKind::Var(v) => {
                if let Some(&g) = self.globals.get(&v.name) {
                    if !(self.in_function && self.is_param(&v.name)) {
                        self.modifies(g, v);
                        self.info.access.writes.insert(g);
                        return;
                    }
                }
                self.local_slot(&v.name);
            }
            ExprKind::Index { array, keys } => {
                self.keys(keys);
                if let Some(g) = self.map_global(array) {
                    self.modifies(g, array);
                    self.info.access.writes.insert(g);
                }
            }
            _ => {}
        }
    }

    /// The global index of an array or aggregate named `array`; an error if it is not a
    /// global.
    fn map_global(&mut self, array: &Ident) -> Option<u32> {
        match self.globals.get(&array.name) {
            Some(&g) if !(self.in_function && self.is_param(&array.name)) => Some(g),
            _ => {
                self.err_hint(
                    format!(
                        "`{}` is not a global: arrays and aggregates are globals",
                        array.name
                    ),
                    array.span,
                    format!("declare it with `global {}`", array.name),
                );
                None
            }
        }
    }

    /// Array keys: integers (string keys need string values, which otf does not have yet).
    fn keys(&mut self, keys: &[Expr]) {
        for k in keys {
            if self.mode == Mode::Cond && !is_const_int(k) {
                self.err_hint(
                    "array keys in a probe condition must be integer constants",
                    k.span,
                    "conditions are evaluated again after every write; use a constant key",
                );
                continue;
            }
            match self.expr(k) {
                Ty::Int | Ty::Str => {}
                _ => self.err(
                    format!("{} has no value to use as a key", describe(k)),
                    k.span,
                ),
            }
        }
    }

    /// Writes are refused in conditions and `@entry` expressions.
    fn writable(&mut self, span: Span) -> bool {
        match self.mode {
            Mode::Cond => {
                self.err("probe condition must not modify any variables", span);
                false
            }
            Mode::Entry => {
                self.err("@entry expression must not modify any variables", span);
                false
            }
            Mode::Body => true,
        }
    }

    fn block(&mut self, b: &Block) {
        for s in &b.stmts {
            self.stmt(s);
        }
    }

    /// An expression evaluated for its effect: an integer or no value.
    fn effect(&mut self, e: &Expr) {
        let used = matches!(
            e.kind,
            ExprKind::Assign { .. } | ExprKind::IndexAssign { .. } | ExprKind::Call { .. }
        );
        if self.expr(e) == Ty::Str && !used {
            self.err_hint(
                format!("{} is a string and is not used", describe(e)),
                e.span,
                "strings can only be printed: print, println, printf",
            );
        }
    }

    /// An expression whose integer value is needed.
    fn int(&mut self, e: &Expr) {
        let t = self.expr(e);
        self.need_int(e, t);
    }

    /// An expression of type `want` (a string or an integer).
    fn value(&mut self, e: &Expr, want: Ty) {
        let t = self.expr(e);
        match (want, t) {
            (Ty::Str, Ty::Str) => {}
            (Ty::Str, Ty::Int) => self.err_hint(
                format!("{} is an integer, but a string is needed here", describe(e)),
                e.span,
                "convert with sprint(x) or sprintf(\"%d\", x)",
            ),
            (Ty::Str, _) => self.err(format!("{} has no string value", describe(e)), e.span),
            _ => self.need_int(e, t),
        }
    }

    /// The value type of array `name`.
    fn array_ty(&self, name: &str) -> Ty {
        match self.types.global(name) {
            VType::Str => Ty::Str,
            VType::Long => Ty::Int,
        }
    }

    /// The type of a variable read in this scope.
    fn var_ty(&self, name: &str) -> Ty {
        let is_param = self.in_function && self.is_param(name);
        let t = if self.globals.contains_key(name) && !is_param {
            self.types.global(name)
        } else {
            match self.scope {
                Scope::Probe(p) => self.types.probe_local(p, name),
                Scope::Function(f) => self.types.fn_local(f, name),
            }
        };
        match t {
            VType::Str => Ty::Str,
            VType::Long => Ty::Int,
        }
    }

    /// `e`, of type `t`, must be an integer.
    fn need_int(&mut self, e: &Expr, t: Ty) {
        match t {
            Ty::Int => {}
            Ty::Str => self.err_hint(
                format!("{} is a string, but an integer is needed here", describe(e)),
                e.span,
                "strings can only be used as arguments of print, println and printf",
            ),
            Ty::Void => self.err(format!("{} has no value", describe(e)), e.span),
            Ty::Hist => self.err_hint(
                format!(
                    "{} is a histogram, but an integer is needed here",
                    describe(e)
                ),
                e.span,
                "a histogram can only be printed: print(@hist_log(x))",
            ),
        }
    }

    fn expr(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Str(_) => Ty::Str,
            ExprKind::Var(id) => {
                self.read_var(id);
                self.var_ty(&id.name)
            }
            ExprKind::Assign { op, target, value } => {
                let t = self.var_ty(&target.name);
                self.value(value, t);
                if self.check_target(target, e.span) {
                    self.write(target, op.is_some());
                }
                t
            }
            ExprKind::IncDec { target, .. } => {
                if self.check_target(target, e.span) {
                    self.write(target, true);
                }
                Ty::Int
            }
            ExprKind::Binary { op, lhs, rhs } => match op {
                BinOp::Concat => {
                    self.value(lhs, Ty::Str);
                    self.value(rhs, Ty::Str);
                    Ty::Str
                }
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => {
                    let t = self.expr(lhs);
                    if t == Ty::Str {
                        self.value(rhs, Ty::Str);
                    } else {
                        self.need_int(lhs, t);
                        self.int(rhs);
                    }
                    Ty::Int
                }
                _ => {
                    self.int(lhs);
                    self.int(rhs);
                    Ty::Int
                }
            },
            ExprKind::Unary { expr, .. } => {
                self.int(expr);
                Ty::Int
            }
            ExprKind::Ternary { cond, then, els } => {
                self.int(cond);
                let t = self.expr(then);
                if t == Ty::Str {
                    self.value(els, Ty::Str);
                    Ty::Str
                } else {
                    self.need_int(then, t);
                    self.int(els);
                    Ty::Int
                }
            }
            ExprKind::Entry(inner) => {
                match self.mode {
                    Mode::Cond => {
                        self.err(
                            "probe condition may only reference global variables",
                            e.span,
                        );
                        return Ty::Int;
                    }
                    Mode::Entry => {
                        self.err("@entry cannot be nested", e.span);
                        return Ty::Int;
                    }
                    Mode::Body => {}
                }
                if self.in_function {
                    self.err_hint(
                        "@entry is not supported inside functions",
                        e.span,
                        "use @entry directly in the .return probe body",
                    );
                    return Ty::Int;
                }
                self.info.entries += 1;
                if self.info.entries == MAX_ENTRY_SLOTS + 1 {
                    self.err(
                        format!("more than {MAX_ENTRY_SLOTS} @entry expressions in one probe"),
                        e.span,
                    );
                }
                self.info.uses.push((Use::RetVal, e.span));
                self.mode = Mode::Entry;
                self.int(inner);
                self.mode = Mode::Body;
                Ty::Int
            }
            ExprKind::Call { name, args } => self.call(e, name, args),
            _ => self.map_expr(e),
        }
    }

    /// Arrays and statistics (kept out of [`Walker::expr`] so that its stack frame, which
    /// deep expressions multiply, stays small).
    #[inline(never)]
    fn map_expr(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Index { array, keys } | ExprKind::In { array, keys } => {
                if self.mode == Mode::Entry {
                    self.err("@entry may not read arrays", e.span);
                    return Ty::Int;
                }
                self.keys(keys);
                if let Some(g) = self.map_global(array) {
                    self.info.access.reads.insert(g);
                }
                if matches!(e.kind, ExprKind::Index { .. }) && self.array_ty(&array.name) == Ty::Str
                {
                    Ty::Str
                } else {
                    Ty::Int
                }
            }
            ExprKind::IndexAssign {
                array,
                keys,
                value,
                op,
            } => {
                let t = self.array_ty(&array.name);
                if self.writable(e.span) {
                    self.keys(keys);
                    self.value(value, t);
                    if let Some(g) = self.map_global(array) {
                        self.modifies(g, array);
                        self.info.access.writes.insert(g);
                        if op.is_some() {
                            self.info.access.reads.insert(g);
                        }
                    }
                }
                t
            }
            ExprKind::IndexIncDec { array, keys, .. } => {
                if self.writable(e.span) {
                    self.keys(keys);
                    if let Some(g) = self.map_global(array) {
                        self.modifies(g, array);
                        self.info.access.writes.insert(g);
                        self.info.access.reads.insert(g);
                    }
                }
                Ty::Int
            }
            ExprKind::Aggregate {
                target,
                keys,
                value,
            } => {
                if self.writable(e.span) {
                    self.keys(keys);
                    self.int(value);
                    if let Some(g) = self.map_global(target) {
                        self.modifies(g, target);
                        self.info.access.writes.insert(g);
                    }
                }
                Ty::Void
            }
            ExprKind::Stat {
                op, target, keys, ..
            } => {
                if self.mode != Mode::Body {
                    self.err(format!("`@{}` cannot be used here", op.name()), e.span);
                    return Ty::Int;
                }
                self.keys(keys);
                if let Some(g) = self.map_global(target) {
                    self.info.access.reads.insert(g);
                }
                Ty::Int
            }
            ExprKind::Hist { target, keys, .. } => {
                if self.mode != Mode::Body {
                    self.err("a histogram cannot be used here", e.span);
                    return Ty::Hist;
                }
                self.keys(keys);
                if let Some(g) = self.map_global(target) {
                    self.info.access.reads.insert(g);
                }
                Ty::Hist
            }
            _ => Ty::Int,
        }
    }

    fn read_var(&mut self, id: &Ident) {
        let name = &id.name;
        let is_global = self.globals.contains_key(name);
        if is_global && !(self.in_function && self.is_param(name)) {
            let g = self.globals[name];
            self.info.access.reads.insert(g);
            return;
        }
        match self.mode {
            Mode::Cond => {
                self.err(
                    format!(
                        "probe condition may only reference global variables (`{name}` is not a global)"
                    ),
                    id.span,
                );
                return;
            }
            Mode::Entry => {
                self.err(
                    format!("@entry may only use globals, constants and context functions (`{name}` is a local)"),
                    id.span,
                );
                return;
            }
            Mode::Body => {}
        }
        if self.in_function && self.is_param(name) {
            return;
        }
        if !self.assigned.contains(name) {
            if self.is_callable(name) {
                self.err_hint(
                    format!("`{name}` is a function, not a variable"),
                    id.span,
                    format!("call it as `{name}(...)`"),
                );
                return;
            }
            if self.warned.insert(name.clone()) {
                self.diags.push(
                    Diagnostic::warning(
                        format!("variable `{name}` is read but never assigned; it reads as 0"),
                        id.span,
                    )
                    .with_hint(format!(
                        "declare it with `global {name}` if it should be shared between probes"
                    )),
                );
            }
        }
        self.local_slot(name);
    }

    fn call(&mut self, e: &Expr, name: &Ident, args: &[Expr]) -> Ty {
        if self.mode == Mode::Cond {
            self.err(
                format!(
                    "probe condition may only reference global variables (found a call of `{}()`)",
                    name.name
                ),
                e.span,
            );
            return Ty::Int;
        }
        if let Some(&f) = self.functions.get(&name.name) {
            if self.mode == Mode::Entry {
                self.err("@entry may not call script functions", e.span);
                return Ty::Int;
            }
            let want = self.script.functions[f].params.len();
            if args.len() != want {
                self.err(
                    format!(
                        "function `{}` takes {want} argument{}, got {}",
                        name.name,
                        if want == 1 { "" } else { "s" },
                        args.len()
                    ),
                    e.span,
                );
            }
            for (a, p) in args.iter().zip(&self.script.functions[f].params) {
                let t = match self.types.fn_local(f, &p.name) {
                    VType::Str => Ty::Str,
                    VType::Long => Ty::Int,
                };
                self.value(a, t);
            }
            self.info.calls.push((f, e.span));
            if !self.iterating.is_empty() {
                self.info
                    .iter_calls
                    .push((f, name.span, self.iterating.clone()));
            }
            return match self.types.fn_ret(f) {
                VType::Str => Ty::Str,
                VType::Long => Ty::Int,
            };
        }
        let Some((b, min, max)) = builtin(&name.name) else {
            if let Some(hint) = not_yet(&name.name) {
                self.err_hint(
                    format!("`{}` is not supported yet", name.name),
                    name.span,
                    hint,
                );
                return Ty::Int;
            }
            self.err(format!("unknown function `{}`", name.name), name.span);
            for a in args {
                self.expr(a);
            }
            return Ty::Int;
        };
        if args.len() < min || max.is_some_and(|m| args.len() > m) {
            let want = match max {
                Some(m) if m == min => format!("{m} argument{}", if m == 1 { "" } else { "s" }),
                Some(m) => format!("{min} to {m} arguments"),
                None => format!("at least {min} argument{}", if min == 1 { "" } else { "s" }),
            };
            self.err(
                format!("`{}` takes {want}, got {}", name.name, args.len()),
                e.span,
            );
            for a in args {
                self.expr(a);
            }
            return if b.is_void() { Ty::Void } else { Ty::Int };
        }
        if self.mode == Mode::Entry && (b.is_void() || b == Builtin::Ctx(Ctx::RetVal)) {
            self.err(
                format!("`{}()` cannot be used inside @entry", name.name),
                e.span,
            );
            return Ty::Int;
        }
        match b {
            Builtin::Printf => {
                self.printf(e, args, false);
                Ty::Void
            }
            Builtin::Print | Builtin::Println => {
                // The bytes of the output record, counting a histogram's key as a string:
                // a kernel body copies a histogram's buckets into it.
                let mut bytes = 0usize;
                let mut hist = false;
                for a in args {
                    let t = self.expr(a);
                    if t == Ty::Void {
                        self.err(format!("{} has no value to print", describe(a)), a.span);
                    }
                    bytes += match &a.kind {
                        ExprKind::Hist { kind, keys, .. } => {
                            hist = true;
                            let words = match *kind {
                                HistKind::Log => crate::bytecode::HIST_LOG_BUCKETS,
                                HistKind::Linear { lo, hi, step } => {
                                    usize::try_from(hi.saturating_sub(lo) / step.max(1) + 3)
                                        .unwrap_or(usize::MAX / 16)
                                }
                            };
                            8 * words + MAXSTRINGLEN * keys.len()
                        }
                        _ if t == Ty::Str => MAXSTRINGLEN,
                        _ => 8,
                    };
                }
                if hist && bytes > crate::memdump::MAX_RECORD_ARG_BYTES {
                    self.info.uses.push((
                        Use::UserOnly(
                            "printing histograms with more than the 1280 bytes of an output record (1024 for a `@hist_log`, 8 a bucket for a `@hist_linear`, 128 a key or string, 8 a number)",
                        ),
                        e.span,
                    ));
                }
                Ty::Void
            }
            Builtin::Exit => Ty::Void,
            Builtin::Randint => {
                self.int(&args[0]);
                Ty::Int
            }
            Builtin::Ctx(c) => {
                if c == Ctx::RetVal {
                    self.info.uses.push((Use::RetVal, e.span));
                }
                Ty::Int
            }
            Builtin::TimeDiv(_) => Ty::Int,
            Builtin::Arg(_) => {
                match args[0].kind {
                    ExprKind::Int(n) if (1..=MAX_ARG_NUMBER).contains(&n) => {}
                    _ => self.err(
                        format!(
                            "the argument of `{}` must be an integer constant from 1 to {MAX_ARG_NUMBER}",
                            name.name
                        ),
                        args[0].span,
                    ),
                }
                self.info.uses.push((
                    Use::FuncCtx("int_arg/long_arg/ulong_arg/pointer_arg"),
                    e.span,
                ));
                Ty::Int
            }
            Builtin::Probefunc => {
                self.info.uses.push((Use::FuncCtx("probefunc()"), e.span));
                Ty::Str
            }
            Builtin::Execname | Builtin::Pp => Ty::Str,
            Builtin::Sprintf => {
                self.printf(e, args, true);
                Ty::Str
            }
            Builtin::Str(f) => {
                let (params, ret_str) = f.signature();
                for (a, &is_str) in args.iter().zip(params) {
                    self.value(a, if is_str { Ty::Str } else { Ty::Int });
                }
                if ret_str {
                    Ty::Str
                } else {
                    Ty::Int
                }
            }
            Builtin::ReadStr(f) => {
                for (i, a) in args.iter().enumerate() {
                    self.value(a, if i < f.nints() { Ty::Int } else { Ty::Str });
                }
                if f.read.warn {
                    self.info.uses.push((
                        Use::UserOnly(
                            "`user_string_warn` and `user_string_n_warn` (their warnings)",
                        ),
                        e.span,
                    ));
                }
                Ty::Str
            }
        }
    }

    /// The source span of bytes `off..off+len` of a string literal's decoded text (escapes
    /// mapped back to the source); the whole literal if the mapping fails.
    fn in_literal(&self, lit: &Expr, s: &str, off: usize, len: usize) -> Span {
        let src = self
            .file
            .text()
            .get(lit.span.lo as usize..lit.span.hi as usize)
            .unwrap_or("");
        let Some(inner) = src.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
            return lit.span;
        };
        // Source offset (within `inner`) of every decoded byte offset, plus the end.
        let b = inner.as_bytes();
        let mut map = Vec::with_capacity(s.len() + 1);
        let mut i = 0;
        while i < b.len() {
            let start = i;
            let decoded_len = if b[i] == b'\\' {
                i += 1;
                match b.get(i) {
                    Some(b'0'..=b'7') => {
                        let mut k = 0;
                        while k < 3 && matches!(b.get(i), Some(b'0'..=b'7')) {
                            i += 1;
                            k += 1;
                        }
                    }
                    Some(b'x') => {
                        i += 1;
                        let mut k = 0;
                        while k < 2 && b.get(i).is_some_and(u8::is_ascii_hexdigit) {
                            i += 1;
                            k += 1;
                        }
                    }
                    Some(_) => i += 1,
                    None => return lit.span,
                }
                1
            } else {
                let ch = inner[i..].chars().next().map_or(1, char::len_utf8);
                i += ch;
                ch
            };
            for _ in 0..decoded_len {
                map.push(start);
            }
        }
        map.push(b.len());
        if map.len() != s.len() + 1 {
            return lit.span;
        }
        let base = lit.span.lo as usize + 1;
        let lo = map.get(off).copied().unwrap_or(0);
        let hi = map.get(off + len).copied().unwrap_or(b.len()).max(lo + 1);
        Span::new(base + lo, base + hi.min(b.len()))
    }

    /// `printf(FMT, ...)`, or `sprintf` when `sprintf` is set.
    fn printf(&mut self, call: &Expr, args: &[Expr], sprintf: bool) {
        let fmt_arg = &args[0];
        let ExprKind::Str(fmt) = &fmt_arg.kind else {
            self.err_hint(
                "the first argument of `printf` must be a string literal (the format)",
                fmt_arg.span,
                "e.g. printf(\"%d\\n\", x)",
            );
            for a in &args[1..] {
                self.expr(a);
            }
            return;
        };
        let items = match parse_printf(fmt) {
            Ok(items) => items,
            Err(err) => {
                let len = err.message.len().min(2);
                let span = self.in_literal(fmt_arg, fmt, err.offset, len.max(2));
                self.err(err.message, span);
                for a in &args[1..] {
                    self.expr(a);
                }
                return;
            }
        };
        // The arguments the format takes, in order: each conversion's `*` width and `.*`
        // precision (integers), then its value.
        struct Slot<'t> {
            /// What the argument is for, e.g. "`%d`" or "the `*` width of `%*d`".
            what: String,
            /// The conversion as written.
            text: &'t str,
            offset: usize,
            /// A `*` width or `.*` precision rather than the value.
            dynamic: bool,
            string: bool,
        }
        let mut slots = Vec::new();
        let mut nconvs = 0;
        for item in &items {
            let FmtItem::Conv { spec, offset, text } = item else {
                continue;
            };
            nconvs += 1;
            if sprintf && matches!(spec.conv, b'b' | b'm' | b'M') {
                let span = self.in_literal(fmt_arg, fmt, *offset, text.len());
                self.err_hint(
                    format!(
                        "`sprintf` conversion `{text}` is not supported yet (binary output and memory dumps are printed by `printf` only)"
                    ),
                    span,
                    "print it with printf, or format the value with %d or %x",
                );
            }
            let dynamic = |what: &str| Slot {
                what: format!("the {what} of `{text}`"),
                text,
                offset: *offset,
                dynamic: true,
                string: false,
            };
            if spec.star_width {
                slots.push(dynamic("`*` width"));
            }
            if spec.star_prec {
                slots.push(dynamic("`.*` precision"));
            }
            slots.push(Slot {
                what: format!("`{text}`"),
                text,
                offset: *offset,
                dynamic: false,
                string: spec.conv == b's',
            });
        }
        // "the format has 2 conversions", or "... taking 3 arguments" with `*`.
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let has = if slots.len() == nconvs {
            plural(nconvs, "conversion", "conversions")
        } else {
            format!(
                "{} taking {}",
                plural(nconvs, "conversion", "conversions"),
                plural(slots.len(), "argument", "arguments")
            )
        };
        let rest = &args[1..];
        for (k, a) in rest.iter().enumerate() {
            let ty = self.expr(a);
            let Some(slot) = slots.get(k) else {
                if k == slots.len() {
                    self.err(
                        format!("too many arguments for printf: the format has {has}"),
                        a.span,
                    );
                }
                continue;
            };
            let what = &slot.what;
            match (slot.string, ty) {
                (_, Ty::Void) => self.err(format!("{} has no value to print", describe(a)), a.span),
                (_, Ty::Hist) => self.err_hint(
                    format!(
                        "{} is a histogram and cannot be formatted by {what}",
                        describe(a)
                    ),
                    a.span,
                    "print it on its own: print(@hist_log(x))",
                ),
                (true, Ty::Int) => self.err(
                    format!(
                        "{what} needs a string argument, but {} is an integer",
                        describe(a)
                    ),
                    a.span,
                ),
                (false, Ty::Str) if slot.dynamic => self.err(
                    format!(
                        "{what} needs an integer argument, but {} is a string",
                        describe(a)
                    ),
                    a.span,
                ),
                (false, Ty::Str) => self.err_hint(
                    format!(
                        "{what} needs an integer argument, but {} is a string",
                        describe(a)
                    ),
                    a.span,
                    "use %s to print a string",
                ),
                _ => {}
            }
        }
        if let Some(slot) = slots.get(rest.len()) {
            let span = self.in_literal(fmt_arg, fmt, slot.offset, slot.text.len());
            let _ = call;
            self.err(
                format!(
                    "printf format has {has} but {} given: nothing for {}",
                    plural(rest.len(), "argument is", "arguments are"),
                    slot.what,
                ),
                span,
            );
        }
    }
}

/// Where a body using user-space-only constructs may run: `begin` and `end`, and periodic
/// timers (`timer.ms(N)` and friends), whose kernel hit hands the body to user space.
fn runs_in_user_space(k: &PointKind) -> bool {
    matches!(
        k,
        PointKind::Begin | PointKind::End | PointKind::Timer { .. }
    )
}

/// Check a parsed script: see the module documentation.
pub fn check(file: &SourceFile, script: &Script) -> Checked {
    let mut diags = Vec::new();

    // Globals.
    let mut globals = Vec::new();
    let mut global_index = HashMap::new();
    for g in &script.globals {
        if global_index.contains_key(&g.name.name) {
            diags.push(Diagnostic::error(
                format!("duplicate global `{}`", g.name.name),
                g.name.span,
            ));
            continue;
        }
        let init_str = match &g.init {
            Some(Expr {
                kind: ExprKind::Str(t),
                ..
            }) => Some(t.clone()),
            _ => None,
        };
        let init = match &g.init {
            None => 0,
            Some(e) => match &e.kind {
                ExprKind::Int(n) => *n,
                ExprKind::Str(_) => 0,
                ExprKind::Unary {
                    op: UnOp::Neg,
                    expr,
                } if matches!(expr.kind, ExprKind::Int(_)) => match expr.kind {
                    ExprKind::Int(n) => n.wrapping_neg(),
                    _ => 0,
                },
                ExprKind::Unary {
                    op: UnOp::Plus,
                    expr,
                } if matches!(expr.kind, ExprKind::Int(_)) => match expr.kind {
                    ExprKind::Int(n) => n,
                    _ => 0,
                },
                _ => {
                    diags.push(
                        Diagnostic::error(
                            format!(
                                "the initialiser of global `{}` must be an integer constant",
                                g.name.name
                            ),
                            e.span,
                        )
                        .with_hint("write a literal such as `5`, `-1` or `\"text\"`"),
                    );
                    0
                }
            },
        };
        if globals.len() == MAX_GLOBALS {
            diags.push(Diagnostic::error(
                format!("more than {MAX_GLOBALS} globals"),
                g.name.span,
            ));
        }
        let size = g.size.as_ref().and_then(|e| match e.kind {
            ExprKind::Int(n) if n > 0 && n <= i64::from(u32::MAX) => Some(n as u32),
            _ => {
                diags.push(
                    Diagnostic::error(
                        format!(
                            "the size of array `{}` must be a positive integer constant",
                            g.name.name
                        ),
                        e.span,
                    )
                    .with_hint("write e.g. `global a[1000]`"),
                );
                None
            }
        });
        global_index.insert(g.name.name.clone(), globals.len() as u32);
        globals.push(GlobalInfo {
            name: g.name.name.clone(),
            init,
            kind: GlobalKind::Scalar,
            size,
            wrap: g.wrap,
            hist: HistSpec::default(),
            str_value: false,
            str_keys: 0,
            init_str,
            read: false,
            written: false,
            span: g.span,
        });
    }
    crate::kinds::infer(file, script, &global_index, &mut globals, &mut diags);
    for g in &globals {
        if g.kind.is_map() && g.init != 0 {
            diags.push(Diagnostic::error(
                format!("array `{}` cannot have an initial value", g.name),
                g.span,
            ));
        }
    }

    // Functions.
    let mut function_index = HashMap::new();
    for (i, f) in script.functions.iter().enumerate() {
        if builtin(&f.name.name).is_some() {
            diags.push(Diagnostic::error(
                format!(
                    "function `{}` has the name of a built-in function",
                    f.name.name
                ),
                f.name.span,
            ));
            continue;
        }
        if function_index.contains_key(&f.name.name) {
            diags.push(Diagnostic::error(
                format!("duplicate function `{}`", f.name.name),
                f.name.span,
            ));
            continue;
        }
        function_index.insert(f.name.name.clone(), i);
    }

    let types = crate::types::infer(file, script, &global_index, &function_index, &mut diags);
    for g in globals.iter_mut() {
        g.str_value = types.global(&g.name) == VType::Str;
        for k in 0..g.kind.keys() {
            if types.key(&g.name, k) == VType::Str {
                g.str_keys |= 1 << k;
            }
        }
    }
    let mut fn_infos = Vec::new();
    for (fi, f) in script.functions.iter().enumerate() {
        let mut w = walker(
            file,
            &global_index,
            &globals,
            &types,
            Scope::Function(fi),
            &function_index,
            script,
            &mut diags,
        );
        w.in_function = true;
        let mut seen = HashSet::new();
        for p in &f.params {
            if !seen.insert(p.name.clone()) {
                w.err(
                    format!(
                        "duplicate parameter `{}` of function `{}`",
                        p.name, f.name.name
                    ),
                    p.span,
                );
            }
            w.info.locals.push(p.name.clone());
            w.param_names.push(p.name.clone());
        }
        f.body
            .stmts
            .iter()
            .for_each(|s| collect_assigned_stmt(s, &mut w.assigned));
        w.block(&f.body);
        fn_infos.push(w.info);
    }

    // Recursion and transitive summaries.
    let nf = script.functions.len();
    // Colours: 0 unvisited, 1 on the current path, 2 done. A call to a function on the path
    // closes a cycle; each cycle is reported once, at the call that closes it.
    let mut colour = vec![0u8; nf];
    let mut post_order = Vec::with_capacity(nf);
    for start in 0..nf {
        if colour[start] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        colour[start] = 1;
        while let Some(&mut (f, ref mut k)) = path.last_mut() {
            if let Some(&(g, span)) = fn_infos[f].calls.get(*k) {
                *k += 1;
                match colour[g] {
                    0 => {
                        colour[g] = 1;
                        path.push((g, 0));
                    }
                    1 => diags.push(Diagnostic::error(
                        format!(
                            "recursive function call `{}` is not supported (functions are inlined)",
                            script.functions[g].name.name
                        ),
                        span,
                    )),
                    _ => {}
                }
            } else {
                colour[f] = 2;
                post_order.push(f);
                path.pop();
            }
        }
    }
    // Transitive summaries, callees first (post-order of the DFS above; on a cycle, already
    // reported, a summary may be partial).
    let mut function_access: Vec<Access> = vec![Access::default(); nf];
    let mut function_uses: Vec<Vec<Use>> = vec![Vec::new(); nf];
    for &f in &post_order {
        let mut acc = fn_infos[f].access.clone();
        let mut uses: Vec<Use> = Vec::new();
        let callee_uses = fn_infos[f]
            .calls
            .iter()
            .flat_map(|&(g, _)| &function_uses[g]);
        for &u in fn_infos[f].uses.iter().map(|(u, _)| u).chain(callee_uses) {
            if !uses.contains(&u) {
                uses.push(u);
            }
        }
        for &(g, _) in &fn_infos[f].calls {
            acc.merge(&function_access[g]);
        }
        function_access[f] = acc;
        function_uses[f] = uses;
    }
    // A function called inside a `foreach` must not write the array iterated (SystemTap
    // checks the function's own writes; otf its callees' too, as it inlines them).
    let iter_call_errors = |info: &BodyInfo, diags: &mut Vec<Diagnostic>| {
        for (f, span, iterating) in &info.iter_calls {
            for &g in iterating {
                if function_access[*f].writes.contains(&g) {
                    diags.push(Diagnostic::error(
                        format!(
                            "function call modifies var '{}' during 'foreach' iteration",
                            globals[g as usize].name
                        ),
                        *span,
                    ));
                }
            }
        }
    };
    for info in &fn_infos {
        iter_call_errors(info, &mut diags);
    }
    let closure = |direct: &BodyInfo| -> (Access, Vec<(Use, Span, Option<String>)>) {
        let mut acc = direct.access.clone();
        let mut uses: Vec<(Use, Span, Option<String>)> =
            direct.uses.iter().map(|&(u, s)| (u, s, None)).collect();
        for &(g, site) in &direct.calls {
            acc.merge(&function_access[g]);
            for &u in &function_uses[g] {
                uses.push((u, site, Some(script.functions[g].name.name.clone())));
            }
        }
        (acc, uses)
    };

    // Probes.
    let mut units = Vec::new();
    let mut probe_locals = Vec::new();
    let mut probe_access = Vec::new();
    for (pi, p) in script.probes.iter().enumerate() {
        let mut kinds = Vec::new();
        for (ci, spec) in p.points.iter().enumerate() {
            let point = match interpret(&spec.point) {
                Ok(k) => k,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            let mut cond_reads = BTreeSet::new();
            if let Some(c) = &spec.cond {
                let mut w = walker(
                    file,
                    &global_index,
                    &globals,
                    &types,
                    Scope::Probe(pi),
                    &function_index,
                    script,
                    &mut diags,
                );
                w.mode = Mode::Cond;
                w.int(c);
                cond_reads = w.info.access.reads;
            }
            kinds.push(point.clone());
            units.push(UnitInfo {
                probe: pi,
                component: ci,
                point,
                point_span: spec.point.span,
                optional: spec.optional,
                has_cond: spec.cond.is_some(),
                cond_reads,
            });
        }
        let mut w = walker(
            file,
            &global_index,
            &globals,
            &types,
            Scope::Probe(pi),
            &function_index,
            script,
            &mut diags,
        );
        p.body
            .stmts
            .iter()
            .for_each(|s| collect_assigned_stmt(s, &mut w.assigned));
        w.block(&p.body);
        let info = w.info;
        iter_call_errors(&info, &mut diags);
        let (access, uses) = closure(&info);
        let mut reported_uses = HashSet::new();
        for (u, span, via) in uses {
            let (ok, what, need) = match u {
                Use::RetVal => (
                    kinds.iter().all(PointKind::is_return),
                    "`returnval()` and `@entry`",
                    "`.return` probes of kernel.function or process.function",
                ),
                Use::FuncCtx(what) => (
                    kinds.iter().all(PointKind::is_function_probe),
                    what,
                    "function probes (kernel.function, process.function)",
                ),
                Use::UserOnly(what) => (
                    kinds.iter().all(runs_in_user_space),
                    what,
                    "`begin`, `end` and `timer` probes for now (their bodies run in user space)",
                ),
            };
            if ok || !reported_uses.insert((span, what)) {
                continue;
            }
            let msg = match via {
                None => format!("{what}: only available in {need}"),
                Some(f) => format!("function `{f}` uses {what}, which is only available in {need}"),
            };
            let bad = kinds
                .iter()
                .find(|k| match u {
                    Use::RetVal => !k.is_return(),
                    Use::FuncCtx(_) => !k.is_function_probe(),
                    Use::UserOnly(_) => !runs_in_user_space(k),
                })
                .map(|k| format!("this probe includes `{k}`"));
            let mut d = Diagnostic::error(msg, span);
            if let Some(h) = bad {
                d = d.with_hint(h);
            }
            diags.push(d);
        }
        probe_locals.push(info.locals);
        probe_access.push(access);
    }

    // One error per place: a type mismatch found by inference is not repeated by the walker.
    let mut at = HashSet::new();
    diags.retain(|d| !d.is_error() || at.insert(d.span.lo));
    Checked {
        script: script.clone(),
        globals,
        units,
        probe_locals,
        function_locals: fn_infos.into_iter().map(|i| i.locals).collect(),
        probe_access,
        function_access,
        types,
        diags,
        global_index,
        function_index,
    }
}
