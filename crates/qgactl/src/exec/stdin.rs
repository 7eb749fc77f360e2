//! The program's stdin: none, in the guest-exec request, staged in a
//! guest file (stock qemu-ga, large input) or streamed (qga).

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::time::Instant;

use serde_json::{json, Value};

use super::caps::Caps;
use super::poll::{POLL_FIRST, POLL_MAX};
use super::status::decode;
use crate::cli::{ExecArgs, StdinSource};
use crate::conn::{random_hex, secs, Session};
use crate::fail::{one_line, Failure, Result};
use crate::files::{strip_os_error, upload};
use crate::input::Pump;
use crate::progress::Progress;
use crate::terminal;

/// Largest stdin carried in the guest-exec request itself: base64 of it
/// (4/3) plus the rest of the request must stay under QEMU's 64 MiB
/// per-message limit (MAX_TOKEN_SIZE); 64 KiB are left for the rest.
pub const INPUT_LIMIT: usize = 48 * 1024 * 1024 - 64 * 1024;

pub(super) enum Input {
    None,
    Data(Vec<u8>),
    /// Uploaded to `file` inside the private directory `dir`.
    Staged {
        dir: String,
        file: String,
    },
    /// Read while the program runs and fed with guest-exec-input.
    Stream(Pump),
}

pub(super) fn prepare_input(sess: &mut Session, a: &ExecArgs, caps: &Caps) -> Result<Input> {
    let Some(src) = &a.stdin else { return Ok(Input::None) };
    if caps.ext && caps.input && !a.poll {
        let source: Box<dyn Read + Send> = match src {
            // Keystrokes: ssh's `~.` escape applies.
            StdinSource::Stdin if a.tty && qga_sys::fd::stdin().is_terminal() => {
                Box::new(terminal::Escape::new(std::io::stdin()))
            }
            StdinSource::Stdin => Box::new(std::io::stdin()),
            StdinSource::File(p) => Box::new(
                File::open(p)
                    .map_err(|e| Failure::Local(format!("cannot open {}: {}", p.display(), strip_os_error(&e))))?,
            ),
        };
        let pump =
            Pump::start(source).map_err(|e| Failure::Local(format!("cannot read stdin: {}", strip_os_error(&e))))?;
        return Ok(Input::Stream(pump));
    }
    let too_big = || {
        Failure::Local(format!(
            "stdin is larger than {INPUT_LIMIT} bytes (48 MiB - 64 KiB), the most one guest-exec request can carry, and the agent has no usable guest-file-open/write/close to stage it in the guest"
        ))
    };
    let (mut reader, size): (Box<dyn Read>, Option<u64>) = match src {
        StdinSource::Stdin => (Box::new(std::io::stdin().lock()), None),
        StdinSource::File(p) => {
            let f = File::open(p)
                .map_err(|e| Failure::Local(format!("cannot open {}: {}", p.display(), strip_os_error(&e))))?;
            let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
            (Box::new(f), size)
        }
    };
    if size.is_some_and(|s| s > INPUT_LIMIT as u64) && !caps.files {
        return Err(too_big());
    }
    let mut head = Vec::new();
    if size.is_none_or(|s| s <= INPUT_LIMIT as u64) {
        reader
            .by_ref()
            .take(INPUT_LIMIT as u64 + 1)
            .read_to_end(&mut head)
            .map_err(|e| Failure::Local(format!("cannot read stdin: {}", strip_os_error(&e))))?;
        if head.len() <= INPUT_LIMIT {
            return Ok(Input::Data(head));
        }
        if !caps.files {
            return Err(too_big());
        }
    }
    // Stage it: a private directory (0711, random name, mkdir fails if it
    // exists), the data via guest-file-write in chunks.
    let dir = format!("/tmp/qgactl-{}", random_hex(16));
    let (code, err) = run_helper(sess, "mkdir", &["-m", "0711", &dir])?;
    if code != 0 {
        return Err(Failure::agent(
            "guest-exec",
            "GenericError",
            &format!("cannot create {dir} in the guest to stage stdin: {}", one_line(&err)),
        ));
    }
    let file = format!("{dir}/stdin");
    let mut prog = Progress::new("stdin", size, None);
    match upload(sess, &head, &mut reader, &file, &mut prog) {
        Ok(_) => prog.finish(),
        Err(f) => {
            prog.abandon();
            if !matches!(f, Failure::Connection(_)) {
                let _ = run_helper(sess, "rm", &["-rf", &dir]);
            }
            return Err(f);
        }
    }
    Ok(Input::Staged { dir, file })
}

/// Runs a short helper in the guest, collecting (exit code, stderr).
pub(super) fn run_helper(sess: &mut Session, path: &str, args: &[&str]) -> Result<(i64, String)> {
    let v = sess.call("guest-exec", Some(json!({"path": path, "arg": args, "capture-output": true})))?;
    let pid = pid_of(&v)?;
    let deadline = Instant::now() + sess.reply_timeout;
    let mut delay = POLL_FIRST;
    loop {
        let s = sess.call("guest-exec-status", Some(json!({"pid": pid})))?;
        if s.get("exited").and_then(Value::as_bool) == Some(true) {
            let code = s.get("exitcode").and_then(Value::as_i64).unwrap_or(-1);
            let err = decode(&s, "err-data");
            return Ok((code, String::from_utf8_lossy(&err).into_owned()));
        }
        if Instant::now() >= deadline {
            return Err(Failure::Connection(format!(
                "guest-exec {path}: did not finish within {}",
                secs(sess.reply_timeout)
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(POLL_MAX);
    }
}

pub(super) fn pid_of(v: &Value) -> Result<i64> {
    v.get("pid").and_then(Value::as_i64).ok_or_else(|| Failure::Connection(format!("guest-exec: unexpected reply {v}")))
}
