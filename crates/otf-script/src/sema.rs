//! Semantic passes: name resolution, implicit locals, condition rules, context rules, probe point checks.
