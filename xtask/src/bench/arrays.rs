//! `arrays`: what an array or a statistic costs per hit in a kernel probe body, otf against
//! bpftrace running the same bodies on the same tracepoint, in one run with the variants
//! alternating (body-cost's machinery: [`super::body::compare`]).

use anyhow::Result;

use super::body::{bt_program, compare, otf_script, Body};
use super::Ctx;

/// What otf's `@hist_log` prints: its header line, and a bar.
const OTF_HIST: &[&str] = &["value |---", " |@"];

/// The bodies: counting by process name (a string key) and by pid, and statistics.
fn bodies() -> Vec<Body> {
    vec![
        Body {
            what: "counts[execname()]++ (bpftrace @[comm] = count())",
            otf_name: "otf, counts[execname()]++",
            otf_args: &[],
            otf_script: otf_script("counts", "{ counts[execname()]++ }"),
            bt_name: "bpftrace, @[comm] = count()",
            bt_program: bt_program("", "", "{ @[comm] = count() }"),
            prints: false,
            otf_exit: &[],
            bt_exit: &[],
        },
        Body {
            what: "counts[pid()]++ (bpftrace @[pid] = count())",
            otf_name: "otf, counts[pid()]++",
            otf_args: &[],
            otf_script: otf_script("counts", "{ counts[pid()]++ }"),
            bt_name: "bpftrace, @[pid] = count()",
            bt_program: bt_program("", "", "{ @[pid] = count() }"),
            prints: false,
            otf_exit: &[],
            bt_exit: &[],
        },
        Body {
            what: "a[pid()] <<< 1, @hist_log(a[k]) at exit (bpftrace @h[pid] = hist(1))",
            otf_name: "otf, a[pid()] <<< 1",
            otf_args: &[],
            otf_script: format!(
                "{}probe end {{ foreach (k in a) print(@hist_log(a[k])) }}\n",
                otf_script("a", "{ a[pid()] <<< 1 }")
            ),
            bt_name: "bpftrace, @h[pid] = hist(1)",
            bt_program: bt_program("", "", "{ @h[pid] = hist(1) }"),
            prints: false,
            otf_exit: OTF_HIST,
            bt_exit: &["@h[", "|@"],
        },
        Body {
            what: "s <<< tid(), @hist_log(s) at exit (bpftrace @s = hist(tid))",
            otf_name: "otf, s <<< tid()",
            otf_args: &[],
            otf_script: format!(
                "{}probe end {{ print(@hist_log(s)) }}\n",
                otf_script("s", "{ s <<< tid() }")
            ),
            bt_name: "bpftrace, @s = hist(tid)",
            bt_program: bt_program("", "", "{ @s = hist(tid) }"),
            prints: false,
            otf_exit: OTF_HIST,
            bt_exit: &["@s:", "|@"],
        },
    ]
}

/// The arrays benchmark: getppid with no probe, then per body otf and bpftrace, alternating
/// within each repetition; a table of all variants, whether the histograms were printed at
/// exit, then the summary of added ns per call.
pub fn bench_arrays(ctx: &Ctx) -> Result<()> {
    compare(ctx, bodies())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_probe_the_tracepoint_and_print_histograms_at_exit() {
        for b in bodies() {
            let (s, p) = (&b.otf_script, &b.bt_program);
            assert!(s.contains(super::super::READY) && s.contains("sys_enter_getppid"));
            assert!(p.contains(super::super::READY) && p.contains("sys_enter_getppid"));
            assert!(!b.prints);
            // A histogram is printed at exit exactly when the body feeds a statistic, and
            // then both tools' exit outputs are checked.
            assert_eq!(s.contains("@hist_log"), s.contains("<<<"), "{s}");
            assert_eq!(b.otf_exit.is_empty(), !s.contains("@hist_log"));
            assert_eq!(b.bt_exit.is_empty(), !p.contains("hist("));
        }
    }
}
