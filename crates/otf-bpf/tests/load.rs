//! Loading the runtime in the real kernel (root).
use otf_bpf::{LoadOptions, ProgKind, Runtime, RuntimeImage};

#[test]
fn loads_empty_image() {
    let t = std::time::Instant::now();
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Debug, |_, s| eprint!("{s}"))));
    let rt = Runtime::load_with(
        &RuntimeImage::default(),
        &LoadOptions {
            kinds: ProgKind::ALL.to_vec(),
            verifier_log_level: 0,
            ..Default::default()
        },
    )
    .expect("load");
    eprintln!("all progs: {:?}", t.elapsed());
    assert!(!rt.take_need_refresh());
}
