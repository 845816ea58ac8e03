//! Printing histograms (`print(@hist_log(s))`, `println(@hist_linear(a[k], lo, hi, step))`)
//! in kernel probe bodies, run in the kernel (`BPF_PROG_TEST_RUN`) and by the reference VM
//! on the same hits: the kernel copies the buckets of every CPU's copy into the output
//! record when the print runs, and the text rendered from them must be the VM's, byte for
//! byte (root).

mod common;

use otf_bpf::Event;
use otf_script::compile::CompiledScript;
use otf_script::hist;
use otf_script::vm::OutRecord;

/// Render a record as `otf run` does: the histograms from the buckets the record carries.
fn render(c: &CompiledScript, r: &OutRecord) -> String {
    let mut h = |g: u32, linear: bool, _: &[otf_script::store::Value], words: Option<&[i64]>| {
        let info = &c.globals[g as usize];
        let words = words.expect("the record carries the buckets");
        let agg = hist::aggregate_of_words(&info.hist, linear, words);
        hist::render(&agg, info.hist.linear.filter(|_| linear))
    };
    hist::render_record(
        &c.formats[r.fmt as usize],
        &r.args,
        &r.strs,
        &c.globals,
        "",
        "",
        "",
        &mut h,
    )
}

/// Run `src`'s unit 0 once on each CPU of `cpus` in the kernel (the first when the others
/// are not available), and as many times in the reference VM over one store; the text each
/// printed. `None` when the kernel cannot be tested.
fn run_both(src: &str, cpus: &[usize]) -> Option<(String, String)> {
    if !common::can_test_run_bpf("hist_print") {
        return None;
    }
    let (c, image) = common::compile_kernel_units(
        src,
        |_| "kernel.trace(\"sched:sched_switch\")".into(),
        |_| String::new(),
    );
    let rt = common::load_test_entry(&image).unwrap_or_else(|e| panic!("{src}: {e}"));
    let mut events = rt.events().expect("events");
    let allowed = allowed_cpus();
    let mut kernel = String::new();
    let mut hits = 0;
    for &cpu in cpus {
        if !allowed.contains(&cpu) {
            continue;
        }
        pin(cpu);
        rt.test_run_hit(otf_bpf::cookie(0)).expect("hit");
        hits += 1;
        for e in events.drain().expect("drain") {
            match e {
                Event::Output {
                    fmt, args, strs, ..
                } => kernel.push_str(&render(&c, &OutRecord { fmt, args, strs })),
                Event::Error { kind, pc, .. } => panic!("{src}: {kind:?} at {pc}"),
                _ => {}
            }
        }
    }
    assert!(hits > 0, "no CPU of {cpus:?} is allowed");
    let mut store = otf_script::store::MemStore::new(&c.globals);
    let mut vm = String::new();
    let start = image.probes[0].body.expect("body") as usize;
    for _ in 0..hits {
        let mut hit = otf_script::vm::FixedHit {
            strings: c.strings.clone(),
            formats: c.formats.clone(),
            ..Default::default()
        };
        let mut out = Vec::new();
        otf_script::vm::run(&c.code, start, &mut store, &mut hit, &mut |r| out.push(r))
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        for r in &out {
            vm.push_str(&render(&c, r));
        }
    }
    Some((kernel, vm))
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; the kernel writes at most its size.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set),
            0
        );
        set
    };
    // SAFETY: `c` < CPU_SETSIZE.
    (0..64)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

/// Run this thread on `cpu` only.
fn pin(cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; `cpu` < CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < 64 < CPU_SETSIZE, so CPU_SET writes within `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size given; 0 is this thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        r,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// Both outputs, which must agree; the kernel's.
fn agree(src: &str, cpus: &[usize]) -> Option<String> {
    let (kernel, vm) = run_both(src, cpus)?;
    assert_eq!(kernel, vm, "{src}");
    Some(kernel)
}

#[test]
fn a_log_histogram_prints_as_systemtap_does() {
    let src = "global s
        probe kernel.trace(\"sched:sched_switch\") {
          s <<< 1; s <<< 2; s <<< 2; s <<< 3; s <<< 8; print(@hist_log(s)) }";
    let Some(out) = agree(src, &[0]) else { return };
    let want = "\
value |-------------------------------------------------- count
    0 |                                                   0
    1 |@                                                  1
    2 |@@@                                                3
    4 |                                                   0
    8 |@                                                  1
   16 |                                                   0
   32 |                                                   0

";
    assert_eq!(out, want);
}

#[test]
fn negative_values_zero_and_scaled_bars() {
    let src = "global s
        probe kernel.trace(\"sched:sched_switch\") {
          s <<< -5; s <<< 0; s <<< -1000; s <<< 7; s <<< -1
          for (i = 0; i < 120; i++) s <<< 64
          println(@hist_log(s)) }";
    let Some(out) = agree(src, &[0]) else { return };
    assert!(out.contains("-1024 |"), "{out}");
    assert!(out.contains("~\n"), "{out}");
    assert!(out.ends_with("\n\n\n"), "{out}");
}

#[test]
fn linear_histograms_of_elements_with_integer_and_string_keys() {
    let src = "global a, b
        probe kernel.trace(\"sched:sched_switch\") {
          a[1, 2] <<< 15; a[1, 2] <<< -3; a[1, 2] <<< 100; a[1, 2] <<< 49; a[2, 2] <<< 5
          print(@hist_linear(a[1, 2], 0, 50, 10))
          k = \"ab\"
          b[k, 3] <<< 7; b[k, 3] <<< 7; b[\"zz\", 3] <<< 1000; b[k, 4] <<< 1
          print(\"b:\", @hist_linear(b[k, 3], 0, 20, 2), 42)
          println(@hist_linear(b[\"zz\", 3], 0, 20, 2)) }";
    let Some(out) = agree(src, &[0]) else { return };
    assert!(out.contains("   <0 |@"), "{out}");
    assert!(out.contains("  >50 |@"), "{out}");
    assert!(out.contains("b:value"), "{out}");
}

#[test]
fn empty_aggregates_and_a_delete_after_the_print() {
    let src = "global s, a
        probe kernel.trace(\"sched:sched_switch\") {
          print(@hist_log(s)); print(@hist_linear(a[7], 0, 10, 1))
          s <<< 4; a[7] <<< 3; print(@hist_log(s)); delete s; delete a
          s <<< 100; print(@hist_log(s)); print(@hist_linear(a[7], 0, 10, 1)) }";
    let Some(out) = agree(src, &[0]) else { return };
    assert_eq!(out.matches("value |").count(), 5, "{out}");
    assert!(out.contains("   4 |@ "), "{out}");
    assert!(!out.contains("   4 |@@"), "{out}");
}

#[test]
fn every_cpus_copy_is_counted() {
    let src = "global s, n
        probe kernel.trace(\"sched:sched_switch\") {
          n++; s <<< n * 10; a = 1; print(@hist_linear(s, 0, 100, 10)) }";
    let Some(out) = agree(src, &[0, 1]) else {
        return;
    };
    if allowed_cpus().len() > 1 {
        assert!(
            out.contains("   10 |@ ") && out.contains("   20 |@ "),
            "{out}"
        );
    }
}

#[test]
fn histograms_of_each_element_in_a_foreach() {
    let src = "global a
        probe kernel.trace(\"sched:sched_switch\") {
          a[1] <<< 1; a[2] <<< 5; a[2] <<< 6; a[3] <<< -7
          foreach (k in a+) { println(k); print(@hist_log(a[k])) }
          delete a }";
    let Some(out) = agree(src, &[0]) else { return };
    assert_eq!(out.matches("value |").count(), 3, "{out}");
    assert!(out.starts_with("1\n"), "{out}");
}
