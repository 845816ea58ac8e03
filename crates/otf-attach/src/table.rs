//! The link table shared by the uprobe and kprobe groups: kernel links keyed by id (aya-style),
//! each covering one or more `pidx`, with the apply algorithm that batches attachments into
//! multi links and releases links concurrently.
//!
//! # Policy
//!
//! - **Arming** groups the `(pidx, part)` to attach in one apply by [`Attacher::key`] (file +
//!   condition + entry/return for uprobes) and attaches each group of at least
//!   [`TablePolicy::min_multi`] members as **one multi link** (uprobe_multi / kprobe_multi, one
//!   cookie per member = its pidx); smaller groups get one link per member. A multi attach that
//!   fails is **bisected** with multi links until the bad members are alone, so each is
//!   reported alone and the others still arm, in O(log n) grace periods per bad member.
//! - Keys include the probe's condition: members of one multi link normally flip together, so
//!   a multi link is normally released whole (one grace period for all of them).
//! - **Disarming** a subset of a multi link (rare: retries, `--no-otf` mixes) closes the link and
//!   re-creates a link for the remaining members *after* the old one is closed: a remaining
//!   member may miss hits for a few ms, but no body ever runs twice for one call.
//! - **Disarming** hands the links to close to a background [`Closer`]: `apply` returns once
//!   their closing thread runs (the kernel stops running the program within ~0.1 ms of the close
//!   starting), not when the closes return (a grace period or two, 25–180 ms), so the next event
//!   is read at once. Several links close on worker threads at once, so N detaches cost about one
//!   grace period instead of N.
//! - **Releasing** (a plan with [`Op::Release`], i.e. shutdown) and [`LinkTable::clear`] (also
//!   run on drop) wait until every link, the background ones included, is closed: a stopped otf
//!   leaves nothing attached.
//! - **One probe or many, one multi link**: [`TablePolicy::min_multi`] is 1 because a
//!   uprobe_multi link of one function arms as fast as a perf uprobe link (both wait for one RCU
//!   grace period in the kernel, ~6–14 ms here) and takes its breakpoint out far sooner on
//!   disarm (~6.5 ms against ~25–70 ms); measured with `examples/uprobe_flip_timing.rs`,
//!   docs/performance.md "Flip latency".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::io;
use std::time::{Duration, Instant};

use otf_core::{ApplyReport, Op, Pidx, Plan};

use crate::close::Closer;
use crate::sys::Link;

/// Attach cookie bit marking the entry attachment of a return probe (`@entry` saving); the
/// same value as `otf_codegen::layout::COOKIE_ENTRY` (re-exported as `otf_bpf::layout`).
pub const COOKIE_ENTRY: u64 = 1 << 32;

/// The attach cookie of one part of probe `pidx`: `pidx`, with [`COOKIE_ENTRY`] for the entry
/// part of a return probe.
pub fn cookie(pidx: Pidx, part: Part) -> u64 {
    match part {
        Part::Main => u64::from(pidx),
        Part::EntrySave => u64::from(pidx) | COOKIE_ENTRY,
    }
}

/// Which kernel attachment of a probe: most probes have one (`Main`); a `.return` probe whose
/// body reads `@entry(...)` also has an `EntrySave` attachment at the function entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The probe itself (entry probe, or return probe).
    Main,
    /// The entry attachment of a return probe that saves `@entry` values.
    EntrySave,
}

/// How a probe type attaches its probes. Implemented by the uprobe and kprobe groups.
pub trait Attacher: Sync {
    /// Probes with equal keys (and the same [`Part`]) may share one multi link.
    type Key: Ord + Clone + Debug + Send;

    /// The batching key of `pidx`, or `None` if the pidx is not one of this group's probes.
    fn key(&self, pidx: Pidx) -> Option<Self::Key>;

    /// The attachments `pidx` needs when armed (`[Main]`, or `[Main, EntrySave]`).
    fn parts(&self, pidx: Pidx) -> &'static [Part];

    /// Attaches one part of one probe as its own link.
    fn attach_one(&self, pidx: Pidx, part: Part) -> io::Result<Link>;

    /// Attaches `pidxs` (all with `key`) as one multi link, or `None` if multi links are not
    /// available for this key (no multi program).
    fn attach_many(&self, key: &Self::Key, part: Part, pidxs: &[Pidx]) -> Option<io::Result<Link>>;

    /// Words an attach error for the user (e.g. add "this kernel lacks CONFIG_KPROBES").
    fn explain(&self, pidx: Pidx, part: Part, err: &io::Error) -> String;
}

/// Tunables of [`LinkTable`], chosen by measurement (docs/uprobes.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePolicy {
    /// Smallest batch attached as one multi link (when a multi program is available). 1 by
    /// default: on 6.18 a one-function uprobe_multi link arms as fast as a single perf uprobe
    /// link and its breakpoint goes sooner on disarm (see the module's policy).
    pub min_multi: usize,
    /// Most links closed at the same time (one worker thread each).
    pub max_close_threads: usize,
}

impl Default for LinkTable {
    fn default() -> LinkTable {
        LinkTable::new(TablePolicy::default())
    }
}

impl Default for TablePolicy {
    fn default() -> TablePolicy {
        TablePolicy {
            min_multi: 1,
            max_close_threads: 256,
        }
    }
}

/// What the last [`LinkTable::apply`] did in the kernel, for `--stats`, tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Multi links created.
    pub multi_links: usize,
    /// Single links created.
    pub single_links: usize,
    /// Failed multi attaches split in two to find their bad members.
    pub bisections: usize,
    /// Links closed.
    pub closed: usize,
    /// Members re-attached because a multi link was split.
    pub resplit: usize,
    /// Wall time of the whole apply.
    pub elapsed: Duration,
    /// Wall time spent waiting for closes after attaching was done (only when releasing: a
    /// disarm's closes run in the background).
    pub close_wait: Duration,
    /// Links handed to the background closer (closing after `apply` returned).
    pub closing_in_background: usize,
}

struct Entry {
    link: Link,
    part: Part,
    members: Vec<Pidx>,
}

/// Kernel links keyed by id; each pidx knows the ids of its links.
pub struct LinkTable {
    policy: TablePolicy,
    next_id: u64,
    links: BTreeMap<u64, Entry>,
    by_pidx: BTreeMap<Pidx, Vec<u64>>,
    stats: ApplyStats,
    warnings: Vec<String>,
    closer: Closer<Link>,
}

impl Debug for LinkTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTable")
            .field("policy", &self.policy)
            .field("links", &self.links.len())
            .field("armed", &self.by_pidx.len())
            .finish()
    }
}

pub use crate::close::close_all;

impl LinkTable {
    /// An empty table with `policy`.
    pub fn new(policy: TablePolicy) -> LinkTable {
        LinkTable {
            policy,
            next_id: 0,
            links: BTreeMap::new(),
            by_pidx: BTreeMap::new(),
            stats: ApplyStats::default(),
            warnings: Vec::new(),
            closer: Closer::new(policy.max_close_threads),
        }
    }

    /// The policy.
    pub fn policy(&self) -> TablePolicy {
        self.policy
    }

    /// Changes the policy (takes effect at the next apply).
    pub fn set_policy(&mut self, policy: TablePolicy) {
        self.policy = policy;
        self.closer.set_max_threads(policy.max_close_threads);
    }

    /// Whether `pidx` is attached now.
    pub fn is_attached(&self, pidx: Pidx) -> bool {
        self.by_pidx.contains_key(&pidx)
    }

    /// Number of kernel links held.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Member counts of the links held (a multi link has more than one member).
    pub fn link_sizes(&self) -> Vec<usize> {
        self.links.values().map(|e| e.members.len()).collect()
    }

    /// What the last apply did.
    pub fn stats(&self) -> &ApplyStats {
        &self.stats
    }

    /// Problems found outside any action of a plan (e.g. a member of a split multi link that
    /// could not be re-attached). Drained by the caller.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn insert(&mut self, link: Link, part: Part, members: Vec<Pidx>) {
        let id = self.next_id;
        self.next_id += 1;
        for m in &members {
            self.by_pidx.entry(*m).or_default().push(id);
        }
        self.links.insert(
            id,
            Entry {
                link,
                part,
                members,
            },
        );
    }

    /// Takes the links of `remove` out of the table. Returns the links to close, and the
    /// `(pidx, part)` of other members of those links that must be attached again.
    fn take(&mut self, remove: &BTreeSet<Pidx>) -> (Vec<Link>, Vec<(Pidx, Part)>) {
        let ids: BTreeSet<u64> = remove
            .iter()
            .filter_map(|p| self.by_pidx.remove(p))
            .flatten()
            .collect();
        let mut closing = Vec::new();
        let mut again = Vec::new();
        for id in ids {
            let Some(e) = self.links.remove(&id) else {
                continue;
            };
            for m in e.members.iter().filter(|m| !remove.contains(m)) {
                if let Some(v) = self.by_pidx.get_mut(m) {
                    v.retain(|x| *x != id);
                    if v.is_empty() {
                        self.by_pidx.remove(m);
                    }
                }
                again.push((*m, e.part));
            }
            closing.push(e.link);
        }
        (closing, again)
    }

    /// Attaches `items`, batching by key; returns per-item errors.
    fn attach<A: Attacher>(
        &mut self,
        a: &A,
        items: &[(Pidx, Part)],
    ) -> BTreeMap<(Pidx, Part), String> {
        let mut errors = BTreeMap::new();
        let mut groups: BTreeMap<(A::Key, Part), Vec<Pidx>> = BTreeMap::new();
        for &(p, part) in items {
            match a.key(p) {
                Some(k) => groups.entry((k, part)).or_default().push(p),
                None => {
                    errors.insert((p, part), format!("pidx {p} is not a probe of this group"));
                }
            }
        }
        for ((key, part), mut pidxs) in groups {
            pidxs.sort_unstable();
            pidxs.dedup();
            self.attach_batch(a, &key, part, &pidxs, &mut errors);
        }
        errors
    }

    /// Attaches `pidxs` (one key and part) as one multi link if it has at least
    /// [`TablePolicy::min_multi`] members; if that fails, **bisects**: each half is attached
    /// the same way, so that the bad members are found in about 2·log2(n) failed multi
    /// attaches per bad member (each costs one grace period in the kernel, as its rollback
    /// unregisters the uprobes already registered), not one single link per member (each
    /// costing its own grace period: 2,200 libc functions took 240 s). Below `min_multi`, or
    /// without a multi program, one link each, so that a bad member is reported alone.
    fn attach_batch<A: Attacher>(
        &mut self,
        a: &A,
        key: &A::Key,
        part: Part,
        pidxs: &[Pidx],
        errors: &mut BTreeMap<(Pidx, Part), String>,
    ) {
        if pidxs.len() >= self.policy.min_multi.max(1) {
            match a.attach_many(key, part, pidxs) {
                Some(Ok(link)) => {
                    self.stats.multi_links += 1;
                    self.insert(link, part, pidxs.to_vec());
                    return;
                }
                // Alone and still refused: try it as a single link below (what is refused
                // there is refused for good; a kernel whose multi links fail for another
                // reason still arms).
                Some(Err(_)) if pidxs.len() == 1 => {}
                Some(Err(_)) => {
                    self.stats.bisections += 1;
                    let (l, r) = pidxs.split_at(pidxs.len() / 2);
                    self.attach_batch(a, key, part, l, errors);
                    self.attach_batch(a, key, part, r, errors);
                    return;
                }
                None => {}
            }
        }
        for &p in pidxs {
            match a.attach_one(p, part) {
                Ok(link) => {
                    self.stats.single_links += 1;
                    self.insert(link, part, vec![p]);
                }
                Err(e) => {
                    errors.insert((p, part), a.explain(p, part, &e));
                }
            }
        }
    }

    /// Carries out `plan`: see the module's policy. One outcome per action.
    pub fn apply<A: Attacher>(&mut self, a: &A, plan: &Plan) -> ApplyReport {
        let t0 = Instant::now();
        self.stats = ApplyStats::default();
        let mut report = ApplyReport::new();
        let mut failed: BTreeMap<Pidx, String> = BTreeMap::new();

        let remove: BTreeSet<Pidx> = plan
            .actions
            .iter()
            .filter(|x| matches!(x.op, Op::Disarm | Op::Release))
            .map(|x| x.pidx)
            .collect();
        let mut to_arm: Vec<(Pidx, Part)> = Vec::new();
        for x in plan.actions.iter().filter(|x| x.op == Op::Arm) {
            if a.key(x.pidx).is_none() {
                failed.insert(
                    x.pidx,
                    format!("pidx {} is not a probe of this group", x.pidx),
                );
            } else if !self.is_attached(x.pidx) {
                to_arm.extend(a.parts(x.pidx).iter().map(|part| (x.pidx, *part)));
            }
        }

        let releasing = plan.actions.iter().any(|x| x.op == Op::Release);
        let (closing, again) = self.take(&remove);
        self.stats.closed = closing.len();
        self.stats.resplit = again.len();
        let max_threads = self.policy.max_close_threads;
        if again.is_empty() {
            // Closed in the background while we attach, and after we return.
            self.stats.closing_in_background = closing.len();
            self.closer.release(closing);
        } else {
            // Links whose surviving members must be re-attached are closed first: no body runs
            // twice for one call.
            close_all(closing, max_threads);
        }
        let mut errors = self.attach(a, &to_arm);
        let again_errors = self.attach(a, &again);
        for ((p, part), e) in again_errors {
            self.warnings.push(format!(
                "pidx {p} ({part:?}) lost its attachment while a shared link was split: {e}"
            ));
        }
        // A probe is armed only if all its parts are: roll back partial ones.
        let partial: BTreeSet<Pidx> = errors.keys().map(|(p, _)| *p).collect();
        let partial: BTreeSet<Pidx> = partial
            .into_iter()
            .filter(|p| self.is_attached(*p))
            .collect();
        if !partial.is_empty() {
            let (rollback, again2) = self.take(&partial);
            close_all(rollback, max_threads);
            let e2 = self.attach(a, &again2);
            for ((p, part), e) in e2 {
                self.warnings
                    .push(format!("pidx {p} ({part:?}) lost its attachment: {e}"));
            }
        }
        for ((p, _), e) in std::mem::take(&mut errors) {
            failed.entry(p).or_insert(e);
        }
        let mut close_wait = Duration::ZERO;
        if releasing {
            let w = Instant::now();
            self.closer.flush();
            close_wait = w.elapsed();
        }

        for x in &plan.actions {
            match (x.op, failed.get(&x.pidx)) {
                (Op::Arm, Some(e)) => report.failed(x, e),
                (Op::StartDisarmed, _) if a.key(x.pidx).is_none() => {
                    report.failed(x, format!("pidx {} is not a probe of this group", x.pidx))
                }
                _ => report.ok(x),
            }
        }
        self.stats.close_wait = close_wait;
        self.stats.elapsed = t0.elapsed();
        report
    }

    /// Closes every link (concurrently), waits for the background closes too, and empties the
    /// table.
    pub fn clear(&mut self) {
        let links: Vec<Link> = std::mem::take(&mut self.links)
            .into_values()
            .map(|e| e.link)
            .collect();
        self.by_pidx.clear();
        self.closer.release(links);
        self.closer.flush();
    }

    /// Links handed to the background closer whose close has not returned yet.
    pub fn closing(&mut self) -> usize {
        self.closer.pending()
    }

    /// Waits until every link handed to the background closer is closed (its probe gone from
    /// the kernel).
    pub fn wait_closed(&mut self) {
        self.closer.flush();
    }
}

impl Drop for LinkTable {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    //! The apply algorithm with a fake attacher whose "links" are descriptors of /dev/null: the
    //! batching, fallback, rollback and split logic without a kernel or root.

    use super::*;
    use otf_core::{Action, Phase};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        /// pidx -> condition (the key); absent = not a probe of the group.
        cond: BTreeMap<Pidx, u32>,
        /// pidx with an EntrySave part.
        entry: BTreeSet<Pidx>,
        /// (pidx, part) whose attachment fails, alone or in a multi link.
        bad: BTreeSet<(Pidx, Part)>,
        multi: bool,
        /// Every attach call: (pidxs, part).
        calls: Mutex<Vec<(Vec<Pidx>, Part)>>,
        /// When set, the links made block this long when closed, and count their closes.
        slow: Mutex<Option<(Duration, std::sync::Arc<std::sync::atomic::AtomicUsize>)>>,
    }

    impl Fake {
        /// A "link": a descriptor of /dev/null, whose close blocks if `slow` is set.
        fn link(&self) -> Link {
            let fd = std::fs::File::open("/dev/null").unwrap().into();
            match &*self.slow.lock().unwrap() {
                Some((d, n)) => Link::slow(fd, crate::sys::SlowClose(*d, n.clone())),
                None => Link::from_fd(fd),
            }
        }
    }

    impl Attacher for Fake {
        type Key = u32;
        fn key(&self, pidx: Pidx) -> Option<u32> {
            self.cond.get(&pidx).copied()
        }
        fn parts(&self, pidx: Pidx) -> &'static [Part] {
            if self.entry.contains(&pidx) {
                &[Part::Main, Part::EntrySave]
            } else {
                &[Part::Main]
            }
        }
        fn attach_one(&self, pidx: Pidx, part: Part) -> io::Result<Link> {
            self.calls.lock().unwrap().push((vec![pidx], part));
            if self.bad.contains(&(pidx, part)) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            Ok(self.link())
        }
        fn attach_many(&self, _key: &u32, part: Part, pidxs: &[Pidx]) -> Option<io::Result<Link>> {
            if !self.multi {
                return None;
            }
            self.calls.lock().unwrap().push((pidxs.to_vec(), part));
            if pidxs.iter().any(|p| self.bad.contains(&(*p, part))) {
                return Some(Err(io::Error::from_raw_os_error(libc::EINVAL)));
            }
            Some(Ok(self.link()))
        }
        fn explain(&self, pidx: Pidx, part: Part, err: &io::Error) -> String {
            format!("pidx {pidx} {part:?}: {err}")
        }
    }

    fn fake(conds: &[(Pidx, u32)]) -> Fake {
        Fake {
            cond: conds.iter().copied().collect(),
            multi: true,
            ..Fake::default()
        }
    }

    fn plan(phase: Phase, ops: &[(Pidx, Op)]) -> Plan {
        Plan {
            phase,
            actions: ops
                .iter()
                .map(|&(pidx, op)| Action {
                    pidx,
                    op,
                    decision: None,
                })
                .collect(),
        }
    }

    fn sorted(mut v: Vec<usize>) -> Vec<usize> {
        v.sort_unstable();
        v
    }

    #[test]
    fn one_multi_link_per_condition() {
        let a = fake(&[(0, 0), (1, 0), (2, 0), (3, 1), (4, 2)]);
        let mut t = LinkTable::default();
        let p = plan(
            Phase::Start,
            &[
                (0, Op::Arm),
                (1, Op::Arm),
                (2, Op::Arm),
                (3, Op::Arm),
                (4, Op::StartDisarmed),
            ],
        );
        let r = t.apply(&a, &p);
        assert_eq!(r.failures().count(), 0);
        assert_eq!(sorted(t.link_sizes()), [1, 3]);
        assert_eq!(t.stats().multi_links, 2);
        assert!(!t.is_attached(4));
        // Disarming condition 0 closes its whole link: no split.
        let r = t.apply(
            &a,
            &plan(
                Phase::Refresh,
                &[(0, Op::Disarm), (1, Op::Disarm), (2, Op::Disarm)],
            ),
        );
        assert_eq!(r.failures().count(), 0);
        assert_eq!((t.stats().closed, t.stats().resplit), (1, 0));
        assert_eq!(t.link_sizes(), [1]);
        // Arm again is idempotent for an attached pidx.
        let calls = a.calls.lock().unwrap().len();
        t.apply(&a, &plan(Phase::Refresh, &[(3, Op::Arm)]));
        assert_eq!(a.calls.lock().unwrap().len(), calls);
    }

    #[test]
    fn without_multi_or_below_min_multi_each_gets_its_own_link() {
        let mut a = fake(&[(0, 0), (1, 0), (2, 0)]);
        a.multi = false;
        let mut t = LinkTable::default();
        t.apply(
            &a,
            &plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm), (2, Op::Arm)]),
        );
        assert_eq!(t.link_sizes(), [1, 1, 1]);
        let a = fake(&[(0, 0), (1, 0), (2, 0)]);
        let mut t = LinkTable::new(TablePolicy {
            min_multi: 4,
            ..TablePolicy::default()
        });
        t.apply(
            &a,
            &plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm), (2, Op::Arm)]),
        );
        assert_eq!(t.stats().single_links, 3);
    }

    #[test]
    fn failed_multi_attach_falls_back_and_reports_the_bad_member_alone() {
        let mut a = fake(&[(0, 0), (1, 0), (2, 0)]);
        a.bad.insert((1, Part::Main));
        let mut t = LinkTable::default();
        let p = plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm), (2, Op::Arm)]);
        let r = t.apply(&a, &p);
        let failed: Vec<Pidx> = r.failures().map(|o| o.pidx).collect();
        assert_eq!(failed, [1]);
        assert!(r
            .outcome(1)
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("pidx 1 Main"));
        assert!(t.is_attached(0) && !t.is_attached(1) && t.is_attached(2));
        assert_eq!(t.link_sizes(), [1, 1]);
    }

    #[test]
    fn a_bad_member_of_a_large_batch_is_found_by_bisecting_with_multi_links() {
        let n = 2048u32;
        let mut a = fake(&(0..n).map(|p| (p, 0)).collect::<Vec<_>>());
        a.bad.insert((777, Part::Main));
        a.bad.insert((1500, Part::Main));
        let mut t = LinkTable::default();
        let ops: Vec<(Pidx, Op)> = (0..n).map(|p| (p, Op::Arm)).collect();
        let r = t.apply(&a, &plan(Phase::Start, &ops));
        let failed: Vec<Pidx> = r.failures().map(|o| o.pidx).collect();
        assert_eq!(failed, [777, 1500]);
        assert!((0..n).all(|p| t.is_attached(p) == (p != 777 && p != 1500)));
        // No single links made; about 2·log2(n) attach calls per bad member (and one single
        // attempt for each once alone), not n.
        assert_eq!(t.stats().single_links, 0);
        let calls = a.calls.lock().unwrap().len();
        assert!(calls <= 2 * (2 * 11 + 1) + 1, "{calls} attach calls");
        assert_eq!(t.link_sizes().iter().sum::<usize>(), n as usize - 2);
    }

    #[test]
    fn a_probe_missing_one_part_is_rolled_back_without_losing_its_neighbours() {
        let mut a = fake(&[(0, 0), (1, 0), (2, 0)]);
        a.entry = [0, 1, 2].into_iter().collect();
        a.bad.insert((1, Part::EntrySave));
        let mut t = LinkTable::default();
        let r = t.apply(
            &a,
            &plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm), (2, Op::Arm)]),
        );
        let failed: Vec<Pidx> = r.failures().map(|o| o.pidx).collect();
        assert_eq!(failed, [1]);
        assert!(!t.is_attached(1), "pidx 1's Main part was rolled back");
        assert!(t.is_attached(0) && t.is_attached(2));
        // pidx 0 and 2: a Main link re-created for the two of them, and their EntrySave links.
        assert_eq!(t.link_sizes().iter().sum::<usize>(), 4);
        assert!(t.take_warnings().is_empty());
    }

    #[test]
    fn disarming_part_of_a_multi_link_reattaches_the_rest() {
        let a = fake(&[(0, 0), (1, 0), (2, 0), (3, 0)]);
        let mut t = LinkTable::default();
        t.apply(
            &a,
            &plan(
                Phase::Start,
                &[(0, Op::Arm), (1, Op::Arm), (2, Op::Arm), (3, Op::Arm)],
            ),
        );
        assert_eq!(t.link_sizes(), [4]);
        let r = t.apply(
            &a,
            &plan(Phase::Refresh, &[(1, Op::Disarm), (3, Op::Disarm)]),
        );
        assert_eq!(r.failures().count(), 0);
        assert_eq!((t.stats().closed, t.stats().resplit), (1, 2));
        assert_eq!(t.link_sizes(), [2]);
        assert!(t.is_attached(0) && t.is_attached(2) && !t.is_attached(1) && !t.is_attached(3));
        let last = a.calls.lock().unwrap().last().cloned();
        assert_eq!(last, Some((vec![0, 2], Part::Main)));
    }

    #[test]
    fn unknown_pidx_fails_and_release_empties_the_table() {
        let a = fake(&[(0, 0), (1, 1)]);
        let mut t = LinkTable::default();
        let r = t.apply(
            &a,
            &plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm), (9, Op::Arm)]),
        );
        let failed: Vec<Pidx> = r.failures().map(|o| o.pidx).collect();
        assert_eq!(failed, [9]);
        let r = t.apply(
            &a,
            &plan(Phase::Shutdown, &[(0, Op::Release), (1, Op::Release)]),
        );
        assert_eq!(r.failures().count(), 0);
        assert_eq!(t.link_count(), 0);
        assert_eq!(t.stats().closed, 2);
    }

    #[test]
    fn a_slow_close_does_not_delay_a_disarm_but_release_waits_for_it() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let closed = std::sync::Arc::new(AtomicUsize::new(0));
        let close = Duration::from_millis(300);
        let a = fake(&[(0, 0), (1, 1), (2, 2)]);
        *a.slow.lock().unwrap() = Some((close, closed.clone()));
        let mut t = LinkTable::default();
        t.apply(
            &a,
            &plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm), (2, Op::Arm)]),
        );
        *a.slow.lock().unwrap() = None;
        assert_eq!(t.link_count(), 3);

        // A disarm returns while its link is still closing, and the next apply (an arm) does not
        // wait for that close either.
        let r = t.apply(&a, &plan(Phase::Refresh, &[(0, Op::Disarm)]));
        assert_eq!(r.failures().count(), 0);
        assert!(!t.is_attached(0));
        assert_eq!(t.stats().closing_in_background, 1);
        assert!(t.stats().elapsed < close, "{:?}", t.stats().elapsed);
        assert_eq!(t.stats().close_wait, Duration::ZERO);
        t.apply(&a, &plan(Phase::Refresh, &[(0, Op::Arm)]));
        assert!(t.is_attached(0));
        assert!(t.stats().elapsed < close, "{:?}", t.stats().elapsed);
        assert_eq!(
            closed.load(Ordering::SeqCst),
            0,
            "the close ran in the background"
        );
        assert_eq!(t.closing(), 1);

        // Releasing waits for every close, the background one included.
        let r = t.apply(
            &a,
            &plan(
                Phase::Shutdown,
                &[(0, Op::Release), (1, Op::Release), (2, Op::Release)],
            ),
        );
        assert_eq!(r.failures().count(), 0);
        assert_eq!(closed.load(Ordering::SeqCst), 3);
        assert_eq!(t.closing(), 0);
        assert_eq!(t.link_count(), 0);
    }

    #[test]
    fn dropping_the_table_waits_for_background_closes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let closed = std::sync::Arc::new(AtomicUsize::new(0));
        let a = fake(&[(0, 0), (1, 1)]);
        *a.slow.lock().unwrap() = Some((Duration::from_millis(100), closed.clone()));
        let mut t = LinkTable::default();
        t.apply(&a, &plan(Phase::Start, &[(0, Op::Arm), (1, Op::Arm)]));
        *a.slow.lock().unwrap() = None;
        t.apply(&a, &plan(Phase::Refresh, &[(0, Op::Disarm)]));
        drop(t);
        assert_eq!(closed.load(Ordering::SeqCst), 2);
    }
}
