//! Builds `bpf/otf_runtime.bpf.c` into a BPF object and generates its libbpf-rs skeleton.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let bpf_dir = manifest.join("../../bpf");
    let src = bpf_dir.join("otf_runtime.bpf.c");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("otf_runtime.skel.rs");

    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let (target_arch, multiarch) = match arch.as_str() {
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        _ => ("x86", "x86_64-linux-gnu"),
    };

    let mut args = vec![
        "-O2".to_string(),
        "-g".to_string(),
        "-target".to_string(),
        "bpf".to_string(),
        // v3: atomic fetch-and-op / compare-and-exchange with used results.
        "-mcpu=v3".to_string(),
        format!("-D__TARGET_ARCH_{target_arch}"),
        format!("-I{}", bpf_dir.display()),
    ];
    // uapi <asm/...> headers live in the multiarch include directory on Debian.
    let multiarch_dir = PathBuf::from("/usr/include").join(multiarch);
    if multiarch_dir.is_dir() {
        args.push(format!("-I{}", multiarch_dir.display()));
    }

    if let Err(e) = SkeletonBuilder::new()
        .source(&src)
        .clang_args(args)
        .build_and_generate(&out)
    {
        panic!("building {}: {e:#}", src.display());
    }
    for f in [
        "otf_runtime.bpf.c",
        "otf_runtime.h",
        "otf_insn.h",
        "otf_vm.h",
        "otf_arming.h",
    ] {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(f).display());
    }
}
