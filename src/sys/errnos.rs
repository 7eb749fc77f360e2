//! Named errno values that callers above sys/ match on (so that they need
//! no `libc`). Belongs next to [`Errno`] in sys/mod.rs; kept here until
//! that file is open for edits.

use super::Errno;

impl Errno {
    /// errno 0: glibc's text is "Success" (what qemu-ga prints when a
    /// lookup finds nothing but sets no error).
    pub const NONE: Errno = Errno(0);
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EMFILE: Errno = Errno(libc::EMFILE);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub const ESPIPE: Errno = Errno(libc::ESPIPE);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const EADDRNOTAVAIL: Errno = Errno(libc::EADDRNOTAVAIL);
}
