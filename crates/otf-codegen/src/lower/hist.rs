//! Printing a histogram in a kernel body (`print(@hist_log(a[k]))`, `@hist_linear`): the
//! `Out` instruction's plan (`otf_script::memdump::HistSnap`) names the aggregate, where
//! its keys are among the record's arguments and which record words receive the buckets.
//! SystemTap formats the histogram when the print runs, so the buckets are copied then:
//! the record's words are zeroed, and every CPU's copy of the element (a per-CPU map, read
//! as `stats` reads it: `bpf_loop` over the CPUs with `bpf_map_lookup_percpu_elem`) adds
//! its buckets to them. An element no CPU has gives zeros: the empty histogram user space
//! prints for it. User space renders the words (`otf_script::hist`).

use otf_script::bytecode::{MapOperands, HIST_LOG_BUCKETS, MAXSTRINGLEN};
use otf_script::memdump::HistSnap;

use super::{copy_str, sslot, zero, Gen, TMP};
use crate::asm::FuncId;
use crate::insn::{Alu, Insn, DW, R0, R1, R2, R8};
use crate::layout::off;
use crate::maps::MapKind;
use crate::Error;

impl Gen<'_> {
    /// Copy the buckets of histogram `h` into the staged record's words (`Frame::out_args`),
    /// its integer keys being the staged arguments and its string keys the string stack
    /// slots from `sbase` on (the record's string arguments).
    pub(super) fn hist_snapshot(
        &mut self,
        fid: FuncId,
        h: &HistSnap,
        sbase: u32,
    ) -> Result<(), Error> {
        let bad = |what: &str| {
            Error::BadCode(format!(
                "histogram of global {} in a print: {what}",
                h.global
            ))
        };
        let m = self.map(h.global as i32)?;
        if !m.kind.per_cpu() {
            return Err(bad("not an aggregate"));
        }
        let layout = m.stat();
        let (from, n) = if h.linear {
            layout.linear.map(|(o, n)| (o, n as usize))
        } else {
            layout.log.map(|o| (o, HIST_LOG_BUCKETS))
        }
        .ok_or_else(|| bad("the aggregate keeps no such buckets"))?;
        if n != h.words {
            return Err(bad("its number of buckets"));
        }
        let mo = MapOperands::unpack(h.keys);
        let f = self.b.f(fid);
        let key = if m.kind == MapKind::PercpuArray {
            f.emit(Insn::st(DW, R8, off::F_TMP, 0));
            i32::from(off::F_TMP)
        } else {
            // The key in `Frame::keybuf`, in key order: 8 bytes an integer, MAXSTRINGLEN a
            // string.
            let (mut at, mut i, mut j) = (off::F_KEYBUF, h.arg, sbase + h.sarg as u32);
            for k in 0..mo.nkeys as usize {
                if mo.str_keys & (1 << k) != 0 {
                    copy_str(f, R8, at, R8, sslot(j));
                    j += 1;
                    at += MAXSTRINGLEN;
                } else {
                    f.emit(Insn::ldx(DW, TMP, R8, off::s16(off::F_OUT_ARGS + 8 * i)));
                    f.emit(Insn::stx(DW, R8, off::s16(at), TMP));
                    i += 1;
                    at += 8;
                }
            }
            off::F_KEYBUF as i32
        };
        let dst = off::F_OUT_ARGS + 8 * h.at;
        zero(f, dst, n);
        let cb = self.cpu_callback(m, key, |f| {
            for b in 0..n {
                f.emit(Insn::ldx(DW, R1, R0, off::s16(from as usize + 8 * b)));
                f.emit(Insn::ldx(DW, R2, R8, off::s16(dst + 8 * b)));
                f.emit(Insn::alu64_reg(Alu::Add, R2, R1));
                f.emit(Insn::stx(DW, R8, off::s16(dst + 8 * b), R2));
            }
            super::stats::callback_return(f, 0);
        });
        self.loop_cpus(fid, cb);
        Ok(())
    }
}
