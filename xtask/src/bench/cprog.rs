//! Small C workloads built with gcc at bench time: their sources, how they are compiled, and a
//! check of the first instruction of the functions that the benchmarks probe.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util;

/// Shared by every program: a monotonic clock in nanoseconds and line-buffered output.
const PRELUDE: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>
static long long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}
volatile int sink;
__attribute__((noinline)) void flip_on(void) { __asm__ volatile(""); }
__attribute__((noinline)) void flip_off(void) { __asm__ volatile(""); }
/* The second flipper: timer:itimer_state, a timer-interrupt tracepoint (notifies at once). */
static void unsafe_flip(void) {
    struct itimerval v = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &v, NULL);
}
"#;

/// `loop N`: calls `f` N times and prints the nanoseconds per call.
pub const LOOP: &str = r#"
__attribute__((noinline)) int f(int x) { return x + 1; }
int main(int argc, char **argv) {
    long long n = argc > 1 ? atoll(argv[1]) : 1000000;
    long long t = now();
    for (long long i = 0; i < n; i++) sink = f(sink);
    printf("%.3f\n", (double)(now() - t) / n);
    return 0;
}
"#;

/// `flip CYCLES`: per cycle and path (immediate: a uprobe on flip_on/flip_off; timer: the
/// itimer_state tracepoint) flips `on`, then times each call of `work` (probed `if (on)`, an
/// endbr64 function: ~10 us per call when armed) and prints when hits start or stop.
pub const FLIP: &str = r#"
#define SLOW 3000 /* ns: an armed probe on an endbr64 function costs ~10 us per call */
__attribute__((noinline)) int work(int x) { return x + 1; }
/* ns from t0 to the first of two consecutive slow calls; -1 on timeout */
static long long wait_on(long long t0) {
    long long prev = -1;
    for (;;) {
        long long a = now(); sink = work(sink); long long b = now();
        if (b - a > SLOW) { if (prev >= 0) return prev - t0; prev = a; } else prev = -1;
        if (b - t0 > 3000000000LL) return -1;
    }
}
/* ns from t0 to the end of the last two consecutive slow calls once quiet for 40 ms */
static long long wait_off(long long t0) {
    long long last = t0; int prev = 0;
    for (;;) {
        long long a = now(); sink = work(sink); long long b = now();
        int slow = b - a > SLOW;
        if (slow && prev) last = b;
        prev = slow;
        if (b - last > 40000000LL) return last - t0;
        if (b - t0 > 3000000000LL) return -1;
    }
}
int main(int argc, char **argv) {
    int cycles = argc > 1 ? atoi(argv[1]) : 20;
    setvbuf(stdout, NULL, _IOLBF, 0);
    srand(getpid());
    usleep(300000);
    for (int i = 0; i < cycles; i++) {
        for (int path = 0; path < 2; path++) {
            const char *name = path ? "timer" : "immediate";
            long long t0 = now();
            if (path) unsafe_flip(); else flip_on();
            printf("otfbench flip %s on %lld\n", name, wait_on(t0));
            /* random pauses: flips must not phase-lock with the 100 ms background timer */
            usleep(150000 + rand() % 100000);
            t0 = now();
            if (path) unsafe_flip(); else flip_off();
            printf("otfbench flip %s off %lld\n", name, wait_off(t0));
            usleep(200000 + rand() % 100000);
        }
    }
    return 0;
}
"#;

/// `refresh CYCLES`: like [`FLIP`] over `bench_fn_0..bench_fn_{N-1}` (push %rbp functions,
/// ~0.6 us per call when armed), timing each call of a round over all of them. Prints the flip
/// time (CLOCK_MONOTONIC) and when a round was first fully armed (on) or fully disarmed (off).
pub fn refresh_source(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "__attribute__((noinline)) int bench_fn_{i}(int x) {{ return x + {i}; }}\n"
        ));
    }
    s.push_str("typedef int (*fn_t)(int);\nstatic fn_t fns[] = {");
    for i in 0..n {
        s.push_str(&format!("bench_fn_{i},"));
    }
    s.push_str("};\n");
    s.push_str(&format!("#define NFN {n}\n"));
    s.push_str(
        r#"
#define SLOW 250 /* ns: an armed probe on a push %rbp function costs ~600 ns per call */
static int round_slow(void) {
    int slow = 0;
    for (int i = 0; i < NFN; i++) {
        long long a = now(); sink = fns[i](sink); long long b = now();
        slow += b - a > SLOW;
    }
    return slow;
}
/* ns from t0 to the end of the first round where (on) nearly all or (off) nearly no call was slow */
static long long wait_round(long long t0, int on) {
    for (;;) {
        int s = round_slow();
        long long b = now();
        if (on ? s >= NFN - NFN / 100 : s <= NFN / 100) return b - t0;
        if (b - t0 > 5000000000LL) return -1;
    }
}
int main(int argc, char **argv) {
    int cycles = argc > 1 ? atoi(argv[1]) : 5;
    setvbuf(stdout, NULL, _IOLBF, 0);
    usleep(300000);
    for (int i = 0; i < cycles; i++) {
        for (int on = 0; on < 2; on++) {
            long long t0 = now();
            if (on) flip_on(); else flip_off();
            long long d = wait_round(t0, on);
            usleep(1000000); /* let the refresh finish and print its decisions */
            printf("otfbench refresh %s %lld %lld\n", on ? "on" : "off", t0, d);
        }
    }
    return 0;
}
"#,
    );
    s
}

/// Where the programs are built.
pub fn dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("otf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
}

/// Removes the programs' directory unless `--keep` was given (then says where it is).
pub fn cleanup(ctx: &super::Ctx, dir: &Path) {
    if ctx.opts.keep {
        println!("(the C programs are kept in {})", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Compiles `body` (after [`PRELUDE`]) with `gcc -O0 -fcf-protection=<cf>` into `dir/name`.
pub fn build(dir: &Path, name: &str, body: &str, cf: &str) -> Result<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, format!("{PRELUDE}{body}"))
        .with_context(|| format!("cannot write {}", src.display()))?;
    util::output(
        Command::new("gcc")
            .args(["-O0", "-g0", &format!("-fcf-protection={cf}"), "-o"])
            .arg(&exe)
            .arg(&src),
    )
    .context("gcc failed (is gcc installed?)")?;
    Ok(exe)
}

/// The first instruction of `func` in `exe` as objdump prints it (e.g. `endbr64`, `push %rbp`).
pub fn first_insn(exe: &Path, func: &str) -> Result<String> {
    let out = util::output(
        Command::new("objdump")
            .arg("-d")
            .arg(format!("--disassemble={func}"))
            .arg(exe),
    )?;
    parse_first_insn(&out, func).with_context(|| format!("no code for {func} in {}", exe.display()))
}

/// The first instruction after the `<func>:` header of objdump's output, whitespace collapsed.
fn parse_first_insn(objdump: &str, func: &str) -> Option<String> {
    let header = format!("<{func}>:");
    let mut lines = objdump
        .lines()
        .skip_while(|l| !l.trim_end().ends_with(&header));
    lines.next()?;
    let line = lines.find(|l| l.contains(":\t"))?;
    let insn = line.split('\t').nth(2)?;
    Some(insn.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Fails unless `func` in `exe` starts with `want`.
pub fn check_first_insn(exe: &Path, func: &str, want: &str) -> Result<()> {
    let got = first_insn(exe, func)?;
    if got != want {
        bail!(
            "{func} in {} starts with `{got}`, not `{want}`",
            exe.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objdump() {
        let out = "\nprog:     file format elf64-x86-64\n\n\nDisassembly of section .text:\n\n\
                   0000000000001139 <f>:\n    1139:\tf3 0f 1e fa          \tendbr64\n    \
                   113d:\t55                   \tpush   %rbp\n";
        assert_eq!(parse_first_insn(out, "f").as_deref(), Some("endbr64"));
        let out2 = "0000000000001139 <f>:\n    1139:\t55                   \tpush   %rbp\n";
        assert_eq!(parse_first_insn(out2, "f").as_deref(), Some("push %rbp"));
        assert_eq!(parse_first_insn(out2, "g"), None);
    }

    #[test]
    fn refresh_source_has_every_function() {
        let s = refresh_source(3);
        assert!(s.contains("bench_fn_2(int x)"));
        assert!(s.contains("#define NFN 3"));
        assert!(!s.contains("bench_fn_3"));
    }
}
