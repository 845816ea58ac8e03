//! Finding and running the `otf` binary as a black box.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::glob::glob_match;

static OTF_BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `otf` binary under test: `$OTF_BIN` if set, else built once per test process with
/// `cargo build -p otf --message-format=json` (into the same `CARGO_TARGET_DIR` as the tests),
/// reading the executable's path from cargo's messages.
pub fn otf_bin() -> Result<PathBuf, String> {
    OTF_BIN
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("OTF_BIN") {
                let p = PathBuf::from(p);
                return if p.is_file() {
                    Ok(p)
                } else {
                    Err(format!("OTF_BIN={} is not a file", p.display()))
                };
            }
            build_otf()
        })
        .clone()
}

fn build_otf() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "otf",
        "--bin",
        "otf",
        "--message-format=json",
    ])
    .current_dir(workspace_root())
    .stdin(Stdio::null())
    .stderr(Stdio::inherit());
    if let Ok(profile) = std::env::var("OTF_SUITE_PROFILE") {
        cmd.args(["--profile", &profile]);
    }
    eprintln!("note: building otf with `cargo build -p otf` (set OTF_BIN to skip)");
    let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        // Show the compiler's errors (warnings stay quiet: they are not the suite's business).
        let mut errors = String::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["reason"] == "compiler-message" && v["message"]["level"] == "error" {
                errors.push_str(v["message"]["rendered"].as_str().unwrap_or_default());
            }
        }
        return Err(format!(
            "`cargo build -p otf` failed: {}\n{errors}",
            out.status
        ));
    }
    let mut exe = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact" && v["target"]["name"] == "otf" {
            if let Some(p) = v["executable"].as_str() {
                exe = Some(PathBuf::from(p));
            }
        }
    }
    exe.ok_or_else(|| "cargo build -p otf reported no `otf` executable".to_string())
}

/// One stdout line with the time it arrived, relative to the start of otf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Arrival time since spawn.
    pub at: Duration,
    /// The line, without its newline.
    pub text: String,
}

/// What a finished (or killed) otf run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line, for reports.
    pub command: String,
    /// stdout, line by line.
    pub stdout: Vec<Line>,
    /// stderr, as text.
    pub stderr: String,
    /// The exit status (`None` if it could not be collected).
    pub status: Option<ExitStatus>,
    /// Whether the harness had to kill otf at its time limit.
    pub timed_out: bool,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Processes left in otf's process group after it exited (killed by the harness then).
    pub leftover_group: Vec<i32>,
}

impl Outcome {
    /// The stdout lines' texts.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.iter().map(|l| l.text.as_str()).collect()
    }

    /// Lines of stderr that report an error (`error:`/`ERROR`, a panic); warnings are not errors.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| {
                let t = l.trim_start();
                t.starts_with("error")
                    || t.contains("ERROR")
                    || t.contains("panicked")
                    || t.starts_with("fatal")
            })
            .collect()
    }

    /// The exit status as text (`exit 0`, `signal 9`, ...).
    pub fn status_text(&self) -> String {
        match self.status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                _ => format!("{s}"),
            },
            None => "unknown".to_string(),
        }
    }

    /// The exit code, if otf exited rather than being killed.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
}

/// A running `otf` process (in its own process group), with stdout and stderr collected by
/// threads as they arrive.
#[derive(Debug)]
pub struct OtfProcess {
    child: Child,
    command: String,
    started: Instant,
    stdout: Arc<Mutex<Vec<Line>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl OtfProcess {
    /// Spawn `otf ARGS...` in `cwd`.
    pub fn spawn(args: &[String], cwd: &Path) -> Result<Self, String> {
        Self::spawn_with(args, cwd, true)
    }

    /// As [`spawn`](Self::spawn), with transparent huge pages off for otf
    /// (`PR_SET_THP_DISABLE`), for a test that reads otf's VmRSS as what otf allocated. Where
    /// THP is "always" (Debian 6.1), the kernel backs any 2 MiB-aligned range of an anonymous
    /// mapping with a huge page at its first touch, and khugepaged collapses sparse ranges into
    /// huge pages at its own pace: VmRSS then jumps by 2 MiB steps that follow the kernel's
    /// timing, not otf's allocations.
    pub fn spawn_without_huge_pages(args: &[String], cwd: &Path) -> Result<Self, String> {
        Self::spawn_with(args, cwd, false)
    }

    fn spawn_with(args: &[String], cwd: &Path, huge_pages: bool) -> Result<Self, String> {
        let bin = otf_bin()?;
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.process_group(0);
        if !huge_pages {
            // SAFETY: the closure runs in the child between fork and exec and makes one
            // prctl(2) call, which is async-signal-safe; the flag is kept across exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let command = format!("{} {}", bin.display(), args.join(" "));
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let sink = Arc::clone(&stdout);
            readers.push(std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match r.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&buf)
                                .trim_end_matches(['\n', '\r'])
                                .to_string();
                            let at = started.elapsed();
                            sink.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(Line { at, text });
                        }
                    }
                }
            }));
        }
        if let Some(mut err) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match err.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => sink
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push_str(&String::from_utf8_lossy(&buf[..n])),
                    }
                }
            }));
        }
        Ok(OtfProcess {
            child,
            command,
            started,
            stdout,
            stderr,
            readers,
        })
    }

    /// The pid (also the process group id).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The stdout lines so far.
    pub fn stdout_so_far(&self) -> Vec<Line> {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The number of stdout lines so far that match `glob`.
    pub fn count_matching(&self, glob: &str) -> usize {
        self.stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| glob_match(glob, &l.text))
            .count()
    }

    /// Wait until at least `n` stdout lines match `glob`; false if otf exited or `timeout` passed.
    pub fn wait_for_lines(&mut self, glob: &str, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.count_matching(glob) >= n {
                return true;
            }
            if Instant::now() >= deadline || !matches!(self.child.try_wait(), Ok(None)) {
                return self.count_matching(glob) >= n;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether otf is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Send `sig` to otf (only to the otf process itself).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill on our own child's pid; failure (already gone) is harmless.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait for otf to exit; after `timeout`, kill its process group and report `timed_out`.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let deadline = self.started + timeout;
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() >= deadline => {
                    timed_out = true;
                    // SAFETY: killpg on the process group created for this child.
                    unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
                    break self.child.wait().ok();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break None,
            }
        };
        let elapsed = self.started.elapsed();
        let leftover_group = if timed_out {
            Vec::new()
        } else {
            crate::system::processes_in_group(self.pid())
        };
        // Children that inherited the pipes could keep the readers alive: kill the group.
        // SAFETY: killpg on the process group created for this child; ESRCH is harmless.
        unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let stdout = std::mem::take(&mut *self.stdout.lock().unwrap_or_else(|p| p.into_inner()));
        let stderr = std::mem::take(&mut *self.stderr.lock().unwrap_or_else(|p| p.into_inner()));
        Outcome {
            command: self.command.clone(),
            stdout,
            stderr,
            status,
            timed_out,
            elapsed,
            leftover_group,
        }
    }
}

impl Drop for OtfProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: killpg on the process group created for this child.
            unsafe { libc::killpg(self.child.id() as i32, libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// Run `otf ARGS...` in `cwd` to completion (killed after `timeout`).
pub fn run_otf(args: &[String], cwd: &Path, timeout: Duration) -> Result<Outcome, String> {
    Ok(OtfProcess::spawn(args, cwd)?.wait(timeout))
}
