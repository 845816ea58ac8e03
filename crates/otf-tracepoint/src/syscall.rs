//! Syscall probes dispatched by number: `syscalls:sys_enter_*`/`sys_exit_*` are ftrace's
//! synthetic events, attached as perf tracepoint events, and the kernel releases those one
//! grace period after another (`perf_trace_event_unreg` → `tracepoint_synchronize_unregister`
//! under `event_mutex`): 360 of them take over 10 s to release. The real tracepoints under
//! them, `raw_syscalls:sys_enter` and `sys_exit`, take a raw tracepoint link that releases in
//! well under a millisecond. So the syscall probes of one *dispatch unit* (the probes of one
//! direction that share a condition: they are armed and disarmed together) get ONE raw link
//! whose program looks the syscall number up in a map of `(unit, nr)` → pidx
//! ([`SyscallDispatch`]).
//!
//! The number of a tracepoint comes from its name: the tracepoint is named after the
//! kernel's `SYSCALL_DEFINE` (`sys_enter_newfstat`), the table of numbers after unistd
//! (`fstat`); [`syscall_nr`] maps the names that differ ([`ALIASES`]) and leaves a name it
//! cannot map to a perf attachment, never to a guessed number.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use otf_core::Pidx;

use crate::resolve::Tracepoint;

/// Syscall entry or exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyscallDir {
    /// `syscalls:sys_enter_*`, dispatched from `raw_syscalls:sys_enter`.
    Enter,
    /// `syscalls:sys_exit_*`, dispatched from `raw_syscalls:sys_exit`.
    Exit,
}

impl SyscallDir {
    /// The raw tracepoint the direction's dispatch link attaches to.
    pub fn raw_tracepoint(self) -> &'static str {
        match self {
            SyscallDir::Enter => "sys_enter",
            SyscallDir::Exit => "sys_exit",
        }
    }
}

/// Tracepoint names (the `SYSCALL_DEFINE` name) whose unistd name differs: `(tracepoint,
/// unistd)`. Checked against x86_64's `/sys/kernel/tracing/events/syscalls/` (6.18, all 360
/// names map) and arm64's `SYSCALL_DEFINE`s.
pub const ALIASES: &[(&str, &str)] = &[
    ("newfstat", "fstat"),
    ("newstat", "stat"),
    ("newlstat", "lstat"),
    ("newuname", "uname"),
    ("sendfile64", "sendfile"),
    ("umount", "umount2"),
    ("fadvise64_64", "fadvise64"),
];

/// The direction and the syscall name (as the tracepoint spells it) of a `syscalls:*`
/// tracepoint.
pub fn syscall_of(tp: &Tracepoint) -> Option<(SyscallDir, &str)> {
    if tp.subsystem != "syscalls" {
        return None;
    }
    if let Some(n) = tp.name.strip_prefix("sys_enter_") {
        Some((SyscallDir::Enter, n))
    } else {
        tp.name
            .strip_prefix("sys_exit_")
            .map(|n| (SyscallDir::Exit, n))
    }
}

/// The number of the syscall the kernel names `name` in its tracepoints (`newfstat`, `read`)
/// on this architecture, from the `syscalls` crate's table; `None` if unknown.
pub fn syscall_number(name: &str) -> Option<u32> {
    let unistd = ALIASES
        .iter()
        .find(|(k, _)| *k == name)
        .map_or(name, |(_, u)| u);
    let nr = unistd.parse::<syscalls::Sysno>().ok()?.id();
    u32::try_from(nr).ok()
}

/// The direction and number of a `syscalls:*` tracepoint, when its name maps
/// ([`syscall_number`]).
pub fn syscall_nr(tp: &Tracepoint) -> Option<(SyscallDir, u32)> {
    let (dir, name) = syscall_of(tp)?;
    Some((dir, syscall_number(name)?))
}

/// The fewest syscalls of one direction a unit must probe to be dispatched from one raw link
/// instead of one perf tracepoint each. Measured (docs/performance.md, "Releasing many
/// tracepoints"): while armed, a raw `sys_enter` link costs every syscall of the machine
/// ~100-125 ns more than a perf tracepoint on another syscall does (the raw tracepoint's own
/// run, retpolines; otf's prologue adds little to a no-op program), and each perf tracepoint
/// costs ~50 ms of serialised release, which a re-arm waits for. One or two syscalls release
/// within the 100 ms a toggle may take; from three on, dispatch.
pub const MIN_DISPATCH: usize = 3;

/// The threshold in force: [`MIN_DISPATCH`], or the environment's `OTF_SYSCALL_DISPATCH_MIN`
/// (a number; a large one keeps every syscall probe a perf tracepoint), which benchmarks use
/// to compare the two attachments on one script. Read by everything that must agree on the
/// units (the image's chains, the program kinds, the group).
pub fn min_dispatch() -> usize {
    std::env::var("OTF_SYSCALL_DISPATCH_MIN")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(MIN_DISPATCH)
}

/// What makes a dispatch unit: the condition and the direction.
type UnitKey = (Option<u32>, SyscallDir);

/// One dispatch unit: the syscall probes of one direction sharing one condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatchUnit {
    /// The condition of its probes (`None`: unconditional).
    pub cond: Option<u32>,
    /// Entry or exit.
    pub dir: SyscallDir,
    /// Its probes and their syscall numbers, in pidx order.
    pub members: Vec<(Pidx, u32)>,
}

impl DispatchUnit {
    /// Per syscall number, the pidx the dispatch starts at: the lowest of the unit's probes
    /// on it (the others follow in its chain, [`SyscallDispatch::chains`]).
    pub fn heads(&self) -> BTreeMap<u32, Pidx> {
        let mut out = BTreeMap::new();
        for &(p, nr) in &self.members {
            let e = out.entry(nr).or_insert(p);
            *e = (*e).min(p);
        }
        out
    }
}

/// Which syscall probes are dispatched, and in which unit (the unit's index is its raw link's
/// cookie). Computed the same way by the image builder (for the chains) and by the group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyscallDispatch {
    /// The units, in (condition, direction) order.
    pub units: Vec<DispatchUnit>,
    unit_of: HashMap<Pidx, usize>,
}

impl SyscallDispatch {
    /// The dispatch of `probes` (`(pidx, condition, tracepoint)`): when `available` (the
    /// syscall programs and their map are loaded), every (condition, direction) with at least
    /// `min` distinct mappable syscalls becomes a unit, at most `max_units` of them. A
    /// number two different tracepoint names map to is not trusted: their probes stay perf.
    pub fn plan(
        probes: &[(Pidx, Option<u32>, Tracepoint)],
        available: bool,
        min: usize,
        max_units: usize,
    ) -> SyscallDispatch {
        if !available {
            return SyscallDispatch::default();
        }
        let mut names: HashMap<(SyscallDir, u32), &str> = HashMap::new();
        let mut clash: Vec<(SyscallDir, u32)> = Vec::new();
        for (_, _, tp) in probes {
            if let Some(k) = syscall_nr(tp) {
                match names.insert(k, &tp.name) {
                    Some(other) if other != tp.name => clash.push(k),
                    _ => {}
                }
            }
        }
        let mut by_key: BTreeMap<UnitKey, Vec<(Pidx, u32)>> = BTreeMap::new();
        for (pidx, cond, tp) in probes {
            if let Some((dir, nr)) = syscall_nr(tp).filter(|k| !clash.contains(k)) {
                by_key.entry((*cond, dir)).or_default().push((*pidx, nr));
            }
        }
        let mut out = SyscallDispatch::default();
        for ((cond, dir), mut members) in by_key {
            members.sort_unstable();
            let mut nrs: Vec<u32> = members.iter().map(|m| m.1).collect();
            nrs.sort_unstable();
            nrs.dedup();
            if nrs.len() < min.max(1) || out.units.len() >= max_units {
                continue;
            }
            for (p, _) in &members {
                out.unit_of.insert(*p, out.units.len());
            }
            out.units.push(DispatchUnit { cond, dir, members });
        }
        out
    }

    /// The unit that dispatches `pidx`, if any.
    pub fn unit_of(&self, pidx: Pidx) -> Option<usize> {
        self.unit_of.get(&pidx).copied()
    }

    /// Probes of one unit on one syscall, two or more, each sorted: the BPF runtime runs them
    /// one after the other from the head ([`DispatchUnit::heads`]), as a perf chain.
    pub fn chains(&self) -> Vec<Vec<Pidx>> {
        let mut out = Vec::new();
        for u in &self.units {
            let mut by_nr: BTreeMap<u32, Vec<Pidx>> = BTreeMap::new();
            for &(p, nr) in &u.members {
                by_nr.entry(nr).or_default().push(p);
            }
            out.extend(by_nr.into_values().filter(|v| v.len() > 1));
        }
        out
    }
}

/// The BPF side of syscall dispatch: the programs (`BPF_PROG_TYPE_RAW_TRACEPOINT`, cookie =
/// unit) and the dispatch map, an array of `u32` where `unit * nrs + nr` holds the pidx + 1
/// to run (0: none).
#[derive(Clone, Copy, Debug)]
pub struct SyscallPrograms<'a> {
    /// The program for `raw_syscalls:sys_enter`.
    pub enter: Option<BorrowedFd<'a>>,
    /// The program for `raw_syscalls:sys_exit`.
    pub exit: Option<BorrowedFd<'a>>,
    /// The dispatch map.
    pub map: BorrowedFd<'a>,
    /// Units the map has room for.
    pub units: u32,
    /// Syscall numbers per unit.
    pub nrs: u32,
}

/// Writes `value` at `key` of the `u32 → u32` array `map` (`BPF_MAP_UPDATE_ELEM`).
pub(crate) fn map_update(map: BorrowedFd<'_>, key: u32, value: u32) -> io::Result<()> {
    #[repr(C)]
    struct Attr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    let attr = Attr {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    // SAFETY: `attr` is a valid `union bpf_attr` prefix for BPF_MAP_UPDATE_ELEM whose key and
    // value pointers point at 4-byte values that outlive the call; the kernel reads only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_ELEM,
            &attr as *const Attr,
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(name: &str) -> Tracepoint {
        Tracepoint::new("syscalls", name)
    }

    #[test]
    fn names_map_to_this_architectures_numbers() {
        assert_eq!(
            syscall_nr(&tp("sys_enter_getppid")),
            Some((SyscallDir::Enter, libc::SYS_getppid as u32))
        );
        assert_eq!(
            syscall_nr(&tp("sys_exit_read")),
            Some((SyscallDir::Exit, libc::SYS_read as u32))
        );
        // SYSCALL_DEFINE names that unistd spells otherwise.
        assert_eq!(syscall_number("newfstat"), Some(libc::SYS_fstat as u32));
        assert_eq!(syscall_number("newuname"), Some(libc::SYS_uname as u32));
        assert_eq!(syscall_number("umount"), Some(libc::SYS_umount2 as u32));
        assert_eq!(
            syscall_number("newfstatat"),
            Some(libc::SYS_newfstatat as u32)
        );
        // Unknown names and other subsystems stay perf.
        assert_eq!(syscall_number("no_such_call"), None);
        assert_eq!(
            syscall_nr(&Tracepoint::new("raw_syscalls", "sys_enter")),
            None
        );
        assert_eq!(syscall_nr(&tp("sys_enter")), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_64_only_names() {
        assert_eq!(syscall_number("newstat"), Some(libc::SYS_stat as u32));
        assert_eq!(syscall_number("newlstat"), Some(libc::SYS_lstat as u32));
        assert_eq!(
            syscall_number("sendfile64"),
            Some(libc::SYS_sendfile as u32)
        );
    }

    fn probes() -> Vec<(Pidx, Option<u32>, Tracepoint)> {
        vec![
            (3, Some(0), tp("sys_enter_read")),
            (4, Some(0), tp("sys_enter_write")),
            (5, Some(0), tp("sys_exit_read")),
            (6, Some(1), tp("sys_enter_read")),
            (7, Some(0), tp("sys_enter_read")),
            (8, None, tp("sys_enter_close")),
            (9, Some(0), Tracepoint::new("sched", "sched_switch")),
        ]
    }

    #[test]
    fn units_are_condition_and_direction_with_enough_syscalls() {
        let d = SyscallDispatch::plan(&probes(), true, 1, 32);
        let keys: Vec<_> = d.units.iter().map(|u| (u.cond, u.dir)).collect();
        assert_eq!(
            keys,
            vec![
                (None, SyscallDir::Enter),
                (Some(0), SyscallDir::Enter),
                (Some(0), SyscallDir::Exit),
                (Some(1), SyscallDir::Enter),
            ]
        );
        assert_eq!(d.unit_of(7), Some(1));
        assert_eq!(d.unit_of(6), Some(3));
        assert_eq!(d.unit_of(9), None);
        // Two probes of one unit on one syscall chain; the same syscall in another unit does
        // not join them.
        assert_eq!(d.chains(), vec![vec![3, 7]]);
        let read = libc::SYS_read as u32;
        assert_eq!(d.units[1].heads().get(&read), Some(&3));
        // With a threshold of 2 distinct syscalls only unit (0, enter) qualifies.
        let d = SyscallDispatch::plan(&probes(), true, 2, 32);
        assert_eq!(d.units.len(), 1);
        assert_eq!(
            d.units[0].members,
            vec![(3, read), (4, libc::SYS_write as u32), (7, read)]
        );
        assert_eq!(d.unit_of(5), None);
        // Not available, or no room: nothing dispatched.
        assert!(SyscallDispatch::plan(&probes(), false, 1, 32)
            .units
            .is_empty());
        assert_eq!(SyscallDispatch::plan(&probes(), true, 1, 2).units.len(), 2);
    }

    #[test]
    fn a_number_two_names_claim_is_not_trusted() {
        // `newfstat` and a hypothetical `fstat` tracepoint both map to fstat's number.
        let ps = vec![
            (0, None, tp("sys_enter_newfstat")),
            (1, None, tp("sys_enter_fstat")),
            (2, None, tp("sys_enter_read")),
        ];
        let d = SyscallDispatch::plan(&ps, true, 1, 32);
        assert_eq!(d.unit_of(0), None);
        assert_eq!(d.unit_of(1), None);
        assert_eq!(d.unit_of(2), Some(0));
    }
}
