//! Secure mode's guard pages: guarded mappings for large and huge blocks,
//! inaccessible freed mappings, and guard pages around each small
//! segment's slabs.
//!
//! ```text
//!  guarded mapping (C chunk-aligned; the chunk map marks C as Guarded)
//!  ┌────────┬───────┬──────────────────────────────┬───────┐
//!  │ header │ guard │ ........ block B (n bytes)   │ guard │
//!  │ (RW)   │ NONE  │   end-aligned: B + n is less │ NONE  │
//!  │        │       │   than 16 B (or the alignment│       │
//!  │        │       │   below the guard, canaried) │       │
//!  └────────┴───────┴──────────────────────────────┴───────┘
//!  free: data pages -> PROT_NONE and purged; the mapping waits in a ring
//!  of FREED_SLOTS before it is unmapped (reads and writes fault).
//!
//!  small segment in secure mode
//!  ┌──────────────────┬──────┬─────────┬─────┬─────────┬───────────┐
//!  │ metadata         │guard │ page 2  │ ... │ page 62 │ page 63:  │
//!  │ (pages 0-1)      │ 4 KiB│         │     │         │ guard     │
//!  └──────────────────┴──────┴─────────┴─────┴─────────┴───────────┘
//! ```
//! Invariants: a header's `state` is LIVE from allocation to free and
//! FREED afterwards, and its chunk stays Guarded until the mapping leaves
//! the freed ring (then it is forgotten, then unmapped); the ring and its
//! cursor are only touched under `LOCK`.

#[cfg(test)]
use crate::canary;
use crate::error::{self, Fault, Op};
use crate::segmap::{self, Kind, CHUNK};
use crate::segment::{Segment, META_PAGES, PAGES, PAGE_SIZE};
use crate::sync::{ForkPhase, SpinLock};
use crate::{os, stats};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The largest alignment served by guarded mappings (larger ones go to
/// ordinary huge mappings).
pub const MAX_ALIGN: usize = 1 << 20;
/// Freed mappings kept inaccessible before they are unmapped.
const FREED_SLOTS: usize = 128;
/// Canary bytes checked between the end of a block and its guard page.
const TAIL_CHECK: usize = 64;

const LIVE: usize = 0x11fe;
const FREED: usize = 0xdead;

const _: () = assert!(core::mem::size_of::<Segment>() <= META_PAGES * PAGE_SIZE - os::PAGE);

/// The header in the mapping's first page.
#[repr(C)]
struct Header {
    block: usize,
    size: usize,
    map_len: usize,
    state: AtomicUsize,
}

struct Ring {
    map: [(usize, usize); FREED_SLOTS],
    next: usize,
}

struct RingCell(UnsafeCell<Ring>);
// SAFETY: only accessed with LOCK held.
unsafe impl Sync for RingCell {}

static LOCK: SpinLock = SpinLock::new();
static RING: RingCell = RingCell(UnsafeCell::new(Ring {
    map: [(0, 0); FREED_SLOTS],
    next: 0,
}));

/// Changes the protection of a page-aligned range; false on failure.
///
/// # Safety
/// The range is mapped by tinymalloc and holds no live block the change
/// would cut off.
unsafe fn protect(p: usize, len: usize, prot: libc::c_int) -> bool {
    // SAFETY: errno is the calling thread's; mprotect's range is as the
    // caller guarantees. errno is kept as it was (malloc must not change
    // it on success).
    unsafe {
        let saved = *libc::__errno_location();
        let r = libc::mprotect(p as *mut libc::c_void, len, prot);
        *libc::__errno_location() = saved;
        r == 0
    }
}

/// Puts the guard pages of a small segment in place: the last OS page of
/// its metadata pages and the whole of its last page. Returns the mask of
/// the pages the segment must never use.
///
/// # Safety
/// `base` is a small segment being initialised (no live block).
pub unsafe fn guard_segment(base: *mut u8) -> u64 {
    let b = base as usize;
    // SAFETY: the guard pages hold nothing (the header ends before the
    // metadata's last OS page, checked above; page 63 is never used).
    unsafe {
        protect(
            b + META_PAGES * PAGE_SIZE - os::PAGE,
            os::PAGE,
            libc::PROT_NONE,
        );
        protect(b + (PAGES - 1) * PAGE_SIZE, PAGE_SIZE, libc::PROT_NONE);
    }
    1u64 << (PAGES - 1)
}

fn round_page(n: usize) -> Option<usize> {
    Some(n.checked_add(os::PAGE - 1)? & !(os::PAGE - 1))
}

/// Allocates a guarded block of `size` bytes aligned to `align` (a power of
/// two, at most [`MAX_ALIGN`]); its memory is zero. Null when out of memory.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(crate::raw::MIN_ALIGN);
    let extra = if align > os::PAGE { align } else { 0 };
    let Some(data) = size.checked_add(extra).and_then(round_page) else {
        return core::ptr::null_mut();
    };
    let data = data.max(os::PAGE);
    let Some(len) = data.checked_add(3 * os::PAGE) else {
        return core::ptr::null_mut();
    };
    if len > isize::MAX as usize / 2 {
        return core::ptr::null_mut();
    }
    let mut c = os::map_aligned(len, CHUNK, 0);
    if c.is_null() && (drain() | crate::arena::release_cached_memory(None)) {
        c = os::map_aligned(len, CHUNK, 0);
    }
    if c.is_null() {
        return c;
    }
    let c = c as usize;
    if !segmap::in_range(c + len) {
        // SAFETY: just mapped, unused.
        unsafe { os::unmap(c as *mut u8, len) };
        return core::ptr::null_mut();
    }
    let end = c + 2 * os::PAGE + data;
    // SAFETY: the guard pages of a mapping just made, holding nothing.
    let guarded = unsafe {
        protect(c + os::PAGE, os::PAGE, libc::PROT_NONE) && protect(end, os::PAGE, libc::PROT_NONE)
    };
    if !guarded {
        // SAFETY: as above.
        unsafe { os::unmap(c as *mut u8, len) };
        return core::ptr::null_mut();
    }
    let b = (end - size) & !(align - 1);
    // SAFETY: the header page and the block's tail are ours, mapped RW.
    unsafe {
        (c as *mut Header).write(Header {
            block: b,
            size,
            map_len: len,
            state: AtomicUsize::new(LIVE),
        });
        fill_tail(b, size, end, true);
    }
    segmap::set(c, Kind::Guarded);
    stats::note_reserved(len as isize);
    stats::note_huge(data as isize);
    stats::note_huge_count(1);
    b as *mut u8
}

/// Fills (`set`) or checks the canary bytes between a block's end and its
/// guard page (at most TAIL_CHECK of them); true when they are intact.
///
/// # Safety
/// `[b + size, end)` is mapped and belongs to the block's mapping.
unsafe fn fill_tail(b: usize, size: usize, end: usize, set: bool) -> bool {
    let from = b + size;
    let to = end.min(from + TAIL_CHECK);
    let pat = (b as u64 ^ 0xa5a5_5a5a_c3c3_3c3c).to_le_bytes();
    for a in from..to {
        let want = pat[a & 7] | 1;
        // SAFETY: as the caller guarantees.
        unsafe {
            if set {
                *(a as *mut u8) = want;
            } else if *(a as *const u8) != want {
                return false;
            }
        }
    }
    true
}

/// The header of the guarded block at `p` (live or freed), if `p` is one.
fn header_of(p: usize) -> Option<*mut Header> {
    if segmap::kind_of(p) != Kind::Guarded {
        return None;
    }
    let h = (p & !(CHUNK - 1)) as *mut Header;
    // SAFETY: the chunk map says a guarded header is mapped at h.
    (unsafe { (*h).block } == p).then_some(h)
}

/// The requested size of the live guarded block at `p`; Err with the fault
/// when `p` is not one (Invalid) or was freed (DoubleFree).
pub fn size_of(p: usize) -> Result<usize, Fault> {
    let h = header_of(p).ok_or(Fault::Invalid)?;
    // SAFETY: a guarded header.
    unsafe {
        if (*h).state.load(Ordering::Acquire) != LIVE {
            return Err(Fault::DoubleFree);
        }
        Ok((*h).size)
    }
}

/// Frees the guarded block at `p` (the chunk map says Guarded): checks its
/// tail canary, makes its pages inaccessible and keeps the mapping in the
/// freed ring for a while.
pub fn free(p: usize, op: Op) {
    let Some(h) = header_of(p) else {
        error::fatal(op, Fault::Invalid, p);
    };
    // SAFETY: a guarded header; the state swap makes one free win.
    let (size, len) = unsafe {
        if (*h).state.swap(FREED, Ordering::AcqRel) != LIVE {
            error::fatal(op, Fault::DoubleFree, p);
        }
        ((*h).size, (*h).map_len)
    };
    let c = h as usize;
    let end = c + len - os::PAGE;
    // SAFETY: the block's tail lies in its mapping.
    if !unsafe { fill_tail(p, size, end, false) } {
        error::fatal(op, Fault::HeapOverflow, p);
    }
    // SAFETY: the block is freed; its pages hold nothing live any more.
    unsafe {
        protect(c + os::PAGE, len - os::PAGE, libc::PROT_NONE);
        os::purge((c + 2 * os::PAGE) as *mut u8, len - 3 * os::PAGE);
    }
    error::remember_freed(p);
    stats::note_huge(-((len - 3 * os::PAGE) as isize));
    stats::note_huge_count(-1);
    LOCK.lock();
    // SAFETY: the lock is held.
    let old = unsafe {
        let r = &mut *RING.0.get();
        let old = r.map[r.next];
        r.map[r.next] = (c, len);
        r.next = (r.next + 1) % FREED_SLOTS;
        old
    };
    LOCK.unlock();
    release(old);
}

/// Forgets and unmaps a freed mapping that left the ring.
fn release((c, len): (usize, usize)) {
    if c == 0 {
        return;
    }
    segmap::set(c, Kind::None);
    // SAFETY: a freed guarded mapping nothing refers to any more.
    unsafe { os::unmap(c as *mut u8, len) };
    stats::note_reserved(-(len as isize));
}

/// Unmaps every freed mapping now; true when there was one.
pub fn drain() -> bool {
    LOCK.lock();
    // SAFETY: the lock is held.
    let taken = unsafe { core::mem::replace(&mut (*RING.0.get()).map, [(0, 0); FREED_SLOTS]) };
    LOCK.unlock();
    let mut any = false;
    for e in taken {
        any |= e.0 != 0;
        release(e);
    }
    any
}

/// Fork support: the ring's lock is held across fork.
pub fn fork_lock(phase: ForkPhase) {
    phase.apply(&LOCK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_blocks_are_end_aligned_zeroed_and_freed_once() {
        for (size, align) in [(40_000usize, 16usize), (100_001, 64), (5 << 20, 8192)] {
            let p = alloc(size, align) as usize;
            assert!(p != 0 && p % align == 0);
            let c = p & !(CHUNK - 1);
            // SAFETY: a live header.
            let len = unsafe { (*(c as *const Header)).map_len };
            let end = c + len - os::PAGE;
            assert!(end - (p + size) < align.max(16) + if align > os::PAGE { align } else { 0 });
            assert_eq!(size_of(p), Ok(size));
            assert_eq!(size_of(p + 16), Err(Fault::Invalid));
            // SAFETY: the block is live and `size` bytes long.
            unsafe {
                assert!(canary::is_zero(p as *const u8, size));
                core::ptr::write_bytes(p as *mut u8, 0x5a, size);
            }
            free(p, Op::Free);
            assert_eq!(size_of(p), Err(Fault::DoubleFree));
        }
        assert!(drain());
    }
}
