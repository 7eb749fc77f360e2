//! Prefaulting big buffers that are about to be written.
//!
//! A fresh anonymous page costs a page fault on first write. In a TCG guest
//! the fault itself (exception entry, page walk, return) costs more than
//! clearing the page: an 8 MiB capture spent ~10 % of the agent's CPU in
//! `do_user_addr_fault`. `MADV_POPULATE_WRITE` (Linux 5.14) maps a whole
//! range in one call instead. Older kernels refuse it; then the pages
//! fault in as before.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{cvt, Errno};

/// `MADV_POPULATE_WRITE` from linux/mman.h (not in every libc crate).
const MADV_POPULATE_WRITE: libc::c_int = 23;
/// Smaller ranges are left to fault in (a call costs about a fault).
pub const PREFAULT_MIN: usize = 64 << 10;
/// The smallest page size of any Linux kernel: every mapping starts on a
/// multiple of it, whatever the kernel's own page size.
pub const MIN_PAGE: usize = 4096;

static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// The kernel's page size, read once (`sysconf(_SC_PAGESIZE)`, which glibc
/// and musl take from the auxiliary vector's AT_PAGESZ): 4 KiB on x86_64,
/// 4, 16 or 64 KiB on aarch64, 64 KiB on most ppc64 kernels. Allocates
/// nothing (the global allocator calls it); after the first call it is one
/// relaxed load.
pub fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    match PAGE.load(Ordering::Relaxed) {
        0 => {
            // SAFETY: sysconf only reads a value; it neither allocates nor
            // touches memory of ours.
            let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = usize::try_from(n).ok().filter(|p| p.is_power_of_two() && *p >= MIN_PAGE).unwrap_or(MIN_PAGE);
            PAGE.store(page, Ordering::Relaxed);
            page
        }
        page => page,
    }
}

/// Populates, for writing, the whole pages of the spare capacity of `buf`
/// up to `len` bytes past its end (nothing when that is under
/// [`PREFAULT_MIN`]).
pub fn prefault_spare(buf: &mut Vec<u8>, len: usize) {
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return;
    }
    // EINVAL: a kernel before 5.14 (no MADV_POPULATE_WRITE); the pages
    // fault in as before. Other errors (ENOMEM, EFAULT) are not sticky.
    if populate_spare(buf, len, page_size()) == Err(Errno::EINVAL) {
        UNSUPPORTED.store(true, Ordering::Relaxed);
    }
}

/// [`prefault_spare`] for pages of `page` bytes (a power of two, the
/// kernel's page size or a multiple of it: madvise refuses a start that is
/// not on one of the kernel's pages). Returns the bytes populated.
fn populate_spare(buf: &mut Vec<u8>, len: usize, page: usize) -> Result<usize, Errno> {
    let spare = buf.spare_capacity_mut();
    let len = len.min(spare.len());
    if len < PREFAULT_MIN {
        return Ok(0);
    }
    let Some(pages) = whole_pages(spare.as_mut_ptr() as usize, len, page) else { return Ok(0) };
    // SAFETY: whole pages inside the Vec's own allocated, writable spare
    // capacity; populating does not change their contents.
    cvt(unsafe { libc::madvise(pages.start as *mut libc::c_void, pages.len(), MADV_POPULATE_WRITE) })?;
    Ok(pages.len())
}

/// The whole pages of `page` bytes (a power of two) within the `len` bytes
/// at `addr`, None when there is none.
fn whole_pages(addr: usize, len: usize, page: usize) -> Option<Range<usize>> {
    let start = addr.checked_next_multiple_of(page)?;
    let end = addr.checked_add(len)? & !(page - 1);
    (end > start).then_some(start..end)
}

/// Bytes mapped ahead of a growing buffer's writes per call.
const MAP_AHEAD_WINDOW: usize = 1 << 20;

/// Keeps the pages of a buffer that grows by small appends (a long string
/// arriving 4 KiB per port read) mapped ahead of the writes, a window at a
/// time, instead of one page fault per page. Only a hint: a page it misses
/// faults in as usual.
#[derive(Debug, Default)]
pub struct MapAhead {
    base: usize,
    mapped_to: usize,
}

impl MapAhead {
    /// Call before appending `n` bytes to `buf` (with room reserved).
    pub fn before_append(&mut self, buf: &mut Vec<u8>, n: usize) {
        let base = buf.as_ptr() as usize;
        if base != self.base {
            // Another buffer, or this one moved.
            self.base = base;
            self.mapped_to = buf.len();
        }
        if buf.len() + n <= self.mapped_to {
            return;
        }
        let window = (buf.capacity() - buf.len()).min(MAP_AHEAD_WINDOW);
        prefault_spare(buf, window);
        self.mapped_to = buf.len() + window;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's, as the auxiliary vector gives it.
    #[test]
    fn page_size_is_the_kernels() {
        // SAFETY: getauxval only reads the auxiliary vector.
        let auxv = unsafe { libc::getauxval(libc::AT_PAGESZ) } as usize;
        assert_eq!(page_size(), auxv);
        assert!(page_size().is_power_of_two() && page_size() >= MIN_PAGE);
        assert_eq!(page_size(), page_size(), "read once, then the same");
    }

    #[test]
    fn whole_pages_for_every_page_size() {
        for page in [4096, 16384, 65536] {
            // Already on a page: the range ends on the last page boundary.
            assert_eq!(whole_pages(16 * page, 3 * page + 5, page), Some(16 * page..19 * page));
            // 4 KiB-aligned, not on a bigger page: starts on the next one.
            let a = 16 * page + 4096;
            let want = if page > 4096 { 17 * page..19 * page } else { 17 * page..20 * page };
            assert_eq!(whole_pages(a, 3 * page, page), Some(want));
            // No whole page inside.
            assert_eq!(whole_pages(16 * page + 1, page, page), None);
            assert_eq!(whole_pages(16 * page, page - 1, page), None);
            assert_eq!(whole_pages(usize::MAX - 5, 3, page), None);
        }
    }

    /// The prefault path with 16 KiB and 64 KiB pages (this kernel's pages
    /// are smaller or equal, so madvise accepts ranges of bigger ones):
    /// whole pages only, each start on a page of that size. With the
    /// former fixed 4 KiB, a 64 KiB kernel refused the start (EINVAL) and
    /// prefaulting was switched off for good.
    #[test]
    fn populates_whole_pages_of_bigger_sizes() {
        let mut buf: Vec<u8> = Vec::with_capacity(4 << 20);
        buf.extend_from_slice(&[7; 1000]);
        if populate_spare(&mut buf, 1 << 20, page_size()) == Err(Errno::EINVAL) {
            eprintln!("skipped: no MADV_POPULATE_WRITE (kernel before 5.14)");
            return;
        }
        for page in [page_size(), 16384, 65536].into_iter().filter(|p| p % page_size() == 0) {
            let spare = buf.as_ptr() as usize + buf.len();
            let len = (1 << 20) + 123;
            let pages = whole_pages(spare, len, page).unwrap();
            assert_eq!(pages.start % page, 0);
            assert_eq!(pages.end % page, 0);
            assert!(pages.start >= spare && pages.end <= spare + len);
            assert!(pages.len() > len - 2 * page);
            assert_eq!(populate_spare(&mut buf, len, page), Ok(pages.len()), "page {page}");
            assert_eq!(populate_spare(&mut buf, PREFAULT_MIN - 1, page), Ok(0), "too small to bother");
        }
        assert_eq!(&buf[..], &[7; 1000][..], "contents unchanged");
        prefault_spare(&mut buf, 1 << 20);
        assert!(!UNSUPPORTED.load(Ordering::Relaxed));
    }
}
