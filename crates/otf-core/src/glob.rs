//! The `*` / `?` wildcard matching of probe point globs (`kernel.function(GLOB)`,
//! `process(PATH).function(GLOB)`, `kernel.trace(GLOB)`), and close-name suggestions.

/// Whether `pattern` contains a wildcard (`*` or `?`).
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Matches `name` against a SystemTap-style glob: `*` matches any run of characters (also
/// none), `?` matches exactly one character, everything else matches itself.
///
/// Iterative with single-star backtracking: linear in practice, never exponential.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    // Bytes, not chars: `?` then matches one byte, which only differs from one character for
    // non-ASCII names (symbol names are ASCII). No allocation: this runs on every kernel symbol.
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Levenshtein edit distance, used to suggest close function names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Up to `max` names from `names` that are close to `wanted` (edit distance, or containing
/// it), best first. Used for "function not found, did you mean …" messages.
pub fn suggestions<'a>(
    wanted: &str,
    names: impl IntoIterator<Item = &'a str>,
    max: usize,
) -> Vec<String> {
    let plain: String = wanted.chars().filter(|c| *c != '*' && *c != '?').collect();
    if plain.is_empty() {
        return Vec::new();
    }
    let limit = (plain.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .filter_map(|name| {
            let close_len = name.len().abs_diff(plain.len()) <= limit;
            let d = if close_len {
                edit_distance(&plain, name)
            } else {
                usize::MAX
            };
            if d <= limit {
                Some((d, name))
            } else if plain.len() >= 3 && name.contains(plain.as_str()) {
                Some((limit + 1 + name.len() - plain.len(), name))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(max)
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The end of a "nothing matches" message: `; did you mean `a`, `b`?` for the
/// [`suggestions`] `s`, or nothing when there are none.
pub fn did_you_mean(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(
            "; did you mean {}?",
            s.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_basics() {
        assert!(glob_match("main", "main"));
        assert!(!glob_match("main", "mai"));
        assert!(!glob_match("main", "mainx"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("f?o", "foo"));
        assert!(!glob_match("f?o", "fo"));
        assert!(glob_match("fn_*", "fn_1"));
        assert!(!glob_match("fn_*", "xfn_1"));
        assert!(glob_match("*_alloc*", "kmem_cache_alloc_node"));
        assert!(glob_match("a*b*c", "aXXbYYbZc"));
        assert!(!glob_match("a*b*c", "aXXbYYbZ"));
        assert!(glob_match("**x", "x"));
    }

    #[test]
    fn glob_is_not_exponential() {
        let name = "a".repeat(200);
        let pattern = format!("{}b", "a*".repeat(50));
        assert!(!glob_match(&pattern, &name));
    }

    #[test]
    fn distance_and_suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        let names = ["malloc", "calloc", "realloc", "free", "mallinfo"];
        let s = suggestions("maloc", names.iter().copied(), 3);
        assert_eq!(s.first().map(String::as_str), Some("malloc"));
        assert!(!s.contains(&"free".to_string()));
        assert!(suggestions("*", names.iter().copied(), 3).is_empty());
        assert_eq!(did_you_mean(&[]), "");
        assert_eq!(
            did_you_mean(&["malloc".into(), "calloc".into()]),
            "; did you mean `malloc`, `calloc`?"
        );
    }
}
