//! Where the agent is, and the session's time limits.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where the agent is.
#[derive(Debug, Clone)]
pub enum Target {
    /// QEMU's chardev socket for the agent port, or qga's unix-listen socket.
    Unix(PathBuf),
    /// AF_VSOCK to CID:PORT.
    Vsock { cid: u32, port: u32 },
    /// A user-space vsock backend's unix socket (Firecracker, Cloud
    /// Hypervisor): `CONNECT <port>\n` → `OK <n>\n`, then the stream.
    Hybrid { path: PathBuf, port: u32 },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Vsock { cid, port } => write!(f, "vsock {cid}:{port}"),
            Target::Hybrid { path, port } => write!(f, "{} (hybrid vsock port {port})", path.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub target: Target,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
}
