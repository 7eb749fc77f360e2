//! SIGINT/SIGTERM/SIGHUP as bytes on a self-pipe, so that every wait in
//! the client (poll on the agent's socket) can also wake up for them.
//! Installed only by `exec`; other subcommands keep the default action.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

static READ_FD: AtomicI32 = AtomicI32::new(-1);
static WRITE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = WRITE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) and errno access are async-signal-safe.
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            let b = sig as u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
            *errno = saved;
        }
    }
}

/// Routes SIGINT, SIGTERM and SIGHUP to the self-pipe (those not ignored).
pub fn install() {
    if READ_FD.load(Ordering::Relaxed) >= 0 {
        return;
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return;
    }
    READ_FD.store(fds[0], Ordering::Relaxed);
    WRITE_FD.store(fds[1], Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction with our handler and an empty mask.
        unsafe {
            // A signal ignored at startup (`qgactl ... &` in a script,
            // nohup) stays ignored, as shells expect.
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The read end of the self-pipe, once installed.
pub fn fd() -> Option<RawFd> {
    let fd = READ_FD.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Signals received since the last call, oldest first.
pub fn take() -> Vec<i32> {
    let Some(fd) = fd() else { return Vec::new() };
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: read into a local buffer of its stated size.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend(buf[..n as usize].iter().map(|&b| b as i32));
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
        let ms = until.duration_since(now).as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        match fd() {
            None => std::thread::sleep(until - now),
            Some(fd) => {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll on one valid pollfd.
                let r = unsafe { libc::poll(&mut p, 1, ms) };
                if r > 0 {
                    return true;
                }
            }
        }
    }
}

/// The short name of the signals qgactl forwards.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "HUP",
        libc::SIGINT => "INT",
        libc::SIGKILL => "KILL",
        libc::SIGPIPE => "PIPE",
        libc::SIGTERM => "TERM",
        _ => "KILL",
    }
}
