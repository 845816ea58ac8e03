//! Affection analysis: which probes can affect the condition of which.
//!
//! Every (probe statement, component) pair is a *unit* ([`crate::sema::UnitInfo`]): it has
//! its own condition and shares its statement's body. Unit W *can affect* unit P when the
//! globals written by W's body (including through called functions, transitively) intersect
//! the globals read by P's condition. A unit can affect itself. A condition over several
//! globals is re-evaluated as a whole when any one of them is written.
//!
//! After W's body runs, the runtime re-evaluates the conditions in `reeval[W]` and flips the
//! armed state of the units whose condition changed.

use crate::sema::Checked;

/// The result of [`analyse`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affection {
    /// Every pair (writer unit, affected unit), sorted.
    pub pairs: Vec<(usize, usize)>,
    /// Per unit: the units whose condition it must re-evaluate after its body (sorted).
    pub reeval: Vec<Vec<usize>>,
}

impl Affection {
    /// `true` when unit `writer` can affect the condition of unit `affected`.
    pub fn affects(&self, writer: usize, affected: usize) -> bool {
        self.pairs.binary_search(&(writer, affected)).is_ok()
    }
}

/// Compute which unit can affect which unit's condition. Units are indexes into
/// [`Checked::units`].
pub fn analyse(checked: &Checked) -> Affection {
    let n = checked.units.len();
    let mut pairs = Vec::new();
    let mut reeval = vec![Vec::new(); n];
    for (w, wu) in checked.units.iter().enumerate() {
        let Some(access) = checked.probe_access.get(wu.probe) else {
            continue;
        };
        for (p, pu) in checked.units.iter().enumerate() {
            if pu.has_cond && !pu.cond_reads.is_disjoint(&access.writes) {
                pairs.push((w, p));
                reeval[w].push(p);
            }
        }
    }
    Affection { pairs, reeval }
}
