//! On-the-fly `kernel.trace(...)` probes.
//!
//! [`resolve`] turns `NAME` or `SUBSYS:NAME` (with `*`/`?` globs) into the kernel's
//! tracepoints, read from tracefs. A probe is *armed* iff a BPF link to its tracepoint exists:
//! arming attaches ([`TracepointLink::attach`]), disarming drops the link. perf's
//! `PERF_EVENT_IOC_DISABLE` does not stop BPF programs on tracepoints, so this is the only way
//! to make a disarmed tracepoint cost nothing. Drops of perf-tracepoint links block for a
//! grace period; a [`Reaper`] thread releases them off the refresh path, and
//! [`release_all`] releases a batch concurrently.

mod attach;
mod group;
mod resolve;

pub use group::{perf_chains, TracepointGroup};

pub use attach::{
    mode_for, release_all, AttachError, AttachMode, Reaper, TracepointLink, TracepointProgs,
};
pub use resolve::{
    events_dir, glob_match, list_all, list_in, resolve, resolve_in, tracepoint_id, unsafe_reason,
    TraceError, Tracepoint,
};

/// The name of this probe group in decision lines (`otf: registering (tracepoint) pidx N`).
pub const GROUP_NAME: &str = "tracepoint";
