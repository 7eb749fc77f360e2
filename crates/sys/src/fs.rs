//! File systems: the FIFREEZE/FITHAW/FITRIM ioctls, stat/statvfs,
//! realpath, directory listings, openat/pread/pwrite on sysfs files,
//! ownership and modes.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{cvt, cvt_r, Errno};

/// `open(2)` flags, so that callers need no `libc`.
pub mod oflag {
    pub use libc::{O_APPEND, O_CREAT, O_DIRECTORY, O_EXCL, O_NOCTTY, O_NONBLOCK, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY};
}

// ioctl request numbers, typed for `libc::ioctl` on every libc (c_ulong on
// glibc, c_int on musl): the `as` keeps the 32-bit pattern.
/// FIFREEZE = _IOWR('X', 119, int).
const FIFREEZE: u32 = 0xC004_5877;
/// FITHAW = _IOWR('X', 120, int).
const FITHAW: u32 = 0xC004_5878;
/// FITRIM = _IOWR('X', 121, struct fstrim_range).
const FITRIM: u32 = 0xC018_5879;

fn request(r: u32) -> libc::Ioctl {
    r as libc::Ioctl
}

/// FIFREEZE on a descriptor of a file system (a directory in it).
pub fn freeze(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: FIFREEZE takes no argument memory (0 is passed, as qemu-ga).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request(FIFREEZE), 0) })?;
    Ok(())
}

/// FITHAW on a descriptor of a file system.
pub fn thaw(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: FITHAW takes no argument memory.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request(FITHAW), 0) })?;
    Ok(())
}

/// `struct fstrim_range`.
#[repr(C)]
struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

/// What FITRIM reports back: bytes trimmed and the minimum extent used.
#[derive(Debug, Clone, Copy)]
pub struct Trimmed {
    pub len: u64,
    pub minlen: u64,
}

/// FITRIM over the whole file system with the given minimum extent.
pub fn fitrim(fd: BorrowedFd<'_>, minlen: u64) -> Result<Trimmed, Errno> {
    let mut r = FstrimRange { start: 0, len: u64::MAX, minlen };
    // SAFETY: FITRIM reads and updates our fstrim_range, which outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request(FITRIM), &mut r as *mut FstrimRange) })?;
    Ok(Trimmed { len: r.len, minlen: r.minlen })
}

/// The kind of a path as `stat(2)` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Block { major: u32, minor: u32 },
    Other,
}

/// `stat(2)` reduced to the file kind (and a block device's numbers).
pub fn kind(path: &CStr) -> Result<Kind, Errno> {
    // SAFETY: an all-zero `struct stat` is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: stat with a NUL-terminated path into our struct.
    cvt(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFBLK => Kind::Block { major: libc::major(st.st_rdev), minor: libc::minor(st.st_rdev) },
        _ => Kind::Other,
    })
}

/// The `statvfs(3)` fields qemu-ga reports.
#[derive(Debug, Clone, Copy)]
pub struct StatVfs {
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
}

#[allow(clippy::useless_conversion)]
pub fn statvfs(path: &CStr) -> Result<StatVfs, Errno> {
    // SAFETY: an all-zero `struct statvfs` is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs with a NUL-terminated path into our struct.
    cvt(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(StatVfs {
        frsize: u64::from(st.f_frsize),
        blocks: u64::from(st.f_blocks),
        bfree: u64::from(st.f_bfree),
        bavail: u64::from(st.f_bavail),
    })
}

/// `realpath(3)`.
pub fn realpath(path: &str) -> Result<String, Errno> {
    std::fs::canonicalize(path).map(|p| p.to_string_lossy().into_owned()).map_err(|e| Errno::of(&e))
}

/// One directory entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub is_dir: bool,
    pub is_symlink: bool,
}

/// A directory's entries in readdir() order (without `.` and `..`).
pub fn read_dir(path: &str) -> Result<Vec<DirEntry>, Errno> {
    let rd = std::fs::read_dir(path).map_err(|e| Errno::of(&e))?;
    Ok(rd
        .flatten()
        .map(|e| {
            let ft = e.file_type().ok();
            DirEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                is_dir: ft.is_some_and(|t| t.is_dir()),
                is_symlink: ft.is_some_and(|t| t.is_symlink()),
            }
        })
        .collect())
}

/// `openat(2)` (with O_CLOEXEC added) relative to a directory descriptor.
pub fn open_at(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> Result<OwnedFd, Errno> {
    // SAFETY: openat with a NUL-terminated name relative to a live directory fd.
    let fd = cvt_r(|| unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just opened and belongs to nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pread(2)` at `offset`.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: i64) -> Result<usize, Errno> {
    // SAFETY: pread into a live mutable buffer of its own length.
    let n = cvt(unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t) })?;
    Ok(n.unsigned_abs())
}

/// `pwrite(2)` at `offset`.
pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: i64) -> Result<usize, Errno> {
    // SAFETY: pwrite from a live buffer of its own length.
    let n = cvt(unsafe { libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset as libc::off_t) })?;
    Ok(n.unsigned_abs())
}

/// `chown(2)`.
pub fn chown(path: &CStr, uid: u32, gid: u32) -> Result<(), Errno> {
    // SAFETY: chown with a NUL-terminated path.
    cvt(unsafe { libc::chown(path.as_ptr(), uid, gid) })?;
    Ok(())
}

/// `fchmod(2)`.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    // SAFETY: fchmod on a live descriptor.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// `unlink(2)`.
pub fn unlink(path: &CStr) -> Result<(), Errno> {
    // SAFETY: unlink with a NUL-terminated path.
    cvt(unsafe { libc::unlink(path.as_ptr()) })?;
    Ok(())
}

/// `mkfifo(3)`: a named pipe at `path`.
pub fn mkfifo(path: &CStr, mode: libc::mode_t) -> Result<(), Errno> {
    // SAFETY: mkfifo with a NUL-terminated path.
    cvt(unsafe { libc::mkfifo(path.as_ptr(), mode) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_errors() {
        assert_eq!(kind(c"/").unwrap(), Kind::Dir);
        assert_eq!(kind(c"/nonexistent/x").unwrap_err(), Errno::ENOENT);
        assert!(statvfs(c"/").unwrap().blocks > 0);
        assert_eq!(realpath("/nonexistent/x").unwrap_err(), Errno::ENOENT);
        let dir = crate::fd::open(c"/", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
        let mut b = [0u8; 1];
        // A directory cannot be read.
        assert!(pread(std::os::fd::AsFd::as_fd(&dir), &mut b, 0).is_err());
    }
}
