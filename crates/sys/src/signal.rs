//! Signal dispositions beyond what signal-hook's safe API offers, and
//! the signal numbers (for callers without libc).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

use super::{cvt, Errno};

/// Signal numbers.
pub use libc::{SIGCONT, SIGHUP, SIGINT, SIGKILL, SIGPIPE, SIGQUIT, SIGSTOP, SIGTERM, SIGWINCH};

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

/// `sigs` back to SIG_DFL in this process (and so in the children it
/// starts from now on).
pub fn set_default(sigs: &[libc::c_int]) {
    for &sig in sigs {
        set_default_raw(sig);
    }
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

/// Write end of the self-pipe of [`route_to_pipe`], written by the handler.
static ROUTE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn write_signal_byte(sig: libc::c_int) {
    let fd = ROUTE_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) and errno access are async-signal-safe; errno is restored.
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            let b = sig as u8;
            libc::write(fd, (&b as *const u8).cast(), 1);
            *errno = saved;
        }
    }
}

/// Routes each of `sigs` not ignored at start-up (`qgactl ... &` in a
/// script, nohup: shells expect those to stay ignored) to a handler
/// (SA_RESTART) that writes the signal number as one byte to `pipe_w`,
/// which is kept open for the life of the process. A self-pipe for a
/// program that waits in poll(2) (qgactl); the agent uses [`SignalFd`].
pub fn route_to_pipe(pipe_w: OwnedFd, sigs: &[libc::c_int]) {
    ROUTE_FD.store(pipe_w.into_raw_fd(), Ordering::Relaxed);
    route_more_to_pipe(sigs);
}

/// Routes more signals to the pipe given to [`route_to_pipe`] (same rule:
/// those ignored at start-up stay ignored).
pub fn route_more_to_pipe(sigs: &[libc::c_int]) {
    for &sig in sigs {
        // SAFETY: an all-zero sigaction is a valid value.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: sigaction only reads the current disposition into `old`.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0 && old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: as above.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = write_signal_byte as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        // SAFETY: sigemptyset on our struct; sigaction installs the async-signal-safe handler.
        unsafe {
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Signals as a readable descriptor (signalfd): they are blocked and stay
/// pending until read here, so a signal costs one read instead of a
/// handler invocation (a signal frame with the FPU state, sigreturn) plus
/// a self-pipe write and read. Under TCG that delivery was a third of the
/// agent's CPU per `guest-exec` status poll: SIGIO comes with every
/// request on a virtio port, SIGCHLD with every exit (BENCHMARKS.md).
/// Children get an empty mask at spawn (posix_spawnattr_setsigmask, or
/// sigprocmask after fork), so they never inherit the block.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
    signals: Vec<libc::c_int>,
}

impl SignalFd {
    /// Blocks `signals` (after setting them to SIG_DFL: an inherited
    /// SIG_IGN would discard them, and make the kernel reap children) and
    /// opens the fd.
    pub fn new(signals: &[libc::c_int]) -> Result<SignalFd, Errno> {
        // SAFETY: a zeroed sigset_t is valid storage for sigemptyset/sigaddset.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: set is valid storage; the signal numbers are the caller's.
        unsafe { libc::sigemptyset(&mut set) };
        for &sig in signals {
            set_default_raw(sig);
            // SAFETY: as above.
            cvt(unsafe { libc::sigaddset(&mut set, sig) })?;
        }
        // SAFETY: a valid set; the process has one thread, so the process
        // mask and this thread's mask are the same.
        cvt(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
        // SAFETY: a new signalfd for a valid set.
        let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        // SAFETY: fd was just returned by signalfd and is owned by nobody else.
        Ok(SignalFd { fd: unsafe { OwnedFd::from_raw_fd(fd) }, signals: signals.to_vec() })
    }

    /// Reads every pending signal; bit i of the result is set when the
    /// i-th signal given to `new` arrived.
    pub fn drain(&self) -> u64 {
        let mut seen = 0u64;
        const INFO: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut buf = [0u8; 8 * INFO];
        loop {
            match super::fd::read(self.fd.as_fd(), &mut buf) {
                Ok(n) if n >= INFO => {
                    for info in buf[..n].chunks_exact(INFO) {
                        // ssi_signo is the struct's first field, a u32.
                        let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                        if let Some(i) = self.signals.iter().position(|&s| s as u32 == signo) {
                            seen |= 1 << i;
                        }
                    }
                }
                _ => return seen,
            }
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
