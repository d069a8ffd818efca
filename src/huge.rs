//! Huge blocks (above 2 MiB, or aligned above 2 MiB): one mapping each,
//! unmapped when freed, resized in place with mremap when possible.
//!
//! ```text
//!  C (4 MiB-aligned)            B = C + off
//!  ┌────────┬─ ─ ─ ─ ─ ─ ─ ─ ─ ┬───────────────────────────────┐
//!  │ header │ (untouched gap)  │ block (page-rounded)          │
//!  └────────┴─ ─ ─ ─ ─ ─ ─ ─ ─ ┴───────────────────────────────┘
//!  off = max(4 KiB, align) for align < 4 MiB; else 4 MiB (and C chosen so
//!  that B is aligned). The chunk map marks C as Huge; a block's header is
//!  found at the chunk of B - 1 and must name B, so interior and foreign
//!  pointers are rejected without reading user memory.
//! ```

use crate::error::{self, fatal, Fault, Op};
use crate::segmap::{self, Kind, CHUNK};
use crate::sync::Locked;
use crate::{options, os, stats};
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU64, Ordering};

/// Recently freed huge mappings kept for reuse (a program that frees and
/// allocates big buffers in a loop then neither remaps nor refaults them);
/// purged after `options::ARENA_PURGE_MULT` times the purge delay, at most
/// `CACHE_BYTES` in all. A request takes the smallest entry that fits and
/// gives back its whole chunks beyond the request as a new entry; when
/// none fits, the biggest entry grows (mremap keeps its resident pages) to
/// serve it.
///
/// Invariant: each entry is a whole, chunk-aligned mapping of ours that no
/// block uses and the chunk map does not name; guarded by `CACHE`'s lock.
/// `bytes` is the sum of the entries' lengths; `due` is 0 for an entry
/// purged since it was used (known zero), else when it is to be purged.
struct Cache {
    base: [usize; CACHE_SLOTS],
    len: [usize; CACHE_SLOTS],
    /// 0 when purged (known zero), else when the entry is due to be purged.
    due: [u64; CACHE_SLOTS],
    n: usize,
    bytes: usize,
}

const CACHE_SLOTS: usize = 16;
const CACHE_BYTES: usize = 256 << 20;
const CACHE_ENTRY_MAX: usize = CACHE_BYTES;
/// At most this many cached bytes stay unpurged (resident); the oldest
/// entries beyond it are purged at once (their address space stays cached).
/// 64 MiB: the huge workload (two live blocks of 2-64 MiB) kept its peak
/// RSS at 0.82x mimalloc's with it, 1.21x with 128 MiB.
const DIRTY_MAX: usize = 64 << 20;

/// The earliest `due` of the cache's entries, 0 when none waits: read
/// without the lock by [`purge_if_due`].
static NEXT_DUE: AtomicU64 = AtomicU64::new(0);

static CACHE: Locked<Cache> = Locked::new(Cache {
    base: [0; CACHE_SLOTS],
    len: [0; CACHE_SLOTS],
    due: [0; CACHE_SLOTS],
    n: 0,
    bytes: 0,
});

fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    CACHE.with(f)
}

impl Cache {
    fn remove(&mut self, i: usize) -> (usize, usize, bool) {
        let e = (self.base[i], self.len[i], self.due[i] == 0);
        // Keep the order (oldest first) for eviction.
        self.base.copy_within(i + 1..self.n, i);
        self.len.copy_within(i + 1..self.n, i);
        self.due.copy_within(i + 1..self.n, i);
        self.n -= 1;
        self.bytes -= e.1;
        e
    }

    /// Adds an entry (the newest) that fits: the caller made room.
    fn push(&mut self, base: usize, len: usize, due: u64) {
        self.base[self.n] = base;
        self.len[self.n] = len;
        self.due[self.n] = due;
        self.n += 1;
        self.bytes += len;
    }

    /// Purges the entries that are due (or all, `force`), and the oldest
    /// entries beyond `DIRTY_MAX` bytes not yet purged; true if any was.
    /// Recomputes [`NEXT_DUE`].
    fn purge(&mut self, force: bool) -> bool {
        let now = if force { u64::MAX } else { os::now_ms() };
        let mut any = false;
        let mut next = 0;
        let mut dirty: usize = (0..self.n)
            .filter(|&i| self.due[i] != 0)
            .map(|i| self.len[i])
            .sum();
        for i in 0..self.n {
            if self.due[i] != 0 && (self.due[i] <= now || dirty > DIRTY_MAX) {
                dirty -= self.len[i];
                // SAFETY: cached mappings hold no live data.
                unsafe { os::purge(self.base[i] as *mut u8, self.len[i]) };
                stats::note_commit(-(self.len[i] as isize));
                self.due[i] = 0;
                any = true;
            } else if self.due[i] != 0
                && self.due[i] != u64::MAX
                && (next == 0 || self.due[i] < next)
            {
                next = self.due[i];
            }
        }
        NEXT_DUE.store(next, Ordering::Relaxed);
        any
    }
}

/// Purges the cached mappings that are due, if any is: called from the
/// slow paths of small and large allocation, so that freed huge memory goes
/// back even when the program makes no more huge allocations. One relaxed
/// load when nothing waits.
pub fn purge_if_due() {
    let due = NEXT_DUE.load(Ordering::Relaxed);
    if due != 0 && os::now_ms() >= due {
        CACHE.try_with(|c| c.purge(false));
    }
}

/// Takes a cached mapping of at least `len` bytes; returns its base, its
/// length and whether it is known zero. Entries not yet purged come first
/// (their pages are resident: reusing them saves page faults and keeps
/// freed memory from lingering), then purged ones; within each, the
/// smallest that fits, else the biggest, grown to `len` (its pages are
/// reused, only the growth is new). An entry a whole chunk longer than
/// needed is cut, and its tail stays cached as it was (warm or purged).
fn cache_take(len: usize) -> Option<(*mut u8, usize, bool)> {
    let keep = len.checked_add(CHUNK - 1)? & !(CHUNK - 1);
    let (base, have, clean) = with_cache(|c| {
        c.purge(false);
        let pick = |dirty: bool| {
            let of_kind = |i: &usize| (c.due[*i] != 0) == dirty;
            (0..c.n)
                .filter(of_kind)
                .filter(|&i| c.len[i] >= len)
                // Among equals the newest, still warm in memory.
                .min_by_key(|&i| (c.len[i], usize::MAX - i))
                .or_else(|| (0..c.n).filter(of_kind).max_by_key(|&i| (c.len[i], i)))
        };
        let i = pick(true).or_else(|| pick(false))?;
        let due = c.due[i];
        let (b, l, clean) = c.remove(i);
        if l >= keep + CHUNK {
            // The tail becomes a whole, chunk-aligned mapping of its own
            // (resident memory the block does not need must not stay inside
            // it), keeping the entry's deadline: still warm, it serves the
            // next request of its size without page faults, and it is
            // purged when the whole entry would have been, or sooner when
            // the warm entries pass `DIRTY_MAX`.
            c.push(b + keep, l - keep, due);
            return Some((b, keep, clean));
        }
        Some((b, l, clean))
    })?;
    let base = base as *mut u8;
    if have >= len {
        return Some((base, have, clean));
    }
    // Grow the entry: in place if the address space after it is free,
    // else move its pages (no copy) to a new reservation.
    // SAFETY: the entry is a whole mapping of ours that nothing uses.
    if unsafe { os::remap_in_place(base, have, keep) } {
        note_growth(have, keep, clean);
        return Some((base, keep, clean));
    }
    let target = os::map_aligned(keep, CHUNK, 0);
    // SAFETY: as above; `target` is a fresh reservation the move replaces.
    if !target.is_null() && unsafe { os::remap_to(base, have, keep, target) } {
        note_growth(have, keep, clean);
        return Some((target, keep, clean));
    }
    if !target.is_null() {
        // SAFETY: the unused reservation.
        unsafe { os::unmap(target, keep) };
    }
    // The OS refused: give the entry back too, to make room.
    // SAFETY: the entry is a whole mapping of ours that nothing uses.
    unsafe { os::unmap(base, have) };
    if !clean {
        stats::note_commit(-(have as isize));
    }
    stats::note_reserved(-(have as isize));
    None
}

/// Accounts for a cached mapping grown from `old` to `new` bytes.
fn note_growth(old: usize, new: usize, clean: bool) {
    stats::note_reserved((new - old) as isize);
    if !clean {
        // Still committed (not purged): the growth is committed too. A
        // purged entry is counted whole when the block is made.
        stats::note_commit((new - old) as isize);
    }
}

/// Keeps a freed mapping for reuse, evicting the oldest entries to make
/// room; false when it is too big to keep.
fn cache_put(base: *mut u8, len: usize) -> bool {
    if len > CACHE_ENTRY_MAX {
        return false;
    }
    let delay = options::purge_delay_ms();
    let mut evicted = [(0usize, 0usize); CACHE_SLOTS];
    let nevicted = with_cache(|c| {
        let mut k = 0;
        while c.n == CACHE_SLOTS || c.bytes + len > CACHE_BYTES {
            let (b, l, clean) = c.remove(0);
            if !clean {
                stats::note_commit(-(l as isize));
            }
            evicted[k] = (b, l);
            k += 1;
        }
        if delay == 0 {
            // SAFETY: the mapping holds no live data.
            unsafe { os::purge(base, len) };
            stats::note_commit(-(len as isize));
        }
        let due = match delay {
            0 => 0,
            d if d < 0 => u64::MAX,
            d => os::now_ms() + d as u64 * options::ARENA_PURGE_MULT,
        };
        c.push(base as usize, len, due);
        c.purge(false);
        k
    });
    for &(b, l) in &evicted[..nevicted] {
        // SAFETY: evicted from the cache: unused and unnamed.
        unsafe { os::unmap(b as *mut u8, l) };
        stats::note_reserved(-(l as isize));
    }
    true
}

/// Fork support: the cache lock is taken before fork and released after.
pub fn fork_lock(phase: crate::sync::ForkPhase) {
    phase.apply(CACHE.lock());
}

/// Unmaps every cached huge mapping (the OS refused a mapping). True if
/// any was.
pub fn drop_cache() -> bool {
    let mut gone = [(0usize, 0usize); CACHE_SLOTS];
    let n = with_cache(|c| {
        let n = c.n;
        for (i, g) in gone.iter_mut().enumerate().take(n) {
            *g = (c.base[i], c.len[i]);
            if c.due[i] != 0 {
                stats::note_commit(-(c.len[i] as isize));
            }
        }
        c.n = 0;
        c.bytes = 0;
        n
    });
    for &(b, l) in &gone[..n] {
        // SAFETY: removed from the cache: unused and unnamed.
        unsafe { os::unmap(b as *mut u8, l) };
        stats::note_reserved(-(l as isize));
    }
    n > 0
}

/// Purges (`force`: all, else what is due) the cached huge mappings.
pub fn trim(force: bool) -> bool {
    with_cache(|c| c.purge(force))
}

/// The header in the mapping's first page.
#[repr(C)]
struct Header {
    block: usize,
    usable: usize,
    map_len: usize,
    align: usize,
}

/// Where a block of `align` sits in its mapping: (offset of the block,
/// alignment of the mapping, offset modulo that alignment).
fn layout(align: usize) -> (usize, usize, usize) {
    if align < CHUNK {
        (align.max(os::PAGE), CHUNK, 0)
    } else {
        (CHUNK, align, align - CHUNK)
    }
}

/// A mapping length with up to 1/16 of slack.
fn with_slack(len: usize) -> usize {
    let grain = (len.next_power_of_two() / 16).max(os::PAGE);
    (len + grain - 1) & !(grain - 1)
}

/// `size` rounded up to whole pages (at least one); None on overflow.
fn round(size: usize) -> Option<usize> {
    let r = size.checked_add(os::PAGE - 1)? & !(os::PAGE - 1);
    (r <= isize::MAX as usize / 2).then_some(r.max(os::PAGE))
}

/// Maps a huge block of `size` bytes aligned to `align` (power of two);
/// null when out of memory. Mappings are fresh, so already zero.
///
/// # Safety
/// Always safe to call.
pub unsafe fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
    let Some(usable) = round(size) else {
        return null_mut();
    };
    let (off, map_align, map_off) = layout(align);
    // Map with up to 1/16 of slack (address space only, never touched
    // unless used) so that a slightly bigger block later reuses this
    // mapping from the cache, or grows into it in place.
    let len = with_slack(usable + off);
    // Cached mappings are chunk-aligned: they serve alignments below 4 MiB.
    let cached = if align < CHUNK {
        cache_take(usable + off)
    } else {
        None
    };
    let (c, len, clean) = match cached {
        Some(hit) => {
            // A mapping used before is filled densely again, typically:
            // transparent huge pages make that one fault per 2 MiB. A fresh
            // mapping gets no such advice (a program that touches a big
            // buffer sparsely, as xz does its match finder's tables, would
            // have 2 MiB resident for every byte it touches: 50 MB instead
            // of 26 MB of RSS for `xz -T2`).
            // SAFETY: the cached mapping is ours.
            unsafe { os::advise_huge_pages(hit.0, hit.1) };
            hit
        }
        None => {
            let mut c = os::map_aligned(len, map_align, map_off);
            if c.is_null() && crate::arena::release_cached_memory(None) {
                c = os::map_aligned(len, map_align, map_off);
            }
            if c.is_null() {
                return null_mut();
            }
            if !segmap::in_range(c as usize + len) {
                // SAFETY: just mapped, unused.
                unsafe { os::unmap(c, len) };
                return null_mut();
            }
            stats::note_reserved(len as isize);
            (c, len, true)
        }
    };
    if clean {
        // A fresh or purged mapping: committed from now on (a cached one
        // not purged is still counted).
        stats::note_commit(len as isize);
    }
    let b = c as usize + off;
    if zero && !clean {
        // SAFETY: the block's pages are mapped and ours.
        unsafe { core::ptr::write_bytes(b as *mut u8, 0, size) };
    }
    // SAFETY: the header page is the mapping's first page, ours alone.
    unsafe {
        (c as *mut Header).write(Header {
            block: b,
            usable,
            map_len: len,
            align,
        })
    };
    segmap::set(c as usize, Kind::Huge);
    stats::note_huge(usable as isize);
    stats::note_huge_count(1);
    b as *mut u8
}

/// The header of the huge block at `p`, if `p` is one.
fn header_of(p: *mut u8) -> Option<*mut Header> {
    let a = p as usize;
    if a % os::PAGE != 0 || a == 0 || segmap::kind_of(a - 1) != Kind::Huge {
        return None;
    }
    let h = ((a - 1) & !(CHUNK - 1)) as *mut Header;
    // SAFETY: the chunk map says a huge header is mapped at h.
    (unsafe { (*h).block } == a).then_some(h)
}

/// Frees a huge block (any pointer the chunk map did not place in a
/// segment comes here and is validated).
///
/// # Safety
/// `p` is non-null.
pub unsafe fn free(p: *mut u8, op: Op) {
    let Some(h) = header_of(p) else {
        let fault =
            if error::was_freed(p as usize) || crate::arena::recently_freed_large(p as usize) {
                Fault::DoubleFree
            } else {
                Fault::Invalid
            };
        fatal(op, fault, p as usize);
    };
    // SAFETY: h is a live huge header.
    let (usable, len, align) = unsafe { ((*h).usable, (*h).map_len, (*h).align) };
    segmap::set(h as usize, Kind::None);
    error::remember_freed(p as usize);
    stats::note_huge(-(usable as isize));
    stats::note_huge_count(-1);
    if align < CHUNK && cache_put(h as *mut u8, len) {
        return;
    }
    // SAFETY: the whole mapping is the block's, now free.
    unsafe { os::unmap(h as *mut u8, len) };
    stats::note_commit(-(len as isize));
    stats::note_reserved(-(len as isize));
}

/// The usable size of the huge block at `p`, if it is one.
///
/// # Safety
/// Always safe to call with any address.
pub unsafe fn usable(p: *mut u8) -> Option<usize> {
    // SAFETY: header_of validated h.
    header_of(p).map(|h| unsafe { (*h).usable })
}

/// Resizes the huge block at `p` in place (mremap without moving).
///
/// # Safety
/// `p` is a validated live block.
pub unsafe fn resize_in_place(p: *mut u8, size: usize) -> bool {
    let Some(h) = header_of(p) else {
        return false;
    };
    if size <= crate::large::LARGE_MAX {
        return false;
    }
    let Some(usable) = round(size) else {
        return false;
    };
    // SAFETY: h is a live huge header.
    unsafe {
        let old_usable = (*h).usable;
        let off = p as usize - h as usize;
        let new_len = off + usable;
        if usable < old_usable / 2 {
            return false; // much smaller: let realloc move it to a fitting block
        }
        if new_len <= (*h).map_len && new_len * 2 >= (*h).map_len {
            // The mapping already covers it (room left by a cached reuse).
            stats::note_huge(usable as isize - old_usable as isize);
            (*h).usable = usable;
            return true;
        }
        if !os::remap_in_place(h as *mut u8, (*h).map_len, new_len) {
            return false;
        }
        stats::note_reserved(new_len as isize - (*h).map_len as isize);
        stats::note_commit(new_len as isize - (*h).map_len as isize);
        stats::note_huge(usable as isize - old_usable as isize);
        (*h).map_len = new_len;
        (*h).usable = usable;
    }
    true
}

/// Moves the huge block at `p` to a new mapping of `size` bytes without
/// copying (mremap moves the pages). Returns the new address, or null when
/// the OS refuses (the block is then untouched).
///
/// # Safety
/// `p` is a validated live huge block.
pub unsafe fn realloc_move(p: *mut u8, size: usize) -> *mut u8 {
    let (Some(h), Some(usable)) = (header_of(p), round(size)) else {
        return null_mut();
    };
    // SAFETY: h is a live huge header.
    let (align, old_len, old_usable) = unsafe { ((*h).align, (*h).map_len, (*h).usable) };
    let (off, map_align, map_off) = layout(align);
    let len = with_slack(usable + off);
    let mut target = os::map_aligned(len, map_align, map_off);
    if target.is_null() && crate::arena::release_cached_memory(None) {
        target = os::map_aligned(len, map_align, map_off);
    }
    if target.is_null() || !segmap::in_range(target as usize + len) {
        if !target.is_null() {
            // SAFETY: just mapped, unused.
            unsafe { os::unmap(target, len) };
        }
        return null_mut();
    }
    // Forget the old chunk first: once mremap has moved the pages, another
    // thread may map a segment there at once and name it in the chunk map.
    segmap::set(h as usize, Kind::None);
    // SAFETY: `h` is our whole mapping; `target` is a mapping of ours that
    // the move replaces.
    if !unsafe { os::remap_to(h as *mut u8, old_len, len, target) } {
        segmap::set(h as usize, Kind::Huge);
        // SAFETY: the reservation is unused.
        unsafe { os::unmap(target, len) };
        return null_mut();
    }
    let nh = target as *mut Header;
    let b = target as usize + off;
    // SAFETY: the header moved with the mapping.
    unsafe {
        (*nh).block = b;
        (*nh).usable = usable;
        (*nh).map_len = len;
    }
    segmap::set(target as usize, Kind::Huge);
    stats::note_reserved(len as isize - old_len as isize);
    stats::note_commit(len as isize - old_len as isize);
    stats::note_huge(usable as isize - old_usable as isize);
    b as *mut u8
}
