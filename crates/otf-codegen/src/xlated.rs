//! A listing of generated code in the format of `bpftool prog dump xlated`.

use std::fmt::Write;

use crate::insn::{
    helper, Insn, ALU, ALU64, ATOMIC, B, DW, H, JMP, JMP32, LD, LDX, MEM, ST, STX, W, X,
};
use crate::insn::{PSEUDO_CALL, PSEUDO_FUNC, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE};
use crate::Program;

fn size(code: u8) -> &'static str {
    match code & 0x18 {
        W => "u32",
        H => "u16",
        B => "u8",
        _ => "u64",
    }
}

fn alu_op(op: u8) -> &'static str {
    match op {
        0x00 => "+=",
        0x10 => "-=",
        0x20 => "*=",
        0x30 => "/=",
        0x40 => "|=",
        0x50 => "&=",
        0x60 => "<<=",
        0x70 => ">>=",
        0x90 => "%=",
        0xa0 => "^=",
        0xb0 => "=",
        0xc0 => "s>>=",
        _ => "?=",
    }
}

fn jmp_op(op: u8) -> &'static str {
    match op {
        0x10 => "==",
        0x20 => ">",
        0x30 => ">=",
        0x40 => "&",
        0x50 => "!=",
        0x60 => "s>",
        0x70 => "s>=",
        0xa0 => "<",
        0xb0 => "<=",
        0xc0 => "s<",
        0xd0 => "s<=",
        _ => "?",
    }
}

fn off(o: i16) -> String {
    if o >= 0 {
        format!("+{o}")
    } else {
        format!("{o}")
    }
}

/// One instruction as bpftool prints it; `next` is the second slot of a 64-bit load.
fn text(p: &Program, at: usize, i: &Insn, next: Option<&Insn>) -> String {
    let (d, s) = (i.dst().0, i.src().0);
    let class = i.class();
    let op = i.code & 0xf0;
    match class {
        ALU64 | ALU => {
            let r = if class == ALU64 { "r" } else { "w" };
            if op == 0x80 {
                return format!("{r}{d} = -{r}{d}");
            }
            if class == ALU && op == 0xd0 {
                let e = if i.code & X != 0 { "be" } else { "le" };
                return format!("r{d} = {e}{} r{d}", i.imm);
            }
            let rhs = if i.code & X != 0 {
                format!("{r}{s}")
            } else {
                format!("{}", i.imm)
            };
            format!("{r}{d} {} {rhs}", alu_op(op))
        }
        LDX => format!("r{d} = *({} *)(r{s} {})", size(i.code), off(i.off)),
        STX if i.code & 0xe0 == ATOMIC => {
            let what = match i.imm {
                0x00 => format!("lock *(u64 *)(r{d} {}) += r{s}", off(i.off)),
                0x40 => format!("lock *(u64 *)(r{d} {}) |= r{s}", off(i.off)),
                0x50 => format!("lock *(u64 *)(r{d} {}) &= r{s}", off(i.off)),
                0x51 => format!(
                    "r{s} = atomic64_fetch_and((u64 *)(r{d} {}), r{s})",
                    off(i.off)
                ),
                0x41 => format!(
                    "r{s} = atomic64_fetch_or((u64 *)(r{d} {}), r{s})",
                    off(i.off)
                ),
                0xf1 => format!("r0 = cmpxchg_64(r{d} {}, r0, r{s})", off(i.off)),
                x => format!("atomic {x:#x} r{d} r{s}"),
            };
            what
        }
        STX => format!("*({} *)(r{d} {}) = r{s}", size(i.code), off(i.off)),
        ST => format!("*({} *)(r{d} {}) = {}", size(i.code), off(i.off), i.imm),
        LD if i.code == LD | DW => {
            let hi = next.map(|n| n.imm as u32 as u64).unwrap_or(0);
            let v = (hi << 32) | i.imm as u32 as u64;
            let map = p
                .map_refs
                .iter()
                .find(|&&(a, _)| a == at)
                .map(|&(_, m)| m.to_string());
            match (s, map) {
                (PSEUDO_MAP_FD, Some(m)) => format!("r{d} = map[{m}]"),
                (PSEUDO_MAP_VALUE, Some(m)) => format!("r{d} = map[{m}][0]+{}", hi),
                (PSEUDO_FUNC, _) => {
                    format!("r{d} = func[{}]", at as i64 + 1 + i.imm as i64)
                }
                _ => format!("r{d} = {v:#x}"),
            }
        }
        JMP | JMP32 => {
            let r = if class == JMP { "r" } else { "w" };
            match op {
                0x00 => format!("goto pc{}", off(i.off)),
                0x80 if s == PSEUDO_CALL => format!("call pc{}", off(i.imm as i16)),
                0x80 => match helper::name(i.imm) {
                    Some(n) => format!("call {n}#{}", i.imm),
                    None => format!("call #{}", i.imm),
                },
                0x90 => "exit".to_string(),
                _ => {
                    let rhs = if i.code & X != 0 {
                        format!("{r}{s}")
                    } else {
                        format!("{:#x}", i.imm)
                    };
                    format!("if {r}{d} {} {rhs} goto pc{}", jmp_op(op), off(i.off))
                }
            }
        }
        _ => format!("unknown {:#04x}", i.code),
    }
}

/// The program, one instruction a line, as `bpftool prog dump xlated` prints it, with a
/// comment line where the code of another probe starts.
pub fn dump(p: &Program, labels: &dyn Fn(u32) -> String) -> String {
    let mut out = String::new();
    let mut k = 0;
    let mut owner_at = p.owners.iter().peekable();
    let mut funcs = p.func_starts.iter().peekable();
    while k < p.insns.len() {
        while funcs.peek().is_some_and(|&&f| f == k) {
            let n = funcs
                .next()
                .map(|_| p.func_starts.iter().position(|&f| f == k));
            let name = match n.flatten() {
                Some(0) => p.kind.name().to_string(),
                Some(1) => "hit".to_string(),
                _ => "callback".to_string(),
            };
            let _ = writeln!(out, "; func[{k}]: {name}");
        }
        while owner_at.peek().is_some_and(|&&(a, _)| a == k) {
            if let Some(&(_, o)) = owner_at.next() {
                if o != u32::MAX {
                    let _ = writeln!(out, "; {}", labels(o));
                }
            }
        }
        let i = &p.insns[k];
        let wide = i.is_ld_imm64();
        let t = text(p, k, i, p.insns.get(k + 1).filter(|_| wide));
        let _ = writeln!(out, "{k:4}: ({:02x}) {t}", i.code);
        k += if wide { 2 } else { 1 };
    }
    let _ = MEM;
    out
}
