//! The global allocator.
//!
//! * **Big blocks are mappings of their own.** A block of [`BIG_BLOCK`]
//!   bytes or more is an anonymous mapping, grown and shrunk with mremap and
//!   unmapped when freed, on every libc. musl's malloc does this above
//!   128 KiB and glibc's above its (moving) M_MMAP_THRESHOLD; here it is a
//!   rule, because [`super::fd::vmsplice`] relies on it: pages handed to a
//!   pipe by reference must never be reused for another block while the
//!   pipe still holds them, and a munmap'd page never is.
//! * **One freed big block is kept mapped** (up to [`SPARE_MAX`] bytes) and
//!   the next big block (`alloc`, not `alloc_zeroed`) is cut from it (the
//!   rest stays the spare) or grown from it with mremap: a fresh mapping's
//!   pages are zero-filled by the kernel on first touch, which in a TCG
//!   guest cost a third of the agent's CPU moving a file with
//!   guest-file-read/-write (`clear_page_erms`, perf, 4 MiB chunks). Every
//!   block and the spare stay within one kernel mapping (VMA): mremap
//!   cannot move or grow a range that spans two, so pages are never moved
//!   between blocks. Lent blocks never become the spare: [`LentBytes`]
//!   unmaps its block itself.
//! * **musl builds: small blocks are recycled.** musl's malloc is compact
//!   but slow for the many small, short-lived blocks of a request (parsing,
//!   reply building): the static musl build answered 3× fewer pipelined
//!   guest-pings than the glibc build (docs/vm.md). Blocks up to 2 KiB are
//!   kept on per-size-class free lists (at most `KEEP` per class).

use std::alloc::{GlobalAlloc, Layout, System};
#[cfg(target_env = "musl")]
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::mem::{page_size, MIN_PAGE};

/// Classes of 16, 32, ..., 2048 bytes.
#[cfg(target_env = "musl")]
const CLASSES: usize = 8;
#[cfg(target_env = "musl")]
const MAX_SMALL: usize = 16 << (CLASSES - 1);
#[cfg(target_env = "musl")]
/// Blocks kept per class; the rest are freed.
const KEEP: u32 = 256;

#[cfg(target_env = "musl")]
struct Node {
    next: *mut Node,
}

#[cfg(target_env = "musl")]
struct Lists {
    head: [*mut Node; CLASSES],
    len: [u32; CLASSES],
}

#[cfg(target_env = "musl")]
thread_local! {
    // Per thread, so no lock (qga has one thread). No destructor: a thread
    // that ends leaves its few cached blocks behind.
    static LISTS: UnsafeCell<Lists> = const { UnsafeCell::new(Lists { head: [ptr::null_mut(); CLASSES], len: [0; CLASSES] }) };
}

/// Blocks of this size and more are mappings of their own. A multiple of
/// every page size Linux has (4 KiB to 64 KiB on the architectures qga
/// builds for), though nothing depends on that: a mapping's length is the
/// block's size rounded up to the kernel's page.
pub const BIG_BLOCK: usize = 1 << 20;

/// The largest big block kept mapped when freed: a guest-file-read or
/// -write chunk of up to 7.5 MiB (libvirt's 10 MiB reply cap), as base64.
pub const SPARE_MAX: usize = 10 << 20;

/// The spare big block: null, or a whole mapping whose first word holds
/// its length (a swap takes or leaves it whole, from any thread).
static SPARE: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());

pub struct Alloc;

impl Alloc {
    pub const fn new() -> Alloc {
        Alloc
    }

    #[cfg(target_env = "musl")]
    fn with<T>(&self, f: impl FnOnce(&mut Lists) -> T) -> T {
        // SAFETY: this thread's lists; `f` does not allocate, so no second
        // reference exists while it runs.
        LISTS.with(|l| f(unsafe { &mut *l.get() }))
    }
}

impl Default for Alloc {
    fn default() -> Self {
        Alloc::new()
    }
}

/// The class of a block, None for big or over-aligned ones.
#[cfg(target_env = "musl")]
fn class(size: usize, align: usize) -> Option<usize> {
    if align > 16 || size > MAX_SMALL {
        return None;
    }
    Some((usize::BITS - (size.max(16) - 1).leading_zeros()) as usize - 4)
}

#[cfg(target_env = "musl")]
fn class_layout(c: usize) -> Layout {
    // SAFETY: 16 << c is a non-zero multiple of the power-of-two align 16.
    unsafe { Layout::from_size_align_unchecked(16 << c, 16) }
}

/// The length of the mapping of a big block of `size` bytes with pages of
/// `page` bytes (the kernel's page size, [`page_size`], except in tests).
fn map_len(size: usize, page: usize) -> usize {
    size.next_multiple_of(page)
}

/// A fresh zero-filled private mapping of `size` bytes, or null.
#[cold]
#[inline(never)]
fn map(size: usize) -> *mut u8 {
    map_with(size, page_size())
}

/// [`map`] with pages of `page` bytes.
fn map_with(size: usize, page: usize) -> *mut u8 {
    let (prot, flags) = (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS);
    // SAFETY: a new anonymous mapping; it overlaps nothing that exists.
    let p = unsafe { libc::mmap(ptr::null_mut(), map_len(size, page), prot, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p as *mut u8
    }
}

/// Moves a big block's mapping to `new` bytes (mremap), or null.
#[cold]
#[inline(never)]
fn remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
    remap_with(p, old, new, page_size())
}

/// [`remap`] with pages of `page` bytes.
fn remap_with(p: *mut u8, old: usize, new: usize, page: usize) -> *mut u8 {
    // SAFETY: the block is the whole mapping made for `old` bytes with
    // these pages; MAYMOVE keeps its pages (no copy) at a new address if
    // needed.
    let q =
        unsafe { libc::mremap(p as *mut libc::c_void, map_len(old, page), map_len(new, page), libc::MREMAP_MAYMOVE) };
    if q == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        q as *mut u8
    }
}

/// Big blocks: a test inlined at every allocation site, the rest out of
/// line. A constant test: a mapping starts on one of the kernel's pages,
/// so on at least [`MIN_PAGE`] whatever the page size; bigger alignments
/// go to the libc.
#[inline(always)]
fn is_big(size: usize, align: usize) -> bool {
    size >= BIG_BLOCK && align <= MIN_PAGE
}

impl Alloc {
    /// A block of free-list class `c`: the list's head, or a new one.
    #[cfg(target_env = "musl")]
    #[inline(always)] // into alloc, itself out of line on musl
    unsafe fn cached_alloc(&self, c: usize) -> *mut u8 {
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

    /// Frees a block of class `c`: onto its list, or to musl when full.
    #[cfg(target_env = "musl")]
    #[inline(always)]
    unsafe fn cached_dealloc(&self, p: *mut u8, c: usize) {
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

    /// Moves a block to one of another size or kind (copying).
    #[inline(never)]
    unsafe fn move_block(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
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

/// Unmaps a big block.
#[cold]
#[inline(never)]
fn unmap(p: *mut u8, size: usize) {
    unmap_with(p, size, page_size())
}

/// Frees a big block: it becomes the spare (the one before it is
/// unmapped) unless it is over [`SPARE_MAX`].
#[cold]
#[inline(never)]
fn release(p: *mut u8, size: usize) {
    let len = map_len(size, page_size());
    if len > SPARE_MAX {
        return unmap(p, size);
    }
    keep_spare(p, len);
}

/// Makes the whole mapping of `len` bytes at `p` the spare; the one before
/// it (another thread's, at most) is unmapped.
fn keep_spare(p: *mut u8, len: usize) {
    // SAFETY: the mapping is ours, page-aligned and at least a page long.
    unsafe { (p as *mut usize).write(len) };
    let old = SPARE.swap(p, Ordering::AcqRel);
    if !old.is_null() {
        // SAFETY: a spare's first word is its mapping's length.
        unsafe { unmap_with(old, (old as *const usize).read(), 1) };
    }
}

/// Takes the spare: its address and length.
fn take_spare() -> Option<(*mut u8, usize)> {
    let p = SPARE.swap(ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: a spare's first word is its mapping's length.
    (!p.is_null()).then(|| (p, unsafe { (p as *const usize).read() }))
}

/// A big block of `size` bytes for `alloc`: the spare's first pages (the
/// rest stays the spare), the spare grown, or a fresh mapping. Its
/// contents are undefined.
#[cold]
#[inline(never)]
fn take(size: usize) -> *mut u8 {
    let Some((p, len)) = take_spare() else { return map(size) };
    let want = map_len(size, page_size());
    if len > want {
        // SAFETY: p + want is inside the spare's mapping.
        keep_spare(unsafe { p.add(want) }, len - want);
        return p;
    }
    // Both lengths are whole pages already: page size 1 here.
    let q = remap_with(p, len, want, 1);
    if q.is_null() {
        unmap_with(p, len, 1);
        return map(size);
    }
    q
}

/// [`unmap`] with pages of `page` bytes.
fn unmap_with(p: *mut u8, size: usize, page: usize) {
    // SAFETY: the block is the whole mapping made for this size with these
    // pages.
    unsafe { libc::munmap(p as *mut libc::c_void, map_len(size, page)) };
}

// SAFETY: every block handed out is valid for its layout until freed with
// it: mappings are page-aligned and at least as long, cached blocks are of
// the class that fits the layout, the rest is the libc's malloc.
unsafe impl GlobalAlloc for Alloc {
    #[cfg_attr(target_env = "musl", inline(never))] // musl: one copy, not one per call site
    #[cfg_attr(not(target_env = "musl"), inline)]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // Small blocks first: the common case costs what it did before.
        #[cfg(target_env = "musl")]
        if let Some(c) = class(l.size(), l.align()) {
            // SAFETY: c is the class that fits l.
            return unsafe { self.cached_alloc(c) };
        }
        if is_big(l.size(), l.align()) {
            return take(l.size());
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(l) }
    }

    #[cfg_attr(target_env = "musl", inline(never))]
    #[cfg_attr(not(target_env = "musl"), inline)]
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        #[cfg(target_env = "musl")]
        if let Some(c) = class(l.size(), l.align()) {
            // SAFETY: c fits l; the block holds l.size() bytes.
            return unsafe {
                let p = self.cached_alloc(c);
                if !p.is_null() {
                    ptr::write_bytes(p, 0, l.size());
                }
                p
            };
        }
        if is_big(l.size(), l.align()) {
            // A fresh mapping reads as zeros.
            return map(l.size());
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(l) }
    }

    #[cfg_attr(target_env = "musl", inline(never))]
    #[cfg_attr(not(target_env = "musl"), inline)]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        #[cfg(target_env = "musl")]
        if let Some(c) = class(l.size(), l.align()) {
            // SAFETY: a block of class c from cached_alloc.
            return unsafe { self.cached_dealloc(p, c) };
        }
        if is_big(l.size(), l.align()) {
            return release(p, l.size());
        }
        // SAFETY: a block from System.alloc with this layout.
        unsafe { System.dealloc(p, l) }
    }

    #[cfg_attr(target_env = "musl", inline(never))]
    #[cfg_attr(not(target_env = "musl"), inline)]
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let (from_big, to_big) = (is_big(l.size(), l.align()), is_big(new, l.align()));
        if from_big && to_big {
            return remap(p, l.size(), new);
        }
        if !from_big && !to_big {
            #[cfg(target_env = "musl")]
            match (class(l.size(), l.align()), class(new, l.align())) {
                (None, None) => {}
                (a, b) if a == b => return p,
                // SAFETY: the caller's block and layout, passed on.
                _ => return unsafe { self.move_block(p, l, new) },
            }
            // SAFETY: neither size is big nor (musl) of a class: the libc's.
            return unsafe { System.realloc(p, l, new) };
        }
        // SAFETY: the caller's block and layout, passed on.
        unsafe { self.move_block(p, l, new) }
    }
}

/// Bytes that may be handed to a pipe by reference
/// ([`super::fd::vmsplice`]): a block of at least [`BIG_BLOCK`] bytes (so a
/// mapping of its own, unmapped when freed, never reused while a pipe
/// still holds its pages), which nobody can write to any more.
#[derive(Debug)]
pub struct LentBytes(Vec<u8>);

impl LentBytes {
    /// The bytes back when their block is too small to be lent.
    pub fn new(bytes: Vec<u8>) -> Result<LentBytes, Vec<u8>> {
        if bytes.capacity() >= BIG_BLOCK {
            Ok(LentBytes(bytes))
        } else {
            Err(bytes)
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for LentBytes {
    /// Unmaps the block, never making it the spare: a pipe may still hold
    /// its pages.
    fn drop(&mut self) {
        let mut v = std::mem::ManuallyDrop::new(std::mem::take(&mut self.0));
        // A big block of this crate's global allocator (LentBytes::new):
        // its mapping is made for its capacity.
        unmap(v.as_mut_ptr(), v.capacity());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_env = "musl")]
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
    fn big_blocks_are_mappings_and_keep_contents_across_tiers() {
        let a = Alloc::new();
        let l = |n| Layout::from_size_align(n, 8).unwrap();
        // SAFETY: matched alloc/realloc/dealloc with their layouts.
        unsafe {
            let p = a.alloc(l(BIG_BLOCK + 5));
            assert_eq!(p as usize % page_size(), 0, "a mapping starts on a page");
            ptr::write_bytes(p, 3, BIG_BLOCK + 5);
            let q = a.realloc(p, l(BIG_BLOCK + 5), 5 * BIG_BLOCK);
            assert!((0..BIG_BLOCK + 5).step_by(4093).all(|i| *q.add(i) == 3));
            ptr::write_bytes(q, 4, 5 * BIG_BLOCK);
            let m = a.realloc(q, l(5 * BIG_BLOCK), 100_000);
            assert!((0..100_000).step_by(997).all(|i| *m.add(i) == 4));
            let b = a.realloc(m, l(100_000), 2 * BIG_BLOCK);
            assert!((0..100_000).step_by(997).all(|i| *b.add(i) == 4));
            let z = a.alloc_zeroed(l(3 * BIG_BLOCK));
            assert!((0..3 * BIG_BLOCK).step_by(4096).all(|i| *z.add(i) == 0));
            a.dealloc(z, l(3 * BIG_BLOCK));
            a.dealloc(b, l(2 * BIG_BLOCK));
        }
        assert!(is_big(BIG_BLOCK, 4096));
        assert!(!is_big(BIG_BLOCK, 8192));
        assert!(!is_big(BIG_BLOCK - 1, 8));
    }

    /// The big-block path with 16 KiB and 64 KiB pages (multiples of this
    /// kernel's page, so its mmap/mremap/munmap take their lengths): every
    /// length is the size rounded up to that page, the whole rounded
    /// mapping is there (written to its last byte), contents survive growing
    /// and shrinking, and a block is unmapped with the length it was mapped
    /// with.
    #[test]
    fn big_blocks_with_bigger_pages() {
        for page in [16384, 65536] {
            assert_eq!(BIG_BLOCK % page, 0, "the threshold is a whole number of pages");
            assert_eq!(map_len(BIG_BLOCK, page), BIG_BLOCK);
            assert_eq!(map_len(BIG_BLOCK + 5, page), BIG_BLOCK + page);
            assert_eq!(map_len(BIG_BLOCK + page - 1, page), BIG_BLOCK + page);
            if page % page_size() != 0 {
                continue; // a kernel with bigger pages than this size
            }
            // SAFETY: each mapping is used within its rounded length and
            // passed on with the size and page it was made with.
            unsafe {
                let p = map_with(BIG_BLOCK + 5, page);
                assert!(!p.is_null());
                assert_eq!(p as usize % page_size(), 0);
                ptr::write_bytes(p, 3, map_len(BIG_BLOCK + 5, page));
                let q = remap_with(p, BIG_BLOCK + 5, 3 * BIG_BLOCK + 1, page);
                assert!(!q.is_null());
                assert!((0..BIG_BLOCK + page).step_by(4093).all(|i| *q.add(i) == 3));
                assert_eq!(*q.add(BIG_BLOCK + page - 1), 3);
                ptr::write_bytes(q, 4, map_len(3 * BIG_BLOCK + 1, page));
                let r = remap_with(q, 3 * BIG_BLOCK + 1, BIG_BLOCK + 1, page);
                assert!(!r.is_null());
                assert_eq!(*r.add(BIG_BLOCK + page - 1), 4, "shrunk to whole pages of this size");
                unmap_with(r, BIG_BLOCK + 1, page);
            }
        }
    }

    #[test]
    fn a_freed_big_block_is_the_next_one_and_lent_ones_never_are() {
        let a = Alloc::new();
        let l = Layout::from_size_align(3 << 20, 1).unwrap();
        // SAFETY: matched alloc/dealloc with their layouts.
        unsafe {
            let p = a.alloc(l);
            ptr::write_bytes(p, 9, l.size());
            a.dealloc(p, l);
            // Another thread's test may take the spare in between: only
            // the contents are checked when the block comes back.
            let big = Layout::from_size_align(5 << 20, 1).unwrap();
            let q = a.alloc(big);
            if q == p || *q.add(4096) == 9 {
                assert_eq!(*q.add(l.size() - 1), 9, "the spare keeps its pages");
            }
            ptr::write_bytes(q, 1, big.size());
            a.dealloc(q, big);
            // A block cut from the spare's start, grown twice (mremap: one
            // mapping each time), shrunk, freed, taken and grown again.
            let one = Layout::from_size_align(1 << 20, 1).unwrap();
            let b = a.alloc(one);
            ptr::write_bytes(b, 3, one.size());
            let mut g = a.realloc(b, one, 2 << 20);
            g = a.realloc(g, Layout::from_size_align(2 << 20, 1).unwrap(), 6 << 20);
            assert!(!g.is_null());
            assert!((0..one.size()).step_by(512).all(|i| *g.add(i) == 3), "grown: contents kept");
            ptr::write_bytes(g, 4, 6 << 20);
            g = a.realloc(g, Layout::from_size_align(6 << 20, 1).unwrap(), 5 << 20);
            a.dealloc(g, Layout::from_size_align(5 << 20, 1).unwrap());
            let h = a.alloc(Layout::from_size_align(2 << 20, 1).unwrap());
            let h = a.realloc(h, Layout::from_size_align(2 << 20, 1).unwrap(), 9 << 20);
            assert!(!h.is_null());
            ptr::write_bytes(h, 5, 9 << 20);
            a.dealloc(h, Layout::from_size_align(9 << 20, 1).unwrap());
            // alloc_zeroed never takes the spare.
            let z = a.alloc_zeroed(l);
            assert!((0..l.size()).step_by(4096).all(|i| *z.add(i) == 0));
            a.dealloc(z, l);
        }
        // Dropping lent bytes unmaps them (the spare is not them).
        let lent = LentBytes::new(vec![5u8; 2 << 20]).unwrap();
        let at = lent.as_slice().as_ptr() as *mut u8;
        drop(lent);
        assert_ne!(SPARE.load(Ordering::Acquire), at);
    }

    #[cfg(target_env = "musl")]
    #[test]
    fn recycles_and_keeps_contents_on_realloc() {
        let a = Alloc::new();
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
