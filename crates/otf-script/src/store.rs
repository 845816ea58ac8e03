//! Arrays and statistics aggregates as values: [`Aggregate`] (what `<<<` accumulates and the
//! `@` operators read, with SystemTap's histogram buckets) and [`MemStore`], an in-memory
//! [`GlobalStore`](crate::vm::GlobalStore) with arrays, used by tests and as the model the
//! kernel maps follow.

use std::collections::BTreeMap;
use std::fmt;

use crate::bytecode::{GlobalKind, HistSpec, StatKind, HIST_LOG_BUCKET0, HIST_LOG_BUCKETS};
use crate::sema::GlobalInfo;

/// A key or an element of an array: an integer or a string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// A 64-bit integer.
    Int(i64),
    /// A string.
    Str(String),
}

impl Default for Value {
    fn default() -> Self {
        Value::Int(0)
    }
}

impl Value {
    /// The integer (0 for a string).
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(v) => *v,
            Value::Str(_) => 0,
        }
    }

    /// The string ("" for an integer).
    pub fn str(&self) -> &str {
        match self {
            Value::Int(_) => "",
            Value::Str(s) => s,
        }
    }
}

impl fmt::Display for Value {
    /// Integers in decimal, strings as they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

/// Why an array operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A new key in a full array (SystemTap's "Array overflow").
    Full {
        /// The array's size limit.
        max: u32,
    },
    /// The store has no arrays (an otf bug if reached).
    NoArrays,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MapError::Full { max } => write!(f, "Array overflow, check size limit ({max})"),
            MapError::NoArrays => f.write_str("arrays are not available here"),
        }
    }
}

/// One statistics aggregate: count, sum, min, max and the histograms the script prints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aggregate {
    /// Values added.
    pub count: i64,
    /// Their sum (wrapping).
    pub sum: i64,
    /// The smallest (meaningful when `count > 0`).
    pub min: i64,
    /// The largest.
    pub max: i64,
    /// [`HIST_LOG_BUCKETS`] log buckets when `@hist_log` is used, else empty.
    pub log: Vec<i64>,
    /// The linear buckets (underflow first, overflow last) when `@hist_linear` is used.
    pub linear: Vec<i64>,
}

/// The `@hist_log` bucket of `v`: [`HIST_LOG_BUCKET0`] for 0, `BUCKET0 + 1 + floor(log2 v)`
/// for positive values, mirrored below `BUCKET0` for negative ones (SystemTap's
/// `_stp_val_to_bucket`).
pub fn log_bucket(v: i64) -> usize {
    if v == 0 {
        return HIST_LOG_BUCKET0;
    }
    let m = v.unsigned_abs();
    let bits = 64 - m.leading_zeros() as usize; // 1..=64
    let pos = HIST_LOG_BUCKET0 + bits;
    if v < 0 {
        HIST_LOG_BUCKETS - pos
    } else {
        pos.min(HIST_LOG_BUCKETS - 1)
    }
}

/// The smallest value of log bucket `b` (SystemTap's `_stp_bucket_to_val`).
pub fn log_bucket_value(b: usize) -> i64 {
    if b == HIST_LOG_BUCKET0 {
        0
    } else if b < HIST_LOG_BUCKET0 {
        i64::MIN >> b
    } else {
        1i64 << (b - HIST_LOG_BUCKET0 - 1)
    }
}

/// The `@hist_linear(lo, _, step)` bucket of `v` among `n` buckets (0: underflow, `n - 1`:
/// overflow).
pub fn linear_bucket(v: i64, lo: i64, step: i64, n: usize) -> usize {
    let d = v.wrapping_sub(lo);
    let b = if d < 0 {
        0
    } else {
        (d as u64 / step as u64) as usize + 1
    };
    b.min(n - 1)
}

impl Aggregate {
    /// An empty aggregate with the buckets `hist` asks for.
    pub fn new(hist: &HistSpec) -> Aggregate {
        Aggregate {
            log: if hist.log {
                vec![0; HIST_LOG_BUCKETS]
            } else {
                Vec::new()
            },
            linear: vec![0; hist.linear_buckets()],
            ..Aggregate::default()
        }
    }

    /// Add one value (SystemTap's `__stp_stat_add`).
    pub fn add(&mut self, v: i64, hist: &HistSpec) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum = self.sum.wrapping_add(v);
        if !self.log.is_empty() {
            self.log[log_bucket(v)] += 1;
        }
        if let Some((lo, _, step)) = hist.linear {
            let n = self.linear.len();
            if n > 0 {
                self.linear[linear_bucket(v, lo, step, n)] += 1;
            }
        }
    }

    /// Fold another CPU's copy into this one.
    pub fn merge(&mut self, o: &Aggregate) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = o.min;
            self.max = o.max;
        } else {
            self.min = self.min.min(o.min);
            self.max = self.max.max(o.max);
        }
        self.count += o.count;
        self.sum = self.sum.wrapping_add(o.sum);
        for (a, b) in self.log.iter_mut().zip(&o.log) {
            *a += b;
        }
        for (a, b) in self.linear.iter_mut().zip(&o.linear) {
            *a += b;
        }
    }

    /// A statistic; `None` for `@min`, `@max`, `@avg` of an empty aggregate (SystemTap's
    /// run-time error). `@avg` truncates toward zero.
    pub fn stat(&self, k: StatKind) -> Option<i64> {
        match k {
            StatKind::Count => Some(self.count),
            StatKind::Sum => Some(self.sum),
            _ if self.count == 0 => None,
            StatKind::Min => Some(self.min),
            StatKind::Max => Some(self.max),
            StatKind::Avg => Some(self.sum / self.count),
            StatKind::Variance => None,
        }
    }
}

/// An in-memory store: scalar globals and one ordered map per array or aggregate, with the
/// size limits and wrapping of the script's declarations.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    /// The scalar values by global index (arrays' slots stay 0).
    pub scalars: Vec<i64>,
    infos: Vec<GlobalInfo>,
    strings: BTreeMap<u32, String>,
    arrays: BTreeMap<u32, BTreeMap<Vec<Value>, Value>>,
    stats: BTreeMap<u32, BTreeMap<Vec<Value>, Aggregate>>,
    /// Insertion order of each array's keys, for `global a%`.
    order: BTreeMap<u32, Vec<Vec<Value>>>,
}

impl MemStore {
    /// A store for `globals`, each scalar at its initial value.
    pub fn new(globals: &[GlobalInfo]) -> MemStore {
        MemStore {
            scalars: globals.iter().map(|g| g.init).collect(),
            infos: globals.to_vec(),
            strings: globals
                .iter()
                .enumerate()
                .filter_map(|(g, i)| i.init_str.clone().map(|s| (g as u32, s)))
                .collect(),
            ..MemStore::default()
        }
    }

    fn info(&self, g: u32) -> Option<&GlobalInfo> {
        self.infos.get(g as usize)
    }
}

impl crate::vm::GlobalStore for MemStore {
    fn load(&self, idx: u32) -> i64 {
        self.scalars.get(idx as usize).copied().unwrap_or(0)
    }
    fn store(&mut self, idx: u32, v: i64) {
        if let Some(x) = self.scalars.get_mut(idx as usize) {
            *x = v;
        }
    }
    fn len(&self) -> usize {
        self.scalars.len()
    }
    fn load_str(&self, g: u32) -> String {
        self.strings.get(&g).cloned().unwrap_or_default()
    }
    fn store_str(&mut self, g: u32, s: &str) {
        self.strings.insert(g, s.to_string());
    }
    fn map_get(&mut self, g: u32, key: &[Value]) -> Option<Value> {
        self.arrays.get(&g)?.get(key).cloned()
    }
    fn map_put(&mut self, g: u32, key: &[Value], v: Value) -> Result<(), MapError> {
        let (max, wrap) = self
            .info(g)
            .map_or((crate::bytecode::MAXMAPENTRIES, false), |i| {
                (i.max_entries(), i.wrap)
            });
        let a = self.arrays.entry(g).or_default();
        if let Some(x) = a.get_mut(key) {
            *x = v;
            return Ok(());
        }
        let order = self.order.entry(g).or_default();
        if a.len() as u32 >= max {
            if !wrap {
                return Err(MapError::Full { max });
            }
            while a.len() as u32 >= max && !order.is_empty() {
                let old = order.remove(0);
                a.remove(&old);
            }
        }
        a.insert(key.to_vec(), v);
        order.push(key.to_vec());
        Ok(())
    }
    fn map_delete(&mut self, g: u32, key: &[Value]) {
        if let Some(a) = self.arrays.get_mut(&g) {
            a.remove(key);
        }
        if let Some(s) = self.stats.get_mut(&g) {
            s.remove(key);
        }
        if let Some(o) = self.order.get_mut(&g) {
            o.retain(|k| k != key);
        }
    }
    fn map_clear(&mut self, g: u32) {
        self.arrays.remove(&g);
        self.stats.remove(&g);
        self.order.remove(&g);
    }
    fn map_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Value)> {
        self.arrays
            .get(&g)
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
    fn stat_add(&mut self, g: u32, key: &[Value], v: i64) -> Result<(), MapError> {
        let Some(info) = self.info(g) else {
            return Err(MapError::NoArrays);
        };
        let (hist, max, keyed) = (
            info.hist,
            info.max_entries(),
            matches!(info.kind, GlobalKind::Stat { keys } if keys > 0),
        );
        let s = self.stats.entry(g).or_default();
        if keyed && !s.contains_key(key) && s.len() as u32 >= max {
            return Err(MapError::Full { max });
        }
        s.entry(key.to_vec())
            .or_insert_with(|| Aggregate::new(&hist))
            .add(v, &hist);
        Ok(())
    }
    fn stat_get(&mut self, g: u32, key: &[Value]) -> Option<Aggregate> {
        self.stats.get(&g)?.get(key).cloned()
    }
    fn stat_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Aggregate)> {
        self.stats
            .get(&g)
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

/// Scalars from one store, arrays and aggregates from a [`MemStore`]: how `begin` and `end`
/// bodies see the script's globals (the scalars live in the kernel's shared map).
pub struct Split<'a, S: crate::vm::GlobalStore> {
    /// The scalar globals.
    pub scalars: S,
    /// The arrays and aggregates.
    pub maps: &'a mut MemStore,
}

impl<S: crate::vm::GlobalStore> crate::vm::GlobalStore for Split<'_, S> {
    fn load(&self, idx: u32) -> i64 {
        self.scalars.load(idx)
    }
    fn store(&mut self, idx: u32, v: i64) {
        self.scalars.store(idx, v)
    }
    fn len(&self) -> usize {
        self.scalars.len()
    }
    fn load_str(&self, g: u32) -> String {
        self.maps.load_str(g)
    }
    fn store_str(&mut self, g: u32, s: &str) {
        self.maps.store_str(g, s)
    }
    fn map_get(&mut self, g: u32, key: &[Value]) -> Option<Value> {
        self.maps.map_get(g, key)
    }
    fn map_put(&mut self, g: u32, key: &[Value], v: Value) -> Result<(), MapError> {
        self.maps.map_put(g, key, v)
    }
    fn map_delete(&mut self, g: u32, key: &[Value]) {
        self.maps.map_delete(g, key)
    }
    fn map_clear(&mut self, g: u32) {
        self.maps.map_clear(g)
    }
    fn map_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Value)> {
        self.maps.map_entries(g)
    }
    fn stat_add(&mut self, g: u32, key: &[Value], v: i64) -> Result<(), MapError> {
        self.maps.stat_add(g, key, v)
    }
    fn stat_get(&mut self, g: u32, key: &[Value]) -> Option<Aggregate> {
        self.maps.stat_get(g, key)
    }
    fn stat_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Aggregate)> {
        self.maps.stat_entries(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_buckets_follow_systemtap() {
        // _stp_val_to_bucket: 0 -> 64, 1 -> 65, 2..3 -> 66, 4..7 -> 67, -1 -> 63.
        assert_eq!(log_bucket(0), 64);
        assert_eq!(log_bucket(1), 65);
        assert_eq!(log_bucket(2), 66);
        assert_eq!(log_bucket(3), 66);
        assert_eq!(log_bucket(4), 67);
        assert_eq!(log_bucket(-1), 63);
        assert_eq!(log_bucket(-3), 62);
        assert_eq!(log_bucket(i64::MAX), 127);
        assert_eq!(log_bucket(i64::MIN), 0);
        for b in 0..HIST_LOG_BUCKETS {
            let v = log_bucket_value(b);
            if b != 0 {
                assert_eq!(log_bucket(v), b, "bucket {b} value {v}");
            }
        }
        assert_eq!(log_bucket_value(65), 1);
        assert_eq!(log_bucket_value(67), 4);
        assert_eq!(log_bucket_value(63), -1);
    }

    #[test]
    fn linear_buckets_have_under_and_overflow() {
        // @hist_linear(x, 0, 100, 10): (100 - 0) / 10 + 3 = 13 buckets (SystemTap's count):
        // 0 below 0, 1..=10 the ten steps, 11 for 100..110, 12 the overflow.
        assert_eq!(linear_bucket(-1, 0, 10, 13), 0);
        assert_eq!(linear_bucket(0, 0, 10, 13), 1);
        assert_eq!(linear_bucket(9, 0, 10, 13), 1);
        assert_eq!(linear_bucket(10, 0, 10, 13), 2);
        assert_eq!(linear_bucket(99, 0, 10, 13), 10);
        assert_eq!(linear_bucket(100, 0, 10, 13), 11);
        assert_eq!(linear_bucket(110, 0, 10, 13), 12);
        assert_eq!(linear_bucket(i64::MAX, 0, 10, 13), 12);
    }

    #[test]
    fn aggregate_stats_and_empty_errors() {
        let h = HistSpec::default();
        let mut a = Aggregate::new(&h);
        assert_eq!(a.stat(StatKind::Count), Some(0));
        assert_eq!(a.stat(StatKind::Avg), None);
        for v in [5, -3, 10] {
            a.add(v, &h);
        }
        assert_eq!(a.stat(StatKind::Min), Some(-3));
        assert_eq!(a.stat(StatKind::Max), Some(10));
        assert_eq!(a.stat(StatKind::Sum), Some(12));
        assert_eq!(a.stat(StatKind::Avg), Some(4));
        let mut b = Aggregate::new(&h);
        b.add(-7, &h);
        a.merge(&b);
        assert_eq!((a.count, a.min, a.max, a.sum), (4, -7, 10, 5));
    }
}
