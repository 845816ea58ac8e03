//! Measures attaching perf tracepoints, then closing all their BPF link fds concurrently, then
//! all their perf event fds concurrently (root):
//!
//! ```text
//! cargo run -p otf-tracepoint --example tracepoint_measure_detach -- 'syscalls:sys_enter_get*'
//! ```

use otf_attach::testprog as minprog;

use std::os::fd::AsFd;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prog = minprog::load_noop(minprog::PROG_TYPE_TRACEPOINT)?;
    let pattern = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "syscalls:sys_enter_get*".into());
    let tps = otf_tracepoint::resolve(&pattern)?;
    let t = Instant::now();
    let mut links = Vec::new();
    for tp in &tps {
        links.push(otf_tracepoint::TracepointLink::attach_perf(
            prog.as_fd(),
            tp,
            1,
        )?);
    }
    println!(
        "{} perf tracepoints attached in {:?}",
        links.len(),
        t.elapsed()
    );
    let (link_fds, perf_fds): (Vec<_>, Vec<_>) = links.into_iter().map(|l| l.into_fds()).unzip();
    let t = Instant::now();
    std::thread::scope(|s| {
        for fd in link_fds {
            s.spawn(move || drop(fd));
        }
    });
    println!("link fds closed concurrently in {:?}", t.elapsed());
    let t = Instant::now();
    std::thread::scope(|s| {
        for fd in perf_fds {
            s.spawn(move || drop(fd));
        }
    });
    println!("perf event fds closed concurrently in {:?}", t.elapsed());
    Ok(())
}
