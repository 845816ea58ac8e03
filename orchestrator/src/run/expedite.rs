//! `--otf-rcu-expedited`: RCU grace periods expedited for the session, restored at exit even
//! if otf is killed.
//!
//! Why: every uprobe arm or disarm goes through `register_for_each_vma`, whose
//! `percpu_down_write(&dup_mmap_sem)` waits for a normal RCU grace period (one to three ticks,
//! ~7 ms p50 at HZ=250; docs/performance.md, "Flip latency"). With `/sys/kernel/rcu_expedited`
//! set, `synchronize_rcu` is expedited: measured p50 0.8 ms on and 0.6 ms off instead of 7.3
//! and 8.1 ms. The knob is system-wide (every `synchronize_rcu` on the machine then
//! interrupts every CPU), so otf sets it only when asked.
//!
//! A killed otf runs no destructor, so a watchdog restores the knob: a shell in its own
//! process group (Ctrl-C does not reach it) that waits for end of file on a pipe whose only
//! writer is otf, then writes the old value back. The pipe ends when otf does, however it
//! ends. A normal end restores the value itself too, so that it is back when otf's exit is
//! seen.

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use crate::Failure;

/// The knob.
pub(super) const KNOB: &str = "/sys/kernel/rcu_expedited";

/// Holds the knob set; dropping it writes the old value back.
pub(super) struct Expedited {
    old: String,
    /// The watchdog's stdin: its end of file tells the watchdog to restore.
    watchdog: Option<std::process::Child>,
}

impl Expedited {
    /// Sets the knob to 1 and starts the watchdog; if the knob is already 1, does nothing.
    pub(super) fn set() -> Result<Expedited, Failure> {
        let read = |source| Failure::NoExpediteKnob { knob: KNOB, source };
        let old = std::fs::read_to_string(KNOB)
            .map_err(read)?
            .trim()
            .to_string();
        if old != "0" {
            return Ok(Expedited {
                old,
                watchdog: None,
            });
        }
        let watchdog = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read -r _; echo {old} > {KNOB}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| Failure::Session {
                what: "--otf-rcu-expedited: cannot start its watchdog".into(),
                source,
            })?;
        let mut this = Expedited {
            old,
            watchdog: Some(watchdog),
        };
        std::fs::write(KNOB, "1").map_err(|source| {
            this.restore();
            Failure::Session {
                what: format!("--otf-rcu-expedited: cannot write {KNOB}"),
                source,
            }
        })?;
        Ok(this)
    }

    fn restore(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = std::fs::write(KNOB, &self.old);
            // End of file on its stdin: it writes the same value and exits.
            drop(w.stdin.take());
            let _ = w.wait();
        }
    }
}

impl Drop for Expedited {
    fn drop(&mut self) {
        self.restore();
    }
}
