//! SystemTap's text layout of `print(@hist_log(x))` and `print(@hist_linear(x, lo, hi, step))`
//! (its runtime's `_stp_stat_print_histogram`): a `value |---…--- count` header, one row per
//! bucket from two empty buckets before the first non-empty one to two after the last, bars of
//! `@` scaled to 50 columns, runs of empty rows elided as `~`, and a blank line at the end.

use crate::bytecode::{Format, HistSpec, Piece, HIST_LOG_BUCKET0, HIST_LOG_BUCKETS};
use crate::sema::GlobalInfo;
use crate::store::{log_bucket_value, Aggregate, Value};

/// The width of the bars.
const HIST_WIDTH: i64 = 50;
/// Empty buckets kept on each side of a non-empty one; longer runs become `~`.
const HIST_ELISION: usize = 2;

/// The number of characters of `v` in decimal, sign included.
fn needed_space(v: i64) -> usize {
    v.to_string().len()
}

/// Render a histogram: `linear` gives `@hist_linear`'s `(lo, hi, step)`, `None` is
/// `@hist_log`. The buckets are `agg.log` or `agg.linear`.
pub fn render(agg: &Aggregate, linear: Option<(i64, i64, i64)>) -> String {
    let buckets: &[i64] = if linear.is_some() {
        &agg.linear
    } else {
        &agg.log
    };
    let n = buckets.len();
    let mut out = String::new();
    if n == 0 {
        return out;
    }
    let mut low: Option<usize> = None;
    let mut high = 0usize;
    let mut valmax = 0i64;
    for (i, &c) in buckets.iter().enumerate() {
        if c > 0 {
            low.get_or_insert(i);
            high = i;
        }
        valmax = valmax.max(c);
    }
    // SystemTap starts from bucket 0 when everything is empty (low_bucket = -1 ⇒ margins).
    let mut low = low.map_or(-1i64, |l| l as i64);
    let mut high = high as i64;
    for _ in 0..2 {
        if linear.is_none() {
            if low != HIST_LOG_BUCKET0 as i64 && low > 0 {
                low -= 1;
            }
        } else if low > 0 {
            low -= 1;
        }
        if high < n as i64 - 1 {
            high += 1;
        }
    }
    let (mut under, mut over) = (0usize, 0usize);
    if linear.is_some() {
        if low == 0 && buckets[0] == 0 {
            low += 1;
        }
        if high == n as i64 - 1 && buckets[high as usize] == 0 {
            high -= 1;
        }
        if low == 0 {
            under = 1;
        }
        if high == n as i64 - 1 {
            over = 1;
        }
    }
    let low = low.max(0) as usize;
    let high = high.max(0) as usize;
    let scale = if valmax <= HIST_WIDTH {
        1
    } else {
        (valmax + HIST_WIDTH - 1) / HIST_WIDTH
    };
    let cnt_space = needed_space(valmax);
    let value_of = |i: usize| -> (i64, &'static str) {
        match linear {
            Some((lo, _, step)) => {
                if i == 0 {
                    (lo, "<")
                } else if i == n - 1 {
                    (lo + (i as i64 - 2) * step, ">")
                } else {
                    (lo + (i as i64 - 1) * step, "")
                }
            }
            None => (log_bucket_value(i), ""),
        }
    };
    let val_space = match linear {
        Some((lo, _, step)) => {
            (needed_space(lo) + under).max(needed_space(lo + step * high as i64) + over)
        }
        None => needed_space(log_bucket_value(high)).max(needed_space(log_bucket_value(low))),
    }
    .max(5);
    out.push_str(&format!("{:>val_space$} |", "value"));
    out.push_str(&"-".repeat(HIST_WIDTH as usize));
    out.push_str(" count\n");
    let mut eliding = false;
    for i in low..=high {
        let lo_k = i.saturating_sub(HIST_ELISION).max(low);
        let hi_k = (i + HIST_ELISION).min(high);
        if (lo_k..=hi_k).all(|k| buckets[k] == 0) {
            eliding = true;
            continue;
        }
        if eliding {
            out.push_str(&format!("{:>val_space$} ~\n", ""));
            eliding = false;
        }
        let (val, prefix) = value_of(i);
        let pad = val_space.saturating_sub(needed_space(val));
        out.push_str(&format!("{prefix:>pad$}{val} |"));
        let v = buckets[i] / scale;
        out.push_str(&"@".repeat(v as usize));
        let w = (HIST_WIDTH - v + 1) as usize + cnt_space;
        out.push_str(&format!("{:>w$}\n", buckets[i]));
    }
    out.push('\n');
    out
}

/// The aggregate whose buckets (`@hist_linear`'s when `linear`, else `@hist_log`'s) are
/// the words a record carries ([`crate::memdump::HistSnap`]), for [`render`]: an aggregate
/// of `spec`'s layout with only those buckets set.
pub fn aggregate_of_words(spec: &HistSpec, linear: bool, words: &[i64]) -> Aggregate {
    let mut a = Aggregate::new(spec);
    let b = if linear { &mut a.linear } else { &mut a.log };
    for (d, &w) in b.iter_mut().zip(words) {
        *d = w;
    }
    a
}

/// The callback of [`render_record`]: `(global, linear, keys, words)` gives the text of a
/// histogram, `words` its buckets when the record carries them.
pub type HistFn<'a> = dyn FnMut(u32, bool, &[Value], Option<&[i64]>) -> String + 'a;

/// Render an output record whose format may hold histograms: `hist(global, linear, keys,
/// words)` renders each [`Piece::Hist`] (its keys rebuilt from the record's integer and
/// string arguments, in key order, with `globals`' key types; `words` the buckets the
/// record carries, if it does); the other pieces as
/// [`crate::format::render_strs`] does. Bytes that are not UTF-8 (`%b`, `%m`, `%c`) are
/// replaced by U+FFFD; [`render_record_bytes`] keeps them.
#[allow(clippy::too_many_arguments)]
pub fn render_record(
    fmt: &Format,
    args: &[i64],
    strs: &[String],
    globals: &[GlobalInfo],
    execname: &str,
    pp: &str,
    probefunc: &str,
    hist: &mut HistFn<'_>,
) -> String {
    let b = render_record_bytes(fmt, args, strs, globals, execname, pp, probefunc, hist);
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`render_record`] as the bytes SystemTap writes.
#[allow(clippy::too_many_arguments)]
pub fn render_record_bytes(
    fmt: &Format,
    args: &[i64],
    strs: &[String],
    globals: &[GlobalInfo],
    execname: &str,
    pp: &str,
    probefunc: &str,
    hist: &mut HistFn<'_>,
) -> Vec<u8> {
    let mut s = Vec::new();
    let mut run: Vec<Piece> = Vec::new();
    let flush = |run: &mut Vec<Piece>, s: &mut Vec<u8>| {
        if !run.is_empty() {
            let f = Format {
                pieces: std::mem::take(run),
                nargs: fmt.nargs,
            };
            s.extend(crate::format::render_bytes_strs(
                &f, args, strs, execname, pp, probefunc,
            ));
        }
    };
    for p in &fmt.pieces {
        match p {
            Piece::Hist {
                global,
                linear,
                arg,
                sarg,
                nkeys,
                at,
            } => {
                flush(&mut run, &mut s);
                let str_keys = globals.get(*global as usize).map_or(0, |g| g.str_keys);
                let (mut i, mut j) = (*arg, *sarg);
                let keys: Vec<Value> = (0..*nkeys)
                    .map(|k| {
                        if str_keys & (1 << k) != 0 {
                            j += 1;
                            Value::Str(strs.get(j - 1).cloned().unwrap_or_default())
                        } else {
                            i += 1;
                            Value::Int(args.get(i - 1).copied().unwrap_or(0))
                        }
                    })
                    .collect();
                let words = at.and_then(|at| {
                    let spec = globals.get(*global as usize)?.hist;
                    let n = if *linear {
                        spec.linear_buckets()
                    } else {
                        HIST_LOG_BUCKETS
                    };
                    args.get(at..at + n)
                });
                s.extend_from_slice(hist(*global, *linear, &keys, words).as_bytes());
            }
            other => run.push(other.clone()),
        }
    }
    flush(&mut run, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(values: &[i64], hist: HistSpec) -> Aggregate {
        let mut a = Aggregate::new(&hist);
        for &v in values {
            a.add(v, &hist);
        }
        a
    }

    #[test]
    fn log_histogram_layout() {
        // Values 1, 2, 2, 3, 8: buckets 1 (1), 2 (3), 8 (1); rows from 0 (two below 1, not
        // negative) to 32 (two above 8), bars unscaled, the 4 row kept (next to 2 and 8).
        let h = HistSpec {
            log: true,
            linear: None,
            variance: None,
        };
        let text = render(&agg(&[1, 2, 2, 3, 8], h), None);
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
        assert_eq!(text, want);
    }

    #[test]
    fn log_histogram_elides_long_empty_runs_and_scales() {
        let h = HistSpec {
            log: true,
            linear: None,
            variance: None,
        };
        let mut vals = vec![1; 100];
        vals.push(1 << 20);
        let text = render(&agg(&vals, h), None);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].trim_start(),
            "value |-------------------------------------------------- count"
        );
        // 100 in one bucket: scale = 2, so 50 `@`.
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("|{} 100", "@".repeat(50)))),
            "{text}"
        );
        assert!(lines.iter().any(|l| l.trim() == "~"), "{text}");
        assert!(text.ends_with("\n\n"));
    }

    #[test]
    fn linear_histogram_layout_with_underflow() {
        // @hist_linear(x, 0, 30, 10): buckets <0, 0, 10, 20, >=30 (plus one more: 30/10+3 = 6).
        let h = HistSpec {
            log: false,
            linear: Some((0, 30, 10)),
            variance: None,
        };
        let text = render(&agg(&[-5, 0, 15, 15], h), Some((0, 30, 10)));
        let want = "\
value |-------------------------------------------------- count
   <0 |@                                                  1
    0 |@                                                  1
   10 |@@                                                 2
   20 |                                                   0
   30 |                                                   0

";
        assert_eq!(text, want);
    }
}
