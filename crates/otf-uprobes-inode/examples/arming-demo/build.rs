//! Compiles this example's own BPF program (src/bpf/demo.bpf.c) and generates its skeleton.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src = manifest.join("src/bpf/demo.bpf.c");
    // otf_arming.h comes from the otf repository's bpf/.
    let otf_bpf = manifest.join("../../../../bpf");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("demo.skel.rs");
    let mut args = vec![
        "-O2".to_string(),
        "-g".to_string(),
        "-mcpu=v3".to_string(),
        format!("-I{}", otf_bpf.display()),
    ];
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "/usr/include/aarch64-linux-gnu",
        _ => "/usr/include/x86_64-linux-gnu",
    };
    if std::path::Path::new(multiarch).is_dir() {
        args.push(format!("-I{multiarch}"));
    }
    if let Err(e) = SkeletonBuilder::new()
        .source(&src)
        .clang_args(args)
        .build_and_generate(&out)
    {
        panic!("building {}: {e:#}", src.display());
    }
    println!("cargo:rerun-if-changed={}", src.display());
    println!(
        "cargo:rerun-if-changed={}",
        otf_bpf.join("otf_arming.h").display()
    );
}
