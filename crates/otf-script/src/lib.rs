//! The otf script language: a subset of SystemTap's.
//!
//! The pipeline is `parser` (text to [`ast`]) → `sema` (checks, probe points, locals) →
//! `affection` (which writer re-evaluates which condition) → `compile` (to [`bytecode`]) →
//! `vm` (the reference interpreter; the same bytecode runs in the BPF VM).

pub mod affection;
pub mod ast;
pub mod bytecode;
pub mod compile;
pub mod diag;
pub mod lexer;
pub mod parser;
pub mod point;
pub mod sema;
pub mod vm;
