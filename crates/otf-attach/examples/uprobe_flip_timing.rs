//! Measures, on this machine, how long turning one uprobe on and off takes in the kernel with
//! each attachment otf can choose, and when the breakpoint really goes relative to the close:
//!
//! - `single`: a perf uprobe event (`perf_event_open`) and a BPF link to it; off = close the
//!   link, then the event.
//! - `single-disable`: the same, with `PERF_EVENT_IOC_DISABLE` on the event before the closes.
//! - `multi`: a uprobe_multi link of one function; off = close the link.
//!
//! A worker thread calls an endbr64/`push` function of this binary in a loop and records when
//! a call was slow (> 3 us: the breakpoint trapped) and the counting program's hit count is
//! polled, so each trial prints: attach syscalls, flip → first trapped call, close syscalls,
//! and close start → last trapped call and last BPF hit.
//!
//! Run as root: `cargo run --release -p otf-attach --features test-program --example
//! uprobe_flip_timing [TRIALS]`.

use std::fs;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use otf_attach::perf::{self, PerfAttr};
use otf_attach::sys::{self, counting::CountingProgram, ProgKind};

fn now() -> i64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

#[inline(never)]
#[no_mangle]
extern "C" fn otf_flip_work(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_add(1))
}

/// The file and file offset of `otf_flip_work`, from /proc/self/maps.
fn self_offset() -> (String, u64) {
    let addr = otf_flip_work as *const () as usize as u64;
    for l in fs::read_to_string("/proc/self/maps").unwrap().lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        let (lo, hi) = w[0].split_once('-').unwrap();
        let (lo, hi) = (
            u64::from_str_radix(lo, 16).unwrap(),
            u64::from_str_radix(hi, 16).unwrap(),
        );
        if (lo..hi).contains(&addr) && w.len() >= 6 {
            let off = u64::from_str_radix(w[2], 16).unwrap();
            return (w[5].to_string(), addr - lo + off);
        }
    }
    panic!("otf_flip_work not in /proc/self/maps");
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

fn main() {
    let trials: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let (path, off) = self_offset();
    let last_slow = Arc::new(AtomicI64::new(0));
    let first_slow_after = Arc::new(AtomicI64::new(i64::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (ls, fs_, stop) = (last_slow.clone(), first_slow_after.clone(), stop.clone());
        std::thread::spawn(move || {
            // A trapped call is the second of two consecutive slow calls (one slow call alone
            // is an interrupt or a preemption).
            let mut x = 0u64;
            let mut prev = -1;
            while !stop.load(Ordering::Relaxed) {
                let a = now();
                x = otf_flip_work(x);
                let b = now();
                if b - a > 3000 {
                    if prev >= 0 {
                        ls.store(b, Ordering::Relaxed);
                        let _ = fs_.compare_exchange(
                            i64::MAX,
                            prev,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    }
                    prev = a;
                } else {
                    prev = -1;
                }
            }
        });
    }
    let ty: u32 = fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let single = CountingProgram::load(ProgKind::Perf, 4).unwrap();
    let multi = CountingProgram::load(ProgKind::UprobeMulti, 4).unwrap();
    let cpath = std::ffi::CString::new(path.clone()).unwrap();
    println!("{path} +{off:#x}");
    println!("mode            attach_ms(open+link)  on_ms  close_link_ms close_perf_ms  off_trap_ms off_hit_ms");
    for t in 0..trials {
        for mode in ["single", "single-disable", "multi"] {
            std::thread::sleep(Duration::from_millis(150));
            let prog = if mode == "multi" { &multi } else { &single };
            let cookie = (t % 4) as u32;
            first_slow_after.store(i64::MAX, Ordering::Relaxed);
            let t0 = now();
            let (link, ev, t_open) = if mode == "multi" {
                let l = sys::attach_uprobe_multi(
                    prog.prog(),
                    &path,
                    &[off],
                    &[u64::from(cookie)],
                    false,
                )
                .unwrap();
                (l.into_fds().0, None, 0)
            } else {
                let ev = perf::open(&PerfAttr::probe(ty, 0, &cpath, off), 0).unwrap();
                let t_open = now() - t0;
                let l = sys::link_perf_event(prog.prog(), ev.as_fd(), u64::from(cookie)).unwrap();
                (l, Some(ev), t_open)
            };
            let t_att = now() - t0;
            // Wait for the first trapped call after t0.
            let mut on = -1;
            while now() - t0 < 2_000_000_000 {
                let f = first_slow_after.load(Ordering::Relaxed);
                if f != i64::MAX && f >= t0 {
                    on = f - t0;
                    break;
                }
                std::thread::sleep(Duration::from_micros(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            // Poll the hit count while closing: when did the program last run?
            let done = AtomicBool::new(false);
            let last_hit = AtomicI64::new(0);
            let (c0, c_dis, c1, c2) = std::thread::scope(|s| {
                s.spawn(|| {
                    let mut prev = prog.hits(cookie).unwrap();
                    while !done.load(Ordering::Relaxed) {
                        let v = prog.hits(cookie).unwrap();
                        if v != prev {
                            prev = v;
                            last_hit.store(now(), Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_micros(20));
                    }
                });
                std::thread::sleep(Duration::from_millis(5));
                let c0 = now();
                if mode == "single-disable" {
                    perf::set_enabled(ev.as_ref().unwrap().as_fd(), false).unwrap();
                }
                let c_dis = now() - c0;
                drop(link);
                let c1 = now() - c0;
                drop(ev);
                let c2 = now() - c0;
                std::thread::sleep(Duration::from_millis(60));
                done.store(true, Ordering::Relaxed);
                (c0, c_dis, c1, c2)
            });
            let lt = last_slow.load(Ordering::Relaxed) - c0;
            let lh = last_hit.load(Ordering::Relaxed);
            let lh = if lh == 0 { f64::NAN } else { ms(lh - c0) };
            println!(
                "{mode:<15} {:>8.3} ({:>6.3})  {:>8.3}  {:>8.3} (dis {:.3}) {:>8.3}  {:>8.3} {:>8.3}",
                ms(t_att),
                ms(t_open),
                ms(on),
                ms(c1),
                ms(c_dis),
                ms(c2 - c1),
                ms(lt),
                lh
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
}
