//! Channel kinds: how the agent's connection to the host is opened.
//! Listening sockets (unix, vsock, or one inherited through systemd socket
//! activation) serve up to `--max-clients` clients at once (default 1, as
//! qemu-ga), each with its own framer and reply order; devices
//! (virtio-serial, isa-serial) are a single fd that stays open forever.
//!
//! virtio-serial while the host end is closed: the port reports
//! POLLIN|POLLHUP and read() returns 0 for as long as nobody is connected.
//! mio registers fds edge-triggered, so that state produces one wakeup,
//! not a stream of them: after read() returns 0 the agent simply waits.
//! The virtio_console driver wakes the port's wait queue when the host
//! opens the port and when data arrives, which is the next edge. As a
//! second, independent wake-up the port is also put in O_ASYNC mode with
//! the agent as owner, so the driver's SIGIO on host open/close reaches the
//! signalfd (it also comes with every request: blocked and read from the
//! signalfd it costs one read, where a handler cost a signal frame).
//! Either way: zero wakeups while the host is away (qemu-ga polls 10 times
//! a second).

pub mod device;
pub mod socket;

use std::os::fd::{AsFd, OwnedFd};

use crate::sys;

/// The `-m` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    VirtioSerial,
    IsaSerial,
    UnixListen,
    VsockListen,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "virtio-serial" => Some(Method::VirtioSerial),
            "isa-serial" => Some(Method::IsaSerial),
            "unix-listen" => Some(Method::UnixListen),
            "vsock-listen" => Some(Method::VsockListen),
            _ => None,
        }
    }
}

/// An opened channel endpoint.
#[derive(Debug)]
pub enum Endpoint {
    Listener(OwnedFd),
    Device(OwnedFd),
}

/// Opens the endpoint for `method` at `path`; a listening socket has room
/// in its backlog for `max_clients` clients.
pub fn open(method: Method, path: &str, max_clients: usize) -> Result<Endpoint, String> {
    match method {
        Method::VirtioSerial => device::open_virtio(path).map(Endpoint::Device),
        Method::IsaSerial => device::open_serial(path).map(Endpoint::Device),
        Method::UnixListen => socket::unix_listen(path, max_clients).map(Endpoint::Listener),
        Method::VsockListen => socket::vsock_listen(path, max_clients).map(Endpoint::Listener),
    }
}

/// Marks an fd close-on-exec.
pub fn set_cloexec(fd: &OwnedFd) {
    let _ = sys::fd::set_cloexec(fd.as_fd());
}
