//! The prologue of the syscall-dispatch handlers ([`ProgKind::SyscallEnter`],
//! [`ProgKind::SyscallExit`]): one raw `sys_enter`/`sys_exit` link per dispatch unit runs for
//! every syscall of the machine, so the prologue finds the pidx of this syscall in this unit
//! (or leaves at once) before the hit path claims anything.
//!
//! ```text
//! unit = cookie; unit < SYSCALL_UNITS
//! exit: read the pt_regs window (nr)      enter: nr = ctx->args[1]
//! nr < SYSCALL_NRS; v = syscalls[unit * SYSCALL_NRS + nr]; v != 0; pidx = v - 1
//! native syscall (not a compat one)?      then on as a perf tracepoint hit of pidx
//! ```

use crate::asm::{Func, Label};
use crate::insn::{helper, Alu, Cond, Insn, DW, R0, R1, R10, R2, R3, R6, R7, W};
use crate::kind::{Compat, ProgKind, SYSCALL_REGS};
use crate::layout::{SYSCALL_NRS, SYSCALL_UNITS};
use crate::{Error, MapId};

/// Stack offset of the `pt_regs` window read (below the slots the handler uses after).
const WINDOW: i16 = -64;
/// Stack offset of the map key.
const KEY: i16 = -4;

/// `r6` = the context. Leaves `r7` = the pidx to run, or jumps to `out` (return 0).
pub(crate) fn prologue(f: &mut Func, kind: ProgKind, out: Label) -> Result<(), Error> {
    let regs = SYSCALL_REGS.ok_or_else(|| {
        Error::Image("syscall dispatch is not supported on this architecture".into())
    })?;
    let exit = kind == ProgKind::SyscallExit;
    let window = |f: &mut Func| {
        f.emit(Insn::mov(R1, R10));
        f.emit(Insn::alu64_imm(Alu::Add, R1, i32::from(WINDOW)));
        f.emit(Insn::mov_imm(R2, regs.len));
        f.emit(Insn::ldx(DW, R3, R6, 0)); // args[0]: struct pt_regs *
        f.emit(Insn::alu64_imm(Alu::Add, R3, i32::from(regs.base)));
        f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
        f.jmp_imm(Cond::Ne, R0, 0, out);
    };
    f.emit(Insn::call_helper(helper::GET_ATTACH_COOKIE));
    f.jmp_imm(Cond::Ge, R0, SYSCALL_UNITS as i32, out);
    f.emit(Insn::mov(R7, R0));
    f.emit(Insn::alu64_imm(
        Alu::Lsh,
        R7,
        SYSCALL_NRS.trailing_zeros() as i32,
    ));
    if exit {
        window(f);
        let (at, four) = regs.nr;
        f.emit(Insn::ldx(if four { W } else { DW }, R1, R10, WINDOW + at));
    } else {
        f.emit(Insn::ldx(DW, R1, R6, 8)); // args[1]: long id
    }
    f.jmp_imm(Cond::Ge, R1, SYSCALL_NRS as i32, out);
    f.emit(Insn::alu64_reg(Alu::Add, R7, R1));
    f.emit(Insn::stx(W, R10, KEY, R7));
    f.ld_map(R1, MapId::Syscalls, None);
    f.emit(Insn::mov(R2, R10));
    f.emit(Insn::alu64_imm(Alu::Add, R2, i32::from(KEY)));
    f.emit(Insn::call_helper(helper::MAP_LOOKUP_ELEM));
    f.jmp_imm(Cond::Eq, R0, 0, out);
    f.emit(Insn::ldx(W, R7, R0, 0));
    f.jmp_imm(Cond::Eq, R7, 0, out);
    f.emit(Insn::alu64_imm(Alu::Add, R7, -1));
    match regs.compat {
        Compat::Regs(at, mask) => {
            if !exit {
                window(f);
            }
            f.emit(Insn::ldx(DW, R1, R10, WINDOW + at));
            f.emit(Insn::alu64_imm(Alu::And, R1, mask));
            f.jmp_imm(Cond::Ne, R1, 0, out);
        }
        Compat::Task(at, mask) => {
            f.emit(Insn::call_helper(helper::GET_CURRENT_TASK));
            f.emit(Insn::mov(R3, R0));
            f.emit(Insn::alu64_imm(Alu::Add, R3, i32::from(at)));
            f.emit(Insn::mov(R1, R10));
            f.emit(Insn::alu64_imm(Alu::Add, R1, i32::from(WINDOW)));
            f.emit(Insn::mov_imm(R2, 4));
            f.emit(Insn::call_helper(helper::PROBE_READ_KERNEL));
            f.jmp_imm(Cond::Ne, R0, 0, out);
            f.emit(Insn::ldx(W, R1, R10, WINDOW));
            f.emit(Insn::alu64_imm(Alu::And, R1, mask));
            f.jmp_imm(Cond::Ne, R1, 0, out);
        }
    }
    Ok(())
}
