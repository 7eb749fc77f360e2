//! Prefaulting big buffers that are about to be written.
//!
//! A fresh anonymous page costs a page fault on first write. In a TCG guest
//! the fault itself (exception entry, page walk, return) costs more than
//! clearing the page: an 8 MiB capture spent ~10 % of the agent's CPU in
//! `do_user_addr_fault`. `MADV_POPULATE_WRITE` (Linux 5.14) maps a whole
//! range in one call instead. Older kernels refuse it; then the pages
//! fault in as before.

use std::sync::atomic::{AtomicBool, Ordering};

/// `MADV_POPULATE_WRITE` from linux/mman.h (not in every libc crate).
const MADV_POPULATE_WRITE: libc::c_int = 23;
/// Smaller ranges are left to fault in (a call costs about a fault).
pub const PREFAULT_MIN: usize = 64 << 10;
const PAGE: usize = 4096;

static UNSUPPORTED: AtomicBool = AtomicBool::new(false);

/// Populates, for writing, the whole pages of the spare capacity of `buf`
/// up to `len` bytes past its end (nothing when that is under
/// [`PREFAULT_MIN`]).
pub fn prefault_spare(buf: &mut Vec<u8>, len: usize) {
    let spare = buf.spare_capacity_mut();
    let len = len.min(spare.len());
    if len < PREFAULT_MIN || UNSUPPORTED.load(Ordering::Relaxed) {
        return;
    }
    let ptr = spare.as_mut_ptr() as usize;
    let start = ptr.next_multiple_of(PAGE);
    let end = (ptr + len) & !(PAGE - 1);
    if end <= start {
        return;
    }
    // SAFETY: whole pages inside the Vec's own allocated, writable spare
    // capacity; populating does not change their contents.
    let rc = unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) };
    if rc != 0 && super::Errno::last().0 == libc::EINVAL {
        UNSUPPORTED.store(true, Ordering::Relaxed);
    }
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
