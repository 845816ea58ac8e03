//! On-the-fly kprobes: kernel.function(NAME).
