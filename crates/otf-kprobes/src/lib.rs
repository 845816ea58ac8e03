//! On-the-fly kprobes: `kernel.function(NAME)`.
//!
//! - [`resolve`] / [`KernelSymbols`]: which kernel functions a glob names (no privilege).
//! - [`kprobes_available`]: whether this kernel has CONFIG_KPROBES.
//! - [`KprobeGroup`]: the [`otf_core::ProbeGroup`] that arms by attaching (kprobe_multi when
//!   available) and disarms by closing links.

/// Glob matching, shared by every probe type (from `otf-core`).
pub use otf_core::glob;

mod group;
mod resolve;

pub use group::{
    DuplicatePidx, KprobeGroup, KprobeKey, KprobePrograms, KprobeSpec, GROUP_NAME, SAFE_CONTEXT,
};
pub use resolve::{
    kprobes_available, resolve, resolve_verbose, KernelSymbols, KprobeResolution, KprobeTarget,
    ResolveError, SymbolSource, NO_KPROBES,
};
