//! Serial lines: qemu-ga's isa-serial termios setup.

use std::os::fd::{AsRawFd, BorrowedFd};

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
