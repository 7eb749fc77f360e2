//! Transport (unix socket, vsock, hybrid vsock) and the QGA session:
//! connect, resynchronise with 0xFF + guest-sync-delimited, then strictly
//! ordered request/reply lines. Every wait has a deadline; the socket is
//! non-blocking and all waiting happens in poll(2), which also watches the
//! signal self-pipe when the caller asks for it.
//!
//! `target.rs`: where the agent is; `connect.rs`: connecting and retrying;
//! `sync.rs`: the resynchronisation; `framing.rs`: the receive buffer and
//! its lines; `io.rs`: the socket reads, writes and waits; `request.rs`:
//! sending requests and reading their replies; `reply.rs`: decoding one.

mod connect;
mod framing;
mod io;
mod reply;
mod request;
mod sync;
mod target;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

pub use reply::{parse_reply, Reply};
pub use target::{Options, Target};

use framing::LineBuf;

/// What a wait in [`Session::next_event`] ended with.
pub enum Event {
    /// One reply line (without the newline; 0xFF bytes stripped).
    Line(Vec<u8>),
    /// A signal is pending (see [`crate::signals::take`]).
    Signal,
    /// The caller's wake-up time passed.
    Wake,
    /// The caller's extra descriptor (`watch`) is readable.
    Watch,
}

pub struct Session {
    fd: OwnedFd,
    /// Received bytes not yet returned as lines.
    rx: LineBuf,
    pub reply_timeout: Duration,
    pub target: Target,
    /// The id that the session's guest-sync-delimited echoed.
    pub sync_id: i64,
}

const READ_CHUNK: usize = 1 << 20;

fn ms_until(t: Instant) -> i32 {
    let now = Instant::now();
    if t <= now {
        0
    } else {
        // Round up so that we do not spin just before the deadline.
        (t.duration_since(now).as_micros().div_ceil(1000)).min(i32::MAX as u128) as i32
    }
}

/// A random sync id in 0..2^53 (exact in every JSON implementation).
pub fn random_id() -> i64 {
    let mut b = [0u8; 8];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok();
    let mut v = u64::from_le_bytes(b);
    if !ok {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        v = (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 32);
    }
    (v & ((1u64 << 53) - 1)) as i64
}

/// Random lowercase hex, for names of staging files in the guest.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_err() {
        let seed = random_id() as u64;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed.rotate_left(i as u32 * 7) ^ (i as u64 * 0x9E37_79B9)) as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Session {
    fn new(fd: OwnedFd, opts: &Options) -> Session {
        Session {
            fd,
            rx: LineBuf::default(),
            reply_timeout: opts.reply_timeout,
            target: opts.target.clone(),
            sync_id: 0,
        }
    }
}

/// "5 s", "0.5 s".
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{} s", s as u64)
    } else {
        format!("{s} s")
    }
}

/// A session on one end of a socket pair, the "agent" on the other.
#[cfg(test)]
fn test_pair(reply_timeout: Duration) -> (Session, std::os::unix::net::UnixStream) {
    use std::os::fd::AsFd;
    let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let fd: OwnedFd = a.into();
    // Best effort, as before: a blocking socket only makes waits longer.
    let _ = qga_sys::fd::set_nonblocking(fd.as_fd());
    let opts = Options { target: Target::Unix("/test.sock".into()), connect_timeout: reply_timeout, reply_timeout };
    (Session::new(fd, &opts), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_text() {
        assert_eq!(secs(Duration::from_secs(5)), "5 s");
        assert_eq!(secs(Duration::from_millis(500)), "0.5 s");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5 s");
    }

    #[test]
    fn random_ids_fit_in_53_bits_and_hex_is_lowercase() {
        for _ in 0..100 {
            let id = random_id();
            assert!((0..1 << 53).contains(&id), "{id}");
        }
        let h = random_hex(16);
        assert_eq!(h.len(), 32);
        assert!(h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{h}");
        assert_ne!(random_hex(16), h);
    }
}
