//! The script's arrays and statistics aggregates in their kernel maps (one per global, as
//! [`MapSpec`] describes), and [`RuntimeStore`], the user-space view of every global through
//! which `begin`/`end` bodies and the result printing see what the probe bodies wrote.
//!
//! Scalars are read and written in the mmapped shared map ([`GlobalsView`]); arrays and
//! aggregates through bpf(2) (`BPF_MAP_LOOKUP_ELEM`, `BPF_MAP_UPDATE_ELEM`,
//! `BPF_MAP_DELETE_ELEM`, `BPF_MAP_GET_NEXT_KEY`), with the semantics of
//! [`otf_script::store::MemStore`], the reference:
//!
//! - a new key in a full array (`HASH`, preallocated) is [`MapError::Full`]; a `global a%`
//!   (`LRU_HASH`) never fails but evicts: the kernel's LRU evicts roughly the least recently
//!   used elements, in batches, and may start before the map is full, so unlike `MemStore`
//!   which drops exactly the oldest insertion, which elements remain is not exact;
//! - an aggregate's per-CPU copies are combined with [`Aggregate::merge`]; an aggregate with
//!   count 0 (the scalar aggregate before any `<<<`) is absent;
//! - [`GlobalStore::stat_add`] from user space adds to CPU 0's copy, read-modify-write: run it
//!   while no probe body runs (the `begin` and `end` bodies do), or concurrent adds of the
//!   kernel to that element are lost.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use libbpf_rs::{MapHandle, MapType};
use otf_codegen::maps::{zero_size, MapKind, MapSpec, StatLayout};
use otf_codegen::MapId;
use otf_script::bytecode::MAXSTRINGLEN;
use otf_script::store::{linear_bucket, log_bucket, variance_add, Aggregate, MapError, Value};
use otf_script::vm::GlobalStore;

use crate::{create_map, Error, GlobalsView, Result};

/// One array's or aggregate's map.
#[derive(Debug)]
struct GlobalMap {
    spec: MapSpec,
    handle: MapHandle,
}

/// The maps of a runtime's arrays and aggregates, and the zero-filled value new elements are
/// inserted from ([`MapId::Zero`]). Owned by the [`crate::Runtime`]; closed on drop.
#[derive(Debug)]
pub(crate) struct GlobalMaps {
    maps: BTreeMap<u32, GlobalMap>,
    zero: MapHandle,
    /// `libbpf_num_possible_cpus()`: the number of values of a per-CPU lookup.
    ncpus: usize,
    /// The string globals ([`MapId::Strings`]), shared with the generated code.
    strings: StrGlobals,
}

/// The string globals: one mmapped array value ([`MapId::Strings`]) with a MAXSTRINGLEN-byte
/// field per global index, NUL-terminated and zero-padded, read and written in place by the
/// generated code and here by user space.
#[derive(Debug)]
struct StrGlobals {
    handle: MapHandle,
    /// The mmapped value.
    ptr: std::ptr::NonNull<u8>,
    /// The number of fields.
    len: usize,
    mmap_len: usize,
}

impl Drop for StrGlobals {
    fn drop(&mut self) {
        // SAFETY: `ptr` is the start of a mapping of `mmap_len` bytes made in `create` and
        // not unmapped elsewhere; nothing borrows it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mmap_len) };
    }
}

impl StrGlobals {
    fn create(nglobals: usize) -> Result<StrGlobals> {
        let len = nglobals.max(1);
        let size = len * MAXSTRINGLEN;
        let handle = create_map(
            MapType::Array,
            "otf_strings",
            4,
            size as u32,
            1,
            libbpf_sys::BPF_F_MMAPABLE,
        )?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let mmap_len = size.div_ceil(page) * page;
        // SAFETY: maps `mmap_len` bytes of the mmapable array's fd, which the kernel sized for
        // one value of `size` bytes (rounded to pages); checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mmap_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                handle.as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::with(
                "mapping the string globals' BPF map",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(StrGlobals {
            handle,
            ptr: std::ptr::NonNull::new(p.cast())
                .ok_or_else(|| Error::msg("mmap returned NULL"))?,
            len,
            mmap_len,
        })
    }

    /// The field of global `g`, if in range.
    fn field(&self, g: u32) -> Option<*mut u8> {
        // SAFETY: `g < len`, so the field lies inside the mapping, valid while `self` lives.
        ((g as usize) < self.len)
            .then(|| unsafe { self.ptr.as_ptr().add(g as usize * MAXSTRINGLEN) })
    }

    fn load(&self, g: u32) -> String {
        let Some(p) = self.field(g) else {
            return String::new();
        };
        let mut b = [0u8; MAXSTRINGLEN];
        for (k, c) in b.iter_mut().enumerate() {
            // SAFETY: `p + k` lies in the field (k < MAXSTRINGLEN); the kernel may write it
            // concurrently, so it is read volatile, byte by byte.
            *c = unsafe { p.add(k).read_volatile() };
        }
        str_of(&b)
    }

    fn store(&self, g: u32, s: &str) {
        let Some(p) = self.field(g) else { return };
        for (k, &c) in str_bytes(s).iter().enumerate() {
            // SAFETY: as in `load`; written volatile, byte by byte.
            unsafe { p.add(k).write_volatile(c) };
        }
    }
}

/// The kernel's name of the map of global `name`: `otf_` and the name, with characters the
/// kernel refuses replaced by `_`, cut to the kernel's 15 bytes.
fn map_name(name: &str) -> String {
    let mut s: String = format!("otf_{name}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(15);
    s
}

/// The value size `spec` must have: 8 bytes for an array element, the [`StatLayout`] for an
/// aggregate.
fn expected_value_size(spec: &MapSpec) -> u32 {
    if spec.kind.per_cpu() {
        spec.stat().size
    } else if spec.str_value {
        MAXSTRINGLEN as u32
    } else {
        8
    }
}

impl GlobalMaps {
    /// Create the maps of `specs`, the zero value and the string globals of a script with
    /// `nglobals` globals.
    pub(crate) fn create(specs: &[MapSpec], nglobals: usize) -> Result<GlobalMaps> {
        // SAFETY: no preconditions (reads /sys/devices/system/cpu/possible once).
        let ncpus = unsafe { libbpf_sys::libbpf_num_possible_cpus() };
        if ncpus <= 0 {
            return Err(Error::with(
                "reading the number of possible CPUs",
                std::io::Error::from_raw_os_error(-ncpus),
            ));
        }
        let mut maps = BTreeMap::new();
        for spec in specs {
            let key_size = match spec.kind {
                MapKind::PercpuArray => 4,
                _ => (0..spec.nkeys)
                    .map(|k| {
                        if spec.str_keys & (1 << k) != 0 {
                            MAXSTRINGLEN as u32
                        } else {
                            8
                        }
                    })
                    .sum(),
            };
            if spec.key_size != key_size || spec.value_size != expected_value_size(spec) {
                return Err(Error::msg(format!(
                    "the map of global {} ({}) has key size {} and value size {}, expected {} and {} (an otf bug)",
                    spec.global,
                    spec.name,
                    spec.key_size,
                    spec.value_size,
                    key_size,
                    expected_value_size(spec)
                )));
            }
            let handle = create_map(
                MapType::from(spec.kind.bpf_type()),
                &map_name(&spec.name),
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                0,
            )?;
            let dup = maps.insert(
                spec.global,
                GlobalMap {
                    spec: spec.clone(),
                    handle,
                },
            );
            if dup.is_some() {
                return Err(Error::msg(format!(
                    "two maps for global {} (an otf bug)",
                    spec.global
                )));
            }
        }
        let zero = create_map(MapType::Array, "otf_zero", 4, zero_size(specs), 1, 0)?;
        Ok(GlobalMaps {
            maps,
            zero,
            ncpus: ncpus as usize,
            strings: StrGlobals::create(nglobals)?,
        })
    }

    /// The fd of [`MapId::Global`], [`MapId::Zero`] or [`MapId::Strings`]; `None` for another
    /// map or a global without a map.
    pub(crate) fn fd(&self, m: MapId) -> Option<RawFd> {
        match m {
            MapId::Global(g) => self.maps.get(&g).map(|m| m.handle.as_fd().as_raw_fd()),
            MapId::Zero => Some(self.zero.as_fd().as_raw_fd()),
            MapId::Strings => Some(self.strings.handle.as_fd().as_raw_fd()),
            _ => None,
        }
    }
}

/// A string as the kernel keeps it: MAXSTRINGLEN bytes, NUL-terminated and zero-padded
/// (at most MAXSTRINGLEN - 1 bytes of text).
fn str_bytes(s: &str) -> [u8; MAXSTRINGLEN] {
    let mut b = [0u8; MAXSTRINGLEN];
    let t = otf_script::vm::truncate(s.to_string());
    b[..t.len()].copy_from_slice(t.as_bytes());
    b
}

/// The text of a kernel string buffer (up to its NUL).
fn str_of(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// bpf(2) on one map, with keys and values as the generated code lays them out.
struct Ops<'a> {
    spec: &'a MapSpec,
    fd: RawFd,
    ncpus: usize,
}

/// A negative return of libbpf's low-level API as the errno it is.
fn errno(r: i32) -> i32 {
    -r
}

impl Ops<'_> {
    /// The key bytes of `key`, or `None` if it has the wrong number of keys: 8 bytes per
    /// integer, MAXSTRINGLEN zero-padded bytes per string.
    fn key(&self, key: &[Value]) -> Option<Vec<u8>> {
        if self.spec.kind == MapKind::PercpuArray {
            return Some(0u32.to_ne_bytes().to_vec());
        }
        if key.len() != self.spec.nkeys as usize {
            return None;
        }
        let mut b = Vec::with_capacity(self.spec.key_size as usize);
        for (i, k) in key.iter().enumerate() {
            if self.spec.str_keys & (1 << i) != 0 {
                b.extend_from_slice(&str_bytes(k.str()));
            } else {
                b.extend_from_slice(&k.int().to_ne_bytes());
            }
        }
        Some(b)
    }

    /// The script's keys of the key bytes `b`.
    fn keys_of(&self, b: &[u8]) -> Vec<Value> {
        if self.spec.kind == MapKind::PercpuArray {
            return Vec::new();
        }
        let mut at = 0;
        (0..self.spec.nkeys as usize)
            .map(|i| {
                if self.spec.str_keys & (1 << i) != 0 {
                    let v = Value::Str(str_of(&b[at..(at + MAXSTRINGLEN).min(b.len())]));
                    at += MAXSTRINGLEN;
                    v
                } else {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&b[at..at + 8]);
                    at += 8;
                    Value::Int(i64::from_ne_bytes(w))
                }
            })
            .collect()
    }

    /// An element's value from the words of a lookup.
    fn value_of(&self, w: &[i64]) -> Value {
        if self.spec.str_value {
            let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_ne_bytes()).collect();
            Value::Str(str_of(&bytes))
        } else {
            Value::Int(w.first().copied().unwrap_or(0))
        }
    }

    /// The words of an element's value.
    fn words_of(&self, v: &Value) -> Vec<i64> {
        if self.spec.str_value {
            str_bytes(v.str())
                .chunks_exact(8)
                .map(|c| i64::from_ne_bytes(c.try_into().expect("8 bytes")))
                .collect()
        } else {
            vec![v.int()]
        }
    }

    /// The words of one value (per CPU, for per-CPU maps).
    fn words(&self) -> usize {
        (self.spec.value_size as usize).div_ceil(8)
    }

    /// The words a lookup fills: one value, or one per possible CPU for per-CPU maps.
    fn value_words(&self) -> usize {
        if self.spec.kind.per_cpu() {
            self.words() * self.ncpus
        } else {
            self.words()
        }
    }

    /// Look `key` up: `Ok(None)` when missing.
    fn lookup(&self, key: &[u8]) -> Result<Option<Vec<i64>>, i32> {
        let mut v = vec![0i64; self.value_words()];
        // SAFETY: `key` holds the map's key_size bytes; `v` has room for the value (one
        // 8-byte-rounded value per possible CPU for per-CPU maps); both outlive the call.
        let r = unsafe {
            libbpf_sys::bpf_map_lookup_elem(self.fd, key.as_ptr().cast(), v.as_mut_ptr().cast())
        };
        match r {
            0 => Ok(Some(v)),
            r if errno(r) == libc::ENOENT => Ok(None),
            r => Err(errno(r)),
        }
    }

    /// Write `value` (all CPUs' copies for per-CPU maps) at `key`, with `BPF_ANY`.
    fn update(&self, key: &[u8], value: &[i64]) -> Result<(), i32> {
        debug_assert_eq!(value.len(), self.value_words());
        // SAFETY: `key` holds key_size bytes and `value` the whole value (see `lookup`);
        // both outlive the call.
        let r = unsafe {
            libbpf_sys::bpf_map_update_elem(
                self.fd,
                key.as_ptr().cast(),
                value.as_ptr().cast(),
                u64::from(libbpf_sys::BPF_ANY),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(errno(r))
        }
    }

    /// Delete `key` (an array's element is zeroed instead); a missing key is no error.
    fn delete(&self, key: &[u8]) {
        if self.spec.kind == MapKind::PercpuArray {
            let _ = self.update(key, &vec![0; self.value_words()]);
            return;
        }
        // SAFETY: `key` holds key_size bytes and outlives the call.
        let _ = unsafe { libbpf_sys::bpf_map_delete_elem(self.fd, key.as_ptr().cast()) };
    }

    /// Every key now in the map (each once, even if the kernel changes the map meanwhile,
    /// which can make the iteration restart).
    fn keys(&self) -> Vec<Vec<u8>> {
        let size = self.spec.key_size as usize;
        let mut seen = BTreeSet::new();
        let mut prev: Option<Vec<u8>> = None;
        // A bound on the steps, against concurrent changes restarting it forever.
        let limit = 4 * self.spec.max_entries as usize + 16;
        for _ in 0..limit {
            let mut next = vec![0u8; size];
            let p = prev
                .as_ref()
                .map_or(std::ptr::null(), |k| k.as_ptr().cast());
            // SAFETY: `p` is NULL (first key) or key_size bytes; `next` has room for a key;
            // both outlive the call.
            let r =
                unsafe { libbpf_sys::bpf_map_get_next_key(self.fd, p, next.as_mut_ptr().cast()) };
            if r != 0 {
                break;
            }
            seen.insert(next.clone());
            prev = Some(next);
        }
        seen.into_iter().collect()
    }

    /// Decode one CPU's value words into an aggregate.
    fn decode(&self, w: &[i64]) -> Aggregate {
        let layout: StatLayout = self.spec.stat();
        let mut a = Aggregate::new(&self.spec.hist);
        a.count = w[0];
        a.sum = w[1];
        a.min = w[2];
        a.max = w[3];
        if let Some(off) = layout.variance {
            a.avg_s = w[off as usize / 8];
            a.m2 = w[off as usize / 8 + 1];
        }
        if let Some(off) = layout.log {
            let o = off as usize / 8;
            let n = a.log.len();
            a.log.copy_from_slice(&w[o..o + n]);
        }
        if let Some((off, n)) = layout.linear {
            let o = off as usize / 8;
            let n = (n as usize).min(a.linear.len());
            a.linear[..n].copy_from_slice(&w[o..o + n]);
        }
        a
    }

    /// The aggregate combined over the CPUs' copies `v`; `None` when its count is 0.
    fn combine(&self, v: &[i64]) -> Option<Aggregate> {
        let mut a = Aggregate::new(&self.spec.hist);
        for cpu in v.chunks_exact(self.words()) {
            a.merge(&self.decode(cpu));
        }
        (a.count != 0).then_some(a)
    }

    /// Add `v` to one CPU's value words, as [`Aggregate::add`] does.
    fn add(&self, w: &mut [i64], v: i64) {
        let layout = self.spec.stat();
        if let (Some(off), Some(shift)) = (layout.variance, self.spec.hist.variance) {
            let o = off as usize / 8;
            let (mut avg_s, mut m2) = (w[o], w[o + 1]);
            variance_add(w[0], &mut avg_s, &mut m2, v, shift);
            (w[o], w[o + 1]) = (avg_s, m2);
        }
        if w[0] == 0 {
            w[2] = v;
            w[3] = v;
        } else {
            w[2] = w[2].min(v);
            w[3] = w[3].max(v);
        }
        w[0] += 1;
        w[1] = w[1].wrapping_add(v);
        if let Some(off) = layout.log {
            w[off as usize / 8 + log_bucket(v)] += 1;
        }
        if let (Some((off, n)), Some((lo, _, step))) = (layout.linear, self.spec.hist.linear) {
            w[off as usize / 8 + linear_bucket(v, lo, step, n as usize)] += 1;
        }
    }

    fn full(&self, e: i32) -> MapError {
        if e == libc::E2BIG {
            MapError::Full {
                max: self.spec.max_entries,
            }
        } else {
            // Not a full map: an otf bug (a bad key or value), reported as such.
            MapError::NoArrays
        }
    }
}

/// Every global of a loaded runtime as an [`otf_script::vm::GlobalStore`]: scalars in the
/// mmapped shared map, arrays and aggregates in their kernel maps (see the module
/// documentation for the semantics). Made by [`crate::Runtime::store`].
///
/// Errors of bpf(2) other than a full map read as a missing element (lookups) or
/// [`MapError::NoArrays`] (updates); they only happen for an otf bug.
#[derive(Debug)]
pub struct RuntimeStore<'a> {
    globals: GlobalsView<'a>,
    maps: &'a GlobalMaps,
}

impl<'a> RuntimeStore<'a> {
    pub(crate) fn new(globals: GlobalsView<'a>, maps: &'a GlobalMaps) -> Self {
        RuntimeStore { globals, maps }
    }

    /// The scalar globals.
    pub fn globals(&self) -> &GlobalsView<'a> {
        &self.globals
    }

    /// The map of global `g`, if it is an array or aggregate.
    pub fn map_spec(&self, g: u32) -> Option<&MapSpec> {
        self.maps.maps.get(&g).map(|m| &m.spec)
    }

    fn ops(&self, g: u32) -> Option<Ops<'_>> {
        self.maps.maps.get(&g).map(|m| Ops {
            spec: &m.spec,
            fd: m.handle.as_fd().as_raw_fd(),
            ncpus: self.maps.ncpus,
        })
    }

    /// The map of array `g` (not an aggregate).
    fn array(&self, g: u32) -> Option<Ops<'_>> {
        self.ops(g).filter(|o| !o.spec.kind.per_cpu())
    }

    /// The map of aggregate `g`.
    fn stat(&self, g: u32) -> Option<Ops<'_>> {
        self.ops(g).filter(|o| o.spec.kind.per_cpu())
    }
}

impl GlobalStore for RuntimeStore<'_> {
    fn load(&self, idx: u32) -> i64 {
        self.globals.load(idx)
    }

    fn store(&mut self, idx: u32, v: i64) {
        self.globals.set(idx, v);
    }

    fn len(&self) -> usize {
        GlobalStore::len(&self.globals)
    }

    fn load_str(&self, g: u32) -> String {
        self.maps.strings.load(g)
    }

    fn store_str(&mut self, g: u32, s: &str) {
        self.maps.strings.store(g, s);
    }

    fn map_get(&mut self, g: u32, key: &[Value]) -> Option<Value> {
        let o = self.array(g)?;
        o.lookup(&o.key(key)?)
            .ok()
            .flatten()
            .map(|v| o.value_of(&v))
    }

    fn map_put(&mut self, g: u32, key: &[Value], v: Value) -> Result<(), MapError> {
        let o = self.array(g).ok_or(MapError::NoArrays)?;
        let k = o.key(key).ok_or(MapError::NoArrays)?;
        o.update(&k, &o.words_of(&v)).map_err(|e| o.full(e))
    }

    fn map_delete(&mut self, g: u32, key: &[Value]) {
        if let Some(o) = self.ops(g) {
            if let Some(k) = o.key(key) {
                o.delete(&k);
            }
        }
    }

    fn map_clear(&mut self, g: u32) {
        let Some(o) = self.ops(g) else { return };
        for k in o.keys() {
            o.delete(&k);
        }
    }

    fn map_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Value)> {
        let Some(o) = self.array(g) else {
            return Vec::new();
        };
        let mut v: Vec<_> = o
            .keys()
            .into_iter()
            .filter_map(|k| Some((o.keys_of(&k), o.value_of(&o.lookup(&k).ok()??))))
            .collect();
        v.sort();
        v
    }

    fn stat_add(&mut self, g: u32, key: &[Value], v: i64) -> Result<(), MapError> {
        let o = self.stat(g).ok_or(MapError::NoArrays)?;
        let k = o.key(key).ok_or(MapError::NoArrays)?;
        let mut all = o
            .lookup(&k)
            .map_err(|e| o.full(e))?
            .unwrap_or_else(|| vec![0; o.value_words()]);
        let words = o.words();
        o.add(&mut all[..words], v);
        o.update(&k, &all).map_err(|e| o.full(e))
    }

    fn stat_get(&mut self, g: u32, key: &[Value]) -> Option<Aggregate> {
        let o = self.stat(g)?;
        o.combine(&o.lookup(&o.key(key)?).ok()??)
    }

    fn stat_entries(&mut self, g: u32) -> Vec<(Vec<Value>, Aggregate)> {
        let Some(o) = self.stat(g) else {
            return Vec::new();
        };
        let mut v: Vec<_> = o
            .keys()
            .into_iter()
            .filter_map(|k| Some((o.keys_of(&k), o.combine(&o.lookup(&k).ok()??)?)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otf_script::bytecode::{GlobalKind, HistSpec};
    use otf_script::sema::GlobalInfo;

    fn root() -> bool {
        // SAFETY: no preconditions.
        let r = unsafe { libc::geteuid() } == 0;
        if !r {
            eprintln!("note: SKIPPED: creating BPF maps needs root");
        }
        r
    }

    fn info(kind: GlobalKind, size: Option<u32>, hist: HistSpec) -> GlobalInfo {
        GlobalInfo {
            name: "x".into(),
            init: 0,
            kind,
            size,
            wrap: false,
            hist,
            read: true,
            written: true,
            ..Default::default()
        }
    }

    fn map_info(fd: RawFd) -> libbpf_sys::bpf_map_info {
        let mut info = libbpf_sys::bpf_map_info::default();
        let mut len = std::mem::size_of::<libbpf_sys::bpf_map_info>() as u32;
        // SAFETY: `info` is a zeroed bpf_map_info of `len` bytes that outlives the call.
        let r = unsafe { libbpf_sys::bpf_map_get_info_by_fd(fd, &mut info, &mut len) };
        assert_eq!(r, 0);
        info
    }

    fn hist() -> HistSpec {
        HistSpec {
            log: true,
            linear: Some((-10, 10, 5)),
            variance: None,
        }
    }

    #[test]
    fn the_maps_are_created_as_specified_and_resolved() {
        if !root() {
            return;
        }
        let infos = [
            info(GlobalKind::Scalar, None, HistSpec::default()),
            info(GlobalKind::Array { keys: 3 }, Some(7), HistSpec::default()),
            info(GlobalKind::Stat { keys: 1 }, None, hist()),
        ];
        let specs = MapSpec::all(&infos);
        let image = crate::RuntimeImage {
            globals_init: vec![0; 3],
            maps: specs.clone(),
            ..Default::default()
        };
        let rt = crate::Runtime::load_with(
            &image,
            &crate::LoadOptions {
                kinds: Vec::new(),
                ..Default::default()
            },
        )
        .expect("load");
        for spec in &specs {
            let i = map_info(rt.map_fd(MapId::Global(spec.global)).expect("fd"));
            assert_eq!(
                (
                    i.type_,
                    i.key_size,
                    i.value_size,
                    i.max_entries,
                    i.map_flags
                ),
                (
                    spec.kind.bpf_type(),
                    spec.key_size,
                    spec.value_size,
                    spec.max_entries,
                    0
                ),
                "{spec:?}"
            );
            assert!(i.name.iter().any(|&c| c as u8 == b'x'));
        }
        let z = map_info(rt.map_fd(MapId::Zero).expect("zero"));
        assert_eq!(
            (z.type_, z.key_size, z.value_size, z.max_entries),
            (2, 4, zero_size(&specs), 1)
        );
        assert!(rt.map_fd(MapId::Global(0)).is_err());
        assert!(rt.map_fd(MapId::Global(9)).is_err());
    }

    #[test]
    fn the_cpus_copies_are_combined() {
        if !root() {
            return;
        }
        let spec =
            MapSpec::for_global(0, &info(GlobalKind::Stat { keys: 1 }, None, hist())).unwrap();
        let maps = GlobalMaps::create(std::slice::from_ref(&spec), 1).expect("maps");
        let m = &maps.maps[&0];
        let o = Ops {
            spec: &m.spec,
            fd: m.handle.as_fd().as_raw_fd(),
            ncpus: maps.ncpus,
        };
        let h = hist();
        let per_cpu: [&[i64]; 3] = [&[3, -12, 0], &[], &[100, 7, -1, 6]];
        let mut all = vec![0i64; o.value_words()];
        let mut want = Aggregate::new(&h);
        for (cpu, w) in all.chunks_exact_mut(o.words()).enumerate() {
            for &v in per_cpu.get(cpu).copied().unwrap_or(&[5]) {
                o.add(w, v);
                want.add(v, &h);
            }
        }
        let key = o.key(&[Value::Int(42)]).unwrap();
        assert_eq!(o.lookup(&key), Ok(None));
        o.update(&key, &all).unwrap();
        assert_eq!(o.combine(&o.lookup(&key).unwrap().unwrap()), Some(want));
        assert_eq!(o.keys(), vec![key.clone()]);
        assert_eq!(o.keys_of(&key), [Value::Int(42)]);
        // All CPUs empty: absent.
        o.update(&key, &vec![0; o.value_words()]).unwrap();
        assert_eq!(o.combine(&o.lookup(&key).unwrap().unwrap()), None);
    }

    #[test]
    fn the_cpus_variance_states_are_combined_as_systemtap() {
        if !root() {
            return;
        }
        let h = HistSpec {
            variance: Some(1),
            ..hist()
        };
        let spec = MapSpec::for_global(0, &info(GlobalKind::Stat { keys: 0 }, None, h)).unwrap();
        let maps = GlobalMaps::create(std::slice::from_ref(&spec), 1).expect("maps");
        let m = &maps.maps[&0];
        let o = Ops {
            spec: &m.spec,
            fd: m.handle.as_fd().as_raw_fd(),
            ncpus: maps.ncpus,
        };
        // Each CPU's copy through the words (as `<<<` from user space adds them), and the
        // reference: one Aggregate per CPU, merged.
        let per_cpu: [&[i64]; 3] = [&[3, -12, 0, 40], &[], &[100, 7]];
        let mut all = vec![0i64; o.value_words()];
        let mut want = Aggregate::new(&h);
        for (cpu, w) in all.chunks_exact_mut(o.words()).enumerate() {
            let mut copy = Aggregate::new(&h);
            for &v in per_cpu.get(cpu).copied().unwrap_or(&[5, 6]) {
                o.add(w, v);
                copy.add(v, &h);
            }
            assert_eq!((w[4], w[5]), (copy.avg_s, copy.m2), "cpu {cpu}");
            want.merge(&copy);
        }
        let key = o.key(&[]).unwrap();
        o.update(&key, &all).unwrap();
        let got = o
            .combine(&o.lookup(&key).unwrap().unwrap())
            .expect("values");
        assert_eq!(got, want);
        assert_eq!(
            got.stat(otf_script::bytecode::StatKind::Variance),
            Some(want.variance())
        );
        // The first CPU alone, by hand (shift 1): 6, -24, 0, 80 shifted; deltas -30, 9, 86;
        // avg_s 6, -9, -6, 15 and M2 0, 450, 504, 6094; avg = (31 << 1)/4 = 15,
        // S1 = 4·(15−15)² = 0, S2 = 3·(6094/3) = 6093, 6093/3 = 2031, >> 2: 507.
        let mut first = Aggregate::new(&h);
        first.merge(&o.decode(&all[..o.words()]));
        assert_eq!(
            first.stat(otf_script::bytecode::StatKind::Variance),
            Some(507)
        );
    }

    #[test]
    fn map_names_fit_the_kernel() {
        assert_eq!(map_name("a"), "otf_a");
        assert_eq!(map_name("a_very_long_array_name"), "otf_a_very_long");
        assert_eq!(map_name("é"), "otf__");
    }
}
