//! Type inference, as SystemTap does it: every variable, array key and value, and function
//! result is a `long` or a `string`, found from how it is used (`x = "a"`, `x . y`,
//! `execname()`, `:string` annotations) by iterating to a fixed point; what nothing decides
//! is a `long`. Uses that disagree are errors naming the first use.

use std::collections::HashMap;

use crate::ast::{BinOp, Expr, ExprKind, Script, Span, Stmt, StmtKind, TypeAnn};
use crate::diag::{Diagnostic, SourceFile};

/// The type of a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VType {
    /// A 64-bit integer.
    #[default]
    Long,
    /// A string (at most MAXSTRINGLEN - 1 bytes).
    Str,
}

impl VType {
    fn name(self) -> &'static str {
        match self {
            VType::Long => "a long",
            VType::Str => "a string",
        }
    }

    fn of(a: TypeAnn) -> VType {
        match a {
            TypeAnn::Long => VType::Long,
            TypeAnn::String => VType::Str,
        }
    }
}

/// Something that has a type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Var {
    Global(String),
    ProbeLocal(usize, String),
    FnLocal(usize, String),
    FnRet(usize),
    Key(String, usize),
}

/// The inferred types of a script.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Types {
    globals: HashMap<String, VType>,
    keys: HashMap<(String, usize), VType>,
    probe_locals: HashMap<(usize, String), VType>,
    fn_locals: HashMap<(usize, String), VType>,
    fn_ret: HashMap<usize, VType>,
}

impl Types {
    /// A global scalar's type, or an array's value type.
    pub fn global(&self, name: &str) -> VType {
        self.globals.get(name).copied().unwrap_or_default()
    }

    /// The type of key `i` of array `name`.
    pub fn key(&self, name: &str, i: usize) -> VType {
        self.keys
            .get(&(name.to_string(), i))
            .copied()
            .unwrap_or_default()
    }

    /// The type of local `name` of probe statement `probe`.
    pub fn probe_local(&self, probe: usize, name: &str) -> VType {
        self.probe_locals
            .get(&(probe, name.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// The type of local or parameter `name` of function `f`.
    pub fn fn_local(&self, f: usize, name: &str) -> VType {
        self.fn_locals
            .get(&(f, name.to_string()))
            .copied()
            .unwrap_or_default()
    }

    /// The result type of function `f`.
    pub fn fn_ret(&self, f: usize) -> VType {
        self.fn_ret.get(&f).copied().unwrap_or_default()
    }
}

#[derive(Clone, Copy)]
enum Scope {
    Probe(usize),
    Function(usize),
}

struct Infer<'a> {
    script: &'a Script,
    globals: &'a HashMap<String, u32>,
    functions: &'a HashMap<String, usize>,
    env: HashMap<Var, (VType, Span)>,
    changed: bool,
    conflicts: Vec<(Span, String)>,
    scope: Scope,
}

impl Infer<'_> {
    fn var(&self, name: &str) -> Var {
        match self.scope {
            Scope::Function(f) => {
                let func = &self.script.functions[f];
                if func.params.iter().any(|p| p.name == name) {
                    Var::FnLocal(f, name.to_string())
                } else if self.globals.contains_key(name) {
                    Var::Global(name.to_string())
                } else {
                    Var::FnLocal(f, name.to_string())
                }
            }
            Scope::Probe(p) => {
                if self.globals.contains_key(name) {
                    Var::Global(name.to_string())
                } else {
                    Var::ProbeLocal(p, name.to_string())
                }
            }
        }
    }

    fn get(&self, v: &Var) -> Option<VType> {
        self.env.get(v).map(|&(t, _)| t)
    }

    fn set(&mut self, v: Var, t: VType, span: Span, what: &dyn Fn() -> String) {
        match self.env.get(&v) {
            Some(&(old, _)) if old == t => {}
            Some(&(old, first)) => {
                let _ = first;
                self.conflicts.push((
                    span,
                    format!(
                        "type mismatch: {} is {} here but {} elsewhere",
                        what(),
                        t.name(),
                        old.name()
                    ),
                ));
            }
            None => {
                self.env.insert(v, (t, span));
                self.changed = true;
            }
        }
    }

    /// What an expression stands for, when it can be given a type from outside.
    fn slot_of(&self, e: &Expr) -> Option<(Var, String)> {
        match &e.kind {
            ExprKind::Var(id) => Some((self.var(&id.name), format!("`{}`", id.name))),
            ExprKind::Index { array, .. } => Some((
                Var::Global(array.name.clone()),
                format!("`{}[...]`", array.name),
            )),
            ExprKind::Call { name, .. } => self
                .functions
                .get(&name.name)
                .map(|&f| (Var::FnRet(f), format!("the result of `{}`", name.name))),
            _ => None,
        }
    }

    /// `e` must have type `t` (a hint to the variables it reads).
    fn want(&mut self, e: &Expr, t: VType) {
        if let Some((v, what)) = self.slot_of(e) {
            self.set(v, t, e.span, &|| what.clone());
        }
    }

    fn keys(&mut self, array: &str, keys: &[Expr]) {
        for (i, k) in keys.iter().enumerate() {
            let kv = Var::Key(array.to_string(), i);
            match (self.expr(k), self.get(&kv)) {
                (Some(t), _) => self.set(kv, t, k.span, &|| format!("key {} of `{array}`", i + 1)),
                (None, Some(t)) => self.want(k, t),
                (None, None) => {}
            }
        }
    }

    fn assign(&mut self, target: Var, what: String, value: &Expr, span: Span) -> Option<VType> {
        match (self.expr(value), self.get(&target)) {
            (Some(t), _) => {
                self.set(target, t, span, &|| what.clone());
                Some(t)
            }
            (None, Some(t)) => {
                self.want(value, t);
                Some(t)
            }
            (None, None) => None,
        }
    }

    /// `target OP= value` (`op` `None` for `=`): `.=` makes both strings, the other compound
    /// operators longs.
    fn assign_op(
        &mut self,
        target: Var,
        what: String,
        op: Option<BinOp>,
        value: &Expr,
        span: Span,
    ) -> Option<VType> {
        let t = match op {
            None => return self.assign(target, what, value, span),
            Some(BinOp::Concat) => VType::Str,
            Some(_) => VType::Long,
        };
        self.set(target, t, span, &|| what.clone());
        self.expr(value);
        self.want(value, t);
        Some(t)
    }

    fn expr(&mut self, e: &Expr) -> Option<VType> {
        use VType::*;
        match &e.kind {
            ExprKind::Int(_) => Some(Long),
            ExprKind::Str(_) => Some(Str),
            ExprKind::Var(id) => {
                let v = self.var(&id.name);
                self.get(&v)
            }
            ExprKind::Assign { op, target, value } => {
                let v = self.var(&target.name);
                self.assign_op(v, format!("`{}`", target.name), *op, value, e.span)
            }
            ExprKind::IncDec { target, .. } => {
                let v = self.var(&target.name);
                let what = format!("`{}`", target.name);
                self.set(v, Long, e.span, &|| what.clone());
                Some(Long)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (l, r) = (self.expr(lhs), self.expr(rhs));
                match op {
                    BinOp::Concat => {
                        self.want(lhs, Str);
                        self.want(rhs, Str);
                        Some(Str)
                    }
                    BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne => {
                        match (l, r) {
                            (Some(t), None) => self.want(rhs, t),
                            (None, Some(t)) => self.want(lhs, t),
                            _ => {}
                        }
                        Some(Long)
                    }
                    _ => {
                        self.want(lhs, Long);
                        self.want(rhs, Long);
                        Some(Long)
                    }
                }
            }
            ExprKind::Unary { expr, .. } => {
                self.expr(expr);
                self.want(expr, Long);
                Some(Long)
            }
            ExprKind::Ternary { cond, then, els } => {
                self.expr(cond);
                let (a, b) = (self.expr(then), self.expr(els));
                match (a, b) {
                    (Some(t), None) => {
                        self.want(els, t);
                        Some(t)
                    }
                    (None, Some(t)) => {
                        self.want(then, t);
                        Some(t)
                    }
                    (a, _) => a,
                }
            }
            ExprKind::Entry(inner) => self.expr(inner),
            ExprKind::Call { name, args } => {
                let arg_types: Vec<Option<VType>> = args.iter().map(|a| self.expr(a)).collect();
                if let Some(&f) = self.functions.get(&name.name) {
                    let func = &self.script.functions[f];
                    for (i, (p, a)) in func.params.iter().zip(args).enumerate() {
                        let pv = Var::FnLocal(f, p.name.clone());
                        match (arg_types[i], self.get(&pv)) {
                            (Some(t), _) => {
                                let pname = p.name.clone();
                                let fname = name.name.clone();
                                self.set(pv, t, a.span, &|| {
                                    format!("parameter `{pname}` of `{fname}`")
                                })
                            }
                            (None, Some(t)) => self.want(a, t),
                            _ => {}
                        }
                    }
                    return self.get(&Var::FnRet(f));
                }
                if let Some(f) = crate::bytecode::StrFn::by_name(&name.name) {
                    let (params, ret_str) = f.signature();
                    for (a, &is_str) in args.iter().zip(params) {
                        self.want(a, if is_str { Str } else { Long });
                    }
                    return Some(if ret_str { Str } else { Long });
                }
                if let Some(f) = crate::bytecode::ReadStrFn::by_name(&name.name) {
                    for (i, a) in args.iter().enumerate() {
                        self.want(a, if i < f.nints() { Long } else { Str });
                    }
                    return Some(Str);
                }
                match name.name.as_str() {
                    "execname" | "pp" | "probefunc" | "sprintf" => Some(Str),
                    "printf" | "print" | "println" | "exit" => None,
                    _ => Some(Long),
                }
            }
            ExprKind::Index { array, keys } => {
                self.keys(&array.name, keys);
                self.get(&Var::Global(array.name.clone()))
            }
            ExprKind::IndexAssign {
                op,
                array,
                keys,
                value,
            } => {
                self.keys(&array.name, keys);
                let v = Var::Global(array.name.clone());
                self.assign_op(v, format!("`{}[...]`", array.name), *op, value, e.span)
            }
            ExprKind::IndexIncDec { array, keys, .. } => {
                self.keys(&array.name, keys);
                let what = format!("`{}[...]`", array.name);
                self.set(Var::Global(array.name.clone()), Long, e.span, &|| {
                    what.clone()
                });
                Some(Long)
            }
            ExprKind::In { keys, array } => {
                self.keys(&array.name, keys);
                Some(Long)
            }
            ExprKind::Aggregate {
                target,
                keys,
                value,
            } => {
                self.keys(&target.name, keys);
                self.expr(value);
                self.want(value, Long);
                None
            }
            ExprKind::Stat { target, keys, .. } | ExprKind::Hist { target, keys, .. } => {
                self.keys(&target.name, keys);
                Some(Long)
            }
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match &s.kind {
            StmtKind::Block(b) => b.stmts.iter().for_each(|s| self.stmt(s)),
            StmtKind::If { cond, then, els } => {
                self.expr(cond);
                self.stmt(then);
                if let Some(e) = els {
                    self.stmt(e);
                }
            }
            StmtKind::While { cond, body } => {
                self.expr(cond);
                self.stmt(body);
            }
            StmtKind::For {
                init,
                cond,
                step,
                body,
            } => {
                for e in [init, cond, step].into_iter().flatten() {
                    self.expr(e);
                }
                self.stmt(body);
            }
            StmtKind::Return(Some(e)) => {
                let t = self.expr(e);
                if let Scope::Function(f) = self.scope {
                    match (t, self.get(&Var::FnRet(f))) {
                        (Some(t), _) => {
                            let fname = self.script.functions[f].name.name.clone();
                            self.set(Var::FnRet(f), t, e.span, &|| {
                                format!("the result of `{fname}`")
                            })
                        }
                        (None, Some(t)) => self.want(e, t),
                        _ => {}
                    }
                }
            }
            StmtKind::Expr(e) => {
                self.expr(e);
            }
            StmtKind::Delete(e) => {
                if let ExprKind::Index { array, keys } = &e.kind {
                    self.keys(&array.name, keys);
                }
            }
            StmtKind::Foreach(f) => {
                let array = &f.array.name;
                for (i, k) in f.keys.iter().enumerate() {
                    let kv = Var::Key(array.clone(), i);
                    let lv = self.var(&k.name);
                    match (self.get(&kv), self.get(&lv)) {
                        (Some(t), _) => {
                            let n = k.name.clone();
                            self.set(lv, t, k.span, &|| format!("`{n}`"))
                        }
                        (None, Some(t)) => {
                            self.set(kv, t, k.span, &|| format!("key {} of `{array}`", i + 1))
                        }
                        _ => {}
                    }
                }
                if let Some(v) = &f.value {
                    let av = Var::Global(array.clone());
                    let lv = self.var(&v.name);
                    match (self.get(&av), self.get(&lv)) {
                        (Some(t), _) => {
                            let n = v.name.clone();
                            self.set(lv, t, v.span, &|| format!("`{n}`"))
                        }
                        (None, Some(t)) => self.set(av, t, v.span, &|| format!("`{array}[...]`")),
                        _ => {}
                    }
                }
                if let Some(l) = &f.limit {
                    self.expr(l);
                }
                self.stmt(&f.body);
            }
            StmtKind::Return(None)
            | StmtKind::Break
            | StmtKind::Continue
            | StmtKind::Next
            | StmtKind::Empty => {}
        }
    }
}

/// Infer the types of `script`; conflicting uses are reported into `diags`.
pub fn infer(
    file: &SourceFile,
    script: &Script,
    globals: &HashMap<String, u32>,
    functions: &HashMap<String, usize>,
    diags: &mut Vec<Diagnostic>,
) -> Types {
    let _ = file;
    let mut inf = Infer {
        script,
        globals,
        functions,
        env: HashMap::new(),
        changed: true,
        conflicts: Vec::new(),
        scope: Scope::Probe(0),
    };
    for (f, func) in script.functions.iter().enumerate() {
        if let Some(t) = func.ret_type {
            inf.env
                .insert(Var::FnRet(f), (VType::of(t), func.name.span));
        }
        for (p, t) in func.params.iter().zip(&func.param_types) {
            if let Some(t) = t {
                inf.env
                    .insert(Var::FnLocal(f, p.name.clone()), (VType::of(*t), p.span));
            }
        }
    }
    for g in &script.globals {
        if let Some(init) = &g.init {
            if matches!(init.kind, ExprKind::Str(_)) {
                inf.env
                    .insert(Var::Global(g.name.name.clone()), (VType::Str, init.span));
            }
        }
    }
    let mut rounds = 0;
    while inf.changed && rounds < 32 {
        inf.changed = false;
        inf.conflicts.clear();
        rounds += 1;
        for (p, probe) in script.probes.iter().enumerate() {
            inf.scope = Scope::Probe(p);
            for spec in &probe.points {
                if let Some(c) = &spec.cond {
                    inf.expr(c);
                }
            }
            probe.body.stmts.iter().for_each(|s| inf.stmt(s));
        }
        for (f, func) in script.functions.iter().enumerate() {
            inf.scope = Scope::Function(f);
            func.body.stmts.iter().for_each(|s| inf.stmt(s));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (span, msg) in inf.conflicts {
        if seen.insert(span) {
            diags.push(Diagnostic::error(msg, span));
        }
    }
    let mut t = Types::default();
    for (v, (ty, _)) in inf.env {
        match v {
            Var::Global(n) => {
                t.globals.insert(n, ty);
            }
            Var::ProbeLocal(p, n) => {
                t.probe_locals.insert((p, n), ty);
            }
            Var::FnLocal(f, n) => {
                t.fn_locals.insert((f, n), ty);
            }
            Var::FnRet(f) => {
                t.fn_ret.insert(f, ty);
            }
            Var::Key(n, i) => {
                t.keys.insert((n, i), ty);
            }
        }
    }
    t
}
