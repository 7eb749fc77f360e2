//! musl builds only: per-size-class free lists in front of musl's malloc.
//!
//! musl's malloc is compact but slow for the many small, short-lived blocks
//! of a request (parsing, reply building): the static musl build answered
//! 3× fewer pipelined guest-pings than the glibc build (docs/vm.md). Blocks
//! up to 2 KiB are recycled here (at most `KEEP` per class); bigger ones go
//! to musl directly, which maps them on their own, unmaps them at free and
//! grows them with mremap (the job of glibc's M_MMAP_THRESHOLD).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Classes of 16, 32, ..., 2048 bytes.
const CLASSES: usize = 8;
const MAX_SMALL: usize = 16 << (CLASSES - 1);
/// Blocks kept per class; the rest are freed.
const KEEP: u32 = 256;

struct Node {
    next: *mut Node,
}

struct Lists {
    head: [*mut Node; CLASSES],
    len: [u32; CLASSES],
}

thread_local! {
    // Per thread, so no lock (qga has one thread). No destructor: a thread
    // that ends leaves its few cached blocks behind.
    static LISTS: UnsafeCell<Lists> = const { UnsafeCell::new(Lists { head: [ptr::null_mut(); CLASSES], len: [0; CLASSES] }) };
}

pub struct Cached;

impl Cached {
    pub const fn new() -> Cached {
        Cached
    }

    fn with<T>(&self, f: impl FnOnce(&mut Lists) -> T) -> T {
        // SAFETY: this thread's lists; `f` does not allocate, so no second
        // reference exists while it runs.
        LISTS.with(|l| f(unsafe { &mut *l.get() }))
    }
}

impl Default for Cached {
    fn default() -> Self {
        Cached::new()
    }
}

/// The class of a block, None for big or over-aligned ones.
fn class(size: usize, align: usize) -> Option<usize> {
    if align > 16 || size > MAX_SMALL {
        return None;
    }
    Some((usize::BITS - (size.max(16) - 1).leading_zeros()) as usize - 4)
}

fn class_layout(c: usize) -> Layout {
    // SAFETY: 16 << c is a non-zero multiple of the power-of-two align 16.
    unsafe { Layout::from_size_align_unchecked(16 << c, 16) }
}

unsafe impl GlobalAlloc for Cached {
    #[inline(never)] // one copy, not one per allocation site (size)
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let Some(c) = class(l.size(), l.align()) else {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc(l) };
        };
        let p = self.with(|ls| {
            let h = ls.head[c];
            if !h.is_null() {
                // SAFETY: list nodes are free blocks of this class.
                ls.head[c] = unsafe { (*h).next };
                ls.len[c] -= 1;
            }
            h
        });
        if p.is_null() {
            // SAFETY: a valid non-zero layout.
            unsafe { System.alloc(class_layout(c)) }
        } else {
            p as *mut u8
        }
    }

    #[inline(never)]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if class(l.size(), l.align()).is_none() {
            // SAFETY: the caller's layout, passed on.
            return unsafe { System.alloc_zeroed(l) };
        }
        // SAFETY: same contract as alloc; the block holds l.size() bytes.
        unsafe {
            let p = self.alloc(l);
            if !p.is_null() {
                ptr::write_bytes(p, 0, l.size());
            }
            p
        }
    }

    #[inline(never)]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some(c) = class(l.size(), l.align()) else {
            // SAFETY: a big block from System.alloc with this layout.
            return unsafe { System.dealloc(p, l) };
        };
        let kept = self.with(|ls| {
            if ls.len[c] >= KEEP {
                return false;
            }
            let n = p as *mut Node;
            // SAFETY: the freed block is at least 16 bytes, 16-aligned.
            unsafe { (*n).next = ls.head[c] };
            ls.head[c] = n;
            ls.len[c] += 1;
            true
        });
        if !kept {
            // SAFETY: the block came from System.alloc(class_layout(c)).
            unsafe { System.dealloc(p, class_layout(c)) };
        }
    }

    #[inline(never)]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let old = class(l.size(), l.align());
        let to = class(new, l.align());
        if old.is_none() && to.is_none() {
            // SAFETY: big to big: musl's realloc (mremap for mapped blocks).
            return unsafe { System.realloc(p, l, new) };
        }
        if old == to {
            return p;
        }
        // SAFETY: a fresh block of the new size; both blocks are valid for
        // the bytes copied; the old one is freed with its own layout.
        unsafe {
            let n = self.alloc(Layout::from_size_align_unchecked(new, l.align()));
            if !n.is_null() {
                ptr::copy_nonoverlapping(p, n, l.size().min(new));
                self.dealloc(p, l);
            }
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 8), Some(1));
        assert_eq!(class(2048, 16), Some(7));
        assert_eq!(class(2049, 8), None);
        assert_eq!(class(64, 32), None);
    }

    #[test]
    fn recycles_and_keeps_contents_on_realloc() {
        let a = Cached::new();
        // SAFETY: matched alloc/realloc/dealloc with their layouts.
        unsafe {
            let l = Layout::from_size_align(24, 8).unwrap();
            let p = a.alloc(l);
            a.dealloc(p, l);
            assert_eq!(a.alloc(l), p, "a freed block of the class is reused");
            ptr::write_bytes(p, 7, 24);
            let q = a.realloc(p, l, 30);
            assert_eq!(q, p, "same class: grown in place");
            let r = a.realloc(q, Layout::from_size_align(30, 8).unwrap(), 5000);
            assert!((0..24).all(|i| *r.add(i) == 7));
            let z = a.alloc_zeroed(Layout::from_size_align(100, 8).unwrap());
            assert!((0..100).all(|i| *z.add(i) == 0));
            a.dealloc(z, Layout::from_size_align(100, 8).unwrap());
            a.dealloc(r, Layout::from_size_align(5000, 8).unwrap());
        }
    }
}
