//! A minimal QGA client over a unix socket: raw writes, newline-framed
//! replies read into one growing buffer (memchr over new bytes only).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Client {
    pub sock: UnixStream,
    buf: Vec<u8>,
    /// Start of unconsumed data in buf.
    start: usize,
    /// End of valid data in buf.
    end: usize,
}

const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl Client {
    pub fn new(sock: UnixStream) -> Client {
        sock.set_read_timeout(Some(REPLY_TIMEOUT)).ok();
        sock.set_write_timeout(Some(REPLY_TIMEOUT)).ok();
        Client { sock, buf: vec![0; 256 << 10], start: 0, end: 0 }
    }

    /// Connects, retrying as fast as possible until `deadline`.
    pub fn connect_spin(path: &Path, deadline: Instant) -> std::io::Result<Client> {
        loop {
            match UnixStream::connect(path) {
                Ok(s) => return Ok(Client::new(s)),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write to agent");
    }

    /// The next reply line (without the newline). Panics on EOF/timeout.
    pub fn line(&mut self) -> &[u8] {
        let mut scanned = self.start;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[scanned..self.end]) {
                let nl = scanned + i;
                let s = self.start;
                self.start = nl + 1;
                if self.start == self.end {
                    // Everything consumed: the next read starts at 0 (the
                    // returned slice stays valid until the next call).
                    self.start = 0;
                    self.end = 0;
                }
                let line = &self.buf[s..nl];
                // 0xFF/sync delimiter bytes may precede a reply: skip them.
                let skip = line.iter().take_while(|&&b| b == 0xFF).count();
                return &self.buf[s + skip..nl];
            }
            scanned = self.end;
            if self.start > 0 && self.end == self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                scanned -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
            let n = self.sock.read(&mut self.buf[self.end..]).expect("read from agent");
            assert!(n > 0, "agent closed the connection");
            self.end += n;
        }
    }

    /// Drops an oversized buffer (after a big capture).
    pub fn shrink(&mut self) {
        if self.start == self.end && self.buf.len() > (1 << 20) {
            self.buf = vec![0; 256 << 10];
            self.start = 0;
            self.end = 0;
        }
    }

    /// One request, one parsed reply.
    pub fn cmd(&mut self, req: &str) -> serde_json::Value {
        self.send(req.as_bytes());
        let l = self.line();
        serde_json::from_slice(l)
            .unwrap_or_else(|e| panic!("bad reply {:?}: {e}", String::from_utf8_lossy(&l[..l.len().min(200)])))
    }

    /// `{"return": ...}` or panic with the error.
    pub fn ret(&mut self, req: &str) -> serde_json::Value {
        let v = self.cmd(req);
        match v.get("return") {
            Some(r) => r.clone(),
            None => panic!("request {req} failed: {v}"),
        }
    }

    pub fn ping(&mut self) {
        self.send(PING);
        let l = self.line();
        debug_assert!(l.starts_with(b"{\"return\""));
    }

    /// guest-exec; returns the pid.
    pub fn exec(&mut self, args_json: &str) -> i64 {
        let r = self.ret(&format!("{{\"execute\":\"guest-exec\",\"arguments\":{args_json}}}\n"));
        r["pid"].as_i64().expect("pid")
    }

    /// Polls guest-exec-status until exited; returns (status calls made,
    /// the final reply bytes).
    pub fn poll_until_exited(&mut self, pid: i64, wait: Option<f64>) -> (usize, Vec<u8>) {
        self.poll_until_exited_then(pid, wait, |l| l.to_vec())
    }

    /// Polls until exited without copying the final reply; returns calls
    /// and the final reply's length.
    pub fn poll_until_exited_len(&mut self, pid: i64, wait: Option<f64>) -> (usize, usize) {
        self.poll_until_exited_then(pid, wait, |l| l.len())
    }

    /// The polling loop both share: `last` sees the final reply (the line
    /// returned by `line()` is not borrowable after the next call).
    fn poll_until_exited_then<T>(&mut self, pid: i64, wait: Option<f64>, last: impl FnOnce(&[u8]) -> T) -> (usize, T) {
        let req = match wait {
            Some(w) => format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid},\"wait\":{w}}}}}\n"),
            None => format!("{{\"execute\":\"guest-exec-status\",\"arguments\":{{\"pid\":{pid}}}}}\n"),
        };
        let mut calls = 0;
        loop {
            calls += 1;
            self.send(req.as_bytes());
            let l = self.line();
            if !l.starts_with(b"{\"return\"") {
                panic!("status failed: {}", String::from_utf8_lossy(&l[..l.len().min(300)]));
            }
            if memchr::memmem::find(l, b"\"exited\": true").is_some() {
                return (calls, last(l));
            }
        }
    }
}

pub const PING: &[u8] = b"{\"execute\":\"guest-ping\"}\n";

/// Decoded length of the base64 member `name` in a reply line.
pub fn b64_member(line: &[u8], name: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let key = format!("\"{name}\": \"");
    let i = memchr::memmem::find(line, key.as_bytes())? + key.len();
    let j = i + memchr::memchr(b'"', &line[i..])?;
    base64::engine::general_purpose::STANDARD.decode(&line[i..j]).ok()
}
