//! The `otf` command: run, check and list SystemTap-style scripts on eBPF with on-the-fly
//! arming. See `docs/user-guide.md`.

mod check;
mod cli;
mod frontend;
mod list;
mod resolve;
mod run;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use otf_script::diag::SourceFile;

/// A failure that ends the command with exit status 1. The message is printed as is (it may be
/// rendered diagnostics, already ending with a newline) or prefixed with `error: `.
#[derive(Debug)]
pub enum Failure {
    /// A plain message, printed as `error: MESSAGE`.
    Message(String),
    /// Text already rendered (diagnostics), printed verbatim.
    Rendered(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Message(s)
    }
}

/// Reads the script named by `file`, or takes `expr`, as a [`SourceFile`].
pub fn load_source(
    file: Option<&std::path::Path>,
    expr: Option<&str>,
) -> Result<SourceFile, Failure> {
    match (file, expr) {
        (_, Some(text)) => Ok(SourceFile::new("<command line>", text)),
        (Some(path), None) => match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Ok(SourceFile::new(path.display().to_string(), text)),
                Err(_) => Err(Failure::Message(format!(
                    "{}: the script is not valid UTF-8",
                    path.display()
                ))),
            },
            Err(e) => Err(Failure::Message(format!(
                "cannot read script {}: {e}",
                path.display()
            ))),
        },
        (None, None) => Err(Failure::Message(
            "no script given: pass SCRIPT_FILE or -e TEXT".into(),
        )),
    }
}

fn dispatch(cli: cli::Cli) -> Result<i32, Failure> {
    match cli.command {
        cli::Command::Run(args) => run::run(&args),
        cli::Command::Check(args) => check::check(&args),
        cli::Command::List(args) => list::list(&args.pattern).map_err(Failure::Message),
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
        Ok(Err(Failure::Message(m))) => {
            eprintln!("error: {m}");
            1
        }
        Ok(Err(Failure::Rendered(text))) => {
            eprint!("{text}");
            1
        }
        Err(_) => 1,
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
