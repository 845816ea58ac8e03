//! Finding tracepoints: tracefs, glob matching, and the safe-context rule.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// One kernel tracepoint, `SUBSYSTEM:NAME`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tracepoint {
    /// The subsystem (tracefs directory), e.g. `sched`.
    pub subsystem: String,
    /// The event name, e.g. `sched_switch`.
    pub name: String,
}

impl Tracepoint {
    /// `SUBSYSTEM:NAME`.
    pub fn new(subsystem: &str, name: &str) -> Tracepoint {
        Tracepoint {
            subsystem: subsystem.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for Tracepoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.subsystem, self.name)
    }
}

/// Why tracepoints could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// tracefs is not available (not mounted and we may not mount it, or unreadable).
    #[error("tracepoints cannot be listed: {0}")]
    NoTracefs(String),
    /// tracefs is not mounted and mounting it failed.
    #[error(
        "tracepoints cannot be listed: tracefs is not mounted and mounting it at {mnt} failed: {0}",
        mnt = TRACEFS
    )]
    Mount(#[source] io::Error),
    /// Reading tracefs failed.
    #[error("cannot read {path}: {1}", path = .0.display())]
    Io(PathBuf, #[source] io::Error),
}

use otf_attach::tracefs::MOUNT as TRACEFS;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The tracefs `events` directory. When tracefs is not mounted and we are root, mounts it at
/// `/sys/kernel/tracing` (as `mount -t tracefs nodev /sys/kernel/tracing` would).
pub fn events_dir() -> Result<PathBuf, TraceError> {
    for ev in otf_attach::tracefs::candidates("events") {
        match std::fs::metadata(&ev) {
            Ok(m) if m.is_dir() => return Ok(ev),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(TraceError::NoTracefs(format!(
                    "{} is not readable (run as root)",
                    ev.display()
                )))
            }
            _ => {}
        }
    }
    if !is_root() {
        return Err(TraceError::NoTracefs(format!(
            "tracefs is not mounted at {TRACEFS} and only root may mount it (run as root)"
        )));
    }
    mount_tracefs()?;
    let ev = Path::new(TRACEFS).join("events");
    if ev.is_dir() {
        Ok(ev)
    } else {
        Err(TraceError::NoTracefs(format!(
            "mounted tracefs at {TRACEFS} but it has no events directory"
        )))
    }
}

fn mount_tracefs() -> Result<(), TraceError> {
    otf_attach::tracefs::mount().map_err(TraceError::Mount)
}

/// Subsystems of `events/` that are not kernel tracepoints: `ftrace` holds ftrace's own
/// internal events (`ftrace:function`, `ftrace:print`, ...), which BPF cannot attach to.
const NOT_TRACEPOINTS: &[&str] = &["ftrace"];

/// Every tracepoint of the running kernel (directories of `events/` that have an `id`, except
/// ftrace's internal events), sorted.
pub fn list_all() -> Result<Vec<Tracepoint>, TraceError> {
    let dir = events_dir()?;
    list_in(&dir)
}

/// Every tracepoint below the `events` directory `dir`, sorted.
pub fn list_in(dir: &Path) -> Result<Vec<Tracepoint>, TraceError> {
    let rd = |p: &Path| std::fs::read_dir(p).map_err(|e| TraceError::Io(p.to_path_buf(), e));
    let mut out = Vec::new();
    for sub in rd(dir)? {
        let sub = sub.map_err(|e| TraceError::Io(dir.to_path_buf(), e))?;
        let sub_path = sub.path();
        if !sub_path.is_dir() {
            continue;
        }
        let subsystem = sub.file_name().to_string_lossy().into_owned();
        if NOT_TRACEPOINTS.contains(&subsystem.as_str()) {
            continue;
        }
        // A subsystem gone since the listing (its module unloaded) has no events; any other
        // failure (out of file descriptors) is the error, not "no tracepoint matches".
        let events = match std::fs::read_dir(&sub_path) {
            Ok(events) => events,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(TraceError::Io(sub_path, e)),
        };
        for ev in events {
            let ev = ev.map_err(|e| TraceError::Io(sub_path.clone(), e))?;
            if ev.path().join("id").is_file() {
                out.push(Tracepoint {
                    subsystem: subsystem.clone(),
                    name: ev.file_name().to_string_lossy().into_owned(),
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The perf event id of a tracepoint (`events/SUBSYS/NAME/id`).
pub fn tracepoint_id(tp: &Tracepoint) -> Result<u64, TraceError> {
    let p = events_dir()?.join(&tp.subsystem).join(&tp.name).join("id");
    let s = std::fs::read_to_string(&p).map_err(|e| TraceError::Io(p.clone(), e))?;
    s.trim().parse().map_err(|_| {
        TraceError::Io(
            p,
            io::Error::new(io::ErrorKind::InvalidData, "not a tracepoint id"),
        )
    })
}

pub use otf_core::glob::glob_match;

/// The tracepoints of `all` matching `pattern`: `NAME` (any subsystem) or `SUBSYS:NAME`, each
/// part with `*` and `?` globs. The result keeps the order of `all` (sorted).
pub fn resolve_in(pattern: &str, all: &[Tracepoint]) -> Vec<Tracepoint> {
    let (sub, name) = match pattern.split_once(':') {
        Some((s, n)) => (Some(s), n),
        None => (None, pattern),
    };
    all.iter()
        .filter(|tp| sub.is_none_or(|s| glob_match(s, &tp.subsystem)) && glob_match(name, &tp.name))
        .cloned()
        .collect()
}

/// [`resolve_in`] over this kernel's tracepoints.
pub fn resolve(pattern: &str) -> Result<Vec<Tracepoint>, TraceError> {
    Ok(resolve_in(pattern, &list_all()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_mount_keeps_its_cause() {
        let e = TraceError::Mount(io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(
            e.to_string(),
            "tracepoints cannot be listed: tracefs is not mounted and mounting it at \
             /sys/kernel/tracing failed: permission denied"
        );
        let source = std::error::Error::source(&e).expect("the mount error");
        assert_eq!(
            source.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::PermissionDenied)
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("sched_*", "sched_switch"));
        assert!(glob_match("*", ""));
        assert!(glob_match("s?hed", "sched"));
        assert!(!glob_match("s?hed", "shed"));
        assert!(glob_match("*_enter_*", "sys_enter_read"));
        assert!(!glob_match("sched", "sched_switch"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
    }

    fn all() -> Vec<Tracepoint> {
        vec![
            Tracepoint::new("sched", "sched_process_fork"),
            Tracepoint::new("sched", "sched_switch"),
            Tracepoint::new("syscalls", "sys_enter_read"),
            Tracepoint::new("syscalls", "sys_exit_read"),
        ]
    }

    #[test]
    fn bare_name_matches_any_subsystem() {
        let r = resolve_in("sched_switch", &all());
        assert_eq!(r, vec![Tracepoint::new("sched", "sched_switch")]);
        assert_eq!(resolve_in("sys_*_read", &all()).len(), 2);
        assert_eq!(resolve_in("sched:*", &all()).len(), 2);
        assert_eq!(resolve_in("s*:sys_exit_read", &all()).len(), 1);
        assert!(resolve_in("nope", &all()).is_empty());
    }
}
