//! Resolution and kprobe detection on the running kernel (no privilege needed for tracefs
//! reads when it is mounted readable; skipped with a note otherwise).

use otf_kprobes::{kprobes_available, resolve, resolve_verbose, KernelSymbols, NO_KPROBES};

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

#[test]
fn vfs_read_resolves_on_this_kernel() {
    let syms = match KernelSymbols::load() {
        Ok(s) => s,
        Err(e) => {
            skip::skip(skip::Need::Env, &format!("no kernel symbol list: {e}"));
            return;
        }
    };
    assert!(
        syms.len() > 1000,
        "a kernel has thousands of probeable functions"
    );
    let t = resolve("vfs_read", false).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].symbol, "vfs_read");
    let r = syms.resolve("vfs_*", true).unwrap();
    assert!(r.targets.len() > 3);
    assert!(r
        .targets
        .iter()
        .all(|t| t.ret && t.symbol.starts_with("vfs_")));
    let err = resolve_verbose("vfs_raed", false).unwrap_err().to_string();
    assert!(err.contains("vfs_read"), "{err}");
}

#[test]
fn kprobe_support_detection_matches_the_kernel() {
    let r = kprobes_available();
    if std::env::var_os("OTF_IN_VM").is_some() {
        assert_eq!(r, Ok(()), "the test VM kernel has CONFIG_KPROBES");
        return;
    }
    let has_pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    match r {
        Ok(()) => println!("note: this kernel has kprobes"),
        Err(msg) => {
            assert!(!has_pmu);
            assert!(msg.starts_with(NO_KPROBES), "{msg}");
            println!("kprobes_available: {msg}");
        }
    }
}
