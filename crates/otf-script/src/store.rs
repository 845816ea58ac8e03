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
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// A new key in a full array (SystemTap's "Array overflow").
    #[error("Array overflow, check size limit ({max})")]
    Full {
        /// The array's size limit.
        max: u32,
    },
    /// The store has no arrays (an otf bug if reached).
    #[error("arrays are not available here")]
    NoArrays,
}

/// One statistics aggregate: count, sum, min, max, the histograms the script prints and,
/// when the script reads `@variance`, SystemTap's fixed-point state for it.
///
/// An aggregate is one CPU's copy (what [`Aggregate::add`] updates) or several copies
/// combined by [`Aggregate::merge`]. Two aggregates are equal when every statistic reads
/// the same from them (one copy and the same values merged from one CPU are equal).
#[derive(Clone, Debug, Default)]
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
    /// `@variance` is read: SystemTap's bit shift; the state below is kept only then.
    pub var_shift: Option<u8>,
    /// This copy's running mean of the values shifted left by `var_shift` (SystemTap's
    /// `avg_s`).
    pub avg_s: i64,
    /// This copy's sum of the squared deviations from the running mean, at the same scale
    /// (SystemTap's `_M2`).
    pub m2: i64,
    /// The copies merged into this one ([`Aggregate::merge`]), with their terms of the
    /// combined variance; `copies == 0` for one copy.
    pub var_parts: VarParts,
}

impl PartialEq for Aggregate {
    fn eq(&self, o: &Aggregate) -> bool {
        (
            self.count,
            self.sum,
            self.min,
            self.max,
            &self.log,
            &self.linear,
            self.var_shift,
        ) == (o.count, o.sum, o.min, o.max, &o.log, &o.linear, o.var_shift)
            && (self.var_shift.is_none()
                || self.count == 0
                || self.stat(StatKind::Variance) == o.stat(StatKind::Variance))
    }
}

impl Eq for Aggregate {}

/// What the CPUs' copies of an aggregate contribute to `@variance`, summed over the copies
/// (wrapping, as SystemTap's `int64_t`): SystemTap's `_stp_stat_get` combines them with the
/// total variance formula, `S1 = Σ count·(avg_s − avg)²` and `S2 = Σ (count − 1)·variance_s`,
/// where `avg` is only known once every copy is in. `S1` is kept expanded,
/// `Σ count·avg_s² − 2·avg·Σ count·avg_s + avg²·Σ count`, which is the same number modulo
/// 2⁶⁴.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VarParts {
    /// The copies summed (0: none; the aggregate is itself one copy).
    pub copies: u32,
    /// `Σ count·avg_s²`.
    pub sq: i64,
    /// `Σ count·avg_s`.
    pub lin: i64,
    /// `Σ (count − 1)·variance_s`, with `variance_s = _M2 / (count − 1)` of each copy.
    pub s2: i64,
}

impl VarParts {
    /// The terms of one copy with these `count`, `avg_s` and `m2`.
    pub fn of_copy(count: i64, avg_s: i64, m2: i64) -> VarParts {
        let variance_s = div64(m2, count.wrapping_sub(1));
        VarParts {
            copies: 1,
            sq: count.wrapping_mul(avg_s).wrapping_mul(avg_s),
            lin: count.wrapping_mul(avg_s),
            s2: count.wrapping_sub(1).wrapping_mul(variance_s),
        }
    }

    fn plus(self, o: VarParts) -> VarParts {
        VarParts {
            copies: self.copies + o.copies,
            sq: self.sq.wrapping_add(o.sq),
            lin: self.lin.wrapping_add(o.lin),
            s2: self.s2.wrapping_add(o.s2),
        }
    }
}

/// SystemTap's `_stp_div64(NULL, x, y)`: `x / y` truncated toward zero, 0 for `y == 0`,
/// `-x` (wrapping) for `y == -1`.
pub fn div64(x: i64, y: i64) -> i64 {
    match y {
        0 => 0,
        -1 => x.wrapping_neg(),
        _ => x / y,
    }
}

/// One `<<<` of `v` into a copy's `@variance` state, as SystemTap's `__stp_stat_add` does
/// it (Welford's algorithm on values scaled by `2^shift`): `count` is the copy's count
/// before the value. The deviation from the running mean is kept in a C `int` there, so it
/// is cut to 32 bits here too.
pub fn variance_add(count: i64, avg_s: &mut i64, m2: &mut i64, v: i64, shift: u8) {
    let vs = v.wrapping_shl(u32::from(shift));
    if count == 0 {
        *avg_s = vs;
        *m2 = 0;
        return;
    }
    let delta = vs.wrapping_sub(*avg_s) as i32 as i64;
    *avg_s = avg_s.wrapping_add(div64(delta, count.wrapping_add(1)));
    *m2 = m2.wrapping_add(delta.wrapping_mul(vs.wrapping_sub(*avg_s)));
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
            var_shift: hist.variance,
            ..Aggregate::default()
        }
    }

    /// The terms of `@variance` of the copies this aggregate holds (itself if it is one).
    fn parts(&self) -> VarParts {
        if self.var_parts.copies > 0 {
            self.var_parts
        } else if self.count > 0 {
            VarParts::of_copy(self.count, self.avg_s, self.m2)
        } else {
            VarParts::default()
        }
    }

    /// `@variance` as SystemTap's `_stp_stat_get` computes it: `avg = (sum << shift) /
    /// count`, `variance_s = (S1 + S2) / (count − 1)` (0 for one value), and the variance
    /// `variance_s >> 2·shift`, all in wrapping 64-bit integers ([`VarParts`]).
    pub fn variance(&self) -> i64 {
        let shift = u32::from(self.var_shift.unwrap_or(0));
        let p = self.parts();
        let avg = div64(self.sum.wrapping_shl(shift), self.count);
        let s1 =
            p.sq.wrapping_sub(avg.wrapping_mul(2).wrapping_mul(p.lin))
                .wrapping_add(avg.wrapping_mul(avg).wrapping_mul(self.count));
        let variance_s = div64(s1.wrapping_add(p.s2), self.count.wrapping_sub(1));
        // A C shift by 64 or more is the machine's: x86-64 masks the count to 6 bits.
        variance_s.wrapping_shr(2 * shift)
    }

    /// Add one value (SystemTap's `__stp_stat_add`).
    pub fn add(&mut self, v: i64, hist: &HistSpec) {
        if let Some(shift) = hist.variance {
            variance_add(self.count, &mut self.avg_s, &mut self.m2, v, shift);
        }
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
        if self.var_shift.is_some() {
            self.var_parts = self.parts().plus(o.parts());
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

    /// A statistic; `None` for `@min`, `@max`, `@avg` and `@variance` of an empty aggregate
    /// (SystemTap's run-time error). `@avg` truncates toward zero; `@variance` is
    /// [`Aggregate::variance`].
    pub fn stat(&self, k: StatKind) -> Option<i64> {
        match k {
            StatKind::Count => Some(self.count),
            StatKind::Sum => Some(self.sum),
            _ if self.count == 0 => None,
            StatKind::Min => Some(self.min),
            StatKind::Max => Some(self.max),
            StatKind::Avg => Some(self.sum / self.count),
            StatKind::Variance => Some(self.variance()),
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

    /// `@variance` of `values` added to one copy with bit shift `shift`.
    fn variance_of(values: &[i64], shift: u8) -> Option<i64> {
        let h = HistSpec {
            variance: Some(shift),
            ..HistSpec::default()
        };
        let mut a = Aggregate::new(&h);
        for &v in values {
            a.add(v, &h);
        }
        a.stat(StatKind::Variance)
    }

    #[test]
    fn variance_follows_systemtaps_integer_arithmetic() {
        // Worked by hand from __stp_stat_add and _stp_stat_get (shift 0):
        // 1: avg_s 1, M2 0; 2: delta 1, avg_s 1 + 1/2 = 1, M2 1; 3: delta 2, avg_s 1, M2 5;
        // 4: delta 3, avg_s 1, M2 14. Read: avg = 10/4 = 2, S1 = 4·(1−2)² = 4,
        // variance_s = 14/3 = 4, S2 = 3·4 = 12, (4 + 12)/3 = 5 (the sample variance is 1.67).
        assert_eq!(variance_of(&[1, 2, 3, 4], 0), Some(5));
        // Shift 2 (values ×4): avg_s 4, 6, 8, 10 and M2 0, 8, 32, 80; avg = 40/4 = 10,
        // S1 = 0, S2 = 3·(80/3) = 78, 78/3 = 26, 26 >> 4 = 1.
        assert_eq!(variance_of(&[1, 2, 3, 4], 2), Some(1));
        // One value: (S1 + S2)/0 is SystemTap's 0.
        assert_eq!(variance_of(&[42], 0), Some(0));
        assert_eq!(variance_of(&[-7], 5), Some(0));
        // Negative values: -5, 5: delta 10, avg_s 0, M2 50; avg 0, S1 0, S2 50: 50.
        assert_eq!(variance_of(&[-5, 5], 0), Some(50));
        // Truncation toward zero: 0, -3: delta -3, avg_s 0 + (-3/2) = -1,
        // M2 = (-3)·(-3 − (-1)) = 6; avg = -3/2 = -1, S1 = 0, S2 = 6: 6 (not 4.5).
        assert_eq!(variance_of(&[0, -3], 0), Some(6));
        // Equal values: 0.
        assert_eq!(variance_of(&[9, 9, 9], 3), Some(0));
        // The deviation is a C int: 2^32 − 0 is 0 there, so M2 stays 0, and S1 = 2·(2^31)²
        // wraps to i64::MIN, which SystemTap prints.
        assert_eq!(variance_of(&[0, 1 << 32], 0), Some(i64::MIN));
        // Empty: SystemTap's "empty aggregate".
        assert_eq!(variance_of(&[], 0), None);
    }

    #[test]
    fn variance_combines_the_cpus_copies_as_systemtap() {
        let h = HistSpec {
            variance: Some(0),
            ..HistSpec::default()
        };
        // CPU A: 1, 3 (avg_s 2, M2 2); CPU B: 10 (avg_s 10). avg = 14/3 = 4,
        // S1 = 2·(2−4)² + 1·(10−4)² = 44, S2 = 1·(2/1) + 0 = 2, 46/2 = 23.
        let mut a = Aggregate::new(&h);
        a.add(1, &h);
        a.add(3, &h);
        let mut b = Aggregate::new(&h);
        b.add(10, &h);
        let mut all = Aggregate::new(&h);
        all.merge(&a);
        all.merge(&Aggregate::new(&h)); // an empty CPU adds nothing
        all.merge(&b);
        assert_eq!(all.var_parts.copies, 2);
        assert_eq!(all.stat(StatKind::Variance), Some(23));
        assert_eq!((all.count, all.sum), (3, 14));
        // Merged into a copy that has values itself: the same.
        a.merge(&b);
        assert_eq!(a.stat(StatKind::Variance), Some(23));
        // On one CPU the same values give another number: 10 has delta 8, avg_s 2 + 8/3
        // = 4, M2 2 + 8·(10−4) = 50; avg 4, S1 0, S2 2·(50/2) = 50, 50/2 = 25.
        assert_eq!(variance_of(&[1, 3, 10], 0), Some(25));
        // One copy merged equals the copy.
        let mut one = Aggregate::new(&h);
        one.merge(&b);
        assert_eq!(one, b);
    }
}
