//! The script's arrays and aggregates in their kernel maps, seen from user space through
//! `Runtime::store`, against the reference `MemStore` on the same operations (root).

use otf_bpf::{LoadOptions, Runtime, RuntimeImage, RuntimeStore};
use otf_codegen::maps::{MapKind, MapSpec};
use otf_script::ast::Span;
use otf_script::bytecode::{GlobalKind, HistSpec};
use otf_script::sema::GlobalInfo;
use otf_script::store::{Aggregate, MapError, MemStore, Value};
use otf_script::vm::GlobalStore;

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

const N: u32 = 0;
const A: u32 = 1;
const W: u32 = 2;
const S: u32 = 3;
const T: u32 = 4;

fn global(
    name: &str,
    kind: GlobalKind,
    size: Option<u32>,
    wrap: bool,
    hist: HistSpec,
) -> GlobalInfo {
    GlobalInfo {
        name: name.into(),
        init: 0,
        kind,
        size,
        wrap,
        hist,
        read: true,
        written: true,
        span: Span::default(),
        ..Default::default()
    }
}

/// `global n = 7; global a[5] (2 keys); global w%[4]; global s (@hist_log, @hist_linear);
/// global t[3] (1 key, @hist_log)`.
fn globals() -> Vec<GlobalInfo> {
    let mut n = global("n", GlobalKind::Scalar, None, false, HistSpec::default());
    n.init = 7;
    vec![
        n,
        global(
            "a",
            GlobalKind::Array { keys: 2 },
            Some(5),
            false,
            HistSpec::default(),
        ),
        global(
            "w",
            GlobalKind::Array { keys: 1 },
            Some(4),
            true,
            HistSpec::default(),
        ),
        global(
            "s_with_a_long_name",
            GlobalKind::Stat { keys: 0 },
            None,
            false,
            HistSpec {
                log: true,
                linear: Some((0, 100, 10)),
                variance: None,
            },
        ),
        global(
            "t",
            GlobalKind::Stat { keys: 1 },
            Some(3),
            false,
            HistSpec {
                log: true,
                linear: None,
                variance: None,
            },
        ),
    ]
}

fn load(infos: &[GlobalInfo]) -> Runtime {
    let image = RuntimeImage {
        globals_init: infos.iter().map(|g| g.init).collect(),
        maps: MapSpec::all(infos),
        ..Default::default()
    };
    // No handler is needed: the maps are created whatever programs are loaded.
    Runtime::load_with(
        &image,
        &LoadOptions {
            kinds: Vec::new(),
            ..Default::default()
        },
    )
    .expect("load")
}

fn needs_root() -> bool {
    skip::need_root("creating BPF maps")
}

/// Both stores, checked to agree after every operation.
struct Both<'a> {
    rt: RuntimeStore<'a>,
    mem: MemStore,
}

/// Integer keys as the stores take them.
fn ks(key: &[i64]) -> Vec<Value> {
    key.iter().map(|&k| Value::Int(k)).collect()
}

/// Integer keys and values of entries.
fn ints(e: Vec<(Vec<Value>, Value)>) -> Vec<(Vec<i64>, i64)> {
    e.into_iter()
        .map(|(k, v)| (k.iter().map(Value::int).collect(), v.int()))
        .collect()
}

impl Both<'_> {
    fn put(&mut self, g: u32, key: &[i64], v: i64) -> Result<(), MapError> {
        let r = self.rt.map_put(g, &ks(key), Value::Int(v));
        assert_eq!(
            r,
            self.mem.map_put(g, &ks(key), Value::Int(v)),
            "put {g} {key:?} {v}"
        );
        r
    }
    fn get(&mut self, g: u32, key: &[i64]) -> Option<i64> {
        let r = self.rt.map_get(g, &ks(key));
        assert_eq!(r, self.mem.map_get(g, &ks(key)), "get {g} {key:?}");
        r.map(|v| v.int())
    }
    fn delete(&mut self, g: u32, key: &[i64]) {
        self.rt.map_delete(g, &ks(key));
        self.mem.map_delete(g, &ks(key));
    }
    fn clear(&mut self, g: u32) {
        self.rt.map_clear(g);
        self.mem.map_clear(g);
    }
    fn entries(&mut self, g: u32) -> Vec<(Vec<i64>, i64)> {
        let mut r = ints(self.rt.map_entries(g));
        let mut m = ints(self.mem.map_entries(g));
        r.sort();
        m.sort();
        assert_eq!(r, m, "entries {g}");
        r
    }
    fn add(&mut self, g: u32, key: &[i64], v: i64) -> Result<(), MapError> {
        let r = self.rt.stat_add(g, &ks(key), v);
        assert_eq!(
            r,
            self.mem.stat_add(g, &ks(key), v),
            "stat_add {g} {key:?} {v}"
        );
        r
    }
    fn stat(&mut self, g: u32, key: &[i64]) -> Option<Aggregate> {
        let r = self.rt.stat_get(g, &ks(key));
        assert_eq!(r, self.mem.stat_get(g, &ks(key)), "stat_get {g} {key:?}");
        r
    }
    fn stats(&mut self, g: u32) -> Vec<(Vec<i64>, Aggregate)> {
        let conv = |e: Vec<(Vec<Value>, Aggregate)>| -> Vec<(Vec<i64>, Aggregate)> {
            e.into_iter()
                .map(|(k, a)| (k.iter().map(Value::int).collect(), a))
                .collect()
        };
        let mut r = conv(self.rt.stat_entries(g));
        let mut m = conv(self.mem.stat_entries(g));
        r.sort_by(|a, b| a.0.cmp(&b.0));
        m.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(r, m, "stat_entries {g}");
        r
    }
}

#[test]
fn the_maps_follow_the_script_declarations() {
    if !needs_root() {
        return;
    }
    let infos = globals();
    let specs = MapSpec::all(&infos);
    let kinds: Vec<_> = specs.iter().map(|m| (m.global, m.kind)).collect();
    assert_eq!(
        kinds,
        [
            (A, MapKind::Hash),
            (W, MapKind::LruHash),
            (S, MapKind::PercpuArray),
            (T, MapKind::PercpuHash)
        ]
    );
    let rt = load(&infos);
    let st = rt.store();
    assert_eq!(st.map_spec(A), Some(&specs[0]));
    assert_eq!(st.map_spec(N), None);
}

#[test]
fn the_runtime_store_agrees_with_the_memory_store() {
    if !needs_root() {
        return;
    }
    let infos = globals();
    let rt = load(&infos);
    let mut b = Both {
        rt: rt.store(),
        mem: MemStore::new(&infos),
    };

    // Scalars: the mmapped globals.
    assert_eq!(b.rt.load(N), 7);
    b.rt.store(N, -9);
    assert_eq!(rt.globals().get(N), Some(-9));
    assert_eq!(GlobalStore::len(&b.rt), infos.len());

    // A HASH array of 5: the 6th new key fails, a known key can still be set.
    assert_eq!(b.get(A, &[0, 0]), None);
    for k in 0..7i64 {
        let r = b.put(A, &[k, -k], 100 * k);
        assert_eq!(r.is_ok(), k < 5, "{k}: {r:?}");
    }
    assert_eq!(b.put(A, &[5, -5], 1), Err(MapError::Full { max: 5 }));
    b.put(A, &[2, -2], i64::MIN).unwrap();
    assert_eq!(b.get(A, &[2, -2]), Some(i64::MIN));
    assert_eq!(b.get(A, &[2, 2]), None);
    assert_eq!(b.entries(A).len(), 5);
    b.delete(A, &[1, -1]);
    b.delete(A, &[1, 1]); // missing: nothing
    assert_eq!(b.get(A, &[1, -1]), None);
    b.put(A, &[i64::MIN, i64::MAX], 3).unwrap();
    b.put(A, &[7, 7], 3).unwrap_err();
    let e = b.entries(A);
    assert_eq!(e[0], (vec![i64::MIN, i64::MAX], 3));
    b.clear(A);
    assert!(b.entries(A).is_empty());
    assert_eq!(b.get(A, &[0, 0]), None);
    for k in 0..5i64 {
        b.put(A, &[k, k], k).unwrap();
    }
    assert_eq!(b.entries(A).len(), 5);
    // Arrays are not aggregates.
    assert_eq!(b.stat(A, &[0, 0]), None);
    assert_eq!(b.rt.map_get(A, &ks(&[0])), None, "wrong number of keys");

    // `global w%[4]`: puts never fail; the newest element is kept. (Which older ones the
    // kernel's LRU evicted is not exactly MemStore's oldest-first.)
    for k in 0..20i64 {
        b.put(W, &[k], -k).unwrap();
        assert_eq!(b.rt.map_get(W, &ks(&[k])), Some(Value::Int(-k)));
    }
    let e = ints(b.rt.map_entries(W));
    assert!(!e.is_empty() && e.len() <= 4, "{e:?}");
    assert!(e.iter().all(|(k, v)| *v == -k[0]), "{e:?}");
    assert!(e.contains(&(vec![19], -19)), "{e:?}");
    b.rt.map_clear(W);
    b.mem.map_clear(W);
    assert!(b.entries(W).is_empty());

    // The scalar aggregate (PERCPU_ARRAY): absent until the first `<<<`.
    assert_eq!(b.stat(S, &[]), None);
    assert!(b.stats(S).is_empty());
    for v in [5, -3, 0, 1000, 42, 99, 100, -1, i64::MAX, i64::MIN] {
        b.add(S, &[], v).unwrap();
        b.stat(S, &[]).expect("added");
    }
    let s = b.stat(S, &[]).unwrap();
    assert_eq!(s.count, 10);
    assert_eq!((s.min, s.max), (i64::MIN, i64::MAX));
    assert_eq!((s.log.len(), s.linear.len()), (128, 13));
    assert_eq!(s.linear.iter().sum::<i64>(), 10);
    assert_eq!(b.stats(S).len(), 1);
    b.delete(S, &[]);
    assert_eq!(b.stat(S, &[]), None);
    b.add(S, &[], 4).unwrap();
    assert_eq!(b.stat(S, &[]).unwrap().count, 1);
    b.clear(S);
    assert_eq!(b.stat(S, &[]), None);
    assert!(b.stats(S).is_empty());
    // Aggregates are not arrays.
    assert_eq!(b.get(S, &[]), None);
    assert!(b.entries(S).is_empty());

    // An array of aggregates of 3 (PERCPU_HASH).
    assert_eq!(b.stat(T, &[1]), None);
    for (k, v) in [(1, 10), (2, -20), (1, 30), (3, 0), (1, 7)] {
        b.add(T, &[k], v).unwrap();
    }
    assert_eq!(b.add(T, &[4], 1), Err(MapError::Full { max: 3 }));
    b.add(T, &[2], 1 << 40).unwrap();
    let t1 = b.stat(T, &[1]).unwrap();
    assert_eq!((t1.count, t1.sum, t1.min, t1.max), (3, 47, 7, 30));
    assert_eq!(b.stats(T).len(), 3);
    b.delete(T, &[2]);
    assert_eq!(b.stat(T, &[2]), None);
    b.add(T, &[4], -5).unwrap();
    assert_eq!(
        b.stats(T).iter().map(|(k, _)| k[0]).collect::<Vec<_>>(),
        [1, 3, 4]
    );
    b.clear(T);
    assert!(b.stats(T).is_empty());
    b.add(T, &[9], 9).unwrap();
    b.stats(T);
}
