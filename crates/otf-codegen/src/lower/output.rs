//! Lowering `Out` (`printf`, `print`, `println`): the output record staged in
//! `Frame::out_args` (the pushed integer arguments, the bytes of the memory dumps, then the
//! string arguments) and sent to the events ring buffer. User space formats it
//! (`otf_script::format`), so `%b` needs nothing here: its value is an integer argument.
//!
//! `%m` and `%M` (`otf_script::memdump`): the `Out` instruction names a string literal,
//! the [`MemPlan`], saying which pushed argument is each dump's address, how many bytes it
//! reads (a constant, or a `.*` precision argument clamped to `1..=MAX_MEMORY_DUMP` here)
//! and which record words receive them (zeroed first). Each is read with `bpf_probe_read_kernel`
//! (`bpf_probe_read_user` for `%#m`) into its words; a failed read is SystemTap's run-time
//! error `read fault [man error::fault] at 0x…` (the first byte that cannot be read: the
//! address, or the page after it, found by reading the first byte again), and no record is
//! sent.
//!
//! Histograms (`print(@hist_log(s))`): the plan's `HistSnap`s, whose buckets are copied
//! into the record's words after the dumps ([`super::hist`]).

use otf_script::bytecode::{MAXSTRINGLEN, MAX_OUT_ARGS, MAX_OUT_STRS};
use otf_script::memdump::{DumpLen, MemPlan, MAX_MEMORY_DUMP, MAX_RECORD_ARG_BYTES, PAGE};

use super::{copy_str, emit_record, header, sslot, zero, Gen, Region, Val};
use crate::insn::{helper, Alu, Cond, Insn, DW, R0, R1, R2, R3, R8};
use crate::layout::{off, ERR_READ_FAULT, REC_HDR_SIZE, REC_OUT};
use crate::Error;

// The staged record's arguments fit between `Frame::out_args` and the string stack.
const _: () = assert!(off::F_OUT_ARGS + MAX_RECORD_ARG_BYTES <= off::F_SSTACK);

impl Gen<'_> {
    /// `Out` at `pc`: the record of its `n` integer and `ns` string arguments and its memory
    /// dumps.
    pub(super) fn out(&mut self, r: &mut Region<'_>, pc: usize) -> Result<(), Error> {
        let insn = self.code[pc];
        let bad = || Error::BadCode(format!("output arguments {:#x} at {pc}", insn.imm));
        let (n, ns) = (
            (insn.imm & 0xffff) as usize,
            ((insn.imm >> 16) & 0xffff) as usize,
        );
        if insn.imm < 0 || n > MAX_OUT_ARGS || ns > MAX_OUT_STRS || r.vs.len() < n {
            return Err(bad());
        }
        let plan = match otf_script::vm::out_plan(&insn) {
            None => MemPlan::default(),
            Some(lit) => self
                .strings
                .get(lit as usize)
                .and_then(|s| MemPlan::decode(s, n, ns))
                .ok_or_else(bad)?,
        };
        let nw = n + plan.words();
        if 8 * nw + MAXSTRINGLEN * ns > MAX_RECORD_ARG_BYTES {
            return Err(bad());
        }
        let fid = r.f;
        let base = r.vs.len() - n;
        for k in 0..n {
            let o = off::s16(off::F_OUT_ARGS + 8 * k);
            match r.vs[base + k] {
                Val::Const(c) if i32::try_from(c).is_ok() => {
                    self.b.f(fid).emit(Insn::st(DW, R8, o, c as i32));
                }
                _ => {
                    let x = self.in_reg(r, base + k);
                    self.b.f(fid).emit(Insn::stx(DW, R8, o, x));
                    r.vs[base + k] = Val::Slot;
                }
            }
        }
        r.vs.truncate(base);
        self.flush(r);
        for d in &plan.dumps {
            let arg = |i: usize| off::s16(off::F_OUT_ARGS + 8 * i);
            let f = self.b.f(fid);
            // The bytes after the ones read are zeros, as the reference VM has them.
            zero(f, off::F_OUT_ARGS + 8 * d.at, d.words());
            match d.len {
                DumpLen::Const(len) => f.emit(Insn::mov_imm(R2, len as i32)),
                DumpLen::Arg(i) => {
                    // SystemTap's length: the precision when above 0, else 1; at most
                    // MAX_MEMORY_DUMP here.
                    let max = MAX_MEMORY_DUMP as i32;
                    f.emit(Insn::ldx(DW, R2, R8, arg(i)));
                    f.emit(Insn::jmp_imm(Cond::Sge, R2, 1, 1));
                    f.emit(Insn::mov_imm(R2, 1));
                    f.emit(Insn::jmp_imm(Cond::Sle, R2, max, 1));
                    f.emit(Insn::mov_imm(R2, max));
                }
            }
            f.emit(Insn::mov(R1, R8));
            f.emit(Insn::alu64_imm(
                Alu::Add,
                R1,
                (off::F_OUT_ARGS + 8 * d.at) as i32,
            ));
            f.emit(Insn::ldx(DW, R3, R8, arg(d.addr)));
            f.emit(Insn::call_helper(if d.user {
                helper::PROBE_READ_USER
            } else {
                helper::PROBE_READ_KERNEL
            }));
            let ok = f.new_label();
            f.jmp_imm(Cond::Sge, R0, 0, ok);
            // SystemTap reads a byte at a time and names the first that faults: the
            // address when its byte cannot be read, else the next page (a dump is shorter
            // than a page, and memory is readable or not by page).
            f.emit(Insn::stx(DW, R8, off::F_ERRARG, R0));
            f.emit(Insn::mov(R1, R8));
            f.emit(Insn::alu64_imm(
                Alu::Add,
                R1,
                (off::F_OUT_ARGS + 8 * d.at) as i32,
            ));
            f.emit(Insn::mov_imm(R2, 1));
            f.emit(Insn::ldx(DW, R3, R8, arg(d.addr)));
            f.emit(Insn::call_helper(if d.user {
                helper::PROBE_READ_USER
            } else {
                helper::PROBE_READ_KERNEL
            }));
            f.emit(Insn::ldx(DW, R1, R8, arg(d.addr)));
            f.emit(Insn::jmp_imm(Cond::Slt, R0, 0, 2));
            f.emit(Insn::alu64_imm(Alu::And, R1, -(PAGE as i32)));
            f.emit(Insn::alu64_imm(Alu::Add, R1, PAGE as i32));
            f.emit(Insn::stx(DW, R8, off::F_ERRADDR, R1));
            self.error(r, ERR_READ_FAULT, pc);
            self.b.f(fid).bind(ok);
        }
        // The string arguments right after the integer ones.
        let sd = r.shape.sdepth[&pc];
        if (sd as usize) < ns {
            return Err(bad());
        }
        for h in &plan.hists {
            self.hist_snapshot(fid, h, sd - ns as u32)?;
        }
        for k in 0..ns {
            let at = off::F_OUT_ARGS + 8 * nw + MAXSTRINGLEN * k;
            copy_str(self.b.f(fid), R8, at, R8, sslot(sd - ns as u32 + k as u32));
        }
        header(
            self.b.f(fid),
            REC_OUT,
            Some((insn.arg, (nw | ns << 16) as i32)),
        );
        let size = REC_HDR_SIZE + 8 * nw + MAXSTRINGLEN * ns;
        emit_record(self.b.f(fid), size as i32);
        Ok(())
    }
}
