//! Offsets in kernel structures, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`) with libbpf's BTF parser.

use std::ffi::CStr;

use otf_codegen::KernelInfo;

use crate::{Error, Result};

const BTF_KIND_STRUCT: u32 = 4;
const BTF_KIND_UNION: u32 = 5;

/// `struct btf_member`.
#[repr(C)]
struct Member {
    name_off: u32,
    ty: u32,
    offset: u32,
}

/// The byte offset of member `name` of the struct or union `id`, searching anonymous members.
///
/// # Safety
/// `btf` must be a valid libbpf BTF object.
unsafe fn member_offset(
    btf: *const libbpf_sys::btf,
    id: u32,
    name: &str,
    depth: u32,
) -> Option<u32> {
    if depth > 8 {
        return None;
    }
    // SAFETY: `btf` is valid (caller); libbpf returns NULL for an unknown id.
    let t = unsafe { libbpf_sys::btf__type_by_id(btf, id) };
    if t.is_null() {
        return None;
    }
    // SAFETY: `t` points to a `struct btf_type` inside the BTF data.
    let info = unsafe { (*t).info };
    let kind = (info >> 24) & 0x1f;
    if kind != BTF_KIND_STRUCT && kind != BTF_KIND_UNION {
        return None;
    }
    let vlen = info & 0xffff;
    let kflag = info >> 31 != 0;
    // SAFETY: for structs and unions, `vlen` members follow the 12-byte `struct btf_type`.
    let members = unsafe { (t as *const u8).add(12) as *const Member };
    for k in 0..vlen as usize {
        // SAFETY: `k < vlen` (above).
        let m = unsafe { &*members.add(k) };
        let bits = if kflag {
            m.offset & 0x00ff_ffff
        } else {
            m.offset
        };
        if m.name_off == 0 {
            // SAFETY: as above, a member type id of the same BTF.
            let resolved = unsafe { libbpf_sys::btf__resolve_type(btf, m.ty) };
            if resolved > 0 {
                // SAFETY: as above.
                if let Some(o) = unsafe { member_offset(btf, resolved as u32, name, depth + 1) } {
                    return Some(bits / 8 + o);
                }
            }
            continue;
        }
        // SAFETY: a valid string offset of this BTF; libbpf returns a NUL-terminated string.
        let n = unsafe { libbpf_sys::btf__name_by_offset(btf, m.name_off) };
        // SAFETY: non-null strings from libbpf are NUL-terminated and live with `btf`.
        if !n.is_null() && unsafe { CStr::from_ptr(n) }.to_bytes() == name.as_bytes() {
            return Some(bits / 8);
        }
    }
    None
}

/// The `task_struct` offsets `ppid()` needs.
pub(crate) fn kernel_info() -> Result<KernelInfo> {
    // SAFETY: no preconditions; returns NULL (and sets errno) on failure.
    let btf = unsafe { libbpf_sys::btf__load_vmlinux_btf() };
    if btf.is_null() {
        return Err(Error::msg(
            "ppid() needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF), which this kernel lacks",
        ));
    }
    // SAFETY: `btf` is valid until freed below; the name is NUL-terminated.
    let id = unsafe {
        libbpf_sys::btf__find_by_name_kind(btf, c"task_struct".as_ptr(), BTF_KIND_STRUCT)
    };
    let found = (id > 0).then(|| {
        // SAFETY: `btf` is valid and `id` one of its types.
        unsafe {
            (
                member_offset(btf, id as u32, "real_parent", 0),
                member_offset(btf, id as u32, "tgid", 0),
            )
        }
    });
    // SAFETY: `btf` came from libbpf and is freed once.
    unsafe { libbpf_sys::btf__free(btf) };
    match found {
        Some((Some(p), Some(t))) => Ok(KernelInfo {
            task_real_parent: p,
            task_tgid: t,
        }),
        _ => Err(Error::msg(
            "ppid(): the kernel's BTF has no task_struct.real_parent or task_struct.tgid",
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_task_struct_offsets_when_btf_is_there() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux");
            return;
        }
        let k = super::kernel_info().expect("offsets");
        assert!(k.task_real_parent > 0 && k.task_tgid > 0, "{k:?}");
        assert_ne!(k.task_real_parent, k.task_tgid);
    }
}
