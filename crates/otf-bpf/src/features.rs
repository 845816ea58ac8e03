//! What the running kernel can do, probed once at run time (never from its version alone:
//! distributions backport and configure features out). Each probe creates what it tests and
//! drops it at once; nothing stays attached.
//!
//! | feature | mainline | probed by |
//! |---|---|---|
//! | uprobe_multi links | 6.6 | a `BPF_TRACE_UPROBE_MULTI` link on `/`: `EBADF` (not a regular file) when the kernel has them, as libbpf probes it |
//! | kprobe_multi links | 5.18 with `CONFIG_FPROBE` | a `BPF_TRACE_KPROBE_MULTI` link with no functions: `EINVAL` when the kernel has them, `EOPNOTSUPP` without FPROBE (Debian 12's 6.1) |
//! | attach cookies in raw tracepoint programs | 6.10 | loading a raw tracepoint program that calls `bpf_get_attach_cookie` |
//! | `bpf_loop` (the newest helper otf cannot do without) | 5.17 | libbpf's `libbpf_probe_bpf_helper` |
//!
//! otf's stated minimum is Linux 6.1 (Debian 12's kernel, tested in CI); what it needs that
//! came last is `bpf_loop`. [`missing`] says what a kernel below it lacks.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::OnceLock;

/// The kernel features otf chooses mechanisms by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// `uprobe_multi` links: many uprobes in one link, released in one grace period.
    pub uprobe_multi: bool,
    /// `kprobe_multi` links: many kprobes in one link.
    pub kprobe_multi: bool,
    /// `bpf_get_attach_cookie` in raw tracepoint programs (one raw `sys_enter`-style
    /// attachment per probe, released at once).
    pub raw_tp_cookies: bool,
    /// `bpf_loop` (5.17): loops, the lock's spin and the probe chains.
    pub bpf_loop: bool,
}

/// `r0 = 0; exit`.
const RETURN_0: [u8; 16] = [0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];

/// `call bpf_get_attach_cookie; r0 = 0; exit` (the context is already in r1).
const COOKIE_THEN_0: [u8; 24] = [
    0x85, 0, 0, 0, 174, 0, 0, 0, 0xb7, 0, 0, 0, 0, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0,
];

/// Loads a kprobe program that returns 0, with `expected_attach_type`.
fn load_kprobe(expected_attach_type: u32) -> Option<OwnedFd> {
    load(
        libbpf_sys::BPF_PROG_TYPE_KPROBE,
        expected_attach_type,
        &RETURN_0,
    )
}

/// Loads a program of `prog_type` made of the encoded instructions `insns`.
fn load(prog_type: u32, expected_attach_type: u32, insns: &[u8]) -> Option<OwnedFd> {
    let mut opts = libbpf_sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_load_opts>() as libbpf_sys::size_t,
        expected_attach_type,
        ..Default::default()
    };
    // SAFETY: encoded instructions that outlive the call; the license is NUL-terminated;
    // `opts` is a zeroed options struct of the libbpf version we link.
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            std::ptr::null(),
            c"GPL".as_ptr(),
            insns.as_ptr().cast(),
            (insns.len() / 8) as libbpf_sys::size_t,
            &mut opts,
        )
    };
    // SAFETY: a new program fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a link of `prog` with `attach_type` and `opts`; returns the errno of the failure
/// (0 if a link was made, which is then closed).
fn link_errno(prog: &OwnedFd, attach_type: u32, opts: &libbpf_sys::bpf_link_create_opts) -> i32 {
    use std::os::fd::AsRawFd;
    // SAFETY: `opts` and every pointer in it outlive the call; the fd is a loaded program.
    let fd = unsafe { libbpf_sys::bpf_link_create(prog.as_raw_fd(), -1, attach_type, opts) };
    if fd >= 0 {
        // SAFETY: a new link fd that nothing else owns; dropping it detaches.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        return 0;
    }
    -fd
}

fn probe_uprobe_multi() -> bool {
    let Some(prog) = load_kprobe(libbpf_sys::BPF_TRACE_UPROBE_MULTI) else {
        return false;
    };
    let offset: libc::c_ulong = 0;
    let mut opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    opts.__bindgen_anon_1.uprobe_multi =
        libbpf_sys::bpf_link_create_opts__bindgen_ty_1__bindgen_ty_3 {
            path: c"/".as_ptr(),
            offsets: &offset,
            cnt: 1,
            ..Default::default()
        };
    link_errno(&prog, libbpf_sys::BPF_TRACE_UPROBE_MULTI, &opts) == libc::EBADF
}

fn probe_kprobe_multi() -> bool {
    let Some(prog) = load_kprobe(libbpf_sys::BPF_TRACE_KPROBE_MULTI) else {
        return false;
    };
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    link_errno(&prog, libbpf_sys::BPF_TRACE_KPROBE_MULTI, &opts) == libc::EINVAL
}

fn probe_bpf_loop() -> bool {
    // SAFETY: no options; the call loads and frees a probe program of its own.
    let r = unsafe {
        libbpf_sys::libbpf_probe_bpf_helper(
            libbpf_sys::BPF_PROG_TYPE_KPROBE,
            libbpf_sys::BPF_FUNC_loop,
            std::ptr::null(),
        )
    };
    r == 1
}

fn probe_raw_tp_cookies() -> bool {
    load(libbpf_sys::BPF_PROG_TYPE_RAW_TRACEPOINT, 0, &COOKIE_THEN_0).is_some()
}

/// The running kernel's features, probed on first use (needs the privileges to load BPF
/// programs; without them every feature reads as absent).
pub fn features() -> Features {
    static F: OnceLock<Features> = OnceLock::new();
    *F.get_or_init(|| Features {
        uprobe_multi: probe_uprobe_multi(),
        kprobe_multi: probe_kprobe_multi(),
        raw_tp_cookies: probe_raw_tp_cookies(),
        bpf_loop: probe_bpf_loop(),
    })
}

/// The minimum kernel otf states, and is tested on.
pub const MINIMUM_KERNEL: &str = "6.1";

/// What keeps otf from running on this kernel, in words, if anything: the features it cannot
/// do without that the kernel lacks (probed; call as root).
pub fn missing() -> Option<String> {
    let f = features();
    if f.bpf_loop {
        return None;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    Some(format!(
        "this kernel ({}) lacks the BPF helper bpf_loop (Linux 5.17); otf needs Linux \
         {MINIMUM_KERNEL} or later (see docs/user-guide.md, \"Kernel requirements\")",
        release.trim()
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn probes_run_and_agree_with_the_kernel() {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let f = super::features();
        // Every kernel otf runs on natively here (6.18) has uprobe_multi; kprobe_multi only
        // with kprobes (the development kernel has none).
        let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let (major, minor) = {
            let mut it = release.trim().split(['.', '-']);
            let n = |s: Option<&str>| s.and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
            (n(it.next()), n(it.next()))
        };
        assert_eq!(
            f.uprobe_multi,
            (major, minor) >= (6, 6),
            "{f:?} on {release}"
        );
        assert_eq!(
            f.raw_tp_cookies,
            (major, minor) >= (6, 10),
            "{f:?} on {release}"
        );
        if !kprobes {
            assert!(!f.kprobe_multi, "{f:?}");
        }
    }
}
