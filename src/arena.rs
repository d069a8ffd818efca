//! Arenas: the shared pools that heaps draw segments from, one per CPU by
//! default, each with its own lock. A thread is assigned one on its first
//! allocation (round robin, O(1)) and keeps it; large blocks are served by
//! the thread's arena, so no allocation scans the arenas. The one look
//! beyond a thread's own arena is for an abandoned segment to adopt, made
//! only when the thread would otherwise map a new segment, and only when
//! the global count of abandoned segments is not zero.
//!
//! ```text
//!  Arena ─┬─ cache      : up to 4 empty 4 MiB segments (purged after
//!         │               the purge delay, unmapped past 4), each with
//!         │               its transparent-huge-page advice
//!         ├─ abandoned  : segments of exited threads with live blocks,
//!         │               adopted by the next heap (of any arena) that
//!         │               would otherwise map a segment
//!         └─ large      : large segments (page runs, see large.rs)
//! ```
//! Invariants: every field of `Inner` is touched only with `lock` held;
//! `nabandoned` equals the length of the abandoned list, and `ABANDONED`
//! the sum of every arena's `nabandoned` (both change under the lock).

use crate::large::LargeSeg;
use crate::segmap::{self, Kind, CHUNK};
use crate::segment::{self, Segment};
use crate::sync::SpinLock;
use crate::{options, os, stats};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicUsize, Ordering};

/// At most this many arenas.
pub const MAX_ARENAS: usize = 64;
const CACHE_SLOTS: usize = 4;

/// The lock-protected state of an arena.
pub struct Inner {
    abandoned: *mut Segment,
    cache: [*mut u8; CACHE_SLOTS],
    /// 0 when purged (known zero), else when the entry is due for a purge.
    cache_due: [u64; CACHE_SLOTS],
    /// The entry is advised transparent huge pages (it was a large
    /// segment past its arena's first).
    cache_thp: [bool; CACHE_SLOTS],
    ncache: usize,
    /// Earliest time something of this arena is due to be purged (0: none).
    pub purge_at: u64,
    /// The arena's large segments (doubly linked).
    pub large: *mut LargeSeg,
    /// Bytes and number of live large blocks of this arena.
    pub large_bytes: usize,
    /// Number of live large blocks.
    pub large_count: usize,
    /// Recently freed large block addresses (to name a later double free
    /// of a block whose segment went back to the OS).
    freed: [usize; FREED_RING],
    freed_pos: usize,
}

const FREED_RING: usize = 256;

impl Inner {
    /// Remembers a freed large block.
    pub fn remember_freed(&mut self, p: usize) {
        self.freed[self.freed_pos % FREED_RING] = p;
        self.freed_pos = self.freed_pos.wrapping_add(1);
    }
}

/// True when some arena recently freed a large block at `p` (error path).
pub fn recently_freed_large(p: usize) -> bool {
    ARENAS[..count()]
        .iter()
        .any(|a| a.with(|inner| inner.freed.contains(&p)))
}

/// Bytes and number of live large blocks, over all arenas.
pub fn large_totals() -> (usize, usize) {
    let mut t = (0, 0);
    for a in &ARENAS[..count()] {
        a.with(|inner| {
            t.0 += inner.large_bytes;
            t.1 += inner.large_count;
        });
    }
    t
}

/// An arena.
#[repr(C, align(64))]
pub struct Arena {
    lock: SpinLock,
    nabandoned: AtomicUsize,
    inner: UnsafeCell<Inner>,
}

// SAFETY: `inner` is only accessed with `lock` held.
unsafe impl Sync for Arena {}

impl Arena {
    const fn new() -> Arena {
        Arena {
            lock: SpinLock::new(),
            nabandoned: AtomicUsize::new(0),
            inner: UnsafeCell::new(Inner {
                abandoned: null_mut(),
                cache: [null_mut(); CACHE_SLOTS],
                cache_due: [0; CACHE_SLOTS],
                cache_thp: [false; CACHE_SLOTS],
                ncache: 0,
                purge_at: 0,
                large: null_mut(),
                large_bytes: 0,
                large_count: 0,
                freed: [0; FREED_RING],
                freed_pos: 0,
            }),
        }
    }

    /// Runs `f` with the lock held.
    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        self.lock.lock();
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.inner.get() });
        self.lock.unlock();
        r
    }
}

static ARENAS: [Arena; MAX_ARENAS] = [const { Arena::new() }; MAX_ARENAS];
static NARENAS: AtomicUsize = AtomicUsize::new(1);
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Abandoned segments in all arenas (the sum of their `nabandoned`): one
/// load tells a heap about to map a segment whether any is waiting.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Sets the number of arenas (once, at global initialisation).
pub fn init() {
    let want = options::get(options::Opt::Arenas);
    let n = if want <= 0 {
        os::ncpus()
    } else {
        want as usize
    };
    NARENAS.store(n.clamp(1, MAX_ARENAS), Ordering::Relaxed);
}

/// The number of arenas in use.
pub fn count() -> usize {
    NARENAS.load(Ordering::Relaxed)
}

/// The arena for a new thread: round robin.
pub fn assign() -> *mut Arena {
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % count();
    &ARENAS[i] as *const Arena as *mut Arena
}

/// A 4 MiB-aligned, 4 MiB mapping for a new segment and whether its memory
/// is known to be zero; null when the OS refuses.
///
/// # Safety
/// `a` is a live arena.
pub unsafe fn alloc_segment(a: *mut Arena) -> (*mut u8, bool) {
    // SAFETY: arenas are static.
    let a = unsafe { &*a };
    a.with(|inner| take_cached_locked(inner, false))
        .unwrap_or_else(map_segment)
}

/// Segment memory from the cache or the OS and whether it is known zero,
/// advised transparent huge pages when `thp` and not otherwise. Lock held.
pub fn segment_memory_locked(inner: &mut Inner, thp: bool) -> (*mut u8, bool) {
    if let Some(c) = take_cached_locked(inner, thp) {
        return c;
    }
    let (base, clean) = map_segment_locked(Some(inner));
    if thp && !base.is_null() {
        // SAFETY: a fresh mapping of ours, not yet in use.
        unsafe { os::advise_thp(base, CHUNK, true) };
    }
    (base, clean)
}

/// Takes a cached segment's memory and whether it is known zero, advised
/// transparent huge pages when `thp` and not otherwise (an entry with the
/// advice wanted is taken first: changing it is a system call that takes
/// the process's memory-map lock for writing). Lock held.
fn take_cached_locked(inner: &mut Inner, thp: bool) -> Option<(*mut u8, bool)> {
    if inner.ncache == 0 {
        return None;
    }
    let top = inner.ncache - 1;
    let k = (0..inner.ncache)
        .rev()
        .find(|&k| inner.cache_thp[k] == thp)
        .unwrap_or(top);
    inner.cache.swap(k, top);
    inner.cache_due.swap(k, top);
    inner.cache_thp.swap(k, top);
    inner.ncache = top;
    let (base, clean) = (inner.cache[top], inner.cache_due[top] == 0);
    if !clean {
        // The entry's committed bytes pass to the segment made from it.
        stats::note_commit(-(CHUNK as isize));
    }
    if inner.cache_thp[top] != thp {
        // SAFETY: the entry is ours and unused.
        unsafe { os::advise_thp(base, CHUNK, thp) };
    }
    Some((base, clean))
}

/// Maps a new 4 MiB-aligned segment from the OS (null when refused).
pub fn map_segment() -> (*mut u8, bool) {
    map_segment_locked(None)
}

/// Maps a new segment; when the OS refuses, gives back every cached
/// mapping (the arena whose lock the caller holds is passed as `held`) and
/// tries once more.
fn map_segment_locked(held: Option<&mut Inner>) -> (*mut u8, bool) {
    let mut p = os::map_aligned(CHUNK, CHUNK, 0);
    if p.is_null() && release_cached_memory(held) {
        p = os::map_aligned(CHUNK, CHUNK, 0);
    }
    if p.is_null() || !segmap::in_range(p as usize) {
        if !p.is_null() {
            // SAFETY: just mapped, unused.
            unsafe { os::unmap(p, CHUNK) };
        }
        return (null_mut(), false);
    }
    stats::note_reserved(CHUNK as isize);
    (p, true)
}

/// Unmaps every cached segment of `inner`. Lock held. True if any was.
fn drop_cache_locked(inner: &mut Inner) -> bool {
    let any = inner.ncache > 0;
    for i in 0..inner.ncache {
        // SAFETY: cached segments are unused and named by no chunk map entry.
        unsafe { os::unmap(inner.cache[i], CHUNK) };
        stats::note_reserved(-(CHUNK as isize));
        if inner.cache_due[i] != 0 {
            stats::note_commit(-(CHUNK as isize));
        }
    }
    inner.ncache = 0;
    any
}

/// The OS refused a mapping: unmaps every cached segment (of `held`, whose
/// lock the caller holds, and of every other arena whose lock is free) and
/// every huge region without a live block, so the address space serves the
/// request.
/// True when anything was given back.
pub fn release_cached_memory(held: Option<&mut Inner>) -> bool {
    let held_ptr = held
        .as_ref()
        .map_or(core::ptr::null(), |h| *h as *const Inner);
    let mut any = held.is_some_and(drop_cache_locked);
    for a in &ARENAS[..count()] {
        if core::ptr::eq(a.inner.get(), held_ptr) || !a.lock.try_lock() {
            continue;
        }
        // SAFETY: the lock was just taken.
        any |= drop_cache_locked(unsafe { &mut *a.inner.get() });
        a.lock.unlock();
    }
    any | crate::huge::drop_cache()
}

/// Puts an empty segment's memory in the cache (purged after the delay) or
/// unmaps it when the cache is full. `committed`: the segment's committed
/// bytes (a cached entry not yet purged counts as wholly committed); `thp`:
/// the memory is advised transparent huge pages. Lock held.
pub fn release_locked(inner: &mut Inner, base: *mut u8, committed: usize, thp: bool) {
    segmap::set(base as usize, Kind::None);
    stats::note_segment(-1);
    stats::note_commit(-(committed as isize));
    if inner.ncache < CACHE_SLOTS {
        let delay = options::purge_delay_ms();
        let due = match delay {
            0 => 0,
            d if d < 0 => u64::MAX,
            d => os::now_ms() + d as u64,
        };
        if due == 0 {
            // SAFETY: the segment is empty; nobody uses its memory.
            unsafe { os::purge(base, CHUNK) };
        } else {
            stats::note_commit(CHUNK as isize);
        }
        if due != 0 && delay > 0 && (inner.purge_at == 0 || due < inner.purge_at) {
            inner.purge_at = due;
        }
        inner.cache[inner.ncache] = base;
        inner.cache_due[inner.ncache] = due;
        inner.cache_thp[inner.ncache] = thp;
        inner.ncache += 1;
    } else {
        // SAFETY: the segment is empty and no longer in the chunk map.
        unsafe { os::unmap(base, CHUNK) };
        stats::note_reserved(-(CHUNK as isize));
    }
}

/// Releases an empty small segment to its arena.
///
/// # Safety
/// The segment has no block in use and is in no list.
pub unsafe fn release_segment(seg: *mut Segment) {
    // SAFETY: the segment's arena is a static arena.
    let a = unsafe { &*(*seg).arena };
    // SAFETY: the caller holds the empty segment.
    let committed = unsafe { segment::committed(seg) };
    a.with(|inner| {
        release_locked(inner, seg as *mut u8, committed, false);
        purge_due_locked(inner, false);
    });
}

/// Purges cached segments, abandoned segments' free pages and large
/// segments' free pages that are due (or all of them, `force`). Lock held.
pub fn purge_due_locked(inner: &mut Inner, force: bool) -> bool {
    purge_due_locked_at(inner, force, None)
}

/// [`purge_due_locked`] with the time (`os::now_ms`) when the caller has
/// just read it. Lock held.
pub fn purge_due_locked_at(inner: &mut Inner, force: bool, now: Option<u64>) -> bool {
    crate::huge::purge_if_due();
    if !force && inner.purge_at == 0 {
        return false;
    }
    let now = now.unwrap_or_else(os::now_ms);
    if !force && now < inner.purge_at {
        return false;
    }
    let mut any = false;
    let mut next_due = 0u64;
    for i in 0..inner.ncache {
        let due = inner.cache_due[i];
        if due != 0 && (force || due <= now) {
            // SAFETY: cached segments hold no data.
            unsafe { os::purge(inner.cache[i], CHUNK) };
            stats::note_commit(-(CHUNK as isize));
            inner.cache_due[i] = 0;
            any = true;
        } else if due != 0 && due != u64::MAX && (next_due == 0 || due < next_due) {
            next_due = due;
        }
    }
    let mut seg = inner.abandoned;
    while !seg.is_null() {
        // SAFETY: abandoned segments are guarded by this lock.
        unsafe {
            any |= segment::purge_due(seg, now, force) > 0;
            let due = (*seg).purge_at;
            if (*seg).purge_pages != 0 && due != segment::NEVER && (next_due == 0 || due < next_due)
            {
                next_due = due;
            }
            seg = (*seg).next;
        }
    }
    let (large_any, large_due) = crate::large::purge_due_locked(inner, now, force);
    inner.purge_at = match (next_due, large_due) {
        (0, d) | (d, 0) => d,
        (a, b) => a.min(b),
    };
    any | large_any
}

/// Collects an abandoned segment's cross-thread frees and retires its
/// empty pages. Returns true when the segment is empty. Lock held.
unsafe fn tidy_abandoned(seg: *mut Segment) -> bool {
    let delay = options::purge_delay_ms();
    let now = if delay > 0 { os::now_ms() } else { 0 };
    // SAFETY: no heap owns the segment; the arena lock is held.
    unsafe {
        segment::collect_pending(seg, |_, _| {});
        let s = &mut *seg;
        for i in segment::META_PAGES..segment::PAGES {
            let pg = &mut s.pages[i] as *mut crate::page::Page;
            if (*pg).bsize != 0 && (*pg).used() == 0 {
                segment::retire_page(seg, pg, now, delay);
            }
        }
        s.used_pages == 0
    }
}

/// A thread is ending: gives its segment to the arena.
///
/// # Safety
/// The calling thread owns `seg` and will not touch it again.
pub unsafe fn abandon_segment(seg: *mut Segment) {
    // SAFETY: owned segment; its arena is static.
    let (s, a) = unsafe { (&mut *seg, &*(*seg).arena) };
    // From here freers see no owner and collect under the lock themselves.
    s.owner_tid.store(crate::thread::NO_OWNER, Ordering::SeqCst);
    s.owner.store(null_mut(), Ordering::SeqCst);
    a.with(|inner| {
        // SAFETY: the lock is held and nobody owns the segment.
        // SAFETY: as above.
        if unsafe { tidy_abandoned(seg) && segment::quiescent(seg, 0) } {
            // SAFETY: as above.
            release_locked(
                inner,
                seg as *mut u8,
                unsafe { segment::committed(seg) },
                false,
            );
            return;
        }
        s.abandoned = true;
        s.prev = null_mut();
        s.next = inner.abandoned;
        if !inner.abandoned.is_null() {
            // SAFETY: list members are guarded by the lock.
            unsafe { (*inner.abandoned).prev = seg };
        }
        inner.abandoned = seg;
        a.nabandoned.fetch_add(1, Ordering::Relaxed);
        ABANDONED.fetch_add(1, Ordering::Relaxed);
        if s.purge_pages != 0 && s.purge_at != segment::NEVER && inner.purge_at == 0 {
            inner.purge_at = s.purge_at;
        }
    });
}

/// Unlinks an abandoned segment. Lock held.
unsafe fn unlink_abandoned(a: &Arena, inner: &mut Inner, seg: *mut Segment) {
    // SAFETY: seg is in the abandoned list, guarded by the lock.
    unsafe {
        let s = &mut *seg;
        if s.prev.is_null() {
            inner.abandoned = s.next;
        } else {
            (*s.prev).next = s.next;
        }
        if !s.next.is_null() {
            (*s.next).prev = s.prev;
        }
        s.next = null_mut();
        s.prev = null_mut();
        s.abandoned = false;
    }
    a.nabandoned.fetch_sub(1, Ordering::Relaxed);
    ABANDONED.fetch_sub(1, Ordering::Relaxed);
}

/// Takes an abandoned segment for the calling heap to adopt, or null: one
/// of its own arena's, else one of another arena's. Called only when the
/// heap would otherwise map a new segment; the other arenas cost one
/// relaxed load each, and their locks are taken only where a segment
/// waits.
///
/// Looking further than the heap's own arena matters because threads are
/// given arenas round robin: a thread that replaces an exited one (and
/// inherits its blocks, as server threads do) is usually in another
/// arena, and would otherwise set up fresh pages beside the exited
/// thread's half-used ones and free every inherited block through the
/// abandoned-segment path. An adopted segment stays in its own arena
/// (`Segment::arena`): its release, cache and purges go there.
///
/// # Safety
/// `a` is a live arena.
pub unsafe fn pop_abandoned(a: *mut Arena) -> *mut Segment {
    if ABANDONED.load(Ordering::Relaxed) == 0 {
        return null_mut();
    }
    let own = a as *const Arena;
    // SAFETY: arenas are static.
    let seg = unsafe { pop_abandoned_from(&*own) };
    if !seg.is_null() {
        return seg;
    }
    for other in &ARENAS[..count()] {
        if !core::ptr::eq(other, own) {
            // SAFETY: forwarded (a static arena).
            let seg = unsafe { pop_abandoned_from(other) };
            if !seg.is_null() {
                return seg;
            }
        }
    }
    null_mut()
}

/// The first abandoned segment of `a`, unlinked, or null.
///
/// # Safety
/// `a` is a static arena.
unsafe fn pop_abandoned_from(a: &Arena) -> *mut Segment {
    if a.nabandoned.load(Ordering::Relaxed) == 0 {
        return null_mut();
    }
    a.with(|inner| {
        let seg = inner.abandoned;
        if !seg.is_null() {
            // SAFETY: the lock is held.
            unsafe { unlink_abandoned(a, inner, seg) };
        }
        seg
    })
}

/// A thread freed the block at `a` (bit in word `w` of its page's rows)
/// into an abandoned segment: collects that word under the lock, retires
/// the page if that emptied it, and releases the segment if it is then
/// empty and no other cross-thread free into it is in flight. Ends the
/// caller's mark: one of the segment's `xinflight` counts when `counted`
/// (a thread without a heap), else its heap's `xfreeing`.
///
/// Only the caller's word is collected: every freer into an abandoned
/// segment comes here with its own, so each page changes only through
/// the word collected now, and the last freer finds the segment empty
/// (a whole `tidy_abandoned` per free cost about 1,300 instructions on a
/// page of 16-byte blocks: every word of every pending page, then every
/// page).
///
/// # Safety
/// `seg` is a mapped small segment on which the caller holds an in-flight
/// mark; `w` is the word of `a`'s block in its page.
#[cold]
#[inline(never)]
pub unsafe fn reclaim_frees(seg: *mut Segment, a: usize, w: usize, counted: bool) {
    // SAFETY: the segment's arena is static; our mark keeps seg mapped.
    let ar = unsafe { &*(*seg).arena };
    let mine = counted as u64;
    ar.with(|inner| {
        // SAFETY: the lock is held; `abandoned` says no heap owns it.
        unsafe {
            if (*seg).abandoned && reclaim_word(seg, a, w) && segment::quiescent(seg, mine) {
                unlink_abandoned(ar, inner, seg);
                release_locked(inner, seg as *mut u8, segment::committed(seg), false);
            } else {
                let due = (*seg).purge_at;
                if (*seg).purge_pages != 0 && due != segment::NEVER && inner.purge_at == 0 {
                    inner.purge_at = due;
                }
                if counted {
                    (*seg).xinflight.fetch_sub(1, Ordering::SeqCst);
                }
            }
            if !counted {
                // The caller's mark ends under the lock too: a freer that
                // takes the lock next must see it gone, or two last
                // freers would each leave the release to the other (found
                // by the model, `model/`).
                (*crate::thread::heap())
                    .xfreeing
                    .store(0, Ordering::Release);
            }
        }
        purge_due_locked(inner, false);
    });
}

/// `reclaim_frees`' collection: word `w` of the page of `a`, and the page
/// retired if that emptied it. True when the segment is empty. Lock held,
/// segment abandoned.
unsafe fn reclaim_word(seg: *mut Segment, a: usize, w: usize) -> bool {
    // SAFETY: as the caller guarantees.
    unsafe {
        if let Some((pg, n)) = segment::collect_word(seg, a, w) {
            if n > 0 && (*pg).used() == 0 {
                let delay = options::purge_delay_ms();
                let now = if delay > 0 { os::now_ms() } else { 0 };
                segment::retire_page(seg, pg, now, delay);
            }
        }
        (*seg).used_pages == 0
    }
}

/// Purges everything purgeable in every arena. True if anything was.
pub fn trim_all() -> bool {
    let mut any = false;
    for a in &ARENAS[..count()] {
        any |= a.with(|inner| {
            // Also hand back what abandoned segments received meanwhile.
            let mut seg = inner.abandoned;
            while !seg.is_null() {
                // SAFETY: lock held; abandoned segments are ours to tidy.
                unsafe {
                    let next = (*seg).next;
                    if tidy_abandoned(seg) && segment::quiescent(seg, 0) {
                        unlink_abandoned(a, inner, seg);
                        release_locked(inner, seg as *mut u8, segment::committed(seg), false);
                    }
                    seg = next;
                }
            }
            purge_due_locked(inner, true)
        });
    }
    any | crate::huge::trim(true)
}

/// Counts for statistics: (cached segments, abandoned segments).
pub fn counts() -> (usize, usize) {
    let mut c = (0, 0);
    for a in &ARENAS[..count()] {
        c.0 += a.with(|inner| inner.ncache);
        c.1 += a.nabandoned.load(Ordering::Relaxed);
    }
    c
}

/// Fork: applies `phase` to every arena lock.
pub fn fork_locks(phase: crate::sync::ForkPhase) {
    for a in &ARENAS {
        phase.apply(&a.lock);
    }
}
