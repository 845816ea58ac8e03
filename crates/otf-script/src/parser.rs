//! The parser: tokens to the syntax tree in [`crate::ast`].
