//! The `otf` command: run, check and list SystemTap-style scripts on eBPF with on-the-fly
//! arming. See `docs/user-guide.md`.

mod check;
mod cli;
mod error;
mod frontend;
mod list;
mod resolve;
mod run;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use otf_script::diag::SourceFile;

pub use error::Failure;

/// Reads the script named by `source` (its file, or its `-e` text) as a [`SourceFile`] with
/// its script arguments. A file that is not UTF-8 is refused with the position of the first
/// invalid byte.
pub fn load_source(source: &cli::ScriptSource) -> Result<SourceFile, Failure> {
    let file = match (source.file.as_deref(), source.expr.as_deref()) {
        (_, Some(text)) => SourceFile::new("<command line>", text),
        (Some(path), None) => {
            let bytes = std::fs::read(path).map_err(|source| Failure::ReadScript {
                path: path.to_path_buf(),
                source,
            })?;
            SourceFile::from_bytes(path.display().to_string(), bytes).map_err(|e| {
                let (file, diag) = *e;
                Failure::Diagnostics {
                    diags: vec![diag],
                    file: Box::new(file),
                }
            })?
        }
        (None, None) => return Err(Failure::NoScript),
    };
    Ok(file.with_args(source.args()))
}

fn dispatch(cli: cli::Cli) -> Result<i32, Failure> {
    match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Check(args) => check::check(&args),
        cli::Command::List(args) => Ok(list::list(&args.pattern)?),
    }
}

fn main() -> ExitCode {
    // Usage errors: clap prints them and exits with status 2 (help and version with 0).
    let cli = cli::Cli::parse();
    // A bug must never end in status 101: report it as an internal error.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error in otf: {info}");
    }));
    let result = std::panic::catch_unwind(move || dispatch(cli));
    let _ = std::io::stdout().flush();
    let code = match result {
        Ok(Ok(code)) => code,
        // The edge: the failure becomes text here, and only here.
        Ok(Err(e)) if e.is_rendered() => {
            eprint!("{e}");
            1
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            1
        }
        Err(_) => 1,
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
