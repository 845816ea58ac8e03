//! The one `perf_event_open(2)` of otf, on the kernel's own `struct perf_event_attr` (libbpf-sys's
//! bindings of `linux/perf_event.h`), and the perf-event ioctls and reads otf uses.
//!
//! Every probe crate opens its perf events here: `timer.profile`'s cpu-clock events
//! ([`PerfAttr::cpu_clock`]), perf tracepoints ([`PerfAttr::tracepoint`]) and the uprobe/kprobe
//! PMU events behind single uprobe and kprobe links ([`PerfAttr::probe`]). A BPF program is
//! attached to the event with [`crate::sys::link_perf_event`].

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_sys::perf_event_attr;

/// `PERF_EVENT_IOC_ENABLE` (`_IO('$', 0)`).
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// `PERF_EVENT_IOC_DISABLE` (`_IO('$', 1)`).
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;

/// A `struct perf_event_attr` for one of the events otf opens. Its `size` is the struct's (the
/// kernel accepts any size it knows, zero-extending older ones).
#[derive(Clone, Copy)]
pub struct PerfAttr<'a> {
    attr: perf_event_attr,
    /// What `config1` points at (a uprobe's path or a kprobe's function), kept alive.
    _name: Option<&'a CStr>,
}

impl std::fmt::Debug for PerfAttr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfAttr")
            .field("type", &self.attr.type_)
            .field("config", &self.attr.config)
            .finish()
    }
}

impl<'a> PerfAttr<'a> {
    fn new(type_: u32, config: u64) -> PerfAttr<'a> {
        let mut attr = perf_event_attr {
            type_,
            size: std::mem::size_of::<perf_event_attr>() as u32,
            config,
            ..Default::default()
        };
        attr.__bindgen_anon_1.sample_period = 1;
        PerfAttr { attr, _name: None }
    }

    /// A `PERF_COUNT_SW_CPU_CLOCK` sampling event (`timer.profile`): one sample every
    /// `period_ns` of CPU time, created disabled unless `enabled`.
    pub fn cpu_clock(period_ns: u64, enabled: bool) -> PerfAttr<'a> {
        let mut a = PerfAttr::new(
            libbpf_sys::PERF_TYPE_SOFTWARE,
            u64::from(libbpf_sys::PERF_COUNT_SW_CPU_CLOCK),
        );
        a.attr.__bindgen_anon_1.sample_period = period_ns;
        a.attr.set_disabled(u64::from(!enabled));
        a
    }

    /// The perf tracepoint event of tracefs id `id` (one sample per hit).
    pub fn tracepoint(id: u64) -> PerfAttr<'a> {
        PerfAttr::new(libbpf_sys::PERF_TYPE_TRACEPOINT, id)
    }

    /// An event of the dynamic PMU `pmu_type` (`uprobe` or `kprobe`, read from
    /// `/sys/bus/event_source/devices/*/type`): `name` is the file's path (uprobe) or the
    /// function (kprobe), `offset` the file offset (uprobe) or the offset in the function;
    /// `config` carries the PMU's `retprobe` bit for a return probe.
    pub fn probe(pmu_type: u32, config: u64, name: &'a CStr, offset: u64) -> PerfAttr<'a> {
        let mut a = PerfAttr::new(pmu_type, config);
        a.attr.__bindgen_anon_1.sample_period = 0;
        a.attr.__bindgen_anon_3.config1 = name.as_ptr() as u64;
        a.attr.__bindgen_anon_4.config2 = offset;
        a._name = Some(name);
        a
    }
}

/// Opens `attr` on `cpu` (`-1`: any) for every task (`pid == -1`), close-on-exec. BPF programs
/// attach to system-wide events this way (libbpf opens uprobe and kprobe events with
/// `pid == -1, cpu == 0`).
pub fn open(attr: &PerfAttr<'_>, cpu: i32) -> io::Result<OwnedFd> {
    // SAFETY: `attr.attr` is a valid, fully initialised perf_event_attr of the size it
    // declares, and the name `config1` may point at is borrowed by `attr`: both outlive the
    // call. The other arguments are plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr.attr as *const perf_event_attr,
            -1 as libc::pid_t,
            cpu,
            -1 as libc::c_int,
            libc::c_ulong::from(libbpf_sys::PERF_FLAG_FD_CLOEXEC),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this new fd, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The count of a perf event (its default `read_format`: one `u64`).
pub fn read_count(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut v = 0u64;
    // SAFETY: reads at most 8 bytes into `v`, which we own; the fd is a perf event.
    let r = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut v as *mut u64).cast(),
            std::mem::size_of::<u64>(),
        )
    };
    if r != std::mem::size_of::<u64>() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// Enables or disables a perf event (`PERF_EVENT_IOC_ENABLE` / `_DISABLE`).
pub fn set_enabled(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let req = if on {
        PERF_EVENT_IOC_ENABLE
    } else {
        PERF_EVENT_IOC_DISABLE
    };
    // SAFETY: both requests take no argument and only act on the given fd.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_carry_their_fields() {
        let a = PerfAttr::cpu_clock(4_000_000, false);
        assert_eq!(a.attr.type_, 1);
        // SAFETY: reading the union member that was written.
        assert_eq!(unsafe { a.attr.__bindgen_anon_1.sample_period }, 4_000_000);
        assert_eq!(a.attr.disabled(), 1);
        assert_eq!(a.attr.size as usize, std::mem::size_of::<perf_event_attr>());
        let t = PerfAttr::tracepoint(42);
        assert_eq!((t.attr.type_, t.attr.config), (2, 42));
        let name = c"/bin/true";
        let p = PerfAttr::probe(9, 1, name, 0x1139);
        // SAFETY: reading the union members that were written.
        unsafe {
            assert_eq!(p.attr.__bindgen_anon_3.config1, name.as_ptr() as u64);
            assert_eq!(p.attr.__bindgen_anon_4.config2, 0x1139);
        }
    }
}
