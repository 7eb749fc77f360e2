//! Connecting: unix socket, vsock, hybrid vsock (with its CONNECT
//! handshake), retried together with the sync until `connect_timeout`.

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::io::FillError;
use super::sync::SyncError;
use super::{ms_until, secs, Options, Session, Target};
use crate::fail::{Failure, Result};
use qga_sys::poll::{poll, Events, PollFd, POLLOUT};
use qga_sys::{fd as sysfd, socket, Errno};

/// Longest pause between two connection attempts.
const CONNECT_RETRY_MAX: Duration = Duration::from_millis(100);

fn wait_fd(fd: RawFd, events: Events, deadline: Instant) -> bool {
    loop {
        match poll(&mut [PollFd::new(fd, events)], ms_until(deadline)) {
            Ok(r) if r > 0 => return true,
            Ok(_) => return false,
            Err(Errno::EINTR) => continue,
            Err(_) => return Instant::now() < deadline,
        }
    }
}

fn connect_unix(path: &PathBuf) -> std::result::Result<OwnedFd, String> {
    match UnixStream::connect(path) {
        Ok(s) => {
            let fd: OwnedFd = s.into();
            let _ = sysfd::set_nonblocking(fd.as_fd());
            Ok(fd)
        }
        Err(e) => Err(match e.kind() {
            ErrorKind::NotFound => "no such socket".to_string(),
            ErrorKind::ConnectionRefused => "connection refused (nobody is listening on the socket)".to_string(),
            _ => Errno::of(&e).to_string(),
        }),
    }
}

fn connect_vsock(cid: u32, port: u32, deadline: Instant) -> std::result::Result<OwnedFd, String> {
    let fd = socket::stream_socket(socket::Family::Vsock).map_err(|e| {
        if e == Errno::EAFNOSUPPORT {
            "vsock is not available on this host (load the vhost_vsock / vsock_loopback module)".to_string()
        } else {
            e.to_string()
        }
    })?;
    if let Err(e) = socket::connect_vsock(fd.as_fd(), cid, port) {
        if e != Errno::EINPROGRESS && e != Errno::EINTR {
            return Err(e.to_string());
        }
        if !wait_fd(fd.as_raw_fd(), POLLOUT, deadline) {
            return Err("connection timed out".to_string());
        }
        if let Err(e) = socket::take_error(fd.as_fd()) {
            return Err(e.to_string());
        }
    }
    Ok(fd)
}

impl Session {
    /// Connects and synchronises, retrying both until `connect_timeout`.
    pub fn open(opts: &Options) -> Result<Session> {
        let start = Instant::now();
        let deadline = start + opts.connect_timeout;
        let mut last_err;
        loop {
            match Self::connect(opts, deadline) {
                Err(e) => last_err = e,
                Ok(mut s) => match s.sync(deadline) {
                    Ok(()) => return Ok(s),
                    Err(SyncError::Timeout) => {
                        return Err(Failure::Connection(format!(
                            "{}: the agent did not answer guest-sync-delimited within {} (is the agent running? a unix-listen agent serves one client at a time)",
                            opts.target,
                            secs(opts.connect_timeout)
                        )))
                    }
                    Err(SyncError::Closed(e)) => last_err = e,
                },
            }
            if Instant::now() >= deadline {
                let hint = match &opts.target {
                    Target::Unix(_) => " (is the agent running? set --socket or QGA_SOCKET)",
                    _ => "",
                };
                return Err(Failure::Connection(format!("cannot connect to {}: {last_err}{hint}", opts.target)));
            }
            // An agent that is starting answers within milliseconds: retry
            // after a tenth of the time waited so far (1 ms at first, at most
            // CONNECT_RETRY_MAX), so the wait overshoots by about 10 %.
            let pause = (start.elapsed() / 10).clamp(Duration::from_millis(1), CONNECT_RETRY_MAX);
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        }
    }

    fn connect(opts: &Options, deadline: Instant) -> std::result::Result<Session, String> {
        match &opts.target {
            Target::Unix(p) => connect_unix(p).map(|fd| Session::new(fd, opts)),
            Target::Vsock { cid, port } => connect_vsock(*cid, *port, deadline).map(|fd| Session::new(fd, opts)),
            Target::Hybrid { path, port } => {
                let mut s = Session::new(connect_unix(path)?, opts);
                s.write_all(format!("CONNECT {port}\n").as_bytes(), deadline).map_err(|f| f.to_string())?;
                let mut dl = deadline;
                loop {
                    if let Some(line) = s.rx.take_line() {
                        let text = String::from_utf8_lossy(&line);
                        if text.starts_with("OK") {
                            return Ok(s);
                        }
                        return Err(format!("hybrid vsock handshake failed: the backend answered '{}'", text.trim()));
                    }
                    match s.fill(&mut dl, None, false) {
                        Ok(_) => {}
                        Err(FillError::Closed) => {
                            return Err(format!("hybrid vsock handshake failed: the backend closed the connection (nothing listening on port {port}?)"))
                        }
                        Err(FillError::Timeout) => return Err("hybrid vsock handshake failed: no answer to CONNECT".to_string()),
                        Err(FillError::Other(m)) => return Err(format!("hybrid vsock handshake failed: {m}")),
                    }
                }
            }
        }
    }
}
