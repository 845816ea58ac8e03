//! Decoding of ring-buffer records into [`Event`]s.

use std::borrow::Cow;

use crate::layout::{ERR_ARRAY_FULL, ERR_BAD_CODE, ERR_DIV_ZERO, ERR_MAXACTION, ERR_RANDINT};
use crate::layout::{ERR_EMPTY_AGGREGATE, ERR_KERNEL_STRING, ERR_POSITION};
use crate::layout::{ERR_READ_FAULT, ERR_USER_STRING};
use crate::layout::{REC_DEFER, REC_ERROR, REC_EXIT, REC_HDR_SIZE, REC_NOTIFY, REC_OUT};
use crate::layout::{REC_ERR_ADDR, REC_ERR_ARG};
use otf_script::bytecode::MAXSTRINGLEN;

/// A run-time error kind, as reported by the BPF VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeErrorKind {
    /// Division or modulo by zero.
    DivisionByZero,
    /// More than `MAX_STEPS` instructions in one program run.
    MaxAction,
    /// `randint(n)` with `n <= 0`.
    InvalidRandint,
    /// Malformed code: bad opcode, operand, jump or stack depth.
    BadCode,
    /// A new element in a full array (SystemTap's "Array overflow").
    ArrayFull,
    /// `user_string` (or `user_string_n`) could not read the string.
    UserStringFault {
        /// The address.
        addr: u64,
        /// The helper's negative errno (`-EFAULT`).
        rc: i64,
    },
    /// `kernel_string` (or `kernel_string_n`) could not read the string.
    KernelStringFault {
        /// The address.
        addr: u64,
        /// The helper's negative errno.
        rc: i64,
    },
    /// `%m` or `%M` (`printf`'s memory dumps) could not read the memory.
    ReadFault {
        /// The address.
        addr: u64,
    },
    /// `@min`, `@max`, `@avg` or `@variance` of an aggregate with no values.
    EmptyAggregate,
    /// `stringat` outside its string (SystemTap's "Position out of bounds").
    PositionOutOfBounds,
    /// A kind this version does not know.
    Unknown(u32),
}

impl RuntimeErrorKind {
    /// The kind with this number (the operands of a string fault 0).
    pub fn from_u32(v: u32) -> Self {
        Self::from_record(v, 0, 0)
    }

    /// The kind of an error record: its number and its operands (`Frame::erraddr`,
    /// `Frame::errarg`).
    pub fn from_record(v: u32, addr: u64, arg: i64) -> Self {
        match v {
            ERR_DIV_ZERO => Self::DivisionByZero,
            ERR_MAXACTION => Self::MaxAction,
            ERR_RANDINT => Self::InvalidRandint,
            ERR_BAD_CODE => Self::BadCode,
            ERR_ARRAY_FULL => Self::ArrayFull,
            ERR_USER_STRING => Self::UserStringFault { addr, rc: arg },
            ERR_KERNEL_STRING => Self::KernelStringFault { addr, rc: arg },
            ERR_READ_FAULT => Self::ReadFault { addr },
            ERR_EMPTY_AGGREGATE => Self::EmptyAggregate,
            ERR_POSITION => Self::PositionOutOfBounds,
            v => Self::Unknown(v),
        }
    }

    /// The message SystemTap prints for it (`ERROR: <message> near ...`).
    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match *self {
            Self::DivisionByZero => "division by zero",
            Self::MaxAction => "MAXACTION exceeded",
            Self::InvalidRandint => "invalid randint range",
            Self::BadCode => "malformed bytecode",
            Self::ArrayFull => "Array overflow, check size limit",
            Self::UserStringFault { addr, rc } => {
                return Cow::Owned(otf_script::vm::string_fault_message(false, addr, rc))
            }
            Self::KernelStringFault { addr, rc } => {
                return Cow::Owned(otf_script::vm::string_fault_message(true, addr, rc))
            }
            Self::ReadFault { addr } => {
                return Cow::Owned(otf_script::vm::memory_fault_message(addr))
            }
            Self::EmptyAggregate => "empty aggregate",
            Self::PositionOutOfBounds => {
                return Cow::Owned(otf_script::strfn::StrError::PositionOutOfBounds.to_string())
            }
            Self::Unknown(_) => "unknown run-time error",
        })
    }
}

impl std::fmt::Display for RuntimeErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

/// One record from the runtime's ring buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An output record (`printf`, `println`, ...).
    Output {
        /// The probe hit that produced it.
        pidx: u32,
        /// The format id.
        fmt: u32,
        /// The integer arguments, first argument first.
        args: Vec<i64>,
        /// The string arguments, first first (each up to its NUL).
        strs: Vec<String>,
        /// The CPU of the hit.
        cpu: u32,
        /// The thread group id of the hit.
        pid: u32,
        /// The thread id of the hit.
        tid: u32,
        /// The task's comm (`execname()`), NUL-padded.
        comm: [u8; 16],
    },
    /// `exit()` was called by a hit of `pidx`.
    Exit {
        /// The probe.
        pidx: u32,
    },
    /// A run-time error in a hit of `pidx` (its body, or a condition it re-evaluated).
    Error {
        /// The probe.
        pidx: u32,
        /// What went wrong.
        kind: RuntimeErrorKind,
        /// The absolute code offset of the failing instruction.
        pc: u32,
    },
    /// A hit of `pidx` whose body runs in user space (a deferred `timer` body).
    Deferred {
        /// The probe.
        pidx: u32,
        /// The CPU of the hit.
        cpu: u32,
        /// The thread group id of the hit.
        pid: u32,
        /// The thread id of the hit.
        tid: u32,
        /// The task's comm, NUL-padded.
        comm: [u8; 16],
    },
    /// `need_refresh` went 0 → 1 in a hit of `pidx` running in a safe context.
    Notification {
        /// The probe whose body changed a condition.
        pidx: u32,
    },
}

impl Event {
    /// `execname()` of an [`Event::Output`] as text (lossy), else `None`.
    pub fn comm_str(&self) -> Option<String> {
        match self {
            Event::Output { comm, .. } | Event::Deferred { comm, .. } => {
                let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
                Some(String::from_utf8_lossy(&comm[..end]).into_owned())
            }
            _ => None,
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(a)
}

/// Decode one raw record. `None` if it is too short or of an unknown kind.
pub fn decode(b: &[u8]) -> Option<Event> {
    if b.len() < REC_HDR_SIZE {
        return None;
    }
    let kind = u32_at(b, 0);
    let pidx = u32_at(b, 4);
    let code = u32_at(b, 8);
    let aux = u32_at(b, 12);
    match kind {
        REC_OUT => {
            // aux: the number of integer arguments, and of string arguments above bit 16.
            let (n, ns) = ((aux & 0xffff) as usize, (aux >> 16) as usize);
            let sbase = REC_HDR_SIZE + 8 * n;
            if b.len() < sbase + MAXSTRINGLEN * ns {
                return None;
            }
            let strs = (0..ns)
                .map(|k| {
                    let s = &b[sbase + MAXSTRINGLEN * k..sbase + MAXSTRINGLEN * (k + 1)];
                    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
                    String::from_utf8_lossy(&s[..end]).into_owned()
                })
                .collect();
            let args = (0..n)
                .map(|k| {
                    let off = REC_HDR_SIZE + 8 * k;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&b[off..off + 8]);
                    i64::from_ne_bytes(a)
                })
                .collect();
            let mut comm = [0u8; 16];
            comm.copy_from_slice(&b[32..48]);
            Some(Event::Output {
                pidx,
                fmt: code,
                args,
                strs,
                cpu: u32_at(b, 16),
                pid: u32_at(b, 20),
                tid: u32_at(b, 24),
                comm,
            })
        }
        REC_EXIT => Some(Event::Exit { pidx }),
        REC_ERROR => {
            let word = |off: usize| {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[off..off + 8]);
                u64::from_ne_bytes(a)
            };
            Some(Event::Error {
                pidx,
                kind: RuntimeErrorKind::from_record(
                    code,
                    word(REC_ERR_ADDR),
                    word(REC_ERR_ARG) as i64,
                ),
                pc: aux,
            })
        }
        REC_NOTIFY => Some(Event::Notification { pidx }),
        REC_DEFER => {
            let mut comm = [0u8; 16];
            comm.copy_from_slice(&b[32..48]);
            Some(Event::Deferred {
                pidx,
                cpu: u32_at(b, 16),
                pid: u32_at(b, 20),
                tid: u32_at(b, 24),
                comm,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(kind: u32, pidx: u32, code: u32, aux: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [kind, pidx, code, aux, 1, 2, 3, 0] {
            v.extend_from_slice(&x.to_ne_bytes());
        }
        let mut comm = [0u8; 16];
        comm[..3].copy_from_slice(b"abc");
        v.extend_from_slice(&comm);
        v
    }

    #[test]
    fn decodes_every_kind() {
        let mut out = hdr(REC_OUT, 7, 3, 2);
        out.extend_from_slice(&(-5i64).to_ne_bytes());
        out.extend_from_slice(&i64::MAX.to_ne_bytes());
        let e = decode(&out).unwrap();
        assert_eq!(e.comm_str().as_deref(), Some("abc"));
        match e {
            Event::Output {
                pidx,
                fmt,
                args,
                cpu,
                pid,
                tid,
                ..
            } => {
                assert_eq!((pidx, fmt, cpu, pid, tid), (7, 3, 1, 2, 3));
                assert_eq!(args, vec![-5, i64::MAX]);
            }
            e => panic!("{e:?}"),
        }
        // One integer and two strings: aux = 1 | 2 << 16.
        let mut out = hdr(REC_OUT, 1, 0, 1 | 2 << 16);
        out.extend_from_slice(&42i64.to_ne_bytes());
        for t in [&b"bash"[..], &[b'x'; 127][..]] {
            let mut s = [0u8; MAXSTRINGLEN];
            s[..t.len()].copy_from_slice(t);
            out.extend_from_slice(&s);
        }
        match decode(&out).unwrap() {
            Event::Output { args, strs, .. } => {
                assert_eq!(args, vec![42]);
                assert_eq!(strs, vec!["bash".to_string(), "x".repeat(127)]);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(decode(&out[..out.len() - 1]), None);
        assert_eq!(
            decode(&hdr(REC_EXIT, 4, 0, 0)),
            Some(Event::Exit { pidx: 4 })
        );
        assert_eq!(
            decode(&hdr(REC_ERROR, 4, ERR_DIV_ZERO, 17)),
            Some(Event::Error {
                pidx: 4,
                kind: RuntimeErrorKind::DivisionByZero,
                pc: 17
            })
        );
        assert_eq!(
            decode(&hdr(REC_ERROR, 1, ERR_EMPTY_AGGREGATE, 9)),
            Some(Event::Error {
                pidx: 1,
                kind: RuntimeErrorKind::EmptyAggregate,
                pc: 9
            })
        );
        assert_eq!(
            RuntimeErrorKind::EmptyAggregate.message(),
            "empty aggregate"
        );
        assert_eq!(
            decode(&hdr(REC_ERROR, 2, ERR_ARRAY_FULL, 5)),
            Some(Event::Error {
                pidx: 2,
                kind: RuntimeErrorKind::ArrayFull,
                pc: 5
            })
        );
        assert_eq!(
            RuntimeErrorKind::ArrayFull.to_string(),
            "Array overflow, check size limit"
        );
        // A string fault carries the address and the error code where comm would be.
        let mut rec = hdr(REC_ERROR, 3, ERR_USER_STRING, 8);
        rec[REC_ERR_ADDR..REC_ERR_ADDR + 8].copy_from_slice(&0x7ffd_1234u64.to_ne_bytes());
        rec[REC_ERR_ARG..REC_ERR_ARG + 8].copy_from_slice(&(-14i64).to_ne_bytes());
        let e = decode(&rec).unwrap();
        assert_eq!(
            e,
            Event::Error {
                pidx: 3,
                kind: RuntimeErrorKind::UserStringFault {
                    addr: 0x7ffd_1234,
                    rc: -14
                },
                pc: 8
            }
        );
        let Event::Error { kind, .. } = e else {
            unreachable!()
        };
        assert_eq!(
            kind.message(),
            "user string copy fault -14 at 0x7ffd1234 [man error::fault]"
        );
        let mut rec = hdr(REC_ERROR, 3, ERR_KERNEL_STRING, 8);
        rec[REC_ERR_ADDR..REC_ERR_ADDR + 8].copy_from_slice(&1u64.to_ne_bytes());
        assert_eq!(
            decode(&rec).map(|e| match e {
                Event::Error { kind, .. } => kind.to_string(),
                e => panic!("{e:?}"),
            }),
            Some("kernel string copy fault at 0x1 [man error::fault]".to_string())
        );
        assert_eq!(
            decode(&hdr(REC_ERROR, 1, ERR_POSITION, 6)).map(|e| match e {
                Event::Error { kind, .. } => kind.to_string(),
                e => panic!("{e:?}"),
            }),
            Some("Position out of bounds".to_string())
        );
        assert_eq!(
            decode(&hdr(REC_NOTIFY, 9, 0, 0)),
            Some(Event::Notification { pidx: 9 })
        );
    }

    #[test]
    fn refuses_short_or_unknown_records() {
        assert_eq!(decode(&[0u8; 10]), None);
        assert_eq!(decode(&hdr(99, 0, 0, 0)), None);
        // Claims 2 arguments but carries none.
        assert_eq!(decode(&hdr(REC_OUT, 0, 0, 2)), None);
    }
}
