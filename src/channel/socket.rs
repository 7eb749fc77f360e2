//! Listening sockets: unix-listen, vsock-listen and systemd activation.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::sys::strerror;

use super::Method;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

fn socket(family: libc::c_int) -> Result<OwnedFd, i32> {
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// qemu-ga's `unix_listen()`: unlink a stale socket, bind, listen(1).
pub fn unix_listen(path: &str) -> Result<OwnedFd, String> {
    let fail = |what: &str, e: i32| format!("{what} socket '{path}': {}", strerror(e));
    let mut addr: libc::sockaddr_un = unsafe_zeroed();
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(format!("UNIX socket path '{path}' is too long"));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let c = CString::new(path).map_err(|_| format!("Failed to unlink socket {path}"))?;
    // SAFETY: unlink with a NUL-terminated path.
    if unsafe { libc::unlink(c.as_ptr()) } < 0 && errno() != libc::ENOENT {
        return Err(format!("Failed to unlink socket {path}: {}", strerror(errno())));
    }
    let fd = socket(libc::AF_UNIX).map_err(|e| fail("Failed to create", e))?;
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: bind with a fully initialised sockaddr_un and its used length.
    if unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t) } < 0 {
        return Err(fail("Failed to bind", errno()));
    }
    // SAFETY: listen on our bound socket; backlog 1 as qemu-ga.
    if unsafe { libc::listen(fd.as_raw_fd(), 1) } < 0 {
        return Err(fail("Failed to listen on", errno()));
    }
    Ok(fd)
}

fn unsafe_zeroed<T>() -> T {
    // SAFETY: only used for plain C socket address structs, valid when zeroed.
    unsafe { std::mem::zeroed() }
}

/// vsock-listen `<cid>:<port>` (decimal), listen(1).
pub fn vsock_listen(spec: &str) -> Result<OwnedFd, String> {
    let parse = || -> Option<(u32, u32)> {
        let (cid, port) = spec.split_once(':')?;
        Some((cid.parse().ok()?, port.parse().ok()?))
    };
    let (cid, port) = parse().ok_or_else(|| format!("error parsing address '{spec}'"))?;
    let fd = socket(libc::AF_VSOCK).map_err(|e| format!("Failed to create socket: {}", strerror(e)))?;
    let mut addr: libc::sockaddr_vm = unsafe_zeroed();
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    // SAFETY: bind with an initialised sockaddr_vm of its own size.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    } < 0
    {
        return Err(format!("Failed to bind socket: {}", strerror(errno())));
    }
    // SAFETY: listen on our bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 1) } < 0 {
        return Err(format!("Failed to listen on socket: {}", strerror(errno())));
    }
    Ok(fd)
}

/// Accepts one pending client, non-blocking and close-on-exec.
pub fn accept(listener: RawFd) -> Option<OwnedFd> {
    loop {
        // SAFETY: accept4 on our listening socket, peer address not wanted.
        let fd = unsafe {
            libc::accept4(listener, std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
        };
        if fd >= 0 {
            // SAFETY: fd was just accepted and is owned by nobody else.
            return Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if errno() == libc::EINTR {
            continue;
        }
        return None;
    }
}

/// systemd socket activation (`LISTEN_PID`/`LISTEN_FDS`): the inherited
/// listening socket and the method its family implies. `Ok(None)` when
/// the agent was not socket-activated.
pub fn from_systemd() -> Result<Option<(OwnedFd, Method)>, String> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok());
    let Some(count) = count.filter(|_| pid_ok) else { return Ok(None) };
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if count != 1 {
        return Err("qemu-ga only supports listening on one socket".into());
    }
    const SD_LISTEN_FDS_START: RawFd = 3;
    // SAFETY: systemd passed fd 3 to us; we take ownership of it.
    let fd = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
    super::set_cloexec(&fd);
    let mut addr: libc::sockaddr_storage = unsafe_zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname into a sockaddr_storage with its size.
    if unsafe { libc::getsockname(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len) } < 0 {
        return Err(format!("failed to query the activated socket: {}", strerror(errno())));
    }
    let method = match addr.ss_family as libc::c_int {
        libc::AF_UNIX => Method::UnixListen,
        libc::AF_VSOCK => Method::VsockListen,
        other => return Err(format!("unsupported socket family {other} from socket activation")),
    };
    // SAFETY: make the inherited listener non-blocking.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    Ok(Some((fd, method)))
}
