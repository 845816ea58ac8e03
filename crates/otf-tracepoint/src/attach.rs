//! Attaching BPF programs to tracepoints with a cookie, and releasing the links concurrently.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::resolve::{tracepoint_id, TraceError, Tracepoint};

/// How a tracepoint probe is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// A perf tracepoint event with a `BPF_PROG_TYPE_TRACEPOINT` program linked to it
    /// (attach ~0.3 ms, detach blocks ~60 ms for a grace period). Works for every tracepoint,
    /// including the synthetic `syscalls:*` ones.
    Perf,
    /// A raw tracepoint link with a `BPF_PROG_TYPE_RAW_TRACEPOINT` program (attach ~0.1 ms,
    /// detach ~0.1 ms). Not available for `syscalls:*`, which are not real tracepoints.
    Raw,
    /// One raw tracepoint link on `raw_syscalls:sys_enter` or `sys_exit` for a whole unit of
    /// `syscalls:*` probes, its program dispatching by syscall number
    /// ([`crate::SyscallDispatch`]; cookie = the unit).
    Dispatch,
}

/// The BPF programs a tracepoint probe may be attached with.
#[derive(Clone, Copy, Debug)]
pub struct TracepointProgs<'a> {
    /// A `BPF_PROG_TYPE_TRACEPOINT` program (always needed).
    pub perf: BorrowedFd<'a>,
    /// A `BPF_PROG_TYPE_RAW_TRACEPOINT` program, if raw tracepoints with cookies are to be used.
    pub raw: Option<BorrowedFd<'a>>,
}

/// The attach mode used for `tp`: raw when a raw program is available and `tp` is a real
/// tracepoint (not `syscalls:*`), else perf.
pub fn mode_for(tp: &Tracepoint, raw_available: bool) -> AttachMode {
    if raw_available && tp.subsystem != "syscalls" {
        AttachMode::Raw
    } else {
        AttachMode::Perf
    }
}

/// An attached tracepoint probe. Dropping it detaches the program (the probe is *disarmed*);
/// for a perf tracepoint the drop blocks for a grace period (~60 ms): use `otf_attach::close::close_all`
/// to drop many at once.
pub struct TracepointLink {
    link: otf_attach::sys::Link,
    mode: AttachMode,
}

impl fmt::Debug for TracepointLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracepointLink")
            .field("link", &self.link.fd().as_raw_fd())
            .field("mode", &self.mode)
            .finish()
    }
}

/// Why attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The tracepoint's id could not be read.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// A system call failed.
    #[error("{0} failed: {1}")]
    Sys(&'static str, #[source] io::Error),
}

impl TracepointLink {
    /// Attaches `prog` (a `BPF_PROG_TYPE_TRACEPOINT` program) to `tp` through a perf
    /// tracepoint event and a BPF link carrying `cookie`.
    pub fn attach_perf(
        prog: BorrowedFd<'_>,
        tp: &Tracepoint,
        cookie: u64,
    ) -> Result<TracepointLink, AttachError> {
        let id = tracepoint_id(tp).map_err(AttachError::Trace)?;
        // pid -1 / cpu 0 is how BPF programs attach to a tracepoint on all CPUs.
        let perf = otf_attach::perf::open(&otf_attach::perf::PerfAttr::tracepoint(id), 0)
            .map_err(|e| AttachError::Sys("perf_event_open(tracepoint)", e))?;
        let link = otf_attach::sys::attach_perf_event(prog, perf, cookie)
            .map_err(|e| AttachError::Sys("bpf(BPF_LINK_CREATE)", e))?;
        Ok(TracepointLink {
            link,
            mode: AttachMode::Perf,
        })
    }

    /// Attaches `prog` (a `BPF_PROG_TYPE_RAW_TRACEPOINT` program) to the raw tracepoint
    /// `tp.name` with `cookie` (kernel 6.10 or later).
    pub fn attach_raw(
        prog: BorrowedFd<'_>,
        tp: &Tracepoint,
        cookie: u64,
    ) -> Result<TracepointLink, AttachError> {
        let link = otf_attach::sys::attach_raw_tracepoint(prog, &tp.name, cookie)
            .map_err(|e| AttachError::Sys("bpf(BPF_RAW_TRACEPOINT_OPEN)", e))?;
        Ok(TracepointLink {
            link,
            mode: AttachMode::Raw,
        })
    }

    /// Attaches `prog` (a syscall-dispatch program) to the raw tracepoint of `dir` with the
    /// dispatch unit `unit` as cookie.
    pub fn attach_dispatch(
        prog: BorrowedFd<'_>,
        dir: crate::SyscallDir,
        unit: u32,
    ) -> Result<TracepointLink, AttachError> {
        let link =
            otf_attach::sys::attach_raw_tracepoint(prog, dir.raw_tracepoint(), u64::from(unit))
                .map_err(|e| AttachError::Sys("bpf(BPF_RAW_TRACEPOINT_OPEN)", e))?;
        Ok(TracepointLink {
            link,
            mode: AttachMode::Dispatch,
        })
    }

    /// Attaches with the mode [`mode_for`] chooses, falling back to perf if the raw attach
    /// fails.
    pub fn attach(
        progs: TracepointProgs<'_>,
        tp: &Tracepoint,
        cookie: u64,
    ) -> Result<TracepointLink, AttachError> {
        if let (AttachMode::Raw, Some(raw)) = (mode_for(tp, progs.raw.is_some()), progs.raw) {
            if let Ok(l) = TracepointLink::attach_raw(raw, tp, cookie) {
                return Ok(l);
            }
        }
        TracepointLink::attach_perf(progs.perf, tp, cookie)
    }

    /// The BPF link fd and, for a perf tracepoint, the perf event fd, to close separately.
    pub fn into_fds(self) -> (OwnedFd, Option<OwnedFd>) {
        self.link.into_fds()
    }

    /// How this link was made.
    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// The BPF link fd.
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.link.fd()
    }
}
