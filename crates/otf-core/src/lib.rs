//! ProbeGroup trait, arming state, refresh decisions and the pure refresh scheduler of otf.
