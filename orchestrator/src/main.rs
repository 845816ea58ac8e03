//! The `otf` command.

fn main() {}
