//! [`UprobeGroup`]: the `process(PATH).function(NAME)` probes of a session, armed by attaching
//! and disarmed by dropping their links.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use otf_core::{ApplyReport, CondId, Flavor, Pidx, Plan, ProbeEntry, ProbeGroup, SafeContext};

use crate::resolve::UprobeTarget;
use otf_attach::sys::{self, Link};
use otf_attach::table::{cookie, ApplyStats, Attacher, LinkTable, Part, TablePolicy};

/// One kernel attachment of the group: a resolved function with its pidx and condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UprobeSpec {
    /// The probe's index (the attach cookie).
    pub pidx: Pidx,
    /// The condition that gates it (`None`: always armed).
    pub cond: Option<CondId>,
    /// Where: file, function, offset, entry or return.
    pub target: UprobeTarget,
    /// For a return probe whose body reads `@entry(...)`: also attach the entry program at the
    /// function entry (cookie `pidx | COOKIE_ENTRY`) so the runtime saves the entry values.
    pub entry_save: bool,
}

/// The BPF programs the group attaches, as file descriptors (e.g. `Program::as_fd()` of the
/// otf-bpf runtime, duplicated with `try_clone_to_owned`). Every program reads its pidx from
/// `bpf_get_attach_cookie`.
#[derive(Debug)]
pub struct UprobePrograms {
    /// `SEC("uprobe")`: entry probes, and the entry part of `@entry` return probes.
    pub uprobe: OwnedFd,
    /// `SEC("uretprobe")`.
    pub uretprobe: OwnedFd,
    /// `SEC("uprobe.multi")`, if available: batches entry attachments into one link.
    pub uprobe_multi: Option<OwnedFd>,
    /// `SEC("uretprobe.multi")`, if available.
    pub uretprobe_multi: Option<OwnedFd>,
}

/// Batching key: probes of one file, one condition, one kind (entry / return) share a link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UprobeKey {
    file: usize,
    cond: Option<CondId>,
    ret: bool,
}

struct Attach {
    specs: BTreeMap<Pidx, UprobeSpec>,
    /// Open descriptors of the probed files: attaching through `/proc/self/fd/N` probes the
    /// inode resolved at start even if the path is later deleted or replaced.
    files: Vec<(PathBuf, File)>,
    file_of: BTreeMap<Pidx, usize>,
    progs: UprobePrograms,
}

impl Attach {
    fn fd_path(&self, file: usize) -> String {
        format!("/proc/self/fd/{}", self.files[file].1.as_raw_fd())
    }

    fn spec(&self, pidx: Pidx) -> io::Result<&UprobeSpec> {
        self.specs
            .get(&pidx)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("unknown pidx {pidx}")))
    }

    /// (return probe?, program) for a part of a probe.
    fn single_prog(&self, spec: &UprobeSpec, part: Part) -> (bool, BorrowedFd<'_>) {
        use std::os::fd::AsFd;
        match (spec.target.ret, part) {
            (true, Part::Main) => (true, self.progs.uretprobe.as_fd()),
            _ => (false, self.progs.uprobe.as_fd()),
        }
    }
}

impl Attacher for Attach {
    type Key = UprobeKey;

    fn key(&self, pidx: Pidx) -> Option<UprobeKey> {
        let s = self.specs.get(&pidx)?;
        Some(UprobeKey {
            file: self.file_of[&pidx],
            cond: s.cond,
            ret: s.target.ret,
        })
    }

    fn parts(&self, pidx: Pidx) -> &'static [Part] {
        match self.specs.get(&pidx) {
            Some(s) if s.target.ret && s.entry_save => &[Part::Main, Part::EntrySave],
            _ => &[Part::Main],
        }
    }

    fn attach_one(&self, pidx: Pidx, part: Part) -> io::Result<Link> {
        let spec = self.spec(pidx)?;
        let (ret, prog) = self.single_prog(spec, part);
        sys::attach_uprobe(
            prog,
            &self.fd_path(self.file_of[&pidx]),
            spec.target.file_offset,
            ret,
            cookie(pidx, part),
        )
    }

    fn attach_many(&self, key: &UprobeKey, part: Part, pidxs: &[Pidx]) -> Option<io::Result<Link>> {
        use std::os::fd::AsFd;
        let ret = key.ret && part == Part::Main;
        let prog = if ret {
            self.progs.uretprobe_multi.as_ref()
        } else {
            self.progs.uprobe_multi.as_ref()
        }?;
        let mut offsets = Vec::with_capacity(pidxs.len());
        for p in pidxs {
            match self.spec(*p) {
                Ok(s) => offsets.push(s.target.file_offset),
                Err(e) => return Some(Err(e)),
            }
        }
        let cookies: Vec<u64> = pidxs.iter().map(|p| cookie(*p, part)).collect();
        Some(sys::attach_uprobe_multi(
            prog.as_fd(),
            &self.fd_path(key.file),
            &offsets,
            &cookies,
            ret,
        ))
    }

    fn explain(&self, pidx: Pidx, part: Part, err: &io::Error) -> String {
        let Some(s) = self.specs.get(&pidx) else {
            return err.to_string();
        };
        let what = match (s.target.ret, part) {
            (true, Part::Main) => "uretprobe",
            (true, Part::EntrySave) => "uprobe (entry of a .return probe)",
            _ => "uprobe",
        };
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
        format!(
            "attach {what} {}:{} (offset {:#x}): {why}",
            s.target.path.display(),
            s.target.symbol,
            s.target.file_offset
        )
    }
}

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

/// The `process(...).function(...)` probes of a session.
///
/// Armed = attached; disarmed = link closed (a perf `DISABLE` does not stop BPF on uprobes).
/// One pidx per kernel attachment (resolved function × entry/return). Attachments made in one
/// apply are batched into uprobe_multi links per (file, condition, entry/return), and links are
/// closed concurrently: see [`otf_attach::table`] and docs/uprobes.md.
pub struct UprobeGroup {
    entries: Vec<ProbeEntry>,
    attach: Attach,
    table: LinkTable,
}

impl std::fmt::Debug for UprobeGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UprobeGroup")
            .field("probes", &self.entries.len())
            .field("table", &self.table)
            .finish()
    }
}

impl UprobeGroup {
    /// A group over `specs`, attaching `programs`. Opens every probed file now (so the session
    /// probes the inodes resolved now, even if a path is later deleted or replaced).
    pub fn new(
        mut specs: Vec<UprobeSpec>,
        programs: UprobePrograms,
    ) -> Result<UprobeGroup, GroupError> {
        specs.sort_by_key(|s| s.pidx);
        let mut files: Vec<(PathBuf, File)> = Vec::new();
        let mut file_of = BTreeMap::new();
        let mut map = BTreeMap::new();
        let mut entries = Vec::new();
        for s in specs {
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
            let flavor = if s.target.ret {
                Flavor::Uretprobe
            } else {
                Flavor::Uprobe
            };
            let desc = format!(
                "process(\"{}\").function(\"{}\"){}",
                s.target.path.display(),
                s.target.symbol,
                if s.target.ret { ".return" } else { "" }
            );
            entries.push(ProbeEntry::new(s.pidx, s.cond, flavor, desc));
            file_of.insert(s.pidx, idx);
            if map.insert(s.pidx, s.clone()).is_some() {
                return Err(GroupError::DuplicatePidx(s.pidx));
            }
        }
        Ok(UprobeGroup {
            entries,
            attach: Attach {
                specs: map,
                files,
                file_of,
                progs: programs,
            },
            table: LinkTable::new(TablePolicy::default()),
        })
    }

    /// Changes the batching/closing policy.
    pub fn set_policy(&mut self, policy: TablePolicy) {
        self.table.set_policy(policy);
    }

    /// Whether `pidx` is attached in the kernel now.
    pub fn is_attached(&self, pidx: Pidx) -> bool {
        self.table.is_attached(pidx)
    }

    /// Member counts of the kernel links held (a multi link has more than one member).
    pub fn link_sizes(&self) -> Vec<usize> {
        self.table.link_sizes()
    }

    /// What the last apply did in the kernel (links made and closed, time spent).
    pub fn last_apply(&self) -> &ApplyStats {
        self.table.stats()
    }

    /// Problems outside any planned action (a split multi link member that could not be
    /// re-attached); the orchestrator prints them as warnings.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.table.take_warnings()
    }
}

/// The name of this probe group in decision lines (`otf: enabling (uprobe) pidx N`).
pub const GROUP_NAME: &str = "uprobes";

/// Why bodies of uprobes may notify user space themselves.
pub const SAFE_CONTEXT: SafeContext = SafeContext::safe(
    "uprobes run in process context (the probed task took the breakpoint), \
     where ring-buffer output with wakeup is safe",
);

impl ProbeGroup for UprobeGroup {
    fn name(&self) -> &'static str {
        GROUP_NAME
    }

    fn probes(&self) -> &[ProbeEntry] {
        &self.entries
    }

    fn otf_supported(&self) -> bool {
        true
    }

    fn otf_safe_context(&self) -> SafeContext {
        SAFE_CONTEXT
    }

    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        self.table.apply(&self.attach, plan)
    }
}
