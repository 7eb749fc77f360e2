//! Local stdin for streamed guest-exec input: a thread reads the source
//! (a file or qgactl's stdin, which may be a slow live pipe) into a
//! bounded buffer and pokes a pipe, so the exec loop can wait for input,
//! agent replies and signals in one poll(2) and never blocks on a read.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};

use crate::files::strip_os_error;
use qga_sys::fd;

/// Bytes read ahead of what the agent has taken; the reader waits above it.
const READ_AHEAD: usize = 4 << 20;
/// Largest single read.
const READ_SIZE: usize = 1 << 20;

#[derive(Default)]
struct Shared {
    blocks: VecDeque<Vec<u8>>,
    len: usize,
    /// The source reached its end (after `blocks`).
    eof: bool,
    /// A read failed (after `blocks`).
    error: Option<String>,
    /// The consumer is gone: the reader stops.
    stopped: bool,
}

/// What the source has for the consumer right now.
pub enum Take {
    /// Bytes (never empty).
    Data(Vec<u8>),
    /// Nothing yet; wait for [`Pump::fd`].
    Empty,
    /// The end: no more bytes will come.
    Eof,
    /// The source failed after everything before it was taken.
    Error(String),
}

pub struct Pump {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    wake_r: OwnedFd,
}

impl Pump {
    /// Starts reading `source` in a thread.
    pub fn start(mut source: Box<dyn Read + Send>) -> std::io::Result<Pump> {
        let (wake_r, wake_w) = fd::pipe_nonblocking()?;
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let sh = Arc::clone(&shared);
        std::thread::Builder::new().name("stdin".into()).spawn(move || {
            let (lock, cond) = &*sh;
            loop {
                {
                    let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while s.len >= READ_AHEAD && !s.stopped {
                        s = cond.wait(s).unwrap_or_else(|e| e.into_inner());
                    }
                    if s.stopped {
                        return;
                    }
                }
                let mut buf = vec![0u8; READ_SIZE];
                let r = loop {
                    match source.read(&mut buf) {
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        r => break r,
                    }
                };
                let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
                let end = match r {
                    Ok(0) => {
                        s.eof = true;
                        true
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        if n < READ_SIZE / 4 {
                            buf.shrink_to_fit();
                        }
                        s.len += n;
                        s.blocks.push_back(buf);
                        false
                    }
                    Err(e) => {
                        s.error = Some(format!("cannot read stdin: {}", strip_os_error(&e)));
                        true
                    }
                };
                drop(s);
                // A full pipe means a wake-up is pending anyway.
                let _ = fd::write(wake_w.as_fd(), &[1]);
                if end {
                    return;
                }
            }
        })?;
        Ok(Pump { shared, wake_r })
    }

    /// Becomes readable when [`Pump::take`] may have something new.
    pub fn fd(&self) -> RawFd {
        self.wake_r.as_raw_fd()
    }

    /// Up to `max` bytes in source order, or what the source says now.
    /// Drains the wake-up pipe first, so that a later wake-up always means
    /// news after this call.
    pub fn take(&self, max: usize) -> Take {
        let mut junk = [0u8; 64];
        while fd::read(self.wake_r.as_fd(), &mut junk).is_ok_and(|n| n > 0) {}
        let (lock, cond) = &*self.shared;
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        if s.len == 0 {
            return match (&s.error, s.eof) {
                (Some(e), _) => Take::Error(e.clone()),
                (None, true) => Take::Eof,
                (None, false) => Take::Empty,
            };
        }
        let mut out = Vec::with_capacity(max.min(s.len));
        while out.len() < max {
            let Some(front) = s.blocks.front_mut() else { break };
            let n = (max - out.len()).min(front.len());
            if n == front.len() {
                let b = s.blocks.pop_front().unwrap_or_default();
                if out.is_empty() {
                    out = b;
                    if out.capacity() < max {
                        out.reserve(max - out.len());
                    }
                } else {
                    out.extend_from_slice(&b);
                }
            } else {
                out.extend_from_slice(&front[..n]);
                front.drain(..n);
            }
        }
        s.len -= out.len();
        cond.notify_all();
        Take::Data(out)
    }

    /// Whether everything was taken and the source ended: None = more
    /// may come; Some(None) = end of input; Some(Some(e)) = read error.
    pub fn finished(&self) -> Option<Option<String>> {
        let s = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.len > 0 {
            return None;
        }
        match (&s.error, s.eof) {
            (Some(e), _) => Some(Some(e.clone())),
            (None, true) => Some(None),
            (None, false) => None,
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // The reader may be blocked in read(2) on a live pipe: it is left
        // behind and ends with the process; one waiting for room stops.
        let (lock, cond) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        cond.notify_all();
    }
}
