//! Probe points interpreted: the families and their arguments (`timer.ms(5)`, `kernel.trace("x")`, ...).
