//! File descriptors: open, read, write, pipes and descriptor flags.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::LentBytes;
use super::{cvt, cvt_r, Errno};

/// `open(2)` (with O_CLOEXEC added) to an owned descriptor.
pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Result<OwnedFd, Errno> {
    // SAFETY: open with a NUL-terminated path; the fd is owned right away.
    let fd = cvt_r(|| unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, libc::c_uint::from(mode)) })?;
    // SAFETY: fd was just opened and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// [`open`] for a Rust string path (a NUL inside is ENOENT, as the kernel
/// would see the cut path).
pub fn open_path(path: &str, flags: libc::c_int, mode: libc::mode_t) -> Result<OwnedFd, Errno> {
    let c = std::ffi::CString::new(path).map_err(|_| Errno(libc::ENOENT))?;
    open(&c, flags, mode)
}

/// /dev/null opened read-write.
pub fn dev_null() -> Result<OwnedFd, Errno> {
    open(c"/dev/null", libc::O_RDWR, 0)
}

/// One /dev/null kept open for the process (close-on-exec), for the
/// children's unused stdio: an open and a close less per spawn.
pub fn shared_dev_null() -> Result<BorrowedFd<'static>, Errno> {
    static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_fd());
    }
    let fd = dev_null()?;
    Ok(NULL.get_or_init(|| fd).as_fd())
}

/// One `read(2)`, retried on EINTR. `Ok(0)` is end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: read into a live mutable buffer of its own length.
    let n = cvt_r(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n.unsigned_abs())
}

/// Reads at most `max` bytes appended to `buf` (into its spare capacity,
/// without zero-filling it first). Returns the bytes read; 0 is EOF.
pub fn read_append(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> Result<usize, Errno> {
    buf.reserve(max);
    if buf.len() >= super::mem::PREFAULT_MIN {
        // A big output is arriving: map the pages it goes to in one call
        // (a small one never pays for pages it does not use).
        super::mem::prefault_spare(buf, max);
    }
    read_spare_at_most(fd, buf, max)
}

/// One `read(2)` (retried on EINTR) into the spare capacity of `buf`,
/// which grows by the bytes read (reserve first: no room reads 0 bytes).
/// Returns the bytes read; 0 is EOF.
pub fn read_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> Result<usize, Errno> {
    read_spare_at_most(fd, buf, usize::MAX)
}

fn read_spare_at_most(fd: BorrowedFd<'_>, buf: &mut Vec<u8>, max: usize) -> Result<usize, Errno> {
    let len = buf.len();
    let want = max.min(buf.capacity() - len);
    // SAFETY: reads into the reserved, not yet initialised tail of the Vec.
    let n = cvt_r(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().add(len).cast(), want) })?;
    let n = n.unsigned_abs();
    // SAFETY: the kernel initialised n <= want bytes past len.
    unsafe { buf.set_len(len + n) };
    Ok(n)
}

/// One `write(2)`, retried on EINTR.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize, Errno> {
    // SAFETY: write from a live buffer of its own length.
    let n = cvt_r(|| unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) })?;
    Ok(n.unsigned_abs())
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array on success.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe_nonblocking() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array on success.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Standard input, borrowed for the life of the process (as
/// `io::stdin().as_fd()`, without the handle's lifetime).
pub fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 is the process's standard input, never closed by qga's
    // crates (the agent fills it at start-up when it was closed).
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Standard output, borrowed for the life of the process.
pub fn stdout() -> BorrowedFd<'static> {
    // SAFETY: as for stdin: fd 1 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(1) }
}

/// Sets O_NONBLOCK.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller keeps open.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Sets FD_CLOEXEC on any descriptor number (inherited ones included);
/// harmless on a closed one.
pub fn set_cloexec_raw(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: F_SETFD only changes the descriptor flag.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Sets FD_CLOEXEC.
pub fn set_cloexec(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    set_cloexec_raw(fd.as_raw_fd())
}

/// Whether descriptor number `fd` is open.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Opens `path` onto the lowest free descriptor number if `fd` is closed
/// (used for fds 0-2, so that no pipe ever lands on them). The descriptor
/// stays open for the life of the process.
pub fn fill_std_fd(fd: RawFd, path: &CStr, flags: libc::c_int) {
    if !is_open(fd) {
        // SAFETY: open returns the lowest free number, which is `fd`; it is
        // deliberately never closed (it is a standard stream from now on).
        unsafe { libc::open(path.as_ptr(), flags) };
    }
}

/// Makes `fd` a duplicate of `src` (dup2), keeping `fd` open for the life
/// of the process.
pub fn dup_onto(src: BorrowedFd<'_>, fd: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 onto a standard descriptor number that the process keeps.
    cvt(unsafe { libc::dup2(src.as_raw_fd(), fd) })?;
    Ok(())
}

/// vmsplice(2), non-blocking: hands `bytes` to the pipe `fd` by reference
/// instead of copying them (the reader copies straight from these pages).
/// Returns how many bytes the pipe took.
pub fn vmsplice(fd: BorrowedFd<'_>, bytes: &LentBytes, range: std::ops::Range<usize>) -> Result<usize, Errno> {
    let Some(part) = bytes.as_slice().get(range) else { return Err(Errno(libc::EINVAL)) };
    let iov = libc::iovec { iov_base: part.as_ptr() as *mut libc::c_void, iov_len: part.len() };
    // SAFETY: one iovec over live bytes; the pipe keeps references to their
    // pages, which LentBytes guarantees are never written or reused.
    let n = cvt(unsafe { libc::vmsplice(fd.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) })?;
    Ok(n as usize)
}

/// Grows a pipe's kernel buffer (F_SETPIPE_SZ); returns the new size.
pub fn set_pipe_size(fd: BorrowedFd<'_>, size: libc::c_int) -> Result<usize, Errno> {
    // SAFETY: fcntl on a pipe the caller keeps open.
    let n = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) })?;
    Ok(n.unsigned_abs() as usize)
}

/// Numbers of the descriptors this process has open (from /proc/self/fd).
pub fn open_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// access(2) with X_OK: may the caller execute `path`?
pub fn can_execute(path: &str) -> bool {
    std::ffi::CString::new(path).is_ok_and(|c| can_execute_c(&c))
}

/// [`can_execute`] for a C string.
pub fn can_execute_c(path: &CStr) -> bool {
    // SAFETY: access() on a NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}

/// A second descriptor for the same open file (close-on-exec).
pub fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: F_DUPFD_CLOEXEC on a live descriptor; the new fd is owned right away.
    let n = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: n was just created and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonblocking_pipe_and_read_spare() {
        let (r, w) = pipe_nonblocking().unwrap();
        let mut buf = Vec::with_capacity(8);
        assert_eq!(read_spare(r.as_fd(), &mut buf), Err(Errno::EAGAIN));
        assert_eq!(write(w.as_fd(), b"hello world"), Ok(11));
        assert_eq!(read_spare(r.as_fd(), &mut buf), Ok(8), "at most the spare capacity");
        buf.reserve(16);
        assert_eq!(read_spare(r.as_fd(), &mut buf), Ok(3));
        assert_eq!(buf, b"hello world");
        drop(w);
        assert_eq!(read_spare(r.as_fd(), &mut buf), Ok(0), "end of file");
    }
}
