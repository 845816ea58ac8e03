//! The output stream of `otf run`: script output and decision lines, as text or JSON lines.

use std::io::{self, Write};

use otf_core::DecisionLine;

/// The output stream: script output and decision lines, text or JSON lines, flushed per batch.
pub(super) struct Output {
    /// JSON lines instead of text.
    pub(super) json: bool,
    w: io::BufWriter<io::Stdout>,
    /// stdout was closed (EPIPE): further output is dropped.
    pub(super) broken: bool,
}

impl Output {
    pub(super) fn new(json: bool) -> Output {
        Output {
            json,
            w: io::BufWriter::with_capacity(64 * 1024, io::stdout()),
            broken: false,
        }
    }

    pub(super) fn write(&mut self, s: &str) {
        if !self.broken && self.w.write_all(s.as_bytes()).is_err() {
            self.broken = true;
        }
    }

    /// Script output: the bytes as they are in text mode (`%b`, `%m` and `%c` may write NUL
    /// bytes and bytes that are not UTF-8). A JSON line carries them as the string `text`;
    /// when they are not UTF-8, `text` has U+FFFD for the bytes that are not, and `bytes`
    /// holds every byte as a number.
    pub(super) fn output(&mut self, pidx: Option<u32>, bytes: &[u8]) {
        if self.json {
            let v = match std::str::from_utf8(bytes) {
                Ok(text) => serde_json::json!({"type": "output", "pidx": pidx, "text": text}),
                Err(_) => serde_json::json!({
                    "type": "output",
                    "pidx": pidx,
                    "text": String::from_utf8_lossy(bytes),
                    "bytes": bytes,
                }),
            };
            self.write(&format!("{v}\n"));
        } else if !self.broken && self.w.write_all(bytes).is_err() {
            self.broken = true;
        }
    }

    /// A structured JSON record (with `-o json` only).
    pub(super) fn record(&mut self, v: &serde_json::Value) {
        if self.json {
            self.write(&format!("{v}\n"));
        }
    }

    pub(super) fn decision(&mut self, group: &str, line: &DecisionLine) {
        if self.json {
            let v = serde_json::json!({
                "type": "otf",
                "decision": line.decision.as_str(),
                "group": group,
                "flavor": line.flavor.as_str(),
                "pidx": line.pidx,
            });
            self.write(&format!("{v}\n"));
        } else {
            self.write(&format!("{line}\n"));
        }
    }

    pub(super) fn flush(&mut self) {
        if !self.broken && self.w.flush().is_err() {
            self.broken = true;
        }
    }
}
