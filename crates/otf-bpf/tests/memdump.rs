//! `printf`'s memory dumps (`%m`, `%M`) and binary output (`%b`) in kernel probe bodies, run
//! in the kernel (`BPF_PROG_TEST_RUN`, whose hit runs in this test's task, so `%#m` reads
//! this process's memory) and by the reference VM on the same hits: the output records
//! (with the bytes read) must be identical, the rendered bytes SystemTap's, and a fault the
//! same run-time error at the same instruction (root).

mod common;

use otf_bpf::{Event, RuntimeImage};
use otf_script::vm::{OutRecord, VmError};

/// The compiled script and the image `otf run` would build (kernel units only).
fn compile(src: &str) -> (otf_script::compile::CompiledScript, RuntimeImage) {
    common::compile_kernel_units(
        src,
        |_| "kernel.trace(\"sched:sched_switch\")".into(),
        |_| String::new(),
    )
}

/// What one hit of unit 0 did, in the kernel and in the reference VM: the output records
/// and the run-time error, if any.
struct Both {
    kernel: Vec<OutRecord>,
    kernel_err: Option<(otf_bpf::RuntimeErrorKind, u32)>,
    vm: Vec<OutRecord>,
    vm_err: Option<VmError>,
    script: otf_script::compile::CompiledScript,
}

fn run_both(src: &str) -> Option<Both> {
    if !common::can_test_run_bpf("memdump") {
        return None;
    }
    let (c, image) = compile(src);
    let run = common::one_hit_both(&c, &image, src);
    let mut kernel = Vec::new();
    let mut kernel_err = None;
    for e in run.kernel {
        match e {
            Event::Output {
                fmt, args, strs, ..
            } => kernel.push(OutRecord { fmt, args, strs }),
            Event::Error { kind, pc, .. } => kernel_err = Some((kind, pc)),
            _ => {}
        }
    }
    let (vm_out, r) = (run.vm_out, run.vm);
    Some(Both {
        kernel,
        kernel_err,
        vm: vm_out,
        vm_err: r.err(),
        script: c,
    })
}

/// A buffer in this process's memory that stays put (leaked) and is resident (written
/// here): its address.
fn resident(bytes: &[u8]) -> u64 {
    let v: &'static mut [u8] = bytes.to_vec().leak();
    // SAFETY: `v` is a valid, leaked buffer; the volatile read keeps the page touched.
    let _ = unsafe { std::ptr::read_volatile(v.as_ptr()) };
    v.as_ptr() as u64
}

fn render(c: &otf_script::compile::CompiledScript, r: &OutRecord) -> Vec<u8> {
    otf_script::format::render_bytes_strs(&c.formats[r.fmt as usize], &r.args, &r.strs, "", "", "")
}

#[test]
fn user_memory_dumps_agree_and_print_as_systemtap() {
    let bytes: Vec<u8> = b"Hi\0\xff\x7f-"
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(200))
        .collect();
    let p = resident(&bytes);
    let src = format!(
        r#"global p = {p}, n = 3
probe kernel.trace("sched:sched_switch") {{
    printf("[%#m][%#.4m][%#.4M][%-#8.2M][%#*.*M][%#.0m]\n", p, p, p, p, 9, n, p, p)
    printf("%s|%#.*m|%b|%1b\n", "x", n + 1, p, n, 65)
    printf("%d %#.*M\n", n, 1000, p)
    printf("%#.128m%#.*M\n", p, -4, p + 1)
}}"#
    );
    let Some(b) = run_both(&src) else { return };
    assert_eq!(b.kernel_err, None, "{src}");
    assert_eq!(b.vm_err, None, "{src}");
    assert_eq!(b.kernel, b.vm, "{src}: the records");
    assert_eq!(b.kernel.len(), 4);
    let out: Vec<Vec<u8>> = b.kernel.iter().map(|r| render(&b.script, r)).collect();
    assert_eq!(out[0], b"[H][Hi\0\xff][486900ff][4869    ][   486900][H]\n");
    let mut want = b"x|Hi\0\xff|".to_vec();
    want.extend(3i64.to_ne_bytes());
    want.extend(b"|A\n");
    assert_eq!(out[1], want);
    // A `.*` precision above MAX_MEMORY_DUMP reads 128 bytes.
    let hex: String = bytes[..128].iter().map(|c| format!("{c:02x}")).collect();
    assert_eq!(out[2], format!("3 {hex}\n").into_bytes());
    let mut want = bytes[..128].to_vec();
    want.extend(b"69\n");
    assert_eq!(out[3], want);
}

#[test]
fn faults_are_the_same_error() {
    if !common::can_test_run_bpf("memdump") {
        return;
    }
    // Two pages, the second made inaccessible.
    let m = common::page_before_a_hole(|b| {
        // SAFETY: `b` is the first, writable page.
        unsafe { std::ptr::write_bytes(b, b'z', 4096) }
    });
    let edge = m + 4096;
    // Kernel memory at a user address (x86-64 refuses it), user memory at 0, a `.*`
    // precision from an unreadable byte, dumps running from a readable page into an
    // unreadable one (SystemTap names the first byte it could not read).
    let p = resident(b"abc");
    for (expr, addr) in [
        (format!("%.4m\", {p}"), p),
        ("%#M\", 0".to_string(), 0),
        ("%#.*M\", 3, 1".to_string(), 1),
        (format!("%#.8m\", {}", edge - 4), edge),
        (format!("%#.*M\", 300, {}", edge - 100), edge),
        (format!("%#.2m\", {edge}"), edge),
    ] {
        let src = format!(
            r#"probe kernel.trace("sched:sched_switch") {{
    printf("before\n")
    printf("{expr})
    printf("after\n")
}}"#
        );
        let Some(b) = run_both(&src) else { return };
        let e = b.vm_err.clone().expect("the reference VM faults");
        assert_eq!(e, VmError::MemoryFault { pc: e.pc(), addr }, "{src}");
        let (kind, pc) = b.kernel_err.expect("the kernel faults");
        assert_eq!(kind, otf_bpf::RuntimeErrorKind::ReadFault { addr }, "{src}");
        assert_eq!(pc as usize, e.pc(), "{src}: the same instruction");
        assert_eq!(kind.to_string(), e.to_string());
        assert_eq!(
            kind.to_string(),
            format!("read fault [man error::fault] at {addr:#x}")
        );
        assert_eq!(b.kernel, b.vm, "{src}: only the first printf");
        assert_eq!(b.kernel.len(), 1, "{src}");
    }
    // And the same dumps that stop before the unreadable page read.
    let src = format!(
        r#"probe kernel.trace("sched:sched_switch") {{
    printf("%#.4m|%#.*M\n", {}, 100, {})
}}"#,
        edge - 4,
        edge - 100
    );
    let Some(b) = run_both(&src) else { return };
    assert_eq!((b.kernel_err, b.vm_err), (None, None), "{src}");
    assert_eq!(b.kernel, b.vm, "{src}");
    let mut want = b"zzzz|".to_vec();
    want.extend("7a".repeat(100).bytes());
    want.push(b'\n');
    assert_eq!(render(&b.script, &b.kernel[0]), want);
    // In a loop (a `bpf_loop` callback): dumps that read, then one that faults leaves it.
    let src = format!(
        r#"probe kernel.trace("sched:sched_switch") {{
    for (i = 0; i < 5; i++) printf("%d %#.*m\n", i, 6 - i % 2, {} + i)
}}"#,
        edge - 6
    );
    let Some(b) = run_both(&src) else { return };
    let e = b.vm_err.clone().expect("the reference VM faults");
    assert_eq!(
        e,
        VmError::MemoryFault {
            pc: e.pc(),
            addr: edge
        },
        "{src}"
    );
    let (kind, pc) = b.kernel_err.expect("the kernel faults");
    assert_eq!(kind, otf_bpf::RuntimeErrorKind::ReadFault { addr: edge });
    assert_eq!(pc as usize, e.pc());
    assert_eq!(b.kernel, b.vm, "{src}");
    let out: Vec<Vec<u8>> = b.kernel.iter().map(|r| render(&b.script, r)).collect();
    assert_eq!(out, [b"0 zzzzzz\n".to_vec(), b"1 zzzzz\n".to_vec()]);
    // SAFETY: unmapping the mapping made above, no longer read.
    assert_eq!(unsafe { libc::munmap(m as *mut libc::c_void, 8192) }, 0);
}
