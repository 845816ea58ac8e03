//! [`UprobeGroup`]: the `process(PATH).function(NAME)` probes of a session, a
//! [`LinkGroup`](otf_attach::group::LinkGroup) with the [`Uprobes`] attacher: armed by
//! attaching and disarmed by dropping their links.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;

use otf_attach::group::{
    DuplicatePidx, LinkAttacher, LinkGroup, LinkPrograms, LinkSpec, LinkTarget,
};
use otf_attach::sys::{self, Link};
use otf_core::{Decision, Flavor, Pidx, ProbeType, SafeContext, Vocabulary};

use crate::resolve::UprobeTarget;

/// The `process(PATH).function(NAME)` probe type. Its bodies may notify user space
/// themselves: a uprobe runs in the probed task's process context.
pub const PROBE_TYPE: ProbeType = ProbeType {
    name: "uprobes",
    family: "process.function",
    point: "process(\"PATH\").function(\"GLOB\")",
    suffixes: &["call", "return"],
    flavor: Flavor::Uprobe,
    return_flavor: Some(Flavor::Uretprobe),
    // Not attached at start, attached and detached later.
    vocabulary: Vocabulary {
        start_disarmed: Decision::NotRegistering,
        arm: Decision::Registering,
        disarm: Decision::Unregistering,
    },
    safe_context: SafeContext::safe(
        "uprobes run in process context (the probed task took the breakpoint), \
         where ring-buffer output with wakeup is safe",
    ),
};

/// One kernel attachment of the group: a resolved function (file, offset, entry or return)
/// with its pidx and condition.
pub type UprobeSpec = LinkSpec<UprobeTarget>;

impl LinkTarget for UprobeTarget {
    fn ret(&self) -> bool {
        self.ret
    }

    fn function_point(&self) -> String {
        format!(
            "process(\"{}\").function(\"{}\")",
            self.path.display(),
            self.symbol
        )
    }
}

/// The BPF programs the group attaches: `entry` is `SEC("uprobe")` (entry probes and the entry
/// part of `@entry` return probes), `ret` `SEC("uretprobe")`, and their `.multi` versions if
/// loaded.
pub type UprobePrograms = LinkPrograms;

/// Errors creating a [`UprobeGroup`].
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// A probed file cannot be opened (it must stay open for the session).
    #[error("{path}: cannot open for probing: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Two specs with one pidx.
    #[error("pidx {0} given twice")]
    DuplicatePidx(Pidx),
}

impl From<DuplicatePidx> for GroupError {
    fn from(d: DuplicatePidx) -> GroupError {
        GroupError::DuplicatePidx(d.0)
    }
}

/// How inode uprobes attach: at a file offset of a probed file, which is opened when the group
/// is made; one uprobe_multi link per file (and condition, entry/return) when available.
#[derive(Debug)]
pub struct Uprobes {
    /// Open descriptors of the probed files: attaching through `/proc/self/fd/N` probes the
    /// inode resolved at start even if the path is later deleted or replaced.
    files: Vec<(PathBuf, File)>,
    file_of: BTreeMap<Pidx, usize>,
}

impl Uprobes {
    fn fd_path(&self, file: usize) -> String {
        format!("/proc/self/fd/{}", self.files[file].1.as_raw_fd())
    }
}

impl LinkAttacher for Uprobes {
    const TYPE: &'static ProbeType = &PROBE_TYPE;
    type Target = UprobeTarget;
    /// The probed file (index into the open files): one multi link per file.
    type Key = usize;
    type Error = GroupError;

    /// Opens every probed file now (so the session probes the inodes resolved now, even if a
    /// path is later deleted or replaced).
    fn new(specs: &BTreeMap<Pidx, UprobeSpec>) -> Result<Uprobes, GroupError> {
        let mut files: Vec<(PathBuf, File)> = Vec::new();
        let mut file_of = BTreeMap::new();
        for s in specs.values() {
            let idx = match files.iter().position(|(p, _)| *p == s.target.path) {
                Some(i) => i,
                None => {
                    let f = File::open(&s.target.path).map_err(|e| GroupError::Open {
                        path: s.target.path.clone(),
                        source: e,
                    })?;
                    files.push((s.target.path.clone(), f));
                    files.len() - 1
                }
            };
            file_of.insert(s.pidx, idx);
        }
        Ok(Uprobes { files, file_of })
    }

    fn key(&self, spec: &UprobeSpec) -> usize {
        self.file_of[&spec.pidx]
    }

    fn attach_one(
        &self,
        prog: BorrowedFd<'_>,
        spec: &UprobeSpec,
        ret: bool,
        cookie: u64,
    ) -> io::Result<Link> {
        let path = self.fd_path(self.key(spec));
        sys::attach_uprobe(prog, &path, spec.target.file_offset, ret, cookie)
    }

    fn attach_many(
        &self,
        prog: BorrowedFd<'_>,
        file: &usize,
        specs: &[&UprobeSpec],
        cookies: &[u64],
        ret: bool,
    ) -> io::Result<Link> {
        let offsets: Vec<u64> = specs.iter().map(|s| s.target.file_offset).collect();
        sys::attach_uprobe_multi(prog, &self.fd_path(*file), &offsets, cookies, ret)
    }

    fn explain(&self, spec: &UprobeSpec, what: &str, err: &io::Error) -> String {
        // ENOTSUPP (524) has no name in libc: "Unknown error 524" says nothing.
        let why = match err.raw_os_error() {
            Some(524) => {
                "the kernel's uprobes cannot single-step the function's first instruction (ENOTSUPP)"
                    .to_string()
            }
            Some(libc::EPERM | libc::EACCES) => {
                format!("{err} (uprobes need root or CAP_PERFMON + CAP_BPF)")
            }
            _ => err.to_string(),
        };
        let t = &spec.target;
        format!(
            "attach {what} {}:{} (offset {:#x}): {why}",
            t.path.display(),
            t.symbol,
            t.file_offset
        )
    }
}

/// The `process(...).function(...)` probes of a session: a [`LinkGroup`] of [`Uprobes`].
///
/// Armed = attached; disarmed = link closed (a perf `DISABLE` does not stop BPF on uprobes).
/// One pidx per kernel attachment (resolved function × entry/return). Attachments made in one
/// apply are batched into uprobe_multi links per (file, condition, entry/return), and links are
/// closed concurrently: see [`otf_attach::table`] and docs/uprobes.md. [`UprobeGroup::new`]
/// opens every probed file (see [`Uprobes`]).
pub type UprobeGroup = LinkGroup<Uprobes>;
