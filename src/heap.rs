//! Per-thread heaps: the allocation fast path and its slow path.
//!
//! ```text
//!  Heap (one per thread, reached through TLS)
//!  ├─ fast.*[class] ──> what malloc's fast path reads: the current page's
//!  │                   word pointer, first block address and block size,
//!  │                   and the class's allocation count (the zero word in
//!  │                   secure mode or with no page)
//!  ├─ pages[class] ──> current page of each class (or the empty sentinel)
//!  ├─ lists[class] ──> pages of that class with free blocks (current first)
//!  ├─ segs_avail / segs_full: owned segments with / without free pages
//!  └─ xgen: bumped by other threads when they free into our segments
//! ```
//! Invariants:
//! - only the owning thread touches a heap, except `xgen` (any thread);
//! - `pages[c]` is the sentinel or the head of `lists[c]`;
//! - in default mode `fast.cur/base/bsize[c]` mirror `pages[c]`'s `cur`,
//!   `word_base` and `bsize` (written by `mirror` only); in secure mode,
//!   or with no page, `fast.cur[c]` is the zero word;
//! - allocations of class `c` are counted in `fast.allocs[c]` only (the
//!   fast path does not touch the page): the current page's `left` lacks
//!   the `fast.allocs[c] - synced[c]` blocks taken since the last `sync`,
//!   which every reader of its `used()` calls first. Its `slow_at()` is
//!   `-page::CURRENT_SLACK`, so that owner frees reach the cold path
//!   (which syncs) at most once per `CURRENT_SLACK` frees; collection
//!   syncs at once;
//! - every page in `lists[c]` is in use with class `c` and `!full`; a page
//!   in use that is in no list is `full`;
//! - every segment whose `owner` is this heap is in exactly one of
//!   `segs_avail` (has free pages) or `segs_full`;
//! - heaps are never unmapped: a stale `owner` pointer stays readable.

use crate::arena::{self, Arena};
use crate::page::Page;
use crate::segment::{self, Padded, Segment};
use crate::size_class::NUM_CLASSES;
use crate::{options, os, thread};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A doubly linked list of pages (through `Page::next/prev`).
#[derive(Clone, Copy)]
pub struct PageList {
    head: *mut Page,
    tail: *mut Page,
}

impl PageList {
    const EMPTY: PageList = PageList {
        head: null_mut(),
        tail: null_mut(),
    };

    unsafe fn push_front(&mut self, p: *mut Page) {
        // SAFETY: p and the list's pages are live descriptors of this heap.
        unsafe {
            (*p).prev = null_mut();
            (*p).next = self.head;
            if self.head.is_null() {
                self.tail = p;
            } else {
                (*self.head).prev = p;
            }
        }
        self.head = p;
    }

    unsafe fn push_back(&mut self, p: *mut Page) {
        // SAFETY: as above.
        unsafe {
            (*p).next = null_mut();
            (*p).prev = self.tail;
            if self.tail.is_null() {
                self.head = p;
            } else {
                (*self.tail).next = p;
            }
        }
        self.tail = p;
    }

    unsafe fn unlink(&mut self, p: *mut Page) {
        // SAFETY: p is in this list.
        unsafe {
            let (n, pr) = ((*p).next, (*p).prev);
            if pr.is_null() {
                self.head = n;
            } else {
                (*pr).next = n;
            }
            if n.is_null() {
                self.tail = pr;
            } else {
                (*n).prev = pr;
            }
            (*p).next = null_mut();
            (*p).prev = null_mut();
        }
    }
}

/// Pushes `s` on the front of a segment list.
unsafe fn seg_push(head: &mut *mut Segment, s: *mut Segment) {
    // SAFETY: s and the list members are live segments of this heap.
    unsafe {
        (*s).prev = null_mut();
        (*s).next = *head;
        if !head.is_null() {
            (**head).prev = s;
        }
    }
    *head = s;
}

/// Unlinks `s` from a segment list.
unsafe fn seg_unlink(head: &mut *mut Segment, s: *mut Segment) {
    // SAFETY: s is in this list.
    unsafe {
        let (n, p) = ((*s).next, (*s).prev);
        if p.is_null() {
            *head = n;
        } else {
            (*p).next = n;
        }
        if !n.is_null() {
            (*n).prev = p;
        }
        (*s).next = null_mut();
        (*s).prev = null_mut();
    }
}

/// Adds one to a counter only its owner writes (a plain load, add and
/// store: no atomic read-modify-write).
#[inline(always)]
pub fn bump(c: &AtomicU64) {
    add(c, 1);
}

/// Adds `n` to a counter only its owner writes.
#[inline(always)]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// What `malloc`'s fast path reads, per class: four arrays of 8-byte
/// words, so that the class index scales in the addressing mode (no
/// shift, no add), and the page descriptor is not read.
#[repr(C)]
pub struct Fast {
    /// The current page's current word (`Page::cur`), or the zero word
    /// when the class has no page or in secure mode.
    pub cur: [*const AtomicU64; NUM_CLASSES],
    /// The current page's `word_base`.
    pub base: [usize; NUM_CLASSES],
    /// The current page's block size.
    pub bsize: [usize; NUM_CLASSES],
    /// Allocations of each class by this thread since it started. Written
    /// by the owner only, read by `stats()` from any thread.
    pub allocs: [AtomicU64; NUM_CLASSES],
}

impl Fast {
    const fn new() -> Fast {
        Fast {
            cur: [&ZERO_WORD as *const AtomicU64; NUM_CLASSES],
            base: [0; NUM_CLASSES],
            bsize: [0; NUM_CLASSES],
            allocs: [const { AtomicU64::new(0) }; NUM_CLASSES],
        }
    }
}

/// A thread's heap.
#[repr(C)]
pub struct Heap {
    /// What the fast path takes blocks from, per class (see `Fast`): the
    /// current page in default mode; always the zero word in secure mode,
    /// so that `malloc`'s fast path falls through to `alloc_slow`, which
    /// hands the call to secure mode (no test of the mode on the fast
    /// path).
    pub fast: Fast,
    /// `fast.allocs[c]` when the current page's `left` was last brought
    /// up to date (`sync`).
    synced: [u64; NUM_CLASSES],
    /// Current page per class (the sentinel when none).
    pub pages: [*mut Page; NUM_CLASSES],
    /// Bytes requested by this thread's allocations since it started (the
    /// sizes asked for, before rounding). Written by the owner only.
    pub requested: AtomicU64,
    lists: [PageList; NUM_CLASSES],
    segs_avail: *mut Segment,
    segs_full: *mut Segment,
    /// The arena this heap draws segments from.
    pub arena: *mut Arena,
    xgen_seen: u64,
    purge_at: u64,
    /// Link in the heap pool's free list.
    pub pool_next: *mut Heap,
    /// Link in the list of every heap ever made (never unlinked).
    pub all_next: *mut Heap,
    /// Per-class counters of this thread's frees (a free counts on the
    /// freeing thread's heap; allocations are counted in `fast`). Written
    /// by the owner only, read by `stats()` from any thread; 8-byte
    /// counters, so that the class index scales in the addressing mode.
    pub frees: [AtomicU64; NUM_CLASSES],
    /// Frees this thread made into other threads' segments.
    pub xfrees: AtomicU64,
    /// The segment this thread is freeing a block into from another
    /// thread's side, while it still touches its header after the block's
    /// bit is set (0 otherwise): its owner releases no segment named here
    /// (`segment::quiescent`). Written by this heap's thread only, with
    /// plain stores, where a count in the segment took two atomic adds.
    pub xfreeing: AtomicUsize,
    /// Large blocks this thread freed, kept for its next large `malloc`s.
    pub large_cache: crate::large::Cache,
    /// Bumped by other threads after freeing into a segment of this heap.
    xgen: Padded,
}

/// A static the allocator's paths read but never write (the address of
/// its value is the address of the static: `repr(transparent)`).
#[repr(transparent)]
pub(crate) struct Sentinel<T>(core::cell::UnsafeCell<T>);
// SAFETY: the sentinels are never written (every path that would write
// checks for them first).
unsafe impl<T> Sync for Sentinel<T> {}

static ZERO_WORD: AtomicU64 = AtomicU64::new(0);
static EMPTY_PAGE: Sentinel<Page> = Sentinel(core::cell::UnsafeCell::new(Page::empty(&ZERO_WORD)));
/// The sentinel heap; its address is every thread's TLS slot until the
/// thread's first allocation (`thread.rs` names it in the TLS image).
pub(crate) static EMPTY_HEAP: Sentinel<Heap> = Sentinel(core::cell::UnsafeCell::new(Heap::new()));

/// The sentinel page: no free block, so the fast path always falls through.
#[inline(always)]
pub fn empty_page() -> *mut Page {
    EMPTY_PAGE.0.get()
}

/// The heap of threads that have not allocated yet: every class's page is
/// the sentinel, so the first allocation takes the slow path and sets up a
/// real heap.
pub const fn empty_heap() -> *mut Heap {
    EMPTY_HEAP.0.get()
}

impl Heap {
    /// A heap with no pages (used for the sentinel and for set-up).
    pub const fn new() -> Heap {
        Heap {
            fast: Fast::new(),
            synced: [0; NUM_CLASSES],
            pages: [EMPTY_PAGE.0.get(); NUM_CLASSES],
            requested: AtomicU64::new(0),
            lists: [PageList::EMPTY; NUM_CLASSES],
            segs_avail: null_mut(),
            segs_full: null_mut(),
            arena: null_mut(),
            xgen_seen: 0,
            purge_at: 0,
            pool_next: null_mut(),
            all_next: null_mut(),
            frees: [const { AtomicU64::new(0) }; NUM_CLASSES],
            xfrees: AtomicU64::new(0),
            xfreeing: AtomicUsize::new(0),
            large_cache: crate::large::Cache::new(),
            xgen: Padded(AtomicU64::new(0)),
        }
    }

    /// Tells the owner that one of its segments has cross-thread frees.
    #[inline]
    pub fn notify(&self) {
        self.xgen.0.fetch_add(1, Ordering::Release);
    }
}

/// Allocates a block of class `cls` for a request of `size` bytes for the
/// calling thread.
///
/// Fast path cost (x86-64, counted in the disassembly of the C `malloc`
/// of `libtinymalloc.so`): 19 instructions for a size of at most 64 B,
/// including the size test and class (4) and the return; no lock, no
/// atomic read-modify-write, no test of the mode (secure mode offers no
/// word to this path: `Heap::fast`): the TLS slot, which holds the heap's
/// address (2), the class's word pointer and word, test (4), clear the
/// lowest bit and store (3), the per-class and requested-bytes counters
/// (2), block address by tzcnt, imul, add (3).
/// Three dependent loads after the TLS slot's (heap, word pointer, word),
/// and none of the page descriptor: the page's count of blocks in use
/// catches up later (`sync`). `bench/callgrind.sh` measures a whole
/// malloc/free pair.
#[inline(always)]
pub unsafe fn alloc_class(cls: usize, size: usize) -> *mut u8 {
    let h = thread::heap();
    // SAFETY: h is this thread's heap or the sentinel; both are readable,
    // and fast.cur[cls] is a live page's free-row word or the zero word.
    unsafe {
        let f = &(*h).fast;
        let word = &*f.cur[cls];
        let bits = word.load(Ordering::Relaxed);
        if bits == 0 {
            return alloc_slow(size, cls, h);
        }
        word.store(bits & (bits - 1), Ordering::Relaxed);
        bump(&f.allocs[cls]);
        add(&(*h).requested, size as u64);
        let p = (f.base[cls] + bits.trailing_zeros() as usize * f.bsize[cls]) as *mut u8;
        // A block of a real page (the zero word has no free bit) is never
        // at address 0: callers' null checks fold away on this path.
        if p.is_null() {
            core::hint::unreachable_unchecked();
        }
        p
    }
}

/// Brings the current page of `cls` (if any) up to date with the blocks
/// the fast path took from it since the last call. Owner only.
fn sync(hp: &mut Heap, cls: usize) {
    let page = hp.pages[cls];
    let a = hp.fast.allocs[cls].load(Ordering::Relaxed);
    if page != empty_page() {
        let n = a.wrapping_sub(hp.synced[cls]);
        // SAFETY: a live page of this heap. At most `cap` blocks are in
        // use, so `used() + n` fits (see `Page::left`).
        unsafe { (*page).took(n as u16) };
    }
    hp.synced[cls] = a;
}

/// Copies the current page's word pointer, first block and block size of
/// `cls` into `fast` (the zero word in secure mode or with no page).
fn mirror(hp: &mut Heap, cls: usize) {
    let page = hp.pages[cls];
    let f = &mut hp.fast;
    // Heaps exist only once the mode is known: check() is then exactly
    // "secure mode is on".
    if page == empty_page() || crate::secure::check() {
        f.cur[cls] = &ZERO_WORD;
        f.base[cls] = 0;
        f.bsize[cls] = 0;
    } else {
        // SAFETY: a live page of this heap.
        unsafe {
            f.cur[cls] = (*page).cur;
            f.base[cls] = (*page).word_base;
            f.bsize[cls] = (*page).bsize as usize;
        }
    }
}

/// Makes `page` (or, when null, the sentinel) the current page of `cls`.
/// The previous current page, if any, must already have been brought up
/// to date (`sync`) and have lost its flag, or be about to be re-filed by
/// the caller.
unsafe fn set_current(hp: &mut Heap, cls: usize, page: *mut Page) {
    if page.is_null() || page == empty_page() {
        hp.pages[cls] = empty_page();
    } else {
        // SAFETY: a live page of this heap.
        unsafe { (*page).set_current(true) };
        hp.pages[cls] = page;
    }
    hp.synced[cls] = hp.fast.allocs[cls].load(Ordering::Relaxed);
    mirror(hp, cls);
}

/// Brings the current page of `cls` up to date and takes its current flag
/// away (it stays in `pages[cls]` until `set_current` replaces it).
unsafe fn unset_current(hp: &mut Heap, cls: usize) {
    sync(hp, cls);
    // SAFETY: a live page of this heap (callers check for the sentinel).
    unsafe { (*hp.pages[cls]).set_current(false) };
}

/// Takes the lowest free block of the current word of `page`.
#[inline(always)]
unsafe fn take_block(page: *mut Page) -> *mut u8 {
    // SAFETY: page is a live page whose current word has a free bit.
    unsafe {
        let word = &*(*page).cur;
        let bits = word.load(Ordering::Relaxed);
        debug_assert!(bits != 0);
        word.store(bits & (bits - 1), Ordering::Relaxed);
        ((*page).word_base + (bits.trailing_zeros() * (*page).bsize as u32) as usize) as *mut u8
    }
}

/// The slow path: secure mode's `malloc`, or another word of the page,
/// collected cross-thread frees, another page of the class, a fresh page,
/// or a new thread heap.
///
/// In secure mode (or before the mode is known) every call arrives here
/// (`Heap::fast`) and is `malloc`'s: every other caller of the fast path
/// (`raw::malloc_aligned`, `raw::zalloc_aligned`) has handed secure mode's
/// calls over first, and secure mode itself calls [`alloc_refill`].
///
/// The size comes first: it stays in the register `malloc` received it
/// in, where taking it last cost the fast path a register copy.
#[cold]
#[inline(never)]
unsafe fn alloc_slow(size: usize, cls: usize, h: *mut Heap) -> *mut u8 {
    if crate::secure::check() {
        // SAFETY: forwarded: this is a `malloc(size)`.
        return unsafe { crate::raw::secure_malloc(size) };
    }
    // SAFETY: h is the calling thread's heap (or the sentinel).
    unsafe {
        let p = next_word(h, cls, size);
        if !p.is_null() {
            return p;
        }
        refill(h, cls, size)
    }
}

/// The slow path's common case on its own: the current page of `cls` has
/// another word with free blocks, and no cross-thread free was signalled
/// (so nothing is to be collected first). About half the instructions of
/// the general path, which saves and restores six registers and checks
/// the page and the mode again to mirror it. Null when this does not
/// apply. Default mode only.
///
/// # Safety
/// `h` is the calling thread's heap or the sentinel.
#[inline(always)]
unsafe fn next_word(h: *mut Heap, cls: usize, size: usize) -> *mut u8 {
    // SAFETY: h is readable (a heap or the sentinel, whose page of every
    // class is the sentinel page); pages reached are this heap's.
    unsafe {
        let hp = &mut *h;
        let page = hp.pages[cls];
        if page == empty_page() || hp.xgen.0.load(Ordering::Relaxed) != hp.xgen_seen {
            return null_mut();
        }
        sync(hp, cls);
        // The heap's page of `cls` is current.
        if !(*page).advance_with((*page).used_current()) {
            return null_mut();
        }
        // `mirror` for a page that stays current: its block size is the
        // same, its word and first block moved.
        hp.fast.cur[cls] = (*page).cur;
        hp.fast.base[cls] = (*page).word_base;
        add(&hp.requested, size as u64);
        take_block_counted(hp, cls, page)
    }
}

/// Takes a block of class `cls` for the calling thread without the fast
/// path: secure mode's way to the default path's choice of block.
///
/// # Safety
/// `cls` is a class below `NUM_CLASSES`.
pub unsafe fn alloc_refill(cls: usize, size: usize) -> *mut u8 {
    // SAFETY: the calling thread's heap (or the sentinel).
    unsafe { refill(thread::heap(), cls, size) }
}

/// The body of the slow path (see [`alloc_slow`]).
unsafe fn refill(h: *mut Heap, cls: usize, size: usize) -> *mut u8 {
    // Size 0 arrives as class 0 (always the sentinel): serve it as class 1.
    let cls = cls.max(1);
    let h = if h == empty_heap() {
        let h = thread::init_heap();
        if h.is_null() {
            os::set_enomem();
            return null_mut();
        }
        h
    } else {
        h
    };
    // SAFETY: h is the calling thread's own heap.
    let hp = unsafe { &mut *h };
    add(&hp.requested, size as u64);
    // SAFETY: every page reached is a live page of this heap.
    unsafe {
        collect_notified(hp);
        loop {
            let page = hp.pages[cls];
            if page == empty_page() {
                break;
            }
            sync(hp, cls);
            if (*page).advance() {
                mirror(hp, cls);
                return take_block_counted(hp, cls, page);
            }
            // No free block left: the page is full until frees come back.
            hp.lists[cls].unlink(page);
            unset_current(hp, cls);
            (*page).set_full(true);
            set_current(hp, cls, hp.lists[cls].head);
        }
        let page = new_page(hp, cls);
        if page.is_null() {
            os::set_enomem();
            return null_mut();
        }
        hp.lists[cls].push_front(page);
        set_current(hp, cls, page);
        take_block_counted(hp, cls, page)
    }
}

/// The slow path's block, counted.
#[inline(always)]
unsafe fn take_block_counted(hp: &Heap, cls: usize, page: *mut Page) -> *mut u8 {
    bump(&hp.fast.allocs[cls]);
    // SAFETY: forwarded from the caller.
    unsafe { take_block(page) }
}

/// A fresh page of class `cls`: from an owned segment, an adopted
/// abandoned segment, or a new segment.
unsafe fn new_page(hp: &mut Heap, cls: usize) -> *mut Page {
    crate::huge::purge_if_due();
    if hp.purge_at != 0 {
        // SAFETY: hp is the calling thread's heap.
        unsafe { purge(hp, os::now_ms(), false) };
    }
    loop {
        let seg = hp.segs_avail;
        if !seg.is_null() {
            // SAFETY: seg is owned by this heap.
            unsafe {
                let page = segment::take_page(seg, cls);
                if (*seg).free_pages == 0 {
                    seg_unlink(&mut hp.segs_avail, seg);
                    seg_push(&mut hp.segs_full, seg);
                    (*seg).in_avail = false;
                }
                return page;
            }
        }
        // SAFETY: the arena pointer is set for real heaps.
        let adopted = unsafe { arena::pop_abandoned(hp.arena) };
        if !adopted.is_null() {
            // SAFETY: the segment was just handed to this heap.
            unsafe { adopt(hp, adopted) };
            continue;
        }
        // SAFETY: as above.
        let (base, clean) = unsafe { arena::alloc_segment(hp.arena) };
        if base.is_null() {
            return null_mut();
        }
        // SAFETY: base is a fresh 4 MiB-aligned segment mapping.
        let seg = unsafe { segment::init(base, hp, hp.arena, clean) };
        // SAFETY: seg is now owned by this heap.
        unsafe {
            seg_push(&mut hp.segs_avail, seg);
            (*seg).in_avail = true;
        }
    }
}

/// Collects cross-thread frees of all owned segments if another thread
/// signalled some since the last look.
unsafe fn collect_notified(hp: &mut Heap) {
    let g = hp.xgen.0.load(Ordering::Acquire);
    if g == hp.xgen_seen {
        return;
    }
    hp.xgen_seen = g;
    for head in [hp.segs_avail, hp.segs_full] {
        let mut seg = head;
        while !seg.is_null() {
            // SAFETY: seg is owned by this heap; `next` is read before the
            // segment may move lists or be released.
            unsafe {
                let next = (*seg).next;
                collect_segment(hp, seg);
                seg = next;
            }
        }
    }
}

/// Collects one segment's pending cross-thread frees and fixes page states.
unsafe fn collect_segment(hp: &mut Heap, seg: *mut Segment) {
    let mut retired = false;
    // SAFETY: the heap owns seg.
    unsafe {
        segment::collect_pending(seg, |page, n| {
            if n > 0 {
                retired |= page_state(hp, seg, page);
            }
        });
        if retired {
            segment_changed(hp, seg);
        }
    }
}

/// Called by `free` when a page became empty or was full.
///
/// # Safety
/// `page` is a page in use of a segment `h` owns.
#[cold]
pub unsafe fn page_freed(h: *mut Heap, page: *mut Page) {
    // The descriptor lies in its segment's header: found from it, so that
    // `free` keeps no register for the segment.
    let seg = segment::segment_of(page as usize);
    // SAFETY: as the caller guarantees.
    unsafe {
        let hp = &mut *h;
        if page_state(hp, seg, page) {
            segment_changed(hp, seg);
        }
    }
}

/// Re-files a page after blocks came back: a full page rejoins its list; an
/// empty page that is not current is retired; the current page is brought
/// up to date (`sync`). True if a page was retired.
unsafe fn page_state(hp: &mut Heap, seg: *mut Segment, page: *mut Page) -> bool {
    // SAFETY: the heap owns seg and its in-use pages.
    unsafe {
        let pg = &mut *page;
        let cls = pg.class as usize;
        if pg.current {
            sync(hp, cls);
            return false;
        }
        if pg.full {
            pg.set_full(false);
            pg.advance();
            hp.lists[cls].push_back(page);
            if hp.pages[cls] == empty_page() {
                set_current(hp, cls, page);
            }
        }
        if pg.used() == 0 && !pg.current {
            hp.lists[cls].unlink(page);
            let delay = options::purge_delay_ms();
            let now = if delay > 0 { os::now_ms() } else { 0 };
            segment::retire_page(seg, page, now, delay);
            if delay > 0 && hp.purge_at == 0 {
                hp.purge_at = (*seg).purge_at;
            }
            return true;
        }
        false
    }
}

/// After pages of `seg` were retired: release it if empty, else make sure
/// it is in the list of segments with free pages. Purges what is due.
unsafe fn segment_changed(hp: &mut Heap, seg: *mut Segment) {
    // SAFETY: the heap owns seg.
    unsafe {
        let s = &mut *seg;
        if s.used_pages == 0 && segment::quiescent(seg, 0) {
            if s.in_avail {
                seg_unlink(&mut hp.segs_avail, seg);
            } else {
                seg_unlink(&mut hp.segs_full, seg);
            }
            arena::release_segment(seg);
        } else if !s.in_avail {
            seg_unlink(&mut hp.segs_full, seg);
            seg_push(&mut hp.segs_avail, seg);
            s.in_avail = true;
        }
        if hp.purge_at != 0 {
            let now = os::now_ms();
            if now >= hp.purge_at {
                purge(hp, now, false);
            }
        }
    }
}

/// Purges the owned segments' free pages that are due (or all, `force`).
/// Returns true if anything was purged.
unsafe fn purge(hp: &mut Heap, now: u64, force: bool) -> bool {
    let mut next_due = 0u64;
    let mut any = false;
    for head in [hp.segs_avail, hp.segs_full] {
        let mut seg = head;
        while !seg.is_null() {
            // SAFETY: owned segment.
            unsafe {
                any |= segment::purge_due(seg, now, force) > 0;
                let due = (*seg).purge_at;
                if (*seg).purge_pages != 0
                    && due != segment::NEVER
                    && (next_due == 0 || due < next_due)
                {
                    next_due = (*seg).purge_at;
                }
                seg = (*seg).next;
            }
        }
    }
    hp.purge_at = next_due;
    any
}

/// Takes ownership of an abandoned segment: collects its frees, retires its
/// empty pages and files its pages in this heap's lists.
unsafe fn adopt(hp: &mut Heap, seg: *mut Segment) {
    // SAFETY: the arena handed `seg` to this heap; after the owner store,
    // freers notify this heap and only this thread touches owner fields.
    unsafe {
        let s = &mut *seg;
        s.owner.store(hp, Ordering::SeqCst);
        s.owner_tid.store(thread::tid(), Ordering::SeqCst);
        segment::collect_pending(seg, |_, _| {});
        let delay = options::purge_delay_ms();
        let now = if delay > 0 { os::now_ms() } else { 0 };
        for i in segment::META_PAGES..segment::PAGES {
            let page = &mut s.pages[i] as *mut Page;
            let pg = &mut *page;
            if pg.bsize == 0 {
                continue;
            }
            pg.set_current(false);
            if pg.used() == 0 {
                segment::retire_page(seg, page, now, delay);
            } else if pg.advance() {
                pg.set_full(false);
                let cls = pg.class as usize;
                hp.lists[cls].push_back(page);
                if hp.pages[cls] == empty_page() {
                    set_current(hp, cls, page);
                }
            } else {
                pg.set_full(true);
            }
        }
        if delay > 0 && s.purge_pages != 0 && hp.purge_at == 0 {
            hp.purge_at = s.purge_at;
        }
        // (An empty segment that a racing freer still touches is kept, as
        // an owned segment with all pages free.)
        if s.used_pages == 0 && segment::quiescent(seg, 0) {
            arena::release_segment(seg);
        } else if s.free_pages != 0 {
            seg_push(&mut hp.segs_avail, seg);
            s.in_avail = true;
        } else {
            seg_push(&mut hp.segs_full, seg);
            s.in_avail = false;
        }
    }
}

/// Sets up a heap taken from the pool for a new thread.
///
/// # Safety
/// `h` is a pooled heap no thread uses.
pub unsafe fn setup(h: *mut Heap, arena: *mut Arena) {
    // SAFETY: nobody else uses h; `xgen` may still be bumped by a late
    // freer of a previous owner, so it is kept and only read.
    unsafe {
        let hp = &mut *h;
        hp.pages = [empty_page(); NUM_CLASSES];
        for cls in 0..NUM_CLASSES {
            // Keeps the allocation counts (statistics).
            mirror(hp, cls);
        }
        hp.lists = [PageList::EMPTY; NUM_CLASSES];
        hp.segs_avail = null_mut();
        hp.segs_full = null_mut();
        hp.arena = arena;
        hp.purge_at = 0;
        hp.pool_next = null_mut();
        hp.xgen_seen = hp.xgen.0.load(Ordering::Acquire);
    }
}

/// A thread is ending: hands every owned segment back to its arena
/// (abandoned if it still holds live blocks) so other threads adopt it.
///
/// # Safety
/// `h` is the ending thread's heap; it is not used afterwards.
pub unsafe fn abandon(h: *mut Heap) {
    // SAFETY: the heap belongs to the calling (ending) thread.
    let hp = unsafe { &mut *h };
    // SAFETY: the ending thread's own cache.
    unsafe { crate::large::flush_cache(&mut hp.large_cache) };
    // Current pages keep their flag (the adopter clears it), with their
    // count of blocks in use up to date.
    for cls in 1..NUM_CLASSES {
        sync(hp, cls);
    }
    for head in [hp.segs_avail, hp.segs_full] {
        let mut seg = head;
        while !seg.is_null() {
            // SAFETY: owned segment; next read first since it moves lists.
            unsafe {
                let next = (*seg).next;
                arena::abandon_segment(seg);
                seg = next;
            }
        }
    }
    hp.pages = [empty_page(); NUM_CLASSES];
    hp.lists = [PageList::EMPTY; NUM_CLASSES];
    hp.segs_avail = null_mut();
    hp.segs_full = null_mut();
}

/// Returns free memory now: collects frees, retires empty current pages
/// and purges every free page. True if anything was released.
///
/// # Safety
/// `h` is the calling thread's heap (or the sentinel).
pub unsafe fn trim(h: *mut Heap) -> bool {
    if h == empty_heap() {
        return false;
    }
    // SAFETY: the calling thread's heap.
    let hp = unsafe { &mut *h };
    hp.xgen_seen = hp.xgen_seen.wrapping_sub(1);
    // SAFETY: as above (the cache's blocks go back to their arenas, whose
    // trim purges them).
    let flushed = unsafe { crate::large::flush_cache(&mut hp.large_cache) };
    // SAFETY: as above.
    flushed
        | unsafe {
            collect_notified(hp);
            for cls in 1..NUM_CLASSES {
                let page = hp.pages[cls];
                if page == empty_page() {
                    continue;
                }
                sync(hp, cls);
                if (*page).used() == 0 {
                    (*page).set_current(false);
                    set_current(hp, cls, (*page).next);
                    let seg = segment::segment_of((*page).start);
                    if page_state(hp, seg, page) {
                        segment_changed(hp, seg);
                    }
                }
            }
            purge(hp, os::now_ms(), true)
        }
}
