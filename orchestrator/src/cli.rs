//! The command line (docs/user-guide.md, "Commands").

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// otf runs SystemTap-style scripts on eBPF, arming probes on the fly.
#[derive(Debug, Parser)]
#[command(name = "otf", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile a script, attach its probes and run it until exit(), -T, Ctrl-C or -c ends.
    Run(RunArgs),
    /// Compile and resolve a script without attaching: print its probes and affection pairs.
    Check(CheckArgs),
    /// List the probe points matching PATTERN, e.g. 'kernel.trace("sched_*")'.
    List(ListArgs),
}

/// Where the script comes from, and its arguments.
#[derive(Debug, Args)]
pub struct ScriptSource {
    /// The script file (`.stp`).
    #[arg(
        value_name = "SCRIPT_FILE",
        required_unless_present = "expr",
        conflicts_with = "expr"
    )]
    pub file: Option<std::path::PathBuf>,
    /// Arguments for the script after SCRIPT_FILE ($1, @1, ...; see SCRIPT_ARGS).
    #[arg(value_name = "ARGS", requires = "file")]
    pub trailing: Vec<String>,
    /// The script as text instead of a file.
    #[arg(short = 'e', long = "expr", value_name = "TEXT")]
    pub expr: Option<String>,
    /// Arguments for the script, after `--`: `$1`..`$N` are their text as script tokens,
    /// `@1`..`@N` as strings, `$#` / `@#` their number.
    #[arg(last = true, value_name = "SCRIPT_ARGS")]
    pub script_args: Vec<String>,
}

impl ScriptSource {
    /// Every script argument: those after SCRIPT_FILE, then those after `--`.
    pub fn args(&self) -> Vec<String> {
        self.trailing
            .iter()
            .chain(&self.script_args)
            .cloned()
            .collect()
    }
}

/// Output format of `otf run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Script output as written, debug lines as text.
    Text,
    /// One JSON object per line for each output record and decision.
    Json,
}

/// `otf run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The script.
    #[command(flatten)]
    pub source: ScriptSource,
    /// Run CMD (through sh -c); target() is its pid; finish when it exits.
    #[arg(
        short = 'c',
        long = "command",
        value_name = "CMD",
        conflicts_with = "target"
    )]
    pub command: Option<String>,
    /// target() is PID.
    #[arg(short = 'x', long = "target", value_name = "PID")]
    pub target: Option<i32>,
    /// Finish after DURATION (e.g. 500ms, 10s, 2m, 1h; a plain number is seconds).
    #[arg(short = 'T', long = "timeout", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub output: OutputFormat,
    /// Background refresh timer period.
    #[arg(long = "otf-interval", value_name = "DUR", value_parser = parse_duration, default_value = "100ms")]
    pub otf_interval: Duration,
    /// Print arming decisions.
    #[arg(long = "otf-debug")]
    pub otf_debug: bool,
    /// For this session, set /sys/kernel/rcu_expedited (system-wide) so that uprobes arm and
    /// disarm in ~0.5 ms instead of one RCU grace period (~7 ms); restored at exit, even if otf
    /// is killed.
    #[arg(long = "otf-rcu-expedited")]
    pub otf_rcu_expedited: bool,
    /// Keep every probe armed; conditions only gate bodies (the baseline).
    #[arg(long = "no-otf")]
    pub no_otf: bool,
    /// At exit, print per probe: hits, bodies run, skipped by condition or lock, times armed and
    /// disarmed.
    #[arg(long = "stats")]
    pub stats: bool,
    /// Report run-time errors in probe bodies but keep running.
    #[arg(long = "suppress-handler-errors")]
    pub suppress_handler_errors: bool,
    /// More detail about compilation and attachment.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `otf check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The script.
    #[command(flatten)]
    pub source: ScriptSource,
    /// More detail.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the BPF code generated for each handler program, in the format of `bpftool
    /// prog dump xlated`.
    #[arg(long)]
    pub bpf: bool,
}

/// `otf list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// A probe point pattern, e.g. 'kernel.trace("sched_*")' or 'timer'.
    #[arg(value_name = "PATTERN")]
    pub pattern: String,
}

/// Parses `500ms`, `10s`, `2m`, `1h`, `250us`, `100ns`, or a plain number of seconds
/// (fractions allowed: `1.5`, `0.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid duration `{s}`: expected e.g. 500ms, 10s, 2m"
        ));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration `{s}`: bad number `{num}`"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hours" => 3600.0,
        other => {
            return Err(format!(
                "invalid duration `{s}`: unknown unit `{other}` (use ns, us, ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(format!("invalid duration `{s}`: too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e400").is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
