//! The BTF the kernel needs to load generated code: one `FUNC` per function and the
//! `func_info` records that place them. The verifier refuses `bpf_loop` callbacks
//! (`BPF_PSEUDO_FUNC`) in a program without `func_info` ("missing btf func_info").
//!
//! Types: `long` (1), `void *` (2), `long (void *ctx)` (3), `long (long i, void *ctx)` (4),
//! then one `FUNC` per function, static linkage (checked by the verifier in its caller's
//! context, as its own code).

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const INT_SIGNED: u32 = 1;

fn push(out: &mut Vec<u8>, words: &[u32]) {
    for w in words {
        out.extend_from_slice(&w.to_ne_bytes());
    }
}

/// Appends `s` to a BTF string section; returns its offset.
fn add_string(strings: &mut Vec<u8>, s: &str) -> u32 {
    let off = strings.len() as u32;
    strings.extend_from_slice(s.as_bytes());
    strings.push(0);
    off
}

fn info(kind: u32, vlen: u32) -> u32 {
    (kind << 24) | vlen
}

/// The BTF blob and the `func_info` records (`insn_off`, `type_id`) for functions starting
/// at `starts`, named `names`.
pub(crate) fn func_btf(starts: &[usize], names: &[String]) -> (Vec<u8>, Vec<(u32, u32)>) {
    let mut strings = vec![0u8];
    let mut string = |s: &str| add_string(&mut strings, s);
    let long = string("long");
    let ctx = string("ctx");
    let i = string("i");
    let mut types = Vec::new();
    push(
        &mut types,
        &[long, info(KIND_INT, 0), 8, (INT_SIGNED << 24) | 64],
    ); // 1
    push(&mut types, &[0, info(KIND_PTR, 0), 0]); // 2
    push(&mut types, &[0, info(KIND_FUNC_PROTO, 1), 1, ctx, 2]); // 3
    push(&mut types, &[0, info(KIND_FUNC_PROTO, 2), 1, i, 1, ctx, 2]); // 4
    let mut func_info = Vec::new();
    for (k, (&start, name)) in starts.iter().zip(names).enumerate() {
        let n = string(name);
        let proto = if k == 0 { 3 } else { 4 };
        push(&mut types, &[n, info(KIND_FUNC, 0), proto]);
        func_info.push((start as u32, 5 + k as u32));
    }
    (blob(&types, &strings), func_info)
}

const KIND_STRUCT: u32 = 4;

/// The BTF of the timers map ([`crate::MapId::Timers`]) and the type ids of its key and
/// value: the kernel finds a value's `struct bpf_timer` (by that name and size) only through
/// BTF. Types: `u32` (1), `u64` (2), `struct bpf_timer` (3), `struct otf_timer` (4), the
/// layout of [`crate::layout::TimerSlot`].
pub fn timer_map_btf() -> (Vec<u8>, u32, u32) {
    use crate::layout::TimerSlot;
    use std::mem::{offset_of, size_of};
    let mut strings = vec![0u8];
    let mut string = |s: &str| add_string(&mut strings, s);
    let mut types = Vec::new();
    let u32_ = string("u32");
    let u64_ = string("u64");
    push(&mut types, &[u32_, info(KIND_INT, 0), 4, 32]); // 1
    push(&mut types, &[u64_, info(KIND_INT, 0), 8, 64]); // 2
    let (bt, a, b) = (string("bpf_timer"), string("a"), string("b"));
    push(
        &mut types,
        &[bt, info(KIND_STRUCT, 2), 16, a, 2, 0, b, 2, 64],
    ); // 3
    let name = string("otf_timer");
    let members: [(&str, u32, usize); 5] = [
        ("timer", 3, offset_of!(TimerSlot, timer)),
        ("period_ns", 2, offset_of!(TimerSlot, period_ns)),
        ("next_ns", 2, offset_of!(TimerSlot, next_ns)),
        ("fired", 2, offset_of!(TimerSlot, fired)),
        ("lost", 2, offset_of!(TimerSlot, lost)),
    ];
    let mut words = vec![
        name,
        info(KIND_STRUCT, members.len() as u32),
        size_of::<TimerSlot>() as u32,
    ];
    for (m, ty, off) in members {
        words.extend([string(m), ty, 8 * off as u32]);
    }
    push(&mut types, &words); // 4
    (blob(&types, &strings), 1, 4)
}

/// A BTF blob: header, types, strings.
fn blob(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xeb9fu16.to_ne_bytes());
    out.push(1); // version
    out.push(0); // flags
    push(
        &mut out,
        &[
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ],
    );
    out.extend_from_slice(types);
    out.extend_from_slice(strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_records() {
        let (b, fi) = func_btf(&[0, 10, 20], &["main".into(), "hit".into(), "loop".into()]);
        assert_eq!(&b[..2], &0xeb9fu16.to_ne_bytes());
        assert_eq!(b[2], 1);
        let type_len = u32::from_ne_bytes(b[12..16].try_into().unwrap());
        let str_off = u32::from_ne_bytes(b[16..20].try_into().unwrap());
        let str_len = u32::from_ne_bytes(b[20..24].try_into().unwrap());
        assert_eq!(type_len, str_off);
        assert_eq!(b.len() as u32, 24 + type_len + str_len);
        // 4 fixed types of 16, 12, 20 and 28 bytes, then 12 per FUNC.
        assert_eq!(type_len, 16 + 12 + 20 + 28 + 3 * 12);
        assert_eq!(fi, vec![(0, 5), (10, 6), (20, 7)]);
        assert!(b.ends_with(b"loop\0"));
    }
}
