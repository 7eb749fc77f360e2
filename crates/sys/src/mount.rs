//! What an init does to a bare root: mounts, device nodes, kernel modules.

use std::ffi::CString;
use std::os::fd::AsRawFd;

use super::{cvt, Errno};

fn c(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno(libc::EINVAL))
}

/// mount(2).
pub fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> Result<(), Errno> {
    let (s, t, f, d) = (c(source)?, c(target)?, c(fstype)?, c(data)?);
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    cvt(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) })?;
    Ok(())
}

/// Creates a character device node.
pub fn mknod_char(path: &str, major: u32, minor: u32, mode: libc::mode_t) -> Result<(), Errno> {
    let p = c(path)?;
    // SAFETY: mknod(2) with a NUL-terminated path.
    cvt(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | mode, libc::makedev(major, minor)) })?;
    Ok(())
}

/// `finit_module(2)` flag: the file is compressed (the kernel decompresses).
const MODULE_INIT_COMPRESSED_FILE: libc::c_int = 4;

/// Loads a kernel module from an open file.
pub fn finit_module(file: &std::fs::File, compressed: bool) -> Result<(), Errno> {
    let flags = if compressed { MODULE_INIT_COMPRESSED_FILE } else { 0 };
    // SAFETY: finit_module(fd, params, flags) with an open fd and an empty NUL-terminated string.
    cvt(unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), flags) })?;
    Ok(())
}
