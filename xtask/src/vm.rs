//! `cargo xtask vm -- COMMAND`: run a command as root under Debian's 6.12 kernel in qemu.
//!
//! The development machine's kernel has no kprobes, so kprobe tests run in a VM. The VM boots
//! Debian bookworm-backports' `linux-image-6.12.*-amd64` with qemu's software emulation (TCG),
//! shares the host's root filesystem over virtio-9p (mounted at the same paths inside), runs the
//! command in the host's working directory and returns its exit status. See docs/vm.md.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cpio::Archive;
use crate::util::{display_cmd, fmt_duration, shell_quote, shell_quote_os};

mod kernel;

pub use kernel::{cache_dir, pin, prepare_kernel, Kernel, PINS};

/// The 9p export tag of the host root.
const MOUNT_TAG: &str = "hostroot";
/// Environment variables passed into the VM when set on the host.
const PASS_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "CI",
    "NO_COLOR",
    "CARGO_HOME",
    "CARGO_TARGET_DIR",
    "CARGO_TERM_COLOR",
    "CARGO_INCREMENTAL",
    "CARGO_BUILD_JOBS",
];
/// Prefixes of environment variables passed into the VM.
const PASS_ENV_PREFIXES: &[&str] = &["RUST_", "RUSTUP_", "OTF_", "INSTA_"];

/// How to accelerate the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// qemu's software emulation, one host thread for all vCPUs: slow but boots everywhere and
    /// keeps kernel text patching coherent (the default).
    Tcg,
    /// Multi-threaded TCG (a host thread per vCPU). Faster, but under the kernel's live text
    /// patching (static keys, kprobes) a vCPU can run a stale `int3` and the guest oopses in
    /// `poke_int3_handler`'s absence (seen on 6.12: "Oops: int3" in `enqueue_timer`).
    TcgMulti,
    /// Hardware virtualisation through /dev/kvm (not usable on the Firecracker dev machines).
    Kvm,
}

/// Options of one VM run.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The kernel to boot: `6.12` (Debian 12's backports) or `6.1` (Debian 12's own), each a
    /// pinned package.
    #[arg(long, value_name = "SERIES", default_value = "6.12")]
    pub kernel: String,
    /// Kernel ABI to boot instead of the pin (`linux-image-<VERSION>-amd64` from the same
    /// suite as `--kernel`'s); checked only by apt's signed index.
    #[arg(long, value_name = "VERSION")]
    pub kernel_version: Option<String>,
    /// Number of virtual CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Memory size, in qemu's syntax (e.g. 4G, 2048M).
    #[arg(long, default_value = "4G")]
    pub mem: String,
    /// Kill the VM after this many minutes.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    pub timeout: u64,
    /// Show the kernel's boot messages and the qemu command line.
    #[arg(long, short)]
    pub verbose: bool,
    /// Accelerator (env OTF_VM_ACCEL).
    #[arg(long, value_enum, env = "OTF_VM_ACCEL", default_value = "tcg")]
    pub accel: Accel,
    /// Extra environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Append the command's output to this file instead of writing it to stdout (for callers
    /// that run the VM beside other work).
    #[arg(skip)]
    pub output: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            kernel: PINS[0].series.to_string(),
            kernel_version: None,
            cpus: 2,
            mem: "4G".into(),
            timeout: 60,
            verbose: false,
            accel: Accel::Tcg,
            env: Vec::new(),
            output: None,
        }
    }
}

/// The `/init` script of the initramfs: set up, mount the host, run the command, report, power off.
///
/// The guest gets a private `/tmp`; `keep_tmp` names directories of the host's `/tmp` that stay
/// visible in it (a checkout under `/tmp`, where the command runs).
fn init_script(marker: &str, modules: &[String], inner: &str, keep_tmp: &[String]) -> String {
    let module_lines: String = modules
        .iter()
        .map(|m| format!("insmod /modules/{m} || fail \"insmod {m} failed\"\n"))
        .collect();
    let (hold, keep) = if keep_tmp.is_empty() {
        (String::new(), String::new())
    } else {
        let keep: String = keep_tmp
            .iter()
            .map(|d| {
                let d = shell_quote(d);
                format!(
                    "mkdir -p /mnt/tmp/{d} && mount --bind /host-tmp/{d} /mnt/tmp/{d} \\\n  || fail \"cannot keep /tmp/\"{d}\n"
                )
            })
            .collect();
        (
            "mkdir -p /host-tmp && mount --bind /mnt/tmp /host-tmp || fail \"cannot hold /tmp\"\n"
                .to_string(),
            keep,
        )
    };
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() {{ echo "xtask vm: $*"; echo "{marker} FAILED"; sync; poweroff -f; sleep 10; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
{module_lines}mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose {MOUNT_TAG} /mnt \
  || fail "cannot mount the host root over 9p"
m() {{ mount -t "$1" "$1" "/mnt$2" $3 || fail "cannot mount $1 on $2"; }}
m proc /proc
m sysfs /sys
m devtmpfs /dev
mkdir -p /mnt/dev/pts /mnt/dev/shm
m devpts /dev/pts
m tmpfs /dev/shm
m tracefs /sys/kernel/tracing
m debugfs /sys/kernel/debug
m bpf /sys/fs/bpf
m cgroup2 /sys/fs/cgroup
{hold}m tmpfs /tmp "-o mode=1777"
{keep}m tmpfs /run "-o mode=755"
ip link set lo up 2>/dev/null
hostname otf-vm
echo "{marker} START"
{inner}
rc=$?
echo "{marker} EXIT $rc"
sync
poweroff -f
sleep 10
"#
    )
}

/// The directories of the host's `/tmp` the guest must see: the one holding the working
/// directory, when it is under `/tmp` (a clone in `/tmp/otf`: its sources, `target/` and the
/// suites' `OTF_BIN` are all there).
fn tmp_dirs_to_keep(cwd: &Path) -> Vec<String> {
    cwd.strip_prefix("/tmp")
        .ok()
        .and_then(|rest| rest.components().next())
        .map(|c| vec![c.as_os_str().to_string_lossy().into_owned()])
        .unwrap_or_default()
}

/// The command line that runs COMMAND inside the chroot with a clean, chosen environment.
fn inner_command(env: &[(String, String)], cwd: &Path, command: &[OsString]) -> Result<String> {
    let mut s = String::from("env -i");
    for (k, v) in env {
        s.push(' ');
        s.push_str(&shell_quote(&format!("{k}={v}")));
    }
    s.push_str(" /bin/chroot /mnt /bin/sh -c 'cd \"$1\" || exit 125; shift; exec \"$@\"' sh ");
    s.push_str(&shell_quote_os(cwd.as_os_str())?);
    for a in command {
        s.push(' ');
        s.push_str(&shell_quote_os(a)?);
    }
    s.push_str(" </dev/null");
    Ok(s)
}

/// The environment of the command inside the VM.
fn command_env(extra: &[String]) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            PASS_ENV.contains(&k.as_str()) || PASS_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
        })
        .collect();
    let set = |env: &mut Vec<(String, String)>, k: &str, v: &str| {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.to_string()));
    };
    if !env.iter().any(|(k, _)| k == "PATH") {
        set(
            &mut env,
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    // Colours only when our own output is a terminal.
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(1) } == 1;
    let term = std::env::var("TERM").ok().filter(|_| tty);
    set(&mut env, "TERM", term.as_deref().unwrap_or("dumb"));
    set(&mut env, "OTF_IN_VM", "1");
    for kv in extra {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv}: expected NAME=VALUE"))?;
        set(&mut env, k, v);
    }
    env.sort();
    Ok(env)
}

/// Builds the initramfs for one run.
fn initramfs(kernel: &Kernel, init: &str) -> Result<Vec<u8>> {
    let mut a = Archive::new();
    for d in ["bin", "dev", "proc", "sys", "mnt", "modules", "tmp"] {
        a.dir(d, 0o755);
    }
    a.char_dev("dev/console", 0o600, 5, 1);
    a.char_dev("dev/null", 0o666, 1, 3);
    let busybox = std::fs::read("/bin/busybox").context("cannot read /bin/busybox")?;
    a.file("bin/busybox", 0o755, &busybox);
    a.symlink("bin/sh", "busybox");
    for m in &kernel.modules {
        let data =
            std::fs::read(m).with_context(|| format!("cannot read module {}", m.display()))?;
        let name = m.file_name().unwrap_or_default().to_string_lossy();
        a.file(&format!("modules/{name}"), 0o644, &data);
    }
    a.file("init", 0o755, init.as_bytes());
    Ok(a.finish())
}

/// A marker that the command's output will not contain by accident.
fn new_marker() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("OTF-VM-{:x}-{:x}", std::process::id(), t.as_nanos())
}

/// What a console line means to the host.
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    /// Ordinary output; the part to print.
    Output(&'a [u8]),
    /// The command is about to start.
    Start,
    /// The command finished with this status; `prefix` is output on the same line before it.
    Exit(i32, &'a [u8]),
    /// The VM's setup failed.
    Failed(&'a [u8]),
}

/// Classifies one console line (without its line ending).
fn classify<'a>(line: &'a [u8], marker: &str) -> Event<'a> {
    let m = marker.as_bytes();
    let Some(pos) = line.windows(m.len()).position(|w| w == m) else {
        return Event::Output(line);
    };
    let (prefix, rest) = (&line[..pos], &line[pos + m.len()..]);
    let rest = String::from_utf8_lossy(rest);
    if rest == " START" {
        Event::Start
    } else if let Some(rc) = rest
        .strip_prefix(" EXIT ")
        .and_then(|r| r.trim().parse().ok())
    {
        Event::Exit(rc, prefix)
    } else if rest == " FAILED" {
        Event::Failed(prefix)
    } else {
        Event::Output(line)
    }
}

/// Strips the console's `\r\n` (or `\n`) line ending.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Boots the VM, runs `command` as root in the current directory and returns its exit status.
pub fn run(opts: &Options, command: &[OsString]) -> Result<i32> {
    if command.is_empty() {
        bail!("no command given: cargo xtask vm -- COMMAND [ARGS...]");
    }
    let kernel = prepare_kernel(pin(&opts.kernel)?, opts.kernel_version.as_deref())?;
    let cwd = std::env::current_dir().context("cannot get the working directory")?;
    let env = command_env(&opts.env)?;
    let marker = new_marker();
    let modules: Vec<String> = kernel
        .modules
        .iter()
        .map(|m| {
            m.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let init = init_script(
        &marker,
        &modules,
        &inner_command(&env, &cwd, command)?,
        &tmp_dirs_to_keep(&cwd),
    );
    let runs = cache_dir()?.join("run");
    std::fs::create_dir_all(&runs)?;
    // Unique per boot: a process may run several VMs side by side.
    static BOOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let boot_id = BOOTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let initrd = runs.join(format!("initramfs-{}-{boot_id}.cpio", std::process::id()));
    std::fs::write(&initrd, initramfs(&kernel, &init)?)?;
    let result = boot(opts, &kernel, &initrd, &marker);
    let _ = std::fs::remove_file(&initrd);
    result
}

fn qemu_command(opts: &Options, kernel: &Kernel, initrd: &Path) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    let accel = match opts.accel {
        Accel::Tcg => ["-accel", "tcg,thread=single", "-cpu", "max"],
        Accel::TcgMulti => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
    };
    let append = if opts.verbose {
        "console=ttyS0 loglevel=7 panic=-1 rdinit=/init"
    } else {
        "console=ttyS0 quiet loglevel=2 panic=-1 rdinit=/init"
    };
    let model = if crate::util::is_root() {
        "passthrough"
    } else {
        "none"
    };
    cmd.args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(accel)
        .args(["-smp", &opts.cpus.to_string(), "-m", &opts.mem])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append])
        .arg("-virtfs")
        .arg(format!(
            "local,path=/,mount_tag={MOUNT_TAG},security_model={model},id={MOUNT_TAG},multidevs=remap"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

fn boot(opts: &Options, kernel: &Kernel, initrd: &Path, marker: &str) -> Result<i32> {
    let mut cmd = qemu_command(opts, kernel, initrd);
    if opts.verbose {
        eprintln!("$ {}", display_cmd(&cmd));
    }
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start qemu-system-x86_64")?;
    let stdout = child.stdout.take().context("qemu has no stdout")?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = started + Duration::from_secs(opts.timeout * 60);
    let mut boot_log: Vec<Vec<u8>> = Vec::new();
    let mut running = false;
    let mut command_started = false;
    let mut status: Option<i32> = None;
    let mut failed = false;
    let mut out: Box<dyn Write> = match &opts.output {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    let result = loop {
        let now = Instant::now();
        // After the command reported, give qemu a little time to power off.
        let limit = if status.is_some() || failed {
            deadline.min(now + Duration::from_secs(30))
        } else {
            deadline
        };
        let wait = limit.saturating_duration_since(now);
        match rx.recv_timeout(wait) {
            Ok(raw) => {
                let line = strip_eol(&raw);
                let o = &mut out;
                match classify(line, marker) {
                    Event::Start => {
                        running = true;
                        command_started = true;
                        eprintln!(
                            "xtask vm: kernel {} booted, command started after {} ({}, {} cpus, {})",
                            kernel.abi,
                            fmt_duration(started.elapsed()),
                            match opts.accel {
                                Accel::Tcg => "TCG",
                                Accel::TcgMulti => "multi-threaded TCG",
                                Accel::Kvm => "KVM",
                            },
                            opts.cpus,
                            opts.mem
                        );
                    }
                    Event::Exit(rc, prefix) => {
                        if !prefix.is_empty() {
                            let _ = o.write_all(prefix);
                            let _ = o.write_all(b"\n");
                        }
                        status = Some(rc);
                        running = false;
                    }
                    Event::Failed(prefix) => {
                        boot_log.push(prefix.to_vec());
                        failed = true;
                    }
                    Event::Output(text) => {
                        if running || opts.verbose {
                            let _ = o.write_all(text);
                            let _ = o.write_all(b"\n");
                            let _ = o.flush();
                        } else {
                            boot_log.push(text.to_vec());
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if status.is_some() || failed {
                    break Ok(());
                }
                break Err(anyhow::anyhow!(
                    "the VM did not finish within {} minutes (--timeout); killed it",
                    opts.timeout
                ));
            }
        }
    };
    // qemu exits by itself after the guest powers off (or resets, with -no-reboot); give it a
    // moment before killing it, so that its real exit status can be reported.
    let grace = Instant::now() + Duration::from_secs(5);
    while child.try_wait()?.is_none() && Instant::now() < grace {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let qemu_status = child.wait()?;
    let _ = reader.join();
    result?;
    let show_log = |log: &[Vec<u8>]| {
        if !opts.verbose && !command_started {
            eprintln!("xtask vm: console output before the failure:");
            for l in log {
                eprintln!("  {}", String::from_utf8_lossy(l));
            }
        }
    };
    if failed {
        show_log(&boot_log);
        bail!("the VM's setup failed (rerun with --verbose to see the kernel messages)");
    }
    match status {
        Some(rc) => {
            if opts.verbose {
                eprintln!(
                    "xtask vm: exit status {rc}, total {}",
                    fmt_duration(started.elapsed())
                );
            }
            Ok(rc)
        }
        None => {
            show_log(&boot_log);
            bail!(
                "qemu exited ({qemu_status}) before the command reported its exit status: \
                 the guest crashed, reset or was killed (rerun with --verbose for kernel messages)"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines() {
        let m = "OTF-VM-1-2";
        assert_eq!(classify(b"hello", m), Event::Output(b"hello"));
        assert_eq!(classify(b"OTF-VM-1-2 START", m), Event::Start);
        assert_eq!(classify(b"OTF-VM-1-2 EXIT 3", m), Event::Exit(3, b""));
        assert_eq!(
            classify(b"partialOTF-VM-1-2 EXIT 0", m),
            Event::Exit(0, b"partial")
        );
        assert_eq!(classify(b"OTF-VM-1-2 FAILED", m), Event::Failed(b""));
        assert_eq!(
            classify(b"OTF-VM-1-2 EXIT x", m),
            Event::Output(b"OTF-VM-1-2 EXIT x")
        );
        assert_eq!(strip_eol(b"a\r\n"), b"a");
        assert_eq!(strip_eol(b"a"), b"a");
    }

    #[test]
    fn inner_command_runs_in_cwd_with_env() {
        let env = vec![("A".to_string(), "x y".to_string())];
        let cmd = inner_command(
            &env,
            Path::new("/work/main"),
            &["sh".into(), "-c".into(), "exit 3".into()],
        )
        .unwrap();
        assert_eq!(
            cmd,
            "env -i 'A=x y' /bin/chroot /mnt /bin/sh -c 'cd \"$1\" || exit 125; shift; exec \"$@\"' \
             sh /work/main sh -c 'exit 3' </dev/null"
        );
    }

    #[test]
    fn a_checkout_under_tmp_stays_visible_in_the_private_tmp() {
        assert_eq!(tmp_dirs_to_keep(Path::new("/tmp/otf/crates")), ["otf"]);
        assert!(tmp_dirs_to_keep(Path::new("/work/main")).is_empty());
        assert!(tmp_dirs_to_keep(Path::new("/tmp")).is_empty());
        let init = init_script("M", &[], "true", &["otf".into()]);
        let hold = init.find("mount --bind /mnt/tmp /host-tmp").unwrap();
        let tmpfs = init.find("m tmpfs /tmp").unwrap();
        let keep = init
            .find("mount --bind /host-tmp/otf /mnt/tmp/otf")
            .unwrap();
        assert!(hold < tmpfs && tmpfs < keep, "{init}");
        assert!(!init_script("M", &[], "true", &[]).contains("host-tmp"));
    }

    #[test]
    fn env_passes_selected_variables() {
        let env = command_env(&["FOO=bar=baz".into(), "OTF_IN_VM=2".into()]).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("FOO"), Some("bar=baz"));
        assert_eq!(get("OTF_IN_VM"), Some("2"));
        assert!(get("PATH").is_some());
        assert!(get("CARGO_PKG_NAME").is_none());
        assert!(command_env(&["NOEQUALS".into()]).is_err());
    }
}
