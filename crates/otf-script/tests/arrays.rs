//! Arrays, `foreach`, `delete`, `in` and statistics, run by the reference VM over an
//! in-memory store: the semantics `begin` and `end` bodies have (SystemTap's, checked
//! against its documented behaviour).

use otf_script::compile_source;
use otf_script::diag::SourceFile;
use otf_script::hist;
use otf_script::store::{Aggregate, MemStore};
use otf_script::vm::{self, FixedHit, GlobalStore, VmError};

/// Runs every `begin` body of `src` in order; returns the output text and the first error.
fn run(src: &str) -> (String, Option<VmError>) {
    let file = SourceFile::new("t.stp", src);
    let c = compile_source(&file).unwrap_or_else(|d| panic!("{d:?}"));
    let s = &c.script;
    let mut store = MemStore::new(&s.globals);
    let mut out = String::new();
    for u in &s.units {
        let mut recs = Vec::new();
        let r = vm::run(
            &s.code,
            u.body.start as usize,
            &mut store,
            &mut FixedHit {
                strings: s.strings.clone(),
                ..FixedHit::default()
            },
            &mut |r| recs.push(r),
        );
        for rec in recs {
            let f = &s.formats[rec.fmt as usize];
            let mut h =
                |g: u32, linear: bool, keys: &[otf_script::store::Value], words: Option<&[i64]>| {
                    let info = &s.globals[g as usize];
                    let agg = match words {
                        Some(w) => hist::aggregate_of_words(&info.hist, linear, w),
                        None => store
                            .stat_get(g, keys)
                            .unwrap_or_else(|| Aggregate::new(&info.hist)),
                    };
                    hist::render(&agg, info.hist.linear.filter(|_| linear))
                };
            out.push_str(&hist::render_record(
                f, &rec.args, &rec.strs, &s.globals, "t", "begin", "", &mut h,
            ));
        }
        if let Err(e) = r {
            return (out, Some(e));
        }
    }
    (out, None)
}

#[test]
fn missing_elements_read_zero_and_in_tells_them_apart() {
    let (out, err) = run("global a
        probe begin { a[1] = 0; printf(\"%d %d %d %d\\n\", a[1], a[2], 1 in a, 2 in a) }");
    assert_eq!((out.as_str(), err), ("0 0 1 0\n", None));
}

#[test]
fn compound_assignment_and_increments_on_elements() {
    let (out, _) = run("global a, b
        probe begin {
          a[1, 2] += 5; a[1, 2] *= 3; x = a[1, 2]++; y = ++a[1, 2]; b[7]--
          printf(\"%d %d %d %d\\n\", a[1, 2], x, y, b[7])
        }");
    // 5 * 3 = 15; x gets 15 (post), then 16 → 17 with y = 17; b[7] = -1.
    assert_eq!(out, "17 15 17 -1\n");
}

#[test]
fn foreach_sorts_by_value_or_key_with_limit() {
    let src = "global a
        probe begin {
          a[3] = 10; a[1] = 30; a[2] = 20; a[4] = 5
          foreach (k in a-) printf(\"%d \", k); println(\"\")
          foreach (k+ in a limit 2) printf(\"%d \", k); println(\"\")
          foreach (v = [k] in a+ limit 3) printf(\"%d=%d \", k, v); println(\"\")
        }";
    let (out, _) = run(src);
    assert_eq!(out, "1 2 3 4 \n1 2 \n4=5 3=10 2=20 \n");
}

#[test]
fn delete_element_whole_array_and_scalar() {
    let (out, _) = run("global a, n
        probe begin {
          a[1] = 1; a[2] = 2; n = 5
          delete a[1]; printf(\"%d %d\\n\", 1 in a, 2 in a)
          delete a; delete n
          foreach (k in a) printf(\"left %d\\n\", k)
          printf(\"n=%d\\n\", n)
        }");
    assert_eq!(out, "0 1\nn=0\n");
}

#[test]
fn a_full_array_is_a_run_time_error_and_a_wrapping_one_drops_the_oldest() {
    let (_, err) = run("global a[2] probe begin { a[1] = 1; a[2] = 2; a[1] = 5; a[3] = 3 }");
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("Array overflow, check size limit (2)")
    );
    let (out, err) = run("global a%[2]
        probe begin { a[1] = 1; a[2] = 2; a[3] = 3; foreach (k+ in a) printf(\"%d \", k) }");
    assert_eq!((out.as_str(), err), ("2 3 ", None));
}

#[test]
fn statistics_and_empty_aggregates() {
    let (out, _) = run("global s, t
        probe begin {
          s <<< 3; s <<< -1; s <<< 10
          t[1] <<< 4; t[1] <<< 6; t[2] <<< 1
          printf(\"%d %d %d %d %d\\n\", @count(s), @sum(s), @min(s), @max(s), @avg(s))
          foreach ([k] in t-) printf(\"%d:%d:%d \", k, @count(t[k]), @avg(t[k]))
          printf(\"%d\\n\", @count(t[9]))
        }");
    assert_eq!(out, "3 12 -1 10 4\n1:2:5 2:1:1 0\n");
    let (_, err) = run("global s probe begin { s <<< 1; delete s; x = @avg(s) }");
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("empty aggregate")
    );
}

#[test]
fn variance_is_systemtaps_integer_variance() {
    // Worked by hand from SystemTap's __stp_stat_add and _stp_stat_get (one copy):
    // s: 2, 4, 4, 4, 5, 5, 7, 9 (shift 0): avg_s 2, 3, 3, 3, 3, 3, 3, 3 and M2 0, 2, 3, 4,
    //   8, 12, 28, 64; avg = 40/8 = 5, S1 = 8·(3−5)² = 32, S2 = 7·(64/7) = 63, 95/7 = 13
    //   (the sample variance is 4.57: the truncated running mean drifts).
    // t[1] (shift 4): the same values ×16: avg_s 32, 48, 53, 55, 60, 63, 70, 79 and M2 0,
    //   512, 688, 787, 1287, 1627, 3685, 8495; avg = 640/8 = 80, S1 = 8·(79−80)² = 8,
    //   S2 = 7·(8495/7) = 8491, 8499/7 = 1214, >> 8: 4.
    // u: one value: 0. v: -3, 3 → 18 (avg_s 0, M2 18).
    let (out, err) = run("global s, t, u, v
        probe begin {
          s <<< 2; s <<< 4; s <<< 4; s <<< 4; s <<< 5; s <<< 5; s <<< 7; s <<< 9
          t[1] <<< 2; t[1] <<< 4; t[1] <<< 4; t[1] <<< 4; t[1] <<< 5; t[1] <<< 5; t[1] <<< 7; t[1] <<< 9
          u <<< 1000; v <<< -3; v <<< 3
          printf(\"%d %d %d %d %d\\n\", @variance(s), @variance(t[1], 4), @variance(u), @variance(v), @count(s))
        }");
    assert_eq!((out.as_str(), err), ("13 4 0 18 8\n", None));
    let (_, err) = run("global s probe begin { s <<< 1; delete s; x = @variance(s) }");
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("empty aggregate")
    );
}

#[test]
fn histograms_print_in_systemtaps_layout() {
    let (out, err) = run("global s
        probe begin { s <<< 1; s <<< 2; s <<< 2; s <<< 3; s <<< 8; print(@hist_log(s)) }");
    assert_eq!(err, None);
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
    // The histogram as it is at the print: a `delete` after it, or values added after it,
    // do not show.
    let (out, err) = run("global s, a
        probe begin { s <<< 1; s <<< 2; s <<< 2; s <<< 3; s <<< 8; print(@hist_log(s)); delete s
          a[\"x\", 2] <<< 15; println(@hist_linear(a[\"x\", 2], 0, 30, 10)); a[\"x\", 2] <<< 25
          print(@hist_log(s)) }");
    assert_eq!(err, None);
    let linear = "\
value |-------------------------------------------------- count
    0 |                                                   0
   10 |@                                                  1
   20 |                                                   0
   30 |                                                   0

\n";
    // Empty: the rows from bucket 0 (the most negative values) are all elided.
    let empty =
        "               value |-------------------------------------------------- count\n\n";
    assert_eq!(out, format!("{want}{linear}{empty}"));
}

#[test]
fn globals_written_and_never_read_are_displayed_as_systemtap_does() {
    let src = "global n, m, r, a, s, t, e
        probe begin {
          n++; m = -1; r = 5; x = r
          a[1] = 2; a[2] = 7; a[3] = 2
          s <<< 4; s <<< 10
          t[1] <<< 1; t[2] <<< 5; t[2] <<< 7
          delete e
        }";
    let file = SourceFile::new("t.stp", src);
    let c = compile_source(&file).expect("compiles");
    let s = &c.script;
    let mut store = MemStore::new(&s.globals);
    vm::run(
        &s.code,
        s.units[0].body.start as usize,
        &mut store,
        &mut FixedHit::default(),
        &mut |_| {},
    )
    .expect("runs");
    // `++`, `=`, `<<<` and `delete` are pure writes; `r` is read. Arrays by decreasing value
    // (ties by key), aggregates by decreasing count.
    let want = "\
n=0x1
m=0xffffffffffffffff
a[2]=0x7
a[1]=0x2
a[3]=0x2
s @count=2 @min=4 @max=10 @sum=14 @avg=7
t[2] @count=2 @min=5 @max=7 @sum=12 @avg=6
t[1] @count=1 @min=1 @max=1 @sum=1 @avg=1
e=0x0
";
    assert_eq!(
        otf_script::display::unread_globals(&s.globals, &mut store),
        want
    );
}

#[test]
fn bad_uses_are_refused_at_their_place() {
    let check = |src: &str| {
        let file = SourceFile::new("t.stp", src);
        compile_source(&file).err().map(|d| {
            let (l, c) = file.line_col(d[0].span.lo);
            format!("{l}:{c} {}", d[0].message)
        })
    };
    assert_eq!(
        check("global a\nprobe begin { a[1] = 1; x = a[1, 2] }").as_deref(),
        Some("2:29 `a` is indexed with 2 keys here but with 1 at 2:15")
    );
    assert_eq!(
        check("global a\nprobe begin { a[1] = \"x\"; a[2] = 3 }").as_deref(),
        Some("2:27 type mismatch: `a[...]` is a long here but a string elsewhere")
    );
    assert!(
        check("global s\nprobe begin { s <<< 1; printf(\"%d\", @hist_log(s)) }")
            .is_some_and(|m| m.contains("histogram"))
    );
}
