//! Inference of what each global is — a scalar, an array or a statistics aggregate — from
//! every use of it in the script, as SystemTap infers it: `a[k]` makes `a` an array with one
//! key, `x <<< v` makes `x` an aggregate, `global a[N]` / `global a%` declare an array. Uses
//! that disagree (one key here, two there; a scalar read of an array) are errors at the later
//! use, naming the earlier one.

use std::collections::HashMap;

use crate::ast::Span;
use crate::ast::StatOp;
use crate::ast::{Expr, ExprKind, HistKind, Script, Stmt, StmtKind};
use crate::bytecode::{GlobalKind, HistSpec, MAX_KEYS, MAX_LINEAR_BUCKETS, MAX_VARIANCE_SHIFT};
use crate::diag::{Diagnostic, SourceFile};
use crate::sema::GlobalInfo;

/// What one use says about a global: its number of keys (`Some(0)`: a scalar use) and
/// whether it is an aggregate.
#[derive(Clone, Copy, Debug)]
struct Shape {
    keys: Option<usize>,
    stat: Option<bool>,
    span: Span,
}

#[derive(Default)]
struct Uses {
    by_name: HashMap<String, Vec<Shape>>,
    hists: HashMap<String, Vec<(HistKind, Span)>>,
    /// `@variance(x[, shift])` uses: the shift (0 when not given) and where the `@variance`
    /// is (where SystemTap reports its errors).
    variances: HashMap<String, Vec<(i64, Span)>>,
    /// Names whose value is read somewhere (`x++`, `x = v`, `x <<< v` and `delete x` are
    /// pure writes, as SystemTap counts them).
    read: std::collections::HashSet<String>,
    /// Names written somewhere.
    written: std::collections::HashSet<String>,
}

impl Uses {
    fn add(&mut self, name: &str, keys: Option<usize>, stat: Option<bool>, span: Span) {
        self.by_name
            .entry(name.to_string())
            .or_default()
            .push(Shape { keys, stat, span });
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
            StmtKind::Return(Some(e)) | StmtKind::Expr(e) => self.expr(e),
            StmtKind::Delete(e) => match &e.kind {
                ExprKind::Var(v) => {
                    self.written.insert(v.name.clone());
                    self.add(&v.name, None, None, v.span)
                }
                ExprKind::Index { array, keys } => {
                    self.written.insert(array.name.clone());
                    self.add(&array.name, Some(keys.len()), None, array.span);
                    keys.iter().for_each(|k| self.expr(k));
                }
                _ => {}
            },
            StmtKind::Foreach(f) => {
                self.read.insert(f.array.name.clone());
                self.add(&f.array.name, Some(f.keys.len()), None, f.array.span);
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

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Str(_) => {}
            ExprKind::Var(v) => {
                self.read.insert(v.name.clone());
                self.add(&v.name, Some(0), Some(false), v.span)
            }
            ExprKind::Assign { target, value, op } => {
                self.written.insert(target.name.clone());
                if op.is_some() {
                    self.read.insert(target.name.clone());
                }
                self.add(&target.name, Some(0), Some(false), target.span);
                self.expr(value);
            }
            ExprKind::IncDec { target, .. } => {
                self.written.insert(target.name.clone());
                self.add(&target.name, Some(0), Some(false), target.span)
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::Unary { expr, .. } | ExprKind::Entry(expr) => self.expr(expr),
            ExprKind::Ternary { cond, then, els } => {
                self.expr(cond);
                self.expr(then);
                self.expr(els);
            }
            ExprKind::Call { args, .. } => args.iter().for_each(|a| self.expr(a)),
            ExprKind::Index { array, keys } | ExprKind::IndexIncDec { array, keys, .. } => {
                if matches!(e.kind, ExprKind::Index { .. }) {
                    self.read.insert(array.name.clone());
                } else {
                    self.written.insert(array.name.clone());
                }
                self.add(&array.name, Some(keys.len()), Some(false), array.span);
                keys.iter().for_each(|k| self.expr(k));
            }
            ExprKind::IndexAssign {
                array,
                keys,
                value,
                op,
            } => {
                self.written.insert(array.name.clone());
                if op.is_some() {
                    self.read.insert(array.name.clone());
                }
                self.add(&array.name, Some(keys.len()), Some(false), array.span);
                keys.iter().for_each(|k| self.expr(k));
                self.expr(value);
            }
            ExprKind::In { keys, array } => {
                self.read.insert(array.name.clone());
                self.add(&array.name, Some(keys.len()), None, array.span);
                keys.iter().for_each(|k| self.expr(k));
            }
            ExprKind::Aggregate {
                target,
                keys,
                value,
            } => {
                self.written.insert(target.name.clone());
                self.add(&target.name, Some(keys.len()), Some(true), target.span);
                keys.iter().for_each(|k| self.expr(k));
                self.expr(value);
            }
            ExprKind::Stat {
                op,
                target,
                keys,
                shift,
            } => {
                self.read.insert(target.name.clone());
                self.add(&target.name, Some(keys.len()), Some(true), target.span);
                if *op == StatOp::Variance {
                    self.variances
                        .entry(target.name.clone())
                        .or_default()
                        .push((shift.unwrap_or(0), e.span));
                }
                keys.iter().for_each(|k| self.expr(k));
            }
            ExprKind::Hist { kind, target, keys } => {
                self.read.insert(target.name.clone());
                self.add(&target.name, Some(keys.len()), Some(true), target.span);
                self.hists
                    .entry(target.name.clone())
                    .or_default()
                    .push((*kind, e.span));
                keys.iter().for_each(|k| self.expr(k));
            }
        }
    }
}

fn at(file: &SourceFile, span: Span) -> String {
    let (l, c) = file.line_col(span.lo);
    format!("{l}:{c}")
}

/// Set [`GlobalInfo::kind`] and [`GlobalInfo::hist`] of every global from its uses in
/// `script`, reporting disagreeing uses. Names that are not globals are left to the
/// semantic walker (which refuses arrays that are not global).
pub(crate) fn infer(
    file: &SourceFile,
    script: &Script,
    index: &HashMap<String, u32>,
    globals: &mut [GlobalInfo],
    diags: &mut Vec<Diagnostic>,
) {
    let mut uses = Uses::default();
    for p in &script.probes {
        for spec in &p.points {
            if let Some(c) = &spec.cond {
                uses.expr(c);
            }
        }
        p.body.stmts.iter().for_each(|s| uses.stmt(s));
    }
    for f in &script.functions {
        // A parameter shadows a global of the same name inside its function.
        let mut u = Uses::default();
        f.body.stmts.iter().for_each(|s| u.stmt(s));
        for (name, shapes) in u.by_name {
            if !f.params.iter().any(|p| p.name == name) {
                uses.by_name.entry(name).or_default().extend(shapes);
            }
        }
        for (name, h) in u.hists {
            uses.hists.entry(name).or_default().extend(h);
        }
        for (name, v) in u.variances {
            if !f.params.iter().any(|p| p.name == name) {
                uses.variances.entry(name).or_default().extend(v);
            }
        }
        let global = |n: &String| !f.params.iter().any(|p| &p.name == n);
        uses.read.extend(u.read.into_iter().filter(global));
        uses.written.extend(u.written.into_iter().filter(global));
    }
    for (name, &g) in index {
        let info = &mut globals[g as usize];
        info.read = uses.read.contains(name);
        info.written = uses.written.contains(name);
    }
    for (name, shapes) in &uses.by_name {
        let Some(&g) = index.get(name) else { continue };
        let info = &mut globals[g as usize];
        let declared_array = info.size.is_some() || info.wrap;
        let mut keys: Option<(usize, Span)> = None;
        let mut stat: Option<(bool, Span)> = None;
        let mut ok = true;
        for s in shapes {
            if let Some(n) = s.keys {
                match keys {
                    Some((k, first)) if k != n => {
                        let msg = match (k, n) {
                            (0, _) => format!(
                                "`{name}` is used as an array here but as a scalar at {}",
                                at(file, first)
                            ),
                            (_, 0) => format!(
                                "`{name}` is an array (indexed at {}); index it as `{name}[...]`",
                                at(file, first)
                            ),
                            _ => format!(
                                "`{name}` is indexed with {n} key{} here but with {k} at {}",
                                if n == 1 { "" } else { "s" },
                                at(file, first)
                            ),
                        };
                        diags.push(Diagnostic::error(msg, s.span));
                        ok = false;
                        break;
                    }
                    None => keys = Some((n, s.span)),
                    _ => {}
                }
            }
            if let Some(b) = s.stat {
                match stat {
                    Some((t, first)) if t != b => {
                        let msg = if t {
                            format!("`{name}` is a statistics aggregate (`<<<` at {}); read it with `@count`, `@sum`, `@min`, `@max` or `@avg`", at(file, first))
                        } else {
                            format!("`{name}` holds values (used at {}), so `<<<` and `@` statistics cannot be applied to it", at(file, first))
                        };
                        diags.push(Diagnostic::error(msg, s.span));
                        ok = false;
                        break;
                    }
                    None => stat = Some((b, s.span)),
                    _ => {}
                }
            }
        }
        if !ok {
            continue;
        }
        let nkeys = keys.map(|(k, _)| k);
        if nkeys.is_some_and(|k| k > MAX_KEYS) {
            let span = keys.map(|(_, s)| s).unwrap_or(info.span);
            diags.push(Diagnostic::error(
                format!("`{name}` has more than {MAX_KEYS} keys"),
                span,
            ));
            continue;
        }
        if declared_array && nkeys == Some(0) {
            let span = keys.map(|(_, s)| s).unwrap_or(info.span);
            diags.push(Diagnostic::error(
                format!(
                    "`{name}` is declared as an array at {}; index it as `{name}[...]`",
                    at(file, info.span)
                ),
                span,
            ));
            continue;
        }
        let is_stat = stat.is_some_and(|(b, _)| b);
        info.kind = match (is_stat, nkeys) {
            (true, k) => GlobalKind::Stat {
                keys: k.unwrap_or(0) as u8,
            },
            (false, Some(k)) if k > 0 => GlobalKind::Array { keys: k as u8 },
            (false, None) if declared_array => GlobalKind::Array { keys: 1 },
            _ => GlobalKind::Scalar,
        };
        if is_stat && info.init != 0 {
            diags.push(Diagnostic::error(
                format!("statistics aggregate `{name}` cannot have an initial value"),
                info.span,
            ));
        }
    }
    for g in globals.iter_mut() {
        if g.kind == GlobalKind::Scalar && (g.size.is_some() || g.wrap) {
            g.kind = GlobalKind::Array { keys: 1 };
        }
    }
    for (name, hists) in &uses.hists {
        let Some(&g) = index.get(name) else { continue };
        let mut spec = HistSpec::default();
        for &(kind, span) in hists {
            match kind {
                HistKind::Log => spec.log = true,
                HistKind::Linear { lo, hi, step } => {
                    let buckets = if step > 0 && hi > lo {
                        (hi - lo) / step + 3
                    } else {
                        0
                    };
                    if step <= 0 || hi <= lo || buckets as usize > MAX_LINEAR_BUCKETS {
                        diags.push(
                            Diagnostic::error(
                                format!(
                                    "`@hist_linear` needs LOW < HIGH, STEP > 0 and at most {} buckets",
                                    MAX_LINEAR_BUCKETS - 2
                                ),
                                span,
                            )
                            .with_hint("the number of buckets is (HIGH - LOW) / STEP"),
                        );
                        continue;
                    }
                    match spec.linear {
                        Some(p) if p != (lo, hi, step) => diags.push(Diagnostic::error(
                            format!("`{name}` is printed with two different `@hist_linear` ranges; otf keeps one per aggregate"),
                            span,
                        )),
                        _ => spec.linear = Some((lo, hi, step)),
                    }
                }
            }
        }
        globals[g as usize].hist = spec;
    }
    // `@variance(x, shift)`, as SystemTap checks it (elaborate.cxx): a shift from 0 to 62;
    // a different non-zero shift after one was set conflicts (the default 0 never does).
    for (name, uses) in &uses.variances {
        let Some(&g) = index.get(name) else { continue };
        let mut shift = 0i64;
        for &(s, span) in uses {
            if !(0..=MAX_VARIANCE_SHIFT).contains(&s) {
                diags.push(Diagnostic::error(
                    format!("bit shift ({s}) out of range <0..{MAX_VARIANCE_SHIFT}>"),
                    span,
                ));
            } else if shift != 0 && s != shift {
                diags.push(
                    Diagnostic::error(
                        format!("conflicting bit shifts declared (previously {shift})"),
                        span,
                    )
                    .with_hint(format!(
                        "`{name}` keeps one fixed-point state: give every `@variance({name}, N)` the same N"
                    )),
                );
            } else {
                shift = s;
            }
        }
        globals[g as usize].hist.variance = Some(shift as u8);
    }
}
