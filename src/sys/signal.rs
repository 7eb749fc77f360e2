//! Signal dispositions beyond what signal-hook's safe API offers.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::{cvt, Errno};

/// The highest real-time signal number.
pub fn max_signal() -> libc::c_int {
    libc::SIGRTMAX()
}

/// On `sig`: store `code` into `slot` (unless a code is already there),
/// set `flag`, and when `raise` is given, raise that signal too. Only
/// atomics and raise(3) run in the handler, both async-signal-safe.
pub fn on_signal_record(
    sig: libc::c_int,
    slot: &'static AtomicU8,
    code: u8,
    flag: &'static AtomicBool,
    raise: Option<libc::c_int>,
) -> Result<(), Errno> {
    let action = move || {
        let _ = slot.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        flag.store(true, Ordering::SeqCst);
        if let Some(r) = raise {
            // SAFETY: raise(3) is async-signal-safe.
            unsafe { libc::raise(r) };
        }
    };
    // SAFETY: the action only touches atomics and calls raise(3) (see above).
    unsafe { signal_hook::low_level::register(sig, action) }.map(drop).map_err(Errno::from)
}

/// Sets `sig`'s disposition to SIG_DFL with the kernel call (libc's
/// refuses the signals it reserves). Async-signal-safe.
fn set_default_raw(sig: libc::c_int) {
    // The kernel's struct sigaction with every field zero: SIG_DFL, no
    // flags, empty mask (the layout differs by architecture; zero is zero).
    let zero = [0u64; 4];
    // SAFETY: rt_sigaction(sig, &zeroed act, NULL, sizeof(kernel sigset)).
    unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, zero.as_ptr(), std::ptr::null_mut::<u64>(), 8usize) };
}

/// Signals 32 and 33 are reserved by glibc, so neither its sigaction()
/// nor posix_spawn's "default signals" set resets them; a parent that
/// ignored them (a musl or Go supervisor can) would pass that on to every
/// child. Call once at start-up.
pub fn reset_reserved_signals() {
    for sig in 32..=33 {
        set_default_raw(sig);
    }
}

/// Every signal back to SIG_DFL (a forked child before exec; signals
/// ignored by the parent would otherwise survive exec).
pub fn reset_all_dispositions() {
    for sig in 1..=max_signal() {
        set_default_raw(sig);
    }
}

/// Ignores SIGPIPE: writes to a gone peer return EPIPE instead.
pub fn ignore_sigpipe() {
    // SAFETY: setting a disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// SIGCHLD as a readable descriptor (signalfd): the signal is blocked and
/// stays pending until read here, so a child's exit costs one read instead
/// of a handler invocation (signal frame with the FPU state, sigreturn)
/// plus a self-pipe write and read. Under TCG that delivery was about a
/// third of the agent's CPU per `guest-exec` (docs/benchmarks.md).
/// Children get an empty mask at spawn (posix_spawnattr_setsigmask, or
/// sigprocmask after fork), so they never inherit the block.
#[derive(Debug)]
pub struct ChildSignalFd(OwnedFd);

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: a zeroed sigset_t is valid storage for sigemptyset/sigaddset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

impl ChildSignalFd {
    /// Blocks SIGCHLD (after setting it to SIG_DFL: an inherited SIG_IGN
    /// would make the kernel reap children itself) and opens the fd.
    pub fn new() -> Result<ChildSignalFd, Errno> {
        let set = sigchld_set();
        set_default_raw(libc::SIGCHLD);
        // SAFETY: a valid set; the process has one thread, so the
        // process mask and this thread's mask are the same.
        cvt(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
        // SAFETY: a new signalfd for a valid set; the fd is owned at once.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        // SAFETY: fd was just returned by signalfd and is owned by nobody else.
        Ok(ChildSignalFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Reads every pending SIGCHLD; true if there was one.
    pub fn drain(&self) -> bool {
        let mut seen = false;
        let mut buf = [0u8; 8 * std::mem::size_of::<libc::signalfd_siginfo>()];
        loop {
            match super::fd::read(self.0.as_fd(), &mut buf) {
                Ok(n) if n > 0 => seen = true,
                Err(Errno(libc::EINTR)) => continue,
                _ => return seen,
            }
        }
    }
}

impl AsRawFd for ChildSignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
