//! `otf list PATTERN`: the pattern is parsed by the script's own probe-point parser
//! (`otf_script::parser::parse_point_pattern`, which also takes `*` components), and its family
//! recognised by the probe types' descriptors (`PROBE_TYPE`).

use std::io::Write;

use otf_core::ProbeType;
use otf_script::ast::Literal;

use crate::error::ListError;

/// The component names of `pattern` and their arguments as text (`"5"` for `timer.ms(5)`), or
/// `None` when the text is not a probe point.
fn components(pattern: &str) -> Option<Vec<(String, Option<String>)>> {
    let point = otf_script::parser::parse_point_pattern(pattern.trim())
        .or_else(|_| otf_script::parser::parse_point_pattern(&quote_bare_args(pattern.trim())))
        .ok()?;
    Some(
        point
            .components
            .into_iter()
            .map(|c| {
                let arg = c.arg.map(|a| match a {
                    Literal::Str(s) => s,
                    Literal::Int(n) => n.to_string(),
                });
                (c.name.name, arg)
            })
            .collect(),
    )
}

/// `pattern` with each unquoted, non-numeric argument quoted: `kernel.trace(sched_*)` →
/// `kernel.trace("sched_*")`, as `otf list` has always taken them on the command line (a
/// script must quote them).
fn quote_bare_args(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut rest = pattern;
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let Some(close) = rest.find(')') else { break };
        let arg = rest[..close].trim();
        if arg.starts_with('"') || arg.parse::<i64>().is_ok() || arg.is_empty() {
            out.push_str(&rest[..close]);
        } else {
            out.push('"');
            out.push_str(&arg.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// The probe types `otf list` resolves patterns of (timers are listed by family only).
const RESOLVED: [&ProbeType; 3] = [
    &otf_tracepoint::PROBE_TYPE,
    &otf_kprobes::PROBE_TYPE,
    &otf_uprobes_inode::PROBE_TYPE,
];

/// Runs `otf list`; returns the exit status.
pub fn list(pattern: &str) -> Result<i32, ListError> {
    let comps = components(pattern).ok_or_else(|| ListError::BadPattern {
        pattern: pattern.to_string(),
    })?;
    let names: Vec<&str> = comps.iter().map(|(n, _)| n.as_str()).collect();
    let arg = |i: usize| comps.get(i).and_then(|(_, a)| a.clone());
    let timer = &otf_hrtimer::PROBE_TYPE;
    let mut lines: Vec<String> = Vec::new();
    if let ["begin" | "end"] = names.as_slice() {
        lines.push(names[0].to_string());
    } else if names == ["timer"] || names == ["timer", "*"] {
        lines.extend(timer.suffixes.iter().map(|u| match *u {
            "profile" => "timer.profile".to_string(),
            u => format!("timer.{u}(N)"),
        }));
    } else if let Some(Some(u)) = timer.matches(&names) {
        lines.push(match u {
            "profile" => "timer.profile".to_string(),
            u => format!("timer.{u}({})", arg(1).unwrap_or_else(|| "N".into())),
        });
    } else if let Some(None) = otf_tracepoint::PROBE_TYPE.matches(&names) {
        let glob = arg(1).unwrap_or_else(|| "*".into());
        let tps = otf_tracepoint::resolve(&glob)?;
        lines.extend(tps.iter().map(|t| format!("kernel.trace(\"{t}\")")));
    } else if let Some(suffix) = otf_kprobes::PROBE_TYPE.matches(&names) {
        let glob = arg(1).unwrap_or_else(|| "*".into());
        let ts = otf_kprobes::resolve(&glob, suffix == Some("return"))?;
        let suffix = suffix.map(|r| format!(".{r}")).unwrap_or_default();
        lines.extend(
            ts.iter()
                .map(|t| format!("kernel.function(\"{}\"){suffix}", t.symbol)),
        );
    } else if let Some(suffix) = otf_uprobes_inode::PROBE_TYPE.matches(&names) {
        let path = arg(0).ok_or(ListError::NoPath)?;
        let glob = arg(1).unwrap_or_else(|| "*".into());
        let ret = suffix == Some("return");
        let ts = otf_uprobes_inode::resolve(&path, &glob, ret)?;
        let suffix = suffix.map(|r| format!(".{r}")).unwrap_or_default();
        lines.extend(ts.iter().map(|t| {
            format!(
                "process(\"{}\").function(\"{}\"){suffix}",
                t.path.display(),
                t.symbol
            )
        }));
    } else if names == ["process"] {
        return Err(ListError::ProcessAlone);
    } else {
        let points: Vec<&str> = std::iter::once(timer)
            .chain(RESOLVED)
            .map(|t| t.point)
            .collect();
        return Err(ListError::UnknownFamily {
            family: names.join("."),
            points: points.join(", "),
        });
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for l in lines {
        if writeln!(out, "{l}").is_err() {
            break;
        }
    }
    let _ = out.flush();
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_arguments_are_taken_as_strings() {
        let c = components("kernel.trace(sched_*)").unwrap();
        assert_eq!(c[1].1.as_deref(), Some("sched_*"));
        let c = components("process(/bin/ls).function(m*).return").unwrap();
        assert_eq!(c[0].1.as_deref(), Some("/bin/ls"));
        assert_eq!(c[1].1.as_deref(), Some("m*"));
        assert_eq!(
            components("timer.ms(5)").unwrap()[1].1.as_deref(),
            Some("5")
        );
        assert!(components("kernel.trace(").is_none());
    }

    #[test]
    fn parses_points() {
        let c = components("process(\"/bin/ls\").function(\"m*\").return").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].1.as_deref(), Some("/bin/ls"));
        assert_eq!(c[2].0, "return");
        assert_eq!(
            components("timer.ms(5)").unwrap()[1].1.as_deref(),
            Some("5")
        );
        assert_eq!(components(" timer.* ").unwrap()[1].0, "*");
        assert!(components("kernel.trace(\"x").is_none());
        assert!(components("").is_none());
        assert!(components("a..b").is_none());
        assert!(components("kernel.trace(\"x\") junk").is_none());
    }

    #[test]
    fn unknown_family_names_every_form() {
        let e = list("kernel.funtion(\"x\")").unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown probe point family `kernel.funtion` (try begin, end, timer, \
             kernel.trace(\"GLOB\"), kernel.function(\"GLOB\"), \
             process(\"PATH\").function(\"GLOB\"))"
        );
        assert!(list("a..b")
            .unwrap_err()
            .to_string()
            .starts_with("cannot parse probe point pattern `a..b`"));
        assert_eq!(
            list("process(\"/bin/ls\")").unwrap_err().to_string(),
            "`process(PATH)` alone is not a probe point: add `.function(\"GLOB\")`"
        );
    }
}
