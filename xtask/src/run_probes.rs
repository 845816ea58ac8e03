//! `cargo xtask run-probes [SCRIPT | -e TEXT] [-- OTF_ARGS...]`: build otf and run a script.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};

use crate::deps;
use crate::util::{self, repo_root};

/// The script run when none is given (relative to the workspace root).
pub const DEFAULT_SCRIPT: &str = "scripts/default.stp";

/// Options of `cargo xtask run-probes`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The script file (default: scripts/default.stp).
    #[arg(conflicts_with = "expr")]
    pub script: Option<PathBuf>,
    /// The script as text.
    #[arg(short = 'e', long = "expr", value_name = "TEXT")]
    pub expr: Option<String>,
    /// Build otf in debug mode instead of release.
    #[arg(long)]
    pub debug: bool,
    /// Extra arguments for `otf run` (after `--`); `-T`/`-c` given here replace the default `-T 6s`.
    #[arg(last = true, value_name = "OTF_ARGS")]
    pub otf_args: Vec<OsString>,
}

/// The arguments of `otf run`: `--otf-debug --stats`, `-T 6s` unless the extra arguments bound
/// the run themselves, the extra arguments, then the script.
pub fn otf_run_args(script: &Script, extra: &[OsString]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["run", "--otf-debug", "--stats"]
        .map(OsString::from)
        .to_vec();
    let bounded = extra.iter().any(|a| {
        let a = a.to_string_lossy();
        ["-T", "--timeout", "-c", "--command"].iter().any(|f| {
            a == *f || a.starts_with(&format!("{f}=")) || (f.len() == 2 && a.starts_with(f))
        })
    });
    if !bounded {
        args.extend(["-T", "6s"].map(OsString::from));
    }
    args.extend(extra.iter().cloned());
    match script {
        Script::File(p) => args.push(p.clone().into_os_string()),
        Script::Text(t) => args.extend([OsString::from("-e"), OsString::from(t)]),
    }
    args
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// A script file.
    File(PathBuf),
    /// Script text (`-e`).
    Text(String),
}

/// Runs the task; returns otf's exit status.
pub fn run(o: &Options) -> Result<i32> {
    eprintln!("xtask run-probes: checking the build dependencies");
    deps::ensure("building otf", deps::BUILD)?;
    let script = match (&o.script, &o.expr) {
        (_, Some(text)) => Script::Text(text.clone()),
        (Some(p), None) => Script::File(p.clone()),
        (None, None) => Script::File(repo_root().join(DEFAULT_SCRIPT)),
    };
    if let Script::File(p) = &script {
        if !p.exists() {
            if o.script.is_none() {
                bail!(
                    "{} does not exist yet (the orchestrator's default script); \
                     pass a SCRIPT file or -e TEXT",
                    p.display()
                );
            }
            bail!("script {} does not exist", p.display());
        }
    }
    let profile = if o.debug { "debug" } else { "release" };
    eprintln!("xtask run-probes: building otf ({profile})");
    let otf = util::cargo_build_bin("otf", "otf", !o.debug)?;
    let help = Command::new(&otf).args(["run", "--help"]).output();
    if !matches!(&help, Ok(out) if out.status.success()) {
        bail!(
            "{} has no working `run` subcommand yet (`otf run --help` failed); \
             the orchestrator does not implement it yet",
            otf.display()
        );
    }
    if !util::is_root() {
        eprintln!(
            "xtask run-probes: note: not root; `otf run` needs root (or CAP_BPF + CAP_PERFMON)"
        );
    }
    let mut cmd = Command::new(&otf);
    cmd.args(otf_run_args(&script, &o.otf_args));
    eprintln!("xtask run-probes: running the script");
    let st = util::run_status(&mut cmd)?;
    eprintln!("xtask run-probes: otf exited with {st}");
    Ok(st.code().unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn default_arguments() {
        let args = otf_run_args(&Script::File("scripts/default.stp".into()), &[]);
        assert_eq!(
            strs(&args),
            [
                "run",
                "--otf-debug",
                "--stats",
                "-T",
                "6s",
                "scripts/default.stp"
            ]
        );
    }

    #[test]
    fn extra_timeout_or_command_replaces_the_default() {
        for extra in [
            &["-T", "1s"][..],
            &["--timeout=2s"],
            &["-T3s"],
            &["-c", "ls"],
        ] {
            let extra: Vec<OsString> = extra.iter().map(OsString::from).collect();
            let args = strs(&otf_run_args(
                &Script::Text("probe begin {}".into()),
                &extra,
            ));
            assert!(!args.contains(&"6s".to_string()), "{args:?}");
            assert_eq!(args[args.len() - 2..], ["-e", "probe begin {}"]);
        }
        let args = strs(&otf_run_args(&Script::Text("x".into()), &["-v".into()]));
        assert_eq!(
            args,
            ["run", "--otf-debug", "--stats", "-T", "6s", "-v", "-e", "x"]
        );
    }
}
