//! The operating-system layer: the only module that calls libc or uses
//! `unsafe`. Everything above it sees typed, safe functions that return
//! `Result<_, Errno>` and own their descriptors (`OwnedFd`, RAII wrappers).
//! Each `unsafe` block carries a one-line reason.
//!
//! Shape (after rustix and mio's `sys/unix`): one [`Errno`] type whose
//! Display is the glibc text qemu-ga prints, one [`cvt`] for the C
//! convention "-1 and errno", and one file per subject.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod alloc;
pub mod command;
pub mod confine;
mod errno_text;
pub mod fd;
pub mod fs;
pub mod host;
pub mod io;
mod mem;
pub mod mount;
pub mod net;
pub mod nvme;
pub mod poll;
pub mod power;
pub mod process;
pub mod pty;
pub mod signal;
pub mod socket;
pub mod spawn;
pub mod stdio;
pub mod termios;
pub mod time;
pub mod uevent;
pub mod user;

use std::fmt;

/// Big blocks are mappings of their own (vmsplice relies on it); on musl a
/// free-list cache serves the many small blocks of a request.
#[global_allocator]
static ALLOC: alloc::Alloc = alloc::Alloc::new();
pub use alloc::LentBytes;
/// The C library's constants (signal numbers, errno values, flags) for the
/// layers above, which call nothing in it: they have no libc dependency of
/// their own.
pub use libc;
pub use mem::MapAhead;
/// The agent's one PATH search (guest-exec, helper programs, power).
pub use spawn::find_program;

/// An `errno` value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    // Named values, for callers above sys/ to match on without `libc`.
    /// errno 0: glibc's text is "Success" (what qemu-ga prints when a
    /// lookup finds nothing but sets no error).
    pub const NONE: Errno = Errno(0);
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EMFILE: Errno = Errno(libc::EMFILE);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub const ESPIPE: Errno = Errno(libc::ESPIPE);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const EADDRNOTAVAIL: Errno = Errno(libc::EADDRNOTAVAIL);
    pub const EPIPE: Errno = Errno(libc::EPIPE);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const ECONNRESET: Errno = Errno(libc::ECONNRESET);
    pub const EINPROGRESS: Errno = Errno(libc::EINPROGRESS);
    pub const EAFNOSUPPORT: Errno = Errno(libc::EAFNOSUPPORT);

    /// The calling thread's current errno.
    pub fn last() -> Errno {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }

    /// The errno inside an `io::Error` (EIO when it carries none).
    pub fn of(e: &std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }

    pub fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Errno {
    /// glibc's `strerror()` text, on every libc (musl's texts differ).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match errno_text::text(self.0) {
            Some(t) => f.write_str(t),
            None => write!(f, "Unknown error {}", self.0),
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {})", self.0, self)
    }
}

impl From<Errno> for std::io::Error {
    fn from(e: Errno) -> Self {
        std::io::Error::from_raw_os_error(e.0)
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Errno::of(&e)
    }
}

/// Integers that C functions return with -1 meaning "see errno".
pub trait MinusOne: Copy + PartialEq {
    const MINUS_ONE: Self;
}

macro_rules! minus_one {
    ($($t:ty)*) => { $(impl MinusOne for $t { const MINUS_ONE: Self = -1; })* };
}
minus_one!(i32 i64 isize);

/// `-1` → the current [`Errno`], anything else → `Ok`.
pub fn cvt<T: MinusOne>(rc: T) -> Result<T, Errno> {
    if rc == T::MINUS_ONE {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

/// [`cvt`], retrying while the call was interrupted by a signal.
pub fn cvt_r<T: MinusOne>(mut f: impl FnMut() -> T) -> Result<T, Errno> {
    loop {
        match cvt(f()) {
            Err(Errno(libc::EINTR)) => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_texts_are_glibcs() {
        assert_eq!(Errno(libc::ENOENT).to_string(), "No such file or directory");
        assert_eq!(Errno(libc::EAGAIN).to_string(), "Resource temporarily unavailable");
        assert_eq!(Errno(libc::EMFILE).to_string(), "Too many open files");
        assert_eq!(Errno(9999).to_string(), "Unknown error 9999");
    }

    #[test]
    fn cvt_maps_minus_one() {
        assert_eq!(cvt(3i32), Ok(3));
        // SAFETY: close(-1) only sets errno (EBADF).
        let rc = unsafe { libc::close(-1) };
        assert_eq!(cvt(rc), Err(Errno(libc::EBADF)));
    }
}

#[cfg(test)]
mod double_format {
    /// The pure `%.17g` of the JSON writer against the C library's.
    #[test]
    fn json_doubles_match_snprintf() {
        let samples = [
            1.0,
            -1.5,
            0.1,
            1e-5,
            1.234e-4,
            123456789.0,
            1e16,
            1e17,
            1.5e300,
            -2.5e-300,
            3.0e-320,
            0.3333333333333333,
            2.0f64.powi(60),
            12345678901234567890.0,
            0.5,
            100.0,
            1e-4,
            9.999999999999999e16,
            5e-324,
            f64::MAX,
        ];
        for f in samples {
            let mut buf = [0u8; 64];
            // SAFETY: snprintf into a local buffer with its true size; "%.17g" with one double.
            let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.17g".as_ptr(), f) };
            let c = std::str::from_utf8(&buf[..n as usize]).unwrap().to_string();
            assert_eq!(qga_protocol::json::format_g17(f), c, "for {f:e}");
        }
    }
}
