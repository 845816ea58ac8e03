//! What the code generator emits for small scripts, as `otf check --bpf` lists it. A change
//! to the generated code shows up here as a snapshot diff for review (`cargo insta review`).

use otf_codegen::{dump, generate, KernelInfo, ProbeSlot, ProgKind, RuntimeImage};
use otf_script::diag::SourceFile;

/// The image `otf run` would build, one pidx per kernel unit.
fn image_of(src: &str) -> RuntimeImage {
    let file = SourceFile::new("t.stp", src);
    let c = otf_script::compile_source(&file).expect("compiles");
    let s = &c.script;
    let probes = s
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| u.point.is_kernel())
        .map(|(i, u)| ProbeSlot {
            body: Some(u.body.start),
            entry: u.entry.as_ref().map(|e| e.start),
            cond: u.cond.as_ref().map(|_| i as u32),
            reeval: u.reeval.iter().map(|&c| c as u32).collect(),
            lock_mask: u.lock_mask,
            safe_context: true,
            is_return: u.point.is_return(),
            chain: None,
            label: format!("unit {i}"),
            deferred: u.deferred,
            ..Default::default()
        })
        .collect();
    RuntimeImage {
        code: s.code.clone(),
        probes,
        cond_code: s
            .units
            .iter()
            .map(|u| u.cond.as_ref().map(|c| c.start).unwrap_or(0))
            .collect(),
        cond_init: vec![false; s.units.len()],
        globals_init: s.globals.iter().map(|g| g.init).collect(),
        maps: otf_codegen::maps::MapSpec::all(&s.globals),
        target_pid: 0,
        strings: s.strings.clone(),
    }
}

fn listing(src: &str, kind: ProgKind) -> String {
    let img = image_of(src);
    let p = generate(&img, kind, &KernelInfo::default()).expect("generates");
    dump(&p, &|pidx| {
        img.probes
            .get(pidx as usize)
            .map(|s| s.label.clone())
            .unwrap_or_default()
    })
}

#[test]
fn counter() {
    insta::assert_snapshot!(listing(
        "global n\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { n++ }",
        ProgKind::Tracepoint
    ));
}

/// The syscall-dispatch prologue before the hit path: unit from the cookie, the number from
/// `pt_regs` (`orig_ax`), the pidx from the syscalls map, and the compat-task test (`cs`).
#[cfg(target_arch = "x86_64")]
#[test]
fn syscall_exit_dispatch() {
    insta::assert_snapshot!(listing(
        "global n\nprobe kernel.trace(\"syscalls:sys_exit_getppid\") { n++ }",
        ProgKind::SyscallExit
    ));
}

#[test]
fn condition_and_printf() {
    insta::assert_snapshot!(listing(
        "global on, n\nprobe timer.ms(100) if (on) { n += 2; printf(\"n=%d\\n\", n) }\nprobe kernel.trace(\"sched:sched_switch\") { on = !on }",
        ProgKind::PerfEvent
    ));
}

#[test]
fn loop_with_break() {
    insta::assert_snapshot!(listing(
        "global s\nprobe timer.ms(10) { for (i = 0; i < 20; i++) { if (i == 15) break; s += i * 3 } }",
        ProgKind::PerfEvent
    ));
}

#[test]
fn return_probe_with_entry_value() {
    insta::assert_snapshot!(listing(
        "global d\nprobe process(\"/bin/true\").function(\"main\").return { d = returnval() - @entry(int_arg(1)) }",
        ProgKind::Uretprobe
    ));
}

#[test]
fn more_functions_than_the_kernel_loads_is_a_clear_error() {
    // Each loop is a `bpf_loop` callback function; the kernel loads at most 256 functions in
    // one program ("too many subprograms"), so otf says so before loading.
    let loops = "while (i < 1) i++\n".repeat(300);
    let src = format!("global i\nprobe kernel.trace(\"sched:sched_switch\") {{\n{loops}}}");
    let err = generate(
        &image_of(&src),
        ProgKind::Tracepoint,
        &KernelInfo::default(),
    )
    .expect_err("301 functions");
    assert!(matches!(err, otf_codegen::Error::TooManyFunctions(n) if n > otf_codegen::MAX_FUNCS));
    assert!(
        err.to_string().contains("the kernel loads at most 256"),
        "{err}"
    );
    let ok = "while (i < 1) i++\n".repeat(200);
    let src = format!("global i\nprobe kernel.trace(\"sched:sched_switch\") {{\n{ok}}}");
    generate(
        &image_of(&src),
        ProgKind::Tracepoint,
        &KernelInfo::default(),
    )
    .expect("201 functions");
}

#[test]
fn every_kind_generates_for_a_mixed_script() {
    let src = "global n, m\nfunction f(x) { while (x > 0) { x--; m++ } return m }\n\
               probe timer.s(1) if (n < 10) { n += f(3) / (n + 1); if (randint(10) > 20) exit() }\n\
               probe kernel.trace(\"syscalls:sys_enter_read\") { printf(\"%d %d %d\\n\", pid(), ppid(), cpu()) }";
    let img = image_of(src);
    for &k in ProgKind::ALL {
        let p = generate(&img, k, &KernelInfo::default()).expect("generates");
        // Every map reference is a 64-bit load, every function has a func_info record.
        for &(at, _) in &p.map_refs {
            assert!(p.insns[at].is_ld_imm64(), "{k:?} at {at}");
        }
        assert_eq!(p.func_info.len(), p.func_starts.len());
        assert_eq!(p.func_starts[0], 0);
    }
}

#[test]
fn array_increment_and_aggregate() {
    insta::assert_snapshot!(listing(
        "global calls, lat\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { calls[pid()]++; lat <<< tid() }\nprobe end { print(@hist_log(lat)) }",
        ProgKind::Tracepoint
    ));
}

#[test]
fn a_timer_body_with_a_user_space_sprintf_is_handed_to_user_space() {
    // The body is not lowered: the hit sends a REC_DEFER record (kind 5) and counts a body.
    let text = listing(
        "global a\nprobe begin { a[1] = 1 }\n\
         probe timer.s(5) { x = sprintf(\"é%c\", 65); printf(\"%s\\n\", x); delete a }",
        ProgKind::PerfEvent,
    );
    assert!(text.contains("= 5\n"), "{text}");
    assert!(
        !text.contains("map[global0]"),
        "the deferred body touches no array: {text}"
    );
}

#[test]
fn foreach_in_a_tracepoint_body() {
    // A selection scan per step: bpf_for_each_map_elem (164) with a callback comparing the
    // element with the last one given and the best one found.
    let text = listing(
        "global c\nprobe kernel.trace(\"sched:sched_switch\") { c[pid()]++; foreach (v = [p] in c- limit 3) printf(\"%d %d\\n\", p, v) }",
        ProgKind::Tracepoint,
    );
    assert!(text.contains("call bpf_for_each_map_elem#164"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn string_key_counter() {
    insta::assert_snapshot!(listing(
        "global counts\nprobe kernel.trace(\"raw_syscalls:sys_enter\") { counts[execname()]++ }",
        ProgKind::Tracepoint
    ));
}

#[test]
fn string_compare_and_printf() {
    insta::assert_snapshot!(listing(
        "global who\nprobe kernel.trace(\"sched:sched_switch\") { s = execname(); if (s < \"m\" && s != who) { who = s; printf(\"%s %d\\n\", s, 1) } }",
        ProgKind::Tracepoint
    ));
}

#[test]
fn user_string_with_a_message_and_a_length() {
    // `n` known at compile time (the size is a constant) and not (clamped at run time);
    // the message is kept until the read succeeds.
    insta::assert_snapshot!(listing(
        "global p, n\nprobe process(\"/bin/true\").function(\"main\") { printf(\"%s %s\\n\", user_string_n(pointer_arg(1), 4), user_string_n2(p, n, \"bad\")) }",
        ProgKind::Uprobe
    ));
}

#[test]
fn aggregate_with_variance() {
    // `@variance(lat, 3)` read in `end`: `<<<` keeps SystemTap's avg_s and _M2 (Welford's
    // step with a division of magnitudes) after count, sum, min and max.
    insta::assert_snapshot!(listing(
        "global lat\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { lat <<< tid() }\nprobe end { println(@variance(lat, 3)) }",
        ProgKind::Tracepoint
    ));
}

#[test]
fn sprintf_as_an_array_key() {
    // `bpf_snprintf` (call 165) into the key buffer with the format in the formats map,
    // the integer and the pointer to the string slot in the arguments array after it.
    let text = listing(
        "global a\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { a[sprintf(\"%s(%d)\", execname(), pid())]++ }",
        ProgKind::Tracepoint,
    );
    assert!(text.contains("call bpf_snprintf#165"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn isinstr_substr_and_strtol() {
    // `isinstr`: the two lengths, then `bpf_loop` (call 181) over the positions where the
    // needle fits, each a `bpf_probe_read_kernel` (call 113) of its length and 16 word
    // compares; `substr`: the clamped range read into the zeroed key buffer and copied back;
    // `strtol` (the kernel's `simple_strtol`): the sign and prefix, a loop over the digits.
    let text = listing(
        "probe kernel.trace(\"sched:sched_process_exec\") { if (isinstr(execname(), \"sh\")) printf(\"%s %d\\n\", substr(execname(), 0, 2), strtol(\"ff\", 16)) }",
        ProgKind::Tracepoint,
    );
    // The handler's loop over the chain, one for isinstr, one for strtol.
    assert_eq!(text.matches("call bpf_loop#181").count(), 3, "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn aggregate_reads_and_whole_deletes() {
    // Each read loops over the CPUs' copies (`bpf_loop`, a callback calling
    // `bpf_map_lookup_percpu_elem` until it finds none) into `Frame::agg`; `@min` and
    // `@avg` of no values are "empty aggregate" (error kind 8). `delete a` walks the hash
    // with `bpf_for_each_map_elem` and a callback that deletes; `delete s` zeroes each CPU's
    // copy of the scalar aggregate from the zero map.
    let text = listing(
        "global s, t, a\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { s <<< 1; t[pid()] <<< 2; a[1] = 1\n\
         if (@min(t[pid()]) > 1) delete a; printf(\"%d %d\\n\", @count(s), @avg(s)); delete s }",
        ProgKind::Tracepoint,
    );
    assert!(
        text.contains("call bpf_map_lookup_percpu_elem#195"),
        "{text}"
    );
    assert!(text.contains("call bpf_for_each_map_elem#164"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn every_lowered_string_function_generates_in_every_kind() {
    // Inside a loop too (a string function's `bpf_loop` callback under the loop's own).
    let src = "global n, t\nprobe kernel.trace(\"sched:sched_switch\") {\n  s = execname()\n  \
               for (i = 0; i < 3; i++) { n += isinstr(s, \"a\") + stringat(s, i) + strtol(s, 0) + strlen(s); \
               t = substr(s, i, 2) . text_str(s) . str_replace(s, \"a\", \"b\") . tokenize(s, \"-\") }\n}";
    let img = image_of(src);
    for &k in ProgKind::ALL {
        let p = generate(&img, k, &KernelInfo::default()).expect("generates");
        assert_eq!(p.func_info.len(), p.func_starts.len(), "{k:?}");
    }
    let text = listing(src, ProgKind::Tracepoint);
    // The handler's loop, the lock's spin, the `for` loop, and the string functions' own
    // inside it: isinstr, strtol, text_str, str_replace, tokenize (two).
    assert_eq!(text.matches("call bpf_loop#181").count(), 9, "{text}");
    assert_eq!(text.matches("; func[").count(), 10, "{text}");
}

#[test]
fn variance_read_in_a_kernel_body() {
    // Each CPU's copy adds count·avg_s², count·avg_s and (count − 1)·(_M2 / (count − 1)); the
    // result is SystemTap's `_stp_stat_get` arithmetic on those sums.
    insta::assert_snapshot!(listing(
        "global v\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { v <<< pid(); println(@variance(v, 2)) }",
        ProgKind::Tracepoint
    ));
}

#[test]
fn a_timer_body_with_aggregate_reads_and_delete_runs_in_the_kernel() {
    // Reading an aggregate and `delete` of a whole array no longer need user space: the
    // timer body is lowered, not deferred.
    let img = image_of(
        "global s, a\nprobe timer.ms(5) { s <<< 1; a[@count(s)] = 1; if (@count(s) > 3) { delete a; delete s } }",
    );
    assert!(img.probes.iter().all(|p| !p.deferred));
    let p = generate(&img, ProgKind::PerfEvent, &KernelInfo::default()).expect("generates");
    let text = dump(&p, &|_| String::new());
    assert!(
        text.contains("call bpf_map_lookup_percpu_elem#195"),
        "{text}"
    );
    assert!(text.contains("call bpf_for_each_map_elem#164"), "{text}");
}

#[test]
fn histogram_printed_in_a_kernel_body() {
    // The record's 13 words after the key (`a[pid()]`'s one integer argument) are zeroed,
    // then a `bpf_loop` over the CPUs adds each copy's linear buckets (from byte 32 of the
    // value) to them; the record is sent with 14 integer words.
    let text = listing(
        "global a\nprobe kernel.trace(\"syscalls:sys_enter_getppid\") { a[pid()] <<< 5\n\
         print(@hist_linear(a[pid()], 0, 100, 10)) }",
        ProgKind::Tracepoint,
    );
    assert!(
        text.contains("call bpf_map_lookup_percpu_elem#195"),
        "{text}"
    );
    insta::assert_snapshot!(text);
}
