//! [`KprobeGroup`]: the `kernel.function(...)` probes of a session, armed by attaching
//! (kprobe_multi when two or more functions share a condition and it is available) and
//! disarmed by closing their links.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use otf_attach::sys::{self, Link};
use otf_attach::table::{cookie, ApplyStats, Attacher, LinkTable, Part, TablePolicy};
use otf_core::{ApplyReport, CondId, Flavor, Pidx, Plan, ProbeEntry, ProbeGroup, SafeContext};

use crate::resolve::{KprobeTarget, NO_KPROBES};

/// One kernel attachment of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KprobeSpec {
    /// The probe's index (the attach cookie).
    pub pidx: Pidx,
    /// The condition that gates it (`None`: always armed).
    pub cond: Option<CondId>,
    /// The kernel function, entry or return.
    pub target: KprobeTarget,
    /// For a return probe whose body reads `@entry(...)`: also attach the entry program at the
    /// function entry (cookie `pidx | COOKIE_ENTRY`).
    pub entry_save: bool,
}

/// The BPF programs the group attaches, as file descriptors (from the otf-bpf runtime).
#[derive(Debug)]
pub struct KprobePrograms {
    /// `SEC("kprobe")`: entry probes and the entry part of `@entry` return probes.
    pub kprobe: OwnedFd,
    /// `SEC("kretprobe")`.
    pub kretprobe: OwnedFd,
    /// `SEC("kprobe.multi")`, if loaded (needs CONFIG_FPROBE).
    pub kprobe_multi: Option<OwnedFd>,
    /// `SEC("kretprobe.multi")`, if loaded.
    pub kretprobe_multi: Option<OwnedFd>,
}

/// Batching key: probes with one condition and one kind share a kprobe_multi link.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KprobeKey {
    cond: Option<CondId>,
    ret: bool,
}

struct Attach {
    specs: BTreeMap<Pidx, KprobeSpec>,
    progs: KprobePrograms,
}

impl Attach {
    fn spec(&self, pidx: Pidx) -> io::Result<&KprobeSpec> {
        self.specs
            .get(&pidx)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("unknown pidx {pidx}")))
    }
}

impl Attacher for Attach {
    type Key = KprobeKey;

    fn key(&self, pidx: Pidx) -> Option<KprobeKey> {
        let s = self.specs.get(&pidx)?;
        Some(KprobeKey {
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
        let s = self.spec(pidx)?;
        let ret = s.target.ret && part == Part::Main;
        let prog = if ret {
            &self.progs.kretprobe
        } else {
            &self.progs.kprobe
        };
        sys::attach_kprobe(prog.as_fd(), &s.target.symbol, ret, cookie(pidx, part))
    }

    fn attach_many(&self, key: &KprobeKey, part: Part, pidxs: &[Pidx]) -> Option<io::Result<Link>> {
        let ret = key.ret && part == Part::Main;
        let prog = if ret {
            self.progs.kretprobe_multi.as_ref()
        } else {
            self.progs.kprobe_multi.as_ref()
        }?;
        let mut names = Vec::with_capacity(pidxs.len());
        for p in pidxs {
            match self.spec(*p) {
                Ok(s) => names.push(s.target.symbol.as_str()),
                Err(e) => return Some(Err(e)),
            }
        }
        let cookies: Vec<u64> = pidxs.iter().map(|p| cookie(*p, part)).collect();
        Some(sys::attach_kprobe_multi(
            prog.as_fd(),
            &names,
            &cookies,
            ret,
        ))
    }

    fn explain(&self, pidx: Pidx, part: Part, err: &io::Error) -> String {
        let Some(s) = self.specs.get(&pidx) else {
            return err.to_string();
        };
        let what = match (s.target.ret, part) {
            (true, Part::Main) => "kretprobe",
            (true, Part::EntrySave) => "kprobe (entry of a .return probe)",
            _ => "kprobe",
        };
        if crate::kprobes_available().is_err() {
            return format!(
                "attach {what} {}: {NO_KPROBES}; this kernel has none",
                s.target.symbol
            );
        }
        let mut msg = format!("attach {what} {}: {err}", s.target.symbol);
        match err.raw_os_error() {
            Some(libc::ENOENT) => msg.push_str(" (no such probeable kernel function)"),
            Some(libc::EPERM) | Some(libc::EACCES) => {
                msg.push_str(" (kprobes need root or CAP_PERFMON + CAP_BPF)")
            }
            _ => {}
        }
        msg
    }
}

/// The fewest functions that share one kprobe_multi link; a lone function gets a plain kprobe.
///
/// Each kprobe_multi link is an fprobe with an ftrace_ops of its own: attaching one builds
/// an ftrace trampoline, and closing one waits for RCU-tasks grace periods. A plain kprobe on
/// an ftrace site shares the kprobes' ftrace_ops. Measured in the 6.12 VM, 50 arm/disarm
/// cycles of `vfs_read` and its return: 12.6–17.2 s with one-function kprobe_multi links,
/// 6.7–8.3 s with plain kprobes.
pub const MIN_MULTI: usize = 2;

/// The `kernel.function(...)` probes of a session.
///
/// Armed = attached; disarmed = link closed. At start a probe whose condition is false is
/// "registering as disabled": nothing is attached in the kernel (a BPF kprobe has no disabled
/// state cheaper than absence). Batching and closing follow [`otf_attach::table`].
pub struct KprobeGroup {
    entries: Vec<ProbeEntry>,
    attach: Attach,
    table: LinkTable,
}

impl std::fmt::Debug for KprobeGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KprobeGroup")
            .field("probes", &self.entries.len())
            .field("table", &self.table)
            .finish()
    }
}

/// Two specs with one pidx.
#[derive(Debug, thiserror::Error)]
#[error("pidx {0} given twice")]
pub struct DuplicatePidx(pub Pidx);

impl KprobeGroup {
    /// A group over `specs`, attaching `programs`.
    pub fn new(
        mut specs: Vec<KprobeSpec>,
        programs: KprobePrograms,
    ) -> Result<KprobeGroup, DuplicatePidx> {
        specs.sort_by_key(|s| s.pidx);
        let mut map = BTreeMap::new();
        let mut entries = Vec::new();
        for s in specs {
            let flavor = if s.target.ret {
                Flavor::Kretprobe
            } else {
                Flavor::Kprobe
            };
            let desc = format!(
                "kernel.function(\"{}\"){}",
                s.target.symbol,
                if s.target.ret { ".return" } else { "" }
            );
            entries.push(ProbeEntry::new(s.pidx, s.cond, flavor, desc));
            let p = s.pidx;
            if map.insert(p, s).is_some() {
                return Err(DuplicatePidx(p));
            }
        }
        Ok(KprobeGroup {
            entries,
            attach: Attach {
                specs: map,
                progs: programs,
            },
            table: LinkTable::new(TablePolicy {
                min_multi: MIN_MULTI,
                ..TablePolicy::default()
            }),
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

    /// Member counts of the kernel links held.
    pub fn link_sizes(&self) -> Vec<usize> {
        self.table.link_sizes()
    }

    /// What the last apply did in the kernel.
    pub fn last_apply(&self) -> &ApplyStats {
        self.table.stats()
    }

    /// Problems outside any planned action, for the orchestrator to print.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.table.take_warnings()
    }
}

/// Why bodies of kprobes may notify user space themselves, in whatever context the probed
/// function runs (NMI, scheduler locks, the wake-up path itself): the notification is a BPF
/// ring-buffer record, whose wake-up the kernel defers through `irq_work`
/// (`bpf_ringbuf_commit`, kernel/bpf/ringbuf.c), which may be queued from any context; in NMI
/// the ring is only try-locked, so a busy ring drops the record (counted) rather than
/// deadlocking, and a kprobe hit inside a running BPF program is skipped by the kernel's own
/// recursion guard. A notification that cannot be sent leaves `need_refresh` set for the
/// background timer.
pub const SAFE_CONTEXT: SafeContext = SafeContext::safe(
    "ring-buffer wake-ups go through irq_work, which may be queued from any context (NMI included); \
     a record that cannot be sent leaves the refresh to the background timer",
);

/// The name of this probe group in decision lines (`otf: enabling (kprobe) pidx N`).
pub const GROUP_NAME: &str = "kprobes";

impl ProbeGroup for KprobeGroup {
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
