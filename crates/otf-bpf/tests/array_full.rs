//! A full `global a[4]` in kernel probe bodies: the first 4 keys go in, a 5th key is
//! SystemTap's "Array overflow" (`RuntimeErrorKind::ArrayFull`) and leaves the array as it
//! was, whichever way the element is inserted (`a[k] = v` with an integer or a string, `a[k]
//! += v`, `t[k] <<< v`), from either CPU, after deletes, and with user space inserting too
//! (root; each hit through `BPF_PROG_TEST_RUN`, which runs it on this thread's CPU).
//!
//! On kernels before 6.4 the inlined `bpf_map_update_elem` returns the hash map's `int`
//! error in the low 32 bits of r0 only (docs/kernel-facts.md): a 64-bit `r0 s< 0` test
//! misses it and the 5th key was silently dropped with no error.

mod common;

use otf_bpf::RuntimeStore;
use otf_bpf::{cookie, Event, Runtime, RuntimeErrorKind};
use otf_script::store::{MapError, Value};
use otf_script::vm::GlobalStore;

/// One array per way of inserting, and the probes that use them: unit `u` inserts key `k` (the
/// global `k`) into array `u`; the last unit deletes key `k` from every array.
const SCRIPT: &str = r#"
global k
global a[4], s[4], b[4], t[4]
probe kernel.trace("sched:sched_switch") { a[k] = k + 100 }
probe kernel.trace("sched:sched_switch") { s[k] = "x" }
probe kernel.trace("sched:sched_switch") { b[k] += 7 }
probe kernel.trace("sched:sched_switch") { t[k] <<< k }
probe kernel.trace("sched:sched_switch") { delete a[k]; delete s[k]; delete b[k]; delete t[k] }
"#;

/// The arrays, in unit order.
const ARRAYS: [&str; 4] = ["a", "s", "b", "t"];
const DELETE_UNIT: u32 = 4;

struct Loaded {
    rt: Runtime,
    /// Global indexes by name.
    names: Vec<String>,
    /// The first instruction of each unit's body.
    bodies: Vec<u32>,
    /// One past each unit's last instruction.
    ends: Vec<u32>,
}

impl Loaded {
    fn global(&self, name: &str) -> u32 {
        self.names.iter().position(|n| n == name).expect(name) as u32
    }
}

fn load() -> Option<Loaded> {
    if !common::can_test_run_bpf("array_full") {
        return None;
    }
    let (c, image) = common::compile_kernel_units(
        SCRIPT,
        |_| "kernel.trace(\"sched:sched_switch\")".into(),
        |_| String::new(),
    );
    for name in ARRAYS {
        let g = c.globals.iter().find(|g| g.name == name).expect(name);
        assert_eq!(g.max_entries(), 4, "{name}");
    }
    let rt = common::load_test_entry(&image).unwrap_or_else(|e| panic!("{e}"));
    Some(Loaded {
        rt,
        names: c.globals.iter().map(|g| g.name.clone()).collect(),
        bodies: c.units.iter().map(|u| u.body.start).collect(),
        ends: c.units.iter().map(|u| u.body.end).collect(),
    })
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; 0 is this thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(
        r,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `set` is initialised and `c` < CPU_SETSIZE: CPU_ISSET reads within it.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Run this thread on `cpus` only.
fn pin(cpus: &[usize]) {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: `c` < CPU_SETSIZE (it came from `allowed_cpus`), so CPU_SET writes within
        // `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size given; 0 is this thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        r,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// Run unit `unit` once with `k = key` on `cpu`; the kinds of its run-time errors.
fn hit(l: &Loaded, unit: u32, key: i64, cpu: usize) -> Vec<RuntimeErrorKind> {
    pin(&[cpu]);
    let mut ev = l.rt.events().expect("events");
    l.rt.globals().set(l.global("k"), key);
    l.rt.test_run_hit(cookie(unit)).expect("test run");
    let mut errors = Vec::new();
    for e in ev.drain().expect("drain") {
        if let Event::Error { pidx, kind, pc } = e {
            assert_eq!(pidx, unit, "{kind:?}");
            let u = unit as usize;
            assert!(
                (l.bodies[u]..l.ends[u]).contains(&pc),
                "{kind:?} at pc {pc}, outside unit {unit}"
            );
            errors.push(kind);
        }
    }
    errors
}

/// The keys of array `name`, sorted.
fn keys(store: &mut RuntimeStore<'_>, l: &Loaded, name: &str) -> Vec<i64> {
    let g = l.global(name);
    let mut k: Vec<i64> = if name == "t" {
        store
            .stat_entries(g)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    } else {
        store
            .map_entries(g)
            .into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
    }
    .into_iter()
    .map(|k| match k.as_slice() {
        [Value::Int(i)] => *i,
        other => panic!("{name}: key {other:?}"),
    })
    .collect();
    k.sort_unstable();
    k
}

/// A user-space insert of `key` into array `unit` (as a `begin` body does).
fn user_put(
    store: &mut RuntimeStore<'_>,
    l: &Loaded,
    unit: usize,
    key: i64,
) -> Result<(), MapError> {
    let g = l.global(ARRAYS[unit]);
    let k = [Value::Int(key)];
    match ARRAYS[unit] {
        "s" => store.map_put(g, &k, Value::Str("u".into())),
        "t" => store.stat_add(g, &k, 1),
        _ => store.map_put(g, &k, Value::Int(1)),
    }
}

#[test]
fn a_full_array_refuses_a_fifth_key_from_kernel_bodies() {
    let Some(l) = load() else { return };
    let cpus = allowed_cpus();
    let home = cpus.clone();
    let full = vec![RuntimeErrorKind::ArrayFull];
    for (unit, name) in ARRAYS.iter().enumerate() {
        let u = unit as u32;
        // Keys 0..4 from alternating CPUs: each goes in.
        for key in 0..4 {
            let cpu = cpus[key as usize % cpus.len()];
            assert_eq!(hit(&l, u, key, cpu), vec![], "{name}[{key}] on CPU {cpu}");
        }
        // The 5th key, from every CPU: Array overflow, nothing inserted.
        for &cpu in &cpus {
            assert_eq!(hit(&l, u, 4, cpu), full, "{name}[4] on CPU {cpu}");
        }
        assert_eq!(keys(&mut l.rt.store(), &l, name), [0, 1, 2, 3], "{name}");
        // An element that exists is updated in a full array.
        assert_eq!(hit(&l, u, 2, cpus[0]), vec![], "{name}[2] again");
        // A delete (from the other CPU) makes room for exactly one key.
        assert_eq!(hit(&l, DELETE_UNIT, 0, *cpus.last().unwrap()), vec![]);
        assert_eq!(hit(&l, u, 5, cpus[0]), vec![], "{name}[5] after a delete");
        for &cpu in &cpus {
            assert_eq!(hit(&l, u, 6, cpu), full, "{name}[6] on CPU {cpu}");
        }
        let mut store = l.rt.store();
        assert_eq!(keys(&mut store, &l, name), [1, 2, 3, 5], "{name}");
        // User space sees the same limit.
        assert_eq!(
            user_put(&mut store, &l, unit, 7),
            Err(MapError::Full { max: 4 }),
            "{name}[7] from user space"
        );
        // And a key user space inserts counts against it in the kernel.
        store.map_delete(l.global(name), &[Value::Int(1)]);
        assert_eq!(user_put(&mut store, &l, unit, 8), Ok(()), "{name}[8]");
        for &cpu in &cpus {
            assert_eq!(hit(&l, u, 9, cpu), full, "{name}[9] on CPU {cpu}");
        }
        assert_eq!(keys(&mut l.rt.store(), &l, name), [2, 3, 5, 8], "{name}");
    }
    // The values: a[k] = k + 100, s[k] = "x" (8 from user space: 1, "u"), b[k] += 7 (b[2]
    // twice).
    let mut store = l.rt.store();
    let a = |k: i64| [Value::Int(k)];
    assert_eq!(store.map_get(l.global("a"), &a(5)), Some(Value::Int(105)));
    assert_eq!(store.map_get(l.global("a"), &a(8)), Some(Value::Int(1)));
    assert_eq!(
        store.map_get(l.global("s"), &a(3)),
        Some(Value::Str("x".into()))
    );
    assert_eq!(store.map_get(l.global("b"), &a(2)), Some(Value::Int(14)));
    assert_eq!(
        store.stat_get(l.global("t"), &a(2)).map(|s| s.count),
        Some(2)
    );
    // Let the thread run where it could before.
    pin(&home);
}
