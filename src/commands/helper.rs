//! qemu-ga's `ga_run_command()` on the event loop: a helper program
//! (hwclock, shutdown, chpasswd, the fsfreeze hook) runs without blocking
//! the loop, with stdout and stderr merged and captured; its end becomes
//! qemu-ga's `child process has failed to <action>: ...` error or the
//! command's own continuation.

use std::ffi::CString;

use super::{HelperResult, Outcome, Pending};
use crate::agent::Agent;
use crate::protocol::{QgaError};
use crate::sys::strerror;

/// What to do once the helper succeeded.
pub type Then = Box<dyn FnOnce(&mut Agent) -> Result<Outcome, QgaError>>;

/// Where `execvp()` would find `prog`, or the errno it would fail with.
fn resolve(prog: &str) -> Result<(), i32> {
    let usable = |p: &str| -> Result<(), i32> {
        let c = CString::new(p).map_err(|_| libc::ENOENT)?;
        let meta = std::fs::metadata(p).map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
        // SAFETY: access() on a NUL-terminated path.
        if !meta.is_file() || unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
            return Err(libc::EACCES);
        }
        Ok(())
    };
    if prog.contains('/') {
        return usable(prog);
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| "/bin:/usr/bin".to_string());
    let mut err = libc::ENOENT;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        match usable(&format!("{dir}/{prog}")) {
            Ok(()) => return Ok(()),
            Err(libc::EACCES) => err = libc::EACCES,
            Err(_) => {}
        }
    }
    Err(err)
}

/// qemu-ga's error for a finished helper, or None if it succeeded.
pub fn failure(action: &str, status: i32, output: &[u8]) -> Option<QgaError> {
    // The output is read as a C string.
    let out = &output[..output.iter().position(|&b| b == 0).unwrap_or(output.len())];
    let text = String::from_utf8_lossy(out);
    if !libc::WIFEXITED(status) {
        return Some(QgaError::generic(if text.is_empty() {
            "child process has terminated abnormally".to_string()
        } else {
            format!("child process has terminated abnormally: {text}")
        }));
    }
    let code = libc::WEXITSTATUS(status);
    if code == 0 {
        return None;
    }
    Some(QgaError::generic(if text.is_empty() {
        format!("child process has failed to {action}: exit status {code}")
    } else {
        format!("child process has failed to {action}: {text}")
    }))
}

/// Starts `argv` (stdin = `input` or /dev/null) and returns the outcome
/// that waits for it: on success `then` decides the reply, on failure the
/// reply is qemu-ga's error for `action`.
pub fn run(
    agent: &mut Agent,
    argv: &[&str],
    input: Option<Vec<u8>>,
    action: &'static str,
    then: Then,
) -> Result<Outcome, QgaError> {
    run_any(
        agent,
        argv,
        input,
        action,
        Box::new(move |agent: &mut Agent, err: Option<QgaError>| match err {
            Some(e) => Err(e),
            None => then(agent),
        }),
    )
}

/// What to do once the helper ended, with its error if it failed.
pub type ThenAny = Box<dyn FnOnce(&mut Agent, Option<QgaError>) -> Result<Outcome, QgaError>>;

/// Like [`run`], but `then` runs in every case (a helper that cannot be
/// started counts as failed at once, as in qemu-ga).
pub fn run_any(
    agent: &mut Agent,
    argv: &[&str],
    input: Option<Vec<u8>>,
    action: &'static str,
    then: ThenAny,
) -> Result<Outcome, QgaError> {
    let prog = argv[0];
    if let Err(e) = resolve(prog) {
        // What the child of ga_run_command() prints when execvp() fails,
        // followed by exit status 1.
        let out = format!("failed to exec '{prog}': {}\n", strerror(e));
        return then(agent, failure(action, 1 << 8, out.as_bytes()));
    }
    let pid = match start(agent, argv, input) {
        Ok(pid) => pid,
        Err(e) => return then(agent, Some(e)),
    };
    Ok(Outcome::Await(Pending {
        pid,
        finish: Box::new(move |agent: &mut Agent, r: HelperResult| {
            let err = failure(action, r.status, &r.output);
            then(agent, err)
        }),
    }))
}

/// Starts a helper (merged, captured output) and returns its pid.
pub fn start(agent: &mut Agent, argv: &[&str], input: Option<Vec<u8>>) -> Result<libc::pid_t, QgaError> {
    agent.start_helper(argv[0], &argv[1..], input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_texts() {
        assert!(failure("x", 0, b"").is_none());
        assert_eq!(failure("shutdown", 3 << 8, b"").unwrap().desc, "child process has failed to shutdown: exit status 3");
        assert_eq!(failure("shutdown", 1 << 8, b"oops\n\0rest").unwrap().desc, "child process has failed to shutdown: oops\n");
        assert_eq!(failure("x", libc::SIGKILL, b"").unwrap().desc, "child process has terminated abnormally");
        assert_eq!(failure("x", libc::SIGKILL, b"o").unwrap().desc, "child process has terminated abnormally: o");
        assert_eq!(resolve("/nonexistent/prog"), Err(libc::ENOENT));
        assert_eq!(resolve("sh"), Ok(()));
    }
}
