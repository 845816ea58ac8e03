//! The reference VM: executes [`crate::bytecode`] over a store of globals.
