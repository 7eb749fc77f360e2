//! The O_ASYNC owner of a virtio port.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

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
