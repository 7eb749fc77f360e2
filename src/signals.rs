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

impl SignalPipe {
    pub fn new(registry: &Registry, token: Token) -> std::io::Result<Self> {
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
        let mut reader = mio::net::UnixStream::from_std(r);
        registry.register(&mut reader, token, Interest::READABLE)?;
        Ok(SignalPipe { reader, flags })
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
