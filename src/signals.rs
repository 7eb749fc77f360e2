//! Signals as poll events. SIGCHLD, the frequent one (one per process),
//! comes through a signalfd (sys::signal::ChildSignalFd: no handler runs);
//! the rare ones (SIGTERM, SIGINT, SIGIO, SIGHUP) through a self-pipe:
//! signal-hook writes a byte per signal into a socket pair whose read end
//! sits in the mio poll, and per-signal flags say which arrived. Both fds
//! are registered under the same token.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::sys::signal::ChildSignalFd;

/// Signals handled through the self-pipe (SIGCHLD has its signalfd).
pub const HANDLED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGIO, libc::SIGHUP];

pub struct SignalPipe {
    reader: mio::net::UnixStream,
    flags: Vec<(libc::c_int, Arc<AtomicBool>)>,
    child: ChildSignalFd,
}

/// Which signals arrived since the last drain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    pub child: bool,
    pub terminate: bool,
    pub io: bool,
    pub hangup: bool,
}

impl std::fmt::Debug for SignalPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalPipe").finish_non_exhaustive()
    }
}

impl SignalPipe {
    /// Installs the handlers. Done before the channel is opened, so that a
    /// signal arriving while a client can already connect is not fatal.
    pub fn new() -> std::io::Result<Self> {
        let (r, w) = UnixStream::pair()?;
        r.set_nonblocking(true)?;
        w.set_nonblocking(true)?;
        let mut flags = Vec::new();
        for &sig in &HANDLED {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
            signal_hook::low_level::pipe::register(sig, w.try_clone()?)?;
            flags.push((sig, flag));
        }
        let reader = mio::net::UnixStream::from_std(r);
        let child = ChildSignalFd::new().map_err(std::io::Error::from)?;
        Ok(SignalPipe { reader, flags, child })
    }

    /// Watches the pipe and the signalfd in a poll.
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(&mut self.reader, token, Interest::READABLE)?;
        registry.register(&mut SourceFd(&self.child.as_raw_fd()), token, Interest::READABLE)
    }

    /// Empties the pipe and returns the signals seen.
    pub fn drain(&mut self) -> Pending {
        let mut buf = [0u8; 64];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut p = Pending { child: self.child.drain(), ..Pending::default() };
        for (sig, flag) in &self.flags {
            if flag.swap(false, Ordering::SeqCst) {
                match *sig {
                    libc::SIGTERM | libc::SIGINT => p.terminate = true,
                    libc::SIGIO => p.io = true,
                    libc::SIGHUP => p.hangup = true,
                    _ => {}
                }
            }
        }
        p
    }
}
