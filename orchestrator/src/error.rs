//! The errors of the `otf` command. Each keeps the library error it comes from as its source;
//! they are turned into text only at the command's edge (`main`), where the message is printed
//! and the exit status chosen.

use std::io;
use std::path::PathBuf;

use otf_script::ast::Span;
use otf_script::diag::{render_all, Diagnostic, SourceFile};
use otf_script::point::PointKind;

/// A failure that ends the command with exit status 1. [`Failure::is_rendered`] says whether
/// its text is printed as is (rendered diagnostics, already ending with a newline) or prefixed
/// with `error: `.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A plain refusal made by the command itself, with no underlying error (e.g. `otf run`
    /// without privilege, a kernel without a BPF feature otf needs), printed as
    /// `error: MESSAGE`. A failure that has an underlying error has its own variant keeping it
    /// as its source.
    #[error("{0}")]
    Message(String),
    /// A system call or file operation of `otf run` failed (a pipe, the `-c` command, the
    /// event loop's descriptors, a program's descriptor).
    #[error("{what}: {source}")]
    Session {
        /// What was being done, e.g. `cannot start -c command: pipe` or `epoll_ctl`.
        what: String,
        /// How it failed.
        #[source]
        source: io::Error,
    },
    /// `--otf-rcu-expedited` cannot read its knob.
    #[error(
        "--otf-rcu-expedited: cannot read {knob}: {source} (a kernel built with TINY_RCU has \
         no such knob; run without --otf-rcu-expedited)"
    )]
    NoExpediteKnob {
        /// The knob's path.
        knob: &'static str,
        /// Why it cannot be read.
        #[source]
        source: io::Error,
    },
    /// The otf BPF runtime failed: loading it, or reading its ring buffer.
    #[error("{what}: {source}")]
    Runtime {
        /// What was being done, e.g. `ring buffer`.
        what: &'static str,
        /// The runtime's error.
        #[source]
        source: otf_bpf::Error,
    },
    /// A probe group cannot be made over the loaded runtime.
    #[error("{group}: {source}")]
    Group {
        /// Which, e.g. `tracepoint probes`, `uprobes`.
        group: &'static str,
        /// The probe type's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Neither a script file nor `-e TEXT` was given.
    #[error("no script given: pass SCRIPT_FILE or -e TEXT")]
    NoScript,
    /// The script file cannot be read.
    #[error("cannot read script {}: {source}", path.display())]
    ReadScript {
        /// The script file.
        path: PathBuf,
        /// How reading it failed.
        #[source]
        source: io::Error,
    },
    /// The script is not valid (not UTF-8, or refused by the compiler): its diagnostics,
    /// rendered with file:line:col against the script.
    #[error("{}", render_all(diags, file))]
    Diagnostics {
        /// The errors (and the compiler's warnings).
        diags: Vec<Diagnostic>,
        /// The script they point into.
        file: Box<SourceFile>,
    },
    /// Probe points of the script do not resolve on this system: rendered as diagnostics at
    /// each point.
    #[error("{}", render_all(&errors.iter().map(Unresolved::diagnostic).collect::<Vec<_>>(), file))]
    Unresolved {
        /// Each point that did not resolve, in script order.
        errors: Vec<Unresolved>,
        /// The script the points are written in.
        file: Box<SourceFile>,
    },
    /// The code generator refused a handler (`otf check`).
    #[error("generating the {handler} handler: {source}")]
    Codegen {
        /// The handler's name (its program kind).
        handler: &'static str,
        /// Why it was refused.
        #[source]
        source: otf_codegen::Error,
    },
    /// `otf list` failed.
    #[error("{0}")]
    List(#[from] ListError),
}

impl Failure {
    /// Whether the text is rendered diagnostics, printed verbatim (else it is printed as
    /// `error: TEXT`).
    pub fn is_rendered(&self) -> bool {
        matches!(
            self,
            Failure::Diagnostics { .. } | Failure::Unresolved { .. }
        )
    }
}

/// Why a probe point does not resolve to kernel attachments.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    /// A `timer.*` period under the minimum.
    #[error(
        "timer period of {period_ns} ns is too short (minimum {} µs)",
        otf_hrtimer::MIN_PERIOD_NS / 1000
    )]
    TimerTooShort {
        /// The period asked for.
        period_ns: u64,
    },
    /// The tracepoints cannot be listed.
    #[error("{0}")]
    Tracepoint(#[from] otf_tracepoint::TraceError),
    /// No tracepoint matches a `kernel.trace` pattern.
    #[error(
        "kernel.trace({}): no tracepoint matches (see `otf list 'kernel.trace(\"*\")'`)",
        crate::resolve::quoted(pattern)
    )]
    NoTracepoint {
        /// The pattern.
        pattern: String,
    },
    /// A `kernel.function` point does not resolve.
    #[error("{0}")]
    Kprobe(#[from] otf_kprobes::ResolveError),
    /// A `process(...).function(...)` point does not resolve.
    #[error("{0}")]
    Uprobe(#[from] otf_uprobes_inode::ResolveError),
    /// A kernel point resolved to no attachment at all.
    #[error("probe point `{point}` matches nothing")]
    MatchesNothing {
        /// The point.
        point: PointKind,
    },
}

/// A probe point of the script that does not resolve, and where it is written.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Unresolved {
    /// Where the point is written.
    pub span: Span,
    /// Why it does not resolve.
    #[source]
    pub error: PointError,
}

impl Unresolved {
    /// The error diagnostic at the point.
    fn diagnostic(&self) -> Diagnostic {
        Diagnostic::error(self.error.to_string(), self.span)
    }
}

/// Why `otf list PATTERN` failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The pattern is not a probe point.
    #[error("cannot parse probe point pattern `{pattern}` (e.g. 'kernel.trace(\"sched_*\")')")]
    BadPattern {
        /// The pattern as given.
        pattern: String,
    },
    /// `process(...)` without its path.
    #[error("process(...) needs a path: process(\"/bin/ls\").function(\"*\")")]
    NoPath,
    /// `process(PATH)` without `.function(...)`.
    #[error("`process(PATH)` alone is not a probe point: add `.function(\"GLOB\")`")]
    ProcessAlone,
    /// The first components name no probe type.
    #[error("unknown probe point family `{family}` (try begin, end, {points})")]
    UnknownFamily {
        /// The components given, `.`-joined.
        family: String,
        /// Every probe type's point form, `, `-joined.
        points: String,
    },
    /// The tracepoints cannot be listed.
    #[error("{0}")]
    Tracepoint(#[from] otf_tracepoint::TraceError),
    /// The kernel's functions cannot be listed, or none matches.
    #[error("{0}")]
    Kprobe(#[from] otf_kprobes::ResolveError),
    /// The file's functions cannot be listed, or none matches.
    #[error("{0}")]
    Uprobe(#[from] otf_uprobes_inode::ResolveError),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_unreadable_script_keeps_the_io_error() {
        let e = Failure::ReadScript {
            path: PathBuf::from("/no/such.stp"),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(!e.is_rendered());
        assert_eq!(
            e.to_string(),
            "cannot read script /no/such.stp: entity not found"
        );
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.map(io::Error::kind), Some(io::ErrorKind::NotFound));
    }

    #[test]
    fn unresolved_points_render_as_diagnostics_and_keep_the_resolver_error() {
        let src = "probe process(\"/no/such/file\").function(\"main\") {}\n";
        let file = SourceFile::new("t.stp", src);
        let path = PathBuf::from("/no/such/file");
        let span = Span::new(6, 46);
        let unresolved = Unresolved {
            span,
            error: PointError::from(otf_uprobes_inode::ResolveError::NotFound { path }),
        };
        let resolver = unresolved
            .source()
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<otf_uprobes_inode::ResolveError>());
        assert!(
            matches!(
                resolver,
                Some(otf_uprobes_inode::ResolveError::NotFound { .. })
            ),
            "{resolver:?}"
        );
        let expected = render_all(
            &[Diagnostic::error(
                "/no/such/file: no such file (check the path given to process(...))",
                span,
            )],
            &file,
        );
        let e = Failure::Unresolved {
            errors: vec![unresolved],
            file: Box::new(file),
        };
        assert!(e.is_rendered());
        assert_eq!(e.to_string(), expected);
        assert!(expected.contains("t.stp:1:7"), "{expected}");
    }

    #[test]
    fn a_failed_system_call_keeps_the_io_error() {
        let e = Failure::Session {
            what: "cannot start -c command `/no/such`".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(!e.is_rendered());
        assert_eq!(
            e.to_string(),
            format!(
                "cannot start -c command `/no/such`: {}",
                io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(libc::ENOENT));
    }

    #[test]
    fn a_missing_expedite_knob_reads_as_before_and_keeps_the_io_error() {
        let knob = "/sys/kernel/rcu_expedited";
        let enoent = || io::Error::from_raw_os_error(libc::ENOENT);
        let e = Failure::NoExpediteKnob {
            knob,
            source: enoent(),
        };
        let before = format!(
            "--otf-rcu-expedited: cannot read {knob}: {} (a kernel built with TINY_RCU \
             has no such knob; run without --otf-rcu-expedited)",
            enoent()
        );
        assert_eq!(e.to_string(), before);
        let source = e.source().and_then(|s| s.downcast_ref::<io::Error>());
        assert_eq!(source.and_then(io::Error::raw_os_error), Some(libc::ENOENT));
    }

    #[test]
    fn a_runtime_that_does_not_load_keeps_the_runtime_error() {
        // Refused before any system call: no privilege needed.
        let image = otf_bpf::RuntimeImage {
            globals_init: vec![0; otf_script::bytecode::MAX_GLOBALS + 1],
            ..Default::default()
        };
        let Err(first) = otf_bpf::Runtime::load_with(&image, &Default::default()) else {
            panic!("an image with too many globals loaded");
        };
        let text = first.to_string();
        let e = Failure::Runtime {
            what: "cannot load the otf BPF runtime",
            source: first,
        };
        assert_eq!(
            e.to_string(),
            format!("cannot load the otf BPF runtime: {text}")
        );
        assert!(text.starts_with("too many globals: "), "{text}");
        let codegen = e
            .source()
            .and_then(|s| s.downcast_ref::<otf_bpf::Error>())
            .and_then(|s| s.source())
            .and_then(|s| s.downcast_ref::<otf_codegen::Error>());
        assert!(codegen.is_some(), "{e:?}");
    }

    #[test]
    fn a_probe_group_failure_keeps_the_probe_types_error() {
        let e = Failure::Group {
            group: "uprobes",
            source: Box::new(otf_uprobes_inode::GroupError::DuplicatePidx(4)),
        };
        assert_eq!(e.to_string(), "uprobes: pidx 4 given twice");
        let source = e
            .source()
            .and_then(|s| s.downcast_ref::<otf_uprobes_inode::GroupError>());
        assert!(
            matches!(
                source,
                Some(otf_uprobes_inode::GroupError::DuplicatePidx(4))
            ),
            "{source:?}"
        );
    }
}
