//! Set-up of a `std::process::Command`'s child between fork and exec
//! (`CommandExt::pre_exec` is unsafe: only async-signal-safe calls may run
//! there, and these hooks make none but close, fcntl and dup2). For the
//! tests, which start the agent with unusual descriptors.

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The child starts with fds 0, 1 and 2 closed.
pub fn close_stdio_in_child(cmd: &mut Command) {
    // SAFETY: the hook only calls close(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for fd in 0..3 {
                libc::close(fd);
            }
            Ok(())
        });
    }
}

/// The child gets `fds` as 3, 4, ... (as systemd passes listening
/// sockets), not close-on-exec; each is first duplicated above 100, so a
/// source that is itself one of the targets is not overwritten first.
pub fn pass_fds_in_child(cmd: &mut Command, fds: &[RawFd]) {
    // Allocated here, not between fork and exec.
    let fds = fds.to_vec();
    let mut tmp = vec![-1; fds.len()];
    // SAFETY: the hook only calls fcntl(2) and dup2(2), which are
    // async-signal-safe, and writes into a buffer allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for (t, &f) in tmp.iter_mut().zip(&fds) {
                *t = libc::fcntl(f, libc::F_DUPFD_CLOEXEC, 100);
            }
            for (i, &t) in tmp.iter().enumerate() {
                if t < 0 || libc::dup2(t, 3 + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}
