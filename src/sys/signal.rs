//! Signal dispositions beyond what signal-hook's safe API offers.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use super::Errno;

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
