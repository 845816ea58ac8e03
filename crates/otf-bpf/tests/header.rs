//! The C headers in `bpf/` and the Rust definitions agree on every number.

use std::collections::HashMap;

use otf_bpf::layout;
use otf_script::bytecode::{self, Ctx, Op};

/// `#define NAME VALUE` and `NAME = VALUE,` (enum) lines with integer values.
fn numbers(path: &str) -> HashMap<String, i128> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut m = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let (name, rest) = if let Some(r) = line.strip_prefix("#define ") {
            match r.split_once(char::is_whitespace) {
                Some((n, v)) => (n.trim(), v.trim()),
                None => continue,
            }
        } else if let Some((n, v)) = line.split_once(" = ") {
            (n.trim(), v)
        } else {
            continue;
        };
        let v = rest
            .split("/*")
            .next()
            .unwrap()
            .trim()
            .trim_end_matches(',');
        let v = v.trim_end_matches("ull").trim_end_matches('u');
        let parsed = if let Some(h) = v.strip_prefix("0x") {
            i128::from_str_radix(h, 16).ok()
        } else if let Some(inner) = v.strip_prefix("(1 << ").and_then(|s| s.strip_suffix(')')) {
            inner.parse::<u32>().ok().map(|s| 1i128 << s)
        } else if let Some(inner) = v
            .strip_prefix("(1ull << ")
            .and_then(|s| s.strip_suffix(')'))
        {
            inner.parse::<u32>().ok().map(|s| 1i128 << s)
        } else {
            v.parse().ok()
        };
        if let Some(p) = parsed {
            m.insert(name.to_string(), p);
        }
    }
    m
}

fn dir() -> String {
    format!("{}/../../bpf", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn insn_header_matches_bytecode_rs() {
    let c = numbers(&format!("{}/otf_insn.h", dir()));
    let get = |n: &str| {
        *c.get(n)
            .unwrap_or_else(|| panic!("{n} missing in otf_insn.h"))
    };
    assert_eq!(get("OTF_MAX_STACK"), bytecode::MAX_STACK as i128);
    assert_eq!(get("OTF_MAX_LOCALS"), bytecode::MAX_LOCALS as i128);
    assert_eq!(get("OTF_MAX_GLOBALS"), bytecode::MAX_GLOBALS as i128);
    assert_eq!(get("OTF_MAX_OUT_ARGS"), bytecode::MAX_OUT_ARGS as i128);
    assert_eq!(
        get("OTF_MAX_ENTRY_SLOTS"),
        bytecode::MAX_ENTRY_SLOTS as i128
    );
    assert_eq!(get("OTF_MAX_STEPS"), bytecode::MAX_STEPS as i128);
    assert_eq!(get("OTF_MAX_CODE"), bytecode::MAX_CODE as i128);
    assert_eq!(get("OTF_LOCK_STRIPES"), bytecode::LOCK_STRIPES as i128);

    // Every opcode, by name, and nothing else.
    let c_ops: HashMap<_, _> = c
        .iter()
        .filter(|(k, _)| k.starts_with("OTF_OP_"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(c_ops.len(), Op::ALL.len());
    for &op in Op::ALL {
        let name = format!("OTF_OP_{}", format!("{op:?}").to_uppercase());
        assert_eq!(c_ops.get(&name), Some(&(op as u8 as i128)), "{name}");
    }
    // Every context id.
    for v in 0..32 {
        if let Some(ctx) = Ctx::from_i32(v) {
            let name = format!("OTF_CTX_{}", format!("{ctx:?}").to_uppercase());
            assert_eq!(c.get(&name), Some(&(v as i128)), "{name}");
        }
    }
    let c_ctx = c.keys().filter(|k| k.starts_with("OTF_CTX_")).count();
    assert_eq!(
        c_ctx,
        (0..32).filter(|&v| Ctx::from_i32(v).is_some()).count()
    );
    assert_eq!(std::mem::size_of::<bytecode::Insn>(), 16);
}

#[test]
fn runtime_header_matches_layout_rs() {
    let c = numbers(&format!("{}/otf_runtime.h", dir()));
    let get = |n: &str| {
        *c.get(n)
            .unwrap_or_else(|| panic!("{n} missing in otf_runtime.h"))
    };
    let pairs: &[(&str, i128)] = &[
        ("OTF_MAX_PROBES", layout::MAX_PROBES as i128),
        ("OTF_MAX_CONDS", layout::MAX_CONDS as i128),
        ("OTF_MAX_REEVAL", layout::MAX_REEVAL as i128),
        (
            "OTF_MAX_REEVAL_PER_PROBE",
            layout::MAX_REEVAL_PER_PROBE as i128,
        ),
        ("OTF_MAX_NEST", layout::MAX_NEST as i128),
        ("OTF_MAX_CHAIN", layout::MAX_CHAIN as i128),
        ("OTF_MAXTRYLOCK", layout::MAXTRYLOCK as i128),
        ("OTF_ENTRY_MAP_SIZE", layout::ENTRY_MAP_SIZE as i128),
        ("OTF_RINGBUF_SIZE", layout::RINGBUF_SIZE as i128),
        ("OTF_NO_CODE", layout::NO_CODE as i128),
        ("OTF_PROBE_VALID", layout::PROBE_VALID as i128),
        ("OTF_PROBE_SAFE", layout::PROBE_SAFE as i128),
        ("OTF_PROBE_RETURN", layout::PROBE_RETURN as i128),
        ("OTF_PROBE_HAS_ENTRY", layout::PROBE_HAS_ENTRY as i128),
        ("OTF_COOKIE_ENTRY", layout::COOKIE_ENTRY as i128),
        ("OTF_ERR_DIV_ZERO", layout::ERR_DIV_ZERO as i128),
        ("OTF_ERR_MAXACTION", layout::ERR_MAXACTION as i128),
        ("OTF_ERR_RANDINT", layout::ERR_RANDINT as i128),
        ("OTF_ERR_BAD_CODE", layout::ERR_BAD_CODE as i128),
        ("OTF_ERR_KINDS", layout::ERR_KINDS as i128),
        ("OTF_REC_OUT", layout::REC_OUT as i128),
        ("OTF_REC_EXIT", layout::REC_EXIT as i128),
        ("OTF_REC_ERROR", layout::REC_ERROR as i128),
        ("OTF_REC_NOTIFY", layout::REC_NOTIFY as i128),
    ];
    for (name, v) in pairs {
        assert_eq!(get(name), *v, "{name}");
    }
}
