//! BPF timers (`bpf_timer`, kernel 5.15): the mechanism of `timer.ns/us/ms/s/hz`.
//!
//! A perf cpu-clock event runs its program from the perf overflow path, which skips the
//! program, without counting it, while another BPF program runs on that CPU
//! (`bpf_prog_active`): under a hot probe most firings were lost (16 of 50 in 5 s,
//! docs/kernel-facts.md). A BPF timer's callback is called from the hrtimer soft interrupt,
//! outside that path, and fired 49 of 50 times under the same load.
//!
//! The kernel lets only some program types use `bpf_timer` (not kprobe, tracepoint or
//! perf-event programs), so the timers are driven by a `BPF_PROG_TYPE_SYSCALL` control
//! program that user space runs with `BPF_PROG_TEST_RUN`, and a map of timers keyed by pidx.
//! The contract (otf's code generator emits such a program):
//!
//! - the control program's context is [`CTL_SIZE`] bytes: `u32 op` ([`OP_START`] or
//!   [`OP_CANCEL`]), `u32 pidx`, `u64 period_ns`; it returns 0 or a negative errno;
//! - the map is an array keyed by `u32` pidx whose value holds the `struct bpf_timer` and,
//!   at [`FIRED_OFF`] and [`LOST_OFF`], the `u64` counts of expiries that ran and of due
//!   times passed over.
//!
//! Cancelling stops the timer in the kernel: a disarmed timer does not fire at all. When
//! the last user reference to the map goes (otf exits or is killed), the kernel cancels every
//! timer in it.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::sys;

/// The control program's `op`: start the timer of `pidx` with its first expiry one period
/// from now.
pub const OP_START: u32 = 0;
/// The control program's `op`: cancel the timer of `pidx`.
pub const OP_CANCEL: u32 = 1;
/// The size of the control program's context.
pub const CTL_SIZE: usize = 16;
/// Offset of the expiries that ran, in a timers map value.
pub const FIRED_OFF: usize = 32;
/// Offset of the due times passed over, in a timers map value.
pub const LOST_OFF: usize = 40;

/// The control program and the timers map of a set of BPF timers (both fds duplicated).
#[derive(Debug)]
pub struct BpfTimers {
    control: OwnedFd,
    map: OwnedFd,
    value_size: usize,
}

impl BpfTimers {
    /// The timers of the control program `control` over the map `map`, whose values are
    /// `value_size` bytes.
    pub fn new(
        control: BorrowedFd<'_>,
        map: BorrowedFd<'_>,
        value_size: usize,
    ) -> io::Result<BpfTimers> {
        Ok(BpfTimers {
            control: control.try_clone_to_owned()?,
            map: map.try_clone_to_owned()?,
            value_size: value_size.max(LOST_OFF + 8),
        })
    }

    fn run(&self, op: u32, pidx: u32, period_ns: u64) -> io::Result<()> {
        let mut ctx = [0u8; CTL_SIZE];
        ctx[0..4].copy_from_slice(&op.to_ne_bytes());
        ctx[4..8].copy_from_slice(&pidx.to_ne_bytes());
        ctx[8..16].copy_from_slice(&period_ns.to_ne_bytes());
        match sys::prog_test_run(std::os::fd::AsFd::as_fd(&self.control), &ctx)? {
            r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
            _ => Ok(()),
        }
    }

    /// Starts (or restarts) the timer of `pidx`: it fires every `period_ns`, the first time
    /// one period from now.
    pub fn start(&self, pidx: u32, period_ns: u64) -> io::Result<()> {
        self.run(OP_START, pidx, period_ns)
    }

    /// Cancels the timer of `pidx` (waiting for a callback running on another CPU to end).
    pub fn cancel(&self, pidx: u32) -> io::Result<()> {
        self.run(OP_CANCEL, pidx, 0)
    }

    /// `(fired, lost)`: the expiries of `pidx`'s timer that ran its program, and the due
    /// times that passed without one.
    pub fn counts(&self, pidx: u32) -> io::Result<(u64, u64)> {
        let mut value = vec![0u8; self.value_size];
        sys::map_lookup(
            std::os::fd::AsFd::as_fd(&self.map),
            &pidx.to_ne_bytes(),
            &mut value,
        )?;
        let word = |at: usize| u64::from_ne_bytes(value[at..at + 8].try_into().expect("8 bytes"));
        Ok((word(FIRED_OFF), word(LOST_OFF)))
    }
}
