//! The floor under syscall dispatch's cost (root): getppid(2) per call with no probe, with a
//! no-op `BPF_PROG_TYPE_RAW_TRACEPOINT` program on `raw_syscalls:sys_enter` (what any raw link
//! there costs every syscall before otf's prologue runs), and with a no-op program on the perf
//! tracepoint `syscalls:sys_enter_getpgid` (getppid unprobed), alternating, medians of 7:
//!
//! ```text
//! cargo run --release -p otf-tracepoint --example syscall_dispatch_floor
//! ```

use otf_attach::testprog as minprog;

use std::os::fd::AsFd;
use std::time::Instant;

use otf_tracepoint::{Tracepoint, TracepointLink};

fn per_call(n: u32) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no preconditions.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let raw = minprog::load_noop(minprog::PROG_TYPE_RAW_TRACEPOINT)?;
    let perf = minprog::load_noop(minprog::PROG_TYPE_TRACEPOINT)?;
    let sys_enter = Tracepoint::new("raw_syscalls", "sys_enter");
    let getpgid = Tracepoint::new("syscalls", "sys_enter_getpgid");
    let n = 1_000_000;
    let mut s = [Vec::new(), Vec::new(), Vec::new()];
    per_call(n / 10);
    for _ in 0..7 {
        s[0].push(per_call(n));
        let l = TracepointLink::attach_raw(raw.as_fd(), &sys_enter, 0)?;
        s[1].push(per_call(n));
        drop(l);
        let l = TracepointLink::attach_perf(perf.as_fd(), &getpgid, 0)?;
        s[2].push(per_call(n));
        drop(l);
    }
    for (name, v) in [
        "no probe",
        "no-op raw sys_enter",
        "no-op perf sys_enter_getpgid",
    ]
    .iter()
    .zip(s.iter_mut())
    {
        println!("{name:<30} {:>8.1} ns/call", median(v));
    }
    Ok(())
}
