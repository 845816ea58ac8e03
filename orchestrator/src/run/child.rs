//! The `-c` command: started stopped before the probes are armed, released after.

use std::io::{self};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::Failure;

/// `sh -c CMD` runs a simple command in a child of the shell (dash does not exec it), so
/// `target()` would be the shell's pid. A simple command — words only, no shell syntax that
/// `exec` would change — is prefixed with `exec`, so the command keeps the shell's pid, which is
/// `target()`. Anything else (lists, pipes, redirections, compound commands, assignments) runs as
/// written, and `target()` is the pid of the shell that runs it.
pub(super) fn exec_if_simple(cmd: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "if", "then", "else", "elif", "fi", "case", "esac", "for", "while", "until", "do", "done",
        "!", "{", "}", "exec", "function", "select", "time",
    ];
    let trimmed = cmd.trim();
    let Some(first) = trimmed.split_whitespace().next() else {
        return cmd.to_string();
    };
    let syntax = trimmed.contains("$(")
        || trimmed.chars().any(|c| {
            matches!(
                c,
                ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' | '\n' | '#'
            )
        });
    if syntax || first.contains('=') || KEYWORDS.contains(&first) {
        cmd.to_string()
    } else {
        format!("exec {trimmed}")
    }
}

/// A `-c` command: started before the probes are attached (so that `target()` is known) but
/// held at a gate until the session is running.
pub(super) struct Child {
    child: std::process::Child,
    gate: Option<OwnedFd>,
    done: bool,
}

impl Child {
    pub(super) fn spawn(cmd: &str) -> Result<Child, Failure> {
        use std::os::unix::process::CommandExt;
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Failure::Session {
                what: "cannot start -c command: pipe".into(),
                source: io::Error::last_os_error(),
            });
        }
        // SAFETY: pipe2 just returned these two fds, owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let rd_raw = rd.as_raw_fd();
        let wr_raw = wr.as_raw_fd();
        // The shell waits at the gate (fd 3) until the session runs, then becomes the command
        // with the same pid (`exec`), so target() is the command's pid.
        let mut command = std::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg("read -r _ <&3; exec 3<&-; exec /bin/sh -c \"$0\"")
            .arg(exec_if_simple(cmd));
        // SAFETY: the closure only calls dup2 and close (async-signal-safe) between fork and
        // exec; it never blocks, so spawn() returns once the shell is running.
        unsafe {
            command.pre_exec(move || {
                if rd_raw == 3 {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it.
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup2(rd_raw, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(wr_raw);
                Ok(())
            });
        }
        let child = command.spawn().map_err(|source| Failure::Session {
            what: format!("cannot start -c command `{cmd}`"),
            source,
        })?;
        drop(rd);
        Ok(Child {
            child,
            gate: Some(wr),
            done: false,
        })
    }

    pub(super) fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }

    pub(super) fn release(&mut self) {
        self.gate = None;
    }

    /// True once the command has ended (reaped).
    pub(super) fn poll_exited(&mut self) -> bool {
        if !self.done {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.done = true;
            }
        }
        self.done
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::exec_if_simple;

    #[test]
    fn simple_commands_are_execed_others_run_as_written() {
        assert_eq!(exec_if_simple("sleep 1"), "exec sleep 1");
        assert_eq!(
            exec_if_simple("  ./prog -x 'a b' $HOME "),
            "exec ./prog -x 'a b' $HOME"
        );
        for cmd in [
            "sleep 1; echo hi",
            "a | b",
            "a && b",
            "prog > out",
            "(sub)",
            "echo $(date)",
            "X=1 prog",
            "while true; do :; done",
            "if x",
            "",
            "exec prog",
        ] {
            assert_eq!(exec_if_simple(cmd), cmd, "{cmd}");
        }
    }
}
