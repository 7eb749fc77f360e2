//! Listening sockets: unix-listen, vsock-listen and systemd activation.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd, RawFd};

use crate::audit::ClientInfo;
use crate::sys::socket::{self, Family, Peer};
use crate::sys::{fd, fs, Errno};

use super::Method;

/// The listen(2) backlog for `max_clients` clients served at once: room
/// for all of them to connect back to back before the agent accepts any
/// (a full backlog makes a non-blocking connect fail with EAGAIN). One
/// client, qemu-ga's only mode, keeps its backlog of 1.
fn backlog(max_clients: usize) -> i32 {
    i32::try_from(max_clients.max(1)).unwrap_or(i32::MAX)
}

/// qemu-ga's `unix_listen()`: unlink a stale socket, bind, listen (with
/// a backlog of 1 there; [`backlog`] here).
pub fn unix_listen(path: &str, max_clients: usize) -> Result<OwnedFd, String> {
    let fail = |what: &str, e: Errno| format!("{what} socket '{path}': {e}");
    let bytes = path.as_bytes();
    if bytes.len() >= socket::unix_path_max() {
        return Err(format!("UNIX socket path '{path}' is too long"));
    }
    let c = CString::new(path).map_err(|_| format!("Failed to unlink socket {path}"))?;
    match fs::unlink(&c) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(format!("Failed to unlink socket {path}: {e}")),
    }
    let fd = socket::stream_socket(Family::Unix).map_err(|e| fail("Failed to create", e))?;
    socket::bind_unix(fd.as_fd(), bytes).map_err(|e| fail("Failed to bind", e))?;
    socket::listen(fd.as_fd(), backlog(max_clients)).map_err(|e| fail("Failed to listen on", e))?;
    Ok(fd)
}

/// vsock-listen `<cid>:<port>` (decimal): qemu-ga's `socket_listen()`
/// with a backlog of 1; [`backlog`] here.
pub fn vsock_listen(spec: &str, max_clients: usize) -> Result<OwnedFd, String> {
    let parse = || -> Option<(u32, u32)> {
        let (cid, port) = spec.split_once(':')?;
        Some((cid.parse().ok()?, port.parse().ok()?))
    };
    let (cid, port) = parse().ok_or_else(|| format!("error parsing address '{spec}'"))?;
    let fd = socket::stream_socket(Family::Vsock).map_err(|e| format!("Failed to create socket: {e}"))?;
    socket::bind_vsock(fd.as_fd(), cid, port).map_err(|e| format!("Failed to bind socket: {e}"))?;
    socket::listen(fd.as_fd(), backlog(max_clients)).map_err(|e| format!("Failed to listen on socket: {e}"))?;
    Ok(fd)
}

/// Accepts one pending client, non-blocking and close-on-exec, with who
/// it is: its uid and pid (SO_PEERCRED) or its vsock CID and port.
pub fn accept(listener: RawFd) -> Option<(OwnedFd, ClientInfo)> {
    let (fd, peer) = socket::accept_peer(listener).ok()?;
    let client = match peer {
        Peer::Vsock { cid, port } => ClientInfo::Vsock { cid, port },
        Peer::Unix { uid, pid } => ClientInfo::Unix { uid, pid },
        Peer::Other => ClientInfo::Unix { uid: u32::MAX, pid: 0 },
    };
    Some((fd, client))
}

/// systemd socket activation (`LISTEN_PID`/`LISTEN_FDS`): the inherited
/// listening socket and the method its family implies. `Ok(None)` when
/// the agent was not socket-activated.
pub fn from_systemd() -> Result<Option<(OwnedFd, Method)>, String> {
    let pid_ok =
        std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()).is_some_and(|p| p == std::process::id());
    let count = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<i32>().ok());
    let Some(count) = count.filter(|_| pid_ok) else { return Ok(None) };
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if count != 1 {
        return Err("qemu-ga only supports listening on one socket".into());
    }
    let fd = socket::take_systemd_listener();
    super::set_cloexec(&fd);
    let method = match socket::family(fd.as_fd()) {
        Err(e) => return Err(format!("failed to query the activated socket: {e}")),
        Ok(Family::Unix) => Method::UnixListen,
        Ok(Family::Vsock) => Method::VsockListen,
        Ok(Family::Other(other)) => return Err(format!("unsupported socket family {other} from socket activation")),
    };
    let _ = fd::set_nonblocking(fd.as_fd());
    Ok(Some((fd, method)))
}
