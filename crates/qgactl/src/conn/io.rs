//! Socket I/O: writing with a deadline, reading into the line buffer,
//! and waiting for the next reply line, a signal, a wake-up time or a
//! watched descriptor in one poll(2).

use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::{ms_until, secs, Event, Session, READ_CHUNK};
use crate::fail::{Failure, Result};
use crate::signals;
use qga_sys::poll::{poll, PollFd, POLLIN, POLLOUT};
use qga_sys::{fd as sysfd, socket, Errno};

/// Whether `fd` is readable right now (non-blocking poll).
fn readable(fd: RawFd) -> bool {
    poll(&mut [PollFd::new(fd, POLLIN)], 0).is_ok_and(|r| r > 0)
}

impl Session {
    /// Sends bytes, waiting (bounded by `deadline`, extended while the
    /// agent keeps accepting data) when the socket is full. Replies that
    /// arrive meanwhile are read into the buffer: an agent that stops
    /// reading while its own output is unsent (qga does, above a high-water
    /// mark) must not deadlock with a client that is still writing.
    pub fn write_all(&mut self, mut data: &[u8], mut deadline: Instant) -> Result<()> {
        let fd = self.fd.as_raw_fd();
        while !data.is_empty() {
            // MSG_NOSIGNAL via send for sockets.
            let err = match socket::send(self.fd.as_fd(), data) {
                Ok(n) if n > 0 => {
                    data = &data[n..];
                    deadline = deadline.max(Instant::now() + self.reply_timeout);
                    continue;
                }
                Ok(_) => Errno::last(),
                Err(e) => e,
            };
            match err {
                Errno::EINTR => continue,
                Errno::EAGAIN => {
                    let mut p = [PollFd::new(fd, POLLOUT | POLLIN)];
                    let r = poll(&mut p, ms_until(deadline)).map_or(-1, |n| n as i64);
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
                Errno::EPIPE | Errno::ECONNRESET => {
                    return Err(Failure::Connection(format!("{}: connection closed by the agent", self.target)))
                }
                e => return Err(Failure::Connection(format!("{}: write failed: {}", self.target, e))),
            }
        }
        Ok(())
    }

    /// Reads more bytes: Ok(true) = data arrived; Ok(false) = the `wake`
    /// time passed or (when `interruptible`) a signal is pending.
    /// `deadline` is extended while bytes keep arriving.
    pub(super) fn fill(
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
            match poll(&mut fds, ms_until(until)) {
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(FillError::Other(format!("poll failed: {e}"))),
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
        self.rx.make_room(READ_CHUNK);
        loop {
            match sysfd::read_spare(self.fd.as_fd(), &mut self.rx.buf) {
                Ok(0) => return Err(FillError::Closed),
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(0),
                Err(Errno::ECONNRESET) => return Err(FillError::Closed),
                Err(e) => return Err(FillError::Other(format!("read failed: {e}"))),
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
            while let Some(line) = self.rx.take_line() {
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
}

pub(super) enum FillError {
    Timeout,
    Closed,
    Other(String),
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::test_pair;
    use super::*;

    fn line(e: Event) -> String {
        match e {
            Event::Line(l) => String::from_utf8(l).unwrap(),
            _ => panic!("not a line"),
        }
    }

    #[test]
    fn lines_split_and_joined_across_reads() {
        let (mut s, mut agent) = test_pair(Duration::from_secs(5));
        let mut deadline = Instant::now() + Duration::from_secs(5);
        // Half a reply: the wait ends at the wake time, not with a line.
        agent.write_all(b"{\"return\":").unwrap();
        let wake = Some(Instant::now() + Duration::from_millis(20));
        assert!(matches!(s.next_event(&mut deadline, wake, false, None).unwrap(), Event::Wake));
        // The rest, two more replies and blank lines (skipped) in one write.
        agent.write_all(b" 1}\r\n\n  \r\n{\"return\": 2}\n\xff{\"return\": 3}\n").unwrap();
        for want in ["{\"return\": 1}", "{\"return\": 2}", "{\"return\": 3}"] {
            assert_eq!(line(s.next_event(&mut deadline, None, false, None).unwrap()), want);
        }
        // A watched descriptor that is readable ends the wait.
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        w.write_all(b"x").unwrap();
        let watch = Some(r.as_raw_fd());
        assert!(matches!(s.next_event(&mut deadline, None, false, watch).unwrap(), Event::Watch));
        // A line already there comes before the watch.
        agent.write_all(b"{\"return\": 4}\n").unwrap();
        std::thread::sleep(Duration::from_millis(10));
        let e = s.next_event(&mut deadline, None, false, None).unwrap();
        assert_eq!(line(e), "{\"return\": 4}");
    }

    #[test]
    fn replies_read_while_writing_are_kept() {
        let (mut s, mut agent) = test_pair(Duration::from_secs(5));
        agent.write_all(b"{\"return\": \"early\"}\n").unwrap();
        let big = vec![b' '; 4 << 20];
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut got = 0;
            let mut buf = vec![0u8; 1 << 16];
            while got < 4 << 20 {
                got += std::io::Read::read(&mut agent, &mut buf).unwrap();
            }
            agent
        });
        s.write_all(&big, Instant::now() + Duration::from_secs(5)).unwrap();
        let _agent = reader.join().unwrap();
        assert_eq!(s.read_line(Duration::from_secs(1)).unwrap(), b"{\"return\": \"early\"}");
    }
}
