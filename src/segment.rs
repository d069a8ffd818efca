//! Small segments: 4 MiB, 4 MiB-aligned, owned by one heap (thread).
//!
//! ```text
//!  0        64K       128K                                          4M
//!  ┌─────────┬─────────┬─────────┬─────────┬───────────────┬─────────┐
//!  │ header, page      │ page 2  │ page 3  │      ...      │ page 63 │
//!  │ descriptors,      │ class a │ class b │               │         │
//!  │ free + xfree rows │ blocks  │ blocks  │               │         │
//!  └─────────┴─────────┴─────────┴─────────┴───────────────┴─────────┘
//!    metadata (pages 0-1): never handed out, never holds user data
//! ```
//! The segment of any block is `addr & !(4 MiB - 1)` and its page is
//! `(addr >> 16) & 63`: `free` finds metadata in O(1), never by search.
//!
//! Invariants:
//! - `owner` is the heap that may touch owner-only fields, or null while the
//!   segment is abandoned (then only the arena lock holder may);
//! - `free_pages` has a bit for each page not in use (never pages 0-1);
//!   `used_pages` counts the others;
//! - `dirty_pages`: pages whose memory may be non-zero;
//! - `purge_pages` ⊆ `free_pages`: unused pages still holding memory, page
//!   `i` due at `page_due[i]`, `purge_at` the earliest of those;
//! - `xpending` has a bit for each page whose xfree row may be non-zero.

use crate::error::{fatal, Fault, Op};
use crate::heap::Heap;
use crate::page::{Page, WORDS, XFREE_DELTA};
use crate::segmap::{self, CHUNK};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Segment size.
pub const SEGMENT_SIZE: usize = CHUNK;
/// A purge deadline that never comes (purge delay -1): only `trim` purges.
pub const NEVER: u64 = u64::MAX;
/// log2 of the page size.
pub const PAGE_SHIFT: usize = 16;
/// Page size: 64 KiB.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Pages per segment.
pub const PAGES: usize = SEGMENT_SIZE / PAGE_SIZE;
/// Pages holding metadata at the start of each segment.
pub const META_PAGES: usize = 2;
/// Mask of the pages that can hold blocks.
pub const USABLE_PAGES: u64 = !((1u64 << META_PAGES) - 1);

/// A cache-line-aligned atomic word (written by other threads).
#[repr(C, align(64))]
pub struct Padded(pub AtomicU64);

/// The segment header, at the segment's first byte. The page descriptors
/// come first, so that a descriptor's address is the segment's plus a
/// multiple of its size (one `lea` on the free path).
#[repr(C)]
pub struct Segment {
    /// Page descriptors.
    pub pages: [Page; PAGES],
    /// The owning heap, or null while abandoned.
    pub owner: AtomicPtr<Heap>,
    /// The owning thread's tag (`thread::tid`), `NO_OWNER` while abandoned:
    /// the `free` fast path compares it with the caller's TLS slot.
    pub owner_tid: AtomicUsize,
    /// The arena the segment came from and returns to.
    pub arena: *mut crate::arena::Arena,
    /// Pages not in use.
    pub free_pages: u64,
    /// Pages whose memory may be non-zero.
    pub dirty_pages: u64,
    /// Unused pages waiting to be purged, each at its own `page_due`.
    pub purge_pages: u64,
    /// The earliest `page_due` of `purge_pages` (ms; `NEVER` for none due
    /// before `trim`). Meaningful only while `purge_pages` is non-zero.
    pub purge_at: u64,
    /// For each page of `purge_pages`: when it becomes due (retired time
    /// plus the purge delay, ms). A page is purged only once it has been
    /// unused for the whole delay, however its neighbours were retired.
    pub page_due: [u64; PAGES],
    /// Number of pages in use.
    pub used_pages: u32,
    /// In its arena's abandoned list.
    pub abandoned: bool,
    /// In the owner's list of segments with free pages (else the full list).
    pub in_avail: bool,
    /// All bits set, never written after set-up: the `free` row of every
    /// page not in use points here, so that a free into such a page fails
    /// the bit test (its word `XFREE_DELTA` bytes further, which the owner's
    /// free path also reads, lies in the metadata too).
    pub ones: AtomicU64,
    /// List links (heap lists, or the arena's abandoned list).
    pub next: *mut Segment,
    /// List links.
    pub prev: *mut Segment,
    /// Pages that received cross-thread frees (any thread sets bits).
    pub xpending: Padded,
    /// Cross-thread frees in progress (same cache line as `xpending`): the
    /// segment is not released while one is, since the freer still reads
    /// and writes the header after its block became free.
    pub xinflight: AtomicU64,
    /// Owner rows: bit set = block free.
    pub free_rows: [[AtomicU64; WORDS]; PAGES],
    /// Cross-thread rows: bit set = freed by another thread.
    pub xfree_rows: [[AtomicU64; WORDS]; PAGES],
}

const _: () = assert!(core::mem::size_of::<Segment>() <= META_PAGES * PAGE_SIZE);

const _: () = assert!(
    core::mem::offset_of!(Segment, xfree_rows) - core::mem::offset_of!(Segment, free_rows)
        == XFREE_DELTA
);

/// Bytes of a segment's metadata pages that the header occupies (counted
/// as committed while the segment is in use).
const META_BYTES: usize =
    core::mem::size_of::<Segment>().div_ceil(crate::os::PAGE) * crate::os::PAGE;

/// The committed bytes of a segment: its header and the pages used since
/// they were last purged (see `Stats::committed`).
///
/// # Safety
/// `seg` is a live segment whose owner (or arena lock holder) is the caller.
pub unsafe fn committed(seg: *mut Segment) -> usize {
    // SAFETY: as the caller guarantees.
    let dirty = unsafe { (*seg).dirty_pages } & USABLE_PAGES;
    META_BYTES + dirty.count_ones() as usize * PAGE_SIZE
}

/// The segment holding `p` (any address inside a small segment).
#[inline(always)]
pub fn segment_of(p: usize) -> *mut Segment {
    (p & !(SEGMENT_SIZE - 1)) as *mut Segment
}

/// Initialises a segment header on freshly mapped (or cached) memory at
/// `base`, owned by `owner`. `clean`: the memory is known to be zero.
///
/// # Safety
/// `base` is a 4 MiB-aligned mapping of 4 MiB that nothing else uses.
pub unsafe fn init(
    base: *mut u8,
    owner: *mut Heap,
    arena: *mut crate::arena::Arena,
    clean: bool,
) -> *mut Segment {
    let seg = base as *mut Segment;
    // SAFETY: the header lies in the segment's metadata pages, ours alone.
    unsafe {
        let s = &mut *seg;
        s.owner = AtomicPtr::new(owner);
        s.owner_tid = AtomicUsize::new(crate::thread::tid());
        s.arena = arena;
        s.free_pages = USABLE_PAGES;
        if crate::secure::on() {
            // Secure mode: guard pages around the slabs; the last page is one.
            s.free_pages &= !crate::guard::guard_segment(base);
        }
        s.dirty_pages = if clean { 0 } else { !0 };
        s.purge_pages = 0;
        s.purge_at = 0;
        s.used_pages = 0;
        s.abandoned = false;
        s.in_avail = false;
        s.next = core::ptr::null_mut();
        s.prev = core::ptr::null_mut();
        s.xpending.0.store(0, Ordering::Relaxed);
        s.xinflight.store(0, Ordering::Relaxed);
        s.ones.store(!0, Ordering::Relaxed);
        let ones = s.ones.as_ptr().cast::<AtomicU64>();
        for i in 0..PAGES {
            let free = s.free_rows[i].as_mut_ptr();
            let pg = &mut s.pages[i];
            *pg = Page::empty(free);
            pg.start = base as usize + i * PAGE_SIZE;
            pg.free = ones;
        }
    }
    segmap::set_small(base as usize, crate::secure::on());
    crate::stats::note_segment(1);
    // SAFETY: just set up, ours.
    crate::stats::note_commit(unsafe { committed(seg) } as isize);
    seg
}

/// The free page to take next: of the pages waiting for their purge (still
/// committed: no page faults to fill them again), the one closest to it,
/// which is thereby saved from it while the younger ones may yet be
/// wanted; else the lowest free page. Taking the lowest free page whatever
/// its state made threads refill purged pages while committed ones fell
/// due (sh8bench at 8 threads: 19,700 page faults per run, 5,200 now, as
/// many as with no purging at all).
fn pick_page(s: &Segment) -> usize {
    let mut waiting = s.purge_pages & s.free_pages;
    if waiting != 0 {
        let (mut best, mut due) = (0, u64::MAX);
        while waiting != 0 {
            let i = waiting.trailing_zeros() as usize;
            waiting &= waiting - 1;
            if s.page_due[i] <= due {
                (best, due) = (i, s.page_due[i]);
            }
        }
        return best;
    }
    s.free_pages.trailing_zeros() as usize
}

/// Takes a free page of `seg` and sets it up for class `class`; null when
/// the segment has no free page. Caller: the owner.
///
/// # Safety
/// `seg` is a live segment owned by the caller.
pub unsafe fn take_page(seg: *mut Segment, class: usize) -> *mut Page {
    // SAFETY: the caller owns the segment.
    let s = unsafe { &mut *seg };
    if s.free_pages == 0 {
        return core::ptr::null_mut();
    }
    let i = pick_page(s);
    let bit = 1u64 << i;
    s.free_pages &= !bit;
    s.purge_pages &= !bit;
    let zero = s.dirty_pages & bit == 0;
    if zero {
        crate::stats::note_commit(PAGE_SIZE as isize);
    }
    s.dirty_pages |= bit;
    s.used_pages += 1;
    let row = s.free_rows[i].as_mut_ptr();
    let pg = &mut s.pages[i];
    pg.setup(row, class, crate::size_class::class_size(class), zero);
    pg
}

/// Returns an empty page to its segment's free pages. Returns true when the
/// segment is now entirely unused. `delay_ms`: purge delay (<0 never).
///
/// # Safety
/// The caller owns `seg` (or holds its arena's lock while it is
/// abandoned); the page has no live block and is in no list.
pub unsafe fn retire_page(seg: *mut Segment, page: *mut Page, now: u64, delay_ms: i64) -> bool {
    // SAFETY: as the caller guarantees.
    let (s, pg) = unsafe { (&mut *seg, &mut *page) };
    let i = (pg.start - seg as usize) >> PAGE_SHIFT;
    pg.clear(s.ones.as_ptr().cast());
    let bit = 1u64 << i;
    s.free_pages |= bit;
    s.used_pages -= 1;
    if delay_ms == 0 {
        // SAFETY: the page is unused.
        unsafe { crate::os::purge(pg.start as *mut u8, PAGE_SIZE) };
        s.dirty_pages &= !bit;
        crate::stats::note_commit(-(PAGE_SIZE as isize));
    } else {
        // Purged when due, or by trim() whatever the delay (-1: never due).
        // Each page keeps its own deadline: one retired just before its
        // neighbours fall due still waits the whole delay (it is the page
        // most likely to be wanted again), and pages retired one after
        // another cannot put each other's purge off.
        let due = if delay_ms > 0 {
            now + delay_ms as u64
        } else {
            NEVER
        };
        s.page_due[i] = due;
        if s.purge_pages == 0 || due < s.purge_at {
            s.purge_at = due;
        }
        s.purge_pages |= bit;
    }
    s.used_pages == 0
}

/// Purges the segment's pending pages if due at `now` (or `force`).
/// Returns the number of bytes purged.
///
/// # Safety
/// As for retire_page.
pub unsafe fn purge_due(seg: *mut Segment, now: u64, force: bool) -> usize {
    // SAFETY: as the caller guarantees.
    let s = unsafe { &mut *seg };
    if s.purge_pages == 0 || (!force && now < s.purge_at) {
        return 0;
    }
    // Pages taken again since they were retired are no longer candidates.
    let waiting = s.purge_pages & s.free_pages;
    let mut m = 0u64;
    let mut next = NEVER;
    let mut rest = waiting;
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        if force || s.page_due[i] <= now {
            m |= 1 << i;
        } else {
            next = next.min(s.page_due[i]);
        }
    }
    s.purge_pages = waiting & !m;
    s.purge_at = next;
    let mut bytes = 0;
    while m != 0 {
        // Coalesce runs of consecutive pages into one madvise.
        let lo = m.trailing_zeros() as usize;
        let run = (!(m >> lo)).trailing_zeros() as usize;
        // SAFETY: these pages are unused.
        unsafe { crate::os::purge((seg as usize + lo * PAGE_SIZE) as *mut u8, run * PAGE_SIZE) };
        bytes += run * PAGE_SIZE;
        let bits = if run == 64 {
            !0
        } else {
            ((1u64 << run) - 1) << lo
        };
        m &= !bits;
        crate::stats::note_commit(
            -(((s.dirty_pages & bits).count_ones() as usize * PAGE_SIZE) as isize),
        );
        s.dirty_pages &= !bits;
    }
    bytes
}

/// Frees the small block `p`, validating it first.
///
/// Owner path cost (x86-64, counted in the disassembly of the C `free` of
/// `libtinymalloc.so`): 39 instructions with the `ret`, no atomic RMW, no
/// stack frame: chunk-map range check and the byte compared in memory (7,
/// `segmap::is_small`), segment and page descriptor (5: descriptors are 64
/// bytes), block index by reciprocal multiply with the interior pointer
/// check (5; no compare with `cap`: see `Page::block_start`), descriptor
/// address and word index (4), the TLS slot compared with the segment's
/// owner in memory (4, `owned_by`), double-free test of both rows
/// through one pointer, by bit index (6), bit set (`bts`, see
/// `bitmap::with_bit`), store and `zero` (3), the per-class free counter
/// (2: the owner tag is the heap's address), `used` and the re-file test
/// in one decrement and its sign (2, `Page::put_back`), `ret`. The reports are reached by tail jumps
/// (`error::fail`, `bad_block`), and secure mode needs no test here (its
/// segments fail `segmap::is_small`). The cold paths (`free_remote`,
/// `bad_block`, the heap's `page_freed`) find the segment and the block
/// index again rather than take them as arguments, which would keep
/// registers busy here.
///
/// # Safety
/// The chunk map says `p` lies in a small segment.
#[inline(always)]
pub unsafe fn free(p: *mut u8, op: Op) {
    let a = p as usize;
    let seg = segment_of(a);
    // SAFETY: the chunk map says a small segment is mapped at `seg`, so its
    // header and page descriptors are readable; only raw pointers are used
    // because the owner may write the descriptor through `page` below.
    let page = unsafe { core::ptr::addr_of_mut!((*seg).pages[(a >> PAGE_SHIFT) & (PAGES - 1)]) };
    // SAFETY: page descriptors live as long as the segment.
    let pg = unsafe { &mut *page };
    // No compare with `cap`: index `cap` (a page's tail, or any address in
    // a page not in use, whose reciprocal 0 gives index 0 = cap) has its
    // bit set (see page.rs), so the bit test below turns it away, and
    // `bad_block` names it.
    let Some(i) = pg.block_start(a & (PAGE_SIZE - 1)) else {
        return crate::error::fail(op, Fault::Invalid, a);
    };
    // Shifts by `b` wrap (the hardware takes the count mod 64): no mask.
    let (w, b) = (i / 64, i as u32);
    let me = crate::thread::tid();
    // SAFETY: the header is readable (chunk map).
    if unsafe { owned_by(seg, me) } {
        // SAFETY: i <= cap <= 4096 with i < 4096, so word w lies in the
        // page's free row (or is the segment's word of ones, w = 0, for a
        // page not in use), and the word XFREE_DELTA bytes further (its
        // xfree word) in the metadata too.
        let (word, xword) = unsafe {
            let f = pg.free.add(w);
            (&*f, &*f.byte_add(XFREE_DELTA))
        };
        let bits = word.load(Ordering::Relaxed);
        // A block already freed by another thread (and not yet collected)
        // is in the xfree row: a second free must see it too.
        // Bit tests and sets by index (`bt`, `bts`), with no mask built.
        if (bits | xword.load(Ordering::Relaxed)).wrapping_shr(b) & 1 != 0 {
            return bad_block(pg, a, op);
        }
        word.store(crate::bitmap::with_bit(bits, b), Ordering::Relaxed);
        pg.zero = false;
        // The caller owns the segment, so `me` names its heap.
        let h = crate::thread::heap_of(me);
        // SAFETY: h is the calling thread's heap; a page in use has a class
        // below NUM_CLASSES.
        crate::heap::bump(unsafe { (*h).frees.get_unchecked(pg.class as usize) });
        if pg.put_back() {
            // SAFETY: the calling thread owns the segment, so its heap is
            // the segment's owner.
            unsafe { crate::heap::page_freed(h, page) };
        }
    } else {
        // SAFETY: the segment is mapped; the remote path uses atomics only.
        unsafe { free_remote(a, pg, w, b, op) };
    }
}

/// True when the calling thread, whose tag is `me`, owns `seg`: its
/// `owner_tid`, compared in memory (one `cmp` and a branch on x86-64,
/// written out because the compiler does not fold an atomic load into a
/// `cmp`; an aligned 8-byte load is atomic there, as the Relaxed load).
///
/// # Safety
/// `seg`'s header is mapped.
#[inline(always)]
unsafe fn owned_by(seg: *const Segment, me: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the caller guarantees the header is readable; the asm
        // reads `owner_tid` only.
        unsafe {
            core::arch::asm!(
                "cmp {me}, qword ptr [{seg} + {off}]",
                "jne {no}",
                me = in(reg) me,
                seg = in(reg) seg,
                off = const core::mem::offset_of!(Segment, owner_tid),
                no = label { return false; },
                options(nostack, readonly)
            );
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: as above.
        unsafe { (*seg).owner_tid.load(Ordering::Relaxed) == me }
    }
}

/// Reports a free whose bit test failed: index `cap` is no block (the
/// page's tail, or a page not in use), any other is a block already free.
#[cold]
#[inline(never)]
fn bad_block(pg: &Page, a: usize, op: Op) {
    // The index is found again (rather than passed) so that the fast path
    // keeps no register for it.
    let i = pg.block_start(a & (PAGE_SIZE - 1)).unwrap_or(usize::MAX);
    let fault = if i >= pg.cap as usize {
        Fault::Invalid
    } else {
        Fault::DoubleFree
    };
    fatal(op, fault, a)
}

/// A free by a thread that does not own the segment: lock-free. Its
/// atomics: one `lock bts` on the xfree row, and, only when the page's bit
/// in the segment's pending mask is clear (a plain load first), an atomic
/// OR there (a compare-and-swap loop: the compiler does not turn this one
/// into `lock bts`). The free is announced in the freeing thread's own
/// heap (`Heap::xfreeing`, two plain stores) rather than in the segment
/// (two atomic adds on a line every freer into the segment shares); a
/// thread without a heap counts in the segment's `xinflight`.
#[inline(never)]
unsafe fn free_remote(a: usize, pg: &Page, w: usize, b: u32, op: Op) {
    // The block's address comes first, and the segment is found from it:
    // `free` then moves no register for the call.
    let seg = segment_of(a);
    // SAFETY: the segment is mapped (chunk map), its header readable.
    let s = unsafe { &*seg };
    // The block's bit in word `w`: bit `b % 64` (given as the block index,
    // so that the caller builds no mask).
    let m = 1u64 << (b % 64);
    if pg.free_word(w).load(Ordering::Relaxed) & m != 0 {
        return bad_block(pg, a, op);
    }
    let h = crate::thread::heap();
    // SAFETY: h is the calling thread's heap or the sentinel; heaps are
    // never unmapped.
    let mark = unsafe { &(*h).xfreeing };
    let own = h != crate::heap::empty_heap();
    crate::stats::note_free(pg.class as usize);
    // Announce the free before the block becomes free: from the xfree bit
    // on, the owner may collect it and find the segment empty, and it must
    // then leave the segment mapped until we are done with its header.
    // The plain store is enough: the `lock bts` below orders it before the
    // bit (release), and an owner sees the bit only through a collection's
    // atomic read (acquire) before it looks at the marks.
    if own {
        mark.store(seg as usize, Ordering::Relaxed);
    } else {
        s.xinflight.fetch_add(1, Ordering::SeqCst);
    }
    // One bit set and its old value tested: `lock bts` (the mask comes
    // from a shift, so the compiler knows it is a single bit), not a loop.
    if pg.xfree_word(w).fetch_or(m, Ordering::SeqCst) & m != 0 {
        return bad_block(pg, a, op);
    }
    // The page's pending bit: when it is already set, whoever set it
    // notified the owner, and the owner's collection (which clears the mask
    // before it reads the rows) is ordered after this load, so it will see
    // our xfree bit. Otherwise set it, and notify if we were the ones.
    let pb = (a >> PAGE_SHIFT) & (PAGES - 1);
    let first = s.xpending.0.load(Ordering::SeqCst) >> pb & 1 == 0
        && s.xpending.0.fetch_or(1 << pb, Ordering::SeqCst) & 1 << pb == 0;
    let owner = s.owner.load(Ordering::SeqCst);
    if owner.is_null() {
        // Abandoned: nobody will collect, so collect under the arena lock
        // (releasing the segment if that emptied it and no other free is
        // in flight), which also ends our mark.
        // SAFETY: the segment is live; the arena serialises access.
        return unsafe { crate::arena::reclaim_frees(seg, a, w, !own) };
    }
    if first {
        // SAFETY: heaps are never unmapped (pooled), so `owner` is readable
        // even if its thread just exited; a stale bump only causes a scan.
        unsafe { (*owner).notify() };
    }
    // Done with the header.
    if own {
        mark.store(0, Ordering::Release);
    } else {
        s.xinflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// True when no cross-thread free into `seg` is in progress, so that the
/// segment, if empty, may be released: no other thread's heap names it in
/// `xfreeing` and its `xinflight` count (threads without a heap) is
/// `mine`, the ones the caller itself accounts for. Segment releases are
/// rare (4 MiB at a time), so the walk over every heap costs little.
///
/// # Safety
/// `seg` is a mapped small segment.
pub unsafe fn quiescent(seg: *mut Segment, mine: u64) -> bool {
    // SAFETY: as the caller guarantees.
    if unsafe { (*seg).xinflight.load(Ordering::SeqCst) } != mine {
        return false;
    }
    let me = crate::thread::heap() as *const Heap;
    let mut busy = false;
    crate::thread::for_each_heap(|h| {
        busy |= !core::ptr::eq(h, me) && h.xfreeing.load(Ordering::Acquire) == seg as usize;
    });
    !busy
}

/// The usable size of the small block at `p`, if `p` is a live block.
///
/// # Safety
/// The chunk map says `p` lies in a small segment.
pub unsafe fn usable(p: *mut u8) -> Option<usize> {
    let a = p as usize;
    // SAFETY: the segment is mapped (chunk map).
    let s = unsafe { &*segment_of(a) };
    let pg = &s.pages[(a >> PAGE_SHIFT) & (PAGES - 1)];
    let i = pg.block_at(a & (PAGE_SIZE - 1))?;
    let m = 1u64 << (i % 64);
    let free = pg.free_word(i / 64).load(Ordering::Relaxed)
        | pg.xfree_word(i / 64).load(Ordering::Relaxed);
    (free & m == 0).then_some(pg.bsize as usize)
}

/// True when the small block at `p`, just allocated, is known to be zero.
///
/// # Safety
/// `p` is a block just returned by the calling thread's heap.
pub unsafe fn block_is_zero(p: *mut u8) -> bool {
    let a = p as usize;
    // SAFETY: p is a live small block.
    let s = unsafe { &*segment_of(a) };
    s.pages[(a >> PAGE_SHIFT) & (PAGES - 1)].zero
}

/// Collects word `w` of the page holding address `a` alone (the word in
/// which a thread freeing into the abandoned `seg` set its block's bit),
/// if that page is still in use and has such a word (another freer may
/// have collected the bit, emptied the page and retired it meanwhile).
/// Returns the page and how many blocks came back. `xpending` is left as
/// it is: whoever adopts the segment collects every marked page, and
/// finds what was collected here gone.
///
/// # Safety
/// The segment is abandoned and the caller holds its arena's lock.
pub unsafe fn collect_word(seg: *mut Segment, a: usize, w: usize) -> Option<(*mut Page, u32)> {
    // SAFETY: as the caller guarantees.
    let pg = unsafe { &mut (*seg).pages[(a >> PAGE_SHIFT) & (PAGES - 1)] };
    if pg.bsize == 0 || w >= pg.nwords() {
        return None;
    }
    match pg.collect_word(w) {
        Ok(n) => Some((pg as *mut Page, n)),
        Err(b) => fatal(
            Op::Free,
            Fault::DoubleFree,
            pg.start + b * pg.bsize as usize,
        ),
    }
}

/// Collects the cross-thread frees of every page marked in `xpending`,
/// calling `each(page, collected)` for each page touched.
///
/// # Safety
/// The caller owns the segment (or holds the arena lock while abandoned).
pub unsafe fn collect_pending(seg: *mut Segment, mut each: impl FnMut(*mut Page, u32)) {
    // SAFETY: as the caller guarantees.
    let s = unsafe { &mut *seg };
    if s.xpending.0.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut m = s.xpending.0.swap(0, Ordering::SeqCst);
    while m != 0 {
        let i = m.trailing_zeros() as usize;
        m &= m - 1;
        let pg = &mut s.pages[i];
        if pg.bsize == 0 {
            continue;
        }
        match pg.collect() {
            Ok(n) => each(pg, n),
            Err(b) => fatal(
                Op::Free,
                Fault::DoubleFree,
                pg.start + b * pg.bsize as usize,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a fresh segment (no heap, no arena: only the page
    /// bookkeeping is exercised), then unmaps it.
    fn with_segment(f: impl FnOnce(*mut Segment)) {
        let base = crate::os::map_aligned(SEGMENT_SIZE, SEGMENT_SIZE, 0);
        assert!(!base.is_null());
        // SAFETY: a fresh aligned mapping of a whole segment, ours alone.
        let seg = unsafe { init(base, core::ptr::null_mut(), core::ptr::null_mut(), true) };
        f(seg);
        segmap::set(base as usize, segmap::Kind::None);
        // SAFETY: mapped above; nothing points into it any more.
        unsafe { crate::os::unmap(base, SEGMENT_SIZE) };
    }

    fn index(seg: *mut Segment, page: *mut Page) -> usize {
        // SAFETY: page is one of seg's descriptors.
        (unsafe { (*page).start } - seg as usize) >> PAGE_SHIFT
    }

    fn take(seg: *mut Segment) -> *mut Page {
        // SAFETY: the test owns the segment.
        let p = unsafe { take_page(seg, 1) };
        assert!(!p.is_null());
        p
    }

    fn retire(seg: *mut Segment, page: *mut Page, now: u64) {
        // SAFETY: the page was taken by the test and holds no block.
        unsafe { retire_page(seg, page, now, 10) };
    }

    /// A thread with a heap of its own (set up by its first allocation,
    /// which also registers the fork handlers), caught in the middle of a
    /// cross-thread free into `seg`: its heap names `seg` until the
    /// returned sender is used; then it ends.
    fn thread_freeing_into(
        seg: *mut Segment,
    ) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let at = seg as usize;
        let (marked_tx, marked_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // SAFETY: a block of our own; heaps are never unmapped.
            unsafe { crate::raw::free(crate::raw::malloc(16)) };
            let mark = unsafe { &(*crate::thread::heap()).xfreeing };
            mark.store(at, Ordering::Relaxed);
            marked_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            mark.store(0, Ordering::Release);
        });
        marked_rx.recv().unwrap();
        (go_tx, t)
    }

    #[test]
    fn a_segment_named_by_another_threads_free_in_flight_is_not_quiescent() {
        with_segment(|seg| {
            // SAFETY (whole test): the segment is mapped; heaps are never
            // unmapped.
            assert!(unsafe { quiescent(seg, 0) });
            let (go, t) = thread_freeing_into(seg);
            assert!(!unsafe { quiescent(seg, 0) });
            go.send(()).unwrap();
            t.join().unwrap();
            assert!(unsafe { quiescent(seg, 0) });
            // The in-flight count of threads without a heap counts too.
            unsafe { (*seg).xinflight.fetch_add(1, Ordering::SeqCst) };
            assert!(!unsafe { quiescent(seg, 0) });
            assert!(unsafe { quiescent(seg, 1) });
        });
    }

    #[test]
    fn a_fork_child_drops_the_marks_of_threads_it_lost() {
        with_segment(|seg| {
            let (go, t) = thread_freeing_into(seg);
            // SAFETY: the child only reads memory and `_exit`s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0);
            if pid == 0 {
                // SAFETY: the segment is mapped in the child as well.
                let ok = unsafe { quiescent(seg, 0) };
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            let mut status = 0;
            // SAFETY: pid is our child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            // In the parent the thread is alive and still marks seg.
            assert!(!unsafe { quiescent(seg, 0) });
            go.send(()).unwrap();
            t.join().unwrap();
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the child still saw the lost thread's mark (status {status})"
            );
        });
    }

    #[test]
    fn each_retired_page_waits_its_own_whole_delay() {
        with_segment(|seg| {
            let (a, b) = (take(seg), take(seg));
            let (ia, ib) = (index(seg, a), index(seg, b));
            retire(seg, a, 1000);
            retire(seg, b, 1009);
            // SAFETY (all blocks below): the test owns the segment.
            let s = unsafe { &*seg };
            assert_eq!(s.purge_at, 1010);
            assert_eq!(unsafe { purge_due(seg, 1009, false) }, 0);
            // At a's deadline only a goes; b, retired 1 ms before it, waits.
            assert_eq!(unsafe { purge_due(seg, 1010, false) }, PAGE_SIZE);
            let s = unsafe { &*seg };
            assert_eq!(s.dirty_pages & (1 << ia), 0);
            assert_ne!(s.dirty_pages & (1 << ib), 0);
            assert_eq!(s.purge_pages, 1 << ib);
            assert_eq!(s.purge_at, 1019);
            assert_eq!(unsafe { purge_due(seg, 1018, false) }, 0);
            assert_eq!(unsafe { purge_due(seg, 1019, false) }, PAGE_SIZE);
            assert_eq!(unsafe { (*seg).purge_pages }, 0);
        });
    }

    #[test]
    fn forced_purge_takes_every_waiting_page_and_reused_pages_are_skipped() {
        with_segment(|seg| {
            let (a, b, c) = (take(seg), take(seg), take(seg));
            retire(seg, a, 100);
            retire(seg, b, 101);
            retire(seg, c, 102);
            // a, the oldest, is taken again before anything falls due.
            assert_eq!(take(seg), a);
            // SAFETY: the test owns the segment.
            assert_eq!(unsafe { purge_due(seg, 0, true) }, 2 * PAGE_SIZE);
            let s = unsafe { &*seg };
            assert_eq!(s.purge_pages, 0);
            assert_ne!(s.dirty_pages & (1 << index(seg, a)), 0);
        });
    }

    #[test]
    fn take_page_prefers_the_waiting_page_closest_to_its_purge() {
        with_segment(|seg| {
            let pages = [take(seg), take(seg), take(seg), take(seg)];
            let fresh = index(seg, pages[3]) + 1;
            retire(seg, pages[2], 100);
            retire(seg, pages[0], 105);
            retire(seg, pages[1], 103);
            // Oldest first, whatever the page order: the page saved from
            // its purge is the one that would have gone first.
            assert_eq!(take(seg), pages[2]);
            assert_eq!(take(seg), pages[1]);
            assert_eq!(take(seg), pages[0]);
            // No page waiting: the lowest free page, never used.
            assert_eq!(index(seg, take(seg)), fresh);
        });
    }

    #[test]
    fn take_page_passes_over_purged_pages_for_one_still_committed() {
        with_segment(|seg| {
            let (a, b) = (take(seg), take(seg));
            retire(seg, a, 100);
            retire(seg, b, 200);
            // SAFETY: the test owns the segment.
            assert_eq!(unsafe { purge_due(seg, 110, false) }, PAGE_SIZE);
            // a (lower, but purged and so clean) is passed over for b.
            let p = take(seg);
            assert_eq!(p, b);
            // SAFETY: p was just taken; b's memory was never purged.
            assert!(!unsafe { (*p).zero });
            let p = take(seg);
            assert_eq!(p, a);
            // SAFETY: as above; a's memory was purged.
            assert!(unsafe { (*p).zero });
        });
    }
}
