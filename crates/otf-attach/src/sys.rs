//! Raw kernel attachment of BPF programs: uprobe, uprobe_multi, kprobe and kprobe_multi links
//! created with `perf_event_open(2)` and `bpf(BPF_LINK_CREATE)`, owned as file descriptors.
//!
//! Working on file descriptors (aya-style) instead of libbpf objects keeps links `'static` and
//! `Send`: a [`Link`] can be kept in a table keyed by id, and closed on any thread. Closing the
//! descriptor detaches the probe; for uprobes that close blocks for an RCU grace period
//! (~0.1 s here, see docs/kernel-facts.md), which is why callers close many links concurrently.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A descriptor returned by a libbpf-sys low-level call (a negative errno on failure, as
/// libbpf returns them).
fn libbpf_fd(r: std::os::raw::c_int) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::from_raw_os_error(-r));
    }
    // SAFETY: on success these libbpf calls return a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `bpf(BPF_LINK_CREATE)` of `prog` with `attach_type` and `opts` (libbpf-sys's typed
/// `bpf_link_create`, so that the kernel's `union bpf_attr` layout is libbpf's business).
fn link_create(
    prog: BorrowedFd<'_>,
    target_fd: i32,
    attach_type: libbpf_sys::bpf_attach_type,
    opts: &libbpf_sys::bpf_link_create_opts,
) -> io::Result<OwnedFd> {
    // SAFETY: `opts` is a valid, sized options struct whose pointer fields point to buffers the
    // caller keeps alive for the duration of the call.
    libbpf_fd(unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), target_fd, attach_type, opts)
    })
}

/// Zeroed `bpf_link_create_opts` with its size set.
fn link_opts() -> libbpf_sys::bpf_link_create_opts {
    libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    }
}

/// One kernel attachment. Dropping it detaches the probe: the program stops running within
/// ~0.1 ms, but the drop blocks for the kernel's grace periods (drop many on worker threads,
/// or in the background with [`crate::close::Closer`]). Measured on 6.18
/// (`examples/uprobe_flip_timing.rs`, docs/performance.md "Flip latency"): a uprobe_multi
/// link's close waits one RCU grace period (~6 ms) before it takes the breakpoints out, then a
/// tasks-trace grace period (~25–60 ms in all); a perf uprobe link's close waits a tasks-trace
/// grace period (~25–35 ms, `perf_event_detach_bpf_prog`) and the breakpoint only goes when the
/// perf event is released after it (another ~60–180 ms).
#[derive(Debug)]
pub struct Link {
    fd: OwnedFd,
    /// The perf event behind a single kprobe/uprobe link (closed after the link).
    _perf: Option<OwnedFd>,
    /// Tests: makes dropping this link block, as a kernel detach does.
    #[cfg(test)]
    _slow: Option<SlowClose>,
}

/// Tests: blocks for its duration when dropped, then counts the drop.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct SlowClose(
    pub(crate) std::time::Duration,
    pub(crate) std::sync::Arc<std::sync::atomic::AtomicUsize>,
);

#[cfg(test)]
impl Drop for SlowClose {
    fn drop(&mut self) {
        std::thread::sleep(self.0);
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Link {
    fn new(fd: OwnedFd, perf: Option<OwnedFd>) -> Link {
        Link {
            fd,
            _perf: perf,
            #[cfg(test)]
            _slow: None,
        }
    }

    /// A link owning `fd` (any descriptor): for the link table's tests without a kernel.
    #[cfg(test)]
    pub(crate) fn from_fd(fd: OwnedFd) -> Link {
        Link::new(fd, None)
    }

    /// A link owning `fd` whose drop blocks like a kernel detach: for the link table's tests.
    #[cfg(test)]
    pub(crate) fn slow(fd: OwnedFd, slow: SlowClose) -> Link {
        Link {
            _slow: Some(slow),
            ..Link::new(fd, None)
        }
    }

    /// The link's descriptor and, for a link to a perf event, the event's, to close
    /// separately (the link first).
    pub fn into_fds(self) -> (OwnedFd, Option<OwnedFd>) {
        (self.fd, self._perf)
    }

    /// The link's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// Why the perf PMU of a probe kind (`uprobe`, `kprobe`) cannot be used: the error inside the
/// [`io::Error`] that opening a uprobe or kprobe event returns (its kind is the cause's, and
/// its `source()` the cause itself).
#[derive(Debug, thiserror::Error)]
pub enum PmuError {
    /// `DEVICES/KIND/type` cannot be read.
    #[error("{}: {source} (kernel without {kind} support?)", path.display())]
    Unreadable {
        /// The file read.
        path: PathBuf,
        /// The PMU's kind.
        kind: String,
        /// Why it cannot be read.
        #[source]
        source: io::Error,
    },
    /// `DEVICES/KIND/type` does not hold a number.
    #[error("{}: not a number", path.display())]
    NotANumber {
        /// The file read.
        path: PathBuf,
    },
}

/// The perf type of the `kind` PMU and the `config` bit that makes its events return probes.
fn pmu(kind: &str) -> io::Result<(u32, u32)> {
    pmu_in(Path::new("/sys/bus/event_source/devices"), kind)
}

/// [`pmu`], with the PMUs under `devices`.
fn pmu_in(devices: &Path, kind: &str) -> io::Result<(u32, u32)> {
    let base = devices.join(kind);
    let path = base.join("type");
    let ty = fs::read_to_string(&path).map_err(|source| {
        let kind_of = source.kind();
        let path = path.clone();
        let kind = kind.to_string();
        io::Error::new(kind_of, PmuError::Unreadable { path, kind, source })
    })?;
    let ty: u32 = ty
        .trim()
        .parse()
        .map_err(|_| io::Error::other(PmuError::NotANumber { path }))?;
    // format/retprobe reads `config:N`.
    let bit = fs::read_to_string(base.join("format/retprobe"))
        .ok()
        .and_then(|s| {
            s.trim()
                .strip_prefix("config:")
                .and_then(|b| b.parse().ok())
        })
        .unwrap_or(0);
    Ok((ty, bit))
}

/// `perf_event_open` of a uprobe/kprobe PMU event: `name` is the path (uprobe) or the function
/// (kprobe), `offset` the file offset (uprobe) or the offset in the function (kprobe). On CPU 0
/// for every process, as libbpf opens system-wide uprobes and kprobes.
fn perf_probe(kind: &str, name: &CString, offset: u64, ret: bool) -> io::Result<OwnedFd> {
    let (ty, bit) = pmu(kind)?;
    let config: u64 = if ret { 1 << bit } else { 0 };
    crate::perf::open(&crate::perf::PerfAttr::probe(ty, config, name, offset), 0)
}

/// Attaches `prog` to the perf event `perf` with a BPF link carrying `cookie` (read by the
/// program with `bpf_get_attach_cookie`). Closing the returned fd detaches the program; the
/// event stays open until its own fd is closed.
pub fn link_perf_event(
    prog: BorrowedFd<'_>,
    perf: BorrowedFd<'_>,
    cookie: u64,
) -> io::Result<OwnedFd> {
    let mut opts = link_opts();
    opts.__bindgen_anon_1.perf_event.bpf_cookie = cookie;
    link_create(prog, perf.as_raw_fd(), libbpf_sys::BPF_PERF_EVENT, &opts)
}

/// Attaches `prog` (a `BPF_PROG_TYPE_RAW_TRACEPOINT` program) to the raw tracepoint `name`
/// with `cookie` (`BPF_RAW_TRACEPOINT_OPEN`; the cookie needs kernel 6.10). Closing the
/// returned fd detaches it.
pub fn raw_tracepoint_open(prog: BorrowedFd<'_>, name: &str, cookie: u64) -> io::Result<OwnedFd> {
    let name = cstring(name)?;
    let mut opts = libbpf_sys::bpf_raw_tp_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_raw_tp_opts>() as libbpf_sys::size_t,
        tp_name: name.as_ptr(),
        cookie,
    };
    // SAFETY: `opts` is a valid, sized options struct; `name` outlives the call.
    libbpf_fd(unsafe { libbpf_sys::bpf_raw_tracepoint_open_opts(prog.as_raw_fd(), &mut opts) })
}

/// Attaches `prog` to the perf event `perf` (a tracepoint, uprobe or kprobe event) with a BPF
/// link carrying `cookie`; the [`Link`] owns both, and dropping it closes the link, then the
/// event.
pub fn attach_perf_event(prog: BorrowedFd<'_>, perf: OwnedFd, cookie: u64) -> io::Result<Link> {
    use std::os::fd::AsFd;
    let fd = link_perf_event(prog, perf.as_fd(), cookie)?;
    Ok(Link::new(fd, Some(perf)))
}

/// [`raw_tracepoint_open`] as a [`Link`].
pub fn attach_raw_tracepoint(prog: BorrowedFd<'_>, name: &str, cookie: u64) -> io::Result<Link> {
    Ok(Link::new(raw_tracepoint_open(prog, name, cookie)?, None))
}

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a NUL byte"))
}

/// Attaches `prog` (a `SEC("uprobe")` / `SEC("uretprobe")` program) at `offset` of the file at
/// `path`, for every process, with `cookie` as its attach cookie.
pub fn attach_uprobe(
    prog: BorrowedFd<'_>,
    path: &str,
    offset: u64,
    ret: bool,
    cookie: u64,
) -> io::Result<Link> {
    let p = cstring(path)?;
    let perf = perf_probe("uprobe", &p, offset, ret)?;
    attach_perf_event(prog, perf, cookie)
}

/// Attaches `prog` (a `SEC("uprobe.multi")` / `SEC("uretprobe.multi")` program, i.e. loaded
/// with expected attach type `BPF_TRACE_UPROBE_MULTI`) at every `offsets[i]` of the file at
/// `path` with cookie `cookies[i]`: one link, one detach grace period for all of them.
pub fn attach_uprobe_multi(
    prog: BorrowedFd<'_>,
    path: &str,
    offsets: &[u64],
    cookies: &[u64],
    ret: bool,
) -> io::Result<Link> {
    if offsets.is_empty() || offsets.len() != cookies.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "uprobe_multi: offsets and cookies must be non-empty and of equal length",
        ));
    }
    let p = cstring(path)?;
    let mut opts = link_opts();
    opts.__bindgen_anon_1.uprobe_multi =
        libbpf_sys::bpf_link_create_opts__bindgen_ty_1__bindgen_ty_3 {
            flags: if ret {
                libbpf_sys::BPF_F_UPROBE_MULTI_RETURN
            } else {
                0
            },
            cnt: offsets.len() as u32,
            path: p.as_ptr(),
            offsets: offsets.as_ptr() as *const std::os::raw::c_ulong,
            cookies: cookies.as_ptr(),
            ..Default::default()
        };
    let fd = link_create(prog, 0, libbpf_sys::BPF_TRACE_UPROBE_MULTI, &opts)?;
    Ok(Link::new(fd, None))
}

/// Attaches `prog` (a `SEC("kprobe")` / `SEC("kretprobe")` program) to kernel function `func`.
pub fn attach_kprobe(prog: BorrowedFd<'_>, func: &str, ret: bool, cookie: u64) -> io::Result<Link> {
    let f = cstring(func)?;
    let perf = perf_probe("kprobe", &f, 0, ret)?;
    attach_perf_event(prog, perf, cookie)
}

/// Attaches `prog` (loaded with expected attach type `BPF_TRACE_KPROBE_MULTI`) to every kernel
/// function of `funcs`, with cookie `cookies[i]`: one link for all of them.
pub fn attach_kprobe_multi(
    prog: BorrowedFd<'_>,
    funcs: &[&str],
    cookies: &[u64],
    ret: bool,
) -> io::Result<Link> {
    if funcs.is_empty() || funcs.len() != cookies.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "kprobe_multi: functions and cookies must be non-empty and of equal length",
        ));
    }
    let names = funcs
        .iter()
        .map(|f| cstring(f))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ptrs: Vec<*const std::os::raw::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let mut opts = link_opts();
    opts.__bindgen_anon_1.kprobe_multi =
        libbpf_sys::bpf_link_create_opts__bindgen_ty_1__bindgen_ty_2 {
            flags: if ret {
                libbpf_sys::BPF_F_KPROBE_MULTI_RETURN
            } else {
                0
            },
            cnt: funcs.len() as u32,
            syms: ptrs.as_mut_ptr(),
            cookies: cookies.as_ptr(),
            ..Default::default()
        };
    let fd = link_create(prog, 0, libbpf_sys::BPF_TRACE_KPROBE_MULTI, &opts)?;
    Ok(Link::new(fd, None))
}

/// Expected attach type of a program, for [`counting::CountingProgram::load`].
#[cfg(feature = "test-program")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgKind {
    /// `SEC("uprobe")`, `SEC("uretprobe")`, `SEC("kprobe")`, `SEC("kretprobe")`: perf-event links.
    Perf,
    /// `SEC("uprobe.multi")` / `SEC("uretprobe.multi")`.
    UprobeMulti,
    /// `SEC("kprobe.multi")` / `SEC("kretprobe.multi")`.
    KprobeMulti,
}

/// A tiny hand-assembled BPF program that counts hits per attach cookie in an array map. Used by
/// the tests and the examples to check that attachments fire, without any BPF toolchain
/// (feature `test-program`).
#[cfg(feature = "test-program")]
pub mod counting {
    use super::*;

    /// The loaded counting program (`hits[cookie] += 1` on every hit) and its map.
    #[derive(Debug)]
    pub struct CountingProgram {
        prog: OwnedFd,
        map: OwnedFd,
        slots: u32,
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = code;
        b[1] = (src << 4) | (dst & 0xf);
        b[2..4].copy_from_slice(&off.to_ne_bytes());
        b[4..8].copy_from_slice(&imm.to_ne_bytes());
        b
    }

    impl CountingProgram {
        /// Creates the map (`slots` u64 counters) and loads the program for `kind`.
        pub fn load(kind: ProgKind, slots: u32) -> io::Result<CountingProgram> {
            // SAFETY: a NULL name and NULL options are allowed; the call only reads its arguments.
            let map = libbpf_fd(unsafe {
                libbpf_sys::bpf_map_create(
                    libbpf_sys::BPF_MAP_TYPE_ARRAY,
                    std::ptr::null(),
                    4,
                    8,
                    slots.max(1),
                    std::ptr::null(),
                )
            })?;
            let m = map.as_raw_fd();
            let code: Vec<[u8; 8]> = vec![
                insn(0xbf, 6, 1, 0, 0),   // r6 = r1
                insn(0x85, 0, 0, 0, 174), // r0 = bpf_get_attach_cookie(ctx)
                insn(0x63, 10, 0, -4, 0), // *(u32 *)(r10 - 4) = r0
                insn(0x18, 1, 1, 0, m),   // r1 = map (ld_imm64, BPF_PSEUDO_MAP_FD)
                insn(0, 0, 0, 0, 0),
                insn(0xbf, 2, 10, 0, 0), // r2 = r10
                insn(0x07, 2, 0, 0, -4), // r2 += -4
                insn(0x85, 0, 0, 0, 1),  // r0 = bpf_map_lookup_elem(r1, r2)
                insn(0x15, 0, 0, 2, 0),  // if r0 == 0 goto +2
                insn(0xb7, 1, 0, 0, 1),  // r1 = 1
                insn(0xdb, 0, 1, 0, 0),  // lock *(u64 *)(r0 + 0) += r1
                insn(0xb7, 0, 0, 0, 0),  // r0 = 0
                insn(0x95, 0, 0, 0, 0),  // exit
            ];
            let bytes: Vec<u8> = code.concat();
            let mut log = vec![0u8; 16 * 1024];
            let mut opts = libbpf_sys::bpf_prog_load_opts {
                sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as libbpf_sys::size_t,
                expected_attach_type: match kind {
                    ProgKind::Perf => 0,
                    ProgKind::UprobeMulti => libbpf_sys::BPF_TRACE_UPROBE_MULTI,
                    ProgKind::KprobeMulti => libbpf_sys::BPF_TRACE_KPROBE_MULTI,
                },
                log_level: 1,
                log_size: log.len() as u32,
                log_buf: log.as_mut_ptr().cast(),
                ..Default::default()
            };
            // SAFETY: `bytes` holds `code.len()` instructions, the license is NUL-terminated,
            // and `opts` (with the log buffer) outlives the call.
            let prog = libbpf_fd(unsafe {
                libbpf_sys::bpf_prog_load(
                    libbpf_sys::BPF_PROG_TYPE_KPROBE,
                    std::ptr::null(),
                    c"GPL".as_ptr(),
                    bytes.as_ptr().cast(),
                    code.len() as libbpf_sys::size_t,
                    &mut opts,
                )
            })
            .map_err(|e| {
                let end = log.iter().position(|b| *b == 0).unwrap_or(0);
                io::Error::new(
                    e.kind(),
                    format!(
                        "load counting program: {e}: {}",
                        String::from_utf8_lossy(&log[..end])
                    ),
                )
            })?;
            Ok(CountingProgram { prog, map, slots })
        }

        /// The program's descriptor, to attach.
        pub fn prog(&self) -> BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.prog.as_fd()
        }

        /// Hits counted for `cookie` so far.
        pub fn hits(&self, cookie: u32) -> io::Result<u64> {
            if cookie >= self.slots {
                return Ok(0);
            }
            let key = cookie;
            let mut value = 0u64;
            // SAFETY: `key` and `value` are valid for the map's 4-byte key and 8-byte value.
            let r = unsafe {
                libbpf_sys::bpf_map_lookup_elem(
                    self.map.as_raw_fd(),
                    (&key as *const u32).cast(),
                    (&mut value as *mut u64).cast(),
                )
            };
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r));
            }
            Ok(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_unreadable_pmu_keeps_the_kind_and_the_cause() {
        let devices = Path::new("/nonexistent/otf-test/devices");
        let e = pmu_in(devices, "kprobe").expect_err("no such PMU");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let cause = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            e.to_string(),
            format!(
                "/nonexistent/otf-test/devices/kprobe/type: {cause} (kernel without kprobe support?)"
            )
        );
        assert!(matches!(
            e.get_ref().and_then(|i| i.downcast_ref::<PmuError>()),
            Some(PmuError::Unreadable { .. })
        ));
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(libc::ENOENT));
    }

    #[test]
    fn a_pmu_type_that_is_not_a_number_is_refused_by_path() {
        let devices = std::env::temp_dir().join(format!("otf-pmu-test-{}", std::process::id()));
        fs::create_dir_all(devices.join("uprobe")).unwrap();
        fs::write(devices.join("uprobe/type"), "seven\n").unwrap();
        let e = pmu_in(&devices, "uprobe").expect_err("not a number");
        let _ = fs::remove_dir_all(&devices);
        assert_eq!(e.kind(), io::ErrorKind::Other);
        assert_eq!(
            e.to_string(),
            format!("{}/uprobe/type: not a number", devices.display())
        );
    }
}
