//! The local terminal for `exec -t` / `shell`: raw mode for the session
//! (restored when the guard drops, on every path out of `exec::run`), the
//! window size, and ssh's `~.` escape in the keystrokes.

use std::io::{IsTerminal, Read};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use qga_sys::{fd, pty, termios};

/// Set by [`Escape`] when `~.` was typed at the start of a line.
static ESCAPED: AtomicBool = AtomicBool::new(false);

/// Whether the user typed `~.` (the session should end).
pub fn escaped() -> bool {
    ESCAPED.load(Ordering::Relaxed)
}

/// Set while [`RawMode`] holds the local terminal.
static RAW: AtomicBool = AtomicBool::new(false);

/// Prints `qgactl: MSG` on stderr as one line, also while the local
/// terminal is raw (no output processing: the line ends in \r\n then).
pub fn note(msg: &str) {
    let end = if RAW.load(Ordering::Relaxed) { "\r\n" } else { "\n" };
    eprint!("qgactl: {msg}{end}");
}

/// The local terminal in raw mode until dropped.
pub struct RawMode {
    fd: BorrowedFd<'static>,
    saved: termios::Termios,
}

impl RawMode {
    /// Puts `fd` in raw mode when it is a terminal (None otherwise).
    pub fn enter(fd: BorrowedFd<'static>) -> Option<RawMode> {
        if !fd.is_terminal() {
            return None;
        }
        let saved = termios::get(fd).ok()?;
        termios::set(fd, termios::When::Drain, &saved.raw()).ok()?;
        RAW.store(true, Ordering::Relaxed);
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::set(self.fd, termios::When::Drain, &self.saved);
        RAW.store(false, Ordering::Relaxed);
    }
}

/// The local window size (rows, cols): stdin's terminal, else stdout's.
pub fn local_size() -> Option<(u16, u16)> {
    let size = |fd| pty::size(fd).ok().filter(|w| w.rows > 0 && w.cols > 0).map(|w| (w.rows, w.cols));
    size(fd::stdin()).or_else(|| size(fd::stdout()))
}

/// Passes keystrokes through, except ssh's escapes after a newline (or at
/// the very start): `~.` ends the input (and sets [`escaped`]), `~~` sends
/// one `~`; a `~` followed by anything else is sent as typed.
pub struct Escape<R> {
    inner: R,
    /// The last byte passed on ended a line (or nothing was passed yet).
    line_start: bool,
    /// A `~` at line start is held back until the next byte.
    tilde: bool,
    /// Filtered bytes not yet returned.
    pending: Vec<u8>,
    done: bool,
}

impl<R: Read> Escape<R> {
    pub fn new(inner: R) -> Self {
        Escape { inner, line_start: true, tilde: false, pending: Vec::new(), done: false }
    }

    /// Filters `input` into `out`; returns true at `~.`.
    fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if self.tilde {
                self.tilde = false;
                match b {
                    b'.' => return true,
                    b'~' => {
                        out.push(b'~');
                        self.line_start = false;
                        continue;
                    }
                    _ => out.push(b'~'),
                }
            } else if self.line_start && b == b'~' {
                self.tilde = true;
                continue;
            }
            out.push(b);
            self.line_start = matches!(b, b'\r' | b'\n');
        }
        false
    }
}

impl<R: Read> Read for Escape<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.pending.is_empty() || buf.is_empty() {
                let n = self.pending.len().min(buf.len());
                buf[..n].copy_from_slice(&self.pending[..n]);
                self.pending.drain(..n);
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            let mut raw = vec![0u8; buf.len()];
            let n = self.inner.read(&mut raw)?;
            if n == 0 {
                self.done = true;
                continue;
            }
            let mut out = std::mem::take(&mut self.pending);
            if self.filter(&raw[..n], &mut out) {
                self.done = true;
                ESCAPED.store(true, Ordering::Relaxed);
            }
            self.pending = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut e = Escape::new(std::io::empty());
        let mut out = Vec::new();
        for c in chunks {
            if e.filter(c, &mut out) {
                return (out, true);
            }
        }
        (out, false)
    }

    #[test]
    fn escapes() {
        assert_eq!(run(&[b"~."]), (vec![], true));
        assert_eq!(run(&[b"ls\r~", b"."]), (b"ls\r".to_vec(), true));
        assert_eq!(run(&[b"a~.b"]), (b"a~.b".to_vec(), false));
        assert_eq!(run(&[b"~~.\r"]), (b"~.\r".to_vec(), false));
        assert_eq!(run(&[b"\n~x"]), (b"\n~x".to_vec(), false));
        assert_eq!(run(&[b"\r~", b"~", b"\r~."]), (b"\r~\r".to_vec(), true));
    }
}
