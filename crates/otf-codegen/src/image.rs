//! What the code generator compiles: the script's code and one slot per pidx.

use otf_script::bytecode::{Insn, MAX_CODE, MAX_GLOBALS};

use crate::layout::{MAX_CONDS, MAX_PROBES, MAX_REEVAL_PER_PROBE};
use crate::Error;

/// The kernel-side description of one pidx (one kernel attachment). Many pidx may share one
/// compiled unit (same offsets): they share one generated body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeSlot {
    /// Code offset of the body (starts with the inlined condition check, ends with `Next`);
    /// `None`: hits are only counted.
    pub body: Option<u32>,
    /// Code offset of the entry program of a `.return` probe using `@entry` (run by the
    /// attachment with [`crate::layout::entry_cookie`]); `None` if none.
    pub entry: Option<u32>,
    /// The probe's own condition id, if it has a condition: a hit whose cached condition bit
    /// is clear is skipped before taking any lock.
    pub cond: Option<u32>,
    /// Condition ids this body can affect, re-evaluated after it runs
    /// (at most [`MAX_REEVAL_PER_PROBE`]).
    pub reeval: Vec<u32>,
    /// Lock stripes taken around the body and the re-evaluations (bit `g % 64` for global `g`).
    pub lock_mask: u64,
    /// The hit runs in a safe context and may wake user space with a notification.
    pub safe_context: bool,
    /// A return probe (`returnval()` is meaningful).
    pub is_return: bool,
    /// Another pidx whose hit runs right after this one's, from the same attachment (at
    /// most [`MAX_CHAIN`](crate::layout::MAX_CHAIN) in a chain). The kernel attaches one program at most once to one
    /// perf tracepoint (EEXIST), so several probes on one tracepoint share one attachment
    /// and are chained.
    pub chain: Option<u32>,
    /// The body runs in user space: a hit sends a `REC_DEFER` record (after the cached
    /// condition bit) and user space runs the body. For `timer.*` bodies that use what only
    /// user space does yet (`otf_script::vm::user_space_only`: some `sprintf` formats, the
    /// `_warn` string readers, histogram prints larger than an output record).
    pub deferred: bool,
    /// Who this is, for error messages: the probe point and its source location.
    pub label: String,
    /// `pp()` of its hits, as a string value (truncated to MAXSTRINGLEN - 1 bytes).
    pub pp: String,
    /// `probefunc()` of its hits, as a string value (empty unless a function probe).
    pub probefunc: String,
}

/// Everything the runtime needs to run a compiled script, independent of the compiler's
/// types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeImage {
    /// All code: bodies, conditions and entry programs ([`MAX_CODE`] at most).
    pub code: Vec<Insn>,
    /// Probe slots, indexed by pidx ([`MAX_PROBES`] at most).
    pub probes: Vec<ProbeSlot>,
    /// Code offset of each condition program (ends with `Ret`), indexed by cond id.
    pub cond_code: Vec<u32>,
    /// Initial cached condition bits, indexed by cond id (missing entries: false). They must
    /// be the conditions' values over `globals_init`: a hit whose cached bit is clear is
    /// skipped.
    pub cond_init: Vec<bool>,
    /// Initial values of the globals; its length is the number of globals.
    pub globals_init: Vec<i64>,
    /// The maps of the script's arrays and aggregates, one per such global.
    pub maps: Vec<crate::maps::MapSpec>,
    /// `target()`.
    pub target_pid: i64,
    /// The script's string literals ([`Op::SPush`](otf_script::bytecode::Op::SPush) ids).
    pub strings: Vec<String>,
}

impl RuntimeImage {
    /// Check the image against the runtime's capacity and its internal references.
    pub fn validate(&self) -> Result<(), Error> {
        let msg = |s: String| Err(Error::Image(s));
        let ncode = self.code.len();
        if ncode > MAX_CODE {
            return msg(format!(
                "script too large: {ncode} instructions, the runtime holds {MAX_CODE}"
            ));
        }
        if self.probes.len() > MAX_PROBES {
            return msg(format!(
                "too many probe attachments: {}, the runtime holds {MAX_PROBES}",
                self.probes.len()
            ));
        }
        if self.cond_code.len() > MAX_CONDS || self.cond_init.len() > MAX_CONDS {
            return msg(format!(
                "too many probe conditions: {}, the runtime holds {MAX_CONDS}",
                self.cond_code.len()
            ));
        }
        if self.globals_init.len() > MAX_GLOBALS {
            return msg(format!(
                "too many globals: {}, the runtime holds {MAX_GLOBALS}",
                self.globals_init.len()
            ));
        }
        let in_code = |what: &str, off: u32| -> Result<(), Error> {
            if (off as usize) < ncode {
                Ok(())
            } else {
                Err(Error::Image(format!(
                    "{what} starts at {off}, outside the code (length {ncode})"
                )))
            }
        };
        for (c, &off) in self.cond_code.iter().enumerate() {
            in_code(&format!("condition {c}"), off)?;
        }
        for (pidx, p) in self.probes.iter().enumerate() {
            if let Some(b) = p.body {
                in_code(&format!("body of pidx {pidx}"), b)?;
            }
            if let Some(e) = p.entry {
                in_code(&format!("entry program of pidx {pidx}"), e)?;
            }
            if let Some(c) = p.chain {
                if c as usize >= self.probes.len() {
                    return msg(format!(
                        "pidx {pidx} is chained to pidx {c}, which does not exist"
                    ));
                }
            }
            if p.reeval.len() > MAX_REEVAL_PER_PROBE {
                return msg(format!(
                    "pidx {pidx} can affect {} conditions, the runtime re-evaluates at most {MAX_REEVAL_PER_PROBE}",
                    p.reeval.len()
                ));
            }
            for &c in p.reeval.iter().chain(p.cond.iter()) {
                if c as usize >= self.cond_code.len() {
                    return msg(format!(
                        "pidx {pidx} uses condition {c}, which does not exist"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otf_script::bytecode::Op;

    #[test]
    fn validation_names_the_problem() {
        let mut img = RuntimeImage::default();
        assert!(img.validate().is_ok());
        img.probes.push(ProbeSlot {
            body: Some(3),
            ..Default::default()
        });
        let e = img.validate().unwrap_err().to_string();
        assert!(e.contains("body of pidx 0"), "{e}");
        img.code = vec![Insn::op(Op::Next); 4];
        assert!(img.validate().is_ok());
        img.probes[0].reeval = vec![0];
        let e = img.validate().unwrap_err().to_string();
        assert!(e.contains("condition 0"), "{e}");
        img.globals_init = vec![0; MAX_GLOBALS + 1];
        img.probes[0].reeval.clear();
        assert!(img.validate().is_err());
    }
}
