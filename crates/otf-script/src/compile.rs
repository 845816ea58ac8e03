//! The compiler from the checked syntax tree to [`crate::bytecode`].
