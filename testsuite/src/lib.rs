//! Kernel-level tests of otf live in `tests/`; this library holds the shared harness.
