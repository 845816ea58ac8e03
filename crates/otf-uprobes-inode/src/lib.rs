//! On-the-fly inode uprobes: process(PATH).function(NAME).
