//! The reference VM: every opcode, the arithmetic edges, the step budget and malformed code.

use otf_script::bytecode::{
    Ctx, GlobalKind, HistSpec, Insn, IterSpec, Op, ReadStr, StrFn, MAX_STACK, MAX_STEPS,
};
use otf_script::sema::GlobalInfo;
use otf_script::store::{MapError, MemStore};
use otf_script::vm::{self, End, FixedHit, OutRecord, VerifyError, VmError};

fn push(v: i64) -> Insn {
    Insn::new(Op::Push, 0, v)
}
fn op(o: Op) -> Insn {
    Insn::op(o)
}
fn arg(o: Op, a: i32) -> Insn {
    Insn::with_arg(o, a)
}
fn ret() -> Insn {
    Insn::op(Op::Ret)
}

struct Run {
    result: Result<vm::Outcome, VmError>,
    globals: Vec<i64>,
    out: Vec<OutRecord>,
    hit: FixedHit,
}

fn run_with(code: &[Insn], globals: Vec<i64>, hit: FixedHit) -> Run {
    let mut globals = globals;
    let mut hit = hit;
    let mut out = Vec::new();
    let result = vm::run(code, 0, &mut globals, &mut hit, &mut |r| out.push(r));
    Run {
        result,
        globals,
        out,
        hit,
    }
}

fn run(code: &[Insn]) -> Run {
    run_with(code, vec![10, 20, 30, 40], test_hit())
}

fn test_hit() -> FixedHit {
    FixedHit {
        pid: 100,
        tid: 101,
        ppid: 1,
        uid: 1000,
        cpu: 3,
        time_ns: 1_700_000_000_123_456_789,
        target: 4242,
        retval: -5,
        args: vec![0x1_0000_0007, -2, 3],
        ..FixedHit::default()
    }
}

fn ret_value(code: &[Insn]) -> i64 {
    match run(code).result {
        Ok(o) => match o.end {
            End::Ret(v) => v,
            e => panic!("expected Ret, got {e:?}"),
        },
        Err(e) => panic!("error {e:?} running {code:?}"),
    }
}

fn bin(o: Op, a: i64, b: i64) -> Result<i64, VmError> {
    let code = [push(a), push(b), op(o), ret()];
    run(&code).result.map(|o| match o.end {
        End::Ret(v) => v,
        e => panic!("unexpected end {e:?}"),
    })
}

/// What a table case expects.
enum Expect {
    Ret(i64),
    Ends(End),
    Check(fn(&Run) -> bool),
}

/// One case per opcode (at least): (the opcode under test, code, expectation).
fn cases() -> Vec<(Op, Vec<Insn>, Expect)> {
    use Expect::*;
    vec![
        (Op::Nop, vec![op(Op::Nop), push(1), ret()], Ret(1)),
        (Op::Push, vec![push(-77), ret()], Ret(-77)),
        (Op::LdG, vec![arg(Op::LdG, 2), ret()], Ret(30)),
        (
            Op::StG,
            vec![push(5), arg(Op::StG, 1), op(Op::Next)],
            Check(|r| r.globals == vec![10, 5, 30, 40]),
        ),
        (Op::LdL, vec![arg(Op::LdL, 63), ret()], Ret(0)),
        (
            Op::StL,
            vec![push(9), arg(Op::StL, 7), arg(Op::LdL, 7), ret()],
            Ret(9),
        ),
        (
            Op::Dup,
            vec![push(4), op(Op::Dup), op(Op::Mul), ret()],
            Ret(16),
        ),
        (Op::Pop, vec![push(1), push(2), op(Op::Pop), ret()], Ret(1)),
        (Op::Add, vec![push(2), push(3), op(Op::Add), ret()], Ret(5)),
        (Op::Sub, vec![push(2), push(3), op(Op::Sub), ret()], Ret(-1)),
        (
            Op::Mul,
            vec![push(-4), push(3), op(Op::Mul), ret()],
            Ret(-12),
        ),
        (
            Op::Div,
            vec![push(-7), push(2), op(Op::Div), ret()],
            Ret(-3),
        ),
        (
            Op::Mod,
            vec![push(-7), push(2), op(Op::Mod), ret()],
            Ret(-1),
        ),
        (Op::Shl, vec![push(1), push(4), op(Op::Shl), ret()], Ret(16)),
        (
            Op::Shr,
            vec![push(-16), push(2), op(Op::Shr), ret()],
            Ret(-4),
        ),
        (
            Op::And,
            vec![push(12), push(10), op(Op::And), ret()],
            Ret(8),
        ),
        (Op::Or, vec![push(12), push(10), op(Op::Or), ret()], Ret(14)),
        (
            Op::Xor,
            vec![push(12), push(10), op(Op::Xor), ret()],
            Ret(6),
        ),
        (Op::Lt, vec![push(-1), push(0), op(Op::Lt), ret()], Ret(1)),
        (Op::Le, vec![push(3), push(3), op(Op::Le), ret()], Ret(1)),
        (Op::Gt, vec![push(-1), push(0), op(Op::Gt), ret()], Ret(0)),
        (Op::Ge, vec![push(2), push(3), op(Op::Ge), ret()], Ret(0)),
        (Op::Eq, vec![push(3), push(3), op(Op::Eq), ret()], Ret(1)),
        (Op::Ne, vec![push(3), push(3), op(Op::Ne), ret()], Ret(0)),
        (Op::Neg, vec![push(5), op(Op::Neg), ret()], Ret(-5)),
        (Op::LNot, vec![push(7), op(Op::LNot), ret()], Ret(0)),
        (Op::BNot, vec![push(0), op(Op::BNot), ret()], Ret(-1)),
        (
            Op::Jmp,
            vec![arg(Op::Jmp, 2), push(1), ret(), push(2), ret()],
            Ret(2),
        ),
        (
            Op::Jz,
            vec![push(0), arg(Op::Jz, 2), push(1), ret(), push(2), ret()],
            Ret(2),
        ),
        (
            Op::Jnz,
            vec![push(0), arg(Op::Jnz, 2), push(1), ret(), push(2), ret()],
            Ret(1),
        ),
        (
            Op::Next,
            vec![op(Op::Next), push(1), ret()],
            Ends(End::Next),
        ),
        (Op::Ret, vec![push(3), ret(), op(Op::Next)], Ret(3)),
        (
            Op::Ctx,
            vec![Insn::new(Op::Ctx, Ctx::Pid as i32, 0), ret()],
            Ret(100),
        ),
        (
            Op::RandInt,
            vec![push(10), op(Op::RandInt), ret()],
            Check(
                |r| matches!(r.result, Ok(vm::Outcome { end: End::Ret(v), .. }) if (0..10).contains(&v)),
            ),
        ),
        (
            Op::Out,
            vec![push(1), push(2), push(3), Insn::new(Op::Out, 5, 2), ret()],
            Check(|r| {
                r.out
                    == vec![OutRecord {
                        fmt: 5,
                        args: vec![2, 3],
                        strs: vec![],
                    }]
                    && matches!(
                        r.result,
                        Ok(vm::Outcome {
                            end: End::Ret(1),
                            ..
                        })
                    )
            }),
        ),
        (
            Op::Exit,
            vec![op(Op::Exit), op(Op::Next)],
            Check(|r| {
                matches!(
                    r.result,
                    Ok(vm::Outcome {
                        end: End::Next,
                        exit_requested: true,
                        ..
                    })
                )
            }),
        ),
        (
            Op::EntrySave,
            vec![push(77), arg(Op::EntrySave, 3), op(Op::Next)],
            Check(|r| r.hit.entry[3] == 77),
        ),
        (
            Op::EntryLoad,
            vec![
                push(77),
                arg(Op::EntrySave, 1),
                arg(Op::EntryLoad, 1),
                ret(),
            ],
            Ret(77),
        ),
        (Op::Skip, vec![op(Op::Skip), op(Op::Next)], Ends(End::Skip)),
    ]
}

#[test]
fn table_cases_pass() {
    for (o, code, expect) in cases() {
        let r = run(&code);
        match expect {
            Expect::Ret(v) => assert_eq!(
                r.result.as_ref().map(|x| x.end),
                Ok(End::Ret(v)),
                "{o:?}: {code:?}"
            ),
            Expect::Ends(e) => {
                assert_eq!(r.result.as_ref().map(|x| x.end), Ok(e), "{o:?}")
            }
            Expect::Check(f) => assert!(f(&r), "{o:?}: {:?}", r.result),
        }
        assert!(
            code.iter().any(|i| i.opcode() == Some(o)),
            "case for {o:?} does not use it"
        );
    }
}

/// Globals 0 (an array with one key), 1 (an aggregate) and 2 (an array of 2 keys, size 2).
fn map_store() -> MemStore {
    let g = |name: &str, kind: GlobalKind, size: Option<u32>| GlobalInfo {
        name: name.into(),
        init: 0,
        kind,
        size,
        wrap: false,
        hist: HistSpec::default(),
        read: true,
        written: true,
        ..Default::default()
    };
    MemStore::new(&[
        g("a", GlobalKind::Array { keys: 1 }, None),
        g("s", GlobalKind::Stat { keys: 0 }, None),
        g("b", GlobalKind::Array { keys: 2 }, Some(2)),
    ])
}

fn mi(o: Op, g: i32, imm: i64) -> Insn {
    Insn::new(o, g, imm)
}

/// The array and aggregate opcodes, over [`map_store`]: (opcode, code, expected `Ret`).
fn map_cases() -> Vec<(Op, Vec<Insn>, Result<i64, VmError>)> {
    let put = |k: i64, v: i64| [push(k), push(v), mi(Op::MapPut, 0, 1), op(Op::Pop)];
    let stat = |v: i64| [push(v), mi(Op::StatAdd, 1, 0)];
    let mut v = vec![(
        Op::MapGet,
        [&put(3, 7)[..], &[push(3), mi(Op::MapGet, 0, 1), ret()]].concat(),
        Ok(7),
    )];
    v.push((
        Op::MapGet,
        vec![push(3), mi(Op::MapGet, 0, 1), ret()],
        Ok(0),
    ));
    v.push((
        Op::MapPut,
        vec![push(3), push(9), mi(Op::MapPut, 0, 1), ret()],
        Ok(9),
    ));
    v.push((
        Op::MapPut,
        vec![
            push(1),
            push(1),
            push(1),
            mi(Op::MapPut, 2, 2),
            op(Op::Pop),
            push(1),
            push(2),
            push(1),
            mi(Op::MapPut, 2, 2),
            op(Op::Pop),
            push(2),
            push(2),
            push(1),
            mi(Op::MapPut, 2, 2),
            ret(),
        ],
        Err(VmError::Array {
            pc: 13,
            err: MapError::Full { max: 2 },
        }),
    ));
    v.push((
        Op::MapAdd,
        [
            &put(3, 7)[..],
            &[push(3), push(-2), mi(Op::MapAdd, 0, 1), ret()],
        ]
        .concat(),
        Ok(5),
    ));
    v.push((
        Op::MapIn,
        [&put(3, 0)[..], &[push(3), mi(Op::MapIn, 0, 1), ret()]].concat(),
        Ok(1),
    ));
    v.push((Op::MapIn, vec![push(3), mi(Op::MapIn, 0, 1), ret()], Ok(0)));
    v.push((
        Op::MapDel,
        [
            &put(3, 7)[..],
            &[
                push(3),
                mi(Op::MapDel, 0, 1),
                push(3),
                mi(Op::MapIn, 0, 1),
                ret(),
            ],
        ]
        .concat(),
        Ok(0),
    ));
    v.push((
        Op::MapClear,
        [
            &put(3, 7)[..],
            &put(4, 8),
            &[mi(Op::MapClear, 0, 0), push(4), mi(Op::MapIn, 0, 1), ret()],
        ]
        .concat(),
        Ok(0),
    ));
    v.push((
        Op::StatAdd,
        [
            &stat(4)[..],
            &stat(6),
            &[mi(Op::StatGet, 1, 4 << 20), ret()],
        ]
        .concat(),
        Ok(5),
    ));
    v.push((
        Op::StatGet,
        [&stat(4)[..], &[mi(Op::StatGet, 1, 0), ret()]].concat(),
        Ok(1),
    ));
    v.push((
        Op::StatGet,
        vec![mi(Op::StatGet, 1, 2 << 20), ret()],
        Err(VmError::EmptyAggregate { pc: 0 }),
    ));
    // foreach (k in a-): sum of k * position, with a[1] = 10, a[2] = 30, a[3] = 20: order 2, 3, 1.
    let by_value_desc = IterSpec {
        by: 1,
        desc: true,
        limit: false,
    }
    .pack();
    v.push((
        Op::IterStart,
        [
            &put(1, 10)[..],
            &put(2, 30),
            &put(3, 20),
            &[
                mi(Op::IterStart, 0, by_value_desc << 8),
                // loop: IterNext into locals 10 (key), 11 (value); done → out
                Insn::new(Op::IterNext, 7, 10 << 8 | 1 << 24),
                arg(Op::LdL, 0),
                push(10),
                op(Op::Mul),
                arg(Op::LdL, 10),
                op(Op::Add),
                arg(Op::StL, 0),
                arg(Op::Jmp, -8),
                arg(Op::LdL, 0),
                ret(),
            ],
        ]
        .concat(),
        Ok(231),
    ));
    v.push((
        Op::IterNext,
        vec![
            mi(Op::IterStart, 0, 0),
            Insn::new(Op::IterNext, 2, 0),
            push(1),
            ret(),
            push(2),
            ret(),
        ],
        Ok(2),
    ));
    v
}

/// The string opcodes: (opcode, code, expected `Ret`), run with literals "ab", "b", "" and
/// execname "bash".
fn string_cases() -> Vec<(Op, Vec<Insn>, i64)> {
    let lit = |i: i32| arg(Op::SPush, i);
    let cmp = |o: Op| Insn::with_arg(Op::SCmp, o as u8 as i32);
    vec![
        (Op::SPush, vec![lit(0), op(Op::SLen), ret()], 2),
        (Op::SCtx, vec![arg(Op::SCtx, 0), op(Op::SLen), ret()], 4),
        (
            Op::SStL,
            vec![
                lit(1),
                arg(Op::SStL, 3),
                arg(Op::SLdL, 3),
                op(Op::SLen),
                ret(),
            ],
            1,
        ),
        (Op::SLdL, vec![arg(Op::SLdL, 5), op(Op::SLen), ret()], 0),
        (
            Op::SStG,
            vec![
                lit(0),
                arg(Op::SStG, 2),
                arg(Op::SLdG, 2),
                op(Op::SLen),
                ret(),
            ],
            2,
        ),
        (Op::SLdG, vec![arg(Op::SLdG, 1), op(Op::SLen), ret()], 0),
        (
            Op::SDup,
            vec![lit(0), op(Op::SDup), op(Op::SConcat), op(Op::SLen), ret()],
            4,
        ),
        (
            Op::SPop,
            vec![lit(0), lit(1), op(Op::SPop), op(Op::SLen), ret()],
            2,
        ),
        (
            Op::SConcat,
            vec![
                arg(Op::SCtx, 0),
                lit(0),
                op(Op::SConcat),
                arg(Op::SCtx, 0),
                lit(1),
                op(Op::SConcat),
                cmp(Op::Lt),
                ret(),
            ],
            1, // "bashab" < "bashb"
        ),
        (Op::SCmp, vec![lit(0), lit(1), cmp(Op::Lt), ret()], 1),
        (Op::SCmp, vec![lit(1), lit(0), cmp(Op::Ge), ret()], 1),
        (Op::SCmp, vec![lit(2), lit(2), cmp(Op::Eq), ret()], 1),
        (Op::SCmp, vec![lit(0), lit(2), cmp(Op::Le), ret()], 0),
        (Op::SLen, vec![lit(2), op(Op::SLen), ret()], 0),
        // substr("ab", 1, 5) = "b"; isinstr("ab", "b") = 1.
        (
            Op::SCall,
            vec![
                lit(0),
                push(1),
                push(5),
                arg(Op::SCall, StrFn::Substr as i32),
                lit(1),
                cmp(Op::Eq),
                lit(0),
                lit(1),
                arg(Op::SCall, StrFn::Isinstr as i32),
                op(Op::Add),
                ret(),
            ],
            2,
        ),
        // sprintf with no format table renders "", of length 0.
        (
            Op::SFormat,
            vec![push(7), Insn::new(Op::SFormat, 0, 1), op(Op::SLen), ret()],
            0,
        ),
        // user_string_n(addr, 3) of "memory" in this process: "mem".
        (
            Op::SRead,
            vec![
                push(resident("memory") as i64),
                push(3),
                arg(Op::SRead, read(false, true, false)),
                op(Op::SLen),
                ret(),
            ],
            3,
        ),
    ]
}

/// A NUL-terminated copy of `text` that lives as long as the test process, and its
/// address.
fn resident(text: &str) -> u64 {
    let mut v = text.as_bytes().to_vec();
    v.extend_from_slice(b"\0and more");
    v.leak().as_ptr() as u64
}

/// The `a` of an `SRead`.
fn read(kernel: bool, n: bool, msg: bool) -> i32 {
    ReadStr {
        kernel,
        n,
        msg,
        warn: false,
    }
    .pack()
}

/// What `SRead` leaves: the string, or the error.
fn read_str(code: &[Insn], strings: &[&str]) -> Result<String, VmError> {
    let mut hit = test_hit();
    hit.strings = strings.iter().map(|s| s.to_string()).collect();
    let mut out = Vec::new();
    let mut code = code.to_vec();
    code.push(Insn::new(Op::Out, 0, 1 << 16));
    code.push(op(Op::Next));
    vm::run(&code, 0, &mut map_store(), &mut hit, &mut |r| out.push(r))?;
    Ok(out.remove(0).strs.remove(0))
}

#[test]
fn strings_are_read_from_memory_as_systemtap_reads_them() {
    let long = "abcdefghij".repeat(20);
    let p = resident(&long) as i64;
    let short = resident("short") as i64;
    let user = |n: Option<i64>| {
        let mut c = vec![push(p)];
        c.extend(n.map(push));
        c.push(arg(Op::SRead, read(false, n.is_some(), false)));
        read_str(&c, &[]).map(|s| s.len())
    };
    // user_string: at most MAXSTRINGLEN - 2 = 126 bytes (the tapset's clamp to
    // MAXSTRINGLEN - 1, NUL included); user_string_n(p, n): at most n.
    assert_eq!(user(None), Ok(126));
    assert_eq!(user(Some(200)), Ok(126));
    assert_eq!(user(Some(126)), Ok(126));
    assert_eq!(user(Some(125)), Ok(125));
    assert_eq!(user(Some(5)), Ok(5));
    assert_eq!(user(Some(0)), Ok(0));
    assert_eq!(user(Some(-7)), Ok(0));
    // n + 1 wraps, as in C: clamped to 1, nothing read.
    assert_eq!(user(Some(i64::MAX)), Ok(0));
    assert_eq!(
        read_str(
            &[push(short), arg(Op::SRead, read(false, false, false))],
            &[]
        ),
        Ok("short".to_string())
    );
    // kernel_string_n: up to MAXSTRINGLEN - 1 = 127, but user space cannot read kernel
    // memory: every address faults.
    assert_eq!(
        read_str(&[push(p), arg(Op::SRead, read(true, false, false))], &[]),
        Err(VmError::StringFault {
            pc: 1,
            kernel: true,
            addr: p as u64,
            rc: -14
        })
    );
    assert_eq!(ReadStr::default().size(None), 127);
    let k = ReadStr {
        kernel: true,
        ..ReadStr::default()
    };
    assert_eq!(
        (k.size(None), k.size(Some(127)), k.size(Some(500))),
        (128, 128, 128)
    );
    assert_eq!(
        (k.size(Some(3)), k.size(Some(-1)), k.size(Some(0))),
        (4, 1, 1)
    );
}

#[test]
fn a_fault_is_systemtaps_error_or_the_message() {
    let e = read_str(&[push(1), arg(Op::SRead, read(false, false, false))], &[]).unwrap_err();
    assert_eq!(
        e,
        VmError::StringFault {
            pc: 1,
            kernel: false,
            addr: 1,
            rc: -14
        }
    );
    assert_eq!(
        e.to_string(),
        "user string copy fault -14 at 0x1 [man error::fault]"
    );
    let e = read_str(
        &[push(0), push(4), arg(Op::SRead, read(true, true, false))],
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "kernel string copy fault at 0x0 [man error::fault]"
    );
    assert_eq!(e.pc(), 2);
    // With a message: the message, whatever it is.
    assert_eq!(
        read_str(
            &[
                push(8),
                arg(Op::SPush, 0),
                arg(Op::SRead, read(false, false, true))
            ],
            &["<bad address>"]
        ),
        Ok("<bad address>".to_string())
    );
    let p = resident("fine") as i64;
    assert_eq!(
        read_str(
            &[
                push(p),
                push(2),
                arg(Op::SPush, 0),
                arg(Op::SRead, read(false, true, true))
            ],
            &["unused"]
        ),
        Ok("fi".to_string())
    );
}

/// A hit that records warnings instead of printing them.
struct Warned(FixedHit, Vec<String>);

impl vm::HitContext for Warned {
    fn ctx(&mut self, id: Ctx, param: i64) -> i64 {
        self.0.ctx(id, param)
    }
    fn randint(&mut self, n: i64) -> i64 {
        self.0.randint(n)
    }
    fn literal(&mut self, id: u32) -> String {
        self.0.literal(id)
    }
    fn warn(&mut self, msg: &str) {
        self.1.push(msg.to_string());
    }
}

#[test]
fn the_warn_variants_warn_and_return_the_message() {
    let file = otf_script::diag::SourceFile::new(
        "t.stp",
        "probe begin { printf(\"[%s][%s][%s]\\n\", user_string_warn(3), user_string_n_warn(5, 2, \"w\"), user_string_warn(0, \"z\")) }",
    );
    let c = otf_script::compile_source(&file).expect("compiles").script;
    let mut hit = Warned(
        FixedHit {
            strings: c.strings.clone(),
            formats: c.formats.clone(),
            ..FixedHit::default()
        },
        Vec::new(),
    );
    let mut out = Vec::new();
    let start = c.units[0].body.start as usize;
    vm::run(&c.code, start, &mut map_store(), &mut hit, &mut |r| {
        out.push(r)
    })
    .expect("runs");
    assert_eq!(out[0].strs, ["", "w", "z"]);
    assert_eq!(
        hit.1,
        [
            "user string copy fault -14 at 0x3 [man error::fault]",
            "user string copy fault -14 at 0x5 [man error::fault]",
            "user string copy fault -14 at 0x0 [man error::fault]",
        ]
    );
}

#[test]
fn string_opcodes() {
    for (o, code, want) in string_cases() {
        let mut store = map_store();
        let mut hit = test_hit();
        hit.strings = vec!["ab".into(), "b".into(), String::new()];
        hit.names[0] = "bash".into();
        let r = vm::run(&code, 0, &mut store, &mut hit, &mut |_| {});
        assert_eq!(r.map(|x| x.end), Ok(End::Ret(want)), "{o:?}: {code:?}");
        assert!(vm::verify(&code, 0..code.len()).is_ok(), "{o:?} verifies");
    }
}

#[test]
fn strings_are_truncated_at_maxstringlen() {
    let long = "x".repeat(100);
    let code = [
        arg(Op::SPush, 0),
        op(Op::SDup),
        op(Op::SConcat),
        op(Op::SLen),
        ret(),
    ];
    let mut hit = test_hit();
    hit.strings = vec![long];
    let r = vm::run(&code, 0, &mut map_store(), &mut hit, &mut |_| {});
    // 200 bytes cut to MAXSTRINGLEN - 1.
    assert_eq!(r.map(|x| x.end), Ok(End::Ret(127)));
    // A literal too (the kernel stores it in a MAXSTRINGLEN-byte buffer).
    let code = [arg(Op::SPush, 0), op(Op::SLen), ret()];
    let mut hit = test_hit();
    hit.strings = vec!["y".repeat(130)];
    let r = vm::run(&code, 0, &mut map_store(), &mut hit, &mut |_| {});
    assert_eq!(r.map(|x| x.end), Ok(End::Ret(127)));
}

#[test]
fn map_opcodes() {
    for (o, code, want) in map_cases() {
        let mut store = map_store();
        let r = vm::run(&code, 0, &mut store, &mut test_hit(), &mut |_| {});
        let got = r.map(|x| match x.end {
            End::Ret(v) => v,
            e => panic!("{o:?}: unexpected end {e:?}"),
        });
        assert_eq!(got, want, "{o:?}: {code:?}");
        assert!(vm::verify(&code, 0..code.len()).is_ok(), "{o:?} verifies");
    }
}

#[test]
fn every_opcode_has_a_case() {
    let cases = cases();
    let maps = map_cases();
    for o in Op::ALL {
        assert!(
            cases.iter().any(|(c, _, _)| c == o)
                || maps.iter().any(|(c, _, _)| c == o)
                || string_cases().iter().any(|(c, _, _)| c == o),
            "no VM test case for {o:?}"
        );
    }
}

#[test]
fn every_case_verifies() {
    for (o, code, _) in cases() {
        assert!(vm::verify(&code, 0..code.len()).is_ok(), "{o:?}");
    }
}

#[test]
fn all_context_ids() {
    let expect = [
        (Ctx::Pid, 0, 100),
        (Ctx::Tid, 0, 101),
        (Ctx::Ppid, 0, 1),
        (Ctx::Uid, 0, 1000),
        (Ctx::Cpu, 0, 3),
        (Ctx::TimeNs, 0, 1_700_000_000_123_456_789),
        (Ctx::Target, 0, 4242),
        (Ctx::RetVal, 0, -5),
        (Ctx::IntArg, 1, 7),
        (Ctx::LongArg, 1, 0x1_0000_0007),
        (Ctx::LongArg, 2, -2),
        (Ctx::LongArg, 9, 0),
    ];
    for (id, p, v) in expect {
        assert_eq!(
            ret_value(&[Insn::new(Op::Ctx, id as i32, p), ret()]),
            v,
            "{id:?}"
        );
    }
}

#[test]
fn wrapping_at_the_edges() {
    assert_eq!(bin(Op::Add, i64::MAX, 1), Ok(i64::MIN));
    assert_eq!(bin(Op::Sub, i64::MIN, 1), Ok(i64::MAX));
    assert_eq!(bin(Op::Mul, i64::MIN, -1), Ok(i64::MIN));
    assert_eq!(bin(Op::Mul, i64::MAX, 2), Ok(-2));
    assert_eq!(bin(Op::Div, i64::MIN, -1), Ok(i64::MIN));
    assert_eq!(bin(Op::Mod, i64::MIN, -1), Ok(0));
    assert_eq!(bin(Op::Div, 7, -2), Ok(-3));
    assert_eq!(bin(Op::Mod, 7, -2), Ok(1));
    assert_eq!(ret_value(&[push(i64::MIN), op(Op::Neg), ret()]), i64::MIN);
    assert_eq!(ret_value(&[push(i64::MAX), op(Op::BNot), ret()]), i64::MIN);
}

#[test]
fn shifts_are_masked_and_arithmetic() {
    assert_eq!(bin(Op::Shl, 1, 64), Ok(1));
    assert_eq!(bin(Op::Shl, 1, 65), Ok(2));
    assert_eq!(bin(Op::Shl, 1, -1), Ok(i64::MIN));
    assert_eq!(bin(Op::Shl, 1, 63), Ok(i64::MIN));
    assert_eq!(bin(Op::Shr, i64::MIN, 63), Ok(-1));
    assert_eq!(bin(Op::Shr, i64::MIN, -1), Ok(-1));
    assert_eq!(bin(Op::Shr, 256, 64), Ok(256));
    assert_eq!(bin(Op::Shr, 256, 65), Ok(128));
    assert_eq!(bin(Op::Shr, -1, 1), Ok(-1));
}

#[test]
fn division_and_modulo_by_zero() {
    assert_eq!(bin(Op::Div, 1, 0), Err(VmError::DivisionByZero { pc: 2 }));
    assert_eq!(
        bin(Op::Mod, i64::MIN, 0),
        Err(VmError::DivisionByZero { pc: 2 })
    );
    assert_eq!(
        VmError::DivisionByZero { pc: 2 }.to_string(),
        "division by zero"
    );
}

#[test]
fn step_budget_stops_an_infinite_loop() {
    let code = [op(Op::Nop), arg(Op::Jmp, -2)];
    let r = run(&code);
    assert!(
        matches!(r.result, Err(VmError::MaxAction { .. })),
        "{:?}",
        r.result
    );
    assert!(r.result.unwrap_err().to_string().contains("MAXACTION"));
}

#[test]
fn step_budget_allows_exactly_max_steps() {
    // MAX_STEPS - 1 Nops then Next: one block of exactly MAX_STEPS instructions.
    let mut code = vec![op(Op::Nop); MAX_STEPS as usize - 1];
    code.push(op(Op::Next));
    let r = run(&code);
    assert_eq!(
        r.result.as_ref().map(|o| (o.end, o.steps)),
        Ok((End::Next, MAX_STEPS))
    );
    // One more is too many: the block is refused at its first instruction.
    let mut code = vec![op(Op::Nop); MAX_STEPS as usize];
    code.push(op(Op::Next));
    assert!(matches!(
        run(&code).result,
        Err(VmError::MaxAction { pc: 0 })
    ));
}

#[test]
fn step_budget_is_charged_per_basic_block() {
    // A block of 3 (Push, StG, Jmp) looping forever: charged at its leader, so the error
    // comes at pc 0 once 3 * k > MAX_STEPS, and the global counts the completed blocks.
    let code = [arg(Op::Push, 0), arg(Op::StG, 0), arg(Op::Jmp, -3)];
    let blocks = otf_script::vm::basic_blocks(&code, 0);
    assert_eq!(blocks.into_iter().collect::<Vec<_>>(), vec![(0, 3)]);
    let r = run(&code);
    assert!(matches!(r.result, Err(VmError::MaxAction { pc: 0 })));
    // Leaders: start, jump targets, and what follows a jump or an end.
    let code = [
        arg(Op::Push, 1),
        arg(Op::Jz, 2),
        op(Op::Nop),
        op(Op::Next),
        op(Op::Nop),
        op(Op::Next),
    ];
    let blocks: Vec<_> = otf_script::vm::basic_blocks(&code, 0).into_iter().collect();
    assert_eq!(blocks, vec![(0, 2), (2, 2), (4, 2)]);
}

#[test]
fn skip_next_and_ret_are_distinct_endings() {
    let r = run(&[op(Op::Skip)]);
    assert_eq!(r.result.map(|o| o.end), Ok(End::Skip));
    let r = run(&[push(3), arg(Op::StG, 0), op(Op::Next)]);
    assert_eq!(r.result.map(|o| o.end), Ok(End::Next));
    assert_eq!(r.globals[0], 3);
    let r = run(&[push(0), ret()]);
    assert_eq!(
        r.result.map(|o| (o.end, o.exit_requested)),
        Ok((End::Ret(0), false))
    );
}

#[test]
fn randint_range_is_checked_and_deterministic() {
    for n in [0, -1, i64::MIN] {
        assert_eq!(
            run(&[push(n), op(Op::RandInt), ret()]).result,
            Err(VmError::InvalidRandint { pc: 1, n })
        );
    }
    assert_eq!(ret_value(&[push(1), op(Op::RandInt), ret()]), 0);
    let a: Vec<i64> = (0..20)
        .map(|_| ret_value(&[push(1000), op(Op::RandInt), ret()]))
        .collect();
    assert!(a.iter().all(|v| (0..1000).contains(v)));
    assert!(
        a.iter().all(|v| *v == a[0]),
        "fresh FixedHit is deterministic"
    );
    // Successive calls in one hit differ (xorshift advances).
    let r = run(&[
        push(1 << 40),
        op(Op::RandInt),
        push(1 << 40),
        op(Op::RandInt),
        op(Op::Ne),
        ret(),
    ]);
    assert_eq!(r.result.map(|o| o.end), Ok(End::Ret(1)));
}

#[test]
fn output_records_before_an_error_are_delivered() {
    let r = run(&[
        push(1),
        Insn::new(Op::Out, 0, 1),
        push(1),
        push(0),
        op(Op::Div),
        op(Op::Next),
    ]);
    assert_eq!(r.out.len(), 1);
    assert_eq!(r.result, Err(VmError::DivisionByZero { pc: 4 }));
}

#[test]
fn locals_start_at_zero_each_run() {
    let code = [
        arg(Op::LdL, 0),
        push(1),
        op(Op::Add),
        op(Op::Dup),
        arg(Op::StL, 0),
        ret(),
    ];
    assert_eq!(ret_value(&code), 1);
    assert_eq!(ret_value(&code), 1);
}

#[test]
fn malformed_code_is_an_error_not_a_panic() {
    type Case = (Vec<Insn>, fn(&VmError) -> bool);
    let bad: Vec<Case> = vec![
        (
            vec![Insn {
                op: 200,
                ..Insn::default()
            }],
            |e| matches!(e, VmError::BadOpcode { op: 200, .. }),
        ),
        (vec![op(Op::Add)], |e| {
            matches!(e, VmError::StackUnderflow { .. })
        }),
        (vec![ret()], |e| matches!(e, VmError::StackUnderflow { .. })),
        (vec![Insn::new(Op::Out, 0, 3)], |e| {
            matches!(e, VmError::StackUnderflow { .. })
        }),
        (vec![Insn::new(Op::Out, 0, -1)], |e| {
            matches!(e, VmError::BadOutArgs { .. })
        }),
        (vec![Insn::new(Op::Out, 0, 17)], |e| {
            matches!(e, VmError::BadOutArgs { .. })
        }),
        (vec![arg(Op::Jmp, 5)], |e| {
            matches!(e, VmError::JumpOutOfRange { target: 6, .. })
        }),
        (vec![arg(Op::Jmp, -5)], |e| {
            matches!(e, VmError::JumpOutOfRange { .. })
        }),
        (vec![push(1)], |e| {
            matches!(e, VmError::JumpOutOfRange { pc: 1, .. })
        }),
        (vec![arg(Op::LdL, 64), ret()], |e| {
            matches!(e, VmError::LocalOutOfRange { .. })
        }),
        (vec![arg(Op::LdL, -1), ret()], |e| {
            matches!(e, VmError::LocalOutOfRange { .. })
        }),
        (vec![push(0), arg(Op::StL, 99)], |e| {
            matches!(e, VmError::LocalOutOfRange { .. })
        }),
        (vec![arg(Op::LdG, 4), ret()], |e| {
            matches!(e, VmError::GlobalOutOfRange { idx: 4, .. })
        }),
        (vec![push(1), arg(Op::StG, -3)], |e| {
            matches!(e, VmError::GlobalOutOfRange { .. })
        }),
        (vec![arg(Op::EntryLoad, 8), ret()], |e| {
            matches!(e, VmError::EntrySlotOutOfRange { .. })
        }),
        (vec![Insn::new(Op::Ctx, 99, 0), ret()], |e| {
            matches!(e, VmError::BadContext { id: 99, .. })
        }),
        (
            {
                let mut v = vec![push(1); MAX_STACK + 1];
                v.push(ret());
                v
            },
            |e| matches!(e, VmError::StackOverflow { pc } if *pc == MAX_STACK),
        ),
        (vec![push(1), arg(Op::Jmp, -2)], |e| {
            matches!(e, VmError::StackOverflow { .. })
        }),
    ];
    for (code, check) in bad {
        let r = run(&code);
        match &r.result {
            Err(e) => assert!(check(e), "{code:?}: {e:?}"),
            Ok(o) => panic!("{code:?} ran: {o:?}"),
        }
        // verify knows only MAX_GLOBALS, not the store's size.
        if !matches!(r.result, Err(VmError::GlobalOutOfRange { .. })) {
            assert!(
                vm::verify(&code, 0..code.len()).is_err(),
                "verify accepted {code:?}"
            );
        }
    }
    // Starting beyond the end.
    let mut g = vec![0i64];
    let mut h = FixedHit::default();
    assert!(vm::run(&[], 0, &mut g, &mut h, &mut |_| {}).is_err());
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap deterministic fuzz: random instructions over all opcodes and odd operands.
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..2000 {
        let len = (next() % 12 + 1) as usize;
        let code: Vec<Insn> = (0..len)
            .map(|_| Insn {
                op: (next() % 42) as u8,
                pad: [0; 3],
                arg: (next() % 20) as i32 - 6,
                imm: (next() % 9) as i64 - 2,
            })
            .collect();
        let r = run(&code);
        let v = vm::verify(&code, 0..code.len());
        if v.is_ok() {
            // Verified code only fails in the ways correct programs can.
            if let Err(e) = &r.result {
                assert!(
                    matches!(
                        e,
                        VmError::DivisionByZero { .. }
                            | VmError::MaxAction { .. }
                            | VmError::InvalidRandint { .. }
                            | VmError::GlobalOutOfRange { .. }
                    ),
                    "{code:?}: {e:?}"
                );
            }
        }
    }
}

#[test]
fn verify_checks_paths() {
    // Consistent depth across a diamond.
    let ok = [
        push(1),
        arg(Op::Jz, 2),
        push(5),
        arg(Op::Jmp, 1),
        push(6),
        ret(),
    ];
    assert_eq!(vm::verify(&ok, 0..ok.len()), Ok(1));
    // Inconsistent: one branch pushes, the other does not.
    let bad = [push(1), arg(Op::Jz, 1), push(5), push(0), ret()];
    assert!(matches!(
        vm::verify(&bad, 0..bad.len()),
        Err(VerifyError::InconsistentStack { .. })
    ));
    // A jump out of a sub-range is refused even though it is inside the code.
    let code = [op(Op::Next), arg(Op::Jmp, -2), op(Op::Next)];
    assert!(matches!(
        vm::verify(&code, 1..3),
        Err(VerifyError::JumpOutOfRange { target: 0, .. })
    ));
    assert_eq!(vm::verify(&code, 2..3), Ok(0));
    // Falling off the end of the range.
    assert!(matches!(
        vm::verify(&code, 0..2).and(vm::verify(&[push(1)], 0..1)),
        Err(VerifyError::FallsOffEnd { .. })
    ));
    assert!(matches!(
        vm::verify(&code, 2..2),
        Err(VerifyError::BadRange { .. })
    ));
    // Max depth exactly MAX_STACK is fine; one more is refused.
    let mut deep = vec![push(1); MAX_STACK];
    deep.push(op(Op::Next));
    assert_eq!(vm::verify(&deep, 0..deep.len()), Ok(MAX_STACK));
    let mut deeper = vec![push(1); MAX_STACK + 1];
    deeper.push(op(Op::Next));
    assert!(matches!(
        vm::verify(&deeper, 0..deeper.len()),
        Err(VerifyError::StackOverflow { .. })
    ));
}

#[test]
fn slices_and_vecs_are_global_stores() {
    use otf_script::vm::GlobalStore;
    let mut g = [1i64, 2, 3];
    let s: &mut [i64] = &mut g;
    s.store(1, 9);
    assert_eq!(s.load(1), 9);
    assert_eq!(GlobalStore::len(s), 3);
    let mut h = FixedHit::default();
    let r = vm::run(
        &[push(5), arg(Op::StG, 2), op(Op::Next)],
        0,
        &mut &mut g[..],
        &mut h,
        &mut |_| {},
    );
    assert!(r.is_ok());
    assert_eq!(g, [1, 9, 5]);
}
