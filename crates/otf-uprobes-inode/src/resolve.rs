//! Resolution of `process(PATH).function(GLOB)` to inode uprobe targets: a file and the file
//! offsets of its functions. Pure user space, no privilege; `otf check` calls it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use object::{Object, ObjectKind, ObjectSegment, ObjectSymbol, SymbolKind, SymbolSection};

use otf_core::glob::{did_you_mean, glob_match, has_wildcard, suggestions};

/// One kernel attachment point: a function of an ELF file, at its entry or its return.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UprobeTarget {
    /// The real file (symlinks followed, absolute).
    pub path: PathBuf,
    /// The function's name (one name per address; the plainest alias when several match).
    pub symbol: String,
    /// Offset of the function's first byte in the file: what the kernel's uprobe wants.
    pub file_offset: u64,
    /// The symbol's virtual address in the ELF file (`st_value`).
    pub address: u64,
    /// The symbol's size in bytes.
    pub size: u64,
    /// `true` for a `.return` probe (uretprobe), `false` for the entry.
    pub ret: bool,
}

/// A function defined in an ELF file, as listed by [`list_functions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfFunction {
    /// Symbol name.
    pub name: String,
    /// Virtual address (`st_value`).
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
    /// File offset computed through the containing `PT_LOAD` segment.
    pub file_offset: u64,
}

/// Why a `process(...).function(...)` could not be resolved. Every message names the file
/// and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The path names nothing.
    #[error("{path}: no such file (check the path given to process(...))")]
    NotFound {
        /// The path as written, or as resolved against the current directory.
        path: PathBuf,
    },
    /// A bare name was not found in `$PATH` nor in the current directory.
    #[error("process(\"{name}\"): no executable named `{name}` in $PATH ({search}); give an absolute or relative path")]
    NotInPath {
        /// The bare name.
        name: String,
        /// The directories searched, `:`-separated.
        search: String,
    },
    /// The path exists but cannot be read.
    #[error(
        "{path}: permission denied reading the file ({source}); run as a user that can read it"
    )]
    Permission {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The path is a directory or another non-regular file.
    #[error("{path}: not a regular file")]
    NotRegularFile {
        /// The path.
        path: PathBuf,
    },
    /// Another I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not ELF (or is truncated/corrupt).
    #[error(
        "{path}: not an ELF file ({}); process(...) needs an executable or a shared library",
        source.as_ref().map_or_else(|| "no ELF magic".to_string(), ToString::to_string)
    )]
    NotElf {
        /// The file.
        path: PathBuf,
        /// Why the ELF parser refused it (`None`: the file does not start with the ELF magic).
        #[source]
        source: Option<object::read::Error>,
    },
    /// An ELF file that is neither an executable nor a shared library (e.g. a `.o`).
    #[error("{path}: ELF {kind} file, not an executable or a shared library")]
    WrongElfKind {
        /// The file.
        path: PathBuf,
        /// The ELF kind found.
        kind: String,
    },
    /// No function symbols at all (stripped binary).
    #[error("{path}: no function symbols (stripped binary?); rebuild without stripping, or install its debug symbols")]
    NoSymbols {
        /// The file.
        path: PathBuf,
    },
    /// No function matched the name or glob.
    #[error("{path}: no function matches `{pattern}`{}", did_you_mean(.suggestions))]
    FunctionNotFound {
        /// The file.
        path: PathBuf,
        /// The name or glob.
        pattern: String,
        /// Close names, best first (may be empty).
        suggestions: Vec<String>,
    },
    /// The function's address lies outside every loadable segment.
    #[error("{path}: function `{symbol}` at {address:#x} is not inside a loadable segment")]
    NoSegment {
        /// The file.
        path: PathBuf,
        /// The symbol.
        symbol: String,
        /// Its address.
        address: u64,
    },
    /// An empty function name.
    #[error("process(\"{path}\").function(\"\"): empty function name")]
    EmptyPattern {
        /// The file.
        path: PathBuf,
    },
    /// The function's first instruction cannot be probed (the kernel refuses it with
    /// ENOTSUPP, error 524).
    #[error("{path}: cannot probe `{symbol}`: {reason}")]
    Unprobeable {
        /// The file.
        path: PathBuf,
        /// The function.
        symbol: String,
        /// Why, in words.
        reason: &'static str,
    },
}

/// A function a glob matched that cannot be probed, skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unprobeable {
    /// The function.
    pub symbol: String,
    /// Why, in words.
    pub reason: &'static str,
}

/// Why the kernel's x86-64 uprobes refuse an instruction starting with `code`, if they do
/// (`arch/x86/kernel/uprobes.c`, `is_prefix_bad`: a `lock` prefix or an ES/CS/SS/DS segment
/// override cannot be single-stepped out of line; `kernel/events/uprobes.c`, `prepare_uprobe`:
/// an `int3` is refused; `uprobe_register` then fails with ENOTSUPP, "Unknown error 524").
/// The kernel refuses a few more opcodes (its `good_insns_64` table); those are found at
/// attach time, by bisecting the batch with multi links. Checked before attaching, so that a glob over a library skips such
/// functions at once instead of failing the whole batch.
pub fn first_insn_problem(code: &[u8]) -> Option<&'static str> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    if code.first() == Some(&0xcc) {
        // prepare_uprobe: a trap instruction is the breakpoint itself (ENOTSUPP).
        return Some("its first instruction is a breakpoint (`int3`), which uprobes cannot probe");
    }
    for &b in code.iter().take(15) {
        match b {
            0xf0 => {
                return Some(
                    "its first instruction has a `lock` prefix, which uprobes cannot single-step",
                )
            }
            0x26 | 0x2e | 0x36 | 0x3e => {
                return Some(
                    "its first instruction has a segment-override prefix, which uprobes cannot single-step",
                )
            }
            // Other legacy prefixes and REX: keep looking at the next byte.
            0x64 | 0x65 | 0x66 | 0x67 | 0xf2 | 0xf3 | 0x40..=0x4f => {}
            _ => return None,
        }
    }
    None
}

fn io_error(path: &Path, e: io::Error) -> ResolveError {
    match e.kind() {
        io::ErrorKind::NotFound => ResolveError::NotFound {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => ResolveError::Permission {
            path: path.to_path_buf(),
            source: e,
        },
        _ => ResolveError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

fn is_executable_file(p: &Path) -> bool {
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Resolves the argument of `process(...)` to the real file: an absolute path, a path
/// relative to the current directory (anything containing `/`), or a bare name looked up in
/// `$PATH` like a shell does (then in the current directory). Symlinks are followed, so the
/// result names the file whose inode the kernel will probe.
pub fn resolve_path(path: &str) -> Result<PathBuf, ResolveError> {
    if path.is_empty() {
        return Err(ResolveError::NotFound {
            path: PathBuf::new(),
        });
    }
    let candidate = if path.contains('/') {
        PathBuf::from(path)
    } else {
        let search = std::env::var("PATH").unwrap_or_default();
        let found = search
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(path))
            .find(|p| is_executable_file(p));
        match found {
            Some(p) => p,
            None if Path::new(path).is_file() => PathBuf::from(path),
            None => {
                return Err(ResolveError::NotInPath {
                    name: path.to_string(),
                    search,
                })
            }
        }
    };
    let real = fs::canonicalize(&candidate).map_err(|e| io_error(&candidate, e))?;
    let meta = fs::metadata(&real).map_err(|e| io_error(&real, e))?;
    if !meta.is_file() {
        return Err(ResolveError::NotRegularFile { path: real });
    }
    Ok(real)
}

/// Lists the functions defined in the ELF file at `path` (already resolved): defined
/// `STT_FUNC` / `STT_GNU_IFUNC` symbols of nonzero size from `.symtab` and `.dynsym`, one
/// entry per (name, address), sorted by name. Aliases (several names at one address) are all
/// listed here; [`resolve`] keeps one per address.
pub fn list_functions(path: &Path) -> Result<Vec<ElfFunction>, ResolveError> {
    let data = fs::read(path).map_err(|e| io_error(path, e))?;
    functions_in(path, &data)
}

/// [`resolve`], also returning the functions the glob matched that cannot be probed (skipped;
/// see [`first_insn_problem`]). An exact name that cannot be probed is an error
/// ([`ResolveError::Unprobeable`]).
pub fn resolve_checked(
    path: &str,
    func_glob: &str,
    ret: bool,
) -> Result<(Vec<UprobeTarget>, Vec<Unprobeable>), ResolveError> {
    let targets = resolve(path, func_glob, ret)?;
    let Some(first) = targets.first() else {
        return Ok((targets, Vec::new()));
    };
    let data = fs::read(&first.path).map_err(|e| io_error(&first.path, e))?;
    let mut ok = Vec::with_capacity(targets.len());
    let mut skipped = Vec::new();
    for t in targets {
        let at = t.file_offset as usize;
        let code = data.get(at..(at + 16).min(data.len())).unwrap_or(&[]);
        match first_insn_problem(code) {
            None => ok.push(t),
            Some(reason) if !has_wildcard(func_glob) => {
                return Err(ResolveError::Unprobeable {
                    path: t.path,
                    symbol: t.symbol,
                    reason,
                })
            }
            Some(reason) => skipped.push(Unprobeable {
                symbol: t.symbol,
                reason,
            }),
        }
    }
    Ok((ok, skipped))
}

fn functions_in(path: &Path, data: &[u8]) -> Result<Vec<ElfFunction>, ResolveError> {
    if data.len() < 4 || &data[..4] != b"\x7fELF" {
        return Err(ResolveError::NotElf {
            path: path.to_path_buf(),
            source: None,
        });
    }
    let file = object::File::parse(data).map_err(|e| ResolveError::NotElf {
        path: path.to_path_buf(),
        source: Some(e),
    })?;
    match file.kind() {
        ObjectKind::Executable | ObjectKind::Dynamic => {}
        other => {
            return Err(ResolveError::WrongElfKind {
                path: path.to_path_buf(),
                kind: format!("{other:?}").to_lowercase(),
            })
        }
    }
    // (p_vaddr, p_memsz-ish file range) of every PT_LOAD segment.
    let segments: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| {
            let (off, filesz) = s.file_range();
            (s.address(), off, filesz)
        })
        .collect();
    let mut seen: BTreeMap<(String, u64), ElfFunction> = BTreeMap::new();
    for sym in file.symbols().chain(file.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 || sym.is_undefined() {
            continue;
        }
        if !matches!(sym.section(), SymbolSection::Section(_)) {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        if name.is_empty() {
            continue;
        }
        let address = sym.address();
        let Some(&(vaddr, off, _)) = segments
            .iter()
            .find(|(vaddr, _, filesz)| address >= *vaddr && address < vaddr + filesz)
        else {
            continue;
        };
        seen.entry((name.to_string(), address))
            .or_insert(ElfFunction {
                name: name.to_string(),
                address,
                size: sym.size(),
                file_offset: address - vaddr + off,
            });
    }
    if seen.is_empty() {
        return Err(ResolveError::NoSymbols {
            path: path.to_path_buf(),
        });
    }
    Ok(seen.into_values().collect())
}

/// Preference among aliases at one address: no leading underscore, then shorter, then
/// lexicographic (`malloc` over `__libc_malloc`).
fn alias_rank(name: &str) -> (usize, usize, &str) {
    (
        name.len() - name.trim_start_matches('_').len(),
        name.len(),
        name,
    )
}

/// Resolves `process(path).function(func_glob)` (`.return` when `ret`) to its targets: one
/// per matching function address, sorted by symbol name. `func_glob` may use `*` and `?`.
///
/// ```no_run
/// let t = otf_uprobes_inode::resolve("/lib/x86_64-linux-gnu/libc.so.6", "malloc", false)?;
/// assert_eq!(t[0].symbol, "malloc");
/// # Ok::<(), otf_uprobes_inode::ResolveError>(())
/// ```
pub fn resolve(path: &str, func_glob: &str, ret: bool) -> Result<Vec<UprobeTarget>, ResolveError> {
    let real = resolve_path(path)?;
    if func_glob.is_empty() {
        return Err(ResolveError::EmptyPattern { path: real });
    }
    let functions = list_functions(&real)?;
    // One target per address; among matching aliases keep the plainest name.
    let mut by_addr: BTreeMap<u64, &ElfFunction> = BTreeMap::new();
    for f in functions.iter().filter(|f| glob_match(func_glob, &f.name)) {
        by_addr
            .entry(f.address)
            .and_modify(|cur| {
                if alias_rank(&f.name) < alias_rank(&cur.name) {
                    *cur = f;
                }
            })
            .or_insert(f);
    }
    if by_addr.is_empty() {
        let sugg = if has_wildcard(func_glob) {
            Vec::new()
        } else {
            suggestions(func_glob, functions.iter().map(|f| f.name.as_str()), 3)
        };
        return Err(ResolveError::FunctionNotFound {
            path: real,
            pattern: func_glob.to_string(),
            suggestions: sugg,
        });
    }
    let mut out: Vec<UprobeTarget> = by_addr
        .into_values()
        .map(|f| UprobeTarget {
            path: real.clone(),
            symbol: f.name.clone(),
            file_offset: f.file_offset,
            address: f.address,
            size: f.size,
            ret,
        })
        .collect();
    out.sort_by(|a, b| {
        a.symbol
            .cmp(&b.symbol)
            .then(a.file_offset.cmp(&b.file_offset))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_the_kernel_refuses() {
        // lock incl (%rdi); lock cmpxchg with an operand-size prefix before it.
        assert!(first_insn_problem(&[0xf0, 0xff, 0x07]).is_some());
        assert!(first_insn_problem(&[0x66, 0xf0, 0x0f, 0xb1, 0x17]).is_some());
        // A CS/DS segment override.
        assert!(first_insn_problem(&[0x2e, 0x8b, 0x00]).is_some());
        // int3 (but a 0xcc byte after a prefix is not an int3 the kernel checks for).
        assert!(first_insn_problem(&[0xcc, 0xc3]).is_some());
        // endbr64; push %rbp; mov with REX.W; rep ret; an FS-relative load (allowed).
        assert!(first_insn_problem(&[0xf3, 0x0f, 0x1e, 0xfa]).is_none());
        assert!(first_insn_problem(&[0x55]).is_none());
        assert!(first_insn_problem(&[0x48, 0x89, 0xe5]).is_none());
        assert!(first_insn_problem(&[0x64, 0x48, 0x8b, 0x04, 0x25]).is_none());
        assert!(first_insn_problem(&[]).is_none());
    }

    #[test]
    fn a_libc_glob_skips_what_cannot_be_probed_and_an_exact_name_says_why() {
        let libc = "/lib/x86_64-linux-gnu/libc.so.6";
        if !Path::new(libc).exists() {
            eprintln!("SKIPPED: no {libc}");
            return;
        }
        let (ok, skipped) = resolve_checked(libc, "pthread_spin_*", false).expect("resolves");
        // glibc's pthread_spin_lock starts with `lock decl (%rdi)`.
        let names: Vec<&str> = skipped.iter().map(|u| u.symbol.as_str()).collect();
        assert!(names.contains(&"pthread_spin_lock"), "{names:?}");
        assert!(ok.iter().any(|t| t.symbol == "pthread_spin_init"), "{ok:?}");
        let err = resolve_checked(libc, "pthread_spin_lock", false).unwrap_err();
        assert!(
            err.to_string().contains(
                "cannot probe `pthread_spin_lock`: its first instruction has a `lock` prefix"
            ),
            "{err}"
        );
    }
}
