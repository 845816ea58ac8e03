//! Reading what otf reports about arming: the `--otf-debug` decision lines and the `--stats`
//! per-probe counters.

use std::collections::BTreeMap;

/// One `--otf-debug` line: `otf: DECISION (FLAVOR) pidx N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `enabling`, `not registering`, ...
    pub decision: String,
    /// `hrtimer`, `kprobe`, `uretprobe`, `tracepoint`, ...
    pub flavor: String,
    /// The probe index.
    pub pidx: u32,
}

impl Decision {
    /// Whether the probe is armed after this decision.
    pub fn armed_after(&self) -> bool {
        matches!(self.decision.as_str(), "enabling" | "registering")
    }
}

/// Parse a decision line (anything else gives `None`).
pub fn parse_decision(line: &str) -> Option<Decision> {
    let rest = line.trim().strip_prefix("otf: ")?;
    let (decision, rest) = rest.split_once(" (")?;
    let (flavor, rest) = rest.split_once(") pidx ")?;
    let pidx = rest.trim().parse().ok()?;
    const KNOWN: [&str; 7] = [
        "not starting",
        "registering as disabled",
        "not registering",
        "enabling",
        "disabling",
        "registering",
        "unregistering",
    ];
    KNOWN.contains(&decision).then(|| Decision {
        decision: decision.to_string(),
        flavor: flavor.to_string(),
        pidx,
    })
}

/// The armed state of each probe that appears in the decision lines, after the last one.
pub fn final_armed<S: AsRef<str>>(lines: &[S]) -> BTreeMap<u32, bool> {
    let mut m = BTreeMap::new();
    for d in lines.iter().filter_map(|l| parse_decision(l.as_ref())) {
        m.insert(d.pidx, d.armed_after());
    }
    m
}

/// Check that the decisions for each pidx alternate consistently: a probe that is armed is
/// never armed again before being disarmed, and vice versa, and a start decision comes first.
/// Probes without a start decision start armed. Returns the first inconsistency.
pub fn check_alternation<S: AsRef<str>>(lines: &[S]) -> Result<(), String> {
    let mut state: BTreeMap<u32, bool> = BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(d) = parse_decision(l.as_ref()) else {
            continue;
        };
        let start = matches!(
            d.decision.as_str(),
            "not starting" | "registering as disabled" | "not registering"
        );
        let prev = state.get(&d.pidx).copied();
        let ok = match (start, prev) {
            (true, None) => true,
            (true, Some(_)) => false,
            (false, None) => !d.armed_after(), // started armed, first change must disarm
            (false, Some(armed)) => armed != d.armed_after(),
        };
        if !ok {
            return Err(format!(
                "line {}: `{}` does not follow the previous state of pidx {} ({:?})",
                i + 1,
                l.as_ref(),
                d.pidx,
                prev
            ));
        }
        state.insert(d.pidx, d.armed_after());
    }
    Ok(())
}

/// Per-probe counters from `--stats`, keyed by pidx; each a map of counter name to value.
pub type Stats = BTreeMap<u32, BTreeMap<String, u64>>;

/// Parse `--stats` output leniently: a table (header `pidx hits bodies ...`, one row per probe),
/// JSON lines with a `pidx` field (numeric fields are the
/// counters), or text lines naming `pidx N` (or starting `probe N`) followed by `name=value`
/// or `name: value` pairs. Counter names are normalised to lowercase with `_` for spaces/`-`.
pub fn parse_stats<S: AsRef<str>>(lines: &[S]) -> Stats {
    let mut stats = Stats::new();
    // A table: a header line whose first column is `pidx`, then rows starting with a number.
    let mut header: Option<Vec<String>> = None;
    for line in lines {
        let line = line.as_ref().trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"pidx") && words.len() > 2 && words[1].parse::<u64>().is_err() {
            header = Some(words.iter().map(|w| normalise(w)).collect());
            continue;
        }
        if let (Some(h), Some(Ok(pidx))) = (&header, words.first().map(|w| w.parse::<u32>())) {
            let counters = stats.entry(pidx).or_default();
            for (name, w) in h.iter().zip(&words).skip(1) {
                if let Ok(n) = w.parse::<u64>() {
                    counters.insert(name.clone(), n);
                }
            }
            continue;
        }
        header = None;
        if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line)
        {
            let Some(pidx) = obj.get("pidx").and_then(|v| v.as_u64()) else {
                continue;
            };
            let counters = stats.entry(pidx as u32).or_default();
            for (k, v) in &obj {
                if let (true, Some(n)) = (k != "pidx", v.as_u64()) {
                    counters.insert(normalise(k), n);
                }
            }
            continue;
        }
        if parse_decision(line).is_some() {
            continue;
        }
        let num = |w: &str| w.trim_end_matches(':').parse::<u32>().ok();
        let pidx = match words.as_slice() {
            ["probe", n, ..] if num(n).is_some() => num(n),
            _ => words
                .windows(2)
                .find_map(|w| if w[0] == "pidx" { num(w[1]) } else { None }),
        };
        let Some(pidx) = pidx else { continue };
        let mut counters = BTreeMap::new();
        for part in line.split([',', ';']) {
            for w in part.split_whitespace() {
                if let Some((k, v)) = w.split_once('=') {
                    if let Ok(n) = v.trim_matches(|c: char| !c.is_ascii_digit()).parse::<u64>() {
                        counters.insert(normalise(k), n);
                    }
                }
            }
            if let Some((k, v)) = part.rsplit_once(':') {
                if let Ok(n) = v.trim().parse::<u64>() {
                    counters.insert(normalise(k.trim()), n);
                }
            }
        }
        if !counters.is_empty() {
            stats.entry(pidx).or_default().extend(counters);
        }
    }
    stats
}

fn normalise(k: &str) -> String {
    k.trim().to_lowercase().replace([' ', '-'], "_")
}

/// Look up a counter by any of `names` (first present wins).
pub fn counter(stats: &Stats, pidx: u32, names: &[&str]) -> Option<u64> {
    let c = stats.get(&pidx)?;
    names.iter().find_map(|n| c.get(*n).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_parse_and_track_state() {
        let lines = [
            "otf: not starting (hrtimer) pidx 0",
            "toggling",
            "otf: enabling (hrtimer) pidx 0",
            "hit",
            "otf: registering as disabled (kretprobe) pidx 3",
            "otf: disabling (hrtimer) pidx 0",
            "otf: unregistering (uprobe) pidx 2",
        ];
        let d = parse_decision(lines[4]).unwrap();
        assert_eq!(
            (d.decision.as_str(), d.flavor.as_str(), d.pidx),
            ("registering as disabled", "kretprobe", 3)
        );
        assert!(parse_decision("otf: frobbing (hrtimer) pidx 0").is_none());
        assert!(parse_decision("hit").is_none());
        let m = final_armed(&lines);
        assert_eq!(m, BTreeMap::from([(0, false), (2, false), (3, false)]));
        assert!(check_alternation(&lines).is_ok());
        let bad = ["otf: enabling (hrtimer) pidx 0"];
        assert!(check_alternation(&bad).is_err());
        let bad = [
            "otf: not starting (hrtimer) pidx 0",
            "otf: disabling (hrtimer) pidx 0",
        ];
        assert!(check_alternation(&bad).is_err());
    }

    #[test]
    fn stats_parse_text_and_json() {
        let lines = [
            "otf: enabling (hrtimer) pidx 0",
            "pidx 0 timer.ms(1): hits=10 bodies=7 skipped_cond=3 skipped_lock=0 armed=2 disarmed=1",
            r#"{"type":"stats","pidx":1,"hits":5,"bodies_run":5,"pp":"timer.s(1)"}"#,
            "probe 2 kernel.trace(\"x\") hits=4, armed=1",
            " pidx       hits     bodies skipped_cond skipped_lock   armed disarmed  point",
            "    7          4          3            1            0       1        1  timer.us(100000)",
            "    8          3          3            0            0       1        0  kernel.trace(\"a b\")",
        ];
        let s = parse_stats(&lines);
        assert_eq!(counter(&s, 0, &["hits"]), Some(10));
        assert_eq!(
            counter(&s, 0, &["skipped_by_condition", "skipped_cond"]),
            Some(3)
        );
        assert_eq!(counter(&s, 1, &["bodies_run"]), Some(5));
        assert_eq!(counter(&s, 2, &["armed"]), Some(1));
        assert_eq!(counter(&s, 3, &["hits"]), None);
        assert_eq!(counter(&s, 7, &["skipped_cond"]), Some(1));
        assert_eq!(counter(&s, 7, &["disarmed"]), Some(1));
        assert_eq!(counter(&s, 8, &["bodies"]), Some(3));
    }
}
