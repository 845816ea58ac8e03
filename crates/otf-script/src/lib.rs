//! The otf script language: a subset of SystemTap's.
//!
//! The pipeline is `parser` (text to [`ast`]) → `sema` (checks, probe points, locals) →
//! `affection` (which writer re-evaluates which condition) → `compile` (to [`bytecode`]) →
//! `vm` (the reference interpreter; the same bytecode runs in the BPF VM); `format` renders
//! output records. [`compile_source`] runs the whole pipeline on a source file and
//! [`check_source`] returns every diagnostic it finds.

pub mod affection;
pub mod ast;
pub mod bytecode;
pub mod compile;
pub mod diag;
pub mod display;
pub mod format;
pub mod hist;
pub mod kinds;
pub mod lexer;
pub mod mem;
pub mod memdump;
pub mod parser;
pub mod point;
pub mod preprocess;
pub mod sema;
pub mod store;
pub mod strfn;
pub mod types;
pub mod vm;

use diag::{Diagnostic, SourceFile};

/// A script compiled by [`compile_source`].
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    /// The bytecode, units, formats and globals.
    pub script: compile::CompiledScript,
    /// Which unit can affect which unit's condition.
    pub affection: affection::Affection,
    /// Warnings of the whole front end (the script compiled despite them).
    pub warnings: Vec<Diagnostic>,
}

/// Run the whole front end on a source file: parse, check, analyse affection, compile.
/// On failure returns every diagnostic found (errors and warnings, in source order).
pub fn compile_source(file: &SourceFile) -> Result<Compiled, Vec<Diagnostic>> {
    let parsed = parser::parse(file);
    if parsed.has_errors() {
        return Err(parsed.diags);
    }
    let checked = sema::check(file, &parsed.script);
    let mut diags = parsed.diags;
    diags.extend(checked.diags.iter().cloned());
    if diag::has_errors(&diags) {
        diags.sort_by_key(|d| d.span.lo);
        return Err(diags);
    }
    let affection = affection::analyse(&checked);
    match compile::compile(&checked, &affection) {
        Ok(script) => Ok(Compiled {
            script,
            affection,
            warnings: diags,
        }),
        Err(errs) => {
            diags.extend(errs);
            diags.sort_by_key(|d| d.span.lo);
            Err(diags)
        }
    }
}

/// Every diagnostic of the whole front end (parse, check, compile), errors and warnings,
/// in source order. Used by `otf check`-style harnesses and the fuzz and malformed tests.
pub fn check_source(file: &SourceFile) -> Vec<Diagnostic> {
    match compile_source(file) {
        Ok(c) => c.warnings,
        Err(d) => d,
    }
}
