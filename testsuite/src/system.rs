//! What the suite needs from the machine: privileges, kprobe detection, background load, the
//! uprobe target program, temporary directories, and `/proc` sampling.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether we run inside the test VM (`OTF_IN_VM=1`, set by `cargo xtask vm`).
pub fn in_vm() -> bool {
    std::env::var("OTF_IN_VM").is_ok_and(|v| v == "1")
}

/// Whether `gcc` can be run.
pub fn gcc_available() -> bool {
    Command::new("gcc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Check that this kernel can place a kprobe on `vfs_read`: the kprobe PMU must exist, the
/// symbol must be in `/proc/kallsyms`, and a (disabled) kprobe perf event on it must open.
/// `Err` explains what is missing.
pub fn kprobes_available() -> Result<(), String> {
    let pmu = "/sys/bus/event_source/devices/kprobe/type";
    let ty: u32 = fs::read_to_string(pmu)
        .map_err(|e| format!("{pmu}: {e} (kernel built without CONFIG_KPROBES / KPROBE_EVENTS)"))?
        .trim()
        .parse()
        .map_err(|e| format!("{pmu}: {e}"))?;
    let kallsyms =
        fs::read_to_string("/proc/kallsyms").map_err(|e| format!("/proc/kallsyms: {e}"))?;
    if !kallsyms
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("vfs_read"))
    {
        return Err("vfs_read is not in /proc/kallsyms".to_string());
    }
    // Opening the kprobe (without a BPF program) and closing it again proves that this kernel
    // lets us place one.
    let attr = otf_attach::perf::PerfAttr::probe(ty, 0, c"vfs_read", 0);
    otf_attach::perf::open(&attr, 0)
        .map_err(|e| format!("opening a kprobe on vfs_read failed: {e}"))?;
    Ok(())
}

static TEMP_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory, removed on drop (kept when `OTF_SUITE_KEEP_TMP=1`).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Create `/tmp/otf-suite-<pid>-<n>-<tag>`.
    pub fn new(tag: &str) -> io::Result<Self> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("otf-suite-{}-{n}-{tag}", std::process::id()));
        fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var("OTF_SUITE_KEEP_TMP").is_ok_and(|v| v == "1") {
            eprintln!("note: keeping {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A background process in its own process group, killed (the whole group) on drop.
#[derive(Debug)]
pub struct BackgroundProcess {
    child: Child,
    what: String,
}

impl BackgroundProcess {
    /// Spawn `cmd` in a new process group with stdio to /dev/null.
    pub fn spawn(mut cmd: Command, what: &str) -> io::Result<Self> {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {what}: {e}")))?;
        Ok(BackgroundProcess {
            child,
            what: what.to_string(),
        })
    }

    /// The `/bin/echo` loop that keeps tracepoints (`sched_process_fork`) and `vfs_read` firing.
    ///
    /// SystemTap's loop is `while [ true ]; do /bin/echo 1>/dev/null; done`. Here one fork+exec
    /// of `/bin/echo` takes ~4 ms, so a 10 ms window (`otf_timer_10ms`) saw no fork about one
    /// time in ten; four subshell forks per iteration bring the fork rate to ~1250/s while
    /// keeping the exec (and its `vfs_read`s) of the original.
    pub fn echo_loop() -> io::Result<Self> {
        Self::spawn(Self::echo_loop_command(false), "the /bin/echo loop")
    }

    /// [`Self::echo_loop`] with a second loop in the same process group that forks a subshell
    /// and reads `/proc/self/comm` (a `vfs_read`) without exec, for the VM's validated cases.
    ///
    /// Under emulation the exec of `/bin/echo` dominates: on a busy host, forks came in bursts
    /// of five with gaps of 180–380 ms, longer than what was left of a toggle window after its
    /// refresh; with the second loop the longest gap was 26–60 ms under the same load
    /// (`docs/testing.md`). It costs the VM a busy loop, so only cases that check what happens
    /// inside each window use it.
    pub fn steady_echo_loop() -> io::Result<Self> {
        Self::spawn(Self::echo_loop_command(true), "the /bin/echo loop")
    }

    /// The shell command of [`Self::echo_loop`]; `steady` adds the loop without exec.
    fn echo_loop_command(steady: bool) -> Command {
        const ECHO: &str = "while :; do /bin/echo x >/dev/null; (:); (:); (:); (:); done";
        const STEADY: &str = "while :; do (:); read -r _ </proc/self/comm; done & ";
        let mut cmd = Command::new("sh");
        cmd.arg("-c");
        if steady {
            cmd.arg(format!("{STEADY}{ECHO}"));
        } else {
            cmd.arg(ECHO);
        }
        cmd
    }

    /// The process id (also the process group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether it is still running (a background load that died makes a test meaningless).
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("{} exited early: {st}", self.what)),
            Err(e) => Err(format!("{}: {e}", self.what)),
        }
    }
}

impl Drop for BackgroundProcess {
    fn drop(&mut self) {
        // SAFETY: killpg on the group we created; errors (already gone) are harmless.
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The C program of SystemTap's `uprobes_onthefly.exp`.
pub const UPROBE_TARGET_C: &str = r#"
int foo(int i) {
   int j = i;
   return j+i*2;
}
int main(int argc, char **argv) {
   while (1) {
      argc = foo(argc);
   }
   return argc;
}
"#;

/// The file name of the uprobe target inside a case's working directory.
pub const UPROBE_TARGET_NAME: &str = "uprobes_onthefly.x";

/// Build the uprobe target with `gcc -g -O0` into `dir`; returns its path.
pub fn build_uprobe_target(dir: &Path) -> Result<PathBuf, String> {
    let out = dir.join(UPROBE_TARGET_NAME);
    let src = dir.join("uprobes_onthefly.c");
    fs::write(&src, UPROBE_TARGET_C).map_err(|e| format!("{}: {e}", src.display()))?;
    let res = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| format!("running gcc: {e}"))?;
    if !res.status.success() {
        return Err(format!(
            "gcc failed ({}):\n{}",
            res.status,
            String::from_utf8_lossy(&res.stderr)
        ));
    }
    Ok(out)
}

/// Number of open file descriptors of `pid`.
pub fn fd_count(pid: i32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// `VmRSS` of `pid`, in kB.
pub fn vm_rss_kb(pid: i32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS"))
}

/// Whether process `pid` exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// The pids of live (non-zombie) processes whose process group is `pgid`.
pub fn processes_in_group(pgid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest: state ppid pgrp ...
        if f.len() > 2 && f[0] != "Z" && f[2].parse() == Ok(pgid) {
            out.push(pid);
        }
    }
    out
}

/// Lines of a tracefs dynamic-event file (`uprobe_events`, `kprobe_events`); empty if absent.
pub fn tracefs_events(file: &str) -> Vec<String> {
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if let Ok(s) = fs::read_to_string(format!("{root}/{file}")) {
            return s.lines().map(str::to_string).collect();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_echo_loop_runs_both_loops_and_dies_with_its_group() {
        let bg = BackgroundProcess::spawn(BackgroundProcess::echo_loop_command(true), "loop")
            .expect("spawn sh");
        let pgid = bg.pid();
        // The group holds the shell and its background loop (plus short-lived children).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = 0;
        while std::time::Instant::now() < deadline {
            seen = seen.max(processes_in_group(pgid).len());
            if seen >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(seen >= 2, "expected two loops in group {pgid}, saw {seen}");
        drop(bg);
        // killpg reached the background loop too (it is not reparented and left running).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !processes_in_group(pgid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            processes_in_group(pgid),
            Vec::<i32>::new(),
            "loops left running"
        );
    }
}
