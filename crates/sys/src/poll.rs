//! poll(2) over a few descriptors (qgactl's waits; the agent uses mio).

use std::os::fd::RawFd;

use super::{cvt, Errno};

/// poll(2) event bits.
pub type Events = libc::c_short;
pub const POLLIN: Events = libc::POLLIN;
pub const POLLOUT: Events = libc::POLLOUT;

/// One entry of a poll(2) set; a negative fd is ignored by the kernel (and
/// a closed one only reports POLLNVAL).
#[derive(Debug, Clone, Copy)]
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    pub fn new(fd: RawFd, events: Events) -> PollFd {
        PollFd(libc::pollfd { fd, events, revents: 0 })
    }

    /// The events the last [`poll`] reported.
    pub fn revents(&self) -> Events {
        self.0.revents
    }
}

/// poll(2) with a timeout in ms (negative: none): the number of ready
/// entries, or the errno (EINTR included: the caller recomputes its
/// timeout).
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Result<usize, Errno> {
    // SAFETY: PollFd is a transparent pollfd; the slice is live with its own length.
    let n = cvt(unsafe { libc::poll(fds.as_mut_ptr().cast(), fds.len() as libc::nfds_t, timeout_ms) })?;
    Ok(n.unsigned_abs() as usize)
}
