//! The values SystemTap prints at exit for globals that are written and never read (its
//! `add_global_var_display`): `x=0x5` for a scalar (`%#x`), one `a[k1,k2]=0x3` line per
//! array element by decreasing value, and `s @count=N @min=… @max=… @sum=… @avg=…` for an
//! aggregate (`s @count=0x0` when it is empty), in declaration order, after the `end` probes.

use crate::bytecode::{GlobalKind, IterSpec};
use crate::sema::GlobalInfo;
use crate::store::{Aggregate, Value};
use crate::vm::{sort_elements, GlobalStore};

fn hex(v: i64) -> String {
    format!("{:#x}", v as u64)
}

/// A string as SystemTap's `%#s` shows it: quoted, with C escapes.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\{:03o}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn value(v: &Value) -> String {
    match v {
        Value::Int(i) => hex(*i),
        Value::Str(s) => quoted(s),
    }
}

fn keys(k: &[Value]) -> String {
    k.iter()
        .map(|v| match v {
            Value::Int(i) => i.to_string(),
            Value::Str(s) => quoted(s),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// What the exit display shows of one global.
#[derive(Clone, Debug, PartialEq)]
pub enum Shown {
    /// An integer or string scalar.
    Scalar {
        /// The global's name.
        name: String,
        /// Its value.
        value: Value,
    },
    /// An array: its elements by decreasing value (ties by key).
    Array {
        /// The global's name.
        name: String,
        /// Keys and values.
        entries: Vec<(Vec<Value>, Value)>,
    },
    /// A scalar aggregate (`None` when empty).
    Stat {
        /// The global's name.
        name: String,
        /// Its statistics.
        stats: Option<Aggregate>,
    },
    /// An array of aggregates, by decreasing count.
    StatArray {
        /// The global's name.
        name: String,
        /// Keys and statistics (non-empty ones).
        entries: Vec<(Vec<Value>, Aggregate)>,
    },
}

/// The globals that are written and never read, in declaration order, read from `store`.
pub fn unread(globals: &[GlobalInfo], store: &mut dyn GlobalStore) -> Vec<Shown> {
    let mut out = Vec::new();
    let by_value_desc = IterSpec {
        by: 1,
        desc: true,
        limit: false,
    };
    for (g, info) in globals.iter().enumerate() {
        if !info.written || info.read {
            continue;
        }
        let g = g as u32;
        let name = info.name.clone();
        out.push(match info.kind {
            GlobalKind::Scalar if info.str_value => Shown::Scalar {
                name,
                value: Value::Str(store.load_str(g)),
            },
            GlobalKind::Scalar => Shown::Scalar {
                name,
                value: Value::Int(store.load(g)),
            },
            GlobalKind::Array { .. } => {
                let mut entries = store.map_entries(g);
                sort_elements(&mut entries, by_value_desc);
                Shown::Array { name, entries }
            }
            GlobalKind::Stat { keys: 0 } => Shown::Stat {
                name,
                stats: store.stat_get(g, &[]).filter(|a| a.count > 0),
            },
            GlobalKind::Stat { .. } => {
                let stats = store.stat_entries(g);
                let mut order: Vec<(Vec<Value>, Value)> = stats
                    .iter()
                    .map(|(k, a)| (k.clone(), Value::Int(a.count)))
                    .collect();
                sort_elements(&mut order, by_value_desc);
                let entries = order
                    .into_iter()
                    .filter_map(|(k, _)| {
                        stats
                            .iter()
                            .find(|(kk, a)| *kk == k && a.count > 0)
                            .map(|(_, a)| (k, a.clone()))
                    })
                    .collect();
                Shown::StatArray { name, entries }
            }
        });
    }
    out
}

fn stats_text(a: &Aggregate) -> String {
    format!(
        "@count={} @min={} @max={} @sum={} @avg={}",
        a.count,
        a.min,
        a.max,
        a.sum,
        a.sum / a.count.max(1)
    )
}

/// The text SystemTap prints for one [`Shown`] global.
pub fn text(shown: &Shown) -> String {
    match shown {
        Shown::Scalar { name, value } => format!("{name}={}\n", self::value(value)),
        Shown::Array { name, entries } => entries
            .iter()
            .map(|(k, v)| format!("{name}[{}]={}\n", keys(k), value(v)))
            .collect(),
        Shown::Stat { name, stats: None } => format!("{name} @count=0x0\n"),
        Shown::Stat {
            name,
            stats: Some(a),
        } => format!("{name} {}\n", stats_text(a)),
        Shown::StatArray { name, entries } => entries
            .iter()
            .map(|(k, a)| format!("{name}[{}] {}\n", keys(k), stats_text(a)))
            .collect(),
    }
}

/// The exit display of every global that is written and never read, read from `store`, as
/// SystemTap prints it.
pub fn unread_globals(globals: &[GlobalInfo], store: &mut dyn GlobalStore) -> String {
    unread(globals, store).iter().map(text).collect()
}
