//! A minimal writer for the `newc` cpio format, the format of a Linux initramfs.
//!
//! Written in Rust so that building an initramfs needs neither `cpio` nor root (device nodes
//! such as `/dev/console` are just headers). The archive is left uncompressed: the kernel
//! accepts that, and it is both simpler and faster to unpack under emulation.

/// An in-memory `newc` cpio archive.
#[derive(Debug, Default)]
pub struct Archive {
    data: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self {
            data: Vec::new(),
            next_ino: 1,
        }
    }

    /// Adds a directory (parents must be added first).
    pub fn dir(&mut self, path: &str, perm: u32) {
        self.entry(path, S_IFDIR | perm, 0, &[]);
    }

    /// Adds a regular file with the given permission bits.
    pub fn file(&mut self, path: &str, perm: u32, contents: &[u8]) {
        self.entry(path, S_IFREG | perm, 0, contents);
    }

    /// Adds a symbolic link `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, S_IFLNK | 0o777, 0, target.as_bytes());
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | perm, (major << 16) | minor, &[]);
    }

    /// Terminates the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, &[]);
        self.data
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: u32, contents: &[u8]) {
        let name = path.trim_start_matches('/');
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            u32::try_from(contents.len()).expect("initramfs member larger than 4 GiB"),
            0, // dev major
            0, // dev minor
            rdev >> 16,
            rdev & 0xffff,
            u32::try_from(name.len() + 1).expect("path too long"),
            0, // check
        ];
        self.data.extend_from_slice(b"070701");
        for f in fields {
            self.data.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.data.extend_from_slice(name.as_bytes());
        self.data.push(0);
        self.pad();
        self.data.extend_from_slice(contents);
        self.pad();
    }

    fn pad(&mut self) {
        while self.data.len() % 4 != 0 {
            self.data.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a newc archive back into (name, mode, rdev major, minor, contents).
    fn parse(mut data: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let total = data.len();
        loop {
            assert_eq!(&data[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&data[6 + 8 * i..14 + 8 * i]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) = (
                field(1),
                field(6) as usize,
                field(9),
                field(10),
                field(11) as usize,
            );
            let name = std::str::from_utf8(&data[110..110 + namesize - 1])
                .unwrap()
                .to_string();
            assert_eq!(data[110 + namesize - 1], 0);
            let off = (110 + namesize).div_ceil(4) * 4;
            let contents = data[off..off + size].to_vec();
            let next = (off + size).div_ceil(4) * 4;
            data = &data[next..];
            assert_eq!((total - data.len()) % 4, 0);
            if name == "TRAILER!!!" {
                assert!(data.is_empty());
                return out;
            }
            out.push((name, mode, rmaj, rmin, contents));
        }
    }

    #[test]
    fn round_trip() {
        let mut a = Archive::new();
        a.dir("/dev", 0o755);
        a.char_dev("/dev/console", 0o600, 5, 1);
        a.file("/init", 0o755, b"#!/bin/sh\n");
        a.symlink("/bin/sh", "busybox");
        let entries = parse(&a.finish());
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].0, "dev");
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!(
            entries[1],
            ("dev/console".into(), 0o020600, 5, 1, Vec::new())
        );
        assert_eq!(
            entries[2],
            ("init".into(), 0o100755, 0, 0, b"#!/bin/sh\n".to_vec())
        );
        assert_eq!(entries[3].4, b"busybox");
    }

    #[test]
    fn cpio_tool_agrees_if_present() {
        // Cross-check with GNU cpio or busybox cpio when available.
        let tool = ["/bin/busybox", "/usr/bin/cpio"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(tool) = tool else { return };
        let mut a = Archive::new();
        a.dir("/d", 0o755);
        a.file("/d/x", 0o644, b"hello");
        let dir = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.cpio");
        std::fs::write(&file, a.finish()).unwrap();
        let mut cmd = std::process::Command::new(tool);
        if tool.ends_with("busybox") {
            cmd.arg("cpio");
        }
        let out = cmd.args(["-t", "-F"]).arg(&file).output().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "d\nd/x\n");
    }
}
