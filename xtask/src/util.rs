//! Small helpers shared by the tasks: running commands, locating the workspace, shell quoting.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The workspace root (the parent of the `xtask` crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `cargo` to run: the one that started us (`$CARGO`), else `cargo` from `PATH`.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root());
    cmd
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks `name` up in `PATH` like a shell would; returns the first executable match.
pub fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Renders a command for display: program and arguments, shell-quoted where needed.
pub fn display_cmd(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints `$ command` and runs it with inherited stdio; returns its exit status.
pub fn run_status(cmd: &mut Command) -> Result<ExitStatus> {
    eprintln!("$ {}", display_cmd(cmd));
    cmd.status()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))
}

/// Like [`run_status`] but fails unless the command exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = run_status(cmd)?;
    if !status.success() {
        bail!("`{}` failed: {}", display_cmd(cmd), status);
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout; fails (with its stderr) unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}\n{}",
            display_cmd(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Quotes `s` for a POSIX shell (single quotes unless it is made of safe characters only).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Quotes an `OsStr` for a POSIX shell; non-UTF-8 arguments are refused.
pub fn shell_quote_os(s: &OsStr) -> Result<String> {
    match s.to_str() {
        Some(s) => Ok(shell_quote(s)),
        None => bail!("argument {:?} is not valid UTF-8", s),
    }
}

/// Formats a duration as seconds with one decimal ("12.3s"), or minutes and seconds past a minute.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:04.1}s", (s / 60.0) as u64, s % 60.0)
    }
}

/// Formats a byte count with a binary unit ("101.5 MiB").
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Runs a cargo command given `--message-format=json-render-diagnostics`, its diagnostics on
/// our stderr; returns the JSON messages (for [`executables`]).
pub fn cargo_json(cmd: &mut Command) -> Result<String> {
    eprintln!("$ {}", display_cmd(cmd));
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !out.status.success() {
        bail!("`{}` exited with {}", display_cmd(cmd), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds a binary of the workspace with cargo and returns the path of the executable,
/// taken from cargo's JSON messages (so it honours `CARGO_TARGET_DIR` and profiles).
pub fn cargo_build_bin(package: &str, bin: &str, release: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--message-format=json-render-diagnostics",
        "-p",
        package,
        "--bin",
        bin,
    ]);
    if release {
        cmd.arg("--release");
    }
    let text = cargo_json(&mut cmd).with_context(|| format!("building {package} failed"))?;
    executables(&text, |target_name, _| target_name == bin)
        .into_iter()
        .next()
        .map(|a| a.exe)
        .with_context(|| format!("cargo built {package} but reported no executable `{bin}`"))
}

/// An executable reported by cargo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The `Cargo.toml` of its package.
    pub manifest: PathBuf,
    /// The package's name.
    pub package: String,
    /// The target's name (the crate for a lib's unit tests, the file for integration tests).
    pub target: String,
    /// The executable.
    pub exe: PathBuf,
}

/// The package name in a cargo package id: `path+file:///dir#name@1.0`, `path+file:///name#1.0`
/// (the directory's name is the package's) or the old `name 1.0 (source)`.
fn package_name(id: &str) -> String {
    match id.rsplit_once('#') {
        Some((_, rest)) if rest.contains('@') => rest.split('@').next().unwrap_or(rest).into(),
        Some((url, _)) => url.rsplit('/').next().unwrap_or(url).into(),
        None => id.split(' ').next().unwrap_or_default().into(),
    }
}

/// Extracts executables from cargo's `--message-format=json` output, keeping those for which
/// `keep(target_name, is_test_profile)` holds.
pub fn executables(json_lines: &str, keep: impl Fn(&str, bool) -> bool) -> Vec<Artifact> {
    let mut found = Vec::new();
    for line in json_lines.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let target = msg["target"]["name"].as_str().unwrap_or_default();
        let test = msg["profile"]["test"].as_bool().unwrap_or(false);
        if keep(target, test) {
            let manifest = PathBuf::from(msg["manifest_path"].as_str().unwrap_or_default());
            let package = package_name(msg["package_id"].as_str().unwrap_or_default());
            found.push(Artifact {
                manifest,
                package,
                target: target.to_string(),
                exe: PathBuf::from(exe),
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc/d-e.f"), "abc/d-e.f");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn quoting_round_trips_through_sh() {
        let args = ["plain", "two words", "it's", "$x `y` \\z", "\"q\"", "", "*"];
        let script = format!(
            "printf '%s\\n' {}",
            args.iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let out = output(Command::new("sh").args(["-c", &script])).unwrap();
        let expected: String = args.iter().map(|a| format!("{a}\n")).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn cargo_json_parsing() {
        let json = r#"{"reason":"compiler-artifact","package_id":"path+file:///r/t#otf-t@0.1.0","manifest_path":"/r/t/Cargo.toml","target":{"name":"t","kind":["lib"]},"profile":{"test":true},"executable":"/x/t-123"}
{"reason":"compiler-artifact","manifest_path":"/r/t/Cargo.toml","target":{"name":"t","kind":["lib"]},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","manifest_path":"/r/o/Cargo.toml","target":{"name":"otf","kind":["bin"]},"profile":{"test":false},"executable":"/x/otf"}
not json
{"reason":"build-finished","success":true}"#;
        let tests = executables(json, |_, test| test);
        assert_eq!(
            tests,
            vec![Artifact {
                manifest: PathBuf::from("/r/t/Cargo.toml"),
                package: "otf-t".into(),
                target: "t".into(),
                exe: PathBuf::from("/x/t-123"),
            }]
        );
        let bins = executables(json, |name, test| name == "otf" && !test);
        assert_eq!(bins[0].exe, PathBuf::from("/x/otf"));
    }

    #[test]
    fn package_ids() {
        assert_eq!(
            package_name("path+file:///w/testsuite#otf-testsuite@0.1.0"),
            "otf-testsuite"
        );
        assert_eq!(package_name("path+file:///w/xtask#0.1.0"), "xtask");
        assert_eq!(package_name("libc 0.2.1 (registry+https://x)"), "libc");
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(106_422_608), "101.5 MiB");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.5s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m05.0s");
    }
}
