//! Pseudo-terminals for `guest-exec` with `tty`.

use std::ffi::{CStr, CString};
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
    let (master, slave, _) = open_named()?;
    set_size(master.as_fd(), size)?;
    Ok((master, slave))
}

/// [`open`] without setting the size (the kernel's 0x0), with the slave's
/// path (/dev/pts/N): (master, slave, path).
pub fn open_named() -> Result<(OwnedFd, OwnedFd, CString), Errno> {
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
    let path = unsafe { CStr::from_ptr(name.as_ptr()) }.to_owned();
    let slave = super::fd::open(&path, libc::O_RDWR | libc::O_NOCTTY, 0)?;
    Ok((master, slave, path))
}

/// The window size of the terminal `fd` (TIOCGWINSZ); ENOTTY when it is
/// not a terminal.
pub fn size(fd: BorrowedFd<'_>) -> Result<Winsize, Errno> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one struct winsize into our local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ as _, &mut ws) })?;
    Ok(Winsize { rows: ws.ws_row, cols: ws.ws_col })
}

/// Sets the window size (TIOCSWINSZ); the kernel sends SIGWINCH to the
/// terminal's foreground process group.
pub fn set_size(fd: BorrowedFd<'_>, size: Winsize) -> Result<(), Errno> {
    let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one struct winsize from valid memory.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ as _, &ws) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::termios;

    #[test]
    fn named_pty_size_and_raw_mode() {
        let (master, slave, path) = open_named().unwrap();
        assert!(path.to_bytes().starts_with(b"/dev/pts/"), "{path:?}");
        set_size(master.as_fd(), Winsize { rows: 24, cols: 80 }).unwrap();
        assert_eq!(size(slave.as_fd()), Ok(Winsize { rows: 24, cols: 80 }));
        let cooked = termios::get(slave.as_fd()).unwrap();
        assert_ne!(cooked.as_libc().c_lflag & libc::ECHO, 0);
        termios::set(slave.as_fd(), termios::When::Now, &cooked.raw()).unwrap();
        assert_eq!(termios::get(slave.as_fd()).unwrap().as_libc().c_lflag & libc::ECHO, 0);
        let (r, _w) = crate::fd::pipe().unwrap();
        assert_eq!(size(r.as_fd()), Err(Errno::ENOTTY));
    }
}
