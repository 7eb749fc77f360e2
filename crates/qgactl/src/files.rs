//! push / pull through guest-file-open/read/write/close.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use qga_sys::Errno;
use serde_json::{json, Value};

use crate::conn::Session;
use crate::fail::{Failure, Result};
use crate::progress::Progress;
use crate::signals;

/// Bytes per guest-file-read/write (≈5.6 MB of base64 per message, well
/// under QEMU's 64 MiB message limit and guest-file-read's 48 MiB cap).
pub const CHUNK: usize = 4 << 20;

fn local_err(what: &str, path: &Path, e: std::io::Error) -> Failure {
    Failure::Local(format!("{what} {}: {}", path.display(), strip_os_error(&e)))
}

/// An error's text without std's " (os error N)": glibc's strerror text
/// for an OS error, the message itself otherwise.
pub fn strip_os_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno(n).to_string(),
        None => e.to_string(),
    }
}

/// Reads until `buf` is full or EOF; returns the byte count.
pub fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn handle_of(v: &Value, command: &str) -> Result<i64> {
    v.as_i64().ok_or_else(|| Failure::Connection(format!("{command}: unexpected reply (no handle): {v}")))
}

/// Closes a handle after a failure, if the session is still usable.
fn close_quietly(sess: &mut Session, handle: i64, why: &Failure) {
    if matches!(why, Failure::Agent { .. } | Failure::Local(_) | Failure::Interrupted(_)) {
        let _ = sess.call("guest-file-close", Some(json!({"handle": handle})));
    }
}

/// Ctrl-C (SIGINT/SIGTERM/SIGHUP) stops a transfer between chunks.
fn check_interrupt() -> Result<()> {
    if signals::interrupted() {
        return Err(Failure::Interrupted("interrupted".to_string()));
    }
    Ok(())
}

/// Opens `remote` for writing ("wb") and writes `head` then the rest of
/// `reader` into it. Returns the number of bytes written. Signals are
/// caught meanwhile and stop the transfer between chunks.
pub fn upload(
    sess: &mut Session,
    head: &[u8],
    reader: &mut dyn Read,
    remote: &str,
    prog: &mut Progress,
) -> Result<u64> {
    signals::install();
    let h = sess.call("guest-file-open", Some(json!({"path": remote, "mode": "wb"})))?;
    let handle = handle_of(&h, "guest-file-open")?;
    let r = (|| -> Result<u64> {
        let mut total = 0u64;
        for piece in head.chunks(CHUNK) {
            check_interrupt()?;
            write_chunk(sess, handle, piece)?;
            total += piece.len() as u64;
            prog.add(piece.len() as u64);
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(reader, &mut buf)
                .map_err(|e| Failure::Local(format!("cannot read input: {}", strip_os_error(&e))))?;
            if n == 0 {
                break;
            }
            check_interrupt()?;
            write_chunk(sess, handle, &buf[..n])?;
            total += n as u64;
            prog.add(n as u64);
        }
        sess.call("guest-file-close", Some(json!({"handle": handle})))?;
        Ok(total)
    })();
    if let Err(f) = &r {
        close_quietly(sess, handle, f);
    }
    r
}

fn write_chunk(sess: &mut Session, handle: i64, mut data: &[u8]) -> Result<()> {
    let mut stalls = 0;
    while !data.is_empty() {
        sess.send_with_base64("guest-file-write", json!({"handle": handle}), "buf-b64", data)?;
        let v = sess.reply("guest-file-write")?;
        let count = v.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
        if count == 0 {
            stalls += 1;
            if stalls >= 3 {
                return Err(Failure::agent("guest-file-write", "GenericError", "the agent wrote 0 bytes (disk full?)"));
            }
            continue;
        }
        data = &data[count.min(data.len())..];
    }
    Ok(())
}

pub fn push(sess: &mut Session, local: &Path, remote: &str, force_progress: Option<bool>) -> Result<i32> {
    let from_stdin = local.as_os_str() == "-";
    let mut remote = remote.to_string();
    if remote.ends_with('/') {
        let Some(name) = local.file_name().filter(|_| !from_stdin) else {
            return Err(Failure::Usage(format!("push: REMOTE '{remote}' is a directory; give the file name")));
        };
        remote.push_str(&name.to_string_lossy());
    }
    let (mut reader, size): (Box<dyn Read>, Option<u64>) = if from_stdin {
        (Box::new(std::io::stdin().lock()), None)
    } else {
        let f = File::open(local).map_err(|e| local_err("cannot open", local, e))?;
        let meta = f.metadata().map_err(|e| local_err("cannot stat", local, e))?;
        if meta.is_dir() {
            return Err(Failure::Local(format!("{} is a directory (push copies one file)", local.display())));
        }
        (Box::new(f), meta.is_file().then_some(meta.len()))
    };
    let mut prog = Progress::new(&format!("push {remote}"), size, force_progress);
    match upload(sess, &[], &mut reader, &remote, &mut prog) {
        Ok(_) => {
            prog.finish();
            Ok(0)
        }
        Err(f) => {
            prog.abandon();
            Err(f)
        }
    }
}

/// Best-effort size of an open remote file (seek to the end and back).
fn remote_size(sess: &mut Session, handle: i64) -> Result<Option<u64>> {
    let end = match sess.call("guest-file-seek", Some(json!({"handle": handle, "offset": 0, "whence": "end"}))) {
        Ok(v) => v.get("position").and_then(Value::as_u64),
        Err(Failure::Agent { .. }) => return Ok(None),
        Err(f) => return Err(f),
    };
    if end.is_some() {
        // Must succeed, or the reads would start at the end.
        sess.call("guest-file-seek", Some(json!({"handle": handle, "offset": 0, "whence": "set"})))?;
    }
    Ok(end)
}

pub fn pull(sess: &mut Session, remote: &str, local: &Path, force_progress: Option<bool>) -> Result<i32> {
    let to_stdout = local.as_os_str() == "-";
    let mut target: PathBuf = local.to_path_buf();
    if !to_stdout && local.is_dir() {
        let name = Path::new(remote)
            .file_name()
            .ok_or_else(|| Failure::Usage(format!("pull: cannot name a local file after '{remote}'")))?;
        target = local.join(name);
    }
    signals::install();
    let h = sess.call("guest-file-open", Some(json!({"path": remote, "mode": "rb"})))?;
    let handle = handle_of(&h, "guest-file-open")?;
    let mut part: Option<PathBuf> = None;
    let r = (|| -> Result<()> {
        let size = remote_size(sess, handle)?;
        let mut out: Box<dyn Write> = if to_stdout {
            Box::new(std::io::stdout().lock())
        } else {
            let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let tmp = dir.join(format!(".{name}.qgactl-{}.part", std::process::id()));
            let f = File::create(&tmp).map_err(|e| local_err("cannot create", &tmp, e))?;
            part = Some(tmp);
            Box::new(std::io::BufWriter::with_capacity(1 << 20, f))
        };
        let mut prog = Progress::new(&format!("pull {remote}"), size, force_progress);
        let r = (|| -> Result<()> {
            loop {
                check_interrupt()?;
                let v = sess.call("guest-file-read", Some(json!({"handle": handle, "count": CHUNK})))?;
                let count = v.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
                let b64 = v.get("buf-b64").and_then(Value::as_str).unwrap_or("");
                let data = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| Failure::Connection(format!("guest-file-read: bad base64 from the agent: {e}")))?;
                if data.len() != count {
                    return Err(Failure::Connection(format!(
                        "guest-file-read: the agent said {count} bytes but sent {}",
                        data.len()
                    )));
                }
                out.write_all(&data).map_err(|e| {
                    Failure::Local(format!("cannot write {}: {}", target.display(), strip_os_error(&e)))
                })?;
                prog.add(count as u64);
                let eof = v.get("eof").and_then(Value::as_bool).unwrap_or(false);
                if eof || count == 0 {
                    break;
                }
            }
            out.flush()
                .map_err(|e| Failure::Local(format!("cannot write {}: {}", target.display(), strip_os_error(&e))))?;
            Ok(())
        })();
        match &r {
            Ok(()) => prog.finish(),
            Err(_) => prog.abandon(),
        }
        r?;
        drop(out);
        sess.call("guest-file-close", Some(json!({"handle": handle})))?;
        if let Some(tmp) = part.take() {
            std::fs::rename(&tmp, &target).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                local_err("cannot rename the download to", &target, e)
            })?;
        }
        Ok(())
    })();
    if let Err(f) = &r {
        if let Some(tmp) = part.take() {
            let _ = std::fs::remove_file(tmp);
        }
        close_quietly(sess, handle, f);
    }
    r.map(|()| 0)
}
