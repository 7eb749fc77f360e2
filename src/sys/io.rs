//! Channel I/O on descriptors the agent keeps open, by number (what the
//! agent's loop holds today), and the O_ASYNC owner of a virtio port.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use super::{cvt, cvt_r, Errno};

/// One `read(2)` on descriptor number `fd`, retried on EINTR; `Ok(0)` is
/// end of file. A closed or foreign number only yields EBADF or its data.
pub fn read_raw(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: read into a live mutable buffer of its own length (any fd number is memory-safe).
    let n = cvt_r(|| unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n.unsigned_abs())
}

/// One `write(2)` on descriptor number `fd`, retried on EINTR.
pub fn write_raw(fd: RawFd, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: write from a live buffer of its own length (any fd number is memory-safe).
    let n = cvt_r(|| unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })?;
    Ok(n.unsigned_abs())
}

/// F_SETOWN to this process and O_ASYNC: the driver then sends SIGIO on
/// state changes. Best effort (failure only loses a backup wake-up).
pub fn set_async_owner(fd: BorrowedFd<'_>) {
    let fd = fd.as_raw_fd();
    // SAFETY: getpid only returns the pid; fcntl F_SETOWN on a live descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) };
    // SAFETY: F_GETFL only queries a live descriptor.
    if let Ok(fl) = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) }) {
        // SAFETY: F_SETFL on a live descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_ASYNC) };
    }
}
