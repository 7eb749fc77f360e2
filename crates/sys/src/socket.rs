//! Stream sockets: the channel's unix and vsock listeners, accept and
//! the descriptor systemd socket activation passes; the clients'
//! (qgactl's, the tests') connect, send and SO_ERROR.

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
    let (addr, len) = unix_addr(path)?;
    // SAFETY: bind with a fully initialised sockaddr_un and a length within it.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) })?;
    Ok(())
}

fn unix_addr(path: &[u8]) -> Result<(libc::sockaddr_un, libc::socklen_t), Errno> {
    let mut addr: libc::sockaddr_un = zeroed();
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.len() >= addr.sun_path.len() {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(path) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + path.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// `connect(2)` to a unix socket path (shorter than [`unix_path_max`],
/// else ENAMETOOLONG). On a non-blocking socket a full backlog is EAGAIN.
pub fn connect_unix(fd: BorrowedFd<'_>, path: &[u8]) -> Result<(), Errno> {
    let (addr, len) = unix_addr(path)?;
    // SAFETY: connect with a fully initialised sockaddr_un and a length within it.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len) })?;
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

/// `connect(2)` to a vsock address CID:PORT. On a non-blocking socket
/// EINPROGRESS (or EINTR) means the connection is under way: wait for
/// POLLOUT, then ask [`take_error`].
pub fn connect_vsock(fd: BorrowedFd<'_>, cid: u32, port: u32) -> Result<(), Errno> {
    let addr = vsock_addr(cid, port);
    // SAFETY: connect with an initialised sockaddr_vm of its own size.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&addr as *const libc::sockaddr_vm).cast(), VM_LEN) })?;
    Ok(())
}

/// SO_ERROR: the outcome of a finished non-blocking connect (`Ok`:
/// connected), reading it clears it. A failed query counts as connected,
/// and the next I/O reports the error.
pub fn take_error(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR into a c_int of the stated size.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    match err {
        0 => Ok(()),
        e => Err(Errno(e)),
    }
}

/// `send(2)` with MSG_NOSIGNAL (a gone peer is EPIPE, never SIGPIPE),
/// retried on EINTR: the bytes the socket took.
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> Result<usize, Errno> {
    // SAFETY: send from a live slice of its own length.
    let n = cvt_r(|| unsafe { libc::send(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) })?;
    Ok(n.unsigned_abs())
}

/// `listen(2)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<(), Errno> {
    // SAFETY: listen on a live socket.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(())
}

/// Who is at the other end of an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// `SO_PEERCRED` of a unix socket: the credentials the client had when
    /// it called connect(2) (uid `u32::MAX`, pid 0 if the query failed).
    Unix {
        uid: u32,
        pid: i32,
    },
    /// The accepted `sockaddr_vm`: the client's CID and port.
    Vsock {
        cid: u32,
        port: u32,
    },
    Other,
}

/// `accept4(2)` of one pending client, non-blocking and close-on-exec
/// (retried on EINTR), on a listener known by number (a closed number
/// only yields EBADF), with the peer's identity: its `sockaddr_vm` for
/// vsock, `SO_PEERCRED` for a unix socket.
pub fn accept_peer(listener: RawFd) -> Result<(OwnedFd, Peer), Errno> {
    let mut addr: libc::sockaddr_storage = zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let fd = cvt_r(|| {
        // SAFETY: accept4 on a descriptor number, the peer address into a
        // sockaddr_storage with its true size.
        unsafe {
            libc::accept4(
                listener,
                (&mut addr as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            )
        }
    })?;
    // SAFETY: fd was just accepted and belongs to nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let peer = match libc::c_int::from(addr.ss_family) {
        libc::AF_VSOCK => {
            // SAFETY: the kernel filled a sockaddr_vm (smaller than the
            // storage, which is aligned for any address).
            let vm = unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_vm>() };
            Peer::Vsock { cid: vm.svm_cid, port: vm.svm_port }
        }
        libc::AF_UNIX => {
            let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
            let mut clen = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
            // SAFETY: SO_PEERCRED into a ucred of the stated size.
            let rc = unsafe {
                libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_PEERCRED,
                    (&mut cred as *mut libc::ucred).cast(),
                    &mut clen,
                )
            };
            if rc != 0 {
                cred = libc::ucred { pid: 0, uid: u32::MAX, gid: u32::MAX };
            }
            Peer::Unix { uid: cred.uid, pid: cred.pid }
        }
        _ => Peer::Other,
    };
    Ok((fd, peer))
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
