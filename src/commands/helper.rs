//! qemu-ga's `ga_run_command()` on the event loop: a helper program
//! (hwclock, shutdown, chpasswd, the fsfreeze hook) runs without blocking
//! the loop, with stdout and stderr merged and captured; its end becomes
//! qemu-ga's `child process has failed to <action>: ...` error or the
//! command's own continuation.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;

use super::{Ctx, Outcome, Pending};
use crate::protocol::QgaError;
use crate::sys::fd::can_execute;
use crate::sys::find_program;
use crate::sys::libc;
use crate::sys::process::WaitStatus;
use crate::sys::Errno;

use super::reply::R;

/// Where `execvp()` would find `prog`, or the errno it would fail with
/// (PATH, or "/bin:/usr/bin" as glibc's execvp when it is unset).
fn resolve(prog: &str) -> Result<(), i32> {
    let usable = |p: &CStr| -> Result<(), Errno> {
        let meta = std::fs::metadata(OsStr::from_bytes(p.to_bytes())).map_err(|e| Errno::of(&e))?;
        // Built from a str name and a str PATH, so always UTF-8.
        if !meta.is_file() || !p.to_str().is_ok_and(can_execute) {
            return Err(Errno(libc::EACCES));
        }
        Ok(())
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| "/bin:/usr/bin".to_string());
    find_program(prog.as_bytes(), path.as_bytes(), usable).map(drop).map_err(Errno::raw)
}

/// qemu-ga's error for a finished helper, or None if it succeeded.
pub fn failure(action: &str, status: WaitStatus, output: &[u8]) -> Option<QgaError> {
    // The output is read as a C string.
    let out = &output[..output.iter().position(|&b| b == 0).unwrap_or(output.len())];
    let text = String::from_utf8_lossy(out);
    let Some(code) = status.exit_code() else {
        return Some(QgaError::generic(if text.is_empty() {
            "child process has terminated abnormally".to_string()
        } else {
            format!("child process has terminated abnormally: {text}")
        }));
    };
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
    ctx: &mut Ctx<'_>,
    argv: &[&str],
    input: Option<Vec<u8>>,
    action: &'static str,
    then: impl FnOnce(&mut Ctx<'_>) -> R + 'static,
) -> R {
    run_any(ctx, argv, input, action, move |ctx, err| match err {
        Some(e) => Err(e),
        None => then(ctx),
    })
}

/// Like [`run`], but `then` runs in every case, with the helper's error if
/// it failed (a helper that cannot be started counts as failed at once,
/// as in qemu-ga).
pub fn run_any(
    ctx: &mut Ctx<'_>,
    argv: &[&str],
    input: Option<Vec<u8>>,
    action: &'static str,
    then: impl FnOnce(&mut Ctx<'_>, Option<QgaError>) -> R + 'static,
) -> R {
    let prog = argv.first().copied().unwrap_or("");
    if let Err(e) = resolve(prog) {
        // What the child of ga_run_command() prints when execvp() fails,
        // followed by exit status 1.
        let out = format!("failed to exec '{prog}': {}\n", Errno(e));
        return then(ctx, failure(action, WaitStatus(1 << 8), out.as_bytes()));
    }
    let pid = match ctx.start_helper(argv, input) {
        Ok(pid) => pid,
        Err(e) => return then(ctx, Some(e)),
    };
    Ok(Outcome::Await(Pending::new(pid, move |ctx, r| {
        let err = failure(action, r.status, &r.output);
        then(ctx, err)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_texts() {
        let st = WaitStatus;
        assert!(failure("x", st(0), b"").is_none());
        assert_eq!(
            failure("shutdown", st(3 << 8), b"").unwrap().desc,
            "child process has failed to shutdown: exit status 3"
        );
        assert_eq!(
            failure("shutdown", st(1 << 8), b"oops\n\0rest").unwrap().desc,
            "child process has failed to shutdown: oops\n"
        );
        assert_eq!(failure("x", st(libc::SIGKILL), b"").unwrap().desc, "child process has terminated abnormally");
        assert_eq!(failure("x", st(libc::SIGKILL), b"o").unwrap().desc, "child process has terminated abnormally: o");
        assert_eq!(resolve("/nonexistent/prog"), Err(libc::ENOENT));
        assert_eq!(resolve("sh"), Ok(()));
    }
}
