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

use std::cell::RefCell;
use std::ffi::CString;
use std::io::Write;

use super::Outcome;
use super::Ctx;
use crate::json::{Object, Value};
use crate::protocol::{qbase64_decode, Args, QgaError};

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
    fh: *mut libc::FILE,
    state: RwState,
}

#[derive(Default)]
struct Files {
    handles: Vec<Handle>,
    /// Next handle; loaded from the state file on first use.
    counter: Option<i64>,
}

thread_local! {
    static FILES: RefCell<Files> = RefCell::new(Files::default());
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// A C string as QEMU sees a JSON string: an embedded NUL (`\u0000`) is
/// the modified-UTF-8 pair C0 80.
pub(crate) fn c_string(s: &str) -> CString {
    let mut bytes = Vec::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b == 0 {
            bytes.extend_from_slice(&[0xC0, 0x80]);
        } else {
            bytes.push(b);
        }
    }
    CString::new(bytes).expect("no NUL left")
}

/// The fopen() mode table of `guest_file_open_modes[]`.
fn open_flags(mode: &str) -> Option<libc::c_int> {
    use libc::{O_APPEND, O_CREAT, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
    let base = match mode {
        "r" | "rb" => O_RDONLY,
        "w" | "wb" => O_WRONLY | O_CREAT | O_TRUNC,
        "a" | "ab" => O_WRONLY | O_CREAT | O_APPEND,
        "r+" | "rb+" | "r+b" => O_RDWR,
        "w+" | "wb+" | "w+b" => O_RDWR | O_CREAT | O_TRUNC,
        "a+" | "ab+" | "a+b" => O_RDWR | O_CREAT | O_APPEND,
        _ => return None,
    };
    Some(base | libc::O_NOCTTY | libc::O_NONBLOCK)
}

/// `safe_open_or_create()`: new files get mode 0666 whatever the umask.
fn safe_open_or_create(path: &str, mode: &str) -> Result<*mut libc::FILE, QgaError> {
    let Some(mut oflag) = open_flags(mode) else {
        return Err(QgaError::generic(format!("invalid file open mode '{mode}'")));
    };
    let cpath = c_string(path);
    let excl = if oflag & libc::O_CREAT != 0 { libc::O_EXCL } else { 0 };
    // SAFETY: open() on a NUL-terminated path.
    let mut fd = unsafe { libc::open(cpath.as_ptr(), oflag | excl | libc::O_CLOEXEC, 0) };
    if fd == -1 && errno() == libc::EEXIST {
        oflag &= !libc::O_CREAT;
        // SAFETY: as above.
        fd = unsafe { libc::open(cpath.as_ptr(), oflag | libc::O_CLOEXEC) };
    }
    if fd == -1 {
        return Err(QgaError::with_errno(format!("failed to open file '{path}' (mode: '{mode}')"), errno()));
    }
    let created = oflag & libc::O_CREAT != 0;
    // SAFETY: fchmod on the fd we just opened.
    let err = if created && unsafe { libc::fchmod(fd, 0o666) } == -1 {
        QgaError::with_errno(format!("failed to set permission 0666 on new file '{path}' (mode: '{mode}')"), errno())
    } else {
        let cmode = CString::new(mode).expect("validated mode");
        // SAFETY: fdopen on our fd with a valid fopen mode.
        let f = unsafe { libc::fdopen(fd, cmode.as_ptr()) };
        if !f.is_null() {
            return Ok(f);
        }
        QgaError::with_errno(
            format!("failed to associate stdio stream with file descriptor {fd}, file '{path}' (mode: '{mode}')"),
            errno(),
        )
    };
    // SAFETY: closing (and removing) what this call opened (created).
    unsafe {
        libc::close(fd);
        if created {
            libc::unlink(cpath.as_ptr());
        }
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
fn next_handle(ctx: &Ctx<'_>, files: &mut Files) -> Result<i64, QgaError> {
    let path = state_path(ctx);
    let counter = files.counter.get_or_insert_with(|| {
        std::fs::read_to_string(&path).ok().and_then(|t| parse_counter(&t)).unwrap_or(DEFAULT_FD_COUNTER)
    });
    let handle = *counter;
    *counter += 1;
    let text = format!("[global]\nfd_counter={}\n", *counter);
    write_file_atomic(&path, text.as_bytes())
        .map_err(|_| QgaError::generic("failed to commit persistent state to disk"))?;
    Ok(handle)
}

fn not_found(id: i64) -> QgaError {
    QgaError::generic(format!("handle '{id}' has not been found"))
}

/// Runs `f` on the handle `id`, or fails with qemu-ga's lookup error.
fn with_handle<T>(id: i64, f: impl FnOnce(&mut Handle) -> Result<T, QgaError>) -> Result<T, QgaError> {
    FILES.with(|files| {
        let mut files = files.borrow_mut();
        let h = files.handles.iter_mut().find(|h| h.id == id).ok_or_else(|| not_found(id))?;
        f(h)
    })
}

fn object(members: Vec<(&str, Value)>) -> Value {
    let mut o = Object::with_capacity(members.len());
    for (k, v) in members {
        o.push(k, v);
    }
    Value::Object(o)
}

pub fn open(ctx: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let path = a.req_str("path")?;
    let mode = a.opt_str("mode")?.unwrap_or_else(|| "r".to_string());
    a.finish()?;
    crate::log::info(&format!("guest-file-open called, filepath: {path}, mode: {mode}"));
    let open_count = FILES.with(|f| f.borrow().handles.len());
    if open_count >= MAX_OPEN_HANDLES && open_flags(&mode).is_some() {
        return Err(QgaError::with_errno(format!("failed to open file '{path}' (mode: '{mode}')"), libc::EMFILE));
    }
    let fh = safe_open_or_create(&path, &mode)?;
    // SAFETY: fh is a valid stream; fileno/fcntl only adjust its fd.
    unsafe {
        let fd = libc::fileno(fh);
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl == -1 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) == -1 {
            let e = errno();
            libc::fclose(fh);
            return Err(QgaError::with_errno("Failed to set FD nonblocking", e));
        }
    }
    let handle = FILES.with(|files| {
        let mut files = files.borrow_mut();
        let h = next_handle(ctx, &mut files)?;
        files.handles.push(Handle { id: h, fh, state: RwState::New });
        Ok(h)
    });
    match handle {
        Ok(h) => {
            crate::log::info(&format!("guest-file-open, handle: {h}"));
            Ok(Outcome::Return(Value::Int(h)))
        }
        Err(e) => {
            // SAFETY: the stream was never registered.
            unsafe { libc::fclose(fh) };
            Err(e)
        }
    }
}

pub fn close(_: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    a.finish()?;
    crate::log::info(&format!("guest-file-close called, handle: {id}"));
    let h = FILES.with(|files| {
        let mut files = files.borrow_mut();
        let i = files.handles.iter().position(|h| h.id == id).ok_or_else(|| not_found(id))?;
        Ok(files.handles.remove(i))
    })?;
    // fclose() frees the stream even when it fails, so the handle goes
    // either way (qemu-ga keeps a dangling entry on failure: not copied).
    // SAFETY: the stream is ours and no longer reachable.
    if unsafe { libc::fclose(h.fh) } == libc::EOF {
        return Err(QgaError::with_errno("failed to close handle", errno()));
    }
    Ok(Outcome::Return(Value::empty_object()))
}

pub fn read(_: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    let count = a.opt_int("count")?;
    a.finish()?;
    with_handle(id, |h| {
        let count = match count {
            None => READ_COUNT_DEFAULT,
            Some(c) if (0..=READ_COUNT_MAX).contains(&c) => c,
            Some(c) => return Err(QgaError::generic(format!("value '{c}' is invalid for argument count"))),
        };
        let fh = h.fh;
        // SAFETY (whole block): fh is a live stream owned by this table;
        // buf has room for `count` bytes.
        unsafe {
            if h.state == RwState::Writing {
                if libc::fflush(fh) == libc::EOF {
                    return Err(QgaError::with_errno("failed to flush file", errno()));
                }
                h.state = RwState::New;
            }
            let mut buf = vec![0u8; count as usize];
            let n = libc::fread(buf.as_mut_ptr().cast(), 1, buf.len(), fh);
            let result = if libc::ferror(fh) != 0 {
                let e = errno();
                crate::log::info(&format!("guest-file-read failed, handle: {id}"));
                Err(QgaError::with_errno("failed to read file", e))
            } else {
                buf.truncate(n);
                let eof = libc::feof(fh) != 0;
                h.state = RwState::Reading;
                let data = if n == 0 { Value::str("") } else { Value::Base64(buf) };
                Ok(Outcome::Return(object(vec![
                    ("count", Value::Int(n as i64)),
                    ("buf-b64", data),
                    ("eof", Value::Bool(eof)),
                ])))
            };
            libc::clearerr(fh);
            result
        }
    })
}

pub fn write(_: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    let b64 = a.req_str("buf-b64")?;
    let count = a.opt_int("count")?;
    a.finish()?;
    with_handle(id, |h| {
        let fh = h.fh;
        // SAFETY (whole block): fh is a live stream owned by this table.
        unsafe {
            if h.state == RwState::Reading {
                if libc::fseek(fh, 0, libc::SEEK_CUR) == -1 {
                    return Err(QgaError::with_errno("failed to seek file", errno()));
                }
                h.state = RwState::New;
            }
            let buf = qbase64_decode(&b64)?;
            let count = match count {
                None => buf.len() as i64,
                Some(c) if c >= 0 && c <= buf.len() as i64 => c,
                Some(c) => return Err(QgaError::generic(format!("value '{c}' is invalid for argument count"))),
            };
            let n = libc::fwrite(buf.as_ptr().cast(), 1, count as usize, fh);
            let result = if libc::ferror(fh) != 0 {
                let e = errno();
                crate::log::info(&format!("guest-file-write failed, handle: {id}"));
                Err(QgaError::with_errno("failed to write to file", e))
            } else {
                let eof = libc::feof(fh) != 0;
                h.state = RwState::Writing;
                // fwrite's count goes through a C int in qemu-ga.
                Ok(Outcome::Return(object(vec![
                    ("count", Value::Int(n as i32 as i64)),
                    ("eof", Value::Bool(eof)),
                ])))
            };
            libc::clearerr(fh);
            result
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

pub fn seek(_: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    let offset = a.req_int("offset")?;
    let whence = parse_whence(a.req_value("whence")?)?;
    a.finish()?;
    with_handle(id, |h| {
        let Whence::Code(code) = whence;
        let whence = match code {
            0 => libc::SEEK_SET,
            1 => libc::SEEK_CUR,
            2 => libc::SEEK_END,
            n => return Err(QgaError::generic(format!("invalid whence code {n}"))),
        };
        let fh = h.fh;
        // SAFETY (whole block): fh is a live stream owned by this table.
        unsafe {
            let result = if libc::fseeko(fh, offset as libc::off_t, whence) == -1 {
                let e = errno();
                if e == libc::ESPIPE {
                    // Not seekable: stdio does not buffer it anyway.
                    h.state = RwState::New;
                }
                Err(QgaError::with_errno("failed to seek file", e))
            } else {
                let pos = libc::ftello(fh);
                let eof = libc::feof(fh) != 0;
                h.state = RwState::New;
                Ok(Outcome::Return(object(vec![
                    ("position", Value::Int(pos)),
                    ("eof", Value::Bool(eof)),
                ])))
            };
            libc::clearerr(fh);
            result
        }
    })
}

pub fn flush(_: &mut Ctx<'_>, mut a: Args) -> Result<Outcome, QgaError> {
    let id = a.req_int("handle")?;
    a.finish()?;
    with_handle(id, |h| {
        // SAFETY: fh is a live stream owned by this table.
        if unsafe { libc::fflush(h.fh) } == libc::EOF {
            return Err(QgaError::with_errno("failed to flush file", errno()));
        }
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
