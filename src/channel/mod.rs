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

use crate::audit::ClientInfo;
use crate::config::Config;
use crate::{log, sys};

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

/// The channel checks (`--allow-vsock-cids`, `--allow-unix-uids`): which
/// clients of a listening socket are served. A device (virtio-serial,
/// isa-serial) has no peer identity, so the checks do not apply to it.
#[derive(Debug, Default)]
pub struct ClientCheck {
    vsock_cids: Option<Vec<u32>>,
    unix_uids: Option<Vec<u32>>,
}

impl ClientCheck {
    /// The checks of `cfg`, user names resolved now. A name with no
    /// passwd entry allows nobody (a warning says so).
    pub fn new(cfg: &Config) -> ClientCheck {
        let unix_uids = cfg.allow_unix_uids.as_ref().map(|l| {
            l.iter()
                .filter_map(|u| match sys::user::lookup(u) {
                    Ok(Some(p)) => Some(p.uid),
                    _ => {
                        let uid = u.parse().ok();
                        if uid.is_none() {
                            log::warning(&format!("allow-unix-uids: no such user '{u}'"));
                        }
                        uid
                    }
                })
                .collect()
        });
        ClientCheck { vsock_cids: cfg.allow_vsock_cids.clone(), unix_uids }
    }

    /// Whether `client` may be served.
    pub fn allows(&self, client: &ClientInfo) -> bool {
        let listed = |l: &Option<Vec<u32>>, id: u32| l.as_ref().is_none_or(|l| l.contains(&id));
        match *client {
            ClientInfo::Unix { uid, .. } => listed(&self.unix_uids, uid),
            ClientInfo::Vsock { cid, .. } => listed(&self.vsock_cids, cid),
            ClientInfo::VirtioSerial | ClientInfo::IsaSerial => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_checks() {
        let open = ClientCheck::new(&Config::default());
        assert!(open.allows(&ClientInfo::Unix { uid: 1000, pid: 1 }));
        assert!(open.allows(&ClientInfo::Vsock { cid: 7, port: 1 }));
        let cfg = Config {
            allow_vsock_cids: Some(vec![2]),
            allow_unix_uids: Some(vec!["root".into(), "1000".into(), "qga-no-such-user".into()]),
            ..Default::default()
        };
        let c = ClientCheck::new(&cfg);
        assert!(c.allows(&ClientInfo::Vsock { cid: 2, port: 1234 }));
        assert!(!c.allows(&ClientInfo::Vsock { cid: 3, port: 1234 }));
        assert!(!c.allows(&ClientInfo::Vsock { cid: 1, port: 1234 }));
        assert!(c.allows(&ClientInfo::Unix { uid: 0, pid: 1 }));
        assert!(c.allows(&ClientInfo::Unix { uid: 1000, pid: 1 }));
        assert!(!c.allows(&ClientInfo::Unix { uid: 1001, pid: 1 }));
        assert!(!c.allows(&ClientInfo::Unix { uid: u32::MAX, pid: 0 }));
        // Devices have no identity: never refused.
        assert!(c.allows(&ClientInfo::VirtioSerial) && c.allows(&ClientInfo::IsaSerial));
        // An empty list serves nobody.
        let none = ClientCheck::new(&Config { allow_vsock_cids: Some(vec![]), ..Default::default() });
        assert!(!none.allows(&ClientInfo::Vsock { cid: 2, port: 1 }));
        assert!(none.allows(&ClientInfo::Unix { uid: 5, pid: 1 }));
    }
}
