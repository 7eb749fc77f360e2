//! Pseudo-terminals for `guest-exec` with `tty`.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{cvt, Errno};

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Winsize {
    pub rows: u16,
    pub cols: u16,
}

/// Opens a new pseudo-terminal from /dev/ptmx: (master, slave), both
/// close-on-exec, the slave not made anyone's controlling terminal yet,
/// and the window size set.
pub fn open(size: Winsize) -> Result<(OwnedFd, OwnedFd), Errno> {
    // SAFETY: posix_openpt takes flags only; the fd is owned right away.
    let m = cvt(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: m was just opened and belongs to nobody else.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    // SAFETY: grantpt/unlockpt on our master.
    cvt(unsafe { libc::grantpt(master.as_raw_fd()) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most name.len() bytes.
    let rc = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        return Err(Errno(rc));
    }
    // SAFETY: ptsname_r succeeded, so name holds a NUL-terminated string.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    let slave = super::fd::open(path, libc::O_RDWR | libc::O_NOCTTY, 0)?;
    set_size(master.as_fd(), size)?;
    Ok((master, slave))
}

/// Sets the window size (TIOCSWINSZ); the kernel sends SIGWINCH to the
/// terminal's foreground process group.
pub fn set_size(fd: BorrowedFd<'_>, size: Winsize) -> Result<(), Errno> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one struct winsize from valid memory.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) })?;
    Ok(())
}
