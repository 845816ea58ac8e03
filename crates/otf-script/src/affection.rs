//! Affection analysis: which probes can affect the condition of which.
