//! Random bytecode for the differential test (`tests/differential.rs`).
//!
//! One [`Case`] is what the compiler makes of one probe: a body (its own condition inlined
//! first), condition programs that the body re-evaluates, and for a return probe using
//! `@entry` an entry program. The shapes are the compiler's (`otf_script::compile`): `if`,
//! `for`/`while` with `break`/`continue`, `&&`/`||`/`?:`, assignments as expressions,
//! `++`/`--`, functions inlined with their own local slots and `return` jumps (so jumps join
//! with values on the stack and loops run above them), output with 0–16 arguments, `exit()`,
//! `next`; conditions use only globals and constants, `@entry` expressions only globals,
//! constants and context functions. A few shapes go beyond the compiler where the bytecode
//! allows them (a `Dup` before an operator, a `Skip` inside the body, dead code after a jump).
//! Arrays and aggregates (`maps.rs`): each case uses a few of [`MAPS`], which start with
//! some elements (the bounded ones full now and then), with keys from small ranges so that
//! reads hit and miss, deletes find elements and new keys overflow full arrays.
//! Strings: literals ([`literals`]), `execname()`, string locals and globals, concatenations,
//! strings read from this process's memory (`SRead`: [`memory`], and addresses that fault),
//! assignments, comparisons (`SCmp`), `strlen` (`SLen`) and the string functions (`SCall`:
//! `isinstr`, `stringat`, `strtol` as integer values; `substr`, `text_str`, `str_replace`,
//! `tokenize` as strings, with edge positions and lengths), and output records with string arguments, always
//! straight-line code, so that paths join with the same string stack depth.
//! Every program passes `otf_script::vm::verify`.
//!
//! Values a test run cannot reproduce are used only where their value does not matter:
//! `gettimeofday_ns()` as `t > 0`, `t - t` (one read) or `t1 <= t2`; `randint(n)` as
//! `randint(n) < n`, `randint(n) >= 0` or `randint(1)`, with `n <= 0` now and then (the
//! "invalid randint range" error). `cpu()` is used as a value only when the test thread is
//! pinned ([`HitEnv::cpu`]).
//!
//! Some cases have a loop whose bound is tuned with the reference VM so that the body ends a
//! few instructions before or after `MAX_STEPS`, to exercise MAXACTION at its edge.

use otf_script::bytecode::{
    Insn, Op, ReadStr, StrFn, MAX_ENTRY_SLOTS, MAX_LOCALS, MAX_SSTACK, MAX_STACK,
};
use otf_script::vm::{self, End, FixedHit};

use crate::common::{a, i, push};

mod expr;
mod maps;
mod sprintf;
mod stmt;

pub use maps::{contents, global_infos, Aggregates, Arrays, MapGlobal, MapInit, MAPS};

/// The number of globals of every image (`RuntimeImage::globals_init`).
pub const NGLOBALS: usize = 1024;
/// The globals programs use: low indices, and a few far ones (stripes 63/0, the last global).
pub const USED_GLOBALS: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 63, 64, 511, 1023];
/// The string globals programs use (strings live apart from the integer globals, so these
/// may share indices with [`USED_GLOBALS`]).
pub const STR_GLOBALS: &[u32] = &[0, 12, 13, 1023];
/// String locals programs use (few, so that reads find what was written).
const STR_LOCALS: u64 = 4;
/// The number of string literals that are values ([`literals`]); the `sprintf` formats'
/// kernel formats follow them.
const BASE_LITERALS: usize = 24;

/// The string literals of every image: ids are indices. Prefixes of each other, equal first
/// words with later differences, bytes above 0x7f, and the longest a string holds; then the
/// encoded kernel formats of [`sprintf::formats`].
pub fn literals() -> Vec<String> {
    let mut l = base_literals();
    assert_eq!(l.len(), BASE_LITERALS, "BASE_LITERALS");
    l.extend(sprintf::formats().iter().map(|f| f.kernel.clone()));
    l
}

fn base_literals() -> Vec<String> {
    vec![
        String::new(),
        "a".into(),
        "ab".into(),
        "abc".into(),
        "abd".into(),
        "abcdefgh".into(),
        "abcdefgh1".into(),
        "abcdefgi".into(),
        "x".repeat(16),
        "é ü".into(),
        "~".into(),
        "y".repeat(127),
        format!("{}z", "y".repeat(126)),
        // For `strtol` (white space and `+`, which it does not take, signs, prefixes, digits
        // of bases 8 to 36, wrapping)
        // and `text_str` (escaped bytes).
        "0x1F".into(),
        " \t-42z".into(),
        "0777".into(),
        "+12".into(),
        "09".into(),
        "-9223372036854775809".into(),
        "z9Z".into(),
        "a\tb\"c\\\n\u{1}\u{7f}".into(),
        // The kernel's `simple_strtol` (no `0x` without a hex digit after it, one `-`), and
        // `text_str`'s short escapes and UTF-8 characters of two, three and four bytes.
        "0xg".into(),
        "--5".into(),
        "\u{7}\u{8}\u{c}\u{b}é€😀".into(),
    ]
}
/// NUL-terminated ASCII strings in this process's memory, for `SRead`: a test run's hit
/// reads the memory of the task that runs it, this test, as the reference VM reads its own.
/// Leaked and written once, so resident; their addresses change from run to run, which
/// does not matter: programs are generated and run by the same process.
pub fn memory() -> &'static [u64] {
    static MEMORY: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    MEMORY.get_or_init(|| {
        [
            String::new(),
            "m".into(),
            "from memory".into(),
            "0123456789".repeat(4),
            "q".repeat(126),
            "r".repeat(127),
            "s".repeat(200),
        ]
        .into_iter()
        .map(|t| {
            let mut v = t.into_bytes();
            v.extend_from_slice(b"\0not read");
            v.leak().as_ptr() as u64
        })
        .collect()
    })
}

/// `pp()` of program `index` (a string value of the body: `SCtx 1`).
pub fn pp_of(index: u64) -> String {
    format!("differential.program({index})")
}

/// `probefunc()` of program `index` (`SCtx 2`): now and then empty, or the longest a string
/// holds.
pub fn probefunc_of(index: u64) -> String {
    match index % 5 {
        0 => String::new(),
        1 => "f".repeat(127),
        _ => format!("func_{index}"),
    }
}

/// Local slots of the probe's own variables; loop counters, temporaries and the frames of
/// inlined functions are allocated above them.
const BODY_VARS: i32 = 6;
/// Format ids used by output records (the kernel does not interpret them).
const FORMATS: u64 = 40;
/// Bodies stop growing beyond about this many instructions.
const BODY_LIMIT: usize = 300;
/// Size classes of bodies, in percent of the cases: (percent, top-level statements at most,
/// statement nesting, instructions at most). Most are small: loading costs about 0.07 ms per
/// bytecode instruction (the kernel's verifier on the generated code), and a run has 10,000.
const SIZES: &[(u64, u64, u32, usize)] =
    &[(65, 4, 2, 100), (30, 8, 3, 200), (5, 10, 3, BODY_LIMIT)];

/// A small deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    /// The generator of case `index` of a run with seed `seed`: cases do not depend on each
    /// other, so one case can be replayed alone.
    pub fn for_case(seed: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03));
        r.next();
        r
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// An interesting 64-bit value: edges, small numbers, shift counts, anything.
    pub fn value(&mut self) -> i64 {
        match self.below(12) {
            0 => 0,
            1 => 1,
            2 => -1,
            3 => i64::MIN,
            4 => i64::MAX,
            5 => self.below(70) as i64,
            6 => -(self.below(1000) as i64),
            7 => 1i64 << self.below(64),
            8 => self.pick(&[63, 64, 65, -63, -64, 2, 3, 7]),
            _ => self.next() as i64,
        }
    }
}

/// What a test hit sees: the values of the deterministic context functions, for the generator
/// and the reference VM.
#[derive(Clone, Debug)]
pub struct HitEnv {
    pub pid: i64,
    pub tid: i64,
    pub ppid: i64,
    pub uid: i64,
    /// The CPU the test thread is pinned to; `None` if it could not be pinned (then `cpu()`
    /// is only used as `cpu() >= 0`).
    pub cpu: Option<i64>,
    /// `target()`: the image's `target_pid`.
    pub target: i64,
    /// A plausible `gettimeofday_ns()` for the reference VM (only its sign matters).
    pub time_ns: i64,
    /// `execname()`: the test thread's comm.
    pub comm: String,
}

impl HitEnv {
    /// The reference VM's view of a hit with these `@entry` slots (no arguments, return value
    /// 0: `BPF_PROG_TEST_RUN` of the test entry passes none).
    pub fn fixed_hit(&self, entry: [i64; MAX_ENTRY_SLOTS]) -> FixedHit {
        FixedHit {
            pid: self.pid,
            tid: self.tid,
            ppid: self.ppid,
            uid: self.uid,
            cpu: self.cpu.unwrap_or(0),
            time_ns: self.time_ns,
            target: self.target,
            entry,
            strings: literals(),
            formats: sprintf::formats().iter().map(|f| f.fmt.clone()).collect(),
            names: [self.comm.clone(), String::new(), String::new()],
            ..FixedHit::default()
        }
    }
}

/// One probe slot's programs and the state its hit starts from.
#[derive(Clone, Debug)]
pub struct Case {
    /// The body: the own condition inlined first (when it has one), ends with `Next`.
    pub body: Vec<Insn>,
    /// The `@entry` program (a return probe), ends with `Next`.
    pub entry: Option<Vec<Insn>>,
    /// Whether the entry program runs before the body (if not, `@entry` reads 0).
    pub run_entry: bool,
    /// Condition programs (`E; LNot; LNot; Ret`); the first is the body's own condition when
    /// [`Case::own_cond`].
    pub conds: Vec<Vec<Insn>>,
    pub own_cond: bool,
    /// The cached condition bits before the hit, one per condition. The own condition's is
    /// its value over the initial globals (true if it fails to evaluate), as the orchestrator
    /// keeps it: a hit whose bit is clear is skipped before its body. The others are random,
    /// so that re-evaluation changes them both ways.
    pub cond_init: Vec<bool>,
    /// Indices into `conds`: what the body re-evaluates, in order.
    pub reeval: Vec<usize>,
    /// Initial values of [`USED_GLOBALS`] (the other globals start at 0).
    pub globals: Vec<(u32, i64)>,
    /// The arrays and aggregates of [`MAPS`] the programs use.
    pub maps: Vec<MapGlobal>,
    /// The elements of the arrays and aggregates before the hit (the others are empty).
    pub map_init: Vec<MapInit>,
    pub safe_context: bool,
    /// The body has a loop tuned to end near `MAX_STEPS`.
    pub near_budget: bool,
}

impl Case {
    /// The instructions the case adds to an image.
    pub fn code_len(&self) -> usize {
        self.body.len()
            + self.entry.as_ref().map_or(0, Vec::len)
            + self.conds.iter().map(Vec::len).sum::<usize>()
    }

    /// All globals' initial values.
    pub fn initial_globals(&self) -> Vec<i64> {
        initial_globals(&self.globals)
    }

    /// The reference store the hit starts from: the globals and the arrays' and aggregates'
    /// elements.
    pub fn initial_store(&self) -> otf_script::store::MemStore {
        maps::initial_store(self.initial_globals(), &self.map_init)
    }

    /// Empty every array and aggregate of `store`, then put the case's starting elements.
    pub fn init_maps(
        &self,
        store: &mut dyn otf_script::vm::GlobalStore,
    ) -> Result<(), otf_script::store::MapError> {
        for m in MAPS {
            store.map_clear(m.g);
        }
        maps::apply_init(&self.map_init, store)
    }

    /// The lock stripes of the globals the body and the conditions it re-evaluates touch (as
    /// the compiler computes them).
    pub fn lock_mask(&self) -> u64 {
        let progs = std::iter::once(&self.body).chain(self.reeval.iter().map(|&k| &self.conds[k]));
        let mut mask = 0;
        for insn in progs.flatten() {
            if matches!(
                insn.opcode(),
                Some(
                    Op::LdG
                        | Op::StG
                        | Op::MapGet
                        | Op::MapPut
                        | Op::MapAdd
                        | Op::MapIn
                        | Op::MapDel
                        | Op::StatAdd
                        | Op::StatGet
                        | Op::MapClear
                        | Op::SLdG
                        | Op::SStG
                )
            ) {
                mask |= 1u64 << (insn.arg % 64);
            }
        }
        mask
    }
}

/// All globals, from the values of some.
fn initial_globals(globals: &[(u32, i64)]) -> Vec<i64> {
    let mut g = vec![0; NGLOBALS];
    for &(k, v) in globals {
        g[k as usize] = v;
    }
    g
}

/// Generate case `index` of the run with seed `seed`.
pub fn case(seed: u64, index: u64, env: &HitEnv) -> Case {
    let rng = &mut Rng::for_case(seed, index);
    let globals: Vec<(u32, i64)> = USED_GLOBALS.iter().map(|&g| (g, rng.value())).collect();
    let (used_maps, map_init) = maps::choose(rng, env.cpu.is_some());
    let start = maps::initial_store(initial_globals(&globals), &map_init);

    // A return probe using @entry: 1..=8 saved expressions.
    let nentry = if rng.chance(15) {
        1 + rng.below(MAX_ENTRY_SLOTS as u64) as u32
    } else {
        0
    };
    let entry = (nentry > 0).then(|| {
        let mut g = Gen::new(rng, env, Mode::Entry);
        for k in 0..nentry {
            g.expr(3);
            g.emit(a(Op::EntrySave, k as i32));
        }
        g.emit(i(Op::Next));
        g.code
    });
    let run_entry = entry.is_some() && rng.chance(85);

    // Conditions: the body's own (inlined first, and as a program), and other probes'.
    let own_cond = rng.chance(50);
    let nconds = own_cond as u64 + rng.below(4);
    let cond_exprs: Vec<Vec<Insn>> = (0..nconds)
        .map(|_| {
            let mut g = Gen::new(rng, env, Mode::Cond);
            g.maps = used_maps.clone();
            g.expr(3);
            g.code
        })
        .collect();
    let conds: Vec<Vec<Insn>> = cond_exprs
        .iter()
        .map(|e| {
            let mut c = e.clone();
            c.extend([i(Op::LNot), i(Op::LNot), i(Op::Ret)]);
            c
        })
        .collect();
    let mut cond_init: Vec<bool> = (0..nconds).map(|_| rng.chance(50)).collect();
    if own_cond {
        let mut hit = env.fixed_hit([0; MAX_ENTRY_SLOTS]);
        let r = vm::run(&conds[0], 0, &mut start.clone(), &mut hit, &mut |_| {});
        cond_init[0] = !matches!(r, Ok(o) if o.end == End::Ret(0));
    }
    let mut reeval: Vec<usize> = (0..nconds as usize).filter(|_| rng.chance(75)).collect();
    for k in (1..reeval.len()).rev() {
        reeval.swap(k, rng.below(k as u64 + 1) as usize);
    }

    let near_budget = rng.chance(5);
    let mut g = Gen::new(rng, env, Mode::Body);
    g.entry_slots = nentry;
    g.maps = used_maps.clone();
    g.concat = g.rng.chance(50);
    if own_cond {
        // `<cond>; Jnz +1; Skip`
        g.code.extend_from_slice(&cond_exprs[0]);
        g.sp = 1;
        g.emit(a(Op::Jnz, 1));
        g.emit(i(Op::Skip));
    }
    let body = if near_budget {
        g.near_budget_body(&start)
    } else {
        let mut k = g.rng.below(100);
        let mut size = SIZES[0];
        for &s in SIZES {
            if k < s.0 {
                size = s;
                break;
            }
            k -= s.0;
        }
        let (_, most, depth, limit) = size;
        g.limit = limit;
        let n = 1 + g.rng.below(most) as u32;
        g.block(n, depth);
        g.emit(i(Op::Next));
        g.code
    };

    let case = Case {
        body,
        entry,
        run_entry,
        conds,
        own_cond,
        cond_init,
        reeval,
        globals,
        maps: used_maps,
        map_init,
        safe_context: rng.chance(50),
        near_budget,
    };
    for p in std::iter::once(&case.body)
        .chain(case.entry.iter())
        .chain(case.conds.iter())
    {
        if let Err(e) = vm::verify(p, 0..p.len()) {
            panic!(
                "generator bug: case {index} (seed {seed:#x}) does not verify: {e}\n{}",
                otf_script::compile::disassemble(p)
            );
        }
    }
    case
}

/// What a program may contain.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A probe body: everything.
    Body,
    /// A probe condition: globals, constants and operators.
    Cond,
    /// An `@entry` expression: globals, constants, operators and context functions.
    Entry,
}

#[derive(Default)]
struct Loop {
    breaks: Vec<usize>,
    continues: Vec<usize>,
}

struct Gen<'a> {
    rng: &'a mut Rng,
    env: &'a HitEnv,
    mode: Mode,
    code: Vec<Insn>,
    /// The stack depth after the last instruction emitted (on the path being generated).
    sp: usize,
    /// The string stack depth likewise (string values are straight-line code: every join
    /// of paths has the same string depth).
    ssp: usize,
    /// The stack depth at statement boundaries (above it: values of an enclosing
    /// expression whose inlined function call is being generated).
    stmt_sp: usize,
    /// Variable slots of the current frame: `vars.0 .. vars.0 + vars.1`.
    vars: (i32, i32),
    /// First free local slot.
    top: i32,
    /// Loops of the current frame (break/continue jumps to patch).
    loops: Vec<Loop>,
    /// Loop nesting across frames (bounds the iteration counts).
    loop_nest: usize,
    /// Return jumps of each inlined function being generated.
    frames: Vec<Vec<usize>>,
    /// `@entry` slots the body may read.
    entry_slots: u32,
    /// Straight-line code only (no branches but the enclosing loop's): the tuned loop.
    straight: bool,
    /// Blocks stop adding statements beyond this many instructions.
    limit: usize,
    /// The arrays and aggregates the program may use.
    maps: Vec<MapGlobal>,
    /// String concatenation is used: then only ASCII literals are, because the reference VM
    /// cuts a string too long at a character boundary and the kernel at byte 127.
    concat: bool,
    /// The arrays the `foreach` loops around the code being generated iterate: nothing
    /// writes them (the compiler's semantic check refuses it, as SystemTap does).
    iterating: Vec<u32>,
}

const BINOPS: &[Op] = &[
    Op::Add,
    Op::Sub,
    Op::Mul,
    Op::Div,
    Op::Mod,
    Op::Shl,
    Op::Shr,
    Op::And,
    Op::Or,
    Op::Xor,
    Op::Lt,
    Op::Le,
    Op::Gt,
    Op::Ge,
    Op::Eq,
    Op::Ne,
];

impl<'a> Gen<'a> {
    fn new(rng: &'a mut Rng, env: &'a HitEnv, mode: Mode) -> Self {
        Gen {
            rng,
            env,
            mode,
            code: Vec::new(),
            sp: 0,
            ssp: 0,
            stmt_sp: 0,
            vars: (0, BODY_VARS),
            top: BODY_VARS,
            loops: Vec::new(),
            loop_nest: 0,
            frames: Vec::new(),
            entry_slots: 0,
            straight: false,
            limit: BODY_LIMIT,
            maps: Vec::new(),
            concat: false,
            iterating: Vec::new(),
        }
    }

    // ---- emission ----

    fn emit(&mut self, insn: Insn) -> usize {
        let (pops, pushes) = vm::stack_effect(&insn).expect("generator bug: bad instruction");
        assert!(self.sp >= pops, "generator bug: stack underflow");
        self.sp = self.sp - pops + pushes;
        assert!(self.sp <= MAX_STACK, "generator bug: stack overflow");
        let (spops, spushes) = vm::sstack_effect(&insn).expect("generator bug: bad instruction");
        assert!(self.ssp >= spops, "generator bug: string stack underflow");
        self.ssp = self.ssp - spops + spushes;
        assert!(
            self.ssp <= MAX_SSTACK,
            "generator bug: string stack overflow"
        );
        self.code.push(insn);
        self.code.len() - 1
    }

    fn op(&mut self, op: Op) {
        self.emit(i(op));
    }

    fn push(&mut self, v: i64) {
        self.emit(push(v));
    }

    /// A forward jump, patched later with [`Gen::patch`].
    fn jump(&mut self, op: Op) -> usize {
        self.emit(a(op, 0))
    }

    /// Point the jump at `at` to the next instruction.
    fn patch(&mut self, at: usize) {
        self.patch_to(at, self.code.len());
    }

    fn patch_to(&mut self, at: usize, target: usize) {
        self.code[at].arg = target as i32 - at as i32 - 1;
    }

    fn jump_back(&mut self, op: Op, target: usize) {
        let at = self.code.len() as i32;
        self.emit(a(op, target as i32 - at - 1));
    }

    /// Free stack slots.
    fn room(&self) -> usize {
        MAX_STACK - self.sp
    }

    fn slot(&mut self) -> Option<i32> {
        (self.top < MAX_LOCALS as i32).then(|| {
            self.top += 1;
            self.top - 1
        })
    }

    fn var(&mut self) -> Option<i32> {
        (self.vars.1 > 0).then(|| self.vars.0 + self.rng.below(self.vars.1 as u64) as i32)
    }

    /// Free string stack slots.
    fn sroom(&self) -> usize {
        MAX_SSTACK - self.ssp
    }

    /// A string value (straight-line): a literal, `execname()`, a string local or global, or
    /// (when [`Gen::concat`]) a concatenation of two of them.
    fn sexpr(&mut self) {
        self.sexpr_at(2);
    }

    fn sexpr_at(&mut self, depth: u32) {
        assert!(self.sroom() >= 1, "generator bug: no room for a string");
        if self.concat && depth > 0 && self.sroom() >= 2 && self.rng.chance(30) {
            self.sexpr_at(depth - 1);
            self.sexpr_at(depth - 1);
            self.op(Op::SConcat);
            return;
        }
        if depth > 0 && self.rng.chance(12) && self.sfn_str(depth - 1) {
            return;
        }
        // `sprintf` with ASCII strings only (its precisions and its truncation cut strings
        // by bytes, as string functions do).
        if self.concat && depth > 0 && self.rng.chance(10) && self.sprintf() {
            return;
        }
        match self.rng.below(11) {
            10 if self.room() >= 2 => self.sread(),
            0..=3 | 10 => {
                let lits = base_literals();
                let id = loop {
                    let id = self.rng.below(lits.len() as u64) as usize;
                    if !self.concat || lits[id].is_ascii() {
                        break id;
                    }
                };
                self.emit(a(Op::SPush, id as i32));
            }
            4..=5 => {
                // execname() mostly, pp() and probefunc() now and then.
                let id = self.rng.pick(&[0, 0, 0, 1, 2]);
                self.emit(a(Op::SCtx, id));
            }
            6..=7 => {
                let l = self.rng.below(STR_LOCALS) as i32;
                self.emit(a(Op::SLdL, l));
            }
            _ => {
                let g = self.rng.pick(STR_GLOBALS) as i32;
                self.emit(a(Op::SLdG, g));
            }
        }
    }

    /// A string read from memory (`SRead`): user memory mostly, at one of [`memory`] or at
    /// an address that faults (0, 1, the top of the address space); kernel memory now and
    /// then (every address of it faults in both: user addresses are not kernel memory);
    /// with a length (a constant or a global's value, clamped as SystemTap clamps it) and
    /// with a message to return on a fault, or neither.
    fn sread(&mut self) {
        let kernel = self.rng.chance(15);
        let mem = memory();
        let addr = if !kernel && self.rng.chance(90) {
            self.rng.pick(mem)
        } else {
            self.rng.pick(&[0, 1, u64::MAX - 2, mem[2]])
        };
        let n = self.rng.chance(50);
        let msg = self.rng.chance(40);
        if msg {
            // The message, before the read's own string.
            self.sexpr_at(0);
        }
        self.push(addr as i64);
        if n {
            if self.rng.chance(50) {
                let v = self
                    .rng
                    .pick(&[-1, 0, 1, 3, 125, 126, 127, 128, 500, i64::MAX]);
                self.push(v);
            } else {
                let g = self.global();
                self.emit(a(Op::LdG, g));
            }
        }
        let read = ReadStr {
            kernel,
            n,
            msg,
            warn: false,
        };
        self.emit(a(Op::SRead, read.pack()));
    }

    /// A string function with a string value, if one fits: `text_str`, and with only ASCII
    /// strings (when [`Gen::concat`]: the reference VM's strings are UTF-8, so it cuts
    /// a character that the kernel cuts in the middle differently) `substr`, `str_replace`
    /// and `tokenize` (a "" string continues what an earlier call left in the run). Arguments
    /// are string values of depth `depth`.
    fn sfn_str(&mut self, depth: u32) -> bool {
        match self.rng.below(4) {
            0 if self.concat && self.room() >= 2 => {
                self.sexpr_at(depth);
                self.sfn_int_arg();
                self.sfn_int_arg();
                self.emit(a(Op::SCall, StrFn::Substr as i32));
            }
            1 => {
                self.sexpr_at(depth);
                self.emit(a(Op::SCall, StrFn::TextStr as i32));
            }
            2 if self.concat && self.sroom() >= 3 => {
                self.sexpr_at(depth);
                self.sexpr_at(depth);
                self.sexpr_at(depth);
                self.emit(a(Op::SCall, StrFn::StrReplace as i32));
            }
            3 if self.concat && self.sroom() >= 2 => {
                self.sexpr_at(depth);
                self.sexpr_at(depth);
                self.emit(a(Op::SCall, StrFn::Tokenize as i32));
            }
            _ => return false,
        }
        true
    }

    /// A string function with an integer value: `isinstr`, `stringat` or `strtol`.
    pub(super) fn sfn_int(&mut self) {
        match self.rng.below(3) {
            0 => {
                self.sexpr();
                self.sexpr();
                self.emit(a(Op::SCall, StrFn::Isinstr as i32));
            }
            1 => {
                self.sexpr();
                self.sfn_int_arg();
                self.emit(a(Op::SCall, StrFn::Stringat as i32));
            }
            _ => {
                self.sexpr();
                if self.rng.chance(80) {
                    let base = self.rng.pick(&[0, 0, 2, 8, 10, 10, 16, 16, 36, 1, 37, -16]);
                    self.push(base);
                } else {
                    self.leaf();
                }
                self.emit(a(Op::SCall, StrFn::Strtol as i32));
            }
        }
    }

    /// An integer argument of a string function (a position, a length): an edge value
    /// mostly, else any leaf.
    fn sfn_int_arg(&mut self) {
        if self.rng.chance(70) {
            let v = self.rng.pick(&[
                -1,
                0,
                1,
                2,
                3,
                5,
                8,
                9,
                16,
                126,
                127,
                128,
                i64::MIN,
                i64::MAX,
            ]);
            self.push(v);
        } else {
            self.leaf();
        }
    }

    /// `strlen` of a string value (an integer value).
    fn slen(&mut self) {
        self.sexpr();
        self.op(Op::SLen);
    }

    /// A string comparison (an integer value).
    fn scmp(&mut self) {
        self.sexpr();
        self.sexpr();
        let op = self
            .rng
            .pick(&[Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Eq, Op::Ne]);
        self.emit(a(Op::SCmp, op as i32));
    }

    /// A statement on strings: an assignment to a string local or global (or both), or a
    /// value dropped.
    fn string_stmt(&mut self) {
        self.sexpr();
        match self.rng.below(4) {
            0 => {
                let l = self.rng.below(STR_LOCALS) as i32;
                self.emit(a(Op::SStL, l));
            }
            1 => {
                let g = self.rng.pick(STR_GLOBALS) as i32;
                self.emit(a(Op::SStG, g));
            }
            2 if self.sroom() >= 1 => {
                self.emit(i(Op::SDup));
                let l = self.rng.below(STR_LOCALS) as i32;
                self.emit(a(Op::SStL, l));
                let g = self.rng.pick(STR_GLOBALS) as i32;
                self.emit(a(Op::SStG, g));
            }
            _ => {
                self.emit(i(Op::SPop));
            }
        }
    }

    fn global(&mut self) -> i32 {
        self.rng.pick(USED_GLOBALS) as i32
    }

    fn binop(&mut self) -> Op {
        let op = self.rng.pick(BINOPS);
        // Division by a computed value (often 0 or 1): kept rarer, so that most programs run
        // to their end.
        if matches!(op, Op::Div | Op::Mod) && self.rng.chance(85) {
            Op::Xor
        } else {
            op
        }
    }
}
