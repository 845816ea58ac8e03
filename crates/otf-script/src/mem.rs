//! Reading strings and bytes from memory for the reference VM
//! ([`crate::vm::HitContext::read_str`], [`crate::vm::HitContext::read_mem`]): `user_string`
//! and `printf`'s `%#m` in user-space bodies read this process's own memory with
//! `process_vm_readv(2)`, which faults on unmapped or unreadable pages as the kernel's
//! `bpf_probe_read_user_str` and `bpf_probe_read_user` do, and reports the same error code
//! (`-EFAULT`).

/// The granularity at which `process_vm_readv` transfers partially: a read is split at
/// page boundaries so that the readable part before a fault is still read.
const PAGE: u64 = 4096;

/// Read the NUL-terminated string at `addr` of process `pid` (0: this process) as
/// `bpf_probe_read_user_str(dst, size, addr)` does: up to `size` bytes are read, stopping
/// at the first NUL, and the result holds at most `size - 1` bytes (none if `size` is 0).
/// `Err` is the negative errno of a fault (`-EFAULT`) before the NUL.
pub fn read_user_str(pid: i32, addr: u64, size: usize) -> Result<Vec<u8>, i64> {
    if size == 0 {
        return Ok(Vec::new());
    }
    let got = read_prefix(pid, addr, size);
    match got.iter().position(|&b| b == 0) {
        Some(end) => Ok(got[..end].to_vec()),
        None if got.len() == size => Ok(got[..size - 1].to_vec()),
        None => Err(-i64::from(libc::EFAULT)),
    }
}

/// Read the `len` bytes at `addr` of process `pid` (0: this process), as
/// `bpf_probe_read_user` does (`%#m`); `Err` is `-EFAULT` when any of them cannot be read.
pub fn read_user(pid: i32, addr: u64, len: usize) -> Result<Vec<u8>, i64> {
    let got = read_prefix(pid, addr, len);
    if got.len() == len {
        Ok(got)
    } else {
        Err(-i64::from(libc::EFAULT))
    }
}

/// The readable bytes of the `size` at `addr` of process `pid` (0: this process), up to the
/// first that cannot be read.
fn read_prefix(pid: i32, addr: u64, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    let mut buf = vec![0u8; size];
    // The remote range, cut at page boundaries (a range wrapping past the top of the
    // address space stops there: what follows cannot be read).
    let mut remote = Vec::new();
    let mut at = addr;
    let mut left = size as u64;
    while left > 0 {
        let room = PAGE - at % PAGE;
        let len = room.min(left);
        remote.push(libc::iovec {
            iov_base: at as usize as *mut libc::c_void,
            iov_len: len as usize,
        });
        left -= len;
        match at.checked_add(len) {
            Some(next) => at = next,
            None => break,
        }
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let pid = if pid == 0 {
        // SAFETY: getpid has no preconditions and cannot fail.
        unsafe { libc::getpid() }
    } else {
        pid
    };
    // SAFETY: `local` describes `buf`, which is alive and writable for its whole length
    // during the call; the remote iovecs are only addresses in the target process, which
    // the kernel checks (an unreadable one ends the transfer, it is never dereferenced
    // here).
    let n =
        unsafe { libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), remote.len() as _, 0) };
    // Failing at once means nothing was readable: a fault at the first byte (other errors,
    // such as a process that is gone, are faults too, as the kernel reads no memory then).
    let n = usize::try_from(n).unwrap_or(0).min(size);
    buf.truncate(n);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = b"hello, memory\0after";
        let addr = s.as_ptr() as u64;
        assert_eq!(read_user_str(0, addr, 128), Ok(b"hello, memory".to_vec()));
        // At most size - 1 bytes.
        assert_eq!(read_user_str(0, addr, 6), Ok(b"hello".to_vec()));
        assert_eq!(read_user_str(0, addr, 1), Ok(Vec::new()));
        assert_eq!(read_user_str(0, addr, 0), Ok(Vec::new()));
    }

    #[test]
    fn reads_bytes_of_this_process() {
        let s = b"a\0b\xffc";
        let addr = s.as_ptr() as u64;
        assert_eq!(read_user(0, addr, 5), Ok(s.to_vec()));
        assert_eq!(read_user(0, addr, 2), Ok(b"a\0".to_vec()));
        assert_eq!(read_user(0, 0, 1), Err(-14));
        assert_eq!(read_user(0, u64::MAX - 3, 8), Err(-14));
    }

    #[test]
    fn faults_are_efault() {
        assert_eq!(read_user_str(0, 0, 128), Err(-14));
        assert_eq!(read_user_str(0, 1, 128), Err(-14));
        assert_eq!(read_user_str(0, u64::MAX - 3, 128), Err(-14));
    }

    #[test]
    fn a_string_ending_before_an_unmapped_page_is_read() {
        // Two pages, the second made inaccessible: a string at the end of the first reads,
        // one running into the second faults.
        // SAFETY: an anonymous private mapping with no address hint; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let base = p as u64;
        // SAFETY: the mapping is 2 pages long and writable; the second page is protected
        // after the writes, and the mapping is unmapped once at the end.
        unsafe {
            let b = p.cast::<u8>();
            std::ptr::copy_nonoverlapping(
                c"abc".to_bytes_with_nul().as_ptr(),
                b.add(PAGE as usize - 4),
                4,
            );
            std::ptr::copy_nonoverlapping(b"wxyz".as_ptr(), b.add(PAGE as usize - 8), 4);
            assert_eq!(
                libc::mprotect(b.add(PAGE as usize).cast(), PAGE as usize, libc::PROT_NONE),
                0
            );
        }
        assert_eq!(read_user_str(0, base + PAGE - 4, 128), Ok(b"abc".to_vec()));
        assert_eq!(
            read_user_str(0, base + PAGE - 8, 128),
            Ok(b"wxyzabc".to_vec())
        );
        // "abc" has its NUL at the last byte: a longer read from after it faults.
        assert_eq!(read_user_str(0, base + PAGE - 1, 128), Ok(Vec::new()));
        assert_eq!(read_user_str(0, base + PAGE - 2, 128), Ok(b"c".to_vec()));
        // SAFETY: writes the zero at the last byte of the first page (still writable).
        unsafe { *p.cast::<u8>().add(PAGE as usize - 1) = b'!' };
        assert_eq!(read_user_str(0, base + PAGE - 4, 128), Err(-14));
        // Bytes up to the protected page read; one more faults.
        assert_eq!(read_user(0, base + PAGE - 4, 4), Ok(b"abc!".to_vec()));
        assert_eq!(read_user(0, base + PAGE - 4, 5), Err(-14));
        // Short enough to stop before the protected page: size bytes are readable.
        assert_eq!(read_user_str(0, base + PAGE - 4, 4), Ok(b"abc".to_vec()));
        // SAFETY: unmapping the mapping made above, no longer used.
        assert_eq!(unsafe { libc::munmap(p, 2 * PAGE as usize) }, 0);
    }
}
