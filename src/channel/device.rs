//! Device channels: virtio-serial ports and serial lines.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sys::strerror;

fn open_path(path: &str, flags: libc::c_int) -> Result<OwnedFd, String> {
    let c = CString::new(path).map_err(|_| format!("error opening channel '{path}': {}", strerror(libc::EINVAL)))?;
    // SAFETY: open with a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        return Err(format!("error opening channel '{path}': {}", strerror(e)));
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// qemu-ga: `open(path, O_RDWR | O_NONBLOCK | O_ASYNC | O_CLOEXEC)`; the
/// O_ASYNC owner is set so host open/close raise SIGIO here.
pub fn open_virtio(path: &str) -> Result<OwnedFd, String> {
    let fd = open_path(path, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC)?;
    // SAFETY: fcntl on the fd we just opened; failure only loses the SIGIO backup wake.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETOWN, libc::getpid());
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_ASYNC);
        }
    }
    Ok(fd)
}

/// qemu-ga's isa-serial setup: raw mode, 38400 baud OR-ed in, VMIN=1.
pub fn open_serial(path: &str) -> Result<OwnedFd, String> {
    let fd = open_path(path, libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC)?;
    // SAFETY: termios calls on the tty we just opened; qemu-ga ignores their results too.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        libc::tcgetattr(fd.as_raw_fd(), &mut t);
        t.c_iflag &= !(libc::IGNBRK
            | libc::BRKINT
            | libc::IGNPAR
            | libc::PARMRK
            | libc::INPCK
            | libc::ISTRIP
            | libc::INLCR
            | libc::IGNCR
            | libc::ICRNL
            | libc::IXON
            | libc::IXOFF
            | libc::IXANY
            | libc::IMAXBEL);
        t.c_oflag = 0;
        t.c_lflag = 0;
        t.c_cflag |= libc::B38400;
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        libc::tcflush(fd.as_raw_fd(), libc::TCIFLUSH);
        libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t);
    }
    Ok(fd)
}
