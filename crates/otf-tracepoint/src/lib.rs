//! On-the-fly kernel.trace probes.
