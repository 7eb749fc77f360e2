//! Signals as poll events. The frequent ones, SIGCHLD (one per process)
//! and SIGIO (one per request on a virtio port), come through a signalfd
//! (sys::signal::SignalFd: no handler runs); the rare ones (SIGTERM,
//! SIGINT, SIGHUP) through a self-pipe:
//! signal-hook writes a byte per signal into a socket pair whose read end
//! sits in the mio poll, and per-signal flags say which arrived. Both fds
//! are registered under the same token.
//!
//! SIGHUP is caught only so that it does not end the agent (its default
//! action): its flag is taken with the others and otherwise ignored;
//! nothing in the agent reloads on it.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::sys::libc;
use crate::sys::signal::SignalFd;

/// Signals handled through the self-pipe.
pub const HANDLED: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
/// Signals read from the signalfd, in the order `SignalFd::drain` reports them.
const FROM_FD: [libc::c_int; 2] = [libc::SIGCHLD, libc::SIGIO];

pub struct SignalPipe {
    reader: mio::net::UnixStream,
    flags: Vec<(libc::c_int, Arc<AtomicBool>)>,
    frequent: SignalFd,
}

/// Which signals arrived since the last drain.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pending {
    pub child: bool,
    pub terminate: bool,
    pub io: bool,
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
        let frequent = SignalFd::new(&FROM_FD).map_err(std::io::Error::from)?;
        Ok(SignalPipe { reader, flags, frequent })
    }

    /// Watches the pipe and the signalfd in a poll.
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(&mut self.reader, token, Interest::READABLE)?;
        registry.register(&mut SourceFd(&self.frequent.as_raw_fd()), token, Interest::READABLE)
    }

    /// Empties the pipe and the signalfd; returns the signals seen.
    pub fn drain(&mut self) -> Pending {
        // The pipe is read only when one of its signals came (the shared
        // token also fires for every SIGCHLD and SIGIO). Reading it before
        // taking the flags keeps a signal landing in between: its byte
        // makes the next wakeup.
        if self.flags.iter().any(|(_, f)| f.load(Ordering::SeqCst)) {
            self.read_pipe();
        }
        let seen = self.frequent.drain();
        let mut p = Pending { child: seen & 1 != 0, io: seen & 2 != 0, ..Pending::default() };
        for (sig, flag) in &self.flags {
            // Every flag is taken; SIGHUP's has no effect (module doc).
            if flag.swap(false, Ordering::SeqCst) && matches!(*sig, libc::SIGTERM | libc::SIGINT) {
                p.terminate = true;
            }
        }
        p
    }

    /// Reads everything in the self-pipe.
    fn read_pipe(&mut self) {
        let mut buf = [0u8; 64];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }
}
