//! Listing tracepoints when a subsystem cannot be read reports the failure instead of listing
//! nothing (which `otf run` would print as "no tracepoint matches"). Its own test binary: it
//! lowers this process's file-descriptor limit.

use std::fs;
use std::path::PathBuf;

/// A fake `events` directory: `sched/sched_switch/id` and `irq/irq_handler_entry/id`.
fn fake_events() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("otf-list-errors-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    for (sub, name) in [("sched", "sched_switch"), ("irq", "irq_handler_entry")] {
        let ev = dir.join(sub).join(name);
        fs::create_dir_all(&ev).expect("create the fake event");
        fs::write(ev.join("id"), "1\n").expect("write the fake id");
    }
    dir
}

#[test]
fn out_of_file_descriptors_is_an_error_not_an_empty_list() {
    let dir = fake_events();
    let all = otf_tracepoint::list_in(&dir).expect("list the fake events");
    assert_eq!(all.len(), 2, "{all:?}");

    // Leave exactly one descriptor free: the `events` directory gets it, a subsystem cannot.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `lim`, which we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let saved = lim;
    lim.rlim_cur = 64.min(lim.rlim_max);
    // SAFETY: setrlimit reads `lim`; lowering the soft limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let mut held = Vec::new();
    while let Ok(f) = fs::File::open("/dev/null") {
        held.push(f);
    }
    held.pop();
    let got = otf_tracepoint::list_in(&dir);
    drop(held);
    // SAFETY: as above; restores the limit this test lowered.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
    let _ = fs::remove_dir_all(&dir);

    let err = got.expect_err("listing without a free descriptor must fail");
    let msg = err.to_string();
    assert!(msg.contains("cannot read"), "{msg}");
    assert!(
        std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .and_then(|e| e.raw_os_error())
            == Some(libc::EMFILE),
        "{msg}"
    );
}
