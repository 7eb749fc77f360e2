//! push / pull through guest-file-open/read/write/close.
//!
//! Several chunks are in flight at once: the protocol lets a client send
//! requests before the earlier replies arrived and the agent answers them
//! in order, so while the agent decodes and writes one chunk (push) or
//! reads and encodes one (pull), the next request is already waiting in its
//! channel, and qgactl encodes or decodes on the host meanwhile.

use std::collections::VecDeque;
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

/// Bytes per guest-file-read/write by default (≈5.6 MB of base64 per
/// message: under libvirt's 10 MiB reply cap, QEMU's 64 MiB message limit
/// and guest-file-read's 48 MiB cap).
pub const CHUNK: usize = 4 << 20;
/// guest-file-read's largest count (GUEST_FILE_READ_COUNT_MAX).
pub const CHUNK_MAX: usize = 48 << 20;
/// Requests in flight at once by default.
pub const IN_FLIGHT: usize = 3;
/// The most `--in-flight` accepts.
pub const IN_FLIGHT_MAX: usize = 64;
/// A guest-file-read reply's bytes besides the base64 text (the members,
/// a large count, an id), rounded up.
pub const REPLY_OVERHEAD: usize = 256;
/// The smallest `--max-reply-bytes` (one 3 KiB chunk per reply).
pub const MAX_REPLY_MIN: usize = REPLY_OVERHEAD + 4096;

/// How push and pull move the data: the command line's transfer options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    /// `--progress` / `--no-progress`; None: when stderr is a terminal.
    pub progress: Option<bool>,
    /// `--max-reply-bytes`: chunks small enough that no reply (and no
    /// request) is larger, e.g. 10485760 for libvirt's reply cap.
    pub max_reply_bytes: Option<usize>,
    /// `--in-flight`: requests sent before the first reply is awaited.
    pub in_flight: usize,
}

impl Default for Transfer {
    fn default() -> Transfer {
        Transfer { progress: None, max_reply_bytes: None, in_flight: IN_FLIGHT }
    }
}

impl Transfer {
    /// Bytes of file data per request: [`CHUNK`], or less so that the
    /// base64 of a chunk plus [`REPLY_OVERHEAD`] fits in `max_reply_bytes`.
    pub fn chunk(&self) -> usize {
        match self.max_reply_bytes {
            None => CHUNK,
            Some(max) => (max.saturating_sub(REPLY_OVERHEAD) / 4 * 3).clamp(3, CHUNK_MAX),
        }
    }

    fn depth(&self) -> usize {
        self.in_flight.clamp(1, IN_FLIGHT_MAX)
    }
}

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

/// After a failure: reads the `owed` replies to `command` still to come,
/// whatever they say, while the session is usable (the failure was not the
/// connection's). Whether it still is, so that the handle can be closed.
fn drain_quietly(sess: &mut Session, command: &str, owed: usize, why: &Failure) -> bool {
    if !matches!(why, Failure::Agent { .. } | Failure::Local(_) | Failure::Interrupted(_)) {
        return false;
    }
    for _ in 0..owed {
        if let Err(f) = sess.reply(command) {
            if !matches!(f, Failure::Agent { .. }) {
                return false;
            }
        }
    }
    true
}

/// Ctrl-C (SIGINT/SIGTERM/SIGHUP) stops a transfer between chunks.
fn check_interrupt() -> Result<()> {
    if signals::interrupted() {
        return Err(Failure::Interrupted("interrupted".to_string()));
    }
    Ok(())
}

/// Opens `remote` for writing ("wb") and writes `head` then the rest of
/// `reader` into it, with the default [`Transfer`] options. Returns the
/// number of bytes written. Signals are caught meanwhile and stop the
/// transfer between chunks.
pub fn upload(
    sess: &mut Session,
    head: &[u8],
    reader: &mut dyn Read,
    remote: &str,
    prog: &mut Progress,
) -> Result<u64> {
    upload_with(sess, head, reader, remote, prog, &Transfer::default())
}

/// [`upload`] with the given transfer options: up to `in_flight`
/// guest-file-write requests are sent before their replies are read.
pub fn upload_with(
    sess: &mut Session,
    head: &[u8],
    reader: &mut dyn Read,
    remote: &str,
    prog: &mut Progress,
    opts: &Transfer,
) -> Result<u64> {
    signals::install();
    let h = sess.call("guest-file-open", Some(json!({"path": remote, "mode": "wb"})))?;
    let handle = handle_of(&h, "guest-file-open")?;
    let mut writes = Writes { handle, pending: VecDeque::new(), depth: opts.depth(), written: 0 };
    let r = (|| -> Result<u64> {
        let chunk = opts.chunk();
        for piece in head.chunks(chunk) {
            check_interrupt()?;
            writes.send(sess, piece, prog)?;
        }
        let mut buf = vec![0u8; chunk];
        loop {
            let n = read_full(reader, &mut buf)
                .map_err(|e| Failure::Local(format!("cannot read input: {}", strip_os_error(&e))))?;
            if n == 0 {
                break;
            }
            check_interrupt()?;
            writes.send(sess, &buf[..n], prog)?;
        }
        writes.finish(sess, prog)?;
        sess.call("guest-file-close", Some(json!({"handle": handle})))?;
        Ok(writes.written)
    })();
    if let Err(f) = &r {
        // The replies still owed come before the close's.
        if writes.drain_quietly(sess, f) {
            close_quietly(sess, handle, f);
        }
    }
    r
}

/// guest-file-write requests in flight on one handle, oldest first.
struct Writes {
    handle: i64,
    /// The byte count of each request whose reply has not been read.
    pending: VecDeque<usize>,
    depth: usize,
    /// Bytes the agent confirmed.
    written: u64,
}

impl Writes {
    /// Sends one chunk; first reads replies until fewer than `depth`
    /// requests are in flight.
    fn send(&mut self, sess: &mut Session, data: &[u8], prog: &mut Progress) -> Result<()> {
        while self.pending.len() >= self.depth {
            self.take_reply(sess, prog)?;
        }
        sess.send_with_base64("guest-file-write", json!({"handle": self.handle}), "buf-b64", data)?;
        self.pending.push_back(data.len());
        Ok(())
    }

    /// Reads the oldest reply. The agent writes a chunk whole or fails
    /// (`fwrite()` stops short only on an error, which is then its reply),
    /// so a short count means the file and the stream no longer line up:
    /// the chunks after it were written at the wrong offset.
    fn take_reply(&mut self, sess: &mut Session, prog: &mut Progress) -> Result<()> {
        let Some(sent) = self.pending.pop_front() else { return Ok(()) };
        let v = sess.reply("guest-file-write")?;
        let count = v.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
        if count != sent {
            return Err(Failure::agent(
                "guest-file-write",
                "GenericError",
                &format!("the agent wrote {count} of {sent} bytes (disk full?)"),
            ));
        }
        self.written += count as u64;
        prog.add(count as u64);
        Ok(())
    }

    /// Reads every reply still owed.
    fn finish(&mut self, sess: &mut Session, prog: &mut Progress) -> Result<()> {
        while !self.pending.is_empty() {
            self.take_reply(sess, prog)?;
        }
        Ok(())
    }

    /// After a failure: see [`drain_quietly`].
    fn drain_quietly(&mut self, sess: &mut Session, why: &Failure) -> bool {
        let owed = std::mem::take(&mut self.pending).len();
        drain_quietly(sess, "guest-file-write", owed, why)
    }
}

pub fn push(sess: &mut Session, local: &Path, remote: &str, opts: &Transfer) -> Result<i32> {
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
    let mut prog = Progress::new(&format!("push {remote}"), size, opts.progress);
    match upload_with(sess, &[], &mut reader, &remote, &mut prog, opts) {
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

pub fn pull(sess: &mut Session, remote: &str, local: &Path, opts: &Transfer) -> Result<i32> {
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
    let mut reads = Reads { handle, chunk: opts.chunk(), depth: opts.depth(), pending: 0, done: false };
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
            Box::new(f)
        };
        let mut prog = Progress::new(&format!("pull {remote}"), size, opts.progress);
        let r = (|| -> Result<()> {
            let mut data = Vec::new();
            while !reads.done {
                check_interrupt()?;
                reads.fill(sess)?;
                reads.take_reply(sess, &mut data)?;
                out.write_all(&data).map_err(|e| {
                    Failure::Local(format!("cannot write {}: {}", target.display(), strip_os_error(&e)))
                })?;
                prog.add(data.len() as u64);
            }
            reads.drain(sess)?;
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
        if reads.drain_quietly(sess, f) {
            close_quietly(sess, handle, f);
        }
    }
    r.map(|()| 0)
}

/// guest-file-read requests in flight on one handle. Reads are sent ahead
/// until one reply says the end of the file was reached; the ones sent
/// after it get `count` 0 and are read and dropped.
struct Reads {
    handle: i64,
    chunk: usize,
    depth: usize,
    /// Requests whose reply has not been read.
    pending: usize,
    /// A reply said `eof` (or returned nothing): no more requests.
    done: bool,
}

impl Reads {
    /// Sends reads until `depth` are in flight.
    fn fill(&mut self, sess: &mut Session) -> Result<()> {
        while !self.done && self.pending < self.depth {
            sess.send("guest-file-read", Some(json!({"handle": self.handle, "count": self.chunk})))?;
            self.pending += 1;
        }
        Ok(())
    }

    /// Reads the oldest reply's bytes into `data` (replacing its contents).
    fn take_reply(&mut self, sess: &mut Session, data: &mut Vec<u8>) -> Result<()> {
        self.pending -= 1;
        let v = sess.reply("guest-file-read")?;
        let count = v.get("count").and_then(Value::as_u64).unwrap_or(0) as usize;
        let b64 = v.get("buf-b64").and_then(Value::as_str).unwrap_or("");
        data.clear();
        base64::engine::general_purpose::STANDARD
            .decode_vec(b64, data)
            .map_err(|e| Failure::Connection(format!("guest-file-read: bad base64 from the agent: {e}")))?;
        if data.len() != count {
            return Err(Failure::Connection(format!(
                "guest-file-read: the agent said {count} bytes but sent {}",
                data.len()
            )));
        }
        if v.get("eof").and_then(Value::as_bool).unwrap_or(false) || count == 0 {
            self.done = true;
        }
        Ok(())
    }

    /// Reads the replies to the reads sent past the end of the file.
    fn drain(&mut self, sess: &mut Session) -> Result<()> {
        while self.pending > 0 {
            self.pending -= 1;
            sess.reply("guest-file-read")?;
        }
        Ok(())
    }

    /// After a failure: see [`drain_quietly`].
    fn drain_quietly(&mut self, sess: &mut Session, why: &Failure) -> bool {
        drain_quietly(sess, "guest-file-read", std::mem::take(&mut self.pending), why)
    }
}
