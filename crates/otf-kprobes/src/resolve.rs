//! Resolution of `kernel.function(GLOB)` against the running kernel's probeable functions, and
//! detection of kprobe support. Pure user space (reads /sys and /proc).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use otf_core::glob::{did_you_mean, glob_match, has_wildcard, suggestions};

/// One kernel attachment point: a kernel function at its entry or its return.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KprobeTarget {
    /// The function's name, as the kernel knows it (e.g. `vfs_read`, `foo.isra.0`).
    pub symbol: String,
    /// The module that defines it, or `None` for vmlinux.
    pub module: Option<String>,
    /// `true` for a `.return` probe (kretprobe).
    pub ret: bool,
}

/// Where the list of probeable functions came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolSource {
    /// `available_filter_functions` (tracefs): exactly what ftrace, hence kprobe_multi, can probe.
    AvailableFilterFunctions,
    /// `/proc/kallsyms` text symbols minus the kprobe blacklist.
    Kallsyms,
}

/// A resolution with the bookkeeping that `-v` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KprobeResolution {
    /// The targets, sorted by name, one per name.
    pub targets: Vec<KprobeTarget>,
    /// How many matching kernel text symbols were skipped because the kernel refuses to probe
    /// them (blacklisted or not traceable).
    pub skipped: usize,
    /// Where the probeable list came from.
    pub source: SymbolSource,
}

/// Why a `kernel.function(...)` could not be resolved.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ResolveError {
    /// Neither tracefs nor `/proc/kallsyms` could be read.
    #[error("cannot read the kernel's function list ({}/proc/kallsyms: {source}); mount tracefs on /sys/kernel/tracing or run as root", tried_note(.tried))]
    NoSymbolList {
        /// The tracefs lists tried before `/proc/kallsyms`, and how reading each failed.
        tried: Vec<(PathBuf, Arc<io::Error>)>,
        /// How reading `/proc/kallsyms`, the last resort, failed.
        #[source]
        source: Arc<io::Error>,
    },
    /// No probeable function matched.
    #[error("kernel.function(\"{pattern}\"): no probeable kernel function matches{}{}", skipped_note(*.skipped), did_you_mean(.suggestions))]
    FunctionNotFound {
        /// The name or glob.
        pattern: String,
        /// Matching symbols the kernel refuses to probe.
        skipped: usize,
        /// Close names, best first.
        suggestions: Vec<String>,
    },
    /// An empty function name.
    #[error("kernel.function(\"\"): empty function name")]
    EmptyPattern,
}

/// `PATH: ERROR; ` for each list tried before `/proc/kallsyms`.
fn tried_note(tried: &[(PathBuf, Arc<io::Error>)]) -> String {
    tried
        .iter()
        .map(|(p, e)| format!("{}: {e}; ", p.display()))
        .collect()
}

fn skipped_note(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} matching symbol(s) cannot be probed: blacklisted or not traceable)")
    }
}

/// The kernel's function lists, loaded once and resolved against many globs.
#[derive(Clone, Debug, Default)]
pub struct KernelSymbols {
    /// Probeable functions (name, module), sorted and deduplicated.
    probeable: Vec<(String, Option<String>)>,
    /// All text symbols of /proc/kallsyms (names, sorted, deduplicated; empty when unreadable),
    /// used only to count what is skipped. Loaded on first use when `probeable` came from
    /// tracefs: formatting 160,000 kallsyms lines costs the kernel ~0.5 s under emulation.
    text: OnceLock<Vec<String>>,
    /// Where `probeable` came from.
    source: Option<SymbolSource>,
}

fn read(path: &Path) -> io::Result<String> {
    fs::read_to_string(path)
}

impl KernelSymbols {
    /// Loads the running kernel's lists: `available_filter_functions` when present, else
    /// `/proc/kallsyms` text symbols minus `/sys/kernel/debug/kprobes/blacklist` (when readable).
    /// With tracefs, `/proc/kallsyms` is read later, and only if a skipped count is needed.
    pub fn load() -> Result<KernelSymbols, ResolveError> {
        let blacklist = read(Path::new("/sys/kernel/debug/kprobes/blacklist")).unwrap_or_default();
        let mut tried = Vec::new();
        for p in otf_attach::tracefs::candidates("available_filter_functions") {
            match read(&p) {
                Ok(afs) => {
                    let (probeable, source) = probeable_lists(Some(&afs), None, &blacklist);
                    return Ok(KernelSymbols {
                        probeable,
                        text: OnceLock::new(),
                        source: Some(source),
                    });
                }
                Err(e) => tried.push((p, Arc::new(e))),
            }
        }
        match read(Path::new("/proc/kallsyms")) {
            Ok(k) => Ok(KernelSymbols::from_lists(None, Some(&k), &blacklist)),
            Err(e) => Err(ResolveError::NoSymbolList {
                tried,
                source: Arc::new(e),
            }),
        }
    }

    /// Builds the lists from file contents (for tests and for callers that cache them):
    /// `afs` = `available_filter_functions` (`name` or `name [module]` per line), `kallsyms` =
    /// `/proc/kallsyms`, `blacklist` = kprobes blacklist (`0xstart-0xend\tname` per line).
    /// With `afs`, it defines what is probeable; otherwise kallsyms text symbols are.
    pub fn from_lists(afs: Option<&str>, kallsyms: Option<&str>, blacklist: &str) -> KernelSymbols {
        let (probeable, source) = probeable_lists(afs, kallsyms, blacklist);
        KernelSymbols {
            probeable,
            text: OnceLock::from(text_symbols(kallsyms.unwrap_or_default())),
            source: Some(source),
        }
    }

    /// The kallsyms text symbol names, read from `/proc/kallsyms` on first use.
    fn text(&self) -> &[String] {
        self.text
            .get_or_init(|| text_symbols(&read(Path::new("/proc/kallsyms")).unwrap_or_default()))
    }

    /// Number of probeable functions.
    pub fn len(&self) -> usize {
        self.probeable.len()
    }

    /// Whether no function is probeable.
    pub fn is_empty(&self) -> bool {
        self.probeable.is_empty()
    }

    /// Resolves one glob against these lists: the probeable functions it names, sorted by
    /// name. Reads nothing more unless nothing matches (the error counts skipped symbols).
    pub fn targets(&self, glob: &str, ret: bool) -> Result<Vec<KprobeTarget>, ResolveError> {
        if glob.is_empty() {
            return Err(ResolveError::EmptyPattern);
        }
        let targets: Vec<KprobeTarget> = self
            .probeable
            .iter()
            .filter(|(n, _)| glob_match(glob, n))
            .map(|(n, m)| KprobeTarget {
                symbol: n.clone(),
                module: m.clone(),
                ret,
            })
            .collect();
        if targets.is_empty() {
            let sugg = if has_wildcard(glob) {
                Vec::new()
            } else {
                suggestions(glob, self.probeable.iter().map(|(n, _)| n.as_str()), 3)
            };
            return Err(ResolveError::FunctionNotFound {
                pattern: glob.to_string(),
                skipped: self.skipped(glob, &targets),
                suggestions: sugg,
            });
        }
        Ok(targets)
    }

    /// Resolves one glob against these lists, counting the matching text symbols the kernel
    /// refuses to probe (what `otf check -v` prints).
    pub fn resolve(&self, glob: &str, ret: bool) -> Result<KprobeResolution, ResolveError> {
        let targets = self.targets(glob, ret)?;
        Ok(KprobeResolution {
            skipped: self.skipped(glob, &targets),
            targets,
            source: self.source.unwrap_or(SymbolSource::Kallsyms),
        })
    }

    /// How many kallsyms text symbols match `glob` but are not among `targets`.
    fn skipped(&self, glob: &str, targets: &[KprobeTarget]) -> usize {
        let probeable_names: BTreeSet<&str> = targets.iter().map(|t| t.symbol.as_str()).collect();
        self.text()
            .iter()
            .filter(|n| glob_match(glob, n) && !probeable_names.contains(n.as_str()))
            .count()
    }
}

/// The probeable list and its source: `afs` when given, else kallsyms text symbols; minus the
/// blacklist; sorted, one entry per name.
fn probeable_lists(
    afs: Option<&str>,
    kallsyms: Option<&str>,
    blacklist: &str,
) -> (Vec<(String, Option<String>)>, SymbolSource) {
    let black: BTreeSet<&str> = blacklist
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let (mut probeable, source) = match afs {
        Some(afs) => (
            afs.lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    let name = it.next()?;
                    Some((name.to_string(), module_of(it.next())))
                })
                .collect::<Vec<_>>(),
            SymbolSource::AvailableFilterFunctions,
        ),
        None => (
            kallsyms_text(kallsyms.unwrap_or_default())
                .map(|(name, module)| (name.to_string(), module_of(module)))
                .collect(),
            SymbolSource::Kallsyms,
        ),
    };
    probeable.retain(|(n, _)| !black.contains(n.as_str()));
    probeable.sort();
    probeable.dedup_by(|a, b| a.0 == b.0);
    (probeable, source)
}

/// `[module]` → `module`.
fn module_of(field: Option<&str>) -> Option<String> {
    field.map(|m| m.trim_matches(['[', ']']).to_string())
}

/// The text (`t`/`T`) symbols of a kallsyms listing: (name, `[module]` field).
fn kallsyms_text(kallsyms: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    kallsyms.lines().filter_map(|line| {
        let mut it = line.split_whitespace();
        let (_addr, kind, name) = (it.next()?, it.next()?, it.next()?);
        matches!(kind, "t" | "T").then(|| (name, it.next()))
    })
}

/// The sorted, deduplicated text symbol names of a kallsyms listing.
fn text_symbols(kallsyms: &str) -> Vec<String> {
    let mut text: Vec<String> = kallsyms_text(kallsyms)
        .map(|(n, _)| n.to_string())
        .collect();
    text.sort_unstable();
    text.dedup();
    text
}

/// Resolves `kernel.function(glob)` (`.return` when `ret`) on the running kernel, with the
/// count of skipped symbols. Loads the lists each call: use [`KernelSymbols`] for many globs.
pub fn resolve_verbose(glob: &str, ret: bool) -> Result<KprobeResolution, ResolveError> {
    KernelSymbols::load()?.resolve(glob, ret)
}

/// Resolves `kernel.function(glob)` (`.return` when `ret`) on the running kernel: the probeable
/// functions matching `glob` (`*`, `?`), sorted by name. Functions the kernel refuses to probe
/// are skipped; [`resolve_verbose`] counts them.
pub fn resolve(glob: &str, ret: bool) -> Result<Vec<KprobeTarget>, ResolveError> {
    KernelSymbols::load()?.targets(glob, ret)
}

/// The message printed when `kernel.function` probes cannot work on this kernel.
pub const NO_KPROBES: &str = "kernel.function probes need a kernel built with CONFIG_KPROBES=y";

/// Whether this kernel supports kprobes (CONFIG_KPROBES). `Err` carries the message to print,
/// naming what was checked. Looks for the `kprobe` perf PMU (what libbpf attaches through),
/// then tracefs `kprobe_events`, then `/boot/config-$(uname -r)`.
pub fn kprobes_available() -> Result<(), String> {
    let pmu = Path::new("/sys/bus/event_source/devices/kprobe");
    if pmu.exists() {
        return Ok(());
    }
    if otf_attach::tracefs::candidates("kprobe_events").any(|p| p.exists()) {
        return Ok(());
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let config = PathBuf::from(format!("/boot/config-{release}"));
    if let Ok(c) = fs::read_to_string(&config) {
        if c.lines().any(|l| l.trim() == "CONFIG_KPROBES=y") {
            return Ok(());
        }
    }
    Err(format!(
        "{NO_KPROBES}; this kernel ({release}) has none (no {}, no kprobe_events in tracefs). \
         Run kprobe scripts on another kernel, e.g. `cargo xtask vm -- ...`",
        pmu.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_symbol_list_names_every_file_tried_and_keeps_the_last_error() {
        let e = ResolveError::NoSymbolList {
            tried: vec![(
                PathBuf::from("/sys/kernel/tracing/available_filter_functions"),
                Arc::new(io::Error::from(io::ErrorKind::PermissionDenied)),
            )],
            source: Arc::new(io::Error::from(io::ErrorKind::NotFound)),
        };
        assert_eq!(
            e.to_string(),
            "cannot read the kernel's function list (/sys/kernel/tracing/available_filter_functions: \
             permission denied; /proc/kallsyms: entity not found); mount tracefs on \
             /sys/kernel/tracing or run as root"
        );
        let source = std::error::Error::source(&e).expect("the last error");
        assert_eq!(
            source.downcast_ref::<Arc<io::Error>>().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
    }

    const KALLSYMS: &str = "\
ffffffff81000000 T _stext
ffffffff81001000 T vfs_read
ffffffff81002000 t vfs_readv.isra.0
ffffffff81003000 T vfs_write
ffffffff81004000 T do_int3
ffffffff81005000 D some_data
ffffffff81006000 t nf_hook_slow\t[nf_tables]
";
    const AFS: &str =
        "vfs_read\nvfs_readv.isra.0\nvfs_write\nvfs_write\nnf_hook_slow [nf_tables]\n";
    const BLACK: &str = "0xffffffff81004000-0xffffffff81004100\tdo_int3\n";

    #[test]
    fn afs_defines_what_is_probeable_and_counts_skipped() {
        let k = KernelSymbols::from_lists(Some(AFS), Some(KALLSYMS), BLACK);
        assert_eq!(k.len(), 4);
        let r = k.resolve("vfs_*", false).unwrap();
        let names: Vec<_> = r.targets.iter().map(|t| t.symbol.as_str()).collect();
        assert_eq!(names, ["vfs_read", "vfs_readv.isra.0", "vfs_write"]);
        assert_eq!(r.skipped, 0);
        assert_eq!(r.source, SymbolSource::AvailableFilterFunctions);
        let r = k.resolve("*", true).unwrap();
        assert!(r.targets.iter().all(|t| t.ret));
        assert_eq!(
            r.skipped, 2,
            "_stext and do_int3 are text but not probeable"
        );
        let nf = k.resolve("nf_hook_slow", false).unwrap();
        assert_eq!(nf.targets[0].module.as_deref(), Some("nf_tables"));
    }

    #[test]
    fn kallsyms_fallback_subtracts_the_blacklist() {
        let k = KernelSymbols::from_lists(None, Some(KALLSYMS), BLACK);
        let r = k.resolve("do_*", false);
        match r {
            Err(ResolveError::FunctionNotFound { skipped, .. }) => assert_eq!(skipped, 1),
            other => panic!("{other:?}"),
        }
        let err = k.resolve("do_int3", false).unwrap_err().to_string();
        assert!(err.contains("cannot be probed"), "{err}");
        let r = k.resolve("vfs_read", false).unwrap();
        assert_eq!(r.source, SymbolSource::Kallsyms);
        assert!(
            k.resolve("some_data", false).is_err(),
            "data symbols are not functions"
        );
    }

    #[test]
    fn not_found_suggests() {
        let k = KernelSymbols::from_lists(Some(AFS), Some(KALLSYMS), "");
        let err = k.resolve("vfs_raed", false).unwrap_err();
        assert!(err.to_string().contains("did you mean `vfs_read`"), "{err}");
        assert!(matches!(
            k.resolve("", false),
            Err(ResolveError::EmptyPattern)
        ));
    }
}
