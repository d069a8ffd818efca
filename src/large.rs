//! Large blocks (32 KiB < size <= 2 MiB): runs of 4 KiB pages in large
//! segments, found by a word-at-a-time bitmap search under the arena lock.
//! Kept apart from size-class pages so they never fragment them.
//!
//! ```text
//!  large segment (4 MiB, 1024 OS pages)
//!  ┌──────┬───────────┬──┬─────────────────┬────────┬──────────────┐
//!  │header│ block A   │  │ block B         │  free  │ block C      │
//!  └──────┴───────────┴──┴─────────────────┴────────┴──────────────┘
//!  used   1 1 1 1 1 1 1 0 1 1 1 1 1 1 1 1 1 0 0 0 0 1 1 1 1 1 1 1 1
//!  len    . 6 . . . . . . 9 . . . . . . . . . . . . 8 . . . . . . .
//!  len[i] = pages of the block starting at page i, | LIVE | CACHED
//! ```
//! Invariants (arena lock held for every access, except the `len` entry of
//! a block start, which is atomic): `used` has a bit per page in use (page
//! 0, the header, always); the first page of each live block has `LIVE`
//! in its `len` entry, with the block's length in `len[i] & LEN`; `dirty`
//! marks pages that may hold non-zero data; `purge` ⊆ free pages awaiting
//! a purge, and `npurge` = the number of its set bits; `free_count` =
//! number of clear `used` bits.
//!
//! A block start's `len` entry is the block's state, changed only by
//! compare-and-swap (or under the lock when it is the lock holder's alone):
//! `n | LIVE` while the program holds it; `n | LIVE | CACHED` while it is
//! freed into its freeing thread's cache (`thread cache` below: still live
//! for the arena, not for the program); `n` once freed to the arena (kept
//! for the double-free report); 0 on pages that start no block. A second
//! free finds the state it expects gone, wherever the first free put the
//! block.
//!
//! Thread cache: each heap keeps up to [`CACHE_SLOTS`] blocks of at most
//! [`CACHE_MAX`] bytes that its thread freed, and its next large `malloc`
//! of the same page count takes one back without the arena lock, the
//! bitmap search or the purge bookkeeping. The cache is emptied into the
//! arena when the thread exits and by `trim`.

use crate::arena::{self, Arena, Inner};
use crate::bitmap;
use crate::error::{fatal, Fault, Op};
use crate::segmap::{self, Kind, CHUNK};
use crate::{options, os, stats, thread};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

const NPAGES: usize = CHUNK / os::PAGE;
const NWORDS: usize = NPAGES / 64;
/// The largest large block (and the largest alignment served here).
pub const LARGE_MAX: usize = 2 << 20;

/// The header of a large segment (its first 4 KiB page).
#[repr(C)]
pub struct LargeSeg {
    arena: *mut Arena,
    next: *mut LargeSeg,
    prev: *mut LargeSeg,
    free_count: usize,
    purge_at: u64,
    /// The segment is advised transparent huge pages.
    thp: bool,
    used: [u64; NWORDS],
    dirty: [u64; NWORDS],
    purge: [u64; NWORDS],
    npurge: usize,
    len: [AtomicU16; NPAGES],
}

/// `len` flag: the block starting here is live for its arena.
const LIVE: u16 = 1 << 14;
/// `len` flag: the (live) block starting here sits in a thread cache.
const CACHED: u16 = 1 << 15;
/// `len` bits holding the page count (at most 512).
const LEN: u16 = LIVE - 1;

/// Blocks a heap's cache holds.
pub const CACHE_SLOTS: usize = 4;
/// The largest block a thread cache takes (so a thread holds at most
/// 1 MiB there).
pub const CACHE_MAX: usize = 256 << 10;

const _: () = assert!(core::mem::size_of::<LargeSeg>() <= os::PAGE);

/// True when a block of `size` bytes aligned to `align` is served here.
pub fn fits(size: usize, align: usize) -> bool {
    size <= LARGE_MAX && align <= LARGE_MAX
}

fn pages_for(size: usize) -> usize {
    size.div_ceil(os::PAGE).max(1)
}

/// The arena of the calling thread (setting up its heap if needed).
fn my_arena() -> *mut Arena {
    let mut h = thread::heap();
    if h == crate::heap::empty_heap() {
        h = thread::init_heap();
        if h.is_null() {
            return null_mut();
        }
    }
    // SAFETY: a real heap's arena is set.
    unsafe { (*h).arena }
}

/// Allocates a large block; null when out of memory.
///
/// # Safety
/// `fits(size, align)` holds.
pub unsafe fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let n = pages_for(size);
    if align <= os::PAGE {
        let p = cache_take(n);
        if !p.is_null() {
            if zero {
                // SAFETY: the block holds at least n pages, ours now; a
                // cached block's memory is not known to be zero.
                unsafe { core::ptr::write_bytes(p, 0, size) };
            }
            return p;
        }
    }
    let a = my_arena();
    if a.is_null() {
        return null_mut();
    }
    let step = (align / os::PAGE).max(1);
    // SAFETY: arenas are static.
    let arena = unsafe { &*a };
    let found = arena.with(|inner| {
        let mut seg = inner.large;
        while !seg.is_null() {
            // SAFETY: large segments of this arena are guarded by its lock.
            unsafe {
                if (*seg).free_count >= n {
                    if let Some(i) = bitmap::find_clear_run(&(*seg).used, NPAGES, n, step) {
                        inner.large_bytes += n * os::PAGE;
                        inner.large_count += 1;
                        return Some(take(&mut *seg, i, n));
                    }
                }
                seg = (*seg).next;
            }
        }
        // SAFETY: as above; `a` is this arena.
        let seg = unsafe { new_segment(inner, a) };
        if seg.is_null() {
            return None;
        }
        // SAFETY: a fresh segment has room for any fitting block.
        unsafe {
            let i = bitmap::find_clear_run(&(*seg).used, NPAGES, n, step)?;
            inner.large_bytes += n * os::PAGE;
            inner.large_count += 1;
            Some(take(&mut *seg, i, n))
        }
    });
    let Some((p, clean)) = found else {
        return null_mut();
    };
    stats::note_large(true);
    if zero && !clean {
        // SAFETY: the block spans n pages owned by the caller now.
        unsafe { core::ptr::write_bytes(p, 0, size) };
    }
    p
}

/// Maps and links a new large segment. Lock held.
unsafe fn new_segment(inner: &mut Inner, a: *mut Arena) -> *mut LargeSeg {
    // Not the arena's first large segment: the program keeps more than one
    // segment's worth of large blocks, usually filled whole, so each fault
    // may map 2 MiB (at 4 KiB pages the large workload at 8 threads made
    // 31,000 faults per run here, advised 4,200). A program with a few
    // large buffers keeps its first segment at 4 KiB pages.
    let thp = !inner.large.is_null();
    // The lock is already held: take the cache directly.
    let (base, clean) = arena::segment_memory_locked(inner, thp);
    if base.is_null() {
        return null_mut();
    }
    let seg = base as *mut LargeSeg;
    // SAFETY: base is a fresh 4 MiB mapping; the header is its first page.
    unsafe {
        core::ptr::write_bytes(seg as *mut u8, 0, core::mem::size_of::<LargeSeg>());
        let s = &mut *seg;
        s.arena = a;
        s.thp = thp;
        s.free_count = NPAGES - 1;
        s.used[0] = 1;
        if !clean {
            // Cached memory not purged: every page may hold data.
            s.dirty = [!0; NWORDS];
            stats::note_commit(CHUNK as isize);
        } else {
            // The header page is written now.
            s.dirty[0] = 1;
            stats::note_commit(os::PAGE as isize);
        }
        s.next = inner.large;
        if !inner.large.is_null() {
            (*inner.large).prev = seg;
        }
        inner.large = seg;
    }
    segmap::set(base as usize, Kind::Large);
    stats::note_segment(1);
    seg
}

/// Marks pages `[i, i+n)` as a block; returns its address and whether its
/// memory is known to be zero. Lock held.
fn take(s: &mut LargeSeg, i: usize, n: usize) -> (*mut u8, bool) {
    bitmap::fill_range(&mut s.used, i, n, true);
    if s.npurge != 0 {
        s.npurge -= bitmap::set_range(&mut s.purge, i, n, false);
    }
    let fresh = bitmap::set_range(&mut s.dirty, i, n, true);
    stats::note_commit((fresh * os::PAGE) as isize);
    let clean = fresh == n;
    for l in &s.len[i + 1..i + n] {
        l.store(0, Ordering::Relaxed);
    }
    s.len[i].store(n as u16 | LIVE, Ordering::Release);
    s.free_count -= n;
    (
        (s as *mut LargeSeg as usize + i * os::PAGE) as *mut u8,
        clean,
    )
}

/// The segment and page index of `p`, if `p` is page-aligned past the
/// header.
fn locate(p: *mut u8) -> Option<(*mut LargeSeg, usize)> {
    let a = p as usize;
    let base = a & !(CHUNK - 1);
    let off = a - base;
    if !off.is_multiple_of(os::PAGE) || off == 0 {
        return None;
    }
    Some((base as *mut LargeSeg, off / os::PAGE))
}

/// The segment and page index of a block known to start a page of a large
/// segment (one in a thread cache): no test, no panic path.
fn start_of(p: usize) -> (*mut LargeSeg, usize) {
    let base = p & !(CHUNK - 1);
    (base as *mut LargeSeg, (p - base) / os::PAGE)
}

/// Why page `i` does not start a live block. Lock held.
fn fault_at(s: &LargeSeg, i: usize) -> Fault {
    let state = s.len[i].load(Ordering::Acquire);
    if state & CACHED != 0 || (!bitmap::get(&s.used, i) && state & LEN != 0) {
        Fault::DoubleFree
    } else {
        Fault::Invalid
    }
}

/// Frees a large block: into the calling thread's cache when it has room
/// and the block is small enough, else back to its arena.
///
/// # Safety
/// The chunk map says `p` lies in a large segment.
pub unsafe fn free(p: *mut u8, op: Op) {
    let Some((seg, i)) = locate(p) else {
        fatal(op, Fault::Invalid, p as usize);
    };
    // SAFETY: as the caller guarantees; locate checked the offset.
    if unsafe { cache_put(p, seg, i) } {
        return;
    }
    // SAFETY: as above.
    unsafe { free_locked(p, seg, i, op, true) }
}

/// Frees the block starting at page `i` of `seg` back to its arena,
/// validating it under the lock. `count`: a free by the program (false
/// for a block leaving a thread cache, already counted when it went in).
///
/// # Safety
/// The chunk map says a large segment is mapped at `seg`; `i < NPAGES`.
unsafe fn free_locked(p: *mut u8, seg: *mut LargeSeg, i: usize, op: Op, count: bool) {
    // SAFETY: the chunk map says a large segment is mapped at seg.
    let arena = unsafe { &*(*seg).arena };
    arena.with(|inner| {
        // SAFETY: guarded by the arena lock.
        let s = unsafe { &mut *seg };
        let state = s.len[i].load(Ordering::Acquire);
        // Live and not cached, and still so when the state changes (a
        // racing second free into a cache would have changed it).
        if state & (LIVE | CACHED) != LIVE
            || s.len[i]
                .compare_exchange(state, state & LEN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            fatal(op, fault_at(s, i), p as usize);
        }
        let n = (state & LEN) as usize;
        bitmap::fill_range(&mut s.used, i, n, false);
        s.free_count += n;
        inner.remember_freed(p as usize);
        inner.large_bytes -= n * os::PAGE;
        inner.large_count -= 1;
        if count {
            stats::note_large(false);
        }
        let mut now = None;
        if s.free_count == NPAGES - 1 {
            let committed = bitmap::set_range(&mut s.dirty, 0, NPAGES, false) * os::PAGE;
            // SAFETY: the segment is empty; unlink and release it.
            unsafe { unlink(inner, seg) };
            arena::release_locked(inner, seg as *mut u8, committed, s.thp);
        } else {
            now = schedule_purge(inner, s, i, n);
        }
        arena::purge_due_locked_at(inner, false, now);
    });
}

/// Purges freed pages now or marks them for the delayed purge; returns the
/// time if it read it (for the caller's purge check). Lock held.
fn schedule_purge(inner: &mut Inner, s: &mut LargeSeg, i: usize, n: usize) -> Option<u64> {
    let mut now = None;
    let delay = options::purge_delay_ms();
    if delay == 0 {
        // SAFETY: the pages are free.
        unsafe {
            os::purge(
                (s as *mut LargeSeg as usize + i * os::PAGE) as *mut u8,
                n * os::PAGE,
            )
        };
        let purged = bitmap::set_range(&mut s.dirty, i, n, false);
        stats::note_commit(-((purged * os::PAGE) as isize));
    } else {
        // Purged when due, or by trim() whatever the delay (-1: never due).
        // Pages already waiting keep their deadline: frees that keep coming
        // must not put the purge off forever.
        if s.npurge == 0 {
            s.purge_at = if delay > 0 {
                let t = os::now_ms();
                now = Some(t);
                t + delay as u64 * options::ARENA_PURGE_MULT
            } else {
                crate::segment::NEVER
            };
        }
        s.npurge += bitmap::set_range(&mut s.purge, i, n, true);
        if delay > 0 && inner.purge_at == 0 {
            inner.purge_at = s.purge_at;
        }
    }
    now
}

/// Unlinks a large segment from its arena. Lock held.
unsafe fn unlink(inner: &mut Inner, seg: *mut LargeSeg) {
    // SAFETY: seg is in the arena's list, guarded by the lock.
    unsafe {
        let s = &mut *seg;
        if s.prev.is_null() {
            inner.large = s.next;
        } else {
            (*s.prev).next = s.next;
        }
        if !s.next.is_null() {
            (*s.next).prev = s.prev;
        }
    }
    segmap::set(seg as usize, Kind::None);
}

/// Purges due (or all, `force`) free pages of the arena's large segments.
/// Returns whether anything was purged and the next due time (0: none).
/// Lock held.
pub fn purge_due_locked(inner: &mut Inner, now: u64, force: bool) -> (bool, u64) {
    let mut any = false;
    let mut next_due = 0u64;
    let mut seg = inner.large;
    while !seg.is_null() {
        // SAFETY: guarded by the arena lock.
        let s = unsafe { &mut *seg };
        if s.npurge != 0 {
            if force || now >= s.purge_at {
                let mut i = 0;
                while let Some(lo) = bitmap::next(&s.purge, i, NPAGES, true) {
                    let hi = bitmap::next(&s.purge, lo, NPAGES, false).unwrap_or(NPAGES);
                    // SAFETY: pages in `purge` are free.
                    unsafe {
                        os::purge(
                            (seg as usize + lo * os::PAGE) as *mut u8,
                            (hi - lo) * os::PAGE,
                        )
                    };
                    let purged = bitmap::set_range(&mut s.dirty, lo, hi - lo, false);
                    stats::note_commit(-((purged * os::PAGE) as isize));
                    i = hi;
                }
                s.purge = [0; NWORDS];
                s.npurge = 0;
                any = true;
            } else if s.purge_at != crate::segment::NEVER
                && (next_due == 0 || s.purge_at < next_due)
            {
                next_due = s.purge_at;
            }
        }
        seg = s.next;
    }
    (any, next_due)
}

/// The usable size of the large block at `p`, if it is a live block.
///
/// # Safety
/// The chunk map says `p` lies in a large segment.
pub unsafe fn usable(p: *mut u8) -> Option<usize> {
    let (seg, i) = locate(p)?;
    // SAFETY: the chunk map says a large segment is mapped at seg.
    let arena = unsafe { &*(*seg).arena };
    arena.with(|_| {
        // SAFETY: guarded by the arena lock.
        let s = unsafe { &*seg };
        let state = s.len[i].load(Ordering::Acquire);
        (state & (LIVE | CACHED) == LIVE).then(|| (state & LEN) as usize * os::PAGE)
    })
}

/// Grows or shrinks the live large block at `p` in place to `size` bytes.
/// True on success.
///
/// # Safety
/// `p` is a live large block (validated by the caller).
pub unsafe fn resize_in_place(p: *mut u8, size: usize) -> bool {
    if size <= crate::size_class::MEDIUM_MAX || size > LARGE_MAX {
        return false;
    }
    let Some((seg, i)) = locate(p) else {
        return false;
    };
    let want = pages_for(size);
    // SAFETY: the chunk map says a large segment is mapped at seg.
    let arena = unsafe { &*(*seg).arena };
    arena.with(|inner| {
        // SAFETY: guarded by the arena lock.
        let s = unsafe { &mut *seg };
        let n = (s.len[i].load(Ordering::Acquire) & LEN) as usize;
        if want == n {
            return true;
        }
        if want < n {
            bitmap::fill_range(&mut s.used, i + want, n - want, false);
            s.free_count += n - want;
            s.len[i].store(want as u16 | LIVE, Ordering::Release);
            schedule_purge(inner, s, i + want, n - want);
            inner.large_bytes -= (n - want) * os::PAGE;
            return true;
        }
        if i + want > NPAGES || !bitmap::range_clear(&s.used, i + n, want - n) {
            return false;
        }
        bitmap::fill_range(&mut s.used, i + n, want - n, true);
        if s.npurge != 0 {
            s.npurge -= bitmap::set_range(&mut s.purge, i + n, want - n, false);
        }
        let fresh = bitmap::set_range(&mut s.dirty, i + n, want - n, true);
        stats::note_commit((fresh * os::PAGE) as isize);
        s.free_count -= want - n;
        s.len[i].store(want as u16 | LIVE, Ordering::Release);
        inner.large_bytes += (want - n) * os::PAGE;
        true
    })
}

/// A heap's cache of large blocks its thread freed (see the module doc).
/// Owner-only, except `bytes` and `count`, read by `stats()`.
pub struct Cache {
    blocks: [usize; CACHE_SLOTS],
    pages: [u16; CACHE_SLOTS],
    len: usize,
    /// Bytes of the blocks held (live for their arenas, free for the
    /// program: `stats()` subtracts them).
    pub bytes: AtomicUsize,
    /// Blocks held.
    pub count: AtomicUsize,
    /// Large blocks the thread allocated, through the cache or not
    /// (owner-written, read by `stats()`: no cache line that other
    /// threads write, and no atomic read-modify-write).
    pub allocs: AtomicU64,
    /// Large blocks the thread freed, into the cache or not.
    pub frees: AtomicU64,
}

impl Cache {
    /// An empty cache.
    pub const fn new() -> Cache {
        Cache {
            blocks: [0; CACHE_SLOTS],
            pages: [0; CACHE_SLOTS],
            len: 0,
            bytes: AtomicUsize::new(0),
            count: AtomicUsize::new(0),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
        }
    }

    /// Counts a block of `pages` pages in (`add`) or out. Release stores:
    /// a `stats()` that reads them (acquire) and then takes the arena lock
    /// sees the arena as it was when they were written.
    fn note(&self, pages: usize, add: bool) {
        let (b, c) = (
            self.bytes.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        );
        let bytes = pages * os::PAGE;
        if add {
            self.bytes.store(b + bytes, Ordering::Release);
            self.count.store(c + 1, Ordering::Release);
        } else {
            self.bytes.store(b - bytes, Ordering::Release);
            self.count.store(c - 1, Ordering::Release);
        }
    }
}

/// The calling thread's cache, if it has a heap.
pub(crate) fn my_cache() -> Option<&'static mut Cache> {
    let h = thread::heap();
    if h == crate::heap::empty_heap() {
        return None;
    }
    // SAFETY: a real heap is the calling thread's own; heaps are never
    // unmapped, and only the owner touches the cache's slots.
    Some(unsafe { &mut (*h).large_cache })
}

/// Puts the block at `p` (page `i` of `seg`) in the calling thread's cache
/// if it is live, not cached, small enough and the cache has room: its
/// state goes from live to cached by one compare-and-swap, so of two
/// frees of the same block only one can. False otherwise (the caller frees
/// it under the arena lock, which reports a bad pointer).
///
/// # Safety
/// The chunk map says a large segment is mapped at `seg`; `i < NPAGES`.
unsafe fn cache_put(p: *mut u8, seg: *mut LargeSeg, i: usize) -> bool {
    let Some(c) = my_cache() else {
        return false;
    };
    if c.len == CACHE_SLOTS {
        return false;
    }
    // SAFETY: the header of a mapped large segment; `len` is atomic.
    let l = unsafe { &(*seg).len[i] };
    let state = l.load(Ordering::Acquire);
    let n = (state & LEN) as usize;
    if state & (LIVE | CACHED) != LIVE || n * os::PAGE > CACHE_MAX {
        return false;
    }
    if l.compare_exchange(state, state | CACHED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    c.blocks[c.len] = p as usize;
    c.pages[c.len] = n as u16;
    c.len += 1;
    c.note(n, true);
    crate::heap::bump(&c.frees);
    true
}

/// Takes from the calling thread's cache a block of `n` to `n + n/8`
/// pages (marked live again); null when it has none.
fn cache_take(n: usize) -> *mut u8 {
    let Some(c) = my_cache() else {
        return null_mut();
    };
    for k in 0..c.len {
        let m = c.pages[k] as usize;
        if m < n || m > n + n / 8 {
            continue;
        }
        let p = c.blocks[k];
        c.len -= 1;
        c.blocks[k] = c.blocks[c.len];
        c.pages[k] = c.pages[c.len];
        c.note(m, false);
        crate::heap::bump(&c.allocs);
        let (seg, i) = start_of(p);
        // SAFETY: the block is cached, so its segment is mapped.
        unsafe { (*seg).len[i].fetch_and(!CACHED, Ordering::AcqRel) };
        return p as *mut u8;
    }
    null_mut()
}

/// Frees every block of a heap's cache to its arena (thread exit, `trim`).
/// True when there were some.
///
/// # Safety
/// `c` is the cache of the calling thread's heap (or of the heap of the
/// thread now exiting, from its exit handler).
pub unsafe fn flush_cache(c: &mut Cache) -> bool {
    let had = c.len > 0;
    while c.len > 0 {
        c.len -= 1;
        let (p, m) = (c.blocks[c.len], c.pages[c.len] as usize);
        let (seg, i) = start_of(p);
        // SAFETY: the block is cached (live for its arena): mapped, and
        // freed once, here, after it leaves the cache.
        unsafe {
            (*seg).len[i].fetch_and(!CACHED, Ordering::AcqRel);
            free_locked(p as *mut u8, seg, i, Op::Free, false);
        }
        // Counted out of the cache only once its arena no longer counts
        // it: `stats()` (which reads the caches first, then the arenas)
        // never sees it in use.
        c.note(m, false);
    }
    had
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `npurge` counts the set bits of `purge` in every large segment of
    /// the calling thread's arena.
    fn check_npurge() {
        // SAFETY: arenas are static; the walk holds the arena lock.
        let arena = unsafe { &*my_arena() };
        arena.with(|inner| {
            let mut seg = inner.large;
            while !seg.is_null() {
                // SAFETY: guarded by the arena lock.
                let s = unsafe { &*seg };
                let bits: usize = s.purge.iter().map(|w| w.count_ones() as usize).sum();
                assert_eq!(s.npurge, bits);
                seg = s.next;
            }
        });
    }

    /// The state (`len` entry) of the block at `p`.
    fn state_of(p: *mut u8) -> u16 {
        let (seg, i) = locate(p).unwrap();
        // SAFETY: p lies in a mapped large segment.
        unsafe { (*seg).len[i].load(Ordering::Acquire) }
    }

    /// The calling thread's cache (the thread has a heap).
    fn cache() -> &'static mut Cache {
        my_cache().expect("this thread has a heap")
    }

    #[test]
    fn the_thread_cache_serves_the_next_request_of_the_same_pages() {
        std::thread::spawn(|| unsafe {
            // SAFETY: plain allocations, each freed once.
            let p = crate::raw::malloc(100_000);
            let pages = pages_for(100_000) as u16;
            assert_eq!(state_of(p), pages | LIVE);
            crate::raw::free(p);
            assert_eq!(state_of(p), pages | LIVE | CACHED);
            assert_eq!(cache().len, 1);
            assert_eq!(
                cache().bytes.load(Ordering::Relaxed),
                pages as usize * os::PAGE
            );
            // Same page count: the cached block; another size: not it.
            let q = crate::raw::malloc(100_000 - 100);
            assert_eq!(q, p);
            assert_eq!(state_of(q), pages | LIVE);
            assert_eq!(cache().len, 0);
            let r = crate::raw::malloc(200_000);
            crate::raw::free(q);
            let big = crate::raw::malloc(CACHE_MAX + 4096);
            assert_ne!(crate::raw::malloc(200_000 + 8192), q);
            // Too big for the cache: back to the arena at once.
            crate::raw::free(big);
            assert_eq!(state_of(big) & (LIVE | CACHED), 0);
            crate::raw::free(r);
            assert_eq!(cache().len, 2);
            // trim empties it into the arenas.
            crate::raw::trim();
            assert_eq!(cache().len, 0);
            assert_eq!(cache().bytes.load(Ordering::Relaxed), 0);
            assert_eq!(state_of(q) & (LIVE | CACHED), 0);
            assert_eq!(state_of(r) & (LIVE | CACHED), 0);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_full_cache_frees_to_the_arena_and_thread_exit_empties_it() {
        let kept: Vec<usize> = std::thread::spawn(|| {
            let blocks: Vec<*mut u8> = (0..CACHE_SLOTS + 2)
                // SAFETY: plain allocations.
                .map(|k| unsafe { crate::raw::malloc(40_000 + k * 8192) })
                .collect();
            for &p in &blocks {
                // SAFETY: each block freed once.
                unsafe { crate::raw::free(p) };
            }
            assert_eq!(cache().len, CACHE_SLOTS);
            let cached = blocks
                .iter()
                .filter(|&&p| state_of(p) & CACHED != 0)
                .count();
            assert_eq!(cached, CACHE_SLOTS);
            blocks.iter().map(|&p| p as usize).collect()
        })
        .join()
        .unwrap();
        // The thread has exited: every block went back to its arena.
        for p in kept {
            assert_eq!(state_of(p as *mut u8) & (LIVE | CACHED), 0, "{p:#x}");
        }
    }

    #[test]
    fn npurge_follows_frees_reuse_resizes_and_purges() {
        let sizes = [48_000, 100_000, 300_000, 64 << 10, 1 << 20];
        let mut live = Vec::new();
        for round in 0..3 {
            for &n in &sizes {
                // SAFETY: plain allocations, freed below.
                let p = unsafe { crate::raw::malloc(n + round * 4096) };
                assert!(!p.is_null());
                live.push((p, n + round * 4096));
                check_npurge();
            }
            for k in (0..live.len()).step_by(2).rev() {
                let (p, n) = live.swap_remove(k);
                // SAFETY: each block is freed once; in-place resizes first.
                unsafe {
                    assert!(resize_in_place(p, n * 3 / 4));
                    check_npurge();
                    resize_in_place(p, n);
                    check_npurge();
                    crate::raw::free(p);
                }
                check_npurge();
            }
            crate::raw::trim();
            check_npurge();
        }
        for (p, _) in live {
            // SAFETY: the remaining blocks, freed once.
            unsafe { crate::raw::free(p) };
        }
        check_npurge();
    }
}
