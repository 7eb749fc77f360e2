//! SIGINT/SIGTERM/SIGHUP as bytes on a self-pipe, so that every wait in
//! the client (poll on the agent's socket) can also wake up for them.
//! Installed only by `exec`; other subcommands keep the default action.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Instant;

use qga_sys::fd;
use qga_sys::poll::{poll, PollFd, POLLIN};
use qga_sys::signal::{self, SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGTERM, SIGWINCH};

/// Read end of the self-pipe, once installed.
static READ_END: OnceLock<OwnedFd> = OnceLock::new();

/// Routes SIGINT, SIGTERM and SIGHUP to the self-pipe (those not ignored).
pub fn install() {
    if READ_END.get().is_some() {
        return;
    }
    let Ok((r, w)) = fd::pipe_nonblocking() else { return };
    if READ_END.set(r).is_err() {
        return;
    }
    signal::route_to_pipe(w, &[SIGINT, SIGTERM, SIGHUP]);
}

/// Routes SIGWINCH to the self-pipe as well (`exec -t`), after [`install`].
pub fn install_winch() {
    install();
    if READ_END.get().is_some() {
        signal::route_more_to_pipe(&[SIGWINCH]);
    }
}

/// The read end of the self-pipe, once installed.
pub fn fd() -> Option<RawFd> {
    READ_END.get().map(|fd| fd.as_raw_fd())
}

/// Signals received since the last call, oldest first.
pub fn take() -> Vec<i32> {
    let Some(fd) = READ_END.get() else { return Vec::new() };
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n @ 1..) = fd::read(fd.as_fd(), &mut buf) {
        out.extend(buf[..n].iter().map(|&b| b as i32));
    }
    out
}

/// True (and the signals consumed) if a signal arrived since the last check.
pub fn interrupted() -> bool {
    !take().is_empty()
}

/// Sleeps until `until` or until a signal arrives (then returns true; the
/// signal stays pending for `take`).
pub fn sleep_until(until: Instant) -> bool {
    loop {
        let now = Instant::now();
        if now >= until {
            return false;
        }
        let ms = until.duration_since(now).as_millis().clamp(1, i32::MAX as u128) as i32;
        match fd() {
            None => std::thread::sleep(until - now),
            Some(fd) => {
                if poll(&mut [PollFd::new(fd, POLLIN)], ms).is_ok_and(|r| r > 0) {
                    return true;
                }
            }
        }
    }
}

/// The short name of the signals qgactl forwards.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGHUP => "HUP",
        SIGINT => "INT",
        SIGKILL => "KILL",
        SIGPIPE => "PIPE",
        SIGTERM => "TERM",
        _ => "KILL",
    }
}
