//! Kernel attachment shared by otf's probe-type crates.
//!
//! - [`group`]: [`group::LinkGroup`], the one `ProbeGroup` of the link-based probe types
//!   (`otf-uprobes-inode`, `otf-kprobes`), each of which brings only its
//!   [`group::LinkAttacher`].
//! - [`close`]: closing many links at once ([`close::close_all`]) or in the background
//!   ([`close::Closer`]).
//! - [`grace`]: [`grace::GraceKick`], which ends the RCU grace period a tracepoint detach left
//!   pending, in the background, so that the next tracepoint attach does not wait for it.
//! - [`perf`]: the one `perf_event_open(2)` (cpu-clock, tracepoint and probe PMU events, on
//!   the kernel's `struct perf_event_attr`) and the perf-event ioctls.
//! - [`sched`]: the calling thread's fair policy and slice ([`sched::set_fair`]).
//! - [`sys`]: BPF links for perf events and raw tracepoints, and uprobe / uprobe_multi / kprobe / kprobe_multi links on file descriptors
//!   ([`sys::Link`] detaches on drop), and, with the `test-program` feature, a tiny counting BPF
//!   program for tests and examples.
//! - `testprog` (feature `test-program`): a no-op program of any type and its run count,
//!   for examples and tests.
//! - [`table`]: the link table and its apply algorithm (batching into multi links, bisecting
//!   refused batches, closing concurrently), used by `otf-uprobes-inode` and `otf-kprobes`.

pub mod close;
pub mod grace;
pub mod group;
pub mod perf;
pub mod sched;
pub mod sys;
pub mod table;
#[cfg(feature = "test-program")]
pub mod testprog;
pub mod tracefs;
