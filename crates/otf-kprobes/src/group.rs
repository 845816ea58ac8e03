//! [`KprobeGroup`]: the `kernel.function(...)` probes of a session, a
//! [`LinkGroup`](otf_attach::group::LinkGroup) with the kprobe [`Kprobes`] attacher: armed by
//! attaching (kprobe_multi when two or more functions share a condition and it is available)
//! and disarmed by closing their links.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::BorrowedFd;

use otf_attach::group::{
    DuplicatePidx, LinkAttacher, LinkGroup, LinkPrograms, LinkSpec, LinkTarget,
};
use otf_attach::sys::{self, Link};
use otf_attach::table::TablePolicy;
use otf_core::{Decision, Flavor, Pidx, ProbeType, SafeContext, Vocabulary};

use crate::resolve::{KprobeTarget, NO_KPROBES};

/// The `kernel.function(...)` probe type.
///
/// Its bodies may notify user space themselves, in whatever context the probed function runs
/// (NMI, scheduler locks, the wake-up path itself): the notification is a BPF ring-buffer
/// record, whose wake-up the kernel defers through `irq_work` (`bpf_ringbuf_commit`,
/// kernel/bpf/ringbuf.c), which may be queued from any context; in NMI the ring is only
/// try-locked, so a busy ring drops the record (counted) rather than deadlocking, and a kprobe
/// hit inside a running BPF program is skipped by the kernel's own recursion guard. A
/// notification that cannot be sent leaves `need_refresh` set for the background timer.
pub const PROBE_TYPE: ProbeType = ProbeType {
    name: "kprobes",
    family: "kernel.function",
    point: "kernel.function(\"GLOB\")",
    suffixes: &["call", "return"],
    flavor: Flavor::Kprobe,
    return_flavor: Some(Flavor::Kretprobe),
    // Registered disabled at start (SystemTap's words; a BPF kprobe whose condition is false
    // is in fact not attached), enabled and disabled later.
    vocabulary: Vocabulary {
        start_disarmed: Decision::RegisteringAsDisabled,
        arm: Decision::Enabling,
        disarm: Decision::Disabling,
    },
    safe_context: SafeContext::safe(
        "ring-buffer wake-ups go through irq_work, which may be queued from any context (NMI included); \
         a record that cannot be sent leaves the refresh to the background timer",
    ),
};

/// One kernel attachment of the group: a kernel function, entry or return, with its pidx and
/// condition.
pub type KprobeSpec = LinkSpec<KprobeTarget>;

impl LinkTarget for KprobeTarget {
    fn ret(&self) -> bool {
        self.ret
    }

    fn function_point(&self) -> String {
        format!("kernel.function(\"{}\")", self.symbol)
    }
}

/// The BPF programs the group attaches: `entry` is `SEC("kprobe")` (entry probes and the entry
/// part of `@entry` return probes), `ret` `SEC("kretprobe")`, and their `.multi` versions if
/// loaded.
pub type KprobePrograms = LinkPrograms;

/// The fewest functions that share one kprobe_multi link; a lone function gets a plain kprobe.
///
/// Each kprobe_multi link is an fprobe with an ftrace_ops of its own: attaching one builds
/// an ftrace trampoline, and closing one waits for RCU-tasks grace periods. A plain kprobe on
/// an ftrace site shares the kprobes' ftrace_ops. Measured in the 6.12 VM, 50 arm/disarm
/// cycles of `vfs_read` and its return: 12.6–17.2 s with one-function kprobe_multi links,
/// 6.7–8.3 s with plain kprobes.
pub const MIN_MULTI: usize = 2;

/// How kprobes attach: by function name, one perf kprobe or one kprobe_multi link for all
/// the functions of a condition.
#[derive(Debug)]
pub struct Kprobes;

impl LinkAttacher for Kprobes {
    const TYPE: &'static ProbeType = &PROBE_TYPE;
    type Target = KprobeTarget;
    type Key = ();
    type Error = DuplicatePidx;

    fn policy() -> TablePolicy {
        TablePolicy {
            min_multi: MIN_MULTI,
            ..TablePolicy::default()
        }
    }

    fn new(_specs: &BTreeMap<Pidx, KprobeSpec>) -> Result<Kprobes, DuplicatePidx> {
        Ok(Kprobes)
    }

    fn key(&self, _spec: &KprobeSpec) {}

    fn attach_one(
        &self,
        prog: BorrowedFd<'_>,
        spec: &KprobeSpec,
        ret: bool,
        cookie: u64,
    ) -> io::Result<Link> {
        sys::attach_kprobe(prog, &spec.target.symbol, ret, cookie)
    }

    fn attach_many(
        &self,
        prog: BorrowedFd<'_>,
        _key: &(),
        specs: &[&KprobeSpec],
        cookies: &[u64],
        ret: bool,
    ) -> io::Result<Link> {
        let names: Vec<&str> = specs.iter().map(|s| s.target.symbol.as_str()).collect();
        sys::attach_kprobe_multi(prog, &names, cookies, ret)
    }

    fn explain(&self, spec: &KprobeSpec, what: &str, err: &io::Error) -> String {
        let symbol = &spec.target.symbol;
        if crate::kprobes_available().is_err() {
            return format!("attach {what} {symbol}: {NO_KPROBES}; this kernel has none");
        }
        let mut msg = format!("attach {what} {symbol}: {err}");
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

/// The `kernel.function(...)` probes of a session: a [`LinkGroup`] of [`Kprobes`].
///
/// Armed = attached; disarmed = link closed. At start a probe whose condition is false is
/// "registering as disabled": nothing is attached in the kernel (a BPF kprobe has no disabled
/// state cheaper than absence). Batching and closing follow [`otf_attach::table`], with
/// kprobe_multi links of [`MIN_MULTI`] functions or more.
pub type KprobeGroup = LinkGroup<Kprobes>;
