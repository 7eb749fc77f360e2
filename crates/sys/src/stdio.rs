//! C stdio streams (`FILE *`) for guest-file-*: qemu-ga's buffering,
//! `feof()`/`ferror()` and position rules come from the C library, so the
//! handles are real streams. A [`Stream`] closes itself on Drop.

use std::ffi::CStr;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};
use std::ptr::NonNull;

use super::Errno;

/// An open `FILE *`, owned: `fclose()` on Drop (or [`Stream::close`]).
#[derive(Debug)]
pub struct Stream {
    fh: NonNull<libc::FILE>,
}

/// `fseek()`'s origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    Set,
    Cur,
    End,
}

impl Whence {
    fn raw(self) -> libc::c_int {
        match self {
            Whence::Set => libc::SEEK_SET,
            Whence::Cur => libc::SEEK_CUR,
            Whence::End => libc::SEEK_END,
        }
    }
}

impl Stream {
    /// `fdopen(3)`: the stream takes the descriptor over. On failure the
    /// descriptor is closed (it is dropped) and errno returned.
    pub fn fdopen(fd: OwnedFd, mode: &CStr) -> Result<Stream, Errno> {
        let raw = fd.into_raw_fd();
        // SAFETY: fdopen on a descriptor we own, with a NUL-terminated mode.
        let fh = unsafe { libc::fdopen(raw, mode.as_ptr()) };
        match NonNull::new(fh) {
            Some(fh) => Ok(Stream { fh }),
            None => {
                let e = Errno::last();
                // SAFETY: fdopen failed, so the descriptor is still ours alone.
                unsafe { libc::close(raw) };
                Err(e)
            }
        }
    }

    /// The stream's descriptor, borrowed for as long as the stream lives.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: fileno of a live stream; the descriptor lives as long as it.
        unsafe { BorrowedFd::borrow_raw(libc::fileno(self.fh.as_ptr())) }
    }

    /// `fflush(3)`.
    pub fn flush(&mut self) -> Result<(), Errno> {
        // SAFETY: fflush on a live stream we own.
        if unsafe { libc::fflush(self.fh.as_ptr()) } == libc::EOF {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// `fread(3)` of up to `buf.len()` bytes: Ok((count, feof)) or, when
    /// `ferror()` is set, the errno. The error/EOF indicators are cleared
    /// afterwards either way (`clearerr()`), as qemu-ga does.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<(usize, bool), Errno> {
        // SAFETY: fread into a live mutable buffer of its own length.
        let n = unsafe { libc::fread(buf.as_mut_ptr().cast(), 1, buf.len(), self.fh.as_ptr()) };
        self.result(n)
    }

    /// `fread(3)` of up to `max` bytes appended to `buf`, into its spare
    /// capacity without zero-filling it first (as [`super::fd::read_append`]:
    /// a big read's pages are mapped in one call first, instead of one
    /// fault per page). Ok((count, feof)) or the errno, as [`Stream::read`].
    pub fn read_append(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<(usize, bool), Errno> {
        buf.reserve(max);
        super::mem::prefault_spare(buf, max);
        let len = buf.len();
        let want = max.min(buf.capacity() - len);
        // SAFETY: fread writes at most `want` bytes into the reserved, not
        // yet initialised tail of the Vec.
        let n = unsafe { libc::fread(buf.as_mut_ptr().add(len).cast(), 1, want, self.fh.as_ptr()) };
        // SAFETY: fread initialised the n <= want bytes it counts.
        unsafe { buf.set_len(len + n) };
        self.result(n)
    }

    /// `fwrite(3)` of `buf`: Ok((count, feof)) or the errno when
    /// `ferror()` is set; indicators cleared afterwards.
    pub fn write(&mut self, buf: &[u8]) -> Result<(usize, bool), Errno> {
        // SAFETY: fwrite from a live buffer of its own length.
        let n = unsafe { libc::fwrite(buf.as_ptr().cast(), 1, buf.len(), self.fh.as_ptr()) };
        self.result(n)
    }

    fn result(&mut self, n: usize) -> Result<(usize, bool), Errno> {
        // SAFETY: ferror/feof only query a live stream.
        let r = if unsafe { libc::ferror(self.fh.as_ptr()) } != 0 {
            Err(Errno::last())
        } else {
            // SAFETY: as above.
            Ok((n, unsafe { libc::feof(self.fh.as_ptr()) } != 0))
        };
        self.clear_error();
        r
    }

    /// `fseeko(3)` then `ftello(3)`: Ok((position, feof)) or the errno;
    /// indicators cleared afterwards.
    pub fn seek(&mut self, offset: i64, whence: Whence) -> Result<(i64, bool), Errno> {
        // SAFETY: fseeko on a live stream we own.
        let r = if unsafe { libc::fseeko(self.fh.as_ptr(), offset as libc::off_t, whence.raw()) } == -1 {
            Err(Errno::last())
        } else {
            // SAFETY: ftello/feof only query a live stream.
            let pos = unsafe { libc::ftello(self.fh.as_ptr()) };
            // SAFETY: as above.
            Ok((pos as i64, unsafe { libc::feof(self.fh.as_ptr()) } != 0))
        };
        self.clear_error();
        r
    }

    /// `fseek(fh, 0, SEEK_CUR)`: switches a stream from reading to writing.
    pub fn seek_cur0(&mut self) -> Result<(), Errno> {
        // SAFETY: fseek on a live stream we own.
        if unsafe { libc::fseek(self.fh.as_ptr(), 0, libc::SEEK_CUR) } == -1 {
            return Err(Errno::last());
        }
        Ok(())
    }

    /// `clearerr(3)`.
    fn clear_error(&mut self) {
        // SAFETY: clearerr on a live stream we own.
        unsafe { libc::clearerr(self.fh.as_ptr()) };
    }

    /// `fclose(3)`, reporting its error. The stream is freed either way.
    pub fn close(self) -> Result<(), Errno> {
        let fh = self.fh;
        std::mem::forget(self);
        // SAFETY: the stream is ours and, forgotten above, closed only here.
        if unsafe { libc::fclose(fh.as_ptr()) } == libc::EOF {
            return Err(Errno::last());
        }
        Ok(())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: the stream is ours and closed exactly once.
        unsafe { libc::fclose(self.fh.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_reads_writes_seeks_and_closes() {
        let path = std::env::temp_dir().join(format!("qga-stdio-{}", std::process::id()));
        let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let fd = crate::fd::open(&p, libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC, 0o600).unwrap();
        let mut s = Stream::fdopen(fd, c"w+").unwrap();
        assert_eq!(s.write(b"hello").unwrap(), (5, false));
        assert_eq!(s.seek(1, Whence::Set).unwrap(), (1, false));
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap(), (4, true));
        assert_eq!(&buf[..4], b"ello");
        // Appended into spare capacity, prefaulted when big.
        assert_eq!(s.seek(0, Whence::Set).unwrap(), (0, false));
        let mut v = b"x".to_vec();
        assert_eq!(s.read_append(&mut v, 3).unwrap(), (3, false));
        assert_eq!(v, b"xhel");
        let mut big = Vec::new();
        assert_eq!(s.read_append(&mut big, 1 << 20).unwrap(), (2, true));
        assert_eq!(big, b"lo");
        s.close().unwrap();
        std::fs::remove_file(&path).unwrap();
    }
}
