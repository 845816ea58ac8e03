//! `printf`'s binary output (`%b`) and memory dumps (`%m`, `%M`) for real (root): the exact
//! bytes on stdout, from user-space bodies (`begin`) and from kernel bodies (a tracepoint and
//! a uprobe), `-o json`, and SystemTap's run-time error when memory cannot be read.

mod common;

use common::{err, otf, out};

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

#[test]
fn binary_output_is_written_byte_exact_from_begin() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "probe begin { printf(\"%3d: %1b%1b%1b|%2b|%4b|%b|%-3b|%3b\\n\", 97, 97, 65, 33, 0x0102, -1, 0x41, 0xff, 7); exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let mut want = b" 97: aA!|".to_vec();
    want.extend(0x0102i16.to_ne_bytes());
    want.push(b'|');
    want.extend((-1i32).to_ne_bytes());
    want.push(b'|');
    want.extend(0x41i64.to_ne_bytes());
    want.push(b'|');
    // A width that is no size: 8 bytes, padded with NULs to the width (none here: 8 > 3).
    want.extend(0xffi64.to_ne_bytes());
    want.push(b'|');
    want.extend(7i64.to_ne_bytes());
    want.push(b'\n');
    assert_eq!(o.stdout, want);
}

#[test]
fn binary_output_from_a_kernel_body() {
    need_root!();
    // The exec of the command (`sh -c` and then the command itself, in the same task): its
    // pid in decimal, then as 4 bytes, a NUL and two bytes that are not UTF-8.
    let o = otf(&[
        "run",
        "-c",
        "/bin/true",
        "-e",
        "probe kernel.trace(\"sched:sched_process_exec\") { if (pid() == target()) printf(\"%d<%4b%1b%2b>\\n\", pid(), pid(), 0, 0xfeff) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let mut s = &o.stdout[..];
    let mut records = 0;
    while !s.is_empty() {
        let lt = s.iter().position(|&c| c == b'<').expect("a record");
        let pid: i32 = std::str::from_utf8(&s[..lt])
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("a pid in decimal: {s:?}"));
        let mut want = vec![b'<'];
        want.extend(pid.to_ne_bytes());
        want.push(0);
        want.extend(0xfeffu16.to_ne_bytes());
        want.extend_from_slice(b">\n");
        assert_eq!(s[lt..].get(..want.len()), Some(&want[..]), "{:?}", o.stdout);
        s = &s[lt + want.len()..];
        records += 1;
    }
    assert!(records >= 1, "{}", err(&o));
}

#[test]
fn json_output_carries_the_bytes() {
    need_root!();
    let o = otf(&[
        "run",
        "-o",
        "json",
        "-e",
        "probe begin { printf(\"%1b|\", 0); printf(\"%1b%c\\n\", 0xe9, 65); exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let lines: Vec<serde_json::Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .filter(|v: &serde_json::Value| v["type"] == "output")
        .collect();
    assert_eq!(lines.len(), 2, "{}", out(&o));
    // UTF-8 (a NUL is): the text alone.
    assert_eq!(lines[0]["text"], "\u{0}|");
    assert!(lines[0].get("bytes").is_none(), "{}", lines[0]);
    // Not UTF-8: the text with U+FFFD, and every byte.
    assert_eq!(lines[1]["text"], "\u{fffd}A\n");
    assert_eq!(lines[1]["bytes"], serde_json::json!([0xe9, 65, 10]));
}

#[test]
fn a_memory_dump_in_a_user_space_body_is_a_read_fault() {
    need_root!();
    // User space cannot read kernel memory: SystemTap's fault error, nothing of that printf
    // is printed, the body ends there.
    let o = otf(&[
        "run",
        "-e",
        "probe begin { printf(\"before\\n\"); printf(\"x%.4M\\n\", 16); printf(\"after\\n\") }",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(out(&o), "before\n");
    assert!(
        err(&o).contains("ERROR: read fault [man error::fault] at 0x10 near begin"),
        "{}",
        err(&o)
    );
}

#[test]
fn memory_dumps_of_user_memory_in_a_uprobe() {
    need_root!();
    if !std::path::Path::new(LIBC).exists() {
        common::skip::skip(common::skip::Need::Env, &format!("no {LIBC}"));
        return;
    }
    // `cat FILE` opens FILE through libc's open64: its first argument points at the path,
    // in cat's memory, which `%#m` and `%#M` read; `%m` without `#` reads kernel memory at
    // that user address, which faults.
    let path = std::env::temp_dir().join(format!("otf-printf-m-{}.txt", std::process::id()));
    std::fs::write(&path, "contents\n").expect("temporary file");
    let path = path.to_str().expect("a UTF-8 path").to_string();
    let script = format!(
        "probe process(\"{LIBC}\").function(\"open64\") {{ p = pointer_arg(1)\n\
         if (pid() == target() && user_string(p) == \"{path}\") {{\n\
         printf(\"[%#.4m][%#.4M][%-#10.2M][%#*.*M][%#m][%#5.2m]\\n\", p, p, p, 10, 3, p, p, p)\n\
         printf(\"[%#.*M]\\n\", 1000, p)\n\
         printf(\"p=%p\\n\", p); printf(\"%.4m\\n\", p) }} }}"
    );
    let o = otf(&["run", "-c", &format!("cat {path}"), "-e", &script]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let hex = |b: &[u8]| b.iter().map(|c| format!("{c:02x}")).collect::<String>();
    let b = path.as_bytes();
    let mut want = Vec::new();
    want.extend_from_slice(b"[");
    want.extend_from_slice(&b[..4]);
    want.extend_from_slice(
        format!(
            "][{}][{:<10}][{:>10}][",
            hex(&b[..4]),
            hex(&b[..2]),
            hex(&b[..3])
        )
        .as_bytes(),
    );
    want.push(b[0]);
    want.extend_from_slice(b"][   ");
    want.extend_from_slice(&b[..2]);
    want.extend_from_slice(b"]\n");
    // After cat's own output.
    let at = o
        .stdout
        .windows(want.len())
        .position(|w| w == want)
        .unwrap_or_else(|| panic!("{:?}\nwant {want:?}\n{}", o.stdout, err(&o)));
    let s = &o.stdout[at..];
    // A `.*` precision above 128 reads 128 bytes: the path, its NUL, what follows.
    let rest = String::from_utf8_lossy(&s[want.len()..]).into_owned();
    let mut lines = rest.lines();
    let dump = lines.find(|&l| l != "contents").expect("the second printf");
    assert_eq!(dump.len(), 2 + 2 * 128, "{dump}");
    assert!(dump.starts_with(&format!("[{}00", hex(b))), "{dump}");
    let p = lines
        .find(|&l| l != "contents")
        .and_then(|l| l.strip_prefix("p="))
        .expect("the address");
    // cat's own output may come before or after ours.
    assert_eq!(
        lines.find(|&l| l != "contents"),
        None,
        "nothing of the faulting printf: {rest}"
    );
    assert!(
        err(&o).contains(&format!(
            "ERROR: read fault [man error::fault] at {p} near process(\""
        )),
        "{}",
        err(&o)
    );
}

#[test]
fn a_kernel_memory_dump_that_faults_in_a_tracepoint() {
    need_root!();
    let o = otf(&[
        "run",
        "-c",
        "/bin/true",
        "-e",
        "probe kernel.trace(\"sched:sched_process_exec\") { if (pid() == target()) { printf(\"a\\n\"); printf(\"%5.*M\\n\", 300, 0); printf(\"b\\n\") } }",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    // Each exec of the command's task (`sh -c`, then the command) prints "a" and faults.
    let text = out(&o);
    assert!(!text.is_empty() && text.lines().all(|l| l == "a"), "{text}");
    assert!(
        err(&o).contains(
            "ERROR: read fault [man error::fault] at 0x0 near kernel.trace(\"sched:sched_process_exec\")"
        ),
        "{}",
        err(&o)
    );
}

/// The address of the kernel's ELF notes (`__start_notes` in /proc/kallsyms) and their bytes
/// (/sys/kernel/notes, the same memory as the kernel exposes it), if both can be read.
fn kernel_notes() -> Option<(u64, Vec<u8>)> {
    let syms = std::fs::read_to_string("/proc/kallsyms").ok()?;
    let addr = syms.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (a, _, name) = (f.next()?, f.next()?, f.next()?);
        (name == "__start_notes").then(|| u64::from_str_radix(a, 16).ok())?
    })?;
    let notes = std::fs::read("/sys/kernel/notes").ok()?;
    (addr != 0 && notes.len() >= 16).then_some((addr, notes))
}

#[test]
fn kernel_memory_dumps_in_a_tracepoint() {
    need_root!();
    let Some((addr, notes)) = kernel_notes() else {
        common::skip::skip(
            common::skip::Need::Env,
            "no __start_notes in /proc/kallsyms or no /sys/kernel/notes",
        );
        return;
    };
    // As a script's (signed 64-bit) integer.
    let a = addr as i64;
    // The kernel's notes, read by the tracepoint body with `%m`/`%M` (kernel memory), are
    // the bytes /sys/kernel/notes shows; a `.*` precision above 128 reads 128 of them.
    let o = otf(&[
        "run",
        "-c",
        "/bin/true",
        "-e",
        &format!(
            "probe kernel.trace(\"sched:sched_process_exec\") {{ if (pid() == target()) \
             printf(\"<%.16m|%-34.16M|%.*M>\\n\", {a}, {a}, 1000, {a}) }}"
        ),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let hex = |b: &[u8]| b.iter().map(|c| format!("{c:02x}")).collect::<String>();
    let n = notes.len().min(128);
    let mut want = b"<".to_vec();
    want.extend_from_slice(&notes[..16]);
    want.extend(format!("|{:<34}|{}>\n", hex(&notes[..16]), hex(&notes[..n])).bytes());
    // Once per exec of the command's task (`sh -c`, then the command).
    assert!(!o.stdout.is_empty(), "{}", err(&o));
    for rec in o.stdout.chunks(want.len()) {
        assert_eq!(rec, &want[..], "{:?}", o.stdout);
    }
    // User space cannot read it: a begin body faults at its address.
    let o = otf(&[
        "run",
        "-e",
        &format!("probe begin {{ printf(\"%.4M\\n\", {a}) }}"),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(&format!(
            "ERROR: read fault [man error::fault] at {addr:#x} near begin"
        )),
        "{}",
        err(&o)
    );
}

#[test]
fn a_deferred_timer_body_prints_bytes_and_faults_on_kernel_memory() {
    need_root!();
    // A `sprintf` with text that is not ASCII hands the timer's body to user space.
    let o = otf(&[
        "run",
        "-e",
        "global a\nprobe begin { a[1] = 66 }\n\
         probe timer.ms(50) { k = strtol(sprintf(\"%dé\", 1), 10); printf(\"%1b%1b\\n\", a[k], 0xe9); printf(\"%M\\n\", 8) }",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(o.stdout, [66, 0xe9, b'\n']);
    assert!(
        err(&o).contains("ERROR: read fault [man error::fault] at 0x8 near timer.ms(50)"),
        "{}",
        err(&o)
    );
}
