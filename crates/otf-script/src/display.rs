//! The values SystemTap prints at exit for globals that are written and never read (its
//! `add_global_var_display`): `x=0x5` for a scalar (`%#x`), one `a[k1,k2]=0x3` line per
//! array element by decreasing value, and `s @count=N @min=… @max=… @sum=… @avg=…` for an
//! aggregate (`s @count=0x0` when it is empty), in declaration order, after the `end` probes.

use crate::bytecode::{GlobalKind, IterSpec};
use crate::sema::GlobalInfo;
use crate::store::Value;
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

/// The exit display of every global that is written and never read, read from `store`.
pub fn unread_globals(globals: &[GlobalInfo], store: &mut dyn GlobalStore) -> String {
    let mut out = String::new();
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
        let name = &info.name;
        match info.kind {
            GlobalKind::Scalar if info.str_value => {
                out.push_str(&format!("{name}={}\n", quoted(&store.load_str(g))))
            }
            GlobalKind::Scalar => out.push_str(&format!("{name}={}\n", hex(store.load(g)))),
            GlobalKind::Array { .. } => {
                let mut elems = store.map_entries(g);
                sort_elements(&mut elems, by_value_desc);
                for (k, v) in elems {
                    out.push_str(&format!("{name}[{}]={}\n", keys(&k), value(&v)));
                }
            }
            GlobalKind::Stat { keys: 0 } => match store.stat_get(g, &[]) {
                Some(a) if a.count > 0 => out.push_str(&format!(
                    "{name} @count={} @min={} @max={} @sum={} @avg={}\n",
                    a.count,
                    a.min,
                    a.max,
                    a.sum,
                    a.sum / a.count
                )),
                _ => out.push_str(&format!("{name} @count=0x0\n")),
            },
            GlobalKind::Stat { .. } => {
                let stats = store.stat_entries(g);
                let mut order: Vec<(Vec<Value>, Value)> = stats
                    .iter()
                    .map(|(k, a)| (k.clone(), Value::Int(a.count)))
                    .collect();
                sort_elements(&mut order, by_value_desc);
                for (k, _) in order {
                    let Some((_, a)) = stats.iter().find(|(kk, _)| *kk == k) else {
                        continue;
                    };
                    if a.count == 0 {
                        continue;
                    }
                    out.push_str(&format!(
                        "{name}[{}] @count={} @min={} @max={} @sum={} @avg={}\n",
                        keys(&k),
                        a.count,
                        a.min,
                        a.max,
                        a.sum,
                        a.sum / a.count
                    ));
                }
            }
        }
    }
    out
}
