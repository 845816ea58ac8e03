//! Where tracefs is: its mount points, defined once for every probe crate that reads it
//! (tracepoint `events/`, `available_filter_functions`, `kprobe_events`), and mounting it.

use std::io;
use std::path::PathBuf;

/// Where the kernel mounts tracefs (and where otf mounts it when it is missing).
pub const MOUNT: &str = "/sys/kernel/tracing";

/// Every place tracefs may be found, in the order to try: [`MOUNT`], then its old place
/// under debugfs.
pub const PLACES: [&str; 2] = [MOUNT, "/sys/kernel/debug/tracing"];

/// `rel` under each of [`PLACES`], in order.
pub fn candidates(rel: &str) -> impl Iterator<Item = PathBuf> + '_ {
    PLACES.iter().map(move |p| PathBuf::from(p).join(rel))
}

/// Mounts tracefs at [`MOUNT`], as `mount -t tracefs nodev /sys/kernel/tracing` does (root
/// only).
pub fn mount() -> io::Result<()> {
    // SAFETY: all pointers are valid NUL-terminated strings; `data` may be null.
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_mount_point_is_the_first_place_and_the_one_mounted() {
        assert_eq!(super::PLACES[0], super::MOUNT);
        // The literal in `mount` (a C string literal cannot be built from a const).
        assert_eq!(c"/sys/kernel/tracing".to_str(), Ok(super::MOUNT));
    }
}
