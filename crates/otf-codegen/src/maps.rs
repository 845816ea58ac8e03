//! The kernel maps of a script's arrays and aggregates: one BPF map per global, described by
//! a [`MapSpec`] that the code generator compiles against and the loader creates.
//!
//! | global | map | key | value |
//! |---|---|---|---|
//! | `global a` (array) | `HASH`, `max_entries` = its size (MAXMAPENTRIES) | 8 bytes per key | 8 bytes |
//! | `global a%` | `LRU_HASH` (full arrays evict instead of failing) | 8 bytes per key | 8 bytes |
//! | `global s` (aggregate) | `PERCPU_ARRAY`, one element | `u32` 0 | [`StatLayout`] |
//! | `global t` (`t[k] <<< v`) | `PERCPU_HASH` | 8 bytes per key | [`StatLayout`] |
//!
//! Keys are the keys in order: 8 bytes per integer key (as the operand stack holds them, so
//! an all-integer key is built in place) and MAXSTRINGLEN zero-padded bytes per string key;
//! string elements are MAXSTRINGLEN bytes. Aggregates are per CPU, as in SystemTap; readers combine the CPUs.

use std::collections::BTreeMap;

use otf_script::bytecode::{GlobalKind, HistSpec, Op, HIST_LOG_BUCKETS, MAXSTRINGLEN};
use otf_script::format::KernelFormat;
use otf_script::sema::GlobalInfo;

/// The value of the formats map ([`crate::MapId::Formats`]): the NUL-terminated
/// `bpf_snprintf` format of every `sprintf` of the image that runs in the kernel, one after
/// the other (padded to a multiple of 8 bytes, at least 8), and each one's offset in it and
/// arguments, by the string literal that holds it ([`otf_script::vm::sformat_kernel`]).
pub fn sprintf_formats(
    code: &[otf_script::bytecode::Insn],
    strings: &[String],
) -> (Vec<u8>, BTreeMap<u32, (u32, KernelFormat)>) {
    let mut value = Vec::new();
    let mut at = BTreeMap::new();
    for insn in code {
        if insn.opcode() != Some(Op::SFormat) || otf_script::vm::sformat_refusal(insn) != 0 {
            continue;
        }
        let lit = otf_script::vm::sformat_kernel(insn);
        if at.contains_key(&lit) {
            continue;
        }
        let Some(k) = strings
            .get(lit as usize)
            .and_then(|s| KernelFormat::decode(s))
        else {
            continue;
        };
        at.insert(lit, (value.len() as u32, k.clone()));
        value.extend_from_slice(&k.text);
    }
    value.resize(value.len().div_ceil(8).max(1) * 8, 0);
    (value, at)
}

/// The BPF map type of an array or aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MapKind {
    /// `BPF_MAP_TYPE_HASH` (1).
    Hash,
    /// `BPF_MAP_TYPE_LRU_HASH` (9): `global a%`.
    LruHash,
    /// `BPF_MAP_TYPE_PERCPU_HASH` (5): arrays of aggregates.
    PercpuHash,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY` (6): a scalar aggregate, one element.
    PercpuArray,
}

impl MapKind {
    /// The kernel's `bpf_map_type` number.
    pub fn bpf_type(self) -> u32 {
        match self {
            MapKind::Hash => 1,
            MapKind::PercpuHash => 5,
            MapKind::PercpuArray => 6,
            MapKind::LruHash => 9,
        }
    }

    /// `true` for the per-CPU maps (aggregates).
    pub fn per_cpu(self) -> bool {
        matches!(self, MapKind::PercpuHash | MapKind::PercpuArray)
    }
}

/// Where the fields of an aggregate's value are: `count`, `sum`, `min`, `max` (8 bytes
/// each), then SystemTap's `avg_s` and `_M2` when the script reads `@variance`, then the
/// `@hist_log` buckets, then the `@hist_linear` buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatLayout {
    /// Offset of `avg_s` (`_M2` follows it) when `@variance` is read.
    pub variance: Option<u32>,
    /// Offset of the log buckets (when used).
    pub log: Option<u32>,
    /// Offset and number of the linear buckets (when used).
    pub linear: Option<(u32, u32)>,
    /// The value's size in bytes.
    pub size: u32,
}

/// Offsets of `count`, `sum`, `min`, `max` in an aggregate's value.
pub const STAT_COUNT: i16 = 0;
/// See [`STAT_COUNT`].
pub const STAT_SUM: i16 = 8;
/// See [`STAT_COUNT`].
pub const STAT_MIN: i16 = 16;
/// See [`STAT_COUNT`].
pub const STAT_MAX: i16 = 24;

impl StatLayout {
    /// The layout of an aggregate printed with the histograms of `hist`.
    pub fn new(hist: &HistSpec) -> StatLayout {
        let mut off = 32u32;
        let variance = hist.variance.map(|_| {
            let o = off;
            off += 16;
            o
        });
        let log = hist.log.then(|| {
            let o = off;
            off += 8 * HIST_LOG_BUCKETS as u32;
            o
        });
        let n = hist.linear_buckets() as u32;
        let linear = (n > 0).then(|| {
            let o = off;
            off += 8 * n;
            (o, n)
        });
        StatLayout {
            variance,
            log,
            linear,
            size: off,
        }
    }

    /// The number of 64-bit words of a value.
    pub fn words(&self) -> usize {
        self.size as usize / 8
    }
}

/// One array's or aggregate's map.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MapSpec {
    /// The global it holds.
    pub global: u32,
    /// The global's name (the map's name, truncated by the kernel to 15 bytes).
    pub name: String,
    /// The map type.
    pub kind: MapKind,
    /// The number of keys (0 for a scalar aggregate).
    pub nkeys: u32,
    /// Bit `i`: key `i` is a string ([`MAXSTRINGLEN`] bytes, zero-padded), else 8 bytes.
    pub str_keys: u16,
    /// The elements are strings ([`MAXSTRINGLEN`] bytes), else 8-byte integers.
    pub str_value: bool,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// The most elements.
    pub max_entries: u32,
    /// The histograms an aggregate keeps (default for arrays).
    pub hist: HistSpec,
}

impl MapSpec {
    /// The map of global `g`, or `None` for a scalar.
    pub fn for_global(g: u32, info: &GlobalInfo) -> Option<MapSpec> {
        let (kind, nkeys, value_size) = match info.kind {
            GlobalKind::Scalar => return None,
            GlobalKind::Array { keys } => (
                if info.wrap {
                    MapKind::LruHash
                } else {
                    MapKind::Hash
                },
                u32::from(keys),
                if info.str_value {
                    MAXSTRINGLEN as u32
                } else {
                    8
                },
            ),
            GlobalKind::Stat { keys } => (
                if keys == 0 {
                    MapKind::PercpuArray
                } else {
                    MapKind::PercpuHash
                },
                u32::from(keys),
                StatLayout::new(&info.hist).size,
            ),
        };
        Some(MapSpec {
            global: g,
            name: info.name.clone(),
            kind,
            nkeys,
            key_size: if kind == MapKind::PercpuArray {
                4
            } else {
                (0..nkeys)
                    .map(|k| {
                        if info.str_keys & (1 << k) != 0 {
                            MAXSTRINGLEN as u32
                        } else {
                            8
                        }
                    })
                    .sum()
            },
            str_keys: info.str_keys,
            str_value: info.str_value && matches!(info.kind, GlobalKind::Array { .. }),
            value_size,
            max_entries: if kind == MapKind::PercpuArray {
                1
            } else {
                info.max_entries()
            },
            hist: info.hist,
        })
    }

    /// The maps of every array and aggregate among `globals`.
    pub fn all(globals: &[GlobalInfo]) -> Vec<MapSpec> {
        globals
            .iter()
            .enumerate()
            .filter_map(|(g, info)| MapSpec::for_global(g as u32, info))
            .collect()
    }

    /// The layout of an aggregate's value.
    pub fn stat(&self) -> StatLayout {
        StatLayout::new(&self.hist)
    }
}

/// The size of the zero-filled value new aggregate elements are inserted from: the largest
/// aggregate value (at least 8 bytes, for array elements).
pub fn zero_size(maps: &[MapSpec]) -> u32 {
    maps.iter().map(|m| m.value_size).max().unwrap_or(8).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_layout_places_the_histograms_after_the_counters() {
        let l = StatLayout::new(&HistSpec {
            log: true,
            linear: Some((0, 100, 10)),
            variance: None,
        });
        assert_eq!(l.log, Some(32));
        // SystemTap's (hi - lo) / step + 3 buckets: under, 10 in range, 100..110, over.
        assert_eq!(l.linear, Some((32 + 1024, 13)));
        assert_eq!(l.size, 32 + 1024 + 104);
        assert_eq!(StatLayout::new(&HistSpec::default()).size, 32);
        assert_eq!(l.variance, None);
        // `@variance` adds avg_s and _M2 after the counters.
        let v = StatLayout::new(&HistSpec {
            log: true,
            linear: None,
            variance: Some(3),
        });
        assert_eq!((v.variance, v.log, v.size), (Some(32), Some(48), 48 + 1024));
    }
}
