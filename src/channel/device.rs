//! Device channels: virtio-serial ports and serial lines.

use std::os::fd::{AsFd, OwnedFd};

use crate::sys::fs::oflag;
use crate::sys::{fd, io, termios, Errno};

fn open_path(path: &str, flags: i32) -> Result<OwnedFd, String> {
    let fail = |e: Errno| format!("error opening channel '{path}': {e}");
    if path.contains('\0') {
        return Err(fail(Errno::EINVAL));
    }
    fd::open_path(path, flags, 0).map_err(fail)
}

/// qemu-ga: `open(path, O_RDWR | O_NONBLOCK | O_ASYNC | O_CLOEXEC)`; the
/// O_ASYNC owner is set so host open/close raise SIGIO here.
pub fn open_virtio(path: &str) -> Result<OwnedFd, String> {
    let fd = open_path(path, oflag::O_RDWR | oflag::O_NONBLOCK)?;
    // Failure only loses the SIGIO backup wake.
    io::set_async_owner(fd.as_fd());
    Ok(fd)
}

/// qemu-ga's isa-serial setup: raw mode, 38400 baud OR-ed in, VMIN=1.
pub fn open_serial(path: &str) -> Result<OwnedFd, String> {
    let fd = open_path(path, oflag::O_RDWR | oflag::O_NOCTTY | oflag::O_NONBLOCK)?;
    termios::setup_isa_serial(fd.as_fd());
    Ok(fd)
}
