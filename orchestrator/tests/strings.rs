//! String values for real (root): in `begin`/`end` bodies, in a timer body (which runs in
//! user space), as array keys and elements filled by kernel probes, and at exit.

mod common;

use common::{err, otf, out};

#[test]
fn strings_in_begin_and_end() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "global greeting = \"hello\", seen\n\
         function shout(s:string) { return s . \"!\" }\n\
         probe begin { s = greeting . \", \" . \"world\"; println(shout(s)); seen[\"b\"] = \"x\"; seen[\"a\"] = \"y\"; exit() }\n\
         probe end { foreach (k+ in seen) printf(\"%s=%-3s|\\n\", k, seen[k]); if (\"abc\" < \"abd\") println(\"ordered\") }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "hello, world!\na=y  |\nb=x  |\nordered\n");
}

#[test]
fn a_string_longer_than_maxstringlen_is_truncated() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "probe begin { s = \"0123456789\"; t = s; for (i = 0; i < 20; i++) t = t . s; printf(\"[%s]\\n\", t); exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // 210 bytes cut to MAXSTRINGLEN - 1 = 127.
    let text = out(&o);
    let value = text
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix("]\n"))
        .expect("t printed");
    assert_eq!(value.len(), 127, "{text}");
    assert!(value.starts_with("0123456789012"), "{text}");
}

#[test]
fn a_timer_body_with_strings_runs_in_user_space() {
    need_root!();
    // Kernel probes fill an integer-keyed array; the timer names the result with strings.
    let o = otf(&[
        "run",
        "-c",
        "for i in 1 2 3; do /bin/true; done; sleep 0.4",
        "-e",
        "global n, label\nprobe kernel.trace(\"sched:sched_process_exec\") { if (ppid() == target()) n[1]++ }\n\
         probe timer.ms(100) { if (1 in n) label = \"seen \" . \"execs\" }\n\
         probe end { printf(\"%s %d\\n\", label, n[1]) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "seen execs 4\n");
}

#[test]
fn string_keys_and_values_are_displayed_at_exit() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "global who, s\nprobe begin { who[\"bash\", 1] = 3; who[\"sh\", 2] = 5; s = \"a\\\"b\"; exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // By decreasing value; strings quoted with C escapes (SystemTap's %#s).
    assert_eq!(
        out(&o),
        "who[\"sh\",2]=0x5\nwho[\"bash\",1]=0x3\ns=\"a\\\"b\"\n"
    );
}

#[test]
fn string_functions() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "probe begin { s = sprintf(\"%s-%05d\", \"id\", 42)\n\
         printf(\"%s %d %s %d %d\\n\", s, strlen(s), substr(s, 3, 5), isinstr(s, \"-0\"), strtol(\"0x10\", 0))\n\
         t = tokenize(\"a,b,,c\", \",\"); while (t != \"\") { print(t, \";\"); t = tokenize(\"\", \",\") }\n\
         println(\"\"); println(str_replace(\"a.b.c\", \".\", \"::\"), \" \", text_str(\"x\\ty\"), \" \", stringat(\"AB\", 1)); exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "id-00042 8 00042 1 16\na;b;c;\na::b::c x\\ty 66\n");
}

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

#[test]
fn user_string_reads_a_syscall_argument_of_the_command() {
    need_root!();
    if !std::path::Path::new(LIBC).exists() {
        common::skip::skip(common::skip::Need::Env, &format!("no {LIBC}"));
        return;
    }
    // `cat FILE` opens FILE through libc's open64, whose first argument is the path, a
    // string in cat's memory: the uprobe body reads it while cat runs.
    let path = std::env::temp_dir().join(format!("otf-user-string-{}.txt", std::process::id()));
    std::fs::write(&path, "contents\n").expect("temporary file");
    let path = path.to_str().expect("a UTF-8 path").to_string();
    let script = format!(
        "probe process(\"{LIBC}\").function(\"open64\") {{ if (pid() == target()) \
         printf(\"open [%s] [%s] [%s]\\n\", user_string(pointer_arg(1)), user_string_n(pointer_arg(1), 4), \
         kernel_string2(pointer_arg(1), \"not kernel memory\")) }}"
    );
    let o = otf(&["run", "-c", &format!("cat {path}"), "-e", &script]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!(
            "open [{path}] [{}] [not kernel memory]\n",
            &path[..4]
        )),
        "{text}"
    );
    assert!(text.contains("contents\n"), "{text}");
}

#[test]
fn a_string_that_cannot_be_read_is_systemtaps_run_time_error() {
    need_root!();
    // In a kernel probe (the command's exec) and in a begin body (user space), the same
    // message as SystemTap's, and the run ends with status 1.
    for (script, near) in [
        (
            "probe kernel.trace(\"sched:sched_process_exec\") { if (pid() == target()) println(user_string(1)) }",
            "kernel.trace(\"sched:sched_process_exec\") (pidx 0)",
        ),
        ("probe begin { println(user_string_n(1, 10)) }", "begin"),
    ] {
        let o = otf(&["run", "-c", "/bin/true", "-e", script]);
        assert_eq!(o.status.code(), Some(1), "{script}: {}", err(&o));
        assert!(
            err(&o).contains(&format!(
                "ERROR: user string copy fault -14 at 0x1 [man error::fault] near {near}"
            )),
            "{script}: {}",
            err(&o)
        );
        assert_eq!(out(&o), "", "{script}");
    }
    let o = otf(&[
        "run",
        "-c",
        "/bin/true",
        "-e",
        "probe kernel.trace(\"sched:sched_process_exec\") { if (pid() == target()) println(kernel_string(0)) }",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains(
            "ERROR: kernel string copy fault at 0x0 [man error::fault] near kernel.trace(\"sched:sched_process_exec\")"
        ),
        "{}",
        err(&o)
    );
}

#[test]
fn the_err_msg_and_warn_variants_return_their_message() {
    need_root!();
    let o = otf(&[
        "run",
        "-e",
        "probe begin { printf(\"[%s][%s][%s][%s]\\n\", user_string2(0, \"none\"), user_string_n(8, 3, \"short\"), \
         user_string_warn(16), kernel_string(24, \"kernel\")); exit() }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "[none][short][][kernel]\n");
    assert_eq!(
        err(&o),
        "WARNING: user string copy fault -14 at 0x10 [man error::fault]\n"
    );
}

#[test]
fn warnings_from_kernel_probe_bodies_are_refused_by_name() {
    let o = otf(&[
        "check",
        "-e",
        "probe kernel.trace(\"sched:sched_process_exec\") {\n  println(user_string_warn(1))\n}",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("`user_string_warn` and `user_string_n_warn` (their warnings): only available in `begin`, `end` and `timer` probes"),
        "{e}"
    );
    assert!(e.contains("<command line>:2:11"), "{e}");
}

#[test]
fn sprintf_in_a_tracepoint_body_makes_array_keys() {
    need_root!();
    // `sh -c true` calls getppid: the tracepoint body (in the kernel) formats its key
    // with `bpf_snprintf`; `end` prints the command's keys.
    let o = otf(&[
        "run",
        "-c",
        "sh -c true; sh -c true",
        "-e",
        "global calls\n\
         probe kernel.trace(\"syscalls:sys_enter_getppid\") {\n  \
           calls[sprintf(\"%s|%-4s|%x|%5d|\", execname(), \"ab\", 255, -3)]++\n}\n\
         probe end { foreach (k in calls) if (isinstr(k, \"|ab  |ff|   -3|\")) printf(\"[%s] %d\\n\", k, calls[k] > 0) }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("[sh|ab  |ff|   -3|] 1\n"), "{}", out(&o));
}

#[test]
fn sprintf_formats_the_kernel_cannot_print_are_refused_by_name() {
    let o = otf(&[
        "check",
        "-e",
        "global a\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") {\n  a[sprintf(\"é%d\", 65)]++\n}",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("`sprintf` with text that is not ASCII or holds a NUL byte: only available in `begin`, `end` and `timer` probes"),
        "{e}"
    );
    assert!(e.contains("<command line>:3:5"), "{e}");
}

#[test]
fn string_functions_in_a_tracepoint_body_print_as_in_user_space() {
    need_root!();
    // The same calls in the command's exec (the kernel's code) and in `end` (the reference
    // VM), on the command's name (its shell's exec is left out).
    let o = otf(&[
        "run",
        "-c",
        "/bin/true",
        "-e",
        "function show(w, s) {\n  \
           printf(\"%s %d %s %d %d %d %s %s|%s\\n\", w, isinstr(s, \"ru\"), substr(s, 1, 2), stringat(s, 0), \
           strtol(\"0x1f\", 0), strtol(\"-17z\", 8), text_str(s . \"\\n\\001\\a\"), str_replace(s, \"u\", \"UU\"), substr(s, 2, 100))\n}\n\
         probe kernel.trace(\"sched:sched_process_exec\") { if (pid() == target() && execname() == \"true\") show(\"kernel\", execname()) }\n\
         probe end { show(\"user\", \"true\") }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(
        out(&o),
        "kernel 1 ru 116 31 -15 true\\n\\001\\a trUUe|ue\nuser 1 ru 116 31 -15 true\\n\\001\\a trUUe|ue\n"
    );
}

#[test]
fn stringat_out_of_bounds_is_the_same_error_in_the_kernel_and_in_user_space() {
    need_root!();
    // tapset/string.stp: STAP_ERROR("Position out of bounds"); the run ends with status 1.
    for (probe, cond, near) in [
        (
            "kernel.trace(\"sched:sched_process_exec\")",
            "pid() == target()",
            "near kernel.trace(\"sched:sched_process_exec\") (pidx 0)",
        ),
        ("end", "1", "near end"),
    ] {
        let src = format!(
            "probe {probe} {{ if ({cond}) {{ println(stringat(\"true\", 3)); println(stringat(\"true\", 4)) }} }}"
        );
        let o = otf(&["run", "-c", "/bin/true", "-e", &src]);
        assert_eq!(o.status.code(), Some(1), "{probe}: {}", err(&o));
        // The byte before the error, nothing for the failing call.
        assert_eq!(out(&o), "101\n", "{probe}");
        let e = err(&o);
        assert!(
            e.contains(&format!("ERROR: Position out of bounds {near}")),
            "{probe}: {e}"
        );
    }
}

#[test]
fn tokenize_in_a_tracepoint_body_prints_as_in_user_space() {
    need_root!();
    // The kernel's code in the command's exec, the reference VM in `end`.
    let o = otf(&[
        "run",
        "-c",
        "/bin/true",
        "-e",
        "function show(w, s) {\n  \
           printf(\"%s\", w); t = tokenize(s, \"r,\"); while (t != \"\") { printf(\" [%s]\", t); t = tokenize(\"\", \"r,\") }\n  \
           println(\" [\", tokenize(\"\", \",\"), \"]\")\n}\n\
         probe kernel.trace(\"sched:sched_process_exec\") { if (pid() == target() && execname() == \"true\") show(\"kernel\", execname() . \",,x,\") }\n\
         probe end { show(\"user\", \"true,,x,\") }",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o), "kernel [t] [ue] [x] []\nuser [t] [ue] [x] []\n");
}
