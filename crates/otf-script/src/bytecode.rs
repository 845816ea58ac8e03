//! The otf bytecode: what a compiled probe body or condition is. It is the intermediate form
//! between the compiler and the code generator: the reference VM ([`crate::vm`]) defines its
//! meaning and runs it in user space, and `otf-codegen` compiles it to native BPF for the
//! kernel.
//!
//! The machine is a stack machine over signed 64-bit integers with wrapping (two's-complement)
//! arithmetic:
//! - an operand stack of at most [`MAX_STACK`] values (depth checked at compile time);
//! - [`MAX_LOCALS`] local slots per probe hit (zeroed at the start of each hit);
//! - the script's globals (at most [`MAX_GLOBALS`]), shared by all probes;
//! - a step budget: at most [`MAX_STEPS`] instructions per program run (SystemTap's
//!   MAXACTION), charged per basic block ([`crate::vm::basic_blocks`]).
//!
//! Instructions are fixed-size ([`Insn`], 16 bytes). Jumps are relative to the next
//! instruction: `pc = pc + 1 + arg`. See `docs/bytecode.md` for the opcode table.

/// Maximum operand stack depth; the compiler refuses deeper expressions.
pub const MAX_STACK: usize = 32;
/// Number of local slots per probe hit (locals, parameters and temporaries of inlined calls).
pub const MAX_LOCALS: usize = 64;
/// Maximum number of globals in one script.
pub const MAX_GLOBALS: usize = 1024;
/// Maximum number of integer arguments of one output record (`printf`, `println`, ...).
pub const MAX_OUT_ARGS: usize = 16;
/// Maximum number of `@entry(E)` values saved for one return probe.
pub const MAX_ENTRY_SLOTS: usize = 8;
/// Step budget: instructions executed per program run (a body, a condition, an entry program)
/// before it is aborted with "MAXACTION exceeded"; charged a basic block at a time.
pub const MAX_STEPS: u32 = 20_000;
/// Maximum total code size of a script, in instructions.
pub const MAX_CODE: usize = 65_536;
/// Number of lock stripes: global `g` is protected by bit `g % LOCK_STRIPES` of a body's
/// lock mask.
pub const LOCK_STRIPES: usize = 64;

/// One instruction: 16 bytes, `#[repr(C)]`, identical to `struct otf_insn` in C.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Insn {
    /// The opcode ([`Op`] as `u8`).
    pub op: u8,
    /// Reserved, zero.
    pub pad: [u8; 3],
    /// Small operand: a slot, a global index, a relative jump, a format id, a context id.
    pub arg: i32,
    /// Wide operand: an immediate value or an argument count.
    pub imm: i64,
}

impl Insn {
    /// An instruction with both operands zero.
    pub const fn op(op: Op) -> Insn {
        Insn {
            op: op as u8,
            pad: [0; 3],
            arg: 0,
            imm: 0,
        }
    }

    /// An instruction with a small operand.
    pub const fn with_arg(op: Op, arg: i32) -> Insn {
        Insn {
            op: op as u8,
            pad: [0; 3],
            arg,
            imm: 0,
        }
    }

    /// An instruction with both operands.
    pub const fn new(op: Op, arg: i32, imm: i64) -> Insn {
        Insn {
            op: op as u8,
            pad: [0; 3],
            arg,
            imm,
        }
    }

    /// The opcode, if it is a known one.
    pub fn opcode(&self) -> Option<Op> {
        Op::from_u8(self.op)
    }
}

macro_rules! ops {
    ($( $(#[$m:meta])* $name:ident = $val:expr ),* $(,)?) => {
        /// Opcodes. `S` is the operand stack; `a` is [`Insn::arg`], `i` is [`Insn::imm`].
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Op { $( $(#[$m])* $name = $val ),* }

        impl Op {
            /// Every opcode, in numeric order.
            pub const ALL: &'static [Op] = &[$(Op::$name),*];

            /// The opcode with this number, if any.
            pub fn from_u8(v: u8) -> Option<Op> {
                match v { $( $val => Some(Op::$name), )* _ => None }
            }
        }
    };
}

ops! {
    /// Do nothing.
    Nop = 0,
    /// Push `i`.
    Push = 1,
    /// Push `globals[a]`.
    LdG = 2,
    /// Pop `v`; `globals[a] = v`.
    StG = 3,
    /// Push `locals[a]`.
    LdL = 4,
    /// Pop `v`; `locals[a] = v`.
    StL = 5,
    /// Push a copy of the top of the stack.
    Dup = 6,
    /// Drop the top of the stack.
    Pop = 7,
    /// Pop `b`, pop `a`, push `a + b` (wrapping). Likewise for the binary operators below.
    Add = 8,
    /// `a - b` (wrapping).
    Sub = 9,
    /// `a * b` (wrapping).
    Mul = 10,
    /// `a / b`, truncating toward zero; `b == 0` is the run-time error "division by zero";
    /// `i64::MIN / -1` wraps to `i64::MIN`.
    Div = 11,
    /// `a % b`, sign of `a`; `b == 0` is "division by zero"; `i64::MIN % -1` is 0.
    Mod = 12,
    /// `a << (b & 63)`.
    Shl = 13,
    /// `a >> (b & 63)`, arithmetic.
    Shr = 14,
    /// `a & b`.
    And = 15,
    /// `a | b`.
    Or = 16,
    /// `a ^ b`.
    Xor = 17,
    /// `a < b` as 0 or 1 (signed).
    Lt = 18,
    /// `a <= b`.
    Le = 19,
    /// `a > b`.
    Gt = 20,
    /// `a >= b`.
    Ge = 21,
    /// `a == b`.
    Eq = 22,
    /// `a != b`.
    Ne = 23,
    /// Pop `a`, push `-a` (wrapping).
    Neg = 24,
    /// Pop `a`, push `a == 0`.
    LNot = 25,
    /// Pop `a`, push `!a` (bitwise).
    BNot = 26,
    /// `pc += a`.
    Jmp = 27,
    /// Pop `v`; if `v == 0`, `pc += a`.
    Jz = 28,
    /// Pop `v`; if `v != 0`, `pc += a`.
    Jnz = 29,
    /// End this probe hit normally (`next`, or the end of a body).
    Next = 30,
    /// Pop `v` and end the program with result `v` (conditions and entry programs).
    Ret = 31,
    /// Push the context value `a` ([`Ctx`]), with parameter `i` (the argument number for
    /// [`Ctx::IntArg`] and [`Ctx::LongArg`]).
    Ctx = 32,
    /// Pop `n`; push a uniform random value in `[0, n)`; `n <= 0` is the run-time error
    /// "invalid randint range".
    RandInt = 33,
    /// Pop `i` values (the last-pushed is the last argument) and emit output record with
    /// format id `a` ([`Format`]).
    Out = 34,
    /// Request the end of the run (`exit()`); the body goes on.
    Exit = 35,
    /// Pop `v`; save it as `@entry` slot `a` for the matching return (entry programs only).
    EntrySave = 36,
    /// Push `@entry` slot `a` saved at the matching function entry (0 if none).
    EntryLoad = 37,
    /// End this probe hit because the probe's own condition is false (the inlined
    /// `if (!C) next`); counted as "skipped by condition", not as a body run.
    Skip = 38,
    /// Pop `i` keys (the last-pushed is the last key); push element of array `a` (global
    /// index), or 0 when it has none.
    MapGet = 39,
    /// Pop `v`, pop `i` keys; set the element of array `a` to `v`; push `v`. A new key in a
    /// full array is the run-time error "array overflow" (a wrapping array drops its
    /// oldest element instead).
    MapPut = 40,
    /// Pop `d`, pop `i` keys; add `d` to the element of array `a` (0 when missing, inserted
    /// as for [`Op::MapPut`]); push the new value.
    MapAdd = 41,
    /// Pop `i` keys; push 1 if array `a` has that element, else 0.
    MapIn = 42,
    /// Pop `i` keys; delete that element of array `a` (nothing if missing).
    MapDel = 43,
    /// Delete every element of array or aggregate `a` (`delete a`).
    MapClear = 44,
    /// Pop `v`, pop `i` keys; add `v` to the aggregate `a` (that element of it when `i > 0`).
    StatAdd = 45,
    /// Pop `i & 0xff` keys; push statistic `i >> 8` ([`StatKind`]) of aggregate `a`. `@min`,
    /// `@max`, `@avg` and `@variance` of an empty aggregate are the run-time error "empty
    /// aggregate".
    StatGet = 46,
    /// Start `foreach` iteration `i & 0xff` over array `a`: snapshot its elements, sorted by
    /// [`IterSpec`] (`i >> 8`); with a limit, pop it first.
    IterStart = 47,
    /// Advance iteration `i & 0xff`: store the next element's keys in locals
    /// `(i >> 8) & 0xffff ..` and then its value (when `i >> 24 & 1`); or, when done,
    /// `pc += a`.
    IterNext = 48,
    /// Push string literal `a` ([`crate::compile::CompiledScript::strings`]) on the string
    /// stack.
    SPush = 49,
    /// Push a context string: `a` = 0 `execname()`, 1 `pp()`, 2 `probefunc()`.
    SCtx = 50,
    /// Push string local `a`.
    SLdL = 51,
    /// Pop a string into string local `a`.
    SStL = 52,
    /// Push string global `a` (a global index).
    SLdG = 53,
    /// Pop a string into string global `a`.
    SStG = 54,
    /// Push a copy of the top string.
    SDup = 55,
    /// Drop the top string.
    SPop = 56,
    /// Pop `b`, pop `a`; push `a . b`, truncated to [`MAXSTRINGLEN`]` - 1` bytes.
    SConcat = 57,
    /// Pop strings `b`, `a`; push `a OP b` (0 or 1) on the integer stack, where OP is the
    /// comparison opcode numbered `a` (`Lt` to `Ne`): byte-wise, unsigned, as `strcmp`.
    SCmp = 58,
    /// Pop a string; push its length.
    SLen = 59,
    /// Call string function `a` ([`StrFn`]): pop its string arguments (string stack) and its
    /// integer arguments (integer stack), push its result on the stack of its type.
    SCall = 60,
    /// `sprintf`: pop `i & 0xffff` integers and `(i >> 16) & 0xffff` strings, push output
    /// format `a` rendered as a string (truncated to MAXSTRINGLEN - 1). Bits 32..40 of `i`:
    /// why the format cannot run in the kernel, 0 if it can ([`crate::vm::sformat_refusal`]).
    SFormat = 61,
    /// Read a string from memory (`user_string`, `kernel_string` and their variants), as
    /// the [`ReadStr`] packed in `a` says: pop `n` when [`ReadStr::n`], then the address;
    /// pop the message from the string stack when [`ReadStr::msg`]; push the string read
    /// (at most [`ReadStr::size`]` - 1` bytes, up to its NUL). A fault is the run-time error
    /// "user string copy fault -14 at 0x1 [man error::fault]" (or "kernel string copy
    /// fault at 0x1 ..."), or with [`ReadStr::msg`] pushes the message instead.
    SRead = 62,
}

/// What an [`Op::SRead`] reads and what a fault does, packed in its `a`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ReadStr {
    /// Kernel memory (`kernel_string*`), else the current task's user memory.
    pub kernel: bool,
    /// An integer `n`, the most bytes of text, is on the stack above the address (the `_n`
    /// variants); without it the most a string holds.
    pub n: bool,
    /// A fault pushes the message popped from the string stack (the `err_msg` variants,
    /// `_warn`, `_nofault`) instead of being a run-time error.
    pub msg: bool,
    /// A fault is also reported as SystemTap's warning (`user_string_warn`,
    /// `user_string_n_warn`): user space only.
    pub warn: bool,
}

/// A function that reads a string from memory ([`Op::SRead`]), as SystemTap's tapsets
/// (`uconversions.stp`, `conversions.stp`) define it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadStrFn {
    /// Its name.
    pub name: &'static str,
    /// What it reads; [`ReadStr::msg`] is set when its last parameter is the message.
    pub read: ReadStr,
    /// Fewest arguments: the address, then `n` for the `_n` variants (then the message
    /// for the `2` variants, which require it).
    pub min: usize,
    /// Most arguments: the message is optional when `max > min`.
    pub max: usize,
    /// A fault without a message argument returns "" instead of failing (`_warn`,
    /// `_nofault`: SystemTap's default message is "").
    pub empty_msg: bool,
}

impl ReadStrFn {
    /// Every function, by name.
    pub const ALL: &'static [ReadStrFn] = &[
        ReadStrFn::user("user_string", false, 1, 2, false, false),
        ReadStrFn::user("user_string2", false, 2, 2, false, false),
        ReadStrFn::user("user_string_nofault", false, 1, 1, false, true),
        ReadStrFn::user("user_string_n", true, 2, 3, false, false),
        ReadStrFn::user("user_string_n2", true, 3, 3, false, false),
        ReadStrFn::user("user_string_n_nofault", true, 2, 2, false, true),
        ReadStrFn::user("user_string_warn", false, 1, 2, true, true),
        ReadStrFn::user("user_string2_warn", false, 2, 2, true, true),
        ReadStrFn::user("user_string_n_warn", true, 2, 3, true, true),
        ReadStrFn::kernel("kernel_string", false, 1, 2),
        ReadStrFn::kernel("kernel_string2", false, 2, 2),
        ReadStrFn::kernel("kernel_string_n", true, 2, 2),
    ];

    const fn user(
        name: &'static str,
        n: bool,
        min: usize,
        max: usize,
        warn: bool,
        empty_msg: bool,
    ) -> ReadStrFn {
        ReadStrFn {
            name,
            read: ReadStr {
                kernel: false,
                n,
                msg: false,
                warn,
            },
            min,
            max,
            empty_msg,
        }
    }

    const fn kernel(name: &'static str, n: bool, min: usize, max: usize) -> ReadStrFn {
        ReadStrFn {
            name,
            read: ReadStr {
                kernel: true,
                n,
                msg: false,
                warn: false,
            },
            min,
            max,
            empty_msg: false,
        }
    }

    /// The function called `name`.
    pub fn by_name(name: &str) -> Option<ReadStrFn> {
        ReadStrFn::ALL.iter().copied().find(|f| f.name == name)
    }

    /// The integer parameters before the message: the address, and `n` for `_n` variants.
    pub fn nints(&self) -> usize {
        1 + usize::from(self.read.n)
    }

    /// What a call with `nargs` arguments reads: with a message argument, or with
    /// [`ReadStrFn::empty_msg`], a fault returns the message.
    pub fn call(&self, nargs: usize) -> ReadStr {
        ReadStr {
            msg: nargs > self.nints() || self.empty_msg,
            ..self.read
        }
    }
}

impl ReadStr {
    /// The packed form (`a` of [`Op::SRead`]).
    pub fn pack(self) -> i32 {
        i32::from(self.kernel)
            | i32::from(self.n) << 1
            | i32::from(self.msg) << 2
            | i32::from(self.warn) << 3
    }

    /// The flags packed by [`ReadStr::pack`]; `None` for unknown bits.
    pub fn unpack(a: i32) -> Option<ReadStr> {
        (0..16).contains(&a).then_some(ReadStr {
            kernel: a & 1 != 0,
            n: a & 2 != 0,
            msg: a & 4 != 0,
            warn: a & 8 != 0,
        })
    }

    /// The largest [`ReadStr::size`]: MAXSTRINGLEN for kernel memory, one less for user
    /// memory.
    pub fn max_size(self) -> usize {
        if self.kernel {
            MAXSTRINGLEN
        } else {
            MAXSTRINGLEN - 1
        }
    }

    /// The most bytes read, the NUL included (the size of the kernel helper's copy), for
    /// `n` (`None`: no `n` argument). As SystemTap's tapsets compute it:
    /// `clamp(n + 1, 1, MAXSTRINGLEN - 1)` for user memory (so a user string holds at most
    /// 126 bytes) and `clamp(n + 1, 1, MAXSTRINGLEN)` for kernel memory (127 bytes);
    /// without `n`, `n` is MAXSTRINGLEN (the function is `user_string_n(addr,
    /// MAXSTRINGLEN)`). `n + 1` wraps as in C.
    pub fn size(self, n: Option<i64>) -> usize {
        n.unwrap_or(MAXSTRINGLEN as i64)
            .wrapping_add(1)
            .clamp(1, self.max_size() as i64) as usize
    }
}

/// The string functions of [`Op::SCall`]: (name, string arguments, integer arguments,
/// result is a string).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrFn {
    /// `substr(s, start, length)`: up to `length` bytes from byte `start` (0-based); ""
    /// when `start` is outside the string (negative included).
    Substr = 0,
    /// `isinstr(s1, s2)`: 1 if `s2` occurs in `s1`.
    Isinstr = 1,
    /// `strtol(s, base)`: the kernel's `simple_strtol` (a `-`, the `0x`/`0` prefixes of
    /// bases 0 and 16, hex digits below the base); 0 when it has no digits.
    Strtol = 2,
    /// `str_replace(s, old, new)`: every `old` replaced by `new`.
    StrReplace = 3,
    /// `text_str(s)`: `s` with non-printable characters as C escapes.
    TextStr = 4,
    /// `stringat(s, i)`: the byte at index `i`; the run-time error "Position out of
    /// bounds" outside the string.
    Stringat = 5,
    /// `tokenize(s, delim)`: the first token of `s` (and remember the rest); with `s` empty,
    /// the next token of the string remembered.
    Tokenize = 6,
    /// `strlen(s)`.
    Strlen = 7,
}

impl StrFn {
    /// Every string function.
    pub const ALL: &'static [StrFn] = &[
        StrFn::Substr,
        StrFn::Isinstr,
        StrFn::Strtol,
        StrFn::StrReplace,
        StrFn::TextStr,
        StrFn::Stringat,
        StrFn::Tokenize,
        StrFn::Strlen,
    ];

    /// The function called `name`.
    pub fn by_name(name: &str) -> Option<StrFn> {
        StrFn::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Its name in scripts.
    pub fn name(self) -> &'static str {
        match self {
            StrFn::Substr => "substr",
            StrFn::Isinstr => "isinstr",
            StrFn::Strtol => "strtol",
            StrFn::StrReplace => "str_replace",
            StrFn::TextStr => "text_str",
            StrFn::Stringat => "stringat",
            StrFn::Tokenize => "tokenize",
            StrFn::Strlen => "strlen",
        }
    }

    /// The function numbered `v`.
    pub fn from_i32(v: i32) -> Option<StrFn> {
        StrFn::ALL.get(usize::try_from(v).ok()?).copied()
    }

    /// Its parameters in order (`true`: a string) and whether it returns a string.
    pub fn signature(self) -> (&'static [bool], bool) {
        match self {
            StrFn::Substr => (&[true, false, false], true),
            StrFn::Isinstr => (&[true, true], false),
            StrFn::Strtol => (&[true, false], false),
            StrFn::StrReplace => (&[true, true, true], true),
            StrFn::TextStr => (&[true], true),
            StrFn::Stringat => (&[true, false], false),
            StrFn::Tokenize => (&[true, true], true),
            StrFn::Strlen => (&[true], false),
        }
    }
}

/// The size of a string buffer: strings hold at most `MAXSTRINGLEN - 1` bytes (SystemTap's
/// MAXSTRINGLEN); longer results are truncated.
pub const MAXSTRINGLEN: usize = 128;
/// The deepest string stack a program may use.
pub const MAX_SSTACK: usize = 8;
/// String locals per probe hit.
pub const MAX_SLOCALS: usize = 16;
/// The most string arguments of one output record.
pub const MAX_OUT_STRS: usize = 8;

/// The operands of a map instruction (`MapGet` to `StatAdd`), packed in `imm`: the number
/// of keys, which of them are strings, and whether the value is a string. Integer keys come
/// from the integer stack and string keys from the string stack, each in key order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MapOperands {
    /// The number of keys.
    pub nkeys: u8,
    /// Bit `i`: key `i` is a string.
    pub str_keys: u16,
    /// The element's value is a string.
    pub str_value: bool,
}

impl MapOperands {
    /// The packed form.
    pub fn pack(self) -> i64 {
        i64::from(self.nkeys)
            | i64::from(self.str_keys & 0x1ff) << 8
            | (self.str_value as i64) << 17
    }

    /// The operands packed by [`MapOperands::pack`].
    pub fn unpack(v: i64) -> MapOperands {
        MapOperands {
            nkeys: (v & 0xff) as u8,
            str_keys: ((v >> 8) & 0x1ff) as u16,
            str_value: (v >> 17) & 1 != 0,
        }
    }

    /// Keys taken from the string stack.
    pub fn nstr(self) -> usize {
        (self.str_keys & ((1u16 << self.nkeys.min(9)) - 1)).count_ones() as usize
    }

    /// Keys taken from the integer stack.
    pub fn nint(self) -> usize {
        self.nkeys as usize - self.nstr()
    }
}

/// Statistics read by [`Op::StatGet`].
#[repr(i64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatKind {
    /// `@count`
    Count = 0,
    /// `@sum`
    Sum = 1,
    /// `@min`
    Min = 2,
    /// `@max`
    Max = 3,
    /// `@avg`
    Avg = 4,
    /// `@variance`
    Variance = 5,
}

impl StatKind {
    /// The statistic with this number.
    pub fn from_i64(v: i64) -> Option<StatKind> {
        Some(match v {
            0 => StatKind::Count,
            1 => StatKind::Sum,
            2 => StatKind::Min,
            3 => StatKind::Max,
            4 => StatKind::Avg,
            5 => StatKind::Variance,
            _ => return None,
        })
    }
}

/// The maximum number of keys of an array (as in SystemTap).
pub const MAX_KEYS: usize = 9;
/// The default size limit of an array (SystemTap's MAXMAPENTRIES).
pub const MAXMAPENTRIES: u32 = 2048;
/// The number of `foreach` loops one program may nest.
pub const MAX_ITERS: usize = 8;
/// Buckets of a `@hist_log` histogram (SystemTap's `HIST_LOG_BUCKETS`); bucket
/// [`HIST_LOG_BUCKET0`] counts zeros.
pub const HIST_LOG_BUCKETS: usize = 128;
/// The bucket of 0 in a `@hist_log` histogram.
pub const HIST_LOG_BUCKET0: usize = 64;
/// The most buckets of a `@hist_linear` histogram, under- and overflow included.
pub const MAX_LINEAR_BUCKETS: usize = 1024;

/// How a `foreach` orders its elements: packed in [`Op::IterStart`]'s `imm >> 8`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IterSpec {
    /// 0: unsorted (SystemTap's order is unspecified: otf gives key order); 1: by value;
    /// `k + 2`: by key `k`.
    pub by: u8,
    /// Descending.
    pub desc: bool,
    /// A limit is on the stack.
    pub limit: bool,
}

impl IterSpec {
    /// The packed form.
    pub fn pack(self) -> i64 {
        self.by as i64 | (self.desc as i64) << 8 | (self.limit as i64) << 9
    }

    /// The spec packed by [`IterSpec::pack`].
    pub fn unpack(v: i64) -> IterSpec {
        IterSpec {
            by: (v & 0xff) as u8,
            desc: v & 0x100 != 0,
            limit: v & 0x200 != 0,
        }
    }
}

/// What a global is: a scalar, an array or a statistics aggregate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GlobalKind {
    /// A 64-bit integer.
    #[default]
    Scalar,
    /// An associative array of integers with `keys` integer keys.
    Array {
        /// The number of keys (1 to [`MAX_KEYS`]).
        keys: u8,
    },
    /// A statistics aggregate, or an array of them when `keys > 0`.
    Stat {
        /// The number of keys (0 for a scalar aggregate).
        keys: u8,
    },
}

impl GlobalKind {
    /// The number of keys of an array or aggregate (0 for scalars).
    pub fn keys(self) -> usize {
        match self {
            GlobalKind::Scalar => 0,
            GlobalKind::Array { keys } | GlobalKind::Stat { keys } => keys as usize,
        }
    }

    /// `true` for arrays and aggregates, which live in maps of their own.
    pub fn is_map(self) -> bool {
        self != GlobalKind::Scalar
    }
}

/// What an aggregate keeps besides count, sum, min and max: the histograms the script
/// prints and the state `@variance` needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HistSpec {
    /// `@hist_log` is used.
    pub log: bool,
    /// `@hist_linear(x, lo, hi, step)` is used with these parameters.
    pub linear: Option<(i64, i64, i64)>,
    /// `@variance(x[, shift])` is used: the bit shift (0 to [`MAX_VARIANCE_SHIFT`]) of
    /// SystemTap's fixed-point mean and variance.
    pub variance: Option<u8>,
}

/// The largest bit shift of `@variance(x, shift)` (SystemTap's range `<0..62>`).
pub const MAX_VARIANCE_SHIFT: i64 = 62;

impl HistSpec {
    /// The number of linear buckets: `(hi - lo) / step + 3` (under- and overflow included),
    /// 0 without a linear histogram.
    pub fn linear_buckets(&self) -> usize {
        match self.linear {
            Some((lo, hi, step)) if step > 0 => ((hi - lo) / step + 3) as usize,
            _ => 0,
        }
    }
}

/// Context values pushed by [`Op::Ctx`].
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ctx {
    /// `pid()`: the thread group id.
    Pid = 0,
    /// `tid()`: the thread id.
    Tid = 1,
    /// `ppid()`: the parent's thread group id.
    Ppid = 2,
    /// `uid()`: the real user id.
    Uid = 3,
    /// `cpu()`: the current CPU.
    Cpu = 4,
    /// `gettimeofday_ns()`: wall-clock nanoseconds since the epoch.
    TimeNs = 5,
    /// `target()`: the pid given by `-x` or started by `-c`, else 0.
    Target = 6,
    /// `returnval()`: the return value (return probes).
    RetVal = 7,
    /// `int_arg(i)`: argument `i` (1-based) truncated to a signed 32-bit value.
    IntArg = 8,
    /// `long_arg(i)`, `ulong_arg(i)`, `pointer_arg(i)`: argument `i` as 64 bits.
    LongArg = 9,
}

impl Ctx {
    /// The context id with this number, if any.
    pub fn from_i32(v: i32) -> Option<Ctx> {
        Some(match v {
            0 => Ctx::Pid,
            1 => Ctx::Tid,
            2 => Ctx::Ppid,
            3 => Ctx::Uid,
            4 => Ctx::Cpu,
            5 => Ctx::TimeNs,
            6 => Ctx::Target,
            7 => Ctx::RetVal,
            8 => Ctx::IntArg,
            9 => Ctx::LongArg,
            _ => return None,
        })
    }
}

/// An output format: what one [`Op::Out`] record means. Integer arguments come from the
/// record; everything else is known at compile time or from the record's header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Format {
    /// The pieces in order.
    pub pieces: Vec<Piece>,
    /// The number of integer arguments the record carries.
    pub nargs: usize,
}

/// A piece of an output format.
///
/// A conversion with a `*` width or a `.*` precision takes those from the record's integer
/// arguments: `arg` is the index of the first argument the conversion consumes, in the order
/// `*` width, `.*` precision, then (for [`Piece::Int`]) the value itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Piece {
    /// Literal text (format text, string literals, separators, the final newline).
    Text(String),
    /// An integer argument of the record, formatted by `spec`.
    Int {
        /// Index into the record's arguments of the first argument this conversion consumes.
        arg: usize,
        /// How to format it.
        spec: Spec,
    },
    /// The string `execname()` of the hit, formatted by `spec`.
    Execname {
        /// Index of the first `*` width or `.*` precision argument (unused without them).
        arg: usize,
        /// How to format it.
        spec: Spec,
    },
    /// `pp()`: the probe point of the hit.
    Pp {
        /// Index of the first `*` width or `.*` precision argument (unused without them).
        arg: usize,
        /// How to format it.
        spec: Spec,
    },
    /// `probefunc()`: the function name of the hit.
    Probefunc {
        /// Index of the first `*` width or `.*` precision argument (unused without them).
        arg: usize,
        /// How to format it.
        spec: Spec,
    },
    /// A string literal argument formatted by a `%s` with a width, precision or flag.
    Str {
        /// The literal.
        text: String,
        /// Index of the first `*` width or `.*` precision argument (unused without them).
        arg: usize,
        /// How to format it.
        spec: Spec,
    },
    /// `print(@hist_log(x))` / `@hist_linear`: the histogram of aggregate `global` (the
    /// element whose `nkeys` keys are the record's arguments from `arg`) as it was at the
    /// time of the print: its buckets copied into the record (`at`), or read by the runtime
    /// when the record is rendered.
    Hist {
        /// The aggregate.
        global: u32,
        /// `false`: `@hist_log`; `true`: `@hist_linear`.
        linear: bool,
        /// Index of the first integer key among the record's arguments.
        arg: usize,
        /// Index of the first string key among the record's string arguments.
        sarg: usize,
        /// The number of keys.
        nkeys: usize,
        /// Index among the record's integer arguments of the first word of the buckets
        /// copied into the record when the print ran ([`crate::memdump::HistSnap`]);
        /// `None`: the runtime reads the aggregate when it renders the record.
        at: Option<usize>,
    },
    /// `%m` / `%M`: memory read at an address (kernel memory, user memory with `#`), its
    /// bytes carried by the record after the pushed arguments
    /// ([`crate::memdump::MemPlan`]), formatted by `spec`.
    Mem {
        /// Index of the first argument the conversion consumes (its `*` width and `.*`
        /// precision, then the address).
        arg: usize,
        /// Index among the record's integer arguments of the first 64-bit word holding
        /// the bytes read.
        at: usize,
        /// How to format it (`conv` is `m` or `M`).
        spec: Spec,
    },
    /// A string value computed by the program (a string argument of the record) formatted
    /// by `spec`.
    StrVal {
        /// Index into the record's string arguments.
        sarg: usize,
        /// Index of the first `*` width or `.*` precision argument (unused without them).
        arg: usize,
        /// How to format it.
        spec: Spec,
    },
}

/// A printf conversion: `%[flags][width][.precision][length]conv`, as SystemTap's runtime
/// formats it (see [`crate::format`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Spec {
    /// The conversion character: one of `d i u x X o c s p b m M`.
    pub conv: u8,
    /// Minimum field width (0: none). Unused when `star_width` is set.
    pub width: u32,
    /// `.N`: the precision. `None` when absent (or written `.` alone, as SystemTap reads it).
    /// Unused when `star_prec` is set.
    pub precision: Option<u32>,
    /// `*`: the width is the next integer argument.
    pub star_width: bool,
    /// `.*`: the precision is the next integer argument (after a `*` width).
    pub star_prec: bool,
    /// `-`: left-justify.
    pub left: bool,
    /// `0`: pad numbers with zeros (for `%s`: a NUL byte follows the field, as in SystemTap).
    pub zero: bool,
    /// `+`: a `+` before non-negative `%d`/`%i` values.
    pub plus: bool,
    /// ` `: a space before non-negative `%d`/`%i` values (when `+` is absent).
    pub space: bool,
    /// `#`: a `0x`/`0X` prefix for `%x`/`%X`, `0` for `%o`; `%c` escapes unprintable bytes.
    pub alt: bool,
}

impl Spec {
    /// The number of integer arguments the conversion takes for its `*` width and `.*`
    /// precision (0 to 2), before its value.
    pub fn dyn_args(&self) -> usize {
        usize::from(self.star_width) + usize::from(self.star_prec)
    }
}
