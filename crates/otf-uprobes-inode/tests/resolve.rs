//! Resolution against binaries built here with gcc, system binaries and libc. No privilege.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use otf_uprobes_inode::{list_functions, resolve, resolve_path, ResolveError};

/// Reporting skipped tests (docs/testing.md, "Skipped tests").
#[path = "../../../testsuite/src/skip.rs"]
mod skip;

const SRC: &str = r#"
#include <stdio.h>
int fn_alpha(int x) { return x + 1; }
int fn_beta(int x) { return x * 2; }
static int fn_local(int x) { return x - 3; }
int main(int argc, char **argv) { (void)argv; printf("%d\n", fn_local(fn_alpha(fn_beta(argc)))); return 0; }
"#;

fn gcc(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let src = dir.join("t.c");
    fs::write(&src, SRC).unwrap();
    let out = dir.join(name);
    // -fcf-protection=full: every function starts with endbr64 (f3 0f 1e fa), which lets the
    // tests check that a computed file offset really points at the function's first byte.
    let st = Command::new("gcc")
        .args(["-O0", "-fcf-protection=full", "-o"])
        .arg(&out)
        .arg(&src)
        .args(args)
        .status()
        .expect("gcc runs");
    assert!(st.success(), "gcc {args:?} failed");
    out
}

fn bytes_at(path: &Path, off: u64, n: usize) -> Vec<u8> {
    let data = fs::read(path).unwrap();
    data[off as usize..off as usize + n].to_vec()
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

#[test]
fn pie_and_non_pie_offsets_point_at_function_starts() {
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("pie", vec!["-pie", "-fPIE"]),
        ("nopie", vec!["-no-pie"]),
        ("dbg", vec!["-g"]),
    ] {
        let bin = gcc(dir.path(), name, &args);
        let t = resolve(bin.to_str().unwrap(), "fn_*", false).unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.symbol.as_str()).collect();
        assert_eq!(names, ["fn_alpha", "fn_beta", "fn_local"], "{name}");
        for target in &t {
            assert_eq!(target.path, fs::canonicalize(&bin).unwrap());
            assert!(!target.ret);
            assert!(target.size > 0);
            assert_eq!(
                bytes_at(&bin, target.file_offset, 4),
                ENDBR64,
                "{name} {}",
                target.symbol
            );
        }
        if name == "nopie" {
            // Non-PIE: linked at 0x400000, so the file offset differs from the address.
            assert_eq!(t[0].address - t[0].file_offset, 0x400000);
        }
    }
}

#[test]
fn return_probes_and_exact_names() {
    let dir = tempfile::tempdir().unwrap();
    let bin = gcc(dir.path(), "p", &[]);
    let t = resolve(bin.to_str().unwrap(), "main", true).unwrap();
    assert_eq!(t.len(), 1);
    assert!(t[0].ret);
    assert_eq!(t[0].symbol, "main");
    let q = resolve(bin.to_str().unwrap(), "fn_?eta", false).unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].symbol, "fn_beta");
}

#[test]
fn stripped_binary_keeps_dynamic_symbols_only() {
    let dir = tempfile::tempdir().unwrap();
    let bin = gcc(dir.path(), "s", &["-s"]);
    let err = resolve(bin.to_str().unwrap(), "fn_alpha", false).unwrap_err();
    assert!(matches!(err, ResolveError::NoSymbols { .. }), "{err}");
    assert!(err.to_string().contains("stripped"), "{err}");
    // -rdynamic exports the functions in .dynsym, which survives stripping.
    let bin = gcc(dir.path(), "sd", &["-s", "-rdynamic"]);
    let t = resolve(bin.to_str().unwrap(), "fn_alpha", false).unwrap();
    assert_eq!(bytes_at(&bin, t[0].file_offset, 4), ENDBR64);
}

#[test]
fn function_not_found_suggests_close_names() {
    let dir = tempfile::tempdir().unwrap();
    let bin = gcc(dir.path(), "p", &[]);
    let err = resolve(bin.to_str().unwrap(), "fn_alhpa", false).unwrap_err();
    match &err {
        ResolveError::FunctionNotFound { suggestions, .. } => {
            assert_eq!(suggestions[0], "fn_alpha")
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("did you mean `fn_alpha`"), "{err}");
    let err = resolve(bin.to_str().unwrap(), "zz*", false).unwrap_err();
    assert!(
        err.to_string().contains("no function matches `zz*`"),
        "{err}"
    );
    assert!(matches!(
        resolve(bin.to_str().unwrap(), "", false),
        Err(ResolveError::EmptyPattern { .. })
    ));
}

#[test]
fn missing_non_elf_object_and_directory_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = resolve(missing.to_str().unwrap(), "main", false).unwrap_err();
    assert!(matches!(e, ResolveError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("no such file"), "{e}");

    let script = dir.path().join("script.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let e = resolve(script.to_str().unwrap(), "main", false).unwrap_err();
    assert!(
        matches!(e, ResolveError::NotElf { source: None, .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("not an ELF file (no ELF magic)"),
        "{e}"
    );

    let truncated = dir.path().join("trunc");
    fs::write(&truncated, b"\x7fELF\x02\x01\x01").unwrap();
    let e = resolve(truncated.to_str().unwrap(), "main", false).unwrap_err();
    assert!(matches!(e, ResolveError::NotElf { .. }), "{e}");
    // The ELF parser's error is kept as the source, and its text is in the message.
    let parser = std::error::Error::source(&e).expect("the parser's error");
    assert!(
        e.to_string()
            .contains(&format!("not an ELF file ({parser});")),
        "{e}"
    );

    let src = dir.path().join("o.c");
    fs::write(&src, "int f(void){return 1;}\n").unwrap();
    let obj = dir.path().join("o.o");
    assert!(Command::new("gcc")
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap()
        .success());
    let e = resolve(obj.to_str().unwrap(), "f", false).unwrap_err();
    assert!(matches!(e, ResolveError::WrongElfKind { .. }), "{e}");

    let e = resolve(dir.path().to_str().unwrap(), "main", false).unwrap_err();
    assert!(matches!(e, ResolveError::NotRegularFile { .. }), "{e}");
}

#[test]
fn unreadable_file_is_a_permission_error_for_non_root() {
    let dir = tempfile::tempdir().unwrap();
    let bin = gcc(dir.path(), "p", &[]);
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o000)).unwrap();
    let r = resolve(bin.to_str().unwrap(), "main", false);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // root reads anything: resolution still works (the kernel does not need +x either).
        assert!(r.is_ok());
    } else {
        assert!(matches!(r, Err(ResolveError::Permission { .. })));
    }
}

#[test]
fn symlinks_and_relative_paths_resolve_to_the_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let bin = gcc(dir.path(), "real", &[]);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&bin, &link).unwrap();
    assert_eq!(
        resolve_path(link.to_str().unwrap()).unwrap(),
        fs::canonicalize(&bin).unwrap()
    );
    let t = resolve(link.to_str().unwrap(), "main", false).unwrap();
    assert_eq!(t[0].path, fs::canonicalize(&bin).unwrap());
}

#[test]
fn bare_names_are_looked_up_in_path() {
    // `ls` is in $PATH on every test machine; the result is the real file, symlinks followed.
    let p = resolve_path("ls").unwrap();
    assert!(p.is_absolute());
    assert_eq!(p, fs::canonicalize(&p).unwrap());
    assert!(p.file_name().unwrap().to_str().unwrap().starts_with("ls"));
    let e = resolve_path("no-such-program-otf-test").unwrap_err();
    assert!(matches!(e, ResolveError::NotInPath { .. }), "{e}");
    assert!(e.to_string().contains("$PATH"), "{e}");
}

#[test]
fn system_binary_ls_is_stripped_but_has_dynsym() {
    let ls = resolve_path("ls").unwrap();
    // Debian's ls has no .symtab; its .dynsym has no defined functions either.
    match resolve(ls.to_str().unwrap(), "main", false) {
        Err(ResolveError::NoSymbols { .. }) | Err(ResolveError::FunctionNotFound { .. }) => {}
        Ok(t) => assert!(!t.is_empty()),
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn libc_path() -> Option<PathBuf> {
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

#[test]
fn libc_malloc_resolves_to_its_file_offset() {
    let Some(libc) = libc_path() else {
        skip::skip(skip::Need::Env, "no libc.so.6 at the usual places");
        return;
    };
    let t = resolve(libc.to_str().unwrap(), "malloc", false).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].symbol, "malloc");
    // In libc, text is mapped with vaddr == file offset; the function starts with endbr64
    // on CET-enabled builds, or at least is not a zero byte run.
    let b = bytes_at(&t[0].path, t[0].file_offset, 4);
    assert_ne!(b, [0, 0, 0, 0]);
    // Aliases at the same address collapse to one target with the plainest name.
    let all = list_functions(&t[0].path).unwrap();
    let aliases: Vec<&str> = all
        .iter()
        .filter(|f| f.address == t[0].address)
        .map(|f| f.name.as_str())
        .collect();
    assert!(aliases.contains(&"malloc"));
    let m = resolve(libc.to_str().unwrap(), "*malloc", false).unwrap();
    assert_eq!(m.iter().filter(|x| x.address == t[0].address).count(), 1);
}
