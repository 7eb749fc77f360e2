//! The signal self-pipe: signal-hook writes a byte per signal into a
//! socket pair whose read end sits in the mio poll; per-signal flags say
//! which signals arrived.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::{Interest, Registry, Token};

/// Signals the agent handles.
pub const HANDLED: [libc::c_int; 5] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGIO, libc::SIGHUP];

pub struct SignalPipe {
    reader: mio::net::UnixStream,
    flags: Vec<(libc::c_int, Arc<AtomicBool>)>,
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
        Ok(SignalPipe { reader, flags })
    }

    /// Watches the pipe in a poll.
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(&mut self.reader, token, Interest::READABLE)
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
        let mut p = Pending::default();
        for (sig, flag) in &self.flags {
            if flag.swap(false, Ordering::SeqCst) {
                match *sig {
                    libc::SIGCHLD => p.child = true,
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
