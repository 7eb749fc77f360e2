//! guest-file-open/-close/-read/-write/-seek/-flush (`qga/commands-posix.c`,
//! `qga/commands.c`).
//!
//! Each handle is a C stdio stream (`fdopen()` on a non-blocking fd), so
//! buffering, `feof()`/`ferror()` and positions behave exactly as in
//! qemu-ga, including its read/write switching rules: a read after a write
//! flushes first, a write after a read does `fseek(fh, 0, SEEK_CUR)` first.
//!
//! Handles come from the persistent counter in `<statedir>/qga.state`
//! (`[global] fd_counter`, 1000 on a fresh install), which is rewritten
//! before the handle is returned, so handles are never reused across
//! restarts. They live as long as the agent (not tied to a client).
//!
//! Limit (qga only): at most [`MAX_OPEN_HANDLES`] handles are open at once.
//! One more guest-file-open fails, before anything is opened or created,
//! with the error qemu-ga gives when the process runs out of descriptors:
//! `failed to open file '<path>' (mode: '<mode>'): Too many open files`.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};

use super::reply::obj;
use super::Ctx;
use super::Outcome;
use crate::json::Value;
use crate::protocol::{Args, QgaError};
use crate::sys::fs::{self, oflag};
use crate::sys::stdio::{Stream, Whence as Origin};
use crate::sys::{fd, Errno};

/// Most handles open at the same time (see the module documentation).
pub const MAX_OPEN_HANDLES: usize = 1024;
/// QGA_READ_COUNT_DEFAULT.
pub const READ_COUNT_DEFAULT: i64 = 4096;
/// GUEST_FILE_READ_COUNT_MAX: 48 MiB, so that base64 fits in 64 MiB.
pub const READ_COUNT_MAX: i64 = 48 << 20;
/// QGA_PSTATE_DEFAULT_FD_COUNTER.
const DEFAULT_FD_COUNTER: i64 = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum RwState {
    New,
    Reading,
    Writing,
}

struct Handle {
    id: i64,
    fh: Stream,
    state: RwState,
}

/// The open guest-file handles. They live as long as the agent (part of
/// the guest state, not of a client).
#[derive(Default)]
pub struct Files {
    handles: Vec<Handle>,
    /// Next handle; loaded from the state file on first use.
    counter: Option<i64>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").field("open", &self.handles.len()).field("counter", &self.counter).finish()
    }
}

/// A C string as QEMU sees a JSON string (U+0000 as C0 80).
pub(crate) use crate::json::utf8::to_c_string as c_string;

/// The fopen() mode table of `guest_file_open_modes[]`.
fn open_flags(mode: &str) -> Option<i32> {
    use oflag::{O_APPEND, O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
    let base = match mode {
        "r" | "rb" => O_RDONLY,
        "w" | "wb" => O_WRONLY | O_CREAT | O_TRUNC,
        "a" | "ab" => O_WRONLY | O_CREAT | O_APPEND,
        "r+" | "rb+" | "r+b" => O_RDWR,
        "w+" | "wb+" | "w+b" => O_RDWR | O_CREAT | O_TRUNC,
        "a+" | "ab+" | "a+b" => O_RDWR | O_CREAT | O_APPEND,
        _ => return None,
    };
    Some(base | oflag::O_NOCTTY | oflag::O_NONBLOCK)
}

/// `safe_open_or_create()`: new files get mode 0666 whatever the umask.
fn safe_open_or_create(path: &str, mode: &str) -> Result<Stream, QgaError> {
    let Some(mut flags) = open_flags(mode) else {
        return Err(QgaError::generic(format!("invalid file open mode '{mode}'")));
    };
    let cpath = c_string(path);
    let excl = if flags & oflag::O_CREAT != 0 { oflag::O_EXCL } else { 0 };
    let opened = match fd::open(&cpath, flags | excl, 0) {
        Err(Errno::EEXIST) => {
            flags &= !oflag::O_CREAT;
            fd::open(&cpath, flags, 0)
        }
        other => other,
    };
    let file = opened.map_err(|e| QgaError::with_errno(format!("failed to open file '{path}' (mode: '{mode}')"), e))?;
    let created = flags & oflag::O_CREAT != 0;
    let raw = file.as_raw_fd();
    let chmod = if created { fs::fchmod(file.as_fd(), 0o666) } else { Ok(()) };
    let err = if let Err(e) = chmod {
        drop(file);
        QgaError::with_errno(format!("failed to set permission 0666 on new file '{path}' (mode: '{mode}')"), e)
    } else {
        let cmode = CString::new(mode).map_err(|_| QgaError::generic(format!("invalid file open mode '{mode}'")))?;
        match Stream::fdopen(file, &cmode) {
            Ok(f) => return Ok(f),
            Err(e) => QgaError::with_errno(
                format!("failed to associate stdio stream with file descriptor {raw}, file '{path}' (mode: '{mode}')"),
                e,
            ),
        }
    };
    // Remove what this call created (the descriptor is closed by now).
    if created {
        let _ = fs::unlink(&cpath);
    }
    Err(err)
}

fn state_path(ctx: &Ctx<'_>) -> String {
    let dir = ctx.cfg.statedir.as_deref().unwrap_or(crate::config::DEFAULT_STATEDIR);
    format!("{dir}/qga.state")
}

/// The `fd_counter` of a GKeyFile-style state file.
fn parse_counter(text: &str) -> Option<i64> {
    let mut in_global = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_global = line == "[global]";
        } else if in_global {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "fd_counter" {
                    return v.trim().parse().ok();
                }
            }
        }
    }
    None
}

/// `g_file_set_contents()`: a temporary file in the same directory,
/// renamed over the target.
pub(crate) fn write_file_atomic(path: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = format!("{path}.{}.tmp", std::process::id());
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// `ga_get_fd_handle()`: takes the counter, increments it and commits the
/// new value to disk before the handle may be used.
fn next_handle(path: &str, files: &mut Files) -> Result<i64, QgaError> {
    let counter = files.counter.get_or_insert_with(|| {
        std::fs::read_to_string(path).ok().and_then(|t| parse_counter(&t)).unwrap_or(DEFAULT_FD_COUNTER)
    });
    let handle = *counter;
    *counter += 1;
    let text = format!("[global]\nfd_counter={}\n", *counter);
    write_file_atomic(path, text.as_bytes())
        .map_err(|_| QgaError::generic("failed to commit persistent state to disk"))?;
    Ok(handle)
}

fn not_found(id: i64) -> QgaError {
    QgaError::generic(format!("handle '{id}' has not been found"))
}

/// Runs `f` on the handle `id`, or fails with qemu-ga's lookup error.
fn with_handle<T>(
    files: &mut Files,
    id: i64,
    f: impl FnOnce(&mut Handle) -> Result<T, QgaError>,
) -> Result<T, QgaError> {
    let h = files.handles.iter_mut().find(|h| h.id == id).ok_or_else(|| not_found(id))?;
    f(h)
}

pub fn open(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let path = a.req_str("path")?;
    let mode = a.opt_str("mode")?.unwrap_or_else(|| "r".to_string());
    a.finish()?;
    crate::log::info(&format!("guest-file-open called, filepath: {path}, mode: {mode}"));
    let open_count = ctx.guest.files.handles.len();
    if open_count >= MAX_OPEN_HANDLES && open_flags(&mode).is_some() {
        return Err(QgaError::with_errno(format!("failed to open file '{path}' (mode: '{mode}')"), Errno::EMFILE));
    }
    let fh = safe_open_or_create(&path, &mode)?;
    // On failure the stream is closed when `fh` drops.
    fd::set_nonblocking(fh.fd()).map_err(|e| QgaError::with_errno("Failed to set FD nonblocking", e))?;
    let path = state_path(ctx);
    let files = &mut ctx.guest.files;
    let handle = next_handle(&path, files)?;
    files.handles.push(Handle { id: handle, fh, state: RwState::New });
    crate::log::info(&format!("guest-file-open, handle: {handle}"));
    Ok(Outcome::Return(Value::Int(handle)))
}

pub fn close(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    a.finish()?;
    crate::log::info(&format!("guest-file-close called, handle: {id}"));
    let files = &mut ctx.guest.files;
    let i = files.handles.iter().position(|h| h.id == id).ok_or_else(|| not_found(id))?;
    let h = files.handles.remove(i);
    // fclose() frees the stream even when it fails, so the handle goes
    // either way (qemu-ga keeps a dangling entry on failure: not copied).
    h.fh.close().map_err(|e| QgaError::with_errno("failed to close handle", e))?;
    Ok(Outcome::Return(Value::empty_object()))
}

pub fn read(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    let count = a.opt_int("count")?;
    a.finish()?;
    // The reply counts against the output held for clients until it is
    // sent (exec::MAX_OUTPUT_HELD): a read that could not fit is refused.
    let room = ctx.procs.output_room();
    with_handle(&mut ctx.guest.files, id, |h| {
        let count = match count {
            None => READ_COUNT_DEFAULT,
            Some(c) if (0..=READ_COUNT_MAX).contains(&c) => c,
            Some(c) => return Err(QgaError::generic(format!("value '{c}' is invalid for argument count"))),
        };
        if count as usize > room {
            return Err(QgaError::generic(format!(
                "Not enough memory to read {count} bytes: output held for clients is at its limit ({} MiB)",
                crate::exec::MAX_OUTPUT_HELD >> 20
            )));
        }
        if h.state == RwState::Writing {
            h.fh.flush().map_err(|e| QgaError::with_errno("failed to flush file", e))?;
            h.state = RwState::New;
        }
        // Read straight into the buffer the reply encodes from, not zeroed
        // first and its pages mapped in one call (`fread()` as in
        // qmp_guest_file_read()).
        let mut buf = Vec::new();
        match h.fh.read_append(&mut buf, count as usize) {
            Err(e) => {
                crate::log::info(&format!("guest-file-read failed, handle: {id}"));
                Err(QgaError::with_errno("failed to read file", e))
            }
            Ok((n, eof)) => {
                if buf.capacity() - n >= crate::exec::SHRINK_SLACK {
                    buf.shrink_to_fit();
                }
                h.state = RwState::Reading;
                let data = if n == 0 { Value::str("") } else { Value::base64(buf) };
                Ok(Outcome::Return(obj(vec![
                    ("count", Value::Int(n as i64)),
                    ("buf-b64", data),
                    ("eof", Value::Bool(eof)),
                ])))
            }
        }
    })
}

pub fn write(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    let b64 = a.req_base64("buf-b64")?;
    let count = a.opt_int("count")?;
    a.finish()?;
    with_handle(&mut ctx.guest.files, id, |h| {
        if h.state == RwState::Reading {
            h.fh.seek_cur0().map_err(|e| QgaError::with_errno("failed to seek file", e))?;
            h.state = RwState::New;
        }
        let buf = b64.decode()?;
        let count = match count {
            None => buf.len() as i64,
            Some(c) if c >= 0 && c <= buf.len() as i64 => c,
            Some(c) => return Err(QgaError::generic(format!("value '{c}' is invalid for argument count"))),
        };
        match h.fh.write(&buf[..count as usize]) {
            Err(e) => {
                crate::log::info(&format!("guest-file-write failed, handle: {id}"));
                Err(QgaError::with_errno("failed to write to file", e))
            }
            Ok((n, eof)) => {
                h.state = RwState::Writing;
                // fwrite's count goes through a C int in qemu-ga.
                Ok(Outcome::Return(obj(vec![("count", Value::Int(n as i32 as i64)), ("eof", Value::Bool(eof))])))
            }
        }
    })
}

/// The `GuestFileWhence` alternate: an integer code or a QGASeek name.
enum Whence {
    Code(i64),
}

fn parse_whence(v: Value) -> Result<Whence, QgaError> {
    const NAME: &str = "whence";
    match v {
        Value::Str(s) => match s.as_str() {
            "set" => Ok(Whence::Code(0)),
            "cur" => Ok(Whence::Code(1)),
            "end" => Ok(Whence::Code(2)),
            _ => Err(QgaError::bad_enum_value(NAME, &s)),
        },
        v @ (Value::Int(_) | Value::UInt(_) | Value::Float(_)) => {
            v.as_i64().map(Whence::Code).ok_or_else(|| QgaError::invalid_type(NAME, "integer"))
        }
        _ => Err(QgaError::invalid_type(NAME, "GuestFileWhence")),
    }
}

pub fn seek(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    let offset = a.req_int("offset")?;
    let whence = parse_whence(a.req_value("whence")?)?;
    a.finish()?;
    with_handle(&mut ctx.guest.files, id, |h| {
        let Whence::Code(code) = whence;
        let whence = match code {
            0 => Origin::Set,
            1 => Origin::Cur,
            2 => Origin::End,
            n => return Err(QgaError::generic(format!("invalid whence code {n}"))),
        };
        match h.fh.seek(offset, whence) {
            Err(e) => {
                if e == Errno::ESPIPE {
                    // Not seekable: stdio does not buffer it anyway.
                    h.state = RwState::New;
                }
                Err(QgaError::with_errno("failed to seek file", e))
            }
            Ok((pos, eof)) => {
                h.state = RwState::New;
                Ok(Outcome::Return(obj(vec![("position", Value::Int(pos)), ("eof", Value::Bool(eof))])))
            }
        }
    })
}

pub fn flush(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    a.finish()?;
    with_handle(&mut ctx.guest.files, id, |h| {
        h.fh.flush().map_err(|e| QgaError::with_errno("failed to flush file", e))?;
        h.state = RwState::New;
        Ok(Outcome::Return(Value::empty_object()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_counter() {
        assert!(open_flags("r").is_some());
        assert!(open_flags("a+b").is_some());
        assert!(open_flags("rw").is_none());
        assert!(open_flags("").is_none());
        assert_eq!(parse_counter("[global]\nfd_counter=1234\n"), Some(1234));
        assert_eq!(parse_counter("[other]\nfd_counter=1\n"), None);
        assert_eq!(c_string("a\0b").as_bytes(), b"a\xC0\x80b");
    }
}
