//! Transport (unix socket, vsock, hybrid vsock) and the QGA session:
//! connect, resynchronise with 0xFF + guest-sync-delimited, then strictly
//! ordered request/reply lines. Every wait has a deadline; the socket is
//! non-blocking and all waiting happens in poll(2), which also watches the
//! signal self-pipe when the caller asks for it.

use std::fmt;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fail::{Failure, Result};
use crate::signals;
use crate::sys::{self, PollFd, POLLIN, POLLOUT};

/// Where the agent is.
#[derive(Debug, Clone)]
pub enum Target {
    /// QEMU's chardev socket for the agent port, or qga's unix-listen socket.
    Unix(PathBuf),
    /// AF_VSOCK to CID:PORT.
    Vsock { cid: u32, port: u32 },
    /// A user-space vsock backend's unix socket (Firecracker, Cloud
    /// Hypervisor): `CONNECT <port>\n` → `OK <n>\n`, then the stream.
    Hybrid { path: PathBuf, port: u32 },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Vsock { cid, port } => write!(f, "vsock {cid}:{port}"),
            Target::Hybrid { path, port } => write!(f, "{} (hybrid vsock port {port})", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
}

/// What a wait in [`Session::next_event`] ended with.
pub enum Event {
    /// One reply line (without the newline; 0xFF bytes stripped).
    Line(Vec<u8>),
    /// A signal is pending (see [`signals::take`]).
    Signal,
    /// The caller's wake-up time passed.
    Wake,
    /// The caller's extra descriptor (`watch`) is readable.
    Watch,
}

/// A decoded reply.
pub enum Reply {
    Return(Value),
    Error { class: String, desc: String },
}

pub struct Session {
    fd: OwnedFd,
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`.
    pos: usize,
    /// Bytes before this index (from `pos`) hold no newline.
    scanned: usize,
    pub reply_timeout: Duration,
    pub target: Target,
    /// The id that the session's guest-sync-delimited echoed.
    pub sync_id: i64,
}

const READ_CHUNK: usize = 1 << 20;
/// Longest pause between two connection attempts.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(100);

fn strerror(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string().split(" (os error").next().unwrap_or_default().to_string()
}

fn ms_until(t: Instant) -> i32 {
    let now = Instant::now();
    if t <= now {
        0
    } else {
        // Round up so that we do not spin just before the deadline.
        (t.duration_since(now).as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
    }
}

/// A random sync id in 0..2^53 (exact in every JSON implementation).
pub fn random_id() -> i64 {
    let mut b = [0u8; 8];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok();
    let mut v = u64::from_le_bytes(b);
    if !ok {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        v = (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 32);
    }
    (v & ((1u64 << 53) - 1)) as i64
}

/// Random lowercase hex, for names of staging files in the guest.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        let seed = random_id() as u64;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed.rotate_left(i as u32 * 7) ^ (i as u64 * 0x9E37_79B9)) as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn wait_fd(fd: RawFd, events: sys::Events, deadline: Instant) -> bool {
    loop {
        match sys::poll(&mut [PollFd::new(fd, events)], ms_until(deadline)) {
            Ok(r) if r > 0 => return true,
            Ok(_) => return false,
            Err(sys::EINTR) => continue,
            Err(_) => return Instant::now() < deadline,
        }
    }
}

/// Whether `fd` is readable right now (non-blocking poll).
fn readable(fd: RawFd) -> bool {
    sys::poll(&mut [PollFd::new(fd, POLLIN)], 0).is_ok_and(|r| r > 0)
}

fn connect_unix(path: &PathBuf) -> std::result::Result<OwnedFd, String> {
    match UnixStream::connect(path) {
        Ok(s) => {
            let fd: OwnedFd = s.into();
            sys::set_nonblocking(fd.as_fd());
            Ok(fd)
        }
        Err(e) => Err(match e.kind() {
            ErrorKind::NotFound => "no such socket".to_string(),
            ErrorKind::ConnectionRefused => "connection refused (nobody is listening on the socket)".to_string(),
            _ => strerror(e.raw_os_error().unwrap_or(sys::EIO)),
        }),
    }
}

fn connect_vsock(cid: u32, port: u32, deadline: Instant) -> std::result::Result<OwnedFd, String> {
    let fd = sys::vsock_socket().map_err(|e| {
        if sys::is_no_vsock(e) {
            "vsock is not available on this host (load the vhost_vsock / vsock_loopback module)".to_string()
        } else {
            strerror(e)
        }
    })?;
    if let Err(e) = sys::connect_vsock(fd.as_fd(), cid, port) {
        if !sys::is_in_progress(e) {
            return Err(strerror(e));
        }
        if !wait_fd(fd.as_raw_fd(), POLLOUT, deadline) {
            return Err("connection timed out".to_string());
        }
        let err = sys::socket_error(fd.as_fd());
        if err != 0 {
            return Err(strerror(err));
        }
    }
    Ok(fd)
}

impl Session {
    fn new(fd: OwnedFd, opts: &Options) -> Session {
        Session {
            fd,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            reply_timeout: opts.reply_timeout,
            target: opts.target.clone(),
            sync_id: 0,
        }
    }

    /// Connects and synchronises, retrying both until `connect_timeout`.
    pub fn open(opts: &Options) -> Result<Session> {
        let start = Instant::now();
        let deadline = start + opts.connect_timeout;
        let mut last_err;
        loop {
            match Self::connect(opts, deadline) {
                Err(e) => last_err = e,
                Ok(mut s) => match s.sync(deadline) {
                    Ok(()) => return Ok(s),
                    Err(SyncError::Timeout) => {
                        return Err(Failure::Connection(format!(
                            "{}: the agent did not answer guest-sync-delimited within {} (is the agent running? a unix-listen agent serves one client at a time)",
                            opts.target,
                            secs(opts.connect_timeout)
                        )))
                    }
                    Err(SyncError::Closed(e)) => last_err = e,
                },
            }
            if Instant::now() >= deadline {
                let hint = match &opts.target {
                    Target::Unix(_) => " (is the agent running? set --socket or QGA_SOCKET)",
                    _ => "",
                };
                return Err(Failure::Connection(format!("cannot connect to {}: {last_err}{hint}", opts.target)));
            }
            // An agent that is starting answers within milliseconds: retry
            // after a tenth of the time waited so far (1 ms at first, at most
            // CONNECT_RETRY_MAX), so the wait overshoots by about 10 %.
            let pause = (start.elapsed() / 10).clamp(Duration::from_millis(1), CONNECT_RETRY_MAX);
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    fn connect(opts: &Options, deadline: Instant) -> std::result::Result<Session, String> {
        match &opts.target {
            Target::Unix(p) => connect_unix(p).map(|fd| Session::new(fd, opts)),
            Target::Vsock { cid, port } => connect_vsock(*cid, *port, deadline).map(|fd| Session::new(fd, opts)),
            Target::Hybrid { path, port } => {
                let mut s = Session::new(connect_unix(path)?, opts);
                s.write_all(format!("CONNECT {port}\n").as_bytes(), deadline).map_err(|f| f.to_string())?;
                let mut dl = deadline;
                loop {
                    if let Some(line) = s.take_line() {
                        let text = String::from_utf8_lossy(&line);
                        if text.starts_with("OK") {
                            return Ok(s);
                        }
                        return Err(format!("hybrid vsock handshake failed: the backend answered '{}'", text.trim()));
                    }
                    match s.fill(&mut dl, None, false) {
                        Ok(_) => {}
                        Err(FillError::Closed) => {
                            return Err(format!("hybrid vsock handshake failed: the backend closed the connection (nothing listening on port {port}?)"))
                        }
                        Err(FillError::Timeout) => return Err("hybrid vsock handshake failed: no answer to CONNECT".to_string()),
                        Err(FillError::Other(m)) => return Err(format!("hybrid vsock handshake failed: {m}")),
                    }
                }
            }
        }
    }

    /// 0xFF + guest-sync-delimited with a random id; everything up to the
    /// 0xFF that precedes the matching reply is discarded (stale replies,
    /// qemu-ga's parse error for our 0xFF). Resent with a new id, with
    /// growing intervals, until `deadline`.
    fn sync(&mut self, deadline: Instant) -> std::result::Result<(), SyncError> {
        let mut per_try = Duration::from_millis(500);
        loop {
            let id = random_id();
            let mut msg = vec![0xFFu8];
            msg.extend(
                serde_json::to_vec(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))
                    .unwrap_or_default(),
            );
            msg.push(b'\n');
            self.write_all(&msg, deadline).map_err(|f| SyncError::Closed(f.to_string()))?;
            let try_deadline = (Instant::now() + per_try).min(deadline);
            let mut dl = deadline;
            let mut seeking = true;
            loop {
                if seeking {
                    match self.buf[self.pos..].iter().position(|&b| b == 0xFF) {
                        Some(i) => {
                            self.pos += i + 1;
                            self.scanned = self.pos;
                            seeking = false;
                        }
                        None => {
                            self.pos = self.buf.len();
                            self.scanned = self.pos;
                        }
                    }
                }
                if !seeking {
                    if let Some(line) = self.take_line() {
                        let got = serde_json::from_slice::<Value>(&line)
                            .ok()
                            .and_then(|v| v.get("return").and_then(Value::as_i64));
                        if got == Some(id) {
                            self.sync_id = id;
                            return Ok(());
                        }
                        seeking = true;
                        continue;
                    }
                }
                match self.fill(&mut dl, Some(try_deadline), false) {
                    Ok(true) => {}
                    Ok(false) | Err(FillError::Timeout) => break,
                    Err(FillError::Closed) => return Err(SyncError::Closed("connection closed by the agent".into())),
                    Err(FillError::Other(m)) => return Err(SyncError::Closed(m)),
                }
            }
            if Instant::now() >= deadline {
                return Err(SyncError::Timeout);
            }
            per_try = (per_try * 2).min(Duration::from_secs(4));
        }
    }

    /// Sends bytes, waiting (bounded by `deadline`, extended while the
    /// agent keeps accepting data) when the socket is full. Replies that
    /// arrive meanwhile are read into the buffer: an agent that stops
    /// reading while its own output is unsent (qga does, above a high-water
    /// mark) must not deadlock with a client that is still writing.
    pub fn write_all(&mut self, mut data: &[u8], mut deadline: Instant) -> Result<()> {
        let fd = self.fd.as_raw_fd();
        while !data.is_empty() {
            // MSG_NOSIGNAL via send for sockets.
            let err = match sys::send(self.fd.as_fd(), data) {
                Ok(n) if n > 0 => {
                    data = &data[n..];
                    deadline = deadline.max(Instant::now() + self.reply_timeout);
                    continue;
                }
                Ok(_) => sys::errno(),
                Err(e) => e,
            };
            match err {
                sys::EINTR => continue,
                sys::EAGAIN => {
                    let mut p = [PollFd::new(fd, POLLOUT | POLLIN)];
                    let r = sys::poll(&mut p, ms_until(deadline)).map_or(-1, |n| n as i64);
                    if r > 0 && p[0].revents() & POLLIN != 0 {
                        match self.read_more() {
                            Ok(n) if n > 0 => deadline = deadline.max(Instant::now() + self.reply_timeout),
                            Ok(_) => {}
                            Err(e) => return Err(self.fill_failure(e)),
                        }
                    }
                    if r == 0 && Instant::now() >= deadline {
                        return Err(Failure::Connection(format!(
                            "{}: the agent stopped reading requests (nothing accepted for {})",
                            self.target,
                            secs(self.reply_timeout)
                        )));
                    }
                }
                sys::EPIPE | sys::ECONNRESET => {
                    return Err(Failure::Connection(format!("{}: connection closed by the agent", self.target)))
                }
                e => return Err(Failure::Connection(format!("{}: write failed: {}", self.target, strerror(e)))),
            }
        }
        Ok(())
    }

    /// Reads more bytes: Ok(true) = data arrived; Ok(false) = the `wake`
    /// time passed or (when `interruptible`) a signal is pending.
    /// `deadline` is extended while bytes keep arriving.
    fn fill(
        &mut self,
        deadline: &mut Instant,
        wake: Option<Instant>,
        interruptible: bool,
    ) -> std::result::Result<bool, FillError> {
        self.fill_watching(deadline, wake, interruptible, None)
    }

    /// [`Session::fill`] that also returns Ok(false) when `watch` is readable.
    fn fill_watching(
        &mut self,
        deadline: &mut Instant,
        wake: Option<Instant>,
        interruptible: bool,
        watch: Option<RawFd>,
    ) -> std::result::Result<bool, FillError> {
        let fd = self.fd.as_raw_fd();
        let sig = if interruptible { signals::fd() } else { None };
        loop {
            let now = Instant::now();
            if wake.is_some_and(|w| now >= w) {
                return Ok(false);
            }
            if now >= *deadline {
                return Err(FillError::Timeout);
            }
            let until = wake.map_or(*deadline, |w| w.min(*deadline));
            // A negative fd is ignored by poll.
            let mut fds = [
                PollFd::new(fd, POLLIN),
                PollFd::new(sig.unwrap_or(-1), POLLIN),
                PollFd::new(watch.unwrap_or(-1), POLLIN),
            ];
            match sys::poll(&mut fds, ms_until(until)) {
                Err(sys::EINTR) => continue,
                Err(e) => return Err(FillError::Other(format!("poll failed: {}", strerror(e)))),
                Ok(_) => {}
            }
            if fds[1].revents() != 0 || fds[2].revents() != 0 {
                return Ok(false);
            }
            if fds[0].revents() == 0 {
                continue;
            }
            match self.read_more()? {
                0 => continue,
                _ => {
                    *deadline = (*deadline).max(Instant::now() + self.reply_timeout);
                    return Ok(true);
                }
            }
        }
    }

    /// One non-blocking read into the buffer: the byte count (0: nothing
    /// there right now).
    fn read_more(&mut self) -> std::result::Result<usize, FillError> {
        // Compact, then read into spare capacity.
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > (1 << 20)) {
            self.buf.drain(..self.pos);
            self.scanned = self.scanned.saturating_sub(self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_CHUNK);
        loop {
            match sys::read_spare(self.fd.as_fd(), &mut self.buf) {
                Ok(0) => return Err(FillError::Closed),
                Ok(n) => return Ok(n),
                Err(sys::EINTR) => continue,
                Err(sys::EAGAIN) => return Ok(0),
                Err(sys::ECONNRESET) => return Err(FillError::Closed),
                Err(e) => return Err(FillError::Other(format!("read failed: {}", strerror(e)))),
            }
        }
    }

    fn fill_failure(&self, e: FillError) -> Failure {
        Failure::Connection(match e {
            FillError::Timeout => {
                format!("{}: the agent did not reply within {}", self.target, secs(self.reply_timeout))
            }
            FillError::Closed => format!("{}: connection closed by the agent", self.target),
            FillError::Other(m) => format!("{}: {m}", self.target),
        })
    }

    /// The next complete line in the buffer, if any (0xFF bytes removed).
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let from = self.scanned.max(self.pos);
        match self.buf[from..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = from + i;
                let mut line: Vec<u8> = self.buf[self.pos..end].to_vec();
                line.retain(|&b| b != 0xFF);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.pos = end + 1;
                self.scanned = self.pos;
                Some(line)
            }
            None => {
                self.scanned = self.buf.len();
                None
            }
        }
    }

    /// Waits for the next reply line, a signal (when `interruptible`),
    /// the `wake` time or (when given) `watch` becoming readable. Empty
    /// lines are skipped. `deadline` is extended while bytes keep arriving.
    pub fn next_event(
        &mut self,
        deadline: &mut Instant,
        wake: Option<Instant>,
        interruptible: bool,
        watch: Option<RawFd>,
    ) -> Result<Event> {
        loop {
            while let Some(line) = self.take_line() {
                if !line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Event::Line(line));
                }
            }
            if interruptible && signals::fd().is_some() && self.signal_pending() {
                return Ok(Event::Signal);
            }
            if watch.is_some_and(readable) {
                return Ok(Event::Watch);
            }
            if wake.is_some_and(|w| Instant::now() >= w) {
                return Ok(Event::Wake);
            }
            self.fill_watching(deadline, wake, interruptible, watch).map_err(|e| self.fill_failure(e))?;
        }
    }

    fn signal_pending(&self) -> bool {
        signals::fd().is_some_and(readable)
    }

    /// Waits for one reply line (signals are left pending).
    pub fn read_line(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let mut deadline = Instant::now() + timeout;
        loop {
            if let Event::Line(l) = self.next_event(&mut deadline, None, false, None)? {
                return Ok(l);
            }
        }
    }

    /// Sends one request (compact JSON + "\n").
    pub fn send(&mut self, command: &str, args: Option<Value>) -> Result<()> {
        let mut req = json!({"execute": command});
        if let Some(a) = args {
            req["arguments"] = a;
        }
        let mut bytes = serde_json::to_vec(&req).unwrap_or_default();
        bytes.push(b'\n');
        let deadline = Instant::now() + self.reply_timeout;
        self.write_all(&bytes, deadline)
    }

    /// Sends a request whose arguments are `args` plus `key` = base64 of
    /// `data`, encoded straight into the request buffer.
    pub fn send_with_base64(&mut self, command: &str, args: Value, key: &str, data: &[u8]) -> Result<()> {
        use base64::Engine;
        let mut bytes = Vec::with_capacity(data.len() / 3 * 4 + 256);
        bytes.extend_from_slice(b"{\"execute\":");
        bytes.extend(serde_json::to_vec(command).unwrap_or_default());
        bytes.extend_from_slice(b",\"arguments\":");
        let obj = serde_json::to_vec(&args).unwrap_or_default();
        // `args` is a non-empty object: reopen it to append one member.
        bytes.extend_from_slice(&obj[..obj.len() - 1]);
        if obj.len() > 2 {
            bytes.push(b',');
        }
        bytes.extend(serde_json::to_vec(key).unwrap_or_default());
        bytes.extend_from_slice(b":\"");
        let start = bytes.len();
        bytes.resize(start + base64::encoded_len(data.len(), true).unwrap_or(0), 0);
        let n = base64::engine::general_purpose::STANDARD.encode_slice(data, &mut bytes[start..]).unwrap_or(0);
        bytes.truncate(start + n);
        bytes.extend_from_slice(b"\"}}\n");
        let deadline = Instant::now() + self.reply_timeout;
        self.write_all(&bytes, deadline)
    }

    /// Sends a request and returns its `return` value.
    pub fn call(&mut self, command: &str, args: Option<Value>) -> Result<Value> {
        self.send(command, args)?;
        self.reply(command)
    }

    /// Reads the reply to an already sent `command`.
    pub fn reply(&mut self, command: &str) -> Result<Value> {
        let line = self.read_line(self.reply_timeout).map_err(|f| context(f, command))?;
        match parse_reply(&line)? {
            Reply::Return(v) => Ok(v),
            Reply::Error { class, desc } => Err(Failure::agent(command, &class, &desc)),
        }
    }
}

fn context(f: Failure, command: &str) -> Failure {
    match f {
        Failure::Connection(m) => Failure::Connection(format!("{command}: {m}")),
        other => other,
    }
}

enum FillError {
    Timeout,
    Closed,
    Other(String),
}

enum SyncError {
    Timeout,
    Closed(String),
}

/// Decodes a reply line.
pub fn parse_reply(line: &[u8]) -> Result<Reply> {
    let bad = || {
        let text = String::from_utf8_lossy(line);
        let short: String = text.chars().take(200).collect();
        Failure::Connection(format!("unexpected reply from the agent: {short}"))
    };
    let v: Value = serde_json::from_slice(line).map_err(|_| bad())?;
    if let Some(r) = v.get("return") {
        return Ok(Reply::Return(r.clone()));
    }
    if let Some(e) = v.get("error") {
        let class = e.get("class").and_then(Value::as_str).unwrap_or("GenericError").to_string();
        let desc = e.get("desc").and_then(Value::as_str).unwrap_or("(no description)").to_string();
        return Ok(Reply::Error { class, desc });
    }
    Err(bad())
}

/// "5 s", "0.5 s".
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{} s", s as u64)
    } else {
        format!("{s} s")
    }
}
