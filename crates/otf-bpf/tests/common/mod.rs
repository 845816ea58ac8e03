//! Helpers shared by the kernel tests: a tiny assembler and image builders.
#![allow(dead_code)]

use otf_bpf::{ProbeSlot, RuntimeImage};
use otf_script::bytecode::{Insn, Op};

/// Reporting skipped tests, shared with the kernel-level suite so that `cargo xtask test`
/// counts them (docs/testing.md, "Skipped tests").
#[path = "../../../../testsuite/src/skip.rs"]
pub mod skip;

/// Loads `image` with the test-entry handler only (`Runtime::test_run_hit` runs its bodies).
pub fn load_test_entry(image: &RuntimeImage) -> Result<otf_bpf::Runtime, otf_bpf::Error> {
    otf_bpf::Runtime::load_with(
        image,
        &otf_bpf::LoadOptions {
            kinds: vec![otf_bpf::ProgKind::TestEntry],
            ..Default::default()
        },
    )
}

/// Shorthands for instructions.
pub fn i(op: Op) -> Insn {
    Insn::op(op)
}
pub fn a(op: Op, arg: i32) -> Insn {
    Insn::with_arg(op, arg)
}
pub fn push(v: i64) -> Insn {
    Insn::new(Op::Push, 0, v)
}
pub fn out(fmt: i32, n: i64) -> Insn {
    Insn::new(Op::Out, fmt, n)
}
pub fn ctx(id: otf_script::bytecode::Ctx, param: i64) -> Insn {
    Insn::new(Op::Ctx, id as i32, param)
}

/// This thread's id.
pub fn gettid() -> i64 {
    // SAFETY: a plain syscall without arguments.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

/// The inlined condition check "this thread only": `if (tid() != me) skip` (tests run in
/// parallel threads of one process).
pub fn only_me() -> Vec<Insn> {
    vec![
        ctx(otf_script::bytecode::Ctx::Tid, 0),
        push(gettid()),
        i(Op::Eq),
        a(Op::Jnz, 1),
        i(Op::Skip),
    ]
}

/// Code and slot builder: appends programs, returns their offsets.
#[derive(Default)]
pub struct Builder {
    pub image: RuntimeImage,
}

impl Builder {
    pub fn new(nglobals: usize) -> Self {
        let mut b = Builder::default();
        b.image.globals_init = vec![0; nglobals];
        b
    }

    /// Append a program; returns its offset.
    pub fn prog(&mut self, code: &[Insn]) -> u32 {
        let off = self.image.code.len() as u32;
        self.image.code.extend_from_slice(code);
        off
    }

    /// Add a probe slot with this body; returns its pidx. An unlabelled slot is labelled
    /// `test probe <pidx>` (verifier errors name the probe by its label).
    pub fn probe(&mut self, body: &[Insn], slot: ProbeSlot) -> u32 {
        let off = self.prog(body);
        let pidx = self.image.probes.len() as u32;
        let label = if slot.label.is_empty() {
            format!("test probe {pidx}")
        } else {
            slot.label.clone()
        };
        self.image.probes.push(ProbeSlot {
            body: Some(off),
            label,
            ..slot
        });
        pidx
    }

    /// Add a condition program; returns its cond id.
    pub fn cond(&mut self, code: &[Insn], init: bool) -> u32 {
        let off = self.prog(code);
        self.image.cond_code.push(off);
        self.image.cond_init.push(init);
        (self.image.cond_code.len() - 1) as u32
    }
}

/// Whether this process can load a BPF program and run it with `BPF_PROG_TEST_RUN`, as the
/// tests that run hits with [`otf_bpf::Runtime::test_run_hit`] need. If not, reports the running
/// test as skipped ([`skip`], as the kernel-level suites do; `_test` is no longer needed, the
/// test's thread names it) and returns `false`; the test should then return.
///
/// The check is independent of otf: it loads a two-instruction raw tracepoint program
/// (`r0 = 0; exit`) and test-runs it, so that a runtime that fails to load is a failure, not a
/// skip.
pub fn can_test_run_bpf(_test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip::skip(
            skip::Need::Root,
            "needs root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN)",
        );
        return false;
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        skip::skip(
            skip::Need::Env,
            "no kernel BTF (/sys/kernel/btf/vmlinux), which the otf runtime needs",
        );
        return false;
    }
    match raw_tp_test_run() {
        Ok(()) => true,
        Err(why) => {
            skip::skip(
                skip::Need::Env,
                &format!("this kernel cannot test-run BPF programs: {why}"),
            );
            false
        }
    }
}

/// `union bpf_attr` for `BPF_PROG_LOAD` (the fields up to `expected_attach_type`).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN`.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// Load `r0 = 0; exit` as a raw tracepoint program and run it once with `BPF_PROG_TEST_RUN`.
fn raw_tp_test_run() -> Result<(), String> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
    // mov64 r0, 0 (0xb7); exit (0x95): opcode in the low byte, registers, offset and
    // immediate zero.
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let load = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_RAW_TRACEPOINT,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: a valid bpf_attr of the given size; the pointers outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        return Err(format!(
            "BPF_PROG_LOAD of a trivial raw tracepoint program: {}",
            std::io::Error::last_os_error()
        ));
    }
    let ctx = [0u64; 1];
    let run = TestRunAttr {
        prog_fd: fd as u32,
        ctx_size_in: std::mem::size_of_val(&ctx) as u32,
        ctx_in: ctx.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: as above.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &run as *const TestRunAttr,
            std::mem::size_of::<TestRunAttr>(),
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: `fd` is the program fd opened above, closed once.
    unsafe { libc::close(fd as libc::c_int) };
    if r < 0 {
        return Err(format!(
            "BPF_PROG_TEST_RUN of a raw tracepoint program: {err}"
        ));
    }
    Ok(())
}

/// Two pages of this process's memory, the first readable (filled by `fill`), the second
/// made inaccessible (`PROT_NONE`): reads that run from the first into the second fault at
/// its start. Returns the first page's address (`munmap` the 8 KiB when done).
pub fn page_before_a_hole(fill: impl FnOnce(*mut u8)) -> u64 {
    // SAFETY: an anonymous private mapping with no address hint; checked below.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(m, libc::MAP_FAILED);
    let b = m.cast::<u8>();
    fill(b);
    // SAFETY: the mapping is two pages; the second is made inaccessible.
    let r = unsafe { libc::mprotect(b.add(4096).cast(), 4096, libc::PROT_NONE) };
    assert_eq!(r, 0);
    m as u64
}

/// Compiles `src` and builds the image `otf run` would build for its kernel units: unit `i`'s
/// body at pidx `i`, with `pp()` and `probefunc()` from `pp(i)` and `probefunc(i)` (any
/// strings: only the image says what they are). Panics on a compile error or on a unit whose
/// body would run in user space.
pub fn compile_kernel_units(
    src: &str,
    pp: impl Fn(usize) -> String,
    probefunc: impl Fn(usize) -> String,
) -> (otf_script::compile::CompiledScript, RuntimeImage) {
    let file = otf_script::diag::SourceFile::new("t.stp", src);
    let c = otf_script::compile_source(&file)
        .unwrap_or_else(|d| panic!("{src}: {d:?}"))
        .script;
    let probes = c
        .units
        .iter()
        .enumerate()
        .filter(|(_, u)| u.point.is_kernel())
        .map(|(i, u)| {
            assert!(!u.deferred, "unit {i} runs in user space");
            ProbeSlot {
                body: Some(u.body.start),
                lock_mask: u.lock_mask,
                label: format!("unit {i}"),
                pp: pp(i),
                probefunc: probefunc(i),
                ..Default::default()
            }
        })
        .collect();
    let image = RuntimeImage {
        code: c.code.clone(),
        probes,
        globals_init: c.globals.iter().map(|g| g.init).collect(),
        maps: otf_codegen::maps::MapSpec::all(&c.globals),
        strings: c.strings.clone(),
        ..Default::default()
    };
    (c, image)
}

/// One hit of unit 0 (pidx 0), run by the kernel (`BPF_PROG_TEST_RUN` of a `TestEntry`
/// program, in this task) and by the reference VM on fresh globals: the kernel's events, the
/// VM's output records and how the VM's run ended.
pub struct OneHit {
    /// What the kernel sent for the hit.
    pub kernel: Vec<otf_bpf::Event>,
    /// The reference VM's output records, including those before an error.
    pub vm_out: Vec<otf_script::vm::OutRecord>,
    /// How the reference VM's run ended.
    pub vm: Result<otf_script::vm::Outcome, otf_script::vm::VmError>,
}

/// Runs one hit of unit 0 of `c` (whose image is `image`) in the kernel and in the reference
/// VM ([`OneHit`]); `src` names the script in panics.
pub fn one_hit_both(
    c: &otf_script::compile::CompiledScript,
    image: &RuntimeImage,
    src: &str,
) -> OneHit {
    let rt = load_test_entry(image).unwrap_or_else(|e| panic!("{src}: {e}"));
    let mut events = rt.events().expect("events");
    rt.test_run_hit(otf_bpf::cookie(0)).expect("hit");
    let kernel = events.drain().expect("drain");
    let mut hit = otf_script::vm::FixedHit {
        strings: c.strings.clone(),
        formats: c.formats.clone(),
        ..Default::default()
    };
    let start = image.probes[0].body.expect("body") as usize;
    let mut vm_out = Vec::new();
    let vm = otf_script::vm::run(
        &c.code,
        start,
        &mut otf_script::store::MemStore::new(&c.globals),
        &mut hit,
        &mut |r| vm_out.push(r),
    );
    OneHit { kernel, vm_out, vm }
}

/// The output records the kernel has sent so far; a run-time error record fails the test
/// (`src` names the script).
pub fn kernel_outputs(
    events: &mut otf_bpf::EventReader<'_>,
    src: &str,
) -> Vec<otf_script::vm::OutRecord> {
    events
        .drain()
        .expect("drain")
        .into_iter()
        .filter_map(|e| match e {
            otf_bpf::Event::Output {
                fmt, args, strs, ..
            } => Some(otf_script::vm::OutRecord { fmt, args, strs }),
            otf_bpf::Event::Error { kind, pc, .. } => {
                panic!("{src}: run-time error {kind} at {pc}")
            }
            _ => None,
        })
        .collect()
}

/// Asserts that every global of `c` (scalars, strings, arrays, aggregates) reads the same in
/// the kernel's `store` as in the reference VM's `mem`.
pub fn assert_same_globals(
    c: &otf_script::compile::CompiledScript,
    store: &mut otf_bpf::RuntimeStore<'_>,
    mem: &mut otf_script::store::MemStore,
    src: &str,
) {
    use otf_script::bytecode::GlobalKind;
    use otf_script::vm::GlobalStore;
    for (g, info) in c.globals.iter().enumerate() {
        let g = g as u32;
        match info.kind {
            GlobalKind::Array { .. } => assert_eq!(
                store.map_entries(g),
                mem.map_entries(g),
                "{src}: array {}",
                info.name
            ),
            GlobalKind::Scalar if info.str_value => {
                assert_eq!(store.load_str(g), mem.load_str(g), "{src}: {}", info.name)
            }
            GlobalKind::Scalar => assert_eq!(store.load(g), mem.load(g), "{src}: {}", info.name),
            GlobalKind::Stat { .. } => assert_eq!(
                store.stat_entries(g),
                mem.stat_entries(g),
                "{src}: aggregate {}",
                info.name
            ),
        }
    }
}

/// Runs `hits` (pidx in order) of `src`'s kernel units in the kernel (`BPF_PROG_TEST_RUN`) and
/// in the reference VM, with `pp(i)` and `probefunc(i)` as unit `i`'s names and string globals
/// set to their initial values on both sides; asserts that the output records and every
/// global agree. Returns the number of records, or `None` when BPF test runs are not possible
/// here (the skip is reported under `test`).
pub fn hits_agree(
    test: &str,
    src: &str,
    hits: &[u32],
    pp: impl Fn(usize) -> String,
    probefunc: impl Fn(usize) -> String,
) -> Option<usize> {
    use otf_script::vm::GlobalStore;
    if !can_test_run_bpf(test) {
        return None;
    }
    let (c, image) = compile_kernel_units(src, &pp, &probefunc);
    let rt = load_test_entry(&image).unwrap_or_else(|e| panic!("{src}: {e}"));
    let mut store = rt.store();
    let mut mem = otf_script::store::MemStore::new(&c.globals);
    for (g, info) in c.globals.iter().enumerate() {
        if let Some(s) = &info.init_str {
            store.store_str(g as u32, s);
            mem.store_str(g as u32, s);
        }
    }
    let mut events = rt.events().expect("events");
    let mut want = Vec::new();
    let comm = std::fs::read_to_string("/proc/thread-self/comm").expect("comm");
    for &p in hits {
        rt.test_run_hit(otf_bpf::cookie(p)).expect("hit");
        let mut hit = otf_script::vm::FixedHit {
            strings: c.strings.clone(),
            formats: c.formats.clone(),
            names: [
                comm.trim_end_matches('\n').to_string(),
                pp(p as usize),
                probefunc(p as usize),
            ],
            ..Default::default()
        };
        let start = image.probes[p as usize].body.expect("body") as usize;
        otf_script::vm::run(&c.code, start, &mut mem, &mut hit, &mut |r| want.push(r))
            .unwrap_or_else(|e| panic!("{src}: the reference VM failed: {e:?}"));
    }
    let got = kernel_outputs(&mut events, src);
    assert_eq!(got, want, "{src}: output records");
    assert_same_globals(&c, &mut store, &mut mem, src);
    Some(got.len())
}
