//! On-the-fly timer.* probes on perf cpu-clock events.
