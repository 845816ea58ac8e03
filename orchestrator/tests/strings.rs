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
