//! On-the-fly inode uprobes: `process(PATH).function(NAME)`.
//!
//! - [`PROBE_TYPE`]: what otf knows of the type (group name, point grammar, flavors, safe
//!   context), read by the orchestrator.
//! - [`resolve_path`] / [`resolve`]: ELF symbol resolution to file offsets (no privilege).
//! - [`UprobeGroup`]: the [`otf_core::ProbeGroup`] that arms probes by attaching them and
//!   disarms them by closing their links, batching with uprobe_multi: `otf-attach`'s
//!   `LinkGroup` with the [`Uprobes`] attacher.
//!
//! The links and the link table it arms them with are `otf-attach`'s, shared with `otf-kprobes`.

/// Glob matching, shared by every probe type (from `otf-core`).
pub use otf_core::glob;

mod group;
mod resolve;

pub use group::{GroupError, UprobeGroup, UprobePrograms, UprobeSpec, Uprobes, PROBE_TYPE};
pub use resolve::{
    first_insn_problem, list_functions, resolve, resolve_checked, resolve_path, ElfFunction,
    ResolveError, Unprobeable, UprobeTarget,
};
