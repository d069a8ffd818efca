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
//!  free: all but the header -> PROT_NONE (reads and writes fault), pages
//!  purged unless kept hot; the mapping waits (retired.rs), then may be
//!  reused for a block that fits, or is unmapped.
//!
//!  small segment in secure mode
//!  ┌──────────────────┬──────┬─────────┬─────┬─────────┬───────────┐
//!  │ metadata         │guard │ page 2  │ ... │ page 62 │ page 63:  │
//!  │ (pages 0-1)      │ 4 KiB│         │     │         │ guard     │
//!  └──────────────────┴──────┴─────────┴─────┴─────────┴───────────┘
//! ```
//! Invariants: a header's `state` is LIVE from allocation to free and
//! FREED afterwards (until the mapping is reused, when it is rewritten);
//! its chunk stays Guarded until the mapping is unmapped (forgotten
//! first), so a second free is always named a double free.

#[cfg(test)]
use crate::canary;
use crate::error::{self, Fault, Op};
use crate::retired::{self, Mapping};
use crate::segmap::{self, Kind, CHUNK};
use crate::segment::{Segment, META_PAGES, PAGES, PAGE_SIZE};
use crate::{os, stats};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The largest alignment served by guarded mappings (larger ones go to
/// ordinary huge mappings).
pub const MAX_ALIGN: usize = 1 << 20;
/// Canary bytes checked between the end of a block and its guard page.
const TAIL_CHECK: usize = 64;

const LIVE: usize = 0x11fe;
const FREED: usize = 0xdead;

const _: () = assert!(core::mem::size_of::<Segment>() <= META_PAGES * PAGE_SIZE - os::PAGE);

/// The header in the mapping's first page.
///
/// Invariant: `block` is the block's address (inside the mapping's first
/// chunk), `size` its requested size, `map_len` the whole mapping's length;
/// `state` is LIVE while the block is live, FREED once freed.
#[repr(C)]
struct Header {
    block: usize,
    size: usize,
    map_len: usize,
    state: AtomicUsize,
}

/// Changes the protection of a page-aligned range; false on failure.
///
/// # Safety
/// The range is mapped by tinymalloc and holds no live block the change
/// would cut off.
unsafe fn protect(p: usize, len: usize, prot: libc::c_int) -> bool {
    // SAFETY: as the caller guarantees.
    unsafe { os::protect(p as *mut u8, len, prot) }
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
/// two, at most [`MAX_ALIGN`]); its memory is zero when fresh or purged, or
/// when `zero` asks. Null when out of memory.
pub fn alloc(size: usize, align: usize, zero: bool) -> *mut u8 {
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
    if let Some(b) = reuse(size, align, len, zero) {
        return b;
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
    // SAFETY: a mapping just made, ours.
    let b = unsafe { place(c, len, size, align) };
    segmap::set(c, Kind::Guarded);
    stats::note_reserved(len as isize);
    b as *mut u8
}

/// Serves a block from a retired mapping of at least `len` bytes (and at
/// most about twice that), made accessible again; zeroed when `zero` asks
/// and its pages were kept.
fn reuse(size: usize, align: usize, len: usize, zero: bool) -> Option<*mut u8> {
    let m = retired::take(|have| have >= len && have - len <= len.min(CHUNK / 2))?;
    // SAFETY: a retired mapping is ours and unused; its data pages become
    // accessible again (the guard pages stay inaccessible).
    if !unsafe {
        protect(
            m.c + 2 * os::PAGE,
            m.len - 3 * os::PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } {
        release(m);
        return None;
    }
    // SAFETY: as above; the mapping is ours.
    let b = unsafe { place(m.c, m.len, size, align) };
    if m.hot && zero {
        // SAFETY: the block and its tail lie in the mapping's data pages;
        // stale contents are cleared (the tail canary is written again).
        unsafe {
            let end = m.c + m.len - os::PAGE;
            core::ptr::write_bytes(b as *mut u8, 0, size);
            fill_tail(b, size, end, true);
        }
    }
    Some(b as *mut u8)
}

/// Places a block of `size` bytes aligned to `align` at the end of the data
/// pages of the mapping `[c, c + len)`, writes its header and tail canary;
/// returns its address.
///
/// # Safety
/// The mapping is ours, unused, with accessible header and data pages.
unsafe fn place(c: usize, len: usize, size: usize, align: usize) -> usize {
    let end = c + len - os::PAGE;
    let b = (end - size) & !(align - 1);
    debug_assert!(b >= c + 2 * os::PAGE && b - c < CHUNK);
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
    stats::note_huge((len - 3 * os::PAGE) as isize);
    stats::note_huge_count(1);
    b
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
    let hot = retired::keep_hot(len);
    // SAFETY: the block is freed; its pages hold nothing live any more.
    unsafe {
        protect(c + os::PAGE, len - os::PAGE, libc::PROT_NONE);
        if !hot {
            os::purge((c + 2 * os::PAGE) as *mut u8, len - 3 * os::PAGE);
        }
    }
    error::remember_freed(p);
    stats::note_huge(-((len - 3 * os::PAGE) as isize));
    stats::note_huge_count(-1);
    if let Some(gone) = retired::push(Mapping { c, len, hot }) {
        release(gone);
    }
}

/// Forgets and unmaps a retired mapping.
fn release(m: Mapping) {
    segmap::set(m.c, Kind::None);
    // SAFETY: a freed guarded mapping nothing refers to any more.
    unsafe { os::unmap(m.c as *mut u8, m.len) };
    stats::note_reserved(-(m.len as isize));
}

/// Unmaps every retired mapping now; true when there was one.
pub fn drain() -> bool {
    retired::drain(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_blocks_are_end_aligned_zeroed_and_freed_once() {
        let _g = retired::TEST_SERIAL
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        drain();
        for (size, align) in [(40_000usize, 16usize), (100_001, 64), (5 << 20, 8192)] {
            let p = alloc(size, align, false) as usize;
            assert!(p != 0 && p.is_multiple_of(align));
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

    #[test]
    fn retired_mappings_are_reused_zeroed_after_waiting() {
        let _g = retired::TEST_SERIAL
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        drain();
        let size = 100_000;
        let mut freed = Vec::new();
        for _ in 0..80 {
            let p = alloc(size, 16, false) as usize;
            // SAFETY: a live block of `size` bytes.
            unsafe { core::ptr::write_bytes(p as *mut u8, 0xee, size) };
            free(p, Op::Free);
            freed.push(p & !(CHUNK - 1));
        }
        let p = alloc(size - 5000, 16, true) as usize;
        assert!(freed.contains(&(p & !(CHUNK - 1))), "not reused");
        // SAFETY: a live block.
        assert!(unsafe { canary::is_zero(p as *const u8, size - 5000) });
        assert_eq!(size_of(p), Ok(size - 5000));
        free(p, Op::Free);
        assert!(drain());
    }
}
