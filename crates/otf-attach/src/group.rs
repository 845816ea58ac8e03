//! [`LinkGroup`]: the one [`ProbeGroup`] of the probe types that arm by attaching a BPF link
//! and disarm by closing it (uprobes, kprobes).
//!
//! The group holds what those types share: the probes' entries, their specs by pidx, the
//! programs (entry, return, and their multi versions), the [`LinkTable`] that applies plans
//! (batching, bisecting, closing concurrently), and the `@entry` attachment of return probes.
//! A probe type brings only its [`LinkAttacher`]: how to attach one probe or a batch, what
//! else separates batches (the probed file), and how to word an attach error. Its name, flavors
//! and safe context come from its [`ProbeType`].

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use otf_core::{ApplyReport, CondId, Pidx, Plan, ProbeEntry, ProbeGroup, ProbeType};

use crate::sys::Link;
use crate::table::{cookie, ApplyStats, Attacher, LinkTable, Part, TablePolicy};

/// One kernel attachment of a link group: a resolved target with its pidx and condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkSpec<T> {
    /// The probe's index (the attach cookie).
    pub pidx: Pidx,
    /// The condition that gates it (`None`: always armed).
    pub cond: Option<CondId>,
    /// Where it attaches (a kernel function, a function of a file), entry or return.
    pub target: T,
    /// For a return probe whose body reads `@entry(...)`: also attach the entry program at the
    /// function entry (cookie `pidx | COOKIE_ENTRY`) so the runtime saves the entry values.
    pub entry_save: bool,
}

/// What a link group needs to know of a probe's target.
pub trait LinkTarget {
    /// `true` for a `.return` probe.
    fn ret(&self) -> bool;

    /// The probed function as a probe point, without `.return` (which the group adds to a
    /// return probe's [`ProbeEntry`] description), e.g. `kernel.function("vfs_read")`.
    fn function_point(&self) -> String;
}

/// The BPF programs a link group attaches, as file descriptors (e.g. `Program::as_fd()` of
/// the otf-bpf runtime, duplicated with `try_clone_to_owned`). Every program reads its pidx
/// from `bpf_get_attach_cookie`.
#[derive(Debug)]
pub struct LinkPrograms {
    /// Entry probes, and the entry part of `@entry` return probes.
    pub entry: OwnedFd,
    /// Return probes.
    pub ret: OwnedFd,
    /// The multi-link version of `entry`, if loaded: batches attachments into one link.
    pub entry_multi: Option<OwnedFd>,
    /// The multi-link version of `ret`, if loaded.
    pub ret_multi: Option<OwnedFd>,
}

/// Two specs with one pidx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DuplicatePidx(pub Pidx);

impl fmt::Display for DuplicatePidx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pidx {} given twice", self.0)
    }
}

impl std::error::Error for DuplicatePidx {}

/// How one link-based probe type attaches its probes: the only part of a [`LinkGroup`] that
/// differs between types.
pub trait LinkAttacher: Sync + Sized {
    /// The type's description: group name, flavors, safe context.
    const TYPE: &'static ProbeType;

    /// Where a probe attaches.
    type Target: LinkTarget + Sync;

    /// What separates batches besides the condition and entry/return (e.g. the probed file);
    /// `()` when nothing does.
    type Key: Ord + Clone + Debug + Send;

    /// Why a group cannot be made.
    type Error: From<DuplicatePidx>;

    /// The batching and closing policy a new group starts with.
    fn policy() -> TablePolicy {
        TablePolicy::default()
    }

    /// The attacher for the group's `specs` (e.g. opening the probed files now).
    fn new(specs: &BTreeMap<Pidx, LinkSpec<Self::Target>>) -> Result<Self, Self::Error>;

    /// The type's batching key of `spec`.
    fn key(&self, spec: &LinkSpec<Self::Target>) -> Self::Key;

    /// Attaches `prog` at `spec` (as a return probe if `ret`) with `cookie`, as its own link.
    fn attach_one(
        &self,
        prog: BorrowedFd<'_>,
        spec: &LinkSpec<Self::Target>,
        ret: bool,
        cookie: u64,
    ) -> io::Result<Link>;

    /// Attaches the multi program `prog` at every spec of `specs` (all with `key`), with
    /// `cookies[i]` for `specs[i]`, as one multi link.
    fn attach_many(
        &self,
        prog: BorrowedFd<'_>,
        key: &Self::Key,
        specs: &[&LinkSpec<Self::Target>],
        cookies: &[u64],
        ret: bool,
    ) -> io::Result<Link>;

    /// Words an attach error of `spec` for the user; `what` names the attachment (`uprobe`,
    /// `kretprobe`, `kprobe (entry of a .return probe)`).
    fn explain(&self, spec: &LinkSpec<Self::Target>, what: &str, err: &io::Error) -> String;
}

/// The group's specs, programs and attacher: the [`Attacher`] its link table applies plans with.
struct Links<A: LinkAttacher> {
    specs: BTreeMap<Pidx, LinkSpec<A::Target>>,
    progs: LinkPrograms,
    attacher: A,
}

impl<A: LinkAttacher> Links<A> {
    fn spec(&self, pidx: Pidx) -> io::Result<&LinkSpec<A::Target>> {
        self.specs
            .get(&pidx)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("unknown pidx {pidx}")))
    }
}

impl<A: LinkAttacher> Attacher for Links<A> {
    /// Return probe?, condition, the type's key.
    type Key = (bool, Option<CondId>, A::Key);

    fn key(&self, pidx: Pidx) -> Option<Self::Key> {
        let s = self.specs.get(&pidx)?;
        Some((s.target.ret(), s.cond, self.attacher.key(s)))
    }

    fn parts(&self, pidx: Pidx) -> &'static [Part] {
        match self.specs.get(&pidx) {
            Some(s) if s.target.ret() && s.entry_save => &[Part::Main, Part::EntrySave],
            _ => &[Part::Main],
        }
    }

    fn attach_one(&self, pidx: Pidx, part: Part) -> io::Result<Link> {
        let s = self.spec(pidx)?;
        let ret = s.target.ret() && part == Part::Main;
        let prog = if ret {
            &self.progs.ret
        } else {
            &self.progs.entry
        };
        self.attacher
            .attach_one(prog.as_fd(), s, ret, cookie(pidx, part))
    }

    fn attach_many(&self, key: &Self::Key, part: Part, pidxs: &[Pidx]) -> Option<io::Result<Link>> {
        let ret = key.0 && part == Part::Main;
        let prog = if ret {
            self.progs.ret_multi.as_ref()
        } else {
            self.progs.entry_multi.as_ref()
        }?;
        let specs: Vec<_> = match pidxs.iter().map(|p| self.spec(*p)).collect() {
            Ok(specs) => specs,
            Err(e) => return Some(Err(e)),
        };
        let cookies: Vec<u64> = pidxs.iter().map(|p| cookie(*p, part)).collect();
        Some(
            self.attacher
                .attach_many(prog.as_fd(), &key.2, &specs, &cookies, ret),
        )
    }

    fn explain(&self, pidx: Pidx, part: Part, err: &io::Error) -> String {
        let Some(s) = self.specs.get(&pidx) else {
            return err.to_string();
        };
        let entry = A::TYPE.flavor(false);
        let what = match (s.target.ret(), part) {
            (true, Part::Main) => A::TYPE.flavor(true).to_string(),
            (true, Part::EntrySave) => format!("{entry} (entry of a .return probe)"),
            _ => entry.to_string(),
        };
        self.attacher.explain(s, &what, err)
    }
}

/// The probes of one link-based type in a session.
///
/// Armed = attached; disarmed = link closed (a BPF program on a uprobe or kprobe has no
/// disabled state cheaper than absence: at start a probe whose condition is false has nothing
/// in the kernel). One pidx per kernel attachment. Attachments made in one apply are batched
/// into multi links per condition, entry/return and the type's key, and links are closed
/// concurrently: see [`crate::table`].
pub struct LinkGroup<A: LinkAttacher> {
    entries: Vec<ProbeEntry>,
    // Before `links`: the table's links are closed before the programs and files are.
    table: LinkTable,
    links: Links<A>,
}

impl<A: LinkAttacher> Debug for LinkGroup<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkGroup")
            .field("type", &A::TYPE.name)
            .field("probes", &self.entries.len())
            .field("table", &self.table)
            .finish()
    }
}

impl<A: LinkAttacher> LinkGroup<A> {
    /// A group over `specs`, attaching `programs`.
    pub fn new(
        mut specs: Vec<LinkSpec<A::Target>>,
        programs: LinkPrograms,
    ) -> Result<LinkGroup<A>, A::Error> {
        specs.sort_by_key(|s| s.pidx);
        let mut entries = Vec::with_capacity(specs.len());
        let mut map = BTreeMap::new();
        for s in specs {
            let flavor = A::TYPE.flavor(s.target.ret());
            let ret = if s.target.ret() { ".return" } else { "" };
            let point = format!("{}{ret}", s.target.function_point());
            entries.push(ProbeEntry::new(s.pidx, s.cond, flavor, point));
            let pidx = s.pidx;
            if map.insert(pidx, s).is_some() {
                return Err(DuplicatePidx(pidx).into());
            }
        }
        let attacher = A::new(&map)?;
        Ok(LinkGroup {
            entries,
            table: LinkTable::new(A::policy()),
            links: Links {
                specs: map,
                progs: programs,
                attacher,
            },
        })
    }

    /// The type's attacher.
    pub fn attacher(&self) -> &A {
        &self.links.attacher
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

    /// Waits until the links of earlier disarms, which close in the background, are closed:
    /// from then on the disarmed probes are gone from the kernel.
    pub fn wait_closed(&mut self) {
        self.table.wait_closed();
    }

    /// Problems outside any planned action (a split multi link member that could not be
    /// re-attached); the orchestrator prints them as warnings.
    pub fn take_warnings(&mut self) -> Vec<String> {
        self.table.take_warnings()
    }
}

impl<A: LinkAttacher> ProbeGroup for LinkGroup<A> {
    fn probe_type(&self) -> &'static ProbeType {
        A::TYPE
    }

    fn probes(&self) -> &[ProbeEntry] {
        &self.entries
    }

    fn otf_supported(&self) -> bool {
        true
    }

    fn apply(&mut self, plan: &Plan) -> ApplyReport {
        self.table.apply(&self.links, plan)
    }
}

#[cfg(test)]
mod tests {
    //! The group's plumbing with a fake attacher whose "links" are descriptors of /dev/null:
    //! entries, keys, programs, cookies and error wording, without a kernel or root.

    use std::os::fd::{AsRawFd, RawFd};
    use std::sync::Mutex;

    use otf_core::{
        Action, ArmedSet, Decision, Flavor, Op, Phase, PlanInput, SafeContext, Vocabulary,
    };

    use super::*;
    use crate::table::COOKIE_ENTRY;

    const FAKE: ProbeType = ProbeType {
        name: "fakes",
        family: "fake.function",
        point: "fake.function(\"GLOB\")",
        suffixes: &["call", "return"],
        flavor: Flavor::Kprobe,
        return_flavor: Some(Flavor::Kretprobe),
        // Not any real type's words: the group's decisions must take them from its type.
        vocabulary: Vocabulary {
            start_disarmed: Decision::NotStarting,
            arm: Decision::Registering,
            disarm: Decision::Disabling,
        },
        safe_context: SafeContext::not_safe("fake"),
    };

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Fn {
        name: &'static str,
        ret: bool,
        file: u8,
    }

    impl LinkTarget for Fn {
        fn ret(&self) -> bool {
            self.ret
        }
        fn function_point(&self) -> String {
            format!("fake.function(\"{}\")", self.name)
        }
    }

    /// One attach call: program fd, file, cookies, return?
    type Call = (RawFd, u8, Vec<u64>, bool);

    #[derive(Debug, Default)]
    struct Fake {
        calls: Mutex<Vec<Call>>,
    }

    /// "bad" functions refuse any attachment, "bad-entry" ones their entry attachments.
    fn refused(spec: &LinkSpec<Fn>, ret: bool) -> bool {
        spec.target.name == "bad" || (spec.target.name == "bad-entry" && !ret)
    }

    fn dev_null() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    impl LinkAttacher for Fake {
        const TYPE: &'static ProbeType = &FAKE;
        type Target = Fn;
        type Key = u8;
        type Error = DuplicatePidx;

        fn new(_specs: &BTreeMap<Pidx, LinkSpec<Fn>>) -> Result<Fake, DuplicatePidx> {
            Ok(Fake::default())
        }
        fn key(&self, spec: &LinkSpec<Fn>) -> u8 {
            spec.target.file
        }
        fn attach_one(
            &self,
            prog: BorrowedFd<'_>,
            spec: &LinkSpec<Fn>,
            ret: bool,
            cookie: u64,
        ) -> io::Result<Link> {
            if refused(spec, ret) {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            let call = (prog.as_raw_fd(), spec.target.file, vec![cookie], ret);
            self.calls.lock().unwrap().push(call);
            Ok(Link::from_fd(dev_null()))
        }
        fn attach_many(
            &self,
            prog: BorrowedFd<'_>,
            file: &u8,
            specs: &[&LinkSpec<Fn>],
            cookies: &[u64],
            ret: bool,
        ) -> io::Result<Link> {
            if specs.iter().any(|s| refused(s, ret)) {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            let call = (prog.as_raw_fd(), *file, cookies.to_vec(), ret);
            self.calls.lock().unwrap().push(call);
            Ok(Link::from_fd(dev_null()))
        }
        fn explain(&self, spec: &LinkSpec<Fn>, what: &str, err: &io::Error) -> String {
            format!("attach {what} {}: {err}", spec.target.name)
        }
    }

    fn spec(pidx: Pidx, cond: u32, name: &'static str, ret: bool, file: u8) -> LinkSpec<Fn> {
        LinkSpec {
            pidx,
            cond: Some(cond),
            target: Fn { name, ret, file },
            entry_save: ret,
        }
    }

    fn programs() -> (LinkPrograms, [RawFd; 4]) {
        let p = LinkPrograms {
            entry: dev_null(),
            ret: dev_null(),
            entry_multi: Some(dev_null()),
            ret_multi: Some(dev_null()),
        };
        let fds = [
            p.entry.as_raw_fd(),
            p.ret.as_raw_fd(),
            p.entry_multi.as_ref().unwrap().as_raw_fd(),
            p.ret_multi.as_ref().unwrap().as_raw_fd(),
        ];
        (p, fds)
    }

    fn arm_all(g: &mut LinkGroup<Fake>) -> ApplyReport {
        let actions = g
            .probes()
            .iter()
            .map(|e| Action {
                pidx: e.pidx,
                op: Op::Arm,
                decision: None,
            })
            .collect();
        g.apply(&Plan {
            phase: Phase::Start,
            actions,
        })
    }

    #[test]
    fn entries_come_from_the_specs_and_the_type() {
        let (progs, _) = programs();
        let g = LinkGroup::<Fake>::new(
            vec![spec(1, 0, "b", true, 0), spec(0, 0, "a", false, 0)],
            progs,
        )
        .unwrap();
        assert_eq!(g.name(), "fakes");
        assert!(!g.otf_safe_context().safe);
        let armed = ArmedSet::new();
        let start = g.plan_start(&PlanInput {
            conditions: &[false],
            otf: true,
            armed: &armed,
        });
        let lines: Vec<String> = start.decisions().map(|d| d.to_string()).collect();
        assert_eq!(
            lines,
            [
                "otf: not starting (kprobe) pidx 0",
                "otf: not starting (kretprobe) pidx 1"
            ]
        );
        let e: Vec<(Pidx, Flavor, &str)> = g
            .probes()
            .iter()
            .map(|e| (e.pidx, e.flavor, e.description.as_str()))
            .collect();
        assert_eq!(
            e,
            [
                (0, Flavor::Kprobe, "fake.function(\"a\")"),
                (1, Flavor::Kretprobe, "fake.function(\"b\").return")
            ]
        );
        let (progs, _) = programs();
        let dup = LinkGroup::<Fake>::new(
            vec![spec(3, 0, "a", false, 0), spec(3, 1, "b", false, 0)],
            progs,
        );
        assert_eq!(dup.unwrap_err(), DuplicatePidx(3));
    }

    #[test]
    fn batches_by_return_condition_and_key_with_the_right_programs_and_cookies() {
        let (progs, [_, _, entry_multi, ret_multi]) = programs();
        let mut g = LinkGroup::<Fake>::new(
            vec![
                spec(0, 0, "a", false, 0),
                spec(1, 0, "b", false, 0),
                spec(2, 0, "c", true, 0),
                spec(3, 0, "d", true, 0),
                spec(4, 0, "e", false, 1),
                spec(5, 1, "f", false, 0),
            ],
            progs,
        )
        .unwrap();
        let report = arm_all(&mut g);
        assert_eq!(report.failures().count(), 0, "{report:?}");
        let mut calls = g.attacher().calls.lock().unwrap().clone();
        calls.sort();
        let e = COOKIE_ENTRY;
        let mut want = vec![
            // Entry probes of file 0, condition 0: one multi link.
            (entry_multi, 0, vec![0, 1], false),
            // Return probes of condition 0, and their @entry parts on the entry program.
            (ret_multi, 0, vec![2, 3], true),
            (entry_multi, 0, vec![2 | e, 3 | e], false),
            // Alone in their batch (another file, another condition).
            (entry_multi, 1, vec![4], false),
            (entry_multi, 0, vec![5], false),
        ];
        want.sort();
        assert_eq!(calls, want);
        assert!((0..6).all(|p| g.is_attached(p)));
        // Below min_multi, a lone member gets the single-link program.
        let (progs, [entry, ..]) = programs();
        let mut g = LinkGroup::<Fake>::new(vec![spec(0, 0, "a", false, 0)], progs).unwrap();
        g.set_policy(TablePolicy {
            min_multi: 2,
            ..TablePolicy::default()
        });
        arm_all(&mut g);
        let calls = g.attacher().calls.lock().unwrap().clone();
        assert_eq!(calls, [(entry, 0, vec![0], false)]);
        assert_eq!(g.last_apply().single_links, 1);
    }

    #[test]
    fn attach_errors_name_the_flavor_of_the_part() {
        let (progs, _) = programs();
        let mut g = LinkGroup::<Fake>::new(
            vec![
                spec(0, 0, "bad", true, 0),
                spec(1, 1, "bad", false, 0),
                spec(2, 2, "bad-entry", true, 0),
            ],
            progs,
        )
        .unwrap();
        let report = arm_all(&mut g);
        let err = |p: Pidx| report.outcome(p).unwrap().error.clone().unwrap();
        // The return part fails first (its batch comes first), then the entry one.
        assert!(err(0).starts_with("attach kretprobe bad: "), "{}", err(0));
        assert!(err(1).starts_with("attach kprobe bad: "), "{}", err(1));
        assert!(
            err(2).starts_with("attach kprobe (entry of a .return probe) bad-entry: "),
            "{}",
            err(2)
        );
        // pidx 2's return part was attached, then rolled back with its failed entry part.
        assert!((0..3).all(|p| !g.is_attached(p)));
    }
}
