//! On-the-fly kprobes: `kernel.function(NAME)`.
//!
//! - [`PROBE_TYPE`]: what otf knows of the type (group name, point grammar, flavors, safe
//!   context), read by the orchestrator.
//! - [`resolve`] / [`KernelSymbols`]: which kernel functions a glob names (no privilege).
//! - [`kprobes_available`]: whether this kernel has CONFIG_KPROBES.
//! - [`KprobeGroup`]: the [`otf_core::ProbeGroup`] that arms by attaching (kprobe_multi when
//!   available) and disarms by closing links: `otf-attach`'s `LinkGroup` with the [`Kprobes`]
//!   attacher.

/// Glob matching, shared by every probe type (from `otf-core`).
pub use otf_core::glob;

mod group;
mod resolve;

pub use group::{KprobeGroup, KprobePrograms, KprobeSpec, Kprobes, MIN_MULTI, PROBE_TYPE};
pub use otf_attach::group::DuplicatePidx;
pub use resolve::{
    kprobes_available, resolve, resolve_verbose, KernelSymbols, KprobeResolution, KprobeTarget,
    ResolveError, SymbolSource, NO_KPROBES,
};
