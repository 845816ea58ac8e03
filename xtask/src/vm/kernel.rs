//! The kernels `cargo xtask vm` boots: Debian packages, pinned by version and SHA-256,
//! downloaded with a private apt configuration, unpacked with the modules the initramfs needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{self, display_cmd, fmt_bytes, output};

/// A kernel the VM can boot: one Debian package, pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// What `--kernel` calls it: the series.
    pub series: &'static str,
    /// The ABI name in `linux-image-<ABI>-amd64`.
    pub abi: &'static str,
    /// The package's Debian version.
    pub deb_version: &'static str,
    /// SHA-256 of the `.deb`.
    pub sha256: &'static str,
    /// The apt source line it comes from.
    pub apt_source: &'static str,
    /// The suite of that source, for messages and the private apt state's directory.
    pub suite: &'static str,
}

/// The kernels, the default first: Debian 12's backported 6.12 (kprobes, kprobe_multi,
/// uprobe_multi, raw tracepoint cookies) and Debian 12's own 6.1 (none of those three; otf's
/// stated minimum).
pub const PINS: &[Pin] = &[
    Pin {
        series: "6.12",
        abi: "6.12.95+deb12",
        deb_version: "6.12.95-1~bpo12+1",
        sha256: "5e524b782be67cb0d6a2e7b51816a2ac519e573ef7324b9a63a4124365653ecc",
        apt_source: "deb http://deb.debian.org/debian bookworm-backports main",
        suite: "bookworm-backports",
    },
    Pin {
        series: "6.1",
        abi: "6.1.0-50",
        deb_version: "6.1.176-1",
        sha256: "7b5597492a0a65aee61985a492e6bcc3f2cde830072a0e3b3d8c7e1b90279bd3",
        apt_source: "deb http://deb.debian.org/debian bookworm main",
        suite: "bookworm",
    },
];

/// The pin of `series` (`6.12`, `6.1`).
pub fn pin(series: &str) -> Result<&'static Pin> {
    PINS.iter().find(|p| p.series == series).with_context(|| {
        format!(
            "no kernel {series}: choose one of {}",
            PINS.iter().map(|p| p.series).collect::<Vec<_>>().join(", ")
        )
    })
}

/// The modules to load in the initramfs (their dependencies are added in order; built-in ones
/// are skipped): 6.1 builds virtio-pci as a module, without which 9p finds no channel.
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

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

/// Downloads (once), checks and unpacks the kernel of `pin` (or the ABI `version` from the
/// same suite, unpinned); returns what is needed to boot it.
pub fn prepare_kernel(pin: &Pin, version: Option<&str>) -> Result<Kernel> {
    // One download and unpack at a time: VMs booted side by side by one process would
    // otherwise run two apt-gets on the same private lists (seen on a fresh machine).
    static PREPARING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = PREPARING.lock().unwrap_or_else(|p| p.into_inner());
    let abi = version.unwrap_or(pin.abi);
    let cache = cache_dir()?;
    let dir = cache.join(format!("kernel-{abi}"));
    let stamp = dir.join("ready");
    let stamp_text = format!("modules: {}\n", MODULES.join(" "));
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(&stamp_text) {
        let deb = obtain_deb(&cache, pin, abi)?;
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
fn obtain_deb(cache: &Path, pin: &Pin, abi: &str) -> Result<PathBuf> {
    let pkg = package_name(abi);
    let pinned = abi == pin.abi;
    let expected = match std::env::var("OTF_VM_KERNEL_SHA256") {
        Ok(sha) if !sha.is_empty() => Some(sha.to_lowercase()),
        _ => pinned.then(|| pin.sha256.to_string()),
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
        format!("{pkg}_{}_amd64.deb", pin.deb_version.replace(':', "%3a"))
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
        download(cache, pin, &pkg, pinned)?;
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
             the pin in xtask/src/vm/kernel.rs (see docs/vm.md) or set OTF_VM_KERNEL_SHA256.",
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

/// `apt-get` with a private configuration reading only the pin's source.
fn apt(cache: &Path, pin: &Pin, tool: &str) -> Result<Command> {
    let apt = cache.join("apt").join(pin.suite);
    for sub in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(apt.join(sub))?;
    }
    let sources = apt.join("sources.list");
    std::fs::write(&sources, format!("{}\n", pin.apt_source))?;
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
fn download(cache: &Path, pin: &Pin, pkg: &str, pinned: bool) -> Result<()> {
    let suite = pin.suite;
    eprintln!("xtask vm: updating the package index of {suite} (private apt state)");
    let mut update = apt(cache, pin, "apt-get")?;
    update.args(["-q", "update"]);
    let out = update.output().context("cannot run apt-get")?;
    if !out.status.success() {
        bail!(
            "`{}` failed:\n{}",
            display_cmd(&update),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let show = output(apt(cache, pin, "apt-cache")?.args(["show", "--no-all-versions", pkg]));
    let show = match show {
        Ok(s) => s,
        Err(_) => bail!(
            "{pkg} is not in {suite} (any more). Available there now: {}.\n\
             Pass one with --kernel-version, or update the pin in xtask/src/vm/kernel.rs \
             (docs/vm.md).",
            available_kernels(cache, pin).unwrap_or_else(|e| format!("(cannot list them: {e:#})"))
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
        if version != pin.deb_version {
            bail!(
                "the pinned kernel {pkg} {} is no longer downloadable: {suite} now has \
                 {version}.\n\
                 Either update the pin in xtask/src/vm/kernel.rs (docs/vm.md explains how to \
                 get the new SHA-256), or use a \
                 .deb you have: OTF_VM_KERNEL_DEB=/path/to.deb [OTF_VM_KERNEL_SHA256=...], or \
                 try a newer kernel unpinned with --kernel-version.",
                pin.deb_version
            );
        }
        pin.deb_version.to_string()
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
    let mut dl = apt(cache, pin, "apt-get")?;
    dl.args(["-q", "download", &format!("{pkg}={version}")])
        .current_dir(cache.join("debs"));
    util::run(&mut dl)
}

/// The ABIs of the generic amd64 kernels of the pin's series in its (private) apt index.
fn available_kernels(cache: &Path, pin: &Pin) -> Result<String> {
    let pattern = format!(
        r"^linux-image-{}\..*-amd64$",
        pin.series.replace('.', r"\.")
    );
    let out = output(apt(cache, pin, "apt-cache")?.args(["search", "--names-only", &pattern]))?;
    let mut abis: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|p| p.strip_prefix("linux-image-")?.strip_suffix("-amd64"))
        .filter(|abi| is_generic(abi))
        .collect();
    abis.sort_by_key(|abi| {
        abi.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .collect::<Vec<_>>()
    });
    Ok(abis.join(", "))
}

/// Whether an ABI is a generic kernel's (`6.1.0-50`, `6.12.95+deb12`), not a flavour's
/// (`6.1.0-50-cloud`, `6.12.95+deb12-rt`).
fn is_generic(abi: &str) -> bool {
    abi.split('-')
        .all(|part| part.starts_with(|c: char| c.is_ascii_digit()))
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
    fn pins_are_consistent() {
        for p in PINS {
            assert_eq!(p.sha256.len(), 64);
            let upstream = p.abi.split(['+', '-']).next().unwrap();
            // 6.12.95+deb12 is 6.12.95-1~bpo12+1; 6.1.0-50 is 6.1.176-1 (Debian's ABI name).
            assert!(p.deb_version.starts_with(p.series), "{p:?}");
            assert!(upstream.starts_with(p.series), "{p:?}");
            assert!(p.apt_source.contains(p.suite));
            assert!(is_generic(p.abi));
        }
        assert_eq!(pin("6.1").unwrap().abi, "6.1.0-50");
        assert!(pin("5.4").is_err());
        assert!(!is_generic("6.1.0-50-cloud") && !is_generic("6.12.95+deb12-rt"));
    }
}
