//! The bridge to otf-script: compile a source file and extract what the orchestrator needs
//! (units with their points, affection pairs, the compiled program).

use otf_script::diag::{Diagnostic, SourceFile};
use otf_script::Compiled;

use crate::resolve::UnitIn;

/// What the orchestrator needs from a compiled script.
#[derive(Debug)]
pub struct Front {
    /// Every unit (probe statement component), in script order; `unit` is its condition id.
    pub units: Vec<UnitIn>,
    /// Unit-level affection: `(writer unit, affected unit)`.
    pub affection: Vec<(usize, usize)>,
    /// Warnings of the compiler.
    pub warnings: Vec<Diagnostic>,
    /// The compiled script.
    pub compiled: Compiled,
}

/// Compiles `src`.
pub fn compile(src: &SourceFile) -> Result<Front, Vec<Diagnostic>> {
    let compiled = otf_script::compile_source(src)?;
    let units = compiled
        .script
        .units
        .iter()
        .enumerate()
        .map(|(i, u)| UnitIn {
            unit: i,
            kind: u.point.clone(),
            span: u.point_span,
            optional: u.optional,
            has_cond: u.cond.is_some(),
        })
        .collect();
    Ok(Front {
        units,
        affection: compiled.affection.pairs.clone(),
        warnings: compiled.warnings.clone(),
        compiled,
    })
}
