//! The `bpf(2)` commands the BPF timers need (`BPF_PROG_TEST_RUN`, `BPF_MAP_LOOKUP_ELEM`,
//! through libbpf-sys), and the online CPUs. Perf events and links are otf-attach's.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Runs the program `prog` once with `ctx` as its context (`BPF_PROG_TEST_RUN` through
/// libbpf's `bpf_prog_test_run_opts`, as for a `BPF_PROG_TYPE_SYSCALL` program) and returns its
/// return value.
pub fn prog_test_run(prog: BorrowedFd<'_>, ctx: &[u8]) -> io::Result<i32> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
        ctx_in: ctx.as_ptr().cast(),
        ctx_size_in: ctx.len() as u32,
        ..Default::default()
    };
    // SAFETY: `opts` is a valid, sized bpf_test_run_opts whose context buffer (only read by
    // the kernel) outlives the call.
    let r = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if r < 0 {
        return Err(io::Error::from_raw_os_error(-r));
    }
    Ok(opts.retval as i32)
}

/// Copies the value of `key` in the map `map` into `value` (`BPF_MAP_LOOKUP_ELEM` through
/// libbpf's `bpf_map_lookup_elem`); `value` must be the map's value size.
pub fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    // SAFETY: the key and value buffers outlive the call, and the caller sized `value` as the
    // map's value.
    let r = unsafe {
        libbpf_sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            key.as_ptr().cast(),
            value.as_mut_ptr().cast(),
        )
    };
    if r < 0 {
        return Err(io::Error::from_raw_os_error(-r));
    }
    Ok(())
}

/// Parses a kernel CPU list such as `0-3,5,7-8`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if b < a {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// The online CPUs (`/sys/devices/system/cpu/online`), falling back to CPU 0.
pub fn online_cpus() -> Vec<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5\n"), Some(vec![0, 1, 2, 3, 5]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
