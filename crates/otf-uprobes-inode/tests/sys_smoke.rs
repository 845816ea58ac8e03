//! Root: the raw attach functions fire (counting program, gcc-built target).
use otf_attach::sys::{self, counting::CountingProgram, ProgKind};
use otf_uprobes_inode::resolve;
use std::process::Command;

#[test]
fn single_and_multi_uprobes_count_hits() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t.c");
    std::fs::write(&src, "int f1(int x){return x+1;}\nint f2(int x){return x+2;}\nint main(int c,char**v){(void)v;int s=0;for(int i=0;i<c*10;i++)s+=f1(i)+f2(i);return s&1;}\n").unwrap();
    let bin = dir.path().join("t");
    assert!(Command::new("gcc")
        .arg("-O0")
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap()
        .success());
    let t = resolve(bin.to_str().unwrap(), "f*", false).unwrap();
    let single = CountingProgram::load(ProgKind::Perf, 8).unwrap();
    let multi = CountingProgram::load(ProgKind::UprobeMulti, 8).unwrap();
    let p = bin.to_str().unwrap();
    let l1 = sys::attach_uprobe(single.prog(), p, t[0].file_offset, false, 3).unwrap();
    let l2 = sys::attach_uprobe_multi(
        multi.prog(),
        p,
        &[t[0].file_offset, t[1].file_offset],
        &[4, 5],
        true,
    )
    .unwrap();
    Command::new(&bin).status().unwrap();
    assert_eq!(single.hits(3).unwrap(), 10);
    assert_eq!(multi.hits(4).unwrap(), 10);
    assert_eq!(multi.hits(5).unwrap(), 10);
    drop((l1, l2));
    Command::new(&bin).status().unwrap();
    assert_eq!(single.hits(3).unwrap(), 10);
}
