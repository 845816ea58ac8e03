//! The descriptors of the event loop: timerfd, signalfd, epoll.

use std::io::{self};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::Failure;

pub(super) fn os_err(what: &str) -> Failure {
    Failure::Session {
        what: what.to_string(),
        source: io::Error::last_os_error(),
    }
}

pub(super) fn new_fd(r: libc::c_int, what: &str) -> Result<OwnedFd, Failure> {
    if r < 0 {
        return Err(os_err(what));
    }
    // SAFETY: the kernel just returned this new fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

pub(super) fn timerfd(first: Duration, every: Option<Duration>) -> Result<OwnedFd, Failure> {
    // SAFETY: plain system call with constant flags.
    let fd = new_fd(
        unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
            )
        },
        "timerfd_create",
    )?;
    let ts = |d: Duration| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    let first = first.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: ts(every.unwrap_or(Duration::ZERO)),
        it_value: ts(first),
    };
    // SAFETY: `spec` is a valid itimerspec; the old value is not requested.
    if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } != 0 {
        return Err(os_err("timerfd_settime"));
    }
    Ok(fd)
}

pub(super) fn drain_fd(fd: RawFd) {
    let mut buf = [0u8; 256];
    // SAFETY: reading into a local buffer of the given size from a non-blocking fd.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

pub(super) const TOK_RINGBUF: u64 = 1;
pub(super) const TOK_TICK: u64 = 2;
pub(super) const TOK_SIGNAL: u64 = 3;
pub(super) const TOK_DEADLINE: u64 = 4;

pub(super) fn epoll_add(ep: &OwnedFd, fd: RawFd, token: u64) -> Result<(), Failure> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: token,
    };
    // SAFETY: `ev` is a valid epoll_event; both fds are open.
    if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(os_err("epoll_ctl"));
    }
    Ok(())
}

/// Blocks SIGINT, SIGTERM and SIGCHLD in this thread (and the threads it starts later) and
/// returns a signalfd for them.
pub(super) fn signal_fd() -> Result<OwnedFd, Failure> {
    // SAFETY: sigset operations on a local, initialised set; sigprocmask/signalfd with valid
    // arguments.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(os_err("pthread_sigmask"));
        }
        new_fd(
            libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK),
            "signalfd",
        )
    }
}

/// Reads pending signals; returns (SIGINT/SIGTERM seen, SIGCHLD seen).
pub(super) fn read_signals(fd: RawFd) -> (bool, bool) {
    let (mut term, mut chld) = (false, false);
    loop {
        // SAFETY: signalfd_siginfo is plain data, valid when zeroed.
        let mut si: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        // SAFETY: reads at most the size of `si` into it.
        let n = unsafe {
            libc::read(
                fd,
                std::ptr::addr_of_mut!(si).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            )
        };
        if n <= 0 {
            break;
        }
        match si.ssi_signo as i32 {
            libc::SIGCHLD => chld = true,
            _ => term = true,
        }
    }
    (term, chld)
}
