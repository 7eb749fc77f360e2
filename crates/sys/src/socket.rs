//! Listening sockets for the channel: unix and vsock stream sockets,
//! accept, and the descriptor systemd socket activation passes.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, cvt_r, Errno};

/// Socket address families the channel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Unix,
    Vsock,
    Other(i32),
}

impl Family {
    fn raw(self) -> libc::c_int {
        match self {
            Family::Unix => libc::AF_UNIX,
            Family::Vsock => libc::AF_VSOCK,
            Family::Other(f) => f,
        }
    }

    fn from_raw(f: libc::c_int) -> Family {
        match f {
            libc::AF_UNIX => Family::Unix,
            libc::AF_VSOCK => Family::Vsock,
            other => Family::Other(other),
        }
    }
}

/// A non-blocking, close-on-exec stream socket.
pub fn stream_socket(family: Family) -> Result<OwnedFd, Errno> {
    // SAFETY: plain socket creation.
    let fd =
        cvt(unsafe { libc::socket(family.raw(), libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) })?;
    // SAFETY: fd was just created and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn zeroed<T: Copy>() -> T {
    // SAFETY: only instantiated below for plain C socket address structs,
    // for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// Room in `sockaddr_un.sun_path` (a path must be shorter, for its NUL).
pub fn unix_path_max() -> usize {
    zeroed::<libc::sockaddr_un>().sun_path.len()
}

/// `bind(2)` to a unix socket path (shorter than [`unix_path_max`],
/// else ENAMETOOLONG), with the length qemu-ga passes.
pub fn bind_unix(fd: BorrowedFd<'_>, path: &[u8]) -> Result<(), Errno> {
    let mut addr: libc::sockaddr_un = zeroed();
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.len() >= addr.sun_path.len() {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + path.len() + 1;
    // SAFETY: bind with a fully initialised sockaddr_un and a length within it.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t) })?;
    Ok(())
}

fn vsock_addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    let mut addr: libc::sockaddr_vm = zeroed();
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    addr
}

const VM_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

/// `bind(2)` to a vsock address.
pub fn bind_vsock(fd: BorrowedFd<'_>, cid: u32, port: u32) -> Result<(), Errno> {
    let addr = vsock_addr(cid, port);
    // SAFETY: bind with an initialised sockaddr_vm of its own size.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_vm).cast(), VM_LEN) })?;
    Ok(())
}

/// `listen(2)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<(), Errno> {
    // SAFETY: listen on a live socket.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// `accept4(2)` of one pending client, non-blocking and close-on-exec
/// (retried on EINTR), on a listener known by number (what the agent's
/// loop holds today; a closed number only yields EBADF).
pub fn accept(listener: RawFd) -> Result<OwnedFd, Errno> {
    let fd = cvt_r(|| {
        // SAFETY: accept4 on a descriptor number (memory-safe for any number);
        // the peer address is not wanted.
        unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        }
    })?;
    // SAFETY: fd was just accepted and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The address family of a bound socket (`getsockname(2)`).
pub fn family(fd: BorrowedFd<'_>) -> Result<Family, Errno> {
    let mut addr: libc::sockaddr_storage = zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname into a sockaddr_storage with its true size.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len) })?;
    Ok(Family::from_raw(libc::c_int::from(addr.ss_family)))
}

/// SD_LISTEN_FDS_START: the first descriptor systemd passes.
const SD_LISTEN_FDS_START: RawFd = 3;

/// Takes ownership of the listening socket systemd passed as fd 3. Only
/// to be called once, after LISTEN_PID/LISTEN_FDS said it is ours.
pub fn take_systemd_listener() -> OwnedFd {
    // SAFETY: systemd passed fd 3 to this process (the caller checked
    // LISTEN_PID/LISTEN_FDS) and nothing else in the process owns it.
    unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) }
}
