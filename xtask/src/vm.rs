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
use crate::util::{
    self, display_cmd, fmt_bytes, fmt_duration, output, shell_quote, shell_quote_os,
};

/// The pinned kernel: the ABI name in `linux-image-<ABI>-amd64`.
pub const KERNEL_ABI: &str = "6.12.95+deb12";
/// The pinned package's Debian version.
pub const KERNEL_DEB_VERSION: &str = "6.12.95-1~bpo12+1";
/// SHA-256 of `linux-image-6.12.95+deb12-amd64_6.12.95-1~bpo12+1_amd64.deb`.
pub const KERNEL_DEB_SHA256: &str =
    "5e524b782be67cb0d6a2e7b51816a2ac519e573ef7324b9a63a4124365653ecc";
/// Where the kernel package comes from.
const APT_SOURCE: &str = "deb http://deb.debian.org/debian bookworm-backports main";
/// The modules to load in the initramfs (their dependencies are added in order).
const MODULES: &[&str] = &["9pnet_virtio", "9p"];
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
    /// Kernel ABI to boot (`linux-image-<VERSION>-amd64` from bookworm-backports); default: the
    /// pinned one. Versions other than the pin are checked only by apt's signed index.
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

/// The directory holding the downloaded kernel and apt's state: `$XDG_CACHE_HOME/otf/vm`.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("otf").join("vm"))
}

/// A kernel ready to boot.
#[derive(Debug)]
pub struct Kernel {
    /// The ABI name, e.g. `6.12.95+deb12`.
    pub abi: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// Decompressed modules, in load order.
    pub modules: Vec<PathBuf>,
}

/// Downloads (once), checks and unpacks the kernel; returns what is needed to boot it.
pub fn prepare_kernel(version: Option<&str>) -> Result<Kernel> {
    // One download and unpack at a time: VMs booted side by side by one process would
    // otherwise run two apt-gets on the same private lists (seen on a fresh machine).
    static PREPARING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = PREPARING.lock().unwrap_or_else(|p| p.into_inner());
    let abi = version.unwrap_or(KERNEL_ABI);
    let cache = cache_dir()?;
    let dir = cache.join(format!("kernel-{abi}"));
    let stamp = dir.join("ready");
    let stamp_text = format!("modules: {}\n", MODULES.join(" "));
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(&stamp_text) {
        let deb = obtain_deb(&cache, abi)?;
        unpack(&deb, &dir, abi)?;
        std::fs::write(&stamp, &stamp_text)?;
    }
    let order = std::fs::read_to_string(dir.join("modules.order"))
        .context("the unpacked kernel has no modules.order; remove it and retry")?;
    Ok(Kernel {
        abi: abi.to_string(),
        vmlinuz: dir.join("vmlinuz"),
        modules: order.lines().map(|m| dir.join("modules").join(m)).collect(),
    })
}

fn package_name(abi: &str) -> String {
    format!("linux-image-{abi}-amd64")
}

/// Returns the path of a checked `.deb` for `abi`, downloading it if needed.
fn obtain_deb(cache: &Path, abi: &str) -> Result<PathBuf> {
    let pkg = package_name(abi);
    let pinned = abi == KERNEL_ABI;
    let expected = match std::env::var("OTF_VM_KERNEL_SHA256") {
        Ok(sha) if !sha.is_empty() => Some(sha.to_lowercase()),
        _ => pinned.then(|| KERNEL_DEB_SHA256.to_string()),
    };
    if let Some(deb) = std::env::var_os("OTF_VM_KERNEL_DEB").filter(|v| !v.is_empty()) {
        let deb = PathBuf::from(deb);
        eprintln!("xtask vm: using {} (OTF_VM_KERNEL_DEB)", deb.display());
        let name = output(
            Command::new("dpkg-deb")
                .args(["-f"])
                .arg(&deb)
                .arg("Package"),
        )?;
        if name.trim() != pkg {
            bail!(
                "OTF_VM_KERNEL_DEB={} holds package {}, not {pkg}; pass --kernel-version {}",
                deb.display(),
                name.trim(),
                name.trim()
                    .trim_start_matches("linux-image-")
                    .trim_end_matches("-amd64")
            );
        }
        verify(&deb, expected.as_deref())?;
        return Ok(deb);
    }
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let file = if pinned {
        format!("{pkg}_{}_amd64.deb", KERNEL_DEB_VERSION.replace(':', "%3a"))
    } else {
        // Whatever version of an unpinned ABI was downloaded before.
        std::fs::read_dir(&debs)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with("_amd64.deb"))
            .unwrap_or_default()
    };
    let deb = debs.join(&file);
    if file.is_empty() || !deb.exists() {
        download(cache, &pkg, pinned)?;
    }
    let deb = if file.is_empty() {
        std::fs::read_dir(&debs)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap_or_default().to_string_lossy();
                n.starts_with(&format!("{pkg}_")) && n.ends_with("_amd64.deb")
            })
            .context("apt-get download reported success but left no .deb")?
    } else {
        deb
    };
    if let Err(e) = verify(&deb, expected.as_deref()) {
        let _ = std::fs::remove_file(&deb);
        return Err(e);
    }
    Ok(deb)
}

/// Checks a `.deb`'s SHA-256 against `expected`, or prints it when there is nothing to check.
fn verify(deb: &Path, expected: Option<&str>) -> Result<()> {
    let out = output(Command::new("sha256sum").arg(deb))?;
    let actual = out.split_whitespace().next().unwrap_or_default();
    match expected {
        Some(exp) if exp == actual => Ok(()),
        Some(exp) => bail!(
            "{} has SHA-256 {actual}, expected {exp}.\n\
             If the file is damaged, delete it and retry. If Debian rebuilt the package, update \
             KERNEL_DEB_SHA256 in xtask/src/vm.rs (see docs/vm.md) or set OTF_VM_KERNEL_SHA256.",
            deb.display()
        ),
        None => {
            eprintln!(
                "xtask vm: {} is not pinned (apt checked it against the signed archive index); \
                 SHA-256 {actual}",
                deb.display()
            );
            Ok(())
        }
    }
}

/// `apt-get` with a private configuration reading only bookworm-backports.
fn apt(cache: &Path, tool: &str) -> Result<Command> {
    let apt = cache.join("apt");
    for sub in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(apt.join(sub))?;
    }
    let sources = apt.join("sources.list");
    std::fs::write(&sources, format!("{APT_SOURCE}\n"))?;
    let status = apt.join("status");
    if !status.exists() {
        std::fs::write(&status, "")?;
    }
    let mut cmd = Command::new(tool);
    let opt = |k: &str, v: &Path| format!("{k}={}", v.display());
    cmd.args([
        "-o",
        &opt("Dir::Etc::SourceList", &sources),
        "-o",
        "Dir::Etc::SourceParts=/dev/null",
        "-o",
        &opt("Dir::State::Lists", &apt.join("lists")),
        "-o",
        &opt("Dir::State::Status", &status),
        "-o",
        &opt("Dir::Cache", &apt.join("cache")),
        "-o",
        "APT::Architecture=amd64",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        // Downloading into a directory `_apt` cannot write is fine: we are not a system install.
        "APT::Sandbox::User=root",
    ]);
    Ok(cmd)
}

/// Downloads the kernel package into `cache/debs`.
fn download(cache: &Path, pkg: &str, pinned: bool) -> Result<()> {
    eprintln!("xtask vm: updating the package index of bookworm-backports (private apt state)");
    let mut update = apt(cache, "apt-get")?;
    update.args(["-q", "update"]);
    let out = update.output().context("cannot run apt-get")?;
    if !out.status.success() {
        bail!(
            "`{}` failed:\n{}",
            display_cmd(&update),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let show = output(apt(cache, "apt-cache")?.args(["show", "--no-all-versions", pkg]));
    let show = match show {
        Ok(s) => s,
        Err(_) => bail!(
            "{pkg} is not in bookworm-backports (any more). Available there now: {}.\n\
             Pass one with --kernel-version, or update the pin in xtask/src/vm.rs (docs/vm.md).",
            available_kernels(cache).unwrap_or_else(|e| format!("(cannot list them: {e:#})"))
        ),
    };
    let field = |name: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or("?")
            .to_string()
    };
    let (version, size) = (field("Version"), field("Size"));
    let version = if pinned {
        if version != KERNEL_DEB_VERSION {
            bail!(
                "the pinned kernel {pkg} {KERNEL_DEB_VERSION} is no longer downloadable: \
                 bookworm-backports now has {version}.\n\
                 Either update KERNEL_ABI / KERNEL_DEB_VERSION / KERNEL_DEB_SHA256 in \
                 xtask/src/vm.rs (docs/vm.md explains how to get the new SHA-256), or use a \
                 .deb you have: OTF_VM_KERNEL_DEB=/path/to.deb [OTF_VM_KERNEL_SHA256=...], or \
                 try a newer kernel unpinned with --kernel-version."
            );
        }
        KERNEL_DEB_VERSION.to_string()
    } else {
        version
    };
    let size = size
        .parse::<u64>()
        .map(fmt_bytes)
        .unwrap_or_else(|_| format!("{size} bytes"));
    eprintln!(
        "xtask vm: downloading {pkg} {version} ({size}) into {}",
        cache.join("debs").display()
    );
    let mut dl = apt(cache, "apt-get")?;
    dl.args(["-q", "download", &format!("{pkg}={version}")])
        .current_dir(cache.join("debs"));
    util::run(&mut dl)
}

/// The ABIs of the generic amd64 6.12 kernels in the (private) bookworm-backports index.
fn available_kernels(cache: &Path) -> Result<String> {
    let out = output(apt(cache, "apt-cache")?.args([
        "search",
        "--names-only",
        r"^linux-image-6\.12\..*-amd64$",
    ]))?;
    let mut abis: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| p.strip_prefix("linux-image-")?.strip_suffix("-amd64"))
        .filter(|abi| !abi.contains('-'))
        .collect();
    abis.sort_by_key(|abi| {
        abi.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .collect::<Vec<_>>()
    });
    Ok(abis.join(", "))
}

/// Unpacks the kernel and the modules the initramfs needs into `dir`.
fn unpack(deb: &Path, dir: &Path, abi: &str) -> Result<()> {
    let tmp = dir.with_file_name(format!("kernel-{abi}.unpacking"));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&tmp)?;
    eprintln!("xtask vm: unpacking {}", deb.display());
    util::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    std::fs::create_dir_all(dir.join("modules"))?;
    for (from, to) in [
        (format!("boot/vmlinuz-{abi}-amd64"), "vmlinuz"),
        (format!("boot/config-{abi}-amd64"), "config"),
    ] {
        std::fs::copy(tmp.join(&from), dir.join(to))
            .with_context(|| format!("the package has no {from}"))?;
    }
    let moddir = tmp.join("lib/modules").join(format!("{abi}-amd64"));
    let index = index_modules(&moddir)?;
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    for m in MODULES {
        add_module(
            m,
            &index,
            &builtin,
            &dir.join("modules"),
            &mut order,
            &mut Vec::new(),
        )?;
    }
    std::fs::write(
        dir.join("modules.order"),
        order
            .iter()
            .map(|m| format!("{m}.ko\n"))
            .collect::<String>(),
    )?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(())
}

/// `kernel/fs/9p/9p.ko.xz` -> `9p`; `-` and `_` are the same in module names.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Maps module names to their files under `moddir`.
fn index_modules(moddir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().contains(".ko") {
                found.push((module_name(&p.to_string_lossy()), p));
            }
        }
    }
    Ok(found)
}

/// Adds `name` after its dependencies to `order`, decompressing each into `out`.
fn add_module(
    name: &str,
    index: &[(String, PathBuf)],
    builtin: &[String],
    out: &Path,
    order: &mut Vec<String>,
    visiting: &mut Vec<String>,
) -> Result<()> {
    let name = name.replace('-', "_");
    if order.contains(&name) || builtin.contains(&name) {
        return Ok(());
    }
    if visiting.contains(&name) {
        bail!("module dependency cycle through {name}");
    }
    let (_, src) = index
        .iter()
        .find(|(n, _)| *n == name)
        .with_context(|| format!("module {name} is neither built in nor in the package"))?;
    let dst = out.join(format!("{name}.ko"));
    decompress(src, &dst)?;
    let data = std::fs::read(&dst)?;
    visiting.push(name.clone());
    for dep in modinfo_depends(&data) {
        add_module(&dep, index, builtin, out, order, visiting)?;
    }
    visiting.pop();
    order.push(name);
    Ok(())
}

/// Writes the decompressed module `src` (`.ko` or `.ko.xz`) to `dst`.
fn decompress(src: &Path, dst: &Path) -> Result<()> {
    let s = src.to_string_lossy();
    if s.ends_with(".ko") {
        std::fs::copy(src, dst)?;
    } else if s.ends_with(".ko.xz") {
        output(
            Command::new("python3")
                .args([
                    "-c",
                    "import lzma, sys; open(sys.argv[2], 'wb').write(lzma.open(sys.argv[1]).read())",
                ])
                .arg(src)
                .arg(dst),
        )?;
    } else {
        bail!("cannot decompress {s}: only .ko and .ko.xz modules are supported");
    }
    Ok(())
}

/// The `depends=` list of a module's `.modinfo`.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|&b| b == 0)
        .find_map(|s| s.strip_prefix(b"depends="))
        .map(|d| {
            String::from_utf8_lossy(d)
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The `/init` script of the initramfs: set up, mount the host, run the command, report, power off.
fn init_script(marker: &str, modules: &[String], inner: &str) -> String {
    let module_lines: String = modules
        .iter()
        .map(|m| format!("insmod /modules/{m} || fail \"insmod {m} failed\"\n"))
        .collect();
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
m tmpfs /tmp "-o mode=1777"
m tmpfs /run "-o mode=755"
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
    let kernel = prepare_kernel(opts.kernel_version.as_deref())?;
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
    let init = init_script(&marker, &modules, &inner_command(&env, &cwd, command)?);
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
    fn module_names() {
        assert_eq!(module_name("kernel/fs/9p/9p.ko.xz"), "9p");
        assert_eq!(module_name("kernel/net/9p/9pnet_virtio.ko"), "9pnet_virtio");
        assert_eq!(module_name("kernel/drivers/a-b.ko.zst"), "a_b");
    }

    #[test]
    fn modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=9pnet,netfs\0vermagic=6.12\0";
        assert_eq!(modinfo_depends(ko), vec!["9pnet", "netfs"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
        assert!(modinfo_depends(b"nothing").is_empty());
    }

    #[test]
    fn dependency_order() {
        // Fake modules: plain .ko files whose modinfo names their dependencies.
        let dir = std::env::temp_dir().join(format!("xtask-mods-{}", std::process::id()));
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let mut index = Vec::new();
        for (name, deps) in [("a", "b,c"), ("b", "c"), ("c", ""), ("d", "a")] {
            let p = dir.join(format!("{name}.ko"));
            std::fs::write(&p, format!("\0depends={deps}\0")).unwrap();
            index.push((name.to_string(), p));
        }
        let mut order = Vec::new();
        for m in ["d", "b"] {
            add_module(m, &index, &["x".into()], &out, &mut order, &mut Vec::new()).unwrap();
        }
        assert_eq!(order, ["c", "b", "a", "d"]);
        assert!(add_module("zz", &index, &[], &out, &mut order, &mut Vec::new()).is_err());
        std::fs::write(dir.join("c.ko"), "\0depends=a\0").unwrap();
        let err = add_module("a", &index, &[], &out, &mut Vec::new(), &mut Vec::new());
        assert!(err.unwrap_err().to_string().contains("cycle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
    fn env_passes_selected_variables() {
        let env = command_env(&["FOO=bar=baz".into(), "OTF_IN_VM=2".into()]).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("FOO"), Some("bar=baz"));
        assert_eq!(get("OTF_IN_VM"), Some("2"));
        assert!(get("PATH").is_some());
        assert!(get("CARGO_PKG_NAME").is_none());
        assert!(command_env(&["NOEQUALS".into()]).is_err());
    }

    #[test]
    fn pin_is_consistent() {
        assert_eq!(KERNEL_DEB_SHA256.len(), 64);
        assert!(KERNEL_DEB_VERSION.starts_with(KERNEL_ABI.split('+').next().unwrap()));
    }
}
