//! System dependencies: detect what is missing and install it with apt on Debian (as root),
//! or say exactly what to install.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{is_root, run, which};

/// How to tell whether a dependency is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// An executable of this name is on `PATH`.
    Bin(&'static str),
    /// This file exists (a header, a library, a static binary).
    File(&'static str),
}

impl Check {
    /// Whether the dependency is present on this machine.
    pub fn is_met(self) -> bool {
        match self {
            Check::Bin(name) => which(name).is_some(),
            Check::File(path) => Path::new(path).exists(),
        }
    }

    fn describe(self) -> String {
        match self {
            Check::Bin(name) => format!("`{name}` is not on PATH"),
            Check::File(path) => format!("{path} does not exist"),
        }
    }
}

/// One dependency: how to detect it, the Debian package that provides it, and what needs it.
#[derive(Debug, Clone, Copy)]
pub struct Dep {
    /// The presence check.
    pub check: Check,
    /// The Debian package to install when the check fails.
    pub package: &'static str,
    /// Why otf needs it (printed when it is installed).
    pub why: &'static str,
}

const fn dep(check: Check, package: &'static str, why: &'static str) -> Dep {
    Dep {
        check,
        package,
        why,
    }
}

/// What building otf needs: libbpf-sys builds libbpf from C, the BPF programs are C for clang.
pub const BUILD: &[Dep] = &[
    dep(Check::Bin("clang"), "clang", "compiles the BPF C programs"),
    dep(
        Check::Bin("llvm-strip"),
        "llvm",
        "strips BPF objects (libbpf-cargo)",
    ),
    dep(
        Check::Bin("make"),
        "make",
        "builds libbpf from source (libbpf-sys)",
    ),
    dep(
        Check::Bin("pkg-config"),
        "pkg-config",
        "finds libelf and zlib for libbpf-sys",
    ),
    dep(
        Check::File("/usr/include/libelf.h"),
        "libelf-dev",
        "libbpf links libelf",
    ),
    dep(
        Check::File("/usr/include/zlib.h"),
        "zlib1g-dev",
        "libbpf links zlib",
    ),
];

/// What `cargo xtask vm` needs on the host.
pub const VM: &[Dep] = &[
    dep(
        Check::Bin("qemu-system-x86_64"),
        "qemu-system-x86",
        "runs the test kernel (cargo xtask vm)",
    ),
    dep(
        Check::File("/bin/busybox"),
        "busybox-static",
        "the VM's initramfs runs on a static busybox",
    ),
    dep(
        Check::Bin("python3"),
        "python3",
        "decompresses the kernel's .ko.xz modules",
    ),
    dep(Check::Bin("apt-get"), "apt", "downloads the test kernel"),
    dep(Check::Bin("dpkg-deb"), "dpkg", "unpacks the test kernel"),
    dep(
        Check::Bin("sha256sum"),
        "coreutils",
        "checks the test kernel",
    ),
];

/// Makes sure every dependency in `deps` is present.
///
/// Missing ones are installed with `apt-get` when running as root on Debian (one `apt-get update`,
/// only when something is missing); otherwise the exact install command is printed and the
/// process exits with status 1.
pub fn ensure(what: &str, deps: &[Dep]) -> Result<()> {
    let missing: Vec<&Dep> = deps.iter().filter(|d| !is_met(d)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut packages: Vec<&str> = missing.iter().map(|d| d.package).collect();
    packages.sort_unstable();
    packages.dedup();
    eprintln!("xtask: {what} needs packages that are missing:");
    for d in &missing {
        eprintln!("  {:<16} {} ({})", d.package, d.why, d.check.describe());
    }
    let debian = Path::new("/etc/debian_version").exists() && which("apt-get").is_some();
    if !(is_root() && debian) {
        let why = if debian {
            "not running as root"
        } else {
            "not a Debian system"
        };
        eprintln!("xtask: cannot install them ({why}). Install them with:");
        eprintln!("  sudo apt-get install {}", packages.join(" "));
        if !debian {
            eprintln!("  (or your distribution's equivalents)");
        }
        std::process::exit(1);
    }
    eprintln!("xtask: installing {} with apt-get", packages.join(" "));
    run(Command::new("apt-get")
        .arg("update")
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    let still: Vec<&str> = deps
        .iter()
        .filter(|d| !is_met(d))
        .map(|d| d.package)
        .collect();
    if !still.is_empty() {
        bail!(
            "after apt-get install, still missing: {} (check the apt output above)",
            still.join(" ")
        );
    }
    Ok(())
}

/// Whether `d` is present; busybox must moreover be the static one (the dynamic `busybox`
/// package also installs /bin/busybox, and the initramfs has no libraries).
fn is_met(d: &Dep) -> bool {
    match d.check {
        Check::File(path) if d.package == "busybox-static" => is_static_elf(Path::new(path)),
        check => check.is_met(),
    }
}

/// Whether `path` is an ELF executable without a program interpreter (statically linked).
pub fn is_static_elf(path: &Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    elf_has_interp(&data) == Some(false)
}

/// Parses a 64-bit little-endian ELF header and reports whether it has a `PT_INTERP` segment.
fn elf_has_interp(data: &[u8]) -> Option<bool> {
    if data.get(..4)? != b"\x7fELF" || *data.get(4)? != 2 || *data.get(5)? != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let p_type = u32::from_le_bytes(
            data.get(phoff + i * phentsize..phoff + i * phentsize + 4)?
                .try_into()
                .ok()?,
        );
        if p_type == 3 {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks() {
        assert!(Check::Bin("sh").is_met());
        assert!(!Check::Bin("no-such-binary-otf-xtask").is_met());
        assert!(Check::File("/").is_met());
        assert!(!Check::File("/no/such/file/otf").is_met());
    }

    #[test]
    fn elf_interp_detection() {
        // /bin/sh is dynamically linked on every Debian system.
        let sh = std::fs::read("/bin/sh").unwrap();
        assert_eq!(elf_has_interp(&sh), Some(true));
        assert_eq!(elf_has_interp(b"#!/bin/sh\n"), None);
        assert!(!is_static_elf(Path::new("/bin/sh")));
    }

    #[test]
    fn every_dep_is_named() {
        for d in BUILD.iter().chain(VM) {
            assert!(!d.package.is_empty() && !d.why.is_empty());
        }
    }
}
