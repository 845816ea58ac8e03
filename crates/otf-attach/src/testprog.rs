//! A minimal BPF program loaded with raw `bpf(2)` calls, and its run counter: enough to show
//! that a probe group arms and disarms *your own* program (feature `test-program`; used by the
//! tracepoint and hrtimer crates' examples and tests), and a syscall to fire probes with.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `BPF_PROG_TYPE_TRACEPOINT`.
pub const PROG_TYPE_TRACEPOINT: u32 = 5;
/// `BPF_PROG_TYPE_PERF_EVENT`.
pub const PROG_TYPE_PERF_EVENT: u32 = 7;
/// `BPF_PROG_TYPE_RAW_TRACEPOINT`.
pub const PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

fn bpf(cmd: libc::c_long, attr: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` prefix of the length passed; it outlives
    // the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len() as u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Loads `r0 = 0; exit` as a program of `prog_type`.
pub fn load_noop(prog_type: u32) -> io::Result<OwnedFd> {
    // mov64 r0, 0 ; exit
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..54].copy_from_slice(b"otfex\0");
    bpf(5, &attr) // BPF_PROG_LOAD
}

/// Calls getppid(2) `n` times: a syscall without effects, to make the probes on its path
/// (`syscalls:sys_enter_getppid`, `kernel.function("__x64_sys_getppid")`) fire a known number
/// of times.
pub fn getppid_times(n: u32) {
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::getppid() };
    }
}

/// Turns on BPF run-time statistics while the returned fd is open.
pub fn enable_stats() -> io::Result<OwnedFd> {
    let attr = [0u8; 8]; // BPF_STATS_RUN_TIME = 0
    bpf(32, &attr) // BPF_ENABLE_STATS
}

/// How many times the program has run (needs [`enable_stats`]).
pub fn run_count(prog: BorrowedFd<'_>) -> io::Result<u64> {
    let mut info = [0u8; 256];
    let mut attr = [0u8; 16];
    attr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(info.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: BPF_OBJ_GET_INFO_BY_FD writes at most `info.len()` bytes into `info`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 15 as libc::c_long, attr.as_ptr(), 16u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // struct bpf_prog_info: run_cnt is at byte 200.
    Ok(u64::from_ne_bytes(
        info[200..208].try_into().unwrap_or([0; 8]),
    ))
}
