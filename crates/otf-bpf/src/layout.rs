//! Numbers and record layouts shared with the BPF C side (`bpf/otf_runtime.h`).
//!
//! The test `tests/header.rs` parses the C headers and checks every constant here.

/// Highest pidx + 1 the runtime object has room for.
pub const MAX_PROBES: usize = 4096;
/// Highest condition id + 1.
pub const MAX_CONDS: usize = 4096;
/// Total length of all re-evaluation lists together.
pub const MAX_REEVAL: usize = 16384;
/// Conditions re-evaluated after one body, at most.
pub const MAX_REEVAL_PER_PROBE: usize = 64;
/// Nested hits on one CPU (task, soft irq, hard irq, NMI); deeper hits are skipped and counted.
pub const MAX_NEST: usize = 4;
/// Probes (pidx) run by one attachment through [`crate::ProbeSlot::chain`].
pub const MAX_CHAIN: usize = 64;
/// Polls of the lock word before a hit that cannot take its lock is skipped.
pub const MAXTRYLOCK: u32 = 65536;
/// `(tid, pidx)` `@entry` records kept (LRU).
pub const ENTRY_MAP_SIZE: usize = 16384;
/// Ring buffer size in bytes.
pub const RINGBUF_SIZE: usize = 1 << 22;
/// "No code" marker in a probe slot.
pub const NO_CODE: u32 = 0xffff_ffff;

/// Probe slot flag: the slot is configured.
pub const PROBE_VALID: u32 = 1;
/// Probe slot flag: safe context, may send a notification.
pub const PROBE_SAFE: u32 = 2;
/// Probe slot flag: return probe.
pub const PROBE_RETURN: u32 = 4;
/// Probe slot flag: has an entry program whose `@entry` slots are loaded at return.
pub const PROBE_HAS_ENTRY: u32 = 8;
/// Attach cookie bit marking the entry program of a return probe.
pub const COOKIE_ENTRY: u64 = 1 << 32;

/// Error kind: division by zero.
pub const ERR_DIV_ZERO: u32 = 1;
/// Error kind: MAXACTION exceeded.
pub const ERR_MAXACTION: u32 = 2;
/// Error kind: invalid randint range.
pub const ERR_RANDINT: u32 = 3;
/// Error kind: malformed code (bad opcode, operand, jump or stack depth).
pub const ERR_BAD_CODE: u32 = 4;
/// Size of the per-kind error counter array.
pub const ERR_KINDS: usize = 8;

/// Record kind: output record.
pub const REC_OUT: u32 = 1;
/// Record kind: `exit()`.
pub const REC_EXIT: u32 = 2;
/// Record kind: run-time error.
pub const REC_ERROR: u32 = 3;
/// Record kind: notification (`need_refresh` went 0 → 1 in a safe context).
pub const REC_NOTIFY: u32 = 4;

/// Size of a record header (`struct otf_rec_hdr`).
pub const REC_HDR_SIZE: usize = 48;

/// The attach cookie of a hit of `pidx`.
pub const fn cookie(pidx: u32) -> u64 {
    pidx as u64
}

/// The attach cookie of the entry program of return probe `pidx` (saves `@entry` slots).
pub const fn entry_cookie(pidx: u32) -> u64 {
    pidx as u64 | COOKIE_ENTRY
}

const _: () = assert!(MAX_REEVAL_PER_PROBE <= MAX_REEVAL);
const _: () = assert!(MAX_NEST <= 64);
