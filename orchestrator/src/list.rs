//! `otf list PATTERN`.

use std::io::Write;

/// One component of a pattern: `name` or `name("ARG")` / `name(N)`.
#[derive(Debug, PartialEq, Eq)]
struct Comp {
    name: String,
    arg: Option<String>,
}

/// Splits `process("/bin/ls").function("m*")` into components. Returns `None` when the text
/// is not a dotted point.
fn components(s: &str) -> Option<Vec<Comp>> {
    let mut out = Vec::new();
    let mut chars = s.trim().chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '*' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() {
            return None;
        }
        let mut arg = None;
        if chars.peek() == Some(&'(') {
            chars.next();
            let mut a = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next()? {
                        '\\' => a.push(chars.next()?),
                        '"' => break,
                        c => a.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ')' {
                        break;
                    }
                    a.push(c);
                    chars.next();
                }
            }
            if chars.next()? != ')' {
                return None;
            }
            arg = Some(a);
        }
        out.push(Comp { name, arg });
        match chars.next() {
            None => return Some(out),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

/// Runs `otf list`; returns the exit status.
pub fn list(pattern: &str) -> Result<i32, String> {
    let comps = components(pattern).ok_or_else(|| {
        format!("cannot parse probe point pattern `{pattern}` (e.g. 'kernel.trace(\"sched_*\")')")
    })?;
    let names: Vec<&str> = comps.iter().map(|c| c.name.as_str()).collect();
    let arg = |i: usize| comps.get(i).and_then(|c| c.arg.clone());
    let mut lines: Vec<String> = Vec::new();
    match names.as_slice() {
        ["begin"] => lines.push("begin".into()),
        ["end"] => lines.push("end".into()),
        ["timer"] | ["timer", "*"] => {
            for u in ["ns", "us", "ms", "s", "hz"] {
                lines.push(format!("timer.{u}(N)"));
            }
            lines.push("timer.profile".into());
        }
        ["timer", "profile"] => lines.push("timer.profile".into()),
        ["timer", u] if ["ns", "us", "ms", "s", "hz"].contains(u) => lines.push(format!(
            "timer.{u}({})",
            arg(1).unwrap_or_else(|| "N".into())
        )),
        ["kernel", "trace"] => {
            let glob = arg(1).unwrap_or_else(|| "*".into());
            let tps = otf_tracepoint::resolve(&glob).map_err(|e| e.to_string())?;
            lines.extend(tps.iter().map(|t| format!("kernel.trace(\"{t}\")")));
        }
        ["kernel", "function", rest @ ..]
            if rest.is_empty() || rest == ["call"] || rest == ["return"] =>
        {
            let glob = arg(1).unwrap_or_else(|| "*".into());
            let ret = rest == ["return"];
            let ts = otf_kprobes::resolve(&glob, ret).map_err(|e| e.to_string())?;
            let suffix = rest.first().map(|r| format!(".{r}")).unwrap_or_default();
            lines.extend(
                ts.iter()
                    .map(|t| format!("kernel.function(\"{}\"){suffix}", t.symbol)),
            );
        }
        ["process", "function", rest @ ..]
            if rest.is_empty() || rest == ["call"] || rest == ["return"] =>
        {
            let path =
                arg(0).ok_or("process(...) needs a path: process(\"/bin/ls\").function(\"*\")")?;
            let glob = arg(1).unwrap_or_else(|| "*".into());
            let ret = rest == ["return"];
            let ts = otf_uprobes_inode::resolve(&path, &glob, ret).map_err(|e| e.to_string())?;
            let suffix = rest.first().map(|r| format!(".{r}")).unwrap_or_default();
            lines.extend(ts.iter().map(|t| {
                format!(
                    "process(\"{}\").function(\"{}\"){suffix}",
                    t.path.display(),
                    t.symbol
                )
            }));
        }
        ["process"] => {
            return Err(
                "`process(PATH)` alone is not a probe point: add `.function(\"GLOB\")`".into(),
            )
        }
        _ => {
            return Err(format!(
                "unknown probe point family `{}` (try begin, end, timer, kernel.trace(\"GLOB\"), \
                 kernel.function(\"GLOB\"), process(\"PATH\").function(\"GLOB\"))",
                names.join(".")
            ))
        }
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
    fn parses_points() {
        let c = components("process(\"/bin/ls\").function(\"m*\").return").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].arg.as_deref(), Some("/bin/ls"));
        assert_eq!(c[2].name, "return");
        assert_eq!(
            components("timer.ms(5)").unwrap()[1].arg.as_deref(),
            Some("5")
        );
        assert!(components("kernel.trace(\"x").is_none());
        assert!(components("").is_none());
        assert!(components("a..b").is_none());
    }
}
