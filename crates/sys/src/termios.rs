//! Terminals: qemu-ga's isa-serial termios setup, and saved settings,
//! raw mode and restoring them (qgactl's local terminal, the tests' ptys).

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, cvt_r, Errno};

/// qemu-ga's isa-serial setup: raw mode, 38400 baud OR-ed in, VMIN=1,
/// pending input flushed. Like qemu-ga, failures are ignored (a port that
/// is not a tty still works as a byte stream).
pub fn setup_isa_serial(fd: BorrowedFd<'_>) {
    let fd = fd.as_raw_fd();
    // SAFETY: an all-zero `struct termios` is a valid value.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr fills our struct from a live descriptor.
    unsafe { libc::tcgetattr(fd, &mut t) };
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
    // SAFETY: tcflush/tcsetattr on a live descriptor with our initialised struct.
    unsafe {
        libc::tcflush(fd, libc::TCIFLUSH);
        libc::tcsetattr(fd, libc::TCSANOW, &t);
    }
}

/// A terminal's settings (`struct termios`).
#[derive(Clone, Copy)]
pub struct Termios(libc::termios);

impl std::fmt::Debug for Termios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Termios")
            .field("iflag", &self.0.c_iflag)
            .field("oflag", &self.0.c_oflag)
            .field("cflag", &self.0.c_cflag)
            .field("lflag", &self.0.c_lflag)
            .finish_non_exhaustive()
    }
}

impl Termios {
    /// These settings in raw mode (cfmakeraw: no echo, no line editing,
    /// no signal keys, no output processing), as ssh sets the local
    /// terminal.
    pub fn raw(&self) -> Termios {
        let mut r = self.0;
        // SAFETY: cfmakeraw edits our copy.
        unsafe { libc::cfmakeraw(&mut r) };
        Termios(r)
    }

    /// The C structure, to read its flags (with libc's constants).
    pub fn as_libc(&self) -> &libc::termios {
        &self.0
    }
}

/// When [`set`] applies new settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// At once (TCSANOW).
    Now,
    /// Once queued output is written (TCSADRAIN).
    Drain,
}

/// The settings of the terminal `fd` (tcgetattr).
pub fn get(fd: BorrowedFd<'_>) -> Result<Termios, Errno> {
    // SAFETY: an all-zero termios is a valid value; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr writes into our struct.
    cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) })?;
    Ok(Termios(t))
}

/// Applies `t` to the terminal `fd` (tcsetattr), retrying on EINTR.
pub fn set(fd: BorrowedFd<'_>, when: When, t: &Termios) -> Result<(), Errno> {
    let when = match when {
        When::Now => libc::TCSANOW,
        When::Drain => libc::TCSADRAIN,
    };
    // SAFETY: tcsetattr reads our struct.
    cvt_r(|| unsafe { libc::tcsetattr(fd.as_raw_fd(), when, &t.0) })?;
    Ok(())
}
