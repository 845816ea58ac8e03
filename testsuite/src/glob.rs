//! Glob patterns and the ordered-subsequence matching of SystemTap's on-the-fly harness.
//!
//! A pattern is matched against a whole output line, as Tcl's `string match` does: `*` matches any
//! text (also none), `?` matches exactly one character, `\x` matches `x` literally, every other
//! character matches itself.

/// Whether `text` as a whole matches the glob `pattern` (`*`, `?`, `\` escape).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == t[ti] {
                        pi += 2;
                        ti += 1;
                        continue;
                    }
                }
                c => {
                    if c == t[ti] {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The result of matching an ordered list of patterns against output lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsequence {
    /// For each pattern matched (a prefix of the pattern list), the index of the line it matched.
    pub matched_at: Vec<usize>,
    /// The number of patterns.
    pub total: usize,
}

impl Subsequence {
    /// Whether every pattern was matched.
    pub fn passed(&self) -> bool {
        self.matched_at.len() == self.total
    }

    /// The index of the first pattern that was never matched, if any.
    pub fn stopped_at(&self) -> Option<usize> {
        (!self.passed()).then_some(self.matched_at.len())
    }
}

/// SystemTap's `is_valid_output`: walk the lines once; a line that matches the next pattern
/// advances to the pattern after it, any other line is ignored. The subtest passes iff every
/// pattern was matched, in order.
pub fn match_subsequence<S: AsRef<str>, L: AsRef<str>>(patterns: &[S], lines: &[L]) -> Subsequence {
    match_subsequence_by(patterns, lines, |p, l| glob_match(p.as_ref(), l.as_ref()))
}

/// [`match_subsequence`] with any matching predicate (used for JSON records too).
pub fn match_subsequence_by<P, L>(
    patterns: &[P],
    lines: &[L],
    mut matches: impl FnMut(&P, &L) -> bool,
) -> Subsequence {
    let mut matched_at = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(next) = patterns.get(matched_at.len()) else {
            break;
        };
        if matches(next, line) {
            matched_at.push(i);
        }
    }
    Subsequence {
        matched_at,
        total: patterns.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match("hit", "hit"));
        assert!(!glob_match("hit", "rethit"));
        assert!(glob_match("*hit", "rethit"));
        assert!(glob_match(
            "* not starting (hrtimer) pidx ?",
            "otf: not starting (hrtimer) pidx 0"
        ));
        assert!(!glob_match(
            "* not starting (hrtimer) pidx ?",
            "otf: not starting (hrtimer) pidx 10"
        ));
        assert!(glob_match(
            "* enabling (k*probe) pidx ?",
            "otf: enabling (kretprobe) pidx 1"
        ));
        assert!(glob_match(
            "* enabling (k*probe) pidx ?",
            "otf: enabling (kprobe) pidx 1"
        ));
        assert!(!glob_match(
            "* registering (u*probe) pidx ?",
            "otf: unregistering (uprobe) pidx 1"
        ));
        assert!(glob_match(
            "* registering (u*probe) pidx ?",
            "otf: not registering (uprobe) pidx 1"
        ));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("*a*b*c", "xxaxxbxxbxc"));
        assert!(!glob_match("*a*b*c", "xxaxxbxxbx"));
    }

    #[test]
    fn subsequence_ignores_other_lines_and_keeps_order() {
        let pats = ["toggling", "* enabling (hrtimer) pidx ?", "hit"];
        let lines = [
            "x",
            "toggling",
            "hit",
            "otf: enabling (hrtimer) pidx 0",
            "y",
            "hit",
        ];
        let m = match_subsequence(&pats, &lines);
        assert!(m.passed());
        assert_eq!(m.matched_at, vec![1, 3, 5]);

        let lines = ["hit", "otf: enabling (hrtimer) pidx 0", "toggling"];
        let m = match_subsequence(&pats, &lines);
        assert!(!m.passed());
        assert_eq!(m.stopped_at(), Some(1));
    }

    #[test]
    fn empty_pattern_list_passes() {
        let m = match_subsequence::<&str, &str>(&[], &["a"]);
        assert!(m.passed());
    }
}
