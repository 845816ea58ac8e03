//! Kernel BPF objects seen through the `bpf(2)` syscall and `/proc/<pid>/fdinfo`, without
//! bpftool: which programs, links and maps exist, and which ones a process holds.

use std::collections::BTreeSet;
use std::fs;
use std::io;

const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_MAP_GET_NEXT_ID: libc::c_long = 12;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;

/// A kind of BPF object with a global id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ObjKind {
    /// A program.
    Prog,
    /// A map.
    Map,
    /// A link.
    Link,
}

impl ObjKind {
    fn next_cmd(self) -> libc::c_long {
        match self {
            ObjKind::Prog => BPF_PROG_GET_NEXT_ID,
            ObjKind::Map => BPF_MAP_GET_NEXT_ID,
            ObjKind::Link => BPF_LINK_GET_NEXT_ID,
        }
    }
    fn fd_cmd(self) -> libc::c_long {
        match self {
            ObjKind::Prog => BPF_PROG_GET_FD_BY_ID,
            ObjKind::Map => BPF_MAP_GET_FD_BY_ID,
            ObjKind::Link => BPF_LINK_GET_FD_BY_ID,
        }
    }
}

fn sys_bpf(cmd: libc::c_long, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: attr is a zeroed 128-byte union bpf_attr, large enough for every command used
    // here; the kernel reads/writes only within the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// All ids of `kind` that exist now (`BPF_*_GET_NEXT_ID`).
pub fn all_ids(kind: ObjKind) -> io::Result<BTreeSet<u32>> {
    let mut ids = BTreeSet::new();
    let mut start = 0u32;
    loop {
        let mut attr = [0u64; 16];
        attr[0] = u64::from(start); // start_id, next_id (out) in the upper half
        match sys_bpf(kind.next_cmd(), &mut attr) {
            Ok(_) => {
                let next = (attr[0] >> 32) as u32;
                ids.insert(next);
                start = next;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(ids),
            Err(e) => return Err(e),
        }
    }
}

/// An fd owned here, closed on drop.
struct Fd(i32);
impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the fd was returned by the kernel to us and is closed exactly once.
        unsafe { libc::close(self.0) };
    }
}

fn fd_by_id(kind: ObjKind, id: u32) -> io::Result<Fd> {
    let mut attr = [0u64; 16];
    attr[0] = u64::from(id);
    sys_bpf(kind.fd_cmd(), &mut attr).map(|fd| Fd(fd as i32))
}

/// Whether the object `id` of `kind` still exists (`ENOENT` from `BPF_*_GET_FD_BY_ID` means gone).
pub fn exists(kind: ObjKind, id: u32) -> io::Result<bool> {
    match fd_by_id(kind, id) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The name of program `id` (`bpf_prog_info.name`), if it still exists.
pub fn prog_name(id: u32) -> io::Result<Option<String>> {
    let fd = match fd_by_id(ObjKind::Prog, id) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut info = [0u8; 256];
    let mut attr = [0u64; 16];
    attr[0] = (fd.0 as u32 as u64) | ((info.len() as u64) << 32); // bpf_fd, info_len
    attr[1] = info.as_mut_ptr() as u64;
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    // struct bpf_prog_info: name[16] at offset 64.
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(Some(String::from_utf8_lossy(&name[..end]).into_owned()))
}

/// The BPF and perf objects a process holds through its file descriptors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// Program ids (from program fds and from links' `prog_id`).
    pub progs: BTreeSet<u32>,
    /// Map ids.
    pub maps: BTreeSet<u32>,
    /// Link ids.
    pub links: BTreeSet<u32>,
    /// Number of perf event fds.
    pub perf_events: usize,
}

impl Held {
    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.progs.is_empty()
            && self.maps.is_empty()
            && self.links.is_empty()
            && self.perf_events == 0
    }
}

/// Scan `/proc/<pid>/fd` and `fdinfo` for BPF programs, maps, links and perf events.
pub fn held_by(pid: i32) -> io::Result<Held> {
    let mut held = Held::default();
    for e in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(e) = e else { continue };
        let Ok(target) = fs::read_link(e.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if target == "anon_inode:[perf_event]" {
            held.perf_events += 1;
            continue;
        }
        if !target.starts_with("anon_inode:bpf") {
            continue;
        }
        let fd = e.file_name().to_string_lossy().into_owned();
        let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        for line in info.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let Ok(v) = v.trim().parse::<u32>() else {
                continue;
            };
            match k.trim() {
                "prog_id" => held.progs.insert(v),
                "map_id" => held.maps.insert(v),
                "link_id" => held.links.insert(v),
                _ => false,
            };
        }
    }
    Ok(held)
}

/// Of the objects in `held`, those that still exist.
pub fn still_existing(held: &Held) -> io::Result<Vec<(ObjKind, u32)>> {
    let mut left = Vec::new();
    for (kind, ids) in [
        (ObjKind::Prog, &held.progs),
        (ObjKind::Map, &held.maps),
        (ObjKind::Link, &held.links),
    ] {
        for &id in ids {
            if exists(kind, id)? {
                left.push((kind, id));
            }
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_nonexistent_objects_do_not_exist() {
        if !crate::skip::need_root("bpf(2)") {
            return;
        }
        // Ids are allocated cyclically from 1 and never reach u32::MAX - 1 in a test machine's life.
        assert!(!exists(ObjKind::Prog, u32::MAX - 1).unwrap());
        assert!(!exists(ObjKind::Link, u32::MAX - 1).unwrap());
        assert!(!exists(ObjKind::Map, u32::MAX - 1).unwrap());
        assert!(prog_name(u32::MAX - 1).unwrap().is_none());
        // Every listed program exists (or vanished in between) and its name can be read.
        for id in all_ids(ObjKind::Prog).unwrap().into_iter().take(5) {
            let _ = prog_name(id).unwrap();
        }
    }

    #[test]
    fn a_map_we_create_is_seen_held_and_then_gone() {
        if !crate::skip::need_root("bpf(2)") {
            return;
        }
        // BPF_MAP_CREATE: BPF_MAP_TYPE_ARRAY, key 4 bytes, value 8 bytes, 1 entry.
        let mut attr = [0u64; 16];
        attr[0] = 2 | (4 << 32);
        attr[1] = 8 | (1 << 32);
        let fd = Fd(sys_bpf(0, &mut attr).unwrap() as i32);
        let held = held_by(std::process::id() as i32).unwrap();
        assert!(!held.maps.is_empty(), "{held:?}");
        let mine: Vec<u32> = held
            .maps
            .iter()
            .copied()
            .filter(|&id| exists(ObjKind::Map, id).unwrap())
            .collect();
        assert!(!mine.is_empty());
        assert!(all_ids(ObjKind::Map)
            .unwrap()
            .is_superset(&mine.iter().copied().collect()));
        drop(fd);
        // Maps are freed after an RCU grace period: poll briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = still_existing(&Held {
                maps: mine.iter().copied().collect(),
                ..Held::default()
            })
            .unwrap();
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "map still exists after close: {left:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
