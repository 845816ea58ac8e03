//! Arrays and aggregates of the generator: the globals every image declares ([`MAPS`]), the
//! elements a case starts from, and the compiler's shapes of their uses (`a[k]`, `[k] in a`,
//! `a[k] = v`, `a[k] += v`, `a[k] -= v`, `a[k] op= v`, `a[k]++`, `delete a[k]`,
//! `s <<< v`, `t[k] <<< v`, `@count(t[k])` and the other statistics, `delete a`, `foreach`), with keys mostly drawn from a small range so that elements are
//! found, missed, deleted and that the small arrays fill up ("Array overflow").

use std::sync::OnceLock;

use otf_script::ast::Span;
use otf_script::bytecode::{
    GlobalKind, HistSpec, Insn, IterSpec, Op, StatKind, MAX_ITERS, MAX_LOCALS,
};
use otf_script::sema::GlobalInfo;
use otf_script::store::{Aggregate, MapError, MemStore, Value};
use otf_script::vm::{GlobalStore, STAT_KIND_SHIFT};

use super::{Gen, Loop, Mode, Rng, FORMATS, NGLOBALS};
use crate::common::{a, out};

/// An array or aggregate the programs may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapGlobal {
    /// Its global index (not one of [`super::USED_GLOBALS`]).
    pub g: u32,
    pub kind: GlobalKind,
    /// `global a[N]`: the most elements (`None`: MAXMAPENTRIES, never full here).
    pub size: Option<u32>,
    pub hist: HistSpec,
    /// Keys are mostly drawn from `0..range`.
    pub range: i64,
}

impl MapGlobal {
    pub fn keys(&self) -> usize {
        self.kind.keys()
    }

    pub fn is_array(&self) -> bool {
        matches!(self.kind, GlobalKind::Array { .. })
    }

    /// The distinct keys it can hold: its size, or a few for an unbounded one.
    fn room(&self) -> u64 {
        u64::from(self.size.unwrap_or(6))
    }
}

/// Whether `[k] in t` is used on arrays of aggregates too (a compiler shape: the kinds pass
/// and the compiler accept it). The reference VM's stores look `in` up among arrays only
/// (`MemStore::map_get`, `RuntimeStore::map_get`), so it reads 0 where the kernel finds the
/// element.
const IN_AGGREGATES: bool = true;

const NO_HIST: HistSpec = HistSpec {
    log: false,
    linear: None,
    variance: None,
};

/// The arrays and aggregates of every image. Wrapping arrays (`global a%`) are left out: the
/// kernel's LRU map evicts roughly, not exactly the oldest element as the reference does.
/// Their lock stripes: 12, 13, 11, 44, 63 (shared with scalar 63), 14, 15, 16, 8 (shared
/// with scalar 8), 17, 9 (shared with scalar 9).
///
/// The aggregates whose `@variance` is read ([`HistSpec::variance`]) start empty and are
/// used only when the hits run pinned to one CPU: SystemTap's variance of values added on
/// several CPUs is not the variance of the same values added on one (the reference VM's
/// single copy), and the starting elements are added to CPU 0's copy.
pub const MAPS: &[MapGlobal] = &[
    // a[4]: full after 4 of its 6 usual keys.
    MapGlobal {
        g: 12,
        kind: GlobalKind::Array { keys: 1 },
        size: Some(4),
        hist: NO_HIST,
        range: 6,
    },
    // b[6] with 2 keys: 9 usual keys.
    MapGlobal {
        g: 13,
        kind: GlobalKind::Array { keys: 2 },
        size: Some(6),
        hist: NO_HIST,
        range: 3,
    },
    // c: 1 key, the default size.
    MapGlobal {
        g: 75,
        kind: GlobalKind::Array { keys: 1 },
        size: None,
        hist: NO_HIST,
        range: 8,
    },
    // d[1]: one element.
    MapGlobal {
        g: 300,
        kind: GlobalKind::Array { keys: 1 },
        size: Some(1),
        hist: NO_HIST,
        range: 3,
    },
    // e[5] with 3 keys: 8 usual keys.
    MapGlobal {
        g: 127,
        kind: GlobalKind::Array { keys: 3 },
        size: Some(5),
        hist: NO_HIST,
        range: 2,
    },
    // s: a scalar aggregate with @hist_log and @hist_linear(s, -40, 40, 10).
    MapGlobal {
        g: 14,
        kind: GlobalKind::Stat { keys: 0 },
        size: None,
        hist: HistSpec {
            log: true,
            linear: Some((-40, 40, 10)),
            variance: None,
        },
        range: 0,
    },
    // u: a scalar aggregate without histograms.
    MapGlobal {
        g: 15,
        kind: GlobalKind::Stat { keys: 0 },
        size: None,
        hist: NO_HIST,
        range: 0,
    },
    // t[3]: an array of aggregates with @hist_log, full after 3 of its 5 usual keys.
    MapGlobal {
        g: 16,
        kind: GlobalKind::Stat { keys: 1 },
        size: Some(3),
        hist: HistSpec {
            log: true,
            linear: None,
            variance: None,
        },
        range: 5,
    },
    // v with 2 keys and @hist_linear(v, 0, 1000, 100).
    MapGlobal {
        g: 200,
        kind: GlobalKind::Stat { keys: 2 },
        size: None,
        hist: HistSpec {
            log: false,
            linear: Some((0, 1000, 100)),
            variance: None,
        },
        range: 3,
    },
    // w: a scalar aggregate read with @variance(w).
    MapGlobal {
        g: 17,
        kind: GlobalKind::Stat { keys: 0 },
        size: None,
        hist: HistSpec {
            log: false,
            linear: None,
            variance: Some(0),
        },
        range: 0,
    },
    // x with 1 key, read with @variance(x[k], 5) and printed with @hist_log.
    MapGlobal {
        g: 201,
        kind: GlobalKind::Stat { keys: 1 },
        size: None,
        hist: HistSpec {
            log: true,
            linear: None,
            variance: Some(5),
        },
        range: 3,
    },
];

/// The declarations of all [`NGLOBALS`] globals: scalars, and the [`MAPS`].
pub fn global_infos() -> &'static [GlobalInfo] {
    static INFOS: OnceLock<Vec<GlobalInfo>> = OnceLock::new();
    INFOS.get_or_init(|| {
        let mut infos: Vec<GlobalInfo> = (0..NGLOBALS)
            .map(|_| GlobalInfo {
                name: String::new(),
                init: 0,
                kind: GlobalKind::Scalar,
                size: None,
                wrap: false,
                hist: NO_HIST,
                read: true,
                written: true,
                span: Span::default(),
                ..Default::default()
            })
            .collect();
        for m in MAPS {
            let i = &mut infos[m.g as usize];
            i.name = format!("m{}", m.g);
            i.kind = m.kind;
            i.size = m.size;
            i.hist = m.hist;
        }
        infos
    })
}

/// One element of a case's starting state: `(global, keys, value)`, put in an array or
/// added to an aggregate.
pub type MapInit = (u32, Vec<i64>, i64);

/// Apply `init` to `store`.
pub fn apply_init(init: &[MapInit], store: &mut dyn GlobalStore) -> Result<(), MapError> {
    for (g, key, v) in init {
        let m = MAPS.iter().find(|m| m.g == *g).expect("a map global");
        let key: Vec<Value> = key.iter().map(|&k| Value::Int(k)).collect();
        if m.is_array() {
            store.map_put(*g, &key, Value::Int(*v))?;
        } else {
            store.stat_add(*g, &key, *v)?;
        }
    }
    Ok(())
}

/// A reference store: `globals` (all of them) and the elements of `init`.
pub fn initial_store(globals: Vec<i64>, init: &[MapInit]) -> MemStore {
    let mut s = MemStore::new(global_infos());
    s.scalars = globals;
    apply_init(init, &mut s).expect("the starting elements fit");
    s
}

/// The elements of every array (sorted by key), those with any.
pub type Arrays = Vec<(u32, Vec<(Vec<Value>, Value)>)>;
/// The elements of every aggregate (sorted by key), those with any.
pub type Aggregates = Vec<(u32, Vec<(Vec<Value>, Aggregate)>)>;

/// What the arrays and aggregates of `store` hold.
pub fn contents(store: &mut dyn GlobalStore) -> (Arrays, Aggregates) {
    let (mut arrays, mut stats) = (Vec::new(), Vec::new());
    for m in MAPS {
        if m.is_array() {
            let mut e = store.map_entries(m.g);
            e.sort();
            if !e.is_empty() {
                arrays.push((m.g, e));
            }
        } else {
            let mut e = store.stat_entries(m.g);
            e.sort_by(|a, b| a.0.cmp(&b.0));
            if !e.is_empty() {
                stats.push((m.g, e));
            }
        }
    }
    (arrays, stats)
}

/// A key drawn as the generator draws them: mostly in the usual range, now and then anything.
fn usual_key(rng: &mut Rng, m: &MapGlobal) -> i64 {
    if m.range == 0 || rng.chance(8) {
        rng.value()
    } else {
        rng.below(m.range as u64) as i64
    }
}

/// The arrays and aggregates a case uses, and the elements they start with (distinct keys, at
/// most as many as fit: a quarter of the time the bounded ones are full). Without `pinned`
/// hits, no aggregate whose variance is read.
pub fn choose(rng: &mut Rng, pinned: bool) -> (Vec<MapGlobal>, Vec<MapInit>) {
    if rng.chance(15) {
        return (Vec::new(), Vec::new());
    }
    let maps: Vec<MapGlobal> = MAPS
        .iter()
        .copied()
        .filter(|m| rng.chance(45) && (pinned || m.hist.variance.is_none()))
        .collect();
    let mut init = Vec::new();
    for m in &maps {
        if m.hist.variance.is_some() {
            continue;
        }
        if m.keys() == 0 {
            for _ in 0..rng.below(4) {
                init.push((m.g, Vec::new(), rng.value()));
            }
            continue;
        }
        let n = if m.size.is_some() && rng.chance(25) {
            m.room()
        } else {
            rng.below(m.room() + 1)
        };
        let mut keys: Vec<Vec<i64>> = Vec::new();
        for _ in 0..4 * n {
            if keys.len() as u64 >= n {
                break;
            }
            let k: Vec<i64> = (0..m.keys()).map(|_| usual_key(rng, m)).collect();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        for k in keys {
            // An aggregate's element gets one to three values.
            let times = if m.is_array() { 1 } else { 1 + rng.below(3) };
            for _ in 0..times {
                init.push((m.g, k.clone(), rng.value()));
            }
        }
    }
    (maps, init)
}

impl Gen<'_> {
    /// The stack room a use of `m` needs (its keys, a value, and a temporary).
    fn map_room(m: &MapGlobal) -> usize {
        2 * m.keys() + 2
    }

    /// A map the current program may use for `pick`, with the room it needs.
    fn pick_map(&mut self, pick: impl Fn(&MapGlobal) -> bool) -> Option<MapGlobal> {
        let room = self.room();
        let ms: Vec<MapGlobal> = self
            .maps
            .iter()
            .copied()
            .filter(|m| pick(m) && Self::map_room(m) <= room)
            .collect();
        (!ms.is_empty()).then(|| self.rng.pick(&ms))
    }

    /// A map the current program may write for `pick`: not one a `foreach` around iterates.
    fn pick_write_map(&mut self, pick: impl Fn(&MapGlobal) -> bool) -> Option<MapGlobal> {
        let iterating = self.iterating.clone();
        self.pick_map(move |m| pick(m) && !iterating.contains(&m.g))
    }

    /// Whether an expression may be an array read (or, in a body, a write) here.
    pub(super) fn can_map_expr(&self) -> bool {
        self.mode != Mode::Entry
            && self.maps.iter().any(|m| {
                Self::map_room(m) <= self.room() && (m.keys() > 0 || self.mode == Mode::Body)
            })
    }

    /// Push the keys of `m`: constants in conditions (as the compiler requires), else mostly
    /// small constants, sometimes a variable or an expression folded into the range, or any
    /// value.
    fn map_keys(&mut self, m: &MapGlobal, d: u32) {
        for _ in 0..m.keys() {
            if self.mode == Mode::Cond {
                let k = usual_key(self.rng, m);
                self.push(k);
                continue;
            }
            match self.rng.below(10) {
                0..=5 => {
                    let k = usual_key(self.rng, m);
                    self.push(k);
                }
                6 | 7 if self.room() >= 2 => {
                    // (e % range): also negative keys
                    self.expr(d.min(1));
                    self.push(m.range.max(1));
                    self.op(Op::Mod);
                }
                8 if self.vars.1 > 0 => {
                    let v = self.var().unwrap_or(0);
                    self.emit(a(Op::LdL, v));
                }
                _ => self.expr(d.min(1)),
            }
        }
    }

    /// A value to store or add: an expression, or one of the generator's values.
    fn map_value(&mut self, d: u32) {
        if self.rng.chance(40) {
            self.push_value();
        } else {
            self.expr(d.min(2));
        }
    }

    /// An array expression: pushes one value. In conditions `a[k]` and `[k] in a` with
    /// constant keys; in bodies also the writes as values. Needs [`Gen::can_map_expr`].
    pub(super) fn map_expr(&mut self, d: u32) {
        if self.mode != Mode::Body || self.rng.chance(40) {
            return self.map_read(d);
        }
        match self.rng.below(12) {
            0..=3 => self.map_write(d),
            4..=6 => self.map_incdec(true),
            7 => self.map_op_assign(d),
            10 | 11 => self.stat_read(d),
            _ => {
                // (t[k] <<< v) as a value: 0
                if !self.stat_add(d) {
                    return self.map_read(d);
                }
                self.push(0);
            }
        }
    }

    /// `a[k]` or `[k] in a` (`in` of an array of aggregates too).
    fn map_read(&mut self, d: u32) {
        let Some(m) = self.pick_map(|m| m.keys() > 0) else {
            return self.leaf();
        };
        if !m.is_array() && !IN_AGGREGATES {
            return self.leaf();
        }
        let op = if !m.is_array() || self.rng.chance(35) {
            Op::MapIn
        } else {
            Op::MapGet
        };
        self.map_keys(&m, d);
        self.emit(Insn::new(op, m.g as i32, m.keys() as i64));
    }

    /// `@count(s)`, `@sum(t[k])`, `@min`, `@max`, `@avg`, or `@variance` of an aggregate
    /// that keeps it: pushes the statistic (bodies only: the language has no aggregate
    /// reads in conditions).
    fn stat_read(&mut self, d: u32) {
        let Some(m) = self.pick_map(|m| !m.is_array()) else {
            return self.leaf();
        };
        self.map_keys(&m, d);
        // Half of them cannot be empty aggregates ("empty aggregate" ends the body).
        let kind = match self.rng.below(12) {
            0..=2 => StatKind::Count,
            3..=5 => StatKind::Sum,
            6 | 7 => StatKind::Min,
            8 => StatKind::Max,
            9 => StatKind::Avg,
            _ if m.hist.variance.is_some() => StatKind::Variance,
            _ => StatKind::Avg,
        };
        let imm = m.keys() as i64 | (kind as i64) << STAT_KIND_SHIFT;
        self.emit(Insn::new(Op::StatGet, m.g as i32, imm));
    }

    /// `a[k] = v`, `a[k] += v` or `a[k] -= v`: pushes the new value.
    fn map_write(&mut self, d: u32) {
        let Some(m) = self.pick_write_map(MapGlobal::is_array) else {
            return self.leaf();
        };
        self.map_keys(&m, d);
        self.map_value(d);
        let op = match self.rng.below(4) {
            0 | 1 => Op::MapPut,
            2 => Op::MapAdd,
            _ => {
                self.op(Op::Neg);
                Op::MapAdd
            }
        };
        self.emit(Insn::new(op, m.g as i32, m.keys() as i64));
    }

    /// `a[k]++`, `--a[k]`: pushes the new value, or the old one (`value`).
    fn map_incdec(&mut self, value: bool) {
        let Some(m) = self.pick_write_map(MapGlobal::is_array) else {
            return self.leaf();
        };
        self.map_keys(&m, 1);
        let d = self.rng.pick(&[1, -1]);
        self.push(d);
        self.emit(Insn::new(Op::MapAdd, m.g as i32, m.keys() as i64));
        if value && self.rng.chance(50) {
            // postfix: the old value, new - d
            self.push(d);
            self.op(Op::Sub);
        }
    }

    /// `a[k] op= v` for another operator: keys to temporaries, read, combine, write back.
    /// Pushes the new value.
    fn map_op_assign(&mut self, d: u32) {
        let Some(m) = self.pick_write_map(MapGlobal::is_array) else {
            return self.leaf();
        };
        let n = m.keys() as i32;
        if self.top + n > MAX_LOCALS as i32 {
            return self.map_write(d);
        }
        let t = self.top;
        self.top += n;
        self.map_keys(&m, d);
        for k in (0..n).rev() {
            self.emit(a(Op::StL, t + k));
        }
        for _ in 0..2 {
            for k in 0..n {
                self.emit(a(Op::LdL, t + k));
            }
        }
        self.emit(Insn::new(Op::MapGet, m.g as i32, n as i64));
        self.map_value(d);
        let op = self.binop();
        self.op(op);
        self.emit(Insn::new(Op::MapPut, m.g as i32, n as i64));
        self.top -= n;
    }

    /// `s <<< v` or `t[k] <<< v`; `false` if no aggregate fits here.
    fn stat_add(&mut self, d: u32) -> bool {
        let Some(m) = self.pick_write_map(|m| !m.is_array()) else {
            return false;
        };
        self.map_keys(&m, d);
        if m.hist.linear.is_some() && self.rng.chance(40) {
            // a value inside the linear histogram's range, or at its edges
            let (lo, hi, _) = m.hist.linear.unwrap_or_default();
            let v = lo - 15 + self.rng.below((hi - lo + 30) as u64) as i64;
            self.push(v);
        } else {
            self.map_value(d);
        }
        self.emit(Insn::new(Op::StatAdd, m.g as i32, m.keys() as i64));
        true
    }

    /// `foreach ([v =] [k...] in m[+-] [limit N]) { ... }` as the compiler emits it: the
    /// limit, `IterStart`, `IterNext` into temporaries at the loop's header, the keys (and
    /// the value) copied to variables now and then, the body (which writes no array a loop
    /// around iterates), `continue` to the header. Arrays and arrays of aggregates (by
    /// `@count`); an aggregate sorted by value needs two more call frames in the kernel
    /// (the scan and its loop over the CPUs), so it is not nested in more than three loops.
    pub(super) fn foreach_stmt(&mut self, depth: u32) {
        let deep = self.loop_nest >= 4;
        let Some(m) = self.pick_map(|m| m.keys() > 0) else {
            return self.assign_var(2);
        };
        let n = m.keys() as u32;
        let mut by = match self.rng.below(3) {
            0 => 0,
            1 => 1,
            _ => 2 + self.rng.below(u64::from(n)) as u8,
        };
        if by == 1 && !m.is_array() && deep {
            by = 0;
        }
        let with_value = m.is_array() && self.rng.chance(40);
        let ni = n as i32 + i32::from(with_value);
        if self.top + ni > MAX_LOCALS as i32 || self.iterating.len() >= MAX_ITERS {
            return self.assign_var(2);
        }
        let t = self.top;
        self.top += ni;
        let spec = IterSpec {
            by,
            desc: self.rng.chance(50),
            limit: self.rng.chance(30),
        };
        if spec.limit {
            match self.rng.below(4) {
                0 => self.push(-1),
                1 => {
                    self.expr(1);
                    self.push(7);
                    self.op(Op::And);
                }
                _ => {
                    let l = self.rng.below(5) as i64;
                    self.push(l);
                }
            }
        }
        let slot = self.iterating.len() as i64;
        self.emit(Insn::new(
            Op::IterStart,
            m.g as i32,
            slot | spec.pack() << 8,
        ));
        let top = self.code.len();
        let next = self.emit(Insn::new(
            Op::IterNext,
            0,
            slot | (t as i64) << 8 | (with_value as i64) << 28,
        ));
        for k in 0..ni {
            if self.rng.chance(50) {
                if let Some(v) = self.var() {
                    self.emit(a(Op::LdL, t + k));
                    self.emit(a(Op::StL, v));
                }
            }
        }
        self.iterating.push(m.g);
        self.loops.push(Loop::default());
        self.loop_nest += 1;
        let body = 1 + self.rng.below(3) as u32;
        self.block(body, depth - 1);
        // The body reads the loop's keys (the temporaries) now and then.
        if self.rng.chance(50) && self.room() >= 2 {
            let k = self.rng.below(ni as u64) as i32;
            let fmt = self.rng.below(FORMATS) as i32;
            self.emit(a(Op::LdL, t + k));
            self.emit(out(fmt, 1));
        }
        self.loop_nest -= 1;
        let l = self.loops.pop().unwrap_or_default();
        self.iterating.pop();
        for j in l.continues {
            self.patch_to(j, top);
        }
        self.jump_back(Op::Jmp, top);
        self.patch(next);
        for j in l.breaks {
            self.patch(j);
        }
        self.top -= ni;
    }

    /// A statement on an array or aggregate; leaves the stack as it found it.
    pub(super) fn map_stmt(&mut self, ed: u32) {
        if self.maps.is_empty() || self.room() < 4 {
            return self.assign_var(ed);
        }
        match self.rng.below(100) {
            0..=24 => {
                self.map_write(ed);
                self.op(Op::Pop);
            }
            25..=39 => {
                self.map_incdec(false);
                self.op(Op::Pop);
            }
            40..=46 => {
                self.map_op_assign(ed);
                self.op(Op::Pop);
            }
            47..=64 => {
                // delete a[k] / delete t[k]
                let Some(m) = self.pick_write_map(|m| m.keys() > 0) else {
                    return self.assign_var(ed);
                };
                self.map_keys(&m, ed);
                self.emit(Insn::new(Op::MapDel, m.g as i32, m.keys() as i64));
            }
            65..=91 => {
                if !self.stat_add(ed) {
                    self.map_write(ed);
                    self.op(Op::Pop);
                }
            }
            92..=94 => {
                // delete a (a whole array or aggregate)
                let Some(m) = self.pick_write_map(|_| true) else {
                    return self.assign_var(ed);
                };
                self.emit(a(Op::MapClear, m.g as i32));
            }
            _ => {
                self.map_read(ed);
                self.op(Op::Pop);
            }
        }
    }
}
