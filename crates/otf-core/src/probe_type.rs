//! [`ProbeType`]: what otf knows about one probe type, written once in its crate.
//!
//! Each probe-type crate exports one `pub const PROBE_TYPE: ProbeType` (`otf_kprobes::PROBE_TYPE`,
//! `otf_uprobes_inode::PROBE_TYPE`, …). The orchestrator reads it to name the type's group, to
//! pick the `--otf-debug` flavor of a probe, to decide whether a probe body may notify
//! user space (`otf check -v` prints the reason), and to recognise the type's points in
//! `otf list` patterns. The type's group returns it ([`ProbeGroup::probe_type`]), which gives
//! the group its name, its safe context and the words of its `--otf-debug` lines.
//!
//! [`ProbeGroup::probe_type`]: crate::ProbeGroup::probe_type

use crate::decision::Vocabulary;
use crate::group::SafeContext;
use crate::ids::Flavor;

/// The description of one probe type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeType {
    /// The name of the type's probe group: [`ProbeGroup::name`](crate::ProbeGroup::name),
    /// `group=` in `otf check`, e.g. `kprobes`.
    pub name: &'static str,
    /// The probe-point family, as its dotted component names: `kernel.function`,
    /// `process.function`, `kernel.trace`, `timer`.
    pub family: &'static str,
    /// The point as a user writes it, arguments as placeholders: `kernel.function("GLOB")`,
    /// `process("PATH").function("GLOB")`.
    pub point: &'static str,
    /// The components that may follow [`point`](ProbeType::point) (one of them at most):
    /// `call` and `return` for function probes (`kernel.function("GLOB")[.call|.return]`), the
    /// units of `timer`.
    pub suffixes: &'static [&'static str],
    /// The flavor of the type's probes (of its entry probes, for function probes), named in
    /// their `--otf-debug` lines.
    pub flavor: Flavor,
    /// The flavor of the type's `.return` probes, if it has any.
    pub return_flavor: Option<Flavor>,
    /// The words of the `--otf-debug` lines of the type's probes, entry and return alike
    /// (SystemTap's, which follow how the type is armed: kprobes register disabled, uprobes and
    /// tracepoints are not registered, timers are not started).
    pub vocabulary: Vocabulary,
    /// Whether a body of the type's probes may wake otf itself when it flips a condition, and
    /// why (the same for every probe of the type).
    pub safe_context: SafeContext,
}

impl ProbeType {
    /// The flavor of an entry probe (`ret == false`) or a `.return` probe of this type. A type
    /// without return probes has one flavor for both.
    pub fn flavor(&self, ret: bool) -> Flavor {
        match self.return_flavor {
            Some(r) if ret => r,
            _ => self.flavor,
        }
    }

    /// Whether the component names `names` (`["kernel", "function", "return"]`) are a point
    /// of this family: `Some(None)` for the family alone, `Some(Some(suffix))` when one of
    /// [`suffixes`](ProbeType::suffixes) follows, `None` otherwise.
    pub fn matches<'n>(&self, names: &[&'n str]) -> Option<Option<&'n str>> {
        let family: Vec<&str> = self.family.split('.').collect();
        if names.len() < family.len() || names[..family.len()] != family[..] {
            return None;
        }
        match &names[family.len()..] {
            [] => Some(None),
            [s] if self.suffixes.contains(s) => Some(Some(*s)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Decision;

    const WORDS: Vocabulary = Vocabulary {
        start_disarmed: Decision::RegisteringAsDisabled,
        arm: Decision::Enabling,
        disarm: Decision::Disabling,
    };

    const FUNCTIONS: ProbeType = ProbeType {
        name: "kprobes",
        family: "kernel.function",
        point: "kernel.function(\"GLOB\")",
        suffixes: &["call", "return"],
        flavor: Flavor::Kprobe,
        return_flavor: Some(Flavor::Kretprobe),
        vocabulary: WORDS,
        safe_context: SafeContext::safe("test"),
    };

    const TRACE: ProbeType = ProbeType {
        name: "tracepoint",
        family: "kernel.trace",
        point: "kernel.trace(\"GLOB\")",
        suffixes: &[],
        flavor: Flavor::Tracepoint,
        return_flavor: None,
        vocabulary: WORDS,
        safe_context: SafeContext::not_safe("test"),
    };

    #[test]
    fn flavor_of_entry_and_return() {
        assert_eq!(FUNCTIONS.flavor(false), Flavor::Kprobe);
        assert_eq!(FUNCTIONS.flavor(true), Flavor::Kretprobe);
        assert_eq!(TRACE.flavor(true), Flavor::Tracepoint);
    }

    #[test]
    fn matches_family_and_one_suffix() {
        assert_eq!(FUNCTIONS.matches(&["kernel", "function"]), Some(None));
        assert_eq!(
            FUNCTIONS.matches(&["kernel", "function", "return"]),
            Some(Some("return"))
        );
        assert_eq!(FUNCTIONS.matches(&["kernel", "function", "entry"]), None);
        assert_eq!(
            FUNCTIONS.matches(&["kernel", "function", "call", "return"]),
            None
        );
        assert_eq!(FUNCTIONS.matches(&["kernel", "trace"]), None);
        assert_eq!(FUNCTIONS.matches(&["kernel"]), None);
        assert_eq!(TRACE.matches(&["kernel", "trace"]), Some(None));
        assert_eq!(TRACE.matches(&["kernel", "trace", "call"]), None);
    }
}
