//! Builds a target with gcc and runs the example against it (root: attaches uprobes).

use std::process::Command;

#[test]
fn demo_arms_fn_hot_only_while_tracing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("note: not root; the arming demo needs root to attach uprobes");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("target.c");
    std::fs::write(
        &src,
        r#"#include <stdlib.h>
#include <string.h>
__attribute__((noinline)) int fn_hot(int x) { return x * 3; }
__attribute__((noinline)) void fn_toggle(void) { __asm__ volatile(""); }
volatile int sink;
int main(int argc, char **argv) {
    int s = 0;
    if (argc > 2 && !strcmp(argv[1], "hot")) for (int i = 0; i < atoi(argv[2]); i++) s += fn_hot(i);
    if (argc > 1 && !strcmp(argv[1], "toggle")) fn_toggle();
    sink = s;
    return 0;
}
"#,
    )
    .unwrap();
    let bin = dir.path().join("target");
    assert!(Command::new("gcc")
        .args(["-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let out = Command::new(env!("CARGO_BIN_EXE_otf-arming-demo"))
        .arg(&bin)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "otf: not registering (uprobe) pidx 1",
            "after `hot 5`: tracing=0 fn_hot attached=false hot_hits=0",
            "otf: registering (uprobe) pidx 1",
            "after `toggle`: tracing=1 fn_hot attached=true hot_hits=0",
            "after `hot 5`: tracing=1 fn_hot attached=true hot_hits=5",
            "otf: unregistering (uprobe) pidx 1",
            "after `toggle`: tracing=0 fn_hot attached=false hot_hits=5",
            "after `hot 5`: tracing=0 fn_hot attached=false hot_hits=5",
            "hot_hits=5 toggles=2",
        ]
    );
}
