//! The syntax tree of an otf script, as produced by the parser.
//!
//! Every node carries a [`Span`] (byte offsets into the source) so that later passes can
//! report errors at `file:line:col`. The tree is purely syntactic: probe points are kept as
//! their dotted components and are interpreted by the semantic pass
//! ([`crate::sema`]), which turns them into [`crate::point::PointKind`].

use std::fmt;

/// A half-open byte range `lo..hi` in the script source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// First byte of the span.
    pub lo: u32,
    /// One past the last byte of the span.
    pub hi: u32,
}

impl Span {
    /// A span from `lo` to `hi` (byte offsets).
    pub fn new(lo: usize, hi: usize) -> Self {
        Span {
            lo: lo as u32,
            hi: hi as u32,
        }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            lo: self.lo.min(other.lo),
            hi: self.hi.max(other.hi),
        }
    }
}

/// A name with the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    /// The identifier text.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A whole script: its globals, functions and probes, each in source order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Script {
    /// `global` declarations, one entry per declared name.
    pub globals: Vec<Global>,
    /// `function` definitions.
    pub functions: Vec<Function>,
    /// `probe` statements.
    pub probes: Vec<Probe>,
}

/// `global NAME [= CONST]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    /// The global's name.
    pub name: Ident,
    /// The initialiser, if any (must be a constant expression: checked by sema).
    pub init: Option<Expr>,
    /// `global a[N]`: the array's size limit, as written.
    pub size: Option<Expr>,
    /// `global a%`: a wrapping array (the oldest entries give way when it is full).
    pub wrap: bool,
    /// The whole declaration of this name.
    pub span: Span,
}

/// A type annotation: `:long` or `:string`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeAnn {
    /// `:long`
    Long,
    /// `:string`
    String,
}

/// `function NAME[:TYPE](A[:TYPE], B) { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// The function's name.
    pub name: Ident,
    /// Parameter names.
    pub params: Vec<Ident>,
    /// The parameters' annotations, one per parameter.
    pub param_types: Vec<Option<TypeAnn>>,
    /// The return type's annotation.
    pub ret_type: Option<TypeAnn>,
    /// The body.
    pub body: Block,
    /// The whole definition.
    pub span: Span,
}

/// `probe POINT [if (COND)] [, POINT [if (COND)]]... { BODY }`.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// The comma-separated components, each with its own optional condition.
    pub points: Vec<ProbeSpec>,
    /// The body shared by all components.
    pub body: Block,
    /// The whole probe statement.
    pub span: Span,
}

/// One comma-separated component of a probe statement: a point, `?`, and an `if (COND)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    /// The probe point.
    pub point: ProbePoint,
    /// `true` when the point was followed by `?` (optional: dropped with a warning if it
    /// resolves to nothing).
    pub optional: bool,
    /// The condition written after this component, if any.
    pub cond: Option<Expr>,
    /// The component, including its condition.
    pub span: Span,
}

/// A dotted probe point such as `process("/bin/ls").function("main").return`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbePoint {
    /// The components in order.
    pub components: Vec<Component>,
    /// The whole point (without `?` and condition).
    pub span: Span,
}

/// One component of a probe point: `name` or `name(LITERAL)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    /// The component's name (`kernel`, `function`, `us`, ...).
    pub name: Ident,
    /// The parenthesised argument, if any.
    pub arg: Option<Literal>,
    /// The component including its argument.
    pub span: Span,
}

/// A literal argument of a probe point component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    /// An integer literal (already range-checked by the lexer).
    Int(i64),
    /// A string literal with escapes resolved.
    Str(String),
}

/// A `{ ... }` block.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// Statements in order.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    /// What kind of statement.
    pub kind: StmtKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of statement.
#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    /// A nested block.
    Block(Block),
    /// `if (cond) then [else els]`.
    If {
        /// The condition.
        cond: Expr,
        /// Taken when the condition is non-zero.
        then: Box<Stmt>,
        /// Taken otherwise.
        els: Option<Box<Stmt>>,
    },
    /// `while (cond) body`.
    While {
        /// The loop condition.
        cond: Expr,
        /// The loop body.
        body: Box<Stmt>,
    },
    /// `for (init; cond; step) body`; each part may be empty.
    For {
        /// Run once before the loop.
        init: Option<Expr>,
        /// Loop while non-zero (absent: forever).
        cond: Option<Expr>,
        /// Run after each iteration.
        step: Option<Expr>,
        /// The loop body.
        body: Box<Stmt>,
    },
    /// `break` (innermost loop).
    Break,
    /// `continue` (innermost loop).
    Continue,
    /// `next`: leave this probe hit.
    Next,
    /// `return [E]` (functions only; checked by sema).
    Return(Option<Expr>),
    /// An expression evaluated for its effects.
    Expr(Expr),
    /// `delete a[k]`, `delete a`, `delete x`: the operand is an [`ExprKind::Var`] or an
    /// [`ExprKind::Index`].
    Delete(Expr),
    /// `foreach ([v =] [k1, k2] in a[+-] [limit N]) body`.
    Foreach(Box<Foreach>),
    /// A lone `;`.
    Empty,
}

/// The parts of a `foreach` statement.
#[derive(Clone, Debug, PartialEq)]
pub struct Foreach {
    /// `v = ...`: the variable that receives each element's value.
    pub value: Option<Ident>,
    /// The key variables, one per key of the array.
    pub keys: Vec<Ident>,
    /// The iterated array.
    pub array: Ident,
    /// The sort order: `a+`/`a-` (by value), `k+`/`k-` (by that key), if any.
    pub sort: Option<Sort>,
    /// `limit N`: at most N iterations.
    pub limit: Option<Expr>,
    /// The loop body.
    pub body: Stmt,
}

/// A `foreach` sort order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sort {
    /// `None`: by value; `Some(i)`: by key `i` (0-based).
    pub key: Option<usize>,
    /// `-`: descending.
    pub desc: bool,
}

/// A statistics operator `@NAME(...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatOp {
    /// `@count`
    Count,
    /// `@sum`
    Sum,
    /// `@min`
    Min,
    /// `@max`
    Max,
    /// `@avg`
    Avg,
    /// `@variance`
    Variance,
}

impl StatOp {
    /// The operator as written, without `@`.
    pub fn name(self) -> &'static str {
        match self {
            StatOp::Count => "count",
            StatOp::Sum => "sum",
            StatOp::Min => "min",
            StatOp::Max => "max",
            StatOp::Avg => "avg",
            StatOp::Variance => "variance",
        }
    }

    /// The operator called `name` (without `@`).
    pub fn from_name(name: &str) -> Option<StatOp> {
        Some(match name {
            "count" => StatOp::Count,
            "sum" => StatOp::Sum,
            "min" => StatOp::Min,
            "max" => StatOp::Max,
            "avg" => StatOp::Avg,
            "variance" => StatOp::Variance,
            _ => return None,
        })
    }
}

/// A histogram of an aggregate, as `print` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HistKind {
    /// `@hist_log(x)`: power-of-two buckets.
    Log,
    /// `@hist_linear(x, lo, hi, step)`.
    Linear {
        /// The lowest bucket's start.
        lo: i64,
        /// The end of the range.
        hi: i64,
        /// The width of a bucket.
        step: i64,
    },
}

/// An expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What kind of expression.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// An integer literal.
    Int(i64),
    /// A string literal (only valid as an output argument or format).
    Str(String),
    /// A variable read (global, local or parameter: resolved by sema).
    Var(Ident),
    /// `target OP= value` (or plain `=`).
    Assign {
        /// The operator; `None` for plain `=`.
        op: Option<BinOp>,
        /// The assigned variable.
        target: Ident,
        /// The assigned value.
        value: Box<Expr>,
    },
    /// `++x`, `x++`, `--x`, `x--`.
    IncDec {
        /// `true` for prefix forms.
        prefix: bool,
        /// `true` for `++`, `false` for `--`.
        inc: bool,
        /// The variable.
        target: Ident,
    },
    /// A binary operator (including `&&` and `||`, which short-circuit).
    Binary {
        /// The operator.
        op: BinOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// A unary operator.
    Unary {
        /// The operator.
        op: UnOp,
        /// The operand.
        expr: Box<Expr>,
    },
    /// `cond ? then : els`.
    Ternary {
        /// The condition.
        cond: Box<Expr>,
        /// Value when non-zero.
        then: Box<Expr>,
        /// Value when zero.
        els: Box<Expr>,
    },
    /// A call of a built-in or script function.
    Call {
        /// The called name.
        name: Ident,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `@entry(E)`.
    Entry(Box<Expr>),
    /// `a[k1, k2]`: an array element (reads a missing one as 0).
    Index {
        /// The array.
        array: Ident,
        /// The keys, 1 to 9.
        keys: Vec<Expr>,
    },
    /// `a[k] OP= value` (or plain `=`).
    IndexAssign {
        /// The operator; `None` for plain `=`.
        op: Option<BinOp>,
        /// The array.
        array: Ident,
        /// The keys.
        keys: Vec<Expr>,
        /// The assigned value.
        value: Box<Expr>,
    },
    /// `++a[k]`, `a[k]--`, ...
    IndexIncDec {
        /// `true` for prefix forms.
        prefix: bool,
        /// `true` for `++`.
        inc: bool,
        /// The array.
        array: Ident,
        /// The keys.
        keys: Vec<Expr>,
    },
    /// `k in a`, `[k1, k2] in a`.
    In {
        /// The keys.
        keys: Vec<Expr>,
        /// The array.
        array: Ident,
    },
    /// `x <<< v`, `a[k] <<< v`: add a value to an aggregate.
    Aggregate {
        /// The aggregate (a global).
        target: Ident,
        /// The keys when it is an array element (empty for a scalar aggregate).
        keys: Vec<Expr>,
        /// The added value.
        value: Box<Expr>,
    },
    /// `@count(x)`, `@avg(a[k])`, `@variance(x, 3)`, ...
    Stat {
        /// The statistic.
        op: StatOp,
        /// The aggregate.
        target: Ident,
        /// Its keys (empty for a scalar aggregate).
        keys: Vec<Expr>,
        /// `@variance(x, N)`: the bit shift N (an integer constant).
        shift: Option<i64>,
    },
    /// `@hist_log(x)`, `@hist_linear(a[k], lo, hi, step)`: only as a `print`/`println`
    /// argument.
    Hist {
        /// Which histogram.
        kind: HistKind,
        /// The aggregate.
        target: Ident,
        /// Its keys (empty for a scalar aggregate).
        keys: Vec<Expr>,
    },
}

/// Binary operators, C precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `<<`
    Shl,
    /// `>>` (arithmetic)
    Shr,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `&`
    BitAnd,
    /// `^`
    BitXor,
    /// `|`
    BitOr,
    /// `.` (string concatenation)
    Concat,
    /// `&&` (short-circuit)
    And,
    /// `||` (short-circuit)
    Or,
}

impl BinOp {
    /// The operator as written in source.
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::BitAnd => "&",
            BinOp::BitXor => "^",
            BinOp::BitOr => "|",
            BinOp::Concat => ".",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    /// `-x`
    Neg,
    /// `!x`
    Not,
    /// `~x`
    BitNot,
    /// `+x` (no effect)
    Plus,
}
