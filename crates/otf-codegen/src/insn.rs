//! The BPF instruction encoding (`struct bpf_insn`, Documentation/bpf/standardization/
//! instruction-set.rst): 8 bytes, `code`, `dst:4 src:4`, `off: i16`, `imm: i32`; a 64-bit
//! immediate load takes two slots.
//!
//! Written here rather than taken from a crate: the candidates (rbpf's builder, aya-obj's
//! bindgen struct) either pull in a user-space VM or offer no builder, and the encoding is a
//! handful of bit fields that the unit tests below pin against known byte strings.

/// A register, `r0`..`r10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg(pub u8);

/// Return value and scratch.
pub const R0: Reg = Reg(0);
/// Argument 1 and scratch.
pub const R1: Reg = Reg(1);
/// Argument 2 and scratch.
pub const R2: Reg = Reg(2);
/// Argument 3 and scratch.
pub const R3: Reg = Reg(3);
/// Argument 4 and scratch.
pub const R4: Reg = Reg(4);
/// Argument 5 and scratch.
pub const R5: Reg = Reg(5);
/// Callee-saved.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Callee-saved.
pub const R8: Reg = Reg(8);
/// Callee-saved.
pub const R9: Reg = Reg(9);
/// The read-only frame pointer.
pub const R10: Reg = Reg(10);

// Instruction classes.
pub(crate) const LD: u8 = 0x00;
pub(crate) const LDX: u8 = 0x01;
pub(crate) const ST: u8 = 0x02;
pub(crate) const STX: u8 = 0x03;
pub(crate) const ALU: u8 = 0x04;
pub(crate) const JMP: u8 = 0x05;
pub(crate) const JMP32: u8 = 0x06;
pub(crate) const ALU64: u8 = 0x07;

/// Memory access size: 32 bits.
pub const W: u8 = 0x00;
/// Memory access size: 16 bits.
pub const H: u8 = 0x08;
/// Memory access size: 8 bits.
pub const B: u8 = 0x10;
/// Memory access size: 64 bits.
pub const DW: u8 = 0x18;
// Modes.
pub(crate) const IMM: u8 = 0x00;
pub(crate) const MEM: u8 = 0x60;
pub(crate) const ATOMIC: u8 = 0xc0;

// Source operand.
pub(crate) const K: u8 = 0x00;
pub(crate) const X: u8 = 0x08;
/// `BPF_END`: byte-order conversion (class ALU), with [`TO_BE`] in the source bit.
pub(crate) const END: u8 = 0xd0;
/// `BPF_TO_BE`.
pub(crate) const TO_BE: u8 = 0x08;

/// Source register of a 64-bit immediate load: the immediate is a map fd.
pub const PSEUDO_MAP_FD: u8 = 1;
/// Source register of a 64-bit immediate load: map fd plus an offset into its only value.
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// Source register of a 64-bit immediate load: the address of a subprogram (callbacks).
pub const PSEUDO_FUNC: u8 = 4;
/// Source register of a call: a BPF-to-BPF call, `imm` relative to the next instruction.
pub const PSEUDO_CALL: u8 = 1;

/// An ALU operation (`code & 0xf0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Alu {
    /// `+=`
    Add = 0x00,
    /// `-=`
    Sub = 0x10,
    /// `*=`
    Mul = 0x20,
    /// `/=` (unsigned)
    Div = 0x30,
    /// `|=`
    Or = 0x40,
    /// `&=`
    And = 0x50,
    /// `<<=`
    Lsh = 0x60,
    /// `>>=` (logical)
    Rsh = 0x70,
    /// `= -dst`
    Neg = 0x80,
    /// `%=` (unsigned)
    Mod = 0x90,
    /// `^=`
    Xor = 0xa0,
    /// `=`
    Mov = 0xb0,
    /// `s>>=` (arithmetic)
    Arsh = 0xc0,
}

/// A jump condition (`code & 0xf0` of class JMP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Cond {
    /// `==`
    Eq = 0x10,
    /// `>` unsigned
    Gt = 0x20,
    /// `>=` unsigned
    Ge = 0x30,
    /// `&` (jump if any bit in common)
    Set = 0x40,
    /// `!=`
    Ne = 0x50,
    /// `s>`
    Sgt = 0x60,
    /// `s>=`
    Sge = 0x70,
    /// `<` unsigned
    Lt = 0xa0,
    /// `<=` unsigned
    Le = 0xb0,
    /// `s<`
    Slt = 0xc0,
    /// `s<=`
    Sle = 0xd0,
}

/// An atomic read-modify-write (`imm` of a `BPF_ATOMIC` store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Atomic {
    /// `lock *(u64 *)(dst + off) += src`
    Add,
    /// `lock *(u64 *)(dst + off) &= src`
    And,
    /// `lock *(u64 *)(dst + off) |= src`
    Or,
    /// `src = atomic_fetch_or(dst + off, src)`
    FetchOr,
    /// `src = atomic_fetch_and(dst + off, src)` (a full barrier on every JIT)
    FetchAnd,
    /// `r0 = cmpxchg(dst + off, r0, src)`
    Cmpxchg,
}

impl Atomic {
    pub(crate) fn imm(self) -> i32 {
        match self {
            Atomic::Add => 0x00,
            Atomic::Or => 0x40,
            Atomic::FetchOr => 0x40 | 0x01,
            Atomic::FetchAnd => 0x50 | 0x01,
            Atomic::And => 0x50,
            Atomic::Cmpxchg => 0xf0 | 0x01,
        }
    }
}

/// One instruction slot, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    /// Opcode: class | size/mode | source | operation.
    pub code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high nibble.
    pub regs: u8,
    /// Signed offset: jump distance or memory offset.
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

impl Insn {
    /// An instruction from its fields.
    pub const fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src.0 << 4) | (dst.0 & 0x0f),
            off,
            imm,
        }
    }

    /// The destination register.
    pub fn dst(&self) -> Reg {
        Reg(self.regs & 0x0f)
    }

    /// The source register.
    pub fn src(&self) -> Reg {
        Reg(self.regs >> 4)
    }

    /// The instruction class (`code & 7`).
    pub fn class(&self) -> u8 {
        self.code & 0x07
    }

    /// The first slot of a 64-bit immediate load (the second holds the upper half).
    pub fn is_ld_imm64(&self) -> bool {
        self.code == LD | DW | IMM
    }

    /// The 8 bytes the kernel reads, in host byte order.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }

    /// `dst op= src` (64-bit).
    pub const fn alu64_reg(op: Alu, dst: Reg, src: Reg) -> Insn {
        Insn::new(ALU64 | X | op as u8, dst, src, 0, 0)
    }

    /// `dst op= imm` (64-bit, `imm` sign-extended).
    pub const fn alu64_imm(op: Alu, dst: Reg, imm: i32) -> Insn {
        Insn::new(ALU64 | K | op as u8, dst, Reg(0), 0, imm)
    }

    /// `dst = src`.
    pub const fn mov(dst: Reg, src: Reg) -> Insn {
        Insn::alu64_reg(Alu::Mov, dst, src)
    }

    /// `dst = imm` (sign-extended).
    pub const fn mov_imm(dst: Reg, imm: i32) -> Insn {
        Insn::alu64_imm(Alu::Mov, dst, imm)
    }

    /// `dst = (u32)src`: a 32-bit move, which zero-extends.
    pub const fn mov32(dst: Reg, src: Reg) -> Insn {
        Insn::new(ALU | X | Alu::Mov as u8, dst, src, 0, 0)
    }

    /// `dst = be<bits> dst`: convert the low `bits` (16, 32 or 64) of `dst` to big-endian
    /// byte order (`BPF_END | BPF_TO_BE`, a byte swap on little-endian hosts).
    pub const fn to_be(dst: Reg, bits: i32) -> Insn {
        Insn::new(ALU | END | TO_BE, dst, Reg(0), 0, bits)
    }

    /// `dst = -dst`.
    pub const fn neg(dst: Reg) -> Insn {
        Insn::new(ALU64 | K | Alu::Neg as u8, dst, Reg(0), 0, 0)
    }

    /// `dst = *(size *)(src + off)`.
    pub const fn ldx(size: u8, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(LDX | MEM | size, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub const fn stx(size: u8, dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(STX | MEM | size, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub const fn st(size: u8, dst: Reg, off: i16, imm: i32) -> Insn {
        Insn::new(ST | MEM | size, dst, Reg(0), off, imm)
    }

    /// An atomic operation on the u64 at `dst + off` with `src`.
    pub fn atomic64(op: Atomic, dst: Reg, off: i16, src: Reg) -> Insn {
        Insn::new(STX | ATOMIC | DW, dst, src, off, op.imm())
    }

    /// `if dst cond src goto +off`.
    pub const fn jmp_reg(cond: Cond, dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(JMP | X | cond as u8, dst, src, off, 0)
    }

    /// `if dst cond imm goto +off` (`imm` sign-extended to 64 bits).
    pub const fn jmp_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(JMP | K | cond as u8, dst, Reg(0), off, imm)
    }

    /// `if (u32)dst cond imm goto +off`.
    pub const fn jmp32_imm(cond: Cond, dst: Reg, imm: i32, off: i16) -> Insn {
        Insn::new(JMP32 | K | cond as u8, dst, Reg(0), off, imm)
    }

    /// `goto +off`.
    pub const fn ja(off: i16) -> Insn {
        Insn::new(JMP, Reg(0), Reg(0), off, 0)
    }

    /// `call helper`.
    pub const fn call_helper(id: i32) -> Insn {
        Insn::new(JMP | 0x80, Reg(0), Reg(0), 0, id)
    }

    /// `call pc + 1 + rel` (a BPF-to-BPF call).
    pub const fn call_rel(rel: i32) -> Insn {
        Insn::new(JMP | 0x80, Reg(0), Reg(PSEUDO_CALL), 0, rel)
    }

    /// `exit`.
    pub const fn exit() -> Insn {
        Insn::new(JMP | 0x90, Reg(0), Reg(0), 0, 0)
    }

    /// The two slots of `dst = imm64`, with `src` a pseudo source (0 for a plain constant).
    pub const fn ld_imm64(dst: Reg, src: u8, imm: u64) -> [Insn; 2] {
        [
            Insn::new(LD | DW | IMM, dst, Reg(src), 0, imm as u32 as i32),
            Insn::new(0, Reg(0), Reg(0), 0, (imm >> 32) as u32 as i32),
        ]
    }
}

/// BPF helper function ids (`enum bpf_func_id`, include/uapi/linux/bpf.h).
pub mod helper {
    /// `bpf_map_lookup_elem` (3.19).
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    /// `bpf_map_update_elem` (3.19).
    pub const MAP_UPDATE_ELEM: i32 = 2;
    /// `bpf_map_delete_elem` (3.19).
    pub const MAP_DELETE_ELEM: i32 = 3;
    /// `bpf_ktime_get_ns` (4.1): `CLOCK_MONOTONIC`, the clock of otf's BPF timers.
    pub const KTIME_GET_NS: i32 = 5;
    /// `bpf_get_prandom_u32` (4.1).
    pub const GET_PRANDOM_U32: i32 = 7;
    /// `bpf_get_smp_processor_id` (4.1).
    pub const GET_SMP_PROCESSOR_ID: i32 = 8;
    /// `bpf_get_current_pid_tgid` (4.2).
    pub const GET_CURRENT_PID_TGID: i32 = 14;
    /// `bpf_get_current_uid_gid` (4.2).
    pub const GET_CURRENT_UID_GID: i32 = 15;
    /// `bpf_get_current_comm` (4.2).
    pub const GET_CURRENT_COMM: i32 = 16;
    /// `bpf_get_current_task` (4.8).
    pub const GET_CURRENT_TASK: i32 = 35;
    /// `bpf_probe_read_user` (5.5).
    pub const PROBE_READ_USER: i32 = 112;
    /// `bpf_probe_read_kernel` (5.5).
    pub const PROBE_READ_KERNEL: i32 = 113;
    /// `bpf_probe_read_user_str` (5.5).
    pub const PROBE_READ_USER_STR: i32 = 114;
    /// `bpf_probe_read_kernel_str` (5.5).
    pub const PROBE_READ_KERNEL_STR: i32 = 115;
    /// `bpf_ktime_get_boot_ns` (5.8).
    pub const KTIME_GET_BOOT_NS: i32 = 125;
    /// `bpf_ringbuf_output` (5.8).
    pub const RINGBUF_OUTPUT: i32 = 130;
    /// `bpf_for_each_map_elem` (5.13).
    pub const FOR_EACH_MAP_ELEM: i32 = 164;
    /// `bpf_snprintf` (5.13).
    pub const SNPRINTF: i32 = 165;
    /// `bpf_timer_init` (5.15).
    pub const TIMER_INIT: i32 = 169;
    /// `bpf_timer_set_callback` (5.15).
    pub const TIMER_SET_CALLBACK: i32 = 170;
    /// `bpf_timer_start` (5.15).
    pub const TIMER_START: i32 = 171;
    /// `bpf_timer_cancel` (5.15).
    pub const TIMER_CANCEL: i32 = 172;
    /// `bpf_get_attach_cookie` (5.15; raw tracepoints 6.10).
    pub const GET_ATTACH_COOKIE: i32 = 174;
    /// `bpf_loop` (5.17).
    pub const LOOP: i32 = 181;
    /// `bpf_map_lookup_percpu_elem` (5.19).
    pub const MAP_LOOKUP_PERCPU_ELEM: i32 = 195;

    /// The helper's name, for listings.
    pub fn name(id: i32) -> Option<&'static str> {
        Some(match id {
            MAP_LOOKUP_ELEM => "bpf_map_lookup_elem",
            MAP_UPDATE_ELEM => "bpf_map_update_elem",
            MAP_DELETE_ELEM => "bpf_map_delete_elem",
            KTIME_GET_NS => "bpf_ktime_get_ns",
            GET_PRANDOM_U32 => "bpf_get_prandom_u32",
            GET_SMP_PROCESSOR_ID => "bpf_get_smp_processor_id",
            GET_CURRENT_PID_TGID => "bpf_get_current_pid_tgid",
            GET_CURRENT_UID_GID => "bpf_get_current_uid_gid",
            GET_CURRENT_COMM => "bpf_get_current_comm",
            GET_CURRENT_TASK => "bpf_get_current_task",
            PROBE_READ_USER => "bpf_probe_read_user",
            PROBE_READ_KERNEL => "bpf_probe_read_kernel",
            PROBE_READ_USER_STR => "bpf_probe_read_user_str",
            PROBE_READ_KERNEL_STR => "bpf_probe_read_kernel_str",
            KTIME_GET_BOOT_NS => "bpf_ktime_get_boot_ns",
            RINGBUF_OUTPUT => "bpf_ringbuf_output",
            SNPRINTF => "bpf_snprintf",
            TIMER_INIT => "bpf_timer_init",
            TIMER_SET_CALLBACK => "bpf_timer_set_callback",
            TIMER_START => "bpf_timer_start",
            TIMER_CANCEL => "bpf_timer_cancel",
            GET_ATTACH_COOKIE => "bpf_get_attach_cookie",
            LOOP => "bpf_loop",
            FOR_EACH_MAP_ELEM => "bpf_for_each_map_elem",
            MAP_LOOKUP_PERCPU_ELEM => "bpf_map_lookup_percpu_elem",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Byte strings as `llvm-objdump -d` prints them for clang's BPF output.
    #[test]
    fn encodings_match_llvm() {
        // r1 = r6
        assert_eq!(Insn::mov(R1, R6).to_bytes(), [0xbf, 0x61, 0, 0, 0, 0, 0, 0]);
        // r0 = 0
        assert_eq!(Insn::mov_imm(R0, 0).to_bytes(), [0xb7, 0, 0, 0, 0, 0, 0, 0]);
        // r1 = *(u64 *)(r8 + 16)
        assert_eq!(
            Insn::ldx(DW, R1, R8, 16).to_bytes(),
            [0x79, 0x81, 0x10, 0, 0, 0, 0, 0]
        );
        // *(u64 *)(r10 - 8) = r8
        assert_eq!(
            Insn::stx(DW, R10, -8, R8).to_bytes(),
            [0x7b, 0x8a, 0xf8, 0xff, 0, 0, 0, 0]
        );
        // if r1 s< r2 goto +3
        assert_eq!(
            Insn::jmp_reg(Cond::Slt, R1, R2, 3).to_bytes(),
            [0xcd, 0x21, 3, 0, 0, 0, 0, 0]
        );
        // call bpf_loop
        assert_eq!(
            Insn::call_helper(helper::LOOP).to_bytes(),
            [0x85, 0, 0, 0, 181, 0, 0, 0]
        );
        // exit
        assert_eq!(Insn::exit().to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        // lock *(u64 *)(r1 + 0) += r2
        assert_eq!(
            Insn::atomic64(Atomic::Add, R1, 0, R2).to_bytes(),
            [0xdb, 0x21, 0, 0, 0, 0, 0, 0]
        );
        // r0 = cmpxchg_64(r1 + 0, r0, r2)
        assert_eq!(
            Insn::atomic64(Atomic::Cmpxchg, R1, 0, R2).to_bytes(),
            [0xdb, 0x21, 0, 0, 0xf1, 0, 0, 0]
        );
        // r1 = 0x1122334455667788 ll
        let l = Insn::ld_imm64(R1, 0, 0x1122_3344_5566_7788);
        assert_eq!(l[0].to_bytes(), [0x18, 0x01, 0, 0, 0x88, 0x77, 0x66, 0x55]);
        assert_eq!(l[1].to_bytes(), [0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
        // r1 s>>= r2 ; r1 %= r2 ; r1 = -r1
        assert_eq!(Insn::alu64_reg(Alu::Arsh, R1, R2).code, 0xcf);
        assert_eq!(Insn::alu64_reg(Alu::Mod, R1, R2).code, 0x9f);
        assert_eq!(Insn::neg(R1).code, 0x87);
        // w1 = w2
        assert_eq!(Insn::mov32(R1, R2).code, 0xbc);
        // r1 = be64 r1
        assert_eq!(
            Insn::to_be(R1, 64).to_bytes(),
            [0xdc, 0x01, 0, 0, 64, 0, 0, 0]
        );
        // r3 = be32 r3
        assert_eq!(
            Insn::to_be(R3, 32).to_bytes(),
            [0xdc, 0x03, 0, 0, 32, 0, 0, 0]
        );
    }

    #[test]
    fn fields_round_trip() {
        let i = Insn::jmp_imm(Cond::Ne, R7, -5, -300);
        assert_eq!(i.dst(), R7);
        assert_eq!(i.src(), R0);
        assert_eq!(i.off, -300);
        assert_eq!(i.imm, -5);
        assert_eq!(i.class(), JMP);
        assert!(Insn::ld_imm64(R1, PSEUDO_MAP_VALUE, 3)[0].is_ld_imm64());
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
